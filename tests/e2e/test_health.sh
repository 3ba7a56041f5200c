#!/usr/bin/env bash
# test_health.sh - /v1/status's level tells the truth (docs/operations.md, "/v1/status
# fields"): ok with a loader running; degraded under a storm of 401s; failing with no loader
# running (stopped, or never started) while events wait; and the metrics the alerting rules
# read exist from start-up at zero, and pass promtool check metrics.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh

TMP=$(mktemp -d)
trap 't_cleanup; rm -rf "$TMP"' EXIT
SCHEMA=health_$$

# config NAME PORT: a configuration with an API key, a 2 s loader interval, its own queue.
config() {
    cat >"$TMP/$1.json" <<JSON
{"server": {"listen": "127.0.0.1:$2", "threads": 8, "api_keys": ["K"]},
 "queue": {"path": "$TMP/$1-q", "id": "health-$1-$$"},
 "database": {"conninfo": "$DP_PG_CONNINFO", "schema": "$SCHEMA"},
 "loader": {"interval_s": 2, "min_interval_s": 1}}
JSON
}

status() { curl -s -m 5 "$1/v1/status"; }
level() { status "$1" | jq -r .level; }
level_is() { [ "$(level "$1")" = "$2" ]; }
problems() { status "$1" | jq -r '.problems[]'; }
post_keyed() {
    curl -s -o /dev/null -w '%{http_code}' -H 'X-API-Key: K' \
        -d '{"user_id": 1, "timestamp": 2, "message": "m"}' "$1/v1/events/crash_report"
}

PA=$(free_port)
PB=$(free_port)
A=http://127.0.0.1:$PA
B=http://127.0.0.1:$PB
config a "$PA"
config b "$PB"
# a: server and loader; b: a server whose queue no loader ever opens.
start_bg "$TMP/a-server.log" "$BIN/datapipe-server" -c "$TMP/a.json"
start_bg "$TMP/a-loader.log" "$BIN/datapipe-loader" -c "$TMP/a.json"
LPID=$T_LAST_PID
start_bg "$TMP/b-server.log" "$BIN/datapipe-server" -c "$TMP/b.json"
wait_until 20 "server a answers" http_answers "$A/healthz"
wait_until 20 "server b answers" http_answers "$B/healthz"

# --- the metrics the alerting rules read exist at zero before anything happened ------------
m=$(curl -s "$A/metrics")
has "401s have a series at 0 from start-up" 'datapipe_http_requests_total{code="401"} 0' "$m"
has "503s have a series at 0 from start-up" 'datapipe_http_requests_total{code="503"} 0' "$m"
has "ingest 503s are apart from reads'" 'datapipe_ingest_requests_total{result="unavailable"} 0' "$m"
has "the conservation gauge has no _total" 'datapipe_events{stage="accepted"} ' "$m"
no_total_gauge() { ! grep -q '^# TYPE datapipe_[a-z_]*_total gauge' <<<"$1"; }
ok "no gauge ends in _total" no_total_gauge "$m"

# --- ok: a loader runs and has loaded ------------------------------------------------------
eq "a keyed POST is taken" 202 "$(post_keyed "$A")"
wait_until 30 "with its loader running, a is ok" level_is "$A" ok
st=$(status "$A")
has "ok: healthy is true" '"level":"ok","healthy":true,"problems":[]' "$st"
has "the heartbeat is in /metrics" "datapipe_status_level 0" "$(curl -s "$A/metrics")"

# --- degraded: a storm of 401s ------------------------------------------------------------
for _ in $(seq 1 40); do
    curl -s -o /dev/null -d '{"user_id": 1, "timestamp": 2, "message": "m"}' "$A/v1/events/crash_report"
done
# The share is measured against the history's samples, taken every 10 s.
storm() { problems "$A" | grep -q 'refused with 401'; }
wait_until 30 "the 401 storm is a problem" storm
eq "401 storm: degraded" degraded "$(level "$A")"
has "401 storm: healthy is false" '"healthy":false' "$(status "$A")"
has "401 storm: says what to do" "no or wrong API key" "$(problems "$A")"
m=$(curl -s "$A/metrics")
has "401 storm: counted apart" 'datapipe_ingest_requests_total{result="unauthorized"} 40' "$m"
has "401 storm: the level gauge" 'datapipe_status_level 1' "$m"

# --- failing: the loader stopped while events wait -----------------------------------------
stop_pid "$LPID"
eq "the loader stops cleanly" 0 "$T_RC"
for _ in 1 2 3; do post_keyed "$A" >/dev/null; done
no_beat() { problems "$A" | grep -q 'no loader heartbeat'; }
wait_until 40 "a stopped loader is a problem" no_beat
eq "no loader: failing" failing "$(level "$A")"
has "no loader: says what to do" "systemctl status datapipe-loader" "$(problems "$A")"
has "no loader: the level gauge" 'datapipe_status_level 2' "$(curl -s "$A/metrics")"
eq "no loader: /readyz still takes events" 200 \
    "$(curl -s -o /dev/null -w '%{http_code}' "$A/readyz")"
start_bg "$TMP/a-loader.log" "$BIN/datapipe-loader" -c "$TMP/a.json"
beat_back() { ! problems "$A" | grep -q 'heartbeat'; }
wait_until 30 "a restarted loader clears the problem" beat_back

# --- failing: a queue no loader ever ran on ------------------------------------------------
eq "b takes an event" 202 "$(post_keyed "$B")"
never() { problems "$B" | grep -q 'no loader has run on this queue'; }
wait_until 40 "a queue without a loader is a problem" never
eq "never a loader: failing" failing "$(level "$B")"

# --- promtool reads the scrape without a word -----------------------------------------------
curl -s "$A/metrics" >"$TMP/scrape"
out=$(promtool check metrics <"$TMP/scrape" 2>&1)
eq "promtool check metrics prints nothing" "" "$out"

for p in "${T_PIDS[@]}"; do
    stop_pid "$p"
done
sql "DROP SCHEMA $SCHEMA CASCADE" >/dev/null
t_done health
