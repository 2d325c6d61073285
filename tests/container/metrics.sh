#!/bin/sh
# Every waggle_* metric and label value that deploy/ uses (alerts, the
# KEDA query, the prometheus-adapter rules, the docs) is one the broker
# serves: tests/container/metrics_check.py against the built broker.  Then
# the same check on a copy of deploy/ with a misspelt name and a label
# value the broker never emits must fail, naming both.
#
#   tests/container/metrics.sh BUILD_DIR
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:?usage: metrics.sh BUILD_DIR}" && pwd)
check="/usr/bin/python3 $top/tests/container/metrics_check.py"

$check "$top/deploy" "$build"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/deploy"
cat > "$tmp/deploy/alerts.yml" <<'RULES'
groups:
  - name: broken
    rules:
      - alert: Misspelt
        expr: waggle_drone_connected == 0
      - alert: NoSuchState
        expr: sum(waggle_tasks{state="queued"}) > 0
RULES
if $check "$tmp/deploy" "$build" 2> "$tmp/err"; then
    echo "metrics: FAIL: a misspelt metric name passed the check" >&2
    exit 1
fi
for want in "'waggle_drone_connected' is not a metric" \
            'never emits state="queued"'; do
    grep -qF "$want" "$tmp/err" || {
        cat "$tmp/err" >&2
        echo "metrics: FAIL: the check did not report: $want" >&2
        exit 1; }
done
echo "metrics: ok (and a misspelt name and an unknown label value fail)"
