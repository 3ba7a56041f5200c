/*
 * tap.c - GET /v1/tap: accepted events as NDJSON over a chunked answer, as they are
 * acknowledged. The ingest path copies a line into each open tap's ring under that tap's
 * mutex and never waits for a client, nor wakes the tap's thread for every line: what does
 * not fit is counted and reported in the stream as {"dropped": N}. With no tap open,
 * publishing is one atomic load.
 */
#include "etc/err.h"
#include "etc/log.h"
#include "server/srv.h"

#include <civetweb.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TAP_SEND_BYTES (64u << 10) /* taken out of the ring per chunk sent */
#define TAP_BATCH_MS 50            /* a line waits at most this long for others to join it */
#define TAP_IDLE_S 15              /* a newline after this long without a line */
#define TAP_LIMIT_MAX 1000000000ULL
#define TAP_HEAD 8  /* room before a chunk's data for its size line */
#define TAP_TAIL 64 /* room after it for its CRLF and a {"dropped":N} chunk */

void
srv_tap_init(struct srv *s)
{
    for (int i = 0; i < SRV_TAP_MAX; i++) {
        pthread_mutex_init(&s->taps[i].mu, NULL);
        /* glibc's cannot fail: neither the attribute nor the variable allocates. */
        (void)dp_cond_init_mono(&s->taps[i].cv);
    }
}

void
srv_tap_stop(struct srv *s)
{
    atomic_store(&s->stopping, true);
    for (int i = 0; i < SRV_TAP_MAX; i++) {
        pthread_mutex_lock(&s->taps[i].mu);
        pthread_cond_broadcast(&s->taps[i].cv);
        pthread_mutex_unlock(&s->taps[i].mu);
    }
}

/* Copy n bytes into t's ring at its end (the caller checked the room). */
static void
ring_put(struct srv_tap *t, const char *p, size_t n)
{
    size_t end = (t->start + t->len) % SRV_TAP_RING_BYTES;
    size_t first = n < SRV_TAP_RING_BYTES - end ? n : SRV_TAP_RING_BYTES - end;

    memcpy(t->ring + end, p, first);
    memcpy(t->ring, p + first, n - first);
    t->len += n;
}

/* Take up to n bytes from the front of t's ring into out; returns how many. */
static size_t
ring_take(struct srv_tap *t, char *out, size_t n)
{
    size_t take = n < t->len ? n : t->len;
    size_t first = take < SRV_TAP_RING_BYTES - t->start ? take : SRV_TAP_RING_BYTES - t->start;

    memcpy(out, t->ring + t->start, first);
    memcpy(out + first, t->ring, take - first);
    t->start = (t->start + take) % SRV_TAP_RING_BYTES;
    t->len -= take;
    return take;
}

/*
 * The event's line: {"id", "type", "received_at", "source" (the API key's name, when it
 * came with one; names need no escaping), "event": <its bytes>}. The bytes are
 * valid JSON (they were accepted), so a line break in them is whitespace between tokens
 * (JSON strings cannot hold one raw): it becomes a space and the line stays one line.
 */
static int
tap_line(const struct queue_event *ev, struct ev_buf *b)
{
    char id[EV_UUID_TEXT];
    char when[DP_TIME_TEXT_MAX];
    char head[384];
    size_t at;
    int n;

    ev_uuid_format(ev->uuid, id);
    dp_time_text(ev->received_us, when);
    n = snprintf(head, sizeof(head),
                 "{\"id\":\"%s\",\"type\":\"%.*s\",\"received_at\":\"%s\",%s%.*s%s\"event\":", id,
                 (int)ev->type_len, ev->type, when, ev->source_len > 0 ? "\"source\":\"" : "",
                 (int)ev->source_len, ev->source_len > 0 ? ev->source : "",
                 ev->source_len > 0 ? "\"," : "");
    b->len = 0;
    if (n < 0 || (size_t)n >= sizeof(head) || ev_buf_put(b, head, (size_t)n) != 0) {
        return DP_ERR_NOMEM;
    }
    at = b->len;
    if (ev_buf_put(b, ev->json, ev->json_len) != 0 || ev_buf_put(b, "}\n", 2) != 0) {
        return DP_ERR_NOMEM;
    }
    for (size_t i = at; i < at + ev->json_len; i++) {
        if (b->data[i] == '\n' || b->data[i] == '\r') {
            b->data[i] = ' ';
        }
    }
    return 0;
}

/*
 * Offer one event's line to tap t (locked by the caller). The tap's thread is woken only
 * when it has something new to do: the first line of an empty ring, a chunk's worth
 * waiting, the limit reached. Waking it for every line (as before) cost ingest a futex
 * wake, a context switch and three sends for every few events while a tap kept up: +70%
 * sends and +50% futex calls in tests/bench/bench_server.sh. A full ring costs a count.
 */
static void
tap_offer(struct srv *s, struct srv_tap *t, const struct queue_event *ev, const struct ev_buf *line)
{
    size_t was = t->len;

    if (t->type[0] != '\0' &&
        (strlen(t->type) != ev->type_len || memcmp(t->type, ev->type, ev->type_len) != 0)) {
        return;
    }
    if (t->limit != 0 && t->offered >= t->limit) {
        return;
    }
    t->offered++;
    if (SRV_TAP_RING_BYTES - t->len < line->len) {
        t->dropped++;
        atomic_fetch_add_explicit(&s->m.tap_dropped, 1, memory_order_relaxed);
    } else {
        ring_put(t, line->data, line->len);
    }
    if (was == 0 || (was < TAP_SEND_BYTES && t->len >= TAP_SEND_BYTES) ||
        (t->limit != 0 && t->offered >= t->limit)) {
        pthread_cond_signal(&t->cv);
    }
}

void
srv_tap_publish_slow(struct srv *s, const struct queue_event *evs, size_t n)
{
    struct ev_buf line = {0};

    for (size_t i = 0; i < n; i++) {
        /* Only events this request appended: a repeat or a conflict of a key is not new. */
        if ((evs[i].flags & QUEUE_F_REJECTED) != 0 || evs[i].dedup != QUEUE_DEDUP_NEW ||
            tap_line(&evs[i], &line) != 0) {
            continue;
        }
        for (int k = 0; k < SRV_TAP_MAX; k++) {
            struct srv_tap *t = &s->taps[k];

            pthread_mutex_lock(&t->mu);
            if (t->used) {
                tap_offer(s, t, &evs[i], &line);
            }
            pthread_mutex_unlock(&t->mu);
        }
    }
    ev_buf_free(&line);
}

/* Read ?type= and ?limit=; fills r (400, 404) and returns false when they are wrong. */
static bool
tap_params(struct mg_connection *c, char *type, size_t type_len, uint64_t *limit,
           struct srv_reply *r)
{
    const char *qs = mg_get_request_info(c)->query_string;
    char num[32];
    char *end = NULL;
    int n;

    type[0] = '\0';
    *limit = 0;
    if (qs == NULL) {
        return true;
    }
    n = mg_get_var(qs, strlen(qs), "type", type, type_len);
    if (n == -2 || (n >= 0 && ev_lookup(type, strlen(type)) == NULL)) {
        srv_reply_json(r, 404, "type: unknown event type");
        return false;
    }
    n = mg_get_var(qs, strlen(qs), "limit", num, sizeof(num));
    if (n == -1) {
        return true;
    }
    errno = 0;
    *limit = n > 0 ? strtoull(num, &end, 10) : 0;
    if (n <= 0 || num[0] == '-' || *end != '\0' || errno != 0 || *limit == 0 ||
        *limit > TAP_LIMIT_MAX) {
        srv_reply_json(r, 400, "limit: expected an integer from 1 to 1000000000");
        return false;
    }
    return true;
}

/* Claim a free slot for a tap of type (""), with limit and a ring; NULL when all are taken. */
static struct srv_tap *
tap_claim(struct srv *s, const char *type, uint64_t limit, char *ring)
{
    for (int i = 0; i < SRV_TAP_MAX; i++) {
        struct srv_tap *t = &s->taps[i];

        pthread_mutex_lock(&t->mu);
        if (!t->used) {
            t->used = true;
            snprintf(t->type, sizeof(t->type), "%s", type);
            t->limit = limit;
            t->offered = t->dropped = 0;
            t->ring = ring;
            t->start = t->len = 0;
            atomic_fetch_add(&s->taps_open, 1);
            pthread_mutex_unlock(&t->mu);
            return t;
        }
        pthread_mutex_unlock(&t->mu);
    }
    return NULL;
}

static void
tap_release(struct srv *s, struct srv_tap *t)
{
    pthread_mutex_lock(&t->mu);
    t->used = false;
    t->ring = NULL;
    t->len = 0;
    atomic_fetch_sub(&s->taps_open, 1);
    pthread_mutex_unlock(&t->mu);
}

/* The tap has nothing more to send once its ring is empty (t locked by the caller). */
static bool
tap_ending(struct srv *s, const struct srv_tap *t)
{
    return atomic_load(&s->stopping) || (t->limit != 0 && t->offered >= t->limit);
}

/* Wait on t's condition (t locked) until the CLOCK_MONOTONIC time until; false at it. */
static bool
tap_wait(struct srv_tap *t, const struct timespec *until)
{
    return pthread_cond_timedwait(&t->cv, &t->mu, until) != ETIMEDOUT;
}

/*
 * Wait for lines (or the end), let a batch gather for up to TAP_BATCH_MS unless a chunk's
 * worth is already there, then take what is waiting into out: *dropped receives the drops
 * to report once the ring is empty, *done whether the tap has nothing more to send.
 */
static size_t
tap_wait_take(struct srv *s, struct srv_tap *t, char *out, uint64_t *dropped, bool *done)
{
    struct timespec until;
    size_t n;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += TAP_IDLE_S;
    pthread_mutex_lock(&t->mu);
    while (t->len == 0 && t->dropped == 0 && !tap_ending(s, t)) {
        if (!tap_wait(t, &until)) {
            break;
        }
    }
    if (t->len > 0 && t->len < TAP_SEND_BYTES && !tap_ending(s, t)) {
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += TAP_BATCH_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (t->len < TAP_SEND_BYTES && !tap_ending(s, t)) {
            if (!tap_wait(t, &until)) {
                break;
            }
        }
    }
    n = ring_take(t, out, TAP_SEND_BYTES);
    *dropped = 0;
    if (t->len == 0) {
        *dropped = t->dropped;
        t->dropped = 0;
    }
    *done = t->len == 0 && tap_ending(s, t);
    pthread_mutex_unlock(&t->mu);
    return n;
}

/*
 * Send data (n bytes at buf + TAP_HEAD; buf has TAP_TAIL bytes after them) as one chunk,
 * followed by a {"dropped":N} chunk when dropped is not 0, in one write: mg_send_chunk
 * writes a chunk's size line, data and CRLF separately, three segments on a TCP_NODELAY
 * socket. Returns 0, or -1 when the write failed (the client is gone).
 */
static int
tap_send(struct mg_connection *c, char *buf, size_t n, uint64_t dropped)
{
    char *from = buf + TAP_HEAD; /* the bytes to write: from..at */
    char *at = from + n;
    char size[TAP_HEAD + 1];
    char note[48];
    int w;

    if (n > 0) {
        w = snprintf(size, sizeof(size), "%zx\r\n", n);
        from -= w;
        memcpy(from, size, (size_t)w);
        memcpy(at, "\r\n", 2);
        at += 2;
    }
    if (dropped > 0) {
        w = snprintf(note, sizeof(note), "{\"dropped\":%llu}\n", (unsigned long long)dropped);
        at += sprintf(at, "%x\r\n%s\r\n", (unsigned)w, note);
    }
    w = (int)(at - from);
    return mg_write(c, from, (size_t)w) == w ? 0 : -1;
}

/* Send the tap's lines until its limit, the server's stop, or a write that fails. */
static void
tap_stream(struct srv *s, struct mg_connection *c, struct srv_tap *t, char *buf)
{
    uint64_t dropped;
    bool done = false;

    while (!done) {
        size_t n = tap_wait_take(s, t, buf + TAP_HEAD, &dropped, &done);

        if (n == 0 && dropped == 0 && !done) {
            /* Idle: a blank line (NDJSON readers skip it) finds a client that is gone. */
            n = 1;
            buf[TAP_HEAD] = '\n';
        }
        if ((n > 0 || dropped > 0) && tap_send(c, buf, n, dropped) != 0) {
            return;
        }
    }
    mg_send_chunk(c, "", 0);
}

void
srv_get_tap(struct srv *s, struct mg_connection *c, const struct srv_match *m, struct srv_reply *r)
{
    char type[QUEUE_TYPE_MAX + 1];
    char *ring = NULL;
    char *out = NULL;
    struct srv_tap *t = NULL;
    uint64_t limit;

    (void)m;
    if (!tap_params(c, type, sizeof(type), &limit, r)) {
        return;
    }
    ring = malloc(SRV_TAP_RING_BYTES);
    out = malloc(TAP_HEAD + TAP_SEND_BYTES + TAP_TAIL);
    if (ring == NULL || out == NULL) {
        srv_reply_json(r, 500, "out of memory");
        goto out;
    }
    t = tap_claim(s, type, limit, ring);
    if (t == NULL) {
        srv_reply_json(r, 429, "too many taps open: at most 4 at once; retry later");
        srv_reply_header(r, "Retry-After", "5");
        goto out;
    }
    dp_info("tap opened", "type=%s limit=%llu remote=%s", type[0] != '\0' ? type : "*",
            (unsigned long long)limit, mg_get_request_info(c)->remote_addr);
    r->status = 200;
    r->streamed = true;
    mg_disable_connection_keep_alive(c);
    mg_printf(c,
              "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
              "Transfer-Encoding: chunked\r\nCache-Control: no-store\r\n"
              "X-Accel-Buffering: no\r\nConnection: close\r\n%s\r\n",
              r->headers);
    tap_stream(s, c, t, out);
    tap_release(s, t);
    dp_info("tap closed", "type=%s", type[0] != '\0' ? type : "*");
out:
    free(ring);
    free(out);
}
