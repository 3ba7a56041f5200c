/*
 * check.c - what every type's validator shares: the field-table walk, the
 * wording of errors, safe quoting of client text in messages, finding a
 * member's exact bytes in an event, and the checks built-in and declared types
 * both call (url, ip, RFC 3339 date-times, the calendar). Never echoes client
 * bytes unescaped; calls no other file of events/ (it is the bottom of the folder).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <uriparser/Uri.h>

#include "etc/err.h"
#include "events/internal.h"

#define TS_SYNTAX "not an RFC 3339 date-time (YYYY-MM-DDTHH:MM:SS[.frac] then Z or +hh:mm)"

int
ev_errf(char err[EV_ERR_MAX], const char *fmt, ...)
{
    va_list ap;

    size_t len;
    size_t lead;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(err, EV_ERR_MAX, fmt, ap);
    va_end(ap);
    if (n >= EV_ERR_MAX) {
        /* Cut before a character the limit split, so the text stays valid UTF-8. */
        len = strlen(err);
        lead = len;
        while (lead > 0 && ((unsigned char)err[lead - 1] & 0xc0) == 0x80) {
            lead--;
        }
        if (lead > 0 && (unsigned char)err[lead - 1] >= 0xc0) {
            unsigned char c = (unsigned char)err[lead - 1];
            size_t want = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;

            if (len - (lead - 1) < want) {
                err[lead - 1] = '\0';
            }
        }
    }
    return DP_ERR_INVALID;
}

const char *
ev_json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "unknown";
}

int
ev_type_err(char err[EV_ERR_MAX], const char *name, const char *want, const json_t *v)
{
    return ev_errf(err, "%s: expected %s, got %s", name, want, ev_json_kind(v));
}

/*
 * The length of the valid UTF-8 character at s (n > 0 bytes left), or 0 when
 * the bytes there are not one: overlong forms, surrogates and code points
 * above U+10FFFF are invalid.
 */
size_t
ev_utf8_len(const unsigned char *s, size_t n)
{
    size_t len;
    size_t i;
    unsigned cp;

    if (s[0] < 0x80) {
        return 1;
    } else if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
        cp = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        cp = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (n < len) {
        return 0;
    }
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    return len;
}

/*
 * Copy s into dst escaping what is not printable UTF-8; quote adds '"' around
 * and escapes '"' and '\\'; max_in limits the input bytes shown ("..." after).
 */
static void
copy_printable(char *dst, size_t cap, const char *s, size_t n, bool quote, size_t max_in)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t w = 0;
    size_t i = 0;
    size_t reserve = quote ? 5 : 4; /* room kept for '"', "...", '"' and NUL */

    if (cap < 8) {
        if (cap > 0) {
            dst[0] = '\0';
        }
        return;
    }
    if (quote) {
        dst[w++] = '"';
    }
    while (i < n && i < max_in) {
        size_t len = ev_utf8_len(u + i, n - i);
        char tmp[8];
        size_t tlen;

        if (len == 0 || u[i] < 0x20 || u[i] == 0x7f) {
            tlen = (size_t)snprintf(tmp, sizeof(tmp), "\\x%02x", u[i]);
            len = 1;
        } else if (quote && (u[i] == '"' || u[i] == '\\')) {
            tmp[0] = '\\';
            tmp[1] = (char)u[i];
            tlen = 2;
        } else {
            memcpy(tmp, u + i, len);
            tlen = len;
        }
        if (w + tlen + reserve > cap) {
            break;
        }
        memcpy(dst + w, tmp, tlen);
        w += tlen;
        i += len;
    }
    if (quote) {
        dst[w++] = '"';
    }
    if (i < n && w + 4 <= cap) {
        memcpy(dst + w, "...", 3);
        w += 3;
    }
    dst[w] = '\0';
}

void
ev_quote(char *dst, size_t cap, const char *s, size_t n)
{
    copy_printable(dst, cap, s, n, true, EV_QUOTE_MAX);
}

void
ev_sanitize(char *dst, size_t cap, const char *s, size_t n)
{
    copy_printable(dst, cap, s, n, false, SIZE_MAX);
}

int
ev_unknown_field(char err[EV_ERR_MAX], const char *key, size_t key_len)
{
    char q[EV_QUOTE_MAX * 4 + 8];

    ev_sanitize(q, sizeof(q), key, key_len < EV_QUOTE_MAX ? key_len : EV_QUOTE_MAX);
    return ev_errf(err, "%s%s: unknown field", q, key_len > EV_QUOTE_MAX ? "..." : "");
}

int
ev_fields_check(const json_t *obj, const struct ev_field *fields, size_t n_fields,
                char err[EV_ERR_MAX])
{
    const json_t *found[32] = {NULL};
    const char *key;
    size_t i;

    if (n_fields > sizeof(found) / sizeof(found[0])) {
        return ev_errf(err, "internal error: field table too large");
    }
    /* Unknown keys first: a misspelt field is reported as such, not as "missing". */
    for (void *it = json_object_iter((json_t *)obj); it != NULL;
         it = json_object_iter_next((json_t *)obj, it)) {
        size_t key_len;

        key = json_object_iter_key(it);
        key_len = json_object_iter_key_len(it);
        if (strcmp(key, "event_name") == 0 || strcmp(key, EV_KEY_FIELD) == 0) {
            continue;
        }
        for (i = 0; i < n_fields; i++) {
            if (strcmp(fields[i].name, key) == 0) {
                break;
            }
        }
        if (i == n_fields || key_len != strlen(key)) {
            return ev_unknown_field(err, key, key_len);
        }
        found[i] = json_object_iter_value(it);
    }
    for (i = 0; i < n_fields; i++) {
        if (found[i] == NULL && fields[i].required) {
            return ev_errf(err, "%s: required field missing", fields[i].name);
        }
    }
    for (i = 0; i < n_fields; i++) {
        int rc;

        if (found[i] == NULL || (fields[i].null_ok && json_is_null(found[i]))) {
            continue;
        }
        rc = fields[i].check(found[i], fields[i].name, err);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

int
ev_check_int(const json_t *v, const char *name, char err[EV_ERR_MAX])
{
    if (!json_is_integer(v)) {
        return ev_type_err(err, name, "integer", v);
    }
    return 0;
}

int
ev_check_string(const json_t *v, const char *name, char err[EV_ERR_MAX])
{
    if (!json_is_string(v)) {
        return ev_type_err(err, name, "string", v);
    }
    return 0;
}

int
ev_check_nonempty_string(const json_t *v, const char *name, char err[EV_ERR_MAX])
{
    if (!json_is_string(v)) {
        return ev_type_err(err, name, "string", v);
    }
    if (json_string_length(v) == 0) {
        return ev_errf(err, "%s: must not be empty", name);
    }
    return 0;
}

int
ev_check_object(const json_t *v, const char *name, char err[EV_ERR_MAX])
{
    if (!json_is_object(v)) {
        return ev_type_err(err, name, "object", v);
    }
    return 0;
}

int
ev_epoch_range_err(char err[EV_ERR_MAX], const char *name, int64_t t)
{
    if (t >= EV_EPOCH_MS_MIN && t / 1000 <= EV_EPOCH_MAX) {
        return ev_errf(err,
                       "%s: %lld looks like milliseconds: expected integer epoch seconds "
                       "(%lld)",
                       name, (long long)t, (long long)(t / 1000));
    }
    return ev_errf(err, "%s: out of range (0 to %lld epoch seconds)", name,
                   (long long)EV_EPOCH_MAX);
}

int
ev_epoch_real_err(char err[EV_ERR_MAX], const char *name, const json_t *v)
{
    double x = json_real_value(v);
    bool ms = x >= (double)EV_EPOCH_MS_MIN && x / 1000 <= (double)EV_EPOCH_MAX;

    return ev_errf(err, "%s: expected integer epoch seconds, got floating-point number %.15g%s",
                   name, x, ms ? " (it looks like milliseconds)" : "");
}

int
ev_check_epoch_int(const json_t *v, const char *name, char err[EV_ERR_MAX])
{
    json_int_t t;

    if (json_is_real(v)) {
        return ev_epoch_real_err(err, name, v);
    }
    if (!json_is_integer(v)) {
        return ev_type_err(err, name, "integer", v);
    }
    t = json_integer_value(v);
    if (t < 0 || t > EV_EPOCH_MAX) {
        return ev_epoch_range_err(err, name, t);
    }
    return 0;
}

static size_t
skip_ws(const char *s, size_t len, size_t p)
{
    while (p < len && (s[p] == ' ' || s[p] == '\t' || s[p] == '\n' || s[p] == '\r')) {
        p++;
    }
    return p;
}

/* p is on an opening '"'; returns the offset after the closing one, or len. */
static size_t
skip_string(const char *s, size_t len, size_t p)
{
    for (p++; p < len; p++) {
        if (s[p] == '\\') {
            p++;
        } else if (s[p] == '"') {
            return p + 1;
        }
    }
    return len;
}

/* Offset after the JSON value starting at p (a valid text is assumed, bounds are not). */
static size_t
skip_value(const char *s, size_t len, size_t p)
{
    size_t depth = 0;

    if (p >= len) {
        return len;
    }
    if (s[p] == '"') {
        return skip_string(s, len, p);
    }
    if (s[p] != '{' && s[p] != '[') {
        while (p < len && strchr(",}] \t\n\r", s[p]) == NULL) {
            p++;
        }
        return p;
    }
    while (p < len) {
        if (s[p] == '"') {
            p = skip_string(s, len, p);
            continue;
        }
        if (s[p] == '{' || s[p] == '[') {
            depth++;
        } else if (s[p] == '}' || s[p] == ']') {
            if (--depth == 0) {
                return p + 1;
            }
        }
        p++;
    }
    return len;
}

/* Does the JSON string text s[a..b) (quotes included) decode to key? */
static int
key_matches(const char *s, size_t a, size_t b, const char *key, bool *match)
{
    size_t klen = strlen(key);
    json_t *decoded = NULL;
    json_error_t jerr;

    if (memchr(s + a, '\\', b - a) == NULL) {
        *match = b - a == klen + 2 && memcmp(s + a + 1, key, klen) == 0;
        return 0;
    }
    decoded = json_loadb(s + a, b - a, JSON_DECODE_ANY, &jerr);
    if (decoded == NULL) {
        return json_error_code(&jerr) == json_error_out_of_memory ? DP_ERR_NOMEM : DP_ERR_INVALID;
    }
    *match = json_is_string(decoded) && json_string_length(decoded) == klen &&
             memcmp(json_string_value(decoded), key, klen) == 0;
    json_decref(decoded);
    return 0;
}

int
ev_member_span(const char *json, size_t len, const char *key, const char **v, size_t *v_len)
{
    size_t p = skip_ws(json, len, 0);

    if (p >= len || json[p] != '{') {
        return DP_ERR_INVALID;
    }
    p = skip_ws(json, len, p + 1);
    while (p < len && json[p] == '"') {
        size_t ka = p;
        size_t kb = skip_string(json, len, p);
        size_t va;
        bool match = false;
        int rc;

        p = skip_ws(json, len, kb);
        if (p >= len || json[p] != ':') {
            return DP_ERR_INVALID;
        }
        va = skip_ws(json, len, p + 1);
        p = skip_value(json, len, va);
        rc = key_matches(json, ka, kb, key, &match);
        if (rc != 0) {
            return rc;
        }
        if (match) {
            *v = json + va;
            *v_len = p - va;
            return 0;
        }
        p = skip_ws(json, len, p);
        if (p < len && json[p] == ',') {
            p = skip_ws(json, len, p + 1);
        }
    }
    return p < len && json[p] == '}' ? DP_ERR_NOTFOUND : DP_ERR_INVALID;
}

/* ---- numbers PostgreSQL's numeric (and so jsonb) can hold ------------------------------ */

#define EV_PG_DSCALE_MAX 16383        /* digits after the decimal point (NUMERIC_DSCALE_MAX) */
#define EV_PG_DWEIGHT_MAX 131071      /* decimal exponent of the leading digit (weight 32767) */
#define EV_PG_EXPONENT_MAX 1073741822 /* numeric_in refuses |exponent| >= INT_MAX / 2 */

/*
 * Whether the JSON number s (n bytes, valid JSON grammar) is one PostgreSQL's numeric_in
 * accepts (as of PostgreSQL 15): at most 16383 digits after the point once the exponent is
 * applied, and the leading digit below 10^131072.
 */
static bool
pg_numeric_ok(const char *s, size_t n)
{
    size_t p = s[0] == '-' ? 1 : 0;
    long long int_digits = 0; /* after leading zeros */
    long long frac_digits = 0;
    long long first_frac_nonzero = 0; /* 1-based position after the point, 0: none */
    long long exponent = 0;
    bool exp_neg = false;
    long long dscale;
    long long dweight;

    while (p < n && s[p] == '0') {
        p++;
    }
    for (; p < n && s[p] >= '0' && s[p] <= '9'; p++) {
        int_digits++;
    }
    if (p < n && s[p] == '.') {
        for (p++; p < n && s[p] >= '0' && s[p] <= '9'; p++) {
            frac_digits++;
            if (first_frac_nonzero == 0 && s[p] != '0') {
                first_frac_nonzero = frac_digits;
            }
        }
    }
    if (p < n && (s[p] == 'e' || s[p] == 'E')) {
        p++;
        if (p < n && (s[p] == '+' || s[p] == '-')) {
            exp_neg = s[p++] == '-';
        }
        for (; p < n && s[p] >= '0' && s[p] <= '9'; p++) {
            if (exponent > EV_PG_EXPONENT_MAX) {
                return false;
            }
            exponent = exponent * 10 + (s[p] - '0');
        }
    }
    if (exponent > EV_PG_EXPONENT_MAX) {
        return false;
    }
    exponent = exp_neg ? -exponent : exponent;
    dscale = frac_digits - exponent;
    if (dscale > EV_PG_DSCALE_MAX) {
        return false;
    }
    if (int_digits > 0) {
        dweight = int_digits - 1 + exponent;
    } else if (first_frac_nonzero > 0) {
        dweight = exponent - first_frac_nonzero;
    } else {
        return true; /* zero: only its scale counts */
    }
    return dweight <= EV_PG_DWEIGHT_MAX;
}

/* A walk over a valid JSON text, with the path of the value at hand. */
struct num_walk {
    const char *s;
    size_t n;
    size_t p;
    char path[EV_ERR_MAX / 2];
    size_t path_len; /* may exceed sizeof(path) - 1: then cut */
};

/* Append text to the path (cut silently when full); returns the old length to restore. */
static size_t
walk_path_push(struct num_walk *w, const char *fmt, const char *text, size_t len, size_t index)
{
    size_t old = w->path_len;
    size_t room = w->path_len < sizeof(w->path) ? sizeof(w->path) - w->path_len : 0;
    int k;

    if (text != NULL) {
        char q[EV_QUOTE_MAX * 4 + 8];

        ev_sanitize(q, sizeof(q), text, len < EV_QUOTE_MAX ? len : EV_QUOTE_MAX);
        k = snprintf(w->path + (room > 0 ? w->path_len : 0), room, fmt, q);
    } else {
        k = snprintf(w->path + (room > 0 ? w->path_len : 0), room, fmt, index);
    }
    w->path_len += k > 0 ? (size_t)k : 0;
    return old;
}

static void
walk_path_pop(struct num_walk *w, size_t old)
{
    w->path_len = old;
    if (old < sizeof(w->path)) {
        w->path[old] = '\0';
    }
}

static void
walk_ws(struct num_walk *w)
{
    w->p = skip_ws(w->s, w->n, w->p);
}

static int walk_value(struct num_walk *w, char err[EV_ERR_MAX]);

static int
walk_object(struct num_walk *w, char err[EV_ERR_MAX])
{
    int rc = 0;

    w->p++;
    walk_ws(w);
    while (rc == 0 && w->p < w->n && w->s[w->p] != '}') {
        size_t key = w->p + 1;
        size_t key_end = skip_string(w->s, w->n, w->p) - 1;
        size_t old;

        old = walk_path_push(w, w->path_len == 0 ? "%s" : ".%s", w->s + key, key_end - key, 0);
        w->p = key_end + 1;
        walk_ws(w);
        w->p++; /* ':' */
        walk_ws(w);
        rc = walk_value(w, err);
        walk_path_pop(w, old);
        walk_ws(w);
        if (w->p < w->n && w->s[w->p] == ',') {
            w->p++;
            walk_ws(w);
        }
    }
    w->p++;
    return rc;
}

static int
walk_array(struct num_walk *w, char err[EV_ERR_MAX])
{
    size_t index = 0;
    int rc = 0;

    w->p++;
    walk_ws(w);
    while (rc == 0 && w->p < w->n && w->s[w->p] != ']') {
        size_t old = walk_path_push(w, "[%zu]", NULL, 0, index++);

        rc = walk_value(w, err);
        walk_path_pop(w, old);
        walk_ws(w);
        if (w->p < w->n && w->s[w->p] == ',') {
            w->p++;
            walk_ws(w);
        }
    }
    w->p++;
    return rc;
}

static int
walk_value(struct num_walk *w, char err[EV_ERR_MAX])
{
    size_t start = w->p;
    char c = w->p < w->n ? w->s[w->p] : '\0';
    char q[EV_QUOTE_MAX * 4 + 8];

    if (c == '{') {
        return walk_object(w, err);
    }
    if (c == '[') {
        return walk_array(w, err);
    }
    if (c == '"') {
        w->p = skip_string(w->s, w->n, w->p);
        return 0;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        while (w->p < w->n && strchr("+-.eE0123456789", w->s[w->p]) != NULL && w->s[w->p] != '\0') {
            w->p++;
        }
        if (!pg_numeric_ok(w->s + start, w->p - start)) {
            ev_quote(q, sizeof(q), w->s + start, w->p - start);
            return ev_errf(err, "%s%s: number %s is out of PostgreSQL's numeric range",
                           w->path_len > 0 ? w->path : "event",
                           w->path_len >= sizeof(w->path) ? "..." : "", q);
        }
        return 0;
    }
    while (w->p < w->n && w->s[w->p] >= 'a' && w->s[w->p] <= 'z') {
        w->p++; /* true, false, null */
    }
    if (w->p == start && w->p < w->n) {
        w->p++; /* not JSON after all: never stand still */
    }
    return 0;
}

int
ev_check_jsonb_numbers(const char *json, size_t len, char err[EV_ERR_MAX])
{
    struct num_walk w = {.s = json, .n = len, .p = 0, .path = "", .path_len = 0};

    walk_ws(&w);
    return walk_value(&w, err);
}

/* ---- the checks of field types: built-in types and declared ones call the same ---- */

static bool
scheme_is(const UriTextRangeA *r, const char *want)
{
    size_t n = (size_t)(r->afterLast - r->first);

    return n == strlen(want) && strncasecmp(r->first, want, n) == 0;
}

int
ev_check_url(const json_t *v, const char *name, char err[EV_ERR_MAX])
{
    UriUriA uri;
    const char *s;
    const char *error_pos = NULL;
    int rc = 0;
    int ur;

    if (!json_is_string(v)) {
        return ev_type_err(err, name, "string", v);
    }
    s = json_string_value(v);
    ur = uriParseSingleUriExA(&uri, s, s + json_string_length(v), &error_pos);
    if (ur == URI_ERROR_MALLOC) {
        return ev_errf(err, "%s: out of memory while parsing", name);
    }
    if (ur != URI_SUCCESS) {
        return ev_errf(err, "%s: not a valid URL (syntax error at character %ld)", name,
                       error_pos ? (long)(error_pos - s) + 1 : 1L);
    }
    if (uri.scheme.first == NULL) {
        rc = ev_errf(err, "%s: not an absolute URL (no scheme)", name);
    } else if (!scheme_is(&uri.scheme, "http") && !scheme_is(&uri.scheme, "https")) {
        rc = ev_errf(err, "%s: scheme must be http or https", name);
    } else if (uri.hostText.first == NULL || uri.hostText.first == uri.hostText.afterLast) {
        rc = ev_errf(err, "%s: URL has no host", name);
    }
    uriFreeUriMembersA(&uri);
    return rc;
}

int
ev_check_ip(const json_t *v, const char *name, char err[EV_ERR_MAX])
{
    unsigned char addr[16];
    const char *s;

    if (!json_is_string(v)) {
        return ev_type_err(err, name, "string", v);
    }
    s = json_string_value(v);
    if (inet_pton(AF_INET, s, addr) != 1 && inet_pton(AF_INET6, s, addr) != 1) {
        return ev_errf(err, "%s: not an IPv4 or IPv6 address", name);
    }
    return 0;
}

/* ---- the calendar and RFC 3339 date-times ---- */

int64_t
ev_days_from_civil(int64_t y, int m, int d)
{
    int64_t era;
    int64_t yoe;
    int64_t doy;
    int64_t doe;

    /* Count years from March so the leap day is the last day of the year. */
    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int
ev_days_in_month(int64_t y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

    if (m < 1 || m > 12) {
        return 0;
    }
    return m == 2 && leap ? 29 : days[m - 1];
}

/* Read exactly n digits at *p (not past end) into *out. */
static bool
digits(const char **p, const char *end, int n, int *out)
{
    int v = 0;
    int i;

    if (end - *p < n) {
        return false;
    }
    for (i = 0; i < n; i++) {
        char c = (*p)[i];

        if (c < '0' || c > '9') {
            return false;
        }
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static bool
lit(const char **p, const char *end, char c)
{
    if (*p < end && **p == c) {
        (*p)++;
        return true;
    }
    return false;
}

/* Microseconds of a fraction ".ddd..." after the dot, rounded half up. */
static int64_t
fraction_us(const char **p, const char *end)
{
    int64_t us = 0;
    int n = 0;

    while (*p < end && **p >= '0' && **p <= '9') {
        if (n < 6) {
            us = us * 10 + (**p - '0');
        } else if (n == 6 && **p >= '5') {
            us++;
        }
        n++;
        (*p)++;
    }
    for (; n < 6; n++) {
        us *= 10;
    }
    return us;
}

/*
 * Parse an RFC 3339 date-time (s, n bytes) into microseconds since the epoch,
 * UTC. Every field is range-checked, so Feb 30 or hour 24 is an error.
 */
int
ev_parse_rfc3339(const char *s, size_t n, const char *name, int64_t *out, char err[EV_ERR_MAX])
{
    const char *p = s;
    const char *end = s + n;
    int y, mo, d, h, mi, sec, oh = 0, om = 0;
    int64_t frac_us = 0;
    int sign = 0;
    int64_t us;

    if (!digits(&p, end, 4, &y) || !lit(&p, end, '-') || !digits(&p, end, 2, &mo) ||
        !lit(&p, end, '-') || !digits(&p, end, 2, &d) ||
        !(lit(&p, end, 'T') || lit(&p, end, 't') || lit(&p, end, ' ')) || !digits(&p, end, 2, &h) ||
        !lit(&p, end, ':') || !digits(&p, end, 2, &mi) || !lit(&p, end, ':') ||
        !digits(&p, end, 2, &sec)) {
        return ev_errf(err, "%s: %s", name, TS_SYNTAX);
    }
    if (lit(&p, end, '.')) {
        if (p == end || *p < '0' || *p > '9') {
            return ev_errf(err, "%s: %s", name, TS_SYNTAX);
        }
        frac_us = fraction_us(&p, end);
    }
    if (p == end) {
        return ev_errf(err, "%s: missing UTC offset (Z or +hh:mm)", name);
    }
    if (lit(&p, end, 'Z') || lit(&p, end, 'z')) {
        sign = 0;
    } else if (lit(&p, end, '+') || lit(&p, end, '-')) {
        sign = p[-1] == '+' ? 1 : -1;
        if (!digits(&p, end, 2, &oh) || !lit(&p, end, ':') || !digits(&p, end, 2, &om)) {
            return ev_errf(err, "%s: %s", name, TS_SYNTAX);
        }
    } else {
        return ev_errf(err, "%s: %s", name, TS_SYNTAX);
    }
    if (p != end) {
        return ev_errf(err, "%s: %s", name, TS_SYNTAX);
    }
    if (mo < 1 || mo > 12) {
        return ev_errf(err, "%s: month out of range (01-12)", name);
    }
    if (d < 1 || d > ev_days_in_month(y, mo)) {
        return ev_errf(err, "%s: day out of range for the month", name);
    }
    if (h > 23) {
        return ev_errf(err, "%s: hour out of range (00-23)", name);
    }
    if (mi > 59) {
        return ev_errf(err, "%s: minute out of range (00-59)", name);
    }
    if (sec > 59) {
        return ev_errf(err, "%s: second out of range (00-59, no leap seconds)", name);
    }
    if (oh > 23 || om > 59) {
        return ev_errf(err, "%s: UTC offset out of range", name);
    }
    us = ((ev_days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60 + sec;
    us -= (int64_t)sign * (oh * 3600 + om * 60);
    us = us * 1000000 + frac_us;
    /* 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z: what timestamptz round-trips. */
    if (us < INT64_C(-62135596800000000) || us > INT64_C(253402300799999999)) {
        return ev_errf(err, "%s: out of range (years 0001 to 9999 in UTC)", name);
    }
    *out = us;
    return 0;
}
