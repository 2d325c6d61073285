#!/bin/sh
# Installs what Waggle needs to build (and, with --test, to run its tests)
# from Debian/Ubuntu packages.  Uses sudo only when not root.  Does nothing
# when everything is already there, so it is safe to run every time.
set -eu

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

have_build() {
    command -v cc >/dev/null 2>&1 && command -v cmake >/dev/null 2>&1 &&
    command -v pkg-config >/dev/null 2>&1 &&
    pkg-config --exists libzmq libczmq sqlite3 libcurl libsodium jansson &&
    { pkg-config --exists msgpack-c || pkg-config --exists msgpack; }
}

have_test() {
    command -v valgrind >/dev/null 2>&1 && command -v ip >/dev/null 2>&1 &&
    command -v iptables >/dev/null 2>&1 &&
    /usr/bin/python3 -c 'import zmq, msgpack' >/dev/null 2>&1
}

if have_build && { [ $want_test = 0 ] || have_test; }; then
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
# msgpack-c's C library is libmsgpack-c-dev on newer releases (Ubuntu 24.04)
# and part of libmsgpack-dev on Debian 12.
msgpack=libmsgpack-dev
if apt-cache show libmsgpack-c-dev >/dev/null 2>&1; then
    msgpack=libmsgpack-c-dev
fi
pkgs="build-essential cmake pkg-config libzmq3-dev libczmq-dev $msgpack
      libsqlite3-dev libcurl4-openssl-dev libsodium-dev libjansson-dev
      libncurses-dev"
if [ $want_test = 1 ]; then
    pkgs="$pkgs valgrind iproute2 iptables procps python3-zmq python3-msgpack"
fi
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
