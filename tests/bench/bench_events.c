/*
 * bench_events.c - how fast events/ parses, validates and encodes: one small
 * crash_report, an NDJSON body of 10,000 events, a 1,000,000-number
 * data_sample, and crash_twin, a declared type with crash_report's fields, as
 * a ratio to the compiled one (target >= 0.7). Each figure runs for a bounded
 * time; prints, never fails on speed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "etc/decl.h"
#include "etc/err.h"
#include "events/events.h"

#define SEED_EVENT                                                                                 \
    "{\"event_name\": \"crash_report\",\"user_id\": 888,\"timestamp\": 1000,"                      \
    "\"message\": \"have_fun\"}"
#define TWIN_EVENT                                                                                 \
    "{\"event_name\": \"crash_twin\",\"user_id\": 888,\"timestamp\": 1000,"                        \
    "\"message\": \"have_fun\"}"

/* crash_twin: what a configuration declaring crash_report's fields gives. */
static struct dp_field_decl twin_fields[] = {
    {.name = "user_id", .type = DP_FIELD_INTEGER, .required = true},
    {.name = "timestamp", .type = DP_FIELD_TIMESTAMP, .required = true},
    {.name = "message", .type = DP_FIELD_STRING, .required = true},
};
static struct dp_type_decl twin_decl = {
    .name = "crash_twin",
    .fields = twin_fields,
    .n_fields = 3,
};

/* Each figure: ROUNDS rounds of at least ROUND_SECONDS; the best and the mean are printed. */
#define ROUNDS 5
#define ROUND_SECONDS 0.2

/* Seconds per call of one operation: best round and mean over all rounds. */
struct timing {
    double best_s;
    double mean_s;
};

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
die(const char *what)
{
    fprintf(stderr, "bench_events: %s\n", what);
    exit(1);
}

static void
parse_once(const char *body, size_t len, size_t expect_valid)
{
    struct ev_batch b = {0};

    if (ev_parse_body(body, len, NULL, &b) != 0 || b.n_valid != expect_valid) {
        die("body did not parse as expected");
    }
    ev_batch_free(&b);
}

static void
encode_once(const struct ev_type *t, const struct ev_stored *ev, struct ev_buf *out)
{
    char err[EV_ERR_MAX];

    out->len = 0;
    if (ev_encode(t, ev, out, err) != 0) {
        die(err);
    }
}

/* What measure() times. */
enum op {
    OP_PARSE,  /* ev_parse_body: split, parse, validate */
    OP_ENCODE, /* ev_encode: parse, validate, COPY row */
    OP_BOTH,   /* what an event costs from body to row: both of the above */
};

/* Run op in rounds; t is the type to encode with. */
static struct timing
measure_op(const char *body, size_t len, size_t expect_valid, const struct ev_type *t, enum op op,
           int rounds)
{
    struct ev_stored ev = {.json = body, .json_len = len, .received_us = 1, .now_us = 2};
    struct ev_buf out = {0};
    struct timing tm = {.best_s = 1e9, .mean_s = 0};
    double total_s = 0;
    long total_runs = 0;
    int r;

    for (r = 0; r < rounds; r++) {
        double start = now_s();
        double elapsed;
        long runs = 0;

        do {
            if (op != OP_ENCODE) {
                parse_once(body, len, expect_valid);
            }
            if (op != OP_PARSE) {
                encode_once(t, &ev, &out);
            }
            runs++;
            elapsed = now_s() - start;
        } while (elapsed < ROUND_SECONDS);
        if (elapsed / (double)runs < tm.best_s) {
            tm.best_s = elapsed / (double)runs;
        }
        total_s += elapsed;
        total_runs += runs;
    }
    tm.mean_s = total_s / (double)total_runs;
    ev_buf_free(&out);
    return tm;
}

/* Parse when t is NULL, else encode. */
static struct timing
measure(const char *body, size_t len, size_t expect_valid, const struct ev_type *t)
{
    return measure_op(body, len, expect_valid, t, t == NULL ? OP_PARSE : OP_ENCODE, ROUNDS);
}

/*
 * Body to row for a and for b, their rounds alternating so that both see the same machine
 * (a shared one's load changes from second to second): best and mean of each.
 */
static void
measure_pair(const char *a, const struct ev_type *ta, const char *b, const struct ev_type *tb,
             struct timing *out_a, struct timing *out_b)
{
    struct timing sum_a = {1e9, 0};
    struct timing sum_b = {1e9, 0};

    for (int r = 0; r < ROUNDS; r++) {
        struct timing x = measure_op(a, strlen(a), 1, ta, OP_BOTH, 1);
        struct timing y = measure_op(b, strlen(b), 1, tb, OP_BOTH, 1);

        sum_a.best_s = x.best_s < sum_a.best_s ? x.best_s : sum_a.best_s;
        sum_b.best_s = y.best_s < sum_b.best_s ? y.best_s : sum_b.best_s;
        sum_a.mean_s += x.mean_s / ROUNDS;
        sum_b.mean_s += y.mean_s / ROUNDS;
    }
    *out_a = sum_a;
    *out_b = sum_b;
}

static void
report(const char *what, struct timing tm, double events_per_op, size_t bytes)
{
    printf("%-40s %10.0f events/s %12.1f ns/event (mean %12.1f) %7.1f MB/s\n", what,
           events_per_op / tm.best_s, tm.best_s * 1e9 / events_per_op,
           tm.mean_s * 1e9 / events_per_op, (double)bytes / tm.best_s / 1e6);
}

int
main(void)
{
    const size_t n_lines = 10000;
    const size_t n_numbers = 1000000;
    char *ndjson = malloc(n_lines * 128);
    char *sample = malloc(n_numbers * 24 + 128);
    const struct ev_type *crash = ev_lookup("crash_report", 12);
    const struct ev_type *sample_type = ev_lookup("data_sample", 11);
    const struct ev_type *twin;
    struct dp_types declared = {&twin_decl, 1};
    struct timing compiled_tm;
    struct timing twin_tm;
    size_t seed_len = strlen(SEED_EVENT);
    size_t len = 0;
    size_t i;

    if (ndjson == NULL || sample == NULL || ev_registry_update(&declared, NULL, NULL) != 0) {
        return 1;
    }
    twin = ev_lookup("crash_twin", 10);
    for (i = 0; i < n_lines; i++) {
        len += (size_t)sprintf(ndjson + len,
                               "{\"event_name\": \"crash_report\",\"user_id\": %zu,"
                               "\"timestamp\": %zu,\"message\": \"have_fun\"}\n",
                               i, 1000 + i);
    }
    printf("best of %d rounds of %.1f s; ns/event (mean over all rounds)\n", ROUNDS, ROUND_SECONDS);
    report("parse+validate: seed crash_report", measure(SEED_EVENT, seed_len, 1, NULL), 1,
           seed_len);
    report("parse+validate: NDJSON, 10,000 events", measure(ndjson, len, n_lines, NULL),
           (double)n_lines, len);
    report("encode: seed crash_report", measure(SEED_EVENT, seed_len, 1, crash), 1, seed_len);
    measure_pair(SEED_EVENT, crash, TWIN_EVENT, twin, &compiled_tm, &twin_tm);
    report("parse+validate+encode: crash_report", compiled_tm, 1, seed_len);
    report("parse+validate+encode: declared twin", twin_tm, 1, strlen(TWIN_EVENT));
    printf("ratio declared crash_twin / compiled crash_report (events/s): %.2f "
           "(target >= 0.70)\n",
           compiled_tm.best_s / twin_tm.best_s);
    len = (size_t)sprintf(sample, "{\"event_name\": \"data_sample\", "
                                  "\"time_stamp\": \"2024-05-01T12:00:00Z\", \"data\": [");
    for (i = 0; i < n_numbers; i++) {
        len += (size_t)sprintf(sample + len, "%s%zu.%03zu", i ? "," : "", 1000000 + i, i % 1000);
    }
    len += (size_t)sprintf(sample + len, "]}");
    report("parse+validate: data_sample, 1e6 numbers", measure(sample, len, 1, NULL), 1, len);
    report("encode: data_sample, 1e6 numbers", measure(sample, len, 1, sample_type), 1, len);
    free(ndjson);
    free(sample);
    return 0;
}
