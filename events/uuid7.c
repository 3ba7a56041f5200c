/*
 * uuid7.c - an event's id, a UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then a 74-bit
 * counter that starts from random bits each millisecond and grows by a random step, so ids
 * are strictly increasing within the process and unguessable. Never returns a duplicate,
 * even when the clock steps back or after fork().
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "etc/log.h"
#include "events/events.h"

#define UUID_POOL_BYTES 512
#define UUID_LO_BITS 62
#define UUID_LO_MASK ((UINT64_C(1) << UUID_LO_BITS) - 1)
#define UUID_HI_LIMIT 4096u /* rand_a is 12 bits */

/* All of it guarded by uuid_mu. */
static pthread_mutex_t uuid_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t uuid_once = PTHREAD_ONCE_INIT;
static uint64_t uuid_last_ms; /* milliseconds of the last id */
static uint32_t uuid_hi;      /* rand_a: 12 bits of the counter */
static uint64_t uuid_lo;      /* rand_b: 62 bits of the counter */
static uint8_t uuid_pool[UUID_POOL_BYTES];
static size_t uuid_pool_left;  /* unused bytes at the end of uuid_pool */
static uint64_t uuid_fallback; /* splitmix64 state, only if getrandom fails */

static void
uuid_prepare(void)
{
    pthread_mutex_lock(&uuid_mu);
}

static void
uuid_parent(void)
{
    pthread_mutex_unlock(&uuid_mu);
}

/*
 * A forked child must not replay the parent's random pool, or both would hand out the same
 * ids within one millisecond.
 */
static void
uuid_child(void)
{
    uuid_pool_left = 0;
    uuid_last_ms = 0;
    pthread_mutex_unlock(&uuid_mu);
}

static void
uuid_init(void)
{
    pthread_atfork(uuid_prepare, uuid_parent, uuid_child);
}

static uint64_t
uuid_splitmix(void)
{
    uint64_t z = (uuid_fallback += UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/*
 * getrandom(2) only fails before the kernel's pool is ready on very old kernels, or under a
 * seccomp filter; then a time-seeded generator keeps ids unique (if guessable) and we say so.
 */
static void
uuid_refill(void)
{
    size_t got = 0;
    ssize_t r;
    struct timespec ts;

    while (got < sizeof(uuid_pool)) {
        r = getrandom(uuid_pool + got, sizeof(uuid_pool) - got, 0);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            break;
        }
        got += (size_t)r;
    }
    if (got < sizeof(uuid_pool)) {
        if (uuid_fallback == 0) {
            clock_gettime(CLOCK_MONOTONIC, &ts);
            uuid_fallback =
                (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)getpid() << 48);
            dp_warn("getrandom failed, uuid bits from a time-seeded generator", "errno=%d", errno);
        }
        for (size_t i = got; i < sizeof(uuid_pool); i++) {
            uuid_pool[i] = (uint8_t)uuid_splitmix();
        }
    }
    uuid_pool_left = sizeof(uuid_pool);
}

static uint64_t
uuid_random(size_t bytes)
{
    uint64_t v = 0;

    if (uuid_pool_left < bytes) {
        uuid_refill();
    }
    for (size_t i = 0; i < bytes; i++) {
        v = (v << 8) | uuid_pool[sizeof(uuid_pool) - uuid_pool_left];
        uuid_pool_left--;
    }
    return v;
}

/*
 * Start the counter of a new millisecond: random, with the top bit of rand_a clear so at
 * least 2^73 of the counter's range is left for ids in the same millisecond.
 */
static void
uuid_counter_seed(void)
{
    uuid_hi = (uint32_t)uuid_random(2) & 0x7ffu;
    uuid_lo = uuid_random(8) & UUID_LO_MASK;
}

void
ev_uuid7(uint8_t out[16])
{
    struct timespec ts;
    uint64_t now_ms;
    uint64_t step;

    pthread_once(&uuid_once, uuid_init);
    clock_gettime(CLOCK_REALTIME, &ts);
    now_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;

    pthread_mutex_lock(&uuid_mu);
    if (now_ms > uuid_last_ms) {
        uuid_last_ms = now_ms;
        uuid_counter_seed();
    } else {
        /*
         * Same millisecond, or the clock went back: stay on the last millisecond and move
         * the counter up by a random step of 1 to 2^32. If the 74-bit counter ever runs
         * out, borrow the next millisecond (RFC 9562 section 6.2).
         */
        step = uuid_random(4) + 1;
        uuid_lo += step;
        if (uuid_lo > UUID_LO_MASK) {
            uuid_lo &= UUID_LO_MASK;
            uuid_hi++;
        }
        if (uuid_hi >= UUID_HI_LIMIT) {
            uuid_last_ms++;
            uuid_counter_seed();
        }
    }
    out[0] = (uint8_t)(uuid_last_ms >> 40);
    out[1] = (uint8_t)(uuid_last_ms >> 32);
    out[2] = (uint8_t)(uuid_last_ms >> 24);
    out[3] = (uint8_t)(uuid_last_ms >> 16);
    out[4] = (uint8_t)(uuid_last_ms >> 8);
    out[5] = (uint8_t)uuid_last_ms;
    out[6] = (uint8_t)(0x70u | (uuid_hi >> 8));
    out[7] = (uint8_t)uuid_hi;
    out[8] = (uint8_t)(0x80u | ((uuid_lo >> 56) & 0x3fu));
    for (int i = 0; i < 7; i++) {
        out[9 + i] = (uint8_t)(uuid_lo >> (8 * (6 - i)));
    }
    pthread_mutex_unlock(&uuid_mu);
}
