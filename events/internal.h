/*
 * internal.h - helpers shared by the files of events/ and by nothing else:
 * field-table checking (struct ev_field itself is public: GET /v1/types shows it), error
 * texts, COPY row building, calendar arithmetic.
 * Not a public header: server/ and loader/ include events/events.h only.
 */
#ifndef DP_EVENTS_INTERNAL_H
#define DP_EVENTS_INTERNAL_H

#include <stdarg.h>

#include "events/events.h"

/* Largest epoch second accepted for integer timestamps: 9999-12-31T23:59:59Z. */
#define EV_EPOCH_MAX INT64_C(253402300799)

/*
 * The smallest value taken for an epoch in milliseconds in messages: 2001-09-09. Smaller ones
 * out of range are not called milliseconds: clients that send milliseconds send today's.
 */
#define EV_EPOCH_MS_MIN INT64_C(1000000000000)

/* The longest piece of client text (a key, an event name) quoted in a message. */
#define EV_QUOTE_MAX 48

/*
 * ev_fields_check - the common shape check of a type: every key of obj (except
 * "event_name" and "idempotency_key", checked by the dispatcher) must be in fields; every
 * required field present; then each present field's check, in table order. At most 32
 * fields.
 * Returns 0 or DP_ERR_INVALID with the message in err.
 */
int ev_fields_check(const json_t *obj, const struct ev_field *fields, size_t n_fields,
                    char err[EV_ERR_MAX]);

/* ev_unknown_field - "key: unknown field", the key escaped and cut; returns DP_ERR_INVALID. */
int ev_unknown_field(char err[EV_ERR_MAX], const char *key, size_t key_len);

/* ev_errf - format a message into err; always returns DP_ERR_INVALID. */
/* Ask b's budget (b->charge) for bytes. Returns 0, or DP_ERR_BUSY when it refuses them. */
int ev_batch_charge(struct ev_batch *b, size_t bytes);

/* The beginnings of the keys ev_segment_key derives, which no client key may have
 * (ev_key_derived): a message's, and its track's copy in its declared type's table. */
#define SEGMENT_KEY_PREFIX "sk:"
#define SEGMENT_KEY_HASH_PREFIX "sk-sha256:"
#define SEGMENT_TYPED_KEY_PREFIX "st:"
#define SEGMENT_TYPED_KEY_HASH_PREFIX "st-sha256:"

/* ev_key_check for a key the server derives itself (ev_segment_key): it alone may begin as
 * ev_key_derived says. Same returns. */
int ev_key_check_derived(const char *key, size_t len, const char *what, char err[EV_ERR_MAX]);

int ev_errf(char err[EV_ERR_MAX], const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ev_type_err - "name: expected WANT, got <type of v>"; returns DP_ERR_INVALID. */
int ev_type_err(char err[EV_ERR_MAX], const char *name, const char *want, const json_t *v);

/* ev_json_kind - a JSON type as clients know it: "object", "number", "boolean", ... */
const char *ev_json_kind(const json_t *v);

/*
 * ev_quote - write s (n bytes) into dst (cap bytes, cap > 8) as a printable
 * double-quoted text: control bytes, '"', '\\' and invalid UTF-8 escaped,
 * cut after EV_QUOTE_MAX input bytes with "...". Always NUL-terminates.
 */
void ev_quote(char *dst, size_t cap, const char *s, size_t n);

/*
 * ev_sanitize - copy s (n bytes) into dst (cap bytes) keeping valid
 * printable UTF-8 and escaping everything else as \xNN, so that the result can
 * go into a JSON answer. Always NUL-terminates; cuts at a character boundary.
 */
void ev_sanitize(char *dst, size_t cap, const char *s, size_t n);

/*
 * Deepest nesting handed to jansson. jansson recurses once per level (its own limit is
 * 2048) and civetweb's worker threads have small stacks (Debian's build: ~900 levels
 * overflow one), so 100,000 '[' crashed the server with SIGSEGV.
 */
#define EV_MAX_DEPTH 128

/*
 * ev_too_deep_at - the offset in s (len bytes) where the value at p nests deeper than
 * EV_MAX_DEPTH, or len if it does not (or is no object or array) (fastjson.c).
 */
size_t ev_too_deep_at(const char *s, size_t len, size_t p);

/*
 * ev_json_fast - parse the JSON value at the start of s (n bytes) into a
 * jansson value, fast, for the common case; *end gets the offset after it.
 * Returns NULL for anything it does not handle or that is not valid: the
 * caller then asks jansson, whose answer and error text are the reference.
 * Never accepts a text jansson (with JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK
 * | JSON_REJECT_DUPLICATES) rejects, and builds the same value. Caller decrefs.
 */
json_t *ev_json_fast(const char *s, size_t n, size_t *end);

/* Field checks shared by several types. Each returns 0 or DP_ERR_INVALID. */
int ev_check_int(const json_t *v, const char *name, char err[EV_ERR_MAX]);
int ev_check_string(const json_t *v, const char *name, char err[EV_ERR_MAX]);
int ev_check_nonempty_string(const json_t *v, const char *name, char err[EV_ERR_MAX]);
int ev_check_object(const json_t *v, const char *name, char err[EV_ERR_MAX]);
/* An integer epoch second in [0, EV_EPOCH_MAX]. */
/*
 * ev_check_jsonb_numbers - whether every number in json (len bytes, a valid JSON value) is
 * one PostgreSQL's numeric, and so jsonb, accepts (1e-20000 is not). Pure.
 * Returns 0, or DP_ERR_INVALID with "metadata.a[2]: number 1e-20000 is out of PostgreSQL's
 * numeric range" in err (the path of the first bad number).
 */
int ev_check_jsonb_numbers(const char *json, size_t len, char err[EV_ERR_MAX]);

int ev_check_epoch_int(const json_t *v, const char *name, char err[EV_ERR_MAX]);
/* An absolute http(s) URL with a host, checked with uriparser (check.c). */
int ev_check_url(const json_t *v, const char *name, char err[EV_ERR_MAX]);
/* An IPv4 or IPv6 address as inet_pton reads them (check.c). */
int ev_check_ip(const json_t *v, const char *name, char err[EV_ERR_MAX]);

/*
 * ev_parse_rfc3339 - an RFC 3339 date-time with a UTC offset or Z (s, n bytes)
 * into microseconds since the epoch, UTC; every field range-checked, years
 * 0001-9999 in UTC (check.c). Returns 0 or DP_ERR_INVALID with
 * "name: problem" in err.
 */
int ev_parse_rfc3339(const char *s, size_t n, const char *name, int64_t *out, char err[EV_ERR_MAX]);

/*
 * ev_epoch_range_err - the message for an epoch second t outside [0, EV_EPOCH_MAX]. When t
 * would be a plausible epoch in milliseconds (t >= EV_EPOCH_MS_MIN, t / 1000 in range) it
 * says so and gives the seconds:
 * "name: T looks like milliseconds: expected integer epoch seconds (T/1000)"; otherwise
 * "name: out of range (0 to EV_EPOCH_MAX epoch seconds)". Returns DP_ERR_INVALID.
 */
int ev_epoch_range_err(char err[EV_ERR_MAX], const char *name, int64_t t);

/*
 * ev_epoch_real_err - the message for a JSON real v where integer epoch seconds are
 * expected: "name: expected integer epoch seconds, got floating-point number V", plus
 * " (it looks like milliseconds)" when it would be a plausible one. Returns DP_ERR_INVALID.
 */
int ev_epoch_real_err(char err[EV_ERR_MAX], const char *name, const json_t *v);

/*
 * ev_member_span - find the value of the top-level member key of the JSON
 * object text json (len bytes, already known to parse) and give its exact
 * bytes. Keys written with escapes are compared decoded.
 * Returns 0 with *v, *v_len set, DP_ERR_NOTFOUND, DP_ERR_INVALID (not an
 * object text), DP_ERR_NOMEM.
 */
int ev_member_span(const char *json, size_t len, const char *key, const char **v, size_t *v_len);

/*
 * A COPY row under construction, in the format of its buffer (struct ev_buf's binary: text
 * or binary). The first error sticks: later calls do nothing, and ev_row_end() removes the
 * partial row from the buffer.
 */
struct ev_row {
    struct ev_buf *b;
    size_t start; /* b->len when the row began */
    size_t cols;  /* columns written so far */
    int rc;       /* first error, 0 while all went well */
};

void ev_row_begin(struct ev_row *r, struct ev_buf *b);
void ev_row_text(struct ev_row *r, const char *s, size_t n);
void ev_row_cstr(struct ev_row *r, const char *s);
void ev_row_null(struct ev_row *r);
void ev_row_i64(struct ev_row *r, int64_t v);
void ev_row_f64(struct ev_row *r, double v);
void ev_row_uuid(struct ev_row *r, const uint8_t uuid[16]);
void ev_row_time(struct ev_row *r, int64_t us);
/*
 * ev_row_key - two columns: ev's idempotency key (text) and its digest (bytea, ev_digest of
 * ev's bytes), or two NULLs when it has no key.
 */
void ev_row_key(struct ev_row *r, const struct ev_stored *ev);
/* ev_row_source - ev's source (the API key's name) as a text column, or NULL without one. */
void ev_row_source(struct ev_row *r, const struct ev_stored *ev);
/* ev_row_end - finish the row with '\n'; returns 0 or the first error. */
int ev_row_end(struct ev_row *r);

/* Days since 1970-01-01 of a proleptic Gregorian date (month 1-12, day 1-31). */
int64_t ev_days_from_civil(int64_t y, int m, int d);
/* Days in month m (1-12) of year y. */
int ev_days_in_month(int64_t y, int m);

#endif
