/*
 * main.c - datapipe-server entry point: configuration, then the loader.
 */
#include "etc/config.h"

#include <stdio.h>

static const char usage[] =
    "Takes events over HTTP into the durable datapipe queue.\n"
    "  -c, --config FILE  read FILE after /etc/datapipe.json and $DATAPIPE_CNF\n"
    "  --check-config     print the effective configuration (exit 0) or the errors (exit 2)\n"
    "  --help, --version\n";

int
main(int argc, char **argv)
{
    struct dp_cli cli;
    struct dp_config *cfg = NULL;
    int rc = dp_config_startup(argc, argv, "datapipe-server", usage, false, &cli, &cfg);

    if (rc >= 0) {
        return rc;
    }
    fprintf(stderr, "datapipe-server: the loader is not built yet (issue 5)\n");
    dp_config_destroy(cfg);
    return 1;
}
