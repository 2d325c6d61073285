// e2e metrics: a broker with --metrics runs a plan on two drones (a task
// that succeeds, one that fails once and then succeeds on its retry, one
// that uses up its attempts and blocks what needs it), while a client that
// connected to the metrics port and sent nothing holds a connection.  A
// scrape over a plain socket then agrees with the ledger: tasks by state,
// results by outcome (the attempts table), leases, connected drones; a
// handshake with an unknown key is counted.  The responder answers 404 and
// 405, refuses a huge request line, closes silent clients after its
// timeout, and turns away connections past its limit.  JSON log lines
// carry plan, task and key as fields.  A drone SIGKILLed with a lease is
// counted as gone, its lease as ended with it, not as expired.
#include "broker/httpd.h"
#include "broker/ledger.h"
#include "common/clock.h"
#include "common/keys.h"
#include "tests/harness/attempts.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <zmq.h>

static const char *s_plan =
    "{\"name\":\"metrics\",\"tasks\":["
    "{\"id\":\"ok\",\"run\":[\"echo\",\"ok\"]},"
    "{\"id\":\"flaky\",\"retries\":2,\"run\":[\"sh\",\"-c\","
    " \"if [ -f flaky.mark ]; then echo fine; else touch flaky.mark; "
    "exit 1; fi\"]},"
    "{\"id\":\"bad\",\"retries\":1,\"run\":[\"sh\",\"-c\",\"exit 3\"]},"
    "{\"id\":\"after\",\"needs\":[\"bad\"],\"run\":[\"echo\",\"x\"]},"
    "{\"id\":\"last\",\"needs\":[\"ok\",\"flaky\"],\"run\":[\"echo\",\"y\"]}"
    "]}";

// A TCP connection to 127.0.0.1:port, or -1.
static int
s_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t) port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *) &a, sizeof a) == 0) {
        return fd;
    }
    if (fd >= 0) {
        close(fd);
    }
    return -1;
}

// Reads until EOF or timeout_ms; returns what came (caller frees), NULL on
// timeout.
static char *
s_read_all(int fd, int timeout_ms)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    int64_t deadline = clock_mono_ms() + timeout_ms;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int64_t left = deadline - clock_mono_ms();
        if (left <= 0 || poll(&p, 1, (int) left) <= 0) {
            free(buf);
            return NULL;
        }
        if (len + 4096 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n <= 0) {
            buf[len] = '\0';
            return buf;
        }
        len += (size_t) n;
    }
}

// Sends request and returns the whole response (caller frees), or NULL.
static char *
s_http(int port, const char *request)
{
    int fd = s_connect(port);
    if (fd < 0) {
        return NULL;
    }
    size_t len = strlen(request), off = 0;
    while (off < len) {
        ssize_t n = send(fd, request + off, len - off, MSG_NOSIGNAL);
        if (n <= 0) {
            break;  // refused mid-request: the response may be there
        }
        off += (size_t) n;
    }
    char *resp = s_read_all(fd, 20000);
    close(fd);
    return resp;
}

static char *
s_scrape(int port)
{
    return s_http(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
}

// The value of the sample line that starts with `series ` (e.g.
// waggle_tasks{state="ready"}), or -1 when there is none.
static long long
s_value(const char *text, const char *series)
{
    char want[256];
    snprintf(want, sizeof want, "\n%s ", series);
    const char *p = text ? strstr(text, want) : NULL;
    return p ? strtoll(p + strlen(want), NULL, 10) : -1;
}

static long long
s_labelled(const char *text, const char *family, const char *label,
           const char *value)
{
    char series[256];
    snprintf(series, sizeof series, "%s{%s=\"%s\"}", family, label, value);
    return s_value(text, series);
}

// Tasks by state and results by outcome in the scrape equal the ledger's.
static void
s_check_ledger(const swarm_t *s, const char *text, int64_t plan)
{
    ledger_t *l = NULL;
    char err[256];
    REQUIRE(ledger_open(&l, s->db, LEDGER_RDONLY, err, sizeof err) == 0);
    int64_t tasks[PROTO_TASK__COUNT], plans[LEDGER_PLAN_CANCELLED + 1];
    CHECK_INT(ledger_state_counts(l, tasks, plans), LEDGER_OK);
    ledger_destroy(&l);
    for (size_t i = 0; i < PROTO_TASK__COUNT; i++) {
        const char *st = proto_task_state_name((proto_task_state_t) i);
        CHECK_INT(s_labelled(text, "waggle_tasks", "state", st), tasks[i]);
    }
    CHECK_INT(s_labelled(text, "waggle_tasks", "state", "succeeded"), 3);
    CHECK_INT(s_labelled(text, "waggle_tasks", "state", "dead"), 1);
    CHECK_INT(s_labelled(text, "waggle_tasks", "state", "blocked"), 1);
    CHECK_INT(s_labelled(text, "waggle_plans", "state", "failed"),
              plans[LEDGER_PLAN_FAILED]);
    attempts_t a;
    REQUIRE(attempts_read(s->db, plan, NULL, &a) == 0);
    for (int o = LEDGER_ATTEMPT_SUCCEEDED; o <= LEDGER_ATTEMPT_CANCELLED;
         o++) {
        const char *name = ledger_outcome_name((ledger_attempt_outcome_t) o);
        CHECK_INT(s_labelled(text, "waggle_results_total", "outcome", name),
                  attempts_count(&a, (ledger_attempt_outcome_t) o));
    }
    CHECK_INT(s_labelled(text, "waggle_results_total", "outcome", "failed"),
              3);
    // Every attempt is a lease, and each was timed from ready to leased.
    CHECK_INT(s_labelled(text, "waggle_task_transitions_total", "to",
                         "leased"), a.n);
    CHECK_INT(s_value(text, "waggle_dispatch_latency_seconds_count"), a.n);
}

static void
s_check_figures(const char *text)
{
    CHECK_INT(s_value(text, "waggle_drones_connected"), 2);
    CHECK_INT(s_value(text, "waggle_drones_quarantined"), 0);
    CHECK_INT(s_value(text, "waggle_slots"), 3);
    CHECK_INT(s_value(text, "waggle_slots_used"), 0);
    CHECK_INT(s_value(text, "waggle_gates_waiting"), 0);
    CHECK(s_value(text, "waggle_commits_total") > 0);
    CHECK(s_value(text, "waggle_commit_duration_seconds_count") ==
          s_value(text, "waggle_commits_total"));
    CHECK(s_value(text, "waggle_ledger_size_bytes") > 4096);
    // The stranger's socket may have retried before it was closed.
    CHECK(s_labelled(text, "waggle_handshakes_refused_total", "reason",
                     "unknown_key") >= 1);
    CHECK_INT(s_labelled(text, "waggle_handshakes_refused_total", "reason",
                         "mechanism"), 0);
}

// A CurveZMQ client whose key is on no allow list: the broker's ZAP
// handler refuses it.  Returns once the refusal shows in a scrape.
static bool
s_stranger(swarm_t *s, int port)
{
    keys_client_t k;
    char err[512], pub[41], sec[41];
    if (keys_load_client(s->keys, KEYS_ROLE_DRONE, &k, err, sizeof err) < 0 ||
        zmq_curve_keypair(pub, sec) != 0) {
        return false;
    }
    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, k.broker_z85,
                   strlen(k.broker_z85));
    zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, pub, strlen(pub));
    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, sec, strlen(sec));
    zmq_connect(sock, s->endpoint);
    bool seen = false;
    for (int64_t end = clock_mono_ms() + 20000;
         !seen && clock_mono_ms() < end; usleep(100000)) {
        char *t = s_scrape(port);
        seen = s_labelled(t, "waggle_handshakes_refused_total", "reason",
                          "unknown_key") >= 1;
        free(t);
    }
    zmq_close(sock);  // before it retries and is refused again
    zmq_ctx_term(ctx);
    return seen;
}

// Starts s's broker with --metrics on a free port (and JSON logs when
// json); returns the port, or -1.
static int
s_start(swarm_t *s, bool json)
{
    swarm_init(s, 100, 2000);
    int port = swarm_free_port();
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    // The JSON run is verbose: a finished task's line is DEBUG.
    return swarm_broker(s, "--metrics", addr, "--log-format",
                        json ? "json" : "text", json ? "--verbose" : NULL,
                        NULL) == 0 ? port : -1;
}

static void
test_scrape_matches_ledger(void)
{
    swarm_t s;
    int port = s_start(&s, false);
    REQUIRE(port > 0);
    // Connected and silent through the whole plan: it must not stall it.
    int silent = s_connect(port);
    SWARM_REQUIRE(&s, silent >= 0);
    swarm_drone(&s, 2, NULL, NULL);
    swarm_drone(&s, 1, NULL, NULL);
    SWARM_REQUIRE(&s, s_stranger(&s, port));
    int64_t plan = swarm_submit(&s, s_plan);
    SWARM_REQUIRE(&s, plan > 0);
    char state[32];
    swarm_wait_plan(&s, plan, 60, state, sizeof state);
    CHECK_STR(state, "failed");
    // At INFO a plan's end is logged, a finished task is not (one line per
    // task was most of the log at 30k tasks/s, issue 9).
    char log[700];
    snprintf(log, sizeof log, "%s/broker.log", s.dir);
    CHECK(swarm_log_has(log, "plan ", " failed"));
    CHECK(!swarm_log_has(log, "task 'ok': succeeded", NULL));
    char *text = s_scrape(port);
    SWARM_REQUIRE(&s, text);
    CHECK_HAS(text, "HTTP/1.1 200 OK\r\n");
    CHECK_HAS(text, "Content-Type: text/plain; version=0.0.4");
    s_check_ledger(&s, text, plan);
    s_check_figures(text);
    free(text);
    // The silent client is cut off after the responder's timeout.
    char *rest = s_read_all(silent, HTTPD_TIMEOUT_MS + 10000);
    CHECK(rest != NULL && rest[0] == '\0');
    free(rest);
    close(silent);
    swarm_stop(&s);
}

static int
s_status(const char *resp)
{
    int code = 0;
    return resp && sscanf(resp, "HTTP/1.1 %d", &code) == 1 ? code : -1;
}

static void
s_check_status(int port, const char *request, int want)
{
    char *resp = s_http(port, request);
    CHECK_INT(s_status(resp), want);
    free(resp);
}

static void
test_refusals(void)
{
    swarm_t s;
    int port = s_start(&s, true);
    REQUIRE(port > 0);
    s_check_status(port, "GET /nope HTTP/1.1\r\n\r\n", 404);
    s_check_status(port, "POST /metrics HTTP/1.1\r\n\r\n", 405);
    s_check_status(port, "garbage\r\n\r\n", 400);
    s_check_status(port, "GET /healthz HTTP/1.0\r\n\r\n", 200);
    s_check_status(port, "GET /metrics?x=1 HTTP/1.1\r\n\r\n", 200);
    // A request line over the limit is refused, not buffered.
    size_t n = 4 * HTTPD_REQUEST_MAX;
    char *huge = malloc(n + 32);
    memcpy(huge, "GET /", 5);
    memset(huge + 5, 'a', n);
    strcpy(huge + 5 + n, " HTTP/1.1\r\n\r\n");
    s_check_status(port, huge, 414);
    free(huge);
    // Past the connection limit, connections are closed at once.
    int fds[HTTPD_CONNS_MAX + 4];
    for (int i = 0; i < HTTPD_CONNS_MAX + 4; i++) {
        fds[i] = s_connect(port);
        SWARM_REQUIRE(&s, fds[i] >= 0);
    }
    char *cut = s_read_all(fds[HTTPD_CONNS_MAX + 3], 10000);
    CHECK(cut != NULL && cut[0] == '\0');
    free(cut);
    for (int i = 0; i < HTTPD_CONNS_MAX + 4; i++) {
        close(fds[i]);
    }
    // The broker still answers its drones and consoles, and scrapes.
    swarm_drone(&s, 1, NULL, NULL);
    int64_t plan = swarm_submit(&s, "{\"name\":\"p\",\"tasks\":[{\"id\":\"a\","
                                    "\"run\":[\"true\"]}]}");
    char state[32];
    swarm_wait_plan(&s, plan, 60, state, sizeof state);
    CHECK_STR(state, "succeeded");
    // JSON log lines about the plan carry it as fields.
    char log[700];
    snprintf(log, sizeof log, "%s/broker.log", s.dir);
    char plan_field[64];
    snprintf(plan_field, sizeof plan_field, "\"plan\":%lld,\"task\":\"a\"",
             (long long) plan);
    CHECK(swarm_log_has(log, "\"msg\":\"plan ", plan_field));
    CHECK(swarm_log_has(log, "\"msg\":\"drone ", "\"key\":\""));
    bool scraped = false;
    for (int64_t end = clock_mono_ms() + 20000;
         !scraped && clock_mono_ms() < end; usleep(200000)) {
        char *t = s_scrape(port);
        scraped = s_status(t) == 200;
        free(t);
    }
    CHECK(scraped);
    swarm_stop(&s);
}


// A drone SIGKILLed while it holds a lease: the broker gives it up (its
// connection closed) and counts that apart from leases that lapsed.
static void
test_drone_gone_counted(void)
{
    swarm_t s;
    int port = s_start(&s, false);
    REQUIRE(port > 0);
    int a = swarm_drone(&s, 1, NULL, NULL);
    SWARM_REQUIRE(&s, a >= 0);
    int64_t plan = swarm_submit(&s,
        "{\"name\": \"long\", \"tasks\": [{\"id\": \"t\", "
        "\"run\": [\"sleep\", \"600\"]}]}");
    SWARM_REQUIRE(&s, plan > 0);
    SWARM_REQUIRE(&s, swarm_wait_task(&s, plan, "t", "leased", 30));
    kill(s.drones[a], SIGKILL);
    waitpid(s.drones[a], NULL, 0);
    s.drones[a] = 0;
    long long gone = -1, ended = -1;
    char *text = NULL;
    for (int64_t end = clock_mono_ms() + 30000;
         gone < 1 && clock_mono_ms() < end; usleep(200000)) {
        free(text);
        text = s_scrape(port);
        gone = s_value(text, "waggle_drones_gone_total");
    }
    ended = s_value(text, "waggle_leases_drone_gone_total");
    CHECK_INT(gone, 1);
    CHECK_INT(ended, 1);
    CHECK_INT(s_value(text, "waggle_leases_expired_total"), 0);
    CHECK_INT(s_value(text, "waggle_drones_connected"), 0);
    free(text);
    char state[32];
    swarm_task_state(&s, plan, "t", state, sizeof state);
    CHECK_STR(state, "ready");
    swarm_stop(&s);
}

static const t_case_t t_cases[] = {
    T(test_scrape_matches_ledger),
    T(test_refusals),
    T(test_drone_gone_counted),
    {0},
};

T_MAIN(t_cases)
