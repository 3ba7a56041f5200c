#!/usr/bin/env bash
# test_fleet.sh - a fleet of two (docs/scaling.md): appliances a and b (each its own
# queue.id, queue, server and loader) behind HAProxy on loopback, balance roundrobin, one
# PostgreSQL. Keyed clients send through the balancer and retry on every error or timeout
# while appliance a (server and loader) is SIGKILLed and restarted several times, and the
# versions of three products go out one after another. Afterwards every key sent is in
# PostgreSQL exactly once, whichever appliance took which copy, and each product's doc is its
# last acknowledged version; then README's hashing balancer (balance hdr(Idempotency-Key))
# answers a repeat "duplicate": true. E2E_FLEET_S, E2E_FLEET_KILLS: load length, kills.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
. tests/lib/lib_e2e.sh

LOAD_S=${E2E_FLEET_S:-12}
KILLS=${E2E_FLEET_KILLS:-4}
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
e2e_setup fleet
if [ ! -x "$HAPROXY" ]; then
    t_fail "haproxy is not installed (make deps installs it)"
    t_done test_fleet
fi
declare -A APORT ASPID ALPID

# app_config NAME: the appliance's configuration $DIR/NAME.json on a free port, its queue
# $DIR/NAME.q and queue.id $QID-NAME; the schema is the one both share.
app_config() {
    PORT=$(free_port)
    QDIR=$DIR/$1.q
    CFG=$DIR/$1.json
    local qid=$QID
    QID=$qid-$1
    e2e_config "" '"interval_s": 1, "min_interval_s": 0, "high_water": 1, "batch_rows": 2000'
    QID=$qid
    APORT[$1]=$PORT
}

# app_start NAME: its server (answering /healthz within 20 s) and its loader.
app_start() {
    start_bg "$DIR/$1.server.log" "$BIN/datapipe-server" -c "$DIR/$1.json"
    ASPID[$1]=$T_LAST_PID
    wait_until 20 "appliance $1's server answers /healthz" \
        http_answers "http://127.0.0.1:${APORT[$1]}/healthz"
    start_bg "$DIR/$1.loader.log" "$BIN/datapipe-loader" -c "$DIR/$1.json"
    ALPID[$1]=$T_LAST_PID
}

app_config a
app_config b
LB_PORT=$(free_port)
HASH_PORT=$(free_port)
LB=http://127.0.0.1:$LB_PORT
# The balancer of README's "Scaling out", on loopback: round-robin for the load; a second
# frontend hashing on Idempotency-Key as README recommends, for the last check.
cat >"$DIR/haproxy.cfg" <<EOF
global
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries 2
    option redispatch
frontend fleet
    bind 127.0.0.1:$LB_PORT
    default_backend appliances
frontend fleet_hashed
    bind 127.0.0.1:$HASH_PORT
    default_backend appliances_hashed
backend appliances
    balance roundrobin
    option httpchk GET /healthz
    server a 127.0.0.1:${APORT[a]} check inter 200ms fall 1 rise 1
    server b 127.0.0.1:${APORT[b]} check inter 200ms fall 1 rise 1
backend appliances_hashed
    balance hdr(Idempotency-Key)
    hash-type consistent
    option httpchk GET /healthz
    server a 127.0.0.1:${APORT[a]} check inter 200ms fall 1 rise 1
    server b 127.0.0.1:${APORT[b]} check inter 200ms fall 1 rise 1
EOF
ok "haproxy accepts the configuration" "$HAPROXY" -q -c -f "$DIR/haproxy.cfg"
app_start a
# The second loader starts once the first has created the shared schema's tables (each
# loader's DDL runs under an advisory lock; this only keeps the two logs apart).
tables_made() { [ "$(sql "SELECT to_regclass('$SCHEMA.loader_batches') IS NOT NULL")" = t ]; }
wait_until 30 "appliance a's loader created the tables" tables_made
app_start b
start_bg "$DIR/haproxy.log" "$HAPROXY" -db -f "$DIR/haproxy.cfg"
HPID=$T_LAST_PID
lb_ready() { [ "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$LB/healthz")" = 200 ]; }
wait_until 20 "the balancer forwards /healthz" lb_ready

# send_product P V: version V of product P through the balancer, sent again on any error or
# 5xx until it is acknowledged (60 s at most); "P V" into $DIR/prod.ack once it is.
send_product() {
    local doc code end=$((SECONDS + 60))
    doc="{\"id\": \"fleet$$-p$1\", \"name\": \"v$2\", \"price\": $2}"
    while [ "$SECONDS" -lt "$end" ]; do
        code=$(curl -s -o /dev/null -m 60 -w '%{http_code}' -H "Idempotency-Key: fleet$$-p$1-v$2" \
            -H 'Content-Type: application/json' --data-binary "$doc" "$LB/v1/events/product")
        if [ "$code" = 202 ]; then
            echo "$1 $2" >>"$DIR/prod.ack"
            return 0
        fi
        echo "$code" >>"$DIR/prod.retries"
        # The pace of retries after a failed attempt, not a condition.
        sleep 0.05
    done
    echo "product p$1 v$2 unanswered" >>"$DIR/prod.err"
}
# products: versions 1, 2, ... of products 1-3, each sent after the previous was
# acknowledged, until $DIR/stop exists (or LOAD_S * 30 seconds, a bound).
products() {
    local v=0 end=$((SECONDS + LOAD_S * 30)) p
    while [ ! -e "$DIR/stop" ] && [ "$SECONDS" -lt "$end" ]; do
        v=$((v + 1))
        for p in 1 2 3; do send_product "$p" "$v"; done
    done
}

echo "fleet: 8 keyed connections through HAProxy (roundrobin) for $LOAD_S s, product versions" \
    "in sequence, appliance a SIGKILLed $KILLS times"
# -d is only a bound: the clients are stopped (SIGTERM) once the kills are done, so that every
# kill lands under load however long the restarts take on a busy machine.
"$CLIENT" -p "$LB_PORT" -c 8 -d $((LOAD_S * 30)) -t crash,ad,login,sample -k -T 10 -x "fleet$$" \
    -o "$DIR/kack" -S "$DIR/ksent" >"$DIR/client.out" 2>"$DIR/client.err" &
kpid=$!
T_PIDS+=("$kpid")
: >"$DIR/prod.ack"
products &
ppid=$!
T_PIDS+=("$ppid")
kills=0
slot_ms=$((LOAD_S * 1000 / (KILLS + 1)))
for _ in $(seq 1 "$KILLS"); do
    # A random moment in this kill's slot, at least 300 ms after the last restart (an
    # interval by design: the kill is to land anywhere in the load).
    sleep "$(awk -v r=$((RANDOM % (slot_ms - 300) + 300)) 'BEGIN {printf "%.3f", r / 1000}')"
    kill -0 "$kpid" 2>/dev/null || break
    stop_pid "${ASPID[a]}" KILL
    src=$T_RC
    stop_pid "${ALPID[a]}" KILL
    [ "$src" = 137 ] && [ "$T_RC" = 137 ] && kills=$((kills + 1))
    app_start a
done
# One more slot of load on the restarted appliance (the load's length, not a condition).
sleep "$(awk -v r="$slot_ms" 'BEGIN {printf "%.3f", r / 1000}')"
touch "$DIR/stop"
kill -TERM "$kpid"
wait "$kpid"
krc=$?
wait "$ppid"
cat "$DIR/client.out"
eq "keyed clients: every event answered 202 (after retries), no unexpected status" 0 "$krc"
has "keyed clients: nothing unanswered" " unanswered=0" "$(cat "$DIR/client.out")"
eq "appliance a SIGKILLed (server and loader) under load as often as planned" "$KILLS" "$kills"
eq "every product version acknowledged in the end" "" "$(cat "$DIR/prod.err" 2>/dev/null)"

# The hashing balancer: the same key lands on the same appliance, which answers the repeats
# "duplicate": true at once (round-robin would alternate between the two queues).
hashed=()
for i in 1 2 3 4; do
    hashed+=("$(curl -s -m 30 -H 'Idempotency-Key: fleet-hashed-1' --data-binary \
        '{"user_id": 7, "timestamp": 1700000000, "message": "hashed"}' \
        "http://127.0.0.1:$HASH_PORT/v1/events/crash_report")")
done
has "hashed balancer: first send accepted" '"status_code":202' "${hashed[0]}"
for i in 1 2 3; do
    has "hashed balancer: repeat $i answered duplicate" '"duplicate":true' "${hashed[$i]}"
done
echo "0 fleet-hashed-1 crash_report" >>"$DIR/ksent"   # sent too: its key is counted below

for n in a b; do
    stop_pid "${ALPID[$n]}"
    eq "appliance $n's loader exits 0 on SIGTERM" 0 "$T_RC"
    timeout 300 "$BIN/datapipe-loader" -c "$DIR/$n.json" --once >>"$DIR/drain.log" 2>&1
    eq "appliance $n: final drain (--once) exits 0" 0 $?
done
dups_skipped=0
for n in a b; do
    d=$(curl -s -m 5 "http://127.0.0.1:${APORT[$n]}/metrics" |
        awk '/^datapipe_loader_duplicates_total/ {s += $2} END {print s + 0}')
    dups_skipped=$((dups_skipped + d))
    eq "appliance $n: queue empty after the drain" 0 \
        "$("$EQUEUE" stats "$DIR/$n.q" "$QMAX" | sed -n 's/^events=\([0-9]*\) .*/\1/p')"
done
eq "both appliances loaded batches" 2 \
    "$(sql "SELECT count(DISTINCT queue_id) FROM $SCHEMA.loader_batches")"
eq "no dead letter" 0 "$(sql "SELECT count(*) FROM $SCHEMA.dead_letter")"
e2e_verify_keys "$DIR/ksent"

for p in 1 2 3; do
    last=$(awk -v p="$p" '$1 == p {v = $2} END {print v}' "$DIR/prod.ack")
    eq "product p$p: the doc is the last version acknowledged (v$last)" "v$last" \
        "$(sql "SELECT doc->>'name' FROM $SCHEMA.product WHERE id = 'fleet$$-p$p'")"
done
versions=$(wc -l <"$DIR/prod.ack")
kout=$(cat "$DIR/client.out")
resent=$(sed -n 's/.* resent=\([0-9]*\).*/\1/p' <<<"$kout")
dupans=$(sed -n 's/.* duplicate_answers=\([0-9]*\).*/\1/p' <<<"$kout")
echo "fleet: $kills kills of appliance a; keyed requests sent again $resent times," \
    "$dupans answered \"duplicate\": true by the appliance that had the first copy;" \
    "$dups_skipped copies taken by both appliances skipped by the loaders (ON CONFLICT);" \
    "$versions product versions acknowledged, $( { wc -l <"$DIR/prod.retries"; } 2>/dev/null || echo 0)" \
    "product sends retried"
stop_pid "$HPID"
for n in a b; do
    stop_pid "${ASPID[$n]}"
    eq "appliance $n's server exits 0 on SIGTERM" 0 "$T_RC"
done
e2e_figures keys_sent="$KEYS_SENT" keys_lost="$KEYS_LOST" keys_duplicated="$KEYS_DUPS" \
    kills="$kills" resent="$resent" duplicate_answers="$dupans" \
    skipped_by_postgresql="$dups_skipped" product_versions="$versions"
t_done test_fleet
