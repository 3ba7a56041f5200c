/*
 * batch.c - one batch of queue events: read from the queue once, encoded into COPY rows per
 * type, events rejected at ingest, of an unknown type or refused by their encoder filed as
 * dead_letter rows; and what a loaded batch changes in the queue's counters. Loading it is
 * load.c's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "etc/err.h"
#include "etc/log.h"
#include "etc/plant.h"
#include "loader/internal.h"

/* One dead_letter row's fields (views; any may be unterminated). */
struct ldr_dead {
    const char *type;
    size_t type_len;   /* 0: unknown, stored as NULL */
    const char *stage; /* "ingest" or "load" */
    const char *error;
    size_t error_len;
    const char *raw;
    size_t raw_len;
    int64_t received_us;
    const char *key; /* idempotency key; key_len 0: none, stored as NULL */
    size_t key_len;
    const uint8_t *uuid; /* the event's id (16 bytes) */
    const char *source;  /* API key name; source_len 0: none, stored as NULL */
    size_t source_len;
};

int
ldr_put_clean_text(struct ev_buf *b, const char *s, size_t n)
{
    size_t i = 0;
    size_t run = 0; /* start of the pending run of good bytes */
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

int
ldr_batch_dead_event(struct ldr_batch *b, const struct queue_event *ev, const char *stage,
                     const char *error, size_t error_len)
{
    struct ldr_dead d = {
        .type = ev->type,
        .type_len = ev->type_len,
        .stage = stage,
        .error = error,
        .error_len = error_len,
        .raw = ev->json,
        .raw_len = ev->json_len,
        .received_us = ev->received_us,
        .key = ev->key,
        .key_len = ev->key_len,
        .uuid = ev->uuid,
        .source = ev->source,
        .source_len = ev->source_len,
    };

    return batch_dead_row(b, &d);
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
            snprintf(g->meta_name, sizeof(g->meta_name), "%s%s", QUEUE_META_LOADER_LOADED_PREFIX,
                     ev_registry[i]->name);
            snprintf(g->dup_name, sizeof(g->dup_name), "%s%s", QUEUE_META_LOADER_DUPLICATES_PREFIX,
                     ev_registry[i]->name);
            snprintf(g->conflict_name, sizeof(g->conflict_name), "%s%s",
                     QUEUE_META_LOADER_KEY_CONFLICTS_PREFIX, ev_registry[i]->name);
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
    b->dead_encode++;
    return ldr_batch_dead_event(b, ev, "load", err, strlen(err));
}

/* ---- reading and encoding ------------------------------------------------------------ */

void
ldr_batch_event(const struct ldr_batch *b, size_t i, struct queue_event *ev)
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
    uint64_t end; /* no event beyond this one */
    bool hold;    /* leave events of unknown types in the queue */
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
            return DP_ERR_NOTFOUND; /* the range ends before it */
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
batch_read(struct ldr_batch *b, struct queue *q, uint64_t from, uint64_t end, size_t max_events,
           size_t max_bytes, bool hold)
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
ldr_batch_read(struct ldr_batch *b, struct queue *q, uint64_t from, uint64_t end, size_t max_events,
               size_t max_bytes)
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

    ldr_batch_event(b, i, &ev);
    if ((ev.flags & QUEUE_F_REJECTED) != 0) {
        b->dead_ingest++;
        return ldr_batch_dead_event(b, &ev, "ingest", ev.error != NULL ? ev.error : "",
                                    ev.error != NULL ? ev.error_len : 0);
    }
    t = ev_lookup(ev.type, ev.type_len);
    if (t == NULL) {
        b->dead_encode++;
        return ldr_batch_dead_event(b, &ev, "load", unknown, sizeof(unknown) - 1);
    }
    if (DP_PLANTED("loader_skip_row") && ev.seq % 50 == 7) {
        return 0; /* Planted (etc/plant.h): a row left out, its batch recorded all the same. */
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
        b->groups[i].conflicts = 0;
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

int
ldr_batch_outcome(const struct ldr_batch *b, char **out)
{
    size_t cap = 1;
    size_t len = 0;
    char *text;

    for (size_t i = 0; i < b->n_groups; i++) {
        /* The name, three counters of at most 20 digits, the flag and five separators. */
        cap += strlen(b->groups[i].type->name) + 3 * 20 + 6;
    }
    text = malloc(cap);
    if (text == NULL) {
        return DP_ERR_NOMEM;
    }
    text[0] = '\0';
    for (size_t i = 0; i < b->n_groups; i++) {
        const struct ldr_group *g = &b->groups[i];

        if (g->bad > 0 || g->skipped > 0) {
            len += (size_t)snprintf(text + len, cap - len, "%s\t%d\t%zu\t%zu\t%zu\n", g->type->name,
                                    g->keyed ? 1 : 0, g->bad, g->skipped, g->conflicts);
        }
    }
    *out = text;
    return 0;
}

/* The group of b for type name (len bytes) and keyed, or NULL. */
static struct ldr_group *
batch_group_named(struct ldr_batch *b, const char *name, size_t len, bool keyed)
{
    for (size_t i = 0; i < b->n_groups; i++) {
        struct ldr_group *g = &b->groups[i];

        if (g->keyed == keyed && strlen(g->type->name) == len &&
            memcmp(g->type->name, name, len) == 0) {
            return g;
        }
    }
    return NULL;
}

void
ldr_batch_settle(struct ldr_batch *b, const char *outcome)
{
    const char *line = outcome;

    b->dead_load = 0;
    for (size_t i = 0; i < b->n_groups; i++) {
        b->groups[i].bad = 0;
        b->groups[i].skipped = 0;
        b->groups[i].conflicts = 0;
    }
    while (line != NULL && *line != '\0') {
        const char *tab = strchr(line, '\t');
        const char *end = strchr(line, '\n');
        unsigned keyed = 0;
        size_t bad = 0;
        size_t skipped = 0;
        size_t conflicts = 0;
        struct ldr_group *g = NULL;

        if (end == NULL) {
            end = line + strlen(line);
        }
        if (tab != NULL && tab < end &&
            sscanf(tab, "\t%u\t%zu\t%zu\t%zu", &keyed, &bad, &skipped, &conflicts) == 4) {
            g = batch_group_named(b, line, (size_t)(tab - line), keyed != 0);
        }
        if (g != NULL && bad + skipped <= g->n && conflicts <= bad) {
            g->bad = bad;
            g->skipped = skipped;
            g->conflicts = conflicts;
            b->dead_load += bad;
        } else {
            dp_warn("a committed batch's outcome names no rows of this batch: counted as loaded",
                    "first=%llu line=%.*s", (unsigned long long)b->first, (int)(end - line), line);
        }
        line = *end == '\0' ? end : end + 1;
    }
}

size_t
ldr_batch_meta(const struct ldr_batch *b, int64_t now_us, struct queue_meta_op *ops)
{
    size_t n = 0;
    size_t dead_load = b->dead_encode + b->dead_load;

    for (size_t i = 0; i < b->n_groups; i++) {
        const struct ldr_group *g = &b->groups[i];

        if (g->n > g->bad + g->skipped) {
            /* Planted (etc/plant.h): one row more counted than loaded. */
            ops[n++] = (struct queue_meta_op){
                g->meta_name, QUEUE_META_ADD,
                (int64_t)(g->n - g->bad - g->skipped) + DP_PLANTED("loaded_miscount"), NULL};
        }
        if (g->skipped > 0) {
            ops[n++] =
                (struct queue_meta_op){g->dup_name, QUEUE_META_ADD, (int64_t)g->skipped, NULL};
        }
        if (g->conflicts > 0) {
            ops[n++] = (struct queue_meta_op){g->conflict_name, QUEUE_META_ADD,
                                              (int64_t)g->conflicts, NULL};
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
    ops[n++] =
        (struct queue_meta_op){QUEUE_META_LOADER_LAST_SUCCESS_US, QUEUE_META_SET, now_us, NULL};
    if (b->watermark_us > 0) {
        ops[n++] = (struct queue_meta_op){QUEUE_META_LOADER_LOADED_THROUGH_US, QUEUE_META_MAX,
                                          b->watermark_us, NULL};
    }
    return n;
}
