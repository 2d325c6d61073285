// e2e fault: a network cut.  One drone runs in its own network namespace,
// joined to the host by a veth pair; iptables DROP inside the namespace cuts
// it off while it holds a lease.  The broker gives the drone up (nothing it
// sends there is acknowledged) and re-runs the task elsewhere; once the link heals, the
// cut-off drone's result is fenced.  Needs root, `ip netns` and iptables;
// otherwise it is skipped (exit 77).  (No tc netem on this machine:
// PITFALLS.md "This machine".)
#include "broker/ledger.h"
#include "tests/harness/proc.h"
#include "tests/harness/attempts.h"
#include "tests/harness/net.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include "common/clock.h"

#include <signal.h>
#include <sys/wait.h>

#define HB_MS 100
#define LEASE_MS 1500
#define NS_PREFIX "wgf"

static char s_ns[32];           // namespace name, "" when none is set up
static char s_veth_host[16];    // host end of the veth pair
static char s_ip_host[32], s_ip_ns[32];

static void
s_net_down(void)
{
    if (!s_ns[0]) {
        return;
    }
    // Deleting the namespace destroys its veth end and so the pair (and
    // its iptables rules with it).
    net_sh("ip netns del %s", s_ns);
    net_sh("ip link del %s 2>/dev/null || true", s_veth_host);
    s_ns[0] = '\0';
}

// Sets up the namespace and the veth pair.  Returns NULL, or why not (the
// test is then skipped).
static const char *
s_net_up(void)
{
    const char *why = net_usable();
    if (why) {
        return why;
    }
    net_sweep_stale(NS_PREFIX);
    long pid = (long) getpid();
    snprintf(s_ns, sizeof s_ns, NS_PREFIX "%ld", pid);
    snprintf(s_veth_host, sizeof s_veth_host, NS_PREFIX "h%ld", pid);
    char veth_ns[16];
    snprintf(veth_ns, sizeof veth_ns, NS_PREFIX "n%ld", pid);
    // A /30 of 10.213.0.0/16 chosen by pid, so parallel runs do not clash.
    int c = (int) ((pid / 64) % 256), d = (int) (pid % 64) * 4;
    snprintf(s_ip_host, sizeof s_ip_host, "10.213.%d.%d", c, d + 1);
    snprintf(s_ip_ns, sizeof s_ip_ns, "10.213.%d.%d", c, d + 2);
    if (net_sh("ip netns add %s", s_ns) != 0) {
        s_ns[0] = '\0';
        return "'ip netns add' failed";
    }
    if (net_sh("ip link add %s type veth peer name %s && "
             "ip link set %s netns %s && "
             "ip addr add %s/30 dev %s && ip link set %s up && "
             "ip netns exec %s ip addr add %s/30 dev %s && "
             "ip netns exec %s ip link set %s up && "
             "ip netns exec %s ip link set lo up",
             s_veth_host, veth_ns, veth_ns, s_ns, s_ip_host, s_veth_host,
             s_veth_host, s_ns, s_ip_ns, veth_ns, s_ns, veth_ns,
             s_ns) != 0) {
        s_net_down();
        return "cannot set up the veth pair";
    }
    if (net_sh("ip netns exec %s iptables -L -n >/dev/null", s_ns) != 0) {
        s_net_down();
        return "iptables does not work in a network namespace";
    }
    return NULL;
}

static int
s_cut(bool cut)
{
    if (cut) {
        return net_sh("ip netns exec %s iptables -A INPUT -j DROP && "
                    "ip netns exec %s iptables -A OUTPUT -j DROP",
                    s_ns, s_ns);
    }
    return net_sh("ip netns exec %s iptables -F INPUT && "
                "ip netns exec %s iptables -F OUTPUT",
                s_ns, s_ns);
}

// The swarm is kept here so that it is stopped (and the namespace can go)
// however the scenario ends.
static swarm_t s_swarm;
static bool s_swarm_up;

// The scenario, once the namespace is up.
static void
s_cut_body(void)
{
#define s (s_swarm)
    swarm_init(&s, HB_MS, LEASE_MS);
    s_swarm_up = true;
    fprintf(stderr, "%s: logs in %s (namespace %s, %s <-> %s)\n", t_current,
            s.dir, s_ns, s_ip_host, s_ip_ns);
    // Same port, on the host end of the veth pair: reachable from the
    // namespace and from the host.
    const char *port = strrchr(s.endpoint, ':');
    REQUIRE(port);
    char endpoint[128];
    snprintf(endpoint, sizeof endpoint, "tcp://%s%s", s_ip_host, port);
    snprintf(s.endpoint, sizeof s.endpoint, "%s", endpoint);
    REQUIRE(swarm_broker(&s, "--verbose", NULL) == 0);

    const char *wrap[] = {net_ip(), "netns", "exec", s_ns, NULL};
    swarm_drone_wrapped(&s, wrap, 1, "cut", "--verbose", NULL);
    REQUIRE(swarm_wait_drone(&s, "cut", true, -1, 15000));
    char cinst[64] = "", hinst[64] = "";
    CHECK(swarm_drone_by_tag(&s, "cut", cinst, sizeof cinst, NULL));

    char runs[700], clog[700], blog[700];
    snprintf(runs, sizeof runs, "%s/runs.txt", s.dir);
    snprintf(clog, sizeof clog, "%s/drone-0.log", s.dir);
    snprintf(blog, sizeof blog, "%s/broker.log", s.dir);
    char json[2048];
    snprintf(json, sizeof json,
             "{\"name\":\"cut\",\"defaults\":{\"retries\":2},\"tasks\":["
             "{\"id\":\"t\",\"run\":[\"sh\",\"-c\",\"echo \\\"$$ started by "
             "$WAGGLE_TASK_TOKEN\\\" >> %s; sleep 4; echo done\"]}]}",
             runs);
    int64_t plan = swarm_submit(&s, json);
    REQUIRE(plan > 0);
    REQUIRE(swarm_wait_lines(runs, 1, 15000));
    long pid1 = 0, pid2 = 0;
    unsigned long long tok1 = 0, tok2 = 0;
    REQUIRE(swarm_run_line(runs, 0, &pid1, &tok1));

    // Cut the link while it holds the lease; a drone on the host takes
    // over once the broker has given the cut-off drone up.
    REQUIRE(s_cut(true) == 0);
    swarm_drone(&s, 1, "host", NULL);
    CHECK(swarm_wait_lines(runs, 2, LEASE_MS + 15000));
    char state[32];
    swarm_wait_plan(&s, plan, 25, state, sizeof state);
    CHECK_STR(state, "succeeded");
    CHECK(swarm_drone_by_tag(&s, "host", hinst, sizeof hinst, NULL));
    CHECK(swarm_run_line(runs, 1, &pid2, &tok2));
    CHECK(tok2 > tok1);
    // Execution overlapped (at least once); the cut-off copy ends on its
    // own, its RESULT stuck in that drone's outbox.
    CHECK(proc_gone((pid_t) pid1, 10000));

    // Heal.  The cut-off drone reconnects and delivers its result, which
    // the broker's fence answers `stale`.
    REQUIRE(s_cut(false) == 0);
    char tok[48];
    snprintf(tok, sizeof tok, "token %llu from", tok1);
    CHECK(swarm_wait_log(blog, tok, ": stale", 15000));
    CHECK(swarm_wait_drone(&s, "cut", true, 0, 15000));
    swarm_wait_plan(&s, plan, 5, state, sizeof state);
    CHECK_STR(state, "succeeded");
    swarm_stop(&s);

    // Exactly one accepted attempt: the host drone's.
    attempts_t v;
    REQUIRE(attempts_read(s.db, plan, "t", &v) == 0);
    ledger_t *l = NULL;
    char err[256];
    REQUIRE(ledger_open(&l, s.db, LEDGER_RDONLY, err, sizeof err) == 0);
    int succeeded = 0;
    uint32_t accepted = 0;
    for (int i = 0; i < v.n; i++) {
        if (v.a[i].outcome == LEDGER_ATTEMPT_SUCCEEDED) {
            succeeded++;
            accepted = v.a[i].n;
            CHECK_INT(v.a[i].token, tok2);
            CHECK_STR(v.a[i].instance, hinst);
        }
        if (i > 0 && strcmp(v.a[i].instance, cinst) == 0) {
            fprintf(stderr, "attempt %u (token %llu) was leased to the "
                            "cut-off drone %s again\n", v.a[i].n,
                    (unsigned long long) v.a[i].token, cinst);
            t_failures++;
        }
    }
    CHECK_INT(succeeded, 1);
    CHECK_INT(v.n, 2);
    if (v.n >= 1) {
        // Cut off, it acknowledged nothing the broker sent: the broker's
        // kernel closed the connection, the broker gave the drone up and
        // the lease was lost (the first loss of a task uses no attempt).
        CHECK_INT(v.a[0].token, tok1);
        CHECK_INT(v.a[0].outcome, LEDGER_ATTEMPT_RELEASED);
        CHECK_STR(v.a[0].instance, cinst);
    }
    uint8_t *data = NULL;
    size_t len = 0;
    bool trunc = false;
    uint32_t which = 0;
    CHECK(ledger_task_output(l, plan, "t", 1, false, &data, &len, &trunc,
                             &which) != LEDGER_ERROR);
    CHECK_INT(len, 0);
    free(data);
    data = NULL;
    CHECK_INT(ledger_task_output(l, plan, "t", 0, false, &data, &len, &trunc,
                                 &which),
              LEDGER_OK);
    CHECK_INT(which, accepted);
    CHECK(len == 5 && data && memcmp(data, "done\n", 5) == 0);
    free(data);
    ledger_destroy(&l);
#undef s
}

static void
test_net_cut(void)
{
    const char *why = s_net_up();
    if (why) {
        t_skip("%s", why);
        return;
    }
    atexit(s_net_down);
    s_cut_body();
    if (s_swarm_up) {
        swarm_stop(&s_swarm);  // a no-op when the scenario got that far
    }
    s_net_down();
}

static const t_case_t t_cases[] = {
    T(test_net_cut),
    {0},
};

T_MAIN(t_cases)
