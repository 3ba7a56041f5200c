/*
 * ingest.c - the POST path: check the Content-Type, read the body, split and validate it
 * through the registry (or take it as CloudEvents, events/cloudevents.c), store everything
 * of the body in one queue call (conflicts filed with it: never a second append, see
 * server/srv.h), and answer. A 2xx is sent only after that call returned 0; an invalid event
 * is stored for dead_letter only beside at least one valid one. A keyed event the queue
 * already holds is answered as the first time, never appended again.
 */
#include "etc/err.h"
#include "etc/log.h"
#include "etc/plant.h"
#include "server/srv.h"

#include <civetweb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_ERRORS_LISTED 100
#define KEY_HEADER "Idempotency-Key"
#define CONFLICT_TEXT_MAX (EV_KEY_MAX + 128)
/* What a batch answer may take per event while it is built (its id in "ids" as a JSON string,
 * an "errors" entry), charged before the append: after it the answer cannot be refused. */
#define ANSWER_BYTES_PER_EVENT 256

/* How a POST body holds its events (docs/api.md for the CloudEvents modes). */
enum body_mode {
    BODY_EVENTS,        /* JSON events (docs/api.md) */
    BODY_CE_STRUCTURED, /* application/cloudevents+json: one CloudEvent */
    BODY_CE_BATCH,      /* application/cloudevents-batch+json: an array of them */
    BODY_CE_BINARY,     /* ce-* headers, the body is the event */
    BODY_UNSUPPORTED,   /* a Content-Type we do not take: 415 */
};

/* Whether the Content-Type's media type (parameters aside) is want. */
static bool
media_type_is(const char *ct, const char *want)
{
    size_t n = strcspn(ct, "; \t");

    return strlen(want) == n && strncasecmp(ct, want, n) == 0;
}

static bool
content_type_ok(struct mg_connection *c)
{
    static const char *const allowed[] = {
        "application/json",
        "application/x-ndjson",
        "application/jsonl",
        "text/plain",
        "application/x-www-form-urlencoded",
        NULL,
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

/*
 * The body's mode. CloudEvents are taken where events name their own type (POST
 * /v1/events and POST /, type NULL, not /submit): there the CloudEvent's type does.
 */
static enum body_mode
body_mode(struct mg_connection *c, const struct ev_type *type, bool submit)
{
    const char *ct = mg_get_header(c, "Content-Type");
    bool ce_route = type == NULL && !submit;

    if (ct != NULL && media_type_is(ct, "application/cloudevents+json")) {
        return ce_route ? BODY_CE_STRUCTURED : BODY_UNSUPPORTED;
    }
    if (ct != NULL && media_type_is(ct, "application/cloudevents-batch+json")) {
        return ce_route ? BODY_CE_BATCH : BODY_UNSUPPORTED;
    }
    if (!content_type_ok(c)) {
        return BODY_UNSUPPORTED;
    }
    if (ce_route && mg_get_header(c, "ce-specversion") != NULL) {
        return BODY_CE_BINARY;
    }
    return BODY_EVENTS;
}

/*
 * A ce-* header's value, percent-decoded (HTTP binding 3.1.3.2) into buf; NULL if absent.
 * *nul gets the offset of a NUL the decoding produced (a C string would end there, and
 * "e%00one" would be "e"), or -1.
 */
static const char *
ce_header(struct mg_connection *c, const char *name, char *buf, size_t len, int *nul)
{
    const char *v = mg_get_header(c, name);
    const char *z;
    int n;

    *nul = -1;
    if (v == NULL) {
        return NULL;
    }
    n = mg_url_decode(v, (int)strlen(v), buf, (int)len, 0);
    /* Too long to decode: keep the raw text, which then fails the checks by its length. */
    if (n < 0) {
        return v;
    }
    z = memchr(buf, '\0', (size_t)n);
    if (z != NULL) {
        *nul = (int)(z - buf);
    }
    return buf;
}

/*
 * The binary mode's attributes from the ce-* headers into a. Returns 0, or DP_ERR_INVALID
 * with the message in err: an attribute holding a NUL, named as ce_attrs_check names a
 * control character, in the order it checks them.
 */
static int
ce_binary_attrs(struct mg_connection *c, struct ev_ce_attrs *a, char *id, char *source,
                char *cetype, char *spec, size_t len, char err[EV_ERR_MAX])
{
    int nul[4];

    a->specversion = ce_header(c, "ce-specversion", spec, len, &nul[0]);
    a->id = ce_header(c, "ce-id", id, len, &nul[1]);
    a->source = ce_header(c, "ce-source", source, len, &nul[2]);
    a->type = ce_header(c, "ce-type", cetype, len, &nul[3]);
    for (int i = 0; i < 4; i++) {
        static const char *const names[] = {"specversion", "id", "source", "type"};

        if (nul[i] >= 0) {
            snprintf(err, EV_ERR_MAX, "%s: control character at byte %d", names[i], nul[i]);
            return DP_ERR_INVALID;
        }
    }
    return 0;
}

/*
 * Split body into b as its mode says. Returns 0, DP_ERR_INVALID (r filled with 400),
 * DP_ERR_BUSY (the budget refused the batch's memory), DP_ERR_NOMEM.
 */
static int
parse_by_mode(struct mg_connection *c, enum body_mode mode, const char *body, size_t len,
              const struct ev_type *type, struct ev_batch *b, struct srv_reply *r)
{
    char id[1024];
    char source[1024];
    char cetype[1024];
    char spec[1024];
    char err[EV_ERR_MAX];
    struct ev_ce_attrs a;
    int rc;

    switch (mode) {
    case BODY_CE_STRUCTURED:
    case BODY_CE_BATCH:
        rc = ev_parse_cloudevents(body, len, mode == BODY_CE_BATCH, b);
        if (rc == DP_ERR_INVALID) {
            srv_reply_json(r, 400,
                           mode == BODY_CE_BATCH
                               ? "cloudevents batch: expected a JSON array of CloudEvents"
                               : "cloudevent: expected one CloudEvent object");
        }
        return rc;
    case BODY_CE_BINARY:
        rc = ce_binary_attrs(c, &a, id, source, cetype, spec, sizeof(id), err);
        if (rc == 0) {
            rc = ev_parse_cloudevent_binary(body, len, &a, b, err);
        }
        if (rc == DP_ERR_INVALID) {
            srv_reply_json(r, 400, err);
        }
        return rc;
    default:
        rc = ev_parse_body(body, len, type, b);
        if (rc == DP_ERR_INVALID) {
            srv_reply_json(r, 400, "empty body: expected one or more JSON events");
        }
        return rc;
    }
}

/* Whether item i of a body was refused for its key: the queue holds the key with other bytes. */
bool
srv_is_conflict(const struct ev_item *it, const struct queue_event *ev)
{
    return it->error == NULL && ev != NULL &&
           (ev->dedup == QUEUE_DEDUP_CONFLICT || ev->dedup == QUEUE_DEDUP_FILED);
}

/* The text of a key conflict, for the 409 and for a batch's errors and dead_letter. */
size_t
srv_conflict_text(char *buf, size_t len, const char *key, size_t key_len, const uint8_t orig[16])
{
    char id[EV_UUID_TEXT];
    int n;

    ev_uuid_format(orig, id);
    n = snprintf(buf, len, "%s: \"%.*s\" was already used for event %s with different content",
                 EV_KEY_FIELD, (int)key_len, key, id);
    return n < 0 ? 0 : (size_t)n < len ? (size_t)n : len - 1;
}

/* queue_conflict_fn: a batch's conflict is filed for dead_letter with the text of its error. */
static size_t
conflict_file(void *arg, const struct queue_event *ev, char *buf, size_t len)
{
    (void)arg;
    return srv_conflict_text(buf, len, ev->key, ev->key_len, ev->orig_uuid);
}

/*
 * The answer for a body with several events, or with none valid. accepted counts repeats
 * too; duplicates says how many of them were already in the queue; ids holds each input
 * event's id in input order (a repeat's first id; null for a rejected event or a conflict).
 * evs: the append's results, or NULL when nothing was appended.
 */
static void
reply_batch(struct srv_reply *r, int status, const struct ev_batch *b,
            const struct queue_event *evs, size_t duplicates, const char *message)
{
    json_t *o = srv_reply_object(status, message);
    json_t *ids = json_array();
    json_t *errs = json_array();
    char text[CONFLICT_TEXT_MAX];
    char id[EV_UUID_TEXT];
    size_t listed = 0;

    json_object_set_new(o, "accepted", json_integer((json_int_t)b->n_valid));
    json_object_set_new(o, "rejected", json_integer((json_int_t)(b->n - b->n_valid)));
    json_object_set_new(o, "duplicates", json_integer((json_int_t)duplicates));
    for (size_t i = 0; i < b->n; i++) {
        const struct ev_item *it = &b->items[i];
        const struct queue_event *ev = evs != NULL ? &evs[i] : NULL;
        const char *error = it->error;

        if (srv_is_conflict(it, ev)) {
            srv_conflict_text(text, sizeof(text), it->key, it->key_len, ev->orig_uuid);
            error = text;
        }
        if (error == NULL && ev != NULL) {
            ev_uuid_format(ev->dedup == QUEUE_DEDUP_REPEAT ? ev->orig_uuid : ev->uuid, id);
            json_array_append_new(ids, json_string(id));
        } else {
            json_array_append_new(ids, json_null());
        }
        if (error != NULL && listed < MAX_ERRORS_LISTED) {
            json_t *e = json_object();
            json_object_set_new(e, "index", json_integer((json_int_t)it->index));
            json_object_set_new(e, "error", json_string(error));
            json_array_append_new(errs, e);
            listed++;
        }
    }
    json_object_set_new(o, "ids", ids);
    json_object_set_new(o, "errors", errs);
    srv_reply_set(r, status, o);
}

/* Count item it as rejected. */
static void
count_rejected(struct srv *s, const struct ev_item *it)
{
    if (it->type == NULL) {
        atomic_fetch_add(&s->m.rejected_untyped, 1);
    } else {
        atomic_fetch_add(&s->m.rejected[srv_type_index(it->type)], 1);
    }
}

/*
 * Rejections count as soon as they are known (evs NULL); acceptances only once durable,
 * from the append's results: a repeat is counted as a duplicate, not accepted again, and a
 * key conflict as rejected.
 */
void
srv_count_events(struct srv *s, const struct ev_batch *b, const struct queue_event *evs)
{
    for (size_t i = 0; i < b->n; i++) {
        const struct ev_item *it = &b->items[i];

        if (evs == NULL) {
            if (it->error != NULL) {
                count_rejected(s, it);
            }
        } else if (evs[i].dedup == QUEUE_DEDUP_FOLLOWED) {
            continue; /* a derived row left out with its message, which is counted */
        } else if (it->error == NULL && evs[i].dedup == QUEUE_DEDUP_REPEAT) {
            atomic_fetch_add(&s->m.duplicates, 1);
        } else if (srv_is_conflict(it, &evs[i])) {
            /* A 409, or filed for dead_letter: not accepted. */
            count_rejected(s, it);
        } else if (it->error == NULL) {
            atomic_fetch_add(&s->m.accepted[srv_type_index(it->type)], 1);
        }
    }
}

/*
 * Append the batch's events in one queue transaction: valid ones, and (when some are
 * valid) the invalid ones flagged for dead_letter with their error; in a body of several
 * events, a valid one whose key conflicts is filed for dead_letter in that same transaction
 * (queue_append_filing), so a failed append stored nothing of the body and a 503's retry
 * duplicates nothing. A single event's conflict is answered 409 and not stored.
 */
int
srv_append_batch(struct srv *s, const struct ev_batch *b, const struct ev_type *url_type,
                 uint16_t answer, const struct srv_limit *key, struct queue_event *evs)
{
    /* A value that never parsed has no type: file it under the URL's, or "unknown". */
    const char *fallback = url_type != NULL ? url_type->name : "unknown";
    size_t leaders = 0;
    size_t n = 0;

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
        if (key != NULL) {
            e->source = key->name;
            e->source_len = strlen(key->name);
        }
        if (it->key != NULL) {
            e->key = it->key;
            e->key_len = it->key_len;
            memcpy(e->digest, it->digest, sizeof(e->digest));
            e->answer = answer;
        }
        e->follows = (uint32_t)it->follows;
        leaders += it->follows == 0;
        if (it->error != NULL) {
            e->flags = QUEUE_F_REJECTED;
            e->error = it->error;
            e->error_len = strlen(it->error);
        }
    }
    if (DP_PLANTED("body_split_append") && n > 1) {
        /* Planted (etc/plant.h): the body's first event stored in a transaction of its
         * own, so a failure of the rest's answers 503 with part of the body stored. */
        int rc = queue_append_filing(s->q, evs, 1, conflict_file, NULL);

        return rc != 0 ? rc : queue_append_filing(s->q, evs + 1, n - 1, conflict_file, NULL);
    }
    /* Derived rows are not events of their own: one message and its rows is "one event". */
    return queue_append_filing(s->q, evs, n, leaders > 1 ? conflict_file : NULL, NULL);
}

/* A failed append's answer: 503 (full, closing), 413 (record too large), 500. */
void
srv_reply_append_error(struct srv *s, struct srv_reply *r, int rc, size_t body_len, size_t n)
{
    if (rc == DP_ERR_FULL) {
        struct queue_stats st;
        if (queue_stats(s->q, &st) == 0) {
            atomic_store(&s->full_events, st.events);
        }
        atomic_store(&s->full_at_us, dp_now_us());
        atomic_store(&s->queue_full, true);
        srv_reply_json(r, 503, "queue full: retry later");
        srv_reply_header(r, "Retry-After", "1");
        return;
    }
    if (srv_too_large(r, (int64_t)body_len, s->cfg->server_max_body_bytes, rc)) {
        return;
    }
    dp_error("append failed", "error=%s events=%zu", dp_strerror(rc), n);
    srv_reply_json(r, rc == DP_ERR_CLOSED ? 503 : 500,
                   rc == DP_ERR_CLOSED ? "shutting down: retry later"
                                       : "could not store the events");
    if (rc == DP_ERR_CLOSED) {
        srv_reply_header(r, "Retry-After", "1");
    }
}

/*
 * Apply the Idempotency-Key header, if any, to the body's one event. Its structured-field
 * form ("...", RFC 8941 sf-string) is accepted: the double quotes are not part of the key.
 * An invalid key rejects the event (the caller answers 400 with its text).
 * Returns 0, DP_ERR_INVALID (r filled with 400: a body of several events), DP_ERR_BUSY (the
 * budget refused the key's memory), DP_ERR_NOMEM.
 */
static int
apply_key_header(struct mg_connection *c, struct ev_batch *b, struct srv_reply *r)
{
    const char *h = mg_get_header(c, KEY_HEADER);
    char msg[160];
    size_t n;
    int rc;

    /* A body of no event has nothing to key: it is answered 400 as without the header.
     * Planted (etc/plant.h, with events/key.c): the key given to an event that is not. */
    if (h == NULL || (b->n == 0 && !DP_PLANTED("empty_key_header"))) {
        return 0;
    }
    if (b->n > 1) {
        snprintf(msg, sizeof(msg),
                 "%s: the header keys a body of one event; this one holds "
                 "%zu (give each event an idempotency_key field)",
                 KEY_HEADER, b->n);
        srv_reply_json(r, 400, msg);
        return DP_ERR_INVALID;
    }
    n = strlen(h);
    if (n >= 2 && h[0] == '"' && h[n - 1] == '"') {
        h++;
        n -= 2;
    }
    rc = ev_batch_set_key(b, 0, h, n, KEY_HEADER);
    return rc == DP_ERR_NOMEM || rc == DP_ERR_BUSY ? rc : 0;
}

/* The answer for a body of one event that was appended, repeated, or conflicts. */
static void
reply_one(struct srv_reply *r, const struct ev_batch *b, const struct queue_event *ev, bool submit)
{
    char text[CONFLICT_TEXT_MAX];
    char id[EV_UUID_TEXT];
    json_t *o;

    if (ev->dedup == QUEUE_DEDUP_CONFLICT) {
        srv_conflict_text(text, sizeof(text), b->items[0].key, b->items[0].key_len, ev->orig_uuid);
        ev_uuid_format(ev->orig_uuid, id);
        o = srv_reply_object(409, text);
        json_object_set_new(o, "id", json_string(id));
        srv_reply_set(r, 409, o);
        return;
    }
    if (ev->dedup == QUEUE_DEDUP_REPEAT) {
        /* As the first time: its status (204 has no body), its id. */
        if (ev->orig_answer == 204) {
            r->status = 204;
            return;
        }
        /* Planted (etc/plant.h): a repeat answered with its own new id, not the first. */
        ev_uuid_format(DP_PLANTED("dup_fresh_id") ? ev->uuid : ev->orig_uuid, id);
        o = srv_reply_object(202, "accepted");
        json_object_set_new(o, "id", json_string(id));
        json_object_set_new(o, "duplicate", json_true());
        srv_reply_set(r, 202, o);
        return;
    }
    if (submit) {
        r->status = 204;
        return;
    }
    /* The common answer, formatted directly: no JSON tree on the hot path. */
    ev_uuid_format(ev->uuid, id);
    r->status = 202;
    if (asprintf(&r->body,
                 "{\"status_code\":202,\"status_message\":\"accepted\","
                 "\"id\":\"%s\"}",
                 id) < 0) {
        r->body = NULL;
        srv_reply_json(r, 500, "out of memory");
    }
}

/* ev_batch's budget: what the batch allocates is charged to the request (a struct srv_charge). */
static int
batch_charge(void *arg, size_t bytes)
{
    return srv_charge_add(arg, (int64_t)bytes);
}

static void
post_events(struct srv *s, struct mg_connection *c, const struct ev_type *type, bool submit,
            struct srv_limit *key, struct srv_reply *r)
{
    struct ev_batch b = {0};
    struct queue_event one;
    struct queue_event *evs = &one;
    enum body_mode mode = body_mode(c, type, submit);
    struct srv_charge ch = {.budget = &s->budget, .bytes = 0};
    char *body = NULL;
    char msg[160];
    size_t len = 0;
    size_t dups = 0;
    int rc;

    if (mode == BODY_UNSUPPORTED) {
        srv_reply_json(r, 415,
                       type == NULL && !submit
                           ? "Content-Type: use application/json, application/x-ndjson, "
                             "application/jsonl, text/plain, "
                             "application/x-www-form-urlencoded, "
                             "application/cloudevents+json or "
                             "application/cloudevents-batch+json"
                           : "Content-Type: use application/json, application/x-ndjson, "
                             "application/jsonl, text/plain or "
                             "application/x-www-form-urlencoded");
        return;
    }
    if (srv_body_read(s, c, &ch, &body, &len, r) != 0) {
        goto out;
    }
    b.max_events = (size_t)s->cfg->server_max_events_per_body;
    b.charge = batch_charge;
    b.charge_arg = &ch;
    rc = parse_by_mode(c, mode, body, len, type, &b, r);
    if (rc == DP_ERR_INVALID) {
        goto out;
    }
    if (rc == DP_ERR_FULL && b.too_many) {
        snprintf(msg, sizeof(msg),
                 "more than server.max_events_per_body (%lld) events in one "
                 "body; nothing was stored",
                 (long long)s->cfg->server_max_events_per_body);
        srv_reply_json(r, 413, msg);
        goto out;
    }
    /*
     * The parsed events were charged as they were allocated (b.charge); their queue records
     * and the answer count against the budget too, before they are made.
     */
    if (rc == 0 && b.n > 1 &&
        srv_charge_add(
            &ch, (int64_t)(b.n * (sizeof(struct queue_event) + ANSWER_BYTES_PER_EVENT))) != 0) {
        rc = DP_ERR_BUSY;
    }
    if (rc == 0) {
        rc = apply_key_header(c, &b, r);
    }
    if (rc == DP_ERR_BUSY) {
        srv_reply_busy(r);
        goto out;
    }
    if (rc != 0) {
        if (rc != DP_ERR_INVALID) {
            srv_reply_json(r, 500, "out of memory parsing the body");
        }
        goto out;
    }
    srv_count_events(s, &b, NULL);
    srv_limit_charge(key, b.n, dp_now_us());
    if (b.n_valid == 0) {
        if (b.n == 1) {
            srv_reply_json(r, 400, b.items[0].error);
        } else {
            reply_batch(r, 400, &b, NULL, 0, "no valid event in the body");
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
    rc = srv_append_batch(s, &b, type, submit && b.n_valid == b.n ? 204 : 202, key, evs);
    if (rc != 0) {
        srv_reply_append_error(s, r, rc, len, b.n);
        goto out;
    }
    atomic_store(&s->queue_full, false);
    srv_count_events(s, &b, evs);
    srv_tap_publish(s, evs, b.n);
    if (b.n == 1) {
        reply_one(r, &b, evs, submit);
        goto out;
    }
    for (size_t i = 0; i < b.n; i++) {
        dups += b.items[i].error == NULL && evs[i].dedup == QUEUE_DEDUP_REPEAT;
        b.n_valid -= srv_is_conflict(&b.items[i], &evs[i]);
    }
    if (b.n_valid == 0) {
        /* Every valid event conflicted with its key's first event. */
        reply_batch(r, 409, &b, evs, 0, "no event accepted: idempotency_key conflicts");
    } else if (submit && b.n_valid == b.n) {
        /* /submit answers 204 when every event of the body was accepted. */
        r->status = 204;
    } else {
        reply_batch(r, 202, &b, evs, dups, b.n_valid == b.n ? "accepted" : "partly accepted");
    }
out:
    if (evs != &one) {
        free(evs);
    }
    ev_batch_free(&b);
    free(body);
    srv_charge_release(&ch);
}

void
srv_post_events(struct srv *s, struct mg_connection *c, const struct srv_match *m,
                struct srv_reply *r)
{
    post_events(s, c, m->type, false, m->key, r);
}

void
srv_post_submit(struct srv *s, struct mg_connection *c, const struct srv_match *m,
                struct srv_reply *r)
{
    post_events(s, c, m->type, true, m->key, r);
}
