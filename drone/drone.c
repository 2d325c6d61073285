// drone: the DEALER loop — HELLO, heartbeats, tasks in, results out.
//
// One thread: zmq_poll over the broker socket and the runner's descriptors.
// Liveness is Paranoid Pirate: silence from the broker for
// PROTO_LIVENESS_BEATS heartbeats means the connection is gone, so the
// socket is closed (dropping whatever was queued on it — heartbeats must
// never arrive in a stale flood) and a new one says HELLO, with backoff
// kept below half a lease.
#include "drone/drone.h"

#include "common/clock.h"
#include "common/fdlimit.h"
#include "common/keys.h"
#include "common/log.h"
#include "common/workplan.h"
#include "common/xalloc.h"
#include "drone/attempt.h"
#include "drone/confine.h"
#include "drone/prompt.h"
#include "drone/runner.h"
#include "proto/proto.h"
#include "proto/wire.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#define LOG "drone"
#define HELLO_TIMEOUT_MS 2000
#define RECONNECT_MIN_MS 100
#define BYE_WAIT_MS 2000
#define KILL_GRACE_MS 2000
// Until a WELCOME says otherwise (and for a field it leaves 0): the
// broker's own defaults.
#define DEFAULT_HEARTBEAT_MS 1000
#define DEFAULT_LEASE_MS 10000
#define DEFAULT_MAX_OUTPUT (1024 * 1024)

typedef struct {
    uint64_t token;
    int64_t plan;
    char *task;
    bool finished;             // its RESULT is in the outbox
    bool stopping;             // STOP received: discard what it produces
    bool release;              // killed to leave: report it released
    bool prompt;               // a prompt task: its child is a model call
    uint8_t *result;           // encoded RESULT while finished (owned)
    size_t result_len;
    int64_t sent_ms;           // last send of the RESULT (monotonic)
    int64_t started_wall;      // when it started (wall ms)
    uint64_t tail_sent;        // stdout bytes it had written at the last
                               // TAIL (sent only when this moves)
    char *dir;                 // the attempt's directory, removed when the
                               // attempt ends (owned)
} lease_t;

struct drone {
    const drone_config_t *cfg;
    keys_client_t keys;
    void *ctx;
    void *sock;                // DEALER, replaced on reconnect
    void *mon;                 // its socket monitor (PAIR)
    bool refusal_logged;       // a refusal (handshake, FORBIDDEN) was reported
    runner_t *runner;
    char exe[PATH_MAX];        // this program, for prompt tasks' argv[0]
    char instance[33];         // random hex, new per process
    char *secret;              // session secret from WELCOME (owned; in
                               // memory only: never in a file or the
                               // environment a task can see)
    bool ack_due;              // a TASK arrived: heartbeat now, so the
                               // broker sees its lease confirmed
    char host[256];
    proto_strv_t tags;
    lease_t *leases;
    size_t n_leases;
    uint64_t next_req;
    bool welcomed;             // WELCOME seen on this socket
    bool ever_welcomed;
    int64_t hello_sent_ms;
    int64_t last_heard_ms;     // last message from the broker
    int64_t next_hb_ms;
    int64_t next_tail_ms;      // when running tasks' tails may go again
    int64_t heartbeat_ms;      // from WELCOME
    int64_t lease_ms;          // from WELCOME
    size_t max_output;         // from WELCOME
    int64_t reconnect_ms;      // current backoff
    bool draining;
    int64_t drain_deadline_ms;
    bool bye_sent;
    bool bye_acked;
    int64_t bye_sent_ms;
    confine_t confine;         // task user, isolation mode, scratch base
    prompt_model_t model;      // the model prompt tasks call, if any
    struct pollfd *pfds;       // the runner's descriptors, grown on demand
    zmq_pollitem_t *items;     // [0] the socket, then one per pfds entry
    size_t poll_cap;           // entries allocated in pfds (items: + 1)
};

static void
s_hex_random(char *out, size_t bytes)
{
    uint8_t buf[32];
    if (getrandom(buf, bytes, 0) != (ssize_t) bytes) {
        for (size_t i = 0; i < bytes; i++) {
            buf[i] = (uint8_t) (rand() ^ getpid());
        }
    }
    for (size_t i = 0; i < bytes; i++) {
        sprintf(out + 2 * i, "%02x", buf[i]);
    }
}

static void
s_parse_tags(drone_t *d, const char *csv)
{
    char *copy = xstrdup(csv ? csv : "");
    char *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ') {
            t++;
        }
        if (*t) {
            proto_strv_push(&d->tags, t);
        }
    }
    free(copy);
}

static bool
s_has_tag(const drone_t *d, const char *tag)
{
    for (size_t i = 0; i < d->tags.count; i++) {
        if (strcmp(d->tags.items[i], tag) == 0) {
            return true;
        }
    }
    return false;
}

// A drone with a model offers "model" and "model:NAME" (when that fits
// the tag limits), the tags a prompt task implies (common/workplan.h).
static void
s_model_tags(drone_t *d)
{
    if (!d->model.on) {
        return;
    }
    char *named = xasprintf(WORKPLAN_MODEL_TAG ":%s", d->model.model);
    const char *tags[] = {WORKPLAN_MODEL_TAG, named};
    for (size_t i = 0; i < 2; i++) {
        if (strlen(tags[i]) > PROTO_MAX_TAG_LEN) {
            log_warn(LOG, "tag '%s' is longer than %d bytes: not offered; "
                          "prompt tasks naming model '%s' will not come here",
                     tags[i], PROTO_MAX_TAG_LEN, d->model.model);
        } else if (s_has_tag(d, tags[i])) {
            continue;
        } else if (d->tags.count >= PROTO_MAX_TAGS) {
            log_warn(LOG, "tag '%s' not offered: --tags already holds the "
                          "%d a drone may offer", tags[i], PROTO_MAX_TAGS);
        } else {
            proto_strv_push(&d->tags, tags[i]);
        }
    }
    free(named);
}

static int
s_setopts(drone_t *d)
{
    int linger = 0, hs = 5000, ivl = RECONNECT_MIN_MS, ivl_max = 2000;
    int64_t maxmsg = 64 * 1024 * 1024 + 1024;
    void *s = d->sock;
    if (zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger) < 0 ||
        zmq_setsockopt(s, ZMQ_HANDSHAKE_IVL, &hs, sizeof hs) < 0 ||
        zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl) < 0 ||
        zmq_setsockopt(s, ZMQ_RECONNECT_IVL_MAX, &ivl_max,
                       sizeof ivl_max) < 0 ||
        zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) < 0 ||
        zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, d->keys.broker_z85, 40) < 0 ||
        zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, d->keys.public_z85, 40) < 0 ||
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, d->keys.secret_z85, 40) < 0) {
        return -1;
    }
    return 0;
}

static int
s_socket(drone_t *d, char *err, size_t errlen)
{
    d->sock = zmq_socket(d->ctx, ZMQ_DEALER);
    d->mon = d->sock ? wire_monitor_start(d->ctx, d->sock, WIRE_MONITOR_ALL)
                     : NULL;
    if (!d->sock || s_setopts(d) < 0 ||
        zmq_connect(d->sock, d->cfg->broker) < 0) {
        snprintf(err, errlen, "cannot connect to '%s': %s", d->cfg->broker,
                 zmq_strerror(errno));
        if (d->sock) {
            wire_monitor_stop(d->sock, &d->mon);
            zmq_close(d->sock);
            d->sock = NULL;
        }
        return -1;
    }
    return 0;
}

// Each running task holds three descriptors here (its stdout and stderr
// pipes, its init's report pipe), and a distribution's default soft limit
// of 1024 would fail tasks past about 300 slots: raise the soft limit to
// the hard one, and say so when even that is short of what the slots need.
// This program's file, read now: a task's /proc/self/exe is its init's
// (waggle-task-init), not the drone's.  /proc/self/exe if unreadable.
static void
s_find_exe(drone_t *d)
{
    ssize_t n = readlink("/proc/self/exe", d->exe, sizeof d->exe - 1);
    if (n <= 0) {
        snprintf(d->exe, sizeof d->exe, "%s", PROMPT_EXE);
        return;
    }
    d->exe[n] = '\0';
}

// Which init confined tasks get: the small program, or (not installed,
// or inits in a user namespace) a fork of this drone.
static void
s_log_init(const runner_t *r)
{
    const char *init = runner_init_path(r);
    if (init) {
        log_info(LOG, "each task's init is '%s'", init);
    } else {
        log_info(LOG, "each task's init is a fork of the drone (slower per "
                      "task): no %s beside it, or not root", RUNNER_INIT_NAME);
    }
}

static void
s_nofile_for(int64_t slots)
{
    uint64_t have = fdlimit_raise();
    uint64_t want = (uint64_t) slots * 3 + 256;
    log_info(LOG, "open files: up to %llu", (unsigned long long) have);
    if (have < want) {
        log_warn(LOG, "only %llu open files allowed (hard limit): about "
                      "%llu of the %lld slots can run at once; raise the "
                      "limit (ulimit -n, systemd LimitNOFILE=)",
                 (unsigned long long) have,
                 (unsigned long long) (have > 256 ? (have - 256) / 3 : 0),
                 (long long) slots);
    }
}

int
drone_open(drone_t **out, const drone_config_t *cfg, char *err,
           size_t errlen)
{
    drone_t *d = xcalloc(1, sizeof *d);
    d->cfg = cfg;
    if (keys_load_client(cfg->keys, KEYS_ROLE_DRONE, &d->keys, err, errlen) <
        0) {
        free(d);
        return -1;
    }
    s_hex_random(d->instance, 16);
    gethostname(d->host, sizeof d->host - 1);
    if (prompt_model_open(&d->model, cfg->model_api, cfg->model_url,
                          cfg->model, cfg->model_key_file,
                          cfg->model_timeout_s, err, errlen) < 0) {
        free(d);
        return -1;
    }
    s_parse_tags(d, cfg->tags);
    s_model_tags(d);
    d->heartbeat_ms = DEFAULT_HEARTBEAT_MS;
    d->lease_ms = DEFAULT_LEASE_MS;
    d->max_output = DEFAULT_MAX_OUTPUT;
    d->reconnect_ms = RECONNECT_MIN_MS;
    if (confine_open(&d->confine, cfg, err, errlen) < 0) {
        proto_strv_release(&d->tags);
        prompt_model_close(&d->model);
        free(d);
        return -1;
    }
    s_nofile_for(cfg->slots);
    s_find_exe(d);
    d->runner = runner_new(KILL_GRACE_MS);
    d->ctx = zmq_ctx_new();
    int rc = runner_set_mode(d->runner, d->confine.mode);
    if (rc < 0) {
        snprintf(err, errlen, "cannot set up task isolation: %s",
                 strerror(errno));
    } else {
        s_log_init(d->runner);
    }
    if (rc < 0 || s_socket(d, err, errlen) < 0) {
        runner_destroy(&d->runner);
        zmq_ctx_term(d->ctx);
        confine_close(&d->confine);
        proto_strv_release(&d->tags);
        prompt_model_close(&d->model);
        free(d);
        return -1;
    }
    *out = d;
    return 0;
}

static void
s_lease_free(lease_t *l)
{
    free(l->task);
    free(l->result);
    attempt_remove_dir(l->dir);
    free(l->dir);
}

void
drone_destroy(drone_t **self_p)
{
    drone_t *d = *self_p;
    if (!d) {
        return;
    }
    runner_destroy(&d->runner);
    for (size_t i = 0; i < d->n_leases; i++) {
        s_lease_free(&d->leases[i]);
    }
    free(d->leases);
    free(d->secret);
    proto_strv_release(&d->tags);
    free(d->pfds);
    free(d->items);
    if (d->sock) {
        wire_monitor_stop(d->sock, &d->mon);
        zmq_close(d->sock);
    }
    zmq_ctx_term(d->ctx);
    confine_close(&d->confine);
    prompt_model_close(&d->model);
    free(d);
    *self_p = NULL;
}

// --- leases -----------------------------------------------------------------

static lease_t *
s_lease(drone_t *d, uint64_t token)
{
    for (size_t i = 0; i < d->n_leases; i++) {
        if (d->leases[i].token == token) {
            return &d->leases[i];
        }
    }
    return NULL;
}

static lease_t *
s_lease_add(drone_t *d, uint64_t token, int64_t plan, const char *task)
{
    d->leases = xrealloc(d->leases, (d->n_leases + 1) * sizeof *d->leases);
    lease_t *l = &d->leases[d->n_leases++];
    memset(l, 0, sizeof *l);
    l->token = token;
    l->plan = plan;
    l->task = xstrdup(task);
    return l;
}

static void
s_lease_drop(drone_t *d, lease_t *l)
{
    s_lease_free(l);
    size_t i = (size_t) (l - d->leases);
    d->leases[i] = d->leases[--d->n_leases];
}

// --- sending ----------------------------------------------------------------

static void
s_send(drone_t *d, proto_msg_t **m, bool dontwait)
{
    if ((*m)->req == 0) {
        (*m)->req = ++d->next_req;
    }
    if (wire_send(d->sock, NULL, m, dontwait) < 0 && errno != EAGAIN) {
        log_warn(LOG, "send failed: %s", zmq_strerror(errno));
    }
}

static void
s_send_hello(drone_t *d, int64_t now)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_HELLO);
    proto_hello_t *h = &m->u.hello;
    h->instance = xstrdup(d->instance);
    h->host = xstrdup(d->host);
    h->version = xstrdup(WAGGLE_VERSION);
    h->slots = (uint32_t) d->cfg->slots;
    h->draining = d->draining;
    h->secret = d->secret ? xstrdup(d->secret) : NULL;
    for (size_t i = 0; i < d->tags.count; i++) {
        proto_strv_push(&h->tags, d->tags.items[i]);
    }
    h->leases = xcalloc(d->n_leases + 1, sizeof *h->leases);
    for (size_t i = 0; i < d->n_leases; i++) {
        lease_t *l = &d->leases[i];
        if (l->stopping && !l->release) {
            continue;
        }
        proto_lease_t *pl = &h->leases[h->n_leases++];
        pl->plan = l->plan;
        pl->task = xstrdup(l->task);
        pl->token = l->token;
        pl->finished = l->finished;
    }
    s_send(d, &m, true);
    d->hello_sent_ms = now;
}

static void
s_send_heartbeat(drone_t *d)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_HEARTBEAT);
    proto_heartbeat_t *hb = &m->u.heartbeat;
    hb->tokens = xcalloc(d->n_leases + 1, sizeof *hb->tokens);
    for (size_t i = 0; i < d->n_leases; i++) {
        if (!d->leases[i].stopping || d->leases[i].release) {
            hb->tokens[hb->n_tokens++] = d->leases[i].token;
        }
    }
    // Never queued: a heartbeat that cannot go now is worthless later.
    s_send(d, &m, true);
}

// Every PROTO_TAIL_MS at most, each running task whose stdout grew sends
// its last PROTO_TAIL_MAX bytes (TAIL), for `output --follow`.  Like a
// heartbeat it is never queued: a tail that cannot go now is stale later.
static void
s_send_tails(drone_t *d, int64_t now)
{
    if (now < d->next_tail_ms) {
        return;
    }
    d->next_tail_ms = now + PROTO_TAIL_MS;
    uint8_t buf[PROTO_TAIL_MAX];
    for (size_t i = 0; i < d->n_leases; i++) {
        lease_t *l = &d->leases[i];
        size_t len;
        uint64_t total;
        if (l->finished || l->stopping ||
            !runner_peek(d->runner, l->token, buf, sizeof buf, &len,
                         &total) ||
            total == l->tail_sent) {
            continue;
        }
        proto_msg_t *m = proto_msg_new(PROTO_MSG_TAIL);
        m->u.tail.token = l->token;
        m->u.tail.total = total;
        proto_bytes_set(&m->u.tail.data, buf, len);
        s_send(d, &m, true);
        l->tail_sent = total;
    }
}

static void
s_send_result(drone_t *d, lease_t *l, int64_t now)
{
    if (wire_send_raw(d->sock, NULL, l->result, l->result_len, true) == 0) {
        l->sent_ms = now;
    }
}

static void
s_resend_outbox(drone_t *d, int64_t now, bool all)
{
    for (size_t i = 0; i < d->n_leases; i++) {
        lease_t *l = &d->leases[i];
        if (l->finished && (all || now - l->sent_ms >= 2 * d->heartbeat_ms)) {
            s_send_result(d, l, now);
        }
    }
}

static void
s_reconnect(drone_t *d, int64_t now)
{
    char err[256];
    wire_monitor_stop(d->sock, &d->mon);
    zmq_close(d->sock);
    d->sock = NULL;
    d->welcomed = false;
    if (s_socket(d, err, sizeof err) < 0) {
        log_error(LOG, "%s", err);
        return;
    }
    s_send_hello(d, now);
    // Backoff, but always below half a lease so a broker that comes back
    // hears from us before our leases lapse.
    int64_t cap = d->lease_ms / 2 - 1;
    d->reconnect_ms = d->reconnect_ms * 2 > cap ? cap : d->reconnect_ms * 2;
    if (d->reconnect_ms < RECONNECT_MIN_MS) {
        d->reconnect_ms = RECONNECT_MIN_MS;
    }
}

// --- finishing --------------------------------------------------------------

// Puts a RESULT for l into the outbox and sends it.
static void
s_finish(drone_t *d, lease_t *l, proto_msg_t **res, int64_t now)
{
    (*res)->req = ++d->next_req;
    proto_result_t *pr = &(*res)->u.result;
    pr->plan = l->plan;
    pr->task = xstrdup(l->task);
    pr->token = l->token;
    pr->started_ms = l->started_wall;
    proto_encode(*res, &l->result, &l->result_len);
    log_info(LOG, "task '%s' of plan %lld: %s%s%s", l->task,
             (long long) l->plan, proto_outcome_name(pr->outcome),
             pr->error ? ": " : "", pr->error ? pr->error : "");
    proto_msg_destroy(res);
    l->finished = true;
    // Result first: removing a big tree (a build's objects) takes about a
    // second per 100,000 files, and the dependents wait for the result.
    s_send_result(d, l, now);
    attempt_remove_dir(l->dir);
    xfree(&l->dir);
}

// An attempt that failed before it could run.
static void
s_fail_early(drone_t *d, lease_t *l, char **why, int64_t now)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_RESULT);
    m->u.result.outcome = PROTO_OUTCOME_FAILED;
    m->u.result.exit_code = -1;
    m->u.result.error = *why;
    *why = NULL;
    s_finish(d, l, &m, now);
}

// The stderr tail kept: --stderr-cap, but never more than the broker's
// output cap, so that a RESULT always fits in the broker's frame limit.
static size_t
s_err_cap(const drone_t *d)
{
    size_t cap = (size_t) d->cfg->err_cap;
    return cap < d->max_output ? cap : d->max_output;
}

static void
s_on_done(drone_t *d, runner_result_t *r, int64_t now)
{
    lease_t *l = s_lease(d, r->id);
    if (!l) {
        return;
    }
    if (l->stopping && !l->release) {
        s_lease_drop(d, l);  // STOPped: the broker wants nothing back
        return;
    }
    proto_msg_t *m = proto_msg_new(PROTO_MSG_RESULT);
    attempt_result(&m->u.result, r, l->release);
    if (l->prompt) {
        prompt_result(&m->u.result);
    }
    s_finish(d, l, &m, now);
}

// A prompt task runs this program as "model-call" with its request on
// stdin (prompt.h); anything else of the attempt is a run task's.
static char *
s_prompt_spec(drone_t *d, const proto_task_t *t, runner_spec_t *spec,
              char *const *argv)
{
    char *why = NULL;
    if (!d->model.on) {
        return xstrdup("this drone has no model for prompt tasks "
                       "(--model-url)");
    }
    int fd = prompt_request_fd(&d->model, t, &why);
    if (fd < 0) {
        return why;
    }
    spec->argv = argv;
    spec->has_stdin = true;
    spec->stdin_fd = fd;
    if (spec->err_cap < PROMPT_ERR_CAP) {
        spec->err_cap = PROMPT_ERR_CAP;
    }
    return NULL;
}

static void
s_start(drone_t *d, lease_t *l, const proto_task_t *t, int64_t now)
{
    attempt_t a = {0};
    attempt_opts_t opts = confine_attempt_opts(&d->confine);
    char *why = attempt_prepare(&a, t, &opts);
    l->dir = a.dir;
    a.dir = NULL;
    l->prompt = t->kind == PROTO_KIND_PROMPT;
    char *prompt_argv[] = {d->exe, (char *) PROMPT_MODE, NULL};
    const char *cwd = t->cwd ? t->cwd
                      : d->cfg->workdir && *d->cfg->workdir ? d->cfg->workdir
                                                            : NULL;
    runner_spec_t spec = {
        .argv = a.argv, .envp = a.envp, .cwd = cwd,
        .deadline_ms = t->timeout_s ? now + t->timeout_s * 1000LL : 0,
        .out_cap = d->max_output, .err_cap = s_err_cap(d)};
    if (!why && l->prompt) {
        why = s_prompt_spec(d, t, &spec, prompt_argv);
    }
    if (!why) {
        confine_spec(&d->confine, t, &spec);
        runner_start(d->runner, t->token, &spec, now, &why);
    }
    if (spec.has_stdin) {
        close(spec.stdin_fd);  // the child has its own
    }
    if (why) {
        s_fail_early(d, l, &why, now);
    }
    attempt_release(&a);
}

// --- messages from the broker -----------------------------------------------

static void
s_on_task(drone_t *d, const proto_task_t *t, int64_t now)
{
    if (s_lease(d, t->token)) {
        return;  // a repeat of a TASK we already hold
    }
    lease_t *l = s_lease_add(d, t->token, t->plan, t->task);
    l->started_wall = clock_wall_ms();
    d->ack_due = true;
    log_info(LOG, "task '%s' of plan %lld (token %llu, attempt %u)", t->task,
             (long long) t->plan, (unsigned long long) t->token, t->attempt);
    if (d->draining) {
        proto_msg_t *m = proto_msg_new(PROTO_MSG_RESULT);
        m->u.result.outcome = PROTO_OUTCOME_RELEASED;
        m->u.result.exit_code = -1;
        m->u.result.error = xstrdup("the drone is leaving");
        s_finish(d, l, &m, now);
        return;
    }
    s_start(d, l, t, now);
}

static void
s_on_stop(drone_t *d, const proto_stop_t *s, int64_t now)
{
    lease_t *l = s_lease(d, s->token);
    if (!l) {
        return;
    }
    log_info(LOG, "task '%s' of plan %lld (token %llu) stopped by the "
                  "broker: %s", l->task, (long long) l->plan,
             (unsigned long long) s->token, s->reason ? s->reason : "");
    if (runner_has(d->runner, s->token)) {
        l->stopping = true;
        l->release = false;
        runner_kill(d->runner, s->token, now);
    } else if (l->finished) {
        // Keep the RESULT until the broker answers it (stale, most likely):
        // a result is dropped only on accepted, duplicate or stale.
        l->stopping = true;
        l->release = false;
        s_send_result(d, l, now);
    } else {
        s_lease_drop(d, l);
    }
}

static void
s_on_ack(drone_t *d, const proto_result_ack_t *a)
{
    lease_t *l = s_lease(d, a->token);
    if (!l || !l->finished) {
        return;
    }
    if (a->status == PROTO_ACK_ERROR) {
        log_warn(LOG, "broker refused the result of '%s': %s; will resend",
                 l->task, a->message ? a->message : "");
        return;
    }
    if (a->status == PROTO_ACK_STALE) {
        log_warn(LOG, "result of '%s' (token %llu) is stale: the lease had "
                      "lapsed and the task was given to another drone; "
                      "discarded", l->task, (unsigned long long) a->token);
    } else {
        log_debug(LOG, "result of '%s' %s", l->task,
                  proto_ack_name(a->status));
    }
    s_lease_drop(d, l);
}

static void
s_on_welcome(drone_t *d, const proto_welcome_t *w, int64_t now)
{
    d->heartbeat_ms =
        w->heartbeat_ms ? w->heartbeat_ms : DEFAULT_HEARTBEAT_MS;
    d->lease_ms = w->lease_ms ? w->lease_ms : DEFAULT_LEASE_MS;
    d->max_output = w->max_output_bytes ? (size_t) w->max_output_bytes
                                        : DEFAULT_MAX_OUTPUT;
    if (!d->ever_welcomed || !d->welcomed) {
        log_info(LOG, "connected to %s as '%s' (instance %s, %lld slots)",
                 d->cfg->broker, d->keys.name, d->instance,
                 (long long) d->cfg->slots);
    }
    if (w->secret) {
        free(d->secret);
        d->secret = xstrdup(w->secret);
    }
    d->welcomed = d->ever_welcomed = true;
    d->refusal_logged = false;
    d->reconnect_ms = RECONNECT_MIN_MS;
    d->next_hb_ms = now + d->heartbeat_ms;
    // A restarted broker has no tails: send each running task's again.
    for (size_t i = 0; i < d->n_leases; i++) {
        d->leases[i].tail_sent = 0;
    }
    s_resend_outbox(d, now, true);
}

static void
s_on_error(drone_t *d, const proto_error_body_t *e, int64_t now)
{
    if (e->code == PROTO_E_HELLO_REQUIRED) {
        // The broker does not know this session (it restarted, or the
        // connection was replaced): introduce ourselves again.
        if (now - d->hello_sent_ms > 200) {
            log_info(LOG, "broker asks for HELLO; reconnecting session");
            d->welcomed = false;
            s_send_hello(d, now);
        }
        return;
    }
    if (e->code == PROTO_E_FORBIDDEN && !d->welcomed && e->message &&
        strstr(e->message, "session secret")) {
        // Our HELLO was refused: the WELCOME with this instance's secret
        // was lost (or the broker holds another).  The instance is
        // unusable; go on as a new one.  Its leases lapse at the broker.
        log_warn(LOG, "broker refused HELLO: %s; continuing as a new "
                      "instance", e->message);
        s_hex_random(d->instance, 16);
        free(d->secret);
        d->secret = NULL;
        s_send_hello(d, now);
        return;
    }
    if (e->code == PROTO_E_FORBIDDEN) {
        // A revoked key hears this for every message: say it once.
        if (!d->refusal_logged) {
            log_error(LOG, "broker error FORBIDDEN: %s (repeats are not "
                           "logged)", e->message ? e->message : "");
        }
        d->refusal_logged = true;
        return;
    }
    log_warn(LOG, "broker error %s: %s", proto_status_name(e->code),
             e->message ? e->message : "");
}

static void
s_on_message(drone_t *d, proto_msg_t *m, int64_t now)
{
    d->last_heard_ms = now;
    switch (m->cmd) {
    case PROTO_MSG_WELCOME:
        s_on_welcome(d, &m->u.welcome, now);
        break;
    case PROTO_MSG_TASK:
        s_on_task(d, &m->u.task, now);
        break;
    case PROTO_MSG_STOP:
        s_on_stop(d, &m->u.stop, now);
        break;
    case PROTO_MSG_RESULT_ACK:
        s_on_ack(d, &m->u.result_ack);
        break;
    case PROTO_MSG_ERROR:
        s_on_error(d, &m->u.error, now);
        break;
    case PROTO_MSG_OK:
        if (d->bye_sent) {
            d->bye_acked = true;
        }
        break;
    default:
        break;  // HEARTBEAT: liveness only
    }
}

// --- the loop ---------------------------------------------------------------

static void
s_read_socket(drone_t *d, int64_t now)
{
    proto_limits_t lim;
    proto_limits_default(&lim);
    for (;;) {
        proto_msg_t *m = NULL;
        proto_error_t err;
        wire_rc_t rc = wire_recv(d->sock, false, &lim, NULL, NULL, NULL, &m,
                                 &err);
        if (rc == WIRE_AGAIN || rc == WIRE_ERR) {
            return;
        }
        if (rc == WIRE_BAD) {
            log_warn(LOG, "malformed message from the broker: %s",
                     err.message);
            continue;
        }
        s_on_message(d, m, now);
        proto_msg_destroy(&m);
    }
}

// Says, once per refusal streak, why the broker does not answer: libzmq
// would otherwise retry a refused handshake in silence.
static void
s_read_monitor(drone_t *d)
{
    int value = 0;
    wire_event_t ev;
    while ((ev = wire_monitor_read(d->mon, &value)) != WIRE_EV_NONE) {
        if (ev == WIRE_EV_HANDSHAKE_OK) {
            d->refusal_logged = false;
        } else if (ev == WIRE_EV_AUTH_REFUSED && !d->refusal_logged) {
            log_error(LOG, "the broker at %s refused key '%s' (ZAP status "
                           "%d): it is not in the broker's allow list for "
                           "role drone, or was revoked (on the broker host: "
                           "waggle-architect keygen KEYDIR --list; a key "
                           "added there is admitted after kill -HUP of the "
                           "broker)", d->cfg->broker, d->keys.name, value);
            d->refusal_logged = true;
        } else if (ev == WIRE_EV_HANDSHAKE_FAILED && !d->refusal_logged) {
            log_error(LOG, "the CurveZMQ handshake with %s failed: either "
                           "broker.key in the drone's key directory is not "
                           "this broker's public key, or the broker does not "
                           "accept key '%s'", d->cfg->broker, d->keys.name);
            d->refusal_logged = true;
        }
    }
}

static void
s_reap(drone_t *d, int64_t now)
{
    runner_result_t *done = NULL;
    size_t n = runner_step(d->runner, now, &done);
    for (size_t i = 0; i < n; i++) {
        s_on_done(d, &done[i], now);
        runner_result_release(&done[i]);
    }
    free(done);
}

static void
s_timers(drone_t *d, int64_t now)
{
    int64_t silent = now - (d->welcomed ? d->last_heard_ms
                                        : d->hello_sent_ms);
    int64_t limit = d->welcomed ? PROTO_LIVENESS_BEATS * d->heartbeat_ms
                                : (d->reconnect_ms > HELLO_TIMEOUT_MS
                                       ? d->reconnect_ms
                                       : HELLO_TIMEOUT_MS);
    if (silent > limit) {
        log_warn(LOG, "no answer from broker %s for %lld ms; reconnecting",
                 d->cfg->broker, (long long) silent);
        s_reconnect(d, now);
        return;
    }
    if (d->welcomed && d->ack_due) {
        s_send_heartbeat(d);
    }
    d->ack_due = false;
    if (d->welcomed && now >= d->next_hb_ms) {
        s_send_heartbeat(d);
        s_resend_outbox(d, now, false);
        d->next_hb_ms = now + d->heartbeat_ms;
    }
    if (d->welcomed) {
        s_send_tails(d, now);
    }
}

static void
s_begin_drain(drone_t *d, int64_t now)
{
    d->draining = true;
    d->drain_deadline_ms = now + d->cfg->drain_s * 1000;
    log_info(LOG, "draining: %zu tasks running, waiting up to %lld s",
             runner_count(d->runner), (long long) d->cfg->drain_s);
    proto_msg_t *m = proto_msg_new(PROTO_MSG_UPDATE);
    m->u.update.slots = (uint32_t) d->cfg->slots;
    m->u.update.draining = true;
    s_send(d, &m, true);
}

// Kills what still runs; each is reported as released (handed back).
static void
s_hand_back(drone_t *d, int64_t now)
{
    for (size_t i = 0; i < d->n_leases; i++) {
        lease_t *l = &d->leases[i];
        if (!l->finished && !l->release && runner_has(d->runner, l->token)) {
            l->stopping = true;
            l->release = true;
            runner_kill(d->runner, l->token, now);
        }
    }
}

// Returns true when the drain is complete and the loop may end.
static bool
s_drain_step(drone_t *d, int64_t now, int stop)
{
    if (stop >= 2 || now >= d->drain_deadline_ms) {
        s_hand_back(d, now);
    }
    if (runner_count(d->runner) > 0) {
        return false;
    }
    bool outbox = false;
    for (size_t i = 0; i < d->n_leases; i++) {
        outbox |= d->leases[i].finished;
    }
    int64_t hard = d->drain_deadline_ms + 10 * d->heartbeat_ms;
    if (outbox && now < hard && stop < 3) {
        return false;
    }
    if (outbox) {
        log_warn(LOG, "leaving with unacknowledged results; the broker will "
                      "expire those leases and run the tasks again");
    }
    if (!d->bye_sent) {
        proto_msg_t *m = proto_msg_new(PROTO_MSG_BYE);
        s_send(d, &m, true);
        d->bye_sent = true;
        d->bye_sent_ms = now;
    }
    return d->bye_acked || now - d->bye_sent_ms > BYE_WAIT_MS;
}

static int64_t
s_poll_timeout(drone_t *d, int64_t now)
{
    int64_t next = now + 100;
    if (d->welcomed && d->next_hb_ms < next) {
        next = d->next_hb_ms;
    }
    if (d->welcomed && d->n_leases > 0 && d->next_tail_ms < next) {
        next = d->next_tail_ms;
    }
    int64_t r = runner_next_ms(d->runner);
    if (r >= 0 && r < next) {
        next = r;
    }
    return next > now ? next - now : 0;
}

// Two pipes per running task plus the runner's own: the arrays grow with
// the slots in use (--slots allows 1024), never a fixed size.
static void
s_poll(drone_t *d, int64_t timeout)
{
    size_t n = runner_pollfds(d->runner, d->pfds, d->poll_cap);
    if (n > d->poll_cap) {
        d->poll_cap = n * 2;
        d->pfds = xrealloc(d->pfds, d->poll_cap * sizeof *d->pfds);
        d->items = xrealloc(d->items, (d->poll_cap + 1) * sizeof *d->items);
        n = runner_pollfds(d->runner, d->pfds, d->poll_cap);
    }
    if (!d->items) {
        d->items = xcalloc(1, sizeof *d->items);
    }
    d->items[0] = (zmq_pollitem_t){d->sock, 0, ZMQ_POLLIN, 0};
    for (size_t i = 0; i < n; i++) {
        d->items[i + 1] = (zmq_pollitem_t){NULL, d->pfds[i].fd, ZMQ_POLLIN,
                                           0};
    }
    zmq_poll(d->items, (int) n + 1, (long) timeout);
    // So the step reads only what is ready (all 0 after a timeout or an
    // interrupt: the pipes stay readable for the next poll).
    for (size_t i = 0; i < n; i++) {
        d->pfds[i].revents = d->items[i + 1].revents;
    }
    runner_ready(d->runner, d->pfds, n);
}

int
drone_run(drone_t *d, volatile sig_atomic_t *stop)
{
    int64_t now = clock_mono_ms();
    s_send_hello(d, now);
    d->last_heard_ms = now;
    for (;;) {
        now = clock_mono_ms();
        if (*stop && !d->draining) {
            s_begin_drain(d, now);
        }
        if (d->draining && s_drain_step(d, now, *stop)) {
            break;
        }
        s_poll(d, s_poll_timeout(d, now));
        now = clock_mono_ms();
        // Report what finished before reading what the broker said
        // meanwhile: a late result must reach the broker to be fenced
        // there (answered stale), not be dropped here on a queued STOP.
        s_reap(d, now);
        s_read_monitor(d);
        s_read_socket(d, now);
        s_timers(d, now);
    }
    log_info(LOG, "stopped");
    return 0;
}
