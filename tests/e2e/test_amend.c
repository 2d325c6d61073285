// e2e amend: plans that change while they run.  A fan-out and a fan-in
// added to a running plan under a task that already succeeded, whose output
// flows into them; a cycle refused with its path and nothing changed in
// the ledger; a task that has not started cancelled, a running one not
// replaced; an amendment that survives a broker SIGKILL right after it
// (the restarted broker loads the amended plan and runs it to the end);
// a drone key refused; replan against the fake model server after a task
// went dead: the model is shown the failure, its first amendment is
// refused and repaired, the second is applied with --yes and the plan that
// had failed runs again, the dead task replaced, and succeeds.
#include "broker/ledger.h"
#include "common/xalloc.h"
#include "tests/harness/attempts.h"
#include "tests/harness/llm.h"
#include "tests/harness/peer.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include <zmq.h>

// src succeeds at once; hold runs until the file "go" appears in the
// drones' work directory (the test directory), so the plan keeps running
// while the test amends it; later waits for hold.
static const char *s_plan =
    "{\"name\":\"amend\",\"tasks\":["
    "{\"id\":\"src\",\"run\":[\"echo\",\"hello\"]},"
    "{\"id\":\"hold\",\"run\":[\"sh\",\"-c\","
    " \"while [ ! -f go ]; do sleep 0.1; done; echo held\"]},"
    "{\"id\":\"later\",\"needs\":[\"hold\"],\"run\":[\"echo\",\"later\"]}]}";

// Three tasks fan out from src (its output reaches each as a placeholder
// and as a file) and one joins them and hold.
static const char *s_fan =
    "{\"add\":["
    "{\"id\":\"f1\",\"needs\":[\"src\"],\"run\":[\"echo\",\"f1:{{src.output}}\"]},"
    "{\"id\":\"f2\",\"needs\":[\"src\"],\"run\":[\"echo\",\"f2:{{src.output}}\"]},"
    "{\"id\":\"f3\",\"needs\":[\"src\"],\"run\":[\"sh\",\"-c\","
    " \"printf 'f3:'; cat \\\"$WAGGLE_INPUT_DIR/src\\\"\"]},"
    "{\"id\":\"join\",\"needs\":[\"f1\",\"f2\",\"f3\",\"later\"],"
    " \"run\":[\"sh\",\"-c\",\"cd \\\"$WAGGLE_INPUT_DIR\\\" && cat f1 f2 f3\"]}"
    "]}";

static const char *s_cycle =
    "{\"add\":["
    "{\"id\":\"x\",\"needs\":[\"y\"],\"run\":[\"true\"]},"
    "{\"id\":\"y\",\"needs\":[\"x\"],\"run\":[\"true\"]}]}";

static char *
s_write(swarm_t *s, const char *name, const char *text)
{
    char *path = xasprintf("%s/%s", s->dir, name);
    t_write_file(path, text);
    return path;
}

static void
s_go(swarm_t *s)
{
    char *path = xasprintf("%s/go", s->dir);
    t_write_file(path, "");
    free(path);
}

// Starts a swarm with one 4-slot drone and the plan; waits until src has
// succeeded and hold runs.
static int64_t
s_start(swarm_t *s)
{
    swarm_init(s, 200, 2000);
    if (swarm_broker(s, NULL) != 0) {
        return -1;
    }
    swarm_drone(s, 4, NULL, NULL);
    int64_t plan = swarm_submit(s, s_plan);
    if (plan < 0 || !swarm_wait_task(s, plan, "src", "succeeded", 60) ||
        !swarm_wait_task(s, plan, "hold", "leased", 60)) {
        return -1;
    }
    return plan;
}

typedef struct {
    int amended;
    char actor[64];
    char detail[256];
    int64_t max_seq;
} s_events_t;

static void
s_on_event(void *arg, int64_t seq, int64_t at_ms, const char *task,
           const char *actor, const char *kind, const char *from,
           const char *to, uint64_t token, const char *detail)
{
    (void) at_ms, (void) task, (void) from, (void) to, (void) token;
    s_events_t *e = arg;
    e->max_seq = seq;
    if (strcmp(kind, "amended") == 0) {
        e->amended++;
        snprintf(e->actor, sizeof e->actor, "%s", actor);
        snprintf(e->detail, sizeof e->detail, "%s", detail ? detail : "");
    }
}

// The plan's events as the ledger holds them (read-only, beside the
// running broker).
static s_events_t
s_events(swarm_t *s, int64_t plan)
{
    s_events_t e = {0};
    ledger_t *l = NULL;
    char err[256];
    if (ledger_open(&l, s->db, LEDGER_RDONLY, err, sizeof err) != 0) {
        fprintf(stderr, "ledger_open: %s\n", err);
        return e;
    }
    CHECK_INT(ledger_events(l, plan, 0, s_on_event, &e), LEDGER_OK);
    ledger_destroy(&l);
    return e;
}

static char *
s_output(swarm_t *s, int64_t plan, const char *task)
{
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    char *out = NULL;
    CHECK_INT(swarm_arch(s, &out, NULL, "output", id, task, NULL), 0);
    return out;
}

static int
s_amend(swarm_t *s, int64_t plan, const char *file, char **out, char **err)
{
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    return swarm_arch(s, out, err, "amend", id, file, NULL);
}

static void
test_fan_out_and_cycle(void)
{
    swarm_t s;
    int64_t plan = s_start(&s);
    SWARM_REQUIRE(&s, plan > 0);
    s_events_t before = s_events(&s, plan);
    // A cycle: refused with its path into the amendment, nothing changed.
    char *cyc = s_write(&s, "cycle.json", s_cycle);
    char *out = NULL, *err = NULL;
    CHECK_INT(s_amend(&s, plan, cyc, &out, &err), 1);
    CHECK(err && strstr(err, "add[0].needs[0]: cycle: x -> y -> x"));
    free(out);
    free(err);
    s_events_t after = s_events(&s, plan);
    CHECK_INT(after.max_seq, before.max_seq);
    CHECK_INT(after.amended, 0);
    char st[32];
    swarm_task_state(&s, plan, "x", st, sizeof st);
    CHECK_STR(st, "");
    // The fan-out, sent with a submitter key (what a planner gets).
    char *fan = s_write(&s, "fan.json", s_fan);
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    out = err = NULL;
    CHECK_INT(swarm_arch_as(&s, NULL, "submitter", &out, &err, "amend", id,
                            fan, "--json", NULL), 0);
    CHECK(out && strstr(out, "\"added\": [\n    \"f1\","));
    free(out);
    free(err);
    // The added tasks run at once under src, which already succeeded.
    CHECK(swarm_wait_task(&s, plan, "f1", "succeeded", 60));
    CHECK(swarm_wait_task(&s, plan, "f3", "succeeded", 60));
    swarm_task_state(&s, plan, "join", st, sizeof st);
    CHECK_STR(st, "waiting");
    s_go(&s);
    swarm_wait_plan(&s, plan, 60, st, sizeof st);
    CHECK_STR(st, "succeeded");
    char *joined = s_output(&s, plan, "join");
    CHECK_STR(joined, "f1:hello\nf2:hello\nf3:hello\n");
    free(joined);
    s_events_t ev = s_events(&s, plan);
    CHECK_INT(ev.amended, 1);
    CHECK_STR(ev.actor, "submitter");
    CHECK_STR(ev.detail, "{\"added\":[\"f1\",\"f2\",\"f3\",\"join\"],"
                         "\"cancelled\":[],\"replaced\":[]}");
    free(cyc);
    free(fan);
    swarm_stop(&s);
}

static void
test_cancel_and_replace_running(void)
{
    swarm_t s;
    int64_t plan = s_start(&s);
    SWARM_REQUIRE(&s, plan > 0);
    // hold runs: it cannot be replaced (nor cancelled by an amendment).
    char *rep = s_write(&s, "rep.json",
                        "{\"replace\":[{\"id\":\"hold\",\"run\":[\"true\"]}]}");
    char *out = NULL, *err = NULL;
    CHECK_INT(s_amend(&s, plan, rep, &out, &err), 1);
    CHECK(err && strstr(err, "replace[0].id: task 'hold' is leased: only a "
                             "task that has not started"));
    free(out);
    free(err);
    // later waits for hold: it can be cancelled.
    char *can = s_write(&s, "can.json", "{\"cancel\":[\"later\"]}");
    out = err = NULL;
    CHECK_INT(s_amend(&s, plan, can, &out, &err), 0);
    CHECK(out && strstr(out, "cancelled: later"));
    free(out);
    free(err);
    char st[32];
    swarm_task_state(&s, plan, "later", st, sizeof st);
    CHECK_STR(st, "cancelled");
    swarm_task_state(&s, plan, "hold", st, sizeof st);
    CHECK_STR(st, "leased");
    s_go(&s);
    swarm_wait_plan(&s, plan, 60, st, sizeof st);
    CHECK_STR(st, "failed");
    // A plan that ended failed may be amended (it runs again, as with
    // retry): the added task runs; the cancelled one stays cancelled, so
    // the plan ends failed again.
    char *add = s_write(&s, "add.json", "{\"add\":[{\"id\":\"after\","
                        "\"needs\":[\"hold\"],\"run\":[\"echo\",\"a\"]}]}");
    CHECK_INT(s_amend(&s, plan, add, NULL, NULL), 0);
    CHECK(swarm_wait_task(&s, plan, "after", "succeeded", 60));
    swarm_wait_plan(&s, plan, 60, st, sizeof st);
    CHECK_STR(st, "failed");
    free(add);
    free(rep);
    free(can);
    swarm_stop(&s);
}

static void
test_survives_broker_kill(void)
{
    swarm_t s;
    int64_t plan = s_start(&s);
    SWARM_REQUIRE(&s, plan > 0);
    // later (waiting) is replaced to need the new task too; then the broker
    // is killed before anything else happens.
    char *am = s_write(&s, "am.json",
                       "{\"add\":[{\"id\":\"extra\",\"needs\":[\"src\"],"
                       "\"run\":[\"echo\",\"extra:{{src.output}}\"]}],"
                       "\"replace\":[{\"id\":\"later\",\"needs\":[\"hold\","
                       "\"extra\"],\"run\":[\"sh\",\"-c\",\"cat "
                       "\\\"$WAGGLE_INPUT_DIR/extra\\\"; echo later\"]}]}");
    char *out = NULL, *err = NULL;
    CHECK_INT(s_amend(&s, plan, am, &out, &err), 0);
    free(out);
    free(err);
    swarm_broker_kill(&s);
    SWARM_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    jnode_t *status = swarm_status(&s, plan);
    SWARM_REQUIRE(&s, status);
    CHECK_INT(json_arr_size(json_obj_get(status, "tasks")), 4);
    json_destroy(&status);
    s_go(&s);
    char st[32];
    swarm_wait_plan(&s, plan, 90, st, sizeof st);
    CHECK_STR(st, "succeeded");
    char *later = s_output(&s, plan, "later");
    CHECK_STR(later, "extra:hello\nlater\n");
    free(later);
    // The broker logged no plan it could not load.
    char *log = xasprintf("%s/broker.log", s.dir);
    CHECK(!swarm_log_has(log, "cannot be loaded", NULL));
    free(log);
    free(am);
    swarm_stop(&s);
}

// An added gate whose need already succeeded waits for a person at once;
// once approved, what the amendment hung under it runs.
static void
test_added_gate(void)
{
    swarm_t s;
    int64_t plan = s_start(&s);
    SWARM_REQUIRE(&s, plan > 0);
    char *am = s_write(&s, "gate.json",
                       "{\"add\":[{\"id\":\"ok\",\"needs\":[\"src\"],"
                       "\"gate\":\"go on?\"},{\"id\":\"after\",\"needs\":"
                       "[\"ok\",\"src\"],\"run\":[\"echo\",\"{{src.output}}\"]}]}");
    SWARM_REQUIRE(&s, s_amend(&s, plan, am, NULL, NULL) == 0);
    char st[32];
    swarm_task_state(&s, plan, "ok", st, sizeof st);
    CHECK_STR(st, "awaiting_approval");
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    CHECK_INT(swarm_arch(&s, NULL, NULL, "approve", id, "ok", NULL), 0);
    CHECK(swarm_wait_task(&s, plan, "after", "succeeded", 60));
    free(am);
    swarm_stop(&s);
}

static void
test_drone_key_refused(void)
{
    swarm_t s;
    swarm_init(&s, 200, 2000);
    SWARM_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    int64_t plan = swarm_submit(&s, s_plan);
    SWARM_REQUIRE(&s, plan > 0);
    void *ctx = zmq_ctx_new();
    void *dr = peer_dealer(ctx, &s, KEYS_ROLE_DRONE);
    SWARM_REQUIRE(&s, dr);
    proto_msg_t *m = proto_msg_new(PROTO_MSG_AMEND);
    m->req = 7;
    m->u.amend.plan = plan;
    m->u.amend.amendment = xstrdup("{\"cancel\":[\"later\"]}");
    proto_msg_t *r = peer_ask(dr, &m, 10000);
    CHECK(r && r->cmd == PROTO_MSG_ERROR);
    CHECK(r && r->u.error.code == PROTO_E_FORBIDDEN);
    proto_msg_destroy(&r);
    zmq_close(dr);
    zmq_ctx_term(ctx);
    char st[32];
    swarm_task_state(&s, plan, "later", st, sizeof st);
    CHECK_STR(st, "waiting");
    swarm_stop(&s);
}

// f dies at once (its stderr says why), g is blocked by it, u succeeds.
static const char *s_failing =
    "{\"name\":\"replan\",\"tasks\":["
    "{\"id\":\"u\",\"run\":[\"echo\",\"upstream-data\"]},"
    "{\"id\":\"f\",\"needs\":[\"u\"],\"retries\":0,\"run\":[\"sh\",\"-c\","
    " \"echo mirror-is-down-7731 >&2; exit 3\"]},"
    "{\"id\":\"g\",\"needs\":[\"f\"],\"run\":[\"sh\",\"-c\","
    " \"cat \\\"$WAGGLE_INPUT_DIR/f\\\"\"]}]}";

// The model first tries to cancel the task that succeeded (refused: it
// finished), then replaces the dead one with a definition that works.
static const char *s_reply_bad = "{\"cancel\":[\"u\"]}";
static const char *s_reply_good =
    "Here you are:\n```json\n"
    "{\"replace\":[{\"id\":\"f\",\"needs\":[\"u\"],"
    "\"run\":[\"echo\",\"fixed:{{u.output}}\"]}]}\n```";

static void
s_step(jnode_t *steps, const char *content, const char *e1, const char *e2,
       const char *e3)
{
    jnode_t *step = json_obj_new();
    json_obj_set_str(step, "content", content);
    jnode_t *ex = json_arr_new();
    const char *e[] = {e1, e2, e3};
    for (size_t i = 0; i < 3; i++) {
        if (e[i]) {
            json_arr_push_str(ex, e[i]);
        }
    }
    json_obj_set_node(step, "expect_contains", &ex);
    json_arr_push_node(steps, &step);
}

static void
test_replan_after_dead(void)
{
    jnode_t *steps = json_arr_new();
    // The first request holds the failure (its stderr tail and state), the
    // output of what succeeded, and the instruction.
    s_step(steps, s_reply_bad, "mirror-is-down-7731", "g: blocked",
           "upstream-data");
    s_step(steps, s_reply_good, "task 'u' is succeeded: only a task that "
           "has not started", "fix f", NULL);
    char *script = json_dump(steps, false);
    json_destroy(&steps);
    llm_t llm = {0};
    int started = llm_start(&llm, t_tmpdir(), script);
    free(script);
    REQUIRE(started == 0);
    swarm_t s;
    swarm_init(&s, 200, 2000);
    if (swarm_broker(&s, NULL) != 0) {
        llm_stop(&llm);
        SWARM_REQUIRE(&s, false);
    }
    swarm_drone(&s, 2, NULL, NULL);
    int64_t plan = swarm_submit(&s, s_failing);
    SWARM_REQUIRE(&s, plan > 0);
    char st[32];
    swarm_wait_plan(&s, plan, 60, st, sizeof st);
    CHECK_STR(st, "failed");
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    char *out = NULL, *err = NULL;
    int rc = swarm_arch_as(&s, NULL, "submitter", &out, &err, "--model-url",
                           llm.url, "--model", "planner-1", "replan", id,
                           "fix f", "--yes", NULL);
    CHECK_INT(rc, 0);
    CHECK_INT(llm_count(&llm), 2);
    CHECK(err && strstr(err, "repair 1/3: 1 error"));
    CHECK(out && strstr(out, "~ f  [run]"));
    CHECK(out && strstr(out, "replaced: f"));
    if (rc != 0) {
        fprintf(stderr, "replan: %s\n%s\n", out ? out : "", err ? err : "");
    }
    free(out);
    free(err);
    // The replaced task runs again with a fresh attempt budget (its dead
    // attempt stays in the ledger), g is unblocked, and the plan succeeds.
    CHECK(swarm_wait_task(&s, plan, "g", "succeeded", 60));
    swarm_wait_plan(&s, plan, 60, st, sizeof st);
    CHECK_STR(st, "succeeded");
    attempts_t at;
    CHECK(attempts_read(s.db, plan, "f", &at) == 0);
    CHECK_INT(at.n, 2);
    CHECK_INT(attempts_count(&at, LEDGER_ATTEMPT_SUCCEEDED), 1);
    char *g = s_output(&s, plan, "g");
    CHECK_STR(g, "fixed:upstream-data\n");
    free(g);
    s_events_t ev = s_events(&s, plan);
    CHECK_INT(ev.amended, 1);
    CHECK_STR(ev.actor, "submitter");
    llm_stop(&llm);
    swarm_stop(&s);
}

static const t_case_t t_cases[] = {
    T(test_fan_out_and_cycle),
    T(test_cancel_and_replace_running),
    T(test_survives_broker_kill),
    T(test_added_gate),
    T(test_drone_key_refused),
    T(test_replan_after_dead),
    {0},
};

T_MAIN(t_cases)
