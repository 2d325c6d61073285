// e2e faults on the drone side: SIGKILL, SIGSTOP past the lease, SIGTERM
// (drain, and hand-back).  Real processes, real signals; "exactly once" is
// asserted on the ledger itself, "at least once" on a file every execution
// appends a line to.
#include "broker/ledger.h"
#include "tests/harness/proc.h"
#include "tests/harness/attempts.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include "common/clock.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>

#define HB_MS 100
#define LEASE_MS 1500

// --- helpers ----------------------------------------------------------------

static void
s_path(char *buf, size_t len, const swarm_t *s, const char *name)
{
    snprintf(buf, len, "%s/%s", s->dir, name);
}

// A one-task plan running the shell script sh (JSON-escaped already).
static int64_t
s_submit_one(swarm_t *s, const char *sh, int retries)
{
    char json[4096];
    snprintf(json, sizeof json,
             "{\"name\":\"faults\",\"defaults\":{\"retries\":%d},"
             "\"tasks\":[{\"id\":\"t\",\"run\":[\"sh\",\"-c\",\"%s\"]}]}",
             retries, sh);
    return swarm_submit(s, json);
}

// Says where the logs are (the directory is kept when the test fails).
static void
s_where(const swarm_t *s)
{
    fprintf(stderr, "%s: logs in %s\n", t_current, s->dir);
}

// --- 1. drone SIGKILLed mid-task --------------------------------------------

static void
test_drone_killed_mid_task(void)
{
    swarm_t s;
    swarm_init(&s, HB_MS, LEASE_MS);
    s_where(&s);
    REQUIRE(swarm_broker(&s, "--verbose", NULL) == 0);
    int a = swarm_drone(&s, 1, "a", NULL);
    char runs[700];
    s_path(runs, sizeof runs, &s, "runs.txt");
    char sh[1024];
    snprintf(sh, sizeof sh,
             "echo \\\"$$ started by $WAGGLE_TASK_TOKEN\\\" >> %s; "
             "exec sleep 3", runs);
    int64_t plan = s_submit_one(&s, sh, 2);
    REQUIRE(plan > 0);

    // The only drone runs it; then a second drone arrives.
    REQUIRE(swarm_wait_lines(runs, 1, 15000));
    long pid1 = 0;
    unsigned long long tok1 = 0;
    REQUIRE(swarm_run_line(runs, 0, &pid1, &tok1));
    swarm_drone(&s, 1, "b", NULL);
    CHECK(swarm_wait_drone(&s, "b", true, -1, 10000));

    // SIGKILL: no drain, no goodbye.  PDEATHSIG takes the child with it.
    kill(s.drones[a], SIGKILL);
    waitpid(s.drones[a], NULL, 0);
    s.drones[a] = 0;
    CHECK(proc_gone((pid_t) pid1, 2000));

    // The broker sees the connection close and the other drone runs the
    // task again.
    CHECK(swarm_wait_lines(runs, 2, LEASE_MS + 15000));
    char state[32];
    swarm_wait_plan(&s, plan, 20, state, sizeof state);
    CHECK_STR(state, "succeeded");
    long pid2 = 0;
    unsigned long long tok2 = 0;
    CHECK(swarm_run_line(runs, 1, &pid2, &tok2));
    CHECK(tok2 > tok1);
    CHECK(pid2 != pid1);
    swarm_stop(&s);

    attempts_t v;
    REQUIRE(attempts_read(s.db, plan, "t", &v) == 0);
    CHECK_INT(v.n, 2);
    CHECK_INT(attempts_count(&v, LEDGER_ATTEMPT_SUCCEEDED), 1);
    if (v.n == 2) {
        // Its connection closed: the holder is known dead, so the first
        // such loss uses no attempt.
        CHECK_INT(v.a[0].token, tok1);
        CHECK_INT(v.a[0].outcome, LEDGER_ATTEMPT_RELEASED);
        CHECK_INT(v.a[1].token, tok2);
        CHECK_INT(v.a[1].outcome, LEDGER_ATTEMPT_SUCCEEDED);
    }
    CHECK_INT(swarm_file_lines(runs), 2);
}

// --- 2. drone frozen past its lease, then resumed ---------------------------

static void
test_drone_frozen_then_resumed(void)
{
    swarm_t s;
    swarm_init(&s, HB_MS, LEASE_MS);
    s_where(&s);
    REQUIRE(swarm_broker(&s, "--verbose", NULL) == 0);
    int a = swarm_drone(&s, 1, "a", "--verbose", NULL);
    char runs[700], alog[700], blog[700];
    s_path(runs, sizeof runs, &s, "runs.txt");
    s_path(alog, sizeof alog, &s, "drone-0.log");
    s_path(blog, sizeof blog, &s, "broker.log");
    char sh[1024];
    snprintf(sh, sizeof sh,
             "echo \\\"$$ started by $WAGGLE_TASK_TOKEN\\\" >> %s; "
             "sleep 1; echo done", runs);
    int64_t plan = s_submit_one(&s, sh, 2);
    REQUIRE(plan > 0);

    REQUIRE(swarm_wait_lines(runs, 1, 15000));
    long pid1 = 0;
    unsigned long long tok1 = 0;
    REQUIRE(swarm_run_line(runs, 0, &pid1, &tok1));
    char ainst[64] = "", binst[64] = "";
    CHECK(swarm_drone_by_tag(&s, "a", ainst, sizeof ainst, NULL));
    kill(s.drones[a], SIGSTOP);
    swarm_drone(&s, 1, "b", NULL);

    // Frozen drone: no heartbeats, so its lease lapses and b runs the task.
    char state[32];
    swarm_wait_plan(&s, plan, 25, state, sizeof state);
    CHECK_STR(state, "succeeded");
    CHECK(swarm_drone_by_tag(&s, "b", binst, sizeof binst, NULL));
    CHECK(swarm_wait_lines(runs, 2, 1000));
    long pid2 = 0;
    unsigned long long tok2 = 0;
    CHECK(swarm_run_line(runs, 1, &pid2, &tok2));
    CHECK(tok2 > tok1);
    // The frozen drone's own child ran on (only the drone was stopped).
    CHECK(proc_gone((pid_t) pid1, 5000));

    // Thaw it.  Its copy finished while it was frozen; the drone keeps that
    // RESULT until answered, and the broker's fence answers it `stale`.
    kill(s.drones[a], SIGCONT);
    char tok[48];
    snprintf(tok, sizeof tok, "token %llu from", tok1);
    CHECK(swarm_wait_log(blog, tok, ": stale", 10000));
    // The thawed drone is back in service, holding nothing.
    CHECK(swarm_wait_drone(&s, "a", true, 0, 10000));
    swarm_wait_plan(&s, plan, 5, state, sizeof state);
    CHECK_STR(state, "succeeded");
    swarm_stop(&s);

    attempts_t v;
    REQUIRE(attempts_read(s.db, plan, "t", &v) == 0);
    CHECK_INT(attempts_count(&v, LEDGER_ATTEMPT_SUCCEEDED), 1);
    REQUIRE(v.n >= 2);
    CHECK_INT(v.a[0].token, tok1);
    CHECK_INT(v.a[0].outcome, LEDGER_ATTEMPT_EXPIRED);
    CHECK_STR(v.a[0].instance, ainst);
    uint32_t accepted = 0;
    for (int i = 0; i < v.n; i++) {
        if (v.a[i].outcome == LEDGER_ATTEMPT_SUCCEEDED) {
            accepted = v.a[i].n;
            CHECK_INT(v.a[i].token, tok2);
            CHECK_STR(v.a[i].instance, binst);
        }
        // Once its lease lapsed for silence, the frozen drone must not be
        // handed the task again (that burns an attempt of the budget on a
        // drone known to be unresponsive while b sits idle).
        if (i > 0 && strcmp(v.a[i].instance, ainst) == 0) {
            fprintf(stderr, "attempt %u (token %llu) was leased to the "
                            "frozen drone %s again\n", v.a[i].n,
                    (unsigned long long) v.a[i].token, ainst);
            t_failures++;
        }
    }
    CHECK_INT(v.n, 2);
    // Nothing from the stale token: its attempt holds no output; the
    // accepted one holds b's.
    ledger_t *l = NULL;
    char err[256];
    REQUIRE(ledger_open(&l, s.db, LEDGER_RDONLY, err, sizeof err) == 0);
    uint8_t *data = NULL;
    size_t len = 0;
    bool trunc = false;
    uint32_t which = 0;
    ledger_rc_t rc = ledger_task_output(l, plan, "t", 1, false, &data, &len,
                                        &trunc, &which);
    CHECK(rc != LEDGER_ERROR);
    CHECK_INT(len, 0);
    free(data);
    data = NULL;
    CHECK_INT(ledger_task_output(l, plan, "t", 0, false, &data, &len, &trunc,
                                 &which),
              LEDGER_OK);
    CHECK_INT(which, accepted);
    CHECK(len == 5 && data && memcmp(data, "done\n", 5) == 0);
    free(data);
    ledger_destroy(&l);
}

// --- 5. graceful stop -------------------------------------------------------

// SIGTERM with the default drain: the running task finishes, its result is
// accepted, then the drone leaves and the broker stops listing it.
static void
test_drone_sigterm_drains(void)
{
    swarm_t s;
    swarm_init(&s, HB_MS, LEASE_MS);
    s_where(&s);
    REQUIRE(swarm_broker(&s, "--verbose", NULL) == 0);
    int a = swarm_drone(&s, 1, "a", NULL);
    char runs[700];
    s_path(runs, sizeof runs, &s, "runs.txt");
    char sh[1024];
    snprintf(sh, sizeof sh,
             "echo \\\"$$ started by $WAGGLE_TASK_TOKEN\\\" >> %s; "
             "sleep 2; echo finished", runs);
    int64_t plan = s_submit_one(&s, sh, 0);
    REQUIRE(plan > 0);
    REQUIRE(swarm_wait_lines(runs, 1, 15000));
    char inst[64];
    CHECK(swarm_drone_by_tag(&s, "a", inst, sizeof inst, NULL));

    kill(s.drones[a], SIGTERM);
    int st = 0;
    CHECK_INT(proc_wait(s.drones[a], 15000, &st), 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    s.drones[a] = 0;
    // It left only after the result was recorded.
    char state[32];
    swarm_wait_plan(&s, plan, 2, state, sizeof state);
    CHECK_STR(state, "succeeded");
    CHECK(swarm_wait_drone(&s, "a", false, -1, 5000));
    char *out = NULL;
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    CHECK_INT(swarm_arch(&s, &out, NULL, "output", id, "t", NULL), 0);
    CHECK_STR(out, "finished\n");
    free(out);
    swarm_stop(&s);

    attempts_t v;
    REQUIRE(attempts_read(s.db, plan, "t", &v) == 0);
    CHECK_INT(v.n, 1);
    CHECK_INT(attempts_count(&v, LEDGER_ATTEMPT_SUCCEEDED), 1);
    CHECK_STR(v.a[0].instance, inst);
    CHECK_INT(swarm_file_lines(runs), 1);
}

// A long task on a drone told to leave now: handed back (released, no
// attempt used), run again elsewhere; with retries 0 the plan still
// succeeds.  second_term: default drain, then a second SIGTERM; else
// --drain-s 0 and one SIGTERM.
static void
s_hand_back(bool second_term)
{
    swarm_t s;
    swarm_init(&s, HB_MS, LEASE_MS);
    s_where(&s);
    REQUIRE(swarm_broker(&s, "--verbose", NULL) == 0);
    int a = second_term ? swarm_drone(&s, 1, "a", NULL)
                        : swarm_drone(&s, 1, "a", "--drain-s", "0", NULL);
    char runs[700], alog[700];
    s_path(runs, sizeof runs, &s, "runs.txt");
    s_path(alog, sizeof alog, &s, "drone-0.log");
    char sh[1024];
    snprintf(sh, sizeof sh,
             "echo \\\"$$ started by $WAGGLE_TASK_TOKEN\\\" >> %s; "
             "sleep 2; echo finished", runs);
    int64_t plan = s_submit_one(&s, sh, 0);
    REQUIRE(plan > 0);
    REQUIRE(swarm_wait_lines(runs, 1, 15000));
    long pid1 = 0;
    unsigned long long tok1 = 0;
    REQUIRE(swarm_run_line(runs, 0, &pid1, &tok1));
    swarm_drone(&s, 1, "b", NULL);
    CHECK(swarm_wait_drone(&s, "b", true, -1, 10000));

    kill(s.drones[a], SIGTERM);
    if (second_term) {
        int64_t end = clock_mono_ms() + 5000;
        while (!swarm_log_has(alog, "draining", NULL) &&
               clock_mono_ms() < end) {
            usleep(20000);
        }
        CHECK(swarm_log_has(alog, "draining", NULL));
        kill(s.drones[a], SIGTERM);
    }
    int st = 0;
    CHECK_INT(proc_wait(s.drones[a], 10000, &st), 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    s.drones[a] = 0;
    CHECK(proc_gone((pid_t) pid1, 2000));
    CHECK(swarm_wait_drone(&s, "a", false, -1, 5000));

    // Handed back at once: b runs it well before a lease could lapse.
    CHECK(swarm_wait_lines(runs, 2, 15000));
    char state[32];
    swarm_wait_plan(&s, plan, 20, state, sizeof state);
    CHECK_STR(state, "succeeded");
    swarm_stop(&s);

    attempts_t v;
    REQUIRE(attempts_read(s.db, plan, "t", &v) == 0);
    CHECK_INT(v.n, 2);
    CHECK_INT(attempts_count(&v, LEDGER_ATTEMPT_SUCCEEDED), 1);
    if (v.n == 2) {
        CHECK_INT(v.a[0].token, tok1);
        CHECK_INT(v.a[0].outcome, LEDGER_ATTEMPT_RELEASED);
        CHECK_INT(v.a[1].outcome, LEDGER_ATTEMPT_SUCCEEDED);
    }
    CHECK_INT(swarm_file_lines(runs), 2);
}

static void
test_drone_drain_zero_hands_back(void)
{
    s_hand_back(false);
}

static void
test_drone_second_sigterm_hands_back(void)
{
    s_hand_back(true);
}

// --- 6. death detected fast, with the default timing ------------------------

// The broker's default --heartbeat-ms and --lease-ms (README): the target is
// a dead drone's task running elsewhere within 3 s, long before its 10 s
// lease would lapse.
#define DEFAULT_HB_MS 1000
#define DEFAULT_LEASE_MS 10000

// A plan whose first run sleeps long (a drone must die under it) and whose
// later runs finish at once.
static int64_t
s_submit_long_once(swarm_t *s, const char *runs)
{
    char sh[2048];
    snprintf(sh, sizeof sh,
             "echo \\\"$$ started by $WAGGLE_TASK_TOKEN\\\" >> %s; "
             "if [ $(wc -l < %s) -eq 1 ]; then exec sleep 60; fi; "
             "echo done", runs, runs);
    return s_submit_one(s, sh, 2);
}

// Starts the broker with the default timing, drone a (which gets the long
// task) and then drone b; returns a's index, the first run's pid and token.
static int
s_default_pair(swarm_t *s, const char *runs, int64_t *plan, long *pid1,
               unsigned long long *tok1)
{
    swarm_init(s, DEFAULT_HB_MS, DEFAULT_LEASE_MS);
    s_where(s);
    if (swarm_broker(s, "--verbose", NULL) != 0) {
        return -1;
    }
    int a = swarm_drone(s, 1, "a", NULL);
    *plan = s_submit_long_once(s, runs);
    if (*plan <= 0 || !swarm_wait_lines(runs, 1, 15000) ||
        !swarm_run_line(runs, 0, pid1, tok1)) {
        return -1;
    }
    swarm_drone(s, 1, "b", NULL);
    if (!swarm_wait_drone(s, "b", true, -1, 15000)) {
        return -1;
    }
    return a;
}

// SIGKILL: the drone's connection closes.  The broker notices the close
// (not the lease) and hands the task to b within about two heartbeats; the
// holder is known dead, so its attempt is released (none used).
static void
test_killed_drone_detected_fast(void)
{
    swarm_t s;
    char runs[700];
    int64_t plan = 0;
    long pid1 = 0;
    unsigned long long tok1 = 0;
    snprintf(runs, sizeof runs, "%s/runs.txt", t_tmpdir());
    int a = s_default_pair(&s, runs, &plan, &pid1, &tok1);
    SWARM_REQUIRE(&s, a >= 0);
    int64_t t0 = clock_mono_ms();
    kill(s.drones[a], SIGKILL);
    waitpid(s.drones[a], NULL, 0);
    s.drones[a] = 0;
    CHECK(swarm_wait_lines(runs, 2, 20000));
    int64_t took = clock_mono_ms() - t0;
    fprintf(stderr, "%s: killed drone's task running elsewhere after %lld "
                    "ms (target 3000)\n", t_current, (long long) took);
    CHECK(took < 6000);
    char state[32];
    swarm_wait_plan(&s, plan, 20, state, sizeof state);
    CHECK_STR(state, "succeeded");
    swarm_stop(&s);

    attempts_t v;
    REQUIRE(attempts_read(s.db, plan, "t", &v) == 0);
    CHECK_INT(v.n, 2);
    CHECK_INT(attempts_count(&v, LEDGER_ATTEMPT_SUCCEEDED), 1);
    if (v.n == 2) {
        CHECK_INT(v.a[0].token, tok1);
        CHECK_INT(v.a[0].outcome, LEDGER_ATTEMPT_RELEASED);
    }
}

static const t_case_t t_cases[] = {
    T(test_drone_killed_mid_task),
    T(test_drone_frozen_then_resumed),
    T(test_drone_sigterm_drains),
    T(test_drone_drain_zero_hands_back),
    T(test_drone_second_sigterm_hands_back),
    T(test_killed_drone_detected_fast),
    {0},
};

T_MAIN(t_cases)
