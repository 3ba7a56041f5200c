/*
 * main.c - datapipe-loader's entry point: the command line and the configuration, then the
 * daemon (loader/daemon.c) or --adopt-queue. Nothing else belongs here: the tests link every
 * other file.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "etc/config.h"
#include "etc/err.h"
#include "etc/log.h"
#include "events/events.h"
#include "loader/loader.h"

static const char usage[] =
    "Usage: datapipe-loader [-c FILE] [--once | --adopt-queue] [--check-config] [--help]\n"
    "       [--version]\n"
    "       datapipe-loader [-c FILE] --replay-dead-letters [--type T] [--stage S] [--dry-run]\n"
    "       datapipe-loader [-c FILE] --dead-letters [--type T] [--stage S]\n"
    "Drains the datapipe LMDB queue into PostgreSQL with COPY.\n"
    "  -c, --config FILE  read FILE after /etc/datapipe.json and $DATAPIPE_CNF\n"
    "  --once             drain the queue completely, then exit\n"
    "  --adopt-queue      make this queue the owner of its queue.id in PostgreSQL, after the\n"
    "                     queue that owned it is known to be gone for good (queue.path\n"
    "                     recreated, disk replaced); that queue's loader_batches rows are\n"
    "                     kept apart under queue_id '<queue.id>@<its instance id>'. Exits 0\n"
    "                     (also when this queue is the owner already)\n"
    "  --replay-dead-letters  move dead letters that now validate into their tables, each\n"
    "                     in the transaction that deletes it from dead_letter; then exit\n"
    "  --dead-letters     list dead letters by type, stage and error; then exit\n"
    "  --type T, --stage ingest|load  only those dead letters\n"
    "  --dry-run          replay in transactions that are rolled back: report only\n"
    "  --check-config     print the effective configuration (exit 0) or the errors (exit 2)\n"
    "  --describe-config  print the settings as a Markdown table (docs/configuration.md)\n"
    "  --help, --version\n"
    "Exit status 78: this queue does not own its queue.id (a recreated or cloned queue); it\n"
    "loads and deletes nothing until --adopt-queue or a queue.id of its own.\n"
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

/*
 * Take --adopt-queue out of argv (the shared command line of etc/cli.c knows only the options
 * both daemons have). Returns whether it was there.
 */
static bool
take_adopt(int *argc, char **argv)
{
    bool found = false;
    int n = 0;

    for (int i = 0; i < *argc; i++) {
        if (i > 0 && strcmp(argv[i], "--adopt-queue") == 0) {
            found = true;
            continue;
        }
        argv[n++] = argv[i];
    }
    argv[n] = NULL;
    *argc = n;
    return found;
}

int
main(int argc, char **argv)
{
    struct dp_cli cli;
    struct dp_config *cfg = NULL;
    bool adopt = take_adopt(&argc, argv);
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
    if (adopt && (cli.once || cli.replay_dead_letters || cli.dead_letters)) {
        fprintf(stderr, "datapipe-loader: --adopt-queue and --once (or the dead-letter "
                        "commands) exclude each other\n");
        dp_config_destroy(cfg);
        return 2;
    }
    if (adopt) {
        rc = ldr_daemon_adopt(cfg);
    } else if (cli.replay_dead_letters || cli.dead_letters) {
        rc = ldr_replay_main(&cli, cfg);
    } else {
        rc = ldr_daemon(&cli, cfg, NULL);
    }
    dp_config_destroy(cfg);
    return rc;
}
