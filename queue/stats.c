/*
 * stats.c - the queue's counts for /metrics, /v1/status and the loader's schedule, without a
 * full scan: mdb_stat, mdb_env_info, one cursor step for the oldest event, and the
 * conservation counters of the same snapshot. Read only.
 */
#include <lmdb.h>
#include <string.h>

#include "queue/internal.h"

static uint64_t
queue_db_pages(const MDB_stat *st)
{
    return (uint64_t)st->ms_branch_pages + st->ms_leaf_pages + st->ms_overflow_pages;
}

/* The conservation counters, from the transaction that counted the events. */
static int
queue_stats_conservation(struct queue *q, MDB_txn *txn, struct queue_stats *out)
{
    int64_t accepted = 0;
    int64_t loaded = 0;
    int64_t dead = 0;
    int rc;

    rc = queue_meta_int_txn(q, txn, QUEUE_META_ACCEPTED, &accepted);
    if (rc == 0) {
        rc = queue_loaded_txn(q, txn, &loaded);
    }
    if (rc == 0) {
        rc = queue_meta_int_txn(q, txn, QUEUE_META_LOADER_DEAD_LETTERS, &dead);
    }
    out->accepted = (uint64_t)accepted;
    out->loaded = (uint64_t)loaded;
    out->dead_lettered = (uint64_t)dead;
    return rc;
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
    MDB_dbi dbis[] = {q->meta_dbi, q->sys_dbi, q->keys_dbi, q->key_times_dbi, q->events_dbi};
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
    rc = queue_stats_conservation(q, txn, out);
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
