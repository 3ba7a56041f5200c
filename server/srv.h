/*
 * srv.h - internals shared by the files of datapipe-server (not a public
 * module header). Only server/ includes civetweb.h.
 * Invariant: a 2xx for a POST is sent only after queue_append() returned 0.
 */
#ifndef DP_SRV_H
#define DP_SRV_H

#include "etc/config.h"
#include "events/events.h"
#include "queue/queue.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mg_connection;
struct mg_context;

#define SRV_LAT_BUCKETS 40      /* latency histogram: bucket i holds < 2^(i/2) us */
#define SRV_MAX_TYPES EV_REGISTRY_MAX /* registry entries with per-type counters */

/* Lock-free counters read by /metrics and the summary line. */
struct srv_metrics {
    atomic_uint_fast64_t http_by_code[600];          /* requests answered, by status */
    atomic_uint_fast64_t accepted[SRV_MAX_TYPES];    /* events, by registry index */
    atomic_uint_fast64_t rejected[SRV_MAX_TYPES];    /* events, by registry index */
    atomic_uint_fast64_t rejected_untyped;           /* events with no known type */
    atomic_uint_fast64_t lat[SRV_LAT_BUCKETS];       /* request latency histogram */
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
};

/* One response: status, JSON body (malloc'd or static), extra header lines. */
struct srv_reply {
    int status;
    char *body;                 /* JSON text, malloc'd; NULL for no body (204) */
    const char *content_type;   /* default application/json */
    char headers[512];          /* extra "Name: value\r\n" lines */
};

/* http.c */
int srv_http_start(struct srv *s);
void srv_http_stop(struct srv *s);
void srv_reply_json(struct srv_reply *r, int status, const char *message);
void srv_reply_header(struct srv_reply *r, const char *name, const char *value);

/*
 * body.c - srv_body_read: read the request body (Content-Length or chunked)
 * into a malloc'd buffer, at most max bytes after inflating gzip, the whole
 * body within timeout_ms.
 * Returns 0, or fills r with 400/413/415 and returns DP_ERR_INVALID.
 */
int srv_body_read(struct mg_connection *c, int64_t max, int timeout_ms, char **out, size_t *len,
                  struct srv_reply *r);

/* ops.c: health, readiness, status, metrics, the per-minute summary. */
void srv_observe(struct srv *s, int status, int64_t elapsed_us);
void srv_get_healthz(struct srv *s, struct srv_reply *r);
void srv_get_readyz(struct srv *s, struct srv_reply *r);
void srv_get_status(struct srv *s, struct srv_reply *r);
void srv_get_metrics(struct srv *s, struct srv_reply *r);
void srv_summary_log(struct srv *s);
size_t srv_type_index(const struct ev_type *t);

/* read.c: GET of a stored row through a per-thread libpq connection. */
void srv_get_event(struct srv *s, const struct ev_type *t, const char *id, struct srv_reply *r);
void srv_read_thread_exit(void);

#endif
