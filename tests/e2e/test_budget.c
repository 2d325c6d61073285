// e2e budget: a plan's token budget and `waggle-architect budget PLAN
// N|--none` on a real swarm with fake_llm.  A plan stopped by its spent
// budget says why, also after a restart; a submitter key cannot raise it
// (FORBIDDEN, "an operator key is needed"); an operator's raise lets it
// finish, and the 'budget' event names the key with old and new value.
// Lowering to 0 holds the next prompt task back, also across a broker
// restart (the stored workplan keeps a budget below the task's
// reservation), and --none lets it run.  Unknown plan: exit 4; finished
// plan: refused; bad N: usage.
#include "common/json.h"
#include "common/xalloc.h"
#include "tests/harness/llm.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// `budget PLAN ARG [--json]` as the operator (role NULL) or another role;
// returns the exit code, stdout and stderr into out/err (caller frees).
static int
s_budget(swarm_t *s, const char *role, int64_t plan, const char *arg,
         bool json, char **out, char **err)
{
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    return swarm_arch_as(s, NULL, role, out, err, "budget", id, arg,
                         json ? "--json" : NULL, NULL);
}

// Whether `log PLAN` has a line with the budget event by actor and detail.
static bool
s_logged(swarm_t *s, int64_t plan, const char *actor, const char *detail)
{
    char id[32], *out = NULL;
    snprintf(id, sizeof id, "%lld", (long long) plan);
    swarm_arch(s, &out, NULL, "log", id, NULL);
    bool found = false;
    for (char *line = out ? strtok(out, "\n") : NULL; line && !found;
         line = strtok(NULL, "\n")) {
        found = strstr(line, actor) && strstr(line, "  budget") &&
                strstr(line, detail);
    }
    free(out);
    return found;
}

// The budget stop: the first call spends more than the budget (60 + 50 of
// 100), so the prompt task after it stays ready, saying why, while the
// plan's other work goes on, and the model is not called again, also after
// a broker restart (the budget is in the stored workplan, what was used in
// the attempts).  Then the raise.
static void
test_stop_and_raise(void)
{
    llm_t llm = {0};
    REQUIRE(llm_start(&llm, t_tmpdir(),
                      "[{\"content\": \"a\", \"prompt_tokens\": 60,"
                      " \"completion_tokens\": 50},"
                      " {\"content\": \"b\"}]") == 0);
    swarm_t s;
    SWARM_REQUIRE(&s, swarm_with_model(&s, 4, llm.url));
    int64_t plan = swarm_submit(
        &s, "{\"name\": \"b\", \"budget\": {\"tokens\": 100},"
            " \"tasks\": ["
            "{\"id\": \"a\", \"prompt\": \"x\", \"max_tokens\": 20},"
            "{\"id\": \"b\", \"needs\": [\"a\"], \"prompt\": \"y\","
            " \"max_tokens\": 20},"
            "{\"id\": \"c\", \"needs\": [\"a\"], \"run\": [\"true\"]}]}");
    SWARM_REQUIRE(&s, plan > 0);
    CHECK(swarm_wait_reason(&s, plan, "token budget spent: used 110 of 100",
                            30000));
    // explain says the same, with the figures.
    char *why = swarm_explain(&s, plan, "b");
    CHECK(why && strstr(why, "\"code\": \"budget_spent\"") &&
          strstr(why, "\"used\": 110") && strstr(why, "\"budget\": 100"));
    free(why);
    CHECK(swarm_wait_task(&s, plan, "c", "succeeded", 30));
    CHECK_INT(llm_count(&llm), 1);
    swarm_broker_kill(&s);
    SWARM_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    SWARM_REQUIRE(&s, swarm_wait_drone(&s, "solo", true, -1, 20000));
    CHECK(swarm_wait_reason(&s, plan, "token budget spent: used 110 of 100",
                            30000));
    // A submitter key (a planner's) may not raise its own spending.
    char *out = NULL, *err = NULL;
    CHECK_INT(s_budget(&s, "submitter", plan, "1000", false, &out, &err), 3);
    CHECK(err && strstr(err, "FORBIDDEN") &&
          strstr(err, "an operator key is needed"));
    free(out);
    free(err);
    char st[64];
    swarm_task_state(&s, plan, "b", st, sizeof st);
    CHECK_STR(st, "ready");
    CHECK_INT(llm_count(&llm), 1);
    // The operator's raise: b runs and the plan finishes.
    CHECK_INT(s_budget(&s, NULL, plan, "1000", true, &out, &err), 0);
    jnode_t *j = out ? json_parse(out, strlen(out), NULL, 0) : NULL;
    CHECK(j != NULL);
    CHECK_INT(json_int(json_obj_get(j, "old_tokens")), 100);
    CHECK_INT(json_int(json_obj_get(j, "new_tokens")), 1000);
    CHECK_INT(json_int(json_obj_get(j, "used")), 110);
    CHECK(!json_bool(json_obj_get(j, "spent")));
    json_destroy(&j);
    free(out);
    free(err);
    swarm_wait_plan(&s, plan, 60, st, sizeof st);
    CHECK_STR(st, "succeeded");
    CHECK_INT(llm_count(&llm), 2);
    // keygen names the operator key "operator" (and the submitter's
    // "submitter", whose refused try left no event).
    CHECK(s_logged(&s, plan, "  operator  ", "{\"old\":100,\"new\":1000}"));
    CHECK(!s_logged(&s, plan, "submitter", ""));
    swarm_stop(&s);
    llm_stop(&llm);
}

// Lowering: a plan without a budget gets one of 0 (allowed, with a note
// that nothing more is dispatched); the prompt task after the gate waits,
// also after a broker restart; --none lets it run.
static void
test_lower(void)
{
    llm_t llm = {0};
    REQUIRE(llm_start(&llm, t_tmpdir(), "[{\"content\": \"b\"}]") == 0);
    swarm_t s;
    SWARM_REQUIRE(&s, swarm_with_model(&s, 2, llm.url));
    int64_t plan = swarm_submit(
        &s, "{\"name\": \"l\", \"tasks\": ["
            "{\"id\": \"g\", \"gate\": \"go?\"},"
            "{\"id\": \"b\", \"needs\": [\"g\"], \"prompt\": \"y\","
            " \"max_tokens\": 20}]}");
    SWARM_REQUIRE(&s, plan > 0);
    char *out = NULL, *err = NULL;
    CHECK_INT(s_budget(&s, NULL, plan, "0", false, &out, &err), 0);
    CHECK(out && strstr(out, "token budget: none -> 0"));
    CHECK(err && strstr(err, "no further prompt task is dispatched"));
    free(out);
    free(err);
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    CHECK_INT(swarm_arch(&s, NULL, NULL, "approve", id, "g", NULL), 0);
    CHECK(swarm_wait_reason(&s, plan, "token budget spent: used 0 of 0",
                            30000));
    // The stored workplan holds a budget below b's reservation: a restarted
    // broker still loads the plan, and b still waits.
    swarm_broker_kill(&s);
    SWARM_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    SWARM_REQUIRE(&s, swarm_wait_drone(&s, "solo", true, -1, 20000));
    CHECK(swarm_wait_reason(&s, plan, "token budget spent: used 0 of 0",
                            30000));
    CHECK_INT(llm_count(&llm), 0);
    CHECK_INT(s_budget(&s, NULL, plan, "--none", false, &out, NULL), 0);
    CHECK(out && strstr(out, "token budget: 0 -> none"));
    free(out);
    char st[64];
    swarm_wait_plan(&s, plan, 60, st, sizeof st);
    CHECK_STR(st, "succeeded");
    CHECK_INT(llm_count(&llm), 1);
    CHECK(s_logged(&s, plan, "  operator  ", "{\"old\":null,\"new\":0}"));
    CHECK(s_logged(&s, plan, "  operator  ", "{\"old\":0,\"new\":null}"));
    swarm_stop(&s);
    llm_stop(&llm);
}

// Unknown plan: 4; a finished plan: refused (1) saying so; bad N: 64.
static void
test_refused(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    SWARM_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    swarm_drone(&s, 1, "solo", NULL);
    SWARM_REQUIRE(&s, swarm_wait_drone(&s, "solo", true, -1, 20000));
    char *out = NULL, *err = NULL;
    CHECK_INT(s_budget(&s, NULL, 999, "10", false, NULL, &err), 4);
    CHECK(err && strstr(err, "no plan 999"));
    free(err);
    int64_t plan = swarm_submit(
        &s, "{\"name\": \"f\", \"tasks\": [{\"id\": \"a\", \"run\":"
            " [\"true\"]}]}");
    SWARM_REQUIRE(&s, plan > 0);
    char st[64];
    swarm_wait_plan(&s, plan, 60, st, sizeof st);
    CHECK_STR(st, "succeeded");
    CHECK_INT(s_budget(&s, NULL, plan, "10", true, &out, &err), 1);
    CHECK(err && strstr(err, "already succeeded"));
    CHECK(out && strstr(out, "\"conflict\""));
    free(out);
    free(err);
    const char *bad[] = {"-1", "x", "1000000000001", "1e3"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK_INT(s_budget(&s, NULL, plan, bad[i], false, NULL, NULL), 64);
    }
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    CHECK_INT(swarm_arch(&s, NULL, NULL, "budget", id, NULL), 64);
    CHECK_INT(swarm_arch(&s, NULL, NULL, "budget", id, "5", "--none", NULL),
              64);
    swarm_stop(&s);
}

static const t_case_t t_cases[] = {
    T(test_stop_and_raise),
    T(test_lower),
    T(test_refused),
    {0},
};

T_MAIN(t_cases)
