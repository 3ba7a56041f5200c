/*
 * read.c - GET /v1/events/{type}/{id}, GET /product/{id}, the status page's dead
 * letters and the database half of an event's trail (GET /v1/events/{id}): queries on a
 * libpq connection owned by the civetweb worker thread (opened lazily, reopened after a
 * failure, closed when the thread exits).
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

/* ---- the trail's database half ------------------------------------------------------ */

/* RFC 3339 UTC with milliseconds, as dp_time_text writes it, in SQL. */
#define TRAIL_TIME(col) "to_char((" col ") AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/*
 * Run one trail query (parameter $1: the id) and merge the JSON object of its first row
 * into o. 42P01 (no such table) and 42703 (no such column: a dead_letter older than its
 * event_id column) mean "not there", as does no row.
 * Returns 0, DP_ERR_NOTFOUND, DP_ERR_RETRY (database unavailable), DP_ERR_IO.
 */
static int
trail_query(PGconn *c, const char *sql, const char *id, json_t *o)
{
    PGresult *res = PQexecParams(c, sql, 1, NULL, &id, NULL, NULL, 0);
    const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    json_t *row = NULL;
    int rc = 0;

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (sqlstate != NULL && (strcmp(sqlstate, "42P01") == 0 || strcmp(sqlstate, "42703") == 0)) {
            rc = DP_ERR_NOTFOUND;
        } else if (db_busy(sqlstate) || PQstatus(c) != CONNECTION_OK) {
            rc = DP_ERR_RETRY;
        } else {
            dp_error("trail query failed", "error=%s", PQerrorMessage(c));
            rc = DP_ERR_IO;
        }
        goto out;
    }
    if (PQntuples(res) == 0) {
        rc = DP_ERR_NOTFOUND;
        goto out;
    }
    row = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    if (row == NULL || json_object_update(o, row) != 0) {
        rc = DP_ERR_NOMEM;
    }
out:
    json_decref(row);
    PQclear(res);
    return rc;
}

/* The query that finds id in type t's table: its name, when received and when loaded. */
static int
trail_type_sql(const struct ev_type *t, char *sql, size_t len)
{
    int n = snprintf(sql, len,
                     "SELECT json_build_object('type', '%s', 'state', 'loaded', 'table', '%s', "
                     "'received_at', " TRAIL_TIME("t.received_at") ", "
                     "'loaded_at', " TRAIL_TIME("coalesce(to_jsonb(t)->>'loaded_at', "
                                                "to_jsonb(t)->>'processed_at')::timestamptz")
                     ")::text FROM %s t WHERE t.id = $1::uuid",
                     t->name, t->table, t->table);

    return n > 0 && (size_t)n < len ? 0 : DP_ERR_NOMEM;
}

static const char trail_dead_sql[] =
    "SELECT json_build_object('type', event_type, 'state', 'dead_letter', "
    "'received_at', " TRAIL_TIME("received_at") ", 'stage', stage, 'error', error, "
    "'failed_at', " TRAIL_TIME("failed_at") ", 'replays', replays, "
    "'dead_letter_seq', seq)::text "
    "FROM dead_letter WHERE event_id = $1::uuid ORDER BY seq DESC LIMIT 1";

/*
 * dead_letter first, then the append tables: the only move between them is a replay,
 * from dead_letter into a table in one transaction, so in this order the event is seen
 * on one side or the other even while it moves.
 */
static int
trail_lookup(struct srv *s, const char *id, json_t *o)
{
    char sql[1024];
    PGconn *c = conn_get(s, NULL, 0);
    int rc;

    if (c == NULL) {
        return DP_ERR_RETRY;
    }
    rc = trail_query(c, trail_dead_sql, id, o);
    for (size_t i = 0; rc == DP_ERR_NOTFOUND && i < ev_registry_len; i++) {
        const struct ev_type *t = ev_registry[i];

        /* A type keyed by its own id (product, upserted) keeps no event id to look for. */
        if (t->id_kind != EV_ID_UUID || t->load != EV_LOAD_APPEND) {
            continue;
        }
        rc = trail_type_sql(t, sql, sizeof(sql));
        if (rc == 0) {
            rc = trail_query(c, sql, id, o);
        }
    }
    if (rc == DP_ERR_RETRY || rc == DP_ERR_IO) {
        conn_drop();
    }
    return rc;
}

int
srv_read_trail(struct srv *s, const char *id, json_t *o)
{
    int rc;

    if (atomic_fetch_add(&s->reads_in_flight, 1) >= max_reads(s)) {
        atomic_fetch_sub(&s->reads_in_flight, 1);
        return DP_ERR_BUSY;
    }
    rc = trail_lookup(s, id, o);
    atomic_fetch_sub(&s->reads_in_flight, 1);
    return rc;
}
