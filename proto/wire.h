// wire: one proto_msg_t over one ZeroMQ socket — framing only.
//
// A message is one frame of msgpack (codec.c); on a ROUTER it is preceded by
// the peer's routing-id frame.  wire knows nothing of sessions or roles: it
// hands the broker the routing id and the ZAP User-Id ("role:name") that
// libzmq attached to the frame, which is the only identity to trust.
#ifndef WAGGLE_WIRE_H
#define WAGGLE_WIRE_H

#include "proto/proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_RID_MAX 255
#define WIRE_USER_MAX 128

typedef struct {
    uint8_t bytes[WIRE_RID_MAX];
    size_t len;
} wire_rid_t;

typedef enum {
    WIRE_OK = 0,    // *msg is a decoded message
    WIRE_BAD,       // a frame arrived but is not a valid message: see *err
    WIRE_AGAIN,     // nothing to read (non-blocking)
    WIRE_ERR,       // the socket failed (errno set)
} wire_rc_t;

// Encodes and sends *msg, consuming it (even on failure; *msg is NULLed).
// rid: the peer on a ROUTER, NULL on a DEALER.  dontwait: fail with EAGAIN
// rather than block (heartbeats).  Returns 0, or -1 with errno
// (EHOSTUNREACH: the peer is gone; EAGAIN: it would block).
int wire_send(void *sock, const wire_rid_t *rid, proto_msg_t **msg,
              bool dontwait);
// Sends an already encoded body (kept by the caller, e.g. a drone's
// outbox entry that may need resending).  Same returns as wire_send.
int wire_send_raw(void *sock, const wire_rid_t *rid, const uint8_t *buf,
                  size_t len, bool dontwait);
// Receives one message without blocking.  On a ROUTER (router true) fills
// *rid and user_id (the ZAP User-Id, "" if none; WIRE_USER_MAX+1 bytes).
// Extra frames are drained and make the message WIRE_BAD with
// err->unanswered set (PROTOCOL.md 2: such a message is dropped).  src_fd
// (may be NULL) gets the descriptor of the connection it came on (-1 when
// unknown): what a monitor's WIRE_EV_DISCONNECTED value names.
wire_rc_t wire_recv(void *sock, bool router, const proto_limits_t *lim,
                    wire_rid_t *rid, char *user_id, int *src_fd,
                    proto_msg_t **msg, proto_error_t *err);
// --- socket monitor: why a connection failed -------------------------------

typedef enum {
    WIRE_EV_NONE = 0,         // nothing waiting
    WIRE_EV_CONNECTED,        // a transport connection exists
    WIRE_EV_DISCONNECTED,     // it went away
    WIRE_EV_HANDSHAKE_OK,     // CurveZMQ handshake completed
    WIRE_EV_AUTH_REFUSED,     // the broker's ZAP handler refused our key
    WIRE_EV_HANDSHAKE_FAILED, // no detail: wrong server key, or refused
    WIRE_EV_OTHER,
} wire_event_t;

// Which events a monitor reports.
typedef enum {
    WIRE_MONITOR_ALL,         // every event (why a connection failed)
    WIRE_MONITOR_CLOSES,      // WIRE_EV_DISCONNECTED only
} wire_monitor_t;

// Starts monitoring sock (in ctx); returns the PAIR socket to read events
// from and to poll, or NULL.  Stop with wire_monitor_stop before closing sock.
void *wire_monitor_start(void *ctx, void *sock, wire_monitor_t which);
// Reads one event without blocking; WIRE_EV_NONE when none waits.  *value
// is the event's value (the ZAP status code for WIRE_EV_AUTH_REFUSED, the
// connection's descriptor for WIRE_EV_DISCONNECTED).
wire_event_t wire_monitor_read(void *mon, int *value);
void wire_monitor_stop(void *sock, void **mon_p);

bool wire_rid_equal(const wire_rid_t *a, const wire_rid_t *b);
// Hex form of a routing id for logs ("0080000001"); buf holds 2*len+1.
void wire_rid_hex(const wire_rid_t *rid, char *buf, size_t buflen);

#endif
