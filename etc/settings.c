/*
 * settings.c - the table of every setting, the names of its kinds, and what prints the table
 * itself (--help, --describe-config). A new setting is one row here and its field in
 * config.h; cfgwalk.c walks the table over a struct dp_config. Reads no file and no
 * environment variable: config.c does.
 */
#include "etc/settings.h"
#include "etc/err.h"
#include "etc/retention.h"

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
               "append table of event type TYPE (built-in or declared; not `product` or `users`) "
               "by day of "
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
