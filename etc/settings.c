/*
 * settings.c - the table of every setting, the names of its kinds, and what walks it over a
 * struct dp_config: compare (SIGHUP), print (--check-config, --help), append to and free its
 * lists. A new setting is one row here and its field in config.h. Reads no file and no
 * environment variable: config.c does.
 */
#include "etc/settings.h"
#include "etc/err.h"
#include "etc/log.h"
#include "etc/retention.h"
#include "etc/types.h"

#include <jansson.h>
#include <libconfig.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const formats[] = {"text", "json", NULL};

#define F(field) offsetof(struct dp_config, field)
#define BOTH (DP_DAEMON_SERVER | DP_DAEMON_LOADER)

/* docs/configuration.md shows this table (--describe-config). queue.id's default is computed. */
const struct dp_setting dp_settings[] = {
    {.path = "server.listen",
     .kind = DP_SETTING_STRING,
     .def_str = "127.0.0.1:8080",
     .offset = F(server_listen),
     .used_by = DP_DAEMON_SERVER,
     .help = "civetweb listening_ports syntax; a trailing s means TLS"},
    {.path = "server.threads",
     .kind = DP_SETTING_INT,
     .def_int = 64,
     .min = 1,
     .max = 4096,
     .offset = F(server_threads),
     .used_by = DP_DAEMON_SERVER,
     .help = "worker threads (concurrent connections served)"},
    {.path = "server.max_body_bytes",
     .kind = DP_SETTING_INT64,
     .def_int = 33554432,
     .min = 1,
     .max = 2147483647LL,
     .offset = F(server_max_body_bytes),
     .used_by = DP_DAEMON_SERVER,
     .help = "larger bodies (after gzip inflation) get 413"},
    {.path = "server.request_timeout_ms",
     .kind = DP_SETTING_INT,
     .def_int = 30000,
     .min = 100,
     .max = 3600000,
     .offset = F(server_request_timeout_ms),
     .used_by = DP_DAEMON_SERVER,
     .help = "slow clients are cut off",
     .doc = "A whole body must arrive within it, whatever the client's pace"},
    {.path = "server.api_keys",
     .kind = DP_SETTING_STRING_LIST,
     .offset = F(server_api_keys),
     .len_offset = F(server_api_keys_len),
     .used_by = DP_DAEMON_SERVER,
     .secret = true,
     .key_objects = true,
     .reloadable = true,
     .help = "if any key is set, write and read endpoints need one; {name, key, events_per_s, "
             "burst} objects name keys and limit them"},
    {.path = "server.api_keys_file",
     .kind = DP_SETTING_STRING_NULL,
     .offset = F(server_api_keys_file),
     .used_by = DP_DAEMON_SERVER,
     .reloadable = true,
     .help = "one key (or name:key) a line; a line starting with # is a comment",
     .doc = "SIGHUP re-reads it: revoking a key needs no restart"},
    {.path = "server.cors_origins",
     .kind = DP_SETTING_STRING_LIST,
     .offset = F(server_cors_origins),
     .len_offset = F(server_cors_origins_len),
     .used_by = DP_DAEMON_SERVER,
     .help = "origins allowed for browser POSTs",
     .doc = "Empty: no CORS headers"},
    {.path = "server.tls_certificate",
     .kind = DP_SETTING_STRING_NULL,
     .offset = F(server_tls_certificate),
     .used_by = DP_DAEMON_SERVER,
     .help = "PEM with certificate and key, for an s port"},
    {.path = "server.max_events_per_body",
     .kind = DP_SETTING_INT64,
     .def_int = 100000,
     .min = 1,
     .max = 100000000,
     .offset = F(server_max_events_per_body),
     .used_by = DP_DAEMON_SERVER,
     .help = "more events in one body get 413",
     .doc = "Parsing stops there and nothing of the body is stored"},
    {.path = "server.segment_max_message_bytes",
     .kind = DP_SETTING_INT64,
     .def_int = 32768,
     .min = 1024,
     .max = 16777216,
     .offset = F(server_segment_max_message_bytes),
     .used_by = DP_DAEMON_SERVER,
     .help = "largest Segment tracking API message; larger ones are refused (400)",
     .doc = "Segment's own limit (32 KB) by default, on the message's bytes as sent (the "
            "batch-level context merged into it not counted). In a batch the message is refused "
            "and dead-lettered, the others stored"},
    {.path = "server.segment_max_batch_bytes",
     .kind = DP_SETTING_INT64,
     .def_int = 512000,
     .min = 1024,
     .max = 1LL << 30,
     .offset = F(server_segment_max_batch_bytes),
     .used_by = DP_DAEMON_SERVER,
     .help = "largest Segment tracking API body; a larger one is refused whole (400)",
     .doc = "Segment's own limit (500 KB) by default; an SDK drops a batch answered 400, so "
            "raise it rather than lower it. `server.max_body_bytes` still applies first. A batch "
            "whose batch-level context and integrations, times its messages, exceed 8 times this "
            "is refused whole too (400)"},
    {.path = "server.max_inflight_bytes",
     .kind = DP_SETTING_INT64,
     .def_int = 268435456,
     .min = 1048576,
     .max = 1LL << 40,
     .offset = F(server_max_inflight_bytes),
     .used_by = DP_DAEMON_SERVER,
     .help = "bodies being handled at once, in bytes; beyond it 503 + Retry-After",
     .doc = "Raw and inflated buffers, then their parsed events; a request that finds no room "
            "waits up to 1 s. Keep it at least 4 x `server.max_body_bytes`: a gzip body's "
            "buffers grow by doubling"},
    {.path = "server.database_conninfo",
     .kind = DP_SETTING_STRING_NULL,
     .offset = F(server_database_conninfo),
     .used_by = DP_DAEMON_SERVER,
     .help = "libpq connection string for the server's reads (e.g. a read-only role); "
             "null: database.conninfo",
     .doc = "The roles and why: docs/postgresql.md"},
    {.path = "queue.path",
     .kind = DP_SETTING_STRING,
     .def_str = "/var/lib/datapipe/queue",
     .offset = F(queue_path),
     .used_by = BOTH,
     .help = "LMDB environment directory (created if missing)"},
    {.path = "queue.max_bytes",
     .kind = DP_SETTING_INT64,
     .def_int = 1073741824,
     .min = 1048576,
     .max = 1LL << 50,
     .offset = F(queue_max_bytes),
     .used_by = BOTH,
     .help = "LMDB map size; when full, POSTs get 503"},
    {.path = "queue.sync",
     .kind = DP_SETTING_BOOL,
     .def_int = 1,
     .min = 0,
     .max = 1,
     .offset = F(queue_sync),
     .used_by = BOTH,
     .help = "fsync before acknowledging"},
    {.path = "queue.id",
     .kind = DP_SETTING_STRING,
     .offset = F(queue_id),
     .used_by = DP_DAEMON_LOADER,
     .help = "names this queue in loader_batches (default: host name)",
     .doc = "And in queue_owners; unique per appliance"},
    {.path = "queue.dedup_window_s",
     .kind = DP_SETTING_INT64,
     .def_int = 86400,
     .min = 1,
     .max = 86400LL * 366,
     .offset = F(queue_dedup_window_s),
     .used_by = DP_DAEMON_SERVER,
     .reloadable = true,
     .help = "how long the server remembers an idempotency key"},
    {.path = "database.conninfo",
     .kind = DP_SETTING_STRING,
     .def_str = "dbname=datapipe",
     .offset = F(database_conninfo),
     .used_by = BOTH,
     .conninfo = true,
     .help = "libpq connection string"},
    {.path = "database.schema",
     .kind = DP_SETTING_STRING,
     .def_str = "datapipe",
     .offset = F(database_schema),
     .used_by = BOTH,
     .help = "schema that holds all tables"},
    {.path = "loader.interval_s",
     .kind = DP_SETTING_INT,
     .def_int = 300,
     .min = 1,
     .max = 86400 * 7,
     .offset = F(loader_interval_s),
     .used_by = DP_DAEMON_LOADER,
     .reloadable = true,
     .help = "regular wake-up interval"},
    {.path = "loader.min_interval_s",
     .kind = DP_SETTING_INT,
     .def_int = 5,
     .min = 0,
     .max = 86400,
     .offset = F(loader_min_interval_s),
     .used_by = DP_DAEMON_LOADER,
     .reloadable = true,
     .help = "earliest re-run when the queue passes high_water"},
    {.path = "loader.high_water",
     .kind = DP_SETTING_INT64,
     .def_int = 100000,
     .min = 1,
     .max = 1LL << 40,
     .offset = F(loader_high_water),
     .used_by = DP_DAEMON_LOADER,
     .reloadable = true,
     .help = "queued events that trigger an early run"},
    {.path = "loader.batch_rows",
     .kind = DP_SETTING_INT,
     .def_int = 50000,
     .min = 1,
     .max = 10000000,
     .offset = F(loader_batch_rows),
     .used_by = DP_DAEMON_LOADER,
     .help = "most events in one COPY transaction"},
    {.path = "loader.workers",
     .kind = DP_SETTING_INT,
     .def_int = 2,
     .min = 1,
     .max = 64,
     .offset = F(loader_workers),
     .used_by = DP_DAEMON_LOADER,
     .help = "concurrent PostgreSQL connections loading"},
    {.path = "log.level",
     .kind = DP_SETTING_STRING,
     .def_str = "info",
     .choices = levels,
     .offset = F(log_level),
     .used_by = BOTH,
     .reloadable = true,
     .help = "debug, info, warn, error"},
    {.path = "log.format",
     .kind = DP_SETTING_STRING,
     .def_str = "text",
     .choices = formats,
     .offset = F(log_format),
     .used_by = BOTH,
     .reloadable = true,
     .help = "text or json"},
};

const size_t dp_settings_len = sizeof(dp_settings) / sizeof(dp_settings[0]);

const struct dp_setting *
dp_setting_find(const char *path)
{
    for (size_t i = 0; i < dp_settings_len; i++) {
        if (strcmp(dp_settings[i].path, path) == 0) {
            return &dp_settings[i];
        }
    }
    return NULL;
}

char *
dp_setting_section(const struct dp_setting *s, char *buf, size_t len)
{
    snprintf(buf, len, "%.*s", (int)(dp_setting_key(s) - 1 - s->path), s->path);
    return buf;
}

const char *
dp_setting_key(const struct dp_setting *s)
{
    return strchr(s->path, '.') + 1;
}

/* setting_default - the default of s as text, into buf (len bytes); returns buf. */
static const char *
setting_default(const struct dp_setting *s, char *buf, size_t len)
{
    if (s->kind == DP_SETTING_INT || s->kind == DP_SETTING_INT64) {
        snprintf(buf, len, "%lld", s->def_int);
    } else if (s->kind == DP_SETTING_BOOL) {
        snprintf(buf, len, "%s", s->def_int ? "true" : "false");
    } else if (s->kind == DP_SETTING_STRING_LIST) {
        snprintf(buf, len, "[]");
    } else {
        snprintf(buf, len, "%s",
                 s->def_str                         ? s->def_str
                 : strcmp(s->path, "queue.id") == 0 ? "(host name)"
                                                    : "null");
    }
    return buf;
}

void
dp_settings_help(FILE *f)
{
    for (size_t i = 0; i < dp_settings_len; i++) {
        const struct dp_setting *s = &dp_settings[i];
        char def[64];

        fprintf(f, "  %-26s %-24s %s\n", s->path, setting_default(s, def, sizeof(def)), s->help);
    }
}

/* setting_range - what values s takes, as Markdown, into buf (len bytes); returns buf. */
static const char *
setting_range(const struct dp_setting *s, char *buf, size_t len)
{
    size_t used = 0;

    buf[0] = '\0';
    if (s->kind == DP_SETTING_INT || s->kind == DP_SETTING_INT64) {
        snprintf(buf, len, "%lld to %lld", s->min, s->max);
    } else if (s->kind == DP_SETTING_BOOL) {
        snprintf(buf, len, "`true`, `false`");
    } else if (s->choices != NULL) {
        for (size_t i = 0; s->choices[i] != NULL && used < len; i++) {
            used +=
                (size_t)snprintf(buf + used, len - used, "%s`%s`", i ? ", " : "", s->choices[i]);
        }
    } else if (s->kind == DP_SETTING_STRING_LIST) {
        snprintf(buf, len, "array of strings");
    } else {
        snprintf(buf, len, s->kind == DP_SETTING_STRING_NULL ? "string or null" : "string");
    }
    return buf;
}

void
dp_settings_describe(FILE *f)
{
    fprintf(f, "| key | default | values | SIGHUP | read by | meaning |\n");
    fprintf(f, "|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < dp_settings_len; i++) {
        const struct dp_setting *s = &dp_settings[i];
        char def[64], range[160];
        const char *by = s->used_by == (DP_DAEMON_SERVER | DP_DAEMON_LOADER) ? "both"
                         : s->used_by == DP_DAEMON_SERVER                    ? "server"
                                                                             : "loader";

        fprintf(f, "| `%s` | `%s` | %s | %s | %s | %s%s%s |\n", s->path,
                setting_default(s, def, sizeof(def)), setting_range(s, range, sizeof(range)),
                s->reloadable ? "applies" : "restart", by, s->help, s->doc ? ". " : "",
                s->doc ? s->doc : "");
    }
    /* The rules of "retention" are keyed by type name, so not rows of the table above. */
    fprintf(f, "| `retention.TYPE.partition` | none | `day` | restart | loader | partition the "
               "append table of event type TYPE (built-in or declared; not `product`) by day of "
               "`received_at`. See [Retention](#retention) |\n");
    fprintf(f,
            "| `retention.TYPE.keep_days` | none | integer, 1 to %d | restart | loader | "
            "days of partitions kept: a day's partition is dropped once it ended this many "
            "days ago |\n",
            DP_RETENTION_KEEP_DAYS_MAX);
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

/* ---- walking a struct dp_config ------------------------------------------------------ */

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
