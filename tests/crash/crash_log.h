/*
 * crash_log.h - the record format the LD_PRELOAD shim (shim.c) writes and the explorer
 * (crash_explore.c) reads: one record per file-system call the queue made under the watched
 * directory, in the order the calls completed. Test code only: nothing outside tests/crash/
 * includes it.
 */
#ifndef DP_CRASH_LOG_H
#define DP_CRASH_LOG_H

#include <stdint.h>

#define CRASH_LOG_MAGIC 0x43524c47u /* "CRLG" */
#define CRASH_PATH_MAX 512          /* longest path below the watched root, bytes */
#define CRASH_SECTOR 512            /* what a disk writes atomically, bytes */
#define CRASH_PAGE 4096             /* what the page cache writes back as a unit, bytes */

enum crash_op {
    CRASH_OP_NAME = 1, /* file: a new path id; data: the path below the root */
    CRASH_OP_CREATE,   /* file: created (open O_CREAT of a missing name, creat) */
    CRASH_OP_MKDIR,    /* file: a directory created */
    CRASH_OP_UNLINK,   /* file: name removed (unlink, rmdir) */
    CRASH_OP_RENAME,   /* file: old name; arg: the new name's id */
    CRASH_OP_TRUNCATE, /* file: size set to arg (ftruncate, O_TRUNC) */
    CRASH_OP_EXTEND,   /* file: size raised to at least arg (fallocate, posix_fallocate) */
    CRASH_OP_WRITE,    /* file: len bytes of data at offset arg (write, pwrite, writev...) */
    CRASH_OP_FSYNC,    /* file: fsync or fdatasync returned 0: its data (or entries) durable */
    CRASH_OP_NOSYNC,   /* file: msync or sync_file_range: recorded, promises nothing */
    CRASH_OP_SYNCALL,  /* sync or syncfs: everything durable */
    CRASH_OP_MARK,     /* data: a line from the program (crash_shim_mark) */
};

/* write flags */
#define CRASH_F_DSYNC 0x1u /* written through an O_SYNC or O_DSYNC descriptor */

struct crash_rec {
    uint32_t magic; /* CRASH_LOG_MAGIC */
    uint16_t op;    /* enum crash_op */
    uint16_t flags; /* CRASH_F_* */
    uint32_t file;  /* path id (CRASH_OP_NAME), 0 when none */
    uint32_t len;   /* bytes of data following the record */
    uint64_t arg;   /* offset or size, see enum crash_op */
};

#endif
