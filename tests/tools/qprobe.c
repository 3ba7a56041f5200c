/*
 * qprobe.c - the queue as the end-to-end tests see it, opened with the daemons' map size
 * (a different one would be written into the environment):
 *   qprobe stats DIR MAX_BYTES   one line: events=N first_seq=N next_seq=N bytes=N
 *                                accepted=N loaded=N dead_lettered=N (one snapshot)
 *   qprobe hold DIR MAX_BYTES    open a read transaction (queue_read's callback), print
 *                                "holding pid=P seq=N", then sleep until killed: what a
 *                                reader killed with a read transaction open leaves behind
 *   qprobe open DIR MAX_BYTES    keep the environment open (no transaction), print
 *                                "open pid=P", sleep until killed: another process of the
 *                                appliance, so LMDB does not reset the reader table
 * Test code only.
 */
#include "etc/err.h"
#include "etc/log.h"
#include "queue/queue.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HOLD_MAX_S 600 /* a holder nobody kills gives up after this */

static int
hold_fn(void *arg, const struct queue_event *ev)
{
    (void)arg;
    printf("holding pid=%ld seq=%" PRIu64 "\n", (long)getpid(), ev->seq);
    fflush(stdout);
    for (int i = 0; i < HOLD_MAX_S; i++) {
        sleep(1);
    }
    return 1;
}

int
main(int argc, char **argv)
{
    struct queue *q = NULL;
    struct queue_stats st;
    int rc;

    if (argc != 4 || (strcmp(argv[1], "stats") != 0 && strcmp(argv[1], "hold") != 0 &&
                      strcmp(argv[1], "open") != 0)) {
        fprintf(stderr, "usage: qprobe stats|hold|open DIR MAX_BYTES\n");
        return 2;
    }
    dp_log_setup("error", "text");
    rc = queue_open(&q, argv[2], strtoull(argv[3], NULL, 10), false);
    if (rc != 0) {
        fprintf(stderr, "qprobe: open %s: %s\n", argv[2], dp_strerror(rc));
        return 1;
    }
    if (strcmp(argv[1], "stats") == 0) {
        rc = queue_stats(q, &st);
        if (rc == 0) {
            printf("events=%" PRIu64 " first_seq=%" PRIu64 " next_seq=%" PRIu64 " bytes=%" PRIu64
                   " accepted=%" PRIu64 " loaded=%" PRIu64 " dead_lettered=%" PRIu64 "\n",
                   st.events, st.first_seq, st.next_seq, st.bytes, st.accepted, st.loaded,
                   st.dead_lettered);
        }
    } else if (strcmp(argv[1], "open") == 0) {
        printf("open pid=%ld\n", (long)getpid());
        fflush(stdout);
        for (int i = 0; i < HOLD_MAX_S; i++) {
            sleep(1);
        }
    } else {
        size_t n = 0;

        rc = queue_read(q, 1, 1, 0, hold_fn, NULL, NULL, &n);
        if (rc == 0 && n == 0) {
            fprintf(stderr, "qprobe: the queue is empty: nothing to hold\n");
            rc = DP_ERR_NOTFOUND;
        }
    }
    queue_close(q);
    if (rc != 0) {
        fprintf(stderr, "qprobe: %s\n", dp_strerror(rc));
        return 1;
    }
    return 0;
}
