/*
 * trail.c - GET /v1/events/{id}: where one event is now. The queue first (queue_find: a
 * bounded search by the id's time, no index), then PostgreSQL (readtrail.c). An event leaves
 * the queue only after PostgreSQL committed it, so asking in this order never misses one
 * that moves meanwhile. Never writes anything.
 */
#include "etc/err.h"
#include "etc/log.h"
#include "server/srv.h"

#include <stdio.h>
#include <string.h>

/* queue_find callback: the queued event's fields, copied into the answer. */
static int
trail_queued(void *arg, const struct queue_event *ev)
{
    json_t *o = arg;
    char when[DP_TIME_TEXT_MAX];

    dp_time_text(ev->received_us, when);
    json_object_set_new(o, "type", json_stringn(ev->type, ev->type_len));
    json_object_set_new(o, "state", json_string("queued"));
    json_object_set_new(o, "received_at", json_string(when));
    json_object_set_new(o, "seq", json_integer((json_int_t)ev->seq));
    if (ev->source_len > 0) {
        json_object_set_new(o, "source", json_stringn(ev->source, ev->source_len));
    }
    if ((ev->flags & QUEUE_F_REJECTED) != 0) {
        /* Rejected beside valid events of its body: bound for dead_letter, stage ingest. */
        json_object_set_new(o, "stage", json_string("ingest"));
        json_object_set_new(o, "error",
                            json_stringn(ev->error != NULL ? ev->error : "", ev->error_len));
    }
    return 0;
}

static void
trail_reply(struct srv_reply *r, int status, const char *message, const char *id, json_t *found)
{
    json_t *o = srv_reply_object(status, message);

    json_object_set_new(o, "id", json_string(id));
    if (found != NULL) {
        json_object_update(o, found);
    } else {
        json_object_set_new(o, "state", json_string("unknown"));
    }
    srv_reply_set(r, status, o);
}

void
srv_get_trail(struct srv *s, struct mg_connection *c, const struct srv_match *m,
              struct srv_reply *r)
{
    json_t *found = json_object();
    uint8_t uuid[16];
    char id[EV_UUID_TEXT];
    int rc;

    (void)c;
    if (found == NULL) {
        srv_reply_json(r, 500, "out of memory");
        return;
    }
    if (ev_uuid_parse(m->id, uuid) != 0) {
        srv_reply_json(r, 400, "id: not a valid UUID (expected 8-4-4-4-12 hex digits)");
        goto out;
    }
    ev_uuid_format(uuid, id);
    /* Only a UUIDv7 carries the time the queue search needs. */
    rc = (uuid[6] >> 4) == 7 ? queue_find(s->q, uuid, trail_queued, found) : DP_ERR_NOTFOUND;
    if (rc == DP_ERR_NOTFOUND) {
        rc = srv_read_trail(s, id, found);
    }
    switch (rc) {
    case 0:
        trail_reply(r, 200, NULL, id, found);
        break;
    case DP_ERR_NOTFOUND:
        trail_reply(r, 404, "no event with this id: not queued, not loaded, not a dead letter", id,
                    NULL);
        break;
    case DP_ERR_BUSY:
        srv_reply_json(r, 503, "too many reads waiting on the database: retry later");
        srv_reply_header(r, "Retry-After", "1");
        break;
    case DP_ERR_RETRY:
        srv_reply_json(r, 503, "database unavailable: retry later");
        srv_reply_header(r, "Retry-After", "5");
        break;
    default:
        dp_error("trail lookup failed", "id=%s error=%s", id, dp_strerror(rc));
        srv_reply_json(r, 500, "could not look the event up");
        break;
    }
out:
    json_decref(found);
}
