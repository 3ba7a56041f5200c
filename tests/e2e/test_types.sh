#!/usr/bin/env bash
# test_types.sh - event types declared in the configuration, through both daemons against the
# harness's PostgreSQL: --check-config (errors with their key path, exit 2), POST, event_name
# routing, 400 texts, the loader creating the table, GET, metrics; SIGHUP adding a type to
# the server and the loader, a changed type said to need a restart; events of a type the
# loader no longer knows held in the queue and shown in /v1/status, loaded once it is back.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
: "${DP_PG_CONNINFO:?run through make check (tests/pg run)}"

TMP=$(mktemp -d)
SCHEMA=types_$$
trap 't_cleanup; sql "DROP SCHEMA IF EXISTS $SCHEMA CASCADE"; rm -rf "$TMP"' EXIT
PORT=$(free_port)
URL="http://127.0.0.1:$PORT"

PV_FIELDS='"user_id": {"type": "string", "required": true, "max_length": 64},
    "url": {"type": "url", "required": true},
    "viewed_at": {"type": "timestamp", "required": true},
    "duration_ms": {"type": "integer", "min": 0},
    "plan": {"type": "string", "enum": ["free", "pro"]},
    "props": {"type": "object"}'
PAGE_VIEW="\"page_view\": {\"fields\": {$PV_FIELDS}}"
PAGE_VIEW2="\"page_view\": {\"fields\": {$PV_FIELDS, \"referrer\": {\"type\": \"url\"}}}"
CLICK='"click": {"fields": {"target": {"type": "string", "required": true}}}'

# config TYPES: the one configuration file both daemons read.
config() {
    cat >"$TMP/cfg.json" <<JSON
{"server": {"listen": "127.0.0.1:$PORT", "threads": 8},
 "queue": {"path": "$TMP/q", "max_bytes": 67108864, "id": "types_$$", "sync": false},
 "database": {"conninfo": "$DP_PG_CONNINFO", "schema": "$SCHEMA"},
 "loader": {"interval_s": 3600, "min_interval_s": 1},
 "types": {$1}}
JSON
}
# post PATH BODY: prints "CODE BODY".
post() {
    curl -s -o "$TMP/out" -w '%{http_code}' --data-binary "$2" "$URL$1"
    echo " $(cat "$TMP/out")"
}
rows_are() { [ "$(sql "SELECT count(*) FROM $SCHEMA.$1")" = "$2" ]; }
logged() { grep -qF -- "$2" "$TMP/$1.log"; }
start_loader() {
    start_bg "$TMP/loader.log" "$BIN/datapipe-loader" -c "$TMP/cfg.json"
    LPID=$T_LAST_PID
}

# --- --check-config ------------------------------------------------------------------------
for d in datapipe-server datapipe-loader; do
    config '"page_view": {"fields": {"url": {"type": "urll"}, "id": {"type": "uuid"}}}'
    err=$("$BIN/$d" -c "$TMP/cfg.json" --check-config 2>&1 >/dev/null)
    eq "$d --check-config bad declaration exit" 2 $?
    has "$d names the field type" \
        "cfg.json: types.page_view.fields.url.type: unknown field type \"urll\"" "$err"
    has "$d names the reserved column" \
        "cfg.json: types.page_view.fields.id: reserved: every declared table has a column" "$err"
    config "$PAGE_VIEW"
    out=$("$BIN/$d" -c "$TMP/cfg.json" --check-config)
    eq "$d --check-config good declaration exit" 0 $?
    has "$d prints the declaration" '"max_length": 64' "$out"
done

# --- a declared type end to end --------------------------------------------------------------
config "$PAGE_VIEW"
start_bg "$TMP/server.log" "$BIN/datapipe-server" -c "$TMP/cfg.json"
SPID=$T_LAST_PID
wait_until 10 "server answers" http_answers "$URL/healthz" || cat "$TMP/server.log"
r=$(post /v1/events/page_view '{"user_id": "u1", "url": "https://example.com/a",
    "viewed_at": "2024-05-01T10:00:00+02:00", "duration_ms": 5, "plan": "pro",
    "props": {"x": 1.10}}')
has "POST a declared type: 202" '202 {"status_code":202,"status_message":"accepted","id":"' "$r"
# shellcheck disable=SC2001 # a pattern, which ${var//} cannot say
ID=$(sed 's/.*"id":"\([^"]*\)".*/\1/' <<<"$r")
r=$(post / '{"event_name": "page_view", "user_id": "u2", "url": "http://example.com/",
    "viewed_at": 1700000000}')
has "event_name routing: 202" '202 ' "$r"
eq "bad enum: 400" '400 {"status_code":400,"status_message":"plan: must be one of \"free\", \"pro\""}' \
    "$(post /v1/events/page_view '{"user_id": "u", "url": "http://a.b/", "viewed_at": 1, "plan": "gold"}')"
eq "unknown field: 400" '400 {"status_code":400,"status_message":"referrer: unknown field"}' \
    "$(post /v1/events/page_view '{"user_id": "u", "url": "http://a.b/", "viewed_at": 1, "referrer": "x"}')"
eq "not declared: 404 listing the types, the declared ones too" \
    '404 {"status_code":404,"status_message":"unknown event type \"click\" (valid types: crash_report, ad_event, user_login, product, data_sample, identifies, tracks, pages, screens, groups, aliases, users, page_view)"}' \
    "$(post /v1/events/click '{"target": "x"}')"
PV3='{"user_id": "u3", "url": "http://a.b/", "viewed_at": 1, "idempotency_key": "pv-1"}'
r=$(post /v1/events/page_view "$PV3
{\"user_id\": \"u4\", \"url\": \"http://a.b/\", \"viewed_at\": 1, \"idempotency_key\": \"pv-2\"}
$PV3")
has "a keyed NDJSON batch of a declared type: the key is no field" \
    '202 {"status_code":202,"status_message":"accepted","accepted":3,"rejected":0,"duplicates":1' "$r"

start_loader
wait_until 30 "the loader creates the table and loads" rows_are page_view 4
eq "the keys are in their column" "u3 pv-1|u4 pv-2" \
    "$(sql "SELECT string_agg(user_id || ' ' || idempotency_key, '|' ORDER BY user_id)
            FROM $SCHEMA.page_view WHERE idempotency_key IS NOT NULL")"
eq "rows as sent" "u1|https://example.com/a|2024-05-01 08:00:00+00|5|pro|{\"x\": 1.10}" \
    "$(sql "SET TimeZone TO 'UTC'; SELECT user_id, url, viewed_at, duration_ms, plan, props
            FROM $SCHEMA.page_view WHERE user_id = 'u1'")"
r=$(curl -s -w ' %{http_code}' "$URL/v1/events/page_view/$ID")
has "GET a declared type" "\"id\":\"$ID\",\"user_id\":\"u1\",\"url\":\"https://example.com/a\"" "$r"
has "GET: 200" ' 200' "$r"
m=$(curl -s "$URL/metrics")
has "metrics by declared type" 'datapipe_events_accepted_total{type="page_view"} 4' "$m"
has "rejections by declared type" 'datapipe_events_rejected_total{type="page_view"} 2' "$m"

# --- SIGHUP: a new type is added to both; a changed one needs a restart ------------------------
config "$PAGE_VIEW, $CLICK"
kill -HUP "$SPID" "$LPID"
wait_until 10 "server: new type registered" logged server "declared event type registered type=click"
eq "new type accepted after SIGHUP" 202 "$(post /v1/events/click '{"target": "buy"}' | cut -c1-3)"
wait_until 10 "loader: new type registered" logged loader "declared event type added type=click"
kill -USR1 "$LPID"
wait_until 30 "loader creates the new table and loads it" rows_are click 1

config "$PAGE_VIEW2, $CLICK"
kill -HUP "$SPID" "$LPID"
wait_until 10 "server: changed type needs a restart" \
    logged server "changed settings need a restart daemon=datapipe-server settings=types.page_view"
wait_until 10 "loader: changed type needs a restart, in the server's words" \
    logged loader "changed settings need a restart daemon=datapipe-loader settings=types.page_view"
eq "the running declaration stays" '400 {"status_code":400,"status_message":"referrer: unknown field"}' \
    "$(post /v1/events/page_view '{"user_id": "u", "url": "http://a.b/", "viewed_at": 1, "referrer": "http://c.d/"}')"

# --- a type the loader no longer knows: held, shown, loaded once it is back ----------------------
stop_pid "$LPID"
eq "loader stops" 0 "$T_RC"
config "$PAGE_VIEW"
eq "queued under click" 202 "$(post /v1/events/click '{"target": "held"}' | cut -c1-3)"
start_loader
held() { curl -s "$URL/v1/status" | grep -qF '"held_events":1,"held_types":"click"'; }
wait_until 30 "/v1/status shows the held event" held
wait_until 10 "the loader says so" logged loader "stay queued: declare their types again"
eq "not dead-lettered" 0 "$(sql "SELECT count(*) FROM $SCHEMA.dead_letter")"
stop_pid "$LPID"
config "$PAGE_VIEW, $CLICK"
start_loader
wait_until 30 "loaded once the type is back" rows_are click 2
notheld() { curl -s "$URL/v1/status" | grep -qF '"held_events":0,"held_types":""'; }
wait_until 30 "/v1/status: nothing held" notheld
stop_pid "$LPID"
stop_pid "$SPID"
eq "server stops" 0 "$T_RC"
t_done types
