/*
 * shim.c - an LD_PRELOAD library that records, for files below DP_CRASH_ROOT, every call that
 * changes what a power cut could leave on disk (crash_log.h), into DP_CRASH_LOG; the explorer
 * builds crash states from it. It never changes what a call does: it calls the real function
 * and records what it returned. With DP_CRASH_DROP_DIRSYNC=1 it leaves directory fsyncs out of
 * the log (a planted bug: the queue as if it never synced its directories); with
 * DP_CRASH_SNAPSHOT=1 it first records what the root already holds as durable. Test code only.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "tests/crash/crash_log.h"

#define SHIM_FDS 4096   /* descriptors tracked */
#define SHIM_PATHS 1024 /* distinct paths below the root */

struct shim_fd {
    uint32_t id; /* path id, 0: not below the root */
    int dsync;   /* opened with O_SYNC or O_DSYNC */
    int dir;     /* a directory */
};

static pthread_mutex_t shim_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t shim_once = PTHREAD_ONCE_INIT;
static char shim_root[PATH_MAX];
static size_t shim_root_len;
static int shim_log_fd = -1;
static int shim_drop_dirsync;
static struct shim_fd shim_fds[SHIM_FDS];
static char *shim_paths[SHIM_PATHS];
static uint32_t shim_npaths;

static int (*real_open)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_close)(int);
static int (*real_mkdir)(const char *, mode_t);
static int (*real_mkdirat)(int, const char *, mode_t);
static int (*real_rename)(const char *, const char *);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_unlink)(const char *);
static int (*real_unlinkat)(int, const char *, int);
static int (*real_rmdir)(const char *);
static int (*real_ftruncate)(int, off_t);
static int (*real_fallocate)(int, int, off_t, off_t);
static int (*real_posix_fallocate)(int, off_t, off_t);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_msync)(void *, size_t, int);
static int (*real_sync_file_range)(int, off_t, off_t, unsigned int);
static void (*real_sync)(void);
static int (*real_syncfs)(int);
static off_t (*real_lseek)(int, off_t, int);

static uint32_t shim_path_id(const char *rel);
static void shim_emit(uint16_t op, uint16_t flags, uint32_t file, uint64_t arg, const void *data,
                      uint32_t len);

/* Record one file or directory found below the root by shim_snapshot. */
static int
shim_snapshot_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    static uint8_t buf[1 << 16];
    uint32_t id;
    uint64_t off = 0;
    int fd;

    (void)ftw;
    if (strlen(path) <= shim_root_len + 1) {
        return 0;
    }
    id = shim_path_id(path + shim_root_len + 1);
    if (flag == FTW_D) {
        shim_emit(CRASH_OP_MKDIR, 0, id, 0, NULL, 0);
        return 0;
    }
    if (flag != FTW_F || !S_ISREG(st->st_mode)) {
        return 0;
    }
    shim_emit(CRASH_OP_CREATE, 0, id, 0, NULL, 0);
    fd = real_open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));

        if (n <= 0) {
            break;
        }
        shim_emit(CRASH_OP_WRITE, 0, id, off, buf, (uint32_t)n);
        off += (uint64_t)n;
    }
    real_close(fd);
    return 0;
}

/*
 * DP_CRASH_SNAPSHOT=1: what the root holds when the program starts (a queue a power cut left,
 * being recovered) is recorded as created, written and synced: durable before any call.
 */
static void
shim_snapshot(void)
{
    shim_emit(CRASH_OP_MARK, 0, 0, 0, "snapshot begin", 14);
    nftw(shim_root, shim_snapshot_one, 16, FTW_PHYS);
    shim_emit(CRASH_OP_SYNCALL, 0, 0, 0, NULL, 0);
    shim_emit(CRASH_OP_MARK, 0, 0, 0, "snapshot end", 12);
}

static void
shim_init(void)
{
    const char *root = getenv("DP_CRASH_ROOT");
    const char *log = getenv("DP_CRASH_LOG");
    const char *drop = getenv("DP_CRASH_DROP_DIRSYNC");
    const char *snap = getenv("DP_CRASH_SNAPSHOT");

    real_open = dlsym(RTLD_NEXT, "open");
    real_openat = dlsym(RTLD_NEXT, "openat");
    real_close = dlsym(RTLD_NEXT, "close");
    real_mkdir = dlsym(RTLD_NEXT, "mkdir");
    real_mkdirat = dlsym(RTLD_NEXT, "mkdirat");
    real_rename = dlsym(RTLD_NEXT, "rename");
    real_renameat = dlsym(RTLD_NEXT, "renameat");
    real_unlink = dlsym(RTLD_NEXT, "unlink");
    real_unlinkat = dlsym(RTLD_NEXT, "unlinkat");
    real_rmdir = dlsym(RTLD_NEXT, "rmdir");
    real_ftruncate = dlsym(RTLD_NEXT, "ftruncate");
    real_fallocate = dlsym(RTLD_NEXT, "fallocate");
    real_posix_fallocate = dlsym(RTLD_NEXT, "posix_fallocate");
    real_write = dlsym(RTLD_NEXT, "write");
    real_pwrite = dlsym(RTLD_NEXT, "pwrite");
    real_writev = dlsym(RTLD_NEXT, "writev");
    real_pwritev = dlsym(RTLD_NEXT, "pwritev");
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    real_msync = dlsym(RTLD_NEXT, "msync");
    real_sync_file_range = dlsym(RTLD_NEXT, "sync_file_range");
    real_sync = dlsym(RTLD_NEXT, "sync");
    real_syncfs = dlsym(RTLD_NEXT, "syncfs");
    real_lseek = dlsym(RTLD_NEXT, "lseek");
    shim_drop_dirsync = drop != NULL && strcmp(drop, "1") == 0;
    if (root == NULL || log == NULL || strlen(root) >= sizeof(shim_root)) {
        return;
    }
    strcpy(shim_root, root);
    shim_root_len = strlen(shim_root);
    while (shim_root_len > 1 && shim_root[shim_root_len - 1] == '/') {
        shim_root[--shim_root_len] = '\0';
    }
    shim_log_fd = real_open(log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (shim_log_fd >= 0 && snap != NULL && strcmp(snap, "1") == 0) {
        shim_snapshot();
    }
}

static void
shim_ready(void)
{
    pthread_once(&shim_once, shim_init);
}

/* Append one record and its data to the log (shim_mu held). */
static void
shim_emit(uint16_t op, uint16_t flags, uint32_t file, uint64_t arg, const void *data, uint32_t len)
{
    struct crash_rec r = {CRASH_LOG_MAGIC, op, flags, file, len, arg};
    struct iovec iov[2] = {{&r, sizeof(r)}, {(void *)data, len}};

    if (shim_log_fd >= 0) {
        real_writev(shim_log_fd, iov, len > 0 ? 2 : 1);
    }
}

/* The id of path (absolute, below the root), naming it in the log the first time. */
static uint32_t
shim_path_id(const char *rel)
{
    for (uint32_t i = 0; i < shim_npaths; i++) {
        if (strcmp(shim_paths[i], rel) == 0) {
            return i + 1;
        }
    }
    if (shim_npaths == SHIM_PATHS) {
        abort();
    }
    shim_paths[shim_npaths] = strdup(rel);
    if (shim_paths[shim_npaths] == NULL) {
        abort();
    }
    shim_npaths++;
    shim_emit(CRASH_OP_NAME, 0, shim_npaths, 0, rel, (uint32_t)strlen(rel));
    return shim_npaths;
}

/*
 * The id of dirfd/name if it lies below the root (shim_mu held), else 0. Paths are taken as
 * given: the programs under test use absolute paths without "." or "..".
 */
static uint32_t
shim_lookup(int dirfd, const char *name)
{
    char buf[PATH_MAX];
    const char *rel;
    int n;

    if (shim_log_fd < 0 || name == NULL) {
        return 0;
    }
    if (name[0] == '/') {
        n = snprintf(buf, sizeof(buf), "%s", name);
    } else if (dirfd >= 0 && dirfd < SHIM_FDS && shim_fds[dirfd].id != 0) {
        n = snprintf(buf, sizeof(buf), "%s/%s/%s", shim_root, shim_paths[shim_fds[dirfd].id - 1],
                     name);
    } else {
        char cwd[PATH_MAX];

        if (dirfd != AT_FDCWD || getcwd(cwd, sizeof(cwd)) == NULL) {
            return 0;
        }
        n = snprintf(buf, sizeof(buf), "%s/%s", cwd, name);
    }
    if (n < 0 || (size_t)n >= sizeof(buf)) {
        return 0;
    }
    if (strcmp(buf, shim_root) == 0) {
        return shim_path_id(".");
    }
    if (strncmp(buf, shim_root, shim_root_len) != 0 || buf[shim_root_len] != '/' ||
        buf[shim_root_len + 1] == '\0') {
        return 0;
    }
    rel = buf + shim_root_len + 1;
    if (strlen(rel) >= CRASH_PATH_MAX) {
        return 0;
    }
    return shim_path_id(rel);
}

static struct shim_fd *
shim_fd(int fd)
{
    if (fd < 0 || fd >= SHIM_FDS || shim_fds[fd].id == 0) {
        return NULL;
    }
    return &shim_fds[fd];
}

void crash_shim_mark(const char *text);

/* Called by the driver through dlsym: a line ordered with the calls around it. */
void
crash_shim_mark(const char *text)
{
    shim_ready();
    pthread_mutex_lock(&shim_mu);
    shim_emit(CRASH_OP_MARK, 0, 0, 0, text, (uint32_t)strlen(text));
    pthread_mutex_unlock(&shim_mu);
}

static int
shim_do_open(int dirfd, const char *path, int flags, mode_t mode)
{
    struct stat st;
    uint32_t id;
    int existed;
    int fd;

    shim_ready();
    pthread_mutex_lock(&shim_mu);
    id = shim_lookup(dirfd, path);
    existed = id != 0 && fstatat(dirfd, path, &st, 0) == 0;
    fd = real_openat(dirfd, path, flags, mode);
    if (fd >= 0 && id != 0 && fd < SHIM_FDS) {
        if (fstat(fd, &st) != 0) {
            st.st_mode = 0;
        }
        shim_fds[fd].id = id;
        shim_fds[fd].dsync = (flags & (O_SYNC | O_DSYNC)) != 0;
        shim_fds[fd].dir = S_ISDIR(st.st_mode);
        if (!existed) {
            shim_emit(CRASH_OP_CREATE, 0, id, 0, NULL, 0);
        } else if ((flags & O_TRUNC) != 0 && (flags & O_ACCMODE) != O_RDONLY) {
            shim_emit(CRASH_OP_TRUNCATE, 0, id, 0, NULL, 0);
        }
    }
    pthread_mutex_unlock(&shim_mu);
    return fd;
}

static mode_t
shim_mode(int flags, va_list ap)
{
    return (flags & (O_CREAT | O_TMPFILE)) != 0 ? (mode_t)va_arg(ap, int) : 0;
}

int
open(const char *path, int flags, ...)
{
    va_list ap;
    mode_t mode;

    va_start(ap, flags);
    mode = shim_mode(flags, ap);
    va_end(ap);
    return shim_do_open(AT_FDCWD, path, flags, mode);
}

int
open64(const char *path, int flags, ...)
{
    va_list ap;
    mode_t mode;

    va_start(ap, flags);
    mode = shim_mode(flags, ap);
    va_end(ap);
    return shim_do_open(AT_FDCWD, path, flags, mode);
}

int
openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    mode_t mode;

    va_start(ap, flags);
    mode = shim_mode(flags, ap);
    va_end(ap);
    return shim_do_open(dirfd, path, flags, mode);
}

int
openat64(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    mode_t mode;

    va_start(ap, flags);
    mode = shim_mode(flags, ap);
    va_end(ap);
    return shim_do_open(dirfd, path, flags, mode);
}

int
creat(const char *path, mode_t mode)
{
    return shim_do_open(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

int
creat64(const char *path, mode_t mode)
{
    return shim_do_open(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

int
close(int fd)
{
    int rc;

    shim_ready();
    pthread_mutex_lock(&shim_mu);
    rc = real_close(fd);
    if (fd >= 0 && fd < SHIM_FDS) {
        shim_fds[fd].id = 0;
    }
    pthread_mutex_unlock(&shim_mu);
    return rc;
}

/* A call on a name: record op with the name's id (and arg) when it succeeded. */
static int
shim_name_op(int rc, uint32_t id, uint16_t op, uint64_t arg)
{
    if (rc == 0 && id != 0) {
        shim_emit(op, 0, id, arg, NULL, 0);
    }
    return rc;
}

int
mkdirat(int dirfd, const char *path, mode_t mode)
{
    uint32_t id;
    int rc;

    shim_ready();
    pthread_mutex_lock(&shim_mu);
    id = shim_lookup(dirfd, path);
    rc = shim_name_op(real_mkdirat(dirfd, path, mode), id, CRASH_OP_MKDIR, 0);
    pthread_mutex_unlock(&shim_mu);
    return rc;
}

int
mkdir(const char *path, mode_t mode)
{
    return mkdirat(AT_FDCWD, path, mode);
}

int
unlinkat(int dirfd, const char *path, int flags)
{
    uint32_t id;
    int rc;

    shim_ready();
    pthread_mutex_lock(&shim_mu);
    id = shim_lookup(dirfd, path);
    rc = shim_name_op(real_unlinkat(dirfd, path, flags), id, CRASH_OP_UNLINK, 0);
    pthread_mutex_unlock(&shim_mu);
    return rc;
}

int
unlink(const char *path)
{
    return unlinkat(AT_FDCWD, path, 0);
}

int
rmdir(const char *path)
{
    return unlinkat(AT_FDCWD, path, AT_REMOVEDIR);
}

int
renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath)
{
    uint32_t from;
    uint32_t to;
    int rc;

    shim_ready();
    pthread_mutex_lock(&shim_mu);
    from = shim_lookup(olddirfd, oldpath);
    to = shim_lookup(newdirfd, newpath);
    rc = real_renameat(olddirfd, oldpath, newdirfd, newpath);
    if (rc == 0 && from != 0 && to != 0) {
        shim_emit(CRASH_OP_RENAME, 0, from, to, NULL, 0);
    } else if (rc == 0 && (from != 0 || to != 0)) {
        /* Across the root's edge: the explorer cannot model it; say so in the log. */
        shim_emit(CRASH_OP_MARK, 0, 0, 0, "unsupported rename", 18);
    }
    pthread_mutex_unlock(&shim_mu);
    return rc;
}

int
rename(const char *oldpath, const char *newpath)
{
    return renameat(AT_FDCWD, oldpath, AT_FDCWD, newpath);
}

int
ftruncate(int fd, off_t len)
{
    struct shim_fd *f;
    int rc;

    shim_ready();
    pthread_mutex_lock(&shim_mu);
    rc = real_ftruncate(fd, len);
    f = shim_fd(fd);
    if (rc == 0 && f != NULL) {
        shim_emit(CRASH_OP_TRUNCATE, 0, f->id, (uint64_t)len, NULL, 0);
    }
    pthread_mutex_unlock(&shim_mu);
    return rc;
}

int
ftruncate64(int fd, off_t len)
{
    return ftruncate(fd, len);
}

/* mode 0 fallocate and posix_fallocate grow the file to off + len at least. */
static void
shim_extend(int fd, int rc, int mode, off_t off, off_t len)
{
    struct shim_fd *f = shim_fd(fd);

    if (rc == 0 && f != NULL) {
        if (mode == 0) {
            shim_emit(CRASH_OP_EXTEND, 0, f->id, (uint64_t)(off + len), NULL, 0);
        } else {
            shim_emit(CRASH_OP_MARK, 0, 0, 0, "unsupported fallocate mode", 26);
        }
    }
}

int
fallocate(int fd, int mode, off_t off, off_t len)
{
    int rc;

    shim_ready();
    pthread_mutex_lock(&shim_mu);
    rc = real_fallocate(fd, mode, off, len);
    shim_extend(fd, rc, mode, off, len);
    pthread_mutex_unlock(&shim_mu);
    return rc;
}

int
fallocate64(int fd, int mode, off_t off, off_t len)
{
    return fallocate(fd, mode, off, len);
}

int
posix_fallocate(int fd, off_t off, off_t len)
{
    int rc;

    shim_ready();
    pthread_mutex_lock(&shim_mu);
    rc = real_posix_fallocate(fd, off, len);
    shim_extend(fd, rc, 0, off, len);
    pthread_mutex_unlock(&shim_mu);
    return rc;
}

int
posix_fallocate64(int fd, off_t off, off_t len)
{
    return posix_fallocate(fd, off, len);
}

/* Record the n bytes a write of iov at off wrote (shim_mu held). */
static void
shim_record_write(struct shim_fd *f, const struct iovec *iov, int iovcnt, off_t off, ssize_t n)
{
    size_t left = n > 0 ? (size_t)n : 0;
    uint64_t pos = (uint64_t)off;

    for (int i = 0; i < iovcnt && left > 0; i++) {
        size_t len = iov[i].iov_len < left ? iov[i].iov_len : left;

        if (len > 0) {
            shim_emit(CRASH_OP_WRITE, f->dsync ? CRASH_F_DSYNC : 0, f->id, pos, iov[i].iov_base,
                      (uint32_t)len);
        }
        pos += len;
        left -= len;
    }
}

/* Every write goes here: off < 0 means at the descriptor's position, which it advances. */
static ssize_t
shim_do_write(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
    struct shim_fd *f;
    ssize_t n;

    shim_ready();
    if (shim_log_fd < 0 || fd < 0 || fd >= SHIM_FDS || shim_fds[fd].id == 0) {
        if (off >= 0) {
            return iovcnt == 1 ? real_pwrite(fd, iov[0].iov_base, iov[0].iov_len, off)
                               : real_pwritev(fd, iov, iovcnt, off);
        }
        return iovcnt == 1 ? real_write(fd, iov[0].iov_base, iov[0].iov_len)
                           : real_writev(fd, iov, iovcnt);
    }
    pthread_mutex_lock(&shim_mu);
    f = shim_fd(fd);
    if (off >= 0) {
        n = real_pwritev(fd, iov, iovcnt, off);
    } else {
        off = real_lseek(fd, 0, SEEK_CUR);
        n = real_writev(fd, iov, iovcnt);
    }
    if (f != NULL && n > 0 && off >= 0) {
        shim_record_write(f, iov, iovcnt, off, n);
    }
    pthread_mutex_unlock(&shim_mu);
    return n;
}

ssize_t
write(int fd, const void *buf, size_t len)
{
    struct iovec iov = {(void *)buf, len};

    return shim_do_write(fd, &iov, 1, -1);
}

ssize_t
pwrite(int fd, const void *buf, size_t len, off_t off)
{
    struct iovec iov = {(void *)buf, len};

    if (off < 0) {
        errno = EINVAL;
        return -1;
    }
    return shim_do_write(fd, &iov, 1, off);
}

ssize_t
pwrite64(int fd, const void *buf, size_t len, off_t off)
{
    return pwrite(fd, buf, len, off);
}

ssize_t
writev(int fd, const struct iovec *iov, int iovcnt)
{
    return shim_do_write(fd, iov, iovcnt, -1);
}

ssize_t
pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
    if (off < 0) {
        errno = EINVAL;
        return -1;
    }
    return shim_do_write(fd, iov, iovcnt, off);
}

ssize_t
pwritev64(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
    return pwritev(fd, iov, iovcnt, off);
}

/* fsync and fdatasync: what fd holds is durable once they return 0. */
static int
shim_do_sync(int fd, int data_only)
{
    struct shim_fd *f;
    int rc;

    shim_ready();
    pthread_mutex_lock(&shim_mu);
    rc = data_only ? real_fdatasync(fd) : real_fsync(fd);
    f = shim_fd(fd);
    if (rc == 0 && f != NULL && !(f->dir && shim_drop_dirsync)) {
        shim_emit(CRASH_OP_FSYNC, 0, f->id, 0, NULL, 0);
    }
    pthread_mutex_unlock(&shim_mu);
    return rc;
}

int
fsync(int fd)
{
    return shim_do_sync(fd, 0);
}

int
fdatasync(int fd)
{
    return shim_do_sync(fd, 1);
}

int
sync_file_range(int fd, off_t off, off_t len, unsigned int flags)
{
    struct shim_fd *f;
    int rc;

    shim_ready();
    pthread_mutex_lock(&shim_mu);
    rc = real_sync_file_range(fd, off, len, flags);
    f = shim_fd(fd);
    if (rc == 0 && f != NULL) {
        shim_emit(CRASH_OP_NOSYNC, 0, f->id, (uint64_t)off, NULL, 0);
    }
    pthread_mutex_unlock(&shim_mu);
    return rc;
}

/*
 * msync: the queue maps its data file read-only (no MDB_WRITEMAP), so no map can carry
 * its data; recorded without a file, it makes nothing durable in the explorer.
 */
int
msync(void *addr, size_t len, int flags)
{
    int rc;

    shim_ready();
    pthread_mutex_lock(&shim_mu);
    rc = real_msync(addr, len, flags);
    if (rc == 0 && shim_log_fd >= 0) {
        shim_emit(CRASH_OP_NOSYNC, 0, 0, (uint64_t)len, NULL, 0);
    }
    pthread_mutex_unlock(&shim_mu);
    return rc;
}

void
sync(void)
{
    shim_ready();
    pthread_mutex_lock(&shim_mu);
    real_sync();
    shim_emit(CRASH_OP_SYNCALL, 0, 0, 0, NULL, 0);
    pthread_mutex_unlock(&shim_mu);
}

int
syncfs(int fd)
{
    int rc;

    shim_ready();
    pthread_mutex_lock(&shim_mu);
    rc = real_syncfs(fd);
    if (rc == 0) {
        shim_emit(CRASH_OP_SYNCALL, 0, 0, 0, NULL, 0);
    }
    pthread_mutex_unlock(&shim_mu);
    return rc;
}
