/*
 * segment.c - the Segment tracking API's messages as types: identifies, tracks, pages,
 * screens, groups and aliases (one table each, the warehouse layout of Segment's spec), and
 * users (the newest traits per userId, upserted from identify). The server normalises each
 * message (server/segment.c); here it is checked and encoded. Pure: no I/O, no globals
 * written; the skew-corrected timestamp is computed from the stored receive time.
 */
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "etc/err.h"
#include "events/internal.h"

size_t
ev_segment_key(const char *source, size_t source_len, const char *message_id, size_t id_len,
               bool typed, char out[EV_KEY_MAX + 1])
{
    uint8_t md[EV_DIGEST_LEN];
    unsigned int mdlen = sizeof(md);
    char prefix[32];
    EVP_MD_CTX *ctx = NULL;
    size_t plen;
    size_t n;

    /* The source's length first: ("ab", "c") and ("a", "bc") give "sk:2:abc" and "sk:1:abc". */
    plen = (size_t)snprintf(prefix, sizeof(prefix),
                            "%s%zu:", typed ? SEGMENT_TYPED_KEY_PREFIX : SEGMENT_KEY_PREFIX,
                            source_len);
    if (plen + source_len + id_len <= EV_KEY_MAX) {
        memcpy(out, prefix, plen);
        memcpy(out + plen, source, source_len);
        memcpy(out + plen + source_len, message_id, id_len);
        out[plen + source_len + id_len] = '\0';
        return plen + source_len + id_len;
    }
    memset(md, 0, sizeof(md));
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, prefix, plen) != 1 ||
        EVP_DigestUpdate(ctx, source, source_len) != 1 ||
        EVP_DigestUpdate(ctx, message_id, id_len) != 1 ||
        EVP_DigestFinal_ex(ctx, md, &mdlen) != 1) {
        /* Out of memory only: the all-zero digest makes a later message a conflict, not lost. */
        memset(md, 0, sizeof(md));
    }
    EVP_MD_CTX_free(ctx);
    n = (size_t)snprintf(out, EV_KEY_MAX + 1, "%s",
                         typed ? SEGMENT_TYPED_KEY_HASH_PREFIX : SEGMENT_KEY_HASH_PREFIX);
    for (size_t i = 0; i < sizeof(md); i++) {
        n += (size_t)snprintf(out + n, EV_KEY_MAX + 1 - n, "%02x", md[i]);
    }
    return n;
}

/* An id: a non-empty string or an integer. */
static int
check_id(const json_t *v, const char *name, char err[EV_ERR_MAX])
{
    if (json_is_integer(v)) {
        return 0;
    }
    if (!json_is_string(v)) {
        return ev_type_err(err, name, "string or integer", v);
    }
    if (json_string_length(v) == 0) {
        return ev_errf(err, "%s: must not be empty", name);
    }
    return 0;
}

/* An ISO 8601 / RFC 3339 time; *us gets it. */
static int
parse_time(const json_t *v, const char *name, int64_t *us, char err[EV_ERR_MAX])
{
    if (!json_is_string(v)) {
        return ev_type_err(err, name, "string", v);
    }
    return ev_parse_rfc3339(json_string_value(v), json_string_length(v), name, us, err);
}

static int
check_time(const json_t *v, const char *name, char err[EV_ERR_MAX])
{
    int64_t us;

    return parse_time(v, name, &us, err);
}

/* messageId: the idempotency key's part, so at most EV_KEY_MAX bytes. */
static int
check_message_id(const json_t *v, const char *name, char err[EV_ERR_MAX])
{
    if (!json_is_string(v)) {
        return ev_type_err(err, name, "string", v);
    }
    if (json_string_length(v) == 0) {
        return ev_errf(err, "%s: must not be empty", name);
    }
    if (json_string_length(v) > EV_KEY_MAX) {
        return ev_errf(err, "%s: %zu bytes, longer than %d", name, json_string_length(v),
                       EV_KEY_MAX);
    }
    return 0;
}

/* The fields every call has, then each call's own. Others are kept in the stored message
 * but not checked: SDKs add their own, such as "_metadata" or "channel". */
#define F_TYPE                                                                                     \
    {                                                                                              \
        .name = "type", .type = "string", .required = true, .check = ev_check_string               \
    }
#define F_MESSAGE_ID                                                                               \
    {                                                                                              \
        .name = "messageId", .type = "string", .format = "non-empty", .required = true,            \
        .check = check_message_id                                                                  \
    }
#define F_ID(n, req)                                                                               \
    {                                                                                              \
        .name = n, .type = "string|integer", .format = "non-empty", .required = req,               \
        .null_ok = !(req), .check = check_id                                                       \
    }
#define F_OBJECT(n)                                                                                \
    {                                                                                              \
        .name = n, .type = "object", .null_ok = true, .check = ev_check_object                     \
    }
#define F_TIME(n)                                                                                  \
    {                                                                                              \
        .name = n, .type = "timestamp", .format = "date-time", .null_ok = true,                    \
        .check = check_time                                                                        \
    }
#define F_COMMON(user_required)                                                                    \
    F_TYPE, F_MESSAGE_ID, F_ID("userId", user_required), F_ID("anonymousId", false),               \
        F_OBJECT("context"), F_OBJECT("integrations"), F_TIME("timestamp"),                        \
        F_TIME("originalTimestamp"), F_TIME("sentAt")

static const struct ev_field identify_fields[] = {F_COMMON(false), F_OBJECT("traits")};
static const struct ev_field user_fields[] = {F_COMMON(true), F_OBJECT("traits")};
static const struct ev_field track_fields[] = {
    F_COMMON(false),
    {.name = "event",
     .type = "string",
     .format = "non-empty",
     .required = true,
     .check = ev_check_nonempty_string},
    F_OBJECT("properties"),
};
static const struct ev_field page_fields[] = {
    F_COMMON(false),
    {.name = "name", .type = "string", .null_ok = true, .check = ev_check_string},
    F_OBJECT("properties"),
};
static const struct ev_field group_fields[] = {F_COMMON(false), F_ID("groupId", true),
                                               F_OBJECT("traits")};
static const struct ev_field alias_fields[] = {F_COMMON(true), F_ID("previousId", true)};

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* What one message kind is: its "type", its own columns' fields in column order. */
struct seg_kind {
    const char *table;
    const char *type;
    const char *own[2]; /* NULL ends */
};

static const struct seg_kind kinds[] = {
    {"identifies", "identify", {"traits", NULL}}, {"tracks", "track", {"event", "properties"}},
    {"pages", "page", {"name", "properties"}},    {"screens", "screen", {"name", "properties"}},
    {"groups", "group", {"groupId", "traits"}},   {"aliases", "alias", {"previousId", NULL}},
    {"users", "identify", {"traits", NULL}},
};

static const struct seg_kind *
kind_of(const struct ev_type *t)
{
    for (size_t i = 0; i < N(kinds); i++) {
        if (strcmp(t->table, kinds[i].table) == 0) {
            return &kinds[i];
        }
    }
    return &kinds[0];
}

/* A member present and not null. */
static const json_t *
member(const json_t *obj, const char *name)
{
    const json_t *v = json_object_get(obj, name);

    return v == NULL || json_is_null(v) ? NULL : v;
}

/* Walk t's field table; then the message's type, and who it is about. */
static int
validate(const struct ev_type *t, const json_t *obj, char err[EV_ERR_MAX])
{
    const struct seg_kind *k = kind_of(t);
    const json_t *v;
    int rc;

    for (size_t i = 0; i < t->n_fields; i++) {
        const struct ev_field *f = &t->fields[i];

        v = json_object_get(obj, f->name);
        if (v == NULL || (f->null_ok && json_is_null(v))) {
            if (f->required) {
                return ev_errf(err, "%s: required field missing", f->name);
            }
            continue;
        }
        rc = f->check(v, f->name, err);
        if (rc != 0) {
            return rc;
        }
    }
    if (strcmp(json_string_value(json_object_get(obj, "type")), k->type) != 0) {
        return ev_errf(err, "type: expected \"%s\" for %s", k->type, t->table);
    }
    if (member(obj, "userId") == NULL && member(obj, "anonymousId") == NULL) {
        return ev_errf(err, "userId or anonymousId: one of them is required");
    }
    return 0;
}

/* Column: an id member as text (an integer in decimal), or NULL. */
static void
row_id(struct ev_row *row, const json_t *obj, const char *name)
{
    const json_t *v = member(obj, name);
    char num[32];

    if (v == NULL) {
        ev_row_null(row);
    } else if (json_is_integer(v)) {
        snprintf(num, sizeof(num), "%" PRId64, (int64_t)json_integer_value(v));
        ev_row_cstr(row, num);
    } else {
        ev_row_text(row, json_string_value(v), json_string_length(v));
    }
}

/* Column: a member's exact JSON bytes (for jsonb), or NULL when absent or null. */
static void
row_json(struct ev_row *row, const struct ev_stored *ev, const json_t *obj, const char *name)
{
    const char *v;
    size_t n;

    if (member(obj, name) == NULL || ev_member_span(ev->json, ev->json_len, name, &v, &n) != 0) {
        ev_row_null(row);
        return;
    }
    ev_row_text(row, v, n);
}

/* Column: a time member, or NULL. */
static void
row_time(struct ev_row *row, const json_t *obj, const char *name)
{
    const json_t *v = member(obj, name);
    char err[EV_ERR_MAX];
    int64_t us;

    if (v == NULL || parse_time(v, name, &us, err) != 0) {
        ev_row_null(row);
        return;
    }
    ev_row_time(row, us);
}

/*
 * When the event happened: an explicit timestamp as given; else the device's
 * originalTimestamp moved by the device clock's skew, which is sentAt's distance from
 * receivedAt (Segment's rule: receivedAt - (sentAt - originalTimestamp)); else receivedAt.
 */
static int64_t
event_time(const json_t *obj, int64_t received_us)
{
    char err[EV_ERR_MAX];
    const json_t *ts = member(obj, "timestamp");
    const json_t *orig = member(obj, "originalTimestamp");
    const json_t *sent = member(obj, "sentAt");
    int64_t t_us;
    int64_t o_us;
    int64_t s_us;

    if (ts != NULL && parse_time(ts, "timestamp", &t_us, err) == 0) {
        return t_us;
    }
    if (orig == NULL || parse_time(orig, "originalTimestamp", &o_us, err) != 0) {
        return received_us;
    }
    if (sent == NULL || parse_time(sent, "sentAt", &s_us, err) != 0) {
        return o_us;
    }
    return received_us - (s_us - o_us);
}

/* The years 0001 to 9999 in microseconds since the epoch, a day inside at each end: the
 * server checks with its clock, the loader computes with the commit's stamp, a little later. */
#define SEGMENT_TIME_MIN_US ((-62135596800LL + 86400) * 1000000)
#define SEGMENT_TIME_MAX_US ((253402300799LL - 86400) * 1000000)

int
ev_segment_time_check(const json_t *msg, const json_t *sent, int64_t received_us,
                      char err[EV_ERR_MAX])
{
    const json_t *orig = member(msg, "originalTimestamp");
    int64_t o_us;
    int64_t s_us;
    int64_t t_us;

    if (member(msg, "timestamp") != NULL || orig == NULL || sent == NULL || json_is_null(sent) ||
        parse_time(orig, "originalTimestamp", &o_us, err) != 0 ||
        parse_time(sent, "sentAt", &s_us, err) != 0) {
        err[0] = '\0';
        return 0;
    }
    t_us = received_us - (s_us - o_us);
    if (t_us < SEGMENT_TIME_MIN_US || t_us > SEGMENT_TIME_MAX_US) {
        return ev_errf(err, "originalTimestamp, sentAt: the corrected timestamp (receivedAt - "
                            "(sentAt - originalTimestamp)) falls outside the years 0001 to 9999");
    }
    return 0;
}

static int
encode_row(const struct ev_type *t, const struct ev_stored *ev, const json_t *obj,
           struct ev_buf *out, char err[EV_ERR_MAX])
{
    const struct seg_kind *k = kind_of(t);
    const json_t *mid;
    struct ev_row row;
    int rc;

    rc = validate(t, obj, err);
    if (rc != 0) {
        return rc;
    }
    mid = json_object_get(obj, "messageId");
    ev_row_begin(&row, out);
    ev_row_uuid(&row, ev->uuid);
    ev_row_text(&row, json_string_value(mid), json_string_length(mid));
    row_id(&row, obj, "anonymousId");
    row_id(&row, obj, "userId");
    ev_row_time(&row, event_time(obj, ev->received_us));
    row_time(&row, obj, "originalTimestamp");
    row_time(&row, obj, "sentAt");
    ev_row_time(&row, ev->received_us);
    row_json(&row, ev, obj, "context");
    for (size_t i = 0; i < 2 && k->own[i] != NULL; i++) {
        const char *f = k->own[i];

        if (strcmp(f, "properties") == 0 || strcmp(f, "traits") == 0) {
            row_json(&row, ev, obj, f);
        } else {
            row_id(&row, obj, f);
        }
    }
    ev_row_key(&row, ev);
    ev_row_source(&row, ev);
    return ev_row_end(&row);
}

/* users: the identify's userId, its traits ({} without), its time. */
static int
encode_user(const struct ev_type *t, const struct ev_stored *ev, const json_t *obj,
            struct ev_buf *out, char err[EV_ERR_MAX])
{
    struct ev_row row;
    int rc;

    rc = validate(t, obj, err);
    if (rc != 0) {
        return rc;
    }
    ev_row_begin(&row, out);
    row_id(&row, obj, "userId");
    if (member(obj, "traits") == NULL) {
        ev_row_cstr(&row, "{}");
    } else {
        row_json(&row, ev, obj, "traits");
    }
    ev_row_time(&row, event_time(obj, ev->received_us));
    ev_row_time(&row, ev->received_us);
    ev_row_i64(&row, (int64_t)ev->seq);
    ev_row_source(&row, ev);
    return ev_row_end(&row);
}

#define COMMON_DDL                                                                                 \
    "id uuid PRIMARY KEY, message_id text NOT NULL, anonymous_id text, user_id text, "             \
    "timestamp timestamptz NOT NULL, original_timestamp timestamptz, sent_at timestamptz, "        \
    "received_at timestamptz NOT NULL, context jsonb, "
#define TAIL_DDL                                                                                   \
    "loaded_at timestamptz NOT NULL DEFAULT now(), "                                               \
    "idempotency_key text, idempotency_digest bytea, source text)"
#define COMMON_COLUMNS                                                                             \
    "(id, message_id, anonymous_id, user_id, timestamp, original_timestamp, sent_at, "             \
    "received_at, context, "
#define TAIL_COLUMNS "idempotency_key, idempotency_digest, source)"

/* One table of Segment's warehouse layout: its own columns between the common ones. */
#define SEGMENT_TYPE(var, tbl, flds, own_ddl, own_cols)                                            \
    const struct ev_type var = {                                                                   \
        .name = tbl,                                                                               \
        .table = tbl,                                                                              \
        .ddl = "CREATE TABLE IF NOT EXISTS " tbl " (" COMMON_DDL own_ddl TAIL_DDL,                 \
        .copy_columns = COMMON_COLUMNS own_cols TAIL_COLUMNS,                                      \
        .load = EV_LOAD_APPEND,                                                                    \
        .keyed = true,                                                                             \
        .fields = flds,                                                                            \
        .n_fields = N(flds),                                                                       \
        .open = true,                                                                              \
        .id_kind = EV_ID_UUID,                                                                     \
        .jsonb_numbers = true,                                                                     \
        .get_sql = "SELECT row_to_json(t)::text FROM " tbl " t WHERE t.id = $1::uuid",             \
        .validate = validate,                                                                      \
        .encode_row = encode_row,                                                                  \
    }

SEGMENT_TYPE(ev_identifies, "identifies", identify_fields, "traits jsonb, ", "traits, ");
SEGMENT_TYPE(ev_tracks, "tracks", track_fields, "event text NOT NULL, properties jsonb, ",
             "event, properties, ");
SEGMENT_TYPE(ev_pages, "pages", page_fields, "name text, properties jsonb, ", "name, properties, ");
SEGMENT_TYPE(ev_screens, "screens", page_fields, "name text, properties jsonb, ",
             "name, properties, ");
SEGMENT_TYPE(ev_groups, "groups", group_fields, "group_id text NOT NULL, traits jsonb, ",
             "group_id, traits, ");
SEGMENT_TYPE(ev_aliases, "aliases", alias_fields, "previous_id text NOT NULL, ", "previous_id, ");

/*
 * users: the stage is the COPY target; the upsert empties it as it reads it, keeps one row
 * per user (the newest by timestamp, then by queue seq) and replaces a stored row only when
 * its traits differ and it is not newer: product's rule, by the event's time.
 */
const struct ev_type ev_users = {
    .name = "users",
    .table = "users",
    .ddl = "CREATE TABLE IF NOT EXISTS users ("
           "user_id text PRIMARY KEY, "
           "traits jsonb NOT NULL, "
           "timestamp timestamptz NOT NULL, "
           "received_at timestamptz NOT NULL, "
           "updated_at timestamptz NOT NULL DEFAULT now(), "
           "source text)",
    .copy_columns = "(user_id, traits, timestamp, received_at, seq, source)",
    .load = EV_LOAD_UPSERT,
    .fields = user_fields,
    .n_fields = N(user_fields),
    .open = true,
    .stage_ddl = "CREATE TEMP TABLE IF NOT EXISTS users_stage ("
                 "user_id text NOT NULL, "
                 "traits jsonb NOT NULL, "
                 "timestamp timestamptz NOT NULL, "
                 "received_at timestamptz NOT NULL, "
                 "seq bigint NOT NULL, "
                 "source text) ON COMMIT DROP",
    .upsert_sql = "WITH s AS (DELETE FROM users_stage RETURNING user_id, traits, timestamp, "
                  "received_at, seq, source) "
                  "INSERT INTO users AS u (user_id, traits, timestamp, received_at, updated_at, "
                  "source) "
                  "SELECT DISTINCT ON (user_id) user_id, traits, timestamp, received_at, now(), "
                  "source FROM s "
                  "ORDER BY user_id, timestamp DESC, seq DESC "
                  "ON CONFLICT (user_id) DO UPDATE SET traits = EXCLUDED.traits, "
                  "timestamp = EXCLUDED.timestamp, received_at = EXCLUDED.received_at, "
                  "updated_at = EXCLUDED.updated_at, source = EXCLUDED.source "
                  "WHERE u.traits IS DISTINCT FROM EXCLUDED.traits "
                  "AND u.timestamp <= EXCLUDED.timestamp",
    .id_kind = EV_ID_TEXT,
    .jsonb_numbers = true,
    .get_sql = "SELECT row_to_json(u)::text FROM users u WHERE u.user_id = $1",
    .validate = validate,
    .encode_row = encode_user,
};
