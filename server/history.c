/*
 * history.c - the last hour of the appliance for GET /v1/status/history and the status
 * page: a sampler thread takes a sample every SRV_HISTORY_INTERVAL_S seconds into a ring
 * of SRV_HISTORY_SAMPLES. Counters are kept as totals and turned into rates per second
 * when answering. Reads only counters and the queue's metadata: never blocks an append.
 */
#include "etc/err.h"
#include "etc/log.h"
#include "server/srv.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* queue_meta_each callback: a loader.loaded.<type> counter into the sample's slot. */
static void
loaded_into(void *arg, const char *name, int64_t value)
{
    struct srv_sample *sm = arg;
    const char *type = name + strlen(QUEUE_META_LOADER_LOADED_PREFIX);
    const struct ev_type *t = ev_lookup(type, strlen(type));

    if (t != NULL) {
        sm->loaded[srv_type_index(t)] = (uint64_t)value;
    }
}

void
srv_sample_take(struct srv *s, struct srv_sample *sm)
{
    struct queue_stats st;
    int64_t dead = 0;

    memset(sm, 0, sizeof(*sm));
    sm->at_us = dp_now_us();
    sm->mono_us = dp_mono_us();
    for (size_t i = 0; i < SRV_MAX_TYPES; i++) {
        sm->accepted += atomic_load(&s->m.accepted[i]);
    }
    for (int code = 400; code < 500; code++) {
        sm->http_4xx += atomic_load(&s->m.http_by_code[code]);
    }
    sm->http_503 = atomic_load(&s->m.http_by_code[503]);
    for (int code = 100; code < 600; code++) {
        uint64_t n = atomic_load(&s->m.ingest_by_code[code]);

        sm->ingest += n;
        if (code == 401) {
            sm->ingest_401 = n;
        } else if (code == 429) {
            sm->ingest_429 = n;
        } else if (code == 503) {
            sm->ingest_503 = n;
        } else if (code >= 400 && code < 500) {
            sm->ingest_4xx += n;
        }
    }
    if (queue_stats(s->q, &st) == 0) {
        sm->queue_events = st.events;
        sm->queue_bytes = st.bytes;
        sm->capacity_bytes = st.capacity_bytes;
        sm->oldest_age_s = srv_oldest_age_s(&st, sm->at_us);
    }
    queue_meta_each(s->q, QUEUE_META_LOADER_LOADED_PREFIX, loaded_into, sm);
    queue_meta_get(s->q, QUEUE_META_LOADER_DEAD_LETTERS, &dead);
    sm->dead_letters = (uint64_t)dead;
}

/* Append a sample to the ring, dropping the oldest when it is full. */
static void
history_push(struct srv_history *h, const struct srv_sample *sm)
{
    pthread_mutex_lock(&h->mu);
    h->ring[(h->first + h->count) % SRV_HISTORY_RING] = *sm;
    if (h->count < SRV_HISTORY_RING) {
        h->count++;
    } else {
        h->first = (h->first + 1) % SRV_HISTORY_RING;
    }
    pthread_mutex_unlock(&h->mu);
}

bool
srv_sample_before(struct srv *s, int64_t mono_us, struct srv_sample *sm)
{
    struct srv_history *h = &s->hist;
    bool found = false;

    pthread_mutex_lock(&h->mu);
    for (size_t i = h->count; i-- > 0;) {
        const struct srv_sample *x = &h->ring[(h->first + i) % SRV_HISTORY_RING];

        if (x->mono_us <= mono_us || i == 0) {
            *sm = *x;
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&h->mu);
    return found;
}

/*
 * The sampler: a first sample at start (the base of the first rates), then one every
 * interval until srv_history_stop. Waits on CLOCK_MONOTONIC, so a wall-clock step
 * changes no interval.
 */
static void *
history_main(void *arg)
{
    struct srv *s = arg;
    struct srv_history *h = &s->hist;
    struct srv_sample sm;
    struct timespec next;

    clock_gettime(CLOCK_MONOTONIC, &next);
    for (;;) {
        srv_sample_take(s, &sm);
        history_push(h, &sm);
        next.tv_sec += SRV_HISTORY_INTERVAL_S;
        pthread_mutex_lock(&h->mu);
        while (!h->stop && pthread_cond_timedwait(&h->cv, &h->mu, &next) != ETIMEDOUT) {
        }
        if (h->stop) {
            pthread_mutex_unlock(&h->mu);
            return NULL;
        }
        pthread_mutex_unlock(&h->mu);
    }
}

int
srv_history_start(struct srv *s)
{
    struct srv_history *h = &s->hist;
    int rc;

    pthread_mutex_init(&h->mu, NULL);
    (void)dp_cond_init_mono(&h->cv); /* glibc's cannot fail (see srv_tap_init) */
    h->first = 0;
    h->count = 0;
    h->stop = false;
    rc = pthread_create(&h->thread, NULL, history_main, s);
    if (rc != 0) {
        dp_error("cannot start the status sampler", "error=%s", strerror(rc));
        return DP_ERR_IO;
    }
    h->running = true;
    return 0;
}

void
srv_history_stop(struct srv *s)
{
    struct srv_history *h = &s->hist;

    if (!h->running) {
        return;
    }
    pthread_mutex_lock(&h->mu);
    h->stop = true;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->thread, NULL);
    h->running = false;
}

/* (b - a) per second of mono time; 0 when the counter went backwards (cannot: restarts
 * reset both) or no time passed. */
static double
rate(uint64_t a, uint64_t b, double dt_s)
{
    return b >= a && dt_s > 0 ? (double)(b - a) / dt_s : 0.0;
}

/* One element of "samples": the state at cur and the rates since prev. */
static json_t *
sample_json(const struct srv_sample *prev, const struct srv_sample *cur)
{
    double dt = (double)(cur->mono_us - prev->mono_us) / 1e6;
    char at[DP_TIME_TEXT_MAX];
    json_t *o = json_object();
    json_t *loaded = json_object();
    double loaded_sum = 0;

    dp_time_text(cur->at_us, at);
    json_object_set_new(o, "at", json_string(at));
    json_object_set_new(o, "interval_s", json_real(dt));
    json_object_set_new(o, "accepted_per_s", json_real(rate(prev->accepted, cur->accepted, dt)));
    json_object_set_new(o, "http_4xx_per_s", json_real(rate(prev->http_4xx, cur->http_4xx, dt)));
    json_object_set_new(o, "http_503_per_s", json_real(rate(prev->http_503, cur->http_503, dt)));
    json_object_set_new(o, "queue_events", json_integer((json_int_t)cur->queue_events));
    json_object_set_new(o, "queue_bytes", json_integer((json_int_t)cur->queue_bytes));
    json_object_set_new(o, "capacity_bytes", json_integer((json_int_t)cur->capacity_bytes));
    json_object_set_new(o, "oldest_event_age_s", json_real(cur->oldest_age_s));
    for (size_t i = 0; i < ev_registry_len && i < SRV_MAX_TYPES; i++) {
        double r = rate(prev->loaded[i], cur->loaded[i], dt);

        json_object_set_new(loaded, ev_registry[i]->name, json_real(r));
        loaded_sum += r;
    }
    json_object_set_new(o, "loaded_per_s", json_real(loaded_sum));
    json_object_set_new(o, "loaded_per_s_by_type", loaded);
    json_object_set_new(o, "dead_letters_per_s",
                        json_real(rate(prev->dead_letters, cur->dead_letters, dt)));
    return o;
}

void
srv_get_history(struct srv *s, struct srv_reply *r)
{
    struct srv_history *h = &s->hist;
    json_t *o = srv_reply_object(200, NULL);
    json_t *samples = json_array();
    json_t *types = json_array();
    struct srv_sample *copy = NULL;
    size_t n = 0;

    copy = malloc(sizeof(*copy) * SRV_HISTORY_RING);
    if (copy == NULL) {
        json_decref(o);
        json_decref(samples);
        json_decref(types);
        srv_reply_json(r, 500, "out of memory");
        return;
    }
    /* Copy out under the lock, build the JSON outside it: the sampler never waits long. */
    pthread_mutex_lock(&h->mu);
    for (size_t i = 0; i < h->count; i++) {
        copy[n++] = h->ring[(h->first + i) % SRV_HISTORY_RING];
    }
    pthread_mutex_unlock(&h->mu);
    for (size_t i = 1; i < n; i++) {
        json_array_append_new(samples, sample_json(&copy[i - 1], &copy[i]));
    }
    for (size_t i = 0; i < ev_registry_len && i < SRV_MAX_TYPES; i++) {
        json_array_append_new(types, json_string(ev_registry[i]->name));
    }
    free(copy);
    json_object_set_new(o, "interval_s", json_integer(SRV_HISTORY_INTERVAL_S));
    json_object_set_new(o, "max_samples", json_integer(SRV_HISTORY_SAMPLES));
    json_object_set_new(o, "types", types);
    json_object_set_new(o, "samples", samples);
    r->status = 200;
    r->body = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    json_decref(o);
    if (r->body == NULL) {
        srv_reply_json(r, 500, "out of memory");
    }
}
