// e2e: what scripts rely on at the command line of the three programs —
// --version, exit 64 on every usage error (with a hint at the right form of
// an endpoint), a distinct exit status for "no such plan", and JSON errors
// on stdout under --json.
#include "common/json.h"
#include "tests/harness/proc.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include <stdarg.h>

#define EXIT_USAGE 64
#define EXIT_NOT_FOUND 4

// Runs a built program with NULL-terminated args; stdout/stderr as
// proc_run.  Returns the exit status.
static int
s_run(const char *prog, char **out, char **err, ...)
{
    char *argv[24] = {(char *) swarm_bin(prog)};
    int n = 1;
    va_list ap;
    va_start(ap, err);
    const char *a;
    while (n < 23 && (a = va_arg(ap, const char *)) != NULL) {
        argv[n++] = (char *) a;
    }
    va_end(ap);
    argv[n] = NULL;
    return proc_run(argv, 20000, out, err);
}

static void
s_check_version(const char *prog)
{
    char *out = NULL;
    CHECK_INT(s_run(prog, &out, NULL, "--version", NULL), 0);
    char want[64];
    snprintf(want, sizeof want, "%s %s\n", prog, WAGGLE_VERSION);
    CHECK_STR(out, want);
    free(out);
}

static void
test_version(void)
{
    s_check_version("waggle-broker");
    s_check_version("waggle-drone");
    s_check_version("waggle-architect");
}

// One usage error: exit 64, and stderr names the problem.
static void
s_usage(const char *prog, const char *says, const char *a1, const char *a2,
        const char *a3)
{
    char *err = NULL;
    int rc = s_run(prog, NULL, &err, a1, a2, a3, NULL);
    if (rc != EXIT_USAGE) {
        fprintf(stderr, "%s %s %s %s: exit %d\n", prog, a1, a2 ? a2 : "",
                a3 ? a3 : "", rc);
    }
    CHECK_INT(rc, EXIT_USAGE);
    CHECK_HAS(err, says);
    free(err);
}

static void
test_usage_broker(void)
{
    const char *b = "waggle-broker";
    s_usage(b, "unknown option '--bogus'", "--bogus", NULL, NULL);
    s_usage(b, "not a whole number", "--heartbeat-ms", "12x", NULL);
    s_usage(b, "out of range", "--turn-ms", "0", NULL);
    s_usage(b, "unexpected argument 'extra'", "extra", NULL, NULL);
    s_usage(b, "needs a value", "--db", NULL, NULL);
    s_usage(b, "--lease-ms 100 must be at least 3 x", "--lease-ms", "100",
            NULL);
    s_usage(b, "not text or json", "--log-format", "xml", NULL);
    s_usage(b, "--max-frame 65536 must be at least", "--max-frame", "65536",
            NULL);
    s_usage(b, "e.g. tcp://", "--bind", "127.0.0.1:7600", NULL);
    s_usage(b, "port", "--bind", "tcp://127.0.0.1", NULL);
    s_usage(b, "port", "--bind", "tcp://127.0.0.1:99999", NULL);
}

static void
test_usage_drone(void)
{
    const char *d = "waggle-drone";
    s_usage(d, "unknown option '--bogus'", "--bogus", NULL, NULL);
    s_usage(d, "out of range", "--slots", "5000", NULL);
    s_usage(d, "unexpected argument 'extra'", "extra", NULL, NULL);
    s_usage(d, "not text or json", "--log-format", "xml", NULL);
    s_usage(d, "both --model-url and --model", "--model", "tiny", NULL);
    s_usage(d, "both --model-url and --model", "--model-url",
            "http://127.0.0.1:9/v1", NULL);
    s_usage(d, "out of range", "--model-timeout-s", "0", NULL);
    s_usage(d, "e.g. tcp://", "--broker", "127.0.0.1:7600", NULL);
    s_usage(d, "'ipc://'", "--broker", "ipc://", NULL);
    s_usage(d, "'udp://", "--broker", "udp://127.0.0.1:7600", NULL);
    // Tags over the protocol's limits: the broker would refuse every HELLO.
    char tag[80], tags[200];
    memset(tag, 'a', 65);
    tag[65] = '\0';
    s_usage(d, "longer than 64 bytes", "--tags", tag, NULL);
    tags[0] = '\0';
    for (int i = 0; i < 65; i++) {
        strcat(tags, "t,");
    }
    s_usage(d, "65 tags, more than the 64", "--tags", tags, NULL);
    // The environment is checked as strictly as the flags.
    setenv("WAGGLE_BROKER", "localhost:7600", 1);
    s_usage(d, "WAGGLE_BROKER", "--slots", "1", NULL);
    unsetenv("WAGGLE_BROKER");
}

static void
test_usage_architect(void)
{
    const char *a = "waggle-architect";
    s_usage(a, "unknown option '--bogus'", "--bogus", "ping", NULL);
    s_usage(a, "unknown command 'frobnicate'", "frobnicate", NULL, NULL);
    s_usage(a, "usage", NULL, NULL, NULL);
    s_usage(a, "e.g. tcp://", "--broker", "127.0.0.1:7600", "ping");
    s_usage(a, "not text or json", "--log-format", "xml", "ping");
    s_usage(a, "--role", "--role", "drone", "ping");
    s_usage(a, "usage", "wait", NULL, NULL);
    s_usage(a, "not a plan id", "wait", "abc", NULL);
    s_usage(a, "not a whole number", "wait", "1", "--timeout=x");
    s_usage(a, "usage", "status", "1", "2");
    s_usage(a, "unknown option '--nope'", "status", "--nope", NULL);
    s_usage(a, "usage", "output", "1", NULL);
    s_usage(a, "usage", "retry", "1", NULL);
    s_usage(a, "usage", "cancel", NULL, NULL);
    s_usage(a, "usage", "submit", NULL, NULL);
    s_usage(a, "unexpected argument", "ping", "extra", NULL);
    s_usage(a, "DIR is missing", "keygen", NULL, NULL);
    s_usage(a, "unknown option --nope", "keygen", "dir", "--nope");
}

// Each way the broker cannot start has its own status, whatever the paths
// say: a key directory whose name holds "ledger" is still a key problem.
static void
test_broker_start_status(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    char keys[700], db[700], *err = NULL;
    snprintf(keys, sizeof keys, "%s/ledger-keys", s.dir);
    CHECK_INT(s_run("waggle-broker", NULL, &err, "--bind", s.endpoint,
                    "--db", s.db, "--keys", keys, NULL),
              2);
    CHECK_HAS(err, "ledger-keys");
    free(err);
    err = NULL;
    snprintf(db, sizeof db, "%s/no/such/dir/ledger.db", s.dir);
    CHECK_INT(s_run("waggle-broker", NULL, &err, "--bind", s.endpoint,
                    "--db", db, "--keys", s.keys, NULL),
              3);
    free(err);
    err = NULL;
    // The endpoint is taken: the second broker (own ledger) cannot bind.
    REQUIRE(swarm_broker(&s, NULL) == 0);
    snprintf(db, sizeof db, "%s/other.db", s.dir);
    CHECK_INT(s_run("waggle-broker", NULL, &err, "--bind", s.endpoint,
                    "--db", db, "--keys", s.keys, NULL),
              2);
    free(err);
    swarm_stop(&s);
}

static const char *s_fails =
    "{\"name\":\"fails\",\"tasks\":[{\"id\":\"a\",\"retries\":0,"
    "\"run\":[\"false\"]}]}";

// "No such plan" has its own exit status, for every command taking a plan,
// and it differs from a plan that failed.
static void
test_unknown_plan(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    swarm_drone(&s, 1, NULL, NULL);
    char *err = NULL;
    CHECK_INT(swarm_arch(&s, NULL, &err, "wait", "999", "--timeout", "20",
                         NULL),
              EXIT_NOT_FOUND);
    CHECK_HAS(err, "no plan 999");
    free(err);
    CHECK_INT(swarm_arch(&s, NULL, NULL, "status", "999", NULL),
              EXIT_NOT_FOUND);
    CHECK_INT(swarm_arch(&s, NULL, NULL, "output", "999", "a", NULL),
              EXIT_NOT_FOUND);
    CHECK_INT(swarm_arch(&s, NULL, NULL, "cancel", "999", NULL),
              EXIT_NOT_FOUND);
    CHECK_INT(swarm_arch(&s, NULL, NULL, "retry", "999", "a", NULL),
              EXIT_NOT_FOUND);
    int64_t plan = swarm_submit(&s, s_fails);
    REQUIRE(plan > 0);
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    CHECK_INT(swarm_arch(&s, NULL, NULL, "wait", id, "--timeout", "30", NULL),
              1);
    CHECK_INT(swarm_arch(&s, NULL, NULL, "output", id, "nosuch", NULL),
              EXIT_NOT_FOUND);
    swarm_stop(&s);
}

// stdout holds exactly one JSON object {"error": {"code", "message"}}.
static void
s_check_json_error(const char *out, const char *code, const char *says)
{
    char why[128];
    jnode_t *root = out ? json_parse(out, strlen(out), why, sizeof why)
                        : NULL;
    if (!root) {
        fprintf(stderr, "not JSON on stdout: '%s'\n", out ? out : "(null)");
    }
    REQUIRE(root);
    const jnode_t *e = json_obj_get(root, "error");
    CHECK_STR(json_str(json_obj_get(e, "code")), code);
    CHECK_HAS(json_str(json_obj_get(e, "message")), says);
    json_destroy(&root);
}

static void
test_json_errors(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    char *out = NULL;
    CHECK_INT(swarm_arch(&s, &out, NULL, "--json", "status", "999", NULL),
              EXIT_NOT_FOUND);
    s_check_json_error(out, "not_found", "no plan 999");
    free(out);
    out = NULL;
    CHECK_INT(swarm_arch(&s, &out, NULL, "wait", "999", "--json", NULL),
              EXIT_NOT_FOUND);
    s_check_json_error(out, "not_found", "no plan 999");
    free(out);
    out = NULL;
    CHECK_INT(swarm_arch(&s, &out, NULL, "--json", "wait", NULL),
              EXIT_USAGE);
    s_check_json_error(out, "usage", "wait PLAN");
    free(out);
    out = NULL;
    CHECK_INT(swarm_arch(&s, &out, NULL, "keygen", "--json", NULL),
              EXIT_USAGE);
    s_check_json_error(out, "usage", "DIR is missing");
    free(out);
    out = NULL;
    // WAGGLE_JSON=1 is the same as --json.
    setenv("WAGGLE_JSON", "1", 1);
    CHECK_INT(swarm_arch(&s, &out, NULL, "cancel", "999", NULL),
              EXIT_NOT_FOUND);
    unsetenv("WAGGLE_JSON");
    s_check_json_error(out, "not_found", "no plan 999");
    free(out);
    out = NULL;
    // An invalid workplan: the validator's findings travel as details.
    char bad[700];
    snprintf(bad, sizeof bad, "%s/bad.json", s.dir);
    REQUIRE(t_write_file(bad, "{\"name\":\"x\",\"tasks\":[{\"id\":\"a\"}]}")
            == 0);
    CHECK_INT(swarm_arch(&s, &out, NULL, "--json", "submit", bad, NULL), 1);
    s_check_json_error(out, "invalid", "invalid");
    CHECK_HAS(out, "\"details\"");
    free(out);
    out = NULL;
    swarm_stop(&s);
    // Nobody listens: exit 3 and a JSON error all the same.
    char *argv[] = {(char *) swarm_bin("waggle-architect"), "--broker",
                    s.endpoint, "--keys", s.keys, "--connect-timeout-ms",
                    "300", "--json", "ping", NULL};
    CHECK_INT(proc_run(argv, 20000, &out, NULL), 3);
    s_check_json_error(out, "unreachable", "");
    free(out);
}

static const t_case_t t_cases[] = {
    T(test_version),
    T(test_usage_broker),
    T(test_usage_drone),
    T(test_usage_architect),
    T(test_broker_start_status),
    T(test_unknown_plan),
    T(test_json_errors),
    {0},
};

T_MAIN(t_cases)
