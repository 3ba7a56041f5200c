/*
 * pgconn.h - the one way datapipe opens a PostgreSQL connection, for the loader and the
 * server's read path alike: our defaults (client_encoding UTF8, keepalives, connect
 * timeout) under the operator's conninfo, and the statement that begins each transaction
 * with its settings (search_path, UTC, timeouts), all SET LOCAL: nothing outlives a
 * transaction, so PgBouncer in transaction mode may hand the backend to anyone next. The
 * only file of etc/ that includes libpq-fe.h.
 */
#ifndef DP_PGCONN_H
#define DP_PGCONN_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#define DP_PG_KEEPALIVES_COUNT 3 /* unanswered TCP keepalive probes before giving up */

/* What differs between the callers. */
struct dp_pg_options {
    const char *conninfo;         /* the operator's libpq string; overrides our defaults */
    const char *application_name; /* shown in pg_stat_activity */
    const char *schema;           /* becomes each transaction's search_path */
    int connect_timeout_s;        /* seconds */
    int keepalives_idle_s;        /* seconds idle before the first keepalive probe */
    int keepalives_interval_s;    /* seconds between probes */
    int statement_timeout_ms;     /* milliseconds, 0: none; lock waits then get half of it */
};

/*
 * dp_pg_connect - connect. Our defaults come first and the operator's conninfo (expanded as
 * dbname) after them, so conninfo overrides any of them. Nothing is SET on the session: each
 * transaction begins with dp_pg_begin_sql's statement instead.
 *   out: receives the connection on success (PQfinish it); NULL on failure.
 *   opt: see struct dp_pg_options; strings are only read during the call.
 *   err: receives why on failure, libpq's text on one line (errlen bytes).
 * Returns 0, DP_ERR_RETRY (unreachable, refused, authentication), DP_ERR_NOMEM.
 */
int dp_pg_connect(PGconn **out, const struct dp_pg_options *opt, char *err, size_t errlen);

/*
 * dp_pg_begin_sql - the statements (one PQexec) that begin a transaction with opt's
 * settings, all SET LOCAL: BEGIN [READ ONLY], synchronous_commit raised to on where it is
 * off, search_path opt->schema, TimeZone UTC, and with opt->statement_timeout_ms the
 * statement and lock timeouts. c only quotes the schema name.
 *   out: receives the text (free it); NULL on failure.
 * Returns 0, DP_ERR_NOMEM.
 */
int dp_pg_begin_sql(PGconn *c, const struct dp_pg_options *opt, bool read_only, char **out);

/*
 * dp_pg_read_only - sqlstate (may be NULL) says the server refuses writes: a hot standby,
 * or default_transaction_read_only on.
 */
bool dp_pg_read_only(const char *sqlstate);

/* What the daemons say about a read-only server, before PostgreSQL's own text. */
#define DP_PG_READ_ONLY_TEXT "PostgreSQL is read-only: a standby?"

/*
 * What the daemons say, before "(details in the ... log)", when libpq refused PostgreSQL's TLS
 * certificate (dp_pg_text_names_tls): the operator's fix is there, not in the network.
 */
#define DP_PG_TLS_TEXT                                                                             \
    "PostgreSQL's TLS certificate could not be verified: check sslrootcert and the host name"

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

/*
 * dp_pg_text_names_tls - whether text (libpq's) says the server's TLS certificate could not be
 * verified (sslmode verify-ca or verify-full): no CA of sslrootcert signed it, it names
 * another host than host=, or there is no root certificate file to verify it with. Every such
 * text is also one of dp_pg_text_names_connection's: show DP_PG_TLS_TEXT, log the text.
 */
bool dp_pg_text_names_tls(const char *text);

#endif
