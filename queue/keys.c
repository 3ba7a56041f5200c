/*
 * keys.c - idempotency keys: looked up and recorded inside the append transaction (so a key
 * is exactly as durable as its event), forgotten after the dedup window in bounded steps.
 * Never appends or deletes events; commit.c decides what to append from what this says.
 */
#include <lmdb.h>
#include <stdatomic.h>
#include <string.h>

#include "etc/err.h"
#include "etc/log.h"
#include "queue/internal.h"

/* The key_times key of a key recorded at recorded_us: be64(recorded_us) + key. */
static size_t
queue_key_time_key(uint8_t *buf, int64_t recorded_us, const char *key, size_t key_len)
{
    queue_put_be64(buf, (uint64_t)recorded_us);
    memcpy(buf + 8, key, key_len);
    return 8 + key_len;
}

/* Write ev's key record (seq is the sequence number ev gets) and its age index entry. */
static int
queue_key_put(struct queue *q, MDB_txn *txn, const struct queue_event *ev, uint64_t seq,
              int64_t now_us)
{
    uint8_t rec[QUEUE_KEYREC_SIZE];
    uint8_t tkey[8 + QUEUE_KEY_MAX];
    MDB_val k = {ev->key_len, (void *)ev->key};
    MDB_val v = {sizeof(rec), rec};
    int rc;

    rec[0] = QUEUE_KEYREC_VERSION;
    rec[1] = (uint8_t)(ev->answer >> 8);
    rec[2] = (uint8_t)ev->answer;
    queue_put_be64(rec + 3, (uint64_t)now_us);
    queue_put_be64(rec + 11, seq);
    memcpy(rec + 19, ev->uuid, 16);
    memcpy(rec + 35, ev->digest, QUEUE_DIGEST_LEN);
    rc = mdb_put(txn, q->keys_dbi, &k, &v, 0);
    if (rc != 0) {
        return rc;
    }
    k.mv_size = queue_key_time_key(tkey, now_us, ev->key, ev->key_len);
    k.mv_data = tkey;
    v.mv_size = 0;
    v.mv_data = NULL;
    return mdb_put(txn, q->key_times_dbi, &k, &v, 0);
}

int
queue_key_claim(struct queue *q, MDB_txn *txn, struct queue_event *ev, uint64_t seq, int64_t now_us,
                bool *append)
{
    MDB_val k = {ev->key_len, (void *)ev->key};
    MDB_val v;
    uint8_t tkey[8 + QUEUE_KEY_MAX];
    const uint8_t *rec;
    int64_t recorded_us;
    int rc;

    *append = true;
    ev->dedup = QUEUE_DEDUP_NEW;
    rc = mdb_get(txn, q->keys_dbi, &k, &v);
    if (rc == MDB_NOTFOUND) {
        return queue_key_put(q, txn, ev, seq, now_us);
    }
    if (rc != 0) {
        return rc;
    }
    rec = v.mv_data;
    if (v.mv_size != QUEUE_KEYREC_SIZE || rec[0] != QUEUE_KEYREC_VERSION) {
        return MDB_CORRUPTED;
    }
    recorded_us = (int64_t)queue_get_be64(rec + 3);
    if (now_us - recorded_us >= atomic_load(&q->dedup_window_us)) {
        /* Expired but not pruned yet: forget it, and record the key anew for this event. */
        k.mv_size = queue_key_time_key(tkey, recorded_us, ev->key, ev->key_len);
        k.mv_data = tkey;
        rc = mdb_del(txn, q->key_times_dbi, &k, NULL);
        if (rc != 0 && rc != MDB_NOTFOUND) {
            return rc;
        }
        return queue_key_put(q, txn, ev, seq, now_us);
    }
    *append = false;
    ev->seq = queue_get_be64(rec + 11);
    memcpy(ev->orig_uuid, rec + 19, 16);
    if (memcmp(rec + 35, ev->digest, QUEUE_DIGEST_LEN) == 0) {
        ev->dedup = QUEUE_DEDUP_REPEAT;
        ev->orig_answer = (uint16_t)(rec[1] << 8 | rec[2]);
    } else {
        ev->dedup = QUEUE_DEDUP_CONFLICT;
    }
    return 0;
}

int
queue_keys_prune(struct queue *q, MDB_txn *txn, int64_t now_us, size_t max, size_t *pruned)
{
    int64_t window_us = atomic_load(&q->dedup_window_us);
    MDB_cursor *cur = NULL;
    MDB_val k;
    MDB_val v;
    size_t n = 0;
    int rc;

    rc = mdb_cursor_open(txn, q->key_times_dbi, &cur);
    if (rc != 0) {
        goto out;
    }
    rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0 && n < max) {
        MDB_val key;

        if (k.mv_size <= 8 || now_us - (int64_t)queue_get_be64(k.mv_data) < window_us) {
            break;
        }
        key.mv_size = k.mv_size - 8;
        key.mv_data = (uint8_t *)k.mv_data + 8;
        /* The index entry is the key's only one: claiming an expired key removes the old. */
        rc = mdb_del(txn, q->keys_dbi, &key, NULL);
        if (rc != 0 && rc != MDB_NOTFOUND) {
            goto out;
        }
        rc = mdb_cursor_del(cur, 0);
        if (rc != 0) {
            goto out;
        }
        n++;
        /* Deleting from the front: the oldest left is always the first. */
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    }
    rc = rc == MDB_NOTFOUND ? 0 : rc;
out:
    if (cur != NULL) {
        mdb_cursor_close(cur);
    }
    *pruned = n;
    return rc;
}

int
queue_keys_prune_txn(struct queue *q, size_t max)
{
    MDB_txn *txn = NULL;
    size_t pruned = 0;
    int rc;

    rc = queue_txn_begin(q, 0, &txn);
    if (rc != 0) {
        txn = NULL;
        goto out;
    }
    rc = queue_keys_prune(q, txn, dp_now_us(), max, &pruned);
    if (rc != 0 || pruned == 0) {
        goto out;
    }
    rc = queue_txn_commit(q, txn, QUEUE_TXN_META, 0);
    txn = NULL;
    if (rc == 0) {
        dp_info("queue full: forgot expired idempotency keys", "path=%s keys=%zu", q->path, pruned);
    }
out:
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    return rc;
}

/* ---- test seam ---- */

int
queue_test_keys(struct queue *q, size_t *keys, size_t *times)
{
    MDB_txn *txn = NULL;
    MDB_stat st;
    int rc;

    rc = queue_txn_begin(q, MDB_RDONLY, &txn);
    if (rc != 0) {
        return rc;
    }
    rc = mdb_stat(txn, q->keys_dbi, &st);
    if (rc == 0) {
        *keys = st.ms_entries;
        rc = mdb_stat(txn, q->key_times_dbi, &st);
    }
    if (rc == 0 && times != NULL) {
        *times = st.ms_entries;
    }
    mdb_txn_abort(txn);
    return rc;
}

int
queue_test_put_raw(struct queue *q, uint64_t seq, const void *rec, size_t len)
{
    MDB_txn *txn = NULL;
    uint8_t kbuf[8];
    MDB_val k = {sizeof(kbuf), kbuf};
    MDB_val v = {len, (void *)rec};
    int rc;

    queue_put_be64(kbuf, seq);
    rc = queue_txn_begin(q, 0, &txn);
    if (rc != 0) {
        return rc;
    }
    rc = mdb_put(txn, q->events_dbi, &k, &v, 0);
    if (rc != 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    return mdb_txn_commit(txn);
}
