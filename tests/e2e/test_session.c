// e2e sessions: a HELLO cannot take over a live drone, a RESULT counts only
// on the session of the lease's holder, one session binds one instance, a
// drone that never reads what it is pushed cannot burn the swarm's retries,
// and a flood of bad frames cannot flood the broker's log.
//
// The hostile peers are DEALERs with the real drone keys, driven message by
// message from here (tests/harness/peer.c) against the real broker and a
// real honest drone.
#include "broker/ledger.h"
#include "common/clock.h"
#include "common/json.h"
#include "common/xalloc.h"
#include "tests/harness/attempts.h"
#include "tests/harness/peer.h"
#include "tests/harness/proc.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#define HB_MS 100

// REQUIRE that first stops the swarm (the hostile peer included), so a
// failed test leaves no process running behind it.
#define S_REQUIRE(s, cond)                                                    \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: %s: REQUIRE(%s) failed\n", __FILE__,       \
                    __LINE__, t_current, #cond);                              \
            t_failures++;                                                     \
            swarm_stop(s);                                                    \
            return;                                                           \
        }                                                                     \
    } while (0)

static void
s_where(const swarm_t *s)
{
    fprintf(stderr, "%s: logs in %s\n", t_current, s->dir);
}

static proto_msg_t *
s_result(int64_t plan, const char *task, uint64_t token, const char *out)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_RESULT);
    m->req = 77;
    m->u.result.plan = plan;
    m->u.result.task = xstrdup(task);
    m->u.result.token = token;
    m->u.result.outcome = PROTO_OUTCOME_SUCCEEDED;
    m->u.result.exit_code = 0;
    proto_bytes_set(&m->u.result.out, out, strlen(out));
    return m;
}

static void
s_add_lease(proto_msg_t *hello, int64_t plan, const char *task,
            uint64_t token)
{
    proto_hello_t *h = &hello->u.hello;
    h->leases = xrealloc(h->leases, (h->n_leases + 1) * sizeof *h->leases);
    h->leases[h->n_leases++] = (proto_lease_t){plan, xstrdup(task), token,
                                               false};
}

static void
s_expect_error(proto_msg_t **reply, proto_status_t code, const char *has)
{
    REQUIRE(*reply != NULL);
    CHECK_STR(proto_cmd_name((*reply)->cmd), "ERROR");
    if ((*reply)->cmd == PROTO_MSG_ERROR) {
        CHECK_STR(proto_status_name((*reply)->u.error.code),
                  proto_status_name(code));
        if (has) {
            CHECK_HAS((*reply)->u.error.message, has);
        }
    }
    proto_msg_destroy(reply);
}

// --- 1. a forged RESULT through a HELLO as someone else's instance ----------

// A task that writes its token where the test can read it, then runs long
// enough for the forgery to be tried.
static int64_t
s_submit_slow(swarm_t *s, const char *token_file)
{
    char json[2048];
    snprintf(json, sizeof json,
             "{\"name\":\"victim\",\"tasks\":[{\"id\":\"slow\",\"run\":"
             "[\"sh\",\"-c\",\"echo $WAGGLE_TASK_TOKEN > %s; sleep 3; "
             "echo real\"]}]}",
             token_file);
    return swarm_submit(s, json);
}

static uint64_t
s_read_token(const char *path)
{
    FILE *f = fopen(path, "r");
    unsigned long long t = 0;
    if (f) {
        if (fscanf(f, "%llu", &t) != 1) {
            t = 0;
        }
        fclose(f);
    }
    return t;
}

// The attacker holds a drone key, knows the victim's instance id and the
// lease token (a task can read both), and tries every way in.
static void
s_try_forgery(swarm_t *s, void *atk, const char *victim, int64_t plan,
              uint64_t token)
{
    proto_msg_t *m = peer_hello(victim, 1, NULL);
    s_add_lease(m, plan, "slow", token);
    proto_msg_t *r = peer_ask(atk, &m, 5000);
    s_expect_error(&r, PROTO_E_FORBIDDEN, "missing or wrong session secret");
    m = s_result(plan, "slow", token, "forged\n");
    r = peer_ask(atk, &m, 5000);
    s_expect_error(&r, PROTO_E_HELLO_REQUIRED, NULL);
    m = peer_hello(victim, 1,
                   "00000000000000000000000000000000"
                   "00000000000000000000000000000000");
    s_add_lease(m, plan, "slow", token);
    r = peer_ask(atk, &m, 5000);
    s_expect_error(&r, PROTO_E_FORBIDDEN, "missing or wrong session secret");
    // Bound as its own instance, the attacker's RESULT for the victim's
    // token is checked against its own session: stale.
    m = peer_hello("attacker-0001", 0, NULL);
    r = peer_ask(atk, &m, 5000);
    REQUIRE(r != NULL);
    CHECK_STR(proto_cmd_name(r->cmd), "WELCOME");
    if (r->cmd == PROTO_MSG_WELCOME) {
        CHECK(r->u.welcome.secret && strlen(r->u.welcome.secret) == 64);
    }
    proto_msg_destroy(&r);
    m = s_result(plan, "slow", token, "forged\n");
    r = peer_ask(atk, &m, 5000);
    REQUIRE(r != NULL);
    CHECK_STR(proto_cmd_name(r->cmd), "RESULT_ACK");
    if (r->cmd == PROTO_MSG_RESULT_ACK) {
        CHECK_STR(proto_ack_name(r->u.result_ack.status), "stale");
    }
    proto_msg_destroy(&r);
    (void) s;
}

static void
test_forged_result_refused(void)
{
    swarm_t s;
    swarm_init(&s, HB_MS, 3000);
    s_where(&s);
    S_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    swarm_drone(&s, 1, "victim", NULL);
    S_REQUIRE(&s, swarm_wait_drone(&s, "victim", true, -1, 10000));
    char tokf[700], victim[80];
    snprintf(tokf, sizeof tokf, "%s/token", s.dir);
    int64_t plan = s_submit_slow(&s, tokf);
    S_REQUIRE(&s, plan > 0);
    S_REQUIRE(&s, swarm_wait_lines(tokf, 1, 15000));
    uint64_t token = s_read_token(tokf);
    S_REQUIRE(&s, token > 0);
    S_REQUIRE(&s, swarm_drone_by_tag(&s, "victim", victim, sizeof victim, NULL));
    void *ctx = zmq_ctx_new();
    void *atk = peer_dealer(ctx, &s, KEYS_ROLE_DRONE);
    S_REQUIRE(&s, atk);
    s_try_forgery(&s, atk, victim, plan, token);
    zmq_close(atk);
    zmq_ctx_term(ctx);
    // The live drone kept its session and its lease: the real result is
    // the one recorded.
    char state[32];
    swarm_wait_plan(&s, plan, 30, state, sizeof state);
    CHECK_STR(state, "succeeded");
    char *out = NULL;
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    CHECK_INT(swarm_arch(&s, &out, NULL, "output", id, "slow", NULL), 0);
    CHECK_STR(out ? out : "", "real\n");
    free(out);
    swarm_stop(&s);
    attempts_t at;
    S_REQUIRE(&s, attempts_read(s.db, plan, NULL, &at) == 0);
    CHECK_INT(at.n, 1);
    CHECK_STR(at.a[0].instance, victim);
    CHECK_INT(at.a[0].outcome, LEDGER_ATTEMPT_SUCCEEDED);
}

// The secret's hash is in the ledger: after a broker restart a HELLO as a
// known instance still needs it — even before the real drone is back —
// and the real drone, which has it, comes back as the same instance.
static void
test_secret_survives_restart(void)
{
    swarm_t s;
    swarm_init(&s, HB_MS, 3000);
    s_where(&s);
    S_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    int v = swarm_drone(&s, 1, "victim", NULL);
    S_REQUIRE(&s, swarm_wait_drone(&s, "victim", true, -1, 10000));
    char victim[80], again[80];
    S_REQUIRE(&s, swarm_drone_by_tag(&s, "victim", victim, sizeof victim, NULL));
    // Frozen, the real drone cannot say HELLO before the attacker does.
    kill(s.drones[v], SIGSTOP);
    swarm_broker_kill(&s);
    S_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    void *ctx = zmq_ctx_new();
    void *atk = peer_dealer(ctx, &s, KEYS_ROLE_DRONE);
    S_REQUIRE(&s, atk);
    proto_msg_t *m = peer_hello(victim, 1, NULL);
    proto_msg_t *r = peer_ask(atk, &m, 5000);
    s_expect_error(&r, PROTO_E_FORBIDDEN, "missing or wrong session secret");
    zmq_close(atk);
    zmq_ctx_term(ctx);
    kill(s.drones[v], SIGCONT);
    S_REQUIRE(&s, swarm_wait_drone(&s, "victim", true, -1, 15000));
    S_REQUIRE(&s, swarm_drone_by_tag(&s, "victim", again, sizeof again, NULL));
    CHECK_STR(again, victim);
    swarm_stop(&s);
}

// --- 2. a second HELLO with another instance on one session ----------------

static int
s_count_instance(swarm_t *s, const char *instance)
{
    int n = 0;
    jnode_t *ov = swarm_overview(s);
    const jnode_t *drones = ov ? json_obj_get(ov, "drones") : NULL;
    for (size_t i = 0; drones && i < json_arr_size(drones); i++) {
        const char *id = json_str(json_obj_get(json_arr_get(drones, i),
                                               "instance"));
        n += id && strcmp(id, instance) == 0;
    }
    json_destroy(&ov);
    return n;
}

static void
test_second_hello_unbinds(void)
{
    swarm_t s;
    swarm_init(&s, HB_MS, 3000);
    s_where(&s);
    S_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    void *ctx = zmq_ctx_new();
    void *p = peer_dealer(ctx, &s, KEYS_ROLE_DRONE);
    S_REQUIRE(&s, p);
    proto_msg_t *m = peer_hello("first-instance", 1, NULL);
    proto_msg_t *r = peer_ask(p, &m, 5000);
    S_REQUIRE(&s, r && r->cmd == PROTO_MSG_WELCOME);
    proto_msg_destroy(&r);
    int64_t plan = swarm_submit(&s, "{\"name\":\"one\",\"tasks\":[{\"id\":"
                                    "\"t\",\"run\":[\"true\"]}]}");
    S_REQUIRE(&s, plan > 0);
    proto_msg_t *task = peer_recv_cmd(p, PROTO_MSG_TASK, 10000);
    S_REQUIRE(&s, task);
    uint64_t token = task->u.task.token;
    proto_msg_destroy(&task);
    m = peer_hello("second-instance", 0, NULL);
    r = peer_ask(p, &m, 5000);
    S_REQUIRE(&s, r && r->cmd == PROTO_MSG_WELCOME);
    proto_msg_destroy(&r);
    // The first instance is no longer bound: not listed, its lease released
    // (no attempt used), its token no longer current on this session.
    CHECK_INT(s_count_instance(&s, "first-instance"), 0);
    CHECK_INT(s_count_instance(&s, "second-instance"), 1);
    m = s_result(plan, "t", token, "");
    r = peer_ask(p, &m, 5000);
    S_REQUIRE(&s, r && r->cmd == PROTO_MSG_RESULT_ACK);
    CHECK(r->u.result_ack.status != PROTO_ACK_ACCEPTED);
    proto_msg_destroy(&r);
    zmq_close(p);
    zmq_ctx_term(ctx);
    swarm_stop(&s);
    attempts_t at;
    S_REQUIRE(&s, attempts_read(s.db, plan, NULL, &at) == 0);
    S_REQUIRE(&s, at.n >= 1);
    CHECK_STR(at.a[0].instance, "first-instance");
    CHECK_INT(at.a[0].outcome, LEDGER_ATTEMPT_RELEASED);
}

// --- 3. a drone that never reads its socket ---------------------------------

// The hostile drone, in a child process: HELLO with 1,024 slots, then a
// HEARTBEAT listing nothing every HB_MS, forever; it never reads.
static void
s_hostile_main(const swarm_t *s)
{
    void *ctx = zmq_ctx_new();
    void *p = peer_dealer(ctx, s, KEYS_ROLE_DRONE);
    if (!p) {
        _exit(1);
    }
    proto_msg_t *m = peer_hello("hostile-0001", 1024, NULL);
    proto_strv_push(&m->u.hello.tags, "hostile");
    peer_send(p, &m);
    for (;;) {
        usleep(HB_MS * 1000);
        m = proto_msg_new(PROTO_MSG_HEARTBEAT);
        peer_send(p, &m);
    }
}

static pid_t
s_hostile(const swarm_t *s)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        s_hostile_main(s);
    }
    return pid;
}

static bool
s_quarantined(swarm_t *s, const char *instance)
{
    bool q = false;
    jnode_t *ov = swarm_overview(s);
    const jnode_t *drones = ov ? json_obj_get(ov, "drones") : NULL;
    for (size_t i = 0; drones && i < json_arr_size(drones); i++) {
        const jnode_t *d = json_arr_get(drones, i);
        const char *id = json_str(json_obj_get(d, "instance"));
        const jnode_t *qn = json_obj_get(d, "quarantined");
        if (id && strcmp(id, instance) == 0 && qn) {
            q = json_bool(qn);
        }
    }
    json_destroy(&ov);
    return q;
}

static bool
s_wait_quarantined(swarm_t *s, const char *instance, int timeout_ms)
{
    int64_t end = clock_mono_ms() + timeout_ms;
    do {
        if (s_quarantined(s, instance)) {
            return true;
        }
        usleep(100000);
    } while (clock_mono_ms() < end);
    return false;
}

static char *
s_many_tasks(int n)
{
    size_t cap = 128 + (size_t) n * 64;
    char *json = xcalloc(1, cap);
    size_t len = (size_t) snprintf(json, cap, "{\"name\":\"many\",\"defaults\":"
                                              "{\"retries\":0},\"tasks\":[");
    for (int i = 0; i < n; i++) {
        len += (size_t) snprintf(json + len, cap - len,
                                 "%s{\"id\":\"t%d\",\"run\":[\"sleep\","
                                 "\"0.05\"]}", i ? "," : "", i);
    }
    snprintf(json + len, cap - len, "]}");
    return json;
}

static void
test_hostile_drone_burns_no_retries(void)
{
    swarm_t s;
    swarm_init(&s, HB_MS, 1000);
    s_where(&s);
    S_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    pid_t hostile = s_hostile(&s);
    S_REQUIRE(&s, hostile > 0);
    s.drones[s.n_drones++] = hostile;  // swarm_stop stops it too
    S_REQUIRE(&s, swarm_wait_drone(&s, "hostile", true, -1, 10000));
    // Submitted before the honest drone arrives: the hostile one is offered
    // work first.
    char *json = s_many_tasks(60);
    int64_t plan = swarm_submit(&s, json);
    free(json);
    S_REQUIRE(&s, plan > 0);
    swarm_drone(&s, 4, "honest", NULL);
    char state[32];
    swarm_wait_plan(&s, plan, 60, state, sizeof state);
    CHECK_STR(state, "succeeded");
    CHECK(s_wait_quarantined(&s, "hostile-0001", 10000));
    char log[700];
    snprintf(log, sizeof log, "%s/broker.log", s.dir);
    CHECK(swarm_log_has(log, "hostile-0001", "quarantined"));
    swarm_stop(&s);
    attempts_t at;
    S_REQUIRE(&s, attempts_read(s.db, plan, NULL, &at) == 0);
    CHECK_INT(attempts_count(&at, LEDGER_ATTEMPT_EXPIRED), 0);
    CHECK_INT(attempts_count(&at, LEDGER_ATTEMPT_SUCCEEDED), 60);
}

// A drone that confirms one of its four leases and swallows the rest: the
// three lost leases quarantine it (and cost their tasks nothing); a new
// HELLO does not lift it; finishing the confirmed task does.
static void
test_quarantine_lifted_by_work(void)
{
    swarm_t s;
    swarm_init(&s, HB_MS, 1000);
    s_where(&s);
    S_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    void *ctx = zmq_ctx_new();
    void *p = peer_dealer(ctx, &s, KEYS_ROLE_DRONE);
    S_REQUIRE(&s, p);
    proto_msg_t *m = peer_hello("picky-0001", 4, NULL);
    proto_msg_t *r = peer_ask(p, &m, 5000);
    S_REQUIRE(&s, r && r->cmd == PROTO_MSG_WELCOME);
    proto_msg_destroy(&r);
    char *json = s_many_tasks(4);
    int64_t plan = swarm_submit(&s, json);
    free(json);
    S_REQUIRE(&s, plan > 0);
    proto_msg_t *task = peer_recv_cmd(p, PROTO_MSG_TASK, 10000);
    S_REQUIRE(&s, task);
    uint64_t token = task->u.task.token;
    char *id = xstrdup(task->u.task.task);
    proto_msg_destroy(&task);
    // Keep only that one lease alive until the others are lost.
    int64_t end = clock_mono_ms() + 10000;
    bool quarantined = false;
    while (!quarantined && clock_mono_ms() < end) {
        m = proto_msg_new(PROTO_MSG_HEARTBEAT);
        m->u.heartbeat.tokens = xcalloc(1, sizeof(uint64_t));
        m->u.heartbeat.tokens[0] = token;
        m->u.heartbeat.n_tokens = 1;
        peer_send(p, &m);
        usleep(HB_MS * 1000);
        quarantined = s_quarantined(&s, "picky-0001");
    }
    CHECK(quarantined);
    // (STOPs for the lost leases are waiting: skip to the replies.)
    m = peer_hello("picky-0001", 4, NULL);
    s_add_lease(m, plan, id, token);
    peer_send(p, &m);
    r = peer_recv_cmd(p, PROTO_MSG_WELCOME, 5000);
    CHECK(r != NULL);
    proto_msg_destroy(&r);
    CHECK(s_quarantined(&s, "picky-0001"));
    m = s_result(plan, id, token, "");
    peer_send(p, &m);
    r = peer_recv_cmd(p, PROTO_MSG_RESULT_ACK, 5000);
    S_REQUIRE(&s, r != NULL);
    CHECK_STR(proto_ack_name(r->u.result_ack.status), "accepted");
    proto_msg_destroy(&r);
    CHECK(!s_quarantined(&s, "picky-0001"));
    free(id);
    zmq_close(p);
    zmq_ctx_term(ctx);
    swarm_stop(&s);
    attempts_t at;
    S_REQUIRE(&s, attempts_read(s.db, plan, NULL, &at) == 0);
    CHECK_INT(attempts_count(&at, LEDGER_ATTEMPT_EXPIRED), 0);
    CHECK(attempts_count(&at, LEDGER_ATTEMPT_RELEASED) >= 3);
    CHECK_INT(attempts_count(&at, LEDGER_ATTEMPT_SUCCEEDED), 1);
}

// The first lost lease of a task is free, the second is not: a task that
// takes down every drone it lands on still dies.
static void
test_second_lost_lease_uses_an_attempt(void)
{
    swarm_t s;
    swarm_init(&s, HB_MS, 1000);
    s_where(&s);
    S_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    void *ctx = zmq_ctx_new();
    void *p = peer_dealer(ctx, &s, KEYS_ROLE_DRONE);
    S_REQUIRE(&s, p);
    proto_msg_t *m = peer_hello("mute-0001", 1, NULL);
    proto_msg_t *r = peer_ask(p, &m, 5000);
    S_REQUIRE(&s, r && r->cmd == PROTO_MSG_WELCOME);
    proto_msg_destroy(&r);
    char *json = s_many_tasks(1);
    int64_t plan = swarm_submit(&s, json);
    free(json);
    S_REQUIRE(&s, plan > 0);
    // Alive (heartbeats) but never confirming what it gets.
    char state[32] = "";
    int64_t end = clock_mono_ms() + 15000;
    while (clock_mono_ms() < end) {
        m = proto_msg_new(PROTO_MSG_HEARTBEAT);
        peer_send(p, &m);
        swarm_task_state(&s, plan, "t0", state, sizeof state);
        if (strcmp(state, "dead") == 0) {
            break;
        }
        usleep(HB_MS * 1000);
    }
    CHECK_STR(state, "dead");
    zmq_close(p);
    zmq_ctx_term(ctx);
    swarm_stop(&s);
    attempts_t at;
    S_REQUIRE(&s, attempts_read(s.db, plan, NULL, &at) == 0);
    CHECK_INT(at.n, 2);
    CHECK_INT(at.a[0].outcome, LEDGER_ATTEMPT_RELEASED);
    CHECK_INT(at.a[1].outcome, LEDGER_ATTEMPT_EXPIRED);
}

// --- 4. a flood of malformed frames -----------------------------------------

static void
test_bad_frames_rate_limited(void)
{
    swarm_t s;
    swarm_init(&s, HB_MS, 3000);
    s_where(&s);
    S_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    void *ctx = zmq_ctx_new();
    void *p = peer_dealer(ctx, &s, KEYS_ROLE_DRONE);
    S_REQUIRE(&s, p);
    // Valid msgpack, but not a map.
    const uint8_t junk[] = {0x05};
    for (int i = 0; i < 500; i++) {
        zmq_send(p, junk, sizeof junk, 0);
    }
    char log[700];
    snprintf(log, sizeof log, "%s/broker.log", s.dir);
    CHECK(swarm_wait_log(log, "suppressed", "similar messages", 10000));
    int lines = 0;
    FILE *f = fopen(log, "r");
    char line[4096];
    while (f && fgets(line, sizeof line, f)) {
        lines += strstr(line, "malformed message") != NULL;
    }
    if (f) {
        fclose(f);
    }
    CHECK(lines > 0 && lines <= 20);
    // The broker still answers this peer.
    proto_msg_t *m = peer_hello("flood-0001", 0, NULL);
    CHECK(peer_send(p, &m) == 0);
    proto_msg_t *r = peer_recv_cmd(p, PROTO_MSG_WELCOME, 10000);
    CHECK(r != NULL);
    proto_msg_destroy(&r);
    zmq_close(p);
    zmq_ctx_term(ctx);
    swarm_stop(&s);
}

// Lines of path that hold text.
static int
s_count_lines(const char *path, const char *text)
{
    int n = 0;
    FILE *f = fopen(path, "r");
    char line[4096];
    while (f && fgets(line, sizeof line, f)) {
        n += strstr(line, text) != NULL;
    }
    if (f) {
        fclose(f);
    }
    return n;
}

// A drone whose HEARTBEATs list tokens the ledger never issued (up to 4,096
// a message) gets no STOP for them, and the log says so within the
// session's quota, not once per token.
static void
test_unknown_tokens_rate_limited(void)
{
    swarm_t s;
    swarm_init(&s, HB_MS, 3000);
    s_where(&s);
    S_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    void *ctx = zmq_ctx_new();
    void *p = peer_dealer(ctx, &s, KEYS_ROLE_DRONE);
    S_REQUIRE(&s, p);
    proto_msg_t *m = peer_hello("tokens-0001", 0, NULL);
    S_REQUIRE(&s, peer_send(p, &m) == 0);
    proto_msg_t *r = peer_recv_cmd(p, PROTO_MSG_WELCOME, 10000);
    S_REQUIRE(&s, r != NULL);
    proto_msg_destroy(&r);
    m = proto_msg_new(PROTO_MSG_HEARTBEAT);
    m->u.heartbeat.n_tokens = 300;
    m->u.heartbeat.tokens = xcalloc(300, sizeof(uint64_t));
    for (size_t i = 0; i < 300; i++) {
        m->u.heartbeat.tokens[i] = 900000000000ull + i;
    }
    S_REQUIRE(&s, peer_send(p, &m) == 0);
    char log[700];
    snprintf(log, sizeof log, "%s/broker.log", s.dir);
    CHECK(swarm_wait_log(log, "suppressed", "similar messages", 10000));
    int lines = s_count_lines(log, "which the ledger does not know");
    CHECK(lines > 0 && lines <= 20);
    zmq_close(p);
    zmq_ctx_term(ctx);
    swarm_stop(&s);
}

// Legal messages a drone can repeat at will (UPDATE, a HELLO on its own
// session) are answered every time but logged within the session's quota.
static void
test_repeated_updates_rate_limited(void)
{
    swarm_t s;
    swarm_init(&s, HB_MS, 3000);
    s_where(&s);
    S_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    void *ctx = zmq_ctx_new();
    void *p = peer_dealer(ctx, &s, KEYS_ROLE_DRONE);
    S_REQUIRE(&s, p);
    int64_t start = clock_mono_ms();
    for (int i = 0; i < 200; i++) {
        proto_msg_t *m = peer_hello("repeat-0001", 0, NULL);
        S_REQUIRE(&s, peer_send(p, &m) == 0);
        m = proto_msg_new(PROTO_MSG_UPDATE);
        m->u.update.slots = (uint32_t) i % 3;
        S_REQUIRE(&s, peer_send(p, &m) == 0);
    }
    // The last UPDATE's OK: every message before it was handled.
    int oks = 0;
    proto_msg_t *r;
    while (oks < 200 && (r = peer_recv_cmd(p, PROTO_MSG_OK, 10000))) {
        oks++;
        proto_msg_destroy(&r);
    }
    CHECK_INT(oks, 200);
    // 5 lines a second for the session, however many seconds it took.
    int64_t max_lines = 5 * ((clock_mono_ms() - start) / 1000 + 2);
    char log[700];
    snprintf(log, sizeof log, "%s/broker.log", s.dir);
    CHECK(swarm_wait_log(log, "suppressed", "similar messages", 10000));
    int hellos = s_count_lines(log, "instance repeat-0001 on");
    int lines = s_count_lines(log, "slots");  // HELLO and UPDATE lines
    CHECK(hellos > 0 && hellos < 200);
    CHECK(lines > hellos && lines <= max_lines && lines < 400);
    zmq_close(p);
    zmq_ctx_term(ctx);
    swarm_stop(&s);
}

// --- a drone that reports absurd token counts -------------------------------

// A prompt task's RESULT claims INT64_MAX prompt and completion tokens.
// The budget is the broker's to keep: the plan has spent it, so nothing
// more is dispatched against it, and the sums stay numbers (they wrapped
// past INT64_MAX into "budget left", and two such results made SQLite's
// sum() fail every turn that asked).
static void
test_absurd_token_counts(void)
{
    swarm_t s;
    swarm_init(&s, HB_MS, 20000);  // the peer sends no heartbeats
    s_where(&s);
    S_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    void *ctx = zmq_ctx_new();
    void *p = peer_dealer(ctx, &s, KEYS_ROLE_DRONE);
    S_REQUIRE(&s, p);
    proto_msg_t *m = peer_hello("greedy-0001", 1, NULL);
    proto_strv_push(&m->u.hello.tags, "model");
    proto_msg_t *r = peer_ask(p, &m, 5000);
    S_REQUIRE(&s, r && r->cmd == PROTO_MSG_WELCOME);
    proto_msg_destroy(&r);
    // One prompt task at a time fits the budget (10 reserved of 15).
    int64_t plan = swarm_submit(
        &s, "{\"name\": \"b\", \"budget\": {\"tokens\": 15}, \"tasks\": ["
            "{\"id\": \"p0\", \"prompt\": \"x\", \"max_tokens\": 10},"
            "{\"id\": \"p1\", \"prompt\": \"y\", \"max_tokens\": 10},"
            "{\"id\": \"p2\", \"prompt\": \"z\", \"max_tokens\": 10}]}");
    S_REQUIRE(&s, plan > 0);
    int sent = 0;
    for (proto_msg_t *task = peer_recv_cmd(p, PROTO_MSG_TASK, 10000);
         task && sent < 3; task = peer_recv_cmd(p, PROTO_MSG_TASK, 3000)) {
        m = s_result(plan, task->u.task.task, task->u.task.token, "ok");
        m->u.result.prompt_tokens = INT64_MAX;
        m->u.result.completion_tokens = INT64_MAX;
        proto_msg_destroy(&task);
        peer_send(p, &m);
        sent++;
    }
    // The first result spent the budget: no second task came.
    CHECK_INT(sent, 1);
    jnode_t *st = swarm_status(&s, plan);
    CHECK(st != NULL);
    CHECK_HAS(json_str(json_obj_get(swarm_status_task(st, "p1"),
                                    "waiting_reason")), "budget");
    json_destroy(&st);
    zmq_close(p);
    zmq_ctx_term(ctx);
    swarm_stop(&s);
}

static const t_case_t t_cases[] = {
    T(test_forged_result_refused),
    T(test_secret_survives_restart),
    T(test_second_hello_unbinds),
    T(test_hostile_drone_burns_no_retries),
    T(test_quarantine_lifted_by_work),
    T(test_second_lost_lease_uses_an_attempt),
    T(test_bad_frames_rate_limited),
    T(test_unknown_tokens_rate_limited),
    T(test_repeated_updates_rate_limited),
    T(test_absurd_token_counts),
    {0},
};

T_MAIN(t_cases)
