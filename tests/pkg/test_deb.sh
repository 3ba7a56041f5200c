#!/usr/bin/env bash
# test_deb.sh - the Debian package as an operator meets it, on this machine, as root (make
# deb-check runs it inside tests/pg run; it installs and purges the package datapipe): built
# by make deb with lintian clean; dpkg -i; the installed daemons run as datapipe with the
# installed configuration against the suite's PostgreSQL, events in, rows out; an upgrade to
# a package of a higher version with events queued loses none; remove keeps the configuration
# and the queue; purge removes the configuration, keeps a queue that holds events (saying
# where and how many) and removes an empty one.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh

[ "$(id -u)" = 0 ] || { echo "test_deb: must run as root (it installs a package)" >&2; exit 1; }
TMP=$(mktemp -d)
chmod 0755 "$TMP"
PGHOST_DIR=$(sed -n 's/.*host=\([^ ]*\).*/\1/p' <<<"$DP_PG_CONNINFO")
PGHOST_MODE=$(stat -c %a "$PGHOST_DIR" 2>/dev/null)
# An /etc/datapipe.json this machine had before is put back afterwards.
[ ! -e /etc/datapipe.json ] || mv /etc/datapipe.json "$TMP/datapipe.json.before"
cleanup() {
    t_cleanup
    [ -z "$PGHOST_MODE" ] || chmod "$PGHOST_MODE" "$PGHOST_DIR" 2>/dev/null
    dpkg -P datapipe >/dev/null 2>&1
    rm -rf /var/lib/datapipe/queue /var/lib/datapipe/queue-events-at-removal
    [ ! -e "$TMP/datapipe.json.before" ] || mv "$TMP/datapipe.json.before" /etc/datapipe.json
    [ -z "${KEEP:-}" ] || cp -r "$TMP" "$KEEP"
    rm -rf "$TMP"
}
trap cleanup EXIT
SCHEMA=debtest_$$
Q=/var/lib/datapipe/queue

# A package of this version, then one of a higher version from the same tree.
VERSION=$(awk 'NR == 1 { gsub(/[()]/, "", $2); print $2; exit }' debian/changelog)
ARCH=$(dpkg --print-architecture)
make -s deb BUILD="$TMP/b1" >"$TMP/deb1.log" 2>&1
ok "make deb builds the package and lintian finds nothing" [ $? -eq 0 ]
DEB1=$TMP/b1/deb/datapipe_${VERSION}_$ARCH.deb
ok "the package is named datapipe_<version>_<arch>.deb" [ -s "$DEB1" ]
V2=$VERSION.1
mkdir -p "$TMP/tree2"
git ls-files -co --exclude-standard | tar -cf - -T - | tar -xf - -C "$TMP/tree2"
{
    printf 'datapipe (%s) unstable; urgency=medium\n\n  * A later build, for the upgrade test.\n\n' "$V2"
    printf ' -- datapipe developers <datapipe@lists.datapipe.dev>  %s\n\n' "$(date -R)"
    cat debian/changelog
} >"$TMP/tree2/debian/changelog"
# make deb packs the files git knows: give the copy an index.
git -C "$TMP/tree2" init -q && git -C "$TMP/tree2" add -A
(cd "$TMP/tree2" && make -s deb BUILD="$TMP/b2") >"$TMP/deb2.log" 2>&1
DEB2=$TMP/b2/deb/datapipe_${V2}_$ARCH.deb
ok "a package of a higher version builds" [ -s "$DEB2" ]
deps=$(dpkg-deb -f "$DEB1" Depends)
for tool in postgresql check chromium haproxy nodejs npm gcc make; do
    ok "Depends names no build or test tool ($tool)" bash -c "! grep -qw '$tool' <<<'$deps'"
done

# --- install -------------------------------------------------------------------------------
dpkg -P datapipe >/dev/null 2>&1
rm -rf "$Q"
dpkg -i "$DEB1" >"$TMP/install.log" 2>&1
ok "dpkg -i installs it" [ $? -eq 0 ]
ok "the user datapipe exists" getent passwd datapipe
eq "/etc/datapipe.json is root:datapipe 0640, by name on this machine" "root:datapipe 640" \
    "$(stat -c '%U:%G %a' /etc/datapipe.json)"
eq "--version is the package's" "datapipe-server $VERSION" "$(datapipe-server --version)"
for f in /usr/bin/datapipe-server /usr/bin/datapipe-loader /lib/systemd/system/datapipe-server.service \
    /lib/systemd/system/datapipe-loader.service /usr/share/man/man8/datapipe-server.8.gz \
    /usr/share/doc/datapipe/README.md.gz /usr/lib/sysusers.d/datapipe.conf; do
    ok "$f installed" [ -e "$f" ]
done
ok "the configuration is a conffile" grep -qx /etc/datapipe.json /var/lib/dpkg/info/datapipe.conffiles

# The configuration an operator writes: this suite's PostgreSQL, the queue where the unit has
# it. The suite's socket directory is private: let datapipe reach it, for this test only.
[ -z "$PGHOST_DIR" ] || chmod o+x "$PGHOST_DIR"
PORT=$(free_port)
cat >/etc/datapipe.json <<JSON
{"server": {"listen": "127.0.0.1:$PORT", "threads": 8},
 "queue": {"path": "$Q", "id": "deb-test"},
 "database": {"conninfo": "$DP_PG_CONNINFO", "schema": "$SCHEMA"},
 "loader": {"interval_s": 1, "min_interval_s": 1}}
JSON
URL=http://127.0.0.1:$PORT

# as_unit PROG: run an installed daemon as its unit does (User=datapipe, the unit's
# Environment=); its PID in T_LAST_PID.
as_unit() {
    start_bg "$TMP/$1.log" setpriv --reuid=datapipe --regid=datapipe --clear-groups -- \
        env DATAPIPE_CNF=/etc/datapipe.json "/usr/bin/$1"
}
post_n() {
    local i n=0
    for i in $(seq "$1" "$2"); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' \
            -d "{\"user_id\": $i, \"timestamp\": 1700000000, \"message\": \"deb\"}" \
            "$URL/v1/events/crash_report")" = 202 ] && n=$((n + 1))
    done
    echo "$n"
}
rows() { sql "SELECT count(DISTINCT id) || ' ' || count(*) FROM $SCHEMA.crash_report"; }
rows_are() { [ "$(rows)" = "$1 $1" ]; }

as_unit datapipe-server
SPID=$T_LAST_PID
as_unit datapipe-loader
LPID=$T_LAST_PID
wait_until 30 "the installed server answers" http_answers "$URL/healthz"
eq "it runs as datapipe" datapipe "$(ps -o user= -p "$SPID" | tr -d ' ')"
eq "100 events acknowledged" 100 "$(post_n 1 100)"
wait_until 60 "the installed loader loads them" rows_are 100

# --- upgrade with events queued ------------------------------------------------------------
stop_pid "$LPID"
eq "50 more acknowledged while no loader runs" 50 "$(post_n 101 150)"
stop_pid "$SPID"
dpkg -i --force-confold "$DEB2" >"$TMP/upgrade.log" 2>&1
ok "dpkg -i of the higher version upgrades it" [ $? -eq 0 ]
eq "--version is the new package's" "datapipe-server $V2" "$(datapipe-server --version)"
eq "the operator's configuration is kept" "deb-test" "$(sed -n 's/.*"id": "\([^"]*\)".*/\1/p' /etc/datapipe.json)"
as_unit datapipe-server
SPID=$T_LAST_PID
as_unit datapipe-loader
LPID=$T_LAST_PID
wait_until 30 "the upgraded server answers" http_answers "$URL/healthz"
wait_until 60 "the upgraded loader loads what was queued, each once" rows_are 150

# --- remove: configuration and queue kept ---------------------------------------------------
stop_pid "$LPID"
eq "20 more acknowledged, left queued" 20 "$(post_n 151 170)"
stop_pid "$SPID"
dpkg -r datapipe >"$TMP/remove.log" 2>&1
ok "dpkg -r removes it" [ $? -eq 0 ]
ok "remove: the binaries are gone" [ ! -e /usr/bin/datapipe-server ]
ok "remove: the configuration is kept" [ -f /etc/datapipe.json ]
ok "remove: the queue is kept" [ -f "$Q/data.mdb" ]

# --- purge: a queue holding events is kept, with the message -------------------------------
dpkg -P datapipe >"$TMP/purge.log" 2>&1
ok "dpkg -P purges it" [ $? -eq 0 ]
ok "purge: the configuration is gone" [ ! -e /etc/datapipe.json ]
ok "purge: the queue holding 20 events is kept" [ -f "$Q/data.mdb" ]
has_file "purge: says where and how many" "kept $Q: it holds 20 events" "$TMP/purge.log"

# --- reinstall, drain, purge: an empty queue goes ------------------------------------------
dpkg -i "$DEB2" >>"$TMP/install.log" 2>&1
cat >/etc/datapipe.json <<JSON
{"queue": {"path": "$Q", "id": "deb-test"},
 "database": {"conninfo": "$DP_PG_CONNINFO", "schema": "$SCHEMA"}}
JSON
setpriv --reuid=datapipe --regid=datapipe --clear-groups -- \
    env DATAPIPE_CNF=/etc/datapipe.json /usr/bin/datapipe-loader --once \
    >>"$TMP/datapipe-loader.log" 2>&1
eq "the reinstalled loader drains the kept queue" 0 $?
ok "every acknowledged event is in PostgreSQL once" rows_are 170
dpkg -r datapipe >>"$TMP/remove.log" 2>&1
dpkg -P datapipe >"$TMP/purge2.log" 2>&1
ok "purge of an empty queue removes it" [ ! -e "$Q" ]

sql "DROP SCHEMA $SCHEMA CASCADE" >/dev/null
t_done deb
