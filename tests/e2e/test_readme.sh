#!/usr/bin/env bash
# test_readme.sh - every shell example of README.md and of each page of docs/ runs as written
# and answers what the page says, against an appliance this test starts (server + loader on the
# suite's PostgreSQL, in a database of its own, on a free port). A change that breaks an
# example fails here, and so does docs/configuration.md's settings table when it is not what
# the daemons' --describe-config prints.
#
# The convention README follows:
# - Pages are read in the order README.md, then docs/*.md by name; one page's blocks run after
#   the other's, against the same appliance.
# - An example is a fenced block whose info string is `sh example`; words after `example` are
#   settings for the server it runs against: `api_keys=KEY` turns API keys on with key KEY,
#   `types=examples/page_view.json` adds that file's declared types (as run/override.json).
#   Other blocks (`sh`, `sql`, `yaml`) are not run.
# - Examples address the appliance as http://127.0.0.1:8080 (rewritten to this test's port) and
#   name files as a checkout does: examples/, bin/, datapipe.json.example, and run/datapipe.json
#   for the demo's configuration. They run in a directory that has exactly these (bin/ is
#   $DP_BIN, run/datapipe.json this test's configuration), one shell per block, in order.
# - Each command (a line, with the lines it continues into when it ends in `|`, `\` or `&&`) is
#   a step. An answer is a `# ` comment whose text starts with `{` right after a step; the lines
#   after it that start with `#  ` continue it. A step with an answer must print a JSON value
#   that matches it; a step without one must exit 0, and curl fails on an HTTP status >= 400
#   there (the test runs curl with --fail-with-body unless the command uses -f itself).
# - Matching: every field of the answer must be in the output with the same value, arrays
#   element by element and of the same length; for fields named `id` or ending in `_at`
#   (ids and timestamps differ on every run) only the JSON type must be the same, and for
#   `ids` the type of each element (a string, or null for a rejected event).
#   Other comments are prose.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
REPO=$PWD
TMP=$(mktemp -d)
trap 't_cleanup; [ -z "${KEEP:-}" ] || cp -r "$TMP" "$KEEP"; rm -rf "$TMP"' EXIT

# --- the appliance: its own database in the suite's PostgreSQL -------------------------------
DB=readme_$$
psql "$DP_PG_CONNINFO" -qAt -c "CREATE DATABASE $DB" >/dev/null
# shellcheck disable=SC2001 # a pattern ([^ ]*), which ${var//} cannot say
CONN=$(sed "s/dbname=[^ ]*/dbname=$DB/" <<<"$DP_PG_CONNINFO")
PORT=$(free_port)
KPORT=$(free_port)
TPORT=$(free_port)
mkdir -p "$TMP/work/run"
cat >"$TMP/work/run/datapipe.json" <<JSON
{"server": {"listen": "127.0.0.1:$PORT", "threads": 8},
 "queue": {"path": "$TMP/queue", "id": "readme"},
 "database": {"conninfo": "$CONN", "schema": "datapipe"},
 "loader": {"interval_s": 1, "min_interval_s": 1}}
JSON
cat >"$TMP/keys.json" <<JSON
{"server": {"listen": "127.0.0.1:$KPORT", "threads": 4, "api_keys": ["KEY"]},
 "queue": {"path": "$TMP/keyqueue", "id": "readme-keys"},
 "database": {"conninfo": "$CONN", "schema": "datapipe"}}
JSON
start_bg "$TMP/server.log" "$BIN/datapipe-server" -c "$TMP/work/run/datapipe.json"
start_bg "$TMP/loader.log" "$BIN/datapipe-loader" -c "$TMP/work/run/datapipe.json"
# The demo with docs/event-types.md's declared type, merged over its configuration from an
# override as make run does (DATAPIPE_CNF, then -c FILE), on a queue of its own.
sed "s|$TMP/queue\", \"id\": \"readme\"|$TMP/tqueue\", \"id\": \"readme-types\"|;
     s|127.0.0.1:$PORT|127.0.0.1:$TPORT|" "$TMP/work/run/datapipe.json" >"$TMP/types.json"
DATAPIPE_CNF="$TMP/types.json" start_bg "$TMP/tserver.log" "$BIN/datapipe-server" \
    -c examples/page_view.json
DATAPIPE_CNF="$TMP/types.json" start_bg "$TMP/tloader.log" "$BIN/datapipe-loader" \
    -c examples/page_view.json
start_bg "$TMP/keyserver.log" "$BIN/datapipe-server" -c "$TMP/keys.json"
wait_until 30 "the appliance serves" http_answers "http://127.0.0.1:$PORT/healthz"
wait_until 30 "the keyed server serves" http_answers "http://127.0.0.1:$KPORT/healthz"
wait_until 30 "the server with page_view serves" http_answers "http://127.0.0.1:$TPORT/healthz"
# The dead-letter recipe replays what a refused load left: one such row, as the loader files it.
wait_until 30 "the loader created its tables" \
    psql "$CONN" -qAt -c 'SELECT 1 FROM datapipe.dead_letter LIMIT 0'
psql "$CONN" -qAt -c "INSERT INTO datapipe.dead_letter (queue_id, event_type, stage, error, raw)
    VALUES ('readme', 'crash_report', 'load', 'value too long',
    convert_to('{\"user_id\": 5, \"timestamp\": 1700000000, \"message\": \"replayed\"}', 'UTF8'))"

# The checkout the examples expect.
ln -s "$REPO/examples" "$TMP/work/examples"
ln -s "$REPO/$BIN" "$TMP/work/bin"
ln -s "$REPO/datapipe.json.example" "$TMP/work/datapipe.json.example"

# curl as the examples run it: quiet, and failing on >= 400 unless the example uses -f.
cat >"$TMP/prelude.sh" <<'SH'
curl() {
    local a
    for a in "$@"; do
        [[ "$a" =~ ^-[A-Za-z]*f[A-Za-z]*$ || "$a" == --fail ]] && { command curl -sS "$@"; return; }
    done
    command curl -sS --fail-with-body "$@"
}
SH

# jq: does the output $a match the answer $e (the rule above)?
# shellcheck disable=SC2016 # jq's $e and $a, not the shell's
MATCH='def m($e; $a):
  if ($e | type) == "object" then
    ($a | type) == "object" and all($e | keys[]; . as $k | ($a | has($k)) and
      (if ($k | test("^id$|_at$")) then ($e[$k] | type) == ($a[$k] | type)
       elif $k == "ids" then ($a[$k] | type) == "array" and
         ($e[$k] | map(type)) == ($a[$k] | map(type))
       else m($e[$k]; $a[$k]) end))
  elif ($e | type) == "array" then
    ($a | type) == "array" and ($e | length) == ($a | length) and
      all(range($e | length); . as $i | m($e[$i]; $a[$i]))
  else $e == $a end;
m($want; .)'

# The settings table of docs/configuration.md is the daemons' own, as --describe-config prints it.
awk '/^<!-- settings table/ { inb = 1; next } /^<!-- end of settings table/ { inb = 0 }
     inb && /^\|/' docs/configuration.md >"$TMP/settings.doc"
"$BIN/datapipe-server" --describe-config >"$TMP/settings.gen"
ok "docs/configuration.md's settings table is --describe-config's (make docs)" \
    cmp -s "$TMP/settings.doc" "$TMP/settings.gen"
ok "the settings table has a row a setting" [ "$(wc -l <"$TMP/settings.gen")" -ge 20 ]

# Split the pages into blocks: $TMP/block.N (the lines), $TMP/block.N.opts (the info string),
# $TMP/block.N.page (the page it comes from).
PAGES=(README.md docs/*.md)
awk -v dir="$TMP" '
    /^```sh example/ { n++; inb = 1; sub(/^```sh example */, ""); print > (dir "/block." n ".opts");
                       print FILENAME > (dir "/block." n ".page");
                       printf "" > (dir "/block." n); next }
    inb && /^```/ { inb = 0; next }
    inb { print > (dir "/block." n) }
' "${PAGES[@]}"
NBLOCKS=$(find "$TMP" -maxdepth 1 -name 'block.*.opts' | wc -l)
ok "the pages have shell examples ($NBLOCKS)" [ "$NBLOCKS" -ge 8 ]
for page in "${PAGES[@]}"; do
    case "$page" in docs/performance.md | docs/reliability.md | docs/scaling.md) continue ;; esac
    ok "$page has a shell example" grep -q '^```sh example' "$page"
done

# run_block N: turn block N into a script of steps, run it, check each step.
run_block() {
    local n=$1 url=http://127.0.0.1:$PORT opts
    local script=$TMP/run.$n.sh
    local -a cmds=() answers=()
    local line cmd="" i
    opts=$(cat "$TMP/block.$n.opts")
    [[ "$opts" != *api_keys=KEY* ]] || url=http://127.0.0.1:$KPORT
    [[ "$opts" != *types=examples/page_view.json* ]] || url=http://127.0.0.1:$TPORT
    flush() {
        if [ -n "$cmd" ]; then
            cmds+=("$cmd")
            answers+=("")
            cmd=""
        fi
    }
    while IFS= read -r line || [ -n "$line" ]; do
        if [[ "$line" == '# {'* ]]; then
            flush
            answers[${#answers[@]} - 1]=${line#\# }
        elif [[ "$line" == '#  '* && ${#answers[@]} -gt 0 &&
            -n "${answers[${#answers[@]} - 1]:-}" ]]; then
            answers[${#answers[@]} - 1]+=${line#\#  }
        elif [[ -z "$line" || "$line" == '#'* ]]; then
            flush
        else
            cmd+="${line//http:\/\/127.0.0.1:8080/$url}"$'\n'
            [[ "$line" =~ (\||\\|\&\&)[[:space:]]*$ ]] || flush
        fi
    done <"$TMP/block.$n"
    flush
    {
        cat "$TMP/prelude.sh"
        echo "cd '$TMP/work'"
        for i in "${!cmds[@]}"; do
            printf '{\n%s} >"%s/out.%s.%s" 2>"%s/err.%s.%s"\necho $? >"%s/rc.%s.%s"\n' \
                "${cmds[$i]}" "$TMP" "$n" "$i" "$TMP" "$n" "$i" "$TMP" "$n" "$i"
        done
    } >"$script"
    timeout 120 bash "$script"
    for i in "${!cmds[@]}"; do
        local name
        name="$(cat "$TMP/block.$n.page") example $n.$((i + 1)): ${cmds[$i]%%$'\n'*}"
        local out rc
        out=$(cat "$TMP/out.$n.$i" 2>/dev/null)
        rc=$(cat "$TMP/rc.$n.$i" 2>/dev/null || echo "not run")
        if [ -z "${answers[$i]}" ]; then
            eq "$name: exit status" 0 "$rc"
            [ "$rc" = 0 ] || echo "    its output: ${out:0:400} $(head -c 400 "$TMP/err.$n.$i")" >&2
        elif ! jq -e -n "${answers[$i]}" >/dev/null 2>&1; then
            ok "$name: the answer README shows is JSON: ${answers[$i]}" false
        elif jq -e -s --argjson want "${answers[$i]}" "last | $MATCH" <<<"$out" >/dev/null 2>&1; then
            ok "$name" true
        else
            ok "$name: want ${answers[$i]} got ${out:0:400}" false
        fi
    done
}

for n in $(seq 1 "$NBLOCKS"); do
    run_block "$n"
done
replayed_loaded() {
    [ "$(psql "$CONN" -At -c "SELECT count(*) FROM datapipe.crash_report WHERE message = 'replayed'")" = 1 ]
}
wait_until 30 "the replay recipe loaded the dead letter" replayed_loaded
eq "and deleted it from dead_letter" 0 "$(psql "$CONN" -At -c "SELECT count(*) FROM datapipe.dead_letter WHERE stage = 'load'")"

for p in "${T_PIDS[@]}"; do
    stop_pid "$p"
done
psql "$DP_PG_CONNINFO" -qAt -c "DROP DATABASE $DB" >/dev/null 2>&1
t_done readme
