/*
 * read.c - GET /v1/events/{type}/{id} and GET /product/{id}: one prepared
 * query per type on a libpq connection owned by the civetweb worker thread
 * (opened lazily, reopened after a failure, closed when the thread exits).
 * PostgreSQL builds the JSON. Database down is 503, never a hang or a crash.
 */
#include "server/srv.h"
#include "etc/err.h"
#include "etc/log.h"
#include "etc/pgconn.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READ_STATEMENT_TIMEOUT_MS 2000 /* a GET's query, at most */

static _Thread_local PGconn *tl_conn;
static _Thread_local bool tl_prepared[SRV_MAX_TYPES];

void
srv_read_thread_exit(void)
{
    PQfinish(tl_conn);
    tl_conn = NULL;
}

static void
conn_drop(void)
{
    srv_read_thread_exit();
    memset(tl_prepared, 0, sizeof(tl_prepared));
}

/* The thread's connection, with search_path set; NULL when the database is unreachable. */
static PGconn *
conn_get(const struct srv *s)
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
    char err[512];

    if (tl_conn != NULL && PQstatus(tl_conn) == CONNECTION_OK) {
        return tl_conn;
    }
    conn_drop();
    if (dp_pg_connect(&tl_conn, &opt, err, sizeof(err)) != 0) {
        dp_warn("database unreachable", "error=%s", err);
        return NULL;
    }
    return tl_conn;
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
    PGconn *c;
    PGresult *res = NULL;
    const char *sqlstate;

    c = conn_get(s);
    if (c == NULL) {
        unavailable(r);
        return;
    }
    snprintf(name, sizeof(name), "get_%s", t->name);
    if (!tl_prepared[ti]) {
        res = PQprepare(c, name, t->get_sql, 1, NULL);
        sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            /* 42P01: the loader has not created the table yet, so nothing is loaded. */
            if (sqlstate != NULL && strcmp(sqlstate, "42P01") == 0) {
                srv_reply_json(r, 404, "not found (not loaded yet)");
            } else if (db_busy(sqlstate)) {
                unavailable(r);
            } else if (PQstatus(c) != CONNECTION_OK) {
                unavailable(r);
                conn_drop();
            } else {
                dp_error("prepare failed", "type=%s error=%s", t->name, PQerrorMessage(c));
                srv_reply_json(r, 500, "could not query the database");
            }
            goto out;
        }
        PQclear(res);
        tl_prepared[ti] = true;
    }
    res = PQexecPrepared(c, name, 1, &id, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (db_busy(sqlstate)) {
            unavailable(r);
        } else if (PQstatus(c) != CONNECTION_OK) {
            unavailable(r);
            conn_drop();
        } else {
            dp_error("query failed", "type=%s error=%s", t->name, PQerrorMessage(c));
            srv_reply_json(r, 500, "could not query the database");
            /* A changed table invalidates the statement: prepare again next time. */
            conn_drop();
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
}

/*
 * GET /v1/dead_letters: the dead_letter table's size, by stage. /v1/status gives the running
 * total the loader keeps (dead_lettered_total) without touching PostgreSQL; rows replayed or
 * deleted since are only seen here. Limited like every read (max_reads, statement timeout).
 */
void
srv_get_dead_letters(struct srv *s, struct srv_reply *r)
{
    static const char sql[] = "SELECT count(*), count(*) FILTER (WHERE stage = 'ingest'), "
                              "count(*) FILTER (WHERE stage = 'load') FROM dead_letter";
    PGresult *res = NULL;
    PGconn *c;
    json_t *o;

    if (atomic_fetch_add(&s->reads_in_flight, 1) >= max_reads(s)) {
        srv_reply_json(r, 503, "too many reads waiting on the database: retry later");
        srv_reply_header(r, "Retry-After", "1");
        goto out;
    }
    c = conn_get(s);
    if (c == NULL) {
        unavailable(r);
        goto out;
    }
    res = PQexec(c, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);

        if (sqlstate != NULL && strcmp(sqlstate, "42P01") == 0) {
            /* The loader has not created its tables yet: nothing was filed. */
            o = srv_reply_object(200, NULL);
            json_object_set_new(o, "rows", json_integer(0));
            json_object_set_new(o, "ingest", json_integer(0));
            json_object_set_new(o, "load", json_integer(0));
            srv_reply_set(r, 200, o);
        } else if (db_busy(sqlstate) || PQstatus(c) != CONNECTION_OK) {
            unavailable(r);
        } else {
            dp_error("dead_letter count failed", "error=%s", PQerrorMessage(c));
            srv_reply_json(r, 500, "could not query the database");
        }
        goto out;
    }
    o = srv_reply_object(200, NULL);
    json_object_set_new(o, "rows", json_integer(strtoll(PQgetvalue(res, 0, 0), NULL, 10)));
    json_object_set_new(o, "ingest", json_integer(strtoll(PQgetvalue(res, 0, 1), NULL, 10)));
    json_object_set_new(o, "load", json_integer(strtoll(PQgetvalue(res, 0, 2), NULL, 10)));
    srv_reply_set(r, 200, o);
out:
    PQclear(res);
    atomic_fetch_sub(&s->reads_in_flight, 1);
}
