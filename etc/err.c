/*
 * err.c - texts for enum dp_err.
 */
#include "err.h"

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
