#!/usr/bin/env bash
# bench_loader.sh - datapipe-loader's drain rate (make bench). 1,000,000 crash_report events
# queued, `datapipe-loader --once` timed from full to empty; the same rows through the same
# encoder into a file, `psql \copy` into an empty copy of the table (same primary key) timed;
# rows/s of both and their ratio (target >= 0.8). Then the same number of crash_report events
# each with its own idempotency key (loaded through a temporary table and INSERT ... ON
# CONFLICT DO NOTHING) as a ratio against the unkeyed drain (target >= 0.5). Then the drain
# rate of data_sample events of 10,000 numbers each in MB/s of JSON. Prints figures; never
# fails on a timing.
set -uo pipefail

BIN=${DP_BIN:-bin}
BUILD=${DP_BUILD:-build}
TOOL=$BUILD/tests/tool_loader
: "${DP_PG_CONNINFO:?run through make bench (tests/pg run)}"
PSQL=$DP_PG_BINDIR/psql
EVENTS=${BENCH_LOADER_EVENTS:-1000000}
SAMPLES=${BENCH_LOADER_SAMPLES:-1000}
tmp=$(mktemp -d)
schema=bench_loader_$$
trap '"$PSQL" "$DP_PG_CONNINFO" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1;
      rm -rf "$tmp"' EXIT

# config NAME WORKERS: defaults except where the queue and the tables live.
config() {
    cat >"$tmp/$1.json" <<EOF
{"queue": {"path": "$tmp/$1.q", "max_bytes": 4294967296, "id": "bench_$1_$$"},
 "database": {"conninfo": "$DP_PG_CONNINFO", "schema": "$schema"},
 "loader": {"workers": $2, "batch_rows": 50000},
 "log": {"level": "warn"}}
EOF
}
now() { date +%s.%N; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", n / (b - a) }'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
die() { echo "bench_loader: $*" >&2; exit 1; }

# drain NAME WORKERS TYPE N [NUMBERS]: fill a queue, time --once; prints "seconds json_bytes".
drain() {
    local out t0 t1
    config "$1" "$2"
    out=$("$TOOL" fill "$tmp/$1.q" "$3" "$4" "${5:-100}") || die "fill failed"
    if [ "$1" = main ]; then
        "$TOOL" copyfile "$tmp/$1.q" "$tmp/rows.copy" || die "copyfile failed"
    fi
    t0=$(now)
    "$BIN/datapipe-loader" -c "$tmp/$1.json" --once || die "datapipe-loader --once failed"
    t1=$(now)
    [ "$("$TOOL" stats "$tmp/$1.q")" = "events=0" ] || die "queue not empty after --once"
    echo "$t0 $t1 ${out##*json_bytes=}"
}

read -r l0 l1 _ <<<"$(drain main 2 crash_report "$EVENTS")"
loaded=$("$PSQL" "$DP_PG_CONNINFO" -Atc "SELECT count(*) FROM $schema.crash_report")
[ "$loaded" = "$EVENTS" ] || die "loaded $loaded rows, want $EVENTS"
loader_rate=$(rate "$EVENTS" "$l0" "$l1")

"$PSQL" "$DP_PG_CONNINFO" -qc "CREATE TABLE $schema.crash_report_copy \
    (LIKE $schema.crash_report INCLUDING ALL)" || die "cannot create the copy table"
cols=$("$PSQL" "$DP_PG_CONNINFO" -Atc "SELECT string_agg(attname, ', ' ORDER BY attnum) FROM \
    pg_attribute WHERE attrelid = '$schema.crash_report'::regclass AND attnum > 0 AND \
    attname <> 'loaded_at' AND NOT attisdropped")
p0=$(now)
"$PSQL" "$DP_PG_CONNINFO" -qc "\\copy $schema.crash_report_copy ($cols) from '$tmp/rows.copy'" ||
    die "psql \\copy failed"
p1=$(now)
rm -f "$tmp/rows.copy"
psql_rate=$(rate "$EVENTS" "$p0" "$p1")

"$PSQL" "$DP_PG_CONNINFO" -qc "TRUNCATE $schema.crash_report"
read -r o0 o1 _ <<<"$(drain one 1 crash_report "$EVENTS")"

"$PSQL" "$DP_PG_CONNINFO" -qc "TRUNCATE $schema.crash_report"
read -r k0 k1 _ <<<"$(drain keyed 2 crash_report+key "$EVENTS")"
keyed_loaded=$("$PSQL" "$DP_PG_CONNINFO" -Atc \
    "SELECT count(*) FROM $schema.crash_report WHERE idempotency_key IS NOT NULL")
[ "$keyed_loaded" = "$EVENTS" ] || die "loaded $keyed_loaded keyed rows, want $EVENTS"
keyed_rate=$(rate "$EVENTS" "$k0" "$k1")

"$PSQL" "$DP_PG_CONNINFO" -qc "TRUNCATE $schema.crash_report, $schema.crash_report_copy"
read -r s0 s1 sbytes <<<"$(drain samples 2 data_sample "$SAMPLES" 10000)"

echo "loader --once: $EVENTS crash_report rows in $(secs "$l0" "$l1") s = $loader_rate rows/s" \
    "(2 workers, batch_rows 50000)"
echo "loader --once, 1 worker: $(rate "$EVENTS" "$o0" "$o1") rows/s"
echo "psql \\copy of the same rows into an empty copy of the table: $(secs "$p0" "$p1") s =" \
    "$psql_rate rows/s"
awk -v a="$loader_rate" -v b="$psql_rate" \
    'BEGIN { printf "ratio loader / psql \\copy: %.2f (target >= 0.80)\n", a / b }'
echo "loader --once, keyed rows (a key each): $keyed_rate rows/s"
awk -v a="$keyed_rate" -v b="$loader_rate" \
    'BEGIN { printf "ratio keyed / unkeyed loader: %.2f (target >= 0.50)\n", a / b }'
awk -v n="$SAMPLES" -v by="$sbytes" -v a="$s0" -v b="$s1" 'BEGIN {
    printf "data_sample (10,000 numbers each): %d events, %.1f MB of JSON in %.2f s = %.1f MB/s\n",
        n, by / 1e6, b - a, by / 1e6 / (b - a) }'
