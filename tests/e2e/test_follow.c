// e2e: `output PLAN TASK --follow` — a running task's lines arrive while it
// runs (the drone's TAIL, the broker's memory), then the final output, and
// the exit status is the task's outcome; hostile bytes come out escaped.
#include "common/json.h"
#include "tests/harness/llm.h"
#include "tests/harness/proc.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

// Six lines over about three seconds, an escape sequence, then the end;
// it exits with exit_code.
static void
s_slow(char *json, size_t len, int exit_code)
{
    snprintf(json, len,
             "{\"name\":\"slow\",\"tasks\":[{\"id\":\"talk\",\"retries\":0,"
             "\"run\":[\"sh\",\"-c\",\"for i in 1 2 3 4 5 6; do echo line$i;"
             " sleep 0.5; done; printf 'x\\\\033[31mred\\\\n'; echo done;"
             " exit %d\"]}]}", exit_code);
}

static pid_t
s_follower(swarm_t *s, int64_t plan, const char *task, int *fd)
{
    char id[32], log[700];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    snprintf(log, sizeof log, "%s/follow.log", s->dir);
    char *argv[] = {(char *) swarm_bin("waggle-architect"), "--broker",
                    s->endpoint, "--keys", s->keys, "output", id,
                    (char *) task, "--follow", NULL};
    return proc_spawn(argv, log, fd);
}

// `output PLAN TASK --follow` to its end: its exit code, stdout in *out.
static int
s_follow_out(swarm_t *s, int64_t plan, const char *task, char **out)
{
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    return swarm_arch(s, out, NULL, "output", id, task, "--follow", NULL);
}

static void
s_follow(int exit_code, int want_status)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    swarm_drone(&s, 1, NULL, NULL);
    char json[512];
    s_slow(json, sizeof json, exit_code);
    int64_t plan = swarm_submit(&s, json);
    SWARM_REQUIRE(&s, plan > 0);
    int fd = -1;
    pid_t f = s_follower(&s, plan, "talk", &fd);
    SWARM_REQUIRE(&s, f > 0);
    char line[512];
    // An early line arrives while the task still runs.
    CHECK_INT(proc_read_line(fd, "line2", 20000, line, sizeof line), 0);
    char state[32];
    swarm_task_state(&s, plan, "talk", state, sizeof state);
    CHECK_STR(state, "leased");
    CHECK_INT(proc_read_line(fd, "line3", 20000, line, sizeof line), 0);
    // The escape sequence is shown escaped, not obeyed.
    CHECK_INT(proc_read_line(fd, "x", 20000, line, sizeof line), 0);
    CHECK_STR(line, "x\\x1b[31mred");
    CHECK_INT(proc_read_line(fd, "done", 20000, line, sizeof line), 0);
    int status = -1;
    CHECK_INT(proc_wait(f, 20000, &status), 0);
    CHECK(WIFEXITED(status));
    CHECK_INT(WEXITSTATUS(status), want_status);
    // Each line once: nothing printed twice between the tail and the end.
    char log[700];
    snprintf(log, sizeof log, "%s/follow.log", s.dir);
    CHECK(swarm_log_has(log, "task 'talk' ", NULL));
    close(fd);
    swarm_stop(&s);
}

static void
test_follow_running_task(void)
{
    s_follow(0, 0);
}

static void
test_follow_failing_task_exits_1(void)
{
    s_follow(3, 1);
}

// Every line exactly once, in order, whatever the polls saw.
static void
test_follow_prints_each_line_once(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    swarm_drone(&s, 1, NULL, NULL);
    char json[512];
    s_slow(json, sizeof json, 0);
    int64_t plan = swarm_submit(&s, json);
    SWARM_REQUIRE(&s, plan > 0);
    SWARM_REQUIRE(&s, swarm_wait_task(&s, plan, "talk", "leased", 30));
    char *out = NULL;
    CHECK_INT(s_follow_out(&s, plan, "talk", &out), 0);
    CHECK_STR(out, "line1\nline2\nline3\nline4\nline5\nline6\n"
                   "x\\x1b[31mred\ndone\n");
    free(out);
    // A finished task: its output at once, and its outcome.
    CHECK_INT(s_follow_out(&s, plan, "talk", &out), 0);
    CHECK(out && strstr(out, "line6\n") != NULL);
    free(out);
    CHECK_INT(s_follow_out(&s, plan, "nope", NULL), 4);
    CHECK_INT(swarm_arch(&s, NULL, NULL, "output", "999", "talk", "--follow",
                         NULL), 4);
    swarm_stop(&s);
}

// A prompt task: nothing to show until the model replies (the reply is
// its output), then the reply, and exit 0.
static void
test_follow_prompt_task(void)
{
    llm_t llm = {0};
    REQUIRE(llm_start(&llm, t_tmpdir(),
                      "[{\"content\": \"the model's reply\","
                      " \"delay_ms\": 2000}]") == 0);
    swarm_t s;
    swarm_init(&s, 100, 4000);
    SWARM_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    swarm_drone(&s, 1, "solo", "--model-url", llm.url, "--model", "tiny",
                "--model-timeout-s", "60", NULL);
    SWARM_REQUIRE(&s, swarm_wait_drone(&s, "solo", true, -1, 20000));
    int64_t plan = swarm_submit(
        &s, "{\"name\": \"p\", \"tasks\": [{\"id\": \"ask\","
            " \"prompt\": \"hello\"}]}");
    SWARM_REQUIRE(&s, plan > 0);
    SWARM_REQUIRE(&s, swarm_wait_task(&s, plan, "ask", "leased", 30));
    char *out = NULL;
    CHECK_INT(s_follow_out(&s, plan, "ask", &out), 0);
    CHECK_STR(out, "the model's reply");
    free(out);
    swarm_stop(&s);
    llm_stop(&llm);
}

static const t_case_t t_cases[] = {
    T(test_follow_prompt_task),
    T(test_follow_running_task),
    T(test_follow_failing_task_exits_1),
    T(test_follow_prints_each_line_once),
    {0},
};

T_MAIN(t_cases)
