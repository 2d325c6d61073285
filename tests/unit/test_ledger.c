// test_ledger: the ledger on a real SQLite file in a temp dir — reopen,
// fencing, duplicates, retries, events, the writer's lock, schema versions
// and a failed commit.  Workplans come from workplan_parse, as in the
// broker.
#include "broker/ledger.h"

#include "common/xalloc.h"
#include "tests/harness/t.h"

#include <sys/stat.h>
#include <sys/wait.h>

#define NOW 1700000000000LL

// a; b needs a; c needs a and b (no retries); g is a gate needing c.
static const char s_plan_json[] =
    "{\"name\": \"demo\", \"goal\": \"test the ledger\", \"tasks\": ["
    "{\"id\": \"a\", \"run\": [\"echo\", \"a\"]},"
    "{\"id\": \"b\", \"needs\": [\"a\"], \"run\": [\"echo\", \"b\"]},"
    "{\"id\": \"c\", \"needs\": [\"a\", \"b\"], \"run\": [\"true\"],"
    " \"retries\": 0},"
    "{\"id\": \"g\", \"needs\": [\"c\"], \"gate\": \"ship it?\"}]}";

// --- helpers -------------------------------------------------------------

static const char *
s_path(void)
{
    static char path[600];
    snprintf(path, sizeof path, "%s/ledger.db", t_tmpdir());
    return path;
}

static ledger_t *
s_open_flags(unsigned flags)
{
    ledger_t *l = NULL;
    char err[512] = "";
    if (ledger_open(&l, s_path(), flags, err, sizeof err) != 0) {
        fprintf(stderr, "%s: ledger_open: %s\n", t_current, err);
    }
    return l;
}

static ledger_t *
s_open(void)
{
    return s_open_flags(0);
}

// Stores a workplan as the broker does: tasks that need nothing are ready
// (gates awaiting approval), the rest wait.  Returns the plan id or 0.
static int64_t
s_submit(ledger_t *l, const char *json, const char *who, const char *key)
{
    workplan_t *wp = NULL;
    wp_errors_t errs = {0};
    if (workplan_parse(json, strlen(json), &wp, &errs) != 0) {
        char *text = wp_errors_format(&errs);
        fprintf(stderr, "%s: workplan: %s\n", t_current, text);
        free(text);
        wp_errors_release(&errs);
        return 0;
    }
    proto_task_state_t *initial = xcalloc(wp->n_tasks, sizeof *initial);
    for (size_t i = 0; i < wp->n_tasks; i++) {
        initial[i] = wp->tasks[i].n_needs ? PROTO_TASK_WAITING
                     : wp->tasks[i].kind == WP_KIND_GATE
                         ? PROTO_TASK_AWAITING_APPROVAL
                         : PROTO_TASK_READY;
    }
    char *canon = workplan_to_json(wp);
    int64_t plan = 0;
    bool ok = ledger_begin(l) == 0
              && ledger_plan_create(l, wp, canon, "hash-1", initial, who, key,
                                    NOW, &plan) == LEDGER_OK
              && ledger_commit(l) == 0;
    if (!ok) {
        ledger_rollback(l);
        plan = 0;
    }
    free(canon);
    free(initial);
    workplan_destroy(&wp);
    return plan;
}

// What the broker keeps in memory for a task (sched_attempts), read back
// from the ledger: attempts of the budget used, attempt rows, and the row
// number of token (0: none).
typedef struct {
    uint64_t token;
    uint32_t rows, n_of_token;
} s_runs_t;

static void
s_count_run(void *arg, const ledger_attempt_row_t *row)
{
    s_runs_t *r = arg;
    r->rows++;
    if (row->token == r->token) {
        r->n_of_token = row->n;
    }
}

static s_runs_t
s_runs(ledger_t *l, int64_t plan, const char *task, uint64_t token)
{
    s_runs_t r = {.token = token};
    if (ledger_attempts(l, plan, task, s_count_run, &r) != LEDGER_OK) {
        r.rows = r.n_of_token = 0;
    }
    return r;
}

// s_used below, without its check: a lease may name a task that is not
// there.
static uint32_t
s_used_or_0(ledger_t *l, int64_t plan, const char *task)
{
    uint32_t used = 0;
    return ledger_task_attempts_used(l, plan, task, &used) == LEDGER_OK
               ? used
               : 0;
}

// One lease in its own turn.
static ledger_rc_t
s_lease(ledger_t *l, int64_t plan, const char *task, const char *instance,
        int64_t now, uint64_t *token, uint32_t *attempt)
{
    uint64_t tok = 0;
    uint32_t n = 0;
    // Outputs are set on every path: gcc 14 (Debian 13) rightly warns that
    // callers would read an unset token after a failed begin.
    if (token) {
        *token = 0;
    }
    if (attempt) {
        *attempt = 0;
    }
    if (ledger_begin(l) != 0) {
        return LEDGER_ERROR;
    }
    uint32_t used = s_used_or_0(l, plan, task);
    uint32_t run = s_runs(l, plan, task, 0).rows + 1;
    ledger_rc_t rc = ledger_task_lease(l, plan, task, instance, "drone-1",
                                       used, run, now, &tok, &n);
    if (ledger_commit(l) != 0) {
        return LEDGER_ERROR;
    }
    if (token) {
        *token = tok;
    }
    if (attempt) {
        *attempt = n;
    }
    return rc;
}

// One finish in its own turn.
static ledger_rc_t
s_finish(ledger_t *l, int64_t plan, const char *task, uint64_t token,
         const char *instance, const ledger_attempt_end_t *end,
         proto_task_state_t to, int64_t not_before)
{
    if (ledger_begin(l) != 0) {
        return LEDGER_ERROR;
    }
    uint32_t run = s_runs(l, plan, task, token).n_of_token;
    ledger_rc_t rc = ledger_task_finish(l, plan, task, token, run, instance,
                                        end, to, not_before, "drone-1", NOW);
    return ledger_commit(l) == 0 ? rc : LEDGER_ERROR;
}

static ledger_rc_t
s_move(ledger_t *l, int64_t plan, const char *task, proto_task_state_t from,
       proto_task_state_t to)
{
    if (ledger_begin(l) != 0) {
        return LEDGER_ERROR;
    }
    ledger_rc_t rc = ledger_task_move(l, plan, task, from, to, "broker",
                                      NULL, NOW);
    return ledger_commit(l) == 0 ? rc : LEDGER_ERROR;
}

static const ledger_attempt_end_t s_ok_end = {
    .outcome = LEDGER_ATTEMPT_SUCCEEDED, .has_exit_code = true,
    .out = (const uint8_t *) "out\n", .out_len = 4};
static const ledger_attempt_end_t s_fail_end = {
    .outcome = LEDGER_ATTEMPT_FAILED, .has_exit_code = true, .exit_code = 3,
    .error = "exit status 3"};
static const ledger_attempt_end_t s_expired_end = {
    .outcome = LEDGER_ATTEMPT_EXPIRED, .error = "lease lost"};

// The task's row as status shows it; state -1 when it is not there.
static proto_task_info_t
s_task(ledger_t *l, int64_t plan, const char *task, proto_msg_t **keep)
{
    proto_task_info_t none = {.state = (proto_task_state_t) -1};
    *keep = proto_msg_new(PROTO_MSG_STATUS_OK);
    proto_status_ok_t *st = &(*keep)->u.status_ok;
    if (ledger_tasks(l, plan, 0, PROTO_STATUS_TASK_OBJECTS, st) != LEDGER_OK) {
        return none;
    }
    for (size_t i = 0; i < st->n_tasks; i++) {
        if (strcmp(st->tasks[i].id, task) == 0) {
            return st->tasks[i];
        }
    }
    return none;
}

static proto_task_state_t
s_state(ledger_t *l, int64_t plan, const char *task)
{
    proto_msg_t *m;
    proto_task_state_t s = s_task(l, plan, task, &m).state;
    proto_msg_destroy(&m);
    return s;
}

static uint32_t
s_used(ledger_t *l, int64_t plan, const char *task)
{
    uint32_t used = 999;
    CHECK_INT(ledger_task_attempts_used(l, plan, task, &used), LEDGER_OK);
    return used;
}

typedef struct {
    int n;
    char last_kind[32], last_from[32], last_to[32], last_actor[32];
    uint64_t last_token;
} s_events_t;

static void
s_on_event(void *arg, int64_t seq, int64_t at_ms, const char *task,
           const char *actor, const char *kind, const char *from,
           const char *to, uint64_t token, const char *detail)
{
    // The callback's signature is ledger_events'; these tests look at less.
    (void) seq;
    (void) at_ms;
    (void) task;
    (void) detail;
    s_events_t *ev = arg;
    ev->n++;
    snprintf(ev->last_kind, sizeof ev->last_kind, "%s", kind);
    snprintf(ev->last_from, sizeof ev->last_from, "%s", from ? from : "");
    snprintf(ev->last_to, sizeof ev->last_to, "%s", to ? to : "");
    snprintf(ev->last_actor, sizeof ev->last_actor, "%s", actor);
    ev->last_token = token;
}

static s_events_t
s_events(ledger_t *l, int64_t plan)
{
    s_events_t ev = {0};
    CHECK_INT(ledger_events(l, plan, 0, s_on_event, &ev), LEDGER_OK);
    return ev;
}

typedef struct {
    int plans, tasks;
    int64_t plan;
    bool json_ok;
    char order[16];            // task ids in the order they came
    ledger_task_row_t a;       // task a's row (strings not kept)
    char a_instance[32];
} s_load_t;

static void
s_on_plan(void *arg, int64_t plan, const char *json)
{
    s_load_t *ld = arg;
    ld->plans++;
    ld->plan = plan;
    ld->json_ok = json && strstr(json, "\"demo\"") != NULL;
}

static void
s_on_task(void *arg, const ledger_task_row_t *row)
{
    s_load_t *ld = arg;
    if (ld->tasks < (int) sizeof ld->order - 1) {
        ld->order[ld->tasks] = row->task[0];
    }
    ld->tasks++;
    if (strcmp(row->task, "a") == 0) {
        ld->a = *row;
        snprintf(ld->a_instance, sizeof ld->a_instance, "%s",
                 row->instance ? row->instance : "");
        ld->a.task = ld->a.instance = ld->a.holder = NULL;
    }
}

// --- tests ---------------------------------------------------------------

static void
test_create_and_reopen(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    char id[64];
    snprintf(id, sizeof id, "%s", ledger_id(l));
    CHECK_INT(strlen(id), 32);
    int64_t plan = s_submit(l, s_plan_json, "alice", NULL);
    REQUIRE(plan > 0);
    uint64_t token = 0;
    uint32_t n = 0;
    CHECK_INT(s_lease(l, plan, "a", "i1", NOW, &token, &n), LEDGER_OK);
    CHECK_INT(token, 1);
    CHECK_INT(n, 1);
    ledger_destroy(&l);
    CHECK(l == NULL);
    ledger_destroy(&l);

    l = s_open();
    REQUIRE(l);
    CHECK_STR(ledger_id(l), id);
    s_load_t ld = {0};
    CHECK_INT(ledger_load(l, s_on_plan, s_on_task, &ld), LEDGER_OK);
    CHECK_INT(ld.plans, 1);
    CHECK_INT(ld.plan, plan);
    CHECK(ld.json_ok);
    CHECK_STR(ld.order, "abcg");
    CHECK_INT(ld.a.state, PROTO_TASK_LEASED);
    CHECK_INT(ld.a.token, 1);
    CHECK_STR(ld.a_instance, "i1");
    CHECK_INT(ld.a.lease_start_ms, NOW);
    CHECK_INT(ld.a.attempts_total, 1);
    // The lease survived: its result is still accepted after the restart.
    CHECK_INT(s_finish(l, plan, "a", 1, "i1", &s_ok_end,
                       PROTO_TASK_SUCCEEDED, 0), LEDGER_OK);
    CHECK_INT(s_move(l, plan, "b", PROTO_TASK_WAITING, PROTO_TASK_READY),
              LEDGER_OK);
    CHECK_INT(s_lease(l, plan, "b", "i1", NOW, &token, &n), LEDGER_OK);
    CHECK_INT(token, 2);
    ledger_destroy(&l);

    // The counter is never reset: it keeps growing across every reopen.
    l = s_open();
    REQUIRE(l);
    CHECK_INT(s_move(l, plan, "c", PROTO_TASK_WAITING, PROTO_TASK_READY),
              LEDGER_OK);
    CHECK_INT(s_lease(l, plan, "c", "i2", NOW, &token, &n), LEDGER_OK);
    CHECK_INT(token, 3);
    ledger_destroy(&l);
}

// Mode bits of path plus suffix, or -1.
static int
s_mode(const char *suffix)
{
    char path[700];
    struct stat sb;
    snprintf(path, sizeof path, "%s%s", s_path(), suffix);
    return stat(path, &sb) == 0 ? (int) (sb.st_mode & 0777) : -1;
}

// A new ledger holds every task's output (and what its env carried): it is
// created readable by its owner only, whatever the umask, and SQLite's WAL
// and shared-memory files follow it.  An existing file keeps its mode.
static void
test_new_ledger_is_private(void)
{
    mode_t old = umask(022);
    ledger_t *l = s_open();
    REQUIRE(l);
    CHECK(s_submit(l, s_plan_json, "alice", NULL) > 0);
    CHECK_INT(s_mode(""), 0600);
    CHECK_INT(s_mode("-wal"), 0600);
    ledger_destroy(&l);
    REQUIRE(chmod(s_path(), 0640) == 0);
    l = s_open();
    REQUIRE(l);
    CHECK_INT(s_mode(""), 0640);
    ledger_destroy(&l);
    umask(old);
}

static void
test_status_reads_survive_reopen(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    int64_t plan = s_submit(l, s_plan_json, "alice", NULL);
    REQUIRE(plan > 0);
    CHECK_INT(s_lease(l, plan, "a", "i1", NOW, NULL, NULL), LEDGER_OK);
    ledger_destroy(&l);
    l = s_open();
    REQUIRE(l);
    proto_msg_t *m = proto_msg_new(PROTO_MSG_STATUS_OK);
    proto_status_ok_t *st = &m->u.status_ok;
    CHECK_INT(ledger_plans(l, plan, 10, st), LEDGER_OK);
    CHECK_INT(ledger_tasks(l, plan, 0, PROTO_STATUS_TASK_OBJECTS, st), LEDGER_OK);
    REQUIRE(st->n_plans == 1 && st->n_tasks == 4);
    CHECK_STR(st->plans[0].name, "demo");
    CHECK_STR(st->plans[0].state, "running");
    CHECK_STR(st->plans[0].submitted_by, "alice");
    CHECK_INT(st->plans[0].created_ms, NOW);
    CHECK_INT(st->plans[0].finished_ms, 0);
    CHECK_INT(st->plans[0].counts[PROTO_TASK_LEASED], 1);
    CHECK_INT(st->plans[0].counts[PROTO_TASK_WAITING], 3);
    CHECK_STR(st->tasks[0].id, "a");
    CHECK_STR(st->tasks[0].kind, "run");
    CHECK_INT(st->tasks[0].state, PROTO_TASK_LEASED);
    CHECK_STR(st->tasks[0].drone, "drone-1");
    CHECK_INT(st->tasks[0].needs.count, 0);
    CHECK_STR(st->tasks[2].id, "c");
    REQUIRE(st->tasks[2].needs.count == 2);
    CHECK_STR(st->tasks[2].needs.items[0], "a");
    CHECK_STR(st->tasks[2].needs.items[1], "b");
    CHECK_STR(st->tasks[3].kind, "gate");
    CHECK(st->tasks[3].drone == NULL);
    proto_msg_destroy(&m);
    ledger_destroy(&l);
}

// The times status shows: ready at submit (and again after a failure or a
// retry), the latest attempt's start and end; the attempt number goes on
// across a retry while the budget's count starts again.
static void
test_task_times_and_attempt_number(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    int64_t plan = s_submit(l, s_plan_json, "alice", NULL);
    proto_msg_t *m;
    proto_task_info_t t = s_task(l, plan, "a", &m);
    CHECK_INT(t.ready_ms, NOW);
    CHECK_INT(t.attempt, 0);
    CHECK_INT(t.started_ms, 0);
    CHECK_INT(t.attempt_budget, 3);    // retries 2 by default
    proto_msg_destroy(&m);
    t = s_task(l, plan, "c", &m);
    CHECK_INT(t.attempt_budget, 1);    // retries 0
    proto_msg_destroy(&m);
    t = s_task(l, plan, "g", &m);
    CHECK_INT(t.attempt_budget, 0);    // a gate has none
    proto_msg_destroy(&m);
    t = s_task(l, plan, "b", &m);
    CHECK_INT(t.ready_ms, 0);  // waiting: never ready yet
    proto_msg_destroy(&m);
    uint64_t token;
    REQUIRE(s_lease(l, plan, "a", "i1", NOW + 100, &token, NULL) == LEDGER_OK);
    t = s_task(l, plan, "a", &m);
    CHECK_INT(t.attempt, 1);
    CHECK_INT(t.started_ms, NOW + 100);
    CHECK_INT(t.ended_ms, 0);
    proto_msg_destroy(&m);
    REQUIRE(ledger_begin(l) == 0);
    CHECK_INT(ledger_task_finish(l, plan, "a", token, 1, "i1", &s_fail_end,
                                 PROTO_TASK_DEAD, 0, "drone-1", NOW + 1300),
              LEDGER_OK);
    CHECK_INT(ledger_task_reset(l, plan, "a", PROTO_TASK_DEAD,
                                PROTO_TASK_READY, "alice", NOW + 2000),
              LEDGER_OK);
    REQUIRE(ledger_commit(l) == 0);
    t = s_task(l, plan, "a", &m);
    CHECK_INT(t.attempts, 0);          // a fresh budget
    CHECK_INT(t.attempt, 1);           // the number is not reset
    CHECK_INT(t.ready_ms, NOW + 2000);
    CHECK_INT(t.started_ms, NOW + 100);
    CHECK_INT(t.ended_ms, NOW + 1300);
    proto_msg_destroy(&m);
    REQUIRE(s_lease(l, plan, "a", "i1", NOW + 2500, &token, NULL) == LEDGER_OK);
    t = s_task(l, plan, "a", &m);
    CHECK_INT(t.attempt, 2);
    CHECK_INT(t.started_ms, NOW + 2500);
    CHECK_INT(t.ended_ms, 0);
    proto_msg_destroy(&m);
    CHECK_INT(s_move(l, plan, "b", PROTO_TASK_WAITING, PROTO_TASK_READY),
              LEDGER_OK);
    t = s_task(l, plan, "b", &m);
    CHECK_INT(t.ready_ms, NOW);
    proto_msg_destroy(&m);
    ledger_destroy(&l);
}

static void
test_lease_finish_succeeded(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    int64_t plan = s_submit(l, s_plan_json, "alice", NULL);
    uint64_t token;
    CHECK_INT(s_lease(l, plan, "a", "i1", NOW, &token, NULL), LEDGER_OK);
    CHECK_INT(s_finish(l, plan, "a", token, "i1", &s_ok_end,
                       PROTO_TASK_SUCCEEDED, 0), LEDGER_OK);
    proto_msg_t *m;
    proto_task_info_t t = s_task(l, plan, "a", &m);
    CHECK_INT(t.state, PROTO_TASK_SUCCEEDED);
    CHECK_INT(t.attempts, 1);
    CHECK(t.has_exit_code);
    CHECK_INT(t.exit_code, 0);
    CHECK_STR(t.drone, "drone-1");
    CHECK(t.last_error == NULL);
    proto_msg_destroy(&m);
    uint8_t *data = NULL;
    size_t len = 0;
    bool trunc = true;
    uint32_t attempt = 0;
    CHECK_INT(ledger_task_output(l, plan, "a", 0, false, &data, &len, &trunc,
                                 &attempt), LEDGER_OK);
    CHECK_INT(attempt, 1);
    CHECK_INT(len, 4);
    CHECK(data && memcmp(data, "out\n", 4) == 0);
    CHECK(!trunc);
    free(data);
    // Not ready any more: a second lease is refused.
    CHECK_INT(s_lease(l, plan, "a", "i1", NOW, NULL, NULL), LEDGER_MISS);
    ledger_destroy(&l);
}

static void
test_stale_results_change_nothing(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    int64_t plan = s_submit(l, s_plan_json, "alice", NULL);
    uint64_t t1, t2;
    uint32_t n;
    CHECK_INT(s_lease(l, plan, "a", "i1", NOW, &t1, &n), LEDGER_OK);
    int events = s_events(l, plan).n;
    // Wrong token, wrong instance.
    CHECK_INT(s_finish(l, plan, "a", t1 + 100, "i1", &s_ok_end,
                       PROTO_TASK_SUCCEEDED, 0), LEDGER_MISS);
    CHECK_INT(s_finish(l, plan, "a", t1, "i2", &s_ok_end,
                       PROTO_TASK_SUCCEEDED, 0), LEDGER_MISS);
    CHECK_INT(s_state(l, plan, "a"), PROTO_TASK_LEASED);
    CHECK_INT(s_events(l, plan).n, events);
    CHECK_INT(s_used(l, plan, "a"), 0);
    char *task = NULL;
    int64_t p = 0;
    ledger_attempt_outcome_t o;
    CHECK_INT(ledger_token_lookup(l, t1, &p, &task, &o), LEDGER_OK);
    CHECK_INT(o, LEDGER_ATTEMPT_RUNNING);
    free(task);
    // After expiry the old holder's result is fenced off.
    CHECK_INT(s_finish(l, plan, "a", t1, NULL, &s_expired_end,
                       PROTO_TASK_READY, 0), LEDGER_OK);
    CHECK_INT(s_used(l, plan, "a"), 1);
    CHECK_INT(s_finish(l, plan, "a", t1, "i1", &s_ok_end,
                       PROTO_TASK_SUCCEEDED, 0), LEDGER_MISS);
    CHECK_INT(s_state(l, plan, "a"), PROTO_TASK_READY);
    // After a cancel too; a cancel uses no attempt.
    CHECK_INT(s_lease(l, plan, "a", "i2", NOW, &t2, &n), LEDGER_OK);
    CHECK(t2 > t1);
    CHECK_INT(n, 2);
    ledger_attempt_end_t cancel = {.outcome = LEDGER_ATTEMPT_CANCELLED};
    CHECK_INT(s_finish(l, plan, "a", t2, NULL, &cancel, PROTO_TASK_CANCELLED,
                       0), LEDGER_OK);
    events = s_events(l, plan).n;
    CHECK_INT(s_finish(l, plan, "a", t2, "i2", &s_ok_end,
                       PROTO_TASK_SUCCEEDED, 0), LEDGER_MISS);
    CHECK_INT(s_state(l, plan, "a"), PROTO_TASK_CANCELLED);
    CHECK_INT(s_used(l, plan, "a"), 1);
    CHECK_INT(s_events(l, plan).n, events);
    CHECK_INT(ledger_token_lookup(l, t1, &p, &task, &o), LEDGER_OK);
    CHECK_INT(o, LEDGER_ATTEMPT_EXPIRED);
    free(task);
    CHECK_INT(ledger_token_lookup(l, t2, &p, &task, &o), LEDGER_OK);
    CHECK_INT(o, LEDGER_ATTEMPT_CANCELLED);
    free(task);
    ledger_destroy(&l);
}

static void
test_token_lookup_tells_duplicates(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    int64_t plan = s_submit(l, s_plan_json, "alice", NULL);
    uint64_t t1, t2;
    CHECK_INT(s_lease(l, plan, "a", "i1", NOW, &t1, NULL), LEDGER_OK);
    CHECK_INT(s_finish(l, plan, "a", t1, "i1", &s_fail_end, PROTO_TASK_READY,
                       0), LEDGER_OK);
    CHECK_INT(s_lease(l, plan, "a", "i1", NOW, &t2, NULL), LEDGER_OK);
    CHECK_INT(s_finish(l, plan, "a", t2, "i1", &s_ok_end,
                       PROTO_TASK_SUCCEEDED, 0), LEDGER_OK);
    int64_t p = 0;
    char *task = NULL;
    ledger_attempt_outcome_t o;
    CHECK_INT(ledger_token_lookup(l, t2, &p, &task, &o), LEDGER_OK);
    CHECK_INT(p, plan);
    CHECK_STR(task, "a");
    CHECK_INT(o, LEDGER_ATTEMPT_SUCCEEDED);
    free(task);
    task = NULL;
    CHECK_INT(ledger_token_lookup(l, t1, &p, &task, &o), LEDGER_OK);
    CHECK_INT(o, LEDGER_ATTEMPT_FAILED);
    free(task);
    task = NULL;
    CHECK_INT(ledger_token_lookup(l, 999999, &p, &task, &o), LEDGER_MISS);
    CHECK(task == NULL);
    ledger_destroy(&l);
}

// The broker says which attempt row a lease is and a finish ends (it
// keeps them in memory: no read).  A finish naming another row than the
// lease's is an error that fails the turn, never a result recorded under
// the wrong number; a lease reusing a row number fails too.
static void
test_attempt_numbers_from_memory_checked(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    int64_t plan = s_submit(l, s_plan_json, "alice", NULL);
    REQUIRE(plan > 0);
    uint64_t t;
    uint32_t n;
    CHECK_INT(s_lease(l, plan, "a", "i1", NOW, &t, &n), LEDGER_OK);
    CHECK_INT(n, 1);
    REQUIRE(ledger_begin(l) == 0);
    CHECK_INT(ledger_task_finish(l, plan, "a", t, 2, "i1", &s_ok_end,
                                 PROTO_TASK_SUCCEEDED, 0, "d", NOW),
              LEDGER_ERROR);
    ledger_rollback(l);
    REQUIRE(ledger_begin(l) == 0);
    ledger_attempt_end_t back = {.outcome = LEDGER_ATTEMPT_RELEASED};
    CHECK_INT(ledger_task_finish(l, plan, "a", t, 1, "i1", &back,
                                 PROTO_TASK_READY, 0, "d", NOW),
              LEDGER_OK);
    REQUIRE(ledger_commit(l) == 0);
    REQUIRE(ledger_begin(l) == 0);
    CHECK_INT(ledger_task_lease(l, plan, "a", "i1", "drone-1", 0, 1, NOW, &t,
                                &n), LEDGER_ERROR);
    ledger_rollback(l);
    REQUIRE(ledger_begin(l) == 0);
    CHECK_INT(ledger_task_lease(l, plan, "a", "i1", "drone-1", 0, 2, NOW, &t,
                                &n), LEDGER_OK);
    CHECK_INT(n, 1);  // the hand-back used no attempt of the budget
    CHECK_INT(ledger_task_finish(l, plan, "a", t, 2, "i1", &s_ok_end,
                                 PROTO_TASK_SUCCEEDED, 0, "d", NOW),
              LEDGER_OK);
    REQUIRE(ledger_commit(l) == 0);
    uint8_t *data = NULL;
    size_t len = 0;
    bool trunc = false;
    uint32_t accepted = 0;
    CHECK_INT(ledger_task_output(l, plan, "a", 0, false, &data, &len, &trunc,
                                 &accepted), LEDGER_OK);
    CHECK_INT(accepted, 2);
    free(data);
    ledger_destroy(&l);
}

static void
test_racing_results_one_wins(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    int64_t plan = s_submit(l, s_plan_json, "alice", NULL);
    uint64_t t;
    CHECK_INT(s_lease(l, plan, "a", "i1", NOW, &t, NULL), LEDGER_OK);
    // Two RESULTs for one token drained in the same turn.
    REQUIRE(ledger_begin(l) == 0);
    CHECK_INT(ledger_task_finish(l, plan, "a", t, 1, "i1", &s_ok_end,
                                 PROTO_TASK_SUCCEEDED, 0, "d", NOW),
              LEDGER_OK);
    CHECK_INT(ledger_task_finish(l, plan, "a", t, 1, "i1", &s_ok_end,
                                 PROTO_TASK_SUCCEEDED, 0, "d", NOW),
              LEDGER_MISS);
    CHECK_INT(ledger_task_finish(l, plan, "a", t, 1, "i1", &s_fail_end,
                                 PROTO_TASK_READY, 0, "d", NOW),
              LEDGER_MISS);
    CHECK_INT(ledger_commit(l), 0);
    // And one in a later turn.
    CHECK_INT(s_finish(l, plan, "a", t, "i1", &s_ok_end,
                       PROTO_TASK_SUCCEEDED, 0), LEDGER_MISS);
    CHECK_INT(s_used(l, plan, "a"), 1);
    CHECK_INT(s_state(l, plan, "a"), PROTO_TASK_SUCCEEDED);
    ledger_destroy(&l);
}

static void
test_retry_fresh_budget_tokens_grow(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    int64_t plan = s_submit(l, s_plan_json, "alice", NULL);
    uint64_t t1, t2;
    uint32_t n;
    CHECK_INT(s_move(l, plan, "c", PROTO_TASK_WAITING, PROTO_TASK_READY),
              LEDGER_OK);
    CHECK_INT(s_lease(l, plan, "c", "i1", NOW, &t1, &n), LEDGER_OK);
    CHECK_INT(s_finish(l, plan, "c", t1, "i1", &s_fail_end, PROTO_TASK_DEAD,
                       0), LEDGER_OK);
    CHECK_INT(s_used(l, plan, "c"), 1);
    proto_msg_t *m;
    proto_task_info_t ti = s_task(l, plan, "c", &m);
    CHECK_INT(ti.exit_code, 3);
    CHECK_STR(ti.last_error, "exit status 3");
    proto_msg_destroy(&m);
    // A miss when the task is not in the from-state.
    REQUIRE(ledger_begin(l) == 0);
    CHECK_INT(ledger_task_reset(l, plan, "c", PROTO_TASK_CANCELLED,
                                PROTO_TASK_READY, "op", NOW), LEDGER_MISS);
    CHECK_INT(ledger_task_reset(l, plan, "c", PROTO_TASK_DEAD,
                                PROTO_TASK_READY, "op", NOW), LEDGER_OK);
    CHECK_INT(ledger_commit(l), 0);
    CHECK_INT(s_used(l, plan, "c"), 0);
    CHECK_INT(s_state(l, plan, "c"), PROTO_TASK_READY);
    CHECK_INT(s_lease(l, plan, "c", "i1", NOW, &t2, &n), LEDGER_OK);
    CHECK(t2 > t1);
    CHECK_INT(n, 1);  // the first attempt of the fresh budget
    CHECK_INT(s_finish(l, plan, "c", t2, "i1", &s_ok_end,
                       PROTO_TASK_SUCCEEDED, 0), LEDGER_OK);
    ti = s_task(l, plan, "c", &m);
    CHECK_INT(ti.attempts, 1);
    CHECK_INT(ti.exit_code, 0);
    CHECK(ti.last_error == NULL);
    proto_msg_destroy(&m);
    ledger_destroy(&l);
}

static void
test_release_uses_no_attempt(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    int64_t plan = s_submit(l, s_plan_json, "alice", NULL);
    uint64_t t;
    uint32_t n;
    CHECK_INT(s_lease(l, plan, "a", "i1", NOW, &t, &n), LEDGER_OK);
    ledger_attempt_end_t rel = {.outcome = LEDGER_ATTEMPT_RELEASED};
    CHECK_INT(s_finish(l, plan, "a", t, "i1", &rel, PROTO_TASK_READY, 0),
              LEDGER_OK);
    CHECK_INT(s_used(l, plan, "a"), 0);
    CHECK_INT(s_lease(l, plan, "a", "i1", NOW, &t, &n), LEDGER_OK);
    CHECK_INT(n, 1);  // the released lease used no attempt
    s_load_t ld = {0};
    CHECK_INT(ledger_load(l, s_on_plan, s_on_task, &ld), LEDGER_OK);
    CHECK_INT(ld.a.attempts_used, 0);
    CHECK_INT(ld.a.attempts_total, 2);
    ledger_destroy(&l);
}

// What a plan's stored workplan is now; caller frees.
static char *
s_stored(ledger_t *l, int64_t plan)
{
    char *json = NULL;
    CHECK_INT(ledger_plan_json(l, plan, &json), LEDGER_OK);
    return json ? json : xstrdup("");
}

// ledger_plan_set_workplan replaces the text in the open turn only: outside
// a turn, for no such plan, or rolled back, nothing changes; committed, it
// is what a reopened ledger loads.
static void
test_set_workplan(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    int64_t plan = s_submit(l, s_plan_json, "alice", NULL);
    REQUIRE(plan > 0);
    char *before = s_stored(l, plan);
    const char next[] = "{\"name\":\"demo\",\"tasks\":[]}xyz";
    size_t len = sizeof next - 4;  // the bytes before "xyz"
    CHECK_INT(ledger_plan_set_workplan(l, plan, next, len), -1);
    REQUIRE(ledger_begin(l) == 0);
    CHECK_INT(ledger_plan_set_workplan(l, plan + 1, next, len), -1);
    CHECK_INT(ledger_plan_set_workplan(l, plan, next, len), 0);
    ledger_rollback(l);
    char *now = s_stored(l, plan);
    CHECK_STR(now, before);
    free(now);
    REQUIRE(ledger_begin(l) == 0);
    CHECK_INT(ledger_plan_set_workplan(l, plan, next, len), 0);
    REQUIRE(ledger_commit(l) == 0);
    ledger_destroy(&l);
    l = s_open();
    REQUIRE(l);
    now = s_stored(l, plan);
    CHECK_STR(now, "{\"name\":\"demo\",\"tasks\":[]}");
    free(now);
    free(before);
    ledger_destroy(&l);
}

static void
test_events_one_per_transition(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    int64_t plan = s_submit(l, s_plan_json, "alice", NULL);
    s_events_t ev = s_events(l, plan);
    CHECK_INT(ev.n, 1);
    CHECK_STR(ev.last_kind, "submitted");
    CHECK_STR(ev.last_actor, "alice");
    uint64_t t;
    CHECK_INT(s_lease(l, plan, "a", "i1", NOW, &t, NULL), LEDGER_OK);
    ev = s_events(l, plan);
    CHECK_INT(ev.n, 2);
    CHECK_STR(ev.last_from, "ready");
    CHECK_STR(ev.last_to, "leased");
    CHECK_INT(ev.last_token, t);
    CHECK_INT(s_finish(l, plan, "a", t, "i1", &s_ok_end,
                       PROTO_TASK_SUCCEEDED, 0), LEDGER_OK);
    ev = s_events(l, plan);
    CHECK_INT(ev.n, 3);
    CHECK_STR(ev.last_to, "succeeded");
    CHECK_STR(ev.last_actor, "drone-1");
    // Misses write nothing.
    CHECK_INT(s_lease(l, plan, "a", "i1", NOW, NULL, NULL), LEDGER_MISS);
    CHECK_INT(s_move(l, plan, "b", PROTO_TASK_READY,
                     PROTO_TASK_AWAITING_APPROVAL),
              LEDGER_MISS);
    CHECK_INT(s_events(l, plan).n, 3);
    CHECK_INT(s_move(l, plan, "b", PROTO_TASK_WAITING, PROTO_TASK_READY),
              LEDGER_OK);
    REQUIRE(ledger_begin(l) == 0);
    CHECK_INT(ledger_plan_move(l, plan, LEDGER_PLAN_RUNNING,
                               LEDGER_PLAN_CANCELLED, "bob", NOW),
              LEDGER_OK);
    CHECK_INT(ledger_event(l, plan, NULL, "bob", "note", "hello", NOW),
              LEDGER_OK);
    CHECK_INT(ledger_commit(l), 0);
    CHECK_INT(s_events(l, plan).n, 6);
    CHECK_INT(s_events(l, 0).n, 6);
    s_events_t after = {0};
    CHECK_INT(ledger_events(l, plan, 4, s_on_event, &after), LEDGER_OK);
    CHECK_INT(after.n, 2);
    CHECK_STR(after.last_kind, "note");
    ledger_destroy(&l);
}

// In a child forked before the parent opened anything (so it holds none of
// the parent's SQLite state): waits for the parent's go, tries to open the
// ledger, and writes "rc err" back.
static void
s_child_open(int go_fd, int out_fd)
{
    char c;
    if (read(go_fd, &c, 1) != 1) {
        _exit(2);
    }
    ledger_t *other = NULL;
    char err[512] = "";
    int rc = ledger_open(&other, s_path(), 0, err, sizeof err);
    dprintf(out_fd, "%d %s", rc, err);
    ledger_destroy(&other);
    _exit(0);
}

// Runs s_child_open while this process holds the ledger; its answer in buf.
static void
s_open_in_child(char *buf, size_t len)
{
    int go[2], out[2];
    REQUIRE(pipe(go) == 0 && pipe(out) == 0);
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        close(go[1]);
        close(out[0]);
        s_child_open(go[0], out[1]);
    }
    close(go[0]);
    close(out[1]);
    ledger_t *l = s_open();
    CHECK(l != NULL);
    CHECK(write(go[1], "g", 1) == 1);
    size_t got = 0;
    ssize_t r;
    while (got < len - 1 && (r = read(out[0], buf + got, len - 1 - got)) > 0) {
        got += (size_t) r;
    }
    buf[got] = '\0';
    close(go[1]);
    close(out[0]);
    int status = 0;
    waitpid(child, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ledger_destroy(&l);
}

typedef struct {
    int n;
    int64_t last_seq;
    bool in_order;      // seq one more than the last, detail "n<i>"
} s_seqs_t;

static void
s_on_seq(void *arg, int64_t seq, int64_t at_ms, const char *task,
         const char *actor, const char *kind, const char *from,
         const char *to, uint64_t token, const char *detail)
{
    (void) at_ms;
    (void) task;
    (void) actor;
    (void) from;
    (void) to;
    (void) token;
    s_seqs_t *s = arg;
    if (strcmp(kind, "note") == 0) {
        char want[32];
        snprintf(want, sizeof want, "n%d", s->n);
        s->in_order = s->in_order && detail && strcmp(detail, want) == 0
                      && (s->n == 0 || seq == s->last_seq + 1);
        s->n++;
    }
    s->last_seq = seq;
}

static s_seqs_t
s_notes(ledger_t *l, int64_t plan)
{
    s_seqs_t s = {.in_order = true};
    CHECK_INT(ledger_events(l, plan, 0, s_on_seq, &s), LEDGER_OK);
    return s;
}

// A turn's events rows are buffered and written in batches (ledger_events.c):
// a read inside the turn still sees them all, in order; a rolled-back or
// failed turn leaves none (also of those a full buffer wrote early); a
// committed one has each, in the order appended, with consecutive numbers.
static void
test_events_batched_per_turn(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    int64_t plan = s_submit(l, s_plan_json, "alice", NULL);
    REQUIRE(plan > 0);
    int64_t before = 0;
    CHECK_INT(ledger_events_max(l, 0, &before), LEDGER_OK);
    enum { N = 2500 };  // over the buffer's limit, not a power of two
    for (int round = 0; round < 3; round++) {
        REQUIRE(ledger_begin(l) == 0);
        for (int i = 0; i < N; i++) {
            char detail[32];
            snprintf(detail, sizeof detail, "n%d", i);
            REQUIRE(ledger_event(l, plan, i % 2 ? "a" : NULL, "t", "note",
                                 detail, NOW) == LEDGER_OK);
            if (i == 700) {
                s_seqs_t mid = s_notes(l, plan);
                CHECK_INT(mid.n, 701);
                CHECK(mid.in_order);
            }
        }
        if (round == 0) {
            ledger_rollback(l);
        } else if (round == 1) {
            ledger_fail_next_commit(l);
            CHECK_INT(ledger_commit(l), -1);
        } else {
            CHECK_INT(ledger_commit(l), 0);
        }
        s_seqs_t after = s_notes(l, plan);
        CHECK_INT(after.n, round == 2 ? N : 0);
        CHECK(after.in_order);
        int64_t max = 0;
        CHECK_INT(ledger_events_max(l, 0, &max), LEDGER_OK);
        CHECK_INT(max, round == 2 ? before + N : before);
    }
    ledger_destroy(&l);
    // Durable: the same after a reopen.
    l = s_open();
    REQUIRE(l);
    s_seqs_t again = s_notes(l, plan);
    CHECK_INT(again.n, N);
    CHECK(again.in_order);
    ledger_destroy(&l);
}

static void
test_lock_names_the_holder(void)
{
    char want[800], buf[1024] = "";
    snprintf(want, sizeof want, "ledger '%s' is in use by another broker "
             "(pid %ld)", s_path(), (long) getpid());
    s_open_in_child(buf, sizeof buf);
    CHECK_HAS(buf, "-1 ");
    CHECK_HAS(buf, want);
    ledger_t *l = s_open();
    REQUIRE(l);
    char lock_path[700];
    snprintf(lock_path, sizeof lock_path, "%s.lock", s_path());
    char *pid = t_read_file(lock_path, NULL);
    CHECK(pid && strtol(pid, NULL, 10) == (long) getpid());
    free(pid);
    // flock belongs to the open file: this process cannot open it twice.
    ledger_t *twice = NULL;
    char err[512] = "";
    CHECK_INT(ledger_open(&twice, s_path(), 0, err, sizeof err), -1);
    CHECK(twice == NULL);
    CHECK_HAS(err, want);
    ledger_destroy(&l);
    // Released with the ledger.
    l = s_open();
    CHECK(l != NULL);
    ledger_destroy(&l);
}

static void
test_rdonly_while_locked(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    int64_t plan = s_submit(l, s_plan_json, "alice", NULL);
    REQUIRE(plan > 0);
    ledger_t *ro = s_open_flags(LEDGER_RDONLY);
    REQUIRE(ro);
    CHECK_STR(ledger_id(ro), ledger_id(l));
    proto_msg_t *m = proto_msg_new(PROTO_MSG_STATUS_OK);
    CHECK_INT(ledger_plans(ro, 0, 0, &m->u.status_ok), LEDGER_OK);
    CHECK_INT(m->u.status_ok.n_plans, 1);
    proto_msg_destroy(&m);
    // It sees what the writer commits later.
    CHECK_INT(s_lease(l, plan, "a", "i1", NOW, NULL, NULL), LEDGER_OK);
    CHECK_INT(s_state(ro, plan, "a"), PROTO_TASK_LEASED);
    // And cannot write.
    CHECK_INT(ledger_begin(ro), -1);
    ledger_destroy(&ro);
    ledger_destroy(&l);
}

static void
test_newer_schema_refused(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    CHECK_INT(ledger_test_set_schema_version(l, 99), 0);
    ledger_destroy(&l);
    char err[512] = "";
    CHECK_INT(ledger_open(&l, s_path(), 0, err, sizeof err), -1);
    CHECK(l == NULL);
    CHECK_HAS(err, "schema version 99");
    CHECK_HAS(err, "upgrade");
    err[0] = '\0';
    CHECK_INT(ledger_open(&l, s_path(), LEDGER_RDONLY, err, sizeof err), -1);
    CHECK_HAS(err, "schema version 99");
}

static void
test_not_a_ledger_refused(void)
{
    char err[512] = "";
    ledger_t *l = NULL;
    CHECK_INT(ledger_open(&l, s_path(), LEDGER_RDONLY, err, sizeof err), -1);
    CHECK_HAS(err, "cannot open ledger");
    REQUIRE(t_write_file(s_path(), "this is not a database, not at all; "
                         "just some text that is long enough\n") == 0);
    CHECK_INT(ledger_open(&l, s_path(), 0, err, sizeof err), -1);
    CHECK_HAS(err, "cannot open ledger");
    CHECK(l == NULL);
}

static void
test_failed_commit_rolls_back_the_turn(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    int64_t plan = s_submit(l, s_plan_json, "alice", NULL);
    REQUIRE(plan > 0);
    REQUIRE(ledger_begin(l) == 0);
    uint64_t t;
    uint32_t n;
    int64_t lost = 0;
    CHECK_INT(ledger_task_lease(l, plan, "a", "i1", "drone-1", 0, 1, NOW, &t,
                                &n),
              LEDGER_OK);
    CHECK_INT(ledger_task_move(l, plan, "b", PROTO_TASK_WAITING,
                               PROTO_TASK_READY, "broker", NULL, NOW),
              LEDGER_OK);
    CHECK_INT(ledger_drone_seen(l, "i1", "drone-1", "h", 4, "gpu", NULL, NOW),
              LEDGER_OK);
    workplan_t *wp = NULL;
    wp_errors_t errs = {0};
    REQUIRE(workplan_parse(s_plan_json, strlen(s_plan_json), &wp, &errs)
            == 0);
    proto_task_state_t init[4] = {0};
    CHECK_INT(ledger_plan_create(l, wp, "{}", "h", init, "bob", "k", NOW,
                                 &lost), LEDGER_OK);
    workplan_destroy(&wp);
    ledger_fail_next_commit(l);
    CHECK_INT(ledger_commit(l), -1);
    CHECK(!ledger_in_turn(l));
    // Nothing of that turn is visible.
    CHECK_INT(s_state(l, plan, "a"), PROTO_TASK_READY);
    CHECK_INT(s_state(l, plan, "b"), PROTO_TASK_WAITING);
    int64_t p;
    char *task = NULL;
    ledger_attempt_outcome_t o;
    CHECK_INT(ledger_token_lookup(l, t, &p, &task, &o), LEDGER_MISS);
    char *hash = NULL;
    CHECK_INT(ledger_idem_get(l, "bob", "k", &p, &hash), LEDGER_MISS);
    CHECK_INT(s_events(l, 0).n, 1);
    proto_msg_t *m = proto_msg_new(PROTO_MSG_STATUS_OK);
    CHECK_INT(ledger_plans(l, 0, 0, &m->u.status_ok), LEDGER_OK);
    CHECK_INT(m->u.status_ok.n_plans, 1);
    proto_msg_destroy(&m);
    // The next turn works.  The rolled-back turn's token is never handed
    // out again (the counter lives in memory and is written back by each
    // turn that moved it).
    uint64_t rolled = t;
    CHECK_INT(s_lease(l, plan, "a", "i1", NOW, &t, &n), LEDGER_OK);
    CHECK_INT(n, 1);
    CHECK(t > rolled);
    CHECK_INT(s_state(l, plan, "a"), PROTO_TASK_LEASED);
    // A lease that misses takes no token.
    uint64_t missed = 0;
    CHECK_INT(s_lease(l, plan, "a", "i1", NOW, &missed, &n), LEDGER_MISS);
    ledger_destroy(&l);
    // What the last committed turn wrote back is where a reopen goes on.
    l = s_open();
    REQUIRE(l);
    CHECK_INT(s_move(l, plan, "b", PROTO_TASK_WAITING, PROTO_TASK_READY),
              LEDGER_OK);
    uint64_t after = 0;
    CHECK_INT(s_lease(l, plan, "b", "i1", NOW, &after, &n), LEDGER_OK);
    CHECK_INT(after, t + 1);
    ledger_destroy(&l);
}

// A LEDGER_ERROR ends the turn: even a caller that commits anyway gets -1
// and none of the turn, so a half-made transition never lands.
static void
test_error_fails_the_turn(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    int64_t plan = s_submit(l, s_plan_json, "alice", "key-1");
    REQUIRE(plan > 0);
    workplan_t *wp = NULL;
    wp_errors_t errs = {0};
    REQUIRE(workplan_parse(s_plan_json, strlen(s_plan_json), &wp, &errs)
            == 0);
    proto_task_state_t init[4] = {0};
    int64_t again = 0;
    uint64_t t;
    uint32_t n;
    REQUIRE(ledger_begin(l) == 0);
    CHECK_INT(ledger_task_lease(l, plan, "a", "i1", "drone-1", 0, 1, NOW, &t,
                                &n),
              LEDGER_OK);
    // Fails at its last statement, after the plan and task rows.
    CHECK_INT(ledger_plan_create(l, wp, "{}", "h", init, "alice", "key-1",
                                 NOW, &again), LEDGER_ERROR);
    workplan_destroy(&wp);
    CHECK_INT(ledger_commit(l), -1);
    CHECK(!ledger_in_turn(l));
    CHECK_INT(s_state(l, plan, "a"), PROTO_TASK_READY);
    proto_msg_t *m = proto_msg_new(PROTO_MSG_STATUS_OK);
    CHECK_INT(ledger_plans(l, 0, 0, &m->u.status_ok), LEDGER_OK);
    CHECK_INT(m->u.status_ok.n_plans, 1);
    proto_msg_destroy(&m);
    // The next turn starts clean.
    CHECK_INT(s_lease(l, plan, "a", "i1", NOW, NULL, NULL), LEDGER_OK);
    ledger_destroy(&l);
}

static void
test_idempotency_keys(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    int64_t plan = s_submit(l, s_plan_json, "alice", "key-1");
    REQUIRE(plan > 0);
    int64_t p = 0;
    char *hash = NULL;
    CHECK_INT(ledger_idem_get(l, "alice", "key-1", &p, &hash), LEDGER_OK);
    CHECK_INT(p, plan);
    CHECK_STR(hash, "hash-1");
    free(hash);
    hash = NULL;
    CHECK_INT(ledger_idem_get(l, "bob", "key-1", &p, &hash), LEDGER_MISS);
    CHECK_INT(ledger_idem_get(l, "alice", "key-2", &p, &hash), LEDGER_MISS);
    CHECK(hash == NULL);
    // The key is unique per submitter: storing it twice fails that turn.
    CHECK_INT(s_submit(l, s_plan_json, "alice", "key-1"), 0);
    CHECK_INT(s_submit(l, s_plan_json, "bob", "key-1") > plan, 1);
    ledger_destroy(&l);
    l = s_open();
    REQUIRE(l);
    CHECK_INT(ledger_idem_get(l, "alice", "key-1", &p, &hash), LEDGER_OK);
    CHECK_INT(p, plan);
    free(hash);
    ledger_destroy(&l);
}

static void
test_plans_newest_first_with_counts(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    int64_t p1 = s_submit(l, s_plan_json, "alice", NULL);
    int64_t p2 = s_submit(l, s_plan_json, NULL, NULL);
    REQUIRE(p1 > 0 && p2 > p1);
    CHECK_INT(s_lease(l, p2, "a", "i1", NOW, NULL, NULL), LEDGER_OK);
    proto_msg_t *m = proto_msg_new(PROTO_MSG_STATUS_OK);
    proto_status_ok_t *st = &m->u.status_ok;
    CHECK_INT(ledger_plans(l, 0, 0, st), LEDGER_OK);
    REQUIRE(st->n_plans == 2);
    CHECK_INT(st->plans[0].id, p2);
    CHECK(st->plans[0].submitted_by == NULL);
    CHECK_INT(st->plans[0].counts[PROTO_TASK_LEASED], 1);
    CHECK_INT(st->plans[0].counts[PROTO_TASK_READY], 0);
    CHECK_INT(st->plans[1].id, p1);
    CHECK_INT(st->plans[1].counts[PROTO_TASK_READY], 1);
    CHECK_INT(st->plans[1].counts[PROTO_TASK_WAITING], 3);
    proto_msg_destroy(&m);
    m = proto_msg_new(PROTO_MSG_STATUS_OK);
    // The newest one, and p1 too: it is still running.
    CHECK_INT(ledger_plans(l, 0, 1, &m->u.status_ok), LEDGER_OK);
    CHECK_INT(m->u.status_ok.n_plans, 2);
    CHECK_INT(m->u.status_ok.plans[0].id, p2);
    proto_msg_destroy(&m);
    m = proto_msg_new(PROTO_MSG_STATUS_OK);
    CHECK_INT(ledger_plans(l, 9999, 0, &m->u.status_ok), LEDGER_MISS);
    CHECK_INT(ledger_tasks(l, 9999, 0, PROTO_STATUS_TASK_OBJECTS, &m->u.status_ok), LEDGER_OK);
    CHECK_INT(m->u.status_ok.n_tasks, 0);
    proto_msg_destroy(&m);
    ledger_destroy(&l);
}

static void
s_error_len(void *arg, const ledger_attempt_row_t *row)
{
    size_t *len = arg;
    *len = row->error ? strlen(row->error) : 0;
}

// A drone's error text is "one sentence": a drone that sends megabytes of
// it must not make every STATUS page of the plan (and the ledger) that
// big.  It is cut to LEDGER_ERROR_MAX bytes on a character boundary, so
// what status sends stays valid UTF-8.
static void
test_error_text_capped(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    int64_t plan = s_submit(l, s_plan_json, "alice", NULL);
    uint64_t t;
    REQUIRE(s_lease(l, plan, "a", "i1", NOW, &t, NULL) == LEDGER_OK);
    // "é" (2 bytes) over and over from an odd offset: the cap falls in the
    // middle of one.
    size_t n = 1 << 20;
    char *big = xmalloc(n + 1);
    big[0] = 'x';
    for (size_t i = 1; i + 1 < n; i += 2) {
        big[i] = (char) 0xc3;
        big[i + 1] = (char) 0xa9;
    }
    big[n - 1] = 'x';
    big[n] = '\0';
    ledger_attempt_end_t end = s_fail_end;
    end.error = big;
    CHECK_INT(s_finish(l, plan, "a", t, "i1", &end, PROTO_TASK_READY, NOW),
              LEDGER_OK);
    free(big);
    proto_msg_t *m;
    proto_task_info_t ti = s_task(l, plan, "a", &m);
    REQUIRE(ti.last_error);
    size_t len = strlen(ti.last_error);
    CHECK(len <= LEDGER_ERROR_MAX && len >= LEDGER_ERROR_MAX - 3);
    // Ends on a whole character: the last byte is no lead byte, and the
    // text ends "é" or "x".
    CHECK((unsigned char) ti.last_error[len - 1] == 0xa9);
    proto_msg_destroy(&m);
    size_t alen = 0;
    CHECK_INT(ledger_attempts(l, plan, "a", s_error_len, &alen), LEDGER_OK);
    CHECK_INT(alen, len);
    ledger_destroy(&l);
}

// The overview lists the newest plans and, however old, every running
// one: a plan still at work never drops out of `status` because newer
// plans finished after it.
static void
test_overview_keeps_running_plans(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    int64_t old = s_submit(l, s_plan_json, "alice", NULL);
    int64_t p[3];
    for (int i = 0; i < 3; i++) {
        p[i] = s_submit(l, s_plan_json, "alice", NULL);
        REQUIRE(ledger_begin(l) == 0);
        CHECK_INT(ledger_plan_move(l, p[i], LEDGER_PLAN_RUNNING,
                                   LEDGER_PLAN_CANCELLED, "bob", NOW),
                  LEDGER_OK);
        CHECK_INT(ledger_commit(l), 0);
    }
    proto_msg_t *m = proto_msg_new(PROTO_MSG_STATUS_OK);
    proto_status_ok_t *st = &m->u.status_ok;
    CHECK_INT(ledger_plans(l, 0, 2, st), LEDGER_OK);
    REQUIRE(st->n_plans == 3);
    CHECK_INT(st->plans[0].id, p[2]);
    CHECK_INT(st->plans[1].id, p[1]);
    CHECK_INT(st->plans[2].id, old);
    CHECK_STR(st->plans[2].state, "running");
    proto_msg_destroy(&m);
    ledger_destroy(&l);
}

// The output of attempt `want` of task a, as a string ("" when none).
static ledger_rc_t
s_output(ledger_t *l, int64_t plan, const char *task, uint32_t want,
         bool err, char *buf, size_t len, uint32_t *got, bool *trunc)
{
    uint8_t *data = NULL;
    size_t n = 0;
    ledger_rc_t rc = ledger_task_output(l, plan, task, want, err, &data, &n,
                                        trunc, got);
    snprintf(buf, len, "%.*s", (int) n, data ? (const char *) data : "");
    free(data);
    return rc;
}

static void
test_task_output_accepted_latest_specific(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    int64_t plan = s_submit(l, s_plan_json, "alice", NULL);
    uint64_t t;
    char buf[64];
    uint32_t got = 0;
    bool trunc = false;
    CHECK_INT(s_output(l, plan, "a", 0, false, buf, sizeof buf, &got,
                       &trunc), LEDGER_MISS);
    CHECK_INT(s_lease(l, plan, "a", "i1", NOW, &t, NULL), LEDGER_OK);
    ledger_attempt_end_t e1 = s_fail_end;
    e1.out = (const uint8_t *) "one";
    e1.out_len = 3;
    e1.err = (const uint8_t *) "e1";
    e1.err_len = 2;
    e1.err_truncated = true;
    CHECK_INT(s_finish(l, plan, "a", t, "i1", &e1, PROTO_TASK_READY, 0),
              LEDGER_OK);
    CHECK_INT(s_lease(l, plan, "a", "i1", NOW, &t, NULL), LEDGER_OK);
    // No accepted attempt yet: the latest that ended, not the running one.
    CHECK_INT(s_output(l, plan, "a", 0, false, buf, sizeof buf, &got,
                       &trunc), LEDGER_OK);
    CHECK_STR(buf, "one");
    CHECK_INT(got, 1);
    ledger_attempt_end_t e2 = s_ok_end;
    e2.out = (const uint8_t *) "two";
    e2.out_len = 3;
    e2.out_truncated = true;
    CHECK_INT(s_finish(l, plan, "a", t, "i1", &e2, PROTO_TASK_SUCCEEDED, 0),
              LEDGER_OK);
    CHECK_INT(s_output(l, plan, "a", 0, false, buf, sizeof buf, &got,
                       &trunc), LEDGER_OK);
    CHECK_STR(buf, "two");
    CHECK_INT(got, 2);
    CHECK(trunc);
    CHECK_INT(s_output(l, plan, "a", 1, false, buf, sizeof buf, &got,
                       &trunc), LEDGER_OK);
    CHECK_STR(buf, "one");
    CHECK_INT(got, 1);
    CHECK(!trunc);
    CHECK_INT(s_output(l, plan, "a", 1, true, buf, sizeof buf, &got, &trunc),
              LEDGER_OK);
    CHECK_STR(buf, "e1");
    CHECK(trunc);
    CHECK_INT(s_output(l, plan, "a", 3, false, buf, sizeof buf, &got,
                       &trunc), LEDGER_MISS);
    CHECK_INT(s_output(l, plan, "nope", 0, false, buf, sizeof buf, &got,
                       &trunc), LEDGER_MISS);
    ledger_destroy(&l);
}

static void
test_lease_respects_not_before(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    int64_t plan = s_submit(l, s_plan_json, "alice", NULL);
    uint64_t t;
    CHECK_INT(s_lease(l, plan, "a", "i1", NOW, &t, NULL), LEDGER_OK);
    CHECK_INT(s_finish(l, plan, "a", t, "i1", &s_fail_end, PROTO_TASK_READY,
                       NOW + 1000), LEDGER_OK);
    s_load_t ld = {0};
    CHECK_INT(ledger_load(l, s_on_plan, s_on_task, &ld), LEDGER_OK);
    CHECK_INT(ld.a.not_before_ms, NOW + 1000);
    CHECK_INT(ld.a.attempts_used, 1);
    CHECK_INT(s_lease(l, plan, "a", "i1", NOW + 999, NULL, NULL),
              LEDGER_MISS);
    CHECK_INT(s_lease(l, plan, "a", "i1", NOW + 1000, NULL, NULL),
              LEDGER_OK);
    ledger_destroy(&l);
}

// A backoff can be shortened (a restart clamps it to the cap), never
// lengthened, and only while the task is ready; the lease follows.
static void
test_backoff_shortened(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    int64_t plan = s_submit(l, s_plan_json, "alice", NULL);
    uint64_t t;
    CHECK_INT(s_lease(l, plan, "a", "i1", NOW, &t, NULL), LEDGER_OK);
    CHECK_INT(s_finish(l, plan, "a", t, "i1", &s_fail_end, PROTO_TASK_READY,
                       NOW + 3600000), LEDGER_OK);
    int before = s_events(l, plan).n;
    REQUIRE(ledger_begin(l) == 0);
    CHECK_INT(ledger_task_backoff(l, plan, "a", NOW + 4000000, "broker",
                                  NOW), LEDGER_MISS);
    CHECK_INT(ledger_task_backoff(l, plan, "a", NOW + 500, "broker", NOW),
              LEDGER_OK);
    CHECK_INT(ledger_task_backoff(l, plan, "b", NOW, "broker", NOW),
              LEDGER_MISS);
    CHECK_INT(ledger_commit(l), 0);
    s_events_t ev = s_events(l, plan);
    CHECK_INT(ev.n, before + 1);
    CHECK_STR(ev.last_kind, "backoff");
    s_load_t ld = {0};
    CHECK_INT(ledger_load(l, s_on_plan, s_on_task, &ld), LEDGER_OK);
    CHECK_INT(ld.a.not_before_ms, NOW + 500);
    CHECK_INT(s_lease(l, plan, "a", "i1", NOW + 500, NULL, NULL), LEDGER_OK);
    ledger_destroy(&l);
}

typedef struct {
    int n;
    uint32_t last_n;
    ledger_attempt_outcome_t outcomes[4];
    int32_t exit_codes[4];
} s_attempts_t;

static void
s_on_attempt(void *arg, const ledger_attempt_row_t *row)
{
    s_attempts_t *a = arg;
    if (a->n < 4) {
        a->outcomes[a->n] = row->outcome;
        a->exit_codes[a->n] = row->has_exit_code ? row->exit_code : -99;
    }
    a->n++;
    a->last_n = row->n;
}

static void
test_attempts_in_order(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    int64_t plan = s_submit(l, s_plan_json, "alice", NULL);
    uint64_t t;
    CHECK_INT(s_lease(l, plan, "a", "i1", NOW, &t, NULL), LEDGER_OK);
    CHECK_INT(s_finish(l, plan, "a", t, "i1", &s_fail_end, PROTO_TASK_READY,
                       0), LEDGER_OK);
    CHECK_INT(s_lease(l, plan, "a", "i1", NOW, &t, NULL), LEDGER_OK);
    CHECK_INT(s_finish(l, plan, "a", t, "i1", &s_ok_end,
                       PROTO_TASK_SUCCEEDED, 0), LEDGER_OK);
    s_attempts_t a = {0};
    CHECK_INT(ledger_attempts(l, plan, "a", s_on_attempt, &a), LEDGER_OK);
    CHECK_INT(a.n, 2);
    CHECK_INT(a.last_n, 2);
    CHECK_INT(a.outcomes[0], LEDGER_ATTEMPT_FAILED);
    CHECK_INT(a.exit_codes[0], 3);
    CHECK_INT(a.outcomes[1], LEDGER_ATTEMPT_SUCCEEDED);
    CHECK_INT(a.exit_codes[1], 0);
    s_attempts_t all = {0};
    CHECK_INT(ledger_attempts(l, plan, NULL, s_on_attempt, &all), LEDGER_OK);
    CHECK_INT(all.n, 2);
    ledger_destroy(&l);
}

static void
test_plan_moves_and_load_plan(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    int64_t plan = s_submit(l, s_plan_json, "alice", NULL);
    uint64_t t;
    CHECK_INT(s_lease(l, plan, "a", "i1", NOW, &t, NULL), LEDGER_OK);
    CHECK_INT(s_finish(l, plan, "a", t, "i1", &s_ok_end,
                       PROTO_TASK_SUCCEEDED, 0), LEDGER_OK);
    REQUIRE(ledger_begin(l) == 0);
    CHECK_INT(ledger_plan_move(l, plan, LEDGER_PLAN_RUNNING,
                               LEDGER_PLAN_FAILED, "broker", NOW + 5),
              LEDGER_OK);
    CHECK_INT(ledger_plan_move(l, plan, LEDGER_PLAN_RUNNING,
                               LEDGER_PLAN_FAILED, "broker", NOW + 5),
              LEDGER_MISS);
    CHECK_INT(ledger_commit(l), 0);
    ledger_plan_state_t ps;
    CHECK_INT(ledger_plan_state(l, plan, &ps), LEDGER_OK);
    CHECK_INT(ps, LEDGER_PLAN_FAILED);
    CHECK_STR(ledger_plan_state_name(ps), "failed");
    CHECK_INT(ledger_plan_state(l, 9999, &ps), LEDGER_MISS);
    proto_msg_t *m = proto_msg_new(PROTO_MSG_STATUS_OK);
    CHECK_INT(ledger_plans(l, plan, 0, &m->u.status_ok), LEDGER_OK);
    CHECK_STR(m->u.status_ok.plans[0].state, "failed");
    CHECK_INT(m->u.status_ok.plans[0].finished_ms, NOW + 5);
    proto_msg_destroy(&m);
    // Only running plans are recovered; one plan loads in any state.
    s_load_t ld = {0};
    CHECK_INT(ledger_load(l, s_on_plan, s_on_task, &ld), LEDGER_OK);
    CHECK_INT(ld.plans, 0);
    CHECK_INT(ld.tasks, 0);
    CHECK_INT(ledger_load_plan(l, plan, s_on_plan, s_on_task, &ld),
              LEDGER_OK);
    CHECK_INT(ld.plans, 1);
    CHECK_STR(ld.order, "abcg");
    CHECK_INT(ld.a.state, PROTO_TASK_SUCCEEDED);
    CHECK_INT(ld.a.attempts_total, 1);
    CHECK_INT(ledger_load_plan(l, 9999, s_on_plan, s_on_task, &ld),
              LEDGER_MISS);
    uint32_t used;
    CHECK_INT(ledger_task_attempts_used(l, plan, "nope", &used),
              LEDGER_MISS);
    ledger_destroy(&l);
}

// ledger_load hands each running plan's rows right after the plan, so a
// loader never has to find which plan a row is for.
typedef struct {
    char seq[256];
    size_t len;
} s_order_t;

static void
s_order_plan(void *arg, int64_t plan, const char *json)
{
    s_order_t *o = arg;
    (void) json;
    o->len += (size_t) snprintf(o->seq + o->len, sizeof o->seq - o->len,
                                "P%lld ", (long long) plan);
}

static void
s_order_task(void *arg, const ledger_task_row_t *row)
{
    s_order_t *o = arg;
    o->len += (size_t) snprintf(o->seq + o->len, sizeof o->seq - o->len,
                                "%lld:%s ", (long long) row->plan, row->task);
}

static void
test_load_hands_tasks_after_their_plan(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    int64_t p1 = s_submit(l, s_plan_json, "alice", NULL);
    int64_t p2 = s_submit(l, "{\"name\": \"two\", \"tasks\": [{\"id\": \"x\","
                             " \"run\": [\"true\"]}]}", "alice", NULL);
    int64_t p3 = s_submit(l, s_plan_json, "alice", NULL);
    REQUIRE(p1 == 1 && p2 == 2 && p3 == 3);
    REQUIRE(ledger_begin(l) == 0);
    CHECK_INT(ledger_plan_move(l, p2, LEDGER_PLAN_RUNNING,
                               LEDGER_PLAN_FAILED, "op", NOW), LEDGER_OK);
    CHECK_INT(ledger_commit(l), 0);
    s_order_t o = {0};
    CHECK_INT(ledger_load(l, s_order_plan, s_order_task, &o), LEDGER_OK);
    CHECK_STR(o.seq, "P1 1:a 1:b 1:c 1:g P3 3:a 3:b 3:c 3:g ");
    ledger_destroy(&l);
}

static void
test_drone_seen_upserts(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    REQUIRE(ledger_begin(l) == 0);
    CHECK_INT(ledger_drone_seen(l, "i1", "drone-1", "h1", 4, "gpu", NULL, NOW),
              LEDGER_OK);
    CHECK_INT(ledger_drone_seen(l, "i1", "drone-1", "h1", 8, NULL, NULL, NOW + 1),
              LEDGER_OK);
    CHECK_INT(ledger_commit(l), 0);
    ledger_destroy(&l);
}

static void
test_drone_secret_kept_and_replaced(void)
{
    static const char h1[] = "aa11aa11aa11aa11aa11aa11aa11aa11"
                             "aa11aa11aa11aa11aa11aa11aa11aa11";
    static const char h2[] = "bb22";
    char hash[65] = "";
    ledger_t *l = s_open();
    REQUIRE(l);
    CHECK_INT(ledger_drone_secret(l, "i1", hash), LEDGER_MISS);
    REQUIRE(ledger_begin(l) == 0);
    CHECK_INT(ledger_drone_seen(l, "i1", "d", "h", 1, NULL, NULL, NOW),
              LEDGER_OK);
    CHECK_INT(ledger_commit(l), 0);
    // A row without a secret has none to give.
    CHECK_INT(ledger_drone_secret(l, "i1", hash), LEDGER_MISS);
    REQUIRE(ledger_begin(l) == 0);
    CHECK_INT(ledger_drone_seen(l, "i1", "d", "h", 1, NULL, h1, NOW + 1),
              LEDGER_OK);
    // NULL keeps what is stored.
    CHECK_INT(ledger_drone_seen(l, "i1", "d", "h", 2, NULL, NULL, NOW + 2),
              LEDGER_OK);
    CHECK_INT(ledger_commit(l), 0);
    ledger_destroy(&l);
    l = s_open();
    REQUIRE(l);
    CHECK_INT(ledger_drone_secret(l, "i1", hash), LEDGER_OK);
    CHECK_STR(hash, h1);
    REQUIRE(ledger_begin(l) == 0);
    CHECK_INT(ledger_drone_seen(l, "i1", "d", "h", 2, NULL, h2, NOW + 3),
              LEDGER_OK);
    CHECK_INT(ledger_commit(l), 0);
    CHECK_INT(ledger_drone_secret(l, "i1", hash), LEDGER_OK);
    CHECK_STR(hash, h2);
    CHECK_INT(ledger_drone_secret(l, "i2", hash), LEDGER_MISS);
    ledger_destroy(&l);
}

static uint32_t
s_lost(ledger_t *l, int64_t plan, const char *task)
{
    uint32_t n = 999;
    CHECK_INT(ledger_task_lost_leases(l, plan, task, &n), LEDGER_OK);
    return n;
}

// lost_leases counts with the finish that says so, whatever the outcome,
// survives a reopen, reaches the loader, and a retry clears it.
static void
test_lost_leases_counted(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    int64_t plan = s_submit(l, s_plan_json, "alice", NULL);
    REQUIRE(plan > 0);
    CHECK_INT(s_lost(l, plan, "a"), 0);
    uint64_t tok;
    ledger_attempt_end_t forgiven = {.outcome = LEDGER_ATTEMPT_RELEASED,
                                     .lost = true};
    REQUIRE(s_lease(l, plan, "a", "i1", NOW, &tok, NULL) == LEDGER_OK);
    CHECK_INT(s_finish(l, plan, "a", tok, NULL, &forgiven, PROTO_TASK_READY,
                       0), LEDGER_OK);
    CHECK_INT(s_lost(l, plan, "a"), 1);
    CHECK_INT(s_used(l, plan, "a"), 0);
    // An ordinary expiry or failure does not count.
    REQUIRE(s_lease(l, plan, "a", "i1", NOW, &tok, NULL) == LEDGER_OK);
    CHECK_INT(s_finish(l, plan, "a", tok, NULL, &s_expired_end,
                       PROTO_TASK_READY, 0), LEDGER_OK);
    CHECK_INT(s_lost(l, plan, "a"), 1);
    ledger_attempt_end_t lost_again = s_expired_end;
    lost_again.lost = true;
    REQUIRE(s_lease(l, plan, "a", "i1", NOW, &tok, NULL) == LEDGER_OK);
    // A refused compare-and-set counts nothing.
    CHECK_INT(s_finish(l, plan, "a", tok + 1, NULL, &lost_again,
                       PROTO_TASK_DEAD, 0), LEDGER_MISS);
    CHECK_INT(s_lost(l, plan, "a"), 1);
    CHECK_INT(s_finish(l, plan, "a", tok, NULL, &lost_again, PROTO_TASK_DEAD,
                       0), LEDGER_OK);
    ledger_destroy(&l);
    l = s_open();
    REQUIRE(l);
    CHECK_INT(s_lost(l, plan, "a"), 2);
    s_load_t ld = {0};
    CHECK_INT(ledger_load(l, s_on_plan, s_on_task, &ld), LEDGER_OK);
    CHECK_INT(ld.a.lost_leases, 2);
    REQUIRE(ledger_begin(l) == 0);
    CHECK_INT(ledger_task_reset(l, plan, "a", PROTO_TASK_DEAD,
                                PROTO_TASK_READY, "op", NOW), LEDGER_OK);
    CHECK_INT(ledger_commit(l), 0);
    CHECK_INT(s_lost(l, plan, "a"), 0);
    uint32_t n;
    CHECK_INT(ledger_task_lost_leases(l, plan, "nope", &n), LEDGER_MISS);
    ledger_destroy(&l);
}

// A 20k-task chain in one turn (one statement per table, reused).  100k
// takes about 1.5 s here, but a minute and a half under valgrind.
static void
test_big_plan(void)
{
    enum { N = 20000 };
    size_t cap = (size_t) N * 64 + 64, len = 0;
    char *json = xmalloc(cap);
    len += (size_t) snprintf(json, cap, "{\"name\": \"big\", \"tasks\": [");
    for (int i = 0; i < N; i++) {
        len += (size_t) snprintf(json + len, cap - len,
                                 i ? ",{\"id\": \"t%d\", \"needs\": [\"t%d\"],"
                                     " \"run\": [\"true\"]}"
                                   : "{\"id\": \"t%d\", \"run\": [\"true\"]}",
                                 i, i - 1);
    }
    snprintf(json + len, cap - len, "]}");
    ledger_t *l = s_open();
    REQUIRE(l);
    int64_t plan = s_submit(l, json, "alice", NULL);
    free(json);
    REQUIRE(plan > 0);
    proto_msg_t *m = proto_msg_new(PROTO_MSG_STATUS_OK);
    proto_status_ok_t *st = &m->u.status_ok;
    CHECK_INT(ledger_plans(l, plan, 0, st), LEDGER_OK);
    CHECK_INT(st->plans[0].counts[PROTO_TASK_READY], 1);
    CHECK_INT(st->plans[0].counts[PROTO_TASK_WAITING], N - 1);
    // All in one page here (test_tasks_in_pages covers the paging).
    CHECK_INT(ledger_tasks(l, plan, 0,
                           (size_t) N * (PROTO_TASK_INFO_OBJECTS + 1), st),
              LEDGER_OK);
    REQUIRE(st->n_tasks == N);
    CHECK_STR(st->tasks[N - 1].id, "t19999");
    REQUIRE(st->tasks[N - 1].needs.count == 1);
    CHECK_STR(st->tasks[N - 1].needs.items[0], "t19998");
    proto_msg_destroy(&m);
    ledger_destroy(&l);
}

// A page of tasks stays within its object budget (one task at least), the
// pages together are the whole plan in order with each task's needs, and
// `more` is false only on the last.
static void
test_tasks_in_pages(void)
{
    // t0..t5; t3 needs t0, t1, t2 (a page of its own with a budget of 25).
    const char *json =
        "{\"name\": \"paged\", \"tasks\": ["
        "{\"id\": \"t0\", \"run\": [\"true\"]},"
        "{\"id\": \"t1\", \"run\": [\"true\"]},"
        "{\"id\": \"t2\", \"run\": [\"true\"]},"
        "{\"id\": \"t3\", \"needs\": [\"t0\", \"t1\", \"t2\"],"
        " \"run\": [\"true\"]},"
        "{\"id\": \"t4\", \"needs\": [\"t3\"], \"run\": [\"true\"]},"
        "{\"id\": \"t5\", \"run\": [\"true\"]}]}";
    ledger_t *l = s_open();
    REQUIRE(l);
    int64_t plan = s_submit(l, json, "alice", NULL);
    REQUIRE(plan > 0);
    // Budget 2 tasks' worth: pages {t0,t1}, {t2}, {t3}, {t4}, {t5}.
    size_t budget = 2 * PROTO_TASK_INFO_OBJECTS;
    const int want_sizes[] = {2, 1, 1, 1, 1};
    uint32_t first = 0;
    for (int page = 0; page < 5; page++) {
        proto_msg_t *m = proto_msg_new(PROTO_MSG_STATUS_OK);
        proto_status_ok_t *st = &m->u.status_ok;
        CHECK_INT(ledger_tasks(l, plan, first, budget, st), LEDGER_OK);
        CHECK_INT(st->n_tasks, want_sizes[page]);
        CHECK_INT(st->more, page < 4);
        char want[8];
        snprintf(want, sizeof want, "t%u", first);
        if (st->n_tasks > 0) {
            CHECK_STR(st->tasks[0].id, want);
        }
        if (first == 3 && st->n_tasks == 1) {
            CHECK_INT(st->tasks[0].needs.count, 3);
            CHECK_STR(st->tasks[0].needs.items[2], "t2");
        }
        first += (uint32_t) st->n_tasks;
        proto_msg_destroy(&m);
    }
    CHECK_INT(first, 6);
    proto_msg_t *m = proto_msg_new(PROTO_MSG_STATUS_OK);
    CHECK_INT(ledger_tasks(l, plan, 99, budget, &m->u.status_ok), LEDGER_OK);
    CHECK_INT(m->u.status_ok.n_tasks, 0);
    CHECK(!m->u.status_ok.more);
    proto_msg_destroy(&m);
    ledger_destroy(&l);
}

typedef struct {
    char json[2048];
    char order[16];
    char states[16][24];
} s_amended_t;

static void
s_keep_plan(void *arg, int64_t plan, const char *json)
{
    (void) plan;
    snprintf(((s_amended_t *) arg)->json, 2048, "%s", json ? json : "");
}

static void
s_keep_task(void *arg, const ledger_task_row_t *row)
{
    s_amended_t *a = arg;
    size_t n = strlen(a->order);
    if (n < sizeof a->order - 1) {
        a->order[n] = row->task[0];
        snprintf(a->states[n], sizeof a->states[n], "%s",
                 proto_task_state_name(row->state));
    }
}

// What an amendment writes: new rows (that need each other) after the
// plan's, a redefined task with its new edges and a fresh budget, the
// stored workplan — all in one turn, read back after a reopen; a rolled
// back turn leaves nothing.
static void
test_amend_rows(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    int64_t plan = s_submit(l, s_plan_json, "alice", NULL);
    REQUIRE(plan > 0);
    const char *amended =
        "{\"name\": \"demo\", \"tasks\": ["
        "{\"id\": \"a\", \"run\": [\"echo\", \"a\"]},"
        "{\"id\": \"b\", \"needs\": [\"y\"], \"gate\": \"ok?\"},"
        "{\"id\": \"c\", \"needs\": [\"a\", \"b\"], \"run\": [\"true\"]},"
        "{\"id\": \"g\", \"needs\": [\"c\"], \"gate\": \"ship it?\"},"
        "{\"id\": \"x\", \"needs\": [\"y\"], \"run\": [\"true\"]},"
        "{\"id\": \"y\", \"needs\": [\"a\"], \"run\": [\"true\"]}]}";
    workplan_t *wp = NULL;
    wp_errors_t errs = {0};
    REQUIRE(workplan_parse(amended, strlen(amended), &wp, &errs) == 0);
    char *canon = workplan_to_json(wp);
    proto_task_state_t st[6] = {0, 0, 0, 0, PROTO_TASK_WAITING,
                                PROTO_TASK_WAITING};
    // A turn rolled back changes nothing.
    CHECK_INT(ledger_begin(l), 0);
    CHECK_INT(ledger_plan_add_tasks(l, plan, wp, 4, st, "bob", NOW),
              LEDGER_OK);
    ledger_rollback(l);
    CHECK_INT(ledger_begin(l), 0);
    CHECK_INT(ledger_plan_add_tasks(l, plan, wp, 4, st, "bob", NOW),
              LEDGER_OK);
    CHECK_INT(ledger_task_redefine(l, plan, &wp->tasks[1],
                                   PROTO_TASK_WAITING, PROTO_TASK_WAITING,
                                   "bob", NOW), LEDGER_OK);
    // Only from the state it is in.
    CHECK_INT(ledger_task_redefine(l, plan, &wp->tasks[2],
                                   PROTO_TASK_READY, PROTO_TASK_WAITING,
                                   "bob", NOW), LEDGER_MISS);
    CHECK_INT(ledger_plan_set_workplan(l, plan, canon, strlen(canon)), 0);
    CHECK_INT(ledger_plan_set_workplan(l, plan + 99, canon, strlen(canon)),
              -1);
    CHECK_INT(ledger_commit(l), 0);
    ledger_destroy(&l);
    l = s_open();
    REQUIRE(l);
    s_amended_t got = {0};
    CHECK_INT(ledger_load(l, s_keep_plan, s_keep_task, &got), LEDGER_OK);
    CHECK_STR(got.json, canon);
    CHECK_STR(got.order, "abcgxy");
    CHECK_STR(got.states[4], "waiting");
    // b's edges were rewritten: status lists its new need.
    proto_status_ok_t page = {0};
    CHECK_INT(ledger_tasks(l, plan, 1, 1000, &page), LEDGER_OK);
    REQUIRE(page.n_tasks >= 1);
    CHECK_STR(page.tasks[0].id, "b");
    CHECK_STR(page.tasks[0].kind, "gate");
    CHECK_INT(page.tasks[0].needs.count, 1);
    CHECK_STR(page.tasks[0].needs.items[0], "y");
    // A gate now: no attempt budget.  An added task gets its budget and,
    // waiting, no ready time yet.
    CHECK_INT(page.tasks[0].attempt_budget, 0);
    REQUIRE(page.n_tasks >= 4);
    CHECK_STR(page.tasks[3].id, "x");
    CHECK_INT(page.tasks[3].attempt_budget, 3);
    CHECK_INT(page.tasks[3].ready_ms, 0);
    proto_msg_t *m = proto_msg_new(PROTO_MSG_STATUS_OK);
    m->u.status_ok = page;
    proto_msg_destroy(&m);
    free(canon);
    workplan_destroy(&wp);
    ledger_destroy(&l);
}

// The plans with a lease in a window, in any state, each once: what a
// restarted broker refills --model-rpm from.  A plan whose leases are all
// older is left out; so is everything before since_ms.
static void
test_recent_plans(void)
{
    ledger_t *l = s_open();
    REQUIRE(l);
    int64_t old = s_submit(l, s_plan_json, "alice", NULL);
    int64_t one = s_submit(l, s_plan_json, "alice", NULL);
    int64_t two = s_submit(l, s_plan_json, "alice", NULL);
    CHECK_INT(s_lease(l, old, "a", "i1", NOW - 90000, NULL, NULL), LEDGER_OK);
    CHECK_INT(s_lease(l, two, "a", "i1", NOW - 500, NULL, NULL), LEDGER_OK);
    CHECK_INT(s_lease(l, one, "a", "i1", NOW - 100, NULL, NULL), LEDGER_OK);
    REQUIRE(ledger_begin(l) == 0);
    CHECK_INT(ledger_plan_move(l, two, LEDGER_PLAN_RUNNING,
                               LEDGER_PLAN_CANCELLED, "op", NOW),
              LEDGER_OK);
    REQUIRE(ledger_commit(l) == 0);
    int64_t *ids = NULL;
    size_t n = 0;
    CHECK_INT(ledger_recent_plans(l, NOW - 60000, &ids, &n), LEDGER_OK);
    CHECK_INT(n, 2);
    if (n == 2) {
        CHECK_INT(ids[0], one);
        CHECK_INT(ids[1], two);
    }
    free(ids);
    CHECK_INT(ledger_recent_plans(l, NOW, &ids, &n), LEDGER_OK);
    CHECK_INT(n, 0);
    CHECK(ids == NULL);
    ledger_destroy(&l);
}

static const t_case_t t_cases[] = {
    T(test_create_and_reopen),
    T(test_new_ledger_is_private),
    T(test_tasks_in_pages),
    T(test_error_text_capped),
    T(test_overview_keeps_running_plans),
    T(test_status_reads_survive_reopen),
    T(test_task_times_and_attempt_number),
    T(test_lease_finish_succeeded),
    T(test_stale_results_change_nothing),
    T(test_token_lookup_tells_duplicates),
    T(test_attempt_numbers_from_memory_checked),
    T(test_racing_results_one_wins),
    T(test_retry_fresh_budget_tokens_grow),
    T(test_set_workplan),
    T(test_release_uses_no_attempt),
    T(test_events_one_per_transition),
    T(test_events_batched_per_turn),
    T(test_lock_names_the_holder),
    T(test_rdonly_while_locked),
    T(test_newer_schema_refused),
    T(test_not_a_ledger_refused),
    T(test_failed_commit_rolls_back_the_turn),
    T(test_error_fails_the_turn),
    T(test_idempotency_keys),
    T(test_plans_newest_first_with_counts),
    T(test_task_output_accepted_latest_specific),
    T(test_lease_respects_not_before),
    T(test_backoff_shortened),
    T(test_attempts_in_order),
    T(test_plan_moves_and_load_plan),
    T(test_load_hands_tasks_after_their_plan),
    T(test_drone_seen_upserts),
    T(test_drone_secret_kept_and_replaced),
    T(test_lost_leases_counted),
    T(test_big_plan),
    T(test_amend_rows),
    T(test_recent_plans),
    {0},
};

T_MAIN(t_cases)
