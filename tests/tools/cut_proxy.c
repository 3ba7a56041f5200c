/*
 * cut_proxy.c - a TCP proxy between the loader and the test cluster's unix socket that breaks
 * a batch's connection where the loader cannot know what happened
 * (tests/e2e/test_ambiguous_commit.sh):
 *   cut_proxy -l PORT -u SOCKET -m before|after|copy -e EVERY -n MAX -o LOG
 * It reads the frontend protocol (a batch is a transaction whose statements include
 * "INSERT INTO loader_batches"); of every EVERY-th batch, up to MAX times, it
 *   before: drops the batch's COMMIT and closes both sides (PostgreSQL rolls back);
 *   after:  forwards the COMMIT, waits for PostgreSQL's answer, drops it and closes both
 *           sides (committed, and the loader never heard);
 *   copy:   forwards the batch's first CopyData, then stops reading from the loader and
 *           writes "hold pid=P" (the backend's pid, from BackendKeyData) to LOG, so that the
 *           test terminates that backend mid-COPY; PostgreSQL's goodbye is forwarded.
 * Each cut is a line in LOG. Test code only: 127.0.0.1, trusting the cluster's local auth.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define CP_MAX_PAIRS 64
#define CP_IO_BYTES 65536

enum cp_mode { CP_BEFORE, CP_AFTER, CP_COPY };

struct cp_pair {
    int cfd;            /* the loader's side, -1 when the slot is free */
    int sfd;            /* PostgreSQL's side */
    unsigned char *buf; /* the loader's bytes not yet forwarded: a partial message */
    size_t len;
    size_t cap;
    bool started;        /* the startup message went through: messages are typed */
    bool server_typed;   /* PostgreSQL's first message seen (parsing its stream) */
    unsigned char *sbuf; /* PostgreSQL's bytes, parsed until BackendKeyData */
    size_t slen;
    bool key_seen;
    uint32_t pid;     /* the backend's pid */
    bool in_batch;    /* the open transaction inserted its loader_batches row */
    bool copy_seen;   /* the batch's first CopyData passed */
    bool await_reply; /* after mode: the COMMIT went; cut at its answer */
    bool held;        /* copy mode: no longer reading the loader */
};

static struct cp_pair pairs[CP_MAX_PAIRS];
static enum cp_mode mode;
static long every = 1;
static long max_cuts = 20;
static long batches;
static long cuts;
static FILE *log_out;

static void
pair_close(struct cp_pair *p, const char *why)
{
    if (why != NULL) {
        cuts++;
        fprintf(log_out, "cut %ld %s pid=%u\n", cuts, why, p->pid);
        fflush(log_out);
    }
    close(p->cfd);
    close(p->sfd);
    free(p->buf);
    free(p->sbuf);
    memset(p, 0, sizeof(*p));
    p->cfd = -1;
    p->sfd = -1;
}

static int
write_all(int fd, const unsigned char *b, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return -1;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static uint32_t
be32(const unsigned char *b)
{
    return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}

/* Whether this batch is one to cut: every EVERY-th, up to MAX. Counts the batch. */
static bool
cut_this(void)
{
    batches++;
    return cuts < max_cuts && batches % every == 0;
}

/*
 * One whole message from the loader (type t, body of n bytes). Returns 1 to forward it, 0 to
 * forward it and stop (the pair was handled), -1 when the pair was closed.
 */
static int
client_msg(struct cp_pair *p, unsigned char t, const unsigned char *body, size_t n)
{
    bool is_commit;

    if ((t == 'Q' || t == 'P') && memmem(body, n, "INSERT INTO loader_batches", 26) != NULL) {
        p->in_batch = true;
        p->copy_seen = false;
    }
    if (t == 'd' && p->in_batch && !p->copy_seen && mode == CP_COPY) {
        p->copy_seen = true;
        if (cut_this()) {
            p->held = true;
            cuts++;
            fprintf(log_out, "hold pid=%u\n", p->pid);
            fflush(log_out);
            return 0;
        }
    }
    if (t != 'Q') {
        return 1;
    }
    is_commit = n >= 6 && strncasecmp((const char *)body, "COMMIT", 6) == 0;
    if (is_commit && p->in_batch && mode != CP_COPY && cut_this()) {
        p->in_batch = false;
        if (mode == CP_BEFORE) {
            pair_close(p, "before-commit");
            return -1;
        }
        p->await_reply = true;
        return 0;
    }
    if (is_commit || (n >= 8 && strncasecmp((const char *)body, "ROLLBACK", 8) == 0)) {
        p->in_batch = false;
    }
    return 1;
}

/* Forward the loader's whole messages; keep a partial one. Returns -1 when closed. */
static int
client_bytes(struct cp_pair *p)
{
    size_t off = 0;

    while (p->len - off >= 5 || (!p->started && p->len - off >= 8)) {
        unsigned char *m = p->buf + off;
        size_t total;
        int rc = 1;

        if (!p->started) {
            total = be32(m);
            if (p->len - off < total) {
                break;
            }
            /* SSLRequest and GSSENCRequest come before the real startup message. */
            p->started = !(total == 8 && (be32(m + 4) == 80877103 || be32(m + 4) == 80877104));
        } else {
            total = 1 + (size_t)be32(m + 1);
            if (p->len - off < total) {
                break;
            }
            rc = client_msg(p, m[0], m + 5, total - 5);
            if (rc < 0) {
                return -1;
            }
        }
        if (write_all(p->sfd, m, total) != 0) {
            pair_close(p, NULL);
            return -1;
        }
        off += total;
        if (rc == 0) {
            break;
        }
    }
    memmove(p->buf, p->buf + off, p->len - off);
    p->len -= off;
    return 0;
}

/* PostgreSQL's stream, parsed only until BackendKeyData gives the backend's pid. */
static void
server_parse(struct cp_pair *p, const unsigned char *b, size_t n)
{
    size_t off = 0;
    unsigned char *nb;

    if (p->key_seen) {
        return;
    }
    nb = realloc(p->sbuf, p->slen + n);
    if (nb == NULL) {
        p->key_seen = true;
        return;
    }
    p->sbuf = nb;
    memcpy(p->sbuf + p->slen, b, n);
    p->slen += n;
    while (p->slen - off >= 5) {
        size_t total = 1 + (size_t)be32(p->sbuf + off + 1);

        if (p->slen - off < total) {
            break;
        }
        if (p->sbuf[off] == 'K' && total >= 9) {
            p->pid = be32(p->sbuf + off + 5);
            p->key_seen = true;
            return;
        }
        off += total;
    }
    memmove(p->sbuf, p->sbuf + off, p->slen - off);
    p->slen -= off;
}

static void
accept_one(int lfd, const char *sock_path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct cp_pair *p = NULL;
    int cfd = accept(lfd, NULL, NULL);
    int sfd;

    if (cfd < 0) {
        return;
    }
    for (int i = 0; i < CP_MAX_PAIRS; i++) {
        if (pairs[i].cfd < 0) {
            p = &pairs[i];
            break;
        }
    }
    sfd = socket(AF_UNIX, SOCK_STREAM, 0);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
    if (p == NULL || sfd < 0 || connect(sfd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(cfd);
        if (sfd >= 0) {
            close(sfd);
        }
        return;
    }
    p->cfd = cfd;
    p->sfd = sfd;
}

/* One readable side of pair p. */
static void
pair_io(struct cp_pair *p, bool from_client)
{
    unsigned char b[CP_IO_BYTES];
    ssize_t n = read(from_client ? p->cfd : p->sfd, b, sizeof(b));

    if (n <= 0) {
        pair_close(p, NULL);
        return;
    }
    if (!from_client) {
        server_parse(p, b, (size_t)n);
        if (p->await_reply) {
            pair_close(p, "after-commit");
            return;
        }
        if (write_all(p->cfd, b, (size_t)n) != 0) {
            pair_close(p, NULL);
        }
        return;
    }
    if (p->len + (size_t)n > p->cap) {
        size_t cap = (p->len + (size_t)n) * 2;
        unsigned char *nb = realloc(p->buf, cap);

        if (nb == NULL) {
            pair_close(p, NULL);
            return;
        }
        p->buf = nb;
        p->cap = cap;
    }
    memcpy(p->buf + p->len, b, (size_t)n);
    p->len += (size_t)n;
    client_bytes(p);
}

int
main(int argc, char **argv)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    const char *sock_path = NULL;
    const char *log_path = NULL;
    int port = 0;
    int lfd;
    int one = 1;
    int c;

    while ((c = getopt(argc, argv, "l:u:m:e:n:o:")) != -1) {
        switch (c) {
        case 'l':
            port = atoi(optarg);
            break;
        case 'u':
            sock_path = optarg;
            break;
        case 'm':
            mode = strcmp(optarg, "before") == 0  ? CP_BEFORE
                   : strcmp(optarg, "after") == 0 ? CP_AFTER
                                                  : CP_COPY;
            break;
        case 'e':
            every = atol(optarg);
            break;
        case 'n':
            max_cuts = atol(optarg);
            break;
        default:
            log_path = optarg;
            break;
        }
    }
    if (port <= 0 || sock_path == NULL || log_path == NULL || every < 1) {
        fprintf(stderr, "usage: cut_proxy -l PORT -u SOCKET -m before|after|copy -e EVERY "
                        "-n MAX -o LOG\n");
        return 2;
    }
    log_out = fopen(log_path, "a");
    if (log_out == NULL) {
        perror(log_path);
        return 1;
    }
    for (int i = 0; i < CP_MAX_PAIRS; i++) {
        pairs[i].cfd = -1;
        pairs[i].sfd = -1;
    }
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 16) != 0) {
        perror("cut_proxy: listen");
        return 1;
    }
    fprintf(log_out, "listening port=%d mode=%s\n", port,
            mode == CP_BEFORE  ? "before"
            : mode == CP_AFTER ? "after"
                               : "copy");
    fflush(log_out);
    for (;;) {
        struct pollfd fds[1 + 2 * CP_MAX_PAIRS];
        int who[1 + 2 * CP_MAX_PAIRS];
        nfds_t n = 0;

        fds[n].fd = lfd;
        fds[n].events = POLLIN;
        who[n++] = -1;
        for (int i = 0; i < CP_MAX_PAIRS; i++) {
            if (pairs[i].cfd < 0) {
                continue;
            }
            if (!pairs[i].held && !pairs[i].await_reply) {
                fds[n].fd = pairs[i].cfd;
                fds[n].events = POLLIN;
                who[n++] = 2 * i;
            }
            fds[n].fd = pairs[i].sfd;
            fds[n].events = POLLIN;
            who[n++] = 2 * i + 1;
        }
        if (poll(fds, n, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            return 1;
        }
        for (nfds_t i = 0; i < n; i++) {
            if (fds[i].revents == 0) {
                continue;
            }
            if (who[i] < 0) {
                accept_one(lfd, sock_path);
            } else if (pairs[who[i] / 2].cfd >= 0) {
                pair_io(&pairs[who[i] / 2], who[i] % 2 == 0);
            }
        }
    }
}
