#!/usr/bin/env bash
# test_server.sh - datapipe-server over real HTTP on loopback with a real
# queue: every route and status code of docs/api.md, bodies (NDJSON,
# arrays, gzip, limits), auth, CORS, TLS, queue full and recovery, GET against
# the harness's PostgreSQL, and SIGTERM under load losing no acknowledged event.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh

TMP=$(mktemp -d)
trap 't_cleanup; rm -rf "$TMP"' EXIT
QTOOL=$BUILD/tests/tools/qtool

# server NAME EXTRA_JSON_SERVER_KEYS [QUEUE_MAX_BYTES]: start one server, set URL and SPID.
server() {
    local name=$1 extra=$2 max=${3:-67108864} port
    port=$(free_port)
    mkdir -p "$TMP/$name"
    cat >"$TMP/$name/cfg.json" <<JSON
{"server": {"listen": "127.0.0.1:$port${TLS_SUFFIX:-}", "threads": 16, "max_body_bytes": ${MAXBODY:-65536},
            "request_timeout_ms": 2000 $extra},
 "queue": {"path": "$TMP/$name/q", "max_bytes": $max},
 "database": {"conninfo": "${CONNINFO:-${DP_PG_CONNINFO:-dbname=none}}", "schema": "srvtest"}}
JSON
    start_bg "$TMP/$name/log" "$BIN/datapipe-server" -c "$TMP/$name/cfg.json"
    SPID=$T_LAST_PID
    if [ -n "${TLS_SUFFIX:-}" ]; then URL="https://127.0.0.1:$port"; else URL="http://127.0.0.1:$port"; fi
    wait_until 20 "server $name answers /healthz" http_answers "$URL/healthz" ||
        { echo "server $name did not start:"; cat "$TMP/$name/log"; }
}

# post PATH BODY [CURL ARGS...]: prints "CODE BODY".
post() {
    local path=$1 body=$2
    shift 2
    curl -s -o "$TMP/out" -w '%{http_code}' --data-binary "$body" "$@" "$URL$path"
    echo " $(cat "$TMP/out")"
}

SEED='{"event_name": "crash_report","user_id": 888,"timestamp": 1000,"message": "have_fun"}'
AD='{"ip_address": "10.1.2.3", "user_agent": "Mozilla/5.0", "referring_url": "https://example.com/a?b=c", "advertiser_id": "adv-1", "metadata": {"campaign": "x"}}'

server main ""

# --- the seed examples
r=$(post / "$SEED")
has "seed → 202" "202 {\"status_code\":202,\"status_message\":\"accepted\",\"id\":\"" "$r"
id=$(sed -n 's/.*"id":"\([0-9a-f-]*\)".*/\1/p' <<<"$r")
ok "seed id is a UUIDv7" grep -Eq '^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' <<<"$id"
dump=$("$QTOOL" "$TMP/main/q" dump)
has "seed stored with its id and exact bytes" "$id crash_report 0 $SEED" "$dump"
r=$(post /v1/events "$SEED")
has "POST /v1/events → 202" "202 " "$r"
r=$(post /v1/events/crash_report '{"user_id": 1, "timestamp": 2, "message": "typed"}')
has "POST /v1/events/{type} → 202" "202 " "$r"
r=$(post / '{"event_name": " crash_report","user_id": 888,"timestamp": 1000,"message": "have_fun"}')
eq "leading space in event_name → 400" \
    '400 {"status_code":400,"status_message":"event_name: unknown event type \" crash_report\" (valid types: crash_report, ad_event, user_login, product, data_sample)"}' "$r"
r=$(post /v1/events/product '{"id": "n1", "price": {"list": [1, 1e-20000]}}')
eq "a number jsonb refuses → 400 naming its path" \
    '400 {"status_code":400,"status_message":"price.list[1]: number \"1e-20000\" is out of PostgreSQL'"'"'s numeric range"}' "$r"
r=$(post /v1/events/crash_report '{"event_name": "ad_event", "user_id": 1, "timestamp": 2, "message": "m"}')
has "event_name must equal the URL type" '400 ' "$r"
r=$(post /submit "$AD")
eq "/submit → 204 no body" "204 " "$r"
r=$(post /submit "$AD
$AD")
eq "/submit of two valid events → 204" "204 " "$r"
r=$(post /submit "$AD
{\"ip_address\": \"1.2.3\"}")
has "/submit with a rejected event → 202 with the details" '202 {"status_code":202,"status_message":"partly accepted","accepted":1,"rejected":1' "$r"
r=$(post /submit '{"ip_address": "10.01.2.3", "user_agent": "u", "referring_url": "https://e.com", "advertiser_id": "a"}')
has "bad IPv4 → 400 naming the field" '400 {"status_code":400,"status_message":"ip_address' "$r"
r=$(post /submit '{"ip_address": "10.1.2.3", "user_agent": "u", "referring_url": "ftp://e.com/x", "advertiser_id": "a"}')
has "bad URL → 400 naming the field" '400 {"status_code":400,"status_message":"referring_url' "$r"
r=$(post /v1/events/crash_report '{"user_id": "x", "timestamp": 2, "message": "m"}')
eq "wrong type named" '400 {"status_code":400,"status_message":"user_id: expected integer, got string"}' "$r"
r=$(post /v1/events/crash_report '{"user_id": 1, "timestamp": 1700000000123, "message": "m"}')
eq "a timestamp in milliseconds is called so" '400 {"status_code":400,"status_message":"timestamp: 1700000000123 looks like milliseconds: expected integer epoch seconds (1700000000)"}' "$r"
r=$(post /v1/events/crash_report '{"user_id": 1, "timestamp": 1700000000.25, "message": "m"}')
eq "a floating-point epoch: integer seconds expected" '400 {"status_code":400,"status_message":"timestamp: expected integer epoch seconds, got floating-point number 1700000000.25"}' "$r"
r=$(post /v1/events/crash_report '{"user_id": 1, "timestamp": 2, "message": "m", "extra": 1}')
has "unknown field → 400" '400 ' "$r"
has "unknown field named" 'extra' "$r"
r=$(post / 'not json')
has "not JSON → 400" '400 ' "$r"
r=$(post / '')
eq "empty body → 400" '400 {"status_code":400,"status_message":"empty body: expected one or more JSON events"}' "$r"

# --- several events: NDJSON, arrays, partial acceptance, dead letters
before=$("$QTOOL" "$TMP/main/q" stats)
r=$(post /v1/events/crash_report $'{"user_id": 1, "timestamp": 2, "message": "a"}\n{"user_id": "bad", "timestamp": 2, "message": "b"}\n{"user_id": 3, "timestamp": 4, "message": "c"}')
eq "NDJSON partial → 202, the ids of the accepted" '202 {"status_code":202,"status_message":"partly accepted","accepted":2,"rejected":1,"duplicates":0,"ids":["ID",null,"ID"],"errors":[{"index":1,"error":"user_id: expected integer, got string"}]}' "$(sed -E 's/"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"/"ID"/g' <<<"$r")"
dump=$("$QTOOL" "$TMP/main/q" dump)
has "rejected event kept for dead_letter (flag 1)" 'crash_report 1 {"user_id": "bad", "timestamp": 2, "message": "b"}' "$dump"
r=$(post / "[$SEED, $SEED, {\"event_name\": \"crash_report\"}]" -H 'Content-Type: application/json')
has "array: 2 accepted 1 rejected" '"accepted":2,"rejected":1,"duplicates":0,"ids":["ID","ID",null],"errors":[{"index":2,' "$(sed -E 's/"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"/"ID"/g' <<<"$r")"
r=$(post / "$SEED$SEED")
has "concatenated objects (curl -d @file)" '"accepted":2,"rejected":0' "$r"
n1=$("$QTOOL" "$TMP/main/q" stats)
r=$(post /v1/events/crash_report $'{"user_id": "a"}\n{"user_id": "b"}')
has "all invalid → 400 with errors" '400 {"status_code":400,"status_message":"no valid event in the body","accepted":0,"rejected":2' "$r"
eq "all invalid: nothing stored" "$n1" "$("$QTOOL" "$TMP/main/q" stats)"
ok "stats changed after accepted posts" [ "$before" != "$n1" ]

# --- content types, encodings, limits
r=$(post / "$SEED" -H 'Content-Type: application/x-ndjson')
has "x-ndjson accepted" '202 ' "$r"
r=$(post / "$SEED" -H 'Content-Type: text/plain; charset=utf-8')
has "text/plain with charset accepted" '202 ' "$r"
r=$(post / "$SEED" -H 'Content-Type: image/png')
has "other Content-Type → 415" '415 ' "$r"
printf '%s' "$SEED" | gzip -c >"$TMP/seed.gz"
r=$(curl -s -w ' %{http_code}' --data-binary @"$TMP/seed.gz" -H 'Content-Encoding: gzip' "$URL/")
has "gzip body → 202" '"status_message":"accepted","id":' "$r"
r=$(curl -s -w ' %{http_code}' --data-binary "$SEED" -H 'Content-Encoding: br' "$URL/")
has "unknown Content-Encoding → 415" ' 415' "$r"
r=$(curl -s -w ' %{http_code}' --data-binary @"$TMP/seed.gz" -H 'Content-Encoding: gzip' -H 'Content-Type: application/json' "$URL/v1/events/ad_event")
has "gzip body validated after inflating" ' 400' "$r"
head -c 70000 /dev/zero | tr '\0' ' ' >"$TMP/big"
r=$(curl -s -o /dev/null -w '%{http_code}' --data-binary @"$TMP/big" "$URL/")
eq "body over max_body_bytes → 413" 413 "$r"
head -c 20000000 /dev/zero | gzip -c >"$TMP/bomb.gz"
r=$(curl -s -o /dev/null -w '%{http_code}' --data-binary @"$TMP/bomb.gz" -H 'Content-Encoding: gzip' "$URL/")
eq "gzip bomb (20 MB of zeros) → 413" 413 "$r"
r=$(curl -s -o /dev/null -w '%{http_code}' -H 'Transfer-Encoding: chunked' --data-binary "$SEED" "$URL/")
eq "chunked body → 202" 202 "$r"
r=$(curl -s -o /dev/null -w '%{http_code}' -H 'Transfer-Encoding: chunked' --data-binary @"$TMP/big" "$URL/")
eq "chunked body over the limit → 413" 413 "$r"

cat "$TMP/seed.gz" "$TMP/seed.gz" >"$TMP/two.gz"
r=$(curl -s -w ' %{http_code}' --data-binary @"$TMP/two.gz" -H 'Content-Encoding: gzip' "$URL/")
has "two gzip members are one body of two events" '"accepted":2,"rejected":0' "$r"
{ cat "$TMP/seed.gz"; printf 'GARBAGE'; } >"$TMP/junk.gz"
r=$(curl -s -w ' %{http_code}' --data-binary @"$TMP/junk.gz" -H 'Content-Encoding: gzip' "$URL/")
has "bytes after the gzip stream → 400" ' 400' "$r"
n0=$("$QTOOL" "$TMP/main/q" stats)
port=${URL##*:}
exec 5<>"/dev/tcp/127.0.0.1/$port"
printf 'POST /v1/events/crash_report HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"user_id": 1, "timestamp": 2, "message": "a"}\n{"user_id": 2, "timestamp": 2, "message": "b"}\n' >&5
r=$(timeout 10 cat <&5)
exec 5>&-
has "a body cut short of its Content-Length → 400" 'HTTP/1.1 400' "$r"
has "the 400 says why" 'body incomplete: shorter than its Content-Length' "$r"
exec 5<>"/dev/tcp/127.0.0.1/$port"
printf 'POST /v1/events/crash_report HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n' >&5
trickled=0
for k in $(seq 1 40); do
    printf ' ' >&5 2>/dev/null || break
    trickled=$k
    read -r -t 0.01 -u 5 line && break
    # The trickle's pace: a byte every 250 ms, slower than request_timeout_ms allows.
    sleep 0.25
done
r="$line$(timeout 5 cat <&5)"
exec 5>&-
has "a body trickled in a byte at a time is cut off → 400" 'HTTP/1.1 400' "$r"
ok "cut off after request_timeout_ms in all, not after the whole body ($trickled of 40 bytes sent)" [ "$trickled" -lt 30 ]
eq "nothing of a truncated body is stored" "$n0" "$("$QTOOL" "$TMP/main/q" stats)"

# --- connections: one write per answer, keep-alive kept, HTTP/1.0 closed
r=$(curl -sv -d "$SEED" "$URL/" "$URL/healthz" 2>&1)
has "keep-alive: the second request reuses the connection" 'Re-using existing connection' "$r"
has "answer has Content-Length" 'Content-Length: 92' "$r"
r=$(curl -s -D - --http1.0 -d "$SEED" "$URL/")
has "HTTP/1.0 gets its 202" 'HTTP/1.1 202 Accepted' "$r"
has "HTTP/1.0 gets Connection: close" 'Connection: close' "$r"

# --- routes and methods
eq "unknown path → 404" 404 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/nope")"
r=$(post /v1/events/no_such_type "$SEED")
eq "unknown type → 404 naming it and the valid ones" '404 {"status_code":404,"status_message":"unknown event type \"no_such_type\" (valid types: crash_report, ad_event, user_login, product, data_sample)"}' "$r"
eq "GET /submit → 405" 405 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/submit")"
ok "405 names Allow" grep -qi '^Allow: POST' <(curl -s -D - -o /dev/null "$URL/submit")
eq "DELETE /v1/events → 405" 405 "$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$URL/v1/events")"
eq "POST /healthz → 405" 405 "$(curl -s -o /dev/null -w '%{http_code}' -d x "$URL/healthz")"
r=$(curl -s -I "$URL/healthz" "$URL/healthz" -w '%{http_code}\n')
eq "HEAD twice on one connection: two 200s, no body to desync" 2 "$(grep -c '^200$' <<<"$r")"
r=$(curl -s -o "$TMP/headbody" -w '%{http_code} %{size_download}' -X HEAD --max-time 3 "$URL/submit")
eq "HEAD /submit → 405 without a body" "405 0" "$r"
eq "/healthz → 200" 200 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz")"
eq "/readyz → 200" 200 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz")"
st=$(curl -s "$URL/v1/status")
has "/v1/status shows queue depth" '"queue":{"events":' "$st"
has "/v1/status shows the loader" '"loader":{"last_run_at":null' "$st"
ok "/v1/status: times are RFC 3339 UTC with milliseconds" \
    grep -Eq '"now":"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z"' <<<"$st"
ok "/v1/status: oldest event as RFC 3339, its age in seconds" \
    grep -Eq '"oldest_event_at":"[0-9-]{10}T[0-9:]{8}\.[0-9]{3}Z","oldest_event_age_s":[0-9.]+' <<<"$st"
# The bad input this test sent is a problem worth a look, and once the server has run longer
# than a loader's heartbeat may be late, so is the missing loader; nothing else is
# (test_health.sh tests the levels).
has "/v1/status: the share of bad POSTs is a problem" "rejected as bad input (4xx)" "$st"
eq "/v1/status: no problem but the bad input and the missing loader" "" \
    "$(jq -r '.problems[] | select(startswith("no loader has run") or
        test("rejected as bad input") | not)' <<<"$st")"
has "/v1/status: the conservation numbers add up" \
    "\"events\":{\"accepted\":$(sed -n 's/.*"events":{"accepted":\([0-9]*\),.*/\1/p' <<<"$st")" "$st"
h=$(curl -s "$URL/v1/status/history")
has "/v1/status/history: 10 s samples, an hour of them" '"interval_s":10,"max_samples":360' "$h"
r=$(curl -s -D - "$URL/status")
has "/status is HTML" 'Content-Type: text/html; charset=utf-8' "$r"
has "/status loads nothing from elsewhere" "default-src 'none'" "$r"
has "/status is the built-in page" '<title>datapipe status</title>' "$r"
# shellcheck disable=SC2016 # $0 is the inner bash's: the page, passed as its argument
ok "/status names no external script, style or font" bash -c '! grep -Eiq "(src|href)=\"(https?:)?//" <<<"$0"' "$r"
m=$(curl -s "$URL/metrics")
for name in 'datapipe_http_requests_total{code="202"}' 'datapipe_events_accepted_total{type="crash_report"}' \
    'datapipe_events_rejected_total{type="crash_report"}' datapipe_queue_events datapipe_queue_bytes \
    datapipe_queue_capacity_bytes datapipe_queue_oldest_event_age_seconds \
    datapipe_loader_dead_letters_total datapipe_loader_last_success_timestamp_seconds; do
    has "/metrics has $name" "$name" "$m"
done
has "/metrics counts 413s" 'datapipe_http_requests_total{code="413"} 3' "$m"
ok "/metrics is strict Prometheus text: HELP and TYPE for every family, no empty label" \
    awk -f tests/lib/prom_lint.awk <<<"$m"
awk -f tests/lib/prom_lint.awk <<<"$m" | head -5
ok "the lint refuses an empty label value and a family without HELP and TYPE" \
    bash -c '! awk -f tests/lib/prom_lint.awk >/dev/null' <<<$'# HELP a_total x\n# TYPE a_total counter\na_total{type=""} 1\nb 2'
ok "events with no type (not JSON, unknown event_name) are counted under type=\"(none)\"" \
    grep -Eq '^datapipe_events_rejected_total\{type="\(none\)"\} [1-9]' <<<"$m"
n_req=$(awk -F'} ' '/^datapipe_http_requests_total\{/ {n += $2} END {print n}' <<<"$m")
n_hist=$(awk '$1 == "datapipe_http_request_duration_seconds_count" {print $2}' <<<"$m")
ok "the latency histogram counts every answered request but this scrape ($n_hist of $n_req)" \
    [ "$n_hist" = "$n_req" ]
has "the latency histogram has Prometheus buckets" \
    'datapipe_http_request_duration_seconds_bucket{le="0.001024"} ' "$m"
has "loader error counter (none yet)" $'\ndatapipe_loader_errors_total 0\n' "$m"
has "loader retry counter (none yet)" $'\ndatapipe_loader_retries_total 0\n' "$m"

# --- GET of stored rows (PostgreSQL from tests/pg; the loader has not run)
eq "GET malformed id → 400" 400 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/events/crash_report/not-a-uuid")"
eq "GET before load → 404" 404 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/events/crash_report/$id")"
eq "GET /product/{id} before load → 404" 404 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/product/p-1")"
r=$(post /v1/events/product '{"id": "p-1", "name": "lamp", "price": 12.5}')
has "product accepted" '202 ' "$r"
r=$(post /v1/events/data_sample '{"time_stamp": "2026-11-26T10:00:00+01:00", "data": [1, 2, 3, 4]}')
sid=$(sed -n 's/.*"id":"\([0-9a-f-]*\)".*/\1/p' <<<"$r")
"$BIN/datapipe-loader" -c "$TMP/main/cfg.json" --once 2>"$TMP/main/loader.log"
eq "loader --once drains the server's queue" 0 $?
r=$(curl -s -w ' %{http_code}' "$URL/v1/events/crash_report/$id")
has "GET after load → 200" ' 200' "$r"
has "GET returns the stored row" "\"id\":\"$id\",\"event_name\":\"crash_report\",\"user_id\":888,\"event_time\":\"1970-01-01T00:16:40+00:00\",\"message\":\"have_fun\"" "$r"
r=$(curl -s "$URL/product/p-1")
eq "GET /product/{id} returns its doc" '{"id": "p-1", "name": "lamp", "price": 12.5}' "$r"
r=$(curl -s "$URL/v1/events/data_sample/$sid")
has "data_sample GET: UTC time, n, mean" '"time_stamp":"2026-11-26T09:00:00+00:00","n":4,"mean":2.5' "$r"
ok "data_sample GET leaves raw out" bash -c "! grep -q raw <<<\"\$0\"" "$r"
eq "GET unknown uuid → 404" 404 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/events/crash_report/01a21737-c807-76fd-8580-637c3e1c2050")"
# Ids that cannot exist are answered before any query, never as a 500 (a bug).
eq "GET /product/%FF (invalid UTF-8) → 400" 400 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/product/%FF")"
eq "GET /v1/events/product/a%C3 (cut UTF-8) → 400" 400 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/events/product/a%C3")"
eq "GET /product/%00 (NUL) → 404" 404 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/product/%00")"
# civetweb's decoded path ends at the NUL: the id is "a".
eq "GET /product/a%00b (NUL inside) → 404" 404 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/product/a%00b")"
eq "GET /product/<300 bytes> → 404" 404 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/product/$(printf 'x%.0s' {1..300})")"
ok "no GET logged as a bug" bash -c "! grep -E 'query failed|prepare failed' \"\$0\"" "$TMP/main/log"
# 500 GETs of distinct ids, 8 at a time (threads / 2: the most reads the server lets wait on
# the database) over 16 worker threads: the server keeps no more PostgreSQL connections than
# its read pool holds (min(4, threads / 2) = 4).
curl -s -Z --parallel-max 8 -w '\n%{http_code}\n' "$URL/product/pool-[1-500]" >"$TMP/pool.out"
eq "500 GETs of distinct ids → 500 × 404" 500 "$(grep -cx 404 "$TMP/pool.out")"
nconn=$(psql "$DP_PG_CONNINFO" -At -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'datapipe-server'")
ok "after 500 GETs the server holds 1 to 4 connections (got $nconn)" test "$nconn" -ge 1 -a "$nconn" -le 4
st=$(curl -s "$URL/v1/status")
has "/v1/status: the loader's last run ok" '"last_result":"ok"' "$st"
has "/v1/status: queue empty after the drain" '"queue":{"events":0' "$st"
acc=$(sed -n 's/.*"events":{"accepted":\([0-9]*\),.*/\1/p' <<<"$st")
ld=$(sed -n 's/.*"events":{[^}]*"loaded":\([0-9]*\),.*/\1/p' <<<"$st")
dl=$(sed -n 's/.*"events":{[^}]*"dead_lettered":\([0-9]*\),.*/\1/p' <<<"$st")
eq "/v1/status: accepted = loaded + dead_lettered + queued (0)" "$acc" "$((ld + dl))"
ok "/v1/status: the loader's run listed with its result" \
    grep -Eq '"runs":\[\{"started_at":"[0-9-]{10}T[0-9:.]{12}Z","ended_at":"[^"]*","duration_s":[0-9.]+,"events":[1-9][0-9]*,"loaded":[0-9]+,"dead_letters":[0-9]+,"result":"ok"' <<<"$st"
has "/v1/status: last success as RFC 3339" '"last_success_at":"20' "$st"
d=$(curl -s "$URL/v1/status/dead_letters")
has "/v1/status/dead_letters: counted by type and stage" \
    '"event_type":"crash_report","stage":"ingest","count":' "$d"
has "/v1/status/dead_letters: the latest error" '"error":"user_id: expected integer, got string"' "$d"
m=$(curl -s "$URL/metrics")
for k in accepted loaded dead_lettered queued; do
    has "/metrics: datapipe_events{stage=\"$k\"}" "datapipe_events{stage=\"$k\"} " "$m"
done
has "/metrics: datapipe_events has HELP and TYPE" '# TYPE datapipe_events gauge' "$m"
has "/metrics: loaded by type (the loader's figures via LMDB)" 'datapipe_loader_events_loaded_total{type="crash_report"}' "$m"
ok "/metrics: dead letters counted" grep -Eq '^datapipe_loader_dead_letters_total [1-9]' <<<"$m"
ok "/metrics after a load is still strict Prometheus text" awk -f tests/lib/prom_lint.awk <<<"$m"
# README's dead-letter look-up and replay commands (here with the harness's conninfo and schema).
dl=$(psql "$DP_PG_CONNINFO" -At -c "SELECT seq, event_type, stage, error, received_at FROM srvtest.dead_letter ORDER BY seq DESC LIMIT 20")
has "dead_letter keeps the ingest error" "|crash_report|ingest|user_id: expected integer, got string|" "$dl"
ndl=$(psql "$DP_PG_CONNINFO" -At -c "SELECT count(*) FROM srvtest.dead_letter WHERE stage = 'ingest' AND event_type = 'crash_report'")
r=$(psql "$DP_PG_CONNINFO" -At -c "SELECT convert_from(raw, 'UTF8') FROM srvtest.dead_letter WHERE stage = 'ingest' AND event_type = 'crash_report'" |
    curl -s --data-binary @- "$URL/v1/events/crash_report")
has "replay re-validates every dead letter (still invalid here)" "\"rejected\":$ndl" "$r"
# Dead letters: /v1/status's running total, /v1/dead_letters the table's rows.
ndead=$(awk '$1 == "datapipe_loader_dead_letters_total" {print $2}' <<<"$m")
has "/v1/status: dead_lettered_total is the running total" "\"dead_lettered_total\":$ndead" \
    "$(curl -s "$URL/v1/status")"
eq "/v1/dead_letters: the table's rows, by stage" \
    "{\"status_code\":200,\"status_message\":\"ok\",\"rows\":$(sql "SELECT count(*) FROM srvtest.dead_letter"),\"ingest\":$(sql "SELECT count(*) FROM srvtest.dead_letter WHERE stage = 'ingest'"),\"load\":0}" \
    "$(curl -s "$URL/v1/dead_letters")"
sql "DELETE FROM srvtest.dead_letter WHERE seq = (SELECT min(seq) FROM srvtest.dead_letter)"
has "/v1/dead_letters: a row deleted is gone from the count" "\"rows\":$((ndead - 1))," \
    "$(curl -s "$URL/v1/dead_letters")"
has "/v1/status: the running total stays" "\"dead_lettered_total\":$ndead" "$(curl -s "$URL/v1/status")"
# A lock on the table, held by a psql that reads its statements from a FIFO: taken, then
# released when this test says so.
mkfifo "$TMP/lock.fifo"
start_bg "$TMP/lock.log" psql "$DP_PG_CONNINFO" -q -v ON_ERROR_STOP=1 -f "$TMP/lock.fifo"
LOCKER=$T_LAST_PID
exec 9>"$TMP/lock.fifo"
echo 'BEGIN; LOCK TABLE srvtest.crash_report IN ACCESS EXCLUSIVE MODE;' >&9
locks() { # locks GRANTED: locks on srvtest.crash_report granted (true) or waited for (false)
    sql "SELECT count(*) FROM pg_locks WHERE relation = 'srvtest.crash_report'::regclass
         AND granted = $1"
}
table_locked() { [ "$(locks true)" = 1 ]; }
wait_until 20 "the table srvtest.crash_report is locked" table_locked
# get_bg: a GET of the loaded row in the background; its HTTP code goes to $TMP/getters.
getters=()
get_bg() {
    curl -s -o /dev/null -w '%{http_code}\n' -m 8 "$URL/v1/events/crash_report/$id" \
        >>"$TMP/getters" &
    getters+=($!)
}
# a_read_waits: a GET waits on the lock now (each wait ends after lock_timeout: while none is
# seen waiting, one more GET is sent).
a_read_waits() { [ "$(locks false)" -gt 0 ] 2>/dev/null || { get_bg; false; }; }
getters_done() { local p; for p in "${getters[@]}"; do gone "$p" || return 1; done; }
get_bg
get_bg
get_bg
wait_until 30 "a GET waits on the locked table" a_read_waits
r=$(curl -s -o /dev/null -w '%{http_code}' -m 8 "$URL/v1/events/crash_report/$id")
eq "GET while the table is locked → 503 (lock_timeout), not a hang" 503 "$r"
eq "POST still 202 while the table is locked and reads wait on it" 202 \
    "$(curl -s -o /dev/null -w '%{http_code}' -m 8 -d "$SEED" "$URL/")"
wait_until 30 "every GET sent while the table was locked has its answer" getters_done
eq "every GET sent while the table was locked → 503" "" "$(grep -v '^503$' "$TMP/getters")"
ok "the table was locked throughout" table_locked
echo 'COMMIT;' >&9
exec 9>&-
wait_until 30 "the locking psql commits and exits" gone "$LOCKER"
wait "$LOCKER"
eq "the locking transaction committed" 0 $?
wait "${getters[@]}"
stop_pid "$SPID"

CONNINFO="host=$TMP/nowhere port=1 user=postgres dbname=postgres" server nodb ""
r=$(curl -s -D - "$URL/v1/events/crash_report/$id")
has "GET with the database down → 503" 'HTTP/1.1 503' "$r"
has "503 carries Retry-After" 'Retry-After:' "$r"
eq "database down: POST still 202" 202 "$(curl -s -o /dev/null -w '%{http_code}' -d "$SEED" "$URL/")"
stop_pid "$SPID"

# A class 22 error on a GET (here: an id a LATIN1 database cannot hold) is the id's fault:
# 404, and not logged as a bug.
psql "$DP_PG_CONNINFO" -q -c "CREATE DATABASE srv_latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
CONNINFO="$DP_PG_CONNINFO dbname=srv_latin1" server latin1 ""
"$BIN/datapipe-loader" -c "$TMP/latin1/cfg.json" --once 2>"$TMP/latin1/loader.log"
eq "loader --once creates the tables in the LATIN1 database" 0 $?
eq "GET /product/€ from a LATIN1 database → 404" 404 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/product/%E2%82%AC")"
ok "a class 22 error is not logged as a bug" bash -c "! grep -E 'query failed|prepare failed' \"\$0\"" "$TMP/latin1/log"
stop_pid "$SPID"

# --- auth
printf '# ops\nfile-key\n  # indented comment\nhash#key\n' >"$TMP/keys"
server auth ", \"api_keys\": [\"k-123\"], \"api_keys_file\": \"$TMP/keys\""
r=$(curl -s -D - -o /dev/null -d "$SEED" "$URL/")
has "no key → 401" 'HTTP/1.1 401' "$r"
has "401 has WWW-Authenticate" 'WWW-Authenticate: Bearer' "$r"
eq "wrong key → 401" 401 "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer k-124' -d "$SEED" "$URL/")"
eq "prefix of a key → 401" 401 "$(curl -s -o /dev/null -w '%{http_code}' -H 'X-API-Key: k-12' -d "$SEED" "$URL/")"
eq "Bearer key → 202" 202 "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer k-123' -d "$SEED" "$URL/")"
eq "X-API-Key from the keys file → 202" 202 "$(curl -s -o /dev/null -w '%{http_code}' -H 'X-API-Key: file-key' -d "$SEED" "$URL/")"
eq "GET row needs a key" 401 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/product/1")"
eq "/healthz open" 200 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz")"
eq "/metrics open" 200 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/metrics")"
eq "/readyz open" 200 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz")"
eq "401 before reading a huge body" 401 "$(curl -s -o /dev/null -w '%{http_code}' --data-binary @"$TMP/big" "$URL/")"
eq "a key with '#' inside is whole → 202" 202 "$(curl -s -o /dev/null -w '%{http_code}' -H 'X-API-Key: hash#key' -d "$SEED" "$URL/")"
eq "the part before its '#' is no key → 401" 401 "$(curl -s -o /dev/null -w '%{http_code}' -H 'X-API-Key: hash' -d "$SEED" "$URL/")"
# Revocation without a restart: the key leaves the file, SIGHUP, and it is refused.
printf '# ops\nhash#key\n' >"$TMP/keys"
kill -HUP "$SPID"
wait_until 20 "HUP: the keys are re-read and counted" \
    grep -q "reload: API keys re-read keys=2 file=$TMP/keys" "$TMP/auth/log"
eq "a revoked key → 401 after SIGHUP" 401 "$(curl -s -o /dev/null -w '%{http_code}' -H 'X-API-Key: file-key' -d "$SEED" "$URL/")"
eq "a kept key → 202 after SIGHUP" 202 "$(curl -s -o /dev/null -w '%{http_code}' -H 'X-API-Key: hash#key' -d "$SEED" "$URL/")"
eq "the keys from the configuration still hold" 202 "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer k-123' -d "$SEED" "$URL/")"
ok "the log never shows a key" bash -c "! grep -E 'file-key|hash#key|k-123' \"\$0\"" "$TMP/auth/log"
stop_pid "$SPID"

# --- rate limits per key: counted in events, 429 + Retry-After, per-key metrics by name
printf 'laptop:file-key\n' >"$TMP/keys2"
server limits ", \"api_keys\": [{\"name\": \"slow\", \"key\": \"k-slow\", \"events_per_s\": 1, \"burst\": 1}, \"k-free\", {\"name\": \"mid\", \"key\": \"k-mid\"}], \"api_keys_file\": \"$TMP/keys2\""
hundred=$(for i in $(seq 1 100); do echo "$SEED"; done)
r=$(post /v1/events "$hundred" -H 'X-API-Key: k-slow')
has "a body of 100 events passes the full bucket of 1" '202 {"status_code":202,"status_message":"accepted","accepted":100' "$r"
r=$(curl -s -D - -o "$TMP/out" -H 'X-API-Key: k-slow' -d "$SEED" "$URL/")
has "then the key is over its rate → 429" 'HTTP/1.1 429' "$r"
retry=$(sed -n 's/^Retry-After: \([0-9]*\).*/\1/p' <<<"$r")
ok "429 has Retry-After: the seconds the 99 events owed take (1..100)" test "${retry:-0}" -ge 1 -a "${retry:-0}" -le 100
eq "429 names the key by its name and its rate" \
    '{"status_code":429,"status_message":"rate limit of API key slow exceeded: 1 events/s"}' "$(cat "$TMP/out")"
eq "/submit is limited too" 429 "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer k-slow' -d "$AD" "$URL/submit")"
ok "a GET is not counted in events: not 429" test "$(curl -s -o /dev/null -w '%{http_code}' -H 'X-API-Key: k-slow' "$URL/product/1")" != 429
eq "another key is not held back" 202 "$(curl -s -o /dev/null -w '%{http_code}' -H 'X-API-Key: k-free' -d "$SEED" "$URL/")"
eq "a key of the file, by name" 202 "$(curl -s -o /dev/null -w '%{http_code}' -H 'X-API-Key: file-key' -d "$SEED$SEED" "$URL/")"
eq "a wrong key is still 401, not 429" 401 "$(curl -s -o /dev/null -w '%{http_code}' -H 'X-API-Key: k-slo' -d "$SEED" "$URL/")"
m=$(curl -s "$URL/metrics")
has "metrics: requests per key name" 'datapipe_key_requests_total{key="slow"} 4' "$m"
has "metrics: events per key name" 'datapipe_key_events_total{key="slow"} 100' "$m"
has "metrics: 429s per key name" 'datapipe_key_rate_limited_total{key="slow"} 2' "$m"
has "metrics: a file key by its name" 'datapipe_key_events_total{key="laptop"} 2' "$m"
tag=$(printf '%s' k-free | sha256sum | cut -c1-8)
has "metrics: a key without a name by its tag" "datapipe_key_events_total{key=\"key-$tag\"} 1" "$m"
ok "metrics never show a key" bash -c "! grep -q 'k-slow\|k-free\|file-key' <<<\"\$0\"" "$m"
dump=$("$QTOOL" "$TMP/limits/q" dump)
eq "the queue holds the events of the admitted bodies only" 103 "$(grep -c crash_report <<<"$dump")"
# SIGHUP swaps keys and limits together, kept by name: laptop's key leaves the file and ci's
# comes, mid (no limit so far) gets 1 event/s with a burst of 3, slow stays as it is.
eq "mid has no limit yet: a body of 100" 202 "$(curl -s -o /dev/null -w '%{http_code}' -H 'X-API-Key: k-mid' --data-binary "$hundred" "$URL/")"
eq "mid has no limit yet: and another" 202 "$(curl -s -o /dev/null -w '%{http_code}' -H 'X-API-Key: k-mid' --data-binary "$hundred" "$URL/")"
printf 'ci:k-ci\n' >"$TMP/keys2"
sed -i 's/{"name": "mid", "key": "k-mid"}/{"name": "mid", "key": "k-mid", "events_per_s": 1, "burst": 3}/' "$TMP/limits/cfg.json"
kill -HUP "$SPID"
wait_until 20 "HUP: what changed is logged by name" grep -q \
    "reload: API keys re-read keys=4 file=$TMP/keys2 names=4 added=ci removed=laptop limits_changed=mid" \
    "$TMP/limits/log"
has_file "HUP: the API keys are among the settings applied, nothing needs a restart" \
    'info configuration reloaded applied=server.api_keys needs_restart=nothing' "$TMP/limits/log"
eq "a key revoked by SIGHUP → 401" 401 "$(curl -s -o /dev/null -w '%{http_code}' -H 'X-API-Key: file-key' -d "$SEED" "$URL/")"
r=$(post / "$SEED" -H 'X-API-Key: k-ci')
has "a key added by SIGHUP → 202" '202 {' "$r"
id=$(jq -r .id <<<"${r#202 }")
eq "the trail of a queued event shows its source" ci \
    "$(curl -s -H 'X-API-Key: k-ci' "$URL/v1/events/$id" | jq -r .source)"
r=$(curl -s -D - -o "$TMP/out" -H 'X-API-Key: k-slow' -d "$SEED" "$URL/")
has "a key kept across SIGHUP keeps its bucket: still owing its 99 events → 429" 'HTTP/1.1 429' "$r"
retry=$(sed -n 's/^Retry-After: \([0-9]*\).*/\1/p' <<<"$r")
ok "and its Retry-After still counts what it owes (2..100 s)" test "${retry:-0}" -ge 2 -a "${retry:-0}" -le 100
eq "a new limit holds at once: a body of 100 passes mid's full bucket of 3" 202 "$(curl -s -o /dev/null -w '%{http_code}' -H 'X-API-Key: k-mid' --data-binary "$hundred" "$URL/")"
r=$(curl -s -D - -o "$TMP/out" -H 'X-API-Key: k-mid' -d "$SEED" "$URL/")
has "then mid is over its new rate → 429" 'HTTP/1.1 429' "$r"
eq "429 names mid's new rate" \
    '{"status_code":429,"status_message":"rate limit of API key mid exceeded: 1 events/s"}' "$(cat "$TMP/out")"
eq "a key whose limit did not change is still not held back" 202 "$(curl -s -o /dev/null -w '%{http_code}' -H 'X-API-Key: k-free' -d "$SEED" "$URL/")"
m=$(curl -s "$URL/metrics")
has "metrics: a kept name keeps its counts" 'datapipe_key_requests_total{key="slow"} 5' "$m"
has "metrics: and its 429s" 'datapipe_key_rate_limited_total{key="slow"} 3' "$m"
has "metrics: mid counted across the SIGHUP" 'datapipe_key_events_total{key="mid"} 300' "$m"
has "metrics: the added name" 'datapipe_key_events_total{key="ci"} 1' "$m"
ok "metrics: the removed name is gone" bash -c "! grep -q 'key=\"laptop\"' <<<\"\$0\"" "$m"
ok "metrics never show a key" bash -c "! grep -q 'k-slow\|k-free\|k-mid\|k-ci\|file-key' <<<\"\$0\"" "$m"
ok "the log never shows a key" bash -c "! grep -E 'k-slow|k-free|k-mid|k-ci|file-key' \"\$0\"" "$TMP/limits/log"
stop_pid "$SPID"

# --- CORS
server cors ', "cors_origins": ["https://app.example"]'
r=$(curl -s -D - -o /dev/null -X OPTIONS -H 'Origin: https://app.example' -H 'Access-Control-Request-Method: POST' "$URL/v1/events")
has "preflight → 204" 'HTTP/1.1 204' "$r"
has "preflight allows the origin" 'Access-Control-Allow-Origin: https://app.example' "$r"
has "preflight lists methods" 'Access-Control-Allow-Methods: POST' "$r"
has "preflight Vary: Origin" 'Vary: Origin' "$r"
r=$(curl -s -D - -o /dev/null -H 'Origin: https://app.example' -d "$SEED" "$URL/")
has "POST from allowed origin gets ACAO" 'Access-Control-Allow-Origin: https://app.example' "$r"
r=$(curl -s -D - -o /dev/null -H 'Origin: https://evil.example' -d "$SEED" "$URL/")
ok "other origin gets no ACAO" bash -c "! grep -qi 'Access-Control-Allow-Origin' <<<\"\$0\"" "$r"
has "other origin still Vary: Origin" 'Vary: Origin' "$r"
stop_pid "$SPID"
server nocors ""
r=$(curl -s -D - -o /dev/null -H 'Origin: https://app.example' -d "$SEED" "$URL/")
ok "no cors_origins: no CORS header at all" bash -c "! grep -qi 'Access-Control' <<<\"\$0\"" "$r"
stop_pid "$SPID"

# --- TLS
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
cat "$TMP/cert.pem" "$TMP/key.pem" >"$TMP/both.pem"
TLS_SUFFIX=s server tls ", \"tls_certificate\": \"$TMP/both.pem\""
r=$(curl -s --cacert "$TMP/cert.pem" -w ' %{http_code}' -d "$SEED" "$URL/")
has "HTTPS POST with --cacert → 202" '"status_message":"accepted"' "$r"
has "HTTPS status" ' 202' "$r"
eq "HTTPS with an unknown CA fails" 60 "$(curl -s -o /dev/null -d "$SEED" "$URL/"; echo $?)"
stop_pid "$SPID"

# --- queue full → 503, recovery after the loader frees space (qtool deletes)
server full "" 1048576
code=202
i=0
payload=$(head -c 20000 /dev/zero | tr '\0' 'x')
while [ "$code" = 202 ] && [ $i -lt 500 ]; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -d "{\"user_id\": $i, \"timestamp\": 1, \"message\": \"$payload\"}" "$URL/v1/events/crash_report")
    i=$((i + 1))
done
eq "queue full → 503" 503 "$code"
acc=$(curl -s "$URL/metrics" | awk '$1 == "datapipe_events_accepted_total{type=\"crash_report\"}" {print $2}')
eq "accepted_total counts only acknowledged events" "$((i - 1))" "$acc"
r=$(curl -s -D - -o /dev/null -d "{\"user_id\": 1, \"timestamp\": 1, \"message\": \"$payload\"}" "$URL/v1/events/crash_report")
has "503 has Retry-After" 'Retry-After: 1' "$r"
has "503 says why" '"status_message":"queue full: retry later"' "$(cat "$TMP/out" 2>/dev/null; curl -s -d "{\"user_id\": 1, \"timestamp\": 1, \"message\": \"$payload\"}" "$URL/v1/events/crash_report")"
eq "/readyz → 503 when full" 503 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz")"
eq "/healthz still 200" 200 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz")"
acked=$("$QTOOL" "$TMP/full/q" dump | wc -l)
eq "every acknowledged event is in the full queue" "$((i - 1))" "$acked"
"$QTOOL" "$TMP/full/q" delete 1 1000000
eq "after deleting: 202 again, no restart" 202 "$(curl -s -o /dev/null -w '%{http_code}' -d "$SEED" "$URL/")"
eq "/readyz → 200 again" 200 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz")"
stop_pid "$SPID"

# --- one event larger than the queue can ever hold: 413, not 500
MAXBODY=4194304 server tiny "" 1048576
head -c 700000 /dev/zero | tr '\0' 'x' >"$TMP/huge-msg"
printf '{"user_id": 1, "timestamp": 1, "message": "%s"}' "$(cat "$TMP/huge-msg")" >"$TMP/huge.json"
r=$(curl -s -w ' %{http_code}' --data-binary @"$TMP/huge.json" "$URL/v1/events/crash_report")
has "event larger than half the map → 413" "{\"status_code\":413,\"status_message\":\"the body's events are too large for the queue (an event, or all of them together, over half of queue.max_bytes)\"}
 413" "$r"
eq "and the server goes on" 202 "$(curl -s -o /dev/null -w '%{http_code}' -d "$SEED" "$URL/")"
stop_pid "$SPID"

# --- SIGTERM under load: every acknowledged event is in the queue afterwards
server term ""
for w in 1 2 3 4; do
    (
        n=0
        while [ $n -lt 2000 ]; do
            out=$(curl -s -m 5 -d "{\"user_id\": $w$n, \"timestamp\": 1, \"message\": \"w$w\"}" "$URL/v1/events/crash_report") || break
            id=$(sed -n 's/.*"id":"\([0-9a-f-]*\)".*/\1/p' <<<"$out")
            [ -n "$id" ] && echo "$id" >>"$TMP/acked.$w"
            n=$((n + 1))
        done
    ) &
done
acked_above() { [ "$(cat "$TMP"/acked.* 2>/dev/null | wc -l)" -gt "$1" ]; }
wait_until 60 "under load, over 100 events acknowledged before SIGTERM" acked_above 100
stop_pid "$SPID"
wait
eq "SIGTERM → exit 0" 0 "$T_RC"
cat "$TMP"/acked.* | sort >"$TMP/acked"
"$QTOOL" "$TMP/term/q" dump | awk '{print $2}' | sort >"$TMP/stored"
nacked=$(wc -l <"$TMP/acked")
ok "some events acknowledged under load ($nacked)" [ "$nacked" -gt 10 ]
eq "every acknowledged id is in the queue" "" "$(comm -23 "$TMP/acked" "$TMP/stored")"
ok "log says stopped" grep -q 'info stopped' "$TMP/term/log"
grep -q 'info stopped' "$TMP/term/log" || { echo "server log (exit $T_RC):"; tail -20 "$TMP/term/log"; }

# --- slow and idle clients cannot starve new ones (2 threads, request_timeout_ms 2000)
sed_threads() { sed -i 's/"threads": 16/"threads": 2/' "$TMP/$1/cfg.json"; }
server slow ""
stop_pid "$SPID"
sed_threads slow
start_bg "$TMP/slow/log" "$BIN/datapipe-server" -c "$TMP/slow/cfg.json"
SPID=$T_LAST_PID
wait_until 20 "the 2-thread server answers /healthz" http_answers "$URL/healthz"
port=${URL##*:}
# server_took FD: the server has taken this shell's connection FD: a worker thread read all
# that was sent (the main thread only accepts), or the server closed it. In /proc/net/tcp:
# the client's end by its inode, then the server's end, "st tx_queue:rx_queue" ($4, $5).
server_took() {
    local ino cport
    ino=$(readlink "/proc/$$/fd/$1" | sed -n 's/^socket:\[\([0-9]*\)\]$/\1/p')
    [ -n "$ino" ] || return 1
    cport=$(awk -v ino="$ino" '$10 == ino {print substr($2, length($2) - 4)}' /proc/net/tcp)
    [ -n "$cport" ] || return 1
    awk -v l="$(printf ':%04X' "$port")" -v r="$cport" '
        substr($2, length($2) - 4) == l && substr($3, length($3) - 4) == r {
            split($5, q, ":")
            if ($4 == "01" && q[2] !~ /^0+$/) unread = 1
        }
        END {exit unread}' /proc/net/tcp
}
both_held() { server_took "$1" && server_took "$2"; }
exec 5<>"/dev/tcp/127.0.0.1/$port"
printf 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"a"' >&5
exec 6<>"/dev/tcp/127.0.0.1/$port"
printf 'POST / HTTP/1.1\r\nHost: x\r\n' >&6
wait_until 20 "both worker threads took a stalled connection" both_held 5 6
eq "both threads held by stalled clients: a new request is still served" 200 \
    "$(curl -s -o /dev/null -w '%{http_code}' -m 8 "$URL/healthz")"
r=$(timeout 8 cat <&5)
has "a stalled body is cut off by request_timeout_ms" 'HTTP/1.1 400' "$r"
ok "stalled headers are cut off by request_timeout_ms (connection closed)" \
    timeout 8 cat <&6 >/dev/null
exec 5>&- 6>&-
exec 7<>"/dev/tcp/127.0.0.1/$port"
printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n' >&7
exec 8<>"/dev/tcp/127.0.0.1/$port"
printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n' >&8
# Each answered: from now on an idle keep-alive connection on its thread.
read -r -t 8 -u 7 line7
read -r -t 8 -u 8 line8
has "keep-alive connection 1 answered" 'HTTP/1.1 200' "$line7"
has "keep-alive connection 2 answered" 'HTTP/1.1 200' "$line8"
eq "idle keep-alive connections on every thread: a new request is still served" 200 \
    "$(curl -s -o /dev/null -w '%{http_code}' -m 8 "$URL/healthz")"
exec 7>&- 8>&-
stop_pid "$SPID"

# --- SIGHUP re-reads the configuration
server hup ""
sed -i 's/"threads": 16/"threads": 17/; s/"schema": "srvtest"}/"schema": "srvtest"}, "log": {"level": "debug"}/' "$TMP/hup/cfg.json"
kill -HUP "$SPID"
# The same words as the loader's (etc/settings.c dp_config_reload_log): a line for every reload.
wait_until 20 "HUP: a successful reload is logged, with what it applied and what needs a restart" \
    grep -q 'info configuration reloaded applied=log info/text -> debug/text needs_restart=server.threads$' "$TMP/hup/log"
has_file "HUP: restart-only change warned" \
    'warn changed settings need a restart daemon=datapipe-server settings=server.threads' "$TMP/hup/log"
curl -s -o /dev/null "$URL/healthz"
wait_until 20 "HUP: debug access log now on" \
    grep -q 'debug request method=GET uri=/healthz status=200' "$TMP/hup/log"
echo '{"server": {"threads": "x"}}' >"$TMP/hup/cfg.json"
kill -HUP "$SPID"
wait_until 20 "HUP with a bad file: rejected, logged" \
    grep -q 'error configuration reload failed: keeping the running one errors=' "$TMP/hup/log"
ok "HUP with a bad file keeps running" kill -0 "$SPID"
eq "still serving after a bad reload" 202 "$(curl -s -o /dev/null -w '%{http_code}' -d "$SEED" "$URL/")"
stop_pid "$SPID"
eq "SIGTERM after reloads → exit 0" 0 "$T_RC"

t_done server
