/*
 * cli.c - the command line both daemons share (-c, --check-config, --help, --version,
 * --once) and what main() does first with it: load the configuration, set up logging.
 * Prints on stdout/stderr and returns an exit status; never exits itself.
 */
#include "etc/config.h"
#include "etc/log.h"
#include "etc/settings.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
cli_loader_opt(int c, const char *arg, struct dp_cli *out)
{
    switch (c) {
    case 'o':
        out->once = true;
        break;
    case 'R':
        out->replay_dead_letters = true;
        break;
    case 'L':
        out->dead_letters = true;
        break;
    case 'n':
        out->dry_run = true;
        break;
    case 't':
        out->only_type = arg;
        break;
    default:
        out->only_stage = arg;
        break;
    }
}

int
dp_cli_parse(int argc, char **argv, const char *prog, const char *usage, bool allow_once,
             struct dp_cli *out)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {"describe-config", no_argument, NULL, 'D'},
        {"once", no_argument, NULL, 'o'},
        {"replay-dead-letters", no_argument, NULL, 'R'},
        {"dead-letters", no_argument, NULL, 'L'},
        {"dry-run", no_argument, NULL, 'n'},
        {"type", required_argument, NULL, 't'},
        {"stage", required_argument, NULL, 's'},
        {NULL, 0, NULL, 0},
    };
    int c;

    memset(out, 0, sizeof(*out));
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "c:hV", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            out->config_path = optarg;
            break;
        case 'C':
            out->check_config = true;
            break;
        case 'h':
            printf("%s", usage);
            printf("\nSettings (key, default, meaning):\n");
            dp_settings_help(stdout);
            return 1;
        case 'V':
            printf("%s %s\n", prog, DP_VERSION);
            return 1;
        case 'D':
            dp_settings_describe(stdout);
            return 1;
        case 'o':
        case 'R':
        case 'L':
        case 'n':
        case 't':
        case 's':
            /* The loader's own options. */
            if (!allow_once) {
                fprintf(stderr, "%s: unknown option '%s'\nTry '%s --help'.\n", prog,
                        argv[optind - 1], prog);
                return 2;
            }
            cli_loader_opt(c, optarg, out);
            break;
        default:
            fprintf(stderr, "%s: unknown or incomplete option '%s'\nTry '%s --help'.\n", prog,
                    argv[optind - 1], prog);
            return 2;
        }
    }
    if (out->only_stage != NULL && strcmp(out->only_stage, "ingest") != 0 &&
        strcmp(out->only_stage, "load") != 0) {
        fprintf(stderr, "%s: --stage must be ingest or load\n", prog);
        return 2;
    }
    if ((out->dry_run || out->only_type != NULL || out->only_stage != NULL) &&
        !out->replay_dead_letters && !out->dead_letters) {
        fprintf(stderr,
                "%s: --type, --stage and --dry-run go with --replay-dead-letters or "
                "--dead-letters\n",
                prog);
        return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\nTry '%s --help'.\n", prog, argv[optind],
                prog);
        return 2;
    }
    return 0;
}

int
dp_config_startup(int argc, char **argv, const char *prog, const char *usage, bool allow_once,
                  struct dp_cli *cli, struct dp_config **out)
{
    struct dp_config_sources src;
    char *errors = NULL;
    int rc;

    *out = NULL;
    rc = dp_cli_parse(argc, argv, prog, usage, allow_once, cli);
    if (rc == 1) {
        return 0;
    }
    if (rc != 0) {
        return 2;
    }
    src = dp_config_sources_default(cli->config_path);
    rc = dp_config_load(&src, out, &errors);
    if (rc != 0) {
        fprintf(stderr, "%s: configuration rejected:\n%s", prog,
                errors != NULL ? errors : "out of memory\n");
        free(errors);
        return 2;
    }
    if (cli->check_config) {
        char *text = dp_config_to_json(*out);
        printf("%s\n", text != NULL ? text : "{}");
        free(text);
        dp_config_destroy(*out);
        *out = NULL;
        return 0;
    }
    dp_log_setup((*out)->log_level, (*out)->log_format);
    return -1;
}
