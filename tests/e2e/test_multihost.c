// e2e multihost: the README's "On several hosts" steps, followed literally.
//
// On the broker host: `waggle-architect keygen keys --add drone hostB`
// prints a bundle directory as its last line; ONLY that directory is copied
// to "host B" (a fresh directory the drone runs in), and the drone starts
// there with `--keys <copy> --broker <endpoint>`.  It runs work, `status`
// shows it by key name, host, short instance and its tasks; then
// `keygen keys --revoke hostB` and SIGHUP cut it off at once, without a
// broker restart: its task goes to another drone without using an attempt,
// and the drone gets FORBIDDEN.  A key added after the broker started is
// refused until SIGHUP and accepted after it; a reload that fails keeps the
// old lists.
#include "common/clock.h"
#include "common/keys.h"
#include "common/xalloc.h"
#include "proto/proto.h"
#include "tests/harness/proc.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include <signal.h>
#include <sys/stat.h>
#include <zmq.h>

// Runs `waggle-architect keygen ARGS...` (NULL-terminated).
static int
s_keygen(char **out, char **err, ...)
{
    char *argv[16] = {(char *) swarm_bin("waggle-architect"), "keygen"};
    int n = 2;
    va_list ap;
    va_start(ap, err);
    const char *a;
    while (n < 15 && (a = va_arg(ap, const char *)) != NULL) {
        argv[n++] = (char *) a;
    }
    va_end(ap);
    argv[n] = NULL;
    return proc_run(argv, 30000, out, err);
}

// The last non-empty line of text, into buf.
static void
s_last_line(const char *text, char *buf, size_t len)
{
    buf[0] = '\0';
    const char *end = text ? text + strlen(text) : NULL;
    while (end && end > text && end[-1] == '\n') {
        end--;
    }
    const char *start = end;
    while (start && start > text && start[-1] != '\n') {
        start--;
    }
    if (start) {
        snprintf(buf, len, "%.*s", (int) (end - start), start);
    }
}

// `keygen keys --add ROLE NAME`; the printed bundle directory into bundle.
static bool
s_add(swarm_t *s, const char *role, const char *name, char *bundle,
      size_t len)
{
    char *out = NULL, *err = NULL;
    int rc = s_keygen(&out, &err, s->keys, "--add", role, name, NULL);
    if (rc != 0) {
        fprintf(stderr, "keygen --add %s %s: %d: %s\n", role, name, rc, err);
    }
    s_last_line(out, bundle, len);
    free(out);
    free(err);
    return rc == 0 && bundle[0];
}

// Copies only the bundle to a fresh "host" directory, as scp -r would.
static void
s_copy_to_host(const char *bundle, const char *host_dir, const char *copy)
{
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp -rp '%s' '%s'", host_dir,
             bundle, copy);
    CHECK_INT(system(cmd), 0);
}

// Starts `waggle-drone --keys DIR --broker ENDPOINT --tags TAGS` with the
// host directory as its work directory; tracked by s for teardown.
static int
s_host_drone(swarm_t *s, const char *keys, const char *tags,
             const char *log)
{
    char *argv[] = {(char *) swarm_bin("waggle-drone"), "--keys",
                    (char *) keys, "--broker", s->endpoint, "--tags",
                    (char *) tags, "--slots", "2", NULL};
    s->drones[s->n_drones] = proc_spawn(argv, log, NULL);
    return s->n_drones++;
}

// The overview's drone with key name, or NULL (borrowed from ov).
static const jnode_t *
s_drone_named(const jnode_t *ov, const char *name)
{
    const jnode_t *drones = ov ? json_obj_get(ov, "drones") : NULL;
    for (size_t i = 0; drones && i < json_arr_size(drones); i++) {
        const jnode_t *d = json_arr_get(drones, i);
        const char *n = json_str(json_obj_get(d, "name"));
        if (n && strcmp(n, name) == 0) {
            return d;
        }
    }
    return NULL;
}


static int
s_count_lines(const char *path, const char *needle)
{
    char *text = t_read_file(path, NULL);
    int n = 0;
    for (const char *p = text; p && (p = strstr(p, needle)); p++) {
        n++;
    }
    free(text);
    return n;
}

static void
s_hup(swarm_t *s)
{
    CHECK_INT(kill(s->broker, SIGHUP), 0);
}

// The README's `kill -HUP $(cat keys/broker/broker.pid)`.
static void
s_hup_by_pid_file(swarm_t *s)
{
    char path[700];
    snprintf(path, sizeof path, "%s/broker/broker.pid", s->keys);
    char *text = t_read_file(path, NULL);
    long pid = text ? strtol(text, NULL, 10) : 0;
    free(text);
    CHECK_INT(pid, s->broker);
    if (pid == s->broker) {
        CHECK_INT(kill((pid_t) pid, SIGHUP), 0);
    }
}

// What host B received holds only its own key and the broker's public key.
static void
s_check_bundle(const char *copy)
{
    char path[1400];
    struct stat st;
    snprintf(path, sizeof path, "%s/drone/hostB.key_secret", copy);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    snprintf(path, sizeof path, "%s/drone/broker.key", copy);
    CHECK(stat(path, &st) == 0);
    snprintf(path, sizeof path, "%s/broker", copy);
    CHECK(stat(path, &st) != 0);
    snprintf(path, sizeof path, "%s/drone/drone.key_secret", copy);
    CHECK(stat(path, &st) != 0);
}

// Task "long" runs its first attempt for a long time, then succeeds at
// once: the second line in runs tells a rerun.
static char *
s_long_plan(const char *runs)
{
    return xasprintf(
        "{\"name\":\"cut\",\"tasks\":[{\"id\":\"long\",\"retries\":0,"
        "\"requires\":[\"shared\"],\"run\":[\"sh\",\"-c\","
        "\"n=$(cat '%s' 2>/dev/null | wc -l); echo x >> '%s'; "
        "[ $n -ge 1 ] && exit 0; sleep 600\"]}]}", runs, runs);
}

// Status (text and JSON) shows host B's drone by key name, host, short
// instance id, slots used/total, tags and the task it runs.
static void
s_check_status_shows(swarm_t *s, int64_t plan)
{
    jnode_t *ov = swarm_overview(s);
    const jnode_t *d = s_drone_named(ov, "hostB");
    REQUIRE(d);
    const char *instance = json_str(json_obj_get(d, "instance"));
    REQUIRE(instance && strlen(instance) >= 8);
    CHECK(json_str(json_obj_get(d, "host"))[0] != '\0');
    CHECK_INT(json_int(json_obj_get(d, "slots")), 2);
    CHECK_INT(json_int(json_obj_get(d, "leases")), 1);
    const jnode_t *tasks = json_obj_get(d, "tasks");
    REQUIRE(tasks && json_arr_size(tasks) == 1);
    const jnode_t *t = json_arr_get(tasks, 0);
    CHECK_INT(json_int(json_obj_get(t, "plan")), plan);
    CHECK_STR(json_str(json_obj_get(t, "task")), "long");
    char *out = NULL, want[64];
    CHECK_INT(swarm_arch(s, &out, NULL, "status", NULL), 0);
    snprintf(want, sizeof want, "%.8s", instance);
    CHECK_HAS(out, want);
    CHECK_HAS(out, "hostB");
    CHECK_HAS(out, "1/2");
    CHECK_HAS(out, "shared");
    snprintf(want, sizeof want, "%lld/long", (long long) plan);
    CHECK_HAS(out, want);
    free(out);
    json_destroy(&ov);
}

// Another drone that could take host B's task, then the README's
// revocation: keygen --revoke and SIGHUP.
static void
s_revoke_host_b(swarm_t *s, int64_t cut, const char *log)
{
    char state[32];
    swarm_drone(s, 1, "shared", NULL);
    REQUIRE(swarm_wait_named(s, "drone", true, -1, 15000));
    char *out = NULL;
    CHECK_INT(s_keygen(&out, NULL, s->keys, "--revoke", "hostB", NULL), 0);
    CHECK_HAS(out, "SIGHUP");
    free(out);
    int64_t hup_ms = clock_mono_ms();
    s_hup_by_pid_file(s);
    // Cut off at once: well inside the 30 s lease, the task reruns on the
    // other drone and the plan succeeds, having used one attempt.
    swarm_wait_plan(s, cut, 15, state, sizeof state);
    CHECK_STR(state, "succeeded");
    CHECK(clock_mono_ms() - hup_ms < 15000);
    jnode_t *st = swarm_status(s, cut);
    const jnode_t *t = st ? json_arr_get(json_obj_get(st, "tasks"), 0) : NULL;
    CHECK(t && json_int(json_obj_get(t, "attempts")) == 1);
    json_destroy(&st);
    CHECK(swarm_wait_log(log, "FORBIDDEN", "revoked", 10000));
    // Said once, not once per heartbeat.
    usleep(1000000);
    CHECK_INT(s_count_lines(log, "FORBIDDEN"), 1);
    CHECK(swarm_wait_named(s, "hostB", false, -1, 5000));
    char path[700];
    snprintf(path, sizeof path, "%s/broker.log", s->dir);
    CHECK(swarm_wait_log(path, "removed", "hostB", 5000));
}

static void
test_readme_multihost(void)
{
    swarm_t s;
    swarm_init(&s, 200, 30000);  // leases far longer than "at once"
    REQUIRE(swarm_broker(&s, NULL) == 0);
    pid_t broker = s.broker;
    char bundle[1024], host[1024], copy[1100], log[1100], runs[1100];
    REQUIRE(s_add(&s, "drone", "hostB", bundle, sizeof bundle));
    s_hup_by_pid_file(&s);
    snprintf(host, sizeof host, "%s/hostB-home", s.dir);
    snprintf(copy, sizeof copy, "%s/hostB-keys", host);
    s_copy_to_host(bundle, host, copy);
    s_check_bundle(copy);
    snprintf(log, sizeof log, "%s/hostB.log", s.dir);
    s_host_drone(&s, copy, "hostb,shared", log);
    REQUIRE(swarm_wait_named(&s, "hostB", true, -1, 15000));
    // A plan runs on host B.
    int64_t plan = swarm_submit(&s, "{\"name\":\"b\",\"tasks\":[{\"id\":"
                                    "\"t\",\"requires\":[\"hostb\"],\"run\":"
                                    "[\"echo\",\"from B\"]}]}");
    char state[32];
    swarm_wait_plan(&s, plan, 30, state, sizeof state);
    CHECK_STR(state, "succeeded");
    // Host B holds a long task; status shows it.
    snprintf(runs, sizeof runs, "%s/long.runs", s.dir);
    char *json = s_long_plan(runs);
    int64_t cut = swarm_submit(&s, json);
    free(json);
    REQUIRE(swarm_wait_lines(runs, 1, 15000));
    s_check_status_shows(&s, cut);
    s_revoke_host_b(&s, cut, log);
    // The same broker process throughout.
    CHECK(proc_alive(broker) && s.broker == broker);
    swarm_stop(&s);
}

static void
test_add_after_start_needs_sighup(void)
{
    swarm_t s;
    swarm_init(&s, 200, 3000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    char bundle[1024], copy[1100], log[1100], path[700];
    REQUIRE(s_add(&s, "drone", "late", bundle, sizeof bundle));
    snprintf(copy, sizeof copy, "%s/late-host/keys", s.dir);
    char host[1100];
    snprintf(host, sizeof host, "%s/late-host", s.dir);
    s_copy_to_host(bundle, host, copy);
    snprintf(log, sizeof log, "%s/late.log", s.dir);
    s_host_drone(&s, copy, "late", log);
    // Before SIGHUP the broker does not know the key.
    CHECK(swarm_wait_log(log, "refused key 'late'", NULL, 10000));
    CHECK(!swarm_wait_named(&s, "late", true, -1, 500));
    // A reload that fails keeps the old lists and says why.
    char bad[800];
    snprintf(bad, sizeof bad, "%s/broker/allow/drone/broken.key", s.keys);
    REQUIRE(t_write_file(bad, "not a certificate\n") == 0);
    s_hup(&s);
    snprintf(path, sizeof path, "%s/broker.log", s.dir);
    CHECK(swarm_wait_log(path, "broken.key", "old", 10000));
    CHECK(!swarm_wait_named(&s, "late", true, -1, 1000));
    unlink(bad);
    // Now it loads: the drone gets in without a broker restart.
    s_hup(&s);
    CHECK(swarm_wait_log(path, "added", "late", 10000));
    REQUIRE(swarm_wait_named(&s, "late", true, -1, 20000));
    int64_t plan = swarm_submit(&s, "{\"name\":\"l\",\"tasks\":[{\"id\":"
                                    "\"t\",\"requires\":[\"late\"],\"run\":"
                                    "[\"echo\",\"late\"]}]}");
    char state[32];
    swarm_wait_plan(&s, plan, 30, state, sizeof state);
    CHECK_STR(state, "succeeded");
    swarm_stop(&s);
}

static void
test_keygen_cli(void)
{
    char dir[700], *out = NULL, *err = NULL;
    snprintf(dir, sizeof dir, "%s/k", t_tmpdir());
    // No key set yet: --add says what to run first.
    CHECK(s_keygen(&out, &err, dir, "--add", "drone", "x", NULL) != 0);
    CHECK_HAS(err, "waggle-architect keygen");
    free(out);
    free(err);
    REQUIRE(s_keygen(NULL, NULL, dir, NULL) == 0);
    CHECK(s_keygen(NULL, &err, dir, "--add", "pilot", "x", NULL) == 64);
    CHECK_HAS(err, "pilot");
    free(err);
    CHECK_INT(s_keygen(NULL, NULL, dir, "--add", "submitter", "ci", NULL), 0);
    // Names are unique across roles.
    CHECK(s_keygen(NULL, &err, dir, "--add", "drone", "ci", NULL) != 0);
    CHECK_HAS(err, "'ci'");
    free(err);
    CHECK(s_keygen(NULL, &err, dir, "--add", "drone", "../x", NULL) != 0);
    free(err);
    out = NULL;
    CHECK_INT(s_keygen(&out, NULL, dir, "--list", "--json", NULL), 0);
    char jerr[128];
    jnode_t *root = out ? json_parse(out, strlen(out), jerr, sizeof jerr)
                        : NULL;
    const jnode_t *keys = root ? json_obj_get(root, "keys") : NULL;
    CHECK(keys && json_arr_size(keys) == 4);
    bool ci = false;
    for (size_t i = 0; keys && i < json_arr_size(keys); i++) {
        const jnode_t *k = json_arr_get(keys, i);
        if (strcmp(json_str(json_obj_get(k, "name")), "ci") == 0) {
            ci = strcmp(json_str(json_obj_get(k, "role")), "submitter") == 0;
        }
    }
    CHECK(ci);
    json_destroy(&root);
    free(out);
    out = NULL;
    CHECK_INT(s_keygen(&out, NULL, dir, "--revoke", "ci", NULL), 0);
    free(out);
    out = NULL;
    CHECK_INT(s_keygen(&out, NULL, dir, "--list", NULL), 0);
    CHECK_HAS(out, "revoked");
    free(out);
    // A revoked name stays taken.
    CHECK(s_keygen(NULL, NULL, dir, "--add", "submitter", "ci", NULL) != 0);
    CHECK(s_keygen(NULL, NULL, dir, "--revoke", "nobody", NULL) != 0);
}

// A DEALER speaking as the client key in bundle (role drone).
static void *
s_raw_drone(void *ctx, const swarm_t *s, const char *bundle)
{
    keys_client_t k;
    char err[1024];
    if (keys_load_client(bundle, KEYS_ROLE_DRONE, &k, err, sizeof err) < 0) {
        fprintf(stderr, "keys: %s\n", err);
        return NULL;
    }
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, k.broker_z85, 40);
    zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, k.public_z85, 40);
    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, k.secret_z85, 40);
    zmq_connect(sock, s->endpoint);
    return sock;
}

static void
s_send(void *sock, proto_msg_t **m)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    proto_encode(*m, &buf, &len);
    CHECK_INT(zmq_send(sock, buf, len, 0), (int) len);
    free(buf);
    proto_msg_destroy(m);
}

// The next message of command cmd within timeout_ms (others are skipped);
// NULL if none came.
static proto_msg_t *
s_expect(void *sock, proto_cmd_t cmd, int timeout_ms)
{
    zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
    int64_t end = clock_mono_ms() + timeout_ms;
    proto_limits_t lim;
    proto_limits_default(&lim);
    while (clock_mono_ms() < end) {
        if (zmq_poll(&item, 1, 100) <= 0) {
            continue;
        }
        zmq_msg_t z;
        zmq_msg_init(&z);
        if (zmq_msg_recv(&z, sock, 0) < 0) {
            zmq_msg_close(&z);
            continue;
        }
        proto_msg_t *m = NULL;
        proto_error_t perr;
        proto_decode(zmq_msg_data(&z), zmq_msg_size(&z), &lim, &m, &perr);
        zmq_msg_close(&z);
        if (m && m->cmd == cmd) {
            return m;
        }
        proto_msg_destroy(&m);
    }
    fprintf(stderr, "no %s in %d ms\n", proto_cmd_name(cmd), timeout_ms);
    return NULL;
}

// A raw drone session with the key in bundle that got WELCOME, or NULL.
// The reload that admits the key may not have happened yet: a refused
// handshake is retried on a fresh socket.
static void *
s_raw_welcomed(void *ctx, const swarm_t *s, const char *bundle)
{
    void *sock = NULL;
    proto_msg_t *m = NULL;
    int64_t end = clock_mono_ms() + 15000;
    while (!m && clock_mono_ms() < end) {
        zmq_close(sock);
        if (!(sock = s_raw_drone(ctx, s, bundle))) {
            return NULL;
        }
        m = proto_msg_new(PROTO_MSG_HELLO);
        m->req = 1;
        m->u.hello.instance = xstrdup("rawinstance0001");
        m->u.hello.host = xstrdup("raw-host");
        m->u.hello.slots = 1;
        proto_strv_push(&m->u.hello.tags, "raw");
        s_send(sock, &m);
        m = s_expect(sock, PROTO_MSG_WELCOME, 1000);
    }
    if (!m) {
        zmq_close(sock);
        return NULL;
    }
    proto_msg_destroy(&m);
    return sock;
}

static void
s_expect_revoked(void *sock, proto_msg_t **m)
{
    uint64_t req = (*m)->req;
    s_send(sock, m);
    proto_msg_t *e = s_expect(sock, PROTO_MSG_ERROR, 5000);
    REQUIRE(e);
    CHECK_INT(e->req, req);
    CHECK_INT(e->u.error.code, PROTO_E_FORBIDDEN);
    CHECK_HAS(e->u.error.message, "key 'raw' was revoked");
    proto_msg_destroy(&e);
}

// A live session of a revoked key: its lease is STOPped and released at
// the SIGHUP (no attempt used), and everything it sends afterwards on the
// same connection — a RESULT for that lease, a HEARTBEAT, a new HELLO —
// gets FORBIDDEN: ZAP alone would have let the session go on.
static void
test_revoked_session_forbidden(void)
{
    swarm_t s;
    swarm_init(&s, 200, 30000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    char bundle[1024];
    REQUIRE(s_add(&s, "drone", "raw", bundle, sizeof bundle));
    s_hup(&s);
    void *ctx = zmq_ctx_new();
    void *sock = s_raw_welcomed(ctx, &s, bundle);
    REQUIRE(sock);
    proto_msg_t *m = NULL, *task = NULL;
    int64_t plan = swarm_submit(&s, "{\"name\":\"r\",\"tasks\":[{\"id\":"
                                    "\"t\",\"requires\":[\"raw\"],\"run\":"
                                    "[\"true\"]}]}");
    task = s_expect(sock, PROTO_MSG_TASK, 10000);
    REQUIRE(task);
    uint64_t token = task->u.task.token;
    CHECK_INT(task->u.task.plan, plan);
    proto_msg_destroy(&task);

    char *out = NULL;
    CHECK_INT(s_keygen(&out, NULL, s.keys, "--revoke", "raw", NULL), 0);
    free(out);
    s_hup(&s);
    proto_msg_t *stop = s_expect(sock, PROTO_MSG_STOP, 10000);
    REQUIRE(stop);
    CHECK_INT(stop->u.stop.token, token);
    CHECK_STR(stop->u.stop.reason, "revoked");
    proto_msg_destroy(&stop);
    // The task is back to ready at once, its attempt not used.
    CHECK(swarm_wait_task(&s, plan, "t", "ready", 10));

    m = proto_msg_new(PROTO_MSG_RESULT);
    m->req = 2;
    m->u.result.plan = plan;
    m->u.result.task = xstrdup("t");
    m->u.result.token = token;
    m->u.result.outcome = PROTO_OUTCOME_SUCCEEDED;
    s_expect_revoked(sock, &m);
    m = proto_msg_new(PROTO_MSG_HEARTBEAT);
    s_expect_revoked(sock, &m);
    m = proto_msg_new(PROTO_MSG_HELLO);
    m->req = 3;
    m->u.hello.instance = xstrdup("rawinstance0001");
    m->u.hello.slots = 1;
    s_expect_revoked(sock, &m);

    jnode_t *st = swarm_status(&s, plan);
    const jnode_t *t = st ? json_arr_get(json_obj_get(st, "tasks"), 0) : NULL;
    CHECK(t && strcmp(json_str(json_obj_get(t, "state")), "ready") == 0);
    CHECK(t && json_int(json_obj_get(t, "attempts")) == 0);
    json_destroy(&st);
    jnode_t *ov = swarm_overview(&s);
    CHECK(ov && !s_drone_named(ov, "raw"));
    json_destroy(&ov);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    swarm_stop(&s);
}

static const t_case_t t_cases[] = {
    T(test_readme_multihost),
    T(test_add_after_start_needs_sighup),
    T(test_revoked_session_forbidden),
    T(test_keygen_cli),
    {0},
};

T_MAIN(t_cases)
