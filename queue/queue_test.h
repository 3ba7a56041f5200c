/*
 * queue_test.h - test-only seams of the queue: a fault hook on every write transaction's
 * commit, a look at the group-commit queue, and a queue made to look as if written by a
 * version without instance ids. Included by the queue's own files and by
 * tests; production code (server/, loader/) never includes it nor calls anything in it.
 */
#ifndef DP_QUEUE_TEST_H
#define DP_QUEUE_TEST_H

#include <stddef.h>

#include "queue/queue.h"

/*
 * A test installs a queue_fault_ops to make write transactions fail the way the world can
 * make them fail. commit() is called just before every write transaction commits, with what
 * the transaction holds. Returning 0 lets the commit go ahead; any other value aborts the
 * transaction and is handled exactly as if mdb_txn_commit() had returned it: an errno value
 * (ENOSPC, EDQUOT, EIO, ...), QUEUE_FAULT_MAP_FULL or QUEUE_FAULT_PANIC. commit() runs in
 * whichever thread commits (the group-commit leader) and may block.
 */
#define QUEUE_FAULT_MAP_FULL (-30792) /* LMDB's MDB_MAP_FULL */
#define QUEUE_FAULT_PANIC (-30795)    /* LMDB's MDB_PANIC: the environment is unusable */

enum queue_txn_kind {
    QUEUE_TXN_APPEND, /* queue_append's group commit */
    QUEUE_TXN_DELETE, /* queue_delete_range */
    QUEUE_TXN_META,   /* queue_meta_apply */
};

struct queue_fault_ops {
    int (*commit)(void *arg, enum queue_txn_kind kind, size_t events);
    void *arg; /* passed to commit() */
};

/*
 * queue_set_fault_ops - install ops (NULL: none). ops is borrowed: it must stay valid until
 * replaced or until queue_close().
 */
void queue_set_fault_ops(struct queue *q, const struct queue_fault_ops *ops);

/* queue_test_pending - append calls queued and not yet taken by a committer. */
size_t queue_test_pending(struct queue *q);

/*
 * queue_test_keys - idempotency keys recorded (entries of the key database); *times gets
 * the entries of its age index (may be NULL). Returns 0 or an LMDB code.
 */
int queue_test_keys(struct queue *q, size_t *keys, size_t *times);

/*
 * queue_test_put_raw - store len bytes of rec as the record of sequence number seq, as an
 * older version of the daemons wrote it (records of earlier formats must stay readable).
 * Returns 0 or an LMDB code.
 */
int queue_test_put_raw(struct queue *q, uint64_t seq, const void *rec, size_t len);

/*
 * queue_test_forget_instance - delete the stored instance id (and its "assigned" mark), as a
 * queue written before instance ids looks; the next queue_open() of the directory gives it
 * one. q's own queue_instance() is unchanged. Returns 0, DP_ERR_IO.
 */
int queue_test_forget_instance(struct queue *q);

#endif
