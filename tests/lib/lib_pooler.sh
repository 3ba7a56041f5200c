# lib_pooler.sh - PgBouncer in transaction pooling mode in front of the harness's cluster, for
# the tests that run datapipe through a pooler (Debian's pgbouncer package). It listens on a
# free loopback port and reaches the cluster on its unix socket. auth_type trust: the
# harness's cluster trusts every local connection, so a password at the pooler would prove
# nothing more; the users it lets in are listed in its auth_file. PgBouncer refuses to run as
# root: it runs as the cluster's owner. Test code only; source lib_sh.sh first.
# shellcheck shell=bash

POOLER_BIN=${POOLER_BIN:-/usr/sbin/pgbouncer}

# pooler_answers: a client gets through the pooler to PostgreSQL; for wait_until.
pooler_answers() {
    local psql=${DP_PG_BINDIR:+$DP_PG_BINDIR/}psql
    [ "$("$psql" "$POOLER_CONNINFO" -Atqc "SELECT 1" 2>/dev/null)" = 1 ]
}

# pooler_start DIR [USER...]: start PgBouncer (pool_mode transaction, POOLER_POOL_SIZE server
# connections per database and user, default 4) with its files in DIR, letting in postgres and
# the USERs. Sets POOLER_PORT, POOLER_PID, POOLER_CONNINFO (as postgres); a failed check if it
# does not answer within 20 s. Its PID joins T_PIDS, so t_cleanup ends it.
pooler_start() {
    local dir=$1 host port u
    shift
    host=$(sed -n 's/.*host=\([^ ]*\).*/\1/p' <<<"$DP_PG_CONNINFO")
    port=$(sed -n 's/.*port=\([0-9]*\).*/\1/p' <<<"$DP_PG_CONNINFO")
    mkdir -p "$dir"
    printf '"postgres" ""\n' >"$dir/users.txt"
    for u in "$@"; do
        printf '"%s" ""\n' "$u" >>"$dir/users.txt"
    done
    POOLER_PORT=$(free_port)
    cat >"$dir/pgbouncer.ini" <<EOF2
[databases]
postgres = host=$host port=$port dbname=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $POOLER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $dir/users.txt
pool_mode = transaction
default_pool_size = ${POOLER_POOL_SIZE:-4}
max_client_conn = 500
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
EOF2
    if [ "$(id -u)" = 0 ]; then
        chown -R "$DP_PG_OWNER" "$dir"
        chmod 0755 "$(dirname "$dir")"
    fi
    as_pg_owner "$POOLER_BIN" -d "$dir/pgbouncer.ini" >>"$dir/pgbouncer.out" 2>&1
    POOLER_CONNINFO="host=127.0.0.1 port=$POOLER_PORT dbname=postgres user=postgres"
    wait_until 20 "PgBouncer answers on 127.0.0.1:$POOLER_PORT" pooler_answers
    POOLER_PID=$(cat "$dir/pgbouncer.pid" 2>/dev/null)
    [ -n "$POOLER_PID" ] && T_PIDS+=("$POOLER_PID")
}

# pooler_conninfo USER: the conninfo of USER through the pooler.
pooler_conninfo() { echo "host=127.0.0.1 port=$POOLER_PORT dbname=postgres user=$1"; }

# pooler_stop: SIGTERM to PgBouncer, and wait until it is gone.
pooler_stop() {
    [ -n "${POOLER_PID:-}" ] || return 0
    kill -TERM "$POOLER_PID" 2>/dev/null
    wait_until --may-time-out 10 "PgBouncer exits" gone "$POOLER_PID"
}

# The settings datapipe must never leave on a backend, as a session sees them, one line.
# shellcheck disable=SC2034 # read by the scripts
POOLER_SETTINGS_SQL="SELECT current_setting('statement_timeout') || '|' ||
    current_setting('lock_timeout') || '|' || current_setting('search_path') || '|' ||
    current_setting('TimeZone') || '|' || current_setting('synchronous_commit')"
