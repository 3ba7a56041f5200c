/*
 * check_retention.c - retention by partition against a real PostgreSQL: rows placed by day of
 * received_at, exactly the expired partitions dropped (and their keys), a keyed repeat that
 * crosses a partition boundary loaded once, loading while partitions are dropped losing
 * nothing. Run inside tests/pg.
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "etc/config.h"
#include "etc/decl.h"
#include "etc/err.h"
#include "etc/log.h"
#include "etc/retention.h"
#include "events/events.h"
#include "loader/internal.h"
#include "tests/lib/lib_loader.h"
#include "tests/lib/lib_test.h"

#define DAY_US (86400LL * 1000000LL)

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

static void
append_keyed(struct tl_env *e, const char *json, const char *key, int64_t received_us)
{
    tl_append_key(e, "crash_report", json, key, received_us);
}

static struct ldr *
open_loader(struct tl_env *e, const struct dp_retention *r, int workers, int batch_rows)
{
    struct ldr_options o = tl_options(e, workers, batch_rows);
    struct ldr *l = NULL;

    o.retention = r;
    ck_assert_int_eq(ldr_create(&l, e->q, &o), 0);
    ck_assert_int_eq(ldr_start(l), 0);
    return l;
}

/* The 16 hex digits every derived name of crash_report ends with. */
static void
crash_hash(char out[DP_TYPE_NAME_MAX + 1])
{
    dp_pg_derived_name(out, "", "crash_report");
}

/* Append json of crash_report rejected at ingest (stage ingest) with key and error. */
static void
append_rejected(struct tl_env *e, const char *json, const char *key, const char *error,
                int64_t received_us)
{
    struct queue_event ev;

    memset(&ev, 0, sizeof(ev));
    ev_uuid7(ev.uuid);
    ev.received_us = received_us;
    ev.type = "crash_report";
    ev.type_len = strlen(ev.type);
    ev.json = json;
    ev.json_len = strlen(json);
    ev.flags = QUEUE_F_REJECTED;
    ev.error = error;
    ev.error_len = strlen(error);
    ev.key = key;
    ev.key_len = strlen(key);
    ev_digest(json, ev.json_len, ev.digest);
    ck_assert_int_eq(queue_append(e->q, &ev, 1), 0);
}

/* Open a second appliance's queue (a queue.id of its own) on e's schema. */
static void
second_queue(struct tl_env *e)
{
    char *path = NULL;

    queue_close(e->q);
    ck_assert(asprintf(&path, "%s/queue2", e->dir) > 0);
    ck_assert_int_eq(queue_open(&e->q, path, TL_MAP_BYTES, false), 0);
    strcat(e->queue_id, "_b");
    free(path);
}

/* datapipe-loader --replay-dead-letters with e's configuration; its exit status. */
static int
replay(struct tl_env *e)
{
    struct dp_config_sources src = {NULL, NULL, NULL};
    struct dp_cli cli = {.replay_dead_letters = true};
    struct dp_config *cfg = NULL;
    char *errors = NULL;
    char *path = tl_config_file(e, 1, 100);
    int rc;

    src.cli_path = path;
    ck_assert_msg(dp_config_load(&src, &cfg, &errors) == 0, "%s", errors);
    rc = ldr_replay_main(&cli, cfg);
    dp_config_destroy(cfg);
    free(path);
    return rc;
}

static const char crash_json[] = "{\"user_id\": 7, \"timestamp\": 1700000000, \"message\": \"m\"}";

/*
 * Rows of six days (today and the five before) land in their day's partition; with keep_days 3
 * the next run drops exactly the two partitions that ended three days or more ago, their rows
 * and their keys, and counts them in the queue's metadata.
 */
START_TEST(test_days_placed_and_expired_dropped)
{
    struct dp_retention_rule rule = {"crash_report", 3};
    struct dp_retention r = {&rule, 1};
    struct ldr_run_stats st;
    char hash[DP_TYPE_NAME_MAX + 1];
    char key[16];
    int64_t now = tl_now_us();
    struct tl_env e;
    struct ldr *l;

    tl_setup(&e, "days");
    crash_hash(hash);
    for (int k = 5; k >= 0; k--) {
        snprintf(key, sizeof(key), "d%d", k);
        append_keyed(&e, crash_json, key, now - k * DAY_US);
    }
    append_keyed(&e, crash_json, NULL, now - 4 * DAY_US);
    l = open_loader(&e, &r, 1, 100);
    ck_assert_int_eq(ldr_run(l, &st), 0);
    ck_assert_uint_eq(st.loaded, 7);
    ck_assert_int_eq(tl_int(&e,
                            "SELECT count(*) FROM pg_class WHERE relname = 'crash_report' "
                            "AND relnamespace = '%s'::regnamespace AND relkind = 'p'",
                            e.schema),
                     1);
    /* Every row in the partition named after its own day; days -5 to tomorrow exist. */
    ck_assert_int_eq(tl_int(&e,
                            "SELECT count(*) FROM crash_report WHERE tableoid::regclass::text"
                            " = 'dp_p' || to_char(received_at AT TIME ZONE 'UTC', "
                            "'YYYYMMDD') || '_%s'",
                            hash),
                     7);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM pg_inherits WHERE inhparent = "
                                "'crash_report'::regclass"),
                     7);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM \"dp_keys_%s\"", hash), 6);
    ck_assert_int_eq(tl_meta(&e, "loader.partitions_dropped.crash_report"), 0);

    /* The next run's pass: days -5 and -4 ended at least three days ago, day -3 did not. */
    ck_assert_int_eq(ldr_run(l, &st), 0);
    ldr_destroy(l);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM crash_report"), 4);
    ck_assert_int_eq(tl_int(&e,
                            "SELECT count(*) FROM crash_report WHERE received_at < "
                            "to_timestamp(%lld / 1e6)",
                            (long long)(now - 3 * DAY_US)),
                     0);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM pg_inherits WHERE inhparent = "
                                "'crash_report'::regclass"),
                     5);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM \"dp_keys_%s\"", hash), 4);
    ck_assert_int_eq(tl_int(&e,
                            "SELECT count(*) FROM \"dp_keys_%s\" WHERE idempotency_key "
                            "IN ('d4', 'd5')",
                            hash),
                     0);
    ck_assert_int_eq(tl_meta(&e, "loader.partitions_dropped.crash_report"), 2);
    ck_assert_int_eq(tl_meta(&e, "loader.rows_dropped.crash_report"), 3);
    tl_teardown(&e);
}
END_TEST

/*
 * A key loaded yesterday, repeated today by another appliance (another queue: the server's
 * window cannot see it): the repeat is skipped though today's partition would take it, and a
 * key held with other bytes is a conflict in dead_letter.
 */
START_TEST(test_keyed_repeat_across_boundary)
{
    static const char other[] = "{\"user_id\": 8, \"timestamp\": 1700000000, \"message\": \"x\"}";
    struct dp_retention_rule rule = {"crash_report", 30};
    struct dp_retention r = {&rule, 1};
    struct ldr_run_stats st;
    char *path = NULL;
    int64_t now = tl_now_us();
    struct tl_env e;
    struct ldr *l;

    tl_setup(&e, "repeat");
    append_keyed(&e, crash_json, "K", now - DAY_US);
    append_keyed(&e, crash_json, "C", now - DAY_US);
    l = open_loader(&e, &r, 1, 100);
    ck_assert_int_eq(ldr_run(l, &st), 0);
    ldr_destroy(l);

    /* The second appliance: a queue and queue.id of its own, the same schema. */
    queue_close(e.q);
    ck_assert(asprintf(&path, "%s/queue2", e.dir) > 0);
    ck_assert_int_eq(queue_open(&e.q, path, TL_MAP_BYTES, false), 0);
    strcat(e.queue_id, "_b");
    append_keyed(&e, crash_json, "K", now);
    append_keyed(&e, other, "C", now);
    append_keyed(&e, crash_json, "N", now);
    l = open_loader(&e, &r, 1, 100);
    ck_assert_int_eq(ldr_run(l, &st), 0);
    ldr_destroy(l);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM crash_report WHERE idempotency_key = 'K'"),
                     1);
    ck_assert_int_eq(tl_int(&e,
                            "SELECT count(*) FROM crash_report WHERE idempotency_key = 'K' "
                            "AND received_at < to_timestamp(%lld / 1e6)",
                            (long long)now),
                     1);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM crash_report WHERE idempotency_key = 'C'"),
                     1);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM crash_report WHERE idempotency_key = 'N'"),
                     1);
    ck_assert_int_eq(tl_meta(&e, "loader.duplicates.crash_report"), 1);
    ck_assert_int_eq(tl_meta(&e, "loader.key_conflicts.crash_report"), 1);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM dead_letter WHERE stage = 'load' AND "
                                "idempotency_key = 'C' AND error LIKE '%%with different "
                                "content%%'"),
                     1);
    free(path);
    tl_teardown(&e);
}
END_TEST

/*
 * A table that exists unpartitioned when a rule names it is left as it is: nothing converted,
 * nothing dropped, rows still load exactly once through its unique key index.
 */
START_TEST(test_unpartitioned_table_left_alone)
{
    struct dp_retention_rule rule = {"crash_report", 1};
    struct dp_retention r = {&rule, 1};
    struct ldr_run_stats st;
    int64_t now = tl_now_us();
    struct tl_env e;
    struct ldr *l;

    tl_setup(&e, "plain");
    append_keyed(&e, crash_json, "old", now - 5 * DAY_US);
    l = open_loader(&e, NULL, 1, 100);
    ck_assert_int_eq(ldr_run(l, &st), 0);
    ldr_destroy(l);
    append_keyed(&e, crash_json, "new", now);
    l = open_loader(&e, &r, 1, 100);
    ck_assert_int_eq(ldr_run(l, &st), 0);
    ck_assert_int_eq(ldr_run(l, &st), 0);
    ldr_destroy(l);
    ck_assert_int_eq(tl_int(&e,
                            "SELECT count(*) FROM pg_class WHERE relname = 'crash_report' "
                            "AND relnamespace = '%s'::regnamespace AND relkind = 'r'",
                            e.schema),
                     1);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM crash_report"), 2);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM pg_inherits WHERE inhparent = "
                                "'crash_report'::regclass"),
                     0);
    ck_assert_int_eq(tl_meta(&e, "loader.partitions_dropped.crash_report"), 0);
    tl_teardown(&e);
}
END_TEST

/*
 * A declared type's table is partitioned like a built-in's, keeps the mark that says it is
 * datapipe's (so the next start evolves it), and loses its expired days.
 */
START_TEST(test_declared_type_partitioned)
{
    struct dp_retention_rule rule = {"clicks", 2};
    struct dp_retention r = {&rule, 1};
    struct ldr_run_stats st;
    int64_t now = tl_now_us();
    struct tl_env e;
    struct ldr *l;

    tl_setup(&e, "declared");
    declare(&e, "{\"clicks\": {\"fields\": {\"n\": {\"type\": \"integer\"}}}}");
    tl_append_key(&e, "clicks", "{\"n\": 1}", "a", now - 3 * DAY_US);
    tl_append_key(&e, "clicks", "{\"n\": 2}", "b", now);
    l = open_loader(&e, &r, 1, 100);
    ck_assert_int_eq(ldr_run(l, &st), 0);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM clicks"), 2);
    ldr_destroy(l);
    declare(&e, "{\"clicks\": {\"fields\": {\"n\": {\"type\": \"integer\"}, "
                "\"m\": {\"type\": \"string\"}}}}");
    tl_append_key(&e, "clicks", "{\"n\": 3, \"m\": \"x\"}", "c", now);
    l = open_loader(&e, &r, 1, 100);
    ck_assert_int_eq(ldr_run(l, &st), 0);
    ldr_destroy(l);
    ck_assert_int_eq(tl_int(&e,
                            "SELECT count(*) FROM pg_class WHERE relname = 'clicks' AND "
                            "relnamespace = '%s'::regnamespace AND relkind = 'p'",
                            e.schema),
                     1);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM clicks"), 2);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM clicks WHERE m = 'x'"), 1);
    ck_assert_int_eq(tl_meta(&e, "loader.partitions_dropped.clicks"), 1);
    ev_registry_reset();
    tl_teardown(&e);
}
END_TEST

struct run_arg {
    struct ldr *l;
    int rc;
};

static void *
run_thread(void *arg)
{
    struct run_arg *a = arg;
    struct ldr_run_stats st;

    a->rc = ldr_run(a->l, &st);
    return NULL;
}

static void
gen_crash(uint64_t i, char *buf, size_t len)
{
    snprintf(buf, len, "{\"user_id\": %llu, \"timestamp\": 1700000000, \"message\": \"m%llu\"}",
             (unsigned long long)i, (unsigned long long)i);
}

/*
 * While two workers load 20,000 events, another connection keeps adding an expired partition
 * with a row and running the retention pass, which drops it: every event loads, every expired
 * partition goes, nothing else does.
 */
START_TEST(test_load_during_drop_loses_nothing)
{
    struct dp_retention_rule rule = {"crash_report", 2};
    struct dp_retention r = {&rule, 1};
    struct ldr_run_stats st;
    char hash[DP_TYPE_NAME_MAX + 1];
    char err[LDR_ERR_MAX];
    struct run_arg a = {0};
    struct ldr_pg *pg = NULL;
    pthread_t th;
    int passes = 0;
    bool done = false;
    struct tl_env e;
    int rc = 0;

    tl_setup(&e, "during");
    crash_hash(hash);
    append_keyed(&e, crash_json, NULL, tl_now_us());
    a.l = open_loader(&e, &r, 2, 500);
    ck_assert_int_eq(ldr_run(a.l, &st), 0);
    tl_append_gen(&e, "crash_report", 20000, gen_crash, NULL);
    ck_assert_int_eq(
        ldr_pg_connect(&pg, t_pg_conninfo(), e.schema, e.queue_id, "", err, sizeof(err)), 0);
    ldr_pg_set_retention(pg, &r);
    ck_assert_int_eq(ldr_pg_ensure_schema(pg, e.schema), 0);
    ck_assert_int_eq(pthread_create(&th, NULL, run_thread, &a), 0);
    while (!done) {
        time_t from = (time_t)((tl_now_us() / DAY_US - 10 - passes) * 86400);
        time_t to = from + 86400;
        char ymd[16];
        char from_s[32];
        char to_s[32];
        struct tm tm;

        done = tl_queued(&e) == 0;
        gmtime_r(&from, &tm);
        strftime(ymd, sizeof(ymd), "%Y%m%d", &tm);
        strftime(from_s, sizeof(from_s), "%Y-%m-%d 00:00:00+00", &tm);
        gmtime_r(&to, &tm);
        strftime(to_s, sizeof(to_s), "%Y-%m-%d 00:00:00+00", &tm);
        tl_exec(&e,
                "CREATE TABLE \"dp_p%s_%s\" PARTITION OF crash_report FOR VALUES FROM "
                "('%s') TO ('%s'); INSERT INTO crash_report (id, event_name, user_id, "
                "event_time, message, received_at) VALUES (gen_random_uuid(), 'crash_report', "
                "1, now(), 'old', '%s'::timestamptz + interval '1 hour')",
                ymd, hash, from_s, to_s, from_s);
        /* A pass that meets the workers' locks (lock timeout, deadlock) gives up and is
         * run again, as the loader runs it again at its next run. */
        for (int tries = 0; tries < 20; tries++) {
            rc = ldr_part_pass(pg, tl_now_us(), NULL, NULL);
            if (rc != DP_ERR_RETRY) {
                break;
            }
        }
        ck_assert_int_eq(rc, 0);
        passes++;
    }
    pthread_join(th, NULL);
    ck_assert_int_eq(a.rc, 0);
    ldr_destroy(a.l);
    ldr_pg_close(pg);
    ck_assert_uint_eq(tl_queued(&e), 0);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM crash_report"), 20001);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM crash_report WHERE message = 'old'"), 0);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM pg_inherits WHERE inhparent = "
                                "'crash_report'::regclass"),
                     2);
    ck_assert_int_eq(tl_int(&e, "SELECT count(DISTINCT user_id) FROM crash_report WHERE "
                                "message <> 'old'"),
                     20000);
    ck_assert_int_ge(passes, 1);
    tl_teardown(&e);
}
END_TEST

/*
 * A replay goes through the key table of a partitioned table as loading does
 * (docs/operations.md, "Replay dead letters"): dead letters whose key the table holds (filed at
 * ingest and at load) stay in dead_letter, one whose key it lacks moves and takes its key, so
 * the same event loaded later is a repeat.
 */
START_TEST(test_replay_keeps_keys_unique)
{
    static const char other[] = "{\"user_id\": 8, \"timestamp\": 1700000000, \"message\": \"x\"}";
    static const char third[] = "{\"user_id\": 9, \"timestamp\": 1700000000, \"message\": \"y\"}";
    struct dp_retention_rule rule = {"crash_report", 30};
    struct dp_retention r = {&rule, 1};
    struct ldr_run_stats st;
    int64_t now = tl_now_us();
    struct tl_env e;
    struct ldr *l;

    tl_setup(&e, "replay");
    append_keyed(&e, crash_json, "c1", now);
    append_rejected(&e, other, "c1", "conflict at ingest", now);
    append_rejected(&e, crash_json, "r1", "refused at ingest", now);
    l = open_loader(&e, &r, 1, 100);
    ck_assert_int_eq(ldr_run(l, &st), 0);
    ldr_destroy(l);
    second_queue(&e);
    append_keyed(&e, third, "c1", now);
    l = open_loader(&e, &r, 1, 100);
    ck_assert_int_eq(ldr_run(l, &st), 0);
    ldr_destroy(l);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM dead_letter"), 3);

    ck_assert_int_eq(replay(&e), 0);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM crash_report WHERE idempotency_key = 'c1'"),
                     1);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM crash_report WHERE idempotency_key = 'r1'"),
                     1);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM dead_letter WHERE idempotency_key = 'c1' "
                                "AND replays = 1 AND error LIKE 'idempotency_key: \"c1\" was "
                                "already loaded for event %% with different content (this "
                                "event: %%)'"),
                     2);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM dead_letter"), 2);

    /* The replayed event, sent again: its key is held, so it is a repeat. */
    append_keyed(&e, crash_json, "r1", now);
    l = open_loader(&e, &r, 1, 100);
    ck_assert_int_eq(ldr_run(l, &st), 0);
    ldr_destroy(l);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM crash_report WHERE idempotency_key = 'r1'"),
                     1);
    ck_assert_int_eq(tl_meta(&e, "loader.duplicates.crash_report"), 1);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM dead_letter"), 2);
    tl_teardown(&e);
}
END_TEST

/* "YYYY-MM-DD 00:00:00+00" of the UTC day days after now_us's. */
static void
utc_day(int64_t now_us, int days, char out[32])
{
    time_t s = (time_t)(now_us / 1000000) + (time_t)days * 86400;
    struct tm tm;

    gmtime_r(&s, &tm);
    strftime(out, 32, "%Y-%m-%d 00:00:00+00", &tm);
}

/*
 * The SQL the loader logs to convert an unpartitioned table names its bound with its zone: run
 * in a session whose TimeZone is not UTC it still ends the old table at midnight UTC, so the
 * day partitions the loader creates after it do not overlap it.
 */
START_TEST(test_conversion_sql_bound_in_utc)
{
    struct dp_retention_rule rule = {"crash_report", 3};
    struct dp_retention r = {&rule, 1};
    struct ldr_run_stats st;
    char sql[2048];
    char want[96];
    char day[32];
    int64_t now = tl_now_us();
    struct tl_env e;
    struct ldr *l;
    char *got;

    tl_setup(&e, "convert");
    append_keyed(&e, crash_json, "before", now);
    l = open_loader(&e, NULL, 1, 100);
    ck_assert_int_eq(ldr_run(l, &st), 0);
    ldr_destroy(l);
    ck_assert_int_gt(ldr_part_convert_sql(ev_lookup("crash_report", 12), now, sql, sizeof(sql)), 0);
    tl_exec(&e, "SET TimeZone TO 'Pacific/Kiritimati'; %s SET TimeZone TO 'UTC'", sql);
    utc_day(now, 1, day);
    snprintf(want, sizeof(want), "FOR VALUES FROM (MINVALUE) TO ('%s')", day);
    got = tl_str(&e,
                 "SELECT pg_get_expr(relpartbound, oid) FROM pg_class "
                 "WHERE relname = 'crash_report_unpartitioned' "
                 "AND relnamespace = '%s'::regnamespace",
                 e.schema);
    ck_assert_str_eq(got, want);
    free(got);

    /* The loader then makes the days after it, and a row of the day after loads there. */
    append_keyed(&e, crash_json, "after", now + DAY_US);
    l = open_loader(&e, &r, 1, 100);
    ck_assert_int_eq(ldr_run(l, &st), 0);
    ldr_destroy(l);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM dead_letter"), 0);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM crash_report WHERE idempotency_key = 'after' "
                                "AND tableoid::regclass::text LIKE 'dp_p%%'"),
                     1);
    tl_teardown(&e);
}
END_TEST

/*
 * The loader's own sessions under a role whose default TimeZone is not UTC: the partitions it
 * creates still start and end at midnight UTC.
 */
START_TEST(test_partitions_under_role_timezone)
{
    struct dp_retention_rule rule = {"crash_report", 3};
    struct dp_retention r = {&rule, 1};
    struct ldr_run_stats st;
    char from[32];
    char to[32];
    int64_t now = tl_now_us();
    struct tl_env e;
    struct ldr *l;
    long long bounded;
    long long dead;
    int rc;

    tl_setup(&e, "rolezone");
    append_keyed(&e, crash_json, "k", now);
    tl_exec(&e, "ALTER ROLE CURRENT_USER SET TimeZone TO 'Pacific/Kiritimati'");
    l = open_loader(&e, &r, 1, 100);
    rc = ldr_run(l, &st);
    ldr_destroy(l);
    /* Reset before any assertion: the role is every other suite's too. */
    tl_exec(&e, "ALTER ROLE CURRENT_USER RESET TimeZone; SET TimeZone TO 'UTC'");
    ck_assert_int_eq(rc, 0);
    utc_day(now, 0, from);
    utc_day(now, 1, to);
    bounded = tl_int(&e,
                     "SELECT count(*) FROM crash_report c JOIN pg_class p ON p.oid = c.tableoid "
                     "WHERE c.idempotency_key = 'k' AND pg_get_expr(p.relpartbound, p.oid) = "
                     "'FOR VALUES FROM (''%s'') TO (''%s'')'",
                     from, to);
    dead = tl_int(&e, "SELECT count(*) FROM dead_letter");
    ck_assert_int_eq(bounded, 1);
    ck_assert_int_eq(dead, 0);
    tl_teardown(&e);
}
END_TEST

/* Partitions of crash_report (pg_inherits), of ours or not. */
static long long
crash_partitions(struct tl_env *e)
{
    return tl_int(e, "SELECT count(*) FROM pg_inherits WHERE inhparent = "
                     "'crash_report'::regclass");
}

/*
 * A server clock far behind (an event received 400 days ago) and one a few days ahead: each
 * batch creates the partitions of the days it holds, not every day in between, and the
 * expired row lands once before the next pass drops its partition (docs/postgresql.md,
 * "Retention"); the other types load all along.
 */
START_TEST(test_batch_days_only)
{
    struct dp_retention_rule rule = {"crash_report", 3};
    struct dp_retention r = {&rule, 1};
    struct ldr_run_stats st;
    int64_t now = tl_now_us();
    struct tl_env e;
    struct ldr *l;

    tl_setup(&e, "skew");
    append_keyed(&e, crash_json, "old", now - 400 * DAY_US);
    append_keyed(&e, crash_json, "new", now);
    append_keyed(&e, crash_json, "ahead", now + 3 * DAY_US);
    tl_append(&e, "user_login", "{\"user_id\": \"u\", \"timestamp\": 1}", 0, NULL, now, NULL);
    l = open_loader(&e, &r, 1, 100);
    ck_assert_int_eq(ldr_run(l, &st), 0);
    /* today, tomorrow, and the two other days the batch held */
    ck_assert_int_eq(crash_partitions(&e), 4);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM dead_letter"), 0);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM crash_report"), 3);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM user_login"), 1);
    ck_assert_int_eq(ldr_run(l, &st), 0);
    ldr_destroy(l);
    ck_assert_int_eq(crash_partitions(&e), 3);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM crash_report"), 2);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM crash_report WHERE idempotency_key = 'old'"),
                     0);
    ck_assert_int_eq(tl_meta(&e, "loader.rows_dropped.crash_report"), 1);
    tl_teardown(&e);
}
END_TEST

/*
 * Expired partitions are dropped a few per transaction: with one of them locked by a reader,
 * the pass drops those of the transactions before it, keeps the rest for the next run, and
 * the run still loads.
 */
START_TEST(test_drop_in_bounded_transactions)
{
    struct dp_retention_rule rule = {"crash_report", 3};
    struct dp_retention r = {&rule, 1};
    struct ldr_run_stats st;
    char key[16];
    char name[2 * DP_TYPE_NAME_MAX];
    char hash[DP_TYPE_NAME_MAX + 1];
    char ymd[16];
    int64_t now = tl_now_us();
    time_t ninth = (time_t)((now - (31 - 8) * DAY_US) / 1000000);
    struct tm tm;
    struct tl_env e;
    struct ldr *l;

    tl_setup(&e, "chunks");
    crash_hash(hash);
    for (int k = 31; k >= 20; k--) {
        snprintf(key, sizeof(key), "d%d", k);
        append_keyed(&e, crash_json, key, now - k * DAY_US);
    }
    l = open_loader(&e, &r, 1, 100);
    ck_assert_int_eq(ldr_run(l, &st), 0);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM crash_report"), 12);

    /* The ninth oldest is held by a reader: its transaction cannot drop it. */
    gmtime_r(&ninth, &tm);
    strftime(ymd, sizeof(ymd), "%Y%m%d", &tm);
    snprintf(name, sizeof(name), "%s%s_%s", DP_PG_PARTITION, ymd, hash);
    tl_exec(&e, "BEGIN; LOCK TABLE \"%s\" IN ACCESS SHARE MODE", name);
    append_keyed(&e, crash_json, "today", now);
    ck_assert_int_eq(ldr_run(l, &st), 0);
    tl_exec(&e, "ROLLBACK");
    ck_assert_int_eq(tl_meta(&e, "loader.partitions_dropped.crash_report"), 8);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM crash_report"), 5);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM crash_report WHERE idempotency_key = "
                                "'today'"),
                     1);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM dp_keys_%s", hash), 5);
    ck_assert_int_eq(ldr_run(l, &st), 0);
    ldr_destroy(l);
    ck_assert_int_eq(tl_meta(&e, "loader.partitions_dropped.crash_report"), 12);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM crash_report"), 1);
    ck_assert_int_eq(tl_int(&e, "SELECT count(*) FROM dp_keys_%s", hash), 1);
    tl_teardown(&e);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("retention");
    TCase *tc = tcase_create("partitions");
    SRunner *sr;
    int failed;

    dp_log_setup("warn", "text");
    tcase_add_test(tc, test_days_placed_and_expired_dropped);
    tcase_add_test(tc, test_keyed_repeat_across_boundary);
    tcase_add_test(tc, test_unpartitioned_table_left_alone);
    tcase_add_test(tc, test_declared_type_partitioned);
    tcase_add_test(tc, test_load_during_drop_loses_nothing);
    tcase_add_test(tc, test_replay_keeps_keys_unique);
    tcase_add_test(tc, test_conversion_sql_bound_in_utc);
    tcase_add_test(tc, test_partitions_under_role_timezone);
    tcase_add_test(tc, test_batch_days_only);
    tcase_add_test(tc, test_drop_in_bounded_transactions);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
