// test_auth: the ZAP handler over real CURVE handshakes on loopback, and
// directly with hand-made requests.
//
// The broker side (ZAP handler and ROUTER) lives in one context and is
// polled in this thread, as the broker does; each client has a context of
// its own, like a drone in another process, and a monitor on its DEALER.
#include "broker/auth.h"
#include "common/clock.h"
#include "common/keys.h"
#include "proto/proto.h"
#include "tests/harness/t.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#ifndef ZMQ_ZAP_ENFORCE_DOMAIN
#define ZMQ_ZAP_ENFORCE_DOMAIN 93
#endif

enum { STOP_RECEIVED = 1, STOP_AUTH_FAILED = 2 };

typedef struct {
    void *ctx;                  // the broker's context
    keys_broker_t *kb;          // its allow lists
    auth_t *auth;               // the ZAP handler, or NULL for none
    void *router;               // the CURVE server
    char endpoint[256];         // where router is bound
    char dir[PATH_MAX];         // the key set
} server_t;

typedef struct {
    void *ctx;                  // the client's own context
    void *dealer;               // the CURVE client
    void *monitor;              // PAIR receiving dealer's events
} client_t;

typedef struct {
    int received;               // messages the ROUTER got
    char user_id[128];          // User-Id of the last one
    char body[64];              // its body
    uint32_t events;            // every monitor event seen, OR'ed
    int auth_failures;          // ZMQ_EVENT_HANDSHAKE_FAILED_AUTH seen
    uint32_t auth_status;       // the value of the last one
} seen_t;

static char s_err[1024];

static void
s_setopt_int(void *sock, int option, int value)
{
    int rc = zmq_setsockopt(sock, option, &value, sizeof value);
    CHECK_INT(rc, 0);
}

// Generates a key set, loads the broker bundle, binds a configured ROUTER;
// the ZAP handler is started first unless with_handler is false.  A domain
// other than NULL replaces AUTH_DOMAIN on the ROUTER.
static int
s_server_open_in(server_t *s, bool with_handler, const char *domain)
{
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "%s/k", t_tmpdir());
    if (keys_generate(s->dir, s_err, sizeof s_err) < 0 ||
        keys_load_broker(s->dir, &s->kb, s_err, sizeof s_err) < 0) {
        fprintf(stderr, "keys: %s\n", s_err);
        return -1;
    }
    s->ctx = zmq_ctx_new();
    if (with_handler &&
        auth_start(&s->auth, s->ctx, s->kb, s_err, sizeof s_err) < 0) {
        fprintf(stderr, "auth_start: %s\n", s_err);
        return -1;
    }
    s->router = zmq_socket(s->ctx, ZMQ_ROUTER);
    s_setopt_int(s->router, ZMQ_LINGER, 0);
    if (auth_configure_server(s->router, s->kb, s_err, sizeof s_err) < 0) {
        fprintf(stderr, "auth_configure_server: %s\n", s_err);
        return -1;
    }
    if (domain) {
        // Options are copied when the socket binds, so this goes first.
        CHECK(zmq_setsockopt(s->router, ZMQ_ZAP_DOMAIN, domain,
                             strlen(domain)) == 0);
    }
    size_t len = sizeof s->endpoint;
    if (zmq_bind(s->router, "tcp://127.0.0.1:*") < 0 ||
        zmq_getsockopt(s->router, ZMQ_LAST_ENDPOINT, s->endpoint, &len) < 0) {
        return -1;
    }
    return 0;
}

static int
s_server_open(server_t *s, bool with_handler)
{
    return s_server_open_in(s, with_handler, NULL);
}

static void
s_server_close(server_t *s)
{
    zmq_close(s->router);
    auth_destroy(&s->auth);
    zmq_ctx_term(s->ctx);
    keys_broker_destroy(&s->kb);
}

// Connects a CURVE client and queues one message for the broker.
static void
s_client_open(client_t *c, const char *endpoint, const char *server_key,
              const char *public_key, const char *secret_key)
{
    static int n;
    char mon[64];
    snprintf(mon, sizeof mon, "inproc://monitor-%d", n++);
    c->ctx = zmq_ctx_new();
    c->dealer = zmq_socket(c->ctx, ZMQ_DEALER);
    s_setopt_int(c->dealer, ZMQ_LINGER, 0);
    if (server_key) {
        CHECK(zmq_setsockopt(c->dealer, ZMQ_CURVE_SERVERKEY, server_key,
                             40) == 0);
        CHECK(zmq_setsockopt(c->dealer, ZMQ_CURVE_PUBLICKEY, public_key,
                             40) == 0);
        CHECK(zmq_setsockopt(c->dealer, ZMQ_CURVE_SECRETKEY, secret_key,
                             40) == 0);
    }
    CHECK(zmq_socket_monitor(c->dealer, mon, ZMQ_EVENT_ALL) == 0);
    c->monitor = zmq_socket(c->ctx, ZMQ_PAIR);
    s_setopt_int(c->monitor, ZMQ_LINGER, 0);
    CHECK(zmq_connect(c->monitor, mon) == 0);
    CHECK(zmq_connect(c->dealer, endpoint) == 0);
    CHECK_INT(zmq_send(c->dealer, "hello", 5, 0), 5);
}

static void
s_client_close(client_t *c)
{
    zmq_close(c->monitor);
    zmq_close(c->dealer);
    zmq_ctx_term(c->ctx);
}

// One message on the ROUTER: routing id, then the body with metadata.
static void
s_on_router(void *router, seen_t *seen)
{
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    int part = 0;
    while (zmq_msg_recv(&msg, router, ZMQ_DONTWAIT) >= 0) {
        if (part++ == 1) {
            const char *uid = zmq_msg_gets(&msg, "User-Id");
            snprintf(seen->user_id, sizeof seen->user_id, "%s",
                     uid ? uid : "");
            snprintf(seen->body, sizeof seen->body, "%.*s",
                     (int) zmq_msg_size(&msg), (char *) zmq_msg_data(&msg));
        }
        if (!zmq_msg_more(&msg)) {
            seen->received++;
            break;
        }
    }
    zmq_msg_close(&msg);
}

// One monitor event: 6 bytes of event id and value, then the endpoint.
static void
s_on_monitor(void *monitor, seen_t *seen)
{
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    int part = 0;
    while (zmq_msg_recv(&msg, monitor, ZMQ_DONTWAIT) >= 0) {
        if (part++ == 0 && zmq_msg_size(&msg) == 6) {
            uint16_t event;
            uint32_t value;
            memcpy(&event, zmq_msg_data(&msg), 2);
            memcpy(&value, (char *) zmq_msg_data(&msg) + 2, 4);
            seen->events |= event;
            if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
                seen->auth_failures++;
                seen->auth_status = value;
            }
        }
        if (!zmq_msg_more(&msg)) {
            break;
        }
    }
    zmq_msg_close(&msg);
}

// Runs the broker's side (and reads the client's monitor) until timeout_ms
// passes or what stop asks for has happened.
static void
s_pump(server_t *s, client_t *c, seen_t *seen, int timeout_ms, int stop)
{
    int64_t deadline = clock_mono_ms() + timeout_ms;
    while (clock_mono_ms() < deadline) {
        if (((stop & STOP_RECEIVED) && seen->received) ||
            ((stop & STOP_AUTH_FAILED) && seen->auth_failures)) {
            return;
        }
        zmq_pollitem_t items[3] = {
            {.socket = s->router, .events = ZMQ_POLLIN},
            {.socket = c ? c->monitor : NULL, .events = ZMQ_POLLIN},
            {.socket = s->auth ? auth_socket(s->auth) : NULL,
             .events = ZMQ_POLLIN},
        };
        int n = 1 + (c != NULL);
        if (s->auth) {
            items[n++] = items[2];
        }
        REQUIRE(zmq_poll(items, n, 20) >= 0);
        if (items[0].revents & ZMQ_POLLIN) {
            s_on_router(s->router, seen);
        }
        if (c && (items[1].revents & ZMQ_POLLIN)) {
            s_on_monitor(c->monitor, seen);
        }
        if (s->auth && (items[n - 1].revents & ZMQ_POLLIN)) {
            auth_handle(s->auth);
        }
    }
}

// A client of each role gets in, and the broker sees its User-Id.
static void
test_handshake_admits_known_keys(void)
{
    server_t s;
    REQUIRE(s_server_open(&s, true) == 0);
    for (int r = 0; r < KEYS_ROLE__COUNT; r++) {
        keys_client_t k;
        REQUIRE(keys_load_client(s.dir, (keys_role_t) r, &k, s_err,
                                 sizeof s_err) == 0);
        client_t c;
        seen_t seen = {0};
        s_client_open(&c, s.endpoint, k.broker_z85, k.public_z85,
                      k.secret_z85);
        s_pump(&s, &c, &seen, 5000, STOP_RECEIVED);
        CHECK_INT(seen.received, 1);
        CHECK_STR(seen.body, "hello");
        char want[128];
        snprintf(want, sizeof want, "%s:%s:%s",
                 keys_role_name((keys_role_t) r), k.name, k.public_z85);
        CHECK_STR(seen.user_id, want);
        CHECK_INT(seen.auth_failures, 0);
        s_client_close(&c);
    }
    CHECK_INT(auth_accepted(s.auth), 3);
    CHECK_INT(auth_refused(s.auth), 0);
    s_server_close(&s);
}

// A key not in the allow list: nothing arrives, the handler counts a
// refusal, and the client's monitor says why (the architect reports "key
// not accepted by the broker" from this event).
static void
test_handshake_refuses_unknown_key(void)
{
    server_t s;
    REQUIRE(s_server_open(&s, true) == 0);
    char public_key[41], secret_key[41];
    REQUIRE(zmq_curve_keypair(public_key, secret_key) == 0);
    client_t c;
    seen_t seen = {0};
    s_client_open(&c, s.endpoint, keys_broker_public(s.kb), public_key,
                  secret_key);
    s_pump(&s, &c, &seen, 5000, STOP_AUTH_FAILED);
    s_pump(&s, &c, &seen, 300, 0);
    CHECK_INT(seen.received, 0);
    CHECK(seen.auth_failures >= 1);
    CHECK_INT(seen.auth_status, 400);
    CHECK(auth_refused(s.auth) >= 1);
    CHECK_INT(auth_accepted(s.auth), 0);
    s_client_close(&c);
    s_server_close(&s);
}

// With no ZAP handler in the context, a CURVE server configured by
// auth_configure_server lets nobody in, not even a listed key.
static void
test_no_handler_fails_closed(void)
{
    server_t s;
    REQUIRE(s_server_open(&s, false) == 0);
    keys_client_t k;
    REQUIRE(keys_load_client(s.dir, KEYS_ROLE_DRONE, &k, s_err,
                             sizeof s_err) == 0);
    client_t c;
    seen_t seen = {0};
    s_client_open(&c, s.endpoint, k.broker_z85, k.public_z85, k.secret_z85);
    s_pump(&s, &c, &seen, 1000, STOP_RECEIVED);
    CHECK_INT(seen.received, 0);
    CHECK(!(seen.events & ZMQ_EVENT_HANDSHAKE_SUCCEEDED));
    s_client_close(&c);
    s_server_close(&s);
}

// A client with the wrong broker key cannot even say hello.
static void
test_wrong_broker_key(void)
{
    server_t s;
    REQUIRE(s_server_open(&s, true) == 0);
    keys_client_t k;
    REQUIRE(keys_load_client(s.dir, KEYS_ROLE_DRONE, &k, s_err,
                             sizeof s_err) == 0);
    char other_public[41], other_secret[41];
    REQUIRE(zmq_curve_keypair(other_public, other_secret) == 0);
    client_t c;
    seen_t seen = {0};
    s_client_open(&c, s.endpoint, other_public, k.public_z85, k.secret_z85);
    s_pump(&s, &c, &seen, 1000, STOP_RECEIVED);
    CHECK_INT(seen.received, 0);
    CHECK(!(seen.events & ZMQ_EVENT_HANDSHAKE_SUCCEEDED));
    CHECK_INT(auth_accepted(s.auth), 0);
    s_client_close(&c);
    s_server_close(&s);
}

// A server socket in the ZAP domain without CURVE: the handler refuses
// the NULL mechanism.
static void
test_null_mechanism_refused(void)
{
    server_t s;
    REQUIRE(s_server_open(&s, true) == 0);
    void *plain = zmq_socket(s.ctx, ZMQ_ROUTER);
    s_setopt_int(plain, ZMQ_LINGER, 0);
    REQUIRE(zmq_setsockopt(plain, ZMQ_ZAP_DOMAIN, AUTH_DOMAIN,
                           strlen(AUTH_DOMAIN)) == 0);
    s_setopt_int(plain, ZMQ_ZAP_ENFORCE_DOMAIN, 1);
    char endpoint[256];
    size_t len = sizeof endpoint;
    REQUIRE(zmq_bind(plain, "tcp://127.0.0.1:*") == 0);
    REQUIRE(zmq_getsockopt(plain, ZMQ_LAST_ENDPOINT, endpoint, &len) == 0);
    void *curve = s.router;
    s.router = plain;
    client_t c;
    seen_t seen = {0};
    s_client_open(&c, endpoint, NULL, NULL, NULL);
    s_pump(&s, &c, &seen, 5000, STOP_AUTH_FAILED);
    s_pump(&s, &c, &seen, 300, 0);
    CHECK_INT(seen.received, 0);
    CHECK_INT(seen.auth_status, 400);
    CHECK(auth_refused(s.auth) >= 1);
    s.router = curve;
    zmq_close(plain);
    s_client_close(&c);
    s_server_close(&s);
}

// A CURVE server in another ZAP domain is refused even for a known key.
static void
test_wrong_domain_refused(void)
{
    server_t s;
    REQUIRE(s_server_open_in(&s, true, "other") == 0);
    keys_client_t k;
    REQUIRE(keys_load_client(s.dir, KEYS_ROLE_OPERATOR, &k, s_err,
                             sizeof s_err) == 0);
    client_t c;
    seen_t seen = {0};
    s_client_open(&c, s.endpoint, k.broker_z85, k.public_z85, k.secret_z85);
    s_pump(&s, &c, &seen, 5000, STOP_AUTH_FAILED);
    CHECK_INT(seen.received, 0);
    CHECK_INT(seen.auth_status, 400);
    CHECK_INT(auth_accepted(s.auth), 0);
    s_client_close(&c);
    s_server_close(&s);
}

static void
test_second_handler_refused(void)
{
    server_t s;
    REQUIRE(s_server_open(&s, true) == 0);
    auth_t *again = NULL;
    CHECK(auth_start(&again, s.ctx, s.kb, s_err, sizeof s_err) < 0);
    CHECK(again == NULL);
    CHECK_HAS(s_err, "inproc://zeromq.zap.01");
    CHECK_HAS(s_err, "Address already in use");
    s_server_close(&s);
}

// A ZAP request sent by hand and its reply, frame by frame.
typedef struct {
    int frames;                 // reply frames received
    char request_id[64];
    char status[8];
    char text[64];
    char user_id[96];
} zap_reply_t;

static void
s_copy_frame(zmq_msg_t *msg, char *buf, size_t len)
{
    snprintf(buf, len, "%.*s", (int) zmq_msg_size(msg),
             (char *) zmq_msg_data(msg));
}

static void
s_zap_reply(void *req, zap_reply_t *reply)
{
    char *fields[] = {NULL, reply->request_id, reply->status, reply->text,
                      reply->user_id, NULL};
    size_t sizes[] = {0, sizeof reply->request_id, sizeof reply->status,
                      sizeof reply->text, sizeof reply->user_id, 0};
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    memset(reply, 0, sizeof *reply);
    while (zmq_msg_recv(&msg, req, 0) >= 0) {
        if (reply->frames < 6 && fields[reply->frames]) {
            s_copy_frame(&msg, fields[reply->frames], sizes[reply->frames]);
        }
        reply->frames++;
        if (!zmq_msg_more(&msg)) {
            break;
        }
    }
    zmq_msg_close(&msg);
}

// Sends n frames on req and answers them with the handler.
static void
s_zap_ask(server_t *s, void *req, const char **frames, const size_t *sizes,
          int n, zap_reply_t *reply)
{
    for (int i = 0; i < n; i++) {
        size_t len = sizes && sizes[i] ? sizes[i] : strlen(frames[i]);
        CHECK(zmq_send(req, frames[i], len, i + 1 < n ? ZMQ_SNDMORE : 0) >=
              0);
    }
    zmq_pollitem_t items[] = {{.socket = req, .events = ZMQ_POLLIN}};
    // Generous: only a bound on failure.  At 2 s a loaded machine (CI,
    // parallel builds) once missed one reply of 100, and the REQ socket's
    // next send then failed too.
    int64_t deadline = clock_mono_ms() + 20000;
    memset(reply, 0, sizeof *reply);
    while (clock_mono_ms() < deadline) {
        auth_handle(s->auth);
        if (zmq_poll(items, 1, 10) > 0) {
            s_zap_reply(req, reply);
            return;
        }
    }
}

// The broker's side plus a REQ socket on the ZAP endpoint, and the drone's
// public key in binary.
typedef struct {
    server_t s;
    void *req;                  // speaks ZAP to the handler
    uint8_t key[32];            // the "drone" key, admitted
} zap_t;

static int
s_zap_open(zap_t *z)
{
    keys_client_t k;
    if (s_server_open(&z->s, true) < 0 ||
        keys_load_client(z->s.dir, KEYS_ROLE_DRONE, &k, s_err,
                         sizeof s_err) < 0 ||
        !zmq_z85_decode(z->key, k.public_z85)) {
        return -1;
    }
    z->req = zmq_socket(z->s.ctx, ZMQ_REQ);
    s_setopt_int(z->req, ZMQ_LINGER, 0);
    return zmq_connect(z->req, "inproc://zeromq.zap.01");
}

static void
s_zap_close(zap_t *z)
{
    zmq_close(z->req);
    s_server_close(&z->s);
}

static const size_t s_curve_sizes[] = {0, 0, 0, 0, 0, 0, 32};

static void
test_zap_answers(void)
{
    zap_t z;
    REQUIRE(s_zap_open(&z) == 0);
    zap_reply_t r;
    const char *good[] = {"1.0", "7", AUTH_DOMAIN, "127.0.0.1", "", "CURVE",
                          (const char *) z.key};
    s_zap_ask(&z.s, z.req, good, s_curve_sizes, 7, &r);
    CHECK_INT(r.frames, 6);
    CHECK_STR(r.request_id, "7");
    CHECK_STR(r.status, "200");
    CHECK_STR(r.text, "OK");
    char want[64], z85[41];
    zmq_z85_encode(z85, (const uint8_t *) z.key, 32);
    snprintf(want, sizeof want, "drone:drone:%s", z85);
    CHECK_STR(r.user_id, want);

    const char *plain[] = {"1.0", "11", AUTH_DOMAIN, "", "", "PLAIN", "u",
                           "p"};
    s_zap_ask(&z.s, z.req, plain, NULL, 8, &r);
    CHECK_STR(r.status, "400");
    CHECK_STR(r.text, "mechanism PLAIN not allowed");

    const char *null_mech[] = {"1.0", "12", AUTH_DOMAIN, "", "", "NULL"};
    s_zap_ask(&z.s, z.req, null_mech, NULL, 6, &r);
    CHECK_STR(r.status, "400");
    CHECK_STR(r.text, "mechanism NULL not allowed");
    CHECK_STR(r.user_id, "");

    z.key[5] ^= 0x55;
    s_zap_ask(&z.s, z.req, good, s_curve_sizes, 7, &r);
    CHECK_STR(r.status, "400");
    CHECK_STR(r.text, "unknown key");
    CHECK_STR(r.user_id, "");
    CHECK_INT(auth_accepted(z.s.auth), 1);
    CHECK_INT(auth_refused(z.s.auth), 3);
    s_zap_close(&z);
}

// Each malformed request gets a 500 and the handler goes on answering.
static void
test_zap_survives_malformed(void)
{
    zap_t z;
    REQUIRE(s_zap_open(&z) == 0);
    zap_reply_t r;
    const char *one[] = {"junk"};
    s_zap_ask(&z.s, z.req, one, NULL, 1, &r);
    CHECK_INT(r.frames, 6);
    CHECK_STR(r.status, "500");
    CHECK_STR(r.request_id, "");

    const char *bad[] = {"2.0", "8", AUTH_DOMAIN, "", "", "CURVE",
                         (const char *) z.key, (const char *) z.key};
    s_zap_ask(&z.s, z.req, bad, s_curve_sizes, 7, &r);
    CHECK_STR(r.status, "500");
    CHECK_STR(r.request_id, "8");
    bad[0] = "1.0";
    const size_t short_key[] = {0, 0, 0, 0, 0, 0, 31};
    s_zap_ask(&z.s, z.req, bad, short_key, 7, &r);
    CHECK_STR(r.text, "malformed credentials");
    const size_t two_keys[] = {0, 0, 0, 0, 0, 0, 32, 32};
    s_zap_ask(&z.s, z.req, bad, two_keys, 8, &r);
    CHECK_STR(r.status, "500");

    const char *many[40];
    size_t many_sizes[40] = {[6] = 32};
    for (int i = 0; i < 40; i++) {
        many[i] = i < 7 ? bad[i] : "x";
    }
    s_zap_ask(&z.s, z.req, many, many_sizes, 40, &r);
    CHECK_INT(r.frames, 6);
    CHECK_STR(r.status, "500");

    static char huge[1 << 16];
    memset(huge, 'd', sizeof huge);
    bad[2] = huge;
    const size_t big_domain[] = {0, 0, sizeof huge, 0, 0, 0, 32};
    s_zap_ask(&z.s, z.req, bad, big_domain, 7, &r);
    CHECK_STR(r.status, "500");

    bad[2] = AUTH_DOMAIN;
    s_zap_ask(&z.s, z.req, bad, s_curve_sizes, 7, &r);
    CHECK_STR(r.status, "200");
    CHECK_INT(auth_refused(z.s.auth), 6);
    s_zap_close(&z);
}

static void
test_parse_user_id(void)
{
    static const char key[] = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
    uint8_t bin[32];
    REQUIRE(zmq_z85_decode(bin, key));
    auth_user_t u;
    char id[128];
    snprintf(id, sizeof id, "drone:d1:%s", key);
    CHECK(auth_parse_user_id(id, &u) == 0);
    CHECK_INT(u.role_bit, PROTO_R_DRONE);
    CHECK_INT(u.role, KEYS_ROLE_DRONE);
    CHECK_STR(u.name, "d1");
    CHECK(memcmp(u.key, bin, 32) == 0);
    snprintf(id, sizeof id, "submitter:ci.bot:%s", key);
    CHECK(auth_parse_user_id(id, &u) == 0);
    CHECK_INT(u.role_bit, PROTO_R_SUBMITTER);
    CHECK_STR(u.name, "ci.bot");
    snprintf(id, sizeof id, "operator:alice:%s", key);
    CHECK(auth_parse_user_id(id, &u) == 0);
    CHECK_INT(u.role_bit, PROTO_R_OPERATOR);
    CHECK_STR(u.name, "alice");

    const char *bad[] = {"", "drone", "drone:", ":x", "broker:b",
                         "droner:x", "dron:x", "Drone:x", "drone:a:b",
                         "drone:a b", "drone:.x", " drone:x", "drone:x",
                         "drone::KEY", NULL};
    for (int i = 0; bad[i]; i++) {
        for (int withkey = 0; withkey < 2; withkey++) {
            snprintf(id, sizeof id, "%s%s%s", bad[i], withkey ? ":" : "",
                     withkey ? key : "");
            // "drone:x" is only bad without a key.
            if (withkey && strcmp(bad[i], "drone:x") == 0) {
                continue;
            }
            u.role_bit = 99;
            if (auth_parse_user_id(id, &u) != -1) {
                fprintf(stderr, "accepted '%s'\n", id);
                CHECK(false);
            }
            CHECK_INT(u.role_bit, 0);
        }
    }
    snprintf(id, sizeof id, "drone:x:%.39s", key);  // a short key
    CHECK(auth_parse_user_id(id, &u) == -1);
    CHECK(auth_parse_user_id(NULL, &u) == -1);
}

// The handler borrows the lists: after a reload that revokes a key, the
// next handshake with it is refused, with no restart of the handler.
static void
test_reload_refuses_revoked(void)
{
    server_t s;
    REQUIRE(s_server_open(&s, true) == 0);
    keys_client_t k;
    REQUIRE(keys_load_client(s.dir, KEYS_ROLE_DRONE, &k, s_err,
                             sizeof s_err) == 0);
    keys_role_t role;
    REQUIRE(keys_revoke(s.dir, "drone", &role, s_err, sizeof s_err) == 0);
    keys_diff_t diff;
    REQUIRE(keys_broker_reload(s.kb, s.dir, &diff, s_err, sizeof s_err) ==
            0);
    CHECK_INT(diff.n_removed, 1);
    keys_diff_release(&diff);
    client_t c;
    seen_t seen = {0};
    s_client_open(&c, s.endpoint, k.broker_z85, k.public_z85, k.secret_z85);
    s_pump(&s, &c, &seen, 5000, STOP_AUTH_FAILED);
    CHECK_INT(seen.received, 0);
    CHECK(seen.auth_failures > 0);
    CHECK_INT(seen.auth_status, 400);
    s_client_close(&c);
    s_server_close(&s);
}

// Handshakes with 100 different unknown keys (a scanner that has the
// broker's public key makes a new key per connection): every one is
// refused, the log holds a few lines a second, not one per handshake.
static void
test_refusal_log_bounded(void)
{
    zap_t z;
    REQUIRE(s_zap_open(&z) == 0);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/stderr", t_tmpdir());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    REQUIRE(fd >= 0);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    const char *frames[] = {"1.0", "9", AUTH_DOMAIN, "10.0.0.9", "", "CURVE",
                            (const char *) z.key};
    int refused = 0;
    int64_t start = clock_mono_ms();
    for (int i = 0; i < 100; i++) {
        z.key[0] = (uint8_t) i;
        z.key[1] = 0xa5;
        zap_reply_t r;
        s_zap_ask(&z.s, z.req, frames, s_curve_sizes, 7, &r);
        refused += strcmp(r.status, "400") == 0;
    }
    // 5 lines a second at most (a slow run, e.g. under valgrind, spans
    // more seconds).
    int64_t max_lines = 5 * ((clock_mono_ms() - start) / 1000 + 1);
    dup2(saved, STDERR_FILENO);
    close(saved);
    char *text = t_read_file(path, NULL);
    close(fd);
    int lines = 0;
    for (const char *p = text; p && (p = strstr(p, "refused key")); p++) {
        lines++;
    }
    CHECK_INT(refused, 100);
    CHECK(lines >= 1 && lines <= max_lines && lines < 100);
    free(text);
    s_zap_close(&z);
}

static const t_case_t t_cases[] = {
    T(test_handshake_admits_known_keys),
    T(test_handshake_refuses_unknown_key),
    T(test_no_handler_fails_closed),
    T(test_wrong_broker_key),
    T(test_null_mechanism_refused),
    T(test_wrong_domain_refused),
    T(test_second_handler_refused),
    T(test_zap_answers),
    T(test_zap_survives_malformed),
    T(test_parse_user_id),
    T(test_reload_refuses_revoked),
    T(test_refusal_log_bounded),
    {0},
};

T_MAIN(t_cases)
