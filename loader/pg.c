/*
 * pg.c - the loader's PostgreSQL side: connections, the fence, COPY, the watermark, and the
 * statement helpers; the tables are tables.c's, loader_batches and queue_owners ledger.c's.
 * With ledger.c, part.c and tables.c the only file of loader/ that calls libpq. Every failure is
 * translated here: the rows' own fault (SQLSTATE class 22, 23, 54) becomes DP_ERR_DATA, anything
 * else DP_ERR_RETRY. It never decides what to do about a failure; loader.c does.
 */
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etc/err.h"
#include "etc/log.h"
#include "etc/pgconn.h"
#include "events/events.h"
#include "loader/loader.h"
#include "loader/pg_internal.h"

#define LDR_COPY_CHUNK (1u << 20) /* bytes handed to PQputCopyData at a time */

int
ldr_pg_classify(const char *sqlstate, bool conn_ok)
{
    if (!conn_ok || sqlstate == NULL || strlen(sqlstate) != 5) {
        return DP_ERR_RETRY;
    }
    if (strncmp(sqlstate, "22", 2) == 0 || strncmp(sqlstate, "23", 2) == 0 ||
        strncmp(sqlstate, "54", 2) == 0) {
        return DP_ERR_DATA;
    }
    return DP_ERR_RETRY;
}

/* Record why res (may be NULL) failed and classify it. */
static int
pg_fail(struct ldr_pg *pg, const PGresult *res)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    bool conn_ok = PQstatus(pg->conn) == CONNECTION_OK;

    snprintf(pg->sqlstate, sizeof(pg->sqlstate), "%s", state != NULL ? state : "");
    dp_pg_one_line(pg->err, sizeof(pg->err), msg != NULL ? msg : PQerrorMessage(pg->conn));
    if (pg->err[0] == '\0') {
        snprintf(pg->err, sizeof(pg->err), "%s", conn_ok ? "unknown error" : "connection lost");
    }
    if (dp_pg_read_only(state)) {
        char text[LDR_ERR_MAX];

        snprintf(text, sizeof(text), "%s", pg->err);
        snprintf(pg->err, sizeof(pg->err), DP_PG_READ_ONLY_TEXT " (%.*s)",
                 (int)sizeof(pg->err) - 48, text);
    }
    return ldr_pg_classify(state, conn_ok);
}

/* sql begins with the command word (then its end, a blank or a semicolon). */
static bool
pg_starts(const char *sql, const char *word)
{
    size_t n = strlen(word);

    return strncmp(sql, word, n) == 0 && (sql[n] == '\0' || sql[n] == ';' || sql[n] == ' ');
}

/* Begin a transaction with the loader's settings, all SET LOCAL. */
static int
pg_begin(struct ldr_pg *pg)
{
    PGresult *res = PQexec(pg->conn, pg->begin_sql);
    int rc = 0;

    if (res == NULL) {
        rc = PQstatus(pg->conn) == CONNECTION_OK ? DP_ERR_NOMEM : pg_fail(pg, NULL);
    } else if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        rc = pg_fail(pg, res);
        PQclear(PQexec(pg->conn, "ROLLBACK"));
    }
    PQclear(res);
    /* Beginning never fails for the rows' sake. */
    return rc == 0 || rc == DP_ERR_NOMEM ? rc : DP_ERR_RETRY;
}

int
ldr_pg_query(struct ldr_pg *pg, const char *sql, int nparams, const char *const *params,
             ExecStatusType want, PGresult **out)
{
    PGresult *res;
    bool own = false;
    int rc = 0;

    if (PQtransactionStatus(pg->conn) == PQTRANS_IDLE && pg_starts(sql, "BEGIN")) {
        rc = pg_begin(pg);
        for (sql += strlen("BEGIN"); rc == 0 && (*sql == ';' || *sql == ' '); sql++) {
        }
        if (rc != 0 || *sql == '\0') {
            return rc;
        }
    } else if (PQtransactionStatus(pg->conn) == PQTRANS_IDLE && !pg_starts(sql, "COMMIT") &&
               !pg_starts(sql, "ROLLBACK")) {
        rc = pg_begin(pg);
        if (rc != 0) {
            return rc;
        }
        own = true;
    }
    if (nparams > 0) {
        res = PQexecParams(pg->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    } else {
        res = PQexec(pg->conn, sql);
    }
    if (res == NULL) {
        rc = PQstatus(pg->conn) == CONNECTION_OK ? DP_ERR_NOMEM : pg_fail(pg, NULL);
        goto out;
    }
    if (PQresultStatus(res) != want) {
        rc = pg_fail(pg, res);
        goto out;
    }
    if (own) {
        /* The statement's own transaction: its answer holds once this COMMIT returned. */
        PGresult *end = PQexec(pg->conn, "COMMIT");

        if (end == NULL || PQresultStatus(end) != PGRES_COMMAND_OK) {
            rc = end == NULL && PQstatus(pg->conn) == CONNECTION_OK ? DP_ERR_NOMEM
                                                                    : pg_fail(pg, end);
        }
        PQclear(end);
        own = false;
        if (rc != 0) {
            goto out;
        }
    }
    if (out != NULL) {
        *out = res;
        res = NULL;
    }
out:
    if (own) {
        PQclear(PQexec(pg->conn, "ROLLBACK"));
    }
    PQclear(res);
    return rc;
}

int
ldr_pg_exec(struct ldr_pg *pg, const char *sql)
{
    return ldr_pg_query(pg, sql, 0, NULL, PGRES_COMMAND_OK, NULL);
}

int
ldr_pg_exec_count(struct ldr_pg *pg, const char *sql, int nparams, const char *const *params,
                  uint64_t *rows)
{
    PGresult *res = NULL;
    int rc;

    rc = ldr_pg_query(pg, sql, nparams, params, PGRES_COMMAND_OK, &res);
    if (rc == 0 && rows != NULL) {
        *rows = strtoull(PQcmdTuples(res), NULL, 10);
    }
    PQclear(res);
    return rc;
}

int
ldr_pg_exec_rows(struct ldr_pg *pg, const char *sql, uint64_t *rows)
{
    return ldr_pg_exec_count(pg, sql, 0, NULL, rows);
}

const char *
ldr_pg_error(const struct ldr_pg *pg)
{
    return pg->err;
}

const char *
ldr_pg_sqlstate(const struct ldr_pg *pg)
{
    return pg->sqlstate;
}

/* Notices ("relation already exists, skipping") are of no interest beyond debugging. */
static void
pg_notice(void *arg, const char *message)
{
    char line[LDR_ERR_MAX];

    (void)arg;
    dp_pg_one_line(line, sizeof(line), message);
    dp_debug("postgresql notice", "text=%s", line);
}

int
ldr_pg_conninfo_check(const char *conninfo, char *err, size_t errlen)
{
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &msg);

    if (opts == NULL) {
        dp_pg_one_line(err, errlen, msg != NULL ? msg : "out of memory");
        PQfreemem(msg);
        return DP_ERR_INVALID;
    }
    PQconninfoFree(opts);
    return 0;
}

/*
 * Refuse a read-only server at once, with the reason an operator needs: the first write
 * would fail anyway, with a message that does not say why.
 */
static int
pg_check_writable(struct ldr_pg *pg, char *err, size_t errlen)
{
    PGresult *res = NULL;
    int rc;

    rc = ldr_pg_query(pg,
                      "SELECT current_setting('transaction_read_only'), "
                      "pg_is_in_recovery()",
                      0, NULL, PGRES_TUPLES_OK, &res);
    if (rc == 0 &&
        (strcmp(PQgetvalue(res, 0, 0), "on") == 0 || strcmp(PQgetvalue(res, 0, 1), "t") == 0)) {
        pg->sqlstate[0] = '\0';
        snprintf(pg->err, sizeof(pg->err), DP_PG_READ_ONLY_TEXT " (%s)",
                 strcmp(PQgetvalue(res, 0, 1), "t") == 0 ? "pg_is_in_recovery() is true"
                                                         : "transaction_read_only is on");
        rc = DP_ERR_RETRY;
    }
    if (rc != 0) {
        snprintf(err, errlen, "%s", pg->err);
    }
    PQclear(res);
    return rc == DP_ERR_NOMEM ? rc : rc != 0 ? DP_ERR_RETRY : 0;
}

int
ldr_pg_connect(struct ldr_pg **out, const char *conninfo, const char *schema, const char *queue_id,
               const char *instance_id, char *err, size_t errlen)
{
    /* TCP keepalives: a peer that vanished mid-COPY fails the connection within about a
     * minute instead of hanging the run (the back-off then retries the batch). */
    struct dp_pg_options opt = {
        .conninfo = conninfo,
        .application_name = "datapipe-loader",
        .schema = schema,
        .connect_timeout_s = 10,
        .keepalives_idle_s = 30,
        .keepalives_interval_s = 10,
    };
    struct ldr_pg *pg = NULL;
    int rc;

    (void)queue_id;
    *out = NULL;
    pg = calloc(1, sizeof(*pg));
    if (pg == NULL) {
        rc = DP_ERR_NOMEM;
        goto out;
    }
    snprintf(pg->instance, sizeof(pg->instance), "%s", instance_id);
    rc = dp_pg_connect(&pg->conn, &opt, err, errlen);
    if (rc != 0) {
        goto out;
    }
    PQsetNoticeProcessor(pg->conn, pg_notice, NULL);
    /*
     * Nothing is set on the session (no SET, no session advisory lock, no prepared
     * statement): behind PgBouncer in transaction mode the backend serves other clients
     * between our transactions. Each transaction begins with its settings instead.
     */
    rc = dp_pg_begin_sql(pg->conn, &opt, false, &pg->begin_sql);
    if (rc == 0) {
        rc = pg_check_writable(pg, err, errlen);
    }
    if (rc != 0) {
        goto out;
    }
    *out = pg;
    pg = NULL;
out:
    ldr_pg_close(pg);
    return rc;
}

void
ldr_pg_set_epoch(struct ldr_pg *pg, int64_t epoch)
{
    pg->epoch = epoch;
}

void
ldr_pg_close(struct ldr_pg *pg)
{
    if (pg == NULL) {
        return;
    }
    PQfinish(pg->conn);
    free(pg->begin_sql);
    free(pg);
}

int
ldr_pg_copy(struct ldr_pg *pg, const char *table, const char *columns, const char *data, size_t len,
            bool binary)
{
    /* The binary format's signature, flags and header extension length; its trailer. */
    static const char header[19] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";
    static const char trailer[2] = "\377\377";
    PGresult *res = NULL;
    char *sql = NULL;
    bool sent = true;
    int rc;

    /* A declared type's column list may be long: no fixed buffer. */
    if (asprintf(&sql, "COPY %s %s FROM STDIN%s", table, columns,
                 binary ? " (FORMAT binary)" : "") < 0) {
        return DP_ERR_NOMEM;
    }
    rc = ldr_pg_query(pg, sql, 0, NULL, PGRES_COPY_IN, NULL);
    free(sql);
    if (rc != 0) {
        return rc;
    }
    if (binary) {
        sent = PQputCopyData(pg->conn, header, (int)sizeof(header)) == 1;
    }
    for (size_t off = 0; off < len && sent; off += LDR_COPY_CHUNK) {
        size_t n = len - off < LDR_COPY_CHUNK ? len - off : LDR_COPY_CHUNK;
        sent = PQputCopyData(pg->conn, data + off, (int)n) == 1;
    }
    if (sent && binary) {
        sent = PQputCopyData(pg->conn, trailer, (int)sizeof(trailer)) == 1;
    }
    if (sent) {
        sent = PQputCopyEnd(pg->conn, NULL) == 1;
    }
    /* The server's verdict, also after a failed send: it may hold the real reason. */
    res = PQgetResult(pg->conn);
    if (res != NULL && PQresultStatus(res) == PGRES_COMMAND_OK && sent) {
        rc = 0;
    } else if (res != NULL && PQresultStatus(res) == PGRES_COPY_IN) {
        /* Still in COPY after a failed send: the connection cannot be used again. */
        pg_fail(pg, NULL);
        rc = DP_ERR_RETRY;
    } else {
        rc = pg_fail(pg, res);
    }
    while (res != NULL && PQresultStatus(res) != PGRES_COPY_IN) {
        PQclear(res);
        res = PQgetResult(pg->conn);
    }
    PQclear(res);
    return rc;
}

int
ldr_pg_watermark(struct ldr_pg *pg, const char *queue_id, int64_t us)
{
    char us_s[24];
    const char *params[] = {queue_id, us_s};
    int rc;

    snprintf(us_s, sizeof(us_s), "%" PRId64, us);
    rc = ldr_pg_query(pg,
                      "INSERT INTO queue_watermarks AS w (queue_id, loaded_through) "
                      "VALUES ($1, 'epoch'::timestamptz + $2::bigint * interval '1 microsecond') "
                      "ON CONFLICT (queue_id) DO UPDATE "
                      "SET loaded_through = GREATEST(w.loaded_through, EXCLUDED.loaded_through)",
                      2, params, PGRES_COMMAND_OK, NULL);
    return rc == 0 || rc == DP_ERR_NOMEM ? rc : DP_ERR_RETRY;
}

int
ldr_pg_exec_params(struct ldr_pg *pg, const char *sql, int nparams, const char *const *params)
{
    return ldr_pg_query(pg, sql, nparams, params, PGRES_COMMAND_OK, NULL);
}

int
ldr_pg_rows(struct ldr_pg *pg, const char *sql, int nparams, const char *const *params,
            ldr_pg_row_fn fn, void *arg)
{
    PGresult *res = NULL;
    const char *vals[LDR_ROW_COLS_MAX];
    int rc;

    rc = ldr_pg_query(pg, sql, nparams, params, PGRES_TUPLES_OK, &res);
    if (rc == 0 && PQnfields(res) > LDR_ROW_COLS_MAX) {
        rc = DP_ERR_INVALID;
    }
    for (int i = 0; rc == 0 && i < PQntuples(res); i++) {
        for (int j = 0; j < PQnfields(res); j++) {
            vals[j] = PQgetisnull(res, i, j) ? NULL : PQgetvalue(res, i, j);
        }
        rc = fn(arg, PQnfields(res), vals);
    }
    PQclear(res);
    return rc;
}
