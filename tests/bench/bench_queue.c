/*
 * bench_queue.c - queue append throughput against raw LMDB on the same disk, in one run:
 * 1 thread x 1 event per call, 64 threads x 1 event per call (group commit), 1 thread x
 * 1,000 events per call, and raw LMDB committing 1, 64 and 1,000 puts per transaction.
 * Each queue figure and its LMDB baseline run in alternating slices, so a disk shared with
 * other work slows both alike. A benchmark, not a test: it never fails on a timing.
 */
#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include "etc/err.h"
#include "etc/log.h"
#include "events/events.h"
#include "queue/queue.h"
#include "tests/lib/lib_test.h"

#define BENCH_MAP_BYTES (UINT64_C(8) << 30) /* sparse: only what is written takes space */
#define BENCH_JSON_BYTES 200                /* a typical small event */
#define BENCH_THREADS 64
#define TMPFS_MAGIC_NUMBER 0x01021994

#define BENCH_SLICES 3 /* alternating slices per compared pair */

static double g_seconds = 3.0; /* per phase (a pair's two phases: per side) */
static char *g_root;
static char g_json[BENCH_JSON_BYTES];
static int g_phase;

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A fresh directory for one phase, so every phase starts from an empty file. */
static char *
phase_dir(void)
{
    char *dir;

    if (asprintf(&dir, "%s/phase%d", g_root, ++g_phase) < 0) {
        abort();
    }
    return dir;
}

static void
event_init(struct queue_event *ev)
{
    memset(ev, 0, sizeof(*ev));
    ev->type = "crash_report";
    ev->type_len = strlen("crash_report");
    ev->json = g_json;
    ev->json_len = sizeof(g_json);
    ev->received_us = 1700000000000000;
    ev_uuid7(ev->uuid);
}

static struct queue *
bench_open(const char *dir)
{
    struct queue *q = NULL;
    int rc = queue_open(&q, dir, BENCH_MAP_BYTES, true);

    if (rc != 0) {
        fprintf(stderr, "bench_queue: queue_open %s: %s\n", dir, dp_strerror(rc));
        exit(1);
    }
    return q;
}

/* Events and seconds measured, summed over slices. */
struct tally {
    double events;
    double seconds;
    double commits;
    double committed;
};

static double
tally_rate(const struct tally *t)
{
    return t->seconds > 0 ? t->events / t->seconds : 0;
}

static double
tally_per_commit(const struct tally *t)
{
    return t->commits > 0 ? t->committed / t->commits : 0;
}

/* 1 thread, `batch` events per queue_append call, for `seconds`. */
static void
bench_queue_serial(size_t batch, double seconds, struct tally *t)
{
    char *dir = phase_dir();
    struct queue *q = bench_open(dir);
    struct queue_event *evs = calloc(batch, sizeof(*evs));
    uint64_t events = 0;
    uint64_t commits = 0;
    uint64_t committed = 0;
    double t0;
    double t1;

    if (evs == NULL) {
        abort();
    }
    for (size_t i = 0; i < batch; i++) {
        event_init(&evs[i]);
    }
    t0 = now_s();
    do {
        int rc = queue_append(q, evs, batch);

        if (rc != 0) {
            fprintf(stderr, "bench_queue: append: %s\n", dp_strerror(rc));
            exit(1);
        }
        events += batch;
        t1 = now_s();
    } while (t1 - t0 < seconds);
    queue_commit_counts(q, &commits, &committed);
    t->events += (double)events;
    t->seconds += t1 - t0;
    t->commits += (double)commits;
    t->committed += (double)committed;
    queue_close(q);
    t_rmtree(dir);
    free(dir);
    free(evs);
}

struct worker {
    pthread_t th;
    struct queue *q;
    atomic_bool *stop;
    atomic_int *ready;
    uint64_t events;
};

static void *
worker_main(void *p)
{
    struct worker *w = p;
    struct queue_event ev;

    event_init(&ev);
    atomic_fetch_add(w->ready, 1);
    while (!atomic_load(w->stop)) {
        int rc = queue_append(w->q, &ev, 1);

        if (rc != 0) {
            fprintf(stderr, "bench_queue: append: %s\n", dp_strerror(rc));
            exit(1);
        }
        w->events++;
    }
    return NULL;
}

/* BENCH_THREADS threads, one event per call, for `seconds`. */
static void
bench_queue_threads(double seconds, struct tally *t)
{
    char *dir = phase_dir();
    struct queue *q = bench_open(dir);
    static struct worker w[BENCH_THREADS];
    atomic_bool stop;
    atomic_int ready;
    uint64_t events = 0;
    uint64_t c0 = 0;
    uint64_t e0 = 0;
    uint64_t c1 = 0;
    uint64_t e1 = 0;
    double t0;
    double t1;

    atomic_init(&stop, false);
    atomic_init(&ready, 0);
    for (int i = 0; i < BENCH_THREADS; i++) {
        w[i].q = q;
        w[i].stop = &stop;
        w[i].ready = &ready;
        w[i].events = 0;
        if (pthread_create(&w[i].th, NULL, worker_main, &w[i]) != 0) {
            abort();
        }
    }
    while (atomic_load(&ready) < BENCH_THREADS) {
        usleep(1000);
    }
    queue_commit_counts(q, &c0, &e0);
    t0 = now_s();
    usleep((useconds_t)(seconds * 1e6));
    atomic_store(&stop, true);
    for (int i = 0; i < BENCH_THREADS; i++) {
        pthread_join(w[i].th, NULL);
        events += w[i].events;
    }
    t1 = now_s();
    queue_commit_counts(q, &c1, &e1);
    /* events acknowledged before t0 are few (threads were just starting): count them all */
    t->events += (double)events;
    t->seconds += t1 - t0;
    t->commits += (double)(c1 - c0);
    t->committed += (double)(e1 - e0);
    queue_close(q);
    t_rmtree(dir);
    free(dir);
}

static void
lmdb_check(int rc, const char *what)
{
    if (rc != 0) {
        fprintf(stderr, "bench_queue: %s: %s\n", what, mdb_strerror(rc));
        exit(1);
    }
}

/*
 * Raw LMDB baseline: one thread committing `per_txn` puts of a record the size the queue
 * writes, with the same flags the queue uses, for `seconds`.
 */
static void
bench_lmdb(size_t per_txn, double seconds, struct tally *t)
{
    char *dir = phase_dir();
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    MDB_val k;
    MDB_val v;
    uint8_t key[8];
    uint8_t rec[32 + 12 + BENCH_JSON_BYTES];
    uint64_t seq = 1;
    double t0;
    double t1;

    memset(rec, 'r', sizeof(rec));
    if (mkdir(dir, 0700) != 0) {
        perror(dir);
        exit(1);
    }
    lmdb_check(mdb_env_create(&env), "env_create");
    lmdb_check(mdb_env_set_maxdbs(env, 4), "set_maxdbs");
    lmdb_check(mdb_env_set_mapsize(env, BENCH_MAP_BYTES), "set_mapsize");
    lmdb_check(mdb_env_open(env, dir, MDB_NOTLS, 0600), "env_open");
    lmdb_check(mdb_txn_begin(env, NULL, 0, &txn), "txn_begin");
    lmdb_check(mdb_dbi_open(txn, "events", MDB_CREATE, &dbi), "dbi_open");
    lmdb_check(mdb_txn_commit(txn), "txn_commit");
    t0 = now_s();
    do {
        lmdb_check(mdb_txn_begin(env, NULL, 0, &txn), "txn_begin");
        for (size_t i = 0; i < per_txn; i++, seq++) {
            for (int b = 0; b < 8; b++) {
                key[b] = (uint8_t)(seq >> (8 * (7 - b)));
            }
            k.mv_size = sizeof(key);
            k.mv_data = key;
            v.mv_size = sizeof(rec);
            v.mv_data = rec;
            lmdb_check(mdb_put(txn, dbi, &k, &v, MDB_APPEND), "put");
        }
        lmdb_check(mdb_txn_commit(txn), "txn_commit");
        t1 = now_s();
    } while (t1 - t0 < seconds);
    mdb_env_close(env);
    t->events += (double)(seq - 1);
    t->seconds += t1 - t0;
    t->commits += (double)(seq - 1) / (double)per_txn;
    t->committed += (double)(seq - 1);
    t_rmtree(dir);
    free(dir);
}

int
main(void)
{
    const char *build = getenv("DP_BUILD");
    const char *secs = getenv("BENCH_SECONDS");
    struct statfs fs;
    struct tally q1 = {0};
    struct tally q64 = {0};
    struct tally q1000 = {0};
    struct tally l1 = {0};
    struct tally l64 = {0};
    struct tally l1000 = {0};
    double slice;

    dp_log_setup("warn", "text");
    if (secs != NULL && atof(secs) > 0) {
        g_seconds = atof(secs);
    }
    slice = g_seconds / BENCH_SLICES;
    memset(g_json, ' ', sizeof(g_json));
    memcpy(g_json, "{\"user_id\":42,\"timestamp\":1700000000,\"message\":\"", 48);
    memcpy(g_json + sizeof(g_json) - 2, "\"}", 2);
    /* Under the build tree, not $TMPDIR: /tmp is tmpfs on many machines, where fsync is free. */
    g_root = t_tmpdir_in(build != NULL ? build : "build");
    if (statfs(g_root, &fs) == 0 && fs.f_type == TMPFS_MAGIC_NUMBER) {
        printf("WARNING: %s is on tmpfs: fsync costs nothing there, figures are not real\n",
               g_root);
    }
    printf("queue benchmark: %s, %.0f s per figure, %d-byte events, fsync at every commit\n",
           g_root, g_seconds, BENCH_JSON_BYTES);
    fflush(stdout);

    for (int i = 0; i < BENCH_SLICES; i++) {
        bench_queue_serial(1, slice, &q1);
        bench_lmdb(1, slice, &l1);
    }
    printf("  queue  1 thread  x 1 event per call     %9.0f appends/s  (%.1f events/commit)\n",
           tally_rate(&q1), tally_per_commit(&q1));
    fflush(stdout);
    for (int i = 0; i < BENCH_SLICES; i++) {
        bench_queue_threads(slice, &q64);
        bench_lmdb(64, slice, &l64);
    }
    printf("  queue %2d threads x 1 event per call     %9.0f appends/s  (%.1f events/commit)\n",
           BENCH_THREADS, tally_rate(&q64), tally_per_commit(&q64));
    fflush(stdout);
    for (int i = 0; i < BENCH_SLICES; i++) {
        bench_queue_serial(1000, slice, &q1000);
        bench_lmdb(1000, slice, &l1000);
    }
    printf("  queue  1 thread  x 1000 events per call %9.0f appends/s  (%.1f events/commit)\n",
           tally_rate(&q1000), tally_per_commit(&q1000));
    printf("  lmdb   1 thread  x 1 put per txn        %9.0f puts/s\n", tally_rate(&l1));
    printf("  lmdb   1 thread  x 64 puts per txn      %9.0f puts/s\n", tally_rate(&l64));
    printf("  lmdb   1 thread  x 1000 puts per txn    %9.0f puts/s\n", tally_rate(&l1000));
    printf("  ratio: 1-thread appends / 1-per-txn LMDB = %.2f (what one caller pays)\n",
           tally_rate(&l1) > 0 ? tally_rate(&q1) / tally_rate(&l1) : 0.0);
    printf("  ratio: %d-thread group commit / 64-per-txn LMDB = %.2f (target >= 0.5)\n",
           BENCH_THREADS, tally_rate(&l64) > 0 ? tally_rate(&q64) / tally_rate(&l64) : 0.0);
    printf("  ratio: 1000-per-call appends / 1000-per-txn LMDB = %.2f\n",
           tally_rate(&l1000) > 0 ? tally_rate(&q1000) / tally_rate(&l1000) : 0.0);
    t_rmtree(g_root);
    free(g_root);
    return 0;
}
