/*
 * check_fuzz_seeds.c - fuzz_http's seeds (raw and structured) replayed through the fuzz
 * target's own code without libFuzzer: the real civetweb server with datapipe's handler on a
 * loopback port, each seed one connection. A seed that once crashed the server must keep it
 * alive; the server must still answer afterwards. Never reaches PostgreSQL.
 */
#include "tests/fuzz/fuzz_http.h"

#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Replay every file of dir; returns how many. */
static int
replay_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    ck_assert_msg(d != NULL, "%s: cannot open (run from the top of the tree)", dir);
    while ((e = readdir(d)) != NULL) {
        char path[512];
        unsigned char *data;
        long len;
        FILE *f;

        if (e->d_name[0] == '.') {
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        f = fopen(path, "rb");
        ck_assert_msg(f != NULL, "%s: cannot open", path);
        ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
        len = ftell(f);
        rewind(f);
        data = malloc(len > 0 ? (size_t)len : 1);
        ck_assert_ptr_nonnull(data);
        ck_assert_int_eq((long)fread(data, 1, (size_t)len, f), len);
        fclose(f);
        LLVMFuzzerTestOneInput(data, (size_t)len);
        free(data);
        n++;
    }
    closedir(d);
    return n;
}

START_TEST(test_seeds_replay)
{
    static const char healthz[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

    LLVMFuzzerInitialize(NULL, NULL);
    ck_assert_int_eq(fuzz_http_status(healthz), 200);
    ck_assert_int_gt(replay_dir("tests/fuzz/seed-http"), 0);
    ck_assert_int_gt(replay_dir("tests/fuzz/seed-grammar"), 0);
    /* Every seed answered or refused, and the server is still there. */
    ck_assert_int_eq(fuzz_http_status(healthz), 200);
    ck_assert_int_eq(fuzz_http_status("GET /nosuch HTTP/1.1\r\nHost: x\r\n\r\n"), 404);
}
END_TEST

static Suite *
fuzz_seeds_suite(void)
{
    Suite *s = suite_create("fuzz_seeds");
    TCase *tc = tcase_create("replay");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_seeds_replay);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(fuzz_seeds_suite());
    int failed;

    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
