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

// Polls status until some task of plan says it waits for the model limit.
static bool
s_wait_limit_reason(swarm_t *s, int64_t plan, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 100) {
        jnode_t *st = swarm_status(s, plan);
        const jnode_t *tasks = st ? json_obj_get(st, "tasks") : NULL;
        bool seen = false;
        for (size_t i = 0; i < json_arr_size(tasks) && !seen; i++) {
            const char *r = json_str(
                json_obj_get(json_arr_get(tasks, i), "waiting_reason"));
            seen = r && strcmp(r, "model limit reached (1 in flight)") == 0;
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
    CHECK(s_wait_limit_reason(&s, plan, 20000));
    char state[64];
    swarm_wait_plan(&s, plan, 90, state, sizeof state);
    CHECK_STR(state, "succeeded");
    CHECK_INT(llm_count(&llm), S_TASKS);
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
    {0},
};

T_MAIN(t_cases)
