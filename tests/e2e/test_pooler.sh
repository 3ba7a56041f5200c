#!/usr/bin/env bash
# test_pooler.sh - both daemons behind PgBouncer in transaction pooling mode
# (tests/lib/lib_pooler.sh: Debian's pgbouncer on loopback, auth_type trust), where every
# transaction may run on another backend and a backend serves other clients next. Events
# load; GETs of stored rows from 8 client threads all answer 200 (no prepared statement to
# be missing or already there); a probe client through the pooler sees none of datapipe's
# settings on any backend; the loader restarts 10 times (SIGKILL and SIGTERM alternately),
# each restart loading what waited, while a probe client's psql session through the pooler
# holds a transaction open across every restart and survives each (nothing terminates a
# backend); and in the end every acknowledged event is loaded once.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
. tests/lib/lib_e2e.sh
. tests/lib/lib_pooler.sh

PSQL=${DP_PG_BINDIR:+$DP_PG_BINDIR/}psql
RESTARTS=${POOLER_RESTARTS:-10}
e2e_setup pooler
POOLER_POOL_SIZE=5 pooler_start "$DIR/pooler"
E2E_CONNINFO=$POOLER_CONNINFO
e2e_config "" '"interval_s": 1, "min_interval_s": 0, "high_water": 1, "batch_rows": 500'
start_server
start_loader

# A session's settings before datapipe ran anywhere: what every probe must see.
base=$("$PSQL" "$DP_PG_CONNINFO" -Atqc "$POOLER_SETTINGS_SQL")

"$CLIENT" -p "$PORT" -c 4 -n 300 -d 60 -t crash,ad,login,sample -o "$DIR/ack.0" \
    >"$DIR/client.out" 2>&1
eq "the load client ends without unexpected statuses" 0 $?
wait_until 60 "the first events load through the pooler" queue_empty

# GETs of stored rows, 8 at once, through the server's pool and PgBouncer.
sql "(SELECT 'crash_report/' || id FROM $SCHEMA.crash_report LIMIT 100)
     UNION ALL (SELECT 'ad_event/' || id FROM $SCHEMA.ad_event LIMIT 100)
     UNION ALL (SELECT 'user_login/' || id FROM $SCHEMA.user_login LIMIT 100)
     UNION ALL (SELECT 'data_sample/' || id FROM $SCHEMA.data_sample LIMIT 100)" >"$DIR/ids"
eq "400 stored rows to read" 400 "$(wc -l <"$DIR/ids")"
for _ in 1 2; do
    sed "s|^|$URL/v1/events/|" "$DIR/ids" |
        xargs -P 8 -n 1 curl -s -o /dev/null -m 10 -w '%{http_code}\n' >>"$DIR/gets"
done
eq "800 GETs from 8 threads answered" 800 "$(wc -l <"$DIR/gets")"
eq "every GET through the pooler answered 200" "800" "$(grep -c '^200$' "$DIR/gets")"
echo "pooler: GET answers: $(sort "$DIR/gets" | uniq -c | tr '\n' ' ')"

# Probe sessions through the pooler, each a new client that gets whichever backend is free.
for i in $(seq 1 40); do
    "$PSQL" "$POOLER_CONNINFO" -Atqc "$POOLER_SETTINGS_SQL" >>"$DIR/probe.settings" 2>&1
done
eq "40 probes through the pooler answered" 40 "$(wc -l <"$DIR/probe.settings")"
eq "no probe sees a setting datapipe made (want $base)" 0 \
    "$(grep -vcxF -- "$base" "$DIR/probe.settings")"
grep -vxF -- "$base" "$DIR/probe.settings" | sort | uniq -c | head -3

# The probe client: one psql session through the pooler, fed through a FIFO, that holds a
# transaction open across every restart below.
mkfifo "$DIR/probe.in"
start_bg "$DIR/probe.out" "$PSQL" "$POOLER_CONNINFO" -At -v ON_ERROR_STOP=1 -f "$DIR/probe.in"
probe=$T_LAST_PID
exec 7>"$DIR/probe.in"
probe_says() { grep -qxF -- "$1" "$DIR/probe.out"; }

loads_ok=0
for i in $(seq 1 "$RESTARTS"); do
    echo "BEGIN; SELECT 'probe in ' || $i; SELECT count(*) >= 0 FROM pg_class;" >&7
    wait_until 10 "restart $i: the probe's transaction is open" probe_says "probe in $i"
    if [ $((i % 2)) = 1 ]; then sig=KILL; else sig=TERM; fi
    stop_pid "$LPID" "$sig"
    "$CLIENT" -p "$PORT" -c 2 -n 50 -d 60 -t crash,ad,login,sample -B $((i * 100000000)) \
        -o "$DIR/ack.$i" >>"$DIR/client.out" 2>&1
    start_loader
    wait_until 30 "restart $i (after SIG$sig): the loader loads what waited" queue_empty &&
        loads_ok=$((loads_ok + 1))
    echo "COMMIT; SELECT 'probe out ' || $i;" >&7
    wait_until 10 "restart $i: the probe's session survived" probe_says "probe out $i"
done
# A transaction of an earlier loader that has not ended (the probe holds the owner row as a
# batch does): the restarted loader waits for it, says who holds the lease, and loads once
# it ends; nothing is terminated.
echo "BEGIN; SELECT 'probe holds ' || instance_id FROM $SCHEMA.queue_owners FOR SHARE;" >&7
wait_until 10 "the probe holds the owner row" grep -q "^probe holds " "$DIR/probe.out"
held_by=$LPID
stop_pid "$LPID" KILL
"$CLIENT" -p "$PORT" -c 1 -n 20 -d 60 -t crash -B 1900000000 -o "$DIR/ack.held" \
    >>"$DIR/client.out" 2>&1
start_loader
lease_said() {
    local want
    want="cannot take the lease of queue.id $QID yet: held by host $(hostname)"
    [[ "$(status_json)" == *"$want pid $held_by since "* ]]
}
wait_until 60 "/v1/status names the lease's holder (host, pid, since)" lease_said
st=$(status_json)
has "/v1/status: the last result is an error while the lease waits" \
    '"last_result":"error: database: cannot take the lease' "$st"
has "the loader's log names the holder" "held by host $(hostname) pid $held_by since" \
    "$(cat "$DIR/loader.log")"
echo "COMMIT; SELECT 'probe released';" >&7
wait_until 30 "the loader loads once the earlier transaction ended" queue_empty
ok "the probe's session survived the wait" probe_says "probe released"

# Every process started since holds the FIFO open too: quit rather than wait for its end.
echo '\q' >&7
exec 7>&-
wait "$probe"
eq "the probe's psql session ends normally" 0 $?
eq "every restart loaded" "$RESTARTS" "$loads_ok"
eq "no session terminated: the probe's and the loader's logs never say so" 0 \
    "$(cat "$DIR/probe.out" "$DIR/loader.log" | grep -c 'terminat')"
st=$(status_json)
ok "/v1/status: the loader's last result is no error" \
    test "${st/\"last_result\":\"error/}" = "$st"
has "/v1/status: the loader's last error is cleared" '"last_error":null' "$st"

cat "$DIR"/ack.* >"$DIR/ack.all"
cut -d' ' -f1 "$DIR/ack.all" >"$DIR/sent.all"
stop_pid "$LPID"
eq "loader exits 0 on SIGTERM" 0 "$T_RC"
e2e_verify "$DIR/ack.all" "$DIR/sent.all"
stop_pid "$SPID"
eq "server exits 0 on SIGTERM" 0 "$T_RC"
e2e_figures acknowledged="$ACKED" loaded="$LOADED" lost="$LOST" duplicated="$DUPS" \
    restarts="$RESTARTS" gets=800
pooler_stop
t_done test_pooler
