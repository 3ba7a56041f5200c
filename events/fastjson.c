/*
 * fastjson.c - a strict little JSON reader for the common case of body
 * parsing: it builds the same jansson values as jansson's own parser, several
 * times faster, and gives up (NULL) on anything invalid or unusual, so that
 * jansson decides and words the error. It must never accept more than jansson.
 */
#include <errno.h>
#include <math.h>
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
