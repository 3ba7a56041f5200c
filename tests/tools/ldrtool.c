/*
 * ldrtool.c - a test tool for the loader's shell tests and benchmark. Test code only:
 *   ldrtool fill DIR TYPE N [NUMBERS]   append N generated events of TYPE (crash_report,
 *                                       ad_event, user_login, product, data_sample with
 *                                       NUMBERS numbers each, or "rejected"; any other
 *                                       type gets crash_report's events; TYPE+key:
 *                                       each with its own idempotency key); prints
 *                                       "appended=N json_bytes=N"
 *   ldrtool ids DIR                     print the uuid of every queued event, one a line
 *   ldrtool copyfile DIR FILE [CONFIG]  encode every queued event as the loader does and
 *                                       write the COPY text rows to FILE (with the types
 *                                       CONFIG declares); print "columns=(a, b, ...)",
 *                                       their column list
 *   ldrtool stats DIR                   print "events=N"
 *   ldrtool meta DIR NAME               print the metadata counter NAME
 *   ldrtool notify-listen SOCKET FILE   receive sd_notify datagrams on SOCKET, append
 *                                       each to FILE as a line; runs until killed
 * Queues are opened with a 4 GiB map (TOOL_MAP_BYTES): the configurations of the tests that
 * use this tool say queue.max_bytes 4294967296, as both sides must agree.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "etc/config.h"
#include "etc/err.h"
#include "etc/log.h"
#include "events/events.h"
#include "queue/queue.h"

#define FILL_CHUNK 10000            /* events per queue_append call */
#define TOOL_MAP_BYTES (4ULL << 30) /* bytes: the tests' queue.max_bytes */

/* Write event i of type into b (NUL-terminated). */
static int
gen_event(struct ev_buf *b, const char *type, uint64_t i, long numbers)
{
    char tmp[512];
    int n = 0;

    b->len = 0;
    if (strcmp(type, "crash_report") == 0 || strcmp(type, "rejected") == 0) {
        n = snprintf(tmp, sizeof(tmp),
                     "{\"user_id\": %" PRIu64 ", \"timestamp\": %" PRIu64 ", "
                     "\"message\": \"crash number %" PRIu64 " in module\\tx\"}",
                     i, 1700000000 + i, i);
    } else if (strcmp(type, "ad_event") == 0) {
        n = snprintf(tmp, sizeof(tmp),
                     "{\"ip_address\": \"10.0.%u.%u\", \"user_agent\": \"agent/%" PRIu64 "\", "
                     "\"referring_url\": \"https://example.com/p/%" PRIu64 "\", "
                     "\"advertiser_id\": \"adv%" PRIu64 "\", \"metadata\": {\"k\": %" PRIu64 "}}",
                     (unsigned)(i / 256 % 256), (unsigned)(i % 256), i, i, i % 97, i);
    } else if (strcmp(type, "user_login") == 0) {
        n = snprintf(tmp, sizeof(tmp),
                     "{\"user_id\": \"u%" PRIu64 "\", \"timestamp\": %" PRIu64 ", "
                     "\"app_version\": \"1.2.3\", \"ip\": \"2001:db8::%x\"}",
                     i, 1700000000 + i, (unsigned)(i % 65536));
    } else if (strcmp(type, "product") == 0) {
        n = snprintf(tmp, sizeof(tmp), "{\"id\": \"p%" PRIu64 "\", \"price\": %" PRIu64 "}", i,
                     i % 1000);
    } else if (strcmp(type, "data_sample") == 0) {
        n = snprintf(tmp, sizeof(tmp),
                     "{\"time_stamp\": \"2024-05-01T12:00:00.5+02:00\", "
                     "\"data\": [");
        if (ev_buf_put(b, tmp, (size_t)n) != 0) {
            return DP_ERR_NOMEM;
        }
        for (long k = 0; k < numbers; k++) {
            n = snprintf(tmp, sizeof(tmp), "%s%.6f", k > 0 ? ", " : "",
                         1000.0 + (double)((i * 7919 + (uint64_t)k * 104729) % 100000) / 997.0);
            if (ev_buf_put(b, tmp, (size_t)n) != 0) {
                return DP_ERR_NOMEM;
            }
        }
        n = snprintf(tmp, sizeof(tmp), "]}");
    } else {
        /* A declared type (the benchmark's twin of crash_report): crash_report's events. */
        n = snprintf(tmp, sizeof(tmp),
                     "{\"user_id\": %" PRIu64 ", \"timestamp\": %" PRIu64 ", "
                     "\"message\": \"crash number %" PRIu64 " in module\\tx\"}",
                     i, 1700000000 + i, i);
    }
    return ev_buf_put(b, tmp, (size_t)n) == 0 ? ev_buf_put(b, "", 1) : DP_ERR_NOMEM;
}

static int
fill(struct queue *q, const char *type_arg, uint64_t total, long numbers)
{
    struct queue_event *evs = calloc(FILL_CHUNK, sizeof(*evs));
    struct ev_buf *bufs = calloc(FILL_CHUNK, sizeof(*bufs));
    char(*keys)[32] = calloc(FILL_CHUNK, sizeof(*keys));
    char type[QUEUE_TYPE_MAX + 1];
    const char *plus = strstr(type_arg, "+key");
    bool keyed = plus != NULL && plus[4] == '\0';
    uint64_t done = 0;
    uint64_t bytes = 0;
    bool rejected;
    int rc = evs != NULL && bufs != NULL && keys != NULL ? 0 : DP_ERR_NOMEM;

    snprintf(type, sizeof(type), "%.*s", keyed ? (int)(plus - type_arg) : (int)strlen(type_arg),
             type_arg);
    rejected = strcmp(type, "rejected") == 0;

    while (rc == 0 && done < total) {
        size_t n = total - done < FILL_CHUNK ? (size_t)(total - done) : FILL_CHUNK;

        for (size_t i = 0; rc == 0 && i < n; i++) {
            rc = gen_event(&bufs[i], type, done + i + 1, numbers);
            memset(&evs[i], 0, sizeof(evs[i]));
            ev_uuid7(evs[i].uuid);
            evs[i].received_us = dp_now_us();
            evs[i].type = rejected ? "crash_report" : type;
            evs[i].type_len = strlen(evs[i].type);
            evs[i].flags = rejected ? QUEUE_F_REJECTED : 0;
            evs[i].error = rejected ? "user_id: expected integer, got string" : NULL;
            evs[i].error_len = rejected ? strlen(evs[i].error) : 0;
            evs[i].json = bufs[i].data;
            evs[i].json_len = bufs[i].len - 1;
            if (keyed && rc == 0) {
                snprintf(keys[i], sizeof(keys[i]), "fill-%" PRIu64, done + i + 1);
                evs[i].key = keys[i];
                evs[i].key_len = strlen(keys[i]);
                ev_digest(evs[i].json, evs[i].json_len, evs[i].digest);
                evs[i].answer = 202;
            }
            bytes += evs[i].json_len;
        }
        if (rc == 0) {
            rc = queue_append(q, evs, n);
        }
        done += n;
    }
    for (size_t i = 0; bufs != NULL && i < FILL_CHUNK; i++) {
        ev_buf_free(&bufs[i]);
    }
    free(bufs);
    free(evs);
    free(keys);
    if (rc == 0) {
        printf("appended=%" PRIu64 " json_bytes=%" PRIu64 "\n", total, bytes);
    }
    return rc;
}

struct visit {
    FILE *out;
    struct ev_buf b;
    int64_t now_us;
    const struct ev_type *type; /* copyfile: the type of the rows written */
};

static int
print_id(void *arg, const struct queue_event *ev)
{
    struct visit *v = arg;

    v->b.len = 0;
    if (ev_buf_put_uuid(&v->b, ev->uuid) != 0) {
        return DP_ERR_NOMEM;
    }
    fprintf(v->out, "%.*s\n", (int)v->b.len, v->b.data);
    return 0;
}

static int
encode_one(void *arg, const struct queue_event *ev)
{
    struct visit *v = arg;
    const struct ev_type *t = ev_lookup(ev->type, ev->type_len);
    struct ev_stored st = {.json = ev->json,
                           .json_len = ev->json_len,
                           .received_us = ev->received_us,
                           .now_us = v->now_us,
                           .seq = ev->seq};
    char err[EV_ERR_MAX];

    if (t == NULL || (ev->flags & QUEUE_F_REJECTED) != 0) {
        return 0;
    }
    memcpy(st.uuid, ev->uuid, sizeof(st.uuid));
    v->b.len = 0;
    if (ev_encode(t, &st, &v->b, err) != 0) {
        return 0;
    }
    v->type = t;
    return fwrite(v->b.data, 1, v->b.len, v->out) == v->b.len ? 0 : DP_ERR_IO;
}

static int
visit_all(struct queue *q, queue_read_fn fn, struct visit *v)
{
    uint64_t from = 1;
    uint64_t last = 0;
    size_t count = 0;
    int rc;

    do {
        rc = queue_read(q, from, 10000, 0, fn, v, &last, &count);
        from = last + 1;
    } while (rc == 0 && count > 0);
    return rc;
}

/* What systemd does with $NOTIFY_SOCKET: one datagram a message. */
static int
notify_listen(const char *path, const char *file)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    char msg[4096];
    FILE *out = fopen(file, "a");
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);

    if (out == NULL || fd < 0 || strlen(path) >= sizeof(addr.sun_path)) {
        return 1;
    }
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
    unlink(path);
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        perror("bind");
        return 1;
    }
    for (;;) {
        ssize_t n = recv(fd, msg, sizeof(msg) - 1, 0);

        if (n > 0) {
            fprintf(out, "%.*s\n", (int)n, msg);
            fflush(out);
        }
    }
}

/* Register the types the configuration file path declares. */
static int
declare(const char *path)
{
    struct dp_config_sources src = {NULL, NULL, path};
    struct dp_config *cfg = NULL;
    char *errors = NULL;
    int rc = dp_config_load(&src, &cfg, &errors);

    if (rc != 0) {
        fprintf(stderr, "ldrtool: %s", errors != NULL ? errors : "out of memory\n");
        free(errors);
        return rc;
    }
    rc = ev_registry_update(cfg->types, NULL, NULL);
    dp_config_destroy(cfg);
    return rc;
}

int
main(int argc, char **argv)
{
    struct queue *q = NULL;
    struct queue_stats st;
    struct visit v = {.out = stdout, .now_us = dp_now_us()};
    int64_t value = 0;
    int rc;

    if (argc < 3) {
        fprintf(stderr, "usage: ldrtool fill|ids|copyfile|stats|meta DIR ...\n");
        return 2;
    }
    if (strcmp(argv[1], "notify-listen") == 0 && argc == 4) {
        return notify_listen(argv[2], argv[3]);
    }
    rc = queue_open(&q, argv[2], TOOL_MAP_BYTES, false);
    if (rc != 0) {
        fprintf(stderr, "ldrtool: open %s: %s\n", argv[2], dp_strerror(rc));
        return 1;
    }
    if (strcmp(argv[1], "fill") == 0 && argc >= 5) {
        rc = fill(q, argv[3], strtoull(argv[4], NULL, 10), argc > 5 ? atol(argv[5]) : 100);
    } else if (strcmp(argv[1], "ids") == 0) {
        rc = visit_all(q, print_id, &v);
    } else if (strcmp(argv[1], "copyfile") == 0 && (argc == 4 || argc == 5)) {
        rc = argc == 5 ? declare(argv[4]) : 0;
        v.out = rc == 0 ? fopen(argv[3], "w") : NULL;
        rc = v.out != NULL ? visit_all(q, encode_one, &v) : DP_ERR_IO;
        if (v.out != NULL && fclose(v.out) != 0) {
            rc = DP_ERR_IO;
        }
        if (rc == 0 && v.type != NULL) {
            /* The column list of the rows, for a \copy of them (the loader's own). */
            printf("columns=%s\n", v.type->copy_columns);
        }
    } else if (strcmp(argv[1], "stats") == 0) {
        rc = queue_stats(q, &st);
        printf("events=%" PRIu64 "\n", st.events);
    } else if (strcmp(argv[1], "meta") == 0 && argc == 4) {
        rc = queue_meta_get(q, argv[3], &value);
        rc = rc == DP_ERR_NOTFOUND ? 0 : rc;
        printf("%" PRId64 "\n", value);
    } else {
        fprintf(stderr, "ldrtool: bad command\n");
        rc = DP_ERR_INVALID;
    }
    if (rc != 0) {
        fprintf(stderr, "ldrtool: %s\n", dp_strerror(rc));
    }
    ev_buf_free(&v.b);
    queue_close(q);
    return rc == 0 ? 0 : 1;
}
