/*
 * check_types.c - event types declared in the configuration, without PostgreSQL: every
 * declaration error with its exact key path, merging and printing, the registry's updates,
 * every field type and constraint with the exact 400 texts, the COPY rows, and a declared
 * twin of crash_report answering like the compiled one.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etc/config.h"
#include "etc/decl.h"
#include "etc/err.h"
#include "etc/retention.h"
#include "events/events.h"
#include "tests/lib/lib_test.h"

static char *dir;

static void
setup(void)
{
    dir = t_tmpdir();
    ev_registry_reset();
}

static void
teardown(void)
{
    ev_registry_reset();
    t_rmtree(dir);
    free(dir);
}

/* Load a file holding text; returns rc, *cfg or *errors set. */
static int
load_text(const char *text, struct dp_config **cfg, char **errors, char **path)
{
    struct dp_config_sources src = {NULL, NULL, NULL};

    *path = t_write_file(dir, "t.json", text, -1);
    src.cli_path = *path;
    return dp_config_load(&src, cfg, errors);
}

static struct dp_config *
load_ok(const char *text)
{
    struct dp_config *cfg = NULL;
    char *errors = NULL;
    char *path = NULL;
    int rc = load_text(text, &cfg, &errors, &path);

    ck_assert_msg(rc == 0, "load failed: %s", errors ? errors : "(no text)");
    free(path);
    return cfg;
}

/* Register the types of a configuration text (its "types" value); returns type name. */
static const struct ev_type *
declare(const char *types_json, const char *name)
{
    char *text = NULL;
    struct dp_config *cfg;
    const struct ev_type *t;

    ck_assert_int_ge(asprintf(&text, "{\"types\": %s}", types_json), 0);
    cfg = load_ok(text);
    ck_assert_int_eq(ev_registry_update(cfg->types, NULL, NULL), 0);
    dp_config_destroy(cfg);
    free(text);
    t = ev_lookup(name, strlen(name));
    ck_assert_ptr_nonnull(t);
    return t;
}

/* The one item's error for body sent to POST /v1/events/{t}; NULL when valid. malloc'd. */
static char *
err_of(const struct ev_type *t, const char *body)
{
    struct ev_batch b = {0};
    char *e;

    ck_assert_int_eq(ev_parse_body(body, strlen(body), t, &b), 0);
    ck_assert_uint_eq(b.n, 1);
    e = b.items[0].error != NULL ? strdup(b.items[0].error) : NULL;
    ev_batch_free(&b);
    return e;
}

/* ---- declaration errors --------------------------------------------------------------- */

static const struct {
    const char *types; /* the value of "types" */
    const char *error; /* the one error line, after "FILE: " */
} bad[] = {
    {"[]", "types: expected object, got array"},
    {"{\"Page\": {\"fields\": {}}}",
     "types.Page: invalid name (lower-case letters, digits and _, starting with a letter, "
     "at most 63 bytes)"},
    {"{\"9x\": {\"fields\": {}}}",
     "types.9x: invalid name (lower-case letters, digits and _, starting with a letter, at "
     "most 63 bytes)"},
    {"{\"a-b\": {\"fields\": {}}}",
     "types.a-b: invalid name (lower-case letters, digits and _, starting with a letter, at "
     "most 63 bytes)"},
    {"{\"a234567890123456789012345678901234567890123456789012345678901234\": {\"fields\": {}}}",
     "types.a234567890123456789012345678901234567890123456789012345678901234: invalid name "
     "(lower-case letters, digits and _, starting with a letter, at most 63 bytes)"},
    {"{\"crash_report\": {\"fields\": {}}}",
     "types.crash_report: name taken by a built-in event type"},
    {"{\"dead_letter\": {\"fields\": {}}}",
     "types.dead_letter: name taken by one of the appliance's own tables"},
    {"{\"loader_batches\": {\"fields\": {}}}",
     "types.loader_batches: name taken by one of the appliance's own tables"},
    {"{\"queue_owners\": {\"fields\": {}}}",
     "types.queue_owners: name taken by one of the appliance's own tables"},
    {"{\"queue_watermarks\": {\"fields\": {}}}",
     "types.queue_watermarks: name taken by one of the appliance's own tables"},
    {"{\"watermark\": {\"fields\": {}}}",
     "types.watermark: name taken by one of the appliance's own tables"},
    {"{\"pg_type\": {\"fields\": {}}}",
     "types.pg_type: name taken by PostgreSQL (names beginning pg_ are its system catalogs')"},
    {"{\"pg_x\": {\"fields\": {}}}",
     "types.pg_x: name taken by PostgreSQL (names beginning pg_ are its system catalogs')"},
    {"{\"dp_key_0123456789abcdef\": {\"fields\": {}}}",
     "types.dp_key_0123456789abcdef: name taken by datapipe's indexes, constraints and "
     "temporary tables (names beginning dp_)"},
    {"{\"crash_report_pkey\": {\"fields\": {}}}",
     "types.crash_report_pkey: name taken by an index or sequence of one of the appliance's "
     "own tables"},
    {"{\"crash_report_idempotency_key\": {\"fields\": {}}}",
     "types.crash_report_idempotency_key: name taken by an index or sequence of one of the "
     "appliance's own tables"},
    {"{\"queue_owners_pkey\": {\"fields\": {}}}",
     "types.queue_owners_pkey: name taken by an index or sequence of one of the appliance's "
     "own tables"},
    {"{\"dead_letter_seq_seq\": {\"fields\": {}}}",
     "types.dead_letter_seq_seq: name taken by an index or sequence of one of the appliance's "
     "own tables"},
    {"{\"dead_letter_event_id\": {\"fields\": {}}}",
     "types.dead_letter_event_id: name taken by an index or sequence of one of the "
     "appliance's own tables"},
    {"{\"x\": {\"fields\": {\"xmin\": {\"type\": \"integer\"}}}}",
     "types.x.fields.xmin: reserved: PostgreSQL gives every table a system column \"xmin\""},
    {"{\"x\": {\"fields\": {\"ctid\": {\"type\": \"string\"}}}}",
     "types.x.fields.ctid: reserved: PostgreSQL gives every table a system column \"ctid\""},
    {"{\"x\": {\"fields\": {\"tableoid\": {\"type\": \"string\"}}}}",
     "types.x.fields.tableoid: reserved: PostgreSQL gives every table a system column "
     "\"tableoid\""},
    {"{\"x\": {\"fields\": {\"cmin\": {\"type\": \"string\"}}}}",
     "types.x.fields.cmin: reserved: PostgreSQL gives every table a system column \"cmin\""},
    {"{\"x\": {\"fields\": {\"cmax\": {\"type\": \"string\"}}}}",
     "types.x.fields.cmax: reserved: PostgreSQL gives every table a system column \"cmax\""},
    {"{\"x\": {\"fields\": {\"xmax\": {\"type\": \"string\"}}}}",
     "types.x.fields.xmax: reserved: PostgreSQL gives every table a system column \"xmax\""},
    {"{\"x\": {\"fields\": {\"idempotency_key\": {\"type\": \"string\"}}}}",
     "types.x.fields.idempotency_key: reserved: every declared table has a column "
     "\"idempotency_key\" of its own"},
    {"{\"x\": {\"fields\": {\"extra\": {\"type\": \"object\"}}}}",
     "types.x.fields.extra: reserved: every declared table has a column \"extra\" of its own"},
    {"{\"x\": {\"fields\": {\"loaded_at\": {\"type\": \"timestamp\"}}}}",
     "types.x.fields.loaded_at: reserved: every declared table has a column \"loaded_at\" of "
     "its own"},
    {"{\"x\": \"page\"}", "types.x: expected object, got string"},
    {"{\"x\": {}}", "types.x: \"fields\" is required"},
    {"{\"x\": {\"fields\": {}, \"field\": 1}}",
     "types.x.field: unknown key (a type has fields, unknown_fields)"},
    {"{\"x\": {\"fields\": {}, \"unknown_fields\": \"drop\"}}",
     "types.x.unknown_fields: must be one of reject, keep"},
    {"{\"x\": {\"fields\": {}, \"unknown_fields\": true}}",
     "types.x.unknown_fields: expected string, got boolean"},
    {"{\"x\": {\"fields\": [\"a\"]}}", "types.x.fields: expected object, got array"},
    {"{\"x\": {\"fields\": {\"a\": \"string\"}}}", "types.x.fields.a: expected object, got string"},
    {"{\"x\": {\"fields\": {\"userId\": {\"type\": \"string\"}}}}",
     "types.x.fields.userId: invalid name (lower-case letters, digits and _, starting with a "
     "letter, at most 63 bytes)"},
    {"{\"x\": {\"fields\": {\"id\": {\"type\": \"string\"}}}}",
     "types.x.fields.id: reserved: every declared table has a column \"id\" of its own"},
    {"{\"x\": {\"fields\": {\"received_at\": {\"type\": \"timestamp\"}}}}",
     "types.x.fields.received_at: reserved: every declared table has a column \"received_at\" "
     "of its own"},
    {"{\"x\": {\"fields\": {\"event_name\": {\"type\": \"string\"}}}}",
     "types.x.fields.event_name: reserved: every declared table has a column \"event_name\" of "
     "its own"},
    {"{\"x\": {\"fields\": {\"a\": {\"required\": true}}}}",
     "types.x.fields.a.type: required (one of string, integer, number, boolean, timestamp, ip, "
     "url, uuid, object, array)"},
    {"{\"x\": {\"fields\": {\"a\": {\"type\": 1}}}}",
     "types.x.fields.a.type: expected string, got integer"},
    {"{\"page_view\": {\"fields\": {\"url\": {\"type\": \"urll\"}}}}",
     "types.page_view.fields.url.type: unknown field type \"urll\" (one of string, integer, "
     "number, boolean, timestamp, ip, url, uuid, object, array)"},
    {"{\"x\": {\"fields\": {\"a\": {\"type\": \"string\", \"required\": \"yes\"}}}}",
     "types.x.fields.a.required: expected boolean, got string"},
    {"{\"x\": {\"fields\": {\"a\": {\"type\": \"string\", \"required\": null}}}}",
     "types.x.fields.a.required: null is not allowed here"},
    {"{\"x\": {\"fields\": {\"a\": {\"type\": \"integer\", \"max_length\": 3}}}}",
     "types.x.fields.a.max_length: only for string and url fields"},
    {"{\"x\": {\"fields\": {\"a\": {\"type\": \"string\", \"max_length\": 0}}}}",
     "types.x.fields.a.max_length: must be 1..1073741824"},
    {"{\"x\": {\"fields\": {\"a\": {\"type\": \"string\", \"max_length\": \"3\"}}}}",
     "types.x.fields.a.max_length: expected integer, got string"},
    {"{\"x\": {\"fields\": {\"a\": {\"type\": \"string\", \"min\": 1}}}}",
     "types.x.fields.a.min: only for integer and number fields"},
    {"{\"x\": {\"fields\": {\"a\": {\"type\": \"integer\", \"min\": 1.5}}}}",
     "types.x.fields.a.min: expected integer, got number"},
    {"{\"x\": {\"fields\": {\"a\": {\"type\": \"number\", \"max\": \"9\"}}}}",
     "types.x.fields.a.max: expected number, got string"},
    {"{\"x\": {\"fields\": {\"a\": {\"type\": \"integer\", \"min\": 5, \"max\": 4}}}}",
     "types.x.fields.a.min: greater than max"},
    {"{\"x\": {\"fields\": {\"a\": {\"type\": \"number\", \"min\": 0.5, \"max\": 0.25}}}}",
     "types.x.fields.a.min: greater than max"},
    {"{\"x\": {\"fields\": {\"a\": {\"type\": \"integer\", \"enum\": [\"1\"]}}}}",
     "types.x.fields.a.enum: only for string fields"},
    {"{\"x\": {\"fields\": {\"a\": {\"type\": \"string\", \"enum\": []}}}}",
     "types.x.fields.a.enum: must not be empty"},
    {"{\"x\": {\"fields\": {\"a\": {\"type\": \"string\", \"enum\": \"a\"}}}}",
     "types.x.fields.a.enum: expected array of strings, got string"},
    {"{\"x\": {\"fields\": {\"a\": {\"type\": \"string\", \"enum\": [\"a\", 2]}}}}",
     "types.x.fields.a.enum[1]: expected string, got number"},
    {"{\"x\": {\"fields\": {\"a\": {\"type\": \"string\", \"pattern\": \"a((\"}}}}",
     "types.x.fields.a.pattern: not a POSIX extended regular expression: Unmatched ( or \\("},
    {"{\"x\": {\"fields\": {\"a\": {\"type\": \"boolean\", \"pattern\": \"a\"}}}}",
     "types.x.fields.a.pattern: only for string and url fields"},
    {"{\"x\": {\"fields\": {\"a\": {\"type\": \"string\", \"pattern\": 1}}}}",
     "types.x.fields.a.pattern: expected string, got integer"},
    {"{\"x\": {\"fields\": {\"a\": {\"type\": \"string\", \"maxlength\": 1}}}}",
     "types.x.fields.a.maxlength: unknown key (a field has type, required, max_length, min, "
     "max, enum, pattern)"},
};

START_TEST(test_declaration_errors)
{
    struct dp_config *cfg = NULL;
    char *errors = NULL;
    char *path = NULL;
    char *text = NULL;
    char *want = NULL;

    ck_assert_int_ge(asprintf(&text, "{\"types\": %s}", bad[_i].types), 0);
    ck_assert_int_eq(load_text(text, &cfg, &errors, &path), DP_ERR_CONFIG);
    ck_assert_ptr_null(cfg);
    ck_assert_int_ge(asprintf(&want, "%s: %s\n", path, bad[_i].error), 0);
    ck_assert_str_eq(errors, want);
    free(want);
    free(text);
    free(path);
    free(errors);
}
END_TEST

START_TEST(test_every_declaration_error_reported)
{
    struct dp_config *cfg = NULL;
    char *errors = NULL;
    char *path = NULL;
    int lines = 0;
    int rc;

    rc = load_text("{\"types\": {\"a\": {\"fields\": {\"x\": {\"type\": \"str\"}, "
                   "\"y\": {\"type\": \"integer\", \"min\": 2, \"max\": 1}}}, "
                   "\"product\": {\"fields\": {}}, "
                   "\"b\": {\"fields\": {}, \"unknown_fields\": \"no\"}}}",
                   &cfg, &errors, &path);
    ck_assert_int_eq(rc, DP_ERR_CONFIG);
    for (const char *p = errors; *p != '\0'; p++) {
        lines += *p == '\n';
    }
    ck_assert_int_eq(lines, 4);
    ck_assert_ptr_nonnull(strstr(errors, "types.a.fields.x.type: unknown field type \"str\""));
    ck_assert_ptr_nonnull(strstr(errors, "types.a.fields.y.min: greater than max"));
    ck_assert_ptr_nonnull(strstr(errors, "types.product: name taken by a built-in event type"));
    ck_assert_ptr_nonnull(strstr(errors, "types.b.unknown_fields: must be one of reject, keep"));
    free(errors);
    free(path);
}
END_TEST

/* A "types" text with n types (or one type with n fields when fields is true). */
static char *
many(int n, bool fields)
{
    size_t cap = (size_t)n * 64 + 128;
    char *s = malloc(cap);
    size_t used;

    ck_assert_ptr_nonnull(s);
    used =
        (size_t)snprintf(s, cap, fields ? "{\"types\": {\"t\": {\"fields\": {" : "{\"types\": {");
    for (int i = 0; i < n; i++) {
        used += (size_t)snprintf(s + used, cap - used,
                                 fields ? "%s\"f%d\": {\"type\": \"string\"}"
                                        : "%s\"t%d\": {\"fields\": {}}",
                                 i > 0 ? ", " : "", i);
    }
    snprintf(s + used, cap - used, fields ? "}}}}" : "}}");
    return s;
}

START_TEST(test_declaration_limits)
{
    struct dp_config *cfg = NULL;
    char *errors = NULL;
    char *path = NULL;
    char *text;
    char *want;

    text = many(DP_TYPES_MAX, false);
    cfg = load_ok(text);
    ck_assert_uint_eq(cfg->types->n, DP_TYPES_MAX);
    dp_config_destroy(cfg);
    free(text);
    text = many(DP_TYPES_MAX + 1, false);
    ck_assert_int_eq(load_text(text, &cfg, &errors, &path), DP_ERR_CONFIG);
    ck_assert_int_ge(asprintf(&want, "%s: types: more than 64 declared types\n", path), 0);
    ck_assert_str_eq(errors, want);
    free(want);
    free(errors);
    free(path);
    free(text);

    text = many(DP_TYPE_FIELDS_MAX, true);
    cfg = load_ok(text);
    ck_assert_uint_eq(cfg->types->types[0].n_fields, DP_TYPE_FIELDS_MAX);
    dp_config_destroy(cfg);
    free(text);
    text = many(DP_TYPE_FIELDS_MAX + 1, true);
    ck_assert_int_eq(load_text(text, &cfg, &errors, &path), DP_ERR_CONFIG);
    ck_assert_int_ge(asprintf(&want, "%s: types.t.fields: more than 200 fields\n", path), 0);
    ck_assert_str_eq(errors, want);
    free(want);
    free(errors);
    free(path);
    free(text);
}
END_TEST

/* ---- declarations loaded ---------------------------------------------------------------- */

static const char page_view[] =
    "{\"page_view\": {\"fields\": {"
    "\"user_id\": {\"type\": \"string\", \"required\": true, \"max_length\": 64},"
    "\"url\": {\"type\": \"url\", \"required\": true},"
    "\"viewed_at\": {\"type\": \"timestamp\", \"required\": true},"
    "\"duration_ms\": {\"type\": \"integer\", \"min\": 0},"
    "\"ratio\": {\"type\": \"number\", \"min\": -1, \"max\": 1.5},"
    "\"plan\": {\"type\": \"string\", \"enum\": [\"free\", \"pro\"], \"pattern\": \"^[a-z]+$\"},"
    "\"props\": {\"type\": \"object\"}},"
    "\"unknown_fields\": \"keep\"}}";

START_TEST(test_declaration_built)
{
    char *text = NULL;
    struct dp_config *cfg;
    const struct dp_type_decl *d;

    ck_assert_int_ge(asprintf(&text, "{\"types\": %s}", page_view), 0);
    cfg = load_ok(text);
    ck_assert_uint_eq(cfg->types->n, 1);
    d = dp_types_find(cfg->types, "page_view");
    ck_assert_ptr_nonnull(d);
    ck_assert(d->keep_unknown);
    ck_assert_uint_eq(d->n_fields, 7);
    ck_assert_str_eq(d->fields[0].name, "user_id");
    ck_assert_int_eq(d->fields[0].type, DP_FIELD_STRING);
    ck_assert(d->fields[0].required);
    ck_assert_int_eq(d->fields[0].max_length, 64);
    ck_assert_int_eq(d->fields[1].type, DP_FIELD_URL);
    ck_assert_int_eq(d->fields[2].type, DP_FIELD_TIMESTAMP);
    ck_assert(d->fields[3].has_min && !d->fields[3].has_max);
    ck_assert_int_eq(d->fields[3].min_int, 0);
    ck_assert(!d->fields[3].required);
    ck_assert(d->fields[4].min_num == -1.0 && d->fields[4].max_num == 1.5);
    ck_assert_uint_eq(d->fields[5].n_enums, 2);
    ck_assert_str_eq(d->fields[5].enums[1], "pro");
    ck_assert_str_eq(d->fields[5].pattern, "^[a-z]+$");
    ck_assert_int_eq(d->fields[6].type, DP_FIELD_OBJECT);
    ck_assert_ptr_null(dp_types_find(cfg->types, "nope"));
    dp_config_destroy(cfg);
    free(text);
}
END_TEST

START_TEST(test_later_file_wins_type_by_type)
{
    char *a = t_write_file(dir, "a.json",
                           "{\"types\": {\"x\": {\"fields\": {\"a\": {\"type\": \"string\"}}},"
                           " \"y\": {\"fields\": {\"b\": {\"type\": \"integer\"}}}}}",
                           -1);
    char *b = t_write_file(
        dir, "b.json", "{\"types\": {\"x\": {\"fields\": {\"c\": {\"type\": \"boolean\"}}}}}", -1);
    struct dp_config_sources src = {a, NULL, b};
    struct dp_config *cfg = NULL;
    char *errors = NULL;
    const struct dp_type_decl *x;

    ck_assert_int_eq(dp_config_load(&src, &cfg, &errors), 0);
    ck_assert_uint_eq(cfg->types->n, 2);
    x = dp_types_find(cfg->types, "x");
    ck_assert_uint_eq(x->n_fields, 1);
    ck_assert_str_eq(x->fields[0].name, "c");
    ck_assert_str_eq(dp_types_find(cfg->types, "y")->fields[0].name, "b");
    dp_config_destroy(cfg);
    free(a);
    free(b);
}
END_TEST

START_TEST(test_libconfig_syntax_same_declaration)
{
    char *j = NULL;
    char *c;
    struct dp_config *cj;
    struct dp_config *cc;
    struct dp_config_sources src = {NULL, NULL, NULL};
    char *errors = NULL;
    char *tj;
    char *tc;

    ck_assert_int_ge(asprintf(&j, "{\"types\": %s}", page_view), 0);
    cj = load_ok(j);
    c = t_write_file(dir, "t.cfg",
                     "types = { page_view = { fields = {\n"
                     "  user_id = { type = \"string\"; required = true; max_length = 64; };\n"
                     "  url = { type = \"url\"; required = true; };\n"
                     "  viewed_at = { type = \"timestamp\"; required = true; };\n"
                     "  duration_ms = { type = \"integer\"; min = 0; };\n"
                     "  ratio = { type = \"number\"; min = -1; max = 1.5; };\n"
                     "  plan = { type = \"string\"; enum = [\"free\", \"pro\"]; "
                     "pattern = \"^[a-z]+$\"; };\n"
                     "  props = { type = \"object\"; };\n"
                     "}; unknown_fields = \"keep\"; }; };\n",
                     -1);
    src.cli_path = c;
    ck_assert_int_eq(dp_config_load(&src, &cc, &errors), 0);
    tj = dp_config_to_json(cj);
    tc = dp_config_to_json(cc);
    ck_assert_str_eq(tj, tc);
    ck_assert_ptr_nonnull(strstr(tj, "\"types\": {\n    \"page_view\": {\n      \"fields\": {\n"
                                     "        \"user_id\": {\n          \"type\": \"string\",\n"
                                     "          \"required\": true,\n"
                                     "          \"max_length\": 64\n        },"));
    ck_assert_ptr_nonnull(strstr(tj, "\"unknown_fields\": \"keep\""));
    free(tj);
    free(tc);
    dp_config_destroy(cj);
    dp_config_destroy(cc);
    free(j);
    free(c);
}
END_TEST

static void
collect_key(void *arg, const char *key, bool reloadable)
{
    char *buf = arg;

    strcat(buf, key);
    strcat(buf, reloadable ? " reloadable;" : " restart;");
}

START_TEST(test_diff_names_types)
{
    struct dp_config *a = load_ok("{\"types\": {\"x\": {\"fields\": {}}, "
                                  "\"y\": {\"fields\": {\"f\": {\"type\": \"string\"}}}}}");
    struct dp_config *b = load_ok("{\"types\": {\"y\": {\"fields\": {\"f\": {\"type\": \"uuid\"}}},"
                                  " \"z\": {\"fields\": {}}}}");
    char keys[256] = "";

    /* A new type is reloadable (SIGHUP registers it); a changed or removed one is not. */
    dp_config_diff(a, b, DP_DAEMON_SERVER | DP_DAEMON_LOADER, collect_key, keys);
    ck_assert_str_eq(keys, "types.y restart;types.z reloadable;types.x restart;");
    keys[0] = '\0';
    dp_config_diff(a, a, DP_DAEMON_SERVER, collect_key, keys);
    ck_assert_str_eq(keys, "");
    dp_config_destroy(a);
    dp_config_destroy(b);
}
END_TEST

/* ---- the registry ----------------------------------------------------------------------- */

/* etc/retention.c cannot read the registry (etc/ calls nothing of ours): its view of every
 * built-in type, append or upsert, must be the registry's. */
START_TEST(test_builtins_retention)
{
    ck_assert_uint_gt(ev_registry_len, 0);
    for (size_t i = 0; i < ev_registry_len; i++) {
        bool append = false;

        ck_assert_ptr_null(ev_registry[i]->decl);
        ck_assert_msg(dp_retention_builtin(ev_registry[i]->name, &append),
                      "built-in %s is unknown to etc/retention.c", ev_registry[i]->name);
        ck_assert_msg(append == (ev_registry[i]->load == EV_LOAD_APPEND),
                      "built-in %s: etc/retention.c says append=%d", ev_registry[i]->name, append);
    }
    ck_assert(!dp_retention_builtin("page_view", NULL));
}
END_TEST

START_TEST(test_builtins_reserved)
{
    size_t builtins = 0;

    for (size_t i = 0; i < ev_registry_len; i++) {
        if (ev_registry[i]->decl == NULL) {
            ck_assert_msg(dp_types_name_reserved(ev_registry[i]->name) != NULL,
                          "built-in %s is not reserved in etc/decl_conf.c", ev_registry[i]->name);
            builtins++;
        }
    }
    ck_assert_uint_eq(builtins, ev_registry_len);
    ck_assert_str_eq(dp_types_name_reserved("dead_letter"), "one of the appliance's own tables");
    ck_assert_ptr_null(dp_types_name_reserved("page_view"));
    /* Names like the derived ones but not taken stay free. */
    ck_assert_ptr_null(dp_types_name_reserved("a_keyed"));
    ck_assert_ptr_null(dp_types_name_reserved("x_pkey"));
    ck_assert_ptr_null(dp_types_name_reserved("pgx"));
    ck_assert_ptr_null(dp_types_name_reserved("dpx"));
    for (size_t i = 0; i < ev_registry_len; i++) {
        char name[DP_TYPE_NAME_MAX + 1];

        if (ev_registry[i]->keyed) {
            snprintf(name, sizeof(name), "%s_idempotency_key", ev_registry[i]->name);
            ck_assert_ptr_nonnull(dp_types_name_reserved(name));
        }
        snprintf(name, sizeof(name), "%s_pkey", ev_registry[i]->name);
        ck_assert_ptr_nonnull(dp_types_name_reserved(name));
    }
}
END_TEST

static void
collect_change(void *arg, const char *type, enum ev_change change)
{
    char *buf = arg;
    static const char *const names[] = {"added", "changed", "removed"};

    strcat(buf, type);
    strcat(buf, ":");
    strcat(buf, names[change]);
    strcat(buf, ";");
}

START_TEST(test_registry_update)
{
    struct dp_config *a = load_ok("{\"types\": {\"x\": {\"fields\": {\"f\": {\"type\": "
                                  "\"string\"}}}}}");
    struct dp_config *b = load_ok("{\"types\": {\"x\": {\"fields\": {\"f\": {\"type\": "
                                  "\"integer\"}}}, \"y\": {\"fields\": {}}}}");
    struct dp_config *c = load_ok("{\"types\": {\"y\": {\"fields\": {}}}}");
    size_t base = ev_registry_len;
    const struct ev_type *x;
    char notes[256] = "";

    ck_assert_int_eq(ev_registry_update(a->types, collect_change, notes), 0);
    ck_assert_str_eq(notes, "x:added;");
    ck_assert_uint_eq(ev_registry_len, base + 1);
    x = ev_lookup("x", 1);
    ck_assert_ptr_eq(x, ev_registry[base]);
    ck_assert_str_eq(x->table, "\"x\"");
    notes[0] = '\0';
    ck_assert_int_eq(ev_registry_update(a->types, collect_change, notes), 0);
    ck_assert_str_eq(notes, "");
    /* A changed type stays as it runs until a restart; a new one is added. */
    ck_assert_int_eq(ev_registry_update(b->types, collect_change, notes), 0);
    ck_assert_str_eq(notes, "x:changed;y:added;");
    ck_assert_ptr_eq(ev_lookup("x", 1), x);
    ck_assert_int_eq(x->decl->fields[0].type, DP_FIELD_STRING);
    notes[0] = '\0';
    ck_assert_int_eq(ev_registry_update(c->types, collect_change, notes), 0);
    ck_assert_str_eq(notes, "x:removed;");
    ck_assert_ptr_eq(ev_lookup("x", 1), x);
    ck_assert_uint_eq(ev_registry_len, base + 2);
    dp_config_destroy(a);
    dp_config_destroy(b);
    dp_config_destroy(c);
}
END_TEST

START_TEST(test_registry_sql)
{
    const struct ev_type *t = declare(page_view, "page_view");
    const struct ev_type *o = declare("{\"order\": {\"fields\": {\"n\": {\"type\": \"number\", "
                                      "\"required\": true}}}}",
                                      "order");

    ck_assert_str_eq(t->ddl, "CREATE TABLE IF NOT EXISTS \"page_view\" (id uuid CONSTRAINT "
                             "\"dp_pk_2c71b7c15d5b745e\" PRIMARY KEY, "
                             "\"user_id\" text NOT NULL, \"url\" text NOT NULL, "
                             "\"viewed_at\" timestamp with time zone NOT NULL, "
                             "\"duration_ms\" bigint, \"ratio\" double precision, "
                             "\"plan\" text, \"props\" jsonb, extra jsonb, "
                             "idempotency_key text, idempotency_digest bytea, source text, "
                             "received_at timestamptz NOT NULL, "
                             "loaded_at timestamptz NOT NULL DEFAULT now())");
    ck_assert_str_eq(t->copy_columns, "(id, \"user_id\", \"url\", \"viewed_at\", "
                                      "\"duration_ms\", \"ratio\", \"plan\", \"props\", extra, "
                                      "received_at, idempotency_key, idempotency_digest, "
                                      "source)");
    ck_assert_str_eq(t->get_sql, "SELECT row_to_json(t.*)::text FROM \"page_view\" t "
                                 "WHERE t.id = $1::uuid");
    ck_assert_int_eq(t->load, EV_LOAD_APPEND);
    ck_assert_int_eq(t->id_kind, EV_ID_UUID);
    ck_assert_uint_eq(t->n_columns, 7);
    ck_assert_str_eq(t->columns[2].sql_type, "timestamp with time zone");
    ck_assert(t->columns[2].not_null);
    ck_assert(!t->columns[3].not_null);
    /* A reserved word is a fine type name: every identifier is quoted. */
    ck_assert_str_eq(o->copy_columns, "(id, \"n\", received_at, idempotency_key, "
                                      "idempotency_digest, source)");
}
END_TEST

/* ---- field types and constraints: the exact 400 texts ------------------------------------ */

static const char all_types[] =
    "{\"t\": {\"fields\": {"
    "\"s\": {\"type\": \"string\", \"max_length\": 3},"
    "\"e\": {\"type\": \"string\", \"enum\": [\"a\", \"b\"]},"
    "\"p\": {\"type\": \"string\", \"pattern\": \"^[a-z]+$\"},"
    "\"i\": {\"type\": \"integer\", \"min\": -5, \"max\": 5},"
    "\"n\": {\"type\": \"number\", \"min\": 0.5, \"max\": 10},"
    "\"b\": {\"type\": \"boolean\"},"
    "\"ts\": {\"type\": \"timestamp\"},"
    "\"ip\": {\"type\": \"ip\"},"
    "\"u\": {\"type\": \"url\", \"max_length\": 30, \"pattern\": \"example\"},"
    "\"uid\": {\"type\": \"uuid\"},"
    "\"o\": {\"type\": \"object\"},"
    "\"a\": {\"type\": \"array\"},"
    "\"r\": {\"type\": \"string\", \"required\": true}}}}";

static const struct {
    const char *members; /* added after "r": "x" (or the whole object if '{') */
    const char *error;   /* NULL: valid */
} field_cases[] = {
    {"", NULL},
    {"{}", "r: required field missing"},
    {"{\"r\": null}", "r: expected string, got null"},
    {"{\"r\": 1}", "r: expected string, got integer"},
    {"\"zz\": 1", "zz: unknown field"},
    {"\"event_name\": \"t\"", NULL},
    {"\"s\": null, \"i\": null, \"o\": null", NULL},
    {"\"s\": \"abc\"", NULL},
    {"\"s\": \"\xc3\xa9\xc3\xa9\xc3\xa9\"", NULL},
    {"\"s\": \"abcd\"", "s: longer than 3 characters"},
    {"\"s\": 1", "s: expected string, got integer"},
    {"\"e\": \"b\"", NULL},
    {"\"e\": \"c\"", "e: must be one of \"a\", \"b\""},
    {"\"e\": \"a \"", "e: must be one of \"a\", \"b\""},
    {"\"p\": \"abc\"", NULL},
    {"\"p\": \"ab1\"", "p: does not match the pattern \"^[a-z]+$\""},
    {"\"p\": \"\"", "p: does not match the pattern \"^[a-z]+$\""},
    {"\"i\": 5", NULL},
    {"\"i\": -5", NULL},
    {"\"i\": 6", "i: must be at most 5"},
    {"\"i\": -6", "i: must be at least -5"},
    {"\"i\": 1.5", "i: expected integer, got number"},
    {"\"i\": 1.0", "i: expected integer, got number"},
    {"\"i\": \"1\"", "i: expected integer, got string"},
    {"\"n\": 0.5", NULL},
    {"\"n\": 3", NULL},
    {"\"n\": 10", NULL},
    {"\"n\": 0.49", "n: must be at least 0.5"},
    {"\"n\": 10.01", "n: must be at most 10"},
    {"\"n\": true", "n: expected number, got boolean"},
    {"\"b\": false", NULL},
    {"\"b\": \"true\"", "b: expected boolean, got string"},
    {"\"b\": 1", "b: expected boolean, got integer"},
    {"\"ts\": 0", NULL},
    {"\"ts\": 253402300799", NULL},
    {"\"ts\": \"2024-02-29T23:59:59.5+05:30\"", NULL},
    {"\"ts\": \"2024-01-01T00:00:00Z\"", NULL},
    {"\"ts\": -1", "ts: out of range (0 to 253402300799 epoch seconds)"},
    {"\"ts\": 253402300800", "ts: out of range (0 to 253402300799 epoch seconds)"},
    /* fuzz_events: seconds whose microseconds overflow int64 (UBSan: signed overflow) */
    {"\"ts\": 170000000000000000", "ts: out of range (0 to 253402300799 epoch seconds)"},
    {"\"ts\": \"2024-01-01T00:00:00\"", "ts: missing UTC offset (Z or +hh:mm)"},
    {"\"ts\": \"2023-02-29T00:00:00Z\"", "ts: day out of range for the month"},
    {"\"ts\": \"yesterday\"",
     "ts: not an RFC 3339 date-time (YYYY-MM-DDTHH:MM:SS[.frac] then Z or +hh:mm)"},
    {"\"ts\": 1.5",
     "ts: expected epoch seconds (integer) or RFC 3339 date-time (string), got number"},
    {"\"ip\": \"10.0.0.1\"", NULL},
    {"\"ip\": \"2001:db8::1\"", NULL},
    {"\"ip\": \"10.0.0.256\"", "ip: not an IPv4 or IPv6 address"},
    {"\"ip\": \"10.0.0.1/8\"", "ip: not an IPv4 or IPv6 address"},
    {"\"ip\": 167772161", "ip: expected string, got integer"},
    {"\"u\": \"https://example.com/x\"", NULL},
    {"\"u\": \"ftp://example.com/\"", "u: scheme must be http or https"},
    {"\"u\": \"/example\"", "u: not an absolute URL (no scheme)"},
    {"\"u\": \"http://ex ample.com\"", "u: not a valid URL (syntax error at character 10)"},
    {"\"u\": \"https://example.com/aaaaaaaaaaa\"", "u: longer than 30 characters"},
    {"\"u\": \"https://other.org/\"", "u: does not match the pattern \"example\""},
    {"\"u\": [\"https://example.com\"]", "u: expected string, got array"},
    {"\"uid\": \"0190d6a4-7b3c-7def-8123-456789abcdef\"", NULL},
    {"\"uid\": \"0190D6A4-7B3C-7DEF-8123-456789ABCDEF\"", NULL},
    {"\"uid\": \"0190d6a47b3c7def8123456789abcdef\"",
     "uid: not a UUID (8-4-4-4-12 hexadecimal digits)"},
    {"\"uid\": \"0190d6a4-7b3c-7def-8123-456789abcdeg\"",
     "uid: not a UUID (8-4-4-4-12 hexadecimal digits)"},
    {"\"uid\": 5", "uid: expected string, got integer"},
    {"\"o\": {\"k\": [1, {\"x\": null}]}", NULL},
    {"\"o\": []", "o: expected object, got array"},
    {"\"a\": [1, \"two\", {}]", NULL},
    {"\"a\": {}", "a: expected array, got object"},
    {"\"a\": \"[]\"", "a: expected array, got string"},
};

START_TEST(test_field_types_and_constraints)
{
    const struct ev_type *t = declare(all_types, "t");
    char *body = NULL;
    char *e;

    if (field_cases[_i].members[0] == '{') {
        body = strdup(field_cases[_i].members);
    } else {
        ck_assert_int_ge(asprintf(&body, "{\"r\": \"x\"%s%s}",
                                  field_cases[_i].members[0] != '\0' ? ", " : "",
                                  field_cases[_i].members),
                         0);
    }
    e = err_of(t, body);
    if (field_cases[_i].error == NULL) {
        ck_assert_msg(e == NULL, "%s: unexpected error %s", body, e);
    } else {
        ck_assert_msg(e != NULL, "%s: accepted", body);
        ck_assert_str_eq(e, field_cases[_i].error);
    }
    free(e);
    free(body);
}
END_TEST

START_TEST(test_event_name_routing)
{
    const struct ev_type *t = declare(all_types, "t");
    const char body[] = "{\"event_name\": \"t\", \"r\": \"x\"}\n{\"event_name\": \"t \", \"r\": 1}";
    struct ev_batch b = {0};

    ck_assert_int_eq(ev_parse_body(body, sizeof(body) - 1, NULL, &b), 0);
    ck_assert_uint_eq(b.n, 2);
    ck_assert_ptr_eq(b.items[0].type, t);
    ck_assert_ptr_null(b.items[0].error);
    /* The list is the registry's: the declared types follow the built-ins. */
    ck_assert_str_eq(b.items[1].error, "event_name: unknown event type \"t \" (valid types: "
                                       "crash_report, ad_event, user_login, product, "
                                       "data_sample, identifies, tracks, pages, screens, "
                                       "groups, aliases, users, t)");
    ev_batch_free(&b);
}
END_TEST

START_TEST(test_unknown_fields_keep)
{
    const struct ev_type *t = declare("{\"k\": {\"fields\": {\"a\": {\"type\": \"integer\"}}, "
                                      "\"unknown_fields\": \"keep\"}}",
                                      "k");
    char *e;

    e = err_of(t, "{\"a\": 1, \"b\": [2], \"c\": {\"d\": \"e\"}}");
    ck_assert_ptr_null(e);
    e = err_of(t, "{\"a\": \"1\", \"b\": 2}");
    ck_assert_str_eq(e, "a: expected integer, got string");
    free(e);
}
END_TEST

/* ---- COPY rows -------------------------------------------------------------------------- */

static char *
row_of(const struct ev_type *t, const char *json, int *rc, char err[EV_ERR_MAX])
{
    struct ev_stored ev = {
        .json = json,
        .json_len = strlen(json),
        .received_us = INT64_C(1700000000123456),
        .now_us = 0,
        .seq = 1,
    };
    struct ev_buf out = {0};
    char *s;

    for (int i = 0; i < 16; i++) {
        ev.uuid[i] = (uint8_t)(0x10 + i);
    }
    *rc = ev_encode(t, &ev, &out, err);
    s = strndup(out.data != NULL ? out.data : "", out.len);
    ev_buf_free(&out);
    return s;
}

/*
 * "idempotency_key" is reserved in every type: a declared type takes it as the event's key
 * (with the checks every key gets), never as an unknown field, and never keeps it in extra.
 */
START_TEST(test_key_field_reserved)
{
    const struct ev_type *r =
        declare("{\"r\": {\"fields\": {\"a\": {\"type\": \"integer\"}}}}", "r");
    const struct ev_type *k;
    const char body[] = "{\"a\": 1, \"idempotency_key\": \"k-1\"}\n"
                        "{\"a\": 2, \"idempotency_key\": \"\"}\n"
                        "{\"a\": 3, \"idempotency_key\": \"a\\u0001\"}";
    struct ev_batch b = {0};
    char err[EV_ERR_MAX] = "";
    char *row;
    int rc;

    ck_assert_int_eq(ev_parse_body(body, sizeof(body) - 1, r, &b), 0);
    ck_assert_uint_eq(b.n, 3);
    ck_assert_ptr_null(b.items[0].error);
    ck_assert_str_eq(b.items[0].key, "k-1");
    ck_assert_str_eq(b.items[1].error, "idempotency_key: must not be empty");
    ck_assert_str_eq(b.items[2].error, "idempotency_key: control character at byte 1");
    ev_batch_free(&b);
    k = declare("{\"k\": {\"fields\": {\"a\": {\"type\": \"integer\"}}, "
                "\"unknown_fields\": \"keep\"}}",
                "k");
    row = row_of(k, "{\"a\": 1, \"idempotency_key\": \"k-1\", \"b\": 2}", &rc, err);
    ck_assert_msg(rc == 0, "%s", err);
    ck_assert_str_eq(row, "10111213-1415-1617-1819-1a1b1c1d1e1f\t1\t{\"b\":2}\t"
                          "2023-11-14 22:13:20.123456+00\t\\N\t\\N\t\\N\n");
    free(row);
    row = row_of(k, "{\"a\": 1, \"idempotency_key\": \"k-1\"}", &rc, err);
    ck_assert_msg(rc == 0, "%s", err);
    ck_assert_str_eq(row, "10111213-1415-1617-1819-1a1b1c1d1e1f\t1\t\\N\t"
                          "2023-11-14 22:13:20.123456+00\t\\N\t\\N\t\\N\n");
    free(row);
}
END_TEST

START_TEST(test_copy_rows)
{
    const struct ev_type *t = declare(all_types, "t");
    const struct ev_type *k;
    char err[EV_ERR_MAX] = "";
    char *row;
    int rc;

    row = row_of(t,
                 "{\"s\": \"a\\tb\", \"e\": \"a\", \"p\": \"z\", \"i\": -5, \"n\": 2.25, "
                 "\"b\": true, \"ts\": \"2024-01-01T01:00:00+01:00\", \"ip\": \"::1\", "
                 "\"u\": \"https://example.com/\", "
                 "\"uid\": \"0190D6A4-7B3C-7DEF-8123-456789ABCDEF\", "
                 "\"o\": {\"x\": 1.10, \"y\": \"\\u00e9\"},  \"a\": [1 ,2], \"r\": \"\\\\N\"}",
                 &rc, err);
    ck_assert_msg(rc == 0, "%s", err);
    ck_assert_str_eq(row, "10111213-1415-1617-1819-1a1b1c1d1e1f\ta\\tb\ta\tz\t-5\t2.25\tt\t"
                          "2024-01-01 00:00:00.000000+00\t::1\thttps://example.com/\t"
                          "0190d6a4-7b3c-7def-8123-456789abcdef\t{\"x\": 1.10, \"y\": "
                          "\"\\\\u00e9\"}\t[1 ,2]\t\\\\N\t2023-11-14 22:13:20.123456+00"
                          "\t\\N\t\\N\t\\N\n");
    free(row);
    row = row_of(t, "{\"r\": \"x\", \"n\": 7, \"ts\": 86400, \"b\": false, \"s\": null}", &rc, err);
    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(row, "10111213-1415-1617-1819-1a1b1c1d1e1f\t\\N\t\\N\t\\N\t\\N\t7\tf\t"
                          "1970-01-02 00:00:00.000000+00\t\\N\t\\N\t\\N\t\\N\t\\N\tx\t"
                          "2023-11-14 22:13:20.123456+00\t\\N\t\\N\t\\N\n");
    free(row);
    /* A stored event that no longer validates is refused with the 400 text. */
    row = row_of(t, "{\"r\": \"x\", \"i\": 99}", &rc, err);
    ck_assert_int_eq(rc, DP_ERR_INVALID);
    ck_assert_str_eq(err, "i: must be at most 5");
    ck_assert_str_eq(row, "");
    free(row);

    k = declare("{\"k\": {\"fields\": {\"a\": {\"type\": \"integer\"}}, "
                "\"unknown_fields\": \"keep\"}}",
                "k");
    row = row_of(k, "{\"event_name\": \"k\", \"b\\\"q\": [2.50], \"a\": 1, \"c\": {\"d\": 1e3}}",
                 &rc, err);
    ck_assert_msg(rc == 0, "%s", err);
    ck_assert_str_eq(row, "10111213-1415-1617-1819-1a1b1c1d1e1f\t1\t{\"b\\\\\"q\":[2.50],"
                          "\"c\":{\"d\": 1e3}}\t2023-11-14 22:13:20.123456+00\t\\N\t\\N\t\\N\n");
    free(row);
    row = row_of(k, "{\"a\": 1}", &rc, err);
    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(row, "10111213-1415-1617-1819-1a1b1c1d1e1f\t1\t\\N\t"
                          "2023-11-14 22:13:20.123456+00\t\\N\t\\N\t\\N\n");
    free(row);
}
END_TEST

/* ---- the declared twin of crash_report -------------------------------------------------- */

static const char crash_twin[] = "{\"crash_twin\": {\"fields\": {"
                                 "\"user_id\": {\"type\": \"integer\", \"required\": true},"
                                 "\"timestamp\": {\"type\": \"timestamp\", \"required\": true},"
                                 "\"message\": {\"type\": \"string\", \"required\": true}}}}";

/* Bodies both must judge alike: valid ones and bad ones, with the same texts. */
static const char *const twin_bodies[] = {
    "{\"user_id\": 1, \"timestamp\": 1700000000, \"message\": \"boom\"}",
    "{\"message\": \"m\", \"timestamp\": 0, \"user_id\": -9223372036854775808}",
    "{}",
    "[1]",
    "17",
    "{\"user_id\": 1, \"timestamp\": 1}",
    "{\"timestamp\": 1, \"message\": \"m\"}",
    "{\"user_id\": \"1\", \"timestamp\": 1, \"message\": \"m\"}",
    "{\"user_id\": 1.5, \"timestamp\": 1, \"message\": \"m\"}",
    "{\"user_id\": null, \"timestamp\": 1, \"message\": \"m\"}",
    "{\"user_id\": 1, \"timestamp\": -1, \"message\": \"m\"}",
    "{\"user_id\": 1, \"timestamp\": 253402300800, \"message\": \"m\"}",
    "{\"user_id\": 1, \"timestamp\": 1, \"message\": 5}",
    "{\"user_id\": 1, \"timestamp\": 1, \"message\": \"m\", \"extra\": 1}",
    "{\"user_id\": 1, \"timestamp\": 1, \"mesage\": \"m\"}",
    "{\"user_id\": 1, \"timestamp\": 1, \"message\": \"m\"",
};

START_TEST(test_twin_same_answers)
{
    const struct ev_type *twin = declare(crash_twin, "crash_twin");
    const struct ev_type *crash = ev_lookup("crash_report", 12);
    char *a = err_of(crash, twin_bodies[_i]);
    char *b = err_of(twin, twin_bodies[_i]);

    ck_assert_msg((a == NULL) == (b == NULL), "%s: %s vs %s", twin_bodies[_i], a, b);
    if (a != NULL) {
        ck_assert_str_eq(a, b);
    }
    free(a);
    free(b);
}
END_TEST

START_TEST(test_twin_differs_only_where_documented)
{
    const struct ev_type *twin = declare(crash_twin, "crash_twin");
    const struct ev_type *crash = ev_lookup("crash_report", 12);
    const char body[] = "{\"user_id\": 1, \"timestamp\": \"2024-01-01T00:00:00Z\", "
                        "\"message\": \"m\"}";
    char *a = err_of(crash, body);
    char *b = err_of(twin, body);

    /* A declared timestamp also takes RFC 3339 text; the compiled one only integers. */
    ck_assert_str_eq(a, "timestamp: expected integer, got string");
    ck_assert_ptr_null(b);
    free(a);
}
END_TEST

static Suite *
types_suite(void)
{
    Suite *s = suite_create("types");
    TCase *decl = tcase_create("declarations");
    TCase *reg = tcase_create("registry");
    TCase *fields = tcase_create("fields");
    TCase *twin = tcase_create("twin");

    tcase_add_checked_fixture(decl, setup, teardown);
    tcase_add_loop_test(decl, test_declaration_errors, 0, (int)(sizeof(bad) / sizeof(bad[0])));
    tcase_add_test(decl, test_every_declaration_error_reported);
    tcase_add_test(decl, test_declaration_limits);
    tcase_add_test(decl, test_declaration_built);
    tcase_add_test(decl, test_later_file_wins_type_by_type);
    tcase_add_test(decl, test_libconfig_syntax_same_declaration);
    tcase_add_test(decl, test_diff_names_types);
    tcase_add_checked_fixture(reg, setup, teardown);
    tcase_add_test(reg, test_builtins_reserved);
    tcase_add_test(reg, test_builtins_retention);
    tcase_add_test(reg, test_registry_update);
    tcase_add_test(reg, test_registry_sql);
    tcase_add_checked_fixture(fields, setup, teardown);
    tcase_add_loop_test(fields, test_field_types_and_constraints, 0,
                        (int)(sizeof(field_cases) / sizeof(field_cases[0])));
    tcase_add_test(fields, test_event_name_routing);
    tcase_add_test(fields, test_unknown_fields_keep);
    tcase_add_test(fields, test_copy_rows);
    tcase_add_test(fields, test_key_field_reserved);
    tcase_add_checked_fixture(twin, setup, teardown);
    tcase_add_loop_test(twin, test_twin_same_answers, 0,
                        (int)(sizeof(twin_bodies) / sizeof(twin_bodies[0])));
    tcase_add_test(twin, test_twin_differs_only_where_documented);
    suite_add_tcase(s, decl);
    suite_add_tcase(s, reg);
    suite_add_tcase(s, fields);
    suite_add_tcase(s, twin);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(types_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
