# lib_e2e.sh - what the end-to-end reliability tests (tests/e2e/) share: a
# scenario's directory, configuration, schema and queue id; starting the daemons by PID;
# the exactly-once verdict, comparing what the load client (tests/tools/dpclient.c) saw
# acknowledged with what PostgreSQL holds; and the conservation equation, after every scenario. Built on lib_sh.sh (checks, wait_until, sql,
# pg_down, pg_up): a test sources that first. Test code only; traffic goes to 127.0.0.1.
# shellcheck shell=bash

: "${DP_PG_CONNINFO:?run through tests/pg run (make check)}"
# shellcheck disable=SC2034 # CLIENT, LPID and the like are for the scripts that source this
CLIENT=$BUILD/tests/tools/dpclient
EQUEUE=$BUILD/tests/tools/qprobe
ELOADER=$BUILD/tests/tools/faultloader
export LC_ALL=C

# e2e_setup NAME: $DIR, $SCHEMA, $QID, $PORT, $URL, $CFG; cleanup on exit.
e2e_setup() {
    E2E_NAME=$1
    DIR=$(mktemp -d "${TMPDIR:-/tmp}/dp-e2e-$1.XXXXXX")
    SCHEMA=e2e_$1_$$
    QID=e2e-$1-$$
    PORT=$(free_port)
    URL=http://127.0.0.1:$PORT
    CFG=$DIR/cfg.json
    QDIR=$DIR/q
    QMAX=1073741824
    E2E_MOUNT=
    E2E_T0=$SECONDS
    trap e2e_cleanup EXIT
}

e2e_cleanup() {
    t_cleanup
    pg_up
    sql "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null
    if [ -n "$E2E_MOUNT" ]; then umount "$E2E_MOUNT" 2>/dev/null; fi
    if [ -n "${E2E_KEEP:-}" ]; then echo "kept $DIR"; else rm -rf "$DIR"; fi
}

# e2e_config SERVER_EXTRA LOADER_JSON: write $CFG (queue $QDIR of $QMAX bytes, fsync on).
# E2E_CONNINFO, when set, is the daemons' database.conninfo (a pooler's, say) instead of the
# harness's; the checks always ask the harness's cluster directly.
e2e_config() {
    cat >"$CFG" <<EOF
{"server": {"listen": "127.0.0.1:$PORT", "threads": ${E2E_THREADS:-64},
            "request_timeout_ms": ${E2E_TIMEOUT_MS:-10000} $1},
 "queue": {"path": "$QDIR", "max_bytes": $QMAX, "id": "$QID", "sync": true},
 "database": {"conninfo": "${E2E_CONNINFO:-$DP_PG_CONNINFO}", "schema": "$SCHEMA"},
 "loader": {${2:-\"interval_s\": 1, \"min_interval_s\": 0, \"high_water\": 1}},
 "log": {"level": "info"}}
EOF
}

# start_server: the server in the background ($SPID), answering /healthz within E2E_START_S
# seconds (default 20; a failed check if not). Should it exit at once because its port was
# taken after all, it tries again (a first start: on another port).
start_server() {
    local try port
    for try in 1 2 3 4 5; do
        # shellcheck disable=SC2086 # E2E_WRAP is a command with its arguments
        start_bg "$DIR/server.log" ${E2E_WRAP:-} "$BIN/datapipe-server" -c "$CFG"
        SPID=$T_LAST_PID
        wait_until --may-time-out "${E2E_START_S:-20}" "the server answers or exits" \
            server_up_or_gone
        gone "$SPID" || break
        echo "$E2E_NAME: server did not start (try $try):"
        tail -3 "$DIR/server.log"
        if [ -z "${E2E_STARTED:-}" ]; then
            port=$(free_port)
            sed -i "s/127.0.0.1:$PORT\"/127.0.0.1:$port\"/" "$CFG"
            PORT=$port
            URL=http://127.0.0.1:$PORT
        fi
    done
    E2E_STARTED=1
    ok "$E2E_NAME: the server answers /healthz" http_answers "$URL/healthz"
}
server_up_or_gone() { http_answers "$URL/healthz" || gone "$SPID"; }

# start_loader [ENV=VALUE...]: the loader daemon ($LPID); E2E_DIE=... runs faultloader.
start_loader() {
    local prog=$BIN/datapipe-loader
    case " $* " in *" E2E_DIE="*) prog=$ELOADER ;; esac
    start_bg "$DIR/loader.log" env "$@" "$prog" -c "$CFG"
    # shellcheck disable=SC2034 # read by the scripts
    LPID=$T_LAST_PID
}

# drain: datapipe-loader --once (bounded to 300 s); its exit status.
drain() {
    timeout 300 "$BIN/datapipe-loader" -c "$CFG" --once >>"$DIR/drain.log" 2>&1
}

# queued: events in the queue now.
queued() { "$EQUEUE" stats "$QDIR" "$QMAX" | sed -n 's/^events=\([0-9]*\) .*/\1/p'; }

# queued_above N: more than N events queued (for wait_until, which runs it again each time).
queued_above() { [ "$(queued)" -gt "$1" ]; }
queue_empty() { [ "$(queued)" = 0 ]; }

# status_json: GET /v1/status.
status_json() { curl -s -m 5 "$URL/v1/status"; }

# loaded_rows: "N UUID" for every row the client's events left in PostgreSQL ("N -" for a
# product), sorted. N is the client's event number (see dpclient.c).
loaded_rows() {
    sql "SELECT user_id || ' ' || id FROM $SCHEMA.crash_report
         UNION ALL SELECT substring(advertiser_id from '[0-9]+\$') || ' ' || id FROM $SCHEMA.ad_event
         UNION ALL SELECT substring(user_id from '[0-9]+\$') || ' ' || id FROM $SCHEMA.user_login
         UNION ALL SELECT round(mean)::bigint || ' ' || id FROM $SCHEMA.data_sample
         UNION ALL SELECT substring(id from '[0-9]+\$') || ' -' FROM $SCHEMA.product" | sort
}

# table_count TYPE
table_count() { sql "SELECT count(*) FROM $SCHEMA.$1"; }

# e2e_verify ACKFILE SENTFILE: the exactly-once verdict. Every acknowledged event is in
# PostgreSQL once with its id; no event number twice; nothing loaded that was never sent;
# no dead letter (a second load of an event would be a duplicate key there); queue empty.
# Sets ACKED LOADED LOST DUPS UNACKED_LOADED.
e2e_verify() {
    local ack=$1 sent=$2 dead q
    sort -u "$ack" >"$DIR/acked.sorted"
    loaded_rows >"$DIR/loaded.sorted"
    cut -d' ' -f1 "$sent" | sort -u >"$DIR/sent.sorted"
    ACKED=$(wc -l <"$DIR/acked.sorted")
    LOADED=$(wc -l <"$DIR/loaded.sorted")
    LOST=$(comm -23 "$DIR/acked.sorted" "$DIR/loaded.sorted" | wc -l)
    DUPS=$(cut -d' ' -f1 "$DIR/loaded.sorted" | uniq -d | wc -l)
    cut -d' ' -f1 "$DIR/acked.sorted" | sort -u >"$DIR/acked.n"
    cut -d' ' -f1 "$DIR/loaded.sorted" | sort -u >"$DIR/loaded.n"
    UNACKED_LOADED=$(comm -13 "$DIR/acked.n" "$DIR/loaded.n" | wc -l)
    local never_sent
    never_sent=$(comm -13 "$DIR/sent.sorted" "$DIR/loaded.n" | wc -l)
    dead=$(sql "SELECT count(*) FROM $SCHEMA.dead_letter")
    q=$(queued)
    echo "$E2E_NAME: acknowledged=$ACKED loaded=$LOADED lost=$LOST duplicated=$DUPS" \
        "unacknowledged-but-loaded=$UNACKED_LOADED (allowed: at most once each)" \
        "sent=$(wc -l <"$DIR/sent.sorted") loaded-never-sent=$never_sent dead_letters=$dead queued=$q"
    if [ "$LOST" -gt 0 ]; then
        echo "$E2E_NAME: first lost events:" >&2
        comm -23 "$DIR/acked.sorted" "$DIR/loaded.sorted" | head -5 >&2
    fi
    ok "some events acknowledged ($ACKED)" [ "$ACKED" -gt 0 ]
    eq "no acknowledged event lost" 0 "$LOST"
    eq "no event loaded twice" 0 "$DUPS"
    eq "nothing loaded that was never sent" 0 "$never_sent"
    eq "no dead letter (a duplicate key would land there)" 0 "$dead"
    eq "queue empty after the drain" 0 "$q"
    e2e_conservation
}

# e2e_conservation: accepted = loaded + dead_lettered + queued, the queue's four numbers read
# in one LMDB snapshot (qprobe stats), each also held against a source of its own:
# loaded = rows in the scenario's tables (every event number is unique, so no upsert
# merges two), dead_lettered = this queue's dead_letter rows, accepted >= the events the
# client saw acknowledged ($ACKED, when set). While the server answers, /v1/status and
# /metrics show the same four. Called by e2e_verify.
e2e_conservation() {
    local line acc ld dl qd rows dead st m
    line=$("$EQUEUE" stats "$QDIR" "$QMAX")
    acc=$(sed -n 's/.* accepted=\([0-9]*\).*/\1/p' <<<"$line")
    ld=$(sed -n 's/.* loaded=\([0-9]*\).*/\1/p' <<<"$line")
    dl=$(sed -n 's/.* dead_lettered=\([0-9]*\).*/\1/p' <<<"$line")
    qd=$(sed -n 's/^events=\([0-9]*\) .*/\1/p' <<<"$line")
    echo "$E2E_NAME: conservation: accepted=$acc loaded=$ld dead_lettered=$dl queued=$qd"
    ok "conservation: the queue reports all four ($line)" [ -n "$acc" -a -n "$ld" -a -n "$dl" -a -n "$qd" ]
    eq "conservation: accepted = loaded + dead_lettered + queued" "$acc" \
        "$((${ld:-0} + ${dl:-0} + ${qd:-0}))"
    rows=$(sql "SELECT (SELECT count(*) FROM $SCHEMA.crash_report) +
        (SELECT count(*) FROM $SCHEMA.ad_event) + (SELECT count(*) FROM $SCHEMA.user_login) +
        (SELECT count(*) FROM $SCHEMA.data_sample) + (SELECT count(*) FROM $SCHEMA.product)")
    # E2E_PRIOR_ROWS, E2E_PRIOR_ACKED: rows and acknowledgements of an earlier queue under
    # the same database (a recreated queue): they are in PostgreSQL but not in this queue's
    # counters.
    rows=$((rows - ${E2E_PRIOR_ROWS:-0}))
    eq "conservation: loaded = rows in PostgreSQL" "$rows" "$ld"
    dead=$(sql "SELECT count(*) FROM $SCHEMA.dead_letter WHERE queue_id = '$QID'")
    eq "conservation: dead_lettered = dead_letter rows" "$dead" "$dl"
    if [ -n "${ACKED:-}" ]; then
        ok "conservation: accepted ($acc) >= acknowledged ($ACKED, ${E2E_PRIOR_ACKED:-0} of them by an earlier queue)" \
            [ "${acc:-0}" -ge "$((ACKED - ${E2E_PRIOR_ACKED:-0}))" ]
    fi
    if [ -n "${SPID:-}" ] && ! gone "$SPID" && http_answers "$URL/healthz"; then
        st=$(status_json)
        has "conservation: /v1/status shows the same four" \
            "\"events\":{\"accepted\":$acc,\"loaded\":$ld,\"dead_lettered\":$dl,\"queued\":$qd}" "$st"
        m=$(curl -s -m 5 "$URL/metrics")
        has "conservation: /metrics datapipe_events{stage=\"accepted\"}" \
            "datapipe_events{stage=\"accepted\"} $acc" "$m"
        has "conservation: /metrics datapipe_events{stage=\"queued\"}" \
            "datapipe_events{stage=\"queued\"} $qd" "$m"
    fi
}

# key_counts: "KEY|ROWS" for every idempotency key in the four keyed tables together
# (product is an upsert by its id and keeps no key).
key_counts() {
    local t q=""
    for t in crash_report ad_event user_login data_sample; do
        q="$q${q:+ UNION ALL }SELECT idempotency_key FROM $SCHEMA.$t"
    done
    sql "SELECT idempotency_key, count(*) FROM ($q) k WHERE idempotency_key IS NOT NULL
         GROUP BY 1"
}

# e2e_verify_keys SENTFILE: the keyed clients' verdict, counting every key sent (SENTFILE
# lines "N KEY TYPE", one per event however often it was sent), not only the acknowledged
# ones: each is in PostgreSQL exactly once, and no key is there that was never sent. Product
# lines are left out: product is an upsert by its id and keeps no key.
# Sets KEYS_SENT KEYS_LOST KEYS_DUPS.
e2e_verify_keys() {
    local never
    awk '$3 != "product" {print $2}' "$1" | sort >"$DIR/keys.sent"
    key_counts >"$DIR/keys.loaded"
    cut -d'|' -f1 "$DIR/keys.loaded" | sort >"$DIR/keys.loaded.k"
    KEYS_SENT=$(wc -l <"$DIR/keys.sent")
    KEYS_LOST=$(comm -23 "$DIR/keys.sent" "$DIR/keys.loaded.k" | wc -l)
    KEYS_DUPS=$(awk -F'|' '$2 > 1' "$DIR/keys.loaded" | wc -l)
    never=$(comm -13 "$DIR/keys.sent" "$DIR/keys.loaded.k" | wc -l)
    echo "$E2E_NAME: keys sent=$KEYS_SENT (each once in the sent file:" \
        "$(uniq -d "$DIR/keys.sent" | wc -l) repeated) loaded=$(wc -l <"$DIR/keys.loaded")" \
        "lost=$KEYS_LOST duplicated=$KEYS_DUPS loaded-never-sent=$never"
    if [ "$KEYS_LOST" -gt 0 ]; then
        echo "$E2E_NAME: first keys sent but not loaded:" >&2
        comm -23 "$DIR/keys.sent" "$DIR/keys.loaded.k" | head -5 >&2
    fi
    ok "some keyed events sent ($KEYS_SENT)" [ "$KEYS_SENT" -gt 0 ]
    eq "every key appears once in the client's sent file" 0 "$(uniq -d "$DIR/keys.sent" | wc -l)"
    eq "no key sent is missing from PostgreSQL" 0 "$KEYS_LOST"
    eq "no key in PostgreSQL twice" 0 "$KEYS_DUPS"
    eq "no key in PostgreSQL that was never sent" 0 "$never"
}

# e2e_figures KEY=VALUE...: one machine-readable line for the README table.
e2e_figures() {
    echo "E2E-FIGURES $E2E_NAME $* seconds=$((SECONDS - E2E_T0))"
}

# rss_kb PID
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
