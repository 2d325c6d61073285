#!/bin/sh
# Runs one Python test (tests/py/test_NAME.py BUILD_DIR) with an interpreter
# that has Debian's python3-zmq and python3-msgpack (CI installs them:
# deploy/install-deps.sh --test).  Exit 77 (ctest: skipped) only when no
# python3 here has them.
set -eu
export PYTHONDONTWRITEBYTECODE=1
here=$(cd "$(dirname "$0")" && pwd)
test=$1
build=$2
for py in python3 /usr/bin/python3; do
    if command -v "$py" >/dev/null 2>&1 &&
       "$py" -c 'import zmq, msgpack; assert zmq.has("curve")' 2>/dev/null
    then
        exec "$py" "$here/test_$test.py" "$build"
    fi
done
echo "SKIP: no python3 with zmq (CURVE) and msgpack; install python3-zmq" \
     "python3-msgpack" >&2
exit 77
