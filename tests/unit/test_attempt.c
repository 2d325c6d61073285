// Unit tests for attempt: inputs on disk, argv templates, environment,
// and RESULT bodies from finished children.
#include "drone/attempt.h"
#include "tests/harness/t.h"

#include "common/xalloc.h"

#include <sys/stat.h>

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
    CHECK(strcmp(a.input_dir, b.input_dir) != 0);
    // BASE/<32 random hex digits>/inputs, not BASE/<token>: the token is
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

static const t_case_t t_cases[] = {
    T(test_limits_capped),
    T(test_prepare),
    T(test_refusals),
    T(test_big_input_not_in_env),
    T(test_result),
    T(test_env_scrubbed),
    T(test_dir_name_is_random),
    {0},
};

T_MAIN(t_cases)
