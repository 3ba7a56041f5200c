/*
 * srv.h - internals shared by the files of datapipe-server (not a public
 * module header). Only server/ includes civetweb.h. The answer type and its
 * helpers are in server/reply.h, which includes nothing of the server.
 * Invariants: a 2xx for a POST is sent only after queue_append() returned 0; everything one
 * POST body stores (its valid events, its invalid ones and its key conflicts filed for
 * dead_letter) is stored by one queue call, all or nothing, so an answer other than 2xx
 * means nothing of that body was stored and its retry can duplicate nothing.
 */
#ifndef DP_SRV_H
#define DP_SRV_H

#include "etc/config.h"
#include "events/events.h"
#include "queue/queue.h"
#include "server/reply.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mg_connection;
struct mg_context;

#define SRV_LAT_BUCKETS 52 /* latency histogram: steps of sqrt(2) us, the last >= 2^25 us */
#define SRV_MAX_TYPES EV_REGISTRY_MAX /* registry entries with per-type counters */
#define SRV_ID_MAX 256                /* longest {id} path segment, bytes with NUL */

#define SRV_HISTORY_INTERVAL_S 10 /* seconds between two samples of /v1/status/history */
#define SRV_HISTORY_SAMPLES 360   /* samples answered: one hour */
#define SRV_HISTORY_RING (SRV_HISTORY_SAMPLES + 1) /* one more: the base of the oldest rate */

#define SRV_TAP_MAX 4                 /* live taps open at once; more get 429 */
#define SRV_TAP_RING_BYTES (1u << 20) /* a tap's buffer: NDJSON lines waiting for its client */

/*
 * One live tap (GET /v1/tap): a slot of struct srv, never freed, so the ingest path can
 * look at it without a reference count. Everything below mu is guarded by it.
 */
struct srv_tap {
    pthread_mutex_t mu;
    pthread_cond_t cv;             /* signalled: a first line, a chunk's worth, the limit, stop */
    bool used;                     /* a client holds this slot */
    char type[QUEUE_TYPE_MAX + 1]; /* only events of this type; "" for all */
    uint64_t limit;                /* end after this many events offered; 0: no end */
    uint64_t offered;              /* events published to the tap: sent or dropped */
    uint64_t dropped;              /* dropped for a full ring since the last report */
    char *ring;                    /* SRV_TAP_RING_BYTES of lines, malloc'd by the handler */
    size_t start;                  /* offset of the oldest byte */
    size_t len;                    /* bytes waiting */
};

/* Lock-free counters read by /metrics and the summary line. */
struct srv_metrics {
    atomic_uint_fast64_t http_by_code[600];       /* requests answered, by status */
    atomic_uint_fast64_t ingest_by_code[600];     /* the POSTs among them, by status */
    atomic_uint_fast64_t accepted[SRV_MAX_TYPES]; /* events, by registry index */
    atomic_uint_fast64_t rejected[SRV_MAX_TYPES]; /* events, by registry index */
    atomic_uint_fast64_t rejected_untyped;        /* events with no known type */
    atomic_uint_fast64_t duplicates;              /* keyed repeats answered, not appended */
    atomic_uint_fast64_t tap_dropped;             /* events taps dropped: rings full */
    atomic_uint_fast64_t lat[SRV_LAT_BUCKETS];    /* request latency histogram */
    atomic_uint_fast64_t lat_sum_us;              /* the histogram's sum, microseconds */
};

/* One sample of the history: totals since start, turned into rates when answering. */
struct srv_sample {
    int64_t at_us;                  /* wall clock, microseconds since the epoch */
    int64_t mono_us;                /* monotonic clock: what the rates divide by */
    uint64_t accepted;              /* events acknowledged by this process */
    uint64_t http_4xx;              /* answers 400-499 */
    uint64_t http_503;              /* answers 503 */
    uint64_t queue_events;          /* events queued */
    uint64_t queue_bytes;           /* queue's bytes */
    uint64_t capacity_bytes;        /* queue's map size */
    double oldest_age_s;            /* oldest queued event's age, seconds */
    uint64_t loaded[SRV_MAX_TYPES]; /* the loader's totals, by registry index */
    uint64_t dead_letters;          /* the loader's total, both stages */
    uint64_t ingest;                /* POSTs answered */
    uint64_t ingest_401;            /* POSTs answered 401 (no or wrong API key) */
    uint64_t ingest_429;            /* POSTs answered 429 (an API key over its rate) */
    uint64_t ingest_4xx;            /* POSTs answered 4xx other than 401 and 429: bad input */
    uint64_t ingest_503;            /* POSTs answered 503: queue, disk or memory full */
};

/* The ring of samples and the thread that fills it (history.c). */
struct srv_history {
    pthread_mutex_t mu; /* guards ring, first, count, stop */
    pthread_cond_t cv;  /* wakes the sampler to stop */
    pthread_t thread;
    bool running; /* thread started */
    bool stop;
    size_t first; /* oldest sample's slot */
    size_t count; /* samples held, at most SRV_HISTORY_RING */
    struct srv_sample ring[SRV_HISTORY_RING];
};

/*
 * The server-wide budget for bytes held by request bodies in flight (server.max_inflight_bytes):
 * the body buffers (raw and inflated) as they grow, the parsed events (items, error texts,
 * keys) before the parser allocates them, then their queue records and the answer. A request
 * that holds nothing yet may wait briefly for room; one that already holds some never waits
 * (two large requests each waiting for the other's bytes would both stall), it gets 503.
 */
struct srv_budget {
    pthread_mutex_t mu; /* with cv: requests waiting for room */
    pthread_cond_t cv;  /* CLOCK_MONOTONIC */
    int64_t used;       /* bytes charged now, under mu */
    int64_t max_bytes;  /* server.max_inflight_bytes */
    int64_t peak;       /* most bytes charged at once, under mu */
};

/* What one request holds of the budget. Zero-initialise with its budget set. */
struct srv_charge {
    struct srv_budget *budget;
    int64_t bytes; /* bytes charged by this request */
};

/* One body being read, on the reading thread's stack, in the watchdog's list. */
struct srv_body_watch {
    struct srv_body_watch *next;
    struct srv_body_watch *prev;
    int64_t deadline_us; /* CLOCK_MONOTONIC microseconds */
    char addr[48];       /* the client's address, as civetweb prints it */
    int peer_port;
    int local_port;
    bool cut; /* the watchdog shut its reading side */
};

/* The deadline watch over bodies being read (watchdog.c): one thread, see srv_body_read. */
struct srv_watchdog {
    pthread_mutex_t mu;
    pthread_cond_t cv;           /* CLOCK_MONOTONIC: a new earlier deadline, or stop */
    struct srv_body_watch *head; /* bodies being read, under mu */
    pthread_t thread;
    bool running;             /* thread started */
    bool stop;                /* under mu */
    atomic_uint_fast64_t cut; /* bodies cut off at their deadline */
};

/*
 * One API key name: its token bucket (events a second; rate 0: no limit) and its counters,
 * shared by the keys of that name (limit.c). The bucket may go below zero: a body is
 * admitted while the bucket holds an event and then pays for all of its events, so a key
 * that sends more than its rate waits in proportion. Reference counted: the key table
 * holds one reference and each request that sent one of its keys another, so a SIGHUP
 * that drops the name frees it when the last such request ends, and one that keeps the
 * name keeps this bucket (a SIGHUP never refills it).
 */
struct srv_limit {
    char name[DP_API_KEY_NAME_MAX + 1]; /* metrics label, source column; never a key */
    atomic_int refs;               /* srv_limit_new's and srv_limit_hold's, less srv_limit_put's */
    pthread_mutex_t mu;            /* guards rate, burst, tokens and last_us */
    double rate;                   /* events a second; 0: no limit */
    double burst;                  /* events the bucket holds at most */
    double tokens;                 /* events the key may still send now */
    int64_t last_us;               /* when tokens was last refilled, microseconds since the epoch */
    atomic_uint_fast64_t requests; /* requests that sent a key of this name */
    atomic_uint_fast64_t events;   /* events in the bodies they sent */
    atomic_uint_fast64_t limited;  /* requests answered 429 */
};

struct srv {
    const struct dp_config *cfg;
    struct queue *q;
    struct mg_context *ctx;
    struct srv_metrics m;
    atomic_bool queue_full;           /* last append failed for space: /readyz says 503 */
    atomic_uint_fast64_t full_events; /* queued events when it failed */
    atomic_int_fast64_t full_at_us;   /* when it failed, microseconds since the epoch */
    atomic_int reads_in_flight;       /* GETs holding a database connection */
    struct srv_read_pool *read_pool;  /* readpool.c's connections */
    pthread_rwlock_t keys_lock;       /* guards keys: SIGHUP swaps keys and limits (auth.c) */
    struct srv_keys *keys;            /* the API keys in force, with their names' limits */
    int64_t started_us;               /* process start, microseconds since the epoch */
    struct srv_history hist;          /* the last hour, for /v1/status/history */
    atomic_int taps_open;             /* slots of taps in use: the ingest path's one load */
    atomic_bool stopping;             /* the server is stopping: taps end */
    struct srv_tap taps[SRV_TAP_MAX];
    struct srv_budget budget;     /* server.max_inflight_bytes */
    struct srv_watchdog watchdog; /* server.request_timeout_ms for whole bodies */
};

/* ---- routes.c: the route table and the dispatcher ---------------------- */

/* Methods a route answers (OPTIONS, the CORS preflight, is answered for every route). */
enum srv_method {
    SRV_GET = 1 << 0,
    SRV_HEAD = 1 << 1, /* the GET's headers, no body */
    SRV_POST = 1 << 2,
};

/* What the dispatcher found for a request, handed to the route's handler. */
struct srv_match {
    const struct srv_route *route;
    const struct ev_type *type; /* the route's event_type, or the path's {type}; may be NULL */
    const char *type_name;      /* that type's name as asked for (a view into the URI), or NULL */
    size_t type_len;            /* its bytes */
    char id[SRV_ID_MAX];        /* the path's {id}, or "" */
    struct srv_limit *key;      /* the sent API key's limit, held; NULL: none configured */
    bool key_in_body;           /* keys are configured and none was sent in a header: the
                                   handler finds it in the body (route's key_in_body) */
};

/* A route's own work; the dispatcher has already done method, CORS and key checks. */
typedef void srv_handler(struct srv *s, struct mg_connection *c, const struct srv_match *m,
                         struct srv_reply *r);

/* One answer a route's handler gives, for the API document. */
struct srv_answer {
    int status;       /* HTTP status; 0 ends a list */
    const char *what; /* when it is given */
};

/*
 * One row of the route table. path is literal text with at most these
 * segments in braces: {type} (an event type of the registry; an unknown one is
 * 404 after the key check) and {id} (one non-empty segment, < SRV_ID_MAX bytes).
 */
struct srv_route {
    const char *path;       /* pattern, e.g. "/v1/events/{type}/{id}" */
    unsigned methods;       /* enum srv_method bits */
    bool needs_key;         /* server.api_keys applies */
    const char *event_type; /* the registry type the route stands for, or NULL */
    srv_handler *handler;
    const char *summary; /* one line for an API document */
    /* The handler's answers, ended by {0}; NULL: 200 only. The dispatcher's own (401, 404 of
     * an unknown type, 405, OPTIONS) are added by the document from the row. */
    const struct srv_answer *answers;
    const char *media_type; /* the 2xx body's Content-Type; NULL: application/json */
    /* The key may come in the body instead (the Segment tracking API's writeKey): without a
     * credential header the handler checks it, and answers 401 and 429 itself. */
    bool key_in_body;
    const char *segment_call; /* the Segment call a row takes ("track"), "batch"; or NULL */
};

/* The table, in match order (first row that matches wins). */
extern const struct srv_route srv_routes[];
extern const size_t srv_routes_len;

/*
 * srv_route_find - the first row of the table whose path matches uri (the
 * path alone, no query string); fills m. *unknown_type is set when the row
 * names a type (its own event_type or the path's {type}) that the registry
 * does not have. Returns false when no row matches (404).
 */
bool srv_route_find(const char *uri, struct srv_match *m, bool *unknown_type);

/*
 * srv_route_find_method - as srv_route_find, but the first row whose path matches and
 * that answers method (an enum srv_method bit; 0: any) wins; when no matching row answers
 * it, the first row whose path matches (the dispatcher then answers 405).
 */
bool srv_route_find_method(const char *uri, unsigned method, struct srv_match *m,
                           bool *unknown_type);

/*
 * srv_handle_request - civetweb's request handler (cbdata is the struct srv):
 * dispatch through the table, send the answer, count it, log it at debug.
 * Returns the HTTP status sent.
 */
int srv_handle_request(struct mg_connection *c, void *cbdata);

/* ---- listen.c: civetweb and TLS start-up and stop ---------------------- */

int srv_http_start(struct srv *s);
void srv_http_stop(struct srv *s);

/* ---- auth.c: API keys and CORS ----------------------------------------- */

/*
 * srv_auth_init - take the API keys of cfg (server.api_keys and the keys file's, copied),
 * with one limit per key name, buckets full. Call once before serving. Returns 0 or
 * DP_ERR_NOMEM.
 */
int srv_auth_init(struct srv *s, const struct dp_config *cfg);

/*
 * srv_auth_reload - put cfg's API keys and their limits in force instead of the current
 * ones (SIGHUP), swapped together under s->keys_lock: a removed key is refused from the
 * next request on; a name kept keeps its bucket (not refilled) and counters and takes its
 * new limit; a removed name's bucket and counters go; a new name starts with a full bucket.
 * Logs how many keys and the names added, removed and with a changed limit, never a key.
 * Returns 0, or DP_ERR_NOMEM (the old keys and limits stay in force).
 */
int srv_auth_reload(struct srv *s, const struct dp_config *cfg);

/* srv_auth_destroy - free the keys and drop the table's hold on their limits. */
void srv_auth_destroy(struct srv *s);

/*
 * srv_auth_ok - true when no key is configured (*key NULL), or c sends one of them
 * (Authorization: Bearer, else X-API-Key; compared in constant time against every key):
 * then *key is its name's limit, held for the request (srv_limit_put it) and its request
 * counted. False (*key NULL) when keys are configured and c sends none of them.
 */
bool srv_auth_ok(struct srv *s, struct mg_connection *c, struct srv_limit **key);

#define SRV_BASIC_MAX 512 /* longest decoded HTTP Basic credential taken, bytes */

/*
 * srv_auth_key - as srv_auth_ok for a key sent some other way (sent: NUL-terminated, or NULL
 * for none): the Segment tracking API's writeKey in the body.
 */
bool srv_auth_key(struct srv *s, const char *sent, struct srv_limit **key);

/* srv_auth_sent - whether c sends a credential header (Authorization or X-API-Key). */
bool srv_auth_sent(struct mg_connection *c);

/*
 * srv_key_limited - for a POST (method), check the rate of API key key (NULL: none): over it,
 * r gets 429 with Retry-After and true is returned.
 */
bool srv_key_limited(struct srv_limit *key, const char *method, struct srv_reply *r);

/*
 * srv_auth_each_limit - call fn for each key name's limit in force, under s->keys_lock
 * (fn must not block or take that lock).
 */
void srv_auth_each_limit(struct srv *s, void (*fn)(void *arg, const struct srv_limit *l),
                         void *arg);

/* srv_cors_apply - add CORS headers to r when c's Origin is allowed; returns whether it is. */
bool srv_cors_apply(const struct srv *s, struct mg_connection *c, struct srv_reply *r);

/* srv_cors_preflight - as srv_cors_apply, plus the preflight's Allow-* and Max-Age headers. */
void srv_cors_preflight(const struct srv *s, struct mg_connection *c, struct srv_reply *r);

/* ---- limit.c: per-key-name rate limits and counters -------------------- */

/* srv_limit_init - l named name: a bucket of burst events (0: events_per_s), full at now_us. */
void srv_limit_init(struct srv_limit *l, const char *name, int64_t events_per_s, int64_t burst,
                    int64_t now_us);

/* srv_limit_new - as srv_limit_init, allocated, with one reference; NULL when out of memory. */
struct srv_limit *srv_limit_new(const char *name, int64_t events_per_s, int64_t burst,
                                int64_t now_us);

/* srv_limit_hold - one more reference to l (not NULL). */
void srv_limit_hold(struct srv_limit *l);

/* srv_limit_put - drop a reference to l (may be NULL); the last one frees it. */
void srv_limit_put(struct srv_limit *l);

/*
 * srv_limit_set - l's limit becomes events_per_s and burst (0: events_per_s) at now_us
 * without refilling it: what it earned at the old rate until now is kept, then held to the
 * new burst; a bucket that had no limit starts full. Returns whether the limit changed.
 */
bool srv_limit_set(struct srv_limit *l, int64_t events_per_s, int64_t burst, int64_t now_us);

/*
 * srv_limit_admit - whether a body may come in at now_us: 0 when l has no limit or its
 * bucket holds at least one event; else the seconds until it will (>= 1, the Retry-After),
 * and the refusal is counted. *rate gets l's rate (events a second; 0: none). Takes
 * nothing from the bucket: srv_limit_charge does.
 */
int srv_limit_admit(struct srv_limit *l, int64_t now_us, double *rate);

/*
 * srv_limit_charge - take a body's events from l's bucket at now_us (it may go below zero)
 * and count them. l may be NULL (no key): nothing happens.
 */
void srv_limit_charge(struct srv_limit *l, size_t events, int64_t now_us);

/* ---- reqbody.c: reading a request body, and the one "too large" -------- */

/*
 * srv_body_read - read the request body (Content-Length or chunked) into a
 * malloc'd buffer, at most s's server.max_body_bytes after inflating gzip, the whole body
 * within server.request_timeout_ms whatever the client's pace: the watchdog (see
 * srv_watchdog_start) shuts the connection's reading side at the deadline, which ends a
 * read that civetweb would otherwise keep waiting in while bytes trickle in.
 * Every buffer is charged to ch (s->budget) before it is allocated.
 * *out is the caller's to free; ch stays charged until the caller releases it. Returns 0;
 * or fills r (400, 413, 415, 503 with Retry-After when the budget has no room, or 500 when
 * out of memory inflating) and returns DP_ERR_INVALID, DP_ERR_BUSY, DP_ERR_IO or
 * DP_ERR_NOMEM.
 */
int srv_body_read(struct srv *s, struct mg_connection *c, struct srv_charge *ch, char **out,
                  size_t *len, struct srv_reply *r);

/*
 * srv_too_large - the one place that decides a POST is too large, and answers
 * 413. Too large when body_bytes (announced, read or inflated) exceeds
 * max_body_bytes (server.max_body_bytes; the answer closes the connection, as
 * the rest of the body is never read), or when queue_rc, queue_append's code,
 * is DP_ERR_INVALID: the queue refuses a record larger than half its map
 * (queue.max_bytes). Pass queue_rc 0 before appending.
 * Returns true when r was filled with 413, false otherwise (r untouched).
 */
bool srv_too_large(struct srv_reply *r, int64_t body_bytes, int64_t max_body_bytes, int queue_rc);

/* ---- budget.c: the bytes of request bodies in flight --------------------- */

/*
 * srv_budget_init / srv_budget_destroy - set up and tear down b for max_bytes.
 * Returns 0 or DP_ERR_NOMEM.
 */
int srv_budget_init(struct srv_budget *b, int64_t max_bytes);
void srv_budget_destroy(struct srv_budget *b);

/*
 * srv_charge_add - charge n more bytes to ch. A charge that holds nothing yet waits up to
 * SRV_BUDGET_WAIT_MS for room; one that holds some does not wait.
 * Returns 0 or DP_ERR_BUSY (nothing more charged).
 */
int srv_charge_add(struct srv_charge *ch, int64_t n);

/* srv_charge_release - give back everything ch holds (then ch->bytes is 0). */
void srv_charge_release(struct srv_charge *ch);

/* srv_reply_busy - the 503 for a request the budget has no room for. */
void srv_reply_busy(struct srv_reply *r);

/* ---- watchdog.c: every body within server.request_timeout_ms --------------- */

/*
 * srv_watchdog_start - start the thread that cuts off bodies past their deadline.
 * Returns 0 or DP_ERR_NOMEM. srv_watchdog_stop - stop it (after civetweb stopped);
 * safe when it never started.
 */
int srv_watchdog_start(struct srv *s);
void srv_watchdog_stop(struct srv *s);

/*
 * srv_watch_add - put w (filled by the caller, on its stack until srv_watch_remove) in wd's
 * list; wakes the watchdog when w is due first. Nothing when the watchdog is not running.
 */
void srv_watch_add(struct srv_watchdog *wd, struct srv_body_watch *w);

/* srv_watch_remove - take w out of wd's list; returns whether the watchdog cut it off. */
bool srv_watch_remove(struct srv_watchdog *wd, struct srv_body_watch *w);

/* ---- ingest.c: the POST path ------------------------------------------- */

/* POST of events: 202 once durable (one event: its id), 400 when none is valid. */
/* srv_is_conflict - whether item it was refused for its key (ev: its append result, or NULL). */
bool srv_is_conflict(const struct ev_item *it, const struct queue_event *ev);

/* srv_conflict_text - the text of a key conflict into buf (len bytes); returns its length. */
size_t srv_conflict_text(char *buf, size_t len, const char *key, size_t key_len,
                         const uint8_t orig[16]);

/*
 * srv_count_events - count b's items in the metrics: rejections when evs is NULL (before the
 * append), acceptances, duplicates and conflicts from the append's results evs.
 */
void srv_count_events(struct srv *s, const struct ev_batch *b, const struct queue_event *evs);

/*
 * srv_append_batch - append every item of b (b->n of them, into evs) in one queue call: the
 * valid ones, the invalid ones flagged for dead_letter; a conflict of a body of several is
 * filed for dead_letter. url_type: the type of items that have none (NULL: "unknown");
 * answer: recorded with keys; key: the sender's limit (its name is the source), or NULL.
 * Returns what queue_append_filing returns.
 */
int srv_append_batch(struct srv *s, const struct ev_batch *b, const struct ev_type *url_type,
                     uint16_t answer, const struct srv_limit *key, struct queue_event *evs);

/* srv_reply_append_error - the answer for a failed append (rc): 503, 413 or 500. */
void srv_reply_append_error(struct srv *s, struct srv_reply *r, int rc, size_t body_len, size_t n);

/*
 * srv_post_segment - the Segment tracking API (server/segment.c): POST /v1/batch and one
 * route per call (the row's segment_call).
 */
void srv_post_segment(struct srv *s, struct mg_connection *c, const struct srv_match *m,
                      struct srv_reply *r);

void srv_post_events(struct srv *s, struct mg_connection *c, const struct srv_match *m,
                     struct srv_reply *r);
/* As srv_post_events, but 204 when every event of the body was accepted. */
void srv_post_submit(struct srv *s, struct mg_connection *c, const struct srv_match *m,
                     struct srv_reply *r);

/* ---- tap.c: GET /v1/tap, accepted events live ------------------------- */

/* srv_tap_init - make the tap slots usable; before srv_http_start. */
void srv_tap_init(struct srv *s);

/* srv_tap_stop - end every tap (they send their last chunk); before mg_stop. */
void srv_tap_stop(struct srv *s);

/*
 * srv_tap_publish_slow - offer the accepted events of evs (n, just committed: rejected
 * ones are skipped) to every open tap. Each tap takes a line per event of its type while
 * its ring has room and counts the rest as dropped: never waits for a tap's client. Call
 * it through srv_tap_publish.
 */
void srv_tap_publish_slow(struct srv *s, const struct queue_event *evs, size_t n);

/* srv_tap_publish - as srv_tap_publish_slow; with no tap open, one atomic load. */
static inline void
srv_tap_publish(struct srv *s, const struct queue_event *evs, size_t n)
{
    if (atomic_load_explicit(&s->taps_open, memory_order_relaxed) > 0) {
        srv_tap_publish_slow(s, evs, n);
    }
}

/* GET /v1/tap[?type=T][&limit=N]: the tap's chunked NDJSON answer, written by the handler. */
void srv_get_tap(struct srv *s, struct mg_connection *c, const struct srv_match *m,
                 struct srv_reply *r);

/* ---- ops.c (counters, the summary), probes.c, status.c, metrics.c ---- */

/* ops.c: count one answer (status, whether a POST to ingest, its latency) in s->m. */
void srv_observe(struct srv *s, int status, bool ingest, int64_t elapsed_us);
/* ops.c: log the requests, events and p99 latency since the last call (once a minute). */
void srv_summary_log(struct srv *s);
/* ops.c: t's slot in the per-type counters (the registry's order; 0 when not found). */
size_t srv_type_index(const struct ev_type *t);
/* probes.c: GET /healthz and GET /readyz. */
void srv_get_healthz(struct srv *s, struct srv_reply *r);
void srv_get_readyz(struct srv *s, struct srv_reply *r);
/* status.c: GET /v1/status. */
void srv_get_status(struct srv *s, struct srv_reply *r);
/* metrics.c: GET /metrics. */
void srv_get_metrics(struct srv *s, struct srv_reply *r);

/* srv_meta_int - the queue's metadata counter name (0 when missing or unreadable). */
int64_t srv_meta_int(struct srv *s, const char *name);
/* srv_oldest_age_s - seconds since the oldest queued event (of st) was received, at now_us. */
double srv_oldest_age_s(const struct queue_stats *st, int64_t now_us);

/* ---- history.c: the last hour, a sample every SRV_HISTORY_INTERVAL_S ---- */

/*
 * srv_history_start - start the sampler thread (one sample at once, then one every
 * SRV_HISTORY_INTERVAL_S seconds). Returns 0 or DP_ERR_IO. srv_history_stop ends it
 * (a no-op when it was not started).
 */
int srv_history_start(struct srv *s);
void srv_history_stop(struct srv *s);

/* srv_sample_take - the counters and queue figures now, into sm. */
void srv_sample_take(struct srv *s, struct srv_sample *sm);

/*
 * srv_sample_before - the newest sample of the ring taken at or before mono_us, or else the
 * oldest one, into sm. Returns false when the ring is empty.
 */
bool srv_sample_before(struct srv *s, int64_t mono_us, struct srv_sample *sm);

/* ---- health.c: the level of /v1/status and what to do about each problem ---- */

enum srv_level {
    SRV_LEVEL_OK = 0,       /* nothing needs an operator */
    SRV_LEVEL_DEGRADED = 1, /* needs attention; events are still taken and loaded */
    SRV_LEVEL_FAILING = 2,  /* events are refused, or not loaded */
};

/*
 * srv_health - how the appliance is now: its level, and into problems (a JSON array, may be
 * NULL) one string per cause, saying what is wrong and what to do. st is the queue's stats
 * at now_us. Reads counters, the queue's metadata and the history ring; changes nothing.
 */
enum srv_level srv_health(struct srv *s, const struct queue_stats *st, int64_t now_us,
                          json_t *problems);

/* srv_level_name - "ok", "degraded" or "failing". */
const char *srv_level_name(enum srv_level level);

/* GET /v1/status/history: the samples, oldest first, with rates since the previous one. */
void srv_get_history(struct srv *s, struct srv_reply *r);

/* ---- page.c: the status page ------------------------------------------- */

/* GET /status: the self-contained HTML page (server/status.html, built in). */
void srv_get_status_page(struct srv *s, struct srv_reply *r);

/* ---- the read path: readpool.c (its connections), read.c (rows), readdead.c, readtrail.c */

/* srv_read_pool_create - s->read_pool, empty (connections open on demand). 0 or DP_ERR_NOMEM. */
int srv_read_pool_create(struct srv *s);

/* srv_read_pool_destroy - close every connection and free the pool; no GET may be running. */
void srv_read_pool_destroy(struct srv *s);

/* srv_read_pool_sweep - close the connections unused for a minute; call every few seconds. */
void srv_read_pool_sweep(struct srv *s);

/* read.c: GET of one stored row (GET /v1/events/{type}/{id}, GET /product/{id}). */
void srv_get_event(struct srv *s, const struct ev_type *t, const char *id, struct srv_reply *r);

/* readdead.c */
/*
 * GET /v1/status/dead_letters: this queue's dead letters counted by type and stage, and the
 * latest ones with their errors, read from PostgreSQL like a stored row (same connection,
 * time-outs and limit on waiting reads). Database down: 503 naming the cause.
 */
void srv_get_dead_letters(struct srv *s, struct srv_reply *r);

/* readdead.c: GET /v1/dead_letters: the dead_letter table's rows, by stage (a query, like row
 * reads). */
void srv_get_dead_letter_rows(struct srv *s, struct srv_reply *r);

/* readtrail.c */
/*
 * srv_read_trail - where PostgreSQL holds the event id (canonical uuid text): in
 * dead_letter, or in an append type's table. Merges into o "type", "state" ("dead_letter"
 * with "stage", "error", "failed_at", "replays"; or "loaded" with "table", "loaded_at")
 * and "received_at". At most one indexed lookup in dead_letter and one primary-key lookup
 * per append type, on a pooled connection, under the same cap on waiting reads as
 * srv_get_event. Returns 0, DP_ERR_NOTFOUND, DP_ERR_BUSY (too many reads waiting),
 * DP_ERR_RETRY (database unavailable), DP_ERR_IO, DP_ERR_NOMEM.
 */
int srv_read_trail(struct srv *s, const char *id, json_t *o);

/* ---- trail.c: GET /v1/events/{id}, where an event is now ---------------- */

void srv_get_trail(struct srv *s, struct mg_connection *c, const struct srv_match *m,
                   struct srv_reply *r);

/* ---- api.c: what the appliance accepts, for clients to discover ------------- */

/*
 * GET /v1/types: the registry as JSON (each type's fields, table and endpoint, the first of
 * the n_routes routes that takes it). routes.c passes its table, so that api.c, which the
 * table points to, need not point back.
 */
void srv_get_types(struct srv *s, const struct srv_route *routes, size_t n_routes,
                   struct srv_reply *r);
/* GET /v1/openapi.json: an OpenAPI 3.1 document built from routes and the registry. */
void srv_get_openapi(struct srv *s, const struct srv_route *routes, size_t n_routes,
                     struct srv_reply *r);

#endif
