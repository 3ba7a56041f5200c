/*
 * segment.c - the Segment tracking API (POST /v1/batch, /v1/track, ...) as its SDKs speak
 * it: the write key in HTTP Basic or in the body, batch-level context, integrations and
 * sentAt merged into each message, messageId as the idempotency key scoped by the write
 * key's name, Segment's size limits, a 200 with a JSON body once stored. Each message goes
 * to its call's type (events/segment.c), parsed once and written once, from its own bytes;
 * it must never answer 2xx before the queue commit.
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
/*
 * A batch's messages with the batch-level context and integrations merged into each may
 * hold at most this many times server.segment_max_batch_bytes: a small body with a large
 * batch-level context and many tiny messages would otherwise store (and hold in memory) the
 * context once per message. Documented in docs/api.md.
 */
#define MERGED_BATCH_FACTOR 8

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
    char *top_sent; /* the batch-level sentAt as JSON text, or NULL */
    /* The batch-level context and integrations (objects, else NULL) as compact JSON text,
     * written once and shared by the messages that have no member of their own. */
    char *batch_text[2];
};

/* The members a batch gives its messages, in the order of seg_request.batch_text. */
static const char *const batch_members[2] = {"context", "integrations"};

static void
request_free(struct seg_request *q)
{
    for (size_t i = 0; i < q->n_raws; i++) {
        free(q->raws[i]);
    }
    free(q->raws);
    free(q->top_sent);
    free(q->batch_text[0]);
    free(q->batch_text[1]);
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

/*
 * The text member i of batch_members gets in msg once merged with the batch's (top): *out is
 * the batch's own text (borrowed from q) when msg has no such member or an empty one, else a
 * merged copy the caller frees (*owned). *out NULL: nothing to merge (no batch-level object,
 * or msg's member is not an object, which its type names). The message's own members win.
 */
static int
merged_text(const struct seg_request *q, const json_t *msg, const json_t *top, int i,
            const char **out, char **owned)
{
    const json_t *batch_level = json_object_get(top, batch_members[i]);
    const json_t *own = json_object_get(msg, batch_members[i]);
    json_t *merged;

    *out = NULL;
    *owned = NULL;
    if (q->batch_text[i] == NULL || (own != NULL && !json_is_object(own))) {
        return 0;
    }
    if (own == NULL || json_object_size(own) == 0) {
        *out = q->batch_text[i];
        return 0;
    }
    merged = json_copy((json_t *)batch_level);
    if (merged == NULL || json_object_update(merged, (json_t *)own) != 0) {
        json_decref(merged);
        return DP_ERR_NOMEM;
    }
    *owned = json_dumps(merged, JSON_COMPACT);
    json_decref(merged);
    *out = *owned;
    return *owned != NULL ? 0 : DP_ERR_NOMEM;
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
 * properties as the event, keyed by the messageId under a key of its own, following item
 * main's fate.
 */
static int
add_typed(struct seg_request *q, const json_t *msg, const struct ev_type *typed, size_t main,
          const struct srv_limit *key, struct srv_charge *ch)
{
    const json_t *props = json_object_get(msg, "properties");
    const json_t *m = json_object_get(msg, "messageId");
    char keybuf[EV_KEY_MAX + 1];
    size_t item = q->b.n;
    json_t *copy;
    size_t klen;
    char *raw;
    int rc;

    /*
     * The names every type reserves are a track's own data, not the copy's: its key is the
     * messageId's and its type the event's. The tracks row keeps them (docs/api.md).
     */
    copy = json_is_object(props) ? json_copy((json_t *)props) : json_object();
    if (copy == NULL) {
        return DP_ERR_NOMEM;
    }
    json_object_del(copy, EV_KEY_FIELD);
    json_object_del(copy, "event_name");
    raw = json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(copy);
    if (raw == NULL) {
        return DP_ERR_NOMEM;
    }
    keep_raw(q, raw);
    rc = srv_charge_add(ch, (int64_t)strlen(raw));
    if (rc == 0) {
        rc = ev_batch_add(&q->b, raw, strlen(raw), typed, NULL);
    }
    if (rc == 0) {
        /* Stored only when the track itself is stored as new (not a repeat, not a conflict). */
        q->b.items[item].follows = item - main;
    }
    if (rc == 0 && q->b.items[item].error == NULL) {
        klen = ev_segment_key(key != NULL ? key->name : "", key != NULL ? strlen(key->name) : 0,
                              json_string_value(m), json_string_length(m), true, keybuf);
        rc = ev_batch_set_derived_key(&q->b, item, keybuf, klen, "messageId", NULL);
        rc = rc == DP_ERR_INVALID ? 0 : rc;
    }
    return rc;
}

/* A message's text under construction: room for everything it can gain. */
struct seg_text {
    char *buf;
    size_t len;
    bool first; /* no member written yet */
};

static void
text_put(struct seg_text *t, const char *s, size_t n)
{
    memcpy(t->buf + t->len, s, n);
    t->len += n;
}

/* One member: "name" (as written) then its value, minified. */
static void
text_member(struct seg_text *t, const char *name, size_t name_len, const char *v, size_t v_len)
{
    text_put(t, t->first ? "{" : ",", 1);
    t->first = false;
    text_put(t, name, name_len);
    text_put(t, ":", 1);
    t->len += ev_json_minify(t->buf + t->len, v, v_len);
}

/* s (at most EV_UUID_TEXT - 1 bytes, nothing to escape) as a JSON string into q. */
static size_t
quoted(char q[EV_UUID_TEXT + 2], const char *s)
{
    size_t n = strlen(s);

    q[0] = '"';
    memcpy(q + 1, s, n);
    q[n + 1] = '"';
    return n + 2;
}

/* Whether the member name span k (quoted, as written) is name. */
static bool
key_is(const char *text, const struct ev_json_span *k, const char *name)
{
    size_t n = strlen(name);

    return k->len == n + 2 && memcmp(text + k->off + 1, name, n) == 0;
}

/* What add_message changed in the message before its text is written. */
struct seg_changes {
    bool normalised;       /* the message was valid so far: the changes below apply */
    const char *call;      /* "type" set to this (one-call routes), or NULL */
    const char *merged[2]; /* batch_members' texts merged with the batch's (merged_text),
                              or NULL: the message keeps its own */
    const char *gen_mid;   /* a generated messageId, or NULL */
};

/*
 * The text of msg written from its own bytes (text, len: the message as the body holds it)
 * with the changes ch made to msg, into *out (malloc'd, the caller frees): the members in the
 * order msg keeps them, compact, without writeKey; with ch->normalised also without sentAt,
 * which stored_with_sent appends. A client's bytes are kept as they were sent (a number's
 * digits, a string's escapes), which also spares serialising the message again: the value the
 * type checks is msg, which these bytes parse to. Returns 0, DP_ERR_NOMEM, or
 * DP_ERR_INVALID when a member's name is written with escapes (then the caller writes msg
 * with jansson instead).
 */
static int
spliced_text(const json_t *msg, const char *text, size_t len, const struct seg_changes *ch,
             size_t room, char **out, size_t *out_len)
{
    struct seg_text t = {.buf = NULL, .len = 0, .first = true};
    const char *const *merged = batch_members;
    const char *const *dumps = ch->merged;
    bool done[2] = {false, false};
    struct ev_json_cursor cur;
    struct ev_json_span k;
    struct ev_json_span v;
    bool type_done = false;
    bool mid_done = false;
    char tmp[EV_UUID_TEXT + 2];
    int rc = DP_ERR_NOMEM;

    for (int i = 0; i < 2; i++) {
        if (dumps[i] != NULL) {
            room += strlen(dumps[i]) + 32;
        }
    }
    t.buf = malloc(len + room + 128);
    if (t.buf == NULL) {
        goto out;
    }
    if (!json_is_object(msg) || !ev_json_cursor_open(&cur, text, len)) {
        t.len = ev_json_minify(t.buf, text, len);
        rc = 0;
        goto out;
    }
    while (ev_json_cursor_next(&cur, &k, &v)) {
        const char *name = text + k.off;

        if (memchr(name, '\\', k.len) != NULL) {
            rc = DP_ERR_INVALID;
            goto out;
        }
        if (key_is(text, &k, "writeKey") || (ch->normalised && key_is(text, &k, "sentAt"))) {
            continue;
        }
        if (ch->normalised && ch->call != NULL && key_is(text, &k, "type")) {
            text_member(&t, name, k.len, tmp, quoted(tmp, ch->call));
            type_done = true;
        } else if (ch->normalised && ch->gen_mid != NULL && key_is(text, &k, "messageId")) {
            text_member(&t, name, k.len, tmp, quoted(tmp, ch->gen_mid));
            mid_done = true;
        } else if (dumps[0] != NULL && key_is(text, &k, merged[0])) {
            text_member(&t, name, k.len, dumps[0], strlen(dumps[0]));
            done[0] = true;
        } else if (dumps[1] != NULL && key_is(text, &k, merged[1])) {
            text_member(&t, name, k.len, dumps[1], strlen(dumps[1]));
            done[1] = true;
        } else {
            text_member(&t, name, k.len, text + v.off, v.len);
        }
    }
    /* What msg gained, in the order add_message set it: after its own members. */
    if (ch->normalised && ch->call != NULL && !type_done) {
        text_member(&t, "\"type\"", 6, tmp, quoted(tmp, ch->call));
    }
    for (int i = 0; i < 2; i++) {
        char quoted[16];

        if (dumps[i] != NULL && !done[i]) {
            snprintf(quoted, sizeof(quoted), "\"%s\"", merged[i]);
            text_member(&t, quoted, strlen(quoted), dumps[i], strlen(dumps[i]));
        }
    }
    if (ch->normalised && ch->gen_mid != NULL && !mid_done) {
        text_member(&t, "\"messageId\"", 11, tmp, quoted(tmp, ch->gen_mid));
    }
    text_put(&t, t.first ? "{}" : "}", t.first ? 2 : 1);
    rc = 0;
out:
    if (rc != 0) {
        free(t.buf);
        t.buf = NULL;
    }
    *out = t.buf;
    *out_len = t.len;
    return rc;
}

/*
 * The stored text: *raw (the message without sentAt, raw_len bytes, room for sent_len + 16
 * more) with "sentAt": sent (sent_len bytes of JSON) as its last member.
 */
static void
stored_with_sent(char *raw, size_t *raw_len, const char *sent, size_t sent_len)
{
    size_t n = *raw_len - 1; /* over the closing brace */

    if (n > 1) {
        raw[n++] = ',';
    }
    memcpy(raw + n, "\"sentAt\":", 9);
    n += 9;
    n += ev_json_minify(raw + n, sent, sent_len);
    raw[n++] = '}';
    *raw_len = n;
}

/*
 * The message's text (*raw, malloc'd, raw_len bytes; without sentAt when ch->normalised):
 * from its own bytes (text, len) when the body's text is at hand (text non-NULL), else
 * serialised from msg, which then gains the merged members. room: bytes to keep free at the
 * end for sentAt.
 */
static int
message_text(json_t *msg, const char *text, size_t len, const struct seg_changes *ch, size_t room,
             char **raw, size_t *raw_len)
{
    char *dump;
    int rc;

    if (text != NULL) {
        rc = spliced_text(msg, text, len, ch, room, raw, raw_len);
        if (rc != DP_ERR_INVALID) {
            return rc;
        }
    }
    /* A member name written with escapes: jansson writes msg (sentAt is not in it). */
    *raw = NULL;
    for (int i = 0; i < 2; i++) {
        if (ch->merged[i] != NULL &&
            json_object_set_new(msg, batch_members[i], json_loads(ch->merged[i], 0, NULL)) != 0) {
            return DP_ERR_NOMEM;
        }
    }
    dump = json_dumps(msg, JSON_COMPACT | JSON_ENCODE_ANY);
    if (dump == NULL) {
        return DP_ERR_NOMEM;
    }
    *raw_len = strlen(dump);
    *raw = malloc(*raw_len + room + 1);
    if (*raw != NULL) {
        memcpy(*raw, dump, *raw_len + 1);
    }
    free(dump);
    return *raw != NULL ? 0 : DP_ERR_NOMEM;
}

/*
 * Add message i (msg, borrowed: changed in place; text: its len bytes in the body, or NULL)
 * as its items. Batch-level context and integrations are merged into the message's own,
 * batch-level sentAt (top_sent: its JSON text, or NULL) given to a message without one, a
 * missing messageId generated, and "type" set for one-call routes. The key is messageId
 * scoped by the sender (ev_segment_key); its digest leaves out sentAt, which an SDK sets
 * anew on each attempt, so its retry is a repeat and not a conflict. The message is parsed
 * once (with the body) and written once: its text is spliced from its own bytes, and msg,
 * changed the same way, is what its type checks.
 * Returns 0 (the message may be rejected), DP_ERR_FULL, DP_ERR_BUSY, DP_ERR_NOMEM.
 */
static int
add_message(struct srv *s, struct seg_request *q, json_t *msg, const char *text, size_t len,
            const json_t *top, const char *call, const struct srv_limit *key, struct srv_charge *ch)
{
    struct seg_changes chg = {.normalised = false};
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
    const char *sent_text = NULL;
    size_t sent_len = 0;
    char *own_sent = NULL;
    uint8_t digest[EV_DIGEST_LEN];
    const char *stored;
    char *raw = NULL;
    size_t raw_len = 0;
    size_t item = q->b.n;
    char *merged[2] = {NULL, NULL};
    size_t own_len = len;
    size_t need;
    int rc = DP_ERR_NOMEM;

    json_object_del(msg, "writeKey");
    if (text == NULL) {
        char *dump = json_dumps(msg, JSON_COMPACT | JSON_ENCODE_ANY);

        if (dump == NULL) {
            goto out;
        }
        own_len = strlen(dump);
        free(dump);
    }
    message_problem(msg, call, &t, &mid, &mid_len, err);
    if (err[0] == '\0') {
        chg.normalised = true;
        chg.call = call;
        if ((call != NULL && json_object_set_new(msg, "type", json_string(call)) != 0) ||
            merged_text(q, msg, top, 0, &chg.merged[0], &merged[0]) != 0 ||
            merged_text(q, msg, top, 1, &chg.merged[1], &merged[1]) != 0) {
            goto out;
        }
        if (mid == NULL) {
            ev_uuid7(u);
            ev_uuid_format(u, gen);
            if (json_object_set_new(msg, "messageId", json_string(gen)) != 0) {
                goto out;
            }
            chg.gen_mid = gen;
        }
        /* The stored message's sentAt: its own, else the batch's; the digest leaves it out. */
        sent = json_object_get(msg, "sentAt");
        if (sent != NULL && !json_is_null(sent)) {
            own_sent = json_dumps(sent, JSON_COMPACT | JSON_ENCODE_ANY);
            if (own_sent == NULL) {
                goto out;
            }
            sent_text = own_sent;
        } else {
            sent = json_object_get(top, "sentAt");
            sent_text = q->top_sent;
        }
        sent_len = sent_text != NULL ? strlen(sent_text) : 0;
        json_incref(sent);
        json_object_del(msg, "sentAt");
    }
    /* The text's buffer (spliced_text's bound) is charged before it is allocated. */
    need = own_len + sent_len + 16 + 2 * EV_UUID_TEXT + 256;
    for (int i = 0; i < 2; i++) {
        need += chg.merged[i] != NULL ? strlen(chg.merged[i]) + 32 : 0;
    }
    rc = srv_charge_add(ch, (int64_t)need);
    if (rc != 0) {
        goto out;
    }
    rc = message_text(msg, text, len, &chg, sent_len + 16, &raw, &raw_len);
    if (rc != 0) {
        goto out;
    }
    rc = DP_ERR_NOMEM;
    /* Segment's limit is on the message as sent, not on what the batch-level members add. */
    if (err[0] == '\0' && own_len > (size_t)s->cfg->server_segment_max_message_bytes) {
        snprintf(err, EV_ERR_MAX,
                 "message: %zu bytes, over server.segment_max_message_bytes "
                 "(%lld)",
                 own_len, (long long)s->cfg->server_segment_max_message_bytes);
    }
    if (err[0] == '\0' && chg.normalised) {
        /* A time the loader could not write is refused now, while the SDK hears of it. */
        (void)ev_segment_time_check(msg, sent, dp_now_us(), err);
    }
    typed = err[0] == '\0' && strcmp(t->table, "tracks") == 0 ? typed_target(msg) : NULL;
    if (typed != NULL && typed_check(msg, typed, err) != 0) {
        goto out;
    }
    if (err[0] != '\0') {
        keep_raw(q, raw);
        stored = raw;
        raw = NULL;
        rc = ev_batch_add(&q->b, stored, raw_len, t, err);
        goto out;
    }
    ev_digest(raw, raw_len, digest);
    if (sent != NULL) {
        if (json_object_set(msg, "sentAt", sent) != 0) {
            goto out;
        }
        stored_with_sent(raw, &raw_len, sent_text, sent_len);
    }
    keep_raw(q, raw);
    stored = raw;
    raw = NULL;
    rc = ev_batch_add_value(&q->b, stored, raw_len, t, msg);
    if (rc == 0 && q->b.items[item].error == NULL) {
        const json_t *m = json_object_get(msg, "messageId");
        size_t klen =
            ev_segment_key(key != NULL ? key->name : "", key != NULL ? strlen(key->name) : 0,
                           json_string_value(m), json_string_length(m), false, keybuf);

        rc = ev_batch_set_derived_key(&q->b, item, keybuf, klen, "messageId", digest);
        rc = rc == DP_ERR_INVALID ? 0 : rc;
    }
    /* An identify of a known user also updates users. */
    uid = json_object_get(msg, "userId");
    if (rc == 0 && q->b.items[item].error == NULL && strcmp(t->table, "identifies") == 0 &&
        uid != NULL && !json_is_null(uid)) {
        rc = ev_batch_add_value(&q->b, stored, raw_len, ev_lookup("users", 5), msg);
        if (rc == 0) {
            q->b.items[q->b.n - 1].follows = q->b.n - 1 - item;
        }
    }
    if (rc == 0 && q->b.items[item].error == NULL && typed != NULL) {
        rc = add_typed(q, msg, typed, item, key, ch);
    }
out:
    free(merged[0]);
    free(merged[1]);
    free(raw);
    free(own_sent);
    json_decref(sent);
    return rc;
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

/*
 * The batch-level context and integrations (top's, when objects) written once into q, and
 * what merging them into each of the n messages would add, checked against
 * MERGED_BATCH_FACTOR x server.segment_max_batch_bytes. Returns 0, DP_ERR_NOMEM, or
 * DP_ERR_INVALID with r filled (400: nothing stored).
 */
static int
batch_members_text(struct srv *s, struct seg_request *q, const json_t *top, size_t n,
                   struct srv_reply *r)
{
    long long max_bytes = (long long)s->cfg->server_segment_max_batch_bytes * MERGED_BATCH_FACTOR;
    size_t each = 0;
    char msg[300];

    for (int i = 0; i < 2; i++) {
        const json_t *v = json_object_get(top, batch_members[i]);

        if (json_is_object(v)) {
            q->batch_text[i] = json_dumps(v, JSON_COMPACT);
            if (q->batch_text[i] == NULL) {
                return DP_ERR_NOMEM;
            }
            each += strlen(q->batch_text[i]);
        }
    }
    if (each > 0 && (unsigned long long)each * n > (unsigned long long)max_bytes) {
        snprintf(msg, sizeof(msg),
                 "context, integrations: the batch-level members (%zu bytes) merged into each "
                 "of %zu messages make %llu bytes, over %d x server.segment_max_batch_bytes "
                 "(%lld); send them in each message or in smaller batches; nothing was stored",
                 each, n, (unsigned long long)each * n, MERGED_BATCH_FACTOR, max_bytes);
        srv_reply_json(r, 400, msg);
        return DP_ERR_INVALID;
    }
    return 0;
}

/* ev_batch's budget: what the batch allocates is charged to the request. */
static int
batch_charge(void *arg, size_t bytes)
{
    return srv_charge_add(arg, (int64_t)bytes);
}

/*
 * cur at the first element of the body's "batch" array (the body's text, len bytes, parsed
 * already); false when the member is not found as written (its name in escapes).
 */
static bool
batch_text(const char *body, size_t len, struct ev_json_cursor *cur)
{
    return ev_json_cursor_open(cur, body, len) && ev_json_cursor_enter(cur, "batch") &&
           !cur->object;
}

/* add_messages: the body's text was read lazily and is not what the fast reader takes. */
#define SEG_RETRY 1

/*
 * The lazily read "batch" array (lz, from ev_json_load_lazy) as messages, each parsed, added
 * and freed before the next is read. Returns 0 (the whole body is then known to be JSON),
 * SEG_RETRY (the body must be read whole: nothing is answered, nothing stored), or what
 * add_message returns.
 */
static int
add_lazy(struct srv *s, struct seg_request *q, json_t *top, struct ev_json_cursor *lz, size_t n,
         const struct srv_limit *key, struct srv_charge *ch)
{
    struct ev_json_span span;
    bool done = false;
    json_t *msg;
    int rc;

    for (size_t i = 0; i < n; i++) {
        msg = ev_json_cursor_parse(lz, &span, &done);
        if (msg == NULL) {
            return SEG_RETRY;
        }
        q->main_item[i] = q->b.n;
        rc = add_message(s, q, msg, lz->s + span.off, span.len, top, NULL, key, ch);
        json_decref(msg);
        if (rc != 0) {
            return rc;
        }
        q->n_msgs++;
    }
    msg = ev_json_cursor_parse(lz, &span, &done);
    json_decref(msg);
    return msg == NULL && done ? 0 : SEG_RETRY;
}

/*
 * The body as messages: a batch's "batch" array (in top, or lz: read lazily, see add_lazy),
 * or the body itself for a one-call route. Each message's text is spliced from the body's
 * bytes (body, len). Returns 0, DP_ERR_INVALID (r filled with 400), SEG_RETRY (with lz),
 * DP_ERR_FULL, DP_ERR_BUSY, DP_ERR_NOMEM.
 */
static int
add_messages(struct srv *s, struct seg_request *q, const char *body, size_t len, json_t *top,
             struct ev_json_cursor *lz, const char *call, const struct srv_limit *key,
             struct srv_charge *ch, struct srv_reply *r)
{
    struct ev_json_cursor cur;
    struct ev_json_span k;
    struct ev_json_span span = {.off = 0, .len = 0};
    json_t *list = top;
    size_t n = 1;
    bool have;
    int rc;

    if (lz != NULL) {
        /* How many there seem to be; add_lazy reads no more than that. */
        n = lz->total;
        if (n == 0) {
            cur = *lz;
            if (ev_json_cursor_parse(&cur, &span, &have) != NULL || !have) {
                return SEG_RETRY;
            }
        }
    } else if (call == NULL) {
        list = json_object_get(top, "batch");
        if (!json_is_array(list)) {
            srv_reply_json(r, 400,
                           list == NULL ? "batch: required field missing: expected an "
                                          "array of messages"
                                        : "batch: expected an array of messages");
            return DP_ERR_INVALID;
        }
        n = json_array_size(list);
    }
    if (n == 0) {
        srv_reply_json(r, 400, "batch: empty: expected one or more messages");
        return DP_ERR_INVALID;
    }
    if (n > (size_t)s->cfg->server_max_events_per_body) {
        return DP_ERR_FULL;
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
    if (call == NULL && batch_members_text(s, q, top, n, r) != 0) {
        return DP_ERR_INVALID;
    }
    if (call == NULL && json_object_get(top, "sentAt") != NULL) {
        q->top_sent = json_dumps(json_object_get(top, "sentAt"), JSON_COMPACT | JSON_ENCODE_ANY);
        if (q->top_sent == NULL) {
            return DP_ERR_NOMEM;
        }
    }
    if (lz != NULL) {
        return add_lazy(s, q, top, lz, n, key, ch);
    }
    /* The messages' own bytes, when the body's "batch" member is found as written. */
    if (call == NULL) {
        have = batch_text(body, len, &cur);
    } else {
        have = ev_json_cursor_open(&cur, body, len);
        span.off = 0;
        span.len = len;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *msg = call == NULL ? json_array_get(list, i) : top;

        if (call == NULL && have) {
            have = ev_json_cursor_next(&cur, &k, &span);
        }
        q->main_item[i] = q->b.n;
        rc = add_message(s, q, msg, have ? body + span.off : NULL, span.len,
                         call == NULL ? top : NULL, call, key, ch);
        if (rc != 0) {
            return rc;
        }
        /* Done with it: its memory is reused by the next message's (the batch holds its text). */
        if (call == NULL && json_array_set_new(list, i, json_null()) != 0) {
            return DP_ERR_NOMEM;
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
    struct srv_charge extra;
    struct ev_json_cursor lz;
    bool lazy = false;
    int64_t charged;
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
    /*
     * A batch's messages are read one at a time (ev_json_load_lazy), so that the body is never
     * in memory as values all at once, unless its write key is in it: then, as for anything
     * the lazy reading cannot finish, the body is read whole first, so that a body that is
     * not JSON is answered as such before anything else. Nothing the lazy attempt did is seen.
     */
    if (call == NULL && !m->key_in_body) {
        top = ev_json_load_lazy(body, len, "batch", &lz, &lazy);
    }
    charged = ch.bytes;
    for (;;) {
        if (top == NULL) {
            top = ev_json_load(body, len, &jerr);
        }
        if (top == NULL) {
            snprintf(msg, sizeof(msg), "body: not JSON: line %d column %d: %s", jerr.line,
                     jerr.column, jerr.text);
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
        /* add_messages counts messages: a message's derived rows are not events of their own. */
        q.b.max_events = 0;
        q.b.charge = batch_charge;
        q.b.charge_arg = &ch;
        rc = add_messages(s, &q, body, len, top, lazy ? &lz : NULL, call, key, &ch, r);
        if (!lazy || rc == 0 || rc == DP_ERR_INVALID) {
            break;
        }
        /* Not finished lazily: again from the start, as if that had never run. */
        extra.budget = ch.budget;
        extra.bytes = ch.bytes - charged;
        srv_charge_release(&extra);
        ch.bytes = charged;
        request_free(&q);
        memset(&q, 0, sizeof(q));
        json_decref(top);
        top = NULL;
        lazy = false;
    }
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
