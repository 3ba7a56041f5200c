/*
 * fuzz_events.c - libFuzzer target over events/: a body is split and
 * validated with and without a URL type, and every accepted event must encode
 * to exactly one well-formed COPY row; the fast JSON reader must agree with
 * jansson whenever it accepts. Three declared types (every field type and
 * constraint, unknown fields rejected or kept, one whose rows may be binary) are in the
 * registry too; rows of a type whose copy_binary is set also encode in COPY's binary
 * format, column by column to the row's end.
 * Aborts on any broken invariant.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "etc/decl.h"
#include "etc/err.h"
#include "events/events.h"
#include "events/internal.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *plans[] = {"free", "pro"};

/* "fz": one field of every type, with every constraint; unknown fields rejected. */
static struct dp_field_decl fz_fields[] = {
    {.name = "s", .type = DP_FIELD_STRING, .required = true, .max_length = 8},
    {.name = "e", .type = DP_FIELD_STRING, .enums = plans, .n_enums = 2},
    {.name = "p", .type = DP_FIELD_STRING, .pattern = "^[a-z]+(-[0-9]+)?$"},
    {.name = "i",
     .type = DP_FIELD_INTEGER,
     .has_min = true,
     .min_int = -5,
     .has_max = true,
     .max_int = 1000},
    {.name = "n", .type = DP_FIELD_NUMBER, .has_min = true, .min_num = -0.5},
    {.name = "b", .type = DP_FIELD_BOOLEAN},
    {.name = "ts", .type = DP_FIELD_TIMESTAMP},
    {.name = "ip", .type = DP_FIELD_IP},
    {.name = "u", .type = DP_FIELD_URL, .max_length = 40},
    {.name = "id2", .type = DP_FIELD_UUID},
    {.name = "o", .type = DP_FIELD_OBJECT},
    {.name = "a", .type = DP_FIELD_ARRAY},
};

/* "fk": a few fields, unknown ones kept in extra. */
static struct dp_field_decl fk_fields[] = {
    {.name = "user_id", .type = DP_FIELD_INTEGER, .required = true},
    {.name = "timestamp", .type = DP_FIELD_TIMESTAMP},
    {.name = "message", .type = DP_FIELD_STRING},
};

/* "fb": the same fields and a uuid and a url, unknown ones refused: its rows may be binary. */
static struct dp_field_decl fb_fields[] = {
    {.name = "user_id", .type = DP_FIELD_INTEGER, .required = true},
    {.name = "timestamp", .type = DP_FIELD_TIMESTAMP},
    {.name = "message", .type = DP_FIELD_STRING},
    {.name = "ref", .type = DP_FIELD_UUID},
    {.name = "page", .type = DP_FIELD_URL},
};

static struct dp_type_decl fuzz_decls[] = {
    {.name = "fz", .fields = fz_fields, .n_fields = sizeof(fz_fields) / sizeof(fz_fields[0])},
    {.name = "fk",
     .fields = fk_fields,
     .n_fields = sizeof(fk_fields) / sizeof(fk_fields[0]),
     .keep_unknown = true},
    {.name = "fb", .fields = fb_fields, .n_fields = sizeof(fb_fields) / sizeof(fb_fields[0])},
};

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct dp_types types = {fuzz_decls, sizeof(fuzz_decls) / sizeof(fuzz_decls[0])};

    (void)argc;
    (void)argv;
    if (ev_registry_update(&types, NULL, NULL) != 0) {
        abort();
    }
    return 0;
}

static size_t
count_char(const char *s, size_t n, char c)
{
    size_t k = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        k += s[i] == c;
    }
    return k;
}

/*
 * A binary COPY row (ev_buf's binary) is its column count, then per column a length (-1:
 * NULL) and that many bytes, ending exactly at the end of the row.
 */
static void
check_binary_row(const struct ev_buf *out, size_t columns)
{
    const unsigned char *p = (const unsigned char *)out->data;
    size_t off = 2;

    if (out->len < 2 || (size_t)(p[0] << 8 | p[1]) != columns) {
        abort();
    }
    for (size_t i = 0; i < columns; i++) {
        uint32_t n;

        if (out->len - off < 4) {
            abort();
        }
        n = (uint32_t)p[off] << 24 | (uint32_t)p[off + 1] << 16 | (uint32_t)p[off + 2] << 8 |
            p[off + 3];
        off += 4;
        if (n == UINT32_MAX) {
            continue;
        }
        if (n > out->len - off) {
            abort();
        }
        off += n;
    }
    if (off != out->len) {
        abort();
    }
}

/* Every accepted event encodes; rows have one line and the declared column count. */
static void
check_encode(const struct ev_item *it)
{
    struct ev_stored ev = {
        .json = it->raw,
        .json_len = it->raw_len,
        .received_us = INT64_C(1700000000123456),
        .now_us = INT64_C(1700000001000000),
        .seq = 1,
    };
    struct ev_buf out = {0};
    char err[EV_ERR_MAX];
    int rc;

    rc = ev_encode(it->type, &ev, &out, err);
    if (rc != 0) {
        abort();
    }
    if (it->type->copy_binary) {
        struct ev_buf bin = {.binary = true};

        if (ev_encode(it->type, &ev, &bin, err) != 0) {
            abort();
        }
        check_binary_row(
            &bin, count_char(it->type->copy_columns, strlen(it->type->copy_columns), ',') + 1);
        ev_buf_free(&bin);
    }
    if (out.len == 0 || out.data[out.len - 1] != '\n' || count_char(out.data, out.len, '\n') != 1 ||
        count_char(out.data, out.len, '\t') !=
            count_char(it->type->copy_columns, strlen(it->type->copy_columns), ',')) {
        abort();
    }
    ev_buf_free(&out);
}

/* A rejected event's text goes into a JSON answer: it must be valid UTF-8. */
static void
check_error(const struct ev_item *it)
{
    json_t *s = json_string(it->error);

    if (s == NULL || strlen(it->error) == 0) {
        abort();
    }
    json_decref(s);
    /*
     * Encoding a rejected event must fail cleanly, never crash; with its own
     * type it must fail. One other type per item keeps the target fast.
     */
    {
        const struct ev_type *t = it->type ? it->type : ev_registry[it->index % ev_registry_len];
        struct ev_stored ev = {.json = it->raw, .json_len = it->raw_len};
        struct ev_buf out = {0};
        char err[EV_ERR_MAX];

        if (ev_encode(t, &ev, &out, err) == 0 && it->type == t) {
            abort();
        }
        ev_buf_free(&out);
    }
}

static void
run(const char *body, size_t size, const struct ev_type *t)
{
    struct ev_batch b = {0};
    size_t valid = 0;
    size_t i;
    int rc;

    rc = ev_parse_body(body, size, t, &b);
    if (rc != 0 && rc != DP_ERR_INVALID) {
        abort();
    }
    for (i = 0; i < b.n; i++) {
        const struct ev_item *it = &b.items[i];

        if (it->index != i || it->raw < body || it->raw + it->raw_len > body + size) {
            abort();
        }
        if (it->error == NULL) {
            valid++;
            if (it->type == NULL || (t != NULL && it->type != t)) {
                abort();
            }
            check_encode(it);
        } else {
            check_error(it);
        }
    }
    if (valid != b.n_valid) {
        abort();
    }
    ev_batch_free(&b);
}

/* Differential: what the fast reader accepts, jansson accepts equal, ending at the same byte. */
static void
check_fast(const char *s, size_t size)
{
    const char *nul = memchr(s, '\0', size);
    size_t n = nul ? (size_t)(nul - s) : size;
    size_t end = 0;
    json_error_t je;
    json_t *fast = ev_json_fast(s, n, &end);
    json_t *ref;

    if (fast == NULL) {
        return;
    }
    ref = json_loadb(s, n, JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES, &je);
    if (ref == NULL || !json_equal(fast, ref) || (size_t)je.position != end) {
        abort();
    }
    json_decref(ref);
    json_decref(fast);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_fast((const char *)data, size);
    run((const char *)data, size, NULL);
    run((const char *)data, size, ev_registry[size % ev_registry_len]);
    return 0;
}
