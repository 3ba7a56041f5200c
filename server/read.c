/*
 * read.c - GET /v1/events/{type}/{id}, GET /product/{id}, the status page's dead letters and
 * the database half of an event's trail (GET /v1/events/{id}): queries on a libpq connection
 * borrowed from a small bounded pool (min(4, threads / 2) connections, each closed after a
 * minute unused), so the server never holds more than a handful of PostgreSQL backends.
 * PostgreSQL builds the JSON. Database down is 503, never a hang or a crash; an id that
 * cannot exist is answered before any query. Every query runs in a read-only transaction of
 * its own that sets its search_path and timeouts with SET LOCAL, unnamed (PQexecParams):
 * nothing stays on the session, so PgBouncer in transaction mode may share the backend.
 */
#include "etc/err.h"
#include "etc/log.h"
#include "etc/pgconn.h"
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

/* One pooled connection. */
struct read_conn {
    PGconn *pg;
    char *begin_sql; /* begins each query's transaction (dp_pg_begin_sql) */
    int64_t used_ms; /* monotonic ms when it was last given back */
};

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
static PGresult *
read_exec(struct read_conn *rc, const char *sql, int nparams, const char *const *params)
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
static struct read_conn *
pool_get(struct srv *s, char *why, size_t why_len)
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

/*
 * A 503 that says why, for the status page: "database unavailable: <why>". The endpoint is
 * open: a text of libpq's that names the connection (host, port, socket, user) is logged and
 * answered in general words.
 */
static void
unavailable_why(struct srv_reply *r, const char *why)
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

static int max_reads(const struct srv *s);
static void get_event(struct srv *s, const struct ev_type *t, const char *id, struct srv_reply *r);

void
srv_get_event(struct srv *s, const struct ev_type *t, const char *id, struct srv_reply *r)
{
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
    get_event(s, t, id, r);
    atomic_fetch_sub(&s->reads_in_flight, 1);
}

static int
max_reads(const struct srv *s)
{
    return s->cfg->server_threads > 1 ? s->cfg->server_threads / 2 : 1;
}

static void
get_event(struct srv *s, const struct ev_type *t, const char *id, struct srv_reply *r)
{
    struct read_conn *rc;
    PGconn *c;
    PGresult *res = NULL;
    const char *sqlstate;

    rc = pool_get(s, NULL, 0);
    if (rc == NULL) {
        unavailable(r);
        return;
    }
    c = rc->pg;
    res = read_exec(rc, t->get_sql, 1, &id);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (sqlstate != NULL && strcmp(sqlstate, "42P01") == 0) {
            /* The loader has not created the table yet, so nothing is loaded. */
            srv_reply_json(r, 404, "not found (not loaded yet)");
        } else if (db_busy(sqlstate) || PQstatus(c) != CONNECTION_OK) {
            unavailable(r);
        } else if (sqlstate != NULL && strncmp(sqlstate, "22", 2) == 0) {
            /* A data exception: the id cannot be a stored one (the database's encoding
             * cannot hold it, say). The client's fault, not a bug. */
            dp_debug("id refused by the database", "type=%s error=%s", t->name, PQerrorMessage(c));
            srv_reply_json(r, 404, "not found (no such id)");
        } else {
            dp_error("query failed", "type=%s error=%s", t->name, PQerrorMessage(c));
            srv_reply_json(r, 500, "could not query the database");
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
    pool_put(s, rc, false);
}

/*
 * The dead letters of one queue ($1): counts by type and stage, and the latest 10 with
 * their errors; times in RFC 3339 UTC with milliseconds.
 */
#define DEAD_TIME(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
static const char dead_letters_sql[] =
    "SELECT json_build_object("
    " 'by_type', COALESCE((SELECT json_agg(x ORDER BY x.event_type, x.stage) FROM"
    "  (SELECT event_type, stage, count(*) AS count, " DEAD_TIME(
        "max(failed_at)") "   AS last_failed_at FROM dead_letter WHERE queue_id = $1 GROUP BY 1, "
                          "2) x), '[]'),"
                          " 'latest', COALESCE((SELECT json_agg(y ORDER BY y.seq DESC) FROM"
                          "  (SELECT seq, event_type, stage, error, " DEAD_TIME(
                              "received_at") " AS received_at, " DEAD_TIME("failed_at") " AS "
                                                                                        "failed_at "
                                                                                        "FROM "
                                                                                        "dead_"
                                                                                        "letter "
                                                                                        "WHERE "
                                                                                        "queue_id "
                                                                                        "= $1"
                                                                                        "   ORDER "
                                                                                        "BY seq "
                                                                                        "DESC "
                                                                                        "LIMIT 10) "
                                                                                        "y), "
                                                                                        "'[]'))::"
                                                                                        "text";

static void
get_dead_letters(struct srv *s, struct srv_reply *r)
{
    const char *params[1] = {s->cfg->queue_id};
    char why[512] = "";
    struct read_conn *rconn;
    PGconn *c;
    PGresult *res = NULL;
    const char *sqlstate;
    json_t *o = NULL;
    json_t *doc = NULL;
    bool broken = false;

    rconn = pool_get(s, why, sizeof(why));
    if (rconn == NULL) {
        unavailable_why(r, why);
        return;
    }
    c = rconn->pg;
    res = read_exec(rconn, dead_letters_sql, 1, params);
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
            broken = true;
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
    pool_put(s, rconn, broken);
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
trail_query(struct read_conn *rconn, const char *sql, const char *id, json_t *o)
{
    PGconn *c = rconn->pg;
    PGresult *res = read_exec(rconn, sql, 1, &id);
    const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    json_t *row = NULL;
    int rc = 0;

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (sqlstate != NULL &&
            (strcmp(sqlstate, "42P01") == 0 || strcmp(sqlstate, "42703") == 0)) {
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

/*
 * The query that finds id in type t's table: its name, when received and when loaded. The
 * row is t.*: a bare t would be a declared field named t.
 */
static int
trail_type_sql(const struct ev_type *t, char *sql, size_t len)
{
    int n = snprintf(
        sql, len,
        "SELECT json_build_object('type', '%s', 'state', 'loaded', 'table', '%s', "
        "'received_at', " TRAIL_TIME("t.received_at") ", "
                                                      "'loaded_at', " TRAIL_TIME(
                                                          "coalesce(to_jsonb(t.*)->>'loaded_at', "
                                                          "to_jsonb(t.*)->>'processed_at')::"
                                                          "timestamptz") ")::text FROM %s t WHERE "
                                                                         "t.id = $1::uuid",
        t->name, t->table, t->table);

    return n > 0 && (size_t)n < len ? 0 : DP_ERR_NOMEM;
}

static const char trail_dead_sql[] =
    "SELECT json_build_object('type', event_type, 'state', 'dead_letter', "
    "'received_at', " TRAIL_TIME(
        "received_at") ", 'stage', stage, 'error', error, "
                       "'failed_at', " TRAIL_TIME("failed_at") ", 'replays', replays, "
                                                               "'dead_letter_seq', seq)::text "
                                                               "FROM dead_letter WHERE event_id = "
                                                               "$1::uuid ORDER BY seq DESC LIMIT 1";

/*
 * dead_letter first, then the append tables: the only move between them is a replay,
 * from dead_letter into a table in one transaction, so in this order the event is seen
 * on one side or the other even while it moves.
 */
static int
trail_lookup(struct srv *s, const char *id, json_t *o)
{
    char sql[1024];
    struct read_conn *rconn = pool_get(s, NULL, 0);
    int rc;

    if (rconn == NULL) {
        return DP_ERR_RETRY;
    }
    rc = trail_query(rconn, trail_dead_sql, id, o);
    for (size_t i = 0; rc == DP_ERR_NOTFOUND && i < ev_registry_len; i++) {
        const struct ev_type *t = ev_registry[i];

        /* A type keyed by its own id (product, upserted) keeps no event id to look for. */
        if (t->id_kind != EV_ID_UUID || t->load != EV_LOAD_APPEND) {
            continue;
        }
        rc = trail_type_sql(t, sql, sizeof(sql));
        if (rc == 0) {
            rc = trail_query(rconn, sql, id, o);
        }
    }
    pool_put(s, rconn, rc == DP_ERR_RETRY || rc == DP_ERR_IO);
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

/*
 * GET /v1/dead_letters: the dead_letter table's size, by stage. /v1/status gives the running
 * total the loader keeps (dead_lettered_total) without touching PostgreSQL; rows replayed or
 * deleted since are only seen here. Limited like every read (max_reads, statement timeout).
 */
void
srv_get_dead_letter_rows(struct srv *s, struct srv_reply *r)
{
    static const char sql[] = "SELECT count(*), count(*) FILTER (WHERE stage = 'ingest'), "
                              "count(*) FILTER (WHERE stage = 'load') FROM dead_letter";
    PGresult *res = NULL;
    struct read_conn *rconn = NULL;
    PGconn *c;
    json_t *o;
    bool broken = false;

    if (atomic_fetch_add(&s->reads_in_flight, 1) >= max_reads(s)) {
        srv_reply_json(r, 503, "too many reads waiting on the database: retry later");
        srv_reply_header(r, "Retry-After", "1");
        goto out;
    }
    rconn = pool_get(s, NULL, 0);
    if (rconn == NULL) {
        unavailable(r);
        goto out;
    }
    c = rconn->pg;
    res = read_exec(rconn, sql, 0, NULL);
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
            broken = PQstatus(c) != CONNECTION_OK;
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
    pool_put(s, rconn, broken);
    atomic_fetch_sub(&s->reads_in_flight, 1);
}
