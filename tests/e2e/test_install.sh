#!/usr/bin/env bash
# test_install.sh - `make install DESTDIR=...` stages the tree (binaries, TLS shim, man pages,
# units with the real paths, sysusers/tmpfiles snippets, docs, an /etc/datapipe.json that is
# never overwritten) and touches no user database: no etc/passwd, group or shadow in the
# stage, and no owner from the building machine on the configuration (0640, the installer's
# own). Neither `make` nor `make install` would run apt-get. On the machine that runs the
# daemons the user is made from the installed snippet and the configuration's group set by
# name (what the package's postinst does); each installed binary, started as the unit's user
# with the unit's Environment= and the installed configuration (plus an override with -c, as
# an operator would), serves; `make uninstall` removes the tree; the installed units pass
# `systemd-analyze verify`; and both daemons speak sd_notify (READY=1, STATUS=, the loader's
# WATCHDOG=1, the loader ready while PostgreSQL is down) and exit 0 on SIGTERM.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
TMP=$(mktemp -d)
# The unit's user must reach the installed tree and the files below.
chmod 0755 "$TMP"
PGHOST_DIR=$(sed -n 's/.*host=\([^ ]*\).*/\1/p' <<<"${DP_PG_CONNINFO:-}")
PGHOST_MODE=$(stat -c %a "$PGHOST_DIR" 2>/dev/null)
restore_pg_mode() {
    [ -z "$PGHOST_MODE" ] || chmod "$PGHOST_MODE" "$PGHOST_DIR" 2>/dev/null
}
trap 't_cleanup; restore_pg_mode; rm -rf "$TMP"' EXIT
D=$TMP/root
UNITDIR=$(pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null || echo /lib/systemd/system)
SYSUSERSDIR=$(pkg-config --variable=sysusersdir systemd 2>/dev/null || echo /usr/lib/sysusers.d)

make -s install DESTDIR="$D" PREFIX=/usr/local >"$TMP/install.log" 2>&1
ok "make install exits 0" [ $? -eq 0 ]
ok "a staged install writes no user database" \
    bash -c "[ ! -e '$D/etc/passwd' ] && [ ! -e '$D/etc/group' ] && [ ! -e '$D/etc/shadow' ]"
eq "staged /etc/datapipe.json: 0640, the installer's, no group id of this machine" \
    "$(id -u):$(id -g) 640" "$(stat -c '%u:%g %a' "$D/etc/datapipe.json")"
no_apt_get() { ! make -n "$@" DESTDIR="$TMP/n" 2>&1 | grep -q apt-get; }
ok "make -n runs no apt-get" no_apt_get
ok "make -n install runs no apt-get" no_apt_get install
for m in datapipe-server datapipe-loader datapipe-queue; do
    ok "the man page of $m is installed" [ -f "$D/usr/local/share/man/man8/$m.8" ]
done
ok "the alerting rules are installed" [ -f "$D/usr/local/share/datapipe/datapipe.rules.yml" ]
for f in usr/local/bin/datapipe-server usr/local/bin/datapipe-loader usr/local/bin/datapipe-queue; do
    ok "$f executable" [ -x "$D/$f" ]
done
has "the installed datapipe-queue runs" "datapipe-queue 0" \
    "$("$D/usr/local/bin/datapipe-queue" --version)"
for f in usr/local/lib/datapipe/datapipe-tls-compat.so usr/local/share/doc/datapipe/datapipe.json.example \
    usr/local/share/doc/datapipe/README.md "${UNITDIR#/}/datapipe-server.service" \
    "${UNITDIR#/}/datapipe-loader.service" etc/datapipe.json; do
    ok "$f installed" [ -f "$D/$f" ]
done
ok "sysusers snippet installed" [ -f "$D$SYSUSERSDIR/datapipe.conf" ]
ok "tmpfiles snippet installed" bash -c "ls $D/usr/lib/tmpfiles.d/datapipe.conf >/dev/null"
ok "unit has the real ExecStart" grep -q '^ExecStart=/usr/local/bin/datapipe-server$' "$D/$UNITDIR/datapipe-server.service"
ok "no placeholder left" bash -c "! grep -rq '@BINDIR@\|@DOCDIR@' $D/$UNITDIR/"
ok "loader unit has WatchdogSec" grep -q '^WatchdogSec=' "$D/$UNITDIR/datapipe-loader.service"
ok "installed server runs" "$D/usr/local/bin/datapipe-server" --version

# --- the units' user and the configuration's ownership ---------------------------------------
for u in datapipe-server datapipe-loader; do
    eq "$u runs as User=datapipe" datapipe "$(sed -n 's/^User=//p' "$D/$UNITDIR/$u.service")"
    eq "$u runs as Group=datapipe" datapipe "$(sed -n 's/^Group=//p' "$D/$UNITDIR/$u.service")"
done
eq "the sysusers snippet declares the user" "u datapipe" \
    "$(awk '$1 == "u" {print $1, $2}' "$D$SYSUSERSDIR/datapipe.conf")"
RUN_AS=0
if [ "$(id -u)" = 0 ]; then
    # What the package's postinst does on the target: the user from the installed snippet (on
    # this machine's own user database), then the configuration's group, by name.
    systemd-sysusers "$D$SYSUSERSDIR/datapipe.conf" >>"$TMP/install.log" 2>&1
    chgrp datapipe "$D/etc/datapipe.json"
    DUID=$(id -u datapipe 2>/dev/null)
    DGID=$(getent group datapipe | cut -d: -f3)
    ok "the datapipe user exists ($DUID:$DGID)" [ -n "$DUID" ] && [ -n "$DGID" ]
    eq "/etc/datapipe.json is root:datapipe 0640" "root:datapipe 640" \
        "$(stat -c '%U:%G %a' "$D/etc/datapipe.json")"
    [ -n "$DUID" ] && [ -n "$DGID" ] && RUN_AS=1
else
    echo "test_install: not root: cannot create the unit's user or switch to it; the" \
        "run-as-the-unit's-user checks are skipped (make check runs them as root)"
fi

# as_unit UNIT CMD...: exec CMD (call it in a subshell) as the unit does: its User=/Group=,
# no supplementary groups, its UMask=, only its Environment= (whose
# /etc paths name the installed files under DESTDIR).
as_unit() {
    local unit=$D/$UNITDIR/$1.service envs=() line kv
    shift
    while IFS= read -r line; do
        for kv in $line; do
            envs+=("${kv/=\/etc\//=$D/etc/}")
        done
    done < <(sed -n 's/^Environment=//p' "$unit")
    umask "$(sed -n 's/^UMask=//p' "$unit")"
    exec env -i PATH=/usr/bin:/bin "${envs[@]}" \
        setpriv --reuid="$DUID" --regid="$DGID" --clear-groups -- "$@"
}

if [ "$RUN_AS" = 1 ]; then
    eq "the unit's environment names the installed configuration" \
        "DATAPIPE_CNF=$D/etc/datapipe.json" "$(as_unit datapipe-server /usr/bin/env | grep '^DATAPIPE_CNF=')"
    # StateDirectory=datapipe with StateDirectoryMode=0700: owned by the user, private.
    STATE=$TMP/state
    install -d -o "$DUID" -g "$DGID" -m 0700 "$STATE"
    # The suite's PostgreSQL listens on a unix socket in a private directory: let the unit's
    # user reach the socket (trust authentication, as user postgres), for this test only.
    [ -z "$PGHOST_DIR" ] || chmod o+x "$PGHOST_DIR"
    PORT=$(free_port)
    cat >"$TMP/override.json" <<JSON
{"server": {"listen": "127.0.0.1:$PORT", "threads": 4},
 "queue": {"path": "$STATE/queue", "id": "install-test"},
 "database": {"conninfo": "${DP_PG_CONNINFO:-dbname=none}", "schema": "installtest"}}
JSON
    chmod 0644 "$TMP/override.json"
    as_unit datapipe-server "$D/usr/local/bin/datapipe-server" -c "$TMP/override.json" \
        >"$TMP/unit-server.log" 2>&1 &
    SPID=$!
    T_PIDS+=("$SPID")
    wait_until 30 "the installed server answers" http_answers "http://127.0.0.1:$PORT/healthz"
    eq "the installed server, as the unit's user: GET /healthz" 200 \
        "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz")"
    eq "it runs as the unit's user" "$DUID" "$(stat -c %u "/proc/$SPID" 2>/dev/null)"
    eq "it takes an event" 202 "$(curl -s -o /dev/null -w '%{http_code}' \
        -d '{"event_name": "crash_report", "user_id": 1, "timestamp": 1700000000, "message": "unit"}' \
        "http://127.0.0.1:$PORT/")"
    eq "its queue belongs to the unit's user" "$DUID" "$(stat -c %u "$STATE/queue")"
    (as_unit datapipe-loader "$D/usr/local/bin/datapipe-loader" -c "$TMP/override.json" --once) \
        >"$TMP/unit-loader.log" 2>&1
    eq "the installed loader, as the unit's user: --once exits 0" 0 $?
    eq "it loaded the event" 1 "$(psql "$DP_PG_CONNINFO" -At \
        -c "SELECT count(*) FROM installtest.crash_report WHERE message = 'unit'" 2>&1)"
    stop_pid "$SPID"
    eq "the installed server exits 0 on SIGTERM" 0 "$T_RC"
    restore_pg_mode
    grep -h 'Permission denied\|cannot' "$TMP/unit-server.log" "$TMP/unit-loader.log" | head -5
fi

# --- systemd-analyze on the installed units ---------------------------------------------------
# verify --root resolves what the units name inside the installed root: give it the host's
# targets and /bin/kill (ExecReload=) there, as an installed system has them.
if command -v systemd-analyze >/dev/null; then
    mkdir -p "$D/usr/lib/systemd" "$D/bin"
    cp -a "$(readlink -f /lib/systemd/system)" "$D/usr/lib/systemd/" 2>/dev/null
    cp /bin/kill "$D/bin/"
    out=$(systemd-analyze verify --root="$D" "$D/$UNITDIR/datapipe-server.service" \
        "$D/$UNITDIR/datapipe-loader.service" 2>&1)
    rc=$?
    if [ "$rc" != 0 ] && grep -qi 'failed to initialize manager\|no such device\|operation not permitted' <<<"$out"; then
        echo "test_install: systemd-analyze verify cannot run in this container: $out"
    else
        eq "systemd-analyze verify on the installed units: exit 0" 0 "$rc"
        eq "systemd-analyze verify on the installed units: no warnings" "" "$out"
    fi
    for u in datapipe-server datapipe-loader; do
        level=$(systemd-analyze security --offline=yes "$D/$UNITDIR/$u.service" 2>/dev/null | sed -n 's/.*exposure level for .*: \([0-9.]*\) .*/\1/p')
        echo "systemd-analyze security $u: exposure $level"
        ok "$u exposure below 3 ($level)" awk "BEGIN {exit !(${level:-99} < 3)}"
    done
else
    echo "test_install: systemd-analyze not found (make deps installs the systemd package):" \
        "unit verification skipped"
fi

echo '{"log": {"level": "debug"}}' >"$D/etc/datapipe.json"
make -s install DESTDIR="$D" PREFIX=/usr/local >>"$TMP/install.log" 2>&1
eq "existing /etc/datapipe.json kept" '{"log": {"level": "debug"}}' "$(cat "$D/etc/datapipe.json")"
make -s uninstall DESTDIR="$D" PREFIX=/usr/local >>"$TMP/install.log" 2>&1
ok "uninstall removes the binaries" [ ! -e "$D/usr/local/bin/datapipe-server" ] &&
    [ ! -e "$D/usr/local/bin/datapipe-queue" ]
ok "uninstall removes the units" [ ! -e "$D/$UNITDIR/datapipe-loader.service" ]
ok "uninstall keeps the configuration" [ -f "$D/etc/datapipe.json" ]

# sd_notify: a datagram socket this test owns.
SOCK=$TMP/notify.sock
PG=${DP_PG_CONNINFO:-dbname=none}
cat >"$TMP/cfg.json" <<JSON
{"server": {"listen": "127.0.0.1:$(free_port)", "threads": 4},
 "queue": {"path": "$TMP/q"},
 "database": {"conninfo": "$PG", "schema": "notifytest"},
 "loader": {"interval_s": 1, "min_interval_s": 1}}
JSON
for d in datapipe-server datapipe-loader; do
    rm -f "$SOCK"
    "$BUILD/tests/tools/notify_listen" "$SOCK" 6 >"$TMP/$d.notify" &
    LPID=$!
    wait_until 5 "the notify listener binds $SOCK" test -S "$SOCK"
    NOTIFY_SOCKET=$SOCK WATCHDOG_USEC=2000000 start_bg "$TMP/$d.log" "$BIN/$d" -c "$TMP/cfg.json"
    DPID=$T_LAST_PID
    notified() {
        grep -q 'READY=1' "$TMP/$d.notify" && grep -q 'STATUS=' "$TMP/$d.notify" &&
            { [ "$d" = datapipe-server ] || grep -q 'WATCHDOG=1' "$TMP/$d.notify"; }
    }
    wait_until 6 "$d notifies READY=1, STATUS= (and the loader WATCHDOG=1)" notified
    ok "$d sends READY=1" grep -q 'READY=1' "$TMP/$d.notify"
    ok "$d sends STATUS=" grep -q 'STATUS=' "$TMP/$d.notify"
    if [ "$d" = datapipe-loader ]; then
        ok "loader sends WATCHDOG=1" grep -q 'WATCHDOG=1' "$TMP/$d.notify"
    fi
    stop_pid "$DPID"
    eq "$d exits 0 on SIGTERM" 0 "$T_RC"
    kill "$LPID" 2>/dev/null
    wait "$LPID" 2>/dev/null
    grep -h 'STATUS=' "$TMP/$d.notify" | head -1 | sed "s/^/$d: /"
done

# The loader with PostgreSQL down (a closed port): READY=1 as soon as its queue is open, so
# that systemd does not kill it at boot, and STATUS= saying what it waits for.
DOWN=$(free_port)
cat >"$TMP/down.json" <<JSON
{"queue": {"path": "$TMP/qdown", "id": "notify-down"},
 "database": {"conninfo": "host=127.0.0.1 port=$DOWN dbname=none connect_timeout=2"}}
JSON
# The listener killed above leaves its socket file behind: without this, the wait below would
# pass at once and the loader could send READY=1 before the new listener is bound.
rm -f "$SOCK"
"$BUILD/tests/tools/notify_listen" "$SOCK" 30 >"$TMP/down.notify" &
LPID=$!
wait_until 10 "the sd_notify listener is bound" test -S "$SOCK"
NOTIFY_SOCKET=$SOCK start_bg "$TMP/down.log" "$BIN/datapipe-loader" -c "$TMP/down.json"
DPID=$T_LAST_PID
wait_until 30 "STATUS=waiting for PostgreSQL" grep -q '^STATUS=waiting for PostgreSQL: ' "$TMP/down.notify"
ok "loader with PostgreSQL down sends READY=1" grep -q 'READY=1' "$TMP/down.notify"
st=$(grep -m1 '^STATUS=waiting for PostgreSQL: ' "$TMP/down.notify")
has "loader with PostgreSQL down: STATUS= names the reason" \
    "STATUS=waiting for PostgreSQL: connection to server at \"127.0.0.1\", port $DOWN failed: Connection refused" "$st"
ok "READY=1 came before PostgreSQL answered" \
    awk '/^READY=1/ {r = NR} /^STATUS=waiting for PostgreSQL/ && !w {w = NR} END {exit !(r && w && r < w)}' \
    "$TMP/down.notify"
ok "the loader is still running" kill -0 "$DPID"
stop_pid "$DPID"
eq "loader waiting for PostgreSQL exits 0 on SIGTERM" 0 "$T_RC"
kill "$LPID" 2>/dev/null
wait "$LPID" 2>/dev/null
echo "datapipe-loader, PostgreSQL down: $st"

t_done install
