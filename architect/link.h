// link: the architect's connection to the broker — a CurveZMQ DEALER and
// the only architect code that touches ZeroMQ.
//
// A request is sent with a fresh req id and its reply matched by that id;
// replies to earlier, abandoned requests are dropped.  A socket monitor
// turns libzmq's silent failures into sentences a person can act on: the
// broker cannot be reached, or refused this key, or the handshake failed
// (wrong broker key).
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
    LINK_UNREACHABLE,  // never connected: nothing listens there
    LINK_AUTH,         // the broker refused this key / the handshake failed
} link_rc_t;

// Connects (asynchronously) to endpoint with the client keys (borrowed).
link_t *link_new(const char *endpoint, const keys_client_t *keys);
void link_destroy(link_t **self_p);
// Sends *req (consumed) and waits up to timeout_ms for its reply (*reply,
// caller destroys).  On failure *reply is NULL and err says why in words.
link_rc_t link_request(link_t *self, proto_msg_t **req, int64_t timeout_ms,
                       proto_msg_t **reply, char *err, size_t errlen);
// True once a handshake with the broker completed.
bool link_ever_connected(const link_t *self);

#endif
