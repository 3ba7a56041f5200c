/*
 * check_loader_kill.c - exactly once under kill -9: 200,000 queued events, the loader
 * (ldr_daemon --once, in a child process) killed at random moments and, through the test
 * fault hook, right between a COMMIT and its queue delete; restarted every time. At the end
 * every event is in PostgreSQL exactly once (ids compared), and the queue is empty.
 */
#include <check.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "etc/config.h"
#include "etc/log.h"
#include "events/events.h"
#include "tests/lib/lib_loader.h"
#include "tests/lib/lib_test.h"

#define KILL_EVENTS 200000
#define KILL_REJECTED_EVERY 100 /* one event in 100 was rejected at ingest */
#define KILL_ROUNDS 32
#define KILL_HOOK_ROUNDS 6 /* rounds 1, 3, ..., 11 die right after a COMMIT */
#define KILL_MAX_DELAY_MS 60

static void
gen_crash(uint64_t i, char *buf, size_t len)
{
    snprintf(buf, len, "{\"user_id\": %llu, \"timestamp\": 1700000000, \"message\": \"k%llu\"}",
             (unsigned long long)i, (unsigned long long)i);
}

/* The child's hook: die (SIGKILL, like kill -9) right after the n-th COMMIT. */
struct kill_plan {
    atomic_int commits;
    int die_at;
};

static int
kill_hook(void *arg, enum ldr_fault_point point, uint64_t first, uint64_t last)
{
    struct kill_plan *p = arg;

    (void)first;
    (void)last;
    if (point == LDR_FAULT_COMMITTED && atomic_fetch_add(&p->commits, 1) + 1 == p->die_at) {
        raise(SIGKILL);
    }
    return 0;
}

/* Child: datapipe-loader --once with the configuration at path. Never returns. */
static void
child_loader(const char *path, int die_at)
{
    struct dp_config_sources src = {.system_path = NULL, .env_path = NULL, .cli_path = path};
    struct dp_cli cli = {.config_path = path, .check_config = false, .once = true};
    struct kill_plan plan = {.die_at = die_at};
    struct ldr_fault_ops ops = {.hook = kill_hook, .arg = &plan};
    struct dp_config *cfg = NULL;
    char *errors = NULL;
    int rc;

    atomic_init(&plan.commits, 0);
    if (dp_config_load(&src, &cfg, &errors) != 0) {
        fprintf(stderr, "child config: %s\n", errors != NULL ? errors : "?");
        _exit(90);
    }
    dp_log_setup("error", "text");
    rc = ldr_daemon(&cli, cfg, die_at > 0 ? &ops : NULL);
    dp_config_destroy(cfg);
    _exit(rc);
}

/* Rows in crash_report so far (the first rounds may die before creating it). */
static long long
rows_loaded(struct tl_env *e)
{
    if (tl_int(e,
               "SELECT count(*) FROM pg_tables WHERE schemaname = '%s' AND "
               "tablename = 'crash_report'",
               e->schema) == 0) {
        return 0;
    }
    return tl_int(e, "SELECT count(*) FROM crash_report");
}

static int
cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Append the events: crash reports with known ids, and rejected ones every 100th. */
static char *
fill_queue(struct tl_env *e, size_t *n_ids)
{
    size_t per_chunk = KILL_REJECTED_EVERY - 1;
    size_t chunks = KILL_EVENTS / KILL_REJECTED_EVERY;
    char *ids = malloc(chunks * per_chunk * 37);
    char json[128];

    ck_assert_ptr_nonnull(ids);
    for (size_t c = 0; c < chunks; c++) {
        struct queue_event ev;

        tl_append_gen(e, "crash_report", per_chunk, gen_crash, ids + c * per_chunk * 37);
        snprintf(json, sizeof(json), "{\"user_id\": \"r%zu\"}", c);
        memset(&ev, 0, sizeof(ev));
        ev_uuid7(ev.uuid);
        ev.received_us = tl_now_us();
        ev.type = "crash_report";
        ev.type_len = strlen(ev.type);
        ev.flags = QUEUE_F_REJECTED;
        ev.error = "user_id: expected integer, got string";
        ev.error_len = strlen(ev.error);
        ev.json = json;
        ev.json_len = strlen(json);
        ck_assert_int_eq(queue_append(e->q, &ev, 1), 0);
    }
    *n_ids = chunks * per_chunk;
    return ids;
}

/* Compare the crash_report ids in PostgreSQL with ids (n, sorted). */
static void
check_ids(struct tl_env *e, const char *ids, size_t n)
{
    PGresult *r = PQexec(e->pg, "SELECT id::text FROM crash_report ORDER BY id");

    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    ck_assert_int_eq(PQntuples(r), (int)n);
    for (size_t i = 0; i < n; i++) {
        ck_assert_str_eq(PQgetvalue(r, (int)i, 0), ids + i * 37);
    }
    PQclear(r);
}

START_TEST(test_exactly_once_under_kill_9)
{
    struct tl_env e;
    unsigned int seed = (unsigned int)time(NULL) ^ (unsigned int)getpid();
    int signaled = 0;
    int hook_kills = 0;
    long long loaded = 0;
    size_t n_ids = 0;
    char *ids;
    char *path;
    int status;
    pid_t pid;

    srand(seed);
    fprintf(stderr, "kill test: seed %u\n", seed);
    tl_setup(&e, "kill");
    ids = fill_queue(&e, &n_ids);
    path = tl_config_file(&e, 2, 2000);
    queue_close(e.q);
    e.q = NULL;
    for (int round = 0; round < KILL_ROUNDS; round++) {
        bool hook = round % 2 == 1 && round / 2 < KILL_HOOK_ROUNDS;

        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            child_loader(path, hook ? 1 + round / 2 % 3 : 0);
        }
        if (!hook) {
            usleep((useconds_t)(rand() % (KILL_MAX_DELAY_MS * 1000)));
            kill(pid, SIGKILL);
        }
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
            /* Only a kill before the drain ended counts: rows still missing afterwards. */
            loaded = rows_loaded(&e);
            signaled += loaded < (long long)n_ids ? 1 : 0;
            hook_kills += hook ? 1 : 0;
        } else {
            ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                          "round %d: loader exited with %d", round, status);
        }
    }
    /* The last loader runs to the end. */
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        child_loader(path, 0);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "final loader: %d", status);
    fprintf(stderr,
            "kill test: %d of %d rounds killed mid-drain (%d right after a COMMIT); "
            "%lld of %zu rows loaded before the last round\n",
            signaled, KILL_ROUNDS, hook_kills, loaded, n_ids);
    ck_assert_int_ge(signaled, 20);
    ck_assert_int_ge(hook_kills, KILL_HOOK_ROUNDS - 1);

    ck_assert_int_eq(queue_open(&e.q, e.queue_path, TL_MAP_BYTES, false), 0);
    ck_assert_uint_eq(tl_queued(&e), 0);
    qsort(ids, n_ids, 37, cmp_id);
    check_ids(&e, ids, n_ids);
    ck_assert_int_eq(tl_int(&e, "SELECT count(DISTINCT id) FROM crash_report"), (long long)n_ids);
    ck_assert_int_eq(tl_int(&e,
                            "SELECT count(*) FROM dead_letter WHERE queue_id = '%s' AND "
                            "stage = 'ingest'",
                            e.queue_id),
                     KILL_EVENTS / KILL_REJECTED_EVERY);
    ck_assert_int_eq(tl_int(&e, "SELECT count(DISTINCT raw) FROM dead_letter"),
                     KILL_EVENTS / KILL_REJECTED_EVERY);
    ck_assert_int_le(tl_int(&e, "SELECT count(*) FROM loader_batches"), 2);
    free(ids);
    free(path);
    tl_teardown(&e);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("loader_kill");
    TCase *tc = tcase_create("kill_9");
    SRunner *sr;
    int failed;

    dp_log_setup("warn", "text");
    tcase_add_test(tc, test_exactly_once_under_kill_9);
    tcase_set_timeout(tc, 300);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
