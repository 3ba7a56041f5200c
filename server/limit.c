/*
 * limit.c - per API key: which configured key a request sends, its token bucket (events a
 * second, refilled continuously, one mutex per key held for a few instructions) and its
 * counters for /metrics. Knows keys by their names outside this file: a key's text never
 * leaves it (no log line, no metric label, no stored row).
 */
#include "server/srv.h"
#include "etc/err.h"
#include "etc/log.h"

#include <civetweb.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void
srv_limit_init(struct srv_limit *l, const char *name, int64_t events_per_s, int64_t burst,
               int64_t now_us)
{
    memset(l, 0, sizeof(*l));
    l->name = name;
    l->rate = (double)events_per_s;
    l->burst = (double)(burst > 0 ? burst : events_per_s);
    l->tokens = l->burst;
    l->last_us = now_us;
    pthread_mutex_init(&l->mu, NULL);
}

/* Add what the time since the last refill earned, up to the burst. Under l->mu. */
static void
limit_refill(struct srv_limit *l, int64_t now_us)
{
    if (now_us > l->last_us) {
        l->tokens += l->rate * (double)(now_us - l->last_us) / 1e6;
        if (l->tokens > l->burst) {
            l->tokens = l->burst;
        }
        l->last_us = now_us;
    }
}

int
srv_limit_admit(struct srv_limit *l, int64_t now_us)
{
    int retry_s = 0;

    if (l->rate <= 0) {
        return 0;
    }
    pthread_mutex_lock(&l->mu);
    limit_refill(l, now_us);
    if (l->tokens < 1.0) {
        /* Whole seconds until the bucket holds one event again, at least 1. */
        double wait_s = ceil((1.0 - l->tokens) / l->rate);
        retry_s = wait_s < 1 ? 1 : wait_s > 86400 ? 86400 : (int)wait_s;
    }
    pthread_mutex_unlock(&l->mu);
    if (retry_s > 0) {
        atomic_fetch_add(&l->limited, 1);
    }
    return retry_s;
}

void
srv_limit_charge(struct srv_limit *l, size_t events, int64_t now_us)
{
    if (l == NULL) {
        return;
    }
    atomic_fetch_add(&l->events, events);
    if (l->rate <= 0) {
        return;
    }
    pthread_mutex_lock(&l->mu);
    limit_refill(l, now_us);
    l->tokens -= (double)events;
    pthread_mutex_unlock(&l->mu);
}

int
srv_limits_create(struct srv *s)
{
    const struct dp_config *cfg = s->cfg;
    int64_t now = dp_now_us();

    s->limits = NULL;
    s->n_limits = 0;
    if (cfg->server_api_keys_len == 0) {
        return 0;
    }
    s->limits = calloc(cfg->server_api_keys_len, sizeof(*s->limits));
    if (s->limits == NULL) {
        return DP_ERR_NOMEM;
    }
    for (size_t i = 0; i < cfg->server_api_keys_len; i++) {
        const struct dp_api_key *k = &cfg->server_api_key_info[i];

        srv_limit_init(&s->limits[i], k->name, k->events_per_s, k->burst, now);
        s->limits[i].key = cfg->server_api_keys[i];
    }
    s->n_limits = cfg->server_api_keys_len;
    return 0;
}

void
srv_limits_destroy(struct srv *s)
{
    for (size_t i = 0; i < s->n_limits; i++) {
        pthread_mutex_destroy(&s->limits[i].mu);
    }
    free(s->limits);
    s->limits = NULL;
    s->n_limits = 0;
}

struct srv_limit *
srv_limit_find(struct srv *s, struct mg_connection *c)
{
    const char *key = srv_auth_presented(c);
    struct srv_limit *found = NULL;
    size_t len;

    if (key == NULL) {
        return NULL;
    }
    len = strlen(key);
    /* Every key is compared, so timing does not tell which one matched. */
    for (size_t i = 0; i < s->n_limits; i++) {
        if (srv_auth_key_equal(key, len, s->limits[i].key) && found == NULL) {
            found = &s->limits[i];
        }
    }
    if (found != NULL) {
        atomic_fetch_add(&found->requests, 1);
    }
    return found;
}
