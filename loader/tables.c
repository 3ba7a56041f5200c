/*
 * tables.c - the schema and the tables the loader writes: created at every new connection
 * in one transaction (the registry's built-in types, dead_letter, the watermark,
 * loader_batches, queue_owners; day partitions through part.c, declared types through
 * decl.c), and the columns later releases added, added to older tables. Only ever adds.
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etc/err.h"
#include "etc/log.h"
#include "events/events.h"
#include "loader/loader.h"
#include "loader/pg_internal.h"

static const char dead_letter_ddl[] = "CREATE TABLE IF NOT EXISTS dead_letter ("
                                      "seq bigserial PRIMARY KEY, "
                                      "queue_id text NOT NULL, "
                                      "event_type text, "
                                      "stage text NOT NULL CHECK (stage IN ('ingest', 'load')), "
                                      "error text NOT NULL, "
                                      "raw bytea NOT NULL, "
                                      "received_at timestamptz, "
                                      "failed_at timestamptz NOT NULL DEFAULT now(), "
                                      "idempotency_key text, "
                                      "source text)";

/*
 * Columns added after the first release, so older schemas gain them at start: the event's
 * id (GET /v1/events/{id} finds a dead letter by it; NULL in rows filed before), and what
 * --replay-dead-letters did to the row.
 */
static const char dead_letter_upgrade[] =
    "ALTER TABLE dead_letter ADD COLUMN IF NOT EXISTS event_id uuid; "
    "ALTER TABLE dead_letter ADD COLUMN IF NOT EXISTS replays integer NOT NULL DEFAULT 0; "
    "ALTER TABLE dead_letter ADD COLUMN IF NOT EXISTS replayed_at timestamptz; "
    "CREATE INDEX IF NOT EXISTS dead_letter_event_id ON dead_letter (event_id)";

/*
 * The completeness watermark, one row per queue, only ever moved forward (GREATEST), and
 * the view docs/operations.md names. CREATE OR REPLACE keeps the view's definition current.
 */
static const char watermark_ddl[] =
    "CREATE TABLE IF NOT EXISTS queue_watermarks ("
    "queue_id text PRIMARY KEY, "
    "loaded_through timestamptz NOT NULL); "
    "CREATE OR REPLACE VIEW watermark AS SELECT queue_id, loaded_through FROM queue_watermarks";

static const char loader_batches_ddl[] = "CREATE TABLE IF NOT EXISTS loader_batches ("
                                         "queue_id text NOT NULL, "
                                         "first_seq bigint NOT NULL, "
                                         "last_seq bigint NOT NULL, "
                                         "rows integer NOT NULL, "
                                         "loaded_at timestamptz NOT NULL DEFAULT now(), "
                                         "outcome text, "
                                         "PRIMARY KEY (queue_id, first_seq))";

/*
 * Which queue instance owns a queue.id. Rows of loader_batches under a queue_id are the
 * owner's; --adopt-queue moves a former owner's rows to queue_id "<id>@<its instance>".
 * The lease (epoch, holder, holder_since) says which loader process of the owner loads now:
 * ledger.c says why it fences an earlier one.
 */
static const char queue_owners_ddl[] = "CREATE TABLE IF NOT EXISTS queue_owners ("
                                       "queue_id text PRIMARY KEY, "
                                       "instance_id text NOT NULL, "
                                       "since timestamptz NOT NULL DEFAULT now(), "
                                       "previous_instance_id text, "
                                       "epoch bigint NOT NULL DEFAULT 0, "
                                       "holder text, "
                                       "holder_since timestamptz)";

/*
 * The lease's columns for a queue_owners table created before them; only run when missing
 * (an ALTER TABLE locks the table even when it changes nothing, and every batch reads it).
 */
static const char queue_owners_upgrade[] =
    "ALTER TABLE queue_owners ADD COLUMN IF NOT EXISTS epoch bigint NOT NULL DEFAULT 0, "
    "ADD COLUMN IF NOT EXISTS holder text, ADD COLUMN IF NOT EXISTS holder_since timestamptz";

/* Does the schema exist? CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even then. */
static int
pg_schema_exists(struct ldr_pg *pg, const char *schema, bool *exists)
{
    const char *params[] = {schema};
    PGresult *res = NULL;
    int rc;

    rc = ldr_pg_query(pg, "SELECT 1 FROM pg_namespace WHERE nspname = $1", 1, params,
                      PGRES_TUPLES_OK, &res);
    if (rc == 0) {
        *exists = PQntuples(res) > 0;
    }
    PQclear(res);
    return rc;
}

static int
pg_create_schema(struct ldr_pg *pg, const char *schema)
{
    char *ident = NULL;
    char *sql = NULL;
    int rc;

    ident = PQescapeIdentifier(pg->conn, schema, strlen(schema));
    if (ident == NULL || asprintf(&sql, "CREATE SCHEMA IF NOT EXISTS %s", ident) < 0) {
        sql = NULL;
        rc = DP_ERR_NOMEM;
        goto out;
    }
    rc = ldr_pg_exec(pg, sql);
out:
    free(sql);
    PQfreemem(ident);
    return rc;
}

/*
 * Whether table (as the DDL names it, found on the transaction's search_path) lacks one of
 * columns (comma-separated). Asked before every ALTER TABLE of the set-up: ALTER TABLE locks
 * the table even when IF NOT EXISTS then does nothing, and every worker sets the schema up
 * when it connects, beside the other workers' batches, whose locks on the same tables made
 * the two wait on each other (deadlock detected, again and again).
 */
static int
pg_lacks(struct ldr_pg *pg, const char *table, const char *columns, bool *lacks)
{
    const char *params[] = {table, columns};
    PGresult *res = NULL;
    int rc;

    rc = ldr_pg_query(pg,
                      "SELECT count(*) FROM unnest(string_to_array($2, ',')) c WHERE NOT EXISTS "
                      "(SELECT 1 FROM pg_attribute a WHERE a.attrelid = to_regclass($1) "
                      "AND a.attname = c AND NOT a.attisdropped)",
                      2, params, PGRES_TUPLES_OK, &res);
    if (rc == 0) {
        *lacks = strcmp(PQgetvalue(res, 0, 0), "0") != 0;
    }
    PQclear(res);
    return rc;
}

/* Add column (its name, then its type) to table if it lacks it (pg_lacks says why ask). */
static int
pg_add_column(struct ldr_pg *pg, const char *table, const char *column, const char *type)
{
    char sql[256];
    bool lacks = false;
    int rc;

    rc = pg_lacks(pg, table, column, &lacks);
    if (rc == 0 && lacks) {
        snprintf(sql, sizeof(sql), "ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s %s", table, column,
                 type);
        rc = ldr_pg_exec(pg, sql);
    }
    return rc;
}

/*
 * Give a table created before idempotency keys its nullable idempotency_key column and,
 * when unique, the index over the non-null keys that the loader's ON CONFLICT relies on
 * (ldr_schema_key_index: found by what it indexes, under its derived name) and the nullable
 * idempotency_digest column (ev_digest of the event's bytes) that tells a repeat from a
 * conflict. Rows loaded before the digest column have none: the loader files an event meeting
 * such a row's key as a conflict (it cannot tell; it never drops it).
 */
static int
pg_key_column(struct ldr_pg *pg, const char *table, bool unique)
{
    int rc;

    rc = pg_add_column(pg, table, "idempotency_key", "text");
    if (rc == 0 && unique) {
        rc = ldr_schema_key_index(pg, table, table);
    }
    if (rc == 0 && unique) {
        rc = pg_add_column(pg, table, "idempotency_digest", "bytea");
    }
    return rc;
}

/* Give a table created before API key names its nullable source column (who sent a row). */
static int
pg_source_column(struct ldr_pg *pg, const char *table)
{
    return pg_add_column(pg, table, "source", "text");
}

/* dead_letter_upgrade, if dead_letter lacks a column or the index of it (pg_lacks: why ask). */
static int
pg_dead_letter_upgrade(struct ldr_pg *pg)
{
    PGresult *res = NULL;
    bool lacks = false;
    int rc;

    rc = pg_lacks(pg, "dead_letter", "event_id,replays,replayed_at", &lacks);
    if (rc == 0 && !lacks) {
        rc = ldr_pg_query(pg, "SELECT to_regclass('dead_letter_event_id') IS NULL", 0, NULL,
                          PGRES_TUPLES_OK, &res);
        lacks = rc == 0 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
    }
    return rc == 0 && lacks ? ldr_pg_exec(pg, dead_letter_upgrade) : rc;
}

/* Add the lease's columns to a queue_owners table created before them. */
static int
pg_lease_columns(struct ldr_pg *pg)
{
    PGresult *res = NULL;
    int rc;

    rc = ldr_pg_query(pg,
                      "SELECT 1 FROM pg_attribute WHERE attrelid = 'queue_owners'::regclass "
                      "AND attname = 'holder_since' AND NOT attisdropped",
                      0, NULL, PGRES_TUPLES_OK, &res);
    if (rc == 0 && PQntuples(res) == 0) {
        rc = ldr_pg_exec(pg, queue_owners_upgrade);
    }
    PQclear(res);
    return rc;
}

/* The statements of ldr_pg_ensure_schema inside its transaction. */
static int
pg_create_all(struct ldr_pg *pg, const char *schema)
{
    bool exists = false;
    int rc;

    rc = pg_schema_exists(pg, schema, &exists);
    if (rc == 0 && !exists) {
        rc = pg_create_schema(pg, schema);
    }
    /* Declared types: their tables are created or evolved by loader/decl.c. */
    for (size_t i = 0; rc == 0 && i < ev_registry_len; i++) {
        if (ev_registry[i]->decl == NULL) {
            rc = ldr_part_create(pg, ev_registry[i]);
        }
        if (rc == 0 && ev_registry[i]->keyed && ev_registry[i]->decl == NULL) {
            rc = pg_key_column(pg, ev_registry[i]->table, true);
        }
        if (rc == 0 && ev_registry[i]->decl == NULL) {
            rc = pg_source_column(pg, ev_registry[i]->table);
        }
    }
    if (rc == 0) {
        rc = ldr_pg_exec(pg, dead_letter_ddl);
    }
    if (rc == 0) {
        rc = pg_key_column(pg, "dead_letter", false);
    }
    if (rc == 0) {
        rc = pg_source_column(pg, "dead_letter");
    }
    if (rc == 0) {
        rc = pg_dead_letter_upgrade(pg);
    }
    if (rc == 0) {
        rc = ldr_pg_exec(pg, watermark_ddl);
    }
    if (rc == 0) {
        rc = ldr_pg_exec(pg, loader_batches_ddl);
    }
    if (rc == 0) {
        /* What the batch did, when not every row loaded (ldr_pg_batch_outcome). */
        rc = pg_add_column(pg, "loader_batches", "outcome", "text");
    }
    if (rc == 0) {
        rc = ldr_pg_exec(pg, queue_owners_ddl);
    }
    if (rc == 0) {
        rc = pg_lease_columns(pg);
    }
    if (rc == 0) {
        rc = ldr_schema_ensure(pg);
    }
    if (rc == 0) {
        rc = ldr_part_ensure(pg);
    }
    return rc;
}

int
ldr_pg_ensure_schema(struct ldr_pg *pg, const char *schema)
{
    char sql[128];
    int rc;

    snprintf(sql, sizeof(sql), "BEGIN; SELECT pg_advisory_xact_lock(%d, %d)", LDR_LOCK_CLASS,
             LDR_LOCK_DDL);
    rc = ldr_pg_query(pg, sql, 0, NULL, PGRES_TUPLES_OK, NULL);
    if (rc == 0) {
        rc = pg_create_all(pg, schema);
    }
    if (rc == 0) {
        rc = ldr_pg_exec(pg, "COMMIT");
    }
    if (rc != 0) {
        /* Keep the first error's text: the ROLLBACK's own outcome does not matter. */
        PQclear(PQexec(pg->conn, "ROLLBACK"));
        /* A DDL failure is never the rows' fault: retry it like a server failure (a
         * declared type's table that cannot evolve is the operator's to fix: not retried). */
        rc = rc == DP_ERR_NOMEM || rc == DP_ERR_CONFIG ? rc : DP_ERR_RETRY;
    }
    return rc;
}
