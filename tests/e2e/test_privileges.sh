#!/usr/bin/env bash
# test_privileges.sh - the roles of docs/roles.sql, as README's "Privileges" tells an operator
# to create them: the loader runs as the role that owns the schema and nothing more, the
# server reads (server.database_conninfo) as the read-only role. Events of every built-in
# type load exactly once and GETs answer; the server's role cannot write (INSERT, UPDATE,
# DELETE, CREATE refused), the loader's cannot create outside its schema. Then the loader's
# role is made read-only (default_transaction_read_only, as a standby would be): the loader
# says "PostgreSQL is read-only: a standby?" in its log and in /v1/status, and loads again
# once that is undone.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
. tests/lib/lib_e2e.sh

PSQL=${DP_PG_BINDIR:+$DP_PG_BINDIR/}psql
e2e_setup privileges
LROLE=dp_loader_$$
RROLE=dp_reader_$$
priv_cleanup() {
    e2e_cleanup
    sql "DROP OWNED BY $RROLE; DROP OWNED BY $LROLE; DROP ROLE $RROLE; DROP ROLE $LROLE" >/dev/null
}
trap priv_cleanup EXIT
# The harness's conninfo names user=postgres.
as_role() { echo "${DP_PG_CONNINFO/user=postgres/user=$1}"; }
# role_sql ROLE QUERY: QUERY as ROLE; stdout and stderr.
role_sql() { "$PSQL" "$(as_role "$1")" -Atqc "$2" 2>&1; }

"$PSQL" "$DP_PG_CONNINFO" -q -v ON_ERROR_STOP=1 -v schema="$SCHEMA" -v loader="$LROLE" \
    -v reader="$RROLE" -f docs/roles.sql >"$DIR/roles.out" 2>&1
eq "docs/roles.sql runs" 0 $?
E2E_CONNINFO=$(as_role "$LROLE")
e2e_config ", \"database_conninfo\": \"$(as_role "$RROLE")\"" \
    '"interval_s": 1, "min_interval_s": 0, "high_water": 1'
start_server
start_loader
"$CLIENT" -p "$PORT" -c 4 -n 200 -d 60 -t crash,ad,login,sample,product -o "$DIR/ack" \
    -S "$DIR/sent" >"$DIR/client.out" 2>&1
eq "the load client ends without unexpected statuses" 0 $?
"$CLIENT" -p "$PORT" -c 2 -n 100 -d 60 -t crash,ad,login,sample -k -x "key$$" -B 1000000000 \
    -o "$DIR/kack" -S "$DIR/ksent" >"$DIR/kclient.out" 2>&1
eq "the keyed client ends without unexpected statuses" 0 $?
wait_until 60 "the loader (as $LROLE) loads everything" queue_empty
id=$(sql "SELECT id FROM $SCHEMA.crash_report LIMIT 1")
eq "GET of a stored row as $RROLE answers 200" 200 \
    "$(curl -s -o /dev/null -m 10 -w '%{http_code}' "$URL/v1/events/crash_report/$id")"
eq "the tables belong to the loader's role" "$LROLE" \
    "$(sql "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = '$SCHEMA'")"

# The server's role cannot write, whatever it tries (BEGIN READ WRITE: past its sessions'
# read-only default, to reach the privileges).
has "INSERT as $RROLE refused" "ERROR:  permission denied for table crash_report" \
    "$(role_sql "$RROLE" "BEGIN READ WRITE;
        INSERT INTO $SCHEMA.crash_report SELECT * FROM $SCHEMA.crash_report LIMIT 1")"
has "INSERT as $RROLE refused also by its read-only sessions" \
    "ERROR:  cannot execute INSERT in a read-only transaction" \
    "$(role_sql "$RROLE" "INSERT INTO $SCHEMA.crash_report
        SELECT * FROM $SCHEMA.crash_report LIMIT 1")"
has "UPDATE as $RROLE refused" "ERROR:  permission denied for table loader_batches" \
    "$(role_sql "$RROLE" "BEGIN READ WRITE;
        UPDATE $SCHEMA.loader_batches SET rows = 0")"
has "DELETE as $RROLE refused" "ERROR:  permission denied for table dead_letter" \
    "$(role_sql "$RROLE" "BEGIN READ WRITE; DELETE FROM $SCHEMA.dead_letter")"
has "CREATE TABLE as $RROLE refused" "ERROR:  permission denied for schema $SCHEMA" \
    "$(role_sql "$RROLE" "BEGIN READ WRITE; CREATE TABLE $SCHEMA.x (i int)")"
has "the loader's role cannot create outside its schema" \
    "ERROR:  permission denied for schema public" \
    "$(role_sql "$LROLE" "CREATE TABLE public.dp_priv_$$ (i int)")"

# A read-only server, as a standby is: said in the loader's log and in /v1/status.
sql "ALTER ROLE $LROLE SET default_transaction_read_only = on" >/dev/null
stop_pid "$LPID"
eq "loader exits 0 on SIGTERM" 0 "$T_RC"
"$CLIENT" -p "$PORT" -c 1 -n 20 -d 60 -t crash -B 2000000000 -o "$DIR/ack.ro" \
    >>"$DIR/client.out" 2>&1
timeout 120 "$BIN/datapipe-loader" -c "$CFG" --once >"$DIR/ro.log" 2>&1
eq "--once against a read-only server exits 1" 1 $?
has_file "the loader's log says the server is read-only" \
    "PostgreSQL is read-only: a standby? (transaction_read_only is on)" "$DIR/ro.log"
has "/v1/status says the server is read-only" \
    "\"last_error\":\"database: PostgreSQL is read-only: a standby?" "$(status_json)"
sql "ALTER ROLE $LROLE RESET default_transaction_read_only" >/dev/null
drain
eq "--once loads again once the server is writable" 0 $?

cat "$DIR/ack" "$DIR/kack" "$DIR/ack.ro" >"$DIR/ack.all"
cat "$DIR/sent" "$DIR/ksent" >"$DIR/sent.all"
cut -d' ' -f1 "$DIR/ack.ro" >>"$DIR/sent.all"
e2e_verify "$DIR/ack.all" "$DIR/sent.all"
e2e_verify_keys "$DIR/ksent"
stop_pid "$SPID"
eq "server exits 0 on SIGTERM" 0 "$T_RC"
e2e_figures acknowledged="$ACKED" loaded="$LOADED" lost="$LOST" duplicated="$DUPS"
t_done test_privileges
