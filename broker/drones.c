// drones: the drone registry and the drone side of the protocol.
//
// A drone is known by the instance id of its HELLO, bound to the session
// (routing id) it last said HELLO on; one session binds at most one
// instance.  Any other drone message on a session without a HELLO gets
// HELLO_REQUIRED — that is how a drone learns the broker restarted.  A
// HELLO for an instance known from another session must carry its session
// secret (trust.c).  Leases are renewed (and confirmed) only by HELLOs and
// HEARTBEATs that list their token, so a TASK that never arrived expires
// instead of living forever on a drone that keeps heartbeating; such a lost
// lease costs the task no attempt the first time, and a drone that keeps
// losing them is quarantined (trust.c).
#include "broker/broker_int.h"

#include "common/log.h"
#include "common/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG "broker.drones"

drone_t *
drones_find(broker_t *b, const char *instance)
{
    for (size_t i = 0; i < b->n_drones; i++) {
        if (strcmp(b->drones[i]->instance, instance) == 0) {
            return b->drones[i];
        }
    }
    return NULL;
}

drone_t *
drones_by_rid(broker_t *b, const wire_rid_t *rid)
{
    for (size_t i = 0; i < b->n_drones; i++) {
        if (wire_rid_equal(&b->drones[i]->rid, rid)) {
            return b->drones[i];
        }
    }
    return NULL;
}

// Whether a line at level about what d's session sent fits its log
// quota: a drone may repeat HELLO, UPDATE and bogus tokens at will, and
// the log must not grow with them (router_log_quota).
static bool
s_log_quota(broker_t *b, const drone_t *d, log_level_t level)
{
    return log_enabled(level) &&
           router_log_quota(b->router, &d->rid, d->name, b->now_mono);
}

static void
s_forget(broker_t *b, size_t i)
{
    drone_t *d = b->drones[i];
    proto_strv_release(&d->tags);
    free(d);
    b->drones[i] = b->drones[--b->n_drones];
}

void
drones_destroy_all(broker_t *b)
{
    while (b->n_drones > 0) {
        s_forget(b, 0);
    }
    free(b->drones);
    b->drones = NULL;
}

static drone_t *
s_register(broker_t *b, const char *instance)
{
    drone_t *d = xcalloc(1, sizeof *d);
    snprintf(d->instance, sizeof d->instance, "%s", instance);
    d->fd = -1;
    trust_init(d);
    b->drones = xrealloc(b->drones, (b->n_drones + 1) * sizeof *b->drones);
    b->drones[b->n_drones++] = d;
    return d;
}

void
drones_stop(broker_t *b, const wire_rid_t *rid, int64_t plan,
            const char *task, uint64_t token, const char *reason,
            bool depends)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_STOP);
    m->u.stop.plan = plan;
    m->u.stop.task = xstrdup(task);
    m->u.stop.token = token;
    m->u.stop.reason = xstrdup(reason);
    broker_queue(b, rid, &m, depends);
}

// Ends a lease as released (no attempt used).
static void
s_release(broker_t *b, const sched_lease_t *lease, const char *why)
{
    if (!broker_begin(b)) {
        return;
    }
    ledger_attempt_end_t end = {.outcome = LEDGER_ATTEMPT_RELEASED,
                                .error = why};
    sched_lease_t copy = *lease;
    ledger_rc_t rc = plans_finish(b, &copy, &end, "broker");
    if (rc == LEDGER_MISS) {
        broker_desync(b, "release of a lease the ledger does not have");
    }
}

// A lease the drone lists: keep it if it is current for this instance,
// else tell the drone to stop it.
static void
s_check_listed(broker_t *b, drone_t *d, uint64_t token, int64_t plan,
               const char *task)
{
    const sched_lease_t *l = sched_lease_get(b->sched, token);
    if (l && strcmp(l->instance, d->instance) == 0) {
        sched_lease_renew(b->sched, token, b->now_mono + b->cfg->lease_ms);
        if (sched_lease_confirm(b->sched, token)) {
            trust_confirmed(d);
        }
        return;
    }
    char *known_task = NULL;
    int64_t known_plan = plan;
    ledger_attempt_outcome_t outcome;
    if (!task && ledger_token_lookup(b->ledger, token, &known_plan,
                                     &known_task, &outcome) == LEDGER_OK) {
        task = known_task;
    }
    if (!task) {
        // A HEARTBEAT listing a token the ledger does not know: no STOP can
        // name its task (PROTOCOL.md 7.5).  Its RESULT will be stale, and a
        // HELLO that lists it (with its task) gets the STOP.  A HEARTBEAT
        // lists up to 4,096 tokens: the session's log quota bounds this.
        if (s_log_quota(b, d, LOG_LEVEL_WARN)) {
            log_warn(LOG, "drone '%s' instance %s lists token %llu, which "
                     "the ledger does not know; no STOP", d->name,
                     d->instance, (unsigned long long) token);
        }
        return;
    }
    // Sent only if the turn commits: what made the lease look stale (a
    // result, an expiry earlier in this turn) may yet be rolled back.
    drones_stop(b, &d->rid, known_plan, task, token, "stale", true);
    free(known_task);
}

static bool
s_listed(const proto_hello_t *h, uint64_t token)
{
    for (size_t i = 0; i < h->n_leases; i++) {
        if (h->leases[i].token == token) {
            return true;
        }
    }
    return false;
}

static void
s_reconcile(broker_t *b, drone_t *d, const proto_hello_t *h)
{
    for (size_t i = 0; i < h->n_leases; i++) {
        s_check_listed(b, d, h->leases[i].token, h->leases[i].plan,
                       h->leases[i].task);
    }
    sched_lease_t *mine = NULL;
    size_t n = sched_leases_of(b->sched, d->instance, &mine);
    for (size_t i = 0; i < n; i++) {
        if (!s_listed(h, mine[i].token)) {
            log_info(LOG, "drone '%s' no longer holds token %llu; released",
                     d->instance, (unsigned long long) mine[i].token);
            s_release(b, &mine[i], "the drone did not list it after "
                                   "reconnecting");
        }
    }
    free(mine);
}

static void
s_set_tags(drone_t *d, const proto_strv_t *tags)
{
    proto_strv_release(&d->tags);
    for (size_t i = 0; i < tags->count; i++) {
        proto_strv_push(&d->tags, tags->items[i]);
    }
}

static char *
s_join(const proto_strv_t *v)
{
    size_t len = 1;
    for (size_t i = 0; i < v->count; i++) {
        len += strlen(v->items[i]) + 1;
    }
    char *s = xcalloc(1, len);
    for (size_t i = 0; i < v->count; i++) {
        if (i) {
            strcat(s, ",");
        }
        strcat(s, v->items[i]);
    }
    return s;
}

static void
s_forget_drone(broker_t *b, const drone_t *d)
{
    for (size_t i = 0; i < b->n_drones; i++) {
        if (b->drones[i] == d) {
            s_forget(b, i);
            return;
        }
    }
}

// d has left its session (BYE, or the session became another instance):
// it is forgotten, unless quarantined, which must outlive the session (a
// client could otherwise leave and HELLO its way out): then it is only
// unbound.
void
drones_leave(broker_t *b, drone_t *d)
{
    if (d->quarantined) {
        memset(&d->rid, 0, sizeof d->rid);
        d->connected = false;
    } else {
        s_forget_drone(b, d);
    }
}

// The session said HELLO as another instance: the one it was bound to is
// gone from it.  Its leases are released as for a drone that no longer
// lists them, and it leaves (drones_leave).
static void
s_unbind(broker_t *b, drone_t *old, const char *instance)
{
    sched_lease_t *mine = NULL;
    size_t n = sched_leases_of(b->sched, old->instance, &mine);
    for (size_t i = 0; i < n; i++) {
        s_release(b, &mine[i], "its session said HELLO as another "
                               "instance");
    }
    free(mine);
    log_info(LOG, "drone '%s' instance %s: its session is now instance %s; "
                  "%zu leases released", old->name, old->instance, instance,
             n);
    drones_leave(b, old);
}

static bool
s_key_mismatch(broker_t *b, const drone_t *known, router_in_t *in)
{
    if (!known || strcmp(known->name, in->name) == 0) {
        return false;
    }
    // An instance id is not a credential: another key may not take over a
    // drone's leases by repeating its id.
    const char *id = in->msg->u.hello.instance;
    proto_msg_t *e = proto_error_new(
        in->msg->req, PROTO_E_FORBIDDEN,
        "instance %s belongs to key '%s', not '%s'", id, known->name,
        in->name);
    broker_queue(b, &in->rid, &e, false);
    broker_refused(b, in, "refused HELLO as instance %s from key '%s': it "
                          "belongs to key '%s'", id, in->name, known->name);
    return true;
}

static void
s_bind(broker_t *b, drone_t *d, router_in_t *in, const char *hash)
{
    const proto_hello_t *h = &in->msg->u.hello;
    snprintf(d->name, sizeof d->name, "%s", in->name);
    d->role = in->role;
    memcpy(d->key, in->key, sizeof d->key);
    snprintf(d->host, sizeof d->host, "%s", h->host ? h->host : "");
    d->slots = h->slots;
    d->draining = h->draining;
    s_set_tags(d, &h->tags);
    d->rid = in->rid;
    liveness_seen(b, d, in->fd);
    char *tags = s_join(&h->tags);
    if (!broker_begin(b) ||
        ledger_drone_seen(b->ledger, d->instance, d->name, d->host, d->slots,
                          tags, hash[0] ? hash : NULL,
                          b->now_wall) == LEDGER_ERROR) {
        broker_fail_turn(b);
    }
    if (s_log_quota(b, d, LOG_LEVEL_INFO)) {
        log_info_with(LOG, LOG_FIELDS(LOG_STR("drone", d->instance),
                                      LOG_STR("key", d->name)),
                      "drone '%s' instance %s on '%s': %u slots, tags [%s], "
                      "%zu leases%s", d->name, d->instance, d->host,
                 d->slots, tags, h->n_leases,
                 d->quarantined ? " (quarantined)" : "");
    }
    free(tags);
}

static void
s_hello(broker_t *b, router_in_t *in)
{
    const proto_hello_t *h = &in->msg->u.hello;
    drone_t *known = drones_find(b, h->instance);
    char *secret = NULL;
    char hash[65];
    if (s_key_mismatch(b, known, in) ||
        trust_hello(b, known, in, &secret, hash) < 0) {
        return;  // refused: nothing changes, the live drone keeps it all
    }
    drone_t *prev = drones_by_rid(b, &in->rid);
    if (prev && prev != known) {
        s_unbind(b, prev, h->instance);
    }
    drone_t *d = known ? known : s_register(b, h->instance);
    s_bind(b, d, in, hash);
    proto_msg_t *w = proto_msg_new(PROTO_MSG_WELCOME);
    w->req = in->msg->req;
    w->u.welcome.heartbeat_ms = (uint32_t) b->cfg->heartbeat_ms;
    w->u.welcome.lease_ms = (uint32_t) b->cfg->lease_ms;
    w->u.welcome.max_output_bytes = (uint64_t) b->cfg->max_output;
    w->u.welcome.broker_id = xstrdup(ledger_id(b->ledger));
    w->u.welcome.secret = secret;
    broker_queue(b, &in->rid, &w, true);
    // After WELCOME is queued: the STOPs of the reconciliation follow it on
    // the wire (PROTOCOL.md 7.1), so the drone is ACTIVE when they arrive.
    s_reconcile(b, d, h);
}

static void
s_heartbeat(broker_t *b, drone_t *d, const proto_heartbeat_t *hb)
{
    for (size_t i = 0; i < hb->n_tokens; i++) {
        s_check_listed(b, d, hb->tokens[i], 0, NULL);
    }
}

static proto_msg_t *
s_ack(const proto_msg_t *req, proto_ack_t status, const char *why)
{
    const proto_result_t *r = &req->u.result;
    proto_msg_t *a = proto_msg_new(PROTO_MSG_RESULT_ACK);
    a->req = req->req;
    a->u.result_ack.plan = r->plan;
    a->u.result_ack.task = xstrdup(r->task);
    a->u.result_ack.token = r->token;
    a->u.result_ack.status = status;
    a->u.result_ack.message = why ? xstrdup(why) : NULL;
    return a;
}

static ledger_attempt_outcome_t
s_outcome(proto_outcome_t o)
{
    switch (o) {
    case PROTO_OUTCOME_SUCCEEDED:
        return LEDGER_ATTEMPT_SUCCEEDED;
    case PROTO_OUTCOME_RELEASED:
        return LEDGER_ATTEMPT_RELEASED;
    default:
        return LEDGER_ATTEMPT_FAILED;
    }
}

// A RESULT for a token that is not a current lease of this drone.
static proto_msg_t *
s_late_result(broker_t *b, const proto_msg_t *req)
{
    int64_t plan;
    char *task = NULL;
    ledger_attempt_outcome_t outcome;
    ledger_rc_t rc = ledger_token_lookup(b->ledger, req->u.result.token,
                                         &plan, &task, &outcome);
    free(task);
    if (rc == LEDGER_ERROR) {
        broker_fail_turn(b);
        return s_ack(req, PROTO_ACK_ERROR, "ledger error");
    }
    // A copy of what was recorded is a duplicate; any other outcome is a
    // late result of an attempt the broker ended itself (a lease lost with
    // its drone ends `released` too): fenced.
    if (rc == LEDGER_OK && outcome == s_outcome(req->u.result.outcome)) {
        return s_ack(req, PROTO_ACK_DUPLICATE, "already recorded");
    }
    return s_ack(req, PROTO_ACK_STALE,
                 rc == LEDGER_MISS ? "unknown token"
                                   : "the lease is no longer current");
}

static void
s_fill_end(broker_t *b, const proto_result_t *r, ledger_attempt_end_t *end)
{
    size_t cap = (size_t) b->cfg->max_output;
    end->outcome = s_outcome(r->outcome);
    end->has_exit_code = r->exit_code >= 0;
    end->exit_code = r->exit_code;
    end->signal = r->signal;
    end->timed_out = r->timed_out;
    end->error = r->error;
    // Keep the tail of what is over the cap, as the drone should have.
    size_t skip = r->out.len > cap ? r->out.len - cap : 0;
    end->out = r->out.data + skip;
    end->out_len = r->out.len - skip;
    end->out_truncated = r->out_truncated || skip > 0;
    skip = r->err.len > cap ? r->err.len - cap : 0;
    end->err = r->err.data + skip;
    end->err_len = r->err.len - skip;
    end->err_truncated = r->err_truncated || skip > 0;
    end->prompt_tokens = r->prompt_tokens;
    end->completion_tokens = r->completion_tokens;
}

static bool
s_lease_matches(const sched_t *sched, const sched_lease_t *l,
                const drone_t *d, const proto_result_t *r)
{
    if (!l || strcmp(l->instance, d->instance) != 0 || l->plan != r->plan) {
        return false;
    }
    const workplan_t *wp = sched_workplan(sched, l->plan);
    return wp && strcmp(wp->tasks[l->idx].id, r->task) == 0;
}

// The model of a prompt task whose result reported tokens (caller frees;
// "" for the drone's default), or NULL.
static char *
s_reported_model(broker_t *b, const sched_lease_t *l,
                 const ledger_attempt_end_t *end)
{
    const workplan_t *wp = sched_workplan(b->sched, l->plan);
    if (!wp || end->prompt_tokens < 0 || end->completion_tokens < 0 ||
        (end->prompt_tokens == 0 && end->completion_tokens == 0)) {
        return NULL;
    }
    const char *model = wp->tasks[l->idx].model;
    return xstrdup(model ? model : "");
}

// Records the RESULT req for d's current lease l; returns its ack.
static proto_msg_t *
s_record(broker_t *b, drone_t *d, const proto_msg_t *req,
         const sched_lease_t *l)
{
    if (!broker_begin(b)) {
        return s_ack(req, PROTO_ACK_ERROR, "ledger error");
    }
    if (!l->confirmed) {
        trust_confirmed(d);  // its RESULT shows the TASK arrived
    }
    ledger_attempt_end_t end = {0};
    s_fill_end(b, &req->u.result, &end);
    sched_lease_t copy = *l;
    // Copied now: finishing the plan's last task unloads its workplan.
    char *model = s_reported_model(b, &copy, &end);
    ledger_rc_t rc = plans_finish(b, &copy, &end, d->name);
    if (rc == LEDGER_OK) {
        if (model) {
            metrics_tokens(b->metrics, model, end.prompt_tokens,
                           end.completion_tokens);
        }
        free(model);
        return s_ack(req, PROTO_ACK_ACCEPTED, NULL);
    }
    free(model);
    if (rc == LEDGER_MISS) {
        broker_desync(b, "a current lease was refused by the ledger");
        return s_late_result(b, req);
    }
    broker_fail_turn(b);
    return s_ack(req, PROTO_ACK_ERROR, "ledger error");
}

static void
s_result(broker_t *b, drone_t *d, router_in_t *in)
{
    const proto_result_t *r = &in->msg->u.result;
    const sched_lease_t *l = sched_lease_get(b->sched, r->token);
    proto_msg_t *ack = s_lease_matches(b->sched, l, d, r)
                           ? s_record(b, d, in->msg, l)
                           : s_late_result(b, in->msg);
    proto_ack_t status = ack->u.result_ack.status;
    // Only work recorded now counts: a "duplicate" can be had for any
    // token whose attempt ended, a lost lease's included.
    if (status == PROTO_ACK_ACCEPTED) {
        trust_result(d);
    }
    if (status != PROTO_ACK_ACCEPTED && s_log_quota(b, d, LOG_LEVEL_INFO)) {
        log_info_with(LOG, LOG_FIELDS(LOG_INT("plan", r->plan),
                                      LOG_STR("task", r->task),
                                      LOG_INT("token", r->token),
                                      LOG_STR("drone", d->instance),
                                      LOG_STR("key", d->name)),
                      "result for plan %lld task '%s' token %llu from '%s': "
                      "%s (%s)", (long long) r->plan, r->task,
                 (unsigned long long) r->token, d->instance,
                 proto_ack_name(status),
                 ack->u.result_ack.message ? ack->u.result_ack.message : "");
    }
    // Every ack waits for the commit: a "duplicate" for a result accepted
    // earlier in this same turn must not outrun that turn's durability.
    broker_queue(b, &in->rid, &ack, true);
}

static void
s_ok(broker_t *b, router_in_t *in, bool depends)
{
    proto_msg_t *ok = proto_msg_new(PROTO_MSG_OK);
    ok->req = in->msg->req;
    broker_queue(b, &in->rid, &ok, depends);
}

static void
s_bye(broker_t *b, drone_t *d, router_in_t *in)
{
    sched_lease_t *mine = NULL;
    size_t n = sched_leases_of(b->sched, d->instance, &mine);
    for (size_t i = 0; i < n; i++) {
        s_release(b, &mine[i], "the drone left");
    }
    free(mine);
    log_info_with(LOG, LOG_FIELDS(LOG_STR("drone", d->instance),
                                  LOG_STR("key", d->name)),
                  "drone '%s' instance %s left", d->name, d->instance);
    s_ok(b, in, true);
    drones_leave(b, d);
}

void
drones_cut(broker_t *b, drone_t *d, const char *why)
{
    sched_lease_t *mine = NULL;
    size_t n = sched_leases_of(b->sched, d->instance, &mine);
    for (size_t i = 0; i < n; i++) {
        const workplan_t *wp = sched_workplan(b->sched, mine[i].plan);
        if (wp) {
            drones_stop(b, &d->rid, mine[i].plan,
                        wp->tasks[mine[i].idx].id, mine[i].token, "revoked",
                        true);
        }
        s_release(b, &mine[i], why);
    }
    free(mine);
    log_info(LOG, "drone '%s' instance %s cut off (%s); %zu leases released",
             d->name, d->instance, why, n);
    for (size_t i = 0; i < b->n_drones; i++) {
        if (b->drones[i] == d) {
            s_forget(b, i);
            break;
        }
    }
}

// A running attempt's latest stdout: kept in memory for `output --follow`
// when the sender holds that lease (anyone else's is dropped).  Never
// answered, like a heartbeat.
static void
s_tail(broker_t *b, drone_t *d, router_in_t *in)
{
    const proto_tail_t *t = &in->msg->u.tail;
    const sched_lease_t *l = sched_lease_get(b->sched, t->token);
    if (!l || strcmp(l->instance, d->instance) != 0) {
        return;
    }
    tails_put(b, t->token, t->total, t->data.data, t->data.len);
}

void
drones_on_message(broker_t *b, router_in_t *in)
{
    if (in->msg->cmd == PROTO_MSG_HELLO) {
        s_hello(b, in);
        return;
    }
    drone_t *d = drones_by_rid(b, &in->rid);
    if (!d) {
        proto_msg_t *e = proto_error_new(in->msg->req, PROTO_E_HELLO_REQUIRED,
                                         "say HELLO first on this session");
        broker_queue(b, &in->rid, &e, false);
        return;
    }
    liveness_seen(b, d, in->fd);
    switch (in->msg->cmd) {
    case PROTO_MSG_HEARTBEAT:
        s_heartbeat(b, d, &in->msg->u.heartbeat);
        break;
    case PROTO_MSG_RESULT:
        s_result(b, d, in);
        break;
    case PROTO_MSG_UPDATE:
        d->slots = in->msg->u.update.slots;
        d->draining = in->msg->u.update.draining;
        if (s_log_quota(b, d, LOG_LEVEL_INFO)) {
            log_info(LOG, "drone '%s' instance %s: %u slots%s", d->name,
                     d->instance, d->slots,
                     d->draining ? ", draining" : "");
        }
        s_ok(b, in, false);
        break;
    case PROTO_MSG_BYE:
        s_bye(b, d, in);
        break;
    case PROTO_MSG_TAIL:
        s_tail(b, d, in);
        break;
    default:
        break;
    }
}

void
drones_heartbeat(broker_t *b)
{
    tails_prune(b);
    for (size_t i = 0; i < b->n_drones;) {
        drone_t *d = b->drones[i];
        // Silent past a lease, its connection open (a drone whose loop is
        // stuck: its kernel still acknowledges) or unbound: its leases
        // lapse on their own; forget it so status stops listing it.  A
        // HELLO brings it back.  A quarantine outlives silence: going quiet
        // must not lift it.
        if (b->now_mono - d->last_seen_ms > b->cfg->lease_ms &&
            !trust_is_quarantined(b, d)) {
            log_info(LOG, "drone '%s' instance %s silent for %lld ms; "
                          "forgotten", d->name, d->instance,
                     (long long) (b->now_mono - d->last_seen_ms));
            s_forget(b, i);
            continue;
        }
        if (d->connected) {
            proto_msg_t *hb = proto_msg_new(PROTO_MSG_HEARTBEAT);
            broker_queue(b, &d->rid, &hb, false);
        }
        i++;
    }
}

// Fills the TASK's inputs from the accepted outputs of what it needs.
// Returns false (with *why) when they do not fit in one TASK.
static bool
s_inputs(broker_t *b, int64_t plan, const wp_task_t *t, proto_task_t *pt,
         char **why)
{
    size_t total = 0;
    pt->inputs = xcalloc(t->n_needs ? t->n_needs : 1, sizeof *pt->inputs);
    for (size_t i = 0; i < t->n_needs; i++) {
        proto_input_t *in = &pt->inputs[pt->n_inputs++];
        in->id = xstrdup(t->needs[i]);
        uint8_t *data = NULL;
        size_t len = 0;
        uint32_t att = 0;
        if (ledger_task_output(b->ledger, plan, t->needs[i], 0, false, &data,
                               &len, &in->truncated, &att) == LEDGER_OK) {
            in->data.data = data;
            in->data.len = len;
        }
        total += len;
    }
    if (total > (size_t) b->cfg->max_inputs) {
        *why = xasprintf("its inputs are %zu bytes; at most %lld fit in one "
                         "task (--max-inputs)", total,
                         (long long) b->cfg->max_inputs);
        return false;
    }
    return true;
}

static proto_msg_t *
s_task_msg(int64_t plan, const workplan_t *wp, const wp_task_t *t,
           uint64_t token, uint32_t attempt)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_TASK);
    proto_task_t *pt = &m->u.task;
    pt->plan = plan;
    pt->plan_name = xstrdup(wp->name);
    pt->task = xstrdup(t->id);
    pt->token = token;
    pt->attempt = attempt;
    for (size_t i = 0; i < t->n_argv; i++) {
        proto_strv_push(&pt->argv, t->argv[i]);
    }
    if (t->kind == WP_KIND_PROMPT) {
        pt->kind = PROTO_KIND_PROMPT;
        pt->prompt = xstrdup(t->prompt);
        pt->system = t->system ? xstrdup(t->system) : NULL;
        pt->model = t->model ? xstrdup(t->model) : NULL;
        pt->max_tokens = (uint32_t) t->max_tokens;  // validated: fits
        pt->has_temperature = t->has_temperature;
        // Validated 0..2; thousandths are finer than any endpoint uses.
        pt->temperature_milli = (uint32_t) (t->temperature * 1000.0 + 0.5);
    }
    pt->env = xcalloc(t->n_env ? t->n_env : 1, sizeof *pt->env);
    for (size_t i = 0; i < t->n_env; i++) {
        pt->env[i].key = xstrdup(t->env[i].key);
        pt->env[i].value = xstrdup(t->env[i].value);
    }
    pt->n_env = t->n_env;
    pt->cwd = t->cwd ? xstrdup(t->cwd) : NULL;
    pt->timeout_s = (uint32_t) t->timeout_s;
    const wp_limits_t *lim = &t->limits;  // validated: each fits uint32
    pt->limits = (proto_task_limits_t) {
        .as_mb = (uint32_t) lim->as_mb, .nofile = (uint32_t) lim->nofile,
        .nproc = (uint32_t) lim->nproc, .cpu_s = (uint32_t) lim->cpu_s};
    return m;
}

// Ready task (plan, idx) is being leased: how long it could have been.
static void
s_dispatch_latency(broker_t *b, int64_t plan, size_t idx)
{
    int64_t since = sched_ready_since(b->sched, plan, idx);
    if (since > 0) {
        int64_t ms = b->now_wall > since ? b->now_wall - since : 0;
        metrics_observe(b->metrics, METRICS_H_DISPATCH_LATENCY,
                        (double) ms / 1000.0);
    }
}

// Leases (plan, idx) to d and queues its TASK.  Returns false when the
// dispatch loop for this drone should stop.
static bool
s_lease_and_push(broker_t *b, drone_t *d, int64_t plan, size_t idx)
{
    const workplan_t *wp = sched_workplan(b->sched, plan);
    const wp_task_t *t = &wp->tasks[idx];
    uint64_t token = 0;
    uint32_t attempt = 0;
    if (!broker_begin(b)) {
        return false;
    }
    sched_attempts_t att = sched_attempts(b->sched, plan, idx);
    ledger_rc_t rc = ledger_task_lease(b->ledger, plan, t->id, d->instance,
                                       d->name, att.used, att.runs + 1,
                                       b->now_wall, &token, &attempt);
    if (rc != LEDGER_OK) {
        if (rc == LEDGER_MISS) {
            broker_desync(b, "a ready task could not be leased");
        } else {
            broker_fail_turn(b);
        }
        return false;
    }
    s_dispatch_latency(b, plan, idx);
    sched_set(b->sched, plan, idx, PROTO_TASK_LEASED, 0);
    att.runs++;
    sched_attempts_set(b->sched, plan, idx, att);
    sched_lease_t l = {.token = token, .plan = plan, .idx = idx,
                       .deadline_ms = b->now_mono + b->cfg->lease_ms};
    if (t->timeout_s > 0) {
        l.hard_deadline_ms =
            b->now_mono + t->timeout_s * 1000 + b->cfg->lease_ms;
    }
    snprintf(l.instance, sizeof l.instance, "%s", d->instance);
    sched_lease_add(b->sched, &l);
    proto_msg_t *m = s_task_msg(plan, wp, t, token, attempt);
    char *why = NULL;
    if (!s_inputs(b, plan, t, &m->u.task, &why)) {
        proto_msg_destroy(&m);
        ledger_attempt_end_t end = {.outcome = LEDGER_ATTEMPT_FAILED,
                                    .error = why};
        plans_finish(b, &l, &end, "broker");
        free(why);
        return true;
    }
    log_debug_with(LOG, LOG_FIELDS(LOG_INT("plan", plan),
                                   LOG_STR("task", t->id),
                                   LOG_INT("token", token),
                                   LOG_STR("drone", d->instance),
                                   LOG_STR("key", d->name)),
                   "task '%s' of plan %lld leased to '%s' (token %llu)",
              t->id, (long long) plan, d->instance,
              (unsigned long long) token);
    if (t->kind == WP_KIND_PROMPT) {
        rate_note(b->rate, t->model, b->now_mono);  // one model request
    }
    broker_queue(b, &d->rid, &m, true);
    return true;
}

typedef struct {
    broker_t *b;
    const char *model;           // "" for the drone's default
} s_model_match_t;

static const wp_task_t *
s_task_of(broker_t *b, int64_t plan, size_t idx)
{
    const workplan_t *wp = sched_workplan(b->sched, plan);
    return wp && idx < wp->n_tasks ? &wp->tasks[idx] : NULL;
}

static bool
s_same_model(void *arg, const sched_lease_t *l)
{
    const s_model_match_t *m = arg;
    const wp_task_t *t = s_task_of(m->b, l->plan, l->idx);
    return t && t->kind == WP_KIND_PROMPT &&
           strcmp(t->model ? t->model : "", m->model) == 0;
}

int64_t
drones_model_full(broker_t *b, int64_t plan, size_t idx, size_t *in_flight)
{
    const wp_task_t *t = s_task_of(b, plan, idx);
    if (!t || t->kind != WP_KIND_PROMPT) {
        return -1;
    }
    int64_t max = limits_of(&b->model_limits, t->model);
    if (max < 0) {
        return -1;
    }
    s_model_match_t m = {b, t->model ? t->model : ""};
    size_t n = sched_lease_count_if(b->sched, s_same_model, &m);
    *in_flight = n;
    return (int64_t) n >= max ? max : -1;
}

bool
drones_rate_full(broker_t *b, int64_t plan, size_t idx, int64_t *max,
                 int64_t *open_ms)
{
    const wp_task_t *t = s_task_of(b, plan, idx);
    return t && t->kind == WP_KIND_PROMPT &&
           rate_full(b->rate, t->model, b->now_mono, max, open_ms);
}

// A prompt task's lease from the ledger, for drones_rate_seed.
typedef struct {
    char *model;                 // owned; NULL for the drone's default
    int64_t at_ms;               // wall
} s_seed_t;

typedef struct {
    const workplan_t *wp;        // the plan whose rows come now
    wp_ids_t *ids;               // its task ids, hashed
    int64_t since_ms;            // wall: the window's start
    s_seed_t *items;
    size_t n, cap;
} s_seeds_t;

static void
s_seed_row(void *arg, const ledger_attempt_row_t *row)
{
    s_seeds_t *ctx = arg;
    if (row->started_ms < ctx->since_ms) {
        return;
    }
    long idx = workplan_ids_find(ctx->ids, row->task);
    if (idx < 0 || ctx->wp->tasks[idx].kind != WP_KIND_PROMPT) {
        return;
    }
    if (ctx->n == ctx->cap) {
        ctx->cap = ctx->cap ? 2 * ctx->cap : 64;
        ctx->items = xrealloc(ctx->items, ctx->cap * sizeof *ctx->items);
    }
    const char *model = ctx->wp->tasks[idx].model;
    ctx->items[ctx->n++] =
        (s_seed_t){model ? xstrdup(model) : NULL, row->started_ms};
}

static int
s_seed_cmp(const void *x, const void *y)
{
    int64_t a = ((const s_seed_t *) x)->at_ms;
    int64_t c = ((const s_seed_t *) y)->at_ms;
    return (a > c) - (a < c);
}

// The workplan of a plan sched has not loaded (it finished), from the
// ledger; NULL when it cannot be read.
static workplan_t *
s_stored_workplan(broker_t *b, int64_t plan)
{
    char *json = NULL;
    workplan_t *wp = NULL;
    wp_errors_t errs = {0};
    if (ledger_plan_json(b->ledger, plan, &json) == LEDGER_OK && json) {
        (void) workplan_parse_stored(json, strlen(json), &wp, &errs);
    }
    wp_errors_release(&errs);
    free(json);
    return wp;
}

// One plan's prompt-task leases in the window into ctx.  False when they
// cannot be read.
static bool
s_seed_plan(broker_t *b, int64_t plan, s_seeds_t *ctx)
{
    workplan_t *own = NULL;
    ctx->wp = sched_workplan(b->sched, plan);
    if (!ctx->wp) {
        own = s_stored_workplan(b, plan);
        ctx->wp = own;
    }
    ctx->ids = ctx->wp ? workplan_ids_new(ctx->wp) : NULL;
    bool ok = ctx->wp &&
              ledger_attempts(b->ledger, plan, NULL, s_seed_row, ctx) ==
                  LEDGER_OK;
    workplan_ids_destroy(&ctx->ids);
    workplan_destroy(&own);
    ctx->wp = NULL;
    return ok;
}

void
drones_rate_seed(broker_t *b)
{
    if (b->model_rpm.count == 0 && b->model_rpm.any < 0) {
        return;
    }
    s_seeds_t ctx = {.since_ms = b->now_wall - rate_window_ms(b->rate)};
    // Every plan with a lease in the window, finished ones too: their
    // requests reached the model as much as a running plan's did.
    int64_t *ids = NULL;
    size_t n = 0;
    if (ledger_recent_plans(b->ledger, ctx.since_ms, &ids, &n) !=
        LEDGER_OK) {
        log_warn(LOG, "--model-rpm: cannot read the recent leases; the "
                      "window starts empty");
    }
    for (size_t i = 0; i < n; i++) {
        if (!s_seed_plan(b, ids[i], &ctx)) {
            log_warn(LOG, "--model-rpm: cannot read plan %lld's recent "
                     "leases; its window starts empty", (long long) ids[i]);
        }
    }
    // Each plan's rows come in token order; the window wants them all in
    // time order.
    if (ctx.n > 0) {
        qsort(ctx.items, ctx.n, sizeof *ctx.items, s_seed_cmp);
    }
    for (size_t i = 0; i < ctx.n; i++) {
        rate_note(b->rate, ctx.items[i].model,
                  b->now_mono - (b->now_wall - ctx.items[i].at_ms));
        free(ctx.items[i].model);
    }
    free(ctx.items);
    free(ids);
}

static int64_t
s_reserve(const wp_task_t *t)
{
    return t->max_tokens > 0 ? t->max_tokens : WORKPLAN_DEFAULT_RESERVE;
}

typedef struct {
    broker_t *b;
    int64_t plan;
    int64_t reserved;
} s_plan_reserve_t;

static bool
s_reserving(void *arg, const sched_lease_t *l)
{
    s_plan_reserve_t *r = arg;
    const wp_task_t *t = l->plan == r->plan ? s_task_of(r->b, l->plan, l->idx)
                                            : NULL;
    if (t && t->kind == WP_KIND_PROMPT) {
        r->reserved += s_reserve(t);
    }
    return false;
}

void
drones_used_release(drones_used_t *u)
{
    free(u->plans);
    free(u->used);
    *u = (drones_used_t){0};
}

// What plan used (cached); -1 on a ledger error (not cached).
static int64_t
s_used(broker_t *b, drones_used_t *cache, int64_t plan)
{
    for (size_t i = 0; cache && i < cache->n; i++) {
        if (cache->plans[i] == plan) {
            return cache->used[i];
        }
    }
    int64_t used = 0;
    if (ledger_plan_used(b->ledger, plan, &used) != LEDGER_OK) {
        return -1;
    }
    if (cache) {
        cache->plans = xrealloc(cache->plans,
                                (cache->n + 1) * sizeof *cache->plans);
        cache->used = xrealloc(cache->used,
                               (cache->n + 1) * sizeof *cache->used);
        cache->plans[cache->n] = plan;
        cache->used[cache->n++] = used;
    }
    return used;
}

int64_t
drones_plan_reserved(broker_t *b, int64_t plan)
{
    s_plan_reserve_t r = {b, plan, 0};
    (void) sched_lease_count_if(b->sched, s_reserving, &r);
    return r.reserved;
}

int64_t
drones_plan_used(broker_t *b, drones_used_t *cache, int64_t plan)
{
    return s_used(b, cache, plan);
}

bool
drones_budget_spent(broker_t *b, drones_used_t *cache, int64_t plan,
                    size_t idx, int64_t *used, int64_t *budget)
{
    const workplan_t *wp = sched_workplan(b->sched, plan);
    const wp_task_t *t = s_task_of(b, plan, idx);
    if (!t || t->kind != WP_KIND_PROMPT || !wp->has_budget) {
        return false;
    }
    *budget = wp->budget_tokens;
    *used = s_used(b, cache, plan);
    if (*used < 0) {
        *used = 0;
        return true;  // unknown: dispatch nothing against it this turn
    }
    // An attempt still running has reported nothing yet: its reservation
    // stands in for it until its result settles to the real usage.
    return *used + drones_plan_reserved(b, plan) + s_reserve(t) > *budget;
}

typedef struct {
    broker_t *b;
    drones_used_t used;          // dispatch records nothing: stays true
} s_hold_t;

static bool
s_hold(void *arg, int64_t plan, size_t idx)
{
    s_hold_t *h = arg;
    size_t n;
    int64_t used, budget, max, open_ms;
    return drones_model_full(h->b, plan, idx, &n) >= 0 ||
           drones_rate_full(h->b, plan, idx, &max, &open_ms) ||
           drones_budget_spent(h->b, &h->used, plan, idx, &used, &budget);
}

void
drones_dispatch(broker_t *b)
{
    s_hold_t hold = {.b = b};
    for (size_t i = 0; i < b->n_drones && !b->turn_failed; i++) {
        drone_t *d = b->drones[i];
        // A drone that went quiet or whose connection closed is probably
        // gone: its leases must go elsewhere, not back to it.
        if (!liveness_alive(b, d) || d->draining) {
            continue;
        }
        size_t room = trust_credit(b, d);
        const char *const *tags = (const char *const *) d->tags.items;
        for (; room > 0 && !b->turn_failed && !b->rebuild; room--) {
            int64_t plan;
            size_t idx;
            if (sched_pick_if(b->sched, tags, d->tags.count, b->now_wall,
                              s_hold, &hold, &plan, &idx) < 0 ||
                !s_lease_and_push(b, d, plan, idx)) {
                break;
            }
        }
    }
    drones_used_release(&hold.used);
}

void
drones_release_undelivered(broker_t *b, uint64_t token)
{
    const sched_lease_t *l = sched_lease_get(b->sched, token);
    if (l) {
        log_info(LOG, "task for drone '%s' could not be delivered; released",
                 l->instance);
        s_release(b, l, "the task could not be delivered to the drone");
    }
}

void
drones_tag_table(broker_t *b, const char *const *const **tags,
                 const size_t **n_tags, size_t *n)
{
    const char *const **t = xcalloc(b->n_drones + 1, sizeof *t);
    size_t *c = xcalloc(b->n_drones + 1, sizeof *c);
    size_t k = 0;
    for (size_t i = 0; i < b->n_drones; i++) {
        if (b->drones[i]->connected) {
            t[k] = (const char *const *) b->drones[i]->tags.items;
            c[k++] = b->drones[i]->tags.count;
        }
    }
    *tags = (const char *const *const *) t;
    *n_tags = c;
    *n = k;
}
