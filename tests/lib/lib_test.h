/*
 * lib_test.h - small helpers the test programs share: temporary directories,
 * files, the PostgreSQL harness's conninfo. Test code only.
 */
#ifndef DP_LIB_TEST_H
#define DP_LIB_TEST_H

#include <stddef.h>

/* A new empty directory under $TMPDIR (or /tmp); malloc'd path. Aborts on failure. */
char *t_tmpdir(void);

/*
 * A new empty directory inside base (made by an earlier t_tmpdir, or a build tree when a
 * benchmark needs a real disk rather than a tmpfs /tmp); malloc'd path. Aborts on failure.
 */
char *t_tmpdir_in(const char *base);

/* Remove a directory tree (rm -rf). NULL-safe. */
void t_rmtree(const char *path);

/* Write len bytes (len < 0: strlen) to dir/name; returns the malloc'd path. Aborts on failure. */
char *t_write_file(const char *dir, const char *name, const char *text, long len);

/*
 * The conninfo of the PostgreSQL started by tests/pg (DP_PG_CONNINFO).
 * Aborts with a clear message when unset: tests never skip for lack of it.
 */
const char *t_pg_conninfo(void);

#endif
