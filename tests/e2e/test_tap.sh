#!/usr/bin/env bash
# test_tap.sh - GET /v1/tap over real HTTP: the ?type= filter and ?limit= (the stream ends),
# lines that name the event and hold its exact bytes, bad parameters, at most 4 taps at
# once (429) and slots freed when clients go, the API key, and a stalled tap client (curl
# writing into a pipe nobody reads) beside one that reads, while 200 bodies of 1000 events
# go in at full speed: every post is acknowledged, each tap reports what it dropped, so that
# lines plus dropped account for every event exactly, /metrics counts the drops and the taps
# open, and the reader gets well-formed chunks, batches of lines rather than one per line.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
. tests/lib/lib_e2e.sh

e2e_setup tap
# A long request timeout: the stalled client's blocked writes must wait for it.
E2E_TIMEOUT_MS=120000 E2E_THREADS=16 e2e_config ', "api_keys": []' '"interval_s": 3600'
start_server

# Pretty-printed over two lines: a tap line must still be one line.
CRASH=$'{"user_id": 1,\n "timestamp": 1700000000, "message": "tap\\ntwo lines"}'
AD='{"ip_address": "10.0.0.1", "user_agent": "a", "referring_url": "https://example.com/", "advertiser_id": "adv"}'
post_both() {
    curl -s -o /dev/null --data-binary "$CRASH" "$URL/v1/events/crash_report"
    curl -s -o /dev/null --data-binary "$AD" "$URL/v1/events/ad_event"
}
# tap NAME QUERY: a tap in the background ($TPID), headers in $DIR/NAME.h, body in NAME.out.
tap() {
    start_bg "$DIR/$1.err" curl -sN -D "$DIR/$1.h" -o "$DIR/$1.out" "$URL/v1/tap$2"
    TPID=$T_LAST_PID
}
tap_open() { grep -q '^HTTP/1.1 200' "$DIR/$1.h" 2>/dev/null; }
post_until_gone() { post_both; gone "$1"; }

# --- filter and limit -------------------------------------------------------------------------
tap crash '?type=crash_report&limit=5'
cpid=$TPID
tap all '?limit=4'
apid=$TPID
wait_until 20 "the taps are open" tap_open crash
wait_until 20 "the second tap is open" tap_open all
wait_until 60 "the type tap ends after its limit" post_until_gone "$cpid"
wait_until 60 "the other tap ends after its limit" post_until_gone "$apid"
eq "5 lines with ?limit=5" 5 "$(wc -l <"$DIR/crash.out")"
eq "only crash_report with ?type=crash_report" 5 "$(grep -c '"type":"crash_report"' "$DIR/crash.out")"
eq "4 lines with ?limit=4" 4 "$(wc -l <"$DIR/all.out")"
eq "both types without ?type=" "ad_event crash_report" \
    "$(jq -r .type "$DIR/all.out" | sort -u | tr '\n' ' ' | sed 's/ $//')"
has_file "NDJSON content type" "Content-Type: application/x-ndjson" "$DIR/crash.h"
has_file "chunked" "Transfer-Encoding: chunked" "$DIR/crash.h"
line=$(head -1 "$DIR/crash.out")
eq "a line holds the event (its line break between tokens as a space)" \
    '{"user_id":1,"timestamp":1700000000,"message":"tap\ntwo lines"}' "$(jq -c .event <<<"$line")"
ok "a line's received_at is RFC 3339 UTC" grep -Eq '^[0-9-]{10}T[0-9:]{8}\.[0-9]{3}Z$' \
    <<<"$(jq -r .received_at <<<"$line")"
eq "a line's id finds the event" queued \
    "$(curl -s "$URL/v1/events/$(jq -r .id <<<"$line")" | jq -r .state)"

# --- bad parameters, 4 at once ------------------------------------------------------------------
eq "unknown type: 404" 404 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/tap?type=nosuch")"
eq "limit 0: 400" 400 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/tap?limit=0")"
eq "limit not a number: 400" 400 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/tap?limit=x")"
eq "POST: 405" 405 "$(curl -s -o /dev/null -w '%{http_code}' -d x "$URL/v1/tap")"
pids=()
for i in 1 2 3 4; do
    tap "open$i" ''
    pids+=("$TPID")
    wait_until 20 "tap $i is open" tap_open "open$i"
done
eq "a fifth tap: 429" 429 "$(curl -s -o /dev/null -w '%{http_code}' -m 10 "$URL/v1/tap")"
has "/metrics counts the taps open" 'datapipe_taps_open 4' "$(curl -s "$URL/metrics")"
for p in "${pids[@]}"; do stop_pid "$p"; done
# The server finds a client gone at its next write: events (or the idle newline) free the slots.
fifth_open() { post_both; [ "$(curl -s -o /dev/null -w '%{http_code}' -m 5 "$URL/v1/tap?limit=1")" = 200 ]; }
wait_until 60 "a tap opens again once clients left" fifth_open

# --- a stalled client while ingest runs at full speed ---------------------------------------------
N=200000
for i in $(seq 1 1000); do
    echo "{\"user_id\": $i, \"timestamp\": 1700000000, \"message\": \"event $i of a body for the tap\"}"
done >"$DIR/body.ndjson"
rm -f "$DIR/go"
# curl writes into a pipe that nobody reads until $DIR/go exists: it stops reading the socket.
( curl -sN -D "$DIR/stall.h" "$URL/v1/tap?type=crash_report&limit=$N" |
    { while [ ! -e "$DIR/go" ]; do sleep 0.1; done; cat >"$DIR/stall.out"; } ) &
spid=$!
T_PIDS+=("$spid")
# Beside it a tap that reads everything, its chunked framing kept (--raw).
t0=$(date +%s.%N)
start_bg "$DIR/reader.err" curl -sN --raw -D "$DIR/reader.h" -o "$DIR/reader.out" \
    "$URL/v1/tap?type=crash_report&limit=$N"
rpid=$T_LAST_PID
wait_until 20 "the stalled tap is open" tap_open stall
wait_until 20 "the reading tap is open" tap_open reader
seq 1 200 | xargs -P 4 -I{} curl -s -o /dev/null -w '%{http_code}\n' --data-binary @"$DIR/body.ndjson" \
    "$URL/v1/events/crash_report" >"$DIR/codes"
eq "ingest completes: 200 bodies acknowledged" 200 "$(grep -c '^202$' "$DIR/codes")"
wait_until 120 "the reading tap ends after its limit" gone "$rpid"
t1=$(date +%s.%N)
touch "$DIR/go"
wait_until 120 "the stalled tap ends after its limit" gone "$spid"
# dropped_sum FILE: the {"dropped": N} notes of a tap's output, summed.
dropped_sum() { grep -a '"dropped"' "$1" | sed 's/[^0-9]//g' | awk '{s += $1} END {print s + 0}'; }
lines=$(grep -c '"type":"crash_report"' "$DIR/stall.out")
dropped=$(dropped_sum "$DIR/stall.out")
echo "test_tap.sh: stalled tap: $lines lines, $dropped dropped"
ok "the stalled tap dropped events ($dropped)" [ "$dropped" -gt 0 ]
eq "lines + dropped = every event of the type" "$N" "$((lines + dropped))"
# The reader's output is chunks "SIZE\r\nDATA\r\n" (a tap line holds no CR) ending in "0\r\n\r\n":
# reader.body gets the data, reader.bad each chunk whose size does not match its data.
awk -v bad="$DIR/reader.bad" 'function hex(s,   i, v) {
        for (i = 1; i <= length(s); i++) v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1
        return v
    }
    BEGIN {RS = "\r\n"; ORS = ""}
    NR % 2 == 1 {size = $0; next}
    {if (hex(size) != length($0)) print NR ": " size "\n" >bad; print}
    END {if (size != "0") print "no final chunk\n" >bad}' "$DIR/reader.out" >"$DIR/reader.body"
chunks=$(grep -c . <(awk 'BEGIN {RS = "\r\n"} NR % 2 == 1 && $0 != "0"' "$DIR/reader.out"))
bytes=$(wc -c <"$DIR/reader.out")
ok "the reading tap's chunks are well formed" [ ! -s "$DIR/reader.bad" ]
rlines=$(grep -c '"type":"crash_report"' "$DIR/reader.body")
rdropped=$(dropped_sum "$DIR/reader.body")
echo "test_tap.sh: reading tap: $rlines lines, $rdropped dropped, $chunks chunks"
eq "reading tap: lines + dropped = every event of the type" "$N" "$((rlines + rdropped))"
# A tap writes once 64 KiB wait, or once its first line has waited 50 ms: so at most 20
# writes a second of its life (measured above) plus one per 64 KiB, never one per line; a
# write is a chunk of lines and perhaps a {"dropped": N} chunk.
most=$(awk -v a="$t0" -v b="$t1" -v n="$bytes" \
    'BEGIN {printf "%d", 2 * ((b - a) * 20 + n / 65536) + 10}')
ok "the reading tap got its $rlines lines in $chunks chunks (at most $most)" [ "$chunks" -le "$most" ]
eq "/metrics counts what the taps dropped" "datapipe_tap_dropped_total $((dropped + rdropped))" \
    "$(curl -s "$URL/metrics" | grep '^datapipe_tap_dropped_total ')"

# --- the API key --------------------------------------------------------------------------------
stop_pid "$SPID"
sed -i 's/"api_keys": \[\]/"api_keys": ["k1"]/' "$CFG"
start_server
eq "with keys, no key: 401" 401 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/tap")"
start_bg "$DIR/keyed.err" curl -sN -H 'X-API-Key: k1' -D "$DIR/keyed.h" -o "$DIR/keyed.out" \
    "$URL/v1/tap?limit=1"
kpid=$T_LAST_PID
wait_until 20 "with the key: the tap opens" tap_open keyed
keyed_post() { curl -s -o /dev/null -H 'X-API-Key: k1' --data-binary "$CRASH" \
    "$URL/v1/events/crash_report"; gone "$kpid"; }
wait_until 60 "the keyed tap gets its event" keyed_post
eq "the keyed tap's line" 1 "$(wc -l <"$DIR/keyed.out")"

t_done test_tap.sh
