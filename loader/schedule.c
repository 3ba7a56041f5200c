/*
 * schedule.c - when the loader runs and how long it waits after a failure.
 * Pure functions of their arguments (clocks and random numbers come in as values), so the
 * tests can walk every case without sleeping.
 */
#include "loader/loader.h"

bool
ldr_schedule_due(const struct ldr_schedule *s, int64_t now_ms, int64_t last_start_ms,
                 int64_t last_end_ms, uint64_t queued, bool forced, int64_t *wait_ms)
{
    int64_t regular_ms;

    *wait_ms = 0;
    if (forced || last_start_ms < 0) {
        return true;
    }
    regular_ms = last_start_ms + (int64_t)s->interval_s * 1000;
    if (now_ms >= regular_ms) {
        return true;
    }
    if (s->high_water >= 0 && queued > (uint64_t)s->high_water &&
        now_ms >= last_end_ms + (int64_t)s->min_interval_s * 1000) {
        return true;
    }
    *wait_ms = regular_ms - now_ms;
    return false;
}

int64_t
ldr_backoff_ms(int attempt, uint32_t rnd)
{
    int64_t d = LDR_BACKOFF_BASE_MS;

    for (int i = 1; i < attempt && d < LDR_BACKOFF_MAX_MS; i++) {
        d *= 2;
    }
    if (d > LDR_BACKOFF_MAX_MS) {
        d = LDR_BACKOFF_MAX_MS;
    }
    /* Half fixed, half random: never shorter than d / 2, never longer than d. */
    return d / 2 + (int64_t)(rnd % (uint32_t)(d / 2 + 1));
}
