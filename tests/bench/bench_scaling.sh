#!/usr/bin/env bash
# bench_scaling.sh - what one PostgreSQL takes from the loaders of 1, 2 and 4 appliances
# draining at once (make bench; docs/scaling.md). Each appliance is a queue of its own with its
# own queue.id, filled with BENCH_SCALING_EVENTS (1,000,000) crash_report events; its
# datapipe-loader --once (2 workers, 50,000-event batches) is started with the others' at the
# same moment, and the rate is all their events over the time until the last one exits. The
# table is truncated, vacuumed and checkpointed untimed between steps. Prints figures; never
# fails on a timing.
set -uo pipefail

BIN=${DP_BIN:-bin}
BUILD=${DP_BUILD:-build}
TOOL=$BUILD/tests/tools/ldrtool
: "${DP_PG_CONNINFO:?run through make bench (tests/pg run)}"
PSQL=$DP_PG_BINDIR/psql
EVENTS=${BENCH_SCALING_EVENTS:-1000000}
tmp=$(mktemp -d)
schema=bench_scaling_$$
trap '"$PSQL" "$DP_PG_CONNINFO" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1;
      rm -rf "$tmp"' EXIT

die() { echo "bench_scaling: $*" >&2; exit 1; }
now() { date +%s.%N; }

# config NAME: an appliance's configuration, its own queue and queue.id, the shared schema.
config() {
    cat >"$tmp/$1.json" <<JSON
{"queue": {"path": "$tmp/$1.q", "max_bytes": 4294967296, "id": "bench_$1_$$"},
 "database": {"conninfo": "$DP_PG_CONNINFO", "schema": "$schema"},
 "loader": {"workers": 2, "batch_rows": 50000},
 "log": {"level": "warn"}}
JSON
}

settle() {
    "$PSQL" "$DP_PG_CONNINFO" -qc "VACUUM ANALYZE $schema.crash_report" -c "CHECKPOINT" ||
        die "cannot vacuum"
}

# step K: K appliances, each with EVENTS queued, drained at once; prints the rows/s.
step() {
    local k=$1 i t0 t1 n
    local -a pids=()
    "$PSQL" "$DP_PG_CONNINFO" -qc "TRUNCATE $schema.crash_report" || die "cannot truncate"
    settle
    for ((i = 1; i <= k; i++)); do
        config "s${k}a$i"
        "$TOOL" fill "$tmp/s${k}a$i.q" crash_report "$EVENTS" >/dev/null || die "fill failed"
    done
    t0=$(now)
    for ((i = 1; i <= k; i++)); do
        "$BIN/datapipe-loader" -c "$tmp/s${k}a$i.json" --once &
        pids+=($!)
    done
    for i in "${pids[@]}"; do
        wait "$i" || die "datapipe-loader --once failed"
    done
    t1=$(now)
    rm -rf "$tmp"/s"$k"a*.q
    n=$("$PSQL" "$DP_PG_CONNINFO" -Atc "SELECT count(*) FROM $schema.crash_report")
    [ "$n" = $((k * EVENTS)) ] || die "$k appliances: loaded $n rows, want $((k * EVENTS))"
    awk -v k="$k" -v n="$n" -v a="$t0" -v b="$t1" \
        'BEGIN { printf "scaling: %d appliance(s), %d rows in %.2f s: %.0f rows/s\n", k, n,
                 b - a, n / (b - a) }'
}

# Warm-up, untimed: the first run creates the schema and its tables.
config warmup
"$TOOL" fill "$tmp/warmup.q" crash_report 1000 >/dev/null || die "fill failed"
"$BIN/datapipe-loader" -c "$tmp/warmup.json" --once || die "warm-up failed"
"$PSQL" "$DP_PG_CONNINFO" -qc "ALTER TABLE $schema.crash_report SET (autovacuum_enabled = false)"
echo "scaling: $(nproc) cores; PostgreSQL $("$PSQL" "$DP_PG_CONNINFO" -Atc 'SHOW server_version')"
for k in 1 2 4; do
    step "$k"
done
