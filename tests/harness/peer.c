// peer: see peer.h.
#include "tests/harness/peer.h"

#include "common/clock.h"
#include "common/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

void *
peer_dealer(void *ctx, const swarm_t *s, keys_role_t role)
{
    keys_client_t k;
    char err[512];
    if (keys_load_client(s->keys, role, &k, err, sizeof err) < 0) {
        fprintf(stderr, "keys: %s\n", err);
        return NULL;
    }
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, k.broker_z85,
                   strlen(k.broker_z85));
    zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, k.public_z85,
                   strlen(k.public_z85));
    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, k.secret_z85,
                   strlen(k.secret_z85));
    if (zmq_connect(sock, s->endpoint) != 0) {
        zmq_close(sock);
        return NULL;
    }
    return sock;
}

int
peer_send(void *sock, proto_msg_t **msg)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    proto_encode(*msg, &buf, &len);
    proto_msg_destroy(msg);
    int rc = zmq_send(sock, buf, len, ZMQ_DONTWAIT) == (int) len ? 0 : -1;
    free(buf);
    return rc;
}

static proto_msg_t *
s_recv_one(void *sock, int64_t deadline)
{
    zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
    while (clock_mono_ms() < deadline) {
        if (zmq_poll(&item, 1, 50) <= 0) {
            continue;
        }
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, 0) < 0) {
            zmq_msg_close(&m);
            return NULL;
        }
        proto_limits_t lim;
        proto_limits_default(&lim);
        proto_msg_t *reply = NULL;
        proto_error_t perr;
        if (proto_decode(zmq_msg_data(&m), zmq_msg_size(&m), &lim, &reply,
                         &perr) < 0) {
            fprintf(stderr, "undecodable message: %s\n", perr.message);
        }
        zmq_msg_close(&m);
        if (reply) {
            return reply;
        }
    }
    return NULL;
}

proto_msg_t *
peer_recv_cmd(void *sock, proto_cmd_t cmd, int timeout_ms)
{
    int64_t deadline = clock_mono_ms() + timeout_ms;
    proto_msg_t *m;
    while ((m = s_recv_one(sock, deadline)) != NULL) {
        if (m->cmd == cmd) {
            return m;
        }
        proto_msg_destroy(&m);
    }
    return NULL;
}

proto_msg_t *
peer_recv_reply(void *sock, int timeout_ms)
{
    int64_t deadline = clock_mono_ms() + timeout_ms;
    proto_msg_t *m;
    while ((m = s_recv_one(sock, deadline)) != NULL) {
        if (m->cmd != PROTO_MSG_HEARTBEAT && m->cmd != PROTO_MSG_TASK) {
            return m;
        }
        proto_msg_destroy(&m);
    }
    return NULL;
}

proto_msg_t *
peer_ask(void *sock, proto_msg_t **msg, int timeout_ms)
{
    if (peer_send(sock, msg) < 0) {
        return NULL;
    }
    return peer_recv_reply(sock, timeout_ms);
}

proto_msg_t *
peer_hello(const char *instance, uint32_t slots, const char *secret)
{
    static uint64_t req = 100;
    proto_msg_t *m = proto_msg_new(PROTO_MSG_HELLO);
    m->req = ++req;
    m->u.hello.instance = xstrdup(instance);
    m->u.hello.host = xstrdup("peer");
    m->u.hello.version = xstrdup("test");
    m->u.hello.slots = slots;
    m->u.hello.secret = secret ? xstrdup(secret) : NULL;
    return m;
}
