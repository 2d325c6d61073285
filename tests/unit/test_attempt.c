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
    char *why = attempt_prepare(&a, &t, t_tmpdir());
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
    attempt_remove_dir(a.input_dir);
    struct stat st;
    CHECK(stat(a.input_dir, &st) < 0);
    attempt_release(&a);
    free(a.input_dir);
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
    char *why = attempt_prepare(&a, &t, t_tmpdir());
    CHECK_HAS(why, "NUL");
    free(why);
    attempt_release(&a);
    attempt_remove_dir(a.input_dir);
    free(a.input_dir);

    in[0].truncated = true;
    t.argv.count = 1;
    a = (attempt_t){0};
    why = attempt_prepare(&a, &t, t_tmpdir());
    CHECK_HAS(why, "input 'x' was truncated at the output cap");
    free(why);
    attempt_release(&a);
    attempt_remove_dir(a.input_dir);
    free(a.input_dir);
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
    char *why = attempt_prepare(&a, &t, t_tmpdir());
    CHECK(why == NULL);
    CHECK(s_env(a.envp, "WAGGLE_INPUT_BIG") == NULL);
    attempt_release(&a);
    attempt_remove_dir(a.input_dir);
    free(a.input_dir);
    free(big);
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

static const t_case_t t_cases[] = {
    T(test_prepare),
    T(test_refusals),
    T(test_big_input_not_in_env),
    T(test_result),
    {0},
};

T_MAIN(t_cases)
