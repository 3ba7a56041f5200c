/*
 * main.c - datapipe-loader's entry point: the command line and the configuration, then the
 * daemon (loader/daemon.c). Nothing else belongs here: the tests link every other file.
 */
#include "etc/config.h"
#include "etc/err.h"
#include "etc/log.h"
#include "events/events.h"
#include "loader/loader.h"

static const char usage[] =
    "Usage: datapipe-loader [-c FILE] [--once] [--check-config] [--help] [--version]\n"
    "Drains the datapipe LMDB queue into PostgreSQL with COPY.\n"
    "  -c, --config FILE  read FILE after /etc/datapipe.json and $DATAPIPE_CNF\n"
    "  --once             drain the queue completely, then exit\n"
    "  --check-config     print the effective configuration (exit 0) or the errors (exit 2)\n"
    "  --help, --version\n"
    "Signals: TERM/INT stop after the batches in flight, HUP reloads the schedule and log\n"
    "settings and adds new declared event types, USR1 starts a run now.\n";

static void
type_added(void *arg, const char *type, enum ev_change change)
{
    (void)arg;
    if (change == EV_CHANGE_ADDED) {
        dp_info("declared event type registered", "type=%s", type);
    }
}

int
main(int argc, char **argv)
{
    struct dp_cli cli;
    struct dp_config *cfg = NULL;
    int rc = dp_config_startup(argc, argv, "datapipe-loader", usage, true, &cli, &cfg);

    if (rc >= 0) {
        return rc;
    }
    rc = ev_registry_update(cfg->types, type_added, NULL);
    if (rc != 0) {
        dp_error("cannot register the declared event types", "error=%s", dp_strerror(rc));
        dp_config_destroy(cfg);
        return 1;
    }
    rc = ldr_daemon(&cli, cfg, NULL);
    dp_config_destroy(cfg);
    return rc;
}
