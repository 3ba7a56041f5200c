/*
 * listen.c - starting and stopping civetweb: its options from the
 * configuration, the TLS shim for an "s" port, and the callbacks that are not
 * requests (civetweb's own messages, a worker thread's exit). Every request
 * goes to srv_handle_request (routes.c).
 */
#include "etc/err.h"
#include "etc/log.h"
#include "server/srv.h"

#include <civetweb.h>
#include <dlfcn.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int
log_message(const struct mg_connection *c, const char *message)
{
    (void)c;
    dp_warn("civetweb", "message=%s", message);
    return 1;
}

static void
connection_closed(const struct mg_connection *c)
{
    (void)c;
}

/*
 * Load the OpenSSL 3 shim (server/compat/openssl3.c) next to the binary, or in
 * ../lib/datapipe when installed, before civetweb looks for "libssl.so".
 */
static int
tls_compat_load(void)
{
    char exe[4096];
    char path[4200];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    const char *dir;

    if (n <= 0) {
        return DP_ERR_IO;
    }
    exe[n] = '\0';
    dir = dirname(exe);
    snprintf(path, sizeof(path), "%s/datapipe-tls-compat.so", dir);
    if (access(path, R_OK) != 0) {
        snprintf(path, sizeof(path), "%s/../lib/datapipe/datapipe-tls-compat.so", dir);
    }
    if (dlopen(path, RTLD_NOW | RTLD_GLOBAL) == NULL) {
        dp_error("cannot load the TLS shim", "path=%s error=%s", path, dlerror());
        return DP_ERR_IO;
    }
    return 0;
}

/*
 * civetweb calls this once the context exists and before its listening and worker threads
 * start: the handler is in place before the first request. Set after mg_start returned, a
 * request arriving in between (a client reconnecting as soon as a restarted server listens)
 * got civetweb's own 404.
 */
static void
init_context(const struct mg_context *ctx)
{
    struct srv *s = mg_get_user_data(ctx);

    mg_set_request_handler((struct mg_context *)ctx, "/", srv_handle_request, s);
}

int
srv_http_start(struct srv *s)
{
    struct mg_callbacks cb;
    char threads[16];
    char timeout[16];
    char keepalive[16];
    const char *opts[32];
    int n = 0;

    memset(&cb, 0, sizeof(cb));
    cb.log_message = log_message;
    cb.connection_close = connection_closed;
    cb.init_context = init_context;
    snprintf(threads, sizeof(threads), "%d", s->cfg->server_threads);
    snprintf(timeout, sizeof(timeout), "%d", s->cfg->server_request_timeout_ms);
    /* An idle keep-alive connection holds a worker thread; never longer than
     * the request timeout, and at most 5 s, so idle clients cannot starve new ones. */
    snprintf(keepalive, sizeof(keepalive), "%d",
             s->cfg->server_request_timeout_ms < 5000 ? s->cfg->server_request_timeout_ms : 5000);
    opts[n++] = "listening_ports";
    opts[n++] = s->cfg->server_listen;
    opts[n++] = "num_threads";
    opts[n++] = threads;
    opts[n++] = "request_timeout_ms";
    opts[n++] = timeout;
    opts[n++] = "enable_keep_alive";
    opts[n++] = "yes";
    opts[n++] = "keep_alive_timeout_ms";
    opts[n++] = keepalive;
    opts[n++] = "tcp_nodelay";
    opts[n++] = "1";
    opts[n++] = "connection_queue";
    opts[n++] = "1024";
    opts[n++] = "listen_backlog";
    opts[n++] = "1024";
    opts[n++] = "access_control_allow_origin";
    opts[n++] = "";
    opts[n++] = "enable_directory_listing";
    opts[n++] = "no";
    if (s->cfg->server_tls_certificate != NULL) {
        opts[n++] = "ssl_certificate";
        opts[n++] = s->cfg->server_tls_certificate;
    }
    opts[n] = NULL;
    if (s->cfg->server_tls_certificate != NULL && tls_compat_load() != 0) {
        return DP_ERR_IO;
    }
    if (s->read_pool == NULL && srv_read_pool_create(s) != 0) {
        dp_error("out of memory creating the database pool", NULL);
        return DP_ERR_NOMEM;
    }
    if (srv_budget_init(&s->budget, s->cfg->server_max_inflight_bytes) != 0 ||
        srv_watchdog_start(s) != 0) {
        dp_error("cannot start the body watchdog", NULL);
        return DP_ERR_NOMEM;
    }
    /* TLS is set up by mg_start, which reports a bad certificate instead of crashing. */
    mg_init_library(0);
    s->ctx = mg_start(&cb, s, opts);
    if (s->ctx == NULL) {
        dp_error("cannot start the HTTP server", "listen=%s", s->cfg->server_listen);
        return DP_ERR_IO;
    }
    return 0;
}

void
srv_http_stop(struct srv *s)
{
    if (s->ctx != NULL) {
        /* mg_stop waits for every handler: a tap's must end first. */
        srv_tap_stop(s);
        mg_stop(s->ctx);
        s->ctx = NULL;
    }
    srv_read_pool_destroy(s);
    mg_exit_library();
    if (s->watchdog.running) {
        srv_watchdog_stop(s);
        srv_budget_destroy(&s->budget);
    }
}
