#!/usr/bin/env bash
# test_citus.sh - datapipe on Citus (make citus-check; docs/scaling.md): a coordinator and two
# workers on loopback, three clusters started here from the Citus that `make citus` built from
# the vendored source into $DP_BUILD/citus; crash_report (partitioned for retention, so its keys
# live in a key table) distributed by id, its key table by the key; two appliances' loaders
# drain keyed and unkeyed events at once while one is SIGKILLed and restarted. Every key once,
# every event once, rows on both workers. Runs as root (clusters as postgres) or as a user.
set -uo pipefail

BIN=${DP_BIN:-bin}
BUILD=${DP_BUILD:-build}
TOOL=$BUILD/tests/tools/ldrtool
ROOT=$(cd "$BUILD/citus/root" 2>/dev/null && pwd) || { echo "run make citus first" >&2; exit 1; }
PGBIN=$ROOT/usr/lib/postgresql/15/bin
PSQL=/usr/lib/postgresql/15/bin/psql
KEYED=${CITUS_KEYED:-20000}
PLAIN=${CITUS_PLAIN:-20000}
pass=0
fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dp-citus.XXXXXX")
declare -a ports=() pids=()

if [ "$(id -u)" = 0 ]; then as_pg() { runuser -u postgres -- "$@"; }; else as_pg() { "$@"; }; fi
ok() { if "${@:2}"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1" >&2; fi; }
eq() { [ "$1" = "$2" ] || { echo "  got '$1', want '$2'" >&2; return 1; }; }
die() { echo "test_citus: $*" >&2; exit 1; }
sql() { "$PSQL" -X -v ON_ERROR_STOP=1 -qAt -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "$2"; }
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    for i in 0 1 2; do
        [ -f "$tmp/n$i/data/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$tmp/n$i/data" -m immediate -w stop >/dev/null 2>&1
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

# The Citus build's own tree: postgres, initdb and pg_ctl copied (PostgreSQL finds its share
# and lib directories relative to its own binary), everything else of Debian's linked. Copied
# each time: a PostgreSQL upgraded since must not run an older binary against newer libraries.
tree() {
    local d f
    mkdir -p "$PGBIN"
    for f in postgres initdb pg_ctl; do cp -f /usr/lib/postgresql/15/bin/$f "$PGBIN/"; done
    for d in usr/lib/postgresql/15/lib usr/share/postgresql/15 usr/share/postgresql/15/extension; do
        mkdir -p "$ROOT/$d"
        for f in /"$d"/*; do
            [ -e "$ROOT/$d/${f##*/}" ] || ln -s "$f" "$ROOT/$d/${f##*/}"
        done
    done
}

start_node() {
    local i=$1 port
    mkdir -p "$tmp/n$i"
    chown postgres "$tmp" "$tmp/n$i" 2>/dev/null
    as_pg "$PGBIN/initdb" -D "$tmp/n$i/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
        >"$tmp/n$i/initdb.log" 2>&1 || { cat "$tmp/n$i/initdb.log"; die "initdb failed"; }
    for _ in 1 2 3 4 5; do
        port=$((20000 + RANDOM % 40000))
        if as_pg "$PGBIN/pg_ctl" -D "$tmp/n$i/data" -l "$tmp/n$i/server.log" -w -t 60 start \
            -o "-p $port -k $tmp/n$i -c listen_addresses=127.0.0.1 -c fsync=off \
                -c shared_preload_libraries=citus -c max_connections=200 \
                -c max_prepared_transactions=200" >/dev/null; then
            ports[i]=$port
            sql "$port" "CREATE EXTENSION citus" || die "CREATE EXTENSION citus failed"
            return 0
        fi
    done
    tail -20 "$tmp/n$i/server.log"
    die "cannot start node $i"
}

config() {
    cat >"$tmp/$1.json" <<JSON
{"queue": {"path": "$tmp/$1.q", "max_bytes": 1073741824, "id": "citus_$1"},
 "database": {"conninfo": "host=127.0.0.1 port=${ports[0]} user=postgres dbname=postgres",
              "schema": "datapipe"},
 "loader": {"workers": 2, "batch_rows": 2000, "interval_s": 1, "min_interval_s": 1},
 "log": {"level": "warn"},
 "retention": {"crash_report": {"partition": "day", "keep_days": 3650}}}
JSON
}

tree
chmod -R a+rX "$ROOT" 2>/dev/null
for i in 0 1 2; do start_node "$i"; done
if ! sql "${ports[0]}" "SELECT citus_set_coordinator_host('127.0.0.1', ${ports[0]});
        SELECT citus_add_node('127.0.0.1', ${ports[1]});
        SELECT citus_add_node('127.0.0.1', ${ports[2]})" >/dev/null; then
    die "cannot add the workers"
fi

# The loader creates its tables; the operator distributes them (docs/scaling.md).
config a
config b
"$TOOL" fill "$tmp/a.q" crash_report 1 >/dev/null || die "fill failed"
"$BIN/datapipe-loader" -c "$tmp/a.json" --once || die "first load failed"
keys=$(sql "${ports[0]}" "SELECT relname FROM pg_class WHERE relname LIKE 'dp\\_keys\\_%' AND
        relnamespace = 'datapipe'::regnamespace")
sql "${ports[0]}" "SELECT create_distributed_table('datapipe.crash_report', 'id')" >/dev/null ||
    die "cannot distribute crash_report"
sql "${ports[0]}" "SELECT create_distributed_table('datapipe.$keys', 'idempotency_key')" \
    >/dev/null || die "cannot distribute $keys"

# Both appliances hold the same keyed events (a client's retries through either) and
# unkeyed events of their own.
for a in a b; do
    "$TOOL" fill "$tmp/$a.q" crash_report+key "$KEYED" >/dev/null || die "fill failed"
    "$TOOL" fill "$tmp/$a.q" crash_report "$PLAIN" >/dev/null || die "fill failed"
done
"$BIN/datapipe-loader" -c "$tmp/b.json" 2>"$tmp/b.log" &
pids+=($!)
for _ in 1 2 3; do
    "$BIN/datapipe-loader" -c "$tmp/a.json" 2>>"$tmp/a.log" &
    pid=$!
    sleep 2
    kill -9 "$pid"
    wait "$pid" 2>/dev/null
done
"$BIN/datapipe-loader" -c "$tmp/a.json" 2>>"$tmp/a.log" &
pids+=($!)
for _ in $(seq 1 240); do
    [ "$("$TOOL" stats "$tmp/a.q")" = "events=0" ] && [ "$("$TOOL" stats "$tmp/b.q")" = "events=0" ] && break
    sleep 0.5
done
ok "queue a drained" eq "$("$TOOL" stats "$tmp/a.q")" "events=0"
ok "queue b drained" eq "$("$TOOL" stats "$tmp/b.q")" "events=0"
ok "every event once" eq "$(sql "${ports[0]}" "SELECT count(*) FROM datapipe.crash_report")" \
    $((1 + KEYED + 2 * PLAIN))
ok "every key once" eq "$(sql "${ports[0]}" "SELECT count(*) - count(DISTINCT idempotency_key)
    FROM datapipe.crash_report WHERE idempotency_key IS NOT NULL")" 0
ok "every key there" eq "$(sql "${ports[0]}" "SELECT count(*) FROM datapipe.crash_report
    WHERE idempotency_key IS NOT NULL")" "$KEYED"
ok "no dead letters" eq "$(sql "${ports[0]}" "SELECT count(*) FROM datapipe.dead_letter")" 0
ok "rows on both workers" eq "$(sql "${ports[0]}" "SELECT count(DISTINCT nodeport) FROM
    citus_shards WHERE (table_name::text LIKE 'datapipe.dp_p%' OR table_name::text =
    'datapipe.$keys') AND shard_size > 0 AND nodeport <> ${ports[0]}")" 2
echo "citus: $pass passed, $fail failed"
[ "$fail" = 0 ]
