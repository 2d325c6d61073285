// e2e refusals: invalid workplans (refused by the architect before anything
// is sent, or by the broker for kinds it cannot run), idempotency keys, and
// authentication: unknown keys, a drone key used to submit, what a
// submitter key may do, an unreachable broker and a second broker on a
// locked ledger.
#include "common/clock.h"
#include "common/xalloc.h"
#include "tests/harness/proc.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include <sys/stat.h>
#include <sys/wait.h>

// Writes json to DIR/name; returns the path (static buffer).
static const char *
s_file(const swarm_t *s, const char *name, const char *json)
{
    static char path[700];
    snprintf(path, sizeof path, "%s/%s", s->dir, name);
    if (t_write_file(path, json) != 0) {
        fprintf(stderr, "cannot write '%s'\n", path);
        abort();
    }
    return path;
}

// The number of plans in the overview; -1 on failure.
static int
s_plan_count(swarm_t *s)
{
    char *out = NULL;
    int rc = swarm_arch(s, &out, NULL, "status", "--json", NULL);
    jnode_t *ov = rc == 0 ? json_parse(out, strlen(out), NULL, 0) : NULL;
    free(out);
    const jnode_t *plans = json_obj_get(ov, "plans");
    int n = plans ? (int) json_arr_size(plans) : -1;
    json_destroy(&ov);
    return n;
}

typedef struct {
    const char *name;
    const char *json;
    const char *needle[2];   // what stderr must say (path, sentence)
} s_invalid_t;

static const s_invalid_t s_invalid[] = {
    {"unknown-field",
     "{\"name\":\"x\",\"tasks\":[{\"id\":\"a\",\"run\":[\"true\"],"
     "\"bogus\":1}]}",
     {"tasks[0].bogus", "unknown field"}},
    {"duplicate-id",
     "{\"name\":\"x\",\"tasks\":[{\"id\":\"a\",\"run\":[\"true\"]},"
     "{\"id\":\"a\",\"run\":[\"true\"]}]}",
     {"tasks[1].id", "duplicate id 'a'"}},
    {"missing-need",
     "{\"name\":\"x\",\"tasks\":[{\"id\":\"a\",\"run\":[\"true\"],"
     "\"needs\":[\"zz\"]}]}",
     {"tasks[0].needs[0]", "zz"}},
    {"cycle",
     "{\"name\":\"x\",\"tasks\":[{\"id\":\"a\",\"run\":[\"true\"],"
     "\"needs\":[\"c\"]},{\"id\":\"b\",\"run\":[\"true\"],\"needs\":[\"a\"]},"
     "{\"id\":\"c\",\"run\":[\"true\"],\"needs\":[\"b\"]}]}",
     {"cycle", "a -> c -> b -> a"}},
    {"bad-type",
     "{\"name\":\"x\",\"tasks\":[{\"id\":\"a\",\"run\":[\"true\"],"
     "\"retries\":\"two\"}]}",
     {"tasks[0].retries", "expected an integer"}},
    {"invalid-json", "{\"name\":\"x\",\"tasks\":[{\"id\":\"a\",",
     {"line ", "column"}},
};

static void
test_invalid_workplans(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    for (size_t i = 0; i < sizeof s_invalid / sizeof s_invalid[0]; i++) {
        const s_invalid_t *c = &s_invalid[i];
        char name[64];
        snprintf(name, sizeof name, "%s.json", c->name);
        char *out = NULL, *err = NULL;
        int rc = swarm_arch(&s, &out, &err, "submit", s_file(&s, name, c->json),
                            NULL);
        if (rc != 1) {
            fprintf(stderr, "%s: exit %d (expected 1)\n", c->name, rc);
            t_failures++;
        }
        CHECK_STR(out, "");
        CHECK_HAS(err, c->needle[0]);
        CHECK_HAS(err, c->needle[1]);
        free(out);
        free(err);
    }
    // Refused locally: the broker never heard of any of them.
    CHECK_INT(s_plan_count(&s), 0);
    swarm_stop(&s);
}

static const char *s_prompt_plan =
    "{\"name\":\"kinds\",\"tasks\":["
    "{\"id\":\"a\",\"run\":[\"true\"]},"
    "{\"id\":\"b\",\"needs\":[\"a\"],\"prompt\":\"say {{a.output}}\","
    "\"model\":\"tiny\"}]}";

// A prompt task is accepted: it requires the tag "model" (and
// "model:NAME"), so submit warns while no drone offers one, and it stays
// ready on a swarm whose drones have no model while the run task before it
// succeeds.  (Gate tasks are accepted too: test_gates.c.)
static void
test_prompt_without_model_drone(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    REQUIRE(swarm_drone(&s, 1, "plain", NULL) >= 0);
    REQUIRE(swarm_wait_drone(&s, "plain", true, -1, 10000));
    char *out = NULL, *err = NULL;
    CHECK_INT(swarm_arch(&s, &out, &err, "submit",
                         s_file(&s, "prompt.json", s_prompt_plan), NULL),
              0);
    CHECK_HAS(err, "warning");
    CHECK_HAS(err, "'model'");
    CHECK_HAS(err, "'model:tiny'");
    int64_t plan = strtoll(out, NULL, 10);
    REQUIRE(plan > 0);
    free(out);
    free(err);
    CHECK(swarm_wait_task(&s, plan, "a", "succeeded", 30));
    CHECK(swarm_wait_task(&s, plan, "b", "ready", 30));
    // Well past a dispatch round: still nobody to run it.
    CHECK(!swarm_wait_task(&s, plan, "b", "leased", 2));
    CHECK_INT(s_plan_count(&s), 1);
    swarm_stop(&s);
}

static const char *s_idem_a =
    "{\"name\":\"idem\",\"tasks\":[{\"id\":\"a\",\"run\":[\"echo\",\"a\"]}]}";
static const char *s_idem_b =
    "{\"name\":\"idem\",\"tasks\":[{\"id\":\"a\",\"run\":[\"echo\",\"b\"]}]}";

static void
test_idempotency(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    const char *a = s_file(&s, "a.json", s_idem_a);
    char *out1 = NULL, *out2 = NULL, *err = NULL;
    CHECK_INT(swarm_arch(&s, &out1, NULL, "submit", a, "--idempotency-key",
                         "k1", NULL), 0);
    CHECK_INT(swarm_arch(&s, &out2, &err, "submit", a, "--idempotency-key",
                         "k1", NULL), 0);
    CHECK(out1 && strtoll(out1, NULL, 10) > 0);
    CHECK_STR(out2, out1);
    CHECK_HAS(err, "idempotency key");
    free(out2);
    free(err);
    out2 = err = NULL;
    const char *b = s_file(&s, "b.json", s_idem_b);
    CHECK_INT(swarm_arch(&s, &out2, &err, "submit", b, "--idempotency-key",
                         "k1", NULL), 1);
    CHECK_STR(out2, "");
    CHECK_HAS(err, "CONFLICT");
    free(out2);
    free(err);
    out2 = err = NULL;
    // Another key makes another plan.
    CHECK_INT(swarm_arch(&s, &out2, NULL, "submit", b, "--idempotency-key",
                         "k2", NULL), 0);
    CHECK(out2 && out1 && strcmp(out1, out2) != 0);
    free(out2);
    out2 = NULL;
    // Keys are per submitting key name: the submitter's k1 is its own.
    CHECK_INT(swarm_arch_as(&s, NULL, "submitter", &out2, NULL, "submit", a,
                            "--idempotency-key", "k1", NULL), 0);
    CHECK(out2 && out1 && strcmp(out1, out2) != 0);
    free(out1);
    free(out2);
    CHECK_INT(s_plan_count(&s), 3);
    swarm_stop(&s);
}

// Copies src to dst keeping mode 0600.
static void
s_copy(const char *src, const char *dst)
{
    char *text = t_read_file(src, NULL);
    REQUIRE(text);
    REQUIRE(t_write_file(dst, text) == 0);
    chmod(dst, 0600);
    free(text);
}

// Runs ping and status with the key bundle in dir; each must be refused
// with exit 3 within 5 s, saying so with needle.
static void
s_refused(swarm_t *s, const char *dir, const char *needle)
{
    const char *cmds[] = {"ping", "status"};
    for (int i = 0; i < 2; i++) {
        char *err = NULL;
        int64_t t0 = clock_mono_ms();
        CHECK_INT(swarm_arch_as(s, dir, NULL, NULL, &err, cmds[i], NULL), 3);
        int64_t took = clock_mono_ms() - t0;
        if (took >= 5000) {
            fprintf(stderr, "%s took %lld ms to be refused\n", cmds[i],
                    (long long) took);
            t_failures++;
        }
        CHECK_HAS(err, needle);
        free(err);
    }
}

// A key set from another keygen.  Its whole operator bundle also names
// another broker's public key, so the CurveZMQ handshake itself fails; its
// operator key with our broker.key reaches ZAP, which refuses it.
static void
test_unknown_key(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    char other[700], mixed[700], sub[800], src[800], dst[900];
    snprintf(other, sizeof other, "%s/other-keys", s.dir);
    char *argv[] = {(char *) swarm_bin("waggle-architect"), "keygen", other,
                    NULL};
    REQUIRE(proc_run(argv, 30000, NULL, NULL) == 0);
    s_refused(&s, other, "handshake");
    snprintf(mixed, sizeof mixed, "%s/mixed-keys", s.dir);
    snprintf(sub, sizeof sub, "%s/operator", mixed);
    REQUIRE(mkdir(mixed, 0700) == 0 && mkdir(sub, 0700) == 0);
    const char *files[] = {"operator.key", "operator.key_secret"};
    for (int i = 0; i < 2; i++) {
        snprintf(src, sizeof src, "%s/operator/%s", other, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", sub, files[i]);
        s_copy(src, dst);
    }
    snprintf(src, sizeof src, "%s/operator/broker.key", s.keys);
    snprintf(dst, sizeof dst, "%s/broker.key", sub);
    s_copy(src, dst);
    s_refused(&s, mixed, "not in the broker's allow list");
    // Our own key still works.
    CHECK_INT(swarm_arch(&s, NULL, NULL, "ping", NULL), 0);
    swarm_stop(&s);
}

static void
test_drone_key_forbidden(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    char dir[700], sub[800], src[800], dst[900];
    snprintf(dir, sizeof dir, "%s/imposter", s.dir);
    snprintf(sub, sizeof sub, "%s/submitter", dir);
    REQUIRE(mkdir(dir, 0700) == 0 && mkdir(sub, 0700) == 0);
    const char *files[] = {"drone.key", "drone.key_secret", "broker.key"};
    for (int i = 0; i < 3; i++) {
        snprintf(src, sizeof src, "%s/drone/%s", s.keys, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", sub, files[i]);
        s_copy(src, dst);
    }
    const char *plan = s_file(&s, "p.json", s_idem_a);
    char *out = NULL, *err = NULL;
    CHECK_INT(swarm_arch_as(&s, dir, "submitter", &out, &err, "submit", plan,
                            NULL), 3);
    CHECK_STR(out, "");
    CHECK_HAS(err, "FORBIDDEN");
    free(out);
    free(err);
    out = err = NULL;
    CHECK_INT(swarm_arch_as(&s, dir, "submitter", &out, &err, "status", NULL),
              3);
    CHECK_HAS(err, "FORBIDDEN");
    free(out);
    free(err);
    CHECK_INT(s_plan_count(&s), 0);
    swarm_stop(&s);
}

static const char *s_sub_plan =
    "{\"name\":\"sub\",\"tasks\":["
    "{\"id\":\"a\",\"run\":[\"echo\",\"hello\"]},"
    "{\"id\":\"f\",\"retries\":0,\"run\":[\"false\"]}]}";
static const char *s_sleep_plan =
    "{\"name\":\"sleepy\",\"tasks\":["
    "{\"id\":\"z\",\"run\":[\"sleep\",\"30\"]}]}";

// Runs the architect as the submitter; returns its exit code.
static int
s_sub(swarm_t *s, char **out, const char *a, const char *b, const char *c,
      const char *d)
{
    return swarm_arch_as(s, NULL, "submitter", out, NULL, a, b, c, d, NULL);
}

static void
test_submitter_can(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    swarm_drone(&s, 2, NULL, NULL);
    char *out = NULL;
    CHECK_INT(s_sub(&s, &out, "ping", NULL, NULL, NULL), 0);
    CHECK_HAS(out, "submitter");
    free(out);
    out = NULL;
    CHECK_INT(s_sub(&s, &out, "submit", s_file(&s, "s.json", s_sub_plan),
                    NULL, NULL), 0);
    char id[32];
    snprintf(id, sizeof id, "%lld", out ? strtoll(out, NULL, 10) : 0LL);
    free(out);
    CHECK_INT(s_sub(&s, NULL, "wait", id, "--timeout", "30"), 1);
    CHECK_INT(s_sub(&s, NULL, "status", id, NULL, NULL), 0);
    out = NULL;
    CHECK_INT(s_sub(&s, &out, "output", id, "a", NULL), 0);
    CHECK_STR(out, "hello\n");
    free(out);
    CHECK_INT(s_sub(&s, NULL, "retry", id, "f", NULL), 0);
    CHECK_INT(s_sub(&s, NULL, "wait", id, "--timeout", "30"), 1);
    out = NULL;
    CHECK_INT(s_sub(&s, &out, "submit", s_file(&s, "z.json", s_sleep_plan),
                    NULL, NULL), 0);
    snprintf(id, sizeof id, "%lld", out ? strtoll(out, NULL, 10) : 0LL);
    free(out);
    CHECK_INT(s_sub(&s, NULL, "cancel", id, NULL, NULL), 0);
    char state[32];
    swarm_wait_plan(&s, strtoll(id, NULL, 10), 10, state, sizeof state);
    CHECK_STR(state, "cancelled");
    swarm_stop(&s);
}

static void
test_unreachable(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", swarm_free_port());
    char *argv[] = {(char *) swarm_bin("waggle-architect"), "--broker", ep,
                    "--keys", s.keys, "--connect-timeout-ms", "1500",
                    "status", NULL};
    char *err = NULL;
    int64_t t0 = clock_mono_ms();
    CHECK_INT(proc_run(argv, 30000, NULL, &err), 3);
    int64_t took = clock_mono_ms() - t0;
    if (took > 1500 + 1500) {
        fprintf(stderr, "status took %lld ms to give up\n", (long long) took);
        t_failures++;
    }
    CHECK_HAS(err, "cannot reach the broker");
    free(err);
}

static void
test_second_broker(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    char ep[64], pid[32];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", swarm_free_port());
    snprintf(pid, sizeof pid, "pid %d", (int) s.broker);
    char *argv[] = {(char *) swarm_bin("waggle-broker"), "--bind", ep,
                    "--db", s.db, "--keys", s.keys, "--heartbeat-ms", "100",
                    "--lease-ms", "2000", NULL};
    char *out = NULL, *err = NULL;
    CHECK_INT(proc_run(argv, 20000, &out, &err), 3);
    CHECK(!strstr(out ? out : "", "READY"));
    CHECK_HAS(err, pid);
    free(out);
    free(err);
    // The first one is unharmed.
    CHECK_INT(swarm_arch(&s, NULL, NULL, "ping", NULL), 0);
    swarm_stop(&s);
}

// Plans and tasks that do not exist, and bad usage.
static void
test_not_found(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    const char *cmds[][4] = {
        {"status", "999", NULL, NULL},
        {"cancel", "999", NULL, NULL},
        {"retry", "999", "a", NULL},
        {"output", "999", "a", NULL},
        {"wait", "999", "--timeout", "5"},
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char *err = NULL;
        CHECK_INT(swarm_arch(&s, NULL, &err, cmds[i][0], cmds[i][1],
                             cmds[i][2], cmds[i][3], NULL), 4);
        CHECK_HAS(err, "NOT_FOUND");
        free(err);
    }
    int64_t plan = swarm_submit(&s, s_idem_a);
    REQUIRE(plan > 0);
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    char *err = NULL;
    CHECK_INT(swarm_arch(&s, NULL, &err, "output", id, "nosuch", NULL), 4);
    CHECK_HAS(err, "NOT_FOUND");
    free(err);
    CHECK_INT(swarm_arch(&s, NULL, NULL, "status", "abc", NULL), 64);
    CHECK_INT(swarm_arch(&s, NULL, NULL, "retry", id, NULL), 64);
    CHECK_INT(swarm_arch(&s, NULL, NULL, "frobnicate", NULL), 64);
    swarm_stop(&s);
}

static const t_case_t t_cases[] = {
    T(test_invalid_workplans),
    T(test_prompt_without_model_drone),
    T(test_idempotency),
    T(test_not_found),
    T(test_unknown_key),
    T(test_drone_key_forbidden),
    T(test_submitter_can),
    T(test_unreachable),
    T(test_second_broker),
    {0},
};

T_MAIN(t_cases)
