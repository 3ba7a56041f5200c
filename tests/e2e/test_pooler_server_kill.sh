#!/usr/bin/env bash
# test_pooler_server_kill.sh - the server-kill scenario (tests/e2e/test_server_kill.sh:
# SIGKILLs of the server under keyed and unkeyed load, the loader draining alongside, then the
# exactly-once verdict) with both daemons connecting through PgBouncer in transaction pooling
# mode (tests/lib/lib_pooler.sh), a small pool shared by the loader's and the server's
# transactions: 0 lost, 0 duplicated, every key once.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
. tests/lib/lib_pooler.sh

: "${DP_PG_CONNINFO:?run through tests/pg run (make check)}"
PDIR=$(mktemp -d "${TMPDIR:-/tmp}/dp-e2e-pooler.XXXXXX")
trap 't_cleanup; rm -rf "$PDIR"' EXIT
POOLER_POOL_SIZE=3 pooler_start "$PDIR/pooler"
E2E_CONNINFO=$POOLER_CONNINFO tests/e2e/test_server_kill.sh
eq "the server-kill scenario through PgBouncer (transaction mode) passes" 0 $?
pooler_stop
t_done test_pooler_server_kill
