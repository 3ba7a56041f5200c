/*
 * meta.c - the metadata database: named int64 counters and strings the daemons share (the
 * loader's figures for the server's /metrics and /v1/status), and the write transaction
 * that changes them (delete.c changes them in the transaction of a range delete). Never
 * touches events.
 */
#include <errno.h>
#include <lmdb.h>
#include <stdbool.h>
#include <string.h>

#include "etc/err.h"
#include "queue/internal.h"

#define QUEUE_META_NAME_MAX 200 /* bytes */

/* Metadata values: one tag byte, then the payload. */
#define QUEUE_META_TAG_INT 'i' /* 8 bytes, big-endian int64 */
#define QUEUE_META_TAG_STR 's' /* the string's bytes, no NUL */

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
    case QUEUE_META_MAX:
        rc = mdb_get(txn, q->meta_dbi, &k, &v);
        if (rc == 0) {
            int64_t old;

            if (v.mv_size != 9 || ((uint8_t *)v.mv_data)[0] != QUEUE_META_TAG_INT) {
                return EINVAL;
            }
            old = (int64_t)queue_get_be64((uint8_t *)v.mv_data + 1);
            if (op->kind == QUEUE_META_ADD) {
                value = (int64_t)((uint64_t)value + (uint64_t)old);
            } else if (old > value) {
                value = old;
            }
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

int
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

int
queue_meta_add_txn(struct queue *q, MDB_txn *txn, const char *name, int64_t value)
{
    struct queue_meta_op op = {name, QUEUE_META_ADD, value, NULL};

    return queue_meta_op1(q, txn, &op);
}

/* An int64 value's payload, or EINVAL for a string or a malformed value. */
static int
queue_meta_int_val(const MDB_val *v, int64_t *out)
{
    const uint8_t *p = v->mv_data;

    if (v->mv_size != 9 || p[0] != QUEUE_META_TAG_INT) {
        return EINVAL;
    }
    *out = (int64_t)queue_get_be64(p + 1);
    return 0;
}

int
queue_meta_int_txn(struct queue *q, MDB_txn *txn, const char *name, int64_t *out)
{
    MDB_val k;
    MDB_val v;
    int rc;

    *out = 0;
    rc = queue_meta_key(name, &k);
    if (rc != 0) {
        return rc;
    }
    rc = mdb_get(txn, q->meta_dbi, &k, &v);
    if (rc == MDB_NOTFOUND) {
        return 0;
    }
    return rc != 0 ? rc : queue_meta_int_val(&v, out);
}

int
queue_meta_sum_txn(struct queue *q, MDB_txn *txn, const char *prefix, int64_t *out)
{
    MDB_cursor *cur = NULL;
    MDB_val k;
    MDB_val v;
    size_t plen = strlen(prefix);
    int64_t one;
    int rc;

    *out = 0;
    rc = mdb_cursor_open(txn, q->meta_dbi, &cur);
    if (rc != 0) {
        return rc;
    }
    k.mv_size = plen;
    k.mv_data = (void *)prefix;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && k.mv_size >= plen && memcmp(k.mv_data, prefix, plen) == 0) {
        if (queue_meta_int_val(&v, &one) == 0) {
            *out += one;
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/*
 * Events that left the queue into their typed tables: the loader's per-type loaded counters
 * plus its per-type duplicates (keyed rows skipped because PostgreSQL already had the key:
 * such an event is in PostgreSQL once, so conservation counts it as loaded).
 */
int
queue_loaded_txn(struct queue *q, MDB_txn *txn, int64_t *out)
{
    int64_t dup = 0;
    int rc;

    rc = queue_meta_sum_txn(q, txn, QUEUE_META_LOADER_LOADED_PREFIX, out);
    if (rc == 0) {
        rc = queue_meta_sum_txn(q, txn, QUEUE_META_LOADER_DUPLICATES_PREFIX, &dup);
        *out += dup;
    }
    return rc;
}

int
queue_meta_accepted_init(struct queue *q, MDB_txn *txn)
{
    MDB_val k = {sizeof(QUEUE_META_ACCEPTED) - 1, (void *)QUEUE_META_ACCEPTED};
    MDB_val v;
    MDB_stat st;
    int64_t loaded = 0;
    int64_t dead = 0;
    int rc;

    rc = mdb_get(txn, q->meta_dbi, &k, &v);
    if (rc != MDB_NOTFOUND) {
        return rc;
    }
    rc = mdb_stat(txn, q->events_dbi, &st);
    if (rc == 0) {
        rc = queue_loaded_txn(q, txn, &loaded);
    }
    if (rc == 0) {
        rc = queue_meta_int_txn(q, txn, QUEUE_META_LOADER_DEAD_LETTERS, &dead);
    }
    if (rc == 0) {
        rc =
            queue_meta_add_txn(q, txn, QUEUE_META_ACCEPTED, (int64_t)st.ms_entries + loaded + dead);
    }
    return rc;
}

int
queue_meta_apply(struct queue *q, const struct queue_meta_op *ops, size_t n)
{
    MDB_txn *txn = NULL;
    int rc;

    if (n == 0) {
        return 0;
    }
    rc = queue_txn_begin(q, 0, &txn);
    if (rc != 0) {
        txn = NULL;
        goto out;
    }
    rc = queue_meta_ops(q, txn, ops, n);
    if (rc != 0) {
        goto out;
    }
    rc = queue_txn_commit(q, txn, QUEUE_TXN_META, 0);
    txn = NULL;
out:
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    return queue_err(q, rc, "meta");
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
