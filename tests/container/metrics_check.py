#!/usr/bin/env python3
"""Every broker metric that deploy/ names is one the broker serves.

    metrics_check.py DEPLOY_DIR BUILD_DIR

The names come from `waggle-broker --list-metrics` (histograms add
_bucket, _sum and _count); the label values from a real scrape: a broker
on a fresh ledger with --metrics, whose /metrics lists every value of
every fixed label (tasks by each state, refusals by each reason, ...).
Then every file under DEPLOY_DIR is searched for `waggle_...` names (alert
rules, the KEDA query, the prometheus-adapter rules, the docs) and for
label matchers on them (`waggle_tasks{state="ready"}`): an unknown name, a
label the metric does not have, or a value it never takes is an error.

Allowed beyond the broker's own: the names listed in DERIVED (made by a
tool from the broker's series), and the labels Prometheus adds to every
series of a target (TARGET_LABELS).  Regex matchers (=~, !~) are checked
alternative by alternative when those are plain words.
Exit status: 0 ok, 1 a check failed (each problem printed with FILE:LINE).
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

# Names not served by the broker but made from its series, and where.
DERIVED = {
    "waggle_tasks_ready_or_leased":
        "prometheus-adapter's name for "
        "sum(waggle_tasks{state=~\"ready|leased\"}) "
        "(deploy/k8s/hpa/adapter-rules.yaml)",
}
# Labels the scrape itself adds (job, instance) or service discovery
# relabelling commonly adds on Kubernetes.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service",
                 "endpoint", "container"}
# Label values that an empty ledger's scrape cannot show: `kind` is fixed
# (README "Metrics"), `model` is whatever model the tasks name (None: any).
UNSCRAPED_VALUES = {"kind": {"prompt", "completion"}, "model": None}

NAME = re.compile(r"\bwaggle_[a-z0-9_]*[a-z0-9]\b")
SELECTOR = re.compile(r"\b(waggle_[a-z0-9_]*[a-z0-9])\s*\{([^{}]*)\}")
MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"
                     r"[\"']([^\"']*)[\"']")
ERRORS = []


def list_metrics(broker):
    """{series name: set of label names} from --list-metrics."""
    out = subprocess.run([broker, "--list-metrics"], check=True,
                         capture_output=True, text=True).stdout
    series = {}
    for line in out.splitlines():
        name, kind, labels, _help = line.split("\t", 3)
        labels = set() if labels == "-" else set(labels.split(","))
        labels.discard("le")
        if kind == "histogram":
            series[name] = set()
            series[name + "_bucket"] = labels | {"le"}
            series[name + "_sum"] = set(labels)
            series[name + "_count"] = set(labels)
        else:
            series[name] = labels
    return series


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(build, tmp):
    """The text of /metrics from a broker on a fresh ledger in tmp."""
    subprocess.run([f"{build}/architect/waggle-architect", "keygen",
                    f"{tmp}/keys"], check=True, capture_output=True)
    port = free_port()
    broker = subprocess.Popen(
        [f"{build}/broker/waggle-broker", "--keys", f"{tmp}/keys",
         "--db", f"{tmp}/waggle.db", "--bind", f"ipc://{tmp}/broker.sock",
         "--metrics", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=open(f"{tmp}/broker.err", "w"),
        text=True)
    try:
        ready = broker.stdout.readline()
        if not ready.startswith("READY"):
            sys.exit(f"metrics_check: the broker did not start ({ready!r})")
        deadline = time.monotonic() + 30
        while True:
            try:
                url = f"http://127.0.0.1:{port}/metrics"
                with urllib.request.urlopen(url, timeout=10) as r:
                    return r.read().decode()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        broker.terminate()
        # 0 after SIGTERM (a sanitizer's report would make it fail).
        if broker.wait(timeout=30) != 0:
            with open(f"{tmp}/broker.err") as f:
                sys.stderr.write(f.read())
            ERRORS.append(f"the broker exited {broker.returncode} after "
                          "SIGTERM")


def label_values(text):
    """{series name: {label: set of values}} from Prometheus text."""
    values = {}
    for line in text.splitlines():
        m = re.match(r"(\w+)\{([^}]*)\}", line)
        if not m:
            continue
        for label, _op, value in MATCHER.findall(m.group(2)):
            values.setdefault(m.group(1), {}).setdefault(label, set()).add(
                value)
    return values


def check_matchers(where, name, body, series, values):
    for label, op, value in MATCHER.findall(body):
        if label in TARGET_LABELS:
            continue
        if label not in series[name]:
            ERRORS.append(f"{where}: {name} has no label '{label}' "
                          f"(it has: {', '.join(sorted(series[name])) or 'none'})")
            continue
        known = values.get(name, {}).get(label,
                                         UNSCRAPED_VALUES.get(label))
        if known is None:
            continue
        wanted = value.split("|") if op in ("=~", "!~") else [value]
        for v in wanted:
            if op in ("=~", "!~") and not re.fullmatch(r"[\w.+-]*", v):
                continue  # a real regex: nothing to compare
            if v not in known:
                ERRORS.append(f"{where}: {name}{{{label}{op}\"{value}\"}}: "
                              f"the broker never emits {label}=\"{v}\" "
                              f"(it emits: {', '.join(sorted(known))})")


def check_file(path, rel, series, values):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (UnicodeDecodeError, OSError):
        return 0
    used = 0
    for m in NAME.finditer(text):
        used += 1
        name = m.group(0)
        where = f"{rel}:{text.count(chr(10), 0, m.start()) + 1}"
        if name not in series and name not in DERIVED:
            ERRORS.append(f"{where}: '{name}' is not a metric the broker "
                          "serves (waggle-broker --list-metrics)")
    for m in SELECTOR.finditer(text):
        where = f"{rel}:{text.count(chr(10), 0, m.start()) + 1}"
        if m.group(1) in series:
            check_matchers(where, m.group(1), m.group(2), series, values)
    return used


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: metrics_check.py DEPLOY_DIR BUILD_DIR")
    deploy, build = sys.argv[1], os.path.abspath(sys.argv[2])
    series = list_metrics(f"{build}/broker/waggle-broker")
    tmp = tempfile.mkdtemp(prefix="metrics_check.")
    try:
        values = label_values(scrape(build, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    used = 0
    for root, _dirs, files in os.walk(deploy):
        for f in sorted(files):
            path = os.path.join(root, f)
            used += check_file(path, os.path.relpath(path, deploy), series,
                               values)
    for e in ERRORS:
        print(f"metrics_check: {e}", file=sys.stderr)
    if ERRORS:
        sys.exit(1)
    print(f"metrics_check: ok ({used} references to broker metrics in "
          f"{deploy}, all served; {len(series)} series known)")


if __name__ == "__main__":
    main()
