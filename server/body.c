/*
 * body.c - reading a request body within server.max_body_bytes: Content-Length
 * or chunked (civetweb decodes chunks in mg_read), and gzip inflated with zlib
 * with the limit applied to the inflated size, so a gzip bomb gets 413 after
 * at most max bytes of output. Never reads past the limit.
 */
#include "server/srv.h"
#include "etc/err.h"

#include <civetweb.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#define BODY_CHUNK 65536

/* Grow *buf to hold at least need bytes (doubling); 0 or DP_ERR_NOMEM. */
static int
grow(char **buf, size_t *cap, size_t need)
{
    size_t ncap = *cap ? *cap : BODY_CHUNK;
    char *p;

    if (need <= *cap) {
        return 0;
    }
    while (ncap < need) {
        ncap *= 2;
    }
    p = realloc(*buf, ncap);
    if (p == NULL) {
        return DP_ERR_NOMEM;
    }
    *buf = p;
    *cap = ncap;
    return 0;
}

static void
too_large(struct srv_reply *r, int64_t max)
{
    char msg[128];

    snprintf(msg, sizeof(msg), "body larger than server.max_body_bytes (%lld bytes)",
             (long long)max);
    srv_reply_json(r, 413, msg);
    srv_reply_header(r, "Connection", "close");
}

/*
 * Read the raw (possibly compressed) bytes, at most limit of them. With a
 * Content-Length (expect > 0) the buffer is sized to it, so a small event costs
 * a small allocation; chunked bodies grow by BODY_CHUNK.
 */
static int
read_raw(struct mg_connection *c, int64_t expect, int64_t limit, char **out, size_t *len,
         bool *over)
{
    char *buf = NULL;
    size_t cap = 0;
    size_t n = 0;
    int rc = 0;

    *over = false;
    if (expect > 0) {
        cap = (size_t)expect + 1; /* one more byte shows a body longer than announced */
        buf = malloc(cap);
        if (buf == NULL) {
            return DP_ERR_NOMEM;
        }
    }
    for (;;) {
        int got;
        if (n == cap && grow(&buf, &cap, n + BODY_CHUNK) != 0) {
            rc = DP_ERR_NOMEM;
            goto out;
        }
        got = mg_read(c, buf + n, cap - n < (1u << 20) ? cap - n : (1u << 20));
        if (got < 0) {
            rc = DP_ERR_IO;
            goto out;
        }
        if (got == 0) {
            break;
        }
        n += (size_t)got;
        if ((int64_t)n > limit) {
            *over = true;
            break;
        }
    }
    *out = buf;
    *len = n;
    buf = NULL;
out:
    free(buf);
    return rc;
}

/* Inflate gzip in, writing at most max bytes; *over when there is more. */
static int
inflate_gzip(const char *in, size_t in_len, int64_t max, char **out, size_t *len, bool *over)
{
    z_stream z;
    char *buf = NULL;
    size_t cap = 0;
    int zrc = Z_OK;
    int rc = 0;

    memset(&z, 0, sizeof(z));
    *over = false;
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
        return DP_ERR_NOMEM;
    }
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)in_len;
    while (zrc != Z_STREAM_END) {
        size_t used = z.total_out;
        if ((int64_t)used > max) {
            *over = true;
            goto done;
        }
        if (grow(&buf, &cap, used + BODY_CHUNK) != 0) {
            rc = DP_ERR_NOMEM;
            goto out;
        }
        z.next_out = (Bytef *)buf + used;
        z.avail_out = (uInt)(cap - used);
        zrc = inflate(&z, Z_NO_FLUSH);
        if (zrc == Z_BUF_ERROR && z.avail_in == 0) {
            rc = DP_ERR_INVALID; /* truncated stream */
            goto out;
        }
        if (zrc != Z_OK && zrc != Z_STREAM_END && zrc != Z_BUF_ERROR) {
            rc = DP_ERR_INVALID;
            goto out;
        }
    }
    if ((int64_t)z.total_out > max) {
        *over = true;
    }
done:
    *len = z.total_out;
    *out = buf;
    buf = NULL;
out:
    inflateEnd(&z);
    free(buf);
    return rc;
}

int
srv_body_read(struct mg_connection *c, int64_t max, char **out, size_t *len,
              struct srv_reply *r)
{
    const struct mg_request_info *ri = mg_get_request_info(c);
    const char *enc = mg_get_header(c, "Content-Encoding");
    bool gzip = false;
    bool over = false;
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
    if (ri->content_length > max) {
        too_large(r, max);
        return DP_ERR_INVALID;
    }
    rc = read_raw(c, ri->content_length, max, &raw, &raw_len, &over);
    if (rc != 0) {
        srv_reply_json(r, 400, "could not read the request body");
        srv_reply_header(r, "Connection", "close");
        goto out;
    }
    if (over) {
        too_large(r, max);
        rc = DP_ERR_INVALID;
        goto out;
    }
    if (!gzip) {
        *out = raw;
        *len = raw_len;
        raw = NULL;
        goto out;
    }
    rc = inflate_gzip(raw, raw_len, max, out, len, &over);
    if (rc == DP_ERR_INVALID) {
        srv_reply_json(r, 400, "Content-Encoding: gzip: the body is not a valid gzip stream");
        goto out;
    }
    if (rc != 0) {
        srv_reply_json(r, 500, "out of memory inflating the body");
        goto out;
    }
    if (over) {
        free(*out);
        *out = NULL;
        too_large(r, max);
        rc = DP_ERR_INVALID;
    }
out:
    free(raw);
    return rc;
}
