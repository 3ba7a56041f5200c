/*
 * readtrail.c - the database half of an event's trail (GET /v1/events/{id}, trail.c): is the
 * id a dead letter, or loaded into one of the append tables, and when. dead_letter is asked
 * first, so an event a replay is moving is seen on one side or the other. On a connection of
 * the read pool (readpool.c); never a hang.
 */
#include "etc/err.h"
#include "etc/log.h"
#include "server/read_internal.h"
#include "server/srv.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

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
    PGresult *res = srv_read_exec(rconn, sql, 1, &id);
    const char *sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    json_t *row = NULL;
    int rc = 0;

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (sqlstate != NULL &&
            (strcmp(sqlstate, "42P01") == 0 || strcmp(sqlstate, "42703") == 0)) {
            rc = DP_ERR_NOTFOUND;
        } else if (srv_read_busy(sqlstate) || PQstatus(c) != CONNECTION_OK) {
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
    struct read_conn *rconn = srv_read_conn_get(s, NULL, 0);
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
    srv_read_conn_put(s, rconn, rc == DP_ERR_RETRY || rc == DP_ERR_IO);
    return rc;
}

int
srv_read_trail(struct srv *s, const char *id, json_t *o)
{
    int rc;

    if (atomic_fetch_add(&s->reads_in_flight, 1) >= srv_read_max(s)) {
        atomic_fetch_sub(&s->reads_in_flight, 1);
        return DP_ERR_BUSY;
    }
    rc = trail_lookup(s, id, o);
    atomic_fetch_sub(&s->reads_in_flight, 1);
    return rc;
}
