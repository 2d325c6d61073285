#!/bin/sh
# Runs every Waggle test, as CI does: installs what it needs, builds with
# warnings as errors, runs the unit tests (also under valgrind) and the
# end-to-end tests and the deployment tests (the container image under
# Podman), then does it all again under AddressSanitizer and
# UndefinedBehaviorSanitizer, and finally builds and runs the unit tests in
# a fresh Debian 13 root (tests/debroot.sh; WAGGLE_SKIP_TRIXIE=1 skips it).
# Exit status 0 only when everything passed.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
jobs=$(nproc 2>/dev/null || echo 2)

step() { printf '\n==> %s\n' "$*"; }

step "installing dependencies (if missing)"
deploy/install-deps.sh --test

step "build (-Werror)"
cmake -S . -B build-test -DWAGGLE_WERROR=ON >/dev/null
cmake --build build-test -j"$jobs" >/dev/null

step "unit tests"
(cd build-test && ctest -L unit -j"$jobs" --output-on-failure)

step "unit tests under valgrind (no leaks, no errors)"
for t in build-test/tests/test_*; do
    rc=0
    valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite \
        --error-exitcode=1 --trace-children=no "$t" >/dev/null || rc=$?
    case $rc in
    0) echo "ok   $(basename "$t")" ;;
    77) echo "skip $(basename "$t") (cannot run here)" ;;
    *) echo "valgrind: $t failed" >&2; exit 1 ;;
    esac
done

step "end-to-end tests"
(cd build-test && ctest -L e2e --output-on-failure)

step "deployment: the image under Podman; compose, Kubernetes, systemd checks"
# ctest label "container" (tests/container/): the image is built and run
# as a broker and two drones (about 4 minutes cold, 1 warm); each test says
# SKIP (exit 77) when its tool is missing.
if ! command -v podman >/dev/null 2>&1; then
    echo "*** SKIP: no podman: the container image is not built or run ***"
fi
(cd build-test && ctest -L container --output-on-failure)

step "build with AddressSanitizer + UndefinedBehaviorSanitizer"
cmake -S . -B build-asan -DWAGGLE_WERROR=ON -DWAGGLE_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs" >/dev/null

step "all tests under ASan + UBSan"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build-asan && ctest -L unit -j"$jobs" --output-on-failure &&
 ctest -L e2e --output-on-failure)

step "Debian 13 root: build (-Werror) and unit tests against msgpack-c 6"
# A fresh root every run (debootstrap from the Debian mirror, about a minute
# or two); WAGGLE_SKIP_TRIXIE=1 skips it.  Without root, debootstrap or the
# mirror it says SKIP and the run goes on.
if [ "${WAGGLE_SKIP_TRIXIE:-0}" = 1 ]; then
    echo "*** SKIP: Debian 13 build (WAGGLE_SKIP_TRIXIE=1) ***"
else
    rc=0
    tests/debroot.sh trixie unit || rc=$?
    case $rc in
    0) ;;
    77) echo "*** SKIP: Debian 13 build (see above why) ***" ;;
    *) echo "Debian 13 build or unit tests failed" >&2; exit 1 ;;
    esac
fi

step "all tests passed"
