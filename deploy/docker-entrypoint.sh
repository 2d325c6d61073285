#!/bin/sh
# waggle-entrypoint: runs the command given (waggle-broker, waggle-drone,
# waggle-architect ...), after one optional step for key directories that
# are mounted read-only with modes Waggle refuses.
#
# Waggle refuses a secret key readable by anyone but its owner (mode 0600).
# A Kubernetes Secret volume gives files owned by root, or group-readable
# (0440) with fsGroup, so a non-root broker cannot use them in place.  With
# WAGGLE_KEYS_FROM=DIR set, this script copies DIR into $WAGGLE_KEYS (a
# private directory, files 0600, owned by whoever runs the container) before
# starting the program, and again on every SIGHUP before passing the signal
# on: updating the Secret and sending SIGHUP to the container admits or
# revokes keys without a restart (deploy/README.md, "Keys and rotation").
# WAGGLE_KEYS_FROM may also name a tar file holding the key directory (how
# deploy/k8s puts a tree such as broker/allow/drone/*.key into one Secret
# key: a Secret cannot hold subdirectories).
# Without WAGGLE_KEYS_FROM it simply execs the command (compose mounts a
# host directory whose files already have the right owner and modes).
set -eu

# No command, or only options ('docker run waggle --verbose'): the broker.
if [ $# -eq 0 ] || [ "${1#-}" != "$1" ]; then
    set -- waggle-broker "$@"
fi

if [ -z "${WAGGLE_KEYS_FROM:-}" ]; then
    exec "$@"
fi

: "${WAGGLE_KEYS:=/run/waggle/keys}"
export WAGGLE_KEYS

# Copies the tree with cp -L (Kubernetes' ..data symlinks become files), or
# unpacks the tar file, then tightens modes: directories 0700, files 0600.
# The new tree is complete before it takes the old one's place.
sync_keys() {
    tmp="$WAGGLE_KEYS.new.$$"
    rm -rf "$tmp"
    mkdir -p "$(dirname "$WAGGLE_KEYS")"
    (umask 077 && mkdir "$tmp")
    if [ -f "$WAGGLE_KEYS_FROM" ]; then
        tar -C "$tmp" --no-same-owner --no-same-permissions \
            -xf "$WAGGLE_KEYS_FROM"
    else
        cp -RL "$WAGGLE_KEYS_FROM/." "$tmp/"
    fi
    find "$tmp" -name '..*' -prune -exec rm -rf {} +
    find "$tmp" -type d -exec chmod 0700 {} +
    find "$tmp" -type f -exec chmod 0600 {} +
    rm -rf "$WAGGLE_KEYS.old"
    [ ! -e "$WAGGLE_KEYS" ] || mv "$WAGGLE_KEYS" "$WAGGLE_KEYS.old"
    mv "$tmp" "$WAGGLE_KEYS"
    rm -rf "$WAGGLE_KEYS.old"
}

sync_keys
"$@" &
child=$!
trap 'sync_keys; kill -HUP "$child" 2>/dev/null || true' HUP
trap 'kill -TERM "$child" 2>/dev/null || true' TERM INT
# wait returns early (status > 128) when a trapped signal arrives: wait
# again until the program itself has exited, and exit with its status.
while :; do
    rc=0
    wait "$child" || rc=$?
    kill -0 "$child" 2>/dev/null || exit "$rc"
done
