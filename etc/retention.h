/*
 * retention.h - the "retention" key of the configuration: which event types' append tables
 * are partitioned by day of received_at and how many days of partitions the loader keeps
 * (docs/configuration.md, "Retention"). Checks and builds only; never touches PostgreSQL.
 */
#ifndef DP_ETC_RETENTION_H
#define DP_ETC_RETENTION_H

#include <stdbool.h>
#include <stddef.h>

#include "etc/decl.h"

struct config_setting_t;
struct json_t;

#define DP_RETENTION_KEEP_DAYS_MAX 36600 /* days: a hundred years */

/* One type's rule: partition by day of received_at, drop partitions older than keep_days. */
struct dp_retention_rule {
    char type[DP_TYPE_NAME_MAX + 1];
    int keep_days; /* days; at least 1 */
};

struct dp_retention {
    struct dp_retention_rule *rules;
    size_t n;
};

/*
 * dp_retention_check - check a "retention" group: each member named after an event type, an
 * object with "partition": "day" and "keep_days" (an integer, 1 to DP_RETENTION_KEEP_DAYS_MAX).
 * Each error goes to err as "retention.TYPE.KEY: what" (the key path). Whether the type
 * exists is dp_retention_types_check's. Returns the number of errors.
 */
int dp_retention_check(const struct config_setting_t *s, void (*err)(void *arg, const char *text),
                       void *arg);

/*
 * dp_retention_build - the rules of a checked group (NULL: none).
 *   out: receives them; free with dp_retention_destroy().
 * Returns 0, DP_ERR_CONFIG (s does not pass dp_retention_check), DP_ERR_NOMEM.
 */
int dp_retention_build(const struct config_setting_t *s, struct dp_retention **out);

/*
 * dp_retention_builtin - whether type is a built-in event type (those of events/registry.c,
 * the Segment tracking API's tables included).
 *   append: when not NULL and type is built in, receives whether its table is append-only
 *   (false: an upsert table, product or users).
 */
bool dp_retention_builtin(const char *type, bool *append);

/*
 * dp_retention_types_check - every rule names a built-in append type or a declared type
 * (types); the upsert types product and users are refused (their rows are updated in place,
 * never expire by day). Errors go to err as dp_retention_check's. Returns the number of errors.
 */
int dp_retention_types_check(const struct dp_retention *r, const struct dp_types *types,
                             void (*err)(void *arg, const char *text), void *arg);

/* dp_retention_destroy - free everything. NULL-safe. */
void dp_retention_destroy(struct dp_retention *r);

/* dp_retention_find - the rule of type, or NULL. r may be NULL. */
const struct dp_retention_rule *dp_retention_find(const struct dp_retention *r, const char *type);

/* dp_retention_to_json - the rules as a JSON object (--check-config); NULL when out of memory. */
struct json_t *dp_retention_to_json(const struct dp_retention *r);

#endif
