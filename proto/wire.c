// wire: framing of proto messages on ZeroMQ sockets.
#include "proto/wire.h"

#include "common/xalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

static void
s_free_buf(void *data, void *hint)
{
    (void) hint;
    free(data);
}

int
wire_send(void *sock, const wire_rid_t *rid, proto_msg_t **msg, bool dontwait)
{
    uint8_t *buf;
    size_t len;
    proto_encode(*msg, &buf, &len);
    proto_msg_destroy(msg);
    int flags = dontwait ? ZMQ_DONTWAIT : 0;
    if (rid && zmq_send(sock, rid->bytes, rid->len, flags | ZMQ_SNDMORE) < 0) {
        int e = errno;
        free(buf);
        errno = e;
        return -1;
    }
    zmq_msg_t body;
    zmq_msg_init_data(&body, buf, len, s_free_buf, NULL);
    if (zmq_msg_send(&body, sock, flags) < 0) {
        int e = errno;
        zmq_msg_close(&body);
        errno = e;
        return -1;
    }
    return 0;
}

int
wire_send_raw(void *sock, const wire_rid_t *rid, const uint8_t *buf,
              size_t len, bool dontwait)
{
    int flags = dontwait ? ZMQ_DONTWAIT : 0;
    if (rid && zmq_send(sock, rid->bytes, rid->len, flags | ZMQ_SNDMORE) < 0) {
        return -1;
    }
    return zmq_send(sock, buf, len, flags) < 0 ? -1 : 0;
}

// Reads and discards the rest of a multipart message.
static void
s_drain(void *sock)
{
    int more = 1;
    size_t sz = sizeof more;
    while (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz) == 0 && more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        zmq_msg_recv(&m, sock, ZMQ_DONTWAIT);
        zmq_msg_close(&m);
    }
}

static wire_rc_t
s_recv_rid(void *sock, wire_rid_t *rid)
{
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&m);
        return errno == EAGAIN ? WIRE_AGAIN : WIRE_ERR;
    }
    size_t n = zmq_msg_size(&m);
    rid->len = n > WIRE_RID_MAX ? WIRE_RID_MAX : n;
    memcpy(rid->bytes, zmq_msg_data(&m), rid->len);
    zmq_msg_close(&m);
    return WIRE_OK;
}

wire_rc_t
wire_recv(void *sock, bool router, const proto_limits_t *lim, wire_rid_t *rid,
          char *user_id, int *src_fd, proto_msg_t **msg, proto_error_t *err)
{
    *msg = NULL;
    if (router) {
        wire_rc_t rc = s_recv_rid(sock, rid);
        if (rc != WIRE_OK) {
            return rc;
        }
    }
    zmq_msg_t body;
    zmq_msg_init(&body);
    if (zmq_msg_recv(&body, sock, router ? 0 : ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&body);
        return errno == EAGAIN ? WIRE_AGAIN : WIRE_ERR;
    }
    if (user_id) {
        const char *uid = zmq_msg_gets(&body, "User-Id");
        snprintf(user_id, WIRE_USER_MAX + 1, "%s", uid ? uid : "");
    }
    if (src_fd) {
        // Deprecated in libzmq but kept (4.3): the only link between a
        // message and the monitor's DISCONNECTED event for its connection.
        *src_fd = zmq_msg_get(&body, ZMQ_SRCFD);
    }
    int more = zmq_msg_more(&body);
    wire_rc_t rc = WIRE_OK;
    if (more) {
        s_drain(sock);
        memset(err, 0, sizeof *err);
        proto_error_set(err, PROTO_E_MALFORMED,
                        "a message must be exactly one frame");
        err->unanswered = true;  // PROTOCOL.md 2: dropped
        rc = WIRE_BAD;
    } else if (proto_decode(zmq_msg_data(&body), zmq_msg_size(&body), lim,
                            msg, err) < 0) {
        rc = WIRE_BAD;
    }
    zmq_msg_close(&body);
    return rc;
}

void *
wire_monitor_start(void *ctx, void *sock, wire_monitor_t which)
{
    static unsigned seq = 0;
    char addr[64];
    snprintf(addr, sizeof addr, "inproc://wire-monitor-%u-%p", seq++, sock);
    int events = which == WIRE_MONITOR_CLOSES ? ZMQ_EVENT_DISCONNECTED
                                              : ZMQ_EVENT_ALL;
    if (zmq_socket_monitor(sock, addr, events) < 0) {
        return NULL;
    }
    void *mon = zmq_socket(ctx, ZMQ_PAIR);
    if (mon && zmq_connect(mon, addr) < 0) {
        zmq_close(mon);
        mon = NULL;
    }
    return mon;
}

static wire_event_t
s_event(uint16_t ev)
{
    switch (ev) {
    case ZMQ_EVENT_CONNECTED:
        return WIRE_EV_CONNECTED;
    case ZMQ_EVENT_DISCONNECTED:
    case ZMQ_EVENT_CLOSED:
        return WIRE_EV_DISCONNECTED;
    case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
        return WIRE_EV_HANDSHAKE_OK;
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
        return WIRE_EV_AUTH_REFUSED;
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        return WIRE_EV_HANDSHAKE_FAILED;
    default:
        return WIRE_EV_OTHER;
    }
}

wire_event_t
wire_monitor_read(void *mon, int *value)
{
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (!mon || zmq_msg_recv(&m, mon, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&m);
        return WIRE_EV_NONE;
    }
    // Frame 1: a 16-bit event and a 32-bit value; frame 2: the endpoint.
    uint16_t ev = 0;
    uint32_t v = 0;
    if (zmq_msg_size(&m) >= 6) {
        memcpy(&ev, zmq_msg_data(&m), 2);
        memcpy(&v, (uint8_t *) zmq_msg_data(&m) + 2, 4);
    }
    bool more = zmq_msg_more(&m);
    zmq_msg_close(&m);
    if (more) {
        s_drain(mon);
    }
    *value = (int) v;
    return s_event(ev);
}

void
wire_monitor_stop(void *sock, void **mon_p)
{
    if (*mon_p) {
        zmq_socket_monitor(sock, NULL, 0);
        zmq_close(*mon_p);
        *mon_p = NULL;
    }
}

bool
wire_rid_equal(const wire_rid_t *a, const wire_rid_t *b)
{
    return a->len == b->len && memcmp(a->bytes, b->bytes, a->len) == 0;
}

void
wire_rid_hex(const wire_rid_t *rid, char *buf, size_t buflen)
{
    size_t o = 0;
    for (size_t i = 0; i < rid->len && o + 3 <= buflen; i++) {
        o += (size_t) snprintf(buf + o, buflen - o, "%02x", rid->bytes[i]);
    }
    if (buflen) {
        buf[o < buflen ? o : buflen - 1] = '\0';
    }
}
