/*
 * pgconn.c - opening a PostgreSQL connection the same way in both daemons: the libpq
 * keywords datapipe sets, then the session set-up. Statements beyond the set-up belong to
 * the callers (loader/pg.c, server/read.c); this file never decides what a failure means.
 */
#include "etc/pgconn.h"
#include "etc/err.h"

#include <stdio.h>
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

/* SET search_path, TimeZone and the timeouts on c. Returns 0 or a dp_err, why in err. */
static int
pg_session_setup(PGconn *c, const struct dp_pg_options *opt, char *err, size_t errlen)
{
    char *ident = NULL;
    char sql[512];
    int used;
    PGresult *res = NULL;
    int rc = 0;

    ident = PQescapeIdentifier(c, opt->schema, strlen(opt->schema));
    if (ident == NULL) {
        dp_pg_one_line(err, errlen, PQerrorMessage(c));
        rc = DP_ERR_RETRY;
        goto out;
    }
    used = snprintf(sql, sizeof(sql), "SET search_path TO %s; SET TimeZone TO 'UTC'", ident);
    if (opt->statement_timeout_ms > 0 && used > 0 && (size_t)used < sizeof(sql)) {
        snprintf(sql + used, sizeof(sql) - (size_t)used,
                 "; SET statement_timeout = %d; SET lock_timeout = %d",
                 opt->statement_timeout_ms, opt->statement_timeout_ms / 2);
    }
    res = PQexec(c, sql);
    if (res == NULL && PQstatus(c) == CONNECTION_OK) {
        rc = DP_ERR_NOMEM;
        goto out;
    }
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        const char *msg = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
        dp_pg_one_line(err, errlen, msg != NULL ? msg : PQerrorMessage(c));
        rc = DP_ERR_RETRY;
    }
out:
    PQclear(res);
    PQfreemem(ident);
    return rc;
}

int
dp_pg_connect(PGconn **out, const struct dp_pg_options *opt, char *err, size_t errlen)
{
    static const char *const keys[] = {"connect_timeout", "application_name", "client_encoding",
                                       "keepalives", "keepalives_idle", "keepalives_interval",
                                       "keepalives_count", "dbname", NULL};
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
    rc = pg_session_setup(c, opt, err, errlen);
    if (rc != 0) {
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
        "connection to server", "could not connect", "could not translate host",
        "server closed the connection", "no connection to the server", "timeout expired",
        "authentication failed", "pg_hba.conf", "SSL", "could not receive data",
        "could not send data", "terminating connection", "Connection refused",
        "role \"", "database \"", "too many clients", "the database system is",
        "connection", "socket",
    };

    for (size_t i = 0; text != NULL && i < sizeof(marks) / sizeof(marks[0]); i++) {
        if (strstr(text, marks[i]) != NULL) {
            return true;
        }
    }
    return false;
}
