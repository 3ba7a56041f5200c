/*
 * ops.c - the figures every operator's view shares: the request counters srv_observe keeps
 * (lock-free atomics, by status code and a latency histogram in steps of sqrt(2)), a type's
 * slot in them, the loader's counters read from the queue's metadata, the oldest event's
 * age, and the summary line logged once a minute. Read-only: never blocks appends.
 */
#include "etc/err.h"
#include "etc/log.h"
#include "server/srv.h"

#include <stdio.h>
#include <string.h>

size_t
srv_type_index(const struct ev_type *t)
{
    for (size_t i = 0; i < ev_registry_len && i < SRV_MAX_TYPES; i++) {
        if (ev_registry[i] == t) {
            return i;
        }
    }
    return 0;
}

/*
 * Bucket b holds latencies below lat_bucket_upper_us(b): steps of sqrt(2). For
 * 2^k <= us < 2^(k+1) that is 2k+1 below 2^k*sqrt(2), else 2k+2. One clz per request.
 */
static int
lat_bucket(int64_t us)
{
    int k;
    int b;

    if (us < 1) {
        return 0;
    }
    k = 63 - __builtin_clzll((unsigned long long)us);
    b = 2 * k + 1 + ((double)us >= (double)(1ULL << k) * 1.4142);
    return b < SRV_LAT_BUCKETS ? b : SRV_LAT_BUCKETS - 1;
}

static double
lat_bucket_upper_us(int b)
{
    return (double)(1ULL << (b / 2)) * (b % 2 ? 1.4142 : 1.0);
}

void
srv_observe(struct srv *s, int status, bool ingest, int64_t elapsed_us)
{
    if (status >= 100 && status < 600) {
        atomic_fetch_add(&s->m.http_by_code[status], 1);
        if (ingest) {
            atomic_fetch_add(&s->m.ingest_by_code[status], 1);
        }
    }
    atomic_fetch_add(&s->m.lat[lat_bucket(elapsed_us)], 1);
    atomic_fetch_add(&s->m.lat_sum_us, elapsed_us > 0 ? (uint64_t)elapsed_us : 0);
}

int64_t
srv_meta_int(struct srv *s, const char *name)
{
    int64_t v = 0;

    queue_meta_get(s->q, name, &v);
    return v;
}

double
srv_oldest_age_s(const struct queue_stats *st, int64_t now_us)
{
    if (st->events == 0 || st->oldest_received_us == 0 || now_us < st->oldest_received_us) {
        return 0;
    }
    return (double)(now_us - st->oldest_received_us) / 1e6;
}

/* Requests, events and p99 latency since the previous call; called once a minute. */
void
srv_summary_log(struct srv *s)
{
    static uint64_t prev_req, prev_acc, prev_rej;
    static uint64_t prev_lat[SRV_LAT_BUCKETS];
    uint64_t req = 0;
    uint64_t acc = 0;
    uint64_t rej = atomic_load(&s->m.rejected_untyped);
    uint64_t lat[SRV_LAT_BUCKETS];
    uint64_t total = 0;
    uint64_t seen = 0;
    int p99 = 0;

    for (int c = 100; c < 600; c++) {
        req += atomic_load(&s->m.http_by_code[c]);
    }
    for (size_t i = 0; i < SRV_MAX_TYPES; i++) {
        acc += atomic_load(&s->m.accepted[i]);
        rej += atomic_load(&s->m.rejected[i]);
    }
    for (int b = 0; b < SRV_LAT_BUCKETS; b++) {
        lat[b] = atomic_load(&s->m.lat[b]) - prev_lat[b];
        prev_lat[b] += lat[b];
        total += lat[b];
    }
    for (int b = 0; b < SRV_LAT_BUCKETS && total > 0; b++) {
        seen += lat[b];
        if (seen * 100 >= total * 99) {
            p99 = b;
            break;
        }
    }
    dp_info("summary", "requests=%llu accepted=%llu rejected=%llu p99_ms=%.2f",
            (unsigned long long)(req - prev_req), (unsigned long long)(acc - prev_acc),
            (unsigned long long)(rej - prev_rej), total ? lat_bucket_upper_us(p99) / 1000 : 0.0);
    prev_req = req;
    prev_acc = acc;
    prev_rej = rej;
}
