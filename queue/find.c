/*
 * find.c - questions about where the queue stands in time: one event by its UUIDv7 (a
 * bounded search by time, no index), and the completeness watermark a loader records with
 * each batch. Both rely on stamped received_us never decreasing with seq (commit.c).
 * Never changes the queue: the watermark's write transaction is always aborted.
 */
#include <lmdb.h>
#include <string.h>

#include "etc/err.h"
#include "etc/log.h"
#include "queue/internal.h"

/* The event at the first key >= seq into ev; MDB_NOTFOUND past the end. */
static int
find_at(struct queue *q, MDB_cursor *cur, uint64_t seq, struct queue_event *ev)
{
    uint8_t kbuf[8];
    MDB_val k = {.mv_size = sizeof(kbuf), .mv_data = kbuf};
    MDB_val v;
    int rc;

    queue_put_be64(kbuf, seq);
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc == 0 && queue_rec_decode(&k, &v, ev) != 0) {
        dp_error("corrupt queue record", "path=%s seq=%llu", q->path, (unsigned long long)seq);
        rc = MDB_CORRUPTED;
    }
    return rc;
}

/*
 * The smallest key whose event has received_us >= t_us, in [lo, hi): lower bound over the
 * key space, each probe one seek (keys deleted in between are skipped by MDB_SET_RANGE).
 * Returns an LMDB code; *out is hi when no event qualifies.
 */
static int
find_lower_bound(struct queue *q, MDB_cursor *cur, uint64_t lo, uint64_t hi, int64_t t_us,
                 uint64_t *out)
{
    struct queue_event ev;
    int rc;

    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;

        rc = find_at(q, cur, mid, &ev);
        if (rc == MDB_NOTFOUND || (rc == 0 && ev.seq >= hi)) {
            hi = mid;
        } else if (rc != 0) {
            return rc;
        } else if (ev.received_us >= t_us) {
            hi = mid;
        } else {
            lo = ev.seq + 1;
        }
    }
    *out = lo;
    return 0;
}

int
queue_find(struct queue *q, const uint8_t uuid[16], queue_read_fn fn, void *arg)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    struct queue_event ev;
    uint64_t next = 0;
    uint64_t from = 0;
    int64_t t_us = 0;
    int cb = 0;
    int rc;

    for (int i = 0; i < 6; i++) {
        t_us = t_us * 256 + uuid[i];
    }
    t_us *= 1000;
    rc = queue_txn_begin(q, MDB_RDONLY, &txn);
    if (rc != 0) {
        txn = NULL;
        goto out;
    }
    rc = mdb_cursor_open(txn, q->events_dbi, &cur);
    if (rc == 0) {
        rc = queue_next_seq(q, txn, &next);
    }
    if (rc == 0) {
        rc = find_lower_bound(q, cur, 0, next, t_us, &from);
    }
    if (rc != 0) {
        goto out;
    }
    /* From there on, at most the events committed within the window after the id's time. */
    for (rc = find_at(q, cur, from, &ev); rc == 0; rc = find_at(q, cur, ev.seq + 1, &ev)) {
        if (ev.received_us > t_us + QUEUE_FIND_WINDOW_MS * 1000 + 999) {
            rc = MDB_NOTFOUND;
            break;
        }
        if (memcmp(ev.uuid, uuid, 16) == 0) {
            cb = fn(arg, &ev);
            break;
        }
    }
out:
    if (cur != NULL) {
        mdb_cursor_close(cur);
    }
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    if (rc == MDB_NOTFOUND) {
        return DP_ERR_NOTFOUND;
    }
    rc = queue_err(q, rc, "find");
    return rc != 0 ? rc : (cb < 0 ? cb : 0);
}

int
queue_watermark(struct queue *q, uint64_t skip_first, uint64_t skip_last, int64_t *out_us)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    struct queue_event ev;
    int rc;

    *out_us = 0;
    rc = queue_txn_begin(q, 0, &txn);
    if (rc != 0) {
        txn = NULL;
        goto out;
    }
    rc = mdb_cursor_open(txn, q->events_dbi, &cur);
    if (rc != 0) {
        goto out;
    }
    rc = find_at(q, cur, 0, &ev);
    if (rc == 0 && skip_first != 0 && ev.seq >= skip_first && ev.seq <= skip_last) {
        rc = find_at(q, cur, skip_last + 1, &ev);
    }
    if (rc == 0) {
        *out_us = ev.received_us;
    } else if (rc == MDB_NOTFOUND) {
        /* Nothing else queued: read inside the write transaction, see queue.h. */
        *out_us = dp_now_us();
        rc = 0;
    }
out:
    if (cur != NULL) {
        mdb_cursor_close(cur);
    }
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    return queue_err(q, rc, "watermark");
}
