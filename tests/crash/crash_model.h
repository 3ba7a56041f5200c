/*
 * crash_model.h - the events the crash driver appends, made from their index alone so that the
 * explorer can tell each stored record from what was appended byte for byte; and the marks the
 * driver writes into the shim's log. Test code only: nothing outside tests/crash/ includes it.
 */
#ifndef DP_CRASH_MODEL_H
#define DP_CRASH_MODEL_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define CRASH_TYPE "crash_report"
#define CRASH_ERROR "rejected at ingest"
#define CRASH_EVENTS_MAX 4096      /* indices the driver may use */
#define CRASH_RECOVER_FIRST 2048   /* first index of a run that recovers an earlier one's */
#define CRASH_JSON_MAX 8192        /* longest event, bytes */
#define CRASH_SMALL_MAP (1u << 20) /* map of the first opens, bytes */
#define CRASH_LARGE_MAP (2u << 20) /* map after the reopen that grows it, bytes */
#define CRASH_QUEUE_SUBDIR "q/sub" /* the queue below the root: two levels to create */

/*
 * Marks (crash_shim_mark), each ordered with the file-system calls around it:
 *   "instance ID"              queue_open returned the instance id ID
 *   "start I LEN KEYED REJ"    event I (LEN bytes of JSON) is about to be appended
 *   "ack I SEQ"                queue_append returned 0: event I is acknowledged as SEQ
 *   "delbegin FIRST LAST"      queue_delete_range(FIRST, LAST) is about to run
 *   "delend FIRST LAST"        it returned 0
 *   "prune I"                  from here on the keys of events below I may be pruned
 *   "snapshot begin", "snapshot end" (from the shim) around what the root held at the start
 */

/* The JSON of event i, len bytes (at least 32), into out (len + 1 bytes). */
static inline void
crash_event_json(uint32_t i, uint32_t len, char *out)
{
    int n = snprintf(out, len + 1, "{\"i\":%u,\"p\":\"", i);

    for (uint32_t k = (uint32_t)n; k + 2 < len; k++) {
        out[k] = (char)('a' + (i * 31u + k * 7u) % 26u);
    }
    out[len - 2] = '"';
    out[len - 1] = '}';
    out[len] = '\0';
}

/* Event i's idempotency key into out (32 bytes); returns its length. */
static inline size_t
crash_event_key(uint32_t i, char *out)
{
    return (size_t)snprintf(out, 32, "key-%u", i);
}

/* Event i's digest: what a repeat of it must carry. */
static inline void
crash_event_digest(uint32_t i, uint8_t *out, size_t len)
{
    for (size_t k = 0; k < len; k++) {
        out[k] = (uint8_t)(i * 13u + k);
    }
}

/* The index a stored JSON names, or UINT32_MAX when it names none. */
static inline uint32_t
crash_event_index(const char *json, size_t len)
{
    unsigned int i;
    char buf[24];

    if (len < 8) {
        return UINT32_MAX;
    }
    memcpy(buf, json, len < sizeof(buf) - 1 ? len : sizeof(buf) - 1);
    buf[len < sizeof(buf) - 1 ? len : sizeof(buf) - 1] = '\0';
    if (sscanf(buf, "{\"i\":%u,", &i) != 1 || i >= CRASH_EVENTS_MAX) {
        return UINT32_MAX;
    }
    return i;
}

#endif
