// router: the broker's ROUTER socket and its ZAP handler — the only broker
// code besides auth.c that touches ZeroMQ.
//
// It binds a CurveZMQ server socket with fail-closed authentication
// (ZAP handler started before the bind), caps frames with ZMQ_MAXMSGSIZE,
// makes unroutable sends fail loudly (ZMQ_ROUTER_MANDATORY) and hands each
// received message to the broker with the sender's routing id, role and key
// name taken from the ZAP User-Id (never from the routing id).
#ifndef WAGGLE_ROUTER_H
#define WAGGLE_ROUTER_H

#include "broker/auth.h"
#include "broker/loop.h"
#include "common/keys.h"
#include "proto/proto.h"
#include "proto/wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct router router_t;

#define ROUTER_LOG_PER_S 5       // log lines per session per second

typedef struct {
    wire_rid_t rid;             // the peer's routing id (reply address)
    unsigned role;              // PROTO_R_* of the sender
    char name[KEYS_NAME_MAX + 1];  // the sender's key name
    uint8_t key[32];            // the sender's public key (from ZAP)
    int fd;                     // its connection's descriptor, or -1
    proto_msg_t *msg;           // owned by the caller; NULL when WIRE_BAD
    proto_error_t err;          // why, when WIRE_BAD
} router_in_t;

// keys is borrowed and must outlive the router.  A connection whose data
// goes unacknowledged for PROTO_LIVENESS_BEATS - 1 heartbeats is closed by
// the kernel (TCP_USER_TIMEOUT): a dead host or a cut link becomes a close
// (router_closed) like a dead process's.
int router_open(router_t **out, const char *endpoint, size_t max_frame,
                int64_t heartbeat_ms, const keys_broker_t *keys, char *err,
                size_t errlen);
void router_destroy(router_t **self_p);
const char *router_endpoint(const router_t *self);
// Handshakes the ZAP handler refused for why since start (metrics).
uint64_t router_refused(const router_t *self, auth_refuse_t why);
// Registers the router's sockets with loop: the ROUTER, whose readiness
// ends the wait (the broker reads it in its turn, router_recv), the ZAP
// handler, answered as requests come and never ending the wait
// (LOOP_QUIET), and the socket monitor, drained as events come, whose
// closed connections end the wait (router_closed takes them).  loop is
// borrowed; destroy it before the router.
void router_register(router_t *self, loop_t *loop);
// The descriptors of connections that closed since the last call (libzmq's
// socket monitor: a ROUTER reports no disconnect otherwise), oldest first,
// into *fds (borrowed until the next call).  A descriptor is reused by a
// later connection: match it only against messages received before.
size_t router_closed(router_t *self, const int **fds);
// Receives one message without blocking.  WIRE_OK/WIRE_BAD fill *in.
// Messages PROTOCOL.md drops unanswered (more than one frame, a malformed
// HEARTBEAT) are logged and skipped here, never returned; after 64 of them
// in a row it returns WIRE_AGAIN although more may wait (the next turn
// reads on), so a flood of them cannot hold a turn.
wire_rc_t router_recv(router_t *self, router_in_t *in,
                      const proto_limits_t *lim);
// Log quota per session: at most ROUTER_LOG_PER_S lines a second about one
// session's refused or malformed messages.  Returns true when one more line
// fits now; otherwise counts it as suppressed.  name is the peer's key name.
// A NULL router (a broker opened without a socket, in tests) logs all.
bool router_log_quota(router_t *self, const wire_rid_t *rid,
                      const char *name, int64_t now_ms);
// Logs "suppressed K similar messages from <peer>" for each session whose
// second is over with lines suppressed, and forgets idle sessions.  Call
// once per turn.
void router_log_flush(router_t *self, int64_t now_ms);
// Sends *msg (consumed) to rid.  Returns 0 or -1 with errno (EHOSTUNREACH:
// the peer is gone, EAGAIN: its queue is full).
int router_send(router_t *self, const wire_rid_t *rid, proto_msg_t **msg,
                bool dontwait);

#endif
