/*
 * decl_conf.c - the "types" key: checks every declaration of a file's libconfig
 * tree with its key path, merges them type by type, and builds struct
 * dp_types from the effective tree. Patterns are compiled here only to be
 * checked; events/ compiles its own once at start. Never reads a file itself.
 */
#include "decl.h"
#include "err.h"
#include "plant.h"
#include "settings.h"

#include <inttypes.h>
#include <libconfig.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH_MAX_LEN 512

/*
 * Names a declared type cannot take, because its table would share its schema with them:
 * tests/unit/check_types.c checks the built-ins are all here. Every type's table is created under
 * its declared name (users query it), so it must never be the name of a relation datapipe
 * creates otherwise or of one PostgreSQL finds first (pg_catalog is searched before the schema).
 */
static const struct {
    const char *name;
    const char *why;
} reserved_names[] = {
    {"crash_report", "a built-in event type"},
    {"ad_event", "a built-in event type"},
    {"user_login", "a built-in event type"},
    {"product", "a built-in event type"},
    {"data_sample", "a built-in event type"},
    {"identifies", "a built-in event type (the Segment tracking API's)"},
    {"tracks", "a built-in event type (the Segment tracking API's)"},
    {"pages", "a built-in event type (the Segment tracking API's)"},
    {"screens", "a built-in event type (the Segment tracking API's)"},
    {"groups", "a built-in event type (the Segment tracking API's)"},
    {"aliases", "a built-in event type (the Segment tracking API's)"},
    {"users", "a built-in event type (the Segment tracking API's)"},
    {"dead_letter", "one of the appliance's own tables"},
    {"loader_batches", "one of the appliance's own tables"},
    {"queue_owners", "one of the appliance's own tables"},
    {"queue_watermarks", "one of the appliance's own tables"},
    {"product_stage", "one of the appliance's own tables"},
    {"users_stage", "one of the appliance's own tables"},
    {"watermark", "one of the appliance's own tables"},
};

/* What PostgreSQL named, or earlier releases named, after the tables above. */
static const char *const reserved_suffixes[] = {"_pkey", "_idempotency_key", NULL};
static const char *const reserved_derived[] = {"dead_letter_seq_seq", "dead_letter_event_id", NULL};
#define RESERVED_DERIVED "an index or sequence of one of the appliance's own tables"

/* Columns every declared table has besides its fields. */
static const char *const reserved_columns[] = {
    "id",     "event_name", "idempotency_key", "idempotency_digest",
    "source", "extra",      "received_at",     "loaded_at",
    NULL,
};

/* PostgreSQL's system columns: every table has them, so no field can be a column so named. */
static const char *const system_columns[] = {
    "tableoid", "xmin", "cmin", "xmax", "cmax", "ctid", NULL,
};

/* The state of one dp_types_check walk. */
struct walk {
    void (*err)(void *arg, const char *text);
    void *arg;
    int count;
};

static void walk_err(struct walk *w, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
walk_err(struct walk *w, const char *path, const char *fmt, ...)
{
    char msg[PATH_MAX_LEN];
    char line[PATH_MAX_LEN * 2];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(line, sizeof(line), "%s: %s", path, msg);
    w->err(w->arg, line);
    w->count++;
}

/* dst = "a.b" (cut to PATH_MAX_LEN; key paths that long are reported cut). */
static void
path_join(char dst[PATH_MAX_LEN], const char *a, const char *b)
{
    if (snprintf(dst, PATH_MAX_LEN, "%s.%s", a, b) >= PATH_MAX_LEN) {
        dst[PATH_MAX_LEN - 1] = '\0';
    }
}

/* Whether name is one of the reserved names followed by one of reserved_suffixes. */
static bool
name_derived(const char *name)
{
    for (const char *const *d = reserved_derived; *d != NULL; d++) {
        if (strcmp(*d, name) == 0) {
            return true;
        }
    }
    for (size_t i = 0; i < sizeof(reserved_names) / sizeof(reserved_names[0]); i++) {
        size_t n = strlen(reserved_names[i].name);

        if (strncmp(reserved_names[i].name, name, n) != 0) {
            continue;
        }
        for (const char *const *x = reserved_suffixes; *x != NULL; x++) {
            if (strcmp(name + n, *x) == 0) {
                return true;
            }
        }
    }
    return false;
}

const char *
dp_types_name_reserved(const char *name)
{
    for (size_t i = 0; i < sizeof(reserved_names) / sizeof(reserved_names[0]); i++) {
        if (strcmp(reserved_names[i].name, name) == 0) {
            return reserved_names[i].why;
        }
    }
    if (strncmp(name, "pg_", 3) == 0) {
        return "PostgreSQL (names beginning pg_ are its system catalogs')";
    }
    if (strncmp(name, DP_PG_PREFIX, strlen(DP_PG_PREFIX)) == 0) {
        return "datapipe's indexes, constraints and temporary tables (names beginning " DP_PG_PREFIX
               ")";
    }
    return name_derived(name) ? RESERVED_DERIVED : NULL;
}

void
dp_pg_derived_name(char out[DP_TYPE_NAME_MAX + 1], const char *prefix, const char *name)
{
    uint64_t h = UINT64_C(14695981039346656037);

    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
        h = (h ^ *p) * UINT64_C(1099511628211);
    }
    snprintf(out, DP_TYPE_NAME_MAX + 1, "%.*s%016" PRIx64, DP_TYPE_NAME_MAX - 16, prefix, h);
}

static bool
is_int(const config_setting_t *s)
{
    return config_setting_type(s) == CONFIG_TYPE_INT || config_setting_type(s) == CONFIG_TYPE_INT64;
}

static bool
is_number(const config_setting_t *s)
{
    return is_int(s) || config_setting_type(s) == CONFIG_TYPE_FLOAT;
}

static double
number_value(const config_setting_t *s)
{
    return is_int(s) ? (double)config_setting_get_int64(s) : config_setting_get_float(s);
}

/* [a-z][a-z0-9_]*, at most DP_TYPE_NAME_MAX bytes. */
static bool
name_ok(const char *name)
{
    size_t n = strlen(name);

    if (n == 0 || n > DP_TYPE_NAME_MAX || name[0] < 'a' || name[0] > 'z') {
        return false;
    }
    for (size_t i = 1; i < n; i++) {
        char c = name[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
            return false;
        }
    }
    return true;
}

/* ---- checking ------------------------------------------------------------------------- */

/* The field's "type", or -1 (reported) when missing or bad. */
static int
check_field_type(struct walk *w, const config_setting_t *f, const char *path)
{
    const config_setting_t *t = config_setting_get_member(f, "type");
    char p[PATH_MAX_LEN];
    enum dp_field_type ft;

    path_join(p, path, "type");
    if (t == NULL) {
        walk_err(w, p,
                 "required (one of string, integer, number, boolean, timestamp, ip, "
                 "url, uuid, object, array)");
        return -1;
    }
    if (config_setting_type(t) != CONFIG_TYPE_STRING) {
        walk_err(w, p, "expected string, got %s", dp_setting_kind_name(t));
        return -1;
    }
    if (dp_field_type_parse(config_setting_get_string(t), &ft) != 0) {
        walk_err(w, p,
                 "unknown field type \"%s\" (one of string, integer, number, boolean, "
                 "timestamp, ip, url, uuid, object, array)",
                 config_setting_get_string(t));
        return -1;
    }
    return (int)ft;
}

static void
check_enum(struct walk *w, const config_setting_t *c, const char *p)
{
    int n;

    if (config_setting_type(c) != CONFIG_TYPE_ARRAY && config_setting_type(c) != CONFIG_TYPE_LIST) {
        walk_err(w, p, "expected array of strings, got %s", dp_setting_kind_name(c));
        return;
    }
    n = config_setting_length(c);
    if (n == 0) {
        walk_err(w, p, "must not be empty");
        return;
    }
    if (n > DP_ENUM_MAX) {
        walk_err(w, p, "more than %d values", DP_ENUM_MAX);
        return;
    }
    for (int i = 0; i < n; i++) {
        const config_setting_t *el = config_setting_get_elem(c, (unsigned)i);
        char pe[PATH_MAX_LEN];

        if (config_setting_type(el) != CONFIG_TYPE_STRING) {
            if (snprintf(pe, sizeof(pe), "%s[%d]", p, i) >= (int)sizeof(pe)) {
                pe[sizeof(pe) - 1] = '\0';
            }
            walk_err(w, pe, "expected string, got %s", dp_setting_kind_name(el));
        }
    }
}

static void
check_pattern(struct walk *w, const config_setting_t *c, const char *p)
{
    char msg[256];
    regex_t re;
    int rc;

    if (config_setting_type(c) != CONFIG_TYPE_STRING) {
        walk_err(w, p, "expected string, got %s", dp_setting_kind_name(c));
        return;
    }
    rc = regcomp(&re, config_setting_get_string(c), REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        regerror(rc, &re, msg, sizeof(msg));
        walk_err(w, p, "not a POSIX extended regular expression: %s", msg);
        return;
    }
    regfree(&re);
}

/* min or max (c, at p) of a field of type ft. */
static void
check_bound(struct walk *w, const config_setting_t *c, const char *p, enum dp_field_type ft)
{
    if (ft != DP_FIELD_INTEGER && ft != DP_FIELD_NUMBER) {
        walk_err(w, p, "only for integer and number fields");
    } else if (ft == DP_FIELD_INTEGER && !is_int(c)) {
        walk_err(w, p, "expected integer, got %s", dp_setting_kind_name(c));
    } else if (!is_number(c)) {
        walk_err(w, p, "expected number, got %s", dp_setting_kind_name(c));
    }
}

/* One constraint c (named key, at p) of a field of type ft. */
static void
check_constraint(struct walk *w, const config_setting_t *c, const char *key, const char *p,
                 enum dp_field_type ft)
{
    bool textual = ft == DP_FIELD_STRING || ft == DP_FIELD_URL;

    if (strcmp(key, "required") == 0) {
        if (config_setting_type(c) != CONFIG_TYPE_BOOL) {
            walk_err(w, p, "expected boolean, got %s", dp_setting_kind_name(c));
        }
    } else if (strcmp(key, "max_length") == 0) {
        if (!textual) {
            walk_err(w, p, "only for string and url fields");
        } else if (!is_int(c)) {
            walk_err(w, p, "expected integer, got %s", dp_setting_kind_name(c));
        } else if (config_setting_get_int64(c) < 1 || config_setting_get_int64(c) > 1 << 30) {
            walk_err(w, p, "must be 1..%d", 1 << 30);
        }
    } else if (strcmp(key, "min") == 0 || strcmp(key, "max") == 0) {
        check_bound(w, c, p, ft);
    } else if (strcmp(key, "enum") == 0) {
        if (ft != DP_FIELD_STRING) {
            walk_err(w, p, "only for string fields");
        } else {
            check_enum(w, c, p);
        }
    } else if (strcmp(key, "pattern") == 0) {
        if (!textual) {
            walk_err(w, p, "only for string and url fields");
        } else {
            check_pattern(w, c, p);
        }
    } else {
        walk_err(w, p,
                 "unknown key (a field has type, required, max_length, min, max, enum, "
                 "pattern)");
    }
}

static void
check_field(struct walk *w, const config_setting_t *f, const char *path)
{
    const char *name = config_setting_name(f);
    const config_setting_t *min;
    const config_setting_t *max;
    int ft;

    if (!name_ok(name)) {
        walk_err(w, path,
                 "invalid name (lower-case letters, digits and _, starting with "
                 "a letter, at most %d bytes)",
                 DP_TYPE_NAME_MAX);
        return;
    }
    for (const char *const *r = reserved_columns; *r != NULL; r++) {
        if (strcmp(*r, name) == 0) {
            walk_err(w, path, "reserved: every declared table has a column \"%s\" of its own",
                     name);
            return;
        }
    }
    for (const char *const *r = system_columns; *r != NULL; r++) {
        /* Planted (plant.h): system column names taken as fields. */
        if (strcmp(*r, name) == 0 && !DP_PLANTED("system_column_field")) {
            walk_err(w, path, "reserved: PostgreSQL gives every table a system column \"%s\"",
                     name);
            return;
        }
    }
    if (config_setting_type(f) != CONFIG_TYPE_GROUP) {
        walk_err(w, path, "expected object, got %s", dp_setting_kind_name(f));
        return;
    }
    ft = check_field_type(w, f, path);
    if (ft < 0) {
        return;
    }
    for (int i = 0; i < config_setting_length(f); i++) {
        const config_setting_t *c = config_setting_get_elem(f, (unsigned)i);
        const char *key = config_setting_name(c);
        char p[PATH_MAX_LEN];

        if (strcmp(key, "type") == 0) {
            continue;
        }
        path_join(p, path, key);
        check_constraint(w, c, key, p, (enum dp_field_type)ft);
    }
    min = config_setting_get_member(f, "min");
    max = config_setting_get_member(f, "max");
    if (min != NULL && max != NULL && is_number(min) && is_number(max) &&
        ((is_int(min) && is_int(max))
             ? config_setting_get_int64(min) > config_setting_get_int64(max)
             : number_value(min) > number_value(max))) {
        char p[PATH_MAX_LEN];

        path_join(p, path, "min");
        walk_err(w, p, "greater than max");
    }
}

static void
check_unknown_fields(struct walk *w, const config_setting_t *u, const char *path)
{
    const char *v;

    if (config_setting_type(u) != CONFIG_TYPE_STRING) {
        walk_err(w, path, "expected string, got %s", dp_setting_kind_name(u));
        return;
    }
    v = config_setting_get_string(u);
    if (strcmp(v, "reject") != 0 && strcmp(v, "keep") != 0) {
        walk_err(w, path, "must be one of reject, keep");
    }
}

static void
check_fields(struct walk *w, const config_setting_t *fields, const char *path)
{
    if (config_setting_type(fields) != CONFIG_TYPE_GROUP) {
        walk_err(w, path, "expected object, got %s", dp_setting_kind_name(fields));
        return;
    }
    if (config_setting_length(fields) > DP_TYPE_FIELDS_MAX) {
        walk_err(w, path, "more than %d fields", DP_TYPE_FIELDS_MAX);
        return;
    }
    for (int i = 0; i < config_setting_length(fields); i++) {
        const config_setting_t *f = config_setting_get_elem(fields, (unsigned)i);
        char p[PATH_MAX_LEN];

        path_join(p, path, config_setting_name(f));
        check_field(w, f, p);
    }
}

static void
check_type(struct walk *w, const config_setting_t *t)
{
    const char *name = config_setting_name(t);
    const char *why;
    char path[PATH_MAX_LEN];

    path_join(path, "types", name);
    if (!name_ok(name)) {
        walk_err(w, path,
                 "invalid name (lower-case letters, digits and _, starting with "
                 "a letter, at most %d bytes)",
                 DP_TYPE_NAME_MAX);
        return;
    }
    why = dp_types_name_reserved(name);
    if (why != NULL) {
        walk_err(w, path, "name taken by %s", why);
        return;
    }
    if (config_setting_type(t) != CONFIG_TYPE_GROUP) {
        walk_err(w, path, "expected object, got %s", dp_setting_kind_name(t));
        return;
    }
    if (config_setting_get_member(t, "fields") == NULL) {
        walk_err(w, path, "\"fields\" is required");
    }
    for (int i = 0; i < config_setting_length(t); i++) {
        const config_setting_t *c = config_setting_get_elem(t, (unsigned)i);
        const char *key = config_setting_name(c);
        char p[PATH_MAX_LEN];

        path_join(p, path, key);
        if (strcmp(key, "fields") == 0) {
            check_fields(w, c, p);
        } else if (strcmp(key, "unknown_fields") == 0) {
            check_unknown_fields(w, c, p);
        } else {
            walk_err(w, p, "unknown key (a type has fields, unknown_fields)");
        }
    }
}

int
dp_types_check(const config_setting_t *s, void (*err)(void *arg, const char *text), void *arg)
{
    struct walk w = {err, arg, 0};

    if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
        walk_err(&w, "types", "expected object, got %s", dp_setting_kind_name(s));
        return w.count;
    }
    if (config_setting_length(s) > DP_TYPES_MAX) {
        walk_err(&w, "types", "more than %d declared types", DP_TYPES_MAX);
        return w.count;
    }
    for (int i = 0; i < config_setting_length(s); i++) {
        check_type(&w, config_setting_get_elem(s, (unsigned)i));
    }
    return w.count;
}

/* ---- merging -------------------------------------------------------------------------- */

/* A deep copy of src as a new child of parent (unnamed inside arrays and lists). */
static int
setting_copy(config_setting_t *parent, const config_setting_t *src)
{
    int pt = config_setting_type(parent);
    bool named = pt == CONFIG_TYPE_GROUP;
    int t = config_setting_type(src);
    config_setting_t *d;

    d = config_setting_add(parent, named ? config_setting_name(src) : NULL, t);
    if (d == NULL) {
        return DP_ERR_NOMEM;
    }
    switch (t) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        config_setting_set_int64(d, config_setting_get_int64(src));
        break;
    case CONFIG_TYPE_FLOAT:
        config_setting_set_float(d, config_setting_get_float(src));
        break;
    case CONFIG_TYPE_STRING:
        config_setting_set_string(d, config_setting_get_string(src));
        break;
    case CONFIG_TYPE_BOOL:
        config_setting_set_bool(d, config_setting_get_bool(src));
        break;
    default:
        for (int i = 0; i < config_setting_length(src); i++) {
            int rc = setting_copy(d, config_setting_get_elem(src, (unsigned)i));

            if (rc != 0) {
                return rc;
            }
        }
        break;
    }
    return 0;
}

int
dp_types_merge(config_setting_t *into, const config_setting_t *from)
{
    for (int i = 0; i < config_setting_length(from); i++) {
        const config_setting_t *t = config_setting_get_elem(from, (unsigned)i);
        const char *name = config_setting_name(t);
        int rc;

        if (config_setting_get_member(into, name) != NULL) {
            config_setting_remove(into, name);
        }
        rc = setting_copy(into, t);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* ---- building ------------------------------------------------------------------------- */

static int
field_build(struct dp_field_decl *d, const config_setting_t *f)
{
    const config_setting_t *c;
    int b = 0;

    d->name = strdup(config_setting_name(f));
    if (d->name == NULL) {
        return DP_ERR_NOMEM;
    }
    dp_field_type_parse(config_setting_get_string(config_setting_get_member(f, "type")), &d->type);
    if (config_setting_lookup_bool(f, "required", &b) == CONFIG_TRUE) {
        d->required = b != 0;
    }
    c = config_setting_get_member(f, "max_length");
    d->max_length = c != NULL ? config_setting_get_int64(c) : 0;
    c = config_setting_get_member(f, "min");
    if (c != NULL) {
        d->has_min = true;
        d->min_int = is_int(c) ? config_setting_get_int64(c) : 0;
        d->min_num = number_value(c);
    }
    c = config_setting_get_member(f, "max");
    if (c != NULL) {
        d->has_max = true;
        d->max_int = is_int(c) ? config_setting_get_int64(c) : 0;
        d->max_num = number_value(c);
    }
    c = config_setting_get_member(f, "pattern");
    if (c != NULL && (d->pattern = strdup(config_setting_get_string(c))) == NULL) {
        return DP_ERR_NOMEM;
    }
    c = config_setting_get_member(f, "enum");
    if (c != NULL) {
        d->enums = calloc((size_t)config_setting_length(c), sizeof(char *));
        if (d->enums == NULL) {
            return DP_ERR_NOMEM;
        }
        for (int i = 0; i < config_setting_length(c); i++) {
            d->enums[i] = strdup(config_setting_get_string_elem(c, i));
            if (d->enums[i] == NULL) {
                return DP_ERR_NOMEM;
            }
            d->n_enums++;
        }
    }
    return 0;
}

static int
type_build(struct dp_type_decl *d, const config_setting_t *t)
{
    const config_setting_t *fields = config_setting_get_member(t, "fields");
    const char *unknown = NULL;
    size_t n = (size_t)config_setting_length(fields);

    d->name = strdup(config_setting_name(t));
    if (d->name == NULL) {
        return DP_ERR_NOMEM;
    }
    if (config_setting_lookup_string(t, "unknown_fields", &unknown) == CONFIG_TRUE) {
        d->keep_unknown = strcmp(unknown, "keep") == 0;
    }
    d->fields = calloc(n > 0 ? n : 1, sizeof(*d->fields));
    if (d->fields == NULL) {
        return DP_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        int rc = field_build(&d->fields[i], config_setting_get_elem(fields, (unsigned)i));

        d->n_fields++;
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static void
ignore_err(void *arg, const char *text)
{
    (void)arg;
    (void)text;
}

int
dp_types_build(const config_setting_t *s, struct dp_types **out)
{
    struct dp_types *t = NULL;
    int rc = 0;

    *out = NULL;
    if (s != NULL && dp_types_check(s, ignore_err, NULL) != 0) {
        return DP_ERR_CONFIG;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return DP_ERR_NOMEM;
    }
    if (s != NULL && config_setting_length(s) > 0) {
        t->types = calloc((size_t)config_setting_length(s), sizeof(*t->types));
        if (t->types == NULL) {
            rc = DP_ERR_NOMEM;
            goto out;
        }
        for (int i = 0; i < config_setting_length(s); i++) {
            rc = type_build(&t->types[i], config_setting_get_elem(s, (unsigned)i));
            t->n++;
            if (rc != 0) {
                goto out;
            }
        }
    }
    *out = t;
    t = NULL;
out:
    dp_types_destroy(t);
    return rc;
}
