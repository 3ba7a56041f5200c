/*
 * check_config.c - the configuration module: defaults, lookup order, JSON and
 * libconfig files giving the same tree, and every error with its exact text.
 * Also the logging formats. Each test works in its own temporary directory.
 */
#include "etc/config.h"
#include "etc/err.h"
#include "etc/log.h"
#include "etc/retention.h"
#include "tests/lib/lib_test.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *dir;

static void
setup(void)
{
    dir = t_tmpdir();
}

static void
teardown(void)
{
    t_rmtree(dir);
    free(dir);
}

/* Load with the given files (NULL to skip); asserts success. */
static struct dp_config *
load_ok(const char *sys, const char *env, const char *cli)
{
    struct dp_config_sources src = {sys, env, cli};
    struct dp_config *cfg = NULL;
    char *errors = NULL;
    int rc = dp_config_load(&src, &cfg, &errors);

    ck_assert_msg(rc == 0, "load failed: %s", errors ? errors : "(no text)");
    ck_assert_ptr_null(errors);
    ck_assert_ptr_nonnull(cfg);
    return cfg;
}

/* Load one file expecting failure; returns the malloc'd error text. */
static char *
load_err(const char *cli)
{
    struct dp_config_sources src = {NULL, NULL, cli};
    struct dp_config *cfg = NULL;
    char *errors = NULL;
    int rc = dp_config_load(&src, &cfg, &errors);

    ck_assert_int_eq(rc, DP_ERR_CONFIG);
    ck_assert_ptr_null(cfg);
    ck_assert_ptr_nonnull(errors);
    return errors;
}

START_TEST(test_defaults)
{
    struct dp_config *cfg = load_ok(NULL, NULL, NULL);
    char host[256] = "";

    gethostname(host, sizeof(host));
    ck_assert_str_eq(cfg->server_listen, "127.0.0.1:8080");
    ck_assert_int_eq(cfg->server_threads, 64);
    ck_assert_int_eq(cfg->server_max_body_bytes, 33554432);
    ck_assert_int_eq(cfg->server_request_timeout_ms, 30000);
    ck_assert_int_eq(cfg->server_max_events_per_body, 100000);
    ck_assert_int_eq(cfg->server_max_inflight_bytes, 268435456);
    ck_assert_uint_eq(cfg->server_api_keys_len, 0);
    ck_assert_ptr_null(cfg->server_api_keys[0]);
    ck_assert_ptr_null(cfg->server_api_keys_file);
    ck_assert_uint_eq(cfg->server_cors_origins_len, 0);
    ck_assert_ptr_null(cfg->server_tls_certificate);
    ck_assert_str_eq(cfg->queue_path, "/var/lib/datapipe/queue");
    ck_assert_int_eq(cfg->queue_max_bytes, 1073741824);
    ck_assert(cfg->queue_sync);
    ck_assert_str_eq(cfg->queue_id, host);
    ck_assert_str_eq(cfg->database_conninfo, "dbname=datapipe");
    ck_assert_str_eq(cfg->database_schema, "datapipe");
    ck_assert_int_eq(cfg->loader_interval_s, 300);
    ck_assert_int_eq(cfg->loader_min_interval_s, 5);
    ck_assert_int_eq(cfg->loader_high_water, 100000);
    ck_assert_int_eq(cfg->loader_batch_rows, 50000);
    ck_assert_int_eq(cfg->loader_workers, 2);
    ck_assert_str_eq(cfg->log_level, "info");
    ck_assert_str_eq(cfg->log_format, "text");
    dp_config_destroy(cfg);
}
END_TEST

START_TEST(test_precedence_key_by_key)
{
    char *sys = t_write_file(dir, "sys.json",
                             "{\"server\": {\"threads\": 8}, \"loader\": {\"workers\": 3},"
                             " \"log\": {\"level\": \"debug\"}}",
                             -1);
    char *env = t_write_file(dir, "env.json", "{\"server\": {\"threads\": 16}}", -1);
    char *cli = t_write_file(dir, "cli.json", "{\"loader\": {\"workers\": 5}}", -1);
    struct dp_config *cfg;

    cfg = load_ok(sys, NULL, NULL);
    ck_assert_int_eq(cfg->server_threads, 8);
    ck_assert_int_eq(cfg->loader_workers, 3);
    dp_config_destroy(cfg);

    cfg = load_ok(sys, env, NULL);
    ck_assert_int_eq(cfg->server_threads, 16);
    ck_assert_int_eq(cfg->loader_workers, 3);
    dp_config_destroy(cfg);

    cfg = load_ok(sys, env, cli);
    ck_assert_int_eq(cfg->server_threads, 16);     /* from env */
    ck_assert_int_eq(cfg->loader_workers, 5);      /* from cli */
    ck_assert_str_eq(cfg->log_level, "debug");     /* from the system file */
    ck_assert_int_eq(cfg->loader_interval_s, 300); /* default */
    dp_config_destroy(cfg);
    free(sys);
    free(env);
    free(cli);
}
END_TEST

START_TEST(test_missing_system_file_is_skipped)
{
    char *missing;
    struct dp_config *cfg;

    ck_assert_int_ge(asprintf(&missing, "%s/none.json", dir), 0);
    cfg = load_ok(missing, NULL, NULL);
    ck_assert_int_eq(cfg->server_threads, 64);
    dp_config_destroy(cfg);
    free(missing);
}
END_TEST

START_TEST(test_env_file_missing)
{
    struct dp_config_sources src;
    struct dp_config *cfg = NULL;
    char *errors = NULL;
    char *missing;
    char *want;

    ck_assert_int_ge(asprintf(&missing, "%s/nope.json", dir), 0);
    setenv("DATAPIPE_CNF", missing, 1);
    src = dp_config_sources_default(NULL);
    ck_assert_str_eq(src.env_path, missing);
    ck_assert_str_eq(src.system_path, "/etc/datapipe.json");
    src.system_path = NULL;
    ck_assert_int_eq(dp_config_load(&src, &cfg, &errors), DP_ERR_CONFIG);
    ck_assert_int_ge(asprintf(&want, "%s: cannot read: No such file or directory\n", missing), 0);
    ck_assert_str_eq(errors, want);
    free(want);
    free(errors);
    free(missing);
    unsetenv("DATAPIPE_CNF");
}
END_TEST

static const char json_full[] =
    "{\n"
    "  \"server\": {\"listen\": \"127.0.0.1:9999\", \"threads\": 12, \"max_body_bytes\": 1000,\n"
    "              \"api_keys\": [\"k1\", \"k2\"], \"cors_origins\": [\"https://a.example\"],\n"
    "              \"tls_certificate\": null},\n"
    "  \"queue\": {\"path\": \"/q\", \"max_bytes\": 10485760, \"sync\": false, \"id\": "
    "\"box-1\"},\n"
    "  \"database\": {\"conninfo\": \"host=/s dbname=x\", \"schema\": \"s1\"},\n"
    "  \"loader\": {\"interval_s\": 60, \"min_interval_s\": 2, \"high_water\": 5000000000,\n"
    "              \"batch_rows\": 1000, \"workers\": 4},\n"
    "  \"log\": {\"level\": \"warn\", \"format\": \"json\"}\n"
    "}\n";

static const char cfg_full[] =
    "# the same settings in libconfig syntax\n"
    "server = { listen = \"127.0.0.1:9999\"; threads = 12; max_body_bytes = 1000;\n"
    "           api_keys = [\"k1\", \"k2\"]; cors_origins = (\"https://a.example\"); };\n"
    "queue = { path = \"/q\"; max_bytes = 10485760; sync = false; id = \"box-1\"; };\n"
    "database = { conninfo = \"host=/s dbname=x\"; schema = \"s1\"; };\n"
    "loader = { interval_s = 60; min_interval_s = 2; high_water = 5000000000L;\n"
    "           batch_rows = 1000; workers = 4; };\n"
    "log = { level = \"warn\"; format = \"json\"; };\n";

START_TEST(test_json_and_libconfig_same_tree)
{
    char *j = t_write_file(dir, "a.json", json_full, -1);
    char *c = t_write_file(dir, "a.cfg", cfg_full, -1);
    char *conf = t_write_file(dir, "a.conf", cfg_full, -1);
    struct dp_config *cj = load_ok(NULL, NULL, j);
    struct dp_config *cc = load_ok(NULL, NULL, c);
    struct dp_config *cn = load_ok(NULL, NULL, conf);
    char *tj = dp_config_to_json(cj);
    char *tc = dp_config_to_json(cc);
    char *tn = dp_config_to_json(cn);

    ck_assert_str_eq(tj, tc);
    ck_assert_str_eq(tj, tn);
    ck_assert_int_eq(cj->server_threads, 12);
    ck_assert_int_eq(cj->loader_high_water, 5000000000LL);
    ck_assert(!cj->queue_sync);
    ck_assert_uint_eq(cj->server_api_keys_len, 2);
    ck_assert_str_eq(cj->server_api_keys[1], "k2");
    ck_assert_str_eq(cc->server_cors_origins[0], "https://a.example");
    ck_assert_str_eq(cc->queue_id, "box-1");
    /* Secrets never appear in the printed configuration. */
    ck_assert_ptr_null(strstr(tj, "k1"));
    ck_assert_ptr_nonnull(strstr(tj, "<redacted>"));
    free(tj);
    free(tc);
    free(tn);
    dp_config_destroy(cj);
    dp_config_destroy(cc);
    dp_config_destroy(cn);
    free(j);
    free(c);
    free(conf);
}
END_TEST

/* Each bad file and the exact error text it must produce (after "FILE: "). */
static const struct {
    const char *name;
    const char *text;
    const char *error;
} bad[] = {
    {"unknown.json", "{\"loader\": {\"intervall_s\": 5}}", "loader.intervall_s: unknown key"},
    {"section.json", "{\"lodaer\": {\"interval_s\": 5}}", "lodaer: unknown key"},
    {"type.json", "{\"server\": {\"threads\": \"8\"}}",
     "server.threads: expected integer, got string"},
    {"range.json", "{\"server\": {\"threads\": 0}}", "server.threads: must be 1..4096"},
    {"range2.json", "{\"server\": {\"threads\": 5000}}", "server.threads: must be 1..4096"},
    {"bool.json", "{\"queue\": {\"sync\": 1}}", "queue.sync: expected boolean, got integer"},
    {"real.json", "{\"loader\": {\"interval_s\": 1.5}}",
     "loader.interval_s: expected integer, got number"},
    {"choice.json", "{\"log\": {\"level\": \"verbose\"}}",
     "log.level: must be one of debug, info, warn, error"},
    {"list.json", "{\"server\": {\"api_keys\": [\"a\", 3]}}",
     "server.api_keys[1]: expected string or object, got number"},
    {"keytype.json",
     "{\"server\": {\"api_keys\": [\"a\", {\"key\": \"b\", "
     "\"events_per_s\": \"10\"}]}}",
     "server.api_keys[1].events_per_s: expected integer, got string"},
    {"keyreal.json", "{\"server\": {\"api_keys\": [{\"key\": \"b\", \"events_per_s\": 1.5}]}}",
     "server.api_keys[0].events_per_s: expected integer, got number"},
    {"keynull.json",
     "{\"server\": {\"api_keys\": [{\"key\": \"b\", \"events_per_s\": 5, "
     "\"burst\": null}]}}",
     "server.api_keys[0].burst: expected integer, got null"},
    {"keyname.json", "{\"server\": {\"api_keys\": [{\"key\": \"b\", \"name\": 7}]}}",
     "server.api_keys[0].name: expected string, got integer"},
    {"keyunknown.json", "{\"server\": {\"api_keys\": [{\"key\": \"b\", \"rate\": 5}]}}",
     "server.api_keys[0].rate: unknown key"},
    {"keymissing.json", "{\"server\": {\"api_keys\": [\"a\", {\"name\": \"x\"}]}}",
     "server.api_keys[1].key: required"},
    {"keyrange.json", "{\"server\": {\"api_keys\": [{\"key\": \"b\", \"events_per_s\": 0}]}}",
     "server.api_keys[0].events_per_s: must be 1..1000000000"},
    {"keyburst.json", "{\"server\": {\"api_keys\": [{\"key\": \"b\", \"burst\": 5}]}}",
     "server.api_keys[0].burst: needs events_per_s"},
    {"keybadname.json", "{\"server\": {\"api_keys\": [{\"key\": \"b\", \"name\": \"a b\"}]}}",
     "server.api_keys[0].name: 1 to 63 letters, digits, '_', '.' or '-'"},
    {"keytype.cfg", "server = { api_keys = ( \"a\", { key = \"b\"; events_per_s = \"x\"; } ); };",
     "server.api_keys[1].events_per_s: expected integer, got string"},
    {"notlist.json", "{\"server\": {\"cors_origins\": \"https://a\"}}",
     "server.cors_origins: expected array of strings, got string"},
    {"null.json", "{\"server\": {\"listen\": null}}", "server.listen: null is not allowed here"},
    {"empty.json", "{\"queue\": {\"path\": \"\"}}", "queue.path: must not be empty"},
    {"flat.json", "{\"server\": 5}", "server: expected object, got integer"},
    {"syntax.json", "{\n  \"server\": {\n    \"threads\": 8,,\n  }\n}",
     "line 3 column 18: string or '}' expected near ','"},
    {"toplevel.json", "[1, 2]", "the top level must be an object"},
    {"bad.cfg", "server = { threads = ; };", "line 1: syntax error"},
    {"unknown.cfg", "loader = { intervall_s = 5; };", "loader.intervall_s: unknown key"},
    {"type.cfg", "server = { threads = \"8\"; };", "server.threads: expected integer, got string"},
    {"ret.json", "{\"retention\": 5}", "retention: expected object, got integer"},
    {"retrule.json", "{\"retention\": {\"crash_report\": 30}}",
     "retention.crash_report: expected object, got integer"},
    {"retpart.json",
     "{\"retention\": {\"crash_report\": {\"partition\": \"week\", "
     "\"keep_days\": 30}}}",
     "retention.crash_report.partition: expected \"day\""},
    {"retdays.json",
     "{\"retention\": {\"crash_report\": {\"partition\": \"day\", "
     "\"keep_days\": 0}}}",
     "retention.crash_report.keep_days: expected an integer from 1 to 36600"},
    {"retnodays.json", "{\"retention\": {\"crash_report\": {\"partition\": \"day\"}}}",
     "retention.crash_report.keep_days: required"},
    {"retkey.json",
     "{\"retention\": {\"crash_report\": {\"partition\": \"day\", "
     "\"keep_days\": 3, \"keep\": 1}}}",
     "retention.crash_report.keep: unknown key"},
};

START_TEST(test_errors_exact)
{
    char *path = t_write_file(dir, bad[_i].name, bad[_i].text, -1);
    char *errors = load_err(path);
    char *want;

    ck_assert_int_ge(asprintf(&want, "%s: %s\n", path, bad[_i].error), 0);
    ck_assert_str_eq(errors, want);
    free(want);
    free(errors);
    free(path);
}
END_TEST

START_TEST(test_every_error_reported)
{
    char *path = t_write_file(dir, "many.json",
                              "{\"server\": {\"threads\": \"x\", \"bogus\": 1},"
                              " \"loader\": {\"workers\": 0}}",
                              -1);
    char *errors = load_err(path);
    char *want;

    ck_assert_int_ge(asprintf(&want,
                              "%1$s: server.threads: expected integer, got string\n"
                              "%1$s: server.bogus: unknown key\n"
                              "%1$s: loader.workers: must be 1..64\n",
                              path),
                     0);
    ck_assert_str_eq(errors, want);
    free(want);
    free(errors);
    free(path);
}
END_TEST

/* Retention rules name a type that exists and is not an upsert; a good one is printed back. */
START_TEST(test_retention_types)
{
    char *path = t_write_file(dir, "r.json",
                              "{\"retention\": {\"product\": {\"partition\": \"day\", "
                              "\"keep_days\": 3}, \"nosuch\": {\"partition\": \"day\", "
                              "\"keep_days\": 3}, \"users\": {\"partition\": \"day\", "
                              "\"keep_days\": 3}}}",
                              -1);
    char *good = t_write_file(dir, "g.json",
                              "{\"types\": {\"clicks\": {\"fields\": {\"n\": "
                              "{\"type\": \"integer\"}}}}, \"retention\": {\"clicks\": "
                              "{\"partition\": \"day\", \"keep_days\": 7}, "
                              "\"crash_report\": {\"partition\": \"day\", "
                              "\"keep_days\": 30}, \"tracks\": {\"partition\": \"day\", "
                              "\"keep_days\": 90}}}",
                              -1);
    char *errors = load_err(path);
    struct dp_config_sources src = {NULL, NULL, good};
    struct dp_config *cfg = NULL;
    char *err = NULL;

    ck_assert_str_eq(errors, "retention.product: an upsert table is not partitioned (its rows "
                             "are updated in place)\n"
                             "retention.nosuch: no such event type (built-in or declared in "
                             "\"types\")\n"
                             "retention.users: an upsert table is not partitioned (its rows "
                             "are updated in place)\n");
    ck_assert_int_eq(dp_config_load(&src, &cfg, &err), 0);
    ck_assert_int_eq(dp_retention_find(cfg->retention, "clicks")->keep_days, 7);
    ck_assert_int_eq(dp_retention_find(cfg->retention, "crash_report")->keep_days, 30);
    ck_assert_int_eq(dp_retention_find(cfg->retention, "tracks")->keep_days, 90);
    ck_assert_ptr_null(dp_retention_find(cfg->retention, "ad_event"));
    dp_config_destroy(cfg);
    free(errors);
    free(good);
    free(path);
}
END_TEST

START_TEST(test_cross_checks)
{
    char *path = t_write_file(dir, "x.json",
                              "{\"server\": {\"listen\": \"127.0.0.1:8443s\"},"
                              " \"loader\": {\"interval_s\": 10, \"min_interval_s\": 20}}",
                              -1);
    char *errors = load_err(path);

    ck_assert_str_eq(errors, "loader.min_interval_s: must not exceed loader.interval_s (10)\n"
                             "server.tls_certificate: required by the TLS port in "
                             "server.listen\n");
    free(errors);
    free(path);
}
END_TEST

START_TEST(test_api_keys_file)
{
    char *keys = t_write_file(dir, "keys",
                              "# operators\n  alpha  \n\nbe#ta\n  # indented\n#gamma\n"
                              "k#1 # not a comment\n",
                              -1);
    char *text;
    char *path;
    struct dp_config *cfg;

    ck_assert_int_ge(asprintf(&text,
                              "{\"server\": {\"api_keys\": [\"zero\"], "
                              "\"api_keys_file\": \"%s\"}}",
                              keys),
                     0);
    path = t_write_file(dir, "k.json", text, -1);
    cfg = load_ok(NULL, NULL, path);
    /* Only a line starting with '#' is a comment: a '#' inside a key is part of it. */
    ck_assert_uint_eq(cfg->server_api_keys_len, 4);
    ck_assert_str_eq(cfg->server_api_keys[0], "zero");
    ck_assert_str_eq(cfg->server_api_keys[1], "alpha");
    ck_assert_str_eq(cfg->server_api_keys[2], "be#ta");
    ck_assert_str_eq(cfg->server_api_keys[3], "k#1 # not a comment");
    ck_assert_ptr_null(cfg->server_api_keys[4]);
    ck_assert_str_eq(cfg->server_api_keys_file, keys);
    dp_config_destroy(cfg);
    free(text);
    free(path);
    free(keys);
}
END_TEST

/* API key objects, strings and name:key lines: names, limits and tags; keys never shown. */
START_TEST(test_api_key_objects)
{
    char *keys = t_write_file(dir, "keys", "# ops\nlaptop:s3cr:et\nplain\nbad name:k\n", -1);
    char *text;
    char *path;
    char *cfg_path;
    char *json;
    char *errors;
    struct dp_config *cfg;

    ck_assert_int_ge(asprintf(&text,
                              "{\"server\": {\"api_keys\": [\"zero\", "
                              "{\"name\": \"mobile\", \"key\": \"m-1\", "
                              "\"events_per_s\": 100, \"burst\": 500}, "
                              "{\"key\": \"m-2\", \"events_per_s\": 7}], "
                              "\"api_keys_file\": \"%s\"}}",
                              keys),
                     0);
    path = t_write_file(dir, "k.json", text, -1);
    cfg = load_ok(NULL, NULL, path);
    ck_assert_uint_eq(cfg->server_api_keys_len, 6);
    ck_assert_str_eq(cfg->server_api_keys[0], "zero");
    ck_assert_str_eq(cfg->server_api_key_info[0].name, "key-f9194e73");
    ck_assert_int_eq(cfg->server_api_key_info[0].events_per_s, 0);
    ck_assert_str_eq(cfg->server_api_keys[1], "m-1");
    ck_assert_str_eq(cfg->server_api_key_info[1].name, "mobile");
    ck_assert_int_eq(cfg->server_api_key_info[1].events_per_s, 100);
    ck_assert_int_eq(cfg->server_api_key_info[1].burst, 500);
    /* burst defaults to a second's worth */
    ck_assert_int_eq(cfg->server_api_key_info[2].events_per_s, 7);
    ck_assert_int_eq(cfg->server_api_key_info[2].burst, 7);
    /* name:key splits at the first ':'; a line whose prefix is no name is all key */
    ck_assert_str_eq(cfg->server_api_keys[3], "s3cr:et");
    ck_assert_str_eq(cfg->server_api_key_info[3].name, "laptop");
    ck_assert_str_eq(cfg->server_api_keys[4], "plain");
    ck_assert_str_eq(cfg->server_api_key_info[4].name, "key-a116c9ed");
    ck_assert_str_eq(cfg->server_api_keys[5], "bad name:k");
    json = dp_config_to_json(cfg);
    ck_assert_ptr_nonnull(strstr(json, "\"name\": \"mobile\""));
    ck_assert_ptr_nonnull(strstr(json, "\"burst\": 500"));
    ck_assert_ptr_null(strstr(json, "m-1"));
    ck_assert_ptr_null(strstr(json, "s3cr"));
    free(json);
    dp_config_destroy(cfg);
    free(text);

    /* A name labels one key only (a file's line counts after the array's entries). */
    ck_assert_int_ge(asprintf(&text,
                              "{\"server\": {\"api_keys\": [{\"name\": \"laptop\", "
                              "\"key\": \"x\"}], \"api_keys_file\": \"%s\"}}",
                              keys),
                     0);
    cfg_path = t_write_file(dir, "dup.json", text, -1);
    errors = load_err(cfg_path);
    ck_assert_str_eq(errors, "server.api_keys[1].name: laptop is the name of server.api_keys[0] "
                             "too\n");
    free(errors);
    free(cfg_path);
    free(text);
    free(path);
    free(keys);
}
END_TEST

START_TEST(test_later_null_unsets)
{
    char *a = t_write_file(dir, "a.json", "{\"server\": {\"tls_certificate\": \"/c.pem\"}}", -1);
    char *b = t_write_file(dir, "b.json", "{\"server\": {\"tls_certificate\": null}}", -1);
    struct dp_config *cfg = load_ok(NULL, a, NULL);

    ck_assert_str_eq(cfg->server_tls_certificate, "/c.pem");
    dp_config_destroy(cfg);
    cfg = load_ok(NULL, a, b);
    ck_assert_ptr_null(cfg->server_tls_certificate);
    dp_config_destroy(cfg);
    free(a);
    free(b);
}
END_TEST

/* Run fn with stderr captured; returns what it wrote (malloc'd). */
static char *
capture_stderr(void (*fn)(void))
{
    int fds[2];
    int saved = dup(2);
    char *buf = calloc(1, 65536);
    ssize_t n;

    ck_assert_int_eq(pipe(fds), 0);
    dup2(fds[1], 2);
    close(fds[1]);
    fn();
    dup2(saved, 2);
    close(saved);
    n = read(fds[0], buf, 65535);
    ck_assert_int_gt(n, 0);
    close(fds[0]);
    return buf;
}

static void
log_some(void)
{
    dp_debug("hidden", "k=%d", 1);
    dp_info("batch loaded", "rows=%d error=%s queue=%s", 5, "no route to host", "q1");
    dp_warn("plain", NULL);
}

/* Values of every shape: numbers, near-numbers, and text ending in a newline (libpq's and
 * civetweb's messages do). */
static void
log_shapes(void)
{
    dp_info("shapes", "a=-12 b=0.25 c=007 d=12e4 e=1. f=0 g=-x h=3 words id=01a2 m=oops\n");
    dp_error("trailing newline\n", "error=%s", "line one\nline two\n");
}

START_TEST(test_log_text)
{
    char *out;

    ck_assert_int_eq(dp_log_setup("info", "text"), 0);
    out = capture_stderr(log_some);
    ck_assert_ptr_null(strstr(out, "hidden"));
    ck_assert_ptr_nonnull(strstr(out, "Z info batch loaded rows=5 error=no route to host "
                                      "queue=q1\n"));
    ck_assert_ptr_nonnull(strstr(out, "Z warn plain\n"));
    ck_assert_int_eq(out[4], '-');
    free(out);
    /* One record, one line: no empty line after it, an inner newline blanked. */
    out = capture_stderr(log_shapes);
    ck_assert_ptr_null(strstr(out, "\n\n"));
    ck_assert_ptr_nonnull(strstr(out, " m=oops\n"));
    ck_assert_ptr_nonnull(strstr(out, "Z error trailing newline error=line one line two\n"));
    free(out);
}
END_TEST

START_TEST(test_log_json)
{
    char *out;
    char *second;

    ck_assert_int_eq(dp_log_setup("debug", "json"), 0);
    out = capture_stderr(log_some);
    ck_assert_ptr_nonnull(strstr(out, "\"level\":\"debug\",\"msg\":\"hidden\",\"k\":1}\n"));
    second = strchr(out, '\n') + 1;
    ck_assert_ptr_nonnull(strstr(second, "\"level\":\"info\",\"msg\":\"batch loaded\","
                                         "\"rows\":5,\"error\":\"no route to host\","
                                         "\"queue\":\"q1\"}\n"));
    ck_assert(strncmp(second, "{\"ts\":\"", 7) == 0);
    free(out);
    /* Integers and decimal fractions are JSON numbers; the rest stays text; one line each. */
    out = capture_stderr(log_shapes);
    ck_assert_ptr_null(strstr(out, "\n\n"));
    ck_assert_ptr_nonnull(strstr(out, "\"msg\":\"shapes\",\"a\":-12,\"b\":0.25,\"c\":\"007\","
                                      "\"d\":\"12e4\",\"e\":\"1.\",\"f\":0,\"g\":\"-x\","
                                      "\"h\":\"3 words\",\"id\":\"01a2\",\"m\":\"oops\"}\n"));
    ck_assert_ptr_nonnull(strstr(out, "\"msg\":\"trailing newline\","
                                      "\"error\":\"line one\\u000aline two\"}\n"));
    ck_assert_int_eq(dp_log_setup("loud", "json"), DP_ERR_INVALID);
    ck_assert_int_eq(dp_log_setup("info", "xml"), DP_ERR_INVALID);
    free(out);
}
END_TEST

START_TEST(test_strerror)
{
    ck_assert_str_eq(dp_strerror(DP_ERR_FULL), "queue full");
    ck_assert_str_eq(dp_strerror(0), "success");
    ck_assert_str_eq(dp_strerror(-999), "unknown error");
}
END_TEST

/* dp_config_diff callback: append "key=reloadable " to the text in arg. */
static void
diff_collect(void *arg, const char *key, bool reloadable)
{
    char *text = arg;
    size_t used = strlen(text);

    snprintf(text + used, 512 - used, "%s=%d ", key, reloadable ? 1 : 0);
}

/* SIGHUP's view: per daemon, what changed, in table order, and whether it may be reloaded. */
START_TEST(test_diff_reloadable_per_daemon)
{
    char *f = t_write_file(dir, "new.json",
                           "{\"server\": {\"threads\": 17, \"api_keys\": [\"k\"]},"
                           " \"queue\": {\"id\": \"other\"},"
                           " \"loader\": {\"interval_s\": 60, \"workers\": 3},"
                           " \"log\": {\"level\": \"debug\"}}",
                           -1);
    struct dp_config *old = load_ok(NULL, NULL, NULL);
    struct dp_config *fresh = load_ok(NULL, NULL, f);
    char text[512] = "";

    dp_config_diff(old, fresh, DP_DAEMON_LOADER, diff_collect, text);
    ck_assert_str_eq(text, "queue.id=0 loader.interval_s=1 loader.workers=0 log.level=1 ");
    text[0] = '\0';
    dp_config_diff(old, fresh, DP_DAEMON_SERVER, diff_collect, text);
    ck_assert_str_eq(text, "server.threads=0 server.api_keys=1 log.level=1 ");
    text[0] = '\0';
    dp_config_diff(old, fresh, DP_DAEMON_SERVER | DP_DAEMON_LOADER, diff_collect, text);
    ck_assert_str_eq(text, "server.threads=0 server.api_keys=1 queue.id=0 loader.interval_s=1 "
                           "loader.workers=0 log.level=1 ");
    text[0] = '\0';
    dp_config_diff(fresh, fresh, DP_DAEMON_SERVER | DP_DAEMON_LOADER, diff_collect, text);
    ck_assert_str_eq(text, "");
    dp_config_destroy(old);
    dp_config_destroy(fresh);
    free(f);
}
END_TEST

static Suite *
config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("load");
    TCase *te = tcase_create("errors");
    TCase *tl = tcase_create("log");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_precedence_key_by_key);
    tcase_add_test(tc, test_missing_system_file_is_skipped);
    tcase_add_test(tc, test_json_and_libconfig_same_tree);
    tcase_add_test(tc, test_api_keys_file);
    tcase_add_test(tc, test_api_key_objects);
    tcase_add_test(tc, test_later_null_unsets);
    tcase_add_test(tc, test_diff_reloadable_per_daemon);
    suite_add_tcase(s, tc);

    tcase_add_checked_fixture(te, setup, teardown);
    tcase_add_loop_test(te, test_errors_exact, 0, (int)(sizeof(bad) / sizeof(bad[0])));
    tcase_add_test(te, test_every_error_reported);
    tcase_add_test(te, test_cross_checks);
    tcase_add_test(te, test_retention_types);
    tcase_add_test(te, test_env_file_missing);
    suite_add_tcase(s, te);

    tcase_add_test(tl, test_log_text);
    tcase_add_test(tl, test_log_json);
    tcase_add_test(tl, test_strerror);
    suite_add_tcase(s, tl);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(config_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
