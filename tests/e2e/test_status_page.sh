#!/usr/bin/env bash
# test_status_page.sh - the status page (GET /status) as a person sees it, in real headless
# Chromium (Debian's chromium, installed by make deps): against a running appliance with
# traffic and dead letters, each chart has drawn its data points, the numbers shown equal
# /v1/status, the loader's runs and the latest dead-letter error are there; a screenshot
# of the page under load is saved in the test's output directory ($BUILD/test-output/).
# Then the same page with API keys on, under a storm of 401s (the badge says degraded),
# with PostgreSQL down (it shows the error), and with no loader running (failing). At
# 1280 px the page never scrolls sideways.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
. tests/lib/lib_e2e.sh

OUT=$BUILD/test-output/status_page
rm -rf "$OUT"
mkdir -p "$OUT"
e2e_setup status_page
e2e_config "" '"interval_s": 1, "min_interval_s": 0, "high_water": 1'
start_server
start_loader

# chrome ARGS... URL: headless Chromium with a fresh profile; the page's timers run on
# virtual time for 10 s of page time (Chromium holds virtual time while a fetch is pending).
chrome() {
    local profile
    profile=$(mktemp -d "$DIR/chrome.XXXXXX")
    timeout 180 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$profile" --hide-scrollbars --window-size=1280,1500 \
        --virtual-time-budget=10000 "$@" 2>>"$DIR/chrome.log"
}
# dom FILE: the page after its first refreshes, as Chromium rendered it.
dom() { chrome --dump-dom "$URL/status" >"$1"; }
# value FILE ID: the data-value the page set on element ID.
value() { sed -n "s/.*id=\"$2\" data-value=\"\\([^\"]*\\)\".*/\\1/p" "$1" | head -1; }
# points FILE CHART: the data points chart CHART drew.
points() { sed -n "s/.*id=\"chart-$2\"[^>]*data-points=\"\\([0-9]*\\)\".*/\\1/p" "$1" | head -1; }
# polylines FILE CHART: how many series lines the chart drew with at least two points.
polylines() {
    tr '<' '\n' <"$1" | sed -n "/id=\"chart-$2\"/,/\\/svg>/p" |
        grep -c '^polyline points="[0-9.]*,[0-9.]* [0-9.]*,[0-9.]*'
}
# status_field KEY: a number of /v1/status's "events" or "queue" object.
status_field() { status_json | sed -n "s/.*\"$1\":\\([0-9]*\\).*/\\1/p"; }
# samples_with_traffic N: /v1/status/history holds N samples, the last with events accepted.
samples_with_traffic() {
    local h last
    h=$(curl -s -m 5 "$URL/v1/status/history")
    last=$(grep -o '"accepted_per_s":[0-9.e+-]*' <<<"$h" | tail -1)
    [ "$(grep -o '"at":' <<<"$h" | wc -l)" -ge "$1" ] && [[ ${last#*:} =~ [1-9] ]]
}
CHARTS="accepted errors queue bytes age loaded"
# charts_drawn FILE MIN WHAT: every chart drew at least MIN points, each with a line.
charts_drawn() {
    local c n
    for c in $CHARTS; do
        n=$(points "$1" "$c")
        ok "$3: chart $c drew data points (${n:-none})" [ "${n:-0}" -ge "$2" ]
        ok "$3: chart $c drew its lines" [ "$(polylines "$1" "$c")" -ge 1 ]
    done
}
# numbers_match FILE WHAT: the page's numbers equal /v1/status now (traffic has stopped).
numbers_match() {
    local st k
    st=$(status_json)
    for k in accepted loaded dead_lettered queued; do
        eq "$2: page shows $k as /v1/status does" \
            "$(sed -n "s/.*\"events\":{[^}]*\"$k\":\\([0-9]*\\).*/\\1/p" <<<"$st")" \
            "$(value "$1" "n-ev-${k/dead_lettered/dead}")"
    done
    eq "$2: page shows queue depth as /v1/status does" \
        "$(sed -n 's/.*"queue":{"events":\([0-9]*\).*/\1/p' <<<"$st")" \
        "$(value "$1" n-queue-events)"
    eq "$2: page shows capacity as /v1/status does" \
        "$(sed -n 's/.*"capacity_bytes":\([0-9]*\).*/\1/p' <<<"$st")" \
        "$(value "$1" n-queue-capacity)"
    eq "$2: page says conservation holds" true "$(value "$1" n-ev-check)"
}

# --- a running appliance with traffic: 4 connections of mixed types, bad bodies, and
#     partly rejected batches that become dead letters (stage ingest)
"$CLIENT" -p "$PORT" -c 4 -r 100 -d 20 -t crash,ad,login,sample,product -o "$DIR/ack" \
    -S "$DIR/sent" >"$DIR/client.out" 2>"$DIR/client.err" &
cpid=$!
T_PIDS+=("$cpid")
for i in 1 2 3 4 5; do
    curl -s -o /dev/null -d '{"user_id": "x'"$i"'", "timestamp": 1, "message": "m"}' \
        "$URL/v1/events/crash_report"
    curl -s -o /dev/null -d '{"user_id": "bad-'"$i"'", "timestamp": 1, "message": "m"}
{"user_id": '"$i"', "timestamp": 1, "message": "m"}' "$URL/v1/events/crash_report"
done
wait_until 60 "history holds two samples, the last with traffic" samples_with_traffic 2

chrome --screenshot="$OUT/status-page.png" "$URL/status"
ok "screenshot of the page under load saved ($OUT/status-page.png)" \
    [ -s "$OUT/status-page.png" ]
dom "$OUT/under-load.html"
ok "under load: the page refreshed at least twice" \
    grep -q 'data-refreshes="[2-9]\|data-refreshes="[1-9][0-9]' "$OUT/under-load.html"
charts_drawn "$OUT/under-load.html" 2 "under load"
ok "under load: accepted per second shown" [ -n "$(value "$OUT/under-load.html" n-accepted-rate)" ]
# The five partly rejected batches above filed dead letters: worth a look, not a failure.
ok "under load with new dead letters: the badge says degraded" \
    grep -q 'id="health" class="warn" data-level="degraded"' "$OUT/under-load.html"
has_file "under load: the problem names the dead letters" \
    '<li>5 events were filed into dead_letter in the last 5 min' "$OUT/under-load.html"
# no_sideways FILE WHAT: at 1280 px the page is no wider than the window.
no_sideways() {
    ok "$2: no sideways scroll at 1280 px" grep -q 'data-overflow-x="false"' "$1"
}
no_sideways "$OUT/under-load.html" "under load"

wait "$cpid"
eq "client: every answer 202" 0 $?
wait_until 120 "the loader drained the queue" queue_empty
wait_until 60 "the loader's dead letters are in PostgreSQL" \
    test "$(sql "SELECT count(*) FROM $SCHEMA.dead_letter WHERE queue_id = '$QID'")" = 5
# idle_runs: how many of the runs /v1/status lists found nothing to load. The page folds them
# into one line below; a slow loader (ThreadSanitizer) may not have had two yet at this point.
idle_runs() {
    status_json | jq '[.loader.runs[]? | select(.events == 0 and .result == "ok")] | length'
}
two_idle_runs() { [ "$(idle_runs)" -ge 2 ]; }
wait_until 60 "the loader has had two idle runs" two_idle_runs
dom "$OUT/after-load.html"
charts_drawn "$OUT/after-load.html" 2 "after load"
numbers_match "$OUT/after-load.html" "after load"
# Its last runs: the loading ones as rows marked ok, the idle ones after them folded.
ok "the loader's runs are listed, ok" \
    grep -Eq '<td class="okt">ok</td>|idle runs</td>' "$OUT/after-load.html"
has_file "dead letters by type and stage: crash_report ingest 5" \
    '<td>crash_report</td><td>ingest</td><td class="num">5</td>' "$OUT/after-load.html"
has_file "the latest dead-letter error is shown" \
    '<td class="err">user_id: expected integer, got string</td>' "$OUT/after-load.html"
ok "the watermark has its place (a placeholder until the server reports one)" \
    grep -q 'id="n-watermark" data-value="[^"]*">[^<]' "$OUT/after-load.html"
no_sideways "$OUT/after-load.html" "after load, with a watermark"
# The loader runs every second: its idle runs fold into one line, never one row each.
ok "idle runs are folded into one line" grep -q 'idle runs</td>' "$OUT/after-load.html"
no_idle_row() {
    ! grep -qF '<td class="num">0</td><td class="num">0</td><td class="num">0</td><td class="okt">ok</td>' "$1"
}
ok "no row of its own for a run that loaded nothing" no_idle_row "$OUT/after-load.html"
# strokes FILE CHART: the colours of the chart's lines, one a line.
strokes() {
    tr '<' '\n' <"$1" | sed -n "/id=\"chart-$2\"/,/\/svg>/p" |
        sed -n 's/^polyline .*stroke="\([^"]*\)".*/\1/p'
}
eq "each type its own colour" "$(strokes "$OUT/after-load.html" loaded | wc -l)" \
    "$(strokes "$OUT/after-load.html" loaded | sort -u | wc -l)"
eq "no type in an error line's colour" "" "$(strokes "$OUT/after-load.html" loaded |
    grep -Fx -f <(strokes "$OUT/after-load.html" errors))"
e2e_conservation
stop_pid "$SPID"
eq "server exits 0 on SIGTERM" 0 "$T_RC"

# --- API keys on: the page and its JSON keep the access rule of /v1/status (no key)
sed -i 's/"threads": [0-9]*,/&"api_keys": ["k-status-1"],/' "$CFG"
start_server
eq "keys on: POST without a key is refused" 401 \
    "$(curl -s -o /dev/null -w '%{http_code}' -d '{}' "$URL/v1/events/crash_report")"
eq "keys on: GET /status answers without a key" 200 \
    "$(curl -s -o /dev/null -w '%{http_code}' "$URL/status")"
for i in 1 2 3; do
    curl -s -o /dev/null -H 'X-API-Key: k-status-1' \
        -d '{"user_id": '"$i"', "timestamp": 1, "message": "keyed"}' "$URL/v1/events/crash_report"
done
wait_until 60 "keys on: history holds a sample with traffic" samples_with_traffic 1
# A chart's line needs two points: one more sample (every 10 s), with or without traffic.
history_has() { [ "$(curl -s -m 5 "$URL/v1/status/history" | grep -o '"at":' | wc -l)" -ge "$1" ]; }
wait_until 60 "keys on: history holds two samples" history_has 2
wait_until 60 "keys on: the loader drained the keyed events" queue_empty
dom "$OUT/keys-on.html"
charts_drawn "$OUT/keys-on.html" 2 "keys on"
numbers_match "$OUT/keys-on.html" "keys on"
ok "keys on: no error shown for dead letters" grep -q 'id="dl-error" class="error" hidden' \
    "$OUT/keys-on.html"

# --- a storm of 401s: the badge says degraded, and the problem is listed
for _ in $(seq 1 40); do
    curl -s -o /dev/null -d '{"user_id": 1, "timestamp": 1, "message": "no key"}' \
        "$URL/v1/events/crash_report"
done
level_is() { [ "$(status_json | jq -r .level)" = "$1" ]; }
wait_until 40 "401 storm: /v1/status says degraded" level_is degraded
dom "$OUT/401-storm.html"
ok "401 storm: the badge says degraded" \
    grep -q 'id="health" class="warn" data-level="degraded"' "$OUT/401-storm.html"
has_file "401 storm: the problem is listed" 'refused with 401' "$OUT/401-storm.html"
no_sideways "$OUT/401-storm.html" "401 storm"

# --- PostgreSQL down: the page still draws, and says what is wrong
pg_down
dom "$OUT/db-down.html"
chrome --screenshot="$OUT/status-page-db-down.png" "$URL/status"
pg_up
has_file "db down: the page shows the database error" 'database unavailable: ' "$OUT/db-down.html"
ok "db down: the page says it needs attention" grep -q 'data-healthy="false"' "$OUT/db-down.html"
has_file "db down: the problem is listed" '<li>PostgreSQL: database unavailable' \
    "$OUT/db-down.html"
charts_drawn "$OUT/db-down.html" 1 "db down"
eq "db down: the queue's numbers still shown" "$(status_field accepted)" \
    "$(value "$OUT/db-down.html" n-ev-accepted)"
ok "db down: a screenshot saved" [ -s "$OUT/status-page-db-down.png" ]
wait_until 60 "the loader drained the queue" queue_empty
e2e_conservation

# --- no loader running, events waiting: the badge says failing
stop_pid "$LPID"
curl -s -o /dev/null -H 'X-API-Key: k-status-1' \
    -d '{"user_id": 9, "timestamp": 1, "message": "waits"}' "$URL/v1/events/crash_report"
wait_until 40 "no loader: /v1/status says failing" level_is failing
dom "$OUT/no-loader.html"
chrome --screenshot="$OUT/status-page-no-loader.png" "$URL/status"
ok "no loader: the badge says failing" \
    grep -q 'id="health" class="bad" data-level="failing"' "$OUT/no-loader.html"
has_file "no loader: the problem says what to do" 'systemctl status datapipe-loader' \
    "$OUT/no-loader.html"
no_sideways "$OUT/no-loader.html" "no loader"
start_loader
wait_until 60 "the restarted loader drained the queue" queue_empty
stop_pid "$LPID"
stop_pid "$SPID"
eq "server exits 0 on SIGTERM" 0 "$T_RC"
echo "status_page: screenshots and DOMs in $OUT"
t_done test_status_page
