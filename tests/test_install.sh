#!/usr/bin/env bash
# test_install.sh - `make install DESTDIR=...` lays out the tree (binaries,
# TLS shim, units with the real paths, sysusers/tmpfiles snippets, docs, an
# /etc/datapipe.json that is never overwritten); `make uninstall` removes it;
# the units pass `systemd-analyze verify`; and both daemons speak sd_notify
# (READY=1, STATUS=, the loader's WATCHDOG=1) and exit 0 on SIGTERM.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
. tests/lib_sh.sh
TMP=$(mktemp -d)
trap 't_cleanup; rm -rf "$TMP"' EXIT
D=$TMP/root

make -s install DESTDIR="$D" PREFIX=/usr/local >"$TMP/install.log" 2>&1
ok "make install exits 0" [ $? -eq 0 ]
for f in usr/local/bin/datapipe-server usr/local/bin/datapipe-loader; do
    ok "$f executable" [ -x "$D/$f" ]
done
UNITDIR=$(pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null || echo /lib/systemd/system)
for f in usr/local/lib/datapipe/datapipe-tls-compat.so usr/local/share/doc/datapipe/datapipe.json.example \
    usr/local/share/doc/datapipe/README.md "${UNITDIR#/}/datapipe-server.service" \
    "${UNITDIR#/}/datapipe-loader.service" etc/datapipe.json; do
    ok "$f installed" [ -f "$D/$f" ]
done
ok "sysusers snippet installed" bash -c "ls $D/usr/lib/sysusers.d/datapipe.conf >/dev/null"
ok "tmpfiles snippet installed" bash -c "ls $D/usr/lib/tmpfiles.d/datapipe.conf >/dev/null"
ok "unit has the real ExecStart" grep -q '^ExecStart=/usr/local/bin/datapipe-server$' "$D/$UNITDIR/datapipe-server.service"
ok "no placeholder left" bash -c "! grep -rq '@BINDIR@\|@DOCDIR@' $D/$UNITDIR/"
ok "loader unit has WatchdogSec" grep -q '^WatchdogSec=' "$D/$UNITDIR/datapipe-loader.service"
ok "installed server runs" "$D/usr/local/bin/datapipe-server" --version

echo '{"log": {"level": "debug"}}' >"$D/etc/datapipe.json"
make -s install DESTDIR="$D" PREFIX=/usr/local >>"$TMP/install.log" 2>&1
eq "existing /etc/datapipe.json kept" '{"log": {"level": "debug"}}' "$(cat "$D/etc/datapipe.json")"
make -s uninstall DESTDIR="$D" PREFIX=/usr/local >>"$TMP/install.log" 2>&1
ok "uninstall removes the binaries" [ ! -e "$D/usr/local/bin/datapipe-server" ]
ok "uninstall removes the units" [ ! -e "$D/$UNITDIR/datapipe-loader.service" ]
ok "uninstall keeps the configuration" [ -f "$D/etc/datapipe.json" ]

# systemd-analyze verify on units pointing at the built binaries.
if command -v systemd-analyze >/dev/null; then
    for u in datapipe-server datapipe-loader; do
        sed "s|@BINDIR@|$PWD/$BIN|g; s|@DOCDIR@|/usr/share/doc/datapipe|g" "systemd/$u.service" >"$TMP/$u.service"
    done
    out=$(systemd-analyze verify "$TMP/datapipe-server.service" "$TMP/datapipe-loader.service" 2>&1)
    rc=$?
    eq "systemd-analyze verify: exit 0" 0 "$rc"
    eq "systemd-analyze verify: no warnings" "" "$out"
    for u in datapipe-server datapipe-loader; do
        level=$(systemd-analyze security --offline=yes "$TMP/$u.service" 2>/dev/null | sed -n 's/.*exposure level for .*: \([0-9.]*\) .*/\1/p')
        echo "systemd-analyze security $u: exposure $level"
        ok "$u exposure below 3 ($level)" awk "BEGIN {exit !($level < 3)}"
    done
else
    echo "test_install: systemd-analyze not found, unit verification skipped (install the systemd package)"
fi

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
    "$BUILD/tests/notify_listen" "$SOCK" 6 >"$TMP/$d.notify" &
    LPID=$!
    sleep 0.3
    NOTIFY_SOCKET=$SOCK WATCHDOG_USEC=2000000 start_bg "$TMP/$d.log" "$BIN/$d" -c "$TMP/cfg.json"
    DPID=$T_LAST_PID
    for _ in $(seq 1 60); do
        grep -q 'READY=1' "$TMP/$d.notify" && grep -q 'STATUS=' "$TMP/$d.notify" &&
            { [ "$d" = datapipe-server ] || grep -q 'WATCHDOG=1' "$TMP/$d.notify"; } && break
        sleep 0.1
    done
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
"$BUILD/tests/notify_listen" "$SOCK" 30 >"$TMP/down.notify" &
LPID=$!
for _ in $(seq 1 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
NOTIFY_SOCKET=$SOCK start_bg "$TMP/down.log" "$BIN/datapipe-loader" -c "$TMP/down.json"
DPID=$T_LAST_PID
for _ in $(seq 1 200); do
    grep -q '^STATUS=waiting for PostgreSQL: ' "$TMP/down.notify" && break
    sleep 0.1
done
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
