// test_recovery: what the broker holds after reopening its ledger equals
// what it held before.
//
// The broker's own logic runs in-process (broker_open_offline): real
// HELLOs, heartbeats, RESULTs, dispatch, lease expiry, cancels, retries and
// submits go through drones.c, requests.c and plans.c against a real
// ledger file, with a clock the test moves.  Two fake drones play by rules
// read from each task's id (succeed, fail, fail once, hold forever, lose
// the lease), so a dozen plans pass through every state mix: waiting,
// ready, ready in backoff, leased, awaiting retry, dead and blocked, tasks
// and whole plans cancelled mid-flight, plans finished every way.  After
// every round the picture (sched_describe) is compared with the one the
// loader rebuilds from the ledger — by reopening the broker on odd rounds
// (the drones then say HELLO again with their leases, as real ones do) and
// by the in-place rebuild after a desync on even rounds.
#include "broker/broker_int.h"

#include "common/clock.h"
#include "common/xalloc.h"
#include "tests/harness/t.h"

#include <inttypes.h>
#include <sqlite3.h>

#define LEASE_MS 10000
#define STEP_MS 400

// --- fake drones -----------------------------------------------------------

typedef struct {
    int64_t plan;
    char task[72];
    uint64_t token;
    int results;                  // RESULTs sent for this task so far
} s_held_t;

typedef struct {
    const char *instance;
    const char *tags;             // comma-separated, or ""
    uint32_t slots;
    uint8_t rid;                  // its session's routing id byte
    char secret[129];             // its session secret, from WELCOME
    s_held_t held[64];
    int n_held;
} s_drone_t;

typedef struct {
    char path[600];
    broker_config_t cfg;
    broker_t *b;
    int64_t mono, wall;           // the test's clock
    s_drone_t drones[2];
    int tries[32][16];            // RESULTs sent per plan and task index
    int rounds;
} s_world_t;

static void
s_clock(s_world_t *w)
{
    w->b->now_mono = w->mono;
    w->b->now_wall = w->wall;
}

static router_in_t
s_in(uint8_t rid, unsigned role, const char *name, proto_msg_t *msg)
{
    router_in_t in = {.role = role, .msg = msg};
    in.rid.bytes[0] = rid;
    in.rid.len = 1;
    snprintf(in.name, sizeof in.name, "%s", name);
    return in;
}

// Keeps the session secret a WELCOME to d carries, as a real drone does.
static void
s_keep_secret(s_world_t *w, s_drone_t *d, const wire_rid_t *rid)
{
    for (size_t i = 0; i < w->b->n_out; i++) {
        const proto_msg_t *o = w->b->out[i].msg;
        if (o && o->cmd == PROTO_MSG_WELCOME && o->u.welcome.secret &&
            wire_rid_equal(&w->b->out[i].rid, rid)) {
            snprintf(d->secret, sizeof d->secret, "%s", o->u.welcome.secret);
        }
    }
}

static void
s_drone_msg(s_world_t *w, s_drone_t *d, proto_msg_t *msg)
{
    router_in_t in = s_in(d->rid, PROTO_R_DRONE, "drone", msg);
    s_clock(w);
    drones_on_message(w->b, &in);
    s_keep_secret(w, d, &in.rid);
    proto_msg_destroy(&msg);
}

static void
s_request(s_world_t *w, proto_msg_t *msg)
{
    router_in_t in = s_in(200, PROTO_R_OPERATOR, "operator", msg);
    s_clock(w);
    requests_on_message(w->b, &in);
    proto_msg_destroy(&msg);
}

// A HELLO listing every lease the drone holds.
static void
s_hello(s_world_t *w, s_drone_t *d)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_HELLO);
    proto_hello_t *h = &m->u.hello;
    h->instance = xstrdup(d->instance);
    h->host = xstrdup("test");
    h->version = xstrdup("test");
    h->slots = d->slots;
    h->secret = d->secret[0] ? xstrdup(d->secret) : NULL;
    if (d->tags[0]) {
        proto_strv_push(&h->tags, d->tags);
    }
    h->leases = xcalloc((size_t) d->n_held + 1, sizeof *h->leases);
    for (int i = 0; i < d->n_held; i++) {
        h->leases[i].plan = d->held[i].plan;
        h->leases[i].task = xstrdup(d->held[i].task);
        h->leases[i].token = d->held[i].token;
    }
    h->n_leases = (size_t) d->n_held;
    s_drone_msg(w, d, m);
}

// Tasks whose id starts "lost" keep running but are never listed again
// after their TASK: their lease lapses.
static void
s_heartbeat(s_world_t *w, s_drone_t *d)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_HEARTBEAT);
    proto_heartbeat_t *hb = &m->u.heartbeat;
    hb->tokens = xcalloc((size_t) d->n_held + 1, sizeof *hb->tokens);
    for (int i = 0; i < d->n_held; i++) {
        if (strncmp(d->held[i].task, "lost", 4) != 0) {
            hb->tokens[hb->n_tokens++] = d->held[i].token;
        }
    }
    s_drone_msg(w, d, m);
}

static void
s_drop(s_drone_t *d, uint64_t token)
{
    for (int i = 0; i < d->n_held; i++) {
        if (d->held[i].token == token) {
            d->held[i] = d->held[--d->n_held];
            return;
        }
    }
}

// What the rules say a task's next RESULT is; false: no result yet.
static bool
s_rule(const char *task, int tries, proto_outcome_t *o, int32_t *code)
{
    *o = PROTO_OUTCOME_SUCCEEDED;
    *code = 0;
    if (strncmp(task, "hold", 4) == 0 || strncmp(task, "lost", 4) == 0) {
        return false;
    }
    if (strncmp(task, "fail", 4) == 0
        || (strncmp(task, "flaky", 5) == 0 && tries == 0)) {
        *o = PROTO_OUTCOME_FAILED;
        *code = 3;
    }
    if (strncmp(task, "back", 4) == 0 && tries == 0) {
        *o = PROTO_OUTCOME_RELEASED;
        *code = -1;
    }
    return true;
}

static void
s_results(s_world_t *w, s_drone_t *d)
{
    for (int i = 0; i < d->n_held;) {
        s_held_t h = d->held[i];
        const workplan_t *wp = sched_workplan(w->b->sched, h.plan);
        long idx = wp ? workplan_find(wp, h.task) : -1;
        int *tries = idx >= 0 && idx < 16 && h.plan < 32
                         ? &w->tries[h.plan][idx] : NULL;
        proto_outcome_t o;
        int32_t code;
        if (!tries || !s_rule(h.task, *tries, &o, &code)) {
            i++;
            continue;
        }
        (*tries)++;
        proto_msg_t *m = proto_msg_new(PROTO_MSG_RESULT);
        proto_result_t *r = &m->u.result;
        r->plan = h.plan;
        r->task = xstrdup(h.task);
        r->token = h.token;
        r->outcome = o;
        r->exit_code = code;
        char out[128];
        snprintf(out, sizeof out, "%s %" PRIu64 "\n", h.task, h.token);
        r->out.data = (uint8_t *) xstrdup(out);
        r->out.len = strlen(out);
        s_drone_msg(w, d, m);
        s_drop(d, h.token);
    }
}

static s_drone_t *
s_drone_by_rid(s_world_t *w, const wire_rid_t *rid)
{
    for (int i = 0; i < 2; i++) {
        if (rid->len == 1 && rid->bytes[0] == w->drones[i].rid) {
            return &w->drones[i];
        }
    }
    return NULL;
}

// Reads this turn's outbox as the drones would: TASKs become held leases,
// STOPs end them.
static void
s_read_outbox(s_world_t *w)
{
    broker_t *b = w->b;
    for (size_t i = 0; i < b->n_out; i++) {
        const proto_msg_t *m = b->out[i].msg;
        s_drone_t *d = m ? s_drone_by_rid(w, &b->out[i].rid) : NULL;
        if (!d) {
            continue;
        }
        if (m->cmd == PROTO_MSG_TASK && d->n_held < 64) {
            s_held_t *h = &d->held[d->n_held++];
            h->plan = m->u.task.plan;
            snprintf(h->task, sizeof h->task, "%s", m->u.task.task);
            h->token = m->u.task.token;
        } else if (m->cmd == PROTO_MSG_STOP) {
            s_drop(d, m->u.stop.token);
        }
    }
}

static int64_t
s_outbox_plan(s_world_t *w)
{
    for (size_t i = 0; i < w->b->n_out; i++) {
        const proto_msg_t *m = w->b->out[i].msg;
        if (m && m->cmd == PROTO_MSG_SUBMIT_OK) {
            return m->u.submit_ok.plan;
        }
    }
    return 0;
}

static void
s_end_turn(s_world_t *w)
{
    s_read_outbox(w);
    broker_end_turn(w->b);
}

// --- the plans ---------------------------------------------------------------

static const char *const s_plans[] = {
    // 1: a chain that stops at a held task, and gates that wait for a
    // person (one with a deadline far off), with what needs them waiting.
    "{\"name\": \"chain\", \"tasks\": ["
    "{\"id\": \"ok1\", \"run\": [\"true\"]},"
    "{\"id\": \"hold1\", \"needs\": [\"ok1\"], \"run\": [\"true\"]},"
    "{\"id\": \"ok2\", \"needs\": [\"hold1\"], \"run\": [\"true\"]},"
    "{\"id\": \"gate1\", \"needs\": [\"ok1\"], \"gate\": \"go on?\","
    " \"timeout_s\": 86400},"
    "{\"id\": \"gate2\", \"gate\": \"start?\"},"
    "{\"id\": \"ok3\", \"needs\": [\"gate1\", \"gate2\"],"
    " \"run\": [\"true\"]}]}",
    // 2: a fan-out with a flaky and a failing branch, and a fan-in.
    "{\"name\": \"fan\", \"defaults\": {\"retries\": 1}, \"tasks\": ["
    "{\"id\": \"ok1\", \"run\": [\"true\"]},"
    "{\"id\": \"flaky1\", \"needs\": [\"ok1\"], \"run\": [\"true\"]},"
    "{\"id\": \"fail1\", \"needs\": [\"ok1\"], \"run\": [\"true\"]},"
    "{\"id\": \"hold1\", \"needs\": [\"ok1\"], \"run\": [\"true\"]},"
    "{\"id\": \"ok2\", \"needs\": [\"flaky1\", \"fail1\", \"hold1\"],"
    " \"run\": [\"true\"]},"
    "{\"id\": \"ok3\", \"needs\": [\"ok2\"], \"run\": [\"true\"]}]}",
    // 3: gpu work only the second drone can take.
    "{\"name\": \"gpu\", \"defaults\": {\"requires\": [\"gpu\"]}, \"tasks\": ["
    "{\"id\": \"ok1\", \"run\": [\"true\"]},"
    "{\"id\": \"hold1\", \"needs\": [\"ok1\"], \"run\": [\"true\"]},"
    "{\"id\": \"flaky1\", \"run\": [\"true\"], \"priority\": 5}]}",
    // 4: nobody offers 'nobody': ready forever, in two groups.
    "{\"name\": \"stuck\", \"tasks\": ["
    "{\"id\": \"ok1\", \"requires\": [\"nobody\"], \"run\": [\"true\"]},"
    "{\"id\": \"ok2\", \"requires\": [\"nobody\", \"gpu\"],"
    " \"run\": [\"true\"]},"
    "{\"id\": \"ok3\", \"needs\": [\"ok1\"], \"run\": [\"true\"]}]}",
    // 5: leases that lapse until the task is dead; what needs it blocked.
    "{\"name\": \"lapse\", \"tasks\": ["
    "{\"id\": \"lost1\", \"retries\": 1, \"timeout_s\": 0,"
    " \"run\": [\"true\"]},"
    "{\"id\": \"ok1\", \"needs\": [\"lost1\"], \"run\": [\"true\"]},"
    "{\"id\": \"ok2\", \"needs\": [\"ok1\"], \"run\": [\"true\"]},"
    "{\"id\": \"hold1\", \"run\": [\"true\"]}]}",
    // 6: finishes: succeeded.
    "{\"name\": \"quick\", \"tasks\": [{\"id\": \"ok1\", \"run\": [\"true\"]},"
    "{\"id\": \"ok2\", \"needs\": [\"ok1\"], \"run\": [\"true\"]}]}",
    // 7: finishes: failed (dead, and blocked behind it).
    "{\"name\": \"doomed\", \"defaults\": {\"retries\": 0}, \"tasks\": ["
    "{\"id\": \"fail1\", \"run\": [\"true\"]},"
    "{\"id\": \"ok1\", \"needs\": [\"fail1\"], \"run\": [\"true\"]}]}",
    // 8: cancelled as a whole mid-flight (round 3).
    "{\"name\": \"dropped\", \"tasks\": ["
    "{\"id\": \"hold1\", \"run\": [\"true\"]},"
    "{\"id\": \"ok1\", \"needs\": [\"hold1\"], \"run\": [\"true\"]},"
    "{\"id\": \"flaky1\", \"run\": [\"true\"]}]}",
    // 9: one leased task cancelled (round 4): what needs it is blocked.
    "{\"name\": \"pruned\", \"tasks\": ["
    "{\"id\": \"hold1\", \"run\": [\"true\"]},"
    "{\"id\": \"ok1\", \"needs\": [\"hold1\"], \"run\": [\"true\"]},"
    "{\"id\": \"hold2\", \"run\": [\"true\"]}]}",
    // 10: handed back once (no attempt used), then done; a failure that is
    // retried by a person (round 6) and fails again.
    "{\"name\": \"handback\", \"tasks\": ["
    "{\"id\": \"back1\", \"run\": [\"true\"]},"
    "{\"id\": \"fail1\", \"retries\": 0, \"run\": [\"true\"]},"
    "{\"id\": \"ok1\", \"needs\": [\"fail1\"], \"run\": [\"true\"]},"
    "{\"id\": \"hold1\", \"needs\": [\"back1\"], \"run\": [\"true\"]}]}",
    // 11, 12: submitted later (round 5), so some of it is still waiting.
    "{\"name\": \"late\", \"tasks\": ["
    "{\"id\": \"ok1\", \"run\": [\"true\"], \"priority\": -3},"
    "{\"id\": \"flaky1\", \"needs\": [\"ok1\"], \"run\": [\"true\"]},"
    "{\"id\": \"hold1\", \"needs\": [\"flaky1\"], \"run\": [\"true\"]}]}",
    "{\"name\": \"later\", \"tasks\": ["
    "{\"id\": \"hold1\", \"run\": [\"true\"], \"priority\": 9},"
    "{\"id\": \"ok1\", \"run\": [\"true\"]},"
    "{\"id\": \"ok2\", \"needs\": [\"ok1\", \"hold1\"],"
    " \"run\": [\"true\"]}]}",
};

static int64_t
s_submit(s_world_t *w, const char *json)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_SUBMIT);
    m->u.submit.workplan = xstrdup(json);
    s_request(w, m);
    int64_t plan = s_outbox_plan(w);
    s_end_turn(w);
    return plan;
}

static void
s_cancel(s_world_t *w, int64_t plan, const char *task)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_CANCEL);
    m->u.cancel.plan = plan;
    m->u.cancel.task = task ? xstrdup(task) : NULL;
    s_request(w, m);
}

static void
s_retry(s_world_t *w, int64_t plan, const char *task)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_RETRY);
    m->u.retry.plan = plan;
    m->u.retry.task = xstrdup(task);
    s_request(w, m);
}

// --- the world ---------------------------------------------------------------

static void
s_world_init(s_world_t *w)
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
    w->drones[0] = (s_drone_t){.instance = "inst-one", .tags = "",
                               .slots = 4, .rid = 1};
    w->drones[1] = (s_drone_t){.instance = "inst-two", .tags = "gpu",
                               .slots = 3, .rid = 2};
}

static bool
s_open(s_world_t *w)
{
    char err[512] = "";
    if (broker_open_offline(&w->b, &w->cfg, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", t_current, err);
        return false;
    }
    return true;
}

// The special moves of some rounds.
static void
s_script(s_world_t *w, int round)
{
    if (round == 3) {
        s_cancel(w, 8, NULL);
    }
    if (round == 4) {
        s_cancel(w, 9, "hold1");
    }
    if (round == 5) {
        s_end_turn(w);
        CHECK_INT(s_submit(w, s_plans[10]), 11);
        CHECK_INT(s_submit(w, s_plans[11]), 12);
    }
    if (round == 6) {
        s_retry(w, 10, "fail1");
    }
}

// Moves the test's clock on.  Never behind the real one: a reload stamps
// lease deadlines from the real clock, and those must lapse when the
// test's clock jumps a lease (valgrind makes the real one run fast).
static void
s_tick(s_world_t *w, int64_t ms)
{
    int64_t mono = clock_mono_ms(), wall = clock_wall_ms();
    w->mono = w->mono + ms > mono ? w->mono + ms : mono;
    w->wall = w->wall + ms > wall ? w->wall + ms : wall;
}

static void
s_play_round(s_world_t *w, int round)
{
    s_tick(w, STEP_MS);
    // Every fourth round the clock jumps a lease: what no heartbeat listed
    // lapses.
    bool lapse = round % 4 == 3;
    for (int i = 0; i < 2; i++) {
        s_heartbeat(w, &w->drones[i]);
        s_results(w, &w->drones[i]);
    }
    s_script(w, round);
    if (lapse) {
        w->mono += LEASE_MS - STEP_MS;
        for (int i = 0; i < 2; i++) {
            s_heartbeat(w, &w->drones[i]);
        }
        w->mono += STEP_MS + 1;
        s_clock(w);
        liveness_expire(w->b);
    }
    s_clock(w);
    drones_dispatch(w->b);
    s_end_turn(w);
}

// The tasks by state the broker's ledger keeps in memory (what metrics
// serve) equal a fresh count of the table by another handle.
static void
s_compare_counts(s_world_t *w, int round)
{
    int64_t mem[PROTO_TASK__COUNT], scan[PROTO_TASK__COUNT];
    int64_t plans[LEDGER_PLAN_CANCELLED + 1];
    ledger_t *l = NULL;
    char err[256];
    REQUIRE(ledger_state_counts(w->b->ledger, mem, plans) == LEDGER_OK);
    REQUIRE(ledger_open(&l, w->path, LEDGER_RDONLY, err, sizeof err) == 0);
    REQUIRE(ledger_state_counts(l, scan, plans) == LEDGER_OK);
    ledger_destroy(&l);
    for (int s = 0; s < PROTO_TASK__COUNT; s++) {
        if (mem[s] != scan[s]) {
            fprintf(stderr, "%s: round %d: %s: %lld in memory, %lld in the "
                    "table\n", t_current, round,
                    proto_task_state_name((proto_task_state_t) s),
                    (long long) mem[s], (long long) scan[s]);
            t_failures++;
        }
    }
}

// The picture now, and the one the ledger gives back: by reopening the
// broker (odd rounds) or rebuilding in place (even rounds).
static void
s_compare_reload(s_world_t *w, int round)
{
    s_compare_counts(w, round);
    char *before = sched_describe(w->b->sched);
    if (round % 2) {
        broker_destroy(&w->b);
        REQUIRE(s_open(w));
        // Counted from the table now, kept in memory for the next rounds.
        s_compare_counts(w, round);
    } else {
        broker_desync(w->b, "test");
        broker_end_turn(w->b);
    }
    char *after = sched_describe(w->b->sched);
    if (strcmp(before, after) != 0) {
        fprintf(stderr, "%s: round %d, before:\n%s\nafter:\n%s\n", t_current,
                round, before, after);
        t_failures++;
    }
    CHECK(strstr(before, "BROKEN") == NULL);
    free(before);
    free(after);
    if (round % 2) {
        // A real drone says HELLO to a broker it has not met, listing what
        // it holds; nothing it lists is lost.
        for (int i = 0; i < 2; i++) {
            s_hello(w, &w->drones[i]);
        }
        s_end_turn(w);
    }
}

static void
s_check_final(s_world_t *w, const char *text)
{
    (void) w;
    // Finished plans left memory; the rest are all there.
    CHECK_HAS(text, "sched: 9 plans\n");
    CHECK(strstr(text, "'quick'") == NULL);
    CHECK(strstr(text, "'doomed'") == NULL);
    CHECK(strstr(text, "'dropped'") == NULL);
    CHECK_HAS(text, "'back1' succeeded");
    // The states the rounds were meant to reach.
    CHECK_HAS(text, "plan 2 'fan'");
    CHECK_HAS(text, "task 2 'fail1' dead");
    CHECK_HAS(text, "task 4 'ok2' blocked");
    CHECK_HAS(text, "task 0 'lost1' dead");
    CHECK_HAS(text, "task 1 'ok1' blocked");
    CHECK_HAS(text, "task 0 'hold1' cancelled");
    CHECK_HAS(text, "group 2 [gpu nobody] ready: 1");
    CHECK_HAS(text, " leased");
    CHECK_HAS(text, " waiting pending 1");
    CHECK_HAS(text, "instance inst-two");
    // Gates still wait for a person, the deadline kept.
    CHECK_HAS(text, "task 3 'gate1' awaiting_approval deadline ");
    CHECK_HAS(text, "task 4 'gate2' awaiting_approval\n");
    CHECK_HAS(text, "task 5 'ok3' waiting pending 2");
}

// --- tests -------------------------------------------------------------------

static void
test_reload_equals_live_every_round(void)
{
    s_world_t *w = xcalloc(1, sizeof *w);
    s_world_init(w);
    REQUIRE(s_open(w));
    for (int i = 0; i < 2; i++) {
        s_hello(w, &w->drones[i]);
    }
    s_end_turn(w);
    for (int i = 0; i < 10; i++) {
        CHECK_INT(s_submit(w, s_plans[i]), i + 1);
    }
    bool backoff_seen = false;
    for (int round = 0; round < 14; round++) {
        s_play_round(w, round);
        char *text = sched_describe(w->b->sched);
        backoff_seen |= strstr(text, " ready not_before ") != NULL;
        free(text);
        s_compare_reload(w, round);
    }
    CHECK(backoff_seen);
    char *text = sched_describe(w->b->sched);
    s_check_final(w, text);
    free(text);
    broker_destroy(&w->b);
    free(w);
}

// A broker restarted with a shorter --backoff-cap-ms cuts every longer
// backoff to the cap, in memory and in the ledger alike: the task is
// leased once the cap has passed (a ledger left with the old end refused
// that lease, and the broker rebuilt its memory every turn).
static void
test_backoff_clamped_on_reload(void)
{
    s_world_t *w = xcalloc(1, sizeof *w);
    s_world_init(w);
    w->cfg.backoff_base_ms = w->cfg.backoff_cap_ms = 3600000;
    REQUIRE(s_open(w));
    s_hello(w, &w->drones[0]);
    s_end_turn(w);
    CHECK_INT(s_submit(w, "{\"name\": \"b\", \"tasks\": [{\"id\": "
                          "\"flaky1\", \"run\": [\"true\"]}]}"), 1);
    s_play_round(w, 0);
    s_play_round(w, 1);
    char *text = sched_describe(w->b->sched);
    CHECK_HAS(text, "'flaky1' ready not_before");
    free(text);
    broker_destroy(&w->b);
    w->cfg.backoff_cap_ms = 1000;
    REQUIRE(s_open(w));
    w->wall = clock_wall_ms() + 1000;
    s_hello(w, &w->drones[0]);
    s_clock(w);
    drones_dispatch(w->b);
    CHECK(!w->b->rebuild);
    s_end_turn(w);
    text = sched_describe(w->b->sched);
    CHECK_HAS(text, "'flaky1' leased");
    free(text);
    // The next broker reads the cut backoff from the ledger.
    broker_destroy(&w->b);
    w->cfg.backoff_cap_ms = 3600000;
    REQUIRE(s_open(w));
    text = sched_describe(w->b->sched);
    CHECK_HAS(text, "'flaky1' leased");
    free(text);
    broker_destroy(&w->b);
    free(w);
}

// A description with plan 3's lines and leases taken out.
static char *
s_without_plan_3(const char *text)
{
    char *out = xcalloc(1, strlen(text) + 1);
    bool in_plan = false;
    for (const char *line = text; *line;) {
        size_t len = strcspn(line, "\n") + (line[strcspn(line, "\n")] != 0);
        if (strncmp(line, "plan ", 5) == 0) {
            in_plan = strncmp(line, "plan 3 ", 7) == 0;
        } else if (strncmp(line, "lease ", 6) == 0) {
            in_plan = strstr(line, " plan 3 task ") != NULL
                      && strstr(line, " plan 3 task ") < line + len;
        }
        if (strncmp(line, "sched: ", 7) == 0) {
            int n = (int) strtol(line + 7, NULL, 10) - 1;
            snprintf(out, strlen(text) + 1, "sched: %d plans\n", n);
        } else if (!in_plan) {
            strncat(out, line, len);
        }
        line += len;
    }
    return out;
}

// The rebuild after a desync uses the same loader as a start: a plan
// whose rows stopped making sense is skipped with its reason (status says
// it), every other plan is rebuilt as it was.
static void
test_rebuild_skips_unloadable_plan(void)
{
    s_world_t *w = xcalloc(1, sizeof *w);
    s_world_init(w);
    REQUIRE(s_open(w));
    for (int i = 0; i < 2; i++) {
        s_hello(w, &w->drones[i]);
    }
    s_end_turn(w);
    for (int i = 0; i < 5; i++) {
        CHECK_INT(s_submit(w, s_plans[i]), i + 1);
    }
    s_play_round(w, 0);
    s_play_round(w, 1);
    char *before = sched_describe(w->b->sched);
    // Another writer (a person with the sqlite3 shell) breaks plan 3: a
    // leased task loses its instance, which the schema's CHECK would
    // refuse, so the check is switched off first.
    sqlite3 *db = NULL;
    REQUIRE(sqlite3_open(w->path, &db) == SQLITE_OK);
    CHECK_INT(sqlite3_exec(db, "PRAGMA ignore_check_constraints = 1;"
                           " UPDATE tasks SET lease_instance = NULL"
                           " WHERE plan_id = 3 AND state = 'leased'",
                           NULL, NULL, NULL), SQLITE_OK);
    CHECK_INT(sqlite3_changes(db), 1);
    sqlite3_close(db);
    broker_desync(w->b, "test");
    broker_end_turn(w->b);
    CHECK(!w->b->rebuild);
    CHECK(!sched_has_plan(w->b->sched, 3));
    CHECK_HAS(plans_unloaded(w->b, 3), "leased without a token or a drone "
                                       "instance");
    // Everything but plan 3 is as it was.
    char *after = sched_describe(w->b->sched);
    char *want = s_without_plan_3(before);
    CHECK_STR(after, want);
    free(want);
    // Status of plan 3 says why on each unfinished task.
    proto_msg_t *m = proto_msg_new(PROTO_MSG_STATUS);
    m->u.status.plan = 3;
    s_request(w, m);
    const proto_msg_t *ok = NULL;
    for (size_t i = 0; i < w->b->n_out; i++) {
        if (w->b->out[i].msg->cmd == PROTO_MSG_STATUS_OK) {
            ok = w->b->out[i].msg;
        }
    }
    REQUIRE(ok && ok->u.status_ok.n_tasks == 3);
    for (size_t i = 0; i < 3; i++) {
        const proto_task_info_t *t = &ok->u.status_ok.tasks[i];
        if (t->state < PROTO_TASK_SUCCEEDED) {
            CHECK_HAS(t->waiting_reason, "plan not loaded: task 'hold1' is "
                                         "leased without");
        }
    }
    s_end_turn(w);
    free(before);
    free(after);
    broker_destroy(&w->b);
    free(w);
}

// A write that fails during a rebuild (here: settling a plan whose tasks
// all ended before a crash, refused by a trigger another writer put there)
// fails the rebuild, which is retried; it must not fail the next turn too,
// whose own writes (a HELLO) are fine.
static void
test_failed_rebuild_spares_next_turn(void)
{
    s_world_t *w = xcalloc(1, sizeof *w);
    s_world_init(w);
    REQUIRE(s_open(w));
    CHECK_INT(s_submit(w, "{\"name\":\"one\",\"tasks\":[{\"id\":\"a\","
                          "\"run\":[\"true\"]}]}"), 1);
    sqlite3 *db = NULL;
    REQUIRE(sqlite3_open(w->path, &db) == SQLITE_OK);
    CHECK_INT(sqlite3_exec(db, "PRAGMA ignore_check_constraints = 1;"
                           " UPDATE tasks SET state = 'succeeded';"
                           " CREATE TRIGGER t_fail BEFORE UPDATE ON plans"
                           " BEGIN SELECT RAISE (ABORT, 'injected'); END;",
                           NULL, NULL, NULL), SQLITE_OK);
    broker_desync(w->b, "test");
    broker_end_turn(w->b);
    CHECK(w->b->rebuild);  // it failed: retried after the next turn
    CHECK_INT(sqlite3_exec(db, "DROP TRIGGER t_fail", NULL, NULL, NULL),
              SQLITE_OK);
    sqlite3_close(db);
    s_hello(w, &w->drones[0]);
    s_end_turn(w);
    char hash[65] = "";
    CHECK_INT(ledger_drone_secret(w->b->ledger, "inst-one", hash), LEDGER_OK);
    CHECK(!w->b->rebuild);
    CHECK(!sched_has_plan(w->b->sched, 1));  // settled this time
    broker_destroy(&w->b);
    free(w);
}

// The command the outbox answered the last request with (OK or ERROR).
static proto_cmd_t
s_outbox_reply(s_world_t *w)
{
    proto_cmd_t cmd = PROTO_MSG__COUNT;
    for (size_t i = 0; i < w->b->n_out; i++) {
        const proto_msg_t *m = w->b->out[i].msg;
        if (m && (m->cmd == PROTO_MSG_OK || m->cmd == PROTO_MSG_ERROR ||
                  m->cmd == PROTO_MSG_BUDGET_OK)) {
            cmd = m->cmd;
        }
    }
    return cmd;
}

static proto_cmd_t
s_answer(s_world_t *w, proto_cmd_t cmd, const char *task, const char *hash)
{
    proto_msg_t *m = proto_msg_new(cmd);
    m->u.verdict.plan = 1;
    m->u.verdict.task = xstrdup(task);
    m->u.verdict.note = xstrdup("a note");
    m->u.verdict.hash = xstrdup(hash);
    s_request(w, m);
    proto_cmd_t reply = s_outbox_reply(w);
    s_end_turn(w);
    return reply;
}

static void
s_expect(s_world_t *w, const char *a, const char *b)
{
    char *text = sched_describe(w->b->sched);
    CHECK_HAS(text, a);
    if (b) {
        CHECK_HAS(text, b);
    }
    free(text);
}

// Gates in the broker's own logic, with the test's clock: an approval
// bound to the gate's hash, a deadline that survives a reopen and rejects
// the gate (and blocks what needs it) only once it has passed.
static void
test_gates_answer_and_time_out(void)
{
    s_world_t *w = xcalloc(1, sizeof *w);
    s_world_init(w);
    REQUIRE(s_open(w));
    CHECK_INT(s_submit(w, "{\"name\": \"g\", \"tasks\": ["
                          "{\"id\": \"t1\", \"gate\": \"wait?\","
                          " \"timeout_s\": 5},"
                          "{\"id\": \"t2\", \"gate\": \"ok?\"},"
                          "{\"id\": \"ok1\", \"needs\": [\"t1\"],"
                          " \"run\": [\"true\"]},"
                          "{\"id\": \"ok2\", \"needs\": [\"t2\"],"
                          " \"run\": [\"true\"]}]}"), 1);
    char *hash = gates_hash(w->b, 1, 1);
    REQUIRE(hash);
    CHECK_INT(s_answer(w, PROTO_MSG_APPROVE, "t2", "0000000000000000000000"
                       "000000000000000000000000000000000000000000"),
              PROTO_MSG_ERROR);
    CHECK_INT(s_answer(w, PROTO_MSG_APPROVE, "t2", hash), PROTO_MSG_OK);
    CHECK_INT(s_answer(w, PROTO_MSG_REJECT, "t2", hash), PROTO_MSG_ERROR);
    free(hash);
    s_expect(w, "task 1 't2' succeeded", "task 3 'ok2' ready");
    broker_destroy(&w->b);
    REQUIRE(s_open(w));
    s_expect(w, "task 0 't1' awaiting_approval deadline ",
             "task 2 'ok1' waiting");
    w->wall += 4000;
    s_clock(w);
    gates_expire(w->b);
    s_end_turn(w);
    s_expect(w, "task 0 't1' awaiting_approval deadline ", NULL);
    w->wall += 1001;
    s_clock(w);
    gates_expire(w->b);
    s_end_turn(w);
    s_expect(w, "task 0 't1' rejected", "task 2 'ok1' blocked");
    broker_destroy(&w->b);
    REQUIRE(s_open(w));
    s_expect(w, "task 0 't1' rejected", "task 2 'ok1' blocked");
    broker_destroy(&w->b);
    free(w);
}

static proto_cmd_t
s_budget(s_world_t *w, int64_t plan, int64_t tokens)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_BUDGET);
    m->u.budget.plan = plan;
    m->u.budget.tokens = tokens;
    s_request(w, m);
    proto_cmd_t reply = s_outbox_reply(w);
    s_end_turn(w);
    return reply;
}

// The budget sched holds for plan 1: -1 for none, -2 when not loaded.
static int64_t
s_budget_of(s_world_t *w)
{
    const workplan_t *wp = sched_workplan(w->b->sched, 1);
    return !wp ? -2 : wp->has_budget ? wp->budget_tokens : -1;
}

// BUDGET in the broker's own logic: when its commit fails, memory goes
// back to what the ledger holds (the old budget); a committed budget
// survives a reopen, also 0, below what the prompt task reserves, and so
// does removing it.  No such plan: refused.
static void
test_budget_commit_fails(void)
{
    s_world_t *w = xcalloc(1, sizeof *w);
    s_world_init(w);
    REQUIRE(s_open(w));
    CHECK_INT(s_submit(w, "{\"name\": \"b\", \"budget\": {\"tokens\": 100},"
                          " \"tasks\": [{\"id\": \"p\", \"prompt\": \"x\","
                          " \"max_tokens\": 20}]}"), 1);
    ledger_fail_next_commit(w->b->ledger);
    CHECK_INT(s_budget(w, 1, 5000), PROTO_MSG_BUDGET_OK);
    CHECK_INT(s_budget_of(w), 100);
    CHECK_INT(s_budget(w, 1, 0), PROTO_MSG_BUDGET_OK);
    CHECK_INT(s_budget_of(w), 0);
    broker_destroy(&w->b);
    REQUIRE(s_open(w));
    CHECK_INT(s_budget_of(w), 0);
    CHECK_INT(s_budget(w, 1, -1), PROTO_MSG_BUDGET_OK);
    broker_destroy(&w->b);
    REQUIRE(s_open(w));
    CHECK_INT(s_budget_of(w), -1);
    CHECK_INT(s_budget(w, 2, 5), PROTO_MSG_ERROR);
    broker_destroy(&w->b);
    free(w);
}

static void
s_tail(s_world_t *w, s_drone_t *d, uint64_t token, uint64_t total,
       const char *text)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_TAIL);
    m->u.tail.token = token;
    m->u.tail.total = total;
    proto_bytes_set(&m->u.tail.data, text, strlen(text));
    s_drone_msg(w, d, m);
}

// OUTPUT with live of task: the outbox's OUTPUT_OK data ("" for none).
static void
s_live(s_world_t *w, const char *task, char *buf, size_t len)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_OUTPUT);
    m->u.output.plan = 1;
    m->u.output.task = xstrdup(task);
    m->u.output.live = true;
    s_request(w, m);
    snprintf(buf, len, "?");
    for (size_t i = 0; i < w->b->n_out; i++) {
        const proto_msg_t *o = w->b->out[i].msg;
        if (o && o->cmd == PROTO_MSG_OUTPUT_OK) {
            snprintf(buf, len, "%s %.*s", o->u.output_ok.running ? "running"
                                                                 : "done",
                     (int) o->u.output_ok.data.len,
                     (const char *) o->u.output_ok.data.data);
        }
    }
    s_end_turn(w);
}

// Running tasks' stdout tails (output --follow): kept in memory only for
// the drone that holds the lease, the latest one (an older total is
// ignored), and forgotten when the attempt ends however it ends (a
// result, a cancel, a lease that lapsed).
static void
test_tails_kept_for_the_holder_and_dropped(void)
{
    s_world_t *w = xcalloc(1, sizeof *w);
    s_world_init(w);
    REQUIRE(s_open(w));
    CHECK_INT(s_submit(w, "{\"name\": \"t\", \"tasks\": ["
                          "{\"id\": \"hold1\", \"run\": [\"true\"]},"
                          "{\"id\": \"hold2\", \"run\": [\"true\"]},"
                          "{\"id\": \"lost1\", \"run\": [\"true\"]}]}"),
              1);
    s_drone_t *d = &w->drones[0], *other = &w->drones[1];
    s_hello(w, d);
    s_hello(w, other);
    s_clock(w);
    drones_dispatch(w->b);
    s_end_turn(w);
    REQUIRE(d->n_held + other->n_held == 3);
    s_drone_t *h1 = NULL;
    uint64_t t1 = 0, t2 = 0, t3 = 0;
    for (int k = 0; k < 2; k++) {
        s_drone_t *x = &w->drones[k];
        for (int i = 0; i < x->n_held; i++) {
            if (strcmp(x->held[i].task, "hold1") == 0) {
                h1 = x;
                t1 = x->held[i].token;
            } else if (strcmp(x->held[i].task, "hold2") == 0) {
                t2 = x->held[i].token;
            } else {
                t3 = x->held[i].token;
            }
        }
    }
    REQUIRE(h1 && t1 && t2 && t3);
    s_drone_t *not_h1 = h1 == d ? other : d;
    char got[256];
    s_live(w, "hold1", got, sizeof got);
    CHECK_STR(got, "running ");
    s_tail(w, h1, t1, 6, "line1\n");
    s_tail(w, not_h1, t1, 100, "forged\n");    // not its lease: dropped
    s_live(w, "hold1", got, sizeof got);
    CHECK_STR(got, "running line1\n");
    s_tail(w, h1, t1, 12, "line2\n");
    s_tail(w, h1, t1, 6, "line1\n");           // late, older: ignored
    s_live(w, "hold1", got, sizeof got);
    CHECK_STR(got, "running line2\n");
    CHECK_INT(w->b->n_tails, 1);
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < w->drones[k].n_held; i++) {
            s_tail(w, &w->drones[k], w->drones[k].held[i].token, 1, "x");
        }
    }
    CHECK_INT(w->b->n_tails, 3);
    s_cancel(w, 1, "hold1");                   // a cancel ends it
    s_end_turn(w);
    CHECK_INT(w->b->n_tails, 2);
    // 'lost1' is never listed again: its lease lapses, its tail goes with
    // the next heartbeat round.
    w->mono += LEASE_MS + 1;
    for (int i = 0; i < 2; i++) {
        s_heartbeat(w, &w->drones[i]);
    }
    s_clock(w);
    liveness_expire(w->b);
    drones_heartbeat(w->b);
    s_end_turn(w);
    CHECK_INT(w->b->n_tails, 1);
    s_live(w, "hold1", got, sizeof got);
    CHECK_STR(got, "done ");                   // cancelled, never ran out
    broker_destroy(&w->b);
    free(w);
}

// One round of the first drone alone: its RESULTs, a dispatch, the turn.
static void
s_solo_round(s_world_t *w)
{
    s_results(w, &w->drones[0]);
    s_clock(w);
    drones_dispatch(w->b);
    s_end_turn(w);
}

// The attempts the broker keeps in memory so that leasing and finishing
// read nothing (issue 9): kept by the lease, a failure, a hand-back and a
// success, reset by an amendment's replace, and equal to what a reload
// reads from the ledger.  The accepted attempt the finish recorded is the
// run memory said.
static void
test_attempts_kept_without_reads(void)
{
    s_world_t *w = xcalloc(1, sizeof *w);
    s_world_init(w);
    REQUIRE(s_open(w));
    s_hello(w, &w->drones[0]);
    s_end_turn(w);
    CHECK_INT(s_submit(w, "{\"name\": \"a\", \"defaults\": {\"retries\": 2},"
                          " \"tasks\": [{\"id\": \"fail1\", \"run\": [\"true\"]},"
                          "{\"id\": \"back1\", \"run\": [\"true\"]}]}"), 1);
    for (int i = 0; i < 3; i++) {
        s_solo_round(w);
    }
    // fail1 failed once (in backoff); back1 was handed back, leased again
    // and succeeded with its second run.
    s_expect(w, "task 0 'fail1' ready not_before ", " used 1 runs 1\n");
    s_expect(w, "task 1 'back1' succeeded used 1 runs 2\n", NULL);
    uint8_t *data = NULL;
    size_t len = 0;
    bool trunc = false;
    uint32_t accepted = 0;
    CHECK_INT(ledger_task_output(w->b->ledger, 1, "back1", 0, false, &data,
                                 &len, &trunc, &accepted), LEDGER_OK);
    CHECK_INT(accepted, 2);
    free(data);
    proto_msg_t *m = proto_msg_new(PROTO_MSG_AMEND);
    m->u.amend.plan = 1;
    m->u.amend.amendment = xstrdup("{\"replace\": [{\"id\": \"fail1\","
                                   " \"run\": [\"true\"]}]}");
    s_request(w, m);
    s_end_turn(w);
    s_expect(w, "task 0 'fail1' ready used 0 runs 1\n", NULL);
    char *before = sched_describe(w->b->sched);
    broker_destroy(&w->b);
    REQUIRE(s_open(w));
    char *after = sched_describe(w->b->sched);
    CHECK_STR(after, before);
    free(before);
    free(after);
    // Its next lease is run 2, the first attempt of its fresh budget (it
    // fails again: a fail* task always does).
    s_hello(w, &w->drones[0]);
    s_end_turn(w);
    s_solo_round(w);
    s_solo_round(w);
    s_expect(w, "task 0 'fail1' ready not_before ", " used 1 runs 2\n");
    broker_destroy(&w->b);
    free(w);
}

static const t_case_t t_cases[] = {
    T(test_reload_equals_live_every_round),
    T(test_backoff_clamped_on_reload),
    T(test_rebuild_skips_unloadable_plan),
    T(test_failed_rebuild_spares_next_turn),
    T(test_gates_answer_and_time_out),
    T(test_budget_commit_fails),
    T(test_tails_kept_for_the_holder_and_dropped),
    T(test_attempts_kept_without_reads),
    {0},
};

T_MAIN(t_cases)
