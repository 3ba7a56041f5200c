/*
 * load.c - one attempt to load a built batch (batch.c) in one transaction that also records it
 * in loader_batches: a savepoint and a COPY per group of rows, halving to isolate bad rows into
 * dead_letter while the rest still loads, then the dead_letter rows and COMMIT. A failure that
 * is not the rows' fault is never turned into a dead letter: the attempt fails as a whole.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etc/decl.h"
#include "etc/err.h"
#include "etc/log.h"
#include "etc/plant.h"
#include "loader/internal.h"

#define LDR_DEAD_COLUMNS                                                                           \
    "(queue_id, event_type, stage, error, raw, received_at, idempotency_key, event_id, source)"
#define LDR_STAGE_SUFFIX "_stage"
#define LDR_KEYED_NAME_BUF 96 /* pg_temp."<derived name>", bytes with NUL */
#define LDR_BATCH_DAYS_MAX 16 /* days of a group asked for at once (batch_part_days) */

/* The code point of the valid UTF-8 character s of len bytes. */
static uint32_t
batch_code_point(const unsigned char *s, size_t len)
{
    static const unsigned char lead_mask[5] = {0, 0x7f, 0x1f, 0x0f, 0x07};
    uint32_t cp = s[0] & lead_mask[len];

    for (size_t i = 1; i < len; i++) {
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    return cp;
}

int
ldr_dead_reduce(struct ev_buf *dst, const char *src, size_t n)
{
    static const char note[] = " [reduced to ASCII: the database refused the text]";
    const unsigned char *s = (const unsigned char *)src;
    int field = 0; /* 0-based column of the row; 3 is the error */
    char esc[16];
    int rc = 0;

    dst->len = 0;
    for (size_t i = 0; i < n && rc == 0;) {
        size_t len = s[i] < 0x80 ? 1 : ev_utf8_len(s + i, n - i);

        if (s[i] == '\t' && field == 3) {
            rc = ev_buf_put(dst, note, sizeof(note) - 1);
        }
        if (rc != 0) {
            break;
        }
        if (len == 0) {
            rc = ev_buf_put(dst, "?", 1); /* not written by batch.c, which writes UTF-8 */
            len = 1;
        } else if (len == 1) {
            field = s[i] == '\n' ? 0 : field + (s[i] == '\t');
            rc = ev_buf_put(dst, src + i, 1);
        } else {
            uint32_t cp = batch_code_point(s + i, len);

            /* Two backslashes: COPY text makes them the one of "\u00e9". */
            snprintf(esc, sizeof(esc), cp > 0xffff ? "\\\\U%08x" : "\\\\u%04x", (unsigned)cp);
            rc = ev_buf_put(dst, esc, strlen(esc));
        }
        i += len;
    }
    return rc;
}
/* A test's fault hook at point p, or 0. */
static int
batch_fault(const struct ldr_fault_ops *fault, enum ldr_fault_point p, const struct ldr_batch *b)
{
    if (fault == NULL || fault->hook == NULL) {
        return 0;
    }
    return fault->hook(fault->arg, p, b->first, b->last);
}

/* Outside the rows' COPY a data error is still not the rows' fault: retry it. */
static int
batch_not_data(int rc)
{
    return rc == DP_ERR_DATA ? DP_ERR_RETRY : rc;
}

/* Row i of g is bad on its own: dead_letter it, from the held copy, with PostgreSQL's text. */
static int
batch_poison(struct ldr_batch *b, struct ldr_group *g, size_t i, struct ldr_pg *pg)
{
    char error[LDR_ERR_MAX + 32];
    struct queue_event ev;
    int rc;

    ldr_batch_event(b, g->held[i], &ev);
    snprintf(error, sizeof(error), "%s (SQLSTATE %s)", ldr_pg_error(pg), ldr_pg_sqlstate(pg));
    dp_warn("row refused by postgresql: filed into dead_letter", "type=%s seq=%llu error=%s",
            g->type->name, (unsigned long long)ev.seq, error);
    rc = ldr_batch_dead_event(b, &ev, "load", error, strlen(error));
    if (rc == 0) {
        g->bad++;
        b->dead_load++;
    }
    return rc;
}

/*
 * The temp table keyed rows of t are COPYed into. In pg_temp, which PostgreSQL searches
 * before the schema, so its name must never be a type's: a derived name (etc/decl.h), which
 * no type can take and which is never longer than PostgreSQL keeps.
 */
static void
keyed_table(const struct ev_type *t, char out[LDR_KEYED_NAME_BUF])
{
    char name[DP_TYPE_NAME_MAX + 1];

    dp_pg_derived_name(name, DP_PG_KEYED_TEMP, t->name);
    snprintf(out, LDR_KEYED_NAME_BUF, "pg_temp.\"%s\"", name);
    if (DP_PLANTED("keyed_temp_name")) {
        /* Planted (etc/plant.h): the old "<type>_keyed", unqualified, truncated at 63. */
        snprintf(out, LDR_KEYED_NAME_BUF, "\"%.57s_keyed\"", t->name);
    }
}

/* ldr_pg_rows callback of the left-out query: the keyed row's id, the holder's, no digest,
 * same digest. */
static int
keyed_left_row(void *arg, int ncols, const char *const *vals)
{
    struct ldr_keyed_lefts *c = arg;
    struct ldr_keyed_left *k;

    if (ncols != 4 || vals[0] == NULL || vals[1] == NULL || vals[2] == NULL || vals[3] == NULL) {
        return DP_ERR_IO;
    }
    if (c->n == c->cap) {
        size_t cap = c->cap != 0 ? c->cap * 2 : 16;
        struct ldr_keyed_left *v = realloc(c->v, cap * sizeof(*v));

        if (v == NULL) {
            return DP_ERR_NOMEM;
        }
        c->v = v;
        c->cap = cap;
    }
    k = &c->v[c->n];
    if (ev_uuid_parse(vals[0], k->id) != 0) {
        return DP_ERR_IO;
    }
    snprintf(k->holder, sizeof(k->holder), "%s", vals[1]);
    k->no_digest = vals[2][0] == 't';
    k->repeat = vals[3][0] == 't';
    c->n++;
    return 0;
}

/*
 * The statements of keyed_insert for t's table with its unique key index: the INSERT that
 * leaves out keys already there, and the query of the rows left out for a key held by another
 * event with other bytes (repeats: with any bytes). *insert and *conflicts are malloc'd.
 */
static int
keyed_sql(const struct ev_type *t, const char *keyed, bool repeats, char **insert, char **conflicts)
{
    const char *cols = t->copy_columns;
    int list_len = (int)strlen(cols) - 2;

    /* copy_columns is "(a, b, ...)": the same list without its parentheses is selected. */
    if (asprintf(insert,
                 "INSERT INTO %s %s SELECT %.*s FROM %s "
                 "ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL "
                 "DO NOTHING",
                 t->table, cols, list_len, cols + 1, keyed) < 0) {
        *insert = NULL;
        return DP_ERR_NOMEM;
    }
    /* Run in the INSERT's transaction: the table holds exactly what the INSERT saw and did. */
    if (asprintf(conflicts,
                 "SELECT k.id, t.id, t.idempotency_digest IS NULL, "
                 "t.idempotency_digest IS NOT DISTINCT FROM k.idempotency_digest "
                 "FROM %s k JOIN %s t ON t.idempotency_key = k.idempotency_key "
                 "WHERE t.id <> k.id%s%s",
                 keyed, t->table,
                 repeats ? "" : " AND t.idempotency_digest IS DISTINCT FROM k.idempotency_digest",
                 /* Planted (etc/plant.h): every repeat skipped, other bytes or not. */
                 !repeats && DP_PLANTED("conflict_skipped") ? " AND false" : "") < 0) {
        *conflicts = NULL;
        return DP_ERR_NOMEM;
    }
    return 0;
}

/* copy_columns "(a, b, ...)" as "k.a, k.b, ...", the columns of the keyed table aliased k. */
static int
keyed_qualified(const char *cols, struct ev_buf *out)
{
    const char *p = cols + 1;
    int rc = 0;

    while (rc == 0 && *p != '\0' && *p != ')') {
        size_t n = strcspn(p, ",)");

        rc = ev_buf_put_strs(out, out->len > 0 ? ", k." : "k.", NULL);
        if (rc == 0) {
            rc = ev_buf_put(out, p, n);
        }
        p += n;
        p += *p == ',' ? strspn(p, ", ") : 0;
    }
    return rc;
}

/*
 * The same for a partitioned table, which has no unique index over its keys (it would have
 * to hold received_at, so one key could be in two partitions): first the keys go into the
 * table's key table (part.c), unpartitioned and unique by key, ON CONFLICT DO NOTHING (*keys);
 * then the rows whose own id the key table now holds for their key, and the rows without a
 * key, go into the table (*insert). A key twice in these rows: the first inserted wins, as
 * with the index. Plain statements, no data-modifying CTE, so that a distributed PostgreSQL
 * (docs/scaling.md, Citus) plans them as it plans any INSERT ... SELECT.
 */
static int
keyed_sql_parted(const struct ev_type *t, const char *keyed, bool repeats, char **keys_sql,
                 char **insert, char **conflicts)
{
    const char *cols = t->copy_columns;
    struct ev_buf q = {0};
    char keys[LDR_PART_NAME_BUF];
    int rc = DP_ERR_NOMEM;

    ldr_part_key_table(t, keys);
    if (keyed_qualified(cols, &q) != 0) {
        goto out;
    }
    if (asprintf(keys_sql,
                 "INSERT INTO %s (idempotency_key, idempotency_digest, id, "
                 "received_at) SELECT idempotency_key, idempotency_digest, id::text, "
                 "received_at FROM %s WHERE idempotency_key IS NOT NULL "
                 "ON CONFLICT (idempotency_key) DO NOTHING",
                 keys, keyed) < 0) {
        *keys_sql = NULL;
        goto out;
    }
    if (asprintf(insert,
                 "INSERT INTO %s %s SELECT %.*s FROM %s k LEFT JOIN %s h "
                 "ON h.idempotency_key = k.idempotency_key "
                 "WHERE k.idempotency_key IS NULL OR h.id = k.id::text",
                 t->table, cols, (int)q.len, q.data, keyed, keys) < 0) {
        *insert = NULL;
        goto out;
    }
    if (asprintf(conflicts,
                 "SELECT k.id, t.id, t.idempotency_digest IS NULL, "
                 "t.idempotency_digest IS NOT DISTINCT FROM k.idempotency_digest "
                 "FROM %s k JOIN %s t ON t.idempotency_key = k.idempotency_key "
                 "WHERE t.id <> k.id::text%s",
                 keyed, keys,
                 repeats ? "" : " AND t.idempotency_digest IS DISTINCT FROM k.idempotency_digest") <
        0) {
        *conflicts = NULL;
        goto out;
    }
    rc = 0;
out:
    ev_buf_free(&q);
    return rc;
}

/*
 * Move the keyed rows COPYed into t's keyed table into t's table, leaving out a key already
 * there (also one twice in these rows: the first inserted wins), list the rows left out for a
 * key held by another event (all of them with repeats, else those with other bytes) in *c, and
 * empty the keyed table.
 */
static int
keyed_insert(struct ldr_pg *pg, const struct ev_type *t, bool repeats, uint64_t *inserted,
             struct ldr_keyed_lefts *c)
{
    char keyed[LDR_KEYED_NAME_BUF];
    char *keys = NULL;
    char *insert = NULL;
    char *conflicts = NULL;
    char *empty = NULL;
    int rc = DP_ERR_NOMEM;

    keyed_table(t, keyed);
    rc = ldr_pg_parted(pg, t) ? keyed_sql_parted(t, keyed, repeats, &keys, &insert, &conflicts)
                              : keyed_sql(t, keyed, repeats, &insert, &conflicts);
    if (rc != 0) {
        goto out;
    }
    rc = DP_ERR_NOMEM;
    if (asprintf(&empty, "DELETE FROM %s", keyed) < 0) {
        empty = NULL;
        goto out;
    }
    rc = keys != NULL ? ldr_pg_exec(pg, keys) : 0;
    if (rc == 0) {
        rc = ldr_pg_exec_rows(pg, insert, inserted);
    }
    if (rc == 0) {
        rc = batch_not_data(ldr_pg_rows(pg, conflicts, 0, NULL, keyed_left_row, c));
    }
    if (rc == 0) {
        rc = batch_not_data(ldr_pg_exec(pg, empty));
    }
out:
    free(empty);
    free(conflicts);
    free(insert);
    free(keys);
    return rc;
}

int
ldr_keyed_load(struct ldr_pg *pg, const struct ev_type *t, const char *data, size_t len,
               bool binary, bool repeats, uint64_t *inserted, struct ldr_keyed_lefts *left)
{
    char keyed[LDR_KEYED_NAME_BUF];
    char sql[256];
    int rc;

    *inserted = 0;
    keyed_table(t, keyed);
    /* The table's own columns, defaults and NOT NULLs: a bad row fails at its COPY. */
    snprintf(sql, sizeof(sql),
             "CREATE TEMP TABLE IF NOT EXISTS %s (LIKE %s INCLUDING "
             "DEFAULTS) ON COMMIT DROP",
             keyed, t->table);
    rc = batch_not_data(ldr_pg_exec(pg, sql));
    if (rc == 0) {
        rc = ldr_pg_copy(pg, keyed, t->copy_columns, data, len, binary);
    }
    if (rc == 0) {
        rc = keyed_insert(pg, t, repeats, inserted, left);
    }
    return rc;
}

void
ldr_keyed_text(char *out, size_t len, const char *key, size_t key_len,
               const struct ldr_keyed_left *k)
{
    char id[EV_UUID_TEXT];

    ev_uuid_format(k->id, id);
    snprintf(out, len, "%s: \"%.*s\" was already loaded for event %s %s (this event: %s)",
             EV_KEY_FIELD, (int)key_len, key, k->holder,
             k->no_digest ? "before digests were kept: cannot tell a repeat from a conflict"
             : k->repeat  ? "with the same content"
                          : "with different content",
             id);
}

/*
 * File the conflicts c of rows lo..hi-1 of g into dead_letter (stage load), each with a text
 * naming its key, the event that holds it and its own id, as the server's 409 does.
 */
static int
batch_file_conflicts(struct ldr_batch *b, struct ldr_group *g, size_t lo, size_t hi,
                     const struct ldr_keyed_lefts *c)
{
    char error[LDR_KEYED_TEXT_MAX];
    struct queue_event ev;
    int rc = 0;

    for (size_t j = 0; rc == 0 && j < c->n; j++) {
        size_t i = lo;

        for (; i < hi; i++) {
            ldr_batch_event(b, g->held[i], &ev);
            if (memcmp(ev.uuid, c->v[j].id, sizeof(ev.uuid)) == 0) {
                break;
            }
        }
        if (i == hi) {
            rc = DP_ERR_IO; /* a row PostgreSQL names that these rows lack */
            break;
        }
        ldr_keyed_text(error, sizeof(error), ev.key, ev.key_len, &c->v[j]);
        dp_warn("idempotency key conflict at load: filed into dead_letter",
                "type=%s seq=%llu "
                "error=%s",
                g->type->name, (unsigned long long)ev.seq, error);
        rc = ldr_batch_dead_event(b, &ev, "load", error, strlen(error));
        if (rc == 0) {
            g->bad++;
            g->conflicts++;
            b->dead_load++;
        }
    }
    return rc;
}

/*
 * Keyed rows lo..hi-1 of g (data, len bytes), inside batch_try's savepoint ldr_rows.
 * First straight into g's table by the plain COPY: a repeat reaching PostgreSQL is rare (the
 * server answers repeats within queue.dedup_window_s). Only when PostgreSQL refuses that (a
 * key already in the table, twice in these rows, or a bad row) does it roll back to ldr_rows
 * and COPY them into the keyed temp table for INSERT ... ON CONFLICT DO NOTHING, where a bad
 * row fails again and is isolated as ever, and a key held with other bytes is a conflict.
 */
static int
batch_copy_keyed(struct ldr_batch *b, struct ldr_pg *pg, struct ldr_group *g, size_t lo, size_t hi,
                 const char *data, size_t len)
{
    struct ldr_keyed_lefts c = {0};
    uint64_t inserted = 0;
    int rc;

    /* A partitioned table has no unique index to refuse a key it holds: always through the
     * keyed table and the key table. */
    if (!ldr_pg_parted(pg, g->type)) {
        rc = ldr_pg_copy(pg, g->type->table, g->type->copy_columns, data, len, g->rows.binary);
        if (rc != DP_ERR_DATA) {
            return rc;
        }
        if (ldr_pg_exec(pg, "ROLLBACK TO SAVEPOINT ldr_rows") != 0) {
            return DP_ERR_RETRY;
        }
    }
    rc = ldr_keyed_load(pg, g->type, data, len, g->rows.binary, false, &inserted, &c);
    if (rc == 0 && inserted + c.n <= hi - lo) {
        g->skipped += hi - lo - (size_t)inserted - c.n;
    }
    if (rc == 0) {
        rc = batch_file_conflicts(b, g, lo, hi, &c);
    }
    free(c.v);
    return rc;
}

/* One try at rows lo..hi-1 of g, under a savepoint so that a bad row costs only this try. */
static int
batch_try(struct ldr_batch *b, struct ldr_pg *pg, struct ldr_group *g, size_t lo, size_t hi,
          const struct ldr_fault_ops *fault)
{
    char target[128];
    size_t start = lo == 0 ? 0 : g->ends[lo - 1];
    size_t len = g->ends[hi - 1] - start;
    size_t skipped = g->skipped;
    size_t bad = g->bad;
    size_t conflicts = g->conflicts;
    size_t dead_len = b->dead.len;
    size_t dead_load = b->dead_load;
    bool upsert = g->type->load == EV_LOAD_UPSERT;
    int rc;

    rc = batch_not_data(ldr_pg_exec(pg, "SAVEPOINT ldr_rows"));
    if (rc == 0) {
        rc = batch_fault(fault, LDR_FAULT_COPY, b);
    }
    if (rc != 0) {
        return rc;
    }
    if (g->keyed) {
        rc = batch_copy_keyed(b, pg, g, lo, hi, g->rows.data + start, len);
    } else {
        /* The stage is a temp table (stage_ddl): named in pg_temp, never the schema's. */
        snprintf(target, sizeof(target), "%s%s%s", upsert ? "pg_temp." : "", g->type->table,
                 upsert ? LDR_STAGE_SUFFIX : "");
        rc = ldr_pg_copy(pg, target, g->type->copy_columns, g->rows.data + start, len,
                         g->rows.binary);
        if (rc == 0 && upsert) {
            rc = ldr_pg_exec(pg, g->type->upsert_sql);
        }
    }
    if (rc == 0) {
        rc = batch_not_data(ldr_pg_exec(pg, "RELEASE SAVEPOINT ldr_rows"));
    }
    if (rc == 0) {
        return 0;
    }
    /* Nothing of a failed try counts, the conflicts it filed included. */
    g->skipped = skipped;
    g->bad = bad;
    g->conflicts = conflicts;
    b->dead.len = dead_len;
    b->dead_load = dead_load;
    if (rc == DP_ERR_DATA &&
        ldr_pg_exec(pg, "ROLLBACK TO SAVEPOINT ldr_rows; RELEASE SAVEPOINT ldr_rows") != 0) {
        rc = DP_ERR_RETRY;
    }
    return rc;
}

/*
 * Load rows lo..hi-1 of g; when PostgreSQL refuses them for their data, halve until each
 * bad row is alone, dead-letter it and load the rest.
 */
static int
batch_load_rows(struct ldr_batch *b, struct ldr_pg *pg, struct ldr_group *g, size_t lo, size_t hi,
                const struct ldr_fault_ops *fault)
{
    size_t mid;
    int rc;

    rc = batch_try(b, pg, g, lo, hi, fault);
    if (rc != DP_ERR_DATA) {
        return rc;
    }
    if (hi - lo == 1) {
        return batch_poison(b, g, lo, pg);
    }
    dp_debug("batch refused for its data: halving", "type=%s rows=%zu error=%s", g->type->name,
             hi - lo, ldr_pg_error(pg));
    mid = lo + (hi - lo) / 2;
    rc = batch_load_rows(b, pg, g, lo, mid, fault);
    if (rc == 0) {
        rc = batch_load_rows(b, pg, g, mid, hi, fault);
    }
    return rc;
}

static int
batch_load_group(struct ldr_batch *b, struct ldr_pg *pg, struct ldr_group *g,
                 const struct ldr_fault_ops *fault)
{
    int rc = 0;

    g->bad = 0;
    g->skipped = 0;
    g->conflicts = 0;
    if (g->n == 0) {
        return 0;
    }
    if (g->type->load == EV_LOAD_UPSERT && g->type->stage_ddl != NULL) {
        rc = batch_not_data(ldr_pg_exec(pg, g->type->stage_ddl));
    }
    if (rc == 0) {
        rc = batch_load_rows(b, pg, g, 0, g->n, fault);
    }
    return rc;
}

/*
 * COPY the dead_letter rows. Should PostgreSQL refuse them for their data (a database whose
 * encoding cannot hold the error text), they are reduced to ASCII and copied again: a dead
 * letter that cannot be stored as it is must not hold back the batch and the queue behind it.
 */
static int
batch_load_dead(struct ldr_batch *b, struct ldr_pg *pg)
{
    int rc;

    rc = batch_not_data(ldr_pg_exec(pg, "SAVEPOINT ldr_dead"));
    if (rc == 0) {
        rc = ldr_pg_copy(pg, "dead_letter", LDR_DEAD_COLUMNS, b->dead.data, b->dead.len, false);
    }
    if (rc != DP_ERR_DATA) {
        return rc == 0 ? batch_not_data(ldr_pg_exec(pg, "RELEASE SAVEPOINT ldr_dead")) : rc;
    }
    dp_warn("dead letters refused by postgresql: stored reduced to ASCII",
            "rows=%zu error=%s "
            "sqlstate=%s",
            ldr_batch_dead(b), ldr_pg_error(pg), ldr_pg_sqlstate(pg));
    rc = batch_not_data(ldr_pg_exec(pg, "ROLLBACK TO SAVEPOINT ldr_dead"));
    if (rc == 0) {
        rc = ldr_dead_reduce(&b->dead_ascii, b->dead.data, b->dead.len);
    }
    if (rc == 0) {
        rc = batch_not_data(ldr_pg_copy(pg, "dead_letter", LDR_DEAD_COLUMNS, b->dead_ascii.data,
                                        b->dead_ascii.len, false));
    }
    if (rc == 0) {
        rc = batch_not_data(ldr_pg_exec(pg, "RELEASE SAVEPOINT ldr_dead"));
    }
    return rc;
}

/* Record in the batch's loader_batches row what loading it did, if any row did not load. */
static int
batch_record_outcome(struct ldr_batch *b, struct ldr_pg *pg)
{
    char *outcome = NULL;
    int rc;

    rc = ldr_batch_outcome(b, &outcome);
    if (rc == 0 && outcome[0] != '\0') {
        rc = batch_not_data(ldr_pg_batch_outcome(pg, b->queue_id, b->first, outcome));
    }
    free(outcome);
    return rc;
}

/*
 * Before the batch's transaction: the partitions of the days its rows hold, for each type
 * whose table is partitioned (ldr_part_days). In a transaction of their own, as creating a
 * partition locks its parent: inside the batch's, that lock would block every reader of the
 * table until the batch commits.
 */
static int
batch_part_days(struct ldr_batch *b, struct ldr_pg *pg)
{
    int64_t days[LDR_BATCH_DAYS_MAX];
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < b->n_groups; i++) {
        const struct ldr_group *g = &b->groups[i];
        size_t n = 0;

        if (g->n == 0 || !ldr_pg_parted(pg, g->type)) {
            continue;
        }
        for (size_t r = 0; rc == 0 && r < g->n; r++) {
            int64_t day = b->held[g->held[r]].received_us / 1000000 / 86400;
            size_t j = 0;

            while (j < n && days[j] != day) {
                j++;
            }
            if (j == n && n == LDR_BATCH_DAYS_MAX) {
                rc = ldr_part_days(pg, g->type, days, n, dp_now_us());
                n = 0;
            }
            if (j == n) {
                days[n++] = day;
            }
        }
        if (rc == 0) {
            rc = ldr_part_days(pg, g->type, days, n, dp_now_us());
        }
    }
    return rc;
}

int
ldr_batch_load(struct ldr_batch *b, struct ldr_pg *pg, const struct ldr_fault_ops *fault,
               struct ldr_load_result *res)
{
    char *outcome = NULL;
    int rc;

    res->commit_sent = false;
    res->committed_last = 0;
    b->dead.len = b->dead_encoded;
    b->dead_load = 0;
    rc = batch_part_days(b, pg);
    if (rc != 0) {
        return rc;
    }
    rc = ldr_pg_batch_begin(pg, b->queue_id, b->first, b->last, b->events, &res->committed_last,
                            &outcome);
    if (rc == 0 && res->committed_last != 0) {
        /* An earlier attempt committed: its figures, not the last attempt's, are the batch's. */
        ldr_batch_settle(b, outcome);
    }
    free(outcome);
    if (rc != 0 || res->committed_last != 0) {
        return rc;
    }
    for (size_t i = 0; rc == 0 && i < b->n_groups; i++) {
        rc = batch_load_group(b, pg, &b->groups[i], fault);
    }
    if (rc == 0 && b->dead.len > 0) {
        rc = batch_fault(fault, LDR_FAULT_COPY, b);
        if (rc == 0) {
            rc = batch_load_dead(b, pg);
        }
    }
    if (rc == 0) {
        rc = batch_record_outcome(b, pg);
    }
    if (rc == 0 && b->watermark_us > 0) {
        rc = batch_not_data(ldr_pg_watermark(pg, b->queue_id, b->watermark_us));
    }
    if (rc == 0) {
        rc = batch_fault(fault, LDR_FAULT_COMMIT, b);
    }
    if (rc != 0) {
        return rc;
    }
    res->commit_sent = true;
    rc = batch_not_data(ldr_pg_exec(pg, "COMMIT"));
    if (rc == 0) {
        rc = batch_fault(fault, LDR_FAULT_COMMITTED, b);
    }
    return rc;
}
