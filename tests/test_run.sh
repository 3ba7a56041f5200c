#!/usr/bin/env bash
# test_run.sh - what `make run` runs (tests/run-demo), as a newcomer would use
# it: start it in the background, run the README's three curl examples, see
# the rows in PostgreSQL, stop it with SIGINT (all three processes end), then
# start it again on the same folder (reused) and stop it.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
. tests/lib_sh.sh
TMP=$(mktemp -d)
chmod 755 "$TMP"
trap 't_cleanup; tests/pg stop "$TMP/run" >/dev/null 2>&1; rm -rf "$TMP" "$(cat "$TMP/run/pg/pgbase" 2>/dev/null)"' EXIT
PORT=$(free_port)
URL=http://127.0.0.1:$PORT

demo() {
    DP_RUN_DIR=$TMP/run DP_PORT=$PORT setsid tests/run-demo >"$TMP/demo.out" 2>&1 &
    DEMO=$!
    T_PIDS+=("$DEMO")
    for _ in $(seq 1 300); do
        grep -q 'Ctrl-C stops' "$TMP/demo.out" && break
        sleep 0.1
    done
    wait_until 30 "the demo answers /healthz" http_answers "$URL/healthz" || cat "$TMP/demo.out"
}

demo
ok "demo prints the URL" grep -q "datapipe is running: $URL" "$TMP/demo.out"
ok "demo prints the psql line" grep -q "psql \"host=" "$TMP/demo.out"
# The three curl examples exactly as printed.
grep '^  curl ' "$TMP/demo.out" >"$TMP/examples"
eq "three curl examples" 3 "$(wc -l <"$TMP/examples")"
while read -r line; do
    out=$(eval "${line/curl /curl -s -o /dev/null -w %\{http_code\} }")
    case "$out" in 20?) ok "example answers 2xx ($out): $line" true ;; *) ok "example answers 2xx ($out): $line" false ;; esac
done <"$TMP/examples"
PSQL=$(sed -n 's/^  \(psql .*\)$/\1/p' "$TMP/demo.out")
rows=""
for _ in $(seq 1 60); do
    rows=$(eval "${PSQL/psql /psql -At }" 2>/dev/null | wc -l)
    [ "$rows" -ge 3 ] && break
    sleep 0.5
done
eq "the psql line shows the three crash_report rows" 3 "$rows"
CONN=$(sed -n 's/^  psql "\(.*\)" -c.*/\1/p' "$TMP/demo.out")
ad=$(psql "$CONN" -At -c 'SELECT count(*) FROM datapipe.ad_event' 2>/dev/null)
eq "the /submit example loaded" 1 "$ad"
kill -INT -- "-$DEMO"
wait "$DEMO"
ok "demo says stopped" grep -q 'run-demo: stopped' "$TMP/demo.out"
ok "no server left" bash -c "! pgrep -f 'datapipe-server' -s $DEMO >/dev/null"
ok "PostgreSQL stopped" [ ! -f "$(cat "$TMP/run/pg/pgbase" 2>/dev/null || echo "$TMP/run/pg")/data/postmaster.pid" ]

demo
ok "second start reuses run/" grep -q "datapipe is running" "$TMP/demo.out"
eq "same conninfo after a restart" "$CONN" "$(sed -n 's/^  psql "\(.*\)" -c.*/\1/p' "$TMP/demo.out")"
n=$(psql "$CONN" -At -c 'SELECT count(*) FROM datapipe.crash_report' 2>/dev/null)
eq "rows kept across restarts" 3 "$n"
kill -INT -- "-$DEMO"
wait "$DEMO"
ok "second stop" grep -q 'run-demo: stopped' "$TMP/demo.out"

t_done run
