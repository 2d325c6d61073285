// sched_amend: what an amendment to a running plan means for sched — the
// states of the tasks that have not started, decided from their needs, and
// the plan's DAG swapped for its amended whole.  Pure, like the rest of
// sched.
#include "broker/sched_int.h"

#include "common/xalloc.h"

#include <assert.h>
#include <stdlib.h>

static bool
s_open(proto_task_state_t s)
{
    return s == PROTO_TASK_WAITING || s == PROTO_TASK_READY ||
           s == PROTO_TASK_BLOCKED;
}

static bool
s_fails(proto_task_state_t s)
{
    return s == PROTO_TASK_DEAD || s == PROTO_TASK_REJECTED ||
           s == PROTO_TASK_CANCELLED || s == PROTO_TASK_BLOCKED;
}

// The state task i starts over in, from its needs' states.
static proto_task_state_t
s_decide(const workplan_t *wp, size_t i, const proto_task_state_t *states)
{
    const wp_task_t *t = &wp->tasks[i];
    bool all = true;
    for (size_t k = 0; k < t->n_needs; k++) {
        proto_task_state_t s = states[t->need_idx[k]];
        if (s_fails(s)) {
            return PROTO_TASK_BLOCKED;
        }
        all = all && s == PROTO_TASK_SUCCEEDED;
    }
    if (!all) {
        return PROTO_TASK_WAITING;
    }
    return t->kind == WP_KIND_GATE ? PROTO_TASK_AWAITING_APPROVAL
                                   : PROTO_TASK_READY;
}

// Tasks in an order where every need comes before its dependents (Kahn;
// the workplan was validated, so there is no cycle).  Caller frees.
static size_t *
s_topo(const workplan_t *wp)
{
    size_t n = wp->n_tasks;
    size_t *left = xcalloc(n ? n : 1, sizeof *left);
    size_t *off = xcalloc(n + 1, sizeof *off);
    for (size_t i = 0; i < n; i++) {
        left[i] = wp->tasks[i].n_needs;
        for (size_t k = 0; k < wp->tasks[i].n_needs; k++) {
            off[wp->tasks[i].need_idx[k] + 1]++;
        }
    }
    for (size_t i = 0; i < n; i++) {
        off[i + 1] += off[i];
    }
    size_t *deps = xcalloc(off[n] ? off[n] : 1, sizeof *deps);
    size_t *fill = xcalloc(n ? n : 1, sizeof *fill);
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < wp->tasks[i].n_needs; k++) {
            size_t need = wp->tasks[i].need_idx[k];
            deps[off[need] + fill[need]++] = i;
        }
    }
    size_t *order = xcalloc(n ? n : 1, sizeof *order);
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (left[i] == 0) {
            order[len++] = i;
        }
    }
    for (size_t h = 0; h < len; h++) {
        size_t i = order[h];
        for (size_t k = off[i]; k < off[i + 1]; k++) {
            if (--left[deps[k]] == 0) {
                order[len++] = deps[k];
            }
        }
    }
    assert(len == n);
    free(left);
    free(off);
    free(deps);
    free(fill);
    return order;
}

void
sched_amend_states(const workplan_t *wp, const bool *fresh,
                   proto_task_state_t *states)
{
    assert(wp && fresh && (states || wp->n_tasks == 0));
    size_t *order = s_topo(wp);
    for (size_t h = 0; h < wp->n_tasks; h++) {
        size_t i = order[h];
        if (fresh[i] || s_open(states[i])) {
            states[i] = s_decide(wp, i, states);
        }
    }
    free(order);
}

void
sched_plan_swap(sched_t *self, int64_t plan, workplan_t **wp,
                const proto_task_state_t *states)
{
    assert(self && wp && *wp);
    sched__plan_t *p = sched__plan_find(self, plan);
    assert(p && p->wp->n_tasks <= (*wp)->n_tasks);
    size_t n_old = p->wp->n_tasks;
    int64_t *nb = xcalloc(n_old ? n_old : 1, sizeof *nb);
    uint8_t *was = xcalloc(n_old ? n_old : 1, sizeof *was);
    sched_attempts_t *att = xcalloc(n_old ? n_old : 1, sizeof *att);
    for (size_t i = 0; i < n_old; i++) {
        nb[i] = p->tasks[i].not_before_ms;
        was[i] = p->tasks[i].state;
        att[i] = sched_attempts(self, plan, i);
    }
    sched_plan_remove(self, plan);
    sched_plan_add(self, plan, wp, states);
    // A backoff or a gate's deadline stays with a task that kept its state;
    // its attempts stay with every task (a replaced one's budget is reset
    // by the caller, as the ledger's row was).
    for (size_t i = 0; i < n_old; i++) {
        sched_attempts_set(self, plan, i, att[i]);
        if (nb[i] && states[i] == was[i] &&
            (states[i] == PROTO_TASK_READY ||
             states[i] == PROTO_TASK_AWAITING_APPROVAL)) {
            sched_set(self, plan, i, states[i], nb[i]);
        }
    }
    free(nb);
    free(was);
    free(att);
}
