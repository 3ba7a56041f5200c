/*
 * loader.c - runs of the loader: claim consecutive ranges of the queue (each read once), load
 * each on a worker's own connection, retrying after a back-off (backoff.c), delete it from the
 * queue only after PostgreSQL committed it, recover and compact through loader_batches; first
 * check that the queue owns its queue.id (identity.c). Figures: runstats.c. It never deletes
 * a range PostgreSQL may lack and never drops a batch.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "etc/err.h"
#include "etc/log.h"
#include "etc/retention.h"
#include "loader/internal.h"

#define LDR_WORKERS_MAX 64

/* ---- life cycle ---------------------------------------------------------------------- */

static int
ldr_workers_create(struct ldr *l)
{
    l->workers = calloc((size_t)l->n_workers, sizeof(*l->workers));
    if (l->workers == NULL) {
        return DP_ERR_NOMEM;
    }
    for (int i = 0; i < l->n_workers; i++) {
        struct ldr_worker *w = &l->workers[i];
        uint32_t seed = 0;

        w->l = l;
        w->index = i;
        if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed) || seed == 0) {
            seed = (uint32_t)dp_now_us() * 2654435761u + (uint32_t)i + 1;
        }
        w->rnd = seed != 0 ? seed : 1;
        w->ops = calloc(LDR_META_OPS, sizeof(*w->ops));
        if (w->ops == NULL || ldr_batch_init(&w->batch, l->queue_id) != 0) {
            return DP_ERR_NOMEM;
        }
    }
    return 0;
}

/* The loader's own copy of the rules: a reloaded configuration frees the one it was given. */
static int
ldr_retention_copy(struct ldr *l, const struct dp_retention *r)
{
    if (r == NULL || r->n == 0) {
        return 0;
    }
    l->retention = calloc(1, sizeof(*l->retention));
    if (l->retention == NULL) {
        return DP_ERR_NOMEM;
    }
    l->retention->rules = calloc(r->n, sizeof(*r->rules));
    if (l->retention->rules == NULL) {
        return DP_ERR_NOMEM;
    }
    memcpy(l->retention->rules, r->rules, r->n * sizeof(*r->rules));
    l->retention->n = r->n;
    return 0;
}

int
ldr_create(struct ldr **out, struct queue *q, const struct ldr_options *opt)
{
    struct ldr *l = NULL;
    char err[LDR_ERR_MAX];
    int rc;

    *out = NULL;
    if (q == NULL || opt->queue_id == NULL || opt->conninfo == NULL || opt->schema == NULL ||
        opt->batch_rows < 1 || opt->workers < 1 || opt->workers > LDR_WORKERS_MAX) {
        return DP_ERR_INVALID;
    }
    if (ldr_pg_conninfo_check(opt->conninfo, err, sizeof(err)) != 0) {
        dp_error("database.conninfo is not a valid libpq connection string", "error=%s", err);
        return DP_ERR_INVALID;
    }
    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return DP_ERR_NOMEM;
    }
    pthread_mutex_init(&l->mu, NULL);
    (void)dp_cond_init_mono(&l->cv); /* glibc's cannot fail: it takes no memory of its own */
    l->q = q;
    l->instance = queue_instance(q, &l->instance_assigned);
    l->batch_rows = opt->batch_rows;
    l->n_workers = opt->workers;
    l->give_up_attempts = opt->give_up_attempts;
    l->fault = opt->fault;
    l->queue_id = strdup(opt->queue_id);
    l->conninfo = strdup(opt->conninfo);
    l->schema = strdup(opt->schema);
    if (l->queue_id == NULL || l->conninfo == NULL || l->schema == NULL) {
        rc = DP_ERR_NOMEM;
        goto out;
    }
    rc = ldr_retention_copy(l, opt->retention);
    if (rc == 0) {
        rc = ldr_workers_create(l);
    }
    if (rc != 0) {
        goto out;
    }
    *out = l;
    l = NULL;
out:
    ldr_destroy(l);
    return rc;
}

void
ldr_destroy(struct ldr *l)
{
    if (l == NULL) {
        return;
    }
    for (int i = 0; l->workers != NULL && i < l->n_workers; i++) {
        ldr_pg_close(l->workers[i].pg);
        ldr_batch_free(&l->workers[i].batch);
        free(l->workers[i].ops);
    }
    free(l->workers);
    dp_retention_destroy(l->retention);
    free(l->queue_id);
    free(l->conninfo);
    free(l->schema);
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

void
ldr_types_changed(struct ldr *l)
{
    /* Each connection runs ldr_pg_ensure_schema when it is opened again. */
    for (int i = 0; i < l->n_workers; i++) {
        ldr_close(&l->workers[i]);
    }
}

void
ldr_stop(struct ldr *l)
{
    pthread_mutex_lock(&l->mu);
    l->stop = true;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

/* ---- claiming, deleting, recovering -------------------------------------------------- */

/*
 * Read the next range of the run into w's batch: the one read of its events. Returns 0,
 * DP_ERR_NOTFOUND (the run's events are all claimed), DP_ERR_CLOSED (stopped or aborted),
 * DP_ERR_IO, DP_ERR_NOMEM.
 */
static int
ldr_claim(struct ldr *l, struct ldr_worker *w, size_t max_events, size_t max_bytes)
{
    struct ldr_batch *b = &w->batch;
    int rc;

    pthread_mutex_lock(&l->mu);
    if (l->stop || l->abort) {
        rc = DP_ERR_CLOSED;
        goto out;
    }
    if (l->cursor == 0 || l->cursor > l->end) {
        rc = DP_ERR_NOTFOUND;
        goto out;
    }
    rc = ldr_batch_claim(b, l->q, l->cursor, l->end, max_events, max_bytes);
    if (rc != 0) {
        goto out;
    }
    l->run.held += b->unknown;
    for (const char *p = b->unknown_types; *p != '\0';) {
        size_t n = strcspn(p, ",");

        ldr_held_note(l->held_types, sizeof(l->held_types), p, n);
        p += n + (p[n] == ',' ? 1 : 0);
    }
    if (b->events == 0) {
        l->cursor = l->end + 1;
        rc = DP_ERR_NOTFOUND;
        goto out;
    }
    l->cursor = b->last + 1;
out:
    pthread_mutex_unlock(&l->mu);
    return rc;
}

/*
 * Delete b's events first..last from the queue with its figures. Only called once
 * PostgreSQL holds them. A failing delete is retried: moving on would leave a committed
 * batch in the queue while later ones load.
 */
static int
ldr_delete(struct ldr_worker *w, struct ldr_batch *b, uint64_t last)
{
    struct ldr *l = w->l;
    size_t n = ldr_batch_meta(b, dp_now_us(), w->ops);
    int attempt = 0;
    int rc;

    for (;;) {
        rc = queue_delete_range(l->q, b->first, last, w->ops, n);
        if (rc == 0 || rc == DP_ERR_INVALID || rc == DP_ERR_NOMEM) {
            break;
        }
        dp_error("cannot delete a loaded batch from the queue", "first=%llu last=%llu error=%s",
                 (unsigned long long)b->first, (unsigned long long)last, dp_strerror(rc));
        rc = ldr_backoff(w, &attempt, "queue delete", dp_strerror(rc));
        if (rc != 0) {
            break;
        }
    }
    return rc;
}

/* ldr_pg_batches callback: delete a range PostgreSQL already has, with its figures. */
static int
ldr_recover_one(void *arg, uint64_t first, uint64_t last, const char *outcome)
{
    struct ldr_worker *w = arg;
    struct ldr_batch *b = &w->batch;
    int rc;

    rc = ldr_batch_read(b, w->l->q, first, last, SIZE_MAX, 0);
    if (rc != 0 || b->events == 0) {
        return rc;
    }
    rc = ldr_batch_build(b);
    if (rc == 0) {
        ldr_batch_settle(b, outcome);
        rc = ldr_delete(w, b, b->last);
    }
    if (rc == 0) {
        dp_info("recovered a batch postgresql already had", "first=%llu last=%llu events=%zu",
                (unsigned long long)b->first, (unsigned long long)b->last, b->events);
    }
    return rc;
}

/*
 * Delete from the queue every range loader_batches says PostgreSQL has (read while this
 * queue owns queue.id, which ldr_own made sure of and ldr_pg_batches checks again).
 */
static int
ldr_recover(struct ldr_worker *w, char *err, size_t len)
{
    struct queue_stats st;
    int rc;

    rc = queue_stats(w->l->q, &st);
    if (rc != 0 || st.events == 0) {
        return rc;
    }
    rc = ldr_pg_batches(w->pg, w->l->queue_id, st.first_seq, ldr_recover_one, w);
    if (rc == DP_ERR_RETRY) {
        snprintf(err, len, "%s", ldr_pg_error(w->pg));
    }
    return rc == DP_ERR_CONFIG ? ldr_refuse_pg(w) : rc;
}

/* Record why start-up has not succeeded as the last run's result, for /v1/status. */
static void
ldr_start_failed(struct ldr *l, const char *err)
{
    char shown[LDR_ERR_MAX];
    char result[LDR_ERR_MAX + 32];
    struct queue_meta_op op = {QUEUE_META_LOADER_LAST_RUN_RESULT, QUEUE_META_STR, 0, result};

    ldr_error_public("start", err, shown, sizeof(shown));
    snprintf(result, sizeof(result), "error: %.*s", LDR_ERR_MAX - 1, shown);
    if (queue_meta_apply(l->q, &op, 1) != 0) {
        dp_warn("cannot record the loader's start-up failure in the queue", NULL);
    }
}

/*
 * Make the queue hand out numbers above every one loader_batches records for it (read while
 * this queue owns queue.id). A queue normally is past them already; one restored from a
 * backup is not: the original went on handing out, and loading, numbers the backup had not
 * reached, and their rows would make recovery delete the restored queue's new events under
 * the same numbers. Returns 0, DP_ERR_RETRY (err set), DP_ERR_FULL, DP_ERR_IO.
 */
static int
ldr_seq_floor(struct ldr_worker *w, char *err, size_t len)
{
    struct ldr *l = w->l;
    uint64_t max_last = 0;
    uint64_t was = 0;
    int rc;

    rc = ldr_pg_max_last(w->pg, l->queue_id, &max_last);
    if (rc != 0) {
        snprintf(err, len, "%s", ldr_pg_error(w->pg));
        return rc == DP_ERR_NOMEM ? rc : DP_ERR_RETRY;
    }
    if (max_last == 0) {
        return 0;
    }
    rc = queue_seq_advance(l->q, max_last + 1, &was);
    if (rc == 0 && was <= max_last) {
        dp_warn("the queue is behind PostgreSQL: restored from a backup? events acknowledged "
                "after the backup and not loaded are lost",
                "queue_id=%s next_seq=%llu recorded_up_to=%llu", l->queue_id,
                (unsigned long long)was, (unsigned long long)max_last);
    }
    return rc;
}

/*
 * Connect worker 0, check ownership, optionally (at start) take the lease, fencing off an
 * earlier loader, and raise the sequence floor, then recover; retried with back-off. Ownership
 * comes before the lease: a queue that does not own queue.id must not fence the loader that does.
 * While start-up fails, loader.last_run_result says why: the last run's "ok" belongs to an earlier
 * loader.
 */
static int
ldr_prepare(struct ldr *l, bool fence, const char *what)
{
    struct ldr_worker *w = &l->workers[0];
    char err[LDR_ERR_MAX] = "";
    int attempt = 0;
    int rc;

    for (;;) {
        if (ldr_halted(l)) {
            return DP_ERR_CLOSED;
        }
        rc = ldr_ensure(w, err, sizeof(err));
        if (rc == 0) {
            rc = ldr_own(w, err, sizeof(err));
        }
        if (rc == 0 && fence) {
            rc = ldr_pg_lease_take(w->pg, l->queue_id, &l->epoch);
            if (rc != 0) {
                snprintf(err, sizeof(err), "%s", ldr_pg_error(w->pg));
            }
            if (rc == DP_ERR_CONFIG) {
                rc = ldr_refuse_pg(w);
            }
        }
        if (rc == 0 && fence) {
            rc = ldr_seq_floor(w, err, sizeof(err));
        }
        if (rc == 0) {
            rc = ldr_recover(w, err, sizeof(err));
        }
        if (rc != DP_ERR_RETRY) {
            return rc;
        }
        ldr_close(w);
        if (fence) {
            ldr_start_failed(l, err);
        }
        rc = ldr_backoff(w, &attempt, what, err);
        if (rc != 0) {
            return rc;
        }
    }
}

int
ldr_start(struct ldr *l)
{
    struct queue_meta_op ops[] = {
        {QUEUE_META_LOADER_STARTED_US, QUEUE_META_SET, 0, NULL},
        {QUEUE_META_LOADER_REFUSED, QUEUE_META_STR, 0, ""}, /* the queue owns queue.id */
    };
    int rc;

    dp_info("queue identity", "queue_id=%s instance_id=%s older_than_instance_ids=%d", l->queue_id,
            l->instance, (int)l->instance_assigned);
    rc = ldr_prepare(l, true, "start");
    if (rc == 0) {
        ops[0].value = dp_now_us();
        queue_meta_apply(l->q, ops, sizeof(ops) / sizeof(ops[0]));
        pthread_mutex_lock(&l->mu);
        l->started = true;
        pthread_mutex_unlock(&l->mu);
    }
    return rc;
}

/* ---- loading one batch --------------------------------------------------------------- */

/* One attempt: connect if needed, settle a COMMIT whose answer was lost, else load. */
static int
ldr_attempt(struct ldr_worker *w, struct ldr_batch *b, bool *unknown, struct ldr_load_result *res,
            char *err, size_t len)
{
    struct ldr *l = w->l;
    uint64_t last = 0;
    char *outcome = NULL;
    int rc;

    /*
     * The watermark this batch records: read after the range was claimed (its events are
     * queued) and before its COMMIT, which is all queue_watermark asks. Best effort.
     */
    if (queue_watermark(l->q, b->first, b->last, &b->watermark_us) != 0) {
        b->watermark_us = 0;
    }
    rc = ldr_ensure(w, err, len);
    if (rc == 0 && *unknown) {
        rc = ldr_pg_batch_lookup(w->pg, l->queue_id, b->first, &last, &outcome);
        if (rc == 0) {
            dp_info("batch had committed before its connection was lost", "first=%llu last=%llu",
                    (unsigned long long)b->first, (unsigned long long)last);
            ldr_batch_settle(b, outcome);
            free(outcome);
            res->committed_last = last;
            return 0;
        }
        if (rc == DP_ERR_NOTFOUND) {
            *unknown = false;
            rc = 0;
        } else {
            snprintf(err, len, "%s", ldr_pg_error(w->pg));
        }
    }
    if (rc == 0) {
        rc = ldr_batch_load(b, w->pg, l->fault, res);
        if (rc != 0) {
            *unknown = res->commit_sent;
            snprintf(err, len, "%s",
                     ldr_pg_error(w->pg)[0] != '\0' ? ldr_pg_error(w->pg) : "connection lost");
        }
    }
    return rc;
}

/* Load b until it is committed (now or, as PostgreSQL tells, earlier). */
static int
ldr_commit(struct ldr_worker *w, struct ldr_batch *b, uint64_t *committed_last)
{
    struct ldr_load_result res = {0};
    char err[LDR_ERR_MAX] = "";
    bool unknown = false;
    int attempt = 0;
    int rc;

    for (;;) {
        rc = ldr_attempt(w, b, &unknown, &res, err, sizeof(err));
        if (rc != DP_ERR_RETRY) {
            break;
        }
        ldr_close(w);
        rc = ldr_backoff(w, &attempt, unknown ? "batch (commit unknown)" : "batch", err);
        if (rc != 0) {
            break;
        }
    }
    *committed_last = res.committed_last;
    return rc;
}

/* The range claimed into w's batch to PostgreSQL and off the queue. */
static int
ldr_process(struct ldr_worker *w)
{
    struct ldr *l = w->l;
    struct ldr_batch *b = &w->batch;
    uint64_t committed_last = 0;
    uint64_t last = b->last;
    int rc;

    rc = ldr_batch_build(b);
    if (rc == 0) {
        rc = ldr_commit(w, b, &committed_last);
    }
    if (rc == DP_ERR_CONFIG) {
        return ldr_refuse_pg(w);
    }
    if (rc != 0) {
        return rc;
    }
    w->used_ms = dp_mono_ms();
    if (committed_last != 0 && committed_last != b->last) {
        /* Not reachable after ldr_start's fence and recovery; never delete beyond it. */
        dp_error("loader_batches holds this batch with another range",
                 "first=%llu last=%llu "
                 "committed_last=%llu",
                 (unsigned long long)b->first, (unsigned long long)b->last,
                 (unsigned long long)committed_last);
        last = committed_last < b->last ? committed_last : b->last;
    }
    rc = ldr_delete(w, b, last);
    if (rc != 0) {
        return rc;
    }
    pthread_mutex_lock(&l->mu);
    l->run.events += b->events;
    l->run.loaded += ldr_batch_loaded(b);
    l->run.dead_letters += ldr_batch_dead(b);
    l->run.batches++;
    pthread_mutex_unlock(&l->mu);
    dp_debug("batch loaded", "worker=%d first=%llu last=%llu events=%zu dead_letters=%zu", w->index,
             (unsigned long long)b->first, (unsigned long long)b->last, b->events,
             ldr_batch_dead(b));
    return 0;
}

/* ---- runs ---------------------------------------------------------------------------- */

static void
ldr_run_fail(struct ldr *l, int rc)
{
    pthread_mutex_lock(&l->mu);
    if (l->run_rc == 0) {
        l->run_rc = rc;
    }
    if (rc != DP_ERR_CLOSED) {
        l->abort = true;
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
}

static void *
ldr_worker_main(void *arg)
{
    struct ldr_worker *w = arg;
    int rc = 0;

    while (rc == 0) {
        rc = ldr_claim(w->l, w, (size_t)w->l->batch_rows, LDR_BATCH_MAX_BYTES);
        if (rc == 0) {
            rc = ldr_process(w);
        }
    }
    if (rc != DP_ERR_NOTFOUND) {
        ldr_run_fail(w->l, rc);
    }
    return NULL;
}

static int
ldr_workers_run(struct ldr *l)
{
    int started = 0;
    int rc;

    for (int i = 0; i < l->n_workers; i++) {
        struct ldr_worker *w = &l->workers[i];

        w->started = pthread_create(&w->thread, NULL, ldr_worker_main, w) == 0;
        started += w->started ? 1 : 0;
    }
    if (started == 0) {
        ldr_worker_main(&l->workers[0]);
    }
    for (int i = 0; i < l->n_workers; i++) {
        if (l->workers[i].started) {
            pthread_join(l->workers[i].thread, NULL);
            l->workers[i].started = false;
        }
    }
    pthread_mutex_lock(&l->mu);
    rc = l->run_rc;
    pthread_mutex_unlock(&l->mu);
    return rc;
}

/*
 * At the end of a run, record the watermark again: with the queue drained it is the time
 * of this read, which no batch records. In PostgreSQL first, then for /v1/status.
 * Best effort: the next batch or run records it again.
 */
static void
ldr_mark(struct ldr *l)
{
    struct ldr_worker *w = &l->workers[0];
    struct queue_meta_op op = {QUEUE_META_LOADER_LOADED_THROUGH_US, QUEUE_META_MAX, 0, NULL};
    char err[LDR_ERR_MAX] = "";
    int rc;

    rc = queue_watermark(l->q, 0, 0, &op.value);
    if (rc == 0) {
        rc = ldr_ensure(w, err, sizeof(err));
    }
    if (rc == 0) {
        rc = ldr_pg_watermark(w->pg, l->queue_id, op.value);
        if (rc != 0) {
            snprintf(err, sizeof(err), "%s", ldr_pg_error(w->pg));
            ldr_close(w);
        }
    }
    if (rc == 0) {
        rc = queue_meta_apply(l->q, &op, 1);
    }
    if (rc != 0) {
        dp_warn("watermark not recorded", "error=%s", err[0] != '\0' ? err : dp_strerror(rc));
    }
}

/* Merge the loader_batches rows of ranges the queue no longer holds. Best effort. */
static void
ldr_compact(struct ldr *l)
{
    struct ldr_worker *w = &l->workers[0];
    struct queue_stats st;
    uint64_t deleted = 0;
    char err[LDR_ERR_MAX] = "";
    int rc;

    rc = queue_stats(l->q, &st);
    if (rc == 0) {
        rc = ldr_ensure(w, err, sizeof(err));
    }
    if (rc == 0) {
        rc = ldr_pg_compact(w->pg, l->queue_id, st.events > 0 ? st.first_seq : st.next_seq,
                            &deleted);
        if (rc != 0) {
            snprintf(err, sizeof(err), "%s", ldr_pg_error(w->pg));
            ldr_close(w);
        }
    }
    if (rc != 0) {
        dp_warn("loader_batches compaction skipped", "error=%s",
                err[0] != '\0' ? err : dp_strerror(rc));
    } else if (deleted > 0) {
        dp_debug("loader_batches compacted into one row", "below=%llu",
                 (unsigned long long)(st.events > 0 ? st.first_seq : st.next_seq));
    }
}

/* ldr_part_pass's callback: what a table dropped, into the queue's metadata for /metrics. */
static void
ldr_part_dropped(void *arg, const struct ev_type *t, const struct ldr_part_dropped *d)
{
    struct ldr *l = arg;
    char parts[256];
    char rows[256];
    struct queue_meta_op ops[2] = {
        {parts, QUEUE_META_ADD, (int64_t)d->partitions, NULL},
        {rows, QUEUE_META_ADD, (int64_t)d->rows, NULL},
    };
    int rc;

    snprintf(parts, sizeof(parts), "%s%s", QUEUE_META_LOADER_PARTITIONS_DROPPED_PREFIX, t->name);
    snprintf(rows, sizeof(rows), "%s%s", QUEUE_META_LOADER_ROWS_DROPPED_PREFIX, t->name);
    rc = queue_meta_apply(l->q, ops, 2);
    if (rc != 0) {
        dp_warn("retention: cannot record the dropped partitions' figures", "type=%s error=%s",
                t->name, dp_strerror(rc));
    }
}

/*
 * The retention pass before a run's batches: expired partitions dropped, today's and
 * tomorrow's created. Each batch creates the partitions of the days it holds itself
 * (ldr_part_days), so a pass that failed (logged by table) fails nothing else: the run loads
 * every type, and the next run's pass drops what this one could not. Only failing to connect
 * fails the run, as it would fail its batches.
 */
static int
ldr_retention_run(struct ldr *l)
{
    struct ldr_worker *w = &l->workers[0];
    char err[LDR_ERR_MAX] = "";
    int rc;

    if (l->retention == NULL) {
        return 0;
    }
    rc = ldr_ensure(w, err, sizeof(err));
    if (rc == 0) {
        rc = ldr_part_pass(w->pg, dp_now_us(), ldr_part_dropped, l);
        if (rc == DP_ERR_RETRY) {
            ldr_close(w); /* a broken connection is made again by the first batch */
            rc = 0;
        }
    }
    if (rc != 0) {
        ldr_run_fail(l, rc);
    }
    return rc;
}

int
ldr_run(struct ldr *l, struct ldr_run_stats *st)
{
    struct queue_stats qs;
    int rc;

    if (ldr_halted(l)) {
        return DP_ERR_CLOSED;
    }
    ldr_run_begin(l);
    rc = ldr_prepare(l, false, "recovery");
    if (rc == 0) {
        rc = queue_stats(l->q, &qs);
    }
    if (rc == 0) {
        rc = ldr_retention_run(l);
    }
    if (rc == 0 && qs.events > 0) {
        pthread_mutex_lock(&l->mu);
        l->cursor = qs.first_seq;
        l->end = qs.next_seq - 1;
        pthread_mutex_unlock(&l->mu);
        rc = ldr_workers_run(l);
    }
    if (rc == 0) {
        ldr_mark(l);
        ldr_compact(l);
    }
    ldr_run_end(l, rc, st);
    return rc;
}

int
ldr_load_range(struct ldr *l, uint64_t first, uint64_t last)
{
    int rc;

    pthread_mutex_lock(&l->mu);
    l->abort = false;
    l->cursor = first;
    l->end = last;
    pthread_mutex_unlock(&l->mu);
    rc = ldr_claim(l, &l->workers[0], SIZE_MAX, 0);
    if (rc == 0) {
        rc = ldr_process(&l->workers[0]);
    }
    return rc == DP_ERR_NOTFOUND ? 0 : rc;
}
