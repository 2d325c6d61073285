// Unit tests for attempt: inputs on disk, argv templates, environment,
// and RESULT bodies from finished children.
#include "drone/attempt.h"
#include "tests/harness/t.h"

#include "common/clock.h"
#include "common/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static proto_task_t
s_task(void)
{
    proto_task_t t = {0};
    t.plan = 7;
    t.plan_name = "p";
    t.task = "join";
    t.token = 42;
    t.attempt = 2;
    return t;
}

static attempt_opts_t
s_opts(void)
{
    return (attempt_opts_t) {.base = t_tmpdir(), .uid = (uid_t) -1,
                             .gid = (gid_t) -1};
}

// Removes and frees what attempt_prepare left for the caller.
static void
s_done(attempt_t *a)
{
    attempt_release(a);
    attempt_remove_dir(a->dir);
    free(a->dir);
    a->dir = NULL;
}

static const char *
s_env(char **envp, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; envp && envp[i]; i++) {
        if (strncmp(envp[i], name, n) == 0 && envp[i][n] == '=') {
            return envp[i] + n + 1;
        }
    }
    return NULL;
}

static void
test_prepare(void)
{
    setenv("WAGGLE_KEYS", "secret-dir", 1);
    proto_task_t t = s_task();
    char *argv[] = {"echo", "got {{log-a.output}}!"};
    t.argv.items = argv;
    t.argv.count = 2;
    proto_kv_t env[] = {{"COLOUR", "blue"}};
    t.env = env;
    t.n_env = 1;
    proto_input_t in[] = {{"log-a", {(uint8_t *) "hello\n", 6}, false}};
    t.inputs = in;
    t.n_inputs = 1;
    attempt_t a = {0};
    attempt_opts_t o = s_opts();
    char *why = attempt_prepare(&a, &t, &o);
    REQUIRE(why == NULL);
    CHECK_STR(a.argv[0], "echo");
    CHECK_STR(a.argv[1], "got hello!");
    CHECK(a.argv[2] == NULL);
    CHECK_STR(s_env(a.envp, "COLOUR"), "blue");
    CHECK_STR(s_env(a.envp, "WAGGLE_TASK_TOKEN"), "42");
    CHECK_STR(s_env(a.envp, "WAGGLE_PLAN"), "7");
    CHECK_STR(s_env(a.envp, "WAGGLE_ATTEMPT"), "2");
    CHECK_STR(s_env(a.envp, "WAGGLE_INPUT_LOG_A"), "hello\n");
    CHECK(s_env(a.envp, "WAGGLE_KEYS") == NULL);  // the drone's own
    char path[700];
    snprintf(path, sizeof path, "%s/log-a", a.input_dir);
    char *file = t_read_file(path, NULL);
    CHECK_STR(file, "hello\n");
    free(file);
    struct stat st;
    CHECK(stat(a.dir, &st) == 0 && (st.st_mode & 0777) == 0700);
    char *dir = xstrdup(a.dir);
    s_done(&a);
    CHECK(stat(dir, &st) < 0);
    free(dir);
    unsetenv("WAGGLE_KEYS");
}

static void
test_refusals(void)
{
    proto_task_t t = s_task();
    char *argv[] = {"cat", "{{x.output}}"};
    t.argv.items = argv;
    t.argv.count = 2;
    proto_input_t in[] = {{"x", {(uint8_t *) "a\0b", 3}, false}};
    t.inputs = in;
    t.n_inputs = 1;
    attempt_t a = {0};
    attempt_opts_t o = s_opts();
    char *why = attempt_prepare(&a, &t, &o);
    CHECK_HAS(why, "NUL");
    free(why);
    s_done(&a);

    in[0].truncated = true;
    t.argv.count = 1;
    a = (attempt_t){0};
    why = attempt_prepare(&a, &t, &o);
    CHECK_HAS(why, "input 'x' was truncated at the output cap");
    free(why);
    s_done(&a);
}

static void
test_big_input_not_in_env(void)
{
    proto_task_t t = s_task();
    char *argv[] = {"true"};
    t.argv.items = argv;
    t.argv.count = 1;
    size_t n = 200000;
    uint8_t *big = xmalloc(n);
    memset(big, 'z', n);
    proto_input_t in[] = {{"big", {big, n}, false}};
    t.inputs = in;
    t.n_inputs = 1;
    attempt_t a = {0};
    attempt_opts_t o = s_opts();
    char *why = attempt_prepare(&a, &t, &o);
    CHECK(why == NULL);
    CHECK(s_env(a.envp, "WAGGLE_INPUT_BIG") == NULL);
    s_done(&a);
    free(big);
}

// The drone's environment stays out of the task: only the allow list.
static void
test_env_scrubbed(void)
{
    setenv("AWS_SECRET_ACCESS_KEY", "drone-only", 1);
    setenv("LANG", "C.UTF-8", 1);
    setenv("PASSED_ON", "yes", 1);
    setenv("HOME", "/root", 1);
    proto_task_t t = s_task();
    char *argv[] = {"true"};
    t.argv.items = argv;
    t.argv.count = 1;
    proto_kv_t env[] = {{"LANG", "de_DE.UTF-8"}};
    t.env = env;
    t.n_env = 1;
    attempt_t a = {0};
    attempt_opts_t o = s_opts();
    char *pass[] = {"PASSED_ON", "NOT_SET_ANYWHERE", NULL};
    o.pass_env = pass;
    char *why = attempt_prepare(&a, &t, &o);
    CHECK(why == NULL);
    CHECK(s_env(a.envp, "AWS_SECRET_ACCESS_KEY") == NULL);
    CHECK(s_env(a.envp, "PATH") != NULL);
    CHECK_STR(s_env(a.envp, "PASSED_ON"), "yes");
    CHECK(s_env(a.envp, "NOT_SET_ANYWHERE") == NULL);
    CHECK_STR(s_env(a.envp, "HOME"), a.dir);
    CHECK_STR(s_env(a.envp, "TMPDIR"), a.dir);
    // The task's own value wins, and there is only one LANG.
    CHECK_STR(s_env(a.envp, "LANG"), "de_DE.UTF-8");
    size_t langs = 0;
    for (size_t i = 0; a.envp && a.envp[i]; i++) {
        langs += strncmp(a.envp[i], "LANG=", 5) == 0;
    }
    CHECK_INT(langs, 1);
    s_done(&a);
    // No PATH in the drone: a fixed safe one.
    char *path = xstrdup(getenv("PATH"));
    unsetenv("PATH");
    CHECK(attempt_prepare(&a, &t, &o) == NULL);
    CHECK_STR(s_env(a.envp, "PATH"), ATTEMPT_DEFAULT_PATH);
    s_done(&a);
    setenv("PATH", path, 1);
    free(path);
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("PASSED_ON");
}

// The directory a task sees says nothing a task could use as a session:
// not the token, not the drone's instance id.
// A task without inputs gets its directory (HOME, TMPDIR) but no inputs/
// in it and no WAGGLE_INPUT_DIR: nothing made and removed for nothing.
static void
test_no_inputs_no_input_dir(void)
{
    proto_task_t t = s_task();
    char *argv[] = {"true"};
    t.argv.items = argv;
    t.argv.count = 1;
    attempt_t a = {0};
    attempt_opts_t o = s_opts();
    REQUIRE(attempt_prepare(&a, &t, &o) == NULL);
    CHECK(a.input_dir == NULL);
    CHECK(s_env(a.envp, "WAGGLE_INPUT_DIR") == NULL);
    CHECK_STR(s_env(a.envp, "HOME"), a.dir);
    char path[700];
    snprintf(path, sizeof path, "%s/inputs", a.dir);
    struct stat st;
    CHECK(stat(a.dir, &st) == 0 && S_ISDIR(st.st_mode));
    CHECK(stat(path, &st) < 0 && errno == ENOENT);
    s_done(&a);
}

static void
test_dir_name_is_random(void)
{
    proto_task_t t = s_task();
    char *argv[] = {"true"};
    t.argv.items = argv;
    t.argv.count = 1;
    attempt_t a = {0}, b = {0};
    attempt_opts_t o = s_opts();
    CHECK(attempt_prepare(&a, &t, &o) == NULL);
    CHECK(attempt_prepare(&b, &t, &o) == NULL);
    CHECK(strcmp(a.dir, b.dir) != 0);
    // BASE/<32 random hex digits>, not BASE/<token>: the token is
    // 42 here (a random name may of course hold "42" somewhere).
    const char *name = a.dir + strlen(t_tmpdir()) + 1;
    CHECK(strcmp(name, "42") != 0);
    CHECK_INT(strlen(name), 32);
    CHECK_INT(strspn(name, "0123456789abcdef"), 32);
    s_done(&a);
    s_done(&b);
}

static void
test_result(void)
{
    runner_result_t r = {.spawned = true, .exit_code = 3};
    r.out = xmalloc(2);
    memcpy(r.out, "hi", 2);
    r.out_len = 2;
    proto_result_t pr = {0};
    attempt_result(&pr, &r, false);
    CHECK_INT(pr.outcome, PROTO_OUTCOME_FAILED);
    CHECK_STR(pr.error, "exited with status 3");
    CHECK_INT(pr.out.len, 2);
    CHECK(r.out == NULL);  // moved
    free(pr.error);
    free(pr.out.data);

    runner_result_t ok = {.spawned = true, .exit_code = 0};
    proto_result_t p2 = {0};
    attempt_result(&p2, &ok, false);
    CHECK_INT(p2.outcome, PROTO_OUTCOME_SUCCEEDED);
    CHECK(p2.error == NULL);

    runner_result_t killed = {.spawned = true, .exit_code = -1, .signal = 9};
    proto_result_t p3 = {0};
    attempt_result(&p3, &killed, true);
    CHECK_INT(p3.outcome, PROTO_OUTCOME_RELEASED);
    CHECK_HAS(p3.error, "handed back");
    free(p3.error);
}

// A workplan's limit lowers the drone's, never raises it; 0 is "none".
static void
test_limits_capped(void)
{
    runner_limits_t caps = {.as_bytes = 1024ull << 20, .nofile = 256,
                            .nproc = 0, .cpu_s = 0};
    proto_task_limits_t asked = {.as_mb = 4096, .nofile = 64, .nproc = 10,
                                 .cpu_s = 0};
    runner_limits_t got = attempt_limits(&asked, &caps);
    CHECK(got.as_bytes == 1024ull << 20);  // the cap wins
    CHECK(got.nofile == 64);               // lowered
    CHECK(got.nproc == 10);                // no cap: as asked
    CHECK(got.cpu_s == 0);                 // neither: none
    proto_task_limits_t none = {0};
    got = attempt_limits(&none, &caps);
    CHECK(got.as_bytes == 1024ull << 20);
    CHECK(got.nofile == 256);
}

// The one result of a child started with spec, or false after 10 s.
static bool
s_exec(const runner_spec_t *spec, runner_result_t *r)
{
    runner_t *rn = runner_new(100);
    char *err = NULL;
    fflush(NULL);
    bool got = false;
    if (runner_start(rn, 1, spec, clock_mono_ms(), &err) != 0) {
        fprintf(stderr, "runner_start: %s\n", err);
        free(err);
        runner_destroy(&rn);
        return false;
    }
    int64_t give_up = clock_mono_ms() + 10000;
    while (!got && clock_mono_ms() < give_up) {
        struct pollfd fds[8];
        poll(fds, runner_pollfds(rn, fds, 8), 50);
        runner_result_t *done = NULL;
        if (runner_step(rn, clock_mono_ms(), &done) == 1) {
            *r = done[0];
            got = true;
        }
        free(done);
    }
    runner_destroy(&rn);
    return got;
}

// A join of many big inputs still starts.  The kernel refuses an exec
// whose strings pass a quarter of the stack limit (2 MiB with the usual
// 8 MiB): 24 inputs of 120,000 bytes each fit a variable alone, not all
// together, so the variables stop at a budget and the files carry the
// rest.
static void
test_many_big_inputs_still_exec(void)
{
    enum { N = 24, LEN = 120000 };
    proto_task_t t = s_task();
    char *argv[] = {"true"};
    t.argv.items = argv;
    t.argv.count = 1;
    proto_input_t in[N];
    char ids[N][16];
    uint8_t *data = xmalloc(LEN);
    memset(data, 'a', LEN);
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "in-%02d", i);
        in[i] = (proto_input_t) {.id = ids[i], .data = {data, LEN}};
    }
    t.inputs = in;
    t.n_inputs = N;
    attempt_t a = {0};
    attempt_opts_t o = s_opts();
    CHECK(attempt_prepare(&a, &t, &o) == NULL);
    runner_spec_t spec = {.argv = a.argv, .envp = a.envp, .out_cap = 1024,
                          .err_cap = 1024};
    runner_result_t r = {0};
    REQUIRE(s_exec(&spec, &r));
    CHECK(r.spawned);
    CHECK_STR(r.error ? r.error : "", "");
    CHECK_INT(r.exit_code, 0);
    runner_result_release(&r);
    // The first eight (960,000 bytes) still come as variables; the ninth
    // would pass the 1 MiB budget.
    CHECK(s_env(a.envp, "WAGGLE_INPUT_IN_00") != NULL);
    CHECK(s_env(a.envp, "WAGGLE_INPUT_IN_07") != NULL);
    CHECK(s_env(a.envp, "WAGGLE_INPUT_IN_08") == NULL);
    s_done(&a);
    free(data);
}

// A value just under 128 KiB - 64 with a 64-character id: NAME=value would
// pass the kernel's 128 KiB per string, so it is left to the file.
static void
test_long_id_input_still_execs(void)
{
    enum { LEN = 131072 - 70 };
    proto_task_t t = s_task();
    char *argv[] = {"true"};
    t.argv.items = argv;
    t.argv.count = 1;
    char id[65];
    memset(id, 'x', 64);
    id[64] = '\0';
    uint8_t *data = xmalloc(LEN);
    memset(data, 'a', LEN);
    proto_input_t in = {.id = id, .data = {data, LEN}};
    t.inputs = &in;
    t.n_inputs = 1;
    attempt_t a = {0};
    attempt_opts_t o = s_opts();
    CHECK(attempt_prepare(&a, &t, &o) == NULL);
    runner_spec_t spec = {.argv = a.argv, .envp = a.envp, .out_cap = 1024,
                          .err_cap = 1024};
    runner_result_t r = {0};
    REQUIRE(s_exec(&spec, &r));
    CHECK_STR(r.error ? r.error : "", "");
    CHECK_INT(r.exit_code, 0);
    runner_result_release(&r);
    s_done(&a);
    free(data);
}

enum { S_FILES = 2000 };

// Makes dir/f0000.. (S_FILES empty files).
static void
s_fill(const char *dir)
{
    REQUIRE(mkdir(dir, 0700) == 0);
    for (int i = 0; i < S_FILES; i++) {
        char *f = xasprintf("%s/f%04d", dir, i);
        int fd = open(f, O_WRONLY | O_CREAT | O_EXCL, 0600);
        REQUIRE(fd >= 0);
        close(fd);
        free(f);
    }
}

static int
s_count(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        n += e->d_name[0] != '.';
    }
    if (d) {
        closedir(d);
    }
    return n;
}

// Plays a sibling task that knows an attempt's directory (in subreaper
// mode tasks of one user see each other's cwd in /proc): as soon as the
// drone starts deleting in dir/sub, it swaps dir/sub for a link to victim
// in one step (RENAME_EXCHANGE).  Writes a byte on ready once it watches.
static _Noreturn void
s_swapper(const char *dir, const char *victim, int ready)
{
    // The link waits outside dir, where the removal cannot take it first.
    char *sub = xasprintf("%s/sub", dir);
    char *moved = xasprintf("%s/swap-link", t_tmpdir());
    alarm(20);  // never outlive the test, whatever the removal does
    int in = inotify_init1(IN_CLOEXEC);
    int ok = symlink(victim, moved) == 0 && in >= 0
             && inotify_add_watch(in, sub, IN_DELETE) >= 0;
    if (write(ready, "x", 1) != 1 || !ok) {
        _exit(1);
    }
    char buf[4096];
    if (read(in, buf, sizeof buf) > 0
        && renameat2(AT_FDCWD, sub, AT_FDCWD, moved, RENAME_EXCHANGE) == 0) {
        _exit(0);
    }
    _exit(1);
}

// Removing an attempt's directory never follows a link, not even one a
// task swaps in while the removal runs: the drone runs as root, and
// victim stands for any directory of the host.
static void
test_remove_dir_never_follows(void)
{
    char *dir = xasprintf("%s/attempt", t_tmpdir());
    char *victim = xasprintf("%s/victim", t_tmpdir());
    char *sub = xasprintf("%s/sub", dir);
    REQUIRE(mkdir(dir, 0700) == 0);
    s_fill(sub);
    s_fill(victim);
    // A link already there is removed, not followed.
    char *link = xasprintf("%s/link", dir);
    REQUIRE(symlink(victim, link) == 0);
    int p[2];
    REQUIRE(pipe(p) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        s_swapper(dir, victim, p[1]);
    }
    close(p[1]);
    char c;
    REQUIRE(read(p[0], &c, 1) == 1);
    close(p[0]);
    attempt_remove_dir(dir);
    int status = 0;
    waitpid(pid, &status, 0);
    printf("swapper %s\n", WIFEXITED(status) && WEXITSTATUS(status) == 0
                                ? "swapped dir/sub for a link"
                                : "came too late");
    CHECK_INT(s_count(victim), S_FILES);
    CHECK(access(dir, F_OK) != 0);  // and all of it is gone
    attempt_remove_dir(victim);
    CHECK(access(victim, F_OK) != 0);
    free(link);
    free(sub);
    free(victim);
    free(dir);
}

// A tree deeper than the descriptors the removal holds at once goes too.
static void
test_remove_dir_deep(void)
{
    char *dir = xasprintf("%s/deep", t_tmpdir());
    REQUIRE(mkdir(dir, 0700) == 0);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    for (int i = 0; i < 300 && fd >= 0; i++) {
        int next = mkdirat(fd, "d", 0700) == 0
                       ? openat(fd, "d", O_RDONLY | O_DIRECTORY)
                       : -1;
        if (next >= 0 && i % 7 == 0) {
            close(openat(next, "f", O_WRONLY | O_CREAT, 0600));
        }
        close(fd);
        fd = next;
    }
    REQUIRE(fd >= 0);
    close(fd);
    attempt_remove_dir(dir);
    CHECK(access(dir, F_OK) != 0);
    free(dir);
}

static const t_case_t t_cases[] = {
    T(test_limits_capped),
    T(test_prepare),
    T(test_refusals),
    T(test_big_input_not_in_env),
    T(test_result),
    T(test_env_scrubbed),
    T(test_no_inputs_no_input_dir),
    T(test_dir_name_is_random),
    T(test_remove_dir_never_follows),
    T(test_remove_dir_deep),
    T(test_many_big_inputs_still_exec),
    T(test_long_id_input_still_execs),
    {0},
};

T_MAIN(t_cases)
