/*
 * config.c - defaults, lookup order, JSON and libconfig files, validation.
 * Every file, whatever its syntax, becomes a libconfig tree; one schema walk
 * validates it and merges it key by key into the effective tree, from which
 * typed lookups fill struct dp_config. Never exits: errors go back to main.
 */
#include "etc/config.h"
#include "etc/err.h"
#include "etc/log.h"
#include "etc/settings.h"
#include "etc/types.h"

#include <errno.h>
#include <jansson.h>
#include <libconfig.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

static bool
section_known(const char *name)
{
    size_t n = strlen(name);

    for (size_t i = 0; i < dp_settings_len; i++) {
        if (strncmp(dp_settings[i].path, name, n) == 0 && dp_settings[i].path[n] == '.') {
            return true;
        }
    }
    return false;
}

const char *
dp_setting_kind_name(const struct config_setting_t *s)
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
kind_name(enum dp_setting_kind k)
{
    switch (k) {
    case DP_SETTING_INT:
    case DP_SETTING_INT64:
        return "integer";
    case DP_SETTING_BOOL:
        return "boolean";
    case DP_SETTING_STRING:
        return "string";
    case DP_SETTING_STRING_NULL:
        return "string or null";
    case DP_SETTING_STRING_LIST:
        return "array of strings";
    }
    return "?";
}

/* ---- API key objects (server.api_keys) --------------------------------- */

/* The members an API key object may have, and what each holds. */
static const struct key_member {
    const char *name;
    bool integer;                   /* an integer, else a string */
    long long min;                  /* integers: inclusive range */
    long long max;
} key_members[] = {
    {"name", false, 0, 0},
    {"key", false, 0, 0},
    {"events_per_s", true, 1, 1000000000LL},
    {"burst", true, 1, 1000000000000LL},
};

static const struct key_member *
key_member_find(const char *name)
{
    for (size_t i = 0; i < sizeof(key_members) / sizeof(key_members[0]); i++) {
        if (strcmp(key_members[i].name, name) == 0) {
            return &key_members[i];
        }
    }
    return NULL;
}

/* Whether name may name an API key: 1 to DP_API_KEY_NAME_MAX of [A-Za-z0-9_.-]. */
static bool
key_name_ok(const char *name, size_t len)
{
    if (len == 0 || len > DP_API_KEY_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-')) {
            return false;
        }
    }
    return true;
}

/* One member of API key object i of o: known, well typed, in range. Errors go to e. */
static bool
key_member_check(const struct dp_setting *o, size_t i, const config_setting_t *m,
                 const char *file, struct errs *e)
{
    const char *mname = config_setting_name(m);
    const struct key_member *km = key_member_find(mname);
    int t = config_setting_type(m);

    if (km == NULL) {
        errs_add(e, "%s: %s[%zu].%s: unknown key", file, o->path, i, mname);
        return false;
    }
    if (km->integer && t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64) {
        errs_add(e, "%s: %s[%zu].%s: expected integer, got %s", file, o->path, i, mname,
                 dp_setting_kind_name(m));
        return false;
    }
    if (!km->integer && t != CONFIG_TYPE_STRING) {
        errs_add(e, "%s: %s[%zu].%s: expected string, got %s", file, o->path, i, mname,
                 dp_setting_kind_name(m));
        return false;
    }
    if (km->integer && (config_setting_get_int64(m) < km->min ||
                        config_setting_get_int64(m) > km->max)) {
        errs_add(e, "%s: %s[%zu].%s: must be %lld..%lld", file, o->path, i, mname, km->min,
                 km->max);
        return false;
    }
    if (strcmp(mname, "name") == 0 &&
        !key_name_ok(config_setting_get_string(m), strlen(config_setting_get_string(m)))) {
        errs_add(e, "%s: %s[%zu].name: 1 to %d letters, digits, '_', '.' or '-'", file,
                 o->path, i, DP_API_KEY_NAME_MAX);
        return false;
    }
    return true;
}

/* API key object i of o (a group): its members, and a key. Errors go to e. */
static bool
key_object_check(const struct dp_setting *o, size_t i, const config_setting_t *g,
                 const char *file, struct errs *e)
{
    bool ok = true;

    for (int j = 0; j < config_setting_length(g); j++) {
        ok &= key_member_check(o, i, config_setting_get_elem(g, (unsigned)j), file, e);
    }
    if (config_setting_get_member(g, "key") == NULL) {
        errs_add(e, "%s: %s[%zu].key: required", file, o->path, i);
        ok = false;
    }
    if (config_setting_get_member(g, "burst") != NULL &&
        config_setting_get_member(g, "events_per_s") == NULL) {
        errs_add(e, "%s: %s[%zu].burst: needs events_per_s", file, o->path, i);
        ok = false;
    }
    return ok;
}

/* ---- JSON into a libconfig tree ---------------------------------------- */

/* A JSON value's type as an error message names it. */
static const char *
json_kind_name(const json_t *v)
{
    return json_is_string(v)                      ? "string"
           : json_is_integer(v) || json_is_real(v) ? "number"
           : json_is_boolean(v)                    ? "boolean"
           : json_is_null(v)                       ? "null"
                                                   : "a structure";
}

/*
 * API key object el (element i of the list at path) as a group of list: scalars as they
 * are, for key_object_check to judge; null and structures are refused here.
 */
static void
json_key_object(config_setting_t *list, json_t *el, const char *path, size_t i,
                const char *file, struct errs *e)
{
    config_setting_t *g = config_setting_add(list, NULL, CONFIG_TYPE_GROUP);
    const char *k;
    json_t *m;

    if (g == NULL) {
        e->nomem = true;
        return;
    }
    json_object_foreach(el, k, m) {
        const struct key_member *km = key_member_find(k);
        config_setting_t *d = NULL;

        if (km == NULL) {
            errs_add(e, "%s: %s[%zu].%s: unknown key", file, path, i, k);
            continue;
        }
        if (json_is_string(m)) {
            d = config_setting_add(g, k, CONFIG_TYPE_STRING);
            config_setting_set_string(d, json_string_value(m));
        } else if (json_is_integer(m)) {
            d = config_setting_add(g, k, CONFIG_TYPE_INT64);
            config_setting_set_int64(d, json_integer_value(m));
        } else if (json_is_real(m)) {
            d = config_setting_add(g, k, CONFIG_TYPE_FLOAT);
            config_setting_set_float(d, json_real_value(m));
        } else if (json_is_boolean(m)) {
            d = config_setting_add(g, k, CONFIG_TYPE_BOOL);
            config_setting_set_bool(d, json_is_true(m));
        } else {
            errs_add(e, "%s: %s[%zu].%s: expected %s, got %s", file, path, i, k,
                     km->integer ? "integer" : "string", json_kind_name(m));
        }
    }
}

/* Is path inside the "types" key (declared event types, etc/types.c)? */
static bool
in_types(const char *path)
{
    return strncmp(path, "types.", 6) == 0;
}

/* JSON null has no libconfig counterpart; for DP_SETTING_STRING_NULL it becomes "". */
static int
json_to_setting(config_setting_t *parent, const char *key, json_t *v, const char *path,
                const char *file, struct errs *e)
{
    const struct dp_setting *row = dp_setting_find(path);
    bool key_list = row != NULL && row->key_objects;
    config_setting_t *s = NULL;
    int type;

    switch (json_typeof(v)) {
    case JSON_OBJECT:
        type = CONFIG_TYPE_GROUP;
        break;
    case JSON_ARRAY:
        /* An array holding groups must be a libconfig list. */
        type = key_list ? CONFIG_TYPE_LIST : CONFIG_TYPE_ARRAY;
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
        const struct dp_setting *o = dp_setting_find(path);
        if (o == NULL || o->kind != DP_SETTING_STRING_NULL) {
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
            if (key_list && json_is_object(el)) {
                json_key_object(s, el, path, i, file, e);
                continue;
            }
            if (!json_is_string(el)) {
                errs_add(e, "%s: %s[%zu]: expected %s, got %s", file, path, i,
                         key_list ? "string or object" : "string", json_kind_name(el));
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
check_value(const struct dp_setting *o, const config_setting_t *s, const char *file, struct errs *e)
{
    int t = config_setting_type(s);
    char list[128];

    switch (o->kind) {
    case DP_SETTING_INT:
    case DP_SETTING_INT64: {
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
    case DP_SETTING_BOOL:
        if (t == CONFIG_TYPE_BOOL) {
            return true;
        }
        break;
    case DP_SETTING_STRING:
    case DP_SETTING_STRING_NULL:
        if (t == CONFIG_TYPE_STRING) {
            const char *v = config_setting_get_string(s);
            if (o->kind == DP_SETTING_STRING && v[0] == '\0') {
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
    case DP_SETTING_STRING_LIST:
        if (t == CONFIG_TYPE_ARRAY || t == CONFIG_TYPE_LIST) {
            int n = config_setting_length(s);
            bool ok = true;
            for (int i = 0; i < n; i++) {
                const config_setting_t *el = config_setting_get_elem(s, (unsigned)i);
                if (o->key_objects && config_setting_type(el) == CONFIG_TYPE_GROUP) {
                    ok &= key_object_check(o, (size_t)i, el, file, e);
                } else if (config_setting_type(el) != CONFIG_TYPE_STRING) {
                    errs_add(e, "%s: %s[%d]: expected %s, got %s", file, o->path, i,
                             o->key_objects ? "string or object" : "string",
                             dp_setting_kind_name(el));
                    return false;
                }
            }
            return ok;
        }
        break;
    }
    errs_add(e, "%s: %s: expected %s, got %s", file, o->path, kind_name(o->kind),
             dp_setting_kind_name(s));
    return false;
}

/* Append a copy of group src (an API key object, already checked: scalars only) to list. */
static int
group_copy(config_setting_t *list, const config_setting_t *src)
{
    config_setting_t *g = config_setting_add(list, NULL, CONFIG_TYPE_GROUP);

    for (int i = 0; g != NULL && i < config_setting_length(src); i++) {
        const config_setting_t *m = config_setting_get_elem(src, (unsigned)i);
        bool str = config_setting_type(m) == CONFIG_TYPE_STRING;
        config_setting_t *d = config_setting_add(g, config_setting_name(m),
                                                 str ? CONFIG_TYPE_STRING : CONFIG_TYPE_INT64);
        if (d == NULL) {
            return DP_ERR_NOMEM;
        }
        if (str) {
            config_setting_set_string(d, config_setting_get_string(m));
        } else {
            config_setting_set_int64(d, config_setting_get_int64(m));
        }
    }
    return g != NULL ? 0 : DP_ERR_NOMEM;
}

/* Copy one valid value into the effective tree, replacing what was there. */
static int
merge_value(config_t *eff, const struct dp_setting *o, const config_setting_t *s)
{
    char section[64];
    const char *key = dp_setting_key(o);
    config_setting_t *grp;
    config_setting_t *d;
    int t = config_setting_type(s);

    dp_setting_section(o, section, sizeof(section));
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
    if (t == CONFIG_TYPE_LIST && !o->key_objects) {
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
            const config_setting_t *el = config_setting_get_elem(s, (unsigned)i);
            if (config_setting_type(el) == CONFIG_TYPE_GROUP) {
                if (group_copy(d, el) != 0) {
                    return DP_ERR_NOMEM;
                }
                continue;
            }
            config_setting_set_string_elem(d, -1, config_setting_get_string(el));
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
            errs_add(e, "%s: %s: expected object, got %s", file, sname, dp_setting_kind_name(sec));
            continue;
        }
        for (int j = 0; j < config_setting_length(sec); j++) {
            config_setting_t *s = config_setting_get_elem(sec, (unsigned)j);
            char path[256];
            const struct dp_setting *o;

            snprintf(path, sizeof(path), "%s.%s", sname, config_setting_name(s));
            o = dp_setting_find(path);
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

    for (size_t i = 0; i < dp_settings_len; i++) {
        const struct dp_setting *o = &dp_settings[i];
        config_t one;
        config_setting_t *grp;
        config_setting_t *s;
        char section[64];
        const char *key = dp_setting_key(o);
        int rc;

        config_init(&one);
        dp_setting_section(o, section, sizeof(section));
        grp = config_setting_add(config_root_setting(&one), section, CONFIG_TYPE_GROUP);
        switch (o->kind) {
        case DP_SETTING_INT:
        case DP_SETTING_INT64:
            s = config_setting_add(grp, key, CONFIG_TYPE_INT64);
            config_setting_set_int64(s, o->def_int);
            break;
        case DP_SETTING_BOOL:
            s = config_setting_add(grp, key, CONFIG_TYPE_BOOL);
            config_setting_set_bool(s, (int)o->def_int);
            break;
        case DP_SETTING_STRING:
        case DP_SETTING_STRING_NULL:
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

/* The name of a key given without one: "key-" and the first 8 hex digits of its SHA-256. */
static void
key_tag(const char *key, char out[16])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    if (EVP_Digest(key, strlen(key), md, &n, EVP_sha256(), NULL) != 1 || n < 4) {
        memset(md, 0, 4);
    }
    snprintf(out, 16, "key-%02x%02x%02x%02x", md[0], md[1], md[2], md[3]);
}

/*
 * Append key to server.api_keys with what is known of it: name (NULL: its tag, see
 * key_tag), events_per_s (0: no limit) and burst (0: events_per_s). Returns 0 or
 * DP_ERR_NOMEM.
 */
static int
api_key_add(struct dp_config *cfg, const char *key, const char *name, size_t name_len,
            int64_t events_per_s, int64_t burst)
{
    struct dp_api_key *info;
    struct dp_api_key *k;
    char tag[16];

    info = realloc(cfg->server_api_key_info, (cfg->server_api_keys_len + 1) * sizeof(*info));
    if (info == NULL) {
        return DP_ERR_NOMEM;
    }
    cfg->server_api_key_info = info;
    k = &info[cfg->server_api_keys_len];
    if (name == NULL) {
        key_tag(key, tag);
        name = tag;
        name_len = strlen(tag);
    }
    k->name = strndup(name, name_len);
    k->events_per_s = events_per_s;
    k->burst = burst > 0 ? burst : events_per_s;
    if (k->name == NULL || list_append(&cfg->server_api_keys, &cfg->server_api_keys_len,
                                       key) != 0) {
        free(k->name);
        return DP_ERR_NOMEM;
    }
    return 0;
}

/* server.api_keys (strings and checked key objects) into cfg. */
static void
api_keys_fill(struct dp_config *cfg, const config_setting_t *arr, bool *nomem)
{
    cfg->server_api_keys = calloc(1, sizeof(char *));
    if (cfg->server_api_keys == NULL) {
        *nomem = true;
        return;
    }
    for (int j = 0; arr != NULL && j < config_setting_length(arr); j++) {
        const config_setting_t *el = config_setting_get_elem(arr, (unsigned)j);
        const char *key = NULL;
        const char *name = NULL;
        long long eps = 0;
        long long burst = 0;
        int rc;

        if (config_setting_type(el) == CONFIG_TYPE_GROUP) {
            config_setting_lookup_string(el, "key", &key);
            config_setting_lookup_string(el, "name", &name);
            config_setting_lookup_int64(el, "events_per_s", &eps);
            config_setting_lookup_int64(el, "burst", &burst);
        } else {
            key = config_setting_get_string(el);
        }
        rc = api_key_add(cfg, key != NULL ? key : "", name, name != NULL ? strlen(name) : 0,
                         eps, burst);
        if (rc != 0) {
            *nomem = true;
        }
    }
}

static void
struct_fill(struct dp_config *cfg, const config_t *eff, bool *nomem)
{
    for (size_t i = 0; i < dp_settings_len; i++) {
        const struct dp_setting *o = &dp_settings[i];
        char *base = (char *)cfg + o->offset;
        long long iv = 0;
        int bv = 0;
        const char *sv = NULL;
        const config_setting_t *arr;

        switch (o->kind) {
        case DP_SETTING_INT:
            config_lookup_int64(eff, o->path, &iv);
            *(int *)(void *)base = (int)iv;
            break;
        case DP_SETTING_INT64:
            config_lookup_int64(eff, o->path, &iv);
            *(int64_t *)(void *)base = iv;
            break;
        case DP_SETTING_BOOL:
            config_lookup_bool(eff, o->path, &bv);
            *(bool *)base = bv != 0;
            break;
        case DP_SETTING_STRING:
        case DP_SETTING_STRING_NULL:
            config_lookup_string(eff, o->path, &sv);
            *(char **)(void *)base = xstrdup_or_null(sv, o->kind == DP_SETTING_STRING_NULL, nomem);
            break;
        case DP_SETTING_STRING_LIST:
            arr = config_lookup(eff, o->path);
            if (o->key_objects) {
                api_keys_fill(cfg, arr, nomem);
                break;
            }
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

/*
 * One trimmed line of the keys file (n > 0 bytes): "name:key" when what stands before the
 * first ':' is a valid name and a key follows, else the whole line is the key (named by its
 * tag). A key holding ':' is therefore written with a name.
 */
static void
keys_file_entry(struct dp_config *cfg, const char *line, size_t n, struct errs *e)
{
    const char *colon = memchr(line, ':', n);
    const char *name = NULL;
    size_t name_len = 0;

    if (colon != NULL && colon + 1 < line + n && key_name_ok(line, (size_t)(colon - line))) {
        name = line;
        name_len = (size_t)(colon - line);
        line = colon + 1;
    }
    if (api_key_add(cfg, line, name, name_len, 0, 0) != 0) {
        e->nomem = true;
    }
}

/*
 * Keys from server.api_keys_file: one a line (a key, or "name:key"), blanks around it
 * trimmed; a line whose first non-blank character is '#' is a comment. A '#' anywhere else
 * is part of the key.
 */
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
        size_t n;

        while (*p == ' ' || *p == '\t') {
            p++;
        }
        if (*p == '#') {
            continue;
        }
        n = strlen(p);
        while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r' || p[n - 1] == ' ' ||
                         p[n - 1] == '\t')) {
            p[--n] = '\0';
        }
        if (n > 0) {
            keys_file_entry(cfg, p, n, e);
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
        /* Names label metrics and rows: one key each. */
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cfg->server_api_key_info[i].name, cfg->server_api_key_info[j].name) == 0) {
                errs_add(e, "server.api_keys[%zu].name: %s is the name of server.api_keys[%zu] "
                         "too", i, cfg->server_api_key_info[i].name, j);
                break;
            }
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

