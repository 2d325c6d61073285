// sched: the broker's in-memory picture of running plans and the pure
// decisions made from it; sched.h is the contract.
//
// Owns each loaded plan's workplan, every task's state, the DAG in both
// directions, the ready heaps and the lease table.  Never does I/O, reads a
// clock or logs: every time arrives as an argument.
//
// A ready task sits in exactly one heap: its `requires` group's heap
// (priority desc, then workplan order) once its backoff has ended, else the
// scheduler-wide backoff heap (not_before asc).  Heaps are indexed (a task
// knows its position), so a task leaving ready is removed in O(log n) and no
// stale entries build up.  Backoff entries move to their group lazily, when
// sched_pick is given a now_ms past them.  Picking looks only at the top of
// each group heap, so it costs O(plans x groups), never O(tasks).
#include "broker/sched.h"

#include "common/xalloc.h"

#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

enum { S_NOWHERE = 0, S_IN_GROUP, S_IN_BACKOFF };

typedef struct s_plan s_plan_t;

typedef struct {
    int64_t key;                 // priority (group) or not_before_ms (backoff)
    s_plan_t *plan;
    size_t idx;                  // task index in plan
} s_hent_t;

typedef struct {
    s_hent_t *items;
    size_t len, cap;
    bool by_time;                // earliest key first; else highest key first
} s_heap_t;

typedef struct {
    int64_t priority;            // cached from the workplan
    int64_t not_before_ms;       // wall ms; ready only, 0 = none
    size_t pos;                  // position in its heap, if any
    uint32_t n_pending;          // distinct needs not yet succeeded
    uint32_t group;              // index into the plan's groups
    uint8_t state;               // proto_task_state_t
    uint8_t where;               // S_NOWHERE, S_IN_GROUP or S_IN_BACKOFF
} s_task_t;

typedef struct {
    const char **req;            // sorted, distinct; points into req_pool
    size_t n_req;
    s_heap_t heap;               // its ready tasks whose backoff has ended
} s_group_t;

// Traversal scratch.  The const queries (cascade, retry, cancel) write it:
// sched is single-threaded and marks are stamped with a fresh epoch per
// traversal, so a traversal costs what it visits, not the plan's size.
typedef struct {
    uint32_t epoch;
    uint32_t *mark;              // == epoch: seen in the current traversal
    uint32_t *count;             // per-traversal counter, valid when marked
} s_scratch_t;

struct s_plan {
    int64_t id;
    workplan_t *wp;              // owned
    s_task_t *tasks;             // wp->n_tasks entries
    size_t *need_off, *needs;    // distinct needs per task (CSR)
    size_t *dep_off, *deps;      // distinct dependents per task (CSR)
    const char **req_pool;       // each task's sorted requires, borrowed
    s_group_t *groups;
    size_t n_groups;
    size_t n_terminal;           // tasks in a terminal state
    size_t n_succeeded;
    s_scratch_t *scratch;
};

typedef struct {
    char id[65];                 // drone instance id
    size_t n_leases;             // > 0
} s_inst_t;

// Open addressing with linear probing over a dense array.
typedef struct {
    size_t *slots;               // dense index + 1; 0 = empty
    size_t cap;                  // power of two
} s_index_t;

struct sched {
    s_plan_t **plans;            // ascending id
    size_t n_plans, cap_plans;
    int64_t rr_last;             // plan served last
    s_heap_t backoff;            // ready tasks still in backoff, all plans
    sched_lease_t *leases;       // dense
    size_t n_leases, cap_leases;
    s_index_t by_token;          // token -> leases[]
    s_inst_t *insts;             // instances holding leases, dense
    size_t n_insts, cap_insts;
    s_index_t by_inst;           // instance -> insts[]
};

typedef struct {
    size_t *items;
    size_t len, cap;
} s_vec_t;

static void
s_grow(void *items_p, size_t *cap, size_t need, size_t size)
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
    s_grow(&v->items, &v->cap, v->len + 1, sizeof *v->items);
    v->items[v->len++] = x;
}

static bool
s_is_terminal(proto_task_state_t s)
{
    return s == PROTO_TASK_SUCCEEDED || s == PROTO_TASK_DEAD
        || s == PROTO_TASK_REJECTED || s == PROTO_TASK_BLOCKED
        || s == PROTO_TASK_CANCELLED;
}

// --- heaps --------------------------------------------------------------

static bool
s_before(const s_heap_t *h, const s_hent_t *a, const s_hent_t *b)
{
    if (a->key != b->key) {
        return h->by_time ? a->key < b->key : a->key > b->key;
    }
    if (a->plan != b->plan) {
        return a->plan->id < b->plan->id;
    }
    return a->idx < b->idx;
}

static void
s_heap_put(s_heap_t *h, size_t i, s_hent_t e)
{
    h->items[i] = e;
    e.plan->tasks[e.idx].pos = i;
}

static void
s_heap_up(s_heap_t *h, size_t i)
{
    s_hent_t e = h->items[i];
    while (i > 0 && s_before(h, &e, &h->items[(i - 1) / 2])) {
        s_heap_put(h, i, h->items[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    s_heap_put(h, i, e);
}

static void
s_heap_down(s_heap_t *h, size_t i)
{
    s_hent_t e = h->items[i];
    for (size_t c = 2 * i + 1; c < h->len; c = 2 * i + 1) {
        if (c + 1 < h->len && s_before(h, &h->items[c + 1], &h->items[c])) {
            c++;
        }
        if (!s_before(h, &h->items[c], &e)) {
            break;
        }
        s_heap_put(h, i, h->items[c]);
        i = c;
    }
    s_heap_put(h, i, e);
}

static void
s_heap_push(s_heap_t *h, s_hent_t e)
{
    s_grow(&h->items, &h->cap, h->len + 1, sizeof *h->items);
    h->items[h->len++] = e;
    s_heap_up(h, h->len - 1);
}

static void
s_heap_remove(s_heap_t *h, size_t i)
{
    assert(i < h->len);
    s_hent_t last = h->items[--h->len];
    if (i < h->len) {
        s_heap_put(h, i, last);
        if (i > 0 && s_before(h, &last, &h->items[(i - 1) / 2])) {
            s_heap_up(h, i);
        } else {
            s_heap_down(h, i);
        }
    }
    // Give memory back after a burst (a 100k fan-out drained).
    if (h->cap > 64 && h->len < h->cap / 4) {
        h->cap /= 2;
        h->items = xrealloc(h->items, h->cap * sizeof *h->items);
    }
}

// Drops every entry of plan p, then restores the heap order.
static void
s_heap_purge(s_heap_t *h, const s_plan_t *p)
{
    size_t n = 0;
    for (size_t i = 0; i < h->len; i++) {
        if (h->items[i].plan != p) {
            s_heap_put(h, n++, h->items[i]);
        }
    }
    h->len = n;
    for (size_t i = n / 2; i-- > 0;) {
        s_heap_down(h, i);
    }
}

// Earliest key > now_ms.  Entries <= now_ms form a subtree at the root, so
// this visits that subtree and its border; recursion depth is the heap's
// height, O(log n).
static int64_t
s_heap_min_after(const s_heap_t *h, size_t i, int64_t now_ms)
{
    if (i >= h->len) {
        return -1;
    }
    if (h->items[i].key > now_ms) {
        return h->items[i].key;
    }
    int64_t a = s_heap_min_after(h, 2 * i + 1, now_ms);
    int64_t b = s_heap_min_after(h, 2 * i + 2, now_ms);
    return a < 0 ? b : b < 0 ? a : a < b ? a : b;
}

// --- ready queues -------------------------------------------------------

static void
s_enqueue(sched_t *self, s_plan_t *p, size_t idx)
{
    s_task_t *t = &p->tasks[idx];
    if (t->not_before_ms > 0) {
        s_heap_push(&self->backoff, (s_hent_t){t->not_before_ms, p, idx});
        t->where = S_IN_BACKOFF;
    } else {
        s_heap_push(&p->groups[t->group].heap, (s_hent_t){t->priority, p, idx});
        t->where = S_IN_GROUP;
    }
}

static void
s_dequeue(sched_t *self, s_plan_t *p, size_t idx)
{
    s_task_t *t = &p->tasks[idx];
    if (t->where == S_IN_GROUP) {
        s_heap_remove(&p->groups[t->group].heap, t->pos);
    } else if (t->where == S_IN_BACKOFF) {
        s_heap_remove(&self->backoff, t->pos);
    }
    t->where = S_NOWHERE;
}

static void
s_backoff_drain(sched_t *self, int64_t now_ms)
{
    s_heap_t *h = &self->backoff;
    while (h->len > 0 && h->items[0].key <= now_ms) {
        s_hent_t e = h->items[0];
        s_heap_remove(h, 0);
        s_task_t *t = &e.plan->tasks[e.idx];
        s_heap_push(&e.plan->groups[t->group].heap,
                    (s_hent_t){t->priority, e.plan, e.idx});
        t->where = S_IN_GROUP;
    }
}

// --- plans: edges and groups --------------------------------------------

// Counts each task's distinct needs and dependents into the CSR offsets.
static size_t
s_edges_count(s_plan_t *p, size_t *last)
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
s_plan_edges(s_plan_t *p)
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

typedef struct {
    const char **req;
    size_t n_req;
    size_t idx;
} s_reqkey_t;

static int
s_cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *) a, *(const char *const *) b);
}

static int
s_cmp_req(const s_reqkey_t *x, const s_reqkey_t *y)
{
    if (x->n_req != y->n_req) {
        return x->n_req < y->n_req ? -1 : 1;
    }
    for (size_t i = 0; i < x->n_req; i++) {
        int c = strcmp(x->req[i], y->req[i]);
        if (c != 0) {
            return c;
        }
    }
    return 0;
}

static int
s_cmp_reqkey(const void *a, const void *b)
{
    const s_reqkey_t *x = a, *y = b;
    int c = s_cmp_req(x, y);
    if (c != 0) {
        return c;
    }
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

// Every task's requires, sorted and without duplicates, in p->req_pool.
static s_reqkey_t *
s_plan_reqkeys(s_plan_t *p)
{
    const workplan_t *wp = p->wp;
    size_t total = 0;
    for (size_t i = 0; i < wp->n_tasks; i++) {
        total += wp->tasks[i].n_requires;
    }
    p->req_pool = xmalloc((total ? total : 1) * sizeof *p->req_pool);
    s_reqkey_t *keys = xmalloc((wp->n_tasks ? wp->n_tasks : 1) * sizeof *keys);
    size_t off = 0;
    for (size_t i = 0; i < wp->n_tasks; i++) {
        const wp_task_t *t = &wp->tasks[i];
        const char **req = p->req_pool + off;
        size_t m = 0;
        if (t->n_requires > 0) {
            memcpy(req, t->requires, t->n_requires * sizeof *req);
            qsort(req, t->n_requires, sizeof *req, s_cmp_str);
        }
        for (size_t k = 0; k < t->n_requires; k++) {
            if (m == 0 || strcmp(req[m - 1], req[k]) != 0) {
                req[m++] = req[k];
            }
        }
        keys[i] = (s_reqkey_t){req, m, i};
        off += t->n_requires;
    }
    return keys;
}

// Tasks with equal requires share a group: sort by requires, then cut.
static void
s_plan_groups(s_plan_t *p)
{
    size_t n = p->wp->n_tasks;
    s_reqkey_t *keys = s_plan_reqkeys(p);
    qsort(keys, n, sizeof *keys, s_cmp_reqkey);
    for (size_t k = 0; k < n; k++) {
        p->n_groups += k == 0 || s_cmp_req(&keys[k - 1], &keys[k]) != 0;
    }
    p->groups = xcalloc(p->n_groups ? p->n_groups : 1, sizeof *p->groups);
    size_t g = 0;
    for (size_t k = 0; k < n; k++) {
        if (k > 0 && s_cmp_req(&keys[k - 1], &keys[k]) != 0) {
            g++;
        }
        p->groups[g].req = keys[k].req;
        p->groups[g].n_req = keys[k].n_req;
        p->tasks[keys[k].idx].group = (uint32_t) g;
    }
    free(keys);
}

// --- plans: the table ---------------------------------------------------

// Index of the first plan whose id is >= plan (upper: > plan).
static size_t
s_plan_bound(const sched_t *self, int64_t plan, bool upper)
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

static s_plan_t *
s_plan_find(const sched_t *self, int64_t plan)
{
    size_t i = s_plan_bound(self, plan, false);
    if (i < self->n_plans && self->plans[i]->id == plan) {
        return self->plans[i];
    }
    return NULL;
}

static void
s_tally(s_plan_t *p, proto_task_state_t s, bool add)
{
    if (s_is_terminal(s)) {
        p->n_terminal = add ? p->n_terminal + 1 : p->n_terminal - 1;
    }
    if (s == PROTO_TASK_SUCCEEDED) {
        p->n_succeeded = add ? p->n_succeeded + 1 : p->n_succeeded - 1;
    }
}

static void
s_plan_states(sched_t *self, s_plan_t *p, const proto_task_state_t *states)
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
            s_enqueue(self, p, i);
        }
    }
}

static void
s_plan_free(s_plan_t **p_p)
{
    s_plan_t *p = *p_p;
    workplan_destroy(&p->wp);
    for (size_t g = 0; g < p->n_groups; g++) {
        free(p->groups[g].heap.items);
    }
    free(p->groups);
    free(p->req_pool);
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
    self->by_token.cap = 16;
    self->by_token.slots = xcalloc(16, sizeof *self->by_token.slots);
    self->by_inst.cap = 16;
    self->by_inst.slots = xcalloc(16, sizeof *self->by_inst.slots);
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
    free(self->leases);
    free(self->by_token.slots);
    free(self->insts);
    free(self->by_inst.slots);
    free(self);
    *self_p = NULL;
}

void
sched_plan_add(sched_t *self, int64_t plan, workplan_t **wp,
               const proto_task_state_t *states)
{
    assert(self && wp && *wp && (states || (*wp)->n_tasks == 0));
    assert(!s_plan_find(self, plan));
    s_plan_t *p = xcalloc(1, sizeof *p);
    p->id = plan;
    p->wp = *wp;
    *wp = NULL;
    size_t n = p->wp->n_tasks;
    p->tasks = xcalloc(n ? n : 1, sizeof *p->tasks);
    p->scratch = xcalloc(1, sizeof *p->scratch);
    p->scratch->mark = xcalloc(n ? n : 1, sizeof *p->scratch->mark);
    p->scratch->count = xcalloc(n ? n : 1, sizeof *p->scratch->count);
    s_plan_edges(p);
    s_plan_groups(p);
    size_t at = s_plan_bound(self, plan, false);
    s_grow(&self->plans, &self->cap_plans, self->n_plans + 1,
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
    size_t at = s_plan_bound(self, plan, false);
    if (at >= self->n_plans || self->plans[at]->id != plan) {
        return;
    }
    s_plan_t *p = self->plans[at];
    s_heap_purge(&self->backoff, p);
    s_plan_free(&p);
    memmove(self->plans + at, self->plans + at + 1,
            (self->n_plans - at - 1) * sizeof *self->plans);
    self->n_plans--;
}

bool
sched_has_plan(const sched_t *self, int64_t plan)
{
    assert(self);
    return s_plan_find(self, plan) != NULL;
}

const workplan_t *
sched_workplan(const sched_t *self, int64_t plan)
{
    assert(self);
    const s_plan_t *p = s_plan_find(self, plan);
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
    const s_plan_t *p = s_plan_find(self, plan);
    if (!p || p->n_terminal < p->wp->n_tasks) {
        return false;
    }
    if (all_succeeded) {
        *all_succeeded = p->n_succeeded == p->wp->n_tasks;
    }
    return true;
}

// --- task states --------------------------------------------------------

void
sched_set(sched_t *self, int64_t plan, size_t idx, proto_task_state_t state,
          int64_t not_before_ms)
{
    assert(self && state < PROTO_TASK__COUNT);
    s_plan_t *p = s_plan_find(self, plan);
    if (!p) {
        return;
    }
    assert(idx < p->wp->n_tasks);
    s_task_t *t = &p->tasks[idx];
    bool was_ok = t->state == PROTO_TASK_SUCCEEDED;
    bool is_ok = state == PROTO_TASK_SUCCEEDED;
    s_dequeue(self, p, idx);
    s_tally(p, t->state, false);
    t->state = (uint8_t) state;
    t->not_before_ms = state == PROTO_TASK_READY ? not_before_ms : 0;
    s_tally(p, state, true);
    if (was_ok != is_ok) {
        for (size_t k = p->dep_off[idx]; k < p->dep_off[idx + 1]; k++) {
            s_task_t *d = &p->tasks[p->deps[k]];
            assert(!is_ok || d->n_pending > 0);
            d->n_pending = is_ok ? d->n_pending - 1 : d->n_pending + 1;
        }
    }
    if (state == PROTO_TASK_READY) {
        s_enqueue(self, p, idx);
    }
}

proto_task_state_t
sched_get(const sched_t *self, int64_t plan, size_t idx)
{
    assert(self);
    const s_plan_t *p = s_plan_find(self, plan);
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
    const s_plan_t *p = s_plan_find(self, plan);
    if (!p) {
        return 0;
    }
    assert(idx < p->wp->n_tasks);
    return p->tasks[idx].not_before_ms;
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
s_epoch(const s_plan_t *p)
{
    s_scratch_t *sc = p->scratch;
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
s_block_from(const s_plan_t *p, size_t idx, sched_moves_t *moves)
{
    uint32_t *mark = p->scratch->mark;
    uint32_t ep = s_epoch(p);
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
    const s_plan_t *p = s_plan_find(self, plan);
    if (!p) {
        return;
    }
    assert(idx < p->wp->n_tasks);
    proto_task_state_t st = (proto_task_state_t) p->tasks[idx].state;
    if (st == PROTO_TASK_SUCCEEDED) {
        for (size_t k = p->dep_off[idx]; k < p->dep_off[idx + 1]; k++) {
            size_t d = p->deps[k];
            const s_task_t *t = &p->tasks[d];
            if (t->state == PROTO_TASK_WAITING && t->n_pending == 0) {
                s_moves_add(moves, plan, d, PROTO_TASK_WAITING,
                            s_ready_state(p->wp, d));
            }
        }
    } else if (s_is_terminal(st)) {
        s_block_from(p, idx, moves);
    }
}

// How many of d's needs must leave blocked before d may: its blocked needs
// plus the retried task.  UINT32_MAX when another need ended dead, rejected
// or cancelled, which keeps d blocked whatever this retry does.
static uint32_t
s_needs_to_clear(const s_plan_t *p, size_t d, size_t retried)
{
    uint32_t n = 0;
    for (size_t k = p->need_off[d]; k < p->need_off[d + 1]; k++) {
        size_t x = p->needs[k];
        proto_task_state_t st = (proto_task_state_t) p->tasks[x].state;
        if (x == retried || st == PROTO_TASK_BLOCKED) {
            n++;
        } else if (s_is_terminal(st) && st != PROTO_TASK_SUCCEEDED) {
            return UINT32_MAX;
        }
    }
    return n;
}

// Blocked transitive dependents of idx go back to waiting, in topological
// order (Kahn): a task is released once every need holding it is released.
static void
s_unblock_from(const s_plan_t *p, size_t idx, sched_moves_t *moves)
{
    s_scratch_t *sc = p->scratch;
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
    const s_plan_t *p = s_plan_find(self, plan);
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
    const s_plan_t *p = s_plan_find(self, plan);
    if (!p) {
        return;
    }
    if (idx == SIZE_MAX) {
        // Nothing is left waiting afterwards, so nothing to block.
        for (size_t i = 0; i < p->wp->n_tasks; i++) {
            proto_task_state_t st = (proto_task_state_t) p->tasks[i].state;
            if (!s_is_terminal(st)) {
                s_moves_add(moves, plan, i, st, PROTO_TASK_CANCELLED);
            }
        }
        return;
    }
    assert(idx < p->wp->n_tasks);
    proto_task_state_t st = (proto_task_state_t) p->tasks[idx].state;
    if (s_is_terminal(st)) {
        return;
    }
    s_moves_add(moves, plan, idx, st, PROTO_TASK_CANCELLED);
    s_block_from(p, idx, moves);
}

// --- picking ------------------------------------------------------------

static bool
s_has_tag(const char *const *tags, size_t n_tags, const char *tag)
{
    for (size_t i = 0; i < n_tags; i++) {
        if (strcmp(tags[i], tag) == 0) {
            return true;
        }
    }
    return false;
}

static bool
s_covers(const char *const *tags, size_t n_tags, const s_group_t *g)
{
    for (size_t i = 0; i < g->n_req; i++) {
        if (!s_has_tag(tags, n_tags, g->req[i])) {
            return false;
        }
    }
    return true;
}

// The best task of p a drone with these tags may take, or NULL.
static const s_hent_t *
s_plan_best(const s_plan_t *p, const char *const *tags, size_t n_tags)
{
    const s_hent_t *best = NULL;
    for (size_t g = 0; g < p->n_groups; g++) {
        const s_group_t *gr = &p->groups[g];
        if (gr->heap.len == 0 || !s_covers(tags, n_tags, gr)) {
            continue;
        }
        if (!best || s_before(&gr->heap, &gr->heap.items[0], best)) {
            best = &gr->heap.items[0];
        }
    }
    return best;
}

int
sched_pick(sched_t *self, const char *const *tags, size_t n_tags,
           int64_t now_ms, int64_t *plan, size_t *idx)
{
    assert(self && (tags || n_tags == 0) && plan && idx);
    s_backoff_drain(self, now_ms);
    size_t start = s_plan_bound(self, self->rr_last, true);
    const s_hent_t *best = NULL;
    for (size_t k = 0; k < self->n_plans; k++) {
        const s_plan_t *p = self->plans[(start + k) % self->n_plans];
        const s_hent_t *top = s_plan_best(p, tags, n_tags);
        // Strictly higher: at equal priority the plan met first wins.
        if (top && (!best || top->key > best->key)) {
            best = top;
        }
    }
    if (!best) {
        return -1;
    }
    *plan = best->plan->id;
    *idx = best->idx;
    self->rr_last = *plan;
    return 0;
}

int64_t
sched_next_ready_ms(const sched_t *self, int64_t now_ms)
{
    assert(self);
    return s_heap_min_after(&self->backoff, 0, now_ms);
}

// --- waiting reasons ----------------------------------------------------

static char *
s_append(char *s, const char *sep, const char *tag)
{
    char *next = xasprintf("%s%s'%s'", s, sep, tag);
    free(s);
    return next;
}

static char *
s_reason_waiting(const s_plan_t *p, size_t idx)
{
    const s_task_t *t = &p->tasks[idx];
    if (t->n_pending == 0) {
        return NULL;
    }
    char *s = xstrdup("waiting for ");
    size_t named = 0;
    for (size_t k = p->need_off[idx]; k < p->need_off[idx + 1] && named < 3;
         k++) {
        size_t d = p->needs[k];
        if (p->tasks[d].state != PROTO_TASK_SUCCEEDED) {
            s = s_append(s, named++ ? ", " : "", p->wp->tasks[d].id);
        }
    }
    if (t->n_pending > named) {
        char *next = xasprintf("%s and %zu more", s,
                               (size_t) t->n_pending - named);
        free(s);
        s = next;
    }
    return s;
}

static bool
s_offered(const char *tag, const char *const *const *drone_tags,
          const size_t *n_drone_tags, size_t n_drones)
{
    for (size_t i = 0; i < n_drones; i++) {
        if (s_has_tag(drone_tags[i], n_drone_tags[i], tag)) {
            return true;
        }
    }
    return false;
}

// NULL when some drone covers g's requires; else names the tags no drone
// offers, or all of them when each is offered but never by one drone.
static char *
s_reason_tags(const s_group_t *g, const char *const *const *drone_tags,
              const size_t *n_drone_tags, size_t n_drones)
{
    for (size_t i = 0; i < n_drones; i++) {
        if (s_covers(drone_tags[i], n_drone_tags[i], g)) {
            return NULL;
        }
    }
    char *s = xstrdup("no connected drone offers ");
    size_t named = 0;
    for (size_t k = 0; k < g->n_req; k++) {
        if (!s_offered(g->req[k], drone_tags, n_drone_tags, n_drones)) {
            s = s_append(s, named++ ? ", " : "", g->req[k]);
        }
    }
    for (size_t k = 0; named == 0 && k < g->n_req; k++) {
        s = s_append(s, k ? ", " : "all of ", g->req[k]);
    }
    return s;
}

char *
sched_waiting_reason(const sched_t *self, int64_t plan, size_t idx,
                     const char *const *const *drone_tags,
                     const size_t *n_drone_tags, size_t n_drones,
                     int64_t now_ms)
{
    assert(self && (n_drones == 0 || (drone_tags && n_drone_tags)));
    const s_plan_t *p = s_plan_find(self, plan);
    if (!p || idx >= p->wp->n_tasks) {
        return NULL;
    }
    const s_task_t *t = &p->tasks[idx];
    if (t->state == PROTO_TASK_WAITING) {
        return s_reason_waiting(p, idx);
    }
    if (t->state != PROTO_TASK_READY) {
        return NULL;
    }
    if (t->not_before_ms > now_ms) {
        // Round up: "0 s" would read as no backoff at all.
        return xasprintf("in backoff for %" PRId64 " s",
                         (t->not_before_ms - now_ms + 999) / 1000);
    }
    if (n_drones == 0) {
        return xstrdup("no connected drones");
    }
    return s_reason_tags(&p->groups[t->group], drone_tags, n_drone_tags,
                         n_drones);
}

// --- lease index --------------------------------------------------------

typedef uint64_t (*s_hash_at_fn)(const sched_t *self, size_t i);

static uint64_t
s_mix(uint64_t x)
{
    // splitmix64's finaliser: tokens are sequential, slots must not be.
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t
s_hash_str(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) {
        h = (h ^ (uint8_t) *s) * 0x100000001b3ULL;
    }
    return h;
}

static uint64_t
s_token_hash_at(const sched_t *self, size_t i)
{
    return s_mix(self->leases[i].token);
}

static uint64_t
s_inst_hash_at(const sched_t *self, size_t i)
{
    return s_hash_str(self->insts[i].id);
}

// Keeps the load at most one half before n + 1 entries are indexed.
static void
s_index_grow(const sched_t *self, s_index_t *ix, size_t n,
             s_hash_at_fn hash_at)
{
    if ((n + 1) * 2 <= ix->cap) {
        return;
    }
    free(ix->slots);
    ix->cap *= 2;
    ix->slots = xcalloc(ix->cap, sizeof *ix->slots);
    size_t mask = ix->cap - 1;
    for (size_t i = 0; i < n; i++) {
        size_t s = hash_at(self, i) & mask;
        while (ix->slots[s]) {
            s = (s + 1) & mask;
        }
        ix->slots[s] = i + 1;
    }
}

// Empties slot hole, shifting later entries of the cluster back so that
// probing needs no tombstones.
static void
s_index_erase(const sched_t *self, s_index_t *ix, size_t hole,
              s_hash_at_fn hash_at)
{
    size_t mask = ix->cap - 1;
    ix->slots[hole] = 0;
    for (size_t j = (hole + 1) & mask; ix->slots[j]; j = (j + 1) & mask) {
        size_t home = hash_at(self, ix->slots[j] - 1) & mask;
        // j may fill the hole only if the hole lies on its probe path.
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            ix->slots[hole] = ix->slots[j];
            ix->slots[j] = 0;
            hole = j;
        }
    }
}

// The dense entry at from moved to to.
static void
s_index_repoint(s_index_t *ix, uint64_t hash, size_t from, size_t to)
{
    size_t mask = ix->cap - 1;
    size_t s = hash & mask;
    while (ix->slots[s] != from + 1) {
        s = (s + 1) & mask;
    }
    ix->slots[s] = to + 1;
}

// The slot holding token, or the empty slot ending its probe.
static size_t
s_token_slot(const sched_t *self, uint64_t token)
{
    const s_index_t *ix = &self->by_token;
    size_t mask = ix->cap - 1;
    size_t s = s_mix(token) & mask;
    while (ix->slots[s] && self->leases[ix->slots[s] - 1].token != token) {
        s = (s + 1) & mask;
    }
    return s;
}

static size_t
s_inst_slot(const sched_t *self, const char *id)
{
    const s_index_t *ix = &self->by_inst;
    size_t mask = ix->cap - 1;
    size_t s = s_hash_str(id) & mask;
    while (ix->slots[s] && strcmp(self->insts[ix->slots[s] - 1].id, id) != 0) {
        s = (s + 1) & mask;
    }
    return s;
}

static void
s_inst_hold(sched_t *self, const char *id)
{
    size_t s = s_inst_slot(self, id);
    if (self->by_inst.slots[s]) {
        self->insts[self->by_inst.slots[s] - 1].n_leases++;
        return;
    }
    s_index_grow(self, &self->by_inst, self->n_insts, s_inst_hash_at);
    s = s_inst_slot(self, id);
    s_grow(&self->insts, &self->cap_insts, self->n_insts + 1,
           sizeof *self->insts);
    s_inst_t *in = &self->insts[self->n_insts++];
    memcpy(in->id, id, sizeof in->id);
    in->n_leases = 1;
    self->by_inst.slots[s] = self->n_insts;
}

static void
s_inst_release(sched_t *self, const char *id)
{
    size_t s = s_inst_slot(self, id);
    assert(self->by_inst.slots[s]);
    size_t i = self->by_inst.slots[s] - 1;
    if (--self->insts[i].n_leases > 0) {
        return;
    }
    s_index_erase(self, &self->by_inst, s, s_inst_hash_at);
    size_t last = --self->n_insts;
    if (i != last) {
        s_index_repoint(&self->by_inst, s_inst_hash_at(self, last), last, i);
        self->insts[i] = self->insts[last];
    }
}

// --- leases -------------------------------------------------------------

void
sched_lease_add(sched_t *self, const sched_lease_t *lease)
{
    assert(self && lease);
    assert(!self->by_token.slots[s_token_slot(self, lease->token)]);
    s_index_grow(self, &self->by_token, self->n_leases, s_token_hash_at);
    size_t s = s_token_slot(self, lease->token);
    s_grow(&self->leases, &self->cap_leases, self->n_leases + 1,
           sizeof *self->leases);
    sched_lease_t *l = &self->leases[self->n_leases++];
    *l = *lease;
    l->instance[sizeof l->instance - 1] = '\0';
    self->by_token.slots[s] = self->n_leases;
    s_inst_hold(self, l->instance);
}

const sched_lease_t *
sched_lease_get(const sched_t *self, uint64_t token)
{
    assert(self);
    size_t s = self->by_token.slots[s_token_slot(self, token)];
    return s ? &self->leases[s - 1] : NULL;
}

void
sched_lease_renew(sched_t *self, uint64_t token, int64_t deadline_ms)
{
    assert(self);
    size_t s = self->by_token.slots[s_token_slot(self, token)];
    if (!s) {
        return;
    }
    sched_lease_t *l = &self->leases[s - 1];
    if (l->hard_deadline_ms && deadline_ms > l->hard_deadline_ms) {
        deadline_ms = l->hard_deadline_ms;
    }
    l->deadline_ms = deadline_ms;
}

void
sched_lease_remove(sched_t *self, uint64_t token)
{
    assert(self);
    size_t s = s_token_slot(self, token);
    if (!self->by_token.slots[s]) {
        return;
    }
    size_t i = self->by_token.slots[s] - 1;
    s_inst_release(self, self->leases[i].instance);
    s_index_erase(self, &self->by_token, s, s_token_hash_at);
    size_t last = --self->n_leases;
    if (i != last) {
        s_index_repoint(&self->by_token, s_token_hash_at(self, last), last,
                        i);
        self->leases[i] = self->leases[last];
    }
}

static int
s_cmp_lease(const void *a, const void *b)
{
    const sched_lease_t *x = a, *y = b;
    if (x->deadline_ms != y->deadline_ms) {
        return x->deadline_ms < y->deadline_ms ? -1 : 1;
    }
    return x->token < y->token ? -1 : x->token > y->token;
}

// Copies the leases that match into *out, earliest deadline first.
static size_t
s_leases_where(const sched_t *self, const char *instance, int64_t now_ms,
               sched_lease_t **out)
{
    size_t n = 0;
    *out = NULL;
    for (size_t i = 0; i < self->n_leases; i++) {
        const sched_lease_t *l = &self->leases[i];
        if (instance ? strcmp(l->instance, instance) != 0
                     : l->deadline_ms > now_ms) {
            continue;
        }
        if ((n & (n - 1)) == 0) {
            *out = xrealloc(*out, (n ? 2 * n : 1) * sizeof **out);
        }
        (*out)[n++] = *l;
    }
    if (n > 1) {
        qsort(*out, n, sizeof **out, s_cmp_lease);
    }
    return n;
}

size_t
sched_leases_of(const sched_t *self, const char *instance,
                sched_lease_t **out)
{
    assert(self && instance && out);
    return s_leases_where(self, instance, 0, out);
}

size_t
sched_lease_count_of(const sched_t *self, const char *instance)
{
    assert(self && instance);
    size_t s = self->by_inst.slots[s_inst_slot(self, instance)];
    return s ? self->insts[s - 1].n_leases : 0;
}

size_t
sched_leases_expired(const sched_t *self, int64_t now_ms,
                     sched_lease_t **out)
{
    assert(self && out);
    return s_leases_where(self, NULL, now_ms, out);
}

void
sched_leases_shift(sched_t *self, int64_t delta_ms)
{
    assert(self);
    // The backstop moves too: a stalled broker is not the task's run time.
    for (size_t i = 0; i < self->n_leases; i++) {
        self->leases[i].deadline_ms += delta_ms;
        if (self->leases[i].hard_deadline_ms) {
            self->leases[i].hard_deadline_ms += delta_ms;
        }
    }
}

int64_t
sched_next_deadline_ms(const sched_t *self)
{
    assert(self);
    if (self->n_leases == 0) {
        return -1;
    }
    int64_t best = self->leases[0].deadline_ms;
    for (size_t i = 1; i < self->n_leases; i++) {
        if (self->leases[i].deadline_ms < best) {
            best = self->leases[i].deadline_ms;
        }
    }
    return best;
}

const sched_lease_t *
sched_lease_of_task(const sched_t *self, int64_t plan, size_t idx)
{
    assert(self);
    for (size_t i = 0; i < self->n_leases; i++) {
        if (self->leases[i].plan == plan && self->leases[i].idx == idx) {
            return &self->leases[i];
        }
    }
    return NULL;
}
