#!/usr/bin/env bash
# test_ingest_edges.sh - the POST path at its edges over real HTTP: every empty and
# one-element body shape with every key and CloudEvents header (never a crash, never a 5xx),
# a 503 that stored nothing of its body, conflicts filed with the batch's own stamp, the ids
# of a batch answer, CloudEvents keys that cannot collide, ce-* headers with a NUL, a 409 not
# counted as accepted, the CORS preflight, and what open endpoints and --check-config must
# never show (hosts, ports, sockets, user names, passwords).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh

TMP=$(mktemp -d)
trap 't_cleanup; rm -rf "$TMP"' EXIT
QTOOL=$BUILD/tests/tools/qtool

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
    '400 {"status_code":400,"status_message":"no valid event in the body","accepted":0,"rejected":0,"duplicates":0,"ids":[],"errors":[]}' "$r"
r=$(post / '[]' -H 'Idempotency-Key: k1' -H 'Content-Type: application/cloudevents-batch+json')
eq "an empty CloudEvents batch with Idempotency-Key → 400" \
    '400 {"status_code":400,"status_message":"no valid event in the body","accepted":0,"rejected":0,"duplicates":0,"ids":[],"errors":[]}' "$r"
CEV='{"specversion":"1.0","id":"v1","source":"/edge","type":"crash_report","data":'$CR'}'
bodies=('[]' ' [ ] ' '[][]' '[]
[]' '{}' '[{}]' '[[]]' '' ' ' "[$CR]" "$CR" "[[$CR]]" "$CEV" "[$CEV]" "[$CEV][]" "$CEV{}")
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

# --- a 503 stores nothing of its body: [unkeyed A, B conflicting on a key] against a full queue
server full 1048576
r=$(post /v1/events/crash_report '{"user_id":1,"timestamp":2,"message":"first","idempotency_key":"K"}')
has "the key's first event → 202" '202 ' "$r"
payload=$(head -c 20000 /dev/zero | tr '\0' 'x')
code=202
i=0
while [ "$code" = 202 ] && [ $i -lt 100 ]; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -d "{\"user_id\": $i, \"timestamp\": 1, \"message\": \"$payload\"}" "$URL/v1/events/crash_report")
    i=$((i + 1))
done
eq "the queue is full" 503 "$code"
A='{"user_id":7,"timestamp":2,"message":"A"}'
B="{\"user_id\":8,\"timestamp\":2,\"message\":\"$payload\",\"idempotency_key\":\"K\"}"
before=$(queued full)
r=$(post /v1/events/crash_report "[$A, $B]")
eq "[A, B conflicting] against the full queue → 503" \
    '503 {"status_code":503,"status_message":"queue full: retry later"}' "$r"
eq "the 503 stored nothing of its body" "$before" "$(queued full)"
"$QTOOL" "$TMP/full.q" delete 2 1000000
r=$(post /v1/events/crash_report "[$A, $B]")
has "the retry → 202, B filed as a conflict" \
    '202 {"status_code":202,"status_message":"partly accepted","accepted":1,"rejected":1,"duplicates":0,' "$r"
eq "A is stored once" 1 "$("$QTOOL" "$TMP/full.q" dump | grep -c ' crash_report 0 {"user_id":7,')"
eq "B is stored once, rejected (for dead_letter)" 1 "$("$QTOOL" "$TMP/full.q" dump | grep -c ' crash_report 1 {"user_id":8,')"
stop_pid "$SPID"

# --- a conflict filed in a batch is stamped with its own commit: stamps rise with seq
server stamps
r=$(post /v1/events/crash_report '{"user_id":1,"timestamp":2,"message":"first","idempotency_key":"S"}')
has "the key's first event → 202" '202 ' "$r"
workers=()
for w in 1 2 3 4; do
    (
        for k in $(seq 1 60); do
            if [ $((w % 2)) = 0 ]; then
                curl -s -o /dev/null -d "[{\"user_id\":$k,\"timestamp\":2,\"message\":\"a\"},{\"user_id\":$w$k,\"timestamp\":2,\"message\":\"b\",\"idempotency_key\":\"S\"}]" \
                    "$URL/v1/events/crash_report"
            else
                curl -s -o /dev/null -d "{\"user_id\":$w$k,\"timestamp\":2,\"message\":\"c\"}" \
                    "$URL/v1/events/crash_report"
            fi
        done
    ) &
    workers+=($!)
done
wait "${workers[@]}"
"$QTOOL" "$TMP/stamps.q" stamps >"$TMP/stamps"
eq "240 events and 120 filed conflicts queued" 361 "$(wc -l <"$TMP/stamps")"
eq "received_us never decreases with seq" "" "$(awk '$2 < prev {print "seq " $1 ": " $2 " < " prev} {prev = $2}' "$TMP/stamps" | head -3)"

# --- a batch answer names each event's id, in input order
r=$(post /v1/events/crash_report '[{"user_id":1,"timestamp":2,"message":"first","idempotency_key":"S"},{"user_id":"x"},{"user_id":3,"timestamp":2,"message":"n","idempotency_key":"N"},{"user_id":3,"timestamp":2,"message":"n","idempotency_key":"N"},{"user_id":4,"timestamp":2,"message":"other","idempotency_key":"S"},{"user_id":5,"timestamp":2,"message":"plain"}]')
ids=$(jq -c .ids <<<"${r#* }")
first=$(jq -r '.ids[0]' <<<"${r#* }")
new=$(jq -r '.ids[2]' <<<"${r#* }")
plain=$(jq -r '.ids[5]' <<<"${r#* }")
has "a batch answer: accepted, rejected, duplicates" \
    '202 {"status_code":202,"status_message":"partly accepted","accepted":4,"rejected":2,"duplicates":2,"ids":[' "$r"
eq "ids: the first id for a repeat, null for the rejected and the conflict" \
    "[\"$first\",null,\"$new\",\"$new\",null,\"$plain\"]" "$ids"
dump=$("$QTOOL" "$TMP/stamps.q" dump)
has "the new keyed event is stored under its id" "$new crash_report 0 {\"user_id\":3," "$dump"
has "the plain event is stored under its id" "$plain crash_report 0 {\"user_id\":5," "$dump"
eq "a repeat's id is the key's first event's" 1 "$(grep -c "^1 $first crash_report 0 " <<<"$dump")"
r=$(post /v1/events/crash_report '[{"user_id":"x"},{"user_id":"y"}]')
eq "no valid event: every id null" \
    '400 {"status_code":400,"status_message":"no valid event in the body","accepted":0,"rejected":2,"duplicates":0,"ids":[null,null],"errors":[{"index":0,"error":"timestamp: required field missing"},{"index":1,"error":"timestamp: required field missing"}]}' "$r"
r=$(post /v1/events/crash_report '[{"user_id":9,"timestamp":2,"message":"z","idempotency_key":"S"},{"user_id":10,"timestamp":2,"message":"z","idempotency_key":"S"}]')
has "every event conflicts: 409, every id null" \
    '409 {"status_code":409,"status_message":"no event accepted: idempotency_key conflicts","accepted":0,"rejected":2,"duplicates":0,"ids":[null,null],"errors":[' "$r"
stop_pid "$SPID"

# --- a single event's 409 is not counted as accepted
server count
post /v1/events/crash_report '{"user_id":1,"timestamp":2,"message":"one","idempotency_key":"C"}' >/dev/null
r=$(post /v1/events/crash_report '{"user_id":1,"timestamp":2,"message":"two","idempotency_key":"C"}')
has "a conflict → 409" '409 ' "$r"
eq "accepted_total counts the first only" 1 "$(metric 'datapipe_events_accepted_total{type="crash_report"}')"
eq "rejected_total counts the 409" 1 "$(metric 'datapipe_events_rejected_total{type="crash_report"}')"
stop_pid "$SPID"

# --- CloudEvents: keys that cannot collide, no NUL in a ce-* header, one structured object
server ce
CT='Content-Type: application/cloudevents+json'
r1=$(post / '{"specversion":"1.0","id":"c","source":"/a b","type":"crash_report","data":{"user_id":1,"timestamp":2,"message":"one"}}' -H "$CT")
r2=$(post / '{"specversion":"1.0","id":"b c","source":"/a","type":"crash_report","data":{"user_id":2,"timestamp":2,"message":"two"}}' -H "$CT")
has "(/a b, c) → 202" '202 {"status_code":202,"status_message":"accepted","id":"' "$r1"
has "(/a, b c) is another event → 202, not a duplicate" '202 {"status_code":202,"status_message":"accepted","id":"' "$r2"
ok "two ids" [ "$(id_of "$r1")" != "$(id_of "$r2")" ]
eq "both stored" 2 "$(queued ce)"
r=$(post / "$CR" -H 'ce-specversion: 1.0' -H 'ce-id: e%00one' -H 'ce-source: /edge' -H 'ce-type: crash_report')
eq "ce-id with a NUL after decoding → 400" \
    '400 {"status_code":400,"status_message":"id: control character at byte 1"}' "$r"
r=$(post / "$CR" -H 'ce-specversion: 1.0' -H 'ce-id: e%00two' -H 'ce-source: /edge' -H 'ce-type: crash_report')
eq "… and another one is not its repeat" \
    '400 {"status_code":400,"status_message":"id: control character at byte 1"}' "$r"
r=$(post / "$CR" -H 'ce-specversion: 1.0' -H 'ce-id: e1' -H 'ce-source: /x%00y' -H 'ce-type: crash_report')
eq "ce-source with a NUL → 400" \
    '400 {"status_code":400,"status_message":"source: control character at byte 2"}' "$r"
r=$(post / "$CR" -H 'ce-specversion: 1.0' -H 'ce-id: e1' -H 'ce-source: /x' -H 'ce-type: crash_report%00x')
eq "ce-type with a NUL → 400" \
    '400 {"status_code":400,"status_message":"type: control character at byte 12"}' "$r"
r=$(post / "$CR" -H 'ce-specversion: 1.0%00' -H 'ce-id: e1' -H 'ce-source: /x' -H 'ce-type: crash_report')
eq "ce-specversion with a NUL → 400" \
    '400 {"status_code":400,"status_message":"specversion: control character at byte 3"}' "$r"
eq "nothing more stored" 2 "$(queued ce)"
CE1='{"specversion":"1.0","id":"s1","source":"/s","type":"crash_report","data":{"user_id":1,"timestamp":2,"message":"s"}}'
CE2='{"specversion":"1.0","id":"s2","source":"/s","type":"crash_report","data":{"user_id":1,"timestamp":2,"message":"s"}}'
r=$(post / "$CE1$CE2" -H "$CT")
eq "structured mode, two concatenated objects → 400" \
    '400 {"status_code":400,"status_message":"cloudevent: expected one CloudEvent object"}' "$r"
r=$(post / "$CE1
$CE2" -H "$CT")
eq "structured mode, two lines → 400" \
    '400 {"status_code":400,"status_message":"cloudevent: expected one CloudEvent object"}' "$r"
eq "nothing of them stored" 2 "$(queued ce)"
r=$(post / " $CE1
" -H "$CT")
has "one object with whitespace around → 202" '202 ' "$r"
stop_pid "$SPID"

# --- CORS: a browser may send keys and CloudEvents headers
server cors 67108864 ', "cors_origins": ["https://app.example"]'
r=$(curl -s -D - -o /dev/null -X OPTIONS -H 'Origin: https://app.example' \
    -H 'Access-Control-Request-Method: POST' \
    -H 'Access-Control-Request-Headers: idempotency-key, ce-specversion, ce-id, ce-source, ce-type' \
    "$URL/v1/events")
has "preflight allows Idempotency-Key and the ce-* headers" \
    $'Access-Control-Allow-Headers: Content-Type, Content-Encoding, Authorization, X-API-Key, Idempotency-Key, ce-specversion, ce-id, ce-source, ce-type, X-Retry-Count\r' "$r"
stop_pid "$SPID"

# --- open endpoints never show a host, port, socket path or user name
if [ -n "${DP_PG_CONNINFO:-}" ]; then
    sock=$(sed -n 's/.*host=\([^ ]*\).*/\1/p' <<<"$DP_PG_CONNINFO")
    pgport=$(sed -n 's/.*port=\([0-9]*\).*/\1/p' <<<"$DP_PG_CONNINFO")
    server leak_sock 67108864 "" "$DP_PG_CONNINFO user=secretuser"
    r=$(curl -s -w '%{http_code}' "$URL/v1/status/dead_letters" | tr -d '\n')
    eq "dead letters, a role that does not exist → 503 without libpq's text" \
        '{"status_code":503,"status_message":"database unavailable: cannot reach PostgreSQL or lost the connection (details in the server'"'"'s log)"}503' "$r"
    eq "… nor the port" "$r" "${r//"$pgport"/}"
    open=$r$(curl -s "$URL/v1/status")$(curl -s "$URL/status")$(curl -s "$URL/v1/status/history")
    for word in secretuser "$sock" socket; do
        eq "no \"$word\" in any open answer" "$open" "${open//"$word"/}"
    done
    has_file "the server's log keeps libpq's text for the operator" 'secretuser' "$TMP/leak_sock.log"
    stop_pid "$SPID"
    tport=$(free_port)
    server leak_tcp 67108864 "" "host=127.0.0.1 port=$tport user=secretuser dbname=d connect_timeout=3"
    r=$(curl -s -w '%{http_code}' "$URL/v1/status/dead_letters" | tr -d '\n')
    eq "dead letters, TCP refused → 503 without host or port" \
        '{"status_code":503,"status_message":"database unavailable: cannot reach PostgreSQL or lost the connection (details in the server'"'"'s log)"}503' "$r"
    stop_pid "$SPID"
fi

# --- --check-config shows database.conninfo with its password masked, both daemons
masked() {
    local conninfo=$1 d
    printf '{"database": {"conninfo": "%s"}, "queue": {"path": "%s/m.q"}}\n' "$conninfo" "$TMP" >"$TMP/mask.json"
    for d in datapipe-server datapipe-loader; do
        "$BIN/$d" -c "$TMP/mask.json" --check-config 2>&1 | sed -n 's/^ *"conninfo": "\(.*\)",\{0,1\}$/\1/p'
    done
}
eq "key=value: the password masked (server, loader)" \
    "host=db.example password=*** user=u dbname=d
host=db.example password=*** user=u dbname=d" "$(masked 'host=db.example password=s3cret user=u dbname=d')"
eq "a quoted password with spaces and an escaped quote" \
    "host=h password=*** user=u
host=h password=*** user=u" "$(masked "host=h password = 's3 c\\\\'ret' user=u")"
eq "URI: the user's password masked" \
    "postgresql://u:***@h:5432/db?sslmode=require
postgresql://u:***@h:5432/db?sslmode=require" "$(masked 'postgresql://u:s3cret@h:5432/db?sslmode=require')"
eq "URI: a password parameter masked" \
    "postgres://u@h/db?sslmode=require&password=***&connect_timeout=3
postgres://u@h/db?sslmode=require&password=***&connect_timeout=3" "$(masked 'postgres://u@h/db?sslmode=require&password=s3cret&connect_timeout=3')"
eq "no password: as written" "host=h user=u
host=h user=u" "$(masked 'host=h user=u')"

# --- a keys-file line of 4096 bytes or more is refused, not cut into two keys
long=$(head -c 5000 /dev/zero | tr '\0' 'k')
printf 'ok:short-key\n%s\n' "$long" >"$TMP/keys"
printf '{"server": {"api_keys_file": "%s"}, "queue": {"path": "%s/k.q"}}\n' "$TMP/keys" "$TMP" >"$TMP/keys.json"
r=$("$BIN/datapipe-server" -c "$TMP/keys.json" --check-config 2>&1)
eq "--check-config exits 2" 2 "$?"
has "and names the line" 'server.api_keys_file: line 2 is longer than 4095 bytes' "$r"
printf 'ok:short-key\n%s\n' "$(head -c 4095 /dev/zero | tr '\0' 'k')" >"$TMP/keys"
"$BIN/datapipe-server" -c "$TMP/keys.json" --check-config >/dev/null 2>&1
eq "a line of 4095 bytes is one key" 0 "$?"

# --- the parsed events count against server.max_inflight_bytes before they are allocated
server budget 67108864 ', "max_body_bytes": 1048576, "max_inflight_bytes": 1048576, "max_events_per_body": 1000000'
yes 1 | head -n 450000 >"$TMP/ones"
hwm() { awk '/^VmHWM:/ {print $2}' "/proc/$SPID/status"; }
hwm0=$(hwm)
r=$(curl -s -w ' %{http_code}' --data-binary @"$TMP/ones" "$URL/v1/events/crash_report")
has "450,000 one-byte events in a body of 900 kB, a budget of 1 MiB → 503" \
    '{"status_code":503,"status_message":"server busy: the request bodies in flight fill server.max_inflight_bytes; retry later"}' "$r"
grow=$(( ($(hwm) - hwm0) / 1024 ))
ok "the server's peak RSS grew by less than 16 MiB, not by the items of 450,000 events ($grow MiB)" \
    [ "$grow" -lt 16 ]
eq "the server goes on" 202 "$(curl -s -o /dev/null -w '%{http_code}' -d "$CR" "$URL/v1/events/crash_report")"
stop_pid "$SPID"

t_done test_ingest_edges
