/*
 * queue.h - the durable LMDB queue shared by datapipe-server (appends) and
 * datapipe-loader (reads, deletes). Only queue/ includes lmdb.h.
 *
 * Invariants:
 *  - queue_append() returns 0 only after the LMDB transaction holding every
 *    one of its events has committed (fsync'd when sync is true): the server
 *    answers 2xx only after that.
 *  - An append is all or nothing: a failed append stored none of its events.
 *  - Sequence numbers strictly increase and never repeat, even after the queue
 *    was emptied and reopened (the next number is persisted with the appends).
 *  - The loader deletes a range only after PostgreSQL committed those events
 *    together with their loader_batches row.
 *  - An idempotency key is recorded in the transaction that appends its event, so the
 *    key is exactly as durable as the event; a key's event is appended at most once
 *    within the dedup window (queue_set_dedup_window).
 */
#ifndef DP_QUEUE_H
#define DP_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QUEUE_RECORD_VERSION 3     /* written; versions 1 (no key), 2 (no source) still read */
#define QUEUE_TYPE_MAX 64          /* longest event type name, bytes */
#define QUEUE_ERROR_MAX 1024       /* longest stored ingest error, bytes */
#define QUEUE_KEY_MAX 255          /* longest idempotency key, bytes */
#define QUEUE_SOURCE_MAX 63        /* longest source (an API key's name), bytes */
#define QUEUE_DIGEST_LEN 32        /* bytes of an event's digest (SHA-256) */
#define QUEUE_DEDUP_WINDOW_S 86400 /* default dedup window, seconds (queue.dedup_window_s) */
#define QUEUE_PRUNE_STEP 256       /* most expired keys one append transaction removes */
#define QUEUE_INSTANCE_ID_LEN 32   /* hex digits of an instance id (128 random bits) */

/* queue_event.flags */
#define QUEUE_F_REJECTED 0x01u /* rejected at ingest: goes to dead_letter, stage ingest */

struct queue;

/* What queue_append() did with a keyed event (queue_event.dedup). */
enum queue_dedup {
    QUEUE_DEDUP_NEW = 0,  /* appended; its key (if any) is now recorded */
    QUEUE_DEDUP_REPEAT,   /* key known with the same digest: nothing appended */
    QUEUE_DEDUP_CONFLICT, /* key known with another digest: nothing appended */
    QUEUE_DEDUP_FILED,    /* key known with another digest: appended rejected, with the
                             error text of queue_append_filing's function */
    QUEUE_DEDUP_FOLLOWED, /* follows an event of its call that was not appended as NEW:
                             nothing appended, its key not claimed */
};

/*
 * One event, as handed to queue_append() and as seen by queue_read().
 * On append the caller owns every pointer; the queue copies the bytes before
 * queue_append() returns. On read every pointer is a view into the LMDB map,
 * valid only during the callback: copy what you keep.
 *
 * Idempotency keys: an event with key_len > 0 and without QUEUE_F_REJECTED is checked
 * against the keys recorded within the dedup window, in append order, inside the append's
 * transaction (so a second event with one key in the same call sees the first):
 *   - key unknown or older than the window: the event is appended and the key recorded
 *     with digest, uuid, seq and answer (dedup = QUEUE_DEDUP_NEW);
 *   - same digest: nothing is appended, dedup = QUEUE_DEDUP_REPEAT, and seq, orig_uuid and
 *     orig_answer are those recorded with the key;
 *   - another digest: nothing is appended, dedup = QUEUE_DEDUP_CONFLICT, orig_uuid and seq
 *     are the recorded event's (the caller decides whether to file it as rejected).
 * A rejected event's key is stored with it (for dead_letter) but neither checked nor
 * recorded.
 */
struct queue_event {
    uint64_t seq;        /* sequence number: set by append, given on read */
    uint8_t uuid[16];    /* the event's id (a UUIDv7), set by the caller */
    int64_t received_us; /* microseconds since the epoch, set by the caller; 0: set by
                            queue_append to its commit's time (QUEUE_STAMP) */
    uint32_t flags;      /* QUEUE_F_* */
    const char *type;    /* event type name, not NUL-terminated on read */
    size_t type_len;     /* bytes, at most QUEUE_TYPE_MAX */
    const char *error;   /* with QUEUE_F_REJECTED: why; else NULL */
    size_t error_len;    /* bytes, at most QUEUE_ERROR_MAX (longer is cut) */
    const char *json;    /* the event's bytes exactly as received */
    size_t json_len;     /* bytes */
    const char *key;     /* idempotency key, stored with the event; NULL if none */
    size_t key_len;      /* bytes, 0 (no key) to QUEUE_KEY_MAX */
    const char *source;  /* who sent it: the API key's name; NULL if none */
    size_t source_len;   /* bytes, 0 (none) to QUEUE_SOURCE_MAX */
    /* in, append only, with a key: */
    uint8_t digest[QUEUE_DIGEST_LEN]; /* the event's digest, compared on a repeat */
    uint16_t answer;                  /* the HTTP status the caller answers (202, 204), recorded */
    /* in, append only: 0, or k (1 to its index in the call): the event is derived from the
     * one k places before it in the same call (a row computed from that message) and shares
     * its fate: appended only when that one was appended as NEW, else QUEUE_DEDUP_FOLLOWED.
     * Decided in the commit's transaction, so a repeat or a conflict never adds derived rows. */
    uint32_t follows;
    /* out, append only: */
    enum queue_dedup dedup; /* what happened to the event */
    uint8_t orig_uuid[16];  /* REPEAT, CONFLICT: the uuid recorded with the key */
    uint16_t orig_answer;   /* REPEAT: the answer recorded with the key */
};

struct queue_stats {
    uint64_t events;            /* events queued (mdb_stat entries) */
    uint64_t bytes;             /* pages of the queue's databases x page size */
    uint64_t capacity_bytes;    /* map size: queue.max_bytes */
    uint64_t first_seq;         /* oldest queued sequence number, 0 when empty */
    uint64_t next_seq;          /* the number the next append gets */
    int64_t oldest_received_us; /* received_us of the oldest event, 0 when empty */
    /* Conservation, read in the same transaction as events, so that
     * accepted == loaded + dead_lettered + events holds exactly. */
    uint64_t accepted;      /* events ever appended (QUEUE_META_ACCEPTED) */
    uint64_t loaded;        /* events ever loaded (sum of QUEUE_META_LOADER_LOADED_PREFIX*) */
    uint64_t dead_lettered; /* events ever dead-lettered (QUEUE_META_LOADER_DEAD_LETTERS) */
};

/*
 * queue_open - open (creating it and missing parents, mode 0700) the LMDB
 * environment in directory path. Runs mdb_reader_check to clear stale reader
 * slots. Both daemons must open it with the same max_bytes. A queue without an
 * instance id gets one here (see queue_instance).
 *   out: receives the queue; free with queue_close().
 *   max_bytes: LMDB map size, at least 256 KiB; appends fail with DP_ERR_FULL
 *     once the events fill all but a reserve of 1/64 of it (at least 32
 *     pages), kept so that deletes, which need fresh pages too, always run;
 *     and on a full disk once fewer than 128 pages are left free inside the data
 *     file or preallocated (posix_fallocate) past its end, for the same reason.
 *   sync: fsync at every commit (false: faster, a power cut may lose events).
 * Returns 0, DP_ERR_NOMEM, DP_ERR_INVALID (path unusable, map too small),
 * DP_ERR_IO (any other LMDB or system error; logged with LMDB's text).
 */
int queue_open(struct queue **out, const char *path, uint64_t max_bytes, bool sync);

/*
 * queue_instance - the queue's instance id: 128 random bits (getrandom) as
 * QUEUE_INSTANCE_ID_LEN lower-case hex digits, drawn in the transaction that
 * first opened the environment and never changed afterwards. It tells this
 * queue from another one that was given the same queue.id: a recreated
 * queue.path (a replaced disk) or a second appliance. PostgreSQL records which
 * instance owns each queue.id, and the loader loads and deletes nothing for a
 * queue that does not own its queue.id. A copy of the directory keeps the id.
 *   assigned: receives true (may be NULL) when the id was given to a queue
 *     that existed, with events or a used sequence counter, before instance
 *     ids did: such a queue's history cannot be told apart from another
 *     queue's under the same queue.id, and the loader is conservative with it.
 * Returns the NUL-terminated id, valid until queue_close(). Never fails:
 * queue_open() fails instead (DP_ERR_IO) if no random bits can be had.
 */
const char *queue_instance(const struct queue *q, bool *assigned);

/*
 * queue_close - wait for appends in flight, then close. queue_close(NULL) is
 * a no-op. No call on q may start after this one.
 */
void queue_close(struct queue *q);

/*
 * queue_append - durably append n events, in order, as one unit.
 * Blocks until they are committed (group commit: one committer writes the
 * events of every waiting caller in one transaction). Sets evs[i].seq and the
 * out fields (dedup, orig_uuid, orig_answer: see struct queue_event); keys are
 * recorded, and up to QUEUE_PRUNE_STEP expired keys removed, in the same transaction.
 * Sets evs[i].received_us where the caller left it 0: to the wall clock read inside
 * the commit's write transaction, never below the stamp of an earlier commit of
 * this process. Stamped events' received_us therefore never decrease with seq,
 * and an event committed later never gets a stamp below a time read in any
 * write transaction that ran before its commit (queue_watermark relies on it).
 * Thread-safe.
 * Returns 0 (all stored and durable, repeats and conflicts as the out fields
 * say), DP_ERR_FULL (map full or disk full, the keys counting with the events:
 * none stored; retry after the loader frees space or keys expire),
 * DP_ERR_INVALID (n == 0, a type empty or longer than QUEUE_TYPE_MAX, a key
 * longer than QUEUE_KEY_MAX, a source longer than QUEUE_SOURCE_MAX, a follows beyond the
 * call's start, a record, or the n
 * records together, larger than half the map: too large for this queue however empty,
 * refused without marking it full), DP_ERR_IO
 * (other write error: none stored), DP_ERR_CLOSED (queue closing), DP_ERR_NOMEM.
 */
int queue_append(struct queue *q, struct queue_event *evs, size_t n);

/*
 * The error text of an event whose key conflicts (dedup QUEUE_DEDUP_CONFLICT, orig_uuid and
 * seq those recorded with the key), written into buf (len bytes, NUL-terminated). Returns
 * its length, or 0 to leave the event out. Called inside the append's write transaction,
 * on whichever thread commits it: it must not block, take a lock, or call the queue.
 */
typedef size_t queue_conflict_fn(void *arg, const struct queue_event *ev, char *buf, size_t len);

/*
 * queue_append_filing - as queue_append, but an event whose key conflicts is, when fn gives
 * it a text, stored rejected (QUEUE_F_REJECTED: for dead_letter) with that text as its
 * error, in the same transaction as the call's other events and with the same stamp: its
 * dedup is QUEUE_DEDUP_FILED, seq its own, orig_uuid the recorded event's; the caller's
 * copy keeps its flags and error. So everything a call stores, filed conflicts included,
 * is stored together or not at all. fn NULL: queue_append. Returns as queue_append.
 */
int queue_append_filing(struct queue *q, struct queue_event *evs, size_t n, queue_conflict_fn *fn,
                        void *arg);

/*
 * queue_set_dedup_window - how long a recorded idempotency key is remembered, in seconds
 * (window_s >= 1; QUEUE_DEDUP_WINDOW_S after queue_open). A key older than the window is
 * treated as unknown and pruned. Safe to call at any time from any thread (SIGHUP).
 */
void queue_set_dedup_window(struct queue *q, int64_t window_s);

/*
 * Callback for queue_read(): called once per event in key order, inside one
 * read transaction. ev and everything it points to die when it returns.
 * Return 0 to go on, 1 to stop after this event, negative dp_err to abort
 * (queue_read then returns that value).
 */
typedef int (*queue_read_fn)(void *arg, const struct queue_event *ev);

/*
 * queue_read - visit events with seq >= from_seq in key order, at most
 * max_events of them and, once at least one was visited, stopping before the
 * running total of json_len would exceed max_bytes (0: no byte limit).
 *   last_seq: receives the seq of the last event visited, or 0 if none.
 *   count: receives how many were visited (may be NULL).
 * Does not copy values. Returns 0 (also when none), the callback's negative
 * value, DP_ERR_IO (LMDB error or a corrupt record, logged).
 */
int queue_read(struct queue *q, uint64_t from_seq, size_t max_events, size_t max_bytes,
               queue_read_fn fn, void *arg, uint64_t *last_seq, size_t *count);

/* One change to the metadata database, applied in queue_delete_range's transaction. */
enum queue_meta_kind {
    QUEUE_META_ADD, /* int64 counter += value */
    QUEUE_META_SET, /* int64 counter = value */
    QUEUE_META_STR, /* string = str (NUL-terminated) */
    QUEUE_META_MAX, /* int64 counter = max(counter, value): never goes back */
};

struct queue_meta_op {
    const char *name; /* key, at most 200 bytes */
    enum queue_meta_kind kind;
    int64_t value;
    const char *str;
};

/*
 * Well-known metadata keys: where the two daemons meet. The loader writes them, the server
 * reads them for /metrics and /v1/status; each name is defined here and nowhere else.
 * Counters are int64 (QUEUE_META_ADD), the _US entries int64 wall-clock microseconds since
 * the epoch (QUEUE_META_SET), the rest strings (QUEUE_META_STR). The names are stored on
 * disk: renaming one loses its value. Per-batch figures change in the transaction that
 * deletes the batch (queue_delete_range), so they never count a batch twice.
 */
/* + an event type name: counter of events loaded into that type's table */
#define QUEUE_META_LOADER_LOADED_PREFIX "loader.loaded."
/* + an event type name: counter of keyed rows skipped, their key already in the table */
#define QUEUE_META_LOADER_DUPLICATES_PREFIX "loader.duplicates."
/* + an event type name: counter of keyed rows filed into dead_letter, their key already in
 * the table with other bytes (counted in the dead letters too) */
#define QUEUE_META_LOADER_KEY_CONFLICTS_PREFIX "loader.key_conflicts."
/* + an event type name: counter of the type's day partitions dropped past their retention */
#define QUEUE_META_LOADER_PARTITIONS_DROPPED_PREFIX "loader.partitions_dropped."
/* + an event type name: counter of rows those partitions held */
#define QUEUE_META_LOADER_ROWS_DROPPED_PREFIX "loader.rows_dropped."
/* counter: rows filed into dead_letter, both stages */
#define QUEUE_META_LOADER_DEAD_LETTERS "loader.dead_letters"
/* counter: of which rejected at ingest */
#define QUEUE_META_LOADER_DEAD_INGEST "loader.dead_letters.ingest"
/* counter: of which failed at load (encoder or PostgreSQL) */
#define QUEUE_META_LOADER_DEAD_LOAD "loader.dead_letters.load"
/* counter: batches committed and deleted from the queue */
#define QUEUE_META_LOADER_BATCHES "loader.batches"
/* when the last batch committed */
#define QUEUE_META_LOADER_LAST_SUCCESS_US "loader.last_success_us"
/* counter: back-offs after PostgreSQL or queue failures (a failure given up on is none) */
#define QUEUE_META_LOADER_RETRIES "loader.retries"
/* counter: PostgreSQL or queue failures, each failed attempt (retried or given up on) */
#define QUEUE_META_LOADER_ERRORS "loader.errors"
/* string: the last failure of the running or last run; "" once a run succeeded */
#define QUEUE_META_LOADER_LAST_ERROR "loader.last_error"
/* when the last failure happened (never cleared) */
#define QUEUE_META_LOADER_LAST_ERROR_US "loader.last_error_us"
/* when the last run started */
#define QUEUE_META_LOADER_LAST_RUN_US "loader.last_run_us"
/* when it ended (0 while a run is going on) */
#define QUEUE_META_LOADER_LAST_RUN_END_US "loader.last_run_end_us"
/* int64: events the last run took off the queue */
#define QUEUE_META_LOADER_LAST_RUN_EVENTS "loader.last_run_events"
/* string: "running", "ok", "stopped" or "error: <text>" */
#define QUEUE_META_LOADER_LAST_RUN_RESULT "loader.last_run_result"
/* when this loader process became ready */
#define QUEUE_META_LOADER_STARTED_US "loader.started_us"
/* int64: events the last run left queued: their type is not declared (any more) */
#define QUEUE_META_LOADER_HELD "loader.held_events"
/* string: those events' types, comma-separated */
#define QUEUE_META_LOADER_HELD_TYPES "loader.held_types"
/*
 * string: the loader's last runs, newest first, at most QUEUE_LOADER_RUNS_MAX lines, each
 * "START_US END_US EVENTS LOADED DEAD_LETTERS RESULT" (RESULT as LAST_RUN_RESULT, to the
 * end of the line, at most QUEUE_LOADER_RUN_RESULT_MAX bytes)
 */
#define QUEUE_META_LOADER_RUNS "loader.runs"
#define QUEUE_LOADER_RUNS_MAX 10
#define QUEUE_LOADER_RUN_RESULT_MAX 200

/*
 * counter: events ever appended, written by the queue itself in each append's transaction
 * (including events rejected at ingest, which are queued for dead_letter). With the
 * loader's counters, which change in the transaction that deletes what they count, it
 * makes the conservation equation exact at every commit:
 *   accepted = sum(loader.loaded.*) + sum(loader.duplicates.*) + loader.dead_letters
 *              + events queued.
 * A queue created before this counter existed gets it at queue_open(), set so that the
 * equation holds from then on.
 */
#define QUEUE_META_ACCEPTED "queue.accepted"

/*
 * the completeness watermark (QUEUE_META_MAX): every event this queue acknowledged with
 * received_us below it is in PostgreSQL, in its table or in dead_letter (queue_watermark)
 */
#define QUEUE_META_LOADER_LOADED_THROUGH_US "loader.loaded_through_us"

/*
 * string: why the loader refuses to load or delete anything (this queue does not own its
 * queue.id in PostgreSQL) and what the operator can do; "" while it does not refuse
 */
#define QUEUE_META_LOADER_REFUSED "loader.refused"

/*
 * the loader's heartbeat: wall-clock microseconds, written every QUEUE_HEARTBEAT_S while the
 * loader daemon runs (in the middle of a long run or a back-off too) and at every run's
 * start; the server's /v1/status says "failing" once it is older than
 * QUEUE_HEARTBEAT_LATE_S. 0: no loader ever ran on this queue.
 */
#define QUEUE_META_LOADER_HEARTBEAT_US "loader.heartbeat_us"
/* the loader's loader.interval_s as it runs now, written with the heartbeat */
#define QUEUE_META_LOADER_INTERVAL_S "loader.interval_s"
#define QUEUE_HEARTBEAT_S 5       /* seconds between two heartbeats of a running loader */
#define QUEUE_HEARTBEAT_LATE_S 16 /* a heartbeat older than this: no loader is running */

/*
 * queue_delete_range - delete every event with first <= seq <= last, and apply
 * the n metadata changes, in one write transaction. Events already gone are
 * not an error (recovery may delete twice). Thread-safe.
 * Returns 0, DP_ERR_INVALID (first > last, or a bad op: nothing changed),
 * DP_ERR_FULL, DP_ERR_IO.
 */
int queue_delete_range(struct queue *q, uint64_t first, uint64_t last,
                       const struct queue_meta_op *ops, size_t n);

/*
 * queue_meta_apply - apply n metadata changes in one write transaction.
 * Returns 0, DP_ERR_INVALID (a name empty or too long, ADD to a string, STR
 * with a NULL str: nothing changed), DP_ERR_FULL, DP_ERR_IO.
 */
int queue_meta_apply(struct queue *q, const struct queue_meta_op *ops, size_t n);

/*
 * queue_meta_get - read an int64 counter. Missing: *out = 0 and
 * DP_ERR_NOTFOUND. Returns 0, DP_ERR_NOTFOUND, DP_ERR_INVALID (bad name, or
 * the value is a string), DP_ERR_IO.
 */
int queue_meta_get(struct queue *q, const char *name, int64_t *out);

/*
 * queue_meta_get_str - copy a string value into buf (NUL-terminated, cut to
 * len - 1). Missing: buf = "" and DP_ERR_NOTFOUND.
 * Returns 0, DP_ERR_NOTFOUND, DP_ERR_INVALID (len == 0, bad name, or the value
 * is a counter), DP_ERR_IO.
 */
int queue_meta_get_str(struct queue *q, const char *name, char *buf, size_t len);

/*
 * Visit every metadata entry whose name starts with prefix (counters only:
 * strings are skipped). Used by /metrics for per-type counters.
 * Returns 0 or DP_ERR_IO.
 */
typedef void (*queue_meta_fn)(void *arg, const char *name, int64_t value);
int queue_meta_each(struct queue *q, const char *prefix, queue_meta_fn fn, void *arg);

/*
 * queue_find - look for the event whose id is uuid, a UUIDv7, without an index: its
 * 48-bit millisecond time t is when the server created it, just before its commit stamped
 * received_us (queue_append), and stamped received_us never decrease with seq. So a binary
 * search over the keys finds the first event with received_us >= t, and a scan from there
 * compares ids until received_us passes t + QUEUE_FIND_WINDOW_MS. Cost: about 2 log2(n)
 * cursor seeks, plus one 16-byte compare per event committed in the window after t (stops
 * at the match). An event committed later than the window after its id was made (a stall
 * of more than QUEUE_FIND_WINDOW_MS between the two) is not found.
 *   fn: called once, inside the read transaction, with the event when found.
 * Returns 0 (found: fn's value if negative), DP_ERR_NOTFOUND, DP_ERR_IO.
 */
#define QUEUE_FIND_WINDOW_MS 2000
int queue_find(struct queue *q, const uint8_t uuid[16], queue_read_fn fn, void *arg);

/*
 * queue_watermark - the completeness watermark as the queue sees it, for a loader about to
 * commit the events skip_first..skip_last (0, 0: none) into PostgreSQL: the received_us of
 * the first queued event outside that range, or, when there is none, the wall clock now.
 * Read inside a write transaction (then aborted), which LMDB serializes with appends: every
 * event committed afterwards is stamped at or above the clock read here (queue_append). So
 * once the range is in PostgreSQL, every stamped event with received_us below the answer
 * is there too: it was either in the range, or already deleted, which happens only after
 * PostgreSQL committed it. Returns 0, DP_ERR_FULL, DP_ERR_IO.
 */
int queue_watermark(struct queue *q, uint64_t skip_first, uint64_t skip_last, int64_t *out_us);

/*
 * queue_stats - counts without a full scan (mdb_stat, mdb_env_info, one
 * cursor step for the oldest event, the conservation counters), all from one
 * read transaction. Returns 0 or DP_ERR_IO.
 */
int queue_stats(struct queue *q, struct queue_stats *out);

/*
 * queue_lock_loader - take the exclusive loader lock (flock on a file in the
 * queue directory), held until queue_close(). Returns 0, DP_ERR_BUSY (another
 * process holds it), DP_ERR_IO.
 */
int queue_lock_loader(struct queue *q);

/*
 * queue_commit_counts - how many write transactions appends have committed and how
 * many events they held since open (for events-per-fsync figures).
 */
void queue_commit_counts(struct queue *q, uint64_t *commits, uint64_t *events);

/* ---- datapipe-queue's operations (tool.c) ---- */

/*
 * queue_open_readonly - open the queue in directory path without writing to it (MDB_RDONLY:
 * no instance id drawn, no database created, no counter initialised), beside running
 * daemons. The map size is the one stored in the queue. Free with queue_close(). Only
 * queue_read, queue_stats, queue_check, queue_backup, queue_instance and the queue_meta_get
 * family may be called on it.
 * Returns 0, DP_ERR_NOTFOUND (no data file in path: never read as an empty queue),
 * DP_ERR_INVALID (not a queue, or one a datapipe-server never opened: a database missing),
 * DP_ERR_NOMEM, DP_ERR_IO. Each failure is logged with the path.
 */
int queue_open_readonly(struct queue **out, const char *path);

/*
 * queue_backup - a consistent copy of the queue as of one read transaction, taken while the
 * daemons go on appending and deleting, compacted (free pages left out), into dir/data.mdb
 * (dir is created, mode 0700, if missing); the file and the directory are fsync'd before it
 * returns. The copy keeps the instance id: restored in place of its queue it is that queue
 * (see README, "Backup and restore"). Never overwrites: a dir holding a data.mdb is refused.
 * Returns 0, DP_ERR_INVALID (dir unusable or holding a data.mdb), DP_ERR_FULL (no space:
 * the half copy is removed), DP_ERR_NOMEM, DP_ERR_IO.
 */
int queue_backup(struct queue *q, const char *dir);

/* What queue_check found, all from one read transaction. */
struct queue_check_report {
    uint64_t records;     /* entries of the events database */
    uint64_t bad_records; /* of which do not decode (each named to the callback) */
    uint64_t first_seq;   /* lowest sequence number queued, 0 when empty */
    uint64_t last_seq;    /* highest sequence number queued, 0 when empty */
    uint64_t next_seq;    /* the number the next append gets */
    uint64_t keys;        /* idempotency keys recorded */
    uint64_t key_times;   /* entries of the keys' age index */
    uint64_t bad_keys;    /* key records that do not decode */
    uint64_t accepted;    /* as in struct queue_stats */
    uint64_t loaded;
    uint64_t dead_lettered;
    bool accepted_recorded; /* the queue has its accepted counter (a queue last written
                               by a release before it has not: queue_open adds it) */
    bool counters_ok;       /* accepted == loaded + dead_lettered + records, or no
                               accepted counter yet */
    bool next_seq_ok;       /* next_seq > last_seq: no number can be handed out twice */
    bool keys_ok;           /* no bad key record, one age entry per key */
};

/* Called once per record that does not decode: its sequence number and why, in words. */
typedef void (*queue_check_fn)(void *arg, uint64_t seq, const char *why);

/*
 * queue_check - decode every record, count the keys, and hold the counters against the
 * records, in one read transaction; fills out whatever it finds (the caller judges).
 * Returns 0 (out filled), DP_ERR_IO (LMDB could not read the queue: logged).
 */
int queue_check(struct queue *q, struct queue_check_report *out, queue_check_fn fn, void *arg);

/*
 * queue_seq_advance - make the next append's sequence number at least next_seq (never moves
 * it back), in one write transaction. The loader calls it when PostgreSQL recorded numbers
 * this queue has not handed out yet: a queue restored from a backup, whose later numbers
 * were loaded from the original, must not hand them out again. was: receives the number
 * before (may be NULL). Returns 0, DP_ERR_FULL, DP_ERR_IO.
 */
int queue_seq_advance(struct queue *q, uint64_t next_seq, uint64_t *was);

#endif
