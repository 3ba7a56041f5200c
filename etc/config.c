/*
 * config.c - defaults, lookup order, JSON and libconfig files, validation.
 * Every file, whatever its syntax, becomes a libconfig tree; one schema walk
 * validates it and merges it key by key into the effective tree, from which
 * typed lookups fill struct dp_config. Never exits: errors go back to main.
 */
#include "config.h"
#include "err.h"
#include "log.h"
#include "types.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <libconfig.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum opt_kind {
    OPT_INT,        /* fits in int */
    OPT_INT64,      /* 64-bit integer */
    OPT_BOOL,
    OPT_STRING,
    OPT_STRING_NULL,/* string, or null (JSON) / "" meaning unset */
    OPT_STRING_LIST,/* array of strings */
};

struct opt {
    const char *path;               /* "section.key" */
    enum opt_kind kind;
    const char *def_str;            /* OPT_STRING* default (NULL: unset) */
    long long def_int;              /* OPT_INT, OPT_INT64, OPT_BOOL default */
    long long min, max;             /* inclusive range for integers */
    const char *const *choices;     /* allowed strings, NULL-terminated, or NULL */
    size_t offset;                  /* of the field in struct dp_config */
    size_t len_offset;              /* OPT_STRING_LIST: of its length field */
    const char *help;               /* one line, for --help and the README */
};

static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const formats[] = {"text", "json", NULL};

#define F(field) offsetof(struct dp_config, field)

/* The one table of settings: SPEC section 2. queue.id's default is computed. */
static const struct opt opts[] = {
    {"server.listen", OPT_STRING, "127.0.0.1:8080", 0, 0, 0, NULL, F(server_listen), 0,
     "civetweb listening_ports syntax; a trailing s means TLS"},
    {"server.threads", OPT_INT, NULL, 64, 1, 4096, NULL, F(server_threads), 0,
     "worker threads (concurrent connections served)"},
    {"server.max_body_bytes", OPT_INT64, NULL, 33554432, 1, 2147483647LL, NULL,
     F(server_max_body_bytes), 0, "larger bodies (after gzip inflation) get 413"},
    {"server.request_timeout_ms", OPT_INT, NULL, 30000, 100, 3600000, NULL,
     F(server_request_timeout_ms), 0, "slow clients are cut off"},
    {"server.api_keys", OPT_STRING_LIST, NULL, 0, 0, 0, NULL, F(server_api_keys),
     F(server_api_keys_len), "if any key is set, write and read endpoints need one"},
    {"server.api_keys_file", OPT_STRING_NULL, NULL, 0, 0, 0, NULL, F(server_api_keys_file), 0,
     "one key a line, # comments"},
    {"server.cors_origins", OPT_STRING_LIST, NULL, 0, 0, 0, NULL, F(server_cors_origins),
     F(server_cors_origins_len), "origins allowed for browser POSTs"},
    {"server.tls_certificate", OPT_STRING_NULL, NULL, 0, 0, 0, NULL,
     F(server_tls_certificate), 0, "PEM with certificate and key, for an s port"},
    {"queue.path", OPT_STRING, "/var/lib/datapipe/queue", 0, 0, 0, NULL, F(queue_path), 0,
     "LMDB environment directory (created if missing)"},
    {"queue.max_bytes", OPT_INT64, NULL, 1073741824, 1048576, 1LL << 50, NULL,
     F(queue_max_bytes), 0, "LMDB map size; when full, POSTs get 503"},
    {"queue.sync", OPT_BOOL, NULL, 1, 0, 1, NULL, F(queue_sync), 0, "fsync before acknowledging"},
    {"queue.id", OPT_STRING, NULL, 0, 0, 0, NULL, F(queue_id), 0,
     "names this queue in loader_batches (default: host name)"},
    {"database.conninfo", OPT_STRING, "dbname=datapipe", 0, 0, 0, NULL, F(database_conninfo), 0,
     "libpq connection string"},
    {"database.schema", OPT_STRING, "datapipe", 0, 0, 0, NULL, F(database_schema), 0,
     "schema that holds all tables"},
    {"loader.interval_s", OPT_INT, NULL, 300, 1, 86400 * 7, NULL, F(loader_interval_s), 0,
     "regular wake-up interval"},
    {"loader.min_interval_s", OPT_INT, NULL, 5, 0, 86400, NULL, F(loader_min_interval_s), 0,
     "earliest re-run when the queue passes high_water"},
    {"loader.high_water", OPT_INT64, NULL, 100000, 1, 1LL << 40, NULL, F(loader_high_water), 0,
     "queued events that trigger an early run"},
    {"loader.batch_rows", OPT_INT, NULL, 50000, 1, 10000000, NULL, F(loader_batch_rows), 0,
     "most events in one COPY transaction"},
    {"loader.workers", OPT_INT, NULL, 2, 1, 64, NULL, F(loader_workers), 0,
     "concurrent PostgreSQL connections loading"},
    {"log.level", OPT_STRING, "info", 0, 0, 0, levels, F(log_level), 0,
     "debug, info, warn, error"},
    {"log.format", OPT_STRING, "text", 0, 0, 0, formats, F(log_format), 0, "text or json"},
};

#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

/* Growing error text, one error a line. */
struct errs {
    char *text;
    size_t len;
    int count;
    bool nomem;
};

static void errs_add(struct errs *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
errs_add(struct errs *e, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    size_t n;
    char *p;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    n = strlen(line);
    p = realloc(e->text, e->len + n + 2);
    if (p == NULL) {
        e->nomem = true;
        return;
    }
    e->text = p;
    memcpy(e->text + e->len, line, n);
    e->len += n;
    e->text[e->len++] = '\n';
    e->text[e->len] = '\0';
    e->count++;
}

static const struct opt *
opt_find(const char *path)
{
    for (size_t i = 0; i < N_OPTS; i++) {
        if (strcmp(opts[i].path, path) == 0) {
            return &opts[i];
        }
    }
    return NULL;
}

static bool
section_known(const char *name)
{
    size_t n = strlen(name);

    for (size_t i = 0; i < N_OPTS; i++) {
        if (strncmp(opts[i].path, name, n) == 0 && opts[i].path[n] == '.') {
            return true;
        }
    }
    return false;
}

static const char *
setting_type_name(const config_setting_t *s)
{
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        return "integer";
    case CONFIG_TYPE_FLOAT:
        return "number";
    case CONFIG_TYPE_STRING:
        return "string";
    case CONFIG_TYPE_BOOL:
        return "boolean";
    case CONFIG_TYPE_ARRAY:
    case CONFIG_TYPE_LIST:
        return "array";
    case CONFIG_TYPE_GROUP:
        return "object";
    default:
        return "unknown";
    }
}

static const char *
kind_name(enum opt_kind k)
{
    switch (k) {
    case OPT_INT:
    case OPT_INT64:
        return "integer";
    case OPT_BOOL:
        return "boolean";
    case OPT_STRING:
        return "string";
    case OPT_STRING_NULL:
        return "string or null";
    case OPT_STRING_LIST:
        return "array of strings";
    }
    return "?";
}

/* ---- JSON into a libconfig tree ---------------------------------------- */

/* Is path inside the "types" key (declared event types, etc/types.c)? */
static bool
in_types(const char *path)
{
    return strncmp(path, "types.", 6) == 0;
}

/* JSON null has no libconfig counterpart; for OPT_STRING_NULL it becomes "". */
static int
json_to_setting(config_setting_t *parent, const char *key, json_t *v, const char *path,
                const char *file, struct errs *e)
{
    config_setting_t *s = NULL;
    int type;

    switch (json_typeof(v)) {
    case JSON_OBJECT:
        type = CONFIG_TYPE_GROUP;
        break;
    case JSON_ARRAY:
        type = CONFIG_TYPE_ARRAY;
        break;
    case JSON_STRING:
    case JSON_NULL:
        type = CONFIG_TYPE_STRING;
        break;
    case JSON_INTEGER:
        type = CONFIG_TYPE_INT64;
        break;
    case JSON_REAL:
        type = CONFIG_TYPE_FLOAT;
        break;
    default:
        type = CONFIG_TYPE_BOOL;
        break;
    }
    if (json_is_null(v)) {
        const struct opt *o = opt_find(path);
        if (o == NULL || o->kind != OPT_STRING_NULL) {
            errs_add(e, "%s: %s: %s", file, path,
                     o == NULL && !in_types(path) ? "unknown key" : "null is not allowed here");
            return 0;
        }
    }
    s = config_setting_add(parent, key, type);
    if (s == NULL) {
        /* libconfig refuses names outside [A-Za-z*][-A-Za-z0-9_*]* and
         * duplicates; neither can be a known key. */
        errs_add(e, "%s: %s: %s", file, path,
                 in_types(path) ? "invalid name (lower-case letters, digits and _, starting "
                                  "with a letter, at most 63 bytes)" : "unknown key");
        return 0;
    }
    if (json_is_object(v)) {
        const char *k;
        json_t *child;
        json_object_foreach(v, k, child) {
            char sub[512];
            snprintf(sub, sizeof(sub), "%s.%s", path, k);
            json_to_setting(s, k, child, sub, file, e);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *el;
        json_array_foreach(v, i, el) {
            if (!json_is_string(el)) {
                errs_add(e, "%s: %s[%zu]: expected string, got %s", file, path, i,
                         json_is_integer(el) || json_is_real(el) ? "number"
                         : json_is_boolean(el)                   ? "boolean"
                         : json_is_null(el)                      ? "null"
                                                                 : "a structure");
                continue;
            }
            config_setting_set_string_elem(s, -1, json_string_value(el));
        }
    } else if (json_is_string(v)) {
        config_setting_set_string(s, json_string_value(v));
    } else if (json_is_null(v)) {
        config_setting_set_string(s, "");
    } else if (json_is_integer(v)) {
        config_setting_set_int64(s, json_integer_value(v));
    } else if (json_is_real(v)) {
        config_setting_set_float(s, json_real_value(v));
    } else {
        config_setting_set_bool(s, json_is_true(v));
    }
    return 0;
}

static bool
path_is_libconfig(const char *path)
{
    const char *dot = strrchr(path, '.');

    return dot != NULL && (strcmp(dot, ".cfg") == 0 || strcmp(dot, ".conf") == 0);
}

/* Read one file into tree. Syntax errors are added to e; returns false then. */
static bool
file_read(config_t *tree, const char *path, struct errs *e)
{
    json_error_t jerr;
    json_t *root = NULL;
    bool ok = false;

    if (access(path, R_OK) != 0) {
        errs_add(e, "%s: cannot read: %s", path, strerror(errno));
        return false;
    }
    if (path_is_libconfig(path)) {
        if (config_read_file(tree, path) != CONFIG_TRUE) {
            errs_add(e, "%s: line %d: %s", path, config_error_line(tree),
                     config_error_text(tree));
            return false;
        }
        return true;
    }
    root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        errs_add(e, "%s: line %d column %d: %s", path, jerr.line, jerr.column, jerr.text);
        goto out;
    }
    if (!json_is_object(root)) {
        errs_add(e, "%s: the top level must be an object", path);
        goto out;
    }
    {
        const char *k;
        json_t *child;
        int before = e->count;
        json_object_foreach(root, k, child) {
            json_to_setting(config_root_setting(tree), k, child, k, path, e);
        }
        ok = e->count == before;
    }
out:
    json_decref(root);
    return ok;
}

/* ---- validation and merge ---------------------------------------------- */

static const char *
choices_text(const char *const *choices, char *buf, size_t len)
{
    size_t used = 0;

    buf[0] = '\0';
    for (const char *const *c = choices; *c != NULL && used < len; c++) {
        used += (size_t)snprintf(buf + used, len - used, "%s%s", c == choices ? "" : ", ", *c);
    }
    return buf;
}

static bool
check_value(const struct opt *o, const config_setting_t *s, const char *file, struct errs *e)
{
    int t = config_setting_type(s);
    char list[128];

    switch (o->kind) {
    case OPT_INT:
    case OPT_INT64: {
        long long v;
        if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64) {
            break;
        }
        v = config_setting_get_int64(s);
        if (v < o->min || v > o->max) {
            errs_add(e, "%s: %s: must be %lld..%lld", file, o->path, o->min, o->max);
            return false;
        }
        return true;
    }
    case OPT_BOOL:
        if (t == CONFIG_TYPE_BOOL) {
            return true;
        }
        break;
    case OPT_STRING:
    case OPT_STRING_NULL:
        if (t == CONFIG_TYPE_STRING) {
            const char *v = config_setting_get_string(s);
            if (o->kind == OPT_STRING && v[0] == '\0') {
                errs_add(e, "%s: %s: must not be empty", file, o->path);
                return false;
            }
            if (o->choices != NULL) {
                for (const char *const *c = o->choices; *c != NULL; c++) {
                    if (strcmp(*c, v) == 0) {
                        return true;
                    }
                }
                errs_add(e, "%s: %s: must be one of %s", file, o->path,
                         choices_text(o->choices, list, sizeof(list)));
                return false;
            }
            return true;
        }
        break;
    case OPT_STRING_LIST:
        if (t == CONFIG_TYPE_ARRAY || t == CONFIG_TYPE_LIST) {
            int n = config_setting_length(s);
            for (int i = 0; i < n; i++) {
                const config_setting_t *el = config_setting_get_elem(s, (unsigned)i);
                if (config_setting_type(el) != CONFIG_TYPE_STRING) {
                    errs_add(e, "%s: %s[%d]: expected string, got %s", file, o->path, i,
                             setting_type_name(el));
                    return false;
                }
            }
            return true;
        }
        break;
    }
    errs_add(e, "%s: %s: expected %s, got %s", file, o->path, kind_name(o->kind),
             setting_type_name(s));
    return false;
}

/* Copy one valid value into the effective tree, replacing what was there. */
static int
merge_value(config_t *eff, const struct opt *o, const config_setting_t *s)
{
    char section[64];
    const char *key = strchr(o->path, '.') + 1;
    config_setting_t *grp;
    config_setting_t *d;
    int t = config_setting_type(s);

    snprintf(section, sizeof(section), "%.*s", (int)(key - 1 - o->path), o->path);
    grp = config_setting_get_member(config_root_setting(eff), section);
    if (grp == NULL) {
        grp = config_setting_add(config_root_setting(eff), section, CONFIG_TYPE_GROUP);
    }
    if (grp == NULL) {
        return DP_ERR_NOMEM;
    }
    if (config_setting_get_member(grp, key) != NULL) {
        config_setting_remove(grp, key);
    }
    if (t == CONFIG_TYPE_INT) {
        t = CONFIG_TYPE_INT64;
    }
    if (t == CONFIG_TYPE_LIST) {
        t = CONFIG_TYPE_ARRAY;
    }
    d = config_setting_add(grp, key, t);
    if (d == NULL) {
        return DP_ERR_NOMEM;
    }
    switch (t) {
    case CONFIG_TYPE_INT64:
        config_setting_set_int64(d, config_setting_get_int64(s));
        break;
    case CONFIG_TYPE_BOOL:
        config_setting_set_bool(d, config_setting_get_bool(s));
        break;
    case CONFIG_TYPE_STRING:
        config_setting_set_string(d, config_setting_get_string(s));
        break;
    default:
        for (int i = 0; i < config_setting_length(s); i++) {
            config_setting_set_string_elem(d, -1, config_setting_get_string_elem(s, i));
        }
        break;
    }
    return 0;
}

/* What dp_types_check reports: an error of one file. */
struct types_errs {
    struct errs *e;
    const char *file;
};

static void
types_err(void *arg, const char *text)
{
    struct types_errs *te = arg;

    errs_add(te->e, "%s: %s", te->file, text);
}

/* The "types" key of a file: checked by etc/types.c, merged type by type. */
static void
types_merge(config_t *eff, const config_setting_t *sec, const char *file, struct errs *e)
{
    struct types_errs te = {e, file};
    config_setting_t *into;

    if (dp_types_check(sec, types_err, &te) != 0) {
        return;
    }
    into = config_setting_get_member(config_root_setting(eff), "types");
    if (into == NULL) {
        into = config_setting_add(config_root_setting(eff), "types", CONFIG_TYPE_GROUP);
    }
    if (into == NULL || dp_types_merge(into, sec) != 0) {
        e->nomem = true;
    }
}

/* Walk a file's tree: every key must be known and well typed; merge the good ones. */
static void
validate_and_merge(config_t *eff, const config_t *file_tree, const char *file, struct errs *e)
{
    config_setting_t *root = config_root_setting(file_tree);

    for (int i = 0; i < config_setting_length(root); i++) {
        config_setting_t *sec = config_setting_get_elem(root, (unsigned)i);
        const char *sname = config_setting_name(sec);

        if (strcmp(sname, "types") == 0) {
            types_merge(eff, sec, file, e);
            continue;
        }
        if (!section_known(sname)) {
            errs_add(e, "%s: %s: unknown key", file, sname);
            continue;
        }
        if (config_setting_type(sec) != CONFIG_TYPE_GROUP) {
            errs_add(e, "%s: %s: expected object, got %s", file, sname, setting_type_name(sec));
            continue;
        }
        for (int j = 0; j < config_setting_length(sec); j++) {
            config_setting_t *s = config_setting_get_elem(sec, (unsigned)j);
            char path[256];
            const struct opt *o;

            snprintf(path, sizeof(path), "%s.%s", sname, config_setting_name(s));
            o = opt_find(path);
            if (o == NULL) {
                errs_add(e, "%s: %s: unknown key", file, path);
                continue;
            }
            if (check_value(o, s, file, e) && merge_value(eff, o, s) != 0) {
                e->nomem = true;
            }
        }
    }
}

/* The built-in defaults, as a libconfig tree like any file. */
static int
defaults_build(config_t *eff)
{
    char host[256];

    for (size_t i = 0; i < N_OPTS; i++) {
        const struct opt *o = &opts[i];
        config_t one;
        config_setting_t *grp;
        config_setting_t *s;
        char section[64];
        const char *key = strchr(o->path, '.') + 1;
        int rc;

        config_init(&one);
        snprintf(section, sizeof(section), "%.*s", (int)(key - 1 - o->path), o->path);
        grp = config_setting_add(config_root_setting(&one), section, CONFIG_TYPE_GROUP);
        switch (o->kind) {
        case OPT_INT:
        case OPT_INT64:
            s = config_setting_add(grp, key, CONFIG_TYPE_INT64);
            config_setting_set_int64(s, o->def_int);
            break;
        case OPT_BOOL:
            s = config_setting_add(grp, key, CONFIG_TYPE_BOOL);
            config_setting_set_bool(s, (int)o->def_int);
            break;
        case OPT_STRING:
        case OPT_STRING_NULL:
            s = config_setting_add(grp, key, CONFIG_TYPE_STRING);
            if (o->def_str != NULL) {
                config_setting_set_string(s, o->def_str);
            } else if (strcmp(o->path, "queue.id") == 0) {
                if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0') {
                    snprintf(host, sizeof(host), "localhost");
                }
                host[sizeof(host) - 1] = '\0';
                config_setting_set_string(s, host);
            } else {
                config_setting_set_string(s, "");
            }
            break;
        default:
            s = config_setting_add(grp, key, CONFIG_TYPE_ARRAY);
            break;
        }
        rc = merge_value(eff, o, s);
        config_destroy(&one);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* ---- the effective tree into the struct -------------------------------- */

static char *
xstrdup_or_null(const char *s, bool empty_is_null, bool *nomem)
{
    char *d;

    if (s == NULL || (empty_is_null && s[0] == '\0')) {
        return NULL;
    }
    d = strdup(s);
    if (d == NULL) {
        *nomem = true;
    }
    return d;
}

static int
list_append(char ***list, size_t *len, const char *s)
{
    char **p = realloc(*list, (*len + 2) * sizeof(char *));

    if (p == NULL) {
        return DP_ERR_NOMEM;
    }
    *list = p;
    p[*len] = strdup(s);
    if (p[*len] == NULL) {
        p[*len] = NULL;
        return DP_ERR_NOMEM;
    }
    (*len)++;
    p[*len] = NULL;
    return 0;
}

static void
struct_fill(struct dp_config *cfg, const config_t *eff, bool *nomem)
{
    for (size_t i = 0; i < N_OPTS; i++) {
        const struct opt *o = &opts[i];
        char *base = (char *)cfg + o->offset;
        long long iv = 0;
        int bv = 0;
        const char *sv = NULL;
        const config_setting_t *arr;

        switch (o->kind) {
        case OPT_INT:
            config_lookup_int64(eff, o->path, &iv);
            *(int *)(void *)base = (int)iv;
            break;
        case OPT_INT64:
            config_lookup_int64(eff, o->path, &iv);
            *(int64_t *)(void *)base = iv;
            break;
        case OPT_BOOL:
            config_lookup_bool(eff, o->path, &bv);
            *(bool *)base = bv != 0;
            break;
        case OPT_STRING:
        case OPT_STRING_NULL:
            config_lookup_string(eff, o->path, &sv);
            *(char **)(void *)base = xstrdup_or_null(sv, o->kind == OPT_STRING_NULL, nomem);
            break;
        case OPT_STRING_LIST:
            arr = config_lookup(eff, o->path);
            *(char ***)(void *)base = calloc(1, sizeof(char *));
            if (*(char ***)(void *)base == NULL) {
                *nomem = true;
                break;
            }
            for (int j = 0; arr != NULL && j < config_setting_length(arr); j++) {
                if (list_append((char ***)(void *)base, (size_t *)(void *)((char *)cfg +
                                                                            o->len_offset),
                                config_setting_get_string_elem(arr, j)) != 0) {
                    *nomem = true;
                }
            }
            break;
        }
    }
}

/* Keys from server.api_keys_file: one a line, '#' starts a comment, blanks trimmed. */
static void
keys_file_read(struct dp_config *cfg, struct errs *e)
{
    FILE *f;
    char line[4096];

    if (cfg->server_api_keys_file == NULL) {
        return;
    }
    f = fopen(cfg->server_api_keys_file, "r");
    if (f == NULL) {
        errs_add(e, "server.api_keys_file: cannot read %s: %s", cfg->server_api_keys_file,
                 strerror(errno));
        return;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        char *p = line;
        char *hash = strchr(p, '#');
        size_t n;

        if (hash != NULL) {
            *hash = '\0';
        }
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        n = strlen(p);
        while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r' || p[n - 1] == ' ' ||
                         p[n - 1] == '\t')) {
            p[--n] = '\0';
        }
        if (n > 0 && list_append(&cfg->server_api_keys, &cfg->server_api_keys_len, p) != 0) {
            e->nomem = true;
        }
    }
    fclose(f);
}

static void
cross_check(const struct dp_config *cfg, struct errs *e)
{
    size_t n = cfg->server_listen ? strlen(cfg->server_listen) : 0;

    if (cfg->loader_min_interval_s > cfg->loader_interval_s) {
        errs_add(e, "loader.min_interval_s: must not exceed loader.interval_s (%d)",
                 cfg->loader_interval_s);
    }
    if (n > 0 && cfg->server_listen[n - 1] == 's' && cfg->server_tls_certificate == NULL) {
        errs_add(e, "server.tls_certificate: required by the TLS port in server.listen");
    }
    for (size_t i = 0; i < cfg->server_api_keys_len; i++) {
        if (cfg->server_api_keys[i][0] == '\0') {
            errs_add(e, "server.api_keys[%zu]: must not be empty", i);
        }
    }
}

struct dp_config_sources
dp_config_sources_default(const char *cli_path)
{
    struct dp_config_sources s;
    const char *env = getenv("DATAPIPE_CNF");

    s.system_path = DP_CONFIG_SYSTEM_PATH;
    s.env_path = env != NULL && env[0] != '\0' ? env : NULL;
    s.cli_path = cli_path;
    return s;
}

int
dp_config_load(const struct dp_config_sources *src, struct dp_config **out, char **errors)
{
    struct errs e = {0};
    config_t eff;
    struct dp_config *cfg = NULL;
    const char *files[3];
    bool nomem = false;
    int rc = 0;

    *out = NULL;
    *errors = NULL;
    config_init(&eff);
    if (defaults_build(&eff) != 0) {
        rc = DP_ERR_NOMEM;
        goto out;
    }
    files[0] = src->system_path != NULL && access(src->system_path, F_OK) == 0
                   ? src->system_path : NULL;
    files[1] = src->env_path;
    files[2] = src->cli_path;
    for (int i = 0; i < 3; i++) {
        config_t ft;
        if (files[i] == NULL) {
            continue;
        }
        config_init(&ft);
        if (file_read(&ft, files[i], &e)) {
            validate_and_merge(&eff, &ft, files[i], &e);
        }
        config_destroy(&ft);
    }
    cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL) {
        rc = DP_ERR_NOMEM;
        goto out;
    }
    struct_fill(cfg, &eff, &nomem);
    if (e.count == 0) {
        rc = dp_types_build(config_lookup(&eff, "types"), &cfg->types);
        if (rc != 0) {
            goto out;
        }
        keys_file_read(cfg, &e);
        cross_check(cfg, &e);
    }
    if (nomem || e.nomem) {
        rc = DP_ERR_NOMEM;
        goto out;
    }
    if (e.count > 0) {
        rc = DP_ERR_CONFIG;
        *errors = e.text;
        e.text = NULL;
        goto out;
    }
    *out = cfg;
    cfg = NULL;
out:
    dp_config_destroy(cfg);
    free(e.text);
    config_destroy(&eff);
    return rc;
}

static void
list_free(char **l)
{
    for (size_t i = 0; l != NULL && l[i] != NULL; i++) {
        free(l[i]);
    }
    free(l);
}

void
dp_config_destroy(struct dp_config *cfg)
{
    if (cfg == NULL) {
        return;
    }
    for (size_t i = 0; i < N_OPTS; i++) {
        char *base = (char *)cfg + opts[i].offset;
        if (opts[i].kind == OPT_STRING || opts[i].kind == OPT_STRING_NULL) {
            free(*(char **)(void *)base);
        } else if (opts[i].kind == OPT_STRING_LIST) {
            list_free(*(char ***)(void *)base);
        }
    }
    dp_types_destroy(cfg->types);
    free(cfg);
}

char *
dp_config_to_json(const struct dp_config *cfg)
{
    json_t *root = json_object();
    char *text = NULL;

    if (root == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < N_OPTS; i++) {
        const struct opt *o = &opts[i];
        const char *base = (const char *)cfg + o->offset;
        const char *key = strchr(o->path, '.') + 1;
        char section[64];
        json_t *sec;
        json_t *v = NULL;

        snprintf(section, sizeof(section), "%.*s", (int)(key - 1 - o->path), o->path);
        sec = json_object_get(root, section);
        if (sec == NULL) {
            sec = json_object();
            json_object_set_new(root, section, sec);
        }
        switch (o->kind) {
        case OPT_INT:
            v = json_integer(*(const int *)(const void *)base);
            break;
        case OPT_INT64:
            v = json_integer(*(const int64_t *)(const void *)base);
            break;
        case OPT_BOOL:
            v = json_boolean(*(const bool *)base);
            break;
        case OPT_STRING:
        case OPT_STRING_NULL: {
            const char *s = *(char *const *)(const void *)base;
            v = s != NULL ? json_string(s) : json_null();
            break;
        }
        case OPT_STRING_LIST: {
            char *const *l = *(char **const *)(const void *)base;
            /* API keys are secrets: show how many, never their text. */
            bool secret = strcmp(o->path, "server.api_keys") == 0;
            v = json_array();
            for (size_t j = 0; l != NULL && l[j] != NULL; j++) {
                json_array_append_new(v, json_string(secret ? "<redacted>" : l[j]));
            }
            break;
        }
        }
        json_object_set_new(sec, key, v);
    }
    json_object_set_new(root, "types", dp_types_to_json(cfg->types));
    text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    return text;
}

static bool
str_eq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool
opt_equal(const struct opt *o, const struct dp_config *a, const struct dp_config *b)
{
    const char *pa = (const char *)a + o->offset;
    const char *pb = (const char *)b + o->offset;

    switch (o->kind) {
    case OPT_INT:
        return *(const int *)(const void *)pa == *(const int *)(const void *)pb;
    case OPT_INT64:
        return *(const int64_t *)(const void *)pa == *(const int64_t *)(const void *)pb;
    case OPT_BOOL:
        return *(const bool *)pa == *(const bool *)pb;
    case OPT_STRING:
    case OPT_STRING_NULL:
        return str_eq(*(char *const *)(const void *)pa, *(char *const *)(const void *)pb);
    case OPT_STRING_LIST: {
        char *const *la = *(char **const *)(const void *)pa;
        char *const *lb = *(char **const *)(const void *)pb;
        size_t i = 0;
        for (; la[i] != NULL && lb[i] != NULL; i++) {
            if (strcmp(la[i], lb[i]) != 0) {
                return false;
            }
        }
        return la[i] == NULL && lb[i] == NULL;
    }
    }
    return false;
}

void
dp_config_diff(const struct dp_config *a, const struct dp_config *b,
               void (*fn)(void *arg, const char *key), void *arg)
{
    char key[DP_TYPE_NAME_MAX + 8];

    for (size_t i = 0; i < N_OPTS; i++) {
        if (!opt_equal(&opts[i], a, b)) {
            fn(arg, opts[i].path);
        }
    }
    /* Declared types: each one added, changed or removed, as "types.NAME". */
    for (size_t i = 0; a->types != NULL && i < a->types->n; i++) {
        const struct dp_type_decl *d = &a->types->types[i];
        const struct dp_type_decl *o = dp_types_find(b->types, d->name);

        if (o == NULL || !dp_type_decl_equal(d, o)) {
            snprintf(key, sizeof(key), "types.%s", d->name);
            fn(arg, key);
        }
    }
    for (size_t i = 0; b->types != NULL && i < b->types->n; i++) {
        if (dp_types_find(a->types, b->types->types[i].name) == NULL) {
            snprintf(key, sizeof(key), "types.%s", b->types->types[i].name);
            fn(arg, key);
        }
    }
}

int
dp_cli_parse(int argc, char **argv, const char *prog, const char *usage, bool allow_once,
             struct dp_cli *out)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {"once", no_argument, NULL, 'o'},
        {NULL, 0, NULL, 0},
    };
    int c;

    memset(out, 0, sizeof(*out));
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "c:hV", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            out->config_path = optarg;
            break;
        case 'C':
            out->check_config = true;
            break;
        case 'h':
            printf("%s", usage);
            printf("\nSettings (key, default, meaning):\n");
            for (size_t i = 0; i < N_OPTS; i++) {
                char def[64];
                if (opts[i].kind == OPT_INT || opts[i].kind == OPT_INT64) {
                    snprintf(def, sizeof(def), "%lld", opts[i].def_int);
                } else if (opts[i].kind == OPT_BOOL) {
                    snprintf(def, sizeof(def), "%s", opts[i].def_int ? "true" : "false");
                } else if (opts[i].kind == OPT_STRING_LIST) {
                    snprintf(def, sizeof(def), "[]");
                } else {
                    snprintf(def, sizeof(def), "%s", opts[i].def_str ? opts[i].def_str
                             : strcmp(opts[i].path, "queue.id") == 0 ? "(host name)" : "null");
                }
                printf("  %-26s %-24s %s\n", opts[i].path, def, opts[i].help);
            }
            return 1;
        case 'V':
            printf("%s %s\n", prog, DP_VERSION);
            return 1;
        case 'o':
            if (!allow_once) {
                fprintf(stderr, "%s: unknown option --once\nTry '%s --help'.\n", prog, prog);
                return 2;
            }
            out->once = true;
            break;
        default:
            fprintf(stderr, "%s: unknown or incomplete option '%s'\nTry '%s --help'.\n", prog,
                    argv[optind - 1], prog);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\nTry '%s --help'.\n", prog, argv[optind],
                prog);
        return 2;
    }
    return 0;
}

int
dp_config_startup(int argc, char **argv, const char *prog, const char *usage, bool allow_once,
                  struct dp_cli *cli, struct dp_config **out)
{
    struct dp_config_sources src;
    char *errors = NULL;
    int rc;

    *out = NULL;
    rc = dp_cli_parse(argc, argv, prog, usage, allow_once, cli);
    if (rc == 1) {
        return 0;
    }
    if (rc != 0) {
        return 2;
    }
    src = dp_config_sources_default(cli->config_path);
    rc = dp_config_load(&src, out, &errors);
    if (rc != 0) {
        fprintf(stderr, "%s: configuration rejected:\n%s", prog,
                errors != NULL ? errors : "out of memory\n");
        free(errors);
        return 2;
    }
    if (cli->check_config) {
        char *text = dp_config_to_json(*out);
        printf("%s\n", text != NULL ? text : "{}");
        free(text);
        dp_config_destroy(*out);
        *out = NULL;
        return 0;
    }
    dp_log_setup((*out)->log_level, (*out)->log_format);
    return -1;
}
