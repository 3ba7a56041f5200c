/*
 * check_pg.c - proves the PostgreSQL harness (tests/pg): the cluster that
 * `make check` starts answers libpq queries, as the integration tests expect.
 * Also etc/pgconn.c, the connection set-up both daemons share.
 */
#include "etc/err.h"
#include "etc/pgconn.h"
#include "tests/lib/lib_test.h"

#include <check.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

START_TEST(test_connect_and_query)
{
    PGconn *c = PQconnectdb(t_pg_conninfo());
    PGresult *r;

    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "connect: %s", PQerrorMessage(c));
    r = PQexec(c, "SELECT 40 + 2, current_setting('server_version_num')::int >= 150000");
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    ck_assert_str_eq(PQgetvalue(r, 0, 0), "42");
    ck_assert_str_eq(PQgetvalue(r, 0, 1), "t");
    PQclear(r);
    /* The harness listens on its own unix socket only. */
    r = PQexec(c, "SHOW listen_addresses");
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    ck_assert_str_eq(PQgetvalue(r, 0, 0), "");
    PQclear(r);
    PQfinish(c);
}
END_TEST

START_TEST(test_create_schema_and_copy)
{
    PGconn *c = PQconnectdb(t_pg_conninfo());
    PGresult *r;
    const char rows[] = "1\tone\n2\ttwo\\ttab\n";

    ck_assert_int_eq(PQstatus(c), CONNECTION_OK);
    r = PQexec(c, "DROP SCHEMA IF EXISTS harness CASCADE; CREATE SCHEMA harness;"
                  "CREATE TABLE harness.t (id int primary key, s text)");
    ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    r = PQexec(c, "COPY harness.t FROM STDIN");
    ck_assert_int_eq(PQresultStatus(r), PGRES_COPY_IN);
    PQclear(r);
    ck_assert_int_eq(PQputCopyData(c, rows, (int)strlen(rows)), 1);
    ck_assert_int_eq(PQputCopyEnd(c, NULL), 1);
    r = PQgetResult(c);
    ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    r = PQexec(c, "SELECT s FROM harness.t WHERE id = 2");
    ck_assert_str_eq(PQgetvalue(r, 0, 0), "two\ttab");
    PQclear(r);
    r = PQexec(c, "DROP SCHEMA harness CASCADE");
    PQclear(r);
    PQfinish(c);
}
END_TEST

/* The one value of a one-row, one-column query. */
static void
expect_setting(PGconn *c, const char *sql, const char *want)
{
    PGresult *r = PQexec(c, sql);

    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    ck_assert_str_eq(PQgetvalue(r, 0, 0), want);
    PQclear(r);
}

START_TEST(test_dp_pg_connect_session)
{
    struct dp_pg_options opt = {
        .conninfo = t_pg_conninfo(),
        .application_name = "datapipe-test",
        .schema = "some \"schema\"",
        .connect_timeout_s = 5,
        .keepalives_idle_s = 10,
        .keepalives_interval_s = 5,
        .statement_timeout_ms = 2000,
    };
    char err[256] = "";
    char conninfo[1024];
    char *begin = NULL;
    PGconn *c = NULL;
    PGresult *r;

    ck_assert_int_eq(dp_pg_connect(&c, &opt, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(c);
    expect_setting(c, "SHOW client_encoding", "UTF8");
    expect_setting(c, "SHOW application_name", "datapipe-test");
    /* Nothing on the session: a pooler may hand the backend to anyone between transactions. */
    expect_setting(c, "SHOW search_path", "\"$user\", public");
    expect_setting(c, "SHOW statement_timeout", "0");
    /* The settings hold inside a transaction begun with dp_pg_begin_sql, and end with it. */
    ck_assert_int_eq(dp_pg_begin_sql(c, &opt, true, &begin), 0);
    r = PQexec(c, begin);
    ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    expect_setting(c, "SHOW search_path", "\"some \"\"schema\"\"\"");
    expect_setting(c, "SHOW TimeZone", "UTC");
    expect_setting(c, "SHOW statement_timeout", "2s");
    expect_setting(c, "SHOW lock_timeout", "1s");
    expect_setting(c, "SHOW synchronous_commit", "on");
    expect_setting(c, "SHOW transaction_read_only", "on");
    r = PQexec(c, "COMMIT");
    ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    expect_setting(c, "SHOW search_path", "\"$user\", public");
    expect_setting(c, "SHOW statement_timeout", "0");
    expect_setting(c, "SHOW lock_timeout", "0");
    free(begin);
    PQfinish(c);

    /* No statement timeout asked: the server's default stays; the operator's conninfo wins. */
    snprintf(conninfo, sizeof(conninfo), "%s application_name=mine", t_pg_conninfo());
    opt.conninfo = conninfo;
    opt.statement_timeout_ms = 0;
    ck_assert_int_eq(dp_pg_connect(&c, &opt, err, sizeof(err)), 0);
    ck_assert_int_eq(dp_pg_begin_sql(c, &opt, false, &begin), 0);
    r = PQexec(c, begin);
    ck_assert_int_eq(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    expect_setting(c, "SHOW application_name", "mine");
    expect_setting(c, "SHOW statement_timeout", "0");
    expect_setting(c, "SHOW client_encoding", "UTF8");
    expect_setting(c, "SHOW transaction_read_only", "off");
    free(begin);
    PQfinish(c);
}
END_TEST

START_TEST(test_dp_pg_connect_unreachable)
{
    struct dp_pg_options opt = {
        .conninfo = "host=/nonexistent-datapipe-socket-dir port=1 dbname=x",
        .application_name = "datapipe-test",
        .schema = "public",
        .connect_timeout_s = 2,
        .keepalives_idle_s = 10,
        .keepalives_interval_s = 5,
    };
    char err[256] = "";
    PGconn *c = NULL;

    ck_assert_int_eq(dp_pg_connect(&c, &opt, err, sizeof(err)), DP_ERR_RETRY);
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err, "/nonexistent-datapipe-socket-dir") != NULL, "err: %s", err);
    ck_assert_ptr_null(strchr(err, '\n'));
}
END_TEST

START_TEST(test_dp_pg_one_line)
{
    char out[64];

    /* libpq's two-line message: the newline and tab become one space, the end is trimmed. */
    dp_pg_one_line(out, sizeof(out), "refused\n\tIs the server running?\n");
    ck_assert_str_eq(out, "refused Is the server running?");
    dp_pg_one_line(out, 8, "abcdefghij");
    ck_assert_str_eq(out, "abcdefg");
    dp_pg_one_line(out, sizeof(out), NULL);
    ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(test_dp_pg_text_names_tls)
{
    /* libpq 15's texts for a certificate refused under sslmode=verify-full. */
    static const char *const tls[] = {
        "connection to server at \"localhost\" (127.0.0.1), port 5432 failed: SSL error: "
        "certificate verify failed",
        "connection to server at \"127.0.0.1\", port 5432 failed: server certificate for "
        "\"localhost\" does not match host name \"db.example.com\"",
        "connection to server at \"localhost\" (127.0.0.1), port 5432 failed: root certificate "
        "file \"/root/.postgresql/root.crt\" does not exist Either provide the file or change "
        "sslmode to disable server certificate verification.",
        "connection to server at \"localhost\" (127.0.0.1), port 5432 failed: could not get "
        "server's host name from server certificate",
        "connection to server at \"localhost\" (127.0.0.1), port 5432 failed: SSL certificate's "
        "name entry is missing",
    };
    /* Failures that are not the server's certificate. */
    static const char *const other[] = {
        "SSL SYSCALL error: EOF detected",
        "connection to server at \"localhost\" (127.0.0.1), port 5432 failed: FATAL: password "
        "authentication failed for user \"loader\"",
        "could not read certificate file \"/home/dp/.postgresql/postgresql.crt\": No such file",
        "server closed the connection unexpectedly",
    };

    for (size_t i = 0; i < sizeof(tls) / sizeof(tls[0]); i++) {
        ck_assert_msg(dp_pg_text_names_tls(tls[i]), "not TLS: %s", tls[i]);
        ck_assert_msg(dp_pg_text_names_connection(tls[i]), "not a connection: %s", tls[i]);
    }
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        ck_assert_msg(!dp_pg_text_names_tls(other[i]), "TLS: %s", other[i]);
    }
    ck_assert(!dp_pg_text_names_tls(NULL));
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("pg_harness");
    TCase *tc = tcase_create("libpq");
    TCase *tp = tcase_create("dp_pg_connect");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, test_connect_and_query);
    tcase_add_test(tc, test_create_schema_and_copy);
    suite_add_tcase(s, tc);
    tcase_add_test(tp, test_dp_pg_connect_session);
    tcase_add_test(tp, test_dp_pg_connect_unreachable);
    tcase_add_test(tp, test_dp_pg_one_line);
    tcase_add_test(tp, test_dp_pg_text_names_tls);
    suite_add_tcase(s, tp);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
