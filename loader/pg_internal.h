/*
 * pg_internal.h - what pg.c, ledger.c, part.c and tables.c, the files of loader/ that call libpq,
 * share: the connection's state and the statement runners that record and classify a failure
 * (pg.c). Every other file of loader/ goes through the ldr_pg_* functions of loader.h.
 */
#ifndef DP_LOADER_PG_INTERNAL_H
#define DP_LOADER_PG_INTERNAL_H

#include <libpq-fe.h>
#include <stdint.h>

#include "events/events.h"
#include "loader/loader.h"

/*
 * The advisory lock key (two int4 form) that serializes DDL: class "data", then 0. Only ever
 * taken for a transaction (pg_advisory_xact_lock): a session lock would stay on a pooled
 * backend after the loader is gone.
 */
#define LDR_LOCK_CLASS 1684108385
#define LDR_LOCK_DDL 0

#define LDR_PART_DAYS_SEEN 4 /* days remembered per partitioned table */

/* One connection of the loader (ldr_pg_connect). */
struct ldr_pg {
    PGconn *conn;
    char *begin_sql; /* begins every transaction: dp_pg_begin_sql */
    int64_t epoch;   /* this loader's lease of the queue (ldr_pg_set_epoch) */
    char instance[QUEUE_INSTANCE_ID_LEN + 1]; /* this queue's instance id */
    char owner[LDR_OWNER_MAX];            /* the owner the last refused check found, "" if none */
    char sqlstate[6];                     /* of the last failure, "" if none */
    char err[LDR_ERR_MAX];                /* the last failure's text */
    const struct dp_retention *retention; /* borrowed; NULL: no table is made partitioned */
    bool parted[EV_REGISTRY_MAX];         /* by registry slot: the table is partitioned (part.c) */
    /* by registry slot, days (since the epoch) whose partition this connection saw exist;
     * only days no retention pass drops yet (part.c, ldr_part_days) */
    int64_t part_days[EV_REGISTRY_MAX][LDR_PART_DAYS_SEEN];
};

/*
 * ldr_pg_query - run sql on pg (with nparams text parameters, none: PQexec) and keep the
 * result if its status is want. No statement runs outside a transaction that began with
 * pg->begin_sql (its settings SET LOCAL; nothing is ever SET on the session, which a pooler
 * in transaction mode hands to other clients): a "BEGIN..." outside a transaction becomes
 * begin_sql followed by the rest of sql; any other statement outside a transaction (but
 * COMMIT, ROLLBACK) runs in a transaction of its own, committed before the call returns.
 *   out: NULL, or receives the result on success; the caller PQclears it.
 * On failure pg->sqlstate and pg->err say why (ldr_pg_error, ldr_pg_sqlstate).
 * Returns 0, DP_ERR_DATA or DP_ERR_RETRY as ldr_pg_classify says, DP_ERR_NOMEM (no result
 * on a good connection).
 */
int ldr_pg_query(struct ldr_pg *pg, const char *sql, int nparams, const char *const *params,
                 ExecStatusType want, PGresult **out);

/*
 * ldr_pg_exec_count - run one statement sql with nparams text parameters, no result wanted,
 * and give how many rows it inserted, updated or deleted (PQcmdTuples) in *rows (rows may be
 * NULL). Returns as ldr_pg_query.
 */
int ldr_pg_exec_count(struct ldr_pg *pg, const char *sql, int nparams, const char *const *params,
                      uint64_t *rows);

#endif
