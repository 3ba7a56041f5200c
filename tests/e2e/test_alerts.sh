#!/usr/bin/env bash
# test_alerts.sh - the alerting rules datapipe ships (alerts/datapipe.rules.yml) are valid
# Prometheus rules, and each alert fires when it should and not otherwise, on the first
# occurrence: promtool test rules over the series alerts/datapipe.rules.test.yml writes.
# (test_health.sh checks that the series the rules read exist from start-up at zero.)
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib/lib_sh.sh

out=$(promtool check rules alerts/datapipe.rules.yml 2>&1)
has "promtool check rules: the rules are valid" "SUCCESS: 9 rules found" "$out"
out=$(cd alerts && promtool test rules datapipe.rules.test.yml 2>&1)
has "promtool test rules: every alert fires when and only when it should" "SUCCESS" "$out"
[ "$T_FAIL" -eq 0 ] || echo "$out" >&2
# Every alert of the rules has a test that expects it to fire.
while read -r a; do
    ok "alert $a is tested firing" grep -q "alertname: $a\$" alerts/datapipe.rules.test.yml
done < <(sed -n 's/^ *- alert: //p' alerts/datapipe.rules.yml)
t_done alerts
