// e2e: the times status shows (ready, started, ended, duration), the
// attempt number a retry does not reset, and exit 4 for a plan or task
// that does not exist (log, output, explain).
#include "common/json.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// a sleeps a little over a second; b needs it.
static const char *s_timed =
    "{\"name\":\"timed\",\"tasks\":["
    "{\"id\":\"a\",\"run\":[\"sh\",\"-c\",\"sleep 1.2; echo a\"]},"
    "{\"id\":\"b\",\"needs\":[\"a\"],\"run\":[\"echo\",\"b\"]}]}";

static int64_t
s_int(const jnode_t *t, const char *key)
{
    const jnode_t *v = t ? json_obj_get(t, key) : NULL;
    return v ? json_int(v) : -1;
}

static void
test_status_times(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    swarm_drone(&s, 2, NULL, NULL);
    int64_t plan = swarm_submit(&s, s_timed);
    SWARM_REQUIRE(&s, plan > 0);
    // While a runs: started, not ended, a duration that grows.
    SWARM_REQUIRE(&s, swarm_wait_task(&s, plan, "a", "leased", 30));
    jnode_t *st = swarm_status(&s, plan);
    SWARM_REQUIRE(&s, st);
    const jnode_t *a = swarm_status_task(st, "a");
    CHECK(s_int(a, "started_ms") > 0);
    CHECK(json_obj_get(a, "ended_ms") &&
          json_type_of(json_obj_get(a, "ended_ms")) == JSON_T_NULL);
    CHECK(s_int(a, "duration_ms") >= 0);
    CHECK_INT(s_int(a, "attempt"), 1);
    json_destroy(&st);
    char state[32];
    swarm_wait_plan(&s, plan, 60, state, sizeof state);
    CHECK_STR(state, "succeeded");
    st = swarm_status(&s, plan);
    SWARM_REQUIRE(&s, st);
    a = swarm_status_task(st, "a");
    const jnode_t *b = swarm_status_task(st, "b");
    // Ordering: a ready <= started <= ended <= b ready <= b started.
    CHECK(s_int(a, "ready_ms") > 0);
    CHECK(s_int(a, "ready_ms") <= s_int(a, "started_ms"));
    CHECK(s_int(a, "started_ms") < s_int(a, "ended_ms"));
    CHECK(s_int(a, "ended_ms") <= s_int(b, "ready_ms"));
    CHECK(s_int(b, "ready_ms") <= s_int(b, "started_ms"));
    CHECK(s_int(b, "started_ms") <= s_int(b, "ended_ms"));
    // A 1.2 s task shows at least a second.
    CHECK(s_int(a, "duration_ms") >= 1000);
    CHECK_INT(s_int(a, "duration_ms"),
              s_int(a, "ended_ms") - s_int(a, "started_ms"));
    CHECK_INT(s_int(a, "attempt"), 1);
    CHECK_INT(s_int(a, "attempts"), 1);
    CHECK_INT(s_int(a, "attempt_budget"), 3);
    json_destroy(&st);
    // The text table has the columns, and a's duration reads 1.x s.
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    char *out = NULL;
    SWARM_REQUIRE(&s, swarm_arch(&s, &out, NULL, "status", id, NULL) == 0);
    CHECK(strstr(out, "READY") && strstr(out, "STARTED") &&
          strstr(out, "ENDED") && strstr(out, "TOOK"));
    CHECK(strstr(out, "1 (1/3)") != NULL);
    const char *line = strstr(out, "\na ");
    CHECK(line && (strstr(line, " 1.2s") || strstr(line, " 1.3s") ||
                   strstr(line, " 1.4s") || strstr(line, " 1.5s") ||
                   strstr(line, " 1.6s") || strstr(line, " 1.7s") ||
                   strstr(line, " 1.8s") || strstr(line, " 1.9s") ||
                   strstr(line, " 2.")));
    fprintf(stderr, "%s", out);
    free(out);
    swarm_stop(&s);
}

// A task that fails (no retries) and then is retried: the number shown
// goes on (2) while the budget's count starts again.
static void
test_attempt_number_after_retry(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    swarm_drone(&s, 1, NULL, NULL);
    char flag[700], json[1600];
    snprintf(flag, sizeof flag, "%s/fail-once", s.dir);
    FILE *f = fopen(flag, "w");
    REQUIRE(f);
    fclose(f);
    snprintf(json, sizeof json,
             "{\"name\":\"again\",\"tasks\":[{\"id\":\"x\",\"retries\":0,"
             "\"run\":[\"sh\",\"-c\",\"if [ -e %s ]; then rm %s; exit 3; fi;"
             " echo ok\"]}]}", flag, flag);
    int64_t plan = swarm_submit(&s, json);
    SWARM_REQUIRE(&s, plan > 0);
    SWARM_REQUIRE(&s, swarm_wait_task(&s, plan, "x", "dead", 30));
    jnode_t *st = swarm_status(&s, plan);
    SWARM_REQUIRE(&s, st);
    CHECK_INT(s_int(swarm_status_task(st, "x"), "attempt"), 1);
    CHECK_INT(s_int(swarm_status_task(st, "x"), "attempts"), 1);
    CHECK_INT(s_int(swarm_status_task(st, "x"), "attempt_budget"), 1);
    json_destroy(&st);
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    SWARM_REQUIRE(&s, swarm_arch(&s, NULL, NULL, "retry", id, "x",
                                 NULL) == 0);
    char state[32];
    swarm_wait_plan(&s, plan, 60, state, sizeof state);
    CHECK_STR(state, "succeeded");
    st = swarm_status(&s, plan);
    SWARM_REQUIRE(&s, st);
    CHECK_INT(s_int(swarm_status_task(st, "x"), "attempt"), 2);
    CHECK_INT(s_int(swarm_status_task(st, "x"), "attempts"), 1);
    json_destroy(&st);
    char *out = NULL;
    SWARM_REQUIRE(&s, swarm_arch(&s, &out, NULL, "status", id, NULL) == 0);
    CHECK(strstr(out, "2 (1/1)") != NULL);
    free(out);
    // The number is the one output --attempt takes.
    SWARM_REQUIRE(&s, swarm_arch(&s, &out, NULL, "output", id, "x",
                                 "--attempt", "2", NULL) == 0);
    CHECK_STR(out, "ok\n");
    free(out);
    swarm_stop(&s);
}

// Every command about a plan exits 4 for one that does not exist; log did
// not.
static void
test_unknown_plan_exits_4(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    char *err = NULL;
    CHECK_INT(swarm_arch(&s, NULL, &err, "log", "999", NULL), 4);
    CHECK(err && strstr(err, "no plan 999"));
    free(err);
    CHECK_INT(swarm_arch(&s, NULL, NULL, "log", "999", "--json", NULL), 4);
    CHECK_INT(swarm_arch(&s, NULL, NULL, "status", "999", NULL), 4);
    swarm_stop(&s);
}

static const t_case_t t_cases[] = {
    T(test_status_times),
    T(test_attempt_number_after_retry),
    T(test_unknown_plan_exits_4),
    {0},
};

T_MAIN(t_cases)
