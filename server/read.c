/*
 * read.c - GET /v1/events/{type}/{id} and GET /product/{id}: one prepared query per type on
 * a libpq connection borrowed from a small bounded pool (min(4, threads / 2) connections,
 * each closed after a minute unused), so the server never holds more than a handful of
 * PostgreSQL backends. PostgreSQL builds the JSON. Database down is 503, never a hang or a
 * crash; an id that cannot exist is answered before any query.
 */
#include "server/srv.h"
#include "etc/err.h"
#include "etc/log.h"
#include "etc/pgconn.h"

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

/* One pooled connection and the statements prepared on it. */
struct read_conn {
    PGconn *pg;
    bool prepared[SRV_MAX_TYPES];
    int64_t used_ms;                   /* monotonic ms when it was last given back */
};

/* The pool: idle connections on a stack (the most recently used on top). */
struct srv_read_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;                 /* a connection was given back or a slot freed */
    int size;                          /* connections at most */
    int open;                          /* connections open or being opened, lent or idle */
    int n_idle;
    struct read_conn *idle[READ_POOL_MAX];
};

int
srv_read_pool_create(struct srv *s)
{
    struct srv_read_pool *p = calloc(1, sizeof(*p));
    pthread_condattr_t ca;
    int threads = s->cfg->server_threads;

    if (p == NULL) {
        return DP_ERR_NOMEM;
    }
    p->size = threads / 2 < READ_POOL_MAX ? threads / 2 : READ_POOL_MAX;
    p->size = p->size > 0 ? p->size : 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    s->read_pool = p;
    return 0;
}

static void
read_conn_close(struct read_conn *rc)
{
    if (rc != NULL) {
        PQfinish(rc->pg);
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

/* Open a connection with search_path set; NULL when the database is unreachable. */
static struct read_conn *
read_conn_open(const struct srv *s)
{
    struct dp_pg_options opt = {
        .conninfo = s->cfg->database_conninfo,
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
        free(rc);
        return NULL;
    }
    return rc;
}

/*
 * Borrow a connection: an idle one, else a new one while the pool has room, else wait for
 * one given back. NULL when the database is unreachable or none came in time.
 */
static struct read_conn *
pool_get(struct srv *s)
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
    if (open_new) {
        rc = read_conn_open(s);
        if (rc == NULL) {
            pthread_mutex_lock(&p->mu);
            p->open--;
            pthread_cond_signal(&p->cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return rc;
}

/* Give rc back; a broken one (or broken: the statements may be stale) is closed instead. */
static void
pool_put(struct srv *s, struct read_conn *rc, bool broken)
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

static bool
id_ok(const struct ev_type *t, const char *id, struct srv_reply *r)
{
    uint8_t u[16];

    if (t->id_kind == EV_ID_UUID && ev_uuid_parse(id, u) != 0) {
        srv_reply_json(r, 400, "id: not a valid UUID");
        return false;
    }
    if (id[0] == '\0') {
        srv_reply_json(r, 400, "id: must not be empty");
        return false;
    }
    /* No stored id is invalid UTF-8: PostgreSQL would refuse it (a class 22 error). */
    for (size_t i = 0, n = strlen(id); i < n;) {
        size_t len = ev_utf8_len((const unsigned char *)id + i, n - i);

        if (len == 0) {
            srv_reply_json(r, 400, "id: not valid UTF-8");
            return false;
        }
        i += len;
    }
    return true;
}

/* statement_timeout (57014) or lock_timeout (55P03): the database is busy, not broken. */
static bool
db_busy(const char *sqlstate)
{
    return sqlstate != NULL && (strcmp(sqlstate, "57014") == 0 || strcmp(sqlstate, "55P03") == 0);
}

static void
unavailable(struct srv_reply *r)
{
    srv_reply_json(r, 503, "database unavailable: retry later");
    srv_reply_header(r, "Retry-After", "5");
}

static int max_reads(const struct srv *s);
static void get_event(struct srv *s, const struct ev_type *t, size_t ti, const char *id,
                      struct srv_reply *r);

void
srv_get_event(struct srv *s, const struct ev_type *t, const char *id, struct srv_reply *r)
{
    size_t ti = srv_type_index(t);

    if (!id_ok(t, id, r)) {
        return;
    }
    /* At most half the worker threads may wait on PostgreSQL, so a slow or
     * unreachable database never starves the write path. */
    if (atomic_fetch_add(&s->reads_in_flight, 1) >= max_reads(s)) {
        atomic_fetch_sub(&s->reads_in_flight, 1);
        srv_reply_json(r, 503, "too many reads waiting on the database: retry later");
        srv_reply_header(r, "Retry-After", "1");
        return;
    }
    get_event(s, t, ti, id, r);
    atomic_fetch_sub(&s->reads_in_flight, 1);
}

static int
max_reads(const struct srv *s)
{
    return s->cfg->server_threads > 1 ? s->cfg->server_threads / 2 : 1;
}

static void
get_event(struct srv *s, const struct ev_type *t, size_t ti, const char *id, struct srv_reply *r)
{
    char name[96];
    struct read_conn *rc;
    PGconn *c;
    PGresult *res = NULL;
    const char *sqlstate;
    bool broken = false;

    rc = pool_get(s);
    if (rc == NULL) {
        unavailable(r);
        return;
    }
    c = rc->pg;
    snprintf(name, sizeof(name), "get_%s", t->name);
    if (!rc->prepared[ti]) {
        res = PQprepare(c, name, t->get_sql, 1, NULL);
        sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            /* 42P01: the loader has not created the table yet, so nothing is loaded. */
            if (sqlstate != NULL && strcmp(sqlstate, "42P01") == 0) {
                srv_reply_json(r, 404, "not found (not loaded yet)");
            } else if (db_busy(sqlstate) || PQstatus(c) != CONNECTION_OK) {
                unavailable(r);
            } else {
                dp_error("prepare failed", "type=%s error=%s", t->name, PQerrorMessage(c));
                srv_reply_json(r, 500, "could not query the database");
            }
            goto out;
        }
        PQclear(res);
        rc->prepared[ti] = true;
    }
    res = PQexecPrepared(c, name, 1, &id, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (db_busy(sqlstate) || PQstatus(c) != CONNECTION_OK) {
            unavailable(r);
        } else if (sqlstate != NULL && strncmp(sqlstate, "22", 2) == 0) {
            /* A data exception: the id cannot be a stored one (the database's encoding
             * cannot hold it, say). The client's fault, not a bug. */
            dp_debug("id refused by the database", "type=%s error=%s", t->name,
                     PQerrorMessage(c));
            srv_reply_json(r, 404, "not found (no such id)");
        } else {
            dp_error("query failed", "type=%s error=%s", t->name, PQerrorMessage(c));
            srv_reply_json(r, 500, "could not query the database");
            /* A changed table invalidates the statement: prepare again next time. */
            broken = true;
        }
        goto out;
    }
    if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0)) {
        srv_reply_json(r, 404, "not found (not loaded yet, or no such id)");
        goto out;
    }
    r->status = 200;
    r->body = strdup(PQgetvalue(res, 0, 0));
    if (r->body == NULL) {
        srv_reply_json(r, 500, "out of memory");
    }
out:
    PQclear(res);
    pool_put(s, rc, broken);
}
