/*
 * fastjson.c - a strict little JSON reader for the common case of body
 * parsing: it builds the same jansson values as jansson's own parser, several
 * times faster, and gives up (NULL) on anything invalid or unusual, so that
 * jansson decides and words the error; and views of JSON text already parsed (members,
 * elements, minified copies). It must never accept more than jansson.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events/internal.h"

#define FAST_MAX_DEPTH 32 /* deeper values go to jansson (limit 2048) */
#define FAST_NUM_MAX 64   /* longer number tokens go to jansson */

struct fast {
    const char *s;
    size_t n;
    size_t p; /* offset of the next byte to read */
};

static json_t *fast_value(struct fast *f, int depth);
static size_t skip_ws_at(const char *s, size_t n, size_t p);

static void
fast_ws(struct fast *f)
{
    while (f->p < f->n) {
        char c = f->s[f->p];

        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            return;
        }
        f->p++;
    }
}

static bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool
is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    int i;

    for (i = 0; i < 4; i++) {
        char c = s[i];

        v <<= 4;
        if (c >= '0' && c <= '9') {
            v |= (unsigned)(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            v |= (unsigned)(c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            v |= (unsigned)(c - 'A' + 10);
        } else {
            return false;
        }
    }
    *out = v;
    return true;
}

static size_t
put_utf8(char *w, unsigned cp)
{
    if (cp < 0x80) {
        w[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        w[0] = (char)(0xc0 | cp >> 6);
        w[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        w[0] = (char)(0xe0 | cp >> 12);
        w[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        w[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    w[0] = (char)(0xf0 | cp >> 18);
    w[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    w[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    w[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/*
 * Decode the escapes of the string body s[a..b) into buf (at least b - a
 * bytes: a decoded escape is never longer than its text). False for what
 * jansson rejects: bad hex, \u0000, lone surrogates.
 */
static bool
unescape(const char *s, size_t a, size_t b, char *buf, size_t *len)
{
    size_t w = 0;
    size_t i = a;

    while (i < b) {
        unsigned cp;
        unsigned lo;

        if (s[i] != '\\') {
            buf[w++] = s[i++];
            continue;
        }
        i++;
        switch (s[i++]) {
        case '"':
            buf[w++] = '"';
            continue;
        case '\\':
            buf[w++] = '\\';
            continue;
        case '/':
            buf[w++] = '/';
            continue;
        case 'b':
            buf[w++] = '\b';
            continue;
        case 'f':
            buf[w++] = '\f';
            continue;
        case 'n':
            buf[w++] = '\n';
            continue;
        case 'r':
            buf[w++] = '\r';
            continue;
        case 't':
            buf[w++] = '\t';
            continue;
        case 'u':
            break;
        default:
            return false;
        }
        if (b - i < 4 || !hex4(s + i, &cp) || cp == 0 || (cp >= 0xdc00 && cp <= 0xdfff)) {
            return false;
        }
        i += 4;
        if (cp >= 0xd800 && cp <= 0xdbff) {
            if (b - i < 6 || s[i] != '\\' || s[i + 1] != 'u' || !hex4(s + i + 2, &lo) ||
                lo < 0xdc00 || lo > 0xdfff) {
                return false;
            }
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            i += 6;
        }
        w += put_utf8(buf + w, cp);
    }
    *len = w;
    return true;
}

/*
 * The string at f->p (on its '"'). *out is a view into the input when it
 * has no escapes, else into *heap (malloc'd, the caller frees).
 */
static bool
fast_string(struct fast *f, char **heap, const char **out, size_t *out_len)
{
    const unsigned char *u = (const unsigned char *)f->s;
    size_t a = ++f->p;
    bool escaped = false;
    size_t b;

    for (;;) {
        unsigned char c;

        if (f->p >= f->n) {
            return false;
        }
        c = u[f->p];
        if (c == '"') {
            break;
        }
        if (c < 0x20) {
            return false;
        }
        if (c == '\\') {
            escaped = true;
            f->p += 2;
        } else if (c >= 0x80) {
            size_t len = ev_utf8_len(u + f->p, f->n - f->p);

            if (len == 0) {
                return false;
            }
            f->p += len;
        } else {
            f->p++;
        }
    }
    b = f->p++;
    if (!escaped) {
        *out = f->s + a;
        *out_len = b - a;
        return true;
    }
    *heap = malloc(b - a + 1);
    if (*heap == NULL || !unescape(f->s, a, b, *heap, out_len)) {
        return false;
    }
    *out = *heap;
    return true;
}

/* A number, with jansson's grammar: integers to int64 exactly, others to double. */
static json_t *
fast_number(struct fast *f)
{
    const char *s = f->s;
    size_t a = f->p;
    bool neg = false;
    bool real = false;
    uint64_t acc = 0;
    char tmp[FAST_NUM_MAX];
    char *end;
    double d;

    if (s[f->p] == '-') {
        neg = true;
        f->p++;
    }
    if (f->p >= f->n || !is_digit(s[f->p])) {
        return NULL;
    }
    if (s[f->p] == '0') {
        f->p++;
        if (f->p < f->n && is_digit(s[f->p])) {
            return NULL;
        }
    } else {
        while (f->p < f->n && is_digit(s[f->p])) {
            unsigned dgt = (unsigned)(s[f->p++] - '0');

            /* Past 2^63 it is out of range either way (or real): let jansson say. */
            if (acc > (UINT64_C(1) << 63) / 10 || acc * 10 + dgt > (UINT64_C(1) << 63)) {
                return NULL;
            }
            acc = acc * 10 + dgt;
        }
    }
    if (f->p < f->n && s[f->p] == '.') {
        real = true;
        if (++f->p >= f->n || !is_digit(s[f->p])) {
            return NULL;
        }
        while (f->p < f->n && is_digit(s[f->p])) {
            f->p++;
        }
    }
    if (f->p < f->n && (s[f->p] == 'e' || s[f->p] == 'E')) {
        real = true;
        f->p++;
        if (f->p < f->n && (s[f->p] == '+' || s[f->p] == '-')) {
            f->p++;
        }
        if (f->p >= f->n || !is_digit(s[f->p])) {
            return NULL;
        }
        while (f->p < f->n && is_digit(s[f->p])) {
            f->p++;
        }
    }
    if (!real) {
        if (!neg && acc > (uint64_t)INT64_MAX) {
            return NULL;
        }
        return json_integer(neg ? (json_int_t)(0 - acc) : (json_int_t)acc);
    }
    if (f->p - a >= sizeof(tmp)) {
        return NULL;
    }
    memcpy(tmp, s + a, f->p - a);
    tmp[f->p - a] = '\0';
    errno = 0;
    d = strtod(tmp, &end);
    /* A locale with another decimal point stops strtod early: jansson copes, we give up. */
    if (end != tmp + (f->p - a) || (errno == ERANGE && isinf(d))) {
        return NULL;
    }
    return json_real(d);
}

/* true, false or null, not followed by a letter (jansson reads the whole word). */
static json_t *
fast_word(struct fast *f)
{
    static const struct {
        const char *text;
        size_t len;
    } words[] = {{"true", 4}, {"false", 5}, {"null", 4}};
    size_t i;

    for (i = 0; i < 3; i++) {
        size_t len = words[i].len;

        if (f->n - f->p >= len && memcmp(f->s + f->p, words[i].text, len) == 0) {
            if (f->n - f->p > len && is_alpha(f->s[f->p + len])) {
                return NULL;
            }
            f->p += len;
            return i == 0 ? json_true() : i == 1 ? json_false() : json_null();
        }
    }
    return NULL;
}

/* Skip whitespace, then the separator: true after ',' (more follows), false after close. */
static int
fast_next(struct fast *f, char close)
{
    fast_ws(f);
    if (f->p < f->n && f->s[f->p] == ',') {
        f->p++;
        fast_ws(f);
        return 1;
    }
    if (f->p < f->n && f->s[f->p] == close) {
        f->p++;
        return 0;
    }
    return -1;
}

/* One "key": value member into obj; false on anything jansson must judge. */
static bool
fast_member(struct fast *f, json_t *obj, int depth)
{
    json_t *v = NULL;
    char *heap = NULL;
    const char *key;
    size_t key_len;
    bool ok = false;

    if (f->p >= f->n || f->s[f->p] != '"' || !fast_string(f, &heap, &key, &key_len)) {
        goto out;
    }
    fast_ws(f);
    if (f->p >= f->n || f->s[f->p] != ':') {
        goto out;
    }
    f->p++;
    fast_ws(f);
    v = fast_value(f, depth + 1);
    /* A duplicate key is an error for us (REJECT_DUPLICATES): jansson words it. */
    if (v == NULL || json_object_getn(obj, key, key_len) != NULL) {
        goto out;
    }
    /* The value is stolen, also on failure. */
    ok = json_object_setn_new_nocheck(obj, key, key_len, v) == 0;
    v = NULL;
out:
    json_decref(v);
    free(heap);
    return ok;
}

static json_t *
fast_object(struct fast *f, int depth)
{
    json_t *obj = json_object();
    json_t *result = NULL;
    int more;

    if (obj == NULL) {
        goto out;
    }
    f->p++;
    fast_ws(f);
    if (f->p < f->n && f->s[f->p] == '}') {
        f->p++;
    } else {
        do {
            if (!fast_member(f, obj, depth)) {
                goto out;
            }
            more = fast_next(f, '}');
        } while (more > 0);
        if (more < 0) {
            goto out;
        }
    }
    result = obj;
    obj = NULL;
out:
    json_decref(obj);
    return result;
}

static json_t *
fast_array(struct fast *f, int depth)
{
    json_t *arr = json_array();
    json_t *result = NULL;
    int more;

    if (arr == NULL) {
        goto out;
    }
    f->p++;
    fast_ws(f);
    if (f->p < f->n && f->s[f->p] == ']') {
        f->p++;
    } else {
        do {
            json_t *v = fast_value(f, depth + 1);

            if (v == NULL || json_array_append_new(arr, v) != 0) {
                goto out;
            }
            more = fast_next(f, ']');
        } while (more > 0);
        if (more < 0) {
            goto out;
        }
    }
    result = arr;
    arr = NULL;
out:
    json_decref(arr);
    return result;
}

static json_t *
fast_value(struct fast *f, int depth)
{
    char *heap = NULL;
    const char *str;
    size_t len;
    json_t *v;

    if (f->p >= f->n || depth > FAST_MAX_DEPTH) {
        return NULL;
    }
    switch (f->s[f->p]) {
    case '{':
        return fast_object(f, depth);
    case '[':
        return fast_array(f, depth);
    case '"':
        v = fast_string(f, &heap, &str, &len) ? json_stringn_nocheck(str, len) : NULL;
        free(heap);
        return v;
    case 't':
    case 'f':
    case 'n':
        return fast_word(f);
    default:
        return fast_number(f);
    }
}

json_t *
ev_json_fast(const char *s, size_t n, size_t *end)
{
    struct fast f = {.s = s, .n = n, .p = 0};
    json_t *v;

    fast_ws(&f);
    v = fast_value(&f, 0);
    if (v == NULL) {
        return NULL;
    }
    /*
     * jansson reads one byte past a number or a word, and an invalid UTF-8
     * sequence there fails the whole parse: leave such a case to jansson.
     */
    if (f.p < n && (unsigned char)s[f.p] >= 0x80 &&
        ev_utf8_len((const unsigned char *)s + f.p, n - f.p) == 0) {
        json_decref(v);
        return NULL;
    }
    *end = f.p;
    return v;
}

json_t *
ev_json_load(const char *s, size_t n, json_error_t *err)
{
    json_t *v = NULL;
    size_t end = 0;
    size_t p;

    v = ev_json_fast(s, n, &end);
    /* Without JSON_DECODE_ANY jansson takes only an object or an array, then the end. */
    if (v != NULL && (json_is_object(v) || json_is_array(v)) && skip_ws_at(s, n, end) == n) {
        return v;
    }
    json_decref(v);
    /* jansson would recurse once a level: refuse what could overflow a thread's stack. */
    p = skip_ws_at(s, n, 0);
    end = ev_too_deep_at(s, n, p);
    if (end < n) {
        memset(err, 0, sizeof(*err));
        err->line = 1;
        err->column = 1;
        for (size_t i = 0; i < end; i++) {
            err->line += s[i] == '\n';
            err->column = s[i] == '\n' ? 1 : err->column + 1;
        }
        err->position = (int)end;
        snprintf(err->text, sizeof(err->text), "nested deeper than %d levels", EV_MAX_DEPTH);
        return NULL;
    }
    return json_loadb(s, n, JSON_REJECT_DUPLICATES, err);
}

/* The offset just past the string of valid JSON text whose opening quote is at p - 1. */
static size_t
skip_string(const char *s, size_t n, size_t p)
{
    while (p < n) {
        const char *q = memchr(s + p, '"', n - p);
        size_t at;
        size_t escapes = 0;

        if (q == NULL) {
            return n;
        }
        at = (size_t)(q - s);
        /* An odd run of backslashes before it escapes the quote. */
        while (at - escapes > p && s[at - escapes - 1] == '\\') {
            escapes++;
        }
        if (escapes % 2 == 0) {
            return at + 1;
        }
        p = at + 1;
    }
    return n;
}

/* The offset just past the value of valid JSON text that starts at p. */
static size_t
skip_value(const char *s, size_t n, size_t p)
{
    int depth = 0;

    if (p < n && s[p] == '"') {
        return skip_string(s, n, p + 1);
    }
    if (p < n && s[p] != '{' && s[p] != '[') {
        /* A number or a word: up to the next delimiter. */
        while (p < n && s[p] != ',' && s[p] != '}' && s[p] != ']' && s[p] != ' ' && s[p] != '\t' &&
               s[p] != '\n' && s[p] != '\r') {
            p++;
        }
        return p;
    }
    for (; p < n; p++) {
        char c = s[p];

        if (c == '"') {
            p = skip_string(s, n, p + 1) - 1;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if ((c == '}' || c == ']') && --depth == 0) {
            return p + 1;
        }
    }
    return p;
}

static size_t
skip_ws_at(const char *s, size_t n, size_t p)
{
    while (p < n && (s[p] == ' ' || s[p] == '\t' || s[p] == '\n' || s[p] == '\r')) {
        p++;
    }
    return p;
}

bool
ev_json_cursor_open(struct ev_json_cursor *c, const char *s, size_t n)
{
    size_t p = skip_ws_at(s, n, 0);

    c->s = s;
    c->n = n;
    c->p = p + 1;
    c->object = p < n && s[p] == '{';
    c->count = 0;
    return p < n && (s[p] == '{' || s[p] == '[');
}

bool
ev_json_cursor_next(struct ev_json_cursor *c, struct ev_json_span *key, struct ev_json_span *val)
{
    size_t p = skip_ws_at(c->s, c->n, c->p);

    if (p < c->n && c->s[p] == ',') {
        p = skip_ws_at(c->s, c->n, p + 1);
    }
    if (p >= c->n || c->s[p] == '}' || c->s[p] == ']') {
        c->p = p;
        return false;
    }
    key->off = p;
    key->len = 0;
    if (c->object) {
        key->len = skip_value(c->s, c->n, p) - p;
        p = skip_ws_at(c->s, c->n, p + key->len);
        p = skip_ws_at(c->s, c->n, p + 1); /* the ':' */
    }
    val->off = p;
    val->len = skip_value(c->s, c->n, p) - p;
    c->p = p + val->len;
    return val->len > 0;
}

bool
ev_json_cursor_enter(struct ev_json_cursor *c, const char *name)
{
    struct ev_json_span k;
    size_t len = strlen(name);
    size_t p;

    while (c->object) {
        p = skip_ws_at(c->s, c->n, c->p);
        if (p < c->n && c->s[p] == ',') {
            p = skip_ws_at(c->s, c->n, p + 1);
        }
        if (p >= c->n || c->s[p] != '"') {
            return false;
        }
        k.off = p;
        k.len = skip_string(c->s, c->n, p + 1) - p;
        p = skip_ws_at(c->s, c->n, p + k.len);
        p = skip_ws_at(c->s, c->n, p + 1); /* the ':' */
        if (k.len == len + 2 && memcmp(c->s + k.off + 1, name, len) == 0) {
            if (p >= c->n || (c->s[p] != '{' && c->s[p] != '[')) {
                return false;
            }
            c->object = c->s[p] == '{';
            c->p = p + 1;
            return true;
        }
        c->p = skip_value(c->s, c->n, p);
    }
    return false;
}

size_t
ev_json_minify(char *dst, const char *s, size_t n)
{
    size_t w = 0;
    size_t p = 0;

    while (p < n) {
        char c = s[p];

        if (c == '"') {
            size_t end = skip_string(s, n, p + 1);

            memcpy(dst + w, s + p, end - p);
            w += end - p;
            p = end;
            continue;
        }
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            dst[w++] = c;
        }
        p++;
    }
    return w;
}

/* The offset just past the array of valid JSON text at p ('['); *count gets its elements. */
static size_t
skip_array(const char *s, size_t n, size_t p, size_t *count)
{
    int depth = 0;

    *count = 0;
    if (skip_ws_at(s, n, p + 1) < n && s[skip_ws_at(s, n, p + 1)] != ']') {
        *count = 1;
    }
    for (; p < n; p++) {
        char c = s[p];

        if (c == '"') {
            p = skip_string(s, n, p + 1) - 1;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if ((c == '}' || c == ']') && --depth == 0) {
            return p + 1;
        } else if (c == ',' && depth == 1) {
            (*count)++;
        }
    }
    return p;
}

json_t *
ev_json_load_lazy(const char *s, size_t n, const char *name, struct ev_json_cursor *c, bool *found)
{
    json_t *obj = json_object();
    json_t *key = NULL;
    json_t *v = NULL;
    size_t end;
    size_t p = skip_ws_at(s, n, 0);
    bool ok = false;

    *found = false;
    if (obj == NULL || p >= n || s[p] != '{') {
        goto out;
    }
    p = skip_ws_at(s, n, p + 1);
    if (p < n && s[p] == '}') {
        ok = skip_ws_at(s, n, p + 1) == n;
        goto out;
    }
    for (;;) {
        if (p >= n || s[p] != '"' || (key = ev_json_fast(s + p, n - p, &end)) == NULL) {
            goto out;
        }
        p = skip_ws_at(s, n, p + end);
        if (p >= n || s[p] != ':') {
            goto out;
        }
        p = skip_ws_at(s, n, p + 1);
        /* A duplicate name is jansson's to word (JSON_REJECT_DUPLICATES). */
        if (json_object_getn(obj, json_string_value(key), json_string_length(key)) != NULL ||
            (*found && strcmp(json_string_value(key), name) == 0)) {
            goto out;
        }
        if (strcmp(json_string_value(key), name) == 0 && p < n && s[p] == '[' && !*found &&
            strlen(name) == json_string_length(key)) {
            /* The cursor ends where the array seems to: its reader then checks it does. */
            c->s = s;
            c->p = p + 1;
            c->object = false;
            c->count = 0;
            *found = true;
            p = skip_array(s, n, p, &c->total);
            c->n = p;
        } else {
            v = ev_json_fast(s + p, n - p, &end);
            if (v == NULL || json_object_setn_new_nocheck(obj, json_string_value(key),
                                                          json_string_length(key), v) != 0) {
                v = NULL;
                goto out;
            }
            v = NULL;
            p += end;
        }
        json_decref(key);
        key = NULL;
        p = skip_ws_at(s, n, p);
        if (p < n && s[p] == ',') {
            p = skip_ws_at(s, n, p + 1);
            continue;
        }
        ok = p < n && s[p] == '}' && skip_ws_at(s, n, p + 1) == n;
        break;
    }
out:
    json_decref(key);
    if (!ok) {
        json_decref(obj);
        *found = false;
        return NULL;
    }
    return obj;
}

json_t *
ev_json_cursor_parse(struct ev_json_cursor *c, struct ev_json_span *span, bool *done)
{
    size_t p = skip_ws_at(c->s, c->n, c->p);
    size_t end = 0;
    json_t *v;

    *done = false;
    if (p < c->n && c->s[p] == ']') {
        *done = p + 1 == c->n;
        c->p = p + 1;
        return NULL;
    }
    if (c->count > 0) {
        if (p >= c->n || c->s[p] != ',') {
            return NULL;
        }
        p = skip_ws_at(c->s, c->n, p + 1);
    }
    v = ev_json_fast(c->s + p, c->n - p, &end);
    if (v == NULL) {
        return NULL;
    }
    span->off = p;
    span->len = end;
    c->p = p + end;
    c->count++;
    return v;
}

size_t
ev_too_deep_at(const char *s, size_t len, size_t p)
{
    size_t depth = 0;

    if (p >= len || (s[p] != '[' && s[p] != '{')) {
        return len;
    }
    for (; p < len; p++) {
        if (s[p] == '"') {
            for (p++; p < len && s[p] != '"'; p++) {
                p += s[p] == '\\' ? 1 : 0;
            }
        } else if (s[p] == '[' || s[p] == '{') {
            if (++depth > EV_MAX_DEPTH) {
                return p;
            }
        } else if ((s[p] == ']' || s[p] == '}') && --depth == 0) {
            return len;
        }
    }
    return len;
}
