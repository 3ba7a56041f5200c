#!/usr/bin/env bash
# test_idempotency.sh - idempotency keys over real HTTP (docs/api.md): a repeat answers as
# the first time plus "duplicate" (one event, a batch, /submit's 204), a conflict is 409 or a
# batch error kept for dead_letter, the Idempotency-Key header, bad keys with their exact
# texts, the dedup window expiring, keys surviving a server restart; then the loader skipping
# a key PostgreSQL already holds with the same bytes and filing one held with other bytes
# (after the window, twice in a batch, across appliances, a row without a digest) into
# dead_letter, and CloudEvents in structured, batch and binary mode.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh

TMP=$(mktemp -d)
SCHEMA="idem_$$"
trap 't_cleanup; sql "DROP SCHEMA IF EXISTS $SCHEMA CASCADE"; rm -rf "$TMP"' EXIT
QTOOL=$BUILD/tests/tools/qtool

# server NAME [WINDOW_S]: start a server on queue $TMP/NAME.q; sets URL and SPID.
server() {
    local name=$1 window=${2:-86400} port
    port=$(free_port)
    cat >"$TMP/$name.json" <<JSON
{"server": {"listen": "127.0.0.1:$port", "threads": 8},
 "queue": {"path": "$TMP/$name.q", "max_bytes": 67108864, "dedup_window_s": $window,
           "id": "$SCHEMA-$name"},
 "database": {"conninfo": "${DP_PG_CONNINFO:-dbname=none}", "schema": "$SCHEMA"},
 "loader": {"batch_rows": 1000}}
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
# ids_as_id ANSWER: the answer with each id of its "ids" written "ID".
ids_as_id() { sed -E 's/"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"/"ID"/g' <<<"$1"; }

CR='{"event_name":"crash_report","user_id":1,"timestamp":2,"message":"m","idempotency_key":"k-1"}'
AD='{"ip_address":"10.1.2.3","user_agent":"u","referring_url":"https://e.com/","advertiser_id":"a"}'

server main

# --- one event: the first answer, then the same answer plus "duplicate"
r1=$(post / "$CR")
has "keyed event → 202" '202 {"status_code":202,"status_message":"accepted","id":"' "$r1"
id1=$(id_of "$r1")
r=$(post / "  $CR
")
eq "repeat (whitespace around aside) → same answer + duplicate" \
    "202 {\"status_code\":202,\"status_message\":\"accepted\",\"id\":\"$id1\",\"duplicate\":true}" "$r"
r=$(post /v1/events/crash_report "$CR")
eq "repeat on another route → same id" \
    "202 {\"status_code\":202,\"status_message\":\"accepted\",\"id\":\"$id1\",\"duplicate\":true}" "$r"
eq "a repeat appends nothing" 1 "$(queued main)"

# --- a conflict: the same key, other bytes
r=$(post / '{"event_name":"crash_report","user_id":2,"timestamp":2,"message":"m","idempotency_key":"k-1"}')
eq "conflict → 409 naming the key and the first id" \
    "409 {\"status_code\":409,\"status_message\":\"idempotency_key: \\\"k-1\\\" was already used for event $id1 with different content\",\"id\":\"$id1\"}" "$r"
eq "a single conflict stores nothing" 1 "$(queued main)"

# --- the header
r=$(post /submit "$AD" -H 'Idempotency-Key: sub-1')
eq "/submit with a key → 204" "204 " "$r"
r=$(post /submit "$AD" -H 'Idempotency-Key: sub-1')
eq "/submit repeat → 204 again" "204 " "$r"
eq "/submit repeat appends nothing" 2 "$(queued main)"
r=$(post /v1/events/ad_event "$AD" -H 'Idempotency-Key: "sf-1"')
id2=$(id_of "$r")
r=$(post /v1/events/ad_event "$AD" -H 'Idempotency-Key: sf-1')
eq "header in sf-string form: the quotes are not the key" \
    "202 {\"status_code\":202,\"status_message\":\"accepted\",\"id\":\"$id2\",\"duplicate\":true}" "$r"
r=$(post /v1/events/ad_event "$AD
$AD" -H 'Idempotency-Key: h-2')
eq "header on a body of two events → 400" \
    '400 {"status_code":400,"status_message":"Idempotency-Key: the header keys a body of one event; this one holds 2 (give each event an idempotency_key field)"}' "$r"
r=$(post / "$CR" -H 'Idempotency-Key: other')
eq "header differing from the field → 400" \
    '400 {"status_code":400,"status_message":"Idempotency-Key: differs from the event'"'"'s idempotency_key field"}' "$r"
r=$(post / "$CR" -H 'Idempotency-Key: k-1')
has "header equal to the field → a repeat" '"duplicate":true' "$r"

# --- bad keys, exact texts
bad() {
    local name=$1 key=$2 want=$3
    r=$(post /v1/events/product "{\"id\":1,\"idempotency_key\":$key}")
    eq "$name" "400 {\"status_code\":400,\"status_message\":\"$want\"}" "$r"
}
bad "empty key → 400" '""' 'idempotency_key: must not be empty'
bad "256-byte key → 400" "\"$(printf 'k%.0s' $(seq 256))\"" 'idempotency_key: longer than 255 bytes (256)'
bad "control character → 400" '"a\u0007b"' 'idempotency_key: control character at byte 1'
bad "number → 400" '42' 'idempotency_key: expected string, got integer'
r=$(post /v1/events/product '{"id":1,"idempotency_key":"'"$(printf 'k%.0s' $(seq 255))"'"}')
has "255-byte key → 202" '202 ' "$r"

# --- a batch: repeats counted, conflicts are errors kept for dead_letter
before=$(queued main)
B1='{"event_name":"crash_report","user_id":5,"timestamp":2,"message":"b","idempotency_key":"b-1"}'
B2='{"event_name":"crash_report","user_id":6,"timestamp":2,"message":"b","idempotency_key":"b-2"}'
B2X='{"event_name":"crash_report","user_id":7,"timestamp":2,"message":"b","idempotency_key":"b-2"}'
r=$(post / "$B1
$B2")
eq "batch of two keyed → 202 with both ids" '202 {"status_code":202,"status_message":"accepted","accepted":2,"rejected":0,"duplicates":0,"ids":["ID","ID"],"errors":[]}' "$(ids_as_id "$r")"
r=$(post / "$B1
$B2X
$CR
$B1")
has "batch: repeats counted, the conflict an error" \
    '202 {"status_code":202,"status_message":"partly accepted","accepted":3,"rejected":1,"duplicates":3,"ids":["ID",null,"ID","ID"],"errors":[{"index":1,"error":"idempotency_key: \"b-2\" was already used for event ' "$(ids_as_id "$r")"
eq "the batch appended only the conflict (for dead_letter)" $((before + 3)) "$(queued main)"
dump=$("$QTOOL" "$TMP/main.q" dump)
has "the conflict is stored rejected" " crash_report 1 $B2X" "$dump"
r=$(post / "$B2X
$B2X")
has "a batch of conflicts only → 409" '409 {"status_code":409,"status_message":"no event accepted: idempotency_key conflicts","accepted":0,"rejected":2,"duplicates":0' "$r"
B3='{"event_name":"crash_report","user_id":8,"timestamp":2,"message":"b","idempotency_key":"b-3"}'
r=$(post / "$B3
$B3")
has "one key twice in one body: the second is a repeat" '"accepted":2,"rejected":0,"duplicates":1' "$r"
m=$(curl -s "$URL/metrics")
has "/metrics counts the duplicates" 'datapipe_events_duplicates_total 9' "$m"

# --- keys survive a restart
stop_pid "$SPID"
server main
r=$(post / "$CR")
eq "after a restart: still a repeat with the first id" \
    "202 {\"status_code\":202,\"status_message\":\"accepted\",\"id\":\"$id1\",\"duplicate\":true}" "$r"
stop_pid "$SPID"

# --- the window: a 1 s window forgets the key
server short 1
r=$(post / "$CR")
idw=$(id_of "$r")
# Every post within the window is a repeat and appends nothing; the first one after it
# appends the event again (a new id). Waiting for that, not timing it: exactly 2 queued.
fresh_id() { r=$(post / "$CR"); [ "$(id_of "$r")" != "$idw" ] && [[ "$r" != *duplicate* ]]; }
wait_until 30 "the key is forgotten after the window" fresh_id
eq "after the window the event was appended again" 2 "$(queued short)"
stop_pid "$SPID"

# --- the loader: the keys go into the rows, a key PostgreSQL already holds is skipped
run_loader() { "$BIN/datapipe-loader" -c "$TMP/$1.json" --once >>"$TMP/$1.loader.log" 2>&1; }
ok "loader --once drains main" run_loader main
eq "keyed crash_report rows carry their keys" "b-1,b-2,b-3,k-1" \
    "$(sql "SELECT string_agg(idempotency_key, ',' ORDER BY idempotency_key) FROM $SCHEMA.crash_report")"
eq "keyed ad_event rows (header keys) carry theirs" "sf-1,sub-1" \
    "$(sql "SELECT string_agg(idempotency_key, ',' ORDER BY idempotency_key) FROM $SCHEMA.ad_event")"
eq "the batch conflicts are dead letters of stage ingest with their key" 3 \
    "$(sql "SELECT count(*) FROM $SCHEMA.dead_letter WHERE stage = 'ingest' AND idempotency_key = 'b-2'")"
# Queue "short" holds k-1 twice (appended again after its window): PostgreSQL has it already.
ok "loader --once drains short" run_loader short
eq "a key already in the table is skipped, not an error" 1 \
    "$(sql "SELECT count(*) FROM $SCHEMA.crash_report WHERE idempotency_key = 'k-1'")"
eq "short's queue is empty (nothing dead-lettered)" "0 3" \
    "$(queued short) $(sql "SELECT count(*) FROM $SCHEMA.dead_letter")"
server short 1
m=$(curl -s "$URL/metrics")
has "/metrics shows the loader's skips" 'datapipe_loader_duplicates_total{type="crash_report"} 2' "$m"
ok "skips are not counted as loaded" \
    test -z "$(grep -F 'datapipe_loader_events_loaded_total{type="crash_report"}' <<<"$m")"
stop_pid "$SPID"

# --- a key reused after the window with other bytes: a conflict PostgreSQL tells, never lost
# post_until_new NAME BODY KEY: post until the server forgot KEY (a 409 appends nothing) and
# takes BODY as a new event; its id in NEW_ID.
post_until_new() {
    local r
    r=$(post /v1/events/crash_report "$2" -H "Idempotency-Key: $3")
    NEW_ID=$(id_of "$r")
    [[ "$r" == "202 "* ]] && [[ "$r" != *duplicate* ]]
}
ONE='{"user_id":1,"timestamp":2,"message":"one"}'
TWO='{"user_id":1,"timestamp":2,"message":"two"}'
server reuse 1
r=$(post /v1/events/crash_report "$ONE" -H 'Idempotency-Key: K')
id_one=$(id_of "$r")
stop_pid "$SPID"
ok "loader --once loads the first" run_loader reuse
server reuse 1
wait_until 30 "the server forgot K" post_until_new reuse "$TWO" K
id_two=$NEW_ID
# Same key, other bytes, both queued in one batch: the second of the pair conflicts.
r=$(post /v1/events/crash_report "$ONE" -H 'Idempotency-Key: L')
id_l1=$(id_of "$r")
wait_until 30 "the server forgot L" post_until_new reuse "$TWO" L
id_l2=$NEW_ID
# The same bytes again after the window: a repeat, skipped as ever.
wait_until 30 "the server forgot K again" post_until_new reuse "$ONE" K
stop_pid "$SPID"
ok "loader --once loads the reuse" run_loader reuse
conflict() {
    sql "SELECT stage || '|' || idempotency_key || '|' || error FROM $SCHEMA.dead_letter
         WHERE event_id = '$1'"
}
# conflict_text KEY HOLDER_ID THIS_ID [WHY]: the dead letter conflict() prints.
conflict_text() {
    echo "load|$1|idempotency_key: \"$1\" was already loaded for event $2 ${4:-with different \
content} (this event: $3)"
}
eq "after the window, other bytes: a dead letter naming the key and both ids" \
    "$(conflict_text K "$id_one" "$id_two")" "$(conflict "$id_two")"
eq "within one batch: the second is the dead letter" \
    "$(conflict_text L "$id_l1" "$id_l2")" "$(conflict "$id_l2")"
eq "K and L loaded once each, with the first bytes" "K one|L one" \
    "$(sql "SELECT string_agg(idempotency_key || ' ' || message, '|' ORDER BY idempotency_key)
            FROM $SCHEMA.crash_report WHERE idempotency_key IN ('K', 'L')")"
eq "each row keeps its digest (SHA-256 of the event's bytes)" \
    "$(printf %s "$ONE" | sha256sum | cut -c1-64)" \
    "$(sql "SELECT encode(idempotency_digest, 'hex') FROM $SCHEMA.crash_report
            WHERE idempotency_key = 'K'")"
server reuse 1
eq "the trail finds the conflicting event as a dead letter" dead_letter \
    "$(curl -s "$URL/v1/events/$id_two" | jq -r .state)"
m=$(curl -s "$URL/metrics")
has "/metrics counts the conflicts" \
    'datapipe_loader_key_conflicts_total{type="crash_report"} 2' "$m"
has "… and the identical repeat as a duplicate" \
    'datapipe_loader_duplicates_total{type="crash_report"} 1' "$m"
has "… conservation holds" 'datapipe_events{stage="dead_lettered"} 2' "$m"
stop_pid "$SPID"

# Across appliances: another queue loaded the key first, with other bytes.
server east
r=$(post /v1/events/crash_report "$ONE" -H 'Idempotency-Key: M')
id_m1=$(id_of "$r")
stop_pid "$SPID"
server west
r=$(post /v1/events/crash_report "$TWO" -H 'Idempotency-Key: M')
id_m2=$(id_of "$r")
stop_pid "$SPID"
ok "east loads M" run_loader east
ok "west loads M" run_loader west
eq "across appliances: the second is the dead letter" \
    "$(conflict_text M "$id_m1" "$id_m2")" "$(conflict "$id_m2")"

# A row loaded before digests were kept cannot tell a repeat: the event is filed, not lost.
sql "UPDATE $SCHEMA.crash_report SET idempotency_digest = NULL WHERE idempotency_key = 'M'"
server south
r=$(post /v1/events/crash_report "$ONE" -H 'Idempotency-Key: M')
id_m3=$(id_of "$r")
stop_pid "$SPID"
ok "a third appliance loads M, the first's bytes" run_loader south
eq "a row without a digest: the event is a dead letter, saying why" \
    "$(conflict_text M "$id_m1" "$id_m3" "before digests were kept: cannot tell a repeat from \
a conflict")" "$(conflict "$id_m3")"

# --- CloudEvents: structured, batch and binary mode
server ce
CT='Content-Type: application/cloudevents+json'
DATA='{"user_id":1,"timestamp":2,"message":"ce"}'
CE='{"specversion":"1.0","id":"e-1","source":"/app","type":"crash_report","data":'"$DATA"'}'
r=$(post / "$CE" -H "$CT")
has "structured → 202" '202 {"status_code":202,"status_message":"accepted","id":"' "$r"
idc=$(id_of "$r")
has "the stored event is data, exactly" " crash_report 0 $DATA" "$("$QTOOL" "$TMP/ce.q" dump)"
r=$(post /v1/events "$CE" -H "$CT")
eq "structured repeat (same source and id) → duplicate" \
    "202 {\"status_code\":202,\"status_message\":\"accepted\",\"id\":\"$idc\",\"duplicate\":true}" "$r"
r=$(post / "$DATA" -H 'ce-specversion: 1.0' -H 'ce-id: e-1' -H 'ce-source: /app' \
    -H 'ce-type: crash_report' -H 'Content-Type: application/json')
eq "binary mode, same source, id and data → a repeat of the structured one" \
    "202 {\"status_code\":202,\"status_message\":\"accepted\",\"id\":\"$idc\",\"duplicate\":true}" "$r"
r=$(post / "$DATA" -H 'ce-specversion: 1.0' -H 'ce-id: e%202' -H 'ce-source: /app' \
    -H 'ce-type: crash_report')
has "binary mode, a new id (percent-encoded) → 202" '202 {"status_code":202,"status_message":"accepted","id":"' "$r"
r=$(post / '['"$CE"',{"specversion":"1.0","id":"e-3","type":"crash_report","data":'"$DATA"'},
{"specversion":"1.0","id":"e-4","source":"/app","type":"crash_report","data":{"user_id":4,"timestamp":2,"message":"b"}}]' \
    -H 'Content-Type: application/cloudevents-batch+json')
eq "batch mode: a repeat (its first id), a missing source, a new one" \
    "202 {\"status_code\":202,\"status_message\":\"partly accepted\",\"accepted\":2,\"rejected\":1,\"duplicates\":1,\"ids\":[\"$idc\",null,\"$(jq -r '.ids[2]' <<<"${r#* }")\"],\"errors\":[{\"index\":1,\"error\":\"source: required attribute missing\"}]}" "$r"
long=$(printf 's%.0s' $(seq 300))
LONGCE='{"specversion":"1.0","id":"x","source":"'$long'","type":"crash_report","data":'"$DATA"'}'
r=$(post / "$LONGCE" -H "$CT")
idl=$(id_of "$r")
has "source + id over 255 bytes → 202 (hashed key)" '202 ' "$r"
r=$(post / "$LONGCE" -H "$CT")
has "… and its repeat is a duplicate" "\"id\":\"$idl\",\"duplicate\":true" "$r"

# ce_bad NAME CLOUDEVENT MESSAGE: a structured CloudEvent answered 400 with MESSAGE.
ce_bad() {
    r=$(post / "$2" -H "$CT")
    eq "$1" "400 {\"status_code\":400,\"status_message\":\"$3\"}" "$r"
}
ce_bad "missing specversion" '{"id":"1","source":"s","type":"crash_report","data":{}}' \
    'specversion: required attribute missing'
ce_bad "specversion 0.3" '{"specversion":"0.3","id":"1","source":"s","type":"crash_report","data":{}}' \
    'specversion: \"0.3\" is not supported (expected \"1.0\")'
ce_bad "missing id" '{"specversion":"1.0","source":"s","type":"crash_report","data":{}}' \
    'id: required attribute missing'
ce_bad "empty id" '{"specversion":"1.0","id":"","source":"s","type":"crash_report","data":{}}' \
    'id: must not be empty'
ce_bad "missing source" '{"specversion":"1.0","id":"1","type":"crash_report","data":{}}' \
    'source: required attribute missing'
ce_bad "source not a string" '{"specversion":"1.0","id":"1","source":5,"type":"crash_report","data":{}}' \
    'source: expected string, got integer'
ce_bad "missing type" '{"specversion":"1.0","id":"1","source":"s","data":{}}' \
    'type: required attribute missing'
ce_bad "unknown type" '{"specversion":"1.0","id":"1","source":"s","type":"nope","data":{}}' \
    'type: unknown event type \"nope\"'
ce_bad "id with a control character" \
    '{"specversion":"1.0","id":"a\u0001","source":"s","type":"crash_report","data":{}}' \
    'id: control character at byte 1'
ce_bad "missing data" '{"specversion":"1.0","id":"1","source":"s","type":"crash_report"}' \
    'data: required (the event, an object)'
ce_bad "data not an object" '{"specversion":"1.0","id":"1","source":"s","type":"crash_report","data":"x"}' \
    'data: expected object, got string'
ce_bad "data invalid for its type" \
    '{"specversion":"1.0","id":"1","source":"s","type":"crash_report","data":{"user_id":1}}' \
    'timestamp: required field missing'
ce_bad "structured mode with an array" "[$CE]" 'cloudevent: expected one CloudEvent object'
r=$(post / "$DATA" -H 'ce-specversion: 1.0' -H 'ce-id: e-9' -H 'ce-type: crash_report')
eq "binary mode without ce-source → 400" \
    '400 {"status_code":400,"status_message":"source: required attribute missing"}' "$r"
r=$(post / "$DATA" -H 'ce-specversion: 2.0' -H 'ce-id: e-9' -H 'ce-source: s' -H 'ce-type: crash_report')
eq "binary mode, specversion 2.0 → 400" \
    '400 {"status_code":400,"status_message":"specversion: \"2.0\" is not supported (expected \"1.0\")"}' "$r"
r=$(post /v1/events/crash_report "$CE" -H "$CT")
has "CloudEvents only where events name their type: 415 elsewhere" '415 ' "$r"
stop_pid "$SPID"
ok "loader --once drains ce" run_loader ce
eq "the CloudEvents key is the source's length, ':', source, id" 1 \
    "$(sql "SELECT count(*) FROM $SCHEMA.crash_report WHERE idempotency_key = '4:/appe 2'")"
eq "an over-long source + id is keyed by its SHA-256" 1 \
    "$(sql "SELECT count(*) FROM $SCHEMA.crash_report WHERE idempotency_key ~ '^ce-sha256:[0-9a-f]{64}$'")"

t_done test_idempotency
