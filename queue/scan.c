/*
 * scan.c - reading the queue: a batch of events in key order, handed to a callback as views
 * into the map inside one read transaction (no copy). Never writes.
 */
#include <lmdb.h>
#include <string.h>

#include "etc/err.h"
#include "etc/log.h"
#include "queue/internal.h"

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

    memset(&ev, 0, sizeof(ev));
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
