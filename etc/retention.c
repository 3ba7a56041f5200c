/*
 * retention.c - the "retention" key: checked with errors naming the key path, merged like
 * "types" (a later file's rule of a type replaces an earlier one's), built into struct
 * dp_retention. Never reads PostgreSQL or the event registry (etc/ calls nothing of ours): the
 * built-in types are named here, and tests/unit/check_types.c holds the list to the registry.
 */
#include <jansson.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etc/err.h"
#include "etc/retention.h"
#include "etc/settings.h"

/* The built-in types and whether their table is append-only: every type of events/registry.c,
 * the Segment tracking API's tables included (tests/unit/check_types.c walks the registry). */
static const struct {
    const char *name;
    bool append;
} builtin[] = {
    {"crash_report", true}, {"ad_event", true},   {"user_login", true}, {"data_sample", true},
    {"product", false},     {"identifies", true}, {"tracks", true},     {"pages", true},
    {"screens", true},      {"groups", true},     {"aliases", true},    {"users", false},
};

bool
dp_retention_builtin(const char *type, bool *append)
{
    for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++) {
        if (strcmp(builtin[i].name, type) == 0) {
            if (append != NULL) {
                *append = builtin[i].append;
            }
            return true;
        }
    }
    return false;
}

static void
rule_err(void (*err)(void *, const char *), void *arg, int *count, const char *fmt, ...)
{
    char text[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    err(arg, text);
    (*count)++;
}

static bool
is_int(const config_setting_t *s)
{
    return config_setting_type(s) == CONFIG_TYPE_INT || config_setting_type(s) == CONFIG_TYPE_INT64;
}

/* One member of "retention": its name a type's, its value {"partition": "day", "keep_days": N}. */
static int
rule_check(const config_setting_t *r, void (*err)(void *, const char *), void *arg)
{
    const char *type = config_setting_name(r);
    const config_setting_t *p;
    const config_setting_t *k;
    int count = 0;

    if (strlen(type) > DP_TYPE_NAME_MAX) {
        rule_err(err, arg, &count, "retention.%.40s...: not an event type's name", type);
        return count;
    }
    if (config_setting_type(r) != CONFIG_TYPE_GROUP) {
        rule_err(err, arg, &count, "retention.%s: expected object, got %s", type,
                 dp_setting_kind_name(r));
        return count;
    }
    for (int i = 0; i < config_setting_length(r); i++) {
        const char *key = config_setting_name(config_setting_get_elem(r, (unsigned)i));

        if (strcmp(key, "partition") != 0 && strcmp(key, "keep_days") != 0) {
            rule_err(err, arg, &count, "retention.%s.%s: unknown key", type, key);
        }
    }
    p = config_setting_get_member(r, "partition");
    k = config_setting_get_member(r, "keep_days");
    if (p == NULL) {
        rule_err(err, arg, &count, "retention.%s.partition: required (\"day\")", type);
    } else if (config_setting_type(p) != CONFIG_TYPE_STRING ||
               strcmp(config_setting_get_string(p), "day") != 0) {
        rule_err(err, arg, &count, "retention.%s.partition: expected \"day\"", type);
    }
    if (k == NULL) {
        rule_err(err, arg, &count, "retention.%s.keep_days: required", type);
    } else if (!is_int(k) || config_setting_get_int64(k) < 1 ||
               config_setting_get_int64(k) > DP_RETENTION_KEEP_DAYS_MAX) {
        rule_err(err, arg, &count, "retention.%s.keep_days: expected an integer from 1 to %d", type,
                 DP_RETENTION_KEEP_DAYS_MAX);
    }
    return count;
}

int
dp_retention_check(const config_setting_t *s, void (*err)(void *arg, const char *text), void *arg)
{
    int count = 0;

    if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
        rule_err(err, arg, &count, "retention: expected object, got %s", dp_setting_kind_name(s));
        return count;
    }
    for (int i = 0; i < config_setting_length(s); i++) {
        count += rule_check(config_setting_get_elem(s, (unsigned)i), err, arg);
    }
    return count;
}

static void
ignore_err(void *arg, const char *text)
{
    (void)arg;
    (void)text;
}

int
dp_retention_build(const config_setting_t *s, struct dp_retention **out)
{
    struct dp_retention *r = NULL;
    int n = s != NULL ? config_setting_length(s) : 0;

    *out = NULL;
    if (s != NULL && dp_retention_check(s, ignore_err, NULL) != 0) {
        return DP_ERR_CONFIG;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return DP_ERR_NOMEM;
    }
    if (n > 0) {
        r->rules = calloc((size_t)n, sizeof(*r->rules));
        if (r->rules == NULL) {
            free(r);
            return DP_ERR_NOMEM;
        }
    }
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);

        snprintf(r->rules[i].type, sizeof(r->rules[i].type), "%s", config_setting_name(e));
        r->rules[i].keep_days =
            (int)config_setting_get_int64(config_setting_get_member(e, "keep_days"));
    }
    r->n = (size_t)n;
    *out = r;
    return 0;
}

int
dp_retention_types_check(const struct dp_retention *r, const struct dp_types *types,
                         void (*err)(void *arg, const char *text), void *arg)
{
    int count = 0;

    for (size_t i = 0; r != NULL && i < r->n; i++) {
        const char *type = r->rules[i].type;
        bool append = false;
        bool known = dp_retention_builtin(type, &append);

        if (known && !append) {
            rule_err(err, arg, &count,
                     "retention.%s: an upsert table is not partitioned "
                     "(its rows are updated in place)",
                     type);
        } else if (!known && dp_types_find(types, type) == NULL) {
            rule_err(err, arg, &count,
                     "retention.%s: no such event type (built-in or declared "
                     "in \"types\")",
                     type);
        }
    }
    return count;
}

void
dp_retention_destroy(struct dp_retention *r)
{
    if (r != NULL) {
        free(r->rules);
        free(r);
    }
}

const struct dp_retention_rule *
dp_retention_find(const struct dp_retention *r, const char *type)
{
    for (size_t i = 0; r != NULL && i < r->n; i++) {
        if (strcmp(r->rules[i].type, type) == 0) {
            return &r->rules[i];
        }
    }
    return NULL;
}

json_t *
dp_retention_to_json(const struct dp_retention *r)
{
    json_t *o = json_object();

    for (size_t i = 0; o != NULL && r != NULL && i < r->n; i++) {
        json_t *v = json_pack("{s:s, s:i}", "partition", "day", "keep_days", r->rules[i].keep_days);

        if (v == NULL || json_object_set_new(o, r->rules[i].type, v) != 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}
