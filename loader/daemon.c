/*
 * daemon.c - datapipe-loader as a service: the queue and its loader lock, the schedule,
 * signals and sd_notify. Everything slow (connecting, runs, back-off) happens in one runner
 * thread; the main thread only waits for signals and the clock, so that SIGTERM, STATUS=
 * and WATCHDOG=1 are served even in the middle of a long run or a back-off.
 */
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "etc/decl.h"
#include "etc/err.h"
#include "etc/log.h"
#include "events/events.h"
#include "loader/loader.h"

#define DMN_TICK_MS 1000     /* longest wait between two looks at the schedule */
#define DMN_CHANGES_MAX 1024 /* bytes of "what changed" text on SIGHUP */
#define DMN_SUMMARY_MS 60000 /* one summary line a minute, as the server's */

enum dmn_job {
    DMN_JOB_START, /* ldr_start: connect, fence, schema, recover */
    DMN_JOB_RUN,   /* ldr_run */
};

struct dmn {
    const struct dp_cli *cli;
    const struct dp_config *cfg; /* as started: the settings that need a restart */
    struct dp_config *live;      /* owned: the last one SIGHUP loaded, whose reloadable
                                    settings are in effect; NULL before the first */
    struct ldr_schedule sched;   /* in effect now (SIGHUP may change it) */
    struct queue *q;
    struct ldr *l;
    pthread_t main_thread;
    pthread_t runner;
    bool runner_active; /* a job was started and not joined yet */
    enum dmn_job job;
    atomic_bool job_done; /* set by the runner as it ends */
    atomic_int job_rc;
    bool started;          /* ldr_start succeeded: runs may begin */
    bool stopping;         /* SIGTERM or SIGINT seen */
    bool forced;           /* a run is due at once (SIGUSR1, the first run) */
    int64_t last_start_ms; /* monotonic; -1 before the first run */
    int64_t last_end_ms;
    uint64_t watchdog_usec;            /* 0: no watchdog */
    uint64_t runs;                     /* runs ended since start */
    uint64_t summary_runs;             /* runs at the last summary */
    struct ldr_run_stats summary_prev; /* ldr_totals at the last summary */
    int64_t summary_ms;                /* monotonic time of the last summary */
    char status[256];                  /* last STATUS= sent */
    int64_t heartbeat_ms;              /* monotonic time of the last heartbeat; -1: none */
    bool types_pending;                /* live declares new types: register them once idle */
};

static void *
dmn_runner(void *arg)
{
    struct dmn *d = arg;
    int rc;

    rc = d->job == DMN_JOB_START ? ldr_start(d->l) : ldr_run(d->l, NULL);
    atomic_store(&d->job_rc, rc);
    atomic_store(&d->job_done, true);
    /* Wake the main thread's sigtimedwait at once. */
    pthread_kill(d->main_thread, SIGUSR2);
    return NULL;
}

static int
dmn_job_start(struct dmn *d, enum dmn_job job)
{
    d->job = job;
    atomic_store(&d->job_done, false);
    if (pthread_create(&d->runner, NULL, dmn_runner, d) != 0) {
        dp_error("cannot start the runner thread", NULL);
        return DP_ERR_NOMEM;
    }
    d->runner_active = true;
    return 0;
}

/* The runner ended: join it and decide. Returns an exit status, or -1 to go on. */
static int
dmn_job_done(struct dmn *d)
{
    int rc = atomic_load(&d->job_rc);

    pthread_join(d->runner, NULL);
    d->runner_active = false;
    if (d->job == DMN_JOB_START) {
        if (rc == 0) {
            d->started = true;
            d->forced = true;
            dp_info("connected to PostgreSQL", "queue_id=%s schema=%s", d->cfg->queue_id,
                    d->cfg->database_schema);
            return -1;
        }
        if (rc == DP_ERR_CLOSED) {
            return 0;
        }
        if (rc == DP_ERR_CONFIG && ldr_refused(d->l, NULL, 0)) {
            dp_error("exiting: this queue does not own its queue.id (see above)", "status=%d",
                     LDR_EXIT_REFUSED);
            return LDR_EXIT_REFUSED;
        }
        dp_error("cannot start", "error=%s", dp_strerror(rc));
        return 1;
    }
    d->last_end_ms = dp_mono_ms();
    d->runs++;
    if (ldr_refused(d->l, NULL, 0)) {
        /* Restarting cannot help: systemd's RestartPreventExitStatus= names this status. */
        dp_error("exiting: this queue does not own its queue.id (see above)", "status=%d",
                 LDR_EXIT_REFUSED);
        return LDR_EXIT_REFUSED;
    }
    if (rc != 0 && rc != DP_ERR_CLOSED) {
        dp_error("run failed", "error=%s", dp_strerror(rc));
    }
    if (d->cli->once) {
        return rc == 0 || rc == DP_ERR_CLOSED ? 0 : 1;
    }
    return -1;
}

/* ---- SIGHUP ---------------------------------------------------------------------------- */

static void dmn_note(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
dmn_note(char *buf, const char *fmt, ...)
{
    size_t used = strlen(buf);
    va_list ap;

    if (used + 2 >= DMN_CHANGES_MAX) {
        return;
    }
    if (used > 0) {
        buf[used++] = ',';
        buf[used++] = ' ';
        buf[used] = '\0';
    }
    va_start(ap, fmt);
    vsnprintf(buf + used, DMN_CHANGES_MAX - used, fmt, ap);
    va_end(ap);
}

/* What one SIGHUP did, built by the dp_config_diff callbacks below. */
struct dmn_reload {
    const struct dp_config *was;   /* the reloadable settings in effect until now */
    const struct dp_config *fresh; /* just loaded */
    bool log;                      /* log.level or log.format changed */
    bool types;                    /* declared types were added */
    char applied[DMN_CHANGES_MAX];
    char restart[DMN_CHANGES_MAX];
};

/*
 * dp_config_diff callback against the settings in effect: a reloadable setting changed, so
 * note how; the caller applies them all. One the table calls reloadable but this daemon
 * cannot apply is reported as needing a restart rather than silently ignored.
 */
static void
dmn_apply_key(void *arg, const char *key, bool reloadable)
{
    struct dmn_reload *r = arg;
    const struct dp_config *o = r->was;
    const struct dp_config *n = r->fresh;

    if (!reloadable) {
        return;
    }
    if (strcmp(key, "loader.interval_s") == 0) {
        dmn_note(r->applied, "%s %d -> %d", key, o->loader_interval_s, n->loader_interval_s);
    } else if (strcmp(key, "loader.min_interval_s") == 0) {
        dmn_note(r->applied, "%s %d -> %d", key, o->loader_min_interval_s,
                 n->loader_min_interval_s);
    } else if (strcmp(key, "loader.high_water") == 0) {
        dmn_note(r->applied, "%s %lld -> %lld", key, (long long)o->loader_high_water,
                 (long long)n->loader_high_water);
    } else if (strncmp(key, "log.", 4) == 0) {
        r->log = true;
    } else if (strncmp(key, "types.", 6) == 0) {
        /* A new declared type: registered by dmn_types_apply once no run is going on. */
        dmn_note(r->applied, "%s added", key);
        r->types = true;
    } else {
        dmn_note(r->restart, "%s", key);
    }
}

/*
 * dp_config_diff callback against the configuration as started: a changed setting that
 * only a restart applies (names only: values may be secret).
 */
static void
dmn_restart_key(void *arg, const char *key, bool reloadable)
{
    struct dmn_reload *r = arg;

    if (!reloadable) {
        dmn_note(r->restart, "%s", key);
    }
}

static void
dmn_reload(struct dmn *d)
{
    struct dp_config_sources src = dp_config_sources_default(d->cli->config_path);
    struct dp_config *n = NULL;
    char *errors = NULL;
    struct dmn_reload r = {.was = d->live != NULL ? d->live : d->cfg};

    if (dp_config_load(&src, &n, &errors) != 0) {
        dp_config_reload_log("datapipe-loader", NULL, NULL,
                             errors != NULL ? errors : "out of memory");
        free(errors);
        return;
    }
    r.fresh = n;
    dp_config_diff(r.was, n, DP_DAEMON_LOADER, dmn_apply_key, &r);
    if (r.log) {
        dmn_note(r.applied, "log %s/%s -> %s/%s", r.was->log_level, r.was->log_format, n->log_level,
                 n->log_format);
        dp_log_setup(n->log_level, n->log_format);
    }
    d->sched.interval_s = n->loader_interval_s;
    d->sched.min_interval_s = n->loader_min_interval_s;
    d->sched.high_water = n->loader_high_water;
    dp_config_diff(d->cfg, n, DP_DAEMON_LOADER, dmn_restart_key, &r);
    dp_config_reload_log("datapipe-loader", r.applied, r.restart, NULL);
    dp_config_destroy(d->live);
    d->live = n;
    d->types_pending = d->types_pending || r.types;
}

/* ev_registry_update's report (changed and removed types: dmn_reload named them). */
static void
dmn_type_note(void *arg, const char *type, enum ev_change change)
{
    bool *added = arg;

    if (change == EV_CHANGE_ADDED) {
        dp_info("declared event type added", "type=%s", type);
        *added = true;
    }
}

/* Register the declared types of the last SIGHUP, now that no run is going on. */
static void
dmn_types_apply(struct dmn *d)
{
    bool added = false;
    int rc;

    if (!d->types_pending || d->runner_active || d->live == NULL) {
        return;
    }
    rc = ev_registry_update(d->live->types, dmn_type_note, &added);
    if (rc != 0) {
        dp_error("declared event types not registered", "error=%s", dp_strerror(rc));
    }
    if (added) {
        /* Their tables are created as the connections open again, before any batch. */
        ldr_types_changed(d->l);
    }
    d->types_pending = false;
}

/* ---- the main loop --------------------------------------------------------------------- */

static void
dmn_signal(struct dmn *d, int sig)
{
    switch (sig) {
    case SIGTERM:
    case SIGINT:
        if (!d->stopping) {
            dp_info("stopping: batches in flight finish or roll back", "signal=%s",
                    sig == SIGTERM ? "TERM" : "INT");
            sd_notify(0, "STOPPING=1");
        }
        d->stopping = true;
        ldr_stop(d->l);
        break;
    case SIGHUP:
        dmn_reload(d);
        break;
    case SIGUSR1:
        dp_info("run requested", "signal=USR1");
        d->forced = true;
        break;
    default:
        break;
    }
}

/* Start a run if the schedule says so. */
static void
dmn_schedule(struct dmn *d)
{
    struct queue_stats st;
    int64_t now_ms = dp_mono_ms();
    int64_t wait_ms;
    uint64_t queued = 0;

    if (queue_stats(d->q, &st) == 0) {
        queued = st.events;
    }
    if (!ldr_schedule_due(&d->sched, now_ms, d->last_start_ms, d->last_end_ms, queued, d->forced,
                          &wait_ms)) {
        return;
    }
    dp_debug("run starting", "queued=%llu forced=%d", (unsigned long long)queued, d->forced);
    d->forced = false;
    d->last_start_ms = now_ms;
    dmn_job_start(d, DMN_JOB_RUN);
}

static void
dmn_status(struct dmn *d)
{
    struct queue_stats st;
    char loader[192];
    char status[sizeof(d->status)];
    char line[sizeof(d->status) + 8];

    if (!d->started) {
        ldr_status(d->l, status, sizeof(status));
    } else {
        memset(&st, 0, sizeof(st));
        queue_stats(d->q, &st);
        ldr_status(d->l, loader, sizeof(loader));
        snprintf(status, sizeof(status), "queue %llu events; %s", (unsigned long long)st.events,
                 loader);
    }
    if (strcmp(status, d->status) == 0) {
        return;
    }
    snprintf(d->status, sizeof(d->status), "%s", status);
    snprintf(line, sizeof(line), "STATUS=%s", status);
    sd_notify(0, line);
}

/*
 * Every QUEUE_HEARTBEAT_S, the loader's heartbeat and interval into the queue's metadata: the
 * server tells a loader that is running (even stuck in a back-off) from one that is not.
 */
static void
dmn_heartbeat(struct dmn *d)
{
    struct queue_meta_op ops[] = {
        {QUEUE_META_LOADER_HEARTBEAT_US, QUEUE_META_SET, dp_now_us(), NULL},
        {QUEUE_META_LOADER_INTERVAL_S, QUEUE_META_SET, d->sched.interval_s, NULL},
    };
    int rc;

    if (d->heartbeat_ms >= 0 && dp_mono_ms() - d->heartbeat_ms < QUEUE_HEARTBEAT_S * 1000) {
        return;
    }
    d->heartbeat_ms = dp_mono_ms();
    rc = queue_meta_apply(d->q, ops, sizeof(ops) / sizeof(ops[0]));
    if (rc != 0) {
        dp_warn("cannot record the loader's heartbeat in the queue", "error=%s", dp_strerror(rc));
    }
}

/*
 * Once a minute, what the runs since the last summary did: the one info line of an idle
 * loader (a run that moves nothing logs "run finished" at debug only).
 */
static void
dmn_summary(struct dmn *d)
{
    struct ldr_run_stats now;
    const struct ldr_run_stats *p = &d->summary_prev;

    if (dp_mono_ms() - d->summary_ms < DMN_SUMMARY_MS) {
        return;
    }
    ldr_totals(d->l, &now);
    dp_info("summary", "runs=%llu events=%llu loaded=%llu dead_letters=%llu retries=%llu",
            (unsigned long long)(d->runs - d->summary_runs),
            (unsigned long long)(now.events - p->events),
            (unsigned long long)(now.loaded - p->loaded),
            (unsigned long long)(now.dead_letters - p->dead_letters),
            (unsigned long long)(now.retries - p->retries));
    d->summary_prev = now;
    d->summary_runs = d->runs;
    d->summary_ms = dp_mono_ms();
}

static int
dmn_tick_ms(const struct dmn *d)
{
    int64_t ms = DMN_TICK_MS;

    if (d->watchdog_usec > 0 && (int64_t)(d->watchdog_usec / 2000) < ms) {
        ms = (int64_t)(d->watchdog_usec / 2000);
    }
    return ms < 10 ? 10 : (int)ms;
}

static int
dmn_loop(struct dmn *d, const sigset_t *set)
{
    struct timespec ts;
    int code = -1;

    while (code < 0) {
        int ms = dmn_tick_ms(d);
        int sig;

        ts.tv_sec = ms / 1000;
        ts.tv_nsec = (long)(ms % 1000) * 1000000;
        sig = sigtimedwait(set, NULL, &ts);
        if (sig > 0) {
            dmn_signal(d, sig);
        }
        if (d->watchdog_usec > 0) {
            sd_notify(0, "WATCHDOG=1");
        }
        if (d->runner_active && atomic_load(&d->job_done)) {
            code = dmn_job_done(d);
        }
        if (code < 0 && d->stopping && !d->runner_active) {
            code = 0;
        }
        if (code < 0 && d->started && !d->stopping && !d->runner_active) {
            dmn_types_apply(d);
            dmn_schedule(d);
        }
        dmn_status(d);
        dmn_summary(d);
        dmn_heartbeat(d);
    }
    return code;
}

/*
 * Open the queue, take its loader lock, create the loader. d->cli NULL: --adopt-queue, which
 * gives up on PostgreSQL like --once. Returns 0 or an exit status.
 */
static int
dmn_open(struct dmn *d, const struct ldr_fault_ops *fault)
{
    const struct dp_config *cfg = d->cfg;
    struct ldr_options opt = {
        .queue_id = cfg->queue_id,
        .conninfo = cfg->database_conninfo,
        .schema = cfg->database_schema,
        .batch_rows = cfg->loader_batch_rows,
        .workers = cfg->loader_workers,
        .give_up_attempts = d->cli == NULL || d->cli->once ? LDR_ONCE_ATTEMPTS : 0,
        .fault = fault,
        .retention = cfg->retention,
    };
    int rc;

    rc = queue_open(&d->q, cfg->queue_path, (uint64_t)cfg->queue_max_bytes, cfg->queue_sync);
    if (rc != 0) {
        dp_error("cannot open the queue", "path=%s error=%s", cfg->queue_path, dp_strerror(rc));
        return 1;
    }
    rc = queue_lock_loader(d->q);
    if (rc == DP_ERR_BUSY) {
        dp_error("another datapipe-loader is already running on this queue: exiting", "path=%s",
                 cfg->queue_path);
        return 1;
    }
    if (rc != 0) {
        dp_error("cannot take the queue's loader lock", "path=%s error=%s", cfg->queue_path,
                 dp_strerror(rc));
        return 1;
    }
    rc = ldr_create(&d->l, d->q, &opt);
    if (rc != 0) {
        dp_error("cannot create the loader", "error=%s", dp_strerror(rc));
        return 1;
    }
    return 0;
}

int
ldr_daemon_adopt(const struct dp_config *cfg)
{
    struct dmn d;
    int code;
    int rc;

    memset(&d, 0, sizeof(d));
    d.cfg = cfg;
    code = dmn_open(&d, NULL);
    if (code == 0) {
        rc = ldr_adopt(d.l);
        if (rc != 0) {
            dp_error("--adopt-queue failed: nothing changed", "queue_id=%s error=%s", cfg->queue_id,
                     dp_strerror(rc));
            code = 1;
        }
    }
    ldr_destroy(d.l);
    queue_close(d.q);
    return code;
}

int
ldr_daemon(const struct dp_cli *cli, const struct dp_config *cfg, const struct ldr_fault_ops *fault)
{
    struct dmn d;
    sigset_t set;
    int code;

    memset(&d, 0, sizeof(d));
    d.cli = cli;
    d.cfg = cfg;
    d.sched.interval_s = cfg->loader_interval_s;
    d.sched.min_interval_s = cfg->loader_min_interval_s;
    d.sched.high_water = cfg->loader_high_water;
    d.last_start_ms = -1;
    d.heartbeat_ms = -1;
    d.summary_ms = dp_mono_ms();
    d.main_thread = pthread_self();
    atomic_init(&d.job_done, false);
    atomic_init(&d.job_rc, 0);
    /* Blocked in every thread (they inherit the mask): only sigtimedwait below takes them. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    code = dmn_open(&d, fault);
    if (code != 0) {
        goto out;
    }
    if (sd_watchdog_enabled(0, &d.watchdog_usec) <= 0) {
        d.watchdog_usec = 0;
    }
    dp_info("starting", "queue=%s queue_id=%s workers=%d batch_rows=%d interval_s=%d once=%d",
            cfg->queue_path, cfg->queue_id, cfg->loader_workers, cfg->loader_batch_rows,
            cfg->loader_interval_s, cli->once);
    /*
     * Ready once the queue is open and locked: PostgreSQL may come up later than we do (or be
     * down for hours), and systemd would kill a unit that is not ready within its start
     * timeout. Until PostgreSQL answers, STATUS= says why nothing loads.
     */
    sd_notify(0, "READY=1");
    if (dmn_job_start(&d, DMN_JOB_START) != 0) {
        code = 1;
        goto out;
    }
    dmn_status(&d);
    code = dmn_loop(&d, &set);
    dp_info("exiting", "status=%d", code);
out:
    if (d.runner_active) {
        ldr_stop(d.l);
        pthread_join(d.runner, NULL);
    }
    ldr_destroy(d.l);
    queue_close(d.q);
    dp_config_destroy(d.live);
    return code;
}
