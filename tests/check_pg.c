/*
 * check_pg.c - proves the PostgreSQL harness (tests/pg): the cluster that
 * `make check` starts answers libpq queries, as the integration tests expect.
 */
#include "tests/lib_test.h"

#include <check.h>
#include <libpq-fe.h>
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

int
main(void)
{
    Suite *s = suite_create("pg_harness");
    TCase *tc = tcase_create("libpq");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, test_connect_and_query);
    tcase_add_test(tc, test_create_schema_and_copy);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
