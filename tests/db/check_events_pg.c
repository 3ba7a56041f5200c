/*
 * check_events_pg.c - the COPY rows of every event type against a real
 * PostgreSQL (tests/pg): each table is created from its DDL, rows with nasty
 * strings are COPYed in and read back equal; product's upsert is exercised.
 * Needs DP_PG_CONNINFO; fails (never skips) without it.
 */
#include <check.h>
#include <libpq-fe.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "etc/err.h"
#include "events/events.h"
#include "tests/lib/lib_test.h"

#define RECEIVED_US INT64_C(1700000000123456)
#define RECEIVED_TEXT "2023-11-14 22:13:20.123456+00"
#define NOW_US INT64_C(1700000060000000)
#define NOW_TEXT "2023-11-14 22:14:20+00"

/* Strings that COPY text format, json and jsonb must all carry unchanged. */
static const char *const nasty[] = {
    "plain",
    "",
    "tab\there",
    "new\nline",
    "carriage\rreturn\r\n",
    "back\\slash \\N \\. \\\\",
    "quotes \" and ' and `",
    "emoji \xf0\x9f\x98\x80 and \xc3\xa9\xe2\x82\xac",
    "controls \x01\x02\x1f\x7f \b \f \v",
    "\\N",
    "\\.",
    "{\"looks\": \"like json\"}\t[1,2]",
};

static PGconn *
connect_schema(const char *schema)
{
    PGconn *c = PQconnectdb(t_pg_conninfo());
    char sql[256];
    PGresult *r;

    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "connect: %s", PQerrorMessage(c));
    snprintf(sql, sizeof(sql),
             "SET client_min_messages = warning; DROP SCHEMA IF EXISTS %s CASCADE; "
             "CREATE SCHEMA %s; SET search_path = %s; SET TimeZone = 'UTC'",
             schema, schema, schema);
    r = PQexec(c, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
    PQclear(r);
    return c;
}

static void
exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);

    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
}

/* Create the type's table (twice: the DDL must be idempotent). */
static const struct ev_type *
create_table(PGconn *c, const char *name)
{
    const struct ev_type *t = ev_lookup(name, strlen(name));

    ck_assert_ptr_nonnull(t);
    exec_ok(c, t->ddl);
    exec_ok(c, t->ddl);
    return t;
}

/*
 * COPY rows into table with the type's column list, in the rows' format (text, or binary
 * between the format's header and trailer, as the loader sends them).
 */
static void
copy_in(PGconn *c, const char *table, const char *columns, const struct ev_buf *rows)
{
    static const char header[19] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";
    char sql[512];
    PGresult *r;

    snprintf(sql, sizeof(sql), "COPY %s %s FROM STDIN%s", table, columns,
             rows->binary ? " (FORMAT binary)" : "");
    r = PQexec(c, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_COPY_IN, "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    if (rows->binary) {
        ck_assert_int_eq(PQputCopyData(c, header, (int)sizeof(header)), 1);
    }
    ck_assert_int_eq(PQputCopyData(c, rows->data, (int)rows->len), 1);
    if (rows->binary) {
        ck_assert_int_eq(PQputCopyData(c, "\377\377", 2), 1);
    }
    ck_assert_int_eq(PQputCopyEnd(c, NULL), 1);
    r = PQgetResult(c);
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "COPY: %s", PQerrorMessage(c));
    PQclear(r);
    r = PQgetResult(c);
    ck_assert_ptr_null(r);
}

/* Encode one event (uuid from n) and append its row. */
static void
encode_into(const struct ev_type *t, const char *json, uint8_t n, int64_t received_us, uint64_t seq,
            struct ev_buf *rows)
{
    struct ev_stored ev = {
        .json = json,
        .json_len = strlen(json),
        .received_us = received_us,
        .now_us = NOW_US,
        .seq = seq,
    };
    char err[EV_ERR_MAX] = "";
    int rc;

    memset(ev.uuid, 0, sizeof(ev.uuid));
    ev.uuid[0] = 0x01;
    ev.uuid[6] = 0x70;
    ev.uuid[15] = n;
    rc = ev_encode(t, &ev, rows, err);
    ck_assert_msg(rc == 0, "%s: %s", t->name, err);
}

static void
uuid_text(uint8_t n, char out[37])
{
    snprintf(out, 37, "01000000-0000-7000-0000-0000000000%02x", n);
}

/* Run a one-value query with text parameters; returns a malloc'd copy or NULL for SQL NULL. */
static char *
query_value(PGconn *c, const char *sql, int n_params, const char *const *params)
{
    PGresult *r = PQexecParams(c, sql, n_params, NULL, params, NULL, NULL, 0);
    char *v = NULL;

    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s: %s", sql, PQerrorMessage(c));
    ck_assert_msg(PQntuples(r) == 1 && PQnfields(r) == 1, "%s: %d rows", sql, PQntuples(r));
    if (!PQgetisnull(r, 0, 0)) {
        v = strdup(PQgetvalue(r, 0, 0));
        ck_assert_ptr_nonnull(v);
    }
    PQclear(r);
    return v;
}

static void
expect_value(PGconn *c, const char *sql, int n_params, const char *const *params, const char *want)
{
    char *v = query_value(c, sql, n_params, params);

    if (want == NULL) {
        ck_assert_msg(v == NULL, "%s: got %s", sql, v);
    } else {
        ck_assert_msg(v != NULL, "%s: got NULL", sql);
        ck_assert_msg(strcmp(v, want) == 0, "%s: got \"%.200s\", want \"%.200s\"", sql, v, want);
    }
    free(v);
}

/* JSON text of obj (caller frees). */
static char *
dump(json_t *obj)
{
    char *s = json_dumps(obj, JSON_COMPACT);

    ck_assert_ptr_nonnull(s);
    json_decref(obj);
    return s;
}

/* A 1 MB string mixing every character COPY escapes. */
static char *
big_message(void)
{
    static const char unit[] = "a\tb\\c\nd\re\"f\xf0\x9f\x98\x80 ";
    size_t n = 1024 * 1024;
    size_t u = sizeof(unit) - 1;
    char *s = malloc(n + u + 1);
    size_t i;

    ck_assert_ptr_nonnull(s);
    for (i = 0; i < n; i += u) {
        memcpy(s + i, unit, u);
    }
    s[i] = '\0';
    return s;
}

/* In both COPY formats (the loop's _i: 0 text, 1 binary): crash_report's copy_binary is set. */
START_TEST(test_crash_report)
{
    PGconn *c = connect_schema(_i == 0 ? "ev_pg_crash" : "ev_pg_crash_bin");
    const struct ev_type *t = create_table(c, "crash_report");
    struct ev_buf rows = {.binary = _i == 1};
    size_t n = sizeof(nasty) / sizeof(nasty[0]);
    char *msgs[16];
    char *events[16];
    char id[37];
    size_t i;

    for (i = 0; i <= n; i++) {
        msgs[i] = i < n ? strdup(nasty[i]) : big_message();
        events[i] = dump(json_pack("{s:s, s:I, s:I, s:s}", "event_name", "crash_report", "user_id",
                                   (json_int_t)(INT64_MAX - (int64_t)i), "timestamp",
                                   (json_int_t)(1000 + i), "message", msgs[i]));
        encode_into(t, events[i], (uint8_t)i, RECEIVED_US, i, &rows);
    }
    {
        /* One row with an idempotency key and a source: text columns, NULL in the others. */
        static const char keyed[] = "{\"user_id\": -7, \"timestamp\": 0, \"message\": \"\"}";
        struct ev_stored ev = {
            .json = keyed,
            .json_len = sizeof(keyed) - 1,
            .received_us = -1,
            .key = "k\t1",
            .key_len = 3,
            .source = "web",
            .source_len = 3,
        };
        char err[EV_ERR_MAX] = "";

        memset(ev.uuid, 0xee, sizeof(ev.uuid));
        ck_assert_int_eq(ev_encode(t, &ev, &rows, err), 0);
    }
    copy_in(c, t->table, t->copy_columns, &rows);
    expect_value(c,
                 "SELECT concat_ws('|', user_id, event_time, message, received_at, "
                 "idempotency_key, source) FROM crash_report WHERE idempotency_key "
                 "IS NOT NULL",
                 0, NULL, "-7|1970-01-01 00:00:00+00||1969-12-31 23:59:59.999999+00|k\t1|web");
    {
        char want[32];

        snprintf(want, sizeof(want), "%zu", n + 1);
        expect_value(c,
                     "SELECT count(*)::text FROM crash_report WHERE idempotency_key IS "
                     "NULL AND source IS NULL",
                     0, NULL, want);
    }
    for (i = 0; i <= n; i++) {
        const char *p[1] = {id};
        char want[64];

        uuid_text((uint8_t)i, id);
        expect_value(c, "SELECT message FROM crash_report WHERE id = $1", 1, p, msgs[i]);
        snprintf(want, sizeof(want), "%lld", (long long)(INT64_MAX - (int64_t)i));
        expect_value(c, "SELECT user_id::text FROM crash_report WHERE id = $1", 1, p, want);
        snprintf(want, sizeof(want), "%zu", 1000 + i);
        expect_value(c,
                     "SELECT extract(epoch FROM event_time)::bigint::text FROM crash_report "
                     "WHERE id = $1",
                     1, p, want);
        expect_value(c,
                     "SELECT event_name || ' ' || received_at::text FROM crash_report "
                     "WHERE id = $1",
                     1, p, "crash_report " RECEIVED_TEXT);
        expect_value(c, "SELECT (loaded_at > received_at)::text FROM crash_report WHERE id = $1", 1,
                     p, "true");
        free(msgs[i]);
        free(events[i]);
    }
    ev_buf_free(&rows);
    PQfinish(c);
}
END_TEST

START_TEST(test_ad_event)
{
    PGconn *c = connect_schema("ev_pg_ad");
    const struct ev_type *t = create_table(c, "ad_event");
    struct ev_buf rows = {0};
    size_t n = sizeof(nasty) / sizeof(nasty[0]);
    char *events[16];
    char *metas[16];
    char id[37];
    size_t i;

    for (i = 0; i < n; i++) {
        json_t *ev = json_pack("{s:s, s:s, s:s, s:s}", "ip_address", "203.0.113.9", "user_agent",
                               nasty[i], "referring_url", "https://example.com/p?q=1#f",
                               "advertiser_id", nasty[(i + 1) % n][0] ? nasty[(i + 1) % n] : "x");
        json_t *meta = json_pack("{s:s, s:[i, f, b, n], s:{s:s}}", "s", nasty[i], "list", 1, 2.5, 1,
                                 "nested", "k", nasty[n - 1 - i]);

        ck_assert_ptr_nonnull(ev);
        ck_assert_ptr_nonnull(meta);
        if (i == 0) {
            json_decref(meta);
            meta = json_object();
        } else {
            json_object_set(ev, "metadata", meta);
        }
        metas[i] = dump(meta);
        events[i] = dump(ev);
        encode_into(t, events[i], (uint8_t)i, RECEIVED_US, i, &rows);
    }
    copy_in(c, t->table, t->copy_columns, &rows);
    for (i = 0; i < n; i++) {
        const char *p[4];

        uuid_text((uint8_t)i, id);
        p[0] = id;
        p[1] = metas[i];
        p[2] = nasty[i];
        p[3] = nasty[(i + 1) % n][0] ? nasty[(i + 1) % n] : "x";
        expect_value(c,
                     "SELECT count(*)::text FROM ad_event WHERE id = $1 "
                     "AND metadata = $2::jsonb AND user_agent = $3 AND advertiser_id = $4 "
                     "AND ip_address = '203.0.113.9'::inet "
                     "AND referring_url = 'https://example.com/p?q=1#f'",
                     4, p, "1");
        free(metas[i]);
        free(events[i]);
    }
    ev_buf_free(&rows);
    PQfinish(c);
}
END_TEST

START_TEST(test_user_login)
{
    PGconn *c = connect_schema("ev_pg_login");
    const struct ev_type *t = create_table(c, "user_login");
    struct ev_buf rows = {0};
    const char *p[1];
    char id[37];

    encode_into(t,
                "{\"user_id\": \"u\\t1\", \"timestamp\": \"1700000000\", "
                "\"ip\": \"2001:db8::1\"}",
                1, RECEIVED_US, 1, &rows);
    encode_into(t,
                "{\"event_name\": \"user_login\", \"user_id\": \"\\\\N\", \"timestamp\": 5, "
                "\"app_version\": \"1.0\\n\", \"device_type\": \"\\u00e9\", "
                "\"ip\": \"10.0.0.1\", \"locale\": \"fr\", \"device_id\": \"\\\\.\"}",
                2, RECEIVED_US, 2, &rows);
    copy_in(c, t->table, t->copy_columns, &rows);
    p[0] = id;
    uuid_text(1, id);
    expect_value(c, "SELECT user_id FROM user_login WHERE id = $1", 1, p, "u\t1");
    expect_value(c, "SELECT ip::text FROM user_login WHERE id = $1", 1, p, "2001:db8::1/128");
    expect_value(c, "SELECT app_version FROM user_login WHERE id = $1", 1, p, NULL);
    expect_value(c, "SELECT locale FROM user_login WHERE id = $1", 1, p, NULL);
    expect_value(c, "SELECT created_at::text FROM user_login WHERE id = $1", 1, p,
                 "2023-11-14 22:13:20+00");
    expect_value(c, "SELECT processed_at::text FROM user_login WHERE id = $1", 1, p, NOW_TEXT);
    expect_value(c, "SELECT received_at::text FROM user_login WHERE id = $1", 1, p, RECEIVED_TEXT);
    uuid_text(2, id);
    expect_value(c,
                 "SELECT user_id || '|' || app_version || '|' || device_type || '|' || "
                 "host(ip) || '|' || locale || '|' || device_id FROM user_login WHERE id = $1",
                 1, p, "\\N|1.0\n|\xc3\xa9|10.0.0.1|fr|\\.");
    expect_value(c, "SELECT created_at::text FROM user_login WHERE id = $1", 1, p,
                 "1970-01-01 00:00:05+00");
    ev_buf_free(&rows);
    PQfinish(c);
}
END_TEST

START_TEST(test_data_sample)
{
    PGconn *c = connect_schema("ev_pg_sample");
    const struct ev_type *t = create_table(c, "data_sample");
    struct ev_buf rows = {0};
    const char *small = "{\"event_name\": \"data_sample\",\n\t\"time_stamp\": "
                        "\"2024-03-01T01:30:00.25+02:00\", \"data\": [2, 4, 4, 4, 5, 5, 7, 9], "
                        "\"x\\\\y\": 1}";
    const char *ok = "{\"time_stamp\": \"2024-03-01T01:30:00.25+02:00\", "
                     "\"data\": [2, 4, 4, 4, 5, 5, 7, 9.0e0]}";
    size_t count = 100000;
    char *big = malloc(count * 24 + 128);
    const char *p[1];
    char id[37];
    size_t len;
    size_t i;

    ck_assert_ptr_nonnull(big);
    len = (size_t)sprintf(big, "{\"time_stamp\": \"2024-01-01T00:00:00Z\", \"data\": [");
    for (i = 0; i < count; i++) {
        len += (size_t)sprintf(big + len, "%s%zu.5", i ? ", " : "", i);
    }
    sprintf(big + len, "]}");
    /* The unknown key "x\\y" makes `small` invalid: check it is rejected, then use `ok`. */
    {
        struct ev_stored ev = {.json = small, .json_len = strlen(small)};
        char err[EV_ERR_MAX];

        ck_assert_int_eq(ev_encode(t, &ev, &rows, err), DP_ERR_INVALID);
        ck_assert_str_eq(err, "x\\y: unknown field");
        ck_assert_uint_eq(rows.len, 0);
    }
    encode_into(t, ok, 1, RECEIVED_US, 1, &rows);
    encode_into(t, big, 2, RECEIVED_US, 2, &rows);
    copy_in(c, t->table, t->copy_columns, &rows);
    p[0] = id;
    uuid_text(1, id);
    expect_value(c, "SELECT raw::text FROM data_sample WHERE id = $1", 1, p, ok);
    expect_value(c,
                 "SELECT time_stamp::text || ' ' || n || ' ' || mean || ' ' || std "
                 "FROM data_sample WHERE id = $1",
                 1, p, "2024-02-29 23:30:00.25+00 8 5 2");
    uuid_text(2, id);
    expect_value(c, "SELECT raw::text FROM data_sample WHERE id = $1", 1, p, big);
    expect_value(c, "SELECT n || ' ' || mean FROM data_sample WHERE id = $1", 1, p, "100000 50000");
    expect_value(c,
                 "SELECT (abs(std - sqrt((100000.0 ^ 2 - 1) / 12)) < 1e-6)::text "
                 "FROM data_sample WHERE id = $1",
                 1, p, "true");
    free(big);
    ev_buf_free(&rows);
    PQfinish(c);
}
END_TEST

/* One product load as the loader does it: stage, COPY, upsert, in one transaction. */
static void
product_load(PGconn *c, const struct ev_type *t, struct ev_buf *rows)
{
    char stage[64];

    snprintf(stage, sizeof(stage), "%s_stage", t->table);
    exec_ok(c, "BEGIN");
    exec_ok(c, t->stage_ddl);
    copy_in(c, stage, t->copy_columns, rows);
    exec_ok(c, t->upsert_sql);
    exec_ok(c, "COMMIT");
    rows->len = 0;
}

START_TEST(test_product_upsert)
{
    PGconn *c = connect_schema("ev_pg_product");
    const struct ev_type *t = create_table(c, "product");
    struct ev_buf rows = {0};
    const char *pa[1] = {"a"};
    const char *pb[1] = {"b"};
    const char *p5[1] = {"5"};
    char *xmin_b;
    char *updated_b;
    char *v;

    /* Batch 1: "a" twice (the newer received wins), "b" with nasty text, integer id 5. */
    encode_into(t, "{\"id\": \"a\", \"v\": 2}", 1, 200, 10, &rows);
    encode_into(t, "{\"id\": \"a\", \"v\": 1}", 2, 100, 11, &rows);
    encode_into(t,
                "{\"id\": \"b\", \"s\": \"t\\tn\\nb\\\\q\\\"\\u00e9\\ud83d\\ude00\", "
                "\"event_name\": \"product\"}",
                3, 100, 12, &rows);
    encode_into(t, "{\"id\": 5, \"n\": 1.50}", 4, 100, 13, &rows);
    product_load(c, t, &rows);
    expect_value(c, "SELECT count(*)::text FROM product", 0, NULL, "3");
    expect_value(c, "SELECT doc::text FROM product WHERE id = $1", 1, pa,
                 "{\"v\": 2, \"id\": \"a\"}");
    expect_value(c, "SELECT doc->>'s' FROM product WHERE id = $1", 1, pb,
                 "t\tn\nb\\q\"\xc3\xa9\xf0\x9f\x98\x80");
    expect_value(c, "SELECT doc->>'n' FROM product WHERE id = $1", 1, p5, "1.50");
    expect_value(c, t->get_sql, 1, p5, "{\"n\": 1.50, \"id\": 5}");

    /* Batch 2: an older "a" changes nothing; an identical "b" writes nothing. */
    xmin_b = query_value(c, "SELECT xmin::text FROM product WHERE id = $1", 1, pb);
    updated_b = query_value(c, "SELECT updated_at::text FROM product WHERE id = $1", 1, pb);
    encode_into(t, "{\"id\": \"a\", \"v\": 0}", 5, 150, 20, &rows);
    encode_into(t,
                "{\"event_name\": \"product\", "
                "\"s\": \"t\\tn\\nb\\\\q\\\"\\u00e9\\ud83d\\ude00\", \"id\": \"b\"}",
                6, 900, 21, &rows);
    product_load(c, t, &rows);
    expect_value(c, "SELECT doc->>'v' FROM product WHERE id = $1", 1, pa, "2");
    expect_value(c, "SELECT xmin::text FROM product WHERE id = $1", 1, pb, xmin_b);
    expect_value(c, "SELECT updated_at::text FROM product WHERE id = $1", 1, pb, updated_b);
    expect_value(c, "SELECT received_at::text FROM product WHERE id = $1", 1, pb,
                 "1970-01-01 00:00:00.0001+00");

    /* Batch 3: same received_at in one batch: the higher seq wins; a newer doc replaces. */
    encode_into(t, "{\"id\": \"a\", \"v\": 3}", 7, 300, 31, &rows);
    encode_into(t, "{\"id\": \"a\", \"v\": 4}", 8, 300, 32, &rows);
    encode_into(t, "{\"id\": \"b\", \"s\": \"changed\"}", 9, 901, 33, &rows);
    product_load(c, t, &rows);
    expect_value(c, "SELECT doc->>'v' FROM product WHERE id = $1", 1, pa, "4");
    expect_value(c, "SELECT doc->>'s' FROM product WHERE id = $1", 1, pb, "changed");
    v = query_value(c, "SELECT (updated_at >= $1::timestamptz)::text FROM product WHERE id = 'b'",
                    1, (const char *const *)&updated_b);
    ck_assert_str_eq(v, "true");
    free(v);

    /* The staging statements may run twice in one transaction (the upsert empties the stage). */
    exec_ok(c, "BEGIN");
    exec_ok(c, t->stage_ddl);
    encode_into(t, "{\"id\": \"c\"}", 10, 1000, 40, &rows);
    copy_in(c, "product_stage", t->copy_columns, &rows);
    exec_ok(c, t->upsert_sql);
    exec_ok(c, t->stage_ddl);
    rows.len = 0;
    encode_into(t, "{\"id\": \"d\"}", 11, 1000, 41, &rows);
    copy_in(c, "product_stage", t->copy_columns, &rows);
    exec_ok(c, t->upsert_sql);
    exec_ok(c, "COMMIT");
    expect_value(c, "SELECT string_agg(id, ',' ORDER BY id) FROM product", 0, NULL, "5,a,b,c,d");
    free(xmin_b);
    free(updated_b);
    ev_buf_free(&rows);
    PQfinish(c);
}
END_TEST

/* GET's SQL of every type returns one JSON text, with the columns docs/event-types.md names. */
START_TEST(test_get_sql)
{
    static const struct {
        const char *type;
        const char *json;
        const char *keys; /* the JSON object's keys, in order */
    } cases[] = {
        {"crash_report", "{\"user_id\": 1, \"timestamp\": 2, \"message\": \"m\\tx\"}",
         "id,event_name,user_id,event_time,message,received_at,loaded_at,idempotency_key,"
         "idempotency_digest,source"},
        {"ad_event",
         "{\"ip_address\": \"1.2.3.4\", \"user_agent\": \"u\", \"referring_url\": \"http://h\", "
         "\"advertiser_id\": \"a\", \"metadata\": {\"k\": [1]}}",
         "id,ip_address,user_agent,referring_url,advertiser_id,metadata,received_at,loaded_at,"
         "idempotency_key,idempotency_digest,source"},
        {"user_login", "{\"user_id\": \"u\", \"timestamp\": 2}",
         "id,user_id,app_version,device_type,ip,locale,device_id,created_at,processed_at,"
         "received_at,idempotency_key,idempotency_digest,source"},
        {"data_sample", "{\"time_stamp\": \"2024-01-01T00:00:00Z\", \"data\": [1, 3]}",
         "id,time_stamp,n,mean,std,received_at,loaded_at"},
    };
    PGconn *c = connect_schema("ev_pg_get");
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct ev_type *t = create_table(c, cases[i].type);
        struct ev_buf rows = {0};
        char keys[256] = "";
        const char *key;
        json_t *obj;
        json_t *val;
        char id[37];
        const char *p[1] = {id};
        char *text;

        encode_into(t, cases[i].json, 9, RECEIVED_US, 1, &rows);
        copy_in(c, t->table, t->copy_columns, &rows);
        ev_buf_free(&rows);
        uuid_text(9, id);
        text = query_value(c, t->get_sql, 1, p);
        obj = json_loads(text, 0, NULL);
        ck_assert_msg(obj != NULL, "%s", text);
        json_object_foreach(obj, key, val)
        {
            strcat(keys, keys[0] ? "," : "");
            strcat(keys, key);
        }
        ck_assert_str_eq(keys, cases[i].keys);
        ck_assert_str_eq(json_string_value(json_object_get(obj, "id")), id);
        ck_assert_str_eq(json_string_value(json_object_get(obj, "received_at")),
                         "2023-11-14T22:13:20.123456+00:00");
        json_decref(obj);
        free(text);
        /* An id that is not there: no row. */
        p[0] = "01000000-0000-7000-0000-0000000000ff";
        {
            PGresult *r = PQexecParams(c, t->get_sql, 1, NULL, p, NULL, NULL, 0);

            ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
            ck_assert_int_eq(PQntuples(r), 0);
            PQclear(r);
        }
    }
    PQfinish(c);
}
END_TEST

/* Whether PostgreSQL takes json as jsonb. */
static bool
pg_takes_jsonb(PGconn *c, const char *json)
{
    PGresult *r = PQexecParams(c, "SELECT $1::jsonb", 1, NULL, &json, NULL, NULL, 0);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;

    ck_assert_msg(ok || strcmp(PQresultErrorField(r, PG_DIAG_SQLSTATE), "22003") == 0, "%.80s: %s",
                  json, PQerrorMessage(c));
    PQclear(r);
    return ok;
}

/* A number of digits digits: "<lead>" then the digits then "<tail>"; malloc'd. */
static char *
digits_number(const char *lead, size_t digits, const char *tail)
{
    char *s = malloc(strlen(lead) + digits + strlen(tail) + 1);

    ck_assert_ptr_nonnull(s);
    strcpy(s, lead);
    memset(s + strlen(lead), '1', digits);
    strcpy(s + strlen(lead) + digits, tail);
    return s;
}

/*
 * A product or ad_event whose numbers jsonb refuses is refused at ingest (it would fail at
 * load); every number PostgreSQL takes at the edge of numeric's range is still accepted.
 */
START_TEST(test_jsonb_numbers_match_postgresql)
{
    PGconn *c = connect_schema("ev_numbers");
    char *refused[] = {
        strdup("1e-20000"),
        strdup("-1e-16384"),
        strdup("1.5e-16383"),
        strdup("0e-16384"),
        strdup("0.0e-16383"),
        digits_number("0.", 16384, ""),
        digits_number("1.", 16000, "e-384"),
    };
    char *taken[] = {
        strdup("1e-16383"),
        strdup("-123.45e-16381"),
        strdup("0e-16383"),
        strdup("1e308"),
        strdup("1e+300"),
        strdup("-0.0"),
        strdup("12.5"),
        digits_number("0.", 16383, ""),
        digits_number("1.", 16000, "e-383"),
    };
    const struct ev_type *product = ev_lookup("product", 7);
    const struct ev_type *ad = ev_lookup("ad_event", 8);

    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]) + sizeof(taken) / sizeof(taken[0]);
         i++) {
        bool want = i >= sizeof(refused) / sizeof(refused[0]);
        const char *num = want ? taken[i - sizeof(refused) / sizeof(refused[0])] : refused[i];
        char *doc = NULL;
        char *event = NULL;
        struct ev_batch b = {0};

        ck_assert_ptr_nonnull(num);
        ck_assert(asprintf(&doc, "{\"id\": \"n%zu\", \"m\": {\"a\": [true, %s]}}", i, num) > 0);
        ck_assert_msg(pg_takes_jsonb(c, doc) == want, "%.40s: PostgreSQL disagrees", num);
        ck_assert_int_eq(ev_parse_body(doc, strlen(doc), product, &b), 0);
        ck_assert_uint_eq(b.n, 1);
        ck_assert_msg((b.items[0].error == NULL) == want, "product %.40s: %s", num,
                      b.items[0].error != NULL ? b.items[0].error : "accepted");
        if (!want) {
            ck_assert_msg(strncmp(b.items[0].error, "m.a[1]: number ", 15) == 0, "%s",
                          b.items[0].error);
        }
        ev_batch_free(&b);
        ck_assert(asprintf(&event,
                           "{\"ip_address\": \"10.0.0.1\", \"user_agent\": \"u\", "
                           "\"referring_url\": \"https://e.example\", \"advertiser_id\": "
                           "\"a\", \"metadata\": {\"x\": [{\"y\": %s}]}}",
                           num) > 0);
        memset(&b, 0, sizeof(b));
        ck_assert_int_eq(ev_parse_body(event, strlen(event), ad, &b), 0);
        ck_assert_msg((b.items[0].error == NULL) == want, "ad_event %.40s: %s", num,
                      b.items[0].error != NULL ? b.items[0].error : "accepted");
        if (!want) {
            ck_assert_msg(strstr(b.items[0].error, "metadata.x[0].y: number ") == b.items[0].error,
                          "%s", b.items[0].error);
        }
        ev_batch_free(&b);
        free(doc);
        free(event);
    }
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        free(refused[i]);
    }
    for (size_t i = 0; i < sizeof(taken) / sizeof(taken[0]); i++) {
        free(taken[i]);
    }
    PQfinish(c);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("events_pg");
    TCase *tc = tcase_create("copy");
    SRunner *sr;
    int failed;

    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_crash_report, 0, 2);
    tcase_add_test(tc, test_ad_event);
    tcase_add_test(tc, test_user_login);
    tcase_add_test(tc, test_data_sample);
    suite_add_tcase(s, tc);
    tc = tcase_create("upsert");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_product_upsert);
    suite_add_tcase(s, tc);
    tc = tcase_create("get");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_get_sql);
    suite_add_tcase(s, tc);
    tc = tcase_create("numbers");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_jsonb_numbers_match_postgresql);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
