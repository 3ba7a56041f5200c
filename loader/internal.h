/*
 * internal.h - what the files of loader/ share and nothing else: a batch in memory and the
 * one-transaction load of it. Not a public header: main.c and the tests use loader.h.
 */
#ifndef DP_LOADER_INTERNAL_H
#define DP_LOADER_INTERNAL_H

#include "events/events.h"
#include "loader/loader.h"

#define LDR_META_NAME_MAX 96            /* "loader.loaded.<type>" with NUL */

/* The rows of one event type in a batch, in queue order. */
struct ldr_group {
    const struct ev_type *type;
    struct ev_buf rows;                 /* COPY text rows, one per event */
    size_t *ends;                       /* ends[i]: offset in rows just past row i */
    uint64_t *seqs;                     /* seqs[i]: queue sequence number of row i */
    size_t n;                           /* rows */
    size_t cap;                         /* entries allocated in ends and seqs */
    size_t bad;                         /* rows the last attempt isolated into dead_letter */
    char meta_name[LDR_META_NAME_MAX];  /* loader.loaded.<type> */
};

/*
 * A batch: the events first..last of the queue, encoded. Memory is kept between batches
 * (ldr_batch_build resets lengths only) and bounded by batch_rows and LDR_BATCH_MAX_BYTES.
 */
struct ldr_batch {
    struct queue *q;                    /* borrowed: poison rows are re-read from it */
    const char *queue_id;               /* borrowed */
    uint64_t first;                     /* sequence numbers */
    uint64_t last;
    size_t events;                      /* events in the range */
    int64_t now_us;                     /* wall clock at encode time (processed_at) */
    struct ldr_group *groups;           /* EV_REGISTRY_MAX entries, n_groups in use */
    size_t n_groups;                    /* one per registry entry, as of the last build */
    struct ev_buf dead;                 /* dead_letter COPY rows */
    size_t dead_encoded;                /* dead.len after encoding; the load's rows follow */
    size_t dead_ingest;                 /* rows rejected at ingest */
    size_t dead_encode;                 /* rows the encoder refused or of unknown type */
    size_t dead_load;                   /* rows PostgreSQL refused (last attempt) */
};

/* What one load attempt did. */
struct ldr_load_result {
    bool commit_sent;                   /* COMMIT went out: on failure the outcome is unknown */
    uint64_t committed_last;            /* 0, or last_seq of an earlier commit of this batch */
};

/* ldr_batch_init - zero b and allocate its groups. Returns 0 or DP_ERR_NOMEM. */
int ldr_batch_init(struct ldr_batch *b, struct queue *q, const char *queue_id);

/* ldr_batch_free - release b's memory. NULL-safe. */
void ldr_batch_free(struct ldr_batch *b);

/*
 * ldr_batch_build - read the events first..last (n of them, as a claim found) from the queue
 * and encode them: rows per type, dead_letter rows for events rejected at ingest, of an
 * unknown type or refused by their encoder.
 * Returns 0, DP_ERR_IO (queue error, or the range changed under us), DP_ERR_NOMEM.
 */
int ldr_batch_build(struct ldr_batch *b, uint64_t first, uint64_t last, size_t n);

/*
 * ldr_batch_load - one attempt to load b in one transaction on pg: loader_batches row,
 * COPY per type (halving on bad rows until they are isolated into dead_letter), the
 * dead_letter rows, COMMIT.
 *   fault: NULL or a test's hook.
 *   res: receives what happened (see struct ldr_load_result).
 * Returns 0 (committed now, or earlier: res->committed_last), DP_ERR_RETRY (rolled back, or
 * unknown if res->commit_sent: the caller must close pg either way), DP_ERR_IO (the queue
 * failed while re-reading a bad row), DP_ERR_NOMEM.
 */
int ldr_batch_load(struct ldr_batch *b, struct ldr_pg *pg, const struct ldr_fault_ops *fault,
                   struct ldr_load_result *res);

/*
 * ldr_batch_meta - the metadata changes for deleting b: per-type loaded counters, dead
 * letters, batches, last success at now_us. ops must hold EV_REGISTRY_MAX + 5 entries.
 * Returns how many were written.
 */
size_t ldr_batch_meta(const struct ldr_batch *b, int64_t now_us, struct queue_meta_op *ops);

/* ldr_batch_loaded - rows of b that went into their tables in the last attempt. */
size_t ldr_batch_loaded(const struct ldr_batch *b);

/* ldr_batch_dead - rows of b filed into dead_letter in the last attempt. */
size_t ldr_batch_dead(const struct ldr_batch *b);

/*
 * ldr_put_clean_text - append s (n bytes) as a COPY text value that is valid UTF-8 without
 * NUL: invalid bytes and NUL become "\xNN" (as text). Returns 0 or DP_ERR_NOMEM.
 */
int ldr_put_clean_text(struct ev_buf *b, const char *s, size_t n);

#endif
