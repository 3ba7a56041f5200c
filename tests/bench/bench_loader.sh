#!/usr/bin/env bash
# bench_loader.sh - datapipe-loader's drain rate (make bench). After an untimed warm-up run
# (the schema's creation), BENCH_LOADER_ROUNDS (3) rounds of: 1,000,000 crash_report events
# queued, `datapipe-loader --once` timed from full to empty; the same rows as COPY text into a
# file, `psql \copy` into an empty copy of the table (same indexes) timed; rows/s of the sums
# and their ratio (target >= 1.0). Every timed load is followed by an untimed VACUUM ANALYZE
# and CHECKPOINT, so that no step pays for the previous one's pages, and autovacuum is off on
# the timed tables (the loader's batch commits would wake it mid-drain, \copy's one commit
# after its end: each side's vacuum is done untimed instead). The same for crash_twin,
# a type declared in the configuration with crash_report's fields (target >= 1.0 against its
# own \copy). Then the same number of crash_report events each with its own idempotency key
# (their plain COPY succeeds: no key is in the table yet) as a ratio against the unkeyed drain
# (target >= 0.5). The loader COPYs both types in the binary format, psql the text rows. Then the drain rate of data_sample events of 10,000 numbers each in MB/s of
# JSON, with data_sample.raw compressed by lz4 (what the loader sets when PostgreSQL has it)
# and by pglz (set by hand). Prints figures; never fails on a timing.
set -uo pipefail

BIN=${DP_BIN:-bin}
BUILD=${DP_BUILD:-build}
TOOL=$BUILD/tests/tools/ldrtool
: "${DP_PG_CONNINFO:?run through make bench (tests/pg run)}"
PSQL=$DP_PG_BINDIR/psql
EVENTS=${BENCH_LOADER_EVENTS:-1000000}
ROUNDS=${BENCH_LOADER_ROUNDS:-3}
SAMPLES=${BENCH_LOADER_SAMPLES:-1000}
tmp=$(mktemp -d)
schema=bench_loader_$$
trap '"$PSQL" "$DP_PG_CONNINFO" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1;
      rm -rf "$tmp"' EXIT

# config NAME WORKERS: defaults except where the queue and the tables live; crash_twin declared.
config() {
    cat >"$tmp/$1.json" <<EOF
{"queue": {"path": "$tmp/$1.q", "max_bytes": 4294967296, "id": "bench_$1_$$"},
 "database": {"conninfo": "$DP_PG_CONNINFO", "schema": "$schema"},
 "loader": {"workers": $2, "batch_rows": 50000},
 "log": {"level": "warn"},
 "types": {"crash_twin": {"fields": {"user_id": {"type": "integer", "required": true},
     "timestamp": {"type": "timestamp", "required": true},
     "message": {"type": "string", "required": true}}}}}
EOF
}
now() { date +%s.%N; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", n / (b - a) }'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
die() { echo "bench_loader: $*" >&2; exit 1; }

# columns NAME: the column list of NAME's rows (ldrtool copyfile's, the loader's own).
columns() { sed -n 's/^columns=//p' "$tmp/$1.columns"; }

# drain NAME WORKERS TYPE N [NUMBERS]: fill a queue, time --once; prints "t0 t1 json_bytes".
# The queues "main" and "twin" also get their rows written to $tmp/NAME.copy.
drain() {
    local out t0 t1
    config "$1" "$2"
    out=$("$TOOL" fill "$tmp/$1.q" "$3" "$4" "${5:-100}") || die "fill failed"
    if [ "$1" = main ] || [ "$1" = twin ]; then
        "$TOOL" copyfile "$tmp/$1.q" "$tmp/$1.copy" "$tmp/$1.json" >"$tmp/$1.columns" ||
            die "copyfile failed"
    fi
    t0=$(now)
    "$BIN/datapipe-loader" -c "$tmp/$1.json" --once || die "datapipe-loader --once failed"
    t1=$(now)
    [ "$("$TOOL" stats "$tmp/$1.q")" = "events=0" ] || die "queue not empty after --once"
    echo "$t0 $t1 ${out##*json_bytes=}"
}

# copy_rate NAME TABLE COLUMNS: psql \copy of NAME's rows into an empty copy of TABLE;
# prints "t0 t1".
copy_rate() {
    local p0 p1
    "$PSQL" "$DP_PG_CONNINFO" -qc "SET client_min_messages = warning" \
        -c "DROP TABLE IF EXISTS $schema.$2_copy" -c "CREATE TABLE \
        $schema.$2_copy (LIKE $schema.$2 INCLUDING ALL)" \
        -c "ALTER TABLE $schema.$2_copy SET (autovacuum_enabled = false)" ||
        die "cannot create the copy table"
    p0=$(now)
    "$PSQL" "$DP_PG_CONNINFO" -qc "\\copy $schema.$2_copy $3 from '$tmp/$1.copy'" ||
        die "psql \\copy failed"
    p1=$(now)
    rm -f "$tmp/$1.copy"
    settle "$2_copy"
    echo "$p0 $p1"
}

# settle TABLE: vacuum and analyze what was just loaded, then write every dirty page out, all
# untimed, so that neither autovacuum nor the writing of this step's pages weighs on the next
# timed step.
settle() {
    "$PSQL" "$DP_PG_CONNINFO" -qc "VACUUM ANALYZE $schema.$1" -c "CHECKPOINT" ||
        die "cannot vacuum $1"
}

# count TABLE WANT: the rows loaded must all be there.
count() {
    local n
    n=$("$PSQL" "$DP_PG_CONNINFO" -Atc "SELECT count(*) FROM $schema.$1")
    [ "$n" = "$2" ] || die "$1: loaded $n rows, want $2"
    settle "$1"
}

# Warm-up, untimed: the loader's first run creates the schema and its tables; the figures
# are of the steady drain.
drain warmup 2 crash_report 1000 >/dev/null
drain warmup_twin 2 crash_twin 1000 >/dev/null
# The loader commits every batch, so autovacuum would start on its tables in the middle of a
# timed drain, while \copy commits once; it runs on neither during the timed steps and settle
# does its work after each, untimed, for both.
for t in crash_report crash_twin; do
    "$PSQL" "$DP_PG_CONNINFO" -qc "ALTER TABLE $schema.$t SET (autovacuum_enabled = false)" ||
        die "cannot set autovacuum_enabled on $t"
done
"$PSQL" "$DP_PG_CONNINFO" -qc "TRUNCATE $schema.crash_report, $schema.crash_twin"
# The drain and its \copy baseline in alternating rounds (this VM's disk and CPU are shared:
# one round of each can differ by a third either way); the ratio is of the sums.
loader_s=0
psql_s=0
for ((round = 1; round <= ROUNDS; round++)); do
    "$PSQL" "$DP_PG_CONNINFO" -qc "TRUNCATE $schema.crash_report"
    read -r l0 l1 _ <<<"$(drain main 2 crash_report "$EVENTS")"
    [ -n "${l1:-}" ] || die "the drain of crash_report failed"
    count crash_report "$EVENTS"
    read -r p0 p1 <<<"$(copy_rate main crash_report "$(columns main)")"
    [ -n "${p1:-}" ] || die "psql \\copy of crash_report failed"
    echo "round $round: loader --once $(rate "$EVENTS" "$l0" "$l1") rows/s, psql \\copy" \
        "$(rate "$EVENTS" "$p0" "$p1") rows/s"
    loader_s=$(awk -v s="$loader_s" -v a="$l0" -v b="$l1" 'BEGIN { printf "%.6f", s + b - a }')
    psql_s=$(awk -v s="$psql_s" -v a="$p0" -v b="$p1" 'BEGIN { printf "%.6f", s + b - a }')
done
loader_rate=$(rate "$((EVENTS * ROUNDS))" 0 "$loader_s")
psql_rate=$(rate "$((EVENTS * ROUNDS))" 0 "$psql_s")

read -r t0 t1 _ <<<"$(drain twin 2 crash_twin "$EVENTS")"
count crash_twin "$EVENTS"
twin_rate=$(rate "$EVENTS" "$t0" "$t1")
read -r q0 q1 <<<"$(copy_rate twin crash_twin "$(columns twin)")"
[ -n "${q1:-}" ] || die "psql \\copy of crash_twin failed"
twin_psql_rate=$(rate "$EVENTS" "$q0" "$q1")

"$PSQL" "$DP_PG_CONNINFO" -qc "TRUNCATE $schema.crash_report, $schema.crash_twin"
read -r o0 o1 _ <<<"$(drain one 1 crash_report "$EVENTS")"

"$PSQL" "$DP_PG_CONNINFO" -qc "TRUNCATE $schema.crash_report"
read -r k0 k1 _ <<<"$(drain keyed 2 crash_report+key "$EVENTS")"
keyed_loaded=$("$PSQL" "$DP_PG_CONNINFO" -Atc \
    "SELECT count(*) FROM $schema.crash_report WHERE idempotency_key IS NOT NULL")
[ "$keyed_loaded" = "$EVENTS" ] || die "loaded $keyed_loaded keyed rows, want $EVENTS"
keyed_rate=$(rate "$EVENTS" "$k0" "$k1")

"$PSQL" "$DP_PG_CONNINFO" -qc "TRUNCATE $schema.crash_report, $schema.crash_report_copy,
    $schema.crash_twin_copy"
read -r s0 s1 sbytes <<<"$(drain samples 2 data_sample "$SAMPLES" 10000)"
compression=$("$PSQL" "$DP_PG_CONNINFO" -Atc "SELECT CASE attcompression WHEN 'l' THEN 'lz4'
    ELSE 'pglz' END FROM pg_attribute WHERE attrelid = '$schema.data_sample'::regclass
    AND attname = 'raw'")
# The loader keeps a compression set by hand: pglz, for the comparison.
"$PSQL" "$DP_PG_CONNINFO" -qc "TRUNCATE $schema.data_sample" \
    -c "ALTER TABLE $schema.data_sample ALTER COLUMN raw SET COMPRESSION pglz" ||
    die "cannot set pglz"
read -r g0 g1 gbytes <<<"$(drain samples_pglz 2 data_sample "$SAMPLES" 10000)"

echo "loader --once: $ROUNDS x $EVENTS crash_report rows in $(secs 0 "$loader_s") s = $loader_rate rows/s" \
    "(2 workers, batch_rows 50000)"
echo "loader --once, 1 worker: $(rate "$EVENTS" "$o0" "$o1") rows/s"
echo "psql \\copy of the same rows into an empty copy of the table: $(secs 0 "$psql_s") s =" \
    "$psql_rate rows/s"
awk -v a="$loader_rate" -v b="$psql_rate" \
    'BEGIN { printf "ratio loader / psql \\copy: %.2f (target >= 1.0)\n", a / b }'
echo "loader --once, keyed rows (a key each): $keyed_rate rows/s"
awk -v a="$keyed_rate" -v b="$loader_rate" \
    'BEGIN { printf "ratio keyed / unkeyed loader: %.2f (target >= 0.50)\n", a / b }'
echo "declared crash_twin, loader --once: $EVENTS rows in $(secs "$t0" "$t1") s =" \
    "$twin_rate rows/s; psql \\copy of the same rows: $twin_psql_rate rows/s"
awk -v a="$twin_rate" -v b="$twin_psql_rate" \
    'BEGIN { printf "ratio declared type loader / psql \\copy: %.2f (target >= 1.0)\n", a / b }'
awk -v a="$twin_rate" -v b="$loader_rate" \
    'BEGIN { printf "ratio declared crash_twin / compiled crash_report, loader: %.2f\n", a / b }'
awk -v n="$SAMPLES" -v by="$sbytes" -v a="$s0" -v b="$s1" -v c="$compression" 'BEGIN {
    printf "data_sample (10,000 numbers each), raw %s: %d events, %.1f MB of JSON in %.2f s" \
        " = %.1f MB/s\n", c, n, by / 1e6, b - a, by / 1e6 / (b - a) }'
awk -v n="$SAMPLES" -v by="$gbytes" -v a="$g0" -v b="$g1" 'BEGIN {
    printf "data_sample (10,000 numbers each), raw pglz: %d events, %.1f MB of JSON in %.2f s" \
        " = %.1f MB/s\n", n, by / 1e6, b - a, by / 1e6 / (b - a) }'
