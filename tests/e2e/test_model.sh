#!/usr/bin/env bash
# test_model.sh - the model-based checker (tests/model/dpcheck.py) for a bounded time: a few
# fixed seeds, then one random seed (printed, so a failure replays with --seed). Passes when
# every run's model held; a violation fails it with the checker's reproduction.
# MODEL_SECONDS (default 150) bounds the whole; MODEL_AVOID names findings still open.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh
: "${DP_PG_CONNINFO:?run through make check (tests/pg run)}"

# "open": the findings not fixed yet in this tree (OPEN_FINDINGS in dpcheck.py), which the
# generator steers clear of so that it looks past them. MODEL_AVOID= looks for every one.
AVOID=${MODEL_AVOID-open}
TOTAL=${MODEL_SECONDS:-150}
FIXED_SEEDS=(1 7 24)
# Each fixed seed two runs; the random seed has what is left of the budget.
RANDOM_S=$((TOTAL - 30 * ${#FIXED_SEEDS[@]}))
[ "$RANDOM_S" -ge 20 ] || RANDOM_S=20

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

dpcheck() {
    python3 tests/model/dpcheck.py --bin "$BIN" --avoid "$AVOID" --shrink-s 60 "$@" |
        tee -a "$TMP/out"
    return "${PIPESTATUS[0]}"
}

for seed in "${FIXED_SEEDS[@]}"; do
    ok "checker: fixed seed $seed" dpcheck --seed "$seed" --runs 2 --ops 40 --seconds 30
done
seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
echo "test_model: random seed $seed"
ok "checker: random seed $seed" dpcheck --seed "$seed" --ops 40 --seconds "$RANDOM_S"
# One line for make soak's figures: the sums of every dpcheck's closing line.
awk '/^dpcheck: [0-9]+ runs,/ {r += $2; o += $4; q += $6; f += $8}
     /^VIOLATION/ {v++}
     END {printf "E2E-FIGURES model runs=%d ops=%d requests=%d faults=%d violations=%d\n",
          r, o, q, f, v}' "$TMP/out"
t_done test_model
