#!/usr/bin/env bash
# test_segment_sdk.sh - the real analytics SDKs against the Segment tracking API (docs/api.md,
# "Sending from an analytics SDK"): @segment/analytics-node and @rudderstack/rudder-sdk-node,
# pinned in tests/tools/sdk/package-lock.json and installed under $BUILD/sdk by npm ci, send
# every call through /v1/batch with a write key; the loader's rows are checked column by
# column. Then each SDK flushes while the server is SIGKILLed and restarted, retrying by its
# own logic: every messageId it sent is in PostgreSQL exactly once.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
: "${DP_PG_CONNINFO:?run through make check (tests/pg run)}"

TMP=$(mktemp -d)
SCHEMA=segsdk_$$
trap 't_cleanup; sql "DROP SCHEMA IF EXISTS $SCHEMA CASCADE"; rm -rf "$TMP"' EXIT
export PGTZ=UTC

# --- the SDKs: npm ci from the lock file, again only when the lock file changed
SDIR=$BUILD/sdk
if ! cmp -s tests/tools/sdk/package-lock.json "$SDIR/package-lock.json" ||
    [ ! -d "$SDIR/node_modules/@segment/analytics-node" ]; then
    command -v npm >/dev/null || { echo "npm is missing: run make deps"; exit 1; }
    rm -rf "$SDIR"
    mkdir -p "$SDIR"
    cp tests/tools/sdk/package.json tests/tools/sdk/package-lock.json "$SDIR/"
    (cd "$SDIR" && npm ci --no-audit --no-fund --loglevel=error) ||
        { echo "npm ci of the SDKs failed"; exit 1; }
fi
cp tests/tools/sdk/send.mjs "$SDIR/"

PORT=$(free_port)
URL="http://127.0.0.1:$PORT"
cat >"$TMP/cfg.json" <<JSON
{"server": {"listen": "127.0.0.1:$PORT", "threads": 8,
            "api_keys": [{"name": "node", "key": "wk-node"}, {"name": "rudder", "key": "wk-rudder"}]},
 "queue": {"path": "$TMP/q", "max_bytes": 67108864, "id": "segsdk_$$", "sync": true},
 "database": {"conninfo": "$DP_PG_CONNINFO", "schema": "$SCHEMA"},
 "loader": {"interval_s": 3600, "min_interval_s": 1}}
JSON
server() {
    start_bg "$TMP/server.log" "$BIN/datapipe-server" -c "$TMP/cfg.json"
    SPID=$T_LAST_PID
    wait_until 20 "the server answers /healthz" http_answers "$URL/healthz" ||
        tail -5 "$TMP/server.log"
}
load() { timeout 120 "$BIN/datapipe-loader" -c "$TMP/cfg.json" --once >>"$TMP/loader.log" 2>&1; }
# send SDK KEY COUNT PREFIX [RETRIES [PACE_MS]]: the SDK's output, bounded in time.
send() { timeout 300 node "$SDIR/send.mjs" "$1" "$URL" "$2" "$3" "$4" "${5:-3}" "${6:-0}" 2>&1; }
q() { sql "SELECT $2 FROM $SCHEMA.$1 $3"; }
TABLES="identifies tracks pages screens groups aliases"
# count_of PREFIX: "ROWS DISTINCT" messageIds starting PREFIX- over the six tables.
count_of() {
    local union="" t
    for t in $TABLES; do
        union="$union${union:+ UNION ALL }SELECT message_id FROM $SCHEMA.$t WHERE message_id LIKE '$1-%'"
    done
    sql "SELECT count(*) || ' ' || count(DISTINCT message_id) FROM ($union) m"
}

server

# --- every call through /v1/batch, the write key as the SDK sends it
eq "analytics-node: 12 calls flushed" "flushed 12 failed 0" "$(send segment wk-node 12 seg)"
eq "rudder-sdk-node: 12 calls flushed" "flushed 12 failed 0" "$(send rudder wk-rudder 12 rud)"
ok "the loader loads" load
for t in $TABLES; do
    eq "$t: two rows from each SDK" "node|2
rudder|2" "$(q "$t" "source, count(*)" "GROUP BY source ORDER BY source")"
done
for sdk in seg:node rud:rudder; do
    p=${sdk%%:*} src=${sdk#*:}
    eq "$src identify: columns" \
        "$p-6|u-6|2026-03-01 10:00:00+00|sdk-test|$src|sk:${#src}:$src$p-6|{\"n\": 6, \"plan\": \"pro\"}|t|t" \
        "$(q identifies "message_id, user_id, timestamp, context->'app'->>'name', source, idempotency_key, traits::text, sent_at IS NOT NULL, received_at >= sent_at - interval '1 minute'" "WHERE message_id = '$p-6'")"
    eq "$src track: columns" \
        "$p-1|u-1|Signed Up|{\"n\": 1, \"via\": \"ad\"}|2026-03-01 10:00:00+00|$src" \
        "$(q tracks "message_id, user_id, event, properties::text, timestamp, source" "WHERE message_id = '$p-1'")"
    eq "$src page: columns" "$p-2|u-2|Home|{\"n\": 2, \"path\": \"/\"}|$src" \
        "$(q pages "message_id, user_id, name, properties::text, source" "WHERE message_id = '$p-2'")"
    eq "$src screen: columns" "$p-9|u-2|Cart|{\"n\": 9, \"items\": 2}|$src" \
        "$(q screens "message_id, user_id, name, properties::text, source" "WHERE message_id = '$p-9'")"
    eq "$src group: columns" "$p-4|u-4|g-4|{\"name\": \"Acme\"}|$src" \
        "$(q groups "message_id, user_id, group_id, traits::text, source" "WHERE message_id = '$p-4'")"
    eq "$src alias: columns" "$p-11|u-4|a-11|$src" \
        "$(q aliases "message_id, user_id, previous_id, source" "WHERE message_id = '$p-11'")"
done
eq "users: the identified users" 'u-0|{"n": 0, "plan": "pro"}
u-6|{"n": 6, "plan": "pro"}' "$(q users "user_id, traits::text" "ORDER BY user_id")"
eq "nothing dead-lettered" "0" "$(q dead_letter "count(*)" "")"

# --- each SDK flushing while the server is SIGKILLed and restarted: its own retries
N=600
for sdk in segment:wk-node:kseg rudder:wk-rudder:krud; do
    IFS=: read -r name key prefix <<<"$sdk"
    send "$name" "$key" "$N" "$prefix" 12 5 >"$TMP/$name.out" &
    sender=$!
    for _ in 1 2 3; do
        sleep 0.8
        kill -KILL "$SPID"
        wait "$SPID" 2>/dev/null
        sleep 0.3
        server
    done
    wait "$sender"
    eq "$name: flushed across 3 kills" "flushed $N failed 0" "$(tail -1 "$TMP/$name.out")"
done
ok "the loader loads" load
eq "analytics-node across kills: every messageId exactly once" "$N $N" "$(count_of kseg)"
eq "rudder-sdk-node across kills: every messageId exactly once" "$N $N" "$(count_of krud)"
eq "nothing dead-lettered" "0" "$(q dead_letter "count(*)" "")"

t_done test_segment_sdk
