#!/usr/bin/env bash
# chaos.sh: a long fault run, by hand — not part of tests/run.sh.
#
# Starts a broker and several drones on loopback with real keys and a real
# ledger, submits several plans (chains, fan-out/fan-in, flat), and while
# they run SIGKILLs and restarts the broker, SIGKILLs and restarts drones,
# and freezes drones with SIGSTOP past their lease.  At the end it checks
# the ledger itself:
#   - every plan succeeded and every task succeeded (nothing lost);
#   - at most one accepted attempt per task (nothing recorded twice);
#   - each accepted output is the token of the attempt it was recorded on
#     (no result recorded from a stale lease: a task prints its own token).
# Exit 0 when all hold.  Usage:
#   tests/chaos/chaos.sh [--tasks N] [--plans P] [--drones D] [--slots S]
#                        [--kill-every-s K] [--build DIR] [--keep]
set -euo pipefail

tasks=2000 plans=5 drones=4 slots=4 every=1 keep=0
top=$(cd "$(dirname "$0")/../.." && pwd)
build=$top/build
while [ $# -gt 0 ]; do
    case $1 in
    --tasks) tasks=$2; shift 2 ;;
    --plans) plans=$2; shift 2 ;;
    --drones) drones=$2; shift 2 ;;
    --slots) slots=$2; shift 2 ;;
    --kill-every-s) every=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "chaos: unknown option '$1' (see --help)" >&2; exit 64 ;;
    esac
done

dir=$(mktemp -d /tmp/waggle-chaos.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ep=tcp://127.0.0.1:$port
arch() { "$build/architect/waggle-architect" --broker "$ep" --keys "$dir/keys" "$@"; }
declare -a dpid
bpid=0

start_broker() {
    "$build/broker/waggle-broker" --bind "$ep" --db "$dir/ledger.db" \
        --keys "$dir/keys" --heartbeat-ms 200 --lease-ms 1000 \
        --backoff-base-ms 50 --backoff-cap-ms 500 \
        >"$dir/broker.out" 2>>"$dir/broker.log" &
    bpid=$!
    for _ in $(seq 100); do
        grep -q READY "$dir/broker.out" 2>/dev/null && return 0
        kill -0 $bpid 2>/dev/null || break
        sleep 0.1
    done
    echo "chaos: the broker did not start; see $dir/broker.log" >&2
    tail -5 "$dir/broker.log" >&2
    return 1
}
# A root drone runs tasks as waggle-task, which may not exist here and
# cannot enter $dir (0700): the chaos run is about faults, not isolation.
run_as=()
[ "$(id -u)" = 0 ] && run_as=(--run-as root)
start_drone() {
    "$build/drone/waggle-drone" --broker "$ep" --keys "$dir/keys" \
        --slots "$slots" --drain-s 1 "${run_as[@]}" 2>>"$dir/drone-$1.log" &
    dpid[$1]=$!
}
cleanup() {
    for p in "${dpid[@]}"; do kill -CONT "$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null || true; done
    [ $bpid -gt 0 ] && kill -KILL $bpid 2>/dev/null || true
    wait 2>/dev/null || true
    [ $keep = 1 ] || rm -rf "$dir"
}
trap cleanup EXIT

arch keygen "$dir/keys" >/dev/null
start_broker
for i in $(seq "$drones"); do start_drone "$i"; done

# Workplans: every task prints its own lease token; a few fail their first
# attempt so retries run too.
per=$((tasks / plans))
ids=()
for p in $(seq "$plans"); do
    python3 - "$p" "$per" >"$dir/plan-$p.json" <<'PY'
import json, sys
p, n = int(sys.argv[1]), int(sys.argv[2])
run = ["sh", "-c", 'sleep 0.$(( WAGGLE_TASK_TOKEN % 4 )); '
       'if [ "$WAGGLE_ATTEMPT" = 1 ] && [ $(( WAGGLE_TASK_TOKEN % 13 )) = 0 ]; '
       'then exit 3; fi; echo "$WAGGLE_TASK_TOKEN"']
tasks = []
shape = p % 3
for i in range(n):
    t = {"id": f"t{i}", "run": run}
    if shape == 0 and i > 0:                    # chains of 10
        if i % 10:
            t["needs"] = [f"t{i-1}"]
    elif shape == 1 and i > 0:                  # fan-out from t0, fan-in at the end
        t["needs"] = ["t0"] if i < n - 1 else [f"t{j}" for j in range(1, min(n - 1, 50))]
    tasks.append(t)
print(json.dumps({"name": f"chaos-{p}", "defaults": {"retries": 30, "timeout_s": 60},
                  "tasks": tasks}))
PY
    ids+=("$(arch submit "$dir/plan-$p.json" | tail -1)")
done
echo "chaos: $plans plans, $tasks tasks, $drones drones x $slots slots; dir $dir"

kills=0 dkills=0 freezes=0
done_all() {
    local id st
    for id in "${ids[@]}"; do
        st=$(arch --connect-timeout-ms 2000 status "$id" --json 2>/dev/null) || return 1
        grep -q '"state": *"running"' <<<"$st" && return 1
    done
    return 0
}
start=$(date +%s)
while ! done_all; do
    if [ $(( $(date +%s) - start )) -gt 900 ]; then
        echo "chaos: not finished after 900 s" >&2; exit 1
    fi
    sleep "$every"
    case $((RANDOM % 3)) in
    0) kill -KILL $bpid 2>/dev/null || true; wait $bpid 2>/dev/null || true
       kills=$((kills + 1)); start_broker ;;
    1) i=$((RANDOM % drones + 1)); kill -KILL "${dpid[$i]}" 2>/dev/null || true
       wait "${dpid[$i]}" 2>/dev/null || true; dkills=$((dkills + 1)); start_drone "$i" ;;
    2) i=$((RANDOM % drones + 1)); kill -STOP "${dpid[$i]}"; sleep 1.5
       kill -CONT "${dpid[$i]}"; freezes=$((freezes + 1)) ;;
    esac
    printf 'chaos: %ds, broker kills %d, drone kills %d, freezes %d\r' \
        $(( $(date +%s) - start )) $kills $dkills $freezes
done
echo
kill -TERM $bpid; wait $bpid 2>/dev/null || true; bpid=0

q() { sqlite3 -readonly "$dir/ledger.db" "$1"; }
fail=0
check() { # name, query that must print 0
    local got; got=$(q "$2")
    if [ "$got" = 0 ]; then echo "ok   $1"; else echo "FAIL $1: $got"; fail=1; fi
}
check "every plan succeeded" "SELECT count(*) FROM plans WHERE state != 'succeeded'"
check "every task succeeded (nothing lost)" "SELECT count(*) FROM tasks WHERE state != 'succeeded'"
check "one accepted attempt per task" "SELECT count(*) FROM (SELECT 1 FROM attempts WHERE outcome='succeeded' GROUP BY plan_id, tid HAVING count(*) > 1)"
check "no task without an accepted attempt" "SELECT count(*) FROM tasks t WHERE NOT EXISTS (SELECT 1 FROM attempts a WHERE a.plan_id=t.plan_id AND a.tid=t.tid AND a.outcome='succeeded')"
check "each accepted output is its own token" "SELECT count(*) FROM attempts WHERE outcome='succeeded' AND CAST(stdout AS TEXT) != token || char(10)"
echo "chaos: $(q "SELECT count(*) FROM tasks") tasks, $(q "SELECT count(*) FROM attempts") attempts" \
     "($(q "SELECT count(*) FROM attempts WHERE outcome='expired'") expired," \
     "$(q "SELECT count(*) FROM attempts WHERE outcome='failed'") failed," \
     "$(q "SELECT count(*) FROM attempts WHERE outcome='released'") released);" \
     "broker kills $kills, drone kills $dkills, freezes $freezes, $(( $(date +%s) - start )) s"
exit $fail
