/*
 * err.h - the one error vocabulary of datapipe.
 * Every fallible function returns 0 or a negative enum dp_err; library
 * errors (LMDB, libpq, jansson) are translated where they enter our code.
 */
#ifndef DP_ERR_H
#define DP_ERR_H

#include <stdbool.h>
#include <stddef.h>

enum dp_err {
    DP_OK = 0,
    DP_ERR_NOMEM = -1,    /* allocation failed */
    DP_ERR_INVALID = -2,  /* bad argument or bad input data */
    DP_ERR_FULL = -3,     /* queue map full or disk full: retry later (HTTP 503) */
    DP_ERR_IO = -4,       /* other storage or system error */
    DP_ERR_RETRY = -5,    /* transient: PostgreSQL unreachable, connection lost */
    DP_ERR_NOTFOUND = -6, /* no such key, row or file */
    DP_ERR_CONFIG = -7,   /* configuration rejected */
    DP_ERR_BUSY = -8,     /* a lock is held by another process */
    DP_ERR_CLOSED = -9,   /* the object is shutting down */
    DP_ERR_DATA = -10,    /* PostgreSQL rejected the data itself (SQLSTATE 22, 23) */
};

/*
 * dp_strerror - a short, static, human-readable text for an error code.
 * Unknown codes give "unknown error". Never returns NULL.
 */
const char *dp_strerror(int err);

/* A growing text of errors, one a line: what a configuration load reports (etc/). */
struct dp_errs {
    char *text; /* NULL until the first error; malloc'd, the owner frees */
    size_t len; /* bytes of text, without the NUL */
    int count;  /* errors (lines) */
    bool nomem; /* a line could not be added: report DP_ERR_NOMEM */
};

/*
 * dp_errs_add - append one error line to e, formatted like printf (cut at 1023 bytes) and
 * ended with '\n'; count it. Out of memory: e->nomem is set, e->text stays as it was.
 */
void dp_errs_add(struct dp_errs *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
