#!/usr/bin/env bash
# make-fixture.sh - how tests/data/upgrade was made (tests/e2e/test_upgrade.sh reads it): a queue
# and its PostgreSQL schema as the previous release left them, half loaded.
#   git worktree add --detach ../prev 8a1c7c2 && make -C ../prev all
#   tests/pg run tests/data/upgrade/make-fixture.sh ../prev/bin [OUT_DIR]
# The previous release's server takes events (unkeyed crash_report, keyed user_login, an
# NDJSON body with one invalid event: a dead letter of stage ingest), its loader loads them
# (--once), then more of each kind are taken and left queued, with a repeat of a loaded key.
# Kept: queue/data.mdb (compacted with mdb_copy -c), pg.sql (pg_dump of the schema), and
# queued.ids: the ids the server acknowledged for the events left queued. Run it again only
# to make a fixture of a newer release; the committed one stays what the old release wrote.
set -euo pipefail
PREV=${1:?usage: make-fixture.sh PREVIOUS_RELEASE_BIN_DIR [OUT_DIR]}
OUT=$(cd "${2:-$(dirname "$0")}" && pwd)
: "${DP_PG_CONNINFO:?run through tests/pg run}"
W=$(mktemp -d)
# shellcheck source=tests/lib/lib_sh.sh
. "$(dirname "$0")/../../lib/lib_sh.sh"
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
cat >"$W/cfg.json" <<EOF
{"server": {"listen": "127.0.0.1:$PORT"},
 "queue": {"path": "$W/q", "max_bytes": 16777216, "id": "upgrade-fixture", "sync": true},
 "database": {"conninfo": "$DP_PG_CONNINFO", "schema": "upgrade_fixture"},
 "loader": {"batch_rows": 4},
 "log": {"level": "warn"}}
EOF
"$PREV/datapipe-server" -c "$W/cfg.json" 2>"$W/server.log" &
spid=$!
trap 'kill $spid 2>/dev/null; rm -rf "$W"' EXIT
until curl -sf -o /dev/null "$URL/healthz"; do sleep 0.2; done

# post PHASE: unkeyed crash reports, keyed logins, one NDJSON body with an invalid event.
post() {
    local i
    for i in 1 2 3 4 5; do
        curl -s -d "{\"user_id\": $1$i, \"timestamp\": 1700000000, \"message\": \"phase $1\"}" \
            "$URL/v1/events/crash_report"
        echo
    done
    for i in 1 2 3; do
        curl -s -H "Idempotency-Key: login-$1-$i" \
            -d "{\"user_id\": \"u-$1$i\", \"timestamp\": 1700000000, \"app_version\": \"1.$i\"}" \
            "$URL/v1/events/user_login"
        echo
    done
    printf '%s\n' "{\"user_id\": ${1}9, \"timestamp\": 2, \"message\": \"ok\"}" \
        "{\"user_id\": \"not-a-number-$1\", \"timestamp\": 2, \"message\": \"bad\"}" |
        curl -s --data-binary @- "$URL/v1/events/crash_report"
    echo
}
post 1 >"$W/phase1.out"
timeout 120 "$PREV/datapipe-loader" -c "$W/cfg.json" --once
post 2 >"$W/phase2.out"
# A repeat of a key the old loader loaded: answered as a duplicate, nothing queued.
curl -s -H "Idempotency-Key: login-1-1" \
    -d '{"user_id": "u-11", "timestamp": 1700000000, "app_version": "1.1"}' \
    "$URL/v1/events/user_login" >"$W/repeat.out"
grep -q '"duplicate":true' "$W/repeat.out"
kill "$spid"
wait "$spid" || true
sed -n 's/.*"id":"\([0-9a-f-]*\)".*/\1/p' "$W/phase2.out" >"$OUT/queued.ids"
rm -rf "$OUT/queue" && mkdir "$OUT/queue"
mdb_copy -c "$W/q" "$OUT/queue"
"${DP_PG_BINDIR:+$DP_PG_BINDIR/}pg_dump" --no-owner --no-privileges -n upgrade_fixture \
    "$DP_PG_CONNINFO" >"$OUT/pg.sql"
ls -l "$OUT/queue" "$OUT/pg.sql" "$OUT/queued.ids"
