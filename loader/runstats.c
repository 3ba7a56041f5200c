/*
 * runstats.c - the figures of the loader's runs: each run's start and end recorded in the
 * queue's metadata (for /v1/status and /metrics, the last runs' lines) and in the log, the
 * totals since start, and the STATUS= line. Reads and writes no PostgreSQL and loads nothing.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "etc/err.h"
#include "etc/log.h"
#include "loader/internal.h"

void
ldr_run_begin(struct ldr *l)
{
    struct queue_meta_op ops[] = {
        {QUEUE_META_LOADER_LAST_RUN_US, QUEUE_META_SET, 0, NULL},
        {QUEUE_META_LOADER_LAST_RUN_END_US, QUEUE_META_SET, 0, NULL},
        {QUEUE_META_LOADER_LAST_RUN_RESULT, QUEUE_META_STR, 0, "running"},
    };

    pthread_mutex_lock(&l->mu);
    memset(&l->run, 0, sizeof(l->run));
    l->held_types[0] = '\0';
    l->run.start_us = dp_now_us();
    l->running = true;
    l->abort = false;
    l->run_rc = 0;
    l->cursor = 0;
    l->end = 0;
    ops[0].value = l->run.start_us;
    pthread_mutex_unlock(&l->mu);
    queue_meta_apply(l->q, ops, sizeof(ops) / sizeof(ops[0]));
}

/*
 * The QUEUE_META_LOADER_RUNS text with run added in front: its own line, then the previous
 * runs' lines (only the loader writes them), QUEUE_LOADER_RUNS_MAX lines in all.
 */
static void
ldr_runs_text(struct ldr *l, const struct ldr_run_stats *run, const char *result, char *out,
              size_t len)
{
    char old[QUEUE_LOADER_RUNS_MAX * (QUEUE_LOADER_RUN_RESULT_MAX + 128)];
    const char *p = old;
    size_t rlen = strcspn(result, "\n");
    size_t used;

    if (rlen > QUEUE_LOADER_RUN_RESULT_MAX) {
        rlen = QUEUE_LOADER_RUN_RESULT_MAX; /* not inside a UTF-8 sequence: */
        while (rlen > 0 && ((unsigned char)result[rlen] & 0xc0u) == 0x80u) {
            rlen--;
        }
    }
    queue_meta_get_str(l->q, QUEUE_META_LOADER_RUNS, old, sizeof(old));
    used = (size_t)snprintf(out, len, "%lld %lld %llu %llu %llu %.*s\n", (long long)run->start_us,
                            (long long)run->end_us, (unsigned long long)run->events,
                            (unsigned long long)run->loaded, (unsigned long long)run->dead_letters,
                            (int)rlen, result);
    for (int i = 1; i < QUEUE_LOADER_RUNS_MAX && *p != '\0' && used < len; i++) {
        size_t n = strcspn(p, "\n");

        if (p[n] != '\n' || used + n + 1 >= len) {
            break;
        }
        memcpy(out + used, p, n + 1);
        used += n + 1;
        out[used] = '\0';
        p += n + 1;
    }
}

void
ldr_run_end(struct ldr *l, int rc, struct ldr_run_stats *st)
{
    char runs[QUEUE_LOADER_RUNS_MAX * (QUEUE_LOADER_RUN_RESULT_MAX + 128)];
    struct ldr_run_stats run;
    char result[LDR_ERR_MAX + 16];
    char held_types[LDR_HELD_TYPES_MAX];
    struct queue_meta_op ops[] = {
        {QUEUE_META_LOADER_LAST_RUN_END_US, QUEUE_META_SET, 0, NULL},
        {QUEUE_META_LOADER_LAST_RUN_EVENTS, QUEUE_META_SET, 0, NULL},
        {QUEUE_META_LOADER_LAST_RUN_RESULT, QUEUE_META_STR, 0, result},
        {QUEUE_META_LOADER_HELD, QUEUE_META_SET, 0, NULL},
        {QUEUE_META_LOADER_HELD_TYPES, QUEUE_META_STR, 0, held_types},
        {QUEUE_META_LOADER_RUNS, QUEUE_META_STR, 0, runs},
        {QUEUE_META_LOADER_LAST_ERROR, QUEUE_META_STR, 0, ""}, /* cleared by a run that succeeded */
    };
    size_t n_ops = rc == 0 ? 7 : 6;

    pthread_mutex_lock(&l->mu);
    l->run.end_us = dp_now_us();
    run = l->run;
    l->total.events += run.events;
    l->total.loaded += run.loaded;
    l->total.dead_letters += run.dead_letters;
    l->total.batches += run.batches;
    l->total.retries += run.retries;
    l->total.held = run.held;
    snprintf(held_types, sizeof(held_types), "%s", l->held_types);
    if (l->total.start_us == 0) {
        l->total.start_us = run.start_us;
    }
    l->total.end_us = run.end_us;
    l->running = false;
    if (rc == 0) {
        snprintf(result, sizeof(result), "ok");
    } else if (rc == DP_ERR_CLOSED) {
        snprintf(result, sizeof(result), "stopped");
    } else {
        char shown[LDR_ERR_MAX];

        ldr_error_public("run", l->last_error[0] != '\0' ? l->last_error : dp_strerror(rc), shown,
                         sizeof(shown));
        snprintf(result, sizeof(result), "error: %s", shown);
    }
    pthread_mutex_unlock(&l->mu);
    ops[0].value = run.end_us;
    ops[1].value = (int64_t)run.events;
    ops[3].value = (int64_t)run.held;
    ldr_runs_text(l, &run, result, runs, sizeof(runs));
    queue_meta_apply(l->q, ops, n_ops);
    if (run.held > 0) {
        dp_warn("events of types this loader does not know stay queued: declare their types "
                "again (then they load), see README \"Your own event types\"",
                "events=%llu types=%s", (unsigned long long)run.held, held_types);
    }
    /* A run that moved nothing and met no failure is news to nobody: the daemon's per-minute
     * summary counts it, and an idle loader does not log a line every interval. */
    dp_log(run.events > 0 || rc != 0 ? DP_LOG_INFO : DP_LOG_DEBUG, "run finished",
           "events=%llu loaded=%llu dead_letters=%llu batches=%llu retries=%llu "
           "seconds=%.3f result=%s",
           (unsigned long long)run.events, (unsigned long long)run.loaded,
           (unsigned long long)run.dead_letters, (unsigned long long)run.batches,
           (unsigned long long)run.retries, (double)(run.end_us - run.start_us) / 1e6, result);
    if (st != NULL) {
        *st = run;
    }
}

void
ldr_totals(struct ldr *l, struct ldr_run_stats *st)
{
    pthread_mutex_lock(&l->mu);
    *st = l->total;
    pthread_mutex_unlock(&l->mu);
}

void
ldr_status(struct ldr *l, char *buf, size_t len)
{
    int waiting = 0;
    int attempt = 0;

    pthread_mutex_lock(&l->mu);
    for (int i = 0; i < l->n_workers; i++) {
        if (l->workers[i].waiting) {
            waiting++;
            attempt = l->workers[i].attempt > attempt ? l->workers[i].attempt : attempt;
        }
    }
    if (!l->started && waiting > 0) {
        snprintf(buf, len, "waiting for PostgreSQL: %s (attempt %d)", l->last_error, attempt);
    } else if (!l->started) {
        snprintf(buf, len, "connecting to PostgreSQL");
    } else if (waiting > 0) {
        snprintf(buf, len, "waiting to retry (attempt %d): %s", attempt, l->last_error);
    } else if (l->running) {
        snprintf(buf, len, "loading: %llu events this run, %llu dead letters",
                 (unsigned long long)l->run.events, (unsigned long long)l->run.dead_letters);
    } else {
        snprintf(buf, len, "idle: %llu events loaded since start, %llu dead letters",
                 (unsigned long long)l->total.loaded, (unsigned long long)l->total.dead_letters);
    }
    pthread_mutex_unlock(&l->mu);
}
