// e2e refusals on the wire: a peer that speaks CurveZMQ correctly but sends
// garbage, a wrong protocol version, an unknown command, or a drone message
// before HELLO gets an ERROR naming what is wrong; the broker stays up and
// a plan still runs afterwards.
#include "common/clock.h"
#include "common/keys.h"
#include "proto/proto.h"
#include "tests/harness/peer.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include <zmq.h>

// Sends one frame and waits up to 5 s for one reply, decoded.  NULL when
// nothing (decodable) came back.
static proto_msg_t *
s_ask(void *sock, const void *frame, size_t len)
{
    if (zmq_send(sock, frame, len, 0) != (int) len) {
        return NULL;
    }
    zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
    int64_t deadline = clock_mono_ms() + 5000;
    while (clock_mono_ms() < deadline) {
        if (zmq_poll(&item, 1, 100) <= 0) {
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
            fprintf(stderr, "undecodable reply: %s\n", perr.message);
        }
        zmq_msg_close(&m);
        return reply;
    }
    fprintf(stderr, "no reply in 5 s\n");
    return NULL;
}

// Sends frame; the reply must be an ERROR with code and req.
static void
s_expect_error(void *sock, const void *frame, size_t len,
               proto_status_t code, uint64_t req)
{
    proto_msg_t *reply = s_ask(sock, frame, len);
    REQUIRE(reply);
    CHECK_STR(proto_cmd_name(reply->cmd), "ERROR");
    if (reply->cmd == PROTO_MSG_ERROR) {
        CHECK_STR(proto_status_name(reply->u.error.code),
                  proto_status_name(code));
        CHECK(reply->u.error.message && reply->u.error.message[0]);
    }
    CHECK_INT(reply->req, req);
    proto_msg_destroy(&reply);
}

// Encodes msg with the real codec and sends it; returns the reply.
static proto_msg_t *
s_ask_msg(void *sock, proto_msg_t **msg)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    proto_encode(*msg, &buf, &len);
    proto_msg_destroy(msg);
    proto_msg_t *reply = s_ask(sock, buf, len);
    free(buf);
    return reply;
}

// Hand-made msgpack: {"v": 2, "cmd": "PING", "req": 7}.
static const uint8_t s_v2[] = {0x83, 0xa1, 'v', 0x02, 0xa3, 'c', 'm', 'd',
                               0xa4, 'P', 'I', 'N', 'G', 0xa3, 'r', 'e',
                               'q', 0x07};
// {"v": 1, "cmd": "FROB", "req": 8}.
static const uint8_t s_frob[] = {0x83, 0xa1, 'v', 0x01, 0xa3, 'c', 'm',
                                 'd', 0xa4, 'F', 'R', 'O', 'B', 0xa3, 'r',
                                 'e', 'q', 0x08};
// 0xc1 is never used in msgpack.
static const uint8_t s_garbage[] = {0xc1, 0xff, 'g', 'a', 'r', 'b', 'a',
                                    'g', 'e', 0x00, 0x01};
// A msgpack integer: valid msgpack, not a map.
static const uint8_t s_not_map[] = {0x05};

static void
s_check_ping(void *sock)
{
    proto_msg_t *ping = proto_msg_new(PROTO_MSG_PING);
    ping->req = 10;
    proto_msg_t *reply = s_ask_msg(sock, &ping);
    REQUIRE(reply);
    CHECK_STR(proto_cmd_name(reply->cmd), "PONG");
    CHECK_INT(reply->req, 10);
    proto_msg_destroy(&reply);
}

static void
s_console_frames(void *ctx, const swarm_t *s)
{
    void *op = peer_dealer(ctx, s, KEYS_ROLE_OPERATOR);
    REQUIRE(op);
    s_expect_error(op, s_garbage, sizeof s_garbage, PROTO_E_MALFORMED, 0);
    s_expect_error(op, s_not_map, sizeof s_not_map, PROTO_E_MALFORMED, 0);
    s_expect_error(op, s_v2, sizeof s_v2, PROTO_E_BAD_VERSION, 7);
    s_expect_error(op, s_frob, sizeof s_frob, PROTO_E_UNKNOWN_COMMAND, 8);
    // The same session goes on working.
    s_check_ping(op);
    zmq_close(op);
}

static void
s_drone_frames(void *ctx, const swarm_t *s)
{
    void *dr = peer_dealer(ctx, s, KEYS_ROLE_DRONE);
    REQUIRE(dr);
    proto_msg_t *hb = proto_msg_new(PROTO_MSG_HEARTBEAT);
    hb->req = 9;
    proto_msg_t *reply = s_ask_msg(dr, &hb);
    REQUIRE(reply);
    CHECK_STR(proto_cmd_name(reply->cmd), "ERROR");
    if (reply->cmd == PROTO_MSG_ERROR) {
        CHECK_STR(proto_status_name(reply->u.error.code), "HELLO_REQUIRED");
    }
    CHECK_INT(reply->req, 9);
    proto_msg_destroy(&reply);
    s_expect_error(dr, s_garbage, sizeof s_garbage, PROTO_E_MALFORMED, 0);
    zmq_close(dr);
}

static const char *s_plan =
    "{\"name\":\"after\",\"tasks\":["
    "{\"id\":\"a\",\"run\":[\"echo\",\"still here\"]},"
    "{\"id\":\"b\",\"needs\":[\"a\"],\"run\":[\"echo\",\"{{a.output}}\"]}]}";

static void
test_malformed_frames(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    void *ctx = zmq_ctx_new();
    s_console_frames(ctx, &s);
    s_drone_frames(ctx, &s);
    zmq_ctx_term(ctx);
    // The broker is still up, and work still flows.
    swarm_drone(&s, 1, NULL, NULL);
    int64_t plan = swarm_submit(&s, s_plan);
    REQUIRE(plan > 0);
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    CHECK_INT(swarm_arch(&s, NULL, NULL, "wait", id, "--timeout", "30", NULL),
              0);
    char *out = NULL;
    CHECK_INT(swarm_arch(&s, &out, NULL, "output", id, "b", NULL), 0);
    CHECK_STR(out, "still here\n");
    free(out);
    swarm_stop(&s);
}

static proto_msg_t *
s_hello(void *sock, const char *instance)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_HELLO);
    m->req = 21;
    m->u.hello.instance = strdup(instance);
    m->u.hello.host = strdup("test");
    m->u.hello.version = strdup("test");
    m->u.hello.slots = 1;
    return s_ask_msg(sock, &m);
}

// An instance id is not a credential: another key repeating a live drone's
// id is refused, and the drone keeps its session.
static void
test_instance_of_another_key(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    void *ctx = zmq_ctx_new();
    void *drone = peer_dealer(ctx, &s, KEYS_ROLE_DRONE);
    void *other = peer_dealer(ctx, &s, KEYS_ROLE_OPERATOR);
    REQUIRE(drone && other);
    const char *id = "0123456789abcdef0123456789abcdef";
    proto_msg_t *r = s_hello(drone, id);
    CHECK(r && r->cmd == PROTO_MSG_WELCOME);
    proto_msg_destroy(&r);
    r = s_hello(other, id);
    REQUIRE(r != NULL);
    CHECK_INT(r->cmd, PROTO_MSG_ERROR);
    if (r->cmd == PROTO_MSG_ERROR) {
        CHECK_INT(r->u.error.code, PROTO_E_FORBIDDEN);
        CHECK_HAS(r->u.error.message, "belongs to key 'drone'");
    }
    proto_msg_destroy(&r);
    r = s_hello(drone, id);
    CHECK(r && r->cmd == PROTO_MSG_WELCOME);
    proto_msg_destroy(&r);
    zmq_close(drone);
    zmq_close(other);
    zmq_ctx_term(ctx);
    swarm_stop(&s);
}

static const t_case_t t_cases[] = {
    T(test_malformed_frames),
    T(test_instance_of_another_key),
    {0},
};

T_MAIN(t_cases)
