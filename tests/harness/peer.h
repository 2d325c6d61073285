// peer: a hand-driven CurveZMQ DEALER for end-to-end tests — a drone or a
// console that the test itself speaks for, message by message, to play
// hostile or misbehaving peers against the real broker.
#ifndef WAGGLE_PEER_H
#define WAGGLE_PEER_H

#include "common/keys.h"
#include "proto/proto.h"
#include "tests/harness/swarm.h"

#include <stdint.h>

// A DEALER connected to the swarm's broker with the keys of role (zmq
// context ctx).  NULL on failure (reason on stderr).  Close with
// zmq_close().
void *peer_dealer(void *ctx, const swarm_t *s, keys_role_t role);
// Encodes *msg (consumed) and sends it without waiting.  0 or -1.
int peer_send(void *sock, proto_msg_t **msg);
// The next message that is not a HEARTBEAT or a TASK, decoded, waiting up
// to timeout_ms.  NULL when none came.
proto_msg_t *peer_recv_reply(void *sock, int timeout_ms);
// The next message of command cmd, waiting up to timeout_ms; others are
// dropped.  NULL when none came.
proto_msg_t *peer_recv_cmd(void *sock, proto_cmd_t cmd, int timeout_ms);
// peer_send, then peer_recv_reply.
proto_msg_t *peer_ask(void *sock, proto_msg_t **msg, int timeout_ms);
// A HELLO for instance with slots, no tags, no leases (the caller may add).
proto_msg_t *peer_hello(const char *instance, uint32_t slots,
                        const char *secret);

#endif
