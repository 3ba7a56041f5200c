/*
 * cloudevents.c - CloudEvents 1.0 into events: the JSON format (one object, or a batch
 * array) and the binary mode's attributes. A CloudEvent's type names the event type, its
 * data is the event, its source and id give the idempotency key. Pure: the HTTP side
 * (content types, ce-* headers) is in server/ingest.c. Never stores an attribute silently
 * changed: a CloudEvent that breaks a rule is rejected naming the attribute.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etc/err.h"
#include "etc/plant.h"
#include "events/internal.h"

#define CE_KEY_HASH_PREFIX "ce-sha256:"

size_t
ev_cloudevent_key(const char *source, size_t source_len, const char *id, size_t id_len,
                  char out[EV_KEY_MAX + 1])
{
    uint8_t md[EV_DIGEST_LEN];
    unsigned int mdlen = sizeof(md);
    char prefix[24];
    EVP_MD_CTX *ctx = NULL;
    size_t plen;
    size_t n;

    /*
     * The source's length first: "/a b" + "c" and "/a" + "b c" are "4:/a bc" and "2:/ab c".
     * A direct key starts with a digit, a hashed one with a letter: they never meet either.
     */
    plen = (size_t)snprintf(prefix, sizeof(prefix), "%zu:", source_len);
    if (DP_PLANTED("ce_key_concat") && source_len + 1 + id_len <= EV_KEY_MAX) {
        /* Planted (etc/plant.h): source, a space, id: "/a b" + "c" is "/a" + "b c". */
        return (size_t)snprintf(out, EV_KEY_MAX + 1, "%.*s %.*s", (int)source_len, source,
                                (int)id_len, id);
    }
    if (plen + source_len + id_len <= EV_KEY_MAX) {
        memcpy(out, prefix, plen);
        memcpy(out + plen, source, source_len);
        memcpy(out + plen + source_len, id, id_len);
        out[plen + source_len + id_len] = '\0';
        return plen + source_len + id_len;
    }
    memset(md, 0, sizeof(md));
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, prefix, plen) != 1 ||
        EVP_DigestUpdate(ctx, source, source_len) != 1 || EVP_DigestUpdate(ctx, id, id_len) != 1 ||
        EVP_DigestFinal_ex(ctx, md, &mdlen) != 1) {
        /* Out of memory only: the all-zero digest makes a later event a conflict, not lost. */
        memset(md, 0, sizeof(md));
    }
    EVP_MD_CTX_free(ctx);
    n = (size_t)snprintf(out, EV_KEY_MAX + 1, "%s", CE_KEY_HASH_PREFIX);
    for (size_t i = 0; i < sizeof(md); i++) {
        n += (size_t)snprintf(out + n, EV_KEY_MAX + 1 - n, "%02x", md[i]);
    }
    return n;
}

/*
 * Where the JSON object or array starting at body[p] ends (the offset after its closing
 * bracket), or len when it does not end: a scan of brackets outside strings, no parsing
 * (what is inside is checked by the event splitter).
 */
static size_t
ce_value_end(const char *body, size_t len, size_t p)
{
    size_t depth = 0;
    bool in_string = false;

    for (; p < len; p++) {
        char c = body[p];

        if (in_string) {
            if (c == '\\') {
                p++;
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if ((c == '}' || c == ']') && depth > 0 && --depth == 0) {
            return p + 1;
        }
    }
    return len;
}

/*
 * A CloudEvents String attribute (CloudEvents 1.0, type system): present, a non-empty
 * string without control characters (U+0000-U+001F, U+007F-U+009F).
 */
static int
ce_string(const char *name, const char *s, size_t n, char err[EV_ERR_MAX])
{
    const unsigned char *u = (const unsigned char *)s;

    if (s == NULL) {
        return ev_errf(err, "%s: required attribute missing", name);
    }
    if (n == 0) {
        return ev_errf(err, "%s: must not be empty", name);
    }
    for (size_t i = 0; i < n;) {
        size_t len = ev_utf8_len(u + i, n - i);

        if (len == 0) {
            return ev_errf(err, "%s: invalid UTF-8 at byte %zu", name, i);
        }
        if (u[i] < 0x20 || u[i] == 0x7f || (len == 2 && u[i] == 0xc2 && u[i + 1] < 0xa0)) {
            return ev_errf(err, "%s: control character at byte %zu", name, i);
        }
        i += len;
    }
    return 0;
}

/*
 * Check the four required attributes (NULL: absent) and resolve the type. Returns 0 with
 * *t set, or DP_ERR_INVALID with the message in err.
 */
static int
ce_attrs_check(const struct ev_ce_attrs *a, const struct ev_type **t, char err[EV_ERR_MAX])
{
    char q[EV_QUOTE_MAX * 4 + 8];
    int rc;

    *t = NULL;
    rc = ce_string("specversion", a->specversion, a->specversion ? strlen(a->specversion) : 0, err);
    if (rc == 0 && strcmp(a->specversion, "1.0") != 0) {
        ev_quote(q, sizeof(q), a->specversion, strlen(a->specversion));
        rc = ev_errf(err, "specversion: %s is not supported (expected \"1.0\")", q);
    }
    if (rc == 0) {
        rc = ce_string("id", a->id, a->id ? strlen(a->id) : 0, err);
    }
    if (rc == 0) {
        rc = ce_string("source", a->source, a->source ? strlen(a->source) : 0, err);
    }
    if (rc == 0) {
        rc = ce_string("type", a->type, a->type ? strlen(a->type) : 0, err);
    }
    if (rc == 0) {
        *t = ev_lookup(a->type, strlen(a->type));
        if (*t == NULL) {
            ev_quote(q, sizeof(q), a->type, strlen(a->type));
            rc = ev_errf(err, "type: unknown event type %s", q);
        }
    }
    return rc;
}

/* The attribute `name` of o as a C string, or NULL when absent; a non-string is an error. */
static int
ce_member(const json_t *o, const char *name, const char **out, char err[EV_ERR_MAX])
{
    const json_t *v = json_object_get(o, name);

    *out = NULL;
    if (v == NULL) {
        return 0;
    }
    if (!json_is_string(v)) {
        return ev_type_err(err, name, "string", v);
    }
    /* jansson refuses \u0000 in strings: the C string is the whole value. */
    *out = json_string_value(v);
    return 0;
}

/* Add the event item of a checked CloudEvent: data's bytes as type t, keyed by source, id. */
static int
ce_add_event(struct ev_batch *out, const char *data, size_t data_len, const struct ev_type *t,
             const struct ev_ce_attrs *a)
{
    char key[EV_KEY_MAX + 1];
    size_t key_len;
    int rc;

    rc = ev_batch_add(out, data, data_len, t, NULL);
    if (rc != 0) {
        return rc;
    }
    key_len = ev_cloudevent_key(a->source, strlen(a->source), a->id, strlen(a->id), key);
    rc = ev_batch_set_key(out, out->n - 1, key, key_len, "source + id");
    return rc == DP_ERR_NOMEM || rc == DP_ERR_BUSY ? rc : 0;
}

/* Check the JSON-format CloudEvent o (its bytes: raw) and add its item. */
static int
ce_object(struct ev_batch *out, const json_t *o, const char *raw, size_t raw_len)
{
    struct ev_ce_attrs a = {0};
    const struct ev_type *t = NULL;
    const json_t *data;
    const char *span = NULL;
    size_t span_len = 0;
    char err[EV_ERR_MAX];
    int rc;

    if (!json_is_object(o)) {
        ev_type_err(err, "cloudevent", "object", o);
        return ev_batch_add(out, raw, raw_len, NULL, err);
    }
    rc = ce_member(o, "specversion", &a.specversion, err);
    if (rc == 0) {
        rc = ce_member(o, "id", &a.id, err);
    }
    if (rc == 0) {
        rc = ce_member(o, "source", &a.source, err);
    }
    if (rc == 0) {
        rc = ce_member(o, "type", &a.type, err);
    }
    if (rc == 0) {
        rc = ce_attrs_check(&a, &t, err);
    }
    data = json_object_get(o, "data");
    if (rc == 0 && data == NULL && json_object_get(o, "data_base64") != NULL) {
        rc = ev_errf(err, "data_base64: not supported (send the event as the object data)");
    } else if (rc == 0 && data == NULL) {
        rc = ev_errf(err, "data: required (the event, an object)");
    } else if (rc == 0 && !json_is_object(data)) {
        rc = ev_type_err(err, "data", "object", data);
    }
    if (rc == 0) {
        rc = ev_member_span(raw, raw_len, "data", &span, &span_len);
        if (rc == DP_ERR_NOMEM) {
            return rc;
        }
        if (rc != 0) {
            rc = ev_errf(err, "data: not found in the cloudevent's bytes");
        }
    }
    if (rc != 0) {
        return ev_batch_add(out, raw, raw_len, t, err);
    }
    return ce_add_event(out, span, span_len, t, &a);
}

int
ev_parse_cloudevents(const char *body, size_t len, bool batch, struct ev_batch *out)
{
    struct ev_batch split = {0};
    size_t p = 0;
    int rc;

    while (p < len && strchr(" \t\r\n", body[p]) != NULL && body[p] != '\0') {
        p++;
    }
    if (p >= len || (batch && body[p] != '[') || (!batch && body[p] == '[')) {
        return DP_ERR_INVALID;
    }
    /* One JSON value, one array or one object: a second value after it is not a CloudEvent. */
    if (body[p] == '[' || body[p] == '{') {
        size_t end = ce_value_end(body, len, p);

        while (end < len && strchr(" \t\r\n", body[end]) != NULL && body[end] != '\0') {
            end++;
        }
        if (end < len) {
            return DP_ERR_INVALID;
        }
    }
    /*
     * The event splitter finds each value's exact bytes, with its depth guard and its
     * syntax messages; what it thinks of them as events does not matter here.
     */
    split.max_events = out->max_events;
    split.charge = out->charge;
    split.charge_arg = out->charge_arg;
    rc = ev_parse_body(body, len, NULL, &split);
    out->too_many = split.too_many;
    for (size_t i = 0; rc == 0 && i < split.n; i++) {
        const struct ev_item *it = &split.items[i];
        json_error_t je;
        json_t *o;

        if (it->malformed) {
            rc = ev_batch_add(out, it->raw, it->raw_len, NULL, it->error);
            continue;
        }
        o = json_loadb(it->raw, it->raw_len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
        if (o == NULL) {
            rc = json_error_code(&je) == json_error_out_of_memory
                     ? DP_ERR_NOMEM
                     : ev_batch_add(out, it->raw, it->raw_len, NULL, "cloudevent: invalid JSON");
            continue;
        }
        rc = ce_object(out, o, it->raw, it->raw_len);
        json_decref(o);
    }
    ev_batch_free(&split);
    return rc;
}

int
ev_parse_cloudevent_binary(const char *body, size_t len, const struct ev_ce_attrs *a,
                           struct ev_batch *out, char err[EV_ERR_MAX])
{
    const struct ev_type *t = NULL;
    int rc;

    rc = ce_attrs_check(a, &t, err);
    if (rc != 0) {
        return rc;
    }
    return ce_add_event(out, body, len, t, a);
}
