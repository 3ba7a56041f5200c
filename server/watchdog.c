/*
 * watchdog.c - the thread that holds every request body to server.request_timeout_ms in all:
 * bodies being read are in its list with their deadlines, and it shuts the reading side of a
 * connection past its deadline, which ends a read civetweb would keep waiting in while bytes
 * trickle in. It only ever shuts a socket's reading side; it never closes one.
 */
#include "etc/err.h"
#include "etc/log.h"
#include "server/srv.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define WATCHDOG_IDLE_MS 1000 /* the watchdog's longest sleep */

/* A connected socket's ends: the peer's address as text and port, the local port. */
struct sock_ends {
    char addr[INET6_ADDRSTRLEN];
    int peer_port;
    int local_port;
};

/* The ends of fd; false when fd is not a connected TCP socket. */
static bool
sock_ends(int fd, struct sock_ends *out)
{
    struct sockaddr_storage peer;
    struct sockaddr_storage local;
    socklen_t pl = sizeof(peer);
    socklen_t ll = sizeof(local);
    const void *a;

    if (getsockname(fd, (struct sockaddr *)&local, &ll) != 0 ||
        getpeername(fd, (struct sockaddr *)&peer, &pl) != 0 || peer.ss_family != local.ss_family) {
        return false;
    }
    if (peer.ss_family == AF_INET) {
        a = &((struct sockaddr_in *)&peer)->sin_addr;
        out->peer_port = ntohs(((struct sockaddr_in *)&peer)->sin_port);
        out->local_port = ntohs(((struct sockaddr_in *)&local)->sin_port);
    } else if (peer.ss_family == AF_INET6) {
        a = &((struct sockaddr_in6 *)&peer)->sin6_addr;
        out->peer_port = ntohs(((struct sockaddr_in6 *)&peer)->sin6_port);
        out->local_port = ntohs(((struct sockaddr_in6 *)&local)->sin6_port);
    } else {
        return false;
    }
    return inet_ntop(peer.ss_family, a, out->addr, sizeof(out->addr)) != NULL;
}

/*
 * Shut the reading side of every connection in wd's list past its deadline: a read blocked
 * in civetweb then returns what it has, and the next one returns 0. civetweb does not hand
 * out a connection's socket, so the sockets of this process are searched for the one with
 * the connection's address and ports (a TCP connection's pair of ends is unique). Called
 * with wd->mu held: a watched body's thread is still reading, so its socket is still open.
 */
static void
watchdog_cut(struct srv_watchdog *wd, int64_t now)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;

    if (d == NULL) {
        dp_warn("watchdog: cannot list /proc/self/fd", "error=%s", strerror(errno));
        return;
    }
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        struct sock_ends se;

        if (e->d_name[0] < '0' || e->d_name[0] > '9' || fd == dirfd(d) || !sock_ends(fd, &se)) {
            continue;
        }
        for (struct srv_body_watch *w = wd->head; w != NULL; w = w->next) {
            if (!w->cut && w->deadline_us <= now && w->peer_port == se.peer_port &&
                w->local_port == se.local_port && strcmp(w->addr, se.addr) == 0) {
                shutdown(fd, SHUT_RD);
                w->cut = true;
                atomic_fetch_add(&wd->cut, 1);
                dp_info("body not received within server.request_timeout_ms: cut off",
                        "client=%s:%d", w->addr, w->peer_port);
                break;
            }
        }
    }
    closedir(d);
}

static void *
watchdog_main(void *arg)
{
    struct srv_watchdog *wd = arg;
    struct timespec ts;

    pthread_mutex_lock(&wd->mu);
    while (!wd->stop) {
        int64_t now = dp_mono_us();
        int64_t next = now + (int64_t)WATCHDOG_IDLE_MS * 1000;
        bool due = false;

        for (struct srv_body_watch *w = wd->head; w != NULL; w = w->next) {
            if (w->cut) {
                continue;
            }
            due = due || w->deadline_us <= now;
            next = w->deadline_us > now && w->deadline_us < next ? w->deadline_us : next;
        }
        if (due) {
            watchdog_cut(wd, now);
        }
        dp_mono_timespec(next, &ts);
        pthread_cond_timedwait(&wd->cv, &wd->mu, &ts);
    }
    pthread_mutex_unlock(&wd->mu);
    return NULL;
}

int
srv_watchdog_start(struct srv *s)
{
    struct srv_watchdog *wd = &s->watchdog;

    if (pthread_mutex_init(&wd->mu, NULL) != 0) {
        return DP_ERR_NOMEM;
    }
    if (dp_cond_init_mono(&wd->cv) != 0) {
        pthread_mutex_destroy(&wd->mu);
        return DP_ERR_NOMEM;
    }
    wd->head = NULL;
    wd->stop = false;
    if (pthread_create(&wd->thread, NULL, watchdog_main, wd) != 0) {
        pthread_cond_destroy(&wd->cv);
        pthread_mutex_destroy(&wd->mu);
        return DP_ERR_NOMEM;
    }
    wd->running = true;
    return 0;
}

void
srv_watchdog_stop(struct srv *s)
{
    struct srv_watchdog *wd = &s->watchdog;

    if (!wd->running) {
        return;
    }
    pthread_mutex_lock(&wd->mu);
    wd->stop = true;
    pthread_cond_signal(&wd->cv);
    pthread_mutex_unlock(&wd->mu);
    pthread_join(wd->thread, NULL);
    pthread_cond_destroy(&wd->cv);
    pthread_mutex_destroy(&wd->mu);
    wd->running = false;
}

void
srv_watch_add(struct srv_watchdog *wd, struct srv_body_watch *w)
{
    if (!wd->running) {
        return;
    }
    pthread_mutex_lock(&wd->mu);
    w->prev = NULL;
    w->next = wd->head;
    if (wd->head != NULL) {
        wd->head->prev = w;
    }
    wd->head = w;
    /* The watchdog sleeps at most WATCHDOG_IDLE_MS; wake it only for a sooner deadline. */
    if (w->deadline_us < dp_mono_us() + (int64_t)WATCHDOG_IDLE_MS * 1000) {
        pthread_cond_signal(&wd->cv);
    }
    pthread_mutex_unlock(&wd->mu);
}

bool
srv_watch_remove(struct srv_watchdog *wd, struct srv_body_watch *w)
{
    bool cut;

    if (!wd->running) {
        return false;
    }
    pthread_mutex_lock(&wd->mu);
    if (w->prev != NULL) {
        w->prev->next = w->next;
    } else {
        wd->head = w->next;
    }
    if (w->next != NULL) {
        w->next->prev = w->prev;
    }
    cut = w->cut;
    pthread_mutex_unlock(&wd->mu);
    return cut;
}
