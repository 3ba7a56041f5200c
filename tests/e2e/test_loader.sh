#!/usr/bin/env bash
# test_loader.sh - datapipe-loader as a process against the harness's PostgreSQL: --once,
# one loader per queue, the high-water schedule, SIGUSR1, SIGHUP, SIGTERM (idle and during a
# drain), sd_notify (READY, STATUS, WATCHDOG), a PostgreSQL outage (pg_ctl stop -m
# immediate in the middle of a drain) and --once giving up on an unreachable PostgreSQL.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh

TOOL=$BUILD/tests/tools/ldrtool
: "${DP_PG_CONNINFO:?run through make check (tests/pg run)}"
tmp=$(mktemp -d)

cleanup() {
    local s
    t_cleanup
    pg_up
    for s in once d term outage unreach; do sql "DROP SCHEMA IF EXISTS ldr_${s}_$$ CASCADE"; done
    rm -rf "$tmp"
}
trap cleanup EXIT

rows() { sql "SELECT count(*) FROM ldr_$1_$$.crash_report" || echo -1; }
rows_are() { [ "$(rows "$1")" = "$2" ]; }
rows_above() { [ "$(rows "$1")" -gt "$2" ]; }
queued() { "$TOOL" stats "$tmp/$1.q" | sed 's/events=//'; }
# config NAME LOADER_JSON [CONNINFO [LOG_LEVEL]]: $tmp/NAME.json for queue $tmp/NAME.q.
config() {
    cat >"$tmp/$1.json" <<EOF
{"queue": {"path": "$tmp/$1.q", "max_bytes": 4294967296, "id": "$1_$$", "sync": false},
 "database": {"conninfo": "${3:-$DP_PG_CONNINFO}", "schema": "ldr_$1_$$"},
 "loader": {$2},
 "log": {"level": "${4:-info}"}}
EOF
}
start_loader() { # start_loader NAME [ENV...]: in the background ($pid), log in $tmp/NAME.log
    local name=$1
    shift
    start_bg "$tmp/$name.log" env "$@" "$BIN/datapipe-loader" -c "$tmp/$name.json"
    pid=$T_LAST_PID
}
runs() { grep -c 'run finished' "$tmp/$1.log"; } # runs NAME: runs the loader logged

# --- --once drains every type and exits 0 ----------------------------------------------------
config once '"batch_rows": 1000, "workers": 2'
"$TOOL" fill "$tmp/once.q" crash_report 5000 >/dev/null
"$TOOL" fill "$tmp/once.q" rejected 10 >/dev/null
"$TOOL" fill "$tmp/once.q" product 300 >/dev/null
"$TOOL" fill "$tmp/once.q" data_sample 20 1000 >/dev/null
"$BIN/datapipe-loader" -c "$tmp/once.json" --once >"$tmp/once.log" 2>&1
eq "--once exit status" 0 $?
eq "--once empties the queue" 0 "$(queued once)"
eq "--once crash_report rows" 5000 "$(rows once)"
eq "--once product rows" 300 "$(sql "SELECT count(*) FROM ldr_once_$$.product")"
eq "--once data_sample rows" 20 "$(sql "SELECT count(*) FROM ldr_once_$$.data_sample")"
eq "--once dead letters" 10 "$(sql "SELECT count(*) FROM ldr_once_$$.dead_letter \
    WHERE stage = 'ingest' AND queue_id = 'once_$$'")"
has_file "--once logs the run" "run finished events=5330 loaded=5320 dead_letters=10" "$tmp/once.log"
eq "--once metrics" 5000 "$("$TOOL" meta "$tmp/once.q" loader.loaded.crash_report)"

# --- the queue directory recreated under the same queue.id: refuse, delete nothing ----------
rm -rf "$tmp/once.q"
"$TOOL" fill "$tmp/once.q" crash_report 100 >/dev/null
"$BIN/datapipe-loader" -c "$tmp/once.json" --once >"$tmp/reused.log" 2>&1
eq "a recreated queue with a used queue.id: exit 78" 78 $?
has_file "it says why" "this queue does not own its queue.id" "$tmp/reused.log"
eq "the recreated queue keeps all its events" 100 "$(queued once)"
eq "nothing of it was loaded" 5000 "$(rows once)"
"$BIN/datapipe-loader" --help >"$tmp/help.txt"
has_file "--help documents --adopt-queue" "--adopt-queue" "$tmp/help.txt"
has_file "--help documents exit status 78" "Exit status 78" "$tmp/help.txt"
"$BIN/datapipe-loader" -c "$tmp/once.json" --once --adopt-queue >/dev/null 2>"$tmp/both.log"
eq "--adopt-queue with --once: a usage error" 2 $?
has_file "--adopt-queue with --once says so" "exclude each other" "$tmp/both.log"
eq "... and changes nothing" 100 "$(queued once)"

# --- a daemon: lock, schedule, USR1, HUP, sd_notify, TERM when idle --------------------------
config d '"interval_s": 3600, "min_interval_s": 0, "high_water": 1000, "batch_rows": 500'
start_bg "$tmp/notify.log" "$TOOL" notify-listen "$tmp/notify.sock" "$tmp/notify.txt"
wait_until 10 "the sd_notify listener is bound" test -S "$tmp/notify.sock"
start_loader d NOTIFY_SOCKET="$tmp/notify.sock" WATCHDOG_USEC=1000000
dpid=$pid
wait_until 30 "daemon sends READY=1" grep -q '^READY=1' "$tmp/notify.txt"
"$BIN/datapipe-loader" -c "$tmp/d.json" --once >"$tmp/second.log" 2>&1
eq "a second loader on the queue exits 1" 1 $?
has_file "a second loader says why" "another datapipe-loader is already running on this queue" \
    "$tmp/second.log"

# Below high water nothing runs (interval 3600); above it a run starts at the schedule's next
# look (min_interval_s 0). The start's own run (of an empty queue) first: from then on only
# the schedule starts runs.
first_run_done() { [ "$("$TOOL" meta "$tmp/d.q" loader.last_run_end_us)" -gt 0 ]; }
wait_until 30 "the daemon's first run finished" first_run_done
# That run found the queue empty: an idle loader writes no line a run at info (the per-minute
# summary counts it).
ok "a run that moved nothing is not logged at info" bash -c "! grep -q 'run finished' '$tmp/d.log'"
runs0=$(runs d)
"$TOOL" fill "$tmp/d.q" crash_report 500 >/dev/null
# looked_at_500: STATUS= showed the 500 events queued and the loader idle, and two more ticks
# followed. A tick sends WATCHDOG=1, then looks at the schedule, then sends STATUS= if it
# changed: so the schedule has since looked at the 500 events at least once.
looked_at_500() {
    awk '/^STATUS=queue 500 events; idle/ {seen = 1} seen && /^WATCHDOG=1/ {n++}
         END {exit !(n >= 2)}' "$tmp/notify.txt"
}
wait_until 30 "the daemon looked at its schedule with 500 events queued" looked_at_500
eq "below high water: no run (no row loaded)" 0 "$(rows d)"
eq "below high water: no run (the 500 events still queued)" 500 "$(queued d)"
eq "below high water: no run (none logged)" "$runs0" "$(runs d)"
"$TOOL" fill "$tmp/d.q" crash_report 1000 >/dev/null
wait_until 30 "above high water: a run loads all 1500" rows_are d 1500
# Had a run started below high water, this one would have found only 1000 events.
wait_until 30 "one run took all 1500: none ran below high water" \
    grep -q 'run finished events=1500 ' "$tmp/d.log"
eq "exactly one run since the 500 were queued" $((runs0 + 1)) "$(runs d)"
eq "the run emptied the queue" 0 "$(queued d)"

"$TOOL" fill "$tmp/d.q" crash_report 10 >/dev/null
kill -USR1 "$dpid"
wait_until 30 "SIGUSR1 forces a run" rows_are d 1510
has_file "SIGUSR1 is logged" "run requested signal=USR1" "$tmp/d.log"

reload='"interval_s": 1800, "min_interval_s": 0, "high_water": 1000, "batch_rows": 500'
config d "$reload, \"workers\": 3" "$DP_PG_CONNINFO" debug
kill -HUP "$dpid"
wait_until 20 "SIGHUP reloads" grep -q "configuration reloaded" "$tmp/d.log"
has_file "SIGHUP applies the schedule" "loader.interval_s 3600 -> 1800" "$tmp/d.log"
has_file "SIGHUP applies log.level" "log info/text -> debug/text" "$tmp/d.log"
has_file "SIGHUP names what needs a restart" "needs_restart=loader.workers" "$tmp/d.log"
has_file "SIGHUP warns as the server does" \
    "warn changed settings need a restart daemon=datapipe-loader settings=loader.workers" "$tmp/d.log"
echo '{"loader": {"interval_s": "x"}}' >"$tmp/d.json"
kill -HUP "$dpid"
wait_until 20 "SIGHUP with a bad file: logged in the server's words" \
    grep -q 'error configuration reload failed: keeping the running one errors=' "$tmp/d.log"
ok "SIGHUP with a bad file keeps running" kill -0 "$dpid"
ok "daemon sends STATUS=" grep -q '^STATUS=queue [0-9]* events; ' "$tmp/notify.txt"
ok "daemon sends WATCHDOG=1" grep -q '^WATCHDOG=1' "$tmp/notify.txt"
kill -TERM "$dpid"
wait "$dpid"
eq "SIGTERM when idle exits 0" 0 $?
ok "daemon sends STOPPING=1" grep -q '^STOPPING=1' "$tmp/notify.txt"

# --- SIGTERM during a drain: what committed is gone from the queue, nothing twice ------------
config term '"interval_s": 3600, "batch_rows": 1000, "workers": 2'
"$TOOL" fill "$tmp/term.q" crash_report 300000 >/dev/null
start_loader term
wait_until 30 "drain started" rows_above term 0
kill -TERM "$pid"
wait "$pid"
eq "SIGTERM during a drain exits 0" 0 $?
loaded=$(rows term)
eq "rows loaded + rows queued = all" 300000 $((loaded + $(queued term)))
eq "no row twice" "$loaded" "$(sql "SELECT count(DISTINCT id) FROM ldr_term_$$.crash_report")"
"$BIN/datapipe-loader" -c "$tmp/term.json" --once >>"$tmp/term.log" 2>&1
eq "--once after SIGTERM finishes the drain" 300000 "$(rows term)"

# --- PostgreSQL outage in the middle of a drain ----------------------------------------------
config outage '"interval_s": 3600, "batch_rows": 1000, "workers": 2'
"$TOOL" fill "$tmp/outage.q" crash_report 300000 >/dev/null
start_loader outage
opid=$pid
wait_until 30 "outage: drain started" rows_above outage 0
pg_down
at_stop=$(queued outage)
wait_until 60 "outage: the loader met it and backs off (logged)" \
    grep -q "backing off after a failure" "$tmp/outage.log"
pg_up
wait_until 60 "outage: PostgreSQL back" rows_above outage -1
wait_until 120 "outage: every event loaded" rows_are outage 300000
ok "outage: stopped mid-drain" [ "$at_stop" -gt 0 ]
eq "outage: no event twice" 300000 "$(sql "SELECT count(DISTINCT id) FROM ldr_outage_$$.crash_report")"
queue_empty() { [ "$(queued "$1")" = 0 ]; }
wait_until 30 "outage: queue emptied" queue_empty outage
ok "outage: the loader lived through it" kill -0 "$opid"
kill -TERM "$opid"
wait "$opid"
eq "outage: SIGTERM exits 0" 0 $?

# --- --once gives up on a PostgreSQL that stays unreachable ----------------------------------
config unreach '"batch_rows": 100' "host=$tmp/no-such-dir port=1"
"$TOOL" fill "$tmp/unreach.q" crash_report 10 >/dev/null
"$BIN/datapipe-loader" -c "$tmp/unreach.json" --once >"$tmp/unreach.log" 2>&1
eq "--once with PostgreSQL unreachable exits 1" 1 $?
has_file "--once says it gave up" "giving up after repeated failures" "$tmp/unreach.log"
eq "--once unreachable keeps every event" 10 "$(queued unreach)"

t_done loader
