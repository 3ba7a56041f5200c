/*
 * check_loader.c - the loader against a real PostgreSQL (tests/pg): every type's values,
 * product upserts, dead letters (ingest, encoder, poison rows isolated by halving), exactly
 * once through dropped connections, lost COMMIT answers and a crash between COMMIT and the
 * queue delete, workers, compaction, figures; plus the pure schedule and back-off rules.
 */
#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "etc/err.h"
#include "etc/log.h"
#include "events/events.h"
#include "loader/internal.h"
#include "queue/queue_test.h"
#include "tests/lib/lib_loader.h"
#include "tests/lib/lib_test.h"

/* ---- helpers ------------------------------------------------------------------------- */

static struct ldr *
open_loader(struct tl_env *e, int workers, int batch_rows, const struct ldr_fault_ops *fault)
{
    struct ldr_options o = tl_options(e, workers, batch_rows);
    struct ldr *l = NULL;

    o.fault = fault;
    ck_assert_int_eq(ldr_create(&l, e->q, &o), 0);
    ck_assert_int_eq(ldr_start(l), 0);
    return l;
}

/* Start a loader, run it once (must drain), close it. */
static void
load_all(struct tl_env *e, int workers, int batch_rows, const struct ldr_fault_ops *fault,
         struct ldr_run_stats *st)
{
    struct ldr *l = open_loader(e, workers, batch_rows, fault);

    ck_assert_int_eq(ldr_run(l, st), 0);
    ldr_destroy(l);
    ck_assert_uint_eq(tl_queued(e), 0);
}

static void
gen_crash(uint64_t i, char *buf, size_t len)
{
    snprintf(buf, len, "{\"user_id\": %llu, \"timestamp\": %llu, \"message\": \"m%llu\"}",
             (unsigned long long)i, 1600000000ULL + i, (unsigned long long)i);
}

static void
gen_product(uint64_t i, char *buf, size_t len)
{
    snprintf(buf, len, "{\"id\": \"p%llu\", \"name\": \"thing %llu\", \"price\": %llu}",
             (unsigned long long)i, (unsigned long long)i, (unsigned long long)(i % 100));
}

/* ---- schedule and back-off (pure) ----------------------------------------------------- */

START_TEST(test_schedule_rules)
{
    struct ldr_schedule s = {.interval_s = 3600, .min_interval_s = 5, .high_water = 1000};
    int64_t wait_ms = -1;

    /* The first run is due at once, a forced one always. */
    ck_assert(ldr_schedule_due(&s, 100, -1, -1, 0, false, &wait_ms));
    ck_assert(ldr_schedule_due(&s, 100, 50, 60, 0, true, &wait_ms));
    /* Before the interval with few events: not due, and told how long to wait. */
    ck_assert(!ldr_schedule_due(&s, 10000, 0, 1000, 999, false, &wait_ms));
    ck_assert_int_eq(wait_ms, 3600000 - 10000);
    /* The interval counts from the start of the last run. */
    ck_assert(ldr_schedule_due(&s, 3600000, 0, 3000000, 0, false, &wait_ms));
    /* Above high water: early, but never sooner than min_interval after the last run ended. */
    ck_assert(!ldr_schedule_due(&s, 5999, 0, 1000, 1001, false, &wait_ms));
    ck_assert(ldr_schedule_due(&s, 6000, 0, 1000, 1001, false, &wait_ms));
    /* Exactly high water is not above it. */
    ck_assert(!ldr_schedule_due(&s, 60000, 0, 1000, 1000, false, &wait_ms));
}
END_TEST

START_TEST(test_backoff_capped_and_jittered)
{
    int64_t prev_max = 0;

    for (int attempt = 1; attempt <= 40; attempt++) {
        int64_t lo = INT64_MAX;
        int64_t hi = 0;

        for (uint32_t r = 0; r < 2000; r++) {
            int64_t d = ldr_backoff_ms(attempt, r * 2654435761u);

            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
        }
        ck_assert_int_ge(lo, LDR_BACKOFF_BASE_MS / 2);
        ck_assert_int_le(hi, LDR_BACKOFF_MAX_MS);
        ck_assert_int_ge(hi, prev_max); /* grows until the cap */
        ck_assert_int_lt(lo, hi);       /* jittered */
        prev_max = hi;
    }
    ck_assert_int_le(ldr_backoff_ms(1, 0xffffffffu), LDR_BACKOFF_BASE_MS);
    ck_assert_int_ge(ldr_backoff_ms(40, 0), LDR_BACKOFF_MAX_MS / 2);
}
END_TEST

START_TEST(test_classify_sqlstates)
{
    ck_assert_int_eq(ldr_pg_classify("22P02", true), DP_ERR_DATA);   /* invalid text repr. */
    ck_assert_int_eq(ldr_pg_classify("23514", true), DP_ERR_DATA);   /* check violation */
    ck_assert_int_eq(ldr_pg_classify("23505", true), DP_ERR_DATA);   /* unique violation */
    ck_assert_int_eq(ldr_pg_classify("54000", true), DP_ERR_DATA);   /* index row too big */
    ck_assert_int_eq(ldr_pg_classify("08006", true), DP_ERR_RETRY);  /* connection failure */
    ck_assert_int_eq(ldr_pg_classify("57P01", true), DP_ERR_RETRY);  /* admin shutdown */
    ck_assert_int_eq(ldr_pg_classify("40P01", true), DP_ERR_RETRY);  /* deadlock */
    ck_assert_int_eq(ldr_pg_classify("53100", true), DP_ERR_RETRY);  /* disk full */
    ck_assert_int_eq(ldr_pg_classify("42P01", true), DP_ERR_RETRY);  /* table dropped */
    ck_assert_int_eq(ldr_pg_classify("22P02", false), DP_ERR_RETRY); /* connection gone */
    ck_assert_int_eq(ldr_pg_classify(NULL, true), DP_ERR_RETRY);
    ck_assert_int_eq(ldr_pg_classify("", true), DP_ERR_RETRY);
}
END_TEST

START_TEST(test_clean_text)
{
    struct ev_buf b = {0};
    static const char in[] = "ok\t\xc3\xa9\\ \xff\x00z\xed\xa0\x80!\xf0\x9f\x98\x80";

    ck_assert_int_eq(ldr_put_clean_text(&b, in, sizeof(in) - 1), 0);
    ck_assert_int_eq((int)b.len, (int)strlen("ok\\t\xc3\xa9\\\\ \\\\xff\\\\x00z\\\\xed\\\\xa0"
                                             "\\\\x80!\xf0\x9f\x98\x80"));
    ck_assert(memcmp(b.data,
                     "ok\\t\xc3\xa9\\\\ \\\\xff\\\\x00z\\\\xed\\\\xa0\\\\x80!"
                     "\xf0\x9f\x98\x80",
                     b.len) == 0);
    ev_buf_free(&b);
}
END_TEST

/* ---- every type's values ------------------------------------------------------------- */

static const char crash_json[] =
    "{\"user_id\": 42, \"timestamp\": 1700000000, \"message\": \"tab\\there \\\\ \\\"q\\\" "
    "\\u00e9\\ud83d\\ude00\"}";
static const char ad_json[] =
    "{\"ip_address\": \"192.168.1.20\", \"user_agent\": \"Mozilla/5.0 (X11)\", "
    "\"referring_url\": \"https://example.com/a?b=c\", \"advertiser_id\": \"adv-7\", "
    "\"metadata\": {\"campaign\": \"x\", \"n\": [1, 2]}}";
static const char ad_bare_json[] =
    "{\"ip_address\": \"10.1.2.3\", \"user_agent\": \"\", "
    "\"referring_url\": \"http://h.example\", \"advertiser_id\": \"a\"}";
static const char login_json[] =
    "{\"user_id\": \"u-1\", \"timestamp\": \"1700000001\", \"ip\": \"2001:db8::1\", "
    "\"locale\": \"de_DE\"}";
static const char sample_json[] =
    "{\"time_stamp\": \"2024-02-29T23:30:00.25-01:30\",  \"data\":[1000000000.1,"
    "1000000000.2, 1000000000.3 ,1000000000.4]}";

START_TEST(test_types_values)
{
    struct tl_env e;
    char id_crash[37];
    char id_ad[37];
    char id_bare[37];
    char id_login[37];
    char id_sample[37];
    int64_t before_us;
    int64_t after_us;
    struct ldr_run_stats st;
    char *s;
    double mean = 0;
    double var = 0;
    const double xs[] = {1000000000.1, 1000000000.2, 1000000000.3, 1000000000.4};

    tl_setup(&e, "types");
    tl_append(&e, "crash_report", crash_json, 0, NULL, 1700000500123456LL, id_crash);
    tl_append(&e, "ad_event", ad_json, 0, NULL, 0, id_ad);
    tl_append(&e, "ad_event", ad_bare_json, 0, NULL, 0, id_bare);
    tl_append(&e, "user_login", login_json, 0, NULL, 0, id_login);
    tl_append(&e, "data_sample", sample_json, 0, NULL, 0, id_sample);
    before_us = tl_now_us();
    load_all(&e, 1, 100, NULL, &st);
    after_us = tl_now_us();
    ck_assert_uint_eq(st.events, 5);
    ck_assert_uint_eq(st.loaded, 5);

    /* crash_report: event_time from epoch seconds, text exactly, received_at to the us. */
    ck_assert_int_eq(tl_int(&e,
                            "SELECT count(*) FROM crash_report WHERE id = '%s' AND "
                            "event_name = 'crash_report' AND user_id = 42 AND "
                            "event_time = '2023-11-14 22:13:20+00' AND "
                            "received_at = to_timestamp(1700000500.123456)",
                            id_crash),
                     1);
    s = tl_str(&e, "SELECT message FROM crash_report WHERE id = '%s'", id_crash);
    ck_assert_str_eq(s, "tab\there \\ \"q\" \xc3\xa9\xf0\x9f\x98\x80");
    free(s);

    /* ad_event: inet, jsonb, and the default {} metadata. */
    ck_assert_int_eq(tl_int(&e,
                            "SELECT count(*) FROM ad_event WHERE id = '%s' AND "
                            "ip_address = '192.168.1.20'::inet AND "
                            "user_agent = 'Mozilla/5.0 (X11)' AND "
                            "referring_url = 'https://example.com/a?b=c' AND "
                            "advertiser_id = 'adv-7' AND "
                            "metadata = '{\"n\": [1, 2], \"campaign\": \"x\"}'::jsonb",
                            id_ad),
                     1);
    ck_assert_int_eq(tl_int(&e,
                            "SELECT count(*) FROM ad_event WHERE id = '%s' AND "
                            "metadata = '{}'::jsonb AND user_agent = ''",
                            id_bare),
                     1);

    /* user_login: created_at from a digit string, processed_at the loader's clock. */
    ck_assert_int_eq(tl_int(&e,
                            "SELECT count(*) FROM user_login WHERE id = '%s' AND "
                            "user_id = 'u-1' AND created_at = to_timestamp(1700000001) AND "
                            "ip = '2001:db8::1'::inet AND locale = 'de_DE' AND "
                            "app_version IS NULL AND device_type IS NULL",
                            id_login),
                     1);
    ck_assert_int_eq(tl_int(&e,
                            "SELECT count(*) FROM user_login WHERE id = '%s' AND "
                            "processed_at BETWEEN to_timestamp(%lld / 1e6) AND "
                            "to_timestamp(%lld / 1e6)",
                            id_login, (long long)before_us - 1, (long long)after_us + 1),
                     1);

    /* data_sample: UTC time, n, mean, population std against a two-pass reference, raw. */
    for (int i = 0; i < 4; i++) {
        mean += xs[i] / 4;
    }
    for (int i = 0; i < 4; i++) {
        var += (xs[i] - mean) * (xs[i] - mean) / 4;
    }
    ck_assert_int_eq(tl_int(&e,
                            "SELECT count(*) FROM data_sample WHERE id = '%s' AND "
                            "time_stamp = '2024-03-01 01:00:00.25+00' AND n = 4",
                            id_sample),
                     1);
    s = tl_str(&e, "SELECT mean::text || ' ' || std::text FROM data_sample WHERE id = '%s'",
               id_sample);
    {
        double got_mean = 0;
        double got_std = 0;

        ck_assert_int_eq(sscanf(s, "%lf %lf", &got_mean, &got_std), 2);
        ck_assert_double_eq_tol(got_mean, mean, 1e-6);
        ck_assert_double_eq_tol(got_std, sqrt(var), 1e-6);
    }
    free(s);
    s = tl_str(&e, "SELECT raw::text FROM data_sample WHERE id = '%s'", id_sample);
    ck_assert_str_eq(s, sample_json);
    free(s);

    /* Figures for /metrics, per type. */
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_LOADED_PREFIX "crash_report"), 1);
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_LOADED_PREFIX "ad_event"), 2);
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_LOADED_PREFIX "user_login"), 1);
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_LOADED_PREFIX "data_sample"), 1);
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_BATCHES), 1);
    ck_assert_int_ge(tl_meta(&e, QUEUE_META_LOADER_LAST_SUCCESS_US), before_us);
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_LAST_RUN_EVENTS), 5);
    tl_teardown(&e);
}
END_TEST

/* ---- product upserts ----------------------------------------------------------------- */

START_TEST(test_product_reload_changes_nothing)
{
    struct tl_env e;
    char *before;
    char *after;

    tl_setup(&e, "prod_reload");
    tl_append_gen(&e, "product", 10000, gen_product, NULL);
    load_all(&e, 2, 3000, NULL, NULL);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM product"), 10000);
    before = tl_str(&e, "SELECT md5(string_agg(id || xmin::text || updated_at::text, ',' "
                        "ORDER BY id)) FROM product");
    /* The same documents again, received later: identical docs write nothing. */
    tl_append_gen(&e, "product", 10000, gen_product, NULL);
    load_all(&e, 2, 3000, NULL, NULL);
    after = tl_str(&e, "SELECT md5(string_agg(id || xmin::text || updated_at::text, ',' "
                       "ORDER BY id)) FROM product");
    ck_assert_str_eq(before, after);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM product"), 10000);
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_LOADED_PREFIX "product"), 20000);
    free(before);
    free(after);
    tl_teardown(&e);
}
END_TEST

START_TEST(test_product_newest_wins)
{
    struct tl_env e;
    struct ldr *l;
    int64_t t0 = tl_now_us() - 10000000;
    uint64_t old_seq;
    uint64_t new_seq;
    uint64_t a;
    char *doc;

    tl_setup(&e, "prod_order");
    /* Out of order: the newer version commits first (as another worker would). */
    old_seq = tl_append(&e, "product", "{\"id\": 7, \"v\": \"old\"}", 0, NULL, t0, NULL);
    new_seq = tl_append(&e, "product", "{\"id\": 7, \"v\": \"new\"}", 0, NULL, t0 + 1, NULL);
    l = open_loader(&e, 1, 100, NULL);
    ck_assert_int_eq(ldr_load_range(l, new_seq, new_seq), 0);
    ck_assert_int_eq(ldr_load_range(l, old_seq, old_seq), 0);
    doc = tl_str(&e, "SELECT doc->>'v' FROM product WHERE id = '7'");
    ck_assert_str_eq(doc, "new");
    free(doc);
    /* The same id three times in one batch: no error, the newest received wins, even when
     * it is not the last in the queue. */
    a = tl_append(&e, "product", "{\"id\": \"x\", \"v\": 1}", 0, NULL, t0 + 5, NULL);
    tl_append(&e, "product", "{\"id\": \"x\", \"v\": 3}", 0, NULL, t0 + 7, NULL);
    new_seq = tl_append(&e, "product", "{\"id\": \"x\", \"v\": 2}", 0, NULL, t0 + 6, NULL);
    ck_assert_int_eq(ldr_load_range(l, a, new_seq), 0);
    doc = tl_str(&e, "SELECT doc->>'v' FROM product WHERE id = 'x'");
    ck_assert_str_eq(doc, "3");
    free(doc);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM product"), 2);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM dead_letter"), 0);
    ldr_destroy(l);
    ck_assert_uint_eq(tl_queued(&e), 0);
    tl_teardown(&e);
}
END_TEST

/* ---- dead letters -------------------------------------------------------------------- */

START_TEST(test_dead_letters_ingest_and_encoder)
{
    struct tl_env e;
    static const char bad_json[] = "{\"user_id\": \"x\", \"timestamp\": 1, \"message\": \"m\"}";
    static const char rejected_json[] = "{not json at all \x01\xff";
    static const char unknown_json[] = "{\"a\": 1}";
    int64_t t = 1700000000000001LL;
    struct ldr_run_stats st;
    struct queue_stats qs;
    struct ldr *l;
    char *s;

    tl_setup(&e, "dead");
    tl_append(&e, "crash_report", "{\"user_id\": 1, \"timestamp\": 2, \"message\": \"ok\"}", 0,
              NULL, 0, NULL);
    tl_append(&e, "crash_report", rejected_json, QUEUE_F_REJECTED,
              "index 0: line 1 column 2: string or '}' expected", t, NULL);
    tl_append(&e, "crash_report", bad_json, 0, NULL, 0, NULL);
    tl_append(&e, "no_such_type", unknown_json, 0, NULL, 0, NULL);
    l = open_loader(&e, 1, 100, NULL);
    ck_assert_int_eq(ldr_run(l, &st), 0);
    ldr_destroy(l);

    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM crash_report"), 1);
    ck_assert_int_eq(
        tl_int(&e, "SELECT count(*) FROM dead_letter WHERE queue_id = '%s'", e.queue_id), 2);
    /* A type the loader does not know (say, a declaration removed while its events waited)
     * is neither loaded nor dead-lettered: it stays queued until the type is back. */
    ck_assert_uint_eq(tl_queued(&e), 1);
    ck_assert_uint_eq(st.held, 1);
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_HELD), 1);
    /* Rejected at ingest: the server's message, the exact bytes, received_at. */
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM dead_letter WHERE stage = 'ingest' AND "
                                "event_type = 'crash_report' AND error = 'index 0: line 1 "
                                "column 2: string or ''}'' expected' AND "
                                "raw = '\\x7b6e6f74206a736f6e20617420616c6c2001ff'::bytea AND "
                                "received_at = to_timestamp(1700000000.000001)"),
                     1);
    /* Refused by its encoder at load time. */
    s = tl_str(&e, "SELECT error FROM dead_letter WHERE stage = 'load' AND "
                   "event_type = 'crash_report'");
    ck_assert_str_eq(s, "user_id: expected integer, got string");
    free(s);
    s = tl_str(&e, "SELECT convert_from(raw, 'UTF8') FROM dead_letter WHERE stage = 'load' AND "
                   "event_type = 'crash_report'");
    ck_assert_str_eq(s, bad_json);
    free(s);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM dead_letter WHERE "
                                "event_type = 'no_such_type'"),
                     0);
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_DEAD_LETTERS), 2);
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_DEAD_INGEST), 1);
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_DEAD_LOAD), 1);
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_LOADED_PREFIX "crash_report"), 1);
    /* Conservation: of the four appended, one loaded, two dead-lettered, one held queued. */
    ck_assert_int_eq(queue_stats(e.q, &qs), 0);
    ck_assert_uint_eq(qs.accepted, 4);
    ck_assert_uint_eq(qs.loaded, 1);
    ck_assert_uint_eq(qs.dead_lettered, 2);
    ck_assert_uint_eq(qs.events, 1);
    tl_teardown(&e);
}
END_TEST

static void
gen_poison(uint64_t i, char *buf, size_t len)
{
    /* user_id 666 fits JSON and bigint: only the test's constraint refuses it. */
    uint64_t uid = i == 3 || i == 1500 || i == 2999 ? 666 : 1000 + i;

    snprintf(buf, len, "{\"user_id\": %llu, \"timestamp\": 1700000000, \"message\": \"m%llu\"}",
             (unsigned long long)uid, (unsigned long long)i);
}

START_TEST(test_poison_rows_isolated)
{
    struct tl_env e;
    struct ldr *l;
    struct ldr_run_stats st;
    char *s;

    tl_setup(&e, "poison");
    l = open_loader(&e, 2, 1000, NULL);
    tl_exec(&e, "ALTER TABLE crash_report ADD CONSTRAINT poison CHECK (user_id <> 666)");
    tl_exec(&e, "ALTER TABLE product ADD CONSTRAINT poison CHECK (doc->>'name' <> 'bad')");
    tl_append_gen(&e, "crash_report", 3000, gen_poison, NULL);
    tl_append(&e, "product", "{\"id\": 1, \"name\": \"good\"}", 0, NULL, 0, NULL);
    tl_append(&e, "product", "{\"id\": 2, \"name\": \"bad\"}", 0, NULL, 0, NULL);
    tl_append(&e, "product", "{\"id\": 3, \"name\": \"fine\"}", 0, NULL, 0, NULL);
    ck_assert_int_eq(ldr_run(l, &st), 0);
    ldr_destroy(l);

    ck_assert_uint_eq(tl_queued(&e), 0);
    ck_assert_uint_eq(st.events, 3003);
    ck_assert_uint_eq(st.dead_letters, 4);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM crash_report"), 2997);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM crash_report WHERE message IN "
                                "('m3', 'm1500', 'm2999')"),
                     0);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM dead_letter WHERE stage = 'load' AND "
                                "event_type = 'crash_report' AND error LIKE '%%violates check "
                                "constraint \"poison\"%%' AND convert_from(raw, 'UTF8') LIKE "
                                "'{\"user_id\": 666, %%'"),
                     3);
    s = tl_str(&e, "SELECT string_agg(convert_from(raw, 'UTF8'), '|' ORDER BY raw) FROM "
                   "dead_letter WHERE event_type = 'crash_report'");
    ck_assert_str_eq(s, "{\"user_id\": 666, \"timestamp\": 1700000000, \"message\": \"m1500\"}|"
                        "{\"user_id\": 666, \"timestamp\": 1700000000, \"message\": \"m2999\"}|"
                        "{\"user_id\": 666, \"timestamp\": 1700000000, \"message\": \"m3\"}");
    free(s);
    /* The upsert path isolates its bad rows the same way. */
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM product"), 2);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM dead_letter WHERE event_type = 'product' "
                                "AND error LIKE '%%\"poison\"%%(SQLSTATE 23514)'"),
                     1);
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_LOADED_PREFIX "crash_report"), 2997);
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_DEAD_LOAD), 4);
    tl_teardown(&e);
}
END_TEST

/* Whether b holds text. */
static bool
buf_has(const struct ev_buf *b, const char *text)
{
    return memmem(b->data, b->len, text, strlen(text)) != NULL;
}

/*
 * A batch is read from the queue once: after ldr_batch_read the range may vanish from the
 * queue and the batch still encodes every event, dead letters included, from its copy.
 */
START_TEST(test_batch_read_once)
{
    struct tl_env e;
    struct ldr_batch b;
    uint64_t first;
    uint64_t last;
    const struct ldr_group *crash = NULL;

    tl_setup(&e, "readonce");
    first = tl_append(&e, "crash_report",
                      "{\"user_id\": 1, \"timestamp\": 1600000000, "
                      "\"message\": \"held\"}",
                      0, NULL, 0, NULL);
    tl_append(&e, "crash_report", "{\"user_id\": \"x\"}", QUEUE_F_REJECTED,
              "user_id: expected integer", 0, NULL);
    tl_append(&e, "no_such_type", "{\"a\": 1}", 0, NULL, 0, NULL);
    last = tl_append(&e, "crash_report",
                     "{\"user_id\": 2, \"timestamp\": 1600000001, "
                     "\"message\": \"kept\"}",
                     0, NULL, 0, NULL);
    ck_assert_int_eq(ldr_batch_init(&b, e.queue_id), 0);

    /* The range's end, max_events and max_bytes bound the read (one event always fits). */
    ck_assert_int_eq(ldr_batch_read(&b, e.q, first, first + 1, 100, 0), 0);
    ck_assert_uint_eq(b.events, 2);
    ck_assert_uint_eq(b.last, first + 1);
    ck_assert_int_eq(ldr_batch_read(&b, e.q, first, last, 3, 0), 0);
    ck_assert_uint_eq(b.events, 3);
    ck_assert_int_eq(ldr_batch_read(&b, e.q, first, last, 100, 1), 0);
    ck_assert_uint_eq(b.events, 1);
    ck_assert_int_eq(ldr_batch_read(&b, e.q, last + 1, last + 10, 100, 0), 0);
    ck_assert_uint_eq(b.events, 0);

    ck_assert_int_eq(ldr_batch_read(&b, e.q, first, last, 100, 0), 0);
    ck_assert_uint_eq(b.events, 4);
    ck_assert_uint_eq(b.first, first);
    ck_assert_uint_eq(b.last, last);
    ck_assert_int_eq(queue_delete_range(e.q, first, last, NULL, 0), 0);
    ck_assert_uint_eq(tl_queued(&e), 0);
    ck_assert_int_eq(ldr_batch_build(&b), 0);
    for (size_t i = 0; i < b.n_groups; i++) {
        if (!b.groups[i].keyed && strcmp(b.groups[i].type->name, "crash_report") == 0) {
            crash = &b.groups[i];
        }
    }
    ck_assert_ptr_nonnull(crash);
    ck_assert_uint_eq(crash->n, 2);
    ck_assert_uint_eq(b.held[crash->held[0]].seq, first);
    ck_assert_uint_eq(b.held[crash->held[1]].seq, last);
    /* crash_report's rows are in COPY's binary format: a text column is its length, then it. */
    ck_assert(crash->rows.binary);
    ck_assert_ptr_nonnull(memmem(crash->rows.data, crash->rows.len, "\0\0\0\4held", 8));
    ck_assert_ptr_nonnull(memmem(crash->rows.data, crash->rows.len, "\0\0\0\4kept", 8));
    ck_assert_uint_eq(b.dead_ingest, 1);
    ck_assert_uint_eq(b.dead_encode, 1);
    ck_assert(buf_has(&b.dead, "\tcrash_report\tingest\tuser_id: expected integer\t"));
    ck_assert(buf_has(&b.dead, "\tno_such_type\tload\tunknown event type\t"));
    ldr_batch_free(&b);
    tl_teardown(&e);
}
END_TEST

/*
 * A dead letter whose text the database cannot hold (a LATIN1 database, an ingest error
 * naming characters LATIN1 lacks) is stored reduced to ASCII; the batch and the queue behind
 * it load instead of retrying for ever.
 */
START_TEST(test_dead_letter_refused_text_reduced)
{
    struct tl_env e;
    struct ldr_options o;
    struct ldr *l = NULL;
    struct ldr_run_stats st;
    char db[64];
    char *conninfo = NULL;
    char sql[512];
    PGconn *check;
    PGresult *r;

    tl_setup(&e, "latin1");
    snprintf(db, sizeof(db), "dp_latin1_%d", (int)getpid());
    tl_exec(&e,
            "CREATE DATABASE %s ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' "
            "TEMPLATE template0",
            db);
    ck_assert(asprintf(&conninfo, "%s dbname=%s", t_pg_conninfo(), db) > 0);
    tl_append(&e, "crash_report", "{\"user_id\": 1, \"timestamp\": 2, \"message\": \"a\"}", 0, NULL,
              0, NULL);
    tl_append(&e, "crash_report", "{\"x\": \"\xe2\x82\xac\"}", QUEUE_F_REJECTED,
              "unknown field \"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"", 0, NULL);
    tl_append(&e, "crash_report", "{\"user_id\": 2, \"timestamp\": 3, \"message\": \"b\"}", 0, NULL,
              0, NULL);
    o = tl_options(&e, 1, 100);
    o.conninfo = conninfo;
    o.give_up_attempts = 3;
    ck_assert_int_eq(ldr_create(&l, e.q, &o), 0);
    ck_assert_int_eq(ldr_start(l), 0);
    ck_assert_int_eq(ldr_run(l, &st), 0);
    ldr_destroy(l);
    ck_assert_uint_eq(tl_queued(&e), 0);
    ck_assert_uint_eq(st.dead_letters, 1);

    check = PQconnectdb(conninfo);
    ck_assert_msg(PQstatus(check) == CONNECTION_OK, "%s", PQerrorMessage(check));
    snprintf(sql, sizeof(sql),
             "SELECT (SELECT count(*) FROM %s.crash_report) || '|' || "
             "(SELECT string_agg(stage || '|' || error || '|' || encode(raw, 'hex'), ',') "
             "FROM %s.dead_letter)",
             e.schema, e.schema);
    r = PQexec(check, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQerrorMessage(check));
    ck_assert_str_eq(PQgetvalue(r, 0, 0),
                     "2|ingest|unknown field \"caf\\u00e9 \\u20ac "
                     "\\U0001f600\" [reduced to ASCII: the database refused the text]|"
                     "7b2278223a2022e282ac227d");
    PQclear(r);
    PQfinish(check);
    tl_exec(&e, "DROP DATABASE %s WITH (FORCE)", db);
    free(conninfo);
    tl_teardown(&e);
}
END_TEST

/* An event too big for a dead_letter row is kept truncated, with a note saying so. */
START_TEST(test_dead_letter_raw_truncated)
{
    struct tl_env e;
    struct ldr_batch b;
    struct ev_buf reduced = {0};
    char big[1001];
    uint64_t first;

    tl_setup(&e, "deadtrunc");
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    first = tl_append(&e, "crash_report", big, QUEUE_F_REJECTED, "line 1 column 1: bad", 0, NULL);
    ck_assert_int_eq(ldr_batch_init(&b, e.queue_id), 0);
    ck_assert_uint_eq(b.dead_raw_max, LDR_DEAD_RAW_MAX_BYTES);
    b.dead_raw_max = 4;
    ck_assert_int_eq(ldr_batch_read(&b, e.q, first, first, 10, 0), 0);
    ck_assert_int_eq(ldr_batch_build(&b), 0);
    ck_assert(buf_has(&b.dead, "\tingest\tline 1 column 1: bad [raw truncated: first 4 of 1000 "
                               "bytes kept]\t\\\\x61616161\t"));
    /* The ASCII reduction: only the error column gets the note; characters become escapes. */
    static const char rows[] = "q\tt\tload\tcaf\xc3\xa9 \xf0\x9f\x98\x80\t\\\\x00\tT\n"
                               "q\t\\N\tingest\tx\t\\\\x01\tT\n";
    ck_assert_int_eq(ldr_dead_reduce(&reduced, rows, sizeof(rows) - 1), 0);
    ck_assert_int_eq(ev_buf_put(&reduced, "", 1), 0);
    ck_assert_str_eq(reduced.data,
                     "q\tt\tload\tcaf\\\\u00e9 \\\\U0001f600 [reduced to ASCII: the database "
                     "refused the text]\t\\\\x00\tT\n"
                     "q\t\\N\tingest\tx [reduced to ASCII: the database refused the text]\t"
                     "\\\\x01\tT\n");
    ev_buf_free(&reduced);
    ldr_batch_free(&b);
    tl_teardown(&e);
}
END_TEST

/* ---- exactly once through failures ---------------------------------------------------- */

struct fault_plan {
    enum ldr_fault_point point;
    atomic_int calls;
    int fail_at[4]; /* 1-based call numbers that fail; 0 ends */
};

static int
fault_hook(void *arg, enum ldr_fault_point point, uint64_t first, uint64_t last)
{
    struct fault_plan *p = arg;
    int n;

    (void)first;
    (void)last;
    if (point != p->point) {
        return 0;
    }
    n = atomic_fetch_add(&p->calls, 1) + 1;
    for (int i = 0; i < 4 && p->fail_at[i] != 0; i++) {
        if (p->fail_at[i] == n) {
            return DP_ERR_RETRY;
        }
    }
    return 0;
}

/* Load 20,000 crash reports through plan's faults; every one must land exactly once. */
static void
check_exactly_once(const char *name, struct fault_plan *plan, int workers)
{
    struct ldr_fault_ops ops = {.hook = fault_hook, .arg = plan};
    struct ldr_run_stats st;
    struct tl_env e;
    char text[64];

    tl_setup(&e, name);
    tl_append_gen(&e, "crash_report", 20000, gen_crash, NULL);
    load_all(&e, workers, 1000, &ops, &st);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM crash_report"), 20000);
    ck_assert_int_eq(tl_int(&e, "SELECT count(DISTINCT user_id) FROM crash_report"), 20000);
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_LOADED_PREFIX "crash_report"), 20000);
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_BATCHES), 20);
    ck_assert_uint_ge(st.retries, 2);
    ck_assert_int_ge(tl_meta(&e, QUEUE_META_LOADER_RETRIES), 2);
    /* The run succeeded in the end: no current error, but the time of the last one. */
    ck_assert_int_eq(queue_meta_get_str(e.q, QUEUE_META_LOADER_LAST_ERROR, text, sizeof(text)), 0);
    ck_assert_str_eq(text, "");
    ck_assert_int_gt(tl_meta(&e, QUEUE_META_LOADER_LAST_ERROR_US), 0);
    /* Compacted: the newest batch's row, and one row merging every batch before it; the
     * two cover 1..20000 without a gap (a restored backup's events are found in them). */
    ck_assert_int_eq(
        tl_int(&e, "SELECT count(*) FROM loader_batches WHERE queue_id = '%s'", e.queue_id), 2);
    ck_assert_int_eq(
        tl_int(&e, "SELECT min(first_seq) FROM loader_batches WHERE queue_id = '%s'", e.queue_id),
        1);
    ck_assert_int_eq(
        tl_int(&e, "SELECT max(last_seq) FROM loader_batches WHERE queue_id = '%s'", e.queue_id),
        20000);
    ck_assert_int_eq(tl_int(&e,
                            "SELECT sum(last_seq - first_seq + 1) FROM loader_batches "
                            "WHERE queue_id = '%s'",
                            e.queue_id),
                     20000);
    ck_assert_int_eq(
        tl_int(&e, "SELECT sum(rows) FROM loader_batches WHERE queue_id = '%s'", e.queue_id),
        20000);
    tl_teardown(&e);
}

START_TEST(test_connection_dropped_mid_copy)
{
    struct fault_plan plan = {.point = LDR_FAULT_COPY, .fail_at = {2, 5, 6}};

    check_exactly_once("midcopy", &plan, 2);
}
END_TEST

START_TEST(test_commit_answer_lost)
{
    /* COMMIT succeeded but its answer never came: the loader must ask loader_batches. */
    struct fault_plan plan = {.point = LDR_FAULT_COMMITTED, .fail_at = {1, 4, 9}};

    check_exactly_once("lostcommit", &plan, 2);
}
END_TEST

/* crash_hook's plan: SIGKILL right after the kill_at'th batch COMMIT. */
struct crash_plan {
    atomic_int commits;
    int kill_at;
};

static int
crash_hook(void *arg, enum ldr_fault_point point, uint64_t first, uint64_t last)
{
    struct crash_plan *p = arg;

    (void)first;
    (void)last;
    if (point == LDR_FAULT_COMMITTED && atomic_fetch_add(&p->commits, 1) + 1 == p->kill_at) {
        raise(SIGKILL);
    }
    return 0;
}

/*
 * Run a loader (1 worker, batches of 1,000) in a child that is SIGKILLed right after its
 * kill_at'th batch COMMIT, before that batch's queue delete; e's queue is open again after.
 */
static void
run_killed_after_commit(struct tl_env *e, int kill_at)
{
    int status = 0;
    pid_t pid;

    queue_close(e->q);
    e->q = NULL;
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* The child: its own queue handle, never the parent's connection. */
        struct crash_plan plan = {.kill_at = kill_at};
        struct ldr_fault_ops ops = {.hook = crash_hook, .arg = &plan};
        struct ldr_options o = tl_options(e, 1, 1000);
        struct queue *q = NULL;
        struct ldr *l = NULL;

        o.fault = &ops;
        if (queue_open(&q, e->queue_path, TL_MAP_BYTES, false) != 0 || ldr_create(&l, q, &o) != 0 ||
            ldr_start(l) != 0) {
            _exit(3);
        }
        ldr_run(l, NULL);
        _exit(4);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    ck_assert_int_eq(queue_open(&e->q, e->queue_path, TL_MAP_BYTES, false), 0);
}

START_TEST(test_crash_between_commit_and_delete)
{
    struct tl_env e;
    struct ldr_run_stats st;

    tl_setup(&e, "crash");
    tl_append_gen(&e, "crash_report", 10000, gen_crash, NULL);
    run_killed_after_commit(&e, 3);
    /* Batch 3 is in PostgreSQL and still in the queue. */
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM crash_report"), 3000);
    ck_assert_uint_eq(tl_queued(&e), 8000);
    load_all(&e, 2, 1000, NULL, &st);
    ck_assert_uint_eq(st.events, 7000);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM crash_report"), 10000);
    ck_assert_int_eq(tl_int(&e, "SELECT count(DISTINCT user_id) FROM crash_report"), 10000);
    /* Recovery counted the recovered batch too. */
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_LOADED_PREFIX "crash_report"), 10000);
    tl_teardown(&e);
}
END_TEST

/* Start a loader (it creates the schema and recovers) and close it. */
static void
start_and_close(struct tl_env *e)
{
    ldr_destroy(open_loader(e, 1, 1000, NULL));
}

/*
 * One batch of every outcome: 6 rows that load, a row the table refuses, a key another
 * appliance loaded with the same bytes (a repeat: skipped), one it loaded with other bytes
 * (a conflict: dead-lettered) and a fresh key (loads).
 */
static void
outcome_batch(struct tl_env *e)
{
    static const char same[] = "{\"user_id\": 20, \"timestamp\": 1700000000, \"message\": \"s\"}";
    char json[128];

    tl_exec(e, "ALTER TABLE crash_report ADD CONSTRAINT poison CHECK (user_id <> 666)");
    tl_exec(e,
            "INSERT INTO crash_report (id, event_name, user_id, event_time, message, received_at, "
            "idempotency_key, idempotency_digest) VALUES "
            "(gen_random_uuid(), 'crash_report', 20, now(), 'other', now(), 'dup', "
            "sha256(convert_to('%s', 'UTF8'))), "
            "(gen_random_uuid(), 'crash_report', 21, now(), 'other', now(), 'clash', "
            "sha256('x'))",
            same);
    for (int i = 0; i < 6; i++) {
        gen_crash((uint64_t)i, json, sizeof(json));
        tl_append_key(e, "crash_report", json, NULL, 0);
    }
    tl_append_key(e, "crash_report",
                  "{\"user_id\": 666, \"timestamp\": 1700000000, \"message\": \"p\"}", NULL, 0);
    tl_append_key(e, "crash_report", same, "dup", 0);
    tl_append_key(e, "crash_report",
                  "{\"user_id\": 21, \"timestamp\": 1700000000, \"message\": \"c\"}", "clash", 0);
    tl_append_key(e, "crash_report",
                  "{\"user_id\": 22, \"timestamp\": 1700000000, \"message\": \"f\"}", "fresh", 0);
}

/* The figures of outcome_batch's batch, however its commit was learnt of. */
static void
check_outcome_figures(struct tl_env *e)
{
    struct queue_stats qs;

    ck_assert_uint_eq(tl_queued(e), 0);
    ck_assert_int_eq(tl_int(e, "SELECT count(*) FROM crash_report"), 9);
    ck_assert_int_eq(tl_int(e, "SELECT count(*) FROM dead_letter WHERE stage = 'load'"), 2);
    ck_assert_int_eq(tl_meta(e, QUEUE_META_LOADER_LOADED_PREFIX "crash_report"), 7);
    ck_assert_int_eq(tl_meta(e, QUEUE_META_LOADER_DUPLICATES_PREFIX "crash_report"), 1);
    ck_assert_int_eq(tl_meta(e, QUEUE_META_LOADER_KEY_CONFLICTS_PREFIX "crash_report"), 1);
    ck_assert_int_eq(tl_meta(e, QUEUE_META_LOADER_DEAD_LETTERS), 2);
    ck_assert_int_eq(tl_meta(e, QUEUE_META_LOADER_DEAD_LOAD), 2);
    ck_assert_int_eq(tl_meta(e, QUEUE_META_LOADER_BATCHES), 1);
    ck_assert_int_eq(queue_stats(e->q, &qs), 0);
    ck_assert_uint_eq(qs.loaded, 8); /* loaded and repeats */
    ck_assert_uint_eq(qs.dead_lettered, 2);
}

/*
 * Killed between the COMMIT of a batch with dead letters, a repeat and a conflict, and its
 * queue delete: recovery must count what the batch did (loader_batches records it), not
 * call every event of it loaded.
 */
START_TEST(test_recovery_counts_what_the_batch_did)
{
    struct ldr_run_stats st;
    struct tl_env e;

    tl_setup(&e, "recount");
    start_and_close(&e);
    outcome_batch(&e);
    run_killed_after_commit(&e, 1);
    ck_assert_uint_eq(tl_queued(&e), 10);
    load_all(&e, 1, 1000, NULL, &st);
    ck_assert_uint_eq(st.events, 0);
    check_outcome_figures(&e);
    tl_teardown(&e);
}
END_TEST

/* The same batch whose COMMIT answer was lost: the retry learns of the commit and its figures. */
START_TEST(test_lost_commit_counts_what_the_batch_did)
{
    struct fault_plan plan = {.point = LDR_FAULT_COMMITTED, .fail_at = {1}};
    struct ldr_fault_ops ops = {.hook = fault_hook, .arg = &plan};
    struct ldr_run_stats st;
    struct tl_env e;

    tl_setup(&e, "lostcount");
    start_and_close(&e);
    outcome_batch(&e);
    load_all(&e, 1, 1000, &ops, &st);
    ck_assert_uint_eq(st.events, 10);
    ck_assert_uint_eq(st.loaded, 7);
    ck_assert_uint_eq(st.dead_letters, 2);
    check_outcome_figures(&e);
    tl_teardown(&e);
}
END_TEST

struct schema_probe {
    struct tl_env *e;
    int rc;   /* ldr_pg_ensure_schema's, from a second connection */
    int runs; /* hook calls at LDR_FAULT_COMMIT */
};

/* At the first batch's COMMIT: set the schema up from another connection (a worker that
 * just reconnected, another appliance's loader) that waits at most 2 s for a lock. */
static int
schema_probe_hook(void *arg, enum ldr_fault_point point, uint64_t first, uint64_t last)
{
    struct schema_probe *p = arg;
    struct ldr_pg *pg = NULL;
    char conninfo[1024];
    char err[256];

    (void)first;
    (void)last;
    if (point != LDR_FAULT_COMMIT || p->runs++ > 0) {
        return 0;
    }
    snprintf(conninfo, sizeof(conninfo), "%s options='-c lock_timeout=2000'", t_pg_conninfo());
    p->rc = ldr_pg_connect(&pg, conninfo, p->e->schema, p->e->queue_id, "", err, sizeof(err));
    if (p->rc == 0) {
        p->rc = ldr_pg_ensure_schema(pg, p->e->schema);
    }
    ldr_pg_close(pg);
    return 0;
}

/*
 * Setting up a schema that is already there takes no lock a batch in flight holds: every
 * worker does it when it connects, beside the other workers' batches, and a lock taken
 * there made the two wait on each other (deadlock detected, again and again).
 */
START_TEST(test_schema_setup_beside_a_batch)
{
    struct schema_probe probe = {.rc = -1};
    struct ldr_fault_ops ops = {.hook = schema_probe_hook, .arg = &probe};
    struct ldr_run_stats st;
    struct tl_env e;
    char json[128];

    probe.e = &e;
    tl_setup(&e, "ddlbeside");
    start_and_close(&e);
    for (int i = 0; i < 4; i++) {
        gen_crash((uint64_t)i, json, sizeof(json));
        tl_append_key(&e, "crash_report", json, i % 2 == 0 ? NULL : i == 1 ? "k1" : "k3", 0);
    }
    tl_append(&e, "crash_report", "{\"user_id\": true}", QUEUE_F_REJECTED,
              "user_id: expected integer, got boolean", 0, NULL);
    load_all(&e, 1, 1000, &ops, &st);
    ck_assert_int_eq(probe.runs, 1);
    ck_assert_int_eq(probe.rc, 0);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM crash_report"), 4);
    tl_teardown(&e);
}
END_TEST

START_TEST(test_lease_fences_earlier_loader)
{
    /*
     * Loader a stands for a loader of this queue that b, started later, replaced: b's start
     * took the lease, so a loads and deletes nothing more and says who holds the lease;
     * nothing terminated a's connection.
     */
    struct tl_env e;
    struct ldr *a;
    struct ldr *b;
    struct ldr_run_stats st;
    char why[LDR_ERR_MAX * 2];

    tl_setup(&e, "fence");
    a = open_loader(&e, 1, 100, NULL);
    b = open_loader(&e, 1, 100, NULL);
    tl_append_gen(&e, "crash_report", 100, gen_crash, NULL);
    ck_assert_int_eq(ldr_run(a, &st), DP_ERR_CONFIG);
    ck_assert_uint_eq(st.loaded, 0);
    ck_assert(ldr_refused(a, why, sizeof(why)));
    ck_assert_msg(strstr(why, "fenced: a newer loader of queue.id") != NULL, "why: %s", why);
    ck_assert_msg(strstr(why, " pid ") != NULL && strstr(why, " since ") != NULL &&
                      strstr(why, "(epoch 2)") != NULL,
                  "why: %s", why);
    ck_assert_uint_eq(tl_queued(&e), 100);
    ck_assert_int_eq(ldr_run(b, &st), 0);
    ck_assert_uint_eq(st.loaded, 100);
    ldr_destroy(a);
    ldr_destroy(b);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM crash_report"), 100);
    ck_assert_int_eq(tl_int(&e, "SELECT epoch FROM queue_owners"), 2);
    tl_teardown(&e);
}
END_TEST

/* ---- runs: workers, memory bound, stop, give up --------------------------------------- */

START_TEST(test_batches_bounded_by_bytes)
{
    /* 24 events of ~1.6 MB each: 38 MB, more than one batch may hold (LDR_BATCH_MAX_BYTES). */
    struct tl_env e;
    struct ldr_run_stats st;
    struct queue_event ev;
    char *json = malloc(2u << 20);
    size_t n = 0;

    ck_assert_ptr_nonnull(json);
    n += (size_t)sprintf(json, "{\"time_stamp\": \"2024-01-01T00:00:00Z\", \"data\": [");
    for (int k = 0; k < 160000; k++) {
        n += (size_t)sprintf(json + n, "%s%d.5", k > 0 ? "," : "", 1000000 + k);
    }
    n += (size_t)sprintf(json + n, "]}");
    tl_setup(&e, "bytes");
    for (int i = 0; i < 24; i++) {
        memset(&ev, 0, sizeof(ev));
        ev_uuid7(ev.uuid);
        ev.received_us = tl_now_us();
        ev.type = "data_sample";
        ev.type_len = strlen(ev.type);
        ev.json = json;
        ev.json_len = n;
        ck_assert_int_eq(queue_append(e.q, &ev, 1), 0);
    }
    load_all(&e, 1, 1000, NULL, &st);
    ck_assert_uint_eq(st.loaded, 24);
    ck_assert_uint_ge(st.batches, (24 * n) / LDR_BATCH_MAX_BYTES + 1);
    ck_assert_int_eq(tl_int(&e,
                            "SELECT count(*) FROM data_sample WHERE n = 160000 AND "
                            "octet_length(raw::text) = %zu",
                            n),
                     24);
    free(json);
    tl_teardown(&e);
}
END_TEST

START_TEST(test_unreachable_gives_up_or_stops)
{
    struct tl_env e;
    struct ldr_options o;
    struct ldr *l = NULL;
    char text[LDR_ERR_MAX];

    tl_setup(&e, "unreach");
    o = tl_options(&e, 1, 100);
    o.conninfo = "host=/nonexistent-datapipe-socket-dir port=1 connect_timeout=2";
    o.give_up_attempts = 3;
    ck_assert_int_eq(ldr_create(&l, e.q, &o), 0);
    ck_assert_int_eq(ldr_start(l), DP_ERR_RETRY);
    ldr_stop(l);
    ck_assert_int_eq(ldr_start(l), DP_ERR_CLOSED);
    ck_assert_int_eq(ldr_run(l, NULL), DP_ERR_CLOSED);
    ldr_destroy(l);
    /* Three failures, the last given up on: two retries. */
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_ERRORS), 3);
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_RETRIES), 2);
    /* /v1/status shows the error's class, never the connection's details. */
    ck_assert_int_eq(queue_meta_get_str(e.q, QUEUE_META_LOADER_LAST_ERROR, text, sizeof(text)), 0);
    ck_assert_str_eq(text, "connection: cannot reach PostgreSQL or lost the connection (details "
                           "in the loader's log)");
    /* A conninfo libpq cannot parse is refused at once. */
    o.conninfo = "host=x bogus_option=1";
    ck_assert_int_eq(ldr_create(&l, e.q, &o), DP_ERR_INVALID);
    tl_teardown(&e);
}
END_TEST

/* What /v1/status may show of a failure: its class, no host, address, port or user. */
START_TEST(test_error_public)
{
    static const char *const conn[] = {
        "connection to server at \"db.internal.example\" (10.1.2.3), port 5432 failed: FATAL: "
        "password authentication failed for user \"loader\"",
        "could not translate host name \"db.internal.example\" to address: Name or service "
        "not known",
        "connection to server on socket \"/run/postgresql/.s.PGSQL.5432\" failed: No such file "
        "or directory",
        "FATAL: role \"loader\" does not exist",
        "server closed the connection unexpectedly",
    };
    char out[LDR_ERR_MAX];

    for (size_t i = 0; i < sizeof(conn) / sizeof(conn[0]); i++) {
        ldr_error_public("batch", conn[i], out, sizeof(out));
        ck_assert_str_eq(out, "connection: cannot reach PostgreSQL or lost the connection "
                              "(details in the loader's log)");
    }
    /* A certificate refused under sslmode=verify-full: said so, not "cannot reach". */
    static const char *const tls[] = {
        "connection to server at \"db.internal.example\" (10.1.2.3), port 5432 failed: SSL "
        "error: certificate verify failed",
        "connection to server at \"10.1.2.3\", port 5432 failed: server certificate for "
        "\"db.internal.example\" does not match host name \"db2.internal.example\"",
        "connection to server at \"db.internal.example\" (10.1.2.3), port 5432 failed: root "
        "certificate file \"/home/dp/.postgresql/root.crt\" does not exist Either provide the "
        "file or change sslmode to disable server certificate verification.",
    };
    for (size_t i = 0; i < sizeof(tls) / sizeof(tls[0]); i++) {
        ldr_error_public("start", tls[i], out, sizeof(out));
        ck_assert_str_eq(out, "connection: PostgreSQL's TLS certificate could not be verified: "
                              "check sslrootcert and the host name (details in the loader's "
                              "log)");
    }
    /* A TLS session lost midway is a lost connection, not a certificate. */
    ldr_error_public("batch", "SSL SYSCALL error: EOF detected", out, sizeof(out));
    ck_assert_str_eq(out, "connection: cannot reach PostgreSQL or lost the connection "
                          "(details in the loader's log)");
    ldr_error_public("batch", "relation \"crash_report\" does not exist", out, sizeof(out));
    ck_assert_str_eq(out, "database: relation \"crash_report\" does not exist");
    ldr_error_public("queue delete", "I/O error", out, sizeof(out));
    ck_assert_str_eq(out, "queue: I/O error");
}
END_TEST

START_TEST(test_run_figures)
{
    struct tl_env e;
    char text[64];

    tl_setup(&e, "figures");
    tl_append_gen(&e, "crash_report", 2500, gen_crash, NULL);
    tl_append(&e, "crash_report", "{}", QUEUE_F_REJECTED, "event: empty", 0, NULL);
    load_all(&e, 2, 1000, NULL, NULL);
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_LAST_RUN_EVENTS), 2501);
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_BATCHES), 3);
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_DEAD_LETTERS), 1);
    ck_assert_int_gt(tl_meta(&e, QUEUE_META_LOADER_LAST_RUN_END_US),
                     tl_meta(&e, QUEUE_META_LOADER_LAST_RUN_US));
    ck_assert_int_gt(tl_meta(&e, QUEUE_META_LOADER_STARTED_US), 0);
    ck_assert_int_eq(queue_meta_get_str(e.q, QUEUE_META_LOADER_LAST_RUN_RESULT, text, sizeof(text)),
                     0);
    ck_assert_str_eq(text, "ok");
    /* An empty run is still a run. */
    load_all(&e, 2, 1000, NULL, NULL);
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_LAST_RUN_EVENTS), 0);
    ck_assert_int_eq(tl_meta(&e, QUEUE_META_LOADER_BATCHES), 3);
    tl_teardown(&e);
}
END_TEST

/* ---- queue identity ------------------------------------------------------------------ */

/* Reopen e's queue (after queue_test_forget_instance: as a queue from before instance ids). */
static void
reopen(struct tl_env *e)
{
    queue_close(e->q);
    e->q = NULL;
    ck_assert_int_eq(queue_open(&e->q, e->queue_path, TL_MAP_BYTES, false), 0);
}

/* A loader on e that must refuse at start: DP_ERR_CONFIG, recorded for /v1/status. */
static void
expect_refused(struct tl_env *e, const char *needle)
{
    struct ldr_options o = tl_options(e, 1, 5);
    struct ldr *l = NULL;
    char why[1024];
    uint64_t before = tl_queued(e);

    ck_assert_int_eq(ldr_create(&l, e->q, &o), 0);
    ck_assert_int_eq(ldr_start(l), DP_ERR_CONFIG);
    ck_assert(ldr_refused(l, why, sizeof(why)));
    ck_assert_msg(strstr(why, needle) != NULL, "[%s] not in [%s]", needle, why);
    ck_assert_ptr_nonnull(strstr(why, "datapipe-loader --adopt-queue"));
    ck_assert_int_eq(ldr_run(l, NULL), DP_ERR_CONFIG);
    ldr_destroy(l);
    ck_assert_uint_eq(tl_queued(e), before);
    ck_assert_int_eq(queue_meta_get_str(e->q, QUEUE_META_LOADER_REFUSED, why, sizeof(why)), 0);
    ck_assert_msg(strstr(why, needle) != NULL, "[%s] not in [%s]", needle, why);
}

START_TEST(test_owner_claim_rules)
{
    struct tl_env e;
    struct ldr_run_stats st;
    char *owner;
    char why[8];

    tl_setup(&e, "owner");
    /* First start: no owner, no rows: claimed. */
    tl_append_gen(&e, "crash_report", 10, gen_crash, NULL);
    load_all(&e, 1, 5, NULL, &st);
    owner = tl_str(&e, "SELECT instance_id FROM queue_owners WHERE queue_id = '%s'", e.queue_id);
    ck_assert_str_eq(owner, queue_instance(e.q, NULL));
    free(owner);

    /* An upgrade: the queue and PostgreSQL from before owners were recorded. The rows can be
     * its own (its counter is past them): claimed, loaded. */
    tl_exec(&e, "DELETE FROM queue_owners");
    ck_assert_int_eq(queue_test_forget_instance(e.q), 0);
    reopen(&e);
    tl_append_gen(&e, "crash_report", 5, gen_crash, NULL);
    load_all(&e, 1, 5, NULL, &st);
    ck_assert_uint_eq(st.loaded, 5);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM crash_report"), 15);
    owner = tl_str(&e, "SELECT instance_id FROM queue_owners WHERE queue_id = '%s'", e.queue_id);
    ck_assert_str_eq(owner, queue_instance(e.q, NULL));
    free(owner);
    ck_assert_int_eq(queue_meta_get_str(e.q, QUEUE_META_LOADER_REFUSED, why, sizeof(why)), 0);
    ck_assert_str_eq(why, "");

    /* A queue from before instance ids that is behind the recorded rows: not its own. */
    tl_exec(&e, "DELETE FROM queue_owners");
    reopen(&e);
    t_rmtree(e.queue_path);
    reopen(&e);
    tl_append_gen(&e, "crash_report", 3, gen_crash, NULL);
    ck_assert_int_eq(queue_test_forget_instance(e.q), 0);
    reopen(&e);
    expect_refused(&e, "has handed out numbers below 4 only");

    /* A queue created with its id meets rows without an owner: another queue's, even when
     * its counter is past them. */
    t_rmtree(e.queue_path);
    reopen(&e);
    tl_append_gen(&e, "crash_report", 20, gen_crash, NULL);
    expect_refused(&e, "was created since");
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM queue_owners"), 0);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM crash_report"), 15);
    tl_teardown(&e);
}
END_TEST

/* Fault hook: after the first batch committed, another instance adopts queue.id. */
static int
adopt_hook(void *arg, enum ldr_fault_point point, uint64_t first, uint64_t last)
{
    struct tl_env *e = arg;

    (void)last;
    if (point == LDR_FAULT_COMMITTED && first == 1) {
        tl_exec(e, "UPDATE queue_owners SET instance_id = 'someone-else'");
    }
    return 0;
}

START_TEST(test_owner_checked_in_every_batch)
{
    struct tl_env e;
    struct ldr_fault_ops ops = {.hook = adopt_hook, .arg = &e};
    struct ldr_run_stats st;
    struct ldr *l;
    char why[1024];

    tl_setup(&e, "ownbatch");
    tl_append_gen(&e, "crash_report", 15, gen_crash, NULL);
    l = open_loader(&e, 1, 5, &ops);
    /* The run began as the owner; the second batch's transaction finds it is not any more:
     * the first batch (committed while it was) is deleted, nothing after it. */
    ck_assert_int_eq(ldr_run(l, &st), DP_ERR_CONFIG);
    ck_assert(ldr_refused(l, why, sizeof(why)));
    ck_assert_ptr_nonnull(strstr(why, "owned by queue instance someone-else"));
    ldr_destroy(l);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM crash_report"), 5);
    ck_assert_uint_eq(tl_queued(&e), 10);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM loader_batches"), 1);
    tl_teardown(&e);
}
END_TEST

START_TEST(test_adopt)
{
    struct tl_env e;
    struct ldr_options o;
    struct ldr *l = NULL;
    struct ldr_run_stats st;
    char *old_instance;
    char *moved_to = NULL;

    tl_setup(&e, "adopt");
    tl_append_gen(&e, "crash_report", 12, gen_crash, NULL);
    load_all(&e, 1, 5, NULL, &st);
    old_instance = strdup(queue_instance(e.q, NULL));
    /* The queue directory replaced: 20 new events, past the old 12. */
    t_rmtree(e.queue_path);
    reopen(&e);
    tl_append_gen(&e, "crash_report", 20, gen_crash, NULL);
    expect_refused(&e, old_instance);
    o = tl_options(&e, 1, 5);
    ck_assert_int_eq(ldr_create(&l, e.q, &o), 0);
    ck_assert_int_eq(ldr_adopt(l), 0);
    ck_assert(!ldr_refused(l, NULL, 0));
    ck_assert_int_eq(ldr_adopt(l), 0); /* the owner already: no change */
    ldr_destroy(l);
    ck_assert_int_eq(
        tl_int(&e, "SELECT count(*) FROM loader_batches WHERE queue_id = '%s'", e.queue_id), 0);
    ck_assert(asprintf(&moved_to, "%s@%s", e.queue_id, old_instance) > 0);
    ck_assert_int_eq(
        tl_int(&e, "SELECT max(last_seq) FROM loader_batches WHERE queue_id = '%s'", moved_to), 12);
    ck_assert_int_eq(tl_int(&e,
                            "SELECT count(*) FROM queue_owners WHERE queue_id = '%s' AND "
                            "instance_id = '%s' AND previous_instance_id = '%s'",
                            e.queue_id, queue_instance(e.q, NULL), old_instance),
                     1);
    load_all(&e, 1, 5, NULL, &st);
    ck_assert_uint_eq(st.loaded, 20);
    ck_assert_int_eq(tl_int(&e, "SELECT count(DISTINCT id) FROM crash_report"), 32);
    free(moved_to);
    free(old_instance);
    tl_teardown(&e);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("loader");
    TCase *pure = tcase_create("rules");
    TCase *types = tcase_create("types");
    TCase *dead = tcase_create("dead_letters");
    TCase *once = tcase_create("exactly_once");
    TCase *runs = tcase_create("runs");
    TCase *identity = tcase_create("identity");
    SRunner *sr;
    int failed;

    dp_log_setup("warn", "text");
    tcase_add_test(pure, test_schedule_rules);
    tcase_add_test(pure, test_backoff_capped_and_jittered);
    tcase_add_test(pure, test_classify_sqlstates);
    tcase_add_test(pure, test_clean_text);
    tcase_add_test(pure, test_error_public);
    tcase_add_test(types, test_types_values);
    tcase_add_test(types, test_product_reload_changes_nothing);
    tcase_add_test(types, test_product_newest_wins);
    tcase_add_test(dead, test_dead_letters_ingest_and_encoder);
    tcase_add_test(dead, test_poison_rows_isolated);
    tcase_add_test(dead, test_batch_read_once);
    tcase_add_test(dead, test_dead_letter_refused_text_reduced);
    tcase_add_test(dead, test_dead_letter_raw_truncated);
    tcase_add_test(once, test_connection_dropped_mid_copy);
    tcase_add_test(once, test_commit_answer_lost);
    tcase_add_test(once, test_crash_between_commit_and_delete);
    tcase_add_test(once, test_lease_fences_earlier_loader);
    tcase_add_test(once, test_recovery_counts_what_the_batch_did);
    tcase_add_test(once, test_lost_commit_counts_what_the_batch_did);
    tcase_add_test(once, test_schema_setup_beside_a_batch);
    tcase_add_test(runs, test_batches_bounded_by_bytes);
    tcase_add_test(runs, test_unreachable_gives_up_or_stops);
    tcase_add_test(runs, test_run_figures);
    tcase_add_test(identity, test_owner_claim_rules);
    tcase_add_test(identity, test_owner_checked_in_every_batch);
    tcase_add_test(identity, test_adopt);
    tcase_set_timeout(types, 60);
    tcase_set_timeout(dead, 60);
    tcase_set_timeout(once, 120);
    tcase_set_timeout(runs, 120);
    tcase_set_timeout(identity, 60);
    suite_add_tcase(s, pure);
    suite_add_tcase(s, types);
    suite_add_tcase(s, dead);
    suite_add_tcase(s, once);
    suite_add_tcase(s, runs);
    suite_add_tcase(s, identity);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
