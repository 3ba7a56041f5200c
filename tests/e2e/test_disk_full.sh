#!/usr/bin/env bash
# test_disk_full.sh - back-pressure instead of failure (README's promises) end to end: the queue on a 2 MiB tmpfs (a full disk long
# before the 64 MiB map is full), no loader: POSTs get 503 with Retry-After, the server
# keeps running and every 2xx is in the queue; then the loader drains, the same server
# accepts again, and every acknowledged event is loaded exactly once. Then the disk fills
# again while the loader runs: the queue's disk reserve lets the loader delete what it
# loaded, so it drains by itself. Needs root and `mount -t tmpfs`; without them it says so
# and checks nothing.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
. tests/lib/lib_e2e.sh

e2e_setup disk_full
mkdir -p "$DIR/mnt"
if [ "$(id -u)" != 0 ] || ! mount -t tmpfs -o size=2m,mode=0700 e2e-disk-full "$DIR/mnt" 2>"$DIR/mount.err"; then
    echo "disk_full: SKIPPED: cannot mount a small tmpfs here (uid $(id -u): $(cat "$DIR/mount.err" 2>/dev/null));" \
        "a full disk is covered by check_queue's ENOSPC fault seam instead"
    e2e_figures skipped=1
    t_done test_disk_full
fi
E2E_MOUNT=$DIR/mnt
QDIR=$DIR/mnt/q
QMAX=67108864
e2e_config "" '"interval_s": 1, "min_interval_s": 0, "high_water": 1, "batch_rows": 200'
start_server
spid0=$SPID
# One event larger than the whole disk: LMDB's write of it ends short, which LMDB reports as
# EIO; on a full disk that is "full" too (503 and retry), not a 500.
n=900000000001
echo "$n" >"$DIR/sent1"
{ printf '{"user_id": %s, "timestamp": 1, "message": "' "$n"; head -c 3000000 /dev/zero | tr '\0' x
    printf '"}'; } >"$DIR/huge.json"
eq "an event larger than the free disk: 503 (short write, EIO)" 503 \
    "$(curl -s -o /dev/null -m 10 -w '%{http_code}' --data-binary @"$DIR/huge.json" "$URL/v1/events/crash_report")"
echo "disk_full: queue on a 2 MiB tmpfs, queue.max_bytes=$QMAX, no loader; 4 connections" \
    "post ~1.6 KB events for 3 s"
"$CLIENT" -p "$PORT" -c 4 -d 3 -s 1500 -t crash,ad,login,product -o "$DIR/ack1" -S "$DIR/sent1.c" \
    >"$DIR/client1.out" 2>"$DIR/client1.err"
eq "phase 1 client: only 202 and 503" 0 $?
cat "$DIR/sent1.c" >>"$DIR/sent1"
cat "$DIR/client1.out"
df -k "$DIR/mnt" | tail -1 | awk '{print "disk_full: tmpfs used " $3 " KiB of " $2 " KiB"}'
c503=$(sed -n 's/.* 503=\([0-9]*\) .*/\1/p' "$DIR/client1.out")
cra=$(sed -n 's/.* retry_after=\([0-9]*\) .*/\1/p' "$DIR/client1.out")
ok "the full disk answered 503 ($c503 times)" [ "${c503:-0}" -gt 0 ]
eq "every 503 carried Retry-After" "$c503" "$cra"
ok "the server logged the write error" grep -qi 'no space\|ENOSPC\|disk full\|full' "$DIR/server.log"
grep -i 'space\|full' "$DIR/server.log" | head -2
eq "/healthz 200 with the disk full" 200 "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "$URL/healthz")"
ok "server still running" kill -0 "$SPID"
acked1=$(wc -l <"$DIR/ack1")
eq "no 2xx lost: queued events = acknowledged ($acked1)" "$acked1" "$(queued)"

start_loader
t0=$SECONDS
wait_until 60 "the loader drains the queue on the full disk" queue_empty
echo "disk_full: loader drained the queue in $((SECONDS - t0)) s"
"$CLIENT" -p "$PORT" -c 4 -d 3 -s 1500 -B 500000000000 -t crash,ad,login,product -o "$DIR/ack2" \
    -S "$DIR/sent2" >"$DIR/client2.out" 2>"$DIR/client2.err"
eq "phase 2 client: only 202 and 503" 0 $?
cat "$DIR/client2.out"
acked2=$(wc -l <"$DIR/ack2")
ok "phase 2: the same server accepts again ($acked2)" [ "$acked2" -gt 0 ]
eq "same server process (no restart)" "$spid0" "$SPID"
c503b=$(sed -n 's/.* 503=\([0-9]*\) .*/\1/p' "$DIR/client2.out")
# Phase 2 filled the disk again while the loader was running. The queue keeps its data file
# preallocated with a reserve behind what it holds, and appends refuse (503) before they
# would use it: the loader's delete transactions always find the fresh pages they need, so
# the running loader drains by itself, without anyone freeing disk space.
t1=$SECONDS
wait_until 60 "the running loader drains the refilled disk by itself" queue_empty
echo "disk_full: phase 2: the running loader drained the refilled disk in $((SECONDS - t1)) s"
eq "the loader never failed to delete a loaded batch" 0 \
    "$(grep -c 'cannot delete a loaded batch' "$DIR/loader.log")"
stop_pid "$LPID"
eq "loader exits 0 on SIGTERM" 0 "$T_RC"
drain
eq "final drain (--once) exits 0" 0 $?
cat "$DIR/ack1" "$DIR/ack2" >"$DIR/ack"
cat "$DIR/sent1" "$DIR/sent2" >"$DIR/sent"
e2e_verify "$DIR/ack" "$DIR/sent"
stop_pid "$SPID"
eq "server exits 0 on SIGTERM" 0 "$T_RC"
e2e_figures acknowledged="$ACKED" loaded="$LOADED" lost="$LOST" duplicated="$DUPS" \
    rejected_503="$c503" acked_before_full="$acked1" acked_after_recovery="$acked2" rejected_503_phase2="$c503b"
t_done test_disk_full
