/*
 * buf.c - the growable byte buffer and the PostgreSQL COPY formats: text
 * (escaping, bytea hex, timestamps, uuids) and binary, rows built column by
 * column in either. Never writes a value PostgreSQL would read back differently.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etc/err.h"
#include "events/internal.h"

int
ev_buf_reserve(struct ev_buf *b, size_t extra)
{
    size_t need;
    size_t cap;
    char *p;

    if (extra > SIZE_MAX - b->len) {
        return DP_ERR_NOMEM;
    }
    need = b->len + extra;
    if (need <= b->cap) {
        return 0;
    }
    cap = b->cap ? b->cap : 256;
    while (cap < need) {
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    }
    p = realloc(b->data, cap);
    if (p == NULL) {
        return DP_ERR_NOMEM;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int
ev_buf_put(struct ev_buf *b, const void *p, size_t n)
{
    int rc;

    if (n == 0) {
        return 0;
    }
    rc = ev_buf_reserve(b, n);
    if (rc != 0) {
        return rc;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

/* The escape for byte c in a COPY text value, or 0 if c goes as it is. */
static char
copy_escape(unsigned char c)
{
    switch (c) {
    case '\\':
        return '\\';
    case '\t':
        return 't';
    case '\n':
        return 'n';
    case '\r':
        return 'r';
    case '\b':
        return 'b';
    case '\f':
        return 'f';
    case '\v':
        return 'v';
    default:
        return 0;
    }
}

int
ev_buf_put_copy_text(struct ev_buf *b, const char *s, size_t n)
{
    size_t i;
    size_t run = 0; /* start of the pending run of plain bytes */
    char *w;
    int rc;

    /* Worst case every byte doubles; reserving it once keeps the loop simple. */
    if (n > SIZE_MAX / 2) {
        return DP_ERR_NOMEM;
    }
    rc = ev_buf_reserve(b, n * 2);
    if (rc != 0) {
        return rc;
    }
    w = b->data + b->len;
    for (i = 0; i < n; i++) {
        char e = copy_escape((unsigned char)s[i]);

        if (e == 0) {
            continue;
        }
        memcpy(w, s + run, i - run);
        w += i - run;
        *w++ = '\\';
        *w++ = e;
        run = i + 1;
    }
    memcpy(w, s + run, n - run);
    w += n - run;
    b->len = (size_t)(w - b->data);
    return 0;
}

int
ev_buf_put_copy_bytea(struct ev_buf *b, const void *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = p;
    char *w;
    size_t i;
    int rc;

    if (n > (SIZE_MAX - 3) / 2) {
        return DP_ERR_NOMEM;
    }
    rc = ev_buf_reserve(b, 3 + n * 2);
    if (rc != 0) {
        return rc;
    }
    /* bytea's "\x" prefix, its backslash doubled for COPY text. */
    w = b->data + b->len;
    *w++ = '\\';
    *w++ = '\\';
    *w++ = 'x';
    for (i = 0; i < n; i++) {
        *w++ = hex[s[i] >> 4];
        *w++ = hex[s[i] & 15];
    }
    b->len = (size_t)(w - b->data);
    return 0;
}

static void
civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    int64_t era;
    int64_t doe;
    int64_t yoe;
    int64_t doy;
    int64_t mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static char *
put_digits(char *w, int64_t v, int width)
{
    int i;

    for (i = width - 1; i >= 0; i--) {
        w[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return w + width;
}

int
ev_buf_put_timestamp(struct ev_buf *b, int64_t us)
{
    int64_t days;
    int64_t rem;
    int64_t y;
    int m;
    int d;
    char tmp[64];
    char *w = tmp;
    bool bc;

    /* Floor division: instants before 1970 still have a positive time of day. */
    days = us / INT64_C(86400000000);
    rem = us % INT64_C(86400000000);
    if (rem < 0) {
        rem += INT64_C(86400000000);
        days--;
    }
    civil_from_days(days, &y, &m, &d);
    /* PostgreSQL has no year 0: year 0 is 1 BC. */
    bc = y <= 0;
    if (bc) {
        y = 1 - y;
    }
    if (y > 9999) {
        w += snprintf(w, 24, "%" PRId64, y);
    } else {
        w = put_digits(w, y, 4);
    }
    *w++ = '-';
    w = put_digits(w, m, 2);
    *w++ = '-';
    w = put_digits(w, d, 2);
    *w++ = ' ';
    w = put_digits(w, rem / INT64_C(3600000000), 2);
    *w++ = ':';
    w = put_digits(w, rem / 60000000 % 60, 2);
    *w++ = ':';
    w = put_digits(w, rem / 1000000 % 60, 2);
    *w++ = '.';
    w = put_digits(w, rem % 1000000, 6);
    memcpy(w, "+00", 3);
    w += 3;
    if (bc) {
        memcpy(w, " BC", 3);
        w += 3;
    }
    return ev_buf_put(b, tmp, (size_t)(w - tmp));
}

void
ev_uuid_format(const uint8_t uuid[16], char out[EV_UUID_TEXT])
{
    static const char hex[] = "0123456789abcdef";
    char *w = out;

    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            *w++ = '-';
        }
        *w++ = hex[uuid[i] >> 4];
        *w++ = hex[uuid[i] & 15];
    }
    *w = '\0';
}

int
ev_buf_put_uuid(struct ev_buf *b, const uint8_t uuid[16])
{
    char tmp[EV_UUID_TEXT];

    ev_uuid_format(uuid, tmp);
    return ev_buf_put(b, tmp, EV_UUID_TEXT - 1);
}

void
ev_buf_free(struct ev_buf *b)
{
    if (b == NULL) {
        return;
    }
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

static int
hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

int
ev_uuid_parse(const char *s, uint8_t out[16])
{
    uint8_t tmp[16];
    size_t i;
    size_t k = 0;

    if (s == NULL) {
        return DP_ERR_INVALID;
    }
    for (i = 0; i < 36; i++) {
        int hi;
        int lo;

        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') {
                return DP_ERR_INVALID;
            }
            continue;
        }
        hi = hex_value(s[i]);
        lo = hi < 0 ? -1 : hex_value(s[i + 1]);
        if (lo < 0) {
            return DP_ERR_INVALID;
        }
        tmp[k++] = (uint8_t)(hi << 4 | lo);
        i++;
    }
    if (s[36] != '\0') {
        return DP_ERR_INVALID;
    }
    memcpy(out, tmp, sizeof(tmp));
    return 0;
}

/*
 * COPY's binary format (PostgreSQL's "COPY" page, "Binary Format"): a row is a 16-bit
 * column count, then per column a 32-bit length (-1: NULL) and the value in the type's
 * binary form, all integers big-endian. Timestamps count microseconds from 2000-01-01 UTC.
 */
#define ROW_PG_EPOCH_US INT64_C(946684800000000)

static void
row_put_be(struct ev_row *r, uint64_t v, size_t n)
{
    unsigned char tmp[8];

    for (size_t i = 0; i < n; i++) {
        tmp[i] = (unsigned char)(v >> (8 * (n - 1 - i)));
    }
    r->rc = ev_buf_put(r->b, tmp, n);
}

void
ev_row_begin(struct ev_row *r, struct ev_buf *b)
{
    r->b = b;
    r->start = b->len;
    r->cols = 0;
    r->rc = 0;
    if (b->binary) {
        row_put_be(r, 0, 2); /* the column count, set by ev_row_end */
    }
}

/* Start the next column: a tab before every column but the first (text format). */
static bool
row_next(struct ev_row *r)
{
    if (r->rc != 0) {
        return false;
    }
    if (r->cols++ > 0 && !r->b->binary) {
        r->rc = ev_buf_put(r->b, "\t", 1);
    }
    return r->rc == 0;
}

/* Start the next column with its binary length (the binary format). */
static bool
row_next_binary(struct ev_row *r, size_t n)
{
    if (!row_next(r)) {
        return false;
    }
    if (n > INT32_MAX) {
        r->rc = DP_ERR_INVALID;
        return false;
    }
    row_put_be(r, n, 4);
    return r->rc == 0;
}

void
ev_row_text(struct ev_row *r, const char *s, size_t n)
{
    if (r->b->binary) {
        if (row_next_binary(r, n)) {
            r->rc = ev_buf_put(r->b, s, n);
        }
    } else if (row_next(r)) {
        r->rc = ev_buf_put_copy_text(r->b, s, n);
    }
}

/* A bytea column of n bytes. */
static void
row_bytes(struct ev_row *r, const void *p, size_t n)
{
    if (r->b->binary) {
        if (row_next_binary(r, n)) {
            r->rc = ev_buf_put(r->b, p, n);
        }
    } else if (row_next(r)) {
        r->rc = ev_buf_put_copy_bytea(r->b, p, n);
    }
}

void
ev_row_key(struct ev_row *r, const struct ev_stored *ev)
{
    uint8_t digest[EV_DIGEST_LEN];

    if (ev->key_len > 0) {
        /* The digest the server compared the key's repeats with (events/key.c), so the
         * loader can tell a repeat (same digest) from a conflict (another one). */
        ev_digest(ev->json, ev->json_len, digest);
        ev_row_text(r, ev->key, ev->key_len);
        row_bytes(r, digest, sizeof(digest));
    } else {
        ev_row_null(r);
        ev_row_null(r);
    }
}

void
ev_row_source(struct ev_row *r, const struct ev_stored *ev)
{
    if (ev->source_len > 0) {
        ev_row_text(r, ev->source, ev->source_len);
    } else {
        ev_row_null(r);
    }
}

void
ev_row_cstr(struct ev_row *r, const char *s)
{
    ev_row_text(r, s, strlen(s));
}

void
ev_row_null(struct ev_row *r)
{
    if (!row_next(r)) {
        return;
    }
    if (r->b->binary) {
        row_put_be(r, UINT32_MAX, 4); /* length -1 */
    } else {
        r->rc = ev_buf_put(r->b, "\\N", 2);
    }
}

void
ev_row_i64(struct ev_row *r, int64_t v)
{
    char tmp[24];
    int n;

    if (r->b->binary) {
        if (row_next_binary(r, 8)) {
            row_put_be(r, (uint64_t)v, 8);
        }
    } else if (row_next(r)) {
        n = snprintf(tmp, sizeof(tmp), "%" PRId64, v);
        r->rc = ev_buf_put(r->b, tmp, (size_t)n);
    }
}

void
ev_row_f64(struct ev_row *r, double v)
{
    char tmp[40];
    uint64_t bits;
    int n;

    if (r->b->binary) {
        memcpy(&bits, &v, sizeof(bits));
        if (row_next_binary(r, 8)) {
            row_put_be(r, bits, 8);
        }
        return;
    }
    /* 17 significant digits read back to the same double in float8. */
    if (row_next(r)) {
        n = snprintf(tmp, sizeof(tmp), "%.17g", v);
        /* A caller's setlocale may make the decimal point a comma: PostgreSQL wants a dot. */
        for (char *c = tmp; *c != '\0'; c++) {
            if (*c == ',') {
                *c = '.';
            }
        }
        r->rc = ev_buf_put(r->b, tmp, (size_t)n);
    }
}

void
ev_row_uuid(struct ev_row *r, const uint8_t uuid[16])
{
    if (r->b->binary) {
        if (row_next_binary(r, 16)) {
            r->rc = ev_buf_put(r->b, uuid, 16);
        }
    } else if (row_next(r)) {
        r->rc = ev_buf_put_uuid(r->b, uuid);
    }
}

void
ev_row_time(struct ev_row *r, int64_t us)
{
    if (!r->b->binary) {
        if (row_next(r)) {
            r->rc = ev_buf_put_timestamp(r->b, us);
        }
        return;
    }
    /*
     * Below PostgreSQL's range the difference would wrap: INT64_MIN + 1 is out of range,
     * so PostgreSQL refuses the row as it refuses the text of such an instant.
     */
    us = us <= INT64_MIN + ROW_PG_EPOCH_US ? INT64_MIN + 1 : us - ROW_PG_EPOCH_US;
    if (row_next_binary(r, 8)) {
        row_put_be(r, (uint64_t)us, 8);
    }
}

int
ev_row_end(struct ev_row *r)
{
    if (r->rc == 0 && r->b->binary) {
        if (r->cols > INT16_MAX) {
            r->rc = DP_ERR_INVALID;
        } else {
            r->b->data[r->start] = (char)(r->cols >> 8);
            r->b->data[r->start + 1] = (char)(r->cols & 0xff);
        }
    } else if (r->rc == 0) {
        r->rc = ev_buf_put(r->b, "\n", 1);
    }
    if (r->rc != 0) {
        r->b->len = r->start;
    }
    return r->rc;
}

int
ev_buf_put_strs(struct ev_buf *b, const char *first, ...)
{
    va_list ap;
    int rc = 0;

    va_start(ap, first);
    for (const char *s = first; rc == 0 && s != NULL; s = va_arg(ap, const char *)) {
        rc = ev_buf_put(b, s, strlen(s));
    }
    va_end(ap);
    return rc;
}
