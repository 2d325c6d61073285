// amends: AMEND, a plan that changes while it runs (PROTOCOL.md "AMEND").
//
// The amendment is merged into the plan's workplan and the whole validated
// by common/amend.c, exactly as SUBMIT validates; then, in the open turn
// and before anything reaches sched: the new task rows, the replaced tasks'
// new definitions, the moves of every task whose state the amendment
// changes (cancelled; blocked by a cancelled need; waiting again once a
// failed need was routed around), the plan's stored workplan rewritten to
// the amended whole, and one 'amended' event with the sender as actor.
// Only when all of that is in the ledger does sched get the new DAG
// (sched_plan_swap), so a ledger error leaves memory as it was and the
// failed turn rebuilds it.
#include "broker/broker_int.h"

#include "common/amend.h"
#include "common/log.h"
#include "common/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG "broker.amends"

// Refuses a plan that ended for good or cannot be loaded; loads a failed
// one (an amendment may route around what failed it).  Returns true when
// the plan is loaded and may be amended; *loaded_here when this call
// loaded it (the caller unloads it again if the amendment is refused).
static bool
s_plan_ready(broker_t *b, router_in_t *in, int64_t plan,
             ledger_plan_state_t state, bool *loaded_here)
{
    *loaded_here = false;
    char *text = NULL;
    if (state == LEDGER_PLAN_SUCCEEDED || state == LEDGER_PLAN_CANCELLED) {
        text = xasprintf("plan %lld already %s: its end was reported; "
                         "submit a new plan", (long long) plan,
                         ledger_plan_state_name(state));
    } else if (!sched_has_plan(b->sched, plan)) {
        if (state == LEDGER_PLAN_FAILED && plans_load_one(b, plan) == 0) {
            *loaded_here = true;
            return true;
        }
        const char *why = plans_unloaded(b, plan);
        if (!why) {
            requests_internal(b, in);
            return false;
        }
        text = xasprintf("plan %lld is not loaded: %s", (long long) plan, why);
    }
    if (text) {
        requests_error(b, in, PROTO_E_CONFLICT, text);
        free(text);
        return false;
    }
    return true;
}

// ERROR INVALID with one detail line per error.
static void
s_refuse(broker_t *b, router_in_t *in, const wp_errors_t *errs)
{
    proto_msg_t *e = proto_error_new(in->msg->req, PROTO_E_INVALID,
                                     "amendment refused: %zu error%s",
                                     errs->count, errs->count == 1 ? "" : "s");
    for (size_t i = 0; i < errs->count; i++) {
        char *line = xasprintf("%s: %s", errs->items[i].path,
                               errs->items[i].message);
        proto_strv_push(&e->u.error.details, line);
        free(line);
    }
    broker_queue(b, &in->rid, &e, false);
}

// The states the amendment leaves (sched_amend_states), from the plan's
// states now (was, n_old entries).  Caller frees.
static proto_task_state_t *
s_new_states(const amend_t *a, const proto_task_state_t *was)
{
    size_t n = a->wp->n_tasks;
    proto_task_state_t *st = xcalloc(n, sizeof *st);
    bool *fresh = xcalloc(n, sizeof *fresh);
    for (size_t i = 0; i < n; i++) {
        st[i] = i < a->n_old ? was[i] : PROTO_TASK_WAITING;
        fresh[i] = i >= a->n_old;
    }
    for (size_t k = 0; k < a->n_cancelled; k++) {
        st[a->cancelled[k]] = PROTO_TASK_CANCELLED;
    }
    for (size_t k = 0; k < a->n_replaced; k++) {
        fresh[a->replaced[k]] = true;
    }
    sched_amend_states(a->wp, fresh, st);
    free(fresh);
    return st;
}

// Per task of the amended whole: whether the amendment replaced it (a
// lookup per task, not a search of a->replaced: both may be 100k long).
// Caller frees.
static bool *
s_replaced_set(const amend_t *a)
{
    bool *set = xcalloc(a->wp->n_tasks ? a->wp->n_tasks : 1, sizeof *set);
    for (size_t k = 0; k < a->n_replaced; k++) {
        set[a->replaced[k]] = true;
    }
    return set;
}

// Every row the amendment touches, in the open turn.  LEDGER_MISS means
// the ledger disagreed with memory about a task's state.
static ledger_rc_t
s_write_tasks(broker_t *b, int64_t plan, const amend_t *a,
              const proto_task_state_t *was, const proto_task_state_t *st,
              const char *actor)
{
    // Added rows first: a replaced task's new edges may name them.
    ledger_rc_t rc = ledger_plan_add_tasks(b->ledger, plan, a->wp, a->n_old,
                                           st, actor, b->now_wall);
    bool *replaced = s_replaced_set(a);
    for (size_t i = 0; rc == LEDGER_OK && i < a->n_old; i++) {
        const wp_task_t *t = &a->wp->tasks[i];
        if (replaced[i]) {
            rc = ledger_task_redefine(b->ledger, plan, t, was[i], st[i],
                                      actor, b->now_wall);
        } else if (st[i] != was[i]) {
            rc = ledger_task_move(b->ledger, plan, t->id, was[i], st[i],
                                  actor,
                                  st[i] == PROTO_TASK_CANCELLED
                                      ? "cancelled by an amendment"
                                      : "its needs changed by an amendment",
                                  b->now_wall);
        }
    }
    free(replaced);
    return rc;
}

static ledger_rc_t
s_write_plan(broker_t *b, int64_t plan, const amend_t *a,
             ledger_plan_state_t state, const char *actor)
{
    ledger_rc_t rc = LEDGER_OK;
    if (state == LEDGER_PLAN_FAILED) {
        rc = ledger_plan_move(b->ledger, plan, LEDGER_PLAN_FAILED,
                              LEDGER_PLAN_RUNNING, actor, b->now_wall);
    }
    if (rc == LEDGER_OK &&
        ledger_plan_set_workplan(b->ledger, plan, a->json,
                                 strlen(a->json)) < 0) {
        rc = LEDGER_ERROR;
    }
    if (rc == LEDGER_OK) {
        char *summary = amend_summary_json(a);
        rc = ledger_event(b->ledger, plan, NULL, actor, "amended", summary,
                          b->now_wall);
        free(summary);
    }
    return rc;
}

// A warning for each added or replaced task that starts blocked, naming
// the need that blocks it.
static void
s_warn_blocked(const amend_t *a, const proto_task_state_t *st,
               proto_strv_t *warnings)
{
    bool *replaced = s_replaced_set(a);
    for (size_t i = 0; i < a->wp->n_tasks && warnings->count < 16; i++) {
        if (st[i] != PROTO_TASK_BLOCKED || (i < a->n_old && !replaced[i])) {
            continue;
        }
        const wp_task_t *t = &a->wp->tasks[i];
        for (size_t k = 0; k < t->n_needs; k++) {
            proto_task_state_t s = st[t->need_idx[k]];
            if (s == PROTO_TASK_DEAD || s == PROTO_TASK_REJECTED ||
                s == PROTO_TASK_CANCELLED || s == PROTO_TASK_BLOCKED) {
                char *w = xasprintf("task '%s' is blocked: '%s', which it "
                                    "needs, is %s", t->id, t->needs[k],
                                    proto_task_state_name(s));
                proto_strv_push(warnings, w);
                free(w);
                break;
            }
        }
    }
    free(replaced);
}

static proto_msg_t *
s_reply_new(int64_t plan, const amend_t *a, const proto_task_state_t *st)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_AMEND_OK);
    proto_amend_ok_t *ok = &m->u.amend_ok;
    ok->plan = plan;
    for (size_t i = a->n_old; i < a->wp->n_tasks; i++) {
        proto_strv_push(&ok->added, a->wp->tasks[i].id);
    }
    for (size_t k = 0; k < a->n_cancelled; k++) {
        proto_strv_push(&ok->cancelled, a->wp->tasks[a->cancelled[k]].id);
    }
    for (size_t k = 0; k < a->n_replaced; k++) {
        proto_strv_push(&ok->replaced, a->wp->tasks[a->replaced[k]].id);
    }
    s_warn_blocked(a, st, &ok->warnings);
    return m;
}

// Gates the amendment made wait for a person (added, replaced, or whose
// needs now all succeeded) start waiting: hook and deadline.
static bool
s_start_gates(broker_t *b, int64_t plan, size_t n,
              const proto_task_state_t *was, size_t n_old,
              const proto_task_state_t *st)
{
    for (size_t i = 0; i < n; i++) {
        if (st[i] == PROTO_TASK_AWAITING_APPROVAL &&
            (i >= n_old || was[i] != PROTO_TASK_AWAITING_APPROVAL) &&
            !gates_started(b, plan, i)) {
            return false;
        }
    }
    return true;
}

// Applies a validated amendment in the open turn and answers.  Takes a.
static void
s_apply(broker_t *b, router_in_t *in, int64_t plan, amend_t **a_p,
        ledger_plan_state_t state, const proto_task_state_t *was)
{
    amend_t *a = *a_p;
    proto_task_state_t *st = s_new_states(a, was);
    ledger_rc_t rc = s_write_tasks(b, plan, a, was, st, in->name);
    if (rc == LEDGER_OK) {
        rc = s_write_plan(b, plan, a, state, in->name);
    }
    if (rc != LEDGER_OK) {
        if (rc == LEDGER_MISS) {
            broker_desync(b, "an amendment's compare-and-set was refused");
        }
        requests_internal(b, in);
        free(st);
        amend_destroy(a_p);
        return;
    }
    proto_msg_t *ok = s_reply_new(plan, a, st);
    size_t n = a->wp->n_tasks, n_old = a->n_old;
    log_info(LOG, "plan %lld amended by '%s': %zu added, %zu cancelled, "
                  "%zu replaced", (long long) plan, in->name, n - n_old,
             a->n_cancelled, a->n_replaced);
    sched_plan_swap(b->sched, plan, &a->wp, st);
    // A replaced task starts with a fresh budget and no backoff (the
    // ledger's redefine cleared it; the swap kept the old one).
    for (size_t k = 0; k < a->n_replaced; k++) {
        size_t i = a->replaced[k];
        sched_attempts_t att = sched_attempts(b->sched, plan, i);
        att.used = 0;  // its attempt rows stay: runs does not change
        sched_attempts_set(b->sched, plan, i, att);
        if (st[i] == PROTO_TASK_READY) {
            sched_set(b->sched, plan, i, PROTO_TASK_READY, 0);
        }
    }
    amend_destroy(a_p);
    if (s_start_gates(b, plan, n, was, n_old, st)) {
        plans_check_done(b, plan, in->name);
        requests_reply(b, in, &ok, true);
    } else {
        proto_msg_destroy(&ok);
        requests_internal(b, in);
    }
    free(st);
}

void
amends_request(broker_t *b, router_in_t *in)
{
    const proto_amend_t *q = &in->msg->u.amend;
    ledger_plan_state_t state;
    bool loaded_here;
    if (!requests_plan_state(b, in, q->plan, &state) ||
        !s_plan_ready(b, in, q->plan, state, &loaded_here)) {
        return;
    }
    const workplan_t *wp = sched_workplan(b->sched, q->plan);
    size_t n = wp->n_tasks;
    proto_task_state_t *was = xcalloc(n ? n : 1, sizeof *was);
    const char **names = xcalloc(n ? n : 1, sizeof *names);
    for (size_t i = 0; i < n; i++) {
        was[i] = sched_get(b->sched, q->plan, i);
        names[i] = proto_task_state_name(was[i]);
    }
    amend_t *a = NULL;
    wp_errors_t errs = {0};
    if (amend_merge(wp, names, q->amendment, strlen(q->amendment), &a,
                    &errs) < 0) {
        s_refuse(b, in, &errs);
        if (loaded_here) {
            sched_plan_remove(b->sched, q->plan);
        }
    } else if (!broker_begin(b)) {
        requests_internal(b, in);
        amend_destroy(&a);
    } else {
        s_apply(b, in, q->plan, &a, state, was);
    }
    wp_errors_release(&errs);
    free(names);
    free(was);
    // As after a big submit (requests.c): the merge's parse and the old
    // plan leave freed heap that glibc would otherwise keep.
    if (n >= BROKER_TRIM_TASKS) {
        xalloc_trim();
    }
}
