#!/usr/bin/env bash
# test_server_kill.sh - nothing lost, exactly once (README's promises) end to end: datapipe-server SIGKILLed at random
# moments (at least 5 times) while 8 keep-alive clients post mixed events and 8 keyed clients
# post theirs with an Idempotency-Key each, retrying every request whose answer they did not
# get; the server is restarted each time, the loader drains alongside. Afterwards every
# acknowledged event is in PostgreSQL exactly once with the id it was acknowledged with, an
# unkeyed unacknowledged one at most once, and every key sent (acknowledged or not) exactly
# once. E2E_SERVER_KILLS kills (default 6), one in each of as many slots of
# E2E_SERVER_KILL_S / (kills + 1) seconds; the clients stop one slot after the last restart.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
. tests/lib/lib_e2e.sh

LOAD_S=${E2E_SERVER_KILL_S:-10}
KILLS=${E2E_SERVER_KILLS:-6}
e2e_setup server_kill
e2e_config "" '"interval_s": 1, "min_interval_s": 0, "high_water": 1, "batch_rows": 2000'
start_server
start_loader
echo "server_kill: $LOAD_S s of load from 8 connections (crash, ad, login, sample) and 8 keyed" \
    "ones, $KILLS kills"
# The clients' -d is only a bound: they are stopped (SIGTERM) once the kills are done, so
# that every kill lands under load however long the restarts take on a busy machine.
"$CLIENT" -p "$PORT" -c 8 -d $((LOAD_S * 30)) -t crash,ad,login,sample -o "$DIR/ack" \
    -S "$DIR/sent" >"$DIR/client.out" 2>"$DIR/client.err" &
cpid=$!
T_PIDS+=("$cpid")
# The keyed clients' event numbers start at 10^9, above anything the unkeyed ones use.
"$CLIENT" -p "$PORT" -c 8 -d $((LOAD_S * 30)) -t crash,ad,login,sample -k -x "key$$" -B 1000000000 \
    -o "$DIR/kack" -S "$DIR/ksent" >"$DIR/kclient.out" 2>"$DIR/kclient.err" &
kpid=$!
T_PIDS+=("$kpid")
kills=0
restarts_ok=0
slot_ms=$((LOAD_S * 1000 / (KILLS + 1)))
for _ in $(seq 1 "$KILLS"); do
    # A random moment in this kill's slot, never in the first 300 ms after a restart (an
    # interval by design: a kill must land anywhere in the load, not on a condition).
    sleep "$(awk -v r=$((RANDOM % (slot_ms - 300) + 300)) 'BEGIN {printf "%.3f", r / 1000}')"
    kill -0 "$cpid" 2>/dev/null || break
    stop_pid "$SPID" KILL
    [ "$T_RC" = 137 ] && kills=$((kills + 1))
    start_server
    curl -s -o /dev/null -m 2 "$URL/healthz" && restarts_ok=$((restarts_ok + 1))
done
# One more slot of load on the last restarted server (the load's length, not a condition).
sleep "$(awk -v r="$slot_ms" 'BEGIN {printf "%.3f", r / 1000}')"
kill -TERM "$cpid" "$kpid"
wait "$cpid"
crc=$?
wait "$kpid"
krc=$?
cat "$DIR/client.out" "$DIR/kclient.out"
eq "client finished without unexpected statuses" 0 "$crc"
eq "keyed client: every event answered 202 (after retries), no unexpected status" 0 "$krc"
has "keyed client: nothing unanswered" " unanswered=0" "$(cat "$DIR/kclient.out")"
eq "every planned SIGKILL landed under load" "$KILLS" "$kills"
eq "every restart served again" "$kills" "$restarts_ok"
stop_pid "$LPID"
eq "loader alongside exits 0 on SIGTERM" 0 "$T_RC"
drain
eq "final drain (--once) exits 0" 0 $?
cat "$DIR/ack" "$DIR/kack" >"$DIR/ack.all"
cat "$DIR/sent" "$DIR/ksent" >"$DIR/sent.all"
e2e_verify "$DIR/ack.all" "$DIR/sent.all"
e2e_verify_keys "$DIR/ksent"
kacked=$(sort -u "$DIR/kack" | wc -l)
eq "every keyed event acknowledged" "$KEYS_SENT" "$kacked"
ioerr=$(sed -n 's/.* io_errors=\([0-9]*\) .*/\1/p' "$DIR/client.out")
kout=$(cat "$DIR/kclient.out")
resent=$(sed -n 's/.* resent=\([0-9]*\).*/\1/p' <<<"$kout")
dupans=$(sed -n 's/.* duplicate_answers=\([0-9]*\).*/\1/p' <<<"$kout")
echo "server_kill: $kills SIGKILLs survived; $ioerr unkeyed requests cut by a kill" \
    "(unacknowledged); keyed: $resent requests sent again, $dupans answered \"duplicate\": true"
stop_pid "$SPID"
eq "server exits 0 on SIGTERM" 0 "$T_RC"
e2e_figures acknowledged="$ACKED" loaded="$LOADED" lost="$LOST" duplicated="$DUPS" \
    unacked_loaded="$UNACKED_LOADED" kills="$kills" keys_sent="$KEYS_SENT" \
    keys_lost="$KEYS_LOST" keys_duplicated="$KEYS_DUPS" keyed_resent="$resent" \
    keyed_duplicate_answers="$dupans"
t_done test_server_kill
