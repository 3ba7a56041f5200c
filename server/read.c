/*
 * read.c - GET /v1/events/{type}/{id} and GET /product/{id}: one stored row, which
 * PostgreSQL builds as JSON, on a connection of the read pool (readpool.c). An id that
 * cannot exist is answered before any query; a table the loader has not created yet is a
 * 404; the database down is a 503, never a hang.
 */
#include "etc/err.h"
#include "etc/log.h"
#include "server/read_internal.h"
#include "server/srv.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

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

static void get_event(struct srv *s, const struct ev_type *t, const char *id, struct srv_reply *r);

void
srv_get_event(struct srv *s, const struct ev_type *t, const char *id, struct srv_reply *r)
{
    if (!id_ok(t, id, r)) {
        return;
    }
    /* At most half the worker threads may wait on PostgreSQL, so a slow or
     * unreachable database never starves the write path. */
    if (atomic_fetch_add(&s->reads_in_flight, 1) >= srv_read_max(s)) {
        atomic_fetch_sub(&s->reads_in_flight, 1);
        srv_reply_json(r, 503, "too many reads waiting on the database: retry later");
        srv_reply_header(r, "Retry-After", "1");
        return;
    }
    get_event(s, t, id, r);
    atomic_fetch_sub(&s->reads_in_flight, 1);
}

static void
get_event(struct srv *s, const struct ev_type *t, const char *id, struct srv_reply *r)
{
    struct read_conn *rc;
    PGconn *c;
    PGresult *res = NULL;
    const char *sqlstate;

    rc = srv_read_conn_get(s, NULL, 0);
    if (rc == NULL) {
        srv_read_unavailable(r);
        return;
    }
    c = rc->pg;
    res = srv_read_exec(rc, t->get_sql, 1, &id);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (sqlstate != NULL && strcmp(sqlstate, "42P01") == 0) {
            /* The loader has not created the table yet, so nothing is loaded. */
            srv_reply_json(r, 404, "not found (not loaded yet)");
        } else if (srv_read_busy(sqlstate) || PQstatus(c) != CONNECTION_OK) {
            srv_read_unavailable(r);
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
    srv_read_conn_put(s, rc, false);
}
