// e2e flow: cancelling a plan kills its running work and cancels every
// task that had not ended; cancelling one task blocks what needs it while
// the rest of the plan goes on; retry refuses cancelled plans and
// succeeded tasks.
#include "broker/ledger.h"
#include "common/clock.h"
#include "common/xalloc.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include <errno.h>
#include <signal.h>

// A task that records the pid of a `sleep 30` and then waits for it.  s1
// execs the sleep (the drone's own child); s2 runs it in the background of
// a shell (a grandchild: only killing the whole group reaches it).
static const char *s_plan =
    "{\"name\":\"cancel-me\",\"tasks\":["
    "{\"id\":\"s1\",\"run\":[\"sh\",\"-c\",\"echo $$ > s1.pid.tmp && mv "
    "s1.pid.tmp s1.pid && exec sleep 30\"]},"
    "{\"id\":\"s2\",\"run\":[\"sh\",\"-c\",\"sleep 30 & echo $! > "
    "s2.pid.tmp && mv s2.pid.tmp s2.pid; wait\"]},"
    "{\"id\":\"d1\",\"needs\":[\"s1\"],\"run\":[\"true\"]},"
    "{\"id\":\"d2\",\"needs\":[\"d1\",\"s2\"],\"run\":[\"true\"]}]}";

// Reads a pid that a task wrote into DIR/name, waiting up to timeout_ms.
static pid_t
s_read_pid(const char *dir, const char *name, int timeout_ms)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int64_t deadline = clock_mono_ms() + timeout_ms;
    while (clock_mono_ms() < deadline) {
        char *text = t_read_file(path, NULL);
        long pid = text ? strtol(text, NULL, 10) : 0;
        free(text);
        if (pid > 0) {
            return (pid_t) pid;
        }
        usleep(50000);
    }
    return -1;
}

// True when pid is gone within timeout_ms.
static bool
s_gone(pid_t pid, int timeout_ms)
{
    int64_t deadline = clock_mono_ms() + timeout_ms;
    while (clock_mono_ms() < deadline) {
        if (kill(pid, 0) < 0 && errno == ESRCH) {
            return true;
        }
        usleep(50000);
    }
    return false;
}

static void
s_check_all(swarm_t *s, int64_t plan, const char *plan_state,
            const char *const *tasks, const char *const *want, size_t n)
{
    jnode_t *st = swarm_status(s, plan);
    REQUIRE(st);
    CHECK_STR(json_str(json_obj_get(st, "state")), plan_state);
    const jnode_t *arr = json_obj_get(st, "tasks");
    for (size_t i = 0; i < n; i++) {
        const char *got = NULL;
        for (size_t k = 0; k < json_arr_size(arr); k++) {
            const jnode_t *t = json_arr_get(arr, k);
            if (strcmp(json_str(json_obj_get(t, "id")), tasks[i]) == 0) {
                got = json_str(json_obj_get(t, "state"));
            }
        }
        if (!got || strcmp(got, want[i]) != 0) {
            fprintf(stderr, "task %s is %s, expected %s\n", tasks[i],
                    got ? got : "(missing)", want[i]);
            t_failures++;
        }
    }
    json_destroy(&st);
}

static void
s_outcome(void *arg, const ledger_attempt_row_t *row)
{
    int *counts = arg;
    counts[row->outcome < 8 ? row->outcome : 7]++;
}

// A cancel uses no attempt: the task's one attempt row ended cancelled.
static void
s_check_no_attempt_used(const char *db, int64_t plan, const char *task)
{
    ledger_t *l = NULL;
    char err[256];
    REQUIRE(ledger_open(&l, db, LEDGER_RDONLY, err, sizeof err) == 0);
    int counts[8] = {0};
    CHECK_INT(ledger_attempts(l, plan, task, s_outcome, counts), LEDGER_OK);
    uint32_t used = 99;
    CHECK_INT(ledger_task_attempts_used(l, plan, task, &used), LEDGER_OK);
    ledger_destroy(&l);
    CHECK_INT(counts[LEDGER_ATTEMPT_CANCELLED], 1);
    CHECK_INT(counts[LEDGER_ATTEMPT_FAILED] + counts[LEDGER_ATTEMPT_EXPIRED] +
                  counts[LEDGER_ATTEMPT_SUCCEEDED],
              0);
    CHECK_INT(used, 0);
}

static void
test_cancel_plan(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    swarm_drone(&s, 2, NULL, NULL);
    swarm_drone(&s, 2, NULL, NULL);
    int64_t plan = swarm_submit(&s, s_plan);
    REQUIRE(plan > 0);
    char id[32], state[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    pid_t p1 = s_read_pid(s.dir, "s1.pid", 20000);
    pid_t p2 = s_read_pid(s.dir, "s2.pid", 20000);
    REQUIRE(p1 > 0 && p2 > 0);
    CHECK(kill(p1, 0) == 0 && kill(p2, 0) == 0);
    // While it runs: wait gives up with 2, retry of a running task is
    // refused.
    CHECK_INT(swarm_arch(&s, NULL, NULL, "wait", id, "--timeout", "1", NULL),
              2);
    char *err = NULL;
    CHECK_INT(swarm_arch(&s, NULL, &err, "retry", id, "s1", NULL), 1);
    CHECK_HAS(err, "CONFLICT");
    free(err);
    char *out = NULL;
    CHECK_INT(swarm_arch(&s, &out, NULL, "cancel", id, NULL), 0);
    CHECK_HAS(out, "cancelled");
    free(out);
    swarm_wait_plan(&s, plan, 5, state, sizeof state);
    CHECK_STR(state, "cancelled");
    const char *tasks[] = {"s1", "s2", "d1", "d2"};
    const char *want[] = {"cancelled", "cancelled", "cancelled", "cancelled"};
    s_check_all(&s, plan, "cancelled", tasks, want, 4);
    CHECK(s_gone(p1, 5000));
    CHECK(s_gone(p2, 5000));
    // wait on a cancelled plan reports it ended badly.
    CHECK_INT(swarm_arch(&s, NULL, NULL, "wait", id, "--timeout", "10", NULL),
              1);
    // A cancelled plan is not retried, not even one task of it.
    err = NULL;
    CHECK_INT(swarm_arch(&s, NULL, &err, "retry", id, "s1", NULL), 1);
    CHECK_HAS(err, "CONFLICT");
    free(err);
    swarm_stop(&s);
    s_check_no_attempt_used(s.db, plan, "s1");
    s_check_no_attempt_used(s.db, plan, "s2");
}

// x waits for a file the test writes after the cancel, so the rest of the
// plan demonstrably goes on after it.
static const char *s_task_plan =
    "{\"name\":\"cancel-one\",\"tasks\":["
    "{\"id\":\"s1\",\"run\":[\"sh\",\"-c\",\"echo $$ > s1.pid.tmp && mv "
    "s1.pid.tmp s1.pid && exec sleep 30\"]},"
    "{\"id\":\"d1\",\"needs\":[\"s1\"],\"run\":[\"true\"]},"
    "{\"id\":\"d2\",\"needs\":[\"d1\"],\"run\":[\"true\"]},"
    "{\"id\":\"x\",\"timeout_s\":30,\"run\":[\"sh\",\"-c\",\"while [ ! -f "
    "go ]; do sleep 0.05; done; echo x\"]},"
    "{\"id\":\"y\",\"needs\":[\"x\"],\"run\":[\"echo\",\"y\"]}]}";

// A cancelled task of a failed plan may be retried: it runs again, what it
// blocked waits for it, the plan is running; then the plan is cancelled.
static void
s_retry_cancelled(swarm_t *s, int64_t plan, const char *id, pid_t old)
{
    char path[700];
    snprintf(path, sizeof path, "%s/s1.pid", s->dir);
    unlink(path);
    CHECK_INT(swarm_arch(s, NULL, NULL, "retry", id, "s1", NULL), 0);
    pid_t p1 = s_read_pid(s->dir, "s1.pid", 20000);
    REQUIRE(p1 > 0);
    CHECK(p1 != old);
    const char *tasks[] = {"s1", "d1", "d2", "x", "y"};
    const char *want[] = {"leased", "waiting", "waiting", "succeeded",
                          "succeeded"};
    s_check_all(s, plan, "running", tasks, want, 5);
    CHECK_INT(swarm_arch(s, NULL, NULL, "cancel", id, NULL), 0);
    const char *end[] = {"cancelled", "cancelled", "cancelled", "succeeded",
                         "succeeded"};
    s_check_all(s, plan, "cancelled", tasks, end, 5);
    CHECK(s_gone(p1, 5000));
}

static void
test_cancel_task(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    swarm_drone(&s, 2, NULL, NULL);
    swarm_drone(&s, 1, NULL, NULL);
    int64_t plan = swarm_submit(&s, s_task_plan);
    REQUIRE(plan > 0);
    char id[32], state[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    pid_t p1 = s_read_pid(s.dir, "s1.pid", 20000);
    REQUIRE(p1 > 0);
    CHECK_INT(swarm_arch(&s, NULL, NULL, "cancel", id, "s1", NULL), 0);
    CHECK(swarm_wait_task(&s, plan, "s1", "cancelled", 10));
    CHECK(s_gone(p1, 5000));
    const char *tasks[] = {"s1", "d1", "d2"};
    const char *want[] = {"cancelled", "blocked", "blocked"};
    s_check_all(&s, plan, "running", tasks, want, 3);
    char go[700];
    snprintf(go, sizeof go, "%s/go", s.dir);
    REQUIRE(t_write_file(go, "") == 0);
    swarm_wait_plan(&s, plan, 20, state, sizeof state);
    CHECK_STR(state, "failed");
    const char *all[] = {"s1", "d1", "d2", "x", "y"};
    const char *end[] = {"cancelled", "blocked", "blocked", "succeeded",
                         "succeeded"};
    s_check_all(&s, plan, "failed", all, end, 5);
    char *err = NULL;
    CHECK_INT(swarm_arch(&s, NULL, &err, "retry", id, "y", NULL), 1);
    CHECK_HAS(err, "CONFLICT");
    free(err);
    s_retry_cancelled(&s, plan, id, p1);
    swarm_stop(&s);
}

static const t_case_t t_cases[] = {
    T(test_cancel_plan),
    T(test_cancel_task),
    {0},
};

T_MAIN(t_cases)
