/*
 * readpool.c - the server's PostgreSQL connections for reads: a small bounded pool
 * (min(4, threads / 2) connections, each closed after a minute unused, a GET waiting at most
 * 2 s for one), the read-only transaction every query runs in, and the 503s of a database
 * down or busy. Every query runs in a transaction of its own that sets its search_path and
 * timeouts with SET LOCAL, unnamed (PQexecParams): nothing stays on the session, so
 * PgBouncer in transaction mode may share the backend. Never a hang or a crash.
 */
#include "etc/err.h"
#include "etc/log.h"
#include "etc/pgconn.h"
#include "server/read_internal.h"
#include "server/srv.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define READ_STATEMENT_TIMEOUT_MS 2000 /* a GET's query, at most */
#define READ_POOL_MAX 4                /* connections at most, and never above threads / 2 */
#define READ_POOL_IDLE_MS 60000        /* an unused connection is closed after this */
#define READ_POOL_WAIT_MS 2000         /* a GET waits this long for a connection, then 503 */

/* The pool: idle connections on a stack (the most recently used on top). */
struct srv_read_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* a connection was given back or a slot freed */
    int size;          /* connections at most */
    int open;          /* connections open or being opened, lent or idle */
    int n_idle;
    struct read_conn *idle[READ_POOL_MAX];
};

int
srv_read_pool_create(struct srv *s)
{
    struct srv_read_pool *p = calloc(1, sizeof(*p));
    int threads = s->cfg->server_threads;

    if (p == NULL) {
        return DP_ERR_NOMEM;
    }
    p->size = threads / 2 < READ_POOL_MAX ? threads / 2 : READ_POOL_MAX;
    p->size = p->size > 0 ? p->size : 1;
    pthread_mutex_init(&p->mu, NULL);
    (void)dp_cond_init_mono(&p->cv); /* glibc's cannot fail (see srv_tap_init) */
    s->read_pool = p;
    return 0;
}

static void
read_conn_close(struct read_conn *rc)
{
    if (rc != NULL) {
        PQfinish(rc->pg);
        free(rc->begin_sql);
        free(rc);
    }
}

void
srv_read_pool_destroy(struct srv *s)
{
    struct srv_read_pool *p = s->read_pool;

    if (p == NULL) {
        return;
    }
    for (int i = 0; i < p->n_idle; i++) {
        read_conn_close(p->idle[i]);
    }
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
    s->read_pool = NULL;
}

void
srv_read_pool_sweep(struct srv *s)
{
    struct srv_read_pool *p = s->read_pool;
    struct read_conn *stale[READ_POOL_MAX];
    int n_stale = 0;
    int64_t now_ms = dp_mono_ms();
    int kept = 0;

    if (p == NULL) {
        return;
    }
    pthread_mutex_lock(&p->mu);
    /* The stack's bottom holds the longest unused: keep the order of the rest. */
    for (int i = 0; i < p->n_idle; i++) {
        if (now_ms - p->idle[i]->used_ms >= READ_POOL_IDLE_MS) {
            stale[n_stale++] = p->idle[i];
        } else {
            p->idle[kept++] = p->idle[i];
        }
    }
    p->n_idle = kept;
    p->open -= n_stale;
    if (n_stale > 0) {
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < n_stale; i++) {
        read_conn_close(stale[i]);
    }
    if (n_stale > 0) {
        dp_debug("idle database connections closed", "closed=%d", n_stale);
    }
}

/*
 * Open a connection (server.database_conninfo, else database.conninfo); NULL when the
 * database is unreachable (then why, when not NULL, holds libpq's reason).
 */
static struct read_conn *
read_conn_open(const struct srv *s, char *why, size_t why_len)
{
    struct dp_pg_options opt = {
        .conninfo = s->cfg->server_database_conninfo != NULL ? s->cfg->server_database_conninfo
                                                             : s->cfg->database_conninfo,
        .application_name = "datapipe-server",
        .schema = s->cfg->database_schema,
        .connect_timeout_s = 3,
        .keepalives_idle_s = 10,
        .keepalives_interval_s = 5,
        /* A read must never hold a worker thread long: POSTs share those threads. */
        .statement_timeout_ms = READ_STATEMENT_TIMEOUT_MS,
    };
    struct read_conn *rc = calloc(1, sizeof(*rc));
    char err[512];

    if (rc == NULL) {
        dp_warn("out of memory opening a database connection", NULL);
        return NULL;
    }
    if (dp_pg_connect(&rc->pg, &opt, err, sizeof(err)) != 0) {
        dp_warn("database unreachable", "error=%s", err);
        if (why != NULL) {
            snprintf(why, why_len, "%s", err);
        }
        free(rc);
        return NULL;
    }
    if (dp_pg_begin_sql(rc->pg, &opt, true, &rc->begin_sql) != 0) {
        dp_warn("out of memory opening a database connection", NULL);
        read_conn_close(rc);
        return NULL;
    }
    return rc;
}

/*
 * Run sql (nparams text parameters; none: the simple protocol) in a read-only transaction of
 * its own that begins with rc's settings; its result, or the first failure's (NULL on a lost
 * connection or no memory, which PQresultStatus reads as a fatal error).
 */
PGresult *
srv_read_exec(struct read_conn *rc, const char *sql, int nparams, const char *const *params)
{
    PGresult *res = PQexec(rc->pg, rc->begin_sql);
    bool ok;

    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        PQclear(PQexec(rc->pg, "ROLLBACK"));
        return res;
    }
    PQclear(res);
    if (nparams > 0) {
        res = PQexecParams(rc->pg, sql, nparams, NULL, params, NULL, NULL, 0);
    } else {
        res = PQexec(rc->pg, sql);
    }
    /* Read only: the COMMIT's outcome changes nothing the caller has. */
    ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    PQclear(PQexec(rc->pg, ok ? "COMMIT" : "ROLLBACK"));
    return res;
}

/*
 * Borrow a connection: an idle one, else a new one while the pool has room, else wait for
 * one given back. NULL when the database is unreachable or none came in time (then why,
 * when not NULL, says which).
 */
struct read_conn *
srv_read_conn_get(struct srv *s, char *why, size_t why_len)
{
    struct srv_read_pool *p = s->read_pool;
    struct read_conn *rc = NULL;
    int64_t deadline_ms = dp_mono_ms() + READ_POOL_WAIT_MS;
    struct timespec ts = {
        .tv_sec = (time_t)(deadline_ms / 1000),
        .tv_nsec = (long)(deadline_ms % 1000) * 1000000L,
    };
    bool open_new = false;

    pthread_mutex_lock(&p->mu);
    while (p->n_idle == 0 && p->open >= p->size) {
        if (pthread_cond_timedwait(&p->cv, &p->mu, &ts) != 0) {
            break;
        }
    }
    if (p->n_idle > 0) {
        rc = p->idle[--p->n_idle];
    } else if (p->open < p->size) {
        p->open++;
        open_new = true;
    }
    pthread_mutex_unlock(&p->mu);
    if (rc == NULL && !open_new && why != NULL) {
        snprintf(why, why_len, "every connection of the pool busy (retry)");
    }
    if (open_new) {
        rc = read_conn_open(s, why, why_len);
        if (rc == NULL) {
            pthread_mutex_lock(&p->mu);
            p->open--;
            pthread_cond_signal(&p->cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return rc;
}

/* Give rc back; a broken one (or broken: the caller saw it fail) is closed instead. */
void
srv_read_conn_put(struct srv *s, struct read_conn *rc, bool broken)
{
    struct srv_read_pool *p = s->read_pool;

    if (rc == NULL) {
        return;
    }
    broken = broken || PQstatus(rc->pg) != CONNECTION_OK;
    rc->used_ms = dp_mono_ms();
    pthread_mutex_lock(&p->mu);
    if (broken) {
        p->open--;
    } else {
        p->idle[p->n_idle++] = rc;
    }
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (broken) {
        read_conn_close(rc);
    }
}

/* statement_timeout (57014) or lock_timeout (55P03): the database is busy, not broken. */
bool
srv_read_busy(const char *sqlstate)
{
    return sqlstate != NULL && (strcmp(sqlstate, "57014") == 0 || strcmp(sqlstate, "55P03") == 0);
}

void
srv_read_unavailable(struct srv_reply *r)
{
    srv_reply_json(r, 503, "database unavailable: retry later");
    srv_reply_header(r, "Retry-After", "5");
}

/*
 * A 503 that says why, for the status page: "database unavailable: <why>". The endpoint is
 * open: a text of libpq's that names the connection (host, port, socket, user) is logged and
 * answered in general words.
 */
void
srv_read_unavailable_why(struct srv_reply *r, const char *why)
{
    char msg[600];
    size_t n;

    if (dp_pg_text_names_tls(why)) {
        dp_warn("database unavailable", "error=%s", why);
        why = DP_PG_TLS_TEXT " (details in the server's log)";
    } else if (dp_pg_text_names_connection(why)) {
        dp_warn("database unavailable", "error=%s", why);
        why = "cannot reach PostgreSQL or lost the connection (details in the server's log)";
    }
    snprintf(msg, sizeof(msg), "database unavailable: %s", why);
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' ')) {
        msg[--n] = '\0';
    }
    srv_reply_json(r, 503, msg);
    if (r->body == NULL) { /* libpq's text was not UTF-8 */
        srv_reply_json(r, 503, "database unavailable");
    }
    srv_reply_header(r, "Retry-After", "5");
}

int
srv_read_max(const struct srv *s)
{
    return s->cfg->server_threads > 1 ? s->cfg->server_threads / 2 : 1;
}
