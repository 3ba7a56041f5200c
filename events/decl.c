/*
 * decl.c - the one generic handler of the event types declared in the
 * configuration (docs/event-types.md): a declared type is one more struct ev_type
 * in the registry, whose validate and encode_row read its declaration. Pure
 * like every handler; patterns are compiled once, when the type is built.
 */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etc/decl.h"
#include "etc/err.h"
#include "etc/plant.h"
#include "events/internal.h"

/* A field at run time: its declaration and its compiled pattern. */
struct decl_field {
    const struct dp_field_decl *d; /* in the owning struct declared's decl */
    regex_t re;
    bool has_re;
};

/* A declared type. type comes first: the registry's pointer is this struct's. */
struct declared {
    struct ev_type type;
    struct dp_type_decl decl;  /* own copy of the declaration */
    struct decl_field *fields; /* decl.n_fields of them, in declaration order */
    size_t *by_name;           /* field indexes sorted by name, for key lookup */
    struct ev_column *columns;
    struct ev_field *info; /* what GET /v1/types and the OpenAPI document show */
    char *table;           /* the quoted table name */
    char *ddl;
    char *copy_columns;
    char *get_sql;
};

static const char *const sql_types[] = {
    [DP_FIELD_STRING] = "text",
    [DP_FIELD_INTEGER] = "bigint",
    [DP_FIELD_NUMBER] = "double precision",
    [DP_FIELD_BOOLEAN] = "boolean",
    [DP_FIELD_TIMESTAMP] = "timestamp with time zone",
    [DP_FIELD_IP] = "inet",
    [DP_FIELD_URL] = "text",
    [DP_FIELD_UUID] = "uuid",
    [DP_FIELD_OBJECT] = "jsonb",
    [DP_FIELD_ARRAY] = "jsonb",
};

/* Whether d stores any of an event's JSON as jsonb (object, array, the kept unknown keys). */
static bool
declared_has_jsonb(const struct dp_type_decl *d)
{
    bool jsonb = d->keep_unknown;

    for (size_t i = 0; i < d->n_fields; i++) {
        enum dp_field_type t = d->fields[i].type;

        jsonb = jsonb || t == DP_FIELD_OBJECT || t == DP_FIELD_ARRAY;
    }
    return jsonb;
}

/*
 * Whether d's rows may be COPYed in binary: every column is written with its SQL type
 * (text, bigint, timestamptz, uuid). Numbers (an integer into double precision), booleans,
 * ip (text into inet) and jsonb columns stay in the text format.
 */
static bool
declared_copy_binary(const struct dp_type_decl *d)
{
    for (size_t i = 0; i < d->n_fields; i++) {
        switch (d->fields[i].type) {
        case DP_FIELD_STRING:
        case DP_FIELD_URL:
        case DP_FIELD_INTEGER:
        case DP_FIELD_TIMESTAMP:
        case DP_FIELD_UUID:
            break;
        default:
            return false;
        }
    }
    return !d->keep_unknown;
}

static const struct declared *
declared_of(const struct ev_type *t)
{
    return (const struct declared *)(const void *)t;
}

/* ---- checking one event ---------------------------------------------------------------- */

/* The index of the field named key (key_len bytes), or -1. */
static long
field_index(const struct declared *x, const char *key)
{
    size_t lo = 0;
    size_t hi = x->decl.n_fields;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(key, x->decl.fields[x->by_name[mid]].name);

        if (c == 0) {
            return (long)x->by_name[mid];
        }
        if (c < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return -1;
}

/* Characters (code points) of a valid UTF-8 text. */
static size_t
utf8_chars(const char *s, size_t n)
{
    size_t chars = 0;

    for (size_t i = 0; i < n; i++) {
        chars += ((unsigned char)s[i] & 0xc0) != 0x80;
    }
    return chars;
}

static int
enum_err(const struct dp_field_decl *d, char err[EV_ERR_MAX])
{
    char list[EV_ERR_MAX];
    size_t used = 0;

    list[0] = '\0';
    for (size_t i = 0; i < d->n_enums && used + 8 < sizeof(list); i++) {
        int w =
            snprintf(list + used, sizeof(list) - used, "%s\"%s\"", i > 0 ? ", " : "", d->enums[i]);

        used = w < 0 ? used : used + (size_t)w;
    }
    return ev_errf(err, "%s: must be one of %s", d->name, list);
}

/* max_length, enum and pattern of a string or url field whose value v is a string. */
static int
check_text(const struct decl_field *f, const json_t *v, char err[EV_ERR_MAX])
{
    const struct dp_field_decl *d = f->d;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);

    if (d->max_length > 0 && n > (size_t)d->max_length &&
        utf8_chars(s, n) > (size_t)d->max_length) {
        return ev_errf(err, "%s: longer than %lld characters", d->name, (long long)d->max_length);
    }
    if (d->n_enums > 0) {
        size_t i;

        for (i = 0; i < d->n_enums; i++) {
            if (strlen(d->enums[i]) == n && memcmp(d->enums[i], s, n) == 0) {
                break;
            }
        }
        if (i == d->n_enums) {
            return enum_err(d, err);
        }
    }
    if (f->has_re && regexec(&f->re, s, 0, NULL, 0) != 0) {
        char q[EV_QUOTE_MAX * 4 + 8];

        ev_quote(q, sizeof(q), d->pattern, strlen(d->pattern));
        return ev_errf(err, "%s: does not match the pattern %s", d->name, q);
    }
    return 0;
}

static int
check_integer(const struct dp_field_decl *d, const json_t *v, char err[EV_ERR_MAX])
{
    json_int_t i;

    if (!json_is_integer(v)) {
        return ev_type_err(err, d->name, "integer", v);
    }
    i = json_integer_value(v);
    if (d->has_min && i < d->min_int) {
        return ev_errf(err, "%s: must be at least %lld", d->name, (long long)d->min_int);
    }
    if (d->has_max && i > d->max_int) {
        return ev_errf(err, "%s: must be at most %lld", d->name, (long long)d->max_int);
    }
    return 0;
}

static int
check_number(const struct dp_field_decl *d, const json_t *v, char err[EV_ERR_MAX])
{
    double x;

    if (!json_is_number(v)) {
        return ev_type_err(err, d->name, "number", v);
    }
    x = json_number_value(v);
    if (d->has_min && x < d->min_num) {
        return ev_errf(err, "%s: must be at least %.15g", d->name, d->min_num);
    }
    if (d->has_max && x > d->max_num) {
        return ev_errf(err, "%s: must be at most %.15g", d->name, d->max_num);
    }
    return 0;
}

/* A timestamp's instant in microseconds since the epoch, UTC. */
static int
timestamp_value(const char *name, const json_t *v, int64_t *us, char err[EV_ERR_MAX])
{
    int rc;

    if (json_is_integer(v)) {
        rc = ev_check_epoch_int(v, name, err);
        /* Only a value in range is scaled: a huge one would overflow (found by fuzz_events). */
        *us = rc == 0 ? json_integer_value(v) * 1000000 : 0;
        return rc;
    }
    if (json_is_string(v)) {
        return ev_parse_rfc3339(json_string_value(v), json_string_length(v), name, us, err);
    }
    return ev_type_err(err, name, "epoch seconds (integer) or RFC 3339 date-time (string)", v);
}

/* One present, non-null field value. */
static int
check_field(const struct decl_field *f, const json_t *v, char err[EV_ERR_MAX])
{
    const struct dp_field_decl *d = f->d;
    uint8_t uuid[16];
    int64_t us;
    int rc;

    switch (d->type) {
    case DP_FIELD_STRING:
        if (!json_is_string(v)) {
            return ev_type_err(err, d->name, "string", v);
        }
        return check_text(f, v, err);
    case DP_FIELD_URL:
        rc = ev_check_url(v, d->name, err);
        return rc != 0 ? rc : check_text(f, v, err);
    case DP_FIELD_INTEGER:
        return check_integer(d, v, err);
    case DP_FIELD_NUMBER:
        return check_number(d, v, err);
    case DP_FIELD_BOOLEAN:
        return json_is_boolean(v) ? 0 : ev_type_err(err, d->name, "boolean", v);
    case DP_FIELD_TIMESTAMP:
        return timestamp_value(d->name, v, &us, err);
    case DP_FIELD_IP:
        return ev_check_ip(v, d->name, err);
    case DP_FIELD_UUID:
        if (!json_is_string(v)) {
            return ev_type_err(err, d->name, "string", v);
        }
        if (ev_uuid_parse(json_string_value(v), uuid) != 0) {
            return ev_errf(err, "%s: not a UUID (8-4-4-4-12 hexadecimal digits)", d->name);
        }
        return 0;
    case DP_FIELD_OBJECT:
        return ev_check_object(v, d->name, err);
    case DP_FIELD_ARRAY:
        return json_is_array(v) ? 0 : ev_type_err(err, d->name, "array", v);
    }
    return ev_errf(err, "%s: internal error: unknown field type", d->name);
}

/*
 * The walk ev_fields_check does for the built-ins, in the same order (unknown
 * keys, then missing required fields, then each field in declaration order),
 * so a declared twin of a built-in type answers with the same texts.
 * found[i] receives field i's value, NULL when absent or null.
 */
static int
check_object(const struct declared *x, const json_t *obj, const json_t **found,
             char err[EV_ERR_MAX])
{
    size_t n = x->decl.n_fields;

    memset(found, 0, n * sizeof(*found));
    for (void *it = json_object_iter((json_t *)obj); it != NULL;
         it = json_object_iter_next((json_t *)obj, it)) {
        const char *key = json_object_iter_key(it);
        size_t key_len = json_object_iter_key_len(it);
        long i;

        /* Both reserved in every type: the dispatcher checked them (the key is the key).
         * Planted (etc/plant.h): the key taken for an unknown field. */
        if (strcmp(key, "event_name") == 0 ||
            (strcmp(key, EV_KEY_FIELD) == 0 && !DP_PLANTED("declared_key_unknown"))) {
            continue;
        }
        i = key_len == strlen(key) ? field_index(x, key) : -1;
        if (i < 0) {
            if (x->decl.keep_unknown && key_len == strlen(key)) {
                continue;
            }
            return ev_unknown_field(err, key, key_len);
        }
        found[i] = json_object_iter_value(it);
    }
    for (size_t i = 0; i < n; i++) {
        if (found[i] == NULL && x->decl.fields[i].required) {
            return ev_errf(err, "%s: required field missing", x->decl.fields[i].name);
        }
    }
    for (size_t i = 0; i < n; i++) {
        int rc;

        if (found[i] == NULL) {
            continue;
        }
        if (json_is_null(found[i]) && !x->decl.fields[i].required) {
            found[i] = NULL;
            continue;
        }
        rc = check_field(&x->fields[i], found[i], err);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static int
validate(const struct ev_type *t, const json_t *obj, char err[EV_ERR_MAX])
{
    const json_t *found[DP_TYPE_FIELDS_MAX];

    return check_object(declared_of(t), obj, found, err);
}

/* ---- encoding one event ---------------------------------------------------------------- */

/* Append s as the text of a JSON string: '"' and '\\' escaped, control bytes as \u00XX. */
static int
put_json_string(struct ev_buf *b, const char *s, size_t n)
{
    int rc = ev_buf_put(b, "\"", 1);

    for (size_t i = 0; rc == 0 && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];

        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            rc = ev_buf_put(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            rc = ev_buf_put(b, esc, 6);
        } else {
            rc = ev_buf_put(b, s + i, 1);
        }
    }
    return rc == 0 ? ev_buf_put(b, "\"", 1) : rc;
}

/*
 * The members of obj that are no field, as one JSON object text with the
 * client's own bytes for each value (NULL column when there are none).
 */
static int
row_extra(struct ev_row *row, const struct declared *x, const struct ev_stored *ev,
          const json_t *obj, char err[EV_ERR_MAX])
{
    struct ev_buf extra = {0};
    int rc = 0;

    for (void *it = json_object_iter((json_t *)obj); rc == 0 && it != NULL;
         it = json_object_iter_next((json_t *)obj, it)) {
        const char *key = json_object_iter_key(it);
        const char *v = NULL;
        size_t v_len = 0;

        if (strcmp(key, "event_name") == 0 || strcmp(key, EV_KEY_FIELD) == 0 ||
            field_index(x, key) >= 0) {
            continue;
        }
        rc = ev_member_span(ev->json, ev->json_len, key, &v, &v_len);
        if (rc != 0) {
            rc = rc == DP_ERR_NOMEM ? rc : ev_errf(err, "%s: cannot locate in event", key);
            break;
        }
        rc = ev_buf_put(&extra, extra.len == 0 ? "{" : ",", 1);
        if (rc == 0) {
            rc = put_json_string(&extra, key, strlen(key));
        }
        if (rc == 0) {
            rc = ev_buf_put(&extra, ":", 1);
        }
        if (rc == 0) {
            rc = ev_buf_put(&extra, v, v_len);
        }
    }
    if (rc == 0 && extra.len > 0) {
        rc = ev_buf_put(&extra, "}", 1);
    }
    if (rc == 0 && extra.len > 0) {
        ev_row_text(row, extra.data, extra.len);
    } else if (rc == 0) {
        ev_row_null(row);
    }
    ev_buf_free(&extra);
    return rc;
}

/* One field's column; v is NULL for SQL NULL. */
static int
row_field(struct ev_row *row, const struct dp_field_decl *d, const json_t *v,
          const struct ev_stored *ev, char err[EV_ERR_MAX])
{
    const char *span = NULL;
    size_t span_len = 0;
    uint8_t uuid[16];
    int64_t us = 0;
    int rc;

    if (v == NULL) {
        ev_row_null(row);
        return 0;
    }
    switch (d->type) {
    case DP_FIELD_STRING:
    case DP_FIELD_URL:
    case DP_FIELD_IP:
        ev_row_text(row, json_string_value(v), json_string_length(v));
        return 0;
    case DP_FIELD_INTEGER:
        ev_row_i64(row, json_integer_value(v));
        return 0;
    case DP_FIELD_NUMBER:
        if (json_is_integer(v)) {
            ev_row_i64(row, json_integer_value(v));
        } else {
            ev_row_f64(row, json_real_value(v));
        }
        return 0;
    case DP_FIELD_BOOLEAN:
        ev_row_cstr(row, json_is_true(v) ? "t" : "f");
        return 0;
    case DP_FIELD_TIMESTAMP:
        rc = timestamp_value(d->name, v, &us, err);
        ev_row_time(row, us);
        return rc;
    case DP_FIELD_UUID:
        rc = ev_uuid_parse(json_string_value(v), uuid);
        ev_row_uuid(row, uuid);
        return rc;
    case DP_FIELD_OBJECT:
    case DP_FIELD_ARRAY:
        /* The client's own bytes, so numbers keep their exact text in jsonb. */
        rc = ev_member_span(ev->json, ev->json_len, d->name, &span, &span_len);
        if (rc != 0) {
            return rc == DP_ERR_NOMEM ? rc : ev_errf(err, "%s: cannot locate in event", d->name);
        }
        ev_row_text(row, span, span_len);
        return 0;
    }
    return ev_errf(err, "%s: internal error: unknown field type", d->name);
}

static int
encode_row(const struct ev_type *t, const struct ev_stored *ev, const json_t *obj,
           struct ev_buf *out, char err[EV_ERR_MAX])
{
    const struct declared *x = declared_of(t);
    const json_t *found[DP_TYPE_FIELDS_MAX];
    struct ev_row row;
    int rc;

    rc = check_object(x, obj, found, err);
    if (rc != 0) {
        return rc;
    }
    ev_row_begin(&row, out);
    ev_row_uuid(&row, ev->uuid);
    for (size_t i = 0; rc == 0 && i < x->decl.n_fields; i++) {
        rc = row_field(&row, &x->decl.fields[i], found[i], ev, err);
    }
    if (rc == 0 && x->decl.keep_unknown) {
        rc = row_extra(&row, x, ev, obj, err);
    }
    ev_row_time(&row, ev->received_us);
    ev_row_key(&row, ev);
    ev_row_source(&row, ev);
    if (rc != 0) {
        row.rc = row.rc != 0 ? row.rc : rc;
    }
    return ev_row_end(&row);
}

/* ---- building the type ------------------------------------------------------------------ */

/* A NUL-terminated copy of b's text, or NULL (out of memory or an earlier error). */
static char *
sql_done(struct ev_buf *b, int rc)
{
    char *s = NULL;

    if (rc == 0 && ev_buf_put(b, "", 1) == 0) {
        s = b->data;
        b->data = NULL;
    }
    ev_buf_free(b);
    return s;
}

static int
build_sql(struct declared *x)
{
    const struct dp_type_decl *d = &x->decl;
    struct ev_buf ddl = {0};
    struct ev_buf cols = {0};
    struct ev_buf get = {0};
    char pk[DP_TYPE_NAME_MAX + 1];
    int rc;
    int rc_cols;

    /* The primary key is named so that no other table's name can be PostgreSQL's choice for
     * it ("<table>_pkey" would be another type's name); the unique index over
     * idempotency_key is the loader's (loader/decl.c), found by what it indexes. */
    dp_pg_derived_name(pk, DP_PG_PRIMARY_KEY, d->name);
    rc = ev_buf_put_strs(&ddl, "CREATE TABLE IF NOT EXISTS ", x->table, " (id uuid CONSTRAINT \"",
                         pk, "\" PRIMARY KEY", NULL);
    rc_cols = ev_buf_put_strs(&cols, "(id", NULL);
    for (size_t i = 0; i < d->n_fields; i++) {
        const struct dp_field_decl *f = &d->fields[i];

        if (rc == 0) {
            rc = ev_buf_put_strs(&ddl, ", \"", f->name, "\" ", sql_types[f->type],
                                 f->required ? " NOT NULL" : "", NULL);
        }
        if (rc_cols == 0) {
            rc_cols = ev_buf_put_strs(&cols, ", \"", f->name, "\"", NULL);
        }
    }
    if (rc == 0) {
        rc = ev_buf_put_strs(
            &ddl, d->keep_unknown ? ", extra jsonb" : "",
            ", idempotency_key text, idempotency_digest bytea, source text, "
            "received_at timestamptz NOT NULL, loaded_at timestamptz NOT NULL DEFAULT "
            "now())",
            NULL);
    }
    if (rc_cols == 0) {
        rc_cols =
            ev_buf_put_strs(&cols, d->keep_unknown ? ", extra" : "",
                            ", received_at, idempotency_key, idempotency_digest, source)", NULL);
    }
    x->ddl = sql_done(&ddl, rc);
    x->copy_columns = sql_done(&cols, rc_cols);
    /* t.*, not t: a field may be named t, and a bare t would then be that column. */
    x->get_sql = sql_done(&get, ev_buf_put_strs(&get, "SELECT row_to_json(t.*)::text FROM ",
                                                x->table, " t WHERE t.id = $1::uuid", NULL));
    return x->ddl && x->copy_columns && x->get_sql ? 0 : DP_ERR_NOMEM;
}

/* qsort_r comparator of field indexes by name. */
static int
by_name_cmp(const void *a, const void *b, void *arg)
{
    const struct dp_type_decl *d = arg;

    return strcmp(d->fields[*(const size_t *)a].name, d->fields[*(const size_t *)b].name);
}

static int
build_fields(struct declared *x)
{
    size_t n = x->decl.n_fields;

    x->fields = calloc(n > 0 ? n : 1, sizeof(*x->fields));
    x->by_name = calloc(n > 0 ? n : 1, sizeof(*x->by_name));
    x->columns = calloc(n > 0 ? n : 1, sizeof(*x->columns));
    x->info = calloc(n > 0 ? n : 1, sizeof(*x->info));
    if (x->fields == NULL || x->by_name == NULL || x->columns == NULL || x->info == NULL) {
        return DP_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const struct dp_field_decl *f = &x->decl.fields[i];

        x->fields[i].d = f;
        x->by_name[i] = i;
        x->columns[i] = (struct ev_column){f->name, sql_types[f->type], f->required};
        /* The declaration's own words; validate checks it, so no check function here. An
         * optional field takes JSON null as absent. */
        x->info[i] = (struct ev_field){
            .name = f->name,
            .type = dp_field_type_name(f->type),
            .required = f->required,
            .null_ok = !f->required,
        };
        if (f->pattern != NULL) {
            if (regcomp(&x->fields[i].re, f->pattern, REG_EXTENDED | REG_NOSUB) != 0) {
                return DP_ERR_INVALID;
            }
            x->fields[i].has_re = true;
        }
    }
    qsort_r(x->by_name, n, sizeof(*x->by_name), by_name_cmp, &x->decl);
    return 0;
}

int
ev_declared_create(const struct dp_type_decl *d, struct ev_type **out)
{
    struct declared *x = NULL;
    int rc;

    *out = NULL;
    if (d->n_fields > DP_TYPE_FIELDS_MAX) {
        return DP_ERR_INVALID;
    }
    x = calloc(1, sizeof(*x));
    if (x == NULL) {
        return DP_ERR_NOMEM;
    }
    rc = dp_type_decl_copy(&x->decl, d);
    if (rc != 0) {
        goto out;
    }
    rc = build_fields(x);
    if (rc != 0) {
        goto out;
    }
    if (asprintf(&x->table, "\"%s\"", x->decl.name) < 0) {
        x->table = NULL;
        rc = DP_ERR_NOMEM;
        goto out;
    }
    rc = build_sql(x);
    if (rc != 0) {
        goto out;
    }
    x->type = (struct ev_type){
        .name = x->decl.name,
        .table = x->table,
        .ddl = x->ddl,
        .copy_columns = x->copy_columns,
        .load = EV_LOAD_APPEND,
        .keyed = true,
        .copy_binary = declared_copy_binary(&x->decl),
        .fields = x->info,
        .n_fields = x->decl.n_fields,
        .open = x->decl.keep_unknown,
        .stage_ddl = NULL,
        .upsert_sql = NULL,
        .id_kind = EV_ID_UUID,
        .jsonb_numbers = declared_has_jsonb(&x->decl),
        .get_sql = x->get_sql,
        .validate = validate,
        .encode_row = encode_row,
        .decl = &x->decl,
        .columns = x->columns,
        .n_columns = x->decl.n_fields,
    };
    *out = &x->type;
    x = NULL;
out:
    ev_declared_destroy(x != NULL ? &x->type : NULL);
    return rc;
}

void
ev_declared_destroy(struct ev_type *t)
{
    struct declared *x = (struct declared *)(void *)t;

    if (x == NULL) {
        return;
    }
    for (size_t i = 0; x->fields != NULL && i < x->decl.n_fields; i++) {
        if (x->fields[i].has_re) {
            regfree(&x->fields[i].re);
        }
    }
    free(x->fields);
    free(x->by_name);
    free(x->columns);
    free(x->info);
    free(x->table);
    free(x->ddl);
    free(x->copy_columns);
    free(x->get_sql);
    dp_type_decl_free(&x->decl);
    free(x);
}
