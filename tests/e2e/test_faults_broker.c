// e2e faults on the broker side: SIGKILL mid-plan and restart on the same
// ledger and endpoint; restart while idle.  Recovery comes from the ledger
// and the drones' outboxes; "exactly once" is asserted on the ledger.
#include "broker/ledger.h"
#include "tests/harness/proc.h"
#include "tests/harness/attempts.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include "common/clock.h"

#include <signal.h>
#include <sys/wait.h>

// --- helpers ----------------------------------------------------------------

static void
s_where(const swarm_t *s)
{
    fprintf(stderr, "%s: logs in %s\n", t_current, s->dir);
}

// The drones' instance ids from the overview, sorted into one string.
static void
s_instances(swarm_t *s, char *buf, size_t len)
{
    char ids[8][64];
    int n = 0;
    jnode_t *ov = swarm_overview(s);
    const jnode_t *drones = ov ? json_obj_get(ov, "drones") : NULL;
    for (size_t i = 0; drones && i < json_arr_size(drones) && n < 8; i++) {
        snprintf(ids[n++], sizeof ids[0], "%s",
                 json_str(json_obj_get(json_arr_get(drones, i), "instance")));
    }
    json_destroy(&ov);
    qsort(ids, (size_t) n, sizeof ids[0],
          (int (*)(const void *, const void *)) strcmp);
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        size_t used = strlen(buf);
        snprintf(buf + used, len - used, "%s%s", i ? "," : "", ids[i]);
    }
}

// --- 3. broker SIGKILLed mid-plan, restarted --------------------------------

// A chain of fans: a0 -> b1..b6 -> c -> d1..d6 -> e -> f1..f4 -> g
// (20 tasks), each appending "TASK TOKEN" to runs.txt and sleeping 0.3 s.
static char *
s_chain_of_fans(const char *runs, const char **ids, int *n_ids)
{
    static char names[32][16];
    size_t cap = 16384, used = 0;
    char *json = malloc(cap);
    used += (size_t) snprintf(json, cap,
                              "{\"name\":\"fans\",\"defaults\":"
                              "{\"retries\":2},\"tasks\":[");
    const char *layers[] = {"a", "b", "c", "d", "e", "f", "g"};
    const int width[] = {1, 6, 1, 6, 1, 4, 1};
    int n = 0, prev_start = 0, prev_n = 0;
    for (int L = 0; L < 7; L++) {
        int start = n;
        for (int k = 0; k < width[L]; k++) {
            snprintf(names[n], sizeof names[0], "%s%d", layers[L],
                     width[L] == 1 ? 0 : k + 1);
            used += (size_t) snprintf(json + used, cap - used,
                                      "%s{\"id\":\"%s\",\"needs\":[",
                                      n ? "," : "", names[n]);
            for (int p = 0; p < prev_n; p++) {
                used += (size_t) snprintf(json + used, cap - used,
                                          "%s\"%s\"", p ? "," : "",
                                          names[prev_start + p]);
            }
            used += (size_t) snprintf(
                json + used, cap - used,
                "],\"run\":[\"sh\",\"-c\",\"echo \\\"$WAGGLE_TASK "
                "$WAGGLE_TASK_TOKEN\\\" >> %s; sleep 0.3; echo $WAGGLE_TASK"
                "\"]}",
                runs);
            ids[n] = names[n];
            n++;
        }
        prev_start = start;
        prev_n = width[L];
    }
    snprintf(json + used, cap - used, "]}");
    *n_ids = n;
    return json;
}

static void
test_broker_killed_mid_plan(void)
{
    swarm_t s;
    swarm_init(&s, 100, 1500);
    s_where(&s);
    REQUIRE(swarm_broker(&s, "--verbose", NULL) == 0);
    for (int i = 0; i < 3; i++) {
        swarm_drone(&s, 2, NULL, NULL);
    }
    char runs[700];
    snprintf(runs, sizeof runs, "%s/runs.txt", s.dir);
    const char *ids[32];
    int n_ids = 0;
    char *json = s_chain_of_fans(runs, ids, &n_ids);
    int64_t plan = swarm_submit(&s, json);
    free(json);
    REQUIRE(plan > 0);
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);

    // `architect wait` from before the kill to after the restart.
    char wait_log[700];
    snprintf(wait_log, sizeof wait_log, "%s/wait.log", s.dir);
    char *wargv[] = {(char *) swarm_bin("waggle-architect"), "--broker",
                     s.endpoint, "--keys", s.keys, "wait", id, "--timeout",
                     "60", NULL};
    pid_t waiter = proc_spawn(wargv, wait_log, NULL);
    REQUIRE(waiter > 0);

    // Kill once a0 ran and the first fan is running under leases.
    REQUIRE(swarm_wait_lines(runs, 3, 20000));
    swarm_broker_kill(&s);
    int lines_at_kill = swarm_file_lines(runs);

    // What the ledger had issued before the crash.
    attempts_t *before = calloc(1, sizeof *before);
    REQUIRE(attempts_read(s.db, plan, NULL, before) == 0);
    uint64_t max_before = 0;
    int leased_at_kill = 0;
    for (int i = 0; i < before->n; i++) {
        if (before->a[i].token > max_before) {
            max_before = before->a[i].token;
        }
        leased_at_kill += before->a[i].outcome == LEDGER_ATTEMPT_RUNNING;
    }
    CHECK(max_before > 0);
    CHECK(leased_at_kill > 0);

    // Down for a second: the running tasks finish, their RESULTs wait in
    // the drones' outboxes.
    usleep(1000 * 1000);
    REQUIRE(swarm_broker(&s, "--verbose", NULL) == 0);

    int st = 0;
    CHECK_INT(proc_wait(waiter, 60000, &st), 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    if (proc_alive(waiter)) {
        proc_stop(waiter, 1000);
    }
    char state[32];
    swarm_wait_plan(&s, plan, 10, state, sizeof state);
    CHECK_STR(state, "succeeded");
    swarm_stop(&s);

    attempts_t *after = calloc(1, sizeof *after);
    REQUIRE(attempts_read(s.db, plan, NULL, after) == 0);
    char *text = t_read_file(runs, NULL);
    for (int k = 0; k < n_ids; k++) {
        int ok = 0;
        for (int i = 0; i < after->n; i++) {
            ok += strcmp(after->a[i].task, ids[k]) == 0 &&
                  after->a[i].outcome == LEDGER_ATTEMPT_SUCCEEDED;
        }
        if (ok != 1) {
            fprintf(stderr, "task %s: %d succeeded attempts\n", ids[k], ok);
        }
        CHECK_INT(ok, 1);
        // At least once: each ran and appended its line.
        char needle[96];
        snprintf(needle, sizeof needle, "%s ", ids[k]);
        bool ran = false;
        for (const char *p = text; p && (p = strstr(p, needle)) != NULL;
             p++) {
            ran |= p == text || p[-1] == '\n';
        }
        CHECK(ran);
    }
    free(text);
    // Tokens: unique; the ones issued after the restart above all before.
    int issued_after = 0;
    for (int i = 0; i < after->n; i++) {
        bool old = false;
        for (int j = 0; j < before->n; j++) {
            old |= before->a[j].token == after->a[i].token;
        }
        if (!old) {
            issued_after++;
            if (after->a[i].token <= max_before) {
                fprintf(stderr, "token %llu issued after the restart is not "
                                "above %llu\n",
                        (unsigned long long) after->a[i].token,
                        (unsigned long long) max_before);
                t_failures++;
            }
        }
        for (int j = 0; j < i; j++) {
            CHECK(after->a[j].token != after->a[i].token);
        }
    }
    CHECK(issued_after > 0);
    CHECK(lines_at_kill < n_ids);
    free(before);
    free(after);
}

// --- 4. broker restarted while idle: the drones come back -------------------

static void
test_broker_restart_idle(void)
{
    swarm_t s;
    // Heartbeats slow enough that the drones do not notice the broker was
    // gone before it is back: their next heartbeat gets HELLO_REQUIRED.
    swarm_init(&s, 1000, 10000);
    s_where(&s);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    swarm_drone(&s, 1, "x", NULL);
    swarm_drone(&s, 1, "y", NULL);
    REQUIRE(swarm_wait_drone(&s, "x", true, -1, 10000));
    REQUIRE(swarm_wait_drone(&s, "y", true, -1, 10000));
    char ids_before[256];
    s_instances(&s, ids_before, sizeof ids_before);

    swarm_broker_kill(&s);
    usleep(200 * 1000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    int64_t t0 = clock_mono_ms();
    // A new broker knows no drone until one says HELLO.
    CHECK(swarm_wait_drone(&s, "x", true, -1, 5000));
    CHECK(swarm_wait_drone(&s, "y", true, -1, 5000));
    CHECK(clock_mono_ms() - t0 < 5000);
    char ids_after[256];
    s_instances(&s, ids_after, sizeof ids_after);
    CHECK_STR(ids_after, ids_before);
    // They learned of the restart from HELLO_REQUIRED.
    for (int i = 0; i < 2; i++) {
        char log[700];
        snprintf(log, sizeof log, "%s/drone-%d.log", s.dir, i);
        CHECK(swarm_log_has(log, "broker asks for HELLO", NULL));
    }
    // And the swarm works.
    int64_t plan = swarm_submit(
        &s, "{\"name\":\"after\",\"tasks\":[{\"id\":\"t\","
            "\"run\":[\"echo\",\"ok\"]}]}");
    CHECK(plan > 0);
    char state[32];
    swarm_wait_plan(&s, plan, 15, state, sizeof state);
    CHECK_STR(state, "succeeded");
    swarm_stop(&s);
}

static const t_case_t t_cases[] = {
    T(test_broker_killed_mid_plan),
    T(test_broker_restart_idle),
    {0},
};

T_MAIN(t_cases)
