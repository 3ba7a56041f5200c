#!/usr/bin/env bash
# test_tls_pg.sh - both daemons reach PostgreSQL over TLS with sslmode=verify-full, as
# docs/postgresql.md tells an operator to configure them: a throwaway CA signs a certificate
# for "localhost", a cluster of its own serves TLS on 127.0.0.1 (and refuses any connection
# without it), the loader (docs/roles.sql's loader role, its password in a passfile) loads,
# the server reads a loaded row with server.database_conninfo (the reader role), and
# pg_stat_ssl shows their sessions encrypted. Then the refusals: a CA that did not sign the
# server's certificate, a certificate for another name, no root certificate file: --once
# exits 1, the log carries libpq's reason and /v1/status says it is the certificate.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
. tests/lib/lib_e2e.sh

PSQL=${DP_PG_BINDIR:+$DP_PG_BINDIR/}psql
e2e_setup tls
LROLE=dp_tls_loader
RROLE=dp_tls_reader
PW=tls-pw-$$
# The harness's cluster listens on its unix socket only (listen_addresses is on its command
# line, which ALTER SYSTEM cannot change) and TLS needs TCP: this test starts a cluster of its
# own the way tests/pg does, owned by the harness's owner, in a directory that owner can reach.
PGD=$(mktemp -d "${TMPDIR:-/tmp}/dp-e2e-tls-pg.XXXXXX")
tls_cleanup() {
    e2e_cleanup
    as_pg_owner "$DP_PG_BINDIR/pg_ctl" -D "$PGD/data" -m immediate -w stop >/dev/null 2>&1
    rm -rf "$PGD"
}
trap tls_cleanup EXIT

# --- a CA, another CA, and the server's certificate for localhost, signed by the first ---
T=$DIR/tls
mkdir -p "$T"
cert() { openssl "$@" >>"$T/openssl.log" 2>&1; }
cert req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=datapipe test CA" \
    -keyout "$T/ca.key" -out "$T/ca.crt"
cert req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=another test CA" \
    -keyout "$T/other-ca.key" -out "$T/other-ca.crt"
cert req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$T/server.key" \
    -out "$T/server.csr"
printf 'subjectAltName = DNS:localhost\n' >"$T/server.ext"
cert x509 -req -in "$T/server.csr" -CA "$T/ca.crt" -CAkey "$T/ca.key" -CAcreateserial \
    -days 2 -extfile "$T/server.ext" -out "$T/server.crt"
ok "openssl made the CA and the server's certificate (see $T/openssl.log)" \
    openssl verify -CAfile "$T/ca.crt" "$T/server.crt"

# --- the cluster: TLS on 127.0.0.1 only, hostssl with scram, anything else refused ---------
if [ "$(id -u)" = 0 ]; then chown "$DP_PG_OWNER" "$PGD"; fi
chmod 0700 "$PGD"
as_pg_owner "$DP_PG_BINDIR/initdb" -D "$PGD/data" -U postgres --auth=trust -E UTF8 \
    --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1
eq "initdb of the TLS cluster" 0 $?
# The key readable by the cluster's owner only (PostgreSQL refuses it otherwise).
install -m 0600 "$T/server.key" "$PGD/server.key"
install -m 0644 "$T/server.crt" "$PGD/server.crt"
cat >"$PGD/pg_hba.conf" <<EOF
local all all trust
hostssl all all 127.0.0.1/32 scram-sha-256
hostnossl all all 127.0.0.1/32 reject
EOF
if [ "$(id -u)" = 0 ]; then chown "$DP_PG_OWNER" "$PGD"/server.* "$PGD/pg_hba.conf"; fi
opts="-c listen_addresses=127.0.0.1 -c fsync=off -c ssl=on -c ssl_cert_file=$PGD/server.crt"
opts="$opts -c ssl_key_file=$PGD/server.key -c hba_file=$PGD/pg_hba.conf"
for try in 1 2 3; do
    PGPORT=$(free_port)
    as_pg_owner "$DP_PG_BINDIR/pg_ctl" -D "$PGD/data" -l "$PGD/server.log" -w -t 60 start \
        -o "-p $PGPORT -k $PGD $opts" >/dev/null && break
    echo "tls: the cluster did not start on port $PGPORT (try $try)"
done
# The checks (sql, e2e_verify) and the schema's cleanup ask this cluster on its socket.
DP_PG_CONNINFO="host=$PGD port=$PGPORT user=postgres dbname=postgres"
eq "the TLS cluster serves TLS" on "$(sql "SHOW ssl")"

"$PSQL" "$DP_PG_CONNINFO" -q -v ON_ERROR_STOP=1 -v schema="$SCHEMA" -v loader="$LROLE" \
    -v reader="$RROLE" -f docs/roles.sql >"$DIR/roles.out" 2>&1
eq "docs/roles.sql runs" 0 $?
sql "SET password_encryption = 'scram-sha-256';
     ALTER ROLE $LROLE PASSWORD '$PW'; ALTER ROLE $RROLE PASSWORD '$PW'" >/dev/null
# Passwords in a passfile, as docs/postgresql.md says, never in the configuration.
printf '*:*:*:%s:%s\n*:*:*:%s:%s\n' "$LROLE" "$PW" "$RROLE" "$PW" >"$DIR/pgpass"
chmod 0600 "$DIR/pgpass"

# tls_conninfo ROLE [KEYWORDS]: the operator's conninfo of docs/postgresql.md for ROLE.
tls_conninfo() {
    echo "host=localhost port=$PGPORT dbname=postgres user=$1 passfile=$DIR/pgpass" \
        "sslmode=verify-full sslrootcert=$T/ca.crt${2:+ $2}"
}
has "without TLS the cluster refuses the connection" "no encryption" \
    "$("$PSQL" "host=127.0.0.1 port=$PGPORT dbname=postgres user=$LROLE passfile=$DIR/pgpass sslmode=disable" \
        -Atqc "SELECT 1" 2>&1)"
eq "with verify-full and the CA, psql connects encrypted" t \
    "$("$PSQL" "$(tls_conninfo "$LROLE")" -Atqc \
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()" 2>&1)"

# --- the daemons over TLS -------------------------------------------------------------------
E2E_CONNINFO=$(tls_conninfo "$LROLE")
e2e_config ", \"database_conninfo\": \"$(tls_conninfo "$RROLE")\"" \
    '"interval_s": 1, "min_interval_s": 0, "high_water": 1'
start_server
"$CLIENT" -p "$PORT" -c 2 -n 100 -d 60 -t crash,ad,login,sample,product -o "$DIR/ack" \
    -S "$DIR/sent" >"$DIR/client.out" 2>&1
eq "the load client ends without unexpected statuses" 0 $?
eq "200 events acknowledged (2 connections, 100 each)" 200 "$(sort -u "$DIR/ack" | wc -l)"
drain
eq "datapipe-loader --once over TLS exits 0" 0 $?
eq "--once loaded every event" 0 "$(queued)"
id=$(sql "SELECT id FROM $SCHEMA.crash_report ORDER BY id LIMIT 1")
body=$(curl -s -m 10 -w ' %{http_code}' "$URL/v1/events/crash_report/$id")
eq "GET of a loaded row (read over TLS as $RROLE) answers 200" 200 "${body##* }"
has "GET of a loaded row answers the row" "\"id\":\"$id\"" "$body"

# The loader daemon holds its session between batches: pg_stat_ssl shows it (and the
# server's read session) encrypted, and no client session on TCP is without TLS.
start_loader
"$CLIENT" -p "$PORT" -c 2 -n 50 -d 60 -t crash,ad -B 1000000000 -o "$DIR/ack.2" \
    >>"$DIR/client.out" 2>&1
wait_until 30 "the loader daemon loads over TLS" queue_empty
# A read just before: the server's read session is open (its pool closes idle ones).
eq "GET of the loaded row again answers 200" 200 \
    "$(curl -s -o /dev/null -m 10 -w '%{http_code}' "$URL/v1/events/crash_report/$id")"
ssl_of() {
    sql "SELECT string_agg(DISTINCT s.ssl || ' ' || a.usename, ',') FROM pg_stat_ssl s
         JOIN pg_stat_activity a USING (pid) WHERE a.application_name = '$1'"
}
eq "pg_stat_ssl: the loader's session is encrypted" "true $LROLE" "$(ssl_of datapipe-loader)"
eq "pg_stat_ssl: the server's read session is encrypted" "true $RROLE" \
    "$(ssl_of datapipe-server)"
eq "no session on TCP without TLS" 0 \
    "$(sql "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
            WHERE a.client_addr IS NOT NULL AND NOT s.ssl")"
eq "no session of the loader below TLS 1.2" 0 \
    "$(sql "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
            WHERE a.application_name = 'datapipe-loader'
              AND s.version IS DISTINCT FROM 'TLSv1.2' AND s.version IS DISTINCT FROM 'TLSv1.3'")"
stop_pid "$LPID"
eq "loader exits 0 on SIGTERM" 0 "$T_RC"

# --- refused: --once exits 1, the log says why, /v1/status says it is the certificate ------
STATUS_TLS='"last_error":"connection: PostgreSQL'"'"'s TLS certificate could not be verified: check sslrootcert and the host name (details in the loader'"'"'s log)"'
# refused NAME CONNINFO WANT: --once with CONNINFO as database.conninfo, events waiting.
refused() {
    local name=$1 log=$DIR/refused-$1.log
    E2E_CONNINFO=$2
    e2e_config ", \"database_conninfo\": \"$(tls_conninfo "$RROLE")\"" \
        '"interval_s": 1, "min_interval_s": 0, "high_water": 1'
    # HOME: where libpq looks for ~/.postgresql/root.crt when sslrootcert is not given.
    HOME=$DIR timeout 120 "$BIN/datapipe-loader" -c "$CFG" --once >"$log" 2>&1
    eq "$name: --once exits 1" 1 $?
    has_file "$name: the loader's log names the certificate failure" "$3" "$log"
    eq "$name: the loader's log says nothing of the password" 0 "$(grep -ci password "$log")"
    eq "$name: the loader's log never shows the password itself" 0 "$(grep -c "$PW" "$log")"
    has "$name: /v1/status says the certificate was refused" "$STATUS_TLS" "$(status_json)"
    eq "$name: nothing left the queue" 20 "$(queued)"
}
"$CLIENT" -p "$PORT" -c 1 -n 20 -d 60 -t crash -B 2000000000 -o "$DIR/ack.3" \
    >>"$DIR/client.out" 2>&1
refused wrong-ca "$(tls_conninfo "$LROLE" | sed "s|sslrootcert=$T/ca.crt|sslrootcert=$T/other-ca.crt|")" \
    'failed: SSL error: certificate verify failed'
refused wrong-name "$(tls_conninfo "$LROLE" | sed 's/host=localhost/hostaddr=127.0.0.1 host=db.example.com/')" \
    'failed: server certificate for "localhost" does not match host name "db.example.com"'
refused no-root-cert "$(tls_conninfo "$LROLE" | sed "s|sslrootcert=$T/ca.crt|sslrootcert=$T/missing.crt|")" \
    "failed: root certificate file \"$T/missing.crt\" does not exist Either provide the file"
refused no-sslrootcert "$(tls_conninfo "$LROLE" | sed "s| sslrootcert=$T/ca.crt||")" \
    "failed: root certificate file \"$DIR/.postgresql/root.crt\" does not exist Either provide the file"

# Back to the right CA: what waited loads.
E2E_CONNINFO=$(tls_conninfo "$LROLE")
e2e_config ", \"database_conninfo\": \"$(tls_conninfo "$RROLE")\"" \
    '"interval_s": 1, "min_interval_s": 0, "high_water": 1'
drain
eq "--once with the right CA loads what waited" 0 $?

cat "$DIR/ack" "$DIR/ack.2" "$DIR/ack.3" >"$DIR/ack.all"
cat "$DIR/sent" >"$DIR/sent.all"
cut -d' ' -f1 "$DIR/ack.2" "$DIR/ack.3" >>"$DIR/sent.all"
e2e_verify "$DIR/ack.all" "$DIR/sent.all"
stop_pid "$SPID"
eq "server exits 0 on SIGTERM" 0 "$T_RC"

# The server reading with a CA that did not sign the certificate: its reads answer 503 and
# say it is the certificate; its log has libpq's reason.
E2E_CONNINFO=$(tls_conninfo "$LROLE")
e2e_config ", \"database_conninfo\": \"$(tls_conninfo "$RROLE" |
    sed "s|sslrootcert=$T/ca.crt|sslrootcert=$T/other-ca.crt|")\"" \
    '"interval_s": 1, "min_interval_s": 0, "high_water": 1'
start_server
eq "the server's reads with the wrong CA: GET /v1/status/dead_letters: 503, says why" \
    '{"status_code":503,"status_message":"database unavailable: PostgreSQL'"'"'s TLS certificate could not be verified: check sslrootcert and the host name (details in the server'"'"'s log)"}503' \
    "$(curl -s -m 10 -w '%{http_code}' "$URL/v1/status/dead_letters" | tr -d '\n')"
eq "the server's reads with the wrong CA: GET of a loaded row answers 503" \
    '{"status_code":503,"status_message":"database unavailable: retry later"}503' \
    "$(curl -s -m 10 -w '%{http_code}' "$URL/v1/events/crash_report/$id" | tr -d '\n')"
has_file "the server's log names the certificate failure" \
    'failed: SSL error: certificate verify failed' "$DIR/server.log"
stop_pid "$SPID"
eq "server exits 0 on SIGTERM (wrong CA)" 0 "$T_RC"
e2e_figures acknowledged="$ACKED" loaded="$LOADED" lost="$LOST" duplicated="$DUPS"
t_done test_tls_pg
