/*
 * lib_loader.c - helpers for the loader's tests (see lib_loader.h). Test code only.
 */
#include "tests/lib/lib_loader.h"

#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "etc/err.h"
#include "etc/log.h"
#include "events/events.h"
#include "tests/lib/lib_test.h"

#define TL_CHUNK 10000

int64_t
tl_now_us(void)
{
    return dp_now_us();
}

void
tl_setup(struct tl_env *e, const char *name)
{
    PGresult *r;
    char sql[256];

    memset(e, 0, sizeof(*e));
    e->dir = t_tmpdir();
    ck_assert(asprintf(&e->queue_path, "%s/queue", e->dir) > 0);
    snprintf(e->schema, sizeof(e->schema), "ldr_%s_%d", name, (int)getpid());
    snprintf(e->queue_id, sizeof(e->queue_id), "q_%s_%d", name, (int)getpid());
    ck_assert_int_eq(queue_open(&e->q, e->queue_path, TL_MAP_BYTES, false), 0);
    e->pg = PQconnectdb(t_pg_conninfo());
    ck_assert_msg(PQstatus(e->pg) == CONNECTION_OK, "connect: %s", PQerrorMessage(e->pg));
    snprintf(sql, sizeof(sql),
             "SET client_min_messages = warning; DROP SCHEMA IF EXISTS %s "
             "CASCADE; SET search_path TO %s",
             e->schema, e->schema);
    r = PQexec(e->pg, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK, "%s", PQerrorMessage(e->pg));
    PQclear(r);
}

void
tl_teardown(struct tl_env *e)
{
    char sql[128];

    if (e->pg != NULL) {
        snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", e->schema);
        PQclear(PQexec(e->pg, sql));
        PQfinish(e->pg);
    }
    queue_close(e->q);
    t_rmtree(e->dir);
    free(e->dir);
    free(e->queue_path);
    memset(e, 0, sizeof(*e));
}

struct ldr_options
tl_options(const struct tl_env *e, int workers, int batch_rows)
{
    struct ldr_options o = {
        .queue_id = e->queue_id,
        .conninfo = t_pg_conninfo(),
        .schema = e->schema,
        .batch_rows = batch_rows,
        .workers = workers,
        .give_up_attempts = 0,
        .fault = NULL,
    };

    return o;
}

static void
tl_fill_event(struct queue_event *ev, const char *type, const char *json, size_t len,
              uint32_t flags, const char *error, int64_t received_us)
{
    memset(ev, 0, sizeof(*ev));
    ev_uuid7(ev->uuid);
    ev->received_us = received_us != 0 ? received_us : tl_now_us();
    ev->type = type;
    ev->type_len = strlen(type);
    ev->flags = flags;
    ev->error = error;
    ev->error_len = error != NULL ? strlen(error) : 0;
    ev->json = json;
    ev->json_len = len;
}

static void
tl_uuid_text(const uint8_t uuid[16], char *out)
{
    struct ev_buf b = {0};

    ck_assert_int_eq(ev_buf_put_uuid(&b, uuid), 0);
    ck_assert_uint_eq(b.len, 36);
    memcpy(out, b.data, 36);
    out[36] = '\0';
    ev_buf_free(&b);
}

void
tl_append_key(struct tl_env *e, const char *type, const char *json, const char *key,
              int64_t received_us)
{
    struct queue_event ev;

    tl_fill_event(&ev, type, json, strlen(json), 0, NULL, received_us);
    if (key != NULL) {
        ev.key = key;
        ev.key_len = strlen(key);
        ev_digest(json, ev.json_len, ev.digest);
        ev.answer = 202;
    }
    ck_assert_int_eq(queue_append(e->q, &ev, 1), 0);
    ck_assert_int_eq(ev.dedup, QUEUE_DEDUP_NEW);
}

uint64_t
tl_append(struct tl_env *e, const char *type, const char *json, uint32_t flags, const char *error,
          int64_t received_us, char *uuid_text)
{
    struct queue_event ev;

    tl_fill_event(&ev, type, json, strlen(json), flags, error, received_us);
    ck_assert_int_eq(queue_append(e->q, &ev, 1), 0);
    if (uuid_text != NULL) {
        tl_uuid_text(ev.uuid, uuid_text);
    }
    return ev.seq;
}

void
tl_append_gen(struct tl_env *e, const char *type, uint64_t n, tl_gen_fn gen, char *ids)
{
    struct queue_event *evs = calloc(TL_CHUNK, sizeof(*evs));
    char *texts = malloc((size_t)TL_CHUNK * 512);
    uint64_t done = 0;

    ck_assert(evs != NULL && texts != NULL);
    while (done < n) {
        size_t k = n - done < TL_CHUNK ? (size_t)(n - done) : TL_CHUNK;

        for (size_t i = 0; i < k; i++) {
            char *t = texts + i * 512;

            gen(done + i, t, 512);
            tl_fill_event(&evs[i], type, t, strlen(t), 0, NULL, 0);
        }
        ck_assert_int_eq(queue_append(e->q, evs, k), 0);
        for (size_t i = 0; ids != NULL && i < k; i++) {
            tl_uuid_text(evs[i].uuid, ids + (done + i) * 37);
        }
        done += k;
    }
    free(texts);
    free(evs);
}

static PGresult *
tl_vquery(struct tl_env *e, ExecStatusType want, const char *fmt, va_list ap)
{
    char *sql = NULL;
    PGresult *r;

    ck_assert(vasprintf(&sql, fmt, ap) > 0);
    r = PQexec(e->pg, sql);
    ck_assert_msg(PQresultStatus(r) == want, "%s: %s", sql, PQerrorMessage(e->pg));
    free(sql);
    return r;
}

void
tl_exec(struct tl_env *e, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    PQclear(tl_vquery(e, PGRES_COMMAND_OK, fmt, ap));
    va_end(ap);
}

long long
tl_int(struct tl_env *e, const char *fmt, ...)
{
    va_list ap;
    PGresult *r;
    long long v;

    va_start(ap, fmt);
    r = tl_vquery(e, PGRES_TUPLES_OK, fmt, ap);
    va_end(ap);
    ck_assert_int_eq(PQntuples(r), 1);
    v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

char *
tl_str(struct tl_env *e, const char *fmt, ...)
{
    va_list ap;
    PGresult *r;
    char *v = NULL;

    va_start(ap, fmt);
    r = tl_vquery(e, PGRES_TUPLES_OK, fmt, ap);
    va_end(ap);
    ck_assert_int_eq(PQntuples(r), 1);
    if (!PQgetisnull(r, 0, 0)) {
        v = strdup(PQgetvalue(r, 0, 0));
        ck_assert(v != NULL);
    }
    PQclear(r);
    return v;
}

uint64_t
tl_queued(struct tl_env *e)
{
    struct queue_stats st;

    ck_assert_int_eq(queue_stats(e->q, &st), 0);
    return st.events;
}

int64_t
tl_meta(struct tl_env *e, const char *name)
{
    int64_t v = 0;
    int rc = queue_meta_get(e->q, name, &v);

    ck_assert(rc == 0 || rc == DP_ERR_NOTFOUND);
    return v;
}

char *
tl_config_file(const struct tl_env *e, int workers, int batch_rows)
{
    char *text = NULL;
    char *path;

    ck_assert(asprintf(&text,
                       "{\"queue\": {\"path\": \"%s\", \"max_bytes\": %llu, \"id\": \"%s\", "
                       "\"sync\": false},\n"
                       " \"database\": {\"conninfo\": \"%s\", \"schema\": \"%s\"},\n"
                       " \"loader\": {\"workers\": %d, \"batch_rows\": %d},\n"
                       " \"log\": {\"level\": \"warn\"}}\n",
                       e->queue_path, (unsigned long long)TL_MAP_BYTES, e->queue_id,
                       t_pg_conninfo(), e->schema, workers, batch_rows) > 0);
    path = t_write_file(e->dir, "loader.json", text, -1);
    free(text);
    return path;
}
