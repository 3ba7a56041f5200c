#!/usr/bin/env bash
# test_names.sh - the names datapipe creates in PostgreSQL, through both daemons: declared types
# named like another type's derived names (a and a_keyed) and a 63-byte type name, with a key
# repeated after queue.dedup_window_s so that its batch takes the keyed fallback; every
# acknowledged event must be in its table exactly once. A field named t (the read queries'
# alias) read back. Names PostgreSQL or datapipe already uses refused by --check-config and by
# SIGHUP, with the key path, while both daemons keep running.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
: "${DP_PG_CONNINFO:?run through make check (tests/pg run)}"

TMP=$(mktemp -d)
SCHEMA=names_$$
trap 't_cleanup; sql "DROP SCHEMA IF EXISTS $SCHEMA CASCADE"; rm -rf "$TMP"' EXIT
PORT=$(free_port)
URL="http://127.0.0.1:$PORT"
# 63 bytes: the longest name PostgreSQL keeps whole.
LONG=l$(printf 'o%.0s' $(seq 61))g
FIELDS='{"fields": {"n": {"type": "integer", "required": true}}}'

# config TYPES: the one configuration file both daemons read (keys remembered for 1 s).
config() {
    cat >"$TMP/cfg.json" <<JSON
{"server": {"listen": "127.0.0.1:$PORT", "threads": 8},
 "queue": {"path": "$TMP/q", "max_bytes": 67108864, "id": "names_$$", "sync": false,
           "dedup_window_s": 1},
 "database": {"conninfo": "$DP_PG_CONNINFO", "schema": "$SCHEMA"},
 "loader": {"interval_s": 3600},
 "types": {$1}}
JSON
}
# post PATH BODY [CURL ARGS...]: prints "CODE BODY".
post() {
    local path=$1 body=$2
    shift 2
    curl -s -o "$TMP/out" -w '%{http_code}' --data-binary "$body" "$@" "$URL$path"
    echo " $(cat "$TMP/out")"
}
drain() { timeout 120 "$BIN/datapipe-loader" -c "$TMP/cfg.json" --once >>"$TMP/drain.log" 2>&1; }
count() { sql "SELECT count(*) FROM $SCHEMA.\"$1\""; }
# stored_again TYPE KEY: the same event with KEY is stored anew (the server forgot the key).
stored_again() {
    local r
    r=$(post "/v1/events/$1" '{"n": 1}' -H "Idempotency-Key: $2")
    case $r in "202 "*) [[ $r != *'"duplicate":true'* ]] ;; *) return 1 ;; esac
}

# --- a and a_keyed, a 63-byte name: a key repeated after the window ----------------------------
config "\"a\": $FIELDS, \"a_keyed\": $FIELDS, \"$LONG\": $FIELDS,
    \"t\": {\"fields\": {\"t\": {\"type\": \"string\"}}}"
start_bg "$TMP/server.log" "$BIN/datapipe-server" -c "$TMP/cfg.json"
SPID=$T_LAST_PID
wait_until 20 "server answers" http_answers "$URL/healthz" || cat "$TMP/server.log"
has "first a with key k1: 202" '202 ' "$(post /v1/events/a '{"n": 1}' -H 'Idempotency-Key: k1')"
has "first $LONG with key k2: 202" '202 ' \
    "$(post "/v1/events/$LONG" '{"n": 1}' -H 'Idempotency-Key: k2')"
drain
eq "first drain exit" 0 $?
eq "a: one row" 1 "$(count a)"
eq "$LONG: one row" 1 "$(count "$LONG")"

# After the window the server stores the repeats again; PostgreSQL already holds their keys.
wait_until 20 "the server forgot a's key" stored_again a k1
wait_until 20 "the server forgot $LONG's key" stored_again "$LONG" k2
has "two a_keyed in the same batch: 202" '"accepted":2' \
    "$(post /v1/events/a_keyed $'{"n": 2}\n{"n": 3}')"
has "one more $LONG: 202" '202 ' "$(post "/v1/events/$LONG" '{"n": 4}')"
drain
eq "second drain exit" 0 $?
eq "a: the repeat skipped, one row" 1 "$(count a)"
eq "a_keyed: both rows, once" "2|3" \
    "$(sql "SELECT string_agg(n::text, '|' ORDER BY n) FROM $SCHEMA.a_keyed")"
eq "$LONG: the repeat skipped, the new one loaded" "1|4" \
    "$(sql "SELECT string_agg(n::text, '|' ORDER BY n) FROM $SCHEMA.\"$LONG\"")"
eq "no dead letter" 0 "$(count dead_letter)"
eq "every table's keys: one unique index each" "a 1|a_keyed 1|$LONG 1" \
    "$(sql "SELECT string_agg(t.relname || ' ' || (SELECT count(*) FROM pg_index x
            JOIN pg_attribute c ON c.attrelid = x.indrelid AND c.attnum = x.indkey[0]
            WHERE x.indrelid = t.oid AND x.indisunique AND c.attname = 'idempotency_key'),
            '|' ORDER BY t.relname)
            FROM pg_class t JOIN pg_namespace s ON s.oid = t.relnamespace
            WHERE s.nspname = '$SCHEMA' AND t.relname IN ('a', 'a_keyed', '$LONG')")"
# A field named like the read queries' table alias is read as a field, not as the row.
r=$(post /v1/events/t '{"t": "v"}')
has "t: 202" '202 ' "$r"
TID=${r#*\"id\":\"}
TID=${TID%%\"*}
drain
eq "third drain exit" 0 $?
r=$(curl -s -w ' %{http_code}' "$URL/v1/events/t/$TID")
has "GET /v1/events/t/{id}: the row" "{\"id\":\"$TID\",\"t\":\"v\"," "$r"
has "GET /v1/events/t/{id}: 200" ' 200' "$r"
r=$(curl -s -w ' %{http_code}' "$URL/v1/events/$TID")
has "GET /v1/events/{id}: loaded" '"state":"loaded"' "$r"
has "GET /v1/events/{id}: when" '"loaded_at":"2' "$r"
has "GET /v1/events/{id}: 200" ' 200' "$r"
m=$(curl -s "$URL/metrics")
has "loaded a_keyed counted" 'datapipe_loader_events_loaded_total{type="a_keyed"} 2' "$m"

# --- SIGHUP with a name PostgreSQL would refuse: both daemons keep what runs ---------------------
start_bg "$TMP/loader.log" "$BIN/datapipe-loader" -c "$TMP/cfg.json"
LPID=$T_LAST_PID
logged() { grep -qF -- "$2" "$TMP/$1.log"; }
wait_until 20 "the loader is ready" logged loader "connected to PostgreSQL"
config "\"a\": $FIELDS, \"a_keyed\": $FIELDS, \"$LONG\": $FIELDS,
    \"t\": {\"fields\": {\"t\": {\"type\": \"string\"}}},
    \"pg_class\": $FIELDS, \"b\": {\"fields\": {\"xmin\": {\"type\": \"integer\"}}}"
kill -HUP "$SPID" "$LPID"
for d in server loader; do
    wait_until 10 "$d: the reload is refused" logged "$d" \
        "configuration reload failed: keeping the running one errors="
    r=$(grep 'reload failed' "$TMP/$d.log")
    has "$d: the type's reason" \
        "cfg.json: types.pg_class: name taken by PostgreSQL (names beginning pg_ are" "$r"
    has "$d: the field's reason" \
        'cfg.json: types.b.fields.xmin: reserved: PostgreSQL gives every table a system column' "$r"
done
has "a still taken: 202" '202 ' "$(post /v1/events/a '{"n": 5}')"
kill -USR1 "$LPID"
a_is_2() { [ "$(count a)" = 2 ]; }
wait_until 20 "the running loader still loads" a_is_2
eq "no pg_class table in the schema" 0 \
    "$(sql "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = '$SCHEMA' AND c.relname IN ('pg_class', 'b')")"
stop_pid "$LPID"
eq "loader stops" 0 "$T_RC"
stop_pid "$SPID"
eq "server stops" 0 "$T_RC"

# --- --check-config refuses names that are taken -------------------------------------------------
refused() {
    local d
    config "$1"
    for d in datapipe-server datapipe-loader; do
        err=$("$BIN/$d" -c "$TMP/cfg.json" --check-config 2>&1 >/dev/null)
        eq "$d --check-config $3: exit" 2 $?
        has "$d --check-config $3: the reason" "cfg.json: $2" "$err"
    done
}
refused "\"pg_type\": $FIELDS" \
    "types.pg_type: name taken by PostgreSQL (names beginning pg_ are its system catalogs')" \
    "pg_type"
refused "\"queue_owners\": $FIELDS" \
    "types.queue_owners: name taken by one of the appliance's own tables" "queue_owners"
refused '"x": {"fields": {"xmin": {"type": "integer"}}}' \
    'types.x.fields.xmin: reserved: PostgreSQL gives every table a system column "xmin"' "xmin"
t_done names
