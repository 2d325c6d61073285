// link: DEALER, socket monitor, request/reply by req id.
#include "architect/link.h"

#include "common/clock.h"
#include "common/xalloc.h"
#include "proto/wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

struct link {
    void *ctx;
    void *sock;               // DEALER
    void *mon;                // PAIR receiving monitor events
    char endpoint[256];
    const keys_client_t *keys;
    uint64_t next_req;
    bool connected;           // a TCP/IPC connection exists now
    bool handshaken;          // a CURVE handshake completed (ever)
    int auth_failed;          // 0, or the monitor event that said so
    int auth_status;          // the ZAP status code, when known
    int last_errno;           // last connect failure
};

static void
s_setup(link_t *self)
{
    int linger = 0, hs = 3000, one = 1, ivl = 100, ivl_max = 1000;
    void *s = self->sock;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_HANDSHAKE_IVL, &hs, sizeof hs);
    // Requests must never wait in a queue for a dead connection: a send
    // fails instead, and the caller retries or reports.
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
            self->connected = false;
            break;
        case WIRE_EV_HANDSHAKE_OK:
            self->handshaken = true;
            self->auth_failed = 0;
            break;
        case WIRE_EV_AUTH_REFUSED:
        case WIRE_EV_HANDSHAKE_FAILED:
            self->auth_failed = (int) ev;
            self->auth_status = value;
            break;
        default:
            break;
        }
    }
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
    if (!self->handshaken && !self->connected) {
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

// Receives replies; returns the one for req (caller destroys) or NULL.
static proto_msg_t *
s_take_reply(link_t *self, uint64_t req)
{
    proto_limits_t lim;
    proto_limits_default(&lim);
    for (;;) {
        proto_msg_t *m = NULL;
        proto_error_t perr;
        wire_rc_t rc = wire_recv(self->sock, false, &lim, NULL, NULL, NULL,
                                 &m, &perr);
        if (rc == WIRE_AGAIN || rc == WIRE_ERR) {
            return NULL;
        }
        if (rc == WIRE_OK && m->req == req) {
            return m;
        }
        proto_msg_destroy(&m);  // a reply to an abandoned request
    }
}

static void
s_wait(link_t *self, int64_t ms)
{
    zmq_pollitem_t items[2] = {{self->sock, 0, ZMQ_POLLIN, 0},
                               {self->mon, 0, ZMQ_POLLIN, 0}};
    zmq_poll(items, 2, (long) ms);
}

link_rc_t
link_request(link_t *self, proto_msg_t **req, int64_t timeout_ms,
             proto_msg_t **reply, char *err, size_t errlen)
{
    *reply = NULL;
    (*req)->req = ++self->next_req;
    uint64_t id = (*req)->req;
    uint8_t *buf;
    size_t len;
    proto_encode(*req, &buf, &len);
    proto_msg_destroy(req);
    int64_t deadline = clock_mono_ms() + timeout_ms;
    bool sent = false;
    link_rc_t rc = LINK_TIMEOUT;
    for (;;) {
        s_drain_monitor(self);
        if (self->auth_failed) {
            rc = s_explain(self, LINK_AUTH, err, errlen);
            break;
        }
        if (!sent) {
            sent = wire_send_raw(self->sock, NULL, buf, len, true) == 0;
        }
        if (sent && (*reply = s_take_reply(self, id)) != NULL) {
            rc = LINK_OK;
            break;
        }
        int64_t left = deadline - clock_mono_ms();
        if (left <= 0) {
            rc = s_explain(self, LINK_TIMEOUT, err, errlen);
            break;
        }
        s_wait(self, left < 50 ? left : 50);
    }
    free(buf);
    return rc;
}
