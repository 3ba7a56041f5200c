/*
 * internal.h - what the files of queue/ share and nothing else: struct queue, the record
 * format and its codec, and the transaction and error helpers (txn.c) and the core's (queue.c).
 * Not a public header: server/, loader/ and the tests include queue/queue.h.
 * The codec is static inline on purpose: the group commit encodes every event, and moving
 * code between files must not add a call per event.
 */
#ifndef DP_QUEUE_INTERNAL_H
#define DP_QUEUE_INTERNAL_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "queue/queue.h"
#include "queue/queue_test.h"

/* The sys database's key for the number the next append gets (8 bytes, big-endian). */
#define QUEUE_KEY_NEXT_SEQ "next_seq"
/* The sys database's key for the instance id (QUEUE_INSTANCE_ID_LEN hex digits). */
#define QUEUE_KEY_INSTANCE "instance_id"
/* Present (empty value) when the id was given to a queue that already existed without one. */
#define QUEUE_KEY_INSTANCE_ASSIGNED "instance_assigned"

/*
 * Record layout (all integers big-endian):
 *   0 version (QUEUE_RECORD_VERSION)   1 type_len   2-3 error_len   4-7 flags
 *   8-23 uuid   24-31 received_us   32 key_len   33 source_len   34.. type, error, key,
 *   source, json (json runs to the end)
 * Version 2 had no source_len byte (its type begins at byte 33), version 1 no key_len byte
 * either (its type begins at byte 32).
 */
#define QUEUE_REC_HEAD 34
#define QUEUE_REC_HEAD_V2 33
#define QUEUE_REC_HEAD_V1 32

/*
 * A recorded idempotency key (the keys database maps the key's bytes to this; integers
 * big-endian):
 *   0 version (1)   1-2 answer   3-10 recorded_us   11-18 seq   19-34 uuid   35-66 digest
 * The key_times database indexes the same keys by age: be64(recorded_us) + key -> "".
 */
#define QUEUE_KEYREC_VERSION 1
#define QUEUE_KEYREC_SIZE 67

/* One queue_append() call waiting for its events to become durable (commit.c). */
struct queue_waiter;

/* One open environment. The group-commit fields from mu down are explained in commit.c. */
struct queue {
    MDB_env *env;
    MDB_dbi events_dbi;
    MDB_dbi meta_dbi;
    MDB_dbi sys_dbi;
    MDB_dbi keys_dbi;          /* idempotency key -> key record */
    MDB_dbi key_times_dbi;     /* recorded_us + key -> "": the keys in age order */
    char *path;                /* the environment directory */
    bool sync;                 /* fsync at commit */
    uint64_t map_bytes;        /* the map size in effect */
    size_t limit_pages;        /* appends past this many event pages report full */
    size_t psize;              /* LMDB page size, bytes */
    size_t disk_reserve_pages; /* kept allocated on disk for the loader's deletes */
    uint64_t alloc_bytes;      /* the data file's blocks known allocated (posix_fallocate) */
    bool no_fallocate;         /* the file system cannot preallocate: no disk reserve */
    bool env_open;             /* mdb_env_open() succeeded */
    char instance[QUEUE_INSTANCE_ID_LEN + 1]; /* the instance id, fixed at open */
    bool instance_assigned; /* the id was given to a queue that existed without one */
    int lock_fd;            /* loader lock, -1 until queue_lock_loader() */
    bool full;              /* last append txn failed for space; committer only */
    int64_t stamp_us;       /* received_us stamped by the last append txn; committer only */
    _Atomic(const struct queue_fault_ops *) fault;
    _Atomic int64_t dedup_window_us; /* keys older than this are forgotten */

    pthread_mutex_t mu;        /* guards everything down to gen */
    pthread_cond_t idle_cv;    /* signalled when inflight drops to 0 while closing */
    struct queue_waiter *head; /* pending calls not yet taken by a committer */
    struct queue_waiter *tail;
    size_t pending;  /* calls in head..tail */
    size_t inflight; /* calls inside queue_append() */
    bool leading;    /* a batch is being committed or woken */
    bool closing;
    uint32_t gen; /* generation of the batch now accumulating */

    _Atomic uint32_t word[2];              /* wake words, futexes: QUEUE_B_* in commit.c */
    atomic_size_t exit_left;               /* callers of the batch being woken that have not left */
    size_t exit_groups;                    /* calls in that batch */
    atomic_uint_fast64_t commits;          /* append transactions committed */
    atomic_uint_fast64_t committed_events; /* events in them */
};

/* ---- byte order ---- */

static inline void
queue_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static inline uint64_t
queue_get_be64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* ---- records ---- */

static inline size_t
queue_rec_size(const struct queue_event *ev)
{
    return QUEUE_REC_HEAD + ev->type_len + ev->error_len + ev->key_len + ev->source_len +
           ev->json_len;
}

static inline void
queue_rec_encode(uint8_t *p, const struct queue_event *ev)
{
    p[0] = QUEUE_RECORD_VERSION;
    p[1] = (uint8_t)ev->type_len;
    p[2] = (uint8_t)(ev->error_len >> 8);
    p[3] = (uint8_t)ev->error_len;
    p[4] = (uint8_t)(ev->flags >> 24);
    p[5] = (uint8_t)(ev->flags >> 16);
    p[6] = (uint8_t)(ev->flags >> 8);
    p[7] = (uint8_t)ev->flags;
    memcpy(p + 8, ev->uuid, 16);
    queue_put_be64(p + 24, (uint64_t)ev->received_us);
    p[32] = (uint8_t)ev->key_len;
    p[33] = (uint8_t)ev->source_len;
    p += QUEUE_REC_HEAD;
    memcpy(p, ev->type, ev->type_len);
    p += ev->type_len;
    if (ev->error_len > 0) {
        memcpy(p, ev->error, ev->error_len);
        p += ev->error_len;
    }
    if (ev->key_len > 0) {
        memcpy(p, ev->key, ev->key_len);
        p += ev->key_len;
    }
    if (ev->source_len > 0) {
        memcpy(p, ev->source, ev->source_len);
        p += ev->source_len;
    }
    if (ev->json_len > 0) {
        memcpy(p, ev->json, ev->json_len);
    }
}

/*
 * Decode the record under key k (version 1, 2 or 3) into ev, whose pointers then point into
 * the map. Only the fields a reader sees are set. Returns 0 or MDB_CORRUPTED.
 */
static inline int
queue_rec_decode(const MDB_val *k, const MDB_val *v, struct queue_event *ev)
{
    const uint8_t *p = v->mv_data;
    size_t head;
    size_t type_len;
    size_t error_len;
    size_t key_len;
    size_t source_len = 0;

    if (k->mv_size != 8 || v->mv_size < QUEUE_REC_HEAD_V1) {
        return MDB_CORRUPTED;
    }
    if (p[0] == QUEUE_RECORD_VERSION && v->mv_size >= QUEUE_REC_HEAD) {
        head = QUEUE_REC_HEAD;
        key_len = p[32];
        source_len = p[33];
    } else if (p[0] == 2 && v->mv_size >= QUEUE_REC_HEAD_V2) {
        head = QUEUE_REC_HEAD_V2;
        key_len = p[32];
    } else if (p[0] == 1) {
        head = QUEUE_REC_HEAD_V1;
        key_len = 0;
    } else {
        return MDB_CORRUPTED;
    }
    type_len = p[1];
    error_len = ((size_t)p[2] << 8) | p[3];
    if (type_len == 0 || type_len > QUEUE_TYPE_MAX || error_len > QUEUE_ERROR_MAX ||
        source_len > QUEUE_SOURCE_MAX ||
        head + type_len + error_len + key_len + source_len > v->mv_size) {
        return MDB_CORRUPTED;
    }
    ev->seq = queue_get_be64(k->mv_data);
    ev->flags = ((uint32_t)p[4] << 24) | ((uint32_t)p[5] << 16) | ((uint32_t)p[6] << 8) | p[7];
    memcpy(ev->uuid, p + 8, 16);
    ev->received_us = (int64_t)queue_get_be64(p + 24);
    ev->type = (const char *)p + head;
    ev->type_len = type_len;
    ev->error = error_len > 0 ? ev->type + type_len : NULL;
    ev->error_len = error_len;
    ev->key = key_len > 0 ? ev->type + type_len + error_len : NULL;
    ev->key_len = key_len;
    ev->source = source_len > 0 ? ev->type + type_len + error_len + key_len : NULL;
    ev->source_len = source_len;
    ev->json = ev->type + type_len + error_len + key_len + source_len;
    ev->json_len = v->mv_size - head - type_len - error_len - key_len - source_len;
    return 0;
}

/* ---- transactions and errors, in txn.c (queue_disk_reserve: queue.c) ---- */

/*
 * Whether rc means "no room": map full, disk full, quota (also an EIO on a file system with
 * almost no space left).
 */
bool queue_rc_full(const struct queue *q, int rc);

/* queue_err's slow path, for rc != 0: translate and log. */
int queue_err_slow(const struct queue *q, int rc, const char *what);

/*
 * Translate an LMDB or errno code into a dp_err (0 stays 0), logging LMDB's own text. what
 * names the operation for the log line.
 */
static inline int
queue_err(const struct queue *q, int rc, const char *what)
{
    if (rc == 0) {
        return 0;
    }
    return queue_err_slow(q, rc, what);
}

/*
 * Begin a transaction. A reader table full of slots left by killed processes is cleared
 * once and the begin retried. Returns an LMDB code.
 */
int queue_txn_begin(struct queue *q, unsigned int flags, MDB_txn **txn);

/*
 * Commit txn (always consumed), first asking the test fault seam whether this commit should
 * fail instead. Returns an LMDB or errno code.
 */
int queue_txn_commit(struct queue *q, MDB_txn *txn, enum queue_txn_kind kind, size_t events);

/*
 * queue_disk_reserve - before an append transaction that will write about bytes: make
 * sure that after it the disk still holds a reserve for the loader's deletes, which need
 * fresh pages: free pages inside the data file, or pages past its end whose
 * blocks are allocated (posix_fallocate, grown here as needed). On a full disk the appends
 * fail first and the loader's deletes always find pages. Committer only.
 * Returns 0, or ENOSPC, EDQUOT, EIO...: the append must fail (as full).
 */
int queue_disk_reserve(struct queue *q, size_t bytes);

/*
 * The sequence number the next append gets, as seen by txn: the stored counter, or (in an
 * environment that has none yet) one past the last key. Returns an LMDB code.
 */
int queue_next_seq(struct queue *q, MDB_txn *txn, uint64_t *out);

/* ---- shared by meta.c and delete.c ---- */

/*
 * Apply the n metadata changes ops (NULL only when n is 0) in txn, the caller's write
 * transaction (meta.c). Returns an LMDB code (EINVAL for a bad name or op).
 */
int queue_meta_ops(struct queue *q, MDB_txn *txn, const struct queue_meta_op *ops, size_t n);

/*
 * Counters read and changed inside a transaction of the caller (meta.c). queue_meta_add_txn
 * adds value to the int64 counter name; queue_meta_int_txn reads one (missing: *out = 0,
 * and 0 is returned); queue_meta_sum_txn adds up every counter whose name starts with
 * prefix. Each returns an LMDB code (EINVAL for a bad name or a string value).
 */
int queue_meta_add_txn(struct queue *q, MDB_txn *txn, const char *name, int64_t value);
int queue_meta_int_txn(struct queue *q, MDB_txn *txn, const char *name, int64_t *out);
int queue_meta_sum_txn(struct queue *q, MDB_txn *txn, const char *prefix, int64_t *out);
/* queue_loaded_txn - the loader's loaded plus duplicates counters: conservation's "loaded". */
int queue_loaded_txn(struct queue *q, MDB_txn *txn, int64_t *out);

/*
 * Give a queue without QUEUE_META_ACCEPTED (created before it existed) the value that makes
 * the conservation equation hold, in txn (meta.c). Returns an LMDB code.
 */
int queue_meta_accepted_init(struct queue *q, MDB_txn *txn);

/* ---- idempotency keys, in keys.c ---- */

/*
 * Check keyed event ev (not rejected) in txn at now_us: an unknown or expired key is
 * recorded for ev with sequence number seq and *append is set; a known key sets ev's dedup
 * and orig_* fields (and seq to the recorded one) and clears *append. Returns an LMDB code.
 */
int queue_key_claim(struct queue *q, MDB_txn *txn, struct queue_event *ev, uint64_t seq,
                    int64_t now_us, bool *append);

/*
 * Forget at most max keys older than the dedup window at now_us, oldest first; *pruned
 * receives how many. Returns an LMDB code.
 */
int queue_keys_prune(struct queue *q, MDB_txn *txn, int64_t now_us, size_t max, size_t *pruned);

/*
 * A write transaction that only prunes up to max expired keys (after an append failed for
 * space: the pruning of an aborted append is lost with it). Returns an LMDB code.
 */
int queue_keys_prune_txn(struct queue *q, size_t max);

#endif
