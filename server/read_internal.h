/*
 * read_internal.h - what the server's read path shares (readpool.c, read.c, readdead.c,
 * readtrail.c): a pooled libpq connection and the helpers around it. Only these files and
 * etc/pgconn.h include libpq-fe.h in the server; every other file goes through srv.h.
 */
#ifndef DP_SERVER_READ_INTERNAL_H
#define DP_SERVER_READ_INTERNAL_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct srv;
struct srv_reply;

/* One pooled connection. */
struct read_conn {
    PGconn *pg;
    char *begin_sql; /* begins each query's transaction (dp_pg_begin_sql) */
    int64_t used_ms; /* monotonic ms when it was last given back */
};

/*
 * srv_read_conn_get - borrow a connection: an idle one, else a new one while the pool has
 * room, else wait (at most 2 s) for one given back. NULL when the database is unreachable or
 * none came in time (then why, when not NULL, says which, in why_len bytes).
 */
struct read_conn *srv_read_conn_get(struct srv *s, char *why, size_t why_len);

/* srv_read_conn_put - give rc back (NULL-safe); a broken one (or broken) is closed instead. */
void srv_read_conn_put(struct srv *s, struct read_conn *rc, bool broken);

/*
 * srv_read_exec - run sql (nparams text parameters; none: the simple protocol) in a read-only
 * transaction of its own that begins with rc's settings. Returns its result, or the first
 * failure's (NULL on a lost connection or no memory, which PQresultStatus reads as fatal);
 * the caller PQclears it.
 */
PGresult *srv_read_exec(struct read_conn *rc, const char *sql, int nparams,
                        const char *const *params);

/* srv_read_busy - statement_timeout (57014) or lock_timeout (55P03): busy, not broken. */
bool srv_read_busy(const char *sqlstate);

/* srv_read_unavailable - r is 503 "database unavailable: retry later", Retry-After 5. */
void srv_read_unavailable(struct srv_reply *r);

/*
 * srv_read_unavailable_why - a 503 that says why, for the status page; a libpq text naming
 * the connection (host, port, socket, user) is logged and answered in general words.
 */
void srv_read_unavailable_why(struct srv_reply *r, const char *why);

/* srv_read_max - reads that may wait on PostgreSQL at once: half the worker threads. */
int srv_read_max(const struct srv *s);

#endif
