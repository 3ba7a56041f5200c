/*
 * pgconn.h - the one way datapipe opens a PostgreSQL connection, for the loader and the
 * server's read path alike: our defaults (client_encoding UTF8, keepalives, connect
 * timeout) under the operator's conninfo, then the session set-up (search_path, UTC,
 * statement and lock timeouts). The only file of etc/ that includes libpq-fe.h.
 */
#ifndef DP_PGCONN_H
#define DP_PGCONN_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#define DP_PG_KEEPALIVES_COUNT 3        /* unanswered TCP keepalive probes before giving up */

/* What differs between the callers. */
struct dp_pg_options {
    const char *conninfo;           /* the operator's libpq string; overrides our defaults */
    const char *application_name;   /* shown in pg_stat_activity */
    const char *schema;             /* becomes the search_path */
    int connect_timeout_s;          /* seconds */
    int keepalives_idle_s;          /* seconds idle before the first keepalive probe */
    int keepalives_interval_s;      /* seconds between probes */
    int statement_timeout_ms;       /* milliseconds, 0: none; lock waits then get half of it */
};

/*
 * dp_pg_connect - connect and set the session up. Our defaults come first and the
 * operator's conninfo (expanded as dbname) after them, so conninfo overrides any of them;
 * the session settings are SET after connecting and so always hold.
 *   out: receives the connection on success (PQfinish it); NULL on failure.
 *   opt: see struct dp_pg_options; strings are only read during the call.
 *   err: receives why on failure, libpq's or PostgreSQL's text on one line (errlen bytes).
 * Returns 0, DP_ERR_RETRY (unreachable, refused, authentication, or the session set-up
 * failed), DP_ERR_NOMEM.
 */
int dp_pg_connect(PGconn **out, const struct dp_pg_options *opt, char *err, size_t errlen);

/*
 * dp_pg_one_line - copy libpq's or PostgreSQL's text into dst (cap bytes, NUL-terminated)
 * as one log-friendly line: newlines and tabs become spaces, trailing blanks go.
 * text may be NULL (gives "").
 */
void dp_pg_one_line(char *dst, size_t cap, const char *text);

/*
 * dp_pg_text_names_connection - whether text (libpq's or PostgreSQL's) is one of the texts of
 * a failed or lost connection, which name hosts, addresses, ports, socket paths, users and
 * databases: log such a text, never show it to a client or an open endpoint.
 */
bool dp_pg_text_names_connection(const char *text);

#endif
