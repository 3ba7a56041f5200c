/*
 * err.c - texts for enum dp_err, and the growing text of errors a configuration load fills
 * (struct dp_errs).
 */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *
dp_strerror(int err)
{
    switch (err) {
    case DP_OK:
        return "success";
    case DP_ERR_NOMEM:
        return "out of memory";
    case DP_ERR_INVALID:
        return "invalid input";
    case DP_ERR_FULL:
        return "queue full";
    case DP_ERR_IO:
        return "I/O error";
    case DP_ERR_RETRY:
        return "temporarily unavailable";
    case DP_ERR_NOTFOUND:
        return "not found";
    case DP_ERR_CONFIG:
        return "configuration error";
    case DP_ERR_BUSY:
        return "busy: held by another process";
    case DP_ERR_CLOSED:
        return "shutting down";
    case DP_ERR_DATA:
        return "data rejected by the database";
    default:
        return "unknown error";
    }
}

void
dp_errs_add(struct dp_errs *e, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    size_t n;
    char *p;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    n = strlen(line);
    p = realloc(e->text, e->len + n + 2);
    if (p == NULL) {
        e->nomem = true;
        return;
    }
    e->text = p;
    memcpy(e->text + e->len, line, n);
    e->len += n;
    e->text[e->len++] = '\n';
    e->text[e->len] = '\0';
    e->count++;
}
