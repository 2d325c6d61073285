#!/bin/sh
# deploy/compose.yaml and deploy/prometheus, offline: 'docker-compose
# config -q' with every profile, then checks on the resolved file -- drones
# scale (no container_name, no host port), every key mount but keygen's is
# read-only, keys are never in a build -- and the alert rules with promtool
# when it is installed (check rules, and the unit tests in
# prometheus/alerts_test.yml), else as YAML.  tests/container/metrics.sh
# checks the metric names they use.
#
#   tests/container/compose.sh
#
# Exits 77 (SKIP) without docker-compose (Debian's docker-compose package).
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
command -v docker-compose >/dev/null 2>&1 ||
    { echo "compose: *** SKIP: docker-compose is not installed ***" >&2;
      exit 77; }
cd "$top/deploy"
docker-compose -f compose.yaml config -q
resolved=$(docker-compose -f compose.yaml --profile setup --profile tools \
    --profile metrics config)
echo "$resolved" | /usr/bin/python3 "$top/tests/container/compose_check.py"
if command -v promtool >/dev/null 2>&1; then
    promtool check rules prometheus/alerts.yml >/dev/null
    (cd prometheus && promtool test rules alerts_test.yml >/dev/null)
    how="promtool check and test rules"
else
    /usr/bin/python3 -c 'import sys, yaml
for f in sys.argv[1:]:
    yaml.safe_load(open(f))' prometheus/alerts.yml prometheus/alerts_test.yml \
        prometheus/prometheus.yml
    how="YAML only (no promtool)"
fi
grep -q 'waggle_tasks{state="ready"}' prometheus/alerts.yml
echo "compose: ok (config -q with every profile; alerts checked by $how)"
