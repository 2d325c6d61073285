#!/bin/sh
# waggle-healthcheck: the image's HEALTHCHECK (deploy/Dockerfile) and the
# compose broker's healthcheck.
#
# In a broker container with WAGGLE_METRICS set (HOST:PORT, the broker's
# --metrics): healthy when GET /healthz answers 200 -- the broker's loop
# serves it and it asks the ledger (503 when the ledger does not answer).
# The slim image has no curl: the request goes over bash's /dev/tcp.
# Without WAGGLE_METRICS: healthy when the broker's port accepts a TCP
# connection, which proves the process lives and its socket is bound, not
# that its loop turns.  Either way, with WAGGLE_HEALTH_KEYS=DIR (a
# submitter bundle mounted like any key, e.g. from keygen --add submitter
# health) it also runs 'waggle-architect ping' through the ZeroMQ port.
# In any other container (drones, the architect): healthy while it runs.
# Exit 0 healthy, 1 unhealthy.
set -u

cmd=$(tr '\0' ' ' < /proc/1/cmdline 2>/dev/null || true)
case "$cmd" in
*waggle-broker*) ;;
*) exit 0 ;;
esac

# HOST of an endpoint as this container reaches it: a wildcard is loopback.
s_local_host() {
    case "$1" in
    ''|'*'|0.0.0.0) echo 127.0.0.1 ;;
    '[::]'|'::') echo ::1 ;;
    \[*\]) h=${1#[}; echo "${h%]}" ;;
    *) echo "$1" ;;
    esac
}

if [ -n "${WAGGLE_METRICS:-}" ]; then
    mport=${WAGGLE_METRICS##*:}
    mhost=$(s_local_host "${WAGGLE_METRICS%:*}")
    # The status line of GET /healthz ("HTTP/1.1 200 OK").
    # shellcheck disable=SC2016 # expanded by the inner bash
    status=$(timeout 5 bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        printf "GET /healthz HTTP/1.0\r\nHost: %s\r\n\r\n" "$0" >&3
        IFS= read -r line <&3 && printf "%s\n" "$line"' \
        "$mhost" "$mport" 2>/dev/null | tr -d '\r')
    case "$status" in
    "HTTP/1."[01]" 200 "*) ;;
    "")
        echo "waggle-healthcheck: no answer from http://$mhost:$mport/healthz"
        exit 1 ;;
    *)
        echo "waggle-healthcheck: http://$mhost:$mport/healthz: $status"
        exit 1 ;;
    esac
fi

# The port from WAGGLE_BIND (tcp://HOST:PORT; a wildcard host is checked
# on loopback).
bind=${WAGGLE_BIND:-tcp://127.0.0.1:7600}
port=${bind##*:}
case "$bind" in
tcp://*) ;;
*) exit 0 ;;  # ipc:// endpoints: nothing to connect to over TCP
esac
if [ -z "${WAGGLE_METRICS:-}" ] &&
   ! timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
    echo "waggle-healthcheck: nothing accepts connections on port $port"
    exit 1
fi
if [ -n "${WAGGLE_HEALTH_KEYS:-}" ]; then
    WAGGLE_BROKER="tcp://127.0.0.1:$port" exec timeout 8 waggle-architect \
        --keys "$WAGGLE_HEALTH_KEYS" --role submitter ping
fi
exit 0
