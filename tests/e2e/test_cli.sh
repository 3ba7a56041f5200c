#!/usr/bin/env bash
# test_cli.sh - both daemons' command line: --help, --version, --check-config
# with the example file (exit 0, effective JSON) and with a misspelt key
# (exit 2, the key named), and $DATAPIPE_CNF pointing at a missing file.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for d in datapipe-server datapipe-loader; do
    out=$("$BIN/$d" --help)
    eq "$d --help exit 0" 0 $?
    has "$d --help lists loader.interval_s" 'loader.interval_s' "$out"
    ok "$d --version" grep -q "^$d [0-9]" <<<"$("$BIN/$d" --version)"

    out=$(DATAPIPE_CNF=datapipe.json.example "$BIN/$d" --check-config)
    eq "$d --check-config example exit 0" 0 $?
    has "$d --check-config prints interval" '"interval_s": 300' "$out"
    has "$d --check-config prints queue.id" "\"id\": \"$(hostname)\"" "$out"

    printf '{"loader": {"intervall_s": 5}}\n' >"$tmp/bad.json"
    err=$(DATAPIPE_CNF="$tmp/bad.json" "$BIN/$d" --check-config 2>&1 >/dev/null)
    rc=$?
    eq "$d misspelt key exit 2" 2 "$rc"
    has "$d misspelt key named" "bad.json: loader.intervall_s: unknown key" "$err"

    printf '{"server": {"threads": 9}}\n' >"$tmp/a.json"
    printf 'server = { threads = 11; };\n' >"$tmp/b.cfg"
    out=$(DATAPIPE_CNF="$tmp/a.json" "$BIN/$d" -c "$tmp/b.cfg" --check-config)
    has "$d -c wins over DATAPIPE_CNF" '"threads": 11' "$out"

    err=$(DATAPIPE_CNF="$tmp/missing.json" "$BIN/$d" --check-config 2>&1)
    rc=$?
    eq "$d missing DATAPIPE_CNF exit 2" 2 "$rc"
    has "$d missing DATAPIPE_CNF named" "missing.json: cannot read" "$err"

    "$BIN/$d" --bogus >/dev/null 2>&1
    eq "$d unknown option exit 2" 2 $?
done
"$BIN/datapipe-server" --once >/dev/null 2>&1
eq "server refuses --once" 2 $?

t_done cli
