#!/usr/bin/env bash
# test_loader.sh - datapipe-loader as a process against the harness's PostgreSQL: --once,
# one loader per queue, the high-water schedule, SIGUSR1, SIGHUP, SIGTERM (idle and during a
# drain), sd_notify (READY, STATUS, WATCHDOG), a PostgreSQL outage (pg_ctl stop -m
# immediate in the middle of a drain) and --once giving up on an unreachable PostgreSQL.
set -uo pipefail

BIN=${DP_BIN:-bin}
BUILD=${DP_BUILD:-build}
TOOL=$BUILD/tests/tool_loader
: "${DP_PG_CONNINFO:?run through make check (tests/pg run)}"
PSQL=$DP_PG_BINDIR/psql
tmp=$(mktemp -d)
pids=()
pass=0
fail=0

as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u "$DP_PG_OWNER" -- "$@"; else "$@"; fi; }
pg_down() { as_owner "$DP_PG_BINDIR/pg_ctl" -D "$DP_PG_DIR/data" -m immediate -w stop >/dev/null; }
# restart reuses the options the harness started the cluster with (postmaster.opts).
pg_up() {
    [ -f "$DP_PG_DIR/data/postmaster.pid" ] && return 0
    as_owner "$DP_PG_BINDIR/pg_ctl" -D "$DP_PG_DIR/data" -l "$DP_PG_DIR/server.log" -w -t 60 \
        restart >/dev/null 2>&1
}
sql() { "$PSQL" "$DP_PG_CONNINFO" -Atqc "$1" 2>/dev/null; }

cleanup() {
    local p
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
    wait 2>/dev/null
    pg_up
    for s in once d term outage unreach; do sql "DROP SCHEMA IF EXISTS ldr_${s}_$$ CASCADE"; done
    rm -rf "$tmp"
}
trap cleanup EXIT

ok() { # ok NAME CMD...
    local name=$1
    shift
    if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $name" >&2; fi
}
eq() { # eq NAME WANT GOT
    if [ "$2" = "$3" ]; then pass=$((pass + 1)); else
        fail=$((fail + 1)); echo "FAIL: $1: want [$2] got [$3]" >&2; fi
}
has() { # has NAME NEEDLE FILE
    if grep -qF -- "$2" "$3"; then pass=$((pass + 1)); else
        fail=$((fail + 1)); echo "FAIL: $1: [$2] not in $3:" >&2; tail -5 "$3" >&2; fi
}
wait_for() { # wait_for SECONDS CMD...: until CMD succeeds
    local end=$((SECONDS + $1))
    shift
    until "$@"; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.05
    done
}
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
start_loader() { # start_loader NAME [ENV...]: in the background, log in $tmp/NAME.log
    local name=$1
    shift
    env "$@" "$BIN/datapipe-loader" -c "$tmp/$name.json" >>"$tmp/$name.log" 2>&1 &
    pid=$!
    pids+=("$pid")
}

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
has "--once logs the run" "run finished events=5330 loaded=5320 dead_letters=10" "$tmp/once.log"
eq "--once metrics" 5000 "$("$TOOL" meta "$tmp/once.q" loader.loaded.crash_report)"

# --- the queue directory recreated under the same queue.id: refuse, delete nothing ----------
rm -rf "$tmp/once.q"
"$TOOL" fill "$tmp/once.q" crash_report 100 >/dev/null
"$BIN/datapipe-loader" -c "$tmp/once.json" --once >"$tmp/reused.log" 2>&1
eq "a recreated queue with a used queue.id: exit 1" 1 $?
has "it says why" "another queue has this queue.id" "$tmp/reused.log"
eq "the recreated queue keeps all its events" 100 "$(queued once)"
eq "nothing of it was loaded" 5000 "$(rows once)"

# --- a daemon: lock, schedule, USR1, HUP, sd_notify, TERM when idle --------------------------
config d '"interval_s": 3600, "min_interval_s": 2, "high_water": 1000, "batch_rows": 500'
"$TOOL" notify-listen "$tmp/notify.sock" "$tmp/notify.txt" &
pids+=("$!")
wait_for 10 test -S "$tmp/notify.sock"
start_loader d NOTIFY_SOCKET="$tmp/notify.sock" WATCHDOG_USEC=1000000
dpid=$pid
ok "daemon sends READY=1" wait_for 30 grep -q '^READY=1' "$tmp/notify.txt"
"$BIN/datapipe-loader" -c "$tmp/d.json" --once >"$tmp/second.log" 2>&1
eq "a second loader on the queue exits 1" 1 $?
has "a second loader says why" "another datapipe-loader is already running on this queue" \
    "$tmp/second.log"

# Below high water nothing runs (interval 3600); above it a run follows within min_interval.
"$TOOL" fill "$tmp/d.q" crash_report 500 >/dev/null
sleep 3
eq "below high water: no run" 0 "$(rows d)"
"$TOOL" fill "$tmp/d.q" crash_report 1000 >/dev/null
ok "above high water: a run loads all 1500" wait_for 30 rows_are d 1500
eq "the run emptied the queue" 0 "$(queued d)"

"$TOOL" fill "$tmp/d.q" crash_report 10 >/dev/null
kill -USR1 "$dpid"
ok "SIGUSR1 forces a run" wait_for 30 rows_are d 1510
has "SIGUSR1 is logged" "run requested signal=USR1" "$tmp/d.log"

reload='"interval_s": 1800, "min_interval_s": 2, "high_water": 1000, "batch_rows": 500'
config d "$reload, \"workers\": 3" "$DP_PG_CONNINFO" debug
kill -HUP "$dpid"
ok "SIGHUP reloads" wait_for 20 grep -q "configuration reloaded" "$tmp/d.log"
has "SIGHUP applies the schedule" "loader.interval_s 3600 -> 1800" "$tmp/d.log"
has "SIGHUP applies log.level" "log info/text -> debug/text" "$tmp/d.log"
has "SIGHUP names what needs a restart" "needs_restart=loader.workers" "$tmp/d.log"
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
ok "drain started" wait_for 30 rows_above term 0
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
ok "outage: drain started" wait_for 30 rows_above outage 0
pg_down
at_stop=$(queued outage)
sleep 3
pg_up
ok "outage: PostgreSQL back" wait_for 60 rows_above outage -1
ok "outage: every event loaded" wait_for 120 rows_are outage 300000
ok "outage: stopped mid-drain" [ "$at_stop" -gt 0 ]
eq "outage: no event twice" 300000 "$(sql "SELECT count(DISTINCT id) FROM ldr_outage_$$.crash_report")"
ok "outage: queue emptied" wait_for 30 test "$(queued outage)" = 0
has "outage: back-off in the log" "backing off after a failure" "$tmp/outage.log"
ok "outage: the loader lived through it" kill -0 "$opid"
kill -TERM "$opid"
wait "$opid"
eq "outage: SIGTERM exits 0" 0 $?

# --- --once gives up on a PostgreSQL that stays unreachable ----------------------------------
config unreach '"batch_rows": 100' "host=$tmp/no-such-dir port=1"
"$TOOL" fill "$tmp/unreach.q" crash_report 10 >/dev/null
"$BIN/datapipe-loader" -c "$tmp/unreach.json" --once >"$tmp/unreach.log" 2>&1
eq "--once with PostgreSQL unreachable exits 1" 1 $?
has "--once says it gave up" "giving up after repeated failures" "$tmp/unreach.log"
eq "--once unreachable keeps every event" 10 "$(queued unreach)"

echo "loader: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
