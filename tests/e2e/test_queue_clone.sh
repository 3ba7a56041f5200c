#!/usr/bin/env bash
# test_queue_clone.sh - two live appliances started with one queue.id
# (a cloned appliance that kept it) and one PostgreSQL: the first loader claims queue.id and
# loads; the second's loader refuses (exit 78, /v1/status) even once its queue is past the
# first's sequence numbers, and terminates none of the first's sessions. Afterwards every
# event of the first is in PostgreSQL once and every event of the second is still queued.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
. tests/lib/lib_e2e.sh

e2e_setup queue_clone
QID=clone-$$
e2e_config "" '"interval_s": 1, "min_interval_s": 0, "high_water": 1, "batch_rows": 500'
# Appliance B: the same configuration, its own queue directory and port.
B_QDIR=$DIR/qb
B_PORT=$(free_port)
B_URL=http://127.0.0.1:$B_PORT
B_CFG=$DIR/cfg_b.json
sed "s|\"$QDIR\"|\"$B_QDIR\"|; s|127.0.0.1:$PORT\"|127.0.0.1:$B_PORT\"|" "$CFG" >"$B_CFG"

# post URL_PORT BASE N ACKFILE: N crash_report events over 2 connections, numbered from BASE.
post() {
    "$CLIENT" -p "$1" -c 2 -n $(($3 / 2)) -d 300 -t crash -B "$2" -o "$4" -S "$4.sent" \
        >>"$DIR/client.out" 2>>"$DIR/client.err"
}
b_queued() { "$EQUEUE" stats "$B_QDIR" "$QMAX" | sed -n 's/^events=\([0-9]*\) .*/\1/p'; }
b_refused() {
    curl -s -m 5 "$B_URL/v1/status" | sed -n 's/.*"refused":\("\([^"\\]\|\\.\)*"\).*/\1/p'
}
rows_between() { sql "SELECT count(*) FROM $SCHEMA.crash_report WHERE user_id BETWEEN $1 AND $2"; }
rows_are() { [ "$(sql "SELECT count(*) FROM $SCHEMA.crash_report")" = "$1" ]; }

start_server
start_bg "$DIR/server_b.log" "$BIN/datapipe-server" -c "$B_CFG"
B_SPID=$T_LAST_PID
wait_until 20 "appliance B serves" http_answers "$B_URL/healthz"

# A: 3,000 events, loaded by its running loader, which claims queue.id.
post "$PORT" 1 3000 "$DIR/ack_a1"
eq "A: 3,000 acknowledged" 3000 "$(wc -l <"$DIR/ack_a1")"
start_loader
A_LPID=$LPID
wait_until 120 "A's loader loads its 3,000" rows_are 3000
wait_until 60 "A's loader empties A's queue" queue_empty
a_instance=$(curl -s -m 5 "$URL/v1/status" | sed -n 's/.*"instance_id":"\([0-9a-f]*\)".*/\1/p')
eq "queue_owners names A's queue" "$a_instance" \
    "$(sql "SELECT instance_id FROM $SCHEMA.queue_owners WHERE queue_id = '$QID'")"

# B: 5,000 events, past A's highest sequence number 3,000; its loader daemon refuses.
post "$B_PORT" 500000000 5000 "$DIR/ack_b"
eq "B: 5,000 acknowledged" 5000 "$(wc -l <"$DIR/ack_b")"
b_instance=$(curl -s -m 5 "$B_URL/v1/status" | sed -n 's/.*"instance_id":"\([0-9a-f]*\)".*/\1/p')
ok "B's queue has its own instance id" [ -n "$b_instance" ] && [ "$b_instance" != "$a_instance" ]
start_bg "$DIR/loader_b.log" "$BIN/datapipe-loader" -c "$B_CFG"
B_LPID=$T_LAST_PID
wait_until 120 "B's loader exits by itself" gone "$B_LPID"
stop_pid "$B_LPID"
eq "B's loader exits 78" 78 "$T_RC"
has "B's loader names A's instance" "owner_instance_id=$a_instance" "$(cat "$DIR/loader_b.log")"
has "B's loader names the command" "--adopt-queue" "$(cat "$DIR/loader_b.log")"
eq "nothing of B was deleted" 5000 "$(b_queued)"
eq "nothing of B was loaded" 0 "$(rows_between 500000000 599999999)"
has "B's /v1/status shows the refusal" "$a_instance" "$(b_refused)"
"$BIN/datapipe-loader" -c "$B_CFG" --once >>"$DIR/loader_b.log" 2>&1
eq "B's --once refuses as well" 78 $?
eq "still nothing of B deleted" 5000 "$(b_queued)"

# A goes on undisturbed: its loader was not fenced off by B's, and loads more.
ok "A's loader still runs" kill -0 "$A_LPID"
if grep -q "terminated a session" "$DIR/loader_b.log"; then fenced=1; else fenced=0; fi
eq "B's loader terminated none of A's sessions" 0 "$fenced"
post "$PORT" 100000000 1000 "$DIR/ack_a2"
wait_until 120 "A's loader loads 1,000 more" rows_are 4000
wait_until 60 "A's queue empty again" queue_empty
eq "A's /v1/status shows no refusal" null \
    "$(curl -s -m 5 "$URL/v1/status" | sed -n 's/.*"refused":\(null\).*/\1/p')"

stop_pid "$A_LPID"
eq "A's loader stops with 0" 0 "$T_RC"
stop_pid "$B_SPID"
eq "B's server stops cleanly" 0 "$T_RC"
cat "$DIR/ack_a1" "$DIR/ack_a2" >"$DIR/ack_a"
cat "$DIR/ack_a1.sent" "$DIR/ack_a2.sent" >"$DIR/sent_a"
e2e_verify "$DIR/ack_a" "$DIR/sent_a"
eq "B's 5,000 events are all still queued (nothing lost)" 5000 "$(b_queued)"
# "N UUID" of every event in B's queue, as the client's acknowledgement file has them.
"$BUILD/tests/tools/qtool" "$B_QDIR" dump 2>/dev/null |
    sed -n 's/^[0-9]* \([0-9a-f-]*\) crash_report .*"user_id": \([0-9]*\).*/\2 \1/p' |
    sort >"$DIR/b_queued"
sort "$DIR/ack_b" >"$DIR/b_acked"
eq "every event B acknowledged is in B's queue with its id" 0 \
    "$(comm -23 "$DIR/b_acked" "$DIR/b_queued" | wc -l)"
stop_pid "$SPID"
eq "A's server stops cleanly" 0 "$T_RC"
t_done test_queue_clone
