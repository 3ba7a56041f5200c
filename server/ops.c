/*
 * ops.c - what operators and monitors read: /healthz, /readyz, /v1/status,
 * /metrics (Prometheus text), and one summary line a minute. Counters are
 * lock-free atomics; the loader's figures come from the queue's metadata,
 * so one scrape shows the whole appliance. Read-only: never blocks appends.
 */
#include "etc/err.h"
#include "etc/log.h"
#include "server/srv.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t
srv_type_index(const struct ev_type *t)
{
    for (size_t i = 0; i < ev_registry_len && i < SRV_MAX_TYPES; i++) {
        if (ev_registry[i] == t) {
            return i;
        }
    }
    return 0;
}

/*
 * Bucket b holds latencies below lat_bucket_upper_us(b): steps of sqrt(2). For
 * 2^k <= us < 2^(k+1) that is 2k+1 below 2^k*sqrt(2), else 2k+2. One clz per request.
 */
static int
lat_bucket(int64_t us)
{
    int k;
    int b;

    if (us < 1) {
        return 0;
    }
    k = 63 - __builtin_clzll((unsigned long long)us);
    b = 2 * k + 1 + ((double)us >= (double)(1ULL << k) * 1.4142);
    return b < SRV_LAT_BUCKETS ? b : SRV_LAT_BUCKETS - 1;
}

static double
lat_bucket_upper_us(int b)
{
    return (double)(1ULL << (b / 2)) * (b % 2 ? 1.4142 : 1.0);
}

void
srv_observe(struct srv *s, int status, bool ingest, int64_t elapsed_us)
{
    if (status >= 100 && status < 600) {
        atomic_fetch_add(&s->m.http_by_code[status], 1);
        if (ingest) {
            atomic_fetch_add(&s->m.ingest_by_code[status], 1);
        }
    }
    atomic_fetch_add(&s->m.lat[lat_bucket(elapsed_us)], 1);
    atomic_fetch_add(&s->m.lat_sum_us, elapsed_us > 0 ? (uint64_t)elapsed_us : 0);
}

void
srv_get_healthz(struct srv *s, struct srv_reply *r)
{
    (void)s;
    srv_reply_json(r, 200, "ok");
}

/* Ready when an append can succeed: the map has room and the last one did not fail full. */
void
srv_get_readyz(struct srv *s, struct srv_reply *r)
{
    struct queue_stats st;

    if (queue_stats(s->q, &st) != 0) {
        srv_reply_json(r, 503, "queue unreadable");
        return;
    }
    if (atomic_load(&s->queue_full) && (st.events < atomic_load(&s->full_events) ||
                                        dp_now_us() - atomic_load(&s->full_at_us) > 5000000)) {
        /* The loader deleted events since the last failure, or it is 5 s old (disk space
         * may have come back): appends may fit again, and the next one will tell. */
        atomic_store(&s->queue_full, false);
    }
    if (atomic_load(&s->queue_full) || st.bytes >= st.capacity_bytes) {
        srv_reply_json(r, 503, "queue full");
        srv_reply_header(r, "Retry-After", "1");
        return;
    }
    srv_reply_json(r, 200, "ready");
}

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

static int64_t
meta_int(struct srv *s, const char *name)
{
    int64_t v = 0;

    queue_meta_get(s->q, name, &v);
    return v;
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

double
srv_oldest_age_s(const struct queue_stats *st, int64_t now_us)
{
    if (st->events == 0 || st->oldest_received_us == 0 || now_us < st->oldest_received_us) {
        return 0;
    }
    return (double)(now_us - st->oldest_received_us) / 1e6;
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
    text_add(t, "%s %lld\n", name, (long long)meta_int(s, key));
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
             (double)meta_int(s, QUEUE_META_LOADER_LAST_SUCCESS_US) / 1e6);
    /* 1 while the loader refuses this queue (it does not own its queue.id): see /v1/status. */
    queue_meta_get_str(s->q, QUEUE_META_LOADER_REFUSED, refused, sizeof(refused));
    family(&t, "datapipe_loader_refused", "gauge",
           "1 while the loader refuses to load or delete (this queue does not own its queue.id).");
    text_add(&t, "datapipe_loader_refused %d\n", refused[0] != '\0');
    family(&t, "datapipe_loader_heartbeat_timestamp_seconds", "gauge",
           "When the loader last wrote its heartbeat (every few seconds while it runs, Unix "
           "seconds); 0 when no loader ever ran on this queue.");
    text_add(&t, "datapipe_loader_heartbeat_timestamp_seconds %.3f\n",
             (double)meta_int(s, QUEUE_META_LOADER_HEARTBEAT_US) / 1e6);
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

/* An RFC 3339 time for a microsecond wall-clock value; 0 (never) is null. */
static json_t *
time_json(int64_t us)
{
    char text[DP_TIME_TEXT_MAX];

    if (us <= 0) {
        return json_null();
    }
    dp_time_text(us, text);
    return json_string(text);
}

/* A string that may not be valid UTF-8 (an error text cut short): invalid bytes become '?'. */
static json_t *
text_json(const char *str)
{
    json_t *j = json_string(str);
    char *copy;

    if (j != NULL) {
        return j;
    }
    copy = strdup(str);
    if (copy == NULL) {
        return json_null();
    }
    for (char *p = copy; *p != '\0'; p++) {
        if ((unsigned char)*p >= 0x80) {
            *p = '?';
        }
    }
    j = json_string(copy);
    free(copy);
    return j != NULL ? j : json_null();
}

static void
loaded_member(void *arg, const char *name, int64_t value)
{
    json_object_set_new(arg, name + strlen(QUEUE_META_LOADER_LOADED_PREFIX), json_integer(value));
}

/* QUEUE_META_LOADER_RUNS, parsed: newest first. */
static json_t *
runs_json(struct srv *s)
{
    char text[QUEUE_LOADER_RUNS_MAX * (QUEUE_LOADER_RUN_RESULT_MAX + 128)];
    json_t *a = json_array();
    char *line = text;

    queue_meta_get_str(s->q, QUEUE_META_LOADER_RUNS, text, sizeof(text));
    while (*line != '\0') {
        char *nl = strchr(line, '\n');
        long long start = 0;
        long long end = 0;
        unsigned long long events = 0;
        unsigned long long loaded = 0;
        unsigned long long dead = 0;
        int used = 0;

        if (nl == NULL) {
            break; /* cut short: the rest of a line */
        }
        *nl = '\0';
        if (sscanf(line, "%lld %lld %llu %llu %llu %n", &start, &end, &events, &loaded, &dead,
                   &used) == 5 &&
            used > 0) {
            json_t *o = json_object();

            json_object_set_new(o, "started_at", time_json(start));
            json_object_set_new(o, "ended_at", time_json(end));
            json_object_set_new(o, "duration_s", json_real((double)(end - start) / 1e6));
            json_object_set_new(o, "events", json_integer((json_int_t)events));
            json_object_set_new(o, "loaded", json_integer((json_int_t)loaded));
            json_object_set_new(o, "dead_letters", json_integer((json_int_t)dead));
            json_object_set_new(o, "result", text_json(line + used));
            json_array_append_new(a, o);
        }
        line = nl + 1;
    }
    return a;
}

static json_t *
loader_json(struct srv *s, const char *last_error)
{
    char result[1024];
    char held_types[256];
    char refused[1024];
    json_t *l = json_object();
    json_t *loaded = json_object();
    int64_t run = meta_int(s, QUEUE_META_LOADER_LAST_RUN_US);
    int64_t end = meta_int(s, QUEUE_META_LOADER_LAST_RUN_END_US);

    queue_meta_get_str(s->q, QUEUE_META_LOADER_LAST_RUN_RESULT, result, sizeof(result));
    json_object_set_new(l, "last_run_at", time_json(run));
    json_object_set_new(l, "last_run_end_at", time_json(end));
    json_object_set_new(l, "last_run_duration_s",
                        run > 0 && end >= run ? json_real((double)(end - run) / 1e6) : json_null());
    json_object_set_new(l, "last_run_events",
                        json_integer(meta_int(s, QUEUE_META_LOADER_LAST_RUN_EVENTS)));
    /* "running", "ok", "stopped" or "error: ..." as the loader wrote it. */
    json_object_set_new(l, "last_result", text_json(result[0] ? result : "never ran"));
    json_object_set_new(l, "last_success_at",
                        time_json(meta_int(s, QUEUE_META_LOADER_LAST_SUCCESS_US)));
    json_object_set_new(l, "last_error", last_error[0] ? text_json(last_error) : json_null());
    json_object_set_new(l, "last_error_at",
                        time_json(meta_int(s, QUEUE_META_LOADER_LAST_ERROR_US)));
    json_object_set_new(l, "started_at", time_json(meta_int(s, QUEUE_META_LOADER_STARTED_US)));
    json_object_set_new(l, "dead_letters",
                        json_integer(meta_int(s, QUEUE_META_LOADER_DEAD_LETTERS)));
    /* The same running total under a name that says so: not the table's size (GET
     * /v1/dead_letters counts the rows). */
    json_object_set_new(l, "dead_lettered_total",
                        json_integer(meta_int(s, QUEUE_META_LOADER_DEAD_LETTERS)));
    json_object_set_new(l, "dead_letters_ingest",
                        json_integer(meta_int(s, QUEUE_META_LOADER_DEAD_INGEST)));
    json_object_set_new(l, "dead_letters_load",
                        json_integer(meta_int(s, QUEUE_META_LOADER_DEAD_LOAD)));
    json_object_set_new(l, "batches", json_integer(meta_int(s, QUEUE_META_LOADER_BATCHES)));
    json_object_set_new(l, "retries", json_integer(meta_int(s, QUEUE_META_LOADER_RETRIES)));
    queue_meta_each(s->q, QUEUE_META_LOADER_LOADED_PREFIX, loaded_member, loaded);
    json_object_set_new(l, "loaded", loaded);
    json_object_set_new(l, "runs", runs_json(s));
    /* Events left queued because their type is not declared (any more): see README. */
    queue_meta_get_str(s->q, QUEUE_META_LOADER_HELD_TYPES, held_types, sizeof(held_types));
    json_object_set_new(l, "held_events", json_integer(meta_int(s, QUEUE_META_LOADER_HELD)));
    json_object_set_new(l, "held_types", text_json(held_types));
    /* Non-null while the loader refuses this queue: what happened and what to do. */
    queue_meta_get_str(s->q, QUEUE_META_LOADER_REFUSED, refused, sizeof(refused));
    json_object_set_new(l, "refused", refused[0] ? text_json(refused) : json_null());
    return l;
}

void
srv_get_status(struct srv *s, struct srv_reply *r)
{
    struct queue_stats st;
    char last_error[1024];
    int64_t now_us = dp_now_us();
    json_t *o;
    json_t *q;
    json_t *ev;
    json_t *problems;
    enum srv_level level;

    memset(&st, 0, sizeof(st));
    if (queue_stats(s->q, &st) != 0) {
        srv_reply_json(r, 503, "queue unreadable");
        return;
    }
    queue_meta_get_str(s->q, QUEUE_META_LOADER_LAST_ERROR, last_error, sizeof(last_error));
    problems = json_array();
    level = srv_health(s, &st, now_us, problems);
    o = srv_reply_object(200, NULL);
    /* "healthy" is the older word for level ok, kept for the scripts that read it. */
    json_object_set_new(o, "level", json_string(srv_level_name(level)));
    json_object_set_new(o, "healthy", json_boolean(level == SRV_LEVEL_OK));
    json_object_set_new(o, "problems", problems);
    json_object_set_new(o, "version", json_string(DP_VERSION));
    json_object_set_new(o, "now", time_json(now_us));
    json_object_set_new(o, "started_at", time_json(s->started_us));
    json_object_set_new(o, "uptime_s", json_real((double)(now_us - s->started_us) / 1e6));
    q = json_object();
    json_object_set_new(q, "events", json_integer((json_int_t)st.events));
    json_object_set_new(q, "bytes", json_integer((json_int_t)st.bytes));
    json_object_set_new(q, "capacity_bytes", json_integer((json_int_t)st.capacity_bytes));
    json_object_set_new(q, "oldest_event_at",
                        st.events > 0 ? time_json(st.oldest_received_us) : json_null());
    json_object_set_new(q, "oldest_event_age_s", json_real(srv_oldest_age_s(&st, now_us)));
    json_object_set_new(q, "next_seq", json_integer((json_int_t)st.next_seq));
    json_object_set_new(q, "instance_id", json_string(queue_instance(s->q, NULL)));
    json_object_set_new(o, "queue", q);
    /* Conservation: one LMDB snapshot, so accepted = loaded + dead_lettered + queued. */
    ev = json_object();
    json_object_set_new(ev, "accepted", json_integer((json_int_t)st.accepted));
    json_object_set_new(ev, "loaded", json_integer((json_int_t)st.loaded));
    json_object_set_new(ev, "dead_lettered", json_integer((json_int_t)st.dead_lettered));
    json_object_set_new(ev, "queued", json_integer((json_int_t)st.events));
    json_object_set_new(o, "events", ev);
    json_object_set_new(o, "loader", loader_json(s, last_error));
    /* Every event this queue acknowledged before it is in PostgreSQL (queue_watermark). */
    json_object_set_new(o, "loaded_through",
                        time_json(meta_int(s, QUEUE_META_LOADER_LOADED_THROUGH_US)));
    r->status = 200;
    r->body = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    json_decref(o);
    if (r->body == NULL) {
        srv_reply_json(r, 500, "out of memory");
    }
}

/* Requests, events and p99 latency since the previous call; called once a minute. */
void
srv_summary_log(struct srv *s)
{
    static uint64_t prev_req, prev_acc, prev_rej;
    static uint64_t prev_lat[SRV_LAT_BUCKETS];
    uint64_t req = 0;
    uint64_t acc = 0;
    uint64_t rej = atomic_load(&s->m.rejected_untyped);
    uint64_t lat[SRV_LAT_BUCKETS];
    uint64_t total = 0;
    uint64_t seen = 0;
    int p99 = 0;

    for (int c = 100; c < 600; c++) {
        req += atomic_load(&s->m.http_by_code[c]);
    }
    for (size_t i = 0; i < SRV_MAX_TYPES; i++) {
        acc += atomic_load(&s->m.accepted[i]);
        rej += atomic_load(&s->m.rejected[i]);
    }
    for (int b = 0; b < SRV_LAT_BUCKETS; b++) {
        lat[b] = atomic_load(&s->m.lat[b]) - prev_lat[b];
        prev_lat[b] += lat[b];
        total += lat[b];
    }
    for (int b = 0; b < SRV_LAT_BUCKETS && total > 0; b++) {
        seen += lat[b];
        if (seen * 100 >= total * 99) {
            p99 = b;
            break;
        }
    }
    dp_info("summary", "requests=%llu accepted=%llu rejected=%llu p99_ms=%.2f",
            (unsigned long long)(req - prev_req), (unsigned long long)(acc - prev_acc),
            (unsigned long long)(rej - prev_rej), total ? lat_bucket_upper_us(p99) / 1000 : 0.0);
    prev_req = req;
    prev_acc = acc;
    prev_rej = rej;
}
