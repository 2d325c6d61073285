// explain: why a task is not running, or what it does instead — one
// function (explain_task) is the source of STATUS's waiting_reason and of
// EXPLAIN's reply, so the two never disagree.
//
// It reads what the broker alone knows: sched's picture of the plan (needs,
// backoff, requires; sched_why), the connected drones and their tags, the
// leases and when their drones were last heard from, the model limits and
// the plans' token budgets.  Times in sentences are UTC; the details carry
// wall-clock ms.
#include "broker/broker_int.h"

#include "common/xalloc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// A drone silent for longer than this many heartbeats has "stopped": one
// beat before liveness gives it up (PROTO_LIVENESS_BEATS), so a person
// hears of a silent drone while its leases still stand.
#define S_SILENT_BEATS (PROTO_LIVENESS_BEATS - 1)

struct explain_ctx {
    const char *const *const *tags;   // every connected drone's tags
    const size_t *n_tags;
    size_t n_drones;
    drones_used_t used;               // budgets: one ledger read per plan
};

explain_ctx_t *
explain_ctx_new(broker_t *b)
{
    explain_ctx_t *c = xcalloc(1, sizeof *c);
    drones_tag_table(b, &c->tags, &c->n_tags, &c->n_drones);
    return c;
}

void
explain_ctx_destroy(explain_ctx_t **self_p)
{
    explain_ctx_t *c = *self_p;
    if (!c) {
        return;
    }
    drones_used_release(&c->used);
    free((void *) c->tags);
    free((void *) c->n_tags);
    free(c);
    *self_p = NULL;
}

// HH:MM:SS UTC of a wall-clock ms.
static void
s_clock(int64_t ms, char *buf, size_t len)
{
    time_t secs = (time_t) (ms / 1000);
    struct tm tm;
    if (!gmtime_r(&secs, &tm) || !strftime(buf, len, "%H:%M:%S UTC", &tm)) {
        snprintf(buf, len, "?");
    }
}

static void
s_set(proto_explain_ok_t *x, const char *code, char *reason)
{
    free(x->code);
    free(x->reason);
    x->code = xstrdup(code);
    x->reason = reason;
}

static const char *
s_id(const workplan_t *wp, size_t idx)
{
    return wp->tasks[idx].id;
}

// Waiting: the needs that have not succeeded, each with its state.
static void
s_needs(broker_t *b, int64_t plan, const sched_why_t *why,
        proto_explain_ok_t *x)
{
    const workplan_t *wp = sched_workplan(b->sched, plan);
    char *s = xstrdup("waiting for ");
    for (size_t k = 0; k < why->n_needs; k++) {
        const char *st = proto_task_state_name(
            sched_get(b->sched, plan, why->needs[k]));
        proto_strv_push(&x->needs, s_id(wp, why->needs[k]));
        proto_strv_push(&x->need_states, st);
        if (k < 3) {
            char *next = xasprintf("%s%s'%s' (%s)", s, k ? ", " : "",
                                   s_id(wp, why->needs[k]), st);
            free(s);
            s = next;
        }
    }
    x->more_needs = (uint32_t) (why->n_pending - why->n_needs);
    if (why->n_pending > 3) {
        char *next = xasprintf("%s and %zu more", s, why->n_pending - 3);
        free(s);
        s = next;
    }
    s_set(x, "waiting_on_needs", s);
}

// A prompt task whose model had its --model-rpm dispatches in the window:
// "model NAME: N requests per minute reached; next at HH:MM:SS UTC".
static bool
s_rate(broker_t *b, int64_t plan, size_t idx, proto_explain_ok_t *x)
{
    int64_t max, open_ms;
    if (!drones_rate_full(b, plan, idx, &max, &open_ms)) {
        return false;
    }
    const char *model = sched_workplan(b->sched, plan)->tasks[idx].model;
    char when[32], per[48] = "minute";
    x->until_ms = b->now_wall + open_ms - b->now_mono;
    s_clock(x->until_ms + 999, when, sizeof when);
    int64_t window = rate_window_ms(b->rate);
    if (window != BROKER_RPM_WINDOW_MS) {
        snprintf(per, sizeof per, "%" PRId64 " ms", window);
    }
    x->model = xstrdup(model ? model : "");
    x->limit = (uint32_t) max;
    s_set(x, "model_rate", xasprintf("model %s: %" PRId64 " requests per %s "
                                     "reached; next at %s",
                                     model ? model : "(the drone's default)",
                                     max, per, when));
    return true;
}

// Ready: what sched says holds it, then the broker's own limits.  Returns
// false when nothing holds it (it starts when a drone has a free slot).
static bool
s_ready(broker_t *b, explain_ctx_t *c, int64_t plan, size_t idx,
        const sched_why_t *why, proto_explain_ok_t *x)
{
    char when[32];
    size_t n = 0;
    int64_t used, budget, max;
    switch (why->code) {
    case SCHED_WHY_BACKOFF:
        s_clock(why->not_before_ms, when, sizeof when);
        x->until_ms = why->not_before_ms;
        s_set(x, "backoff", xasprintf("in backoff for %" PRId64 " s, until "
                                      "%s (after a failed attempt)",
                                      (why->not_before_ms - b->now_wall +
                                       999) / 1000, when));
        return true;
    case SCHED_WHY_NO_DRONES:
        s_set(x, "no_drones", xstrdup("no connected drones"));
        return true;
    case SCHED_WHY_TAGS:
        for (size_t k = 0; k < why->n_tags; k++) {
            proto_strv_push(&x->tags, why->tags[k]);
        }
        s_set(x, "no_drone_offers_tag",
              sched_why_text(b->sched, plan, why, b->now_wall));
        return true;
    case SCHED_WHY_NEEDS:
    case SCHED_WHY_NONE:
        break;
    }
    if (drones_budget_spent(b, &c->used, plan, idx, &used, &budget)) {
        x->used = used;
        x->budget = budget;
        s_set(x, "budget_spent", xasprintf("token budget spent: used %"
                                           PRId64 " of %" PRId64, used,
                                           budget));
        return true;
    }
    if ((max = drones_model_full(b, plan, idx, &n)) >= 0) {
        const char *model = sched_workplan(b->sched, plan)->tasks[idx].model;
        x->model = xstrdup(model ? model : "");
        x->limit = (uint32_t) max;
        x->in_flight = (uint32_t) n;
        s_set(x, "model_limit", xasprintf("model limit reached (%zu in "
                                          "flight)", n));
        return true;
    }
    if (s_rate(b, plan, idx, x)) {
        return true;
    }
    s_set(x, "ready", xstrdup("ready: it starts when a drone that offers "
                              "what it requires has a free slot"));
    return false;
}

// A gate: its question, since when it waits, and when it times out.
static void
s_gate(broker_t *b, int64_t plan, size_t idx, const proto_task_info_t *row,
       proto_explain_ok_t *x)
{
    int64_t deadline = sched_not_before(b->sched, plan, idx);
    char until[64] = "", since[48] = "", when[32];
    if (deadline > 0) {
        int64_t left_s = (deadline - b->now_wall + 999) / 1000;
        snprintf(until, sizeof until, "; rejected in %lld s unless answered",
                 (long long) (left_s > 0 ? left_s : 0));
        x->until_ms = deadline;
    }
    if (row && row->ready_ms > 0) {
        s_clock(row->ready_ms, when, sizeof when);
        snprintf(since, sizeof since, " since %s", when);
        x->since_ms = row->ready_ms;
    }
    s_set(x, "awaiting_approval",
          xasprintf("waits for a person%s (an operator: approve or "
                    "reject): %s%s", since,
                    sched_workplan(b->sched, plan)->tasks[idx].gate, until));
}

// Leased: running on a drone that is heard from, or held by one whose
// heartbeats stopped (the lease then ends on its own).
static void
s_leased(broker_t *b, int64_t plan, size_t idx, const proto_task_info_t *row,
         proto_explain_ok_t *x)
{
    const sched_lease_t *l = sched_lease_of_task(b->sched, plan, idx);
    drone_t *d = l ? drones_find(b, l->instance) : NULL;
    char since[32] = "?", ends[32];
    x->drone = xstrdup(d ? d->name : row && row->drone ? row->drone : "?");
    if (row && row->started_ms > 0) {
        x->since_ms = row->started_ms;
        s_clock(row->started_ms, since, sizeof since);
    }
    int64_t silent = d ? b->now_mono - d->last_seen_ms : -1;
    if (l && (!d || !d->connected ||
              silent > S_SILENT_BEATS * b->cfg->heartbeat_ms)) {
        x->until_ms = b->now_wall + (l->deadline_ms - b->now_mono);
        x->last_seen_ms = d ? b->now_wall - silent : 0;
        s_clock(x->until_ms, ends, sizeof ends);
        s_set(x, "drone_silent",
              d ? xasprintf("leased to drone '%s', whose heartbeats stopped "
                            "%" PRId64 " s ago; the lease ends at %s unless "
                            "it is heard from", x->drone, silent / 1000, ends)
                : xasprintf("leased to drone '%s', which is not connected; "
                            "the lease ends at %s", x->drone, ends));
        return;
    }
    if (d) {
        x->last_seen_ms = b->now_wall - silent;
    }
    s_set(x, "running", xasprintf("running on drone '%s' since %s (attempt "
                                  "%u)", x->drone, since, x->attempt));
}

// Blocked: the failed task at the root of it (through blocked needs).
static void
s_blocked(broker_t *b, int64_t plan, size_t idx, proto_explain_ok_t *x)
{
    const workplan_t *wp = sched_workplan(b->sched, plan);
    size_t at = idx;
    for (size_t hops = 0; hops < wp->n_tasks; hops++) {
        const wp_task_t *t = &wp->tasks[at];
        long next = -1;
        // need_idx, not a search by id: a hop costs its needs, not the
        // plan's size (a 50k chain walked by searches held the broker for
        // minutes).
        for (size_t k = 0; k < t->n_needs && next < 0; k++) {
            size_t n = t->need_idx[k];
            proto_task_state_t st = sched_get(b->sched, plan, n);
            if (st != PROTO_TASK_SUCCEEDED &&
                proto_task_state_is_terminal(st)) {
                next = (long) n;
            }
        }
        if (next < 0) {
            break;
        }
        at = (size_t) next;
        if (sched_get(b->sched, plan, at) != PROTO_TASK_BLOCKED) {
            break;
        }
    }
    const char *st = proto_task_state_name(sched_get(b->sched, plan, at));
    x->blocked_by = xstrdup(s_id(wp, at));
    x->blocked_state = xstrdup(st);
    s_set(x, "blocked", at == idx
                            ? xstrdup("blocked by a task it needs")
                            : xasprintf("blocked: '%s' ended %s", s_id(wp, at),
                                        st));
}

static void
s_finished(proto_task_state_t st, const proto_task_info_t *row,
           proto_explain_ok_t *x)
{
    const char *err = row ? row->last_error : NULL;
    s_set(x, "finished", err && st != PROTO_TASK_SUCCEEDED
                             ? xasprintf("finished: %s (%s)",
                                         proto_task_state_name(st), err)
                             : xasprintf("finished: %s",
                                         proto_task_state_name(st)));
}

bool
explain_task(broker_t *b, explain_ctx_t *c, int64_t plan, size_t idx,
             const proto_task_info_t *row, proto_explain_ok_t *x)
{
    proto_task_state_t st = sched_get(b->sched, plan, idx);
    sched_why_t why;
    free(x->state);
    x->state = xstrdup(proto_task_state_name(st));
    x->attempt = row ? row->attempt : 0;
    switch (st) {
    case PROTO_TASK_WAITING:
        sched_why(b->sched, plan, idx, c->tags, c->n_tags, c->n_drones,
                  b->now_wall, &why);
        s_needs(b, plan, &why, x);
        return true;
    case PROTO_TASK_READY:
        sched_why(b->sched, plan, idx, c->tags, c->n_tags, c->n_drones,
                  b->now_wall, &why);
        if (row && row->ready_ms > 0) {
            x->since_ms = row->ready_ms;
        }
        return s_ready(b, c, plan, idx, &why, x);
    case PROTO_TASK_AWAITING_APPROVAL:
        s_gate(b, plan, idx, row, x);
        return true;
    case PROTO_TASK_LEASED:
        s_leased(b, plan, idx, row, x);
        return false;
    case PROTO_TASK_BLOCKED:
        s_blocked(b, plan, idx, x);
        return false;
    default:
        s_finished(st, row, x);
        return false;
    }
}

// --- EXPLAIN ------------------------------------------------------------

static void
s_error(broker_t *b, router_in_t *in, proto_status_t code, char *text)
{
    proto_msg_t *e = proto_error_new(in->msg->req, code, "%s", text);
    broker_queue(b, &in->rid, &e, ledger_in_turn(b->ledger));
    free(text);
}

// The task's ledger row (times, attempt, last error): the page of one task
// at its workplan index.
static proto_msg_t *
s_row(broker_t *b, int64_t plan, size_t idx)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_STATUS_OK);
    if (ledger_tasks(b->ledger, plan, (uint32_t) idx, 1,
                     &m->u.status_ok) != LEDGER_OK ||
        m->u.status_ok.n_tasks != 1) {
        proto_msg_destroy(&m);
    }
    return m;
}

// A running plan the broker could not load: say so, as status does.
static bool
s_unloaded(broker_t *b, router_in_t *in, const char *why)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_EXPLAIN_OK);
    proto_explain_ok_t *x = &m->u.explain_ok;
    x->plan = in->msg->u.explain.plan;
    x->task = xstrdup(in->msg->u.explain.task);
    x->state = xstrdup("waiting");
    s_set(x, "plan_not_loaded", xasprintf("plan not loaded: %s", why));
    m->req = in->msg->req;
    broker_queue(b, &in->rid, &m, ledger_in_turn(b->ledger));
    return false;
}

// Loads a plan that is not in memory (a finished one) for the question;
// false when it answered instead.
static bool
s_load(broker_t *b, router_in_t *in, int64_t plan)
{
    ledger_plan_state_t state;
    ledger_rc_t rc = ledger_plan_state(b->ledger, plan, &state);
    if (rc == LEDGER_MISS) {
        s_error(b, in, PROTO_E_NOT_FOUND, xasprintf("no plan %lld",
                                                    (long long) plan));
        return false;
    }
    if (rc == LEDGER_OK && plans_load_one(b, plan) == 0) {
        return true;
    }
    const char *why = rc == LEDGER_OK ? plans_unloaded(b, plan) : NULL;
    if (why) {
        return s_unloaded(b, in, why);
    }
    s_error(b, in, PROTO_E_INTERNAL, xstrdup("the ledger failed; try again"));
    return false;
}

void
explain_request(broker_t *b, router_in_t *in)
{
    const proto_explain_t *q = &in->msg->u.explain;
    bool loaded = sched_has_plan(b->sched, q->plan);
    if (!loaded && !s_load(b, in, q->plan)) {
        return;
    }
    long idx = workplan_find(sched_workplan(b->sched, q->plan), q->task);
    proto_msg_t *row = idx >= 0 ? s_row(b, q->plan, (size_t) idx) : NULL;
    if (idx < 0 || !row) {
        s_error(b, in, idx < 0 ? PROTO_E_NOT_FOUND : PROTO_E_INTERNAL,
                idx < 0 ? xasprintf("plan %lld has no task '%s'",
                                    (long long) q->plan, q->task)
                        : xstrdup("the ledger failed; try again"));
    } else {
        proto_msg_t *m = proto_msg_new(PROTO_MSG_EXPLAIN_OK);
        explain_ctx_t *c = explain_ctx_new(b);
        m->u.explain_ok.plan = q->plan;
        m->u.explain_ok.task = xstrdup(q->task);
        explain_task(b, c, q->plan, (size_t) idx, &row->u.status_ok.tasks[0],
                     &m->u.explain_ok);
        explain_ctx_destroy(&c);
        m->req = in->msg->req;
        broker_queue(b, &in->rid, &m, ledger_in_turn(b->ledger));
    }
    proto_msg_destroy(&row);
    if (!loaded) {
        sched_plan_remove(b->sched, q->plan);
    }
}
