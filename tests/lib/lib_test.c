/*
 * lib_test.c - helpers shared by the test programs (see lib_test.h).
 */
#include "tests/lib/lib_test.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *
t_tmpdir_in(const char *base)
{
    char *path;

    if (asprintf(&path, "%s/dp-test.XXXXXX", base) < 0 || mkdtemp(path) == NULL) {
        perror("t_tmpdir");
        abort();
    }
    return path;
}

char *
t_tmpdir(void)
{
    const char *base = getenv("TMPDIR");

    return t_tmpdir_in(base == NULL || base[0] == '\0' ? "/tmp" : base);
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void
t_rmtree(const char *path)
{
    if (path != NULL) {
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    }
}

char *
t_write_file(const char *dir, const char *name, const char *text, long len)
{
    char *path;
    FILE *f;
    size_t n = len < 0 ? strlen(text) : (size_t)len;

    if (asprintf(&path, "%s/%s", dir, name) < 0) {
        abort();
    }
    f = fopen(path, "w");
    if (f == NULL || fwrite(text, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        abort();
    }
    return path;
}

const char *
t_pg_conninfo(void)
{
    const char *c = getenv("DP_PG_CONNINFO");

    if (c == NULL || c[0] == '\0') {
        fprintf(stderr, "DP_PG_CONNINFO is not set: run this test through `make check` "
                        "(tests/pg run ...)\n");
        abort();
    }
    return c;
}
