/*
 * config.h - every setting of datapipe (docs/configuration.md), in one place.
 * Defaults, then /etc/datapipe.json, then $DATAPIPE_CNF, then -c FILE, later
 * wins key by key. JSON files are parsed with jansson and loaded into the same
 * libconfig tree as libconfig-syntax files (.cfg, .conf), so one typed lookup
 * validates both. Only etc/ reads configuration files and the environment.
 */
#ifndef DP_CONFIG_H
#define DP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DP_CONFIG_SYSTEM_PATH "/etc/datapipe.json"

struct dp_types;
struct dp_retention;

#define DP_API_KEY_NAME_MAX 63 /* longest API key name, bytes */

/*
 * What the configuration says about one API key besides the key itself: server.api_keys
 * objects {"name", "key", "events_per_s", "burst"}, "name:key" lines of the keys file. A
 * key given without a name is named "key-" and 8 hex digits of its SHA-256: stable, and not
 * the key.
 */
struct dp_api_key {
    char *name;           /* metrics label and source column; never the key */
    int64_t events_per_s; /* events a second; 0: no limit */
    int64_t burst;        /* events the bucket holds; with a limit >= 1 */
};

/* The effective configuration. Every string is owned by the struct. */
struct dp_config {
    char *server_listen;                      /* civetweb listening_ports syntax */
    int server_threads;                       /* worker threads */
    int64_t server_max_body_bytes;            /* bytes, after gzip inflation */
    int server_request_timeout_ms;            /* milliseconds */
    int64_t server_max_events_per_body;       /* events; more in one body: 413 */
    int64_t server_segment_max_message_bytes; /* bytes; a larger Segment message: 400 */
    int64_t server_segment_max_batch_bytes;   /* bytes; a larger Segment body: 400 */
    int64_t server_max_inflight_bytes;        /* bytes of request bodies (and their parsed events)
                                                 held at once, server-wide */
    char **server_api_keys;                   /* NULL-terminated: api_keys, then api_keys_file's */
    size_t server_api_keys_len;
    struct dp_api_key *server_api_key_info; /* server_api_keys_len entries, same order */
    char *server_api_keys_file;             /* NULL when unset */
    char **server_cors_origins;             /* NULL-terminated */
    size_t server_cors_origins_len;
    char *server_tls_certificate;   /* NULL when unset */
    char *server_database_conninfo; /* the server's reads; NULL: database_conninfo */

    char *queue_path;             /* LMDB environment directory */
    int64_t queue_max_bytes;      /* bytes: LMDB map size */
    bool queue_sync;              /* fsync before acknowledging */
    char *queue_id;               /* host name by default */
    int64_t queue_dedup_window_s; /* seconds an idempotency key is remembered */

    char *database_conninfo; /* libpq connection string */
    char *database_schema;   /* schema holding every table */

    int loader_interval_s;     /* seconds */
    int loader_min_interval_s; /* seconds */
    int64_t loader_high_water; /* events */
    int loader_batch_rows;     /* events per COPY transaction */
    int loader_workers;        /* concurrent PostgreSQL connections */

    char *log_level;  /* debug, info, warn, error */
    char *log_format; /* text, json */

    struct dp_types *types;         /* declared event types (etc/decl.h); never NULL */
    struct dp_retention *retention; /* partitioned types (etc/retention.h); never NULL */
};

/* Where dp_config_load looks; NULL members are skipped. */
struct dp_config_sources {
    const char *system_path; /* DP_CONFIG_SYSTEM_PATH; skipped if it does not exist */
    const char *env_path;    /* $DATAPIPE_CNF; must exist when non-NULL */
    const char *cli_path;    /* -c FILE; must exist when non-NULL */
};

/*
 * dp_config_sources_default - the real lookup: /etc/datapipe.json, the value
 * of $DATAPIPE_CNF (if set and non-empty), and cli_path (may be NULL).
 */
struct dp_config_sources dp_config_sources_default(const char *cli_path);

/*
 * dp_config_load - build the effective configuration from the defaults and
 * the sources, in order.
 *   out: receives the configuration on success; free with dp_config_destroy.
 *   errors: on failure receives a malloc'd text, one error a line, each
 *   naming the file and key ("f.json: loader.intervall_s: unknown key");
 *   the caller frees it. Every error found is reported, not just the first.
 * Returns 0, DP_ERR_CONFIG (see *errors), DP_ERR_NOMEM.
 */
int dp_config_load(const struct dp_config_sources *src, struct dp_config **out, char **errors);

/* dp_config_destroy - free everything. NULL-safe. */
void dp_config_destroy(struct dp_config *cfg);

/*
 * dp_config_to_json - the effective configuration as pretty JSON text with the documented
 * key names (docs/configuration.md; what --check-config prints); malloc'd, the caller frees.
 * NULL on allocation failure.
 */
char *dp_config_to_json(const struct dp_config *cfg);

/* The daemons, as bits: which of them read a setting. */
enum dp_daemon {
    DP_DAEMON_SERVER = 1u << 0,
    DP_DAEMON_LOADER = 1u << 1,
};

/*
 * Callback of dp_config_diff: key ("section.key") changed; reloadable says whether SIGHUP
 * applies it in a running daemon (the settings table's flag) or it takes a restart.
 */
typedef void (*dp_config_change_fn)(void *arg, const char *key, bool reloadable);

/*
 * dp_config_diff - call fn for every setting that daemon reads (enum dp_daemon bits) whose
 * value differs between old and fresh (lists compared element by element), in table order;
 * then for every declared type added ("types.NAME", reloadable: SIGHUP registers it), changed
 * or removed (not reloadable: a restart applies it).
 * Both daemons' SIGHUP handling derives from it what they apply and what needs a restart.
 * Names only: values may be secret.
 */
void dp_config_diff(const struct dp_config *old, const struct dp_config *fresh, unsigned daemon,
                    dp_config_change_fn fn, void *arg);

/*
 * dp_config_reload_log - log what a SIGHUP did, in the same words in both daemons (prog:
 * "datapipe-server" or "datapipe-loader"). After a configuration that loaded (errors NULL):
 * "configuration reloaded applied=... needs_restart=..." at info ("nothing" for an empty
 * list), then "changed settings need a restart of PROG settings=..." at warn when any. After
 * one that did not: "configuration reload failed: keeping the running one errors=..." at
 * error, errors' lines joined with "; ".
 */
void dp_config_reload_log(const char *prog, const char *applied, const char *restart,
                          const char *errors);

/*
 * dp_cli - the command line both daemons share: -c FILE, --check-config,
 * --help, --version, plus the daemon's own flags (extra_flags, e.g. "--once").
 * Parses argv; on --help/--version prints and returns 1 (exit 0); on a usage
 * error prints to stderr and returns 2; otherwise returns 0 and fills the
 * fields. usage: the daemon's own usage text.
 */
struct dp_cli {
    const char *config_path; /* -c FILE, or NULL */
    bool check_config;
    bool once;                /* loader: --once */
    bool replay_dead_letters; /* loader: --replay-dead-letters */
    bool dead_letters;        /* loader: --dead-letters (list them) */
    bool dry_run;             /* loader: --dry-run (with --replay-dead-letters) */
    const char *only_type;    /* loader: --type T, or NULL */
    const char *only_stage;   /* loader: --stage ingest|load, or NULL */
};
int dp_cli_parse(int argc, char **argv, const char *prog, const char *usage, bool allow_once,
                 struct dp_cli *out);

/*
 * dp_config_startup - what main() does first in both daemons: parse the
 * command line, load the configuration, set up logging, and handle
 * --check-config. Returns -1 when the process should go on with *out set,
 * otherwise the exit code (0 after --help/--version/--check-config success,
 * 2 after a usage or configuration error, errors printed on stderr).
 */
int dp_config_startup(int argc, char **argv, const char *prog, const char *usage, bool allow_once,
                      struct dp_cli *cli, struct dp_config **out);

#endif
