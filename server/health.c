/*
 * health.c - how the appliance is, in one word and a list of causes: the level of /v1/status
 * ("ok", "degraded", "failing") and one problem a cause, each saying what is wrong and what
 * to do. Rates are taken over the last HEALTH_WINDOW_S from the history ring. Reads counters,
 * the queue's metadata and the history; changes nothing, and never names a host, address,
 * port or user (the endpoint is open).
 */
#include "etc/log.h"
#include "server/srv.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define HEALTH_WINDOW_S 300     /* rates of 401s, rejections, 503s, dead letters over it */
#define HEALTH_SHARE_PCT 10     /* a share of POSTs above this is worth a look */
#define HEALTH_MIN_POSTS 10     /* ...when at least this many POSTs were answered */
#define HEALTH_PG_DOWN_S 60     /* PostgreSQL unreachable longer than this: failing */
#define HEALTH_LAG_INTERVALS 10 /* the oldest event older than this many intervals: late */
#define HEALTH_LAG_MIN_S 60     /* ...and older than this */

/* What srv_health found, with the level it stands for. */
struct health {
    enum srv_level level;
    json_t *problems; /* may be NULL: the level alone is wanted */
};

/* Add one problem at level lv: text as printf formats it. */
static void
problem(struct health *h, enum srv_level lv, const char *fmt, ...)
{
    char text[QUEUE_ERROR_MAX + 256];
    json_t *j;
    va_list ap;

    if (lv > h->level) {
        h->level = lv;
    }
    if (h->problems == NULL) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    j = json_string(text);
    if (j == NULL) { /* an error text cut inside a UTF-8 sequence */
        for (char *p = text; *p != '\0'; p++) {
            *p = (unsigned char)*p >= 0x80 ? '?' : *p;
        }
        j = json_string(text);
    }
    json_array_append_new(h->problems, j);
}

static int64_t
meta(struct srv *s, const char *name)
{
    int64_t v = 0;

    queue_meta_get(s->q, name, &v);
    return v;
}

/* The queue: full (events refused) or nearly so. */
static void
health_queue(struct srv *s, const struct queue_stats *st, struct health *h)
{
    if (atomic_load(&s->queue_full) || st->bytes >= st->capacity_bytes) {
        problem(h, SRV_LEVEL_FAILING,
                "queue full: new events are refused with 503; start or "
                "fix the loader (it frees room as it loads), or raise queue.max_bytes");
    } else if (st->bytes * 10 >= st->capacity_bytes * 9) {
        problem(h, SRV_LEVEL_DEGRADED,
                "queue above 90%% of queue.max_bytes: events will be "
                "refused when it is full; check that the loader keeps up");
    }
    if (st->accepted != st->loaded + st->dead_lettered + st->events) {
        problem(h, SRV_LEVEL_FAILING,
                "conservation broken: accepted (%llu) differs from "
                "loaded + dead_lettered + queued (%llu): report it as a bug",
                (unsigned long long)st->accepted,
                (unsigned long long)(st->loaded + st->dead_lettered + st->events));
    }
}

/* The loader: running at all, refusing its queue, reaching PostgreSQL, keeping up. */
static void
health_loader(struct srv *s, const struct queue_stats *st, int64_t now_us, struct health *h)
{
    char refused[1024];
    char last_error[1024];
    int64_t beat = meta(s, QUEUE_META_LOADER_HEARTBEAT_US);
    int64_t interval_s = meta(s, QUEUE_META_LOADER_INTERVAL_S);
    int64_t success = meta(s, QUEUE_META_LOADER_LAST_SUCCESS_US);
    int64_t started = meta(s, QUEUE_META_LOADER_STARTED_US);
    int64_t late_us = (int64_t)QUEUE_HEARTBEAT_LATE_S * 1000000;
    double age_s = srv_oldest_age_s(st, now_us);
    double lag_s;

    queue_meta_get_str(s->q, QUEUE_META_LOADER_REFUSED, refused, sizeof(refused));
    queue_meta_get_str(s->q, QUEUE_META_LOADER_LAST_ERROR, last_error, sizeof(last_error));
    if (interval_s <= 0) {
        interval_s = s->cfg->loader_interval_s;
    }
    if (refused[0] != '\0') {
        problem(h, SRV_LEVEL_FAILING, "the loader refuses this queue: %s", refused);
    } else if (beat == 0 && now_us - s->started_us > late_us) {
        problem(h, SRV_LEVEL_FAILING,
                "no loader has run on this queue: nothing is loaded "
                "into PostgreSQL; start datapipe-loader (systemctl start datapipe-loader)");
    } else if (beat > 0 && now_us - beat > late_us) {
        problem(h, SRV_LEVEL_FAILING,
                "no loader heartbeat for %.0f s (a running loader "
                "writes one every %d s): is datapipe-loader running? "
                "(systemctl status datapipe-loader)",
                (double)(now_us - beat) / 1e6, QUEUE_HEARTBEAT_S);
    }
    if (last_error[0] != '\0') {
        int64_t since = success > started ? success : started;

        if (strncmp(last_error, "connection:", 11) == 0 && since > 0 &&
            now_us - since > (int64_t)HEALTH_PG_DOWN_S * 1000000) {
            problem(h, SRV_LEVEL_FAILING,
                    "the loader has not reached PostgreSQL for %.0f s: "
                    "check that it runs and database.conninfo (details in the loader's log)",
                    (double)(now_us - since) / 1e6);
        } else {
            problem(h, SRV_LEVEL_DEGRADED, "loader: %s", last_error);
        }
    }
    lag_s = (double)(interval_s * HEALTH_LAG_INTERVALS);
    if (lag_s < HEALTH_LAG_MIN_S) {
        lag_s = HEALTH_LAG_MIN_S;
    }
    if (st->events > 0 && age_s > lag_s) {
        problem(h, SRV_LEVEL_DEGRADED,
                "the oldest queued event has waited %.0f s, more than "
                "%d loader intervals of %lld s: the loader falls behind or does not load",
                age_s, HEALTH_LAG_INTERVALS, (long long)interval_s);
    }
}

/* Shares of the POSTs over the window, and dead letters filed in it. */
static void
health_window(struct srv *s, struct health *h)
{
    struct srv_sample now;
    struct srv_sample then;
    uint64_t posts;
    uint64_t n;

    if (!srv_sample_before(s, dp_mono_us() - (int64_t)HEALTH_WINDOW_S * 1000000, &then)) {
        return;
    }
    srv_sample_take(s, &now);
    posts = now.ingest - then.ingest;
    n = now.ingest_401 - then.ingest_401;
    if (posts >= HEALTH_MIN_POSTS && n * 100 > posts * HEALTH_SHARE_PCT) {
        problem(h, SRV_LEVEL_DEGRADED,
                "%llu of %llu POSTs in the last %d min were refused "
                "with 401 (no or wrong API key): a client sends an old key or none; "
                "datapipe_http_requests_total{code=\"401\"} counts them",
                (unsigned long long)n, (unsigned long long)posts, HEALTH_WINDOW_S / 60);
    }
    n = now.ingest_4xx - then.ingest_4xx;
    if (posts >= HEALTH_MIN_POSTS && n * 100 > posts * HEALTH_SHARE_PCT) {
        problem(h, SRV_LEVEL_DEGRADED,
                "%llu of %llu POSTs in the last %d min were rejected "
                "as bad input (4xx): the answers name the field; batches' rejected events are "
                "in dead_letter, stage ingest",
                (unsigned long long)n, (unsigned long long)posts, HEALTH_WINDOW_S / 60);
    }
    n = now.ingest_503 - then.ingest_503;
    if (n > 0) {
        problem(h, SRV_LEVEL_DEGRADED,
                "%llu POSTs in the last %d min were refused with 503 "
                "(queue, disk or server.max_inflight_bytes full): clients retry, but check "
                "the loader and the disk",
                (unsigned long long)n, HEALTH_WINDOW_S / 60);
    }
    n = now.dead_letters - then.dead_letters;
    if (n > 0) {
        problem(h, SRV_LEVEL_DEGRADED,
                "%llu events were filed into dead_letter in the last "
                "%d min: GET /v1/status/dead_letters says why",
                (unsigned long long)n, HEALTH_WINDOW_S / 60);
    }
}

enum srv_level
srv_health(struct srv *s, const struct queue_stats *st, int64_t now_us, json_t *problems)
{
    struct health h = {.level = SRV_LEVEL_OK, .problems = problems};

    health_queue(s, st, &h);
    health_loader(s, st, now_us, &h);
    health_window(s, &h);
    return h.level;
}

const char *
srv_level_name(enum srv_level level)
{
    switch (level) {
    case SRV_LEVEL_OK:
        return "ok";
    case SRV_LEVEL_DEGRADED:
        return "degraded";
    default:
        return "failing";
    }
}
