/*
 * segment.c - the Segment tracking API (POST /v1/batch, /v1/track, ...) as its SDKs speak
 * it: the write key in HTTP Basic or in the body, batch-level context, integrations and
 * sentAt merged into each message, messageId as the idempotency key scoped by the write
 * key's name, Segment's size limits, a 200 with a JSON body once stored. Each message goes
 * to its call's type (events/segment.c); it must never answer 2xx before the queue commit.
 */
#include "etc/err.h"
#include "etc/log.h"
#include "server/srv.h"

#include <civetweb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ERRORS_LISTED 100
/* Per message, charged before the append: its queue record and its share of the answer. */
#define ANSWER_BYTES_PER_MESSAGE 256

/* A call of the API and the type (table) its messages go to. */
static const struct {
    const char *call;
    const char *type;
} calls[] = {
    {"identify", "identifies"}, {"track", "tracks"}, {"page", "pages"},
    {"screen", "screens"},      {"group", "groups"}, {"alias", "aliases"},
};

/* What one request holds while it is handled; freed by request_free. */
struct seg_request {
    struct ev_batch b;
    char **raws; /* normalised messages, the items' bytes: n_raws of them */
    size_t n_raws;
    size_t *main_item; /* per message: its item in b (the table row's) */
    size_t n_msgs;
    struct queue_event *evs;
};

static void
request_free(struct seg_request *q)
{
    for (size_t i = 0; i < q->n_raws; i++) {
        free(q->raws[i]);
    }
    free(q->raws);
    free(q->main_item);
    free(q->evs);
    ev_batch_free(&q->b);
}

/* The type of a call's name, or NULL. */
static const struct ev_type *
call_type(const char *call)
{
    for (size_t i = 0; call != NULL && i < sizeof(calls) / sizeof(calls[0]); i++) {
        if (strcmp(calls[i].call, call) == 0) {
            return ev_lookup(calls[i].type, strlen(calls[i].type));
        }
    }
    return NULL;
}

/* dst's members gain those of src it does not have (the message's own win). */
static int
merge_defaults(json_t *msg, const char *name, const json_t *batch_level)
{
    json_t *own = json_object_get(msg, name);
    json_t *merged;

    if (!json_is_object(batch_level)) {
        return 0;
    }
    if (own != NULL && !json_is_object(own)) {
        return 0; /* the type's check names it */
    }
    merged = json_copy((json_t *)batch_level);
    if (merged == NULL || (own != NULL && json_object_update(merged, own) != 0)) {
        json_decref(merged);
        return DP_ERR_NOMEM;
    }
    return json_object_set_new(msg, name, merged) == 0 ? 0 : DP_ERR_NOMEM;
}

/* Keep raw (malloc'd) with the request, so the item's view outlives the batch. */
static int
keep_raw(struct seg_request *q, char *raw)
{
    q->raws[q->n_raws++] = raw;
    return 0;
}

/*
 * Why a message cannot be taken before its type sees it, into err; "" when it can. The
 * type of the message (t), its messageId (*mid, NULL when it has none).
 */
static void
message_problem(const json_t *msg, const char *call, const struct ev_type **t, const char **mid,
                size_t *mid_len, char err[EV_ERR_MAX])
{
    const json_t *v;

    err[0] = '\0';
    *t = NULL;
    *mid = NULL;
    *mid_len = 0;
    if (!json_is_object(msg)) {
        snprintf(err, EV_ERR_MAX, "message: expected an object, got %s",
                 json_is_array(msg)    ? "array"
                 : json_is_string(msg) ? "string"
                                       : "a scalar");
        return;
    }
    v = json_object_get(msg, "type");
    if (call == NULL) {
        if (v == NULL) {
            snprintf(err, EV_ERR_MAX, "type: required field missing");
            return;
        }
        *t = json_is_string(v) ? call_type(json_string_value(v)) : NULL;
        if (*t == NULL) {
            snprintf(err, EV_ERR_MAX,
                     "type: expected one of identify, track, page, screen, "
                     "group, alias");
            return;
        }
    } else {
        *t = call_type(call);
        if (v != NULL && !(json_is_string(v) && strcmp(json_string_value(v), call) == 0)) {
            snprintf(err, EV_ERR_MAX, "type: expected \"%s\" on /v1/%s", call, call);
            return;
        }
    }
    v = json_object_get(msg, "messageId");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_string(v) || json_string_length(v) == 0) {
            snprintf(err, EV_ERR_MAX, "messageId: expected a non-empty string");
            return;
        }
        if (json_string_length(v) > EV_KEY_MAX) {
            snprintf(err, EV_ERR_MAX, "messageId: %zu bytes, longer than %d", json_string_length(v),
                     EV_KEY_MAX);
            return;
        }
        *mid = json_string_value(v);
        *mid_len = json_string_length(v);
    }
}

/*
 * The declared type a track's event names, by its exact name or its snake_case form
 * ("Order Completed" -> order_completed), or NULL. Built-in types are not matched: their
 * events come with fields of their own, not a track's properties.
 */
static const struct ev_type *
typed_target(const json_t *msg)
{
    const json_t *ev = json_object_get(msg, "event");
    const struct ev_type *t;
    char snake[128];
    size_t n = 0;
    bool gap = false;

    if (!json_is_string(ev) || json_string_length(ev) == 0) {
        return NULL;
    }
    t = ev_lookup(json_string_value(ev), json_string_length(ev));
    if (t != NULL && t->decl != NULL) {
        return t;
    }
    for (const char *p = json_string_value(ev); *p != '\0'; p++) {
        char ch = *p;

        if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'Z')) {
            if (n + 2 >= sizeof(snake)) {
                return NULL;
            }
            if (gap && n > 0) {
                snake[n++] = '_';
            }
            snake[n++] = (char)(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch);
            gap = false;
        } else {
            gap = true;
        }
    }
    t = ev_lookup(snake, n);
    return t != NULL && t->decl != NULL ? t : NULL;
}

/*
 * Why a track's properties do not make an event of its declared type typed, into err ("":
 * they do). The type's own check, before the track is added: a track its type refuses is
 * refused whole.
 */
static int
typed_check(const json_t *msg, const struct ev_type *typed, char err[EV_ERR_MAX])
{
    const json_t *props = json_object_get(msg, "properties");
    json_t *empty = NULL;
    char why[EV_ERR_MAX];

    err[0] = '\0';
    if (props == NULL || json_is_null(props)) {
        props = empty = json_object();
        if (empty == NULL) {
            return DP_ERR_NOMEM;
        }
    }
    if (json_is_object(props) && typed->validate(typed, props, why) != 0) {
        snprintf(err, EV_ERR_MAX, "properties: %.230s", why);
    }
    json_decref(empty);
    return 0;
}

/*
 * Add the copy of track msg (item main, valid) into its declared type's table: its
 * properties as the event, keyed by the messageId under a key of its own.
 */
static int
add_typed(struct seg_request *q, const json_t *msg, const struct ev_type *typed,
          const struct srv_limit *key, struct srv_charge *ch)
{
    const json_t *props = json_object_get(msg, "properties");
    const json_t *m = json_object_get(msg, "messageId");
    char keybuf[EV_KEY_MAX + 1];
    size_t item = q->b.n;
    size_t klen;
    char *raw;
    int rc;

    raw = json_is_object(props) ? json_dumps(props, JSON_COMPACT | JSON_SORT_KEYS) : strdup("{}");
    if (raw == NULL) {
        return DP_ERR_NOMEM;
    }
    keep_raw(q, raw);
    rc = srv_charge_add(ch, (int64_t)strlen(raw));
    if (rc == 0) {
        rc = ev_batch_add(&q->b, raw, strlen(raw), typed, NULL);
    }
    if (rc == 0 && q->b.items[item].error == NULL) {
        klen = ev_segment_key(key != NULL ? key->name : "", key != NULL ? strlen(key->name) : 0,
                              json_string_value(m), json_string_length(m), true, keybuf);
        rc = ev_batch_set_key(&q->b, item, keybuf, klen, "messageId");
        rc = rc == DP_ERR_INVALID ? 0 : rc;
    }
    return rc;
}

/*
 * Add message i (msg, borrowed: changed in place) as its items. Batch-level context and
 * integrations are merged into the message's own, batch-level sentAt given to a message
 * without one, a missing messageId generated, and "type" set for one-call routes. The key
 * is messageId scoped by the sender (ev_segment_key); its digest leaves out sentAt, which an
 * SDK sets anew on each attempt, so its retry is a repeat and not a conflict.
 * Returns 0 (the message may be rejected), DP_ERR_FULL, DP_ERR_BUSY, DP_ERR_NOMEM.
 */
static int
add_message(struct srv *s, struct seg_request *q, json_t *msg, const json_t *top, const char *call,
            const struct srv_limit *key, struct srv_charge *ch)
{
    const struct ev_type *t;
    const struct ev_type *typed;
    const json_t *uid;
    const char *mid;
    size_t mid_len;
    char err[EV_ERR_MAX];
    char keybuf[EV_KEY_MAX + 1];
    char gen[EV_UUID_TEXT];
    uint8_t u[16];
    json_t *sent = NULL;
    char *raw = NULL;
    size_t raw_len = 0;
    size_t item = q->b.n;
    int rc;

    json_object_del(msg, "writeKey");
    message_problem(msg, call, &t, &mid, &mid_len, err);
    if (err[0] == '\0') {
        if ((call != NULL && json_object_set_new(msg, "type", json_string(call)) != 0) ||
            merge_defaults(msg, "context", json_object_get(top, "context")) != 0 ||
            merge_defaults(msg, "integrations", json_object_get(top, "integrations")) != 0) {
            return DP_ERR_NOMEM;
        }
        if (mid == NULL) {
            ev_uuid7(u);
            ev_uuid_format(u, gen);
            if (json_object_set_new(msg, "messageId", json_string(gen)) != 0) {
                return DP_ERR_NOMEM;
            }
        }
        /* The digest's text: the message without sentAt. */
        sent = json_object_get(msg, "sentAt");
        if (sent == NULL || json_is_null(sent)) {
            sent = json_object_get(top, "sentAt");
        }
        json_incref(sent);
        json_object_del(msg, "sentAt");
    }
    raw = json_dumps(msg, JSON_COMPACT | JSON_ENCODE_ANY);
    if (raw == NULL) {
        json_decref(sent);
        return DP_ERR_NOMEM;
    }
    raw_len = strlen(raw);
    if (err[0] == '\0' && raw_len > (size_t)s->cfg->server_segment_max_message_bytes) {
        snprintf(err, EV_ERR_MAX,
                 "message: %zu bytes, over server.segment_max_message_bytes "
                 "(%lld)",
                 raw_len, (long long)s->cfg->server_segment_max_message_bytes);
    }
    typed = err[0] == '\0' && strcmp(t->table, "tracks") == 0 ? typed_target(msg) : NULL;
    if (typed != NULL && typed_check(msg, typed, err) != 0) {
        json_decref(sent);
        free(raw);
        return DP_ERR_NOMEM;
    }
    if (err[0] == '\0') {
        uint8_t digest[EV_DIGEST_LEN];

        ev_digest(raw, raw_len, digest);
        free(raw);
        raw = NULL;
        if (sent != NULL && json_object_set(msg, "sentAt", sent) != 0) {
            json_decref(sent);
            return DP_ERR_NOMEM;
        }
        raw = json_dumps(msg, JSON_COMPACT);
        if (raw == NULL) {
            json_decref(sent);
            return DP_ERR_NOMEM;
        }
        raw_len = strlen(raw);
        keep_raw(q, raw);
        rc = srv_charge_add(ch, (int64_t)raw_len);
        if (rc == 0) {
            rc = ev_batch_add(&q->b, raw, raw_len, t, NULL);
        }
        if (rc == 0 && q->b.items[item].error == NULL) {
            const json_t *m = json_object_get(msg, "messageId");
            size_t klen =
                ev_segment_key(key != NULL ? key->name : "", key != NULL ? strlen(key->name) : 0,
                               json_string_value(m), json_string_length(m), false, keybuf);

            rc = ev_batch_set_key(&q->b, item, keybuf, klen, "messageId");
            if (rc == 0 && q->b.items[item].key != NULL) {
                memcpy(q->b.items[item].digest, digest, sizeof(digest));
            }
            rc = rc == DP_ERR_INVALID ? 0 : rc;
        }
        json_decref(sent);
        /* An identify of a known user also updates users. */
        uid = json_object_get(msg, "userId");
        if (rc == 0 && q->b.items[item].error == NULL && strcmp(t->table, "identifies") == 0 &&
            uid != NULL && !json_is_null(uid)) {
            rc = ev_batch_add(&q->b, raw, raw_len, ev_lookup("users", 5), NULL);
        }
        if (rc == 0 && q->b.items[item].error == NULL && typed != NULL) {
            rc = add_typed(q, msg, typed, key, ch);
        }
        return rc;
    }
    json_decref(sent);
    keep_raw(q, raw);
    rc = srv_charge_add(ch, (int64_t)raw_len);
    return rc != 0 ? rc : ev_batch_add(&q->b, raw, raw_len, t, err);
}

/* The answer: counts, one id per message (null when rejected), the errors. */
static void
reply_segment(struct srv_reply *r, int status, const char *text, const struct seg_request *q,
              const struct queue_event *evs)
{
    json_t *o = srv_reply_object(status, text);
    json_t *ids = json_array();
    json_t *errs = json_array();
    char conflict[EV_KEY_MAX + 128];
    char id[EV_UUID_TEXT];
    size_t accepted = 0;
    size_t dups = 0;

    for (size_t i = 0; i < q->n_msgs; i++) {
        const struct ev_item *it = &q->b.items[q->main_item[i]];
        const struct queue_event *ev = evs != NULL ? &evs[q->main_item[i]] : NULL;
        const char *error = it->error;

        if (srv_is_conflict(it, ev)) {
            srv_conflict_text(conflict, sizeof(conflict), it->key, it->key_len, ev->orig_uuid);
            error = conflict;
        }
        if (error == NULL && ev != NULL) {
            ev_uuid_format(ev->dedup == QUEUE_DEDUP_REPEAT ? ev->orig_uuid : ev->uuid, id);
            json_array_append_new(ids, json_string(id));
            accepted++;
            dups += ev->dedup == QUEUE_DEDUP_REPEAT;
        } else {
            json_array_append_new(ids, json_null());
        }
        if (error != NULL && json_array_size(errs) < MAX_ERRORS_LISTED) {
            json_t *e = json_object();
            json_object_set_new(e, "index", json_integer((json_int_t)i));
            json_object_set_new(e, "error", json_string(error));
            json_array_append_new(errs, e);
        }
    }
    json_object_set_new(o, "success", json_boolean(status == 200));
    json_object_set_new(o, "accepted", json_integer((json_int_t)accepted));
    json_object_set_new(o, "rejected", json_integer((json_int_t)(q->n_msgs - accepted)));
    json_object_set_new(o, "duplicates", json_integer((json_int_t)dups));
    json_object_set_new(o, "ids", ids);
    json_object_set_new(o, "errors", errs);
    srv_reply_set(r, status, o);
}

/* ev_batch's budget: what the batch allocates is charged to the request. */
static int
batch_charge(void *arg, size_t bytes)
{
    return srv_charge_add(arg, (int64_t)bytes);
}

/*
 * The body as messages: a batch's "batch" array, or the body itself for a one-call route.
 * Returns 0, DP_ERR_INVALID (r filled with 400), DP_ERR_FULL, DP_ERR_BUSY, DP_ERR_NOMEM.
 */
static int
add_messages(struct srv *s, struct seg_request *q, json_t *top, const char *call,
             const struct srv_limit *key, struct srv_charge *ch, struct srv_reply *r)
{
    json_t *list = top;
    size_t n = 1;
    int rc;

    if (call == NULL) {
        list = json_object_get(top, "batch");
        if (!json_is_array(list)) {
            srv_reply_json(r, 400,
                           list == NULL ? "batch: required field missing: expected an "
                                          "array of messages"
                                        : "batch: expected an array of messages");
            return DP_ERR_INVALID;
        }
        n = json_array_size(list);
        if (n == 0) {
            srv_reply_json(r, 400, "batch: empty: expected one or more messages");
            return DP_ERR_INVALID;
        }
    }
    if (srv_charge_add(
            ch, (int64_t)(n * (2 * sizeof(char *) + sizeof(size_t) +
                               2 * sizeof(struct queue_event) + ANSWER_BYTES_PER_MESSAGE))) != 0) {
        return DP_ERR_BUSY;
    }
    /* Each message keeps at most two texts: its own and its typed copy (add_typed). */
    q->raws = calloc(2 * n, sizeof(*q->raws));
    q->main_item = calloc(n, sizeof(*q->main_item));
    if (q->raws == NULL || q->main_item == NULL) {
        return DP_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *msg = call == NULL ? json_array_get(list, i) : top;

        q->main_item[i] = q->b.n;
        rc = add_message(s, q, msg, call == NULL ? top : NULL, call, key, ch);
        if (rc != 0) {
            return rc;
        }
        q->n_msgs++;
    }
    return 0;
}

/* The key of a body sent without a credential header: its writeKey. Answers 401 or 429. */
static bool
body_key(struct srv *s, struct mg_connection *c, const json_t *top, struct srv_limit **key,
         struct srv_reply *r)
{
    const json_t *wk = json_object_get(top, "writeKey");

    if (!srv_auth_key(s, json_is_string(wk) ? json_string_value(wk) : NULL, key)) {
        srv_reply_json(r, 401,
                       "missing or wrong write key: send it as the HTTP Basic user "
                       "name (empty password) or as writeKey in the body");
        srv_reply_header(r, "WWW-Authenticate", "Basic realm=\"datapipe\"");
        return false;
    }
    return !srv_key_limited(*key, mg_get_request_info(c)->request_method, r);
}

void
srv_post_segment(struct srv *s, struct mg_connection *c, const struct srv_match *m,
                 struct srv_reply *r)
{
    const char *call = strcmp(m->route->segment_call, "batch") == 0 ? NULL : m->route->segment_call;
    struct srv_charge ch = {.budget = &s->budget, .bytes = 0};
    struct seg_request q;
    struct srv_limit *body_limit = NULL;
    const struct srv_limit *key = m->key;
    json_t *top = NULL;
    json_error_t jerr;
    char msg[200];
    char *body = NULL;
    size_t len = 0;
    size_t valid = 0;
    int rc;

    memset(&q, 0, sizeof(q));
    if (srv_body_read(s, c, &ch, &body, &len, r) != 0) {
        goto out;
    }
    if (len > (size_t)s->cfg->server_segment_max_batch_bytes) {
        snprintf(msg, sizeof(msg),
                 "body: %zu bytes, over server.segment_max_batch_bytes "
                 "(%lld); nothing was stored",
                 len, (long long)s->cfg->server_segment_max_batch_bytes);
        srv_reply_json(r, 400, msg);
        goto out;
    }
    /* Before the key is known: jansson's recursion on a deep body would overflow the stack. */
    if (ev_json_too_deep(body, len) < len) {
        snprintf(msg, sizeof(msg), "body: not JSON: nested deeper than %d levels", EV_MAX_DEPTH);
        srv_reply_json(r, 400, msg);
        goto out;
    }
    top = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (top == NULL) {
        snprintf(msg, sizeof(msg), "body: not JSON: line %d column %d: %s", jerr.line, jerr.column,
                 jerr.text);
        srv_reply_json(r, 400, msg);
        goto out;
    }
    if (!json_is_object(top)) {
        srv_reply_json(r, 400, "body: expected a JSON object");
        goto out;
    }
    if (m->key_in_body) {
        if (!body_key(s, c, top, &body_limit, r)) {
            goto out;
        }
        key = body_limit;
    }
    /* A key is never stored: a one-call body is the message itself. */
    json_object_del(top, "writeKey");
    q.b.max_events = (size_t)s->cfg->server_max_events_per_body;
    q.b.charge = batch_charge;
    q.b.charge_arg = &ch;
    rc = add_messages(s, &q, top, call, key, &ch, r);
    if (rc == DP_ERR_INVALID) {
        goto out;
    }
    if (rc == DP_ERR_FULL) {
        snprintf(msg, sizeof(msg),
                 "more than server.max_events_per_body (%lld) messages in one "
                 "body; nothing was stored",
                 (long long)s->cfg->server_max_events_per_body);
        srv_reply_json(r, 400, msg);
        goto out;
    }
    if (rc == DP_ERR_BUSY) {
        srv_reply_busy(r);
        goto out;
    }
    if (rc != 0) {
        srv_reply_json(r, 500, "out of memory reading the messages");
        goto out;
    }
    srv_count_events(s, &q.b, NULL);
    srv_limit_charge((struct srv_limit *)key, q.n_msgs, dp_now_us());
    if (q.b.n_valid == 0) {
        reply_segment(r, 400, q.n_msgs == 1 ? q.b.items[0].error : "no valid message", &q, NULL);
        goto out;
    }
    q.evs = malloc(q.b.n * sizeof(*q.evs));
    if (q.evs == NULL) {
        srv_reply_json(r, 500, "out of memory");
        goto out;
    }
    rc = srv_append_batch(s, &q.b, call_type(call != NULL ? call : "track"), 200, key, q.evs);
    if (rc != 0) {
        srv_reply_append_error(s, r, rc, len, q.b.n);
        goto out;
    }
    atomic_store(&s->queue_full, false);
    srv_count_events(s, &q.b, q.evs);
    srv_tap_publish(s, q.evs, q.b.n);
    for (size_t i = 0; i < q.n_msgs; i++) {
        const struct ev_item *it = &q.b.items[q.main_item[i]];

        valid += it->error == NULL && !srv_is_conflict(it, &q.evs[q.main_item[i]]);
    }
    if (valid == 0) {
        reply_segment(r, 409, "no message accepted: messageId already used with other content", &q,
                      q.evs);
    } else {
        reply_segment(r, 200,
                      valid == q.n_msgs ? "accepted"
                                        : "partly accepted: the rejected messages are "
                                          "in dead_letter",
                      &q, q.evs);
    }
out:
    request_free(&q);
    json_decref(top);
    free(body);
    srv_limit_put(body_limit);
    srv_charge_release(&ch);
}
