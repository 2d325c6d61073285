// swarm: real processes on loopback for end-to-end tests.
#include "tests/harness/swarm.h"

#include "common/clock.h"
#include "common/xalloc.h"
#include "tests/harness/proc.h"
#include "tests/harness/t.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#ifndef WAGGLE_BUILD_DIR
#error "WAGGLE_BUILD_DIR must be defined"
#endif

const char *
swarm_bin(const char *program)
{
    static char path[4][512];
    static int next = 0;
    char *p = path[next++ % 4];
    const char *dir = strstr(program, "broker")      ? "broker"
                      : strstr(program, "drone")     ? "drone"
                                                     : "architect";
    snprintf(p, 512, "%s/%s/%s", WAGGLE_BUILD_DIR, dir, program);
    return p;
}

static int
s_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    bind(fd, (struct sockaddr *) &a, sizeof a);
    getsockname(fd, (struct sockaddr *) &a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

void
swarm_init(swarm_t *s, int hb_ms, int lease_ms)
{
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "%s", t_tmpdir());
    snprintf(s->keys, sizeof s->keys, "%s/keys", s->dir);
    snprintf(s->db, sizeof s->db, "%s/ledger.db", s->dir);
    snprintf(s->endpoint, sizeof s->endpoint, "tcp://127.0.0.1:%d",
             s_free_port());
    s->hb_ms = hb_ms;
    s->lease_ms = lease_ms;
    s->broker_out = -1;
    // The drones' TMPDIR, where each makes its scratch base: inside the
    // test's directory, so a drone SIGKILLed by a test (which cannot
    // remove its base) leaves nothing in /tmp.  Sticky and world-writable
    // like /tmp, for drones that run as another user.
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s/tmp", s->dir);
    if (mkdir(tmp, 0700) != 0 || chmod(tmp, 01777) != 0) {
        fprintf(stderr, "swarm: cannot make '%s'\n", tmp);
        abort();
    }
    // Drones inherit these unless a test passes the flags (flag > env).
    // Most tests' tasks write into this 0700 directory and report their
    // pids as the host sees them, so by default they run as the drone's
    // user under a subreaper; the isolation tests ask for the real thing.
    setenv("WAGGLE_RUN_AS", geteuid() == 0 ? "root" : "", 0);
    setenv("WAGGLE_ISOLATION", "subreaper", 0);
    char *argv[] = {(char *) swarm_bin("waggle-architect"), "keygen", s->keys,
                    NULL};
    if (proc_run(argv, 30000, NULL, NULL) != 0) {
        fprintf(stderr, "swarm: keygen failed\n");
        abort();
    }
}

// Collects NULL-terminated varargs into argv after the fixed prefix.
static int
s_collect(char **argv, int n, int max, va_list ap)
{
    const char *a;
    while (n < max - 1 && (a = va_arg(ap, const char *)) != NULL) {
        argv[n++] = (char *) a;
    }
    argv[n] = NULL;
    return n;
}

// Starts the broker under the argv prefix wrap (NULL: none), with the
// extra arguments in ap, and waits for READY.
static int
s_start_broker(swarm_t *s, const char *const *wrap, va_list ap)
{
    char hb[32], lease[32], log[700];
    snprintf(hb, sizeof hb, "%d", s->hb_ms);
    snprintf(lease, sizeof lease, "%d", s->lease_ms);
    snprintf(log, sizeof log, "%s/broker.log", s->dir);
    char *argv[56];
    int n = 0;
    for (; wrap && wrap[n] && n < 16; n++) {
        argv[n] = (char *) wrap[n];
    }
    const char *fixed[] = {swarm_bin("waggle-broker"), "--bind", s->endpoint,
                           "--db", s->db, "--keys", s->keys,
                           "--heartbeat-ms", hb, "--lease-ms", lease,
                           "--backoff-base-ms", "100", "--backoff-cap-ms",
                           "500"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        argv[n++] = (char *) fixed[i];
    }
    s_collect(argv, n, 56, ap);
    if (s->broker_out >= 0) {
        close(s->broker_out);
    }
    s->broker = proc_spawn(argv, log, &s->broker_out);
    char line[256];
    if (proc_read_line(s->broker_out, "READY ", 10000, line, sizeof line) <
        0) {
        fprintf(stderr, "swarm: broker did not print READY (see %s)\n", log);
        return -1;
    }
    return 0;
}

int
swarm_broker(swarm_t *s, ...)
{
    va_list ap;
    va_start(ap, s);
    int rc = s_start_broker(s, NULL, ap);
    va_end(ap);
    return rc;
}

int
swarm_broker_wrapped(swarm_t *s, const char *const *wrap, ...)
{
    va_list ap;
    va_start(ap, wrap);
    int rc = s_start_broker(s, wrap, ap);
    va_end(ap);
    return rc;
}

void
swarm_broker_kill(swarm_t *s)
{
    if (s->broker > 0) {
        kill(s->broker, SIGKILL);
        waitpid(s->broker, NULL, 0);
        s->broker = 0;
    }
}

// Starts a drone with TMPDIR in the swarm's directory; returns its index.
static int
s_spawn_drone(swarm_t *s, char *const *argv, const char *log)
{
    if (s->n_drones >= SWARM_MAX_DRONES) {
        abort();
    }
    const char *was = getenv("TMPDIR");
    char *old = was ? xstrdup(was) : NULL;
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s/tmp", s->dir);
    setenv("TMPDIR", tmp, 1);
    s->drones[s->n_drones] = proc_spawn(argv, log, NULL);
    if (old) {
        setenv("TMPDIR", old, 1);
    } else {
        unsetenv("TMPDIR");
    }
    free(old);
    return s->n_drones++;
}

int
swarm_drone(swarm_t *s, int slots, const char *tags, ...)
{
    char sl[16], log[700];
    snprintf(sl, sizeof sl, "%d", slots);
    snprintf(log, sizeof log, "%s/drone-%d.log", s->dir, s->n_drones);
    char *argv[40] = {(char *) swarm_bin("waggle-drone"), "--broker",
                      s->endpoint, "--keys", s->keys, "--slots", sl,
                      "--tags", (char *) (tags ? tags : ""), "--workdir",
                      s->dir};
    va_list ap;
    va_start(ap, tags);
    s_collect(argv, 11, 40, ap);
    va_end(ap);
    return s_spawn_drone(s, argv, log);
}

int
swarm_arch(swarm_t *s, char **out, char **err, ...)
{
    char *argv[40] = {(char *) swarm_bin("waggle-architect"), "--broker",
                      s->endpoint, "--keys", s->keys};
    va_list ap;
    va_start(ap, err);
    s_collect(argv, 5, 40, ap);
    va_end(ap);
    return proc_run(argv, 60000, out, err);
}

int64_t
swarm_submit(swarm_t *s, const char *json)
{
    static int seq = 0;
    char path[700];
    snprintf(path, sizeof path, "%s/plan-%d.json", s->dir, seq++);
    t_write_file(path, json);
    char *out = NULL, *err = NULL;
    int rc = swarm_arch(s, &out, &err, "submit", path, NULL);
    int64_t plan = rc == 0 ? strtoll(out, NULL, 10) : -1;
    if (rc != 0) {
        fprintf(stderr, "swarm: submit failed (%d): %s\n", rc, err);
    }
    free(out);
    free(err);
    return plan;
}

int64_t
swarm_last_id(const char *out)
{
    if (!out || !*out) {
        return -1;
    }
    size_t n = strlen(out);
    while (n > 0 && out[n - 1] == '\n') {
        n--;
    }
    const char *p = out + n;
    while (p > out && p[-1] != '\n') {
        p--;
    }
    char *end = NULL;
    long long v = strtoll(p, &end, 10);
    return end == out + n && v > 0 ? v : -1;
}

jnode_t *
swarm_status(swarm_t *s, int64_t plan)
{
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    char *out = NULL;
    int rc = swarm_arch(s, &out, NULL, "status", id, "--json", NULL);
    jnode_t *root = NULL;
    char err[128];
    if (rc == 0) {
        root = json_parse(out, strlen(out), err, sizeof err);
    }
    free(out);
    return root;
}

char *
swarm_explain(swarm_t *s, int64_t plan, const char *task)
{
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    char *out = NULL;
    if (swarm_arch(s, &out, NULL, "explain", id, task, "--json", NULL) != 0) {
        free(out);
        out = NULL;
    }
    return out;
}

const jnode_t *
swarm_status_task(const jnode_t *status, const char *task)
{
    const jnode_t *tasks = status ? json_obj_get(status, "tasks") : NULL;
    for (size_t i = 0; tasks && i < json_arr_size(tasks); i++) {
        const jnode_t *t = json_arr_get(tasks, i);
        const char *id = json_str(json_obj_get(t, "id"));
        if (id && strcmp(id, task) == 0) {
            return t;
        }
    }
    return NULL;
}

void
swarm_task_state(swarm_t *s, int64_t plan, const char *task, char *buf,
                 size_t len)
{
    buf[0] = '\0';
    jnode_t *st = swarm_status(s, plan);
    const jnode_t *t = swarm_status_task(st, task);
    if (t) {
        snprintf(buf, len, "%s", json_str(json_obj_get(t, "state")));
    }
    json_destroy(&st);
}

void
swarm_wait_plan(swarm_t *s, int64_t plan, int timeout_s, char *buf,
                size_t len)
{
    int64_t end = clock_mono_ms() + timeout_s * 1000LL;
    buf[0] = '\0';
    while (clock_mono_ms() < end) {
        jnode_t *st = swarm_status(s, plan);
        const char *state = st ? json_str(json_obj_get(st, "state")) : NULL;
        if (state && strcmp(state, "running") != 0) {
            snprintf(buf, len, "%s", state);
            json_destroy(&st);
            return;
        }
        json_destroy(&st);
        usleep(200000);
    }
}

void
swarm_stop(swarm_t *s)
{
    for (int i = 0; i < s->n_drones; i++) {
        if (s->drones[i] > 0) {
            kill(s->drones[i], SIGCONT);
            kill(s->drones[i], SIGTERM);
        }
    }
    for (int i = 0; i < s->n_drones; i++) {
        proc_stop(s->drones[i], 5000);
        s->drones[i] = 0;
    }
    proc_stop(s->broker, 5000);
    s->broker = 0;
    if (s->broker_out >= 0) {
        close(s->broker_out);
        s->broker_out = -1;
    }
}

int
swarm_free_port(void)
{
    return s_free_port();
}

int
swarm_arch_as(swarm_t *s, const char *keys, const char *role, char **out,
              char **err, ...)
{
    char *argv[40] = {(char *) swarm_bin("waggle-architect"), "--broker",
                      s->endpoint, "--keys", (char *) (keys ? keys : s->keys)};
    int n = 5;
    if (role) {
        argv[n++] = "--role";
        argv[n++] = (char *) role;
    }
    va_list ap;
    va_start(ap, err);
    s_collect(argv, n, 40, ap);
    va_end(ap);
    return proc_run(argv, 60000, out, err);
}

bool
swarm_wait_task(swarm_t *s, int64_t plan, const char *task, const char *want,
                int timeout_s)
{
    int64_t end = clock_mono_ms() + timeout_s * 1000LL;
    char state[32];
    while (clock_mono_ms() < end) {
        swarm_task_state(s, plan, task, state, sizeof state);
        if (strcmp(state, want) == 0) {
            return true;
        }
        usleep(100000);
    }
    return false;
}

jnode_t *
swarm_overview(swarm_t *s)
{
    char *out = NULL;
    int rc = swarm_arch(s, &out, NULL, "status", "--json", NULL);
    jnode_t *root = NULL;
    char err[128];
    if (rc == 0) {
        root = json_parse(out, strlen(out), err, sizeof err);
    }
    free(out);
    return root;
}

int
swarm_drone_wrapped(swarm_t *s, const char *const *wrap, int slots,
                    const char *tags, ...)
{
    char sl[16], log[700];
    snprintf(sl, sizeof sl, "%d", slots);
    snprintf(log, sizeof log, "%s/drone-%d.log", s->dir, s->n_drones);
    char *argv[48];
    int n = 0;
    for (; wrap[n] && n < 16; n++) {
        argv[n] = (char *) wrap[n];
    }
    const char *fixed[] = {swarm_bin("waggle-drone"), "--broker", s->endpoint,
                           "--keys", s->keys, "--slots", sl, "--tags",
                           tags ? tags : "", "--workdir", s->dir};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        argv[n++] = (char *) fixed[i];
    }
    va_list ap;
    va_start(ap, tags);
    s_collect(argv, n, 48, ap);
    va_end(ap);
    return s_spawn_drone(s, argv, log);
}

int
swarm_file_lines(const char *path)
{
    char *text = t_read_file(path, NULL);
    int n = 0;
    for (const char *p = text; p && *p; p++) {
        n += *p == '\n';
    }
    free(text);
    return n;
}

bool
swarm_wait_lines(const char *path, int n, int timeout_ms)
{
    int64_t end = clock_mono_ms() + timeout_ms;
    do {
        if (swarm_file_lines(path) >= n) {
            return true;
        }
        usleep(20000);
    } while (clock_mono_ms() < end);
    return false;
}

bool
swarm_log_has(const char *path, const char *a, const char *b)
{
    char *text = t_read_file(path, NULL);
    bool found = false;
    for (char *line = text; line && *line && !found;) {
        char *nl = strchr(line, '\n');
        if (nl) {
            *nl = '\0';
        }
        found = strstr(line, a) && (!b || strstr(line, b));
        line = nl ? nl + 1 : NULL;
    }
    free(text);
    return found;
}

// The overview's first drone whose key name is key (by_name) or that
// offers the tag key: as swarm_drone_by_tag says.
static bool
s_find_drone(swarm_t *s, bool by_name, const char *key, char *instance,
             size_t len, int *leases)
{
    bool found = false;
    jnode_t *ov = swarm_overview(s);
    const jnode_t *drones = ov ? json_obj_get(ov, "drones") : NULL;
    for (size_t i = 0; drones && i < json_arr_size(drones) && !found; i++) {
        const jnode_t *d = json_arr_get(drones, i);
        const jnode_t *tags = json_obj_get(d, "tags");
        const char *name = json_str(json_obj_get(d, "name"));
        found = by_name && name && strcmp(name, key) == 0;
        for (size_t k = 0; !by_name && tags && k < json_arr_size(tags); k++) {
            found |= strcmp(json_str(json_arr_get(tags, k)), key) == 0;
        }
        if (found && instance) {
            snprintf(instance, len, "%s",
                     json_str(json_obj_get(d, "instance")));
        }
        if (found && leases) {
            *leases = (int) json_int(json_obj_get(d, "leases"));
        }
    }
    json_destroy(&ov);
    return found;
}

bool
swarm_drone_by_tag(swarm_t *s, const char *tag, char *instance, size_t len,
                   int *leases)
{
    return s_find_drone(s, false, tag, instance, len, leases);
}

bool
swarm_drone_by_name(swarm_t *s, const char *name, char *instance,
                    size_t len, int *leases)
{
    return s_find_drone(s, true, name, instance, len, leases);
}

static bool
s_wait_found(swarm_t *s, bool by_name, const char *key, bool want,
             int want_leases, int timeout_ms)
{
    int64_t end = clock_mono_ms() + timeout_ms;
    do {
        int leases = -1;
        bool listed = s_find_drone(s, by_name, key, NULL, 0, &leases);
        if (listed == want &&
            (!want || want_leases < 0 || leases == want_leases)) {
            return true;
        }
        usleep(100000);
    } while (clock_mono_ms() < end);
    return false;
}

bool
swarm_wait_drone(swarm_t *s, const char *tag, bool want, int want_leases,
                 int timeout_ms)
{
    return s_wait_found(s, false, tag, want, want_leases, timeout_ms);
}

bool
swarm_wait_named(swarm_t *s, const char *name, bool want, int want_leases,
                 int timeout_ms)
{
    return s_wait_found(s, true, name, want, want_leases, timeout_ms);
}

bool
swarm_wait_log(const char *path, const char *a, const char *b, int timeout_ms)
{
    int64_t end = clock_mono_ms() + timeout_ms;
    do {
        if (swarm_log_has(path, a, b)) {
            return true;
        }
        usleep(50000);
    } while (clock_mono_ms() < end);
    return false;
}

bool
swarm_run_line(const char *path, int k, long *pid, unsigned long long *token)
{
    char *text = t_read_file(path, NULL);
    const char *p = text;
    for (int i = 0; p && i < k; i++) {
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    bool ok = p && sscanf(p, "%ld started by %llu", pid, token) == 2;
    free(text);
    return ok;
}

// Whether some task in a status reply has a waiting_reason holding want.
static bool
s_has_reason(const jnode_t *st, const char *want)
{
    const jnode_t *tasks = st ? json_obj_get(st, "tasks") : NULL;
    for (size_t i = 0; i < json_arr_size(tasks); i++) {
        const char *r = json_str(
            json_obj_get(json_arr_get(tasks, i), "waiting_reason"));
        if (r && strstr(r, want)) {
            return true;
        }
    }
    return false;
}

bool
swarm_wait_reason(swarm_t *s, int64_t plan, const char *want, int timeout_ms)
{
    int64_t end = clock_mono_ms() + timeout_ms;
    while (clock_mono_ms() < end) {
        jnode_t *st = swarm_status(s, plan);
        bool seen = s_has_reason(st, want);
        json_destroy(&st);
        if (seen) {
            return true;
        }
        usleep(100000);
    }
    return false;
}

bool
swarm_with_model(swarm_t *s, int slots, const char *model_url)
{
    swarm_init(s, 100, 2000);
    if (swarm_broker(s, NULL) != 0) {
        return false;
    }
    swarm_drone(s, slots, "solo", "--model-url", model_url, "--model",
                "tiny", "--model-timeout-s", "60", NULL);
    return swarm_wait_drone(s, "solo", true, -1, 20000);
}
