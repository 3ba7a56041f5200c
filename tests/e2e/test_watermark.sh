#!/usr/bin/env bash
# test_watermark.sh - the completeness watermark (datapipe.watermark, "loaded_through" in
# /v1/status) is never ahead of what is loaded, while clients post, two loader workers load
# small batches and the loader is killed with SIGKILL again and again. Each sample reads
# the watermark W and counts the rows received before W in one statement (one snapshot);
# once everything is loaded, each count must equal the final count before the same W: no
# event received before W reached PostgreSQL after W was shown.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
. tests/lib/lib_e2e.sh

e2e_setup wm
e2e_config '' '"interval_s": 1, "min_interval_s": 0, "high_water": 1, "batch_rows": 50, "workers": 2'
start_server
ok "the loader creates the schema" drain
eq "an idle drain records a watermark" 1 \
    "$(sql "SELECT count(*) FROM $SCHEMA.watermark WHERE queue_id = '$QID'")"
sql "CREATE TABLE $SCHEMA.wm_samples (k serial, w timestamptz, c bigint)"

# sample: the watermark and, in the same snapshot, the rows received before it.
sample() {
    sql "WITH w AS (SELECT loaded_through FROM $SCHEMA.watermark WHERE queue_id = '$QID')
         INSERT INTO $SCHEMA.wm_samples (w, c)
         SELECT w.loaded_through,
                (SELECT count(*) FROM $SCHEMA.crash_report WHERE received_at < w.loaded_through) +
                (SELECT count(*) FROM $SCHEMA.dead_letter WHERE received_at < w.loaded_through)
         FROM w" >/dev/null
}

# watermark: loaded_through now.
watermark() { sql "SELECT loaded_through FROM $SCHEMA.watermark WHERE queue_id = '$QID'"; }

start_bg "$DIR/client.log" "$CLIENT" -p "$PORT" -c 4 -d 8 -t crash -o "$DIR/ack" -S "$DIR/sent"
cpid=$T_LAST_PID
start_loader
kills=0
n=0
last_w=$(watermark)
while ! gone "$cpid"; do
    sample
    n=$((n + 1))
    # Every 5 samples, kill the loader where it happens to be and start another one; but only
    # once the watermark moved since the last kill, so that each loader gets to load however
    # slowly it starts (under ThreadSanitizer, a start takes longer than 5 samples).
    if [ $((n % 5)) = 0 ] && [ "$(watermark)" != "$last_w" ]; then
        stop_pid "$LPID" KILL
        kills=$((kills + 1))
        last_w=$(watermark)
        start_loader
    fi
done
wait "$cpid"
stop_pid "$LPID" KILL
ok "the loader was killed while loading ($kills times)" [ "$kills" -ge 1 ]
ok "the last drain" drain
sample

acked=$(wc -l <"$DIR/ack")
ok "clients were acknowledged ($acked events)" [ "$acked" -gt 100 ]
eq "every acknowledged event loaded" "$acked" "$(table_count crash_report)"
samples=$(sql "SELECT count(*) FROM $SCHEMA.wm_samples WHERE w IS NOT NULL")
ok "watermarks sampled ($samples)" [ "$samples" -gt 2 ]
ok "the watermark moved during the run" \
    [ "$(sql "SELECT count(DISTINCT w) FROM $SCHEMA.wm_samples")" -gt 2 ]
eq "no sample shows a watermark ahead of what was loaded" 0 \
    "$(sql "SELECT count(*) FROM $SCHEMA.wm_samples s WHERE s.c <>
              (SELECT count(*) FROM $SCHEMA.crash_report WHERE received_at < s.w) +
              (SELECT count(*) FROM $SCHEMA.dead_letter WHERE received_at < s.w)")"
eq "drained: the watermark passed every event" 0 \
    "$(sql "SELECT count(*) FROM $SCHEMA.crash_report
            WHERE received_at >= (SELECT loaded_through FROM $SCHEMA.watermark)")"
lt=$(status_json | jq -r .loaded_through)
ok "/v1/status shows loaded_through as RFC 3339 UTC with milliseconds" \
    grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$' <<<"$lt"
eq "/v1/status agrees with the view (to the millisecond)" \
    "$(sql "SELECT to_char(date_trunc('milliseconds', loaded_through) AT TIME ZONE 'UTC',
                   'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM $SCHEMA.watermark")" "$lt"

t_done test_watermark.sh
