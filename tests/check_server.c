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

        ck_assert_msg(srv_route_find_method(path, method, &m, &unknown),
                      "%s: sample %s not found", srv_routes[i].path, path);
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
