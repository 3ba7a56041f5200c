/*
 * commit.c - appends: group commit. Callers queue their events; one of them commits every
 * queued call in one write transaction and wakes the others (see queue_lead).
 * The hot path of the server: it must never acknowledge an append before its transaction
 * committed, never store part of an append, and never add work per event that can be done
 * per transaction.
 */
#include <assert.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/futex.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "etc/err.h"
#include "etc/log.h"
#include "etc/plant.h"
#include "queue/internal.h"

/*
 * Group commit, in short (details above queue_lead): callers queue their events; one of
 * them, the committer, writes every queued call in one transaction, commits, and wakes the
 * callers of that batch with one futex wake on the batch's wake word. The last caller of
 * the batch to leave hands the committer role to the oldest call queued meanwhile.
 *
 * A batch's wake word is word[gen & 1]: gen << 2 | one of these states. Two slots suffice:
 * batch gen + 2 is only taken after every caller of batch gen has left.
 */
#define QUEUE_B_WAIT 0u  /* batch queued or being committed */
#define QUEUE_B_LEAD 1u  /* committer role offered to any caller of the batch */
#define QUEUE_B_TAKEN 2u /* one caller took the role */
#define QUEUE_B_DONE 3u  /* committed or failed: every rc is final */

/* Bytes LMDB adds to a record in a leaf page: node header, 8-byte key, a page slot. */
#define QUEUE_NODE_OVERHEAD 18u

/* Most expired keys forgotten in the transaction that follows an append refused for space. */
#define QUEUE_PRUNE_ON_FULL 4096

/* One queue_append() call waiting for its events to become durable, on the caller's stack. */
struct queue_waiter {
    struct queue_waiter *next; /* next pending call, in arrival order */
    struct queue_event *evs;   /* the caller's events; seq set on success */
    size_t n;                  /* events */
    int rc;                    /* result: 0 or dp_err, final once the batch is DONE */
    uint32_t gen;              /* the batch it joined */
    queue_conflict_fn *file;   /* queue_append_filing's: a conflict's error text; or NULL */
    void *file_arg;            /* its argument */
};

/*
 * Cut an error text to QUEUE_ERROR_MAX bytes without splitting a UTF-8 sequence, so the
 * loader can store it in a text column.
 */
static size_t
queue_error_cut(const char *s, size_t len)
{
    if (len <= QUEUE_ERROR_MAX) {
        return len;
    }
    len = QUEUE_ERROR_MAX;
    while (len > 0 && ((unsigned char)s[len] & 0xc0u) == 0x80u) {
        len--;
    }
    return len;
}

/* Check what can be checked before queueing; cuts long error texts. */
static int
queue_check_events(const struct queue *q, struct queue_event *evs, size_t n)
{
    uint64_t total = 0;

    if (evs == NULL || n == 0) {
        return DP_ERR_INVALID;
    }
    for (size_t i = 0; i < n; i++) {
        struct queue_event *ev = &evs[i];

        if (ev->type == NULL || ev->type_len == 0 || ev->type_len > QUEUE_TYPE_MAX ||
            (ev->json == NULL && ev->json_len > 0) || (ev->error == NULL && ev->error_len > 0) ||
            (ev->key == NULL && ev->key_len > 0) || ev->key_len > QUEUE_KEY_MAX ||
            (ev->source == NULL && ev->source_len > 0) || ev->source_len > QUEUE_SOURCE_MAX ||
            ev->follows > i) {
            return DP_ERR_INVALID;
        }
        ev->error_len = queue_error_cut(ev->error, ev->error_len);
        if (ev->json_len > UINT32_MAX || queue_rec_size(ev) > q->map_bytes / 2) {
            dp_warn("event too large for the queue", "path=%s bytes=%zu map_bytes=%" PRIu64,
                    q->path, ev->json_len, q->map_bytes);
            return DP_ERR_INVALID;
        }
        total += queue_rec_size(ev) + QUEUE_NODE_OVERHEAD;
    }
    /*
     * A call that could not fit even in an empty queue is refused as too large, before it
     * is tried: failing it for space would call the queue full (503, /readyz 503) while it
     * may be empty.
     */
    if (total > q->map_bytes / 2) {
        dp_warn("append too large for the queue",
                "path=%s events=%zu bytes=%" PRIu64 " map_bytes=%" PRIu64, q->path, n, total,
                q->map_bytes);
        return DP_ERR_INVALID;
    }
    return 0;
}

/* Pages a database takes, counted against the append limit. */
static size_t
queue_pages(const MDB_stat *st)
{
    return st->ms_branch_pages + st->ms_leaf_pages + st->ms_overflow_pages;
}

/* Bytes of the records of the calls first..stop (stop excluded). */
static size_t
groups_bytes(struct queue_waiter *first, struct queue_waiter *stop)
{
    size_t bytes = 0;

    for (struct queue_waiter *w = first; w != stop; w = w->next) {
        for (size_t i = 0; i < w->n; i++) {
            bytes += queue_rec_size(&w->evs[i]);
            /* A conflict the call files is stored with an error text of its own. */
            if (w->file != NULL && w->evs[i].key_len > 0) {
                bytes += QUEUE_ERROR_MAX;
            }
        }
    }
    return bytes;
}

/*
 * Whether the events and the keys now take more than the append limit (they share the map:
 * the reserve kept for deletes must hold whatever fills it). Returns an LMDB code; *over
 * receives the answer.
 */
static int
queue_over_limit(struct queue *q, MDB_txn *txn, bool *over)
{
    MDB_dbi dbis[] = {q->events_dbi, q->keys_dbi, q->key_times_dbi};
    MDB_stat st;
    size_t pages = 0;
    int rc;

    for (size_t i = 0; i < sizeof(dbis) / sizeof(dbis[0]); i++) {
        rc = mdb_stat(txn, dbis[i], &st);
        if (rc != 0) {
            return rc;
        }
        pages += queue_pages(&st);
    }
    *over = pages > q->limit_pages;
    return 0;
}

/*
 * Store ev, whose key conflicts, rejected with the error text w->file gives it (none: not
 * stored), as sequence number *seq (then incremented), in txn with the rest of its call.
 * Returns an LMDB code.
 */
static int
queue_write_filed(MDB_txn *txn, struct queue *q, const struct queue_waiter *w,
                  struct queue_event *ev, uint64_t *seq, size_t *appended)
{
    char text[QUEUE_ERROR_MAX + 1];
    struct queue_event rec = *ev;
    uint8_t kbuf[8];
    MDB_val k = {sizeof(kbuf), kbuf};
    MDB_val v;
    size_t n;
    int rc;

    n = w->file(w->file_arg, ev, text, sizeof(text));
    if (n == 0) {
        return 0;
    }
    rec.flags |= QUEUE_F_REJECTED;
    rec.error = text;
    rec.error_len = queue_error_cut(text, n < sizeof(text) ? n : sizeof(text) - 1);
    queue_put_be64(kbuf, *seq);
    v.mv_size = queue_rec_size(&rec);
    v.mv_data = NULL;
    rc = mdb_put(txn, q->events_dbi, &k, &v, MDB_APPEND | MDB_RESERVE);
    if (rc != 0) {
        return rc;
    }
    queue_rec_encode(v.mv_data, &rec);
    ev->dedup = QUEUE_DEDUP_FILED;
    ev->seq = (*seq)++;
    (*appended)++;
    return 0;
}

/*
 * Append one event of the call w in txn as sequence number *seq (then incremented), unless
 * its key says it is a repeat or a conflict (see struct queue_event; a conflict the call
 * files is stored rejected instead). *appended is incremented when it was written.
 * Returns an LMDB code.
 */
static int
queue_write_one(struct queue *q, MDB_txn *txn, const struct queue_waiter *w, struct queue_event *ev,
                uint64_t *seq, int64_t now_us, size_t *appended)
{
    uint8_t kbuf[8];
    MDB_val k = {sizeof(kbuf), kbuf};
    MDB_val v;
    bool append = true;
    int rc;

    ev->dedup = QUEUE_DEDUP_NEW;
    ev->orig_answer = 0;
    memset(ev->orig_uuid, 0, sizeof(ev->orig_uuid));
    if (ev->key_len > 0 && (ev->flags & QUEUE_F_REJECTED) == 0) {
        rc = queue_key_claim(q, txn, ev, *seq, now_us, &append);
        if (rc == 0 && !append && ev->dedup == QUEUE_DEDUP_CONFLICT && w->file != NULL) {
            return queue_write_filed(txn, q, w, ev, seq, appended);
        }
        if (rc != 0 || !append) {
            return rc;
        }
    }
    if (DP_PLANTED("ack_unstored") && *seq % 50 == 7) {
        /* Planted (etc/plant.h): a sequence number and an answer, but no record. */
        ev->seq = (*seq)++;
        return 0;
    }
    queue_put_be64(kbuf, *seq);
    v.mv_size = queue_rec_size(ev);
    v.mv_data = NULL;
    /* Keys only grow: MDB_APPEND skips the search; MDB_RESERVE saves a copy. */
    rc = mdb_put(txn, q->events_dbi, &k, &v, MDB_APPEND | MDB_RESERVE);
    if (rc != 0) {
        return rc;
    }
    queue_rec_encode(v.mv_data, ev);
    ev->seq = (*seq)++;
    (*appended)++;
    return 0;
}

/*
 * Write the events of the calls first..stop (stop excluded), their keys and the next
 * sequence number in one write transaction, forget up to QUEUE_PRUNE_STEP expired keys, and
 * commit. Sets each event's seq and dedup fields, or seq 0 on failure.
 * Returns an LMDB or errno code; *events receives how many events the transaction held.
 */
static int
queue_write_groups(struct queue *q, struct queue_waiter *first, struct queue_waiter *stop,
                   size_t *events)
{
    MDB_txn *txn = NULL;
    MDB_val k;
    MDB_val v;
    uint8_t kbuf[8];
    uint64_t seq = 0;
    int64_t now_us = 0;
    size_t nev = 0;
    size_t pruned = 0;
    bool over = false;
    int64_t stamp = 0;
    int rc;

    rc = queue_disk_reserve(q, groups_bytes(first, stop));
    if (rc == 0) {
        rc = queue_txn_begin(q, 0, &txn);
    }
    if (rc != 0) {
        txn = NULL;
        goto out;
    }
    rc = queue_next_seq(q, txn, &seq);
    if (rc != 0) {
        goto out;
    }
    /*
     * One clock read per transaction, inside it: stamps never decrease with seq, and no
     * later commit stamps below a time another write transaction read before it (see
     * queue_watermark). A clock that steps back is held at the last stamp.
     */
    now_us = dp_now_us();
    stamp = now_us > q->stamp_us ? now_us : q->stamp_us;
    for (struct queue_waiter *w = first; w != stop; w = w->next) {
        for (size_t i = 0; i < w->n; i++) {
            if (w->evs[i].received_us == 0) {
                w->evs[i].received_us = stamp;
            }
            if (w->evs[i].follows > 0 && w->evs[i - w->evs[i].follows].dedup != QUEUE_DEDUP_NEW) {
                w->evs[i].dedup = QUEUE_DEDUP_FOLLOWED;
                w->evs[i].seq = 0;
                continue;
            }
            rc = queue_write_one(q, txn, w, &w->evs[i], &seq, now_us, &nev);
            if (rc != 0) {
                goto out;
            }
        }
    }
    queue_put_be64(kbuf, seq);
    k.mv_size = sizeof(QUEUE_KEY_NEXT_SEQ) - 1;
    k.mv_data = (void *)QUEUE_KEY_NEXT_SEQ;
    v.mv_size = sizeof(kbuf);
    v.mv_data = kbuf;
    rc = mdb_put(txn, q->sys_dbi, &k, &v, 0);
    if (rc != 0) {
        goto out;
    }
    /* Conservation: the accepted counter commits with the events it counts. */
    if (nev > 0) {
        rc = queue_meta_add_txn(q, txn, QUEUE_META_ACCEPTED, (int64_t)nev);
        if (rc != 0) {
            goto out;
        }
    }
    rc = queue_keys_prune(q, txn, now_us, QUEUE_PRUNE_STEP, &pruned);
    if (rc != 0) {
        goto out;
    }
    rc = queue_over_limit(q, txn, &over);
    if (rc != 0) {
        goto out;
    }
    if (over) {
        rc = MDB_MAP_FULL;
        goto out;
    }
    rc = queue_txn_commit(q, txn, QUEUE_TXN_APPEND, nev);
    txn = NULL;
    if (rc == 0) {
        q->stamp_us = stamp;
    }
out:
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    if (rc != 0) {
        /* Nothing was stored: the events are as the callers gave them (stamps undone). */
        for (struct queue_waiter *w = first; w != stop; w = w->next) {
            for (size_t i = 0; i < w->n; i++) {
                w->evs[i].seq = 0;
                w->evs[i].dedup = QUEUE_DEDUP_NEW;
                if (w->evs[i].received_us == stamp) {
                    w->evs[i].received_us = 0;
                }
            }
        }
    }
    *events = nev;
    return rc;
}

/*
 * Translate the result of an append transaction holding one call, or several that did not
 * fail for size. Logs only when "full" starts and ends, not for every refused append.
 */
static int
queue_append_err(struct queue *q, int rc)
{
    if (rc == 0) {
        if (q->full) {
            dp_info("queue accepts appends again", "path=%s", q->path);
            q->full = false;
        }
        return 0;
    }
    if (queue_rc_full(q, rc)) {
        if (!q->full) {
            dp_warn("queue full, appends refused", "path=%s err=%s", q->path, mdb_strerror(rc));
            q->full = true;
        }
        return DP_ERR_FULL;
    }
    if (rc == MDB_TXN_FULL) {
        dp_warn("append too large for one transaction", "path=%s", q->path);
        return DP_ERR_INVALID;
    }
    return queue_err(q, rc, "append");
}

/*
 * Commit the batch (the calls batch..NULL, ngroups of them) and set each call's rc.
 * When the batch does not fit in the map, one large call must not fail the small ones
 * riding with it: each call is then retried in its own transaction.
 */
static void
queue_commit_batch(struct queue *q, struct queue_waiter *batch, size_t ngroups, uint64_t *commits,
                   uint64_t *events)
{
    size_t nev = 0;
    int rc;

    rc = queue_write_groups(q, batch, NULL, &nev);
    if (rc == 0 || ngroups == 1 || (rc != MDB_MAP_FULL && rc != MDB_TXN_FULL)) {
        int err = queue_append_err(q, rc);

        for (struct queue_waiter *w = batch; w != NULL; w = w->next) {
            w->rc = err;
        }
        if (rc == 0) {
            *commits += 1;
            *events += nev;
        }
        if (err == DP_ERR_FULL) {
            /* Expired keys may be what fills the map; the aborted append could not prune. */
            queue_keys_prune_txn(q, QUEUE_PRUNE_ON_FULL);
        }
        return;
    }
    for (struct queue_waiter *w = batch; w != NULL; w = w->next) {
        rc = queue_write_groups(q, w, w->next, &nev);
        w->rc = queue_append_err(q, rc);
        if (rc == 0) {
            *commits += 1;
            *events += nev;
        }
    }
}

/*
 * The futex calls behind the wake words. Spurious or interrupted wake-ups are fine: every
 * waiter re-reads its word in a loop.
 */
static void
queue_futex_wait(_Atomic uint32_t *word, uint32_t seen)
{
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
}

static void
queue_futex_wake(_Atomic uint32_t *word, int n)
{
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

/*
 * A caller of the batch being woken leaves. The last one to leave ends the batch: the
 * committer role goes to the oldest call queued meanwhile (by offering it on that batch's
 * word and waking one of its callers), or is dropped. Nobody touches q after leaving.
 */
static void
queue_batch_leave(struct queue *q)
{
    uint32_t g;

    if (atomic_fetch_sub(&q->exit_left, 1) != 1) {
        return;
    }
    pthread_mutex_lock(&q->mu);
    q->inflight -= q->exit_groups;
    if (q->head != NULL) {
        g = q->head->gen;
        atomic_store(&q->word[g & 1], g << 2 | QUEUE_B_LEAD);
        queue_futex_wake(&q->word[g & 1], 1);
    } else {
        q->leading = false;
    }
    if (q->closing && q->inflight == 0) {
        pthread_cond_signal(&q->idle_cv);
    }
    pthread_mutex_unlock(&q->mu);
}

/*
 * The committer's turn: take every pending call (the committer's own among them), commit
 * them in one transaction, publish each caller's result and wake the batch.
 *
 * Why the role is kept until every caller of the batch has left, rather than passed on
 * right after the commit: callers woken early queue their next append meanwhile and ride
 * in the next transaction together. Passing the role on at once would let the first of
 * them commit alone while all the others pile up behind that commit, so transactions
 * would alternate between one event and all the rest.
 *
 * Why one futex wake per batch rather than a condition variable per caller: in this
 * design the gap between two commits is the time it takes to wake the batch, and waking
 * 64 threads one by one costs about 5 us each (a futex call and an inter-processor
 * interrupt per thread, plus a mutex hand-back per condition variable), 300 us or more,
 * comparable with the fsync itself. One FUTEX_WAKE on the batch's own word wakes exactly
 * the callers whose events were in this commit, in one system call; nobody else wakes.
 * Measured with 64 threads: about 150 us between commits instead of 320.
 */
static void
queue_lead(struct queue *q)
{
    struct queue_waiter *batch;
    size_t ngroups;
    uint64_t commits = 0;
    uint64_t events = 0;
    uint32_t g;

    pthread_mutex_lock(&q->mu);
    batch = q->head;
    ngroups = q->pending;
    q->head = NULL;
    q->tail = NULL;
    q->pending = 0;
    g = q->gen++;
    pthread_mutex_unlock(&q->mu);
    assert(batch != NULL && ngroups > 0);

    queue_commit_batch(q, batch, ngroups, &commits, &events);
    atomic_fetch_add(&q->commits, commits);
    atomic_fetch_add(&q->committed_events, events);

    /* Every rc is written; the store publishes them (seq_cst: release to the loads). */
    q->exit_groups = ngroups;
    atomic_store(&q->exit_left, ngroups);
    atomic_store(&q->word[g & 1], g << 2 | QUEUE_B_DONE);
    if (ngroups > 1) {
        queue_futex_wake(&q->word[g & 1], INT_MAX);
    }
    queue_batch_leave(q);
}

/*
 * Wait until w's batch is done (returns false) or the committer role is offered to the
 * batch and w took it (returns true).
 */
static bool
queue_wait_batch(struct queue *q, const struct queue_waiter *w)
{
    _Atomic uint32_t *word = &q->word[w->gen & 1];
    uint32_t v;

    for (;;) {
        v = atomic_load(word);
        if (v == (w->gen << 2 | QUEUE_B_DONE)) {
            return false;
        }
        if (v == (w->gen << 2 | QUEUE_B_LEAD)) {
            if (atomic_compare_exchange_strong(word, &v, w->gen << 2 | QUEUE_B_TAKEN)) {
                return true;
            }
            continue;
        }
        queue_futex_wait(word, v);
    }
}

int
queue_append(struct queue *q, struct queue_event *evs, size_t n)
{
    return queue_append_filing(q, evs, n, NULL, NULL);
}

int
queue_append_filing(struct queue *q, struct queue_event *evs, size_t n, queue_conflict_fn *fn,
                    void *arg)
{
    struct queue_waiter w;
    bool lead = false;
    int rc;

    rc = queue_check_events(q, evs, n);
    if (rc != 0) {
        return rc;
    }
    memset(&w, 0, sizeof(w));
    w.evs = evs;
    w.n = n;
    w.file = fn;
    w.file_arg = arg;

    pthread_mutex_lock(&q->mu);
    if (q->closing) {
        pthread_mutex_unlock(&q->mu);
        return DP_ERR_CLOSED;
    }
    if (q->tail != NULL) {
        q->tail->next = &w;
    } else {
        q->head = &w;
    }
    q->tail = &w;
    q->pending++;
    q->inflight++;
    w.gen = q->gen;
    if (!q->leading) {
        q->leading = true;
        lead = true;
    }
    pthread_mutex_unlock(&q->mu);

    if (lead || queue_wait_batch(q, &w)) {
        queue_lead(q);
        return w.rc; /* w is on this thread's stack: still valid after leaving */
    }
    rc = w.rc;
    queue_batch_leave(q);
    return rc;
}

void
queue_commit_counts(struct queue *q, uint64_t *commits, uint64_t *events)
{
    if (commits != NULL) {
        *commits = atomic_load(&q->commits);
    }
    if (events != NULL) {
        *events = atomic_load(&q->committed_events);
    }
}

/* ---- test seam ---- */

size_t
queue_test_pending(struct queue *q)
{
    size_t n;

    pthread_mutex_lock(&q->mu);
    n = q->pending;
    pthread_mutex_unlock(&q->mu);
    return n;
}
