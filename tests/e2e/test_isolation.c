// e2e: nothing a task starts outlives it — a setsid() child and a
// double-fork daemon are gone after the task ends, after it times out and
// after it is cancelled, in both isolation modes (a PID namespace per task,
// which needs root, and the subreaper).  And a drone refuses to start when
// it cannot run tasks as the user it was told to.
#include "tests/harness/proc.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include "common/xalloc.h"

#include <dirent.h>

// Live processes whose command line is exactly "sleep SECONDS" (durations
// nothing else on a shared machine is likely to use).
static int
s_sleepers(int seconds)
{
    char want[32];
    int wlen = snprintf(want, sizeof want, "sleep%c%d", '\0', seconds);
    int n = 0;
    DIR *d = opendir("/proc");
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        long pid = strtol(e->d_name, NULL, 10);
        char path[300];
        snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
        size_t len = 0;
        char *cmd = pid > 0 ? t_read_file(path, &len) : NULL;
        if (cmd && len == (size_t) wlen + 1 && memcmp(cmd, want, len) == 0) {
            n += !proc_gone((pid_t) pid, 0);
        }
        free(cmd);
    }
    if (d) {
        closedir(d);
    }
    return n;
}

// Polls until exactly want sleepers of both kinds run, or timeout_ms.
static bool
s_wait_sleepers(int a, int b, int want, int timeout_ms)
{
    for (int waited = 0;; waited += 50) {
        if (s_sleepers(a) + s_sleepers(b) == want) {
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
    REQUIRE(swarm_broker(&s, NULL) == 0);
    swarm_drone(&s, 2, "iso", "--isolation", isolation, NULL);
    char state[32];
    // 1. It ends on its own.
    char *plan = s_leaver("ends", 73101, 73102, "sleep 0.5", "");
    int64_t id = swarm_submit(&s, plan);
    free(plan);
    REQUIRE(id > 0);
    swarm_wait_plan(&s, id, 30, state, sizeof state);
    CHECK_STR(state, "succeeded");
    CHECK(s_wait_sleepers(73101, 73102, 0, 5000));
    // 2. It times out.
    plan = s_leaver("slow", 73103, 73104, "sleep 60", "\"timeout_s\":1,");
    id = swarm_submit(&s, plan);
    free(plan);
    REQUIRE(id > 0);
    CHECK(s_wait_sleepers(73103, 73104, 2, 10000));
    swarm_wait_plan(&s, id, 30, state, sizeof state);
    CHECK_STR(state, "failed");
    CHECK(s_wait_sleepers(73103, 73104, 0, 5000));
    // 3. It is cancelled while it runs.
    plan = s_leaver("cancelled", 73105, 73106, "sleep 60", "");
    id = swarm_submit(&s, plan);
    free(plan);
    REQUIRE(id > 0);
    REQUIRE(s_wait_sleepers(73105, 73106, 2, 10000));
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

static const t_case_t t_cases[] = {
    T(test_nothing_survives_subreaper),
    T(test_nothing_survives_pidns),
    T(test_run_as_refusals),
    {0},
};

T_MAIN(t_cases)
