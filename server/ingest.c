/*
 * ingest.c - the POST path: check the Content-Type, read the body, split and
 * validate it through the registry, append every event in one queue_append,
 * and answer. A 2xx is sent only after queue_append() returned 0; an invalid
 * event is stored for dead_letter only beside at least one valid one.
 */
#include "server/srv.h"
#include "etc/err.h"
#include "etc/log.h"

#include <civetweb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_ERRORS_LISTED 100

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
    json_t *o = srv_reply_object(status, message);
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
    srv_reply_set(r, status, o);
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
    size_t n = 0;
    int rc;

    for (size_t i = 0; i < b->n; i++) {
        const struct ev_item *it = &b->items[i];
        struct queue_event *e = &evs[n++];

        memset(e, 0, sizeof(*e));
        ev_uuid7(e->uuid);
        /* 0: the queue stamps it at its commit (what /v1/events/{id} and the watermark
         * rely on, see queue_append). */
        e->received_us = 0;
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
post_events(struct srv *s, struct mg_connection *c, const struct ev_type *type, bool submit,
            struct srv_reply *r)
{
    struct ev_batch b = {0};
    struct queue_event one;
    struct queue_event *evs = &one;
    char *body = NULL;
    size_t len = 0;
    uint8_t uuid[16];
    char id[EV_UUID_TEXT];
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
    if (srv_too_large(r, (int64_t)len, s->cfg->server_max_body_bytes, rc)) {
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
    srv_tap_publish(s, evs, b.n);
    if (submit && b.n_valid == b.n) {
        /* /submit answers 204 when every event of the body was accepted. */
        r->status = 204;
    } else if (b.n == 1) {
        /* The common answer, formatted directly: no JSON tree on the hot path. */
        ev_uuid_format(uuid, id);
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

void
srv_post_events(struct srv *s, struct mg_connection *c, const struct srv_match *m,
                struct srv_reply *r)
{
    post_events(s, c, m->type, false, r);
}

void
srv_post_submit(struct srv *s, struct mg_connection *c, const struct srv_match *m,
                struct srv_reply *r)
{
    post_events(s, c, m->type, true, r);
}
