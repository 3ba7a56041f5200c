/*
 * metrics.c - GET /metrics, the Prometheus text exposition: the server's counters, the
 * queue's, the loader's from the queue's metadata (so one scrape shows the whole appliance),
 * per API key name (never the key). Every family has HELP and TYPE; the series alerts watch
 * exist from start-up at 0. Read-only: never blocks appends.
 */
#include "etc/err.h"
#include "etc/log.h"
#include "server/srv.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A growing text buffer for the Prometheus exposition. */
struct text {
    char *p;
    size_t len;
    size_t cap;
};

static void text_add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
text_add(struct text *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            return;
        }
        if (t->p != NULL && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t ncap = (t->cap ? t->cap * 2 : 8192) + (size_t)n;
        char *q = realloc(t->p, ncap);
        if (q == NULL) {
            return;
        }
        t->p = q;
        t->cap = ncap;
    }
}

/* One family of the loader's per-type counters: its name and the metadata prefix it reads. */
struct type_lines {
    struct text *t;
    const char *metric; /* "datapipe_loader_events_loaded_total" */
    const char *prefix; /* QUEUE_META_LOADER_LOADED_PREFIX */
};

/* queue_meta_each callback: one "<metric>{type=...} N" line. */
static void
type_line(void *arg, const char *name, int64_t value)
{
    const struct type_lines *l = arg;

    text_add(l->t, "%s{type=\"%s\"} %lld\n", l->metric, name + strlen(l->prefix), (long long)value);
}

/* Every type's line of one per-type counter family. */
static void
type_counters(struct srv *s, struct text *t, const char *metric, const char *prefix)
{
    struct type_lines l = {.t = t, .metric = metric, .prefix = prefix};

    queue_meta_each(s->q, prefix, type_line, &l);
}

/* "# HELP" and "# TYPE" of one family: every family has both. */
static void
family(struct text *t, const char *name, const char *type, const char *help)
{
    text_add(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One counter family of a single sample: the loader's metadata counter key. */
static void
meta_counter(struct srv *s, struct text *t, const char *name, const char *key, const char *help)
{
    family(t, name, "counter", help);
    text_add(t, "%s %lld\n", name, (long long)srv_meta_int(s, key));
}

/*
 * The label of events rejected before they had a type (a body that is not JSON, an unknown
 * or missing event_name): never an empty label value. Parentheses cannot start a type name.
 */
#define UNTYPED_LABEL "(none)"

/* Finite buckets of the latency histogram: le = 2^k microseconds for k in this range. */
#define LAT_LE_MIN_K 6  /* 64 us */
#define LAT_LE_MAX_K 25 /* 33.6 s, beyond any request_timeout_ms worth having */

/*
 * datapipe_http_request_duration_seconds, read off the summary's histogram (no second one):
 * internal bucket b holds [lat_bucket_upper_us(b - 1), lat_bucket_upper_us(b)), so requests
 * below 2^k us are buckets 0..2k. Microseconds are whole, so "le" is exact to 1 us.
 */
static void
latency_histogram(struct text *t, struct srv *s)
{
    const char *name = "datapipe_http_request_duration_seconds";
    uint64_t cum = 0;
    int b = 0;

    family(t, name, "histogram", "Time from a request's dispatch to its answer sent.");
    for (int k = LAT_LE_MIN_K; k <= LAT_LE_MAX_K; k++) {
        for (; b <= 2 * k && b < SRV_LAT_BUCKETS - 1; b++) {
            cum += atomic_load(&s->m.lat[b]);
        }
        text_add(t, "%s_bucket{le=\"%.6f\"} %llu\n", name, (double)(1ULL << k) / 1e6,
                 (unsigned long long)cum);
    }
    for (; b < SRV_LAT_BUCKETS; b++) {
        cum += atomic_load(&s->m.lat[b]);
    }
    text_add(t, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
             (unsigned long long)cum, name, (double)atomic_load(&s->m.lat_sum_us) / 1e6, name,
             (unsigned long long)cum);
}

/* The per-key-name families: what they count, and their help. */
static const struct {
    const char *name;
    const char *help;
} key_families[] = {
    {"datapipe_key_requests_total", "Requests that sent an API key of the name, by key name."},
    {"datapipe_key_events_total", "Events in the bodies those requests sent, by key name."},
    {"datapipe_key_rate_limited_total",
     "Requests answered 429 for the name's rate limit, by key name."},
};

/* One family's lines (key_metrics); its HELP and TYPE before the first. */
struct key_lines {
    struct text *t;
    size_t family; /* index into key_families */
    bool started;
};

static void
key_line(void *arg, const struct srv_limit *l)
{
    struct key_lines *k = arg;
    const atomic_uint_fast64_t *v = k->family == 0   ? &l->requests
                                    : k->family == 1 ? &l->events
                                                     : &l->limited;

    if (!k->started) {
        family(k->t, key_families[k->family].name, "counter", key_families[k->family].help);
        k->started = true;
    }
    text_add(k->t, "%s{key=\"%s\"} %llu\n", key_families[k->family].name, l->name,
             (unsigned long long)atomic_load(v));
}

/*
 * Per API key name (never the key), when keys are configured: requests, events sent,
 * requests refused 429. The names in force: a name a SIGHUP removed leaves with its
 * counters; a kept one keeps them.
 */
static void
key_metrics(struct srv *s, struct text *t)
{
    for (size_t f = 0; f < sizeof(key_families) / sizeof(key_families[0]); f++) {
        struct key_lines k = {.t = t, .family = f, .started = false};

        srv_auth_each_limit(s, key_line, &k);
    }
}

/*
 * Codes whose series exist from start-up at 0, so that an alert on their rate fires on the
 * first one (a series that appears only with its first sample has no rate until a second).
 */
static bool
always_code(int code)
{
    static const int codes[] = {200, 202, 204, 400, 401, 404, 409, 413, 415, 429, 500, 503};

    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        if (codes[i] == code) {
            return true;
        }
    }
    return false;
}

/*
 * The POSTs apart from the GETs, by what their answer means: a 503 of ingest (queue, disk or
 * memory full) is not a 503 of a read (database down). Every series exists from start-up.
 */
static void
ingest_metrics(struct srv *s, struct text *t)
{
    uint64_t n[6] = {0}; /* ok, rejected, unauthorized, rate_limited, unavailable, error */
    static const char *const names[] = {"ok",           "rejected",    "unauthorized",
                                        "rate_limited", "unavailable", "error"};

    for (int code = 100; code < 600; code++) {
        uint64_t v = atomic_load(&s->m.ingest_by_code[code]);

        n[code < 400    ? 0
          : code == 401 ? 2
          : code == 429 ? 3
          : code < 500  ? 1
          : code == 503 ? 4
                        : 5] += v;
    }
    family(t, "datapipe_ingest_requests_total", "counter",
           "POSTs answered, by result: ok (2xx), rejected (4xx: bad input), unauthorized "
           "(401), rate_limited (429), unavailable (503: queue, disk or memory full), error "
           "(other 5xx).");
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        text_add(t, "datapipe_ingest_requests_total{result=\"%s\"} %llu\n", names[i],
                 (unsigned long long)n[i]);
    }
}

void
srv_get_metrics(struct srv *s, struct srv_reply *r)
{
    struct text t = {0};
    struct queue_stats st;
    uint64_t commits = 0;
    uint64_t committed = 0;
    char refused[8];

    memset(&st, 0, sizeof(st));
    queue_stats(s->q, &st);
    queue_commit_counts(s->q, &commits, &committed);
    family(&t, "datapipe_http_requests_total", "counter",
           "HTTP requests answered, by status code.");
    for (int code = 100; code < 600; code++) {
        uint64_t v = atomic_load(&s->m.http_by_code[code]);
        if (v > 0 || always_code(code)) {
            text_add(&t, "datapipe_http_requests_total{code=\"%d\"} %llu\n", code,
                     (unsigned long long)v);
        }
    }
    ingest_metrics(s, &t);
    latency_histogram(&t, s);
    family(&t, "datapipe_events_accepted_total", "counter", "Events acknowledged, by type.");
    for (size_t i = 0; i < ev_registry_len && i < SRV_MAX_TYPES; i++) {
        text_add(&t, "datapipe_events_accepted_total{type=\"%s\"} %llu\n", ev_registry[i]->name,
                 (unsigned long long)atomic_load(&s->m.accepted[i]));
    }
    family(&t, "datapipe_events_rejected_total", "counter",
           "Events rejected at ingest, by type; type=\"" UNTYPED_LABEL "\" when the event had "
           "none (not JSON, unknown or missing event_name).");
    for (size_t i = 0; i < ev_registry_len && i < SRV_MAX_TYPES; i++) {
        text_add(&t, "datapipe_events_rejected_total{type=\"%s\"} %llu\n", ev_registry[i]->name,
                 (unsigned long long)atomic_load(&s->m.rejected[i]));
    }
    text_add(&t, "datapipe_events_rejected_total{type=\"" UNTYPED_LABEL "\"} %llu\n",
             (unsigned long long)atomic_load(&s->m.rejected_untyped));
    family(&t, "datapipe_events_duplicates_total", "counter",
           "Keyed events answered as repeats (nothing appended).");
    text_add(&t, "datapipe_events_duplicates_total %llu\n",
             (unsigned long long)atomic_load(&s->m.duplicates));
    family(&t, "datapipe_taps_open", "gauge", "Live taps (GET /v1/tap) open now.");
    text_add(&t, "datapipe_taps_open %d\n", atomic_load(&s->taps_open));
    family(&t, "datapipe_tap_dropped_total", "counter",
           "Events live taps dropped for clients that did not keep up (a tap's buffer was "
           "full), all taps together.");
    text_add(&t, "datapipe_tap_dropped_total %llu\n",
             (unsigned long long)atomic_load(&s->m.tap_dropped));
    key_metrics(s, &t);
    family(&t, "datapipe_queue_events", "gauge", "Events in the queue, not loaded yet.");
    text_add(&t, "datapipe_queue_events %llu\n", (unsigned long long)st.events);
    family(&t, "datapipe_queue_bytes", "gauge", "Bytes the queue's LMDB map uses.");
    text_add(&t, "datapipe_queue_bytes %llu\n", (unsigned long long)st.bytes);
    family(&t, "datapipe_queue_capacity_bytes", "gauge",
           "The queue's LMDB map size (queue.max_bytes).");
    text_add(&t, "datapipe_queue_capacity_bytes %llu\n", (unsigned long long)st.capacity_bytes);
    family(&t, "datapipe_queue_oldest_event_age_seconds", "gauge",
           "Age of the oldest event in the queue; 0 when it is empty.");
    text_add(&t, "datapipe_queue_oldest_event_age_seconds %.3f\n",
             srv_oldest_age_s(&st, dp_now_us()));
    family(&t, "datapipe_queue_commits_total", "counter",
           "Queue transactions committed (group commit: one fsync each).");
    text_add(&t, "datapipe_queue_commits_total %llu\n", (unsigned long long)commits);
    family(&t, "datapipe_queue_committed_events_total", "counter",
           "Events those transactions held.");
    text_add(&t, "datapipe_queue_committed_events_total %llu\n", (unsigned long long)committed);
    /* A gauge, not a counter (the "queued" series goes down as the loader drains), so its
     * name has no _total. */
    family(&t, "datapipe_events", "gauge",
           "Conservation: events accepted into the queue, and where they are now "
           "(loaded + dead_lettered + queued = accepted).");
    text_add(&t,
             "datapipe_events{stage=\"accepted\"} %llu\n"
             "datapipe_events{stage=\"loaded\"} %llu\n"
             "datapipe_events{stage=\"dead_lettered\"} %llu\n"
             "datapipe_events{stage=\"queued\"} %llu\n",
             (unsigned long long)st.accepted, (unsigned long long)st.loaded,
             (unsigned long long)st.dead_lettered, (unsigned long long)st.events);
    family(&t, "datapipe_loader_events_loaded_total", "counter",
           "Events the loader committed to PostgreSQL, by type.");
    type_counters(s, &t, "datapipe_loader_events_loaded_total", QUEUE_META_LOADER_LOADED_PREFIX);
    family(&t, "datapipe_loader_duplicates_total", "counter",
           "Keyed rows the loader skipped, their idempotency_key already in the table, by type.");
    type_counters(s, &t, "datapipe_loader_duplicates_total", QUEUE_META_LOADER_DUPLICATES_PREFIX);
    family(&t, "datapipe_loader_key_conflicts_total", "counter",
           "Keyed rows the loader filed into dead_letter, their idempotency_key already in the "
           "table with other content, by type.");
    type_counters(s, &t, "datapipe_loader_key_conflicts_total",
                  QUEUE_META_LOADER_KEY_CONFLICTS_PREFIX);
    family(&t, "datapipe_loader_partitions_dropped_total", "counter",
           "Day partitions the loader dropped past their retention, by type.");
    type_counters(s, &t, "datapipe_loader_partitions_dropped_total",
                  QUEUE_META_LOADER_PARTITIONS_DROPPED_PREFIX);
    family(&t, "datapipe_loader_rows_dropped_total", "counter",
           "Rows the dropped partitions held, by type.");
    type_counters(s, &t, "datapipe_loader_rows_dropped_total",
                  QUEUE_META_LOADER_ROWS_DROPPED_PREFIX);
    meta_counter(s, &t, "datapipe_loader_dead_letters_total", QUEUE_META_LOADER_DEAD_LETTERS,
                 "Events filed into dead_letter, ever (both stages; not the table's size).");
    meta_counter(s, &t, "datapipe_loader_errors_total", QUEUE_META_LOADER_ERRORS,
                 "Failed loader attempts (PostgreSQL or queue), retried or given up on.");
    meta_counter(s, &t, "datapipe_loader_retries_total", QUEUE_META_LOADER_RETRIES,
                 "Loader attempts retried after a back-off.");
    family(&t, "datapipe_loader_last_success_timestamp_seconds", "gauge",
           "When the loader last committed a batch (Unix seconds); 0 before the first.");
    text_add(&t, "datapipe_loader_last_success_timestamp_seconds %.3f\n",
             (double)srv_meta_int(s, QUEUE_META_LOADER_LAST_SUCCESS_US) / 1e6);
    /* 1 while the loader refuses this queue (it does not own its queue.id): see /v1/status. */
    queue_meta_get_str(s->q, QUEUE_META_LOADER_REFUSED, refused, sizeof(refused));
    family(&t, "datapipe_loader_refused", "gauge",
           "1 while the loader refuses to load or delete (this queue does not own its queue.id).");
    text_add(&t, "datapipe_loader_refused %d\n", refused[0] != '\0');
    family(&t, "datapipe_loader_heartbeat_timestamp_seconds", "gauge",
           "When the loader last wrote its heartbeat (every few seconds while it runs, Unix "
           "seconds); 0 when no loader ever ran on this queue.");
    text_add(&t, "datapipe_loader_heartbeat_timestamp_seconds %.3f\n",
             (double)srv_meta_int(s, QUEUE_META_LOADER_HEARTBEAT_US) / 1e6);
    family(&t, "datapipe_status_level", "gauge",
           "The level of /v1/status: 0 ok, 1 degraded, 2 failing.");
    text_add(&t, "datapipe_status_level %d\n", (int)srv_health(s, &st, dp_now_us(), NULL));
    if (t.p == NULL) {
        srv_reply_json(r, 500, "out of memory");
        return;
    }
    /* The reply adds the final newline. */
    if (t.len > 0 && t.p[t.len - 1] == '\n') {
        t.p[--t.len] = '\0';
    }
    r->status = 200;
    r->body = t.p;
    r->content_type = "text/plain; version=0.0.4; charset=utf-8";
}
