/*
 * probes.c - GET /healthz (the process answers) and GET /readyz (an append can succeed now:
 * the map has room and the last append did not fail full), for load balancers and the
 * service manager. Cheap: one snapshot of the queue's counts, no PostgreSQL.
 */
#include "etc/log.h"
#include "server/srv.h"

void
srv_get_healthz(struct srv *s, struct srv_reply *r)
{
    (void)s;
    srv_reply_json(r, 200, "ok");
}

/* Ready when an append can succeed: the map has room and the last one did not fail full. */
void
srv_get_readyz(struct srv *s, struct srv_reply *r)
{
    struct queue_stats st;

    if (queue_stats(s->q, &st) != 0) {
        srv_reply_json(r, 503, "queue unreadable");
        return;
    }
    if (atomic_load(&s->queue_full) && (st.events < atomic_load(&s->full_events) ||
                                        dp_now_us() - atomic_load(&s->full_at_us) > 5000000)) {
        /* The loader deleted events since the last failure, or it is 5 s old (disk space
         * may have come back): appends may fit again, and the next one will tell. */
        atomic_store(&s->queue_full, false);
    }
    if (atomic_load(&s->queue_full) || st.bytes >= st.capacity_bytes) {
        srv_reply_json(r, 503, "queue full");
        srv_reply_header(r, "Retry-After", "1");
        return;
    }
    srv_reply_json(r, 200, "ready");
}
