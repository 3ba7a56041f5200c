/*
 * part.c - retention by partition (docs/configuration.md, "Retention"): a type with a rule has
 * its append table partitioned by day of received_at, its keys unique in a key table of their
 * own, partitions created ahead of the rows and dropped whole past keep_days. It never converts
 * an existing unpartitioned table (it logs the SQL that would) and never drops a partition it
 * did not name.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "etc/decl.h"
#include "etc/err.h"
#include "etc/log.h"
#include "etc/retention.h"
#include "events/events.h"
#include "loader/pg_internal.h"

#define PART_DAY_S 86400
#define PART_AHEAD_DAYS 1   /* days created past today's */
#define PART_DROP_PER_TXN 4 /* partitions one transaction of the pass drops, at most */
#define PART_SQL_MAX 2048

/* Types whose "convert it yourself" warning was logged: once per process each. */
static atomic_bool unconverted_logged[EV_REGISTRY_MAX];

void
ldr_pg_set_retention(struct ldr_pg *pg, const struct dp_retention *r)
{
    pg->retention = r;
}

/* The registry slot of t, or EV_REGISTRY_MAX. */
static size_t
part_slot(const struct ev_type *t)
{
    for (size_t i = 0; i < ev_registry_len; i++) {
        if (ev_registry[i] == t) {
            return i;
        }
    }
    return EV_REGISTRY_MAX;
}

bool
ldr_pg_parted(const struct ldr_pg *pg, const struct ev_type *t)
{
    size_t slot = part_slot(t);

    return slot < EV_REGISTRY_MAX && pg->parted[slot];
}

void
ldr_part_key_table(const struct ev_type *t, char out[LDR_PART_NAME_BUF])
{
    char name[DP_TYPE_NAME_MAX + 1];

    dp_pg_derived_name(name, DP_PG_KEY_TABLE, t->name);
    snprintf(out, LDR_PART_NAME_BUF, "\"%s\"", name);
}

/* The rule of t when its table may be partitioned (an append table), else NULL. */
static const struct dp_retention_rule *
part_rule(const struct ldr_pg *pg, const struct ev_type *t)
{
    return t->load == EV_LOAD_APPEND ? dp_retention_find(pg->retention, t->name) : NULL;
}

static int
relkind_row(void *arg, int n, const char *const *vals)
{
    snprintf(arg, 4, "%s", n == 1 && vals[0] != NULL ? vals[0] : "");
    return 0;
}

/* The relkind of table name in the current schema into kind ("" when there is none). */
static int
part_relkind(struct ldr_pg *pg, const char *name, char kind[4])
{
    const char *params[] = {name};

    kind[0] = '\0';
    return ldr_pg_rows(pg,
                       "SELECT c.relkind::text FROM pg_class c JOIN pg_namespace n "
                       "ON n.oid = c.relnamespace WHERE n.nspname = current_schema() "
                       "AND c.relname = $1",
                       1, params, relkind_row, kind);
}

/* Run the statements of fmt (printf format) in the current transaction. */
static int part_exec(struct ldr_pg *pg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
part_exec(struct ldr_pg *pg, const char *fmt, ...)
{
    char *sql = NULL;
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = vasprintf(&sql, fmt, ap);
    va_end(ap);
    if (rc < 0) {
        return DP_ERR_NOMEM;
    }
    rc = ldr_pg_exec(pg, sql);
    free(sql);
    return rc;
}

int
ldr_part_create(struct ldr_pg *pg, const struct ev_type *t)
{
    const struct dp_retention_rule *rule = part_rule(pg, t);
    char fresh[DP_TYPE_NAME_MAX + 1];
    char pk[DP_TYPE_NAME_MAX + 1];
    char kind[4];
    int rc;

    if (rule == NULL) {
        return ldr_pg_exec(pg, t->ddl);
    }
    rc = part_relkind(pg, t->name, kind);
    if (rc != 0 || kind[0] != '\0') {
        return rc != 0 ? rc : ldr_pg_exec(pg, t->ddl);
    }
    /* The type's DDL says its columns; the new, empty table it made is copied into a
     * partitioned one of the same columns, defaults and NOT NULLs, and dropped. A partitioned
     * table's primary key must hold the partition key: (id, received_at). */
    dp_pg_derived_name(fresh, DP_PG_FRESH_TABLE, t->name);
    dp_pg_derived_name(pk, DP_PG_PRIMARY_KEY, t->name);
    rc = ldr_pg_exec(pg, t->ddl);
    if (rc == 0) {
        rc = part_exec(pg,
                       "CREATE TABLE \"%s\" (LIKE %s INCLUDING DEFAULTS) "
                       "PARTITION BY RANGE (received_at); DROP TABLE %s; "
                       "ALTER TABLE \"%s\" RENAME TO %s; "
                       "ALTER TABLE %s ADD CONSTRAINT \"%s\" PRIMARY KEY (id, received_at)",
                       fresh, t->table, t->table, fresh, t->table, t->table, pk);
    }
    if (rc == 0) {
        dp_info("table created partitioned by day of received_at", "type=%s keep_days=%d", t->name,
                rule->keep_days);
    }
    return rc;
}

int
ldr_part_convert_sql(const struct ev_type *t, int64_t now_us, char *out, size_t len)
{
    char pk[DP_TYPE_NAME_MAX + 1];
    char day[32];
    time_t end = (time_t)(now_us / 1000000 / PART_DAY_S + 1) * PART_DAY_S;
    struct tm tm;
    int n;

    /* The bound with its zone: a session whose TimeZone is not UTC would otherwise end the old
     * table at its own midnight, overlapping (or missing) the day partitions made after it. */
    gmtime_r(&end, &tm);
    strftime(day, sizeof(day), "%Y-%m-%d 00:00:00+00", &tm);
    dp_pg_derived_name(pk, DP_PG_PRIMARY_KEY, t->name);
    /* The old table becomes the first partition: its own primary key (id) goes first, as
     * the parent's (id, received_at) takes the derived name and builds its match on attach. */
    n = snprintf(out, len,
                 "BEGIN; ALTER TABLE %1$s RENAME TO %1$s_unpartitioned; "
                 "DO $$ BEGIN EXECUTE (SELECT format('ALTER TABLE %%I DROP CONSTRAINT %%I', "
                 "'%1$s_unpartitioned', conname) FROM pg_constraint WHERE conrelid = "
                 "'%1$s_unpartitioned'::regclass AND contype = 'p'); END $$; "
                 "CREATE TABLE %1$s (LIKE %1$s_unpartitioned INCLUDING DEFAULTS) "
                 "PARTITION BY RANGE (received_at); "
                 "ALTER TABLE %1$s ADD CONSTRAINT \"%2$s\" PRIMARY KEY (id, received_at); "
                 "ALTER TABLE %1$s ATTACH PARTITION %1$s_unpartitioned "
                 "FOR VALUES FROM (MINVALUE) TO ('%3$s'); COMMIT;",
                 t->table, pk, day);
    return n > 0 && (size_t)n < len ? n : 0;
}

/* A table a rule names that is not partitioned: the SQL that converts it, logged once. */
static void
part_unconverted(const struct ev_type *t, size_t slot, const struct dp_retention_rule *rule)
{
    char sql[PART_SQL_MAX];

    if (atomic_exchange(&unconverted_logged[slot], true)) {
        return;
    }
    ldr_part_convert_sql(t, dp_now_us(), sql, sizeof(sql));
    dp_warn("retention: the table exists unpartitioned and is left as it is, nothing is "
            "dropped; to partition it, stop the loaders and run this SQL in its schema, then "
            "drop <table>_unpartitioned yourself once its rows are past keep_days",
            "type=%s keep_days=%d sql=%s", t->name, rule->keep_days, sql);
}

/* The key table of partitioned t: created, and filled from t's rows, when missing. */
static int
part_key_table(struct ldr_pg *pg, const struct ev_type *t)
{
    char keys[LDR_PART_NAME_BUF];
    char name[DP_TYPE_NAME_MAX + 1];
    char pk[DP_TYPE_NAME_MAX + 1];
    char at[DP_TYPE_NAME_MAX + 1];
    char kind[4];
    int rc;

    dp_pg_derived_name(name, DP_PG_KEY_TABLE, t->name);
    rc = part_relkind(pg, name, kind);
    if (rc != 0 || kind[0] != '\0') {
        return rc;
    }
    ldr_part_key_table(t, keys);
    dp_pg_derived_name(pk, DP_PG_KEY_TABLE_PK, t->name);
    dp_pg_derived_name(at, DP_PG_KEY_TABLE_AT, t->name);
    /* The first row of each key holds it, as the first loaded did (an operator's conversion
     * of a table whose unique index kept each key once). */
    rc = part_exec(pg,
                   "CREATE TABLE %1$s (idempotency_key text CONSTRAINT \"%2$s\" PRIMARY KEY, "
                   "idempotency_digest bytea, id text NOT NULL, received_at timestamptz NOT NULL);"
                   " CREATE INDEX \"%3$s\" ON %1$s (received_at); "
                   "INSERT INTO %1$s SELECT DISTINCT ON (idempotency_key) idempotency_key, "
                   "idempotency_digest, id::text, received_at FROM %4$s "
                   "WHERE idempotency_key IS NOT NULL ORDER BY idempotency_key, received_at, "
                   "loaded_at",
                   keys, pk, at, t->table);
    if (rc == 0) {
        dp_info("retention: key table created for a partitioned table", "type=%s table=%s", t->name,
                name);
    }
    return rc;
}

int
ldr_part_ensure(struct ldr_pg *pg)
{
    char kind[4];
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < ev_registry_len && i < EV_REGISTRY_MAX; i++) {
        const struct ev_type *t = ev_registry[i];
        const struct dp_retention_rule *rule = part_rule(pg, t);

        pg->parted[i] = false;
        if (t->load != EV_LOAD_APPEND) {
            continue;
        }
        rc = part_relkind(pg, t->name, kind);
        if (rc == 0 && strcmp(kind, "p") == 0) {
            pg->parted[i] = true;
            rc = t->keyed ? part_key_table(pg, t) : 0;
        } else if (rc == 0 && strcmp(kind, "r") == 0 && rule != NULL) {
            part_unconverted(t, i, rule);
        }
    }
    return rc;
}

/* ---- the retention pass --------------------------------------------------------------- */

/* A partition of ours of one table: its name and day (days since the epoch). */
struct part_child {
    char name[DP_TYPE_NAME_MAX + 1];
    int64_t day;
};

struct part_children {
    const char *hash; /* the table's 16 hex digits */
    struct part_child v[PART_CHILDREN_MAX];
    size_t n;
};

/* Days since the epoch of "YYYYMMDD", or -1. */
static int64_t
part_day_parse(const char *s)
{
    struct tm tm = {0};
    int y;
    int m;
    int d;

    if (strlen(s) != 8 || sscanf(s, "%4d%2d%2d", &y, &m, &d) != 3) {
        return -1;
    }
    tm.tm_year = y - 1900;
    tm.tm_mon = m - 1;
    tm.tm_mday = d;
    return (int64_t)timegm(&tm) / PART_DAY_S;
}

/* ldr_pg_rows callback: a child of the table, kept when named as ours. */
static int
child_row(void *arg, int n, const char *const *vals)
{
    struct part_children *c = arg;
    const char *name = n == 1 ? vals[0] : NULL;
    size_t pre = strlen(DP_PG_PARTITION);
    char date[9];

    if (name == NULL || strlen(name) != pre + 8 + 1 + 16 ||
        strncmp(name, DP_PG_PARTITION, pre) != 0 || name[pre + 8] != '_' ||
        strcmp(name + pre + 9, c->hash) != 0 || c->n == PART_CHILDREN_MAX) {
        return 0;
    }
    memcpy(date, name + pre, 8);
    date[8] = '\0';
    c->v[c->n].day = part_day_parse(date);
    if (c->v[c->n].day >= 0) {
        snprintf(c->v[c->n].name, sizeof(c->v[c->n].name), "%s", name);
        c->n++;
    }
    return 0;
}

static int
part_children_read(struct ldr_pg *pg, const struct ev_type *t, struct part_children *c)
{
    const char *params[] = {t->name};

    c->n = 0;
    return ldr_pg_rows(pg,
                       "SELECT c.relname::text FROM pg_inherits i "
                       "JOIN pg_class c ON c.oid = i.inhrelid "
                       "JOIN pg_class p ON p.oid = i.inhparent "
                       "JOIN pg_namespace n ON n.oid = p.relnamespace "
                       "WHERE n.nspname = current_schema() AND p.relname = $1",
                       1, params, child_row, c);
}

/* The name of t's partition of day (days since the epoch), its bounds as SQL literals. */
static void
part_name(const char *hash, int64_t day, char name[DP_TYPE_NAME_MAX + 1], char from[32],
          char to[32])
{
    time_t s = (time_t)(day * PART_DAY_S);
    time_t e = s + PART_DAY_S;
    struct tm tm;
    char ymd[16];

    gmtime_r(&s, &tm);
    strftime(ymd, sizeof(ymd), "%Y%m%d", &tm);
    strftime(from, 32, "%Y-%m-%d 00:00:00+00", &tm);
    gmtime_r(&e, &tm);
    strftime(to, 32, "%Y-%m-%d 00:00:00+00", &tm);
    snprintf(name, DP_TYPE_NAME_MAX + 1, "%s%s_%s", DP_PG_PARTITION, ymd, hash);
}

static int
count_row(void *arg, int n, const char *const *vals)
{
    *(uint64_t *)arg = n == 1 && vals[0] != NULL ? strtoull(vals[0], NULL, 10) : 0;
    return 0;
}

/* Begin a transaction of DDL on this schema's tables, serialized with every loader's. */
static int
part_begin(struct ldr_pg *pg)
{
    char sql[128];

    /* DROP TABLE of a partition, and CREATE TABLE ... PARTITION OF, take the parent's lock:
     * they wait for the batches loading into it and those for them, so no row is lost; the
     * lock_timeout keeps a long reader from holding loading up behind them. */
    snprintf(sql, sizeof(sql),
             "BEGIN; SET LOCAL lock_timeout = '5s'; SELECT pg_advisory_xact_lock(%d, %d)",
             LDR_LOCK_CLASS, LDR_LOCK_DDL);
    return ldr_pg_query(pg, sql, 0, NULL, PGRES_TUPLES_OK, NULL);
}

/* End part_begin's transaction: COMMIT when rc is 0, else ROLLBACK. Returns rc or COMMIT's. */
static int
part_end(struct ldr_pg *pg, int rc)
{
    if (rc == 0) {
        rc = ldr_pg_exec(pg, "COMMIT");
    }
    if (rc != 0) {
        PQclear(PQexec(pg->conn, "ROLLBACK"));
    }
    return rc;
}

static int
child_cmp(const void *a, const void *b)
{
    const struct part_child *x = a;
    const struct part_child *y = b;

    return x->day < y->day ? -1 : x->day > y->day;
}

/*
 * Drop t's partitions wholly older than its rule's keep_days, and the keys of their rows, at
 * most PART_DROP_PER_TXN partitions a transaction, oldest first: each DROP holds its
 * partition's locks (table, indexes, TOAST) to the COMMIT, and thousands of them in one
 * transaction (a clock far behind once) outgrow PostgreSQL's lock table ("out of shared
 * memory") and fail every later pass. fn hears each transaction's drops after its COMMIT.
 */
static int
part_drop(struct ldr_pg *pg, const struct ev_type *t, const struct dp_retention_rule *rule,
          struct part_children *c, int64_t now_us, ldr_part_dropped_fn fn, void *arg)
{
    /* A day's partition goes when its end is keep_days behind now: first kept day first. */
    int64_t first_kept = (now_us / 1000000 - (int64_t)rule->keep_days * PART_DAY_S) / PART_DAY_S;
    char keys[LDR_PART_NAME_BUF];
    char from[32];
    char to[32];
    char unused[DP_TYPE_NAME_MAX + 1];
    size_t i = 0;
    int rc = 0;

    qsort(c->v, c->n, sizeof(c->v[0]), child_cmp);
    while (rc == 0 && i < c->n && c->v[i].day < first_kept) {
        struct ldr_part_dropped d = {0};

        rc = part_begin(pg);
        for (int k = 0; rc == 0 && k < PART_DROP_PER_TXN && i < c->n && c->v[i].day < first_kept;
             k++, i++) {
            char sql[PART_SQL_MAX];
            char kind[4];
            uint64_t rows = 0;

            /* Read outside this transaction: another appliance's pass may have dropped it. */
            rc = part_relkind(pg, c->v[i].name, kind);
            if (rc != 0 || kind[0] == '\0') {
                continue;
            }
            snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\"", c->v[i].name);
            rc = ldr_pg_rows(pg, sql, 0, NULL, count_row, &rows);
            if (rc == 0) {
                rc = part_exec(pg, "DROP TABLE \"%s\"", c->v[i].name);
            }
            if (rc == 0) {
                dp_info("retention: partition dropped", "type=%s partition=%s rows=%llu", t->name,
                        c->v[i].name, (unsigned long long)rows);
                d.partitions++;
                d.rows += rows;
            }
        }
        if (rc == 0 && t->keyed) {
            /* The keys of the days dropped so far: up to the last day dropped, or, with every
             * expired partition gone, every key before the first kept day (as ever). */
            bool more = i < c->n && c->v[i].day < first_kept;

            part_name(c->hash, more ? c->v[i - 1].day + 1 : first_kept, unused, from, to);
            ldr_part_key_table(t, keys);
            rc = part_exec(pg, "DELETE FROM %s WHERE received_at < '%s'", keys, from);
        }
        rc = part_end(pg, rc);
        if (rc == 0 && fn != NULL) {
            fn(arg, t, &d);
        }
    }
    return rc;
}

/* Whether pg saw day's partition of registry slot exist (ldr_part_days). */
static bool
part_seen(const struct ldr_pg *pg, size_t slot, int64_t day)
{
    for (size_t i = 0; i < LDR_PART_DAYS_SEEN; i++) {
        if (pg->part_days[slot][i] == day + 1) {
            return true;
        }
    }
    return false;
}

/* Remember that day's partition of slot exists, when no pass drops it yet. */
static void
part_remember(struct ldr_pg *pg, size_t slot, int64_t day, int64_t today)
{
    /* A day before yesterday may be dropped by a pass (keep_days 1) on any connection. */
    if (day < today - 1 || part_seen(pg, slot, day)) {
        return;
    }
    memmove(&pg->part_days[slot][1], &pg->part_days[slot][0],
            (LDR_PART_DAYS_SEEN - 1) * sizeof(pg->part_days[slot][0]));
    pg->part_days[slot][0] = day + 1; /* 0: none */
}

/* Create the partitions of days (n of them, days since the epoch) that c lacks, in the
 * current transaction. */
static int
part_create_days(struct ldr_pg *pg, const struct ev_type *t, const struct part_children *c,
                 const int64_t *days, size_t n, int64_t now_us)
{
    const struct dp_retention_rule *rule = part_rule(pg, t);
    int64_t today = now_us / 1000000 / PART_DAY_S;
    char name[DP_TYPE_NAME_MAX + 1];
    char from[32];
    char to[32];
    int rc = 0;

    for (size_t j = 0; rc == 0 && j < n; j++) {
        size_t i = 0;

        while (i < c->n && c->v[i].day != days[j]) {
            i++;
        }
        if (i < c->n) {
            continue;
        }
        part_name(c->hash, days[j], name, from, to);
        if (rule != NULL && days[j] < today - rule->keep_days) {
            dp_warn("retention: rows older than keep_days load into a partition of their day, "
                    "which the next retention pass drops",
                    "type=%s day=%s keep_days=%d", t->name, from, rule->keep_days);
        }
        /* Under a savepoint: a partition an operator attached (a converted table) may hold
         * the day already, and then the rows go there. */
        rc = part_exec(pg,
                       "SAVEPOINT ldr_part; CREATE TABLE \"%s\" PARTITION OF %s "
                       "FOR VALUES FROM ('%s') TO ('%s')",
                       name, t->table, from, to);
        if (rc == 0) {
            rc = ldr_pg_exec(pg, "RELEASE SAVEPOINT ldr_part");
            dp_debug("retention: partition created", "type=%s partition=%s", t->name, name);
        } else if (strcmp(ldr_pg_sqlstate(pg), "42P17") == 0) {
            dp_debug("retention: a partition already holds the day", "type=%s day=%s", t->name,
                     from);
            rc = ldr_pg_exec(pg, "ROLLBACK TO SAVEPOINT ldr_part; RELEASE SAVEPOINT ldr_part");
        }
    }
    return rc;
}

int
ldr_part_days(struct ldr_pg *pg, const struct ev_type *t, const int64_t *days, size_t n,
              int64_t now_us)
{
    size_t slot = part_slot(t);
    int64_t today = now_us / 1000000 / PART_DAY_S;
    struct part_children *c = NULL;
    char hash[DP_TYPE_NAME_MAX + 1];
    bool all_seen = true;
    int rc;

    if (slot >= EV_REGISTRY_MAX || !pg->parted[slot]) {
        return 0;
    }
    /* A day before yesterday is looked up every time: another connection's pass may have
     * dropped it since this one saw it. */
    for (size_t j = 0; all_seen && j < n; j++) {
        all_seen = days[j] >= today - 1 && part_seen(pg, slot, days[j]);
    }
    if (all_seen) {
        return 0;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return DP_ERR_NOMEM;
    }
    dp_pg_derived_name(hash, "", t->name);
    c->hash = hash;
    rc = part_begin(pg);
    if (rc == 0) {
        rc = part_children_read(pg, t, c);
    }
    if (rc == 0) {
        rc = part_create_days(pg, t, c, days, n, now_us);
    }
    rc = part_end(pg, rc);
    if (rc == 0) {
        for (size_t j = 0; j < n; j++) {
            part_remember(pg, slot, days[j], today);
        }
    } else {
        dp_warn("retention: cannot create the partitions of a batch's days, retried",
                "type=%s error=%s", t->name, ldr_pg_error(pg));
    }
    free(c);
    return rc == DP_ERR_DATA ? DP_ERR_RETRY : rc;
}

int
ldr_part_pass(struct ldr_pg *pg, int64_t now_us, ldr_part_dropped_fn fn, void *arg)
{
    struct part_children *c = NULL;
    char hash[DP_TYPE_NAME_MAX + 1];
    int64_t today = now_us / 1000000 / PART_DAY_S;
    int64_t ahead[PART_AHEAD_DAYS + 1];
    int failed = 0;

    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return DP_ERR_NOMEM;
    }
    for (int d = 0; d <= PART_AHEAD_DAYS; d++) {
        ahead[d] = today + d;
    }
    for (size_t i = 0; i < ev_registry_len && i < EV_REGISTRY_MAX; i++) {
        const struct ev_type *t = ev_registry[i];
        const struct dp_retention_rule *rule = part_rule(pg, t);
        int rc;

        if (rule == NULL || !pg->parted[i]) {
            continue;
        }
        dp_pg_derived_name(hash, "", t->name);
        c->hash = hash;
        rc = part_begin(pg);
        if (rc == 0) {
            rc = part_children_read(pg, t, c);
        }
        rc = part_end(pg, rc);
        if (rc == 0) {
            rc = part_drop(pg, t, rule, c, now_us, fn, arg);
        }
        /* Each batch creates the days it holds (ldr_part_days); today's and the days ahead
         * are made here so that a quiet table has them too. */
        if (rc == 0) {
            memset(pg->part_days[i], 0, sizeof(pg->part_days[i]));
            rc = ldr_part_days(pg, t, ahead, PART_AHEAD_DAYS + 1, now_us);
        }
        if (rc != 0) {
            /* One table's failure stops neither the other tables' passes nor any loading. */
            dp_warn("retention: pass failed, retried next run", "type=%s error=%s", t->name,
                    ldr_pg_error(pg));
            failed = rc == DP_ERR_NOMEM ? rc : DP_ERR_RETRY;
        }
    }
    free(c);
    return failed;
}
