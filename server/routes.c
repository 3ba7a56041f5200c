/*
 * routes.c - the route table and the dispatcher. Each row says a route's path,
 * methods, whether it needs an API key, the event type it stands for, and its
 * handler; the dispatcher answers 404, OPTIONS, 405 (with Allow) and 401 from
 * the row before any handler runs. A new endpoint is one row and one handler.
 */
#include "etc/err.h"
#include "etc/log.h"
#include "server/srv.h"

#include <civetweb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The operations and read handlers take only what they use. */
static void
get_event(struct srv *s, struct mg_connection *c, const struct srv_match *m, struct srv_reply *r)
{
    (void)c;
    srv_get_event(s, m->type, m->id, r);
}

static void
get_healthz(struct srv *s, struct mg_connection *c, const struct srv_match *m, struct srv_reply *r)
{
    (void)c;
    (void)m;
    srv_get_healthz(s, r);
}

static void
get_readyz(struct srv *s, struct mg_connection *c, const struct srv_match *m, struct srv_reply *r)
{
    (void)c;
    (void)m;
    srv_get_readyz(s, r);
}

static void
get_metrics(struct srv *s, struct mg_connection *c, const struct srv_match *m, struct srv_reply *r)
{
    (void)c;
    (void)m;
    srv_get_metrics(s, r);
}

static void
get_status(struct srv *s, struct mg_connection *c, const struct srv_match *m, struct srv_reply *r)
{
    (void)c;
    (void)m;
    srv_get_status(s, r);
}

static void
get_history(struct srv *s, struct mg_connection *c, const struct srv_match *m, struct srv_reply *r)
{
    (void)c;
    (void)m;
    srv_get_history(s, r);
}

static void
get_dead_letters(struct srv *s, struct mg_connection *c, const struct srv_match *m,
                 struct srv_reply *r)
{
    (void)c;
    (void)m;
    srv_get_dead_letters(s, r);
}

static void
get_dead_letter_rows(struct srv *s, struct mg_connection *c, const struct srv_match *m,
                     struct srv_reply *r)
{
    (void)c;
    (void)m;
    srv_get_dead_letter_rows(s, r);
}

static void
get_status_page(struct srv *s, struct mg_connection *c, const struct srv_match *m,
                struct srv_reply *r)
{
    (void)c;
    (void)m;
    srv_get_status_page(s, r);
}

static void
get_types(struct srv *s, struct mg_connection *c, const struct srv_match *m, struct srv_reply *r)
{
    (void)c;
    (void)m;
    srv_get_types(s, srv_routes, srv_routes_len, r);
}

static void
get_openapi(struct srv *s, struct mg_connection *c, const struct srv_match *m, struct srv_reply *r)
{
    (void)c;
    (void)m;
    srv_get_openapi(s, srv_routes, srv_routes_len, r);
}

#define GET_HEAD (SRV_GET | SRV_HEAD)

/* What the POST handlers answer (ingest.c); /submit adds its 204. */
#define POST_ANSWERS                                                                               \
    {202, "accepted once in the queue: one event gives its id; several give accepted, "            \
          "rejected and up to 100 errors (rejected events go to dead_letter)"},                    \
        {400, "no valid event: status_message (one event) or errors (several) say why"},           \
        {413, "the body, or an event, is too large"},                                              \
        {415, "Content-Type or Content-Encoding not accepted"},                                    \
        {503, "the queue is full or the server is stopping: retry after Retry-After"},             \
        {500, "a bug, logged with detail"},                                                        \
    {                                                                                              \
        0, NULL                                                                                    \
    }

static const struct srv_answer post_answers[] = {POST_ANSWERS};
static const struct srv_answer submit_answers[] = {
    {204, "every event of the body accepted"},
    POST_ANSWERS,
};
/* What the Segment tracking API answers (segment.c): what its SDKs understand. */
static const struct srv_answer segment_answers[] = {
    {200, "stored once in the queue: accepted, rejected (dead-lettered), duplicates, ids "
          "(one per message, null for a rejected one) and errors"},
    {400, "nothing stored: no valid message, a body over server.segment_max_batch_bytes, or "
          "not JSON; the SDKs drop a batch answered 400"},
    {401, "missing or wrong write key (HTTP Basic user name, or writeKey in the body)"},
    {413, "the body is over server.max_body_bytes"},
    {415, "Content-Type or Content-Encoding not accepted"},
    {429, "the write key's rate limit: retry after Retry-After"},
    {503, "the queue is full or the server is stopping: retry after Retry-After"},
    {500, "a bug, logged with detail"},
    {0, NULL},
};
static const struct srv_answer read_answers[] = {
    {200, "the stored row as JSON"},
    {400, "the id is not valid for the type"},
    {404, "no such row: not loaded yet, or never accepted"},
    {503, "the database is down or busy: retry after Retry-After"},
    {0, NULL},
};
static const struct srv_answer dead_letter_answers[] = {
    {200, "rows: the dead_letter table's size now; ingest and load: of which each stage"},
    {503, "the database is down or busy: retry after Retry-After"},
    {0, NULL},
};
static const struct srv_answer readyz_answers[] = {
    {200, "the queue accepts appends"},
    {503, "the queue is full or unreadable"},
    {0, NULL},
};
static const struct srv_answer status_answers[] = {
    {200, "the figures"},
    {503, "the queue is unreadable"},
    {0, NULL},
};

/*
 * Matched in this order, the first row whose path and method match winning: "/v1/events/"
 * must come before "/v1/events/{type}"; "/v1/events/{type}" (POST) and "/v1/events/{id}"
 * (GET) share a path and are told apart by the method.
 */
const struct srv_route srv_routes[] = {
    {.path = "/v1/events",
     .methods = SRV_POST,
     .needs_key = true,
     .handler = srv_post_events,
     .summary = "store events; each names its type in event_name",
     .answers = post_answers},
    {.path = "/v1/events/",
     .methods = SRV_POST,
     .needs_key = true,
     .handler = srv_post_events,
     .summary = "store events; each names its type in event_name (as /v1/events)",
     .answers = post_answers},
    {.path = "/",
     .methods = SRV_POST,
     .needs_key = true,
     .handler = srv_post_events,
     .summary = "store events; each names its type in event_name (as /v1/events)",
     .answers = post_answers},
    {.path = "/v1/events/{type}",
     .methods = SRV_POST,
     .needs_key = true,
     .handler = srv_post_events,
     .summary = "store events of one type",
     .answers = post_answers},
    {.path = "/v1/events/{id}",
     .methods = GET_HEAD,
     .needs_key = true,
     .handler = srv_get_trail,
     .summary = "an event's trail: queued, loaded, dead_letter or unknown"},
    {.path = "/v1/events/{type}/{id}",
     .methods = GET_HEAD,
     .needs_key = true,
     .handler = get_event,
     .summary = "read a loaded event by its id",
     .answers = read_answers},
    {.path = "/submit",
     .methods = SRV_POST,
     .needs_key = true,
     .event_type = "ad_event",
     .handler = srv_post_submit,
     .summary = "store ad events; 204 when all are accepted",
     .answers = submit_answers},
    {.path = "/product/{id}",
     .methods = GET_HEAD,
     .needs_key = true,
     .event_type = "product",
     .handler = get_event,
     .summary = "read a loaded product by its id",
     .answers = read_answers},
    {.path = "/v1/tap",
     .methods = SRV_GET,
     .needs_key = true,
     .handler = srv_get_tap,
     .summary = "accepted events as NDJSON, live (?type=, ?limit=)"},
    {.path = "/v1/batch",
     .methods = SRV_POST,
     .needs_key = true,
     .key_in_body = true,
     .segment_call = "batch",
     .handler = srv_post_segment,
     .summary = "Segment tracking API: a batch of messages of any call",
     .answers = segment_answers},
    {.path = "/v1/identify",
     .methods = SRV_POST,
     .needs_key = true,
     .key_in_body = true,
     .segment_call = "identify",
     .handler = srv_post_segment,
     .summary = "Segment tracking API: one identify message",
     .answers = segment_answers},
    {.path = "/v1/track",
     .methods = SRV_POST,
     .needs_key = true,
     .key_in_body = true,
     .segment_call = "track",
     .handler = srv_post_segment,
     .summary = "Segment tracking API: one track message",
     .answers = segment_answers},
    {.path = "/v1/page",
     .methods = SRV_POST,
     .needs_key = true,
     .key_in_body = true,
     .segment_call = "page",
     .handler = srv_post_segment,
     .summary = "Segment tracking API: one page message",
     .answers = segment_answers},
    {.path = "/v1/screen",
     .methods = SRV_POST,
     .needs_key = true,
     .key_in_body = true,
     .segment_call = "screen",
     .handler = srv_post_segment,
     .summary = "Segment tracking API: one screen message",
     .answers = segment_answers},
    {.path = "/v1/group",
     .methods = SRV_POST,
     .needs_key = true,
     .key_in_body = true,
     .segment_call = "group",
     .handler = srv_post_segment,
     .summary = "Segment tracking API: one group message",
     .answers = segment_answers},
    {.path = "/v1/alias",
     .methods = SRV_POST,
     .needs_key = true,
     .key_in_body = true,
     .segment_call = "alias",
     .handler = srv_post_segment,
     .summary = "Segment tracking API: one alias message",
     .answers = segment_answers},
    {.path = "/v1/b",
     .methods = SRV_POST,
     .needs_key = true,
     .key_in_body = true,
     .segment_call = "batch",
     .handler = srv_post_segment,
     .summary = "as /v1/batch: the short path analytics.js posts to",
     .answers = segment_answers},
    {.path = "/v1/i",
     .methods = SRV_POST,
     .needs_key = true,
     .key_in_body = true,
     .segment_call = "identify",
     .handler = srv_post_segment,
     .summary = "as /v1/identify: the short path analytics.js posts to",
     .answers = segment_answers},
    {.path = "/v1/t",
     .methods = SRV_POST,
     .needs_key = true,
     .key_in_body = true,
     .segment_call = "track",
     .handler = srv_post_segment,
     .summary = "as /v1/track: the short path analytics.js posts to",
     .answers = segment_answers},
    {.path = "/v1/p",
     .methods = SRV_POST,
     .needs_key = true,
     .key_in_body = true,
     .segment_call = "page",
     .handler = srv_post_segment,
     .summary = "as /v1/page: the short path analytics.js posts to",
     .answers = segment_answers},
    {.path = "/v1/s",
     .methods = SRV_POST,
     .needs_key = true,
     .key_in_body = true,
     .segment_call = "screen",
     .handler = srv_post_segment,
     .summary = "as /v1/screen: the short path analytics.js posts to",
     .answers = segment_answers},
    {.path = "/v1/g",
     .methods = SRV_POST,
     .needs_key = true,
     .key_in_body = true,
     .segment_call = "group",
     .handler = srv_post_segment,
     .summary = "as /v1/group: the short path analytics.js posts to",
     .answers = segment_answers},
    {.path = "/v1/a",
     .methods = SRV_POST,
     .needs_key = true,
     .key_in_body = true,
     .segment_call = "alias",
     .handler = srv_post_segment,
     .summary = "as /v1/alias: the short path analytics.js posts to",
     .answers = segment_answers},
    {.path = "/healthz",
     .methods = GET_HEAD,
     .handler = get_healthz,
     .summary = "liveness: the process answers"},
    {.path = "/readyz",
     .methods = GET_HEAD,
     .handler = get_readyz,
     .summary = "readiness: the queue is readable and not full",
     .answers = readyz_answers},
    {.path = "/metrics",
     .methods = GET_HEAD,
     .handler = get_metrics,
     .summary = "Prometheus metrics of the server and the loader",
     .media_type = "text/plain; version=0.0.4"},
    {.path = "/v1/status",
     .methods = GET_HEAD,
     .handler = get_status,
     .summary = "queue depth, loader progress and counters as JSON",
     .answers = status_answers},
    {.path = "/v1/status/history",
     .methods = GET_HEAD,
     .handler = get_history,
     .summary = "the last hour as JSON: a sample every 10 s"},
    {.path = "/v1/status/dead_letters",
     .methods = GET_HEAD,
     .handler = get_dead_letters,
     .summary = "dead letters by type and stage, and the latest errors (PostgreSQL)"},
    {.path = "/status",
     .methods = GET_HEAD,
     .handler = get_status_page,
     .summary = "the status page: health, traffic, queue, loader, dead letters (HTML)"},
    {.path = "/v1/dead_letters",
     .methods = GET_HEAD,
     .needs_key = true,
     .handler = get_dead_letter_rows,
     .summary = "the dead_letter table's size, by stage (a database query)",
     .answers = dead_letter_answers},
    {.path = "/v1/types",
     .methods = GET_HEAD,
     .handler = get_types,
     .summary = "the event types: each one's fields, table and endpoint"},
    {.path = "/v1/openapi.json",
     .methods = GET_HEAD,
     .handler = get_openapi,
     .summary = "this API as an OpenAPI 3.1 document, built from the route table"},
};

const size_t srv_routes_len = sizeof(srv_routes) / sizeof(srv_routes[0]);

static const struct {
    const char *name;
    unsigned bit;
} method_names[] = {
    {"GET", SRV_GET},
    {"HEAD", SRV_HEAD},
    {"POST", SRV_POST},
};

static unsigned
method_bit(const char *method)
{
    for (size_t i = 0; i < sizeof(method_names) / sizeof(method_names[0]); i++) {
        if (strcmp(method, method_names[i].name) == 0) {
            return method_names[i].bit;
        }
    }
    return 0;
}

/* The Allow header's value for a row: its methods, then OPTIONS. */
static void
allow_text(unsigned methods, char *out, size_t size)
{
    size_t used = 0;

    out[0] = '\0';
    for (size_t i = 0; i < sizeof(method_names) / sizeof(method_names[0]); i++) {
        if ((methods & method_names[i].bit) != 0 && used < size) {
            used += (size_t)snprintf(out + used, size - used, "%s, ", method_names[i].name);
        }
    }
    if (used < size) {
        snprintf(out + used, size - used, "OPTIONS");
    }
}

/*
 * Match uri against a row's path. {type} takes one segment, possibly empty
 * (*type_name, *type_len point into uri); {id} one non-empty segment shorter
 * than SRV_ID_MAX, copied into id.
 */
static bool
path_match(const char *pat, const char *uri, const char **type_name, size_t *type_len,
           char id[SRV_ID_MAX])
{
    while (*pat != '\0') {
        size_t n = strcspn(uri, "/");
        if (strncmp(pat, "{type}", 6) == 0) {
            *type_name = uri;
            *type_len = n;
            pat += 6;
        } else if (strncmp(pat, "{id}", 4) == 0) {
            if (n == 0 || n >= SRV_ID_MAX) {
                return false;
            }
            memcpy(id, uri, n);
            id[n] = '\0';
            pat += 4;
        } else if (*pat == *uri) {
            pat++;
            n = 1;
        } else {
            return false;
        }
        uri += n;
    }
    return *uri == '\0';
}

bool
srv_route_find_method(const char *uri, unsigned method, struct srv_match *m, bool *unknown_type)
{
    struct srv_match first;
    bool first_unknown = false;
    bool any = false;

    memset(&first, 0, sizeof(first));
    memset(m, 0, sizeof(*m));
    *unknown_type = false;
    for (size_t i = 0; i < srv_routes_len; i++) {
        const struct srv_route *rt = &srv_routes[i];
        const char *name = rt->event_type;
        size_t len = name != NULL ? strlen(name) : 0;

        if (!path_match(rt->path, uri, &name, &len, m->id)) {
            continue;
        }
        m->route = rt;
        m->type = NULL;
        *unknown_type = false;
        m->type_name = name;
        m->type_len = len;
        if (name != NULL) {
            m->type = ev_lookup(name, len);
            *unknown_type = m->type == NULL;
        }
        if (method == 0 || (rt->methods & method) != 0) {
            return true;
        }
        if (!any) {
            first = *m;
            first_unknown = *unknown_type;
            any = true;
        }
    }
    *m = first;
    *unknown_type = first_unknown;
    return any;
}

bool
srv_route_find(const char *uri, struct srv_match *m, bool *unknown_type)
{
    return srv_route_find_method(uri, 0, m, unknown_type);
}

/* Every method some row with a path matching uri answers (for Allow). */
static unsigned
path_methods(const char *uri)
{
    char id[SRV_ID_MAX];
    unsigned methods = 0;

    for (size_t i = 0; i < srv_routes_len; i++) {
        const char *name = NULL;
        size_t len = 0;

        if (path_match(srv_routes[i].path, uri, &name, &len, id)) {
            methods |= srv_routes[i].methods;
        }
    }
    return methods;
}

/* 404 for a type the registry does not have: name it, and list the ones it has. */
static void
reply_unknown_type(struct srv_reply *r, const struct srv_match *m)
{
    char msg[EV_ERR_MAX];

    ev_unknown_type(msg, m->type_name, m->type_len);
    srv_reply_json(r, 404, msg);
}

/* Answer c through the table; m->key (the key's limit, held) is set before any handler. */
static void
dispatch_match(struct srv *s, struct mg_connection *c, struct srv_match *m, struct srv_reply *r)
{
    const struct mg_request_info *ri = mg_get_request_info(c);
    bool unknown_type;
    char allow[64];

    const char *uri = ri->local_uri != NULL ? ri->local_uri : "";

    if (!srv_route_find_method(uri, method_bit(ri->request_method), m, &unknown_type)) {
        srv_reply_json(r, 404, "no such endpoint");
        return;
    }
    if (strcmp(ri->request_method, "OPTIONS") == 0) {
        allow_text(path_methods(uri), allow, sizeof(allow));
        r->status = 204;
        srv_reply_header(r, "Allow", allow);
        srv_cors_preflight(s, c, r);
        return;
    }
    srv_cors_apply(s, c, r);
    if ((m->route->methods & method_bit(ri->request_method)) == 0) {
        allow_text(path_methods(uri), allow, sizeof(allow));
        srv_reply_json(r, 405, "method not allowed");
        srv_reply_header(r, "Allow", allow);
        return;
    }
    if (m->route->needs_key && !srv_auth_ok(s, c, &m->key) &&
        !(m->route->key_in_body && !srv_auth_sent(c))) {
        srv_reply_json(r, 401,
                       "missing or wrong API key: send Authorization: Bearer KEY "
                       "or X-API-Key: KEY");
        srv_reply_header(r, "WWW-Authenticate", "Bearer realm=\"datapipe\"");
        return;
    }
    if (m->route->needs_key && m->key == NULL && m->route->key_in_body) {
        /* No header credential: the handler reads the key from the body. */
        m->key_in_body = !srv_auth_key(s, NULL, &m->key);
    }
    if (srv_key_limited(m->key, ri->request_method, r)) {
        return;
    }
    if (unknown_type) {
        reply_unknown_type(r, m);
        return;
    }
    m->route->handler(s, c, m, r);
}

static void
dispatch(struct srv *s, struct mg_connection *c, struct srv_reply *r)
{
    struct srv_match m;

    memset(&m, 0, sizeof(m));
    dispatch_match(s, c, &m, r);
    srv_limit_put(m.key);
}

int
srv_handle_request(struct mg_connection *c, void *cbdata)
{
    struct srv *s = cbdata;
    const struct mg_request_info *ri = mg_get_request_info(c);
    struct srv_reply r;
    int64_t t0 = dp_now_us();
    int64_t dt;

    memset(&r, 0, sizeof(r));
    dispatch(s, c, &r);
    if (r.status == 0) {
        srv_reply_json(&r, 500, "internal error: no answer");
        dp_error("no answer", "method=%s uri=%s", ri->request_method, ri->local_uri);
    }
    if (strstr(r.headers, "Connection: close") != NULL) {
        mg_disable_connection_keep_alive(c);
    }
    if (!r.streamed) {
        srv_reply_send(c, &r);
    }
    dt = dp_now_us() - t0;
    srv_observe(s, r.status, strcmp(ri->request_method, "POST") == 0, dt);
    if (dp_log_enabled(DP_LOG_DEBUG)) {
        dp_debug("request", "method=%s uri=%s status=%d us=%lld remote=%s", ri->request_method,
                 ri->local_uri, r.status, (long long)dt, ri->remote_addr);
    }
    free(r.body);
    return r.status;
}
