# lib_sh.sh - the one library every shell test sources: checks with counts (ok, eq, has,
# has_file), the one bounded wait on a condition (wait_until), free ports, processes started
# and stopped by PID, and the harness's PostgreSQL (sql, pg_down, pg_up). Test code only.
# shellcheck shell=bash

T_PASS=0
T_FAIL=0
T_PIDS=()
# shellcheck disable=SC2034 # BIN, BUILD and T_RC are for the scripts that source this
BIN=${DP_BIN:-bin}
# shellcheck disable=SC2034
BUILD=${DP_BUILD:-build}

t_pass() { T_PASS=$((T_PASS + 1)); }
# t_fail MESSAGE: a failed check, named on stderr.
t_fail() {
    T_FAIL=$((T_FAIL + 1))
    echo "FAIL: $1" >&2
}

# ok NAME CMD...: a check that passes when CMD succeeds.
ok() {
    local name=$1
    shift
    if "$@"; then t_pass; else t_fail "$name"; fi
}

# eq NAME WANT GOT
eq() {
    if [ "$2" = "$3" ]; then t_pass; else t_fail "$1: want [$2] got [$3]"; fi
}

# has NAME NEEDLE HAYSTACK: HAYSTACK (a string) contains NEEDLE.
has() {
    if [[ "$3" == *"$2"* ]]; then t_pass; else t_fail "$1: [$2] not in [$3]"; fi
}

# has_file NAME NEEDLE FILE: FILE contains NEEDLE (a fixed string); on failure its last lines.
has_file() {
    if grep -qF -- "$2" "$3" 2>/dev/null; then t_pass; else
        t_fail "$1: [$2] not in $3:"
        tail -5 "$3" >&2
    fi
}

# wait_until SECONDS WHAT CMD...: run CMD until it succeeds (a passed check); if it has not
# within SECONDS, a failed check that says "WHAT: not within SECONDS s", and status 1.
# wait_until --may-time-out SECONDS WHAT CMD...: the same wait for a caller to whom running
# out of time is an answer, not a failure: status 1, nothing counted either way.
wait_until() {
    local soft=0 secs what end
    if [ "$1" = --may-time-out ]; then
        soft=1
        shift
    fi
    secs=$1
    what=$2
    shift 2
    end=$((SECONDS + secs))
    until "$@"; do
        if [ "$SECONDS" -gt "$end" ]; then
            [ "$soft" = 1 ] || t_fail "$what: not within $secs s (waited for: $*)"
            return 1
        fi
        # The polling pace, not a condition: CMD is asked again after it.
        sleep 0.1
    done
    [ "$soft" = 1 ] || t_pass
}

# http_answers URL: the URL answers anything (any HTTP status) within 5 s; for wait_until.
http_answers() { curl -s -o /dev/null -k -m 5 "$1"; }

# gone PID: the process has ended (a child of this shell that ended: wait still gets its
# status); for wait_until.
gone() { ! kill -0 "$1" 2>/dev/null; }

# free_port: a port nothing listens on, below the kernel's ephemeral range, so that no
# client connection (live, or one of thousands in TIME_WAIT after a load test) holds it:
# binding there fails with "Address already in use".
free_port() {
    local p low
    low=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
    [ "${low:-0}" -gt 21000 ] || low=60000
    while :; do
        p=$((20000 + RANDOM % (low - 20000)))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}

# start_bg LOG CMD...: start CMD in the background, remember its PID in T_LAST_PID.
start_bg() {
    local log=$1
    shift
    "$@" >>"$log" 2>&1 &
    T_LAST_PID=$!
    T_PIDS+=("$T_LAST_PID")
}

# stop_pid PID [SIGNAL]: signal it and wait; its exit status goes to T_RC.
# (Not in a $(...) subshell: only this shell can wait for its children.)
stop_pid() {
    kill -"${2:-TERM}" "$1" 2>/dev/null
    T_RC=0
    # shellcheck disable=SC2034 # read by the scripts
    wait "$1" 2>/dev/null || T_RC=$?
}

# Kill whatever a test left running (only our own PIDs).
t_cleanup() {
    local p
    for p in "${T_PIDS[@]}"; do
        kill -KILL "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}

# t_done NAME: print the closing line and exit with the result.
t_done() {
    echo "$1: $T_PASS passed, $T_FAIL failed"
    [ "$T_FAIL" -eq 0 ]
    exit $?
}

# --- the harness's PostgreSQL (tests/pg run sets DP_PG_*) -------------------------------------

# sql QUERY: psql -Atq against the harness's database; errors to /dev/null.
sql() { "${DP_PG_BINDIR:+$DP_PG_BINDIR/}psql" "$DP_PG_CONNINFO" -Atqc "$1" 2>/dev/null; }

as_pg_owner() { if [ "$(id -u)" = 0 ]; then runuser -u "$DP_PG_OWNER" -- "$@"; else "$@"; fi; }
# pg_down: stop the harness's cluster at once (pg_ctl -m immediate), as a crash would.
pg_down() {
    as_pg_owner "$DP_PG_BINDIR/pg_ctl" -D "$DP_PG_DIR/data" -m immediate -w stop >/dev/null
}
# pg_up: start it again with the options the harness started it with (postmaster.opts).
pg_up() {
    [ -f "$DP_PG_DIR/data/postmaster.pid" ] && return 0
    as_pg_owner "$DP_PG_BINDIR/pg_ctl" -D "$DP_PG_DIR/data" -l "$DP_PG_DIR/server.log" -w -t 60 \
        restart >/dev/null 2>&1
}
