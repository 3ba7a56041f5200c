/*
 * auth.c - who may call: the API key check (Authorization: Bearer or
 * X-API-Key, compared in constant time against every configured key), the key table with
 * one rate limit per key name (swapped whole, keys and limits together, on SIGHUP), and the
 * CORS headers for allowed browser origins. Decides and adds headers only; the dispatcher
 * chooses the status. A key's text never leaves this file: names stand for keys elsewhere.
 */
#include "etc/err.h"
#include "etc/log.h"
#include "server/srv.h"

#include <civetweb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NAME_LIST_MAX 512 /* bytes of names listed in the reload log line */

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

/* One configured key and its name's limit. */
struct srv_key {
    char *key;               /* a copy; never logged or shown */
    struct srv_limit *limit; /* one of the table's limits */
};

/* The keys in force and one limit per name, swapped whole on SIGHUP. */
struct srv_keys {
    struct srv_key *keys;
    size_t len;
    struct srv_limit **limits; /* one per name, each held once by the table */
    size_t n_limits;
};

static void
keys_free(struct srv_keys *k)
{
    if (k == NULL) {
        return;
    }
    for (size_t i = 0; i < k->len; i++) {
        free(k->keys[i].key);
    }
    for (size_t i = 0; i < k->n_limits; i++) {
        srv_limit_put(k->limits[i]);
    }
    free(k->keys);
    free(k->limits);
    free(k);
}

/* The limit named name among k's (k may be NULL), or NULL. */
static struct srv_limit *
keys_limit(const struct srv_keys *k, const char *name)
{
    for (size_t i = 0; k != NULL && i < k->n_limits; i++) {
        if (strcmp(k->limits[i]->name, name) == 0) {
            return k->limits[i];
        }
    }
    return NULL;
}

/*
 * Append key, with what the configuration says of it (info), to k, whose arrays have room.
 * A name k has already shares its limit; a name old has (old may be NULL) keeps old's
 * limit, held once more and not changed here (see keys_apply); a new name gets a full
 * bucket at now_us. Returns 0 or DP_ERR_NOMEM (k stays fit for keys_free).
 */
static int
keys_add(struct srv_keys *k, const char *key, const struct dp_api_key *info,
         const struct srv_keys *old, int64_t now_us)
{
    struct srv_key *e = &k->keys[k->len];

    e->key = strdup(key);
    if (e->key == NULL) {
        return DP_ERR_NOMEM;
    }
    k->len++;
    /* The configuration allows one key a name, so this finds none today. */
    e->limit = keys_limit(k, info->name);
    if (e->limit != NULL) {
        return 0;
    }
    e->limit = keys_limit(old, info->name);
    if (e->limit != NULL) {
        srv_limit_hold(e->limit);
    } else {
        e->limit = srv_limit_new(info->name, info->events_per_s, info->burst, now_us);
    }
    if (e->limit == NULL) {
        return DP_ERR_NOMEM;
    }
    k->limits[k->n_limits++] = e->limit;
    return 0;
}

/* A table of cfg's keys and their names' limits (see keys_add), or NULL when out of memory. */
static struct srv_keys *
keys_build(const struct dp_config *cfg, const struct srv_keys *old, int64_t now_us)
{
    size_t n = cfg->server_api_keys_len;
    struct srv_keys *k = calloc(1, sizeof(*k));
    int rc = DP_ERR_NOMEM;

    if (k == NULL) {
        goto out;
    }
    k->keys = calloc(n > 0 ? n : 1, sizeof(*k->keys));
    k->limits = calloc(n > 0 ? n : 1, sizeof(*k->limits));
    if (k->keys == NULL || k->limits == NULL) {
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        rc = keys_add(k, cfg->server_api_keys[i], &cfg->server_api_key_info[i], old, now_us);
        if (rc != 0) {
            goto out;
        }
    }
    rc = 0;
out:
    if (rc != 0) {
        keys_free(k);
        k = NULL;
    }
    return k;
}

/* Append name to the ", "-separated list (NAME_LIST_MAX bytes), or "..." once it is full. */
static void
name_list_add(char *list, const char *name)
{
    size_t used = strlen(list);

    if (used + strlen(name) + 6 < NAME_LIST_MAX) {
        snprintf(list + used, NAME_LIST_MAX - used, "%s%s", used > 0 ? "," : "", name);
    } else if (used < 3 || strcmp(list + used - 3, "...") != 0) {
        snprintf(list + used, NAME_LIST_MAX - used, ",...");
    }
}

/*
 * Give each of k's limits the one cfg states for its name (the kept ones may have changed),
 * not refilling a bucket; the names whose limit changed go to changed. Under the write lock.
 */
static void
keys_apply(struct srv_keys *k, const struct dp_config *cfg, int64_t now_us, char *changed)
{
    for (size_t i = 0; i < k->len; i++) {
        const struct dp_api_key *info = &cfg->server_api_key_info[i];

        if (srv_limit_set(k->keys[i].limit, info->events_per_s, info->burst, now_us)) {
            name_list_add(changed, info->name);
        }
    }
}

int
srv_auth_init(struct srv *s, const struct dp_config *cfg)
{
    pthread_rwlock_init(&s->keys_lock, NULL);
    s->keys = keys_build(cfg, NULL, dp_now_us());
    return s->keys != NULL ? 0 : DP_ERR_NOMEM;
}

int
srv_auth_reload(struct srv *s, const struct dp_config *cfg)
{
    int64_t now = dp_now_us();
    /* Only this (the signal) thread writes s->keys: reading it here needs no lock. */
    struct srv_keys *k = keys_build(cfg, s->keys, now);
    struct srv_keys *old = s->keys;
    char added[NAME_LIST_MAX] = "";
    char removed[NAME_LIST_MAX] = "";
    char changed[NAME_LIST_MAX] = "";

    if (k == NULL) {
        dp_error("reload: out of memory reading the API keys, keeping the old ones", NULL);
        return DP_ERR_NOMEM;
    }
    pthread_rwlock_wrlock(&s->keys_lock);
    keys_apply(k, cfg, now, changed);
    s->keys = k;
    pthread_rwlock_unlock(&s->keys_lock);
    for (size_t i = 0; i < k->n_limits; i++) {
        if (keys_limit(old, k->limits[i]->name) == NULL) {
            name_list_add(added, k->limits[i]->name);
        }
    }
    for (size_t i = 0; i < old->n_limits; i++) {
        if (keys_limit(k, old->limits[i]->name) == NULL) {
            name_list_add(removed, old->limits[i]->name);
        }
    }
    /* A removed name's limit goes with the last request that holds it. */
    keys_free(old);
    dp_info("reload: API keys re-read",
            "keys=%zu file=%s names=%zu added=%s removed=%s "
            "limits_changed=%s",
            k->len, cfg->server_api_keys_file != NULL ? cfg->server_api_keys_file : "none",
            k->n_limits, added[0] != '\0' ? added : "none", removed[0] != '\0' ? removed : "none",
            changed[0] != '\0' ? changed : "none");
    return 0;
}

void
srv_auth_destroy(struct srv *s)
{
    keys_free(s->keys);
    s->keys = NULL;
}

bool
srv_auth_ok(struct srv *s, struct mg_connection *c, struct srv_limit **key)
{
    const char *h = mg_get_header(c, "Authorization");
    const char *sent = NULL;
    struct srv_limit *found = NULL;
    bool ok = false;

    *key = NULL;
    if (h != NULL && strncasecmp(h, "Bearer ", 7) == 0) {
        sent = h + 7;
        while (*sent == ' ') {
            sent++;
        }
    }
    if (sent == NULL) {
        sent = mg_get_header(c, "X-API-Key");
    }
    pthread_rwlock_rdlock(&s->keys_lock);
    if (s->keys->len == 0) {
        ok = true;
    } else if (sent != NULL) {
        size_t len = strlen(sent);

        /* Check every key, so timing does not tell which one nearly matched. */
        for (size_t i = 0; i < s->keys->len; i++) {
            if (key_equal(sent, len, s->keys->keys[i].key) && found == NULL) {
                found = s->keys->keys[i].limit;
            }
        }
        if (found != NULL) {
            srv_limit_hold(found);
            atomic_fetch_add(&found->requests, 1);
            *key = found;
            ok = true;
        }
    }
    pthread_rwlock_unlock(&s->keys_lock);
    return ok;
}

void
srv_auth_each_limit(struct srv *s, void (*fn)(void *arg, const struct srv_limit *l), void *arg)
{
    pthread_rwlock_rdlock(&s->keys_lock);
    for (size_t i = 0; s->keys != NULL && i < s->keys->n_limits; i++) {
        fn(arg, s->keys->limits[i]);
    }
    pthread_rwlock_unlock(&s->keys_lock);
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
        /* Every request header the server reads: a browser sends no other after a preflight. */
        srv_reply_header(r, "Access-Control-Allow-Headers",
                         "Content-Type, Content-Encoding, Authorization, X-API-Key, "
                         "Idempotency-Key, ce-specversion, ce-id, ce-source, ce-type");
        srv_reply_header(r, "Access-Control-Max-Age", "600");
    }
}
