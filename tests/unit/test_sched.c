// test_sched: readiness, cascades, picking, backoff, leases and reasons of
// the pure scheduler, on workplans built by hand.
#include "broker/sched.h"

#include "common/xalloc.h"
#include "tests/harness/t.h"

#define NONE SIZE_MAX

// --- building workplans -------------------------------------------------

// n run tasks named t0..t<n-1>, needing nothing.  Every string and array is
// allocated, as workplan_parse would, so workplan_destroy frees it all.
static workplan_t *
s_wp(size_t n)
{
    workplan_t *wp = xcalloc(1, sizeof *wp);
    wp->name = xstrdup("test");
    wp->tasks = xcalloc(n, sizeof *wp->tasks);
    wp->n_tasks = n;
    for (size_t i = 0; i < n; i++) {
        wp_task_t *t = &wp->tasks[i];
        t->id = xasprintf("t%zu", i);
        t->kind = WP_KIND_RUN;
        t->argv = xcalloc(1, sizeof *t->argv);
        t->argv[0] = xstrdup("true");
        t->n_argv = 1;
        t->timeout_s = WORKPLAN_DEFAULT_TIMEOUT_S;
        t->retries = WORKPLAN_DEFAULT_RETRIES;
    }
    return wp;
}

// Renames task i; call before anything needs it.
static void
s_id(workplan_t *wp, size_t i, const char *id)
{
    free(wp->tasks[i].id);
    wp->tasks[i].id = xstrdup(id);
}

// Task i needs task j.
static void
s_need(workplan_t *wp, size_t i, size_t j)
{
    wp_task_t *t = &wp->tasks[i];
    t->needs = xrealloc(t->needs, (t->n_needs + 1) * sizeof *t->needs);
    t->need_idx =
        xrealloc(t->need_idx, (t->n_needs + 1) * sizeof *t->need_idx);
    t->needs[t->n_needs] = xstrdup(wp->tasks[j].id);
    t->need_idx[t->n_needs++] = j;
}

static void
s_require(workplan_t *wp, size_t i, const char *tag)
{
    wp_task_t *t = &wp->tasks[i];
    t->requires =
        xrealloc(t->requires, (t->n_requires + 1) * sizeof *t->requires);
    t->requires[t->n_requires++] = xstrdup(tag);
}

static void
s_gate(workplan_t *wp, size_t i)
{
    wp_task_t *t = &wp->tasks[i];
    free(t->argv[0]);
    free(t->argv);
    t->argv = NULL;
    t->n_argv = 0;
    t->kind = WP_KIND_GATE;
    t->gate = xstrdup("go ahead?");
}

// --- driving sched like the broker does ---------------------------------

static void
s_add(sched_t *s, int64_t plan, workplan_t *wp)
{
    proto_task_state_t *st = xcalloc(wp->n_tasks, sizeof *st);
    sched_initial_states(wp, st);
    sched_plan_add(s, plan, &wp, st);
    CHECK(wp == NULL);
    free(st);
}

// Applies proposed moves, as the broker does after its ledger commit.
static void
s_apply(sched_t *s, sched_moves_t *m)
{
    for (size_t i = 0; i < m->count; i++) {
        const sched_move_t *mv = &m->items[i];
        CHECK_INT(sched_get(s, mv->plan, mv->idx), mv->from);
        sched_set(s, mv->plan, mv->idx, mv->to, 0);
    }
    sched_moves_release(m);
}

// Task idx ends in state st; whatever follows is applied.
static void
s_finish(sched_t *s, int64_t plan, size_t idx, proto_task_state_t st)
{
    sched_moves_t m = {0};
    sched_set(s, plan, idx, st, 0);
    sched_cascade(s, plan, idx, &m);
    s_apply(s, &m);
}

// The move for idx in m, or NULL.
static const sched_move_t *
s_move_of(const sched_moves_t *m, size_t idx)
{
    for (size_t i = 0; i < m->count; i++) {
        if (m->items[i].idx == idx) {
            return &m->items[i];
        }
    }
    return NULL;
}

static void
s_check_move(const sched_moves_t *m, size_t idx, proto_task_state_t from,
             proto_task_state_t to)
{
    const sched_move_t *mv = s_move_of(m, idx);
    CHECK(mv != NULL);
    if (mv) {
        CHECK_INT(mv->from, from);
        CHECK_INT(mv->to, to);
    }
}

// Picks for a drone with tags and leases the task; NONE if nothing.
static size_t
s_take(sched_t *s, const char *const *tags, size_t n_tags, int64_t now_ms,
       int64_t *plan)
{
    int64_t p = 0;
    size_t idx = NONE;
    if (sched_pick(s, tags, n_tags, now_ms, &p, &idx) != 0) {
        return NONE;
    }
    sched_set(s, p, idx, PROTO_TASK_LEASED, 0);
    if (plan) {
        *plan = p;
    }
    return idx;
}

// --- tests --------------------------------------------------------------

static void
test_initial_states(void)
{
    workplan_t *wp = s_wp(4);
    s_gate(wp, 1);
    s_need(wp, 2, 0);
    s_gate(wp, 3);
    s_need(wp, 3, 2);
    sched_t *s = sched_new();
    s_add(s, 7, wp);
    CHECK_INT(sched_get(s, 7, 0), PROTO_TASK_READY);
    CHECK_INT(sched_get(s, 7, 1), PROTO_TASK_AWAITING_APPROVAL);
    CHECK_INT(sched_get(s, 7, 2), PROTO_TASK_WAITING);
    CHECK_INT(sched_get(s, 7, 3), PROTO_TASK_WAITING);
    CHECK(sched_has_plan(s, 7));
    CHECK(!sched_has_plan(s, 8));
    CHECK(sched_workplan(s, 7) != NULL);
    CHECK(sched_workplan(s, 8) == NULL);
    CHECK_INT(sched_get(s, 8, 0), PROTO_TASK__COUNT);
    bool all = true;
    CHECK(!sched_plan_done(s, 7, &all));
    CHECK(!sched_plan_done(s, 8, &all));
    sched_destroy(&s);
    CHECK(s == NULL);
    sched_destroy(&s);
}

static void
test_plans_list(void)
{
    sched_t *s = sched_new();
    int64_t *ids = NULL;
    CHECK_INT(sched_plans(s, &ids), 0);
    free(ids);
    s_add(s, 30, s_wp(1));
    s_add(s, 10, s_wp(2));
    s_add(s, 20, s_wp(3));
    REQUIRE(sched_plans(s, &ids) == 3);
    CHECK_INT(ids[0], 10);
    CHECK_INT(ids[1], 20);
    CHECK_INT(ids[2], 30);
    free(ids);
    sched_plan_remove(s, 20);
    sched_plan_remove(s, 99);
    REQUIRE(sched_plans(s, &ids) == 2);
    CHECK_INT(ids[0], 10);
    CHECK_INT(ids[1], 30);
    free(ids);
    CHECK_INT(sched_workplan(s, 10)->n_tasks, 2);
    sched_destroy(&s);
}

// a; b<a; c<a; d<b,c (d lists b twice).
static workplan_t *
s_diamond(void)
{
    workplan_t *wp = s_wp(4);
    s_need(wp, 1, 0);
    s_need(wp, 2, 0);
    s_need(wp, 3, 1);
    s_need(wp, 3, 2);
    s_need(wp, 3, 1);
    return wp;
}

static void
test_diamond_success(void)
{
    sched_t *s = sched_new();
    s_add(s, 1, s_diamond());
    sched_moves_t m = {0};
    sched_set(s, 1, 0, PROTO_TASK_LEASED, 0);
    sched_set(s, 1, 0, PROTO_TASK_SUCCEEDED, 0);
    sched_cascade(s, 1, 0, &m);
    CHECK_INT(m.count, 2);
    s_check_move(&m, 1, PROTO_TASK_WAITING, PROTO_TASK_READY);
    s_check_move(&m, 2, PROTO_TASK_WAITING, PROTO_TASK_READY);
    s_apply(s, &m);
    sched_set(s, 1, 1, PROTO_TASK_SUCCEEDED, 0);
    sched_cascade(s, 1, 1, &m);
    CHECK_INT(m.count, 0);
    sched_moves_release(&m);
    sched_set(s, 1, 2, PROTO_TASK_SUCCEEDED, 0);
    sched_cascade(s, 1, 2, &m);
    CHECK_INT(m.count, 1);
    s_check_move(&m, 3, PROTO_TASK_WAITING, PROTO_TASK_READY);
    s_apply(s, &m);
    bool all = false;
    CHECK(!sched_plan_done(s, 1, &all));
    s_finish(s, 1, 3, PROTO_TASK_SUCCEEDED);
    CHECK(sched_plan_done(s, 1, &all));
    CHECK(all);
    sched_destroy(&s);
}

static void
test_gate_after_success(void)
{
    workplan_t *wp = s_wp(2);
    s_gate(wp, 1);
    s_need(wp, 1, 0);
    sched_t *s = sched_new();
    s_add(s, 1, wp);
    sched_moves_t m = {0};
    sched_set(s, 1, 0, PROTO_TASK_SUCCEEDED, 0);
    sched_cascade(s, 1, 0, &m);
    CHECK_INT(m.count, 1);
    s_check_move(&m, 1, PROTO_TASK_WAITING, PROTO_TASK_AWAITING_APPROVAL);
    s_apply(s, &m);
    int64_t plan;
    CHECK_INT(s_take(s, NULL, 0, 0, &plan), NONE);
    sched_destroy(&s);
}

static void
test_failure_blocks(void)
{
    // a; b<a; c<b; d<c; e; f<e.
    workplan_t *wp = s_wp(6);
    s_need(wp, 1, 0);
    s_need(wp, 2, 1);
    s_need(wp, 3, 2);
    s_need(wp, 5, 4);
    sched_t *s = sched_new();
    s_add(s, 1, wp);
    sched_moves_t m = {0};
    sched_set(s, 1, 0, PROTO_TASK_DEAD, 0);
    sched_cascade(s, 1, 0, &m);
    CHECK_INT(m.count, 3);
    for (size_t i = 1; i <= 3; i++) {
        s_check_move(&m, i, PROTO_TASK_WAITING, PROTO_TASK_BLOCKED);
    }
    CHECK(s_move_of(&m, 4) == NULL && s_move_of(&m, 5) == NULL);
    s_apply(s, &m);
    CHECK_INT(sched_get(s, 1, 4), PROTO_TASK_READY);
    CHECK_INT(sched_get(s, 1, 5), PROTO_TASK_WAITING);
    bool all = true;
    CHECK(!sched_plan_done(s, 1, &all));
    s_finish(s, 1, 4, PROTO_TASK_SUCCEEDED);
    CHECK_INT(sched_get(s, 1, 5), PROTO_TASK_READY);
    s_finish(s, 1, 5, PROTO_TASK_SUCCEEDED);
    CHECK(sched_plan_done(s, 1, &all));
    CHECK(!all);
    sched_destroy(&s);
}

// Tasks per state, kept as they move: what status reports for a loaded
// plan without counting the ledger's rows.
static void
test_plan_counts(void)
{
    workplan_t *wp = s_wp(6);
    s_need(wp, 1, 0);
    s_need(wp, 2, 1);
    s_need(wp, 3, 2);
    s_need(wp, 5, 4);
    sched_t *s = sched_new();
    uint32_t c[PROTO_TASK__COUNT];
    CHECK(!sched_plan_counts(s, 1, c));
    s_add(s, 1, wp);
    REQUIRE(sched_plan_counts(s, 1, c));
    CHECK_INT(c[PROTO_TASK_READY], 2);
    CHECK_INT(c[PROTO_TASK_WAITING], 4);
    sched_set(s, 1, 0, PROTO_TASK_LEASED, 0);
    s_finish(s, 1, 0, PROTO_TASK_DEAD);
    s_finish(s, 1, 4, PROTO_TASK_SUCCEEDED);
    REQUIRE(sched_plan_counts(s, 1, c));
    CHECK_INT(c[PROTO_TASK_DEAD], 1);
    CHECK_INT(c[PROTO_TASK_BLOCKED], 3);
    CHECK_INT(c[PROTO_TASK_SUCCEEDED], 1);
    CHECK_INT(c[PROTO_TASK_READY], 1);
    CHECK_INT(c[PROTO_TASK_WAITING] + c[PROTO_TASK_LEASED], 0);
    sched_plan_remove(s, 1);
    CHECK(!sched_plan_counts(s, 1, c));
    sched_destroy(&s);
}

static void
test_failure_blocks_diamond_once(void)
{
    sched_t *s = sched_new();
    s_add(s, 1, s_diamond());
    sched_moves_t m = {0};
    sched_set(s, 1, 0, PROTO_TASK_REJECTED, 0);
    sched_cascade(s, 1, 0, &m);
    CHECK_INT(m.count, 3);
    s_apply(s, &m);
    // A second failure into an already blocked join proposes nothing.
    sched_cascade(s, 1, 0, &m);
    CHECK_INT(m.count, 0);
    sched_moves_release(&m);
    sched_destroy(&s);
}

static void
test_retry(void)
{
    // a; b<a; c<b; u; w<b,u; k<u; x<a.
    workplan_t *wp = s_wp(7);
    size_t a = 0, b = 1, c = 2, u = 3, w = 4, k = 5, x = 6;
    s_need(wp, b, a);
    s_need(wp, c, b);
    s_need(wp, w, b);
    s_need(wp, w, u);
    s_need(wp, k, u);
    s_need(wp, x, a);
    sched_t *s = sched_new();
    s_add(s, 1, wp);
    sched_moves_t m = {0};
    sched_cancel(s, 1, x, &m);
    s_apply(s, &m);
    s_finish(s, 1, a, PROTO_TASK_DEAD);
    CHECK_INT(sched_get(s, 1, w), PROTO_TASK_BLOCKED);
    CHECK_INT(sched_get(s, 1, x), PROTO_TASK_CANCELLED);
    s_finish(s, 1, u, PROTO_TASK_DEAD);
    CHECK_INT(sched_get(s, 1, k), PROTO_TASK_BLOCKED);

    // w stays blocked: u is still dead.  x stays cancelled; k untouched.
    CHECK_INT(sched_retry(s, 1, a, &m), 0);
    CHECK_INT(m.count, 3);
    s_check_move(&m, a, PROTO_TASK_DEAD, PROTO_TASK_READY);
    s_check_move(&m, b, PROTO_TASK_BLOCKED, PROTO_TASK_WAITING);
    s_check_move(&m, c, PROTO_TASK_BLOCKED, PROTO_TASK_WAITING);
    s_apply(s, &m);

    CHECK_INT(sched_retry(s, 1, u, &m), 0);
    CHECK_INT(m.count, 3);
    s_check_move(&m, u, PROTO_TASK_DEAD, PROTO_TASK_READY);
    s_check_move(&m, w, PROTO_TASK_BLOCKED, PROTO_TASK_WAITING);
    s_check_move(&m, k, PROTO_TASK_BLOCKED, PROTO_TASK_WAITING);
    s_apply(s, &m);

    // Not retryable: ready, waiting, succeeded.
    CHECK_INT(sched_retry(s, 1, a, &m), -1);
    CHECK_INT(sched_retry(s, 1, b, &m), -1);
    s_finish(s, 1, a, PROTO_TASK_SUCCEEDED);
    CHECK_INT(sched_retry(s, 1, a, &m), -1);
    CHECK_INT(m.count, 0);
    CHECK_INT(sched_retry(s, 99, a, &m), -1);
    // A cancelled task whose needs have succeeded comes back ready.
    CHECK_INT(sched_retry(s, 1, x, &m), 0);
    s_check_move(&m, x, PROTO_TASK_CANCELLED, PROTO_TASK_READY);
    s_apply(s, &m);
    sched_destroy(&s);
}

static void
test_retry_waits_and_gates(void)
{
    // a; g<a (gate); c<g.
    workplan_t *wp = s_wp(3);
    s_gate(wp, 1);
    s_need(wp, 1, 0);
    s_need(wp, 2, 1);
    sched_t *s = sched_new();
    s_add(s, 1, wp);
    sched_moves_t m = {0};
    sched_cancel(s, 1, 1, &m);
    CHECK_INT(m.count, 2);
    s_check_move(&m, 1, PROTO_TASK_WAITING, PROTO_TASK_CANCELLED);
    s_check_move(&m, 2, PROTO_TASK_WAITING, PROTO_TASK_BLOCKED);
    s_apply(s, &m);
    // Its need has not succeeded: back to waiting, and c with it.
    CHECK_INT(sched_retry(s, 1, 1, &m), 0);
    s_check_move(&m, 1, PROTO_TASK_CANCELLED, PROTO_TASK_WAITING);
    s_check_move(&m, 2, PROTO_TASK_BLOCKED, PROTO_TASK_WAITING);
    s_apply(s, &m);
    s_finish(s, 1, 0, PROTO_TASK_SUCCEEDED);
    CHECK_INT(sched_get(s, 1, 1), PROTO_TASK_AWAITING_APPROVAL);
    s_finish(s, 1, 1, PROTO_TASK_REJECTED);
    CHECK_INT(sched_get(s, 1, 2), PROTO_TASK_BLOCKED);
    CHECK_INT(sched_retry(s, 1, 1, &m), 0);
    s_check_move(&m, 1, PROTO_TASK_REJECTED, PROTO_TASK_AWAITING_APPROVAL);
    s_apply(s, &m);
    sched_destroy(&s);
}

static void
test_cancel_plan(void)
{
    sched_t *s = sched_new();
    s_add(s, 1, s_wp(5));
    sched_set(s, 1, 0, PROTO_TASK_SUCCEEDED, 0);
    sched_set(s, 1, 1, PROTO_TASK_LEASED, 0);
    sched_set(s, 1, 2, PROTO_TASK_WAITING, 0);
    sched_set(s, 1, 4, PROTO_TASK_DEAD, 0);
    sched_moves_t m = {0};
    sched_cancel(s, 1, NONE, &m);
    CHECK_INT(m.count, 3);
    s_check_move(&m, 1, PROTO_TASK_LEASED, PROTO_TASK_CANCELLED);
    s_check_move(&m, 2, PROTO_TASK_WAITING, PROTO_TASK_CANCELLED);
    s_check_move(&m, 3, PROTO_TASK_READY, PROTO_TASK_CANCELLED);
    s_apply(s, &m);
    bool all = true;
    CHECK(sched_plan_done(s, 1, &all));
    CHECK(!all);
    CHECK_INT(s_take(s, NULL, 0, 0, NULL), NONE);
    sched_cancel(s, 2, NONE, &m);
    CHECK_INT(m.count, 0);
    sched_destroy(&s);
}

static void
test_cancel_task(void)
{
    // a; b<a; c<b; d.
    workplan_t *wp = s_wp(4);
    s_need(wp, 1, 0);
    s_need(wp, 2, 1);
    sched_t *s = sched_new();
    s_add(s, 1, wp);
    sched_moves_t m = {0};
    sched_cancel(s, 1, 1, &m);
    CHECK_INT(m.count, 2);
    s_check_move(&m, 1, PROTO_TASK_WAITING, PROTO_TASK_CANCELLED);
    s_check_move(&m, 2, PROTO_TASK_WAITING, PROTO_TASK_BLOCKED);
    s_apply(s, &m);
    sched_cancel(s, 1, 1, &m);
    CHECK_INT(m.count, 0);
    // A ready task cancelled leaves the ready queue.
    sched_cancel(s, 1, 3, &m);
    CHECK_INT(m.count, 1);
    s_apply(s, &m);
    CHECK_INT(s_take(s, NULL, 0, 0, NULL), 0);
    CHECK_INT(s_take(s, NULL, 0, 0, NULL), NONE);
    sched_destroy(&s);
}

static void
test_priority_order(void)
{
    workplan_t *wp = s_wp(5);
    int64_t prio[] = {1, 5, 3, 5, -2};
    for (size_t i = 0; i < 5; i++) {
        wp->tasks[i].priority = prio[i];
    }
    sched_t *s = sched_new();
    s_add(s, 1, wp);
    size_t want[] = {1, 3, 2, 0, 4};
    for (size_t i = 0; i < 5; i++) {
        CHECK_INT(s_take(s, NULL, 0, 0, NULL), want[i]);
    }
    CHECK_INT(s_take(s, NULL, 0, 0, NULL), NONE);
    // A task handed back is ready again and first by priority.
    sched_set(s, 1, 3, PROTO_TASK_READY, 0);
    sched_set(s, 1, 0, PROTO_TASK_READY, 0);
    CHECK_INT(s_take(s, NULL, 0, 0, NULL), 3);
    sched_destroy(&s);
}

static void
test_priority_across_plans(void)
{
    workplan_t *lo = s_wp(3), *hi = s_wp(2);
    hi->tasks[1].priority = 9;
    sched_t *s = sched_new();
    s_add(s, 1, lo);
    s_add(s, 2, hi);
    int64_t plan = 0;
    CHECK_INT(s_take(s, NULL, 0, 0, &plan), 1);
    CHECK_INT(plan, 2);
    // Same priority now: plan 1 comes next in round-robin order.
    CHECK_INT(s_take(s, NULL, 0, 0, &plan), 0);
    CHECK_INT(plan, 1);
    CHECK_INT(s_take(s, NULL, 0, 0, &plan), 0);
    CHECK_INT(plan, 2);
    sched_destroy(&s);
}

static void
test_round_robin(void)
{
    sched_t *s = sched_new();
    s_add(s, 1, s_wp(1000));
    s_add(s, 2, s_wp(3));
    size_t next[3] = {0, 0, 0};
    for (size_t i = 0; i < 6; i++) {
        int64_t plan = 0;
        size_t idx = s_take(s, NULL, 0, 0, &plan);
        CHECK_INT(plan, i % 2 ? 2 : 1);
        CHECK_INT(idx, next[plan]++);
    }
    for (size_t i = 0; i < 997; i++) {
        int64_t plan = 0;
        size_t idx = s_take(s, NULL, 0, 0, &plan);
        CHECK_INT(plan, 1);
        CHECK_INT(idx, next[1]++);
    }
    CHECK_INT(s_take(s, NULL, 0, 0, NULL), NONE);
    sched_destroy(&s);
}

static void
test_round_robin_skips_removed(void)
{
    sched_t *s = sched_new();
    s_add(s, 1, s_wp(4));
    s_add(s, 2, s_wp(4));
    s_add(s, 3, s_wp(4));
    int64_t plan = 0;
    s_take(s, NULL, 0, 0, &plan);
    CHECK_INT(plan, 1);
    s_take(s, NULL, 0, 0, &plan);
    CHECK_INT(plan, 2);
    sched_plan_remove(s, 2);
    s_take(s, NULL, 0, 0, &plan);
    CHECK_INT(plan, 3);
    s_take(s, NULL, 0, 0, &plan);
    CHECK_INT(plan, 1);
    sched_destroy(&s);
}

static void
test_age_order(void)
{
    workplan_t *wp = s_wp(6);
    s_need(wp, 1, 0);
    sched_t *s = sched_new();
    s_add(s, 1, wp);
    size_t want[] = {0, 2, 3};
    for (size_t i = 0; i < 3; i++) {
        CHECK_INT(s_take(s, NULL, 0, 0, NULL), want[i]);
    }
    // t1 becomes ready late but is older than t4 and t5.
    s_finish(s, 1, 0, PROTO_TASK_SUCCEEDED);
    CHECK_INT(s_take(s, NULL, 0, 0, NULL), 1);
    CHECK_INT(s_take(s, NULL, 0, 0, NULL), 4);
    sched_destroy(&s);
}

static void
test_requires_tags(void)
{
    workplan_t *wp = s_wp(5);
    wp->tasks[0].priority = 10;
    s_require(wp, 0, "gpu");
    s_require(wp, 3, "linux");
    s_require(wp, 3, "gpu");
    s_require(wp, 4, "gpu");
    s_require(wp, 4, "linux");
    s_require(wp, 4, "gpu");
    sched_t *s = sched_new();
    s_add(s, 1, wp);
    const char *cpu[] = {"cpu"};
    const char *gpu[] = {"cpu", "gpu"};
    const char *both[] = {"linux", "gpu"};
    CHECK_INT(s_take(s, cpu, 1, 0, NULL), 1);
    CHECK_INT(s_take(s, cpu, 1, 0, NULL), 2);
    CHECK_INT(s_take(s, cpu, 1, 0, NULL), NONE);
    CHECK_INT(s_take(s, NULL, 0, 0, NULL), NONE);
    CHECK_INT(s_take(s, gpu, 2, 0, NULL), 0);
    CHECK_INT(s_take(s, gpu, 2, 0, NULL), NONE);
    CHECK_INT(s_take(s, both, 2, 0, NULL), 3);
    CHECK_INT(s_take(s, both, 2, 0, NULL), 4);
    sched_destroy(&s);
}

static void
test_backoff(void)
{
    sched_t *s = sched_new();
    s_add(s, 1, s_wp(2));
    sched_set(s, 1, 0, PROTO_TASK_READY, 5000);
    CHECK_INT(sched_not_before(s, 1, 0), 5000);
    CHECK_INT(sched_next_ready_ms(s, 1000), 5000);
    CHECK_INT(s_take(s, NULL, 0, 1000, NULL), 1);
    CHECK_INT(s_take(s, NULL, 0, 1000, NULL), NONE);
    CHECK_INT(s_take(s, NULL, 0, 4999, NULL), NONE);
    CHECK_INT(sched_next_ready_ms(s, 4999), 5000);
    CHECK_INT(s_take(s, NULL, 0, 5000, NULL), 0);
    CHECK_INT(sched_next_ready_ms(s, 5000), -1);
    CHECK_INT(sched_not_before(s, 1, 0), 0);

    // Only backoff ends after now count; a task due but not yet picked
    // does not hide a later one.
    sched_set(s, 1, 0, PROTO_TASK_READY, 6000);
    sched_set(s, 1, 1, PROTO_TASK_READY, 9000);
    CHECK_INT(sched_next_ready_ms(s, 7000), 9000);
    CHECK_INT(sched_next_ready_ms(s, 9000), -1);
    // Leaving ready while in backoff leaves the backoff heap.
    sched_set(s, 1, 1, PROTO_TASK_CANCELLED, 0);
    CHECK_INT(sched_next_ready_ms(s, 0), 6000);
    CHECK_INT(s_take(s, NULL, 0, 8000, NULL), 0);
    CHECK_INT(sched_next_ready_ms(s, 0), -1);
    sched_destroy(&s);
}

static void
test_backoff_plan_removed(void)
{
    sched_t *s = sched_new();
    s_add(s, 1, s_wp(3));
    s_add(s, 2, s_wp(3));
    for (size_t i = 0; i < 3; i++) {
        sched_set(s, 1, i, PROTO_TASK_READY, 100 + (int64_t) i);
        sched_set(s, 2, i, PROTO_TASK_READY, 50 + (int64_t) i);
    }
    CHECK_INT(sched_next_ready_ms(s, 0), 50);
    sched_plan_remove(s, 2);
    CHECK_INT(sched_next_ready_ms(s, 0), 100);
    int64_t plan = 0;
    CHECK_INT(s_take(s, NULL, 0, 1000, &plan), 0);
    CHECK_INT(plan, 1);
    sched_destroy(&s);
}

static sched_lease_t
s_lease(uint64_t token, int64_t plan, size_t idx, const char *inst,
        int64_t deadline_ms)
{
    sched_lease_t l = {.token = token, .plan = plan, .idx = idx,
                       .deadline_ms = deadline_ms};
    snprintf(l.instance, sizeof l.instance, "%s", inst);
    return l;
}

// Three leases: tokens 1, 2 (instance d1) and 3 (d2), deadlines 100..300.
static sched_t *
s_three_leases(void)
{
    sched_t *s = sched_new();
    sched_lease_t l[] = {s_lease(1, 5, 0, "d1", 100),
                         s_lease(2, 5, 1, "d1", 200),
                         s_lease(3, 6, 0, "d2", 300)};
    for (size_t i = 0; i < 3; i++) {
        sched_lease_add(s, &l[i]);
    }
    return s;
}

static void
test_leases_table(void)
{
    sched_t *s = s_three_leases();
    const sched_lease_t *g = sched_lease_get(s, 2);
    REQUIRE(g != NULL);
    CHECK_INT(g->plan, 5);
    CHECK_INT(g->idx, 1);
    CHECK_STR(g->instance, "d1");
    CHECK(sched_lease_get(s, 99) == NULL);
    CHECK_INT(sched_lease_count_of(s, "d1"), 2);
    CHECK_INT(sched_lease_count_of(s, "d2"), 1);
    CHECK_INT(sched_lease_count_of(s, "d3"), 0);
    sched_lease_t *out = NULL;
    CHECK_INT(sched_leases_of(s, "d1", &out), 2);
    CHECK_INT(out[0].token, 1);
    CHECK_INT(out[1].token, 2);
    free(out);
    const sched_lease_t *t = sched_lease_of_task(s, 6, 0);
    REQUIRE(t != NULL);
    CHECK_INT(t->token, 3);
    CHECK(sched_lease_of_task(s, 6, 1) == NULL);

    sched_lease_remove(s, 2);
    sched_lease_remove(s, 99);
    CHECK(sched_lease_get(s, 2) == NULL);
    CHECK_INT(sched_lease_count_of(s, "d1"), 1);
    sched_lease_remove(s, 1);
    CHECK_INT(sched_lease_count_of(s, "d1"), 0);
    CHECK_INT(sched_leases_of(s, "d1", &out), 0);
    free(out);
    CHECK_INT(sched_lease_get(s, 3)->token, 3);
    sched_lease_remove(s, 3);
    CHECK_INT(sched_next_deadline_ms(s), -1);
    sched_destroy(&s);
}

static void
test_leases_confirmed(void)
{
    sched_t *s = s_three_leases();
    sched_lease_t c = s_lease(4, 6, 1, "d1", 400);
    c.confirmed = true;
    sched_lease_add(s, &c);
    CHECK_INT(sched_lease_count_of(s, "d1"), 3);
    CHECK_INT(sched_unconfirmed_of(s, "d1"), 2);
    CHECK_INT(sched_unconfirmed_of(s, "d2"), 1);
    CHECK_INT(sched_unconfirmed_of(s, "d3"), 0);
    CHECK(sched_lease_confirm(s, 1));
    CHECK(!sched_lease_confirm(s, 1));   // once
    CHECK(!sched_lease_confirm(s, 4));   // confirmed when added
    CHECK(!sched_lease_confirm(s, 99));  // unknown
    CHECK(sched_lease_get(s, 1)->confirmed);
    CHECK_INT(sched_unconfirmed_of(s, "d1"), 1);
    sched_lease_remove(s, 2);            // the unconfirmed one
    CHECK_INT(sched_unconfirmed_of(s, "d1"), 0);
    sched_lease_remove(s, 1);
    sched_lease_remove(s, 4);
    CHECK_INT(sched_unconfirmed_of(s, "d1"), 0);
    CHECK_INT(sched_lease_count_of(s, "d1"), 0);
    // Renewing and shifting keep the flag.
    sched_lease_renew(s, 3, 900);
    sched_leases_shift(s, 10);
    CHECK(!sched_lease_get(s, 3)->confirmed);
    CHECK_INT(sched_unconfirmed_of(s, "d2"), 1);
    sched_destroy(&s);
}

static void
test_leases_deadlines(void)
{
    sched_t *s = s_three_leases();
    sched_lease_t *out = NULL;
    sched_lease_renew(s, 1, 250);
    sched_lease_renew(s, 99, 1);
    CHECK_INT(sched_next_deadline_ms(s), 200);
    CHECK_INT(sched_leases_expired(s, 199, &out), 0);
    free(out);
    CHECK_INT(sched_leases_expired(s, 200, &out), 1);
    CHECK_INT(out[0].token, 2);
    free(out);
    CHECK_INT(sched_leases_expired(s, 250, &out), 2);
    CHECK_INT(out[0].token, 2);
    CHECK_INT(out[1].token, 1);
    free(out);
    sched_leases_shift(s, 100);
    CHECK_INT(sched_next_deadline_ms(s), 300);
    CHECK_INT(sched_lease_get(s, 3)->deadline_ms, 400);

    // Renewals stop at the backstop; a shift moves both.
    sched_lease_t l4 = s_lease(4, 7, 0, "d3", 100);
    l4.hard_deadline_ms = 500;
    sched_lease_add(s, &l4);
    sched_lease_renew(s, 4, 900);
    CHECK_INT(sched_lease_get(s, 4)->deadline_ms, 500);
    sched_leases_shift(s, 50);
    CHECK_INT(sched_lease_get(s, 4)->deadline_ms, 550);
    CHECK_INT(sched_lease_get(s, 4)->hard_deadline_ms, 550);
    sched_destroy(&s);
}

static void
test_leases_many(void)
{
    enum { N = 5000, INSTS = 37 };
    sched_t *s = sched_new();
    for (uint64_t i = 0; i < N; i++) {
        char inst[16];
        snprintf(inst, sizeof inst, "drone-%u", (unsigned) (i % INSTS));
        sched_lease_t l = s_lease(i * 7919 + 1, 1, i, inst, (int64_t) i);
        sched_lease_add(s, &l);
    }
    // Remove every token with an odd index, in a scattered order.
    for (uint64_t k = 0; k < N; k++) {
        uint64_t i = (k * 2503) % N;
        if (i % 2) {
            sched_lease_remove(s, i * 7919 + 1);
        }
    }
    size_t bad = 0;
    for (uint64_t i = 0; i < N; i++) {
        const sched_lease_t *l = sched_lease_get(s, i * 7919 + 1);
        bad += (i % 2) ? l != NULL : (!l || l->idx != i);
    }
    CHECK_INT(bad, 0);
    size_t total = 0;
    for (unsigned j = 0; j < INSTS; j++) {
        char inst[16];
        snprintf(inst, sizeof inst, "drone-%u", j);
        total += sched_lease_count_of(s, inst);
    }
    CHECK_INT(total, N / 2);
    CHECK_INT(sched_next_deadline_ms(s), 0);
    sched_destroy(&s);
}

// CHECKs the reason for task idx of plan 1 (NULL: none) and frees it.
static void
s_check_reason(const sched_t *s, size_t idx, const char *const *const *tags,
               const size_t *n_tags, size_t n_drones, int64_t now_ms,
               const char *want)
{
    char *r = sched_waiting_reason(s, 1, idx, tags, n_tags, n_drones, now_ms);
    if (want) {
        CHECK_STR(r, want);
    } else {
        CHECK(r == NULL);
    }
    free(r);
}

static void
test_reason_waiting(void)
{
    // a..e; j<a..e.
    workplan_t *wp = s_wp(6);
    const char *ids[] = {"a", "b", "c", "d", "e", "j"};
    for (size_t i = 0; i < 6; i++) {
        s_id(wp, i, ids[i]);
    }
    for (size_t i = 0; i < 5; i++) {
        s_need(wp, 5, i);
    }
    sched_t *s = sched_new();
    s_add(s, 1, wp);
    s_check_reason(s, 5, NULL, NULL, 0, 0,
                   "waiting for 'a', 'b', 'c' and 2 more");
    s_finish(s, 1, 0, PROTO_TASK_SUCCEEDED);
    s_finish(s, 1, 1, PROTO_TASK_SUCCEEDED);
    s_check_reason(s, 5, NULL, NULL, 0, 0, "waiting for 'c', 'd', 'e'");
    s_finish(s, 1, 3, PROTO_TASK_SUCCEEDED);
    s_check_reason(s, 5, NULL, NULL, 0, 0, "waiting for 'c', 'e'");
    CHECK(sched_waiting_reason(s, 2, 0, NULL, NULL, 0, 0) == NULL);
    sched_destroy(&s);
}

static void
test_reason_ready(void)
{
    // r; g (requires gpu); h (requires gpu, linux).
    workplan_t *wp = s_wp(3);
    s_require(wp, 1, "gpu");
    s_require(wp, 2, "linux");
    s_require(wp, 2, "gpu");
    sched_t *s = sched_new();
    s_add(s, 1, wp);
    const char *cpu[] = {"cpu"}, *gpu[] = {"gpu"}, *lnx[] = {"linux"};
    const char *gl[] = {"linux", "x", "gpu"};
    const char *const *d1[] = {cpu}, *const *d2[] = {gpu, lnx};
    const char *const *d3[] = {cpu, gl};
    size_t n1[] = {1}, n2[] = {1, 1}, n3[] = {1, 3};
    s_check_reason(s, 0, NULL, NULL, 0, 0, "no connected drones");
    s_check_reason(s, 0, d1, n1, 1, 0, NULL);
    s_check_reason(s, 1, d1, n1, 1, 0, "no connected drone offers 'gpu'");
    s_check_reason(s, 2, d1, n1, 1, 0,
                   "no connected drone offers 'gpu', 'linux'");
    s_check_reason(s, 1, d2, n2, 2, 0, NULL);
    s_check_reason(s, 2, d2, n2, 2, 0,
                   "no connected drone offers all of 'gpu', 'linux'");
    s_check_reason(s, 2, d3, n3, 2, 0, NULL);

    sched_set(s, 1, 0, PROTO_TASK_READY, 12500);
    s_check_reason(s, 0, d1, n1, 1, 10000, "in backoff for 3 s");
    s_check_reason(s, 0, d1, n1, 1, 12500, NULL);
    sched_set(s, 1, 0, PROTO_TASK_LEASED, 0);
    s_check_reason(s, 0, d1, n1, 1, 0, NULL);
    sched_destroy(&s);
}

enum { BIG = 100000 };

static void
test_big_chain(void)
{
    workplan_t *wp = s_wp(BIG);
    for (size_t i = 1; i < BIG; i++) {
        s_need(wp, i, i - 1);
    }
    sched_t *s = sched_new();
    s_add(s, 1, wp);
    // Failure at the root blocks the whole chain in one walk; retry undoes it.
    sched_moves_t m = {0};
    sched_set(s, 1, 0, PROTO_TASK_DEAD, 0);
    sched_cascade(s, 1, 0, &m);
    CHECK_INT(m.count, BIG - 1);
    s_apply(s, &m);
    CHECK_INT(sched_get(s, 1, BIG - 1), PROTO_TASK_BLOCKED);
    CHECK_INT(sched_retry(s, 1, 0, &m), 0);
    CHECK_INT(m.count, BIG);
    s_apply(s, &m);
    CHECK_INT(sched_get(s, 1, BIG - 1), PROTO_TASK_WAITING);
    size_t done = 0;
    for (size_t idx; (idx = s_take(s, NULL, 0, 0, NULL)) != NONE; done++) {
        CHECK_INT(idx, done);
        s_finish(s, 1, idx, PROTO_TASK_SUCCEEDED);
    }
    CHECK_INT(done, BIG);
    bool all = false;
    CHECK(sched_plan_done(s, 1, &all));
    CHECK(all);
    sched_destroy(&s);
}

static void
test_big_fanout(void)
{
    workplan_t *wp = s_wp(BIG + 1);
    for (size_t i = 1; i <= BIG; i++) {
        s_need(wp, i, 0);
    }
    sched_t *s = sched_new();
    s_add(s, 1, wp);
    sched_moves_t m = {0};
    CHECK_INT(s_take(s, NULL, 0, 0, NULL), 0);
    sched_set(s, 1, 0, PROTO_TASK_SUCCEEDED, 0);
    sched_cascade(s, 1, 0, &m);
    CHECK_INT(m.count, BIG);
    s_apply(s, &m);
    size_t n = 0, bad = 0;
    for (size_t idx; (idx = s_take(s, NULL, 0, 0, NULL)) != NONE; n++) {
        bad += idx != n + 1;
        sched_set(s, 1, idx, PROTO_TASK_SUCCEEDED, 0);
    }
    CHECK_INT(bad, 0);
    CHECK_INT(n, BIG);
    bool all = false;
    CHECK(sched_plan_done(s, 1, &all));
    CHECK(all);
    sched_destroy(&s);
}

static void
test_big_unrunnable_top(void)
{
    // The best half of a 100k plan needs a tag nobody offers; picking the
    // rest must not rescan it each time.
    workplan_t *wp = s_wp(BIG);
    for (size_t i = 0; i < BIG / 2; i++) {
        wp->tasks[i].priority = 10;
        s_require(wp, i, "gpu");
    }
    sched_t *s = sched_new();
    s_add(s, 1, wp);
    size_t bad = 0;
    for (size_t i = 0; i < BIG / 2; i++) {
        bad += s_take(s, NULL, 0, 0, NULL) != BIG / 2 + i;
    }
    CHECK_INT(bad, 0);
    CHECK_INT(s_take(s, NULL, 0, 0, NULL), NONE);
    const char *gpu[] = {"gpu"};
    CHECK_INT(s_take(s, gpu, 1, 0, NULL), 0);
    sched_destroy(&s);
}

// --- picking against a brute-force model of the rule -------------------

enum { OP = 3, OT = 40 };

typedef struct {
    proto_task_state_t state[OP][OT];
    int64_t nb[OP][OT];
    int64_t prio[OP][OT];
    unsigned req[OP][OT];        // bit 0: gpu, bit 1: linux
    int64_t last;                // plan served last, -1 = none
} s_model_t;

static uint64_t s_rng = 88172645463325252ULL;

static unsigned
s_rand(unsigned n)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return (unsigned) (s_rng % n);
}

// The spec, literally: scan everything, keep the best.
static bool
s_model_pick(const s_model_t *md, unsigned tags, int64_t now, int64_t *plan,
             size_t *idx)
{
    bool found = false;
    int64_t best = 0;
    for (int64_t k = 0; k < OP; k++) {
        int64_t p = (md->last + 1 + k) % OP;
        for (size_t i = 0; i < OT; i++) {
            if (md->state[p][i] != PROTO_TASK_READY || md->nb[p][i] > now
                || (md->req[p][i] & ~tags) != 0) {
                continue;
            }
            if (!found || md->prio[p][i] > best) {
                found = true;
                best = md->prio[p][i];
                *plan = p;
                *idx = i;
            }
        }
    }
    return found;
}

static int64_t
s_model_next(const s_model_t *md, int64_t now)
{
    int64_t best = -1;
    for (size_t p = 0; p < OP; p++) {
        for (size_t i = 0; i < OT; i++) {
            int64_t nb = md->nb[p][i];
            if (md->state[p][i] == PROTO_TASK_READY && nb > now
                && (best < 0 || nb < best)) {
                best = nb;
            }
        }
    }
    return best;
}

static void
s_model_init(sched_t *s, s_model_t *md)
{
    const char *names[] = {"gpu", "linux"};
    for (int64_t p = 0; p < OP; p++) {
        workplan_t *wp = s_wp(OT);
        for (size_t i = 0; i < OT; i++) {
            md->prio[p][i] = wp->tasks[i].priority = s_rand(4);
            md->req[p][i] = s_rand(6) < 4 ? 0 : 1 + s_rand(3);
            for (unsigned b = 0; b < 2; b++) {
                if (md->req[p][i] & (1u << b)) {
                    s_require(wp, i, names[b]);
                }
            }
            md->state[p][i] = PROTO_TASK_READY;
        }
        s_add(s, p, wp);
    }
    md->last = -1;
}

static void
test_pick_matches_model(void)
{
    sched_t *s = sched_new();
    s_model_t md = {0};
    s_model_init(s, &md);
    const char *all[] = {"gpu", "linux"};
    int64_t now = 1000;
    size_t bad = 0;
    for (int step = 0; step < 20000; step++) {
        now += s_rand(20);
        int64_t p = s_rand(OP);
        size_t i = s_rand(OT);
        if (s_rand(3) == 0) {
            md.state[p][i] = s_rand(2) ? PROTO_TASK_READY : PROTO_TASK_LEASED;
            bool later = md.state[p][i] == PROTO_TASK_READY && s_rand(2);
            md.nb[p][i] = later ? now + s_rand(200) : 0;
            sched_set(s, p, i, md.state[p][i], md.nb[p][i]);
            continue;
        }
        unsigned tags = s_rand(4);
        const char *t[2];
        size_t n = 0;
        for (unsigned b = 0; b < 2; b++) {
            if (tags & (1u << b)) {
                t[n++] = all[b];
            }
        }
        bad += sched_next_ready_ms(s, now) != s_model_next(&md, now);
        int64_t wp = -1, gp = -1;
        size_t wi = NONE, gi = NONE;
        bool want = s_model_pick(&md, tags, now, &wp, &wi);
        bool got = sched_pick(s, t, n, now, &gp, &gi) == 0;
        bad += want != got || wp != gp || wi != gi;
        if (got) {
            md.last = gp;
            md.state[gp][gi] = PROTO_TASK_LEASED;
            md.nb[gp][gi] = 0;
            sched_set(s, gp, gi, PROTO_TASK_LEASED, 0);
        }
    }
    CHECK_INT(bad, 0);
    sched_destroy(&s);
}

// sched_describe: one canonical text for one state, whatever the heaps
// look like inside; broken invariants are named.
static void
test_describe(void)
{
    sched_t *s = sched_new();
    workplan_t *wp = s_wp(4);
    s_need(wp, 1, 0);
    s_require(wp, 2, "gpu");
    s_add(s, 7, wp);
    sched_set(s, 7, 3, PROTO_TASK_READY, 5000);
    sched_set(s, 7, 0, PROTO_TASK_LEASED, 0);
    sched_lease_t l = {.token = 9, .plan = 7, .idx = 0, .deadline_ms = 100,
                       .hard_deadline_ms = 200};
    snprintf(l.instance, sizeof l.instance, "i1");
    sched_lease_add(s, &l);
    static const char want[] =
        "sched: 1 plans\n"
        "plan 7 'test': 4 tasks, 0 terminal, 0 succeeded\n"
        "  task 0 't0' leased\n"
        "  task 1 't1' waiting pending 1\n"
        "  task 2 't2' ready\n"
        "  task 3 't3' ready not_before 5000\n"
        "  group 0 [] ready: 3\n"
        "  group 1 [gpu] ready: 2\n"
        "lease 9 plan 7 task 't0' instance i1 backstop\n";
    char *text = sched_describe(s);
    CHECK_STR(text, want);
    free(text);
    // A pick after the backoff ended moves t3 between heaps, a renewal
    // moves a deadline: neither is state.
    int64_t plan;
    size_t idx;
    CHECK_INT(sched_pick(s, NULL, 0, 6000, &plan, &idx), 0);
    sched_lease_renew(s, 9, 150);
    text = sched_describe(s);
    CHECK_STR(text, want);
    free(text);
    // A lease for a task that is not leased is named.
    l.token = 10;
    l.idx = 2;
    sched_lease_add(s, &l);
    text = sched_describe(s);
    CHECK_HAS(text, "BROKEN: lease 10 is not of a leased task");
    CHECK_HAS(text, "BROKEN: 1 leased tasks, 2 leases");
    free(text);
    sched_destroy(&s);
}

// --- holding tasks back (model limits) --------------------------------

static bool
s_hold_group_x(void *arg, int64_t plan, size_t idx)
{
    const size_t *held = arg;
    (void) plan;
    return idx == *held;
}

static bool
s_lease_of_plan_7(void *arg, const sched_lease_t *l)
{
    (void) arg;
    return l->plan == 7;
}

// A held task is passed over with the rest of its requires group; the next
// best task of another group is picked; nothing held, it is picked again.
static void
test_pick_if_holds(void)
{
    sched_t *s = sched_new();
    workplan_t *wp = s_wp(3);
    s_require(wp, 0, "x");        // best: workplan order, alone in group [x]
    s_require(wp, 1, "x");        // behind it in the same group
    s_add(s, 7, wp);
    const char *tags[] = {"x"};
    int64_t plan;
    size_t idx, held = 0;
    CHECK_INT(sched_pick_if(s, tags, 1, 0, s_hold_group_x, &held, &plan,
                            &idx), 0);
    CHECK_INT(idx, 2);
    held = 2;
    CHECK_INT(sched_pick_if(s, tags, 1, 0, s_hold_group_x, &held, &plan,
                            &idx), 0);
    CHECK_INT(idx, 0);
    CHECK_INT(sched_pick_if(s, tags, 1, 0, NULL, NULL, &plan, &idx), 0);
    CHECK_INT(idx, 0);
    // Holding the only candidate leaves nothing to pick.
    const char *none[] = {"y"};
    held = 2;
    CHECK_INT(sched_pick_if(s, none, 1, 0, s_hold_group_x, &held, &plan,
                            &idx), -1);
    sched_lease_t l = {.token = 5, .plan = 7, .idx = 0, .instance = "i1"};
    sched_lease_add(s, &l);
    l = (sched_lease_t){.token = 6, .plan = 8, .idx = 0, .instance = "i2"};
    sched_lease_add(s, &l);
    CHECK_INT(sched_lease_count_if(s, s_lease_of_plan_7, NULL), 1);
    sched_destroy(&s);
}

// --- amendments --------------------------------------------------------------

// t0 dead, t1 (needs t0) blocked, t2 (needs t1) blocked, t3 succeeded,
// t4 (needs t3) waiting in a plan amended with t5 (needs t3) and t6 (needs
// t5 and t4); t1 replaced to need t5 instead, t4 cancelled.
static void
test_amend_states(void)
{
    workplan_t *wp = s_wp(7);
    s_need(wp, 1, 5);
    s_need(wp, 2, 1);
    s_need(wp, 4, 3);
    s_need(wp, 5, 3);
    s_need(wp, 6, 5);
    s_need(wp, 6, 4);
    s_gate(wp, 6);
    proto_task_state_t st[7] = {PROTO_TASK_DEAD, PROTO_TASK_BLOCKED,
                                PROTO_TASK_BLOCKED, PROTO_TASK_SUCCEEDED,
                                PROTO_TASK_CANCELLED, PROTO_TASK_WAITING,
                                PROTO_TASK_WAITING};
    bool fresh[7] = {false, true, false, false, false, true, true};
    sched_amend_states(wp, fresh, st);
    CHECK_INT(st[0], PROTO_TASK_DEAD);        // finished: kept
    CHECK_INT(st[5], PROTO_TASK_READY);       // its need succeeded
    CHECK_INT(st[1], PROTO_TASK_WAITING);     // routed around t0
    CHECK_INT(st[2], PROTO_TASK_WAITING);     // unblocked with t1
    CHECK_INT(st[4], PROTO_TASK_CANCELLED);
    CHECK_INT(st[6], PROTO_TASK_BLOCKED);     // needs a cancelled task
    // With both its needs succeeded, the gate waits for a person.
    st[4] = PROTO_TASK_SUCCEEDED;
    st[5] = PROTO_TASK_SUCCEEDED;
    fresh[5] = false;
    sched_amend_states(wp, fresh, st);
    CHECK_INT(st[6], PROTO_TASK_AWAITING_APPROVAL);
    workplan_destroy(&wp);
}

// Swapping a plan's DAG keeps its leases and the backoff of a task that
// kept its state; the new tasks are picked.
static void
test_plan_swap(void)
{
    sched_t *s = sched_new();
    workplan_t *wp = s_wp(3);
    s_add(s, 1, wp);
    sched_lease_t l = {.token = 9, .plan = 1, .idx = 0, .instance = "i",
                       .deadline_ms = 100};
    sched_set(s, 1, 0, PROTO_TASK_LEASED, 0);
    sched_lease_add(s, &l);
    sched_set(s, 1, 1, PROTO_TASK_READY, 5000);    // in backoff
    workplan_t *amended = s_wp(5);
    s_need(amended, 4, 3);
    proto_task_state_t st[5] = {PROTO_TASK_LEASED, PROTO_TASK_READY,
                                PROTO_TASK_READY, PROTO_TASK_READY,
                                PROTO_TASK_WAITING};
    sched_plan_swap(s, 1, &amended, st);
    CHECK(amended == NULL);
    CHECK_INT(sched_workplan(s, 1)->n_tasks, 5);
    CHECK(sched_lease_get(s, 9) != NULL);
    CHECK_INT(sched_not_before(s, 1, 1), 5000);
    CHECK_INT(sched_get(s, 1, 4), PROTO_TASK_WAITING);
    char *text = sched_describe(s);
    CHECK(strstr(text, "BROKEN") == NULL);
    free(text);
    int64_t plan;
    size_t idx;
    CHECK_INT(sched_pick(s, NULL, 0, 1000, &plan, &idx), 0);
    CHECK(idx == 2 || idx == 3);
    sched_destroy(&s);
}

static const t_case_t t_cases[] = {
    T(test_pick_if_holds),
    T(test_initial_states),
    T(test_plans_list),
    T(test_diamond_success),
    T(test_gate_after_success),
    T(test_failure_blocks),
    T(test_plan_counts),
    T(test_failure_blocks_diamond_once),
    T(test_retry),
    T(test_retry_waits_and_gates),
    T(test_cancel_plan),
    T(test_cancel_task),
    T(test_priority_order),
    T(test_priority_across_plans),
    T(test_round_robin),
    T(test_round_robin_skips_removed),
    T(test_age_order),
    T(test_requires_tags),
    T(test_backoff),
    T(test_backoff_plan_removed),
    T(test_leases_table),
    T(test_leases_confirmed),
    T(test_leases_deadlines),
    T(test_leases_many),
    T(test_reason_waiting),
    T(test_reason_ready),
    T(test_pick_matches_model),
    T(test_big_chain),
    T(test_big_fanout),
    T(test_big_unrunnable_top),
    T(test_describe),
    T(test_amend_states),
    T(test_plan_swap),
    {0},
};

T_MAIN(t_cases)
