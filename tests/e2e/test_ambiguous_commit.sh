#!/usr/bin/env bash
# test_ambiguous_commit.sh - the loader's connection broken where it cannot know what
# PostgreSQL did, for real, through tests/tools/cut_proxy.c between the loader and the cluster:
#   after:  a batch's COMMIT reached PostgreSQL and committed, its answer was cut off;
#   before: the connection died just before the COMMIT went (PostgreSQL rolls back);
#   copy:   the backend was killed with pg_terminate_backend in the middle of the COPY.
# At least CUTS (20) of each; after each phase every acknowledged event is in PostgreSQL
# exactly once (counted by id against the acknowledged ids), the queue drained, no dead letter.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
. tests/lib/lib_e2e.sh

CUTS=${CUTS:-20}
PER_CONN=${PER_CONN:-3000}
e2e_setup ambiguous_commit
e2e_config "" '"interval_s": 1, "min_interval_s": 0, "high_water": 1, "batch_rows": 100'
PROXY=$BUILD/tests/tools/cut_proxy
# The cluster listens on a unix socket only: host= is its directory.
pg_host=$(sed -n 's/.*host=\([^ ]*\).*/\1/p' <<<"$DP_PG_CONNINFO")
pg_port=$(sed -n 's/.*port=\([0-9]*\).*/\1/p' <<<"$DP_PG_CONNINFO")
SOCK=$pg_host/.s.PGSQL.$pg_port
PPORT=$(free_port)
# The loader's configuration: the same, but PostgreSQL through the proxy.
LCFG=$DIR/cfg_loader.json
PCONN="host=127.0.0.1 port=$PPORT user=postgres dbname=postgres sslmode=disable gssencmode=disable"
sed "s|\"conninfo\": \"[^\"]*\"|\"conninfo\": \"$PCONN\"|" "$CFG" >"$LCFG"
has "the loader's configuration goes through the proxy" "port=$PPORT" "$(cat "$LCFG")"

cuts_in() { grep -c "$1" "$DIR/proxy_$2.log" 2>/dev/null; }
enough_cuts() { [ "$(cuts_in "$1" "$2")" -ge "$CUTS" ]; }

start_server
: >"$DIR/ack"
base=100000000
for mode in ${MODES:-after before copy}; do
    post_base=$base
    base=$((base + 100000000))
    "$CLIENT" -p "$PORT" -c 2 -n "$PER_CONN" -d 120 -t crash -B "$post_base" -o "$DIR/ack_$mode" \
        -S "$DIR/ack_$mode.sent" >>"$DIR/client.out" 2>>"$DIR/client.err"
    eq "$mode: all acknowledged" $((2 * PER_CONN)) "$(wc -l <"$DIR/ack_$mode")"
    cat "$DIR/ack_$mode" >>"$DIR/ack"
    cat "$DIR/ack_$mode.sent" >>"$DIR/sent"
    # Every second batch is cut, up to 24 times: the others make progress in between.
    start_bg "$DIR/proxy_$mode.out" "$PROXY" -l "$PPORT" -u "$SOCK" -m "$mode" -e 2 -n 24 \
        -o "$DIR/proxy_$mode.log"
    PXPID=$T_LAST_PID
    wait_until 10 "the proxy listens" grep -q listening "$DIR/proxy_$mode.log"
    start_bg "$DIR/loader_$mode.log" "$BIN/datapipe-loader" -c "$LCFG"
    LPID=$T_LAST_PID
    if [ "$mode" = copy ]; then
        # Terminate each backend the proxy holds in the middle of its COPY.
        done_n=0
        t_end=$((SECONDS + 240))
        while [ "$done_n" -lt 24 ] && [ "$SECONDS" -lt "$t_end" ] && ! gone "$LPID"; do
            held=$(sed -n 's/^hold pid=//p' "$DIR/proxy_copy.log" | tail -n +$((done_n + 1)))
            for pid in $held; do
                [ "$(sql "SELECT pg_terminate_backend($pid)")" = t ] &&
                    echo "$pid" >>"$DIR/terminated"
                done_n=$((done_n + 1))
            done
            queue_empty && break
            sleep 0.1
        done
        terminated=$(wc -l <"$DIR/terminated" 2>/dev/null || echo 0)
        echo "ambiguous_commit: copy: $terminated backends terminated mid-COPY"
        ok "copy: at least $CUTS backends terminated mid-COPY ($terminated)" \
            [ "$terminated" -ge "$CUTS" ]
    else
        wait_until 240 "$mode: $CUTS cuts" enough_cuts "$mode-commit" "$mode"
    fi
    wait_until 240 "$mode: the loader drains the queue" queue_empty
    stop_pid "$LPID"
    eq "$mode: the loader stops cleanly" 0 "$T_RC"
    stop_pid "$PXPID"
    n=$(cuts_in "cut\|hold" "$mode")
    echo "ambiguous_commit: $mode: $n cuts"
    ok "$mode: at least $CUTS cuts ($n)" [ "$n" -ge "$CUTS" ]
    if [ "$mode" = after ]; then
        # Each answer lost after a COMMIT: the loader found its row and loaded nothing again.
        found=$(grep -c "batch had committed before its connection was lost" \
            "$DIR/loader_after.log")
        ok "after: the loader found the committed batch in loader_batches ($found times)" \
            [ "$found" -ge "$CUTS" ]
    fi
    e2e_verify "$DIR/ack" "$DIR/sent"
done
t_done test_ambiguous_commit
