/*
 * config.c - defaults, lookup order, validation and merge, the effective tree into struct
 * dp_config. Every file, whatever its syntax, becomes a libconfig tree (cfgfile.c); one schema
 * walk validates it and merges it key by key into the effective tree, from which typed lookups
 * fill struct dp_config (API key entries: apikeys.c). Never exits: errors go back to main.
 */
#include "etc/config.h"
#include "etc/apikeys.h"
#include "etc/cfgfile.h"
#include "etc/decl.h"
#include "etc/err.h"
#include "etc/log.h"
#include "etc/retention.h"
#include "etc/settings.h"

#include <libconfig.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- validation and merge ---------------------------------------------- */

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
check_value(const struct dp_setting *o, const config_setting_t *s, const char *file,
            struct dp_errs *e)
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
            dp_errs_add(e, "%s: %s: must be %lld..%lld", file, o->path, o->min, o->max);
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
                dp_errs_add(e, "%s: %s: must not be empty", file, o->path);
                return false;
            }
            if (o->choices != NULL) {
                for (const char *const *c = o->choices; *c != NULL; c++) {
                    if (strcmp(*c, v) == 0) {
                        return true;
                    }
                }
                dp_errs_add(e, "%s: %s: must be one of %s", file, o->path,
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
                    ok &= dp_api_key_object_check(o, (size_t)i, el, file, e);
                } else if (config_setting_type(el) != CONFIG_TYPE_STRING) {
                    dp_errs_add(e, "%s: %s[%d]: expected %s, got %s", file, o->path, i,
                                o->key_objects ? "string or object" : "string",
                                dp_setting_kind_name(el));
                    return false;
                }
            }
            return ok;
        }
        break;
    }
    dp_errs_add(e, "%s: %s: expected %s, got %s", file, o->path, kind_name(o->kind),
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
    struct dp_errs *e;
    const char *file;
};

static void
types_err(void *arg, const char *text)
{
    struct types_errs *te = arg;

    dp_errs_add(te->e, "%s: %s", te->file, text);
}

/* The "types" key of a file: checked by etc/decl_conf.c, merged type by type. */
static void
types_merge(config_t *eff, const config_setting_t *sec, const char *file, struct dp_errs *e)
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

/* The "retention" key of a file: checked by etc/retention.c, merged type by type. */
static void
retention_merge(config_t *eff, const config_setting_t *sec, const char *file, struct dp_errs *e)
{
    struct types_errs te = {e, file};
    config_setting_t *into;

    if (dp_retention_check(sec, types_err, &te) != 0) {
        return;
    }
    into = config_setting_get_member(config_root_setting(eff), "retention");
    if (into == NULL) {
        into = config_setting_add(config_root_setting(eff), "retention", CONFIG_TYPE_GROUP);
    }
    /* The same replace-by-name merge as the declared types': a later file's rule wins. */
    if (into == NULL || dp_types_merge(into, sec) != 0) {
        e->nomem = true;
    }
}

static void
retention_err(void *arg, const char *text)
{
    dp_errs_add(arg, "%s", text);
}

/* Walk a file's tree: every key must be known and well typed; merge the good ones. */
static void
validate_and_merge(config_t *eff, const config_t *file_tree, const char *file, struct dp_errs *e)
{
    config_setting_t *root = config_root_setting(file_tree);

    for (int i = 0; i < config_setting_length(root); i++) {
        config_setting_t *sec = config_setting_get_elem(root, (unsigned)i);
        const char *sname = config_setting_name(sec);

        if (strcmp(sname, "types") == 0) {
            types_merge(eff, sec, file, e);
            continue;
        }
        if (strcmp(sname, "retention") == 0) {
            retention_merge(eff, sec, file, e);
            continue;
        }
        if (!section_known(sname)) {
            dp_errs_add(e, "%s: %s: unknown key", file, sname);
            continue;
        }
        if (config_setting_type(sec) != CONFIG_TYPE_GROUP) {
            dp_errs_add(e, "%s: %s: expected object, got %s", file, sname,
                        dp_setting_kind_name(sec));
            continue;
        }
        for (int j = 0; j < config_setting_length(sec); j++) {
            config_setting_t *s = config_setting_get_elem(sec, (unsigned)j);
            char path[256];
            const struct dp_setting *o;

            snprintf(path, sizeof(path), "%s.%s", sname, config_setting_name(s));
            o = dp_setting_find(path);
            if (o == NULL) {
                dp_errs_add(e, "%s: %s: unknown key", file, path);
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
                dp_api_keys_fill(cfg, arr, nomem);
                break;
            }
            *(char ***)(void *)base = calloc(1, sizeof(char *));
            if (*(char ***)(void *)base == NULL) {
                *nomem = true;
                break;
            }
            for (int j = 0; arr != NULL && j < config_setting_length(arr); j++) {
                size_t *len = (size_t *)(void *)((char *)cfg + o->len_offset);

                if (dp_config_list_append((char ***)(void *)base, len,
                                          config_setting_get_string_elem(arr, j)) != 0) {
                    *nomem = true;
                }
            }
            break;
        }
    }
}

static void
cross_check(const struct dp_config *cfg, struct dp_errs *e)
{
    size_t n = cfg->server_listen ? strlen(cfg->server_listen) : 0;

    if (cfg->loader_min_interval_s > cfg->loader_interval_s) {
        dp_errs_add(e, "loader.min_interval_s: must not exceed loader.interval_s (%d)",
                    cfg->loader_interval_s);
    }
    if (n > 0 && cfg->server_listen[n - 1] == 's' && cfg->server_tls_certificate == NULL) {
        dp_errs_add(e, "server.tls_certificate: required by the TLS port in server.listen");
    }
    dp_api_keys_check(cfg, e);
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
    struct dp_errs e = {0};
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
    files[0] =
        src->system_path != NULL && access(src->system_path, F_OK) == 0 ? src->system_path : NULL;
    files[1] = src->env_path;
    files[2] = src->cli_path;
    for (int i = 0; i < 3; i++) {
        config_t ft;
        if (files[i] == NULL) {
            continue;
        }
        config_init(&ft);
        if (dp_cfgfile_read(&ft, files[i], &e)) {
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
        if (rc == 0) {
            rc = dp_retention_build(config_lookup(&eff, "retention"), &cfg->retention);
        }
        if (rc != 0) {
            goto out;
        }
        dp_retention_types_check(cfg->retention, cfg->types, retention_err, &e);
        dp_api_keys_file_read(cfg, &e);
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
