#!/usr/bin/env bash
# bench_memory.sh - what one request costs in memory: for the worst body shapes
# found, a fresh server's peak RSS growth (VmHWM - VmRSS before) per byte of inflated body;
# then the peak under 16 concurrent worst-case requests. Targets: one request <= 8 x its
# inflated body (tiny-event bodies keep a per-event floor: see README), 16 at once <=
# server.max_inflight_bytes + 256 MiB. Figures only: nothing here fails on a figure.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh

TMP=$(mktemp -d "${DP_BENCH_DIR:-build}/bench-memory.XXXXXX")
trap 't_cleanup; rm -rf "$TMP"' EXIT
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# Shapes, each about the size the cap allows (100,000 events) or max_body_bytes.
awk 'BEGIN {for (i = 0; i < 99999; i++) printf "{\"user_id\": %d, \"timestamp\": 1, \"message\": \"m\"}\n", i}' \
    >"$TMP/tiny_events"
awk 'BEGIN {for (i = 0; i < 99999; i++) print 1}' >"$TMP/tiny_invalid"
awk 'BEGIN {for (i = 0; i < 99999; i++) printf "{\"u\":%d}\n", i}' >"$TMP/tiny_invalid_distinct"
awk 'BEGIN {for (j = 0; j < 2000; j++) {s = "{\"id\": \"p" j "\", \"d\": "; for (i = 0; i < 120; i++) s = s "{\"a\": "; s = s "1"; for (i = 0; i < 120; i++) s = s "}"; print s "}"}}' \
    >"$TMP/deep_objects"
awk 'BEGIN {s = "x"; while (length(s) < 1048576) s = s s; for (i = 0; i < 30; i++) printf "{\"user_id\": %d, \"timestamp\": 1, \"message\": \"%s\"}\n", i, s}' \
    >"$TMP/long_strings"
awk 'BEGIN {printf "{\"time_stamp\": \"2024-01-01T00:00:00Z\", \"data\": ["; for (i = 0; i < 1000000; i++) printf "%s%d.%d", (i ? "," : ""), i % 1000, i % 7; print "]}"}' \
    >"$TMP/data_sample_1m"
{ printf '{"user_id": 1, "timestamp": 1700000000, "message": "amp"}\n'; yes 1 | head -n 16000000; } |
    gzip -6 >"$TMP/amplification.gz"

start_server() { # start_server NAME: $PORT $SPID
    PORT=$(free_port)
    cat >"$TMP/cfg.json" <<JSON
{"server": {"listen": "127.0.0.1:$PORT", "threads": 64},
 "queue": {"path": "$TMP/q-$1", "max_bytes": 4294967296, "sync": true},
 "log": {"level": "warn"}}
JSON
    start_bg "$TMP/server-$1.log" "$BIN/datapipe-server" -c "$TMP/cfg.json"
    SPID=$T_LAST_PID
    wait_until 20 "the server answers" http_answers "http://127.0.0.1:$PORT/healthz" || exit 1
}
post() { # post FILE PATH [CURL ARGS]: "CODE SECONDS"
    local f=$1 path=$2
    shift 2
    curl -s -o /dev/null -m 300 -w '%{http_code} %{time_total}' --data-binary @"$f" "$@" \
        "http://127.0.0.1:$PORT$path"
}

printf '%-24s %10s %6s %8s %12s %10s\n' shape body_bytes code seconds rss_growth_kb per_byte
one() { # one NAME FILE PATH INFLATED_BYTES [CURL ARGS]
    local name=$1 f=$2 path=$3 inflated=$4 r0 r g
    shift 4
    start_server "$name"
    r0=$(rss_kb "$SPID")
    r=$(post "$f" "$path" "$@")
    g=$(($(hwm_kb "$SPID") - r0))
    printf '%-24s %10d %6s %8s %12d %10.2f\n' "$name" "$inflated" "${r%% *}" "${r#* }" "$g" \
        "$(awk -v g="$g" -v b="$inflated" 'BEGIN {print g * 1024 / b}')"
    stop_pid "$SPID"
}
for s in tiny_events tiny_invalid tiny_invalid_distinct deep_objects long_strings; do
    one "$s" "$TMP/$s" /v1/events/"$( [ "$s" = deep_objects ] && echo product || echo crash_report)" \
        "$(stat -c %s "$TMP/$s")"
done
one data_sample_1m "$TMP/data_sample_1m" /v1/events/data_sample "$(stat -c %s "$TMP/data_sample_1m")"
one amplification_gzip "$TMP/amplification.gz" /v1/events/crash_report 32000058 \
    -H 'Content-Encoding: gzip'

# 16 at once: the amplification body and tiny invalid events, 8 of each.
start_server sixteen
r0=$(rss_kb "$SPID")
pids=()
for i in $(seq 1 8); do
    post "$TMP/amplification.gz" /v1/events/crash_report -H 'Content-Encoding: gzip' \
        >"$TMP/c16-a$i" &
    pids+=("$!")
    post "$TMP/tiny_invalid_distinct" /v1/events/crash_report >"$TMP/c16-t$i" &
    pids+=("$!")
done
wait "${pids[@]}"
g=$(($(hwm_kb "$SPID") - r0))
echo "16 concurrent worst-case requests (8 amplification, 8 x 100,000 tiny invalid events):" \
    "answers $(cut -d' ' -f1 "$TMP"/c16-* | sort | uniq -c | tr -s ' \n' ' ');" \
    "peak RSS growth $((g / 1024)) MiB (target: max_inflight_bytes 256 MiB + 256 MiB)"
stop_pid "$SPID"
