/*
 * status.c - GET /v1/status: the appliance in one JSON object (the level and its problems
 * from health.c, the queue, conservation from one snapshot, the loader's figures and last
 * runs from the queue's metadata, what is loaded through). Read-only: never blocks appends.
 */
#include "etc/err.h"
#include "etc/log.h"
#include "server/srv.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An RFC 3339 time for a microsecond wall-clock value; 0 (never) is null. */
static json_t *
time_json(int64_t us)
{
    char text[DP_TIME_TEXT_MAX];

    if (us <= 0) {
        return json_null();
    }
    dp_time_text(us, text);
    return json_string(text);
}

/* A string that may not be valid UTF-8 (an error text cut short): invalid bytes become '?'. */
static json_t *
text_json(const char *str)
{
    json_t *j = json_string(str);
    char *copy;

    if (j != NULL) {
        return j;
    }
    copy = strdup(str);
    if (copy == NULL) {
        return json_null();
    }
    for (char *p = copy; *p != '\0'; p++) {
        if ((unsigned char)*p >= 0x80) {
            *p = '?';
        }
    }
    j = json_string(copy);
    free(copy);
    return j != NULL ? j : json_null();
}

static void
loaded_member(void *arg, const char *name, int64_t value)
{
    json_object_set_new(arg, name + strlen(QUEUE_META_LOADER_LOADED_PREFIX), json_integer(value));
}

/* QUEUE_META_LOADER_RUNS, parsed: newest first. */
static json_t *
runs_json(struct srv *s)
{
    char text[QUEUE_LOADER_RUNS_MAX * (QUEUE_LOADER_RUN_RESULT_MAX + 128)];
    json_t *a = json_array();
    char *line = text;

    queue_meta_get_str(s->q, QUEUE_META_LOADER_RUNS, text, sizeof(text));
    while (*line != '\0') {
        char *nl = strchr(line, '\n');
        long long start = 0;
        long long end = 0;
        unsigned long long events = 0;
        unsigned long long loaded = 0;
        unsigned long long dead = 0;
        int used = 0;

        if (nl == NULL) {
            break; /* cut short: the rest of a line */
        }
        *nl = '\0';
        if (sscanf(line, "%lld %lld %llu %llu %llu %n", &start, &end, &events, &loaded, &dead,
                   &used) == 5 &&
            used > 0) {
            json_t *o = json_object();

            json_object_set_new(o, "started_at", time_json(start));
            json_object_set_new(o, "ended_at", time_json(end));
            json_object_set_new(o, "duration_s", json_real((double)(end - start) / 1e6));
            json_object_set_new(o, "events", json_integer((json_int_t)events));
            json_object_set_new(o, "loaded", json_integer((json_int_t)loaded));
            json_object_set_new(o, "dead_letters", json_integer((json_int_t)dead));
            json_object_set_new(o, "result", text_json(line + used));
            json_array_append_new(a, o);
        }
        line = nl + 1;
    }
    return a;
}

static json_t *
loader_json(struct srv *s, const char *last_error)
{
    char result[1024];
    char held_types[256];
    char refused[1024];
    json_t *l = json_object();
    json_t *loaded = json_object();
    int64_t run = srv_meta_int(s, QUEUE_META_LOADER_LAST_RUN_US);
    int64_t end = srv_meta_int(s, QUEUE_META_LOADER_LAST_RUN_END_US);

    queue_meta_get_str(s->q, QUEUE_META_LOADER_LAST_RUN_RESULT, result, sizeof(result));
    json_object_set_new(l, "last_run_at", time_json(run));
    json_object_set_new(l, "last_run_end_at", time_json(end));
    json_object_set_new(l, "last_run_duration_s",
                        run > 0 && end >= run ? json_real((double)(end - run) / 1e6) : json_null());
    json_object_set_new(l, "last_run_events",
                        json_integer(srv_meta_int(s, QUEUE_META_LOADER_LAST_RUN_EVENTS)));
    /* "running", "ok", "stopped" or "error: ..." as the loader wrote it. */
    json_object_set_new(l, "last_result", text_json(result[0] ? result : "never ran"));
    json_object_set_new(l, "last_success_at",
                        time_json(srv_meta_int(s, QUEUE_META_LOADER_LAST_SUCCESS_US)));
    json_object_set_new(l, "last_error", last_error[0] ? text_json(last_error) : json_null());
    json_object_set_new(l, "last_error_at",
                        time_json(srv_meta_int(s, QUEUE_META_LOADER_LAST_ERROR_US)));
    json_object_set_new(l, "started_at", time_json(srv_meta_int(s, QUEUE_META_LOADER_STARTED_US)));
    json_object_set_new(l, "dead_letters",
                        json_integer(srv_meta_int(s, QUEUE_META_LOADER_DEAD_LETTERS)));
    /* The same running total under a name that says so: not the table's size (GET
     * /v1/dead_letters counts the rows). */
    json_object_set_new(l, "dead_lettered_total",
                        json_integer(srv_meta_int(s, QUEUE_META_LOADER_DEAD_LETTERS)));
    json_object_set_new(l, "dead_letters_ingest",
                        json_integer(srv_meta_int(s, QUEUE_META_LOADER_DEAD_INGEST)));
    json_object_set_new(l, "dead_letters_load",
                        json_integer(srv_meta_int(s, QUEUE_META_LOADER_DEAD_LOAD)));
    json_object_set_new(l, "batches", json_integer(srv_meta_int(s, QUEUE_META_LOADER_BATCHES)));
    json_object_set_new(l, "retries", json_integer(srv_meta_int(s, QUEUE_META_LOADER_RETRIES)));
    queue_meta_each(s->q, QUEUE_META_LOADER_LOADED_PREFIX, loaded_member, loaded);
    json_object_set_new(l, "loaded", loaded);
    json_object_set_new(l, "runs", runs_json(s));
    /* Events left queued because their type is not declared (any more): see README. */
    queue_meta_get_str(s->q, QUEUE_META_LOADER_HELD_TYPES, held_types, sizeof(held_types));
    json_object_set_new(l, "held_events", json_integer(srv_meta_int(s, QUEUE_META_LOADER_HELD)));
    json_object_set_new(l, "held_types", text_json(held_types));
    /* Non-null while the loader refuses this queue: what happened and what to do. */
    queue_meta_get_str(s->q, QUEUE_META_LOADER_REFUSED, refused, sizeof(refused));
    json_object_set_new(l, "refused", refused[0] ? text_json(refused) : json_null());
    return l;
}

void
srv_get_status(struct srv *s, struct srv_reply *r)
{
    struct queue_stats st;
    char last_error[1024];
    int64_t now_us = dp_now_us();
    json_t *o;
    json_t *q;
    json_t *ev;
    json_t *problems;
    enum srv_level level;

    memset(&st, 0, sizeof(st));
    if (queue_stats(s->q, &st) != 0) {
        srv_reply_json(r, 503, "queue unreadable");
        return;
    }
    queue_meta_get_str(s->q, QUEUE_META_LOADER_LAST_ERROR, last_error, sizeof(last_error));
    problems = json_array();
    level = srv_health(s, &st, now_us, problems);
    o = srv_reply_object(200, NULL);
    /* "healthy" is the older word for level ok, kept for the scripts that read it. */
    json_object_set_new(o, "level", json_string(srv_level_name(level)));
    json_object_set_new(o, "healthy", json_boolean(level == SRV_LEVEL_OK));
    json_object_set_new(o, "problems", problems);
    json_object_set_new(o, "version", json_string(DP_VERSION));
    json_object_set_new(o, "now", time_json(now_us));
    json_object_set_new(o, "started_at", time_json(s->started_us));
    json_object_set_new(o, "uptime_s", json_real((double)(now_us - s->started_us) / 1e6));
    q = json_object();
    json_object_set_new(q, "events", json_integer((json_int_t)st.events));
    json_object_set_new(q, "bytes", json_integer((json_int_t)st.bytes));
    json_object_set_new(q, "capacity_bytes", json_integer((json_int_t)st.capacity_bytes));
    json_object_set_new(q, "oldest_event_at",
                        st.events > 0 ? time_json(st.oldest_received_us) : json_null());
    json_object_set_new(q, "oldest_event_age_s", json_real(srv_oldest_age_s(&st, now_us)));
    json_object_set_new(q, "next_seq", json_integer((json_int_t)st.next_seq));
    json_object_set_new(q, "instance_id", json_string(queue_instance(s->q, NULL)));
    json_object_set_new(o, "queue", q);
    /* Conservation: one LMDB snapshot, so accepted = loaded + dead_lettered + queued. */
    ev = json_object();
    json_object_set_new(ev, "accepted", json_integer((json_int_t)st.accepted));
    json_object_set_new(ev, "loaded", json_integer((json_int_t)st.loaded));
    json_object_set_new(ev, "dead_lettered", json_integer((json_int_t)st.dead_lettered));
    json_object_set_new(ev, "queued", json_integer((json_int_t)st.events));
    json_object_set_new(o, "events", ev);
    json_object_set_new(o, "loader", loader_json(s, last_error));
    /* Every event this queue acknowledged before it is in PostgreSQL (queue_watermark). */
    json_object_set_new(o, "loaded_through",
                        time_json(srv_meta_int(s, QUEUE_META_LOADER_LOADED_THROUGH_US)));
    r->status = 200;
    r->body = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    json_decref(o);
    if (r->body == NULL) {
        srv_reply_json(r, 500, "out of memory");
    }
}
