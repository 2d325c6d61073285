// e2e scale: what a big user meets, sized for CI (the heavy versions are
// options of tests/scale/scale.sh).
//
// - A plan too big for one STATUS_OK frame (60,000 tasks: some 1.1 million
//   msgpack objects, over the decoder's 1,000,000) can still be listed by
//   `status PLAN` and followed by `wait PLAN`: the broker pages the tasks
//   and `wait` asks for the plan alone.
// - A small plan submitted after a big one finishes while the big one runs
//   (round-robin across plans: no starvation).
// - Many drones at once: all get work, the overview lists them, and after
//   half of them are SIGKILLed every task still ends with exactly one
//   accepted attempt.
// - A broker SIGKILLed under many drones holding leases: they all come
//   back and keep their leases (no attempt expires).
#include "broker/ledger.h"
#include "common/clock.h"
#include "common/xalloc.h"
#include "tests/harness/attempts.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

// A flat plan of n tasks running argv run (a JSON array), in a new buffer.
static char *
s_flat_plan(const char *name, int n, const char *run)
{
    size_t cap = 128 + (size_t) n * (48 + strlen(run));
    char *json = xmalloc(cap);
    size_t off = (size_t) snprintf(json, cap, "{\"name\":\"%s\",\"tasks\":[",
                                   name);
    for (int i = 0; i < n; i++) {
        off += (size_t) snprintf(json + off, cap - off,
                                 "%s{\"id\":\"t%d\",\"run\":%s}",
                                 i ? "," : "", i, run);
    }
    snprintf(json + off, cap - off, "]}");
    return json;
}

// The counts status gives for plan (from the broker's memory while the
// plan is loaded) equal the ledger's rows, read beside the running broker.
// Only where nothing moves.
static void
s_check_counts(swarm_t *s, int64_t plan)
{
    jnode_t *st = swarm_status(s, plan);
    REQUIRE(st);
    const jnode_t *counts = json_obj_get(st, "counts");
    ledger_t *l = NULL;
    char err[256];
    proto_msg_t *m = proto_msg_new(PROTO_MSG_STATUS_OK);
    if (ledger_open(&l, s->db, LEDGER_RDONLY, err, sizeof err) == 0 &&
        ledger_plans(l, plan, 0, &m->u.status_ok) == LEDGER_OK &&
        m->u.status_ok.n_plans == 1) {
        for (int i = 0; i < PROTO_TASK__COUNT; i++) {
            const char *name = proto_task_state_name((proto_task_state_t) i);
            CHECK_INT(json_int(json_obj_get(counts, name)),
                      m->u.status_ok.plans[0].counts[i]);
        }
    } else {
        fprintf(stderr, "cannot read the ledger: %s\n", err);
        t_failures++;
    }
    proto_msg_destroy(&m);
    ledger_destroy(&l);
    json_destroy(&st);
}

// `status PLAN --json` of a 60k-task plan lists every task in order, and
// `wait` follows it (it times out: nothing runs it) instead of losing the
// broker.
static void
test_status_of_a_plan_over_one_frame(void)
{
    enum { N = 60000 };
    swarm_t s;
    swarm_init(&s, 200, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    char *json = s_flat_plan("wide", N, "[\"true\"]");
    int64_t plan = swarm_submit(&s, json);
    free(json);
    REQUIRE(plan > 0);
    int64_t t0 = clock_mono_ms();
    jnode_t *st = swarm_status(&s, plan);
    fprintf(stderr, "status of %d tasks: %lld ms\n", N,
            (long long) (clock_mono_ms() - t0));
    CHECK(st != NULL);
    const jnode_t *tasks = st ? json_obj_get(st, "tasks") : NULL;
    CHECK_INT(tasks ? json_arr_size(tasks) : 0, N);
    if (tasks && json_arr_size(tasks) == N) {
        CHECK_STR(json_str(json_obj_get(json_arr_get(tasks, 0), "id")), "t0");
        CHECK_STR(json_str(json_obj_get(json_arr_get(tasks, N - 1), "id")),
                  "t59999");
        CHECK_STR(json_str(json_obj_get(json_arr_get(tasks, N - 1),
                                        "state")), "ready");
    }
    json_destroy(&st);
    s_check_counts(&s, plan);
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    char *out = NULL, *err = NULL;
    t0 = clock_mono_ms();
    CHECK_INT(swarm_arch(&s, &out, &err, "wait", id, "--timeout", "2", NULL),
              2);
    fprintf(stderr, "wait --timeout 2: %lld ms\n",
            (long long) (clock_mono_ms() - t0));
    CHECK_HAS(err, "0/60000 succeeded");
    free(out);
    free(err);
    swarm_stop(&s);
}

// The small plan's tasks, submitted after 3,000 tasks of a big plan, all
// succeed while the big plan still runs.
static void
test_small_plan_not_starved(void)
{
    swarm_t s;
    swarm_init(&s, 200, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    char *big = s_flat_plan("big", 3000, "[\"sleep\",\"0.05\"]");
    int64_t p1 = swarm_submit(&s, big);
    free(big);
    REQUIRE(p1 > 0);
    swarm_drone(&s, 2, NULL, NULL);
    swarm_drone(&s, 2, NULL, NULL);
    REQUIRE(swarm_wait_task(&s, p1, "t10", "succeeded", 20));
    char *small = s_flat_plan("small", 5, "[\"true\"]");
    int64_t t0 = clock_mono_ms();
    int64_t p2 = swarm_submit(&s, small);
    free(small);
    REQUIRE(p2 > 0);
    char state[32];
    swarm_wait_plan(&s, p2, 30, state, sizeof state);
    int64_t took = clock_mono_ms() - t0;
    fprintf(stderr, "small plan after a 3000-task one: %lld ms\n",
            (long long) took);
    CHECK_STR(state, "succeeded");
    jnode_t *st = swarm_status(&s, p1);
    REQUIRE(st);
    CHECK_STR(json_str(json_obj_get(st, "state")), "running");
    json_destroy(&st);
    swarm_stop(&s);
}

// Drones listed by the overview (-1 when status fails).
static int
s_n_drones(swarm_t *s)
{
    jnode_t *ov = swarm_overview(s);
    int n = ov ? (int) json_arr_size(json_obj_get(ov, "drones")) : -1;
    json_destroy(&ov);
    return n;
}

static bool
s_wait_drones(swarm_t *s, int want, int timeout_ms)
{
    int64_t deadline = clock_mono_ms() + timeout_ms;
    while (clock_mono_ms() < deadline) {
        if (s_n_drones(s) == want) {
            return true;
        }
        usleep(100000);
    }
    return false;
}

// Tasks of plan in state want (-1 when status fails).
static int
s_n_in_state(swarm_t *s, int64_t plan, const char *want)
{
    jnode_t *st = swarm_status(s, plan);
    const jnode_t *tasks = st ? json_obj_get(st, "tasks") : NULL;
    int n = tasks ? 0 : -1;
    for (size_t i = 0; tasks && i < json_arr_size(tasks); i++) {
        const char *state = json_str(json_obj_get(json_arr_get(tasks, i),
                                                  "state"));
        n += state && strcmp(state, want) == 0;
    }
    json_destroy(&st);
    return n;
}

static bool
s_wait_in_state(swarm_t *s, int64_t plan, const char *want, int n,
                int timeout_ms)
{
    int64_t deadline = clock_mono_ms() + timeout_ms;
    while (clock_mono_ms() < deadline) {
        if (s_n_in_state(s, plan, want) >= n) {
            return true;
        }
        usleep(100000);
    }
    return false;
}

// Every task of plan has exactly one accepted attempt; returns how many
// attempts were lost (ended expired, or released: a lease lost before its
// drone ever confirmed it uses no attempt).
static int
s_check_once(swarm_t *s, int64_t plan, int n_tasks)
{
    static attempts_t v;
    if (attempts_read(s->db, plan, NULL, &v) < 0) {
        t_failures++;
        return -1;
    }
    CHECK(v.n < ATTEMPTS_MAX);
    CHECK_INT(attempts_count(&v, LEDGER_ATTEMPT_SUCCEEDED), n_tasks);
    for (int i = 0; i < v.n; i++) {
        for (int k = i + 1; k < v.n; k++) {
            if (v.a[i].outcome == LEDGER_ATTEMPT_SUCCEEDED &&
                v.a[k].outcome == LEDGER_ATTEMPT_SUCCEEDED &&
                strcmp(v.a[i].task, v.a[k].task) == 0) {
                fprintf(stderr, "task %s accepted twice\n", v.a[i].task);
                t_failures++;
            }
        }
    }
    return attempts_count(&v, LEDGER_ATTEMPT_EXPIRED) +
           attempts_count(&v, LEDGER_ATTEMPT_RELEASED);
}

enum { S_DRONES = 40 };

static const char *s_token_run =
    "[\"sh\",\"-c\",\"sleep 1; echo $WAGGLE_TASK_TOKEN\"]";

// A connect storm of 40 one-slot drones: all listed, all busy; then half
// SIGKILLed at once: their tasks run again elsewhere, none lost, none
// recorded twice.
static void
test_many_drones_half_killed(void)
{
    swarm_t s;
    swarm_init(&s, 200, 1500);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    int64_t t0 = clock_mono_ms();
    for (int i = 0; i < S_DRONES; i++) {
        swarm_drone(&s, 1, NULL, NULL);
    }
    CHECK(s_wait_drones(&s, S_DRONES, 30000));
    fprintf(stderr, "%d drones listed after %lld ms\n", S_DRONES,
            (long long) (clock_mono_ms() - t0));
    char *json = s_flat_plan("many", 3 * S_DRONES, s_token_run);
    int64_t plan = swarm_submit(&s, json);
    free(json);
    REQUIRE(plan > 0);
    CHECK(s_wait_in_state(&s, plan, "leased", S_DRONES, 20000));
    for (int i = 0; i < S_DRONES / 2; i++) {
        kill(s.drones[i], SIGKILL);
    }
    for (int i = 0; i < S_DRONES / 2; i++) {
        waitpid(s.drones[i], NULL, 0);
        s.drones[i] = 0;
    }
    char state[32];
    swarm_wait_plan(&s, plan, 60, state, sizeof state);
    CHECK_STR(state, "succeeded");
    CHECK(s_wait_drones(&s, S_DRONES / 2, 10000));
    swarm_stop(&s);
    int lost = s_check_once(&s, plan, 3 * S_DRONES);
    CHECK(lost >= 1 && lost <= S_DRONES);
}

// 40 drones hold leases when the broker is SIGKILLed; the restarted broker
// takes them all back (reconnect storm) and no lease is lost: every task
// succeeds on its first attempt.
static void
test_broker_restart_under_many_drones(void)
{
    swarm_t s;
    swarm_init(&s, 200, 3000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    for (int i = 0; i < S_DRONES; i++) {
        swarm_drone(&s, 1, NULL, NULL);
    }
    CHECK(s_wait_drones(&s, S_DRONES, 30000));
    char *json = s_flat_plan("held", S_DRONES,
                             "[\"sh\",\"-c\",\"sleep 4; echo "
                             "$WAGGLE_TASK_TOKEN\"]");
    int64_t plan = swarm_submit(&s, json);
    free(json);
    REQUIRE(plan > 0);
    REQUIRE(s_wait_in_state(&s, plan, "leased", S_DRONES, 20000));
    swarm_broker_kill(&s);
    int64_t t0 = clock_mono_ms();
    REQUIRE(swarm_broker(&s, NULL) == 0);
    CHECK(s_wait_drones(&s, S_DRONES, 20000));
    fprintf(stderr, "%d drones back %lld ms after the restart\n", S_DRONES,
            (long long) (clock_mono_ms() - t0));
    char state[32];
    swarm_wait_plan(&s, plan, 60, state, sizeof state);
    CHECK_STR(state, "succeeded");
    swarm_stop(&s);
    CHECK_INT(s_check_once(&s, plan, S_DRONES), 0);
}

// Started with a soft limit of 40 open files (systemd's default of 1024 is
// the same trap at scale), the broker still takes 48 drones: it raises its
// soft limit to the hard one, since every drone and console is a
// descriptor.  Before, it stopped accepting past ~20 with no word in its
// log.
static void
test_broker_raises_its_fd_limit(void)
{
    enum { N = 48 };
    struct rlimit old;
    REQUIRE(getrlimit(RLIMIT_NOFILE, &old) == 0);
    if (old.rlim_max != RLIM_INFINITY && old.rlim_max < 256) {
        fprintf(stderr, "SKIP: hard limit on open files is %llu\n",
                (unsigned long long) old.rlim_max);
        return;
    }
    swarm_t s;
    swarm_init(&s, 200, 2000);
    struct rlimit low = {.rlim_cur = 40, .rlim_max = old.rlim_max};
    REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
    int rc = swarm_broker(&s, NULL);
    setrlimit(RLIMIT_NOFILE, &old);
    REQUIRE(rc == 0);
    for (int i = 0; i < N; i++) {
        swarm_drone(&s, 1, NULL, NULL);
    }
    CHECK(s_wait_drones(&s, N, 30000));
    char path[700];
    snprintf(path, sizeof path, "%s/broker.log", s.dir);
    CHECK(swarm_log_has(path, "open files", NULL));
    swarm_stop(&s);
}

// A drone with 16 slots started under a soft limit of 40 open files (each
// running task takes a few pipes) runs 16 tasks at once: it raises its
// soft limit too.  Before, some failed with "cannot make pipes: Too many
// open files", each using an attempt.
static void
test_drone_raises_its_fd_limit(void)
{
    enum { N = 16 };
    struct rlimit old;
    REQUIRE(getrlimit(RLIMIT_NOFILE, &old) == 0);
    if (old.rlim_max != RLIM_INFINITY && old.rlim_max < 256) {
        fprintf(stderr, "SKIP: hard limit on open files is %llu\n",
                (unsigned long long) old.rlim_max);
        return;
    }
    swarm_t s;
    swarm_init(&s, 200, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    struct rlimit low = {.rlim_cur = 40, .rlim_max = old.rlim_max};
    REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
    swarm_drone(&s, N, NULL, NULL);
    setrlimit(RLIMIT_NOFILE, &old);
    char *json = s_flat_plan("pipes", N, "[\"sleep\",\"2\"]");
    // No retries: a task that could not start shows as dead.
    char *zero = strstr(json, "\"tasks\"");
    REQUIRE(zero);
    char *plan_json = xasprintf("{\"name\":\"pipes\",\"defaults\":"
                                "{\"retries\":0},%s", zero);
    free(json);
    int64_t plan = swarm_submit(&s, plan_json);
    free(plan_json);
    REQUIRE(plan > 0);
    char state[32];
    swarm_wait_plan(&s, plan, 30, state, sizeof state);
    CHECK_STR(state, "succeeded");
    swarm_stop(&s);
}

static const t_case_t t_cases[] = {
    T(test_status_of_a_plan_over_one_frame),
    T(test_small_plan_not_starved),
    T(test_many_drones_half_killed),
    T(test_broker_restart_under_many_drones),
    T(test_broker_raises_its_fd_limit),
    T(test_drone_raises_its_fd_limit),
    {0},
};

T_MAIN(t_cases)
