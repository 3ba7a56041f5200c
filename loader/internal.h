/*
 * internal.h - what the files of loader/ share and nothing else: a batch in memory (batch.c)
 * and the one-transaction load of it (load.c), the loader's state and its back-off. Not a
 * public header: main.c and the tests use loader.h.
 */
#ifndef DP_LOADER_INTERNAL_H
#define DP_LOADER_INTERNAL_H

#include <pthread.h>

#include "events/events.h"
#include "loader/loader.h"

#define LDR_META_NAME_MAX 96 /* QUEUE_META_LOADER_LOADED_PREFIX <type>, with NUL */
/* Groups of a batch: plain and keyed rows per type. */
#define LDR_GROUPS_MAX (2 * EV_REGISTRY_MAX)
#define LDR_META_OPS (3 * LDR_GROUPS_MAX + LDR_META_OPS_EXTRA) /* a delete's changes, at most */
#define LDR_REFUSAL_MAX 1024 /* a refusal's text (why and what to do), with NUL */

/*
 * Most bytes of an event kept in a dead_letter row's raw column. PostgreSQL refuses a COPY
 * line over 1 GB and bytea text is two characters a byte: a longer event is truncated, with
 * a note in the row's error text, rather than make the whole batch fail for ever.
 */
#define LDR_DEAD_RAW_MAX_BYTES (256u << 20)

/*
 * One event of a batch, copied out of the queue while its read transaction was open (an
 * LMDB view dies with it). Its bytes are in the batch's raw buffer, found by offset.
 */
struct ldr_held {
    uint64_t seq; /* queue sequence number */
    uint8_t uuid[16];
    int64_t received_us; /* microseconds since the epoch */
    uint32_t flags;      /* QUEUE_F_* */
    size_t type_off;     /* offsets into raw.data, lengths in bytes */
    size_t type_len;
    size_t error_off; /* with QUEUE_F_REJECTED; error_len 0 if none */
    size_t error_len;
    size_t json_off;
    size_t json_len;
    size_t key_off; /* its idempotency key; key_len 0 if none */
    size_t key_len;
    size_t source_off; /* its source (API key name); source_len 0 if none */
    size_t source_len;
};

/*
 * The rows of one event type in a batch, in queue order: of a keyed type (ev_type.keyed),
 * the keyed rows are in a group of their own, loaded so that a key PostgreSQL already holds
 * is skipped; every other row goes by plain COPY.
 */
struct ldr_group {
    const struct ev_type *type;
    bool keyed;                            /* the rows of events with an idempotency key */
    size_t skipped;                        /* keyed rows the last attempt found already loaded */
    struct ev_buf rows;                    /* COPY text rows, one per event */
    size_t *ends;                          /* ends[i]: offset in rows just past row i */
    size_t *held;                          /* held[i]: index in the batch's held events of row i */
    size_t n;                              /* rows */
    size_t cap;                            /* entries allocated in ends and held */
    size_t bad;                            /* rows the last attempt isolated into dead_letter */
    size_t conflicts;                      /* of which keys held with other bytes (in bad too) */
    char meta_name[LDR_META_NAME_MAX];     /* loader.loaded.<type> */
    char dup_name[LDR_META_NAME_MAX];      /* loader.duplicates.<type> */
    char conflict_name[LDR_META_NAME_MAX]; /* loader.key_conflicts.<type> */
};

/*
 * A batch: the events first..last of the queue, read once (ldr_batch_read) and encoded from
 * what it holds (ldr_batch_build); bad rows are filed from the held copy too. Memory is kept
 * between batches (lengths are reset only) and bounded by batch_rows and LDR_BATCH_MAX_BYTES.
 */
struct ldr_batch {
    const char *queue_id; /* borrowed */
    uint64_t first;       /* sequence numbers */
    uint64_t last;
    size_t events;            /* events in the range: entries used in held */
    struct ldr_held *held;    /* the range's events, in queue order */
    size_t held_cap;          /* entries allocated in held */
    struct ev_buf raw;        /* their type, error and JSON bytes */
    int64_t now_us;           /* wall clock at encode time (processed_at) */
    int64_t watermark_us;     /* queue_watermark for this range, recorded with it;
                                 0: none (set by the loader before loading) */
    struct ldr_group *groups; /* LDR_GROUPS_MAX entries: plain and keyed per type */
    size_t n_groups;          /* in use: two per registry entry, as of the last build */
    struct ev_buf dead;       /* dead_letter COPY rows */
    struct ev_buf dead_ascii; /* the same reduced to ASCII, when PostgreSQL refused */
    size_t dead_raw_max;      /* bytes of raw kept a row (LDR_DEAD_RAW_MAX_BYTES) */
    size_t dead_encoded;      /* dead.len after encoding; the load's rows follow */
    size_t dead_ingest;       /* rows rejected at ingest */
    size_t dead_encode;       /* rows the encoder refused or of unknown type */
    size_t dead_load;         /* rows PostgreSQL refused (last attempt) */
    size_t unknown;           /* events ldr_batch_claim left queued: type unknown */
    char unknown_types[LDR_HELD_TYPES_MAX]; /* their types, comma-separated */
};

/* What one load attempt did. */
struct ldr_load_result {
    bool commit_sent;        /* COMMIT went out: on failure the outcome is unknown */
    uint64_t committed_last; /* 0, or last_seq of an earlier commit of this batch */
};

/* ldr_batch_init - zero b and allocate its groups. Returns 0 or DP_ERR_NOMEM. */
int ldr_batch_init(struct ldr_batch *b, const char *queue_id);

/* ldr_batch_free - release b's memory. NULL-safe. */
void ldr_batch_free(struct ldr_batch *b);

/*
 * ldr_batch_read - make b the events of q from `from` on, none beyond end, at most
 * max_events of them and max_bytes of JSON (0: no byte limit; one event always fits), read
 * in one read transaction and copied into b. The only read of the batch: ldr_batch_build
 * and the isolation of bad rows work from the copy.
 * Sets b->first, b->last and b->events (0 when the queue holds none of from..end).
 * Returns 0, DP_ERR_IO (queue error), DP_ERR_NOMEM.
 */
int ldr_batch_read(struct ldr_batch *b, struct queue *q, uint64_t from, uint64_t end,
                   size_t max_events, size_t max_bytes);

/*
 * ldr_batch_claim - ldr_batch_read for a run: an event whose type the registry does not
 * know (a declared type removed while its events waited) never enters b. Before the first
 * event it is skipped, counted in b->unknown, its type noted in b->unknown_types; after one,
 * the range ends before it. It stays queued, since ranges are deleted first..last.
 * Returns like ldr_batch_read.
 */
int ldr_batch_claim(struct ldr_batch *b, struct queue *q, uint64_t from, uint64_t end,
                    size_t max_events, size_t max_bytes);

/*
 * ldr_batch_event - a view of b's held event i (i < b->events) into ev, valid until b is read
 * again: the copy that encoding and the isolation of bad rows work from.
 */
void ldr_batch_event(const struct ldr_batch *b, size_t i, struct queue_event *ev);

/*
 * ldr_batch_dead_event - append a dead_letter row for ev (a held event, see ldr_batch_event) to
 * b->dead: stage "ingest" or "load", error (error_len bytes, need not be terminated) as its
 * error text; raw truncated to b->dead_raw_max bytes with a note. On failure nothing is
 * appended. Returns 0 or DP_ERR_NOMEM.
 */
int ldr_batch_dead_event(struct ldr_batch *b, const struct queue_event *ev, const char *stage,
                         const char *error, size_t error_len);

/* ldr_held_note - add type (len bytes) to the comma list in list (cap bytes), once. */
void ldr_held_note(char *list, size_t cap, const char *type, size_t len);

/*
 * ldr_batch_build - encode the events b holds: rows per type, dead_letter rows for events
 * rejected at ingest, of an unknown type or refused by their encoder.
 * Returns 0 or DP_ERR_NOMEM.
 */
int ldr_batch_build(struct ldr_batch *b);

#define LDR_META_OPS_EXTRA 6 /* ldr_batch_meta's ops beyond three per group */

/*
 * ldr_batch_meta - the metadata changes for deleting b: per-type loaded, duplicate and conflict
 * counters, dead letters, batches, last success at now_us, the watermark. ops must hold
 * LDR_META_OPS entries.
 * Returns how many were written.
 */
size_t ldr_batch_meta(const struct ldr_batch *b, int64_t now_us, struct queue_meta_op *ops);

/* ldr_batch_loaded - rows of b that went into their tables in the last attempt. */
size_t ldr_batch_loaded(const struct ldr_batch *b);

/* ldr_batch_skipped - keyed rows of b already in their tables (last attempt). */
size_t ldr_batch_skipped(const struct ldr_batch *b);

/* ldr_batch_dead - rows of b filed into dead_letter in the last attempt. */
size_t ldr_batch_dead(const struct ldr_batch *b);

/*
 * ldr_batch_outcome - what the last attempt at b did that ldr_batch_build cannot tell again,
 * for its loader_batches row: a line "<type>\t<keyed 0|1>\t<bad>\t<skipped>\t<conflicts>\n"
 * per group with rows dead-lettered or skipped; "" when every row of every group loaded.
 * *out is malloc'd. Returns 0 or DP_ERR_NOMEM.
 */
int ldr_batch_outcome(const struct ldr_batch *b, char **out);

/*
 * ldr_batch_settle - give b (built by ldr_batch_build) the figures of an attempt that
 * committed without this process seeing them (a lost COMMIT answer, a crash before the
 * queue delete): outcome as ldr_batch_outcome wrote it, NULL or "" if every row loaded.
 * Lines naming a type b has no group for are logged and left out.
 */
void ldr_batch_settle(struct ldr_batch *b, const char *outcome);

/*
 * ldr_put_clean_text - append s (n bytes) as a COPY text value that is valid UTF-8 without
 * NUL: invalid bytes and NUL become "\xNN" (as text). Returns 0 or DP_ERR_NOMEM.
 */
int ldr_put_clean_text(struct ev_buf *b, const char *s, size_t n);

/* ---- the load of a batch (load.c) ----------------------------------------------------- */

/*
 * ldr_batch_load - one attempt to load b in one transaction on pg: loader_batches row,
 * COPY per type (halving on bad rows until they are isolated into dead_letter), the
 * dead_letter rows, COMMIT.
 *   fault: NULL or a test's hook.
 *   res: receives what happened (see struct ldr_load_result).
 * Returns 0 (committed now, or earlier: res->committed_last), DP_ERR_RETRY (rolled back, or
 * unknown if res->commit_sent: the caller must close pg either way), DP_ERR_NOMEM.
 */
int ldr_batch_load(struct ldr_batch *b, struct ldr_pg *pg, const struct ldr_fault_ops *fault,
                   struct ldr_load_result *res);

/* A keyed row ldr_keyed_load left out: its key held by another event. */
struct ldr_keyed_left {
    uint8_t id[16];            /* the event's id */
    char holder[EV_UUID_TEXT]; /* the id of the row that holds the key */
    bool no_digest;            /* that row was loaded before digests were kept */
    bool repeat;               /* that row has this one's digest: the same event */
};

struct ldr_keyed_lefts {
    struct ldr_keyed_left *v; /* malloc'd; the caller frees it */
    size_t n;
    size_t cap;
};

#define LDR_KEYED_TEXT_MAX (EV_KEY_MAX + 3 * EV_UUID_TEXT + 160) /* ldr_keyed_text, with NUL */

/*
 * ldr_keyed_load - the keyed path of a batch and of a replay (replay.c), inside the caller's
 * transaction and savepoint: COPY rows (data, len bytes; PostgreSQL's binary format when
 * binary) of keyed type t into its temp keyed table, then INSERT them into t's table leaving
 * out every key it holds already and a key twice in these rows (the first inserted wins). A
 * partitioned table (ldr_pg_parted) has no unique index: its keys go first into its key table
 * (part.c), in the same transaction.
 *   repeats: also list the rows left out whose key is held with the same digest (a replay
 *   keeps them as dead letters); false: only those held with other bytes or no digest.
 *   inserted: receives the rows inserted.
 *   left: the rows left out are appended to it (its v grown with realloc).
 * Returns 0, DP_ERR_DATA (PostgreSQL refused the rows for their data: roll back to the
 * savepoint), DP_ERR_RETRY, DP_ERR_NOMEM.
 */
int ldr_keyed_load(struct ldr_pg *pg, const struct ev_type *t, const char *data, size_t len,
                   bool binary, bool repeats, uint64_t *inserted, struct ldr_keyed_lefts *left);

/* ldr_keyed_text - the dead_letter error of left-out row k with its key (key_len bytes). */
void ldr_keyed_text(char *out, size_t len, const char *key, size_t key_len,
                    const struct ldr_keyed_left *k);

/*
 * ldr_dead_reduce - copy the dead_letter COPY rows src (n bytes, as batch.c writes them:
 * valid UTF-8) into dst reduced to ASCII, for a database that refused their text (one whose
 * encoding cannot hold it): every non-ASCII character becomes "\uXXXX" (or "\UXXXXXXXX")
 * and each row's error text gets a note that it was reduced. Returns 0 or DP_ERR_NOMEM.
 */
int ldr_dead_reduce(struct ev_buf *dst, const char *src, size_t n);

/* ---- the loader's state (loader.c), its back-off (backoff.c), its figures (runstats.c) - */

/* One worker: a thread of a run, with its own connection and batch. */
struct ldr_worker {
    struct ldr *l;
    int index;
    struct ldr_pg *pg;         /* NULL while not connected */
    int64_t used_ms;           /* monotonic ms of pg's last use */
    uint32_t rnd;              /* xorshift32 state, for jitter */
    struct ldr_batch batch;    /* reused from batch to batch */
    struct queue_meta_op *ops; /* LDR_META_OPS entries, for the delete */
    pthread_t thread;
    bool started; /* thread is running this run */
    bool waiting; /* in a back-off sleep; guarded by l->mu */
    int attempt;  /* failed attempts in a row; guarded by l->mu */
};

/* The loader: its options, its workers and the state of the run going on. */
struct ldr {
    struct queue *q; /* borrowed */
    char *queue_id;
    const char *instance;   /* the queue's instance id (queue_instance) */
    bool instance_assigned; /* the queue is older than instance ids */
    int64_t epoch;          /* the queue's lease, taken by ldr_start; 0 before */
    char *conninfo;
    char *schema;
    int batch_rows;
    int n_workers;
    int give_up_attempts;
    const struct ldr_fault_ops *fault; /* borrowed, usually NULL */
    struct dp_retention *retention;    /* a copy of the options' rules; NULL: none */
    struct ldr_worker *workers;

    pthread_mutex_t mu; /* guards everything below and the workers' flags */
    pthread_cond_t cv;  /* back-off sleeps; broadcast on stop and abort */
    bool stop;          /* ldr_stop(): for good */
    bool abort;         /* the run failed: no new batches in it */
    bool running;
    bool started;    /* ldr_start succeeded */
    uint64_t cursor; /* next sequence number to claim */
    uint64_t end;    /* the run loads up to here (and to its batch's end) */
    int run_rc;      /* first failure of the run */
    struct ldr_run_stats run;
    struct ldr_run_stats total;
    char last_error[LDR_ERR_MAX];
    char held_types[LDR_HELD_TYPES_MAX]; /* types of the events held this run, comma list */
    bool refused;                        /* this queue does not own queue.id: for good */
    char refusal[LDR_REFUSAL_MAX];       /* why, and what to do */
};

/*
 * ldr_error_public - err (a failure's full text, for the loader's log) of what failed
 * (ldr_backoff's what) reduced to what /v1/status may show anyone: "connection: ..."
 * without host names, addresses or user names for a failure to connect or a lost
 * connection, "queue: <err>" when what is the queue's, else "database: <err>" (a
 * statement's error, which names no connection detail).
 * out receives len bytes at most, NUL-terminated.
 */
void ldr_error_public(const char *what, const char *err, char *out, size_t len);

/*
 * ldr_run_begin - a run starts: reset its figures and its state (cursor, end, abort, failure),
 * mark it running, and record its start in the queue's metadata (last run "running").
 */
void ldr_run_begin(struct ldr *l);

/*
 * ldr_run_end - the run ended with rc (0, DP_ERR_CLOSED: stopped, else failed): add its
 * figures to the totals, record its end, events, result ("ok", "stopped", "error: ..." as
 * /v1/status may show it), held events and its line of the last runs in the queue's
 * metadata, clear the last error after a success, and log it (at debug when it moved nothing
 * and met no failure), warning about held events.
 *   st: receives the run's figures (may be NULL).
 */
void ldr_run_end(struct ldr *l, int rc, struct ldr_run_stats *st);

/* ldr_halted - whether ldr_stop was called or the run failed (no new batches then). */
bool ldr_halted(struct ldr *l);

/*
 * ldr_backoff - after a failed attempt (what failed: what; why: err): count it in *attempt,
 * record it for STATUS= and /metrics, give up if the options allow, else sleep the capped,
 * jittered back-off (woken early by ldr_stop or an aborted run).
 * Returns 0 (try again), DP_ERR_RETRY (gave up), DP_ERR_CLOSED (stopped while waiting).
 */
int ldr_backoff(struct ldr_worker *w, int *attempt, const char *what, const char *err);

/* ---- a worker's connection (conn.c) ---- */

/* ldr_close - close w's connection (NULL-safe); the next ldr_ensure connects again. */
void ldr_close(struct ldr_worker *w);

/*
 * ldr_ensure - connect w if it is not, or was idle so long that the server may have
 * dropped it, and make sure of the schema. Returns 0 or an error with err set (len bytes).
 */
int ldr_ensure(struct ldr_worker *w, char *err, size_t len);

/* ---- the queue's identity (identity.c) ---- */

/*
 * ldr_own - check that this queue owns queue.id on w's connection, claiming it when nobody
 * does (identity.c). Runs before anything reads loader_batches or deletes from the queue (the
 * batch transactions check again). A queue found not to own it is refused for good: logged,
 * recorded for /v1/status, ldr_refused true.
 * Returns 0, DP_ERR_CONFIG (refused), DP_ERR_RETRY (err set), DP_ERR_IO, DP_ERR_NOMEM.
 */
int ldr_own(struct ldr_worker *w, char *err, size_t len);

/*
 * ldr_refuse_pg - a statement on w's connection found that this queue no longer owns
 * queue.id (an adoption in between): refuse for good. Returns DP_ERR_CONFIG.
 */
int ldr_refuse_pg(struct ldr_worker *w);

#endif
