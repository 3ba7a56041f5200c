/*
 * tool.c - what datapipe-queue (queuetool/) does to a queue besides the daemons' work: open it
 * read-only, copy it online into a backup, check that every record decodes and the counters
 * add up; and the loader's one repair after a restore, moving the sequence counter forward.
 * A read-only open never writes to the data file; a backup never changes the queue it copies.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "etc/err.h"
#include "etc/log.h"
#include "queue/internal.h"

#define QUEUE_TOOL_DATA_FILE "data.mdb" /* what LMDB names the data file of an environment */

/* Open the five databases in a read-only transaction; none is created. */
static int
tool_open_dbs(struct queue *q)
{
    static const char *const names[] = {"events", "meta", "sys", "keys", "key_times"};
    MDB_dbi *dbis[] = {&q->events_dbi, &q->meta_dbi, &q->sys_dbi, &q->keys_dbi, &q->key_times_dbi};
    MDB_txn *txn = NULL;
    MDB_val k = {sizeof(QUEUE_KEY_INSTANCE) - 1, (void *)QUEUE_KEY_INSTANCE};
    MDB_val ka = {sizeof(QUEUE_KEY_INSTANCE_ASSIGNED) - 1, (void *)QUEUE_KEY_INSTANCE_ASSIGNED};
    MDB_val v;
    MDB_envinfo info;
    MDB_stat st;
    int rc;

    rc = mdb_txn_begin(q->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) {
        txn = NULL;
        goto out;
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        rc = mdb_dbi_open(txn, names[i], 0, dbis[i]);
        if (rc != 0) {
            dp_error("queue database missing: open the queue once with datapipe-server",
                     "path=%s database=%s err=%s", q->path, names[i], mdb_strerror(rc));
            goto out;
        }
    }
    rc = mdb_get(txn, q->sys_dbi, &k, &v);
    if (rc == 0 && v.mv_size == QUEUE_INSTANCE_ID_LEN) {
        memcpy(q->instance, v.mv_data, QUEUE_INSTANCE_ID_LEN);
        q->instance_assigned = mdb_get(txn, q->sys_dbi, &ka, &v) == 0;
    }
    rc = mdb_env_info(q->env, &info);
    if (rc == 0) {
        rc = mdb_env_stat(q->env, &st);
    }
    if (rc == 0) {
        q->map_bytes = info.me_mapsize;
        q->psize = st.ms_psize;
        /* Handles opened in a transaction outlive it only once it commits (read-only too). */
        rc = mdb_txn_commit(txn);
        txn = NULL;
    }
out:
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    return rc;
}

int
queue_open_readonly(struct queue **out, const char *path)
{
    struct queue *q = NULL;
    struct stat st;
    char *file = NULL;
    int rc;

    if (out == NULL || path == NULL || path[0] == '\0') {
        return DP_ERR_INVALID;
    }
    *out = NULL;
    if (asprintf(&file, "%s/%s", path, QUEUE_TOOL_DATA_FILE) < 0) {
        return DP_ERR_NOMEM;
    }
    /* LMDB would create an empty environment in a directory without one: a typo in
     * queue.path must not read as an empty queue. */
    if (stat(file, &st) != 0) {
        dp_error("no queue there", "file=%s err=%s", file, strerror(errno));
        free(file);
        return DP_ERR_NOTFOUND;
    }
    free(file);
    q = calloc(1, sizeof(*q));
    if (q == NULL) {
        return DP_ERR_NOMEM;
    }
    q->lock_fd = -1;
    q->sync = true; /* nothing to flush at close */
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->idle_cv, NULL);
    atomic_init(&q->fault, NULL);
    atomic_init(&q->dedup_window_us, (int64_t)QUEUE_DEDUP_WINDOW_S * 1000000);
    q->path = strdup(path);
    if (q->path == NULL) {
        rc = DP_ERR_NOMEM;
        goto out;
    }
    rc = mdb_env_create(&q->env);
    if (rc != 0) {
        q->env = NULL;
        goto lmdb_fail;
    }
    rc = mdb_env_set_maxdbs(q->env, 8);
    if (rc == 0) {
        rc = mdb_env_set_maxreaders(q->env, 512);
    }
    if (rc == 0) {
        rc = mdb_env_open(q->env, path, MDB_NOTLS | MDB_RDONLY, 0600);
    }
    if (rc != 0) {
        goto lmdb_fail;
    }
    q->env_open = true;
    rc = tool_open_dbs(q);
    if (rc != 0) {
        goto lmdb_fail;
    }
    *out = q;
    q = NULL;
    goto out;

lmdb_fail:
    dp_error("queue open (read-only) failed", "path=%s err=%s", path, mdb_strerror(rc));
    rc = rc == ENOMEM ? DP_ERR_NOMEM
         : (rc == EACCES || rc == ENOENT || rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH ||
            rc == MDB_NOTFOUND)
             ? DP_ERR_INVALID
             : DP_ERR_IO;
out:
    queue_close(q);
    return rc;
}

/* fsync the directory path (a new entry in it must survive a power cut). Returns an errno. */
static int
tool_sync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0;

    if (fd < 0) {
        return errno;
    }
    if (fsync(fd) != 0) {
        rc = errno;
    }
    close(fd);
    return rc;
}

/* The directory holding path (a new "." for a bare name), malloc'd; NULL without memory. */
static char *
tool_parent(const char *path)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL) {
        return strdup(".");
    }
    if (slash == path) {
        return strdup("/");
    }
    return strndup(path, (size_t)(slash - path));
}

int
queue_backup(struct queue *q, const char *dir)
{
    char *file = NULL;
    char *parent = NULL;
    int fd = -1;
    int rc;

    if (q == NULL || dir == NULL || dir[0] == '\0') {
        return DP_ERR_INVALID;
    }
    parent = tool_parent(dir);
    if (parent == NULL || asprintf(&file, "%s/%s", dir, QUEUE_TOOL_DATA_FILE) < 0) {
        file = NULL;
        rc = DP_ERR_NOMEM;
        goto out;
    }
    if (mkdir(dir, 0700) == 0) {
        rc = tool_sync_dir(parent);
        if (rc != 0) {
            goto sys_fail;
        }
    } else if (errno != EEXIST) {
        rc = errno;
        goto sys_fail;
    }
    /* O_EXCL: a backup never overwrites another one. */
    fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = errno;
        goto sys_fail;
    }
    /*
     * MDB_CP_COMPACT copies the pages in use from one read transaction: a consistent
     * snapshot while the server appends, without the free pages (so a mostly drained queue
     * makes a small file). mdb_env_copyfd2 rather than mdb_env_copy2 so that the copy can be
     * fsync'd here before the backup is reported done.
     */
    rc = mdb_env_copyfd2(q->env, fd, MDB_CP_COMPACT);
    if (rc != 0) {
        dp_error("queue backup failed", "path=%s file=%s err=%s", q->path, file, mdb_strerror(rc));
        rc = rc == ENOSPC || rc == EDQUOT ? DP_ERR_FULL : DP_ERR_IO;
        goto out;
    }
    if (fsync(fd) != 0) {
        rc = errno;
        goto sys_fail;
    }
    rc = tool_sync_dir(dir);
    if (rc != 0) {
        goto sys_fail;
    }
    goto out;

sys_fail:
    dp_error("queue backup failed", "path=%s dir=%s err=%s", q->path, dir, strerror(rc));
    rc = rc == EEXIST || rc == EACCES || rc == ENOENT || rc == ENOTDIR ? DP_ERR_INVALID
         : rc == ENOSPC || rc == EDQUOT                                ? DP_ERR_FULL
                                                                       : DP_ERR_IO;
out:
    if (fd >= 0) {
        close(fd);
        if (rc != 0) {
            unlink(file); /* no half backup left to be restored */
        }
    }
    free(file);
    free(parent);
    return rc;
}

/* Why the record v (under an 8-byte key) does not decode, for an operator. */
static const char *
tool_rec_why(const MDB_val *k, const MDB_val *v)
{
    const uint8_t *p = v->mv_data;

    if (k->mv_size != 8) {
        return "key is not a sequence number";
    }
    if (v->mv_size < QUEUE_REC_HEAD_V1) {
        return "shorter than a record header";
    }
    if (p[0] < 1 || p[0] > QUEUE_RECORD_VERSION) {
        return "unknown record version";
    }
    return "field lengths do not fit the record";
}

/* Walk the events database in txn: decode every record, note the first and last keys. */
static int
tool_check_events(struct queue *q, MDB_txn *txn, struct queue_check_report *out, queue_check_fn fn,
                  void *arg)
{
    MDB_cursor *cur = NULL;
    MDB_val k;
    MDB_val v;
    struct queue_event ev;
    int rc;

    rc = mdb_cursor_open(txn, q->events_dbi, &cur);
    if (rc != 0) {
        return rc;
    }
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint64_t seq = k.mv_size == 8 ? queue_get_be64(k.mv_data) : 0;

        out->records++;
        if (out->first_seq == 0) {
            out->first_seq = seq;
        }
        out->last_seq = seq;
        if (queue_rec_decode(&k, &v, &ev) != 0) {
            out->bad_records++;
            if (fn != NULL) {
                fn(arg, seq, tool_rec_why(&k, &v));
            }
        }
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Count the key records and their age index; a key record of the wrong size is bad. */
static int
tool_check_keys(struct queue *q, MDB_txn *txn, struct queue_check_report *out)
{
    MDB_cursor *cur = NULL;
    MDB_val k;
    MDB_val v;
    MDB_stat st;
    int rc;

    rc = mdb_stat(txn, q->key_times_dbi, &st);
    if (rc != 0) {
        return rc;
    }
    out->key_times = st.ms_entries;
    rc = mdb_cursor_open(txn, q->keys_dbi, &cur);
    if (rc != 0) {
        return rc;
    }
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *p = v.mv_data;

        out->keys++;
        if (v.mv_size != QUEUE_KEYREC_SIZE || p[0] != QUEUE_KEYREC_VERSION) {
            out->bad_keys++;
        }
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int
queue_check(struct queue *q, struct queue_check_report *out, queue_check_fn fn, void *arg)
{
    MDB_txn *txn = NULL;
    int64_t accepted = 0;
    int64_t loaded = 0;
    int64_t dead = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    /* One read transaction: the counters and the records are one snapshot, as in
     * queue_stats, so the equation must hold exactly even while the daemons write. */
    rc = queue_txn_begin(q, MDB_RDONLY, &txn);
    if (rc != 0) {
        txn = NULL;
        goto out;
    }
    rc = tool_check_events(q, txn, out, fn, arg);
    if (rc == 0) {
        rc = tool_check_keys(q, txn, out);
    }
    if (rc == 0) {
        rc = queue_next_seq(q, txn, &out->next_seq);
    }
    if (rc == 0) {
        MDB_val k = {sizeof(QUEUE_META_ACCEPTED) - 1, (void *)QUEUE_META_ACCEPTED};
        MDB_val v;

        /* A queue last written by a release before the counter has none yet (queue_open
         * gives it one): nothing to hold the records against, not a fault. */
        rc = mdb_get(txn, q->meta_dbi, &k, &v);
        out->accepted_recorded = rc == 0;
        rc = rc == MDB_NOTFOUND ? 0 : rc;
    }
    if (rc == 0) {
        rc = queue_meta_int_txn(q, txn, QUEUE_META_ACCEPTED, &accepted);
    }
    if (rc == 0) {
        rc = queue_loaded_txn(q, txn, &loaded);
    }
    if (rc == 0) {
        rc = queue_meta_int_txn(q, txn, QUEUE_META_LOADER_DEAD_LETTERS, &dead);
    }
    if (rc != 0) {
        goto out;
    }
    out->accepted = (uint64_t)accepted;
    out->loaded = (uint64_t)loaded;
    out->dead_lettered = (uint64_t)dead;
    out->counters_ok =
        !out->accepted_recorded || out->accepted == out->loaded + out->dead_lettered + out->records;
    out->next_seq_ok = out->next_seq > out->last_seq;
    out->keys_ok = out->bad_keys == 0 && out->keys == out->key_times;
out:
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    return queue_err(q, rc, "check");
}

int
queue_seq_advance(struct queue *q, uint64_t next_seq, uint64_t *was)
{
    MDB_txn *txn = NULL;
    MDB_val k = {sizeof(QUEUE_KEY_NEXT_SEQ) - 1, (void *)QUEUE_KEY_NEXT_SEQ};
    MDB_val v;
    uint8_t buf[8];
    uint64_t cur = 0;
    int rc;

    rc = queue_txn_begin(q, 0, &txn);
    if (rc != 0) {
        txn = NULL;
        goto out;
    }
    rc = queue_next_seq(q, txn, &cur);
    if (rc != 0 || cur >= next_seq) {
        goto out;
    }
    queue_put_be64(buf, next_seq);
    v.mv_size = sizeof(buf);
    v.mv_data = buf;
    rc = mdb_put(txn, q->sys_dbi, &k, &v, 0);
    if (rc == 0) {
        rc = queue_txn_commit(q, txn, QUEUE_TXN_META, 0);
        txn = NULL;
    }
    if (rc == 0) {
        dp_warn("queue sequence counter moved forward", "path=%s from=%" PRIu64 " to=%" PRIu64,
                q->path, cur, next_seq);
    }
out:
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    if (was != NULL) {
        *was = cur;
    }
    return queue_err(q, rc, "seq_advance");
}
