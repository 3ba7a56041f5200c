#!/usr/bin/env bash
# test_queue_identity.sh - queue identity (docs/operations.md) end to end: one appliance, queue.id "same",
# loader.batch_rows 1000. 5,400 events loaded; the queue directory removed (a replaced disk);
# 5,400 new events, enough to pass the old highest sequence number. The loader must refuse
# (exit 78, a message naming both instances and the command), load and delete nothing, show
# the refusal in /v1/status, and after `datapipe-loader --adopt-queue` load all 10,800 once.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
. tests/lib/lib_e2e.sh

e2e_setup queue_identity
QID=same
e2e_config "" '"interval_s": 3600, "batch_rows": 1000, "workers": 2'

# post BASE ACKFILE SENTFILE: 5,400 crash_report events over 4 connections, numbered from BASE.
post() {
    "$CLIENT" -p "$PORT" -c 4 -n 1350 -d 300 -t crash -B "$1" -o "$2" -S "$3" \
        >>"$DIR/client.out" 2>>"$DIR/client.err"
}
rows() { sql "SELECT count(*) FROM $SCHEMA.crash_report"; }
distinct_ids() { sql "SELECT count(DISTINCT id) FROM $SCHEMA.crash_report"; }
refused() { status_json | sed -n 's/.*"refused":\(null\|"\([^"\\]\|\\.\)*"\).*/\1/p'; }
status_events() { status_json | sed -n 's/.*"queue":{"events":\([0-9]*\).*/\1/p'; }

# --- the first queue: 5,400 acknowledged and loaded ---------------------------------------------
start_server
post 1 "$DIR/ack1" "$DIR/sent1"
eq "first queue: 5,400 acknowledged" 5400 "$(wc -l <"$DIR/ack1")"
drain
eq "first --once exits 0" 0 $?
eq "first --once loads 5,400 rows" 5400 "$(rows)"
eq "loader_batches keeps the last range" 5400 \
    "$(sql "SELECT max(last_seq) FROM $SCHEMA.loader_batches WHERE queue_id = 'same'")"
old_instance=$(sql "SELECT instance_id FROM $SCHEMA.queue_owners WHERE queue_id = 'same'")
ok "queue_owners records the first queue's instance ($old_instance)" \
    grep -Eqx '[0-9a-f]{32}' <<<"$old_instance"

# --- the queue directory replaced: 5,400 new events pass the old maximum -----------------------
stop_pid "$SPID"
eq "server stops cleanly" 0 "$T_RC"
rm -rf "$QDIR"
start_server
post 100000000 "$DIR/ack2" "$DIR/sent2"
eq "second queue: 5,400 acknowledged" 5400 "$(wc -l <"$DIR/ack2")"
eq "second queue: next_seq 5,401 passes the old maximum 5,400" 5401 \
    "$(status_json | sed -n 's/.*"next_seq":\([0-9]*\).*/\1/p')"
new_instance=$(status_json | sed -n 's/.*"instance_id":"\([0-9a-f]*\)".*/\1/p')
ok "the new queue has its own instance id ($new_instance)" \
    [ -n "$new_instance" ] && [ "$new_instance" != "$old_instance" ]

: >"$DIR/drain.log"
drain
eq "--once on the recreated queue refuses with exit 78" 78 $?
has "the refusal names the queue.id" 'queue_id=same' "$(cat "$DIR/drain.log")"
has "the refusal names this queue's instance" "instance_id=$new_instance" "$(cat "$DIR/drain.log")"
has "the refusal names the owner" "owner_instance_id=$old_instance" "$(cat "$DIR/drain.log")"
has "the refusal names the command" "datapipe-loader --adopt-queue" "$(cat "$DIR/drain.log")"
eq "nothing of the new queue was loaded" 5400 "$(rows)"
eq "nothing was deleted from the new queue (queue tool)" 5400 "$(queued)"
eq "nothing was deleted from the new queue (/v1/status)" 5400 "$(status_events)"
r=$(refused)
has "/v1/status shows the refusal" "--adopt-queue" "$r"
has "/v1/status names the owner" "$old_instance" "$r"
ok "/metrics shows the refusal" grep -qx 'datapipe_loader_refused 1' \
    <<<"$(curl -s -m 5 "$URL/metrics")"

# Forever (the new queue is already past the old maximum): a second --once refuses too.
drain
eq "--once refuses again" 78 $?
eq "still nothing deleted" 5400 "$(queued)"

# The daemon refuses the same way and is not restarted by systemd (RestartPreventExitStatus).
start_loader
wait_until 120 "the loader daemon exits by itself" gone "$LPID"
stop_pid "$LPID"
eq "the loader daemon exits 78 as well" 78 "$T_RC"
ok "systemd does not restart on 78" grep -Eqx 'RestartPreventExitStatus=([0-9]+ )*78( [0-9]+)*' \
    systemd/datapipe-loader.service

# --- the operator adopts the queue -------------------------------------------------------------
out=$("$BIN/datapipe-loader" -c "$CFG" --adopt-queue 2>>"$DIR/adopt.log")
eq "--adopt-queue exits 0" 0 $?
has "--adopt-queue says what it did" "$new_instance" "$out"
has "--adopt-queue names the old instance" "$old_instance" "$out"
eq "queue_owners names the new instance" "$new_instance" \
    "$(sql "SELECT instance_id FROM $SCHEMA.queue_owners WHERE queue_id = 'same'")"
eq "the old instance's loader_batches rows are kept apart" 0 \
    "$(sql "SELECT count(*) FROM $SCHEMA.loader_batches WHERE queue_id = 'same'")"
ok "under same@<old instance>" [ "$(sql "SELECT count(*) FROM $SCHEMA.loader_batches
    WHERE queue_id = 'same@$old_instance'")" -gt 0 ]
out=$("$BIN/datapipe-loader" -c "$CFG" --adopt-queue 2>>"$DIR/adopt.log")
eq "--adopt-queue again exits 0" 0 $?
has "--adopt-queue again says it is the owner already" "already" "$out"
eq "/v1/status: no refusal after the adoption" null "$(refused)"

drain
eq "--once after the adoption exits 0" 0 $?
eq "every event of both queues in PostgreSQL" 10800 "$(rows)"
eq "each once (distinct ids)" 10800 "$(distinct_ids)"
cat "$DIR/ack1" "$DIR/ack2" >"$DIR/ack"
cat "$DIR/sent1" "$DIR/sent2" >"$DIR/sent"
# The first queue's rows and acknowledgements are in PostgreSQL, not in this queue's counters.
E2E_PRIOR_ROWS=$(wc -l <"$DIR/ack1") E2E_PRIOR_ACKED=$(wc -l <"$DIR/ack1") \
    e2e_verify "$DIR/ack" "$DIR/sent"
eq "/v1/status: still no refusal" null "$(refused)"
stop_pid "$SPID"
eq "server stops cleanly" 0 "$T_RC"
t_done test_queue_identity
