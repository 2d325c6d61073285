// e2e limits: swarm-wide model limits (`--model-limit NAME=N`).  Ten prompt
// tasks of model "tiny" on three drones with four slots each, under a limit
// of one: fake_llm (answering slowly) never sees two calls at once, a ready
// task says it waits for the limit, and the plan still finishes.  Requests
// per minute (`--model-rpm`, its window shortened for the test): six prompt
// tasks on three drones under a limit of three are leased at most three in
// any window (the ledger's lease times) and reach fake_llm so.
#include "common/json.h"
#include "common/xalloc.h"
#include "tests/harness/attempts.h"
#include "tests/harness/llm.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define S_TASKS 10
#define S_RPM_TASKS 6
#define S_WINDOW_MS 3000

// The largest number in LOG.flight (fake_llm's in-flight count at each
// request's arrival), or -1 when it cannot be read.
static int
s_max_in_flight(const llm_t *llm)
{
    char path[600];
    snprintf(path, sizeof path, "%s.flight", llm->log);
    FILE *f = fopen(path, "r");
    if (!f) {
        return -1;
    }
    int max = 0, n;
    while (fscanf(f, "%d", &n) == 1) {
        max = n > max ? n : max;
    }
    fclose(f);
    return max;
}

static char *
s_script_n(int n)
{
    char *s = xstrdup("[");
    for (int i = 0; i < n; i++) {
        char *next = xasprintf("%s%s{\"content\": \"ok\", \"delay_ms\": 400}",
                               s, i ? "," : "");
        free(s);
        s = next;
    }
    char *done = xasprintf("%s]", s);
    free(s);
    return done;
}

static char *
s_plan_json_n(int n)
{
    char *s = xstrdup("{\"name\": \"limited\", \"tasks\": [");
    for (int i = 0; i < n; i++) {
        char *next = xasprintf("%s%s{\"id\": \"p%d\", \"prompt\": \"say %d\","
                               " \"model\": \"tiny\", \"max_tokens\": 20}",
                               s, i ? "," : "", i, i);
        free(s);
        s = next;
    }
    char *done = xasprintf("%s]}", s);
    free(s);
    return done;
}

// fake_llm answering n requests "ok" after 400 ms each.
static int
s_llm_start(llm_t *llm, int n)
{
    char *script = s_script_n(n);
    int rc = llm_start(llm, t_tmpdir(), script);
    free(script);
    return rc;
}

// Three drones d1..d3 with slots slots each, running model "tiny".
static bool
s_three_drones(swarm_t *s, const llm_t *llm, int slots)
{
    const char *tags[] = {"d1", "d2", "d3"};
    for (int i = 0; i < 3; i++) {
        swarm_drone(s, slots, tags[i], "--model-url", llm->url, "--model",
                    "tiny", "--model-timeout-s", "60", NULL);
        if (!swarm_wait_drone(s, tags[i], true, -1, 20000)) {
            return false;
        }
    }
    return true;
}

static void
test_limit_of_one(void)
{
    llm_t llm = {0};
    REQUIRE(s_llm_start(&llm, S_TASKS) == 0);
    swarm_t s;
    swarm_init(&s, 100, 2000);
    SWARM_REQUIRE(&s, swarm_broker(&s, "--model-limit", "other=3",
                                   "--model-limit", "tiny=1", NULL) == 0);
    SWARM_REQUIRE(&s, s_three_drones(&s, &llm, 4));
    char *json = s_plan_json_n(S_TASKS);
    int64_t plan = swarm_submit(&s, json);
    free(json);
    SWARM_REQUIRE(&s, plan > 0);
    CHECK(swarm_wait_reason(&s, plan, "model limit reached (1 in flight)",
                        20000));
    // The last task waits its turn for at least 3.6 s (nine calls of
    // 0.4 s, one at a time): explain names the model and its limit.
    char *out = swarm_explain(&s, plan, "p9");
    CHECK(out && strstr(out, "\"code\": \"model_limit\"") &&
          strstr(out, "\"model\": \"tiny\"") && strstr(out, "\"limit\": 1"));
    free(out);
    char state[64];
    swarm_wait_plan(&s, plan, 90, state, sizeof state);
    CHECK_STR(state, "succeeded");
    CHECK_INT(llm_count(&llm), S_TASKS);
    CHECK_INT(s_max_in_flight(&llm), 1);
    swarm_stop(&s);
    llm_stop(&llm);
}

// Times (ms) read one a line from path into t (at most max); how many.
static int
s_read_times(const char *path, int64_t *t, int max)
{
    FILE *f = fopen(path, "r");
    int n = 0;
    long long v;
    while (f && n < max && fscanf(f, "%lld", &v) == 1) {
        t[n++] = v;
    }
    if (f) {
        fclose(f);
    }
    return n;
}

static int
s_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return (x > y) - (x < y);
}

// The shortest span covering limit + 1 consecutive times (sorted in
// place): a limit of N per window holds while it is at least the window.
static int64_t
s_min_span(int64_t *t, int n, int limit)
{
    qsort(t, (size_t) n, sizeof *t, s_cmp_i64);
    int64_t min = INT64_MAX;
    for (int i = 0; i + limit < n; i++) {
        min = t[i + limit] - t[i] < min ? t[i + limit] - t[i] : min;
    }
    return min;
}

// Six prompt tasks, three drones with two slots each, --model-rpm tiny=3
// over a 3 s window: at most three leases in any window, the fourth and
// later wait with a reason naming the limit and when it opens, and all six
// finish.  With restart, the broker is killed and restarted while they
// wait: it refills the window from the ledger's lease times, so the limit
// holds across it.
static void
s_rpm(bool restart)
{
    llm_t llm = {0};
    REQUIRE(s_llm_start(&llm, S_RPM_TASKS) == 0);
    swarm_t s;
    swarm_init(&s, 100, 2000);
    char window[16];
    snprintf(window, sizeof window, "%d", S_WINDOW_MS);
    SWARM_REQUIRE(&s, swarm_broker(&s, "--model-rpm", "tiny=3",
                                   "--model-rpm-window-ms", window,
                                   NULL) == 0);
    SWARM_REQUIRE(&s, s_three_drones(&s, &llm, 2));
    char *json = s_plan_json_n(S_RPM_TASKS);
    int64_t plan = swarm_submit(&s, json);
    free(json);
    SWARM_REQUIRE(&s, plan > 0);
    CHECK(swarm_wait_reason(&s, plan, "model tiny: 3 requests per 3000 ms "
                            "reached; next at ", 20000));
    if (restart) {
        swarm_broker_kill(&s);
        SWARM_REQUIRE(&s, swarm_broker(&s, "--model-rpm", "tiny=3",
                                       "--model-rpm-window-ms", window,
                                       NULL) == 0);
    }
    char state[64];
    swarm_wait_plan(&s, plan, 90, state, sizeof state);
    CHECK_STR(state, "succeeded");
    CHECK_INT(llm_count(&llm), S_RPM_TASKS);
    swarm_stop(&s);
    // The broker's own record: lease times (wall ms; the window runs on
    // the monotonic clock, so allow a few ms of drift between the two).
    attempts_t *at = calloc(1, sizeof *at);
    REQUIRE(at && attempts_read(s.db, plan, NULL, at) == 0);
    CHECK_INT(at->n, S_RPM_TASKS);
    int64_t t[ATTEMPTS_MAX];
    for (int i = 0; i < at->n; i++) {
        t[i] = at->a[i].started_ms;
    }
    CHECK(s_min_span(t, at->n, 3) >= S_WINDOW_MS - 20);
    free(at);
    // What fake_llm saw: arrivals follow leases by a drone's start-up,
    // which varies, so by up to a second less.
    char path[600];
    snprintf(path, sizeof path, "%s.at", llm.log);
    int n = s_read_times(path, t, ATTEMPTS_MAX);
    CHECK_INT(n, S_RPM_TASKS);
    CHECK(s_min_span(t, n, 3) >= S_WINDOW_MS - 1000);
    llm_stop(&llm);
}

static void
test_rpm(void)
{
    s_rpm(false);
}

static void
test_rpm_restart(void)
{
    s_rpm(true);
}

// The window outlives the plans in it: two prompt tasks of a plan that
// has finished used a limit of two; a restarted broker counts them too
// (not only those of plans still running), so a new plan's task waits
// until the first of them leaves the window.
static void
test_rpm_restart_finished(void)
{
    llm_t llm = {0};
    REQUIRE(s_llm_start(&llm, 3) == 0);
    swarm_t s;
    swarm_init(&s, 100, 2000);
    const char *window = "15000";
    SWARM_REQUIRE(&s, swarm_broker(&s, "--model-rpm", "tiny=2",
                                   "--model-rpm-window-ms", window,
                                   NULL) == 0);
    SWARM_REQUIRE(&s, s_three_drones(&s, &llm, 2));
    char *json = s_plan_json_n(2);
    int64_t first = swarm_submit(&s, json);
    free(json);
    SWARM_REQUIRE(&s, first > 0);
    char state[64];
    swarm_wait_plan(&s, first, 60, state, sizeof state);
    CHECK_STR(state, "succeeded");
    swarm_broker_kill(&s);
    SWARM_REQUIRE(&s, swarm_broker(&s, "--model-rpm", "tiny=2",
                                   "--model-rpm-window-ms", window,
                                   NULL) == 0);
    json = s_plan_json_n(1);
    int64_t second = swarm_submit(&s, json);
    free(json);
    SWARM_REQUIRE(&s, second > 0);
    swarm_wait_plan(&s, second, 90, state, sizeof state);
    CHECK_STR(state, "succeeded");
    swarm_stop(&s);
    attempts_t *at = calloc(1, sizeof *at);
    REQUIRE(at && attempts_read(s.db, first, NULL, at) == 0);
    CHECK_INT(at->n, 2);
    int64_t t0 = INT64_MAX;
    for (int i = 0; i < at->n; i++) {
        t0 = at->a[i].started_ms < t0 ? at->a[i].started_ms : t0;
    }
    REQUIRE(attempts_read(s.db, second, NULL, at) == 0);
    CHECK_INT(at->n, 1);
    CHECK(at->n == 1 && at->a[0].started_ms - t0 >= 15000 - 20);
    free(at);
    llm_stop(&llm);
}

// The reservation: with 30 tokens left and 20 reserved per call, two
// prompt tasks never run at once although the drone has room, and both
// run (the first used 3: 3 + 20 fits in 30).
static void
test_budget_reserves(void)
{
    llm_t llm = {0};
    REQUIRE(llm_start(&llm, t_tmpdir(),
                      "[{\"content\": \"a\", \"delay_ms\": 400,"
                      " \"prompt_tokens\": 2, \"completion_tokens\": 1},"
                      " {\"content\": \"b\", \"delay_ms\": 400,"
                      " \"prompt_tokens\": 2, \"completion_tokens\": 1}]")
            == 0);
    swarm_t s;
    SWARM_REQUIRE(&s, swarm_with_model(&s, 4, llm.url));
    int64_t plan = swarm_submit(
        &s, "{\"name\": \"r\", \"budget\": {\"tokens\": 30},"
            " \"tasks\": ["
            "{\"id\": \"a\", \"prompt\": \"x\", \"max_tokens\": 20},"
            "{\"id\": \"b\", \"prompt\": \"y\", \"max_tokens\": 20}]}");
    SWARM_REQUIRE(&s, plan > 0);
    char state[64];
    swarm_wait_plan(&s, plan, 60, state, sizeof state);
    CHECK_STR(state, "succeeded");
    CHECK_INT(llm_count(&llm), 2);
    CHECK_INT(s_max_in_flight(&llm), 1);
    swarm_stop(&s);
    llm_stop(&llm);
}

// A bad limit (--model-limit or --model-rpm) is a usage error (64) that
// names it, before any key or ledger is touched.
static void
test_bad_limit(void)
{
    const char *bad[] = {"tiny", "tiny=0", "=2", "tiny=x", "tiny=1,tiny=2",
                         "*=1,*=2", "tiny=1000001"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *err = xasprintf("%s/err%zu", t_tmpdir(), i);
        char *cmd = xasprintf("'%s' --keys /nonexistent --db '%s/db' "
                              "--model-limit '%s' 2>'%s'",
                              swarm_bin("waggle-broker"), t_tmpdir(), bad[i],
                              err);
        int rc = system(cmd);
        CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 64);
        CHECK(swarm_log_has(err, "--model-limit", "want NAME=N"));
        free(cmd);
        free(err);
    }
    // --model-rpm takes the same list.
    char *err = xasprintf("%s/err-rpm", t_tmpdir());
    char *cmd = xasprintf("'%s' --keys /nonexistent --db '%s/db' "
                          "--model-rpm 'tiny=0' 2>'%s'",
                          swarm_bin("waggle-broker"), t_tmpdir(), err);
    int rc = system(cmd);
    CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 64);
    CHECK(swarm_log_has(err, "--model-rpm", "want NAME=N"));
    free(cmd);
    free(err);
}

static const t_case_t t_cases[] = {
    T(test_limit_of_one),
    T(test_rpm),
    T(test_rpm_restart),
    T(test_rpm_restart_finished),
    T(test_bad_limit),
    T(test_budget_reserves),
    {0},
};

T_MAIN(t_cases)
