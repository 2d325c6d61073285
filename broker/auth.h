// auth: the broker's own fail-closed ZAP handler (RFC 27) for CurveZMQ.
//
// It answers libzmq's ZAP requests on inproc://zeromq.zap.01 from the allow
// lists loaded by keys: a known public key gets 200 with User-Id
// "ROLE:NAME:KEY" (KEY: the client's public key in Z85, so that the broker
// can check on every message that the session's key is still admitted);
// anything else (unknown key, a mechanism other than CURVE, a
// malformed request) gets 400.  auth_configure_server() sets the ZAP domain
// and ZMQ_ZAP_ENFORCE_DOMAIN so that with no handler running libzmq refuses
// everyone rather than admitting everyone (PITFALLS.md).  It runs in the
// broker's own thread: the broker polls auth_socket() and calls
// auth_handle() when it is readable.
#ifndef WAGGLE_AUTH_H
#define WAGGLE_AUTH_H

#include "common/keys.h"

#include <stddef.h>
#include <stdint.h>

#define AUTH_DOMAIN "waggle"

typedef struct auth auth_t;

// Binds the ZAP REP socket in zmq_ctx.  keys is borrowed and must outlive
// the handler.  Returns 0, or -1 with err.
int auth_start(auth_t **out, void *zmq_ctx, const keys_broker_t *keys,
               char *err, size_t errlen);
void auth_destroy(auth_t **self_p);
void *auth_socket(auth_t *self);
// Answers every pending ZAP request without blocking.
void auth_handle(auth_t *self);
uint64_t auth_accepted(const auth_t *self);
uint64_t auth_refused(const auth_t *self);

// Why a handshake was refused (metrics label values, auth_refuse_name).
typedef enum {
    AUTH_REFUSE_UNKNOWN_KEY = 0,  // a CURVE key on no allow list
    AUTH_REFUSE_MECHANISM,        // NULL or PLAIN instead of CURVE
    AUTH_REFUSE_DOMAIN,           // a ZAP domain other than AUTH_DOMAIN
    AUTH_REFUSE_MALFORMED,        // a ZAP request we cannot read
    AUTH_REFUSE__COUNT
} auth_refuse_t;
// "unknown_key", "mechanism", "domain", "malformed"; "?" out of range.
const char *auth_refuse_name(auth_refuse_t why);
// Handshakes refused for why since start.
uint64_t auth_refused_by(const auth_t *self, auth_refuse_t why);

// Makes sock a CURVE server with keys' secret, the ZAP domain and domain
// enforcement.  Call before bind.  Returns 0 or -1 with err.
int auth_configure_server(void *sock, const keys_broker_t *keys, char *err,
                          size_t errlen);
// A session's identity, from the User-Id auth gave its handshake.
typedef struct {
    unsigned role_bit;             // PROTO_R_*
    keys_role_t role;
    char name[KEYS_NAME_MAX + 1];  // the key's name
    uint8_t key[32];               // its public key
} auth_user_t;

// Parses a User-Id "ROLE:NAME:KEY" into *out.  Returns 0, or -1 when it is
// not of that form.
int auth_parse_user_id(const char *user_id, auth_user_t *out);
// The PROTO_R_* bit of a role.
unsigned auth_role_bit(keys_role_t role);

#endif
