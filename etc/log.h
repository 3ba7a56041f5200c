/*
 * log.h - leveled logging to stderr, as text or one JSON object a line.
 * Also the process's clocks, wall and monotonic: one definition of each.
 * Each call writes one whole line with a single write(2), so lines from
 * different threads never interleave. Never allocates on the caller's heap.
 */
#ifndef DP_LOG_H
#define DP_LOG_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

enum dp_log_level {
    DP_LOG_DEBUG = 0,
    DP_LOG_INFO = 1,
    DP_LOG_WARN = 2,
    DP_LOG_ERROR = 3,
};

/*
 * dp_log_setup - choose the threshold and the format for later lines.
 * level: "debug", "info", "warn" or "error"; format: "text" or "json".
 * Returns 0, or DP_ERR_INVALID for an unknown name (nothing changed).
 * Safe to call again at any time (SIGHUP re-reads log.level).
 */
int dp_log_setup(const char *level, const char *format);

/* dp_log_enabled - true when a line at this level would be written. */
bool dp_log_enabled(enum dp_log_level level);

/*
 * dp_log - write one line.
 * msg: a short fixed text ("batch loaded"); kv_fmt: NULL, or a printf
 * format producing "key=value key=value ..." pairs. A value runs until the
 * next " key=" or the end, so it may contain spaces. In text mode the line is
 * "2026-11-26T09:00:00.123Z info batch loaded rows=5 first=1"; in json mode
 * {"ts":"...","level":"info","msg":"batch loaded","rows":"5","first":"1"}.
 * Lines longer than 8 KiB are truncated.
 */
void dp_log(enum dp_log_level level, const char *msg, const char *kv_fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * dp_now_us - the wall clock in microseconds since the epoch (UTC): the clock
 * of log lines, received_at, and the loader's figures.
 */
int64_t dp_now_us(void);

/*
 * dp_time_text - us (microseconds since the epoch, as dp_now_us gives) as an RFC 3339
 * UTC time with milliseconds, "2026-11-30T17:02:03.456Z", the format of log lines and of
 * /v1/status. A negative us gives the epoch.
 */
#define DP_TIME_TEXT_MAX 64 /* bytes with NUL; the text itself is 24 bytes */
void dp_time_text(int64_t us, char out[DP_TIME_TEXT_MAX]);

/*
 * dp_mono_us, dp_mono_ms - CLOCK_MONOTONIC in microseconds and in milliseconds: the clock of
 * intervals and deadlines (schedules, idle connections, time-outs), which never jumps with
 * the wall clock. Only differences between two readings mean anything.
 */
int64_t dp_mono_us(void);
int64_t dp_mono_ms(void);

/*
 * dp_cond_init_mono - initialise cv so that pthread_cond_timedwait reads its deadline on
 * CLOCK_MONOTONIC (a deadline of dp_mono_us's clock, safe from a wall clock set back).
 * Returns 0, or DP_ERR_NOMEM when the attribute or the variable cannot be set up.
 */
int dp_cond_init_mono(pthread_cond_t *cv);

/* dp_mono_timespec - us, a dp_mono_us reading, as the timespec pthread_cond_timedwait takes. */
void dp_mono_timespec(int64_t us, struct timespec *ts);

#define dp_debug(...) dp_log(DP_LOG_DEBUG, __VA_ARGS__)
#define dp_info(...) dp_log(DP_LOG_INFO, __VA_ARGS__)
#define dp_warn(...) dp_log(DP_LOG_WARN, __VA_ARGS__)
#define dp_error(...) dp_log(DP_LOG_ERROR, __VA_ARGS__)

#endif
