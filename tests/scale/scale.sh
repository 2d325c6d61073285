#!/usr/bin/env bash
# scale.sh: Waggle the way a big user and an adversary use it, by hand —
# not part of tests/run.sh (tests/e2e/test_scale.c holds the CI-sized
# versions).  Real processes on loopback, real keys, a real ledger; each
# scenario prints what it measured as "scale: NAME value" lines and ends
# with "ok"/"FAIL" checks made on the ledger itself.  Exit 0 when all hold.
#
# Usage: tests/scale/scale.sh [OPTIONS] SCENARIO...
# Scenarios:
#   plans    --plans P small plans (--tasks T each) submitted at once by
#            --architects A processes, run by --drones D; every plan ends
#            succeeded; how long the overview takes while they run
#   starve   a --big N task plan submitted first, then a 5-task plan: how
#            long the small one takes (round-robin across plans)
#   drones   --drones D drone processes (1 slot): connect storm, all get
#            work, half SIGKILLed at once; nothing lost or doubled
#   big      a --big N task plan: submit, status (paged), broker RSS; cancel
#            one task and retry it; cancel the plan while a ping loop
#            measures the broker's stall and another plan's leases run on
#   hostile  deep JSON, 100k needs edges, a ~64 MiB workplan, one over the
#            frame limit, a submit storm, idempotency races (needs python3
#            with zmq and msgpack: Debian's python3-zmq, python3-msgpack)
#   restart  --drones D drones hold leases; the broker is SIGKILLed and
#            restarted: how long until all are back; no lease lost
#   all      every scenario above, with its defaults
# Options:
#   --plans P (100)  --tasks T (10)  --architects A (8)  --drones D (100)
#   --big N (100000) --build DIR (./build)  --keep (keep the directory)
set -euo pipefail

plans=100 tasks=10 archs=8 drones=100 big=100000 keep=0
top=$(cd "$(dirname "$0")/../.." && pwd)
build=$top/build
scenarios=()
while [ $# -gt 0 ]; do
    case $1 in
    --plans) plans=$2; shift 2 ;;
    --tasks) tasks=$2; shift 2 ;;
    --architects) archs=$2; shift 2 ;;
    --drones) drones=$2; shift 2 ;;
    --big) big=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    plans|starve|drones|big|hostile|restart) scenarios+=("$1"); shift ;;
    all) scenarios+=(plans starve drones big hostile restart); shift ;;
    *) echo "scale: unknown argument '$1' (see --help)" >&2; exit 64 ;;
    esac
done
[ ${#scenarios[@]} -gt 0 ] || { echo "scale: name a scenario (see --help)" >&2; exit 64; }

dir=$(mktemp -d /tmp/waggle-scale.XXXXXX)
# Tasks run isolated (as waggle-task when the drone is root): they need a
# directory they may enter; nothing else of $dir is theirs to read.
mkdir "$dir/work"
chmod 711 "$dir"
chmod 1777 "$dir/work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ep=tcp://127.0.0.1:$port
pypath=/usr/bin/python3
bpid=0
dpids=()
fail=0

arch() { "$build/architect/waggle-architect" --broker "$ep" --keys "$dir/keys" "$@"; }
now_ms() { date +%s%3N; }
q() { sqlite3 -readonly "$dir/ledger.db" "$1"; }
say() { echo "scale: $*"; }
check() { # name, query that must print 0
    local got; got=$(q "$2")
    if [ "$got" = 0 ]; then echo "ok   $1"; else echo "FAIL $1: $got"; fail=1; fi
}
expect() { # name, condition (a shell test)
    if eval "$2"; then echo "ok   $1"; else echo "FAIL $1 ($2)"; fail=1; fi
}
broker_stats() {
    local rss cpu
    rss=$(awk '/VmHWM/ {print $2}' /proc/$bpid/status)
    cpu=$(ps -o cputime= -p $bpid | tr -d ' ')
    say "broker peak RSS ${rss} kB, CPU $cpu"
}

start_broker() { # extra args
    : >"$dir/broker.out"
    "$build/broker/waggle-broker" --bind "$ep" --db "$dir/ledger.db" \
        --keys "$dir/keys" "$@" >"$dir/broker.out" 2>>"$dir/broker.log" &
    bpid=$!
    for _ in $(seq 200); do
        grep -q READY "$dir/broker.out" 2>/dev/null && return 0
        kill -0 $bpid 2>/dev/null || break
        sleep 0.05
    done
    echo "scale: the broker did not start; see $dir/broker.log" >&2
    return 1
}
start_drones() { # count slots [extra args]
    local n=$1 slots=$2; shift 2
    for i in $(seq "$n"); do
        nice "$build/drone/waggle-drone" --broker "$ep" --keys "$dir/keys" \
            --slots "$slots" --workdir "$dir/work" --drain-s 1 "$@" \
            2>>"$dir/drones.log" &
        dpids+=($!)
    done
}
stop_all() {
    {
        for p in "${dpids[@]}"; do kill -CONT "$p"; kill -KILL "$p"; wait "$p"; done
        [ $bpid -gt 0 ] && { kill -TERM $bpid; wait $bpid; }
    } 2>/dev/null || true
    dpids=()
    bpid=0
}
fresh() { # a new ledger for the next scenario
    stop_all
    rm -f "$dir"/ledger.db*
}
cleanup() {
    stop_all
    [ $keep = 1 ] && echo "scale: kept $dir" || rm -rf "$dir"
}
trap cleanup EXIT

# Connected drones, from the overview.
n_drones() {
    arch --json status 2>/dev/null |
        python3 -c 'import json,sys; print(len(json.load(sys.stdin)["drones"]))' 2>/dev/null || echo 0
}
# Waits until the overview lists n drones; prints how long it took (ms).
wait_drones() { # n timeout_s
    local t0; t0=$(now_ms)
    while [ "$(n_drones)" -lt "$1" ]; do
        [ $(( $(now_ms) - t0 )) -gt $(( $2 * 1000 )) ] && { echo -1; return; }
        sleep 0.2
    done
    echo $(( $(now_ms) - t0 ))
}
# A flat plan: name n [retries] [argv as JSON]
flat() {
    python3 - "$@" <<'PY'
import json, sys
name, n = sys.argv[1], int(sys.argv[2])
retries = int(sys.argv[3]) if len(sys.argv) > 3 else 2
run = json.loads(sys.argv[4]) if len(sys.argv) > 4 else ["true"]
print(json.dumps({"name": name, "defaults": {"retries": retries},
                  "tasks": [{"id": f"t{i}", "run": run} for i in range(n)]}))
PY
}
# The largest ping latency (ms) seen in a file of "ping N" lines.
ping_loop() { # file
    while :; do
        local t0; t0=$(now_ms)
        arch --connect-timeout-ms 30000 ping >/dev/null 2>&1 || true
        echo "ping $(( $(now_ms) - t0 ))"
        sleep 0.05
    done >"$1"
}
exactly_once() {
    check "one accepted attempt per task" "SELECT count(*) FROM (SELECT 1 FROM attempts WHERE outcome='succeeded' GROUP BY plan_id, tid HAVING count(*) > 1)"
}

s_plans() {
    say "--- plans: $plans plans x $tasks tasks, $archs architects, $drones drones"
    start_broker
    start_drones "$drones" 1
    flat p "$tasks" 2 '["sh","-c","sleep 0.1"]' >"$dir/small.json"
    local t0 per worst=0 t subs=()
    t0=$(now_ms)
    for a in $(seq "$archs"); do
        per=$(( plans / archs + (a <= plans % archs ? 1 : 0) ))
        ( for _ in $(seq "$per"); do arch submit "$dir/small.json" >/dev/null || echo "submit failed" >&2; done ) &
        subs+=($!)
    done
    wait "${subs[@]}" || true
    say "submitted $(q 'SELECT count(*) FROM plans') plans in $(( $(now_ms) - t0 )) ms"
    while [ "$(q "SELECT count(*) FROM plans WHERE state='running'")" != 0 ]; do
        t=$(now_ms); arch status >/dev/null; t=$(( $(now_ms) - t ))
        [ $t -gt $worst ] && worst=$t
        [ $(( $(now_ms) - t0 )) -gt 600000 ] && break
        sleep 0.5
    done
    say "all plans ended after $(( $(now_ms) - t0 )) ms; slowest overview ${worst} ms"
    local listed; listed=$(arch --json status | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["plans"]))')
    say "overview lists $listed plans"
    broker_stats
    check "every plan succeeded" "SELECT count(*) FROM plans WHERE state != 'succeeded'"
    exactly_once
    fresh
}

s_starve() {
    say "--- starve: a $big-task plan first, then 5 tasks"
    start_broker
    flat big "$big" >"$dir/big.json"
    flat small 5 >"$dir/small.json"
    local t0; t0=$(now_ms)
    local p1; p1=$(arch submit "$dir/big.json")
    say "submitted $big tasks in $(( $(now_ms) - t0 )) ms"
    start_drones 4 2
    sleep 2
    t0=$(now_ms)
    local p2; p2=$(arch submit "$dir/small.json")
    arch wait "$p2" --timeout 120 2>/dev/null || true
    say "small plan took $(( $(now_ms) - t0 )) ms while the big one ran"
    expect "the small plan succeeded" "[ \"\$(q \"SELECT state FROM plans WHERE id=$p2\")\" = succeeded ]"
    expect "the big plan still runs" "[ \"\$(q \"SELECT state FROM plans WHERE id=$p1\")\" = running ]"
    broker_stats
    fresh
}

s_drones() {
    say "--- drones: $drones drone processes, 1 slot each"
    start_broker --heartbeat-ms 500 --lease-ms 3000
    local t0 took; t0=$(now_ms)
    start_drones "$drones" 1
    took=$(wait_drones "$drones" 120)
    say "all $drones drones listed after $took ms"
    flat many $(( drones * 3 )) 3 '["sh","-c","sleep 2; echo $WAGGLE_TASK_TOKEN"]' >"$dir/many.json"
    local p; p=$(arch submit "$dir/many.json")
    t0=$(now_ms)
    while [ "$(q "SELECT count(*) FROM tasks WHERE plan_id=$p AND state='leased'")" -lt "$drones" ]; do
        [ $(( $(now_ms) - t0 )) -gt 60000 ] && break
        sleep 0.1
    done
    say "$(q "SELECT count(*) FROM tasks WHERE plan_id=$p AND state='leased'") leased after $(( $(now_ms) - t0 )) ms"
    local half=$(( drones / 2 ))
    { kill -KILL "${dpids[@]:0:$half}"; wait "${dpids[@]:0:$half}"; } 2>/dev/null || true
    say "SIGKILLed $half drones"
    t0=$(now_ms)
    arch wait "$p" --timeout 300 2>/dev/null || true
    say "plan ended $(( $(now_ms) - t0 )) ms after the kill"
    say "overview lists $(n_drones) drones after it"
    say "attempts: $(q "SELECT group_concat(outcome || '=' || n, ' ') FROM (SELECT outcome, count(*) n FROM attempts GROUP BY outcome)")"
    broker_stats
    check "every task succeeded" "SELECT count(*) FROM tasks WHERE state != 'succeeded'"
    exactly_once
    check "each accepted output is its own token" "SELECT count(*) FROM attempts WHERE outcome='succeeded' AND CAST(stdout AS TEXT) != token || char(10)"
    fresh
}

s_big() {
    say "--- big: a $big-task plan"
    start_broker
    start_drones 4 2 --tags side
    flat big "$big" 2 '["sleep","0.2"]' >"$dir/big.json"
    local t0 p side
    t0=$(now_ms); p=$(arch submit "$dir/big.json")
    say "submit: $(( $(now_ms) - t0 )) ms, $(stat -c %s "$dir/big.json") bytes"
    t0=$(now_ms); arch status "$p" | wc -l >"$dir/lines"
    say "status (text): $(( $(now_ms) - t0 )) ms, $(cat "$dir/lines") lines"
    t0=$(now_ms); arch status "$p" --json | wc -c >"$dir/bytes"
    say "status --json: $(( $(now_ms) - t0 )) ms, $(cat "$dir/bytes") bytes"
    t0=$(now_ms); arch wait "$p" --timeout 1 >/dev/null 2>&1 || true
    say "wait --timeout 1: $(( $(now_ms) - t0 )) ms"
    # Another plan whose tasks outlive the cancel: their leases must hold.
    python3 -c 'import json; print(json.dumps({"name":"side","tasks":[{"id":"s%d"%i,"requires":["side"],"run":["sleep","4"]} for i in range(8)]}))' >"$dir/side.json"
    side=$(arch submit "$dir/side.json")
    sleep 2
    arch cancel "$p" "t$((big - 1))" >/dev/null
    arch retry "$p" "t$((big - 1))" >/dev/null
    expect "a cancelled task can be retried" "[ \"\$(q \"SELECT state FROM tasks WHERE plan_id=$p AND tid='t$((big - 1))'\")\" != cancelled ]"
    ping_loop "$dir/pings" & local pl=$!
    sleep 1
    t0=$(now_ms); arch --connect-timeout-ms 60000 cancel "$p" >/dev/null
    say "cancel of the plan: $(( $(now_ms) - t0 )) ms"
    sleep 1; kill $pl; wait $pl 2>/dev/null || true
    say "slowest ping around the cancel: $(sort -k2 -n "$dir/pings" | tail -1 | cut -d' ' -f2) ms"
    arch wait "$side" --timeout 60 >/dev/null 2>&1 || true
    broker_stats
    check "the side plan's leases survived the cancel" "SELECT count(*) FROM attempts WHERE plan_id=$side AND outcome != 'succeeded'"
    check "no task of the big plan left unfinished" "SELECT count(*) FROM tasks WHERE plan_id=$p AND state NOT IN ('succeeded','cancelled')"
    exactly_once
    fresh
}

s_hostile() {
    say "--- hostile submitters"
    if ! $pypath -c 'import zmq, msgpack' 2>/dev/null; then
        say "skipped: $pypath has no zmq/msgpack"; return
    fi
    start_broker
    start_drones 2 2
    PYTHONPATH=$top/tests/py $pypath - "$ep" "$dir/keys" <<'PY' | tee "$dir/hostile.out"
import json, sys, threading, time
import waggle_client as w
ep, keys = sys.argv[1], sys.argv[2]
bundle = w.load_bundle(keys, 'operator')
c = w.Console(ep, bundle)
def submit(name, text, timeout_ms=180000, **kw):
    t = time.monotonic()
    try:
        r = c.call('SUBMIT', 'SUBMIT_OK', timeout_ms=timeout_ms, workplan=text, **kw)
        out = 'plan %s' % r['plan']
    except Exception as e:
        out = 'refused: %s' % str(e).splitlines()[0][:120]
    print('scale: %-14s %7.0f ms  %s' % (name, (time.monotonic() - t) * 1000, out), flush=True)
submit('deep-json', '{"name":"x","tasks":[{"id":"a","run":["true"],"env":{"A":' + '[' * 200000 + ']' * 200000 + '}}]}')
n = 100000
t = [{"id": f"t{i}", "run": ["true"]} for i in range(n - 1)]
t.append({"id": "sink", "run": ["true"], "needs": [f"t{i}" for i in range(n - 1)]})
submit('needs-100k', json.dumps({"name": "fan-in", "tasks": t}))
t = [{"id": f"t{i}", "run": ["true"], "needs": [f"t{j}" for j in range(i)]} for i in range(1450)]
submit('edges-1.05M', json.dumps({"name": "quad", "tasks": t}))
t = [{"id": f"t{i}", "run": ["echo", "x" * 600]} for i in range(100000)]
s = json.dumps({"name": "near-limit", "tasks": t})
submit('%dMiB' % (len(s) >> 20), s)
# Over the frame limit the broker's socket drops the connection (PROTOCOL.md
# 10): no reply, and the next request on a new connection is served.
submit('over-limit', s + ' ' * (65 << 20), timeout_ms=10000)
c.close()
c = w.Console(ep, bundle)
submit('after-it', json.dumps({"name": "x", "tasks": [{"id": "a", "run": ["true"]}]}))
submit('argv-1M-items', json.dumps({"name": "x", "tasks": [{"id": "a", "run": ["true"] * 1000000}]}))
# A storm: 16 threads, each its own connection, 25 submits each.
small = json.dumps({"name": "storm", "tasks": [{"id": "a", "run": ["true"]}]})
errs = []
def storm():
    cc = w.Console(ep, bundle)
    for _ in range(25):
        try:
            cc.call('SUBMIT', 'SUBMIT_OK', timeout_ms=60000, workplan=small)
        except Exception as e:
            errs.append(str(e))
    cc.close()
t0 = time.monotonic()
th = [threading.Thread(target=storm) for _ in range(16)]
[x.start() for x in th]; [x.join() for x in th]
print('scale: storm of 400 submits: %.0f ms, %d errors' % ((time.monotonic() - t0) * 1000, len(errs)), flush=True)
# Idempotency races: 8 connections submit with the same key at once,
# half of them a different workplan.
other = json.dumps({"name": "other", "tasks": [{"id": "b", "run": ["true"]}]})
got = []
def race(text):
    cc = w.Console(ep, bundle)
    try:
        got.append(('ok', cc.call('SUBMIT', 'SUBMIT_OK', timeout_ms=60000, workplan=text, idempotency_key='race')['plan'], text == small))
    except Exception as e:
        got.append(('err', str(e)[:60], text == small))
    cc.close()
th = [threading.Thread(target=race, args=(small if i % 2 else other,)) for i in range(8)]
[x.start() for x in th]; [x.join() for x in th]
plans = {g[1] for g in got if g[0] == 'ok'}
kinds = {g[2] for g in got if g[0] == 'ok'}
print('scale: idempotency race: %d accepted, plans %s, %d refused' % (sum(g[0] == 'ok' for g in got), sorted(plans), sum(g[0] == 'err' for g in got)))
print('scale: idempotency %s' % ('one plan' if len(plans) == 1 and len(kinds) == 1 else 'BROKEN'))
PY
    expect "idempotency race gave one plan" "grep -q 'idempotency one plan' '$dir/hostile.out'"
    expect "the over-limit workplan made no plan" "! grep -q 'over-limit.*plan' '$dir/hostile.out'"
    expect "the broker serves the next submit" "grep -q 'after-it.*plan' '$dir/hostile.out'"
    expect "argv of 1M items refused at submit" "grep -q 'argv-1M-items.*refused' '$dir/hostile.out'"
    expect "the broker is alive" "kill -0 $bpid"
    broker_stats
    fresh
}

s_restart() {
    say "--- restart: $drones drones holding leases, broker SIGKILLed"
    start_broker --heartbeat-ms 500 --lease-ms 4000
    start_drones "$drones" 1
    local took; took=$(wait_drones "$drones" 120)
    say "all $drones drones listed after $took ms"
    flat long "$drones" 3 '["sh","-c","sleep 8; echo $WAGGLE_TASK_TOKEN"]' >"$dir/long.json"
    local p t0; p=$(arch submit "$dir/long.json")
    t0=$(now_ms)
    while [ "$(q "SELECT count(*) FROM tasks WHERE plan_id=$p AND state='leased'")" -lt "$drones" ]; do
        [ $(( $(now_ms) - t0 )) -gt 60000 ] && break
        sleep 0.1
    done
    kill -KILL $bpid; wait $bpid 2>/dev/null || true
    t0=$(now_ms)
    start_broker --heartbeat-ms 500 --lease-ms 4000
    say "broker READY after $(( $(now_ms) - t0 )) ms"
    took=$(wait_drones "$drones" 120)
    say "all $drones drones back after $(( $(now_ms) - t0 )) ms"
    arch wait "$p" --timeout 120 2>/dev/null || true
    say "attempts: $(q "SELECT group_concat(outcome || '=' || n, ' ') FROM (SELECT outcome, count(*) n FROM attempts GROUP BY outcome)")"
    broker_stats
    check "no lease lost in the restart" "SELECT count(*) FROM attempts WHERE outcome != 'succeeded'"
    check "every task succeeded" "SELECT count(*) FROM tasks WHERE state != 'succeeded'"
    exactly_once
    fresh
}

arch keygen "$dir/keys" >/dev/null
for s in "${scenarios[@]}"; do "s_$s"; done
exit $fail
