/*
 * budget.c - the server-wide budget of bytes held by request bodies in flight
 * (server.max_inflight_bytes): what a request charges before it allocates, gives back when
 * answered, and the 503 when there is no room. A request holding nothing may wait briefly for
 * room; one that holds some never waits, so two large requests cannot stall each other.
 */
#include "etc/err.h"
#include "etc/log.h"
#include "server/srv.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#define SRV_BUDGET_WAIT_MS 1000 /* longest wait of a request for room in the budget */

int
srv_budget_init(struct srv_budget *b, int64_t max_bytes)
{
    memset(b, 0, sizeof(*b));
    b->max_bytes = max_bytes;
    if (pthread_mutex_init(&b->mu, NULL) != 0) {
        return DP_ERR_NOMEM;
    }
    if (dp_cond_init_mono(&b->cv) != 0) {
        pthread_mutex_destroy(&b->mu);
        return DP_ERR_NOMEM;
    }
    return 0;
}

void
srv_budget_destroy(struct srv_budget *b)
{
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
}

int
srv_charge_add(struct srv_charge *ch, int64_t n)
{
    struct srv_budget *b = ch->budget;
    int64_t until = dp_mono_us() + (int64_t)SRV_BUDGET_WAIT_MS * 1000;
    struct timespec ts;
    int rc = 0;

    if (n <= 0) {
        return 0;
    }
    dp_mono_timespec(until, &ts);
    pthread_mutex_lock(&b->mu);
    while (b->used + n > b->max_bytes) {
        if (ch->bytes > 0 || pthread_cond_timedwait(&b->cv, &b->mu, &ts) == ETIMEDOUT) {
            rc = DP_ERR_BUSY;
            goto out;
        }
    }
    b->used += n;
    ch->bytes += n;
    if (b->used > b->peak) {
        b->peak = b->used;
    }
out:
    pthread_mutex_unlock(&b->mu);
    return rc;
}

void
srv_charge_release(struct srv_charge *ch)
{
    struct srv_budget *b = ch->budget;

    if (b == NULL || ch->bytes == 0) {
        return;
    }
    pthread_mutex_lock(&b->mu);
    b->used -= ch->bytes;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    ch->bytes = 0;
}

void
srv_reply_busy(struct srv_reply *r)
{
    srv_reply_json(r, 503,
                   "server busy: the request bodies in flight fill "
                   "server.max_inflight_bytes; retry later");
    srv_reply_header(r, "Retry-After", "1");
    srv_reply_header(r, "Connection", "close");
}
