// e2e gates: a plan run -> gate -> run waits at the gate for a person; a
// submitter key cannot answer it (FORBIDDEN); an approval of what the gate
// showed before its input ran again is refused (CONFLICT); the gate keeps
// waiting across a broker SIGKILL; an operator's approval runs the rest;
// another plan's reject blocks what needs the gate and fails the plan; the
// events record who answered, the note and the hash of what was shown; a
// gate's timeout_s rejects it, across a broker restart; --on-gate runs a
// bounded hook when a gate starts waiting.
#include "broker/ledger.h"
#include "common/xalloc.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include <sodium.h>

// a fails on its first run (printing "first") and succeeds after (printing
// "second"), so its output changes under `retry`; hold keeps the plan
// running (loaded) until the file go exists.  The work directory is the
// test directory.
static const char *s_plan =
    "{\"name\":\"gated\",\"tasks\":["
    "{\"id\":\"a\",\"retries\":0,\"run\":[\"sh\",\"-c\","
    " \"if [ -f ran ]; then echo second; else touch ran; echo first;"
    " exit 3; fi\"]},"
    "{\"id\":\"g\",\"needs\":[\"a\"],\"gate\":\"ship it?\"},"
    "{\"id\":\"b\",\"needs\":[\"g\"],\"run\":[\"echo\",\"b\"]},"
    "{\"id\":\"hold\",\"run\":[\"sh\",\"-c\","
    " \"while [ ! -f go ]; do sleep 0.05; done\"]}]}";

static const char *s_plan_reject =
    "{\"name\":\"rejected\",\"tasks\":["
    "{\"id\":\"a\",\"run\":[\"echo\",\"input\"]},"
    "{\"id\":\"g\",\"needs\":[\"a\"],\"gate\":\"deploy?\"},"
    "{\"id\":\"b\",\"needs\":[\"g\"],\"run\":[\"echo\",\"b\"]},"
    "{\"id\":\"c\",\"needs\":[\"b\"],\"run\":[\"echo\",\"c\"]}]}";

static char *
s_sha256_hex(const char *text)
{
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *) text, strlen(text));
    char *hex = xmalloc(sizeof h * 2 + 1);
    sodium_bin2hex(hex, sizeof h * 2 + 1, h, sizeof h);
    return hex;
}

// What the gate shows now (output PLAN GATE), and its hash.
static char *
s_shown(swarm_t *s, const char *id, char **hash)
{
    char *out = NULL, *err = NULL;
    CHECK_INT(swarm_arch(s, &out, &err, "output", id, "g", NULL), 0);
    *hash = s_sha256_hex(out ? out : "");
    // The client names the same hash, for `approve --hash`.
    CHECK(err && strstr(err, *hash));
    free(err);
    return out;
}

// status PLAN --json: the gate's note says it waits for a person, and why.
static void
s_check_reason(swarm_t *s, int64_t plan, const char *want)
{
    jnode_t *st = swarm_status(s, plan);
    REQUIRE(st);
    const jnode_t *tasks = json_obj_get(st, "tasks");
    const char *why = NULL;
    for (size_t i = 0; i < json_arr_size(tasks); i++) {
        const jnode_t *t = json_arr_get(tasks, i);
        if (strcmp(json_str(json_obj_get(t, "id")), "g") == 0) {
            why = json_str(json_obj_get(t, "waiting_reason"));
        }
    }
    CHECK(why && strstr(why, "waits for a person") && strstr(why, want));
    json_destroy(&st);
}

typedef struct {
    int answers;            // events of g leaving awaiting_approval
    char actor[64];
    char to[32];
    char detail[512];
} s_events_t;

static void
s_event(void *arg, int64_t seq, int64_t at_ms, const char *task,
        const char *actor, const char *kind, const char *from,
        const char *to, uint64_t token, const char *detail)
{
    (void) seq, (void) at_ms, (void) kind, (void) token;
    s_events_t *e = arg;
    if (task && strcmp(task, "g") == 0 && from &&
        strcmp(from, "awaiting_approval") == 0) {
        e->answers++;
        snprintf(e->actor, sizeof e->actor, "%s", actor ? actor : "");
        snprintf(e->to, sizeof e->to, "%s", to ? to : "");
        snprintf(e->detail, sizeof e->detail, "%s", detail ? detail : "");
    }
}

static void
s_read_events(const char *db, int64_t plan, s_events_t *e)
{
    ledger_t *l = NULL;
    char err[256];
    REQUIRE(ledger_open(&l, db, LEDGER_RDONLY, err, sizeof err) == 0);
    CHECK_INT(ledger_events(l, plan, 0, s_event, e), LEDGER_OK);
    ledger_destroy(&l);
}

static void
test_approve(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    SWARM_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    swarm_drone(&s, 2, NULL, NULL);
    int64_t plan = swarm_submit(&s, s_plan);
    SWARM_REQUIRE(&s, plan > 0);
    char id[32], state[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    SWARM_REQUIRE(&s, swarm_wait_task(&s, plan, "a", "dead", 30));
    // Read early: the gate shows a's failed run.
    char *stale_hash = NULL;
    char *text = s_shown(&s, id, &stale_hash);
    CHECK(text && strstr(text, "question: ship it?") &&
          strstr(text, "first"));
    free(text);
    CHECK_INT(swarm_arch(&s, NULL, NULL, "retry", id, "a", NULL), 0);
    SWARM_REQUIRE(&s, swarm_wait_task(&s, plan, "g", "awaiting_approval",
                                      30));
    char *hash = NULL;
    text = s_shown(&s, id, &hash);
    CHECK(text && strstr(text, "second") && !strstr(text, "first"));
    free(text);
    swarm_task_state(&s, plan, "b", state, sizeof state);
    CHECK_STR(state, "waiting");
    s_check_reason(&s, plan, "ship it?");

    // A submitter key may read the gate, never answer it.
    char *err = NULL;
    CHECK_INT(swarm_arch_as(&s, NULL, "submitter", NULL, &err, "approve", id,
                            "g", NULL), 3);
    CHECK(err && strstr(err, "FORBIDDEN"));
    free(err);
    err = NULL;
    // What was shown before a's re-run is not what the gate shows now.
    CHECK_INT(swarm_arch(&s, NULL, &err, "approve", id, "g", "--hash",
                         stale_hash, NULL), 1);
    CHECK(err && strstr(err, "CONFLICT") && strstr(err, "changed"));
    free(err);
    swarm_task_state(&s, plan, "g", state, sizeof state);
    CHECK_STR(state, "awaiting_approval");

    // A broker killed while the gate waits comes back with it waiting.
    swarm_broker_kill(&s);
    SWARM_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    swarm_task_state(&s, plan, "g", state, sizeof state);
    CHECK_STR(state, "awaiting_approval");
    swarm_task_state(&s, plan, "b", state, sizeof state);
    CHECK_STR(state, "waiting");

    char *out = NULL;
    CHECK_INT(swarm_arch(&s, &out, NULL, "approve", id, "g", "--hash", hash,
                         "--note", "looks right", NULL), 0);
    CHECK(out && strstr(out, "approved gate 'g'"));
    free(out);
    SWARM_REQUIRE(&s, swarm_wait_task(&s, plan, "b", "succeeded", 30));
    char go[700];
    snprintf(go, sizeof go, "%s/go", s.dir);
    CHECK(t_write_file(go, "") == 0);
    swarm_wait_plan(&s, plan, 30, state, sizeof state);
    CHECK_STR(state, "succeeded");
    // Answered once: a second approve finds nothing awaiting.
    CHECK_INT(swarm_arch(&s, NULL, NULL, "approve", id, "g", "--hash", hash,
                         NULL), 1);
    swarm_stop(&s);
    s_events_t e = {0};
    s_read_events(s.db, plan, &e);
    CHECK_INT(e.answers, 1);
    CHECK_STR(e.to, "succeeded");
    CHECK(e.actor[0] != '\0' && strcmp(e.actor, "broker") != 0);
    CHECK(strstr(e.detail, "looks right") && strstr(e.detail, hash));
    free(hash);
    free(stale_hash);
}

static void
test_reject(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    SWARM_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    swarm_drone(&s, 2, NULL, NULL);
    int64_t plan = swarm_submit(&s, s_plan_reject);
    SWARM_REQUIRE(&s, plan > 0);
    char id[32], state[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    SWARM_REQUIRE(&s, swarm_wait_task(&s, plan, "g", "awaiting_approval",
                                      30));
    // A reject says why.
    CHECK_INT(swarm_arch(&s, NULL, NULL, "reject", id, "g", NULL), 64);
    char *out = NULL;
    CHECK_INT(swarm_arch(&s, &out, NULL, "reject", id, "g", "--note",
                         "not today", NULL), 0);
    CHECK(out && strstr(out, "question: deploy?") && strstr(out, "input") &&
          strstr(out, "rejected gate 'g'"));
    free(out);
    swarm_wait_plan(&s, plan, 30, state, sizeof state);
    CHECK_STR(state, "failed");
    swarm_task_state(&s, plan, "g", state, sizeof state);
    CHECK_STR(state, "rejected");
    swarm_task_state(&s, plan, "b", state, sizeof state);
    CHECK_STR(state, "blocked");
    swarm_task_state(&s, plan, "c", state, sizeof state);
    CHECK_STR(state, "blocked");
    // Retry puts a rejected gate back to waiting for a person.
    CHECK_INT(swarm_arch(&s, NULL, NULL, "retry", id, "g", NULL), 0);
    swarm_task_state(&s, plan, "g", state, sizeof state);
    CHECK_STR(state, "awaiting_approval");
    swarm_task_state(&s, plan, "b", state, sizeof state);
    CHECK_STR(state, "waiting");
    swarm_stop(&s);
    s_events_t e = {0};
    s_read_events(s.db, plan, &e);
    CHECK_INT(e.answers, 1);
    CHECK_STR(e.to, "rejected");
    CHECK(strstr(e.detail, "not today") && strstr(e.detail, "\"hash\""));
}

// A gate with timeout_s is rejected by the broker when nobody answers in
// time, also across a broker SIGKILL (the deadline is in the ledger).
static void
test_timeout(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    SWARM_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    swarm_drone(&s, 1, NULL, NULL);
    int64_t plan = swarm_submit(&s,
        "{\"name\":\"timeout\",\"tasks\":["
        "{\"id\":\"g\",\"gate\":\"anyone?\",\"timeout_s\":3},"
        "{\"id\":\"b\",\"needs\":[\"g\"],\"run\":[\"echo\",\"b\"]}]}");
    SWARM_REQUIRE(&s, plan > 0);
    char state[32];
    swarm_task_state(&s, plan, "g", state, sizeof state);
    CHECK_STR(state, "awaiting_approval");
    s_check_reason(&s, plan, "rejected in ");
    swarm_broker_kill(&s);
    SWARM_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    swarm_wait_plan(&s, plan, 30, state, sizeof state);
    CHECK_STR(state, "failed");
    swarm_task_state(&s, plan, "g", state, sizeof state);
    CHECK_STR(state, "rejected");
    swarm_task_state(&s, plan, "b", state, sizeof state);
    CHECK_STR(state, "blocked");
    swarm_stop(&s);
    s_events_t e = {0};
    s_read_events(s.db, plan, &e);
    CHECK_INT(e.answers, 1);
    CHECK_STR(e.actor, "broker");
    CHECK(strstr(e.detail, "timed out"));
}

// --on-gate runs once per gate that starts waiting, with the plan, task and
// question in its environment, and is killed when it outlives its time.
static void
test_hook(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    char out[700], cmd[1024], log[700];
    snprintf(out, sizeof out, "%s/hook.out", s.dir);
    snprintf(log, sizeof log, "%s/broker.log", s.dir);
    snprintf(cmd, sizeof cmd, "printf '%%s|%%s|%%s\\n' \"$WAGGLE_PLAN\" "
             "\"$WAGGLE_TASK\" \"$WAGGLE_GATE_QUESTION\" >> '%s'; "
             "exec sleep 60", out);
    SWARM_REQUIRE(&s, swarm_broker(&s, "--on-gate", cmd,
                                   "--on-gate-timeout-ms", "500", NULL) == 0);
    swarm_drone(&s, 1, NULL, NULL);
    int64_t plan = swarm_submit(&s,
        "{\"name\":\"hooked\",\"tasks\":["
        "{\"id\":\"a\",\"run\":[\"true\"]},"
        "{\"id\":\"g\",\"needs\":[\"a\"],\"gate\":\"ship it?\"}]}");
    SWARM_REQUIRE(&s, plan > 0);
    SWARM_REQUIRE(&s, swarm_wait_lines(out, 1, 20000));
    char *text = t_read_file(out, NULL);
    char want[64];
    snprintf(want, sizeof want, "%lld|g|ship it?\n", (long long) plan);
    CHECK_STR(text, want);
    free(text);
    CHECK(swarm_wait_log(log, "gate hook", "killed", 20000));
    // The broker still answers.
    char state[32];
    swarm_task_state(&s, plan, "g", state, sizeof state);
    CHECK_STR(state, "awaiting_approval");
    swarm_stop(&s);
    CHECK_INT(swarm_file_lines(out), 1);
}

static const t_case_t t_cases[] = {
    T(test_approve),
    T(test_reject),
    T(test_timeout),
    T(test_hook),
    {0},
};

T_MAIN(t_cases)
