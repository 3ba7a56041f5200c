/*
 * check_server.c - the server's route table, walked as a generator of the API
 * document would: every row complete, paths unique and well formed, every
 * named event type in the registry, no row hidden behind an earlier one, and
 * what the matcher takes from a path.
 * The HTTP behaviour of each route is tested over loopback in test_server.sh.
 */
#include "server/srv.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

/* The concrete path a row's pattern stands for, with {type} and {id} filled in. */
static void
sample_path(const char *pat, char *out, size_t size)
{
    size_t used = 0;

    while (*pat != '\0' && used + 16 < size) {
        if (strncmp(pat, "{type}", 6) == 0) {
            used += (size_t)snprintf(out + used, size - used, "%s", ev_registry[0]->name);
            pat += 6;
        } else if (strncmp(pat, "{id}", 4) == 0) {
            used += (size_t)snprintf(out + used, size - used, "id1");
            pat += 4;
        } else {
            out[used++] = *pat++;
        }
    }
    out[used] = '\0';
}

START_TEST(test_rows_complete)
{
    ck_assert_uint_gt(srv_routes_len, 0);
    for (size_t i = 0; i < srv_routes_len; i++) {
        const struct srv_route *rt = &srv_routes[i];
        ck_assert_msg(rt->path != NULL && rt->path[0] == '/', "row %zu: path", i);
        ck_assert_msg(rt->handler != NULL, "%s: no handler", rt->path);
        ck_assert_msg(rt->methods != 0 &&
                          (rt->methods & ~(unsigned)(SRV_GET | SRV_HEAD | SRV_POST)) == 0,
                      "%s: methods %u", rt->path, rt->methods);
        ck_assert_msg(rt->summary != NULL && rt->summary[0] != '\0', "%s: no summary", rt->path);
    }
}
END_TEST

START_TEST(test_paths_unique_and_well_formed)
{
    for (size_t i = 0; i < srv_routes_len; i++) {
        const char *p = srv_routes[i].path;
        for (const char *b = strchr(p, '{'); b != NULL; b = strchr(b + 1, '{')) {
            ck_assert_msg(strncmp(b, "{type}", 6) == 0 || strncmp(b, "{id}", 4) == 0,
                          "%s: unknown parameter", p);
            ck_assert_msg(b[-1] == '/', "%s: a parameter is a whole segment", p);
        }
        for (size_t j = i + 1; j < srv_routes_len; j++) {
            ck_assert_msg(strcmp(p, srv_routes[j].path) != 0, "%s declared twice", p);
        }
    }
}
END_TEST

START_TEST(test_event_types_known)
{
    for (size_t i = 0; i < srv_routes_len; i++) {
        const struct srv_route *rt = &srv_routes[i];
        if (rt->event_type == NULL) {
            continue;
        }
        ck_assert_msg(ev_lookup(rt->event_type, strlen(rt->event_type)) != NULL,
                      "%s: type %s not in the registry", rt->path, rt->event_type);
        ck_assert_msg(strstr(rt->path, "{type}") == NULL, "%s: two sources of a type", rt->path);
    }
}
END_TEST

/* Each row's own sample path finds that row, not an earlier one that hides it. */
START_TEST(test_no_row_shadowed)
{
    char path[512];
    struct srv_match m;
    bool unknown;

    for (size_t i = 0; i < srv_routes_len; i++) {
        sample_path(srv_routes[i].path, path, sizeof(path));
        unsigned method = srv_routes[i].methods & (0u - srv_routes[i].methods); /* lowest bit */

        ck_assert_msg(srv_route_find_method(path, method, &m, &unknown), "%s: sample %s not found",
                      srv_routes[i].path, path);
        ck_assert_msg(m.route == &srv_routes[i], "%s: sample %s found %s", srv_routes[i].path, path,
                      m.route->path);
        ck_assert_msg(!unknown, "%s: sample %s has an unknown type", srv_routes[i].path, path);
        if (strstr(srv_routes[i].path, "{id}") != NULL) {
            ck_assert_str_eq(m.id, "id1");
        }
    }
}
END_TEST

/* What the dispatcher reads from a path: the type, the id, and what is no route. */
START_TEST(test_find_fills_the_match)
{
    char longid[SRV_ID_MAX + 16];
    struct srv_match m;
    bool unknown;

    ck_assert(srv_route_find("/v1/events/product/abc", &m, &unknown));
    ck_assert_ptr_eq(m.type, ev_lookup("product", 7));
    ck_assert_str_eq(m.id, "abc");
    ck_assert(!unknown);
    ck_assert(srv_route_find("/product/p-1", &m, &unknown));
    ck_assert_ptr_eq(m.type, ev_lookup("product", 7));
    ck_assert_str_eq(m.id, "p-1");
    ck_assert(srv_route_find("/submit", &m, &unknown));
    ck_assert_ptr_eq(m.type, ev_lookup("ad_event", 8));
    ck_assert(srv_route_find("/v1/events/bogus", &m, &unknown));
    ck_assert(unknown);
    ck_assert_ptr_null(m.type);
    ck_assert(srv_route_find("/v1/events", &m, &unknown));
    ck_assert_ptr_null(m.type);
    ck_assert(!unknown);
    ck_assert(!srv_route_find("/v1/events/product/", &m, &unknown));
    ck_assert(!srv_route_find("/v1/events/product/a/b", &m, &unknown));
    ck_assert(!srv_route_find("/product/", &m, &unknown));
    ck_assert(!srv_route_find("/healthz/", &m, &unknown));
    ck_assert(!srv_route_find("", &m, &unknown));
    memset(longid, 'x', sizeof(longid));
    memcpy(longid, "/product/", 9);
    longid[9 + SRV_ID_MAX - 1] = '\0'; /* an id of SRV_ID_MAX - 1 bytes fits */
    ck_assert(srv_route_find(longid, &m, &unknown));
    longid[9 + SRV_ID_MAX - 1] = 'x';
    longid[9 + SRV_ID_MAX] = '\0'; /* one more does not */
    ck_assert(!srv_route_find(longid, &m, &unknown));
}
END_TEST

#define T0 INT64_C(1700000000000000) /* a fixed start, microseconds since the epoch */

/* srv_limit_admit without the rate. */
static int
admit(struct srv_limit *l, int64_t now_us)
{
    double rate;

    return srv_limit_admit(l, now_us, &rate);
}

/* A bucket of 10 events a second holding 20: full at start, refilled by elapsed time. */
START_TEST(test_bucket_refill)
{
    struct srv_limit l;

    srv_limit_init(&l, "k", 10, 20, T0);
    ck_assert_int_eq(admit(&l, T0), 0);
    srv_limit_charge(&l, 20, T0);
    /* empty: one event takes 0.1 s, so one whole second is asked */
    ck_assert_int_eq(admit(&l, T0), 1);
    ck_assert_int_eq(admit(&l, T0 + 50000), 1);
    ck_assert_int_eq(admit(&l, T0 + 100000), 0);
    /* refilled for an hour: still no more than the burst */
    ck_assert_int_eq(admit(&l, T0 + 3600 * INT64_C(1000000)), 0);
    srv_limit_charge(&l, 20, T0 + 3600 * INT64_C(1000000));
    ck_assert_int_eq(admit(&l, T0 + 3600 * INT64_C(1000000)), 1);
    ck_assert_uint_eq(atomic_load(&l.events), 40);
    ck_assert_uint_eq(atomic_load(&l.limited), 3);
    pthread_mutex_destroy(&l.mu);
}
END_TEST

/* Counted in events: a body larger than the bucket passes once and is paid for after. */
START_TEST(test_bucket_debt)
{
    struct srv_limit l;

    srv_limit_init(&l, "k", 100, 0, T0);
    ck_assert_int_eq(l.burst, 100);
    ck_assert_int_eq(admit(&l, T0), 0);
    srv_limit_charge(&l, 1000, T0);
    /* 900 events owed and one more needed: 9.01 s, so 10 */
    ck_assert_int_eq(admit(&l, T0), 10);
    ck_assert_int_eq(admit(&l, T0 + 9 * INT64_C(1000000)), 1);
    ck_assert_int_eq(admit(&l, T0 + 9010000), 0);
    /* a clock that steps back refills nothing and takes nothing */
    ck_assert_int_eq(admit(&l, T0), 0);
    pthread_mutex_destroy(&l.mu);
}
END_TEST

/* No limit: always admitted, events still counted. */
START_TEST(test_bucket_unlimited)
{
    struct srv_limit l;

    srv_limit_init(&l, "k", 0, 0, T0);
    srv_limit_charge(&l, 1000000, T0);
    ck_assert_int_eq(admit(&l, T0), 0);
    ck_assert_uint_eq(atomic_load(&l.events), 1000000);
    srv_limit_charge(NULL, 5, T0);
    pthread_mutex_destroy(&l.mu);
}
END_TEST

/* A new limit (SIGHUP) keeps what the bucket holds: it is never refilled by the change. */
START_TEST(test_bucket_set)
{
    struct srv_limit *l = srv_limit_new("k", 1, 0, T0);
    double rate;

    ck_assert_ptr_nonnull(l);
    ck_assert_str_eq(l->name, "k");
    srv_limit_charge(l, 100, T0);
    ck_assert_int_eq(admit(l, T0), 100);
    /* the same limit again: no change */
    ck_assert(!srv_limit_set(l, 1, 1, T0));
    /* a faster rate: the 99 events owed stay owed, now at 10 a second */
    ck_assert(srv_limit_set(l, 10, 50, T0));
    ck_assert_int_eq(srv_limit_admit(l, T0, &rate), 10);
    ck_assert(rate == 10);
    /* refilled to the burst of 50, then a smaller burst holds it to 5 */
    ck_assert_int_eq(admit(l, T0 + 60 * INT64_C(1000000)), 0);
    ck_assert(srv_limit_set(l, 10, 5, T0 + 60 * INT64_C(1000000)));
    srv_limit_charge(l, 5, T0 + 60 * INT64_C(1000000));
    ck_assert_int_eq(admit(l, T0 + 60 * INT64_C(1000000)), 1);
    /* no limit, then a limit again: the bucket starts full */
    ck_assert(srv_limit_set(l, 0, 0, T0 + 60 * INT64_C(1000000)));
    ck_assert_int_eq(admit(l, T0 + 60 * INT64_C(1000000)), 0);
    srv_limit_charge(l, 1000, T0 + 60 * INT64_C(1000000));
    ck_assert(srv_limit_set(l, 2, 3, T0 + 60 * INT64_C(1000000)));
    srv_limit_charge(l, 3, T0 + 60 * INT64_C(1000000));
    ck_assert_int_eq(admit(l, T0 + 60 * INT64_C(1000000)), 1);
    /* counters survive every change */
    ck_assert_uint_eq(atomic_load(&l->events), 1108);
    /* held by a request: the table's put does not free it, the request's does */
    srv_limit_hold(l);
    srv_limit_put(l);
    ck_assert_int_eq(atomic_load(&l->refs), 1);
    srv_limit_put(l);
    srv_limit_put(NULL);
}
END_TEST

struct charger {
    struct srv_limit *l;
    int n;
};

static void *
charge_many(void *arg)
{
    struct charger *c = arg;

    for (int i = 0; i < c->n; i++) {
        srv_limit_charge(c->l, 1, T0);
    }
    return NULL;
}

/* Four threads charging at once lose no event (one lock per key). */
START_TEST(test_bucket_threads)
{
    struct srv_limit l;
    pthread_t th[4];
    struct charger c = {&l, 50000};

    srv_limit_init(&l, "k", 1000, 1000, T0);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(pthread_create(&th[i], NULL, charge_many, &c), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
    }
    ck_assert_uint_eq(atomic_load(&l.events), 200000);
    /* 1000 - 200000 events at 1000 a second: 200 s until one is there again */
    ck_assert_int_eq(admit(&l, T0), 200);
    pthread_mutex_destroy(&l.mu);
}
END_TEST

static Suite *
server_suite(void)
{
    Suite *s = suite_create("server");
    TCase *tr = tcase_create("routes");

    tcase_add_test(tr, test_rows_complete);
    tcase_add_test(tr, test_paths_unique_and_well_formed);
    tcase_add_test(tr, test_event_types_known);
    tcase_add_test(tr, test_no_row_shadowed);
    tcase_add_test(tr, test_find_fills_the_match);
    suite_add_tcase(s, tr);
    tr = tcase_create("rate limits");
    tcase_add_test(tr, test_bucket_refill);
    tcase_add_test(tr, test_bucket_debt);
    tcase_add_test(tr, test_bucket_unlimited);
    tcase_add_test(tr, test_bucket_set);
    tcase_add_test(tr, test_bucket_threads);
    suite_add_tcase(s, tr);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(server_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
