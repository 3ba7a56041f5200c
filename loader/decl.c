/*
 * decl.c - the tables of the event types declared in the configuration: created at the
 * loader's start, or compared with the catalog and evolved additively, inside
 * ldr_pg_ensure_schema's transaction and advisory lock, so two loaders never race and a
 * refusal leaves nothing half applied. Never drops, renames or retypes a column. Also the
 * names of the objects a table has besides its columns (key index, primary key): derived by
 * dp_pg_derived_name, found by what they are, never by name.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etc/decl.h"
#include "etc/err.h"
#include "etc/log.h"
#include "etc/plant.h"
#include "events/events.h"
#include "loader/loader.h"

/* The comment on every table datapipe creates for a declared type: how it knows its own. */
#define SCHEMA_MARK "datapipe declared event type"
#define SCHEMA_COLS_MAX (DP_TYPE_FIELDS_MAX + 16)

/* One column of an existing table, as the catalog says. */
struct schema_col {
    char name[64];
    char type[64]; /* format_type() */
    bool not_null;
};

/* What the catalog says about the table of one declared type. */
struct schema_table {
    bool exists;
    char oid[16];
    char relkind[4];
    bool ours; /* carries SCHEMA_MARK */
    struct schema_col *cols;
    size_t n_cols;
};

/* Types whose "field no longer declared" lines were logged: once per process each. */
static atomic_bool removed_logged[EV_REGISTRY_MAX];

static int
table_row(void *arg, int n, const char *const *vals)
{
    struct schema_table *st = arg;

    if (n != 3 || vals[0] == NULL) {
        return DP_ERR_INVALID;
    }
    st->exists = true;
    snprintf(st->oid, sizeof(st->oid), "%s", vals[0]);
    snprintf(st->relkind, sizeof(st->relkind), "%s", vals[1] != NULL ? vals[1] : "");
    st->ours = vals[2] != NULL && strcmp(vals[2], SCHEMA_MARK) == 0;
    return 0;
}

static int
column_row(void *arg, int n, const char *const *vals)
{
    struct schema_table *st = arg;
    struct schema_col *c;

    if (n != 3 || vals[0] == NULL || vals[1] == NULL || vals[2] == NULL) {
        return DP_ERR_INVALID;
    }
    if (st->n_cols == SCHEMA_COLS_MAX) {
        return 0;
    }
    c = &st->cols[st->n_cols++];
    snprintf(c->name, sizeof(c->name), "%s", vals[0]);
    snprintf(c->type, sizeof(c->type), "%s", vals[1]);
    c->not_null = strcmp(vals[2], "t") == 0;
    return 0;
}

/* Read the table named name in the current schema and its columns. */
static int
table_read(struct ldr_pg *pg, const char *name, struct schema_table *st)
{
    const char *params[] = {name};
    const char *oid[1];
    int rc;

    rc = ldr_pg_rows(pg,
                     "SELECT c.oid::text, c.relkind::text, obj_description(c.oid, 'pg_class') "
                     "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                     "WHERE n.nspname = current_schema() AND c.relname = $1",
                     1, params, table_row, st);
    if (rc != 0 || !st->exists) {
        return rc;
    }
    oid[0] = st->oid;
    return ldr_pg_rows(pg,
                       "SELECT attname::text, format_type(atttypid, atttypmod), "
                       "CASE WHEN attnotnull THEN 't' ELSE 'f' END FROM pg_attribute "
                       "WHERE attrelid = $1::oid AND attnum > 0 AND NOT attisdropped "
                       "ORDER BY attnum",
                       1, oid, column_row, st);
}

static const struct schema_col *
col_find(const struct schema_table *st, const char *name)
{
    for (size_t i = 0; i < st->n_cols; i++) {
        if (strcmp(st->cols[i].name, name) == 0) {
            return &st->cols[i];
        }
    }
    return NULL;
}

/* Append ", " unless alter is empty: the separator between two clauses of one ALTER TABLE. */
static int
alter_sep(struct ev_buf *alter)
{
    return alter->len > 0 ? ev_buf_put(alter, ", ", 2) : 0;
}

/*
 * Compare one declared field with the table. Refusals are logged and counted in *refused;
 * additions go into alter.
 */
static int
field_plan(const struct ev_type *t, const struct ev_column *c, const struct schema_table *st,
           struct ev_buf *alter, int *refused)
{
    const struct schema_col *have = col_find(st, c->name);

    if (have == NULL && c->not_null) {
        dp_error("a new field is declared required, but the table already exists and its rows "
                 "lack it: refused, nothing altered; declare it without \"required\": true",
                 "type=%s field=%s", t->name, c->name);
        (*refused)++;
        return 0;
    }
    if (have == NULL) {
        dp_info("declared type: new field, column added", "type=%s field=%s column_type=%s",
                t->name, c->name, c->sql_type);
        return alter_sep(alter) != 0
                   ? DP_ERR_NOMEM
                   : ev_buf_put_strs(alter, "ADD COLUMN \"", c->name, "\" ", c->sql_type, NULL);
    }
    if (strcmp(have->type, c->sql_type) != 0) {
        dp_error("a declared field changed its type: refused, nothing altered; keep the old "
                 "type, or declare the field under a new name (the old column stays)",
                 "type=%s field=%s declared=%s column=%s", t->name, c->name, c->sql_type,
                 have->type);
        (*refused)++;
        return 0;
    }
    if (c->not_null && !have->not_null) {
        dp_error("a field is now declared required, but its column allows null (rows loaded "
                 "before may lack it): refused, nothing altered; declare it without "
                 "\"required\": true",
                 "type=%s field=%s", t->name, c->name);
        (*refused)++;
        return 0;
    }
    if (!c->not_null && have->not_null) {
        dp_info("declared type: field no longer required, its column now allows null",
                "type=%s field=%s", t->name, c->name);
        return alter_sep(alter) != 0
                   ? DP_ERR_NOMEM
                   : ev_buf_put_strs(alter, "ALTER COLUMN \"", c->name, "\" DROP NOT NULL", NULL);
    }
    return 0;
}

/* The columns every declared table has besides its fields: added when missing. */
static int
own_columns_plan(const struct ev_type *t, const struct schema_table *st, struct ev_buf *alter,
                 int *refused)
{
    static const struct ev_column own[] = {
        {"idempotency_key", "text", false},
        {"idempotency_digest", "bytea", false},
        {"source", "text", false},
        {"extra", "jsonb", false},
    };
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < sizeof(own) / sizeof(own[0]); i++) {
        if (strcmp(own[i].name, "extra") == 0 && !t->decl->keep_unknown &&
            col_find(st, "extra") == NULL) {
            continue;
        }
        rc = field_plan(t, &own[i], st, alter, refused);
    }
    return rc;
}

/* Whether column i of st is a field t no longer declares (not one of the table's own). */
static bool
col_removed(const struct ev_type *t, const struct schema_table *st, size_t i)
{
    static const char *const own[] = {"id",    "idempotency_key", "idempotency_digest", "source",
                                      "extra", "received_at",     "loaded_at",          NULL};
    const char *const *o = own;
    size_t j = 0;

    while (*o != NULL && strcmp(*o, st->cols[i].name) != 0) {
        o++;
    }
    while (j < t->n_columns && strcmp(t->columns[j].name, st->cols[i].name) != 0) {
        j++;
    }
    return *o == NULL && j == t->n_columns;
}

/*
 * A field no longer declared is null in new rows, so a NOT NULL it kept from when it was
 * required would send every new event to dead_letter: dropped, like a field made optional.
 */
static int
removed_plan(const struct ev_type *t, const struct schema_table *st, struct ev_buf *alter)
{
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < st->n_cols; i++) {
        /* Planted (etc/plant.h): a dropped required field's column keeps NOT NULL. */
        if (!st->cols[i].not_null || !col_removed(t, st, i) ||
            DP_PLANTED("dropped_field_not_null")) {
            continue;
        }
        dp_info("declared type: a required field is no longer declared, its column now allows "
                "null",
                "type=%s column=%s", t->name, st->cols[i].name);
        rc = alter_sep(alter) != 0 ? DP_ERR_NOMEM
                                   : ev_buf_put_strs(alter, "ALTER COLUMN \"", st->cols[i].name,
                                                     "\" DROP NOT NULL", NULL);
    }
    return rc;
}

/* Log the columns of fields no longer declared, once per process (each connection checks). */
static void
removed_log(const struct ev_type *t, size_t slot, const struct schema_table *st)
{
    if (slot >= EV_REGISTRY_MAX || atomic_load(&removed_logged[slot])) {
        return;
    }
    for (size_t i = 0; i < st->n_cols; i++) {
        if (col_removed(t, st, i)) {
            atomic_store(&removed_logged[slot], true);
            dp_info("declared type: a field is no longer declared; its column stays and is "
                    "null for new rows",
                    "type=%s column=%s", t->name, st->cols[i].name);
        }
    }
}

#define LDR_NAME_BUF 320 /* a schema-qualified, quoted name, bytes with NUL */

/* The first column of the one row a query returns, into arg (LDR_NAME_BUF bytes). */
static int
name_row(void *arg, int n, const char *const *vals)
{
    if (n < 1 || vals[0] == NULL) {
        return DP_ERR_INVALID;
    }
    snprintf(arg, LDR_NAME_BUF, "%s", vals[0]);
    return 0;
}

int
ldr_schema_key_index(struct ldr_pg *pg, const char *name, const char *table)
{
    char want[DP_TYPE_NAME_MAX + 1];
    char have[LDR_NAME_BUF] = "";
    const char *params[2];
    char *sql = NULL;
    int rc;

    params[0] = name;
    /* A partitioned table cannot have a unique index without its partition key: its keys
     * are unique in its key table instead (part.c). */
    rc = ldr_pg_rows(pg,
                     "SELECT '=' FROM pg_class c JOIN pg_namespace n "
                     "ON n.oid = c.relnamespace WHERE n.nspname = current_schema() "
                     "AND c.relname = $1 AND c.relkind = 'p'",
                     1, params, name_row, have);
    if (rc != 0 || have[0] != '\0') {
        return rc;
    }
    if (DP_PLANTED("key_index_name_clash")) {
        /* Planted (etc/plant.h): the index named after its table, created if no relation
         * holds that name, so a type named "<name>_idem_key" leaves this one without it. */
        if (asprintf(&sql,
                     "CREATE UNIQUE INDEX IF NOT EXISTS \"%s_idem_key\" ON %s (idempotency_key) "
                     "WHERE idempotency_key IS NOT NULL",
                     name, table) < 0) {
            return DP_ERR_NOMEM;
        }
        rc = ldr_pg_exec(pg, sql);
        free(sql);
        return rc;
    }
    dp_pg_derived_name(want, DP_PG_KEY_INDEX, name);
    params[1] = want;
    /* What ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL can infer: a valid,
     * immediate unique index over that one column, partial on exactly that predicate or not
     * partial. The one already named as wanted comes first, as "=". */
    rc = ldr_pg_rows(pg,
                     "SELECT CASE WHEN i.relname = $2 THEN '=' ELSE quote_ident(n.nspname) || '.' "
                     "|| quote_ident(i.relname) END "
                     "FROM pg_class t JOIN pg_namespace n ON n.oid = t.relnamespace "
                     "JOIN pg_index x ON x.indrelid = t.oid "
                     "JOIN pg_class i ON i.oid = x.indexrelid "
                     "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = x.indkey[0] "
                     "WHERE n.nspname = current_schema() AND t.relname = $1 "
                     "AND x.indisunique AND x.indisvalid AND x.indimmediate "
                     "AND x.indnatts = 1 AND x.indexprs IS NULL "
                     "AND a.attname = 'idempotency_key' AND (x.indpred IS NULL OR "
                     "pg_get_expr(x.indpred, x.indrelid) = '(idempotency_key IS NOT NULL)') "
                     "ORDER BY i.relname = $2 DESC, i.relname LIMIT 1",
                     2, params, name_row, have);
    if (rc != 0 || strcmp(have, "=") == 0) {
        return rc;
    }
    if (have[0] != '\0') {
        dp_info("key index renamed to its derived name", "table=%s from=%s to=%s", name, have,
                want);
        rc = asprintf(&sql, "ALTER INDEX %s RENAME TO \"%s\"", have, want);
    } else {
        /* Never IF NOT EXISTS: a relation already holding the name must fail loudly, not
         * leave the table without its index. */
        rc = asprintf(&sql,
                      "CREATE UNIQUE INDEX \"%s\" ON %s (idempotency_key) "
                      "WHERE idempotency_key IS NOT NULL",
                      want, table);
    }
    if (rc < 0) {
        return DP_ERR_NOMEM;
    }
    rc = ldr_pg_exec(pg, sql);
    free(sql);
    if (rc == DP_ERR_DATA) {
        /* A table that lacked its index may hold a key twice: the operator's to settle, as
         * retrying cannot; until then nothing would load the keys exactly once. */
        dp_error("a keyed table holds a key more than once, so its unique key index cannot be "
                 "built: refused, nothing altered; keep one row of each key, then start again",
                 "table=%s index=%s error=%s", name, want, ldr_pg_error(pg));
        rc = DP_ERR_CONFIG;
    }
    return rc;
}

static int
table_create(struct ldr_pg *pg, const struct ev_type *t)
{
    char *sql = NULL;
    int rc;

    rc = ldr_part_create(pg, t);
    if (rc == 0) {
        rc = ldr_schema_key_index(pg, t->name, t->table);
    }
    if (rc == 0 && asprintf(&sql, "COMMENT ON TABLE %s IS '%s'", t->table, SCHEMA_MARK) < 0) {
        sql = NULL;
        rc = DP_ERR_NOMEM;
    }
    if (rc == 0) {
        rc = ldr_pg_exec(pg, sql);
    }
    if (rc == 0) {
        dp_info("declared type: table created", "type=%s columns=%zu", t->name, t->n_columns);
    }
    free(sql);
    return rc;
}

/* Bring the table of declared type t (registry slot) up to its declaration. */
static int
type_ensure(struct ldr_pg *pg, const struct ev_type *t, size_t slot, int *refused)
{
    struct schema_table st = {0};
    struct ev_buf alter = {0};
    char *sql = NULL;
    int before = *refused;
    int rc;

    st.cols = calloc(SCHEMA_COLS_MAX, sizeof(*st.cols));
    if (st.cols == NULL) {
        return DP_ERR_NOMEM;
    }
    rc = table_read(pg, t->name, &st);
    if (rc != 0) {
        goto out;
    }
    if (!st.exists) {
        rc = table_create(pg, t);
        goto out;
    }
    if (!st.ours || (strcmp(st.relkind, "r") != 0 && strcmp(st.relkind, "p") != 0)) {
        dp_error("a declared type's name is taken by a table datapipe did not create: refused, "
                 "nothing altered; rename the type, or move that table out of the schema",
                 "type=%s relation=%s", t->name, t->name);
        (*refused)++;
        goto out;
    }
    for (size_t i = 0; rc == 0 && i < t->n_columns; i++) {
        rc = field_plan(t, &t->columns[i], &st, &alter, refused);
    }
    if (rc == 0) {
        rc = own_columns_plan(t, &st, &alter, refused);
    }
    if (rc == 0 && *refused == before) {
        rc = removed_plan(t, &st, &alter);
    }
    if (rc != 0 || *refused > before) {
        goto out;
    }
    removed_log(t, slot, &st);
    if (alter.len > 0) {
        if (asprintf(&sql, "ALTER TABLE %s %.*s", t->table, (int)alter.len, alter.data) < 0) {
            sql = NULL;
            rc = DP_ERR_NOMEM;
            goto out;
        }
        rc = ldr_pg_exec(pg, sql);
    }
out:
    free(sql);
    ev_buf_free(&alter);
    free(st.cols);
    return rc;
}

/*
 * Declared type t's existing table: its primary key and its key index under their derived
 * names. Run for every declared type before any table is created or compared, so that a
 * name an earlier release gave them ("<type>_pkey", "<type>_idem_key") is free before a type
 * of that name looks for its table.
 */
static int
names_ensure(struct ldr_pg *pg, const struct ev_type *t)
{
    char want[DP_TYPE_NAME_MAX + 1];
    char have[LDR_NAME_BUF] = "";
    const char *params[3];
    char *sql = NULL;
    int rc;

    dp_pg_derived_name(want, DP_PG_PRIMARY_KEY, t->name);
    params[0] = t->name;
    params[1] = want;
    params[2] = SCHEMA_MARK;
    /* No row: no table of ours; "-": no primary key; "=": named as wanted. */
    rc = ldr_pg_rows(pg,
                     "SELECT CASE WHEN k.conname IS NULL THEN '-' WHEN k.conname = $2 THEN '=' "
                     "ELSE quote_ident(k.conname) END "
                     "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                     "LEFT JOIN pg_constraint k ON k.conrelid = c.oid AND k.contype = 'p' "
                     "WHERE n.nspname = current_schema() AND c.relname = $1 "
                     "AND c.relkind IN ('r', 'p') AND obj_description(c.oid, 'pg_class') = $3",
                     3, params, name_row, have);
    if (rc != 0 || have[0] == '\0') {
        return rc;
    }
    if (strcmp(have, "-") != 0 && strcmp(have, "=") != 0) {
        dp_info("primary key renamed to its derived name", "table=%s from=%s to=%s", t->name, have,
                want);
        if (asprintf(&sql, "ALTER TABLE %s RENAME CONSTRAINT %s TO \"%s\"", t->table, have, want) <
            0) {
            return DP_ERR_NOMEM;
        }
        rc = ldr_pg_exec(pg, sql);
        free(sql);
    }
    if (rc == 0) {
        rc = ldr_schema_key_index(pg, t->name, t->table);
    }
    return rc;
}

static int
lz4_row(void *arg, int n, const char *const *vals)
{
    (void)n;
    snprintf(arg, 4, "%s", vals[0] != NULL ? vals[0] : "");
    return 0;
}

/*
 * data_sample.raw holds whole events: with lz4 (PostgreSQL 14 and later, built with it)
 * the loader compresses them several times faster than with the default pglz. Only new
 * rows are affected; without lz4 nothing changes, and a compression an operator set on the
 * column (attcompression not empty) is left alone.
 */
static int
lz4_ensure(struct ldr_pg *pg)
{
    char have[4] = "";
    int rc;

    rc = ldr_pg_rows(pg,
                     "SELECT 'y' FROM pg_settings WHERE name = 'default_toast_compression' "
                     "AND 'lz4' = ANY(enumvals)",
                     0, NULL, lz4_row, have);
    if (rc != 0 || have[0] != 'y') {
        if (rc == 0) {
            dp_debug("lz4 compression not available: data_sample.raw stays with pglz", NULL);
        }
        return rc;
    }
    have[0] = '\0';
    rc = ldr_pg_rows(pg,
                     "SELECT attcompression::text FROM pg_attribute "
                     "WHERE attrelid = 'data_sample'::regclass AND attname = 'raw'",
                     0, NULL, lz4_row, have);
    if (rc == 0 && have[0] == '\0') {
        rc = ldr_pg_exec(pg, "ALTER TABLE data_sample ALTER COLUMN raw SET COMPRESSION lz4");
        if (rc == 0) {
            dp_info("data_sample.raw: lz4 compression for new rows", NULL);
        }
    }
    return rc;
}

int
ldr_schema_ensure(struct ldr_pg *pg)
{
    size_t n = ev_registry_len;
    int refused = 0;
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (ev_registry[i]->decl != NULL) {
            rc = names_ensure(pg, ev_registry[i]);
        }
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (ev_registry[i]->decl != NULL) {
            rc = type_ensure(pg, ev_registry[i], i, &refused);
        }
    }
    if (rc == 0) {
        rc = lz4_ensure(pg);
    }
    if (rc == 0 && refused > 0) {
        rc = DP_ERR_CONFIG;
    }
    return rc;
}
