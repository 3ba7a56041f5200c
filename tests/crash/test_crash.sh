#!/usr/bin/env bash
# tests/crash/test_crash.sh [STATES] - what a power cut can leave of the queue: runs
# crash_driver under the recording shim, then crash_explore over STATES crash states (default
# 2000, and with the rest about a minute and a half; make crashtest: 100000), expecting 0
# violations. Then a queue a power cut left (one state from the middle of that run) recovered
# and used on, STATES/5 states more. Then two planted bugs, each of which the oracle must
# catch: acknowledgements before the data is durable (the queue opened without sync) and
# directory entries never made durable (the shim drops directory fsyncs, the queue as it was
# before it synced them).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1

BUILD=${DP_BUILD:-build}
STATES=${1:-2000}
RECOVER_STATES=$((STATES / 5 > 1000 ? STATES / 5 : 1000))
PLANT_STATES=600
CRASH="$BUILD/tests/crash"
base=${TMPDIR:-/tmp}
[ -d /dev/shm ] && [ -w /dev/shm ] && base=/dev/shm   # page-sized writes by the thousand
work=$(mktemp -d "$base/dp-crash.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
# The shim is preloaded before a sanitizer's runtime (make check SANITIZE=1).
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"

fail=0
check() { # NAME CONDITION-RESULT MESSAGE
    if [ "$2" = 0 ]; then echo "ok - $1"; else echo "not ok - $1: $3"; fail=1; fi
}

# record NAME [nosync|recover] [DROP-DIRSYNC]: run the driver under the shim into $work/NAME
# (recover: on what $work/NAME/root already holds, recorded as durable first)
record() {
    local name=$1 mode=${2:-} drop=${3:-0} snap=0
    [ "$mode" = recover ] && snap=1
    mkdir -p "$work/$name/root" "$work/$name/work"
    env DP_CRASH_ROOT="$work/$name/root" DP_CRASH_LOG="$work/$name/log" \
        DP_CRASH_DROP_DIRSYNC="$drop" DP_CRASH_SNAPSHOT="$snap" \
        LD_PRELOAD="$PWD/$CRASH/crash_shim.so" \
        "$CRASH/crash_driver" "$work/$name/root" ${mode:+"$mode"} >"$work/$name/driver.out" 2>&1
}

# 1. The queue as it is: every state passes.
record real
check "driver ran" $? "$(cat "$work/real/driver.out")"
"$CRASH/crash_explore" "$work/real/log" "$work/real/work" "$STATES" >"$work/real/out" 2>&1
rc=$?
summary=$(tail -n 1 "$work/real/out")
echo "# $summary"
check "no violation in $STATES states" $rc "$(grep -m 20 violation "$work/real/out")"
explored=$(sed -n 's/.* \([0-9]*\) states explored.*/\1/p' <<<"$summary")
[ "${explored:-0}" -ge "$((STATES * 9 / 10))" ]
check "at least 90% of $STATES states explored (got ${explored:-0})" $? "$summary"
grep -q ' 0 violations' <<<"$summary"
check "the summary counts 0 violations" $? "$summary"
# Refused only during the fresh queue's first open, before anything was promised.
grep -q '(0 after an open had returned)' <<<"$summary"
check "no state refused once an open had returned" $? "$summary"

# 2. Recovery: a state from the middle of that run, opened and used on (appends from threads,
# deletes, a reopen); what recovery showed must stay, and everything above holds again.
points=$(sed -n 's/^crash_explore: \([0-9]*\) crash points.*/\1/p' <<<"$summary")
mkdir -p "$work/recover"
"$CRASH/crash_explore" --save "$(( ${points:-2} / 2 ))" "$work/real/log" "$work/recover/root"
check "a crash state saved for recovery" $? "crash point $(( ${points:-2} / 2 ))"
record recover recover
check "driver recovered it and went on" $? "$(cat "$work/recover/driver.out")"
"$CRASH/crash_explore" "$work/recover/log" "$work/recover/work" "$RECOVER_STATES" \
    >"$work/recover/out" 2>&1
rc=$?
echo "# after recovery: $(tail -n 1 "$work/recover/out")"
check "no violation in $RECOVER_STATES states after recovery" $rc \
    "$(grep -m 20 violation "$work/recover/out")"
recovered=$(sed -n 's/.* \([0-9]*\) states explored.*/\1/p' <<<"$(tail -n 1 "$work/recover/out")")
echo "# crash states explored in all: $(( ${explored:-0} + ${recovered:-0} ))"

# 3. Planted: acknowledged before durable. Acknowledged events must be found lost.
record nosync nosync
check "driver ran without sync" $? "$(cat "$work/nosync/driver.out")"
"$CRASH/crash_explore" "$work/nosync/log" "$work/nosync/work" "$PLANT_STATES" \
    >"$work/nosync/out" 2>&1
rc=$?
echo "# planted nosync: $(tail -n 1 "$work/nosync/out")"
[ "$rc" = 1 ] && grep -q 'violation: event [0-9]* acknowledged as seq [0-9]* is lost' \
    "$work/nosync/out"
check "the oracle finds acknowledged events lost when commits do not sync" $? \
    "exit $rc: $(tail -n 3 "$work/nosync/out")"

# 4. Planted: directory fsyncs dropped. A power cut then takes the queue's files away and the
# queue reopens as a new, empty one: another instance id, the acknowledged events gone.
record nodirsync "" 1
check "driver ran with directory fsyncs dropped" $? "$(cat "$work/nodirsync/driver.out")"
"$CRASH/crash_explore" "$work/nodirsync/log" "$work/nodirsync/work" "$PLANT_STATES" \
    >"$work/nodirsync/out" 2>&1
rc=$?
echo "# planted dropped directory fsyncs: $(tail -n 1 "$work/nodirsync/out")"
[ "$rc" = 1 ] && grep -q 'violation: instance id [0-9a-f]*, was [0-9a-f]*' \
    "$work/nodirsync/out" && grep -q 'is lost' "$work/nodirsync/out"
check "the oracle finds a queue reopened empty when directories are not synced" $? \
    "exit $rc: $(tail -n 3 "$work/nodirsync/out")"

exit $fail
