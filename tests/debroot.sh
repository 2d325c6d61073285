#!/bin/sh
# Builds and tests Waggle inside a fresh Debian (or Ubuntu) root made with
# debootstrap, so one machine proves the build on releases it does not run:
# Debian 13 ships msgpack-c 6 and gcc 14, Debian 12 msgpack-c 4 and gcc 12.
#
#   tests/debroot.sh SUITE [STEP...]      e.g. tests/debroot.sh trixie unit
#
# SUITE: trixie, bookworm (Debian) or noble (Ubuntu 24.04; needs Ubuntu's
# archive keyring: the ubuntu-keyring package, or WAGGLE_KEYRING=FILE).
# STEPs, in the order given (default: unit):
#   unit        deploy/install-deps.sh, a -Werror build, ctest -L unit
#   e2e         deploy/install-deps.sh --test, a -Werror build, ctest -L e2e
#   quickstart  examples/quickstart.sh (its own build, without -Werror)
#   runsh       tests/run.sh (everything but this script's own step)
#
# The root is made anew on every run (nothing is cached) under
# $WAGGLE_ROOTS_DIR (default /var/tmp) and deleted afterwards unless
# WAGGLE_KEEP_ROOT=1.  The packages come from $WAGGLE_MIRROR (default: the
# Debian mirror in this machine's apt sources, else deb.debian.org).  The
# root's mounts live in a private mount namespace, so they vanish with it,
# and the build and tests run in their own network namespace (loopback
# only: no port clashes with the host).
#
# Exit status: 0 passed, 1 failed, 77 skipped (not root, no debootstrap,
# no namespaces, or the mirror cannot be reached) — said loudly on stderr.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
suite=${1:-}
[ $# -gt 0 ] && shift
steps=${*:-unit}

die() { echo "debroot: $*" >&2; exit 1; }
skip() {
    echo "debroot: *** SKIP: $* ***" >&2
    exit 77
}
now() { date +%s; }

case "$suite" in
bookworm|trixie) distro=debian ;;
noble) distro=ubuntu ;;
*) echo "usage: tests/debroot.sh bookworm|trixie|noble" \
        "[unit|e2e|quickstart|runsh]..." >&2
   exit 64 ;;
esac
for s in $steps; do
    case "$s" in
    unit|e2e|quickstart|runsh) ;;
    *) echo "debroot: unknown step '$s' (unit, e2e, quickstart, runsh)" >&2
       exit 64 ;;
    esac
done

# The Debian mirror apt already uses here (CI may reach only that one).
s_debian_mirror() {
    grep -h -o -E 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list \
        /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
        2>/dev/null | tr -d ' ' | sed 's|/$||' | head -n 1
}

if [ "$distro" = ubuntu ]; then
    mirror=${WAGGLE_MIRROR:-http://archive.ubuntu.com/ubuntu}
    keyring=${WAGGLE_KEYRING:-/usr/share/keyrings/ubuntu-archive-keyring.gpg}
    # Older debootstrap releases lack a 'noble' script; gutsy's fits all.
    script=/usr/share/debootstrap/scripts/gutsy
    components=main,universe
else
    mirror=${WAGGLE_MIRROR:-$(s_debian_mirror)}
    mirror=${mirror:-http://deb.debian.org/debian}
    keyring=${WAGGLE_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
    script=""
    components=main
fi

[ "$(id -u)" = 0 ] || skip "debootstrap and chroot need root"
command -v debootstrap >/dev/null 2>&1 ||
    skip "debootstrap is not installed (apt-get install debootstrap)"
[ -r "$keyring" ] || skip "no archive keyring '$keyring' for $suite"
unshare --mount true 2>/dev/null ||
    skip "cannot make a mount namespace here"
# The tests get a network of their own when the host can bring its
# loopback up; otherwise they share the host's.
ip=$(command -v ip || true)
if [ -n "$ip" ] && ! unshare --net "$ip" link set lo up 2>/dev/null; then
    ip=""
fi
if command -v wget >/dev/null 2>&1; then
    wget -q -T 15 -t 2 -O /dev/null "$mirror/dists/$suite/Release" ||
        skip "mirror '$mirror' cannot be reached for $suite"
fi

base=${WAGGLE_ROOTS_DIR:-/var/tmp}
mkdir -p "$base"
root=$(mktemp -d "$base/waggle-$suite.XXXXXX")
chmod 755 "$root"  # apt downloads as _apt, who must get in
# Refuses to delete a root that still has something mounted in it (that
# would delete through a bind mount of /dev); the namespaces make that
# impossible unless the kernel kept a mount alive, so say so and keep it.
s_cleanup() {
    if grep -q -E " $root(/| )" /proc/self/mounts; then
        echo "debroot: '$root' still has mounts; not deleting it" >&2
    elif [ "${WAGGLE_KEEP_ROOT:-0}" = 1 ]; then
        echo "debroot: kept the root in '$root'" >&2
    else
        rm -rf --one-file-system "$root"
    fi
}
trap s_cleanup EXIT
trap 'exit 1' INT TERM

t0=$(now)
echo "==> debootstrap $suite from $mirror into $root"
# In a mount namespace of its own, so the /proc it mounts in the root goes
# away with it even when it is interrupted.
# shellcheck disable=SC2086
unshare --mount --propagation private debootstrap --variant=minbase \
    --components="$components" --keyring="$keyring" \
    "$suite" "$root" "$mirror" $script >"$root.debootstrap.log" 2>&1 || {
    tail -n 20 "$root.debootstrap.log" >&2
    rm -f "$root.debootstrap.log"
    die "debootstrap $suite failed"
}
rm -f "$root.debootstrap.log"
if [ "$distro" = ubuntu ]; then
    printf 'deb %s %s main universe\ndeb %s %s-updates main universe\n' \
        "$mirror" "$suite" "$mirror" "$suite" >"$root/etc/apt/sources.list"
fi
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
mkdir -p "$root/src"
tar -C "$top" --exclude=./.git --exclude='./build*' --exclude=./.swarm \
    --exclude=./Testing -cf - . | tar -C "$root/src" -xf -
t1=$(now)
echo "==> root ready in $((t1 - t0)) s"

# Runs a shell command in the root with /proc, /sys and /dev mounted in a
# private mount namespace.  MODE 'net' also gives it a network namespace
# with loopback alone (builds and tests); 'host' keeps the host's network
# (apt needs the mirror).
s_in_root() {
    mode=$1
    shift
    net=""
    if [ "$mode" = net ] && [ -n "$ip" ]; then
        net=--net
    fi
    unshare --mount --propagation private $net sh -c '
        set -e
        r=$1 ip=$2
        shift 2
        mount --bind "$r" "$r"
        mount -t proc proc "$r/proc"
        mount -t sysfs sys "$r/sys"
        mount --rbind /dev "$r/dev"
        [ -z "$ip" ] || "$ip" link set lo up
        # The root becomes the namespace'"'"'s own root (pivot_root, not a
        # bare chroot): ip netns exec remounts "/", and a task in a PID
        # namespace of its own (the drone'"'"'s runner) must see paths as
        # they are, not as seen from outside a chroot.
        mkdir -p "$r/.oldroot"
        cd "$r"
        pivot_root . .oldroot
        umount -l /.oldroot 2>/dev/null || true
        exec chroot / /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
            HOME=/root LANG=C.UTF-8 WAGGLE_SKIP_TRIXIE=1 sh -c "$1"
    ' sh "$root" "${net:+$ip}" "$1"
}

s_deps() {
    s_in_root host "cd /src && deploy/install-deps.sh $1"
}

s_build() {
    s_in_root net '
        cd /src
        echo "    $(cc --version | head -n 1)"
        cmake -S . -B build -DWAGGLE_WERROR=ON | grep -E "msgpack-c" |
            sed "s/^-- /    /"
        cmake --build build -j"$(nproc)" >/dev/null'
}

built=""
rc=0
for s in $steps; do
    ts=$(now)
    echo "==> $suite: $s"
    case "$s" in
    unit)
        s_deps "" && { [ -n "$built" ] || s_build; } && built=1 &&
            s_in_root net \
                'cd /src/build && ctest -L unit -j2 --output-on-failure' ||
            rc=1 ;;
    e2e)
        s_deps --test && { [ -n "$built" ] || s_build; } && built=1 &&
            s_in_root net \
                'cd /src/build && ctest -L e2e --output-on-failure' ||
            rc=1 ;;
    quickstart)
        s_deps "" &&
            s_in_root net 'cd /src &&
                examples/quickstart.sh' || rc=1 ;;
    runsh)
        s_deps --test &&
            s_in_root net 'cd /src && tests/run.sh' ||
            rc=1 ;;
    esac
    echo "==> $suite: $s $([ $rc = 0 ] && echo passed || echo FAILED)" \
         "in $(($(now) - ts)) s"
    [ $rc = 0 ] || break
done
echo "==> $suite: $([ $rc = 0 ] && echo passed || echo FAILED) in" \
     "$(($(now) - t0)) s in all"
exit $rc
