// e2e: hostile tasks (issue 6, item 2).  Each task tries one attack on the
// drone or a sibling and prints what it got; the test asserts that every
// attack failed.  The drone runs as root with its defaults (tasks as
// waggle-task, or as nobody when that user does not exist here, each in
// its own PID namespace), a cloud credential in its environment, and its
// key directories opened up to 0755 so that only the secret file's own
// mode protects it.  A second run starts the drone as nobody (setpriv):
// then tasks share its uid, and still cannot read its environment
// (non-dumpable; this failed before the drone set PR_SET_DUMPABLE 0).
// Needs root: otherwise exit 77 (SKIP).
#include "tests/harness/proc.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include "common/json.h"
#include "common/xalloc.h"

#include <dirent.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define S_SECRET "hostile-test-secret-4711"

typedef struct {
    const char *id;
    const char *script;
    const char *extra;          // more task fields, ending with ',' or ""
} s_attack_t;

static const s_attack_t s_attacks[] = {
    {"key",
     "for f in \"$KEYS\"/drone/*_secret; do if cat \"$f\" >/dev/null 2>&1; "
     "then echo key:READ; else echo key:denied; fi; done", ""},
    {"drone",
     "if cat /proc/$DRONE_PID/environ >/dev/null 2>&1; then echo "
     "environ:READ; else echo environ:denied; fi; if [ -e /proc/$DRONE_PID "
     "]; then echo drone:visible; else echo drone:hidden; fi; "
     "echo secrets:$(grep -l " S_SECRET " /proc/[0-9]*/environ 2>/dev/null "
     "| wc -l); echo home:$HOME; echo input:$WAGGLE_INPUT_DIR; for p in "
     "/proc/[0-9]*; do echo cmdline:$(tr '\\000' ' ' < $p/cmdline); done",
     ""},
    {"scratch",
     "if ls \"$(dirname \"$HOME\")\" >/dev/null 2>&1; then echo list:READ; "
     "else echo list:denied; fi", ""},
    {"env",
     "echo aws:${AWS_SECRET_ACCESS_KEY:-unset}; echo names:$(env | cut -d= "
     "-f1 | sort | tr '\\n' ' ')", ""},
    {"sib-a",
     "touch \"$SHARED/a\"; i=0; while [ ! -e \"$SHARED/b\" ] && [ $i -lt "
     "300 ]; do sleep 0.1; i=$((i+1)); done; echo a:done",
     "\"priority\": 10,"},
    {"sib-b",
     "i=0; while [ ! -e \"$SHARED/a\" ] && [ $i -lt 300 ]; do sleep 0.1; "
     "i=$((i+1)); done; found=0; for f in /proc/[0-9]*/environ; do "
     "t=$(tr '\\000' '\\n' < \"$f\" 2>/dev/null | grep "
     "'^WAGGLE_TASK_TOKEN='); if [ -n \"$t\" ] && [ \"$t\" != "
     "\"WAGGLE_TASK_TOKEN=$WAGGLE_TASK_TOKEN\" ]; then found=1; fi; done; "
     "echo sibling:$found; touch \"$SHARED/b\"",
     "\"priority\": 10,"},
    // Not an attack: what the task user must still be able to do.
    {"own",
     "cat \"$WAGGLE_INPUT_DIR/key\" >/dev/null && echo input:readable; "
     "touch \"$HOME/x\" && echo home:writable; echo uid:$(id -u)",
     "\"needs\": [\"key\"],"},
    {"nproc",
     "i=0; while [ $i -lt 60 ]; do sleep 5 & i=$((i+1)); echo forked:$i; "
     "done", "\"limits\": {\"nproc\": NPROC},"},
};
#define S_N_ATTACKS (sizeof s_attacks / sizeof s_attacks[0])

// Processes of uid on this host now: RLIMIT_NPROC counts them all.
static int
s_procs_of(uid_t uid)
{
    int n = 0;
    DIR *d = opendir("/proc");
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        char path[300];
        snprintf(path, sizeof path, "/proc/%s/status", e->d_name);
        char *st = strtol(e->d_name, NULL, 10) > 0 ? t_read_file(path, NULL)
                                                    : NULL;
        const char *u = st ? strstr(st, "\nUid:") : NULL;
        n += u && strtol(u + 5, NULL, 10) == (long) uid;
        free(st);
    }
    if (d) {
        closedir(d);
    }
    return n;
}

// The plan; the fork bomb may have 12 processes more than the task user
// has on this host already.
static char *
s_plan(const char *keys, const char *shared, pid_t drone, uid_t task_uid)
{
    char *tasks = xstrdup("");
    char nproc[32];
    snprintf(nproc, sizeof nproc, "%d", s_procs_of(task_uid) + 12);
    for (size_t i = 0; i < S_N_ATTACKS; i++) {
        char *q = json_quote(s_attacks[i].script);
        char *extra = xstrdup(s_attacks[i].extra);
        char *at = strstr(extra, "NPROC");
        if (at) {
            char *with = xasprintf("%.*s%s%s", (int) (at - extra), extra,
                                   nproc, at + 5);
            free(extra);
            extra = with;
        }
        char *next = xasprintf(
            "%s%s{\"id\": \"%s\", \"retries\": 0, %s\"run\": [\"sh\", \"-c\", "
            "%s]}", tasks, i ? "," : "", s_attacks[i].id, extra, q);
        free(extra);
        free(q);
        free(tasks);
        tasks = next;
    }
    char *plan = xasprintf(
        "{\"name\": \"hostile\", \"defaults\": {\"timeout_s\": 60}, "
        "\"tasks\": [%s]}", tasks);
    free(tasks);
    // Every task gets the same pointers to its targets.
    char *env = xasprintf("\"env\": {\"KEYS\": \"%s\", \"SHARED\": \"%s\", "
                          "\"DRONE_PID\": \"%d\"}, \"run\"", keys, shared,
                          (int) drone);
    char *out = xstrdup("");
    for (char *p = plan, *hit; (hit = strstr(p, "\"run\"")) != NULL;
         p = hit + 5) {
        char *next = xasprintf("%s%.*s%s", out, (int) (hit - p), p, env);
        free(out);
        out = next;
        if (!strstr(hit + 5, "\"run\"")) {
            next = xasprintf("%s%s", out, hit + 5);
            free(out);
            out = next;
        }
    }
    free(env);
    free(plan);
    return out;
}

// The output of one task of plan (the latest attempt); caller frees.
static char *
s_output(swarm_t *s, int64_t plan, const char *task)
{
    char num[32], *out = NULL;
    snprintf(num, sizeof num, "%lld", (long long) plan);
    swarm_arch(s, &out, NULL, "output", num, task, NULL);
    // What each attack saw, for the log.
    printf("--- %s\n%s", task, out ? out : "");
    return out ? out : xstrdup("");
}

// Every name in "names:A B C" is one a task may see.
static void
s_check_names(const char *out)
{
    static const char *const allowed[] = {
        "PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "TZ", "TERM", "PWD",
        "SHLVL", "OLDPWD", "_", "KEYS", "SHARED", "DRONE_PID"};
    const char *names = strstr(out, "names:");
    REQUIRE(names);
    char *copy = xstrndup(names + 6, strcspn(names + 6, "\n"));
    char *save = NULL;
    for (char *n = strtok_r(copy, " ", &save); n;
         n = strtok_r(NULL, " ", &save)) {
        bool ok = strncmp(n, "WAGGLE_PLAN", 11) == 0
                  || strncmp(n, "WAGGLE_TASK", 11) == 0
                  || strcmp(n, "WAGGLE_ATTEMPT") == 0
                  || strncmp(n, "WAGGLE_INPUT_", 13) == 0;
        for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++) {
            ok = ok || strcmp(n, allowed[i]) == 0;
        }
        if (!ok) {
            fprintf(stderr, "a task saw the drone's variable '%s'\n", n);
        }
        CHECK(ok);
    }
    free(copy);
}

static void
s_open_up(const char *dir)
{
    chmod(dir, 0755);
}

static void
test_hostile_tasks(void)
{
    swarm_t s;
    swarm_init(&s, 100, 3000);
    // The default path when this host has the dedicated user.
    bool dedicated = getpwnam("waggle-task") != NULL;
    unsetenv("WAGGLE_RUN_AS");
    unsetenv("WAGGLE_ISOLATION");
    char shared[700], sub[700];
    snprintf(shared, sizeof shared, "%s/shared", s.dir);
    REQUIRE(mkdir(shared, 0777) == 0 && chmod(shared, 01777) == 0);
    s_open_up(s.dir);
    s_open_up(s.keys);
    snprintf(sub, sizeof sub, "%s/drone", s.keys);
    s_open_up(sub);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    setenv("AWS_SECRET_ACCESS_KEY", S_SECRET, 1);
    int d = dedicated ? swarm_drone(&s, 3, "hostile", NULL)
                      : swarm_drone(&s, 3, "hostile", "--run-as", "nobody",
                                    NULL);
    unsetenv("AWS_SECRET_ACCESS_KEY");
    REQUIRE(swarm_wait_drone(&s, "hostile", true, -1, 10000));
    char instance[80] = "";
    swarm_drone_by_tag(&s, "hostile", instance, sizeof instance, NULL);
    struct passwd *pw = getpwnam(dedicated ? "waggle-task" : "nobody");
    REQUIRE(pw);
    char *plan = s_plan(s.keys, shared, s.drones[d], pw->pw_uid);
    int64_t id = swarm_submit(&s, plan);
    free(plan);
    REQUIRE(id > 0);
    char state[32];
    swarm_wait_plan(&s, id, 90, state, sizeof state);

    char *out = s_output(&s, id, "key");
    CHECK_HAS(out, "key:denied");
    CHECK(!strstr(out, "READ"));
    free(out);
    out = s_output(&s, id, "drone");
    CHECK_HAS(out, "environ:denied");
    CHECK_HAS(out, "drone:hidden");
    CHECK_HAS(out, "secrets:0");
    CHECK(instance[0] && !strstr(out, instance));
    // No process it can see shows the drone's command line (its init is a
    // copy of the drone).
    CHECK(!strstr(out, "--keys"));
    CHECK(!strstr(out, "--broker"));
    free(out);
    out = s_output(&s, id, "scratch");
    CHECK_HAS(out, "list:denied");
    free(out);
    out = s_output(&s, id, "env");
    CHECK_HAS(out, "aws:unset");
    s_check_names(out);
    free(out);
    out = s_output(&s, id, "own");
    CHECK_HAS(out, "input:readable");
    CHECK_HAS(out, "home:writable");
    CHECK(!strstr(out, "uid:0\n"));
    free(out);
    char log[700];
    snprintf(log, sizeof log, "%s/drone-%d.log", s.dir, d);
    CHECK(swarm_log_has(log, "tasks run as user", NULL));
    CHECK(swarm_log_has(log, "own PID and mount namespace", NULL));
    out = s_output(&s, id, "sib-a");
    CHECK_HAS(out, "a:done");
    free(out);
    out = s_output(&s, id, "sib-b");
    CHECK_HAS(out, "sibling:0");
    free(out);
    // The fork bomb stops well short of its 60 children.
    out = s_output(&s, id, "nproc");
    const char *last = out, *p = out;
    while ((p = strstr(p, "forked:")) != NULL) {
        last = p;
        p += 7;
    }
    int forked = strncmp(last, "forked:", 7) == 0 ? atoi(last + 7) : 0;
    CHECK(forked >= 1 && forked < 30);
    free(out);
    swarm_stop(&s);
}

// A copy of the drone bundle owned by nobody, in DIR/nobody-keys.
static void
s_keys_for_nobody(swarm_t *s, char *dir, size_t len)
{
    snprintf(dir, len, "%s/nobody-keys", s->dir);
    char *cmd = xasprintf("mkdir -p %s && cp -r %s/drone %s/ && chown -R "
                          "65534:65534 %s", dir, s->keys, dir, dir);
    CHECK_INT(system(cmd), 0);
    free(cmd);
}

// A drone that is not root: tasks run as its own user (it says so), it
// cannot switch (--run-as root is refused), and a task of the same uid
// still cannot read the drone's environment (it is non-dumpable) nor see
// a variable the drone did not pass on.
static void
s_non_root_drone(const char *isolation)
{
    swarm_t s;
    swarm_init(&s, 100, 3000);
    unsetenv("WAGGLE_RUN_AS");
    unsetenv("WAGGLE_ISOLATION");
    s_open_up(s.dir);
    char keys[700];
    s_keys_for_nobody(&s, keys, sizeof keys);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    static const char *const as_nobody[] = {
        "/usr/bin/setpriv", "--reuid=65534", "--regid=65534",
        "--clear-groups", NULL};
    int bad = swarm_drone_wrapped(&s, as_nobody, 1, "x", "--keys", keys,
                                  "--run-as", "root", NULL);
    int status = 0;
    CHECK(proc_wait(s.drones[bad], 10000, &status) == 0
          && WIFEXITED(status) && WEXITSTATUS(status) == 2);
    s.drones[bad] = 0;  // reaped
    char log[700];
    snprintf(log, sizeof log, "%s/drone-%d.log", s.dir, bad);
    CHECK(swarm_log_has(log, "cannot switch users", NULL));
    setenv("AWS_SECRET_ACCESS_KEY", S_SECRET, 1);
    int d = swarm_drone_wrapped(&s, as_nobody, 1, "nonroot", "--keys", keys,
                                "--isolation", isolation, NULL);
    unsetenv("AWS_SECRET_ACCESS_KEY");
    REQUIRE(swarm_wait_drone(&s, "nonroot", true, -1, 10000));
    snprintf(log, sizeof log, "%s/drone-%d.log", s.dir, d);
    CHECK(swarm_log_has(log, "tasks run as the drone's own user 'nobody'",
                        NULL));
    // Unprivileged user namespaces (where the kernel has them) give the
    // drone its PID namespaces; else the subreaper, and the drone is
    // visible (but still non-dumpable).
    bool pidns = swarm_log_has(log, "own PID and mount namespace", NULL);
    printf("non-root drone isolation: %s\n", pidns ? "pidns" : "subreaper");
    char *plan = xasprintf(
        "{\"name\": \"same-uid\", \"tasks\": [{\"id\": \"peek\", "
        "\"requires\": [\"nonroot\"], \"run\": [\"sh\", \"-c\", \"echo "
        "uid:$(id -u); if cat /proc/%d/environ >/dev/null 2>&1; then echo "
        "environ:READ; else echo environ:denied; fi; if kill -0 %d "
        "2>/dev/null; then echo drone:signalable; else echo drone:hidden; fi; "
        "echo aws:${AWS_SECRET_ACCESS_KEY:-unset}\"]}]}", (int) s.drones[d],
        (int) s.drones[d]);
    int64_t id = swarm_submit(&s, plan);
    free(plan);
    REQUIRE(id > 0);
    char state[32];
    swarm_wait_plan(&s, id, 60, state, sizeof state);
    CHECK_STR(state, "succeeded");
    char *out = s_output(&s, id, "peek");
    CHECK_HAS(out, "uid:65534");
    CHECK_HAS(out, "environ:denied");
    CHECK_HAS(out, "aws:unset");
    if (pidns) {
        CHECK_HAS(out, "drone:hidden");
    }
    free(out);
    swarm_stop(&s);
}

static void
test_non_root_drone(void)
{
    s_non_root_drone("auto");
}

// The fallback where a kernel forbids unprivileged user namespaces.
static void
test_non_root_drone_subreaper(void)
{
    s_non_root_drone("subreaper");
}

static const t_case_t t_cases[] = {
    T(test_hostile_tasks),
    T(test_non_root_drone),
    T(test_non_root_drone_subreaper),
    {0},
};

int
main(int argc, char **argv)
{
    if (geteuid() != 0) {
        printf("SKIP test_hostile_tasks: needs root (a task user to switch "
               "to, a PID namespace)\n");
        return 77;
    }
    return t_run(t_cases, argc, argv);
}
