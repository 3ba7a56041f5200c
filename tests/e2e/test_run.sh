#!/usr/bin/env bash
# test_run.sh - what `make run` runs (tests/tools/run-demo), as a newcomer would use
# it: start it in the background, run the three curl examples it prints, see
# the rows in PostgreSQL, try a second `make run` beside it (refused with a
# command that works, which is then run), stop it with SIGINT (all three
# processes end, no "exited" complaint), start it again on the same folder
# (reused, same PostgreSQL port) with an override file turning API keys on.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
TMP=$(mktemp -d)
chmod 755 "$TMP"
cleanup() {
    local d
    t_cleanup
    for d in "$TMP"/run*; do
        [ -d "$d/pg" ] || continue
        tests/pg stop "$d/pg" >/dev/null 2>&1
        rm -rf "$(cat "$d/pg/pgbase" 2>/dev/null)"
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
PORT=$(free_port)
URL=http://127.0.0.1:$PORT

# demo [OUT [URL [ENV...]]]: start a demo in its own session, wait until it serves.
demo() {
    local out=${1:-$TMP/demo.out} url=${2:-$URL}
    shift 2 2>/dev/null || shift $#
    env DP_RUN_DIR="$TMP/run" DP_PORT="$PORT" "$@" setsid tests/tools/run-demo >"$out" 2>&1 &
    DEMO=$!
    T_PIDS+=("$DEMO")
    wait_until 30 "the demo prints 'Ctrl-C stops'" grep -q 'Ctrl-C stops' "$out"
    wait_until 30 "the demo answers $url/healthz" http_answers "$url/healthz" || cat "$out"
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
psql_rows() { [ "$(eval "${PSQL/psql /psql -At }" 2>/dev/null | wc -l)" -ge 3 ]; }
wait_until 30 "the printed psql line shows three rows" psql_rows
eq "the psql line shows the three crash_report rows" 3 "$(eval "${PSQL/psql /psql -At }" | wc -l)"
CONN=$(sed -n 's/^  psql "\(.*\)" -c.*/\1/p' "$TMP/demo.out")
ad=$(psql "$CONN" -At -c 'SELECT count(*) FROM datapipe.ad_event' 2>/dev/null)
eq "the /submit example loaded" 1 "$ad"

# A second `make run` while this one runs: refused, with a command that works.
DP_RUN_DIR=$TMP/run DP_PORT=$PORT tests/tools/run-demo >"$TMP/second.out" 2>&1
eq "a second demo on the same directory exits 1" 1 $?
has "it says why" "$TMP/run is in use by another make run" "$(cat "$TMP/second.out")"
SUGGESTED=$(sed -n 's/.*own directory and port: \(DP_RUN_DIR=.* make run\)$/\1/p' "$TMP/second.out")
has "it suggests its own directory and port" "DP_RUN_DIR=$TMP/run-" "$SUGGESTED"
P2=$(sed -n 's/.*DP_PORT=\([0-9]*\) .*/\1/p' <<<"$SUGGESTED")
eval "exec env ${SUGGESTED/make run/setsid tests/tools/run-demo}" >"$TMP/demo2.out" 2>&1 &
DEMO2=$!
T_PIDS+=("$DEMO2")
wait_until 60 "the second demo answers" http_answers "http://127.0.0.1:$P2/healthz"
wait_until 30 "the second demo prints its examples" grep -q 'Ctrl-C stops' "$TMP/demo2.out"
eq "the suggested command serves a second demo" 200 \
    "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P2/healthz")"
ok "with its own PostgreSQL" bash -c "! grep -q \"$CONN\" '$TMP/demo2.out'"
kill -INT -- "-$DEMO2"
wait "$DEMO2"
ok "the second demo stops" grep -q 'run-demo: stopped' "$TMP/demo2.out"
# Another directory, but the port is taken: the suggested port is free.
DP_RUN_DIR=$TMP/run-other DP_PORT=$PORT tests/tools/run-demo >"$TMP/third.out" 2>&1
eq "a taken port: exit 1" 1 $?
P3=$(sed -n 's/.*is taken; try DP_PORT=\([0-9]*\) make run.*/\1/p' "$TMP/third.out")
has "a taken port: a free one suggested" "port $PORT is taken; try DP_PORT=" "$(cat "$TMP/third.out")"
ok "the suggested port is free" bash -c "! (exec 3<>/dev/tcp/127.0.0.1/${P3:-1}) 2>/dev/null"

kill -INT -- "-$DEMO"
wait "$DEMO"
ok "demo says stopped" grep -q 'run-demo: stopped' "$TMP/demo.out"
ok "Ctrl-C is no news: no 'exited' message" bash -c "! grep -q 'exited' '$TMP/demo.out'"
ok "no server left" bash -c "! pgrep -f 'datapipe-server' -s $DEMO >/dev/null"
ok "PostgreSQL stopped" [ ! -f "$(cat "$TMP/run/pg/pgbase" 2>/dev/null || echo "$TMP/run/pg")/data/postmaster.pid" ]

# An override file in the run directory: API keys on, without hand-running the daemons.
echo '{"server": {"api_keys": ["demo-key"]}}' >"$TMP/run/override.json"
demo
ok "second start reuses run/" grep -q "datapipe is running" "$TMP/demo.out"
ok "it names the override" grep -q "Settings from $TMP/run/override.json are merged" "$TMP/demo.out"
ok "it says API keys are on" grep -q "API keys are on" "$TMP/demo.out"
eq "the override applies: no key, 401" 401 "$(curl -s -o /dev/null -w '%{http_code}' \
    -d '{"event_name": "crash_report","user_id": 1,"timestamp": 1000,"message": "k"}' "$URL/")"
eq "the override applies: the key, 202" 202 "$(curl -s -o /dev/null -w '%{http_code}' \
    -H 'Authorization: Bearer demo-key' \
    -d '{"event_name": "crash_report","user_id": 1,"timestamp": 1000,"message": "k"}' "$URL/")"
echo '{"server": {"api_keys": "nope"}}' >"$TMP/bad-override.json"
DP_RUN_DIR=$TMP/run-bad DP_DEMO_CNF=$TMP/bad-override.json tests/tools/run-demo >"$TMP/bad.out" 2>&1
eq "a broken DP_DEMO_CNF override: exit 2" 2 $?
has "it names the file to fix" "fix $TMP/bad-override.json" "$(cat "$TMP/bad.out")"
eq "same conninfo after a restart" "$CONN" "$(sed -n 's/^  psql "\(.*\)" -c.*/\1/p' "$TMP/demo.out")"
crash_rows() { psql "$CONN" -At -c 'SELECT count(*) FROM datapipe.crash_report' 2>/dev/null; }
four_rows() { [ "$(crash_rows)" -ge 4 ] 2>/dev/null; }
wait_until 30 "four crash_report rows after the restart" four_rows
eq "rows kept across restarts, and the one sent with the key" 4 "$(crash_rows)"
kill -INT -- "-$DEMO"
wait "$DEMO"
ok "second stop" grep -q 'run-demo: stopped' "$TMP/demo.out"

t_done run
