/*
 * srv.h - internals shared by the files of datapipe-server (not a public
 * module header). Only server/ includes civetweb.h. The answer type and its
 * helpers are in server/reply.h, which includes nothing of the server.
 * Invariant: a 2xx for a POST is sent only after queue_append() returned 0.
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

#define SRV_LAT_BUCKETS 40      /* latency histogram: bucket i holds < 2^(i/2) us */
#define SRV_MAX_TYPES EV_REGISTRY_MAX /* registry entries with per-type counters */
#define SRV_ID_MAX 256          /* longest {id} path segment, bytes with NUL */

/* Lock-free counters read by /metrics and the summary line. */
struct srv_metrics {
    atomic_uint_fast64_t http_by_code[600];          /* requests answered, by status */
    atomic_uint_fast64_t accepted[SRV_MAX_TYPES];    /* events, by registry index */
    atomic_uint_fast64_t rejected[SRV_MAX_TYPES];    /* events, by registry index */
    atomic_uint_fast64_t rejected_untyped;           /* events with no known type */
    atomic_uint_fast64_t duplicates;                 /* keyed repeats answered, not appended */
    atomic_uint_fast64_t lat[SRV_LAT_BUCKETS];       /* request latency histogram */
};

/*
 * The server-wide budget for bytes held by request bodies in flight (server.max_inflight_bytes):
 * the body buffers (raw and inflated) as they grow, then the parsed events. A request that
 * holds nothing yet may wait briefly for room; one that already holds some never waits (two
 * large requests each waiting for the other's bytes would both stall), it gets 503.
 */
struct srv_budget {
    pthread_mutex_t mu;         /* with cv: requests waiting for room */
    pthread_cond_t cv;          /* CLOCK_MONOTONIC */
    int64_t used;               /* bytes charged now, under mu */
    int64_t max_bytes;          /* server.max_inflight_bytes */
    int64_t peak;               /* most bytes charged at once, under mu */
};

/* What one request holds of the budget. Zero-initialise with its budget set. */
struct srv_charge {
    struct srv_budget *budget;
    int64_t bytes;              /* bytes charged by this request */
};

/* The deadline watch over bodies being read (reqbody.c): one thread, see srv_body_read. */
struct srv_watchdog {
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* CLOCK_MONOTONIC: a new earlier deadline, or stop */
    struct srv_body_watch *head; /* bodies being read, under mu */
    pthread_t thread;
    bool running;               /* thread started */
    bool stop;                  /* under mu */
    atomic_uint_fast64_t cut;   /* bodies cut off at their deadline */
};

struct srv {
    const struct dp_config *cfg;
    struct queue *q;
    struct mg_context *ctx;
    struct srv_metrics m;
    atomic_bool queue_full;     /* last append failed for space: /readyz says 503 */
    atomic_uint_fast64_t full_events; /* queued events when it failed */
    atomic_int_fast64_t full_at_us;   /* when it failed, microseconds since the epoch */
    atomic_int reads_in_flight;       /* GETs holding a database connection */
    int64_t started_us;         /* process start, microseconds since the epoch */
    struct srv_budget budget;   /* server.max_inflight_bytes */
    struct srv_watchdog watchdog; /* server.request_timeout_ms for whole bodies */
};

/* ---- routes.c: the route table and the dispatcher ---------------------- */

/* Methods a route answers (OPTIONS, the CORS preflight, is answered for every route). */
enum srv_method {
    SRV_GET = 1 << 0,
    SRV_HEAD = 1 << 1,          /* the GET's headers, no body */
    SRV_POST = 1 << 2,
};

/* What the dispatcher found for a request, handed to the route's handler. */
struct srv_match {
    const struct srv_route *route;
    const struct ev_type *type; /* the route's event_type, or the path's {type}; may be NULL */
    char id[SRV_ID_MAX];        /* the path's {id}, or "" */
};

/* A route's own work; the dispatcher has already done method, CORS and key checks. */
typedef void srv_handler(struct srv *s, struct mg_connection *c, const struct srv_match *m,
                         struct srv_reply *r);

/*
 * One row of the route table. path is literal text with at most these
 * segments in braces: {type} (an event type of the registry; an unknown one is
 * 404 after the key check) and {id} (one non-empty segment, < SRV_ID_MAX bytes).
 */
struct srv_route {
    const char *path;           /* pattern, e.g. "/v1/events/{type}/{id}" */
    unsigned methods;           /* enum srv_method bits */
    bool needs_key;             /* server.api_keys applies */
    const char *event_type;     /* the registry type the route stands for, or NULL */
    srv_handler *handler;
    const char *summary;        /* one line for an API document */
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
 * srv_handle_request - civetweb's request handler (cbdata is the struct srv):
 * dispatch through the table, send the answer, count it, log it at debug.
 * Returns the HTTP status sent.
 */
int srv_handle_request(struct mg_connection *c, void *cbdata);

/* ---- listen.c: civetweb and TLS start-up and stop ---------------------- */

int srv_http_start(struct srv *s);
void srv_http_stop(struct srv *s);

/* ---- auth.c: API keys and CORS ----------------------------------------- */

/* srv_auth_ok - true when no key is configured or c sends one of them. */
bool srv_auth_ok(const struct srv *s, struct mg_connection *c);

/* srv_cors_apply - add CORS headers to r when c's Origin is allowed; returns whether it is. */
bool srv_cors_apply(const struct srv *s, struct mg_connection *c, struct srv_reply *r);

/* srv_cors_preflight - as srv_cors_apply, plus the preflight's Allow-* and Max-Age headers. */
void srv_cors_preflight(const struct srv *s, struct mg_connection *c, struct srv_reply *r);

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

/*
 * srv_watchdog_start - start the thread that cuts off bodies past their deadline.
 * Returns 0 or DP_ERR_NOMEM. srv_watchdog_stop - stop it (after civetweb stopped);
 * safe when it never started.
 */
int srv_watchdog_start(struct srv *s);
void srv_watchdog_stop(struct srv *s);

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

/* ---- ingest.c: the POST path ------------------------------------------- */

/* POST of events: 202 once durable (one event: its id), 400 when none is valid. */
void srv_post_events(struct srv *s, struct mg_connection *c, const struct srv_match *m,
                     struct srv_reply *r);
/* As srv_post_events, but 204 when every event of the body was accepted. */
void srv_post_submit(struct srv *s, struct mg_connection *c, const struct srv_match *m,
                     struct srv_reply *r);

/* ---- ops.c: health, readiness, status, metrics, the per-minute summary - */

void srv_observe(struct srv *s, int status, int64_t elapsed_us);
void srv_get_healthz(struct srv *s, struct srv_reply *r);
void srv_get_readyz(struct srv *s, struct srv_reply *r);
void srv_get_status(struct srv *s, struct srv_reply *r);
void srv_get_metrics(struct srv *s, struct srv_reply *r);
void srv_summary_log(struct srv *s);
size_t srv_type_index(const struct ev_type *t);

/* ---- read.c: GET of a stored row through a per-thread libpq connection - */

void srv_get_event(struct srv *s, const struct ev_type *t, const char *id, struct srv_reply *r);
void srv_read_thread_exit(void);

#endif
