/*
 * main.c - datapipe-loader entry point: configuration, then the loader.
 */
#include "etc/config.h"

#include <stdio.h>

static const char usage[] =
    "Usage: datapipe-loader [-c FILE] [--once] [--check-config] [--help] [--version]\n"
    "Drains the datapipe LMDB queue into PostgreSQL with COPY.\n"
    "  -c, --config FILE  read FILE after /etc/datapipe.json and $DATAPIPE_CNF\n"
    "  --once             drain the queue completely, then exit\n"
    "  --check-config     print the effective configuration (exit 0) or the errors (exit 2)\n"
    "  --help, --version\n";

int
main(int argc, char **argv)
{
    struct dp_cli cli;
    struct dp_config *cfg = NULL;
    int rc = dp_config_startup(argc, argv, "datapipe-loader", usage, true, &cli, &cfg);

    if (rc >= 0) {
        return rc;
    }
    fprintf(stderr, "datapipe-loader: the loader is not built yet (issue 6)\n");
    dp_config_destroy(cfg);
    return 1;
}
