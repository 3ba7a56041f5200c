#!/usr/bin/env bash
# test_concurrency.sh - README's promise of exactly once under concurrency: 256 keep-alive clients post all five
# event types for E2E_CONC_S seconds (default 10; make soak runs 30, shortened to keep
# make check fast: the figure to prove is per-type equality, which holds or breaks within
# seconds at this rate) while the loader drains; then the rows in PostgreSQL equal the
# acknowledged events type by type, and each acknowledged event is there once with its id.
# server.threads is 300: civetweb serves one connection per worker thread, so 256
# concurrent keep-alive connections need at least 256. E2E_CONC_KEYED=1 (make soak): every
# event carries an Idempotency-Key, and every key sent must be in PostgreSQL exactly once.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
. tests/lib/lib_e2e.sh

CONC_S=${E2E_CONC_S:-10}
CONNS=${E2E_CONC_CONNS:-256}
KEYED=()
[ "${E2E_CONC_KEYED:-0}" = 1 ] && KEYED=(-k -x "conc$$")
e2e_setup concurrency
E2E_THREADS=300
e2e_config "" '"interval_s": 1, "min_interval_s": 0, "high_water": 1000, "batch_rows": 10000'
start_server
start_loader
echo "concurrency: $CONNS keep-alive connections x $CONC_S s, all five types, loader draining" \
    "${KEYED:+(keyed)}"
"$CLIENT" -p "$PORT" -c "$CONNS" -d "$CONC_S" -t crash,ad,login,sample,product "${KEYED[@]}" \
    -o "$DIR/ack" -S "$DIR/sent" >"$DIR/client.out" 2>"$DIR/client.err"
eq "client: every answer 202 (no 503, no error)" 0 $?
cat "$DIR/client.out"
has "no request failed" " 503=0 retry_after=0 other=0 io_errors=0 " "$(cat "$DIR/client.out")"
conns=$(sed -n 's/.* connects=\([0-9]*\) .*/\1/p' "$DIR/client.out")
eq "one keep-alive connection per client, never reconnected" "$CONNS" "$conns"
loaded_during=$(sql "SELECT (SELECT count(*) FROM $SCHEMA.crash_report) +
    (SELECT count(*) FROM $SCHEMA.ad_event) + (SELECT count(*) FROM $SCHEMA.user_login) +
    (SELECT count(*) FROM $SCHEMA.data_sample) + (SELECT count(*) FROM $SCHEMA.product)")
wait_until 120 "the loader drained the rest" queue_empty
stop_pid "$LPID"
eq "loader exits 0 on SIGTERM" 0 "$T_RC"
drain
figures=""
for t in crash_report ad_event user_login data_sample product; do
    a=$(sed -n "s/^acked $t=//p" "$DIR/client.out")
    l=$(table_count "$t")
    echo "concurrency: $t acknowledged=$a loaded=$l"
    eq "$t: rows = acknowledged" "$a" "$l"
    figures="$figures $t=$a/$l"
done
e2e_verify "$DIR/ack" "$DIR/sent"
keyfig=()
if [ "${#KEYED[@]}" -gt 0 ]; then
    e2e_verify_keys "$DIR/sent"
    keyfig=(keys_sent="$KEYS_SENT" keys_lost="$KEYS_LOST" keys_duplicated="$KEYS_DUPS")
fi
echo "concurrency: the loader had loaded ${loaded_during:-0} events while the clients were posting"
stop_pid "$SPID"
eq "server exits 0 on SIGTERM" 0 "$T_RC"
# shellcheck disable=SC2086 # $figures holds several NAME=VALUE words
e2e_figures acknowledged="$ACKED" loaded="$LOADED" lost="$LOST" duplicated="$DUPS" \
    conns="$CONNS" seconds_of_load="$CONC_S" keyed="${E2E_CONC_KEYED:-0}" "${keyfig[@]}" $figures \
    "max_latency_ms=$(sed -n 's/.* max_latency_ms=\([0-9.]*\).*/\1/p' "$DIR/client.out")"
t_done test_concurrency
