/*
 * txn.c - what every other file of queue/ uses: a transaction begun and committed (with the
 * tests' fault seam), an LMDB code translated into an enum dp_err with the exit that
 * MDB_PANIC and a grown map need, and the sequence counter. Calls no other file of queue/.
 */
#include <errno.h>
#include <lmdb.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "etc/err.h"
#include "etc/log.h"
#include "queue/internal.h"

/* Free space below which an EIO from a write counts as a full disk (see queue_rc_full). */
#define QUEUE_DISK_LOW_BYTES (1u << 20)

/*
 * LMDB reports a short pwrite as EIO, and a write that fills the disk ends with a short
 * pwrite, so an EIO on a file system with (almost) no space left is a full disk too (503
 * and retry, not 500).
 */
bool
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
 * After MDB_PANIC (a failed meta-page write: a real EIO, a full copy-on-write file system)
 * LMDB refuses every later transaction of this environment, so the process could only
 * answer errors for ever. Exit instead, as for a grown map: nothing acknowledged is lost
 * (the failed transaction was never acknowledged) and the service manager restarts us.
 */
static void
queue_fatal_check(const struct queue *q, int rc, const char *what)
{
    if (rc == MDB_PANIC) {
        dp_error("fatal queue error: exiting so that the service manager restarts us",
                 "op=%s path=%s err=%s", what, q->path, mdb_strerror(rc));
        _exit(75);
    }
}

/* queue_err() for rc != 0 (internal.h keeps the rc == 0 test inline at every call). */
int
queue_err_slow(const struct queue *q, int rc, const char *what)
{
    queue_fatal_check(q, rc, what);
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

int
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
                 "daemons the same queue.max_bytes",
                 "path=%s", q->path);
        _exit(75);
    }
    queue_fatal_check(q, rc, "begin");
    return rc;
}

int
queue_txn_commit(struct queue *q, MDB_txn *txn, enum queue_txn_kind kind, size_t events)
{
    const struct queue_fault_ops *ops = atomic_load(&q->fault);
    int rc;

    if (ops != NULL && ops->commit != NULL) {
        rc = ops->commit(ops->arg, kind, events);
        if (rc != 0) {
            mdb_txn_abort(txn);
            queue_fatal_check(q, rc, "commit");
            return rc;
        }
    }
    rc = mdb_txn_commit(txn);
    queue_fatal_check(q, rc, "commit");
    return rc;
}

int
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
