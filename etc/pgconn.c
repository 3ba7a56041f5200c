/*
 * pgconn.c - opening a PostgreSQL connection the same way in both daemons (the libpq
 * keywords datapipe sets) and the one way they begin a transaction (its settings, SET LOCAL).
 * It never sets anything on the session: behind a pooler in transaction mode the backend
 * serves other clients next. Statements belong to the callers (loader/pg.c, server/readpool.c);
 * this file never decides what a failure means.
 */
#include "etc/pgconn.h"
#include "etc/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
dp_pg_one_line(char *dst, size_t cap, const char *text)
{
    size_t n = 0;

    for (; text != NULL && *text != '\0' && n + 1 < cap; text++) {
        char ch = (*text == '\n' || *text == '\r' || *text == '\t') ? ' ' : *text;

        /* libpq ends a line where a sentence ends: "refused\n\tIs the server": one space. */
        if (ch != ' ' || (n > 0 && dst[n - 1] != ' ')) {
            dst[n++] = ch;
        }
    }
    while (n > 0 && dst[n - 1] == ' ') {
        n--;
    }
    dst[n] = '\0';
}

int
dp_pg_begin_sql(PGconn *c, const struct dp_pg_options *opt, bool read_only, char **out)
{
    char *ident = NULL;
    char *sql = NULL;
    char timeouts[96] = "";
    int rc = 0;

    *out = NULL;
    ident = PQescapeIdentifier(c, opt->schema, strlen(opt->schema));
    if (ident == NULL) {
        rc = DP_ERR_NOMEM;
        goto out;
    }
    if (opt->statement_timeout_ms > 0) {
        snprintf(timeouts, sizeof(timeouts),
                 "; SET LOCAL statement_timeout = %d; "
                 "SET LOCAL lock_timeout = %d",
                 opt->statement_timeout_ms, opt->statement_timeout_ms / 2);
    }
    /*
     * SET LOCAL: the settings end with the transaction, so a pooled backend handed to
     * another client afterwards carries none of them. synchronous_commit is only ever
     * raised: with it off a COMMIT may report success before its WAL is written, and the
     * loader deletes a batch from the queue once its COMMIT returned. Stricter settings
     * (remote_apply, ...) are kept.
     */
    if (asprintf(&sql,
                 "BEGIN%s; SELECT set_config('synchronous_commit', 'on', true) "
                 "WHERE current_setting('synchronous_commit') = 'off'; "
                 "SET LOCAL search_path TO %s; SET LOCAL TimeZone TO 'UTC'%s",
                 read_only ? " READ ONLY" : "", ident, timeouts) < 0) {
        sql = NULL;
        rc = DP_ERR_NOMEM;
        goto out;
    }
    *out = sql;
out:
    PQfreemem(ident);
    return rc;
}

bool
dp_pg_read_only(const char *sqlstate)
{
    /* read_only_sql_transaction: a hot standby, or default_transaction_read_only on. */
    return sqlstate != NULL && strcmp(sqlstate, "25006") == 0;
}

int
dp_pg_connect(PGconn **out, const struct dp_pg_options *opt, char *err, size_t errlen)
{
    static const char *const keys[] = {
        "connect_timeout",  "application_name", "client_encoding",
        "keepalives",       "keepalives_idle",  "keepalives_interval",
        "keepalives_count", "dbname",           NULL};
    char connect_s[16];
    char idle_s[16];
    char interval_s[16];
    char count[16];
    const char *values[9];
    PGconn *c = NULL;
    int rc = 0;

    *out = NULL;
    snprintf(connect_s, sizeof(connect_s), "%d", opt->connect_timeout_s);
    snprintf(idle_s, sizeof(idle_s), "%d", opt->keepalives_idle_s);
    snprintf(interval_s, sizeof(interval_s), "%d", opt->keepalives_interval_s);
    snprintf(count, sizeof(count), "%d", DP_PG_KEEPALIVES_COUNT);
    values[0] = connect_s;
    values[1] = opt->application_name;
    values[2] = "UTF8";
    values[3] = "1";
    values[4] = idle_s;
    values[5] = interval_s;
    values[6] = count;
    values[7] = opt->conninfo;
    values[8] = NULL;
    c = PQconnectdbParams(keys, values, 1);
    if (c == NULL) {
        rc = DP_ERR_NOMEM;
        goto out;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        dp_pg_one_line(err, errlen, PQerrorMessage(c));
        rc = DP_ERR_RETRY;
        goto out;
    }
    *out = c;
    c = NULL;
out:
    PQfinish(c);
    return rc;
}

bool
dp_pg_text_names_connection(const char *text)
{
    static const char *const marks[] = {
        "connection to server",
        "could not connect",
        "could not translate host",
        "server closed the connection",
        "no connection to the server",
        "timeout expired",
        "authentication failed",
        "pg_hba.conf",
        "SSL",
        "could not receive data",
        "could not send data",
        "terminating connection",
        "Connection refused",
        "role \"",
        "database \"",
        "too many clients",
        "the database system is",
        "connection",
        "socket",
    };

    for (size_t i = 0; text != NULL && i < sizeof(marks) / sizeof(marks[0]); i++) {
        if (strstr(text, marks[i]) != NULL) {
            return true;
        }
    }
    return false;
}

bool
dp_pg_text_names_tls(const char *text)
{
    /* libpq's texts (fe-secure-openssl.c) for a certificate it would not trust. A TLS
     * session lost midway ("SSL SYSCALL error") is a lost connection, not one of these. */
    static const char *const marks[] = {
        "certificate verify failed",   /* no CA of sslrootcert signed it, or it expired */
        "server certificate",          /* "server certificate for "x" does not match host name" */
        "SSL certificate's",           /* its name or address entry missing */
        "root certificate file",       /* sslrootcert (or ~/.postgresql/root.crt) missing */
        "certificate revocation list", /* sslcrl unreadable */
    };

    for (size_t i = 0; text != NULL && i < sizeof(marks) / sizeof(marks[0]); i++) {
        if (strstr(text, marks[i]) != NULL) {
            return true;
        }
    }
    return false;
}
