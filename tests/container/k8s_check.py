#!/usr/bin/env python3
"""Offline check of deploy/k8s: renders each kustomization and checks the
objects against each other.

    k8s_check.py DEPLOY_K8S_DIR [BIN_DIR]

Renders with `kubectl kustomize` when kubectl is installed (and
K8S_CHECK_BUILTIN is not set), else with a small renderer of the subset
deploy/k8s uses (resources, namespace, images) -- it says which.  Checks, per object: apiVersion, kind,
metadata.name; workloads: selector matches the pod labels, every container
has an image, resource requests and limits, every volumeMount names a
volume (or a volumeClaimTemplate); the broker StatefulSet has one replica,
a Service of its serviceName, readiness and liveness probes that GET
/healthz on the port WAGGLE_METRICS binds, a non-root user; Services select a workload and target named ports it declares; PDBs
select a workload; ScaledObject / HPA target an existing Deployment and the
KEDA query reads waggle_tasks{state=~"ready|leased"}; every WAGGLE_* variable is
one the programs read (their --help, from BIN_DIR) or the entrypoint's.

What it cannot check: the API server's schemas and admission (field names
it does not know about), KEDA's CRD, storage classes, that the image pulls,
or that any of it runs -- tests/container/image.sh runs the image.
Exit status: 0 ok, 1 a check failed, 77 python3-yaml is missing.
"""
import os
import shutil
import subprocess
import sys

try:
    import yaml
except ImportError:
    print("k8s_check: *** SKIP: python3-yaml is not installed ***")
    sys.exit(77)

ERRORS = []
# Variables the image's entrypoint and health check read
# (deploy/docker-entrypoint.sh, deploy/healthcheck.sh).
ENTRYPOINT_VARS = {"WAGGLE_KEYS_FROM", "WAGGLE_HEALTH_KEYS"}


def err(where, msg):
    ERRORS.append(f"{where}: {msg}")


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def render_builtin(kdir):
    """kustomize's subset used here: resources (files or directories),
    namespace, images."""
    with open(os.path.join(kdir, "kustomization.yaml")) as f:
        k = yaml.safe_load(f)
    objs = []
    for r in k.get("resources", []):
        p = os.path.normpath(os.path.join(kdir, r))
        objs += render_builtin(p) if os.path.isdir(p) else load_docs(p)
    for o in objs:
        md = o.setdefault("metadata", {})
        if k.get("namespace"):
            md["namespace"] = k["namespace"]
        for img in k.get("images", []):
            for c in containers(o):
                if c.get("image") == img["name"]:
                    c["image"] = f'{img.get("newName", img["name"])}:' \
                                 f'{img.get("newTag", "latest")}'
    return objs


def render(kdir):
    if shutil.which("kubectl") and not os.environ.get("K8S_CHECK_BUILTIN"):
        out = subprocess.run(["kubectl", "kustomize", kdir], check=True,
                             capture_output=True, text=True).stdout
        return [d for d in yaml.safe_load_all(out) if d], "kubectl kustomize"
    return render_builtin(kdir), "the built-in renderer"


def pod_spec(o):
    return (o.get("spec", {}).get("template", {}).get("spec")
            if o.get("kind") in ("Deployment", "StatefulSet") else None)


def containers(o):
    ps = pod_spec(o)
    return (ps.get("containers", []) + ps.get("initContainers", [])
            if ps else [])


def selects(selector, o):
    labels = o["spec"]["template"]["metadata"].get("labels", {})
    return bool(selector) and all(labels.get(k) == v
                                  for k, v in selector.items())


def check_common(o, where):
    for field in ("apiVersion", "kind"):
        if not o.get(field):
            err(where, f"no {field}")
    if not o.get("metadata", {}).get("name"):
        err(where, "no metadata.name")


def check_workload(o, where, known_vars):
    spec = o["spec"]
    sel = spec.get("selector", {}).get("matchLabels", {})
    if not selects(sel, o):
        err(where, "spec.selector does not match the pod template's labels")
    ps = pod_spec(o)
    vols = {v["name"] for v in ps.get("volumes", [])}
    vols |= {t["metadata"]["name"]
             for t in spec.get("volumeClaimTemplates", [])}
    for c in containers(o):
        cw = f'{where} container {c.get("name")}'
        if not c.get("image"):
            err(cw, "no image")
        res = c.get("resources", {})
        for part in ("requests", "limits"):
            if not res.get(part):
                err(cw, f"no resources.{part}")
        for m in c.get("volumeMounts", []):
            if m["name"] not in vols:
                err(cw, f'mounts "{m["name"]}", which is no volume')
        for e in c.get("env", []):
            n = e["name"]
            if n.startswith("WAGGLE_") and known_vars is not None \
                    and n not in known_vars | ENTRYPOINT_VARS:
                err(cw, f"{n} is read by no Waggle program")
    if o["kind"] == "StatefulSet":
        if spec.get("replicas") != 1:
            err(where, "a broker StatefulSet must have exactly 1 replica")
        for c in ps["containers"]:
            for probe in ("readinessProbe", "livenessProbe"):
                if not c.get(probe):
                    err(where, f"container {c['name']} has no {probe}")
                else:
                    check_healthz(where, c, probe)
        if not ps.get("securityContext", {}).get("runAsNonRoot"):
            err(where, "the broker must run as non-root")


def check_healthz(where, c, probe):
    """The broker's probe asks GET /healthz on the port WAGGLE_METRICS
    binds."""
    get = c[probe].get("httpGet")
    if not get or get.get("path") != "/healthz":
        err(where, f"{probe} is not an httpGet of /healthz")
        return
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    port = ports.get(get.get("port"), get.get("port"))
    env = {e["name"]: e.get("value", "") for e in c.get("env", [])}
    metrics = env.get("WAGGLE_METRICS", "")
    if not metrics.endswith(f":{port}"):
        err(where, f"{probe} asks port {get.get('port')} ({port}), but "
                   f"WAGGLE_METRICS is '{metrics}'")


def check_refs(objs, where_of):
    workloads = [o for o in objs if pod_spec(o)]
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    for o in objs:
        w = where_of(o)
        kind = o["kind"]
        if kind == "StatefulSet":
            if o["spec"].get("serviceName") not in by_kind.get("Service", {}):
                err(w, "serviceName names no Service")
        if kind == "Service":
            sel = o["spec"].get("selector", {})
            targets = [x for x in workloads if selects(sel, x)]
            if not targets:
                err(w, "selects no workload")
            names = {p.get("name") for x in targets for c in containers(x)
                     for p in c.get("ports", [])}
            for p in o["spec"].get("ports", []):
                tp = p.get("targetPort")
                if isinstance(tp, str) and tp not in names:
                    err(w, f'targetPort "{tp}" is no container port name')
        if kind == "PodDisruptionBudget":
            sel = o["spec"].get("selector", {}).get("matchLabels", {})
            if not any(selects(sel, x) for x in workloads):
                err(w, "selects no workload")
        if kind in ("ScaledObject", "HorizontalPodAutoscaler"):
            ref = o["spec"].get("scaleTargetRef", {})
            if ref.get("name") not in by_kind.get(ref.get("kind",
                                                          "Deployment"), {}):
                err(w, f'scaleTargetRef names no {ref.get("kind")}')
        if kind == "ScaledObject":
            qs = [t.get("metadata", {}).get("query", "")
                  for t in o["spec"].get("triggers", [])]
            want = 'waggle_tasks{state=~"ready|leased"}'
            if not any(want in q for q in qs):
                err(w, f"no trigger reads {want}")


def program_vars(bin_dir):
    if not bin_dir:
        return None
    names = set()
    for prog in ("broker/waggle-broker", "drone/waggle-drone",
                 "architect/waggle-architect"):
        out = subprocess.run([os.path.join(bin_dir, prog), "--help"],
                             capture_output=True, text=True).stdout
        names |= {w.strip("(),.;") for w in out.split()
                  if w.startswith("WAGGLE_")}
    return names


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 64
    top = sys.argv[1]
    known = program_vars(sys.argv[2] if len(sys.argv) > 2 else None)
    checked = 0
    for variant in (".", "keda", "hpa"):
        kdir = os.path.join(top, variant)
        objs, how = render(kdir)
        def where_of(o, variant=variant):
            return f'{variant}: {o.get("kind")}/' \
                   f'{o.get("metadata", {}).get("name")}'
        for o in objs:
            check_common(o, where_of(o))
            if pod_spec(o):
                check_workload(o, where_of(o), known)
        check_refs(objs, where_of)
        kinds = sorted(o["kind"] for o in objs)
        print(f"k8s_check: {variant}: {len(objs)} objects via {how}: "
              f"{', '.join(kinds)}")
        checked += len(objs)
    for e in ERRORS:
        print(f"k8s_check: {e}", file=sys.stderr)
    if not ERRORS:
        print(f"k8s_check: ok ({checked} objects)")
    return 1 if ERRORS else 0


if __name__ == "__main__":
    sys.exit(main())
