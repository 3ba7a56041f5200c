/*
 * backoff.c - what the loader does after a failure: record it (for STATUS= and the server's
 * /metrics), then wait a capped, jittered, doubling delay (schedule.c's ldr_backoff_ms) that
 * ldr_stop or an aborted run cut short. It never decides whether to retry: the callers do.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "etc/err.h"
#include "etc/log.h"
#include "etc/pgconn.h"
#include "loader/internal.h"

static uint32_t
ldr_rand(struct ldr_worker *w)
{
    uint32_t x = w->rnd;

    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    w->rnd = x;
    return x;
}

bool
ldr_halted(struct ldr *l)
{
    bool halted;

    pthread_mutex_lock(&l->mu);
    halted = l->stop || l->abort;
    pthread_mutex_unlock(&l->mu);
    return halted;
}

/* Sleep ms unless stopped or aborted first; false if so. */
static bool
ldr_sleep(struct ldr *l, int64_t ms)
{
    /* The condition variable waits on CLOCK_MONOTONIC (ldr_create), dp_mono_us's clock. */
    int64_t deadline_us = dp_mono_us() + ms * 1000;
    struct timespec ts = {
        .tv_sec = (time_t)(deadline_us / 1000000),
        .tv_nsec = (long)(deadline_us % 1000000) * 1000,
    };
    bool halted;

    pthread_mutex_lock(&l->mu);
    while (!l->stop && !l->abort) {
        if (pthread_cond_timedwait(&l->cv, &l->mu, &ts) == ETIMEDOUT) {
            break;
        }
    }
    halted = l->stop || l->abort;
    pthread_mutex_unlock(&l->mu);
    return !halted;
}

void
ldr_error_public(const char *what, const char *err, char *out, size_t len)
{
    /* What libpq and the server say when connecting fails or a connection is lost names
     * hosts, addresses, ports, users and databases. */
    if (dp_pg_text_names_tls(err)) {
        snprintf(out, len, "connection: " DP_PG_TLS_TEXT " (details in the loader's log)");
        return;
    }
    if (dp_pg_text_names_connection(err)) {
        snprintf(out, len,
                 "connection: cannot reach PostgreSQL or lost the connection "
                 "(details in the loader's log)");
        return;
    }
    if (strncmp(what, "queue", 5) == 0) {
        snprintf(out, len, "queue: %s", err);
        return;
    }
    snprintf(out, len, "database: %s", err);
}

/*
 * Remember a failure for STATUS and, without connection details, for /v1/status; retry: it
 * will be retried (counted as a retry in /metrics).
 */
static void
ldr_note_failure(struct ldr *l, const char *what, const char *err, bool retry)
{
    char shown[LDR_ERR_MAX];
    struct queue_meta_op ops[] = {
        {QUEUE_META_LOADER_LAST_ERROR, QUEUE_META_STR, 0, shown},
        {QUEUE_META_LOADER_LAST_ERROR_US, QUEUE_META_SET, dp_now_us(), NULL},
        {QUEUE_META_LOADER_ERRORS, QUEUE_META_ADD, 1, NULL},
        {QUEUE_META_LOADER_RETRIES, QUEUE_META_ADD, retry ? 1 : 0, NULL},
    };
    int rc;

    ldr_error_public(what, err, shown, sizeof(shown));
    pthread_mutex_lock(&l->mu);
    snprintf(l->last_error, sizeof(l->last_error), "%s", err);
    l->run.retries++;
    pthread_mutex_unlock(&l->mu);
    rc = queue_meta_apply(l->q, ops, sizeof(ops) / sizeof(ops[0]));
    if (rc != 0) {
        dp_warn("cannot record the loader's last error in the queue", "error=%s", dp_strerror(rc));
    }
}

/*
 * After a failed attempt: count it, give up if allowed to, else sleep the back-off.
 * Returns 0 (try again), DP_ERR_RETRY (gave up), DP_ERR_CLOSED (stopped while waiting).
 */
int
ldr_backoff(struct ldr_worker *w, int *attempt, const char *what, const char *err)
{
    struct ldr *l = w->l;
    int64_t delay_ms;
    bool go_on;

    (*attempt)++;
    go_on = l->give_up_attempts == 0 || *attempt < l->give_up_attempts;
    ldr_note_failure(l, what, err, go_on);
    if (!go_on) {
        dp_error("giving up after repeated failures", "what=%s attempts=%d error=%s", what,
                 *attempt, err);
        return DP_ERR_RETRY;
    }
    delay_ms = ldr_backoff_ms(*attempt, ldr_rand(w));
    dp_warn("backing off after a failure", "what=%s worker=%d attempt=%d delay_ms=%lld error=%s",
            what, w->index, *attempt, (long long)delay_ms, err);
    pthread_mutex_lock(&l->mu);
    w->waiting = true;
    w->attempt = *attempt;
    pthread_mutex_unlock(&l->mu);
    go_on = ldr_sleep(l, delay_ms);
    pthread_mutex_lock(&l->mu);
    w->waiting = false;
    pthread_mutex_unlock(&l->mu);
    return go_on ? 0 : DP_ERR_CLOSED;
}
