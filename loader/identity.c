/*
 * identity.c - whether this queue owns its queue.id in PostgreSQL (queue_owners): claim an
 * id nobody owns, refuse for good (logged, recorded for /v1/status) when another queue
 * instance owns it, and --adopt-queue, the operator's way out. A queue that does not own its
 * queue.id reads and deletes nothing.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "etc/err.h"
#include "etc/log.h"
#include "loader/internal.h"

/*
 * This queue does not own its queue.id (owner: the instance that does, "" if none; why: the
 * finding): log what happened and what to do, and record it for /v1/status. For good: the
 * run or start ends with DP_ERR_CONFIG and the daemon exits LDR_EXIT_REFUSED.
 */
static void
ldr_refuse(struct ldr *l, const char *owner, const char *why)
{
    struct queue_meta_op ops[] = {
        {QUEUE_META_LOADER_REFUSED, QUEUE_META_STR, 0, l->refusal},
        {QUEUE_META_LOADER_LAST_ERROR, QUEUE_META_STR, 0, l->refusal},
        {QUEUE_META_LOADER_LAST_ERROR_US, QUEUE_META_SET, dp_now_us(), NULL},
    };
    bool first;

    pthread_mutex_lock(&l->mu);
    first = !l->refused;
    if (first) {
        l->refused = true;
        if (strncmp(why, "fenced", 6) == 0) {
            /* A newer loader process of this very queue took over: nothing to adopt. */
            snprintf(l->refusal, sizeof(l->refusal),
                     "%s; stop this loader: another one of "
                     "this queue (its host and pid above) loads it now",
                     why);
        } else {
            snprintf(l->refusal, sizeof(l->refusal),
                     "refused: %s; nothing is loaded or "
                     "deleted. If the queue that loaded under queue.id %s is gone for good "
                     "(queue.path recreated, disk replaced), run datapipe-loader --adopt-queue; "
                     "if it is another live appliance, give this one a queue.id of its own",
                     why, l->queue_id);
        }
        snprintf(l->last_error, sizeof(l->last_error), "refused: %.*s",
                 (int)sizeof(l->last_error) - 16, why);
    }
    pthread_mutex_unlock(&l->mu);
    if (!first) {
        return;
    }
    if (strncmp(why, "fenced", 6) == 0) {
        dp_error("a newer loader of this queue took its lease: loading and deleting nothing "
                 "more",
                 "queue_id=%s instance_id=%s reason=%s fix=%s", l->queue_id, l->instance, why,
                 "stop this loader process");
    } else {
        dp_error("this queue does not own its queue.id in PostgreSQL: loading and deleting "
                 "nothing until an operator acts",
                 "queue_id=%s instance_id=%s "
                 "owner_instance_id=%s reason=%s fix=%s",
                 l->queue_id, l->instance, owner[0] != '\0' ? owner : "none", why,
                 "if the owner's queue is gone for "
                 "good run datapipe-loader --adopt-queue, else give this appliance its own "
                 "queue.id");
    }
    if (queue_meta_apply(l->q, ops, sizeof(ops) / sizeof(ops[0])) != 0) {
        dp_warn("cannot record the refusal in the queue", NULL);
    }
}

bool
ldr_refused(struct ldr *l, char *buf, size_t len)
{
    bool refused;

    pthread_mutex_lock(&l->mu);
    refused = l->refused;
    if (refused && buf != NULL && len > 0) {
        snprintf(buf, len, "%s", l->refusal);
    }
    pthread_mutex_unlock(&l->mu);
    return refused;
}

/*
 * queue.id has no owner yet: claim it if the loader_batches rows under it (if any) can be
 * this queue's (the rules are in loader.h), then read back who won. owner receives the owner.
 * Returns 0, DP_ERR_CONFIG (refused), DP_ERR_RETRY, DP_ERR_IO, DP_ERR_NOMEM.
 */
static int
ldr_own_claim(struct ldr_worker *w, char *owner, size_t len)
{
    struct ldr *l = w->l;
    struct queue_stats st;
    uint64_t max_last = 0;
    char why[LDR_ERR_MAX];
    char other[LDR_OWNER_MAX];
    int rc;

    rc = queue_stats(l->q, &st);
    if (rc != 0) {
        return rc;
    }
    rc = ldr_pg_max_last(w->pg, l->queue_id, &max_last);
    if (rc != 0) {
        return rc;
    }
    /* An instance id names one queue: owning a second queue.id, it is a copy of the first. */
    rc = ldr_pg_owned_elsewhere(w->pg, l->queue_id, other, sizeof(other));
    if (rc == 0) {
        snprintf(why, sizeof(why),
                 "this queue (instance %s) owns queue.id %.100s already: it "
                 "is a copy of that queue (a backup restored beside it?) or its queue.id was "
                 "changed; give it back that queue.id, or do not run a copy beside its original",
                 l->instance, other);
        ldr_refuse(l, "", why);
        return DP_ERR_CONFIG;
    }
    if (rc != DP_ERR_NOTFOUND) {
        return rc;
    }
    if (max_last > 0 && !l->instance_assigned) {
        snprintf(why, sizeof(why),
                 "loader_batches records sequence numbers up to %llu under "
                 "queue.id %s without an owner, and this queue (instance %s) was created "
                 "since: they were loaded from another queue",
                 (unsigned long long)max_last, l->queue_id, l->instance);
        ldr_refuse(l, "", why);
        return DP_ERR_CONFIG;
    }
    if (max_last > 0 && max_last >= st.next_seq) {
        snprintf(why, sizeof(why),
                 "loader_batches records sequence numbers up to %llu under "
                 "queue.id %s without an owner, and this queue (instance %s) has handed out "
                 "numbers below %llu only: they were loaded from another queue",
                 (unsigned long long)max_last, l->queue_id, l->instance,
                 (unsigned long long)st.next_seq);
        ldr_refuse(l, "", why);
        return DP_ERR_CONFIG;
    }
    rc = ldr_pg_owner_claim(w->pg, l->queue_id);
    if (rc == 0) {
        rc = ldr_pg_owner(w->pg, l->queue_id, owner, len);
    }
    if (rc == 0 && strcmp(owner, l->instance) == 0 && max_last > 0) {
        dp_warn("claimed queue.id for a queue older than instance ids, with the loader_batches "
                "rows already recorded under it",
                "queue_id=%s instance_id=%s recorded_up_to=%llu "
                "next_seq=%llu",
                l->queue_id, l->instance, (unsigned long long)max_last,
                (unsigned long long)st.next_seq);
    } else if (rc == 0 && strcmp(owner, l->instance) == 0) {
        dp_info("claimed queue.id", "queue_id=%s instance_id=%s", l->queue_id, l->instance);
    }
    return rc == DP_ERR_NOTFOUND ? DP_ERR_RETRY : rc;
}

int
ldr_own(struct ldr_worker *w, char *err, size_t len)
{
    struct ldr *l = w->l;
    char owner[LDR_OWNER_MAX];
    char why[LDR_ERR_MAX];
    int rc;

    if (ldr_refused(l, NULL, 0)) {
        return DP_ERR_CONFIG;
    }
    rc = ldr_pg_owner(w->pg, l->queue_id, owner, sizeof(owner));
    if (rc == DP_ERR_NOTFOUND) {
        rc = ldr_own_claim(w, owner, sizeof(owner));
    }
    if (rc == DP_ERR_RETRY) {
        snprintf(err, len, "%s", ldr_pg_error(w->pg));
    }
    if (rc != 0 || strcmp(owner, l->instance) == 0) {
        return rc;
    }
    snprintf(why, sizeof(why),
             "queue.id %s is owned by queue instance %s, this queue is "
             "instance %s",
             l->queue_id, owner, l->instance);
    ldr_refuse(l, owner, why);
    return DP_ERR_CONFIG;
}

int
ldr_refuse_pg(struct ldr_worker *w)
{
    ldr_refuse(w->l, ldr_pg_owner_seen(w->pg), ldr_pg_error(w->pg));
    return DP_ERR_CONFIG;
}

/* Say what ldr_pg_owner_adopt did, on stdout and in the log. */
static void
ldr_adopt_report(struct ldr *l, const struct ldr_adoption *a)
{
    if (a->already) {
        printf("queue.id %s: this queue (instance %s) is the owner already; nothing changed\n",
               l->queue_id, l->instance);
        dp_info("--adopt-queue: already the owner", "queue_id=%s instance_id=%s", l->queue_id,
                l->instance);
        return;
    }
    printf("queue.id %s: this queue (instance %s) is the owner now, instead of %s%s.\n"
           "%llu loader_batches rows of the former owner moved to queue_id '%s'; "
           "%llu rows of this queue taken back.\n",
           l->queue_id, l->instance, a->previous[0] != '\0' ? "instance " : "",
           a->previous[0] != '\0' ? a->previous : "nobody (rows from before owners were recorded)",
           (unsigned long long)a->moved, a->moved_to, (unsigned long long)a->restored);
    dp_info("--adopt-queue: this queue owns queue.id now",
            "queue_id=%s instance_id=%s "
            "previous_instance_id=%s batches_moved=%llu moved_to=%s batches_taken_back=%llu",
            l->queue_id, l->instance, a->previous[0] != '\0' ? a->previous : "none",
            (unsigned long long)a->moved, a->moved_to, (unsigned long long)a->restored);
}

int
ldr_adopt(struct ldr *l)
{
    struct ldr_worker *w = &l->workers[0];
    struct ldr_adoption a;
    struct queue_meta_op op = {QUEUE_META_LOADER_REFUSED, QUEUE_META_STR, 0, ""};
    char err[LDR_ERR_MAX] = "";
    int attempt = 0;
    int rc;

    for (;;) {
        if (ldr_halted(l)) {
            return DP_ERR_CLOSED;
        }
        rc = ldr_ensure(w, err, sizeof(err));
        if (rc == 0) {
            rc = ldr_pg_owner_adopt(w->pg, l->queue_id, &a);
            if (rc != 0) {
                snprintf(err, sizeof(err), "%s", ldr_pg_error(w->pg));
            }
        }
        if (rc != DP_ERR_RETRY) {
            break;
        }
        ldr_close(w);
        rc = ldr_backoff(w, &attempt, "adopt", err);
        if (rc != 0) {
            return rc;
        }
    }
    if (rc != 0) {
        return rc;
    }
    ldr_adopt_report(l, &a);
    pthread_mutex_lock(&l->mu);
    l->refused = false;
    pthread_mutex_unlock(&l->mu);
    if (queue_meta_apply(l->q, &op, 1) != 0) {
        dp_warn("cannot clear the refusal recorded in the queue", NULL);
    }
    return 0;
}
