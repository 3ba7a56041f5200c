#!/usr/bin/env bash
# test_loader_kill.sh - exactly once (README's promises) end to end: while clients keep posting, the loader is
# killed again and again while it drains: the real datapipe-loader with SIGKILL at random
# moments, and faultloader (the loader with the test fault hook) killing itself right after a
# COMMIT returned and before the queue delete (the window loader_batches must cover), or
# just before a COMMIT. Afterwards every acknowledged event is in PostgreSQL exactly once.
# E2E_LOADER_KILLS, E2E_LOADER_HOOK_KILLS: the kills wanted; E2E_LOADER_KILL_MAX_S: how long
# the rounds may take at most (make soak raises all three).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
. tests/lib/lib_e2e.sh

RANDOM_KILLS=${E2E_LOADER_KILLS:-20}
HOOK_KILLS=${E2E_LOADER_HOOK_KILLS:-8}
MAX_S=${E2E_LOADER_KILL_MAX_S:-90}
e2e_setup loader_kill
# Small batches: many commits per second, so many COMMIT->delete windows to land in.
e2e_config "" '"interval_s": 1, "min_interval_s": 0, "high_water": 1, "batch_rows": 300, "workers": 2'
start_server
echo "loader_kill: 4 connections post mixed events; $RANDOM_KILLS random SIGKILLs of" \
    "datapipe-loader and $HOOK_KILLS fault-hook kills (COMMIT->delete window, before COMMIT)"
"$CLIENT" -p "$PORT" -c 4 -d $((MAX_S + 30)) -r 400 -t crash,ad,login,sample -o "$DIR/ack" \
    -S "$DIR/sent" >"$DIR/client.out" 2>"$DIR/client.err" &
cpid=$!
T_PIDS+=("$cpid")
wait_until 10 "the clients queued over 2000 events" queued_above 2000

random_kills=0   # killed while the queue held events and after a batch of this run committed
hook_kills=0
committed_kills=0
round=0
end=$((SECONDS + MAX_S))
while [ $((random_kills + hook_kills)) -lt $((RANDOM_KILLS + HOOK_KILLS)) ] && [ "$SECONDS" -lt "$end" ]; do
    round=$((round + 1))
    if [ $((round % 3)) = 0 ] && [ "$hook_kills" -lt "$HOOK_KILLS" ]; then
        # Every third round: the fault hook kills the loader at its N-th COMMIT (N = 1..3);
        # three of four times right after the COMMIT, once before it.
        point=committed
        [ $((hook_kills % 4)) = 3 ] && point=commit
        start_loader E2E_DIE="$point:$((hook_kills % 3 + 1))"
        pid=$LPID
        # Wait for the hook's SIGKILL, 15 s at most (a loader that never reaches its N-th
        # COMMIT is not counted; the check on hook kills below says whether enough were).
        if wait_until --may-time-out 15 "the fault hook kills the loader" gone "$pid"; then
            stop_pid "$pid"
        else
            stop_pid "$pid" KILL
            T_RC=timeout
        fi
        if [ "$T_RC" = 137 ]; then
            hook_kills=$((hook_kills + 1))
            [ "$point" = committed ] && committed_kills=$((committed_kills + 1))
        fi
    else
        before=$(sql "SELECT coalesce(max(last_seq), 0) FROM $SCHEMA.loader_batches" || echo 0)
        start_loader
        pid=$LPID
        # A random moment to kill it, 0.3 to 0.9 s after its start (an interval, not a
        # condition: the checks below count only kills that landed mid-drain).
        sleep "$(awk -v r=$((RANDOM % 600 + 300)) 'BEGIN {printf "%.3f", r / 1000}')"
        n=$(queued)
        after=$(sql "SELECT coalesce(max(last_seq), 0) FROM $SCHEMA.loader_batches" || echo 0)
        stop_pid "$pid" KILL
        # Counts when the loader was draining: it had committed in this round, events left.
        if [ "$T_RC" = 137 ] && [ "${n:-0}" -gt 0 ] && [ "${after:-0}" -gt "${before:-0}" ]; then
            random_kills=$((random_kills + 1))
        fi
    fi
done
echo "loader_kill: $round rounds: $random_kills random kills mid-drain, $hook_kills hook kills" \
    "($committed_kills between COMMIT and the queue delete); $(queued) events queued at the end"
ok "at least $RANDOM_KILLS random kills while draining ($random_kills)" [ "$random_kills" -ge "$RANDOM_KILLS" ]
ok "at least $((HOOK_KILLS * 3 / 4)) kills inside COMMIT->delete ($committed_kills)" \
    [ "$committed_kills" -ge $((HOOK_KILLS * 3 / 4)) ]
kill -TERM "$cpid"
wait "$cpid"
eq "client finished without unexpected statuses" 0 $?
cat "$DIR/client.out"
drain
eq "final drain (--once) exits 0" 0 $?
recovered=$(cat "$DIR/loader.log" "$DIR/drain.log" | grep -c 'recovered a batch postgresql already had')
echo "loader_kill: restarted loaders found $recovered batches committed but still queued" \
    "(deleted from the queue, not loaded again)"
ok "each COMMIT->delete kill left a batch that the next loader recovered ($recovered)" \
    [ "$recovered" -ge "$committed_kills" ]
e2e_verify "$DIR/ack" "$DIR/sent"
stop_pid "$SPID"
eq "server exits 0 on SIGTERM" 0 "$T_RC"
e2e_figures acknowledged="$ACKED" loaded="$LOADED" lost="$LOST" duplicated="$DUPS" \
    kills="$((random_kills + hook_kills))" commit_window_kills="$committed_kills" recovered_batches="$recovered"
t_done test_loader_kill
