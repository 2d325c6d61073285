// broker: the turn loop.
//
// A turn: read input (bounded by count and time) and apply each message;
// fire timers only once input is drained, so renewals waiting in the socket
// are seen before leases expire; push work into free credit; commit the
// turn's transaction; then send the outbox.  Nothing that depends on a
// transition leaves before the transition is durable.  A failed commit turns
// every dependent reply into ERROR INTERNAL, drops pushes, and rebuilds
// memory from the ledger.
#include "broker/broker_int.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/xalloc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOG "broker"

// Reads the turn's clocks; sched stamps tasks becoming ready with the wall
// one (dispatch latency).
static void
s_clocks(broker_t *b)
{
    b->now_mono = clock_mono_ms();
    b->now_wall = clock_wall_ms();
    if (b->sched) {
        sched_set_now(b->sched, b->now_wall);
    }
}

void
broker_queue(broker_t *b, const wire_rid_t *rid, proto_msg_t **msg,
             bool depends)
{
    if (b->n_out == b->cap_out) {
        b->cap_out = b->cap_out ? b->cap_out * 2 : 64;
        b->out = xrealloc(b->out, b->cap_out * sizeof *b->out);
    }
    out_t *o = &b->out[b->n_out++];
    o->rid = *rid;
    o->msg = *msg;
    o->depends = depends;
    o->push_token = (*msg)->cmd == PROTO_MSG_TASK ? (*msg)->u.task.token : 0;
    *msg = NULL;
}

bool
broker_begin(broker_t *b)
{
    if (ledger_begin(b->ledger) == 0) {
        return true;
    }
    broker_fail_turn(b);
    return false;
}

void
broker_fail_turn(broker_t *b)
{
    b->turn_failed = true;
}

void
broker_desync(broker_t *b, const char *why)
{
    log_warn(LOG, "memory disagrees with the ledger (%s); rebuilding", why);
    b->rebuild = true;
}

void
broker_refused(broker_t *b, const router_in_t *in, const char *fmt, ...)
{
    if (!log_enabled(LOG_LEVEL_WARN) ||
        !router_log_quota(b->router, &in->rid, in->name, clock_mono_ms())) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(LOG_LEVEL_WARN, LOG, fmt, ap);
    va_end(ap);
}

static broker_t *
s_new(const broker_config_t *cfg)
{
    broker_t *b = xcalloc(1, sizeof *b);
    b->cfg = cfg;
    b->reload_fd = -1;
    b->metrics = metrics_new();
    proto_limits_default(&b->limits);
    b->limits.max_frame = (size_t) cfg->max_frame;
    b->limits.max_string = (size_t) cfg->max_frame;
    char why[256];
    if (limits_parse(cfg->model_limit, &b->model_limits, why,
                     sizeof why) < 0) {
        log_warn("broker", "--model-limit ignored: %s", why);
        limits_release(&b->model_limits);
    }
    if (limits_parse(cfg->model_rpm, &b->model_rpm, why, sizeof why) < 0) {
        log_warn("broker", "--model-rpm ignored: %s", why);
        limits_release(&b->model_rpm);
    }
    b->rate = rate_new(&b->model_rpm, cfg->model_rpm_window_ms > 0
                                          ? cfg->model_rpm_window_ms
                                          : BROKER_RPM_WINDOW_MS);
    return b;
}

// The ledger and the plans in it: all a broker holds before it binds.
static int
s_open_state(broker_t *b, char *err, size_t errlen)
{
    if (ledger_open(&b->ledger, b->cfg->db, 0, err, errlen) < 0) {
        return -1;
    }
    b->sched = sched_new();
    s_clocks(b);
    if (plans_load(b) < 0 ||
        (ledger_in_turn(b->ledger) && ledger_commit(b->ledger) < 0)) {
        snprintf(err, errlen, "cannot load plans from ledger '%s'",
                 b->cfg->db);
        return -1;
    }
    drones_rate_seed(b);
    return 0;
}

// The turn's deadlines, as loop queries (monotonic ms or -1).  None has a
// fire callback: every wake runs a whole turn, which acts on them in its
// fixed order (s_turn), so the loop only has to wake it in time.
static int64_t
s_next_heartbeat(void *arg)
{
    return ((broker_t *) arg)->next_heartbeat_ms;
}

static int64_t
s_next_lease(void *arg)
{
    return sched_next_deadline_ms(((broker_t *) arg)->sched);
}

// A wall-clock deadline on the monotonic clock (both read now).  One long
// past (a gate that timed out while the broker was down) is due now, not
// a negative time that the loop would read as none.
static int64_t
s_wall_to_mono(int64_t wall_ms, int64_t wall_now)
{
    if (wall_ms < 0) {
        return -1;
    }
    int64_t mono = clock_mono_ms() + (wall_ms - wall_now);
    return mono > 0 ? mono : 0;
}

static int64_t
s_next_ready(void *arg)
{
    int64_t wall = clock_wall_ms();
    return s_wall_to_mono(sched_next_ready_ms(((broker_t *) arg)->sched,
                                              wall), wall);
}

static int64_t
s_next_hook(void *arg)
{
    return hook_next_deadline_ms(arg);
}

static int64_t
s_next_event(void *arg)
{
    return events_next_deadline_ms(arg);
}

static int64_t
s_next_gone(void *arg)
{
    return liveness_next_deadline_ms(arg);
}

static int64_t
s_next_gate(void *arg)
{
    return s_wall_to_mono(gates_next_deadline_ms(arg), clock_wall_ms());
}

// A model at its --model-rpm limit opens again: what it held goes then.
static int64_t
s_next_rpm(void *arg)
{
    return rate_next_open_ms(((broker_t *) arg)->rate, clock_mono_ms());
}

// The loop and what wakes the turn: the router's sockets and the turn's
// deadlines.  A new source registers with b->loop; the loop needs no edit.
static void
s_register(broker_t *b)
{
    static loop_next_fn *const deadlines[] = {
        s_next_heartbeat, s_next_lease, s_next_ready, s_next_hook,
        s_next_event,     s_next_gone,  s_next_gate,  s_next_rpm,
    };
    b->loop = loop_new();
    router_register(b->router, b->loop);
    for (size_t i = 0; i < sizeof deadlines / sizeof *deadlines; i++) {
        loop_add_deadline(b->loop, deadlines[i], NULL, b);
    }
}

broker_open_rc_t
broker_open(broker_t **out, const broker_config_t *cfg, char *err,
            size_t errlen)
{
    broker_t *b = s_new(cfg);
    broker_open_rc_t rc = BROKER_OPEN_OK;
    if (keys_load_broker(cfg->keys, &b->keys, err, errlen) < 0) {
        rc = BROKER_OPEN_KEYS;
    } else if (s_open_state(b, err, errlen) < 0) {
        rc = BROKER_OPEN_LEDGER;
    } else if (router_open(&b->router, cfg->bind, (size_t) cfg->max_frame,
                           cfg->heartbeat_ms, b->keys, err, errlen) < 0) {
        rc = BROKER_OPEN_BIND;
    }
    if (rc != BROKER_OPEN_OK) {
        broker_destroy(&b);
        return rc;
    }
    s_register(b);
    if (scrape_start(b, err, errlen) < 0) {
        broker_destroy(&b);
        return BROKER_OPEN_BIND;
    }
    *out = b;
    return BROKER_OPEN_OK;
}

int
broker_open_offline(broker_t **out, const broker_config_t *cfg, char *err,
                    size_t errlen)
{
    broker_t *b = s_new(cfg);
    if (s_open_state(b, err, errlen) < 0) {
        broker_destroy(&b);
        return -1;
    }
    *out = b;
    return 0;
}

void
broker_destroy(broker_t **self_p)
{
    broker_t *b = *self_p;
    if (!b) {
        return;
    }
    for (size_t i = 0; i < b->n_out; i++) {
        proto_msg_destroy(&b->out[i].msg);
    }
    free(b->out);
    free(b->undelivered);
    plans_unloaded_clear(b);
    gates_forget(b);
    events_forget(b);
    hook_destroy(b);
    tails_clear(b);
    drones_destroy_all(b);
    scrape_stop(b);
    loop_destroy(&b->loop);
    router_destroy(&b->router);
    sched_destroy(&b->sched);
    ledger_destroy(&b->ledger);
    keys_broker_destroy(&b->keys);
    limits_release(&b->model_limits);
    rate_destroy(&b->rate);
    limits_release(&b->model_rpm);
    metrics_destroy(&b->metrics);
    free(b);
    *self_p = NULL;
}

const char *
broker_endpoint(const broker_t *self)
{
    return router_endpoint(self->router);
}

static void
s_reply_bad(broker_t *b, router_in_t *in)
{
    proto_msg_t *e = proto_error_new(in->err.req, in->err.code, "%s",
                                     in->err.message);
    broker_queue(b, &in->rid, &e, false);
}

static void
s_dispatch(broker_t *b, router_in_t *in)
{
    proto_cmd_t cmd = in->msg->cmd;
    if (!(proto_cmd_senders(cmd) & in->role)) {
        // What only an operator may do says so: the fix is another key.
        bool op_only = proto_cmd_senders(cmd) == PROTO_R_OPERATOR;
        proto_msg_t *e = proto_error_new(
            in->msg->req, PROTO_E_FORBIDDEN, "key '%s' may not send %s%s",
            in->name, proto_cmd_name(cmd),
            op_only ? ": an operator key is needed" : "");
        broker_queue(b, &in->rid, &e, false);
        broker_refused(b, in, "refused %s from key '%s': not allowed for "
                              "its role", proto_cmd_name(cmd), in->name);
        return;
    }
    switch (cmd) {
    case PROTO_MSG_HELLO:
    case PROTO_MSG_HEARTBEAT:
    case PROTO_MSG_RESULT:
    case PROTO_MSG_UPDATE:
    case PROTO_MSG_BYE:
    case PROTO_MSG_TAIL:
        drones_on_message(b, in);
        break;
    default:
        requests_on_message(b, in);
        break;
    }
}

// Reads input until drained or the turn's budget is spent.  Returns true
// when the socket was drained.
static bool
s_read_input(broker_t *b, int64_t start)
{
    for (int64_t n = 0; n < b->cfg->turn_msgs; n++) {
        if (clock_mono_ms() - start >= b->cfg->turn_ms) {
            return false;
        }
        router_in_t in;
        wire_rc_t rc = router_recv(b->router, &in, &b->limits);
        if (rc == WIRE_AGAIN || rc == WIRE_ERR) {
            return true;
        }
        s_clocks(b);
        b->turn_read++;
        if (!keyring_admits(b, &in)) {
            keyring_refuse(b, &in);
        } else if (rc == WIRE_BAD) {
            broker_refused(b, &in, "malformed message from '%s': %s",
                           in.name, in.err.message);
            s_reply_bad(b, &in);
        } else {
            s_dispatch(b, &in);
        }
        proto_msg_destroy(&in.msg);
    }
    return false;
}

// The turn's commit failed: nothing of it happened.  Replies that depended
// on it become errors; pushes are dropped (their leases never existed).
static void
s_fail_outbox(broker_t *b)
{
    for (size_t i = 0; i < b->n_out; i++) {
        out_t *o = &b->out[i];
        if (!o->depends) {
            continue;
        }
        uint64_t req = o->msg->req;
        bool reply = o->push_token == 0 && o->msg->cmd != PROTO_MSG_STOP;
        proto_msg_destroy(&o->msg);
        if (reply) {
            o->msg = proto_error_new(req, PROTO_E_INTERNAL,
                                     "the ledger could not commit; nothing "
                                     "was recorded, try again");
        }
        o->push_token = 0;
    }
}

static void
s_flush(broker_t *b)
{
    b->turn_sent += b->n_out;
    for (size_t i = 0; i < b->n_out; i++) {
        out_t *o = &b->out[i];
        if (!o->msg) {
            continue;
        }
        // Offline (broker_open_offline) there is no one to send to.
        if (!b->router) {
            proto_msg_destroy(&o->msg);
            continue;
        }
        bool hb = o->msg->cmd == PROTO_MSG_HEARTBEAT;
        if (router_send(b->router, &o->rid, &o->msg, hb) == 0) {
            continue;
        }
        if (o->push_token) {
            b->undelivered = xrealloc(b->undelivered, (b->n_undelivered + 1) *
                                                          sizeof(uint64_t));
            b->undelivered[b->n_undelivered++] = o->push_token;
        }
        drone_t *d = drones_by_rid(b, &o->rid);
        if (d && errno == EHOSTUNREACH) {
            liveness_closed(b, d);
        }
    }
    b->n_out = 0;
}

// The leases of sched that no drone has confirmed yet (caller frees).
static size_t
s_unconfirmed(const sched_t *sched, sched_lease_t **out)
{
    size_t n = sched_leases_expired(sched, INT64_MAX, out), k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(*out)[i].confirmed) {
            (*out)[k++] = (*out)[i];
        }
    }
    return k;
}

// A load treats every lease as confirmed (after a restart its drone had
// it); within one run the ledger does not know, so the leases that were
// unconfirmed before the rebuild stay so, with their deadlines: a failed
// commit must not turn a lost lease into an expiry that uses an attempt.
static void
s_restore_unconfirmed(broker_t *b, const sched_lease_t *old, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const sched_lease_t *l = sched_lease_get(b->sched, old[i].token);
        if (l && strcmp(l->instance, old[i].instance) == 0) {
            sched_lease_remove(b->sched, old[i].token);
            sched_lease_add(b->sched, &old[i]);
        }
    }
}

// Runs after the turn has ended: what the load writes (settling finished
// plans, clamping backoffs) is a transaction of its own, and a failure in
// it must leave neither that transaction open nor the turn failed for the
// next turn.
static void
s_rebuild(broker_t *b)
{
    b->rebuild = false;
    sched_lease_t *old = NULL;
    size_t n_old = s_unconfirmed(b->sched, &old);
    sched_destroy(&b->sched);
    b->sched = sched_new();
    s_clocks(b);
    bool ok = plans_load(b) == 0 && !b->turn_failed;
    s_restore_unconfirmed(b, old, n_old);
    free(old);
    if (ok && ledger_in_turn(b->ledger) && ledger_commit(b->ledger) < 0) {
        ok = false;
    }
    if (!ok) {
        ledger_rollback(b->ledger);
        log_error(LOG, "cannot reload plans from the ledger; retrying next "
                       "turn");
        b->rebuild = true;
    }
    b->turn_failed = false;
}

static void
s_release_undelivered(broker_t *b)
{
    size_t n = b->n_undelivered;
    b->n_undelivered = 0;
    for (size_t i = 0; i < n; i++) {
        drones_release_undelivered(b, b->undelivered[i]);
    }
}

// Commits the turn's transaction, timing it.  Returns 0 or -1 (rolled
// back).
static int
s_commit(broker_t *b)
{
    uint64_t moves = ledger_turn_moves(b->ledger);
    int64_t t0 = clock_mono_us();
    if (ledger_commit(b->ledger) < 0) {
        metrics_add(b->metrics, METRIC_COMMIT_FAILURES, 0, 1);
        return -1;
    }
    b->turn_commit_us = clock_mono_us() - t0;
    metrics_add(b->metrics, METRIC_COMMITS, 0, 1);
    metrics_observe(b->metrics, METRICS_H_COMMIT_DURATION,
                    (double) b->turn_commit_us / 1e6);
    metrics_observe(b->metrics, METRICS_H_COMMIT_TRANSITIONS, (double) moves);
    return 0;
}

void
broker_end_turn(broker_t *b)
{
    bool failed = b->turn_failed;
    bool wrote = ledger_in_turn(b->ledger);
    b->turn_failed = false;
    if (failed) {
        ledger_rollback(b->ledger);
        metrics_add(b->metrics, METRIC_COMMIT_FAILURES, 0, 1);
    } else if (ledger_in_turn(b->ledger) && s_commit(b) < 0) {
        failed = true;
    }
    if (failed) {
        log_error(LOG, "turn not committed; its replies become errors and "
                       "memory is rebuilt from the ledger");
        s_fail_outbox(b);
        b->rebuild = true;
    }
    hook_flush(b, !failed);
    if (wrote && !failed) {
        // Fan-out right after the commit, never before: a parked reader
        // sees only events that are durable.
        events_fanout(b);
    }
    s_flush(b);
    if (b->rebuild) {
        s_rebuild(b);
    }
}

// The broker could not run for delta_ms: that time counts neither against
// leases nor as a drone's silence.
static void
s_shift(broker_t *b, int64_t delta_ms)
{
    sched_leases_shift(b->sched, delta_ms);
    liveness_shift(b, delta_ms);
}

// --slow-turn-ms: where a long turn's time went (t: the clock after each
// part, in µs), so a stall names its cause.
static void
s_log_slow(broker_t *b, const int64_t t[5])
{
    int64_t total_ms = (t[4] - t[0]) / 1000;
    if (b->cfg->slow_turn_ms <= 0 || total_ms < b->cfg->slow_turn_ms) {
        return;
    }
    log_warn(LOG, "slow turn: %lld ms: input %lld (%lld messages), timers "
             "%lld, dispatch %lld, commit %lld, end and send %lld ms; %zu "
             "messages sent", (long long) total_ms,
             (long long) (t[1] - t[0]) / 1000, (long long) b->turn_read,
             (long long) (t[2] - t[1]) / 1000,
             (long long) (t[3] - t[2]) / 1000,
             (long long) b->turn_commit_us / 1000,
             (long long) (t[4] - t[3] - b->turn_commit_us) / 1000,
             b->turn_sent);
}

static void
s_turn(broker_t *b)
{
    s_clocks(b);
    int64_t start = b->now_mono;
    int64_t t[5] = {clock_mono_us()};
    b->turn_read = 0;
    b->turn_sent = 0;
    b->turn_commit_us = 0;
    s_release_undelivered(b);
    if (b->reload) {
        // In the turn, before its input: releases commit with it, and a
        // revoked session's next message is already refused.
        b->reload = false;
        keyring_reload(b);
    }
    // Before the input: a message read this turn on a reused descriptor
    // then clears the mark it would wrongly get.
    const int *fds = NULL;
    size_t n_fds = b->router ? router_closed(b->router, &fds) : 0;
    liveness_closed_fds(b, fds, n_fds);
    bool drained = s_read_input(b, start);
    t[1] = clock_mono_us();
    s_clocks(b);
    if (drained) {
        liveness_check(b);
        liveness_expire(b);
    }
    gates_expire(b);
    events_expire(b);
    hook_reap(b, b->now_mono);
    if (b->now_mono >= b->next_heartbeat_ms) {
        drones_heartbeat(b);
        b->next_heartbeat_ms = b->now_mono + b->cfg->heartbeat_ms;
    }
    t[2] = clock_mono_us();
    drones_dispatch(b);
    t[3] = clock_mono_us();
    broker_end_turn(b);
    t[4] = clock_mono_us();
    s_log_slow(b, t);
    router_log_flush(b->router, clock_mono_ms());
    // A turn that overran (a slow disk, a stopped process) must not expire
    // leases whose renewals are waiting in the socket: push deadlines back.
    int64_t overrun = clock_mono_ms() - start - b->cfg->turn_ms;
    if (overrun > 0) {
        s_shift(b, overrun);
    }
}

// The SIGHUP pipe is readable: drain it (several signals, one reload).
static void
s_on_hup(loop_t *loop, void *arg)
{
    (void) loop;
    broker_t *b = arg;
    char buf[64];
    bool any = false;
    while (read(b->reload_fd, buf, sizeof buf) > 0) {
        any = true;
    }
    if (any) {
        log_info(LOG, "SIGHUP: reloading the allow lists");
        b->reload = true;
    }
}

int
broker_run(broker_t *b, volatile sig_atomic_t *stop, int reload_fd)
{
    b->next_heartbeat_ms = clock_mono_ms();
    b->reload_fd = reload_fd;
    if (reload_fd >= 0) {
        loop_add_fd(b->loop, reload_fd, 0, s_on_hup, b);
    }
    while (!*stop) {
        int64_t before = clock_mono_ms();
        int64_t timeout = loop_run_once(b->loop, b->reload ? 0 : -1);
        // Sleeping far past the timeout means this process was stopped or
        // starved: drones could not reach us, so do not count that time
        // against their leases.
        int64_t overslept = clock_mono_ms() - before - timeout;
        if (timeout >= 0 && overslept > b->cfg->heartbeat_ms) {
            s_shift(b, overslept);
        }
        s_turn(b);
    }
    if (reload_fd >= 0) {
        loop_remove_fd(b->loop, reload_fd);
    }
    log_info(LOG, "stopping");
    return 0;
}
