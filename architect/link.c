// link: DEALER, socket monitor, requests in flight matched by req id.
#include "architect/link.h"

#include "common/clock.h"
#include "common/xalloc.h"
#include "proto/wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

// How often a request that could not be sent yet (no connection) is tried
// again, at most.
#define S_RESEND_MS 50

typedef struct {
    uint64_t id;              // its req
    uint8_t *buf;             // the encoded request, until sent
    size_t len;
    bool sent;
    int64_t deadline_ms;      // monotonic
    link_reply_fn fn;
    void *arg;
} s_pending_t;

struct link {
    void *ctx;
    void *sock;               // DEALER
    void *mon;                // PAIR receiving monitor events
    char endpoint[256];
    const keys_client_t *keys;
    uint64_t next_req;
    bool connected;           // a TCP/IPC connection exists now
    bool handshaken;          // a CURVE handshake completed (ever)
    bool up;                  // handshaken on the current connection
    int auth_failed;          // 0, or the monitor event that said so
    int auth_status;          // the ZAP status code, when known
    int last_errno;           // last connect failure
    s_pending_t *pending;     // requests queued or in flight
    size_t n_pending, cap_pending;
    uint64_t n_finished;      // callbacks run, ever
};

static void
s_setup(link_t *self)
{
    int linger = 0, hs = 3000, one = 1, ivl = 100, ivl_max = 1000;
    void *s = self->sock;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_HANDSHAKE_IVL, &hs, sizeof hs);
    // Requests must never wait in a socket queue for a dead connection: a
    // send fails instead, and the request waits in the link.
    zmq_setsockopt(s, ZMQ_IMMEDIATE, &one, sizeof one);
    zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    zmq_setsockopt(s, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max);
    zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, self->keys->broker_z85, 40);
    zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, self->keys->public_z85, 40);
    zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, self->keys->secret_z85, 40);
}

link_t *
link_new(const char *endpoint, const keys_client_t *keys)
{
    link_t *self = xcalloc(1, sizeof *self);
    snprintf(self->endpoint, sizeof self->endpoint, "%s", endpoint);
    self->keys = keys;
    self->ctx = zmq_ctx_new();
    self->sock = zmq_socket(self->ctx, ZMQ_DEALER);
    s_setup(self);
    self->mon = wire_monitor_start(self->ctx, self->sock,
                                   WIRE_MONITOR_ALL);
    if (zmq_connect(self->sock, endpoint) < 0) {
        self->last_errno = errno;
    }
    return self;
}

void
link_destroy(link_t **self_p)
{
    link_t *self = *self_p;
    if (!self) {
        return;
    }
    for (size_t i = 0; i < self->n_pending; i++) {
        free(self->pending[i].buf);
    }
    free(self->pending);
    wire_monitor_stop(self->sock, &self->mon);
    zmq_close(self->sock);
    zmq_ctx_term(self->ctx);
    free(self);
    *self_p = NULL;
}

bool
link_ever_connected(const link_t *self)
{
    return self->handshaken;
}

bool
link_is_up(const link_t *self)
{
    return self->up && !self->auth_failed;
}

const char *
link_endpoint(const link_t *self)
{
    return self->endpoint;
}

size_t
link_pending(const link_t *self)
{
    return self->n_pending;
}

static link_rc_t
s_explain(link_t *self, link_rc_t rc, char *err, size_t errlen)
{
    if (self->auth_failed == WIRE_EV_AUTH_REFUSED) {
        snprintf(err, errlen,
                 "the broker at %s refused key '%s' (ZAP status %d): it is "
                 "not in the broker's allow list for this role, or was "
                 "revoked (on the broker host: waggle-architect keygen "
                 "KEYDIR --list; a key added there is admitted after kill "
                 "-HUP of the broker)",
                 self->endpoint, self->keys->name, self->auth_status);
        return LINK_AUTH;
    }
    if (self->auth_failed) {
        snprintf(err, errlen,
                 "the CurveZMQ handshake with %s failed: either broker.key "
                 "in the key directory is not this broker's public key, or "
                 "the broker does not accept key '%s'", self->endpoint,
                 self->keys->name);
        return LINK_AUTH;
    }
    if (!self->up && !self->connected) {
        snprintf(err, errlen, "cannot reach the broker at %s: %s",
                 self->endpoint,
                 self->last_errno ? zmq_strerror(self->last_errno)
                                  : "nothing answers there (is "
                                    "waggle-broker running?)");
        return LINK_UNREACHABLE;
    }
    snprintf(err, errlen, "no reply from the broker at %s in time",
             self->endpoint);
    return rc;
}

void
link_describe(link_t *self, char *err, size_t errlen)
{
    if (link_is_up(self)) {
        snprintf(err, errlen, "connected to %s", self->endpoint);
        return;
    }
    s_explain(self, LINK_TIMEOUT, err, errlen);
    if (!self->auth_failed && self->connected) {
        snprintf(err, errlen, "connecting to the broker at %s",
                 self->endpoint);
    }
}

// Takes pending[i] out of the table and runs its callback: the table may
// change under a callback (it can send), so nothing points into it then.
static void
s_finish(link_t *self, size_t i, link_rc_t rc, proto_msg_t **reply,
         const char *err)
{
    s_pending_t p = self->pending[i];
    self->pending[i] = self->pending[--self->n_pending];
    self->n_finished++;
    free(p.buf);
    if (p.fn) {
        p.fn(p.arg, rc, reply, err);
    }
    proto_msg_destroy(reply);
}

// Fails every pending request for which pick says so, with rc and err.
static void
s_fail_where(link_t *self, bool sent_only, link_rc_t rc, const char *err)
{
    for (size_t i = 0; i < self->n_pending;) {
        if (sent_only && !self->pending[i].sent) {
            i++;
            continue;
        }
        proto_msg_t *none = NULL;
        s_finish(self, i, rc, &none, err);
        i = 0;  // the table changed: start over (it is small)
    }
}

static void
s_on_disconnect(link_t *self)
{
    self->connected = false;
    self->up = false;
    char err[384];
    snprintf(err, sizeof err, "lost the connection to the broker at %s "
             "before its reply", self->endpoint);
    s_fail_where(self, true, LINK_UNREACHABLE, err);
}

static void
s_drain_monitor(link_t *self)
{
    int value = 0;
    wire_event_t ev;
    while ((ev = wire_monitor_read(self->mon, &value)) != WIRE_EV_NONE) {
        switch (ev) {
        case WIRE_EV_CONNECTED:
            self->connected = true;
            break;
        case WIRE_EV_DISCONNECTED:
            s_on_disconnect(self);
            break;
        case WIRE_EV_HANDSHAKE_OK:
            self->handshaken = true;
            self->up = true;
            self->auth_failed = 0;
            break;
        case WIRE_EV_AUTH_REFUSED:
        case WIRE_EV_HANDSHAKE_FAILED:
            self->auth_failed = (int) ev;
            self->auth_status = value;
            self->up = false;
            break;
        default:
            break;
        }
    }
}

static size_t
s_find(const link_t *self, uint64_t id)
{
    size_t i = 0;
    while (i < self->n_pending && self->pending[i].id != id) {
        i++;
    }
    return i;
}

// Every reply waiting on the socket, each to its request's callback.
static void
s_receive(link_t *self)
{
    proto_limits_t lim;
    proto_limits_default(&lim);
    for (;;) {
        proto_msg_t *m = NULL;
        proto_error_t perr;
        wire_rc_t rc = wire_recv(self->sock, false, &lim, NULL, NULL, NULL,
                                 &m, &perr);
        if (rc == WIRE_AGAIN || rc == WIRE_ERR) {
            return;
        }
        if (rc != WIRE_OK) {
            continue;  // a frame we could not decode: nothing to match
        }
        size_t i = s_find(self, m->req);
        if (i < self->n_pending && self->pending[i].sent) {
            s_finish(self, i, LINK_OK, &m, NULL);
        }
        proto_msg_destroy(&m);  // a reply to an abandoned request
    }
}

static void
s_send_queued(link_t *self)
{
    // Only on a connection the monitor says is up: right after a drop,
    // libzmq may still accept a send into the dying connection's pipe
    // (ZMQ_IMMEDIATE or not), and that request would be lost unnoticed.
    if (!self->up) {
        return;
    }
    for (size_t i = 0; i < self->n_pending; i++) {
        s_pending_t *p = &self->pending[i];
        if (p->sent) {
            continue;
        }
        if (wire_send_raw(self->sock, NULL, p->buf, p->len, true) != 0) {
            return;  // no connection yet: keep the order, try later
        }
        p->sent = true;
        free(p->buf);
        p->buf = NULL;
    }
}

static void
s_expire(link_t *self)
{
    int64_t now = clock_mono_ms();
    for (size_t i = 0; i < self->n_pending;) {
        if (self->pending[i].deadline_ms > now) {
            i++;
            continue;
        }
        char err[512];
        link_rc_t rc = s_explain(self, LINK_TIMEOUT, err, sizeof err);
        proto_msg_t *none = NULL;
        s_finish(self, i, rc, &none, err);
        i = 0;
    }
}

static void
s_work(link_t *self)
{
    s_drain_monitor(self);
    if (self->auth_failed) {
        char err[512];
        link_rc_t rc = s_explain(self, LINK_AUTH, err, sizeof err);
        s_fail_where(self, false, rc, err);
    }
    s_receive(self);
    s_send_queued(self);
    s_expire(self);
}

uint64_t
link_send(link_t *self, proto_msg_t **req, int64_t timeout_ms,
          link_reply_fn fn, void *arg)
{
    if (self->n_pending == self->cap_pending) {
        self->cap_pending = self->cap_pending ? 2 * self->cap_pending : 8;
        self->pending = xrealloc(self->pending,
                                 self->cap_pending * sizeof *self->pending);
    }
    s_pending_t *p = &self->pending[self->n_pending++];
    *p = (s_pending_t){.id = ++self->next_req, .fn = fn, .arg = arg,
                       .deadline_ms = clock_mono_ms() + timeout_ms};
    (*req)->req = p->id;
    proto_encode(*req, &p->buf, &p->len);
    proto_msg_destroy(req);
    uint64_t id = p->id;
    s_send_queued(self);
    return id;
}

void
link_forget(link_t *self, uint64_t id)
{
    size_t i = s_find(self, id);
    if (i < self->n_pending) {
        self->pending[i].fn = NULL;
        proto_msg_t *none = NULL;
        s_finish(self, i, LINK_TIMEOUT, &none, NULL);
    }
}

// How long link_poll may sleep: not past a deadline, and not long while a
// request waits for a connection to be sent on.
static int64_t
s_wait_ms(const link_t *self, int64_t timeout_ms)
{
    int64_t now = clock_mono_ms(), ms = timeout_ms;
    for (size_t i = 0; i < self->n_pending; i++) {
        const s_pending_t *p = &self->pending[i];
        int64_t left = p->deadline_ms - now;
        ms = left < ms ? left : ms;
        ms = !p->sent && ms > S_RESEND_MS ? S_RESEND_MS : ms;
    }
    return ms < 0 ? 0 : ms;
}

int
link_poll(link_t *self, int fd, int64_t timeout_ms)
{
    uint64_t before = self->n_finished;
    s_work(self);
    // A callback that ran already is news for the caller: no waiting then.
    int64_t ms = self->n_finished != before ? 0
                                            : s_wait_ms(self, timeout_ms);
    zmq_pollitem_t items[3] = {{self->sock, 0, ZMQ_POLLIN, 0},
                               {self->mon, 0, ZMQ_POLLIN, 0},
                               {NULL, fd, ZMQ_POLLIN, 0}};
    int n = zmq_poll(items, fd >= 0 ? 3 : 2, (long) ms);
    s_work(self);
    return n > 0 && fd >= 0 && (items[2].revents & ZMQ_POLLIN) ? 1 : 0;
}

typedef struct {
    bool done;
    link_rc_t rc;
    proto_msg_t *reply;
    char *err;
    size_t errlen;
} s_sync_t;

static void
s_on_sync(void *arg, link_rc_t rc, proto_msg_t **reply, const char *err)
{
    s_sync_t *s = arg;
    s->done = true;
    s->rc = rc;
    s->reply = *reply;
    *reply = NULL;
    if (err) {
        snprintf(s->err, s->errlen, "%s", err);
    }
}

link_rc_t
link_request(link_t *self, proto_msg_t **req, int64_t timeout_ms,
             proto_msg_t **reply, char *err, size_t errlen)
{
    s_sync_t s = {.err = err, .errlen = errlen};
    link_send(self, req, timeout_ms, s_on_sync, &s);
    while (!s.done) {
        link_poll(self, -1, timeout_ms);
    }
    *reply = s.reply;
    return s.rc;
}
