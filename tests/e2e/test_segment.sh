#!/usr/bin/env bash
# test_segment.sh - the Segment tracking API over curl, as its SDKs send it (docs/api.md,
# "Sending from an analytics SDK"): every call through /v1/batch and its own route, the write
# key as Basic user name or writeKey, batch-level context merged, messageId once per write
# key, the skew-corrected timestamp, users upserted from identify, a track of a declared type
# loaded into its table too; every bad input with its exact answer, partial batches
# dead-lettered; then the rows column by column after the loader ran.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
: "${DP_PG_CONNINFO:?run through make check (tests/pg run)}"

TMP=$(mktemp -d)
SCHEMA=segment_$$
trap 't_cleanup; sql "DROP SCHEMA IF EXISTS $SCHEMA CASCADE"; rm -rf "$TMP"' EXIT
export PGTZ=UTC
PORT=$(free_port)
URL="http://127.0.0.1:$PORT"

cat >"$TMP/cfg.json" <<JSON
{"server": {"listen": "127.0.0.1:$PORT", "threads": 8,
            "api_keys": [{"name": "web", "key": "wk-web"}, {"name": "ios", "key": "wk-ios"}]},
 "queue": {"path": "$TMP/q", "max_bytes": 67108864, "id": "segment_$$", "sync": false},
 "database": {"conninfo": "$DP_PG_CONNINFO", "schema": "$SCHEMA"},
 "loader": {"interval_s": 3600, "min_interval_s": 1},
 "types": {"order_completed": {"fields": {"order_id": {"type": "string", "required": true},
                                          "total": {"type": "number", "required": true}}}}}
JSON

# post PATH BODY [CURL ARGS...]: prints "CODE BODY".
post() {
    local path=$1 body=$2
    shift 2
    curl -s -o "$TMP/out" -w '%{http_code}' --data-binary "$body" "$@" "$URL$path"
    echo " $(cat "$TMP/out")"
}
# ids_as_id ANSWER: the answer with each uuid written "ID" (a quoted one, and a conflict's).
ids_as_id() { sed -E 's/"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"/"ID"/g; s/event [0-9a-f-]{36} /event ID /g' <<<"$1"; }
load() { timeout 120 "$BIN/datapipe-loader" -c "$TMP/cfg.json" --once >>"$TMP/loader.log" 2>&1; }

start_bg "$TMP/server.log" "$BIN/datapipe-server" -c "$TMP/cfg.json"
wait_until 20 "the server answers /healthz" http_answers "$URL/healthz" || cat "$TMP/server.log"

CTX='"context": {"library": {"name": "analytics-node", "version": "2.1.0"}, "ip": "10.0.0.1"}'
BATCH='{"batch": [
 {"type": "identify", "userId": "u-1", "anonymousId": "a-1", "traits": {"plan": "pro"},
  "messageId": "m-identify", "timestamp": "2026-03-01T10:00:00.000Z",
  "context": {"ip": "10.0.0.2"}},
 {"type": "track", "userId": "u-1", "event": "Signed Up", "properties": {"via": "ad", "price": 0.1},
  "messageId": "m-track", "originalTimestamp": "2026-03-01T10:00:00.000Z",
  "sentAt": "2026-03-01T10:00:05.000Z"},
 {"type": "page", "anonymousId": "a-1", "name": "Home", "properties": {"path": "/"},
  "messageId": "m-page", "timestamp": "2026-03-01T10:00:01Z"},
 {"type": "screen", "userId": "u-1", "name": "Cart", "properties": {"items": 2},
  "messageId": "m-screen", "timestamp": "2026-03-01T10:00:02Z"},
 {"type": "group", "userId": "u-1", "groupId": "g-1", "traits": {"name": "Acme"},
  "messageId": "m-group", "timestamp": "2026-03-01T10:00:03Z"},
 {"type": "alias", "userId": "u-1", "previousId": "a-1",
  "messageId": "m-alias", "timestamp": "2026-03-01T10:00:04Z"}],
 '"$CTX"', "integrations": {"All": true}, "sentAt": "2026-03-01T10:00:10.000Z"}'

# --- every call through /v1/batch with the write key as Basic user name
r=$(post /v1/batch "$BATCH" -u wk-web:)
eq "a batch of every call → 200, one id each" \
    '200 {"status_code":200,"status_message":"accepted","success":true,"accepted":6,"rejected":0,"duplicates":0,"ids":["ID","ID","ID","ID","ID","ID"],"errors":[]}' \
    "$(ids_as_id "$r")"
track_id=$(sed -E 's/.*"ids":\["[^"]*","([^"]*)".*/\1/' <<<"$r")

# --- an SDK's retry after a lost answer: sentAt differs, the messages are repeats
r=$(post /v1/batch "${BATCH/2026-03-01T10:00:10.000Z/2026-03-01T10:00:40.000Z}" -u wk-web:)
eq "the retry (new sentAt) → 200, all duplicates, the first ids" \
    '200 {"status_code":200,"status_message":"accepted","success":true,"accepted":6,"rejected":0,"duplicates":6,"ids":["ID","ID","ID","ID","ID","ID"],"errors":[]}' \
    "$(ids_as_id "$r")"
has "the retry answers the track's first id" "\"$track_id\"" "$r"

# --- another write key with the same messageId: its own row, not a duplicate
r=$(post /v1/track '{"writeKey": "wk-ios", "userId": "u-2", "event": "Signed Up", "messageId": "m-track"}')
eq "writeKey in the body, same messageId under another key → accepted" \
    '200 {"status_code":200,"status_message":"accepted","success":true,"accepted":1,"rejected":0,"duplicates":0,"ids":["ID"],"errors":[]}' \
    "$(ids_as_id "$r")"

# --- one call a route; no messageId: one is generated
r=$(post /v1/page '{"anonymousId": "a-9", "name": "Pricing"}' -u wk-web: -H 'Content-Type: text/plain')
eq "/v1/page without messageId (text/plain) → 200" \
    '200 {"status_code":200,"status_message":"accepted","success":true,"accepted":1,"rejected":0,"duplicates":0,"ids":["ID"],"errors":[]}' \
    "$(ids_as_id "$r")"

# --- identify twice more for u-1: an older one does not win, a newer one does
post /v1/identify '{"userId": "u-1", "traits": {"plan": "free"}, "timestamp": "2026-02-01T00:00:00Z", "messageId": "m-old"}' -u wk-web: >/dev/null
post /v1/identify '{"userId": "u-3", "traits": {"plan": "team"}, "timestamp": "2026-03-02T00:00:00Z", "messageId": "m-u3"}' -u wk-web: >/dev/null

# --- a track of a declared type: typed row too; its properties checked against the type
r=$(post /v1/track '{"userId": "u-1", "event": "Order Completed", "properties": {"order_id": "o-1", "total": 9.5}, "messageId": "m-order"}' -u wk-web:)
eq "track of a declared type → 200" \
    '200 {"status_code":200,"status_message":"accepted","success":true,"accepted":1,"rejected":0,"duplicates":0,"ids":["ID"],"errors":[]}' \
    "$(ids_as_id "$r")"
r=$(post /v1/track '{"userId": "u-1", "event": "order_completed", "properties": {"total": "x"}, "messageId": "m-order-bad"}' -u wk-web:)
eq "track of a declared type with bad properties → 400 naming the field" \
    '400 {"status_code":400,"status_message":"properties: order_id: required field missing","success":false,"accepted":0,"rejected":1,"duplicates":0,"ids":[null],"errors":[{"index":0,"error":"properties: order_id: required field missing"}]}' \
    "$r"

# --- names every type reserves, in a track's properties: the copy leaves them out
for n in idempotency_key event_name; do
    r=$(post /v1/track "{\"userId\": \"u-s\", \"event\": \"Order Completed\", \"properties\": {\"order_id\": \"o-$n\", \"total\": 2, \"$n\": \"crash_report\"}, \"messageId\": \"m-$n\"}" -u wk-web:)
    eq "a typed track whose properties hold $n → 200" \
        '200 {"status_code":200,"status_message":"accepted","success":true,"accepted":1,"rejected":0,"duplicates":0,"ids":["ID"],"errors":[]}' \
        "$(ids_as_id "$r")"
done

# --- the keys derived from messageIds are the server's: no client key may take one first
r=$(post /v1/events/tracks '{"type": "track", "userId": "x", "event": "E", "messageId": "m42", "idempotency_key": "sk:3:webm42"}' -H 'Authorization: Bearer wk-ios')
eq "a client key shaped as a message's key → 400" \
    '400 {"status_code":400,"status_message":"idempotency_key: begins with \"sk:\", which only the keys the server derives from Segment messageIds use"}' "$r"
r=$(post /v1/events/order_completed '{"order_id": "o-x", "total": 1}' -H 'Authorization: Bearer wk-ios' -H 'Idempotency-Key: st:3:webm43')
eq "a client key shaped as a typed copy's key → 400" \
    '400 {"status_code":400,"status_message":"Idempotency-Key: begins with \"st:\", which only the keys the server derives from Segment messageIds use"}' "$r"
r=$(post /v1/events/order_completed '{"order_id": "o-x", "total": 1, "idempotency_key": "st-sha256:00"}' -H 'Authorization: Bearer wk-ios')
eq "a client key shaped as a hashed derived key → 400" \
    '400 {"status_code":400,"status_message":"idempotency_key: begins with \"st-sha256:\", which only the keys the server derives from Segment messageIds use"}' "$r"
r=$(post /v1/track '{"userId": "u-k", "event": "E", "messageId": "m42"}' -u wk-web:)
eq "the web SDK's message m42 → 200" \
    '200 {"status_code":200,"status_message":"accepted","success":true,"accepted":1,"rejected":0,"duplicates":0,"ids":["ID"],"errors":[]}' \
    "$(ids_as_id "$r")"
r=$(post /v1/track '{"userId": "u-k", "event": "Order Completed", "properties": {"order_id": "o-43", "total": 3}, "messageId": "m43"}' -u wk-web:)
eq "the web SDK's typed track m43 → 200" \
    '200 {"status_code":200,"status_message":"accepted","success":true,"accepted":1,"rejected":0,"duplicates":0,"ids":["ID"],"errors":[]}' \
    "$(ids_as_id "$r")"

# --- the skew-corrected timestamp must be a time PostgreSQL can hold: checked at ingest
r=$(post /v1/track '{"userId": "u-p", "event": "P1", "originalTimestamp": "0001-01-01T00:00:00Z", "sentAt": "9999-12-31T23:59:59Z", "messageId": "m-p1"}' -u wk-web:)
eq "a correction that leaves the years 0001-9999 → 400 naming it" \
    '400 {"status_code":400,"status_message":"originalTimestamp, sentAt: the corrected timestamp (receivedAt - (sentAt - originalTimestamp)) falls outside the years 0001 to 9999","success":false,"accepted":0,"rejected":1,"duplicates":0,"ids":[null],"errors":[{"index":0,"error":"originalTimestamp, sentAt: the corrected timestamp (receivedAt - (sentAt - originalTimestamp)) falls outside the years 0001 to 9999"}]}' \
    "$r"
r=$(post /v1/track '{"userId": "u-p", "event": "P5", "originalTimestamp": "9999-12-31T23:59:59Z", "sentAt": "0001-01-01T00:00:00Z", "messageId": "m-p5"}' -u wk-web:)
has "the other way → 400" '"status_code":400,"status_message":"originalTimestamp, sentAt: the corrected timestamp' "$r"

# --- bad input, each with its answer
r=$(post /v1/track '{"userId": "u-1", "event": "E"}' -u wrong:)
eq "wrong write key → 401" \
    '401 {"status_code":401,"status_message":"missing or wrong API key: send Authorization: Bearer KEY or X-API-Key: KEY"}' "$r"
r=$(post /v1/track '{"writeKey": "wrong", "userId": "u-1", "event": "E"}')
eq "wrong writeKey in the body → 401" \
    '401 {"status_code":401,"status_message":"missing or wrong write key: send it as the HTTP Basic user name (empty password) or as writeKey in the body"}' "$r"
r=$(post /v1/track '{"userId": "u-1", "event": "E"}')
eq "no write key → 401" \
    '401 {"status_code":401,"status_message":"missing or wrong write key: send it as the HTTP Basic user name (empty password) or as writeKey in the body"}' "$r"
one_bad() { # NAME BODY ERROR
    eq "$1 → 400" \
        "400 {\"status_code\":400,\"status_message\":\"$3\",\"success\":false,\"accepted\":0,\"rejected\":1,\"duplicates\":0,\"ids\":[null],\"errors\":[{\"index\":0,\"error\":\"$3\"}]}" \
        "$(post /v1/batch "{\"batch\": [$2]}" -u wk-web:)"
}
one_bad "no userId/anonymousId" '{"type": "track", "event": "E"}' \
    'userId or anonymousId: one of them is required'
one_bad "track without event" '{"type": "track", "userId": "u"}' \
    'event: required field missing'
one_bad "wrong type" '{"type": "click", "userId": "u"}' \
    'type: expected one of identify, track, page, screen, group, alias'
one_bad "no type" '{"userId": "u"}' 'type: required field missing'
one_bad "bad timestamp" '{"type": "page", "userId": "u", "timestamp": "yesterday"}' \
    'timestamp: not an RFC 3339 date-time (YYYY-MM-DDTHH:MM:SS[.frac] then Z or +hh:mm)'
long=$(printf 'x%.0s' $(seq 256))
one_bad "messageId over 255 bytes" "{\"type\": \"track\", \"userId\": \"u\", \"event\": \"E\", \"messageId\": \"$long\"}" \
    'messageId: 256 bytes, longer than 255'
big=$(head -c 33000 /dev/zero | tr '\0' 'p')
m="{\"type\": \"track\", \"userId\": \"u\", \"event\": \"E\", \"properties\": {\"p\": \"$big\"}}"
one_bad "a 33 KB message (its bytes as sent)" "$m" \
    "message: ${#m} bytes, over server.segment_max_message_bytes (32768)"
# The limit is on the message as sent: a batch-level context does not count against it.
ctx30=$(head -c 30000 /dev/zero | tr '\0' 'c')
r=$(post /v1/batch "{\"batch\": [{\"type\": \"page\", \"userId\": \"u-ctx\", \"messageId\": \"m-ctx\",
  \"properties\": {\"p\": \"$(head -c 3000 /dev/zero | tr '\0' 'p')\"}}], \"context\": {\"c\": \"$ctx30\"}}" -u wk-web:)
eq "a 3 KB message with a 30 KB batch-level context → 200" \
    '200 {"status_code":200,"status_message":"accepted","success":true,"accepted":1,"rejected":0,"duplicates":0,"ids":["ID"],"errors":[]}' \
    "$(ids_as_id "$r")"
# A 241 KB body whose batch-level context would be copied into 1,500 tiny messages: refused
# before anything is merged (it held 260 MB of the server's memory), naming the bound.
python3 -c '
import json
ctx = {"k%05d" % i: i for i in range(12000)}
msgs = [{"type": "page", "userId": "u", "messageId": "m%d" % i} for i in range(1500)]
print(json.dumps({"batch": msgs, "context": ctx}, separators=(",", ":")))' >"$TMP/ctx.json"
r=$(post /v1/batch "@$TMP/ctx.json" -u wk-web:)
eq "a small body whose batch-level context would grow 1,000-fold → 400" \
    '400 {"status_code":400,"status_message":"context, integrations: the batch-level members (168891 bytes) merged into each of 1500 messages make 253336500 bytes, over 8 x server.segment_max_batch_bytes (4096000); send them in each message or in smaller batches; nothing was stored"}' \
    "$r"
r=$(post /v1/batch '{"batch": {"type": "track"}}' -u wk-web:)
eq "a batch that is not an array → 400" \
    '400 {"status_code":400,"status_message":"batch: expected an array of messages"}' "$r"
r=$(post /v1/batch '[{"type": "track"}]' -u wk-web:)
eq "a body that is not an object → 400" \
    '400 {"status_code":400,"status_message":"body: expected a JSON object"}' "$r"
r=$(post /v1/batch '{"batch": [' -u wk-web:)
eq "a body that is not JSON → 400" \
    "400 {\"status_code\":400,\"status_message\":\"body: not JSON: line 1 column 11: ']' expected near end of file\"}" "$r"
deep=$(head -c 16000 /dev/zero | tr '\0' '[')
r=$(post /v1/alias "$deep" -u wk-web:)
eq "a body nested 16,000 deep → 400 (jansson's recursion would overflow the thread's stack)" \
    '400 {"status_code":400,"status_message":"body: not JSON: line 1 column 129: nested deeper than 128 levels"}' "$r"
ok "the server still answers" http_answers "$URL/healthz"
# Without credentials the body is read for its writeKey first: it is refused the same way.
deep=$(head -c 1000 /dev/zero | tr '\0' '[')
for route in batch track; do
    r=$(post "/v1/$route" "$deep")
    eq "a body nested 1,000 deep to /v1/$route without a write key → 400" \
        '400 {"status_code":400,"status_message":"body: not JSON: line 1 column 129: nested deeper than 128 levels"}' "$r"
done
ok "the server still answers after them" http_answers "$URL/healthz"
msg="{\"type\": \"track\", \"userId\": \"u\", \"event\": \"E\", \"properties\": {\"p\": \"$(head -c 30000 /dev/zero | tr '\0' 'p')\"}}"
printf '{"batch": [%s' "$msg" >"$TMP/big.json"
for _ in $(seq 17); do printf ',%s' "$msg" >>"$TMP/big.json"; done
printf ']}' >>"$TMP/big.json"
r=$(post /v1/batch "@$TMP/big.json" -u wk-web:)
eq "a 501 KB batch → 400 naming the limit" \
    "400 {\"status_code\":400,\"status_message\":\"body: $(stat -c %s "$TMP/big.json") bytes, over server.segment_max_batch_bytes (512000); nothing was stored\"}" \
    "$r"
r=$(post /v1/track '{"userId": "u", "event": "E", "type": "page"}' -u wk-web:)
eq "a message whose type is not its route's → 400" \
    '400 {"status_code":400,"status_message":"type: expected \"track\" on /v1/track","success":false,"accepted":0,"rejected":1,"duplicates":0,"ids":[null],"errors":[{"index":0,"error":"type: expected \"track\" on /v1/track"}]}' "$r"

# --- a batch with some invalid messages: the valid stored, the rest dead-lettered
r=$(post /v1/batch '{"batch": [{"type": "track", "userId": "u-4", "event": "Ok", "messageId": "m-ok"},
  {"type": "track", "userId": "u-4", "messageId": "m-noevent"}]}' -u wk-web:)
eq "a partly valid batch → 200 saying so" \
    '200 {"status_code":200,"status_message":"partly accepted: the rejected messages are in dead_letter","success":true,"accepted":1,"rejected":1,"duplicates":0,"ids":["ID",null],"errors":[{"index":1,"error":"event: required field missing"}]}' \
    "$(ids_as_id "$r")"

# --- a derived row (users, the declared type's copy) follows its message: stored only when
# the message itself is stored as new, never for a conflict or a repeat
post /v1/identify '{"userId": "u-f", "traits": {"plan": "a"}, "timestamp": "2026-01-01T00:00:00Z", "messageId": "m-fate-i"}' -u wk-web: >/dev/null
r=$(post /v1/identify '{"userId": "u-f", "traits": {"plan": "EVIL"}, "timestamp": "2026-02-01T00:00:00Z", "messageId": "m-fate-i"}' -u wk-web:)
eq "an identify reusing a messageId with other traits → 409" \
    '409 {"status_code":409,"status_message":"no message accepted: messageId already used with other content","success":false,"accepted":0,"rejected":1,"duplicates":0,"ids":[null],"errors":[{"index":0,"error":"idempotency_key: \"sk:3:webm-fate-i\" was already used for event ID with different content"}]}' \
    "$(ids_as_id "$r")"
r=$(post /v1/batch '{"batch": [{"type": "identify", "userId": "u-f5", "traits": {"p": 1}, "messageId": "m-fate-b"},
  {"type": "identify", "userId": "u-f5", "traits": {"p": 2}, "messageId": "m-fate-b"}]}' -u wk-web:)
eq "the same messageId twice in a batch, other traits → the second rejected" \
    '200 {"status_code":200,"status_message":"partly accepted: the rejected messages are in dead_letter","success":true,"accepted":1,"rejected":1,"duplicates":0,"ids":["ID",null],"errors":[{"index":1,"error":"idempotency_key: \"sk:3:webm-fate-b\" was already used for event ID with different content"}]}' \
    "$(ids_as_id "$r")"
post /v1/track '{"userId": "u-f", "event": "Foo", "messageId": "m-fate-t"}' -u wk-web: >/dev/null
r=$(post /v1/track '{"userId": "u-f", "event": "Order Completed", "properties": {"order_id": "o-evil", "total": 1}, "messageId": "m-fate-t"}' -u wk-web:)
eq "a track of a declared type reusing a messageId → 409" \
    '409 {"status_code":409,"status_message":"no message accepted: messageId already used with other content","success":false,"accepted":0,"rejected":1,"duplicates":0,"ids":[null],"errors":[{"index":0,"error":"idempotency_key: \"sk:3:webm-fate-t\" was already used for event ID with different content"}]}' \
    "$(ids_as_id "$r")"
post /v1/identify '{"userId": "u-g", "traits": {"plan": "old"}, "messageId": "m-fate-g1"}' -u wk-web: >/dev/null
post /v1/identify '{"userId": "u-g", "traits": {"plan": "new"}, "messageId": "m-fate-g2"}' -u wk-web: >/dev/null
r=$(post /v1/identify '{"userId": "u-g", "traits": {"plan": "old"}, "messageId": "m-fate-g1"}' -u wk-web:)
eq "an identify's retry after a newer identify → a duplicate" \
    '200 {"status_code":200,"status_message":"accepted","success":true,"accepted":1,"rejected":0,"duplicates":1,"ids":["ID"],"errors":[]}' \
    "$(ids_as_id "$r")"

# --- the rows
ok "the loader loads" load
q() { sql "SELECT $2 FROM $SCHEMA.$1 $3"; }
COMMON="message_id, coalesce(anonymous_id, '-'), coalesce(user_id, '-'), timestamp, coalesce(original_timestamp::text, '-'), coalesce(sent_at::text, '-'), context::text, source, idempotency_key"
eq "identifies: one row, columns" \
    'm-identify|a-1|u-1|2026-03-01 10:00:00+00|-|2026-03-01 10:00:10+00|{"ip": "10.0.0.2", "library": {"name": "analytics-node", "version": "2.1.0"}}|web|sk:3:webm-identify|{"plan": "pro"}' \
    "$(q identifies "$COMMON, traits" "WHERE message_id = 'm-identify'")"
eq "tracks: one row per write key" "2" "$(q tracks "count(*)" "WHERE message_id = 'm-track'")"
eq "tracks: columns (timestamp: received_at - (sentAt - originalTimestamp))" \
    'm-track|-|u-1|-|2026-03-01 10:00:00+00|2026-03-01 10:00:05+00|{"ip": "10.0.0.1", "library": {"name": "analytics-node", "version": "2.1.0"}}|web|sk:3:webm-track|Signed Up|{"via": "ad", "price": 0.1}|t' \
    "$(q tracks "$COMMON, event, properties::text, timestamp = received_at - interval '5 s'" "WHERE message_id = 'm-track' AND source = 'web'" | sed 's/|[^|]*|2026-03-01 10:00:00+00/|-|2026-03-01 10:00:00+00/')"
eq "tracks: the other write key's row" 'm-track|-|u-2|-|-|ios|sk:3:iosm-track|Signed Up|t' \
    "$(q tracks "message_id, coalesce(anonymous_id, '-'), user_id, coalesce(sent_at::text, '-'), coalesce(context::text, '-'), source, idempotency_key, event, timestamp = received_at" "WHERE source = 'ios'")"
eq "pages: columns" \
    'm-page|a-1|-|2026-03-01 10:00:01+00|-|2026-03-01 10:00:10+00|{"ip": "10.0.0.1", "library": {"name": "analytics-node", "version": "2.1.0"}}|web|sk:3:webm-page|Home|{"path": "/"}' \
    "$(q pages "$COMMON, name, properties::text" "WHERE message_id = 'm-page'")"
eq "pages: the generated messageId is a uuid, and the key" 't|t' \
    "$(q pages "message_id ~ '^[0-9a-f-]{36}\$', idempotency_key = 'sk:3:web' || message_id" "WHERE name = 'Pricing'")"
eq "screens: columns" 'm-screen|u-1|Cart|{"items": 2}|2026-03-01 10:00:02+00' \
    "$(q screens "message_id, user_id, name, properties::text, timestamp" "")"
eq "groups: columns" 'm-group|u-1|g-1|{"name": "Acme"}|2026-03-01 10:00:03+00' \
    "$(q groups "message_id, user_id, group_id, traits::text, timestamp" "")"
eq "aliases: columns" 'm-alias|u-1|a-1|2026-03-01 10:00:04+00' \
    "$(q aliases "message_id, user_id, previous_id, timestamp" "")"
eq "users: the newest traits per user" \
    'u-1|{"plan": "pro"}|2026-03-01 10:00:00+00|web
u-3|{"plan": "team"}|2026-03-02 00:00:00+00|web' \
    "$(q users "user_id, traits::text, timestamp, source" "WHERE user_id IN ('u-1', 'u-3') ORDER BY user_id")"
eq "the declared type's table: the typed row" 'o-1|9.5|web' \
    "$(q order_completed "order_id, total, source" "WHERE order_id = 'o-1'")"
eq "the declared type's table: the copies of tracks whose properties hold reserved names" \
    'o-event_name|2|sk:3:webm-event_name
o-idempotency_key|2|sk:3:webm-idempotency_key' \
    "$(q order_completed "order_id, total, replace(idempotency_key, 'st:', 'sk:')" "WHERE order_id IN ('o-event_name', 'o-idempotency_key') ORDER BY 1")"
eq "the declared type's table: m43's copy, under its derived key" 'o-43|st:3:webm43|web' \
    "$(q order_completed "order_id, idempotency_key, source" "WHERE idempotency_key LIKE '%m43'")"
eq "the declared type's table: no client row took a derived key" '0' \
    "$(q order_completed "count(*)" "WHERE order_id = 'o-x'")"
eq "tracks: their properties as sent" '{"total": 2, "order_id": "o-event_name", "event_name": "crash_report"}' \
    "$(q tracks "properties::text" "WHERE message_id = 'm-event_name'")"
eq "tracks: the declared type's event has its row too" '4' \
    "$(q tracks "count(*)" "WHERE event = 'Order Completed'")"
eq "dead_letter: the invalid message of the partly valid batch (stage ingest)" \
    'ingest|tracks|event: required field missing' \
    "$(q dead_letter "stage, event_type, error" "WHERE convert_from(raw, 'UTF8') LIKE '%m-noevent%'")"
eq "users: a conflict, a conflict in a batch and a retry change nothing" \
    'u-f|{"plan": "a"}
u-f5|{"p": 1}
u-g|{"plan": "new"}' \
    "$(q users "user_id, traits::text" "WHERE user_id IN ('u-f', 'u-f5', 'u-g') ORDER BY user_id")"
eq "the declared type's table: no row for a rejected track" '0' \
    "$(q order_completed "count(*)" "WHERE order_id = 'o-evil'")"
eq "dead_letter: a 409 stored nothing; a batch's conflict is kept" 'identifies|u-f5' \
    "$(q dead_letter "event_type, convert_from(raw, 'UTF8')::json->>'userId'" "WHERE convert_from(raw, 'UTF8') LIKE '%m-fate-%'")"
eq "pages: the batch-level context merged into a message of its own size" '30000|3000' \
    "$(q pages "length(context->>'c'), length(properties->>'p')" "WHERE message_id = 'm-ctx'")"
eq "no writeKey stored anywhere" '0' \
    "$(q tracks "count(*)" "WHERE context::text LIKE '%wk-%'")"

# --- server.max_events_per_body counts messages, not the rows derived from them
PORT2=$(free_port)
sed -e "s/127.0.0.1:$PORT\"/127.0.0.1:$PORT2\", \"max_events_per_body\": 4/" -e "s|$TMP/q|$TMP/q2|" \
    "$TMP/cfg.json" >"$TMP/cfg2.json"
start_bg "$TMP/server2.log" "$BIN/datapipe-server" -c "$TMP/cfg2.json"
wait_until 20 "the second server answers" http_answers "http://127.0.0.1:$PORT2/healthz"
ident() { printf '{"type": "identify", "userId": "k%s", "messageId": "k%s"}' "$1" "$1"; }
r=$(curl -s -w ' %{http_code}' -u wk-web: --data-binary "{\"batch\": [$(ident 1), $(ident 2), $(ident 3), $(ident 4)]}" "http://127.0.0.1:$PORT2/v1/batch" | tr -d '\n')
eq "4 identifies with server.max_events_per_body 4 → 200" \
    '{"status_code":200,"status_message":"accepted","success":true,"accepted":4,"rejected":0,"duplicates":0,"ids":["ID","ID","ID","ID"],"errors":[]} 200' \
    "$(ids_as_id "$r")"
r=$(curl -s -w ' %{http_code}' -u wk-web: --data-binary "{\"batch\": [$(ident 5), $(ident 6), $(ident 7), $(ident 8), $(ident 9)]}" "http://127.0.0.1:$PORT2/v1/batch" | tr -d '\n')
eq "5 identifies → 400" \
    '{"status_code":400,"status_message":"more than server.max_events_per_body (4) messages in one body; nothing was stored"} 400' \
    "$r"

t_done test_segment
