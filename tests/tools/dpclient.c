/*
 * dpclient.c - the load client of the end-to-end reliability tests: C connections over
 * plain sockets with keep-alive, each posting events of mixed types with unique payload
 * numbers for D seconds, recording every acknowledged event. It tolerates the server dying
 * (reconnects until the deadline) and never counts an answer it did not fully read.
 *
 *   dpclient -p PORT [-c CONNS] [-d SECONDS] [-n MAX_PER_CONN] [-r RATE_PER_CONN]
 *              [-t crash,ad,login,sample,product] [-B BASE] [-x PREFIX] [-s SIZE]
 *              [-k] [-R RETRY_S] [-T IO_TIMEOUT_S] -o ACKFILE [-S SENTFILE]
 *
 * Event number N = BASE + conn * 10,000,000 + i identifies an event in PostgreSQL:
 * crash_report.user_id = N, ad_event.advertiser_id = user_login.user_id = product.id =
 * "PREFIX-N", data_sample's data = [N] (so mean = N). ACKFILE gets "N UUID" for every 202
 * ("N -" for product, whose table keeps no uuid); SENTFILE "N" for every request written
 * to a socket (acknowledged or not).
 *
 * -k: keyed, as README tells a client to be: each event carries the header
 * "Idempotency-Key: PREFIX-N", and a request whose answer did not come (connection refused
 * or reset, no answer within IO_TIMEOUT_S, any 5xx) is sent again with the same key and the
 * same bytes until a 2xx comes, for at most RETRY_S seconds (default 60) from its first
 * send; then it counts as unanswered. SENTFILE lines are "N KEY TYPE", once per event
 * however often it was sent. The last stdout line is a summary. Test code only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define CLI_MAX_CONNS 1024
#define CLI_PER_CONN 10000000ULL /* event numbers per connection */
#define CLI_IO_TIMEOUT_S 20      /* a silent server is given up on after this (-T) */
#define CLI_RETRY_S 60           /* a keyed event is retried this long at most (-R) */
#define CLI_RETRY_MS 20          /* pause before reconnecting */
#define CLI_BUSY_MS 50           /* pause after a 503 */
#define CLI_RESP_MAX 65536

enum ev_kind { K_CRASH, K_AD, K_LOGIN, K_SAMPLE, K_PRODUCT, K_COUNT };

static const char *const kind_name[K_COUNT] = {"crash_report", "ad_event", "user_login",
                                               "data_sample", "product"};
static const char *const kind_opt[K_COUNT] = {"crash", "ad", "login", "sample", "product"};

struct opts {
    int port;
    int conns;
    double seconds;
    uint64_t max_per_conn;
    double rate; /* requests per second per connection, 0: no limit */
    bool kinds[K_COUNT];
    int nkinds;
    uint64_t base;
    const char *prefix;
    size_t pad; /* extra bytes of message/user_agent text */
    bool keyed; /* -k: Idempotency-Key on every event, retried until answered */
    double retry_s;
    int io_timeout_s;
    FILE *ack;
    FILE *sent;
};

struct totals {
    atomic_uint_fast64_t sent;
    atomic_uint_fast64_t acked[K_COUNT];
    atomic_uint_fast64_t status_503;
    atomic_uint_fast64_t retry_after;
    atomic_uint_fast64_t status_other;
    atomic_uint_fast64_t status_5xx; /* keyed: other 5xx (a balancer's 502/504), retried */
    atomic_uint_fast64_t resent;     /* keyed: requests sent again after no answer */
    atomic_uint_fast64_t duplicates; /* keyed: 202s with "duplicate":true */
    atomic_uint_fast64_t unanswered; /* keyed: given up after retry_s */
    atomic_uint_fast64_t io_errors;
    atomic_uint_fast64_t connects;
    atomic_uint_fast64_t connect_fail;
    atomic_uint_fast64_t max_latency_us;
};

static struct opts o;
static struct totals t;
static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;
static double deadline;
static char *padding;
/*
 * SIGTERM/SIGINT: finish the requests in flight. Atomic, not volatile sig_atomic_t: the handler
 * runs in whichever thread the signal lands on and every connection thread reads the flag, and
 * sig_atomic_t is only safe within one thread. A lock-free atomic is async-signal-safe.
 */
static atomic_bool stopping;

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
on_stop(int sig)
{
    (void)sig;
    atomic_store(&stopping, true);
}

static bool
go_on(void)
{
    return !atomic_load(&stopping) && now_s() < deadline;
}

static void
sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

static int
conn_open(void)
{
    struct sockaddr_in a;
    struct timeval tv = {.tv_sec = o.io_timeout_s};
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        return -1;
    }
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)o.port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int
write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The body of event number n of kind k. */
static int
make_body(enum ev_kind k, uint64_t n, char *buf, size_t len)
{
    switch (k) {
    case K_CRASH:
        return snprintf(buf, len,
                        "{\"user_id\": %" PRIu64 ", \"timestamp\": 1700000000, "
                        "\"message\": \"%s-%" PRIu64 "%s\"}",
                        n, o.prefix, n, padding);
    case K_AD:
        return snprintf(buf, len,
                        "{\"ip_address\": \"10.%u.%u.%u\", \"user_agent\": \"e2e%s\", "
                        "\"referring_url\": \"https://example.com/p?n=%" PRIu64 "\", "
                        "\"advertiser_id\": \"%s-%" PRIu64 "\", \"metadata\": {\"n\": %" PRIu64
                        "}}",
                        (unsigned)(n >> 16 & 255), (unsigned)(n >> 8 & 255), (unsigned)(n & 255),
                        padding, n, o.prefix, n, n);
    case K_LOGIN:
        return snprintf(buf, len,
                        "{\"user_id\": \"%s-%" PRIu64 "\", \"timestamp\": 1700000000, "
                        "\"app_version\": \"1.2%s\", \"ip\": \"::1\"}",
                        o.prefix, n, padding);
    case K_SAMPLE:
        return snprintf(buf, len,
                        "{\"time_stamp\": \"2024-05-01T10:00:00Z\", \"data\": [%" PRIu64 "]}", n);
    default:
        return snprintf(buf, len, "{\"id\": \"%s-%" PRIu64 "\", \"name\": \"p%s\"}", o.prefix, n,
                        padding);
    }
}

/* Read one answer: status, whether Retry-After came, the "id" (37 bytes), whether it says
 * "duplicate":true. -1: I/O error. */
static int
read_answer(int fd, char *buf, int *status, bool *retry_after, bool *closing, char *id,
            bool *duplicate)
{
    size_t have = 0;
    char *end = NULL;
    long clen = -1;
    size_t hlen;

    for (;;) {
        ssize_t r;

        if (have + 1 >= CLI_RESP_MAX) {
            return -1;
        }
        r = recv(fd, buf + have, CLI_RESP_MAX - 1 - have, 0);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return -1;
        }
        have += (size_t)r;
        buf[have] = '\0';
        end = strstr(buf, "\r\n\r\n");
        if (end != NULL) {
            break;
        }
    }
    hlen = (size_t)(end - buf) + 4;
    if (sscanf(buf, "HTTP/1.%*d %d", status) != 1) {
        return -1;
    }
    *retry_after = false;
    *closing = false;
    for (char *line = strstr(buf, "\r\n"); line != NULL && line < end;
         line = strstr(line + 2, "\r\n")) {
        char *h = line + 2;

        if (strncasecmp(h, "Content-Length:", 15) == 0) {
            clen = strtol(h + 15, NULL, 10);
        } else if (strncasecmp(h, "Retry-After:", 12) == 0) {
            *retry_after = true;
        } else if (strncasecmp(h, "Connection: close", 17) == 0) {
            *closing = true;
        }
    }
    if (clen < 0) {
        clen = 0; /* 204 and friends */
    }
    if (hlen + (size_t)clen >= CLI_RESP_MAX) {
        return -1;
    }
    while (have < hlen + (size_t)clen) {
        ssize_t r = recv(fd, buf + have, hlen + (size_t)clen - have, 0);

        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return -1;
        }
        have += (size_t)r;
    }
    buf[have] = '\0';
    id[0] = '\0';
    *duplicate = strstr(buf + hlen, "\"duplicate\":true") != NULL;
    if (*status == 202) {
        char *p = strstr(buf + hlen, "\"id\":\"");

        if (p == NULL || strlen(p + 6) < 36 || p[6 + 36] != '"') {
            return -1; /* a 202 for one event always names its id */
        }
        memcpy(id, p + 6, 36);
        id[36] = '\0';
    }
    return 0;
}

static void
record(FILE *f, const char *line)
{
    if (f == NULL) {
        return;
    }
    pthread_mutex_lock(&out_mu);
    fputs(line, f);
    pthread_mutex_unlock(&out_mu);
}

static void
max_update(atomic_uint_fast64_t *m, uint64_t v)
{
    uint_fast64_t cur = atomic_load(m);

    while (v > cur && !atomic_compare_exchange_weak(m, &cur, v)) {
    }
}

/* How one attempt at a request ended. */
enum attempt { A_DONE, A_AGAIN, A_NEXT };

/*
 * Send req on *fd (connecting first if needed) and read the answer: A_DONE when an answer
 * settled the event (202, or a status that is not retried), A_AGAIN when a keyed event must
 * be sent again (no connection, I/O error or timeout, a 5xx), A_NEXT when an unkeyed event
 * got no answer (it is not sent again). Records and counts what came; an unkeyed event is
 * recorded as sent (sent_line) once written to a socket, *written says it was before.
 */
static enum attempt
attempt_once(int *fd, const char *req, size_t rlen, enum ev_kind k, uint64_t n, char *resp,
             const char *sent_line, bool *written)
{
    char line[128];
    char id[40];
    int status = 0;
    bool retry_after = false;
    bool closing = false;
    bool duplicate = false;
    double t0;

    while (*fd < 0 && (o.keyed || go_on())) {
        *fd = conn_open();
        if (*fd >= 0) {
            atomic_fetch_add(&t.connects, 1);
            break;
        }
        atomic_fetch_add(&t.connect_fail, 1);
        if (o.keyed) {
            sleep_ms(CLI_RETRY_MS);
            return A_AGAIN; /* the caller decides whether time is left */
        }
        sleep_ms(CLI_RETRY_MS);
    }
    if (*fd < 0) {
        return A_NEXT;
    }
    if (!*written && !o.keyed) {
        record(o.sent, sent_line);
        atomic_fetch_add(&t.sent, 1);
    } else if (*written) {
        atomic_fetch_add(&t.resent, 1);
    }
    *written = true;
    t0 = now_s();
    if (write_all(*fd, req, rlen) != 0 ||
        read_answer(*fd, resp, &status, &retry_after, &closing, id, &duplicate) != 0) {
        atomic_fetch_add(&t.io_errors, 1);
        close(*fd);
        *fd = -1;
        sleep_ms(CLI_RETRY_MS);
        return o.keyed ? A_AGAIN : A_NEXT;
    }
    max_update(&t.max_latency_us, (uint64_t)((now_s() - t0) * 1e6));
    if (closing) {
        close(*fd);
        *fd = -1;
    }
    if (status == 202) {
        snprintf(line, sizeof(line), "%" PRIu64 " %s\n", n, k == K_PRODUCT ? "-" : id);
        record(o.ack, line);
        atomic_fetch_add(&t.acked[k], 1);
        atomic_fetch_add(&t.duplicates, duplicate ? 1 : 0);
        return A_DONE;
    }
    if (status == 503) {
        atomic_fetch_add(&t.status_503, 1);
        atomic_fetch_add(&t.retry_after, retry_after ? 1 : 0);
        sleep_ms(CLI_BUSY_MS);
        return o.keyed ? A_AGAIN : A_DONE;
    }
    if (o.keyed && status >= 500 && status <= 599) {
        atomic_fetch_add(&t.status_5xx, 1);
        sleep_ms(CLI_BUSY_MS);
        return A_AGAIN;
    }
    atomic_fetch_add(&t.status_other, 1);
    fprintf(stderr, "dpclient: unexpected status %d for %s\n", status, kind_name[k]);
    return A_DONE;
}

static void *
conn_main(void *arg)
{
    uint64_t conn = (uint64_t)(uintptr_t)arg;
    char *req = malloc(8192 + 2 * o.pad);
    char *body = malloc(4096 + 2 * o.pad);
    char *resp = malloc(CLI_RESP_MAX);
    size_t body_cap = 4096 + 2 * o.pad;
    int kinds[K_COUNT];
    int nk = 0;
    int fd = -1;
    double next = now_s();

    if (req == NULL || body == NULL || resp == NULL) {
        fprintf(stderr, "dpclient: out of memory\n");
        exit(1);
    }
    for (int k = 0; k < K_COUNT; k++) {
        if (o.kinds[k]) {
            kinds[nk++] = k;
        }
    }
    for (uint64_t i = 0; i < o.max_per_conn && go_on(); i++) {
        enum ev_kind k = (enum ev_kind)kinds[(conn + i) % (uint64_t)nk];
        uint64_t n = o.base + conn * CLI_PER_CONN + i + 1;
        char line[128];
        char key[96];
        int blen;
        int rlen;
        double first;
        bool written = false;

        if (o.rate > 0) {
            double wait = next - now_s();

            if (wait > 0) {
                sleep_ms((int)(wait * 1000));
            }
            next += 1.0 / o.rate;
        }
        blen = make_body(k, n, body, body_cap);
        key[0] = '\0';
        if (o.keyed) {
            snprintf(key, sizeof(key), "Idempotency-Key: %s-%" PRIu64 "\r\n", o.prefix, n);
        }
        rlen = snprintf(req, 8192 + 2 * o.pad,
                        "POST /v1/events/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        "Content-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s",
                        kind_name[k], key, blen, body);
        if (o.keyed) {
            snprintf(line, sizeof(line), "%" PRIu64 " %s-%" PRIu64 " %s\n", n, o.prefix, n,
                     kind_name[k]);
        } else {
            snprintf(line, sizeof(line), "%" PRIu64 "\n", n);
        }
        /* Keyed: recorded before the first attempt, so that an event none of whose attempts
         * reached a server is still counted as sent. */
        if (o.keyed) {
            record(o.sent, line);
            atomic_fetch_add(&t.sent, 1);
        }
        first = now_s();
        while (attempt_once(&fd, req, (size_t)rlen, k, n, resp, line, &written) == A_AGAIN) {
            if (now_s() - first > o.retry_s) {
                atomic_fetch_add(&t.unanswered, 1);
                fprintf(stderr, "dpclient: %s-%" PRIu64 " unanswered after %.0f s\n", o.prefix, n,
                        o.retry_s);
                break;
            }
        }
    }
    if (fd >= 0) {
        close(fd);
    }
    free(req);
    free(body);
    free(resp);
    return NULL;
}

static int
parse_kinds(const char *s)
{
    char *copy = strdup(s);
    char *save = NULL;

    if (copy == NULL) {
        return -1;
    }
    memset(o.kinds, 0, sizeof(o.kinds));
    for (char *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        int k;

        for (k = 0; k < K_COUNT && strcmp(tok, kind_opt[k]) != 0; k++) {
        }
        if (k == K_COUNT) {
            free(copy);
            return -1;
        }
        o.kinds[k] = true;
    }
    free(copy);
    o.nkinds = 0;
    for (int k = 0; k < K_COUNT; k++) {
        o.nkinds += o.kinds[k] ? 1 : 0;
    }
    return o.nkinds > 0 ? 0 : -1;
}

int
main(int argc, char **argv)
{
    const char *ack_path = NULL;
    const char *sent_path = NULL;
    pthread_t th[CLI_MAX_CONNS];
    uint64_t acked = 0;
    double t0;
    int c;

    o.conns = 4;
    o.seconds = 5;
    o.max_per_conn = CLI_PER_CONN - 1;
    o.prefix = "e2e";
    o.retry_s = CLI_RETRY_S;
    o.io_timeout_s = CLI_IO_TIMEOUT_S;
    parse_kinds("crash");
    while ((c = getopt(argc, argv, "p:c:d:n:r:t:B:x:s:kR:T:o:S:")) != -1) {
        switch (c) {
        case 'p':
            o.port = atoi(optarg);
            break;
        case 'c':
            o.conns = atoi(optarg);
            break;
        case 'd':
            o.seconds = atof(optarg);
            break;
        case 'n':
            o.max_per_conn = strtoull(optarg, NULL, 10);
            break;
        case 'r':
            o.rate = atof(optarg);
            break;
        case 't':
            if (parse_kinds(optarg) != 0) {
                fprintf(stderr, "dpclient: bad -t %s\n", optarg);
                return 2;
            }
            break;
        case 'B':
            o.base = strtoull(optarg, NULL, 10);
            break;
        case 'x':
            o.prefix = optarg;
            break;
        case 's':
            o.pad = strtoull(optarg, NULL, 10);
            break;
        case 'k':
            o.keyed = true;
            break;
        case 'R':
            o.retry_s = atof(optarg);
            break;
        case 'T':
            o.io_timeout_s = atoi(optarg);
            break;
        case 'o':
            ack_path = optarg;
            break;
        case 'S':
            sent_path = optarg;
            break;
        default:
            fprintf(stderr, "usage: dpclient -p PORT [-c CONNS] [-d S] [-n MAX] [-r RATE] "
                            "[-t KINDS] [-B BASE] [-x PREFIX] [-s PAD] [-k] [-R RETRY_S] [-T IO_S] "
                            "-o ACKFILE [-S SENTFILE]\n");
            return 2;
        }
    }
    if (o.port <= 0 || o.conns < 1 || o.conns > CLI_MAX_CONNS || ack_path == NULL ||
        o.max_per_conn >= CLI_PER_CONN || o.pad > 1000000 || o.io_timeout_s < 1 || o.retry_s < 0) {
        fprintf(stderr, "dpclient: need -p PORT, -o ACKFILE, 1 <= -c <= %d\n", CLI_MAX_CONNS);
        return 2;
    }
    padding = malloc(o.pad + 1);
    if (padding == NULL) {
        return 1;
    }
    memset(padding, 'x', o.pad);
    padding[o.pad] = '\0';
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_stop);
    signal(SIGINT, on_stop);
    o.ack = fopen(ack_path, "w");
    o.sent = sent_path != NULL ? fopen(sent_path, "w") : NULL;
    if (o.ack == NULL || (sent_path != NULL && o.sent == NULL)) {
        perror("dpclient: output file");
        return 1;
    }
    t0 = now_s();
    deadline = t0 + o.seconds;
    for (int i = 0; i < o.conns; i++) {
        if (pthread_create(&th[i], NULL, conn_main, (void *)(uintptr_t)i) != 0) {
            fprintf(stderr, "dpclient: cannot start thread %d\n", i);
            return 1;
        }
    }
    for (int i = 0; i < o.conns; i++) {
        pthread_join(th[i], NULL);
    }
    if (fclose(o.ack) != 0 || (o.sent != NULL && fclose(o.sent) != 0)) {
        perror("dpclient: writing output");
        return 1;
    }
    for (int k = 0; k < K_COUNT; k++) {
        acked += atomic_load(&t.acked[k]);
        if (o.kinds[k]) {
            printf("acked %s=%" PRIu64 "\n", kind_name[k], (uint64_t)atomic_load(&t.acked[k]));
        }
    }
    printf("dpclient: conns=%d seconds=%.1f sent=%" PRIu64 " acked=%" PRIu64 " 503=%" PRIu64
           " retry_after=%" PRIu64 " other=%" PRIu64 " io_errors=%" PRIu64 " connects=%" PRIu64
           " connect_failures=%" PRIu64 " max_latency_ms=%.1f",
           o.conns, now_s() - t0, (uint64_t)atomic_load(&t.sent), acked,
           (uint64_t)atomic_load(&t.status_503), (uint64_t)atomic_load(&t.retry_after),
           (uint64_t)atomic_load(&t.status_other), (uint64_t)atomic_load(&t.io_errors),
           (uint64_t)atomic_load(&t.connects), (uint64_t)atomic_load(&t.connect_fail),
           (double)atomic_load(&t.max_latency_us) / 1000.0);
    if (o.keyed) {
        printf(" keyed: resent=%" PRIu64 " 5xx=%" PRIu64 " duplicate_answers=%" PRIu64
               " unanswered=%" PRIu64,
               (uint64_t)atomic_load(&t.resent), (uint64_t)atomic_load(&t.status_5xx),
               (uint64_t)atomic_load(&t.duplicates), (uint64_t)atomic_load(&t.unanswered));
    }
    printf("\n");
    free(padding);
    return atomic_load(&t.status_other) == 0 && atomic_load(&t.unanswered) == 0 ? 0 : 3;
}
