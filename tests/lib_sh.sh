# lib_sh.sh - helpers sourced by the shell tests: checks with counts, free
# ports, starting and stopping a daemon by PID. Test code only.
# shellcheck shell=bash

T_PASS=0
T_FAIL=0
T_PIDS=()
BIN=${DP_BIN:-bin}
BUILD=${DP_BUILD:-build}

# ok NAME CMD...: a check that passes when CMD succeeds.
ok() {
    local name=$1
    shift
    if "$@"; then
        T_PASS=$((T_PASS + 1))
    else
        T_FAIL=$((T_FAIL + 1))
        echo "FAIL: $name" >&2
    fi
}

# eq NAME WANT GOT
eq() {
    if [ "$2" = "$3" ]; then
        T_PASS=$((T_PASS + 1))
    else
        T_FAIL=$((T_FAIL + 1))
        echo "FAIL: $1: want [$2] got [$3]" >&2
    fi
}

# has NAME NEEDLE HAYSTACK
has() {
    if [[ "$3" == *"$2"* ]]; then
        T_PASS=$((T_PASS + 1))
    else
        T_FAIL=$((T_FAIL + 1))
        echo "FAIL: $1: [$2] not in [$3]" >&2
    fi
}

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

# wait_http URL [SECONDS]: until the URL answers anything.
wait_http() {
    local i
    for i in $(seq 1 $((${2:-10} * 20))); do
        curl -s -o /dev/null -k "$1" && return 0
        sleep 0.05
    done
    return 1
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
