#!/usr/bin/env bash
# test_bad_input.sh - bad input gets a clear error (README's promises) end to end: a barrage
# of bad input against one server
# (malformed JSON, invalid UTF-8, \u0000, 100,000 nested [, 20,000 nested {, a 1 GB
# Content-Length with a short body, a 1 GiB gzip bomb, header floods, huge URIs, garbage
# request lines, bad chunking, unknown methods). Each gets its 4xx or a closed connection
# (never 2xx, never 5xx) and the server answers /healthz after each. Then slowloris: 500
# connections trickle headers or a body; /healthz answers while they are open, and every
# one of them is cut off by request_timeout_ms (3 s here) within the 6 s they trickle.
# Throughout, the server's RSS stays bounded and a well-formed request posted every 200 ms
# in parallel gets its 202 within E2E_LATENCY_MS (default 1000). The well-formed events
# then load exactly once and nothing else loads.
# server.threads is 600: civetweb serves one connection per thread, so with fewer threads
# than slowloris connections new clients wait until request_timeout_ms cuts the slow ones
# off; a second server with the default 64 threads checks that such a client still gets
# its 202 then, and prints how long it waited.
# Then the memory amplification body (one valid event and 16,000,000 lines of "1",
# gzip) alone and 16 at once, against a fresh server, asserting the answer and the peak RSS;
# and a slow body (2 MiB at once, then a byte a second) on every thread of a 4-thread server.
# E2E_WRAP (e.g. valgrind) wraps the server; then RSS, the amplification and the 64-thread
# server are not checked and E2E_LATENCY_MS may be raised.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
. tests/lib/lib_e2e.sh

RAW=$BUILD/tests/tools/rawhttp
LAT_MS=${E2E_LATENCY_MS:-1000}
SLOW_CONNS=${E2E_SLOW_CONNS:-500}
if [ "${SANITIZE:-}" = 1 ] || [[ "$BIN" == *san* ]]; then RSS_MAX_MB=${E2E_RSS_MAX_MB:-1536}; else
    RSS_MAX_MB=${E2E_RSS_MAX_MB:-400}; fi
e2e_setup bad_input
E2E_THREADS=600
E2E_TIMEOUT_MS=3000
e2e_config "" '"interval_s": 1, "min_interval_s": 0, "high_water": 1'
start_server
rss0=$(rss_kb "$SPID")

# A well-formed event every 200 ms, on a fresh connection each, until $DIR/stop exists.
good_loop() {
    local n=0 r
    while [ ! -e "$DIR/stop" ] && [ "$n" -lt 2000 ]; do
        n=$((n + 1))
        echo "$n" >>"$DIR/sent"
        r=$(curl -s -m 10 -w ' %{http_code} %{time_total}' \
            -d "{\"user_id\": $n, \"timestamp\": 1700000000, \"message\": \"e2e-$n\"}" \
            "$URL/v1/events/crash_report")
        # shellcheck disable=SC2086 # curl's words (body, status, time) become $1, $2, ...
        set -- $r
        echo "$n ${*: -2}" >>"$DIR/good"
        if [ "${*: -2:1}" = 202 ]; then
            echo "$n $(sed -n 's/.*"id":"\([0-9a-f-]*\)".*/\1/p' <<<"$r")" >>"$DIR/ack"
        fi
        # The pace of this light parallel load (a request every 200 ms), not a condition.
        sleep 0.2
    done
}
rss_loop() {
    # A sample every 100 ms (the sampling pace, not a condition).
    while [ ! -e "$DIR/stop" ]; do rss_kb "$SPID" >>"$DIR/rss"; sleep 0.1; done
}
: >"$DIR/sent"
: >"$DIR/ack"
good_loop &
T_PIDS+=("$!")
gpid=$!
rss_loop &
T_PIDS+=("$!")
rpid=$!

# verdict NAME RESULT: RESULT is a curl code (000: closed) or rawhttp's "status=N ..." /
# "closed ..." line; 4xx or closed passes, and the server must still answer /healthz.
declare -A SEEN
verdict() {
    local name=$1 res=$2 code
    case "$res" in
    status=*) code=${res#status=}; code=${code%% *} ;;
    closed* | 000) code=closed ;;
    timeout*) code=timeout ;;
    *) code=$res ;;
    esac
    printf 'bad_input: %-44s -> %s\n' "$name" "$code"
    SEEN[$name]=$code
    ok "$name: 4xx or closed (got $code)" bash -c "[[ '$code' == 4?? || '$code' == closed ]]"
    eq "$name: server still serving" 200 "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$URL/healthz")"
}
post_file() { # post_file PATH FILE [CURL ARGS]: the HTTP code (000 when closed)
    local path=$1 file=$2
    shift 2
    curl -s -o /dev/null -m 30 -w '%{http_code}' --data-binary @"$file" "$@" "$URL$path"
}
raw() { "$RAW" send "$PORT" "${2:-10000}" <"$1"; }

printf '{"user_id": 1, "timestamp": ' >"$DIR/b1"
verdict "malformed JSON" "$(post_file /v1/events/crash_report "$DIR/b1")"
printf '{"user_id": 1, "timestamp": 2, "message": "\xff\xfe\xc3("}' >"$DIR/b2"
verdict "invalid UTF-8" "$(post_file /v1/events/crash_report "$DIR/b2")"
printf '{"user_id": 1, "timestamp": 2, "message": "\xc0\x80 overlong NUL"}' >"$DIR/b3"
verdict "overlong UTF-8 NUL (C0 80)" "$(post_file /v1/events/crash_report "$DIR/b3")"
printf '{"user_id": 1, "timestamp": 2, "message": "a\\u0000b"}' >"$DIR/b4"
verdict '\u0000 in a string' "$(post_file /v1/events/crash_report "$DIR/b4")"
printf '{"id": "p\\u0000", "x": 1}' >"$DIR/b4b"
verdict '\u0000 in a product id' "$(post_file /v1/events/product "$DIR/b4b")"
printf '{"user_id": 1, "timestamp": 2, "message": "\xed\xa0\x80 surrogate"}' >"$DIR/b5"
verdict "UTF-8 encoded surrogate (ED A0 80)" "$(post_file /v1/events/crash_report "$DIR/b5")"
head -c 100000 /dev/zero | tr '\0' '[' >"$DIR/b6"
verdict "100,000 nested [" "$(post_file /v1/events "$DIR/b6")"
for i in $(seq 1 20000); do printf '{"a":'; done >"$DIR/b7"
verdict "20,000 nested {\"a\":" "$(post_file /v1/events/product "$DIR/b7")"
printf 'POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000000\r\n\r\n{"event_name": "crash_report"' >"$DIR/b8"
verdict "1 GB Content-Length, short body" "$(raw "$DIR/b8" 8000)"
"$RAW" gzbomb 1024 >"$DIR/bomb.gz"
verdict "gzip bomb (1 MiB -> 1 GiB of zeros)" \
    "$(post_file /v1/events "$DIR/bomb.gz" -H 'Content-Encoding: gzip')"
{ printf 'POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n'; for i in $(seq 1 10000); do
    printf 'X-Flood-%d: %d\r\n' "$i" "$i"; done; printf 'Content-Length: 2\r\n\r\n{}'; } >"$DIR/b9"
verdict "header flood: 10,000 header lines" "$(raw "$DIR/b9")"
{ printf 'POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: '; head -c 1048576 /dev/zero | tr '\0' a
    printf '\r\nContent-Length: 2\r\n\r\n{}'; } >"$DIR/b10"
verdict "header flood: one 1 MiB header" "$(raw "$DIR/b10")"
{ printf 'GET /v1/events/crash_report/'; head -c 100000 /dev/zero | tr '\0' a
    printf ' HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'; } >"$DIR/b11"
verdict "100 KB URI" "$(raw "$DIR/b11")"
printf '\x00\x01\x02 GARBAGE \xff\r\n\r\n' >"$DIR/b12"
verdict "garbage request line" "$(raw "$DIR/b12")"
printf 'BREW /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}' >"$DIR/b13"
verdict "unknown method BREW" "$(raw "$DIR/b13")"
printf 'DELETE /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n' >"$DIR/b14"
verdict "DELETE /v1/events" "$(raw "$DIR/b14")"
printf 'POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzzz\r\n{}\r\n0\r\n\r\n' >"$DIR/b15"
verdict "bad chunk size" "$(raw "$DIR/b15")"
printf 'POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n{}' >"$DIR/b16"
verdict "negative Content-Length" "$(raw "$DIR/b16")"
printf 'POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999999999999999999\r\n\r\n{}' >"$DIR/b17"
verdict "Content-Length beyond 64 bits" "$(raw "$DIR/b17")"
printf 'POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nContent-Length: 2\r\n\r\n{}' >"$DIR/b18"
verdict "Content-Type image/png" "$(raw "$DIR/b18")"
for i in $(seq 1 10000); do printf '{"user_id": "x%d"}\n' "$i"; done >"$DIR/b19"
verdict "10,000 invalid events in one body" "$(post_file /v1/events/crash_report "$DIR/b19")"
printf 'POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Encoding: gzip\r\nContent-Length: 20\r\n\r\nnot gzip at all!!!!!' >"$DIR/b20"
verdict "Content-Encoding gzip, not gzip" "$(raw "$DIR/b20")"

echo "bad_input: slowloris: $SLOW_CONNS connections trickling headers or a body for 6 s" \
    "(server.threads=600, request_timeout_ms=3000)"
"$RAW" slowloris "$PORT" "$SLOW_CONNS" 6 >"$DIR/slow" &
lpid=$!
T_PIDS+=("$lpid")
wait_until 60 "slowloris: the slow connections are open" grep -q '^connected=' "$DIR/slow"
eq "slowloris: /healthz answers while the slow connections are open" 200 \
    "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$URL/healthz")"
wait "$lpid"
eq "slowloris: the slow client ran to its end" 0 $?
slow=$(tail -1 "$DIR/slow")
echo "bad_input: slowloris: $slow"
opened=$(sed -n 's/.*opened=\([0-9]*\).*/\1/p' <<<"$slow")
cut=$(sed -n 's/.*closed_by_server=\([0-9]*\).*/\1/p' <<<"$slow")
cut_h=$(sed -n 's/.*header tricklers \([0-9]*\),.*/\1/p' <<<"$slow")
cut_b=$(sed -n 's/.*body tricklers \([0-9]*\)).*/\1/p' <<<"$slow")
eq "slowloris: all $SLOW_CONNS connections opened" "$SLOW_CONNS" "$opened"
eq "slowloris: every header trickler cut off after request_timeout_ms" $((SLOW_CONNS / 2)) "$cut_h"
# A body trickled in (1 byte a second here) is cut off once request_timeout_ms has passed for
# the whole body, not only for each read.
eq "slowloris: every body trickler cut off after request_timeout_ms" $((SLOW_CONNS / 2)) "$cut_b"
has "slowloris: none still open after 6 s" " still_open=0 " "$slow"
eq "slowloris: server still serving" 200 "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$URL/healthz")"

touch "$DIR/stop"
wait "$gpid" "$rpid"
rss_max=$(sort -n "$DIR/rss" | tail -1)
rss_end=$(rss_kb "$SPID")
good_n=$(wc -l <"$DIR/good")
good_202=$(awk '$2 == 202' "$DIR/good" | wc -l)
slowest=$(awk 'BEGIN {m = 0} $3 > m {m = $3} END {printf "%.3f", m}' "$DIR/good")
slow_n=$(awk -v l="$LAT_MS" '$3 * 1000 > l' "$DIR/good" | wc -l)
echo "bad_input: parallel well-formed posts: $good_202 of $good_n got 202; slowest ${slowest} s" \
    "($slow_n over ${LAT_MS} ms)"
echo "bad_input: server RSS: $((rss0 / 1024)) MiB at start, $((rss_max / 1024)) MiB at most," \
    "$((rss_end / 1024)) MiB at the end (bound ${RSS_MAX_MB} MiB)"
ok "parallel well-formed posts went on ($good_n)" [ "$good_n" -gt 20 ]
eq "every parallel well-formed post got 202" "$good_n" "$good_202"
eq "every parallel well-formed post answered within ${LAT_MS} ms" 0 "$slow_n"
if [ -z "${E2E_WRAP:-}" ]; then
    ok "RSS stayed under ${RSS_MAX_MB} MiB ($((rss_max / 1024)) MiB)" [ "$rss_max" -lt $((RSS_MAX_MB * 1024)) ]
fi

# With the default 64 threads, 500 slow connections hold every thread: a new request waits
# until request_timeout_ms frees them, and then gets its 202. How long it waited goes to
# the README (printed, not compared with anything).
if [ -z "${E2E_WRAP:-}" ] && [ -z "${E2E_SKIP_THREADS64:-}" ]; then
    port2=$(free_port)
    sed "s/127.0.0.1:$PORT/127.0.0.1:$port2/; s/\"threads\": 600/\"threads\": 64/; s|$QDIR|$DIR/q64|" \
        "$CFG" >"$DIR/cfg64.json"
    start_bg "$DIR/server64.log" "$BIN/datapipe-server" -c "$DIR/cfg64.json"
    s64=$T_LAST_PID
    wait_until 20 "the 64-thread server answers /healthz" \
        http_answers "http://127.0.0.1:$port2/healthz"
    "$RAW" slowloris "$port2" "$SLOW_CONNS" 5 >"$DIR/slow64" &
    lpid=$!
    T_PIDS+=("$lpid")
    wait_until 60 "slowloris on the 64-thread server: the slow connections are open" \
        grep -q '^connected=' "$DIR/slow64"
    t64=$(curl -s -o /dev/null -m 60 -w '%{http_code} %{time_total}' \
        -d '{"user_id": 999999999, "timestamp": 1700000000, "message": "t64"}' \
        "http://127.0.0.1:$port2/v1/events/crash_report")
    wait "$lpid"
    slow64=$(tail -1 "$DIR/slow64")
    echo "bad_input: with server.threads=64 and $SLOW_CONNS slow connections, a well-formed" \
        "post got: $t64 s (HTTP code, seconds); slowloris: $slow64"
    eq "64 threads held by slow connections: a new post still gets its 202" 202 "${t64%% *}"
    has "64 threads: every slow connection opened" "opened=$SLOW_CONNS " "$slow64"
    stop_pid "$s64"
    eq "the 64-thread server exits 0 on SIGTERM" 0 "$T_RC"
fi

# Memory amplification: one cheap request must not cost gigabytes. The body:
# one valid crash_report and 16,000,000 lines of "1" (32 MB inflated, ~36 KB of gzip). On a
# fresh server (defaults: server.max_events_per_body 100,000, max_inflight_bytes 256 MiB):
# 413 naming the cap, nothing stored, /readyz still 200, and the server's peak RSS grows by
# less than 256 MiB (it went to 3.3 GB). Then 16 such bodies at once while well-formed posts
# go on: each bomb gets 413 (or 503 + Retry-After from the in-flight budget), every
# well-formed post its 202, and the peak stays under max_inflight_bytes + 256 MiB.
# Memory is compared with VmHWM (the kernel's high-water mark), so no sample is missed.
# Under ASan every allocation carries redzones and freed memory waits in a quarantine, so the
# server's RSS there is several times its real figure: the bounds are scaled as RSS_MAX_MB is.
if [ "${SANITIZE:-}" = 1 ] || [[ "$BIN" == *san* ]]; then AMP_SCALE=4; else AMP_SCALE=1; fi
AMP_MAX_MB=${E2E_AMP_MAX_MB:-$((256 * AMP_SCALE))}
AMP16_MAX_MB=${E2E_AMP16_MAX_MB:-$((512 * AMP_SCALE))}
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
if [ -z "${E2E_WRAP:-}" ]; then
    portm=$(free_port)
    sed "s/127.0.0.1:$PORT/127.0.0.1:$portm/; s/\"threads\": 600/\"threads\": 64/; s|$QDIR|$DIR/qm|" \
        "$CFG" >"$DIR/cfgm.json"
    start_bg "$DIR/serverm.log" "$BIN/datapipe-server" -c "$DIR/cfgm.json"
    sm=$T_LAST_PID
    URLM=http://127.0.0.1:$portm
    wait_until 20 "the memory server answers /healthz" http_answers "$URLM/healthz"
    { printf '{"user_id": 1, "timestamp": 1700000000, "message": "amp"}\n'
        yes 1 | head -n 16000000; } | gzip -6 >"$DIR/amp.gz"
    echo "bad_input: amplification body: $(stat -c %s "$DIR/amp.gz") bytes of gzip," \
        "$((16000000 * 2 + 58)) inflated"
    rssm0=$(rss_kb "$sm")
    r=$(curl -s -m 120 -w ' %{http_code} %{time_total}' -H 'Content-Encoding: gzip' \
        --data-binary @"$DIR/amp.gz" "$URLM/v1/events/crash_report")
    # shellcheck disable=SC2086 # curl's words (body, status, time) become $1, $2, ...
    set -- $r
    amp_code=${*: -2:1}
    amp_s=${*: -1}
    amp_growth=$(( ($(hwm_kb "$sm") - rssm0) / 1024 ))
    echo "bad_input: amplification: HTTP $amp_code in $amp_s s, peak RSS growth $amp_growth MiB:" \
        "${r:0:200}"
    eq "amplification: 413" 413 "$amp_code"
    has "amplification: the answer names server.max_events_per_body" \
        "server.max_events_per_body" "$r"
    ok "amplification: peak RSS growth under $AMP_MAX_MB MiB ($amp_growth MiB)" \
        [ "$amp_growth" -lt "$AMP_MAX_MB" ]
    eq "amplification: /readyz still 200" 200 \
        "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$URLM/readyz")"
    eq "amplification: nothing queued" 0 \
        "$("$EQUEUE" stats "$DIR/qm" "$QMAX" | sed -n 's/^events=\([0-9]*\) .*/\1/p')"

    : >"$DIR/amp16"
    : >"$DIR/good16"
    for i in $(seq 1 16); do
        { curl -s -o /dev/null -m 120 -w '%{http_code}\n' -H 'Content-Encoding: gzip' \
            --data-binary @"$DIR/amp.gz" "$URLM/v1/events/crash_report" >>"$DIR/amp16"; } &
        T_PIDS+=("$!")
    done
    n=0
    # Well-formed posts one after another until every bomb was answered (at least 10).
    while [ "$n" -lt 10 ] || [ "$(wc -l <"$DIR/amp16")" -lt 16 ]; do
        n=$((n + 1))
        curl -s -o /dev/null -m 30 -w '%{http_code} %{time_total}\n' \
            -d "{\"user_id\": $n, \"timestamp\": 1700000000, \"message\": \"amp16-$n\"}" \
            "$URLM/v1/events/crash_report" >>"$DIR/good16"
        [ "$n" -lt 2000 ] || break
    done
    wait_until 120 "all 16 bombs answered" bash -c "[ \$(wc -l <'$DIR/amp16') -ge 16 ]"
    amp16_growth=$(( ($(hwm_kb "$sm") - rssm0) / 1024 ))
    bombs_ok=$(grep -cE '^(413|503)$' "$DIR/amp16")
    good16=$(wc -l <"$DIR/good16")
    good16_2xx=$(awk '$1 ~ /^2/' "$DIR/good16" | wc -l)
    slowest16=$(awk 'BEGIN {m = 0} $2 > m {m = $2} END {printf "%.3f", m}' "$DIR/good16")
    echo "bad_input: 16 amplification bodies at once: answers $(sort "$DIR/amp16" | uniq -c |
        tr -s ' \n' ' '); well-formed posts meanwhile: $good16_2xx of $good16 2xx, slowest" \
        "$slowest16 s; peak RSS growth $amp16_growth MiB"
    eq "16 amplification bodies: each 413 or 503" 16 "$bombs_ok"
    eq "16 amplification bodies: every well-formed post meanwhile got 2xx" "$good16" "$good16_2xx"
    ok "16 amplification bodies: peak RSS growth under $AMP16_MAX_MB MiB ($amp16_growth MiB)" \
        [ "$amp16_growth" -lt "$AMP16_MAX_MB" ]
    eq "16 amplification bodies: /readyz still 200" 200 \
        "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$URLM/readyz")"
    stop_pid "$sm"
    eq "the memory server exits 0 on SIGTERM" 0 "$T_RC"
fi

# Slow body: 2 MiB at once, then a byte a second, on every worker thread
# (server.threads 4, request_timeout_ms 2000). Each byte comes well within the timeout of the
# last, so only a deadline for the whole body cuts them off; /healthz must answer meanwhile
# (curl waits at most 10 s; the slow clients would hold the threads for 15 s).
ports=$(free_port)
sed "s/127.0.0.1:$PORT/127.0.0.1:$ports/; s/\"threads\": 600/\"threads\": 4/;
     s/\"request_timeout_ms\": 3000/\"request_timeout_ms\": 2000/; s|$QDIR|$DIR/qs|" \
    "$CFG" >"$DIR/cfgs.json"
start_bg "$DIR/servers.log" "$BIN/datapipe-server" -c "$DIR/cfgs.json"
ss=$T_LAST_PID
wait_until 20 "the 4-thread server answers /healthz" http_answers "http://127.0.0.1:$ports/healthz"
"$RAW" slowbody "$ports" 4 15 >"$DIR/slowbody" &
lpid=$!
T_PIDS+=("$lpid")
wait_until 60 "slow body: 2 MiB sent on each of 4 connections" grep -q '^sent=4' "$DIR/slowbody"
hz=$(curl -s -o /dev/null -m 10 -w '%{http_code} %{time_total}' "http://127.0.0.1:$ports/healthz")
wait "$lpid"
sb=$(tail -1 "$DIR/slowbody")
echo "bad_input: slow body on all 4 threads: /healthz got $hz (code, seconds); $sb"
eq "slow body: /healthz answers while every thread had a slow body" 200 "${hz%% *}"
has "slow body: all 4 cut off by the server" "closed_by_server=4 " "$sb"
stop_pid "$ss"
eq "the 4-thread server exits 0 on SIGTERM" 0 "$T_RC"

stop_pid "$SPID"
eq "server exits 0 on SIGTERM after the barrage" 0 "$T_RC"
drain
eq "drain exits 0" 0 $?
e2e_verify "$DIR/ack" "$DIR/sent"
e2e_figures acknowledged="$ACKED" loaded="$LOADED" lost="$LOST" duplicated="$DUPS" \
    bad_requests="${#SEEN[@]}" slowloris_cut="$cut/$opened" slow_headers_cut="$cut_h" slow_bodies_cut="$cut_b" good_202="$good_202/$good_n" \
    slowest_good_s="$slowest" rss_start_mib=$((rss0 / 1024)) rss_max_mib=$((rss_max / 1024)) \
    rss_end_mib=$((rss_end / 1024)) amp_code="${amp_code:-}" amp_s="${amp_s:-}" \
    amp_rss_growth_mib="${amp_growth:-}" amp16_rss_growth_mib="${amp16_growth:-}" \
    amp16_good="${good16_2xx:-}/${good16:-}" amp16_slowest_good_s="${slowest16:-}" \
    slowbody_healthz="${hz// /@}"
t_done test_bad_input
