// e2e: a drone whose key the broker does not accept says so in its log
// (instead of retrying in silence), and never gets work.
#include "tests/harness/proc.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"


static void
test_drone_unknown_key(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    // Another key set's drone key, with our broker's public key: the
    // broker's ZAP handler refuses it.
    char other[700], cmd[2200], log[700];
    snprintf(other, sizeof other, "%s/other", s.dir);
    char *kg[] = {(char *) swarm_bin("waggle-architect"), "keygen", other,
                  NULL};
    REQUIRE(proc_run(kg, 30000, NULL, NULL) == 0);
    snprintf(cmd, sizeof cmd, "cp %s/drone/broker.key %s/drone/broker.key",
             s.keys, other);
    REQUIRE(system(cmd) == 0);
    snprintf(log, sizeof log, "%s/stranger.log", s.dir);
    char *argv[] = {(char *) swarm_bin("waggle-drone"), "--broker",
                    s.endpoint, "--keys", other, NULL};
    pid_t pid = proc_spawn(argv, log, NULL);
    CHECK(swarm_wait_log(log, "refused key 'drone'", "allow list", 5000));
    proc_stop(pid, 5000);
    // Nobody with that key ever joined.
    char *out = NULL;
    CHECK_INT(swarm_arch(&s, &out, NULL, "status", "--json", NULL), 0);
    CHECK_HAS(out, "\"drones\": []");
    free(out);
    swarm_stop(&s);
}

static const t_case_t t_cases[] = {
    T(test_drone_unknown_key),
    {0},
};

T_MAIN(t_cases)
