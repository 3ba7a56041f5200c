/*
 * auth.c - who may call: the API key check (Authorization: Bearer or
 * X-API-Key, compared in constant time against every configured key) and the
 * CORS headers for allowed browser origins. Decides and adds headers only;
 * the dispatcher chooses the status.
 */
#include "server/srv.h"
#include "etc/err.h"
#include "etc/log.h"

#include <civetweb.h>
#include <stdlib.h>
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

/* A copy of the configured keys, swapped whole on SIGHUP. */
struct srv_keys {
    char **keys;
    size_t len;
};

static void
keys_free(struct srv_keys *k)
{
    if (k == NULL) {
        return;
    }
    for (size_t i = 0; i < k->len; i++) {
        free(k->keys[i]);
    }
    free(k->keys);
    free(k);
}

/* A copy of cfg's keys, or NULL when out of memory. */
static struct srv_keys *
keys_copy(const struct dp_config *cfg)
{
    struct srv_keys *k = calloc(1, sizeof(*k));

    if (k == NULL) {
        return NULL;
    }
    k->keys = calloc(cfg->server_api_keys_len + 1, sizeof(*k->keys));
    if (k->keys == NULL) {
        free(k);
        return NULL;
    }
    for (; k->len < cfg->server_api_keys_len; k->len++) {
        k->keys[k->len] = strdup(cfg->server_api_keys[k->len]);
        if (k->keys[k->len] == NULL) {
            keys_free(k);
            return NULL;
        }
    }
    return k;
}

int
srv_auth_init(struct srv *s, const struct dp_config *cfg)
{
    pthread_rwlock_init(&s->keys_lock, NULL);
    s->keys = keys_copy(cfg);
    return s->keys != NULL ? 0 : DP_ERR_NOMEM;
}

int
srv_auth_reload(struct srv *s, const struct dp_config *cfg)
{
    struct srv_keys *k = keys_copy(cfg);
    struct srv_keys *old;

    if (k == NULL) {
        dp_error("reload: out of memory reading the API keys, keeping the old ones", NULL);
        return DP_ERR_NOMEM;
    }
    pthread_rwlock_wrlock(&s->keys_lock);
    old = s->keys;
    s->keys = k;
    pthread_rwlock_unlock(&s->keys_lock);
    keys_free(old);
    dp_info("reload: API keys re-read", "keys=%zu file=%s", k->len,
            cfg->server_api_keys_file != NULL ? cfg->server_api_keys_file : "none");
    return 0;
}

void
srv_auth_destroy(struct srv *s)
{
    keys_free(s->keys);
    s->keys = NULL;
}

bool
srv_auth_ok(struct srv *s, struct mg_connection *c)
{
    const char *h = mg_get_header(c, "Authorization");
    const char *key = NULL;
    bool ok = false;

    if (h != NULL && strncasecmp(h, "Bearer ", 7) == 0) {
        key = h + 7;
        while (*key == ' ') {
            key++;
        }
    }
    if (key == NULL) {
        key = mg_get_header(c, "X-API-Key");
    }
    pthread_rwlock_rdlock(&s->keys_lock);
    if (s->keys->len == 0) {
        ok = true;
    } else if (key != NULL) {
        /* Check every key, so timing does not tell which one nearly matched. */
        for (size_t i = 0; i < s->keys->len; i++) {
            ok |= key_equal(key, strlen(key), s->keys->keys[i]);
        }
    }
    pthread_rwlock_unlock(&s->keys_lock);
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
