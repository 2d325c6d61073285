// router: ROUTER socket setup, loop registration and framing for the
// broker.
#include "broker/router.h"

#include "broker/auth.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/xalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

// One session's log quota for the current second.
typedef struct {
    wire_rid_t rid;
    char name[KEYS_NAME_MAX + 1];  // its key name, for the summary line
    int64_t start_ms;          // monotonic start of its second; 0 = free
    uint32_t lines;            // logged in this second
    uint32_t suppressed;       // not logged in this second
} s_quota_t;

#define S_QUOTAS 256           // sessions tracked at once (oldest evicted)

#define LOG "broker.router"
#define S_DROP_MAX 64

struct router {
    void *ctx;                 // the ZeroMQ context (owned)
    void *sock;                // ROUTER (owned)
    auth_t *auth;              // ZAP handler in ctx (owned)
    char endpoint[256];        // the bound endpoint
    s_quota_t quotas[S_QUOTAS];
    void *mon;                 // the socket's monitor (PAIR), or NULL
    int *closed;               // descriptors closed, not yet taken
    size_t n_closed, cap_closed;
    int *taken;                // what router_closed last handed out
};

static int
s_setopt_int(void *sock, int opt, int value, const char *what, char *err,
             size_t errlen)
{
    if (zmq_setsockopt(sock, opt, &value, sizeof value) < 0) {
        snprintf(err, errlen, "cannot set %s: %s", what, zmq_strerror(errno));
        return -1;
    }
    return 0;
}

// A connection whose data stays unacknowledged for the liveness window
// less the heartbeat that puts data on it (TCP_USER_TIMEOUT) is closed by
// the kernel: a dead host or a cut link.  The broker sends every drone a
// HEARTBEAT each interval, so there is always data to go unacknowledged;
// a live peer's kernel acknowledges it however busy the peer is, and the
// check costs no traffic at all.
static int
s_dead_peers(router_t *self, int64_t heartbeat_ms, char *err, size_t errlen)
{
    int maxrt = (int) ((PROTO_LIVENESS_BEATS - 1) * heartbeat_ms);
    return s_setopt_int(self->sock, ZMQ_TCP_MAXRT, maxrt, "TCP_MAXRT", err,
                        errlen);
}

static int
s_configure(router_t *self, size_t max_frame, char *err, size_t errlen)
{
    int64_t max = (int64_t) max_frame + 1024;  // the envelope around a body
    if (zmq_setsockopt(self->sock, ZMQ_MAXMSGSIZE, &max, sizeof max) < 0) {
        snprintf(err, errlen, "cannot set ZMQ_MAXMSGSIZE: %s",
                 zmq_strerror(errno));
        return -1;
    }
    if (s_setopt_int(self->sock, ZMQ_ROUTER_MANDATORY, 1, "ROUTER_MANDATORY",
                     err, errlen) < 0 ||
        s_setopt_int(self->sock, ZMQ_HANDSHAKE_IVL, 5000, "HANDSHAKE_IVL",
                     err, errlen) < 0 ||
        s_setopt_int(self->sock, ZMQ_LINGER, 200, "LINGER", err,
                     errlen) < 0 ||
        s_setopt_int(self->sock, ZMQ_SNDHWM, 100000, "SNDHWM", err,
                     errlen) < 0 ||
        s_setopt_int(self->sock, ZMQ_RCVHWM, 100000, "RCVHWM", err,
                     errlen) < 0) {
        return -1;
    }
    return 0;
}

int
router_open(router_t **out, const char *endpoint, size_t max_frame,
            int64_t heartbeat_ms, const keys_broker_t *keys, char *err,
            size_t errlen)
{
    router_t *self = xcalloc(1, sizeof *self);
    self->ctx = zmq_ctx_new();
    // ZAP first: with domain enforcement a missing handler refuses everyone,
    // and the handler must be up before the first peer can arrive.
    if (auth_start(&self->auth, self->ctx, keys, err, errlen) < 0) {
        goto out_ctx;
    }
    self->sock = zmq_socket(self->ctx, ZMQ_ROUTER);
    if (s_configure(self, max_frame, err, errlen) < 0 ||
        s_dead_peers(self, heartbeat_ms, err, errlen) < 0 ||
        auth_configure_server(self->sock, keys, err, errlen) < 0) {
        goto out_sock;
    }
    if (zmq_bind(self->sock, endpoint) < 0) {
        snprintf(err, errlen, "cannot bind '%s': %s", endpoint,
                 zmq_strerror(errno));
        goto out_sock;
    }
    size_t len = sizeof self->endpoint;
    zmq_getsockopt(self->sock, ZMQ_LAST_ENDPOINT, self->endpoint, &len);
    // Without it a dead drone is noticed only by its silence.
    self->mon = wire_monitor_start(self->ctx, self->sock,
                                   WIRE_MONITOR_CLOSES);
    if (!self->mon) {
        log_warn(LOG, "no socket monitor (%s): closed connections are "
                      "noticed by silence only", zmq_strerror(errno));
    }
    *out = self;
    return 0;
out_sock:
    zmq_close(self->sock);
    auth_destroy(&self->auth);
out_ctx:
    zmq_ctx_term(self->ctx);
    free(self);
    return -1;
}

void
router_destroy(router_t **self_p)
{
    router_t *self = *self_p;
    if (!self) {
        return;
    }
    wire_monitor_stop(self->sock, &self->mon);
    zmq_close(self->sock);
    auth_destroy(&self->auth);
    zmq_ctx_term(self->ctx);
    free(self->closed);
    free(self->taken);
    free(self);
    *self_p = NULL;
}

const char *
router_endpoint(const router_t *self)
{
    return self->endpoint;
}

// Drains the monitor into the list of closed descriptors.
static void
s_read_monitor(router_t *self)
{
    int value = 0;
    wire_event_t ev;
    while ((ev = wire_monitor_read(self->mon, &value)) != WIRE_EV_NONE) {
        if (ev != WIRE_EV_DISCONNECTED) {
            continue;
        }
        if (self->n_closed == self->cap_closed) {
            self->cap_closed = self->cap_closed ? 2 * self->cap_closed : 16;
            self->closed = xrealloc(self->closed,
                                    self->cap_closed * sizeof *self->closed);
        }
        self->closed[self->n_closed++] = value;
    }
}

static void
s_on_monitor(loop_t *loop, void *arg)
{
    (void) loop;
    s_read_monitor(arg);
}

uint64_t
router_refused(const router_t *self, auth_refuse_t why)
{
    return auth_refused_by(self->auth, why);
}

static void
s_on_zap(loop_t *loop, void *arg)
{
    (void) loop;
    auth_handle(arg);
}

size_t
router_closed(router_t *self, const int **fds)
{
    // Events that came while the broker was busy, not waiting.
    s_read_monitor(self);
    free(self->taken);
    self->taken = self->closed;
    size_t n = self->n_closed;
    self->closed = NULL;
    self->n_closed = self->cap_closed = 0;
    *fds = self->taken;
    return n;
}

void
router_register(router_t *self, loop_t *loop)
{
    loop_add_socket(loop, self->sock, 0, NULL, NULL);
    loop_add_socket(loop, auth_socket(self->auth), LOOP_QUIET, s_on_zap,
                    self->auth);
    // It reports closes only: each one ends the wait, so that the turn
    // notes it at once (liveness.c).
    if (self->mon) {
        loop_add_socket(loop, self->mon, 0, s_on_monitor, self);
    }
}

static wire_rc_t
s_recv_one(router_t *self, router_in_t *in, const proto_limits_t *lim)
{
    char user[WIRE_USER_MAX + 1];
    memset(in, 0, sizeof *in);
    in->fd = -1;
    wire_rc_t rc = wire_recv(self->sock, true, lim, &in->rid, user, &in->fd,
                             &in->msg, &in->err);
    if (rc != WIRE_OK && rc != WIRE_BAD) {
        return rc;
    }
    auth_user_t who;
    if (auth_parse_user_id(user, &who) < 0) {
        // Cannot happen with ZAP enforced; refuse rather than trust.
        in->role = 0;
        snprintf(in->name, sizeof in->name, "?");
        return rc;
    }
    in->role = who.role_bit;
    snprintf(in->name, sizeof in->name, "%s", who.name);
    memcpy(in->key, who.key, sizeof in->key);
    return rc;
}

static void
s_quota_summary(s_quota_t *q)
{
    if (q->suppressed > 0) {
        // libzmq's routing ids are 5 bytes; 8 tell sessions apart.
        char rid[2 * 8 + 1] = "";
        for (size_t i = 0; i < q->rid.len && i < 8; i++) {
            snprintf(rid + 2 * i, 3, "%02x", q->rid.bytes[i]);
        }
        log_warn(LOG, "suppressed %u similar messages from key '%s' "
                      "(session %s)", q->suppressed, q->name, rid);
    }
    q->suppressed = 0;
}

// The quota of rid, or a free (or the oldest) entry for it.
static s_quota_t *
s_quota_find(router_t *self, const wire_rid_t *rid)
{
    s_quota_t *spare = NULL;
    for (size_t i = 0; i < S_QUOTAS; i++) {
        s_quota_t *q = &self->quotas[i];
        if (q->start_ms && wire_rid_equal(&q->rid, rid)) {
            return q;
        }
        if (!spare || (spare->start_ms && q->start_ms < spare->start_ms)) {
            spare = q;
        }
    }
    s_quota_summary(spare);
    memset(spare, 0, sizeof *spare);
    spare->rid = *rid;
    return spare;
}

bool
router_log_quota(router_t *self, const wire_rid_t *rid, const char *name,
                 int64_t now_ms)
{
    if (!self) {
        return true;  // an offline broker (tests): no sessions to flood it
    }
    s_quota_t *q = s_quota_find(self, rid);
    if (!q->start_ms || now_ms - q->start_ms >= 1000) {
        s_quota_summary(q);
        q->start_ms = now_ms > 0 ? now_ms : 1;
        q->lines = 0;
    }
    snprintf(q->name, sizeof q->name, "%s", name);
    if (q->lines < ROUTER_LOG_PER_S) {
        q->lines++;
        return true;
    }
    q->suppressed++;
    return false;
}

void
router_log_flush(router_t *self, int64_t now_ms)
{
    if (!self) {
        return;
    }
    for (size_t i = 0; i < S_QUOTAS; i++) {
        s_quota_t *q = &self->quotas[i];
        if (!q->start_ms || now_ms - q->start_ms < 1000) {
            continue;
        }
        if (q->suppressed > 0) {
            // Its second is over: say what was dropped, start a new one.
            s_quota_summary(q);
            q->start_ms = now_ms;
            q->lines = 0;
        } else {
            q->start_ms = 0;
        }
    }
}

// A message of more than one frame, and a malformed HEARTBEAT, are dropped
// with a log line and no reply (PROTOCOL.md 2 and 6).  At most
// S_DROP_MAX in a row per call, so a flood of them cannot hold a turn.
wire_rc_t
router_recv(router_t *self, router_in_t *in, const proto_limits_t *lim)
{
    for (int i = 0; i < S_DROP_MAX; i++) {
        wire_rc_t rc = s_recv_one(self, in, lim);
        if (rc != WIRE_BAD || !in->err.unanswered) {
            return rc;
        }
        if (router_log_quota(self, &in->rid, in->name, clock_mono_ms())) {
            log_warn(LOG, "dropped a message from '%s' unanswered: %s",
                     in->name, in->err.message);
        }
        proto_msg_destroy(&in->msg);
    }
    return WIRE_AGAIN;
}

int
router_send(router_t *self, const wire_rid_t *rid, proto_msg_t **msg,
            bool dontwait)
{
    return wire_send(self->sock, rid, msg, dontwait);
}
