/*
 * crash_explore.c - builds the states a power cut could leave from the shim's log of the
 * driver's run (crash_log.h, crash_model.h), opens each with the real queue code in a child
 * process and checks what the driver was promised: acknowledged events present byte for byte
 * exactly once with their sequence numbers, nothing never appended, keys kept with their
 * events, the conservation counters, the sequence counter, the instance id; a state the code
 * cannot open must be refused naming its path, never opened as an empty queue.
 *   crash_explore LOG WORKDIR STATES [SEED]
 *   crash_explore --save POINT LOG DIR    one random state of crash point POINT into DIR,
 *                                         the events started by then into DIR.marks
 * Exits 0 when every state passed, 1 when one did not (each one is described), 2 on misuse.
 * Test code only; it never writes outside WORKDIR.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "etc/err.h"
#include "etc/log.h"
#include "loader/internal.h"
#include "queue/queue.h"
#include "tests/crash/crash_log.h"
#include "tests/crash/crash_model.h"

#define EX_PATHS 1024
#define EX_INODES 1024
#define EX_DELETES 64
#define EX_CHILD_TIMEOUT_S 60
#define EX_SHOW_MAX 10  /* violations described in full */
#define EX_OUT_MAX 4096 /* bytes of a child's output kept */

/* One write not yet made durable, or a piece of one (an O_DSYNC write carves those it hides). */
struct ex_pending {
    uint64_t off;
    uint64_t len;
    const uint8_t *data;
};

struct ex_inode {
    int dir;
    uint8_t *vol; /* what the page cache holds */
    uint64_t vol_size;
    uint8_t *dur; /* what is on disk for certain */
    uint64_t dur_size;
    uint64_t cap;            /* bytes allocated in vol and dur */
    struct ex_pending *pend; /* in the order they were written */
    size_t n_pend;
    size_t cap_pend;
    int size_pending; /* a truncate or extend since the last fsync */
};

/* A file's bytes in the state being built. */
struct ex_buf {
    uint8_t *p;
    uint64_t cap;
    uint64_t size;
};

/* A change to a directory not yet made durable by an fsync of it. */
struct ex_dirop {
    uint32_t name; /* path id */
    int ino;       /* the inode it now names, -1: removed */
};

/* What the driver was told, as of the crash point. */
struct ex_model {
    uint32_t len[CRASH_EVENTS_MAX]; /* 0: never started */
    uint8_t keyed[CRASH_EVENTS_MAX];
    uint8_t rejected[CRASH_EVENTS_MAX];
    uint64_t acked[CRASH_EVENTS_MAX]; /* 0: not acknowledged */
    uint64_t del_first[EX_DELETES];
    uint64_t del_last[EX_DELETES];
    uint8_t del_done[EX_DELETES];
    size_t n_del;
    uint32_t prune_below;
    char instance[256];
    uint64_t max_acked_seq;
};

static struct {
    char *paths[EX_PATHS + 1]; /* by id; "." is the root */
    int vol_ino[EX_PATHS + 1]; /* the namespace the program saw */
    int dur_ino[EX_PATHS + 1]; /* the namespace on disk for certain */
    uint32_t n_paths;
    struct ex_inode ino[EX_INODES];
    int n_ino;
    struct ex_dirop *dirops;
    size_t n_dirops;
    size_t cap_dirops;
    struct ex_model m;
    /* the state being built */
    int st_ino[EX_PATHS + 1];
    struct ex_buf st[EX_PATHS + 1]; /* each file's bytes in the state */
    uint64_t generation;            /* marks that changed what is expected */
    int quiet;                      /* replaying the shim's snapshot: no crash points */
    uint64_t save_at;               /* --save: the crash point whose state to keep */
    uint64_t rng;
    /* figures */
    uint64_t points;
    uint64_t states;
    uint64_t duplicates;
    uint64_t refused;
    uint64_t refused_promised; /* of which after queue_open had returned */
    uint64_t violations;
    uint64_t *seen; /* hashes of the states explored (open addressing) */
    uint64_t seen_cap;
    const char *work;
    char state_dir[2048];
    char queue_dir[4096];
    char last_marks[4][256];
    char op_desc[256];
} ex;

static void *
ex_alloc(size_t n)
{
    void *p = calloc(1, n > 0 ? n : 1);

    if (p == NULL) {
        fprintf(stderr, "crash_explore: out of memory\n");
        exit(2);
    }
    return p;
}

static uint64_t
ex_rand(void)
{
    ex.rng ^= ex.rng << 13;
    ex.rng ^= ex.rng >> 7;
    ex.rng ^= ex.rng << 17;
    return ex.rng;
}

/* ---- the file-system model ---- */

static void
ex_inode_reserve(struct ex_inode *in, uint64_t size)
{
    uint64_t cap = in->cap;

    if (size <= cap) {
        return;
    }
    while (cap < size) {
        cap = cap == 0 ? 65536 : cap * 2;
    }
    in->vol = realloc(in->vol, cap);
    in->dur = realloc(in->dur, cap);
    if (in->vol == NULL || in->dur == NULL) {
        fprintf(stderr, "crash_explore: out of memory\n");
        exit(2);
    }
    memset(in->vol + in->cap, 0, cap - in->cap);
    memset(in->dur + in->cap, 0, cap - in->cap);
    in->cap = cap;
}

static void
ex_pend_add(struct ex_inode *in, uint64_t off, uint64_t len, const uint8_t *data)
{
    if (in->n_pend == in->cap_pend) {
        in->cap_pend = in->cap_pend == 0 ? 64 : in->cap_pend * 2;
        in->pend = realloc(in->pend, in->cap_pend * sizeof(*in->pend));
        if (in->pend == NULL) {
            exit(2);
        }
    }
    in->pend[in->n_pend++] = (struct ex_pending){off, len, data};
}

/*
 * An O_DSYNC write is durable when it returns, and hides what earlier writes put in its
 * bytes: cut those out of the pending writes, keeping their order.
 */
static void
ex_pend_carve(struct ex_inode *in, uint64_t off, uint64_t len)
{
    struct ex_pending *old = in->pend;
    size_t n = in->n_pend;

    in->pend = NULL;
    in->n_pend = in->cap_pend = 0;
    for (size_t i = 0; i < n; i++) {
        struct ex_pending p = old[i];
        uint64_t end = p.off + p.len;

        if (end <= off || p.off >= off + len) {
            ex_pend_add(in, p.off, p.len, p.data);
            continue;
        }
        if (p.off < off) {
            ex_pend_add(in, p.off, off - p.off, p.data);
        }
        if (end > off + len) {
            ex_pend_add(in, off + len, end - (off + len), p.data + (off + len - p.off));
        }
    }
    free(old);
}

static int
ex_new_inode(int dir)
{
    if (ex.n_ino == EX_INODES) {
        fprintf(stderr, "crash_explore: too many files\n");
        exit(2);
    }
    memset(&ex.ino[ex.n_ino], 0, sizeof(ex.ino[0]));
    ex.ino[ex.n_ino].dir = dir;
    return ex.n_ino++;
}

static void
ex_dirop_add(uint32_t name, int ino)
{
    if (ex.n_dirops == ex.cap_dirops) {
        ex.cap_dirops = ex.cap_dirops == 0 ? 64 : ex.cap_dirops * 2;
        ex.dirops = realloc(ex.dirops, ex.cap_dirops * sizeof(*ex.dirops));
        if (ex.dirops == NULL) {
            exit(2);
        }
    }
    ex.dirops[ex.n_dirops++] = (struct ex_dirop){name, ino};
}

/* The path id of the directory holding path id id, 0 when it was never named. */
static uint32_t
ex_parent(uint32_t id)
{
    const char *p = ex.paths[id];
    const char *slash = strrchr(p, '/');
    size_t len = slash != NULL ? (size_t)(slash - p) : 0;

    if (strcmp(p, ".") == 0) {
        return 0;
    }
    for (uint32_t i = 1; i <= ex.n_paths; i++) {
        if (slash == NULL ? strcmp(ex.paths[i], ".") == 0
                          : strlen(ex.paths[i]) == len && strncmp(ex.paths[i], p, len) == 0) {
            return i;
        }
    }
    return 0;
}

/* fsync of a directory: its pending entries become durable. */
static void
ex_dir_sync(uint32_t dir)
{
    size_t keep = 0;

    for (size_t i = 0; i < ex.n_dirops; i++) {
        if (ex_parent(ex.dirops[i].name) == dir) {
            ex.dur_ino[ex.dirops[i].name] = ex.dirops[i].ino;
        } else {
            ex.dirops[keep++] = ex.dirops[i];
        }
    }
    ex.n_dirops = keep;
}

static void
ex_file_sync(struct ex_inode *in)
{
    ex_inode_reserve(in, in->vol_size);
    memcpy(in->dur, in->vol, in->cap);
    in->dur_size = in->vol_size;
    in->n_pend = 0;
    in->size_pending = 0;
}

static void
ex_sync_all(void)
{
    for (int i = 0; i < ex.n_ino; i++) {
        ex_file_sync(&ex.ino[i]);
    }
    for (size_t i = 0; i < ex.n_dirops; i++) {
        ex.dur_ino[ex.dirops[i].name] = ex.dirops[i].ino;
    }
    ex.n_dirops = 0;
}

/* ---- the model of what was promised ---- */

static void
ex_mark(const char *text, size_t len)
{
    char line[256];
    unsigned int i;
    unsigned int n;
    int keyed;
    int rejected;
    uint64_t a;
    uint64_t b;

    if (len >= sizeof(line)) {
        len = sizeof(line) - 1;
    }
    memcpy(line, text, len);
    line[len] = '\0';
    memmove(ex.last_marks[0], ex.last_marks[1], sizeof(ex.last_marks[0]) * 3);
    snprintf(ex.last_marks[3], sizeof(ex.last_marks[3]), "%s", line);
    ex.generation += strncmp(line, "start ", 6) != 0;
    if (sscanf(line, "start %u %u %d %d", &i, &n, &keyed, &rejected) == 4 && i < CRASH_EVENTS_MAX) {
        ex.m.len[i] = n;
        ex.m.keyed[i] = (uint8_t)keyed;
        ex.m.rejected[i] = (uint8_t)rejected;
    } else if (sscanf(line, "ack %u %" SCNu64, &i, &a) == 2 && i < CRASH_EVENTS_MAX) {
        ex.m.acked[i] = a;
        ex.m.max_acked_seq = a > ex.m.max_acked_seq ? a : ex.m.max_acked_seq;
    } else if (sscanf(line, "delbegin %" SCNu64 " %" SCNu64, &a, &b) == 2 &&
               ex.m.n_del < EX_DELETES) {
        ex.m.del_first[ex.m.n_del] = a;
        ex.m.del_last[ex.m.n_del] = b;
        ex.m.n_del++;
    } else if (sscanf(line, "delend %" SCNu64 " %" SCNu64, &a, &b) == 2 && ex.m.n_del > 0) {
        ex.m.del_done[ex.m.n_del - 1] = 1;
    } else if (sscanf(line, "prune %u", &i) == 1) {
        ex.m.prune_below = i;
    } else if (strncmp(line, "instance ", 9) == 0) {
        snprintf(ex.m.instance, sizeof(ex.m.instance), "%s", line + 9);
    } else if (strcmp(line, "snapshot begin") == 0) {
        ex.quiet = 1;
    } else if (strcmp(line, "snapshot end") == 0) {
        ex.quiet = 0;
    } else if (strncmp(line, "unsupported", 11) == 0) {
        fprintf(stderr, "crash_explore: the log holds a call it cannot model: %s\n", line);
        exit(2);
    }
}

/* ---- building and checking one state ---- */

/* FNV-1a over 8-byte words (the tail bytewise): states are megabytes, hashed by the thousand. */
static uint64_t
ex_hash(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        uint64_t w;

        memcpy(&w, b + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    for (; i < n; i++) {
        h = (h ^ b[i]) * 0x100000001b3ull;
    }
    return h;
}

/* True when h was seen before (and records it). */
static int
ex_seen(uint64_t h)
{
    uint64_t i;

    if (h == 0) {
        h = 1;
    }
    if (ex.seen_cap == 0) {
        ex.seen_cap = 1u << 20;
        ex.seen = ex_alloc(ex.seen_cap * sizeof(uint64_t));
    }
    for (i = h & (ex.seen_cap - 1); ex.seen[i] != 0; i = (i + 1) & (ex.seen_cap - 1)) {
        if (ex.seen[i] == h) {
            return 1;
        }
    }
    ex.seen[i] = h;
    return 0;
}

/*
 * A choice among what a page could hold: mode 0 keeps nothing not yet durable, mode 1 all
 * of it (what a kill -9 leaves), mode 2 a random choice: for each page the version it had
 * after any number of its pending writes, possibly torn at sector boundaries.
 */
static uint64_t
ex_file_content(const struct ex_inode *in, int mode, struct ex_buf *out)
{
    uint64_t size = in->dur_size;
    uint64_t max = in->vol_size > in->dur_size ? in->vol_size : in->dur_size;
    uint8_t page[CRASH_PAGE];

    for (size_t i = 0; i < in->n_pend; i++) {
        if (in->pend[i].off + in->pend[i].len > max) {
            max = in->pend[i].off + in->pend[i].len;
        }
    }
    if (max > out->cap) {
        out->cap = max * 2;
        out->p = realloc(out->p, out->cap);
        if (out->p == NULL) {
            exit(2);
        }
    }
    memset(out->p, 0, max);
    memcpy(out->p, in->dur, in->dur_size < in->cap ? in->dur_size : in->cap);
    if (in->size_pending && (mode == 1 || (mode == 2 && ex_rand() % 2 == 0))) {
        size = in->vol_size;
        if (size < in->dur_size) {
            memset(out->p + size, 0, in->dur_size - size);
        }
    }
    for (uint64_t pg = 0; pg * CRASH_PAGE < max; pg++) {
        uint64_t lo = pg * CRASH_PAGE;
        uint64_t hi = lo + CRASH_PAGE;
        size_t m = 0;
        size_t v;
        uint64_t end = 0;

        for (size_t i = 0; i < in->n_pend; i++) {
            m += in->pend[i].off < hi && in->pend[i].off + in->pend[i].len > lo;
        }
        if (m == 0 || mode == 0) {
            continue;
        }
        v = mode == 1 ? m
                      : (size_t)(ex_rand() % 3 == 0 ? 0
                                 : ex_rand() % 2    ? m
                                                    : 1 + ex_rand() % m);
        if (v == 0) {
            continue;
        }
        memcpy(page, out->p + lo, CRASH_PAGE);
        for (size_t i = 0, k = 0; i < in->n_pend && k < v; i++) {
            const struct ex_pending *p = &in->pend[i];
            uint64_t a = p->off > lo ? p->off : lo;
            uint64_t b = p->off + p->len < hi ? p->off + p->len : hi;

            if (a >= b) {
                continue;
            }
            memcpy(page + (a - lo), p->data + (a - p->off), b - a);
            end = b > end ? b : end;
            k++;
        }
        if (mode == 2 && ex_rand() % 4 == 0) {
            /* torn: each sector new or old */
            for (uint64_t s = 0; s < CRASH_PAGE; s += CRASH_SECTOR) {
                if (ex_rand() % 2 == 0) {
                    memcpy(out->p + lo + s, page + s, CRASH_SECTOR);
                }
            }
        } else {
            memcpy(out->p + lo, page, CRASH_PAGE);
        }
        size = end > size ? end : size;
    }
    out->size = size;
    return ex_hash(0xcbf29ce484222325ull, out->p, size);
}

static int
ex_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Whether path id id and every directory above it exist in the state. */
static int
ex_present(uint32_t id)
{
    for (int depth = 0; id != 0 && depth < 64; depth++) {
        if (strcmp(ex.paths[id], ".") == 0) {
            return 1;
        }
        if (ex.st_ino[id] < 0) {
            return 0;
        }
        id = ex_parent(id);
    }
    return 1;
}

/*
 * Choose a state (mode as ex_file_content) into ex.st_ino and ex.st; returns its hash, which
 * covers what the driver was promised so far as well: the same bytes after another
 * acknowledgement are another test.
 */
static uint64_t
ex_choose(int mode)
{
    uint64_t h = ex_hash(0xcbf29ce484222325ull, &ex.generation, sizeof(ex.generation));

    memcpy(ex.st_ino, ex.dur_ino, sizeof(ex.st_ino));
    for (size_t i = 0; i < ex.n_dirops; i++) {
        if (mode == 1 || (mode == 2 && ex_rand() % 2 == 0)) {
            ex.st_ino[ex.dirops[i].name] = ex.dirops[i].ino;
        }
    }
    for (uint32_t id = 1; id <= ex.n_paths; id++) {
        if (strcmp(ex.paths[id], ".") == 0 || ex.st_ino[id] < 0 || !ex_present(id)) {
            ex.st_ino[id] = -1;
            continue;
        }
        h = ex_hash(h, ex.paths[id], strlen(ex.paths[id]) + 1);
        if (!ex.ino[ex.st_ino[id]].dir) {
            h ^= ex_file_content(&ex.ino[ex.st_ino[id]], mode, &ex.st[id]);
            h = ex_hash(h, &ex.st[id].size, sizeof(ex.st[id].size));
        }
    }
    return h;
}

/* Write the state chosen under ex.state_dir. */
static void
ex_write(void)
{
    nftw(ex.state_dir, ex_rm, 16, FTW_DEPTH | FTW_PHYS);
    mkdir(ex.state_dir, 0700);
    /* Parents first: ids grow with creation. */
    for (uint32_t id = 1; id <= ex.n_paths; id++) {
        char path[8192];
        int fd;

        if (ex.st_ino[id] < 0) {
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s", ex.state_dir, ex.paths[id]);
        if (ex.ino[ex.st_ino[id]].dir) {
            mkdir(path, 0700);
            continue;
        }
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || write(fd, ex.st[id].p, ex.st[id].size) != (ssize_t)ex.st[id].size) {
            fprintf(stderr, "crash_explore: cannot write %s: %s\n", path, strerror(errno));
            exit(2);
        }
        close(fd);
    }
}

/* In the child: a violation, printed for the parent. */
static int ex_child_bad;

static void ex_bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
ex_bad(const char *fmt, ...)
{
    va_list ap;

    if (ex_child_bad++ < 8) {
        va_start(ap, fmt);
        printf("violation: ");
        vprintf(fmt, ap);
        printf("\n");
        va_end(ap);
    }
}

static int
ex_deleted(uint64_t seq, int done_only)
{
    for (size_t d = 0; d < ex.m.n_del; d++) {
        if (seq >= ex.m.del_first[d] && seq <= ex.m.del_last[d] &&
            (!done_only || ex.m.del_done[d])) {
            return 1;
        }
    }
    return 0;
}

/* Check one event the loader's read path gave. */
static void
ex_check_event(const struct queue_event *ev, uint64_t *seen_seq)
{
    char json[CRASH_JSON_MAX + 1];
    char key[32];
    uint32_t i = crash_event_index(ev->json, ev->json_len);
    size_t klen;

    if (i == UINT32_MAX || ex.m.len[i] == 0) {
        ex_bad("seq %" PRIu64 ": an event never appended (%zu bytes: %.40s)", ev->seq, ev->json_len,
               ev->json);
        return;
    }
    crash_event_json(i, ex.m.len[i], json);
    if (ev->json_len != ex.m.len[i] || memcmp(ev->json, json, ev->json_len) != 0 ||
        ev->type_len != strlen(CRASH_TYPE) || memcmp(ev->type, CRASH_TYPE, ev->type_len) != 0) {
        ex_bad("seq %" PRIu64 ": event %u's bytes differ from those appended", ev->seq, i);
    }
    if (((ev->flags & QUEUE_F_REJECTED) != 0) != (ex.m.rejected[i] != 0)) {
        ex_bad("seq %" PRIu64 ": event %u's rejected flag changed", ev->seq, i);
    }
    klen = ex.m.keyed[i] ? crash_event_key(i, key) : 0;
    if (ev->key_len != klen || (klen > 0 && memcmp(ev->key, key, klen) != 0)) {
        ex_bad("seq %" PRIu64 ": event %u's key differs", ev->seq, i);
    }
    if (seen_seq[i] != 0) {
        ex_bad("event %u twice: seq %" PRIu64 " and %" PRIu64, i, seen_seq[i], ev->seq);
    }
    seen_seq[i] = ev->seq;
    if (ex.m.acked[i] != 0 && ex.m.acked[i] != ev->seq) {
        ex_bad("event %u acknowledged as seq %" PRIu64 " is stored as %" PRIu64, i, ex.m.acked[i],
               ev->seq);
    }
    if (ex_deleted(ev->seq, 1)) {
        ex_bad("seq %" PRIu64 " (event %u) is back after its delete returned", ev->seq, i);
    }
}

/* The keys acknowledged (and not prunable): a repeat must find its event. */
static void
ex_check_keys(struct queue *q)
{
    static char json[8][CRASH_JSON_MAX + 1];
    char key[8][32];
    struct queue_event evs[8];
    uint32_t idx[8];
    size_t n = 0;

    for (uint32_t i = 0; i <= CRASH_EVENTS_MAX; i++) {
        if (n == 8 || (i == CRASH_EVENTS_MAX && n > 0)) {
            int rc = queue_append(q, evs, n);

            for (size_t k = 0; k < n; k++) {
                if (rc != 0 || evs[k].dedup != QUEUE_DEDUP_REPEAT ||
                    evs[k].seq != ex.m.acked[idx[k]]) {
                    ex_bad("event %u's key (acknowledged, seq %" PRIu64 ") was not recorded: "
                           "a repeat got rc=%d dedup=%d seq %" PRIu64,
                           idx[k], ex.m.acked[idx[k]], rc, (int)evs[k].dedup, evs[k].seq);
                }
            }
            n = 0;
        }
        if (i == CRASH_EVENTS_MAX || ex.m.acked[i] == 0 || !ex.m.keyed[i] || ex.m.rejected[i] ||
            i < ex.m.prune_below) {
            continue;
        }
        memset(&evs[n], 0, sizeof(evs[n]));
        crash_event_json(i, ex.m.len[i], json[n]);
        evs[n].type = CRASH_TYPE;
        evs[n].type_len = strlen(CRASH_TYPE);
        evs[n].json = json[n];
        evs[n].json_len = ex.m.len[i];
        evs[n].key_len = crash_event_key(i, key[n]);
        evs[n].key = key[n];
        crash_event_digest(i, evs[n].digest, sizeof(evs[n].digest));
        evs[n].answer = 202;
        idx[n++] = i;
    }
}

/* The child: open the state with the real code and check the oracle. Exit status: 0 passed,
 * 1 a violation, 2 refused (the parent checks the message names the path). */
static int
ex_child(void)
{
    static uint64_t seen_seq[CRASH_EVENTS_MAX];
    struct queue *q = NULL;
    struct ldr_batch b;
    struct queue_stats st;
    uint64_t from = 1;
    uint64_t max_seq = 0;
    uint64_t count = 0;
    int rc;

    alarm(EX_CHILD_TIMEOUT_S);
    rc = queue_open(&q, ex.queue_dir, CRASH_LARGE_MAP, true);
    if (rc != 0) {
        printf("refused: %s\n", dp_strerror(rc));
        return 2;
    }
    if (ex.m.instance[0] != '\0' && strcmp(queue_instance(q, NULL), ex.m.instance) != 0) {
        ex_bad("instance id %s, was %s", queue_instance(q, NULL), ex.m.instance);
    }
    if (ldr_batch_init(&b, "crash") != 0) {
        return 3;
    }
    for (;;) {
        rc = ldr_batch_read(&b, q, from, UINT64_MAX, 64, 0);
        if (rc != 0) {
            ex_bad("the loader's read failed: %s", dp_strerror(rc));
            break;
        }
        if (b.events == 0) {
            break;
        }
        for (size_t i = 0; i < b.events; i++) {
            struct queue_event ev;

            ldr_batch_event(&b, i, &ev);
            ex_check_event(&ev, seen_seq);
            max_seq = ev.seq > max_seq ? ev.seq : max_seq;
            count++;
        }
        from = b.last + 1;
    }
    ldr_batch_free(&b);
    for (uint32_t i = 0; i < CRASH_EVENTS_MAX; i++) {
        if (ex.m.acked[i] != 0 && seen_seq[i] == 0 && !ex_deleted(ex.m.acked[i], 0)) {
            ex_bad("event %u acknowledged as seq %" PRIu64 " is lost", i, ex.m.acked[i]);
        }
    }
    rc = queue_stats(q, &st);
    if (rc != 0) {
        ex_bad("queue_stats: %s", dp_strerror(rc));
    } else {
        if (st.events != count) {
            ex_bad("stats count %" PRIu64 " events, the scan found %" PRIu64, st.events, count);
        }
        if (st.accepted != st.loaded + st.dead_lettered + st.events) {
            ex_bad("accepted %" PRIu64 " != loaded %" PRIu64 " + dead_lettered %" PRIu64
                   " + queued %" PRIu64,
                   st.accepted, st.loaded, st.dead_lettered, st.events);
        }
        if (st.next_seq <= max_seq || st.next_seq <= ex.m.max_acked_seq) {
            ex_bad("next seq %" PRIu64 " not above seq %" PRIu64 " (stored) / %" PRIu64
                   " (acknowledged)",
                   st.next_seq, max_seq, ex.m.max_acked_seq);
        }
    }
    ex_check_keys(q);
    queue_close(q);
    fflush(stdout);
    return ex_child_bad > 0 ? 1 : 0;
}

/* Run the child on the state written; count and describe the outcome. */
static void
ex_check(void)
{
    char out[EX_OUT_MAX + 1];
    size_t got = 0;
    int fds[2];
    int status;
    pid_t pid;

    if (pipe(fds) != 0) {
        exit(2);
    }
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        exit(2);
    }
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[1]);
        _exit(ex_child());
    }
    close(fds[1]);
    for (;;) {
        ssize_t n = read(fds[0], out + got, got < EX_OUT_MAX ? EX_OUT_MAX - got : 0);
        char sink[512];

        if (got >= EX_OUT_MAX) {
            n = read(fds[0], sink, sizeof(sink));
        }
        if (n <= 0) {
            if (n < 0 && errno == EINTR) {
                continue;
            }
            break;
        }
        if (got < EX_OUT_MAX) {
            got += (size_t)n;
        }
    }
    close(fds[0]);
    out[got] = '\0';
    waitpid(pid, &status, 0);
    ex.states++;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        return;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 2 && strstr(out, ex.queue_dir) != NULL &&
        strstr(out, "file=data.mdb") != NULL) {
        ex.refused_promised += ex.m.instance[0] != '\0';
        if (ex.refused++ < EX_SHOW_MAX) {
            printf("-- refused at crash point %" PRIu64 " (%s), after the mark \"%s\":\n%s",
                   ex.points, ex.op_desc, ex.last_marks[3], out);
        }
        return;
    }
    if (ex.violations++ < EX_SHOW_MAX) {
        printf("== violation %" PRIu64 " at crash point %" PRIu64 " (%s), after the marks\n"
               "   | %s\n   | %s\n   | %s\n   | %s\n%s%s",
               ex.violations, ex.points, ex.op_desc, ex.last_marks[0], ex.last_marks[1],
               ex.last_marks[2], ex.last_marks[3], out,
               WIFEXITED(status) && WEXITSTATUS(status) == 2
                   ? "violation: refused without naming the queue's path and data file\n"
                   : (!WIFEXITED(status) ? "violation: the open crashed\n" : ""));
    }
}

/*
 * --save: write a random state of this crash point, and beside it (DIR.marks) the events
 * started so far, which the driver recovering it announces first: what the state may hold.
 */
static void
ex_save(void)
{
    char path[4096];
    FILE *f;

    ex_choose(2);
    ex_write();
    snprintf(path, sizeof(path), "%s.marks", ex.state_dir);
    f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "crash_explore: cannot write %s: %s\n", path, strerror(errno));
        exit(2);
    }
    for (uint32_t i = 0; i < CRASH_EVENTS_MAX; i++) {
        if (ex.m.len[i] != 0) {
            fprintf(f, "start %u %u %d %d\n", i, ex.m.len[i], ex.m.keyed[i], ex.m.rejected[i]);
        }
    }
    if (fclose(f) != 0) {
        exit(2);
    }
    exit(0);
}

/* Explore up to quota distinct states at this crash point. */
static void
ex_point(uint64_t quota)
{
    uint64_t tries = 0;
    uint64_t done = 0;

    if (ex.quiet) {
        return;
    }
    ex.points++;
    if (ex.save_at != 0) {
        if (ex.points == ex.save_at) {
            ex_save();
        }
        return;
    }
    for (int mode = 0; tries < quota * 4 && done < quota; tries++) {
        uint64_t h = ex_choose(mode);

        mode = tries == 0 ? 1 : 2;
        if (ex_seen(h)) {
            ex.duplicates++;
            continue;
        }
        ex_write();
        ex_check();
        done++;
    }
}

static const char *
ex_op_name(uint16_t op)
{
    static const char *const names[] = {"?",      "name",     "create", "mkdir", "unlink",
                                        "rename", "truncate", "extend", "write", "fsync",
                                        "nosync", "syncall",  "mark"};

    return op < sizeof(names) / sizeof(names[0]) ? names[op] : "?";
}

/* Apply one record to the model; returns 1 when it is a crash point worth exploring. */
static int
ex_apply(const struct crash_rec *r, const uint8_t *data)
{
    uint32_t id = r->file;
    struct ex_inode *in = NULL;
    int ino;

    if (id > EX_PATHS) {
        fprintf(stderr, "crash_explore: bad path id %u\n", id);
        exit(2);
    }
    if (id != 0 && r->op != CRASH_OP_NAME && ex.vol_ino[id] >= 0) {
        in = &ex.ino[ex.vol_ino[id]];
    }
    snprintf(ex.op_desc, sizeof(ex.op_desc), "%s %s %" PRIu64 " +%u%s", ex_op_name(r->op),
             id != 0 && id <= ex.n_paths ? ex.paths[id] : "-", r->arg, r->len,
             (r->flags & CRASH_F_DSYNC) != 0 ? " O_DSYNC" : "");
    switch (r->op) {
    case CRASH_OP_NAME:
        ex.paths[id] = ex_alloc(r->len + 1);
        memcpy(ex.paths[id], data, r->len);
        ex.n_paths = id > ex.n_paths ? id : ex.n_paths;
        ex.vol_ino[id] = ex.dur_ino[id] = -1;
        if (strcmp(ex.paths[id], ".") == 0) {
            ex.vol_ino[id] = ex.dur_ino[id] = ex_new_inode(1);
        }
        return 0;
    case CRASH_OP_CREATE:
    case CRASH_OP_MKDIR:
        ino = ex_new_inode(r->op == CRASH_OP_MKDIR);
        ex.vol_ino[id] = ino;
        ex_dirop_add(id, ino);
        return 1;
    case CRASH_OP_UNLINK:
        ex.vol_ino[id] = -1;
        ex_dirop_add(id, -1);
        return 1;
    case CRASH_OP_RENAME:
        ex.vol_ino[r->arg] = ex.vol_ino[id];
        ex.vol_ino[id] = -1;
        ex_dirop_add((uint32_t)r->arg, ex.vol_ino[r->arg]);
        ex_dirop_add(id, -1);
        return 1;
    case CRASH_OP_TRUNCATE:
    case CRASH_OP_EXTEND:
        if (in == NULL) {
            return 0;
        }
        if (r->op == CRASH_OP_TRUNCATE || r->arg > in->vol_size) {
            ex_inode_reserve(in, r->arg);
            if (r->arg < in->vol_size) {
                memset(in->vol + r->arg, 0, in->vol_size - r->arg);
            }
            in->vol_size = r->arg;
            in->size_pending = 1;
        }
        return 1;
    case CRASH_OP_WRITE:
        if (in == NULL) {
            return 0;
        }
        ex_inode_reserve(in, r->arg + r->len);
        memcpy(in->vol + r->arg, data, r->len);
        if (r->arg + r->len > in->vol_size) {
            in->vol_size = r->arg + r->len;
        }
        ex_pend_add(in, r->arg, r->len, data);
        return 1;
    case CRASH_OP_FSYNC:
        if (in == NULL) {
            return 0;
        }
        if (in->dir) {
            ex_dir_sync(id);
        } else {
            ex_file_sync(in);
        }
        return 1;
    case CRASH_OP_SYNCALL:
        ex_sync_all();
        return 1;
    case CRASH_OP_MARK:
        ex_mark((const char *)data, r->len);
        return 0;
    default:
        return 0;
    }
}

/* After an O_DSYNC write's crash point: it is durable, and hides older pending bytes. */
static void
ex_dsync_done(const struct crash_rec *r, const uint8_t *data)
{
    struct ex_inode *in = &ex.ino[ex.vol_ino[r->file]];

    ex_pend_carve(in, r->arg, r->len);
    ex_inode_reserve(in, r->arg + r->len);
    memcpy(in->dur + r->arg, data, r->len);
    if (r->arg + r->len > in->dur_size) {
        in->dur_size = r->arg + r->len;
    }
}

static uint8_t *
ex_read_log(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long n;

    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0) {
        fprintf(stderr, "crash_explore: cannot read %s: %s\n", path, strerror(errno));
        exit(2);
    }
    rewind(f);
    buf = ex_alloc((size_t)n);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        exit(2);
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static char ex_zero[] = "0";

int
main(int argc, char **argv)
{
    uint8_t *log;
    size_t len;
    size_t off;
    uint64_t budget;
    uint64_t points = 0;
    uint64_t quota;
    struct timespec t0;
    struct timespec t1;

    if (argc == 5 && strcmp(argv[1], "--save") == 0) {
        /* crash_explore --save POINT LOG DIR: write one random state of crash point POINT
         * into DIR (a queue a power cut left, for the driver to recover) and stop. */
        ex.save_at = strtoull(argv[2], NULL, 10);
        argv[1] = argv[3];
        argv[2] = argv[4];
        argv[3] = ex_zero;
        argc = 4;
    } else if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: crash_explore LOG WORKDIR STATES [SEED]\n"
                        "       crash_explore --save POINT LOG DIR\n");
        return 2;
    }
    dp_log_setup("error", "text");
    signal(SIGPIPE, SIG_IGN);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    log = ex_read_log(argv[1], &len);
    ex.work = argv[2];
    budget = strtoull(argv[3], NULL, 10);
    ex.rng = argc == 5 ? strtoull(argv[4], NULL, 10) | 1 : 0x9e3779b97f4a7c15ull;
    snprintf(ex.state_dir, sizeof(ex.state_dir), ex.save_at != 0 ? "%s" : "%s/state", ex.work);
    snprintf(ex.queue_dir, sizeof(ex.queue_dir), "%s/%s", ex.state_dir, CRASH_QUEUE_SUBDIR);
    /* First pass: count the crash points, so that the budget spreads over all of them. */
    for (off = 0; off + sizeof(struct crash_rec) <= len;) {
        struct crash_rec r;

        memcpy(&r, log + off, sizeof(r));
        if (r.magic != CRASH_LOG_MAGIC) {
            fprintf(stderr, "crash_explore: %s: bad record at byte %zu\n", argv[1], off);
            return 2;
        }
        points += r.op != CRASH_OP_NAME && r.op != CRASH_OP_MARK && r.op != CRASH_OP_NOSYNC;
        points += r.op == CRASH_OP_WRITE && (r.flags & CRASH_F_DSYNC) != 0;
        off += sizeof(r) + r.len;
    }
    /* Every crash point gets a share of what the budget has left, at least its first fixed
     * state (nothing pending kept), then the second (all of it kept), then random ones: a
     * point with few distinct states passes its share on. */
    for (off = 0; off + sizeof(struct crash_rec) <= len;) {
        struct crash_rec r;
        const uint8_t *data;

        memcpy(&r, log + off, sizeof(r));
        data = log + off + sizeof(r);
        off += sizeof(r) + r.len;
        quota = budget > ex.states && points > ex.points
                    ? (budget - ex.states) / (points - ex.points)
                    : 0;
        quota = quota < 1 ? 1 : quota;
        if (ex_apply(&r, data)) {
            ex_point(quota);
        }
        if (r.op == CRASH_OP_WRITE && (r.flags & CRASH_F_DSYNC) != 0 && ex.vol_ino[r.file] >= 0) {
            ex_dsync_done(&r, data);
            snprintf(ex.op_desc, sizeof(ex.op_desc), "after the O_DSYNC write of %s %" PRIu64,
                     ex.paths[r.file], r.arg);
            ex_point(quota);
        }
    }
    nftw(ex.state_dir, ex_rm, 16, FTW_DEPTH | FTW_PHYS);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("crash_explore: %" PRIu64 " crash points, %" PRIu64 " states explored (%" PRIu64
           " duplicates skipped), %" PRIu64 " refused naming the file (%" PRIu64
           " after an open had returned), %" PRIu64 " violations, %.0f s\n",
           ex.points, ex.states, ex.duplicates, ex.refused, ex.refused_promised, ex.violations,
           (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    return ex.violations > 0 ? 1 : 0;
}
