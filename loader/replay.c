/*
 * replay.c - datapipe-loader --replay-dead-letters and --dead-letters: dead letters that
 * validate with today's registry move into their tables in the transaction that deletes
 * them from dead_letter, a chunk of rows per transaction, so a replay killed anywhere has
 * moved each row once or not at all. Rows still invalid stay, with the new error and one
 * more replay counted. A row of a type this configuration does not declare is left exactly as
 * it is (its error is the real one; "unknown type" would only say what the replayer lacks).
 * Never touches the queue.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etc/err.h"
#include "etc/log.h"
#include "loader/internal.h"

#define RPL_CHUNK_MAX 1000                    /* rows per transaction, at most */
#define RPL_SEQS_MAX (RPL_CHUNK_MAX * 21 + 3) /* "{n,n,...}" text of a chunk's seqs */

/* One dead letter of the chunk. Its bytes and COPY row live in the replay's buffers. */
struct rpl_row {
    int64_t seq;                /* dead_letter.seq */
    const struct ev_type *type; /* NULL: not in the registry */
    char type_name[QUEUE_TYPE_MAX + 1];
    size_t raw_off; /* into rpl.raw */
    size_t raw_len;
    size_t key_off; /* its idempotency key, into rpl.raw */
    size_t key_len; /* 0: none */
    size_t row_off; /* the COPY row, into rpl.rows */
    size_t row_len;
    int64_t received_us;
    uint8_t uuid[16];
    bool new_id;                       /* no event_id stored: uuid is a fresh UUIDv7 */
    char source[QUEUE_SOURCE_MAX + 1]; /* the API key's name it came with; "": none */
    bool ok;                           /* validates and encodes: goes into its table */
    bool skip;                         /* its type is not in the registry: left untouched */
    char error[LDR_ERR_MAX + 32];      /* why not, when !ok */
};

struct rpl {
    struct ldr_pg *pg;
    const struct dp_cli *cli;
    size_t chunk; /* rows per transaction */
    struct rpl_row *rows;
    size_t n;
    struct ev_buf raw;
    struct ev_buf rows_buf; /* COPY text rows, one per ok row */
    struct ev_buf copy;     /* one try's COPY text */
    int64_t after;          /* the chunk starts after this seq */
    uint64_t replayed;
    uint64_t invalid;
    uint64_t skipped;        /* rows of types the registry lacks */
    char skipped_types[256]; /* their names, "a,b", as many as fit */
};

static int
hex_val(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

/* ldr_pg_rows callback of the fetch: seq, type, hex raw, received_us, event_id, source, key. */
static int
rpl_fetch_one(void *arg, int ncols, const char *const *vals)
{
    struct rpl *p = arg;
    struct rpl_row *r = &p->rows[p->n];
    size_t hex_len;
    int rc;

    if (ncols < 7 || vals[0] == NULL || vals[2] == NULL || strlen(vals[2]) % 2 != 0) {
        return DP_ERR_IO;
    }
    hex_len = strlen(vals[2]);
    memset(r, 0, sizeof(*r));
    r->seq = strtoll(vals[0], NULL, 10);
    snprintf(r->type_name, sizeof(r->type_name), "%s", vals[1] != NULL ? vals[1] : "");
    r->type = ev_lookup(r->type_name, strlen(r->type_name));
    r->raw_off = p->raw.len;
    r->raw_len = hex_len / 2;
    rc = ev_buf_reserve(&p->raw, r->raw_len);
    for (size_t i = 0; rc == 0 && i < r->raw_len; i++) {
        int hi = hex_val(vals[2][2 * i]);
        int lo = hex_val(vals[2][2 * i + 1]);

        if (hi < 0 || lo < 0) {
            return DP_ERR_IO;
        }
        p->raw.data[p->raw.len++] = (char)(hi * 16 + lo);
    }
    r->received_us = vals[3] != NULL ? strtoll(vals[3], NULL, 10) : dp_now_us();
    if (vals[4] == NULL || ev_uuid_parse(vals[4], r->uuid) != 0) {
        ev_uuid7(r->uuid);
        r->new_id = true;
    }
    snprintf(r->source, sizeof(r->source), "%s", vals[5] != NULL ? vals[5] : "");
    r->key_off = p->raw.len;
    r->key_len = vals[6] != NULL ? strlen(vals[6]) : 0;
    if (rc == 0) {
        rc = ev_buf_put(&p->raw, vals[6], r->key_len);
    }
    p->after = r->seq;
    p->n++;
    return rc;
}

/* Validate r with today's registry and encode its COPY row; sets r->ok or r->error. */
static int
rpl_check(struct rpl *p, struct rpl_row *r)
{
    struct ev_batch b = {0};
    struct ev_stored st = {
        .json = p->raw.data + r->raw_off,
        .json_len = r->raw_len,
        .received_us = r->received_us,
        .now_us = dp_now_us(),
        .source = r->source[0] != '\0' ? r->source : NULL,
        .source_len = strlen(r->source),
        .key = r->key_len > 0 ? p->raw.data + r->key_off : NULL,
        .key_len = r->key_len,
    };
    char err[EV_ERR_MAX] = "";
    int rc = 0;

    r->ok = false;
    r->skip = r->type == NULL;
    if (r->skip) {
        return 0;
    }
    rc = ev_parse_body(st.json, st.json_len, r->type, &b);
    if (rc == DP_ERR_NOMEM) {
        goto out;
    }
    if (rc != 0 || b.n != 1) {
        snprintf(r->error, sizeof(r->error), "not one JSON event");
        rc = 0;
        goto out;
    }
    if (b.items[0].error != NULL) {
        snprintf(r->error, sizeof(r->error), "%s", b.items[0].error);
        goto out;
    }
    /* The key rides in the row like the loader's (with its digest): a key the table holds
     * already makes PostgreSQL refuse the row, which then stays a dead letter. */
    memcpy(st.uuid, r->uuid, sizeof(st.uuid));
    r->row_off = p->rows_buf.len;
    rc = ev_encode(r->type, &st, &p->rows_buf, err);
    if (rc == DP_ERR_INVALID) {
        p->rows_buf.len = r->row_off;
        snprintf(r->error, sizeof(r->error), "%s", err);
        rc = 0;
        goto out;
    }
    if (rc == 0) {
        r->row_len = p->rows_buf.len - r->row_off;
        r->ok = true;
    }
out:
    ev_batch_free(&b);
    return rc;
}

/* "{s1,s2,...}": the seqs of rows[idx[0..n-1]], as a bigint[] parameter. */
static void
rpl_seqs(const struct rpl *p, const size_t *idx, size_t n, char *out, size_t len)
{
    size_t used = (size_t)snprintf(out, len, "{");

    for (size_t i = 0; i < n && used < len; i++) {
        used += (size_t)snprintf(out + used, len - used, "%s%" PRId64, i > 0 ? "," : "",
                                 p->rows[idx[i]].seq);
    }
    if (used < len) {
        snprintf(out + used, len - used, "}");
    }
}

/*
 * The rows of rows[idx[0..n-1]] that ldr_keyed_load left out (their key held by another
 * event, with the same bytes or not) stay dead letters, with the loader's text for them.
 */
static int
rpl_keyed_left(struct rpl *p, const size_t *idx, size_t n, const struct ldr_keyed_lefts *left)
{
    for (size_t j = 0; j < left->n; j++) {
        size_t i = 0;

        while (i < n && memcmp(p->rows[idx[i]].uuid, left->v[j].id, 16) != 0) {
            i++;
        }
        if (i == n) {
            return DP_ERR_IO; /* a row PostgreSQL names that these rows lack */
        }
        p->rows[idx[i]].ok = false;
        ldr_keyed_text(p->rows[idx[i]].error, sizeof(p->rows[idx[i]].error),
                       p->raw.data + p->rows[idx[i]].key_off, p->rows[idx[i]].key_len, &left->v[j]);
    }
    return 0;
}

/*
 * One try at loading rows[idx[0..n-1]] of type t under a savepoint. A keyed type's rows go
 * the loader's keyed way (ldr_keyed_load: for a partitioned table through its key table), so
 * a row whose key the table holds stays a dead letter. Returns 0, DP_ERR_DATA (PostgreSQL
 * refused them: rolled back to the savepoint), DP_ERR_RETRY, DP_ERR_NOMEM, DP_ERR_IO.
 */
static int
rpl_try(struct rpl *p, const struct ev_type *t, const size_t *idx, size_t n)
{
    struct ldr_keyed_lefts left = {0};
    uint64_t inserted = 0;
    char target[128];
    bool upsert = t->load == EV_LOAD_UPSERT;
    int rc;

    p->copy.len = 0;
    for (size_t i = 0; i < n; i++) {
        const struct rpl_row *r = &p->rows[idx[i]];

        if (ev_buf_put(&p->copy, p->rows_buf.data + r->row_off, r->row_len) != 0) {
            return DP_ERR_NOMEM;
        }
    }
    /* The stage is a temp table (stage_ddl): named in pg_temp, never the schema's. */
    snprintf(target, sizeof(target), "%s%s%s", upsert ? "pg_temp." : "", t->table,
             upsert ? "_stage" : "");
    rc = ldr_pg_exec(p->pg, "SAVEPOINT rpl");
    if (rc == 0 && upsert && t->stage_ddl != NULL) {
        rc = ldr_pg_exec(p->pg, t->stage_ddl);
    }
    if (rc == 0 && t->keyed) {
        rc = ldr_keyed_load(p->pg, t, p->copy.data, p->copy.len, false, true, &inserted, &left);
    } else if (rc == 0) {
        rc = ldr_pg_copy(p->pg, target, t->copy_columns, p->copy.data, p->copy.len, false);
    }
    if (rc == 0 && upsert) {
        rc = ldr_pg_exec(p->pg, t->upsert_sql);
    }
    if (rc == 0) {
        rc = ldr_pg_exec(p->pg, "RELEASE SAVEPOINT rpl") == 0 ? 0 : DP_ERR_RETRY;
    }
    if (rc == 0) {
        rc = rpl_keyed_left(p, idx, n, &left);
        free(left.v);
        return rc;
    }
    free(left.v);
    if (rc == DP_ERR_DATA &&
        ldr_pg_exec(p->pg, "ROLLBACK TO SAVEPOINT rpl; RELEASE SAVEPOINT rpl") != 0) {
        rc = DP_ERR_RETRY;
    }
    return rc;
}

/* Load the chunk's ok rows of type t; one by one when PostgreSQL refuses them together. */
static int
rpl_load_type(struct rpl *p, size_t ti, size_t *idx)
{
    const struct ev_type *t = ev_registry[ti];
    size_t n = 0;
    int rc;

    for (size_t i = 0; i < p->n; i++) {
        if (p->rows[i].ok && p->rows[i].type == t) {
            idx[n++] = i;
        }
    }
    if (n == 0) {
        return 0;
    }
    rc = rpl_try(p, t, idx, n);
    if (rc != DP_ERR_DATA) {
        return rc;
    }
    rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct rpl_row *r = &p->rows[idx[i]];

        rc = n > 1 ? rpl_try(p, t, &idx[i], 1) : DP_ERR_DATA;
        if (rc == DP_ERR_DATA) {
            r->ok = false;
            snprintf(r->error, sizeof(r->error), "%s (SQLSTATE %s)", ldr_pg_error(p->pg),
                     ldr_pg_sqlstate(p->pg));
            rc = 0;
        }
    }
    return rc;
}

/* The chunk's bookkeeping in dead_letter: delete the moved rows, update the others. */
static int
rpl_settle(struct rpl *p, size_t *idx)
{
    static char seqs[RPL_SEQS_MAX];
    char seq_s[24];
    char id[EV_UUID_TEXT];
    const char *params[] = {seq_s, NULL, id};
    const char *del[] = {seqs};
    size_t n = 0;
    int rc = 0;

    for (size_t i = 0; i < p->n; i++) {
        struct rpl_row *r = &p->rows[i];

        if (r->ok) {
            idx[n++] = i;
            continue;
        }
        if (r->skip) {
            continue;
        }
        snprintf(seq_s, sizeof(seq_s), "%" PRId64, r->seq);
        params[1] = r->error;
        ev_uuid_format(r->uuid, id);
        rc = ldr_pg_exec_params(p->pg,
                                "UPDATE dead_letter SET error = $2, replays = replays + 1, "
                                "replayed_at = now(), event_id = coalesce(event_id, $3::uuid) "
                                "WHERE seq = $1::bigint",
                                3, params);
        if (rc != 0) {
            return rc;
        }
    }
    if (n > 0) {
        rpl_seqs(p, idx, n, seqs, sizeof(seqs));
        rc = ldr_pg_exec_params(p->pg, "DELETE FROM dead_letter WHERE seq = ANY($1::bigint[])", 1,
                                del);
    }
    return rc;
}

/* Rows of old dead letters get the id they will keep; the key update joins on it. */
static int
rpl_store_new_ids(struct rpl *p)
{
    char seq_s[24];
    char id[EV_UUID_TEXT];
    const char *params[] = {seq_s, id};
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < p->n; i++) {
        if (p->rows[i].new_id && !p->rows[i].skip) {
            snprintf(seq_s, sizeof(seq_s), "%" PRId64, p->rows[i].seq);
            ev_uuid_format(p->rows[i].uuid, id);
            rc = ldr_pg_exec_params(p->pg,
                                    "UPDATE dead_letter SET event_id = $2::uuid "
                                    "WHERE seq = $1::bigint",
                                    2, params);
        }
    }
    return rc;
}

/*
 * One transaction: take the next chunk of dead letters (locked), check and load them,
 * settle dead_letter, COMMIT (ROLLBACK with --dry-run). Sets *done when none was left.
 */
static int
rpl_chunk(struct rpl *p, size_t *idx, bool *done)
{
    char after_s[24];
    char limit_s[24];
    const char *params[] = {after_s, p->cli->only_type != NULL ? p->cli->only_type : "",
                            p->cli->only_stage != NULL ? p->cli->only_stage : "", limit_s};
    int rc;

    p->n = 0;
    p->raw.len = 0;
    p->rows_buf.len = 0;
    snprintf(after_s, sizeof(after_s), "%" PRId64, p->after);
    snprintf(limit_s, sizeof(limit_s), "%zu", p->chunk);
    rc = ldr_pg_exec(p->pg, "BEGIN");
    if (rc == 0) {
        rc = ldr_pg_rows(p->pg,
                         "SELECT seq, event_type, encode(raw, 'hex'), "
                         "(extract(epoch FROM received_at) * 1000000)::bigint, event_id, source, "
                         "idempotency_key "
                         "FROM dead_letter WHERE seq > $1::bigint "
                         "AND ($2 = '' OR event_type = $2) AND ($3 = '' OR stage = $3) "
                         "ORDER BY seq LIMIT $4::bigint FOR UPDATE SKIP LOCKED",
                         4, params, rpl_fetch_one, p);
    }
    *done = rc == 0 && p->n == 0;
    for (size_t i = 0; rc == 0 && i < p->n; i++) {
        rc = rpl_check(p, &p->rows[i]);
    }
    if (rc == 0) {
        rc = rpl_store_new_ids(p);
    }
    for (size_t ti = 0; rc == 0 && ti < ev_registry_len; ti++) {
        rc = rpl_load_type(p, ti, idx);
    }
    if (rc == 0) {
        rc = rpl_settle(p, idx);
    }
    if (rc == 0) {
        rc = ldr_pg_exec(p->pg, p->cli->dry_run ? "ROLLBACK" : "COMMIT");
    }
    if (rc != 0) {
        ldr_pg_exec(p->pg, "ROLLBACK");
        return rc;
    }
    for (size_t i = 0; i < p->n; i++) {
        if (p->rows[i].ok) {
            p->replayed++;
        } else if (p->rows[i].skip) {
            const char *name = p->rows[i].type_name[0] != '\0' ? p->rows[i].type_name : "(none)";

            p->skipped++;
            ldr_held_note(p->skipped_types, sizeof(p->skipped_types), name, strlen(name));
        } else {
            p->invalid++;
            dp_info("dead letter still invalid", "seq=%" PRId64 " type=%s error=%s", p->rows[i].seq,
                    p->rows[i].type_name, p->rows[i].error);
        }
    }
    return 0;
}

/* ldr_pg_rows callback of --dead-letters: one line per (type, stage, error). */
static int
rpl_list_one(void *arg, int ncols, const char *const *vals)
{
    (void)arg;
    if (ncols >= 5) {
        printf("%-16s %-6s %8s %8s  %s\n", vals[0] != NULL ? vals[0] : "-", vals[1], vals[2],
               vals[3], vals[4]);
    }
    return 0;
}

static int
rpl_list(struct rpl *p)
{
    const char *params[] = {p->cli->only_type != NULL ? p->cli->only_type : "",
                            p->cli->only_stage != NULL ? p->cli->only_stage : ""};

    printf("%-16s %-6s %8s %8s  %s\n", "TYPE", "STAGE", "COUNT", "REPLAYS", "ERROR");
    return ldr_pg_rows(p->pg,
                       "SELECT event_type, stage, count(*), sum(replays), left(error, 200) "
                       "FROM dead_letter WHERE ($1 = '' OR event_type = $1) "
                       "AND ($2 = '' OR stage = $2) "
                       "GROUP BY event_type, stage, left(error, 200) "
                       "ORDER BY count(*) DESC, event_type, stage",
                       2, params, rpl_list_one, p);
}

/* The closing line; rows skipped for their type are counted there and explained on stderr. */
static void
rpl_report(const struct rpl *p)
{
    char skipped[48] = "";

    if (p->skipped > 0) {
        snprintf(skipped, sizeof(skipped), " skipped_unknown_type=%" PRIu64, p->skipped);
    }
    printf("%s: replayed=%" PRIu64 " still_invalid=%" PRIu64 "%s\n",
           p->cli->dry_run ? "dry run, nothing changed" : "replay done", p->replayed, p->invalid,
           skipped);
    fflush(stdout);
    if (p->skipped > 0) {
        fprintf(stderr,
                "datapipe-loader: skipped %" PRIu64 " dead letter%s of types this "
                "configuration does not declare (%s): their errors are kept; replay them with "
                "the configuration that declares those types\n",
                p->skipped, p->skipped == 1 ? "" : "s",
                p->skipped_types[0] != '\0' ? p->skipped_types : "-");
    }
}

static int
rpl_replay(struct rpl *p)
{
    size_t *idx = NULL;
    bool done = false;
    int rc = 0;

    p->rows = calloc(p->chunk, sizeof(*p->rows));
    idx = calloc(p->chunk, sizeof(*idx));
    if (p->rows == NULL || idx == NULL) {
        rc = DP_ERR_NOMEM;
        goto out;
    }
    while (rc == 0 && !done) {
        rc = rpl_chunk(p, idx, &done);
    }
    if (rc == 0) {
        rpl_report(p);
    }
out:
    free(idx);
    return rc;
}

int
ldr_replay_main(const struct dp_cli *cli, const struct dp_config *cfg)
{
    struct rpl p;
    char err[LDR_ERR_MAX] = "";
    char lock_id[320];
    int rc;

    memset(&p, 0, sizeof(p));
    p.cli = cli;
    if (cli->replay_dead_letters && cli->only_type != NULL &&
        ev_lookup(cli->only_type, strlen(cli->only_type)) == NULL) {
        /* A usage error: every row it names would be skipped; say so before connecting. */
        char msg[EV_ERR_MAX];

        ev_unknown_type(msg, cli->only_type, strlen(cli->only_type));
        fprintf(stderr,
                "datapipe-loader: --type %s: %s: not declared by this configuration; "
                "nothing replayed\n",
                cli->only_type, msg);
        return 2;
    }
    p.chunk = cfg->loader_batch_rows > 0 && cfg->loader_batch_rows < RPL_CHUNK_MAX
                  ? (size_t)cfg->loader_batch_rows
                  : RPL_CHUNK_MAX;
    /* Its own advisory lock key: a loader starting meanwhile must not fence this session. */
    snprintf(lock_id, sizeof(lock_id), "%s/replay", cfg->queue_id);
    /* No instance id: replay moves rows between tables and never touches a queue. */
    rc = ldr_pg_connect(&p.pg, cfg->database_conninfo, cfg->database_schema, lock_id, "", err,
                        sizeof(err));
    if (rc == 0) {
        rc = ldr_pg_ensure_schema(p.pg, cfg->database_schema);
    }
    if (rc == 0) {
        rc = cli->dead_letters ? rpl_list(&p) : rpl_replay(&p);
    }
    if (rc != 0) {
        fprintf(stderr, "datapipe-loader: %s failed: %s\n",
                cli->dead_letters ? "--dead-letters" : "--replay-dead-letters",
                err[0] != '\0'                                  ? err
                : p.pg != NULL && ldr_pg_error(p.pg)[0] != '\0' ? ldr_pg_error(p.pg)
                                                                : dp_strerror(rc));
    }
    ldr_pg_close(p.pg);
    free(p.rows);
    ev_buf_free(&p.raw);
    ev_buf_free(&p.rows_buf);
    ev_buf_free(&p.copy);
    return rc == 0 ? 0 : 1;
}
