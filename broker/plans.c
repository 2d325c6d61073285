// plans: the DAG bookkeeping (ending attempts with retry, backoff or
// death, applying the moves that follow, ending plans) and loading running
// plans from the ledger at start, after a desync, and for a retry.
//
// Every change goes to the ledger first as a compare-and-set and reaches
// sched only when the ledger agreed; a refusal the broker did not expect
// means memory drifted, and the turn ends with a rebuild from the ledger.
// Console requests are answered in requests.c.
#include "broker/broker_int.h"

#include "common/log.h"
#include "common/xalloc.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG "broker.plans"

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

// Where a finished attempt leaves its task; used is the task's attempts
// of the budget before this one (sched_attempts: nothing is read).
static void
s_next_state(broker_t *b, const sched_lease_t *l, uint32_t used,
             const ledger_attempt_end_t *end, proto_task_state_t *to,
             int64_t *not_before)
{
    *not_before = 0;
    switch (end->outcome) {
    case LEDGER_ATTEMPT_SUCCEEDED:
        *to = PROTO_TASK_SUCCEEDED;
        return;
    case LEDGER_ATTEMPT_RELEASED:
        *to = PROTO_TASK_READY;
        return;
    case LEDGER_ATTEMPT_CANCELLED:
        *to = PROTO_TASK_CANCELLED;
        return;
    default:
        break;
    }
    used++;  // this attempt
    const wp_task_t *t = &sched_workplan(b->sched, l->plan)->tasks[l->idx];
    if ((int64_t) used >= t->retries + 1) {
        *to = PROTO_TASK_DEAD;
    } else {
        *to = PROTO_TASK_READY;
        *not_before = b->now_wall + s_backoff_ms(b, used);
    }
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
    sched_attempts_t att = sched_attempts(b->sched, lease->plan, lease->idx);
    s_next_state(b, lease, att.used, end, &to, &nb);
    ledger_rc_t rc = ledger_task_finish(b->ledger, lease->plan, task,
                                        lease->token, att.runs,
                                        lease->instance, end, to, nb, actor,
                                        b->now_wall);
    if (rc != LEDGER_OK) {
        if (rc == LEDGER_ERROR) {
            broker_fail_turn(b);
        }
        return rc;
    }
    int64_t plan = lease->plan;
    size_t idx = lease->idx;
    tails_drop(b, lease->token);
    sched_lease_remove(b->sched, lease->token);
    sched_set(b->sched, plan, idx, to, nb);
    att.used += ledger_outcome_uses_budget(end->outcome);
    sched_attempts_set(b->sched, plan, idx, att);
    // DEBUG, not INFO: one line per finished task was most of the log
    // (and ~3% of the broker's instructions) at 30k tasks/s; the events
    // table has every transition, and a plan's end stays INFO.
    log_debug_with(LOG, LOG_FIELDS(LOG_INT("plan", plan), LOG_STR("task", task),
                                   LOG_INT("token", lease->token),
                                   LOG_STR("drone", lease->instance)),
                   "plan %lld task '%s': %s", (long long) plan, task,
                   proto_task_state_name(to));
    if (proto_task_state_is_terminal(to)) {
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
    ledger_rc_t rc = ledger_task_finish(
        b->ledger, m->plan, task, l->token,
        sched_attempts(b->sched, m->plan, m->idx).runs, NULL, &end,
        PROTO_TASK_CANCELLED, 0, actor, b->now_wall);
    if (rc != LEDGER_OK) {
        return rc;
    }
    drone_t *d = drones_find(b, l->instance);
    if (d) {
        drones_stop(b, &d->rid, m->plan, task, l->token, "cancelled", true);
    }
    tails_drop(b, l->token);
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
        if (m->to == PROTO_TASK_AWAITING_APPROVAL &&
            !gates_started(b, m->plan, m->idx)) {
            return false;
        }
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
    log_info_with(LOG, LOG_FIELDS(LOG_INT("plan", plan)), "plan %lld %s",
                  (long long) plan, ledger_plan_state_name(to));
    sched_plan_remove(b->sched, plan);
}

// --- loading from the ledger ----------------------------------------------
//
// The ledger hands over each running plan followed by its task rows.  A
// plan whose rows do not fit its workplan (it no longer validates, a row
// names no task of it, a task is missing or leased without a holder, a
// token is held twice) is not loaded: the broker logs which and why,
// remembers the reason for status, and serves every other plan.

typedef struct {
    int64_t plan;
    workplan_t *wp;
    char *why;                  // owned; set once the plan cannot be loaded
    proto_task_state_t *states;
    int64_t *not_before;
    sched_attempts_t *attempts;
    bool *seen;                 // a row arrived for this task index
    size_t n_seen;
    sched_lease_t *leases;
    size_t n_leases;
    size_t *clamped;            // tasks whose backoff was cut to the cap
    size_t n_clamped;
    size_t next_idx;            // where the next task row should be
} s_loaded_t;

typedef struct {
    s_loaded_t *plans;
    size_t n, cap;
    int64_t now_mono, now_wall, lease_ms, cap_ms;
} s_loader_t;

// Marks p as not loadable (the first reason wins).
static void
s_reject(s_loaded_t *p, char *why)
{
    if (p->why) {
        free(why);
        return;
    }
    p->why = why;
}

static void
s_on_plan(void *arg, int64_t plan, const char *json)
{
    s_loader_t *ld = arg;
    if (ld->n == ld->cap) {
        ld->cap = ld->cap ? 2 * ld->cap : 8;
        ld->plans = xrealloc(ld->plans, ld->cap * sizeof *ld->plans);
    }
    s_loaded_t *p = &ld->plans[ld->n++];
    memset(p, 0, sizeof *p);
    p->plan = plan;
    wp_errors_t errs = {0};
    if (!json) {
        s_reject(p, xstrdup("it has no workplan"));
        return;
    }
    if (workplan_parse_stored(json, strlen(json), &p->wp, &errs) < 0) {
        char *text = wp_errors_format(&errs);
        s_reject(p, xasprintf("its workplan no longer validates: %s", text));
        free(text);
        wp_errors_release(&errs);
        return;
    }
    size_t n = p->wp->n_tasks;
    p->states = xcalloc(n ? n : 1, sizeof *p->states);
    p->not_before = xcalloc(n ? n : 1, sizeof *p->not_before);
    p->attempts = xcalloc(n ? n : 1, sizeof *p->attempts);
    p->seen = xcalloc(n ? n : 1, sizeof *p->seen);
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

// What makes a row unusable, or NULL (caller frees).
static char *
s_bad_row(s_loaded_t *p, const ledger_task_row_t *row, long idx)
{
    if (idx < 0) {
        return xasprintf("task '%s' in the ledger is not in its workplan",
                         row->task);
    }
    if (p->seen[idx]) {
        return xasprintf("task '%s' is in the ledger twice", row->task);
    }
    if (row->state == PROTO_TASK_LEASED
        && (row->token == 0 || !row->instance || !row->instance[0]
            || strlen(row->instance) >= sizeof p->leases->instance)) {
        return xasprintf("task '%s' is leased without a token or a drone "
                         "instance", row->task);
    }
    return NULL;
}

static void
s_add_lease(s_loader_t *ld, s_loaded_t *p, const ledger_task_row_t *row,
            size_t idx)
{
    p->leases = xrealloc(p->leases, (p->n_leases + 1) * sizeof *p->leases);
    sched_lease_t *l = &p->leases[p->n_leases++];
    memset(l, 0, sizeof *l);
    l->token = row->token;
    l->plan = row->plan;
    l->idx = idx;
    snprintf(l->instance, sizeof l->instance, "%s", row->instance);
    // A restart is a grace: every lease gets a full lease time to be
    // renewed by its drone's next HELLO.  It counts as confirmed (the drone
    // had it before), so if it lapses it uses an attempt as it always did.
    l->deadline_ms = ld->now_mono + ld->lease_ms;
    l->confirmed = true;
    int64_t timeout_s = p->wp->tasks[idx].timeout_s;
    l->hard_deadline_ms = timeout_s > 0 ? ld->now_mono + timeout_s * 1000 +
                                              ld->lease_ms
                                        : 0;
}

static void
s_on_task(void *arg, const ledger_task_row_t *row)
{
    s_loader_t *ld = arg;
    s_loaded_t *p = ld->n ? &ld->plans[ld->n - 1] : NULL;
    // ledger_load hands each plan's rows right after the plan.
    if (!p || p->plan != row->plan || p->why) {
        return;
    }
    long idx = s_index(p, row->task);
    char *bad = s_bad_row(p, row, idx);
    if (bad) {
        s_reject(p, bad);
        return;
    }
    p->seen[idx] = true;
    p->n_seen++;
    p->states[idx] = row->state;
    p->attempts[idx] = (sched_attempts_t) {.used = row->attempts_used,
                                           .runs = row->attempts_total};
    // Backoff survives a restart but never beyond its cap from now (the
    // ledger is told too, or it would refuse the lease until the old end).
    // A gate's deadline in the same column is kept as it is.
    int64_t nb = row->not_before_ms, cap = ld->now_wall + ld->cap_ms;
    p->not_before[idx] =
        nb > cap && row->state == PROTO_TASK_READY ? cap : nb;
    if (row->state == PROTO_TASK_READY && nb > cap) {
        p->clamped = xrealloc(p->clamped,
                              (p->n_clamped + 1) * sizeof *p->clamped);
        p->clamped[p->n_clamped++] = (size_t) idx;
    }
    if (row->state == PROTO_TASK_LEASED) {
        s_add_lease(ld, p, row, (size_t) idx);
    }
}

static int
s_cmp_token(const void *a, const void *b)
{
    const sched_lease_t *x = a, *y = b;
    return x->token < y->token ? -1 : x->token > y->token;
}

// The checks a plan can only pass once all its rows are in: every task
// has a row, and no lease token is held twice (here or by a plan already
// installed).
static void
s_check_whole(broker_t *b, s_loaded_t *p)
{
    if (p->why) {
        return;
    }
    if (p->n_seen != p->wp->n_tasks) {
        s_reject(p, xasprintf("its workplan has %zu tasks but the ledger "
                              "holds %zu of them", p->wp->n_tasks,
                              p->n_seen));
        return;
    }
    if (p->n_leases > 1) {
        qsort(p->leases, p->n_leases, sizeof *p->leases, s_cmp_token);
    }
    for (size_t i = 0; i < p->n_leases; i++) {
        uint64_t t = p->leases[i].token;
        if ((i > 0 && p->leases[i - 1].token == t)
            || sched_lease_get(b->sched, t)) {
            s_reject(p, xasprintf("lease token %llu is held twice",
                                  (unsigned long long) t));
            return;
        }
    }
}

// Stores the backoffs the load cut to the cap.  LEDGER_ERROR fails the
// load; a miss means there was nothing left to cut.
static ledger_rc_t
s_store_clamps(broker_t *b, const s_loaded_t *p)
{
    for (size_t i = 0; i < p->n_clamped; i++) {
        size_t idx = p->clamped[i];
        if (!broker_begin(b)
            || ledger_task_backoff(b->ledger, p->plan, p->wp->tasks[idx].id,
                                   p->not_before[idx], "broker", b->now_wall)
                   == LEDGER_ERROR) {
            return LEDGER_ERROR;
        }
    }
    return LEDGER_OK;
}

static void
s_install(broker_t *b, s_loaded_t *p)
{
    sched_plan_add(b->sched, p->plan, &p->wp, p->states);
    size_t n = sched_workplan(b->sched, p->plan)->n_tasks;
    for (size_t i = 0; i < n; i++) {
        sched_attempts_set(b->sched, p->plan, i, p->attempts[i]);
        if (p->states[i] == PROTO_TASK_READY && p->not_before[i] > 0) {
            sched_set(b->sched, p->plan, i, PROTO_TASK_READY,
                      p->not_before[i]);
        } else if (p->states[i] == PROTO_TASK_AWAITING_APPROVAL) {
            gates_loaded(b, p->plan, i, p->not_before[i]);
        }
    }
    for (size_t i = 0; i < p->n_leases; i++) {
        sched_lease_add(b->sched, &p->leases[i]);
    }
}

static void
s_forget_unloaded(broker_t *b, int64_t plan)
{
    for (size_t i = 0; i < b->n_unloaded; i++) {
        if (b->unloaded[i].plan == plan) {
            free(b->unloaded[i].why);
            b->unloaded[i] = b->unloaded[--b->n_unloaded];
            return;
        }
    }
}

// Remembers why plan is not loaded (takes why).
static void
s_remember_unloaded(broker_t *b, int64_t plan, char **why)
{
    log_error(LOG, "plan %lld cannot be loaded from the ledger: %s; it is "
                   "skipped, the other plans run on", (long long) plan, *why);
    s_forget_unloaded(b, plan);
    b->unloaded = xrealloc(b->unloaded,
                           (b->n_unloaded + 1) * sizeof *b->unloaded);
    b->unloaded[b->n_unloaded++] = (unloaded_t){.plan = plan, .why = *why};
    *why = NULL;
}

// Installs every plan that passed, remembers why the others did not, and
// frees the loader.  Returns how many plans failed, or -1 when the ledger
// itself failed (nothing installed).
static int
s_finish_load(broker_t *b, s_loader_t *ld, ledger_rc_t rc)
{
    int failed = 0;
    for (size_t i = 0; i < ld->n; i++) {
        s_loaded_t *p = &ld->plans[i];
        if (rc == LEDGER_OK) {
            s_check_whole(b, p);
        }
        if (rc == LEDGER_OK && p->why) {
            s_remember_unloaded(b, p->plan, &p->why);
            failed++;
        } else if (rc == LEDGER_OK
                   && (rc = s_store_clamps(b, p)) == LEDGER_OK) {
            s_forget_unloaded(b, p->plan);
            s_install(b, p);
        }
        workplan_destroy(&p->wp);
        free(p->why);
        free(p->states);
        free(p->not_before);
        free(p->attempts);
        free(p->seen);
        free(p->leases);
        free(p->clamped);
    }
    free(ld->plans);
    return rc == LEDGER_OK ? failed : -1;
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
    plans_unloaded_clear(b);
    gates_forget(b);
    ledger_rc_t rc = ledger_load(b->ledger, s_on_plan, s_on_task, &ld);
    int failed = s_finish_load(b, &ld, rc);
    int64_t *ids = NULL;
    size_t n = sched_plans(b->sched, &ids);
    // A crash between a plan's last task ending and its own end leaves a
    // finished plan marked running; settle it now.
    for (size_t i = 0; failed >= 0 && i < n; i++) {
        bool all;
        if (sched_plan_done(b->sched, ids[i], &all) && broker_begin(b)) {
            plans_check_done(b, ids[i], "broker");
        }
    }
    free(ids);
    // Parsing the stored workplans peaks far above what stays loaded.
    xalloc_trim();
    if (failed > 0) {
        log_info(LOG, "loaded %zu running plans from the ledger; %d could "
                      "not be loaded", n, failed);
    } else if (failed == 0) {
        log_info(LOG, "loaded %zu running plans from the ledger", n);
    }
    return failed < 0 ? -1 : 0;
}

int
plans_load_one(broker_t *b, int64_t plan)
{
    s_loader_t ld;
    s_loader_init(b, &ld);
    ledger_rc_t rc = ledger_load_plan(b->ledger, plan, s_on_plan, s_on_task,
                                      &ld);
    if (rc == LEDGER_MISS) {
        rc = LEDGER_OK;
    }
    int failed = s_finish_load(b, &ld, rc);
    return failed == 0 && sched_has_plan(b->sched, plan) ? 0 : -1;
}

const char *
plans_unloaded(const broker_t *b, int64_t plan)
{
    for (size_t i = 0; i < b->n_unloaded; i++) {
        if (b->unloaded[i].plan == plan) {
            return b->unloaded[i].why;
        }
    }
    return NULL;
}

void
plans_unloaded_clear(broker_t *b)
{
    for (size_t i = 0; i < b->n_unloaded; i++) {
        free(b->unloaded[i].why);
    }
    free(b->unloaded);
    b->unloaded = NULL;
    b->n_unloaded = 0;
}
