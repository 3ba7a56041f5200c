#!/usr/bin/env bash
# bench_server.sh - ingest figures with wrk on loopback (-t2 -c64 -d10s by
# default; BENCH_SECONDS changes the duration), same civetweb thread count:
#   1. a bare civetweb handler that reads the body and answers 204 (baseline);
#   2. POST /v1/events/crash_report, the seed event, one per request, sync on;
#   3. the same with an Idempotency-Key header, a distinct key on every request;
#   4. NDJSON bodies of 1,000 events.
# Prints requests/s, events/s, p50/p99, events per fsync, server RSS, the ratio of (2) to
# (1) and of (3) to (2). Figures only: nothing here fails on a timing.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
. tests/lib_sh.sh
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

# 1. baseline
port=$(free_port)
start_bg "$TMP/bare.log" "$BUILD/tests/bare_http" "$port" "$THREADS"
BARE_PID=$T_LAST_PID
wait_until 10 "bare_http answers" http_answers "http://127.0.0.1:$port/" || exit 1
run_wrk bare "http://127.0.0.1:$port/" "$TMP/seed.lua"
BARE_RPS=$RPS
printf 'bare civetweb (read body, 204):   %10.0f req/s   p50 %s  p99 %s\n' "$RPS" "$P50" "$P99"
stop_pid "$BARE_PID"

# 2. and 3. datapipe-server, sync on, queue on the same disk as build/
port=$(free_port)
cat >"$TMP/cfg.json" <<JSON
{"server": {"listen": "127.0.0.1:$port", "threads": $THREADS},
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
printf 'server RSS after the runs:         %10d KiB\n' "$(rss_kb "$SPID")"
printf 'ratio single-event / bare civetweb: %.2f (target >= 0.70)\n' "$(calc "$SINGLE_RPS / $BARE_RPS")"
printf 'ratio keyed / unkeyed single-event: %.2f (target >= 0.80)\n' "$(calc "$KEYED_RPS / $SINGLE_RPS")"
stop_pid "$SPID"
