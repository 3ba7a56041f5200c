/*
 * batch.c - one batch of queue events: encoded into COPY rows per type, then loaded in one
 * transaction that also records it in loader_batches. Bad rows are isolated by halving and
 * filed into dead_letter; the rest still loads. A failure that is not the rows' fault is
 * never turned into a dead letter: the attempt fails as a whole and is retried.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "etc/err.h"
#include "etc/log.h"
#include "loader/internal.h"

#define LDR_DEAD_COLUMNS \
    "(queue_id, event_type, stage, error, raw, received_at, idempotency_key, event_id, source)"
#define LDR_STAGE_SUFFIX "_stage"
#define LDR_KEYED_SUFFIX "_keyed"
#define LDR_KEYED_NAME_BUF 96         /* a quoted type name with a suffix, bytes with NUL */

/* One dead_letter row's fields (views; any may be unterminated). */
struct ldr_dead {
    const char *type;
    size_t type_len;                    /* 0: unknown, stored as NULL */
    const char *stage;                  /* "ingest" or "load" */
    const char *error;
    size_t error_len;
    const char *raw;
    size_t raw_len;
    int64_t received_us;
    const char *key;                    /* idempotency key; key_len 0: none, stored as NULL */
    size_t key_len;
    const uint8_t *uuid;                /* the event's id (16 bytes) */
    const char *source;                 /* API key name; source_len 0: none, stored as NULL */
    size_t source_len;
};

int
ldr_put_clean_text(struct ev_buf *b, const char *s, size_t n)
{
    size_t i = 0;
    size_t run = 0;                     /* start of the pending run of good bytes */
    char hex[8];
    int rc = 0;

    while (i < n && rc == 0) {
        /* NUL is valid UTF-8 but not allowed in a text value: it is escaped too. */
        size_t len = s[i] != '\0' ? ev_utf8_len((const unsigned char *)s + i, n - i) : 0;

        if (len > 0) {
            i += len;
            continue;
        }
        rc = ev_buf_put_copy_text(b, s + run, i - run);
        snprintf(hex, sizeof(hex), "\\x%02x", (unsigned int)(unsigned char)s[i]);
        if (rc == 0) {
            rc = ev_buf_put_copy_text(b, hex, 4);
        }
        run = ++i;
    }
    if (rc == 0) {
        rc = ev_buf_put_copy_text(b, s + run, n - run);
    }
    return rc;
}

/* Append one dead_letter row; on failure nothing is appended. */
static int
batch_dead_row(struct ldr_batch *b, const struct ldr_dead *d)
{
    size_t start = b->dead.len;
    size_t raw_len = d->raw_len < b->dead_raw_max ? d->raw_len : b->dead_raw_max;
    char note[96];
    int rc;

    rc = ldr_put_clean_text(&b->dead, b->queue_id, strlen(b->queue_id));
    if (rc == 0) {
        rc = ev_buf_put(&b->dead, "\t", 1);
    }
    if (rc == 0) {
        rc = d->type_len > 0 ? ldr_put_clean_text(&b->dead, d->type, d->type_len)
                             : ev_buf_put(&b->dead, "\\N", 2);
    }
    if (rc == 0) {
        rc = ev_buf_put(&b->dead, "\t", 1);
    }
    if (rc == 0) {
        rc = ev_buf_put(&b->dead, d->stage, strlen(d->stage));
    }
    if (rc == 0) {
        rc = ev_buf_put(&b->dead, "\t", 1);
    }
    if (rc == 0) {
        rc = ldr_put_clean_text(&b->dead, d->error, d->error_len);
    }
    if (rc == 0 && raw_len < d->raw_len) {
        snprintf(note, sizeof(note), " [raw truncated: first %zu of %zu bytes kept]", raw_len,
                 d->raw_len);
        rc = ev_buf_put_copy_text(&b->dead, note, strlen(note));
    }
    if (rc == 0) {
        rc = ev_buf_put(&b->dead, "\t", 1);
    }
    if (rc == 0) {
        rc = ev_buf_put_copy_bytea(&b->dead, d->raw, raw_len);
    }
    if (rc == 0) {
        rc = ev_buf_put(&b->dead, "\t", 1);
    }
    if (rc == 0) {
        rc = ev_buf_put_timestamp(&b->dead, d->received_us);
    }
    if (rc == 0) {
        rc = ev_buf_put(&b->dead, "\t", 1);
    }
    if (rc == 0) {
        rc = d->key_len > 0 ? ldr_put_clean_text(&b->dead, d->key, d->key_len)
                            : ev_buf_put(&b->dead, "\\N", 2);
    }
    if (rc == 0) {
        rc = ev_buf_put(&b->dead, "\t", 1);
    }
    if (rc == 0) {
        rc = ev_buf_put_uuid(&b->dead, d->uuid);
    }
    if (rc == 0) {
        rc = ev_buf_put(&b->dead, "\t", 1);
    }
    if (rc == 0) {
        rc = d->source_len > 0 ? ldr_put_clean_text(&b->dead, d->source, d->source_len)
                               : ev_buf_put(&b->dead, "\\N", 2);
    }
    if (rc == 0) {
        rc = ev_buf_put(&b->dead, "\n", 1);
    }
    if (rc != 0) {
        b->dead.len = start;
    }
    return rc;
}

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
    int field = 0;                      /* 0-based column of the row; 3 is the error */
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
            rc = ev_buf_put(dst, "?", 1);   /* not written by batch.c, which writes UTF-8 */
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

/* A group for each registry entry added since the last call. */
static void
batch_groups_sync(struct ldr_batch *b)
{
    size_t n = ev_registry_len;

    /* Two groups a type, plain rows at 2 * i and keyed rows at 2 * i + 1 (used only when
     * the type is keyed), so the groups of the types already known never move. */
    for (size_t i = b->n_groups / 2; i < n && i < EV_REGISTRY_MAX; i++) {
        for (size_t k = 0; k < 2; k++) {
            struct ldr_group *g = &b->groups[2 * i + k];

            g->type = ev_registry[i];
            g->keyed = k == 1;
            g->rows.binary = g->type->copy_binary;
            snprintf(g->meta_name, sizeof(g->meta_name), "%s%s",
                     QUEUE_META_LOADER_LOADED_PREFIX, ev_registry[i]->name);
            snprintf(g->dup_name, sizeof(g->dup_name), "%s%s",
                     QUEUE_META_LOADER_DUPLICATES_PREFIX, ev_registry[i]->name);
        }
        b->n_groups = 2 * i + 2;
    }
}

int
ldr_batch_init(struct ldr_batch *b, const char *queue_id)
{
    memset(b, 0, sizeof(*b));
    b->queue_id = queue_id;
    b->dead_raw_max = LDR_DEAD_RAW_MAX_BYTES;
    /* Room for every type the registry may ever hold: declared types come on SIGHUP. */
    b->groups = calloc(LDR_GROUPS_MAX, sizeof(*b->groups));
    if (b->groups == NULL) {
        return DP_ERR_NOMEM;
    }
    batch_groups_sync(b);
    return 0;
}

void
ldr_batch_free(struct ldr_batch *b)
{
    if (b == NULL) {
        return;
    }
    for (size_t i = 0; b->groups != NULL && i < b->n_groups; i++) {
        ev_buf_free(&b->groups[i].rows);
        free(b->groups[i].ends);
        free(b->groups[i].held);
    }
    free(b->groups);
    free(b->held);
    ev_buf_free(&b->raw);
    ev_buf_free(&b->dead);
    ev_buf_free(&b->dead_ascii);
    memset(b, 0, sizeof(*b));
}

/* Record that row n of g ends at g->rows.len and holds the batch's event `held`. */
static int
group_push(struct ldr_group *g, size_t held)
{
    if (g->n == g->cap) {
        size_t cap = g->cap != 0 ? g->cap * 2 : 1024;
        size_t *ends = realloc(g->ends, cap * sizeof(*ends));
        size_t *idx;

        if (ends == NULL) {
            return DP_ERR_NOMEM;
        }
        g->ends = ends;
        idx = realloc(g->held, cap * sizeof(*idx));
        if (idx == NULL) {
            return DP_ERR_NOMEM;
        }
        g->held = idx;
        g->cap = cap;
    }
    g->ends[g->n] = g->rows.len;
    g->held[g->n] = held;
    g->n++;
    return 0;
}

/* The group of type t's rows: its keyed group for a keyed row of a keyed type. */
static struct ldr_group *
batch_group(struct ldr_batch *b, const struct ev_type *t, bool keyed)
{
    for (size_t i = 0; i < b->n_groups; i += 2) {
        if (b->groups[i].type == t) {
            return &b->groups[keyed && t->keyed ? i + 1 : i];
        }
    }
    return NULL;
}

/* Encode held event i (ev) of a valid type; an encoder refusal becomes a dead letter. */
static int
batch_encode_valid(struct ldr_batch *b, const struct ev_type *t, size_t i,
                   const struct queue_event *ev)
{
    struct ldr_group *g = batch_group(b, t, ev->key_len > 0);
    struct ev_stored st = {
        .json = ev->json,
        .json_len = ev->json_len,
        .key = ev->key,
        .key_len = ev->key_len,
        .source = ev->source,
        .source_len = ev->source_len,
        .received_us = ev->received_us,
        .now_us = b->now_us,
        .seq = ev->seq,
    };
    char err[EV_ERR_MAX] = "";
    size_t before = g->rows.len;
    int rc;

    memcpy(st.uuid, ev->uuid, sizeof(st.uuid));
    rc = ev_encode(t, &st, &g->rows, err);
    if (rc == 0) {
        return group_push(g, i);
    }
    g->rows.len = before;
    if (rc != DP_ERR_INVALID) {
        return rc;
    }
    struct ldr_dead d = {
        .type = ev->type, .type_len = ev->type_len, .stage = "load",
        .error = err, .error_len = strlen(err),
        .raw = ev->json, .raw_len = ev->json_len, .received_us = ev->received_us,
        .key = ev->key, .key_len = ev->key_len, .uuid = ev->uuid,
        .source = ev->source, .source_len = ev->source_len,
    };
    b->dead_encode++;
    return batch_dead_row(b, &d);
}

/* ---- reading and encoding ------------------------------------------------------------ */

/* A view of held event i, valid until b's raw buffer changes. */
static void
batch_event(const struct ldr_batch *b, size_t i, struct queue_event *ev)
{
    const struct ldr_held *h = &b->held[i];

    memset(ev, 0, sizeof(*ev));
    ev->seq = h->seq;
    memcpy(ev->uuid, h->uuid, sizeof(ev->uuid));
    ev->received_us = h->received_us;
    ev->flags = h->flags;
    ev->type = b->raw.data + h->type_off;
    ev->type_len = h->type_len;
    ev->error = h->error_len > 0 ? b->raw.data + h->error_off : NULL;
    ev->error_len = h->error_len;
    ev->json = b->raw.data + h->json_off;
    ev->json_len = h->json_len;
    ev->key = h->key_len > 0 ? b->raw.data + h->key_off : NULL;
    ev->key_len = h->key_len;
    ev->source = h->source_len > 0 ? b->raw.data + h->source_off : NULL;
    ev->source_len = h->source_len;
}

/* What ldr_batch_read's callback needs besides the batch. */
struct batch_reader {
    struct ldr_batch *b;
    uint64_t end;                       /* no event beyond this one */
    bool hold;                          /* leave events of unknown types in the queue */
};

void
ldr_held_note(char *list, size_t cap, const char *type, size_t len)
{
    size_t used = strlen(list);

    for (const char *p = list; *p != '\0';) {
        size_t n = strcspn(p, ",");

        if (n == len && memcmp(p, type, len) == 0) {
            return;
        }
        p += n + (p[n] == ',' ? 1 : 0);
    }
    if (used + len + 2 <= cap) {
        snprintf(list + used, cap - used, "%s%.*s", used > 0 ? "," : "", (int)len, type);
    }
}

/* queue_read callback: copy ev into the batch unless it lies beyond the range's end. */
static int
batch_copy_one(void *arg, const struct queue_event *ev)
{
    struct batch_reader *r = arg;
    struct ldr_batch *b = r->b;
    struct ldr_held *h;

    if (ev->seq > r->end) {
        return DP_ERR_NOTFOUND;
    }
    if (r->hold && (ev->flags & QUEUE_F_REJECTED) == 0 &&
        ev_lookup(ev->type, ev->type_len) == NULL) {
        if (b->events > 0) {
            return DP_ERR_NOTFOUND;     /* the range ends before it */
        }
        b->unknown++;
        ldr_held_note(b->unknown_types, sizeof(b->unknown_types), ev->type, ev->type_len);
        return ev->seq == r->end ? 1 : 0;
    }
    if (b->events == b->held_cap) {
        size_t cap = b->held_cap != 0 ? b->held_cap * 2 : 1024;
        struct ldr_held *p = realloc(b->held, cap * sizeof(*p));

        if (p == NULL) {
            return DP_ERR_NOMEM;
        }
        b->held = p;
        b->held_cap = cap;
    }
    h = &b->held[b->events];
    h->seq = ev->seq;
    memcpy(h->uuid, ev->uuid, sizeof(h->uuid));
    h->received_us = ev->received_us;
    h->flags = ev->flags;
    h->type_off = b->raw.len;
    h->type_len = ev->type_len;
    h->error_off = h->type_off + ev->type_len;
    h->error_len = ev->error != NULL ? ev->error_len : 0;
    h->json_off = h->error_off + h->error_len;
    h->json_len = ev->json_len;
    h->key_off = h->json_off + h->json_len;
    h->key_len = ev->key != NULL ? ev->key_len : 0;
    h->source_off = h->key_off + h->key_len;
    h->source_len = ev->source != NULL ? ev->source_len : 0;
    if (ev_buf_put(&b->raw, ev->type, ev->type_len) != 0 ||
        ev_buf_put(&b->raw, ev->error, h->error_len) != 0 ||
        ev_buf_put(&b->raw, ev->json, ev->json_len) != 0 ||
        ev_buf_put(&b->raw, ev->key, h->key_len) != 0 ||
        ev_buf_put(&b->raw, ev->source, h->source_len) != 0) {
        return DP_ERR_NOMEM;
    }
    if (b->events == 0) {
        b->first = ev->seq;
    }
    b->last = ev->seq;
    b->events++;
    return ev->seq == r->end ? 1 : 0;
}

static int
batch_read(struct ldr_batch *b, struct queue *q, uint64_t from, uint64_t end,
           size_t max_events, size_t max_bytes, bool hold)
{
    struct batch_reader r = {.b = b, .end = end, .hold = hold};
    int rc;

    b->first = b->last = 0;
    b->events = 0;
    b->unknown = 0;
    b->unknown_types[0] = '\0';
    b->raw.len = 0;
    b->watermark_us = 0;
    rc = queue_read(q, from, max_events, max_bytes, batch_copy_one, &r, NULL, NULL);
    if (rc != 0 && rc != DP_ERR_NOTFOUND) {
        b->events = 0;
    }
    return rc == DP_ERR_NOTFOUND ? 0 : rc;
}

int
ldr_batch_read(struct ldr_batch *b, struct queue *q, uint64_t from, uint64_t end,
               size_t max_events, size_t max_bytes)
{
    return batch_read(b, q, from, end, max_events, max_bytes, false);
}

int
ldr_batch_claim(struct ldr_batch *b, struct queue *q, uint64_t from, uint64_t end,
                size_t max_events, size_t max_bytes)
{
    return batch_read(b, q, from, end, max_events, max_bytes, true);
}

/* Encode held event i. */
static int
batch_encode_one(struct ldr_batch *b, size_t i)
{
    static const char unknown[] = "unknown event type";
    const struct ev_type *t;
    struct queue_event ev;
    struct ldr_dead d;

    batch_event(b, i, &ev);
    d = (struct ldr_dead){
        .type = ev.type, .type_len = ev.type_len, .stage = "load",
        .error = unknown, .error_len = sizeof(unknown) - 1,
        .raw = ev.json, .raw_len = ev.json_len, .received_us = ev.received_us,
        .key = ev.key, .key_len = ev.key_len, .uuid = ev.uuid,
        .source = ev.source, .source_len = ev.source_len,
    };
    if ((ev.flags & QUEUE_F_REJECTED) != 0) {
        d.stage = "ingest";
        d.error = ev.error != NULL ? ev.error : "";
        d.error_len = ev.error != NULL ? ev.error_len : 0;
        b->dead_ingest++;
        return batch_dead_row(b, &d);
    }
    t = ev_lookup(ev.type, ev.type_len);
    if (t == NULL) {
        b->dead_encode++;
        return batch_dead_row(b, &d);
    }
    return batch_encode_valid(b, t, i, &ev);
}

int
ldr_batch_build(struct ldr_batch *b)
{
    int rc = 0;

    batch_groups_sync(b);
    for (size_t i = 0; i < b->n_groups; i++) {
        b->groups[i].rows.len = 0;
        b->groups[i].n = 0;
        b->groups[i].bad = 0;
        b->groups[i].skipped = 0;
    }
    b->dead.len = 0;
    b->dead_encoded = 0;
    b->dead_ingest = b->dead_encode = b->dead_load = 0;
    b->now_us = dp_now_us();
    for (size_t i = 0; rc == 0 && i < b->events; i++) {
        rc = batch_encode_one(b, i);
    }
    b->dead_encoded = b->dead.len;
    return rc;
}

/* ---- loading ------------------------------------------------------------------------ */

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
    struct ldr_dead d;
    int rc;

    batch_event(b, g->held[i], &ev);
    snprintf(error, sizeof(error), "%s (SQLSTATE %s)", ldr_pg_error(pg), ldr_pg_sqlstate(pg));
    dp_warn("row refused by postgresql: filed into dead_letter", "type=%s seq=%llu error=%s",
            g->type->name, (unsigned long long)ev.seq, error);
    d = (struct ldr_dead){
        .type = ev.type, .type_len = ev.type_len, .stage = "load",
        .error = error, .error_len = strlen(error),
        .raw = ev.json, .raw_len = ev.json_len, .received_us = ev.received_us,
        .key = ev.key, .key_len = ev.key_len, .uuid = ev.uuid,
        .source = ev.source, .source_len = ev.source_len,
    };
    rc = batch_dead_row(b, &d);
    if (rc == 0) {
        g->bad++;
        b->dead_load++;
    }
    return rc;
}

/*
 * The temp table keyed rows of t are COPYed into, quoted: t->table may be quoted already (a
 * declared type's), so the name is built from t->name.
 */
static void
keyed_table(const struct ev_type *t, char out[LDR_KEYED_NAME_BUF])
{
    snprintf(out, LDR_KEYED_NAME_BUF, "\"%s%s\"", t->name, LDR_KEYED_SUFFIX);
}

/*
 * Move the keyed rows COPYed into g's keyed table into g's table, skipping a key already
 * there (also one twice in these rows: the first wins); counts the skipped in g->skipped.
 */
static int
batch_insert_keyed(struct ldr_pg *pg, struct ldr_group *g, size_t rows)
{
    const char *cols = g->type->copy_columns;
    size_t cols_len = strlen(cols);
    uint64_t inserted = 0;
    char keyed[LDR_KEYED_NAME_BUF];
    char *sql = NULL;
    int rc;

    keyed_table(g->type, keyed);
    /* copy_columns is "(a, b, ...)": the same list without its parentheses is selected. */
    if (asprintf(&sql, "WITH s AS (DELETE FROM %s RETURNING %.*s) "
                       "INSERT INTO %s %s SELECT %.*s FROM s "
                       "ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL "
                       "DO NOTHING",
                 keyed, (int)cols_len - 2, cols + 1, g->type->table,
                 cols, (int)cols_len - 2, cols + 1) < 0) {
        return DP_ERR_NOMEM;
    }
    rc = ldr_pg_exec_rows(pg, sql, &inserted);
    free(sql);
    if (rc == 0 && inserted <= rows) {
        g->skipped += rows - (size_t)inserted;
    }
    return rc;
}

/*
 * Keyed rows lo..hi-1 of g straight into g's table, as plain rows load, under a savepoint of
 * their own: a key already in the table (or twice in these rows) makes PostgreSQL refuse the
 * COPY and nothing of it stays. Returns 0 (loaded: no key was there), DP_ERR_DATA (refused:
 * load them through the keyed table instead), or another error.
 */
static int
batch_keyed_direct(struct ldr_pg *pg, struct ldr_group *g, const char *data, size_t len)
{
    int rc;

    rc = batch_not_data(ldr_pg_exec(pg, "SAVEPOINT ldr_direct"));
    if (rc == 0) {
        rc = ldr_pg_copy(pg, g->type->table, g->type->copy_columns, data, len, g->rows.binary);
    }
    if (rc == 0) {
        return batch_not_data(ldr_pg_exec(pg, "RELEASE SAVEPOINT ldr_direct"));
    }
    if (rc == DP_ERR_DATA && ldr_pg_exec(pg, "ROLLBACK TO SAVEPOINT ldr_direct; "
                                             "RELEASE SAVEPOINT ldr_direct") != 0) {
        rc = DP_ERR_RETRY;
    }
    return rc;
}

/*
 * One try at rows lo..hi-1 of g, under a savepoint so that a bad row costs only this try.
 * Keyed rows first try the plain COPY (batch_keyed_direct): a repeat reaching PostgreSQL is
 * rare (the server answers repeats within queue.dedup_window_s), and only a batch holding
 * one pays for the keyed table and INSERT ... ON CONFLICT DO NOTHING.
 */
static int
batch_try(struct ldr_batch *b, struct ldr_pg *pg, struct ldr_group *g, size_t lo, size_t hi,
          const struct ldr_fault_ops *fault)
{
    char target[128];
    size_t start = lo == 0 ? 0 : g->ends[lo - 1];
    size_t len = g->ends[hi - 1] - start;
    size_t skipped = g->skipped;
    bool upsert = g->type->load == EV_LOAD_UPSERT;
    int rc;

    if (g->keyed && !upsert) {
        keyed_table(g->type, target);
    } else {
        snprintf(target, sizeof(target), "%s%s", g->type->table, upsert ? LDR_STAGE_SUFFIX : "");
    }
    rc = batch_not_data(ldr_pg_exec(pg, "SAVEPOINT ldr_rows"));
    if (rc == 0) {
        rc = batch_fault(fault, LDR_FAULT_COPY, b);
    }
    if (rc != 0) {
        return rc;
    }
    rc = g->keyed ? batch_keyed_direct(pg, g, g->rows.data + start, len) : DP_ERR_DATA;
    if (rc == DP_ERR_DATA) {
        rc = ldr_pg_copy(pg, target, g->type->copy_columns, g->rows.data + start, len,
                         g->rows.binary);
        if (rc == 0 && upsert) {
            rc = ldr_pg_exec(pg, g->type->upsert_sql);
        } else if (rc == 0 && g->keyed) {
            rc = batch_insert_keyed(pg, g, hi - lo);
        }
    }
    if (rc == 0) {
        rc = batch_not_data(ldr_pg_exec(pg, "RELEASE SAVEPOINT ldr_rows"));
    }
    if (rc == 0) {
        return 0;
    }
    g->skipped = skipped;
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
batch_load_rows(struct ldr_batch *b, struct ldr_pg *pg, struct ldr_group *g, size_t lo,
                size_t hi, const struct ldr_fault_ops *fault)
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
    if (g->n == 0) {
        return 0;
    }
    if (g->type->load == EV_LOAD_UPSERT && g->type->stage_ddl != NULL) {
        rc = batch_not_data(ldr_pg_exec(pg, g->type->stage_ddl));
    } else if (g->keyed) {
        char sql[256];
        char keyed[LDR_KEYED_NAME_BUF];

        /* The table's own columns, defaults and NOT NULLs: a bad row fails at its COPY. */
        keyed_table(g->type, keyed);
        snprintf(sql, sizeof(sql), "CREATE TEMP TABLE IF NOT EXISTS %s (LIKE %s INCLUDING "
                 "DEFAULTS) ON COMMIT DROP", keyed, g->type->table);
        rc = batch_not_data(ldr_pg_exec(pg, sql));
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
        rc = ldr_pg_copy(pg, "dead_letter", LDR_DEAD_COLUMNS, b->dead.data, b->dead.len,
                         false);
    }
    if (rc != DP_ERR_DATA) {
        return rc == 0 ? batch_not_data(ldr_pg_exec(pg, "RELEASE SAVEPOINT ldr_dead")) : rc;
    }
    dp_warn("dead letters refused by postgresql: stored reduced to ASCII", "rows=%zu error=%s "
            "sqlstate=%s", ldr_batch_dead(b), ldr_pg_error(pg), ldr_pg_sqlstate(pg));
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

int
ldr_batch_load(struct ldr_batch *b, struct ldr_pg *pg, const struct ldr_fault_ops *fault,
               struct ldr_load_result *res)
{
    int rc;

    res->commit_sent = false;
    res->committed_last = 0;
    b->dead.len = b->dead_encoded;
    b->dead_load = 0;
    rc = ldr_pg_batch_begin(pg, b->queue_id, b->first, b->last, b->events, &res->committed_last);
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

size_t
ldr_batch_loaded(const struct ldr_batch *b)
{
    size_t n = 0;

    for (size_t i = 0; i < b->n_groups; i++) {
        n += b->groups[i].n - b->groups[i].bad - b->groups[i].skipped;
    }
    return n;
}

size_t
ldr_batch_skipped(const struct ldr_batch *b)
{
    size_t n = 0;

    for (size_t i = 0; i < b->n_groups; i++) {
        n += b->groups[i].skipped;
    }
    return n;
}

size_t
ldr_batch_dead(const struct ldr_batch *b)
{
    return b->dead_ingest + b->dead_encode + b->dead_load;
}

size_t
ldr_batch_meta(const struct ldr_batch *b, int64_t now_us, struct queue_meta_op *ops)
{
    size_t n = 0;
    size_t dead_load = b->dead_encode + b->dead_load;

    for (size_t i = 0; i < b->n_groups; i++) {
        const struct ldr_group *g = &b->groups[i];

        if (g->n > g->bad + g->skipped) {
            ops[n++] = (struct queue_meta_op){g->meta_name, QUEUE_META_ADD,
                                              (int64_t)(g->n - g->bad - g->skipped), NULL};
        }
        if (g->skipped > 0) {
            ops[n++] = (struct queue_meta_op){g->dup_name, QUEUE_META_ADD, (int64_t)g->skipped,
                                              NULL};
        }
    }
    if (ldr_batch_dead(b) > 0) {
        ops[n++] = (struct queue_meta_op){QUEUE_META_LOADER_DEAD_LETTERS, QUEUE_META_ADD,
                                          (int64_t)ldr_batch_dead(b), NULL};
    }
    if (b->dead_ingest > 0) {
        ops[n++] = (struct queue_meta_op){QUEUE_META_LOADER_DEAD_INGEST, QUEUE_META_ADD,
                                          (int64_t)b->dead_ingest, NULL};
    }
    if (dead_load > 0) {
        ops[n++] = (struct queue_meta_op){QUEUE_META_LOADER_DEAD_LOAD, QUEUE_META_ADD,
                                          (int64_t)dead_load, NULL};
    }
    ops[n++] = (struct queue_meta_op){QUEUE_META_LOADER_BATCHES, QUEUE_META_ADD, 1, NULL};
    ops[n++] = (struct queue_meta_op){QUEUE_META_LOADER_LAST_SUCCESS_US, QUEUE_META_SET, now_us,
                                      NULL};
    if (b->watermark_us > 0) {
        ops[n++] = (struct queue_meta_op){QUEUE_META_LOADER_LOADED_THROUGH_US, QUEUE_META_MAX,
                                          b->watermark_us, NULL};
    }
    return n;
}
