#!/bin/sh
# deploy/k8s, offline: tests/container/k8s_check.py renders the base and
# the keda and hpa variants and checks the objects (its header says what
# it checks and what it cannot).
#
#   tests/container/k8s.sh BUILD_DIR
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
exec /usr/bin/python3 "$top/tests/container/k8s_check.py" "$top/deploy/k8s" \
    "${1:?usage: k8s.sh BUILD_DIR}"
