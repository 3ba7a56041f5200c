#!/usr/bin/env bash
# test_upgrade.sh - this release takes over what earlier ones left (tests/data/upgrade: the
# release before this branch; tests/data/upgrade-v2: one writing record version 2, before
# instance ids; both made by tests/data/upgrade/make-fixture.sh): a queue holding events
# the old loader had not loaded yet (unkeyed, keyed, one rejected at ingest) and the
# PostgreSQL schema that loader wrote (tables, loader_batches, queue_owners, a dead letter).
# No migration step: the current loader loads every queued event exactly once, loads nothing
# the old one had loaded, and a repeat of a key the old one recorded makes no second row.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
. tests/lib/lib_e2e.sh

e2e_setup upgrade
QMAX=16777216                   # the map size the old releases used

# upgrade_from FIXTURE COUNTERS: the scenario below on one fixture, in a schema and queue of
# its own; COUNTERS is the counters line datapipe-queue check prints for the old queue.
upgrade_from() {
    FIX=$1
    local name
    name=$(basename "$FIX")
    SCHEMA=e2e_${name//-/_}_$$
    QID=upgrade-fixture             # the queue.id the old release recorded in PostgreSQL
    QDIR=$DIR/$name/q
    CFG=$DIR/$name/cfg.json
    PORT=$(free_port)
    URL=http://127.0.0.1:$PORT
    E2E_NAME=$name
    mkdir -p "$DIR/$name"
    e2e_config "" '"interval_s": 1, "min_interval_s": 0, "high_water": 1, "batch_rows": 4'
    mkdir -m 0700 "$QDIR"
    cp "$FIX/queue/data.mdb" "$QDIR/"
    sed "s/upgrade_fixture/$SCHEMA/g" "$FIX/pg.sql" |
        "${DP_PG_BINDIR:+$DP_PG_BINDIR/}psql" "$DP_PG_CONNINFO" -q -v ON_ERROR_STOP=1 \
            >/dev/null 2>&1
    eq "$name: the old release's schema restored" 1 \
        "$(sql "SELECT count(*) FROM $SCHEMA.loader_batches WHERE queue_id = '$QID'")"
    eq "$name: old rows: 6 crash reports" 6 "$(table_count crash_report)"
    eq "$name: old rows: 3 logins" 3 "$(table_count user_login)"
    eq "$name: old rows: 1 dead letter" 1 "$(table_count dead_letter)"
    ids_sql() { sed "s/.*/'&'/" "$FIX/queued.ids" | paste -sd, -; }

    chk=$("$BIN/datapipe-queue" -c "$CFG" check)
    eq "$name: datapipe-queue check of the old queue exits 0" 0 "$?"
    has "$name: ... every old record decodes" "records: 10 (seq 11..20), 0 do not decode: ok" "$chk"
    has "$name: ... its counters add up" "$2" "$chk"
    has "$name: ... its keys are readable" \
        "keys: 6 recorded, 6 in the age index, 0 do not decode: ok" "$chk"

    drain
    eq "$name: the current loader drains the old queue (exit 0)" 0 "$?"
    eq "$name: queue empty" 0 "$(queued)"
    eq "$name: crash reports: 6 old + 6 from the queue" 12 "$(table_count crash_report)"
    eq "$name: logins: 3 old + 3 from the queue" 6 "$(table_count user_login)"
    eq "$name: each acknowledged id left queued is loaded exactly once" \
        "$(wc -l <"$FIX/queued.ids")" \
        "$(sql "SELECT count(*) FROM (SELECT id::text FROM $SCHEMA.crash_report UNION ALL
                SELECT id::text FROM $SCHEMA.user_login) r WHERE id IN ($(ids_sql))")"
    eq "$name: no id twice" 0 "$(sql "SELECT count(*) - count(DISTINCT id) FROM (SELECT id FROM
        $SCHEMA.crash_report UNION ALL SELECT id FROM $SCHEMA.user_login) r")"
    eq "$name: no user_id twice (nothing the old loader loaded came again)" 0 \
        "$(sql "SELECT count(*) - count(DISTINCT user_id) FROM $SCHEMA.crash_report")"
    eq "$name: dead letters: the old one and the queued one, both of stage ingest" "2|2" \
        "$(sql "SELECT count(*), count(*) FILTER (WHERE stage = 'ingest')
                FROM $SCHEMA.dead_letter")"
    ACKED=
    e2e_conservation

    # The current server on the old queue. A repeat of a key the old release recorded: within
    # the dedup window (a day by default, the fixture's keys are older) the queue answers it as a
    # duplicate, later the table's key refuses the second row; either way one row.
    start_server
    rep=$(curl -s -H "Idempotency-Key: login-2-1" \
        -d '{"user_id": "u-21", "timestamp": 1700000000, "app_version": "1.1"}' \
        "$URL/v1/events/user_login")
    has "$name: a repeat of an old key is accepted" '"status_code":202' "$rep"
    new=$(curl -s -d '{"user_id": 777, "timestamp": 1700000000, "message": "after the upgrade"}' \
        "$URL/v1/events/crash_report")
    has "$name: a new event is accepted" '"status_code":202' "$new"
    drain
    eq "$name: ... and loaded once" 1 \
        "$(sql "SELECT count(*) FROM $SCHEMA.crash_report WHERE user_id = 777")"
    eq "$name: logins still 6" 6 "$(table_count user_login)"
    stop_pid "$SPID"
    eq "$name: the server stops cleanly" 0 "$T_RC"
    sql "DROP SCHEMA $SCHEMA CASCADE" >/dev/null
}

# The release before this branch (record version 3, instance ids, the accepted counter).
upgrade_from tests/data/upgrade \
    "counters: accepted 20 = loaded 9 + dead_lettered 1 + queued 10: ok"
# An older one: record version 2 (no source), before instance ids and the accepted counter,
# and tables without the source column.
upgrade_from tests/data/upgrade-v2 \
    "counters: loaded 9 + dead_lettered 1 + queued 10; accepted not recorded yet"
t_done test_upgrade
