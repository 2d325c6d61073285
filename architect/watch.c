// watch: the live dashboard — the broker's event stream and replies in,
// keys in, a dash_t (dash.h) out to the console (console.h).
//
// One link carries everything at once: a SUBSCRIBE held at the broker
// (answered right after the commit that adds events), and the requests the
// events call for.  Events drive every refresh: an event re-reads the
// overview (plans' counts and drones), an event of the open plan re-reads
// that plan's tasks, an event of the task shown re-reads its output (each
// at most every S_REREAD_MS, so a busy swarm costs a bounded rate).  No
// plan is polled; only the overview (plans' counts and drones, not tasks)
// is re-read while nothing happens: every S_DRONES_MS for the drones'
// heartbeat ages, and every S_LEASE_REREAD_MS while a lease it shows is
// about to lapse — renewals make no events, and a lease counting down on
// screen must be the broker's, not a guess.  At most one request of each
// kind is in flight; what is wanted meanwhile is remembered (dirty) and
// asked for when it returns.
//
// The link reconnects by itself; the header says when the broker cannot be
// reached, and on reconnecting everything is read again (the event cursor
// is ours, so no event is missed).
#include "architect/arch.h"
#include "architect/console.h"
#include "architect/dash.h"
#include "common/clock.h"
#include "common/xalloc.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_EVENTS_WAIT_MS 5000   // how long a caught-up SUBSCRIBE is held
#define S_DRONES_MS 10000       // overview re-read for heartbeats
#define S_LEASE_LOW_MS 3000     // a lease shown with less left than this
#define S_LEASE_REREAD_MS 2000  // re-reads the overview this often
#define S_RETRY_MS 1000         // after a failed request, before the next
#define S_TAIL_EVENTS 40        // events shown from before the start
#define S_REREAD_MS 250         // a busy swarm re-reads a pane at most
                                // this often
#define S_LIVE_MS 500           // a running task's tail, re-read (drones
                                // send one at most every PROTO_TAIL_MS)

typedef enum { S_PING, S_SUB, S_OVERVIEW, S_PLAN, S_OUTPUT, S_KINDS } s_kind_t;

typedef struct {
    arch_t *a;
    dash_t d;
    int64_t cursor;          // the last event seq seen (-1: ask for it)
    bool more;               // events wait at the broker: ask at once
    bool out[S_KINDS];       // a request of that kind is in flight
    bool dirty[S_KINDS];     // one is wanted
    int64_t retry_at[S_KINDS];  // not before (monotonic ms)
    int64_t overview_at;     // last overview read (monotonic ms)
    bool was_up;
    bool placed;             // the plans selection was set at the start
    bool quit;
    bool acting;             // an answer, cancel or retry is in flight
    char done[DASH_LINE];    // what to say when it succeeds
} s_watch_t;

// Set by SIGINT/SIGTERM/SIGHUP: the loop returns and endwin runs.
static volatile sig_atomic_t s_stop;

static void
s_on_signal(int sig)
{
    (void) sig;
    s_stop = 1;
}

// A failed request: says why (the link's words, or the ERROR reply), and
// waits a moment before the next of its kind.
static bool
s_failed(s_watch_t *w, s_kind_t kind, link_rc_t rc, proto_msg_t *reply,
         const char *err)
{
    w->out[kind] = false;
    if (rc == LINK_OK && reply->cmd != PROTO_MSG_ERROR) {
        return false;
    }
    w->retry_at[kind] = clock_mono_ms() + S_RETRY_MS;
    w->dirty[kind] = kind != S_OUTPUT;
    if (rc != LINK_OK) {
        snprintf(w->d.link, sizeof w->d.link, "%s", err ? err : "");
    } else if (kind != S_OUTPUT) {
        dash_say(&w->d, "%s: %s", proto_status_name(reply->u.error.code),
                 reply->u.error.message ? reply->u.error.message : "");
    }
    return true;
}

static void
s_on_events(void *arg, link_rc_t rc, proto_msg_t **reply, const char *err)
{
    s_watch_t *w = arg;
    if (s_failed(w, S_SUB, rc, *reply, err)) {
        return;
    }
    const proto_events_t *ev = &(*reply)->u.events;
    if (w->cursor < 0) {
        w->cursor = ev->next > S_TAIL_EVENTS ? ev->next - S_TAIL_EVENTS : 0;
        return;
    }
    for (size_t i = 0; i < ev->n_events; i++) {
        const proto_event_t *e = &ev->events[i];
        dash_add_event(&w->d, e);
        w->dirty[S_OVERVIEW] = true;
        if (e->plan && e->plan == w->d.open_plan) {
            w->dirty[S_PLAN] = true;
            w->dirty[S_OUTPUT] |= e->task && w->d.out_task &&
                                  strcmp(e->task, w->d.out_task) == 0;
        }
    }
    w->cursor = ev->next;
    w->more = ev->more;
}

// True when the selected task is a gate (what it shows has no tail).
static bool
s_is_gate(const s_watch_t *w)
{
    const proto_task_info_t *t = dash_sel_task(&w->d);
    return t && t->kind && strcmp(t->kind, "gate") == 0;
}

// The task whose output the pane should show: the selected one.
static const char *
s_want_output(const s_watch_t *w)
{
    const proto_task_info_t *t = dash_sel_task(&w->d);
    return t ? t->id : NULL;
}

static void
s_on_overview(void *arg, link_rc_t rc, proto_msg_t **reply, const char *err)
{
    s_watch_t *w = arg;
    if (s_failed(w, S_OVERVIEW, rc, *reply, err)) {
        return;
    }
    w->overview_at = clock_mono_ms();
    w->retry_at[S_OVERVIEW] = w->overview_at + S_REREAD_MS;
    dash_set_overview(&w->d, reply, clock_wall_ms());
    if (w->d.open_plan && w->placed) {
        return;
    }
    // The first look: the plans pane on the plan asked for, or on the
    // newest one, which is then opened.
    w->placed = true;
    const proto_status_ok_t *st = &w->d.overview->u.status_ok;
    for (size_t i = 0; i < st->n_plans; i++) {
        if (w->d.open_plan ? st->plans[i].id == w->d.open_plan
                           : st->plans[i].id > dash_sel_plan(&w->d)->id) {
            w->d.sel[DASH_PANE_PLANS] = (int) i;
        }
    }
    const proto_plan_info_t *p = dash_sel_plan(&w->d);
    if (!w->d.open_plan && p) {
        w->d.open_plan = p->id;
        w->dirty[S_PLAN] = true;
    }
}

static void
s_on_plan(void *arg, link_rc_t rc, proto_msg_t **reply, const char *err)
{
    s_watch_t *w = arg;
    if (s_failed(w, S_PLAN, rc, *reply, err)) {
        return;
    }
    if ((*reply)->u.status_ok.n_plans == 0 ||
        (*reply)->u.status_ok.plans[0].id != w->d.open_plan) {
        return;  // an answer about a plan no longer open
    }
    w->retry_at[S_PLAN] = clock_mono_ms() + S_REREAD_MS;
    dash_set_plan(&w->d, reply);
    const char *want = s_want_output(w);
    if (want && (!w->d.out_task || strcmp(want, w->d.out_task) != 0)) {
        w->dirty[S_OUTPUT] = true;
    }
}

static void
s_on_output(void *arg, link_rc_t rc, proto_msg_t **reply, const char *err)
{
    s_watch_t *w = arg;
    const char *want = s_want_output(w);
    if (s_failed(w, S_OUTPUT, rc, *reply, err)) {
        const proto_task_info_t *t = dash_sel_task(&w->d);
        if (rc == LINK_OK && want) {
            // Nothing to show (no attempt finished, or an answered gate,
            // which has no output of its own): say so.
            const char *none = t && t->kind && strcmp(t->kind, "gate") == 0
                                   ? "(a gate has no output; its answer is "
                                     "in the events: log PLAN)"
                                   : "(no output yet)";
            dash_set_output(&w->d, want, (const uint8_t *) none,
                            strlen(none), DASH_OUT_FINAL);
        }
        return;
    }
    const proto_output_ok_t *o = &(*reply)->u.output_ok;
    if (!want || !o->task || strcmp(want, o->task) != 0) {
        w->dirty[S_OUTPUT] = true;  // the selection moved meanwhile
        return;
    }
    static const char waiting[] = "(running; nothing written yet)";
    if (o->running && o->data.len == 0) {
        dash_set_output(&w->d, o->task, (const uint8_t *) waiting,
                        strlen(waiting), DASH_OUT_LIVE);
    } else {
        // Only a gate has no attempt: what it shows a person.
        dash_set_output(&w->d, o->task, o->data.data, o->data.len,
                        o->running         ? DASH_OUT_LIVE
                        : s_is_gate(w) && o->attempt == 0 ? DASH_OUT_GATE
                                                          : DASH_OUT_FINAL);
    }
    if (o->running) {
        // A running tail changes without events: look again shortly.
        w->dirty[S_OUTPUT] = true;
        w->retry_at[S_OUTPUT] = clock_mono_ms() + S_LIVE_MS;
    }
}

static void
s_on_pong(void *arg, link_rc_t rc, proto_msg_t **reply, const char *err)
{
    s_watch_t *w = arg;
    if (s_failed(w, S_PING, rc, *reply, err)) {
        return;
    }
    const proto_pong_t *p = &(*reply)->u.pong;
    snprintf(w->d.whoami, sizeof w->d.whoami, "%s:%s",
             p->role ? p->role : "?", p->name ? p->name : "?");
    w->d.operator = p->role && strcmp(p->role, "operator") == 0;
}

static proto_msg_t *
s_request(const s_watch_t *w, s_kind_t kind, int64_t *timeout_ms)
{
    *timeout_ms = w->a->cfg->connect_timeout_ms;
    proto_msg_t *m = NULL;
    switch (kind) {
    case S_PING:
        m = proto_msg_new(PROTO_MSG_PING);
        break;
    case S_SUB:
        m = proto_msg_new(PROTO_MSG_SUBSCRIBE);
        m->u.subscribe.since = w->cursor;
        m->u.subscribe.wait_ms = w->cursor < 0 || w->more
                                     ? 0 : S_EVENTS_WAIT_MS;
        *timeout_ms += m->u.subscribe.wait_ms;
        break;
    case S_OVERVIEW:
        m = proto_msg_new(PROTO_MSG_STATUS);
        break;
    case S_PLAN:
        m = proto_msg_new(PROTO_MSG_STATUS);
        m->u.status.plan = w->d.open_plan;
        break;
    case S_OUTPUT:
        m = proto_msg_new(PROTO_MSG_OUTPUT);
        m->u.output.plan = w->d.open_plan;
        m->u.output.task = xstrdup(s_want_output(w));
        // A running task's latest tail, else its stored output; a gate's
        // text is what it shows, never a tail.
        m->u.output.live = !s_is_gate(w);
        break;
    default:
        break;
    }
    return m;
}

static const link_reply_fn s_on_reply[S_KINDS] = {
    [S_PING] = s_on_pong, [S_SUB] = s_on_events, [S_OVERVIEW] = s_on_overview,
    [S_PLAN] = s_on_plan, [S_OUTPUT] = s_on_output,
};

// Sends what is wanted and not in flight.
static void
s_issue(s_watch_t *w)
{
    int64_t now = clock_mono_ms();
    w->dirty[S_SUB] = true;  // the stream is always followed
    int64_t low = dash_lease_min(&w->d, clock_wall_ms());
    w->dirty[S_OVERVIEW] |= now - w->overview_at >= S_DRONES_MS ||
                            (low >= 0 && low < S_LEASE_LOW_MS &&
                             now - w->overview_at >= S_LEASE_REREAD_MS);
    w->dirty[S_PLAN] &= w->d.open_plan != 0;
    const char *want = s_want_output(w);
    w->dirty[S_OUTPUT] &= w->d.open_plan != 0 && want != NULL &&
                          !(w->d.out_kind == DASH_OUT_WHY && w->d.out_task &&
                            strcmp(want, w->d.out_task) == 0);
    for (int k = 0; k < S_KINDS; k++) {
        if (!w->dirty[k] || w->out[k] || now < w->retry_at[k]) {
            continue;
        }
        int64_t timeout_ms;
        proto_msg_t *m = s_request(w, (s_kind_t) k, &timeout_ms);
        w->dirty[k] = false;
        w->out[k] = true;
        link_send(w->a->link, &m, timeout_ms, s_on_reply[k], w);
    }
}

// --- what keys do ---------------------------------------------------------

static void
s_on_action(void *arg, link_rc_t rc, proto_msg_t **reply, const char *err)
{
    s_watch_t *w = arg;
    w->acting = false;
    if (rc != LINK_OK) {
        dash_say(&w->d, "not done: %s", err ? err : "no reply");
    } else if ((*reply)->cmd == PROTO_MSG_ERROR) {
        // The broker's own words, e.g. CONFLICT: the gate changed since
        // it was shown.
        const proto_error_body_t *e = &(*reply)->u.error;
        dash_say(&w->d, "refused: %s%s: %s",
                 e->code == PROTO_E_FORBIDDEN ? "needs an operator key; "
                                              : "",
                 proto_status_name(e->code), e->message ? e->message : "");
    } else {
        dash_say(&w->d, "%s", w->done);
    }
}

static void
s_act_send(s_watch_t *w, proto_msg_t **req)
{
    w->acting = true;
    link_send(w->a->link, req, w->a->cfg->connect_timeout_ms, s_on_action,
              w);
}

// A gate's answer, bound to the hash of the text the pane shows.
static void
s_answer(s_watch_t *w, dash_act_t act, const proto_task_info_t *t)
{
    bool approve = act == DASH_ACT_APPROVE;
    if (!approve && !w->d.input[0]) {
        dash_say(&w->d, "not sent: reject needs a note saying why");
        return;
    }
    proto_msg_t *req = proto_msg_new(approve ? PROTO_MSG_APPROVE
                                             : PROTO_MSG_REJECT);
    req->u.verdict.plan = w->d.open_plan;
    req->u.verdict.task = xstrdup(t->id);
    req->u.verdict.note = w->d.input[0] ? xstrdup(w->d.input) : NULL;
    req->u.verdict.hash = gate_hash_hex((const uint8_t *) w->d.output,
                                        w->d.output_len);
    snprintf(w->done, sizeof w->done, "%s gate '%s' of plan %lld (sha256 "
             "%.12s...)", approve ? "approved" : "rejected", t->id,
             (long long) w->d.open_plan, req->u.verdict.hash);
    s_act_send(w, &req);
}

static void
s_cancel(s_watch_t *w)
{
    const proto_task_info_t *t = w->d.pane == DASH_PANE_TASKS
                                     ? dash_sel_task(&w->d) : NULL;
    const proto_plan_info_t *p = dash_sel_plan(&w->d);
    int64_t plan = t ? w->d.open_plan : p ? p->id : 0;
    proto_msg_t *req = proto_msg_new(PROTO_MSG_CANCEL);
    req->u.cancel.plan = plan;
    req->u.cancel.task = t ? xstrdup(t->id) : NULL;
    if (t) {
        snprintf(w->done, sizeof w->done, "cancelled task '%s' of plan %lld",
                 t->id, (long long) plan);
    } else {
        snprintf(w->done, sizeof w->done, "cancelled plan %lld",
                 (long long) plan);
    }
    s_act_send(w, &req);
}

// The input finished (Enter or y): acts on it.
static void
s_input_done(s_watch_t *w)
{
    const proto_task_info_t *t = dash_sel_task(&w->d);
    if (w->d.act == DASH_ACT_CANCEL) {
        s_cancel(w);
    } else if (t && t->state == PROTO_TASK_AWAITING_APPROVAL) {
        s_answer(w, w->d.act, t);
    } else {
        dash_say(&w->d, "not sent: the task is no longer awaiting approval");
    }
}

// a / r: checks what can be checked here before asking for the note.
static void
s_key_gate(s_watch_t *w, dash_act_t act)
{
    const proto_task_info_t *t = dash_sel_task(&w->d);
    const char *verb = act == DASH_ACT_APPROVE ? "approve" : "reject";
    if (!w->d.operator) {
        dash_say(&w->d, "%s needs an operator key (this is %s)", verb,
                 w->d.whoami[0] ? w->d.whoami : "not an operator key");
    } else if (!t || t->state != PROTO_TASK_AWAITING_APPROVAL) {
        dash_say(&w->d, "%s: select a gate awaiting approval in the tasks "
                 "pane (Tab)", verb);
    } else if (w->d.out_kind != DASH_OUT_GATE || !w->d.out_task ||
               strcmp(w->d.out_task, t->id) != 0) {
        dash_say(&w->d, "%s: the gate's text is not shown yet; try again "
                 "in a moment", verb);
    } else if (w->acting) {
        dash_say(&w->d, "busy: the last request has not been answered");
    } else {
        dash_ask(&w->d, act);
    }
}

static void
s_key_cancel(s_watch_t *w)
{
    const proto_task_info_t *t = w->d.pane == DASH_PANE_TASKS
                                     ? dash_sel_task(&w->d) : NULL;
    const proto_plan_info_t *p = dash_sel_plan(&w->d);
    if (!t && !p) {
        dash_say(&w->d, "cancel: nothing selected");
        return;
    }
    dash_ask(&w->d, DASH_ACT_CANCEL);
    if (t) {
        dash_say(&w->d, "cancel task '%s' of plan %lld and what needs it? "
                 "y/n", t->id, (long long) w->d.open_plan);
    } else {
        dash_say(&w->d, "cancel plan %lld '%s'? y/n", (long long) p->id,
                 p->name ? p->name : "");
    }
}

static void
s_key_retry(s_watch_t *w)
{
    const proto_task_info_t *t = dash_sel_task(&w->d);
    if (!t) {
        dash_say(&w->d, "retry: select a task in the tasks pane (Tab)");
        return;
    }
    proto_msg_t *req = proto_msg_new(PROTO_MSG_RETRY);
    req->u.retry.plan = w->d.open_plan;
    req->u.retry.task = xstrdup(t->id);
    snprintf(w->done, sizeof w->done, "task '%s' of plan %lld will run "
             "again", t->id, (long long) w->d.open_plan);
    s_act_send(w, &req);
}

static void
s_on_explain(void *arg, link_rc_t rc, proto_msg_t **reply, const char *err)
{
    s_watch_t *w = arg;
    w->acting = false;
    const proto_task_info_t *t = dash_sel_task(&w->d);
    if (rc != LINK_OK || (*reply)->cmd == PROTO_MSG_ERROR) {
        // A broker without EXPLAIN: what STATUS says.
        const char *why = !t ? "" : t->waiting_reason ? t->waiting_reason
                                  : t->last_error     ? t->last_error
                                                      : "no reason given";
        const char *what = rc != LINK_OK ? err : (*reply)->u.error.message;
        dash_say(&w->d, "explain: %s; status says: %s", what ? what : "?",
                 why);
        return;
    }
    const proto_explain_ok_t *x = &(*reply)->u.explain_ok;
    if (!t || !x->task || strcmp(t->id, x->task) != 0) {
        return;  // the selection moved on
    }
    char *text = xasprintf("%s\n\n(%s, %s)", x->reason ? x->reason : "",
                           x->state ? x->state : "?", x->code ? x->code : "?");
    dash_set_output(&w->d, x->task, (const uint8_t *) text, strlen(text),
                    DASH_OUT_WHY);
    free(text);
    dash_say(&w->d, "why '%s': the right pane; e again shows its output",
             x->task);
}

// e: why the task is where it is, as the broker explains it (EXPLAIN), in
// the output pane; e again goes back to the output.
static void
s_key_explain(s_watch_t *w)
{
    const proto_task_info_t *t = dash_sel_task(&w->d);
    if (!t) {
        dash_say(&w->d, "explain: select a task in the tasks pane (Tab)");
        return;
    }
    if (w->d.out_kind == DASH_OUT_WHY && w->d.out_task &&
        strcmp(w->d.out_task, t->id) == 0) {
        w->dirty[S_OUTPUT] = true;
        w->retry_at[S_OUTPUT] = 0;
        w->d.out_kind = DASH_OUT_FINAL;
        return;
    }
    if (w->acting) {
        dash_say(&w->d, "busy: the last request has not been answered");
        return;
    }
    proto_msg_t *req = proto_msg_new(PROTO_MSG_EXPLAIN);
    req->u.explain.plan = w->d.open_plan;
    req->u.explain.task = xstrdup(t->id);
    w->acting = true;
    link_send(w->a->link, &req, w->a->cfg->connect_timeout_ms, s_on_explain,
              w);
}

// Enter: the plans pane opens the selected plan.
static void
s_key_open(s_watch_t *w)
{
    const proto_plan_info_t *p = dash_sel_plan(&w->d);
    if (w->d.pane != DASH_PANE_PLANS || !p) {
        return;
    }
    if (p->id != w->d.open_plan) {
        w->d.open_plan = p->id;
        proto_msg_destroy(&w->d.plan);
        w->d.sel[DASH_PANE_TASKS] = 0;
        w->dirty[S_PLAN] = true;
    }
    w->d.pane = DASH_PANE_TASKS;
}

static void
s_key_move(s_watch_t *w, int delta)
{
    dash_move(&w->d, delta);
    const char *want = s_want_output(w);
    if (w->d.pane == DASH_PANE_TASKS && want &&
        (!w->d.out_task || strcmp(want, w->d.out_task) != 0)) {
        w->dirty[S_OUTPUT] = true;
    }
}

static void
s_key(s_watch_t *w, int key)
{
    if (w->d.mode == DASH_MODE_HELP) {
        w->d.mode = DASH_MODE_NORMAL;
        return;
    }
    if (w->d.mode != DASH_MODE_NORMAL) {
        dash_input_t r = dash_input_key(&w->d, key);
        if (r == DASH_INPUT_DONE) {
            s_input_done(w);
        } else if (r == DASH_INPUT_ABORT) {
            dash_say(&w->d, "nothing sent");
        }
        return;
    }
    switch (key) {
    case CONSOLE_KEY_UP: case 'k': s_key_move(w, -1); break;
    case CONSOLE_KEY_DOWN: case 'j': s_key_move(w, 1); break;
    case CONSOLE_KEY_PGUP: s_key_move(w, -10); break;
    case CONSOLE_KEY_PGDN: s_key_move(w, 10); break;
    case '\t': dash_next_pane(&w->d); break;
    case '\n': s_key_open(w); break;
    case 'a': s_key_gate(w, DASH_ACT_APPROVE); break;
    case 'r': s_key_gate(w, DASH_ACT_REJECT); break;
    case 'c': s_key_cancel(w); break;
    case 'R': s_key_retry(w); break;
    case 'e': s_key_explain(w); break;
    case '?': w->d.mode = DASH_MODE_HELP; break;
    case 'q': w->quit = true; break;
    default: break;
    }
}

// --- the loop -------------------------------------------------------------

// The link's state on screen; everything is read again on reconnecting.
static void
s_link_state(s_watch_t *w)
{
    bool up = link_is_up(w->a->link);
    if (up) {
        snprintf(w->d.link, sizeof w->d.link, "%s",
                 link_endpoint(w->a->link));
    }
    if (!up && w->was_up) {
        link_describe(w->a->link, w->d.link, sizeof w->d.link);
        dash_say(&w->d, "lost the broker; reconnecting by itself");
    }
    if (up && !w->was_up) {
        for (int k = 0; k < S_KINDS; k++) {
            w->dirty[k] = k != S_PING || !w->d.whoami[0];
            w->retry_at[k] = 0;
        }
        if (w->d.n_events) {
            dash_say(&w->d, "connected to the broker again");
        }
    }
    if (!up && !w->d.link[0]) {
        link_describe(w->a->link, w->d.link, sizeof w->d.link);
    }
    w->d.link_up = up;
    w->was_up = up;
}

static void
s_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset(&sa.sa_mask);
    // No SA_RESTART: the wait in link_poll returns, and the loop ends.
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

// How long the loop may wait: a second (the heartbeat ages on screen), or
// until a wanted re-read may go out.
static int64_t
s_wait_ms(const s_watch_t *w)
{
    int64_t now = clock_mono_ms(), ms = 1000;
    for (int k = 0; k < S_KINDS; k++) {
        if (w->dirty[k] && !w->out[k] && w->retry_at[k] - now < ms) {
            ms = w->retry_at[k] - now;
        }
    }
    return ms < 0 ? 0 : ms;
}

static void
s_loop(s_watch_t *w)
{
    while (!w->quit && !s_stop) {
        s_link_state(w);
        s_issue(w);
        console_draw(&w->d, clock_wall_ms());
        link_poll(w->a->link, STDIN_FILENO, s_wait_ms(w));
        int key;
        while ((key = console_key()) != CONSOLE_KEY_NONE) {
            if (key != CONSOLE_KEY_RESIZE) {
                s_key(w, key);
            }
        }
    }
}

static const char s_help[] =
    "watch [PLAN]\n\nA live dashboard: plans, the open plan's tasks, drones, "
    "gates waiting,\nthe event log and the selected task's output, fed by "
    "the event stream.\nKeys: arrows or j/k move, Tab next pane, Enter opens "
    "a plan, a approve\nand r reject a gate (operator keys), c cancel, R "
    "retry, e why, ? help, q quit.";

int
cmd_watch(arch_t *a, int argc, char **argv)
{
    arch_pos_t pos;
    static const cfg_option_t none[] = {CFG_END};
    int rc = arch_opts(a, none, NULL, argc, argv, &pos, s_help);
    int64_t plan = 0;
    if (rc || !arch_args(a, &pos, 0, 1, "watch [PLAN]") ||
        (pos.n == 1 && arch_parse_plan(a, pos.items[0], &plan) < 0)) {
        return rc > 0 ? ARCH_EXIT_OK : ARCH_EXIT_USAGE;
    }
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        return arch_fail(a, ARCH_EXIT_USAGE, "usage", "watch needs a "
                         "terminal (stdin and stdout); for scripts: events "
                         "--follow, status --json");
    }
    if ((rc = arch_connect(a)) != 0) {
        return rc;
    }
    s_watch_t *w = xcalloc(1, sizeof *w);
    w->a = a;
    w->cursor = -1;
    dash_init(&w->d);
    w->d.open_plan = plan;
    w->dirty[S_PING] = w->dirty[S_OVERVIEW] = w->dirty[S_PLAN] = true;
    s_signals();
    console_open();
    s_loop(w);
    console_close();
    link_destroy(&a->link);
    dash_release(&w->d);
    free(w);
    return ARCH_EXIT_OK;
}
