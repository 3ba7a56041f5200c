#!/usr/bin/env bash
# test_openapi.sh - what clients discover: GET /v1/types (the registry as JSON) and
# GET /v1/openapi.json, validated by a real OpenAPI 3.1 validator (npm's
# @seriousme/openapi-schema-validator, pinned in tests/tools/openapi/package-lock.json and installed
# under $BUILD/openapi by npm ci; nothing else is downloaded), its event schemas tried on
# events the server takes and refuses.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh

TMP=$(mktemp -d)
trap 't_cleanup; rm -rf "$TMP"' EXIT

# --- the validator: npm ci from the lock file, again only when the lock file changed
VDIR=$BUILD/openapi
if ! cmp -s tests/tools/openapi/package-lock.json "$VDIR/package-lock.json" ||
    [ ! -d "$VDIR/node_modules/@seriousme/openapi-schema-validator" ]; then
    command -v npm >/dev/null || { echo "npm is missing: run make deps"; exit 1; }
    rm -rf "$VDIR"
    mkdir -p "$VDIR"
    cp tests/tools/openapi/package.json tests/tools/openapi/package-lock.json "$VDIR/"
    (cd "$VDIR" && npm ci --no-audit --no-fund --loglevel=error) ||
        { echo "npm ci of the OpenAPI validator failed"; exit 1; }
fi
cp tests/tools/openapi/check.mjs "$VDIR/"
# check DOC <<<"NAME EVENT" lines: the checker's verdicts.
check() { node "$VDIR/check.mjs" "$1"; }

PORT=$(free_port)
URL="http://127.0.0.1:$PORT"
# A declared type too: its fields come from its declaration, not from a C table.
cat >"$TMP/cfg.json" <<JSON
{"server": {"listen": "127.0.0.1:$PORT", "threads": 4},
 "queue": {"path": "$TMP/q"},
 "database": {"conninfo": "dbname=none", "schema": "apitest"},
 "types": {"page_view": {"fields": {"user_id": {"type": "string", "required": true},
                                    "viewed_at": {"type": "timestamp", "required": true},
                                    "props": {"type": "object"}},
                         "unknown_fields": "keep"}}}
JSON
start_bg "$TMP/log" "$BIN/datapipe-server" -c "$TMP/cfg.json"
wait_until 20 "the server answers /healthz" http_answers "$URL/healthz"

# --- GET /v1/types: each type's fields, table and endpoint, from the registry
curl -s -D "$TMP/types.h" -o "$TMP/types.json" "$URL/v1/types"
has "/v1/types → 200" 'HTTP/1.1 200' "$(cat "$TMP/types.h")"
eq "/v1/types lists every type of the registry" \
    "crash_report ad_event user_login product data_sample identifies tracks pages screens groups aliases users page_view" \
    "$(jq -r '[.types[].name] | join(" ")' "$TMP/types.json")"
eq "/v1/types: crash_report's fields, table and endpoints" \
    '{"name":"crash_report","endpoint":"/v1/events/crash_report","read":"/v1/events/crash_report/{id}","table":"apitest.crash_report","load":"append","fields":[{"name":"user_id","type":"integer","required":true},{"name":"timestamp","type":"integer","format":"epoch-seconds","required":true},{"name":"message","type":"string","required":true}],"unknown_fields":"reject"}' \
    "$(jq -c '.types[0]' "$TMP/types.json")"
eq "/v1/types: optional fields and JSON null" \
    '{"name":"ip","type":"ip","required":false,"nullable":true}' \
    "$(jq -c '.types[] | select(.name == "user_login") | .fields[] | select(.name == "ip")' "$TMP/types.json")"
eq "/v1/types: a declared type, from its declaration" \
    '{"name":"page_view","endpoint":"/v1/events/page_view","read":"/v1/events/page_view/{id}","table":"apitest.page_view","load":"append","fields":[{"name":"user_id","type":"string","required":true},{"name":"viewed_at","type":"timestamp","required":true},{"name":"props","type":"object","required":false,"nullable":true}],"unknown_fields":"keep"}' \
    "$(jq -c '.types[] | select(.name == "page_view")' "$TMP/types.json")"
eq "/v1/types: product keeps fields beyond its id, loaded as an upsert" 'keep upsert' \
    "$(jq -r '.types[] | select(.name == "product") | "\(.unknown_fields) \(.load)"' "$TMP/types.json")"
eq "/v1/types: /submit's type needs no key by default" 202 \
    "$(curl -s -o /dev/null -w '%{http_code}' -d '{"user_id": 1, "timestamp": 2, "message": "m"}' \
        "$URL$(jq -r '.types[0].endpoint' "$TMP/types.json")")"

# --- GET /v1/openapi.json, built from the route table and the registry
curl -s -D "$TMP/doc.h" -o "$TMP/doc.json" "$URL/v1/openapi.json"
has "/v1/openapi.json → 200" 'HTTP/1.1 200' "$(cat "$TMP/doc.h")"
has "/v1/openapi.json is JSON" 'Content-Type: application/json' "$(cat "$TMP/doc.h")"
eq "OpenAPI 3.1" 3.1.0 "$(jq -r .openapi "$TMP/doc.json")"
for t in $(jq -r '.types[].name' "$TMP/types.json"); do
    eq "the document has POST /v1/events/$t with its schema" "#/components/schemas/$t" \
        "$(jq -r --arg t "$t" '.paths["/v1/events/" + $t].post.requestBody.content["application/json"].schema.anyOf[0]["$ref"]' "$TMP/doc.json")"
    eq "the document has GET /v1/events/$t/{id}" true \
        "$(jq --arg t "$t" '.paths["/v1/events/" + $t + "/{id}"].get.responses | has("200")' "$TMP/doc.json")"
done
for p in / /v1/events /submit '/product/{id}' /healthz /readyz /metrics /v1/status /v1/types \
    /v1/openapi.json; do
    eq "the document has $p" true "$(jq --arg p "$p" '.paths | has($p)' "$TMP/doc.json")"
done
eq "POST answers as the route table says, with the dispatcher's 401, 429 (a key's rate) and 405" \
    '["202","400","413","415","503","500","401","429","404","405"]' \
    "$(jq -c '.paths["/v1/events/crash_report"].post.responses | keys_unsorted' "$TMP/doc.json")"
eq "/metrics answers Prometheus text" '"text/plain; version=0.0.4"' \
    "$(jq -c '.paths["/metrics"].get.responses["200"].content | keys[0]' "$TMP/doc.json")"
eq "keyed routes carry the API-key schemes" '[{"bearer":[]},{"apiKey":[]}]' \
    "$(jq -c '.paths["/submit"].post.security' "$TMP/doc.json")"
eq "open routes carry none" null "$(jq -c '.paths["/healthz"].get.security' "$TMP/doc.json")"
for t in $(jq -r '.types[].name' "$TMP/types.json"); do
    eq "$t's schema lists idempotency_key" '{"type":"string","minLength":1,"maxLength":255}' \
        "$(jq -c --arg t "$t" '.components.schemas[$t].properties.idempotency_key | del(.description)' "$TMP/doc.json")"
done
eq "a batch answer's ids: a uuid or null per input event" \
    '{"type":"array","items":{"anyOf":[{"type":"string","format":"uuid"},{"type":"null"}]}}' \
    "$(jq -c '.components.schemas.Answer.properties.ids | del(.description)' "$TMP/doc.json")"
eq "an answer's duplicates and duplicate" '[{"type":"integer"},{"type":"boolean"}]' \
    "$(jq -c '[.components.schemas.Answer.properties.duplicates, .components.schemas.Answer.properties.duplicate] | map(del(.description))' "$TMP/doc.json")"

# --- the validator's verdict, and the document's event schemas against real events
{
    while read -r line; do echo "example $line"; done <examples/events.ndjson
    echo 'ad {"event_name": "ad_event", "ip_address": "10.1.2.3", "user_agent": "u", "referring_url": "https://e.com/", "advertiser_id": "a", "metadata": {"k": 1}}'
    echo 'sample {"event_name": "data_sample", "time_stamp": "2026-11-26T10:00:00+01:00", "data": [1, 2.5]}'
    echo 'product {"event_name": "product", "id": 42, "name": "lamp", "tags": ["a"]}'
    echo 'login_null {"event_name": "user_login", "user_id": "u", "timestamp": "1700000000", "ip": null}'
    echo 'declared_epoch {"event_name": "page_view", "user_id": "u", "viewed_at": 1700000000, "more": 1}'
    echo 'declared_text {"event_name": "page_view", "user_id": "u", "viewed_at": "2026-01-02T03:04:05Z", "props": null}'
    echo 'keyed {"event_name": "crash_report", "user_id": 1, "timestamp": 2, "message": "m", "idempotency_key": "k-1"}'
    echo 'keyed_product {"event_name": "product", "id": 43, "idempotency_key": "k-2"}'
    echo 'declared_bad {"event_name": "page_view", "user_id": "u", "viewed_at": true}'
    echo 'unknown_field {"event_name": "crash_report", "user_id": 1, "timestamp": 2, "message": "m", "extra": 1}'
    echo 'wrong_type {"event_name": "crash_report", "user_id": "1", "timestamp": 2, "message": "m"}'
    echo 'missing {"event_name": "crash_report", "user_id": 1, "timestamp": 2}'
    echo 'no_name {"user_id": 1, "timestamp": 2, "message": "m"}'
    echo 'no_offset {"event_name": "data_sample", "time_stamp": "2026-11-26T10:00:00", "data": [1]}'
} >"$TMP/events"
out=$(check "$TMP/doc.json" <"$TMP/events")
eq "the OpenAPI validator finds the document valid" "document valid" "$(head -1 <<<"$out")"
[ "$(head -1 <<<"$out")" = "document valid" ] || echo "$out" | head -5
eq "the schemas take what the server takes and refuse what it refuses" \
    "example accepted
example accepted
example accepted
ad accepted
sample accepted
product accepted
login_null accepted
declared_epoch accepted
declared_text accepted
keyed accepted
keyed_product accepted
declared_bad refused
unknown_field refused
wrong_type refused
missing refused
no_name refused
no_offset refused" "$(tail -n +2 <<<"$out")"
# The server agrees with the schemas on the same events.
while read -r name event; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --data-binary "$event" "$URL/v1/events")
    case "$(grep "^$name " <<<"$(tail -n +2 <<<"$out")" | head -1)" in
    *accepted) want=202 ;;
    *) want=400 ;;
    esac
    eq "the server answers $name as the schema says" "$want" "$code"
done <"$TMP/events"
# A broken document is refused: the validator checks, it does not just parse.
jq 'del(.info) | .paths["/v1/types"].get.responses = 5' "$TMP/doc.json" >"$TMP/bad.json"
eq "the validator refuses a document without info" "document invalid" \
    "$(check "$TMP/bad.json" </dev/null | head -1)"

t_done openapi
