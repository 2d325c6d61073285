// e2e multihost over a real network: three network namespaces ("hosts")
// joined by a Linux bridge, each with its own address — the broker on
// host A, a drone on each of hosts B and C, each drone with its own key
// made by `keygen --add drone NAME` and only that bundle copied to its
// host's directory; the architect talks to the broker from the root
// namespace through the bridge.  Default timing (heartbeat 1 s, lease
// 10 s), as a user runs it.
//
//   1. a plan of 200 tasks runs on both hosts; host B's link is cut (its
//      veth set down) mid-run, its tasks move to C, the link comes back,
//      B rejoins, the plan completes;
//   2. a second plan with 20% packet loss both ways on host C's link
//      (iptables -m statistic inside C) completes too.
// After each: every task succeeded with exactly one accepted attempt, whose
// output is its own lease token (so no stale result was recorded).
//
// Needs root, `ip`, bridges and iptables; otherwise it is skipped (77).
// Namespaces, bridge and rules go on every exit path (atexit), and a run
// killed mid-test is swept by the next one.
#include "broker/ledger.h"
#include "tests/harness/attempts.h"
#include "tests/harness/net.h"
#include "tests/harness/proc.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include "common/clock.h"
#include "common/xalloc.h"

#include <stdlib.h>

#define NS_PREFIX "wgm"
#define N_TASKS 200
#define HB_MS 1000
#define LEASE_MS 10000

enum { HOST_A, HOST_B, HOST_C, N_HOSTS };
static const char *const s_host_name[N_HOSTS] = {"hostA", "hostB", "hostC"};

static struct {
    bool bridge_up;
    char bridge[32];
    char ns[N_HOSTS][24];       // "" when not made
    char veth[N_HOSTS][32];     // bridge end of each host's veth pair
    char ip[N_HOSTS][32];
    char bridge_ip[32];         // the root namespace's address
} s_net;

static swarm_t s_swarm;
static bool s_swarm_up;

static void
s_net_down(void)
{
    if (s_swarm_up) {
        swarm_stop(&s_swarm);  // what runs in a namespace keeps it alive
        s_swarm_up = false;
    }
    // A namespace takes its veth end, and so the pair, with it.
    for (int h = 0; h < N_HOSTS; h++) {
        if (s_net.ns[h][0]) {
            net_sh("ip netns del %s", s_net.ns[h]);
            net_sh("ip link del %s 2>/dev/null || true", s_net.veth[h]);
            s_net.ns[h][0] = '\0';
        }
    }
    if (s_net.bridge_up) {
        net_sh("ip link del %s", s_net.bridge);
        s_net.bridge_up = false;
    }
}

static int
s_host_up(int h, long pid, int subnet)
{
    snprintf(s_net.ns[h], sizeof s_net.ns[h], NS_PREFIX "%ld%c", pid,
             'a' + h);
    snprintf(s_net.veth[h], sizeof s_net.veth[h], NS_PREFIX "h%ld%c", pid,
             'a' + h);
    snprintf(s_net.ip[h], sizeof s_net.ip[h], "10.214.%d.%d", subnet,
             h + 1);
    char inner[32];
    snprintf(inner, sizeof inner, NS_PREFIX "n%ld%c", pid, 'a' + h);
    if (net_sh("ip netns add %s", s_net.ns[h]) != 0) {
        s_net.ns[h][0] = '\0';
        return -1;
    }
    return net_sh("ip link add %s type veth peer name %s && "
                  "ip link set %s netns %s && "
                  "ip link set %s master %s && ip link set %s up && "
                  "ip netns exec %s ip addr add %s/24 dev %s && "
                  "ip netns exec %s ip link set %s up && "
                  "ip netns exec %s ip link set lo up",
                  s_net.veth[h], inner, inner, s_net.ns[h], s_net.veth[h],
                  s_net.bridge, s_net.veth[h], s_net.ns[h], s_net.ip[h],
                  inner, s_net.ns[h], inner, s_net.ns[h]);
}

// The bridge and the three hosts.  NULL, or why not (skip).
static const char *
s_net_up(void)
{
    const char *why = net_usable();
    if (why) {
        return why;
    }
    net_sweep_stale(NS_PREFIX);
    atexit(s_net_down);
    long pid = (long) getpid();
    int subnet = (int) (pid % 250);  // parallel runs do not clash
    snprintf(s_net.bridge, sizeof s_net.bridge, NS_PREFIX "b%ld", pid);
    snprintf(s_net.bridge_ip, sizeof s_net.bridge_ip, "10.214.%d.254",
             subnet);
    if (net_sh("ip link add %s type bridge && ip addr add %s/24 dev %s && "
               "ip link set %s up", s_net.bridge, s_net.bridge_ip,
               s_net.bridge, s_net.bridge) != 0) {
        net_sh("ip link del %s 2>/dev/null || true", s_net.bridge);
        return "cannot make a bridge";
    }
    s_net.bridge_up = true;
    for (int h = 0; h < N_HOSTS; h++) {
        if (s_host_up(h, pid, subnet) != 0) {
            s_net_down();
            return "cannot set up a namespace on the bridge";
        }
    }
    if (net_sh("ip netns exec %s iptables -L -n >/dev/null",
               s_net.ns[HOST_C]) != 0) {
        s_net_down();
        return "iptables does not work in a network namespace";
    }
    return NULL;
}

// `keygen keys --add drone NAME`, then only the bundle it prints goes to
// the host's own directory (as scp -r would); its path into keys.
static bool
s_host_keys(swarm_t *s, const char *name, char *keys, size_t len)
{
    char *argv[] = {(char *) swarm_bin("waggle-architect"), "keygen",
                    s->keys, "--add", "drone", (char *) name, NULL};
    char *out = NULL;
    int rc = proc_run(argv, 30000, &out, NULL);
    char *end = out ? out + strlen(out) : NULL;
    while (end && end > out && end[-1] == '\n') {
        *--end = '\0';
    }
    char *bundle = out ? strrchr(out, '\n') : NULL;
    bundle = bundle ? bundle + 1 : out;
    snprintf(keys, len, "%s/%s/keys", s->dir, name);
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/%s' && cp -rp '%s' '%s'",
             s->dir, name, bundle ? bundle : "/nonexistent", keys);
    bool ok = rc == 0 && system(cmd) == 0;
    free(out);
    return ok;
}

// Starts host h's drone in its namespace with its own bundle.
static void
s_host_drone(swarm_t *s, int h, const char *keys)
{
    char log[700];
    snprintf(log, sizeof log, "%s/%s.log", s->dir, s_host_name[h]);
    char *argv[] = {(char *) net_ip(), "netns", "exec", s_net.ns[h],
                    (char *) swarm_bin("waggle-drone"), "--keys",
                    (char *) keys, "--broker", s->endpoint, "--slots", "4",
                    "--workdir", s->dir, NULL};
    s->drones[s->n_drones++] = proc_spawn(argv, log, NULL);
}

// Tasks that print their own lease token, after a little work.
static int64_t
s_submit_plan(swarm_t *s, const char *name)
{
    size_t cap = 256 + N_TASKS * 96;
    char *json = xmalloc(cap);
    size_t n = (size_t) snprintf(json, cap,
                                 "{\"name\":\"%s\",\"defaults\":"
                                 "{\"retries\":4},\"tasks\":[", name);
    for (int i = 0; i < N_TASKS; i++) {
        n += (size_t) snprintf(json + n, cap - n,
                               "%s{\"id\":\"t%03d\",\"run\":[\"sh\",\"-c\","
                               "\"sleep 0.2; echo $WAGGLE_TASK_TOKEN\"]}",
                               i ? "," : "", i);
    }
    snprintf(json + n, cap - n, "]}");
    int64_t plan = swarm_submit(s, json);
    free(json);
    return plan;
}

// How many of plan's tasks have succeeded (from status); -1 on failure.
static int
s_succeeded(swarm_t *s, int64_t plan)
{
    jnode_t *st = swarm_status(s, plan);
    const jnode_t *c = st ? json_obj_get(st, "counts") : NULL;
    int n = c ? (int) json_int(json_obj_get(c, "succeeded")) : -1;
    json_destroy(&st);
    return n;
}

static bool
s_wait_succeeded(swarm_t *s, int64_t plan, int at_least, int timeout_ms)
{
    int64_t end = clock_mono_ms() + timeout_ms;
    while (s_succeeded(s, plan) < at_least) {
        if (clock_mono_ms() > end) {
            return false;
        }
        usleep(100000);
    }
    return true;
}

// The ledger after a phase: every task succeeded once, with its own
// token's output; *on counts the tasks whose accepted attempt ran on the
// instance inst (may be NULL), *moved those that ran there without
// success and were accepted elsewhere.
static void
s_check_ledger(swarm_t *s, int64_t plan, const char *inst, int *on,
               int *moved)
{
    static attempts_t v;  // 256 rows per task: too big for the stack
    ledger_t *l = NULL;
    char err[256];
    REQUIRE(ledger_open(&l, s->db, LEDGER_RDONLY, err, sizeof err) == 0);
    *on = *moved = 0;
    for (int i = 0; i < N_TASKS; i++) {
        char id[8];
        snprintf(id, sizeof id, "t%03d", i);
        REQUIRE(attempts_read(s->db, plan, id, &v) == 0);
        CHECK_INT(attempts_count(&v, LEDGER_ATTEMPT_SUCCEEDED), 1);
        uint8_t *data = NULL;
        size_t len = 0;
        bool trunc = false;
        uint32_t which = 0;
        CHECK_INT(ledger_task_output(l, plan, id, 0, false, &data, &len,
                                     &trunc, &which), LEDGER_OK);
        bool lost_there = false;
        for (int k = 0; k < v.n; k++) {
            const attempt_row_t *a = &v.a[k];
            bool here = inst && strcmp(a->instance, inst) == 0;
            if (a->outcome != LEDGER_ATTEMPT_SUCCEEDED) {
                lost_there |= here;
                continue;
            }
            *on += here;
            *moved += lost_there && !here;
            // The accepted output is this attempt's own token: no other
            // lease's result was recorded for it.
            char want[32];
            snprintf(want, sizeof want, "%llu\n",
                     (unsigned long long) a->token);
            CHECK_INT(which, a->n);
            CHECK(data && len == strlen(want) && memcmp(data, want, len) == 0);
        }
        free(data);
    }
    ledger_destroy(&l);
}

// Phase 1: host B's link goes down mid-run and comes back.
static void
s_phase_cut(swarm_t *s)
{
    char binst[80] = "";
    int64_t plan = s_submit_plan(s, "cut");
    REQUIRE(plan > 0);
    // Both hosts at work, then B's cable is pulled.
    REQUIRE(s_wait_succeeded(s, plan, N_TASKS / 5, 60000));
    int leases = 0;
    int64_t end = clock_mono_ms() + 10000;
    while (swarm_drone_by_name(s, s_host_name[HOST_B], binst, sizeof binst,
                               &leases) && leases == 0 &&
           clock_mono_ms() < end) {
        usleep(20000);
    }
    REQUIRE(leases > 0);
    int64_t cut_ms = clock_mono_ms();
    REQUIRE(net_sh("ip link set %s down", s_net.veth[HOST_B]) == 0);
    // What the broker sends B goes unacknowledged: its kernel closes the
    // connection within three heartbeats, the broker gives B up, and C
    // takes over B's tasks (the leases' 10 s play no part).
    CHECK(swarm_wait_named(s, s_host_name[HOST_B], false, -1, 15000));
    int64_t took = clock_mono_ms() - cut_ms;
    fprintf(stderr, "%s: host B given up %lld ms after its link went down "
                    "(target 3000)\n", t_current, (long long) took);
    CHECK(took < 6000);
    int before = s_succeeded(s, plan);
    CHECK(s_wait_succeeded(s, plan, before + 20, 30000));
    REQUIRE(net_sh("ip link set %s up", s_net.veth[HOST_B]) == 0);
    int64_t up_ms = clock_mono_ms();
    // B reconnects (same instance, its session secret) and works again.
    CHECK(swarm_wait_named(s, s_host_name[HOST_B], true, -1, 60000));
    fprintf(stderr, "%s: host B back %lld ms after its link came up\n",
            t_current, (long long) (clock_mono_ms() - up_ms));
    char state[32];
    swarm_wait_plan(s, plan, 90, state, sizeof state);
    CHECK_STR(state, "succeeded");
    int on_b = 0, moved = 0;
    s_check_ledger(s, plan, binst, &on_b, &moved);
    fprintf(stderr, "%s: cut: %d tasks accepted from B, %d moved off B\n",
            t_current, on_b, moved);
    CHECK(moved > 0);
}

// Phase 2: 20% of packets dropped both ways on host C's link.
static void
s_phase_loss(swarm_t *s)
{
    const char *rule = "-m statistic --mode random --probability 0.2 -j DROP";
    REQUIRE(net_sh("ip netns exec %s iptables -A INPUT %s && "
                   "ip netns exec %s iptables -A OUTPUT %s",
                   s_net.ns[HOST_C], rule, s_net.ns[HOST_C], rule) == 0);
    char cinst[80] = "";
    int64_t plan = s_submit_plan(s, "loss");
    REQUIRE(plan > 0);
    char state[32];
    swarm_wait_plan(s, plan, 90, state, sizeof state);
    CHECK_STR(state, "succeeded");
    swarm_drone_by_name(s, s_host_name[HOST_C], cinst, sizeof cinst, NULL);
    REQUIRE(net_sh("ip netns exec %s iptables -F INPUT && "
                   "ip netns exec %s iptables -F OUTPUT",
                   s_net.ns[HOST_C], s_net.ns[HOST_C]) == 0);
    int on_c = 0, moved = 0;
    s_check_ledger(s, plan, cinst[0] ? cinst : NULL, &on_c, &moved);
    fprintf(stderr, "%s: loss: %d tasks accepted from C over the lossy "
                    "link\n", t_current, on_c);
}

static void
s_body(void)
{
    swarm_t *s = &s_swarm;
    swarm_init(s, HB_MS, LEASE_MS);
    s_swarm_up = true;
    // The drones' scratch directories: in the test's directory.
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s/tmp", t_tmpdir());
    setenv("TMPDIR", tmp, 1);
    fprintf(stderr, "%s: logs in %s (bridge %s)\n", t_current, s->dir,
            s_net.bridge);
    const char *port = strrchr(s->endpoint, ':');
    REQUIRE(port);
    char endpoint[128];
    snprintf(endpoint, sizeof endpoint, "tcp://%s%s", s_net.ip[HOST_A],
             port);
    snprintf(s->endpoint, sizeof s->endpoint, "%s", endpoint);
    // Keys before the broker starts: it reads the allow lists then.
    char keys[N_HOSTS][700];
    REQUIRE(s_host_keys(s, s_host_name[HOST_B], keys[HOST_B], 700));
    REQUIRE(s_host_keys(s, s_host_name[HOST_C], keys[HOST_C], 700));
    const char *wrap[] = {net_ip(), "netns", "exec", s_net.ns[HOST_A], NULL};
    REQUIRE(swarm_broker_wrapped(s, wrap, NULL) == 0);
    s_host_drone(s, HOST_B, keys[HOST_B]);
    s_host_drone(s, HOST_C, keys[HOST_C]);
    REQUIRE(swarm_wait_named(s, s_host_name[HOST_B], true, -1, 20000));
    REQUIRE(swarm_wait_named(s, s_host_name[HOST_C], true, -1, 20000));
    s_phase_cut(s);
    s_phase_loss(s);
}

static void
test_multihost_bridge(void)
{
    const char *why = s_net_up();
    if (why) {
        t_skip("%s", why);
        return;
    }
    s_body();
    s_net_down();
}

static const t_case_t t_cases[] = {
    T(test_multihost_bridge),
    {0},
};

T_MAIN(t_cases)
