/*
 * bare_http.c - the benchmark baseline: a bare civetweb server with the same
 * options as datapipe-server whose one handler reads the body and answers 204.
 *   bare_http PORT THREADS     runs until SIGTERM/SIGINT
 * Test code only.
 */
#include <civetweb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
handle(struct mg_connection *c, void *cbdata)
{
    char buf[65536];

    (void)cbdata;
    while (mg_read(c, buf, sizeof(buf)) > 0) {
    }
    mg_response_header_start(c, 204);
    mg_response_header_send(c);
    return 204;
}

int
main(int argc, char **argv)
{
    char listen[64];
    struct mg_callbacks cb;
    struct mg_context *ctx;
    sigset_t set;
    int sig;
    const char *opts[] = {
        "listening_ports",
        listen,
        "num_threads",
        argc > 2 ? argv[2] : "64",
        "enable_keep_alive",
        "yes",
        "keep_alive_timeout_ms",
        "5000",
        "tcp_nodelay",
        "1",
        "connection_queue",
        "1024",
        "listen_backlog",
        "1024",
        NULL,
    };

    if (argc < 2) {
        fprintf(stderr, "usage: bare_http PORT [THREADS]\n");
        return 2;
    }
    snprintf(listen, sizeof(listen), "127.0.0.1:%s", argv[1]);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    memset(&cb, 0, sizeof(cb));
    mg_init_library(0);
    ctx = mg_start(&cb, NULL, opts);
    if (ctx == NULL) {
        fprintf(stderr, "bare_http: cannot listen on %s\n", listen);
        return 1;
    }
    mg_set_request_handler(ctx, "/", handle, NULL);
    sigwait(&set, &sig);
    mg_stop(ctx);
    mg_exit_library();
    return 0;
}
