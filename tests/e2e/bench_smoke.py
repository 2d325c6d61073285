#!/usr/bin/env python3
"""bench_smoke: bench/waggle-bench runs in both modes and its report is sane.

Small N, every shape in coordination mode, a flat plan with real drones,
and `--targets --small` (every issue-9 target gets a number).
Checks what the report says, never how fast: every run ok (every task
succeeded, one accepted attempt each), every number positive, the JSON
parses.  Usage: bench_smoke.py SOURCE_DIR BUILD_DIR.
"""
import json
import subprocess
import sys

src, build = sys.argv[1], sys.argv[2]
bench = [sys.executable, f"{src}/bench/waggle-bench", "--build", build,
         "--json"]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print(f"FAIL: {what}", file=sys.stderr)


def run(args, want_runs):
    r = subprocess.run(bench + args, capture_output=True, text=True,
                       timeout=300)
    sys.stderr.write(r.stderr[-2000:])
    check(r.returncode == 0, f"{args}: exit {r.returncode}")
    try:
        rep = json.loads(r.stdout)
    except ValueError as e:
        check(False, f"{args}: the report is not JSON: {e}")
        return None
    runs = rep.get("runs", [])
    check(len(runs) == want_runs, f"{args}: {len(runs)} runs, not {want_runs}")
    for x in runs:
        name = f"{x.get('mode')}/{x.get('shape')}"
        check(x.get("ok") is True, f"{name}: not ok: {x.get('error')}")
        check(x.get("states") == {"succeeded": x["tasks"]},
              f"{name}: task states {x.get('states')}")
        for k in ("tasks_per_s", "drain_tasks_per_s", "broker_peak_rss_kb",
                  "commits", "commits_per_s", "transitions",
                  "transitions_per_commit", "wall_s"):
            check(isinstance(x.get(k), (int, float)) and x[k] > 0,
                  f"{name}: {k} = {x.get(k)!r}")
        # CPU time comes in clock ticks (10 ms): a small run may show 0.
        for k in ("broker_cpu_s", "broker_cpu_pct", "machine_busy_pct"):
            check(isinstance(x.get(k), (int, float)) and x[k] >= 0,
                  f"{name}: {k} = {x.get(k)!r}")
        for which, d in x.get("latency_ms", {}).items():
            check(0 <= d["p50"] <= d["p99"] <= d["max"],
                  f"{name}: latency {which} {d}")
        # Each task is leased and then succeeds: at least two transitions.
        check(x.get("transitions", 0) >= 2 * x["tasks"],
              f"{name}: {x.get('transitions')} transitions for "
              f"{x['tasks']} tasks")
    return rep


run(["--mode", "null", "--shape", "all", "-N", "200", "-W", "4"], 4)
rep = run(["--mode", "real", "--shape", "flat", "--real-tasks", "40",
           "-W", "2", "--slots", "2", "--spawn-s", "0.3"], 1)
if rep:
    check(rep.get("spawn_rate", {}).get("per_s", 0) > 0,
          f"spawn rate {rep.get('spawn_rate')}")
rep = run(["--targets", "--small", "-W", "4"], 1)
if rep:
    names = [t.get("target") for t in rep.get("targets", [])]
    check(names == ["latency", "submit-100k", "restart", "submit-1M",
                    "death", "idle"], f"targets {names}")
    for t in rep.get("targets", []):
        # A number for each, whether met or not (no speed is asserted).
        check(t.get("measured") is not None and isinstance(t.get("met"),
                                                           bool),
              f"target {t.get('target')}: {t.get('measured')!r} "
              f"({t.get('note')})")
    by = {t.get("target"): t for t in rep.get("targets", [])}
    check(by.get("submit-1M", {}).get("accepted") is True,
          "the big plan was not accepted")
    check(by.get("death", {}).get("released_after_s", 0) > 0,
          f"death: {by.get('death')}")
    check(by.get("idle", {}).get("broker_peak_rss_kb", 0) > 0,
          f"idle: {by.get('idle')}")
if failures:
    sys.exit(1)
print("bench smoke: ok")
