/*
 * fuzz_http.c - libFuzzer target over the whole request path: the real civetweb server with
 * datapipe's handler, started once on a loopback port with a queue in a temporary directory
 * (an API key with a rate limit, CORS, a small body limit), gets each input as the raw bytes
 * of a connection (request line, headers, chunking, gzip, bodies); the answer is read until
 * the server closes. A crash or a sanitizer report in any server thread is a finding.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "etc/config.h"
#include "etc/log.h"
#include "server/srv.h"
#include "tests/lib/lib_test.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct srv fz_srv;
static struct sockaddr_in fz_addr;
static char *fz_dir; /* t_tmpdir's, for the process's life */
static unsigned long fz_runs;

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

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct dp_config_sources src = {NULL, NULL, NULL};
    struct dp_config *cfg = NULL;
    char *errors = NULL;
    char path[256];
    FILE *f;
    int port = free_port();

    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    if (port < 0) {
        abort();
    }
    fz_dir = t_tmpdir();
    atexit(remove_dir);
    snprintf(path, sizeof(path), "%s/cfg.json", fz_dir);
    f = fopen(path, "w");
    if (f == NULL) {
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
            " \"log\": {\"level\": \"error\"}}\n",
            port, fz_dir, fz_dir);
    fclose(f);
    src.cli_path = path;
    if (dp_config_load(&src, &cfg, &errors) != 0) {
        fprintf(stderr, "fuzz_http: %s", errors != NULL ? errors : "out of memory\n");
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

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct timeval tv = {.tv_sec = 10};
    char answer[4096];
    size_t off = 0;
    ssize_t n;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0) {
        abort();
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&fz_addr, sizeof(fz_addr)) != 0) {
        abort();
    }
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
    }
    close(fd);
    if (++fz_runs % 1000 == 0) {
        queue_drain();
    }
    return 0;
}
