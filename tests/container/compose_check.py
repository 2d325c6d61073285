#!/usr/bin/env python3
"""Checks the resolved deploy/compose.yaml ('docker-compose config' with
every profile, on stdin): the services exist, drones can scale (no
container_name, no host port), every key mount but keygen's is read-only,
the one-shot and optional services sit behind profiles, no build
argument carries a key, and the broker serves metrics and has a
healthcheck (waggle-healthcheck, which asks /healthz).  Exit 0 ok, 1 with the failures on stderr."""
import sys

import yaml


def mount_text(v):
    if isinstance(v, str):
        return v
    mode = "ro" if v.get("read_only") else "rw"
    return f'{v.get("source")}:{v.get("target")}:{mode}'


def main():
    services = yaml.safe_load(sys.stdin)["services"]
    bad = []
    for name in ("broker", "drone", "keygen", "architect", "prometheus"):
        if name not in services:
            bad.append(f"no service {name}")
    drone = services.get("drone", {})
    if "container_name" in drone or drone.get("ports"):
        bad.append("drone cannot scale: container_name or host ports")
    for name in ("broker", "drone", "architect"):
        for v in services.get(name, {}).get("volumes", []):
            text = mount_text(v)
            if ":/keys" in text and not text.endswith(":ro"):
                bad.append(f"{name} mounts keys writable: {text}")
    broker = services.get("broker", {})
    if not (broker.get("environment") or {}).get("WAGGLE_METRICS"):
        bad.append("broker has no WAGGLE_METRICS (no /metrics, no /healthz)")
    if "waggle-healthcheck" not in str(broker.get("healthcheck", {})):
        bad.append("broker has no healthcheck running waggle-healthcheck")
    for name in ("keygen", "architect", "prometheus"):
        if not services.get(name, {}).get("profiles"):
            bad.append(f"{name} starts on every 'up' (no profile)")
    for name, svc in services.items():
        args = (svc.get("build") or {}).get("args") or {}
        if any("key" in str(a).lower() for a in args):
            bad.append(f"{name} passes a key to the image build")
    for b in bad:
        print("compose: FAIL:", b, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
