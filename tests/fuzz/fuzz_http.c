/*
 * fuzz_http.c - libFuzzer target over the whole request path: the real civetweb server with
 * datapipe's handler, started once on a loopback port with a queue in a temporary directory
 * (an API key with a rate limit, CORS, a small body limit), gets each input as the raw bytes
 * of a connection (request line, headers, chunking, gzip, bodies); the answer is read until
 * the server closes. A crash or a sanitizer report in any server thread is a finding.
 * An input whose first byte is 0x80 or more is read in the structured mode instead
 * (tests/fuzz/http_grammar.c): the rest are choices that build well-formed requests to the
 * routes, with the header and body dictionaries and the declared types of the configuration,
 * which declares every field type under names that collide with those datapipe derives.
 * Speed is what lets it reach 10^7 inputs: one server for the process, the queue on tmpfs
 * (/dev/shm) when there is one, and "sync": false — this target is about parsing and
 * answering, and the queue's fsync path is the same code with one flag, tested by
 * tests/unit/check_queue.c and the crash tests. make fuzz runs it with -detect_leaks=0 and
 * checks a corpus for leaks in one pass afterwards (see the Makefile).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "etc/config.h"
#include "etc/log.h"
#include "server/srv.h"
#include "tests/fuzz/fuzz_http.h"
#include "tests/fuzz/http_grammar.h"
#include "tests/lib/lib_test.h"

static struct srv fz_srv;
static struct sockaddr_in fz_addr;
static char *fz_dir; /* t_tmpdir's, for the process's life */
static unsigned long fz_runs;
static struct fzg_buf fz_req; /* the structured mode's bytes, reused */
static bool fz_print;         /* FUZZ_HTTP_PRINT set: the built bytes go to stderr */

/* A port nobody listens on now (the kernel's choice), for the server to take. */
static int
free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port = -1;

    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0) {
        port = ntohs(a.sin_port);
    }
    if (fd >= 0) {
        close(fd);
    }
    return port;
}

/* At exit (libFuzzer ends with exit()): the temporary directory and its queue go. */
static void
remove_dir(void)
{
    t_rmtree(fz_dir);
}

/*
 * The configuration with the declared types use[] says into path; then loaded into *cfg when
 * cfg is not NULL (else only checked). Returns dp_config_load's code.
 */
static int
config_write(const char *path, int port, const bool *use, struct dp_config **cfg)
{
    struct dp_config_sources src = {NULL, NULL, NULL};
    struct fzg_buf types = {0};
    struct dp_config *c = NULL;
    char *errors = NULL;
    FILE *f = fopen(path, "w");
    int rc;

    if (f == NULL || fzg_types_json(&types, use) != 0) {
        abort();
    }
    /* Limits small enough that the 413, 429 and gzip paths are reached by short inputs. */
    fprintf(f,
            "{\"server\": {\"listen\": \"127.0.0.1:%d\", \"threads\": 4, "
            "\"max_body_bytes\": 65536, \"request_timeout_ms\": 1000, "
            "\"api_keys\": [\"open\", {\"name\": \"tight\", \"key\": \"t\", "
            "\"events_per_s\": 5, \"burst\": 10}], "
            "\"cors_origins\": [\"https://a.example\"]},"
            " \"queue\": {\"path\": \"%s/q\", \"max_bytes\": 268435456, \"sync\": false},"
            " \"database\": {\"conninfo\": \"host=%s/nowhere port=1 connect_timeout=1\"},"
            " \"log\": {\"level\": \"error\"}, \"types\": %s}\n",
            port, fz_dir, fz_dir, types.p);
    fclose(f);
    fzg_buf_free(&types);
    src.cli_path = path;
    rc = dp_config_load(&src, &c, &errors);
    if (rc != 0) {
        fprintf(stderr, "fuzz_http: %s", errors != NULL ? errors : "out of memory\n");
    }
    free(errors);
    if (cfg != NULL) {
        *cfg = c;
    } else {
        dp_config_destroy(c);
    }
    return rc;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct dp_config *cfg = NULL;
    char path[256];
    bool use[64];
    int port = free_port();

    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    fz_print = getenv("FUZZ_HTTP_PRINT") != NULL;
    if (port < 0 || fzg_types_len() > sizeof(use) / sizeof(use[0])) {
        abort();
    }
    /* Not fsynced, but written: tmpfs spares the disk's latency, the LMDB code is the same. */
    fz_dir = getenv("TMPDIR") == NULL && access("/dev/shm", W_OK) == 0 ? t_tmpdir_in("/dev/shm")
                                                                       : t_tmpdir();
    atexit(remove_dir);
    snprintf(path, sizeof(path), "%s/cfg.json", fz_dir);
    /*
     * Each declared type alone first: a name the configuration refuses (as the rules for
     * names grow) is left out, and the grammar sends it as an unknown type instead.
     */
    memset(use, 0, sizeof(use));
    for (size_t i = 0; i < fzg_types_len(); i++) {
        bool one[64] = {false};

        one[i] = true;
        use[i] = config_write(path, port, one, NULL) == 0;
        if (!use[i]) {
            fprintf(stderr,
                    "fuzz_http: declared type %s refused by the configuration; "
                    "sent as an unknown type\n",
                    fzg_type_name(i));
        }
    }
    fzg_types_use(use);
    if (config_write(path, port, use, &cfg) != 0) {
        abort();
    }
    dp_log_setup(cfg->log_level, cfg->log_format);
    fz_srv.cfg = cfg;
    fz_srv.started_us = dp_now_us();
    if (ev_registry_update(cfg->types, NULL, NULL) != 0 ||
        queue_open(&fz_srv.q, cfg->queue_path, (uint64_t)cfg->queue_max_bytes, false) != 0 ||
        srv_auth_init(&fz_srv, cfg) != 0) {
        abort();
    }
    srv_tap_init(&fz_srv);
    if (srv_http_start(&fz_srv) != 0) {
        abort();
    }
    fz_addr.sin_family = AF_INET;
    fz_addr.sin_port = htons((uint16_t)port);
    fz_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return 0;
}

/* Empty the queue now and then, as the loader would, so that appends never run out of room. */
static void
queue_drain(void)
{
    struct queue_stats st;

    if (queue_stats(fz_srv.q, &st) == 0 && st.events > 10000 && st.first_seq > 0) {
        queue_delete_range(fz_srv.q, st.first_seq, st.next_seq - 1, NULL, 0);
    }
}

/*
 * A connection to the server. Hundreds of connections a second leave the loopback's ports in
 * TIME_WAIT: a connect that finds none free (EADDRNOTAVAIL) or times out is tried again for up
 * to 10 s; any other failure (the server gone) aborts, naming the error.
 */
static int
connect_server(void)
{
    struct timeval tv = {.tv_sec = 10};
    struct timespec pause = {.tv_nsec = 10 * 1000 * 1000};

    for (int tries = 0;; tries++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);

        if (fd < 0) {
            perror("fuzz_http: socket");
            abort();
        }
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, (struct sockaddr *)&fz_addr, sizeof(fz_addr)) == 0) {
            return fd;
        }
        if ((errno != EADDRNOTAVAIL && errno != EAGAIN && errno != EINPROGRESS && errno != EINTR) ||
            tries == 1000) {
            perror("fuzz_http: connect");
            abort();
        }
        close(fd);
        nanosleep(&pause, NULL);
    }
}

/*
 * Write size bytes to a fresh connection, end it, and read the answer until the server
 * closes; the answer's first bytes go to head (cap bytes, NUL-terminated; NULL: dropped).
 */
static void
exchange(const uint8_t *data, size_t size, char *head, size_t cap)
{
    char answer[4096];
    size_t off = 0;
    size_t got = 0;
    ssize_t n;
    int fd = connect_server();

    while (off < size) {
        n = send(fd, data + off, size - off, MSG_NOSIGNAL);
        if (n <= 0) {
            break; /* the server answered early and closed: fine */
        }
        off += (size_t)n;
    }
    /* End of input: the server sees EOF where the bytes stop, instead of waiting for more. */
    shutdown(fd, SHUT_WR);
    while ((n = recv(fd, answer, sizeof(answer), 0)) > 0) {
        if (head != NULL && got + 1 < cap) {
            size_t take = (size_t)n < cap - 1 - got ? (size_t)n : cap - 1 - got;

            memcpy(head + got, answer, take);
            got += take;
        }
    }
    if (head != NULL) {
        head[got] = '\0';
    }
    close(fd);
}

int
fuzz_http_status(const char *request)
{
    char head[64];
    int status = 0;

    exchange((const uint8_t *)request, strlen(request), head, sizeof(head));
    if (sscanf(head, "HTTP/1.%*d %d", &status) != 1) {
        return 0;
    }
    return status;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 0 && data[0] >= 0x80) {
        if (fzg_build(data + 1, size - 1, &fz_req) != 0) {
            abort();
        }
        data = (const uint8_t *)fz_req.p;
        size = fz_req.len;
        if (fz_print) {
            /* FUZZ_HTTP_PRINT: show what an input builds, to read a finding or a seed */
            fwrite(data, 1, size, stderr);
            fputs("\n-- end of the request bytes\n", stderr);
        }
    }
    exchange(data, size, NULL, 0);
    if (++fz_runs % 1000 == 0) {
        queue_drain();
    }
    return 0;
}
