/*
 * conn.c - a worker's PostgreSQL connection: opened on first use with the run's epoch and
 * retention rules and the tables made sure of (tables.c), closed after a failure or when
 * idle long enough that a server or pooler may have dropped it. loader.c and identity.c use
 * it; it decides nothing about what a failure means.
 */
#include <stdint.h>
#include <stdio.h>

#include "etc/err.h"
#include "etc/log.h"
#include "loader/internal.h"

#define LDR_IDLE_MS 60000 /* reconnect a connection idle longer than this */

void
ldr_close(struct ldr_worker *w)
{
    ldr_pg_close(w->pg);
    w->pg = NULL;
}

int
ldr_ensure(struct ldr_worker *w, char *err, size_t len)
{
    struct ldr *l = w->l;
    int64_t now_ms = dp_mono_ms();
    int rc = 0;

    if (w->pg != NULL && now_ms - w->used_ms > LDR_IDLE_MS) {
        ldr_close(w);
    }
    if (w->pg == NULL) {
        rc = ldr_pg_connect(&w->pg, l->conninfo, l->schema, l->queue_id, l->instance, err, len);
        if (rc == 0) {
            ldr_pg_set_epoch(w->pg, l->epoch);
            ldr_pg_set_retention(w->pg, l->retention);
        }
        if (rc == 0) {
            rc = ldr_pg_ensure_schema(w->pg, l->schema);
        }
        if (rc != 0 && w->pg != NULL) {
            snprintf(err, len, "%s", ldr_pg_error(w->pg));
            ldr_close(w);
        }
    }
    w->used_ms = now_ms;
    return rc;
}
