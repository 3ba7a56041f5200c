#!/usr/bin/env bash
# test_cli.sh - both daemons' command line: --help, --version, --check-config
# with the example file (exit 0, effective JSON) and with a misspelt key
# (exit 2, the key named), and $DATAPIPE_CNF pointing at a missing file.
set -uo pipefail
BIN=${DP_BIN:-bin}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0
check() { # check NAME CONDITION-COMMAND...
    local name=$1
    shift
    if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $name"; fi
}

for d in datapipe-server datapipe-loader; do
    out=$("$BIN/$d" --help)
    check "$d --help exit 0" [ $? -eq 0 ]
    check "$d --help lists loader.interval_s" grep -q 'loader.interval_s' <<<"$out"
    check "$d --version" grep -q "^$d [0-9]" <<<"$("$BIN/$d" --version)"

    out=$(DATAPIPE_CNF=datapipe.json.example "$BIN/$d" --check-config)
    check "$d --check-config example exit 0" [ $? -eq 0 ]
    check "$d --check-config prints interval" grep -q '"interval_s": 300' <<<"$out"
    check "$d --check-config prints queue.id" grep -q "\"id\": \"$(hostname)\"" <<<"$out"

    printf '{"loader": {"intervall_s": 5}}\n' >"$tmp/bad.json"
    err=$(DATAPIPE_CNF="$tmp/bad.json" "$BIN/$d" --check-config 2>&1 >/dev/null)
    rc=$?
    check "$d misspelt key exit 2" [ $rc -eq 2 ]
    check "$d misspelt key named" grep -q "bad.json: loader.intervall_s: unknown key" <<<"$err"

    printf '{"server": {"threads": 9}}\n' >"$tmp/a.json"
    printf 'server = { threads = 11; };\n' >"$tmp/b.cfg"
    out=$(DATAPIPE_CNF="$tmp/a.json" "$BIN/$d" -c "$tmp/b.cfg" --check-config)
    check "$d -c wins over DATAPIPE_CNF" grep -q '"threads": 11' <<<"$out"

    err=$(DATAPIPE_CNF="$tmp/missing.json" "$BIN/$d" --check-config 2>&1)
    rc=$?
    check "$d missing DATAPIPE_CNF exit 2" [ $rc -eq 2 ]
    check "$d missing DATAPIPE_CNF named" grep -q "missing.json: cannot read" <<<"$err"

    "$BIN/$d" --bogus >/dev/null 2>&1
    check "$d unknown option exit 2" [ $? -eq 2 ]
done
"$BIN/datapipe-server" --once >/dev/null 2>&1
check "server refuses --once" [ $? -eq 2 ]

echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
