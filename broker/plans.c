// plans: the console side of the protocol and the DAG bookkeeping.
//
// Every change goes to the ledger first as a compare-and-set and reaches
// sched only when the ledger agreed; a refusal the broker did not expect
// means memory drifted, and the turn ends with a rebuild from the ledger.
#include "broker/broker_int.h"

#include "common/log.h"
#include "common/xalloc.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG "broker.plans"

static bool
s_terminal(proto_task_state_t s)
{
    return s >= PROTO_TASK_SUCCEEDED;
}

static int64_t
s_backoff_ms(broker_t *b, uint32_t used)
{
    int64_t d = b->cfg->backoff_base_ms;
    for (uint32_t i = 1; i < used && d < b->cfg->backoff_cap_ms; i++) {
        d *= 2;
    }
    if (d > b->cfg->backoff_cap_ms) {
        d = b->cfg->backoff_cap_ms;
    }
    // Equal jitter: half fixed, half random, so retries of many tasks
    // failing together spread out.
    int64_t half = d / 2;
    return half + (half > 0 ? (int64_t) randombytes_uniform(
                                  (uint32_t) (half > UINT32_MAX ? UINT32_MAX
                                                                : half + 1))
                            : 0);
}

static ledger_rc_t
s_next_state(broker_t *b, const sched_lease_t *l, const char *task,
             const ledger_attempt_end_t *end, proto_task_state_t *to,
             int64_t *not_before)
{
    *not_before = 0;
    switch (end->outcome) {
    case LEDGER_ATTEMPT_SUCCEEDED:
        *to = PROTO_TASK_SUCCEEDED;
        return LEDGER_OK;
    case LEDGER_ATTEMPT_RELEASED:
        *to = PROTO_TASK_READY;
        return LEDGER_OK;
    case LEDGER_ATTEMPT_CANCELLED:
        *to = PROTO_TASK_CANCELLED;
        return LEDGER_OK;
    default:
        break;
    }
    uint32_t used = 0;
    ledger_rc_t rc = ledger_task_attempts_used(b->ledger, l->plan, task, &used);
    if (rc != LEDGER_OK) {
        return rc;
    }
    used++;  // this attempt
    const wp_task_t *t = &sched_workplan(b->sched, l->plan)->tasks[l->idx];
    if ((int64_t) used >= t->retries + 1) {
        *to = PROTO_TASK_DEAD;
    } else {
        *to = PROTO_TASK_READY;
        *not_before = b->now_wall + s_backoff_ms(b, used);
    }
    return LEDGER_OK;
}

ledger_rc_t
plans_finish(broker_t *b, const sched_lease_t *lease,
             const ledger_attempt_end_t *end, const char *actor)
{
    const workplan_t *wp = sched_workplan(b->sched, lease->plan);
    if (!wp) {
        return LEDGER_MISS;
    }
    const char *task = wp->tasks[lease->idx].id;
    proto_task_state_t to;
    int64_t nb;
    ledger_rc_t rc = s_next_state(b, lease, task, end, &to, &nb);
    if (rc == LEDGER_OK) {
        rc = ledger_task_finish(b->ledger, lease->plan, task, lease->token,
                                lease->instance, end, to, nb, actor,
                                b->now_wall);
    }
    if (rc != LEDGER_OK) {
        if (rc == LEDGER_ERROR) {
            broker_fail_turn(b);
        }
        return rc;
    }
    int64_t plan = lease->plan;
    size_t idx = lease->idx;
    sched_lease_remove(b->sched, lease->token);
    sched_set(b->sched, plan, idx, to, nb);
    log_info(LOG, "plan %lld task '%s': %s", (long long) plan, task,
             proto_task_state_name(to));
    if (s_terminal(to)) {
        sched_moves_t moves = {0};
        sched_cascade(b->sched, plan, idx, &moves);
        plans_apply(b, &moves, actor);
        sched_moves_release(&moves);
        plans_check_done(b, plan, actor);
    }
    return LEDGER_OK;
}

static ledger_rc_t
s_cancel_leased(broker_t *b, const sched_move_t *m, const char *actor)
{
    const sched_lease_t *l = sched_lease_of_task(b->sched, m->plan, m->idx);
    if (!l) {
        return LEDGER_MISS;
    }
    const char *task = sched_workplan(b->sched, m->plan)->tasks[m->idx].id;
    ledger_attempt_end_t end = {.outcome = LEDGER_ATTEMPT_CANCELLED,
                                .error = "cancelled"};
    ledger_rc_t rc = ledger_task_finish(b->ledger, m->plan, task, l->token,
                                        NULL, &end, PROTO_TASK_CANCELLED, 0,
                                        actor, b->now_wall);
    if (rc != LEDGER_OK) {
        return rc;
    }
    drone_t *d = drones_find(b, l->instance);
    if (d) {
        proto_msg_t *stop = proto_msg_new(PROTO_MSG_STOP);
        stop->u.stop.plan = m->plan;
        stop->u.stop.task = xstrdup(task);
        stop->u.stop.token = l->token;
        stop->u.stop.reason = xstrdup("cancelled");
        broker_queue(b, &d->rid, &stop, true);
    }
    sched_lease_remove(b->sched, l->token);
    return LEDGER_OK;
}

bool
plans_apply(broker_t *b, const sched_moves_t *moves, const char *actor)
{
    for (size_t i = 0; i < moves->count; i++) {
        const sched_move_t *m = &moves->items[i];
        const workplan_t *wp = sched_workplan(b->sched, m->plan);
        ledger_rc_t rc;
        if (m->from == PROTO_TASK_LEASED) {
            rc = s_cancel_leased(b, m, actor);
        } else {
            rc = ledger_task_move(b->ledger, m->plan, wp->tasks[m->idx].id,
                                  m->from, m->to, actor, NULL, b->now_wall);
        }
        if (rc == LEDGER_ERROR) {
            broker_fail_turn(b);
            return false;
        }
        if (rc == LEDGER_MISS) {
            broker_desync(b, "a DAG move was refused by the ledger");
            continue;
        }
        sched_set(b->sched, m->plan, m->idx, m->to, 0);
    }
    return true;
}

void
plans_check_done(broker_t *b, int64_t plan, const char *actor)
{
    bool all = false;
    if (!sched_plan_done(b->sched, plan, &all)) {
        return;
    }
    ledger_plan_state_t to = all ? LEDGER_PLAN_SUCCEEDED : LEDGER_PLAN_FAILED;
    ledger_rc_t rc = ledger_plan_move(b->ledger, plan, LEDGER_PLAN_RUNNING, to,
                                      actor, b->now_wall);
    if (rc == LEDGER_ERROR) {
        broker_fail_turn(b);
        return;
    }
    log_info(LOG, "plan %lld %s", (long long) plan,
             ledger_plan_state_name(to));
    sched_plan_remove(b->sched, plan);
}

// --- loading from the ledger ----------------------------------------------

typedef struct {
    int64_t plan;
    workplan_t *wp;
    proto_task_state_t *states;
    int64_t *not_before;
    sched_lease_t *leases;
    size_t n_leases;
    size_t next_idx;            // where the next task row should be
} s_loaded_t;

typedef struct {
    s_loaded_t *plans;
    size_t n;
    int64_t now_mono, now_wall, lease_ms, cap_ms;
    bool failed;
} s_loader_t;

static void
s_on_plan(void *arg, int64_t plan, const char *json)
{
    s_loader_t *ld = arg;
    wp_errors_t errs = {0};
    workplan_t *wp = NULL;
    if (workplan_parse(json, strlen(json), &wp, &errs) < 0) {
        char *text = wp_errors_format(&errs);
        log_error(LOG, "plan %lld in the ledger does not validate: %s",
                  (long long) plan, text);
        free(text);
        wp_errors_release(&errs);
        ld->failed = true;
        return;
    }
    ld->plans = xrealloc(ld->plans, (ld->n + 1) * sizeof *ld->plans);
    s_loaded_t *p = &ld->plans[ld->n++];
    memset(p, 0, sizeof *p);
    p->plan = plan;
    p->wp = wp;
    p->states = xcalloc(wp->n_tasks, sizeof *p->states);
    p->not_before = xcalloc(wp->n_tasks, sizeof *p->not_before);
}

// The ledger hands tasks over in workplan order, so the next index is
// almost always right; the search is only a fallback (a 100k-task plan must
// not cost 100k linear searches on every restart).
static long
s_index(s_loaded_t *p, const char *task)
{
    size_t i = p->next_idx;
    if (i < p->wp->n_tasks && strcmp(p->wp->tasks[i].id, task) == 0) {
        p->next_idx = i + 1;
        return (long) i;
    }
    return workplan_find(p->wp, task);
}

static void
s_on_task(void *arg, const ledger_task_row_t *row)
{
    s_loader_t *ld = arg;
    s_loaded_t *p = ld->n ? &ld->plans[ld->n - 1] : NULL;
    long idx = p && p->plan == row->plan ? s_index(p, row->task) : -1;
    if (idx < 0) {
        ld->failed = true;
        return;
    }
    p->states[idx] = row->state;
    // Backoff survives a restart but never beyond its cap from now.
    int64_t nb = row->not_before_ms;
    p->not_before[idx] = nb > ld->now_wall + ld->cap_ms ? ld->now_wall +
                                                               ld->cap_ms
                                                         : nb;
    if (row->state == PROTO_TASK_LEASED) {
        p->leases = xrealloc(p->leases, (p->n_leases + 1) * sizeof *p->leases);
        sched_lease_t *l = &p->leases[p->n_leases++];
        memset(l, 0, sizeof *l);
        l->token = row->token;
        l->plan = row->plan;
        l->idx = (size_t) idx;
        snprintf(l->instance, sizeof l->instance, "%s",
                 row->instance ? row->instance : "");
        // A restart is a grace: every lease gets a full lease time to be
        // renewed by its drone's next HELLO.  It counts as confirmed (the
        // drone had it before), so if it lapses it uses an attempt as it
        // always did.
        l->deadline_ms = ld->now_mono + ld->lease_ms;
        l->confirmed = true;
        int64_t timeout_s = p->wp->tasks[idx].timeout_s;
        l->hard_deadline_ms = timeout_s > 0 ? ld->now_mono +
                                                  timeout_s * 1000 +
                                                  ld->lease_ms
                                            : 0;
    }
}

static void
s_install(broker_t *b, s_loaded_t *p)
{
    sched_plan_add(b->sched, p->plan, &p->wp, p->states);
    for (size_t i = 0; p->states && i < sched_workplan(b->sched, p->plan)
                                              ->n_tasks;
         i++) {
        if (p->states[i] == PROTO_TASK_READY && p->not_before[i] > 0) {
            sched_set(b->sched, p->plan, i, PROTO_TASK_READY,
                      p->not_before[i]);
        }
    }
    for (size_t i = 0; i < p->n_leases; i++) {
        sched_lease_add(b->sched, &p->leases[i]);
    }
}

static int
s_finish_load(broker_t *b, s_loader_t *ld, ledger_rc_t rc)
{
    bool ok = rc == LEDGER_OK && !ld->failed;
    for (size_t i = 0; i < ld->n; i++) {
        s_loaded_t *p = &ld->plans[i];
        if (ok) {
            s_install(b, p);
        }
        workplan_destroy(&p->wp);
        free(p->states);
        free(p->not_before);
        free(p->leases);
    }
    free(ld->plans);
    return ok ? 0 : -1;
}

static void
s_loader_init(broker_t *b, s_loader_t *ld)
{
    memset(ld, 0, sizeof *ld);
    ld->now_mono = b->now_mono;
    ld->now_wall = b->now_wall;
    ld->lease_ms = b->cfg->lease_ms;
    ld->cap_ms = b->cfg->backoff_cap_ms;
}

int
plans_load(broker_t *b)
{
    s_loader_t ld;
    s_loader_init(b, &ld);
    ledger_rc_t rc = ledger_load(b->ledger, s_on_plan, s_on_task, &ld);
    int r = s_finish_load(b, &ld, rc);
    int64_t *ids = NULL;
    size_t n = sched_plans(b->sched, &ids);
    // A crash between a plan's last task ending and its own end leaves a
    // finished plan marked running; settle it now.
    for (size_t i = 0; r == 0 && i < n; i++) {
        bool all;
        if (sched_plan_done(b->sched, ids[i], &all) && broker_begin(b)) {
            plans_check_done(b, ids[i], "broker");
        }
    }
    free(ids);
    log_info(LOG, "loaded %zu running plans from the ledger", n);
    return r;
}

int
plans_load_one(broker_t *b, int64_t plan)
{
    s_loader_t ld;
    s_loader_init(b, &ld);
    ledger_rc_t rc = ledger_load_plan(b->ledger, plan, s_on_plan, s_on_task,
                                      &ld);
    return s_finish_load(b, &ld, rc);
}
