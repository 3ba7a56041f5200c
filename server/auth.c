/*
 * auth.c - who may call: the API key check (Authorization: Bearer or
 * X-API-Key, compared in constant time against every configured key) and the
 * CORS headers for allowed browser origins. Decides and adds headers only;
 * the dispatcher chooses the status.
 */
#include "server/srv.h"

#include <civetweb.h>
#include <string.h>
#include <strings.h>

/* Compare in time that depends only on the lengths, never on the content. */
static bool
key_equal(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    unsigned char diff = (unsigned char)(alen != blen);

    for (size_t i = 0; i < blen; i++) {
        diff |= (unsigned char)(b[i] ^ (i < alen ? a[i] : 0));
    }
    return diff == 0;
}

bool
srv_auth_key_equal(const char *a, size_t alen, const char *b)
{
    return key_equal(a, alen, b);
}

const char *
srv_auth_presented(struct mg_connection *c)
{
    const char *h = mg_get_header(c, "Authorization");

    if (h != NULL && strncasecmp(h, "Bearer ", 7) == 0) {
        h += 7;
        while (*h == ' ') {
            h++;
        }
        return h;
    }
    return mg_get_header(c, "X-API-Key");
}

bool
srv_auth_ok(const struct srv *s, struct mg_connection *c)
{
    const char *h = mg_get_header(c, "Authorization");
    const char *key = NULL;
    bool ok = false;

    if (s->cfg->server_api_keys_len == 0) {
        return true;
    }
    if (h != NULL && strncasecmp(h, "Bearer ", 7) == 0) {
        key = h + 7;
        while (*key == ' ') {
            key++;
        }
    }
    if (key == NULL) {
        key = mg_get_header(c, "X-API-Key");
    }
    if (key == NULL) {
        return false;
    }
    /* Check every key, so timing does not tell which one nearly matched. */
    for (size_t i = 0; i < s->cfg->server_api_keys_len; i++) {
        ok |= key_equal(key, strlen(key), s->cfg->server_api_keys[i]);
    }
    return ok;
}

bool
srv_cors_apply(const struct srv *s, struct mg_connection *c, struct srv_reply *r)
{
    const char *origin = mg_get_header(c, "Origin");

    if (s->cfg->server_cors_origins_len == 0) {
        return false;
    }
    srv_reply_header(r, "Vary", "Origin");
    if (origin == NULL) {
        return false;
    }
    for (size_t i = 0; i < s->cfg->server_cors_origins_len; i++) {
        if (strcmp(origin, s->cfg->server_cors_origins[i]) == 0) {
            srv_reply_header(r, "Access-Control-Allow-Origin", origin);
            return true;
        }
    }
    return false;
}

void
srv_cors_preflight(const struct srv *s, struct mg_connection *c, struct srv_reply *r)
{
    if (srv_cors_apply(s, c, r)) {
        srv_reply_header(r, "Access-Control-Allow-Methods", "POST, GET, OPTIONS");
        srv_reply_header(r, "Access-Control-Allow-Headers",
                         "Content-Type, Content-Encoding, Authorization, X-API-Key");
        srv_reply_header(r, "Access-Control-Max-Age", "600");
    }
}
