/*
 * reqbody.c - reading a request body within server.max_body_bytes: Content-Length
 * or chunked (civetweb decodes chunks in mg_read), and gzip inflated with zlib
 * with the limit applied to the inflated size, so a gzip bomb gets 413 after
 * at most max bytes of output. Never reads past the limit. Also the one judge
 * of "too large" (srv_too_large), for the queue's record limit as well. Every buffer is
 * charged to the budget of bytes in flight (budget.c) before it is allocated; the watchdog
 * (watchdog.c) holds every body to request_timeout_ms in all.
 */
#include "etc/err.h"
#include "etc/log.h"
#include "server/srv.h"

#include <civetweb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#define BODY_CHUNK 65536
#define BODY_READ_MAX ((size_t)1 << 20) /* bytes per mg_read or inflate step */
#define BODY_SLOW_READ_US 20000         /* a read slower than this: the client trickles */

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
    w.deadline_us = dp_mono_us() + (int64_t)timeout_ms * 1000;
    snprintf(w.addr, sizeof(w.addr), "%s", ri->remote_addr);
    w.peer_port = ri->remote_port;
    w.local_port = ri->server_port;
    srv_watch_add(&s->watchdog, &w);
    rc = read_raw(c, ch, ri->content_length, max, timeout_ms, &raw, &raw_len);
    cut = srv_watch_remove(&s->watchdog, &w);
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
