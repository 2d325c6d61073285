// sched: the broker's in-memory picture of running plans and the pure
// decisions made from it; sched.h is the contract, and sched_int.h says
// which sched*.c file holds what.
//
// Owns the plan table (ascending id), each loaded plan's workplan, every
// task's state and the plan's tallies, the DAG in both directions (CSR),
// and the moves that follow from a state change: cascade, retry, cancel.
// A state change here also requeues the task (sched_ready.c) so that the
// ready heaps always hold exactly the ready tasks.
//
// Never does I/O, reads a clock or logs: every time arrives as an
// argument.  Never picks a task (sched_ready.c) and never touches a lease
// (sched_lease.c).
#include "broker/sched_int.h"

#include "common/xalloc.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    size_t *items;
    size_t len, cap;
} s_vec_t;

void
sched__grow(void *items_p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) {
        return;
    }
    size_t n = *cap ? *cap : 8;
    while (n < need) {
        n *= 2;
    }
    void **items = items_p;
    *items = xrealloc(*items, n * size);
    *cap = n;
}

static void
s_vec_push(s_vec_t *v, size_t x)
{
    sched__grow(&v->items, &v->cap, v->len + 1, sizeof *v->items);
    v->items[v->len++] = x;
}

// --- plans: edges -------------------------------------------------------

// Counts each task's distinct needs and dependents into the CSR offsets.
static size_t
s_edges_count(sched__plan_t *p, size_t *last)
{
    const workplan_t *wp = p->wp;
    size_t total = 0;
    for (size_t i = 0; i < wp->n_tasks; i++) {
        for (size_t k = 0; k < wp->tasks[i].n_needs; k++) {
            size_t d = wp->tasks[i].need_idx[k];
            assert(d < wp->n_tasks && d != i);
            if (last[d] != i) {
                last[d] = i;
                p->need_off[i + 1]++;
                p->dep_off[d + 1]++;
                total++;
            }
        }
    }
    for (size_t i = 0; i < wp->n_tasks; i++) {
        p->need_off[i + 1] += p->need_off[i];
        p->dep_off[i + 1] += p->dep_off[i];
    }
    return total;
}

static void
s_plan_edges(sched__plan_t *p)
{
    const workplan_t *wp = p->wp;
    size_t n = wp->n_tasks;
    size_t *last = xmalloc((n ? n : 1) * sizeof *last);
    memset(last, 0xff, n * sizeof *last);
    p->need_off = xcalloc(n + 1, sizeof *p->need_off);
    p->dep_off = xcalloc(n + 1, sizeof *p->dep_off);
    size_t total = s_edges_count(p, last);
    p->needs = xmalloc((total ? total : 1) * sizeof *p->needs);
    p->deps = xmalloc((total ? total : 1) * sizeof *p->deps);
    memset(last, 0xff, n * sizeof *last);
    size_t nn = 0;
    // dep_off[d] serves as d's fill cursor and is shifted back afterwards;
    // walking i upwards leaves every dependent list ascending.
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < wp->tasks[i].n_needs; k++) {
            size_t d = wp->tasks[i].need_idx[k];
            if (last[d] != i) {
                last[d] = i;
                p->needs[nn++] = d;
                p->deps[p->dep_off[d]++] = i;
            }
        }
    }
    memmove(p->dep_off + 1, p->dep_off, n * sizeof *p->dep_off);
    p->dep_off[0] = 0;
    free(last);
}

// --- plans: the table ---------------------------------------------------

// Index of the first plan whose id is >= plan (upper: > plan).
size_t
sched__plan_bound(const sched_t *self, int64_t plan, bool upper)
{
    size_t lo = 0, hi = self->n_plans;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int64_t id = self->plans[mid]->id;
        if (id < plan || (upper && id == plan)) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

sched__plan_t *
sched__plan_find(const sched_t *self, int64_t plan)
{
    size_t i = sched__plan_bound(self, plan, false);
    if (i < self->n_plans && self->plans[i]->id == plan) {
        return self->plans[i];
    }
    return NULL;
}

static void
s_tally(sched__plan_t *p, proto_task_state_t s, bool add)
{
    p->counts[s] = add ? p->counts[s] + 1 : p->counts[s] - 1;
    if (proto_task_state_is_terminal(s)) {
        p->n_terminal = add ? p->n_terminal + 1 : p->n_terminal - 1;
    }
    if (s == PROTO_TASK_SUCCEEDED) {
        p->n_succeeded = add ? p->n_succeeded + 1 : p->n_succeeded - 1;
    }
}

static void
s_plan_states(sched_t *self, sched__plan_t *p,
              const proto_task_state_t *states)
{
    size_t n = p->wp->n_tasks;
    for (size_t i = 0; i < n; i++) {
        assert(states[i] < PROTO_TASK__COUNT);
        p->tasks[i].state = (uint8_t) states[i];
        p->tasks[i].priority = p->wp->tasks[i].priority;
        s_tally(p, states[i], true);
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t k = p->need_off[i]; k < p->need_off[i + 1]; k++) {
            p->tasks[i].n_pending +=
                p->tasks[p->needs[k]].state != PROTO_TASK_SUCCEEDED;
        }
        if (states[i] == PROTO_TASK_READY) {
            p->tasks[i].ready_ms = self->now_ms;
            sched__enqueue(self, p, i);
        }
    }
}

static void
s_plan_free(sched__plan_t **p_p)
{
    sched__plan_t *p = *p_p;
    workplan_destroy(&p->wp);
    sched__groups_release(p);
    free(p->tasks);
    free(p->need_off);
    free(p->needs);
    free(p->dep_off);
    free(p->deps);
    free(p->scratch->mark);
    free(p->scratch->count);
    free(p->scratch);
    free(p);
    *p_p = NULL;
}

sched_t *
sched_new(void)
{
    sched_t *self = xcalloc(1, sizeof *self);
    self->rr_last = INT64_MIN;
    self->backoff.by_time = true;
    self->leases = sched__leases_new();
    return self;
}

void
sched_destroy(sched_t **self_p)
{
    assert(self_p);
    sched_t *self = *self_p;
    if (!self) {
        return;
    }
    for (size_t i = 0; i < self->n_plans; i++) {
        s_plan_free(&self->plans[i]);
    }
    free(self->plans);
    free(self->backoff.items);
    sched__leases_destroy(&self->leases);
    free(self);
    *self_p = NULL;
}

void
sched_plan_add(sched_t *self, int64_t plan, workplan_t **wp,
               const proto_task_state_t *states)
{
    assert(self && wp && *wp && (states || (*wp)->n_tasks == 0));
    assert(!sched__plan_find(self, plan));
    sched__plan_t *p = xcalloc(1, sizeof *p);
    p->id = plan;
    p->wp = *wp;
    *wp = NULL;
    size_t n = p->wp->n_tasks;
    p->tasks = xcalloc(n ? n : 1, sizeof *p->tasks);
    p->scratch = xcalloc(1, sizeof *p->scratch);
    s_plan_edges(p);
    sched__groups_init(p);
    size_t at = sched__plan_bound(self, plan, false);
    sched__grow(&self->plans, &self->cap_plans, self->n_plans + 1,
                sizeof *self->plans);
    memmove(self->plans + at + 1, self->plans + at,
            (self->n_plans - at) * sizeof *self->plans);
    self->plans[at] = p;
    self->n_plans++;
    s_plan_states(self, p, states);
}

void
sched_plan_remove(sched_t *self, int64_t plan)
{
    assert(self);
    size_t at = sched__plan_bound(self, plan, false);
    if (at >= self->n_plans || self->plans[at]->id != plan) {
        return;
    }
    sched__plan_t *p = self->plans[at];
    sched__backoff_purge(self, p);
    s_plan_free(&p);
    memmove(self->plans + at, self->plans + at + 1,
            (self->n_plans - at - 1) * sizeof *self->plans);
    self->n_plans--;
}

bool
sched_has_plan(const sched_t *self, int64_t plan)
{
    assert(self);
    return sched__plan_find(self, plan) != NULL;
}

const workplan_t *
sched_workplan(const sched_t *self, int64_t plan)
{
    assert(self);
    const sched__plan_t *p = sched__plan_find(self, plan);
    return p ? p->wp : NULL;
}

workplan_t *
sched_workplan_edit(sched_t *self, int64_t plan)
{
    assert(self);
    const sched__plan_t *p = sched__plan_find(self, plan);
    return p ? p->wp : NULL;
}

size_t
sched_plans(const sched_t *self, int64_t **ids)
{
    assert(self && ids);
    *ids = NULL;
    if (self->n_plans == 0) {
        return 0;
    }
    *ids = xmalloc(self->n_plans * sizeof **ids);
    for (size_t i = 0; i < self->n_plans; i++) {
        (*ids)[i] = self->plans[i]->id;
    }
    return self->n_plans;
}

static proto_task_state_t
s_ready_state(const workplan_t *wp, size_t idx)
{
    return wp->tasks[idx].kind == WP_KIND_GATE ? PROTO_TASK_AWAITING_APPROVAL
                                               : PROTO_TASK_READY;
}

void
sched_initial_states(const workplan_t *wp, proto_task_state_t *out)
{
    assert(wp && (out || wp->n_tasks == 0));
    for (size_t i = 0; i < wp->n_tasks; i++) {
        out[i] = wp->tasks[i].n_needs == 0 ? s_ready_state(wp, i)
                                           : PROTO_TASK_WAITING;
    }
}

bool
sched_plan_done(const sched_t *self, int64_t plan, bool *all_succeeded)
{
    assert(self);
    const sched__plan_t *p = sched__plan_find(self, plan);
    if (!p || p->n_terminal < p->wp->n_tasks) {
        return false;
    }
    if (all_succeeded) {
        *all_succeeded = p->n_succeeded == p->wp->n_tasks;
    }
    return true;
}

bool
sched_plan_counts(const sched_t *self, int64_t plan,
                  uint32_t counts[PROTO_TASK__COUNT])
{
    assert(self && counts);
    const sched__plan_t *p = sched__plan_find(self, plan);
    if (!p) {
        return false;
    }
    memcpy(counts, p->counts, sizeof p->counts);
    return true;
}

// --- task states --------------------------------------------------------

void
sched_set(sched_t *self, int64_t plan, size_t idx, proto_task_state_t state,
          int64_t not_before_ms)
{
    assert(self && state < PROTO_TASK__COUNT);
    sched__plan_t *p = sched__plan_find(self, plan);
    if (!p) {
        return;
    }
    assert(idx < p->wp->n_tasks);
    sched__task_t *t = &p->tasks[idx];
    bool was_ok = t->state == PROTO_TASK_SUCCEEDED;
    bool is_ok = state == PROTO_TASK_SUCCEEDED;
    sched__dequeue(self, p, idx);
    s_tally(p, t->state, false);
    t->state = (uint8_t) state;
    // A gate awaiting approval keeps its deadline there (0: none): a gate
    // is never in backoff.
    t->not_before_ms = state == PROTO_TASK_READY ||
                               state == PROTO_TASK_AWAITING_APPROVAL
                           ? not_before_ms
                           : 0;
    s_tally(p, state, true);
    if (was_ok != is_ok) {
        for (size_t k = p->dep_off[idx]; k < p->dep_off[idx + 1]; k++) {
            sched__task_t *d = &p->tasks[p->deps[k]];
            assert(!is_ok || d->n_pending > 0);
            d->n_pending = is_ok ? d->n_pending - 1 : d->n_pending + 1;
        }
    }
    if (state == PROTO_TASK_READY) {
        t->ready_ms = self->now_ms;
        sched__enqueue(self, p, idx);
    }
}

proto_task_state_t
sched_get(const sched_t *self, int64_t plan, size_t idx)
{
    assert(self);
    const sched__plan_t *p = sched__plan_find(self, plan);
    if (!p) {
        return PROTO_TASK__COUNT;
    }
    assert(idx < p->wp->n_tasks);
    return (proto_task_state_t) p->tasks[idx].state;
}

int64_t
sched_not_before(const sched_t *self, int64_t plan, size_t idx)
{
    assert(self);
    const sched__plan_t *p = sched__plan_find(self, plan);
    if (!p) {
        return 0;
    }
    assert(idx < p->wp->n_tasks);
    return p->tasks[idx].not_before_ms;
}

// The 1M-task plan's RSS target (issue 9) counts on it.
_Static_assert(sizeof(sched__task_t) <= 40, "sched__task_t grew");

sched_attempts_t
sched_attempts(const sched_t *self, int64_t plan, size_t idx)
{
    assert(self);
    const sched__plan_t *p = sched__plan_find(self, plan);
    assert(p && idx < p->wp->n_tasks);
    return (sched_attempts_t) {.used = p->tasks[idx].used,
                               .runs = p->tasks[idx].runs};
}

void
sched_attempts_set(sched_t *self, int64_t plan, size_t idx,
                   sched_attempts_t a)
{
    assert(self);
    sched__plan_t *p = sched__plan_find(self, plan);
    assert(p && idx < p->wp->n_tasks);
    // A budget is at most WORKPLAN_MAX_RETRIES + 1 attempts, so used never
    // comes near the cap; a ledger saying more still loads (as dead).
    p->tasks[idx].used = (uint16_t) (a.used < UINT16_MAX ? a.used : UINT16_MAX);
    p->tasks[idx].runs = a.runs;
}

void
sched_set_now(sched_t *self, int64_t now_ms)
{
    assert(self);
    self->now_ms = now_ms;
}

int64_t
sched_ready_since(const sched_t *self, int64_t plan, size_t idx)
{
    assert(self);
    const sched__plan_t *p = sched__plan_find(self, plan);
    if (!p || p->tasks[idx].ready_ms == 0) {
        return 0;
    }
    const sched__task_t *t = &p->tasks[idx];
    return t->not_before_ms > t->ready_ms ? t->not_before_ms : t->ready_ms;
}

// --- cascades -----------------------------------------------------------

static void
s_moves_add(sched_moves_t *m, int64_t plan, size_t idx,
            proto_task_state_t from, proto_task_state_t to)
{
    // Capacity is implied: 8, then the next power of two.
    size_t n = m->count;
    if (n == 0 || (n >= 8 && (n & (n - 1)) == 0)) {
        m->items = xrealloc(m->items, (n ? 2 * n : 8) * sizeof *m->items);
    }
    m->items[m->count++] = (sched_move_t){plan, idx, from, to};
}

void
sched_moves_release(sched_moves_t *moves)
{
    assert(moves);
    free(moves->items);
    moves->items = NULL;
    moves->count = 0;
}

static uint32_t
s_epoch(const sched__plan_t *p)
{
    sched__scratch_t *sc = p->scratch;
    if (!sc->mark) {
        size_t n = p->wp->n_tasks ? p->wp->n_tasks : 1;
        sc->mark = xcalloc(n, sizeof *sc->mark);
        sc->count = xcalloc(n, sizeof *sc->count);
    }
    if (++sc->epoch == 0) {
        memset(sc->mark, 0, p->wp->n_tasks * sizeof *sc->mark);
        sc->epoch = 1;
    }
    return sc->epoch;
}

// Every waiting transitive dependent of idx goes blocked.  The walk stops
// at tasks that are not waiting: whatever is behind a terminal task was
// settled when it became terminal, so repeated failures into one join do
// not walk its descendants again.
static void
s_block_from(const sched__plan_t *p, size_t idx, sched_moves_t *moves)
{
    uint32_t ep = s_epoch(p);        // first: it may allocate the marks
    uint32_t *mark = p->scratch->mark;
    s_vec_t q = {0};
    s_vec_push(&q, idx);
    for (size_t h = 0; h < q.len; h++) {
        size_t x = q.items[h];
        for (size_t k = p->dep_off[x]; k < p->dep_off[x + 1]; k++) {
            size_t d = p->deps[k];
            if (mark[d] == ep || p->tasks[d].state != PROTO_TASK_WAITING) {
                continue;
            }
            mark[d] = ep;
            s_moves_add(moves, p->id, d, PROTO_TASK_WAITING,
                        PROTO_TASK_BLOCKED);
            s_vec_push(&q, d);
        }
    }
    free(q.items);
}

void
sched_cascade(const sched_t *self, int64_t plan, size_t idx,
              sched_moves_t *moves)
{
    assert(self && moves);
    const sched__plan_t *p = sched__plan_find(self, plan);
    if (!p) {
        return;
    }
    assert(idx < p->wp->n_tasks);
    proto_task_state_t st = (proto_task_state_t) p->tasks[idx].state;
    if (st == PROTO_TASK_SUCCEEDED) {
        for (size_t k = p->dep_off[idx]; k < p->dep_off[idx + 1]; k++) {
            size_t d = p->deps[k];
            const sched__task_t *t = &p->tasks[d];
            if (t->state == PROTO_TASK_WAITING && t->n_pending == 0) {
                s_moves_add(moves, plan, d, PROTO_TASK_WAITING,
                            s_ready_state(p->wp, d));
            }
        }
    } else if (proto_task_state_is_terminal(st)) {
        s_block_from(p, idx, moves);
    }
}

// How many of d's needs must leave blocked before d may: its blocked needs
// plus the retried task.  UINT32_MAX when another need ended dead, rejected
// or cancelled, which keeps d blocked whatever this retry does.
static uint32_t
s_needs_to_clear(const sched__plan_t *p, size_t d, size_t retried)
{
    uint32_t n = 0;
    for (size_t k = p->need_off[d]; k < p->need_off[d + 1]; k++) {
        size_t x = p->needs[k];
        proto_task_state_t st = (proto_task_state_t) p->tasks[x].state;
        if (x == retried || st == PROTO_TASK_BLOCKED) {
            n++;
        } else if (proto_task_state_is_terminal(st) &&
                   st != PROTO_TASK_SUCCEEDED) {
            return UINT32_MAX;
        }
    }
    return n;
}

// Blocked transitive dependents of idx go back to waiting, in topological
// order (Kahn): a task is released once every need holding it is released.
static void
s_unblock_from(const sched__plan_t *p, size_t idx, sched_moves_t *moves)
{
    sched__scratch_t *sc = p->scratch;
    uint32_t ep = s_epoch(p);
    s_vec_t q = {0};
    s_vec_push(&q, idx);
    for (size_t h = 0; h < q.len; h++) {
        size_t x = q.items[h];
        for (size_t k = p->dep_off[x]; k < p->dep_off[x + 1]; k++) {
            size_t d = p->deps[k];
            if (p->tasks[d].state != PROTO_TASK_BLOCKED) {
                continue;
            }
            if (sc->mark[d] != ep) {
                sc->mark[d] = ep;
                sc->count[d] = s_needs_to_clear(p, d, idx);
            }
            assert(sc->count[d] > 0);
            if (sc->count[d] == UINT32_MAX || --sc->count[d] > 0) {
                continue;
            }
            s_moves_add(moves, p->id, d, PROTO_TASK_BLOCKED,
                        PROTO_TASK_WAITING);
            s_vec_push(&q, d);
        }
    }
    free(q.items);
}

int
sched_retry(const sched_t *self, int64_t plan, size_t idx,
            sched_moves_t *moves)
{
    assert(self && moves);
    const sched__plan_t *p = sched__plan_find(self, plan);
    if (!p) {
        return -1;
    }
    assert(idx < p->wp->n_tasks);
    proto_task_state_t st = (proto_task_state_t) p->tasks[idx].state;
    if (st != PROTO_TASK_DEAD && st != PROTO_TASK_REJECTED
        && st != PROTO_TASK_CANCELLED) {
        return -1;
    }
    proto_task_state_t to = p->tasks[idx].n_pending == 0
                                ? s_ready_state(p->wp, idx)
                                : PROTO_TASK_WAITING;
    s_moves_add(moves, plan, idx, st, to);
    s_unblock_from(p, idx, moves);
    return 0;
}

void
sched_cancel(const sched_t *self, int64_t plan, size_t idx,
             sched_moves_t *moves)
{
    assert(self && moves);
    const sched__plan_t *p = sched__plan_find(self, plan);
    if (!p) {
        return;
    }
    if (idx == SIZE_MAX) {
        // Nothing is left waiting afterwards, so nothing to block.
        for (size_t i = 0; i < p->wp->n_tasks; i++) {
            proto_task_state_t st = (proto_task_state_t) p->tasks[i].state;
            if (!proto_task_state_is_terminal(st)) {
                s_moves_add(moves, plan, i, st, PROTO_TASK_CANCELLED);
            }
        }
        return;
    }
    assert(idx < p->wp->n_tasks);
    proto_task_state_t st = (proto_task_state_t) p->tasks[idx].state;
    if (proto_task_state_is_terminal(st)) {
        return;
    }
    s_moves_add(moves, plan, idx, st, PROTO_TASK_CANCELLED);
    s_block_from(p, idx, moves);
}
