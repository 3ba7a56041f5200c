/*
 * ledger.c - the loader's exactly-once bookkeeping in PostgreSQL: loader_batches (which queue
 * ranges committed) and queue_owners (which queue instance owns a queue.id; checked in every
 * transaction that reads or writes loader_batches for the queue), and --adopt-queue's moves of
 * loader_batches rows, and the lease that fences an earlier loader of the same queue.
 * Statements only: what to do about an owner is identity.c's. Holds no session state: no
 * advisory lock, no SET; every check is in the transaction it guards.
 *
 * The lease, and why it fences without a session lock or pg_terminate_backend: a loader
 * that starts bumps queue_owners.epoch in a transaction of its own (ldr_pg_lease_take) and
 * loads only while the row still shows that epoch: every batch's transaction, and the
 * recovery's read of loader_batches, first reads the row FOR SHARE and checks the epoch
 * (pg_owner_hold). The bump's UPDATE needs the row lock that every FOR SHARE holder blocks,
 * so it waits until each batch transaction of an earlier loader has ended (committed or
 * rolled back: when a killed loader's connection closes, directly or through PgBouncer,
 * PostgreSQL rolls its transaction back). Any batch transaction that starts after the bump
 * committed reads the new epoch and fails before it writes. So once the bump committed, no
 * transaction of an earlier loader can still commit a batch, and loader_batches as read
 * next is complete: a zombie's late COMMIT cannot make a range load twice. The holder
 * (host, pid) and holder_since are for the operator: a loader that waits on the row names
 * them. No expiry: one loader per queue is the queue's own lock (LMDB), so a newer holder
 * always wins, and the old one, should it still run, is refused by its next batch.
 */
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "etc/err.h"
#include "loader/loader.h"
#include "loader/pg_internal.h"

/*
 * In a statement on loader_batches: this queue (instance id $3) owns queue_id $1, in the
 * statement's own snapshot.
 */
#define LDR_OWNED_BY_THIS_QUEUE                                                                    \
    "EXISTS (SELECT 1 FROM queue_owners WHERE queue_id = $1 AND instance_id = $3)"

/* ---- queue_owners ---------------------------------------------------------------------- */

/*
 * Run the query sql (nparams text parameters) for one value: the first column of its first row
 * into out (len bytes; "" when there is no row). Returns 0, DP_ERR_NOTFOUND (no row),
 * DP_ERR_RETRY, DP_ERR_NOMEM.
 */
static int
ledger_value(struct ldr_pg *pg, const char *sql, int nparams, const char *const *params, char *out,
             size_t len)
{
    PGresult *res = NULL;
    int rc;

    out[0] = '\0';
    rc = ldr_pg_query(pg, sql, nparams, params, PGRES_TUPLES_OK, &res);
    if (rc != 0) {
        rc = rc == DP_ERR_NOMEM ? rc : DP_ERR_RETRY;
        goto out;
    }
    if (PQntuples(res) == 0) {
        rc = DP_ERR_NOTFOUND;
        goto out;
    }
    snprintf(out, len, "%s", PQgetvalue(res, 0, 0));
out:
    PQclear(res);
    return rc;
}

/* Read the owner of queue_id into owner ("" and DP_ERR_NOTFOUND if none). */
static int
pg_owner_read(struct ldr_pg *pg, const char *queue_id, char *owner, size_t len)
{
    const char *params[] = {queue_id};

    return ledger_value(pg, "SELECT instance_id FROM queue_owners WHERE queue_id = $1", 1, params,
                        owner, len);
}

int
ldr_pg_owned_elsewhere(struct ldr_pg *pg, const char *queue_id, char *other, size_t len)
{
    const char *params[] = {pg->instance, queue_id};

    return ledger_value(pg,
                        "SELECT queue_id FROM queue_owners WHERE instance_id = $1 "
                        "AND queue_id <> $2 ORDER BY queue_id LIMIT 1",
                        2, params, other, len);
}

/* The lease's holder, since and epoch as one phrase ("host h pid 1 since ... (epoch 3)"). */
#define LEASE_HOLDER_SQL                                                                           \
    "coalesce(holder, 'no loader yet') || coalesce(' since ' || to_char(holder_since AT TIME "     \
    "ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '') || ' (epoch ' || epoch || ')'"

/*
 * Inside a transaction: hold the owner row of queue_id (FOR SHARE: an --adopt-queue or a
 * newer loader's lease waits until this transaction ends, and one that committed first is
 * seen) and check that this queue is the owner and this loader still holds the lease
 * (pg->epoch). Returns 0, DP_ERR_CONFIG (another owner or none, or a newer loader holds the
 * lease: pg->owner, pg->err say which), DP_ERR_RETRY, DP_ERR_NOMEM.
 */
static int
pg_owner_hold(struct ldr_pg *pg, const char *queue_id)
{
    const char *params[] = {queue_id};
    PGresult *res = NULL;
    int rc;

    pg->owner[0] = '\0';
    rc = ldr_pg_query(pg,
                      "SELECT instance_id, epoch, " LEASE_HOLDER_SQL " FROM queue_owners "
                      "WHERE queue_id = $1 FOR SHARE",
                      1, params, PGRES_TUPLES_OK, &res);
    if (rc != 0) {
        return rc == DP_ERR_NOMEM ? rc : DP_ERR_RETRY;
    }
    if (PQntuples(res) > 0) {
        snprintf(pg->owner, sizeof(pg->owner), "%s", PQgetvalue(res, 0, 0));
    }
    if (PQntuples(res) > 0 && strcmp(pg->owner, pg->instance) == 0 &&
        strtoll(PQgetvalue(res, 0, 1), NULL, 10) != pg->epoch) {
        pg->sqlstate[0] = '\0';
        snprintf(pg->err, sizeof(pg->err),
                 "fenced: a newer loader of queue.id %s holds its "
                 "lease: %s; this loader (epoch %" PRId64 ") loads nothing more",
                 queue_id, PQgetvalue(res, 0, 2), pg->epoch);
        PQclear(res);
        pg->owner[0] = '\0';
        return DP_ERR_CONFIG;
    }
    PQclear(res);
    if (pg->owner[0] != '\0' && strcmp(pg->owner, pg->instance) == 0) {
        pg->owner[0] = '\0';
        return 0;
    }
    pg->sqlstate[0] = '\0';
    snprintf(pg->err, sizeof(pg->err),
             "queue.id %s is owned by queue instance %s, not by this "
             "queue (instance %s)",
             queue_id, pg->owner[0] != '\0' ? pg->owner : "(none)", pg->instance);
    return DP_ERR_CONFIG;
}

const char *
ldr_pg_owner_seen(const struct ldr_pg *pg)
{
    return pg->owner;
}

int
ldr_pg_owner(struct ldr_pg *pg, const char *queue_id, char *owner, size_t len)
{
    return pg_owner_read(pg, queue_id, owner, len);
}

/* The statements of ldr_pg_lease_take inside its transaction: 0 or a dp_err. */
static int
pg_lease_bump(struct ldr_pg *pg, const char *queue_id, const char *holder, int64_t *epoch)
{
    const char *params[] = {queue_id, holder};
    PGresult *res = NULL;
    int rc;

    /* Waits for every transaction of an earlier loader that holds the row (see above). */
    rc = pg_owner_hold(pg, queue_id);
    if (rc == DP_ERR_CONFIG && pg->owner[0] == '\0' && strncmp(pg->err, "fenced", 6) == 0) {
        rc = 0; /* the epoch is not ours yet: that is the point */
    }
    if (rc != 0) {
        return rc;
    }
    rc = ldr_pg_query(pg,
                      "UPDATE queue_owners SET epoch = epoch + 1, holder = $2, "
                      "holder_since = now() WHERE queue_id = $1 RETURNING epoch",
                      2, params, PGRES_TUPLES_OK, &res);
    if (rc == 0 && PQntuples(res) == 1) {
        *epoch = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    } else if (rc == 0) {
        rc = DP_ERR_RETRY;
    }
    PQclear(res);
    return rc;
}

/* Why the lease could not be taken in time: who holds it, into pg->err. */
static void
pg_lease_busy(struct ldr_pg *pg, const char *queue_id)
{
    const char *params[] = {queue_id};
    char who[LDR_ERR_MAX / 2];

    if (ledger_value(pg, "SELECT " LEASE_HOLDER_SQL " FROM queue_owners WHERE queue_id = $1", 1,
                     params, who, sizeof(who)) != 0) {
        snprintf(who, sizeof(who), "an earlier loader");
    }
    pg->sqlstate[0] = '\0';
    snprintf(pg->err, sizeof(pg->err),
             "cannot take the lease of queue.id %s yet: held by %s, "
             "a transaction of which still runs; waiting for it to end",
             queue_id, who);
}

int
ldr_pg_lease_take(struct ldr_pg *pg, const char *queue_id, int64_t *epoch)
{
    char host[256] = "";
    char holder[320];
    int rc;

    if (gethostname(host, sizeof(host) - 1) != 0) {
        snprintf(host, sizeof(host), "unknown");
    }
    snprintf(holder, sizeof(holder), "host %s pid %ld", host, (long)getpid());
    /* A bounded wait, so that the wait is reported (pg_lease_busy), then retried. */
    rc = ldr_pg_exec(pg, "BEGIN; SET LOCAL lock_timeout = '5s'");
    if (rc == 0) {
        rc = pg_lease_bump(pg, queue_id, holder, epoch);
    }
    if (rc == 0) {
        rc = ldr_pg_exec(pg, "COMMIT");
    }
    if (rc == 0) {
        pg->epoch = *epoch;
        return 0;
    }
    PQclear(PQexec(pg->conn, "ROLLBACK"));
    if (rc == DP_ERR_CONFIG || rc == DP_ERR_NOMEM) {
        return rc;
    }
    if (strcmp(pg->sqlstate, "55P03") == 0) {
        pg_lease_busy(pg, queue_id);
    }
    return DP_ERR_RETRY;
}

int
ldr_pg_owner_claim(struct ldr_pg *pg, const char *queue_id)
{
    const char *params[] = {queue_id, pg->instance};
    int rc;

    rc = ldr_pg_query(pg,
                      "INSERT INTO queue_owners (queue_id, instance_id) VALUES ($1, $2) "
                      "ON CONFLICT (queue_id) DO NOTHING",
                      2, params, PGRES_COMMAND_OK, NULL);
    return rc == 0 || rc == DP_ERR_NOMEM ? rc : DP_ERR_RETRY;
}

/* Move the loader_batches rows of queue_id `from` to `to`; *n receives how many. */
static int
pg_batches_move(struct ldr_pg *pg, const char *from, const char *to, uint64_t *n)
{
    const char *params[] = {from, to};

    return ldr_pg_exec_count(pg, "UPDATE loader_batches SET queue_id = $2 WHERE queue_id = $1", 2,
                             params, n);
}

/* The statements of ldr_pg_owner_adopt inside its transaction. */
static int
pg_adopt(struct ldr_pg *pg, const char *queue_id, struct ldr_adoption *a)
{
    const char *params[] = {queue_id, pg->instance, NULL};
    char *apart = NULL;
    char *mine = NULL;
    PGresult *res = NULL;
    int rc;

    rc = ldr_pg_query(pg, "SELECT instance_id FROM queue_owners WHERE queue_id = $1 FOR UPDATE", 1,
                      params, PGRES_TUPLES_OK, &res);
    if (rc != 0) {
        goto out;
    }
    if (PQntuples(res) > 0) {
        snprintf(a->previous, sizeof(a->previous), "%s", PQgetvalue(res, 0, 0));
    }
    if (strcmp(a->previous, pg->instance) == 0) {
        a->already = true;
        goto out;
    }
    /* Rows without a recorded owner were written before owners were: "<id>@unowned". */
    if (asprintf(&apart, "%s@%s", queue_id, a->previous[0] != '\0' ? a->previous : "unowned") < 0) {
        apart = NULL;
        rc = DP_ERR_NOMEM;
        goto out;
    }
    if (asprintf(&mine, "%s@%s", queue_id, pg->instance) < 0) {
        mine = NULL;
        rc = DP_ERR_NOMEM;
        goto out;
    }
    rc = pg_batches_move(pg, queue_id, apart, &a->moved);
    if (rc == 0) {
        rc = pg_batches_move(pg, mine, queue_id, &a->restored);
    }
    if (rc != 0) {
        goto out;
    }
    snprintf(a->moved_to, sizeof(a->moved_to), "%s", apart);
    params[2] = a->previous[0] != '\0' ? a->previous : NULL;
    rc = ldr_pg_query(pg,
                      "INSERT INTO queue_owners (queue_id, instance_id, since, "
                      "previous_instance_id) "
                      "VALUES ($1, $2, now(), $3) ON CONFLICT (queue_id) DO UPDATE SET "
                      "instance_id = EXCLUDED.instance_id, since = EXCLUDED.since, "
                      "previous_instance_id = EXCLUDED.previous_instance_id",
                      3, params, PGRES_COMMAND_OK, NULL);
out:
    PQclear(res);
    free(mine);
    free(apart);
    return rc;
}

int
ldr_pg_owner_adopt(struct ldr_pg *pg, const char *queue_id, struct ldr_adoption *a)
{
    int rc;

    memset(a, 0, sizeof(*a));
    rc = ldr_pg_exec(pg, "BEGIN");
    if (rc == 0) {
        rc = pg_adopt(pg, queue_id, a);
    }
    if (rc == 0) {
        rc = ldr_pg_exec(pg, "COMMIT");
    }
    if (rc != 0) {
        PQclear(PQexec(pg->conn, "ROLLBACK"));
    }
    return rc == 0 || rc == DP_ERR_NOMEM ? rc : DP_ERR_RETRY;
}

/* ---- loader_batches ------------------------------------------------------------------- */

int
ldr_pg_batch_lookup(struct ldr_pg *pg, const char *queue_id, uint64_t first, uint64_t *last,
                    char **outcome)
{
    char first_s[24];
    const char *params[] = {queue_id, first_s, pg->instance};
    PGresult *res = NULL;
    int rc;

    *outcome = NULL;
    snprintf(first_s, sizeof(first_s), "%" PRIu64, first);
    /* One statement, one snapshot: the row counts only while this queue owns queue_id. */
    rc = ldr_pg_query(pg,
                      "SELECT last_seq, outcome FROM loader_batches WHERE queue_id = $1 "
                      "AND first_seq = $2 AND " LDR_OWNED_BY_THIS_QUEUE,
                      3, params, PGRES_TUPLES_OK, &res);
    if (rc != 0) {
        rc = rc == DP_ERR_NOMEM ? rc : DP_ERR_RETRY;
    } else if (PQntuples(res) == 0) {
        rc = DP_ERR_NOTFOUND;
    } else {
        *last = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
        if (!PQgetisnull(res, 0, 1)) {
            *outcome = strdup(PQgetvalue(res, 0, 1));
            rc = *outcome == NULL ? DP_ERR_NOMEM : 0;
        }
    }
    PQclear(res);
    return rc;
}

int
ldr_pg_batch_begin(struct ldr_pg *pg, const char *queue_id, uint64_t first, uint64_t last,
                   size_t rows, uint64_t *committed_last, char **outcome)
{
    char first_s[24];
    char last_s[24];
    char rows_s[24];
    const char *params[] = {queue_id, first_s, last_s, rows_s};
    int rc;

    *committed_last = 0;
    *outcome = NULL;
    snprintf(first_s, sizeof(first_s), "%" PRIu64, first);
    snprintf(last_s, sizeof(last_s), "%" PRIu64, last);
    snprintf(rows_s, sizeof(rows_s), "%zu", rows);
    rc = ldr_pg_exec(pg, "BEGIN; SET CONSTRAINTS ALL IMMEDIATE");
    if (rc != 0) {
        return DP_ERR_RETRY;
    }
    rc = pg_owner_hold(pg, queue_id);
    if (rc != 0) {
        PQclear(PQexec(pg->conn, "ROLLBACK"));
        return rc == DP_ERR_CONFIG || rc == DP_ERR_NOMEM ? rc : DP_ERR_RETRY;
    }
    /*
     * First after the owner check: if a commit of this very batch is still in progress on a
     * lost connection, this insert waits for it and then fails with unique_violation.
     */
    rc = ldr_pg_query(pg,
                      "INSERT INTO loader_batches (queue_id, first_seq, last_seq, rows, loaded_at) "
                      "VALUES ($1, $2, $3, $4, now())",
                      4, params, PGRES_COMMAND_OK, NULL);
    if (rc == 0 || strcmp(pg->sqlstate, "23505") != 0) {
        /* Any failure here is the bookkeeping's, never the rows': retry. */
        return rc == 0 || rc == DP_ERR_NOMEM ? rc : DP_ERR_RETRY;
    }
    rc = ldr_pg_exec(pg, "ROLLBACK");
    if (rc == 0) {
        rc = ldr_pg_batch_lookup(pg, queue_id, first, committed_last, outcome);
    }
    return rc == 0 || rc == DP_ERR_NOMEM ? rc : DP_ERR_RETRY;
}

int
ldr_pg_batch_outcome(struct ldr_pg *pg, const char *queue_id, uint64_t first, const char *outcome)
{
    char first_s[24];
    const char *params[] = {queue_id, first_s, outcome};

    snprintf(first_s, sizeof(first_s), "%" PRIu64, first);
    return ldr_pg_query(pg,
                        "UPDATE loader_batches SET outcome = $3 WHERE queue_id = $1 "
                        "AND first_seq = $2",
                        3, params, PGRES_COMMAND_OK, NULL);
}

int
ldr_pg_batches(struct ldr_pg *pg, const char *queue_id, uint64_t from, ldr_pg_range_fn fn,
               void *arg)
{
    char from_s[24];
    const char *params[] = {queue_id, from_s};
    PGresult *res = NULL;
    int rc;

    snprintf(from_s, sizeof(from_s), "%" PRIu64, from);
    rc = ldr_pg_exec(pg, "BEGIN");
    if (rc == 0) {
        rc = pg_owner_hold(pg, queue_id);
    }
    if (rc == 0) {
        rc = ldr_pg_query(pg,
                          "SELECT first_seq, last_seq, outcome FROM loader_batches "
                          "WHERE queue_id = $1 AND last_seq >= $2 ORDER BY first_seq",
                          2, params, PGRES_TUPLES_OK, &res);
    }
    if (rc == 0) {
        rc = ldr_pg_exec(pg, "COMMIT");
    }
    if (rc != 0) {
        PQclear(PQexec(pg->conn, "ROLLBACK"));
        rc = rc == DP_ERR_NOMEM || rc == DP_ERR_CONFIG ? rc : DP_ERR_RETRY;
        goto out;
    }
    for (int i = 0; rc == 0 && i < PQntuples(res); i++) {
        rc = fn(arg, strtoull(PQgetvalue(res, i, 0), NULL, 10),
                strtoull(PQgetvalue(res, i, 1), NULL, 10),
                PQgetisnull(res, i, 2) ? NULL : PQgetvalue(res, i, 2));
    }
out:
    PQclear(res);
    return rc;
}

int
ldr_pg_max_last(struct ldr_pg *pg, const char *queue_id, uint64_t *max_last)
{
    const char *params[] = {queue_id};
    char max_s[24];
    int rc;

    /* An aggregate: always one row. */
    rc = ledger_value(pg,
                      "SELECT coalesce(max(last_seq), 0) FROM loader_batches WHERE queue_id = $1",
                      1, params, max_s, sizeof(max_s));
    if (rc == 0) {
        *max_last = strtoull(max_s, NULL, 10);
    }
    return rc;
}

int
ldr_pg_compact(struct ldr_pg *pg, const char *queue_id, uint64_t below, uint64_t *deleted)
{
    char below_s[24];
    const char *params[] = {queue_id, below_s, pg->instance};
    int rc;

    snprintf(below_s, sizeof(below_s), "%" PRIu64, below);
    /*
     * Only while this queue owns queue_id: the rows are then its own. The rows are merged into
     * one covering them all, not dropped: every number below `below` that the queue held was
     * loaded (the queue deletes an event only after its batch committed), and a queue restored
     * from a backup may hold those events again; recovery deletes them through this row.
     * Nothing is done while fewer than two rows would merge, so an idle loader rewrites none.
     */
    rc = ldr_pg_exec_count(pg,
                           "WITH old AS (SELECT first_seq FROM loader_batches "
                           "WHERE queue_id = $1 AND last_seq < $2 "
                           "AND first_seq < (SELECT max(first_seq) FROM loader_batches "
                           "WHERE queue_id = $1) AND " LDR_OWNED_BY_THIS_QUEUE "), "
                           "gone AS (DELETE FROM loader_batches WHERE queue_id = $1 "
                           "AND first_seq IN (SELECT first_seq FROM old) "
                           "AND (SELECT count(*) FROM old) > 1 "
                           "RETURNING first_seq, last_seq, rows, loaded_at) "
                           "INSERT INTO loader_batches (queue_id, first_seq, last_seq, rows, "
                           "loaded_at) SELECT $1, min(first_seq), max(last_seq), "
                           "least(sum(rows), 2147483647)::integer, max(loaded_at) FROM gone "
                           "HAVING count(*) > 0",
                           3, params, deleted);
    return rc == 0 || rc == DP_ERR_NOMEM ? rc : DP_ERR_RETRY;
}
