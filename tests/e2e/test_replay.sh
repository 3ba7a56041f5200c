#!/usr/bin/env bash
# test_replay.sh - datapipe-loader --replay-dead-letters and --dead-letters against the
# harness's PostgreSQL: a mix of dead letters that now validate and that do not (stage load
# after the cause is fixed, stage ingest, an unknown type, a row filed before the event_id
# column), --type/--stage filters, --dry-run changing nothing, ids and received_at kept
# (the trail follows the event), and a replay killed with SIGKILL in the middle of a large
# set, then run again: every event is in its table once, none is left behind. Rows of a type
# the configuration given does not declare are skipped untouched and counted (--type of such
# a type is a usage error); with the configuration that declares it, the row keeps its key.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
. tests/lib/lib_e2e.sh

TOOL=$BUILD/tests/tools/ldrtool
e2e_setup replay
QMAX=4294967296 # ldrtool's map size
e2e_config '' '"interval_s": 3600, "batch_rows": 10'
start_server
ok "the loader creates the schema" drain
sql "ALTER TABLE $SCHEMA.crash_report ADD CONSTRAINT not_666 CHECK (user_id <> 666)"

loader() { timeout 300 "$BIN/datapipe-loader" -c "$CFG" "$@" 2>>"$DIR/replay.log"; }
dead() { sql "SELECT count(*) FROM $SCHEMA.dead_letter ${1:+WHERE $1}"; }
rows() { sql "SELECT count(*) FROM $SCHEMA.crash_report ${1:+WHERE $1}"; }
trail() { curl -s "$URL/v1/events/$1"; }

# --- a mix ------------------------------------------------------------------------------------
refused=$(curl -s --data-binary '{"user_id": 666, "timestamp": 1700000000, "message": "m"}' \
    "$URL/v1/events/crash_report" | jq -r .id)
curl -s -o /dev/null --data-binary $'{"user_id": 1, "timestamp": 1, "message": "ok"}\n{"user_id": 2}' \
    "$URL/v1/events/crash_report"
ok "the loader drains" drain
sql "INSERT INTO $SCHEMA.dead_letter (queue_id, event_type, stage, error, raw, received_at, source)
     VALUES ('older', 'crash_report', 'load', 'old error',
             convert_to('{\"user_id\": 5, \"timestamp\": 5, \"message\": \"old\"}', 'UTF8'),
             '2020-01-02 03:04:05.678901+00', 'ci'),
            ('older', 'nosuch', 'ingest', 'no type', convert_to('{}', 'UTF8'), now(), NULL)" >/dev/null
eq "four dead letters" 4 "$(dead)"
before=$(trail "$refused")
eq "the refused event is a dead letter" dead_letter "$(jq -r .state <<<"$before")"

out=$(loader --dead-letters)
has "--dead-letters: a header" "TYPE             STAGE     COUNT  REPLAYS  ERROR" "$out"
has "--dead-letters: the refused row" "not_666" "$out"
has "--dead-letters: the ingest row" "timestamp: required field missing" "$out"
eq "--dead-letters --stage ingest: only those" 2 \
    "$(loader --dead-letters --stage ingest | tail -n +2 | wc -l)"

out=$(loader --replay-dead-letters --dry-run)
eq "--dry-run exit status" 0 $?
eq "--dry-run reports" "dry run, nothing changed: replayed=1 still_invalid=2 skipped_unknown_type=1" "$out"
eq "--dry-run: dead letters unchanged" "4 0" "$(dead) $(sql "SELECT sum(replays) FROM $SCHEMA.dead_letter")"
eq "--dry-run: no row loaded" 1 "$(rows)"
eq "--dry-run: no id filled in" 2 "$(dead "event_id IS NULL")"

sql "ALTER TABLE $SCHEMA.crash_report DROP CONSTRAINT not_666"
eq "--type with no match" "replay done: replayed=0 still_invalid=0" \
    "$(loader --replay-dead-letters --type ad_event)"
eq "--stage load: both now valid" "replay done: replayed=2 still_invalid=0" \
    "$(loader --replay-dead-letters --stage load)"
eq "the moved rows left dead_letter" 2 "$(dead)"
after=$(trail "$refused")
eq "the trail follows the event into its table" "loaded crash_report" \
    "$(jq -r '.state + " " + .table' <<<"$after")"
eq "the id and received_at are kept" "$(jq -r .received_at <<<"$before")" \
    "$(jq -r .received_at <<<"$after")"
eq "an old dead letter keeps its received_at" "2020-01-02 03:04:05.678901+00" \
    "$(sql "SELECT received_at FROM $SCHEMA.crash_report WHERE user_id = 5")"
eq "and its source (the API key's name)" ci \
    "$(sql "SELECT source FROM $SCHEMA.crash_report WHERE user_id = 5")"
eq "a dead letter without a source loads none" "" \
    "$(sql "SELECT source FROM $SCHEMA.crash_report WHERE id = '$refused'")"
eq "and gets a UUIDv7" 7 "$(sql "SELECT substr(id::text, 15, 1) FROM $SCHEMA.crash_report WHERE user_id = 5")"

eq "the still invalid stay" "replay done: replayed=0 still_invalid=1 skipped_unknown_type=1" \
    "$(loader --replay-dead-letters)"
eq "with one replay counted and a time" 1 "$(dead "replays = 1 AND replayed_at IS NOT NULL")"
eq "and today's error" "timestamp: required field missing" \
    "$(sql "SELECT error FROM $SCHEMA.dead_letter WHERE event_type = 'crash_report'")"
eq "a type this configuration lacks: skipped, its error and count kept" "no type|0|" \
    "$(sql "SELECT error, replays, event_id FROM $SCHEMA.dead_letter WHERE event_type = 'nosuch'")"
eq "the old row without an id has one now" 0 "$(dead "event_id IS NULL AND event_type <> 'nosuch'")"

# --- killed in the middle of a large set, then run again ---------------------------------------
N=20000
stop_pid "$SPID"
"$TOOL" fill "$QDIR" rejected "$N" >/dev/null
ok "the loader files them as dead letters" drain
eq "$N dead letters of stage ingest, valid today" "$N" \
    "$(dead "event_type = 'crash_report' AND stage = 'ingest'
             AND error <> 'timestamp: required field missing'")"
sql "CREATE TABLE $SCHEMA.kill_ids AS SELECT event_id FROM $SCHEMA.dead_letter
     WHERE stage = 'ingest' AND event_type = 'crash_report' AND error <> 'timestamp: required field missing'"
base=$(rows)
moved() { sql "SELECT count(*) FROM $SCHEMA.crash_report c JOIN $SCHEMA.kill_ids k ON c.id = k.event_id"; }
left() { sql "SELECT count(*) FROM $SCHEMA.dead_letter d JOIN $SCHEMA.kill_ids k USING (event_id)"; }
some_moved() { [ "$(moved)" -gt 0 ]; }
start_bg "$DIR/replay-killed.log" "$BIN/datapipe-loader" -c "$CFG" --replay-dead-letters
rpid=$T_LAST_PID
wait_until 120 "the first transactions committed" some_moved
stop_pid "$rpid" KILL
m=$(moved)
l=$(left)
echo "test_replay.sh: killed with $m moved and $l left"
ok "killed in the middle: some left" [ "$l" -gt 0 ]
eq "killed: each event on one side, once" "$N" "$((m + l))"
out=$(loader --replay-dead-letters)
eq "the second run moves the rest" "replay done: replayed=$l still_invalid=1 skipped_unknown_type=1" "$out"
eq "every event in its table once" "$N|$N" \
    "$(sql "SELECT count(*), count(DISTINCT c.id) FROM $SCHEMA.crash_report c
            JOIN $SCHEMA.kill_ids k ON c.id = k.event_id")"
eq "none left behind" 0 "$(left)"
eq "nothing else loaded" "$((base + N))" "$(rows)"

# --- a declared type, replayed with and without the configuration that declares it -----------
echo '{"types": {"pv": {"fields": {"url": {"type": "string", "required": true}}}}}' \
    >"$DIR/types.json"
with_pv() { DATAPIPE_CNF=$CFG timeout 300 "$BIN/datapipe-loader" -c "$DIR/types.json" "$@" \
    2>>"$DIR/replay.log"; }
eq "the configuration with pv creates its table" "replay done: replayed=0 still_invalid=0" \
    "$(with_pv --replay-dead-letters --type pv)"
sql "INSERT INTO $SCHEMA.dead_letter (queue_id, event_type, stage, error, raw, received_at,
                                     idempotency_key, event_id)
     VALUES ('older', 'pv', 'load', 'violates check constraint \"no_blocked\"',
             convert_to('{\"url\": \"/a\"}', 'UTF8'), now(), 'pv-k1',
             '0190d6a4-7b3c-7def-8123-456789abcdef')" >/dev/null
# bare: the loader with its stderr (loader sends it to the log).
bare() { timeout 300 "$BIN/datapipe-loader" -c "$CFG" "$@"; }
pv_dead() { sql "SELECT error || '|' || replays FROM $SCHEMA.dead_letter WHERE event_type = 'pv'"; }
out=$(bare --replay-dead-letters --type pv 2>&1)
eq "--type of a type this configuration lacks: usage error" 2 "$?"
eq "… saying so" "datapipe-loader: --type pv: unknown event type \"pv\" (valid types: \
crash_report, ad_event, user_login, product, data_sample, identifies, tracks, pages, screens, groups, aliases, users): not declared by this configuration; \
nothing replayed" "$out"
out=$(bare --replay-dead-letters --type nosuchtype 2>&1)
eq "--type nosuchtype: exit 2" 2 "$?"
has "… not declared by this configuration" 'unknown event type "nosuchtype"' "$out"
out=$(bare --replay-dead-letters --stage load 2>"$DIR/skip.err")
eq "a row of a type this configuration lacks is skipped and counted" \
    "replay done: replayed=0 still_invalid=0 skipped_unknown_type=1" "$out"
eq "… and why, on stderr" "datapipe-loader: skipped 1 dead letter of types this \
configuration does not declare (pv): their errors are kept; replay them with the \
configuration that declares those types" "$(cat "$DIR/skip.err")"
eq "its real error is kept, no replay counted" 'violates check constraint "no_blocked"|0' \
    "$(pv_dead)"
eq "with the configuration that declares pv it loads" \
    "replay done: replayed=1 still_invalid=0" "$(with_pv --replay-dead-letters --stage load)"
eq "the replayed row of a declared type keeps its key and gets its digest" \
    "pv-k1 $(printf %s '{"url": "/a"}' | sha256sum | cut -c1-64)" \
    "$(sql "SELECT idempotency_key || ' ' || encode(idempotency_digest, 'hex') FROM $SCHEMA.pv
            WHERE id = '0190d6a4-7b3c-7def-8123-456789abcdef'")"

t_done test_replay.sh
