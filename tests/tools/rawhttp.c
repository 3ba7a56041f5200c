/*
 * rawhttp.c - raw HTTP for the bad-input barrage of the end-to-end tests, where curl would
 * fix up what we want to send broken:
 *   rawhttp send PORT TIMEOUT_MS       send stdin's bytes as they are (the connection stays
 *                                      open for writing), then print what came back:
 *                                      "status=N ms=T", "closed ms=T" or "timeout ms=T"
 *   rawhttp slowloris PORT N HOLD_S    open N connections to 127.0.0.1:PORT and print
 *                                      "connected=N" once all are open; half trickle header
 *                                      lines, half trickle a body, one line or byte a second
 *                                      each, for HOLD_S seconds; then print how many the
 *                                      server cut off and when
 *   rawhttp gzbomb MIB                 write to stdout one gzip member that inflates to
 *                                      MIB MiB of zeros (about 1 KiB per MiB)
 *   rawhttp slowbody PORT N HOLD_S     open N connections, each POSTs a body announced as
 *                                      2 MiB + 1000 bytes, sends 2 MiB of it at once, then
 *                                      one byte a second for HOLD_S seconds; prints "sent=N"
 *                                      once every 2 MiB went, then how many the server cut
 *                                      off (the slowloris line)
 * Test code only; it only connects to 127.0.0.1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define RAW_MAX_CONNS 4000
#define RAW_CHUNK (1u << 20) /* bytes of zeros per repeated deflate block */

static double
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int
connect_local(int port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        return -1;
    }
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Wait up to ms for fd to be readable; 1 readable, 0 timeout. */
static int
wait_readable(int fd, double deadline)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    double left = deadline - now_ms();

    if (left <= 0) {
        return 0;
    }
    return poll(&p, 1, (int)left + 1) > 0 ? 1 : 0;
}

static int
cmd_send(int port, int timeout_ms)
{
    size_t cap = 1 << 16;
    size_t len = 0;
    char *req = malloc(cap);
    char resp[4096];
    size_t have = 0;
    double t0;
    double deadline;
    int fd;
    int status = 0;

    if (req == NULL) {
        return 1;
    }
    for (;;) {
        size_t n;

        if (len == cap) {
            char *p = realloc(req, cap * 2);

            if (p == NULL) {
                return 1;
            }
            req = p;
            cap *= 2;
        }
        n = fread(req + len, 1, cap - len, stdin);
        if (n == 0) {
            break;
        }
        len += n;
    }
    fd = connect_local(port);
    if (fd < 0) {
        printf("connect-failed\n");
        return 1;
    }
    t0 = now_ms();
    deadline = t0 + timeout_ms;
    /* Send what the server takes; it may answer and close before all of it went. */
    for (size_t off = 0; off < len;) {
        struct pollfd p = {.fd = fd, .events = POLLOUT | POLLIN};
        ssize_t w;

        if (poll(&p, 1, 100) <= 0) {
            if (now_ms() > deadline) {
                break;
            }
            continue;
        }
        if (p.revents & (POLLIN | POLLERR | POLLHUP)) {
            break;
        }
        w = send(fd, req + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            continue;
        }
        if (w <= 0) {
            break;
        }
        off += (size_t)w;
    }
    while (have < sizeof(resp) - 1 && wait_readable(fd, deadline)) {
        ssize_t r = recv(fd, resp + have, sizeof(resp) - 1 - have, 0);

        if (r <= 0) {
            break;
        }
        have += (size_t)r;
        resp[have] = '\0';
        if (strstr(resp, "\r\n") != NULL) {
            break;
        }
    }
    resp[have] = '\0';
    if (have > 0 && sscanf(resp, "HTTP/1.%*d %d", &status) == 1) {
        printf("status=%d ms=%.0f\n", status, now_ms() - t0);
    } else if (now_ms() >= deadline) {
        printf("timeout ms=%.0f\n", now_ms() - t0);
    } else {
        printf("closed ms=%.0f\n", now_ms() - t0);
    }
    close(fd);
    free(req);
    return 0;
}

static int
cmd_slowloris(int port, int n, int hold_s)
{
    static struct pollfd p[RAW_MAX_CONNS];
    static double closed_at[RAW_MAX_CONNS];
    static char answered[RAW_MAX_CONNS];
    double t0 = now_ms();
    double next_tick = t0 + 1000;
    int opened = 0;
    int closed = 0;
    int answers = 0;
    int cut_headers = 0;
    double first = -1;
    double last = -1;

    if (n > RAW_MAX_CONNS) {
        n = RAW_MAX_CONNS;
    }
    for (int i = 0; i < n; i++) {
        const char *head = i % 2 == 0 ? "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                      : "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                        "Content-Length: 1000\r\n\r\n{";

        p[i].fd = connect_local(port);
        p[i].events = POLLIN;
        closed_at[i] = -1;
        if (p[i].fd < 0) {
            continue;
        }
        opened++;
        if (send(p[i].fd, head, strlen(head), MSG_NOSIGNAL) < 0) {
            closed_at[i] = now_ms() - t0;
        }
    }
    /* The test waits for this line before it looks at the server under the slow load. */
    printf("connected=%d\n", opened);
    fflush(stdout);
    while (now_ms() < t0 + hold_s * 1000.0) {
        int ready = poll(p, (nfds_t)n, 100);

        for (int i = 0; ready > 0 && i < n; i++) {
            char buf[512];
            ssize_t r;

            if (p[i].fd < 0 || p[i].revents == 0) {
                continue;
            }
            r = recv(p[i].fd, buf, sizeof(buf), MSG_DONTWAIT);
            if (r > 0) {
                answered[i] = 1;
                continue;
            }
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
                continue;
            }
            closed_at[i] = now_ms() - t0;
            close(p[i].fd);
            p[i].fd = -1;
        }
        if (now_ms() >= next_tick) {
            next_tick += 1000;
            for (int i = 0; i < n; i++) {
                const char *more = i % 2 == 0 ? "X-Slow: 1\r\n" : " ";

                if (p[i].fd >= 0 && send(p[i].fd, more, strlen(more), MSG_NOSIGNAL) < 0 &&
                    errno != EAGAIN) {
                    closed_at[i] = now_ms() - t0;
                    close(p[i].fd);
                    p[i].fd = -1;
                }
            }
        }
    }
    for (int i = 0; i < n; i++) {
        answers += answered[i];
        if (closed_at[i] >= 0) {
            closed++;
            cut_headers += i % 2 == 0 ? 1 : 0;
            first = first < 0 || closed_at[i] < first ? closed_at[i] : first;
            last = closed_at[i] > last ? closed_at[i] : last;
        }
        if (p[i].fd >= 0) {
            close(p[i].fd);
        }
    }
    printf("opened=%d closed_by_server=%d (header tricklers %d, body tricklers %d) answered=%d "
           "still_open=%d first_close_ms=%.0f last_close_ms=%.0f\n",
           opened, closed, cut_headers, closed - cut_headers, answers, opened - closed, first,
           last);
    return 0;
}

/* Send all of buf on a blocking fd; 0 or -1. */
static int
send_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = send(fd, buf, len, MSG_NOSIGNAL);

        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return -1;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

/*
 * The slow body that defeats a per-read deadline: a large part at once (so the reader's
 * read size has grown), then a byte a second, each byte well within request_timeout_ms of
 * the last one.
 */
static int
cmd_slowbody(int port, int n, int hold_s)
{
    static struct pollfd p[RAW_MAX_CONNS];
    static double closed_at[RAW_MAX_CONNS];
    size_t big = (size_t)2 << 20;
    char head[256];
    char *body = malloc(big);
    double t0;
    double next_tick;
    int opened = 0;
    int sent = 0;
    int closed = 0;
    int answers = 0;
    double first = -1;
    double last = -1;

    if (body == NULL) {
        return 1;
    }
    n = n > RAW_MAX_CONNS ? RAW_MAX_CONNS : n;
    memset(body, ' ', big);
    body[0] = '[';
    snprintf(head, sizeof(head),
             "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             "Content-Length: %zu\r\n\r\n",
             big + 1000);
    for (int i = 0; i < n; i++) {
        p[i].fd = connect_local(port);
        p[i].events = POLLIN;
        closed_at[i] = -1;
        if (p[i].fd >= 0) {
            opened++;
        }
    }
    printf("connected=%d\n", opened);
    fflush(stdout);
    t0 = now_ms();
    /* The server reads each connection on its own thread: send the 2 MiB to all at once. */
    for (int i = 0; i < n; i++) {
        if (p[i].fd >= 0 && send_all(p[i].fd, head, strlen(head)) == 0 &&
            send_all(p[i].fd, body, big) == 0) {
            sent++;
        }
    }
    /* The test waits for this line: from here on only a byte a second goes out. */
    printf("sent=%d\n", sent);
    fflush(stdout);
    next_tick = now_ms() + 1000;
    while (now_ms() < t0 + hold_s * 1000.0) {
        int ready = poll(p, (nfds_t)n, 100);

        for (int i = 0; ready > 0 && i < n; i++) {
            char buf[512];
            ssize_t r;

            if (p[i].fd < 0 || p[i].revents == 0) {
                continue;
            }
            r = recv(p[i].fd, buf, sizeof(buf), MSG_DONTWAIT);
            if (r > 0) {
                answers++;
                continue;
            }
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
                continue;
            }
            closed_at[i] = now_ms() - t0;
            close(p[i].fd);
            p[i].fd = -1;
        }
        if (now_ms() >= next_tick) {
            next_tick += 1000;
            for (int i = 0; i < n; i++) {
                if (p[i].fd >= 0 && send(p[i].fd, " ", 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 &&
                    errno != EAGAIN) {
                    closed_at[i] = now_ms() - t0;
                    close(p[i].fd);
                    p[i].fd = -1;
                }
            }
        }
    }
    for (int i = 0; i < n; i++) {
        if (closed_at[i] >= 0) {
            closed++;
            first = first < 0 || closed_at[i] < first ? closed_at[i] : first;
            last = closed_at[i] > last ? closed_at[i] : last;
        }
        if (p[i].fd >= 0) {
            close(p[i].fd);
        }
    }
    printf("opened=%d closed_by_server=%d answered=%d still_open=%d first_close_ms=%.0f "
           "last_close_ms=%.0f\n",
           opened, closed, answers, opened - closed, first, last);
    free(body);
    return 0;
}

/*
 * Deflate blocks that end in a full flush do not refer back to earlier data, so one
 * compressed MiB of zeros can be repeated; a final empty block and the trailer (CRC-32
 * combined, size mod 2^32) make it one valid gzip member.
 */
static int
cmd_gzbomb(long mib)
{
    static const unsigned char header[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    static const unsigned char final_block[2] = {0x03, 0x00};
    unsigned char *zeros = calloc(1, RAW_CHUNK);
    unsigned char *out = malloc(RAW_CHUNK);
    unsigned char trailer[8];
    z_stream z;
    uLong crc1;
    uLong crc = crc32(0, Z_NULL, 0);
    size_t blen;

    if (zeros == NULL || out == NULL || mib < 1) {
        return 1;
    }
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY) != Z_OK) {
        return 1;
    }
    z.next_in = zeros;
    z.avail_in = RAW_CHUNK;
    z.next_out = out;
    z.avail_out = RAW_CHUNK;
    if (deflate(&z, Z_FULL_FLUSH) != Z_OK || z.avail_in != 0) {
        return 1;
    }
    blen = RAW_CHUNK - z.avail_out;
    deflateEnd(&z);
    crc1 = crc32(0, zeros, RAW_CHUNK);
    fwrite(header, 1, sizeof(header), stdout);
    for (long i = 0; i < mib; i++) {
        fwrite(out, 1, blen, stdout);
        crc = crc32_combine(crc, crc1, RAW_CHUNK);
    }
    fwrite(final_block, 1, sizeof(final_block), stdout);
    for (int i = 0; i < 4; i++) {
        trailer[i] = (unsigned char)(crc >> (8 * i));
        trailer[4 + i] = (unsigned char)(((uint64_t)mib * RAW_CHUNK) >> (8 * i));
    }
    fwrite(trailer, 1, sizeof(trailer), stdout);
    free(zeros);
    free(out);
    return fflush(stdout) == 0 ? 0 : 1;
}

int
main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc == 4 && strcmp(argv[1], "send") == 0) {
        return cmd_send(atoi(argv[2]), atoi(argv[3]));
    }
    if (argc == 5 && strcmp(argv[1], "slowloris") == 0) {
        return cmd_slowloris(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
    }
    if (argc == 5 && strcmp(argv[1], "slowbody") == 0) {
        return cmd_slowbody(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
    }
    if (argc == 3 && strcmp(argv[1], "gzbomb") == 0) {
        return cmd_gzbomb(atol(argv[2]));
    }
    fprintf(stderr, "usage: rawhttp send PORT TIMEOUT_MS | slowloris PORT N HOLD_S | "
                    "gzbomb MIB | slowbody PORT N HOLD_S\n");
    return 2;
}
