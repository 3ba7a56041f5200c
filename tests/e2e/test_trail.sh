#!/usr/bin/env bash
# test_trail.sh - GET /v1/events/{id}, an event's trail, over real HTTP with the harness's
# PostgreSQL: queued (valid, and rejected at ingest beside a valid one), loaded (append
# tables, user_login's processed_at), dead_letter (stage ingest and stage load), unknown
# ids (UUIDv7 and other versions: 404, state unknown), malformed ids (400), the method
# that tells the trail from POST /v1/events/{type}, and the API key rule.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
. tests/lib/lib_e2e.sh

QTOOL=$BUILD/tests/tools/qtool
e2e_setup trail
e2e_config ', "api_keys": []' '"interval_s": 3600'
start_server

# get ID: "CODE BODY" of GET /v1/events/ID.
get() {
    local id=$1
    shift
    curl -s -o "$DIR/out" -w '%{http_code}' "$@" "$URL/v1/events/$id"
    echo " $(cat "$DIR/out")"
}
# field JSON NAME: one field of a JSON answer (after its status code), as jq -r prints it.
field() { jq -r ".$2" <<<"${1#* }"; }
post_id() { curl -s --data-binary "$2" "$URL$1" | jq -r .id; }
RFC3339='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$'

# --- queued --------------------------------------------------------------------------------
ok "the loader creates the schema" drain
sql "ALTER TABLE $SCHEMA.crash_report ADD CONSTRAINT not_666 CHECK (user_id <> 666)"
crash=$(post_id /v1/events/crash_report '{"user_id": 7, "timestamp": 1700000000, "message": "m"}')
login=$(post_id /v1/events/user_login '{"user_id": "u1", "timestamp": 1700000000}')
# A valid event PostgreSQL refuses (a CHECK the operator added): a dead letter of stage load.
late=$(post_id /v1/events/crash_report '{"user_id": 666, "timestamp": 1700000000, "message": "m"}')
curl -s -o /dev/null --data-binary $'{"user_id": 9, "timestamp": 1, "message": "ok"}\n{"user_id": "x"}' \
    "$URL/v1/events/crash_report"
rejected=$("$QTOOL" "$QDIR" dump | awk '$4 == 1 {print $2}')
ok "the rejected event is queued with its flag" [ -n "$rejected" ]

r=$(get "$crash")
eq "queued: 200" 200 "${r%% *}"
eq "queued: state" queued "$(field "$r" state)"
eq "queued: id" "$crash" "$(field "$r" id)"
eq "queued: type" crash_report "$(field "$r" type)"
eq "queued: seq is the queue position" \
    "$("$QTOOL" "$QDIR" dump | awk -v id="$crash" '$2 == id {print $1}')" "$(field "$r" seq)"
ok "queued: received_at is RFC 3339 UTC with milliseconds" grep -Eq "$RFC3339" \
    <<<"$(field "$r" received_at)"
r=$(get "$rejected")
eq "rejected at ingest, still queued: state" queued "$(field "$r" state)"
eq "rejected at ingest: bound for stage ingest" ingest "$(field "$r" stage)"
has "rejected at ingest: the error" "timestamp: required field missing" "$(field "$r" error)"
r=$(get "${crash^^}")
eq "an id in capitals is the same id" "$crash" "$(field "$r" id)"

# --- loaded and dead_letter ------------------------------------------------------------------
queued_at=$(field "$(get "$crash")" received_at)
ok "the loader drains" drain
r=$(get "$crash")
eq "loaded: 200" 200 "${r%% *}"
eq "loaded: state" loaded "$(field "$r" state)"
eq "loaded: table" crash_report "$(field "$r" table)"
eq "loaded: received_at as it was while queued" "$queued_at" "$(field "$r" received_at)"
eq "loaded: loaded_at is the row's" \
    "$(sql "SELECT to_char(loaded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')
            FROM $SCHEMA.crash_report WHERE id = '$crash'")" "$(field "$r" loaded_at)"
r=$(get "$login")
eq "user_login loaded" "loaded user_login" "$(field "$r" state) $(field "$r" table)"
ok "user_login: loaded_at from processed_at" grep -Eq "$RFC3339" <<<"$(field "$r" loaded_at)"
r=$(get "$rejected")
eq "dead letter (ingest): 200" 200 "${r%% *}"
eq "dead letter (ingest): state, stage" "dead_letter ingest" "$(field "$r" state) $(field "$r" stage)"
has "dead letter (ingest): error" "timestamp: required field missing" "$(field "$r" error)"
eq "dead letter (ingest): replays" 0 "$(field "$r" replays)"
r=$(get "$late")
eq "dead letter (load): state, stage, type" "dead_letter load crash_report" \
    "$(field "$r" state) $(field "$r" stage) $(field "$r" type)"
has "dead letter (load): PostgreSQL's error" "SQLSTATE" "$(field "$r" error)"

# --- unknown and malformed -------------------------------------------------------------------
r=$(get 0190f0e0-0000-7000-8000-000000000000)
eq "unknown UUIDv7: 404" 404 "${r%% *}"
eq "unknown UUIDv7: state unknown" unknown "$(field "$r" state)"
r=$(get 3f2504e0-4f89-41d3-9a0c-0305e82c3301)
eq "unknown UUIDv4: 404 unknown" "404 unknown" "${r%% *} $(field "$r" state)"
r=$(get not-a-uuid)
eq "malformed id: 400" 400 "${r%% *}"
has "malformed id: says why" "not a valid UUID" "$r"
r=$(get 0190f0e0-0000-7000-8000-00000000000)
eq "an id one digit short: 400" 400 "${r%% *}"
r=$(curl -s -o /dev/null -w '%{http_code}' --data-binary '{}' "$URL/v1/events/$crash")
eq "POST to an id is no event type: 404" 404 "$r"
r=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$URL/v1/events/$crash")
eq "DELETE: 405" 405 "$r"
allow=$(curl -s -D - -o /dev/null -X DELETE "$URL/v1/events/$crash" | tr -d '\r' | sed -n 's/^Allow: //p')
eq "405 names the methods of the path" "GET, HEAD, POST, OPTIONS" "$allow"

# --- the API key rule --------------------------------------------------------------------------
stop_pid "$SPID"
sed -i 's/"api_keys": \[\]/"api_keys": ["k1"]/' "$CFG"
start_server
eq "with keys, no key: 401" 401 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/events/$crash")"
r=$(get "$crash" -H 'X-API-Key: k1')
eq "with the key: the trail" "200 loaded" "${r%% *} $(field "$r" state)"

t_done test_trail.sh
