/*
 * read.c - GET /v1/events/{type}/{id}, GET /product/{id} and the status page's
 * dead letters: queries on a libpq connection owned by the civetweb worker thread
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

/*
 * The thread's connection, with search_path set; NULL when the database is unreachable
 * (then err, when not NULL, holds libpq's reason).
 */
static PGconn *
conn_get(const struct srv *s, char *why, size_t why_len)
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
        if (why != NULL) {
            snprintf(why, why_len, "%s", err);
        }
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

/* A 503 that says why, for the status page: "database unavailable: <libpq's text>". */
static void
unavailable_why(struct srv_reply *r, const char *why)
{
    char msg[600];
    size_t n;

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

    c = conn_get(s, NULL, 0);
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
 * The dead letters of one queue ($1): counts by type and stage, and the latest 10 with
 * their errors; times in RFC 3339 UTC with milliseconds.
 */
#define DEAD_TIME(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
static const char dead_letters_sql[] =
    "SELECT json_build_object("
    " 'by_type', COALESCE((SELECT json_agg(x ORDER BY x.event_type, x.stage) FROM"
    "  (SELECT event_type, stage, count(*) AS count, " DEAD_TIME("max(failed_at)")
    "   AS last_failed_at FROM dead_letter WHERE queue_id = $1 GROUP BY 1, 2) x), '[]'),"
    " 'latest', COALESCE((SELECT json_agg(y ORDER BY y.seq DESC) FROM"
    "  (SELECT seq, event_type, stage, error, " DEAD_TIME("received_at") " AS received_at, "
    DEAD_TIME("failed_at") " AS failed_at FROM dead_letter WHERE queue_id = $1"
    "   ORDER BY seq DESC LIMIT 10) y), '[]'))::text";

static void
get_dead_letters(struct srv *s, struct srv_reply *r)
{
    const char *params[1] = {s->cfg->queue_id};
    char why[512] = "";
    PGconn *c;
    PGresult *res = NULL;
    const char *sqlstate;
    json_t *o = NULL;
    json_t *doc = NULL;

    c = conn_get(s, why, sizeof(why));
    if (c == NULL) {
        unavailable_why(r, why);
        return;
    }
    res = PQexecParams(c, dead_letters_sql, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (sqlstate != NULL && strcmp(sqlstate, "42P01") == 0) {
            /* The loader has not created the table yet: no dead letter can exist. */
            doc = json_pack("{s:[],s:[]}", "by_type", "latest");
        } else if (db_busy(sqlstate)) {
            unavailable_why(r, "busy (statement timeout)");
            goto out;
        } else if (PQstatus(c) != CONNECTION_OK) {
            unavailable_why(r, PQerrorMessage(c));
            conn_drop();
            goto out;
        } else {
            dp_error("dead letter query failed", "error=%s", PQerrorMessage(c));
            srv_reply_json(r, 500, "could not query the database");
            goto out;
        }
    } else if (PQntuples(res) == 1) {
        doc = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    }
    if (doc == NULL) {
        srv_reply_json(r, 500, "could not read the dead letters");
        goto out;
    }
    o = srv_reply_object(200, NULL);
    json_object_update(o, doc);
    srv_reply_set(r, 200, o);
out:
    json_decref(doc);
    PQclear(res);
}

void
srv_get_dead_letters(struct srv *s, struct srv_reply *r)
{
    if (atomic_fetch_add(&s->reads_in_flight, 1) >= max_reads(s)) {
        atomic_fetch_sub(&s->reads_in_flight, 1);
        srv_reply_json(r, 503, "too many reads waiting on the database: retry later");
        srv_reply_header(r, "Retry-After", "1");
        return;
    }
    get_dead_letters(s, r);
    atomic_fetch_sub(&s->reads_in_flight, 1);
}
