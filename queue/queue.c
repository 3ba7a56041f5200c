/*
 * queue.c - the core of the durable LMDB queue: opening and closing the environment, the
 * instance id, the disk reserve and the loader lock. The transaction and error helpers are
 * in txn.c, appends in commit.c, reads in scan.c, deletes in delete.c, metadata in meta.c,
 * counts in stats.c; the record format is in internal.h.
 * It must never lose an acknowledged append nor reuse a sequence number.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "etc/err.h"
#include "etc/log.h"
#include "queue/internal.h"

#define QUEUE_DB_EVENTS "events"       /* seq (8 bytes, big-endian) -> record */
#define QUEUE_DB_META "meta"           /* name -> counter or string, for the daemons */
#define QUEUE_DB_SYS "sys"             /* the queue's own state: next_seq, the instance id */
#define QUEUE_DB_KEYS "keys"           /* idempotency key -> key record (internal.h) */
#define QUEUE_DB_KEY_TIMES "key_times" /* be64(recorded_us) + key -> "" */
#define QUEUE_LOCK_FILE "loader.lock"
#define QUEUE_DATA_FILE "data.mdb"    /* LMDB's name for the data file in the directory */
#define QUEUE_MAX_READERS 512         /* 64+ server threads, the loader's workers, tools */
#define QUEUE_MIN_BYTES (256u * 1024) /* smallest map: room for the reserve and the trees */

_Static_assert(QUEUE_FAULT_MAP_FULL == MDB_MAP_FULL, "QUEUE_FAULT_MAP_FULL is MDB_MAP_FULL");

/* ---- the disk reserve's sizes ---- */

/*
 * Pages of the data file kept allocated on disk beyond what appends may use: what a
 * loader's delete transaction needs (the pages it copies on write, the free list's record
 * of the pages it frees) with a wide margin. And the step the file is grown by.
 */
#define QUEUE_DISK_RESERVE_PAGES 128
#define QUEUE_DISK_STEP_PAGES 256

/* ---- the instance id ---- */

/* 128 random bits as lower-case hex into out (QUEUE_INSTANCE_ID_LEN + 1 bytes). */
static int
queue_instance_draw(char *out)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t bits[QUEUE_INSTANCE_ID_LEN / 2];
    size_t got = 0;

    while (got < sizeof(bits)) {
        ssize_t n = getrandom(bits + got, sizeof(bits) - got, 0);
        if (n < 0 && errno != EINTR) {
            return errno;
        }
        got += n > 0 ? (size_t)n : 0;
    }
    for (size_t i = 0; i < sizeof(bits); i++) {
        out[2 * i] = hex[bits[i] >> 4];
        out[2 * i + 1] = hex[bits[i] & 15];
    }
    out[QUEUE_INSTANCE_ID_LEN] = '\0';
    return 0;
}

/*
 * Read the instance id in txn (a write transaction), or give the queue one. A queue that
 * never handed out a sequence number (no stored counter, no event) is being created now:
 * its id predates every event it will hold. Any other queue existed before instance ids
 * did, and is marked as such. Returns an LMDB or errno code.
 */
static int
queue_instance_init(struct queue *q, MDB_txn *txn)
{
    MDB_val k = {sizeof(QUEUE_KEY_INSTANCE) - 1, (void *)QUEUE_KEY_INSTANCE};
    MDB_val ka = {sizeof(QUEUE_KEY_INSTANCE_ASSIGNED) - 1, (void *)QUEUE_KEY_INSTANCE_ASSIGNED};
    MDB_val kn = {sizeof(QUEUE_KEY_NEXT_SEQ) - 1, (void *)QUEUE_KEY_NEXT_SEQ};
    MDB_val v;
    MDB_stat st;
    int rc;

    rc = mdb_get(txn, q->sys_dbi, &k, &v);
    if (rc == 0) {
        if (v.mv_size != QUEUE_INSTANCE_ID_LEN) {
            return MDB_CORRUPTED;
        }
        memcpy(q->instance, v.mv_data, QUEUE_INSTANCE_ID_LEN);
        q->instance[QUEUE_INSTANCE_ID_LEN] = '\0';
        rc = mdb_get(txn, q->sys_dbi, &ka, &v);
        q->instance_assigned = rc == 0;
        return rc == MDB_NOTFOUND ? 0 : rc;
    }
    if (rc != MDB_NOTFOUND) {
        return rc;
    }
    rc = mdb_stat(txn, q->events_dbi, &st);
    if (rc == 0) {
        rc = mdb_get(txn, q->sys_dbi, &kn, &v);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        return rc;
    }
    q->instance_assigned = rc == 0 || st.ms_entries > 0;
    rc = queue_instance_draw(q->instance);
    if (rc != 0) {
        return rc;
    }
    v.mv_size = QUEUE_INSTANCE_ID_LEN;
    v.mv_data = q->instance;
    rc = mdb_put(txn, q->sys_dbi, &k, &v, MDB_NOOVERWRITE);
    if (rc == 0 && q->instance_assigned) {
        v.mv_size = 0;
        v.mv_data = "";
        rc = mdb_put(txn, q->sys_dbi, &ka, &v, 0);
    }
    if (rc == 0 && q->instance_assigned) {
        dp_info("queue given an instance id (it had none)", "path=%s instance_id=%s", q->path,
                q->instance);
    }
    return rc;
}

const char *
queue_instance(const struct queue *q, bool *assigned)
{
    if (assigned != NULL) {
        *assigned = q->instance_assigned;
    }
    return q->instance;
}

/* ---- open, close ---- */

/*
 * fsync the directory dir, so that the entries made in it survive a power cut: a new file's
 * or directory's name is durable only once its directory is. A file system that cannot sync
 * directories (EINVAL) keeps them by other means. Returns 0 or an errno value.
 */
static int
queue_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0;

    if (fd < 0) {
        return errno;
    }
    if (fsync(fd) != 0 && errno != EINVAL) {
        rc = errno;
    }
    close(fd);
    return rc;
}

/*
 * mkdir -p with mode 0700 for what is created; the parent of each directory created is
 * fsync'd, so that a power cut cannot take the queue's directory away after its first
 * acknowledged append. Returns 0 or an errno value.
 */
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
        if (mkdir(tmp, 0700) == 0) {
            char *slash = strrchr(tmp, '/');

            /* tmp's parent: cut at its last slash ("/" when that is the first; "." for
             * a relative path's first directory) */
            if (slash == NULL) {
                rc = queue_sync_dir(".");
            } else {
                *slash = '\0';
                rc = queue_sync_dir(slash == tmp ? "/" : tmp);
                *slash = '/';
            }
            if (rc != 0) {
                goto out;
            }
        } else if (errno != EEXIST) {
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

/* Pages on LMDB's free list as last committed, or 0 on error. */
static uint64_t
queue_free_pages(struct queue *q)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k;
    MDB_val v;
    uint64_t n = 0;

    /* Database 0 is LMDB's free list: txn id -> [count, page numbers...]. LMDB lets only
     * a read-only transaction open a cursor on it (MDB_NOTLS allows one in this thread). */
    if (mdb_txn_begin(q->env, NULL, MDB_RDONLY, &txn) != 0) {
        return 0;
    }
    if (mdb_cursor_open(txn, 0, &cur) != 0) {
        mdb_txn_abort(txn);
        return 0;
    }
    while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0) {
        if (v.mv_size >= sizeof(size_t)) {
            size_t count;

            memcpy(&count, v.mv_data, sizeof(count));
            n += count;
        }
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return n;
}

int
queue_disk_reserve(struct queue *q, size_t bytes)
{
    MDB_envinfo info;
    mdb_filehandle_t fd;
    uint64_t used;  /* pages up to the last one committed */
    uint64_t alloc; /* pages known allocated on disk */
    uint64_t need;  /* pages this append may add: records, branches */
    uint64_t free_pages;
    uint64_t want;
    uint64_t step;
    int rc;

    if (q->no_fallocate || mdb_env_info(q->env, &info) != 0 || mdb_env_get_fd(q->env, &fd) != 0) {
        return 0;
    }
    used = (uint64_t)info.me_last_pgno + 1;
    alloc = q->alloc_bytes / q->psize;
    need = 2 * (bytes / q->psize + 2);
    if (alloc >= used + need + q->disk_reserve_pages) {
        return 0;
    }
    /* Short of allocated pages past the end: free pages inside the file count too (the
     * append and the loader's deletes reuse them first). */
    free_pages = queue_free_pages(q);
    if (alloc + free_pages >= used + need + q->disk_reserve_pages) {
        return 0;
    }
    want = used + need + q->disk_reserve_pages;
    want = want > free_pages ? want - free_pages : 0;
    want = want > used ? want : used;
    if (want * q->psize > q->map_bytes) {
        return 0; /* beyond the map the map's own limit answers */
    }
    /* A step more, so that few appends call the kernel; on a nearly full disk, no more. */
    step = want + QUEUE_DISK_STEP_PAGES;
    rc =
        step * q->psize <= q->map_bytes ? posix_fallocate(fd, 0, (off_t)(step * q->psize)) : ENOSPC;
    if (rc == 0) {
        want = step;
    } else if (rc == ENOSPC || rc == EDQUOT) {
        rc = posix_fallocate(fd, 0, (off_t)(want * q->psize));
    }
    if (rc == EOPNOTSUPP || rc == EINVAL) {
        dp_warn("the file system cannot preallocate the queue: no disk reserve for the loader",
                "path=%s", q->path);
        q->no_fallocate = true;
        return 0;
    }
    if (rc == 0 && want * q->psize > q->alloc_bytes) {
        q->alloc_bytes = want * q->psize;
    }
    return rc;
}

/*
 * Open the named databases, read or draw the instance id, and work out the append limit:
 * appends stop (DP_ERR_FULL) while
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
    rc = mdb_dbi_open(txn, QUEUE_DB_KEYS, MDB_CREATE, &q->keys_dbi);
    if (rc != 0) {
        goto out;
    }
    rc = mdb_dbi_open(txn, QUEUE_DB_KEY_TIMES, MDB_CREATE, &q->key_times_dbi);
    if (rc != 0) {
        goto out;
    }
    rc = queue_meta_accepted_init(q, txn);
    if (rc != 0) {
        goto out;
    }
    rc = queue_instance_init(q, txn);
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
    q->psize = st.ms_psize;
    map_pages = info.me_mapsize / st.ms_psize;
    reserve = map_pages / 64;
    if (reserve < 32) {
        reserve = 32;
    }
    q->limit_pages = map_pages > 2 * reserve ? map_pages - reserve : map_pages / 2;
    q->disk_reserve_pages = reserve < QUEUE_DISK_RESERVE_PAGES ? reserve : QUEUE_DISK_RESERVE_PAGES;
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
    atomic_init(&q->dedup_window_us, (int64_t)QUEUE_DEDUP_WINDOW_S * 1000000);
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
    rc = mdb_env_set_maxdbs(q->env, 8);
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
    /* LMDB may just have created data.mdb and lock.mdb: make their names durable before
     * anything stored in them is acknowledged. */
    rc = queue_sync_dir(path);
    if (rc != 0) {
        dp_error("cannot sync the queue directory", "path=%s err=%s", path, strerror(rc));
        rc = DP_ERR_IO;
        goto out;
    }
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
    /* Name the file when it is the data file LMDB cannot read: what an operator must look at
     * (a file that is not LMDB's, from another version, or damaged). */
    dp_error("queue open failed", "path=%s%s%s err=%s", path,
             rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH || rc == MDB_CORRUPTED ? " file=" : "",
             rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH || rc == MDB_CORRUPTED
                 ? QUEUE_DATA_FILE
                 : "",
             mdb_strerror(rc));
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

/* ---- loader lock, test seam ---- */

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

void
queue_set_dedup_window(struct queue *q, int64_t window_s)
{
    if (window_s < 1) {
        window_s = 1;
    }
    atomic_store(&q->dedup_window_us, window_s * 1000000);
}

void
queue_set_fault_ops(struct queue *q, const struct queue_fault_ops *ops)
{
    atomic_store(&q->fault, ops);
}

int
queue_test_forget_instance(struct queue *q)
{
    MDB_val k = {sizeof(QUEUE_KEY_INSTANCE) - 1, (void *)QUEUE_KEY_INSTANCE};
    MDB_val ka = {sizeof(QUEUE_KEY_INSTANCE_ASSIGNED) - 1, (void *)QUEUE_KEY_INSTANCE_ASSIGNED};
    MDB_txn *txn = NULL;
    int rc;

    rc = queue_txn_begin(q, 0, &txn);
    if (rc != 0) {
        return queue_err(q, rc, "forget_instance");
    }
    rc = mdb_del(txn, q->sys_dbi, &k, NULL);
    if (rc == 0 || rc == MDB_NOTFOUND) {
        rc = mdb_del(txn, q->sys_dbi, &ka, NULL);
    }
    if (rc == 0 || rc == MDB_NOTFOUND) {
        rc = mdb_txn_commit(txn);
    } else {
        mdb_txn_abort(txn);
    }
    return queue_err(q, rc, "forget_instance");
}
