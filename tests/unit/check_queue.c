/*
 * check_queue.c - Check suite for queue/: round trips, sequence numbers across reopen,
 * metadata, concurrent appends, a full map, injected write faults, SIGKILL crashes, two
 * processes sharing one queue, the loader lock and idempotency keys (repeats, conflicts,
 * the window, pruning, a map full of keys).
 * Every test works in its own temporary directory (t_tmpdir_in), removed afterwards.
 */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "etc/err.h"
#include "etc/log.h"
#include "events/events.h"
#include "queue/queue.h"
#include "queue/queue_test.h"
#include "tests/lib/lib_test.h"

#define MIB (1024u * 1024u)
#define BASE_US INT64_C(1700000000000000)

static char *g_base;  /* per TCase, made and removed in the runner process */
static char *g_dir;   /* per test, inside g_base */
static char *g_qpath; /* g_dir/q: the queue directory (queue_open creates it) */

static void
base_setup(void)
{
    g_base = t_tmpdir();
}

static void
base_teardown(void)
{
    t_rmtree(g_base);
    free(g_base);
    g_base = NULL;
}

static void
dir_setup(void)
{
    g_dir = t_tmpdir_in(g_base);
    ck_assert_int_ge(asprintf(&g_qpath, "%s/q", g_dir), 0);
}

static void
dir_teardown(void)
{
    t_rmtree(g_dir);
    free(g_dir);
    free(g_qpath);
}

/* ---- events derived from a tag, so a reader can check one without a table ---- */

struct tev {
    struct queue_event ev;
    char type[8];
    char json[256];
};

static const char *const ERRTEXT = "field user_id: expected integer";

/* Fill t with the event for tag: type, json, received_us and flags all follow from it. */
static void
tev_make(struct tev *t, uint64_t tag)
{
    int n;
    size_t pad = tag % 97;

    memset(t, 0, sizeof(*t));
    snprintf(t->type, sizeof(t->type), "t%u", (unsigned)(tag % 5));
    n = snprintf(t->json, sizeof(t->json), "{\"tag\":%" PRIu64 ",\"pad\":\"", tag);
    memset(t->json + n, 'a' + (int)(tag % 26), pad);
    memcpy(t->json + n + pad, "\"}", 2);
    t->ev.type = t->type;
    t->ev.type_len = strlen(t->type);
    t->ev.json = t->json;
    t->ev.json_len = (size_t)n + pad + 2;
    t->ev.received_us = BASE_US + (int64_t)tag;
    if (tag % 7 == 3) {
        t->ev.flags = QUEUE_F_REJECTED;
        t->ev.error = ERRTEXT;
        t->ev.error_len = strlen(ERRTEXT);
    }
    ev_uuid7(t->ev.uuid);
}

/* Check that ev read back is exactly the event for its tag; returns the tag. */
static uint64_t
tev_check(const struct queue_event *ev)
{
    struct tev want;
    uint64_t tag;
    char head[32];

    /* ev->json is not NUL-terminated (sscanf would run off the map): copy its start */
    ck_assert_uint_gt(ev->json_len, 8);
    memset(head, 0, sizeof(head));
    memcpy(head, ev->json, ev->json_len < sizeof(head) - 1 ? ev->json_len : sizeof(head) - 1);
    ck_assert_int_eq(sscanf(head, "{\"tag\":%" SCNu64, &tag), 1);
    tev_make(&want, tag);
    ck_assert_uint_eq(ev->type_len, want.ev.type_len);
    ck_assert_int_eq(memcmp(ev->type, want.type, ev->type_len), 0);
    ck_assert_uint_eq(ev->json_len, want.ev.json_len);
    ck_assert_int_eq(memcmp(ev->json, want.json, ev->json_len), 0);
    ck_assert_int_eq(ev->received_us, want.ev.received_us);
    ck_assert_uint_eq(ev->flags, want.ev.flags);
    ck_assert_uint_eq(ev->error_len, want.ev.error_len);
    if (want.ev.error_len > 0) {
        ck_assert_int_eq(memcmp(ev->error, ERRTEXT, ev->error_len), 0);
    } else {
        ck_assert_ptr_null(ev->error);
    }
    ck_assert_uint_eq(ev->uuid[6] >> 4, 7);
    return tag;
}

static struct queue *
open_q(uint64_t max_bytes)
{
    struct queue *q = NULL;

    ck_assert_int_eq(queue_open(&q, g_qpath, max_bytes, true), 0);
    ck_assert_ptr_nonnull(q);
    return q;
}

/* Append the events for tags [tag, tag + n) in one call; returns the call's result. */
static int
append_tags(struct queue *q, uint64_t tag, size_t n, uint64_t *seqs)
{
    struct tev t[16];
    struct queue_event evs[16];
    int rc;

    ck_assert_uint_le(n, 16);
    for (size_t i = 0; i < n; i++) {
        tev_make(&t[i], tag + i);
        evs[i] = t[i].ev;
    }
    rc = queue_append(q, evs, n);
    for (size_t i = 0; i < n && seqs != NULL; i++) {
        seqs[i] = evs[i].seq;
    }
    return rc;
}

/* A read callback that copies (seq, tag) pairs out, checking each event as it goes. */
struct collect {
    uint64_t *seqs;
    uint64_t *tags;
    size_t n;
    size_t cap;
    uint64_t uuid_errors; /* events whose uuid differs from the expected one, if given */
    const uint8_t (*uuids)[16];
    size_t nuuids;
};

static int
collect_fn(void *arg, const struct queue_event *ev)
{
    struct collect *c = arg;
    uint64_t tag = tev_check(ev);

    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 1024;
        c->seqs = realloc(c->seqs, c->cap * sizeof(*c->seqs));
        c->tags = realloc(c->tags, c->cap * sizeof(*c->tags));
        ck_assert_ptr_nonnull(c->seqs);
        ck_assert_ptr_nonnull(c->tags);
    }
    c->seqs[c->n] = ev->seq;
    c->tags[c->n] = tag;
    c->n++;
    return 0;
}

static void
collect_all(struct queue *q, struct collect *c)
{
    uint64_t last = 0;
    size_t count = 0;

    memset(c, 0, sizeof(*c));
    ck_assert_int_eq(queue_read(q, 0, SIZE_MAX, 0, collect_fn, c, &last, &count), 0);
    ck_assert_uint_eq(count, c->n);
    ck_assert_uint_eq(last, c->n > 0 ? c->seqs[c->n - 1] : 0);
    for (size_t i = 1; i < c->n; i++) {
        ck_assert_uint_gt(c->seqs[i], c->seqs[i - 1]);
    }
}

static void
collect_free(struct collect *c)
{
    free(c->seqs);
    free(c->tags);
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* xorshift64*: reproducible randomness for the crash and process tests. */
static uint64_t
rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

static uint64_t
rnd_seed(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40)) | 1;
}

/* ---- round trips ---- */

struct copy_one {
    struct queue_event ev[8];
    char store[8][2048];
    size_t n;
};

static int
copy_fn(void *arg, const struct queue_event *ev)
{
    struct copy_one *c = arg;
    char *p = c->store[c->n];

    ck_assert_uint_lt(c->n, 8);
    c->ev[c->n] = *ev;
    memcpy(p, ev->type, ev->type_len);
    c->ev[c->n].type = p;
    p += ev->type_len;
    if (ev->error != NULL) {
        memcpy(p, ev->error, ev->error_len);
        c->ev[c->n].error = p;
        p += ev->error_len;
    }
    if (ev->source != NULL) {
        memcpy(p, ev->source, ev->source_len);
        c->ev[c->n].source = p;
        p += ev->source_len;
    }
    memcpy(p, ev->json, ev->json_len);
    c->ev[c->n].json = p;
    c->n++;
    return 0;
}

START_TEST(test_roundtrip_fields)
{
    struct queue *q = open_q(8 * MIB);
    static const char bin[] = "{\"a\":\"x\0y\"}"; /* bytes kept exactly, NUL included */
    struct queue_event evs[3];
    struct queue_event one;
    struct copy_one got = {0};
    uint64_t last = 0;
    size_t count = 0;

    memset(evs, 0, sizeof(evs));
    for (int i = 0; i < 3; i++) {
        ev_uuid7(evs[i].uuid);
        evs[i].type = "crash_report";
        evs[i].type_len = strlen("crash_report");
        evs[i].received_us = BASE_US + i;
    }
    evs[0].json = bin;
    evs[0].json_len = sizeof(bin) - 1;
    evs[1].json = "";
    evs[1].json_len = 0;
    evs[2].json = "{not json";
    evs[2].json_len = 9;
    evs[2].flags = QUEUE_F_REJECTED;
    evs[2].error = "invalid JSON at byte 1";
    evs[2].error_len = strlen(evs[2].error);
    /* The source (an API key's name) travels with the event, a rejected one too. */
    evs[0].source = "mobile-app";
    evs[0].source_len = strlen("mobile-app");
    evs[2].source = "k";
    evs[2].source_len = 1;
    ck_assert_int_eq(queue_append(q, evs, 3), 0);
    ck_assert_uint_eq(evs[0].seq, 1);
    ck_assert_uint_eq(evs[1].seq, 2);
    ck_assert_uint_eq(evs[2].seq, 3);

    memset(&one, 0, sizeof(one));
    ev_uuid7(one.uuid);
    one.type = "product";
    one.type_len = 7;
    one.json = "{\"id\":1}";
    one.json_len = 8;
    one.received_us = -5;
    ck_assert_int_eq(queue_append(q, &one, 1), 0);
    ck_assert_uint_eq(one.seq, 4);

    ck_assert_int_eq(queue_read(q, 1, 100, 0, copy_fn, &got, &last, &count), 0);
    ck_assert_uint_eq(count, 4);
    ck_assert_uint_eq(last, 4);
    for (int i = 0; i < 3; i++) {
        ck_assert_uint_eq(got.ev[i].seq, (uint64_t)i + 1);
        ck_assert_int_eq(memcmp(got.ev[i].uuid, evs[i].uuid, 16), 0);
        ck_assert_int_eq(got.ev[i].received_us, BASE_US + i);
        ck_assert_uint_eq(got.ev[i].type_len, 12);
        ck_assert_int_eq(memcmp(got.ev[i].type, "crash_report", 12), 0);
        ck_assert_uint_eq(got.ev[i].json_len, evs[i].json_len);
        ck_assert_int_eq(memcmp(got.ev[i].json, evs[i].json, evs[i].json_len), 0);
    }
    ck_assert_uint_eq(got.ev[0].flags, 0);
    ck_assert_ptr_null(got.ev[0].error);
    ck_assert_uint_eq(got.ev[0].source_len, strlen("mobile-app"));
    ck_assert_int_eq(memcmp(got.ev[0].source, "mobile-app", got.ev[0].source_len), 0);
    ck_assert_ptr_null(got.ev[1].source);
    ck_assert_uint_eq(got.ev[1].source_len, 0);
    ck_assert_uint_eq(got.ev[2].source_len, 1);
    ck_assert_int_eq(got.ev[2].source[0], 'k');
    ck_assert_ptr_null(got.ev[3].source);
    ck_assert_uint_eq(got.ev[2].flags, QUEUE_F_REJECTED);
    ck_assert_uint_eq(got.ev[2].error_len, strlen("invalid JSON at byte 1"));
    ck_assert_int_eq(memcmp(got.ev[2].error, "invalid JSON at byte 1", got.ev[2].error_len), 0);
    ck_assert_uint_eq(got.ev[3].seq, 4);
    ck_assert_int_eq(got.ev[3].received_us, -5);
    ck_assert_int_eq(memcmp(got.ev[3].type, "product", 7), 0);
    ck_assert_int_eq(memcmp(got.ev[3].uuid, one.uuid, 16), 0);
    queue_close(q);
}
END_TEST

/* Records of versions 1 (no key) and 2 (no source), as earlier daemons wrote them, read. */
START_TEST(test_read_old_versions)
{
    struct queue *q = open_q(MIB);
    /* head: version, type_len 2, error_len 0, flags 0, uuid 1..16, received_us 7 */
    uint8_t v1[32 + 2 + 2] = {1, 2, 0, 0, 0, 0, 0, 0};
    uint8_t v2[33 + 2 + 1 + 2] = {2, 2, 0, 0, 0, 0, 0, 0};
    struct copy_one got = {0};
    size_t count = 0;

    for (int i = 0; i < 16; i++) {
        v1[8 + i] = v2[8 + i] = (uint8_t)(i + 1);
    }
    v1[31] = v2[31] = 7;
    memcpy(v1 + 32, "ab{}", 4);
    v2[32] = 1; /* key_len */
    memcpy(v2 + 33, "abK{}", 5);
    ck_assert_int_eq(queue_test_put_raw(q, 1, v1, sizeof(v1)), 0);
    ck_assert_int_eq(queue_test_put_raw(q, 2, v2, sizeof(v2)), 0);
    ck_assert_int_eq(queue_read(q, 1, 10, 0, copy_fn, &got, NULL, &count), 0);
    ck_assert_uint_eq(count, 2);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(got.ev[i].received_us, 7);
        ck_assert_uint_eq(got.ev[i].uuid[15], 16);
        ck_assert_int_eq(memcmp(got.ev[i].type, "ab", 2), 0);
        ck_assert_uint_eq(got.ev[i].json_len, 2);
        ck_assert_int_eq(memcmp(got.ev[i].json, "{}", 2), 0);
        ck_assert_ptr_null(got.ev[i].source);
    }
    ck_assert_uint_eq(got.ev[0].key_len, 0);
    ck_assert_uint_eq(got.ev[1].key_len, 1);
    queue_close(q);
}
END_TEST

static int
stop_after_first(void *arg, const struct queue_event *ev)
{
    (void)ev;
    (*(size_t *)arg)++;
    return 1;
}

static int
fail_on_third(void *arg, const struct queue_event *ev)
{
    (void)ev;
    return ++(*(size_t *)arg) == 3 ? DP_ERR_DATA : 0;
}

static int
count_fn(void *arg, const struct queue_event *ev)
{
    (void)ev;
    (*(size_t *)arg)++;
    return 0;
}

START_TEST(test_read_limits)
{
    struct queue *q = open_q(8 * MIB);
    struct queue_event evs[10];
    char json[10][100];
    uint64_t last = 99;
    size_t count = 99;
    size_t calls = 0;

    memset(evs, 0, sizeof(evs));
    for (int i = 0; i < 10; i++) {
        memset(json[i], '0' + i, sizeof(json[i]));
        evs[i].type = "t";
        evs[i].type_len = 1;
        evs[i].json = json[i];
        evs[i].json_len = 100;
    }
    ck_assert_int_eq(queue_append(q, evs, 10), 0);
    ck_assert_uint_eq(evs[9].seq, 10);

    /* the callback stops the walk, or aborts it with its own error */
    ck_assert_int_eq(queue_read(q, 0, 3, 0, stop_after_first, &calls, &last, &count), 0);
    ck_assert_uint_eq(calls, 1);
    ck_assert_uint_eq(count, 1);
    ck_assert_uint_eq(last, 1);
    calls = 0;
    ck_assert_int_eq(queue_read(q, 0, 10, 0, fail_on_third, &calls, &last, &count), DP_ERR_DATA);
    ck_assert_uint_eq(calls, 3);
    ck_assert_uint_eq(count, 3);
    ck_assert_uint_eq(last, 3);

    /* event limit */
    calls = 0;
    ck_assert_int_eq(queue_read(q, 0, 3, 0, count_fn, &calls, &last, &count), 0);
    ck_assert_uint_eq(calls, 3);
    ck_assert_uint_eq(count, 3);
    ck_assert_uint_eq(last, 3);

    /* byte limit: 250 bytes hold two 100-byte events; a too small limit still gives one */
    ck_assert_int_eq(queue_read(q, 0, 10, 250, count_fn, &calls, &last, &count), 0);
    ck_assert_uint_eq(count, 2);
    ck_assert_uint_eq(last, 2);
    ck_assert_int_eq(queue_read(q, 0, 10, 300, count_fn, &calls, &last, &count), 0);
    ck_assert_uint_eq(count, 3);
    ck_assert_int_eq(queue_read(q, 0, 10, 50, count_fn, &calls, &last, &count), 0);
    ck_assert_uint_eq(count, 1);
    ck_assert_uint_eq(last, 1);

    /* from_seq in the middle, past the end, and max_events 0 */
    ck_assert_int_eq(queue_read(q, 7, 10, 0, count_fn, &calls, &last, &count), 0);
    ck_assert_uint_eq(count, 4);
    ck_assert_uint_eq(last, 10);
    ck_assert_int_eq(queue_read(q, 11, 10, 0, count_fn, &calls, &last, &count), 0);
    ck_assert_uint_eq(count, 0);
    ck_assert_uint_eq(last, 0);
    ck_assert_int_eq(queue_read(q, 1, 0, 0, count_fn, &calls, &last, &count), 0);
    ck_assert_uint_eq(count, 0);
    queue_close(q);
}
END_TEST

/*
 * Many events, each small, together more than half the map: one call too large for this
 * queue however empty is DP_ERR_INVALID (413), not DP_ERR_FULL (which would call the queue
 * full), and stores nothing; a smaller call then appends.
 */
START_TEST(test_append_too_large_total)
{
    struct queue *q = open_q(MIB);
    struct queue_stats st;
    size_t n = 4096;
    struct queue_event *many = calloc(n, sizeof(*many));
    char *json = calloc(1, 1024);

    ck_assert_ptr_nonnull(many);
    ck_assert_ptr_nonnull(json);
    for (size_t i = 0; i < n; i++) {
        many[i].type = "crash_report";
        many[i].type_len = strlen("crash_report");
        many[i].json = json;
        many[i].json_len = 1024;
    }
    ck_assert_int_eq(queue_append(q, many, n), DP_ERR_INVALID);
    ck_assert_int_eq(queue_stats(q, &st), 0);
    ck_assert_uint_eq(st.events, 0);
    ck_assert_int_eq(queue_append(q, many, 2), 0);
    ck_assert_int_eq(queue_stats(q, &st), 0);
    ck_assert_uint_eq(st.events, 2);
    free(json);
    free(many);
    queue_close(q);
}
END_TEST

START_TEST(test_append_invalid)
{
    struct queue *q = open_q(MIB);
    struct queue_event ev;
    struct queue_stats st;
    char type[QUEUE_TYPE_MAX + 2];
    char *err = malloc(QUEUE_ERROR_MAX + 100);
    char *big = calloc(1, MIB);
    struct copy_one *got = calloc(1, sizeof(*got));

    ck_assert_ptr_nonnull(err);
    ck_assert_ptr_nonnull(big);
    ck_assert_ptr_nonnull(got);
    memset(&ev, 0, sizeof(ev));
    memset(type, 'x', sizeof(type));
    ev.type = type;
    ev.json = "{}";
    ev.json_len = 2;

    ck_assert_int_eq(queue_append(q, &ev, 0), DP_ERR_INVALID);
    ev.type_len = 0;
    ck_assert_int_eq(queue_append(q, &ev, 1), DP_ERR_INVALID);
    ev.type_len = QUEUE_TYPE_MAX + 1;
    ck_assert_int_eq(queue_append(q, &ev, 1), DP_ERR_INVALID);
    ev.type = NULL;
    ev.type_len = 3;
    ck_assert_int_eq(queue_append(q, &ev, 1), DP_ERR_INVALID);
    /* a source longer than QUEUE_SOURCE_MAX, or a length without bytes */
    ev.type = type;
    ev.type_len = 3;
    ev.source = type;
    ev.source_len = QUEUE_SOURCE_MAX + 1;
    ck_assert_int_eq(queue_append(q, &ev, 1), DP_ERR_INVALID);
    ev.source = NULL;
    ev.source_len = 1;
    ck_assert_int_eq(queue_append(q, &ev, 1), DP_ERR_INVALID);
    ev.source_len = 0;
    /* larger than the whole map can ever hold */
    ev.type = type;
    ev.type_len = QUEUE_TYPE_MAX;
    ev.json = big;
    ev.json_len = MIB;
    ck_assert_int_eq(queue_append(q, &ev, 1), DP_ERR_INVALID);
    ck_assert_int_eq(queue_stats(q, &st), 0);
    ck_assert_uint_eq(st.events, 0);
    ck_assert_uint_eq(st.next_seq, 1);

    /* a long error text is cut to QUEUE_ERROR_MAX, never inside a UTF-8 sequence */
    memset(err, 'e', QUEUE_ERROR_MAX + 100);
    memcpy(err + QUEUE_ERROR_MAX - 1, "\xc3\xa9", 2); /* é straddles the limit */
    ev.json = "{}";
    ev.json_len = 2;
    ev.flags = QUEUE_F_REJECTED;
    ev.error = err;
    ev.error_len = QUEUE_ERROR_MAX + 100;
    ck_assert_int_eq(queue_append(q, &ev, 1), 0);
    ck_assert_uint_eq(ev.seq, 1);
    ck_assert_int_eq(queue_read(q, 0, 8, 0, copy_fn, got, NULL, NULL), 0);
    ck_assert_uint_eq(got->n, 1);
    ck_assert_uint_eq(got->ev[0].error_len, QUEUE_ERROR_MAX - 1);
    ck_assert_int_eq(memcmp(got->ev[0].error, err, QUEUE_ERROR_MAX - 1), 0);
    ck_assert_uint_eq(got->ev[0].type_len, QUEUE_TYPE_MAX);
    free(got);
    free(big);
    free(err);
    queue_close(q);
}
END_TEST

START_TEST(test_stats)
{
    struct queue *q = open_q(4 * MIB);
    struct queue_stats st;

    ck_assert_int_eq(queue_stats(q, &st), 0);
    ck_assert_uint_eq(st.events, 0);
    ck_assert_uint_eq(st.first_seq, 0);
    ck_assert_int_eq(st.oldest_received_us, 0);
    ck_assert_uint_eq(st.next_seq, 1);
    ck_assert_uint_eq(st.capacity_bytes, 4 * MIB);
    /* Two pages: the sys tree with the instance id, meta with the accepted counter. */
    ck_assert_uint_eq(st.bytes, 2 * (uint64_t)sysconf(_SC_PAGESIZE));
    ck_assert_uint_eq(st.accepted, 0);

    for (uint64_t tag = 100; tag < 400; tag += 10) {
        ck_assert_int_eq(append_tags(q, tag, 10, NULL), 0);
    }
    ck_assert_int_eq(queue_stats(q, &st), 0);
    ck_assert_uint_eq(st.events, 300);
    ck_assert_uint_eq(st.first_seq, 1);
    ck_assert_int_eq(st.oldest_received_us, BASE_US + 100);
    ck_assert_uint_eq(st.next_seq, 301);
    ck_assert_uint_ge(st.bytes, 300 * 40);

    ck_assert_int_eq(queue_delete_range(q, 1, 50, NULL, 0), 0);
    ck_assert_int_eq(queue_stats(q, &st), 0);
    ck_assert_uint_eq(st.events, 250);
    ck_assert_uint_eq(st.first_seq, 51);
    ck_assert_int_eq(st.oldest_received_us, BASE_US + 150);
    ck_assert_uint_eq(st.next_seq, 301);
    queue_close(q);
}
END_TEST

/* ---- sequence numbers and deletes ---- */

START_TEST(test_seq_after_reopen)
{
    struct queue *q = open_q(4 * MIB);
    uint64_t seqs[5];
    struct collect c;

    ck_assert_int_eq(append_tags(q, 0, 5, seqs), 0);
    ck_assert_uint_eq(seqs[4], 5);
    queue_close(q);

    q = open_q(4 * MIB);
    ck_assert_int_eq(append_tags(q, 5, 2, seqs), 0);
    ck_assert_uint_eq(seqs[0], 6);
    ck_assert_uint_eq(seqs[1], 7);
    collect_all(q, &c);
    ck_assert_uint_eq(c.n, 7);
    for (size_t i = 0; i < c.n; i++) {
        ck_assert_uint_eq(c.seqs[i], i + 1);
        ck_assert_uint_eq(c.tags[i], i);
    }
    collect_free(&c);
    queue_close(q);

    /* sync = false: close still leaves everything on disk */
    ck_assert_int_eq(queue_open(&q, g_qpath, 4 * MIB, false), 0);
    ck_assert_int_eq(append_tags(q, 7, 3, seqs), 0);
    ck_assert_uint_eq(seqs[2], 10);
    queue_close(q);
    q = open_q(4 * MIB);
    collect_all(q, &c);
    ck_assert_uint_eq(c.n, 10);
    ck_assert_uint_eq(c.tags[9], 9);
    collect_free(&c);
    queue_close(q);
}
END_TEST

START_TEST(test_seq_emptied_queue)
{
    struct queue *q = open_q(4 * MIB);
    struct queue_stats st;
    uint64_t seqs[5];

    ck_assert_int_eq(append_tags(q, 0, 5, seqs), 0);
    ck_assert_int_eq(queue_delete_range(q, 1, 5, NULL, 0), 0);
    ck_assert_int_eq(queue_stats(q, &st), 0);
    ck_assert_uint_eq(st.events, 0);
    ck_assert_uint_eq(st.next_seq, 6);
    queue_close(q);

    q = open_q(4 * MIB);
    ck_assert_int_eq(queue_stats(q, &st), 0);
    ck_assert_uint_eq(st.events, 0);
    ck_assert_uint_eq(st.first_seq, 0);
    ck_assert_uint_eq(st.next_seq, 6);
    ck_assert_int_eq(append_tags(q, 5, 1, seqs), 0);
    ck_assert_uint_eq(seqs[0], 6);
    queue_close(q);
}
END_TEST

START_TEST(test_delete_range)
{
    struct queue *q = open_q(16 * MIB);
    struct collect c;
    size_t k = 0;

    /* enough events to span many leaf pages */
    for (uint64_t tag = 0; tag < 3000; tag += 10) {
        ck_assert_int_eq(append_tags(q, tag, 10, NULL), 0);
    }
    ck_assert_int_eq(queue_delete_range(q, 5, 4, NULL, 0), DP_ERR_INVALID);
    ck_assert_int_eq(queue_delete_range(q, 100, 2500, NULL, 0), 0);
    ck_assert_int_eq(queue_delete_range(q, 100, 2500, NULL, 0), 0); /* again: no error */
    ck_assert_int_eq(queue_delete_range(q, 1, 1, NULL, 0), 0);
    ck_assert_int_eq(queue_delete_range(q, 5000, 6000, NULL, 0), 0);
    collect_all(q, &c);
    ck_assert_uint_eq(c.n, 98 + 500);
    for (uint64_t seq = 2; seq <= 3000; seq++) {
        if (seq >= 100 && seq <= 2500) {
            continue;
        }
        ck_assert_uint_eq(c.seqs[k], seq);
        ck_assert_uint_eq(c.tags[k], seq - 1);
        k++;
    }
    collect_free(&c);
    /* a range that starts in a gap and ends past the last key */
    ck_assert_int_eq(queue_delete_range(q, 50, UINT64_MAX, NULL, 0), 0);
    collect_all(q, &c);
    ck_assert_uint_eq(c.n, 48);
    ck_assert_uint_eq(c.seqs[47], 49);
    collect_free(&c);
    ck_assert_int_eq(queue_delete_range(q, 0, UINT64_MAX, NULL, 0), 0);
    collect_all(q, &c);
    ck_assert_uint_eq(c.n, 0);
    collect_free(&c);
    queue_close(q);
}
END_TEST

/* ---- finding an event by its id, the watermark ---- */

/* queue_find callback: copy the event's seq and received_us. */
static int
find_fn(void *arg, const struct queue_event *ev)
{
    struct queue_event *out = arg;

    out->seq = ev->seq;
    out->received_us = ev->received_us;
    return 0;
}

/* Events appended with received_us 0 are stamped at commit, in seq order; each is found. */
START_TEST(test_find_and_watermark)
{
    struct queue *q = open_q(16 * MIB);
    static struct queue_event evs[3000];
    static const char json[] = "{\"user_id\": 1}";
    struct queue_event got;
    struct queue_meta_op op = {"mark", QUEUE_META_MAX, 50, NULL};
    uint8_t old[16];
    int64_t before;
    int64_t mark;
    int64_t v;

    before = dp_now_us();
    for (size_t i = 0; i < 3000; i += 100) {
        for (size_t j = i; j < i + 100; j++) {
            memset(&evs[j], 0, sizeof(evs[j]));
            ev_uuid7(evs[j].uuid);
            evs[j].type = "crash_report";
            evs[j].type_len = strlen("crash_report");
            evs[j].json = json;
            evs[j].json_len = sizeof(json) - 1;
        }
        ck_assert_int_eq(queue_append(q, &evs[i], 100), 0);
    }
    for (size_t i = 0; i < 3000; i++) {
        ck_assert_int_ge(evs[i].received_us, before);
        ck_assert(i == 0 || evs[i].received_us >= evs[i - 1].received_us);
    }
    for (size_t i = 0; i < 3000; i += 499) {
        memset(&got, 0, sizeof(got));
        ck_assert_int_eq(queue_find(q, evs[i].uuid, find_fn, &got), 0);
        ck_assert_uint_eq(got.seq, evs[i].seq);
        ck_assert_int_eq(got.received_us, evs[i].received_us);
    }
    /* An id older than everything queued, and one that was deleted. */
    memcpy(old, evs[0].uuid, 16);
    memset(old, 0, 4);
    ck_assert_int_eq(queue_find(q, old, find_fn, &got), DP_ERR_NOTFOUND);
    ck_assert_int_eq(queue_delete_range(q, evs[10].seq, evs[10].seq, NULL, 0), 0);
    ck_assert_int_eq(queue_find(q, evs[10].uuid, find_fn, &got), DP_ERR_NOTFOUND);
    ck_assert_int_eq(queue_find(q, evs[11].uuid, find_fn, &got), 0);

    /* The watermark: the first event outside the range being committed, else now. */
    ck_assert_int_eq(queue_watermark(q, 0, 0, &mark), 0);
    ck_assert_int_eq(mark, evs[0].received_us);
    ck_assert_int_eq(queue_watermark(q, evs[0].seq, evs[1999].seq, &mark), 0);
    ck_assert_int_eq(mark, evs[2000].received_us);
    ck_assert_int_eq(queue_watermark(q, evs[5].seq, evs[20].seq, &mark), 0);
    ck_assert_int_eq(mark, evs[0].received_us);
    ck_assert_int_eq(queue_watermark(q, evs[0].seq, evs[2999].seq, &mark), 0);
    ck_assert_int_ge(mark, evs[2999].received_us);
    ck_assert_int_le(mark, dp_now_us());
    ck_assert_int_eq(queue_delete_range(q, 0, UINT64_MAX, NULL, 0), 0);
    before = dp_now_us();
    ck_assert_int_eq(queue_watermark(q, 0, 0, &mark), 0);
    ck_assert_int_ge(mark, before);
    /* A later append is stamped at or above a watermark read before it. */
    memset(&evs[0], 0, sizeof(evs[0]));
    ev_uuid7(evs[0].uuid);
    evs[0].type = "crash_report";
    evs[0].type_len = strlen("crash_report");
    ck_assert_int_eq(queue_append(q, evs, 1), 0);
    ck_assert_int_ge(evs[0].received_us, mark);

    /* QUEUE_META_MAX never goes back. */
    ck_assert_int_eq(queue_meta_apply(q, &op, 1), 0);
    op.value = 40;
    ck_assert_int_eq(queue_meta_apply(q, &op, 1), 0);
    ck_assert_int_eq(queue_meta_get(q, "mark", &v), 0);
    ck_assert_int_eq(v, 50);
    op.value = 60;
    ck_assert_int_eq(queue_meta_apply(q, &op, 1), 0);
    ck_assert_int_eq(queue_meta_get(q, "mark", &v), 0);
    ck_assert_int_eq(v, 60);
    queue_close(q);
}
END_TEST

/* ---- metadata ---- */

struct each_seen {
    char names[8][64];
    int64_t values[8];
    int n;
};

static void
each_fn(void *arg, const char *name, int64_t value)
{
    struct each_seen *s = arg;

    ck_assert_int_lt(s->n, 8);
    snprintf(s->names[s->n], sizeof(s->names[s->n]), "%s", name);
    s->values[s->n] = value;
    s->n++;
}

START_TEST(test_meta)
{
    struct queue *q = open_q(4 * MIB);
    char name[260];
    char buf[8];
    int64_t v = 77;
    struct each_seen seen = {0};
    const struct queue_meta_op ops[] = {
        {.name = "loaded.crash_report", .kind = QUEUE_META_ADD, .value = 5},
        {.name = "loaded.product", .kind = QUEUE_META_ADD, .value = 2},
        {.name = "loaded.crash_report", .kind = QUEUE_META_ADD, .value = 10},
        {.name = "last_success_s", .kind = QUEUE_META_SET, .value = -3},
        {.name = "loaded.note", .kind = QUEUE_META_STR, .str = "all good today"},
    };
    const struct queue_meta_op bad[] = {
        {.name = "loaded.product", .kind = QUEUE_META_ADD, .value = 1000},
        {.name = "loaded.note", .kind = QUEUE_META_ADD, .value = 1},
    };

    ck_assert_int_eq(queue_meta_get(q, "loaded.product", &v), DP_ERR_NOTFOUND);
    ck_assert_int_eq(v, 0);
    strcpy(buf, "zz");
    ck_assert_int_eq(queue_meta_get_str(q, "loaded.note", buf, sizeof(buf)), DP_ERR_NOTFOUND);
    ck_assert_str_eq(buf, "");
    ck_assert_int_eq(queue_meta_apply(q, NULL, 0), 0);
    ck_assert_int_eq(queue_meta_apply(q, ops, 5), 0);
    ck_assert_int_eq(queue_meta_get(q, "loaded.crash_report", &v), 0);
    ck_assert_int_eq(v, 15);
    ck_assert_int_eq(queue_meta_get(q, "last_success_s", &v), 0);
    ck_assert_int_eq(v, -3);
    ck_assert_int_eq(queue_meta_get_str(q, "loaded.note", buf, sizeof(buf)), 0);
    ck_assert_str_eq(buf, "all goo");
    ck_assert_int_eq(queue_meta_get(q, "loaded.note", &v), DP_ERR_INVALID);

    /* one bad op: the whole transaction is refused */
    ck_assert_int_eq(queue_meta_apply(q, bad, 2), DP_ERR_INVALID);
    ck_assert_int_eq(queue_meta_get(q, "loaded.product", &v), 0);
    ck_assert_int_eq(v, 2);
    memset(name, 'n', sizeof(name));
    name[sizeof(name) - 1] = '\0';
    ck_assert_int_eq(queue_meta_get(q, name, &v), DP_ERR_INVALID);

    /* counters under a prefix, in key order; strings skipped */
    ck_assert_int_eq(queue_meta_each(q, "loaded.", each_fn, &seen), 0);
    ck_assert_int_eq(seen.n, 2);
    ck_assert_str_eq(seen.names[0], "loaded.crash_report");
    ck_assert_int_eq(seen.values[0], 15);
    ck_assert_str_eq(seen.names[1], "loaded.product");
    ck_assert_int_eq(seen.values[1], 2);
    seen.n = 0;
    ck_assert_int_eq(queue_meta_each(q, "", each_fn, &seen), 0);
    ck_assert_int_eq(seen.n, 4); /* and the queue's own QUEUE_META_ACCEPTED, last */
    ck_assert_str_eq(seen.names[0], "last_success_s");
    ck_assert_str_eq(seen.names[3], QUEUE_META_ACCEPTED);
    seen.n = 0;
    ck_assert_int_eq(queue_meta_each(q, "zzz", each_fn, &seen), 0);
    ck_assert_int_eq(seen.n, 0);

    /* persisted */
    queue_close(q);
    q = open_q(4 * MIB);
    ck_assert_int_eq(queue_meta_get(q, "loaded.crash_report", &v), 0);
    ck_assert_int_eq(v, 15);
    queue_close(q);
}
END_TEST

START_TEST(test_delete_with_meta)
{
    struct queue *q = open_q(4 * MIB);
    struct queue_stats st;
    int64_t v = 0;
    const struct queue_meta_op ops[] = {
        {.name = "loaded", .kind = QUEUE_META_ADD, .value = 4},
        {.name = "last_seq", .kind = QUEUE_META_SET, .value = 4},
    };
    const struct queue_meta_op bad[] = {
        {.name = "loaded", .kind = QUEUE_META_ADD, .value = 3},
        {.name = "", .kind = QUEUE_META_SET, .value = 1},
    };

    ck_assert_int_eq(append_tags(q, 0, 10, NULL), 0);
    ck_assert_int_eq(queue_delete_range(q, 1, 4, ops, 2), 0);
    ck_assert_int_eq(queue_stats(q, &st), 0);
    ck_assert_uint_eq(st.events, 6);
    ck_assert_uint_eq(st.first_seq, 5);
    ck_assert_int_eq(queue_meta_get(q, "loaded", &v), 0);
    ck_assert_int_eq(v, 4);

    /* a bad op refuses the delete too */
    ck_assert_int_eq(queue_delete_range(q, 5, 7, bad, 2), DP_ERR_INVALID);
    ck_assert_int_eq(queue_stats(q, &st), 0);
    ck_assert_uint_eq(st.events, 6);
    ck_assert_int_eq(queue_meta_get(q, "loaded", &v), 0);
    ck_assert_int_eq(v, 4);
    queue_close(q);
}
END_TEST

/* ---- conservation: accepted = loaded + dead_lettered + queued ---- */

/* The four numbers of one snapshot, each against its expected value, then the equation. */
static void
assert_conservation(struct queue *q, uint64_t accepted, uint64_t loaded, uint64_t dead,
                    uint64_t queued)
{
    struct queue_stats st;

    ck_assert_int_eq(queue_stats(q, &st), 0);
    ck_assert_uint_eq(st.accepted, accepted);
    ck_assert_uint_eq(st.loaded, loaded);
    ck_assert_uint_eq(st.dead_lettered, dead);
    ck_assert_uint_eq(st.events, queued);
    ck_assert_uint_eq(st.accepted, st.loaded + st.dead_lettered + st.events);
}

static int
fault_kind(void *arg, enum queue_txn_kind kind, size_t events)
{
    const enum queue_txn_kind *fail = arg;

    (void)events;
    return kind == *fail ? QUEUE_FAULT_MAP_FULL : 0;
}

/*
 * Each of the four moves only with the data it counts: accepted with a committed append
 * (not a failed one), loaded and dead_lettered with the delete that carries them (not a
 * failed one); the counters survive a reopen.
 */
START_TEST(test_conservation)
{
    struct queue *q = open_q(4 * MIB);
    enum queue_txn_kind fail = QUEUE_TXN_APPEND;
    struct queue_fault_ops ops = {fault_kind, &fail};
    const struct queue_meta_op first[] = {
        {.name = QUEUE_META_LOADER_LOADED_PREFIX "crash_report",
         .kind = QUEUE_META_ADD,
         .value = 3},
        {.name = QUEUE_META_LOADER_DEAD_LETTERS, .kind = QUEUE_META_ADD, .value = 1},
    };
    const struct queue_meta_op second[] = {
        {.name = QUEUE_META_LOADER_LOADED_PREFIX "ad_event", .kind = QUEUE_META_ADD, .value = 2},
    };

    assert_conservation(q, 0, 0, 0, 0);
    ck_assert_int_eq(append_tags(q, 0, 4, NULL), 0);
    ck_assert_int_eq(append_tags(q, 4, 3, NULL), 0);
    ck_assert_int_eq(append_tags(q, 7, 3, NULL), 0);
    assert_conservation(q, 10, 0, 0, 10);

    /* A failed append stores nothing and counts nothing. */
    queue_set_fault_ops(q, &ops);
    ck_assert_int_eq(append_tags(q, 10, 5, NULL), DP_ERR_FULL);
    queue_set_fault_ops(q, NULL);
    assert_conservation(q, 10, 0, 0, 10);

    ck_assert_int_eq(queue_delete_range(q, 1, 4, first, 2), 0);
    assert_conservation(q, 10, 3, 1, 6);
    ck_assert_int_eq(queue_delete_range(q, 5, 6, second, 1), 0);
    assert_conservation(q, 10, 5, 1, 4);

    /* A failed delete keeps the events and their counters as they were. */
    fail = QUEUE_TXN_DELETE;
    queue_set_fault_ops(q, &ops);
    ck_assert_int_ne(queue_delete_range(q, 7, 8, second, 1), 0);
    queue_set_fault_ops(q, NULL);
    assert_conservation(q, 10, 5, 1, 4);

    queue_close(q);
    q = open_q(4 * MIB);
    assert_conservation(q, 10, 5, 1, 4);
    ck_assert_int_eq(append_tags(q, 20, 2, NULL), 0);
    assert_conservation(q, 12, 5, 1, 6);
    queue_close(q);
}
END_TEST

/* ---- many threads ---- */

#define TH_THREADS 16
#define TH_CALLS 120

struct th_arg {
    struct queue *q;
    int id;
    uint64_t seqs[TH_CALLS * 4];
    uint64_t tags[TH_CALLS * 4];
    size_t n;
    int failures;
};

static void *
th_main(void *p)
{
    struct th_arg *a = p;
    uint64_t seqs[4];

    for (int i = 0; i < TH_CALLS; i++) {
        size_t n = 1 + (size_t)(i + a->id) % 4;
        uint64_t tag = (uint64_t)a->id * 1000000 + (uint64_t)i * 4;

        if (append_tags(a->q, tag, n, seqs) != 0) {
            a->failures++;
            continue;
        }
        for (size_t j = 0; j < n; j++) {
            a->seqs[a->n] = seqs[j];
            a->tags[a->n] = tag + j;
            a->n++;
        }
        /* one call's events get consecutive numbers */
        for (size_t j = 1; j < n; j++) {
            if (seqs[j] != seqs[0] + j) {
                a->failures++;
            }
        }
    }
    return NULL;
}

START_TEST(test_threads)
{
    struct queue *q = open_q(64 * MIB);
    static struct th_arg args[TH_THREADS];
    pthread_t th[TH_THREADS];
    uint64_t *all;
    size_t total = 0;
    size_t k = 0;
    struct collect c;
    uint64_t commits = 0;
    uint64_t events = 0;

    for (int i = 0; i < TH_THREADS; i++) {
        memset(&args[i], 0, sizeof(args[i]));
        args[i].q = q;
        args[i].id = i;
        ck_assert_int_eq(pthread_create(&th[i], NULL, th_main, &args[i]), 0);
    }
    for (int i = 0; i < TH_THREADS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(args[i].failures, 0);
        total += args[i].n;
    }
    all = malloc(total * sizeof(*all));
    ck_assert_ptr_nonnull(all);
    for (int i = 0; i < TH_THREADS; i++) {
        memcpy(all + k, args[i].seqs, args[i].n * sizeof(*all));
        k += args[i].n;
    }
    qsort(all, total, sizeof(*all), cmp_u64);
    for (size_t i = 0; i < total; i++) {
        ck_assert_uint_eq(all[i], i + 1); /* distinct, and no gaps */
    }
    queue_commit_counts(q, &commits, &events);
    ck_assert_uint_eq(events, total);
    ck_assert_uint_ge(commits, 1);
    ck_assert_uint_le(commits, TH_THREADS * TH_CALLS);

    /* every acknowledged event is read back exactly once, under its own seq */
    collect_all(q, &c);
    ck_assert_uint_eq(c.n, total);
    for (int i = 0; i < TH_THREADS; i++) {
        for (size_t j = 0; j < args[i].n; j++) {
            uint64_t seq = args[i].seqs[j];

            ck_assert_uint_eq(c.seqs[seq - 1], seq);
            ck_assert_uint_eq(c.tags[seq - 1], args[i].tags[j]);
        }
    }
    collect_free(&c);
    free(all);
    queue_close(q);
}
END_TEST

/* ---- a full map ---- */

/* Append n 1 KiB events (tags tag0...) in one call; returns the call's result. */
static int
append_kib(struct queue *q, uint64_t tag0, size_t n, uint64_t *seq)
{
    struct queue_event ev[16];
    char json[16][1024];
    int rc;

    ck_assert_uint_le(n, 16);
    memset(ev, 0, sizeof(ev));
    for (size_t i = 0; i < n; i++) {
        memset(json[i], 'f', sizeof(json[i]));
        snprintf(json[i], sizeof(json[i]), "{\"tag\":%" PRIu64, tag0 + i);
        json[i][strlen(json[i])] = ' ';
        ev[i].type = "fill";
        ev[i].type_len = 4;
        ev[i].json = json[i];
        ev[i].json_len = sizeof(json[i]);
    }
    rc = queue_append(q, ev, n);
    if (seq != NULL) {
        *seq = ev[0].seq;
    }
    return rc;
}

/* Append 1 KiB events one at a time until the queue says full; returns how many fit. */
static size_t
fill(struct queue *q, uint64_t tag0, uint64_t *seqs, size_t cap)
{
    size_t n = 0;
    int rc = 0;

    while (n < cap) {
        rc = append_kib(q, tag0 + n, 1, &seqs[n]);
        if (rc != 0) {
            break;
        }
        n++;
    }
    ck_assert_int_eq(rc, DP_ERR_FULL);
    return n;
}

static size_t
count_events(struct queue *q)
{
    size_t n = 0;

    ck_assert_int_eq(queue_read(q, 0, SIZE_MAX, 0, count_fn, &n, NULL, NULL), 0);
    return n;
}

START_TEST(test_full_then_recover)
{
    struct queue *q = open_q(MIB);
    static uint64_t seqs[4096];
    struct queue_stats st;
    struct queue_stats st2;
    size_t n;
    size_t n2;
    uint64_t one[1];

    n = fill(q, 0, seqs, 4096);
    ck_assert_uint_gt(n, 100);
    ck_assert_int_eq(queue_stats(q, &st), 0);
    ck_assert_uint_eq(st.events, n);
    ck_assert_uint_eq(st.next_seq, seqs[n - 1] + 1);

    /* a batch that cannot fit: refused whole, nothing stored, no number used */
    ck_assert_int_eq(append_kib(q, 900000, 16, NULL), DP_ERR_FULL);
    ck_assert_int_eq(append_kib(q, 900000, 1, NULL), DP_ERR_FULL);
    ck_assert_int_eq(queue_stats(q, &st2), 0);
    ck_assert_uint_eq(st2.events, n);
    ck_assert_uint_eq(st2.next_seq, st.next_seq);
    ck_assert_uint_eq(count_events(q), n);

    /* the loader frees space: appends work again, numbering continues */
    ck_assert_int_eq(queue_delete_range(q, seqs[0], seqs[n / 2], NULL, 0), 0);
    ck_assert_int_eq(append_tags(q, 1, 1, one), 0);
    ck_assert_uint_eq(one[0], st.next_seq);
    n2 = fill(q, 100000, seqs, 4096);
    ck_assert_uint_gt(n2, 10);
    ck_assert_uint_eq(count_events(q), n - n / 2 - 1 + 1 + n2);

    /* and again, down to empty, across a reopen */
    ck_assert_int_eq(queue_delete_range(q, 0, UINT64_MAX, NULL, 0), 0);
    queue_close(q);
    q = open_q(MIB);
    ck_assert_uint_eq(fill(q, 200000, seqs, 4096), n);
    queue_close(q);
}
END_TEST

/*
 * Pack the map as full as appends can get it, with ever smaller events, then delete: the
 * delete needs fresh pages too (copy-on-write), and must still get them.
 */
START_TEST(test_full_packed_delete)
{
    struct queue *q = open_q(MIB);
    struct queue_event ev;
    struct queue_stats st;
    static char json[4096];
    size_t sizes[] = {4000, 1000, 200, 40, 1};
    uint64_t seq = 0;
    size_t stored = 0;

    memset(json, 'p', sizeof(json));
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        int rc;

        do {
            memset(&ev, 0, sizeof(ev));
            ev.type = "p";
            ev.type_len = 1;
            ev.json = json;
            ev.json_len = sizes[i];
            rc = queue_append(q, &ev, 1);
            stored += rc == 0;
            seq = rc == 0 ? ev.seq : seq;
        } while (rc == 0);
        ck_assert_int_eq(rc, DP_ERR_FULL);
    }
    ck_assert_uint_gt(stored, 200);
    ck_assert_int_eq(queue_stats(q, &st), 0);
    ck_assert_uint_eq(st.events, stored);
    /* the loader's first small batch, with its counters, then everything */
    const struct queue_meta_op op = {.name = "loaded", .kind = QUEUE_META_ADD, .value = 10};
    ck_assert_int_eq(queue_delete_range(q, 1, 10, &op, 1), 0);
    ck_assert_int_eq(queue_delete_range(q, 11, seq, &op, 1), 0);
    ck_assert_int_eq(queue_stats(q, &st), 0);
    ck_assert_uint_eq(st.events, 0);
    ck_assert_uint_eq(st.next_seq, seq + 1);
    ev.json_len = 4000;
    ck_assert_int_eq(queue_append(q, &ev, 1), 0);
    ck_assert_uint_eq(ev.seq, seq + 1);
    queue_close(q);
}
END_TEST

/* A fault hook that blocks the first append commit until released. */
struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool blocked; /* the first commit is waiting in the hook */
    bool open;
    int calls;
};

static int
gate_commit(void *arg, enum queue_txn_kind kind, size_t events)
{
    struct gate *g = arg;

    (void)events;
    if (kind != QUEUE_TXN_APPEND) {
        return 0;
    }
    pthread_mutex_lock(&g->mu);
    if (g->calls++ == 0) {
        g->blocked = true;
        pthread_cond_broadcast(&g->cv);
        while (!g->open) {
            pthread_cond_wait(&g->cv, &g->mu);
        }
    }
    pthread_mutex_unlock(&g->mu);
    return 0;
}

struct app_arg {
    struct queue *q;
    struct queue_event ev;
    int rc;
};

static void *
app_main(void *p)
{
    struct app_arg *a = p;

    a->rc = queue_append(a->q, &a->ev, 1);
    return NULL;
}

START_TEST(test_full_isolates_groups)
{
    struct queue *q = open_q(MIB);
    static uint64_t seqs[4096];
    struct gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false, 0};
    struct queue_fault_ops ops = {gate_commit, &g};
    struct app_arg a[3];
    pthread_t th[3];
    char *big = malloc(300 * 1024);
    size_t n;

    ck_assert_ptr_nonnull(big);
    n = fill(q, 0, seqs, 4096);
    /* free ~100 KiB: room for small events, not for a 300 KiB one */
    ck_assert_int_eq(queue_delete_range(q, seqs[0], seqs[99], NULL, 0), 0);
    memset(big, 'b', 300 * 1024);
    memset(a, 0, sizeof(a));
    for (int i = 0; i < 3; i++) {
        a[i].q = q;
        a[i].ev.type = "t0";
        a[i].ev.type_len = 2;
        a[i].rc = 99;
    }
    a[0].ev.json = "{\"tag\":0}";
    a[0].ev.json_len = 9;
    a[1].ev.json = big;
    a[1].ev.json_len = 300 * 1024;
    a[2].ev.json = "{\"tag\":5}";
    a[2].ev.json_len = 9;

    queue_set_fault_ops(q, &ops);
    ck_assert_int_eq(pthread_create(&th[0], NULL, app_main, &a[0]), 0);
    pthread_mutex_lock(&g.mu);
    while (!g.blocked) {
        pthread_cond_wait(&g.cv, &g.mu);
    }
    pthread_mutex_unlock(&g.mu);
    /* while the first commit is held, the big and a small append queue up together */
    ck_assert_int_eq(pthread_create(&th[1], NULL, app_main, &a[1]), 0);
    while (queue_test_pending(q) < 1) {
        usleep(1000);
    }
    ck_assert_int_eq(pthread_create(&th[2], NULL, app_main, &a[2]), 0);
    while (queue_test_pending(q) < 2) {
        usleep(1000);
    }
    pthread_mutex_lock(&g.mu);
    g.open = true;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
    }
    ck_assert_int_eq(a[0].rc, 0);
    ck_assert_int_eq(a[1].rc, DP_ERR_FULL);
    ck_assert_int_eq(a[2].rc, 0);
    ck_assert_uint_eq(a[0].ev.seq, seqs[n - 1] + 1);
    ck_assert_uint_eq(a[1].ev.seq, 0);
    ck_assert_uint_eq(a[2].ev.seq, seqs[n - 1] + 2);
    queue_set_fault_ops(q, NULL);
    ck_assert_uint_eq(count_events(q), n - 100 + 2);
    free(big);
    queue_close(q);
}
END_TEST

/* ---- injected faults ---- */

struct fault_once {
    int code; /* returned by the next matching commit, then 0 */
    enum queue_txn_kind kind;
    size_t events_seen;
};

static int
fault_commit(void *arg, enum queue_txn_kind kind, size_t events)
{
    struct fault_once *f = arg;
    int code = f->code;

    if (kind != f->kind) {
        return 0;
    }
    f->events_seen = events;
    f->code = 0;
    return code;
}

START_TEST(test_fault_commit)
{
    struct queue *q = open_q(4 * MIB);
    struct fault_once f = {0, QUEUE_TXN_APPEND, 0};
    struct queue_fault_ops ops = {fault_commit, &f};
    struct queue_stats st;
    uint64_t seqs[3];
    int64_t v = 0;
    const struct queue_meta_op op = {.name = "n", .kind = QUEUE_META_ADD, .value = 1};
    static const struct {
        int code;
        int want;
    } cases[] = {
        {ENOSPC, DP_ERR_FULL},
        {EDQUOT, DP_ERR_FULL},
        {QUEUE_FAULT_MAP_FULL, DP_ERR_FULL},
        {EIO, DP_ERR_IO},
    };

    queue_set_fault_ops(q, &ops);
    ck_assert_int_eq(append_tags(q, 0, 2, seqs), 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        f.code = cases[i].code;
        ck_assert_int_eq(append_tags(q, 100, 3, seqs), cases[i].want);
        ck_assert_uint_eq(f.events_seen, 3);
        ck_assert_uint_eq(seqs[0], 0);
        ck_assert_int_eq(queue_stats(q, &st), 0);
        ck_assert_uint_eq(st.events, 2);
        ck_assert_uint_eq(st.next_seq, 3); /* the failed commit used no number */
    }
    ck_assert_int_eq(append_tags(q, 2, 3, seqs), 0);
    ck_assert_uint_eq(seqs[0], 3);
    ck_assert_uint_eq(seqs[2], 5);

    /* deletes and metadata changes fail whole too */
    f.kind = QUEUE_TXN_DELETE;
    f.code = ENOSPC;
    ck_assert_int_eq(queue_delete_range(q, 1, 5, &op, 1), DP_ERR_FULL);
    ck_assert_int_eq(queue_stats(q, &st), 0);
    ck_assert_uint_eq(st.events, 5);
    ck_assert_int_eq(queue_meta_get(q, "n", &v), DP_ERR_NOTFOUND);
    f.kind = QUEUE_TXN_META;
    f.code = EIO;
    ck_assert_int_eq(queue_meta_apply(q, &op, 1), DP_ERR_IO);
    ck_assert_int_eq(queue_meta_get(q, "n", &v), DP_ERR_NOTFOUND);
    ck_assert_int_eq(queue_meta_apply(q, &op, 1), 0);
    ck_assert_int_eq(queue_meta_get(q, "n", &v), 0);
    ck_assert_int_eq(v, 1);
    ck_assert_int_eq(queue_delete_range(q, 1, 5, &op, 1), 0);
    ck_assert_int_eq(queue_meta_get(q, "n", &v), 0);
    ck_assert_int_eq(v, 2);
    queue_set_fault_ops(q, NULL);
    queue_close(q);
}
END_TEST

/*
 * After MDB_PANIC every later transaction of the process fails: the queue exits with 75
 * (EX_TEMPFAIL) so that systemd restarts the daemon, instead of answering 500 for ever. The
 * failed transaction is not on disk; the queue reopens with what was committed before.
 */
START_TEST(test_fault_panic_exits)
{
    static const enum queue_txn_kind kinds[] = {QUEUE_TXN_APPEND, QUEUE_TXN_DELETE};
    const struct queue_meta_op op = {.name = "n", .kind = QUEUE_META_ADD, .value = 1};
    struct queue_stats st;
    uint64_t seqs[3];
    struct queue *q = open_q(4 * MIB);

    ck_assert_int_eq(append_tags(q, 0, 2, seqs), 0);
    queue_close(q);
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        int status = 0;
        pid_t pid = fork();

        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            struct fault_once f = {QUEUE_FAULT_PANIC, kinds[i], 0};
            struct queue_fault_ops ops = {fault_commit, &f};
            struct queue *cq = NULL;

            if (queue_open(&cq, g_qpath, 4 * MIB, true) != 0) {
                _exit(3);
            }
            queue_set_fault_ops(cq, &ops);
            if (kinds[i] == QUEUE_TXN_APPEND) {
                append_tags(cq, 100, 3, seqs);
            } else {
                queue_delete_range(cq, 1, 2, &op, 1);
            }
            _exit(4); /* the failed call returned: the bug */
        }
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 75, "kind %zu: status 0x%x", i,
                      (unsigned)status);
    }
    q = open_q(4 * MIB);
    ck_assert_int_eq(queue_stats(q, &st), 0);
    ck_assert_uint_eq(st.events, 2);
    ck_assert_uint_eq(st.next_seq, 3);
    queue_close(q);
}
END_TEST

/* ---- crash: SIGKILL at random moments ---- */

struct ack {
    uint64_t seq;
    uint64_t tag;
    uint8_t uuid[16];
};

struct crash_child {
    struct queue *q;
    int fd;
    atomic_uint_fast64_t *next_tag;
};

static void *
crash_thread(void *p)
{
    struct crash_child *c = p;
    struct tev t[3];
    struct queue_event evs[3];
    struct ack a;

    for (;;) {
        uint64_t tag = atomic_fetch_add(c->next_tag, 3);
        size_t n = 1 + (size_t)(tag / 3) % 3;

        for (size_t i = 0; i < n; i++) {
            tev_make(&t[i], tag + i);
            evs[i] = t[i].ev;
        }
        if (queue_append(c->q, evs, n) != 0) {
            _exit(3);
        }
        for (size_t i = 0; i < n; i++) {
            a.seq = evs[i].seq;
            a.tag = tag + i;
            memcpy(a.uuid, evs[i].uuid, 16);
            if (write(c->fd, &a, sizeof(a)) != (ssize_t)sizeof(a)) {
                _exit(4);
            }
        }
    }
    return NULL;
}

static void
crash_child_run(int fd, uint64_t tag0)
{
    struct queue *q = NULL;
    atomic_uint_fast64_t next_tag;
    struct crash_child c;
    pthread_t th[3];

    if (queue_open(&q, g_qpath, 64 * MIB, true) != 0) {
        _exit(2);
    }
    atomic_init(&next_tag, tag0);
    c.q = q;
    c.fd = fd;
    c.next_tag = &next_tag;
    for (int i = 0; i < 3; i++) {
        if (pthread_create(&th[i], NULL, crash_thread, &c) != 0) {
            _exit(5);
        }
    }
    pthread_join(th[0], NULL);
    _exit(6);
}

static size_t
read_acks(int fd, struct ack *acks, size_t n, size_t want)
{
    ssize_t r;

    while (n < want) {
        r = read(fd, &acks[n], sizeof(acks[n]));
        if (r == 0) {
            break;
        }
        ck_assert_int_eq(r, (ssize_t)sizeof(acks[n]));
        n++;
    }
    return n;
}

START_TEST(test_crash_sigkill)
{
    enum { ROUNDS = 24, MAX_ACKS = 200000 };
    struct ack *acks = malloc(MAX_ACKS * sizeof(*acks));
    uint64_t seed = rnd_seed();
    uint64_t s = seed;
    size_t nacks = 0;
    uint64_t max_seq = 0;

    ck_assert_ptr_nonnull(acks);
    for (int round = 0; round < ROUNDS; round++) {
        int fds[2];
        int status;
        pid_t pid;
        size_t want = nacks + 1 + rnd(&s) % 120;
        struct queue *q;
        struct queue_stats st;
        struct collect c;

        ck_assert_int_eq(pipe(fds), 0);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            close(fds[0]);
            crash_child_run(fds[1], (uint64_t)round * 10000000);
        }
        close(fds[1]);
        nacks = read_acks(fds[0], acks, nacks, want < MAX_ACKS ? want : MAX_ACKS);
        usleep((useconds_t)(rnd(&s) % 3000));
        kill(pid, SIGKILL);
        nacks = read_acks(fds[0], acks, nacks, MAX_ACKS);
        close(fds[0]);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                      "round %d: child did not die of SIGKILL (status %d, seed %" PRIu64 ")", round,
                      status, seed);

        /* every acknowledged event is there, intact, under its number */
        q = open_q(64 * MIB);
        collect_all(q, &c);
        ck_assert_int_eq(queue_stats(q, &st), 0);
        for (size_t i = 0; i < nacks; i++) {
            uint64_t *hit = bsearch(&acks[i].seq, c.seqs, c.n, sizeof(uint64_t), cmp_u64);

            ck_assert_msg(hit != NULL,
                          "round %d: acknowledged seq %" PRIu64 " lost (seed %" PRIu64 ")", round,
                          acks[i].seq, seed);
            ck_assert_uint_eq(c.tags[hit - c.seqs], acks[i].tag);
            if (acks[i].seq > max_seq) {
                max_seq = acks[i].seq;
            }
        }
        ck_assert_uint_gt(st.next_seq, max_seq);
        ck_assert_uint_eq(st.events, c.n);
        /* no event stored twice */
        qsort(c.tags, c.n, sizeof(uint64_t), cmp_u64);
        for (size_t i = 1; i < c.n; i++) {
            ck_assert_uint_ne(c.tags[i], c.tags[i - 1]);
        }
        collect_free(&c);
        queue_close(q);
    }
    ck_assert_uint_ge(nacks, ROUNDS);
    free(acks);
}
END_TEST

/* the uuids acknowledged to the parent are the ones stored: checked separately, faster */
static int
uuid_match_fn(void *arg, const struct queue_event *ev)
{
    const struct ack *a = arg;

    ck_assert_uint_eq(ev->seq, a->seq);
    ck_assert_int_eq(memcmp(ev->uuid, a->uuid, 16), 0);
    return 1;
}

START_TEST(test_crash_uuid_kept)
{
    struct ack acks[64];
    int fds[2];
    int status;
    pid_t pid;
    size_t n;
    struct queue *q;

    ck_assert_int_eq(pipe(fds), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        crash_child_run(fds[1], 0);
    }
    close(fds[1]);
    n = read_acks(fds[0], acks, 0, 64);
    kill(pid, SIGKILL);
    close(fds[0]);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_uint_eq(n, 64);
    q = open_q(64 * MIB);
    for (size_t i = 0; i < n; i++) {
        size_t count = 0;

        ck_assert_int_eq(queue_read(q, acks[i].seq, 1, 0, uuid_match_fn, &acks[i], NULL, &count),
                         0);
        ck_assert_uint_eq(count, 1);
    }
    queue_close(q);
}
END_TEST

/* ---- two processes: one appends, one reads and deletes ---- */

#define PROC_EVENTS 3000

static void
proc_appender(uint64_t seed)
{
    struct queue *q = NULL;
    uint64_t s = seed;
    uint64_t tag = 0;

    if (queue_open(&q, g_qpath, 64 * MIB, true) != 0) {
        _exit(2);
    }
    while (tag < PROC_EVENTS) {
        size_t n = 1 + rnd(&s) % 8;

        if (n > PROC_EVENTS - tag) {
            n = PROC_EVENTS - tag;
        }
        if (append_tags(q, tag, n, NULL) != 0) {
            _exit(3);
        }
        tag += n;
    }
    queue_close(q);
    _exit(0);
}

START_TEST(test_two_processes)
{
    static uint8_t seen[PROC_EVENTS];
    uint64_t seed = rnd_seed();
    struct queue *q;
    struct queue_stats st;
    struct collect c;
    size_t total = 0;
    bool child_done = false;
    int status = 0;
    uint64_t prev_last = 0;
    pid_t pid;

    /* the reader opens first, so both processes share the environment from the start */
    q = open_q(64 * MIB);
    queue_close(q);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        proc_appender(seed);
    }
    q = open_q(64 * MIB);
    while (total < PROC_EVENTS) {
        uint64_t last = 0;
        size_t count = 0;

        memset(&c, 0, sizeof(c));
        ck_assert_int_eq(queue_read(q, 0, 1 + total % 300, 0, collect_fn, &c, &last, &count), 0);
        if (count == 0) {
            if (child_done) {
                break;
            }
            if (waitpid(pid, &status, WNOHANG) == pid) {
                child_done = true;
            } else {
                usleep(500);
            }
            collect_free(&c);
            continue;
        }
        ck_assert_uint_gt(c.seqs[0], prev_last);
        for (size_t i = 0; i < c.n; i++) {
            ck_assert_uint_lt(c.tags[i], PROC_EVENTS);
            ck_assert_msg(seen[c.tags[i]] == 0, "tag %" PRIu64 " seen twice (seed %" PRIu64 ")",
                          c.tags[i], seed);
            seen[c.tags[i]] = 1;
        }
        total += c.n;
        ck_assert_int_eq(queue_delete_range(q, c.seqs[0], last, NULL, 0), 0);
        prev_last = last;
        collect_free(&c);
    }
    if (!child_done) {
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    }
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "appender status %d", status);
    ck_assert_uint_eq(total, PROC_EVENTS);
    for (size_t i = 0; i < PROC_EVENTS; i++) {
        ck_assert_uint_eq(seen[i], 1);
    }
    ck_assert_int_eq(queue_stats(q, &st), 0);
    ck_assert_uint_eq(st.events, 0);
    ck_assert_uint_eq(st.next_seq, PROC_EVENTS + 1);
    queue_close(q);
}
END_TEST

/* ---- open, close, loader lock ---- */

START_TEST(test_open_errors)
{
    struct queue *q = (struct queue *)&q;
    char *file;
    char *nested;
    struct stat st;

    file = t_write_file(g_dir, "plain", "x", -1);
    ck_assert_int_eq(queue_open(&q, file, 4 * MIB, true), DP_ERR_INVALID);
    ck_assert_ptr_null(q);
    ck_assert_int_eq(queue_open(&q, g_qpath, 1000, true), DP_ERR_INVALID);
    ck_assert_ptr_null(q);
    ck_assert_int_eq(queue_open(&q, "", 4 * MIB, true), DP_ERR_INVALID);

    ck_assert_int_ge(asprintf(&nested, "%s/a/b/c", g_dir), 0);
    ck_assert_int_eq(queue_open(&q, nested, 4 * MIB, true), 0);
    ck_assert_int_eq(stat(nested, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0700);
    queue_close(q);
    queue_close(NULL);
    free(nested);
    free(file);
}
END_TEST

/* In a child process (one LMDB environment per process): 0 locked, 1 busy, 2 other. */
static int
lock_in_child(void)
{
    pid_t pid = fork();
    int status;

    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct queue *q = NULL;
        int rc;

        if (queue_open(&q, g_qpath, 4 * MIB, true) != 0) {
            _exit(2);
        }
        rc = queue_lock_loader(q);
        _exit(rc == 0 ? 0 : rc == DP_ERR_BUSY ? 1 : 2);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    return WEXITSTATUS(status);
}

/* Whether id is QUEUE_INSTANCE_ID_LEN lower-case hex digits. */
static bool
is_instance_id(const char *id)
{
    size_t n = strspn(id, "0123456789abcdef");

    return n == QUEUE_INSTANCE_ID_LEN && id[n] == '\0';
}

START_TEST(test_instance_id)
{
    struct queue *q = open_q(4 * MIB);
    struct queue *other = NULL;
    char first[QUEUE_INSTANCE_ID_LEN + 1];
    char *other_path = NULL;
    bool assigned = true;
    uint64_t seqs[3];

    /* Drawn at creation, kept across reopening. */
    snprintf(first, sizeof(first), "%s", queue_instance(q, &assigned));
    ck_assert(is_instance_id(first));
    ck_assert(!assigned);
    ck_assert_int_eq(append_tags(q, 0, 3, seqs), 0);
    queue_close(q);
    q = open_q(4 * MIB);
    ck_assert_str_eq(queue_instance(q, &assigned), first);
    ck_assert(!assigned);

    /* Another directory: another queue, another id. */
    ck_assert_int_ge(asprintf(&other_path, "%s/other", g_dir), 0);
    ck_assert_int_eq(queue_open(&other, other_path, 4 * MIB, true), 0);
    ck_assert(is_instance_id(queue_instance(other, NULL)));
    ck_assert_str_ne(queue_instance(other, NULL), first);

    /* A queue with events from before instance ids: a new id, marked as assigned, kept. */
    ck_assert_int_eq(queue_test_forget_instance(q), 0);
    queue_close(q);
    q = open_q(4 * MIB);
    ck_assert(is_instance_id(queue_instance(q, &assigned)));
    ck_assert_str_ne(queue_instance(q, NULL), first);
    ck_assert(assigned);
    snprintf(first, sizeof(first), "%s", queue_instance(q, NULL));
    queue_close(q);
    q = open_q(4 * MIB);
    ck_assert_str_eq(queue_instance(q, &assigned), first);
    ck_assert(assigned);

    /* Emptied, it still handed out numbers: still older than its id. */
    ck_assert_int_eq(queue_delete_range(q, 1, 3, NULL, 0), 0);
    ck_assert_int_eq(queue_test_forget_instance(q), 0);
    queue_close(q);
    q = open_q(4 * MIB);
    ck_assert(queue_instance(q, &assigned) != NULL && assigned);

    /* A queue that never handed out a number is as good as created now. */
    ck_assert_int_eq(queue_test_forget_instance(other), 0);
    queue_close(other);
    ck_assert_int_eq(queue_open(&other, other_path, 4 * MIB, true), 0);
    ck_assert(is_instance_id(queue_instance(other, &assigned)));
    ck_assert(!assigned);
    queue_close(other);
    queue_close(q);
    free(other_path);
}
END_TEST

START_TEST(test_loader_lock)
{
    struct queue *q = open_q(4 * MIB);

    ck_assert_int_eq(lock_in_child(), 0); /* nobody holds it: the child gets it */
    ck_assert_int_eq(queue_lock_loader(q), 0);
    ck_assert_int_eq(queue_lock_loader(q), 0); /* already ours */
    ck_assert_int_eq(lock_in_child(), 1);
    queue_close(q);
    ck_assert_int_eq(lock_in_child(), 0); /* released by close */
}
END_TEST

/* ---- idempotency keys ---- */

/* A keyed event: type "t", json and key as given, digest from its first byte. */
static void
kev_make(struct queue_event *ev, const char *key, const char *json, uint8_t digest, uint16_t answer)
{
    memset(ev, 0, sizeof(*ev));
    ev_uuid7(ev->uuid);
    ev->type = "t";
    ev->type_len = 1;
    ev->json = json;
    ev->json_len = strlen(json);
    ev->received_us = BASE_US;
    ev->key = key;
    ev->key_len = key != NULL ? strlen(key) : 0;
    memset(ev->digest, digest, sizeof(ev->digest));
    ev->answer = answer;
}

/* A read callback that checks the keys stored with the events: "k1" or none, in order. */
struct key_walk {
    size_t n;
    const char *want[8];
};

static int
key_walk_fn(void *arg, const struct queue_event *ev)
{
    struct key_walk *w = arg;
    const char *want = w->want[w->n++];

    if (want == NULL) {
        ck_assert_ptr_null(ev->key);
        ck_assert_uint_eq(ev->key_len, 0);
    } else {
        ck_assert_uint_eq(ev->key_len, strlen(want));
        ck_assert_int_eq(memcmp(ev->key, want, ev->key_len), 0);
    }
    return 0;
}

/* queue_conflict_fn for the tests: "conflict with " and the first byte of the recorded id. */
static size_t
file_conflict(void *arg, const struct queue_event *ev, char *buf, size_t len)
{
    int *calls = arg;

    (*calls)++;
    return (size_t)snprintf(buf, len, "conflict with %.*s %02x", (int)ev->key_len, ev->key,
                            ev->orig_uuid[0]);
}

/* queue_conflict_fn that files nothing. */
static size_t
file_nothing(void *arg, const struct queue_event *ev, char *buf, size_t len)
{
    (void)arg;
    (void)ev;
    (void)buf;
    (void)len;
    return 0;
}

/* A read callback keeping "seq flags received_us error" of each event, one a line. */
static int
stamp_walk(void *arg, const struct queue_event *ev)
{
    char *out = arg;
    size_t used = strlen(out);

    snprintf(out + used, 1024 - used, "%" PRIu64 " %u %" PRId64 " %.*s\n", ev->seq, ev->flags,
             ev->received_us, (int)ev->error_len, ev->error != NULL ? ev->error : "");
    return 0;
}

START_TEST(test_keys_conflict_filed)
{
    struct queue *q = open_q(8 * MIB);
    struct queue_event a;
    struct queue_event evs[3];
    char want[1024];
    char got[1024] = "";
    uint64_t last = 0;
    size_t count = 0;
    int calls = 0;

    kev_make(&a, "k1", "{\"a\":1}", 1, 202);
    ck_assert_int_eq(queue_append(q, &a, 1), 0);

    /* one call: an unkeyed event, a conflict filed rejected, a repeat; one stamp for all */
    kev_make(&evs[0], NULL, "{\"x\":1}", 0, 202);
    kev_make(&evs[1], "k1", "{\"a\":2}", 2, 202);
    kev_make(&evs[2], "k1", "{\"a\":1}", 1, 202);
    for (int i = 0; i < 3; i++) {
        evs[i].received_us = 0;
    }
    ck_assert_int_eq(queue_append_filing(q, evs, 3, file_conflict, &calls), 0);
    ck_assert_int_eq(calls, 1);
    ck_assert_int_eq(evs[0].dedup, QUEUE_DEDUP_NEW);
    ck_assert_uint_eq(evs[0].seq, 2);
    ck_assert_int_eq(evs[1].dedup, QUEUE_DEDUP_FILED);
    ck_assert_uint_eq(evs[1].seq, 3);
    ck_assert_int_eq(memcmp(evs[1].orig_uuid, a.uuid, 16), 0);
    ck_assert_uint_eq(evs[1].flags, 0);
    ck_assert_ptr_null(evs[1].error);
    ck_assert_int_eq(evs[2].dedup, QUEUE_DEDUP_REPEAT);
    ck_assert_uint_eq(evs[2].seq, 1);
    ck_assert_int_eq(queue_read(q, 2, 10, 0, stamp_walk, got, &last, &count), 0);
    snprintf(want, sizeof(want), "2 0 %" PRId64 " \n3 1 %" PRId64 " conflict with k1 %02x\n",
             evs[0].received_us, evs[0].received_us, a.uuid[0]);
    ck_assert_str_eq(got, want);
    ck_assert_int_ge(evs[0].received_us, BASE_US);

    /* a function that files nothing: a plain conflict, nothing stored */
    kev_make(&evs[0], "k1", "{\"a\":3}", 3, 202);
    ck_assert_int_eq(queue_append_filing(q, evs, 1, file_nothing, NULL), 0);
    ck_assert_int_eq(evs[0].dedup, QUEUE_DEDUP_CONFLICT);
    ck_assert_uint_eq(evs[0].seq, 1);
    ck_assert_int_eq(queue_read(q, 4, 10, 0, stamp_walk, got, &last, &count), 0);
    ck_assert_uint_eq(count, 0);
    queue_close(q);
}
END_TEST

/* A derived event (follows) is appended only when the event it follows is appended as new. */
START_TEST(test_keys_follows)
{
    struct queue *q = open_q(8 * MIB);
    struct queue_event a;
    struct queue_event evs[6];
    uint64_t last = 0;
    size_t count = 0;
    char got[1024] = "";
    int calls = 0;

    kev_make(&a, "k1", "{\"a\":1}", 1, 202);
    ck_assert_int_eq(queue_append(q, &a, 1), 0);
    /* a repeat and its row, a conflict (filed) and its row, a new event and its row */
    kev_make(&evs[0], "k1", "{\"a\":1}", 1, 202);
    kev_make(&evs[1], NULL, "{\"d\":1}", 0, 202);
    evs[1].follows = 1;
    kev_make(&evs[2], "k1", "{\"a\":2}", 2, 202);
    kev_make(&evs[3], "d1", "{\"d\":2}", 5, 202);
    evs[3].follows = 1;
    kev_make(&evs[4], "k2", "{\"b\":1}", 3, 202);
    kev_make(&evs[5], NULL, "{\"d\":3}", 0, 202);
    evs[5].follows = 1;
    ck_assert_int_eq(queue_append_filing(q, evs, 6, file_conflict, &calls), 0);
    ck_assert_int_eq(evs[0].dedup, QUEUE_DEDUP_REPEAT);
    ck_assert_int_eq(evs[1].dedup, QUEUE_DEDUP_FOLLOWED);
    ck_assert_uint_eq(evs[1].seq, 0);
    ck_assert_int_eq(evs[2].dedup, QUEUE_DEDUP_FILED);
    ck_assert_int_eq(evs[3].dedup, QUEUE_DEDUP_FOLLOWED);
    ck_assert_int_eq(evs[4].dedup, QUEUE_DEDUP_NEW);
    ck_assert_int_eq(evs[5].dedup, QUEUE_DEDUP_NEW);
    ck_assert_uint_eq(evs[5].seq, evs[4].seq + 1);
    ck_assert_int_eq(queue_read(q, 1, 10, 0, stamp_walk, got, &last, &count), 0);
    ck_assert_uint_eq(count, 4); /* a, the filed conflict, k2 and its row */
    /* d1 was never claimed: an event keyed d1 is new */
    kev_make(&evs[0], "d1", "{\"d\":9}", 9, 202);
    ck_assert_int_eq(queue_append(q, evs, 1), 0);
    ck_assert_int_eq(evs[0].dedup, QUEUE_DEDUP_NEW);
    /* a follows reaching before the call's start is refused */
    kev_make(&evs[0], NULL, "{\"d\":1}", 0, 202);
    evs[0].follows = 1;
    ck_assert_int_eq(queue_append(q, evs, 1), DP_ERR_INVALID);
    queue_close(q);
}
END_TEST

START_TEST(test_keys_repeat_conflict)
{
    struct queue *q = open_q(8 * MIB);
    struct queue_event a;
    struct queue_event evs[4];
    struct key_walk walk = {0};
    size_t keys = 0;
    size_t times = 0;

    kev_make(&a, "k1", "{\"a\":1}", 1, 202);
    ck_assert_int_eq(queue_append(q, &a, 1), 0);
    ck_assert_uint_eq(a.seq, 1);
    ck_assert_int_eq(a.dedup, QUEUE_DEDUP_NEW);

    /* the same bytes again: nothing appended, the first answer and id given back */
    kev_make(&evs[0], "k1", "{\"a\":1}", 1, 204);
    ck_assert_int_eq(queue_append(q, evs, 1), 0);
    ck_assert_int_eq(evs[0].dedup, QUEUE_DEDUP_REPEAT);
    ck_assert_uint_eq(evs[0].seq, 1);
    ck_assert_uint_eq(evs[0].orig_answer, 202);
    ck_assert_int_eq(memcmp(evs[0].orig_uuid, a.uuid, 16), 0);

    /* other bytes: a conflict naming the first event */
    kev_make(&evs[0], "k1", "{\"a\":2}", 2, 202);
    ck_assert_int_eq(queue_append(q, evs, 1), 0);
    ck_assert_int_eq(evs[0].dedup, QUEUE_DEDUP_CONFLICT);
    ck_assert_int_eq(memcmp(evs[0].orig_uuid, a.uuid, 16), 0);

    /* one call: k2 new, k2 repeat, k2 conflict, and a rejected event keeping k1 */
    kev_make(&evs[0], "k2", "{\"b\":1}", 3, 202);
    kev_make(&evs[1], "k2", "{\"b\":1}", 3, 202);
    kev_make(&evs[2], "k2", "{\"b\":2}", 4, 202);
    kev_make(&evs[3], "k1", "{\"c\":1}", 5, 202);
    evs[3].flags = QUEUE_F_REJECTED;
    evs[3].error = "x: bad";
    evs[3].error_len = 6;
    ck_assert_int_eq(queue_append(q, evs, 4), 0);
    ck_assert_int_eq(evs[0].dedup, QUEUE_DEDUP_NEW);
    ck_assert_uint_eq(evs[0].seq, 2);
    ck_assert_int_eq(evs[1].dedup, QUEUE_DEDUP_REPEAT);
    ck_assert_uint_eq(evs[1].seq, 2);
    ck_assert_int_eq(memcmp(evs[1].orig_uuid, evs[0].uuid, 16), 0);
    ck_assert_int_eq(evs[2].dedup, QUEUE_DEDUP_CONFLICT);
    ck_assert_int_eq(memcmp(evs[2].orig_uuid, evs[0].uuid, 16), 0);
    ck_assert_int_eq(evs[3].dedup, QUEUE_DEDUP_NEW);
    ck_assert_uint_eq(evs[3].seq, 3);

    /* an unkeyed event, then the stored keys: k1, k2, k1 (rejected), none */
    kev_make(&evs[0], NULL, "{\"d\":1}", 0, 202);
    ck_assert_int_eq(queue_append(q, evs, 1), 0);
    ck_assert_uint_eq(evs[0].seq, 4);
    walk.want[0] = "k1";
    walk.want[1] = "k2";
    walk.want[2] = "k1";
    walk.want[3] = NULL;
    ck_assert_int_eq(queue_read(q, 1, 100, 0, key_walk_fn, &walk, NULL, NULL), 0);
    ck_assert_uint_eq(walk.n, 4);
    ck_assert_int_eq(queue_test_keys(q, &keys, &times), 0);
    ck_assert_uint_eq(keys, 2);
    ck_assert_uint_eq(times, 2);

    /* a key longer than QUEUE_KEY_MAX is refused */
    {
        char longkey[QUEUE_KEY_MAX + 2];

        memset(longkey, 'k', sizeof(longkey) - 1);
        longkey[sizeof(longkey) - 1] = '\0';
        kev_make(&evs[0], longkey, "{}", 0, 202);
        ck_assert_int_eq(queue_append(q, evs, 1), DP_ERR_INVALID);
        longkey[QUEUE_KEY_MAX] = '\0';
        kev_make(&evs[0], longkey, "{}", 0, 202);
        ck_assert_int_eq(queue_append(q, evs, 1), 0);
        ck_assert_int_eq(evs[0].dedup, QUEUE_DEDUP_NEW);
    }
    queue_close(q);
}
END_TEST

START_TEST(test_keys_reopen)
{
    struct queue *q = open_q(8 * MIB);
    struct queue_event a;
    struct queue_event b;

    kev_make(&a, "survives", "{\"a\":1}", 7, 204);
    ck_assert_int_eq(queue_append(q, &a, 1), 0);
    queue_close(q);
    q = open_q(8 * MIB);
    kev_make(&b, "survives", "{\"a\":1}", 7, 202);
    ck_assert_int_eq(queue_append(q, &b, 1), 0);
    ck_assert_int_eq(b.dedup, QUEUE_DEDUP_REPEAT);
    ck_assert_uint_eq(b.orig_answer, 204);
    ck_assert_uint_eq(b.seq, a.seq);
    ck_assert_int_eq(memcmp(b.orig_uuid, a.uuid, 16), 0);
    queue_close(q);
}
END_TEST

/* Sleep until the wall clock is past t_us (bounded: the test's timeout ends a hang). */
static void
wait_past(int64_t t_us)
{
    while (dp_now_us() <= t_us) {
        struct timespec ts = {0, 20 * 1000 * 1000};

        nanosleep(&ts, NULL);
    }
}

START_TEST(test_keys_window)
{
    struct queue *q = open_q(8 * MIB);
    struct queue_event evs[2];
    struct queue_event many[300];
    char keys[300][16];
    size_t nkeys = 0;
    size_t ntimes = 0;
    int64_t after;

    queue_set_dedup_window(q, 1);
    kev_make(&evs[0], "w", "{\"a\":1}", 1, 202);
    kev_make(&evs[1], "w", "{\"a\":1}", 1, 202);
    ck_assert_int_eq(queue_append(q, evs, 2), 0);
    after = dp_now_us();
    ck_assert_int_eq(evs[1].dedup, QUEUE_DEDUP_REPEAT);
    wait_past(after + 1000000);
    /* expired (not pruned yet: it is claimed anew) */
    kev_make(&evs[0], "w", "{\"a\":2}", 2, 202);
    ck_assert_int_eq(queue_append(q, evs, 1), 0);
    ck_assert_int_eq(evs[0].dedup, QUEUE_DEDUP_NEW);
    ck_assert_uint_eq(evs[0].seq, 2);
    ck_assert_int_eq(queue_test_keys(q, &nkeys, &ntimes), 0);
    ck_assert_uint_eq(nkeys, 1);
    ck_assert_uint_eq(ntimes, 1);

    /* 300 keys expire; each append forgets at most QUEUE_PRUNE_STEP of them */
    for (size_t i = 0; i < 300; i++) {
        snprintf(keys[i], sizeof(keys[i]), "m%zu", i);
        kev_make(&many[i], keys[i], "{}", 0, 202);
    }
    ck_assert_int_eq(queue_append(q, many, 300), 0);
    after = dp_now_us();
    ck_assert_int_eq(queue_test_keys(q, &nkeys, &ntimes), 0);
    ck_assert_uint_eq(nkeys, 301);
    wait_past(after + 1000000);
    kev_make(&evs[0], NULL, "{}", 0, 202);
    ck_assert_int_eq(queue_append(q, evs, 1), 0);
    ck_assert_int_eq(queue_test_keys(q, &nkeys, &ntimes), 0);
    ck_assert_uint_eq(nkeys, 301 - QUEUE_PRUNE_STEP);
    ck_assert_uint_eq(ntimes, 301 - QUEUE_PRUNE_STEP);
    ck_assert_int_eq(queue_append(q, evs, 1), 0);
    ck_assert_int_eq(queue_test_keys(q, &nkeys, &ntimes), 0);
    ck_assert_uint_eq(nkeys, 0);
    ck_assert_uint_eq(ntimes, 0);
    queue_close(q);
}
END_TEST

/* Keys fill the map: 503-style DP_ERR_FULL; once they expire, the next append succeeds. */
START_TEST(test_keys_full)
{
    struct queue *q = open_q(1 * MIB);
    struct queue_event ev;
    char key[QUEUE_KEY_MAX + 1];
    int64_t after = 0;
    int rc = 0;
    int i;

    queue_set_dedup_window(q, 1);
    memset(key, 'k', QUEUE_KEY_MAX);
    key[QUEUE_KEY_MAX] = '\0';
    for (i = 0; i < 100000; i++) {
        snprintf(key, sizeof(key), "%08d", i);
        key[8] = 'k';
        kev_make(&ev, key, "{}", 0, 202);
        rc = queue_append(q, &ev, 1);
        if (rc != 0) {
            break;
        }
        after = dp_now_us();
        ck_assert_int_eq(ev.dedup, QUEUE_DEDUP_NEW);
    }
    ck_assert_int_eq(rc, DP_ERR_FULL);
    ck_assert_int_gt(i, 100);
    wait_past(after + 1000000);
    /* the first refusal after expiry prunes in a transaction of its own */
    kev_make(&ev, "again", "{}", 0, 202);
    rc = queue_append(q, &ev, 1);
    if (rc == DP_ERR_FULL) {
        rc = queue_append(q, &ev, 1);
    }
    ck_assert_int_eq(rc, 0);
    queue_close(q);
}
END_TEST

/* ---- suite ---- */

static TCase *
tcase(Suite *s, const char *name, int timeout_s)
{
    TCase *tc = tcase_create(name);

    tcase_add_unchecked_fixture(tc, base_setup, base_teardown);
    tcase_add_checked_fixture(tc, dir_setup, dir_teardown);
    tcase_set_timeout(tc, timeout_s);
    suite_add_tcase(s, tc);
    return tc;
}

static Suite *
queue_suite(void)
{
    Suite *s = suite_create("queue");
    TCase *tc;

    tc = tcase(s, "roundtrip", 20);
    tcase_add_test(tc, test_roundtrip_fields);
    tcase_add_test(tc, test_read_old_versions);
    tcase_add_test(tc, test_read_limits);
    tcase_add_test(tc, test_append_invalid);
    tcase_add_test(tc, test_append_too_large_total);
    tcase_add_test(tc, test_stats);

    tc = tcase(s, "sequence", 20);
    tcase_add_test(tc, test_seq_after_reopen);
    tcase_add_test(tc, test_seq_emptied_queue);
    tcase_add_test(tc, test_delete_range);
    tcase_add_test(tc, test_find_and_watermark);

    tc = tcase(s, "meta", 20);
    tcase_add_test(tc, test_meta);
    tcase_add_test(tc, test_delete_with_meta);
    tcase_add_test(tc, test_conservation);

    tc = tcase(s, "threads", 60);
    tcase_add_test(tc, test_threads);

    tc = tcase(s, "full", 60);
    tcase_add_test(tc, test_full_then_recover);
    tcase_add_test(tc, test_full_packed_delete);
    tcase_add_test(tc, test_full_isolates_groups);

    tc = tcase(s, "fault", 20);
    tcase_add_test(tc, test_fault_commit);
    tcase_add_test(tc, test_fault_panic_exits);

    tc = tcase(s, "crash", 120);
    tcase_add_test(tc, test_crash_sigkill);
    tcase_add_test(tc, test_crash_uuid_kept);

    tc = tcase(s, "processes", 120);
    tcase_add_test(tc, test_two_processes);

    tc = tcase(s, "keys", 60);
    tcase_add_test(tc, test_keys_repeat_conflict);
    tcase_add_test(tc, test_keys_conflict_filed);
    tcase_add_test(tc, test_keys_follows);
    tcase_add_test(tc, test_keys_reopen);
    tcase_add_test(tc, test_keys_window);
    tcase_add_test(tc, test_keys_full);

    tc = tcase(s, "open_lock", 20);
    tcase_add_test(tc, test_open_errors);
    tcase_add_test(tc, test_instance_id);
    tcase_add_test(tc, test_loader_lock);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(queue_suite());
    int failed;

    dp_log_setup("error", "text");
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
