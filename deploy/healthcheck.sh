#!/bin/sh
# waggle-healthcheck: the image's HEALTHCHECK (deploy/Dockerfile).
#
# In a broker container: healthy when the broker's port accepts a TCP
# connection (bash's /dev/tcp; no key needed, nothing baked in).  That
# proves the process lives and its socket is bound, not that its loop
# turns: with WAGGLE_HEALTH_KEYS=DIR (a submitter bundle mounted like any
# key, e.g. from keygen --add submitter health) it also runs
# 'waggle-architect ping', a request answered by the broker's loop.
# In any other container (drones, the architect): healthy while it runs.
# Exit 0 healthy, 1 unhealthy.
set -u

cmd=$(tr '\0' ' ' < /proc/1/cmdline 2>/dev/null || true)
case "$cmd" in
*waggle-broker*) ;;
*) exit 0 ;;
esac

# The port from WAGGLE_BIND (tcp://HOST:PORT; a wildcard host is checked
# on loopback).
bind=${WAGGLE_BIND:-tcp://127.0.0.1:7600}
port=${bind##*:}
case "$bind" in
tcp://*) ;;
*) exit 0 ;;  # ipc:// endpoints: nothing to connect to over TCP
esac
if ! timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
    echo "waggle-healthcheck: nothing accepts connections on port $port"
    exit 1
fi
if [ -n "${WAGGLE_HEALTH_KEYS:-}" ]; then
    WAGGLE_BROKER="tcp://127.0.0.1:$port" exec timeout 8 waggle-architect \
        --keys "$WAGGLE_HEALTH_KEYS" --role submitter ping
fi
exit 0
