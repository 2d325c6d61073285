#!/bin/sh
# The container image, for real: builds deploy/Dockerfile with Podman, makes
# keys with the documented one-shot container, runs a broker and two drones
# as containers on a Podman network, submits a fan-out/fan-in plan from an
# architect container, waits for it to succeed, checks that the tasks ran as
# waggle-task in both drones, that the broker's /metrics agrees (tasks
# succeeded, drones connected, scraped over the container network as
# Prometheus would), that the health check passes (through /healthz) and
# that 'waggle-broker backup' works inside the broker's container.  The broker
# reads its keys the Kubernetes way (a root-owned, group-readable mount
# copied private by the entrypoint) and admits a drone key added while it
# runs (keygen --add, then SIGHUP to the container).  Then the same with
# deploy/compose.yaml: keygen, up --scale drone=3, a plan from the architect
# service (needs docker-compose and the CNI dnsname plugin, else SKIP for
# that part).
#
#   tests/container/image.sh            (ctest -L container runs it)
#
# Needs root and podman; exits 77 (SKIP) without them.  No registry is
# needed: when debian:bookworm cannot be pulled, the base image is made
# with debootstrap from the Debian mirror apt uses and imported once as
# localhost/waggle-base:bookworm (kept in Podman's store: later runs reuse
# it; WAGGLE_REBASE=1 makes it anew).  Podman is configured for this run
# only, through CONTAINERS_CONF (runc, explicit ulimits: PITFALLS.md).
# Time on the 2-core test machine: about 4 minutes cold (debootstrap and
# the build's apt layer), about 1.5 minutes warm.
set -eu

top=$(cd "$(dirname "$0")/../.." && pwd)
skip() { echo "image: *** SKIP: $* ***" >&2; exit 77; }
say() { printf 'image: %s\n' "$*"; }
fail() { echo "image: FAIL: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || skip "needs root (rootful Podman)"
command -v podman >/dev/null 2>&1 ||
    skip "podman is not installed (deploy/install-deps.sh --test)"

run=$(mktemp -d /var/tmp/waggle-image.XXXXXX)
tag="w$$"
net="waggle-test-$tag"
# A tag of this run's own: other runs on the machine build theirs at the
# same time.  Untagged at the end; the layers stay as the build cache.
image="localhost/waggle:test-$tag"
base="localhost/waggle-base:bookworm"

if [ -z "${CONTAINERS_CONF:-}" ]; then
    cat > "$run/containers.conf" <<'CONF'
[engine]
runtime = "runc"
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
CONF
    export CONTAINERS_CONF="$run/containers.conf"
fi

cleanup() {
    status=$?
    if [ $status != 0 ] && [ $status != 77 ]; then
        for c in broker drone1 drone2; do
            echo "--- podman logs $tag-$c" >&2
            podman logs "$tag-$c" 2>&1 | tail -n 30 >&2 || true
        done
    fi
    podman rm -f -v -t 2 "$tag-broker" "$tag-drone1" "$tag-drone2" \
        >/dev/null 2>&1 || true
    podman network rm -f "$net" >/dev/null 2>&1 || true
    podman volume rm -f "$tag-ledger" >/dev/null 2>&1 || true
    podman untag "$image" >/dev/null 2>&1 || true
    rm -rf "$run"
    exit $status
}
trap cleanup EXIT
trap 'exit 1' INT TERM

t0=$(date +%s)
elapsed() { echo "$(( $(date +%s) - t0 )) s"; }

# --- the base image -------------------------------------------------------
s_debian_mirror() {
    grep -h -o -E 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list \
        /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
        2>/dev/null | tr -d ' ' | sed 's|/$||' | head -n 1
}

make_base() {
    if timeout 60 podman pull -q docker.io/library/debian:bookworm \
            >/dev/null 2>&1; then
        podman tag docker.io/library/debian:bookworm "$base"
        say "base image pulled from the registry"
        return 0
    fi
    command -v debootstrap >/dev/null 2>&1 ||
        skip "no registry and no debootstrap for the base image"
    mirror=${WAGGLE_MIRROR:-$(s_debian_mirror)}
    mirror=${mirror:-http://deb.debian.org/debian}
    say "no registry: making the base image with debootstrap ($mirror)"
    root="$run/rootfs"
    debootstrap --variant=minbase bookworm "$root" "$mirror" \
        > "$run/debootstrap.log" 2>&1 ||
        { tail -n 20 "$run/debootstrap.log" >&2;
          skip "debootstrap from '$mirror' failed (no mirror?)"; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | podman import -q - "$base" >/dev/null
    rm -rf "$root"
}

if [ "${WAGGLE_REBASE:-0}" = 1 ] || ! podman image exists "$base"; then
    make_base
fi
say "base image $base ($(elapsed))"

# --- the build --------------------------------------------------------------
# --network host: the build's apt-get needs the mirror, and Podman's own
# network may not reach it here.  --format docker keeps the HEALTHCHECK.
podman build -q --format docker --network host -f "$top/deploy/Dockerfile" \
    --build-arg BASE_IMAGE="$base" --build-arg RUNTIME_IMAGE="$base" \
    --build-arg REVISION="$(git -C "$top" rev-parse HEAD 2>/dev/null ||
                            echo unknown)" \
    -t "$image" "$top" > "$run/build.log" 2>&1 ||
    { tail -n 40 "$run/build.log" >&2; fail "podman build failed"; }
say "image built ($(elapsed))"

# The image: non-root by default, no key inside, three programs.
[ "$(podman inspect -f '{{.Config.User}}' "$image")" = waggle ] ||
    fail "the image's default user is not waggle"
podman run --rm --no-healthcheck --network none "$image" sh -c \
    'for p in waggle-broker waggle-drone waggle-architect; do
         $p --version >/dev/null || exit 1; done
     ! find / -xdev -name "*.key_secret" 2>/dev/null | grep -q .' ||
    fail "a program is missing or a secret key is in the image"

# --- keys: the documented one-shot container --------------------------------
mkdir "$run/keys"
podman run --rm --no-healthcheck --network none --user 0 -v "$run/keys:/keys" "$image" \
    sh -c 'waggle-architect keygen /keys >/dev/null &&
           chown -R waggle:waggle /keys' ||
    fail "keygen in a container failed"
[ -f "$run/keys/broker/broker.key_secret" ] || fail "keygen wrote no keys"

# A Kubernetes-style key mount for the broker: one Secret key holding a tar
# of DIR/broker, owned by root and group-readable (fsGroup), which Waggle
# itself would refuse; the entrypoint unpacks it private
# (WAGGLE_KEYS_FROM, deploy/docker-entrypoint.sh).
secret="$run/secret"
mkdir "$secret"
s_secret() {
    tar -C "$run/keys" -cf "$secret/keys.tar.new" broker
    chown 0:10001 "$secret/keys.tar.new"
    chmod 0440 "$secret/keys.tar.new"
    mv "$secret/keys.tar.new" "$secret/keys.tar"
}
s_secret

# --- broker and two drones on a network ------------------------------------
podman network create "$net" >/dev/null
podman volume create "$tag-ledger" >/dev/null
# (Podman schedules health checks with systemd timers; where there is no
# systemd it complains on stderr and the test runs them itself.)
podman run -d --name "$tag-broker" --network "$net" \
    -v "$secret:/secret:ro" -v "$tag-ledger:/var/lib/waggle" \
    -e WAGGLE_KEYS_FROM=/secret/keys.tar -e WAGGLE_METRICS=0.0.0.0:9464 \
    "$image" waggle-broker \
    >/dev/null 2>>"$run/podman.log"
ip=""
for _ in $(seq 1 60); do
    ip=$(podman inspect -f \
        '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' \
        "$tag-broker" 2>/dev/null || true)
    podman logs "$tag-broker" 2>&1 | grep -q '^READY' && [ -n "$ip" ] && break
    sleep 1
done
podman logs "$tag-broker" 2>&1 | grep -q '^READY' ||
    fail "the broker container never printed READY"
say "broker up at $ip ($(elapsed))"
podman healthcheck run "$tag-broker" >/dev/null ||
    fail "the broker's health check failed"
# With WAGGLE_METRICS the check asks /healthz on that port: pointed at a
# port where nothing listens, it must fail.
podman exec -e WAGGLE_METRICS=127.0.0.1:1 "$tag-broker" waggle-healthcheck \
    >/dev/null 2>&1 && fail "the health check did not ask WAGGLE_METRICS"

# Drones run as root in their container, so that their tasks run as the
# unprivileged waggle-task user (drone/taskuser.h).  drone1 uses the key
# set's drone key; drone2 a key of its own, added while the broker runs:
# keygen --add, the Secret updated, SIGHUP to the broker's container.
podman run --rm --no-healthcheck --network none --user 0 -v "$run/keys:/keys" "$image" \
    sh -c 'waggle-architect keygen /keys --add drone d2 >/dev/null &&
           waggle-architect keygen /keys --add submitter health >/dev/null &&
           chown -R waggle:waggle /keys' || fail "keygen --add failed"
s_secret
podman kill --signal HUP "$tag-broker" >/dev/null
# drone1 also reads its keys through the entrypoint's copy (a directory).
# The capabilities are the ones deploy/compose.yaml and deploy/k8s give a
# drone: switch to the task user, hand it its directory, signal its tasks.
s_drone() {
    podman run -d --name "$tag-$1" --network "$net" --user 0 \
        --cap-drop ALL --cap-add SETUID,SETGID,CHOWN,DAC_OVERRIDE,FOWNER,KILL \
        --no-healthcheck -v "$2:/keys:ro" -e "$3=/keys" \
        -e WAGGLE_BROKER="tcp://$ip:7600" "$image" \
        waggle-drone --slots 2 --tags "$1" >/dev/null
}
s_drone drone1 "$run/keys" WAGGLE_KEYS_FROM
s_drone drone2 "$run/keys/bundles/d2" WAGGLE_KEYS

arch() {
    podman run --rm --no-healthcheck --network "$net" -v "$run/keys:/keys:ro" \
        -v "$run:/work:ro" -e WAGGLE_KEYS=/keys \
        -e WAGGLE_BROKER="tcp://$ip:7600" "$image" waggle-architect "$@"
}

# Six tasks pinned three to each drone by tag, and a join: both drones
# must take part.
cat > "$run/plan.json" <<'PLAN'
{"name": "containers", "tasks": [
  {"id": "a1", "requires": ["drone1"], "run": ["sh", "-c", "id -un; uname -n"]},
  {"id": "a2", "requires": ["drone1"], "run": ["sh", "-c", "id -un; uname -n"]},
  {"id": "a3", "requires": ["drone1"], "run": ["sh", "-c", "id -un; uname -n"]},
  {"id": "b1", "requires": ["drone2"], "run": ["sh", "-c", "id -un; uname -n"]},
  {"id": "b2", "requires": ["drone2"], "run": ["sh", "-c", "id -un; uname -n"]},
  {"id": "b3", "requires": ["drone2"], "run": ["sh", "-c", "id -un; uname -n"]},
  {"id": "join", "needs": ["a1", "a2", "a3", "b1", "b2", "b3"],
   "run": ["sh", "-c", "cat \"$WAGGLE_INPUT_DIR\"/* | sort | uniq -c"]}
]}
PLAN
chmod 0644 "$run/plan.json"
chmod 0755 "$run"
plan=$(arch submit /work/plan.json) || fail "submit failed"
say "plan $plan submitted ($(elapsed))"
arch wait "$plan" --timeout 180 > "$run/wait.log" 2>&1 ||
    { cat "$run/wait.log" >&2; arch status "$plan" >&2 || true;
      fail "plan $plan did not succeed"; }
out=$(arch output "$plan" join)
echo "$out" | sed 's/^/image:   /'
[ "$(echo "$out" | grep -c 'waggle-task$')" = 1 ] &&
    echo "$out" | grep -q '6 waggle-task' ||
    fail "the tasks did not all run as waggle-task"
hosts=$(echo "$out" | grep -v 'waggle-task$' | wc -l)
[ "$hosts" = 2 ] || fail "expected tasks on 2 drone containers, saw $hosts"
say "plan $plan succeeded on both drones ($(elapsed))"

# --- /metrics, scraped from the broker container as Prometheus would -------
# The figures match the plan: its 7 tasks succeeded (and their 7 attempts),
# and 2 drones are connected.
s_metric() {
    awk -v s="$1" '$1 == s { print $2 }' "$run/metrics.txt"
}
/usr/bin/python3 -c 'import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    sys.stdout.write(r.read().decode())' "http://$ip:9464/metrics" \
    > "$run/metrics.txt" ||
    fail "cannot scrape http://$ip:9464/metrics"
for want in 'waggle_tasks{state="succeeded"} 7' \
            'waggle_results_total{outcome="succeeded"} 7' \
            'waggle_drones_connected 2'; do
    got=$(s_metric "${want% *}")
    [ "$got" = "${want##* }" ] ||
        { grep '^waggle_\(tasks\|drones\|results\)' "$run/metrics.txt" >&2;
          fail "/metrics: ${want% *} is '$got', not ${want##* }"; }
done
say "/metrics: 7 tasks succeeded, 2 drones connected"

# The health check's deeper form: a submitter bundle (admitted by the
# SIGHUP above) makes it ping through the broker's loop.
podman cp "$run/keys/bundles/health" "$tag-broker:/tmp/health"
podman exec -e WAGGLE_HEALTH_KEYS=/tmp/health "$tag-broker" \
    waggle-healthcheck > "$run/health.log" 2>&1 ||
    { cat "$run/health.log" >&2; fail "the health check with a key failed"; }
podman exec -e WAGGLE_HEALTH_KEYS=/nonexistent "$tag-broker" \
    waggle-healthcheck >/dev/null 2>&1 &&
    fail "the health check passed with no key to ping with"
say "health check: $(tr '\n' ' ' < "$run/health.log")"

# --- a backup inside the running broker's container -------------------------
podman exec "$tag-broker" waggle-broker backup --json \
    /var/lib/waggle/backup.db > "$run/backup.json" ||
    fail "waggle-broker backup failed in the container"
grep -q '"integrity":"ok"' "$run/backup.json" || fail "backup not checked"
say "backup in the container: $(cat "$run/backup.json")"

# --- deploy/compose.yaml, as deploy/README.md says to use it ----------------
# docker-compose drives Podman through its Docker-compatible API (a
# 'podman system service' this script starts and stops).  Service names
# resolve only with the CNI dnsname plugin on Podman 4.3 (aardvark-dns on
# Podman 5).
dnsname=""
for f in /usr/lib/cni/dnsname /usr/libexec/cni/dnsname /opt/cni/bin/dnsname \
         /usr/lib/podman/aardvark-dns /usr/libexec/podman/aardvark-dns; do
    [ -x "$f" ] && dnsname=$f
done
if ! command -v docker-compose >/dev/null 2>&1 || [ -z "$dnsname" ]; then
    echo "image: *** SKIP: compose up (needs docker-compose and the CNI" \
         "dnsname plugin) ***" >&2
    say "ok without compose ($(elapsed))"
    exit 0
fi
podman system service --time=0 "unix://$run/podman.sock" \
    > "$run/service.log" 2>&1 &
service=$!
compose_down() {
    (cd "$run/compose" && docker-compose -p "$tag" down -v -t 5) \
        >/dev/null 2>&1 || true
    kill "$service" 2>/dev/null || true
    wait "$service" 2>/dev/null || true
}
trap 'compose_down; cleanup' EXIT
for _ in $(seq 1 50); do [ -S "$run/podman.sock" ] && break; sleep 0.2; done
mkdir -p "$run/compose/plans"
cp -R "$top/deploy/compose.yaml" "$top/deploy/prometheus" "$run/compose/"
cp "$top/examples/fanout.json" "$run/compose/plans/"
chmod -R a+rX "$run/compose"
export DOCKER_HOST="unix://$run/podman.sock" WAGGLE_IMAGE="$image" \
    WAGGLE_PLANS_DIR="$run/compose/plans" WAGGLE_PORT="$(/usr/bin/python3 -c 'import socket
s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')"
dc() { (cd "$run/compose" && timeout 180 docker-compose -p "$tag" "$@"); }
mkdir "$run/compose/keys"
dc run --rm keygen > "$run/compose.log" 2>&1 || fail "compose: keygen"
dc up -d --no-build --scale drone=3 >> "$run/compose.log" 2>&1 ||
    { cat "$run/compose.log" >&2; fail "compose up failed"; }
# The guide's example, as deploy/README.md runs it.
plan=$(dc run --rm architect submit /plans/fanout.json 2>>"$run/compose.log" |
       tr -d '\r' | tail -n 1)
dc run --rm architect wait "$plan" --timeout 180 >> "$run/compose.log" 2>&1 ||
    { cat "$run/compose.log" >&2; fail "compose: plan '$plan' failed"; }
dc run --rm architect output "$plan" report 2>/dev/null | tr -d '\r' |
    sed 's/^/image:   /'
n=$(dc ps -q drone 2>/dev/null | wc -l)
[ "$n" = 3 ] || fail "compose: $n drones running, not 3"
say "compose: broker + 3 drones up, plan $plan succeeded ($(elapsed))"

say "ok ($(elapsed))"
