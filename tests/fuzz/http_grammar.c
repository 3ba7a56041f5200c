/*
 * http_grammar.c - fuzz_http's structured mode: each input byte is a choice (an exhausted
 * input chooses 0, the well-formed option), so short inputs make valid requests and the
 * fuzzer's mutations move between routes, headers, body shapes and field values that random
 * bytes would rarely spell (an Idempotency-Key on an empty array, a gzip body, a ce-id with
 * %00). Never checks answers: the server's crash or a sanitizer report is the finding.
 */
#include "tests/fuzz/http_grammar.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "server/srv.h"

enum fzg_kind {
    K_STR,
    K_INT,
    K_NUM,
    K_BOOL,
    K_TS,
    K_IP,
    K_URL,
    K_UUID,
    K_OBJ,
    K_ARR,
    /* the built-in types' own shapes */
    K_EPOCH,
    K_RFC3339,
    K_IP4,
    K_NUMARR,
    K_STRINT,
};

struct fzg_field {
    const char *name;
    enum fzg_kind kind;
    bool required;
    const char *decl;  /* the declaration's constraints (JSON members), "" for none */
    const char *valid; /* a JSON value the field accepts */
};

struct fzg_type {
    const char *name;
    bool keep; /* unknown_fields "keep" */
    const struct fzg_field *fields;
    size_t n;
};

#define FIELDS(a) a, sizeof(a) / sizeof(a[0])

/* The declared types: every field type and constraint, under names that collide with the
 * names datapipe derives (_keyed, _idem_key, _pkey), built-ins, reserved words, system
 * columns, and the longest name allowed. */
static const struct fzg_field f_a[] = {
    {"s", K_STR, true, ", \"max_length\": 8", "\"abc\""},
    {"e", K_STR, false, ", \"enum\": [\"free\", \"pro\"]", "\"pro\""},
    {"p", K_STR, false, ", \"pattern\": \"^[a-z]+(-[0-9]+)?$\"", "\"ab-12\""},
    {"i", K_INT, false, ", \"min\": -5, \"max\": 1000", "7"},
    {"n", K_NUM, false, ", \"min\": -0.5, \"max\": 1e6", "2.5"},
    {"b", K_BOOL, true, "", "true"},
    {"ts", K_TS, false, "", "\"2026-05-01T10:00:00+02:00\""},
    {"ip", K_IP, false, "", "\"192.0.2.1\""},
    {"u", K_URL, false, ", \"max_length\": 40, \"pattern\": \"^https://\"",
     "\"https://e.example/p\""},
    {"id2", K_UUID, false, "", "\"0190d6a4-7b3c-7def-8123-456789abcdef\""},
    {"o", K_OBJ, false, "", "{\"k\": [1, 2]}"},
    {"arr", K_ARR, false, "", "[1, \"x\"]"},
};
static const struct fzg_field f_a_keyed[] = {
    {"a", K_INT, true, "", "1"},
    {"a_keyed", K_STR, false, "", "\"v\""},
    {"keyed", K_BOOL, false, "", "false"},
};
static const struct fzg_field f_x_idem_key[] = {
    {"x", K_STR, true, "", "\"x\""},
    {"idem", K_TS, true, "", "1700000000"},
};
static const struct fzg_field f_x[] = {
    {"x_idem_key", K_STR, false, "", "\"k\""},
    {"k", K_INT, false, ", \"min\": 0", "0"},
};
static const struct fzg_field f_long[] = {
    {"f23456789012345678901234567890123456789012345678901234567890123", K_NUM, true, "", "1"},
    {"g", K_UUID, false, "", "\"00000000-0000-0000-0000-000000000000\""},
};
static const struct fzg_field f_order[] = {
    {"select", K_BOOL, true, "", "true"},
    {"user", K_IP, false, "", "\"2001:db8::1\""},
    {"from", K_NUM, false, ", \"max\": 0", "-1.5e-3"},
    {"table", K_STR, false, ", \"enum\": [\"(0,1)\"]", "\"(0,1)\""},
};
static const struct fzg_field f_sys[] = {
    {"xmin", K_INT, false, "", "3"},
    {"ctid", K_STR, false, "", "\"(0,1)\""},
};
static const struct fzg_field f_pg_type[] = {
    {"oid", K_INT, false, "", "26"},
};
static const struct fzg_field f_crash_keyed[] = {
    {"user_id", K_INT, true, "", "1"},
    {"timestamp", K_TS, true, "", "1700000000"},
    {"message", K_STR, false, ", \"max_length\": 1000", "\"m\""},
};
static const struct fzg_field f_crash[] = {
    {"report", K_STR, false, ", \"pattern\": \"(a|b)*c\"", "\"abc\""},
};
static const struct fzg_field f_idempotency[] = {
    {"v", K_UUID, true, "", "\"0190d6a4-7b3c-7def-8123-456789abcdef\""},
};
static const struct fzg_field f_owners[] = {
    {"owner", K_STR, false, "", "\"o\""},
};
static const struct fzg_field f_pkey[] = {
    {"z", K_ARR, true, "", "[]"},
    {"w", K_OBJ, false, "", "{}"},
};

static const struct fzg_type declared[] = {
    {"a", false, FIELDS(f_a)},
    {"a_keyed", true, FIELDS(f_a_keyed)},
    {"x_idem_key", false, FIELDS(f_x_idem_key)},
    {"x", true, FIELDS(f_x)},
    {"t23456789012345678901234567890123456789012345678901234567890123", false, FIELDS(f_long)},
    {"order", true, FIELDS(f_order)},
    {"pg_type", false, FIELDS(f_pg_type)},
    {"crash_report_keyed", false, FIELDS(f_crash_keyed)},
    {"crash", true, FIELDS(f_crash)},
    {"crash_report_idempotency_key", false, FIELDS(f_idempotency)},
    {"queue_owners", false, FIELDS(f_owners)},
    {"t_pkey", false, FIELDS(f_pkey)},
    {"sys_cols", false, FIELDS(f_sys)},
};
#define N_DECLARED (sizeof(declared) / sizeof(declared[0]))

static const struct fzg_field f_crash_report[] = {
    {"user_id", K_INT, true, "", "1"},
    {"timestamp", K_EPOCH, true, "", "1700000000"},
    {"message", K_STR, true, "", "\"m\""},
};
static const struct fzg_field f_ad_event[] = {
    {"ip_address", K_IP4, true, "", "\"10.0.0.1\""},
    {"user_agent", K_STR, true, "", "\"ua\""},
    {"referring_url", K_URL, true, "", "\"https://r.example/\""},
    {"advertiser_id", K_STR, true, "", "\"adv\""},
    {"metadata", K_OBJ, false, "", "{\"c\": 1}"},
};
static const struct fzg_field f_user_login[] = {
    {"user_id", K_STR, true, "", "\"u1\""},       {"timestamp", K_TS, true, "", "1700000000"},
    {"app_version", K_STR, false, "", "\"1.2\""}, {"device_type", K_STR, false, "", "\"phone\""},
    {"ip", K_IP, false, "", "\"::1\""},           {"locale", K_STR, false, "", "\"en\""},
    {"device_id", K_STR, false, "", "\"d\""},
};
static const struct fzg_field f_data_sample[] = {
    {"time_stamp", K_RFC3339, true, "", "\"2026-05-01T10:00:00Z\""},
    {"data", K_NUMARR, true, "", "[1, 2.5]"},
};
static const struct fzg_field f_product[] = {
    {"id", K_STRINT, true, "", "\"p1\""},
    {"name", K_STR, false, "", "\"n\""},
    {"price", K_NUM, false, "", "9.5"},
};

static const struct fzg_type builtin[] = {
    {"crash_report", false, FIELDS(f_crash_report)},
    {"ad_event", false, FIELDS(f_ad_event)},
    {"user_login", false, FIELDS(f_user_login)},
    {"data_sample", false, FIELDS(f_data_sample)},
    {"product", true, FIELDS(f_product)},
};
#define N_BUILTIN (sizeof(builtin) / sizeof(builtin[0]))

/* Type names no registry has, as a path segment or an event_name. */
static const char *const unknown_names[] = {
    "nosuch",         "",   "CRASH_REPORT", "crash_report%00", "crash_report ", "a%5fkeyed",
    "crash%5Freport", "..", "dead_letter",  "loader_batches",  "pg_class",      "a/b",
};
#define N_UNKNOWN (sizeof(unknown_names) / sizeof(unknown_names[0]))

static bool declared_use[N_DECLARED];
static bool declared_use_set;

static const char *const kind_names[] = {
    [K_STR] = "string",   [K_INT] = "integer", [K_NUM] = "number", [K_BOOL] = "boolean",
    [K_TS] = "timestamp", [K_IP] = "ip",       [K_URL] = "url",    [K_UUID] = "uuid",
    [K_OBJ] = "object",   [K_ARR] = "array",
};

/* The choices: a byte each, 0 once the input is used up. */
struct fzg_in {
    const uint8_t *p;
    size_t len;
    size_t off;
};

static unsigned
pick(struct fzg_in *in, unsigned n)
{
    if (n <= 1 || in->off >= in->len) {
        return 0;
    }
    return in->p[in->off++] % n;
}

/* Up to max bytes of the input itself, for values no dictionary holds. */
static void
take_bytes(struct fzg_in *in, size_t max, const uint8_t **p, size_t *n)
{
    size_t want = pick(in, 256) * max / 255;

    *p = in->p + in->off;
    *n = want < in->len - in->off ? want : in->len - in->off;
    in->off += *n;
}

void
fzg_buf_free(struct fzg_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
}

/* Room for n more bytes and the NUL. */
static int
grow(struct fzg_buf *b, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap != 0 ? b->cap : 1024;
        char *p;

        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        p = realloc(b->p, cap);
        if (p == NULL) {
            return -1;
        }
        b->p = p;
        b->cap = cap;
    }
    return 0;
}

static int
put(struct fzg_buf *b, const void *s, size_t n)
{
    if (grow(b, n) != 0) {
        return -1;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static int
puts_(struct fzg_buf *b, const char *s)
{
    return put(b, s, strlen(s));
}

static int putf(struct fzg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
putf(struct fzg_buf *b, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(small)) {
        return -1; /* every format here is short */
    }
    return put(b, small, (size_t)n);
}

/* s times over, the room made once: a put per copy was a fifth of the fuzzer's time. */
static int
put_repeat(struct fzg_buf *b, const char *s, size_t times)
{
    size_t n = strlen(s);

    if (grow(b, n * times) != 0) {
        return -1;
    }
    if (times > 0) {
        char *at = b->p + b->len;
        size_t done = n;
        size_t total = n * times;

        /* one copy, then what is written doubles */
        memcpy(at, s, n);
        while (done < total) {
            size_t more = done < total - done ? done : total - done;

            memcpy(at + done, at, more);
            done += more;
        }
        b->len += total;
    }
    b->p[b->len] = '\0';
    return 0;
}

/* Input bytes as a JSON string: escaped as JSON wants, or raw (invalid UTF-8, controls). */
static int
put_json_bytes(struct fzg_buf *b, const uint8_t *p, size_t n, bool raw)
{
    int rc = puts_(b, "\"");

    for (size_t i = 0; i < n && rc == 0; i++) {
        if (raw) {
            rc = put(b, p + i, 1);
        } else if (p[i] == '"' || p[i] == '\\') {
            rc = putf(b, "\\%c", p[i]);
        } else if (p[i] < 0x20 || p[i] >= 0x7f) {
            rc = putf(b, "\\u%04x", p[i]);
        } else {
            rc = put(b, p + i, 1);
        }
    }
    return rc != 0 ? rc : puts_(b, "\"");
}

size_t
fzg_types_len(void)
{
    return N_DECLARED;
}

const char *
fzg_type_name(size_t i)
{
    return declared[i].name;
}

void
fzg_types_use(const bool *use)
{
    memcpy(declared_use, use, sizeof(declared_use));
    declared_use_set = true;
}

int
fzg_types_json(struct fzg_buf *out, const bool *use)
{
    const char *sep = "";
    int rc = puts_(out, "{");

    for (size_t t = 0; t < N_DECLARED && rc == 0; t++) {
        if (use != NULL && !use[t]) {
            continue;
        }
        rc = putf(out, "%s\"%s\": {\"unknown_fields\": \"%s\", \"fields\": {", sep,
                  declared[t].name, declared[t].keep ? "keep" : "reject");
        for (size_t f = 0; f < declared[t].n && rc == 0; f++) {
            const struct fzg_field *fd = &declared[t].fields[f];

            rc = putf(out, "%s\"%s\": {\"type\": \"%s\", \"required\": %s", f > 0 ? ", " : "",
                      fd->name, kind_names[fd->kind], fd->required ? "true" : "false");
            if (rc == 0) {
                rc = puts_(out, fd->decl);
            }
            if (rc == 0) {
                rc = puts_(out, "}");
            }
        }
        if (rc == 0) {
            rc = puts_(out, "}}");
        }
        sep = ", ";
    }
    return rc != 0 ? rc : puts_(out, "}");
}

/* The request's type: a built-in, a declared type the server took, or (NULL) an unknown name
 * in *name. */
static const struct fzg_type *
pick_type(struct fzg_in *in, const char **name)
{
    unsigned i = pick(in, N_BUILTIN + N_DECLARED + N_UNKNOWN);

    if (i < N_BUILTIN) {
        *name = builtin[i].name;
        return &builtin[i];
    }
    i -= N_BUILTIN;
    if (i < N_DECLARED && (!declared_use_set || declared_use[i])) {
        *name = declared[i].name;
        return &declared[i];
    }
    if (i < N_DECLARED) {
        *name = declared[i].name; /* the server refused it: an unknown type */
        return NULL;
    }
    *name = unknown_names[i - N_DECLARED];
    return NULL;
}

/* Values that are wrong for most fields, or at the edge of what parsers take. */
static const char *const odd_values[] = {
    "null",
    "true",
    "0",
    "-0",
    "1.5",
    "\"s\"",
    "{}",
    "[]",
    "\"\"",
    "1e400",
    "-1e400",
    "170000000000000000",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "99999999999999999999999999",
    "0.1e-400",
    "1E2",
    "01",
    "-",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"\\udfff\\ud800\"",
    "\"\\ud83d\\ude00\"",
    "\"\xff\xfe\"",
    "\"\xc0\xaf\"",
    "\"a\\\"b\"",
    "\"2026-13-45T99:99:99Z\"",
    "\"2026-05-01T10:00:00\"",
    "\"2026-05-01t10:00:00z\"",
    "\"1.2.3.4.5\"",
    "\"::ffff:1.2.3.4\"",
    "\"javascript:x\"",
    "\"http://\"",
    "\"https://[::1]:99999/\"",
    "\"0190d6a4-7b3c-7def-8123-456789abcdeg\"",
    "\"0190D6A4-7B3C-7DEF-8123-456789ABCDEF\"",
    "253402300800",
    "-1",
    "[1, [2, [3]]]",
    "{\"a\": {\"b\": {}}}",
    "[null]",
    "\"free \"",
    "\"PRO\"",
    "-5",
    "1001",
    "-0.6",
    "\"abcdefghi\"",
    "\"ab-\"",
    "\"(0,1)\"",
    "1.0",
    "true false",
};
#define N_ODD (sizeof(odd_values) / sizeof(odd_values[0]))

/* Other values a field of kind takes. */
static const char *
other_valid(enum fzg_kind kind, unsigned i)
{
    static const char *const strs[] = {"\"\"", "\"\\u00e9\\ud83d\\ude00\"", "\"a\\nb\"", "\"\\\"\"",
                                       "\"free\""};
    static const char *const ints[] = {"0", "-5", "1000", "9223372036854775807",
                                       "-9223372036854775808"};
    static const char *const nums[] = {"0", "-0.5", "1e6", "1.5e-300", "3"};
    static const char *const tss[] = {"0", "253402300799", "\"1970-01-01T00:00:00Z\"",
                                      "\"2026-05-01T10:00:00.123456-12:30\"",
                                      "\"9999-12-31T23:59:59Z\""};
    static const char *const ips[] = {"\"0.0.0.0\"", "\"255.255.255.255\"", "\"::\"",
                                      "\"fe80::1%eth0\"", "\"::ffff:10.0.0.1\""};
    static const char *const urls[] = {"\"http://h\"", "\"https://h:1/p?q#f\"",
                                       "\"https://user@h/%20\"", "\"HTTP://H/\"",
                                       "\"https://h/\\u00e9\""};
    static const char *const uuids[] = {"\"00000000-0000-0000-0000-000000000000\"",
                                        "\"ffffffff-ffff-ffff-ffff-ffffffffffff\"",
                                        "\"0190D6A4-7B3C-7DEF-8123-456789ABCDEF\"",
                                        "\"0190d6a47b3c7def8123456789abcdef\"", "\"{}\""};
    static const char *const objs[] = {"{}", "{\"a\": null}", "{\"\": \"\"}",
                                       "{\"a\": 1, \"a\": 2}", "{\"k\": \"\\u0000\"}"};
    static const char *const arrs[] = {"[]", "[[]]", "[{}]", "[1e400]", "[\"\\ud800\"]"};
    static const char *const numarrs[] = {"[0]", "[-1e300, 1e300]", "[1, \"2\"]", "[]", "[1e400]"};
    static const char *const strints[] = {"1", "\"\"", "-1", "\"p\\u0000\"", "1.5"};

    i %= 5;
    switch (kind) {
    case K_INT:
    case K_EPOCH:
        return ints[i];
    case K_NUM:
        return nums[i];
    case K_BOOL:
        return i % 2 ? "false" : "true";
    case K_TS:
    case K_RFC3339:
        return tss[i];
    case K_IP:
    case K_IP4:
        return ips[i];
    case K_URL:
        return urls[i];
    case K_UUID:
        return uuids[i];
    case K_OBJ:
        return objs[i];
    case K_ARR:
        return arrs[i];
    case K_NUMARR:
        return numarrs[i];
    case K_STRINT:
        return strints[i];
    case K_STR:
    default:
        return strs[i];
    }
}

/* One field's value; returns 1 (and writes nothing) when the field is left out. */
static int
put_value(struct fzg_in *in, struct fzg_buf *b, const struct fzg_field *fd)
{
    const uint8_t *p;
    size_t n;

    switch (pick(in, 8)) {
    case 0:
    case 1:
        return puts_(b, fd->valid);
    case 2:
        return puts_(b, other_valid(fd->kind, pick(in, 5)));
    case 3:
        return puts_(b, odd_values[pick(in, N_ODD)]);
    case 4:
        take_bytes(in, 64, &p, &n);
        return put_json_bytes(b, p, n, pick(in, 4) == 0);
    case 5:
        n = (size_t)pick(in, 16) * 64 + 1;
        if (puts_(b, "\"") != 0 || put_repeat(b, "x", n) != 0) {
            return -1;
        }
        return puts_(b, "\"");
    case 6:
        return 1;
    default:
        return puts_(b, "null");
    }
}

/* Idempotency keys: a few values so that repeats meet, and the edges of the rules. */
static int
put_key_text(struct fzg_in *in, struct fzg_buf *b, bool header)
{
    static const char *const keys[] = {
        "k1",
        "k2",
        "k3",
        "",
        "\"k1\"",
        ":azE=:",
        "k1, k2",
        "k\x01x",
        "k\tx",
        " k1 ",
        "\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87",
        "k%00x",
        "\x7f",
        "k\\x",
    };
    const uint8_t *p;
    size_t n;
    unsigned i = pick(in, sizeof(keys) / sizeof(keys[0]) + 3);

    if (i < sizeof(keys) / sizeof(keys[0])) {
        return puts_(b, keys[i]);
    }
    if (i == sizeof(keys) / sizeof(keys[0])) {
        return put_repeat(b, "k", 255);
    }
    if (i == sizeof(keys) / sizeof(keys[0]) + 1) {
        return put_repeat(b, "k", 256);
    }
    take_bytes(in, 300, &p, &n);
    for (size_t j = 0; j < n; j++) {
        /* A header value cannot hold a line end; JSON text escapes its own. */
        uint8_t c = p[j];

        if (header && (c == '\r' || c == '\n' || c == '\0')) {
            c = '_';
        } else if (!header && (c == '"' || c == '\\' || c < 0x20)) {
            c = '_';
        }
        if (put(b, &c, 1) != 0) {
            return -1;
        }
    }
    return 0;
}

/* How objects are written: whether event_name goes in, and which. */
struct fzg_obj_opts {
    const char *event_name; /* NULL: none */
    bool ce_data;           /* a CloudEvent's data: never event_name */
};

static int
put_object(struct fzg_in *in, struct fzg_buf *b, const struct fzg_type *t, const char *tname,
           const struct fzg_obj_opts *o)
{
    const char *sep = "";
    int rc = puts_(b, "{");
    unsigned en = o->ce_data ? 5 : pick(in, 6);

    if (rc == 0 && en <= 1 && o->event_name != NULL) {
        rc = putf(b, "\"event_name\": \"%s\"", o->event_name);
        sep = ", ";
    } else if (rc == 0 && en == 2) {
        rc = putf(b, "\"event_name\": \"%s\"", tname);
        sep = ", ";
    } else if (rc == 0 && en == 3) {
        rc = putf(b, "\"event_name\": %s", odd_values[pick(in, N_ODD)]);
        sep = ", ";
    }
    if (t != NULL) {
        for (size_t f = 0; f < t->n && rc == 0; f++) {
            size_t mark = b->len;

            rc = putf(b, "%s\"%s\": ", sep, t->fields[f].name);
            if (rc == 0) {
                rc = put_value(in, b, &t->fields[f]);
            }
            if (rc == 1) {
                b->len = mark; /* the field left out */
                b->p[mark] = '\0';
                rc = 0;
            } else {
                sep = ", ";
            }
        }
    }
    while (rc == 0) {
        switch (pick(in, 8)) {
        case 1:
            rc = putf(b, "%s\"idempotency_key\": \"", sep);
            if (rc == 0) {
                rc = put_key_text(in, b, false);
            }
            if (rc == 0) {
                rc = puts_(b, "\"");
            }
            break;
        case 2:
            rc = putf(b, "%s\"idempotency_key\": %s", sep, odd_values[pick(in, N_ODD)]);
            break;
        case 3:
            rc = putf(b, "%s\"extra_field\": %s", sep, odd_values[pick(in, N_ODD)]);
            break;
        case 4:
            /* a field named twice, or a field of another type */
            if (t != NULL && t->n > 0) {
                const struct fzg_field *fd = &t->fields[pick(in, (unsigned)t->n)];

                rc = putf(b, "%s\"%s\": %s", sep, fd->name, odd_values[pick(in, N_ODD)]);
            }
            break;
        case 5:
            rc = putf(b, "%s\"id\": \"0190d6a4-7b3c-7def-8123-456789abcdef\"", sep);
            break;
        case 6:
            rc = putf(b, "%s\"source\": \"s\"", sep);
            break;
        default:
            return puts_(b, "}");
        }
        sep = ", ";
    }
    return rc;
}

/* One CloudEvent (structured: the event in the body). */
static int
put_cloudevent(struct fzg_in *in, struct fzg_buf *b, const struct fzg_type *t, const char *tname)
{
    static const char *const ids[] = {"\"e1\"",          "\"e2\"",  "\"\"", "1",
                                      "\"e\\u0000two\"", "\"a b\"", "null"};
    static const char *const sources[] = {"\"/s\"", "\"/a b\"", "\"/a\"",
                                          "\"\"",   "7",        "\"\\u0000\""};
    static const char *const specs[] = {"\"1.0\"", "\"0.3\"", "\"\"", "1.0", "\"2.0\""};
    struct fzg_obj_opts o = {.ce_data = true};
    int rc = putf(b, "{\"specversion\": %s, \"id\": %s, \"source\": %s",
                  specs[pick(in, sizeof(specs) / sizeof(specs[0]))],
                  ids[pick(in, sizeof(ids) / sizeof(ids[0]))],
                  sources[pick(in, sizeof(sources) / sizeof(sources[0]))]);

    if (rc == 0) {
        switch (pick(in, 4)) {
        case 0:
            rc = putf(b, ", \"type\": \"%s\"", tname);
            break;
        case 1:
            rc = putf(b, ", \"type\": %s", odd_values[pick(in, N_ODD)]);
            break;
        default:
            break;
        }
    }
    while (rc == 0) {
        switch (pick(in, 8)) {
        case 1:
            rc = puts_(b, ", \"datacontenttype\": \"application/json\"");
            break;
        case 2:
            rc = puts_(b, ", \"datacontenttype\": \"text/plain\"");
            break;
        case 3:
            rc = puts_(b, ", \"data_base64\": \"eyJ1c2VyX2lkIjogMX0=\"");
            break;
        case 4:
            rc = puts_(b, ", \"time\": \"2026-05-01T10:00:00Z\", \"subject\": \"x\"");
            break;
        case 5:
            rc = putf(b, ", \"ext1\": %s", odd_values[pick(in, N_ODD)]);
            break;
        case 6:
            rc = putf(b, ", \"data\": %s", odd_values[pick(in, N_ODD)]);
            break;
        default:
            rc = puts_(b, ", \"data\": ");
            if (rc == 0) {
                rc = put_object(in, b, t, tname, &o);
            }
            return rc != 0 ? rc : puts_(b, "}");
        }
    }
    return rc;
}

/* Bodies with no event, or only structure. */
static const char *const shapes[] = {
    "[]",
    "[{}]",
    "{}",
    "",
    "[[]]",
    "[[{}]]",
    "null",
    "[null]",
    "1",
    "\"x\"",
    " ",
    "\n",
    "[]\n[]",
    "{}\n{}",
    "[{}, []]",
    "[1, 2]",
    "{\"event_name\": null}",
    "\xef\xbb\xbf[]",
    "[",
    "{",
    "]",
    "}{",
    "[{}]]",
    "\r\n\r\n",
    "{\"a\":1}{\"b\":2}",
    "[]{}",
};
#define N_SHAPES (sizeof(shapes) / sizeof(shapes[0]))

/*
 * The body. *ce_kind says which CloudEvents form it took (0 none, 1 structured, 2 batch), for
 * the Content-Type's automatic choice.
 */
static int
put_body(struct fzg_in *in, struct fzg_buf *b, const struct fzg_type *t, const char *tname,
         const struct fzg_obj_opts *o, int *ce_kind)
{
    const uint8_t *p;
    size_t n;
    unsigned k;
    int rc = 0;

    *ce_kind = 0;
    switch (pick(in, 12)) {
    case 0:
        return put_object(in, b, t, tname, o);
    case 1:
        k = pick(in, 9);
        rc = puts_(b, "[");
        for (unsigned i = 0; i < k && rc == 0; i++) {
            rc = i > 0 ? puts_(b, ", ") : 0;
            if (rc == 0) {
                rc = pick(in, 6) == 5 ? puts_(b, shapes[pick(in, N_SHAPES)])
                                      : put_object(in, b, t, tname, o);
            }
        }
        return rc != 0 ? rc : puts_(b, "]");
    case 2:
        k = pick(in, 9);
        for (unsigned i = 0; i < k && rc == 0; i++) {
            switch (pick(in, 5)) {
            case 3:
                rc = puts_(b, shapes[pick(in, N_SHAPES)]);
                break;
            case 4:
                take_bytes(in, 40, &p, &n);
                rc = put(b, p, n);
                break;
            default:
                rc = put_object(in, b, t, tname, o);
                break;
            }
            if (rc == 0) {
                rc = puts_(b, pick(in, 4) == 3 ? "\r\n" : "\n");
            }
        }
        return rc;
    case 3:
        k = pick(in, 4) + 2;
        for (unsigned i = 0; i < k && rc == 0; i++) {
            rc = put_object(in, b, t, tname, o);
        }
        return rc;
    case 4:
        return puts_(b, shapes[pick(in, N_SHAPES)]);
    case 5:
        /* Deep nesting, past the parsers' depth limits. */
        n = (size_t)pick(in, 256) * 40 + 1;
        if (pick(in, 2) == 0) {
            rc = put_repeat(b, "[", n);
            return rc != 0 ? rc : put_repeat(b, "]", n);
        }
        rc = put_repeat(b, "{\"a\":", n);
        if (rc == 0) {
            rc = puts_(b, "1");
        }
        return rc != 0 ? rc : put_repeat(b, "}", n);
    case 6:
        *ce_kind = 1;
        return put_cloudevent(in, b, t, tname);
    case 7:
        *ce_kind = 2;
        k = pick(in, 6);
        rc = puts_(b, "[");
        for (unsigned i = 0; i < k && rc == 0; i++) {
            rc = i > 0 ? puts_(b, ", ") : 0;
            if (rc == 0) {
                rc = put_cloudevent(in, b, t, tname);
            }
        }
        return rc != 0 ? rc : puts_(b, "]");
    case 8:
        take_bytes(in, 512, &p, &n);
        return put(b, p, n);
    case 9:
        /* many events: the per-body limits and the queue's batch path */
        k = (unsigned)pick(in, 64) * 16 + 1;
        rc = puts_(b, "[");
        for (unsigned i = 0; i < k && rc == 0; i++) {
            rc = putf(b,
                      "%s{\"event_name\": \"crash_report\", \"user_id\": %u, "
                      "\"timestamp\": 1700000000, \"message\": \"m\"}",
                      i > 0 ? "," : "", i);
        }
        return rc != 0 ? rc : puts_(b, "]");
    case 10:
        return putf(b, "[%s, %s, {\"n\": %s}]", odd_values[pick(in, N_ODD)],
                    odd_values[pick(in, N_ODD)], odd_values[pick(in, N_ODD)]);
    default:
        rc = puts_(b, "data=");
        if (rc == 0) {
            rc = put_object(in, b, t, tname, o);
        }
        return rc != 0 ? rc : puts_(b, "&x=%7B%7D");
    }
}

/*
 * The Segment tracking API's bodies (server/segment.c): messages of each call with their ids,
 * messageIds that meet again, times, context, integrations, a track's properties for a
 * declared type named by its event (exactly or in Title Case), and the body's writeKey.
 */
static const char *const seg_calls[] = {"identify", "track", "page", "screen", "group", "alias"};
#define N_SEG_CALLS (sizeof(seg_calls) / sizeof(seg_calls[0]))

/* The write key in the body: the server's keys, a wrong one, and values of the wrong type. */
static int
put_write_key(struct fzg_in *in, struct fzg_buf *b, const char *sep)
{
    static const char *const keys[] = {"\"open\"", "\"t\"", "\"wrong\"",  "\"\"",
                                       "null",     "1",     "[\"open\"]", "\"open\\u0000\""};

    return putf(b, "%s\"writeKey\": %s", sep, keys[pick(in, sizeof(keys) / sizeof(keys[0]))]);
}

/* A user, group or previous id: a few values so that repeats meet, and the wrong types. */
static int
put_seg_id(struct fzg_in *in, struct fzg_buf *b, const char *sep, const char *name)
{
    static const char *const ids[] = {"\"u1\"",
                                      "\"u2\"",
                                      "7",
                                      "\"\"",
                                      "null",
                                      "-1",
                                      "1.5",
                                      "{}",
                                      "true",
                                      "\"\\u0000\"",
                                      "9223372036854775808"};
    const uint8_t *p;
    size_t n;
    int rc;

    if (pick(in, 4) != 3) {
        return putf(b, "%s\"%s\": %s", sep, name, ids[pick(in, sizeof(ids) / sizeof(ids[0]))]);
    }
    rc = putf(b, "%s\"%s\": ", sep, name);
    take_bytes(in, 64, &p, &n);
    return rc != 0 ? rc : put_json_bytes(b, p, n, pick(in, 4) == 0);
}

/* A track's event: the type's name, its Title Case ("a_keyed" -> "A Keyed"), or another. */
static int
put_seg_event(struct fzg_in *in, struct fzg_buf *b, const char *tname)
{
    static const char *const others[] = {
        "\"Signed Up\"", "\"\"", "null", "7", "\"  \"", "\"crash_report\"", "\"Crash Report\""};
    char title[160];
    size_t n = 0;
    bool start = true;

    switch (pick(in, 4)) {
    case 0:
        return puts_(b, "\"Signed Up\"");
    case 1:
        return putf(b, "\"%s\"", tname);
    case 2:
        for (const char *p = tname; *p != '\0' && n + 2 < sizeof(title); p++) {
            char c = *p == '_' ? ' ' : *p;

            title[n++] = start && c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
            start = c == ' ';
        }
        title[n] = '\0';
        return putf(b, "\"%s\"", title);
    default:
        return puts_(b, others[pick(in, sizeof(others) / sizeof(others[0]))]);
    }
}

/* One message of call kind (an index of seg_calls), its "type" as the input chooses. */
static int
put_seg_message(struct fzg_in *in, struct fzg_buf *b, unsigned kind, const struct fzg_type *t,
                const char *tname, bool top)
{
    static const char *const times[] = {"\"2026-03-01T10:00:00.000Z\"",
                                        "\"2026-03-01T10:00:05+02:00\"",
                                        "null",
                                        "\"2026-03-01\"",
                                        "1700000000",
                                        "\"\"",
                                        "\"9999-12-31T23:59:59Z\"",
                                        "\"2026-13-01T10:00:00Z\"",
                                        "\"0001-01-01T00:00:00Z\""};
    static const char *const time_names[] = {"timestamp", "originalTimestamp", "sentAt"};
    static const char *const contexts[] = {
        "{\"ip\": \"10.0.0.1\", \"library\": {\"name\": \"analytics-node\", \"version\": \"2\"}}",
        "{}",
        "null",
        "[]",
        "\"c\"",
        "{\"ip\": 7, \"traits\": {\"a\": [1, {\"b\": null}]}}"};
    struct fzg_obj_opts o = {0};
    const char *sep = ", ";
    int rc = puts_(b, "{");

    switch (pick(in, 4)) {
    case 0:
        rc = rc != 0 ? rc : putf(b, "\"type\": \"%s\"", seg_calls[kind]);
        break;
    case 1:
        sep = "";
        break;
    case 2:
        rc = rc != 0 ? rc : putf(b, "\"type\": \"%s\"", seg_calls[pick(in, N_SEG_CALLS)]);
        break;
    default:
        rc = rc != 0 ? rc : putf(b, "\"type\": %s", odd_values[pick(in, N_ODD)]);
        break;
    }
    if (rc == 0 && pick(in, 4) != 1) {
        rc = put_seg_id(in, b, sep, "userId");
        sep = ", ";
    }
    if (rc == 0 && pick(in, 3) == 1) {
        rc = put_seg_id(in, b, sep, "anonymousId");
        sep = ", ";
    }
    switch (rc == 0 ? pick(in, 4) : 1) {
    case 0:
        rc = putf(b, "%s\"messageId\": \"m1\"", sep);
        sep = ", ";
        break;
    case 1:
        break;
    case 2:
        rc = putf(b, "%s\"messageId\": \"", sep);
        rc = rc != 0 ? rc : put_key_text(in, b, false);
        rc = rc != 0 ? rc : puts_(b, "\"");
        sep = ", ";
        break;
    default:
        rc = putf(b, "%s\"messageId\": %s", sep, odd_values[pick(in, N_ODD)]);
        sep = ", ";
        break;
    }
    /* The call's own members. */
    if (rc == 0 && kind == 1 && pick(in, 6) != 5) {
        rc = putf(b, "%s\"event\": ", sep);
        rc = rc != 0 ? rc : put_seg_event(in, b, tname);
        sep = ", ";
    }
    if (rc == 0 && (kind == 2 || kind == 3) && pick(in, 3) == 0) {
        rc = putf(b, "%s\"name\": %s", sep, pick(in, 2) ? odd_values[pick(in, N_ODD)] : "\"Home\"");
        sep = ", ";
    }
    if (rc == 0 && kind == 4 && pick(in, 6) != 5) {
        rc = put_seg_id(in, b, sep, "groupId");
        sep = ", ";
    }
    if (rc == 0 && kind == 5 && pick(in, 6) != 5) {
        rc = put_seg_id(in, b, sep, "previousId");
        sep = ", ";
    }
    if (rc == 0 && kind != 5) {
        const char *member = kind == 0 || kind == 4 ? "traits" : "properties";

        switch (pick(in, 5)) {
        case 0:
            rc = putf(b, "%s\"%s\": ", sep, member);
            rc = rc != 0 ? rc : put_object(in, b, t, tname, &o);
            break;
        case 1:
            rc = putf(b, "%s\"%s\": {}", sep, member);
            break;
        case 2:
            rc = putf(b, "%s\"%s\": %s", sep, member, odd_values[pick(in, N_ODD)]);
            break;
        case 3:
            /* over server.segment_max_message_bytes, or near it */
            rc = putf(b, "%s\"%s\": {\"p\": \"", sep, member);
            rc = rc != 0 ? rc : put_repeat(b, "x", (size_t)pick(in, 64) * 1024 + 1);
            rc = rc != 0 ? rc : puts_(b, "\"}");
            break;
        default:
            break;
        }
        sep = ", ";
    }
    for (size_t i = 0; i < sizeof(time_names) / sizeof(time_names[0]) && rc == 0; i++) {
        unsigned k = pick(in, sizeof(times) / sizeof(times[0]) + 1);

        if (k > 0) {
            rc = putf(b, "%s\"%s\": %s", sep, time_names[i], times[k - 1]);
            sep = ", ";
        }
    }
    while (rc == 0) {
        switch (pick(in, 7)) {
        case 1:
            rc = putf(b, "%s\"context\": %s", sep,
                      contexts[pick(in, sizeof(contexts) / sizeof(contexts[0]))]);
            break;
        case 2:
            rc = putf(b, "%s\"integrations\": %s", sep,
                      pick(in, 2) ? odd_values[pick(in, N_ODD)] : "{\"All\": true}");
            break;
        case 3:
            rc = put_write_key(in, b, sep);
            break;
        case 4:
            rc = putf(b, "%s\"%s\": %s", sep, pick(in, 2) ? "type" : "messageId",
                      odd_values[pick(in, N_ODD)]);
            break;
        case 5:
            rc = putf(b, "%s\"extra\": %s", sep, odd_values[pick(in, N_ODD)]);
            break;
        case 6:
            rc = top ? putf(b, "%s\"batch\": []", sep) : put_seg_id(in, b, sep, "userId");
            break;
        default:
            return puts_(b, "}");
        }
        sep = ", ";
    }
    return rc;
}

/* A Segment route's body: one message of its call, or (call NULL) a batch of them. */
static int
put_segment_body(struct fzg_in *in, struct fzg_buf *b, const char *call, const struct fzg_type *t,
                 const char *tname)
{
    static const char *const not_lists[] = {"[]", "{}", "null", "[[]]", "[1]", "\"m\""};
    unsigned k;
    int rc;

    if (call != NULL) {
        unsigned kind = 0;

        while (kind + 1 < N_SEG_CALLS && strcmp(seg_calls[kind], call) != 0) {
            kind++;
        }
        return put_seg_message(in, b, kind, t, tname, true);
    }
    rc = puts_(b, "{\"batch\": ");
    k = pick(in, 8);
    if (rc == 0 && k == 7) {
        rc = puts_(b, not_lists[pick(in, sizeof(not_lists) / sizeof(not_lists[0]))]);
    } else if (rc == 0) {
        /* one message, two to seven, or many (the per-body limits) */
        k = k == 0 ? 1 : k == 6 ? (unsigned)pick(in, 64) * 8 + 1 : k + 1;
        rc = puts_(b, "[");
        for (unsigned i = 0; i < k && rc == 0; i++) {
            rc = i > 0 ? puts_(b, ", ") : 0;
            rc = rc != 0 ? rc : put_seg_message(in, b, pick(in, N_SEG_CALLS), t, tname, false);
        }
        rc = rc != 0 ? rc : puts_(b, "]");
    }
    while (rc == 0) {
        switch (pick(in, 6)) {
        case 1:
            rc = put_write_key(in, b, ", ");
            break;
        case 2:
            rc = puts_(b, ", \"context\": {\"ip\": \"10.0.0.3\", \"locale\": \"en\"}");
            break;
        case 3:
            rc = putf(b, ", \"integrations\": %s",
                      pick(in, 2) ? odd_values[pick(in, N_ODD)] : "{\"All\": false}");
            break;
        case 4:
            rc = putf(b, ", \"sentAt\": %s",
                      pick(in, 2) ? odd_values[pick(in, N_ODD)] : "\"2026-03-01T10:00:10Z\"");
            break;
        case 5:
            rc = puts_(b, ", \"batch\": []");
            break;
        default:
            return puts_(b, "}");
        }
    }
    return rc;
}

/* body gzipped into out; cut short (a truncated stream) when cut is set. */
static int
gzip_body(const struct fzg_buf *body, struct fzg_buf *out, bool cut)
{
    z_stream z;
    uLong bound;
    int rc;

    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        return -1;
    }
    bound = deflateBound(&z, (uLong)body->len) + 32;
    out->len = 0;
    if (out->cap < bound) {
        char *p = realloc(out->p, bound);

        if (p == NULL) {
            deflateEnd(&z);
            return -1;
        }
        out->p = p;
        out->cap = bound;
    }
    z.next_in = (Bytef *)(body->p != NULL ? body->p : "");
    z.avail_in = (uInt)body->len;
    z.next_out = (Bytef *)out->p;
    z.avail_out = (uInt)bound;
    rc = deflate(&z, Z_FINISH);
    out->len = z.total_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END) {
        return -1;
    }
    if (cut && out->len > 12) {
        out->len /= 2;
    }
    return 0;
}

/* ce-* header values: percent-encoded text, %00, and the edges of the checks. */
static const char *
ce_value(struct fzg_in *in, const char *tname, unsigned attr)
{
    static const char *const odd[] = {"",    "%00", "e%00two",      "%zz",    "/a%20b", "%2Fs",
                                      "a b", "%",   "%F0%9F%98%80", "%ff%fe", "1.0",    "0.3"};
    static const char *const good[] = {"1.0", "e1", "/s", NULL};
    unsigned i = pick(in, sizeof(odd) / sizeof(odd[0]) + 2);

    if (i == 0) {
        return good[attr] != NULL ? good[attr] : tname;
    }
    if (i == 1) {
        return attr == 3 ? "crash%5Freport" : "e2";
    }
    return odd[i - 2];
}

/* Extra headers from the dictionary. */
static int
put_extra_header(struct fzg_in *in, struct fzg_buf *b, const char *tname)
{
    static const char *const lines[] = {
        "Origin: https://a.example\r\n",
        "Origin: https://b.example\r\n",
        "Origin: null\r\n",
        "Access-Control-Request-Method: POST\r\n",
        "Access-Control-Request-Headers: idempotency-key, ce-id, content-type\r\n",
        "Connection: close\r\n",
        "Connection: keep-alive\r\n",
        "Expect: 100-continue\r\n",
        "Accept-Encoding: gzip\r\n",
        "Accept: text/html\r\n",
        "X-Forwarded-For: 10.0.0.1\r\n",
        "ce-time: 2026-05-01T10:00:00Z\r\n",
        "ce-subject: %00\r\n",
        "ce-datacontenttype: text/plain\r\n",
        "ce-ext1: 1\r\n",
        "Transfer-Encoding: identity\r\n",
        "Content-Type: application/json\r\n",
        "Idempotency-Key: k2\r\n",
        "X-API-Key: t\r\n",
        "Authorization: Bearer nope\r\n",
    };
    unsigned i = pick(in, sizeof(lines) / sizeof(lines[0]) + 1);
    const uint8_t *p;
    size_t n;
    int rc;

    if (i < sizeof(lines) / sizeof(lines[0])) {
        return puts_(b, lines[i]);
    }
    /* a header of the input's own bytes, line ends taken out */
    rc = putf(b, "X-%s: ", tname[0] != '\0' && strlen(tname) < 64 ? "T" : "U");
    take_bytes(in, 128, &p, &n);
    for (size_t j = 0; j < n && rc == 0; j++) {
        uint8_t c = p[j] == '\r' || p[j] == '\n' ? ' ' : p[j];

        rc = put(b, &c, 1);
    }
    return rc != 0 ? rc : puts_(b, "\r\n");
}

/* The path of a route row, {type} and {id} filled in, maybe a query string. */
static int
put_path(struct fzg_in *in, struct fzg_buf *b, const char *pattern, const char *tname)
{
    static const char *const ids[] = {
        "0190d6a4-7b3c-7def-8123-456789abcdef",
        "x",
        "0190d6a4-7b3c-7def-8123-456789abcdeg",
        "0190D6A4-7B3C-7DEF-8123-456789ABCDEF",
        "%00",
        "00000000-0000-0000-0000-000000000000",
        "p1",
        "1",
    };
    static const char *const queries[] = {
        "",
        "?a=b",
        "?type=crash_report",
        "?limit=0",
        "?limit=-1",
        "?limit=x",
        "?type=nosuch&limit=5",
        "?%zz",
        "?limit=1000000001",
        "?type=&limit=1&type=a",
    };
    const char *s = pattern;
    int rc = 0;

    while (*s != '\0' && rc == 0) {
        if (strncmp(s, "{type}", 6) == 0) {
            rc = pick(in, 8) == 7 ? putf(b, "%%%02x%s", tname[0], tname[0] != '\0' ? tname + 1 : "")
                                  : puts_(b, tname);
            s += 6;
        } else if (strncmp(s, "{id}", 4) == 0) {
            rc = puts_(b, ids[pick(in, sizeof(ids) / sizeof(ids[0]))]);
            s += 4;
        } else {
            rc = put(b, s, 1);
            s++;
        }
    }
    if (rc == 0 && strcmp(pattern, "/v1/tap") == 0) {
        /* A valid tap streams until its limit, holding the connection: only its refusals. */
        static const char *const refused[] = {
            "?limit=0",          "?limit=-1",
            "?limit=x",          "?type=nosuch&limit=5",
            "?limit=1000000001", "?type=&limit=1&type=a",
            "?type=%00",         "?limit=",
            "?limit=1x",
        };

        return puts_(b, refused[pick(in, sizeof(refused) / sizeof(refused[0]))]);
    }
    return rc != 0 ? rc : puts_(b, queries[pick(in, sizeof(queries) / sizeof(queries[0]))]);
}

/* One request into out. */
static int
put_request(struct fzg_in *in, struct fzg_buf *out, struct fzg_buf *body, struct fzg_buf *gz)
{
    static const char *const other_paths[] = {
        "/nosuch",
        "//v1/events",
        "/v1/events/crash_report/",
        "/v1/events/%63rash_report",
        "/v1/events/../events",
        "/v1/events/crash_report?x",
        "*",
        "/v1/types/",
    };
    static const char *const methods[] = {"GET",    "HEAD",  "POST", "OPTIONS", "PUT",
                                          "DELETE", "PATCH", "get",  "BREW"};
    static const char *const content_types[] = {
        "application/json",
        "application/x-ndjson",
        "application/jsonl",
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/cloudevents+json",
        "application/cloudevents-batch+json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "application/cloudevents+json; charset=utf-8",
        "text/html",
        "application/jsonx",
        "",
        ";",
    };
    static const char *const auths[] = {
        "X-API-Key: open\r\n",
        "Authorization: Bearer open\r\n",
        "Authorization: Bearer t\r\n",
        "Authorization: Basic b3Blbjo=\r\n",
        "",
        "X-API-Key: wrong\r\n",
        "Authorization: Bearer \r\n",
        "Authorization: bearer   open\r\n",
        "X-API-Key: \r\n",
        "Authorization: Bearer wrong\r\nX-API-Key: open\r\n",
        "X-API-Key: open\r\nX-API-Key: t\r\n",
    };
    /* The Segment routes' credentials: the write key as the Basic user name, or in the body. */
    static const char *const seg_auths[] = {
        "Authorization: Basic b3Blbjo=\r\n",     /* open: */
        "",                                      /* the body's writeKey */
        "Authorization: Basic dDo=\r\n",         /* t: (rate-limited) */
        "Authorization: Basic b3Blbjpwdw==\r\n", /* open:pw */
        "Authorization: Basic b3Blbg==\r\n",     /* open, no colon */
        "Authorization: Basic d3Jvbmc6\r\n",     /* wrong: */
        "Authorization: Basic Og==\r\n",         /* : */
        "Authorization: Basic !!\r\n",
        "Authorization: Basic \r\n",
        "Authorization: basic b3Blbjo=\r\n",
        "Authorization: Bearer open\r\n",
        "X-API-Key: open\r\n",
        "Authorization: Basic d3Jvbmc6\r\nX-API-Key: open\r\n",
    };
    struct fzg_obj_opts o = {0};
    const struct fzg_type *t;
    const struct srv_route *route = NULL;
    const char *tname;
    const char *other = NULL;
    const struct fzg_buf *sent = body;
    unsigned ri =
        pick(in, (unsigned)(srv_routes_len + sizeof(other_paths) / sizeof(other_paths[0])));
    unsigned mi;
    unsigned enc;
    unsigned framing;
    int ce_kind = 0;
    int rc;

    t = pick_type(in, &tname);
    if (ri < srv_routes_len) {
        route = &srv_routes[ri];
    } else {
        other = other_paths[ri - srv_routes_len];
    }
    mi = pick(in, sizeof(methods) / sizeof(methods[0]) + 1);
    if (mi == 0) {
        rc = puts_(out, route == NULL || (route->methods & SRV_POST) ? "POST " : "GET ");
    } else {
        rc = putf(out, "%s ", methods[mi - 1]);
    }
    if (rc == 0) {
        rc = route != NULL ? put_path(in, out, route->path, tname) : puts_(out, other);
    }
    if (rc == 0) {
        static const char *const versions[] = {" HTTP/1.1\r\n", " HTTP/1.0\r\n", " HTTP/2.0\r\n",
                                               " HTTP/1.1 \r\n"};

        rc = puts_(out, versions[pick(in, 4)]);
    }
    if (rc == 0) {
        rc = puts_(out, "Host: x\r\n");
    }
    if (rc == 0) {
        if (route != NULL && route->segment_call != NULL) {
            rc = puts_(out, seg_auths[pick(in, sizeof(seg_auths) / sizeof(seg_auths[0]))]);
        } else {
            rc = puts_(out, auths[pick(in, sizeof(auths) / sizeof(auths[0]))]);
        }
    }

    /* The body first: the headers say its length and encoding. */
    body->len = 0;
    if (route == NULL || route->event_type != NULL || strstr(route->path, "{type}") != NULL) {
        o.event_name = NULL;
    } else {
        o.event_name = tname;
    }
    if (rc == 0 && (route == NULL || (route->methods & SRV_POST) || pick(in, 4) == 0)) {
        rc = put(body, "", 0);
        if (rc == 0 && route != NULL && route->segment_call != NULL && pick(in, 8) != 7) {
            rc = put_segment_body(
                in, body, strcmp(route->segment_call, "batch") == 0 ? NULL : route->segment_call, t,
                tname);
        } else if (rc == 0) {
            rc = put_body(in, body, t, tname, &o, &ce_kind);
        }
    }
    if (rc == 0) {
        unsigned ci = pick(in, sizeof(content_types) / sizeof(content_types[0]) + 2);

        if (ci == 0 && ce_kind != 0) {
            rc = putf(out, "Content-Type: %s\r\n", content_types[4 + ce_kind]);
        } else if (ci >= 2) {
            rc = putf(out, "Content-Type: %s\r\n", content_types[ci - 2]);
        } else if (ci == 0) {
            rc = puts_(out, "Content-Type: application/json\r\n");
        }
    }
    if (rc == 0 && pick(in, 3) != 0) {
        rc = puts_(out, "Idempotency-Key: ");
        if (rc == 0) {
            rc = put_key_text(in, out, true);
        }
        if (rc == 0) {
            rc = puts_(out, "\r\n");
        }
    }
    if (rc == 0 && pick(in, 4) == 1) {
        /* binary CloudEvents: the attributes in headers, each maybe left out */
        static const char *const names[] = {"ce-specversion", "ce-id", "ce-source", "ce-type"};

        for (unsigned a = 0; a < 4 && rc == 0; a++) {
            if (pick(in, 6) != 5) {
                rc = putf(out, "%s: %s\r\n", names[a], ce_value(in, tname, a));
            }
        }
    }
    for (unsigned k = pick(in, 5); k > 0 && rc == 0; k--) {
        rc = put_extra_header(in, out, tname);
    }

    enc = pick(in, 8);
    if (rc == 0 && enc != 0) {
        static const char *const encodings[] = {"gzip",       "gzip",     "deflate", "br",
                                                "gzip, gzip", "identity", "GZIP"};

        rc = putf(out, "Content-Encoding: %s\r\n", encodings[enc - 1]);
        if (rc == 0 && (enc == 1 || enc == 2 || enc == 7)) {
            rc = gzip_body(body, gz, enc == 2);
            sent = gz;
        }
    }

    framing = pick(in, 9);
    if (rc == 0) {
        switch (framing) {
        case 0:
            if (sent->len > 0 || (route != NULL && (route->methods & SRV_POST))) {
                rc = putf(out, "Content-Length: %zu\r\n", sent->len);
            }
            break;
        case 1:
            break;
        case 2:
            rc = putf(out, "Content-Length: %zu\r\n", sent->len + 1 + pick(in, 64));
            break;
        case 3:
            rc = putf(out, "Content-Length: %zu\r\n", sent->len > 0 ? sent->len - 1 : 0);
            break;
        case 4:
        case 5:
            rc = puts_(out, "Transfer-Encoding: chunked\r\n");
            break;
        case 6:
            rc = putf(out, "Content-Length: %zu\r\nTransfer-Encoding: chunked\r\n", sent->len);
            break;
        case 7:
            rc = puts_(out, "Content-Length: 1x\r\n");
            break;
        default:
            rc = putf(out, "Content-Length: %zu\r\nContent-Length: 0\r\n", sent->len);
            break;
        }
    }
    if (rc == 0) {
        rc = puts_(out, "\r\n");
    }
    if (rc == 0 && (framing == 4 || framing == 5 || framing == 6)) {
        size_t off = 0;

        while (off < sent->len && rc == 0) {
            /*
             * 0 (and an exhausted input) sends the rest in one chunk: 1-byte chunks by default
             * made a large body tens of thousands of chunks, which civetweb reads a recv() per
             * byte of each chunk line, and such inputs took most of the fuzzer's time.
             */
            size_t c = pick(in, 64);
            size_t n = c == 0 ? sent->len - off : c * 16 - 15;

            n = n < sent->len - off ? n : sent->len - off;
            rc = putf(out, framing == 5 && pick(in, 2) ? "%zX ;ext\r\n" : "%zx\r\n", n);
            if (rc == 0) {
                rc = put(out, sent->p + off, n);
            }
            if (rc == 0) {
                rc = puts_(out, "\r\n");
            }
            off += n;
        }
        if (rc == 0) {
            rc = puts_(out, framing == 5 && pick(in, 2) ? "zz\r\n\r\n" : "0\r\n\r\n");
        }
    } else if (rc == 0 && sent->len > 0) {
        rc = put(out, sent->p, sent->len);
    }
    return rc;
}

int
fzg_build(const uint8_t *data, size_t size, struct fzg_buf *out)
{
    struct fzg_in in = {data, size, 0};
    struct fzg_buf body = {0};
    struct fzg_buf gz = {0};
    size_t first;
    unsigned again;
    int rc;

    out->len = 0;
    rc = put(out, "", 0);
    if (rc == 0) {
        rc = put_request(&in, out, &body, &gz);
    }
    /* The same request again on the connection (a client's retry), or a second one. */
    again = pick(&in, 4);
    first = out->len;
    for (unsigned i = 1; i < again && rc == 0; i++) {
        if (i == 1) {
            /* out->p may move while it grows: reserve first, then copy. */
            if (out->cap < out->len + first + 1) {
                char *p = realloc(out->p, out->len + first + 1);

                rc = p != NULL ? 0 : -1;
                if (p != NULL) {
                    out->p = p;
                    out->cap = out->len + first + 1;
                }
            }
            if (rc == 0) {
                rc = put(out, out->p, first);
            }
        } else {
            rc = put_request(&in, out, &body, &gz);
        }
    }
    fzg_buf_free(&body);
    fzg_buf_free(&gz);
    return rc;
}
