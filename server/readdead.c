/*
 * readdead.c - the dead letters as the server reads them from PostgreSQL: the status page's
 * counts by type and stage with the latest ten (GET /v1/status/dead_letters) and the
 * dead_letter table's size by stage (GET /v1/dead_letters), on a connection of the read
 * pool (readpool.c). A table not created yet holds no dead letter; never a hang.
 */
#include "etc/err.h"
#include "etc/log.h"
#include "server/read_internal.h"
#include "server/srv.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

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

    rconn = srv_read_conn_get(s, why, sizeof(why));
    if (rconn == NULL) {
        srv_read_unavailable_why(r, why);
        return;
    }
    c = rconn->pg;
    res = srv_read_exec(rconn, dead_letters_sql, 1, params);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (sqlstate != NULL && strcmp(sqlstate, "42P01") == 0) {
            /* The loader has not created the table yet: no dead letter can exist. */
            doc = json_pack("{s:[],s:[]}", "by_type", "latest");
        } else if (srv_read_busy(sqlstate)) {
            srv_read_unavailable_why(r, "busy (statement timeout)");
            goto out;
        } else if (PQstatus(c) != CONNECTION_OK) {
            srv_read_unavailable_why(r, PQerrorMessage(c));
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
    srv_read_conn_put(s, rconn, broken);
}

void
srv_get_dead_letters(struct srv *s, struct srv_reply *r)
{
    if (atomic_fetch_add(&s->reads_in_flight, 1) >= srv_read_max(s)) {
        atomic_fetch_sub(&s->reads_in_flight, 1);
        srv_reply_json(r, 503, "too many reads waiting on the database: retry later");
        srv_reply_header(r, "Retry-After", "1");
        return;
    }
    get_dead_letters(s, r);
    atomic_fetch_sub(&s->reads_in_flight, 1);
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

    if (atomic_fetch_add(&s->reads_in_flight, 1) >= srv_read_max(s)) {
        srv_reply_json(r, 503, "too many reads waiting on the database: retry later");
        srv_reply_header(r, "Retry-After", "1");
        goto out;
    }
    rconn = srv_read_conn_get(s, NULL, 0);
    if (rconn == NULL) {
        srv_read_unavailable(r);
        goto out;
    }
    c = rconn->pg;
    res = srv_read_exec(rconn, sql, 0, NULL);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);

        if (sqlstate != NULL && strcmp(sqlstate, "42P01") == 0) {
            /* The loader has not created its tables yet: nothing was filed. */
            o = srv_reply_object(200, NULL);
            json_object_set_new(o, "rows", json_integer(0));
            json_object_set_new(o, "ingest", json_integer(0));
            json_object_set_new(o, "load", json_integer(0));
            srv_reply_set(r, 200, o);
        } else if (srv_read_busy(sqlstate) || PQstatus(c) != CONNECTION_OK) {
            srv_read_unavailable(r);
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
    srv_read_conn_put(s, rconn, broken);
    atomic_fetch_sub(&s->reads_in_flight, 1);
}
