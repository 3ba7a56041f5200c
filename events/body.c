/*
 * body.c - split a request body into events (docs/api.md) and run each
 * through the dispatcher: object shape and event_name here, fields in the type.
 * Keeps every event's exact bytes as a view into the body; never re-serializes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etc/err.h"
#include "etc/plant.h"
#include "events/internal.h"

/*
 * DECODE_ANY: a top-level scalar is a (rejected) event, not a parse error.
 * DISABLE_EOF_CHECK: error.position then tells where the value ended.
 * REJECT_DUPLICATES: {"a":1,"a":2} means different things to json and jsonb.
 */
#define EV_JSON_FLAGS (JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES)

/* Longest message of a malformed value; client bytes in it are escaped. */
#define EV_SYNTAX_MAX 512

/* State of one ev_parse_body call. */
struct parser {
    const char *body;
    size_t len;
    const struct ev_type *type; /* the URL's type, or NULL */
    struct ev_batch *out;
    size_t next_index; /* index of the next event */
    size_t line;       /* 1-based line of line_start */
    size_t line_start; /* offset where that line begins */
    size_t nul;        /* offset of the next NUL byte at or after the cursor, or len */
};

static size_t
skip_ws(const struct parser *ps, size_t p)
{
    while (p < ps->len) {
        char c = ps->body[p];

        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            break;
        }
        p++;
    }
    return p;
}

/*
 * Add an item for body bytes raw_off..+raw_len; key (key_len bytes, already checked) is
 * copied and digested when non-NULL.
 */
static int
batch_push(struct parser *ps, size_t raw_off, size_t raw_len, const struct ev_type *t,
           const char *error, const char *key, size_t key_len)
{
    struct ev_batch *b = ps->out;
    struct ev_item *it;
    char *copy = NULL;
    char *shared = NULL;

    if (b->max_events > 0 && b->n >= b->max_events) {
        b->too_many = true;
        return DP_ERR_FULL;
    }
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        struct ev_item *items;

        if (cap > SIZE_MAX / sizeof(*items)) {
            return DP_ERR_NOMEM;
        }
        if (ev_batch_charge(b, (cap - b->cap) * sizeof(*items)) != 0) {
            return DP_ERR_BUSY;
        }
        items = realloc(b->items, cap * sizeof(*items));
        if (items == NULL) {
            return DP_ERR_NOMEM;
        }
        b->items = items;
        b->cap = cap;
    }
    /* The same message as the item before (a body of "1" lines): share its text. */
    if (error != NULL && b->n > 0 && b->items[b->n - 1].error != NULL &&
        strcmp(b->items[b->n - 1].error, error) == 0) {
        shared = b->items[b->n - 1].error;
    } else if (error != NULL) {
        if (ev_batch_charge(b, strlen(error) + 1) != 0) {
            return DP_ERR_BUSY;
        }
        copy = strdup(error);
        if (copy == NULL) {
            return DP_ERR_NOMEM;
        }
    }
    it = &b->items[b->n];
    memset(it, 0, sizeof(*it));
    if (key != NULL) {
        if (ev_batch_charge(b, key_len + 1) != 0) {
            free(copy);
            return DP_ERR_BUSY;
        }
        it->key = strndup(key, key_len);
        if (it->key == NULL) {
            free(copy);
            return DP_ERR_NOMEM;
        }
        it->key_len = key_len;
        ev_digest(ps->body + raw_off, raw_len, it->digest);
    }
    b->n++;
    it->index = ps->next_index++;
    it->raw = ps->body + raw_off;
    it->raw_len = raw_len;
    it->type = t;
    it->error = shared != NULL ? shared : copy;
    it->error_shared = shared != NULL;
    if (it->error == NULL) {
        b->n_valid++;
    }
    return 0;
}

/*
 * The dispatcher: what every event must satisfy before its type looks at it.
 * Sets *type to the resolved type (NULL when unknown) even when invalid, and *key to the
 * event's idempotency_key when that is valid (even when the event is not).
 */
static int
dispatch(const json_t *v, const struct ev_type *url_type, const struct ev_type **type,
         const json_t **key, char err[EV_ERR_MAX])
{
    const struct ev_type *t = url_type;
    const json_t *name;
    char q[EV_QUOTE_MAX * 4 + 8];
    const char *s;
    size_t n;
    int rc;

    *type = url_type;
    *key = NULL;
    if (!json_is_object(v)) {
        return ev_type_err(err, "event", "object", v);
    }
    name = json_object_get(v, EV_KEY_FIELD);
    if (name != NULL) {
        if (!json_is_string(name)) {
            return ev_type_err(err, EV_KEY_FIELD, "string", name);
        }
        rc = ev_key_check(json_string_value(name), json_string_length(name), EV_KEY_FIELD, err);
        if (rc != 0) {
            return rc;
        }
        *key = name;
    }
    name = json_object_get(v, "event_name");
    if (name == NULL) {
        if (t == NULL) {
            return ev_errf(err, "event_name: required field missing (the URL names no type)");
        }
        return t->validate(t, v, err);
    }
    if (!json_is_string(name)) {
        return ev_type_err(err, "event_name", "string", name);
    }
    s = json_string_value(name);
    n = json_string_length(name);
    if (t == NULL) {
        t = ev_lookup(s, n);
        if (t == NULL) {
            char msg[EV_ERR_MAX];

            ev_unknown_type(msg, s, n);
            return ev_errf(err, "event_name: %s", msg);
        }
        *type = t;
    } else if (n != strlen(t->name) || memcmp(s, t->name, n) != 0) {
        ev_quote(q, sizeof(q), s, n);
        return ev_errf(err, "event_name: %s does not match the URL's type \"%s\"", q, t->name);
    }
    return t->validate(t, v, err);
}

/* Validate one parsed value (borrowed), the body's bytes start..end, and add it as an item. */
static int
push_checked(struct parser *ps, const json_t *v, size_t start, size_t end)
{
    const struct ev_type *t = NULL;
    const json_t *key = NULL;
    char err[EV_ERR_MAX];
    int rc;

    rc = dispatch(v, ps->type, &t, &key, err);
    if (rc == 0 && t->jsonb_numbers) {
        rc = ev_check_jsonb_numbers(ps->body + start, end - start, err);
    }
    return batch_push(ps, start, end - start, t, rc == 0 ? NULL : err,
                      key != NULL ? json_string_value(key) : NULL,
                      key != NULL ? json_string_length(key) : 0);
}

/* push_checked, then v (consumed) is released. */
static int
push_value(struct parser *ps, json_t *v, size_t start, size_t end)
{
    int rc = push_checked(ps, v, start, end);

    json_decref(v);
    return rc;
}

/* 1-based line and column (in characters) of the byte at offset at. */
static void
locate(struct parser *ps, size_t at, size_t *line, size_t *col)
{
    const char *nl;
    size_t i;
    size_t c = 0;

    if (at < ps->line_start) {
        ps->line = 1;
        ps->line_start = 0;
    }
    /* Errors come in body order, so the line count only moves forward. */
    while ((nl = memchr(ps->body + ps->line_start, '\n', at - ps->line_start)) != NULL) {
        ps->line++;
        ps->line_start = (size_t)(nl - ps->body) + 1;
    }
    for (i = ps->line_start; i <= at && i < ps->len; i++) {
        c += ((unsigned char)ps->body[i] & 0xc0) != 0x80;
    }
    *line = ps->line;
    *col = c ? c : 1;
}

/*
 * Add the malformed value that began at start and failed at offset at as one
 * rejected event, its raw bytes up to the end of that line. Parsing goes on
 * at the next line (*next), or stops at the end of the body.
 */
static int
push_malformed(struct parser *ps, size_t start, size_t at, const char *msg, size_t *next)
{
    char text[EV_SYNTAX_MAX + 64];
    size_t line;
    size_t col;
    const char *nl;
    size_t end;
    int rc;

    if (at >= ps->len) {
        at = ps->len - 1;
    }
    if (at < start) {
        at = start;
    }
    locate(ps, at, &line, &col);
    nl = memchr(ps->body + at, '\n', ps->len - at);
    end = nl ? (size_t)(nl - ps->body) : ps->len;
    *next = nl ? end + 1 : ps->len;
    snprintf(text, sizeof(text), "line %zu column %zu: %s", line, col, msg);
    rc = batch_push(ps, start, end - start, NULL, text, NULL, 0);
    if (rc == 0) {
        ps->out->items[ps->out->n - 1].malformed = true;
    }
    return rc;
}

/* A clear message for jansson's error; the parser's own text is kept, escaped. */
static void
syntax_message(const json_error_t *je, char *dst, size_t cap)
{
    char text[EV_SYNTAX_MAX - 96];

    ev_sanitize(text, sizeof(text), je->text, strnlen(je->text, sizeof(je->text)));
    switch (json_error_code(je)) {
    case json_error_invalid_utf8:
        snprintf(dst, cap, "invalid UTF-8: %s", text);
        break;
    case json_error_null_character:
        snprintf(dst, cap, "\\u0000 is not allowed in strings");
        break;
    case json_error_null_byte_in_key:
        snprintf(dst, cap, "\\u0000 is not allowed in object keys");
        break;
    case json_error_numeric_overflow:
        if (strstr(text, "integer") != NULL) {
            snprintf(dst, cap, "integer out of range (beyond 64-bit signed): %s", text);
        } else {
            snprintf(dst, cap, "number out of range (beyond double precision): %s", text);
        }
        break;
    default:
        snprintf(dst, cap, "invalid JSON: %s", text);
        break;
    }
}

/* Parse one value at p with jansson; on failure set *at and msg. */
static json_t *
load_at(struct parser *ps, size_t p, size_t *end, size_t *at, char *msg, int *rc)
{
    json_error_t je;
    json_t *v;

    *rc = 0;
    /*
     * jansson's buffer reader skips NUL bytes without counting them, which
     * would make the end position wrong: parse only up to the next NUL, which
     * is invalid anywhere in a JSON text.
     */
    if (ps->nul < p) {
        const char *z = memchr(ps->body + p, '\0', ps->len - p);

        ps->nul = z ? (size_t)(z - ps->body) : ps->len;
    }
    if (ps->nul == p && p < ps->len) {
        snprintf(msg, EV_SYNTAX_MAX, "invalid JSON: NUL byte");
        *at = p;
        return NULL;
    }
    v = ev_json_fast(ps->body + p, ps->nul - p, end);
    if (v != NULL) {
        *end += p;
        return v;
    }
    *at = ev_too_deep_at(ps->body, ps->nul, p);
    if (*at < ps->nul) {
        snprintf(msg, EV_SYNTAX_MAX, "invalid JSON: nested deeper than %d levels", EV_MAX_DEPTH);
        return NULL;
    }
    v = json_loadb(ps->body + p, ps->nul - p, EV_JSON_FLAGS, &je);
    if (v != NULL) {
        *end = p + (size_t)je.position;
        return v;
    }
    if (json_error_code(&je) == json_error_out_of_memory) {
        *rc = DP_ERR_NOMEM;
        return NULL;
    }
    if (ps->nul < ps->len && p + (size_t)je.position >= ps->nul) {
        snprintf(msg, EV_SYNTAX_MAX, "invalid JSON: NUL byte");
        *at = ps->nul;
        return NULL;
    }
    syntax_message(&je, msg, EV_SYNTAX_MAX);
    *at = p + (je.position > 0 ? (size_t)je.position - 1 : 0);
    return NULL;
}

/* Drop the items of a malformed array (from item first on): it counts as one event. */
static void
drop_items(struct parser *ps, size_t first, size_t index)
{
    struct ev_batch *b = ps->out;

    while (b->n > first) {
        struct ev_item *it = &b->items[--b->n];

        if (it->error == NULL) {
            b->n_valid--;
        }
        if (!it->error_shared) {
            free(it->error);
        }
        free(it->key);
    }
    ps->next_index = index;
}

/* An array at start: each element is an event. */
static int
parse_array(struct parser *ps, size_t start, size_t *next)
{
    size_t first = ps->out->n;
    size_t index = ps->next_index;
    char msg[EV_SYNTAX_MAX];
    size_t p = skip_ws(ps, start + 1);
    size_t at = 0;
    size_t end = 0;
    json_t *v;
    int rc;

    if (p < ps->len && ps->body[p] == ']') {
        *next = p + 1;
        return 0;
    }
    for (;;) {
        v = load_at(ps, p, &end, &at, msg, &rc);
        if (v == NULL) {
            if (rc != 0) {
                return rc;
            }
            break;
        }
        rc = push_value(ps, v, p, end);
        if (rc != 0) {
            return rc;
        }
        p = skip_ws(ps, end);
        if (p >= ps->len) {
            snprintf(msg, sizeof(msg), "invalid JSON: ',' or ']' expected near end of file");
            at = ps->len - 1;
            break;
        }
        if (ps->body[p] == ']') {
            *next = p + 1;
            return 0;
        }
        if (ps->body[p] != ',') {
            snprintf(msg, sizeof(msg), "invalid JSON: ',' or ']' expected");
            at = p;
            break;
        }
        p = skip_ws(ps, p + 1);
    }
    drop_items(ps, first, index);
    return push_malformed(ps, start, at, msg, next);
}

/* Any other value at start: one event. */
static int
parse_single(struct parser *ps, size_t start, size_t *next)
{
    char msg[EV_SYNTAX_MAX];
    size_t at = 0;
    size_t end = 0;
    json_t *v;
    int rc;

    v = load_at(ps, start, &end, &at, msg, &rc);
    if (v == NULL) {
        return rc != 0 ? rc : push_malformed(ps, start, at, msg, next);
    }
    *next = end;
    return push_value(ps, v, start, end);
}

int
ev_parse_body(const char *body, size_t len, const struct ev_type *type, struct ev_batch *out)
{
    struct parser ps = {
        .body = body,
        .len = len,
        .type = type,
        .out = out,
        .next_index = 0,
        .line = 1,
        .line_start = 0,
        .nul = len,
    };
    const char *z = memchr(body, '\0', len);
    size_t p = 0;
    int rc = 0;

    if (z != NULL) {
        ps.nul = (size_t)(z - body);
    }

    /* Some clients (PowerShell, Notepad) start a body with a UTF-8 byte order mark. */
    if (len >= 3 && memcmp(body, "\xef\xbb\xbf", 3) == 0) {
        p = 3;
    }
    p = skip_ws(&ps, p);
    if (p >= len) {
        return DP_ERR_INVALID;
    }
    while (p < len) {
        size_t next = len;

        if (body[p] == '[') {
            rc = parse_array(&ps, p, &next);
        } else {
            rc = parse_single(&ps, p, &next);
        }
        if (rc != 0) {
            goto out;
        }
        p = skip_ws(&ps, next);
    }
out:
    return rc;
}

int
ev_batch_charge(struct ev_batch *b, size_t bytes)
{
    if (b->charge == NULL || bytes == 0) {
        return 0;
    }
    return b->charge(b->charge_arg, bytes) == 0 ? 0 : DP_ERR_BUSY;
}

int
ev_batch_add(struct ev_batch *b, const char *raw, size_t len, const struct ev_type *t,
             const char *error)
{
    struct parser ps = {
        .body = raw,
        .len = len,
        .type = t,
        .out = b,
        .next_index = b->n,
        .line = 1,
        .line_start = 0,
        .nul = len,
    };
    const char *z = memchr(raw, '\0', len);
    char msg[EV_SYNTAX_MAX];
    size_t p = skip_ws(&ps, 0);
    size_t at = 0;
    size_t end = 0;
    json_t *v;
    int rc;

    if (error != NULL) {
        return batch_push(&ps, 0, len, t, error, NULL, 0);
    }
    if (z != NULL) {
        ps.nul = (size_t)(z - raw);
    }
    if (p >= len) {
        return batch_push(&ps, 0, len, t, "event: expected object, got nothing", NULL, 0);
    }
    v = load_at(&ps, p, &end, &at, msg, &rc);
    if (v == NULL) {
        size_t next = len;

        return rc != 0 ? rc : push_malformed(&ps, p, at, msg, &next);
    }
    if (skip_ws(&ps, end) < len) {
        json_decref(v);
        locate(&ps, skip_ws(&ps, end), &at, &end);
        snprintf(msg, sizeof(msg), "line %zu column %zu: invalid JSON: end of event expected", at,
                 end);
        return batch_push(&ps, 0, len, t, msg, NULL, 0);
    }
    return push_value(&ps, v, p, end);
}

int
ev_batch_add_value(struct ev_batch *b, const char *raw, size_t len, const struct ev_type *t,
                   const json_t *v)
{
    struct parser ps = {
        .body = raw,
        .len = len,
        .type = t,
        .out = b,
        .next_index = b->n,
        .line = 1,
        .line_start = 0,
        .nul = len,
    };

    return push_checked(&ps, v, 0, len);
}

void
ev_batch_free(struct ev_batch *b)
{
    size_t i;

    if (b == NULL) {
        return;
    }
    for (i = 0; i < b->n; i++) {
        if (!b->items[i].error_shared) {
            free(b->items[i].error);
        }
        free(b->items[i].key);
    }
    free(b->items);
    b->items = NULL;
    b->n = 0;
    b->cap = 0;
    b->n_valid = 0;
    b->too_many = false;
}

static bool
only_ws(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') {
            return false;
        }
    }
    return true;
}

int
ev_encode(const struct ev_type *t, const struct ev_stored *ev, struct ev_buf *out,
          char err[EV_ERR_MAX])
{
    char text[EV_SYNTAX_MAX];
    json_error_t je;
    json_t *obj = NULL;
    const json_t *name;
    size_t used = 0;
    int rc;

    if (memchr(ev->json, '\0', ev->json_len) != NULL) {
        rc = ev_errf(err, "stored event does not parse: invalid JSON: NUL byte");
        goto out;
    }
    obj = ev_json_fast(ev->json, ev->json_len, &used);
    if (obj != NULL && !only_ws(ev->json + used, ev->json_len - used)) {
        json_decref(obj);
        obj = NULL;
    }
    if (obj == NULL) {
        obj = json_loadb(ev->json, ev->json_len, JSON_REJECT_DUPLICATES, &je);
    }
    if (obj == NULL) {
        if (json_error_code(&je) == json_error_out_of_memory) {
            return DP_ERR_NOMEM;
        }
        syntax_message(&je, text, sizeof(text));
        rc = ev_errf(err, "stored event does not parse: %s", text);
        goto out;
    }
    if (!json_is_object(obj)) {
        rc = ev_type_err(err, "event", "object", obj);
        goto out;
    }
    name = json_object_get(obj, "event_name");
    if (name != NULL && (!json_is_string(name) || strcmp(json_string_value(name), t->name) != 0 ||
                         json_string_length(name) != strlen(t->name))) {
        rc = ev_errf(err, "event_name: does not match the type \"%s\"", t->name);
        goto out;
    }
    rc = t->encode_row(t, ev, obj, out, err);
out:
    json_decref(obj);
    return rc;
}

int
ev_batch_set_key(struct ev_batch *b, size_t i, const char *key, size_t len, const char *what)
{
    return ev_batch_set_key_digest(b, i, key, len, what, NULL);
}

/* ev_batch_set_key_digest; derived: the server's own key (ev_key_check_derived). */
static int
set_key(struct ev_batch *b, size_t i, const char *key, size_t len, const char *what,
        const uint8_t digest[EV_DIGEST_LEN], bool derived)
{
    struct ev_item *it = NULL;
    char err[EV_ERR_MAX];
    char *copy = NULL;
    int rc;

    /* No item i (a body of no event): nothing to key. Planted (etc/plant.h): item i used. */
    if (i >= b->n && !DP_PLANTED("empty_key_header")) {
        return DP_ERR_INVALID;
    }
    it = &b->items[i];
    rc = derived ? ev_key_check_derived(key, len, what, err) : ev_key_check(key, len, what, err);
    if (rc == 0 && it->key != NULL && (it->key_len != len || memcmp(it->key, key, len) != 0)) {
        rc = ev_errf(err, "%s: differs from the event's %s field", what, EV_KEY_FIELD);
    }
    if (rc != 0) {
        if (it->error != NULL) {
            /* Already rejected: the event's own error stands. */
            return DP_ERR_INVALID;
        }
        if (ev_batch_charge(b, strlen(err) + 1) != 0) {
            return DP_ERR_BUSY;
        }
        it->error = strdup(err);
        if (it->error == NULL) {
            return DP_ERR_NOMEM;
        }
        b->n_valid--;
        return DP_ERR_INVALID;
    }
    if (ev_batch_charge(b, len + 1) != 0) {
        return DP_ERR_BUSY;
    }
    copy = strndup(key, len);
    if (copy == NULL) {
        return DP_ERR_NOMEM;
    }
    free(it->key);
    it->key = copy;
    it->key_len = len;
    if (digest != NULL) {
        memcpy(it->digest, digest, EV_DIGEST_LEN);
    } else {
        ev_digest(it->raw, it->raw_len, it->digest);
    }
    return 0;
}

int
ev_batch_set_key_digest(struct ev_batch *b, size_t i, const char *key, size_t len, const char *what,
                        const uint8_t digest[EV_DIGEST_LEN])
{
    return set_key(b, i, key, len, what, digest, false);
}

int
ev_batch_set_derived_key(struct ev_batch *b, size_t i, const char *key, size_t len,
                         const char *what, const uint8_t digest[EV_DIGEST_LEN])
{
    return set_key(b, i, key, len, what, digest, true);
}
