/*
 * faultloader.c - datapipe-loader with the loader's test fault hook armed from the
 * environment, for the end-to-end tests: E2E_DIE=POINT:N kills the process (SIGKILL) the
 * N-th time a batch reaches POINT, where POINT is copy (before a COPY), commit (before
 * COMMIT is sent) or committed (COMMIT returned, the queue delete not started: the window
 * loader_batches must cover). Same command line as datapipe-loader. Test code only.
 */
#include "etc/config.h"
#include "loader/loader.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "Usage: faultloader [-c FILE] [--once]  (E2E_DIE=copy|commit|committed:N)\n";

struct die_plan {
    enum ldr_fault_point point;
    int at; /* die when the point is reached this many times */
    atomic_int seen;
};

static int
die_hook(void *arg, enum ldr_fault_point point, uint64_t first, uint64_t last)
{
    struct die_plan *p = arg;

    if (point == p->point && atomic_fetch_add(&p->seen, 1) + 1 == p->at) {
        fprintf(stderr, "faultloader: SIGKILL at point %d, batch %llu..%llu\n", (int)point,
                (unsigned long long)first, (unsigned long long)last);
        raise(SIGKILL);
    }
    return 0;
}

static int
plan_parse(const char *s, struct die_plan *p)
{
    const char *colon = s != NULL ? strchr(s, ':') : NULL;
    size_t len = colon != NULL ? (size_t)(colon - s) : 0;

    if (colon == NULL) {
        return -1;
    }
    if (len == 4 && strncmp(s, "copy", 4) == 0) {
        p->point = LDR_FAULT_COPY;
    } else if (len == 6 && strncmp(s, "commit", 6) == 0) {
        p->point = LDR_FAULT_COMMIT;
    } else if (len == 9 && strncmp(s, "committed", 9) == 0) {
        p->point = LDR_FAULT_COMMITTED;
    } else {
        return -1;
    }
    p->at = atoi(colon + 1);
    atomic_init(&p->seen, 0);
    return p->at > 0 ? 0 : -1;
}

int
main(int argc, char **argv)
{
    struct dp_cli cli;
    struct dp_config *cfg = NULL;
    struct die_plan plan;
    struct ldr_fault_ops ops = {.hook = die_hook, .arg = &plan};
    const char *env = getenv("E2E_DIE");
    int rc;

    if (env != NULL && plan_parse(env, &plan) != 0) {
        fprintf(stderr, "faultloader: bad E2E_DIE=%s (want copy|commit|committed:N)\n", env);
        return 2;
    }
    rc = dp_config_startup(argc, argv, "faultloader", usage, true, &cli, &cfg);
    if (rc >= 0) {
        return rc;
    }
    rc = ldr_daemon(&cli, cfg, env != NULL ? &ops : NULL);
    dp_config_destroy(cfg);
    return rc;
}
