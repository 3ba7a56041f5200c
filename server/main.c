/*
 * main.c - datapipe-server: configuration, the queue, the HTTP front end,
 * signals and sd_notify. On SIGTERM/SIGINT it stops accepting, lets requests
 * in flight finish (their appends commit or fail), closes the queue, exits 0.
 */
#include "etc/config.h"
#include "etc/err.h"
#include "etc/log.h"
#include "server/srv.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

static const char usage[] =
    "Usage: datapipe-server [-c FILE] [--check-config] [--help] [--version]\n"
    "Takes events over HTTP, validates them and appends them to the durable\n"
    "datapipe queue; datapipe-loader moves them into PostgreSQL.\n"
    "  -c, --config FILE  read FILE after /etc/datapipe.json and $DATAPIPE_CNF\n"
    "  --check-config     print the effective configuration (exit 0) or the errors (exit 2)\n"
    "  --describe-config  print the settings as a Markdown table (docs/configuration.md)\n"
    "  --help, --version\n"
    "Signals: TERM/INT stop gracefully; HUP re-reads the configuration (log settings,\n"
    "new declared event types, the API keys and their limits and queue.dedup_window_s\n"
    "apply at once, other changes are logged as needing a restart).\n";

static void
notify_status(struct srv *s)
{
    struct queue_stats st;

    if (queue_stats(s->q, &st) == 0) {
        sd_notifyf(0, "STATUS=serving on %s, queue %llu events, %llu bytes", s->cfg->server_listen,
                   (unsigned long long)st.events, (unsigned long long)st.bytes);
    }
}

/* What one SIGHUP changed: names only (values may be secret), as the loader words them. */
struct reload {
    bool log;           /* log.level or log.format changed: applied */
    char applied[1024]; /* other settings applied now (new declared types), ", " list */
    char restart[1024]; /* settings only a restart applies, ", "-separated */
};

static void
note(char *list, size_t cap, const char *text)
{
    size_t used = strlen(list);

    snprintf(list + used, cap - used, "%s%s", used > 0 ? ", " : "", text);
}

/*
 * dp_config_diff callback: the server applies the settings table's reloadable ones (the log
 * settings, new declared types, the API keys and their limits, the dedup window); the rest
 * takes a restart.
 */
static void
changed_key(void *arg, const char *key, bool reloadable)
{
    struct reload *r = arg;

    if (reloadable && strncmp(key, "log.", 4) == 0) {
        r->log = true;
    } else if (reloadable && strncmp(key, "types.", 6) == 0) {
        char added[128];

        snprintf(added, sizeof(added), "%s added", key);
        note(r->applied, sizeof(r->applied), added);
    } else if (reloadable) {
        note(r->applied, sizeof(r->applied), key);
    } else {
        note(r->restart, sizeof(r->restart), key);
    }
}

/* ev_registry_update's report: a new declared type serves at once (the changed and the
 * removed ones stay as they run: dp_config_diff names them as needing a restart). */
static void
type_added(void *arg, const char *type, enum ev_change change)
{
    (void)arg;
    if (change == EV_CHANGE_ADDED) {
        dp_info("declared event type registered", "type=%s", type);
    }
}

/* SIGHUP: re-read the files; the server's reloadable settings (logging, new declared event
 * types, the dedup window) apply now. */
static void
reload(struct srv *s, const char *cli_path)
{
    struct dp_config_sources src = dp_config_sources_default(cli_path);
    struct dp_config *fresh = NULL;
    struct reload r = {0};
    char log_change[256];
    char *errors = NULL;

    if (dp_config_load(&src, &fresh, &errors) != 0) {
        dp_config_reload_log("datapipe-server", NULL, NULL,
                             errors != NULL ? errors : "out of memory");
        free(errors);
        return;
    }
    dp_config_diff(s->cfg, fresh, DP_DAEMON_SERVER, changed_key, &r);
    if (r.log) {
        snprintf(log_change, sizeof(log_change), "log %s/%s -> %s/%s", s->cfg->log_level,
                 s->cfg->log_format, fresh->log_level, fresh->log_format);
        note(r.applied, sizeof(r.applied), log_change);
    }
    dp_log_setup(fresh->log_level, fresh->log_format);
    /* New declared types are accepted at once (the loader holds their events until it
     * knows them too); a changed one needs a restart. */
    if (ev_registry_update(fresh->types, type_added, NULL) != 0) {
        dp_error("reload: declared event types not registered", NULL);
    }
    /* A shorter window forgets keys sooner, a longer one cannot bring pruned keys back. */
    queue_set_dedup_window(s->q, fresh->queue_dedup_window_s);
    /* The keys file may have changed even where the configuration did not: always. The
     * keys and their names' limits change together; a kept name keeps its bucket. */
    srv_auth_reload(s, fresh);
    dp_config_reload_log("datapipe-server", r.applied, r.restart, NULL);
    dp_config_destroy(fresh);
}

/* Wait for TERM/INT, logging a summary each minute and refreshing STATUS=. */
static void
serve_until_signal(struct srv *s, const char *cli_path)
{
    sigset_t set;
    struct timespec tick = {5, 0};
    time_t last_summary = time(NULL);

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    for (;;) {
        int sig = sigtimedwait(&set, NULL, &tick);
        if (sig == SIGTERM || sig == SIGINT) {
            dp_info("stopping", "signal=%s", sig == SIGTERM ? "TERM" : "INT");
            return;
        }
        if (sig == SIGHUP) {
            reload(s, cli_path);
        }
        srv_read_pool_sweep(s);
        if (time(NULL) - last_summary >= 60) {
            srv_summary_log(s);
            last_summary = time(NULL);
        }
        notify_status(s);
    }
}

int
main(int argc, char **argv)
{
    struct dp_cli cli;
    struct dp_config *cfg = NULL;
    static struct srv s;
    sigset_t set;
    int rc = dp_config_startup(argc, argv, "datapipe-server", usage, false, &cli, &cfg);

    if (rc >= 0) {
        return rc;
    }
    rc = 1;
    /* Block the signals in every thread: only the main thread takes them. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    s.cfg = cfg;
    s.started_us = dp_now_us();
    if (ev_registry_update(cfg->types, type_added, NULL) != 0) {
        dp_error("cannot register the declared event types", NULL);
        goto out;
    }
    if (ev_registry_len > SRV_MAX_TYPES) {
        dp_error("too many event types", "types=%zu max=%d", ev_registry_len, SRV_MAX_TYPES);
        goto out;
    }
    if (queue_open(&s.q, cfg->queue_path, (uint64_t)cfg->queue_max_bytes, cfg->queue_sync) != 0) {
        dp_error("cannot open the queue", "path=%s", cfg->queue_path);
        goto out;
    }
    queue_set_dedup_window(s.q, cfg->queue_dedup_window_s);
    srv_tap_init(&s);
    if (srv_auth_init(&s, cfg) != 0) {
        dp_error("out of memory reading the API keys", NULL);
        goto out;
    }
    if (srv_history_start(&s) != 0 || srv_http_start(&s) != 0) {
        goto out;
    }
    dp_info("serving", "listen=%s threads=%d queue=%s sync=%s version=%s", cfg->server_listen,
            cfg->server_threads, cfg->queue_path, cfg->queue_sync ? "true" : "false", DP_VERSION);
    sd_notify(0, "READY=1");
    notify_status(&s);
    serve_until_signal(&s, cli.config_path);
    sd_notify(0, "STOPPING=1");
    rc = 0;
out:
    srv_http_stop(&s);
    srv_history_stop(&s);
    srv_auth_destroy(&s);
    queue_close(s.q);
    dp_config_destroy(cfg);
    if (rc == 0) {
        dp_info("stopped", NULL);
    }
    return rc;
}
