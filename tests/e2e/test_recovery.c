// e2e recovery: a broker restarted on a ledger that holds several running
// plans brings every one of them back; a plan it cannot load is named and
// skipped while the others run on; a swarm of mixed plans survives
// repeated SIGKILLs of the broker with exactly one accepted attempt per
// task.  Everything is asserted on real processes and the ledger file.
#include "broker/ledger.h"
#include "tests/harness/attempts.h"
#include "tests/harness/peer.h"
#include "tests/harness/proc.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include "common/xalloc.h"

#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <zmq.h>

// --- helpers ----------------------------------------------------------------

// REQUIRE that first stops the swarm, so a failed test leaves no broker or
// drone running behind it.
#define S_REQUIRE(s, cond)                                                    \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: %s: REQUIRE(%s) failed\n", __FILE__,       \
                    __LINE__, t_current, #cond);                              \
            t_failures++;                                                     \
            swarm_stop(s);                                                    \
            return;                                                           \
        }                                                                     \
    } while (0)

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
    S_REQUIRE(&s, p1 > 0 && p2 > 0);
    swarm_broker_kill(&s);
    S_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
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

// OUTPUT with live for task x of plan, as `output --follow` asks: the
// answer names the task's state ("ready") and carries no tail.
static void
s_output_live_unloaded(swarm_t *s, int64_t plan)
{
    void *ctx = zmq_ctx_new();
    void *sock = peer_dealer(ctx, s, KEYS_ROLE_OPERATOR);
    CHECK(sock != NULL);
    proto_msg_t *m = proto_msg_new(PROTO_MSG_OUTPUT);
    m->req = 1;
    m->u.output.plan = plan;
    m->u.output.task = xstrdup("x");
    m->u.output.live = true;
    proto_msg_t *r = sock ? peer_ask(sock, &m, 10000) : NULL;
    proto_msg_destroy(&m);
    CHECK(r && r->cmd == PROTO_MSG_OUTPUT_OK);
    if (r && r->cmd == PROTO_MSG_OUTPUT_OK) {
        CHECK_STR(r->u.output_ok.state, "ready");
        CHECK(r->u.output_ok.running);
        CHECK_INT(r->u.output_ok.data.len, 0);
    }
    proto_msg_destroy(&r);
    if (sock) {
        zmq_close(sock);
    }
    zmq_ctx_term(ctx);
    CHECK(kill(s->broker, 0) == 0);
}

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
    S_REQUIRE(&s, p1 == 1 && p2 == 2 && p3 == 3);
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
    S_REQUIRE(&s, tasks && json_arr_size(tasks) == 2);
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
    // `output --follow` of an unfinished task of a plan not loaded: its
    // state comes from the ledger, and there is no live tail (the broker
    // looked the task up in a workplan it does not have, and crashed).
    s_output_live_unloaded(&s, p2);
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

// --- 3. mixed plans across repeated broker SIGKILLs --------------------------

// Every task appends "TASK TOKEN" to runs.txt, sleeps, and prints its own
// token: the stored output of an accepted attempt must be that attempt's
// token, or a result was recorded under a token it did not run under.
#define S_RUN(extra, secs)                                                    \
    "[\"sh\", \"-c\", \"" extra "echo \\\"$WAGGLE_TASK $WAGGLE_TASK_TOKEN\\\""  \
    " >> runs.txt; sleep " secs "; echo $WAGGLE_TASK_TOKEN\"]"
// Fails its first attempt (a marker file remembers), then succeeds.
#define S_FLAKY                                                               \
    "m=flaky.$WAGGLE_PLAN.$WAGGLE_TASK; if [ ! -e $m ]; then touch $m;"       \
    " exit 1; fi; "

static char *
s_fan_plan(const char *name, int width, const char *requires)
{
    size_t cap = 8192, used = 0;
    char *json = xmalloc(cap);
    used += (size_t) snprintf(json + used, cap - used, "{\"name\": \"%s\", "
                              "\"defaults\": {\"retries\": 2, \"requires\": "
                              "[%s]}, \"tasks\": [{\"id\": \"root\", "
                              "\"run\": " S_RUN("", "0.2") "}", name,
                              requires);
    for (int i = 0; i < width; i++) {
        used += (size_t) snprintf(json + used, cap - used, ", {\"id\": \"f%d\","
                                  " \"needs\": [\"root\"], \"run\": %s}", i,
                                  i % 3 == 1 ? S_RUN(S_FLAKY, "0.3")
                                             : S_RUN("", "0.3"));
    }
    used += (size_t) snprintf(json + used, cap - used, ", {\"id\": \"join\", "
                              "\"needs\": [");
    for (int i = 0; i < width; i++) {
        used += (size_t) snprintf(json + used, cap - used, "%s\"f%d\"",
                                  i ? ", " : "", i);
    }
    snprintf(json + used, cap - used, "], \"run\": " S_RUN("", "0.1") "}]}");
    return json;
}

static char *
s_chain_plan(const char *name, int n)
{
    size_t cap = 8192, used = 0;
    char *json = xmalloc(cap);
    used += (size_t) snprintf(json + used, cap - used, "{\"name\": \"%s\", "
                              "\"tasks\": [", name);
    for (int i = 0; i < n; i++) {
        used += (size_t) snprintf(json + used, cap - used, "%s{\"id\": \"c%d\"",
                                  i ? ", " : "", i);
        if (i) {
            used += (size_t) snprintf(json + used, cap - used,
                                      ", \"needs\": [\"c%d\"]", i - 1);
        }
        used += (size_t) snprintf(json + used, cap - used, ", \"run\": %s}",
                                  i % 2 ? S_RUN(S_FLAKY, "0.3")
                                        : S_RUN("", "0.3"));
    }
    snprintf(json + used, cap - used, "]}");
    return json;
}

// a fails for good; b needs a (blocked); c, d run.  The plan fails.
static const char s_doomed[] =
    "{\"name\": \"doomed\", \"tasks\": ["
    "{\"id\": \"a\", \"retries\": 1, \"run\": " S_RUN("", "0.2; exit 4")
    "},"
    "{\"id\": \"b\", \"needs\": [\"a\"], \"run\": " S_RUN("", "0.1") "},"
    "{\"id\": \"c\", \"run\": " S_RUN("", "0.4") "},"
    "{\"id\": \"d\", \"needs\": [\"c\"], \"run\": " S_RUN("", "0.2") "}]}";

// Long tasks, cancelled as a whole while they run.
static const char s_dropped[] =
    "{\"name\": \"dropped\", \"tasks\": ["
    "{\"id\": \"long1\", \"run\": " S_RUN("", "30") "},"
    "{\"id\": \"long2\", \"run\": " S_RUN("", "30") "},"
    "{\"id\": \"after\", \"needs\": [\"long1\"], \"run\": "
    S_RUN("", "0.1") "}]}";

// One long task cancelled on its own: what needs it is blocked, the rest
// runs, the plan fails.
static const char s_pruned[] =
    "{\"name\": \"pruned\", \"tasks\": ["
    "{\"id\": \"long\", \"run\": " S_RUN("", "30") "},"
    "{\"id\": \"next\", \"needs\": [\"long\"], \"run\": " S_RUN("", "0.1") "},"
    "{\"id\": \"p1\", \"run\": " S_RUN(S_FLAKY, "0.3") "},"
    "{\"id\": \"p2\", \"needs\": [\"p1\"], \"run\": " S_RUN("", "0.3") "}]}";

typedef struct {
    int64_t id;
    const char *want;            // the state it must end in
} s_plan_want_t;

// Exactly one accepted attempt per succeeded task, whose stored output is
// its own token; every token unique.  Returns the accepted count.
static int
s_check_ledger(const swarm_t *s, int64_t plan)
{
    attempts_t *v = xcalloc(1, sizeof *v);
    CHECK_INT(attempts_read(s->db, plan, NULL, v), 0);
    ledger_t *l = NULL;
    char err[256];
    CHECK_INT(ledger_open(&l, s->db, LEDGER_RDONLY, err, sizeof err), 0);
    int accepted = 0;
    for (int i = 0; l && i < v->n; i++) {
        const attempt_row_t *a = &v->a[i];
        for (int j = 0; j < i; j++) {
            CHECK(v->a[j].token != a->token);
            CHECK(!(strcmp(v->a[j].task, a->task) == 0
                    && v->a[j].outcome == LEDGER_ATTEMPT_SUCCEEDED
                    && a->outcome == LEDGER_ATTEMPT_SUCCEEDED));
        }
        if (a->outcome != LEDGER_ATTEMPT_SUCCEEDED) {
            continue;
        }
        accepted++;
        uint8_t *out = NULL;
        size_t len = 0;
        bool trunc = false;
        uint32_t n = 0;
        CHECK_INT(ledger_task_output(l, plan, a->task, 0, false, &out, &len,
                                     &trunc, &n), LEDGER_OK);
        CHECK_INT(n, a->n);
        char want[32];
        snprintf(want, sizeof want, "%llu\n", (unsigned long long) a->token);
        if (!out || len != strlen(want) || memcmp(out, want, len) != 0) {
            fprintf(stderr, "plan %lld task %s: output '%.*s' is not token "
                            "%s", (long long) plan, a->task, (int) len,
                    out ? (const char *) out : "", want);
            t_failures++;
        }
        free(out);
    }
    ledger_destroy(&l);
    free(v);
    return accepted;
}

static void
test_mixed_plans_survive_repeated_kills(void)
{
    swarm_t s;
    swarm_init(&s, 100, 1500);
    s_where(&s);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    swarm_drone(&s, 3, NULL, NULL);
    swarm_drone(&s, 2, NULL, NULL);
    swarm_drone(&s, 2, "gpu", NULL);
    char *fan = s_fan_plan("fan", 8, "");
    char *gpu = s_fan_plan("gpu", 4, "\"gpu\"");
    char *chain = s_chain_plan("chain", 8);
    char *chain2 = s_chain_plan("chain2", 5);
    s_plan_want_t plans[] = {
        {swarm_submit(&s, fan), "succeeded"},
        {swarm_submit(&s, chain), "succeeded"},
        {swarm_submit(&s, gpu), "succeeded"},
        {swarm_submit(&s, s_doomed), "failed"},
        {swarm_submit(&s, s_dropped), "cancelled"},
        {swarm_submit(&s, s_pruned), "failed"},
        {swarm_submit(&s, chain2), "succeeded"},
    };
    free(fan);
    free(gpu);
    free(chain);
    free(chain2);
    enum { N = sizeof plans / sizeof plans[0] };
    for (int i = 0; i < N; i++) {
        S_REQUIRE(&s, plans[i].id > 0);
    }
    char runs[700];
    snprintf(runs, sizeof runs, "%s/runs.txt", s.dir);
    char id[32];
    int lines = 0;
    for (int kill_no = 0; kill_no < 4; kill_no++) {
        // Kill once more work has started since the last restart.
        CHECK(swarm_wait_lines(runs, lines + 5, 30000));
        swarm_broker_kill(&s);
        lines = swarm_file_lines(runs);
        // Down for a while every other time: results pile up in the drones'
        // outboxes and some leases lapse in the drones' eyes.
        if (kill_no % 2) {
            usleep(800 * 1000);
        }
        S_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
        if (kill_no == 1) {
            snprintf(id, sizeof id, "%lld", (long long) plans[4].id);
            CHECK_INT(swarm_arch(&s, NULL, NULL, "cancel", id, NULL), 0);
            snprintf(id, sizeof id, "%lld", (long long) plans[5].id);
            CHECK_INT(swarm_arch(&s, NULL, NULL, "cancel", id, "long", NULL),
                      0);
        }
    }
    char *log = s_log_path(&s, "broker.log");
    CHECK(swarm_log_has(log, "loaded 7 running plans", NULL));
    free(log);
    int accepted = 0;
    for (int i = 0; i < N; i++) {
        char state[32];
        swarm_wait_plan(&s, plans[i].id, 90, state, sizeof state);
        if (strcmp(state, plans[i].want) != 0) {
            fprintf(stderr, "plan %lld ended '%s', expected '%s'\n",
                    (long long) plans[i].id, state, plans[i].want);
            t_failures++;
        }
    }
    swarm_stop(&s);
    for (int i = 0; i < N; i++) {
        accepted += s_check_ledger(&s, plans[i].id);
    }
    // fan 10 + chain 8 + gpu 6 + doomed 2 + pruned 2 + chain2 5.
    CHECK_INT(accepted, 33);
}

// --- 4. a ledger written by the schema-1 release --------------------------

#ifndef WAGGLE_SOURCE_DIR
#error "WAGGLE_SOURCE_DIR must name the source tree (tests/e2e/list.cmake)"
#endif

static bool
s_copy(const char *from, const char *to)
{
    size_t n = 0;
    char *data = t_read_file(from, &n);
    FILE *f = data ? fopen(to, "wb") : NULL;
    bool ok = f && fwrite(data, 1, n, f) == n;
    if (f && fclose(f) != 0) {
        ok = false;
    }
    free(data);
    return ok;
}

// tests/fixtures/ledger-v1.db (see make-ledger.sh): the broker upgrades
// it, keeps a copy, and runs its running plan to the end — the lease its
// dead drone held lapses after the restart grace, the task in an hour's
// backoff is clamped to this broker's cap, the task waiting for a tag
// runs once a drone offers it.
static void
test_v1_ledger_upgraded_runs_on(void)
{
    swarm_t s;
    swarm_init(&s, 100, 1500);
    s_where(&s);
    REQUIRE(s_copy(WAGGLE_SOURCE_DIR "/tests/fixtures/ledger-v1.db", s.db));
    REQUIRE(swarm_broker(&s, NULL) == 0);
    char *log = s_log_path(&s, "broker.log");
    char *bak = xasprintf("%s.v1.bak", s.db);
    char *to = xasprintf("has schema version 1; upgrading it to %d",
                         LEDGER_SCHEMA_VERSION);
    CHECK(swarm_log_has(log, to, bak));
    free(to);
    CHECK(swarm_log_has(log, "upgraded from schema version 1 to 2", NULL));
    CHECK(swarm_log_has(log, "upgraded from schema version 2 to 3", NULL));
    CHECK(swarm_log_has(log, "upgraded from schema version 3 to 4", NULL));
    CHECK(swarm_log_has(log, "upgraded from schema version 4 to 5", NULL));
    CHECK(swarm_log_has(log, "upgraded from schema version 5 to 6", NULL));
    CHECK(swarm_log_has(log, "loaded 1 running plans", NULL));
    CHECK(access(bak, R_OK) == 0);
    swarm_drone(&s, 2, "late", NULL);
    char state[32];
    swarm_wait_plan(&s, 2, 60, state, sizeof state);
    CHECK_STR(state, "succeeded");
    const char *was[] = {"", "succeeded", "", "failed", "cancelled"};
    for (int64_t p = 1; p <= 4; p += p == 1 ? 2 : 1) {
        jnode_t *st = swarm_status(&s, p);
        CHECK_STR(st ? json_str(json_obj_get(st, "state")) : "", was[p]);
        json_destroy(&st);
    }
    char *out = NULL;
    CHECK_INT(swarm_arch(&s, &out, NULL, "output", "2", "last", NULL), 0);
    CHECK_STR(out, "slow done\n");
    free(out);
    swarm_stop(&s);
    // The old lease lapsed (its attempt kept, token 5) and the rerun got a
    // token from the counter the old release left (7 was next).
    attempts_t *v = xcalloc(1, sizeof *v);
    REQUIRE(attempts_read(s.db, 2, "slow", v) == 0);
    REQUIRE(v->n == 2);
    CHECK_INT(v->a[0].token, 5);
    CHECK_INT(v->a[0].outcome, LEDGER_ATTEMPT_EXPIRED);
    CHECK(v->a[1].token >= 7);
    CHECK_INT(v->a[1].outcome, LEDGER_ATTEMPT_SUCCEEDED);
    REQUIRE(attempts_read(s.db, 2, "flaky", v) == 0);
    CHECK_INT(v->n, 2);
    CHECK_INT(attempts_count(v, LEDGER_ATTEMPT_FAILED), 1);
    CHECK_INT(attempts_count(v, LEDGER_ATTEMPT_SUCCEEDED), 1);
    free(v);
    free(bak);
    free(log);
}

// A ledger from a newer release: the broker exits 3 naming both versions
// and leaves the file alone.
static void
test_newer_ledger_refused(void)
{
    swarm_t s;
    swarm_init(&s, 100, 1500);
    s_where(&s);
    REQUIRE(s_copy(WAGGLE_SOURCE_DIR "/tests/fixtures/ledger-v1.db", s.db));
    REQUIRE(s_doctor(&s, "UPDATE meta SET value = 9 WHERE key ="
                         " 'schema_version'") == 0);
    CHECK_INT(swarm_broker(&s, NULL), -1);
    int st = 0;
    CHECK_INT(proc_wait(s.broker, 10000, &st), 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3);
    s.broker = 0;
    char *log = s_log_path(&s, "broker.log");
    char *ours = xasprintf("has schema version 9, newer than this broker's"
                           " version %d", LEDGER_SCHEMA_VERSION);
    CHECK(swarm_log_has(log, ours, NULL));
    free(ours);
    free(log);
    char *bak = xasprintf("%s.v9.bak", s.db);
    CHECK(access(bak, F_OK) != 0);
    free(bak);
    swarm_stop(&s);
}

static const t_case_t t_cases[] = {
    T(test_two_running_plans_restart),
    T(test_unloadable_plans_skipped),
    T(test_mixed_plans_survive_repeated_kills),
    T(test_v1_ledger_upgraded_runs_on),
    T(test_newer_ledger_refused),
    {0},
};

T_MAIN(t_cases)
