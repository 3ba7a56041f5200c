/*
 * civet_time.c - a gmtime() that is safe in civetweb's worker threads. libcivetweb, built without
 * REENTRANT_TIME as distributions ship it, formats every Date and Last-Modified header with
 * gmtime(), whose result glibc keeps in one static struct for all threads: two workers answering
 * at once write it together (ThreadSanitizer reports it) and one may send the other's time. The
 * dynamic linker binds civetweb's call to this definition in the server binary, which keeps a
 * struct per thread. Our own code calls gmtime_r (etc/log.c); nothing here may do more.
 */
#include <time.h>

struct tm *
gmtime(const time_t *t)
{
    static _Thread_local struct tm tm;

    return gmtime_r(t, &tm);
}
