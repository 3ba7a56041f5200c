/*
 * crash_driver.c - the queue's whole life, run under the shim (shim.c) so that the explorer can
 * build the crash states of every moment of it: a fresh queue's first appends, keyed and
 * rejected events, group commits from threads, the loader's deletes, key pruning, the disk
 * reserve's preallocation, and a reopen that grows the map.
 *   crash_driver ROOT [nosync]   the queue in ROOT/q/sub; nosync: a planted bug, the queue
 *                                opened without sync, so acknowledgements come before the
 *                                data is durable (the explorer must find the loss)
 *   crash_driver ROOT recover    ROOT holds what a power cut left of an earlier run, and
 *                                ROOT.marks the events that run started (crash_explore --save):
 *                                announce those, open the queue, take every event recovery
 *                                shows as acknowledged (they must stay), and live on: appends
 *                                from threads, deletes, a reopen
 * Test code only.
 */
#include <dlfcn.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "etc/err.h"
#include "etc/log.h"
#include "queue/queue.h"
#include "tests/crash/crash_model.h"

#define DRIVER_THREADS 4
#define DRIVER_CALLS 6 /* appends per thread */

struct driver {
    const char *dir;
    bool sync;
    struct queue *q;
    pthread_mutex_t mu; /* next, marks of a call's start */
    uint32_t next;      /* next event index */
    void (*mark)(const char *);
    int failed;
};

static void driver_mark(struct driver *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
driver_mark(struct driver *d, const char *fmt, ...)
{
    char line[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (d->mark != NULL) {
        d->mark(line);
    }
}

static int
driver_fail(struct driver *d, const char *what, int rc)
{
    fprintf(stderr, "crash_driver: %s: %s\n", what, dp_strerror(rc));
    d->failed = 1;
    return rc;
}

/*
 * Append n events (keyed every third index, rejected every seventh) of len bytes each, in
 * one call; marks their start and, once queue_append returned 0, each acknowledgement.
 */
static int
driver_append(struct driver *d, uint32_t n, uint32_t len)
{
    struct queue_event evs[8];
    char json[8][CRASH_JSON_MAX + 1];
    char key[8][32];
    uint32_t first;
    int rc;

    memset(evs, 0, sizeof(evs));
    pthread_mutex_lock(&d->mu);
    first = d->next;
    d->next += n;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t i = first + k;
        struct queue_event *ev = &evs[k];
        bool keyed = i % 3 == 0;
        bool rejected = i % 7 == 6;

        crash_event_json(i, len, json[k]);
        ev->type = CRASH_TYPE;
        ev->type_len = strlen(CRASH_TYPE);
        ev->json = json[k];
        ev->json_len = len;
        ev->uuid[0] = (uint8_t)i;
        ev->uuid[1] = (uint8_t)(i >> 8);
        ev->received_us = 0;
        if (keyed) {
            ev->key_len = crash_event_key(i, key[k]);
            ev->key = key[k];
            crash_event_digest(i, ev->digest, sizeof(ev->digest));
            ev->answer = 202;
        }
        if (rejected) {
            ev->flags = QUEUE_F_REJECTED;
            ev->error = CRASH_ERROR;
            ev->error_len = strlen(CRASH_ERROR);
        }
        driver_mark(d, "start %u %u %d %d", i, len, keyed ? 1 : 0, rejected ? 1 : 0);
    }
    pthread_mutex_unlock(&d->mu);
    rc = queue_append(d->q, evs, n);
    if (rc != 0) {
        return driver_fail(d, "append", rc);
    }
    for (uint32_t k = 0; k < n; k++) {
        if (evs[k].dedup != QUEUE_DEDUP_NEW) {
            return driver_fail(d, "append: a new key was taken for a repeat", DP_ERR_INVALID);
        }
        driver_mark(d, "ack %u %" PRIu64, first + k, evs[k].seq);
    }
    return 0;
}

/* Repeat event i (keyed): nothing may be appended. */
static int
driver_repeat(struct driver *d, uint32_t i, uint32_t len)
{
    struct queue_event ev = {0};
    char json[CRASH_JSON_MAX + 1];
    char key[32];
    int rc;

    crash_event_json(i, len, json);
    ev.type = CRASH_TYPE;
    ev.type_len = strlen(CRASH_TYPE);
    ev.json = json;
    ev.json_len = len;
    ev.key_len = crash_event_key(i, key);
    ev.key = key;
    crash_event_digest(i, ev.digest, sizeof(ev.digest));
    ev.answer = 202;
    rc = queue_append(d->q, &ev, 1);
    if (rc == 0 && ev.dedup != QUEUE_DEDUP_REPEAT) {
        rc = DP_ERR_INVALID;
    }
    return rc != 0 ? driver_fail(d, "repeat", rc) : 0;
}

struct driver_batch {
    uint64_t first;
    uint64_t last;
    int64_t loaded;
    int64_t dead;
    size_t n;
    size_t max;
};

static int
driver_batch_one(void *arg, const struct queue_event *ev)
{
    struct driver_batch *b = arg;

    if (b->n == 0) {
        b->first = ev->seq;
    }
    b->last = ev->seq;
    b->n++;
    if ((ev->flags & QUEUE_F_REJECTED) != 0) {
        b->dead++;
    } else {
        b->loaded++;
    }
    return 0;
}

/* Take up to max of the oldest events off the queue with the loader's figures. */
static int
driver_delete(struct driver *d, size_t max)
{
    struct driver_batch b = {0};
    struct queue_meta_op ops[5];
    size_t n = 0;
    int rc;

    rc = queue_read(d->q, 1, max, 0, driver_batch_one, &b, NULL, NULL);
    if (rc != 0 || b.n == 0) {
        return driver_fail(d, "read a batch", rc != 0 ? rc : DP_ERR_NOTFOUND);
    }
    if (b.loaded > 0) {
        ops[n++] = (struct queue_meta_op){QUEUE_META_LOADER_LOADED_PREFIX CRASH_TYPE,
                                          QUEUE_META_ADD, b.loaded, NULL};
    }
    if (b.dead > 0) {
        ops[n++] =
            (struct queue_meta_op){QUEUE_META_LOADER_DEAD_LETTERS, QUEUE_META_ADD, b.dead, NULL};
        ops[n++] =
            (struct queue_meta_op){QUEUE_META_LOADER_DEAD_INGEST, QUEUE_META_ADD, b.dead, NULL};
    }
    ops[n++] = (struct queue_meta_op){QUEUE_META_LOADER_BATCHES, QUEUE_META_ADD, 1, NULL};
    ops[n++] = (struct queue_meta_op){QUEUE_META_LOADER_LAST_SUCCESS_US, QUEUE_META_SET,
                                      (int64_t)time(NULL) * 1000000, NULL};
    driver_mark(d, "delbegin %" PRIu64 " %" PRIu64, b.first, b.last);
    rc = queue_delete_range(d->q, b.first, b.last, ops, n);
    if (rc != 0) {
        return driver_fail(d, "delete", rc);
    }
    driver_mark(d, "delend %" PRIu64 " %" PRIu64, b.first, b.last);
    return 0;
}

static void *
driver_thread(void *arg)
{
    struct driver *d = arg;

    for (uint32_t c = 0; c < DRIVER_CALLS && !d->failed; c++) {
        driver_append(d, 1 + c % 3, 40 + 10 * c);
    }
    return NULL;
}

static int
driver_open(struct driver *d, uint64_t map_bytes)
{
    int rc = queue_open(&d->q, d->dir, map_bytes, d->sync);

    if (rc != 0) {
        return driver_fail(d, "open", rc);
    }
    rc = queue_lock_loader(d->q);
    if (rc != 0) {
        return driver_fail(d, "loader lock", rc);
    }
    driver_mark(d, "instance %s", queue_instance(d->q, NULL));
    return 0;
}

/* Recovery: every event the recovered queue holds is promised from now on. */
static int
driver_adopt_one(void *arg, const struct queue_event *ev)
{
    struct driver *d = arg;
    uint32_t i = crash_event_index(ev->json, ev->json_len);

    if (i == UINT32_MAX || i >= CRASH_RECOVER_FIRST) {
        return DP_ERR_INVALID;
    }
    driver_mark(d, "start %u %zu %d %d", i, ev->json_len, ev->key_len > 0 ? 1 : 0,
                (ev->flags & QUEUE_F_REJECTED) != 0 ? 1 : 0);
    driver_mark(d, "ack %u %" PRIu64, i, ev->seq);
    return 0;
}

static void
driver_recover(struct driver *d, const char *root)
{
    pthread_t th[DRIVER_THREADS];
    char line[256];
    FILE *f;
    int rc;

    /* What the earlier run may have left: before the first call, so that every crash state of
     * the recovery knows those events were appended. */
    snprintf(line, sizeof(line), "%s.marks", root);
    f = fopen(line, "r");
    if (f == NULL) {
        driver_fail(d, "open the earlier run's marks", DP_ERR_NOTFOUND);
        return;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        driver_mark(d, "%s", line);
    }
    fclose(f);
    if (driver_open(d, CRASH_LARGE_MAP) != 0) {
        return;
    }
    rc = queue_read(d->q, 1, SIZE_MAX, 0, driver_adopt_one, d, NULL, NULL);
    if (rc != 0) {
        driver_fail(d, "read the recovered queue", rc);
        queue_close(d->q);
        return;
    }
    /* Its keys' fate depends on the clock of the earlier run: not checked. */
    driver_mark(d, "prune %u", CRASH_RECOVER_FIRST);
    d->next = CRASH_RECOVER_FIRST;
    for (int t = 0; t < DRIVER_THREADS; t++) {
        pthread_create(&th[t], NULL, driver_thread, d);
    }
    for (int t = 0; t < DRIVER_THREADS; t++) {
        pthread_join(th[t], NULL);
    }
    if (!d->failed) {
        driver_delete(d, 30);
    }
    for (int k = 0; k < 10 && !d->failed; k++) {
        driver_append(d, 2, 1500);
    }
    queue_close(d->q);
    d->q = NULL;
    if (d->failed || driver_open(d, CRASH_LARGE_MAP) != 0) {
        return;
    }
    for (int k = 0; k < 4 && !d->failed; k++) {
        driver_append(d, 1, 80);
    }
    if (!d->failed) {
        driver_delete(d, 20);
    }
    queue_close(d->q);
    d->q = NULL;
}

static void
driver_run(struct driver *d)
{
    pthread_t th[DRIVER_THREADS];
    struct queue_meta_op run = {QUEUE_META_LOADER_LAST_RUN_RESULT, QUEUE_META_STR, 0, "ok"};
    struct timespec pause = {1, 100 * 1000 * 1000};

    /* A fresh queue: directories, files, the first commits. */
    if (driver_open(d, CRASH_SMALL_MAP) != 0) {
        return;
    }
    for (int k = 0; k < 12 && !d->failed; k++) {
        driver_append(d, 1, 48);
    }
    /* Group commit: callers from threads share commits. */
    for (int t = 0; t < DRIVER_THREADS; t++) {
        pthread_create(&th[t], NULL, driver_thread, d);
    }
    for (int t = 0; t < DRIVER_THREADS; t++) {
        pthread_join(th[t], NULL);
    }
    if (!d->failed) {
        driver_repeat(d, 3, 48);
    }
    /* The loader's deletes, its run figures. */
    if (!d->failed) {
        driver_delete(d, 20);
    }
    if (!d->failed && queue_meta_apply(d->q, &run, 1) != 0) {
        driver_fail(d, "meta", DP_ERR_IO);
    }
    /* Large events: the file grows, the disk reserve is preallocated. */
    for (int k = 0; k < 40 && !d->failed; k++) {
        driver_append(d, 2, 3000);
    }
    if (!d->failed) {
        driver_delete(d, 40);
    }
    /* Keys expire and appends prune them: which ones depends on the clock, so every key
     * recorded so far or in this phase may be gone from here on. */
    driver_mark(d, "prune %u", d->next + 6);
    queue_set_dedup_window(d->q, 1);
    nanosleep(&pause, NULL);
    for (int k = 0; k < 6 && !d->failed; k++) {
        driver_append(d, 1, 64);
    }
    queue_set_dedup_window(d->q, QUEUE_DEDUP_WINDOW_S);
    queue_close(d->q);
    d->q = NULL;
    if (d->failed) {
        return;
    }
    /* Recovery: reopened with a larger map, appends and deletes go on. */
    if (driver_open(d, CRASH_LARGE_MAP) != 0) {
        return;
    }
    for (int k = 0; k < 30 && !d->failed; k++) {
        driver_append(d, 2, 2500);
    }
    if (!d->failed) {
        driver_delete(d, 50);
    }
    for (int k = 0; k < 6 && !d->failed; k++) {
        driver_append(d, 1, 100);
    }
    queue_close(d->q);
    d->q = NULL;
}

int
main(int argc, char **argv)
{
    struct driver d = {0};
    char dir[4096];

    if (argc < 2 || argc > 3 ||
        (argc == 3 && strcmp(argv[2], "nosync") != 0 && strcmp(argv[2], "recover") != 0)) {
        fprintf(stderr, "usage: crash_driver ROOT [nosync | recover]\n");
        return 2;
    }
    dp_log_setup("error", "text");
    snprintf(dir, sizeof(dir), "%s/%s", argv[1], CRASH_QUEUE_SUBDIR);
    d.dir = dir;
    d.sync = argc == 2 || strcmp(argv[2], "nosync") != 0;
    d.mark = (void (*)(const char *))dlsym(RTLD_DEFAULT, "crash_shim_mark");
    pthread_mutex_init(&d.mu, NULL);
    if (argc == 3 && strcmp(argv[2], "recover") == 0) {
        driver_recover(&d, argv[1]);
    } else {
        driver_run(&d);
    }
    pthread_mutex_destroy(&d.mu);
    if (d.failed) {
        return 1;
    }
    printf("crash_driver: %u events appended\n", d.next);
    return 0;
}
