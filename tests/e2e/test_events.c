// e2e: the event log read out through SUBSCRIBE pages — `events`, `log`,
// `--since` and `--follow` across a broker SIGKILL and restart — compared
// seq by seq against the ledger's events table: no gaps, no repeats.
#include "broker/ledger.h"
#include "common/clock.h"
#include "common/json.h"
#include "tests/harness/peer.h"
#include "tests/harness/proc.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#define S_MAX_EVENTS 4096

static const char *s_chain =
    "{\"name\":\"chain\",\"tasks\":["
    "{\"id\":\"a\",\"run\":[\"echo\",\"a\"]},"
    "{\"id\":\"b\",\"needs\":[\"a\"],\"run\":[\"echo\",\"b\"]}]}";

typedef struct {
    int64_t seq[S_MAX_EVENTS];
    int n;
} s_seqs_t;

static void
s_on_event(void *arg, int64_t seq, int64_t at_ms, const char *task,
           const char *actor, const char *kind, const char *from,
           const char *to, uint64_t token, const char *detail)
{
    (void) at_ms, (void) task, (void) actor, (void) kind, (void) from;
    (void) to, (void) token, (void) detail;
    s_seqs_t *s = arg;
    if (s->n < S_MAX_EVENTS) {
        s->seq[s->n++] = seq;
    }
}

// The ledger's events of plan (0: all) after `after`.
static void
s_ledger_seqs(const swarm_t *s, int64_t plan, int64_t after, s_seqs_t *out)
{
    ledger_t *l = NULL;
    char err[256];
    out->n = 0;
    REQUIRE(ledger_open(&l, s->db, LEDGER_RDONLY, err, sizeof err) == 0);
    CHECK_INT(ledger_events(l, plan, after, s_on_event, out), LEDGER_OK);
    ledger_destroy(&l);
}

// Appends the seq of one JSON line; false if it is not an event.
static bool
s_add_line(s_seqs_t *seqs, const char *line)
{
    char err[128];
    jnode_t *o = json_parse(line, strlen(line), err, sizeof err);
    const jnode_t *seq = o ? json_obj_get(o, "seq") : NULL;
    bool ok = seq && json_obj_get(o, "kind") && seqs->n < S_MAX_EVENTS;
    if (ok) {
        seqs->seq[seqs->n++] = json_int(seq);
    }
    json_destroy(&o);
    return ok;
}

static void
s_parse_lines(char *out, s_seqs_t *seqs)
{
    seqs->n = 0;
    for (char *save = NULL, *line = strtok_r(out, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        CHECK(s_add_line(seqs, line));
    }
}

static void
s_check_same(const s_seqs_t *got, const s_seqs_t *want)
{
    CHECK_INT(got->n, want->n);
    for (int i = 0; i < got->n && i < want->n; i++) {
        CHECK_INT(got->seq[i], want->seq[i]);
    }
}

static int64_t
s_run_plan(swarm_t *s)
{
    int64_t plan = swarm_submit(s, s_chain);
    char state[32] = "";
    if (plan > 0) {
        swarm_wait_plan(s, plan, 60, state, sizeof state);
    }
    CHECK_STR(state, "succeeded");
    return plan;
}

static void
test_events_pages_and_since(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    swarm_drone(&s, 2, NULL, NULL);
    int64_t p1 = s_run_plan(&s), p2 = s_run_plan(&s);
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) p1);
    char *out = NULL;
    s_seqs_t got, want;
    SWARM_REQUIRE(&s, swarm_arch(&s, &out, NULL, "events", "--json",
                                 NULL) == 0);
    s_parse_lines(out, &got);
    free(out);
    s_ledger_seqs(&s, 0, 0, &want);
    CHECK(want.n > 8);
    s_check_same(&got, &want);
    // Resuming from a seq in the middle gives exactly the rest.
    char since[32];
    snprintf(since, sizeof since, "%lld", (long long) want.seq[want.n / 2]);
    SWARM_REQUIRE(&s, swarm_arch(&s, &out, NULL, "events", "--since", since,
                                 "--json", NULL) == 0);
    s_parse_lines(out, &got);
    free(out);
    s_ledger_seqs(&s, 0, want.seq[want.n / 2], &want);
    s_check_same(&got, &want);
    // One plan's events only.
    SWARM_REQUIRE(&s, swarm_arch(&s, &out, NULL, "events", id, "--json",
                                 NULL) == 0);
    s_parse_lines(out, &got);
    free(out);
    s_ledger_seqs(&s, p1, 0, &want);
    s_check_same(&got, &want);
    CHECK(p2 > p1);
    swarm_stop(&s);
}

static void
test_log_shows_history(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    swarm_drone(&s, 2, NULL, NULL);
    int64_t plan = s_run_plan(&s);
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    char *out = NULL;
    SWARM_REQUIRE(&s, swarm_arch(&s, &out, NULL, "log", id, NULL) == 0);
    CHECK(strstr(out, "submit") != NULL);
    CHECK(strstr(out, "  a  ") != NULL && strstr(out, "  b  ") != NULL);
    CHECK(strstr(out, "\u2192succeeded") != NULL);
    // Each task's line to succeeded comes after its submit line.
    const char *sub = strstr(out, "submit");
    for (const char *t = out; (t = strstr(t, "\u2192succeeded")); t++) {
        CHECK(sub && sub < t);
    }
    fprintf(stderr, "%s", out);
    free(out);
    swarm_stop(&s);
}

// Reads JSON lines from fd until the event with seq last arrived.
static bool
s_follow_until(int fd, int64_t last, s_seqs_t *got)
{
    char line[8192];
    while (got->n == 0 || got->seq[got->n - 1] < last) {
        if (proc_read_line(fd, "{", 60000, line, sizeof line) < 0 ||
            !s_add_line(got, line)) {
            return false;
        }
    }
    return true;
}

static void
test_follow_rides_broker_restart(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    swarm_drone(&s, 2, NULL, NULL);
    s_run_plan(&s);
    char log[700];
    snprintf(log, sizeof log, "%s/follow.log", s.dir);
    char *argv[] = {(char *) swarm_bin("waggle-architect"), "--broker",
                    s.endpoint, "--keys", s.keys, "events", "--follow",
                    "--json", NULL};
    int fd = -1;
    pid_t follower = proc_spawn(argv, log, &fd);
    SWARM_REQUIRE(&s, follower > 0);
    s_seqs_t got = {0}, want;
    s_ledger_seqs(&s, 0, 0, &want);
    CHECK(s_follow_until(fd, want.seq[want.n - 1], &got));
    // The broker dies mid-follow; work done after its restart still
    // arrives, each event once.
    swarm_broker_kill(&s);
    SWARM_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    s_run_plan(&s);
    s_ledger_seqs(&s, 0, 0, &want);
    CHECK(s_follow_until(fd, want.seq[want.n - 1], &got));
    s_check_same(&got, &want);
    proc_stop(follower, 2000);
    close(fd);
    swarm_stop(&s);
}

static long
s_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int) pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
        }
    }
    if (f) {
        fclose(f);
    }
    return kb;
}

static proto_msg_t *
s_subscribe(uint64_t req, int64_t since, uint32_t wait_ms)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_SUBSCRIBE);
    m->req = req;
    m->u.subscribe.since = since;
    m->u.subscribe.wait_ms = wait_ms;
    return m;
}

// A reader that asks and asks but never reads holds one parked request at
// the broker, not one per ask: after a commit it finds exactly one answer
// (to its latest ask) saying where to resume, and the broker's memory did
// not grow with the asks.
static void
test_reader_that_never_reads_is_bounded(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    swarm_drone(&s, 2, NULL, NULL);
    s_run_plan(&s);
    s_seqs_t want;
    s_ledger_seqs(&s, 0, 0, &want);
    int64_t last = want.seq[want.n - 1];
    void *ctx = zmq_ctx_new();
    void *sock = peer_dealer(ctx, &s, KEYS_ROLE_SUBMITTER);
    SWARM_REQUIRE(&s, sock != NULL);
    // The session exists before the baseline is taken.
    proto_msg_t *m = s_subscribe(1, last, 0), *r = NULL;
    r = peer_ask(sock, &m, 10000);
    CHECK(r && r->cmd == PROTO_MSG_EVENTS && r->u.events.n_events == 0);
    proto_msg_destroy(&r);
    long before = s_rss_kb(s.broker);
    const uint64_t asks = 20000;
    for (uint64_t i = 2; i < 2 + asks; i++) {
        m = s_subscribe(i, last, 60000);
        CHECK_INT(peer_send(sock, &m), 0);
        if (i % 500 == 0) {
            // Within the DEALER's send queue.  Nothing is there yet: every
            // ask is parked (each replaces the one before), so no reply.
            r = peer_recv_reply(sock, 200);
            CHECK(r == NULL);
            proto_msg_destroy(&r);
        }
    }
    r = peer_recv_reply(sock, 1000);
    CHECK(r == NULL);
    proto_msg_destroy(&r);
    long after = s_rss_kb(s.broker);
    fprintf(stderr, "broker rss: %ld kB before, %ld kB after %llu asks\n",
            before, after, (unsigned long long) asks);
#ifndef __SANITIZE_ADDRESS__
    // (ASan's quarantine holds freed memory, so RSS says nothing there.)
    CHECK(before > 0 && after - before < 8 * 1024);
#endif
    s_run_plan(&s);
    r = peer_recv_reply(sock, 10000);
    SWARM_REQUIRE(&s, r && r->cmd == PROTO_MSG_EVENTS);
    CHECK_INT(r->req, 1 + asks);
    CHECK(r->u.events.n_events > 0);
    CHECK_INT(r->u.events.events[0].seq, last + 1);
    CHECK_INT(r->u.events.next,
              r->u.events.events[r->u.events.n_events - 1].seq);
    proto_msg_destroy(&r);
    r = peer_recv_reply(sock, 1000);
    CHECK(r == NULL);
    proto_msg_destroy(&r);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    swarm_stop(&s);
}

// A caught-up follower is answered by the commit, not by a poll: the
// submit's event reaches it well before its wait (5 s) would end.
static void
test_follow_is_woken_by_the_commit(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    swarm_drone(&s, 2, NULL, NULL);
    void *ctx = zmq_ctx_new();
    void *sock = peer_dealer(ctx, &s, KEYS_ROLE_SUBMITTER);
    SWARM_REQUIRE(&s, sock != NULL);
    s_seqs_t want;
    s_ledger_seqs(&s, 0, 0, &want);
    int64_t last = want.n ? want.seq[want.n - 1] : 0;
    proto_msg_t *m = s_subscribe(7, last, 30000), *r = NULL;
    CHECK_INT(peer_send(sock, &m), 0);
    r = peer_recv_reply(sock, 500);
    CHECK(r == NULL);  // parked
    proto_msg_destroy(&r);
    int64_t t0 = clock_mono_ms();
    int64_t plan = swarm_submit(&s, s_chain);
    r = peer_recv_reply(sock, 20000);
    int64_t took = clock_mono_ms() - t0;
    SWARM_REQUIRE(&s, r && r->cmd == PROTO_MSG_EVENTS);
    CHECK_INT(r->req, 7);
    CHECK(r->u.events.n_events > 0);
    CHECK_INT(r->u.events.events[0].plan, plan);
    fprintf(stderr, "first event %lld ms after the submit began\n",
            (long long) took);
    CHECK(took < 5000);
    proto_msg_destroy(&r);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    swarm_stop(&s);
}

// wait follows the stream: it ends as soon as the plan's last commit is
// made, not at the end of its 5 s wait at the broker (nor a poll).
static void
test_wait_wakes_on_the_plan_end(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    swarm_drone(&s, 2, NULL, NULL);
    int64_t plan = swarm_submit(&s,
        "{\"name\":\"nap\",\"tasks\":[{\"id\":\"nap\","
        "\"run\":[\"sleep\",\"1.5\"]}]}");
    SWARM_REQUIRE(&s, plan > 0);
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    int64_t t0 = clock_mono_ms();
    CHECK_INT(swarm_arch(&s, NULL, NULL, "wait", id, "--timeout", "60",
                         NULL), 0);
    int64_t took = clock_mono_ms() - t0;
    fprintf(stderr, "wait took %lld ms for a 1.5 s task\n", (long long) took);
    CHECK(took < 4500);
    swarm_stop(&s);
}

static const t_case_t t_cases[] = {
    T(test_events_pages_and_since),
    T(test_log_shows_history),
    T(test_follow_rides_broker_restart),
    T(test_reader_that_never_reads_is_bounded),
    T(test_follow_is_woken_by_the_commit),
    T(test_wait_wakes_on_the_plan_end),
    {0},
};

T_MAIN(t_cases)
