/*
 * loader.h - datapipe-loader's internals: drains the LMDB queue into PostgreSQL with COPY,
 * exactly once. Shared by the files of loader/ and by the tests; main.c stays a thin shell.
 * Invariant: a queue range is deleted only after PostgreSQL committed its rows together with
 * its loader_batches row; nothing is ever deleted from the queue that PostgreSQL lacks.
 */
#ifndef DP_LOADER_H
#define DP_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "etc/config.h"
#include "queue/queue.h"

/* The metadata the loader writes for the server: QUEUE_META_LOADER_* in queue/queue.h. */
#define LDR_HELD_TYPES_MAX 256 /* bytes of the held types' comma list */

#define LDR_BATCH_MAX_BYTES (32u << 20) /* JSON bytes in one batch (one event may exceed it) */
#define LDR_ONCE_ATTEMPTS 6             /* --once: give up after this many failed attempts */
#define LDR_BACKOFF_BASE_MS 200         /* first back-off, before jitter */
#define LDR_BACKOFF_MAX_MS 30000        /* cap, before jitter */
#define LDR_ERR_MAX 512                 /* longest error text kept, bytes with NUL */
#define LDR_OWNER_MAX 256               /* longest instance id read from queue_owners, with NUL */
/*
 * Exit status of a loader that refuses to touch a queue that does not own its queue.id
 * (EX_CONFIG of sysexits.h). systemd/datapipe-loader.service lists it in
 * RestartPreventExitStatus=: restarting cannot help, an operator must act.
 */
#define LDR_EXIT_REFUSED 78

struct ldr;
struct ldr_pg;

/* ---- the loader (loader.c) ---------------------------------------------------------- */

/* Points where a test's fault hook is called, in the order a batch passes them. */
enum ldr_fault_point {
    LDR_FAULT_COPY,      /* before each COPY of a batch's transaction */
    LDR_FAULT_COMMIT,    /* before COMMIT is sent */
    LDR_FAULT_COMMITTED, /* COMMIT succeeded; the queue delete has not started */
};

/*
 * Test-only fault seam: production never installs one. hook() runs in the worker's thread
 * with the batch's range. 0 goes on; DP_ERR_RETRY acts as if the connection dropped at that
 * point (the loader closes it): at LDR_FAULT_COMMITTED that is "the COMMIT's answer was
 * lost", which the loader must resolve through loader_batches. A hook may also kill the
 * process (raise(SIGKILL)) to test crashes between COMMIT and the queue delete.
 */
struct ldr_fault_ops {
    int (*hook)(void *arg, enum ldr_fault_point point, uint64_t first, uint64_t last);
    void *arg;
};

/* What a loader needs; strings are copied by ldr_create(). */
struct ldr_options {
    const char *queue_id;                 /* names this queue in loader_batches and dead_letter */
    const char *conninfo;                 /* libpq connection string */
    const char *schema;                   /* schema holding every table */
    int batch_rows;                       /* events per batch, at most */
    int workers;                          /* concurrent batches (and connections), at least 1 */
    int give_up_attempts;                 /* failed attempts in a row before giving up; 0: never */
    const struct ldr_fault_ops *fault;    /* NULL in production; borrowed */
    const struct dp_retention *retention; /* partitioned types; NULL: none; borrowed */
};

/* The figures of one run (ldr_run) or of everything since ldr_create (ldr_totals). */
struct ldr_run_stats {
    uint64_t events;       /* events taken off the queue */
    uint64_t loaded;       /* of which loaded into their tables */
    uint64_t dead_letters; /* of which filed into dead_letter */
    uint64_t batches;      /* batches committed */
    uint64_t retries;      /* back-offs */
    uint64_t held;         /* events left queued: type unknown (ldr_totals: last run's) */
    int64_t start_us;      /* wall clock, us since the epoch */
    int64_t end_us;
};

/*
 * ldr_create - a loader over queue q (borrowed: q must outlive it). Connects to nothing yet.
 *   out: receives the loader; free with ldr_destroy().
 * Returns 0, DP_ERR_INVALID (bad options, or a conninfo libpq cannot parse), DP_ERR_NOMEM.
 */
int ldr_create(struct ldr **out, struct queue *q, const struct ldr_options *opt);

/* ldr_destroy - close every connection and free. No run may be going on. NULL-safe. */
void ldr_destroy(struct ldr *l);

/*
 * ldr_start - what comes before the first run: connect (retrying with back-off while
 * PostgreSQL is down), create the schema and every table if missing, check that this queue
 * owns its queue.id (see ldr_refused), take the queue's lease (fencing off any earlier
 * loader of this queue: ldr_pg_lease_take), and recover (delete from the queue every range
 * loader_batches says PostgreSQL already has).
 * Returns 0, DP_ERR_CONFIG (refused: see ldr_refused), DP_ERR_CLOSED (ldr_stop was called),
 * DP_ERR_RETRY (gave up after give_up_attempts), DP_ERR_IO (queue error), DP_ERR_NOMEM.
 */
int ldr_start(struct ldr *l);

/*
 * Queue identity. A queue has an instance id (queue_instance); PostgreSQL's queue_owners
 * records which instance owns each queue.id, and only the owner's rows are under that
 * queue_id in loader_batches. Before it reads loader_batches or deletes anything, the loader
 * checks ownership (at start, at every run, and again inside every batch's transaction, which
 * holds the owner row FOR SHARE), and when there is no owner yet it claims queue.id:
 *  - no loader_batches rows under queue.id: claimed;
 *  - rows, and the queue was created with its instance id: they are another queue's (this
 *    one would have claimed queue.id before loading anything): refused;
 *  - rows, and the queue is older than instance ids (queue_instance's assigned): claimed if
 *    they can be its own (its sequence counter is past every recorded range), else refused.
 * A refusal loads and deletes nothing, is logged with what to do, recorded in the queue's
 * QUEUE_META_LOADER_REFUSED for /v1/status, and holds until an operator acts: the daemon exits
 * LDR_EXIT_REFUSED.
 */

/* ldr_refused - whether the loader refused this queue; why (with NUL) into buf if so. */
bool ldr_refused(struct ldr *l, char *buf, size_t len);

/*
 * ldr_adopt - the operator's way out of a refusal (datapipe-loader --adopt-queue), once the
 * queue that owned queue.id is known to be gone: in one transaction make this queue the owner,
 * move the former owner's loader_batches rows to queue_id "<queue.id>@<its instance>" (rows
 * from before owners were recorded: "@unowned") so that they never match this queue's
 * sequence numbers, and take back rows this queue left when it was adopted away earlier.
 * Clears the queue's refusal. Prints what it did on stdout.
 * Returns 0 (adopted, or the owner already), DP_ERR_RETRY (PostgreSQL unreachable after
 * give_up_attempts), DP_ERR_CLOSED, DP_ERR_NOMEM.
 */
int ldr_adopt(struct ldr *l);

/*
 * ldr_run - one run: recover, then load every event queued now (and those appended while
 * the run goes on, up to the end of its last batch) in batches of at most batch_rows, up to
 * `workers` at once, each in one transaction with its loader_batches row, and delete each
 * from the queue after its commit; then compact loader_batches. Blocks until done.
 * Events of a type the registry does not know (a declared type removed while they waited)
 * are held: they stay queued, counted in st->held and QUEUE_META_LOADER_HELD, and load in the
 * first run after their type is registered again.
 *   st: receives the run's figures (may be NULL).
 * Returns 0 (drained), DP_ERR_CLOSED (stopped: batches in flight were finished or rolled
 * back), DP_ERR_RETRY (gave up: PostgreSQL stayed unreachable), DP_ERR_IO, DP_ERR_NOMEM.
 */
int ldr_run(struct ldr *l, struct ldr_run_stats *st);

/*
 * ldr_load_range - load the events first..last as one batch on the first connection,
 * retrying like a run does, then delete them. For tests that need a given commit order.
 * Returns like ldr_run().
 */
int ldr_load_range(struct ldr *l, uint64_t first, uint64_t last);

/*
 * ldr_types_changed - the registry gained declared types (SIGHUP): close every connection,
 * so that the next use opens it again and creates their tables (ldr_pg_ensure_schema)
 * before any batch loads. No run or start may be going on.
 */
void ldr_types_changed(struct ldr *l);

/*
 * ldr_stop - ask a run or a start to finish: no new batches, no new attempts; batches in
 * flight commit or roll back. Wakes back-off sleeps. Thread-safe, not async-signal-safe.
 */
void ldr_stop(struct ldr *l);

/*
 * ldr_status - a one-line summary for sd_notify's STATUS=, NUL-terminated in buf: before
 * ldr_start succeeded "connecting to PostgreSQL" or "waiting for PostgreSQL: <libpq's
 * reason> (attempt N)"; then "loading: ...", "waiting to retry (attempt N): ...", "idle: ...".
 * Thread-safe.
 */
void ldr_status(struct ldr *l, char *buf, size_t len);

/* ldr_totals - figures since ldr_create (runstats.c, like ldr_status). Thread-safe. */
void ldr_totals(struct ldr *l, struct ldr_run_stats *st);

/* ---- schedule and back-off (schedule.c): pure functions ---------------------------- */

struct ldr_schedule {
    int interval_s;     /* seconds between regular runs (from run start to run start) */
    int min_interval_s; /* seconds from the end of a run before an early run */
    int64_t high_water; /* queued events above which a run starts early */
};

/*
 * ldr_schedule_due - whether a run should start now.
 *   now_ms, last_start_ms, last_end_ms: a monotonic clock in milliseconds; last_start_ms <
 *   0 means no run yet (one is due at once).
 *   queued: events in the queue now. forced: SIGUSR1 asked for a run.
 *   wait_ms: receives how long until a regular run would be due (>= 0), when not due.
 */
bool ldr_schedule_due(const struct ldr_schedule *s, int64_t now_ms, int64_t last_start_ms,
                      int64_t last_end_ms, uint64_t queued, bool forced, int64_t *wait_ms);

/*
 * ldr_backoff_ms - the delay before attempt `attempt` (1 = after the first failure):
 * LDR_BACKOFF_BASE_MS doubling each time up to LDR_BACKOFF_MAX_MS, then a jitter drawn from
 * rnd keeps it in [half, full] so that workers do not retry in lockstep.
 */
int64_t ldr_backoff_ms(int attempt, uint32_t rnd);

/* ---- retention by partition (part.c) --------------------------------------------------- */

struct dp_retention;
struct ev_type;

#define LDR_PART_NAME_BUF 72   /* a quoted derived name, bytes with NUL */
#define PART_CHILDREN_MAX 4096 /* partitions of one table the pass looks at */

/* ldr_pg_set_retention - the rules pg's ldr_pg_ensure_schema follows (borrowed; NULL: none). */
void ldr_pg_set_retention(struct ldr_pg *pg, const struct dp_retention *r);

/* ldr_pg_parted - whether t's table was partitioned at pg's last ldr_pg_ensure_schema. */
bool ldr_pg_parted(const struct ldr_pg *pg, const struct ev_type *t);

/* ldr_part_key_table - the quoted name of partitioned t's key table into out. */
void ldr_part_key_table(const struct ev_type *t, char out[LDR_PART_NAME_BUF]);

/*
 * ldr_part_create - create t's table by its DDL (IF NOT EXISTS), partitioned by range of
 * received_at with primary key (id, received_at) when a retention rule names t and the table
 * does not exist yet. Inside ldr_pg_ensure_schema's transaction. Returns as ldr_pg_exec.
 */
int ldr_part_create(struct ldr_pg *pg, const struct ev_type *t);

/*
 * ldr_part_convert_sql - the SQL an operator runs to convert t's existing unpartitioned table
 * into a partitioned one whose first partition is the old table, up to the end of now_us's UTC
 * day (bounds written with their zone, so any session TimeZone reads them alike), into out
 * (len bytes). Returns its length, or 0 when it does not fit.
 */
int ldr_part_convert_sql(const struct ev_type *t, int64_t now_us, char *out, size_t len);

/*
 * ldr_part_ensure - read which append tables are partitioned (ldr_pg_parted); give each keyed
 * one its key table (created and filled from the table's rows when missing); log once the SQL
 * that would convert a table a rule names that exists unpartitioned. Inside
 * ldr_pg_ensure_schema's transaction. Returns as ldr_pg_exec.
 */
int ldr_part_ensure(struct ldr_pg *pg);

/* What one retention pass dropped of one table. */
struct ldr_part_dropped {
    uint64_t partitions; /* partitions dropped */
    uint64_t rows;       /* rows they held */
};
typedef void (*ldr_part_dropped_fn)(void *arg, const struct ev_type *t,
                                    const struct ldr_part_dropped *d);

/*
 * ldr_part_pass - for every partitioned table a rule names: drop its day partitions (those
 * datapipe named) that ended keep_days or more before now_us, and the keys of their rows, a
 * few partitions a transaction (so no pass needs more locks than PostgreSQL's lock table
 * holds), and create today's and tomorrow's partitions (ldr_part_days); each transaction under
 * the DDL lock. fn (may be NULL) hears what each transaction dropped, after its COMMIT. A
 * table that fails is logged and the pass goes on with the next (what it did not drop is
 * dropped by a later pass). Returns 0, DP_ERR_RETRY (a table failed), DP_ERR_NOMEM.
 */
int ldr_part_pass(struct ldr_pg *pg, int64_t now_us, ldr_part_dropped_fn fn, void *arg);

/*
 * ldr_part_days - when t's table is partitioned (ldr_pg_parted), create the partitions of
 * days (n of them, days since the epoch) it lacks, in a transaction of its own under the DDL
 * lock, before a transaction loads rows of those days: every row finds its partition, however
 * far the clock that stamped it was from this one, and no day between them is created. Days
 * this connection saw exist are not looked up again. A day older than keep_days is created
 * too (logged): its rows load, and the next pass drops them. now_us: the wall clock.
 * Returns 0, DP_ERR_RETRY (logged), DP_ERR_NOMEM.
 */
int ldr_part_days(struct ldr_pg *pg, const struct ev_type *t, const int64_t *days, size_t n,
                  int64_t now_us);

/* ---- PostgreSQL (pg.c, tables.c; with ledger.c, part.c the only files with libpq calls) */

/*
 * ldr_pg_classify - what a failed statement means for the loader.
 *   sqlstate: the error's SQLSTATE, or NULL/"" when there is none (the connection broke).
 *   conn_ok: the connection is still usable.
 * Returns DP_ERR_DATA for the rows' own fault (SQLSTATE class 22 data exception, 23
 * integrity violation, 54 program limit such as an oversized index row) on a usable
 * connection, DP_ERR_RETRY for everything else (connection, server, resources, locks).
 */
int ldr_pg_classify(const char *sqlstate, bool conn_ok);

/*
 * ldr_pg_connect - connect through dp_pg_connect (etc/pgconn.h: connect_timeout 10 s,
 * keepalives after 30 s idle, application_name datapipe-loader unless conninfo says
 * otherwise), silence notices, and refuse a read-only server (DP_PG_READ_ONLY_TEXT). Nothing
 * is set on the session: every transaction begins with SET LOCAL search_path schema,
 * TimeZone UTC and synchronous_commit on (where it was off: a COMMIT must be durable), so
 * PgBouncer in transaction mode may share the backend. instance_id: this queue's
 * (queue_instance), which the statements below check against queue_owners.
 *   out: receives the connection; free with ldr_pg_close().
 *   err: receives libpq's text on failure (errlen bytes).
 * Returns 0, DP_ERR_RETRY (unreachable, refused, authentication, read-only), DP_ERR_NOMEM.
 */
int ldr_pg_connect(struct ldr_pg **out, const char *conninfo, const char *schema,
                   const char *queue_id, const char *instance_id, char *err, size_t errlen);

/* ldr_pg_close - close and free. NULL-safe. */
void ldr_pg_close(struct ldr_pg *pg);

/* ldr_pg_conninfo_check - 0 if libpq can parse conninfo, else DP_ERR_INVALID with why. */
int ldr_pg_conninfo_check(const char *conninfo, char *err, size_t errlen);

/*
 * The statement functions below return 0, DP_ERR_DATA or DP_ERR_RETRY as ldr_pg_classify()
 * says, or DP_ERR_NOMEM; on failure ldr_pg_error() and ldr_pg_sqlstate() tell more.
 */

/* ldr_pg_error - the last failure: PostgreSQL's primary message or libpq's text. */
const char *ldr_pg_error(const struct ldr_pg *pg);

/* ldr_pg_sqlstate - the last failure's SQLSTATE, "" when there was none. */
const char *ldr_pg_sqlstate(const struct ldr_pg *pg);

/* ldr_pg_exec - run sql (one or more statements, no results wanted). */
int ldr_pg_exec(struct ldr_pg *pg, const char *sql);

/*
 * ldr_pg_rows - run the query sql with nparams text parameters and call fn for every row
 * with its n values (NULL for SQL NULL; views valid during the call only). fn returns 0 to
 * go on or a negative dp_err to stop (returned). At most LDR_ROW_COLS_MAX columns.
 */
#define LDR_ROW_COLS_MAX 8
typedef int (*ldr_pg_row_fn)(void *arg, int n, const char *const *vals);
int ldr_pg_rows(struct ldr_pg *pg, const char *sql, int nparams, const char *const *params,
                ldr_pg_row_fn fn, void *arg);

/*
 * ldr_pg_exec_rows - run one statement sql (no results wanted) and give how many rows it
 * inserted, updated or deleted (PQcmdTuples) in *rows. Returns as ldr_pg_exec.
 */
int ldr_pg_exec_rows(struct ldr_pg *pg, const char *sql, uint64_t *rows);

/*
 * ldr_pg_ensure_schema - create schema, every registry table, dead_letter, loader_batches
 * and queue_owners if missing, and bring the declared types' tables up to their declarations
 * (ldr_schema_ensure), in one transaction serialized by an advisory lock (tables.c; concurrent
 * CREATE ... IF NOT EXISTS or ALTER TABLE can otherwise collide).
 * Returns also DP_ERR_CONFIG: a declared type's table cannot follow its declaration
 * (logged: which field, and what to do); nothing was changed.
 */
int ldr_pg_ensure_schema(struct ldr_pg *pg, const char *schema);

/*
 * ldr_pg_lease_take - take queue_id's lease for this loader process: bump queue_owners.epoch
 * (recording this host and pid as the holder) once every transaction of an earlier loader
 * that holds the owner row has ended. Afterwards no COMMIT of an earlier loader can still be
 * in progress or come later (ledger.c says why), so loader_batches is the whole truth; and
 * every later check on pg (and on connections given the epoch, ldr_pg_set_epoch) fails if a
 * newer loader takes the lease. No session is terminated.
 *   epoch: receives the new epoch.
 * Returns 0, DP_ERR_CONFIG (this queue does not own queue_id), DP_ERR_RETRY (pg_err names
 * the holder when its transaction did not end within 5 s), DP_ERR_NOMEM.
 */
int ldr_pg_lease_take(struct ldr_pg *pg, const char *queue_id, int64_t *epoch);

/* ldr_pg_set_epoch - the lease's epoch (ldr_pg_lease_take) every check on pg holds to. */
void ldr_pg_set_epoch(struct ldr_pg *pg, int64_t epoch);

/*
 * ldr_pg_copy - COPY rows (len bytes) into table with the column list columns: text rows, or
 * with binary, rows in COPY's binary format (struct ev_buf's binary), which this sends
 * between the format's header and trailer.
 */
int ldr_pg_copy(struct ldr_pg *pg, const char *table, const char *columns, const char *data,
                size_t len, bool binary);

/* ldr_pg_exec_params - run one statement with nparams text parameters, no result wanted. */
int ldr_pg_exec_params(struct ldr_pg *pg, const char *sql, int nparams, const char *const *params);

/*
 * ldr_pg_watermark - move queue_id's completeness watermark (queue_watermarks, the view
 * watermark) forward to us (microseconds since the epoch), never back. In the caller's
 * transaction, if one is open. Returns 0, DP_ERR_RETRY, DP_ERR_NOMEM.
 */
int ldr_pg_watermark(struct ldr_pg *pg, const char *queue_id, int64_t us);

/* ---- declared types' tables (decl.c) ----------------------------------------------- */

/*
 * ldr_schema_ensure - inside ldr_pg_ensure_schema's transaction (search_path set): for
 * every declared type of the registry, create its table, or compare it with the catalog and
 * evolve it additively: a new optional field is ALTER TABLE ... ADD COLUMN, a field no
 * longer declared keeps its column (logged; its NOT NULL dropped), a required field no longer
 * required drops NOT NULL. Before any of that, every existing declared table's primary key
 * and key index get their derived names (dp_pg_derived_name), so that the names earlier
 * releases gave them ("<type>_pkey", "<type>_idem_key") are free for other types. A changed field
 * type, a newly required field on an existing table, or a table of that name that datapipe did not
 * create is refused: logged with the field and what to do, DP_ERR_CONFIG, and nothing of this
 * transaction is kept. Also stores data_sample.raw with lz4 compression when the server has it.
 * Returns 0, DP_ERR_CONFIG, DP_ERR_RETRY, DP_ERR_NOMEM.
 */
int ldr_schema_ensure(struct ldr_pg *pg);

/*
 * ldr_schema_key_index - inside ldr_pg_ensure_schema's transaction: make sure the table
 * named name (unquoted, in the current schema; table is how SQL names it) has the unique
 * index over its non-null idempotency_key that the keyed rows' ON CONFLICT needs, named
 * DP_PG_KEY_INDEX + hash. An index is found by what it indexes, never by its name: one of
 * another name (an earlier release's) is renamed, none is created. A partitioned table gets
 * none (its keys are unique in its key table: ldr_part_ensure). Returns as ldr_pg_exec,
 * or DP_ERR_CONFIG (logged) when the table holds a key twice, so the index cannot be built.
 */
int ldr_schema_key_index(struct ldr_pg *pg, const char *name, const char *table);

/* ---- loader_batches and queue_owners (ledger.c) ------------------------------------ */

/*
 * ldr_pg_batch_begin - BEGIN, make every constraint immediate (so a bad row fails at its
 * COPY, where it can be isolated), hold queue_id's queue_owners row FOR SHARE and check that
 * this queue owns it, and insert the batch's loader_batches row.
 *   committed_last: 0, or, when loader_batches already has a row for (queue_id, first), its
 *   last_seq: that batch committed earlier (the transaction is then rolled back); *outcome
 *   then receives the row's outcome (malloc'd, NULL if none), else NULL.
 * Also returns DP_ERR_CONFIG (rolled back) when this queue does not own queue_id: see
 * ldr_pg_owner_seen.
 */
int ldr_pg_batch_begin(struct ldr_pg *pg, const char *queue_id, uint64_t first, uint64_t last,
                       size_t rows, uint64_t *committed_last, char **outcome);

/*
 * ldr_pg_batch_outcome - record in the batch's loader_batches row, inside its transaction,
 * what loading it did (ldr_batch_outcome): whoever learns of the commit later without seeing
 * it (ldr_pg_batch_lookup, ldr_pg_batches) counts the batch's figures from it, not as if
 * every event loaded. Returns as ldr_pg_exec.
 */
int ldr_pg_batch_outcome(struct ldr_pg *pg, const char *queue_id, uint64_t first,
                         const char *outcome);

/*
 * ldr_pg_batch_lookup - last_seq and outcome (malloc'd; NULL if none) of the loader_batches
 * row (queue_id, first), if this queue owns queue_id. Returns 0, DP_ERR_NOTFOUND (no such
 * row, or not the owner), DP_ERR_RETRY, DP_ERR_NOMEM.
 */
int ldr_pg_batch_lookup(struct ldr_pg *pg, const char *queue_id, uint64_t first, uint64_t *last,
                        char **outcome);

/*
 * ldr_pg_batches - call fn for every loader_batches row of queue_id with last_seq >= from,
 * in first_seq order, read in a transaction that checks ownership like ldr_pg_batch_begin
 * (DP_ERR_CONFIG: not the owner, fn not called), with the row's outcome (NULL if none). fn
 * returns 0 to go on or a negative dp_err to stop (returned).
 */
typedef int (*ldr_pg_range_fn)(void *arg, uint64_t first, uint64_t last, const char *outcome);
int ldr_pg_batches(struct ldr_pg *pg, const char *queue_id, uint64_t from, ldr_pg_range_fn fn,
                   void *arg);

/*
 * ldr_pg_max_last - the highest last_seq loader_batches records for queue_id (0 if none).
 * Returns 0, DP_ERR_RETRY, DP_ERR_NOMEM.
 */
int ldr_pg_max_last(struct ldr_pg *pg, const char *queue_id, uint64_t *max_last);

/*
 * ldr_pg_compact - merge the loader_batches rows of queue_id that end below `below` (the
 * queue no longer holds any of their events), except the newest row, into one row from the
 * lowest first_seq to the highest last_seq: everything the queue held below `below` was
 * loaded, and a queue restored from a backup can hold it again. Nothing while fewer than two
 * rows qualify, nor unless this queue owns queue_id.
 *   deleted: receives 1 when rows were merged, else 0 (may be NULL).
 */
int ldr_pg_compact(struct ldr_pg *pg, const char *queue_id, uint64_t below, uint64_t *deleted);

/*
 * ldr_pg_owner - the instance id queue_owners records for queue_id, into owner (len bytes).
 * Returns 0, DP_ERR_NOTFOUND (no owner yet), DP_ERR_RETRY, DP_ERR_NOMEM.
 */
int ldr_pg_owner(struct ldr_pg *pg, const char *queue_id, char *owner, size_t len);

/*
 * ldr_pg_owned_elsewhere - a queue_id other than queue_id that this queue's instance owns, into
 * other (len bytes): a copy of a queue (a backup restored on another host) given that host's
 * queue.id has the instance id of the queue that owns the first one.
 * Returns 0 (found), DP_ERR_NOTFOUND (none), DP_ERR_RETRY, DP_ERR_NOMEM.
 */
int ldr_pg_owned_elsewhere(struct ldr_pg *pg, const char *queue_id, char *other, size_t len);

/*
 * ldr_pg_owner_claim - record this queue as queue_id's owner unless it has one already (read
 * it again with ldr_pg_owner: another loader may have claimed it first).
 */
int ldr_pg_owner_claim(struct ldr_pg *pg, const char *queue_id);

/* ldr_pg_owner_seen - the owner the last refused ownership check found; "" for none. */
const char *ldr_pg_owner_seen(const struct ldr_pg *pg);

/* What ldr_pg_owner_adopt did. */
struct ldr_adoption {
    bool already;                      /* this queue was the owner: nothing changed */
    char previous[LDR_OWNER_MAX];      /* the former owner, "" if there was none */
    char moved_to[LDR_OWNER_MAX + 64]; /* the queue_id its loader_batches rows now have */
    uint64_t moved;                    /* rows moved there */
    uint64_t restored;                 /* rows of this queue taken back from "<id>@<mine>" */
};

/*
 * ldr_pg_owner_adopt - ldr_adopt's transaction: lock queue_id's owner row, move the former
 * owner's loader_batches rows apart, take back this queue's, record this queue as the owner.
 *   a: receives what was done.
 */
int ldr_pg_owner_adopt(struct ldr_pg *pg, const char *queue_id, struct ldr_adoption *a);

/* ---- dead letters (replay.c) ------------------------------------------------------ */

/*
 * ldr_replay_main - datapipe-loader --replay-dead-letters or --dead-letters (cli), after the
 * configuration cfg is loaded. The replay takes the dead letters of cli->only_type and
 * cli->only_stage (NULL: all) in seq order, min(loader.batch_rows, 1000) rows per
 * transaction: each row that validates with today's registry (and that PostgreSQL takes)
 * goes into its table with its event_id (a fresh UUIDv7 for rows filed before that column)
 * and received_at, and its dead_letter row is deleted, in that one transaction; the others
 * get the new error, replays + 1 and replayed_at. With cli->dry_run every transaction is
 * rolled back. Prints a summary line on stdout (--dead-letters: a table of type, stage,
 * count, replays and error). Does not touch the queue; may run beside the loader daemon.
 * Returns the exit status: 0, or 1 (PostgreSQL failed; what was committed stays).
 */
int ldr_replay_main(const struct dp_cli *cli, const struct dp_config *cfg);

/* ---- the daemon (daemon.c) --------------------------------------------------------- */

/*
 * ldr_daemon - datapipe-loader after its configuration is loaded: the queue and its loader
 * lock, ldr_start, READY=1, the schedule, signals (SIGTERM/SIGINT stop, SIGHUP reloads the
 * schedule and log settings, SIGUSR1 forces a run), STATUS= and WATCHDOG=1.
 *   cli: the parsed command line (config_path for SIGHUP, once).
 *   cfg: the configuration (borrowed; freed by the caller).
 *   fault: NULL, or a test's fault hook.
 * Returns the process exit status: 0 (stopped, or --once drained), 1 (another loader holds
 * the queue, the queue cannot be opened, or --once gave up on PostgreSQL), LDR_EXIT_REFUSED
 * (this queue does not own its queue.id: see ldr_refused).
 */
int ldr_daemon(const struct dp_cli *cli, const struct dp_config *cfg,
               const struct ldr_fault_ops *fault);

/*
 * ldr_daemon_adopt - datapipe-loader --adopt-queue: open the queue and take its loader lock
 * (no loader may run on it meanwhile), ldr_adopt (giving up after LDR_ONCE_ATTEMPTS), exit.
 * Returns the process exit status: 0 (adopted, or already the owner), 1 (failed).
 */
int ldr_daemon_adopt(const struct dp_config *cfg);

#endif
