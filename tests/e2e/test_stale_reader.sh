#!/usr/bin/env bash
# test_stale_reader.sh - no acknowledged event lost (README's promises) end to end: a restart with a non-empty queue and a stale
# LMDB reader slot. Events are acknowledged, the server is SIGKILLed, a reader process
# (qprobe hold) is SIGKILLed while it holds a read transaction; then both daemons start
# on that queue, the stale slot is cleared (mdb_stat -r), nothing acknowledged is lost and
# nothing loads twice, and the restarted server takes new events. Another process keeps the
# environment open throughout (qprobe open): when the last user of an LMDB environment
# is gone, the next one to open it resets the whole reader table, and that would hide
# whether the daemons' own mdb_reader_check works.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
. tests/lib/lib_e2e.sh

e2e_setup stale_reader
e2e_config "" '"interval_s": 1, "min_interval_s": 0, "high_water": 1, "batch_rows": 1000'
start_server
"$CLIENT" -p "$PORT" -c 4 -d 2 -t crash,ad,login,sample,product -o "$DIR/ack1" -S "$DIR/sent1" \
    >"$DIR/client1.out" 2>"$DIR/client1.err"
cat "$DIR/client1.out"
stop_pid "$SPID" KILL
eq "server SIGKILLed" 137 "$T_RC"
q1=$(queued)
eq "the queue holds every acknowledged event" "$(wc -l <"$DIR/ack1")" "$q1"

"$EQUEUE" open "$QDIR" "$QMAX" >"$DIR/keeper.out" 2>&1 &
kpid=$!
T_PIDS+=("$kpid")
wait_until 10 "another process keeps the environment open" grep -q '^open' "$DIR/keeper.out"
"$EQUEUE" hold "$QDIR" "$QMAX" >"$DIR/hold.out" 2>&1 &
hpid=$!
T_PIDS+=("$hpid")
wait_until 10 "reader holds a read transaction" grep -q '^holding' "$DIR/hold.out"
cat "$DIR/hold.out"
stop_pid "$hpid" KILL
eq "reader SIGKILLed" 137 "$T_RC"
readers() { mdb_stat -r "$QDIR" 2>/dev/null | awk -v p="$1" '$1 == p' | wc -l; }
before=$(readers "$hpid")
mdb_stat -r "$QDIR" | sed 's/^/  mdb_stat: /'
eq "the dead reader's slot is still in the reader table" 1 "$before"

start_server
start_loader
ok "both daemons up" kill -0 "$LPID"
after=$(readers "$hpid")
mdb_stat -r "$QDIR" | sed 's/^/  mdb_stat: /'
eq "starting cleared the stale slot" 0 "$after"
has "the server logged it" "cleared stale queue readers" "$(cat "$DIR/server.log")"
"$CLIENT" -p "$PORT" -c 4 -d 2 -B 500000000000 -t crash,ad,login,sample,product -o "$DIR/ack2" \
    -S "$DIR/sent2" >"$DIR/client2.out" 2>"$DIR/client2.err"
cat "$DIR/client2.out"
ok "the restarted server takes new events ($(wc -l <"$DIR/ack2"))" [ "$(wc -l <"$DIR/ack2")" -gt 0 ]
wait_until 60 "the loader drained old and new events" queue_empty
stop_pid "$LPID"
eq "loader exits 0 on SIGTERM" 0 "$T_RC"
stop_pid "$kpid" KILL
drain
cat "$DIR/ack1" "$DIR/ack2" >"$DIR/ack"
cat "$DIR/sent1" "$DIR/sent2" >"$DIR/sent"
e2e_verify "$DIR/ack" "$DIR/sent"
stop_pid "$SPID"
eq "server exits 0 on SIGTERM" 0 "$T_RC"
e2e_figures acknowledged="$ACKED" loaded="$LOADED" lost="$LOST" duplicated="$DUPS" \
    queued_at_restart="$q1" stale_slots_before="$before" stale_slots_after="$after"
t_done test_stale_reader
