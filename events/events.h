/*
 * events.h - everything that knows what an event is: splitting a request
 * body into events, validating each through the static type registry,
 * encoding a stored event as one PostgreSQL COPY row (text or binary format), and giving an
 * event its id.
 * No HTTP, no database, no I/O: all of it is pure and unit-testable, apart from
 * ev_uuid7, which reads the clock and the kernel's random pool.
 */
#ifndef DP_EVENTS_H
#define DP_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define EV_ERR_MAX 256      /* longest validation message, bytes with NUL */
#define EV_UUID_TEXT 37     /* a uuid's canonical text form, bytes with NUL */
#define EV_REGISTRY_MAX 128 /* types in the registry: built-ins and declared */

struct dp_types;
struct dp_type_decl;

#define EV_KEY_MAX 255                 /* longest idempotency key, bytes */
#define EV_DIGEST_LEN 32               /* an event's digest: SHA-256 */
#define EV_KEY_FIELD "idempotency_key" /* the reserved field every type allows */

/* A growable byte buffer for COPY rows. Zero-initialise; free with ev_buf_free. */
struct ev_buf {
    char *data;  /* malloc'd, owned by the buffer; not NUL-terminated */
    size_t len;  /* bytes used */
    size_t cap;  /* bytes allocated */
    bool binary; /* rows encoded into it are in COPY's binary format, without
                    its header and trailer (only for a type whose copy_binary
                    is set); false: COPY text rows */
};

/* How the loader writes a type's rows. */
enum ev_load {
    EV_LOAD_APPEND, /* plain COPY into the table */
    EV_LOAD_UPSERT, /* COPY into a staging table, then upsert by key */
};

/* How GET /v1/events/{type}/{id} reads an id. */
enum ev_id_kind {
    EV_ID_UUID, /* canonical 8-4-4-4-12 hex uuid */
    EV_ID_TEXT, /* any non-empty text (product) */
};

/* A stored event, as the encoder sees it (built from a queue record). */
struct ev_stored {
    const char *json; /* the event's bytes exactly as received */
    size_t json_len;
    const char *key; /* its idempotency key, or NULL (key_len 0) */
    size_t key_len;
    const char *source; /* who sent it (an API key's name), or NULL (source_len 0) */
    size_t source_len;
    uint8_t uuid[16];    /* UUIDv7 given at ingest */
    int64_t received_us; /* microseconds since the epoch, UTC */
    int64_t now_us;      /* the loader's clock at encode time (processed_at) */
    uint64_t seq;        /* queue sequence number */
};

/* One column of a declared type's table, as schema evolution compares it with the catalog. */
struct ev_column {
    const char *name;     /* column name (a field's name), unquoted */
    const char *sql_type; /* as format_type() prints it: "bigint", "jsonb", ... */
    bool not_null;        /* NOT NULL: the field is required */
};

/*
 * One field of a type: what GET /v1/types and the OpenAPI document show, and, where the type's
 * validate walks its table with ev_fields_check, how it is checked. A compiled type lists each
 * field once, in its events/<type>.c; a type declared in the configuration fills name, type
 * and required from its declaration (check may then be NULL: its validate checks by itself).
 */
struct ev_field {
    const char *name;
    /*
     * What a client sends, in the words of declared types (docs/event-types.md): "string",
     * "integer", "number", "boolean", "timestamp" (epoch seconds or RFC 3339 text), "ip",
     * "url", "uuid", "object", "array"; several separated by '|' ("integer|string") when
     * either is taken.
     */
    const char *type;
    /* A finer rule, or NULL: a JSON Schema format ("date-time", "ipv4") or our own words
     * ("epoch-seconds", "http-url", "non-empty"). */
    const char *format;
    bool required;
    bool null_ok; /* optional and JSON null taken as absent (check not called) */
    /* check - the field's check, given its value (never NULL); 0 or DP_ERR_INVALID. */
    int (*check)(const json_t *v, const char *name, char err[EV_ERR_MAX]);
};

/*
 * One event type: a static const descriptor, defined in events/<name>.c with
 * designated initializers and listed once in registry.c; or a declared type
 * (docs/event-types.md), built at start by events/decl.c from its declaration.
 * SQL texts are unqualified: the loader and the server set search_path to
 * database.schema on every connection.
 */
struct ev_type {
    const char *name;         /* event type name, as in URLs and event_name */
    const char *table;        /* PostgreSQL table */
    const char *ddl;          /* CREATE TABLE IF NOT EXISTS ... (one statement) */
    const char *copy_columns; /* column list for COPY, "(a, b, c)"; of <table>_stage if upsert */
    enum ev_load load;
    const struct ev_field *fields; /* the fields it takes, n_fields of them */
    size_t n_fields;
    bool open; /* fields not in the table are taken too (product's doc) */
    /*
     * The table has a nullable idempotency_key text column, unique where not null, and a
     * nullable idempotency_digest bytea column (ev_digest of the event's bytes; the loader
     * adds both and the index to older tables), written as the last columns but one of
     * copy_columns (source is the last); the loader loads keyed rows so that a key already
     * there with the same digest is skipped and one with another digest is a dead letter.
     * EV_LOAD_APPEND types only (an upsert has its own key).
     * Every table, keyed or not, has a nullable source text column (the API key's name).
     */
    bool keyed;
    /*
     * Whether its encoder writes every column with the SQL type of its table's column (text
     * into text, an integer into bigint, ...), so that its rows may be written in COPY's
     * binary format (struct ev_buf's binary), which PostgreSQL reads with less work.
     */
    bool copy_binary;
    /*
     * EV_LOAD_UPSERT only. In one transaction: run stage_ddl (creates the
     * temp table "<table>_stage" if missing), COPY the rows into it with
     * copy_columns, then run upsert_sql, which empties the stage as it reads
     * it - so the three may run again in the same transaction (savepoints).
     */
    const char *stage_ddl;  /* CREATE TEMP TABLE IF NOT EXISTS ... ON COMMIT DROP, or NULL */
    const char *upsert_sql; /* WITH s AS (DELETE FROM stage ...) INSERT ..., or NULL */
    enum ev_id_kind id_kind;
    bool jsonb_numbers; /* numbers are stored in jsonb: the dispatcher checks each fits */
    /* One parameter $1 (the id as text; for EV_ID_UUID check it with ev_uuid_parse first),
     * zero or one row of one json text column. Timestamps follow the session TimeZone. */
    const char *get_sql;
    /*
     * validate - check one event object (event_name already checked by the
     * dispatcher). t is this very type (a generic handler finds its declaration
     * through it). Pure. Returns 0, or DP_ERR_INVALID with a message such as
     * "user_id: expected integer, got string" in err (NUL-terminated).
     */
    int (*validate)(const struct ev_type *t, const json_t *obj, char err[EV_ERR_MAX]);
    /*
     * encode_row - append one COPY row for ev, whose parsed JSON object is obj, to out: in
     * COPY's binary format when out->binary is set, else a text row ending in '\n'; t is
     * this very type. Pure.
     * Returns 0, DP_ERR_INVALID (the stored event no longer validates; err
     * says why), DP_ERR_NOMEM.
     */
    int (*encode_row)(const struct ev_type *t, const struct ev_stored *ev, const json_t *obj,
                      struct ev_buf *out, char err[EV_ERR_MAX]);
    /* Declared types only (NULL/0 for the built-ins): */
    const struct dp_type_decl *decl; /* the declaration, owned by the type */
    const struct ev_column *columns; /* one per field, in declaration order */
    size_t n_columns;
};

/*
 * The registry: the built-in types, then the declared ones, in a fixed order
 * (an entry never moves or goes away while the process runs). Read
 * ev_registry_len first, then entries below it: ev_registry_update() stores
 * an entry before it makes the length cover it, so readers in other threads
 * never see a slot that is not filled.
 */
extern const struct ev_type *const *const ev_registry;
extern _Atomic size_t ev_registry_len;

/* ev_lookup - the type with exactly this name (len bytes), or NULL. */
const struct ev_type *ev_lookup(const char *name, size_t len);

/*
 * ev_type_names - the registry's type names in registry order, separated by ", ", into out
 * (cap bytes, cap > 4): what an "unknown event type" answer lists. When they do not all fit,
 * as many as fit followed by "...". Always NUL-terminates.
 */
void ev_type_names(char *out, size_t cap);

/*
 * ev_unknown_type - the message for a type name the registry does not have (name: len bytes
 * of client text, quoted and escaped as in every message): unknown event type "NAME" (valid
 * types: a, b, ...). Into out; the list is cut with "..." when it does not fit.
 */
void ev_unknown_type(char out[EV_ERR_MAX], const char *name, size_t len);

/* What ev_registry_update() did to one declared type. */
enum ev_change {
    EV_CHANGE_ADDED,   /* new: registered now */
    EV_CHANGE_CHANGED, /* declared differently: the running one stays until a restart */
    EV_CHANGE_REMOVED, /* no longer declared: it stays registered until a restart */
};

/*
 * ev_registry_update - make the registry hold every type of types (may be
 * NULL): a declared type not registered yet is built (events/decl.c) and
 * appended; one registered with the same declaration is kept; one declared
 * differently, or no longer declared, is kept as it runs and reported, since
 * only a restart may change it. Called at start and on SIGHUP, from one
 * thread at a time; other threads may read the registry meanwhile.
 *   note: NULL, or called for every type added, changed or removed.
 * Returns 0, DP_ERR_FULL (more than EV_REGISTRY_MAX types: none added),
 * DP_ERR_INVALID (a name taken by a built-in type), DP_ERR_NOMEM.
 */
int ev_registry_update(const struct dp_types *types,
                       void (*note)(void *arg, const char *type, enum ev_change change), void *arg);

/*
 * ev_registry_reset - test-only (production never calls it): drop every declared type, as
 * a restart would. No other thread may be using the registry.
 */
void ev_registry_reset(void);

/*
 * ev_declared_create - the registry entry of a declared type: one generic
 * validator and encoder, patterns compiled once, its DDL, COPY column list
 * and GET SQL. The declaration is copied.
 *   out: receives the type; free with ev_declared_destroy().
 * Returns 0, DP_ERR_INVALID (a pattern does not compile), DP_ERR_NOMEM.
 */
int ev_declared_create(const struct dp_type_decl *d, struct ev_type **out);

/* ev_declared_destroy - free a type built by ev_declared_create. NULL-safe. */
void ev_declared_destroy(struct ev_type *t);

/* One event of a request body. */
struct ev_item {
    size_t index;    /* 0-based position in the body */
    const char *raw; /* view into the body: the event's exact bytes */
    size_t raw_len;
    const struct ev_type *type;    /* resolved type, NULL if unknown or unparsable */
    char *error;                   /* NULL if valid; else malloc'd message, owned by the batch */
    bool malformed;                /* raw is not a JSON value (error says where it broke) */
    char *key;                     /* idempotency key (NUL-terminated), malloc'd, owned by the
                                      batch; NULL if none (or the key itself was invalid) */
    size_t key_len;                /* bytes, 1 to EV_KEY_MAX when key is set */
    uint8_t digest[EV_DIGEST_LEN]; /* with a key: SHA-256 of raw, surrounding whitespace
                                      trimmed */
    bool error_shared;             /* error is the previous item's text (same message), not
                                      a copy of its own: a body of many events failing alike
                                      holds one text */
    size_t follows;                /* 0, or k: a row derived from item index - k (a Segment
                                      identify's users row, a track's typed copy), stored only
                                      when that item is stored as new (queue_event.follows) */
};

/* All events of one body. Zero-initialise; free with ev_batch_free. */
struct ev_batch {
    struct ev_item *items; /* malloc'd array of n items */
    size_t n;
    size_t cap;
    size_t n_valid;    /* items with error == NULL */
    size_t max_events; /* in: most items the body may hold (0: no cap) */
    bool too_many;     /* out: parsing stopped at max_events (DP_ERR_FULL) */
    /* in: a memory budget, asked before the batch allocates bytes for itself (its items, error
     * texts and keys): 0 grants them; anything else refuses, and the call that would have
     * allocated returns DP_ERR_BUSY. NULL: no budget. Never released by the batch: the
     * caller gives back what it granted once the batch is freed. */
    int (*charge)(void *arg, size_t bytes);
    void *charge_arg; /* charge's argument */
};

/*
 * ev_parse_body - split body (len bytes, need not be NUL-terminated) into
 * events and validate each. An event's "idempotency_key" field is checked by the
 * dispatcher before its type sees it (ev_key_check: invalid is a rejected item, the
 * message naming the field) and sets the item's key and digest.
 *   type: the type from the URL (POST /v1/events/{type}), or NULL when each
 *   event names its type in "event_name".
 * A body is JSON values separated by optional whitespace (an optional UTF-8
 * byte order mark first): an object is one event, an array's elements are
 * events ("[]" gives none). Items are numbered in body order from 0.
 * A value that does not parse is one rejected item, type NULL, error
 * "line L column C: <problem>" (C counts characters), its raw bytes running
 * to the end of the line where parsing failed; parsing resumes on the next
 * line. A broken array is one such item, whatever elements it held.
 * Other rejected items carry "field: problem" texts, and their type when it
 * is known (the URL's, or a valid event_name). Every error is valid UTF-8,
 * with client bytes escaped, so it can go into a JSON answer as it is.
 * The batch holds views into body: body must outlive it. With out->max_events set, parsing
 * stops as soon as one more event would exceed it (so a body of millions of tiny events
 * costs no more than max_events items).
 * Returns 0 (the batch may still hold invalid events: see n_valid),
 * DP_ERR_INVALID (the body holds no JSON value at all: empty or whitespace;
 * the batch is empty), DP_ERR_FULL (more than out->max_events events: out->too_many is
 * set, the batch is partly filled: free it), DP_ERR_BUSY (out->charge refused memory: the
 * batch is partly filled, free it), DP_ERR_NOMEM (the batch may be partly
 * filled: free it).
 */
int ev_parse_body(const char *body, size_t len, const struct ev_type *type, struct ev_batch *out);

/*
 * ev_json_load - parse body text that must be one JSON object or array (n bytes, need not
 * be NUL-terminated): takes and builds exactly what json_loadb(s, n, JSON_REJECT_DUPLICATES,
 * err) does, several times faster in the common case; err is filled only on failure, with
 * jansson's words. Returns the value (caller decrefs) or NULL.
 */
json_t *ev_json_load(const char *s, size_t n, json_error_t *err);

/* Bytes of JSON text: an offset and a length. */
struct ev_json_span {
    size_t off; /* bytes from the text's start */
    size_t len; /* bytes */
};

/*
 * A cursor over the members of an object, or the elements of an array, of JSON text that
 * is known to parse (ev_json_load took it), in text order: the order jansson keeps
 * (json_object_iter, json_array_get). Views of the text only. Zero-initialise or open.
 */
struct ev_json_cursor {
    const char *s;
    size_t n;     /* bytes of s */
    size_t p;     /* offset of the next byte to read */
    bool object;  /* members (with keys), not elements */
    size_t count; /* elements ev_json_cursor_parse has read */
    size_t total; /* elements the array seems to hold (ev_json_load_lazy) */
};

/* ev_json_cursor_open - c at the first member of the object or array text s (n bytes);
 * false when s is neither. */
bool ev_json_cursor_open(struct ev_json_cursor *c, const char *s, size_t n);

/*
 * ev_json_cursor_next - the next member: key gets its quoted name as written (escapes and
 * all; length 0 for an array's element), val its value's exact bytes. false at the end.
 */
bool ev_json_cursor_next(struct ev_json_cursor *c, struct ev_json_span *key,
                         struct ev_json_span *val);

/*
 * ev_json_cursor_enter - move c, at an object's members, past the member named name (written
 * without escapes) into its value, an object or an array, at its first member; when the
 * cursor then ends, the member's value has. false when there is no such member or its value
 * is neither.
 */
bool ev_json_cursor_enter(struct ev_json_cursor *c, const char *name);

/*
 * ev_json_load_lazy - ev_json_load for an object text s (n bytes) whose member name holds a
 * large array: the object is parsed without that member, whose elements (c->total of them,
 * as far as its brackets and commas tell) are left to ev_json_cursor_parse from *c (*found
 * true), one at a time, so that no more than one of
 * them is ever in memory as values. Returns the object (caller decrefs), or NULL when the
 * fast reader does not take the text as it stands (then ev_json_load's answer counts). The
 * array's text is not checked here: only when ev_json_cursor_parse has read it to its end
 * is the whole text known to be what ev_json_load takes.
 */
json_t *ev_json_load_lazy(const char *s, size_t n, const char *name, struct ev_json_cursor *c,
                          bool *found);

/*
 * ev_json_cursor_parse - the next element of the array at c, parsed (caller decrefs), its
 * bytes in *span. NULL with *done true after the array's closing bracket (c->p then just
 * past it); NULL with *done false where the text is not a well-formed array there or the
 * fast reader gives up: the whole text is then for ev_json_load to judge.
 */
json_t *ev_json_cursor_parse(struct ev_json_cursor *c, struct ev_json_span *span, bool *done);

/*
 * ev_json_minify - copy the valid JSON text s (n bytes) into dst (room for n bytes) without
 * the whitespace between tokens; strings are copied as written. Returns the bytes written.
 */
size_t ev_json_minify(char *dst, const char *s, size_t n);

/* ev_batch_free - release the batch's memory (not the body). NULL-safe. */
void ev_batch_free(struct ev_batch *b);

/*
 * ev_batch_add - add one event to b as its next item (index b->n): raw (len bytes, a view
 * that must outlive b) holds exactly one JSON value, optionally surrounded by whitespace,
 * validated as an event of type t by the same dispatcher as ev_parse_body (t NULL: the
 * event names its type). With error non-NULL the item is rejected with that text (copied)
 * instead, of type t, and raw is not parsed. For bodies that are not plain event streams
 * (CloudEvents). Returns 0 (the item may be rejected), DP_ERR_FULL (b->max_events reached:
 * b->too_many set, nothing added), DP_ERR_BUSY (b->charge refused: nothing added) or
 * DP_ERR_NOMEM.
 */
int ev_batch_add(struct ev_batch *b, const char *raw, size_t len, const struct ev_type *t,
                 const char *error);

/*
 * ev_batch_add_value - ev_batch_add for an event already parsed: v (borrowed, not changed)
 * must be the value raw parses to, as when the caller built raw from v's own text. The
 * dispatcher checks v as ev_batch_add would the parse of raw, so raw is never parsed again.
 * Returns what ev_batch_add returns.
 */
int ev_batch_add_value(struct ev_batch *b, const char *raw, size_t len, const struct ev_type *t,
                       const json_t *v);

/*
 * ev_batch_set_key - give item i of b the idempotency key key (len bytes) from outside the
 * event (the Idempotency-Key header, a CloudEvent's source and id), and its digest.
 *   what: how the message names the key's origin ("Idempotency-Key").
 * A key that is invalid (see ev_key_check), or that differs from the event's own
 * idempotency_key field, turns the item into a rejected one with the message
 * "<what>: <problem>". Returns 0, DP_ERR_INVALID (item i is now rejected; or b holds no
 * item i, and nothing changed), DP_ERR_BUSY (b->charge refused memory), DP_ERR_NOMEM.
 */
int ev_batch_set_key(struct ev_batch *b, size_t i, const char *key, size_t len, const char *what);

/*
 * ev_batch_set_key_digest - ev_batch_set_key with the key's digest given (EV_DIGEST_LEN
 * bytes) instead of computed from the item's bytes: for a key whose digest leaves out a
 * part of the event that a retry changes (a Segment message's sentAt). Same returns.
 */
int ev_batch_set_key_digest(struct ev_batch *b, size_t i, const char *key, size_t len,
                            const char *what, const uint8_t digest[EV_DIGEST_LEN]);

/*
 * ev_segment_time_check - whether a Segment message's (msg) skew-corrected timestamp,
 * received_us - (sentAt - originalTimestamp), with sent its sentAt (msg's own or its
 * batch's; NULL: none), falls in the years 0001 to 9999 that every reader can hold; only
 * checked when it is the row's timestamp (no "timestamp", both times valid). Returns 0, or
 * DP_ERR_INVALID with the reason in err.
 */
int ev_segment_time_check(const json_t *msg, const json_t *sent, int64_t received_us,
                          char err[EV_ERR_MAX]);

/*
 * ev_batch_set_derived_key - ev_batch_set_key_digest for a key the server derives itself (a
 * Segment message's, see ev_segment_key), which alone may begin as ev_key_derived says;
 * digest NULL: computed from the item's bytes. Same returns.
 */
int ev_batch_set_derived_key(struct ev_batch *b, size_t i, const char *key, size_t len,
                             const char *what, const uint8_t digest[EV_DIGEST_LEN]);

/*
 * ev_key_derived - whether key (len bytes) begins as the keys the server derives from a
 * Segment message's messageId ("sk:", "st:", "sk-sha256:", "st-sha256:"): a client's key
 * that did could take a message's key (or its typed copy's) before the message comes.
 */
bool ev_key_derived(const char *key, size_t len);

/*
 * ev_key_check - whether key (len bytes) is a valid idempotency key from a client: 1 to
 * EV_KEY_MAX bytes of valid UTF-8 without control characters (U+0000-U+001F,
 * U+007F-U+009F), not beginning as the server's derived keys (ev_key_derived). Returns 0,
 * or DP_ERR_INVALID with "<what>: <problem>" in err.
 */
int ev_key_check(const char *key, size_t len, const char *what, char err[EV_ERR_MAX]);

/*
 * ev_parse_cloudevents - the CloudEvents 1.0 JSON format (structured and batched content
 * modes of the HTTP binding): body holds one CloudEvent object (batch false) or a JSON
 * array of them (batch true). Each CloudEvent becomes one item, as ev_parse_body's would:
 * "type" names the event type, "data" (an object) is the event (the item's raw bytes are
 * data's exact bytes), and the idempotency key is the CloudEvent's source and id (see
 * ev_cloudevent_key). specversion must be "1.0"; id, source, type and specversion are
 * required non-empty strings without control characters. A CloudEvent that breaks a rule
 * is one rejected item whose raw bytes are the whole CloudEvent and whose message names the
 * attribute ("source: required attribute missing"). Other attributes are not stored.
 * Returns 0, DP_ERR_INVALID (no JSON value at all, batch and the body is not an array, or a
 * second JSON value after the object or array: the batch is empty), DP_ERR_FULL (more than
 * out->max_events), DP_ERR_BUSY (out->charge refused memory), DP_ERR_NOMEM.
 */
int ev_parse_cloudevents(const char *body, size_t len, bool batch, struct ev_batch *out);

/* A CloudEvent's context attributes given outside its data (binary mode); NULL: absent. */
struct ev_ce_attrs {
    const char *id;
    const char *source;
    const char *type;
    const char *specversion;
};

/*
 * ev_parse_cloudevent_binary - the binary content mode: the attributes came as ce-*
 * headers (percent-decoded by the caller) and body is the event. On success out holds one
 * item (the event, validated as type, keyed by source and id). An attribute that breaks a
 * rule (see ev_parse_cloudevents) gives DP_ERR_INVALID with the message in err and out
 * empty. Returns 0 (the item may be rejected), DP_ERR_INVALID, DP_ERR_BUSY, DP_ERR_NOMEM.
 */
int ev_parse_cloudevent_binary(const char *body, size_t len, const struct ev_ce_attrs *a,
                               struct ev_batch *out, char err[EV_ERR_MAX]);

/*
 * ev_cloudevent_key - a CloudEvent's idempotency key: the source's length in decimal, ':',
 * source, id (CloudEvents: "consumers MAY assume that events with identical source and id
 * are duplicates"); the length makes it unambiguous: no two (source, id) pairs share a key.
 * When that is longer than EV_KEY_MAX bytes the key is "ce-sha256:" and the 64 hex digits of
 * the SHA-256 of that text (74 bytes), so any pair keeps a key of its own. out holds
 * EV_KEY_MAX + 1 bytes; returns the key's length.
 */
size_t ev_cloudevent_key(const char *source, size_t source_len, const char *id, size_t id_len,
                         char out[EV_KEY_MAX + 1]);

/*
 * ev_segment_key - the idempotency key of a Segment tracking API message: "sk:", the
 * source's length in decimal, ':', source (the write key's name; empty without keys), then
 * messageId. A messageId is unique per sender only, so the source scopes it, and the length
 * keeps (source, messageId) pairs apart. When that is longer than EV_KEY_MAX bytes (a long
 * name and a long messageId) the key is "sk-sha256:" and the 64 hex digits of the SHA-256 of
 * that text. typed: the key of a track's copy in its declared type's table, "st:" and
 * "st-sha256:" instead. out holds EV_KEY_MAX + 1 bytes; returns the key's length.
 */
size_t ev_segment_key(const char *source, size_t source_len, const char *message_id, size_t id_len,
                      bool typed, char out[EV_KEY_MAX + 1]);

/*
 * ev_digest - SHA-256 of s (len bytes) with surrounding whitespace (space, tab, CR, LF)
 * trimmed: two sends of one event compare equal however the body was laid out around it.
 */
void ev_digest(const char *s, size_t len, uint8_t out[EV_DIGEST_LEN]);

/*
 * ev_encode - parse ev->json and encode it with type t. Convenience for the
 * loader: returns what t->encode_row returns, or DP_ERR_INVALID when the
 * bytes do not parse.
 */
int ev_encode(const struct ev_type *t, const struct ev_stored *ev, struct ev_buf *out,
              char err[EV_ERR_MAX]);

/* Buffer helpers. All return 0 or DP_ERR_NOMEM. */
int ev_buf_reserve(struct ev_buf *b, size_t extra);
int ev_buf_put(struct ev_buf *b, const void *p, size_t n);
/* Append text with COPY text-format escaping (\\, \t, \n, \r, ...). */
int ev_buf_put_copy_text(struct ev_buf *b, const char *s, size_t n);
/* Append the NUL-terminated texts given, up to a NULL (SQL built from pieces). */
int ev_buf_put_strs(struct ev_buf *b, const char *first, ...);
/* Append bytes as a COPY bytea value in hex form (\\x...). */
int ev_buf_put_copy_bytea(struct ev_buf *b, const void *p, size_t n);
/* Append a UTC timestamp "YYYY-MM-DD HH:MM:SS.uuuuuu+00". */
int ev_buf_put_timestamp(struct ev_buf *b, int64_t us);
/* Append the canonical text form of a uuid. */
int ev_buf_put_uuid(struct ev_buf *b, const uint8_t uuid[16]);
void ev_buf_free(struct ev_buf *b);

/*
 * ev_uuid_format - write the canonical text form of a uuid (8-4-4-4-12 lower-case
 * hex) and its NUL into out. Never fails.
 */
void ev_uuid_format(const uint8_t uuid[16], char out[EV_UUID_TEXT]);

/*
 * ev_uuid7 - write a fresh UUIDv7 (RFC 9562: 48-bit Unix milliseconds, version and variant
 * bits, random bits from getrandom) into out: the id the server gives an event at ingest.
 * Strictly increasing within the process, also when the clock steps back and after fork().
 * Thread-safe. Cannot fail (without getrandom, a time-seeded generator; logged once).
 */
void ev_uuid7(uint8_t out[16]);

/*
 * ev_utf8_len - the length of the valid UTF-8 character at s (n > 0 bytes left), or 0 when
 * the bytes there are not one (overlong forms, surrogates, code points above U+10FFFF are
 * invalid, as for jansson). NUL is a valid character of length 1.
 */
size_t ev_utf8_len(const unsigned char *s, size_t n);

/* ev_uuid_parse - parse the canonical text form; returns 0 or DP_ERR_INVALID. */
int ev_uuid_parse(const char *s, uint8_t out[16]);

#endif
