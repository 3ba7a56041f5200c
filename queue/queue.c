/*
 * queue.c - the durable LMDB queue: group-committed appends, zero-copy batch reads, range
 * deletes, metadata counters and the loader lock. The only file that includes lmdb.h.
 * It must never acknowledge an append before its transaction committed, never store part of
 * an append, and never reuse a sequence number.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/futex.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "etc/err.h"
#include "etc/log.h"
#include "queue/queue.h"

#define QUEUE_DB_EVENTS "events" /* seq (8 bytes, big-endian) -> record */
#define QUEUE_DB_META "meta"     /* name -> counter or string, for the daemons */
#define QUEUE_DB_SYS "sys"       /* the queue's own state: next_seq */
#define QUEUE_KEY_NEXT_SEQ "next_seq"
#define QUEUE_LOCK_FILE "loader.lock"
#define QUEUE_MAX_READERS 512         /* 64+ server threads, the loader's workers, tools */
#define QUEUE_MIN_BYTES (256u * 1024) /* smallest map: room for the reserve and the trees */
#define QUEUE_META_NAME_MAX 200       /* bytes */

/*
 * Record layout (all integers big-endian):
 *   0 version (QUEUE_RECORD_VERSION)   1 type_len   2-3 error_len   4-7 flags
 *   8-23 uuid   24-31 received_us   32.. type, error, json (json runs to the end)
 */
#define QUEUE_REC_HEAD 32

/* Metadata values: one tag byte, then the payload. */
#define QUEUE_META_TAG_INT 'i' /* 8 bytes, big-endian int64 */
#define QUEUE_META_TAG_STR 's' /* the string's bytes, no NUL */

_Static_assert(QUEUE_FAULT_MAP_FULL == MDB_MAP_FULL, "QUEUE_FAULT_MAP_FULL is MDB_MAP_FULL");

/*
 * Group commit, in short (details above queue_lead): callers queue their events; one of
 * them, the committer, writes every queued call in one transaction, commits, and wakes the
 * callers of that batch with one futex wake on the batch's wake word. The last caller of
 * the batch to leave hands the committer role to the oldest call queued meanwhile.
 *
 * A batch's wake word is word[gen & 1]: gen << 2 | one of these states. Two slots suffice:
 * batch gen + 2 is only taken after every caller of batch gen has left.
 */
#define QUEUE_B_WAIT 0u  /* batch queued or being committed */
#define QUEUE_B_LEAD 1u  /* committer role offered to any caller of the batch */
#define QUEUE_B_TAKEN 2u /* one caller took the role */
#define QUEUE_B_DONE 3u  /* committed or failed: every rc is final */

/* One queue_append() call waiting for its events to become durable, on the caller's stack. */
struct queue_waiter {
    struct queue_waiter *next; /* next pending call, in arrival order */
    struct queue_event *evs;   /* the caller's events; seq set on success */
    size_t n;                  /* events */
    int rc;                    /* result: 0 or dp_err, final once the batch is DONE */
    uint32_t gen;              /* the batch it joined */
};

struct queue {
    MDB_env *env;
    MDB_dbi events_dbi;
    MDB_dbi meta_dbi;
    MDB_dbi sys_dbi;
    char *path;         /* the environment directory */
    bool sync;          /* fsync at commit */
    uint64_t map_bytes; /* the map size in effect */
    size_t limit_pages; /* appends past this many event pages report full */
    bool env_open;      /* mdb_env_open() succeeded */
    int lock_fd;        /* loader lock, -1 until queue_lock_loader() */
    bool full;          /* last append txn failed for space; committer only */
    _Atomic(const struct queue_fault_ops *) fault;

    pthread_mutex_t mu;        /* guards everything down to gen */
    pthread_cond_t idle_cv;    /* signalled when inflight drops to 0 while closing */
    struct queue_waiter *head; /* pending calls not yet taken by a committer */
    struct queue_waiter *tail;
    size_t pending;  /* calls in head..tail */
    size_t inflight; /* calls inside queue_append() */
    bool leading;    /* a batch is being committed or woken */
    bool closing;
    uint32_t gen; /* generation of the batch now accumulating */

    _Atomic uint32_t word[2];              /* wake words, futexes: see QUEUE_B_* */
    atomic_size_t exit_left;               /* callers of the batch being woken that have not left */
    size_t exit_groups;                    /* calls in that batch */
    atomic_uint_fast64_t commits;          /* append transactions committed */
    atomic_uint_fast64_t committed_events; /* events in them */
};

/* ---- helpers: byte order, errors ---- */

static void
queue_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t
queue_get_be64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* Free space below which an EIO from a write counts as a full disk (see queue_rc_full). */
#define QUEUE_DISK_LOW_BYTES (1u << 20)

/*
 * Whether rc means "no room": map full, disk full, quota. LMDB reports a short pwrite as
 * EIO, and a write that fills the disk ends with a short pwrite, so an EIO on a file system
 * with (almost) no space left is a full disk too (503 and retry, not 500).
 */
static bool
queue_rc_full(const struct queue *q, int rc)
{
    struct statvfs vfs;

    if (rc == MDB_MAP_FULL || rc == ENOSPC || rc == EDQUOT) {
        return true;
    }
    return rc == EIO && statvfs(q->path, &vfs) == 0 &&
           (uint64_t)vfs.f_bavail * vfs.f_frsize < QUEUE_DISK_LOW_BYTES;
}

/*
 * Translate an LMDB or errno code into a dp_err, logging LMDB's own text. what names the
 * operation for the log line.
 */
static int
queue_err(const struct queue *q, int rc, const char *what)
{
    if (rc == 0) {
        return 0;
    }
    if (queue_rc_full(q, rc)) {
        dp_warn("queue full", "op=%s path=%s err=%s", what, q->path, mdb_strerror(rc));
        return DP_ERR_FULL;
    }
    if (rc == EINVAL) {
        return DP_ERR_INVALID;
    }
    dp_error("queue operation failed", "op=%s path=%s err=%s", what, q->path, mdb_strerror(rc));
    if (rc == ENOMEM) {
        return DP_ERR_NOMEM;
    }
    return DP_ERR_IO;
}

/*
 * Begin a transaction. A reader table full of slots left by killed processes is cleared
 * once and the begin retried. Returns an LMDB code.
 */
static int
queue_txn_begin(struct queue *q, unsigned int flags, MDB_txn **txn)
{
    int rc;
    int dead = 0;

    rc = mdb_txn_begin(q->env, NULL, flags, txn);
    if (rc == MDB_READERS_FULL) {
        mdb_reader_check(q->env, &dead);
        if (dead > 0) {
            dp_warn("cleared stale queue readers", "path=%s readers=%d", q->path, dead);
        }
        rc = mdb_txn_begin(q->env, NULL, flags, txn);
    }
    if (rc == MDB_MAP_RESIZED) {
        /*
         * The other daemon grew the map past ours (its queue.max_bytes is larger).
         * Adopting the new size needs every transaction of this process closed,
         * which a running server cannot promise; exiting is as safe as a kill -9
         * (nothing acknowledged is lost) and the service manager restarts us with
         * the map as it now is.
         */
        dp_error("the queue map was grown by another process: exiting to reopen it; give both "
                 "daemons the same queue.max_bytes", "path=%s", q->path);
        _exit(75);
    }
    return rc;
}

/*
 * Commit txn (always consumed), first asking the test fault seam whether this commit should
 * fail instead. Returns an LMDB or errno code.
 */
static int
queue_txn_commit(struct queue *q, MDB_txn *txn, enum queue_txn_kind kind, size_t events)
{
    const struct queue_fault_ops *ops = atomic_load(&q->fault);
    int rc;

    if (ops != NULL && ops->commit != NULL) {
        rc = ops->commit(ops->arg, kind, events);
        if (rc != 0) {
            mdb_txn_abort(txn);
            return rc;
        }
    }
    return mdb_txn_commit(txn);
}

/*
 * The sequence number the next append gets, as seen by txn: the stored counter, or (in an
 * environment that has none yet) one past the last key. Returns an LMDB code.
 */
static int
queue_next_seq(struct queue *q, MDB_txn *txn, uint64_t *out)
{
    MDB_val k = {sizeof(QUEUE_KEY_NEXT_SEQ) - 1, (void *)QUEUE_KEY_NEXT_SEQ};
    MDB_val v;
    MDB_cursor *cur = NULL;
    int rc;

    rc = mdb_get(txn, q->sys_dbi, &k, &v);
    if (rc == 0) {
        if (v.mv_size != 8) {
            rc = MDB_CORRUPTED;
            goto out;
        }
        *out = queue_get_be64(v.mv_data);
        goto out;
    }
    if (rc != MDB_NOTFOUND) {
        goto out;
    }
    rc = mdb_cursor_open(txn, q->events_dbi, &cur);
    if (rc != 0) {
        goto out;
    }
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    if (rc == MDB_NOTFOUND) {
        *out = 1;
        rc = 0;
    } else if (rc == 0) {
        *out = k.mv_size == 8 ? queue_get_be64(k.mv_data) + 1 : 1;
    }
out:
    if (cur != NULL) {
        mdb_cursor_close(cur);
    }
    return rc;
}

/* ---- records ---- */

static size_t
queue_rec_size(const struct queue_event *ev)
{
    return QUEUE_REC_HEAD + ev->type_len + ev->error_len + ev->json_len;
}

/*
 * Cut an error text to QUEUE_ERROR_MAX bytes without splitting a UTF-8 sequence, so the
 * loader can store it in a text column.
 */
static size_t
queue_error_cut(const char *s, size_t len)
{
    if (len <= QUEUE_ERROR_MAX) {
        return len;
    }
    len = QUEUE_ERROR_MAX;
    while (len > 0 && ((unsigned char)s[len] & 0xc0u) == 0x80u) {
        len--;
    }
    return len;
}

static void
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
    p += QUEUE_REC_HEAD;
    memcpy(p, ev->type, ev->type_len);
    p += ev->type_len;
    if (ev->error_len > 0) {
        memcpy(p, ev->error, ev->error_len);
        p += ev->error_len;
    }
    if (ev->json_len > 0) {
        memcpy(p, ev->json, ev->json_len);
    }
}

/*
 * Decode the record under key k into ev, whose pointers then point into the map.
 * Returns 0 or MDB_CORRUPTED.
 */
static int
queue_rec_decode(const MDB_val *k, const MDB_val *v, struct queue_event *ev)
{
    const uint8_t *p = v->mv_data;
    size_t type_len;
    size_t error_len;

    if (k->mv_size != 8 || v->mv_size < QUEUE_REC_HEAD || p[0] != QUEUE_RECORD_VERSION) {
        return MDB_CORRUPTED;
    }
    type_len = p[1];
    error_len = ((size_t)p[2] << 8) | p[3];
    if (type_len == 0 || type_len > QUEUE_TYPE_MAX || error_len > QUEUE_ERROR_MAX ||
        QUEUE_REC_HEAD + type_len + error_len > v->mv_size) {
        return MDB_CORRUPTED;
    }
    ev->seq = queue_get_be64(k->mv_data);
    ev->flags = ((uint32_t)p[4] << 24) | ((uint32_t)p[5] << 16) | ((uint32_t)p[6] << 8) | p[7];
    memcpy(ev->uuid, p + 8, 16);
    ev->received_us = (int64_t)queue_get_be64(p + 24);
    ev->type = (const char *)p + QUEUE_REC_HEAD;
    ev->type_len = type_len;
    ev->error = error_len > 0 ? ev->type + type_len : NULL;
    ev->error_len = error_len;
    ev->json = ev->type + type_len + error_len;
    ev->json_len = v->mv_size - QUEUE_REC_HEAD - type_len - error_len;
    return 0;
}

/* ---- open, close ---- */

/* mkdir -p with mode 0700 for what is created. Returns 0 or an errno value. */
static int
queue_mkdirs(const char *path)
{
    char *tmp = NULL;
    struct stat st;
    int rc = 0;

    tmp = strdup(path);
    if (tmp == NULL) {
        rc = ENOMEM;
        goto out;
    }
    for (char *p = tmp + 1;; p++) {
        if (*p != '/' && *p != '\0') {
            continue;
        }
        char c = *p;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
            rc = errno;
            goto out;
        }
        *p = c;
        if (c == '\0') {
            break;
        }
    }
    if (stat(path, &st) != 0) {
        rc = errno;
        goto out;
    }
    if (!S_ISDIR(st.st_mode)) {
        rc = ENOTDIR;
    }
out:
    free(tmp);
    return rc;
}

/* Release what queue_open() got so far. */
static void
queue_free(struct queue *q)
{
    if (q == NULL) {
        return;
    }
    if (q->env != NULL) {
        if (q->env_open && !q->sync) {
            mdb_env_sync(q->env, 1);
        }
        mdb_env_close(q->env);
    }
    if (q->lock_fd >= 0) {
        close(q->lock_fd);
    }
    pthread_cond_destroy(&q->idle_cv);
    pthread_mutex_destroy(&q->mu);
    free(q->path);
    free(q);
}

/*
 * Open the named databases and work out the append limit: appends stop (DP_ERR_FULL) while
 * the map still has a reserve, so that the loader's delete transactions, which need fresh
 * pages too (copy-on-write), can always run and make room again.
 */
static int
queue_open_dbs(struct queue *q)
{
    MDB_txn *txn = NULL;
    MDB_envinfo info;
    MDB_stat st;
    size_t map_pages;
    size_t reserve;
    int rc;

    rc = mdb_txn_begin(q->env, NULL, 0, &txn);
    if (rc != 0) {
        goto out;
    }
    rc = mdb_dbi_open(txn, QUEUE_DB_EVENTS, MDB_CREATE, &q->events_dbi);
    if (rc != 0) {
        goto out;
    }
    rc = mdb_dbi_open(txn, QUEUE_DB_META, MDB_CREATE, &q->meta_dbi);
    if (rc != 0) {
        goto out;
    }
    rc = mdb_dbi_open(txn, QUEUE_DB_SYS, MDB_CREATE, &q->sys_dbi);
    if (rc != 0) {
        goto out;
    }
    rc = mdb_txn_commit(txn);
    txn = NULL;
    if (rc != 0) {
        goto out;
    }
    rc = mdb_env_info(q->env, &info);
    if (rc != 0) {
        goto out;
    }
    rc = mdb_env_stat(q->env, &st);
    if (rc != 0) {
        goto out;
    }
    q->map_bytes = info.me_mapsize;
    map_pages = info.me_mapsize / st.ms_psize;
    reserve = map_pages / 64;
    if (reserve < 32) {
        reserve = 32;
    }
    q->limit_pages = map_pages > 2 * reserve ? map_pages - reserve : map_pages / 2;
out:
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    return rc;
}

int
queue_open(struct queue **out, const char *path, uint64_t max_bytes, bool sync)
{
    struct queue *q = NULL;
    long pagesize = sysconf(_SC_PAGESIZE);
    uint64_t map;
    int dead = 0;
    int rc;

    if (out == NULL || path == NULL || path[0] == '\0') {
        rc = DP_ERR_INVALID;
        goto out;
    }
    *out = NULL;
    if (max_bytes < QUEUE_MIN_BYTES || max_bytes > SIZE_MAX / 2) {
        dp_error("queue map size out of range", "path=%s max_bytes=%" PRIu64 " min=%u", path,
                 max_bytes, QUEUE_MIN_BYTES);
        rc = DP_ERR_INVALID;
        goto out;
    }
    if (pagesize <= 0) {
        pagesize = 4096;
    }
    map = (max_bytes + (uint64_t)pagesize - 1) / (uint64_t)pagesize * (uint64_t)pagesize;

    q = calloc(1, sizeof(*q));
    if (q == NULL) {
        rc = DP_ERR_NOMEM;
        goto out;
    }
    q->lock_fd = -1;
    q->sync = sync;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->idle_cv, NULL);
    atomic_init(&q->fault, NULL);
    atomic_init(&q->word[0], 0);
    atomic_init(&q->word[1], 0);
    atomic_init(&q->exit_left, 0);
    atomic_init(&q->commits, 0);
    atomic_init(&q->committed_events, 0);
    q->path = strdup(path);
    if (q->path == NULL) {
        rc = DP_ERR_NOMEM;
        goto out;
    }
    rc = queue_mkdirs(path);
    if (rc != 0) {
        dp_error("queue directory unusable", "path=%s err=%s", path, strerror(rc));
        rc = rc == ENOMEM ? DP_ERR_NOMEM : DP_ERR_INVALID;
        goto out;
    }
    rc = mdb_env_create(&q->env);
    if (rc != 0) {
        q->env = NULL;
        goto lmdb_fail;
    }
    rc = mdb_env_set_maxdbs(q->env, 4);
    if (rc == 0) {
        rc = mdb_env_set_maxreaders(q->env, QUEUE_MAX_READERS);
    }
    if (rc == 0) {
        rc = mdb_env_set_mapsize(q->env, (size_t)map);
    }
    if (rc != 0) {
        goto lmdb_fail;
    }
    /*
     * MDB_NOTLS: read transactions are not tied to threads (the server's threads come and
     * go). No MDB_WRITEMAP: a full disk must be a write error, not SIGBUS. Without sync,
     * MDB_NOSYNC: commits reach the page cache only, so a killed process loses nothing but
     * a power cut may lose the last commits.
     */
    rc = mdb_env_open(q->env, path, MDB_NOTLS | (sync ? 0 : MDB_NOSYNC), 0600);
    if (rc != 0) {
        goto lmdb_fail;
    }
    q->env_open = true;
    rc = mdb_reader_check(q->env, &dead);
    if (rc != 0) {
        goto lmdb_fail;
    }
    if (dead > 0) {
        dp_warn("cleared stale queue readers", "path=%s readers=%d", path, dead);
    }
    rc = queue_open_dbs(q);
    if (rc != 0) {
        goto lmdb_fail;
    }
    dp_debug("queue open", "path=%s map_bytes=%" PRIu64 " sync=%d", path, q->map_bytes, (int)sync);
    *out = q;
    q = NULL;
    rc = 0;
    goto out;

lmdb_fail:
    dp_error("queue open failed", "path=%s err=%s", path, mdb_strerror(rc));
    if (rc == ENOMEM) {
        rc = DP_ERR_NOMEM;
    } else if (rc == EACCES || rc == ENOENT || rc == ENOTDIR || rc == EROFS || rc == MDB_INVALID ||
               rc == MDB_VERSION_MISMATCH) {
        rc = DP_ERR_INVALID;
    } else {
        rc = DP_ERR_IO;
    }
out:
    queue_free(q);
    return rc;
}

void
queue_close(struct queue *q)
{
    if (q == NULL) {
        return;
    }
    pthread_mutex_lock(&q->mu);
    q->closing = true;
    while (q->inflight > 0) {
        pthread_cond_wait(&q->idle_cv, &q->mu);
    }
    pthread_mutex_unlock(&q->mu);
    queue_free(q);
}

/* ---- appends: group commit ---- */

/* Check what can be checked before queueing; cuts long error texts. */
static int
queue_check_events(const struct queue *q, struct queue_event *evs, size_t n)
{
    if (evs == NULL || n == 0) {
        return DP_ERR_INVALID;
    }
    for (size_t i = 0; i < n; i++) {
        struct queue_event *ev = &evs[i];

        if (ev->type == NULL || ev->type_len == 0 || ev->type_len > QUEUE_TYPE_MAX ||
            (ev->json == NULL && ev->json_len > 0) || (ev->error == NULL && ev->error_len > 0)) {
            return DP_ERR_INVALID;
        }
        ev->error_len = queue_error_cut(ev->error, ev->error_len);
        if (ev->json_len > UINT32_MAX || queue_rec_size(ev) > q->map_bytes / 2) {
            dp_warn("event too large for the queue", "path=%s bytes=%zu map_bytes=%" PRIu64,
                    q->path, ev->json_len, q->map_bytes);
            return DP_ERR_INVALID;
        }
    }
    return 0;
}

/*
 * Write the events of the calls first..stop (stop excluded) and the next sequence number in
 * one write transaction, and commit it. Sets each event's seq, or 0 on failure.
 * Returns an LMDB or errno code; *events receives how many events the transaction held.
 */
static int
queue_write_groups(struct queue *q, struct queue_waiter *first, struct queue_waiter *stop,
                   size_t *events)
{
    MDB_txn *txn = NULL;
    MDB_stat st;
    MDB_val k;
    MDB_val v;
    uint8_t kbuf[8];
    uint64_t seq = 0;
    size_t nev = 0;
    int rc;

    rc = queue_txn_begin(q, 0, &txn);
    if (rc != 0) {
        txn = NULL;
        goto out;
    }
    rc = queue_next_seq(q, txn, &seq);
    if (rc != 0) {
        goto out;
    }
    for (struct queue_waiter *w = first; w != stop; w = w->next) {
        for (size_t i = 0; i < w->n; i++) {
            queue_put_be64(kbuf, seq);
            k.mv_size = sizeof(kbuf);
            k.mv_data = kbuf;
            v.mv_size = queue_rec_size(&w->evs[i]);
            v.mv_data = NULL;
            /* Keys only grow: MDB_APPEND skips the search; MDB_RESERVE saves a copy. */
            rc = mdb_put(txn, q->events_dbi, &k, &v, MDB_APPEND | MDB_RESERVE);
            if (rc != 0) {
                goto out;
            }
            queue_rec_encode(v.mv_data, &w->evs[i]);
            w->evs[i].seq = seq++;
            nev++;
        }
    }
    queue_put_be64(kbuf, seq);
    k.mv_size = sizeof(QUEUE_KEY_NEXT_SEQ) - 1;
    k.mv_data = (void *)QUEUE_KEY_NEXT_SEQ;
    v.mv_size = sizeof(kbuf);
    v.mv_data = kbuf;
    rc = mdb_put(txn, q->sys_dbi, &k, &v, 0);
    if (rc != 0) {
        goto out;
    }
    rc = mdb_stat(txn, q->events_dbi, &st);
    if (rc != 0) {
        goto out;
    }
    if (st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages > q->limit_pages) {
        rc = MDB_MAP_FULL;
        goto out;
    }
    rc = queue_txn_commit(q, txn, QUEUE_TXN_APPEND, nev);
    txn = NULL;
out:
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    if (rc != 0) {
        for (struct queue_waiter *w = first; w != stop; w = w->next) {
            for (size_t i = 0; i < w->n; i++) {
                w->evs[i].seq = 0;
            }
        }
    }
    *events = nev;
    return rc;
}

/*
 * Translate the result of an append transaction holding one call, or several that did not
 * fail for size. Logs only when "full" starts and ends, not for every refused append.
 */
static int
queue_append_err(struct queue *q, int rc)
{
    if (rc == 0) {
        if (q->full) {
            dp_info("queue accepts appends again", "path=%s", q->path);
            q->full = false;
        }
        return 0;
    }
    if (queue_rc_full(q, rc)) {
        if (!q->full) {
            dp_warn("queue full, appends refused", "path=%s err=%s", q->path, mdb_strerror(rc));
            q->full = true;
        }
        return DP_ERR_FULL;
    }
    if (rc == MDB_TXN_FULL) {
        dp_warn("append too large for one transaction", "path=%s", q->path);
        return DP_ERR_INVALID;
    }
    return queue_err(q, rc, "append");
}

/*
 * Commit the batch (the calls batch..NULL, ngroups of them) and set each call's rc.
 * When the batch does not fit in the map, one large call must not fail the small ones
 * riding with it: each call is then retried in its own transaction.
 */
static void
queue_commit_batch(struct queue *q, struct queue_waiter *batch, size_t ngroups, uint64_t *commits,
                   uint64_t *events)
{
    size_t nev = 0;
    int rc;

    rc = queue_write_groups(q, batch, NULL, &nev);
    if (rc == 0 || ngroups == 1 || (rc != MDB_MAP_FULL && rc != MDB_TXN_FULL)) {
        int err = queue_append_err(q, rc);

        for (struct queue_waiter *w = batch; w != NULL; w = w->next) {
            w->rc = err;
        }
        if (rc == 0) {
            *commits += 1;
            *events += nev;
        }
        return;
    }
    for (struct queue_waiter *w = batch; w != NULL; w = w->next) {
        rc = queue_write_groups(q, w, w->next, &nev);
        w->rc = queue_append_err(q, rc);
        if (rc == 0) {
            *commits += 1;
            *events += nev;
        }
    }
}

/*
 * The futex calls behind the wake words. Spurious or interrupted wake-ups are fine: every
 * waiter re-reads its word in a loop.
 */
static void
queue_futex_wait(_Atomic uint32_t *word, uint32_t seen)
{
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
}

static void
queue_futex_wake(_Atomic uint32_t *word, int n)
{
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

/*
 * A caller of the batch being woken leaves. The last one to leave ends the batch: the
 * committer role goes to the oldest call queued meanwhile (by offering it on that batch's
 * word and waking one of its callers), or is dropped. Nobody touches q after leaving.
 */
static void
queue_batch_leave(struct queue *q)
{
    uint32_t g;

    if (atomic_fetch_sub(&q->exit_left, 1) != 1) {
        return;
    }
    pthread_mutex_lock(&q->mu);
    q->inflight -= q->exit_groups;
    if (q->head != NULL) {
        g = q->head->gen;
        atomic_store(&q->word[g & 1], g << 2 | QUEUE_B_LEAD);
        queue_futex_wake(&q->word[g & 1], 1);
    } else {
        q->leading = false;
    }
    if (q->closing && q->inflight == 0) {
        pthread_cond_signal(&q->idle_cv);
    }
    pthread_mutex_unlock(&q->mu);
}

/*
 * The committer's turn: take every pending call (the committer's own among them), commit
 * them in one transaction, publish each caller's result and wake the batch.
 *
 * Why the role is kept until every caller of the batch has left, rather than passed on
 * right after the commit: callers woken early queue their next append meanwhile and ride
 * in the next transaction together. Passing the role on at once would let the first of
 * them commit alone while all the others pile up behind that commit, so transactions
 * would alternate between one event and all the rest.
 *
 * Why one futex wake per batch rather than a condition variable per caller: in this
 * design the gap between two commits is the time it takes to wake the batch, and waking
 * 64 threads one by one costs about 5 us each (a futex call and an inter-processor
 * interrupt per thread, plus a mutex hand-back per condition variable), 300 us or more,
 * comparable with the fsync itself. One FUTEX_WAKE on the batch's own word wakes exactly
 * the callers whose events were in this commit, in one system call; nobody else wakes.
 * Measured with 64 threads: about 150 us between commits instead of 320.
 */
static void
queue_lead(struct queue *q)
{
    struct queue_waiter *batch;
    size_t ngroups;
    uint64_t commits = 0;
    uint64_t events = 0;
    uint32_t g;

    pthread_mutex_lock(&q->mu);
    batch = q->head;
    ngroups = q->pending;
    q->head = NULL;
    q->tail = NULL;
    q->pending = 0;
    g = q->gen++;
    pthread_mutex_unlock(&q->mu);
    assert(batch != NULL && ngroups > 0);

    queue_commit_batch(q, batch, ngroups, &commits, &events);
    atomic_fetch_add(&q->commits, commits);
    atomic_fetch_add(&q->committed_events, events);

    /* Every rc is written; the store publishes them (seq_cst: release to the loads). */
    q->exit_groups = ngroups;
    atomic_store(&q->exit_left, ngroups);
    atomic_store(&q->word[g & 1], g << 2 | QUEUE_B_DONE);
    if (ngroups > 1) {
        queue_futex_wake(&q->word[g & 1], INT_MAX);
    }
    queue_batch_leave(q);
}

/*
 * Wait until w's batch is done (returns false) or the committer role is offered to the
 * batch and w took it (returns true).
 */
static bool
queue_wait_batch(struct queue *q, const struct queue_waiter *w)
{
    _Atomic uint32_t *word = &q->word[w->gen & 1];
    uint32_t v;

    for (;;) {
        v = atomic_load(word);
        if (v == (w->gen << 2 | QUEUE_B_DONE)) {
            return false;
        }
        if (v == (w->gen << 2 | QUEUE_B_LEAD)) {
            if (atomic_compare_exchange_strong(word, &v, w->gen << 2 | QUEUE_B_TAKEN)) {
                return true;
            }
            continue;
        }
        queue_futex_wait(word, v);
    }
}

int
queue_append(struct queue *q, struct queue_event *evs, size_t n)
{
    struct queue_waiter w;
    bool lead = false;
    int rc;

    rc = queue_check_events(q, evs, n);
    if (rc != 0) {
        return rc;
    }
    memset(&w, 0, sizeof(w));
    w.evs = evs;
    w.n = n;

    pthread_mutex_lock(&q->mu);
    if (q->closing) {
        pthread_mutex_unlock(&q->mu);
        return DP_ERR_CLOSED;
    }
    if (q->tail != NULL) {
        q->tail->next = &w;
    } else {
        q->head = &w;
    }
    q->tail = &w;
    q->pending++;
    q->inflight++;
    w.gen = q->gen;
    if (!q->leading) {
        q->leading = true;
        lead = true;
    }
    pthread_mutex_unlock(&q->mu);

    if (lead || queue_wait_batch(q, &w)) {
        queue_lead(q);
        return w.rc; /* w is on this thread's stack: still valid after leaving */
    }
    rc = w.rc;
    queue_batch_leave(q);
    return rc;
}

void
queue_commit_counts(struct queue *q, uint64_t *commits, uint64_t *events)
{
    if (commits != NULL) {
        *commits = atomic_load(&q->commits);
    }
    if (events != NULL) {
        *events = atomic_load(&q->committed_events);
    }
}

/* ---- read side ---- */

int
queue_read(struct queue *q, uint64_t from_seq, size_t max_events, size_t max_bytes,
           queue_read_fn fn, void *arg, uint64_t *last_seq, size_t *count)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k;
    MDB_val v;
    uint8_t kbuf[8];
    struct queue_event ev;
    size_t visited = 0;
    size_t bytes = 0;
    uint64_t last = 0;
    int cb = 0;
    int rc;

    rc = queue_txn_begin(q, MDB_RDONLY, &txn);
    if (rc != 0) {
        txn = NULL;
        rc = queue_err(q, rc, "read");
        goto out;
    }
    rc = mdb_cursor_open(txn, q->events_dbi, &cur);
    if (rc != 0) {
        rc = queue_err(q, rc, "read");
        goto out;
    }
    queue_put_be64(kbuf, from_seq);
    k.mv_size = sizeof(kbuf);
    k.mv_data = kbuf;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && visited < max_events) {
        if (queue_rec_decode(&k, &v, &ev) != 0) {
            dp_error("corrupt queue record", "path=%s key_bytes=%zu value_bytes=%zu", q->path,
                     k.mv_size, v.mv_size);
            rc = DP_ERR_IO;
            goto out;
        }
        if (max_bytes > 0 && visited > 0 && bytes + ev.json_len > max_bytes) {
            break;
        }
        bytes += ev.json_len;
        visited++;
        last = ev.seq;
        cb = fn(arg, &ev);
        if (cb < 0) {
            rc = cb;
            goto out;
        }
        if (cb > 0) {
            break;
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    rc = rc == MDB_NOTFOUND ? 0 : queue_err(q, rc, "read");
out:
    if (cur != NULL) {
        mdb_cursor_close(cur);
    }
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    if (last_seq != NULL) {
        *last_seq = last;
    }
    if (count != NULL) {
        *count = visited;
    }
    return rc;
}

/* ---- metadata ---- */

/* Returns 0 or EINVAL. */
static int
queue_meta_key(const char *name, MDB_val *k)
{
    size_t len;

    if (name == NULL) {
        return EINVAL;
    }
    len = strlen(name);
    if (len == 0 || len > QUEUE_META_NAME_MAX) {
        return EINVAL;
    }
    k->mv_size = len;
    k->mv_data = (void *)name;
    return 0;
}

/*
 * Apply one metadata change in txn. Returns 0, EINVAL (bad name, adding to a string) or
 * another LMDB code.
 */
static int
queue_meta_op1(struct queue *q, MDB_txn *txn, const struct queue_meta_op *op)
{
    MDB_val k;
    MDB_val v;
    uint8_t buf[9];
    int64_t value = op->value;
    int rc;

    rc = queue_meta_key(op->name, &k);
    if (rc != 0) {
        return rc;
    }
    switch (op->kind) {
    case QUEUE_META_ADD:
        rc = mdb_get(txn, q->meta_dbi, &k, &v);
        if (rc == 0) {
            if (v.mv_size != 9 || ((uint8_t *)v.mv_data)[0] != QUEUE_META_TAG_INT) {
                return EINVAL;
            }
            value = (int64_t)((uint64_t)value + queue_get_be64((uint8_t *)v.mv_data + 1));
        } else if (rc != MDB_NOTFOUND) {
            return rc;
        }
        /* fall through */
    case QUEUE_META_SET:
        buf[0] = QUEUE_META_TAG_INT;
        queue_put_be64(buf + 1, (uint64_t)value);
        v.mv_size = sizeof(buf);
        v.mv_data = buf;
        return mdb_put(txn, q->meta_dbi, &k, &v, 0);
    case QUEUE_META_STR:
        if (op->str == NULL) {
            return EINVAL;
        }
        v.mv_size = 1 + strlen(op->str);
        v.mv_data = NULL;
        rc = mdb_put(txn, q->meta_dbi, &k, &v, MDB_RESERVE);
        if (rc == 0) {
            ((uint8_t *)v.mv_data)[0] = QUEUE_META_TAG_STR;
            memcpy((uint8_t *)v.mv_data + 1, op->str, v.mv_size - 1);
        }
        return rc;
    }
    return EINVAL;
}

static int
queue_meta_ops(struct queue *q, MDB_txn *txn, const struct queue_meta_op *ops, size_t n)
{
    int rc = 0;

    if (n > 0 && ops == NULL) {
        return EINVAL;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = queue_meta_op1(q, txn, &ops[i]);
    }
    return rc;
}

static int queue_delete_keys(struct queue *q, MDB_txn *txn, uint64_t first, uint64_t last);

/*
 * One write transaction: delete [first, last] when del, then apply the n metadata
 * changes; all or nothing. Shared by queue_meta_apply and queue_delete_range.
 */
static int
queue_write_meta(struct queue *q, bool del, uint64_t first, uint64_t last,
                 const struct queue_meta_op *ops, size_t n)
{
    MDB_txn *txn = NULL;
    int rc;

    rc = queue_txn_begin(q, 0, &txn);
    if (rc != 0) {
        txn = NULL;
        goto out;
    }
    if (del) {
        rc = queue_delete_keys(q, txn, first, last);
        if (rc != 0) {
            goto out;
        }
    }
    rc = queue_meta_ops(q, txn, ops, n);
    if (rc != 0) {
        goto out;
    }
    rc = queue_txn_commit(q, txn, del ? QUEUE_TXN_DELETE : QUEUE_TXN_META, 0);
    txn = NULL;
out:
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    return queue_err(q, rc, del ? "delete" : "meta");
}

int
queue_meta_apply(struct queue *q, const struct queue_meta_op *ops, size_t n)
{
    if (n == 0) {
        return 0;
    }
    return queue_write_meta(q, false, 0, 0, ops, n);
}

/* Look name up in a read transaction and hand its value to the caller's copy step. */
static int
queue_meta_lookup(struct queue *q, const char *name, uint8_t tag, void *dst, size_t len)
{
    MDB_txn *txn = NULL;
    MDB_val k;
    MDB_val v;
    const uint8_t *p;
    size_t n;
    int rc;

    if (queue_meta_key(name, &k) != 0) {
        rc = DP_ERR_INVALID;
        goto out;
    }
    rc = queue_txn_begin(q, MDB_RDONLY, &txn);
    if (rc != 0) {
        txn = NULL;
        rc = queue_err(q, rc, "meta_get");
        goto out;
    }
    rc = mdb_get(txn, q->meta_dbi, &k, &v);
    if (rc == MDB_NOTFOUND) {
        rc = DP_ERR_NOTFOUND;
        goto out;
    }
    if (rc != 0) {
        rc = queue_err(q, rc, "meta_get");
        goto out;
    }
    p = v.mv_data;
    if (v.mv_size < 1 || p[0] != tag || (tag == QUEUE_META_TAG_INT && v.mv_size != 9)) {
        rc = DP_ERR_INVALID;
        goto out;
    }
    if (tag == QUEUE_META_TAG_INT) {
        *(int64_t *)dst = (int64_t)queue_get_be64(p + 1);
    } else {
        n = v.mv_size - 1 < len - 1 ? v.mv_size - 1 : len - 1;
        memcpy(dst, p + 1, n);
        ((char *)dst)[n] = '\0';
    }
out:
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    return rc;
}

int
queue_meta_get(struct queue *q, const char *name, int64_t *out)
{
    *out = 0;
    return queue_meta_lookup(q, name, QUEUE_META_TAG_INT, out, sizeof(*out));
}

int
queue_meta_get_str(struct queue *q, const char *name, char *buf, size_t len)
{
    if (buf == NULL || len == 0) {
        return DP_ERR_INVALID;
    }
    buf[0] = '\0';
    return queue_meta_lookup(q, name, QUEUE_META_TAG_STR, buf, len);
}

int
queue_meta_each(struct queue *q, const char *prefix, queue_meta_fn fn, void *arg)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k;
    MDB_val v;
    char name[QUEUE_META_NAME_MAX + 1];
    size_t plen = prefix != NULL ? strlen(prefix) : 0;
    int rc;

    rc = queue_txn_begin(q, MDB_RDONLY, &txn);
    if (rc != 0) {
        txn = NULL;
        goto out;
    }
    rc = mdb_cursor_open(txn, q->meta_dbi, &cur);
    if (rc != 0) {
        goto out;
    }
    k.mv_size = plen;
    k.mv_data = (void *)prefix;
    rc = mdb_cursor_get(cur, &k, &v, plen > 0 ? MDB_SET_RANGE : MDB_FIRST);
    while (rc == 0) {
        if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0) {
            break;
        }
        const uint8_t *p = v.mv_data;
        if (k.mv_size <= QUEUE_META_NAME_MAX && v.mv_size == 9 && p[0] == QUEUE_META_TAG_INT) {
            memcpy(name, k.mv_data, k.mv_size);
            name[k.mv_size] = '\0';
            fn(arg, name, (int64_t)queue_get_be64(p + 1));
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (rc == MDB_NOTFOUND) {
        rc = 0;
    }
out:
    if (cur != NULL) {
        mdb_cursor_close(cur);
    }
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    return queue_err(q, rc, "meta_each");
}

/* ---- deletes ---- */

/* Delete keys first..last with one cursor walk. Returns an LMDB code. */
static int
queue_delete_keys(struct queue *q, MDB_txn *txn, uint64_t first, uint64_t last)
{
    MDB_cursor *cur = NULL;
    MDB_val k;
    MDB_val v;
    uint8_t kbuf[8];
    int rc;

    rc = mdb_cursor_open(txn, q->events_dbi, &cur);
    if (rc != 0) {
        goto out;
    }
    queue_put_be64(kbuf, first);
    k.mv_size = sizeof(kbuf);
    k.mv_data = kbuf;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0) {
        if (k.mv_size != 8 || queue_get_be64(k.mv_data) > last) {
            break;
        }
        rc = mdb_cursor_del(cur, 0);
        if (rc != 0) {
            goto out;
        }
        /* After a delete the cursor already sits on the next key: MDB_NEXT returns it. */
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (rc == MDB_NOTFOUND) {
        rc = 0;
    }
out:
    if (cur != NULL) {
        mdb_cursor_close(cur);
    }
    return rc;
}

int
queue_delete_range(struct queue *q, uint64_t first, uint64_t last, const struct queue_meta_op *ops,
                   size_t n)
{
    if (first > last) {
        return DP_ERR_INVALID;
    }
    return queue_write_meta(q, true, first, last, ops, n);
}

/* ---- stats, loader lock ---- */

static uint64_t
queue_db_pages(const MDB_stat *st)
{
    return (uint64_t)st->ms_branch_pages + st->ms_leaf_pages + st->ms_overflow_pages;
}

int
queue_stats(struct queue *q, struct queue_stats *out)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_envinfo info;
    MDB_stat st;
    MDB_val k;
    MDB_val v;
    struct queue_event ev;
    uint64_t pages = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    rc = queue_txn_begin(q, MDB_RDONLY, &txn);
    if (rc != 0) {
        txn = NULL;
        goto out;
    }
    MDB_dbi dbis[] = {q->meta_dbi, q->sys_dbi, q->events_dbi};
    for (size_t i = 0; i < sizeof(dbis) / sizeof(dbis[0]); i++) {
        rc = mdb_stat(txn, dbis[i], &st);
        if (rc != 0) {
            goto out;
        }
        pages += queue_db_pages(&st);
    }
    /* st now holds the events database. */
    out->events = st.ms_entries;
    out->bytes = pages * st.ms_psize;
    rc = mdb_env_info(q->env, &info);
    if (rc != 0) {
        goto out;
    }
    out->capacity_bytes = info.me_mapsize;
    rc = queue_next_seq(q, txn, &out->next_seq);
    if (rc != 0) {
        goto out;
    }
    rc = mdb_cursor_open(txn, q->events_dbi, &cur);
    if (rc != 0) {
        goto out;
    }
    rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    if (rc == MDB_NOTFOUND) {
        rc = 0;
        goto out;
    }
    if (rc != 0) {
        goto out;
    }
    rc = queue_rec_decode(&k, &v, &ev);
    if (rc != 0) {
        goto out;
    }
    out->first_seq = ev.seq;
    out->oldest_received_us = ev.received_us;
out:
    if (cur != NULL) {
        mdb_cursor_close(cur);
    }
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    return queue_err(q, rc, "stats");
}

int
queue_lock_loader(struct queue *q)
{
    char *file = NULL;
    size_t len;
    int fd = -1;
    int rc = 0;

    pthread_mutex_lock(&q->mu);
    if (q->lock_fd >= 0) {
        goto out;
    }
    len = strlen(q->path) + sizeof("/" QUEUE_LOCK_FILE);
    file = malloc(len);
    if (file == NULL) {
        rc = DP_ERR_NOMEM;
        goto out;
    }
    snprintf(file, len, "%s/%s", q->path, QUEUE_LOCK_FILE);
    fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        dp_error("cannot open the loader lock", "file=%s err=%s", file, strerror(errno));
        rc = DP_ERR_IO;
        goto out;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
            rc = DP_ERR_BUSY;
        } else {
            dp_error("cannot take the loader lock", "file=%s err=%s", file, strerror(errno));
            rc = DP_ERR_IO;
        }
        goto out;
    }
    q->lock_fd = fd;
    fd = -1;
out:
    pthread_mutex_unlock(&q->mu);
    if (fd >= 0) {
        close(fd);
    }
    free(file);
    return rc;
}

/* ---- test seam ---- */

void
queue_set_fault_ops(struct queue *q, const struct queue_fault_ops *ops)
{
    atomic_store(&q->fault, ops);
}

size_t
queue_test_pending(struct queue *q)
{
    size_t n;

    pthread_mutex_lock(&q->mu);
    n = q->pending;
    pthread_mutex_unlock(&q->mu);
    return n;
}
