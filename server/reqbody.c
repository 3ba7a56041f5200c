/*
 * reqbody.c - reading a request body within server.max_body_bytes: Content-Length
 * or chunked (civetweb decodes chunks in mg_read), and gzip inflated with zlib
 * with the limit applied to the inflated size, so a gzip bomb gets 413 after
 * at most max bytes of output. Never reads past the limit. Also the one judge
 * of "too large" (srv_too_large), for the queue's record limit as well; the budget of
 * bytes in flight (server.max_inflight_bytes); and the watchdog that holds every body to
 * request_timeout_ms in all. Never allocates a body buffer the budget did not grant.
 */
#include "etc/err.h"
#include "etc/log.h"
#include "server/srv.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <zlib.h>

#define BODY_CHUNK 65536
#define BODY_READ_MAX ((size_t)1 << 20) /* bytes per mg_read or inflate step */
#define BODY_SLOW_READ_US 20000         /* a read slower than this: the client trickles */
#define SRV_BUDGET_WAIT_MS 1000         /* longest wait of a request for room in the budget */
#define WATCHDOG_IDLE_MS 1000           /* the watchdog's longest sleep */

/* One body being read, on the reading thread's stack, in the watchdog's list. */
struct srv_body_watch {
    struct srv_body_watch *next;
    struct srv_body_watch *prev;
    int64_t deadline_us; /* CLOCK_MONOTONIC microseconds */
    char addr[48];       /* the client's address, as civetweb prints it */
    int peer_port;
    int local_port;
    bool cut; /* the watchdog shut its reading side */
};

static int64_t
mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
mono_abs(int64_t us, struct timespec *ts)
{
    ts->tv_sec = (time_t)(us / 1000000);
    ts->tv_nsec = (long)(us % 1000000) * 1000;
}

int
srv_budget_init(struct srv_budget *b, int64_t max_bytes)
{
    memset(b, 0, sizeof(*b));
    b->max_bytes = max_bytes;
    if (pthread_mutex_init(&b->mu, NULL) != 0) {
        return DP_ERR_NOMEM;
    }
    if (dp_cond_init_mono(&b->cv) != 0) {
        pthread_mutex_destroy(&b->mu);
        return DP_ERR_NOMEM;
    }
    return 0;
}

void
srv_budget_destroy(struct srv_budget *b)
{
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
}

int
srv_charge_add(struct srv_charge *ch, int64_t n)
{
    struct srv_budget *b = ch->budget;
    int64_t until = mono_us() + (int64_t)SRV_BUDGET_WAIT_MS * 1000;
    struct timespec ts;
    int rc = 0;

    if (n <= 0) {
        return 0;
    }
    mono_abs(until, &ts);
    pthread_mutex_lock(&b->mu);
    while (b->used + n > b->max_bytes) {
        if (ch->bytes > 0 || pthread_cond_timedwait(&b->cv, &b->mu, &ts) == ETIMEDOUT) {
            rc = DP_ERR_BUSY;
            goto out;
        }
    }
    b->used += n;
    ch->bytes += n;
    if (b->used > b->peak) {
        b->peak = b->used;
    }
out:
    pthread_mutex_unlock(&b->mu);
    return rc;
}

void
srv_charge_release(struct srv_charge *ch)
{
    struct srv_budget *b = ch->budget;

    if (b == NULL || ch->bytes == 0) {
        return;
    }
    pthread_mutex_lock(&b->mu);
    b->used -= ch->bytes;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    ch->bytes = 0;
}

void
srv_reply_busy(struct srv_reply *r)
{
    srv_reply_json(r, 503,
                   "server busy: the request bodies in flight fill "
                   "server.max_inflight_bytes; retry later");
    srv_reply_header(r, "Retry-After", "1");
    srv_reply_header(r, "Connection", "close");
}

/*
 * Grow *buf to hold at least need bytes (doubling), charging the growth to ch first.
 * 0, DP_ERR_BUSY or DP_ERR_NOMEM.
 */
static int
grow(struct srv_charge *ch, char **buf, size_t *cap, size_t need)
{
    size_t ncap = *cap ? *cap : BODY_CHUNK;
    char *p;

    if (need <= *cap) {
        return 0;
    }
    while (ncap < need) {
        ncap *= 2;
    }
    if (srv_charge_add(ch, (int64_t)(ncap - *cap)) != 0) {
        return DP_ERR_BUSY;
    }
    p = realloc(*buf, ncap);
    if (p == NULL) {
        return DP_ERR_NOMEM;
    }
    *buf = p;
    *cap = ncap;
    return 0;
}

/* ---- the watchdog ------------------------------------------------------- */

/* A connected socket's ends: the peer's address as text and port, the local port. */
struct sock_ends {
    char addr[INET6_ADDRSTRLEN];
    int peer_port;
    int local_port;
};

/* The ends of fd; false when fd is not a connected TCP socket. */
static bool
sock_ends(int fd, struct sock_ends *out)
{
    struct sockaddr_storage peer;
    struct sockaddr_storage local;
    socklen_t pl = sizeof(peer);
    socklen_t ll = sizeof(local);
    const void *a;

    if (getsockname(fd, (struct sockaddr *)&local, &ll) != 0 ||
        getpeername(fd, (struct sockaddr *)&peer, &pl) != 0 || peer.ss_family != local.ss_family) {
        return false;
    }
    if (peer.ss_family == AF_INET) {
        a = &((struct sockaddr_in *)&peer)->sin_addr;
        out->peer_port = ntohs(((struct sockaddr_in *)&peer)->sin_port);
        out->local_port = ntohs(((struct sockaddr_in *)&local)->sin_port);
    } else if (peer.ss_family == AF_INET6) {
        a = &((struct sockaddr_in6 *)&peer)->sin6_addr;
        out->peer_port = ntohs(((struct sockaddr_in6 *)&peer)->sin6_port);
        out->local_port = ntohs(((struct sockaddr_in6 *)&local)->sin6_port);
    } else {
        return false;
    }
    return inet_ntop(peer.ss_family, a, out->addr, sizeof(out->addr)) != NULL;
}

/*
 * Shut the reading side of every connection in wd's list past its deadline: a read blocked
 * in civetweb then returns what it has, and the next one returns 0. civetweb does not hand
 * out a connection's socket, so the sockets of this process are searched for the one with
 * the connection's address and ports (a TCP connection's pair of ends is unique). Called
 * with wd->mu held: a watched body's thread is still reading, so its socket is still open.
 */
static void
watchdog_cut(struct srv_watchdog *wd, int64_t now)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;

    if (d == NULL) {
        dp_warn("watchdog: cannot list /proc/self/fd", "error=%s", strerror(errno));
        return;
    }
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        struct sock_ends se;

        if (e->d_name[0] < '0' || e->d_name[0] > '9' || fd == dirfd(d) || !sock_ends(fd, &se)) {
            continue;
        }
        for (struct srv_body_watch *w = wd->head; w != NULL; w = w->next) {
            if (!w->cut && w->deadline_us <= now && w->peer_port == se.peer_port &&
                w->local_port == se.local_port && strcmp(w->addr, se.addr) == 0) {
                shutdown(fd, SHUT_RD);
                w->cut = true;
                atomic_fetch_add(&wd->cut, 1);
                dp_info("body not received within server.request_timeout_ms: cut off",
                        "client=%s:%d", w->addr, w->peer_port);
                break;
            }
        }
    }
    closedir(d);
}

static void *
watchdog_main(void *arg)
{
    struct srv_watchdog *wd = arg;
    struct timespec ts;

    pthread_mutex_lock(&wd->mu);
    while (!wd->stop) {
        int64_t now = mono_us();
        int64_t next = now + (int64_t)WATCHDOG_IDLE_MS * 1000;
        bool due = false;

        for (struct srv_body_watch *w = wd->head; w != NULL; w = w->next) {
            if (w->cut) {
                continue;
            }
            due = due || w->deadline_us <= now;
            next = w->deadline_us > now && w->deadline_us < next ? w->deadline_us : next;
        }
        if (due) {
            watchdog_cut(wd, now);
        }
        mono_abs(next, &ts);
        pthread_cond_timedwait(&wd->cv, &wd->mu, &ts);
    }
    pthread_mutex_unlock(&wd->mu);
    return NULL;
}

int
srv_watchdog_start(struct srv *s)
{
    struct srv_watchdog *wd = &s->watchdog;

    if (pthread_mutex_init(&wd->mu, NULL) != 0) {
        return DP_ERR_NOMEM;
    }
    if (dp_cond_init_mono(&wd->cv) != 0) {
        pthread_mutex_destroy(&wd->mu);
        return DP_ERR_NOMEM;
    }
    wd->head = NULL;
    wd->stop = false;
    if (pthread_create(&wd->thread, NULL, watchdog_main, wd) != 0) {
        pthread_cond_destroy(&wd->cv);
        pthread_mutex_destroy(&wd->mu);
        return DP_ERR_NOMEM;
    }
    wd->running = true;
    return 0;
}

void
srv_watchdog_stop(struct srv *s)
{
    struct srv_watchdog *wd = &s->watchdog;

    if (!wd->running) {
        return;
    }
    pthread_mutex_lock(&wd->mu);
    wd->stop = true;
    pthread_cond_signal(&wd->cv);
    pthread_mutex_unlock(&wd->mu);
    pthread_join(wd->thread, NULL);
    pthread_cond_destroy(&wd->cv);
    pthread_mutex_destroy(&wd->mu);
    wd->running = false;
}

/* Put w (filled by the caller) in the watchdog's list; wakes it when w is due first. */
static void
watch_add(struct srv_watchdog *wd, struct srv_body_watch *w)
{
    if (!wd->running) {
        return;
    }
    pthread_mutex_lock(&wd->mu);
    w->prev = NULL;
    w->next = wd->head;
    if (wd->head != NULL) {
        wd->head->prev = w;
    }
    wd->head = w;
    /* The watchdog sleeps at most WATCHDOG_IDLE_MS; wake it only for a sooner deadline. */
    if (w->deadline_us < mono_us() + (int64_t)WATCHDOG_IDLE_MS * 1000) {
        pthread_cond_signal(&wd->cv);
    }
    pthread_mutex_unlock(&wd->mu);
}

/* Take w out of the list; returns whether the watchdog cut it off. */
static bool
watch_remove(struct srv_watchdog *wd, struct srv_body_watch *w)
{
    bool cut;

    if (!wd->running) {
        return false;
    }
    pthread_mutex_lock(&wd->mu);
    if (w->prev != NULL) {
        w->prev->next = w->next;
    } else {
        wd->head = w->next;
    }
    if (w->next != NULL) {
        w->next->prev = w->prev;
    }
    cut = w->cut;
    pthread_mutex_unlock(&wd->mu);
    return cut;
}

bool
srv_too_large(struct srv_reply *r, int64_t body_bytes, int64_t max_body_bytes, int queue_rc)
{
    char msg[128];

    if (body_bytes > max_body_bytes) {
        snprintf(msg, sizeof(msg), "body larger than server.max_body_bytes (%lld bytes)",
                 (long long)max_body_bytes);
        srv_reply_json(r, 413, msg);
        srv_reply_header(r, "Connection", "close");
        return true;
    }
    if (queue_rc == DP_ERR_INVALID) {
        srv_reply_json(r, 413,
                       "the body's events are too large for the queue (an event, or "
                       "all of them together, over half of queue.max_bytes)");
        return true;
    }
    return false;
}

/*
 * Read the raw (possibly compressed) bytes, stopping at the first read that
 * takes them past limit (*len > limit tells the caller). With a
 * Content-Length (expect >= 0) the first buffer is sized to it (capped at
 * 1 MiB, so announcing a large body pins nothing), and a body that ends short
 * of it (the client stalled past request_timeout_ms, or hung up), or that is
 * not complete within timeout_ms in all, is DP_ERR_INVALID: a truncated body
 * is never taken as complete, and a trickling client cannot hold a thread.
 */
static int
read_raw(struct mg_connection *c, struct srv_charge *ch, int64_t expect, int64_t limit,
         int timeout_ms, char **out, size_t *len)
{
    char *buf = NULL;
    size_t cap = 0;
    size_t n = 0;
    size_t step = 1;
    int64_t deadline = dp_now_us() + (int64_t)timeout_ms * 1000;
    int rc = 0;

    if (expect > 0) {
        /* One more byte than announced shows a body longer than its header. */
        size_t first = expect < (1 << 20) ? (size_t)expect + 1 : (size_t)1 << 20;

        if (srv_charge_add(ch, (int64_t)first) != 0) {
            return DP_ERR_BUSY;
        }
        buf = malloc(first);
        if (buf == NULL) {
            return DP_ERR_NOMEM;
        }
        cap = first;
    }
    for (;;) {
        int got;
        if (n == cap) {
            rc = grow(ch, &buf, &cap, n + BODY_CHUNK);
            if (rc != 0) {
                goto out;
            }
        }
        /*
         * civetweb's mg_read returns only when the whole request is filled (or one
         * read times out), so a client trickling a byte a second would hold this
         * thread for as long as its body lasts. Ask for 1 byte, then double while
         * reads come back at once; a slow read drops back to 1 byte, so the
         * deadline below is checked at least once per byte received.
         */
        int64_t t0 = dp_now_us();
        size_t want = cap - n < step ? cap - n : step;
        got = mg_read(c, buf + n, want);
        if (got < 0) {
            rc = DP_ERR_IO;
            goto out;
        }
        if (got == 0) {
            break;
        }
        n += (size_t)got;
        if ((int64_t)n > limit) {
            break;
        }
        if (dp_now_us() > deadline) {
            rc = DP_ERR_INVALID;
            goto out;
        }
        step = dp_now_us() - t0 > BODY_SLOW_READ_US ? 1
               : step < BODY_READ_MAX               ? step * 2
                                                    : BODY_READ_MAX;
    }
    /* (Past the limit is past expect too: a larger Content-Length was refused unread.) */
    if (expect >= 0 && (int64_t)n < expect) {
        rc = DP_ERR_INVALID;
        goto out;
    }
    *out = buf;
    *len = n;
    buf = NULL;
out:
    free(buf);
    return rc;
}

/*
 * Inflate gzip in, stopping once past max bytes of output (*len > max tells the caller).
 * Several gzip members one after another (cat a.gz b.gz) are one body; bytes
 * after the last member that are not another member are DP_ERR_INVALID.
 */
static int
inflate_gzip(struct srv_charge *ch, const char *in, size_t in_len, int64_t max, char **out,
             size_t *len)
{
    z_stream z;
    char *buf = NULL;
    size_t cap = 0;
    size_t used = 0;
    int rc = 0;

    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
        return DP_ERR_NOMEM;
    }
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)in_len; /* in_len <= server.max_body_bytes < 2 GiB */
    for (;;) {
        int zrc;
        size_t room;
        if ((int64_t)used > max) {
            break;
        }
        rc = grow(ch, &buf, &cap, used + BODY_CHUNK);
        if (rc != 0) {
            goto out;
        }
        room = cap - used < BODY_READ_MAX ? cap - used : BODY_READ_MAX;
        z.next_out = (Bytef *)buf + used;
        z.avail_out = (uInt)room;
        zrc = inflate(&z, Z_NO_FLUSH);
        used += room - z.avail_out;
        if (zrc == Z_STREAM_END) {
            if (z.avail_in == 0) {
                break;
            }
            /* Another member must follow: the gzip magic, then inflate it too. */
            if (z.avail_in < 2 || z.next_in[0] != 0x1f || z.next_in[1] != 0x8b ||
                inflateReset(&z) != Z_OK) {
                rc = DP_ERR_INVALID;
                goto out;
            }
            continue;
        }
        if ((zrc == Z_BUF_ERROR && z.avail_in == 0) || (zrc != Z_OK && zrc != Z_BUF_ERROR)) {
            rc = DP_ERR_INVALID; /* truncated or corrupt stream */
            goto out;
        }
    }
    *len = used;
    *out = buf;
    buf = NULL;
out:
    inflateEnd(&z);
    free(buf);
    return rc;
}

int
srv_body_read(struct srv *s, struct mg_connection *c, struct srv_charge *ch, char **out,
              size_t *len, struct srv_reply *r)
{
    const struct mg_request_info *ri = mg_get_request_info(c);
    const char *enc = mg_get_header(c, "Content-Encoding");
    int64_t max = s->cfg->server_max_body_bytes;
    int timeout_ms = s->cfg->server_request_timeout_ms;
    struct srv_body_watch w;
    bool gzip = false;
    bool cut;
    char *raw = NULL;
    size_t raw_len = 0;
    int rc;

    *out = NULL;
    *len = 0;
    if (enc != NULL && strcasecmp(enc, "identity") != 0) {
        if (strcasecmp(enc, "gzip") != 0 && strcasecmp(enc, "x-gzip") != 0) {
            srv_reply_json(r, 415, "Content-Encoding: only gzip and identity are supported");
            return DP_ERR_INVALID;
        }
        gzip = true;
    }
    /* Refuse before reading when the client announces too much. */
    if (srv_too_large(r, ri->content_length, max, 0)) {
        return DP_ERR_INVALID;
    }
    memset(&w, 0, sizeof(w));
    w.deadline_us = mono_us() + (int64_t)timeout_ms * 1000;
    snprintf(w.addr, sizeof(w.addr), "%s", ri->remote_addr);
    w.peer_port = ri->remote_port;
    w.local_port = ri->server_port;
    watch_add(&s->watchdog, &w);
    rc = read_raw(c, ch, ri->content_length, max, timeout_ms, &raw, &raw_len);
    cut = watch_remove(&s->watchdog, &w);
    if (cut && rc == 0) {
        rc = DP_ERR_INVALID; /* a chunked body cut off looks complete: it is not */
    }
    if (rc == DP_ERR_BUSY) {
        srv_reply_busy(r);
        goto out;
    }
    if (rc == DP_ERR_INVALID) {
        srv_reply_json(r, 400,
                       "body incomplete: shorter than its Content-Length, or not "
                       "received within server.request_timeout_ms; nothing was stored");
        srv_reply_header(r, "Connection", "close");
        goto out;
    }
    if (rc != 0) {
        srv_reply_json(r, 400, "could not read the request body");
        srv_reply_header(r, "Connection", "close");
        goto out;
    }
    if (srv_too_large(r, (int64_t)raw_len, max, 0)) {
        rc = DP_ERR_INVALID;
        goto out;
    }
    if (!gzip) {
        *out = raw;
        *len = raw_len;
        raw = NULL;
        goto out;
    }
    rc = inflate_gzip(ch, raw, raw_len, max, out, len);
    if (rc == DP_ERR_BUSY) {
        srv_reply_busy(r);
        goto out;
    }
    if (rc == DP_ERR_INVALID) {
        srv_reply_json(r, 400, "Content-Encoding: gzip: the body is not a valid gzip stream");
        goto out;
    }
    if (rc != 0) {
        srv_reply_json(r, 500, "out of memory inflating the body");
        goto out;
    }
    if (srv_too_large(r, (int64_t)*len, max, 0)) {
        free(*out);
        *out = NULL;
        *len = 0;
        rc = DP_ERR_INVALID;
    }
out:
    free(raw);
    return rc;
}
