#!/bin/sh
# Installs what Waggle needs to build (and, with --test, to run its tests;
# with --bench, the peer queues bench/waggle-bench --peers compares with)
# from Debian/Ubuntu packages.  Uses sudo only when not root.  Does nothing
# when everything is already there, so it is safe to run every time.
set -eu

want_test=0 want_bench=0
for arg in "$@"; do
    case $arg in
    --test) want_test=1 ;;
    --bench) want_bench=1 ;;
    *) echo "install-deps: unknown option '$arg' (--test, --bench)" >&2
       exit 64 ;;
    esac
done

have_build() {
    command -v cc >/dev/null 2>&1 && command -v cmake >/dev/null 2>&1 &&
    command -v pkg-config >/dev/null 2>&1 &&
    pkg-config --exists libzmq libczmq sqlite3 libcurl libsodium jansson \
        ncursesw &&
    command -v musl-gcc >/dev/null 2>&1 &&
    { pkg-config --exists msgpack-c || pkg-config --exists msgpack; }
}

have_test() {
    command -v valgrind >/dev/null 2>&1 && command -v ip >/dev/null 2>&1 &&
    command -v iptables >/dev/null 2>&1 &&
    command -v debootstrap >/dev/null 2>&1 &&
    command -v tmux >/dev/null 2>&1 &&
    command -v podman >/dev/null 2>&1 && command -v runc >/dev/null 2>&1 &&
    command -v docker-compose >/dev/null 2>&1 &&
    { [ -x /usr/lib/cni/dnsname ] || [ -x /usr/lib/podman/aardvark-dns ]; } &&
    command -v systemd-analyze >/dev/null 2>&1 &&
    /usr/bin/python3 -c 'import zmq, msgpack, yaml' >/dev/null 2>&1
}

# The peer harness (../shared/bench/peers): servers and client libraries.
have_bench() {
    command -v redis-server >/dev/null 2>&1 &&
    command -v beanstalkd >/dev/null 2>&1 &&
    command -v gearmand >/dev/null 2>&1 && command -v python3 >/dev/null 2>&1 &&
    pkg-config --exists hiredis && [ -e /usr/include/libgearman/gearman.h ]
}

if have_build && { [ $want_test = 0 ] || have_test; } &&
   { [ $want_bench = 0 ] || have_bench; }; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps: no apt-get here; install by hand: a C11 compiler," \
         "cmake, pkg-config and the development files of libzmq, czmq," \
         "msgpack-c, sqlite3, libcurl, libsodium, jansson, ncurses" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
    SUDO=sudo
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# The first of NAMES this release has.  Package names differ between the
# releases the README promises:
#   msgpack-c  Debian 12: libmsgpack-dev (4.0)   Debian 13, Ubuntu 24.04:
#              libmsgpack-c-dev (6.0; libmsgpack-dev is then a transitional
#              package for it)
#   libzmq     libzmq3-dev everywhere so far (libzmq-dev in case it is renamed)
pick() {
    for p in "$@"; do
        if apt-cache show "$p" 2>/dev/null | grep -q '^Version:'; then
            echo "$p"
            return 0
        fi
    done
    echo "install-deps: none of '$*' is known to apt here" >&2
    exit 1
}
msgpack=$(pick libmsgpack-c-dev libmsgpack-dev)
zmq=$(pick libzmq3-dev libzmq-dev)
# musl-tools: waggle-task-init, the init of each confined task, is built
# static with musl when it can (drone/CMakeLists.txt: glibc's start-up
# costs ten times its exec on a VM); without it, with glibc.
pkgs="build-essential cmake pkg-config $zmq libczmq-dev $msgpack
      libsqlite3-dev libcurl4-openssl-dev libsodium-dev libjansson-dev
      libncurses-dev musl-tools"
if [ $want_test = 1 ]; then
    # Container names resolve on a Podman network: the CNI dnsname plugin
    # (Podman 4, Debian 12) or aardvark-dns (Podman 5's netavark).
    dns=$(pick golang-github-containernetworking-plugin-dnsname aardvark-dns)
    # debootstrap: tests/run.sh builds in a fresh Debian 13 root too;
    # python3-zmq and python3-msgpack: the Python client (tests/py); tmux:
    # e2e_watch drives the dashboard in it.
    # podman, runc, containernetworking-plugins: the container image test
    # (tests/container/image.sh; runc because crun fails here, PITFALLS.md);
    # docker-compose, python3-yaml, systemd: the offline checks of
    # deploy/compose.yaml, deploy/k8s and deploy/systemd.
    pkgs="$pkgs valgrind iproute2 iptables procps debootstrap python3-zmq
          python3-msgpack tmux podman runc containernetworking-plugins
          $dns docker-compose python3-yaml systemd"
fi
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
