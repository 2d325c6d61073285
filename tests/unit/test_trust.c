// test_trust: session secrets, the credit window and quarantine, drones
// given up when their connection closes (liveness.c), and a reply that
// must wait for its turn's commit, driven in-process
// (broker_open_offline) through drones.c against a real ledger file, with
// a clock the test moves.
#include "broker/broker_int.h"

#include "common/clock.h"
#include "common/xalloc.h"
#include "tests/harness/t.h"

#include <string.h>

#define LEASE_MS 10000

typedef struct {
    char path[600];
    broker_config_t cfg;
    broker_t *b;
    int64_t mono, wall;          // the test's clock
} s_world_t;

static void
s_open(s_world_t *w)
{
    char err[512] = "";
    if (broker_open_offline(&w->b, &w->cfg, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", t_current, err);
    }
    REQUIRE(w->b != NULL);
}

static void
s_init(s_world_t *w)
{
    memset(w, 0, sizeof *w);
    snprintf(w->path, sizeof w->path, "%s/ledger.db", t_tmpdir());
    w->cfg = (broker_config_t){
        .db = w->path, .heartbeat_ms = 1000, .lease_ms = LEASE_MS,
        .max_output = 1 << 20, .max_inputs = 8 << 20, .max_frame = 64 << 20,
        .backoff_base_ms = 1000, .backoff_cap_ms = 60000, .turn_msgs = 1000,
        .turn_ms = 50};
    w->mono = clock_mono_ms();
    w->wall = clock_wall_ms();
    s_open(w);
}

static void
s_clock(s_world_t *w)
{
    w->b->now_mono = w->mono;
    w->b->now_wall = w->wall;
}

// Delivers msg (consumed) from session rid with role and key name.
static void
s_from(s_world_t *w, uint8_t rid, unsigned role, proto_msg_t *msg)
{
    // Each session's connection has a descriptor of its own: its rid.
    router_in_t in = {.role = role, .msg = msg, .fd = rid};
    in.rid.bytes[0] = rid;
    in.rid.len = 1;
    snprintf(in.name, sizeof in.name, "%s",
             role == PROTO_R_DRONE ? "drone" : "operator");
    s_clock(w);
    if (role == PROTO_R_DRONE) {
        drones_on_message(w->b, &in);
    } else {
        requests_on_message(w->b, &in);
    }
    proto_msg_destroy(&msg);
}

// The first message of command cmd queued for rid this turn (borrowed).
static const proto_msg_t *
s_queued(s_world_t *w, uint8_t rid, proto_cmd_t cmd)
{
    for (size_t i = 0; i < w->b->n_out; i++) {
        const out_t *o = &w->b->out[i];
        if (o->msg && o->msg->cmd == cmd && o->rid.len == 1 &&
            o->rid.bytes[0] == rid) {
            return o->msg;
        }
    }
    return NULL;
}

// The tokens of the TASKs queued for rid this turn, into tokens[].
static size_t
s_tasks(s_world_t *w, uint8_t rid, uint64_t *tokens, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < w->b->n_out; i++) {
        const out_t *o = &w->b->out[i];
        if (o->msg && o->msg->cmd == PROTO_MSG_TASK && o->rid.bytes[0] == rid &&
            n < max) {
            tokens[n++] = o->msg->u.task.token;
        }
    }
    return n;
}

static void
s_end_turn(s_world_t *w)
{
    s_clock(w);
    broker_end_turn(w->b);
}

static void
s_hello(s_world_t *w, uint8_t rid, const char *instance, uint32_t slots,
        const char *secret)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_HELLO);
    m->req = 1;
    m->u.hello.instance = xstrdup(instance);
    m->u.hello.slots = slots;
    m->u.hello.secret = secret ? xstrdup(secret) : NULL;
    s_from(w, rid, PROTO_R_DRONE, m);
}

static void
s_heartbeat(s_world_t *w, uint8_t rid, const uint64_t *tokens, size_t n)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_HEARTBEAT);
    m->u.heartbeat.tokens = xcalloc(n + 1, sizeof *tokens);
    if (n > 0) {
        memcpy(m->u.heartbeat.tokens, tokens, n * sizeof *tokens);
    }
    m->u.heartbeat.n_tokens = n;
    s_from(w, rid, PROTO_R_DRONE, m);
}

static void
s_submit(s_world_t *w, int n_tasks)
{
    char *json = xstrdup("{\"name\":\"t\",\"defaults\":{\"retries\":0},"
                         "\"tasks\":[");
    for (int i = 0; i < n_tasks; i++) {
        char *more = xasprintf("%s%s{\"id\":\"t%d\",\"run\":[\"true\"]}",
                               json, i ? "," : "", i);
        free(json);
        json = more;
    }
    char *all = xasprintf("%s]}", json);
    free(json);
    proto_msg_t *m = proto_msg_new(PROTO_MSG_SUBMIT);
    m->u.submit.workplan = all;
    s_from(w, 200, PROTO_R_OPERATOR, m);
    CHECK(s_queued(w, 200, PROTO_MSG_SUBMIT_OK) != NULL);
    s_end_turn(w);
}

static size_t
s_dispatch(s_world_t *w, uint8_t rid, uint64_t *tokens, size_t max)
{
    s_clock(w);
    drones_dispatch(w->b);
    size_t n = s_tasks(w, rid, tokens, max);
    s_end_turn(w);
    return n;
}

static void
s_lapse(s_world_t *w)
{
    w->mono += LEASE_MS + 1;
    w->wall += LEASE_MS + 1;
    s_clock(w);
    liveness_expire(w->b);
    s_end_turn(w);
}

// The registered drone (a blank one, after a failed CHECK, if none).
static drone_t *
s_drone(s_world_t *w, const char *instance)
{
    static drone_t blank;
    drone_t *d = drones_find(w->b, instance);
    CHECK(d != NULL);
    return d ? d : &blank;
}

// --- session secrets ---------------------------------------------------------

static void
test_secret_issued_once_and_required(void)
{
    s_world_t w;
    s_init(&w);
    s_hello(&w, 1, "inst-a", 1, NULL);
    const proto_msg_t *wl = s_queued(&w, 1, PROTO_MSG_WELCOME);
    REQUIRE(wl && wl->u.welcome.secret);
    CHECK_INT(strlen(wl->u.welcome.secret), 64);
    char secret[129];
    snprintf(secret, sizeof secret, "%s", wl->u.welcome.secret);
    s_end_turn(&w);
    // The same session needs no secret and gets no new one.
    s_hello(&w, 1, "inst-a", 1, NULL);
    wl = s_queued(&w, 1, PROTO_MSG_WELCOME);
    CHECK(wl && !wl->u.welcome.secret);
    s_end_turn(&w);
    // Another session: without it, or with a wrong one, FORBIDDEN, and the
    // instance stays bound to session 1.
    s_hello(&w, 2, "inst-a", 1, NULL);
    const proto_msg_t *e = s_queued(&w, 2, PROTO_MSG_ERROR);
    REQUIRE(e != NULL);
    CHECK_INT(e->u.error.code, PROTO_E_FORBIDDEN);
    CHECK_HAS(e->u.error.message, "missing or wrong session secret");
    s_end_turn(&w);
    s_hello(&w, 2, "inst-a", 1, "00");
    CHECK(s_queued(&w, 2, PROTO_MSG_ERROR) != NULL);
    s_end_turn(&w);
    CHECK_INT(s_drone(&w, "inst-a")->rid.bytes[0], 1);
    // With it: moved to session 2.
    s_hello(&w, 2, "inst-a", 1, secret);
    wl = s_queued(&w, 2, PROTO_MSG_WELCOME);
    CHECK(wl && !wl->u.welcome.secret);
    s_end_turn(&w);
    CHECK_INT(s_drone(&w, "inst-a")->rid.bytes[0], 2);
    // The hash is in the ledger: a reopened broker still wants it.
    broker_destroy(&w.b);
    s_open(&w);
    s_hello(&w, 3, "inst-a", 1, NULL);
    CHECK(s_queued(&w, 3, PROTO_MSG_ERROR) != NULL);
    s_end_turn(&w);
    s_hello(&w, 3, "inst-a", 1, secret);
    CHECK(s_queued(&w, 3, PROTO_MSG_WELCOME) != NULL);
    s_end_turn(&w);
    broker_destroy(&w.b);
}

// A HELLO whose turn did not commit stored no secret: the next HELLO, even
// on the same session, gets one, so the instance never stays unprotected.
static void
test_secret_reissued_after_failed_commit(void)
{
    s_world_t w;
    s_init(&w);
    s_hello(&w, 1, "inst-b", 1, NULL);
    CHECK(s_queued(&w, 1, PROTO_MSG_WELCOME) != NULL);
    ledger_fail_next_commit(w.b->ledger);
    s_end_turn(&w);
    s_hello(&w, 1, "inst-b", 1, NULL);
    const proto_msg_t *wl = s_queued(&w, 1, PROTO_MSG_WELCOME);
    REQUIRE(wl != NULL);
    CHECK(wl->u.welcome.secret != NULL);
    s_end_turn(&w);
    s_hello(&w, 2, "inst-b", 1, NULL);
    CHECK(s_queued(&w, 2, PROTO_MSG_ERROR) != NULL);
    CHECK(s_queued(&w, 2, PROTO_MSG_WELCOME) == NULL);
    s_end_turn(&w);
    broker_destroy(&w.b);
}

// --- the credit window -------------------------------------------------------

static void
test_window_bounds_unconfirmed_pushes(void)
{
    s_world_t w;
    s_init(&w);
    s_hello(&w, 1, "big", 32, NULL);
    s_end_turn(&w);
    s_submit(&w, 60);
    uint64_t tok[64];
    CHECK_INT(s_dispatch(&w, 1, tok, 64), 8);
    CHECK_INT(s_dispatch(&w, 1, tok + 8, 56), 0);
    // Confirming all eight opens the window to 16 (and frees all of it).
    s_heartbeat(&w, 1, tok, 8);
    s_end_turn(&w);
    CHECK_INT(s_drone(&w, "big")->window, 16);
    CHECK_INT(s_dispatch(&w, 1, tok + 8, 56), 16);
    // Slots still bound it: 24 held, 8 more fit.
    s_heartbeat(&w, 1, tok, 24);
    s_end_turn(&w);
    CHECK_INT(s_dispatch(&w, 1, tok + 24, 40), 8);
    broker_destroy(&w.b);
}

// --- lost leases and quarantine ---------------------------------------------

static void
test_lost_leases_quarantine_then_probation(void)
{
    s_world_t w;
    s_init(&w);
    s_hello(&w, 1, "mute", 4, NULL);
    s_end_turn(&w);
    s_submit(&w, 10);
    uint64_t tok[16];
    CHECK_INT(s_dispatch(&w, 1, tok, 16), 4);
    s_heartbeat(&w, 1, NULL, 0);
    s_end_turn(&w);
    s_lapse(&w);
    drone_t *d = s_drone(&w, "mute");
    CHECK(trust_is_quarantined(w.b, d));
    CHECK_INT(d->lost_streak, 4);
    CHECK_INT(d->window, 1);         // 8 halved four times, at least 1
    // The lost leases cost nothing: every task is ready again.
    CHECK_INT(sched_lease_count_of(w.b->sched, "mute"), 0);
    CHECK_INT(s_dispatch(&w, 1, tok, 16), 0);
    // A HELLO does not lift it.
    s_hello(&w, 1, "mute", 4, NULL);
    s_end_turn(&w);
    CHECK_INT(s_dispatch(&w, 1, tok, 16), 0);
    // After the cool-off: one task on probation; losing it quarantines
    // again at once.
    w.mono += 5 * LEASE_MS;
    w.wall += 5 * LEASE_MS;
    s_heartbeat(&w, 1, NULL, 0);
    s_end_turn(&w);
    CHECK_INT(s_dispatch(&w, 1, tok, 16), 1);
    s_lapse(&w);
    CHECK(trust_is_quarantined(w.b, s_drone(&w, "mute")));
    broker_destroy(&w.b);
}

// Saying BYE and HELLO again (with the instance's secret) is a re-HELLO
// too: the quarantine holds (PROTOCOL.md 7.5).
static void
test_bye_keeps_quarantine(void)
{
    s_world_t w;
    s_init(&w);
    s_hello(&w, 1, "mute", 4, NULL);
    const proto_msg_t *wl = s_queued(&w, 1, PROTO_MSG_WELCOME);
    REQUIRE(wl && wl->u.welcome.secret);
    char secret[129];
    snprintf(secret, sizeof secret, "%s", wl->u.welcome.secret);
    s_end_turn(&w);
    s_submit(&w, 10);
    uint64_t tok[16];
    CHECK_INT(s_dispatch(&w, 1, tok, 16), 4);
    s_heartbeat(&w, 1, NULL, 0);
    s_end_turn(&w);
    s_lapse(&w);
    CHECK(trust_is_quarantined(w.b, s_drone(&w, "mute")));
    s_from(&w, 1, PROTO_R_DRONE, proto_msg_new(PROTO_MSG_BYE));
    CHECK(s_queued(&w, 1, PROTO_MSG_OK) != NULL);
    s_end_turn(&w);
    s_hello(&w, 1, "mute", 4, secret);
    CHECK(s_queued(&w, 1, PROTO_MSG_WELCOME) != NULL);
    s_end_turn(&w);
    CHECK(trust_is_quarantined(w.b, s_drone(&w, "mute")));
    CHECK_INT(s_dispatch(&w, 1, tok, 16), 0);
    broker_destroy(&w.b);
}

// A failed commit rebuilds memory from the ledger; a lease its drone never
// confirmed is still unconfirmed afterwards, so its lapse is still a lost
// lease (no attempt used), not an expiry that kills the task.
static void
test_rebuild_keeps_leases_unconfirmed(void)
{
    s_world_t w;
    s_init(&w);
    s_hello(&w, 1, "mute", 2, NULL);
    s_end_turn(&w);
    s_submit(&w, 2);                 // retries 0: one expiry kills a task
    uint64_t tok[4];
    CHECK_INT(s_dispatch(&w, 1, tok, 4), 2);
    s_hello(&w, 2, "other", 0, NULL);
    ledger_fail_next_commit(w.b->ledger);
    s_end_turn(&w);                  // failed: memory is rebuilt
    CHECK_INT(sched_unconfirmed_of(w.b->sched, "mute"), 2);
    s_lapse(&w);
    CHECK_INT(s_drone(&w, "mute")->lost_streak, 2);
    CHECK_INT(sched_get(w.b->sched, 1, 0), PROTO_TASK_READY);
    CHECK_INT(sched_get(w.b->sched, 1, 1), PROTO_TASK_READY);
    broker_destroy(&w.b);
}

static void
test_confirmed_lease_expiry_is_not_lost(void)
{
    s_world_t w;
    s_init(&w);
    s_hello(&w, 1, "slow", 4, NULL);
    s_end_turn(&w);
    s_submit(&w, 4);
    uint64_t tok[8];
    CHECK_INT(s_dispatch(&w, 1, tok, 8), 4);
    s_heartbeat(&w, 1, tok, 4);      // confirmed, then never renewed
    s_end_turn(&w);
    s_lapse(&w);
    drone_t *d = s_drone(&w, "slow");
    CHECK(!trust_is_quarantined(w.b, d));
    CHECK_INT(d->lost_streak, 0);
    broker_destroy(&w.b);
}

// --- drones given up when their connection closes ---------------------------

#define HB_MS 1000

// The connection on descriptor fd closed now; then a turn's check.
static void
s_closed(s_world_t *w, int fd)
{
    s_clock(w);
    liveness_closed_fds(w->b, &fd, 1);
}

static void
s_check_at(s_world_t *w, int64_t mono)
{
    w->wall += mono - w->mono;
    w->mono = mono;
    s_clock(w);
    liveness_check(w->b);
    s_end_turn(w);
}

// One task (retries 0) leased to "a" on session 1 and confirmed; "b"
// waits on session 2.  Returns the time of a's last message.
static int64_t
s_one_leased(s_world_t *w)
{
    s_hello(w, 1, "a", 1, NULL);
    s_end_turn(w);
    s_submit(w, 1);
    uint64_t tok[2];
    CHECK_INT(s_dispatch(w, 1, tok, 2), 1);
    s_heartbeat(w, 1, tok, 1);
    s_end_turn(w);
    s_hello(w, 2, "b", 1, NULL);
    s_end_turn(w);
    return w->mono;
}

// A closed connection gives the drone 2 heartbeats to speak; then it is
// gone: forgotten, its lease lost (the task ready, no attempt used) and
// the task pushed to another drone.
static void
test_closed_connection_gone_after_grace(void)
{
    s_world_t w;
    s_init(&w);
    int64_t t0 = s_one_leased(&w);
    w.mono = t0 + 500;
    s_closed(&w, 1);
    CHECK(!liveness_alive(w.b, s_drone(&w, "a")));
    CHECK_INT(liveness_next_deadline_ms(w.b), t0 + 500 + 2 * HB_MS);
    s_check_at(&w, t0 + 500 + 2 * HB_MS - 1);
    CHECK(drones_find(w.b, "a") != NULL);
    CHECK_INT(sched_get(w.b->sched, 1, 0), PROTO_TASK_LEASED);
    s_check_at(&w, t0 + 500 + 2 * HB_MS);
    CHECK(drones_find(w.b, "a") == NULL);
    CHECK_INT(sched_get(w.b->sched, 1, 0), PROTO_TASK_READY);
    uint32_t lost = 0;
    CHECK_INT(ledger_task_lost_leases(w.b->ledger, 1, "t0", &lost),
              LEDGER_OK);
    CHECK_INT(lost, 1);
    uint64_t tok[2];
    CHECK_INT(s_dispatch(&w, 2, tok, 2), 1);
    broker_destroy(&w.b);
}

// A drone cut off right after pushes it had not confirmed yet swallowed
// none of them: it is not quarantined when it comes back.
static void
test_gone_unconfirmed_not_quarantined(void)
{
    s_world_t w;
    s_init(&w);
    s_hello(&w, 1, "cut", 4, NULL);
    const proto_msg_t *wl = s_queued(&w, 1, PROTO_MSG_WELCOME);
    REQUIRE(wl && wl->u.welcome.secret);
    char secret[129];
    snprintf(secret, sizeof secret, "%s", wl->u.welcome.secret);
    s_end_turn(&w);
    s_submit(&w, 8);
    uint64_t tok[8];
    CHECK_INT(s_dispatch(&w, 1, tok, 8), 4);
    s_closed(&w, 1);
    s_check_at(&w, w.mono + 3 * HB_MS);
    CHECK(drones_find(w.b, "cut") == NULL);
    s_hello(&w, 3, "cut", 4, secret);
    s_end_turn(&w);
    CHECK(!trust_is_quarantined(w.b, s_drone(&w, "cut")));
    CHECK_INT(s_dispatch(&w, 3, tok, 8), 4);
    broker_destroy(&w.b);
}

// Any message after the close clears it (a reconnect, or a descriptor
// reused by a newer connection): nothing is given up.
static void
test_message_after_close_keeps_drone(void)
{
    s_world_t w;
    s_init(&w);
    int64_t t0 = s_one_leased(&w);
    w.mono = t0 + 500;
    s_closed(&w, 1);
    w.mono = t0 + 1000;
    s_heartbeat(&w, 1, NULL, 0);
    s_end_turn(&w);
    CHECK(liveness_alive(w.b, s_drone(&w, "a")));
    CHECK_INT(liveness_next_deadline_ms(w.b), -1);
    s_check_at(&w, t0 + 5000);
    CHECK(drones_find(w.b, "a") != NULL);
    CHECK_INT(sched_get(w.b->sched, 1, 0), PROTO_TASK_LEASED);
    broker_destroy(&w.b);
}

// A close found when the host stopped acknowledging comes after about 3
// silent heartbeats: no further grace.  A second loss of the same task counts (retries 0: dead),
// so a task that kills every drone it lands on still dies.
static void
test_silent_close_gone_at_once_and_second_loss_counts(void)
{
    s_world_t w;
    s_init(&w);
    int64_t t0 = s_one_leased(&w);
    w.mono = t0 + 3 * HB_MS;
    s_closed(&w, 1);
    s_check_at(&w, t0 + 3 * HB_MS);
    CHECK(drones_find(w.b, "a") == NULL);
    uint64_t tok[2];
    CHECK_INT(s_dispatch(&w, 2, tok, 2), 1);
    int64_t t1 = w.mono;
    s_heartbeat(&w, 2, tok, 1);
    s_end_turn(&w);
    w.mono = t1 + 100;
    s_closed(&w, 2);
    s_check_at(&w, t1 + 100 + 2 * HB_MS);
    CHECK(drones_find(w.b, "b") == NULL);
    // Its only task dead, the plan ended (and left sched).
    ledger_plan_state_t st = LEDGER_PLAN_RUNNING;
    CHECK_INT(ledger_plan_state(w.b->ledger, 1, &st), LEDGER_OK);
    CHECK_INT(st, LEDGER_PLAN_FAILED);
    broker_destroy(&w.b);
}

// A broker that could not run does not count that time as silence.
static void
test_shift_moves_the_grace(void)
{
    s_world_t w;
    s_init(&w);
    int64_t t0 = s_one_leased(&w);
    w.mono = t0 + 500;
    s_closed(&w, 1);
    liveness_shift(w.b, 5000);
    CHECK_INT(liveness_next_deadline_ms(w.b), t0 + 5500 + 2 * HB_MS);
    broker_destroy(&w.b);
}

// --- replies that wait for their turn's commit ------------------------------

// The out_t queued for rid this turn with command cmd (borrowed), or NULL.
static const out_t *
s_out(s_world_t *w, uint8_t rid, proto_cmd_t cmd)
{
    for (size_t i = 0; i < w->b->n_out; i++) {
        const out_t *o = &w->b->out[i];
        if (o->msg && o->msg->cmd == cmd && o->rid.bytes[0] == rid) {
            return o;
        }
    }
    return NULL;
}

static void
s_ask_output(s_world_t *w)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_OUTPUT);
    m->u.output.plan = 1;
    m->u.output.task = xstrdup("t0");
    s_from(w, 200, PROTO_R_OPERATOR, m);
}

// An OUTPUT answered in the turn that accepted that output shows what is
// not yet durable: it must wait for the commit (and become an error if the
// commit fails), as STATUS does.
static void
test_output_waits_for_commit(void)
{
    s_world_t w;
    s_init(&w);
    s_hello(&w, 1, "out-a", 1, NULL);
    s_end_turn(&w);
    s_submit(&w, 1);
    uint64_t tok[1];
    REQUIRE(s_dispatch(&w, 1, tok, 1) == 1);
    proto_msg_t *r = proto_msg_new(PROTO_MSG_RESULT);
    r->u.result.plan = 1;
    r->u.result.task = xstrdup("t0");
    r->u.result.token = tok[0];
    r->u.result.outcome = PROTO_OUTCOME_SUCCEEDED;
    proto_bytes_set(&r->u.result.out, "not yet durable", 15);
    s_from(&w, 1, PROTO_R_DRONE, r);
    s_ask_output(&w);
    const out_t *o = s_out(&w, 200, PROTO_MSG_OUTPUT_OK);
    REQUIRE(o != NULL);
    CHECK(o->depends);
    ledger_fail_next_commit(w.b->ledger);
    s_end_turn(&w);
    // Nothing of that turn happened: there is no output to show.
    s_ask_output(&w);
    const proto_msg_t *e = s_queued(&w, 200, PROTO_MSG_ERROR);
    CHECK(e && e->u.error.code == PROTO_E_NOT_FOUND);
    s_end_turn(&w);
    broker_destroy(&w.b);
}

static void
s_cancel_plan(s_world_t *w)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_CANCEL);
    m->u.cancel.plan = 1;
    s_from(w, 200, PROTO_R_OPERATOR, m);
}

// A refusal decided on this turn's unrecorded changes ("already
// cancelled", by a cancel the commit then undid) waits for the commit too:
// a failed commit turns every reply of the turn into an error (7.9).
static void
test_refusal_waits_for_commit(void)
{
    s_world_t w;
    s_init(&w);
    s_submit(&w, 1);
    s_cancel_plan(&w);
    s_cancel_plan(&w);
    const out_t *o = s_out(&w, 200, PROTO_MSG_ERROR);
    REQUIRE(o != NULL);
    CHECK_INT(o->msg->u.error.code, PROTO_E_CONFLICT);
    CHECK(o->depends);
    ledger_fail_next_commit(w.b->ledger);
    s_end_turn(&w);
    // The plan was never cancelled: cancelling it now works.
    s_cancel_plan(&w);
    CHECK(s_queued(&w, 200, PROTO_MSG_OK) != NULL);
    CHECK(s_queued(&w, 200, PROTO_MSG_ERROR) == NULL);
    s_end_turn(&w);
    broker_destroy(&w.b);
}

static const t_case_t t_cases[] = {
    T(test_secret_issued_once_and_required),
    T(test_secret_reissued_after_failed_commit),
    T(test_window_bounds_unconfirmed_pushes),
    T(test_lost_leases_quarantine_then_probation),
    T(test_bye_keeps_quarantine),
    T(test_rebuild_keeps_leases_unconfirmed),
    T(test_confirmed_lease_expiry_is_not_lost),
    T(test_closed_connection_gone_after_grace),
    T(test_gone_unconfirmed_not_quarantined),
    T(test_message_after_close_keeps_drone),
    T(test_silent_close_gone_at_once_and_second_loss_counts),
    T(test_shift_moves_the_grace),
    T(test_output_waits_for_commit),
    T(test_refusal_waits_for_commit),
    {0},
};

T_MAIN(t_cases)
