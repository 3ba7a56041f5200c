/*
 * main.c - datapipe-queue: an operator's commands on the queue of the configuration, beside
 * or without the daemons: backup (an online, compacted copy), check (every record decodes,
 * the counters add up), stat (the queue part of /v1/status without the server). It opens
 * the queue read-only and must never change it: the daemons own every write.
 */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "etc/config.h"
#include "etc/err.h"
#include "etc/log.h"
#include "queue/queue.h"

#define QT_BAD_SHOWN 20 /* records that do not decode named one by one; the rest counted */

static const char usage[] =
    "Usage: datapipe-queue [-c FILE] [--path DIR] backup DIR | check | stat\n"
    "       datapipe-queue --help | --version\n"
    "Operator's commands on the datapipe LMDB queue (queue.path of the configuration), run\n"
    "beside the daemons or without them; the queue is opened read-only.\n"
    "  backup DIR   a consistent copy of the queue as of one moment, taken while the server\n"
    "               appends, compacted, into DIR/data.mdb (DIR created if missing; an\n"
    "               existing DIR/data.mdb is never overwritten). Restore: see README\n"
    "  check        decode every record, count the keys, hold the counters against the\n"
    "               records; names the sequence number of every record that does not decode\n"
    "               (the first 20). Exit 0: all good; 1: a problem found or the queue\n"
    "               unreadable\n"
    "  stat         the queue's figures as GET /v1/status shows them, as JSON\n"
    "  -c, --config FILE  read FILE after /etc/datapipe.json and $DATAPIPE_CNF\n"
    "  --path DIR   the queue in DIR instead of queue.path (a backup, say)\n"
    "  --help, --version\n"
    "Exit status 2: a usage or configuration error.\n";

struct qt_check {
    uint64_t shown; /* bad records named so far */
};

static void
qt_bad_record(void *arg, uint64_t seq, const char *why)
{
    struct qt_check *c = arg;

    if (c->shown++ < QT_BAD_SHOWN) {
        printf("  record seq %" PRIu64 " does not decode: %s\n", seq, why);
    }
}

/* check: the report, one line per concern, then the verdict. Returns the exit status. */
static int
qt_check(struct queue *q, const char *path)
{
    struct queue_check_report r;
    struct qt_check c = {0};
    const char *instance = queue_instance(q, NULL);
    bool ok;
    int rc;

    printf("queue %s (instance %s)\n", path,
           instance[0] != '\0' ? instance : "none yet: the daemons give it one at their start");
    rc = queue_check(q, &r, qt_bad_record, &c);
    if (rc != 0) {
        printf("check: FAILED: the queue cannot be read (%s)\n", dp_strerror(rc));
        return 1;
    }
    if (r.bad_records > QT_BAD_SHOWN) {
        printf("  ... and %" PRIu64 " more\n", r.bad_records - QT_BAD_SHOWN);
    }
    printf("records: %" PRIu64 " (seq %" PRIu64 "..%" PRIu64 "), %" PRIu64 " do not decode: %s\n",
           r.records, r.first_seq, r.last_seq, r.bad_records, r.bad_records == 0 ? "ok" : "BAD");
    printf("next_seq: %" PRIu64 ", above every queued number: %s\n", r.next_seq,
           r.next_seq_ok ? "ok" : "BAD");
    if (r.accepted_recorded) {
        printf("counters: accepted %" PRIu64 " = loaded %" PRIu64 " + dead_lettered %" PRIu64
               " + queued %" PRIu64 ": %s\n",
               r.accepted, r.loaded, r.dead_lettered, r.records, r.counters_ok ? "ok" : "BAD");
    } else {
        printf("counters: loaded %" PRIu64 " + dead_lettered %" PRIu64 " + queued %" PRIu64
               "; accepted not recorded yet (a queue of an older release: the daemons add it "
               "at their start): ok\n",
               r.loaded, r.dead_lettered, r.records);
    }
    printf("keys: %" PRIu64 " recorded, %" PRIu64 " in the age index, %" PRIu64
           " do not decode: %s\n",
           r.keys, r.key_times, r.bad_keys, r.keys_ok ? "ok" : "BAD");
    ok = r.bad_records == 0 && r.next_seq_ok && r.counters_ok && r.keys_ok;
    printf("check: %s\n", ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}

static int64_t
qt_meta_int(struct queue *q, const char *name)
{
    int64_t v = 0;

    queue_meta_get(q, name, &v);
    return v;
}

static json_t *
qt_time(int64_t us)
{
    char text[DP_TIME_TEXT_MAX];

    if (us <= 0) {
        return json_null();
    }
    dp_time_text(us, text);
    return json_string(text);
}

/* A metadata string as JSON: null when missing or empty; bytes that are not ASCII as '?'. */
static json_t *
qt_meta_str(struct queue *q, const char *name)
{
    char buf[1024];

    queue_meta_get_str(q, name, buf, sizeof(buf));
    if (buf[0] == '\0') {
        return json_null();
    }
    for (char *p = buf; *p != '\0'; p++) {
        if ((unsigned char)*p >= 0x80) {
            *p = '?';
        }
    }
    return json_string(buf);
}

/* stat: the members /v1/status gives for the queue, under the same names. */
static int
qt_stat(struct queue *q, const char *path)
{
    struct queue_stats st;
    int64_t now_us = dp_now_us();
    json_t *o = json_object();
    json_t *qu = json_object();
    json_t *ev = json_object();
    json_t *ld = json_object();
    char *text = NULL;
    int rc;

    rc = queue_stats(q, &st);
    if (rc != 0) {
        fprintf(stderr, "datapipe-queue: %s: %s\n", path, dp_strerror(rc));
        rc = 1;
        goto out;
    }
    json_object_set_new(qu, "path", json_string(path));
    json_object_set_new(qu, "events", json_integer((json_int_t)st.events));
    json_object_set_new(qu, "bytes", json_integer((json_int_t)st.bytes));
    json_object_set_new(qu, "capacity_bytes", json_integer((json_int_t)st.capacity_bytes));
    json_object_set_new(qu, "oldest_event_at",
                        st.events > 0 ? qt_time(st.oldest_received_us) : json_null());
    json_object_set_new(qu, "oldest_event_age_s",
                        json_real(st.events > 0 && now_us > st.oldest_received_us
                                      ? (double)(now_us - st.oldest_received_us) / 1e6
                                      : 0));
    json_object_set_new(qu, "first_seq", json_integer((json_int_t)st.first_seq));
    json_object_set_new(qu, "next_seq", json_integer((json_int_t)st.next_seq));
    json_object_set_new(qu, "instance_id",
                        queue_instance(q, NULL)[0] != '\0' ? json_string(queue_instance(q, NULL))
                                                           : json_null());
    json_object_set_new(o, "queue", qu);
    json_object_set_new(ev, "accepted", json_integer((json_int_t)st.accepted));
    json_object_set_new(ev, "loaded", json_integer((json_int_t)st.loaded));
    json_object_set_new(ev, "dead_lettered", json_integer((json_int_t)st.dead_lettered));
    json_object_set_new(ev, "queued", json_integer((json_int_t)st.events));
    json_object_set_new(o, "events", ev);
    json_object_set_new(ld, "last_run_at", qt_time(qt_meta_int(q, QUEUE_META_LOADER_LAST_RUN_US)));
    json_object_set_new(ld, "last_result", qt_meta_str(q, QUEUE_META_LOADER_LAST_RUN_RESULT));
    json_object_set_new(ld, "last_success_at",
                        qt_time(qt_meta_int(q, QUEUE_META_LOADER_LAST_SUCCESS_US)));
    json_object_set_new(ld, "last_error", qt_meta_str(q, QUEUE_META_LOADER_LAST_ERROR));
    json_object_set_new(ld, "batches", json_integer(qt_meta_int(q, QUEUE_META_LOADER_BATCHES)));
    json_object_set_new(ld, "dead_letters",
                        json_integer(qt_meta_int(q, QUEUE_META_LOADER_DEAD_LETTERS)));
    json_object_set_new(ld, "held_events", json_integer(qt_meta_int(q, QUEUE_META_LOADER_HELD)));
    json_object_set_new(ld, "refused", qt_meta_str(q, QUEUE_META_LOADER_REFUSED));
    json_object_set_new(o, "loader", ld);
    json_object_set_new(o, "loaded_through",
                        qt_time(qt_meta_int(q, QUEUE_META_LOADER_LOADED_THROUGH_US)));
    json_object_set_new(o, "healthy",
                        json_boolean(st.accepted == st.loaded + st.dead_lettered + st.events));
    text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    if (text == NULL) {
        fprintf(stderr, "datapipe-queue: out of memory\n");
        rc = 1;
        goto out;
    }
    printf("%s\n", text);
out:
    free(text);
    json_decref(o);
    return rc;
}

static int
qt_backup(struct queue *q, const char *path, const char *dir)
{
    struct queue_stats st;
    char *file = NULL;
    int rc;

    rc = queue_stats(q, &st);
    if (rc == 0) {
        rc = queue_backup(q, dir);
    }
    if (rc == DP_ERR_INVALID && asprintf(&file, "%s/data.mdb", dir) < 0) {
        file = NULL;
    }
    if (rc == DP_ERR_INVALID && file != NULL && access(file, F_OK) == 0) {
        /* queue_backup refuses it (O_EXCL): "invalid input" would not say why. */
        fprintf(stderr,
                "datapipe-queue: backup of %s into %s failed: %s already holds a backup (%s "
                "exists): a backup never overwrites one, give a new directory\n",
                path, dir, dir, file);
    } else if (rc != 0) {
        fprintf(stderr, "datapipe-queue: backup of %s into %s failed: %s\n", path, dir,
                dp_strerror(rc));
    }
    free(file);
    if (rc != 0) {
        return 1;
    }
    /* The figures are from just before the copy's snapshot: a guide, not the copy's own
     * (datapipe-queue --path DIR stat reads those). */
    printf("backup: %s/data.mdb written (queue %s, instance %s, about %" PRIu64
           " events queued, next_seq %" PRIu64 ")\n",
           dir, path, queue_instance(q, NULL), st.events, st.next_seq);
    return 0;
}

/*
 * Parse the command line into *config, *path and the command's words. Returns -1 to go on,
 * or the exit status (0 after --help/--version).
 */
static int
qt_args(int argc, char **argv, const char **config, const char **path, int *first)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"path", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int c;

    opterr = 0;
    while ((c = getopt_long(argc, argv, "+c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            *config = optarg;
            break;
        case 'p':
            *path = optarg;
            break;
        case 'h':
            printf("%s", usage);
            return 0;
        case 'V':
            printf("datapipe-queue %s\n", DP_VERSION);
            return 0;
        default:
            fprintf(stderr,
                    "datapipe-queue: unknown or incomplete option '%s'\n"
                    "Try 'datapipe-queue --help'.\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    *first = optind;
    if (optind >= argc) {
        fprintf(stderr, "datapipe-queue: a command is needed: backup DIR, check or stat\n"
                        "Try 'datapipe-queue --help'.\n");
        return 2;
    }
    if (strcmp(argv[optind], "backup") == 0 ? argc - optind != 2
        : strcmp(argv[optind], "check") == 0 || strcmp(argv[optind], "stat") == 0
            ? argc - optind != 1
            : true) {
        fprintf(stderr,
                "datapipe-queue: unknown command or wrong arguments: '%s'\n"
                "Try 'datapipe-queue --help'.\n",
                argv[optind]);
        return 2;
    }
    return -1;
}

int
main(int argc, char **argv)
{
    struct dp_config_sources src;
    struct dp_config *cfg = NULL;
    struct queue *q = NULL;
    const char *config = NULL;
    const char *path = NULL;
    char *errors = NULL;
    int first = 0;
    int rc;

    rc = qt_args(argc, argv, &config, &path, &first);
    if (rc >= 0) {
        return rc;
    }
    src = dp_config_sources_default(config);
    if (dp_config_load(&src, &cfg, &errors) != 0) {
        fprintf(stderr, "datapipe-queue: configuration rejected:\n%s",
                errors != NULL ? errors : "out of memory\n");
        free(errors);
        return 2;
    }
    /* Errors go to stderr as text, whatever log.format says: an operator reads them. */
    dp_log_setup(cfg->log_level, "text");
    if (path == NULL) {
        path = cfg->queue_path;
    }
    rc = queue_open_readonly(&q, path);
    if (rc != 0) {
        fprintf(stderr, "datapipe-queue: cannot open the queue %s: %s\n", path, dp_strerror(rc));
        rc = 1;
        goto out;
    }
    if (strcmp(argv[first], "backup") == 0) {
        rc = qt_backup(q, path, argv[first + 1]);
    } else if (strcmp(argv[first], "check") == 0) {
        rc = qt_check(q, path);
    } else {
        rc = qt_stat(q, path);
    }
out:
    queue_close(q);
    dp_config_destroy(cfg);
    return rc;
}
