// e2e link: the architect's link with requests in flight at once against a
// real broker.  A SUBSCRIBE held at the broker does not hold up a STATUS
// sent after it (replies matched by req id, not by order); the held
// SUBSCRIBE is answered by the commit that adds events; a request sent on a
// connection that then drops fails at once instead of at its deadline; one
// queued while the broker is down goes out when it is back; link_request
// works beside callbacks; a forgotten request's callback never runs.
#include "architect/link.h"
#include "common/clock.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

typedef struct {
    int calls;
    link_rc_t rc;
    proto_cmd_t cmd;         // of the reply
    size_t n_events;
    int64_t at_ms;           // monotonic, when it ended
} s_got_t;

static void
s_on(void *arg, link_rc_t rc, proto_msg_t **reply, const char *err)
{
    (void) err;
    s_got_t *g = arg;
    g->calls++;
    g->rc = rc;
    g->at_ms = clock_mono_ms();
    if (*reply) {
        g->cmd = (*reply)->cmd;
        g->n_events = (*reply)->cmd == PROTO_MSG_EVENTS
                          ? (*reply)->u.events.n_events : 0;
    }
}

// Polls until g has been called or timeout_ms passed.
static bool
s_until(link_t *l, const s_got_t *g, int64_t timeout_ms)
{
    int64_t end = clock_mono_ms() + timeout_ms;
    while (g->calls == 0 && clock_mono_ms() < end) {
        link_poll(l, -1, 100);
    }
    return g->calls > 0;
}

static uint64_t
s_subscribe(link_t *l, int64_t since, uint32_t wait_ms, s_got_t *g)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_SUBSCRIBE);
    m->u.subscribe.since = since;
    m->u.subscribe.wait_ms = wait_ms;
    return link_send(l, &m, 60000, s_on, g);
}

// The last event seq now (SUBSCRIBE since -1), by link_request.
static int64_t
s_last_seq(link_t *l)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_SUBSCRIBE), *r = NULL;
    m->u.subscribe.since = -1;
    char err[512];
    if (link_request(l, &m, 30000, &r, err, sizeof err) != LINK_OK ||
        r->cmd != PROTO_MSG_EVENTS) {
        proto_msg_destroy(&r);
        return -1;
    }
    int64_t next = r->u.events.next;
    proto_msg_destroy(&r);
    return next;
}

static void
test_in_flight(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    SWARM_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    keys_client_t keys;
    char err[512];
    SWARM_REQUIRE(&s, keys_load_client(s.keys, KEYS_ROLE_OPERATOR, &keys,
                                       err, sizeof err) == 0);
    link_t *l = link_new(s.endpoint, &keys);
    int64_t seq = s_last_seq(l);
    SWARM_REQUIRE(&s, seq >= 0);

    // Held: nothing after seq yet.  A STATUS after it comes back first.
    s_got_t sub = {0}, st = {0};
    s_subscribe(l, seq, 30000, &sub);
    proto_msg_t *m = proto_msg_new(PROTO_MSG_STATUS);
    link_send(l, &m, 30000, s_on, &st);
    CHECK(s_until(l, &st, 30000));
    CHECK_INT(st.rc, LINK_OK);
    CHECK_INT(st.cmd, PROTO_MSG_STATUS_OK);
    CHECK_INT(sub.calls, 0);
    CHECK_INT(link_pending(l), 1);

    // A commit with events answers the held SUBSCRIBE.
    SWARM_REQUIRE(&s, swarm_submit(&s, "{\"name\":\"x\",\"tasks\":[{\"id\":"
                                       "\"a\",\"run\":[\"true\"]}]}") > 0);
    CHECK(s_until(l, &sub, 30000));
    CHECK_INT(sub.rc, LINK_OK);
    CHECK_INT(sub.cmd, PROTO_MSG_EVENTS);
    CHECK(sub.n_events >= 1);

    // A forgotten request: its callback never runs.
    s_got_t gone = {0};
    link_forget(l, s_subscribe(l, 0, 0, &gone));
    CHECK_INT(link_pending(l), 0);
    for (int i = 0; i < 5; i++) {
        link_poll(l, -1, 100);
    }
    CHECK_INT(gone.calls, 0);

    // The connection drops under a held request: it fails at once, long
    // before its 60 s deadline.
    s_got_t held = {0};
    s_subscribe(l, s_last_seq(l), 30000, &held);
    for (int i = 0; i < 5; i++) {
        link_poll(l, -1, 50);  // sent, and parked at the broker
    }
    int64_t killed = clock_mono_ms();
    swarm_broker_kill(&s);
    CHECK(s_until(l, &held, 20000));
    CHECK_INT(held.rc, LINK_UNREACHABLE);
    CHECK(held.at_ms - killed < 20000);
    CHECK(!link_is_up(l));

    // Queued while down, sent once the broker is back.
    s_got_t later = {0};
    m = proto_msg_new(PROTO_MSG_PING);
    link_send(l, &m, 60000, s_on, &later);
    SWARM_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    CHECK(s_until(l, &later, 30000));
    CHECK_INT(later.rc, LINK_OK);
    CHECK_INT(later.cmd, PROTO_MSG_PONG);
    CHECK(link_is_up(l));
    link_destroy(&l);
    swarm_stop(&s);
}

static const t_case_t t_cases[] = {
    T(test_in_flight),
    {0},
};

T_MAIN(t_cases)
