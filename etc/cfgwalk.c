/*
 * cfgwalk.c - what walks the settings table (settings.c) over a struct dp_config: compare two
 * (SIGHUP), print one (--check-config), append to and free its lists, and the log line of a
 * reload. Reads no file and no environment variable: config.c does.
 */
#include "etc/config.h"
#include "etc/decl.h"
#include "etc/err.h"
#include "etc/log.h"
#include "etc/retention.h"
#include "etc/settings.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
dp_config_list_append(char ***list, size_t *len, const char *s)
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
    for (size_t i = 0; i < dp_settings_len; i++) {
        char *base = (char *)cfg + dp_settings[i].offset;
        if (dp_settings[i].kind == DP_SETTING_STRING ||
            dp_settings[i].kind == DP_SETTING_STRING_NULL) {
            free(*(char **)(void *)base);
        } else if (dp_settings[i].kind == DP_SETTING_STRING_LIST) {
            list_free(*(char ***)(void *)base);
        }
    }
    for (size_t i = 0; cfg->server_api_key_info != NULL && i < cfg->server_api_keys_len; i++) {
        free(cfg->server_api_key_info[i].name);
    }
    free(cfg->server_api_key_info);
    dp_types_destroy(cfg->types);
    dp_retention_destroy(cfg->retention);
    free(cfg);
}

/* server.api_keys as objects: name and limits shown, the key never. */
static json_t *
api_keys_json(const struct dp_config *cfg)
{
    json_t *v = json_array();

    for (size_t i = 0; v != NULL && i < cfg->server_api_keys_len; i++) {
        const struct dp_api_key *k = &cfg->server_api_key_info[i];
        json_t *o = json_pack("{s:s, s:s}", "name", k->name, "key", "<redacted>");

        if (o != NULL && k->events_per_s > 0) {
            json_object_set_new(o, "events_per_s", json_integer(k->events_per_s));
            json_object_set_new(o, "burst", json_integer(k->burst));
        }
        json_array_append_new(v, o);
    }
    return v;
}

/* The end of a key=value conninfo value starting at p (quoted or not, with \ escapes). */
static const char *
conninfo_value_end(const char *p)
{
    if (*p == '\'') {
        for (p++; *p != '\0' && *p != '\''; p++) {
            if (*p == '\\' && p[1] != '\0') {
                p++;
            }
        }
        return *p == '\'' ? p + 1 : p;
    }
    for (; *p != '\0' && *p != ' ' && *p != '\t' && *p != '\n'; p++) {
        if (*p == '\\' && p[1] != '\0') {
            p++;
        }
    }
    return p;
}

/* Append n bytes of s to out at *used (out is large enough: see conninfo_masked). */
static void
put_bytes(char *out, size_t *used, const char *s, size_t n)
{
    memcpy(out + *used, s, n);
    *used += n;
}

/* The URI form (postgresql://user:password@host/db?password=...) with passwords ***'d. */
static void
conninfo_uri_mask(const char *in, char *out, size_t *used)
{
    const char *auth = strstr(in, "://") + 3;
    size_t auth_len = strcspn(auth, "/?");
    const char *at = NULL;
    const char *colon;
    const char *q;

    for (const char *p = auth; p < auth + auth_len; p++) {
        at = *p == '@' ? p : at;
    }
    colon = at != NULL ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (colon != NULL) {
        put_bytes(out, used, in, (size_t)(colon + 1 - in));
        put_bytes(out, used, "***", 3);
        in = at;
    }
    q = strchr(in, '?');
    if (q == NULL) {
        put_bytes(out, used, in, strlen(in));
        return;
    }
    put_bytes(out, used, in, (size_t)(q - in));
    while (*q != '\0') {
        size_t n = strcspn(q + 1, "&") + 1; /* this parameter with its '?' or '&' */

        if (strncmp(q + 1, "password=", 9) == 0) {
            put_bytes(out, used, q, 10);
            put_bytes(out, used, "***", 3);
        } else {
            put_bytes(out, used, q, n);
        }
        q += n;
    }
}

/*
 * conninfo (key=value or URI form) with every password replaced by ***, malloc'd (NULL when
 * out of memory): --check-config prints it, and a password must never be printed.
 */
static char *
conninfo_masked(const char *in)
{
    char *out = malloc(2 * strlen(in) + 16);
    size_t used = 0;
    const char *p = in;

    if (out == NULL) {
        return NULL;
    }
    if (strncmp(in, "postgresql://", 13) == 0 || strncmp(in, "postgres://", 11) == 0) {
        conninfo_uri_mask(in, out, &used);
        out[used] = '\0';
        return out;
    }
    while (*p != '\0') {
        const char *kw = p + strspn(p, " \t\n");
        size_t kw_len = strcspn(kw, " \t\n=");
        const char *eq = kw + kw_len + strspn(kw + kw_len, " \t\n");
        const char *val;
        const char *end;

        if (*eq != '=') {
            put_bytes(out, &used, p, strlen(p));
            break;
        }
        val = eq + 1 + strspn(eq + 1, " \t\n");
        end = conninfo_value_end(val);
        if (kw_len == 8 && strncmp(kw, "password", 8) == 0) {
            put_bytes(out, &used, p, (size_t)(kw + kw_len - p));
            put_bytes(out, &used, "=***", 4);
        } else {
            put_bytes(out, &used, p, (size_t)(end - p));
        }
        p = end;
    }
    out[used] = '\0';
    return out;
}

/* One setting's value as JSON (a new reference), or NULL on allocation failure. */
static json_t *
setting_json(const struct dp_setting *s, const struct dp_config *cfg)
{
    const char *base = (const char *)cfg + s->offset;
    const char *str;
    char *const *l;
    json_t *v = NULL;

    switch (s->kind) {
    case DP_SETTING_INT:
        return json_integer(*(const int *)(const void *)base);
    case DP_SETTING_INT64:
        return json_integer(*(const int64_t *)(const void *)base);
    case DP_SETTING_BOOL:
        return json_boolean(*(const bool *)base);
    case DP_SETTING_STRING:
    case DP_SETTING_STRING_NULL:
        str = *(char *const *)(const void *)base;
        if (str != NULL && s->conninfo) {
            char *masked = conninfo_masked(str);

            v = masked != NULL ? json_string(masked) : NULL;
            free(masked);
            return v;
        }
        return str != NULL ? json_string(str) : json_null();
    case DP_SETTING_STRING_LIST:
        if (s->key_objects) {
            return api_keys_json(cfg);
        }
        l = *(char **const *)(const void *)base;
        v = json_array();
        /* A secret list shows how many, never the text. */
        for (size_t j = 0; v != NULL && l != NULL && l[j] != NULL; j++) {
            json_array_append_new(v, json_string(s->secret ? "<redacted>" : l[j]));
        }
        return v;
    }
    return NULL;
}

char *
dp_config_to_json(const struct dp_config *cfg)
{
    json_t *root = json_object();
    char *text = NULL;

    if (root == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < dp_settings_len; i++) {
        const struct dp_setting *s = &dp_settings[i];
        char section[64];
        json_t *sec;

        dp_setting_section(s, section, sizeof(section));
        sec = json_object_get(root, section);
        if (sec == NULL) {
            sec = json_object();
            json_object_set_new(root, section, sec);
        }
        json_object_set_new(sec, dp_setting_key(s), setting_json(s, cfg));
    }
    json_object_set_new(root, "types", dp_types_to_json(cfg->types));
    json_object_set_new(root, "retention", dp_retention_to_json(cfg->retention));
    text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    return text;
}

static bool
str_eq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* The names and limits of two configurations' API keys (the keys compare equal). */
static bool
api_key_info_equal(const struct dp_config *a, const struct dp_config *b)
{
    for (size_t i = 0; i < a->server_api_keys_len; i++) {
        const struct dp_api_key *x = &a->server_api_key_info[i];
        const struct dp_api_key *y = &b->server_api_key_info[i];

        if (strcmp(x->name, y->name) != 0 || x->events_per_s != y->events_per_s ||
            x->burst != y->burst) {
            return false;
        }
    }
    return true;
}

static bool
setting_equal(const struct dp_setting *s, const struct dp_config *a, const struct dp_config *b)
{
    const char *pa = (const char *)a + s->offset;
    const char *pb = (const char *)b + s->offset;

    switch (s->kind) {
    case DP_SETTING_INT:
        return *(const int *)(const void *)pa == *(const int *)(const void *)pb;
    case DP_SETTING_INT64:
        return *(const int64_t *)(const void *)pa == *(const int64_t *)(const void *)pb;
    case DP_SETTING_BOOL:
        return *(const bool *)pa == *(const bool *)pb;
    case DP_SETTING_STRING:
    case DP_SETTING_STRING_NULL:
        return str_eq(*(char *const *)(const void *)pa, *(char *const *)(const void *)pb);
    case DP_SETTING_STRING_LIST: {
        char *const *la = *(char **const *)(const void *)pa;
        char *const *lb = *(char **const *)(const void *)pb;
        size_t i = 0;
        for (; la[i] != NULL && lb[i] != NULL; i++) {
            if (strcmp(la[i], lb[i]) != 0) {
                return false;
            }
        }
        if (la[i] != NULL || lb[i] != NULL) {
            return false;
        }
        return !s->key_objects || api_key_info_equal(a, b);
    }
    }
    return false;
}

/*
 * Declared types, read by both daemons, as "types.NAME": a new one is reloadable (SIGHUP
 * registers it), a changed or removed one takes a restart.
 */
static void
types_diff(const struct dp_types *old, const struct dp_types *fresh, dp_config_change_fn fn,
           void *arg)
{
    char key[DP_TYPE_NAME_MAX + 8];

    for (size_t i = 0; fresh != NULL && i < fresh->n; i++) {
        const struct dp_type_decl *d = &fresh->types[i];
        const struct dp_type_decl *o = dp_types_find(old, d->name);

        if (o == NULL || !dp_type_decl_equal(d, o)) {
            snprintf(key, sizeof(key), "types.%s", d->name);
            fn(arg, key, o == NULL);
        }
    }
    for (size_t i = 0; old != NULL && i < old->n; i++) {
        if (dp_types_find(fresh, old->types[i].name) == NULL) {
            snprintf(key, sizeof(key), "types.%s", old->types[i].name);
            fn(arg, key, false);
        }
    }
}

/* Retention rules, read by the loader only, as "retention.TYPE": any change takes a restart. */
static void
retention_diff(const struct dp_retention *old, const struct dp_retention *fresh,
               dp_config_change_fn fn, void *arg)
{
    char key[DP_TYPE_NAME_MAX + 12];

    for (size_t i = 0; fresh != NULL && i < fresh->n; i++) {
        const struct dp_retention_rule *o = dp_retention_find(old, fresh->rules[i].type);

        if (o == NULL || o->keep_days != fresh->rules[i].keep_days) {
            snprintf(key, sizeof(key), "retention.%s", fresh->rules[i].type);
            fn(arg, key, false);
        }
    }
    for (size_t i = 0; old != NULL && i < old->n; i++) {
        if (dp_retention_find(fresh, old->rules[i].type) == NULL) {
            snprintf(key, sizeof(key), "retention.%s", old->rules[i].type);
            fn(arg, key, false);
        }
    }
}

void
dp_config_diff(const struct dp_config *old, const struct dp_config *fresh, unsigned daemon,
               dp_config_change_fn fn, void *arg)
{
    for (size_t i = 0; i < dp_settings_len; i++) {
        const struct dp_setting *s = &dp_settings[i];

        if ((s->used_by & daemon) != 0 && !setting_equal(s, old, fresh)) {
            fn(arg, s->path, s->reloadable);
        }
    }
    types_diff(old->types, fresh->types, fn, arg);
    if ((daemon & DP_DAEMON_LOADER) != 0) {
        retention_diff(old->retention, fresh->retention, fn, arg);
    }
}

void
dp_config_reload_log(const char *prog, const char *applied, const char *restart, const char *errors)
{
    char joined[2048];
    size_t n = 0;

    if (errors != NULL) {
        for (const char *p = errors; *p != '\0' && n + 3 < sizeof(joined); p++) {
            if (*p != '\n') {
                joined[n++] = *p;
            } else if (p[1] != '\0') {
                joined[n++] = ';';
                joined[n++] = ' ';
            }
        }
        joined[n] = '\0';
        dp_error("configuration reload failed: keeping the running one", "errors=%s", joined);
        return;
    }
    dp_info("configuration reloaded", "applied=%s needs_restart=%s",
            applied != NULL && applied[0] != '\0' ? applied : "nothing",
            restart != NULL && restart[0] != '\0' ? restart : "nothing");
    if (restart != NULL && restart[0] != '\0') {
        dp_warn("changed settings need a restart", "daemon=%s settings=%s", prog, restart);
    }
}
