// link: the architect's connection to the broker — a CurveZMQ DEALER and
// the only architect code that touches ZeroMQ.
//
// Requests go out with a fresh req id (the envelope field every reply
// echoes, PROTOCOL.md section 3) and each reply is matched to its request
// by that id, so several can be in flight at once: a SUBSCRIBE held at the
// broker while STATUS, OUTPUT or APPROVE come and go.  A reply nobody waits
// for any more (its request timed out or was abandoned) is dropped.
//
// Two ways to use it.  link_request: send one and block until its reply
// (the simple commands).  link_send + link_poll: queue requests with a
// callback each, and let link_poll wait on the socket, the monitor and one
// more descriptor of the caller's (a terminal) and run the callbacks — an
// event loop for the dashboard.
//
// The DEALER reconnects by itself.  A request that cannot be sent yet (no
// connection: ZMQ_IMMEDIATE) waits in the link until its deadline; one that
// was sent on a connection that then dropped fails at once ("lost the
// connection"), since its reply cannot come.  A socket monitor turns
// libzmq's silent failures into sentences a person can act on: the broker
// cannot be reached, or refused this key, or the handshake failed (wrong
// broker key).
#ifndef WAGGLE_LINK_H
#define WAGGLE_LINK_H

#include "common/keys.h"
#include "proto/proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct link link_t;

typedef enum {
    LINK_OK = 0,
    LINK_TIMEOUT,      // connected (or maybe), but no reply in time
    LINK_UNREACHABLE,  // not connected: nothing listens there, or the
                       // connection dropped before the reply
    LINK_AUTH,         // the broker refused this key / the handshake failed
} link_rc_t;

// A request's end: rc LINK_OK with *reply (the callee may take it: set
// *reply NULL, else the link destroys it), or a failure with err (a
// sentence) and *reply NULL.  Runs inside link_poll (or link_request).
typedef void (*link_reply_fn)(void *arg, link_rc_t rc, proto_msg_t **reply,
                              const char *err);

// Connects (asynchronously) to endpoint with the client keys (borrowed).
link_t *link_new(const char *endpoint, const keys_client_t *keys);
// Drops pending requests without calling their callbacks.
void link_destroy(link_t **self_p);
// Sends *req (consumed) and waits up to timeout_ms for its reply (*reply,
// caller destroys).  On failure *reply is NULL and err says why in words.
// Callbacks of other requests in flight may run meanwhile.
link_rc_t link_request(link_t *self, proto_msg_t **req, int64_t timeout_ms,
                       proto_msg_t **reply, char *err, size_t errlen);
// Queues *req (consumed; its req id is set here) and returns that id.  fn
// (arg) runs exactly once, from link_poll: with the reply, or with the
// failure once timeout_ms passed, the connection dropped after sending, or
// the broker refused the key.
uint64_t link_send(link_t *self, proto_msg_t **req, int64_t timeout_ms,
                   link_reply_fn fn, void *arg);
// Forgets request id: its callback never runs (a late reply is dropped).
void link_forget(link_t *self, uint64_t id);
// Does the link's work — monitor events, queued sends, replies and
// expired requests, with their callbacks — waits up to timeout_ms (less
// when a request's deadline comes first; not at all when a callback ran
// already) for the broker or for fd (-1: none) to be readable, and does
// the work again.  Returns 1 when fd is readable, 0 otherwise (a signal
// interrupting the wait included).
int link_poll(link_t *self, int fd, int64_t timeout_ms);
// Requests queued or in flight.
size_t link_pending(const link_t *self);
// True once a handshake with the broker completed.
bool link_ever_connected(const link_t *self);
// True while a handshaken connection is up and the key is not refused.
bool link_is_up(const link_t *self);
// Why the link is not up now, in words (as a failed request would say).
void link_describe(link_t *self, char *err, size_t errlen);
// The endpoint it connects to.
const char *link_endpoint(const link_t *self);

#endif
