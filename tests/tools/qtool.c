/*
 * qtool.c - a test tool over the queue API, for the shell tests:
 *   qtool DIR stats               one line: events=N next_seq=N bytes=N
 *   qtool DIR dump                one line per event: seq uuid type flags json
 *   qtool DIR delete FIRST LAST   delete that range of sequence numbers
 *   qtool DIR stamps              "SEQ RECEIVED_US FLAGS" for every event, in seq order
 * Test code only; it opens the queue like the daemons do.
 */
#include "etc/err.h"
#include "events/events.h"
#include "queue/queue.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
dump_one(void *arg, const struct queue_event *ev)
{
    struct ev_buf b = {0};

    (void)arg;
    ev_buf_put_uuid(&b, ev->uuid);
    printf("%" PRIu64 " %.*s %.*s %u %.*s\n", ev->seq, (int)b.len, b.data, (int)ev->type_len,
           ev->type, ev->flags, (int)ev->json_len, ev->json);
    ev_buf_free(&b);
    return 0;
}

static int
stamp_one(void *arg, const struct queue_event *ev)
{
    (void)arg;
    printf("%" PRIu64 " %" PRId64 " %u\n", ev->seq, ev->received_us, ev->flags);
    return 0;
}

int
main(int argc, char **argv)
{
    struct queue *q = NULL;
    struct queue_stats st;
    uint64_t last = 0;
    uint64_t from = 1;
    size_t count = 0;
    int rc;

    if (argc < 3) {
        fprintf(stderr, "usage: qtool DIR stats|dump|stamps|delete FIRST LAST\n");
        return 2;
    }
    rc = queue_open(&q, argv[1], 1ULL << 30, true);
    if (rc != 0) {
        fprintf(stderr, "qtool: open %s: %s\n", argv[1], dp_strerror(rc));
        return 1;
    }
    if (strcmp(argv[2], "stats") == 0) {
        rc = queue_stats(q, &st);
        printf("events=%" PRIu64 " next_seq=%" PRIu64 " bytes=%" PRIu64 "\n", st.events,
               st.next_seq, st.bytes);
    } else if (strcmp(argv[2], "dump") == 0) {
        do {
            rc = queue_read(q, from, 10000, 0, dump_one, NULL, &last, &count);
            from = last + 1;
        } while (rc == 0 && count > 0);
    } else if (strcmp(argv[2], "stamps") == 0) {
        do {
            rc = queue_read(q, from, 10000, 0, stamp_one, NULL, &last, &count);
            from = last + 1;
        } while (rc == 0 && count > 0);
    } else if (strcmp(argv[2], "delete") == 0 && argc == 5) {
        rc = queue_delete_range(q, strtoull(argv[3], NULL, 10), strtoull(argv[4], NULL, 10), NULL,
                                0);
    } else {
        fprintf(stderr, "qtool: unknown command %s\n", argv[2]);
        rc = DP_ERR_INVALID;
    }
    if (rc != 0) {
        fprintf(stderr, "qtool: %s\n", dp_strerror(rc));
    }
    queue_close(q);
    return rc == 0 ? 0 : 1;
}
