/*
 * limit.c - per API key name: its token bucket (events a second, refilled continuously, one
 * mutex per name held for a few instructions) and its counters for /metrics, shared by the
 * keys of that name and kept by name across a SIGHUP (auth.c swaps the key table). Knows
 * names only: a key's text never reaches this file. Also the 429 a POST over its rate gets.
 */
#include "etc/log.h"
#include "server/srv.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
srv_limit_init(struct srv_limit *l, const char *name, int64_t events_per_s, int64_t burst,
               int64_t now_us)
{
    memset(l, 0, sizeof(*l));
    snprintf(l->name, sizeof(l->name), "%s", name);
    l->rate = (double)events_per_s;
    l->burst = (double)(burst > 0 ? burst : events_per_s);
    l->tokens = l->burst;
    l->last_us = now_us;
    pthread_mutex_init(&l->mu, NULL);
}

struct srv_limit *
srv_limit_new(const char *name, int64_t events_per_s, int64_t burst, int64_t now_us)
{
    struct srv_limit *l = malloc(sizeof(*l));

    if (l == NULL) {
        return NULL;
    }
    srv_limit_init(l, name, events_per_s, burst, now_us);
    atomic_store(&l->refs, 1);
    return l;
}

void
srv_limit_hold(struct srv_limit *l)
{
    atomic_fetch_add(&l->refs, 1);
}

void
srv_limit_put(struct srv_limit *l)
{
    if (l != NULL && atomic_fetch_sub(&l->refs, 1) == 1) {
        pthread_mutex_destroy(&l->mu);
        free(l);
    }
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

bool
srv_limit_set(struct srv_limit *l, int64_t events_per_s, int64_t burst, int64_t now_us)
{
    double rate = (double)events_per_s;
    double cap = (double)(burst > 0 ? burst : events_per_s);
    bool changed;

    pthread_mutex_lock(&l->mu);
    changed = rate != l->rate || cap != l->burst;
    if (changed && l->rate <= 0) {
        /* It had no limit: its bucket was never drawn from. */
        l->tokens = cap;
        l->last_us = now_us;
    } else if (changed) {
        limit_refill(l, now_us);
        if (l->tokens > cap) {
            l->tokens = cap;
        }
    }
    l->rate = rate;
    l->burst = cap;
    pthread_mutex_unlock(&l->mu);
    return changed;
}

int
srv_limit_admit(struct srv_limit *l, int64_t now_us, double *rate)
{
    int retry_s = 0;

    pthread_mutex_lock(&l->mu);
    *rate = l->rate;
    if (l->rate > 0) {
        limit_refill(l, now_us);
        if (l->tokens < 1.0) {
            /* Whole seconds until the bucket holds one event again, at least 1. */
            double wait_s = ceil((1.0 - l->tokens) / l->rate);
            retry_s = wait_s < 1 ? 1 : wait_s > 86400 ? 86400 : (int)wait_s;
        }
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
    pthread_mutex_lock(&l->mu);
    if (l->rate > 0) {
        limit_refill(l, now_us);
        l->tokens -= (double)events;
    }
    pthread_mutex_unlock(&l->mu);
}

/*
 * For a POST, check the rate of the API key c sent (m->key): over it, r gets 429 with
 * Retry-After and true is returned. Before the body is read, so a key over its rate costs
 * no parsing.
 */
bool
srv_key_limited(struct srv_limit *key, const char *method, struct srv_reply *r)
{
    char text[160];
    char retry[16];
    double rate;
    int wait_s;

    if (key == NULL || strcmp(method, "POST") != 0) {
        return false;
    }
    wait_s = srv_limit_admit(key, dp_now_us(), &rate);
    if (wait_s == 0) {
        return false;
    }
    snprintf(text, sizeof(text), "rate limit of API key %s exceeded: %.0f events/s", key->name,
             rate);
    snprintf(retry, sizeof(retry), "%d", wait_s);
    srv_reply_json(r, 429, text);
    srv_reply_header(r, "Retry-After", retry);
    return true;
}
