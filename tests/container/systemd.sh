#!/bin/sh
# deploy/systemd: 'systemd-analyze verify' on the broker unit and an
# instance of the drone template, with ExecStart pointed at the built
# programs (verify wants them to exist).  Any warning fails the test: an
# unknown or misspelled directive is only a warning to systemd.
#
#   tests/container/systemd.sh BUILD_DIR
#
# Exits 77 (SKIP) without systemd-analyze.
set -eu

top=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:?usage: systemd.sh BUILD_DIR}" && pwd)
command -v systemd-analyze >/dev/null 2>&1 ||
    { echo "systemd: *** SKIP: no systemd-analyze ***" >&2; exit 77; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/bin"
for p in broker drone; do
    ln -s "$build/$p/waggle-$p" "$tmp/bin/waggle-$p"
done
for f in waggle-broker.service waggle-drone@.service; do
    sed "s|/usr/local/bin/|$tmp/bin/|" "$top/deploy/systemd/$f" > "$tmp/$f"
done
ln -s waggle-drone@.service "$tmp/waggle-drone@main.service"
(cd "$tmp" && systemd-analyze verify --man=no ./waggle-broker.service \
    ./waggle-drone@main.service) > "$tmp/out" 2>&1 || rc=$?
if [ "${rc:-0}" != 0 ] || [ -s "$tmp/out" ]; then
    sed 's/^/systemd: /' "$tmp/out" >&2
    echo "systemd: FAIL: systemd-analyze verify complained" >&2
    exit 1
fi
# The broker's reload is SIGHUP; the hardening the README promises is set.
for want in 'ExecReload=/bin/kill -HUP $MAINPID' 'ProtectSystem=strict' \
            'NoNewPrivileges=yes' 'StateDirectory=waggle' 'User=waggle'; do
    grep -qxF "$want" "$top/deploy/systemd/waggle-broker.service" ||
        { echo "systemd: FAIL: waggle-broker.service lacks '$want'" >&2;
          exit 1; }
done
echo "systemd: ok (waggle-broker.service, waggle-drone@.service verified)"
