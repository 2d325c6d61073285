// auth: the broker's ZAP handler (RFC 27, ZAP 1.0), fail closed.
//
// Owns one ZMQ_REP socket bound to inproc://zeromq.zap.01 in the broker's
// context and the counters of what it answered.  It admits a CURVE client
// in the AUTH_DOMAIN whose 32-byte key is in the allow lists (keys.c) and
// refuses everything else.  The allow lists are borrowed: a reload changes
// them in place and the next handshake sees the new lists.  Every frame
// count and size is checked before it is used: libzmq is the only expected
// peer, but any code in the process can connect to the inproc endpoint,
// and a bad request must get an answer (a REP socket that does not reply
// stops answering anyone), never an assert.  It neither owns the allow
// lists nor drops live sessions: ZAP runs only at handshake, so the broker
// checks the User-Id's key against the lists on every message (keyring.c,
// PITFALLS.md).
#include "broker/auth.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "proto/proto.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

// libzmq 4.3 declares this only under its draft API, but accepts it.
#ifndef ZMQ_ZAP_ENFORCE_DOMAIN
#define ZMQ_ZAP_ENFORCE_DOMAIN 93
#endif

#define AUTH_ENDPOINT "inproc://zeromq.zap.01"
#define AUTH_LOG "broker.auth"
// A CURVE request is 7 frames; one more tells us there were too many.
#define AUTH_FRAMES_MAX 8
// The longest version, request id, domain, address, routing id, mechanism.
#define AUTH_FIELD_MAX 255
// Requests answered per auth_handle call, so the loop gets a turn.
#define AUTH_BATCH_MAX 256
// Identical refusals in a row are logged once per this many.
#define AUTH_LOG_EVERY 100
// Refusal lines a second at most: a peer that has the broker's public key
// can make a new client key for every handshake.
#define AUTH_LOG_PER_S 5

// The frames of a ZAP request after REP has taken the envelope.
enum {
    F_VERSION = 0,
    F_REQUEST_ID,
    F_DOMAIN,
    F_ADDRESS,
    F_ROUTING_ID,
    F_MECHANISM,
    F_CREDENTIALS,
};

struct auth {
    void *sock;                 // ZMQ_REP bound to AUTH_ENDPOINT
    const keys_broker_t *keys;  // borrowed allow lists
    uint64_t accepted;          // requests answered 200
    uint64_t refused;           // requests answered 400 or 500
    uint64_t refused_by[AUTH_REFUSE__COUNT];  // the same, by why
    char last_refused[112];     // what the last refusal logged was about
    uint64_t repeats;           // refusals in a row about last_refused
    int64_t log_second_ms;      // monotonic start of the quota's second
    uint32_t log_lines;         // refusal lines logged in that second
    uint64_t unlogged;          // refusals not logged since the last line
};

// One request as received, bounded in frames.
typedef struct {
    zmq_msg_t frames[AUTH_FRAMES_MAX];
    size_t count;               // frames held
    bool overflow;              // more than AUTH_FRAMES_MAX arrived
} s_request_t;

// What we answer.
typedef struct {
    const char *status;         // "200", "400" or "500"
    auth_refuse_t why;          // when not 200
    char text[64];              // status text, for the log too
    char user_id[KEYS_NAME_MAX + 64];   // "ROLE:NAME:KEY" when 200
    char key_z85[41];           // the client's key when it sent one
} s_reply_t;

int
auth_start(auth_t **out, void *zmq_ctx, const keys_broker_t *keys, char *err,
           size_t errlen)
{
    assert(out && zmq_ctx && keys);
    *out = NULL;
    void *sock = zmq_socket(zmq_ctx, ZMQ_REP);
    if (!sock) {
        snprintf(err, errlen, "cannot make the ZAP socket: %s",
                 zmq_strerror(zmq_errno()));
        return -1;
    }
    int linger = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(sock, AUTH_ENDPOINT) < 0) {
        snprintf(err, errlen, "cannot bind the ZAP handler '%s': %s "
                 "(is another handler running in this context?)",
                 AUTH_ENDPOINT, zmq_strerror(zmq_errno()));
        zmq_close(sock);
        return -1;
    }
    auth_t *self = xcalloc(1, sizeof *self);
    self->sock = sock;
    self->keys = keys;
    *out = self;
    return 0;
}

void
auth_destroy(auth_t **self_p)
{
    assert(self_p);
    auth_t *self = *self_p;
    if (!self) {
        return;
    }
    zmq_close(self->sock);
    free(self);
    *self_p = NULL;
}

void *
auth_socket(auth_t *self)
{
    assert(self);
    return self->sock;
}

uint64_t
auth_accepted(const auth_t *self)
{
    assert(self);
    return self->accepted;
}

const char *
auth_refuse_name(auth_refuse_t why)
{
    static const char *const names[AUTH_REFUSE__COUNT] = {
        [AUTH_REFUSE_UNKNOWN_KEY] = "unknown_key",
        [AUTH_REFUSE_MECHANISM] = "mechanism",
        [AUTH_REFUSE_DOMAIN] = "domain",
        [AUTH_REFUSE_MALFORMED] = "malformed",
    };
    return (size_t) why < AUTH_REFUSE__COUNT ? names[why] : "?";
}

uint64_t
auth_refused_by(const auth_t *self, auth_refuse_t why)
{
    assert(self && (size_t) why < AUTH_REFUSE__COUNT);
    return self->refused_by[why];
}

uint64_t
auth_refused(const auth_t *self)
{
    assert(self);
    return self->refused;
}

// Reads every frame of one request; keeps at most AUTH_FRAMES_MAX.
// Returns -1 when no request is waiting.
static int
s_recv(void *sock, s_request_t *req)
{
    req->count = 0;
    req->overflow = false;
    bool more = true;
    while (more) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            // Parts of one message arrive together, so a failure here is
            // either "nothing waiting" or the end of a broken message.
            return req->count ? 0 : -1;
        }
        more = zmq_msg_more(&msg);
        if (req->count < AUTH_FRAMES_MAX) {
            zmq_msg_init(&req->frames[req->count]);
            zmq_msg_move(&req->frames[req->count++], &msg);
        } else {
            req->overflow = true;
        }
        zmq_msg_close(&msg);
    }
    return 0;
}

static void
s_request_close(s_request_t *req)
{
    for (size_t i = 0; i < req->count; i++) {
        zmq_msg_close(&req->frames[i]);
    }
    req->count = 0;
}

static size_t
s_size(s_request_t *req, int i)
{
    return zmq_msg_size(&req->frames[i]);
}

// True when frame i holds exactly the string s.
static bool
s_frame_is(s_request_t *req, int i, const char *s)
{
    size_t n = strlen(s);
    return s_size(req, i) == n && memcmp(zmq_msg_data(&req->frames[i]), s,
                                         n) == 0;
}

// Copies frame i into buf as text, printable ASCII only, for messages.
static void
s_frame_text(s_request_t *req, int i, char *buf, size_t len)
{
    const unsigned char *p = zmq_msg_data(&req->frames[i]);
    size_t n = s_size(req, i), j = 0;
    for (; j < n && j + 1 < len; j++) {
        buf[j] = p[j] >= 0x20 && p[j] < 0x7f ? (char) p[j] : '?';
    }
    buf[j] = '\0';
}

// The header frames every request has, whatever the mechanism.
static bool
s_header_ok(s_request_t *req)
{
    if (req->overflow || req->count < F_CREDENTIALS ||
        !s_frame_is(req, F_VERSION, "1.0")) {
        return false;
    }
    for (int i = F_REQUEST_ID; i <= F_MECHANISM; i++) {
        if (s_size(req, i) > AUTH_FIELD_MAX) {
            return false;
        }
    }
    return true;
}

// Fills reply for a well-formed header: 200 only for a known CURVE key.
static void
s_decide(const auth_t *self, s_request_t *req, s_reply_t *reply)
{
    reply->status = "400";
    if (!s_frame_is(req, F_MECHANISM, "CURVE")) {
        char mech[16];
        s_frame_text(req, F_MECHANISM, mech, sizeof mech);
        snprintf(reply->text, sizeof reply->text,
                 "mechanism %s not allowed", mech);
        reply->why = AUTH_REFUSE_MECHANISM;
        return;
    }
    if (!s_frame_is(req, F_DOMAIN, AUTH_DOMAIN)) {
        snprintf(reply->text, sizeof reply->text, "wrong ZAP domain");
        reply->why = AUTH_REFUSE_DOMAIN;
        return;
    }
    if (req->count != F_CREDENTIALS + 1 || s_size(req, F_CREDENTIALS) != 32) {
        reply->status = "500";
        snprintf(reply->text, sizeof reply->text, "malformed credentials");
        return;
    }
    const uint8_t *key = zmq_msg_data(&req->frames[F_CREDENTIALS]);
    zmq_z85_encode(reply->key_z85, key, 32);
    const keys_entry_t *e = keys_broker_lookup(self->keys, key);
    if (!e) {
        snprintf(reply->text, sizeof reply->text, "unknown key");
        reply->why = AUTH_REFUSE_UNKNOWN_KEY;
        return;
    }
    reply->status = "200";
    snprintf(reply->text, sizeof reply->text, "OK");
    snprintf(reply->user_id, sizeof reply->user_id, "%s:%s:%s",
             keys_role_name(e->role), e->name, reply->key_z85);
}

static void
s_send_frame(void *sock, const void *data, size_t len, bool more)
{
    // The ZAP pipe has no high-water mark, so this does not fail for want
    // of room; if it fails anyway the requester is gone.
    zmq_send(sock, data, len, ZMQ_DONTWAIT | (more ? ZMQ_SNDMORE : 0));
}

static void
s_send_reply(void *sock, s_request_t *req, const s_reply_t *reply)
{
    // Echo the request id when there is a sane one: libzmq matches on it.
    bool has_id = req->count > F_REQUEST_ID &&
                  s_size(req, F_REQUEST_ID) <= AUTH_FIELD_MAX;
    s_send_frame(sock, "1.0", 3, true);
    s_send_frame(sock, has_id ? zmq_msg_data(&req->frames[F_REQUEST_ID]) : "",
                 has_id ? s_size(req, F_REQUEST_ID) : 0, true);
    s_send_frame(sock, reply->status, 3, true);
    s_send_frame(sock, reply->text, strlen(reply->text), true);
    s_send_frame(sock, reply->user_id, strlen(reply->user_id), true);
    s_send_frame(sock, "", 0, false);
}

// Whether one more refusal line fits this second's quota.
static bool
s_log_quota(auth_t *self)
{
    int64_t now = clock_mono_ms();
    if (now - self->log_second_ms >= 1000) {
        self->log_second_ms = now;
        self->log_lines = 0;
    }
    return self->log_lines++ < AUTH_LOG_PER_S;
}

// Logs a refusal, once per run of identical ones and every
// AUTH_LOG_EVERY after that (a refused drone retries every reconnect), and
// at most AUTH_LOG_PER_S a second; the next line counts what was not
// logged.
static void
s_log_refusal(auth_t *self, s_request_t *req, const s_reply_t *reply)
{
    char about[112], address[64] = "";
    snprintf(about, sizeof about, "%s %s", reply->key_z85, reply->text);
    bool repeat = strcmp(about, self->last_refused) == 0;
    if ((repeat && ++self->repeats % AUTH_LOG_EVERY != 0) ||
        !s_log_quota(self)) {
        self->unlogged++;
        return;
    }
    if (!repeat) {
        snprintf(self->last_refused, sizeof self->last_refused, "%s", about);
        self->repeats = 0;
    }
    if (req->count > F_ADDRESS && s_size(req, F_ADDRESS) <= AUTH_FIELD_MAX) {
        s_frame_text(req, F_ADDRESS, address, sizeof address);
    }
    char unlogged[64] = "";
    if (self->unlogged > 0) {
        snprintf(unlogged, sizeof unlogged, "; %" PRIu64 " since the last "
                 "line not logged", self->unlogged);
    }
    log_warn(AUTH_LOG, "refused %s%s%sfrom '%s': %s (%" PRIu64 " refused%s)",
             reply->key_z85[0] ? "key '" : "", reply->key_z85,
             reply->key_z85[0] ? "' " : "", address, reply->text,
             self->refused, unlogged);
    self->unlogged = 0;
}

static void
s_answer(auth_t *self, s_request_t *req)
{
    s_reply_t reply = {.status = "500", .text = "malformed request",
                       .why = AUTH_REFUSE_MALFORMED};
    if (s_header_ok(req)) {
        s_decide(self, req, &reply);
    }
    s_send_reply(self->sock, req, &reply);
    if (strcmp(reply.status, "200") == 0) {
        self->accepted++;
        log_debug(AUTH_LOG, "admitted '%s'", reply.user_id);
    } else {
        self->refused++;
        self->refused_by[reply.why]++;
        s_log_refusal(self, req, &reply);
    }
}

void
auth_handle(auth_t *self)
{
    assert(self);
    s_request_t req;
    for (int i = 0; i < AUTH_BATCH_MAX; i++) {
        if (s_recv(self->sock, &req) < 0) {
            break;
        }
        s_answer(self, &req);
        s_request_close(&req);
    }
}

static int
s_setopt(void *sock, int option, const char *option_name, const void *value,
         size_t len, char *err, size_t errlen)
{
    if (zmq_setsockopt(sock, option, value, len) < 0) {
        snprintf(err, errlen, "cannot set %s: %s", option_name,
                 zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

int
auth_configure_server(void *sock, const keys_broker_t *keys, char *err,
                      size_t errlen)
{
    assert(sock && keys);
    int on = 1;
    const char *secret = keys_broker_secret(keys);
    if (s_setopt(sock, ZMQ_CURVE_SERVER, "ZMQ_CURVE_SERVER", &on, sizeof on,
                 err, errlen) < 0 ||
        s_setopt(sock, ZMQ_CURVE_SECRETKEY, "ZMQ_CURVE_SECRETKEY", secret,
                 strlen(secret), err, errlen) < 0 ||
        s_setopt(sock, ZMQ_ZAP_DOMAIN, "ZMQ_ZAP_DOMAIN", AUTH_DOMAIN,
                 strlen(AUTH_DOMAIN), err, errlen) < 0 ||
        s_setopt(sock, ZMQ_ZAP_ENFORCE_DOMAIN, "ZMQ_ZAP_ENFORCE_DOMAIN", &on,
                 sizeof on, err, errlen) < 0) {
        return -1;
    }
    return 0;
}

unsigned
auth_role_bit(keys_role_t role)
{
    static const unsigned bits[KEYS_ROLE__COUNT] = {
        [KEYS_ROLE_DRONE] = PROTO_R_DRONE,
        [KEYS_ROLE_SUBMITTER] = PROTO_R_SUBMITTER,
        [KEYS_ROLE_OPERATOR] = PROTO_R_OPERATOR,
    };
    assert((unsigned) role < KEYS_ROLE__COUNT);
    return bits[role];
}

// Reads "ROLE:" at the start of user_id into out->role.  Returns the rest,
// or NULL.
static const char *
s_parse_role(const char *user_id, auth_user_t *out)
{
    const char *colon = strchr(user_id, ':');
    for (int r = 0; colon && r < KEYS_ROLE__COUNT; r++) {
        const char *role = keys_role_name((keys_role_t) r);
        size_t n = strlen(role);
        if ((size_t) (colon - user_id) == n && !strncmp(user_id, role, n)) {
            out->role = (keys_role_t) r;
            out->role_bit = auth_role_bit(out->role);
            return colon + 1;
        }
    }
    return NULL;
}

int
auth_parse_user_id(const char *user_id, auth_user_t *out)
{
    assert(out);
    memset(out, 0, sizeof *out);
    const char *rest = user_id ? s_parse_role(user_id, out) : NULL;
    // A name holds no ':', a Z85 key may: split at the first one.
    const char *colon = rest ? strchr(rest, ':') : NULL;
    size_t len = colon ? (size_t) (colon - rest) : 0;
    if (!colon || len == 0 || len > KEYS_NAME_MAX || strlen(colon + 1) != 40 ||
        !zmq_z85_decode(out->key, colon + 1)) {
        memset(out, 0, sizeof *out);
        return -1;
    }
    memcpy(out->name, rest, len);
    out->name[len] = '\0';
    if (!keys_name_is_valid(out->name)) {
        memset(out, 0, sizeof *out);
        return -1;
    }
    return 0;
}
