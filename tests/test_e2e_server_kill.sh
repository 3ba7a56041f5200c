#!/usr/bin/env bash
# test_e2e_server_kill.sh - SPEC 1.1/1.2 end to end: datapipe-server SIGKILLed at random
# moments (at least 5 times) while 8 keep-alive clients post mixed events, restarted each
# time, with the loader draining alongside. Afterwards every acknowledged event is in
# PostgreSQL exactly once, and an unacknowledged one at most once.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
. tests/lib_sh.sh
. tests/lib_e2e.sh

LOAD_S=${E2E_SERVER_KILL_S:-10}
KILLS=${E2E_SERVER_KILLS:-6}
e2e_setup server_kill
e2e_config "" '"interval_s": 1, "min_interval_s": 0, "high_water": 1, "batch_rows": 2000'
start_server
start_loader
echo "server_kill: $LOAD_S s of load from 8 connections (crash, ad, login, sample), $KILLS kills"
# The client's own limit is a bound, not the plan: it runs until the kills are done (a loaded
# machine restarts the server slowly), then SIGTERM ends it after its requests in flight.
"$CLIENT" -p "$PORT" -c 8 -d "$((LOAD_S * 6))" -t crash,ad,login,sample -o "$DIR/ack" \
    -S "$DIR/sent" >"$DIR/client.out" 2>"$DIR/client.err" &
cpid=$!
T_PIDS+=("$cpid")
kills=0
restarts_ok=0
slot_ms=$((LOAD_S * 1000 / (KILLS + 1)))
for k in $(seq 1 "$KILLS"); do
    # A random moment in this kill's slot, never in the first 300 ms after a restart (an
    # interval by design: a kill must land anywhere in the load, not on a condition).
    sleep "$(awk -v r=$((RANDOM % (slot_ms - 300) + 300)) 'BEGIN {printf "%.3f", r / 1000}')"
    kill -0 "$cpid" 2>/dev/null || break
    stop_pid "$SPID" KILL
    [ "$T_RC" = 137 ] && kills=$((kills + 1))
    start_server
    curl -s -o /dev/null -m 2 "$URL/healthz" && restarts_ok=$((restarts_ok + 1))
done
kill -TERM "$cpid" 2>/dev/null
wait "$cpid"
crc=$?
cat "$DIR/client.out"
eq "client finished without unexpected statuses" 0 "$crc"
ok "killed at least 5 times under load ($kills)" [ "$kills" -ge 5 ]
eq "every restart served again" "$kills" "$restarts_ok"
stop_pid "$LPID"
eq "loader alongside exits 0 on SIGTERM" 0 "$T_RC"
drain
eq "final drain (--once) exits 0" 0 $?
e2e_verify "$DIR/ack" "$DIR/sent"
ioerr=$(sed -n 's/.* io_errors=\([0-9]*\) .*/\1/p' "$DIR/client.out")
echo "server_kill: $kills SIGKILLs survived; $ioerr requests cut by a kill (unacknowledged)"
stop_pid "$SPID"
eq "server exits 0 on SIGTERM" 0 "$T_RC"
e2e_figures acknowledged="$ACKED" loaded="$LOADED" lost="$LOST" duplicated="$DUPS" \
    unacked_loaded="$UNACKED_LOADED" kills="$kills"
t_done test_e2e_server_kill
