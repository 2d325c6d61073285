// e2e: nothing a task starts outlives it — a setsid() child and a
// double-fork daemon are gone after the task ends, after it times out and
// after it is cancelled, in both isolation modes (a PID namespace per task,
// which needs root, and the subreaper).  And a drone refuses to start when
// it cannot run tasks as the user it was told to.  When the drone's
// environment and a task's env name one variable, the task sees one entry,
// the task's.  The scratch directory of a drone killed with SIGKILL is
// removed by the next drone, and a live drone's is not.
#include "tests/harness/proc.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include "common/xalloc.h"

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>

// Polls until exactly want sleepers of both kinds run, or timeout_ms.
static bool
s_wait_sleepers(int a, int b, int want, int timeout_ms)
{
    for (int waited = 0;; waited += 50) {
        if (t_sleepers(a) + t_sleepers(b) == want) {
            return true;
        }
        if (waited >= timeout_ms) {
            return false;
        }
        usleep(50 * 1000);
    }
}

// A task that leaves a setsid() child (sleep A) and a double-fork daemon
// (sleep B) behind, then runs for `tail` more.
static char *
s_leaver(const char *id, int a, int b, const char *tail, const char *extra)
{
    return xasprintf("{\"name\":\"leave\",\"tasks\":[{\"id\":\"%s\","
                     "\"retries\":0,%s\"run\":[\"sh\",\"-c\",\"setsid sleep "
                     "%d & (sh -c 'sleep %d & exit 0' &); %s\"]}]}",
                     id, extra, a, b, tail);
}

static void
s_nothing_survives(const char *isolation)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    SWARM_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    swarm_drone(&s, 2, "iso", "--isolation", isolation, NULL);
    char state[32];
    // 1. It ends on its own.
    char *plan = s_leaver("ends", 73101, 73102, "sleep 0.5", "");
    int64_t id = swarm_submit(&s, plan);
    free(plan);
    SWARM_REQUIRE(&s, id > 0);
    swarm_wait_plan(&s, id, 30, state, sizeof state);
    CHECK_STR(state, "succeeded");
    CHECK(s_wait_sleepers(73101, 73102, 0, 5000));
    // 2. It times out.
    plan = s_leaver("slow", 73103, 73104, "sleep 60", "\"timeout_s\":1,");
    id = swarm_submit(&s, plan);
    free(plan);
    SWARM_REQUIRE(&s, id > 0);
    CHECK(s_wait_sleepers(73103, 73104, 2, 10000));
    swarm_wait_plan(&s, id, 30, state, sizeof state);
    CHECK_STR(state, "failed");
    CHECK(s_wait_sleepers(73103, 73104, 0, 5000));
    // 3. It is cancelled while it runs.
    plan = s_leaver("cancelled", 73105, 73106, "sleep 60", "");
    id = swarm_submit(&s, plan);
    free(plan);
    SWARM_REQUIRE(&s, id > 0);
    SWARM_REQUIRE(&s, s_wait_sleepers(73105, 73106, 2, 10000));
    char num[32];
    snprintf(num, sizeof num, "%lld", (long long) id);
    CHECK_INT(swarm_arch(&s, NULL, NULL, "cancel", num, NULL), 0);
    swarm_wait_plan(&s, id, 30, state, sizeof state);
    CHECK_STR(state, "cancelled");
    CHECK(s_wait_sleepers(73105, 73106, 0, 8000));
    swarm_stop(&s);
}

static void
test_nothing_survives_subreaper(void)
{
    s_nothing_survives("subreaper");
}

static void
test_nothing_survives_pidns(void)
{
    if (geteuid() != 0) {
        t_skip("needs root");
        return;
    }
    s_nothing_survives("pidns");
}

// Runs a drone with these extra flags until it exits; returns its exit
// status and leaves its log in *log (caller frees).
static int
s_drone_exit(swarm_t *s, const char *flag, const char *value, char **log)
{
    char path[700];
    snprintf(path, sizeof path, "%s/refused-%s.log", s->dir, value);
    char *argv[] = {(char *) swarm_bin("waggle-drone"), "--broker",
                    s->endpoint, "--keys", s->keys, (char *) flag,
                    (char *) value, NULL};
    pid_t pid = proc_spawn(argv, path, NULL);
    int status = 0;
    if (proc_wait(pid, 10000, &status) != 0) {
        proc_stop(pid, 1000);
        status = -1;
    }
    *log = t_read_file(path, NULL);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void
test_run_as_refusals(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    char *log = NULL;
    if (geteuid() == 0) {
        CHECK_INT(s_drone_exit(&s, "--run-as", "no-such-user-w", &log), 2);
        CHECK_HAS(log, "cannot run tasks as 'no-such-user-w': no such user");
        CHECK_HAS(log, "useradd --system");
    } else {
        CHECK_INT(s_drone_exit(&s, "--run-as", "root", &log), 2);
        CHECK_HAS(log, "cannot switch users");
    }
    free(log);
    CHECK_INT(s_drone_exit(&s, "--isolation", "jail", &log), 2);
    CHECK_HAS(log, "'jail' is not auto, pidns or subreaper");
    free(log);
    swarm_stop(&s);
}

// Lines of text that start with prefix.
static int
s_lines_with(const char *text, const char *prefix)
{
    int n = 0;
    size_t len = strlen(prefix);
    for (const char *p = text; p && *p;) {
        n += strncmp(p, prefix, len) == 0;
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    return n;
}

// A variable the drone passes on (--pass-env) or allows (LANG) and the
// task's env both set: the child's environment holds it once, with the
// task's value, so getenv() in any program sees that.  `env` runs
// directly (no shell, which would fold duplicates) and prints the
// environment exactly as exec gave it.
static void
test_task_env_wins(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    SWARM_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    setenv("T_SHARED_VAR", "from-drone", 1);
    setenv("LANG", "C", 1);
    swarm_drone(&s, 1, "env", "--pass-env", "T_SHARED_VAR", NULL);
    unsetenv("T_SHARED_VAR");
    int64_t id = swarm_submit(
        &s, "{\"name\":\"env\",\"tasks\":[{\"id\":\"t\",\"run\":[\"env\"],"
            "\"env\":{\"T_SHARED_VAR\":\"from-task\",\"LANG\":\"en_X\"}"
            "}]}");
    SWARM_REQUIRE(&s, id > 0);
    char state[32], num[32];
    swarm_wait_plan(&s, id, 30, state, sizeof state);
    CHECK_STR(state, "succeeded");
    snprintf(num, sizeof num, "%lld", (long long) id);
    char *out = NULL;
    CHECK_INT(swarm_arch(&s, &out, NULL, "output", num, "t", NULL), 0);
    CHECK_INT(s_lines_with(out, "T_SHARED_VAR="), 1);
    CHECK_INT(s_lines_with(out, "T_SHARED_VAR=from-task\n"), 1);
    CHECK_INT(s_lines_with(out, "LANG="), 1);
    CHECK_INT(s_lines_with(out, "LANG=en_X\n"), 1);
    // The harness keeps drones' scratch in the test's directory.
    char *tmp = xasprintf("TMPDIR=%s/tmp/waggle-drone-", s.dir);
    CHECK_INT(s_lines_with(out, tmp), 1);
    free(tmp);
    free(out);
    swarm_stop(&s);
}

// The scratch bases (waggle-drone-*) in the swarm's TMPDIR.
static int
s_bases(const swarm_t *s, char names[][64], int max)
{
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s/tmp", s->dir);
    int n = 0;
    DIR *d = opendir(tmp);
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        if (strncmp(e->d_name, "waggle-drone-", 13) == 0 && n < max) {
            snprintf(names[n++], 64, "%.63s", e->d_name);
        }
    }
    if (d) {
        closedir(d);
    }
    return n;
}

// A drone killed with SIGKILL cannot remove its scratch base; the next
// drone on the host does, and leaves a live drone's alone.
static void
test_killed_drones_scratch_removed(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    SWARM_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    char names[8][64], live[8][64];
    int a = swarm_drone(&s, 1, "a", NULL);
    SWARM_REQUIRE(&s, swarm_wait_drone(&s, "a", true, -1, 10000));
    swarm_drone(&s, 1, "b", NULL);
    SWARM_REQUIRE(&s, swarm_wait_drone(&s, "b", true, -1, 10000));
    SWARM_REQUIRE(&s, s_bases(&s, names, 8) == 2);
    kill(s.drones[a], SIGKILL);
    waitpid(s.drones[a], NULL, 0);
    s.drones[a] = 0;
    CHECK_INT(s_bases(&s, names, 8), 2);  // a's stays behind...
    swarm_drone(&s, 1, "c", NULL);
    SWARM_REQUIRE(&s, swarm_wait_drone(&s, "c", true, -1, 10000));
    // ... until c starts: b's and c's remain.
    CHECK_INT(s_bases(&s, live, 8), 2);
    int kept = 0;
    for (int i = 0; i < 2; i++) {
        for (int k = 0; k < 2; k++) {
            kept += strcmp(names[i], live[k]) == 0;
        }
    }
    CHECK_INT(kept, 1);  // b's
    swarm_stop(&s);
}

static const t_case_t t_cases[] = {
    T(test_nothing_survives_subreaper),
    T(test_nothing_survives_pidns),
    T(test_run_as_refusals),
    T(test_task_env_wins),
    T(test_killed_drones_scratch_removed),
    {0},
};

T_MAIN(t_cases)
