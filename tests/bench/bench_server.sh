#!/usr/bin/env bash
# bench_server.sh - ingest figures with wrk on loopback (-t2 -c64 -d10s by
# default; BENCH_SECONDS changes the duration), same civetweb thread count:
#   1. a bare civetweb handler that reads the body and answers 204 (baseline);
#   2. POST /v1/events/crash_report, the seed event, one per request, sync on;
#   3. the same with an Idempotency-Key header, a distinct key on every request;
#   4. NDJSON bodies of 1,000 events; then 500 KB of track calls, as Segment batches to
#      /v1/batch and as NDJSON to /v1/events/tracks, without and with an idempotency_key a
#      line (a Segment message always has its messageId key), each with the server's CPU an
#      event;
#   5. (2) again, alternating BENCH_TAP_ROUNDS times (default 3): with no tap, with
#      BENCH_STALLED_TAPS (default 3) stalled GET /v1/tap clients (they sent the request and
#      read nothing; their taps are full before the run starts and drop every event of it),
#      and with one tap client that reads everything.
# Prints requests/s, events/s, p50/p99, events per fsync, server RSS, the ratio of (2) to
# (1) and of (3) to (2), each run of (5) with the server's CPU a request and what the taps
# dropped (datapipe_tap_dropped_total), and the ratios of the stalled and reading runs to
# the runs without a tap. Figures only: nothing here fails on a timing.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
command -v wrk >/dev/null || { echo "bench_server: wrk missing (make deps EXTRA_DEB_PACKAGES=wrk)"; exit 1; }

SECS=${BENCH_SECONDS:-10}
THREADS=64
TMP=$(mktemp -d "${DP_BENCH_DIR:-build}/bench-server.XXXXXX")
trap 't_cleanup; rm -rf "$TMP"' EXIT

SEED='{"event_name": "crash_report","user_id": 888,"timestamp": 1000,"message": "have_fun"}'
lua_post() { # FILE BODYFILE
    cat >"$1" <<LUA
local f = io.open("$2", "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
LUA
}
printf '%s' "$SEED" >"$TMP/seed.json"
for i in $(seq 1 1000); do printf '{"user_id": %d, "timestamp": 1000, "message": "have_fun"}\n' "$i"; done >"$TMP/ndjson"
lua_post "$TMP/seed.lua" "$TMP/seed.json"
lua_post "$TMP/nd.lua" "$TMP/ndjson"
# Keyed: each wrk thread numbers its requests; thread id and number make the key distinct.
lua_post "$TMP/keyed.lua" "$TMP/seed.json"
cat >>"$TMP/keyed.lua" <<'LUA'
local threads = 0
function setup(thread)
    threads = threads + 1
    thread:set("tid", threads)
end
n = 0
function request()
    n = n + 1
    return wrk.format(nil, nil, {["Content-Type"] = "application/json",
                                 ["Idempotency-Key"] = "bench-" .. tid .. "-" .. n})
end
LUA

# run_wrk NAME URL LUA: sets RPS P50 P99 (ms) and prints wrk's summary lines.
run_wrk() {
    wrk -t2 -c64 -d"${SECS}s" --latency -s "$3" "$2" >"$TMP/$1.wrk" 2>&1
    RPS=$(awk '/^Requests\/sec:/ {print $2}' "$TMP/$1.wrk")
    P50=$(awk '$1 == "50%" {print $2}' "$TMP/$1.wrk")
    P99=$(awk '$1 == "99%" {print $2}' "$TMP/$1.wrk")
    NON2XX=$(awk '/Non-2xx/ {print $NF}' "$TMP/$1.wrk")
}
calc() { awk "BEGIN {print $1}"; }
metric() { curl -s "$1/metrics" | awk -v n="$2" '$1 == n {print $2}'; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# The server's CPU time (user + system, clock ticks): a cost a request that the other work on
# this shared machine moves less than it moves requests/s.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SPID/stat"; }

# 1. baseline
port=$(free_port)
start_bg "$TMP/bare.log" "$BUILD/tests/bench/bare_http" "$port" "$THREADS"
BARE_PID=$T_LAST_PID
wait_until 10 "bare_http answers" http_answers "http://127.0.0.1:$port/" || exit 1
run_wrk bare "http://127.0.0.1:$port/" "$TMP/seed.lua"
BARE_RPS=$RPS
printf 'bare civetweb (read body, 204):   %10.0f req/s   p50 %s  p99 %s\n' "$RPS" "$P50" "$P99"
stop_pid "$BARE_PID"

# 2. and 3. datapipe-server, sync on, queue on the same disk as build/; a long request
# timeout: a stalled tap's blocked write in (5) must outlast the run (keep-alive stays 5 s).
port=$(free_port)
cat >"$TMP/cfg.json" <<JSON
{"server": {"listen": "127.0.0.1:$port", "threads": $THREADS, "request_timeout_ms": 120000},
 "queue": {"path": "$TMP/q", "max_bytes": 8589934592, "sync": true},
 "log": {"level": "warn"}}
JSON
start_bg "$TMP/server.log" "$BIN/datapipe-server" -c "$TMP/cfg.json"
SPID=$T_LAST_PID
URL="http://127.0.0.1:$port"
wait_until 10 "the server answers /healthz" http_answers "$URL/healthz" ||
    { cat "$TMP/server.log"; exit 1; }

c0=$(metric "$URL" datapipe_queue_commits_total)
e0=$(metric "$URL" datapipe_queue_committed_events_total)
run_wrk single "$URL/v1/events/crash_report" "$TMP/seed.lua"
c1=$(metric "$URL" datapipe_queue_commits_total)
e1=$(metric "$URL" datapipe_queue_committed_events_total)
SINGLE_RPS=$RPS
printf 'datapipe, 1 event a request:      %10.0f req/s   p50 %s  p99 %s  events/fsync %.1f  non-2xx %s\n' \
    "$RPS" "$P50" "$P99" "$(calc "($e1 - $e0) / ($c1 - $c0 + 0.000001)")" "${NON2XX:-0}"

run_wrk keyed "$URL/v1/events/crash_report" "$TMP/keyed.lua"
c1k=$(metric "$URL" datapipe_queue_commits_total)
e1k=$(metric "$URL" datapipe_queue_committed_events_total)
KEYED_RPS=$RPS
printf 'datapipe, 1 keyed event a request: %9.0f req/s   p50 %s  p99 %s  events/fsync %.1f  non-2xx %s\n' \
    "$RPS" "$P50" "$P99" "$(calc "($e1k - $e1) / ($c1k - $c1 + 0.000001)")" "${NON2XX:-0}"
c1=$c1k
e1=$e1k

run_wrk nd "$URL/v1/events/crash_report" "$TMP/nd.lua"
c2=$(metric "$URL" datapipe_queue_commits_total)
e2=$(metric "$URL" datapipe_queue_committed_events_total)
printf 'datapipe, NDJSON of 1,000 events:  %10.0f req/s = %.0f events/s   p50 %s  p99 %s  events/fsync %.0f  non-2xx %s\n' \
    "$RPS" "$(calc "$RPS * 1000")" "$P50" "$P99" "$(calc "($e2 - $e1) / ($c2 - $c1 + 0.000001)")" "${NON2XX:-0}"

# 4b. Segment tracking API batches of 500 KB of track calls against NDJSON of the same events
# (to /v1/events/tracks), same run: what the SDKs' path costs over the plain one.
seg_msg() { printf '{"type":"track","userId":"user-%d","event":"Order Completed","properties":{"order_id":"o-%d","total":19.5,"currency":"EUR"},"timestamp":"2026-03-01T10:00:00.000Z"%s}' "$1" "$1" "$2"; }
SEG_N=0
: >"$TMP/seg.nd"
while [ "$(stat -c %s "$TMP/seg.nd")" -lt 500000 ]; do
    SEG_N=$((SEG_N + 1))
    { seg_msg "$SEG_N" ",\"messageId\":\"m-$SEG_N\""; echo; } >>"$TMP/seg.nd"
done
{ printf '{"batch":['; for i in $(seq 1 "$SEG_N"); do [ "$i" = 1 ] || printf ','; seg_msg "$i" ""; done
  printf '],"sentAt":"2026-03-01T10:00:01.000Z"}'; } >"$TMP/seg.json"
lua_post "$TMP/seg.lua" "$TMP/seg.json"
lua_post "$TMP/segnd.lua" "$TMP/seg.nd"
# The same NDJSON, each line with an idempotency_key of its own in every request, as each
# Segment message has its messageId: the same events, each held to exactly once.
cat >"$TMP/segndk.lua" <<LUA
local lines = {}
for l in io.lines("$TMP/seg.nd") do lines[#lines + 1] = l:sub(1, -2) end
local threads = 0
function setup(thread)
    threads = threads + 1
    thread:set("tid", threads)
end
n = 0
function request()
    n = n + 1
    local parts = {}
    for i, l in ipairs(lines) do
        parts[i] = l .. ',"idempotency_key":"k' .. tid .. "-" .. n .. "-" .. i .. '"}'
    end
    return wrk.format("POST", nil, {["Content-Type"] = "application/json"},
                      table.concat(parts, "\n") .. "\n")
end
LUA
# ev_cpu_us TICKS0: the server's CPU microseconds an event since TICKS0, for the last run.
ev_cpu_us() { calc "($(cpu_ticks) - $1) * 1000000 / $(getconf CLK_TCK) / ($RPS * $SECS * $SEG_N)"; }
t0=$(cpu_ticks)
run_wrk segnd "$URL/v1/events/tracks" "$TMP/segnd.lua"
SEGND_EPS=$(calc "$RPS * $SEG_N")
SEGND_CPU=$(ev_cpu_us "$t0")
printf 'datapipe, NDJSON of %d tracks:    %10.1f req/s = %.0f events/s   p50 %s  p99 %s  server CPU %.2f us/event  non-2xx %s\n' \
    "$SEG_N" "$RPS" "$SEGND_EPS" "$P50" "$P99" "$SEGND_CPU" "${NON2XX:-0}"
t0=$(cpu_ticks)
run_wrk segndk "$URL/v1/events/tracks" "$TMP/segndk.lua"
SEGNDK_EPS=$(calc "$RPS * $SEG_N")
SEGNDK_CPU=$(ev_cpu_us "$t0")
printf 'datapipe, NDJSON of %d keyed tracks: %8.1f req/s = %.0f events/s   p50 %s  p99 %s  server CPU %.2f us/event  non-2xx %s\n' \
    "$SEG_N" "$RPS" "$SEGNDK_EPS" "$P50" "$P99" "$SEGNDK_CPU" "${NON2XX:-0}"
t0=$(cpu_ticks)
run_wrk seg "$URL/v1/batch" "$TMP/seg.lua"
SEG_EPS=$(calc "$RPS * $SEG_N")
SEG_CPU=$(ev_cpu_us "$t0")
printf 'datapipe, Segment batch of %d:    %10.1f req/s = %.0f events/s   p50 %s  p99 %s  server CPU %.2f us/event  non-2xx %s\n' \
    "$SEG_N" "$RPS" "$SEG_EPS" "$P50" "$P99" "$SEG_CPU" "${NON2XX:-0}"
printf 'server RSS after the runs:         %10d KiB\n' "$(rss_kb "$SPID")"
printf 'ratio single-event / bare civetweb: %.2f (target >= 0.70)\n' "$(calc "$SINGLE_RPS / $BARE_RPS")"
printf 'ratio keyed / unkeyed single-event: %.2f (target >= 0.80)\n' "$(calc "$KEYED_RPS / $SINGLE_RPS")"
printf 'ratio Segment batches / NDJSON of the same events, each with its key: %.2f (target >= 0.70); server CPU an event, NDJSON / Segment: %.2f\n' \
    "$(calc "$SEG_EPS / $SEGNDK_EPS")" "$(calc "$SEGNDK_CPU / $SEG_CPU")"
printf 'ratio Segment batches / NDJSON of the same events without keys: %.2f; server CPU an event: %.2f\n' \
    "$(calc "$SEG_EPS / $SEGND_EPS")" "$(calc "$SEGND_CPU / $SEG_CPU")"

# 5. the live tap: no tap (a), stalled taps (b), a tap that reads everything (c), alternated
# on the same server. A tap client is bash holding a connection that sent GET /v1/tap: a
# stalled one then sleeps (it never reads: its receive buffer, the server's send buffer and
# the tap's ring fill, then the tap drops), a reading one cats it to /dev/null.
ROUNDS=${BENCH_TAP_ROUNDS:-3}
STALLED=${BENCH_STALLED_TAPS:-3}
TAP_REQ='GET /v1/tap HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'
ACCEPTED='datapipe_events_accepted_total{type="crash_report"}'
# tap_client stall|read: a tap client ($T_LAST_PID); killing it closes its connection.
tap_client() {
    # shellcheck disable=SC2016 # $1 and $2 are the inner bash's arguments
    start_bg "$TMP/tap.err" bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "$2" >&3
        if [ "$3" = stall ]; then exec sleep 3600; fi
        exec cat <&3 >/dev/null' sh "$port" "$TAP_REQ" "$1"
}
taps_open() { [ "$(metric "$URL" datapipe_taps_open)" = "$1" ]; }
# The server finds a tap's client gone at its next write: each poll posts an event.
taps_closed() {
    curl -s -o /dev/null --data-binary @"$TMP/seed.json" "$URL/v1/events/crash_report"
    taps_open 0
}
# Every stalled tap is full: a body of 1,000 events was dropped by each of them.
taps_full() {
    local d0 d1
    d0=$(metric "$URL" datapipe_tap_dropped_total)
    curl -s -o /dev/null --data-binary @"$TMP/ndjson" "$URL/v1/events/crash_report"
    d1=$(metric "$URL" datapipe_tap_dropped_total)
    [ "$((d1 - d0))" -eq "$((STALLED * 1000))" ]
}
# tap_run NAME: run_wrk on the single-event URL; also sets CPU_US (server CPU a request),
# EVENTS (events accepted) and DROPPED (events the taps dropped) during the run.
tap_run() {
    local c0 d0 a0
    c0=$(cpu_ticks)
    d0=$(metric "$URL" datapipe_tap_dropped_total)
    a0=$(metric "$URL" "$ACCEPTED")
    run_wrk "$1" "$URL/v1/events/crash_report" "$TMP/seed.lua"
    CPU_US=$(calc "($(cpu_ticks) - $c0) * 1000000 / $(getconf CLK_TCK) / ($RPS * $SECS)")
    EVENTS=$(($(metric "$URL" "$ACCEPTED") - a0))
    DROPPED=$(($(metric "$URL" datapipe_tap_dropped_total) - d0))
}
# show LABEL [MORE]: one run of (5).
show() {
    printf '%-32s %8.0f req/s  p50 %s  p99 %s  server CPU %.0f us/req  non-2xx %s%s%s\n' "$1" \
        "$RPS" "$P50" "$P99" "$CPU_US" "${NON2XX:-0}" "${2:+  }${2:-}" \
        "$(awk '/^ *Socket errors/ {sub(/^ */, "  wrk "); printf "%s", $0}' "$TMP/$RUN.wrk")"
}
echo "live tap: the single-event run again: no tap / $STALLED stalled taps / 1 reading tap"
NONE_SUM=0 STALL_SUM=0 READ_SUM=0 STALL_EACH='' READ_EACH=''
for r in $(seq 1 "$ROUNDS"); do
    RUN=none$r
    tap_run "$RUN"
    NONE_SUM=$(calc "$NONE_SUM + $RPS")
    NONE_RPS=$RPS
    show "round $r, no tap:"

    pids=()
    for _ in $(seq 1 "$STALLED"); do
        tap_client stall
        pids+=("$T_LAST_PID")
    done
    wait_until 10 "the stalled taps are open" taps_open "$STALLED" || exit 1
    wait_until 60 "the stalled taps are full (bodies of 1,000 events before the run)" \
        taps_full || exit 1
    RUN=stall$r
    tap_run "$RUN"
    STALL_SUM=$(calc "$STALL_SUM + $RPS")
    STALL_EACH="$STALL_EACH $(printf '%.2f' "$(calc "$RPS / $NONE_RPS")")"
    more=$(printf 'dropped %d = %.2f x %d events x %d taps, %s open after' "$DROPPED" \
        "$(calc "$DROPPED / ($EVENTS * $STALLED + 0.000001)")" "$EVENTS" "$STALLED" \
        "$(metric "$URL" datapipe_taps_open)")
    show "round $r, $STALLED stalled taps:" "$more"
    for p in "${pids[@]}"; do stop_pid "$p"; done
    wait_until 30 "the server closed the stalled taps" taps_closed || exit 1

    tap_client read
    rpid=$T_LAST_PID
    wait_until 10 "the reading tap is open" taps_open 1 || exit 1
    RUN=read$r
    tap_run "$RUN"
    READ_SUM=$(calc "$READ_SUM + $RPS")
    READ_EACH="$READ_EACH $(printf '%.2f' "$(calc "$RPS / $NONE_RPS")")"
    show "round $r, 1 reading tap:" "dropped $DROPPED of $EVENTS"
    stop_pid "$rpid"
    wait_until 30 "the server closed the reading tap" taps_closed || exit 1
done
# The sums of the rounds, and each round's against its own run without a tap (the noise).
printf 'ratio %d stalled taps / no tap, same run: %.2f (rounds:%s)\n' "$STALLED" \
    "$(calc "$STALL_SUM / $NONE_SUM")" "$STALL_EACH"
printf 'ratio 1 reading tap / no tap, same run:  %.2f (rounds:%s)\n' \
    "$(calc "$READ_SUM / $NONE_SUM")" "$READ_EACH"
stop_pid "$SPID"
