/*
 * http.c - the civetweb front end: routing, auth, CORS, and the write path.
 * The dispatcher does what every route shares (method, auth before the body
 * is read, CORS, metrics, access log) once; routes only do their own work.
 * A POST is answered 2xx only after queue_append() made its events durable.
 */
#include "server/srv.h"
#include "etc/err.h"
#include "etc/log.h"

#include <civetweb.h>
#include <dlfcn.h>
#include <jansson.h>
#include <libgen.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_ERRORS_LISTED 100

static const char *
status_text(int status)
{
    switch (status) {
    case 200:
        return "ok";
    case 202:
        return "accepted";
    case 204:
        return "no content";
    case 400:
        return "bad request";
    case 401:
        return "unauthorized";
    case 403:
        return "forbidden";
    case 404:
        return "not found";
    case 405:
        return "method not allowed";
    case 413:
        return "payload too large";
    case 415:
        return "unsupported media type";
    case 503:
        return "service unavailable";
    default:
        return "internal server error";
    }
}

void
srv_reply_header(struct srv_reply *r, const char *name, const char *value)
{
    size_t used = strlen(r->headers);

    snprintf(r->headers + used, sizeof(r->headers) - used, "%s: %s\r\n", name, value);
}

/* A JSON answer {"status_code": N, "status_message": "..."}, plus fields. */
static json_t *
reply_object(int status, const char *message)
{
    json_t *o = json_object();

    json_object_set_new(o, "status_code", json_integer(status));
    json_object_set_new(o, "status_message", json_string(message ? message : status_text(status)));
    return o;
}

static void
reply_set(struct srv_reply *r, int status, json_t *o)
{
    free(r->body);
    r->status = status;
    r->body = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
}

void
srv_reply_json(struct srv_reply *r, int status, const char *message)
{
    reply_set(r, status, reply_object(status, message));
}

/*
 * Write the whole answer (status line, headers, body) with one mg_write: on
 * loopback each write is a packet the client must wake for, so headers and
 * body in separate writes cost a third of the server's time per request.
 */
static void
reply_send(struct mg_connection *c, struct srv_reply *r)
{
    const struct mg_request_info *ri = mg_get_request_info(c);
    size_t blen = r->body != NULL ? strlen(r->body) + 1 : 0; /* the body and its newline */
    char ctype[160] = "";
    char clen[48] = "";
    char head[1024];
    char small[2048];
    char *buf = NULL;
    int hn;

    if (ri->http_version != NULL && strcmp(ri->http_version, "1.0") == 0 &&
        strstr(r->headers, "Connection: close") == NULL) {
        /* An HTTP/1.0 client expects the server to close. */
        srv_reply_header(r, "Connection", "close");
        mg_disable_connection_keep_alive(c);
    }
    if (r->body != NULL) {
        snprintf(ctype, sizeof(ctype), "Content-Type: %s\r\n",
                 r->content_type != NULL ? r->content_type : "application/json");
    }
    if (r->status != 204) {
        snprintf(clen, sizeof(clen), "Content-Length: %zu\r\n", blen);
    }
    hn = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\n%s%sCache-Control: no-store\r\n%s\r\n",
                  r->status, mg_get_response_code_text(c, r->status), ctype, clen, r->headers);
    if (hn < 0 || (size_t)hn >= sizeof(head)) {
        hn = snprintf(head, sizeof(head), "HTTP/1.1 500 Internal Server Error\r\n"
                                          "Content-Length: 0\r\nConnection: close\r\n\r\n");
        mg_disable_connection_keep_alive(c);
        blen = 0;
    }
    /* Most answers fit on the stack; only large bodies (metrics, rows) allocate. */
    buf = (size_t)hn + blen <= sizeof(small) ? small : malloc((size_t)hn + blen);
    if (buf == NULL) {
        mg_disable_connection_keep_alive(c);
        return;
    }
    memcpy(buf, head, (size_t)hn);
    if (blen > 0) {
        memcpy(buf + hn, r->body, blen - 1);
        buf[(size_t)hn + blen - 1] = '\n';
    }
    /* A HEAD answer has the headers of the GET, never a body. */
    mg_write(c, buf, (size_t)hn + (strcmp(ri->request_method, "HEAD") == 0 ? 0 : blen));
    if (buf != small) {
        free(buf);
    }
}

/* ---- auth and CORS ----------------------------------------------------- */

/* Compare in time that depends only on the lengths, never on the content. */
static bool
key_equal(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    unsigned char diff = (unsigned char)(alen != blen);

    for (size_t i = 0; i < blen; i++) {
        diff |= (unsigned char)(b[i] ^ (i < alen ? a[i] : 0));
    }
    return diff == 0;
}

static bool
auth_ok(const struct srv *s, struct mg_connection *c)
{
    const char *h = mg_get_header(c, "Authorization");
    const char *key = NULL;
    bool ok = false;

    if (s->cfg->server_api_keys_len == 0) {
        return true;
    }
    if (h != NULL && strncasecmp(h, "Bearer ", 7) == 0) {
        key = h + 7;
        while (*key == ' ') {
            key++;
        }
    }
    if (key == NULL) {
        key = mg_get_header(c, "X-API-Key");
    }
    if (key == NULL) {
        return false;
    }
    /* Check every key, so timing does not tell which one nearly matched. */
    for (size_t i = 0; i < s->cfg->server_api_keys_len; i++) {
        ok |= key_equal(key, strlen(key), s->cfg->server_api_keys[i]);
    }
    return ok;
}

/* Adds the CORS headers when the Origin is allowed; returns whether it is. */
static bool
cors_apply(const struct srv *s, struct mg_connection *c, struct srv_reply *r)
{
    const char *origin = mg_get_header(c, "Origin");

    if (s->cfg->server_cors_origins_len == 0) {
        return false;
    }
    srv_reply_header(r, "Vary", "Origin");
    if (origin == NULL) {
        return false;
    }
    for (size_t i = 0; i < s->cfg->server_cors_origins_len; i++) {
        if (strcmp(origin, s->cfg->server_cors_origins[i]) == 0) {
            srv_reply_header(r, "Access-Control-Allow-Origin", origin);
            return true;
        }
    }
    return false;
}

/* ---- the write path ---------------------------------------------------- */

static bool
content_type_ok(struct mg_connection *c)
{
    static const char *const allowed[] = {
        "application/json", "application/x-ndjson", "application/jsonl", "text/plain",
        "application/x-www-form-urlencoded", NULL,
    };
    const char *ct = mg_get_header(c, "Content-Type");
    size_t n;

    if (ct == NULL) {
        return true;
    }
    n = strcspn(ct, "; \t");
    for (int i = 0; allowed[i] != NULL; i++) {
        if (strlen(allowed[i]) == n && strncasecmp(ct, allowed[i], n) == 0) {
            return true;
        }
    }
    return false;
}

/* The answer for a body with several events, or with none valid. */
static void
reply_batch(struct srv_reply *r, int status, const struct ev_batch *b, const char *message)
{
    json_t *o = reply_object(status, message);
    json_t *errs = json_array();
    size_t listed = 0;

    json_object_set_new(o, "accepted", json_integer((json_int_t)b->n_valid));
    json_object_set_new(o, "rejected", json_integer((json_int_t)(b->n - b->n_valid)));
    for (size_t i = 0; i < b->n && listed < MAX_ERRORS_LISTED; i++) {
        if (b->items[i].error != NULL) {
            json_t *e = json_object();
            json_object_set_new(e, "index", json_integer((json_int_t)b->items[i].index));
            json_object_set_new(e, "error", json_string(b->items[i].error));
            json_array_append_new(errs, e);
            listed++;
        }
    }
    json_object_set_new(o, "errors", errs);
    reply_set(r, status, o);
}

/* Rejections count as soon as they are known; acceptances only once durable. */
static void
count_events(struct srv *s, const struct ev_batch *b, bool accepted)
{
    for (size_t i = 0; i < b->n; i++) {
        const struct ev_item *it = &b->items[i];
        if (it->error == NULL) {
            if (accepted) {
                atomic_fetch_add(&s->m.accepted[srv_type_index(it->type)], 1);
            }
        } else if (accepted) {
            continue;
        } else if (it->type == NULL) {
            atomic_fetch_add(&s->m.rejected_untyped, 1);
        } else {
            atomic_fetch_add(&s->m.rejected[srv_type_index(it->type)], 1);
        }
    }
}

/*
 * Append the batch's events in one queue_append: valid ones, and (when some are
 * valid) the invalid ones flagged for dead_letter with their error.
 */
static int
append_batch(struct srv *s, const struct ev_batch *b, const struct ev_type *url_type,
             struct queue_event *evs, uint8_t first_uuid[16])
{
    /* A value that never parsed has no type: file it under the URL's, or "unknown". */
    const char *fallback = url_type != NULL ? url_type->name : "unknown";
    int64_t now = dp_now_us();
    size_t n = 0;
    int rc;

    for (size_t i = 0; i < b->n; i++) {
        const struct ev_item *it = &b->items[i];
        struct queue_event *e = &evs[n++];

        memset(e, 0, sizeof(*e));
        ev_uuid7(e->uuid);
        e->received_us = now;
        e->type = it->type != NULL ? it->type->name : fallback;
        e->type_len = strlen(e->type);
        e->json = it->raw;
        e->json_len = it->raw_len;
        if (it->error != NULL) {
            e->flags = QUEUE_F_REJECTED;
            e->error = it->error;
            e->error_len = strlen(it->error);
        }
    }
    rc = queue_append(s->q, evs, n);
    if (rc == 0 && n > 0) {
        memcpy(first_uuid, evs[0].uuid, 16);
    }
    return rc;
}

static void
uuid_text(const uint8_t u[16], char out[37])
{
    static const char hex[] = "0123456789abcdef";
    size_t j = 0;

    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            out[j++] = '-';
        }
        out[j++] = hex[u[i] >> 4];
        out[j++] = hex[u[i] & 15];
    }
    out[j] = '\0';
}

static void
post_events(struct srv *s, struct mg_connection *c, const struct ev_type *type, bool submit,
            struct srv_reply *r)
{
    struct ev_batch b = {0};
    struct queue_event one;
    struct queue_event *evs = &one;
    char *body = NULL;
    size_t len = 0;
    uint8_t uuid[16];
    char id[37];
    int rc;

    if (!content_type_ok(c)) {
        srv_reply_json(r, 415, "Content-Type: use application/json, application/x-ndjson, "
                               "application/jsonl, text/plain or "
                               "application/x-www-form-urlencoded");
        return;
    }
    if (srv_body_read(c, s->cfg->server_max_body_bytes, s->cfg->server_request_timeout_ms, &body,
                      &len, r) != 0) {
        goto out;
    }
    rc = ev_parse_body(body, len, type, &b);
    if (rc == DP_ERR_INVALID) {
        srv_reply_json(r, 400, "empty body: expected one or more JSON events");
        goto out;
    }
    if (rc != 0) {
        srv_reply_json(r, 500, "out of memory parsing the body");
        goto out;
    }
    count_events(s, &b, false);
    if (b.n_valid == 0) {
        if (b.n == 1) {
            srv_reply_json(r, 400, b.items[0].error);
        } else {
            reply_batch(r, 400, &b, "no valid event in the body");
        }
        goto out;
    }
    if (b.n > 1) {
        evs = malloc(b.n * sizeof(*evs));
        if (evs == NULL) {
            srv_reply_json(r, 500, "out of memory");
            goto out;
        }
    }
    rc = append_batch(s, &b, type, evs, uuid);
    if (rc == DP_ERR_FULL) {
        struct queue_stats st;
        if (queue_stats(s->q, &st) == 0) {
            atomic_store(&s->full_events, st.events);
        }
        atomic_store(&s->full_at_us, dp_now_us());
        atomic_store(&s->queue_full, true);
        srv_reply_json(r, 503, "queue full: retry later");
        srv_reply_header(r, "Retry-After", "1");
        goto out;
    }
    if (rc == DP_ERR_INVALID) {
        /* The queue refuses a record larger than half its map. */
        srv_reply_json(r, 413, "an event is too large for the queue (see queue.max_bytes)");
        goto out;
    }
    if (rc != 0) {
        dp_error("append failed", "error=%s events=%zu", dp_strerror(rc), b.n);
        srv_reply_json(r, rc == DP_ERR_CLOSED ? 503 : 500,
                       rc == DP_ERR_CLOSED ? "shutting down: retry later"
                                           : "could not store the events");
        if (rc == DP_ERR_CLOSED) {
            srv_reply_header(r, "Retry-After", "1");
        }
        goto out;
    }
    atomic_store(&s->queue_full, false);
    count_events(s, &b, true);
    if (submit && b.n_valid == b.n) {
        /* /submit answers 204 when every event of the body was accepted. */
        r->status = 204;
    } else if (b.n == 1) {
        /* The common answer, formatted directly: no JSON tree on the hot path. */
        uuid_text(uuid, id);
        r->status = 202;
        if (asprintf(&r->body, "{\"status_code\":202,\"status_message\":\"accepted\","
                               "\"id\":\"%s\"}", id) < 0) {
            r->body = NULL;
            srv_reply_json(r, 500, "out of memory");
        }
    } else {
        reply_batch(r, 202, &b, b.n_valid == b.n ? "accepted" : "partly accepted");
    }
out:
    if (evs != &one) {
        free(evs);
    }
    ev_batch_free(&b);
    free(body);
}

/* ---- routing ----------------------------------------------------------- */

enum route {
    R_NONE,
    R_EVENTS,       /* /v1/events and / */
    R_EVENTS_TYPE,  /* /v1/events/{type} */
    R_EVENT_GET,    /* /v1/events/{type}/{id} */
    R_SUBMIT,       /* /submit */
    R_PRODUCT,      /* /product/{id} */
    R_HEALTHZ,
    R_READYZ,
    R_METRICS,
    R_STATUS,
};

struct match {
    enum route route;
    const struct ev_type *type;
    bool unknown_type;
    char id[256];
};

/* Split "/v1/events/TYPE[/ID]"; TYPE and ID are one path segment each. */
static void
match_events_path(const char *rest, struct match *m)
{
    const char *slash = strchr(rest, '/');
    size_t tlen = slash ? (size_t)(slash - rest) : strlen(rest);

    m->type = ev_lookup(rest, tlen);
    m->unknown_type = m->type == NULL;
    if (slash == NULL) {
        m->route = R_EVENTS_TYPE;
        return;
    }
    if (slash[1] == '\0' || strchr(slash + 1, '/') != NULL || strlen(slash + 1) >= sizeof(m->id)) {
        m->route = R_NONE;
        return;
    }
    snprintf(m->id, sizeof(m->id), "%s", slash + 1);
    m->route = R_EVENT_GET;
}

static void
route_match(const char *uri, struct match *m)
{
    memset(m, 0, sizeof(*m));
    if (strcmp(uri, "/") == 0 || strcmp(uri, "/v1/events") == 0 ||
        strcmp(uri, "/v1/events/") == 0) {
        m->route = R_EVENTS;
    } else if (strncmp(uri, "/v1/events/", 11) == 0) {
        match_events_path(uri + 11, m);
    } else if (strcmp(uri, "/submit") == 0) {
        m->route = R_SUBMIT;
        m->type = ev_lookup("ad_event", 8);
    } else if (strncmp(uri, "/product/", 9) == 0 && uri[9] != '\0' &&
               strchr(uri + 9, '/') == NULL && strlen(uri + 9) < sizeof(m->id)) {
        m->route = R_PRODUCT;
        m->type = ev_lookup("product", 7);
        snprintf(m->id, sizeof(m->id), "%s", uri + 9);
    } else if (strcmp(uri, "/healthz") == 0) {
        m->route = R_HEALTHZ;
    } else if (strcmp(uri, "/readyz") == 0) {
        m->route = R_READYZ;
    } else if (strcmp(uri, "/metrics") == 0) {
        m->route = R_METRICS;
    } else if (strcmp(uri, "/v1/status") == 0) {
        m->route = R_STATUS;
    }
}

static bool
route_is_post(enum route r)
{
    return r == R_EVENTS || r == R_EVENTS_TYPE || r == R_SUBMIT;
}

static bool
route_needs_key(enum route r)
{
    return route_is_post(r) || r == R_EVENT_GET || r == R_PRODUCT;
}

static void
preflight(struct srv *s, struct mg_connection *c, const struct match *m, struct srv_reply *r)
{
    r->status = 204;
    srv_reply_header(r, "Allow", route_is_post(m->route) ? "POST, OPTIONS" : "GET, OPTIONS");
    if (cors_apply(s, c, r)) {
        srv_reply_header(r, "Access-Control-Allow-Methods", "POST, GET, OPTIONS");
        srv_reply_header(r, "Access-Control-Allow-Headers",
                         "Content-Type, Content-Encoding, Authorization, X-API-Key");
        srv_reply_header(r, "Access-Control-Max-Age", "600");
    }
}

static void
dispatch(struct srv *s, struct mg_connection *c, const char *method, struct srv_reply *r)
{
    const struct mg_request_info *ri = mg_get_request_info(c);
    struct match m;
    bool is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    bool is_post = strcmp(method, "POST") == 0;

    route_match(ri->local_uri != NULL ? ri->local_uri : "", &m);
    if (m.route == R_NONE) {
        srv_reply_json(r, 404, "no such endpoint");
        return;
    }
    if (strcmp(method, "OPTIONS") == 0) {
        preflight(s, c, &m, r);
        return;
    }
    cors_apply(s, c, r);
    if (route_is_post(m.route) ? !is_post : !is_get) {
        srv_reply_json(r, 405, "method not allowed");
        srv_reply_header(r, "Allow",
                         route_is_post(m.route) ? "POST, OPTIONS" : "GET, HEAD, OPTIONS");
        return;
    }
    if (route_needs_key(m.route) && !auth_ok(s, c)) {
        srv_reply_json(r, 401, "missing or wrong API key: send Authorization: Bearer KEY "
                               "or X-API-Key: KEY");
        srv_reply_header(r, "WWW-Authenticate", "Bearer realm=\"datapipe\"");
        return;
    }
    if (m.unknown_type) {
        srv_reply_json(r, 404, "unknown event type");
        return;
    }
    switch (m.route) {
    case R_EVENTS:
    case R_EVENTS_TYPE:
    case R_SUBMIT:
        post_events(s, c, m.type, m.route == R_SUBMIT, r);
        break;
    case R_EVENT_GET:
    case R_PRODUCT:
        srv_get_event(s, m.type, m.id, r);
        break;
    case R_HEALTHZ:
        srv_get_healthz(s, r);
        break;
    case R_READYZ:
        srv_get_readyz(s, r);
        break;
    case R_METRICS:
        srv_get_metrics(s, r);
        break;
    default:
        srv_get_status(s, r);
        break;
    }
}

static int
handle(struct mg_connection *c, void *cbdata)
{
    struct srv *s = cbdata;
    const struct mg_request_info *ri = mg_get_request_info(c);
    struct srv_reply r;
    int64_t t0 = dp_now_us();
    int64_t dt;

    memset(&r, 0, sizeof(r));
    dispatch(s, c, ri->request_method, &r);
    if (r.status == 0) {
        srv_reply_json(&r, 500, "internal error: no answer");
        dp_error("no answer", "method=%s uri=%s", ri->request_method, ri->local_uri);
    }
    if (strstr(r.headers, "Connection: close") != NULL) {
        mg_disable_connection_keep_alive(c);
    }
    reply_send(c, &r);
    dt = dp_now_us() - t0;
    srv_observe(s, r.status, dt);
    if (dp_log_enabled(DP_LOG_DEBUG)) {
        dp_debug("request", "method=%s uri=%s status=%d us=%lld remote=%s", ri->request_method,
                 ri->local_uri, r.status, (long long)dt, ri->remote_addr);
    }
    free(r.body);
    return r.status;
}

static int
log_message(const struct mg_connection *c, const char *message)
{
    (void)c;
    dp_warn("civetweb", "message=%s", message);
    return 1;
}

static void
connection_closed(const struct mg_connection *c)
{
    (void)c;
}

static void
exit_thread(const struct mg_context *ctx, int thread_type, void *thread_pointer)
{
    (void)ctx;
    (void)thread_type;
    (void)thread_pointer;
    srv_read_thread_exit();
}

/*
 * Load the OpenSSL 3 shim (server/compat/openssl3.c) next to the binary, or in
 * ../lib/datapipe when installed, before civetweb looks for "libssl.so".
 */
static int
tls_compat_load(void)
{
    char exe[4096];
    char path[4200];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    const char *dir;

    if (n <= 0) {
        return DP_ERR_IO;
    }
    exe[n] = '\0';
    dir = dirname(exe);
    snprintf(path, sizeof(path), "%s/datapipe-tls-compat.so", dir);
    if (access(path, R_OK) != 0) {
        snprintf(path, sizeof(path), "%s/../lib/datapipe/datapipe-tls-compat.so", dir);
    }
    if (dlopen(path, RTLD_NOW | RTLD_GLOBAL) == NULL) {
        dp_error("cannot load the TLS shim", "path=%s error=%s", path, dlerror());
        return DP_ERR_IO;
    }
    return 0;
}

int
srv_http_start(struct srv *s)
{
    struct mg_callbacks cb;
    char threads[16];
    char timeout[16];
    char keepalive[16];
    const char *opts[32];
    int n = 0;

    memset(&cb, 0, sizeof(cb));
    cb.log_message = log_message;
    cb.connection_close = connection_closed;
    cb.exit_thread = exit_thread;
    snprintf(threads, sizeof(threads), "%d", s->cfg->server_threads);
    snprintf(timeout, sizeof(timeout), "%d", s->cfg->server_request_timeout_ms);
    /* An idle keep-alive connection holds a worker thread; never longer than
     * the request timeout, and at most 5 s, so idle clients cannot starve new ones. */
    snprintf(keepalive, sizeof(keepalive), "%d",
             s->cfg->server_request_timeout_ms < 5000 ? s->cfg->server_request_timeout_ms : 5000);
    opts[n++] = "listening_ports";
    opts[n++] = s->cfg->server_listen;
    opts[n++] = "num_threads";
    opts[n++] = threads;
    opts[n++] = "request_timeout_ms";
    opts[n++] = timeout;
    opts[n++] = "enable_keep_alive";
    opts[n++] = "yes";
    opts[n++] = "keep_alive_timeout_ms";
    opts[n++] = keepalive;
    opts[n++] = "tcp_nodelay";
    opts[n++] = "1";
    opts[n++] = "connection_queue";
    opts[n++] = "1024";
    opts[n++] = "listen_backlog";
    opts[n++] = "1024";
    opts[n++] = "access_control_allow_origin";
    opts[n++] = "";
    opts[n++] = "enable_directory_listing";
    opts[n++] = "no";
    if (s->cfg->server_tls_certificate != NULL) {
        opts[n++] = "ssl_certificate";
        opts[n++] = s->cfg->server_tls_certificate;
    }
    opts[n] = NULL;
    if (s->cfg->server_tls_certificate != NULL && tls_compat_load() != 0) {
        return DP_ERR_IO;
    }
    /* TLS is set up by mg_start, which reports a bad certificate instead of crashing. */
    mg_init_library(0);
    s->ctx = mg_start(&cb, s, opts);
    if (s->ctx == NULL) {
        dp_error("cannot start the HTTP server", "listen=%s", s->cfg->server_listen);
        return DP_ERR_IO;
    }
    mg_set_request_handler(s->ctx, "/", handle, s);
    return 0;
}

void
srv_http_stop(struct srv *s)
{
    if (s->ctx != NULL) {
        mg_stop(s->ctx);
        s->ctx = NULL;
    }
    mg_exit_library();
}
