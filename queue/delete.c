/*
 * delete.c - deleting a range of events once the loader has them in PostgreSQL, in the same
 * write transaction as the loader's metadata changes (meta.c). Deleting events already gone
 * is not an error: recovery may delete a range twice.
 */
#include <lmdb.h>
#include <stdint.h>

#include "etc/err.h"
#include "queue/internal.h"

/* Delete keys first..last in txn with one cursor walk. Returns an LMDB code. */
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
    MDB_txn *txn = NULL;
    int rc;

    if (first > last) {
        return DP_ERR_INVALID;
    }
    rc = queue_txn_begin(q, 0, &txn);
    if (rc != 0) {
        txn = NULL;
        goto out;
    }
    rc = queue_delete_keys(q, txn, first, last);
    if (rc == 0) {
        rc = queue_meta_ops(q, txn, ops, n);
    }
    if (rc != 0) {
        goto out;
    }
    rc = queue_txn_commit(q, txn, QUEUE_TXN_DELETE, 0);
    txn = NULL;
out:
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    return queue_err(q, rc, "delete");
}
