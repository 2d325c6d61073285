// e2e limits: swarm-wide model limits (`--model-limit NAME=N`).  Ten prompt
// tasks of model "tiny" on three drones with four slots each, under a limit
// of one: fake_llm (answering slowly) never sees two calls at once, a ready
// task says it waits for the limit, and the plan still finishes.
#include "common/json.h"
#include "common/xalloc.h"
#include "tests/harness/llm.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define S_TASKS 10

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
s_script(void)
{
    char *s = xstrdup("[");
    for (int i = 0; i < S_TASKS; i++) {
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
s_plan_json(void)
{
    char *s = xstrdup("{\"name\": \"limited\", \"tasks\": [");
    for (int i = 0; i < S_TASKS; i++) {
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

// `explain PLAN TASK --json`'s output (caller frees), NULL on failure.
static char *
s_explain(swarm_t *s, int64_t plan, const char *task)
{
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    char *out = NULL;
    if (swarm_arch(s, &out, NULL, "explain", id, task, "--json", NULL) != 0) {
        free(out);
        out = NULL;
    }
    return out;
}

// Polls status until some task of plan has waiting_reason want.
static bool
s_wait_reason(swarm_t *s, int64_t plan, const char *want, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 100) {
        jnode_t *st = swarm_status(s, plan);
        const jnode_t *tasks = st ? json_obj_get(st, "tasks") : NULL;
        bool seen = false;
        for (size_t i = 0; i < json_arr_size(tasks) && !seen; i++) {
            const char *r = json_str(
                json_obj_get(json_arr_get(tasks, i), "waiting_reason"));
            seen = r && strcmp(r, want) == 0;
        }
        json_destroy(&st);
        if (seen) {
            return true;
        }
        usleep(100000);
    }
    return false;
}

static void
test_limit_of_one(void)
{
    llm_t llm = {0};
    char *script = s_script();
    REQUIRE(llm_start(&llm, t_tmpdir(), script) == 0);
    free(script);
    swarm_t s;
    swarm_init(&s, 100, 2000);
    SWARM_REQUIRE(&s, swarm_broker(&s, "--model-limit", "other=3",
                                   "--model-limit", "tiny=1", NULL) == 0);
    const char *tags[] = {"d1", "d2", "d3"};
    for (int i = 0; i < 3; i++) {
        swarm_drone(&s, 4, tags[i], "--model-url", llm.url, "--model",
                    "tiny", "--model-timeout-s", "60", NULL);
        SWARM_REQUIRE(&s, swarm_wait_drone(&s, tags[i], true, -1, 20000));
    }
    char *json = s_plan_json();
    int64_t plan = swarm_submit(&s, json);
    free(json);
    SWARM_REQUIRE(&s, plan > 0);
    CHECK(s_wait_reason(&s, plan, "model limit reached (1 in flight)",
                        20000));
    // The last task waits its turn for at least 3.6 s (nine calls of
    // 0.4 s, one at a time): explain names the model and its limit.
    char *out = s_explain(&s, plan, "p9");
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

// A swarm of one drone (4 slots) with model "tiny" on fake_llm.
static bool
s_one_drone(swarm_t *s, const llm_t *llm)
{
    swarm_init(s, 100, 2000);
    if (swarm_broker(s, NULL) != 0) {
        return false;
    }
    swarm_drone(s, 4, "solo", "--model-url", llm->url, "--model", "tiny",
                "--model-timeout-s", "60", NULL);
    return swarm_wait_drone(s, "solo", true, -1, 20000);
}

// A plan's token budget: the first call spends more than the budget (60 +
// 50 of 100), so the prompt task after it stays ready, saying why, and the
// model is not called again, also after a broker restart.
static void
test_budget_stop(void)
{
    llm_t llm = {0};
    REQUIRE(llm_start(&llm, t_tmpdir(),
                      "[{\"content\": \"a\", \"prompt_tokens\": 60,"
                      " \"completion_tokens\": 50},"
                      " {\"content\": \"b\"}]") == 0);
    swarm_t s;
    SWARM_REQUIRE(&s, s_one_drone(&s, &llm));
    int64_t plan = swarm_submit(
        &s, "{\"name\": \"b\", \"budget\": {\"tokens\": 100},"
            " \"tasks\": ["
            "{\"id\": \"a\", \"prompt\": \"x\", \"max_tokens\": 20},"
            "{\"id\": \"b\", \"needs\": [\"a\"], \"prompt\": \"y\","
            " \"max_tokens\": 20},"
            "{\"id\": \"c\", \"needs\": [\"a\"], \"run\": [\"true\"]}]}");
    SWARM_REQUIRE(&s, plan > 0);
    CHECK(swarm_wait_task(&s, plan, "a", "succeeded", 30));
    CHECK(s_wait_reason(&s, plan, "token budget spent: used 110 of 100",
                        20000));
    // explain says the same, with the figures.
    char *out = s_explain(&s, plan, "b");
    CHECK(out && strstr(out, "\"code\": \"budget_spent\"") &&
          strstr(out, "\"used\": 110") && strstr(out, "\"budget\": 100"));
    free(out);
    // Other work of the plan goes on.
    CHECK(swarm_wait_task(&s, plan, "c", "succeeded", 30));
    char st[64];
    swarm_task_state(&s, plan, "b", st, sizeof st);
    CHECK_STR(st, "ready");
    CHECK_INT(llm_count(&llm), 1);
    // A restarted broker keeps the budget (in the stored workplan) and what
    // was used (the attempts' token columns).
    swarm_broker_kill(&s);
    SWARM_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    SWARM_REQUIRE(&s, swarm_wait_drone(&s, "solo", true, -1, 20000));
    CHECK(s_wait_reason(&s, plan, "token budget spent: used 110 of 100",
                        20000));
    swarm_task_state(&s, plan, "b", st, sizeof st);
    CHECK_STR(st, "ready");
    CHECK_INT(llm_count(&llm), 1);
    swarm_stop(&s);
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
    SWARM_REQUIRE(&s, s_one_drone(&s, &llm));
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

// A bad limit is a usage error (64) that names it, before any key or
// ledger is touched.
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
}

static const t_case_t t_cases[] = {
    T(test_limit_of_one),
    T(test_bad_limit),
    T(test_budget_stop),
    T(test_budget_reserves),
    {0},
};

T_MAIN(t_cases)
