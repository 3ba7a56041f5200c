/*
 * cfgfile.c - one configuration file into a libconfig tree: libconfig syntax (.cfg, .conf) as
 * libconfig reads it, JSON through jansson, value by value, so that one schema walk
 * (config.c) validates both. Knows keys only as far as a JSON value's libconfig type needs
 * them (API key objects, null); never validates values, never merges.
 */
#include "etc/cfgfile.h"
#include "etc/apikeys.h"
#include "etc/err.h"
#include "etc/settings.h"

#include <errno.h>
#include <jansson.h>
#include <libconfig.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* A JSON value's type as an error message names it. */
static const char *
json_kind_name(const json_t *v)
{
    return json_is_string(v)                       ? "string"
           : json_is_integer(v) || json_is_real(v) ? "number"
           : json_is_boolean(v)                    ? "boolean"
           : json_is_null(v)                       ? "null"
                                                   : "a structure";
}

/*
 * API key object el (element i of the list at path) as a group of list: scalars as they
 * are, for dp_api_key_object_check to judge; null and structures are refused here.
 */
static void
json_key_object(config_setting_t *list, json_t *el, const char *path, size_t i, const char *file,
                struct dp_errs *e)
{
    config_setting_t *g = config_setting_add(list, NULL, CONFIG_TYPE_GROUP);
    const char *k;
    json_t *m;

    if (g == NULL) {
        e->nomem = true;
        return;
    }
    json_object_foreach(el, k, m)
    {
        const struct dp_api_key_member *km = dp_api_key_member_find(k);
        config_setting_t *d = NULL;

        if (km == NULL) {
            dp_errs_add(e, "%s: %s[%zu].%s: unknown key", file, path, i, k);
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
            dp_errs_add(e, "%s: %s[%zu].%s: expected %s, got %s", file, path, i, k,
                        km->integer ? "integer" : "string", json_kind_name(m));
        }
    }
}

/* Is path inside the "types" key (declared event types, etc/decl_conf.c)? */
static bool
in_types(const char *path)
{
    return strncmp(path, "types.", 6) == 0;
}

/* JSON null has no libconfig counterpart; for DP_SETTING_STRING_NULL it becomes "". */
static int
json_to_setting(config_setting_t *parent, const char *key, json_t *v, const char *path,
                const char *file, struct dp_errs *e)
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
            dp_errs_add(e, "%s: %s: %s", file, path,
                        o == NULL && !in_types(path) ? "unknown key" : "null is not allowed here");
            return 0;
        }
    }
    s = config_setting_add(parent, key, type);
    if (s == NULL) {
        /* libconfig refuses names outside [A-Za-z*][-A-Za-z0-9_*]* and
         * duplicates; neither can be a known key. */
        dp_errs_add(e, "%s: %s: %s", file, path,
                    in_types(path) ? "invalid name (lower-case letters, digits and _, starting "
                                     "with a letter, at most 63 bytes)"
                                   : "unknown key");
        return 0;
    }
    if (json_is_object(v)) {
        const char *k;
        json_t *child;
        json_object_foreach(v, k, child)
        {
            char sub[512];
            snprintf(sub, sizeof(sub), "%s.%s", path, k);
            json_to_setting(s, k, child, sub, file, e);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *el;
        json_array_foreach(v, i, el)
        {
            if (key_list && json_is_object(el)) {
                json_key_object(s, el, path, i, file, e);
                continue;
            }
            if (!json_is_string(el)) {
                dp_errs_add(e, "%s: %s[%zu]: expected %s, got %s", file, path, i,
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

bool
dp_cfgfile_read(config_t *tree, const char *path, struct dp_errs *e)
{
    json_error_t jerr;
    json_t *root = NULL;
    bool ok = false;

    if (access(path, R_OK) != 0) {
        dp_errs_add(e, "%s: cannot read: %s", path, strerror(errno));
        return false;
    }
    if (path_is_libconfig(path)) {
        if (config_read_file(tree, path) != CONFIG_TRUE) {
            dp_errs_add(e, "%s: line %d: %s", path, config_error_line(tree),
                        config_error_text(tree));
            return false;
        }
        return true;
    }
    root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        dp_errs_add(e, "%s: line %d column %d: %s", path, jerr.line, jerr.column, jerr.text);
        goto out;
    }
    if (!json_is_object(root)) {
        dp_errs_add(e, "%s: the top level must be an object", path);
        goto out;
    }
    {
        const char *k;
        json_t *child;
        int before = e->count;
        json_object_foreach(root, k, child)
        {
            json_to_setting(config_root_setting(tree), k, child, k, path, e);
        }
        ok = e->count == before;
    }
out:
    json_decref(root);
    return ok;
}
