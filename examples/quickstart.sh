#!/bin/sh
# Waggle quick start: installs what it needs, builds, and runs a real swarm
# on loopback — keys, one broker, three drones — then submits
# examples/wordfreq.json (a DAG with fan-out and fan-in), follows it, prints
# the results and shuts everything down.  Everything it makes lives in
# .swarm/ at the top of the checkout.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
plan_file=${1:-examples/wordfreq.json}

echo "==> installing build dependencies (if missing)"
deploy/install-deps.sh
echo "==> building"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null

bin=$top/build
run=$top/.swarm
rm -rf "$run"
mkdir -p "$run"
port=${WAGGLE_QUICKSTART_PORT:-7600}
endpoint=tcp://127.0.0.1:$port
arch="$bin/architect/waggle-architect --broker $endpoint --keys $run/keys"

pids=""
cleanup() {
    # Drones first (they hand back or finish work), then the broker.
    for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
    for p in $pids; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

echo "==> making keys in $run/keys"
$arch keygen "$run/keys" >/dev/null

echo "==> starting the broker on $endpoint (log: .swarm/broker.log)"
mkfifo "$run/ready"
"$bin/broker/waggle-broker" --bind "$endpoint" --db "$run/ledger.db" \
    --keys "$run/keys" >"$run/ready" 2>"$run/broker.log" &
broker=$!
read -r ready <"$run/ready" || true
case "$ready" in
READY*) ;;
*) echo "the broker did not start:" >&2; cat "$run/broker.log" >&2; exit 1 ;;
esac

# A root drone runs its tasks as the user waggle-task (README "Isolation"):
# make it if it is missing.  If that user cannot read this checkout (under
# /root, say), the demo runs its tasks as root instead, and says so.
run_as=""
if [ "$(id -u)" = 0 ]; then
    if ! id waggle-task >/dev/null 2>&1; then
        echo "==> creating the task user waggle-task"
        useradd --system --no-create-home --shell /usr/sbin/nologin waggle-task
    fi
    if ! runuser -u waggle-task -- test -r "$top/README.md" 2>/dev/null; then
        echo "==> note: waggle-task cannot read $top; this demo runs its" \
             "tasks as root (--run-as root)"
        run_as="--run-as root"
    fi
fi

for i in 1 2 3; do
    # shellcheck disable=SC2086 # $run_as is empty or two words
    "$bin/drone/waggle-drone" --broker "$endpoint" --keys "$run/keys" \
        --slots 2 --workdir "$top" $run_as 2>"$run/drone-$i.log" &
    pids="$pids $!"
done
pids="$pids $broker"
echo "==> three drones started (logs: .swarm/drone-N.log)"

plan=$($arch submit "$plan_file")
echo "==> submitted $plan_file as plan $plan; following it"
status=0
$arch wait "$plan" --timeout 120 || status=$?

echo
$arch status "$plan"
echo
echo "==> result of the last task:"
$arch output "$plan" report || true
echo
if [ "$status" = 0 ]; then
    echo "==> plan $plan succeeded; shutting the swarm down"
else
    echo "==> plan $plan did not succeed (wait exited $status); see .swarm/*.log"
fi
exit "$status"
