#!/usr/bin/env bash
# test_queue_full.sh - back-pressure instead of failure (README's promises) end to end: a 1 MiB queue (queue.max_bytes) with no
# loader running fills up under load: POSTs get 503 with Retry-After and /readyz 503, and
# every 2xx is in the queue. Then the loader starts and the same server process (no
# restart) accepts again; after the drain every acknowledged event is loaded exactly once.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
. tests/lib/lib_e2e.sh

e2e_setup queue_full
QMAX=1048576
e2e_config "" '"interval_s": 1, "min_interval_s": 0, "high_water": 1, "batch_rows": 200'
start_server
spid0=$SPID
echo "queue_full: queue.max_bytes=$QMAX, no loader; 4 connections post ~1.6 KB events for 3 s"
"$CLIENT" -p "$PORT" -c 4 -d 3 -s 1500 -t crash,ad,login,product -o "$DIR/ack1" -S "$DIR/sent1" \
    >"$DIR/client1.out" 2>"$DIR/client1.err"
eq "phase 1 client: only 202 and 503" 0 $?
cat "$DIR/client1.out"
c503=$(sed -n 's/.* 503=\([0-9]*\) .*/\1/p' "$DIR/client1.out")
cra=$(sed -n 's/.* retry_after=\([0-9]*\) .*/\1/p' "$DIR/client1.out")
ok "the full queue answered 503 ($c503 times)" [ "${c503:-0}" -gt 0 ]
eq "every 503 carried Retry-After" "$c503" "$cra"
n=999000000001
pad=$(head -c 1500 /dev/zero | tr '\0' x)
# probe N: post event N as big as the client's; "CODE" on stdout, recorded like the client's.
probe() {
    local r
    r=$(curl -s -D "$DIR/probe.h" -m 5 -w ' %{http_code}' \
        -d "{\"user_id\": $1, \"timestamp\": 1, \"message\": \"e2e-$1$pad\"}" "$URL/v1/events/crash_report")
    echo "$1" >>"$DIR/sent1"
    if [ "${r##* }" = 202 ]; then
        echo "$1 $(sed -n 's/.*"id":"\([0-9a-f-]*\)".*/\1/p' <<<"$r")" >>"$DIR/ack1"
    fi
    echo "${r##* }"
}
acked1=$(wc -l <"$DIR/ack1")
code=$(probe "$n")
r="$(cat "$DIR/probe.h") $code"
has "curl: 503 when full" "HTTP/1.1 503" "$r"
has "curl: Retry-After" "Retry-After: " "$r"
eq "/readyz 503 while full" 503 "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$URL/readyz")"
eq "/healthz 200 while full" 200 "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$URL/healthz")"
q=$(queued)
eq "no 2xx lost: queued events = acknowledged ($acked1)" "$acked1" "$q"

start_loader
t0=$SECONDS
tries=0
# accepts_again: the next probe gets 202.
accepts_again() {
    n=$((n + 1))
    tries=$((tries + 1))
    [ "$(probe "$n")" = 202 ]
}
wait_until 30 "accepting again once the loader ran (a probe answered 202)" accepts_again
echo "queue_full: loader started; first 202 again after $((SECONDS - t0)) s ($tries tries)"
eq "same server process (no restart)" "$spid0" "$SPID"
ok "server still running" kill -0 "$SPID"
eq "/readyz 200 again" 200 "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$URL/readyz")"
"$CLIENT" -p "$PORT" -c 4 -d 3 -s 1500 -B 500000000000 -t crash,ad,login,product -o "$DIR/ack2" \
    -S "$DIR/sent2" >"$DIR/client2.out" 2>"$DIR/client2.err"
eq "phase 2 client: only 202 and 503" 0 $?
cat "$DIR/client2.out"
acked2=$(wc -l <"$DIR/ack2")
ok "phase 2: accepted again with the loader draining ($acked2)" [ "$acked2" -gt "$acked1" ]
wait_until 60 "the loader drained the queue" queue_empty
stop_pid "$LPID"
eq "loader exits 0 on SIGTERM" 0 "$T_RC"
drain
cat "$DIR/ack1" "$DIR/ack2" >"$DIR/ack"
cat "$DIR/sent1" "$DIR/sent2" >"$DIR/sent"
e2e_verify "$DIR/ack" "$DIR/sent"
stop_pid "$SPID"
eq "server exits 0 on SIGTERM" 0 "$T_RC"
e2e_figures acknowledged="$ACKED" loaded="$LOADED" lost="$LOST" duplicated="$DUPS" \
    rejected_503="$c503" acked_before_full="$acked1" acked_after_recovery="$acked2"
t_done test_queue_full
