// nullrone: a drone that runs nothing — a benchmark program, not a mode of
// waggle-drone.
//
// It speaks the drone side of proto/PROTOCOL.md (HELLO, HEARTBEAT, RESULT,
// BYE) with a real CurveZMQ key and answers every TASK at once with a
// RESULT "succeeded", exit 0, no output.  So a swarm of nullrones times the
// broker alone: the ledger, the scheduler, the transport and CURVE, with no
// fork, no exec and no child to wait for.  bench/waggle-bench starts W of
// them ("--mode null").
//
// Leases it holds are the RESULTs not yet acknowledged; its heartbeats list
// them, as a real drone's do (section 7).  When the broker forgets the
// session (HELLO_REQUIRED) it says HELLO again with its secret.  SIGTERM or
// SIGINT: BYE, then exit 0.  It never retries a RESULT: the bench counts
// on the ledger, and a lost one shows as a task that never finished.
//
// --receipts FILE: at exit, one line "TOKEN WALL_MS" per TASK received
// (CLOCK_REALTIME when the TASK was decoded, in ms with µs decimals), so
// the bench can time ready -> received against the ledger's ready stamp
// (the dispatch latency, commit and sync included).  Kept in memory until
// exit: nothing is written while the bench is timing.
//
// --delay-ms D answers each TASK D ms after it arrived instead of at once
// (a task that "runs" for D ms, without a process): K chains of such tasks
// pace the broker at about K / D tasks per second, smoothly, which is how
// the bench's latency target loads it (bench/README.md).
//
// --sessions N holds N drone sessions in one process (one DEALER each, one
// shared drone key, instances ID-0 .. ID-N-1): how waggle-bench puts 1,000
// idle drones on one broker without 1,000 processes and their ZeroMQ
// threads.
#include "common/clock.h"
#include "common/keys.h"
#include "common/xalloc.h"
#include "proto/proto.h"
#include "proto/wire.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define S_MAX_FRAME (64 * 1024 * 1024)

typedef struct {
    void *sock;
    const char *instance;
    char *own_instance;         // owned when --sessions names it
    uint32_t slots;
    char *secret;               // from WELCOME (owned), NULL before
    uint64_t req;               // last request id used
    int64_t heartbeat_ms;       // from WELCOME
    int64_t next_hb_ms;         // monotonic
    uint64_t *pending;          // tokens answered, not yet acknowledged
    size_t n_pending, cap_pending;
    uint64_t answered;          // TASKs answered
    struct s_due *due;          // --delay-ms: TASKs to answer, FIFO
    size_t n_due, cap_due, head_due;
} nullrone_t;

// A TASK to answer at due_ms (monotonic).
typedef struct s_due {
    int64_t due_ms;
    int64_t plan;
    char *task;                 // owned
    uint64_t token;
} s_due_t;

static int64_t s_delay_ms;      // --delay-ms

// --receipts: when each TASK arrived (one table for every session).
typedef struct {
    uint64_t token;
    int64_t wall_us;            // CLOCK_REALTIME
} s_receipt_t;

static s_receipt_t *s_receipts;
static size_t s_n_receipts, s_cap_receipts;
static bool s_keep_receipts;

static volatile sig_atomic_t s_stop;

static void
s_on_signal(int sig)
{
    (void) sig;
    s_stop = 1;
}

static void
s_usage(void)
{
    fprintf(stderr,
        "usage: nullrone --keys DIR --broker ENDPOINT [--slots N] "
        "[--instance ID] [--sessions N] [--receipts FILE]\n"
        "       [--delay-ms D]\n\n"
        "A benchmark drone that answers every TASK at once with success\n"
        "(no process is run).  Reads the drone key bundle DIR/drone.\n"
        "--sessions N: N drone sessions in this one process (instances\n"
        "ID-0 .. ID-N-1, one connection each; default 1, instance ID).\n"
        "--delay-ms D: answer each TASK D ms after it came (default 0).\n"
        "--receipts FILE: at exit, write \"TOKEN WALL_MS\" per TASK received\n"
        "(CLOCK_REALTIME at decode, ms with 3 decimals).\n"
        "SIGTERM: BYE, then exit 0.  Exit 64 on bad usage, 2 when it\n"
        "cannot start, 1 on a socket error.\n");
}

static void
s_send(nullrone_t *n, proto_msg_t **msg, bool dontwait)
{
    if (wire_send(n->sock, NULL, msg, dontwait) < 0 && errno != EAGAIN) {
        fprintf(stderr, "nullrone %s: send: %s\n", n->instance,
                strerror(errno));
    }
}

static void
s_hello(nullrone_t *n)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_HELLO);
    m->req = ++n->req;
    m->u.hello.instance = xstrdup(n->instance);
    m->u.hello.host = xstrdup("bench");
    m->u.hello.version = xstrdup("nullrone");
    m->u.hello.slots = n->slots;
    m->u.hello.secret = n->secret ? xstrdup(n->secret) : NULL;
    s_send(n, &m, false);
}

static void
s_heartbeat(nullrone_t *n, int64_t now)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_HEARTBEAT);
    if (n->n_pending > 0) {
        m->u.heartbeat.tokens = xmalloc(n->n_pending * sizeof(uint64_t));
        memcpy(m->u.heartbeat.tokens, n->pending,
               n->n_pending * sizeof(uint64_t));
        m->u.heartbeat.n_tokens = n->n_pending;
    }
    // Heartbeats are never queued (PROTOCOL.md): dropped when they cannot go.
    s_send(n, &m, true);
    n->next_hb_ms = now + n->heartbeat_ms;
}

static void
s_pending_add(nullrone_t *n, uint64_t token)
{
    if (n->n_pending == n->cap_pending) {
        n->cap_pending = n->cap_pending ? n->cap_pending * 2 : 64;
        n->pending = xrealloc(n->pending, n->cap_pending * sizeof *n->pending);
    }
    n->pending[n->n_pending++] = token;
}

static void
s_pending_remove(nullrone_t *n, uint64_t token)
{
    for (size_t i = 0; i < n->n_pending; i++) {
        if (n->pending[i] == token) {
            n->pending[i] = n->pending[--n->n_pending];
            return;
        }
    }
}

static void
s_receipt(uint64_t token)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (s_n_receipts == s_cap_receipts) {
        s_cap_receipts = s_cap_receipts ? s_cap_receipts * 2 : 4096;
        s_receipts = xrealloc(s_receipts,
                              s_cap_receipts * sizeof *s_receipts);
    }
    s_receipts[s_n_receipts++] = (s_receipt_t){
        token, (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000};
}

static int
s_write_receipts(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "nullrone: cannot write '%s': %s\n", path,
                strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < s_n_receipts; i++) {
        fprintf(f, "%llu %lld.%03lld\n",
                (unsigned long long) s_receipts[i].token,
                (long long) (s_receipts[i].wall_us / 1000),
                (long long) (s_receipts[i].wall_us % 1000));
    }
    int rc = fclose(f) == 0 ? 0 : -1;
    free(s_receipts);
    return rc;
}

static void
s_answer(nullrone_t *n, int64_t plan, char **task, uint64_t token)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_RESULT);
    proto_result_t *r = &m->u.result;
    m->req = ++n->req;
    r->plan = plan;
    r->task = *task;
    *task = NULL;
    r->token = token;
    r->outcome = PROTO_OUTCOME_SUCCEEDED;
    r->exit_code = 0;
    r->started_ms = clock_wall_ms();
    r->prompt_tokens = -1;
    r->completion_tokens = -1;
    s_pending_add(n, token);
    n->answered++;
    s_send(n, &m, false);
}

// --delay-ms: keeps the TASK until its time.
static void
s_defer(nullrone_t *n, const proto_task_t *t, int64_t now)
{
    if (n->head_due == n->n_due) {
        n->head_due = n->n_due = 0;
    }
    if (n->n_due == n->cap_due) {
        n->cap_due = n->cap_due ? n->cap_due * 2 : 64;
        n->due = xrealloc(n->due, n->cap_due * sizeof *n->due);
    }
    n->due[n->n_due++] = (s_due_t){now + s_delay_ms, t->plan,
                                   xstrdup(t->task), t->token};
}

// Answers the deferred TASKs whose time has come.
static void
s_answer_due(nullrone_t *n, int64_t now)
{
    while (n->head_due < n->n_due && n->due[n->head_due].due_ms <= now) {
        s_due_t *d = &n->due[n->head_due++];
        s_answer(n, d->plan, &d->task, d->token);
    }
}

static void
s_on_task(nullrone_t *n, const proto_task_t *t, int64_t now)
{
    if (s_delay_ms > 0) {
        s_defer(n, t, now);
        return;
    }
    char *task = xstrdup(t->task);
    s_answer(n, t->plan, &task, t->token);
}

static void
s_on_msg(nullrone_t *n, proto_msg_t *m, int64_t now)
{
    switch (m->cmd) {
    case PROTO_MSG_WELCOME:
        free(n->secret);
        n->secret = m->u.welcome.secret ? xstrdup(m->u.welcome.secret)
                                        : NULL;
        if (m->u.welcome.heartbeat_ms > 0) {
            n->heartbeat_ms = m->u.welcome.heartbeat_ms;
        }
        n->next_hb_ms = now + n->heartbeat_ms;
        break;
    case PROTO_MSG_TASK:
        if (s_keep_receipts) {
            s_receipt(m->u.task.token);
        }
        s_on_task(n, &m->u.task, now);
        break;
    case PROTO_MSG_RESULT_ACK:
        s_pending_remove(n, m->u.result_ack.token);
        break;
    case PROTO_MSG_ERROR:
        if (m->u.error.code == PROTO_E_HELLO_REQUIRED) {
            n->n_pending = 0;
            s_hello(n);
        } else {
            fprintf(stderr, "nullrone %s: ERROR %s: %s\n", n->instance,
                    proto_status_name(m->u.error.code),
                    m->u.error.message ? m->u.error.message : "");
        }
        break;
    default:
        break;                  // HEARTBEAT, STOP (nothing runs), OK
    }
}

// Reads everything that is waiting.  Returns -1 on a socket error.
static int
s_drain(nullrone_t *n, const proto_limits_t *lim)
{
    for (;;) {
        proto_msg_t *m = NULL;
        proto_error_t perr;
        wire_rc_t rc = wire_recv(n->sock, false, lim, NULL, NULL, NULL, &m,
                                 &perr);
        if (rc == WIRE_AGAIN) {
            return 0;
        }
        if (rc == WIRE_ERR) {
            return errno == EINTR ? 0 : -1;
        }
        if (rc == WIRE_BAD) {
            fprintf(stderr, "nullrone %s: undecodable: %s\n", n->instance,
                    perr.message);
            continue;
        }
        s_on_msg(n, m, clock_mono_ms());
        proto_msg_destroy(&m);
    }
}

static void *
s_connect(void *ctx, const char *keys, const char *endpoint)
{
    keys_client_t k;
    char err[512];
    if (keys_load_client(keys, KEYS_ROLE_DRONE, &k, err, sizeof err) < 0) {
        fprintf(stderr, "nullrone: %s\n", err);
        return NULL;
    }
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 100;
    int64_t max = S_MAX_FRAME;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &max, sizeof max);
    zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, k.broker_z85, 40);
    zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, k.public_z85, 40);
    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, k.secret_z85, 40);
    if (zmq_connect(sock, endpoint) != 0) {
        fprintf(stderr, "nullrone: cannot connect to '%s': %s\n", endpoint,
                zmq_strerror(zmq_errno()));
        zmq_close(sock);
        return NULL;
    }
    return sock;
}

// The next heartbeat or deferred answer of any session (monotonic ms).
static int64_t
s_next_wake(const nullrone_t *n, size_t count)
{
    int64_t next = n[0].next_hb_ms;
    for (size_t i = 0; i < count; i++) {
        if (n[i].next_hb_ms < next) {
            next = n[i].next_hb_ms;
        }
        if (n[i].head_due < n[i].n_due &&
            n[i].due[n[i].head_due].due_ms < next) {
            next = n[i].due[n[i].head_due].due_ms;
        }
    }
    return next;
}

static int
s_run(nullrone_t *n, size_t count)
{
    proto_limits_t lim;
    proto_limits_default(&lim);
    lim.max_frame = lim.max_string = S_MAX_FRAME;
    zmq_pollitem_t *items = xcalloc(count, sizeof *items);
    for (size_t i = 0; i < count; i++) {
        s_hello(&n[i]);
        n[i].next_hb_ms = clock_mono_ms() + n[i].heartbeat_ms;
        items[i] = (zmq_pollitem_t) {n[i].sock, 0, ZMQ_POLLIN, 0};
    }
    int ret = 0;
    while (!s_stop && ret == 0) {
        int64_t wait = s_next_wake(n, count) - clock_mono_ms();
        int rc = zmq_poll(items, (int) count, wait < 0 ? 0 : (long) wait);
        if (rc < 0 && zmq_errno() != EINTR) {
            ret = 1;
        }
        for (size_t i = 0; rc > 0 && ret == 0 && i < count; i++) {
            if ((items[i].revents & ZMQ_POLLIN) && s_drain(&n[i], &lim) < 0) {
                ret = 1;
            }
        }
        int64_t now = clock_mono_ms();
        for (size_t i = 0; i < count; i++) {
            s_answer_due(&n[i], now);
            if (now >= n[i].next_hb_ms) {
                s_heartbeat(&n[i], now);
            }
        }
    }
    for (size_t i = 0; i < count; i++) {
        proto_msg_t *bye = proto_msg_new(PROTO_MSG_BYE);
        bye->req = ++n[i].req;
        s_send(&n[i], &bye, true);
    }
    free(items);
    return ret;
}

static int
s_parse(int argc, char **argv, const char **keys, const char **endpoint,
        nullrone_t *n, size_t *sessions, const char **receipts)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0) {
            s_usage();
            exit(0);
        }
        if (!v) {
            return -1;
        }
        if (strcmp(a, "--keys") == 0) {
            *keys = v;
        } else if (strcmp(a, "--broker") == 0) {
            *endpoint = v;
        } else if (strcmp(a, "--slots") == 0) {
            char *end;
            unsigned long s = strtoul(v, &end, 10);
            if (*end || s < 1 || s > 1024) {
                return -1;
            }
            n->slots = (uint32_t) s;
        } else if (strcmp(a, "--delay-ms") == 0) {
            char *end;
            long d = strtol(v, &end, 10);
            if (*end || d < 0 || d > 3600000) {
                return -1;
            }
            s_delay_ms = d;
        } else if (strcmp(a, "--receipts") == 0) {
            *receipts = v;
        } else if (strcmp(a, "--instance") == 0) {
            n->instance = v;
        } else if (strcmp(a, "--sessions") == 0) {
            char *end;
            unsigned long k = strtoul(v, &end, 10);
            if (*end || k < 1 || k > 100000) {
                return -1;
            }
            *sessions = k;
        } else {
            return -1;
        }
        i++;
    }
    return *keys && *endpoint ? 0 : -1;
}

// Enough descriptors and ZeroMQ sockets for --sessions: one connection
// each, plus libzmq's own.
static void
s_raise_limits(void *ctx, size_t sessions)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, (int) sessions + 64);
}

static void
s_close_all(nullrone_t *n, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (n[i].sock) {
            zmq_close(n[i].sock);
        }
        free(n[i].secret);
        free(n[i].pending);
        free(n[i].own_instance);
        for (size_t k = n[i].head_due; k < n[i].n_due; k++) {
            free(n[i].due[k].task);
        }
        free(n[i].due);
    }
    free(n);
}

int
main(int argc, char **argv)
{
    nullrone_t proto = {.slots = 1, .heartbeat_ms = 1000};
    const char *keys = NULL, *endpoint = NULL, *receipts = NULL;
    size_t count = 1;
    char inst[64];
    snprintf(inst, sizeof inst, "nullrone-%ld", (long) getpid());
    proto.instance = inst;
    if (s_parse(argc, argv, &keys, &endpoint, &proto, &count, &receipts)
            < 0) {
        s_usage();
        return 64;
    }
    s_keep_receipts = receipts != NULL;
    struct sigaction sa = {.sa_handler = s_on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    void *ctx = zmq_ctx_new();
    s_raise_limits(ctx, count);
    nullrone_t *n = xcalloc(count, sizeof *n);
    for (size_t i = 0; i < count; i++) {
        n[i] = proto;
        if (count > 1) {
            char buf[128];
            snprintf(buf, sizeof buf, "%s-%zu", proto.instance, i);
            n[i].own_instance = xstrdup(buf);
            n[i].instance = n[i].own_instance;
        }
        n[i].sock = s_connect(ctx, keys, endpoint);
        if (!n[i].sock) {
            s_close_all(n, count);
            zmq_ctx_term(ctx);
            return 2;
        }
    }
    int rc = s_run(n, count);
    uint64_t answered = 0;
    for (size_t i = 0; i < count; i++) {
        answered += n[i].answered;
    }
    fprintf(stderr, "nullrone %s: answered %llu tasks (%zu session%s)\n",
            proto.instance, (unsigned long long) answered, count,
            count == 1 ? "" : "s");
    s_close_all(n, count);
    zmq_ctx_term(ctx);
    if (receipts && s_write_receipts(receipts) < 0 && rc == 0) {
        rc = 1;
    }
    return rc;
}
