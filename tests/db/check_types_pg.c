/*
 * check_types_pg.c - declared event types against a real PostgreSQL (tests/pg): the
 * declared twin of crash_report loads and reads back like the compiled one, schema evolution
 * (a new optional field, a removed one, refusals that alter nothing, two loaders starting at
 * once), and events of an undeclared type held in the queue until it is declared again.
 */
#include <check.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "etc/config.h"
#include "etc/decl.h"
#include "etc/err.h"
#include "events/events.h"
#include "loader/loader.h"
#include "tests/lib/lib_loader.h"
#include "tests/lib/lib_test.h"

#define RECEIVED_US INT64_C(1700000000123456)

static const char crash_twin[] = "{\"crash_twin\": {\"fields\": {"
                                 "\"user_id\": {\"type\": \"integer\", \"required\": true},"
                                 "\"timestamp\": {\"type\": \"timestamp\", \"required\": true},"
                                 "\"message\": {\"type\": \"string\", \"required\": true}}}}";

/* ---- helpers ---------------------------------------------------------------------------- */

/* Make the registry the built-ins plus the types of types_json, as a restart would. */
static void
declare(const struct tl_env *e, const char *types_json)
{
    struct dp_config_sources src = {NULL, NULL, NULL};
    struct dp_config *cfg = NULL;
    char *errors = NULL;
    char *text = NULL;
    char *path;

    ev_registry_reset();
    ck_assert_int_ge(asprintf(&text, "{\"types\": %s}", types_json), 0);
    path = t_write_file(e->dir, "types.json", text, -1);
    src.cli_path = path;
    ck_assert_msg(dp_config_load(&src, &cfg, &errors) == 0, "%s", errors);
    ck_assert_int_eq(ev_registry_update(cfg->types, NULL, NULL), 0);
    dp_config_destroy(cfg);
    free(path);
    free(text);
}

/* Start a loader on e (one worker) and, if that works, run it once. Returns the first error. */
static int
start_and_run(struct tl_env *e, struct ldr_run_stats *st)
{
    struct ldr_options o = tl_options(e, 1, 1000);
    struct ldr *l = NULL;
    int rc;

    ck_assert_int_eq(ldr_create(&l, e->q, &o), 0);
    rc = ldr_start(l);
    if (rc == 0) {
        rc = ldr_run(l, st);
    }
    ldr_destroy(l);
    return rc;
}

/* stderr into a file while a test looks at the log. */
struct capture {
    int saved;
    char *path;
};

static void
capture_begin(struct capture *c, const struct tl_env *e)
{
    int fd;

    ck_assert_int_ge(asprintf(&c->path, "%s/log.txt", e->dir), 0);
    fd = open(c->path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    ck_assert_int_ge(fd, 0);
    c->saved = dup(2);
    ck_assert_int_ge(c->saved, 0);
    ck_assert_int_eq(dup2(fd, 2), 2);
    close(fd);
}

/* Restore stderr; returns the captured text (malloc'd). */
static char *
capture_end(struct capture *c)
{
    FILE *f;
    char *text = calloc(1, 1 << 20);
    size_t n;

    ck_assert_ptr_nonnull(text);
    dup2(c->saved, 2);
    close(c->saved);
    f = fopen(c->path, "r");
    ck_assert_ptr_nonnull(f);
    n = fread(text, 1, (1 << 20) - 1, f);
    text[n] = '\0';
    fclose(f);
    free(c->path);
    write(2, text, n); /* still shown in the test's output */
    return text;
}

static int
count_of(const char *text, const char *needle)
{
    int n = 0;

    for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle)) {
        n++;
    }
    return n;
}

/* The columns of table in e's schema: "name type [not null], ..." in order. */
static char *
columns_of(struct tl_env *e, const char *table)
{
    return tl_str(e,
                  "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod) || "
                  "CASE WHEN attnotnull THEN ' not null' ELSE '' END, ', ' ORDER BY attnum) "
                  "FROM pg_attribute WHERE attrelid = '%s.%s'::regclass AND attnum > 0 "
                  "AND NOT attisdropped",
                  e->schema, table);
}

/* The JSON text GET /v1/events/{type}/{id} answers (t->get_sql), malloc'd. */
static char *
get_json(struct tl_env *e, const struct ev_type *t, const char *id)
{
    const char *params[] = {id};
    PGresult *r;
    char *v;

    tl_exec(e, "SET search_path TO %s; SET TimeZone TO 'UTC'", e->schema);
    r = PQexecParams(e->pg, t->get_sql, 1, NULL, params, NULL, NULL, 0);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQerrorMessage(e->pg));
    ck_assert_int_eq(PQntuples(r), 1);
    v = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

/* ---- the twin ---------------------------------------------------------------------------- */

/* Stored events: valid ones, and ones the encoder refuses at load (the server never would). */
static const char *const twin_events[] = {
    "{\"user_id\": 1, \"timestamp\": 1700000000, \"message\": \"boom\"}",
    "{\"user_id\": -9223372036854775808, \"timestamp\": 0, \"message\": \"tab\\there \\\\N\"}",
    "{\"event_name\": \"%s\", \"user_id\": 9223372036854775807, \"timestamp\": 253402300799, "
    "\"message\": \"\\u00e9\\ud83d\\ude00\"}",
    "{\"user_id\": 2, \"timestamp\": 5, \"message\": \"\"}",
    "{\"user_id\": \"1\", \"timestamp\": 1, \"message\": \"m\"}",
    "{\"user_id\": 1, \"timestamp\": -1, \"message\": \"m\"}",
    "{\"user_id\": 1, \"timestamp\": 1, \"message\": \"m\", \"x\": 1}",
    "{\"user_id\": 1, \"timestamp\": 1}",
    "{\"user_id\": 1, \"timestamp\": 1, \"message\": \"m\"",
    "[1, 2]",
};

START_TEST(test_twin_loads_like_compiled)
{
    struct tl_env e;
    const struct ev_type *crash;
    const struct ev_type *twin;
    char ids[2][3][37];
    char *a;
    char *b;
    size_t n = sizeof(twin_events) / sizeof(twin_events[0]);

    tl_setup(&e, "twin");
    declare(&e, crash_twin);
    crash = ev_lookup("crash_report", 12);
    twin = ev_lookup("crash_twin", 10);
    for (size_t i = 0; i < n; i++) {
        char json[512];

        snprintf(json, sizeof(json), twin_events[i], "crash_report");
        tl_append(&e, "crash_report", json, 0, NULL, RECEIVED_US + (int64_t)i,
                  i < 3 ? ids[0][i] : NULL);
        snprintf(json, sizeof(json), twin_events[i], "crash_twin");
        tl_append(&e, "crash_twin", json, 0, NULL, RECEIVED_US + (int64_t)i,
                  i < 3 ? ids[1][i] : NULL);
    }
    tl_append(&e, "crash_report", "{\"user_id\": true}", QUEUE_F_REJECTED,
              "user_id: expected integer, got boolean", RECEIVED_US, NULL);
    tl_append(&e, "crash_twin", "{\"user_id\": true}", QUEUE_F_REJECTED,
              "user_id: expected integer, got boolean", RECEIVED_US, NULL);
    ck_assert_int_eq(start_and_run(&e, NULL), 0);
    ck_assert_uint_eq(tl_queued(&e), 0);

    /* Same rows. */
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM %s.crash_report", e.schema), 4);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM %s.crash_twin", e.schema), 4);
    ck_assert_int_eq(tl_int(&e,
                            "SELECT count(*) FROM (SELECT user_id, event_time, message, "
                            "received_at FROM %s.crash_report EXCEPT ALL SELECT user_id, "
                            "\"timestamp\", message, received_at FROM %s.crash_twin) x",
                            e.schema, e.schema),
                     0);
    ck_assert_int_eq(tl_int(&e,
                            "SELECT count(*) FROM (SELECT user_id, \"timestamp\", message, "
                            "received_at FROM %s.crash_twin EXCEPT ALL SELECT user_id, "
                            "event_time, message, received_at FROM %s.crash_report) x",
                            e.schema, e.schema),
                     0);
    /* Same dead letters, with the same texts, in the same order. */
    a = tl_str(&e,
               "SELECT string_agg(stage || ': ' || error, E'\\n' ORDER BY seq) "
               "FROM %s.dead_letter WHERE event_type = 'crash_report'",
               e.schema);
    b = tl_str(&e,
               "SELECT string_agg(stage || ': ' || error, E'\\n' ORDER BY seq) "
               "FROM %s.dead_letter WHERE event_type = 'crash_twin'",
               e.schema);
    ck_assert_str_eq(a, b);
    ck_assert_int_eq(count_of(a, "\n"), 6);
    ck_assert_ptr_nonnull(strstr(a, "load: user_id: expected integer, got string"));
    ck_assert_ptr_nonnull(strstr(a, "ingest: user_id: expected integer, got boolean"));
    free(a);
    free(b);
    /* Read back the same through GET. */
    for (int i = 0; i < 3; i++) {
        char *ja = get_json(&e, crash, ids[0][i]);
        char *jb = get_json(&e, twin, ids[1][i]);
        json_t *oa = json_loads(ja, 0, NULL);
        json_t *ob = json_loads(jb, 0, NULL);

        ck_assert_ptr_nonnull(oa);
        ck_assert_ptr_nonnull(ob);
        ck_assert(json_equal(json_object_get(oa, "user_id"), json_object_get(ob, "user_id")));
        ck_assert(json_equal(json_object_get(oa, "event_time"), json_object_get(ob, "timestamp")));
        ck_assert(json_equal(json_object_get(oa, "message"), json_object_get(ob, "message")));
        ck_assert(
            json_equal(json_object_get(oa, "received_at"), json_object_get(ob, "received_at")));
        ck_assert_str_eq(json_string_value(json_object_get(ob, "id")), ids[1][i]);
        ck_assert(json_is_null(json_object_get(ob, "idempotency_key")));
        ck_assert(json_is_null(json_object_get(ob, "source")));
        json_decref(oa);
        json_decref(ob);
        free(ja);
        free(jb);
    }
    tl_teardown(&e);
}
END_TEST

/* ---- source and keys ---------------------------------------------------------------------- */

/* Append one event of type with an idempotency key and a source (either may be NULL). */
static void
append_from(struct tl_env *e, const char *type, const char *json, const char *key,
            const char *source, uint32_t flags)
{
    struct queue_event ev;

    memset(&ev, 0, sizeof(ev));
    ev_uuid7(ev.uuid);
    ev.received_us = RECEIVED_US;
    ev.type = type;
    ev.type_len = strlen(type);
    ev.json = json;
    ev.json_len = strlen(json);
    ev.flags = flags;
    if (flags != 0) {
        ev.error = "user_id: expected integer, got boolean";
        ev.error_len = strlen(ev.error);
    }
    if (key != NULL) {
        ev.key = key;
        ev.key_len = strlen(key);
        ev_digest(json, ev.json_len, ev.digest);
        ev.answer = 202;
    }
    if (source != NULL) {
        ev.source = source;
        ev.source_len = strlen(source);
    }
    ck_assert_int_eq(queue_append(e->q, &ev, 1), 0);
    ck_assert_int_eq(ev.dedup, QUEUE_DEDUP_NEW);
}

/*
 * The API key's name lands in every table's source column (compiled, declared, upsert,
 * dead_letter); a declared type is keyed like a compiled one: a key already in its table
 * (loaded by another appliance) is skipped by the loader.
 */
START_TEST(test_source_and_declared_keys)
{
    static const char ev1[] = "{\"user_id\": 1, \"timestamp\": 1700000000, \"message\": \"m\"}";
    static const char ev2[] = "{\"user_id\": 2, \"timestamp\": 1700000000, \"message\": \"n\"}";
    struct tl_env e;
    char *v;

    tl_setup(&e, "source");
    declare(&e, crash_twin);
    append_from(&e, "crash_report", ev1, "k-1", "mobile", 0);
    append_from(&e, "crash_twin", ev1, NULL, "mobile", 0);
    append_from(&e, "product", "{\"id\": \"p1\", \"x\": 1}", NULL, "laptop", 0);
    append_from(&e, "crash_report", "{\"user_id\": true}", NULL, "laptop", QUEUE_F_REJECTED);
    append_from(&e, "crash_report", ev2, NULL, NULL, 0);
    ck_assert_int_eq(start_and_run(&e, NULL), 0);
    v = tl_str(&e, "SELECT source FROM %s.crash_report WHERE idempotency_key = 'k-1'", e.schema);
    ck_assert_str_eq(v, "mobile");
    free(v);
    ck_assert_ptr_null(
        tl_str(&e, "SELECT source FROM %s.crash_report WHERE user_id = 2", e.schema));
    v = tl_str(&e, "SELECT source FROM %s.crash_twin", e.schema);
    ck_assert_str_eq(v, "mobile");
    free(v);
    v = tl_str(&e, "SELECT source FROM %s.product WHERE id = 'p1'", e.schema);
    ck_assert_str_eq(v, "laptop");
    free(v);
    v = tl_str(&e, "SELECT source FROM %s.dead_letter", e.schema);
    ck_assert_str_eq(v, "laptop");
    free(v);

    /* Another appliance loaded key k-2 already, with the same bytes (its digest says so): this
     * one's event with k-2 is skipped, a repeat. */
    tl_exec(&e,
            "INSERT INTO %s.crash_twin (id, user_id, \"timestamp\", message, received_at, "
            "idempotency_key, idempotency_digest) VALUES (gen_random_uuid(), 9, now(), "
            "'first', now(), 'k-2', sha256(convert_to('%s', 'UTF8')))",
            e.schema, ev2);
    append_from(&e, "crash_twin", ev2, "k-2", "mobile", 0);
    append_from(&e, "crash_twin", ev2, "k-3", "mobile", 0);
    ck_assert_int_eq(start_and_run(&e, NULL), 0);
    ck_assert_uint_eq(tl_queued(&e), 0);
    v = tl_str(&e, "SELECT message FROM %s.crash_twin WHERE idempotency_key = 'k-2'", e.schema);
    ck_assert_str_eq(v, "first");
    free(v);
    ck_assert_int_eq(tl_int(&e,
                            "SELECT count(*) FROM %s.crash_twin WHERE idempotency_key = "
                            "'k-3' AND source = 'mobile'",
                            e.schema),
                     1);
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_DUPLICATES_PREFIX "crash_twin"), 1);
    tl_teardown(&e);
}
END_TEST

/*
 * Keyed rows load by the plain COPY until PostgreSQL refuses it; then through the keyed table
 * and ON CONFLICT DO NOTHING. One batch holding a key already in the table with the same
 * bytes, one held with other bytes, and a row the table refuses: the repeat is skipped, the
 * conflict and the bad row alone are dead-lettered with their keys, the rest load once. Then
 * a batch of fresh keys: all loaded, nothing skipped.
 */
START_TEST(test_keyed_fallback_isolates_bad_rows)
{
    static const char good[] = "{\"user_id\": 1, \"timestamp\": 1700000000, \"message\": \"a\"}";
    static const char bad[] = "{\"user_id\": 666, \"timestamp\": 1700000000, \"message\": \"b\"}";
    static const char again[] = "{\"user_id\": 3, \"timestamp\": 1700000000, \"message\": \"c\"}";
    struct ldr_run_stats st;
    struct tl_env e;
    char *v;

    tl_setup(&e, "keyedfb");
    ck_assert_int_eq(start_and_run(&e, NULL), 0);
    tl_exec(&e, "ALTER TABLE %s.crash_report ADD CONSTRAINT poison CHECK (user_id <> 666)",
            e.schema);
    tl_exec(&e,
            "INSERT INTO %s.crash_report (id, event_name, user_id, event_time, message, "
            "received_at, idempotency_key, idempotency_digest) VALUES "
            "(gen_random_uuid(), 'crash_report', 9, now(), 'first', now(), 'k-c', "
            "sha256(convert_to('%s', 'UTF8'))), "
            "('0190d6a4-7b3c-7def-8123-456789abcdef', 'crash_report', 9, now(), 'other', "
            "now(), 'k-x', sha256('other'))",
            e.schema, again);
    append_from(&e, "crash_report", good, "k-a", NULL, 0);
    append_from(&e, "crash_report", bad, "k-b", NULL, 0);
    append_from(&e, "crash_report", again, "k-c", NULL, 0);
    append_from(&e, "crash_report", again, "k-x", NULL, 0);
    append_from(&e, "crash_report", good, "k-d", NULL, 0);
    ck_assert_int_eq(start_and_run(&e, &st), 0);
    ck_assert_uint_eq(tl_queued(&e), 0);
    ck_assert_uint_eq(st.dead_letters, 2);
    v = tl_str(&e, "SELECT error FROM %s.dead_letter WHERE idempotency_key = 'k-x'", e.schema);
    ck_assert_ptr_nonnull(strstr(v, "idempotency_key: \"k-x\" was already loaded for event "
                                    "0190d6a4-7b3c-7def-8123-456789abcdef with different content "
                                    "(this event: "));
    free(v);
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_KEY_CONFLICTS_PREFIX "crash_report"), 1);
    ck_assert_int_eq(tl_int(&e,
                            "SELECT count(*) FROM %s.crash_report WHERE idempotency_key IN "
                            "('k-a', 'k-d')",
                            e.schema),
                     2);
    v = tl_str(&e, "SELECT message FROM %s.crash_report WHERE idempotency_key = 'k-c'", e.schema);
    ck_assert_str_eq(v, "first");
    free(v);
    ck_assert_int_eq(tl_int(&e,
                            "SELECT count(*) FROM %s.crash_report WHERE idempotency_key = "
                            "'k-b'",
                            e.schema),
                     0);
    ck_assert_int_eq(tl_int(&e,
                            "SELECT count(*) FROM %s.dead_letter WHERE stage = 'load' AND "
                            "idempotency_key = 'k-b' AND error LIKE '%%poison%%'",
                            e.schema),
                     1);
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_DUPLICATES_PREFIX "crash_report"), 1);

    append_from(&e, "crash_report", good, "k-e", NULL, 0);
    append_from(&e, "crash_report", again, "k-f", NULL, 0);
    ck_assert_int_eq(start_and_run(&e, NULL), 0);
    ck_assert_int_eq(tl_int(&e,
                            "SELECT count(*) FROM %s.crash_report WHERE idempotency_key IN "
                            "('k-e', 'k-f')",
                            e.schema),
                     2);
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_DUPLICATES_PREFIX "crash_report"), 1);
    tl_teardown(&e);
}
END_TEST

/* ---- schema evolution -------------------------------------------------------------------- */

static const char evo_v1[] =
    "{\"evo\": {\"fields\": {\"a\": {\"type\": \"string\", \"required\": true}, "
    "\"b\": {\"type\": \"integer\"}}}}";
static const char evo_v2[] =
    "{\"evo\": {\"fields\": {\"a\": {\"type\": \"string\", \"required\": true}, "
    "\"b\": {\"type\": \"integer\"}, \"c\": {\"type\": \"number\"}}}}";
static const char evo_v3[] =
    "{\"evo\": {\"fields\": {\"a\": {\"type\": \"string\", \"required\": true}, "
    "\"c\": {\"type\": \"number\"}}}}";

#define EVO_V1_COLUMNS                                                                             \
    "id uuid not null, a text not null, b bigint, idempotency_key text, "                          \
    "idempotency_digest bytea, source text, received_at timestamp with time zone not null, "       \
    "loaded_at timestamp with time zone not null"

START_TEST(test_evolution_add_and_remove)
{
    struct tl_env e;
    struct capture cap;
    char *cols;
    char *log;

    tl_setup(&e, "evo_add");
    declare(&e, evo_v1);
    tl_append(&e, "evo", "{\"a\": \"one\", \"b\": 1}", 0, NULL, 0, NULL);
    ck_assert_int_eq(start_and_run(&e, NULL), 0);
    cols = columns_of(&e, "evo");
    ck_assert_str_eq(cols, EVO_V1_COLUMNS);
    free(cols);

    /* A new optional field: its column is added at start, before the batch that fills it. */
    declare(&e, evo_v2);
    tl_append(&e, "evo", "{\"a\": \"two\", \"b\": 2, \"c\": 2.5}", 0, NULL, 0, NULL);
    capture_begin(&cap, &e);
    ck_assert_int_eq(start_and_run(&e, NULL), 0);
    log = capture_end(&cap);
    ck_assert_int_eq(count_of(log, "declared type: new field, column added type=evo field=c "
                                   "column_type=double precision"),
                     1);
    free(log);
    cols = columns_of(&e, "evo");
    ck_assert_str_eq(cols, EVO_V1_COLUMNS ", c double precision");
    free(cols);
    ck_assert_int_eq(tl_int(&e,
                            "SELECT count(*) FROM %s.evo WHERE a = 'one' AND b = 1 AND "
                            "c IS NULL",
                            e.schema),
                     1);
    ck_assert_int_eq(tl_int(&e,
                            "SELECT count(*) FROM %s.evo WHERE a = 'two' AND b = 2 AND "
                            "c = 2.5",
                            e.schema),
                     1);

    /* A field no longer declared: its column stays, null in new rows, said in the log. */
    declare(&e, evo_v3);
    tl_append(&e, "evo", "{\"a\": \"three\", \"c\": 3}", 0, NULL, 0, NULL);
    capture_begin(&cap, &e);
    ck_assert_int_eq(start_and_run(&e, NULL), 0);
    log = capture_end(&cap);
    ck_assert_ptr_nonnull(strstr(log, "a field is no longer declared; its column stays and is "
                                      "null for new rows type=evo column=b"));
    ck_assert_ptr_null(strstr(log, "column added"));
    free(log);
    cols = columns_of(&e, "evo");
    ck_assert_str_eq(cols, EVO_V1_COLUMNS ", c double precision");
    free(cols);
    ck_assert_int_eq(tl_int(&e,
                            "SELECT count(*) FROM %s.evo WHERE a = 'three' AND b IS NULL "
                            "AND c = 3",
                            e.schema),
                     1);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM %s.evo", e.schema), 3);

    /* Keeping unknown fields later adds the extra column; a required field made optional
     * loses its NOT NULL. */
    declare(&e, "{\"evo\": {\"fields\": {\"a\": {\"type\": \"string\"}, \"c\": {\"type\": "
                "\"number\"}}, \"unknown_fields\": \"keep\"}}");
    tl_append(&e, "evo", "{\"c\": 4, \"z\": [1]}", 0, NULL, 0, NULL);
    ck_assert_int_eq(start_and_run(&e, NULL), 0);
    cols = columns_of(&e, "evo");
    ck_assert_str_eq(cols, "id uuid not null, a text, b bigint, idempotency_key text, "
                           "idempotency_digest bytea, source text, received_at timestamp with "
                           "time zone not null, loaded_at timestamp with time zone not null, "
                           "c double precision, extra jsonb");
    free(cols);

    /* Tables from before digests were kept (declared or built in) gain the column at start. */
    tl_exec(&e, "ALTER TABLE %s.evo DROP COLUMN idempotency_digest", e.schema);
    tl_exec(&e, "ALTER TABLE %s.crash_report DROP COLUMN idempotency_digest", e.schema);
    ck_assert_int_eq(start_and_run(&e, NULL), 0);
    ck_assert_int_eq(tl_int(&e,
                            "SELECT count(*) FROM information_schema.columns WHERE "
                            "table_schema = '%s' AND column_name = 'idempotency_digest' AND "
                            "table_name IN ('evo', 'crash_report')",
                            e.schema),
                     2);
    ck_assert_int_eq(tl_int(&e,
                            "SELECT count(*) FROM %s.evo WHERE a IS NULL AND c = 4 AND "
                            "extra = '{\"z\": [1]}'",
                            e.schema),
                     1);
    tl_teardown(&e);
}
END_TEST

/* Start with a declaration the table cannot follow: refused, the log says why, nothing moves. */
static void
refused(struct tl_env *e, const char *types_json, const char *table, const char *want_log)
{
    struct capture cap;
    char *before = columns_of(e, table);
    char *after;
    char *log;
    long long rows = tl_int(e, "SELECT count(*) FROM %s.%s", e->schema, table);

    declare(e, types_json);
    capture_begin(&cap, e);
    ck_assert_int_eq(start_and_run(e, NULL), DP_ERR_CONFIG);
    log = capture_end(&cap);
    ck_assert_msg(strstr(log, want_log) != NULL, "[%s] not in the log", want_log);
    after = columns_of(e, table);
    ck_assert_str_eq(after, before);
    ck_assert_int_eq(tl_int(e, "SELECT count(*) FROM %s.%s", e->schema, table), rows);
    free(log);
    free(before);
    free(after);
}

START_TEST(test_evolution_refused)
{
    struct tl_env e;

    tl_setup(&e, "evo_ref");
    declare(&e, evo_v1);
    tl_append(&e, "evo", "{\"a\": \"one\", \"b\": 1}", 0, NULL, 0, NULL);
    ck_assert_int_eq(start_and_run(&e, NULL), 0);
    /* The refused starts leave the queued event queued. */
    tl_append(&e, "evo", "{\"a\": \"two\"}", 0, NULL, 0, NULL);

    /* A changed type, even with an addition beside it: nothing altered, not even d. */
    refused(&e,
            "{\"evo\": {\"fields\": {\"a\": {\"type\": \"string\", \"required\": true}, "
            "\"b\": {\"type\": \"string\"}, \"d\": {\"type\": \"boolean\"}}}}",
            "evo",
            "a declared field changed its type: refused, nothing altered; keep the old "
            "type, or declare the field under a new name (the old column stays) "
            "type=evo field=b declared=text column=bigint");
    /* A new field that is required on a table that has rows without it. */
    refused(&e,
            "{\"evo\": {\"fields\": {\"a\": {\"type\": \"string\", \"required\": true}, "
            "\"b\": {\"type\": \"integer\"}, \"d\": {\"type\": \"boolean\", "
            "\"required\": true}}}}",
            "evo",
            "a new field is declared required, but the table already exists and its "
            "rows lack it: refused, nothing altered; declare it without \"required\": "
            "true type=evo field=d");
    /* An optional field made required. */
    refused(&e,
            "{\"evo\": {\"fields\": {\"a\": {\"type\": \"string\", \"required\": true}, "
            "\"b\": {\"type\": \"integer\", \"required\": true}}}}",
            "evo",
            "a field is now declared required, but its column allows null (rows loaded "
            "before may lack it): refused, nothing altered; declare it without "
            "\"required\": true type=evo field=b");
    /* A name taken by a table datapipe did not create. */
    tl_exec(&e, "CREATE TABLE %s.someone_elses (x int); INSERT INTO %s.someone_elses VALUES (7)",
            e.schema, e.schema);
    refused(&e,
            "{\"evo\": {\"fields\": {\"a\": {\"type\": \"string\", \"required\": true}, "
            "\"b\": {\"type\": \"integer\"}}}, \"someone_elses\": {\"fields\": {\"x\": "
            "{\"type\": \"integer\"}}}}",
            "someone_elses",
            "a declared type's name is taken by a table datapipe did not "
            "create: refused, nothing altered; rename the type, or move that "
            "table out of the schema type=someone_elses");
    ck_assert_uint_eq(tl_queued(&e), 1);

    /* Back to the running declaration: the held event loads. */
    declare(&e, evo_v1);
    ck_assert_int_eq(start_and_run(&e, NULL), 0);
    ck_assert_uint_eq(tl_queued(&e), 0);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM %s.evo", e.schema), 2);
    tl_teardown(&e);
}
END_TEST

/* Two loaders of two queues, one schema, starting at once with a new field. */
struct racer {
    struct tl_env *e;
    int rc;
    struct ldr_run_stats st;
};

static void *
race_one(void *arg)
{
    struct racer *r = arg;
    struct ldr_options o = tl_options(r->e, 2, 1000);
    struct ldr *l = NULL;

    r->rc = ldr_create(&l, r->e->q, &o);
    if (r->rc == 0) {
        r->rc = ldr_start(l);
    }
    if (r->rc == 0) {
        r->rc = ldr_run(l, &r->st);
    }
    ldr_destroy(l);
    return NULL;
}

START_TEST(test_two_loaders_race)
{
    struct tl_env e1;
    struct tl_env e2;
    struct racer r[2] = {{&e1, -1, {0}}, {&e2, -1, {0}}};
    pthread_t th[2];
    struct capture cap;
    char *log;

    tl_setup(&e1, "race1");
    tl_setup(&e2, "race2");
    snprintf(e2.schema, sizeof(e2.schema), "%s", e1.schema);
    declare(&e1, evo_v1);
    tl_append(&e1, "evo", "{\"a\": \"zero\"}", 0, NULL, 0, NULL);
    ck_assert_int_eq(start_and_run(&e1, NULL), 0);

    declare(&e1, evo_v2);
    for (int i = 0; i < 50; i++) {
        tl_append(&e1, "evo", "{\"a\": \"one\", \"c\": 1}", 0, NULL, 0, NULL);
        tl_append(&e2, "evo", "{\"a\": \"two\", \"c\": 2}", 0, NULL, 0, NULL);
    }
    capture_begin(&cap, &e1);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(pthread_create(&th[i], NULL, race_one, &r[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
    }
    log = capture_end(&cap);
    ck_assert_int_eq(r[0].rc, 0);
    ck_assert_int_eq(r[1].rc, 0);
    /* One ALTER, no failed or retried batch. */
    ck_assert_int_eq(count_of(log, "new field, column added type=evo field=c"), 1);
    ck_assert_uint_eq(r[0].st.retries, 0);
    ck_assert_uint_eq(r[1].st.retries, 0);
    ck_assert_uint_eq(r[0].st.loaded, 50);
    ck_assert_uint_eq(r[1].st.loaded, 50);
    ck_assert_int_eq(tl_int(&e1, "SELECT count(*) FROM %s.evo WHERE c = 1", e1.schema), 50);
    ck_assert_int_eq(tl_int(&e1, "SELECT count(*) FROM %s.evo WHERE c = 2", e1.schema), 50);
    ck_assert_int_eq(tl_int(&e1, "SELECT count(*) FROM %s.dead_letter", e1.schema), 0);
    free(log);
    tl_teardown(&e2);
    tl_teardown(&e1);
}
END_TEST

/* ---- the names datapipe creates ---------------------------------------------------------- */

/* Like start_and_run, giving up after 3 failed attempts: a batch that can never load ends. */
static int
start_and_run_bounded(struct tl_env *e, struct ldr_run_stats *st)
{
    struct ldr_options o = tl_options(e, 1, 1000);
    struct ldr *l = NULL;
    int rc;

    o.give_up_attempts = 3;
    ck_assert_int_eq(ldr_create(&l, e->q, &o), 0);
    rc = ldr_start(l);
    if (rc == 0) {
        rc = ldr_run(l, st);
    }
    ldr_destroy(l);
    return rc;
}

/*
 * Load one keyed event of type into e's schema through another appliance (its own queue,
 * queue.id name), as a retry through a second appliance does: e's own repeat of it then
 * finds its key in the table.
 */
static void
load_elsewhere(struct tl_env *e, const char *name, const char *type, const char *json,
               const char *key)
{
    struct tl_env o;

    tl_setup(&o, name);
    snprintf(o.schema, sizeof(o.schema), "%s", e->schema);
    append_from(&o, type, json, key, NULL, 0);
    ck_assert_int_eq(start_and_run(&o, NULL), 0);
    ck_assert_uint_eq(tl_queued(&o), 0);
    PQfinish(o.pg);
    o.pg = NULL; /* the schema is e's: not dropped with o */
    tl_teardown(&o);
}

/* "name|name|..." of the unique indexes over idempotency_key alone of table, by name. */
static char *
key_indexes(struct tl_env *e, const char *table)
{
    return tl_str(e,
                  "SELECT coalesce(string_agg(i.relname, '|' ORDER BY i.relname), '') "
                  "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
                  "JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0] "
                  "WHERE x.indrelid = '%s.\"%s\"'::regclass AND x.indisunique "
                  "AND x.indnatts = 1 AND a.attname = 'idempotency_key'",
                  e->schema, table);
}

/* The name of table's primary key constraint. */
static char *
primary_key(struct tl_env *e, const char *table)
{
    return tl_str(e,
                  "SELECT conname FROM pg_constraint WHERE conrelid = '%s.\"%s\"'::regclass "
                  "AND contype = 'p'",
                  e->schema, table);
}

static void
assert_derived(struct tl_env *e, const char *table)
{
    char want[DP_TYPE_NAME_MAX + 1];
    char *v;

    dp_pg_derived_name(want, DP_PG_KEY_INDEX, table);
    v = key_indexes(e, table);
    ck_assert_str_eq(v, want);
    free(v);
    dp_pg_derived_name(want, DP_PG_PRIMARY_KEY, table);
    v = primary_key(e, table);
    ck_assert_str_eq(v, want);
    free(v);
}

static const char two_a[] = "{\"a\": {\"fields\": {\"n\": {\"type\": \"integer\"}}}, "
                            "\"a_keyed\": {\"fields\": {\"n\": {\"type\": \"integer\"}}}}";

/*
 * The keyed fallback's temporary table is named so that no declared type can be called the
 * same: a batch of a (a key already loaded, so it takes the fallback) and a_keyed loads both.
 */
START_TEST(test_keyed_temp_table_named_apart)
{
    struct ldr_run_stats st;
    struct tl_env e;

    tl_setup(&e, "keyedname");
    declare(&e, two_a);
    load_elsewhere(&e, "keyedname_b", "a", "{\"n\": 1}", "k-1");
    append_from(&e, "a", "{\"n\": 1}", "k-1", NULL, 0);
    append_from(&e, "a_keyed", "{\"n\": 2}", NULL, NULL, 0);
    append_from(&e, "a_keyed", "{\"n\": 3}", "k-3", NULL, 0);
    ck_assert_int_eq(start_and_run(&e, &st), 0);
    ck_assert_uint_eq(tl_queued(&e), 0);
    ck_assert_uint_eq(st.loaded, 2);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM %s.a", e.schema), 1);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM %s.a_keyed WHERE n IN (2, 3)", e.schema), 2);
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_DUPLICATES_PREFIX "a"), 1);
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_LOADED_PREFIX "a_keyed"), 2);
    tl_teardown(&e);
}
END_TEST

/* A type name of 63 bytes, the longest PostgreSQL keeps: its keyed fallback loads too. */
START_TEST(test_keyed_fallback_longest_name)
{
    static const char name[] = "l12345678901234567890123456789012345678901234567890123456789012";
    struct tl_env e;
    char *types = NULL;
    char *v;

    ck_assert_uint_eq(strlen(name), 63);
    tl_setup(&e, "keyedlong");
    ck_assert_int_ge(
        asprintf(&types, "{\"%s\": {\"fields\": {\"n\": {\"type\": \"integer\"}}}}", name), 0);
    declare(&e, types);
    load_elsewhere(&e, "keyedlong_b", name, "{\"n\": 1}", "k-1");
    append_from(&e, name, "{\"n\": 1}", "k-1", NULL, 0);
    append_from(&e, name, "{\"n\": 2}", "k-2", NULL, 0);
    ck_assert_int_eq(start_and_run_bounded(&e, NULL), 0);
    ck_assert_uint_eq(tl_queued(&e), 0);
    v = tl_str(&e, "SELECT string_agg(n || ' ' || idempotency_key, ',' ORDER BY n) FROM %s.%s",
               e.schema, name);
    ck_assert_str_eq(v, "1 k-1,2 k-2");
    free(v);
    assert_derived(&e, name);
    free(types);
    tl_teardown(&e);
}
END_TEST

/*
 * x_idem_key declared before x (once the name of x's key index): x still gets its unique index,
 * and a key already in x is loaded once. Every keyed table has exactly one such index, named
 * by dp_pg_derived_name.
 */
START_TEST(test_key_index_for_every_type)
{
    static const char types[] = "{\"x_idem_key\": {\"fields\": {\"n\": {\"type\": \"integer\"}}}, "
                                "\"x\": {\"fields\": {\"n\": {\"type\": \"integer\"}}}, "
                                "\"x_pkey\": {\"fields\": {\"n\": {\"type\": \"integer\"}}}}";
    struct tl_env e;

    tl_setup(&e, "keyindex");
    declare(&e, types);
    ck_assert_int_eq(start_and_run(&e, NULL), 0);
    assert_derived(&e, "x");
    assert_derived(&e, "x_idem_key");
    assert_derived(&e, "x_pkey");
    for (size_t i = 0; i < ev_registry_len; i++) {
        char want[DP_TYPE_NAME_MAX + 1];
        char *v;

        if (!ev_registry[i]->keyed) {
            continue;
        }
        dp_pg_derived_name(want, DP_PG_KEY_INDEX, ev_registry[i]->name);
        v = key_indexes(&e, ev_registry[i]->name);
        ck_assert_str_eq(v, want);
        free(v);
    }
    load_elsewhere(&e, "keyindex_b", "x", "{\"n\": 1}", "k-1");
    append_from(&e, "x", "{\"n\": 1}", "k-1", NULL, 0);
    ck_assert_int_eq(start_and_run(&e, NULL), 0);
    ck_assert_uint_eq(tl_queued(&e), 0);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM %s.x", e.schema), 1);
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_DUPLICATES_PREFIX "x"), 1);
    tl_teardown(&e);
}
END_TEST

/*
 * A schema of an earlier release: the key indexes and the primary key under the names it gave
 * them. The loader renames them (it finds them by what they index, not by name) instead of
 * adding a second index at every start; the old names are free for declared types again.
 */
START_TEST(test_old_names_renamed)
{
    static const char more[] =
        "{\"evo\": {\"fields\": {\"a\": {\"type\": \"string\", \"required\": true}, "
        "\"b\": {\"type\": \"integer\"}}}, "
        "\"evo_idem_key\": {\"fields\": {\"n\": {\"type\": \"integer\"}}}, "
        "\"evo_pkey\": {\"fields\": {\"n\": {\"type\": \"integer\"}}}}";
    char key[DP_TYPE_NAME_MAX + 1];
    char pk[DP_TYPE_NAME_MAX + 1];
    char crash_key[DP_TYPE_NAME_MAX + 1];
    struct tl_env e;
    char *v;

    tl_setup(&e, "oldnames");
    declare(&e, evo_v1);
    ck_assert_int_eq(start_and_run(&e, NULL), 0);
    dp_pg_derived_name(key, DP_PG_KEY_INDEX, "evo");
    dp_pg_derived_name(pk, DP_PG_PRIMARY_KEY, "evo");
    dp_pg_derived_name(crash_key, DP_PG_KEY_INDEX, "crash_report");
    /* Back to the names of the earlier release. */
    tl_exec(&e,
            "SET search_path TO %s; "
            "DROP INDEX IF EXISTS \"%s\", evo_idem_key; "
            "CREATE UNIQUE INDEX evo_idem_key ON evo (idempotency_key) "
            "WHERE idempotency_key IS NOT NULL; "
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = "
            "'evo_pkey') THEN ALTER TABLE evo RENAME CONSTRAINT \"%s\" TO evo_pkey; "
            "END IF; END $$; "
            "DROP INDEX IF EXISTS \"%s\", crash_report_idempotency_key; "
            "CREATE UNIQUE INDEX crash_report_idempotency_key ON crash_report "
            "(idempotency_key) WHERE idempotency_key IS NOT NULL; "
            "SET search_path TO DEFAULT",
            e.schema, key, pk, crash_key);
    tl_append(&e, "evo", "{\"a\": \"one\"}", 0, NULL, 0, NULL);
    ck_assert_int_eq(start_and_run(&e, NULL), 0);
    ck_assert_int_eq(start_and_run(&e, NULL), 0);
    assert_derived(&e, "evo");
    v = key_indexes(&e, "crash_report");
    ck_assert_str_eq(v, crash_key);
    free(v);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM %s.evo", e.schema), 1);

    /* The old names are free: types may take them. */
    declare(&e, more);
    tl_append(&e, "evo_pkey", "{\"n\": 1}", 0, NULL, 0, NULL);
    tl_append(&e, "evo_idem_key", "{\"n\": 2}", 0, NULL, 0, NULL);
    ck_assert_int_eq(start_and_run(&e, NULL), 0);
    ck_assert_uint_eq(tl_queued(&e), 0);
    assert_derived(&e, "evo");
    assert_derived(&e, "evo_pkey");
    assert_derived(&e, "evo_idem_key");
    tl_teardown(&e);
}
END_TEST

/*
 * A table that lost its key index (an earlier release could leave one without it) and holds a
 * key twice: the loader refuses to start, naming the table, until one of them is gone.
 */
START_TEST(test_key_twice_refused)
{
    char key[DP_TYPE_NAME_MAX + 1];
    struct capture cap;
    struct tl_env e;
    char *log;
    char *v;

    tl_setup(&e, "keytwice");
    declare(&e, evo_v1);
    ck_assert_int_eq(start_and_run(&e, NULL), 0);
    dp_pg_derived_name(key, DP_PG_KEY_INDEX, "evo");
    tl_exec(&e,
            "DROP INDEX %s.\"%s\"; INSERT INTO %s.evo (id, a, received_at, idempotency_key) "
            "SELECT gen_random_uuid(), 'x', now(), 'k-1' FROM generate_series(1, 2)",
            e.schema, key, e.schema);
    tl_append(&e, "evo", "{\"a\": \"held\"}", 0, NULL, 0, NULL);
    capture_begin(&cap, &e);
    ck_assert_int_eq(start_and_run(&e, NULL), DP_ERR_CONFIG);
    log = capture_end(&cap);
    ck_assert_int_eq(count_of(log, "a keyed table holds a key more than once, so its unique key "
                                   "index cannot be built: refused, nothing altered; keep one "
                                   "row of each key, then start again table=evo index="),
                     1);
    free(log);
    ck_assert_uint_eq(tl_queued(&e), 1);
    tl_exec(&e,
            "DELETE FROM %s.evo WHERE ctid IN (SELECT ctid FROM %s.evo "
            "WHERE idempotency_key = 'k-1' LIMIT 1)",
            e.schema, e.schema);
    ck_assert_int_eq(start_and_run(&e, NULL), 0);
    ck_assert_uint_eq(tl_queued(&e), 0);
    v = key_indexes(&e, "evo");
    ck_assert_str_eq(v, key);
    free(v);
    tl_teardown(&e);
}
END_TEST

/* A field named like the alias of the read query (t) is read back as a field, not the row. */
START_TEST(test_field_named_like_alias)
{
    struct tl_env e;
    const struct ev_type *t;
    char id[37];
    char *v;
    char *want = NULL;

    tl_setup(&e, "alias");
    declare(&e, "{\"t\": {\"fields\": {\"t\": {\"type\": \"string\"}}}}");
    t = ev_lookup("t", 1);
    tl_append(&e, "t", "{\"t\": \"v\"}", 0, NULL, RECEIVED_US, id);
    ck_assert_int_eq(start_and_run(&e, NULL), 0);
    v = get_json(&e, t, id);
    ck_assert_int_ge(asprintf(&want, "{\"id\":\"%s\",\"t\":\"v\",\"idempotency_key\":null,", id),
                     0);
    ck_assert_msg(strncmp(v, want, strlen(want)) == 0, "%s", v);
    free(want);
    free(v);
    tl_teardown(&e);
}
END_TEST

/* A required field no longer declared: its column allows null, new events load. */
START_TEST(test_required_field_removed)
{
    struct tl_env e;
    struct ldr_run_stats st;
    char *cols;

    tl_setup(&e, "evo_rm");
    declare(&e, evo_v1);
    tl_append(&e, "evo", "{\"a\": \"one\", \"b\": 1}", 0, NULL, 0, NULL);
    ck_assert_int_eq(start_and_run(&e, NULL), 0);
    declare(&e, "{\"evo\": {\"fields\": {\"b\": {\"type\": \"integer\"}}}}");
    tl_append(&e, "evo", "{\"b\": 2}", 0, NULL, 0, NULL);
    ck_assert_int_eq(start_and_run(&e, &st), 0);
    ck_assert_uint_eq(st.loaded, 1);
    ck_assert_uint_eq(st.dead_letters, 0);
    cols = columns_of(&e, "evo");
    ck_assert_str_eq(cols, "id uuid not null, a text, b bigint, idempotency_key text, "
                           "idempotency_digest bytea, source text, received_at timestamp with "
                           "time zone not null, loaded_at timestamp with time zone not null");
    free(cols);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM %s.evo WHERE a IS NULL AND b = 2", e.schema),
                     1);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM %s.dead_letter", e.schema), 0);
    tl_teardown(&e);
}
END_TEST

/* ---- events of an undeclared type --------------------------------------------------------- */

START_TEST(test_held_until_declared_again)
{
    struct tl_env e;
    struct ldr_run_stats st;
    char *types;

    tl_setup(&e, "held");
    declare(&e, evo_v1);
    tl_append(&e, "evo", "{\"a\": \"first\"}", 0, NULL, 0, NULL);
    ck_assert_int_eq(start_and_run(&e, NULL), 0);
    /* Queued while declared; the declaration goes away before the loader runs. */
    tl_append(&e, "crash_report", "{\"user_id\": 1, \"timestamp\": 1, \"message\": \"a\"}", 0, NULL,
              0, NULL);
    tl_append(&e, "evo", "{\"a\": \"x\"}", 0, NULL, 0, NULL);
    tl_append(&e, "crash_report", "{\"user_id\": 2, \"timestamp\": 1, \"message\": \"b\"}", 0, NULL,
              0, NULL);
    tl_append(&e, "evo", "{\"a\": \"y\"}", 0, NULL, 0, NULL);
    tl_append(&e, "ghost", "{}", 0, NULL, 0, NULL);
    tl_append(&e, "crash_report", "{\"user_id\": 3, \"timestamp\": 1, \"message\": \"c\"}", 0, NULL,
              0, NULL);
    declare(&e, "{}");
    ck_assert_int_eq(start_and_run(&e, &st), 0);
    ck_assert_uint_eq(st.held, 3);
    ck_assert_uint_eq(st.dead_letters, 0);
    ck_assert_uint_eq(tl_queued(&e), 3);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM %s.crash_report", e.schema), 3);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM %s.evo", e.schema), 1);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM %s.dead_letter", e.schema), 0);
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_HELD), 3);
    types = calloc(1, 256);
    ck_assert_int_eq(queue_meta_get_str(e.q, QUEUE_META_LOADER_HELD_TYPES, types, 256), 0);
    ck_assert_str_eq(types, "evo,ghost");
    /* A second run holds them again, and loads nothing twice. */
    ck_assert_int_eq(start_and_run(&e, &st), 0);
    ck_assert_uint_eq(st.held, 3);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM %s.crash_report", e.schema), 3);

    /* Declared again: they load, in order; the unknown ghost stays. */
    declare(&e, evo_v1);
    ck_assert_int_eq(start_and_run(&e, &st), 0);
    ck_assert_uint_eq(st.held, 1);
    ck_assert_uint_eq(st.loaded, 2);
    ck_assert_uint_eq(tl_queued(&e), 1);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM %s.evo WHERE a IN ('x', 'y')", e.schema), 2);
    ck_assert_int_eq(queue_meta_get_str(e.q, QUEUE_META_LOADER_HELD_TYPES, types, 256), 0);
    ck_assert_str_eq(types, "ghost");
    free(types);
    tl_teardown(&e);
}
END_TEST

static Suite *
types_pg_suite(void)
{
    Suite *s = suite_create("types_pg");
    TCase *twin = tcase_create("twin");
    TCase *evo = tcase_create("evolution");
    TCase *held = tcase_create("held");
    TCase *names = tcase_create("names");

    tcase_add_test(twin, test_twin_loads_like_compiled);
    tcase_add_test(twin, test_source_and_declared_keys);
    tcase_add_test(twin, test_keyed_fallback_isolates_bad_rows);
    tcase_add_test(evo, test_evolution_add_and_remove);
    tcase_add_test(evo, test_evolution_refused);
    tcase_add_test(evo, test_two_loaders_race);
    tcase_add_test(held, test_held_until_declared_again);
    tcase_add_test(names, test_keyed_temp_table_named_apart);
    tcase_add_test(names, test_keyed_fallback_longest_name);
    tcase_add_test(names, test_key_index_for_every_type);
    tcase_add_test(names, test_old_names_renamed);
    tcase_add_test(names, test_field_named_like_alias);
    tcase_add_test(names, test_key_twice_refused);
    tcase_add_test(evo, test_required_field_removed);
    tcase_set_timeout(twin, 60);
    tcase_set_timeout(evo, 120);
    tcase_set_timeout(held, 60);
    tcase_set_timeout(names, 60);
    suite_add_tcase(s, twin);
    suite_add_tcase(s, evo);
    suite_add_tcase(s, held);
    suite_add_tcase(s, names);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(types_pg_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
