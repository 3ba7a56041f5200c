#!/usr/bin/env bash
# test_queue_backup.sh - datapipe-queue backup, check, stat, and a restore as README
# ("Backup and restore") tells an operator to do it. A backup is taken while the server
# appends; the loader then loads everything, the ledger is compacted, more events are
# acknowledged and never loaded; the queue is restored from the backup and the loader runs
# before the server. Every event the backup holds is in PostgreSQL exactly once, nothing
# loaded before the restore is loaded again, the events acknowledged after the backup and
# not loaded are lost (and only they), events posted after the restore load once.
# check finds a record whose bytes no longer decode and names its sequence number.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
. tests/lib/lib_e2e.sh

e2e_setup queue_backup
e2e_config "" '"interval_s": 1, "min_interval_s": 0, "high_water": 1, "batch_rows": 300'
QTOOL=$BUILD/tests/tools/qtool
DPQ=$BIN/datapipe-queue
BACKUP=$DIR/backup

# post BASE PER_CONN ACKFILE [RATE]: crash_report events over 2 connections from BASE; the
# phases' BASEs are k x 10^8, so an event number's first digit names its phase.
post() {
    "$CLIENT" -p "$PORT" -c 2 -n "$2" -d 60 ${4:+-r "$4"} -t crash -B "$1" -o "$3" -S "$3.sent" \
        >>"$DIR/client.out" 2>>"$DIR/client.err"
}
# numbers DIR: the event numbers (user_id) queued in queue directory DIR, sorted; read from
# a copy, since qtool opens a queue for writing.
numbers() {
    rm -rf "$DIR/peek" && mkdir "$DIR/peek" && cp "$1/data.mdb" "$DIR/peek/" &&
        "$QTOOL" "$DIR/peek" dump | sed -n 's/.*"user_id": \([0-9]*\),.*/\1/p' | sort
}
rows_of() { sql "SELECT user_id FROM $SCHEMA.crash_report" | sort; }

# --- the tool's front door
out=$("$DPQ" --help)
has "--help names the three commands" "backup DIR | check | stat" "$out"
"$DPQ" -c "$CFG" frobnicate >/dev/null 2>&1
eq "an unknown command exits 2" 2 "$?"
"$DPQ" -c "$CFG" check >"$DIR/nq.out" 2>&1
eq "check of a queue.path without a queue exits 1" 1 "$?"
has "... and says so" "cannot open the queue $QDIR: not found" "$(cat "$DIR/nq.out")"
ok "... and creates nothing there" [ ! -e "$QDIR/data.mdb" ]

start_server
# P1: loaded before the backup.
post 100000000 1000 "$DIR/ack1"
drain
eq "P1 loaded" 2000 "$(table_count crash_report)"
# P2: queued when the backup is taken; P3 is being posted while it is taken.
post 200000000 1000 "$DIR/ack2"
post 300000000 1500 "$DIR/ack3" 400 &
P3=$!
wait_until 60 "P3 is being appended" queued_above 2400
live=$("$DPQ" -c "$CFG" check)
eq "check of the live queue while the server appends exits 0" 0 "$?"
has "... its counters add up" "check: ok" "$live"
"$DPQ" -c "$CFG" backup "$BACKUP" >"$DIR/backup.out" 2>&1
eq "backup while the server appends exits 0" 0 "$?"
has "backup reports its file" "backup: $BACKUP/data.mdb written" "$(cat "$DIR/backup.out")"
"$DPQ" -c "$CFG" backup "$BACKUP" >"$DIR/backup2.out" 2>&1
eq "a second backup into the same directory exits 1" 1 "$?"
has "... and says the directory holds a backup already" \
    "backup of $QDIR into $BACKUP failed: $BACKUP already holds a backup ($BACKUP/data.mdb exists): a backup never overwrites one, give a new directory" \
    "$(cat "$DIR/backup2.out")"
wait "$P3"
numbers "$BACKUP" >"$DIR/in_backup"
in_backup=$(wc -l <"$DIR/in_backup")
p3_in=$(grep -c '^3' "$DIR/in_backup")
echo "backup: $in_backup events, $p3_in of P3's $(wc -l <"$DIR/ack3")"
ok "the backup holds all of P2" [ "$(grep -c '^2' "$DIR/in_backup")" = 2000 ]
ok "the backup holds part of P3 (taken while it was appended)" \
    [ "$p3_in" -gt 0 ] && [ "$p3_in" -lt "$(wc -l <"$DIR/ack3")" ]
eq "the backup holds nothing of P1 (loaded and deleted)" 0 "$(grep -c '^1' "$DIR/in_backup")"
size=$(stat -c %s "$BACKUP/data.mdb")
ok "the backup is compacted ($size bytes for $in_backup events)" [ "$size" -lt 4000000 ]
bcheck=$("$DPQ" -c "$CFG" --path "$BACKUP" check)
eq "check of the backup exits 0" 0 "$?"
has "... counters of one snapshot" "queued $in_backup: ok" "$bcheck"
instance=$(status_json | sed -n 's/.*"instance_id":"\([0-9a-f]*\)".*/\1/p')
has "the backup keeps the instance id" "(instance $instance)" "$bcheck"
st=$("$DPQ" -c "$CFG" stat)
has "stat shows the instance id as /v1/status does" "\"instance_id\":\"$instance\"" "$st"

# Everything loads; the ledger is compacted (the queue is empty).
drain
eq "P1-P3 loaded" "$((2000 + 2000 + $(wc -l <"$DIR/ack3")))" "$(table_count crash_report)"
eq "queue empty" 0 "$(queued)"
rows_of >"$DIR/before_restore"
# stat, without the server, shows what /v1/status shows (nothing moves now: no client, no run).
events_of() { sed -n 's/.*\("events":{[^}]*}\).*/\1/p'; }
from_status=$(status_json | events_of)
ok "/v1/status has its events object ($from_status)" [ -n "$from_status" ]
eq "stat's events object is /v1/status's" "$from_status" "$("$DPQ" -c "$CFG" stat | events_of)"
mark_before=$(sql "SELECT loaded_through FROM $SCHEMA.watermark WHERE queue_id = '$QID'")
# P4: acknowledged after the backup, never loaded: lost by the restore.
post 400000000 500 "$DIR/ack4"
eq "P4 acknowledged" 1000 "$(wc -l <"$DIR/ack4")"
stop_pid "$SPID"

# --- restore: both daemons stopped, the queue directory replaced, the loader first.
mv "$QDIR" "$DIR/q.old"
mkdir -m 0700 "$QDIR"
cp "$BACKUP/data.mdb" "$QDIR/"
drain
eq "the loader's first run after the restore exits 0" 0 "$?"
rows_of >"$DIR/after_restore"
eq "nothing loaded before the restore was loaded again" 0 \
    "$(uniq -d "$DIR/after_restore" | wc -l)"
eq "no dead letter (an event loaded again would be a duplicate key there)" 0 \
    "$(sql "SELECT count(*) FROM $SCHEMA.dead_letter")"
eq "no row added by the restore (every event of the backup was loaded already)" \
    "$(wc -l <"$DIR/before_restore")" "$(wc -l <"$DIR/after_restore")"
eq "every event of the backup is in PostgreSQL" 0 \
    "$(comm -23 "$DIR/in_backup" "$DIR/after_restore" | wc -l)"
eq "queue empty after the restore's run" 0 "$(queued)"
# The original handed out (and loaded) numbers the backup had not reached: the restored queue
# must not hand them out again, or their loader_batches rows would delete its new events.
max_last=$(sql "SELECT max(last_seq) FROM $SCHEMA.loader_batches WHERE queue_id = '$QID'")
next=$("$DPQ" -c "$CFG" stat | sed -n 's/.*"next_seq":\([0-9]*\).*/\1/p')
ok "the restored queue's next_seq ($next) is above every number PostgreSQL recorded ($max_last)" \
    [ "$next" -gt "$max_last" ]
has "the loader says it moved the counter" "queue sequence counter moved forward" \
    "$(cat "$DIR/drain.log")"
cut -d' ' -f1 "$DIR/ack4" | sort >"$DIR/p4"
eq "P4 (acknowledged after the backup, not loaded) is lost, as README says" 1000 \
    "$(comm -23 "$DIR/p4" "$DIR/after_restore" | wc -l)"
mark_after=$(sql "SELECT loaded_through >= '$mark_before' FROM $SCHEMA.watermark
                  WHERE queue_id = '$QID'")
eq "the watermark did not go back" t "$mark_after"

# P5: posted after the restore; loads once.
start_server
post 500000000 500 "$DIR/ack5"
eq "P5 acknowledged" 1000 "$(wc -l <"$DIR/ack5")"
drain
rows_of >"$DIR/final"
eq "P5 loaded once" 1000 "$(grep -c '^5' "$DIR/final")"
eq "no event twice in the end" 0 "$(uniq -d "$DIR/final" | wc -l)"
eq "rows: P1, P2, P3 and P5" "$((5000 + $(wc -l <"$DIR/ack3")))" "$(wc -l <"$DIR/final")"
ACKED=
E2E_PRIOR_ROWS=$(($(wc -l <"$DIR/ack3") - p3_in)) # loaded from the original after the backup
e2e_conservation

# --- the backup restored on another host while the original runs: a clone. With that
# host's own queue.id its instance id is the one that owns $QID: the loader refuses it.
mkdir -m 0700 "$DIR/clone" "$DIR/clone/q"
cp "$BACKUP/data.mdb" "$DIR/clone/q/"
sed "s|\"$QDIR\"|\"$DIR/clone/q\"|; s|\"id\": \"$QID\"|\"id\": \"other-host-$$\"|" "$CFG" \
    >"$DIR/clone/cfg.json"
has "the clone's configuration names another queue.id" "other-host-$$" "$(cat "$DIR/clone/cfg.json")"
rows=$(table_count crash_report)/$(table_count dead_letter)
timeout 120 "$BIN/datapipe-loader" -c "$DIR/clone/cfg.json" --once >"$DIR/clone/loader.log" 2>&1
eq "the clone's loader exits 78" 78 "$?"
eq "... having loaded nothing (rows/dead letters)" "$rows" \
    "$(table_count crash_report)/$(table_count dead_letter)"
has "... naming the queue.id its instance owns" "owns queue.id $QID" "$(cat "$DIR/clone/loader.log")"
eq "... and claiming no queue.id" 0 \
    "$(sql "SELECT count(*) FROM $SCHEMA.queue_owners WHERE queue_id = 'other-host-$$'")"

# --- a planted corruption: a record of a copy of the backup whose version byte no longer
# decodes. The record starts 8 bytes before its event's 16-byte uuid.
cp -r "$BACKUP" "$DIR/bad"
rm -f "$DIR/bad/lock.mdb"
rm -rf "$DIR/peek" && mkdir "$DIR/peek" && cp "$BACKUP/data.mdb" "$DIR/peek/"
victim=$("$QTOOL" "$DIR/peek" dump | sed -n '100p')
vseq=${victim%% *}
vuuid=$(cut -d' ' -f2 <<<"$victim" | tr -d -)
pattern=
for ((i = 0; i < ${#vuuid}; i += 2)); do pattern+="\\x${vuuid:i:2}"; done
off=$(grep -obUaP "$pattern" "$DIR/bad/data.mdb" | head -1 | cut -d: -f1)
ok "the victim's uuid is found in the copy (seq $vseq at byte $off)" [ -n "$off" ]
printf '\x7f' | dd of="$DIR/bad/data.mdb" bs=1 seek=$((off - 8)) conv=notrunc 2>/dev/null
bad=$("$DPQ" -c "$CFG" --path "$DIR/bad" check)
eq "check of the corrupted copy exits 1" 1 "$?"
has "check names the record's sequence number" \
    "record seq $vseq does not decode: unknown record version" "$bad"
has "check counts it" "1 do not decode: BAD" "$bad"
has "check's verdict" "check: FAILED" "$bad"

echo "queue_backup: backup of $in_backup events ($size bytes), restored: 0 loaded twice," \
    "1000 acknowledged after the backup lost, check found seq $vseq"
t_done test_queue_backup
