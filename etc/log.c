/*
 * log.c - leveled logging to stderr (journald captures it), and the process's clocks.
 * Each line is built in a stack buffer and written with one write(2), so
 * threads never interleave; logging must never abort or allocate. A record is
 * exactly one line: trailing newlines are dropped, inner ones escaped or blanked.
 */
#include "log.h"
#include "err.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 8192

static atomic_int log_threshold = DP_LOG_INFO;
static atomic_bool log_json = false;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int
dp_log_setup(const char *level, const char *format)
{
    int lvl = -1;
    bool json;

    for (int i = 0; i < 4; i++) {
        if (level != NULL && strcmp(level, level_names[i]) == 0) {
            lvl = i;
        }
    }
    if (lvl < 0 || format == NULL) {
        return DP_ERR_INVALID;
    }
    if (strcmp(format, "text") == 0) {
        json = false;
    } else if (strcmp(format, "json") == 0) {
        json = true;
    } else {
        return DP_ERR_INVALID;
    }
    atomic_store(&log_threshold, lvl);
    atomic_store(&log_json, json);
    return 0;
}

int64_t
dp_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void
dp_time_text(int64_t us, char out[DP_TIME_TEXT_MAX])
{
    time_t sec = (time_t)(us / 1000000);
    struct tm tm;

    if (us < 0 || gmtime_r(&sec, &tm) == NULL) {
        sec = 0;
        us = 0;
        gmtime_r(&sec, &tm);
    }
    snprintf(out, DP_TIME_TEXT_MAX, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(us % 1000000 / 1000));
}

int64_t
dp_mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t
dp_mono_ms(void)
{
    return dp_mono_us() / 1000;
}

void
dp_mono_timespec(int64_t us, struct timespec *ts)
{
    ts->tv_sec = (time_t)(us / 1000000);
    ts->tv_nsec = (long)(us % 1000000) * 1000;
}

int
dp_cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t attr;
    int rc;

    if (pthread_condattr_init(&attr) != 0) {
        return DP_ERR_NOMEM;
    }
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0) {
        rc = pthread_cond_init(cv, &attr);
    }
    pthread_condattr_destroy(&attr);
    return rc == 0 ? 0 : DP_ERR_NOMEM;
}

bool
dp_log_enabled(enum dp_log_level level)
{
    return (int)level >= atomic_load(&log_threshold);
}

/* A bounded writer over the line buffer: it silently truncates. */
struct line {
    char buf[LOG_LINE_MAX];
    size_t len;
};

static void
line_put(struct line *l, const char *s, size_t n)
{
    size_t room = sizeof(l->buf) - 1 - l->len; /* keep one byte for '\n' */

    if (n > room) {
        n = room;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void
line_puts(struct line *l, const char *s)
{
    line_put(l, s, strlen(s));
}

/* Append s as the inside of a JSON string. */
static void
line_put_json(struct line *l, const char *s, size_t n)
{
    char esc[8];

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            line_put(l, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            line_put(l, esc, 6);
        } else {
            line_put(l, (const char *)&s[i], 1);
        }
    }
}

/* Length of "key=" at s (a key is [A-Za-z_][A-Za-z0-9_.]*), or 0 if none. */
static size_t
kv_key_len(const char *s)
{
    size_t i = 0;

    if (!isalpha((unsigned char)s[0]) && s[0] != '_') {
        return 0;
    }
    while (isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '.') {
        i++;
    }
    return s[i] == '=' ? i + 1 : 0;
}

/*
 * Whether s[0..n) is a JSON number written as an integer or a decimal fraction ("-12",
 * "0.25"): such values are logged as numbers. Exponents are left as strings, so that an id
 * such as "12e4" is never read as 120000; so are leading zeros ("007"), which JSON forbids.
 */
static bool
kv_is_number(const char *s, size_t n)
{
    size_t i = 0;

    if (i < n && s[i] == '-') {
        i++;
    }
    if (i >= n || !isdigit((unsigned char)s[i])) {
        return false;
    }
    if (s[i] == '0' && i + 1 < n && s[i + 1] != '.') {
        return false;
    }
    while (i < n && isdigit((unsigned char)s[i])) {
        i++;
    }
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n) {
            return false;
        }
        while (i < n && isdigit((unsigned char)s[i])) {
            i++;
        }
    }
    return i == n;
}

/* n without the whitespace (newlines included) that ends s[0..n). */
static size_t
trim_end(const char *s, size_t n)
{
    while (n > 0 && isspace((unsigned char)s[n - 1])) {
        n--;
    }
    return n;
}

/* Turn "a=1 b=two words" into ,"a":1,"b":"two words". */
static void
line_put_kv_json(struct line *l, const char *kv)
{
    const char *p = kv;

    while (*p == ' ') {
        p++;
    }
    while (*p != '\0') {
        size_t klen = kv_key_len(p);
        const char *v;
        const char *end;
        size_t vlen;

        if (klen == 0) {
            /* Not key=value text: keep it under "detail" rather than lose it. */
            line_puts(l, ",\"detail\":\"");
            line_put_json(l, p, trim_end(p, strlen(p)));
            line_puts(l, "\"");
            return;
        }
        line_puts(l, ",\"");
        line_put_json(l, p, klen - 1);
        line_puts(l, "\":");
        v = p + klen;
        end = v;
        while (*end != '\0' && !(end[0] == ' ' && kv_key_len(end + 1) > 0)) {
            end++;
        }
        vlen = trim_end(v, (size_t)(end - v));
        if (kv_is_number(v, vlen)) {
            line_put(l, v, vlen);
        } else {
            line_puts(l, "\"");
            line_put_json(l, v, vlen);
            line_puts(l, "\"");
        }
        p = *end == ' ' ? end + 1 : end;
    }
}

/* Append s as text on one line: control characters (a newline in a value) become spaces. */
static void
line_put_text(struct line *l, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = iscntrl((unsigned char)s[i]) ? ' ' : s[i];
        line_put(l, &c, 1);
    }
}

void
dp_log(enum dp_log_level level, const char *msg, const char *kv_fmt, ...)
{
    struct line l;
    char kv[LOG_LINE_MAX];
    char ts[DP_TIME_TEXT_MAX];
    int lvl = (int)level;

    if (lvl < 0 || lvl > 3 || !dp_log_enabled(level)) {
        return;
    }
    kv[0] = '\0';
    if (kv_fmt != NULL) {
        va_list ap;
        va_start(ap, kv_fmt);
        vsnprintf(kv, sizeof(kv), kv_fmt, ap);
        va_end(ap);
    }
    dp_time_text(dp_now_us(), ts);
    l.len = 0;
    if (atomic_load(&log_json)) {
        line_puts(&l, "{\"ts\":\"");
        line_puts(&l, ts);
        line_puts(&l, "\",\"level\":\"");
        line_puts(&l, level_names[lvl]);
        line_puts(&l, "\",\"msg\":\"");
        line_put_json(&l, msg, trim_end(msg, strlen(msg)));
        line_puts(&l, "\"");
        line_put_kv_json(&l, kv);
        line_puts(&l, "}");
    } else {
        line_puts(&l, ts);
        line_puts(&l, " ");
        line_puts(&l, level_names[lvl]);
        line_puts(&l, " ");
        line_put_text(&l, msg, trim_end(msg, strlen(msg)));
        if (trim_end(kv, strlen(kv)) > 0) {
            line_puts(&l, " ");
            line_put_text(&l, kv, trim_end(kv, strlen(kv)));
        }
    }
    l.buf[l.len++] = '\n';
    /* One write per line; a short write to a pipe of this size does not happen
     * in practice, and logging must never block on retry loops. */
    if (write(STDERR_FILENO, l.buf, l.len) < 0) {
        return;
    }
}
