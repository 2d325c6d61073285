// requests: console requests from the architect (submitter and operator
// keys): PING, SUBMIT, STATUS, CANCEL, RETRY, OUTPUT, and the operator's
// APPROVE and REJECT of a gate (gates.c); BUDGET is answered in budget.c,
// AMEND in amends.c, EXPLAIN in explain.c.
//
// Replies that report a change wait for the turn's commit (depends); pure
// reads go out with the turn too, after whatever the turn changed.
#include "broker/broker_int.h"

#include "common/log.h"
#include "common/xalloc.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG "broker.requests"

void
requests_reply(broker_t *b, router_in_t *in, proto_msg_t **m, bool depends)
{
    (*m)->req = in->msg->req;
    broker_queue(b, &in->rid, m, depends);
}

// A refusal may rest on what this turn changed but has not committed (a
// cancel before it in the turn): then it waits for the commit too, and a
// failed commit makes it ERROR INTERNAL like every reply of the turn.
void
requests_error(broker_t *b, router_in_t *in, proto_status_t code,
               const char *text)
{
    proto_msg_t *e = proto_error_new(in->msg->req, code, "%s", text);
    broker_queue(b, &in->rid, &e, ledger_in_turn(b->ledger));
}

void
requests_internal(broker_t *b, router_in_t *in)
{
    broker_fail_turn(b);
    requests_error(b, in, PROTO_E_INTERNAL,
                   "the ledger failed; nothing was recorded, try again");
}

static void
s_ok(broker_t *b, router_in_t *in)
{
    proto_msg_t *ok = proto_msg_new(PROTO_MSG_OK);
    requests_reply(b, in, &ok, true);
}

static void
s_ping(broker_t *b, router_in_t *in)
{
    proto_msg_t *p = proto_msg_new(PROTO_MSG_PONG);
    const char *role = in->role == PROTO_R_DRONE       ? "drone"
                       : in->role == PROTO_R_SUBMITTER ? "submitter"
                                                       : "operator";
    p->u.pong.role = xstrdup(role);
    p->u.pong.name = xstrdup(in->name);
    p->u.pong.version = xstrdup(WAGGLE_VERSION);
    requests_reply(b, in, &p, false);
}

static char *
s_hash(const char *text)
{
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *) text, strlen(text));
    char *hex = xmalloc(sizeof h * 2 + 1);
    sodium_bin2hex(hex, sizeof h * 2 + 1, h, sizeof h);
    return hex;
}

static bool
s_offered(const char *tag, const char *const *const *tags,
          const size_t *n_tags, size_t n)
{
    for (size_t d = 0; d < n; d++) {
        for (size_t k = 0; k < n_tags[d]; k++) {
            if (strcmp(tags[d][k], tag) == 0) {
                return true;
            }
        }
    }
    return false;
}

// One warning per required tag no connected drone offers, naming the first
// few tasks that need it (a plan of 100k tasks gets one line, not 100k).
static void
s_warn_tag(const workplan_t *wp, const char *tag, proto_submit_ok_t *ok)
{
    size_t count = 0;
    char names[256] = "";
    for (size_t i = 0; i < wp->n_tasks; i++) {
        const wp_task_t *t = &wp->tasks[i];
        for (size_t r = 0; r < t->n_requires; r++) {
            if (strcmp(t->requires[r], tag) != 0) {
                continue;
            }
            if (count++ < 3) {
                size_t o = strlen(names);
                snprintf(names + o, sizeof names - o, "%s'%s'",
                         o ? ", " : "", t->id);
            }
            break;
        }
    }
    char *w = count > 3
                  ? xasprintf("no connected drone offers '%s' (needed by %zu "
                              "tasks: %s and %zu more)", tag, count, names,
                              count - 3)
                  : xasprintf("no connected drone offers '%s' (needed by "
                              "%s)", tag, names);
    proto_strv_push(&ok->warnings, w);
    free(w);
}

static bool
s_listed(const proto_strv_t *v, const char *s)
{
    for (size_t i = 0; i < v->count; i++) {
        if (strcmp(v->items[i], s) == 0) {
            return true;
        }
    }
    return false;
}

static void
s_warn_tags(broker_t *b, const workplan_t *wp, proto_submit_ok_t *ok)
{
    const char *const *const *tags;
    const size_t *n_tags;
    size_t n;
    drones_tag_table(b, &tags, &n_tags, &n);
    proto_strv_t named = {0};  // tags already warned about
    for (size_t i = 0; i < wp->n_tasks && named.count < 16; i++) {
        const wp_task_t *t = &wp->tasks[i];
        for (size_t r = 0; r < t->n_requires; r++) {
            const char *tag = t->requires[r];
            if (!s_offered(tag, tags, n_tags, n) && !s_listed(&named, tag)) {
                proto_strv_push(&named, tag);
                s_warn_tag(wp, tag, ok);
            }
        }
    }
    proto_strv_release(&named);
    free((void *) tags);
    free((void *) n_tags);
}

// Parses and validates the request's workplan text, freeing the text once
// parsed (the canonical form replaces it; a 1M-task plan's text is 33 MB).
static bool
s_validate(broker_t *b, router_in_t *in, workplan_t **wp)
{
    char **text = &in->msg->u.submit.workplan;
    wp_errors_t errs = {0};
    int rc = workplan_parse_take(text, strlen(*text), false, wp, &errs);
    if (rc == 0) {
        return true;
    }
    proto_msg_t *e = proto_error_new(in->msg->req, PROTO_E_INVALID, "x");
    for (size_t i = 0; i < errs.count; i++) {
        char *line = xasprintf("%s: %s", errs.items[i].path,
                               errs.items[i].message);
        proto_strv_push(&e->u.error.details, line);
        free(line);
    }
    free(e->u.error.message);
    e->u.error.message = xasprintf("workplan refused: %zu error%s",
                                   errs.count, errs.count == 1 ? "" : "s");
    wp_errors_release(&errs);
    broker_queue(b, &in->rid, &e, false);
    return false;
}

// An idempotent replay: the same key returns the same plan.  Returns true
// when the request was answered.
static bool
s_replay(broker_t *b, router_in_t *in, const char *hash)
{
    const char *key = in->msg->u.submit.idempotency_key;
    int64_t plan = 0;
    char *old = NULL;
    ledger_rc_t rc = key ? ledger_idem_get(b->ledger, in->name, key, &plan,
                                           &old)
                         : LEDGER_MISS;
    if (rc == LEDGER_MISS) {
        return false;
    }
    if (rc == LEDGER_ERROR) {
        requests_internal(b, in);
    } else if (strcmp(old, hash) != 0) {
        char *text = xasprintf("idempotency key '%s' was used for plan %lld "
                               "with a different workplan", key,
                               (long long) plan);
        requests_error(b, in, PROTO_E_CONFLICT, text);
        free(text);
    } else {
        proto_msg_t *ok = proto_msg_new(PROTO_MSG_SUBMIT_OK);
        ok->u.submit_ok.plan = plan;
        ok->u.submit_ok.created = false;
        requests_reply(b, in, &ok, true);
    }
    free(old);
    return true;
}

// A new plan's gates that need nothing wait from the start.
static void
s_gates_started(broker_t *b, int64_t plan)
{
    const workplan_t *wp = sched_workplan(b->sched, plan);
    for (size_t i = 0; wp && i < wp->n_tasks; i++) {
        if (sched_get(b->sched, plan, i) == PROTO_TASK_AWAITING_APPROVAL &&
            !gates_started(b, plan, i)) {
            return;
        }
    }
}

// A created plan goes to the scheduler (which takes *wp) and is answered.
static void
s_accept(broker_t *b, router_in_t *in, int64_t plan, workplan_t **wp,
         const proto_task_state_t *states)
{
    proto_msg_t *ok = proto_msg_new(PROTO_MSG_SUBMIT_OK);
    ok->u.submit_ok.plan = plan;
    ok->u.submit_ok.created = true;
    s_warn_tags(b, *wp, &ok->u.submit_ok);
    log_info_with(LOG, LOG_FIELDS(LOG_INT("plan", plan),
                                  LOG_STR("key", in->name)),
                  "plan %lld '%s' submitted by '%s': %zu tasks",
                  (long long) plan, (*wp)->name, in->name, (*wp)->n_tasks);
    sched_plan_add(b->sched, plan, wp, states);
    s_gates_started(b, plan);
    requests_reply(b, in, &ok, true);
}


// Each representation of a big plan is freed as soon as the next one is
// built (text -> workplan_t -> canonical text -> rows -> the scheduler's
// plan), so the peak holds two of them, not four.
static void
s_submit(broker_t *b, router_in_t *in)
{
    workplan_t *wp = NULL;
    if (!s_validate(b, in, &wp)) {
        return;
    }
    size_t n_tasks = wp->n_tasks;  // sched_plan_add takes wp
    char *json = workplan_to_json(wp);
    char *hash = s_hash(json);
    proto_task_state_t *states = xcalloc(wp->n_tasks, sizeof *states);
    int64_t plan = 0;
    ledger_rc_t rc = LEDGER_ERROR;
    if (!broker_begin(b)) {
        requests_internal(b, in);
    } else if (!s_replay(b, in, hash)) {
        sched_initial_states(wp, states);
        rc = ledger_plan_create(b->ledger, wp, json, hash, states, in->name,
                                in->msg->u.submit.idempotency_key,
                                b->now_wall, &plan);
        if (rc != LEDGER_OK) {
            requests_internal(b, in);
        }
    }
    free(json);
    free(hash);
    if (rc == LEDGER_OK) {
        s_accept(b, in, plan, &wp, states);
    }
    workplan_destroy(&wp);
    free(states);
    if (n_tasks >= BROKER_TRIM_TASKS) {
        xalloc_trim();
    }
}

// A running plan the broker could not load: every unfinished task says
// so, with the reason.
static void
s_fill_unloaded(proto_status_ok_t *st, const char *why)
{
    for (size_t i = 0; i < st->n_tasks; i++) {
        proto_task_info_t *t = &st->tasks[i];
        if (!proto_task_state_is_terminal(t->state)) {
            t->waiting_reason = xasprintf("plan not loaded: %s", why);
        }
    }
}

// How long the latest attempt ran (so far, while it runs: on the broker's
// clock, so a console's own clock does not matter).
static void
s_fill_duration(broker_t *b, proto_task_info_t *t)
{
    if (t->started_ms <= 0) {
        return;
    }
    int64_t end = t->ended_ms > 0 ? t->ended_ms : b->now_wall;
    t->duration_ms = end > t->started_ms ? end - t->started_ms : 0;
}

// Why each ready, waiting or awaiting task of the page waits (explain.c's
// reason), and its durations; the page starts at workplan index first.
static void
s_fill_reasons(broker_t *b, int64_t plan, size_t first,
               proto_status_ok_t *st)
{
    for (size_t i = 0; i < st->n_tasks; i++) {
        s_fill_duration(b, &st->tasks[i]);
    }
    const workplan_t *wp = sched_workplan(b->sched, plan);
    if (!wp) {
        const char *unloaded = plans_unloaded(b, plan);
        if (unloaded) {
            s_fill_unloaded(st, unloaded);
        }
        return;
    }
    explain_ctx_t *c = explain_ctx_new(b);
    for (size_t i = 0; i < st->n_tasks; i++) {
        proto_task_info_t *t = &st->tasks[i];
        if (t->state != PROTO_TASK_READY && t->state != PROTO_TASK_WAITING &&
            t->state != PROTO_TASK_AWAITING_APPROVAL) {
            continue;
        }
        // Status lists tasks in workplan order: first + i is almost always
        // it.
        size_t k = first + i;
        long idx = k < wp->n_tasks && strcmp(wp->tasks[k].id, t->id) == 0
                       ? (long) k
                       : workplan_find(wp, t->id);
        proto_explain_ok_t x = {0};
        if (idx >= 0 && explain_task(b, c, plan, (size_t) idx, t, &x)) {
            t->waiting_reason = x.reason;
            x.reason = NULL;
        }
        proto_explain_ok_release(&x);
    }
    explain_ctx_destroy(&c);
}

// What d's leases run, as (plan, task) pairs.
static void
s_fill_drone_tasks(broker_t *b, const drone_t *d, proto_drone_info_t *o)
{
    sched_lease_t *mine = NULL;
    size_t n = sched_leases_of(b->sched, d->instance, &mine);
    o->tasks = xcalloc(n ? n : 1, sizeof *o->tasks);
    for (size_t i = 0; i < n; i++) {
        const workplan_t *wp = sched_workplan(b->sched, mine[i].plan);
        if (wp) {
            proto_drone_task_t *t = &o->tasks[o->n_tasks++];
            t->plan = mine[i].plan;
            t->task = xstrdup(wp->tasks[mine[i].idx].id);
            int64_t left = mine[i].deadline_ms - b->now_mono;
            t->lease_left_ms = left > 0 ? left : 0;
        }
    }
    o->leases = (uint32_t) n;
    free(mine);
}

static void
s_fill_drones(broker_t *b, proto_status_ok_t *st)
{
    st->drones = xcalloc(b->n_drones + 1, sizeof *st->drones);
    for (size_t i = 0; i < b->n_drones; i++) {
        drone_t *d = b->drones[i];
        proto_drone_info_t *o = &st->drones[st->n_drones++];
        o->instance = xstrdup(d->instance);
        o->name = xstrdup(d->name);
        o->host = xstrdup(d->host);
        o->slots = d->slots;
        s_fill_drone_tasks(b, d, o);
        o->draining = d->draining;
        for (size_t k = 0; k < d->tags.count; k++) {
            proto_strv_push(&o->tags, d->tags.items[k]);
        }
        o->last_seen_ms = b->now_wall - (b->now_mono - d->last_seen_ms);
        o->quarantined = trust_is_quarantined(b, d);
    }
}

// The plans status lists, with their counts: a loaded plan's from memory
// (a wait polls a 100k-task plan several times a second), the rest from
// the ledger.
static ledger_rc_t
s_plans(broker_t *b, int64_t plan, proto_status_ok_t *st)
{
    ledger_rc_t rc = ledger_plan_rows(b->ledger, plan, 200, st);
    for (size_t i = 0; rc == LEDGER_OK && i < st->n_plans; i++) {
        proto_plan_info_t *p = &st->plans[i];
        if (!sched_plan_counts(b->sched, p->id, p->counts)) {
            rc = ledger_plan_counts(b->ledger, p);
        }
    }
    return rc;
}

static void
s_keep_json(void *arg, int64_t plan, const char *json)
{
    (void) plan;
    char **out = arg;
    if (json && !*out) {
        *out = xstrdup(json);
    }
}

static void
s_skip_task(void *arg, const ledger_task_row_t *row)
{
    (void) arg, (void) row;
}

// The workplan of a plan as it stands (amended or not): a loaded plan's
// from memory, any other's as the ledger stores it.
static ledger_rc_t
s_workplan(broker_t *b, int64_t plan, char **out)
{
    const workplan_t *wp = sched_workplan(b->sched, plan);
    if (wp) {
        *out = workplan_to_json(wp);
        return LEDGER_OK;
    }
    return ledger_load_plan(b->ledger, plan, s_keep_json, s_skip_task, out);
}

static void
s_status(broker_t *b, router_in_t *in)
{
    const proto_status_t_req *q = &in->msg->u.status;
    int64_t plan = q->plan;
    proto_msg_t *m = proto_msg_new(PROTO_MSG_STATUS_OK);
    proto_status_ok_t *st = &m->u.status_ok;
    ledger_rc_t rc = s_plans(b, plan, st);
    if (rc == LEDGER_OK && plan && !q->summary) {
        // A page, not the whole plan: a reply must stay decodable (the
        // object limit of PROTOCOL.md 10) however big the plan is.
        rc = ledger_tasks(b->ledger, plan, q->offset,
                          PROTO_STATUS_TASK_OBJECTS, st);
        if (rc == LEDGER_OK) {
            s_fill_reasons(b, plan, q->offset, st);
        }
    }
    if (rc == LEDGER_OK && plan && q->workplan) {
        rc = s_workplan(b, plan, &st->workplan);
    } else if (rc == LEDGER_OK && !plan) {
        s_fill_drones(b, st);
    }
    if (rc != LEDGER_OK) {
        proto_msg_destroy(&m);
        char *text = xasprintf("no plan %lld", (long long) plan);
        requests_error(b, in, rc == LEDGER_MISS ? PROTO_E_NOT_FOUND
                                                : PROTO_E_INTERNAL, text);
        free(text);
        return;
    }
    requests_reply(b, in, &m, ledger_in_turn(b->ledger));
}

// Looks up a plan that must be running and loaded; answers the request
// with an error and returns false otherwise.
bool
requests_plan_state(broker_t *b, router_in_t *in, int64_t plan,
                    ledger_plan_state_t *state)
{
    ledger_rc_t rc = ledger_plan_state(b->ledger, plan, state);
    if (rc == LEDGER_OK) {
        return true;
    }
    if (rc == LEDGER_ERROR) {
        requests_internal(b, in);
        return false;
    }
    char *text = xasprintf("no plan %lld", (long long) plan);
    requests_error(b, in, PROTO_E_NOT_FOUND, text);
    free(text);
    return false;
}

static long
s_task_idx(broker_t *b, router_in_t *in, int64_t plan, const char *task)
{
    long idx = workplan_find(sched_workplan(b->sched, plan), task);
    if (idx < 0) {
        char *text = xasprintf("plan %lld has no task '%s'", (long long) plan,
                               task);
        requests_error(b, in, PROTO_E_NOT_FOUND, text);
        free(text);
    }
    return idx;
}

bool
requests_not_running(broker_t *b, router_in_t *in, int64_t plan,
                     ledger_plan_state_t state)
{
    if (state == LEDGER_PLAN_RUNNING && sched_has_plan(b->sched, plan)) {
        return false;
    }
    const char *why = plans_unloaded(b, plan);
    char *text = state == LEDGER_PLAN_RUNNING && why
                     ? xasprintf("plan %lld is not loaded: %s",
                                 (long long) plan, why)
                     : xasprintf("plan %lld already %s", (long long) plan,
                                 ledger_plan_state_name(state));
    requests_error(b, in, PROTO_E_CONFLICT, text);
    free(text);
    return true;
}

static void
s_cancel(broker_t *b, router_in_t *in)
{
    const proto_cancel_t *c = &in->msg->u.cancel;
    ledger_plan_state_t state;
    if (!requests_plan_state(b, in, c->plan, &state) ||
        requests_not_running(b, in, c->plan, state)) {
        return;
    }
    long idx = c->task ? s_task_idx(b, in, c->plan, c->task) : -1;
    if (c->task && idx < 0) {
        return;
    }
    proto_task_state_t ts = idx >= 0 ? sched_get(b->sched, c->plan,
                                                 (size_t) idx)
                                     : PROTO_TASK_WAITING;
    if (proto_task_state_is_terminal(ts)) {
        char *text = xasprintf("task '%s' already %s", c->task,
                               proto_task_state_name(ts));
        requests_error(b, in, PROTO_E_CONFLICT, text);
        free(text);
        return;
    }
    if (!broker_begin(b)) {
        requests_internal(b, in);
        return;
    }
    sched_moves_t moves = {0};
    sched_cancel(b->sched, c->plan, idx >= 0 ? (size_t) idx : SIZE_MAX,
                 &moves);
    bool ok = plans_apply(b, &moves, in->name);
    sched_moves_release(&moves);
    if (ok && !c->task) {
        ok = ledger_plan_move(b->ledger, c->plan, LEDGER_PLAN_RUNNING,
                              LEDGER_PLAN_CANCELLED, in->name,
                              b->now_wall) == LEDGER_OK;
        sched_plan_remove(b->sched, c->plan);
    } else if (ok) {
        plans_check_done(b, c->plan, in->name);
    }
    if (!ok) {
        requests_internal(b, in);
        return;
    }
    log_info_with(LOG, LOG_FIELDS(LOG_INT("plan", c->plan),
                                  LOG_STR("task", c->task),
                                  LOG_STR("key", in->name)),
                  "plan %lld%s%s cancelled by '%s'", (long long) c->plan,
             c->task ? " task " : "", c->task ? c->task : "", in->name);
    s_ok(b, in);
}

// Retry's preconditions; answers and returns false when refused.
static bool
s_retry_allowed(broker_t *b, router_in_t *in, proto_task_state_t ts)
{
    const char *task = in->msg->u.retry.task;
    if (ts == PROTO_TASK_DEAD || ts == PROTO_TASK_REJECTED ||
        ts == PROTO_TASK_CANCELLED) {
        return true;
    }
    char *text = ts == PROTO_TASK_BLOCKED
                     ? xasprintf("task '%s' is blocked by a task it needs; "
                                 "retry that task instead", task)
                     : xasprintf("task '%s' is %s; only dead, rejected or "
                                 "cancelled tasks can be retried", task,
                                 proto_task_state_name(ts));
    requests_error(b, in, PROTO_E_CONFLICT, text);
    free(text);
    return false;
}

static bool
s_apply_retry(broker_t *b, router_in_t *in, int64_t plan, size_t idx,
              ledger_plan_state_t state)
{
    sched_moves_t moves = {0};
    sched_retry(b->sched, plan, idx, &moves);
    bool ok = true;
    for (size_t i = 0; i < moves.count && ok; i++) {
        sched_move_t *m = &moves.items[i];
        if (m->idx != idx) {
            continue;
        }
        // The retried task itself gets a fresh attempt budget.
        ok = ledger_task_reset(b->ledger, plan, in->msg->u.retry.task,
                               m->from, m->to, in->name,
                               b->now_wall) == LEDGER_OK;
        sched_set(b->sched, plan, idx, m->to, 0);
        sched_attempts_t att = sched_attempts(b->sched, plan, idx);
        att.used = 0;  // the fresh budget; its attempt rows stay
        sched_attempts_set(b->sched, plan, idx, att);
        if (ok && m->to == PROTO_TASK_AWAITING_APPROVAL) {
            ok = gates_started(b, plan, idx);
        }
        moves.items[i] = moves.items[--moves.count];
    }
    ok = ok && plans_apply(b, &moves, in->name);
    sched_moves_release(&moves);
    if (ok && state != LEDGER_PLAN_RUNNING) {
        ok = ledger_plan_move(b->ledger, plan, state, LEDGER_PLAN_RUNNING,
                              in->name, b->now_wall) == LEDGER_OK;
    }
    return ok;
}

static void
s_retry(broker_t *b, router_in_t *in)
{
    const proto_retry_t *r = &in->msg->u.retry;
    ledger_plan_state_t state;
    if (!requests_plan_state(b, in, r->plan, &state)) {
        return;
    }
    if (state == LEDGER_PLAN_CANCELLED) {
        char *text = xasprintf("plan %lld was cancelled; submit it again",
                               (long long) r->plan);
        requests_error(b, in, PROTO_E_CONFLICT, text);
        free(text);
        return;
    }
    bool loaded = sched_has_plan(b->sched, r->plan);
    if (!loaded && plans_load_one(b, r->plan) < 0) {
        const char *why = plans_unloaded(b, r->plan);
        if (!why) {
            requests_internal(b, in);
            return;
        }
        char *text = xasprintf("plan %lld is not loaded: %s",
                               (long long) r->plan, why);
        requests_error(b, in, PROTO_E_CONFLICT, text);
        free(text);
        return;
    }
    long idx = s_task_idx(b, in, r->plan, r->task);
    if (idx < 0 || !s_retry_allowed(b, in, sched_get(b->sched, r->plan,
                                                     (size_t) idx))) {
        if (!loaded) {
            sched_plan_remove(b->sched, r->plan);
        }
        return;
    }
    if (!broker_begin(b) || !s_apply_retry(b, in, r->plan, (size_t) idx,
                                           state)) {
        requests_internal(b, in);
        return;
    }
    log_info_with(LOG, LOG_FIELDS(LOG_INT("plan", r->plan),
                                  LOG_STR("task", r->task),
                                  LOG_STR("key", in->name)),
                  "plan %lld task '%s' retried by '%s'", (long long) r->plan,
             r->task, in->name);
    s_ok(b, in);
}

// A gate of a loaded plan: its output is what it shows a person (its
// question and its inputs), the text an approval hashes.  -1: not a gate
// of a loaded plan.
static long
s_gate_idx(broker_t *b, int64_t plan, const char *task)
{
    const workplan_t *wp = sched_workplan(b->sched, plan);
    long idx = wp ? workplan_find(wp, task) : -1;
    return idx >= 0 && wp->tasks[idx].kind == WP_KIND_GATE ? idx : -1;
}

// The task's state for OUTPUT with live: from memory for a loaded plan,
// else from the ledger.  Answers NOT_FOUND (or INTERNAL) and returns false
// when there is no such task.
static bool
s_live_state(broker_t *b, router_in_t *in, proto_task_state_t *state)
{
    const proto_output_t *o = &in->msg->u.output;
    const workplan_t *wp = sched_workplan(b->sched, o->plan);
    long idx = wp ? workplan_find(wp, o->task) : -1;
    if (idx >= 0) {
        *state = sched_get(b->sched, o->plan, (size_t) idx);
        return true;
    }
    ledger_plan_state_t ps;
    if (!requests_plan_state(b, in, o->plan, &ps)) {
        return false;
    }
    ledger_rc_t rc = ledger_task_state(b->ledger, o->plan, o->task, state);
    if (rc == LEDGER_MISS) {
        char *text = xasprintf("plan %lld has no task '%s'",
                               (long long) o->plan, o->task);
        requests_error(b, in, PROTO_E_NOT_FOUND, text);
        free(text);
    } else if (rc != LEDGER_OK) {
        requests_internal(b, in);
    }
    return rc == LEDGER_OK;
}

// OUTPUT with live of a task not finished: its running attempt's latest
// tail (empty while it is not leased, or nothing came yet).  Returns false
// for a finished task, which is served as without live (plus its state).
static bool
s_output_live(broker_t *b, router_in_t *in, proto_msg_t *m)
{
    const proto_output_t *o = &in->msg->u.output;
    proto_output_ok_t *out = &m->u.output_ok;
    proto_task_state_t st;
    if (!s_live_state(b, in, &st)) {
        proto_msg_destroy(&m);
        return true;
    }
    out->plan = o->plan;
    out->task = xstrdup(o->task);
    out->state = xstrdup(proto_task_state_name(st));
    if (proto_task_state_is_terminal(st)) {
        return false;
    }
    out->running = true;
    // A plan that could not be loaded has no workplan in memory, and no
    // lease: its task's state came from the ledger, without a tail.
    const workplan_t *wp = sched_workplan(b->sched, o->plan);
    long idx = wp ? workplan_find(wp, o->task) : -1;
    const sched_lease_t *l =
        idx >= 0 && st == PROTO_TASK_LEASED
            ? sched_lease_of_task(b->sched, o->plan, (size_t) idx)
            : NULL;
    if (l) {
        out->token = l->token;
        tails_get(b, l->token, &out->total, &out->data);
    }
    requests_reply(b, in, &m, ledger_in_turn(b->ledger));
    return true;
}

static void
s_output(broker_t *b, router_in_t *in)
{
    const proto_output_t *o = &in->msg->u.output;
    proto_msg_t *m = proto_msg_new(PROTO_MSG_OUTPUT_OK);
    proto_output_ok_t *out = &m->u.output_ok;
    if (o->live && !o->want_stderr && s_output_live(b, in, m)) {
        return;
    }
    long gate = o->want_stderr ? -1 : s_gate_idx(b, o->plan, o->task);
    if (gate >= 0) {
        if (gates_text(b, o->plan, (size_t) gate, &out->data.data,
                       &out->data.len) < 0) {
            proto_msg_destroy(&m);
            requests_internal(b, in);
            return;
        }
        out->plan = o->plan;
        free(out->task);
        out->task = xstrdup(o->task);
        requests_reply(b, in, &m, ledger_in_turn(b->ledger));
        return;
    }
    ledger_rc_t rc = ledger_task_output(b->ledger, o->plan, o->task,
                                        o->attempt, o->want_stderr,
                                        &out->data.data, &out->data.len,
                                        &out->truncated, &out->attempt);
    if (rc == LEDGER_MISS && out->state && !o->attempt) {
        rc = LEDGER_OK;  // live: a finished task that never ran (cancelled)
    }
    if (rc != LEDGER_OK) {
        proto_msg_destroy(&m);
        char *text = o->attempt
                         ? xasprintf("plan %lld task '%s' has no attempt %u",
                                     (long long) o->plan, o->task, o->attempt)
                         : xasprintf("plan %lld task '%s' has no finished "
                                     "attempt", (long long) o->plan, o->task);
        requests_error(b, in, rc == LEDGER_MISS ? PROTO_E_NOT_FOUND
                                                : PROTO_E_INTERNAL, text);
        free(text);
        return;
    }
    out->plan = o->plan;
    free(out->task);
    out->task = xstrdup(o->task);
    // What this turn recorded (a RESULT before this request) is not durable
    // yet: the reply waits for the commit, as STATUS's does.
    requests_reply(b, in, &m, ledger_in_turn(b->ledger));
}

// APPROVE/REJECT's preconditions: a running, loaded plan; a gate awaiting
// approval; a note for a reject; the hash of what the gate shows now.
// Answers and returns -1 when refused, else the gate's index.
static long
s_verdict_allowed(broker_t *b, router_in_t *in)
{
    const proto_verdict_t *v = &in->msg->u.verdict;
    ledger_plan_state_t state;
    if (!requests_plan_state(b, in, v->plan, &state) ||
        requests_not_running(b, in, v->plan, state)) {
        return -1;
    }
    long idx = s_task_idx(b, in, v->plan, v->task);
    if (idx < 0) {
        return -1;
    }
    char *text = NULL;
    proto_status_t code = PROTO_E_CONFLICT;
    proto_task_state_t ts = sched_get(b->sched, v->plan, (size_t) idx);
    char *now = NULL;
    if (s_gate_idx(b, v->plan, v->task) < 0) {
        text = xasprintf("task '%s' is not a gate", v->task);
    } else if (ts != PROTO_TASK_AWAITING_APPROVAL) {
        text = xasprintf("gate '%s' is %s, not awaiting approval", v->task,
                         proto_task_state_name(ts));
    } else if (in->msg->cmd == PROTO_MSG_REJECT &&
               (!v->note || !v->note[0])) {
        code = PROTO_E_INVALID;
        text = xasprintf("rejecting gate '%s' needs a note", v->task);
    } else if (!(now = gates_hash(b, v->plan, (size_t) idx))) {
        requests_internal(b, in);
        return -1;
    } else if (strcmp(now, v->hash) != 0) {
        text = xasprintf("gate '%s' changed since it was shown (an input "
                         "ran again): look at it again and decide again",
                         v->task);
    }
    free(now);
    if (text) {
        requests_error(b, in, code, text);
        free(text);
        return -1;
    }
    return idx;
}

static void
s_verdict(broker_t *b, router_in_t *in)
{
    const proto_verdict_t *v = &in->msg->u.verdict;
    long idx = s_verdict_allowed(b, in);
    if (idx < 0) {
        return;
    }
    proto_task_state_t to = in->msg->cmd == PROTO_MSG_APPROVE
                                ? PROTO_TASK_SUCCEEDED
                                : PROTO_TASK_REJECTED;
    if (!broker_begin(b) ||
        gates_decide(b, v->plan, (size_t) idx, to, in->name, v->note,
                     v->hash) != LEDGER_OK) {
        requests_internal(b, in);
        return;
    }
    s_ok(b, in);
}

void
requests_on_message(broker_t *b, router_in_t *in)
{
    switch (in->msg->cmd) {
    case PROTO_MSG_PING:
        s_ping(b, in);
        break;
    case PROTO_MSG_SUBMIT:
        s_submit(b, in);
        break;
    case PROTO_MSG_STATUS:
        s_status(b, in);
        break;
    case PROTO_MSG_CANCEL:
        s_cancel(b, in);
        break;
    case PROTO_MSG_RETRY:
        s_retry(b, in);
        break;
    case PROTO_MSG_OUTPUT:
        s_output(b, in);
        break;
    case PROTO_MSG_APPROVE:
    case PROTO_MSG_REJECT:
        s_verdict(b, in);
        break;
    case PROTO_MSG_AMEND:
        amends_request(b, in);
        break;
    case PROTO_MSG_SUBSCRIBE:
        events_subscribe(b, in);
        break;
    case PROTO_MSG_BUDGET:
        budget_on_request(b, in);
        break;
    case PROTO_MSG_EXPLAIN:
        explain_request(b, in);
        break;
    default:
        requests_error(b, in, PROTO_E_UNKNOWN_COMMAND, "not a request");
        break;
    }
}
