// e2e plan: `waggle-architect plan "GOAL"` against fake_llm (a real HTTP
// server answering from a script), a real broker and a real drone: a valid
// plan on the first reply is submitted and runs; an invalid one (a cycle,
// a missing need, prose and a code fence around it) is repaired with its
// errors sent back; never valid fails and submits nothing; --out saves and
// submits nothing; 429 then success; no terminal and no --yes is refused.
#include "common/json.h"
#include "common/xalloc.h"
#include "tests/harness/llm.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include <errno.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>

// A valid plan: make three words, count them.
static const char s_valid[] =
    "{\"name\": \"wordcount\", \"goal\": \"count the words\", \"tasks\": ["
    "{\"id\": \"make\", \"run\": [\"sh\", \"-c\", \"echo one two three\"], "
    "\"requires\": [\"e2e-tag\"]},"
    "{\"id\": \"count\", \"needs\": [\"make\"], \"run\": [\"sh\", \"-c\", "
    "\"wc -w < \\\"$WAGGLE_INPUT_DIR/make\\\"\"]}]}";

// A cycle (a <-> b) and a need that names no task, inside prose and a fence.
static const char s_invalid[] =
    "Sure! Here is the workplan:\n```json\n"
    "{\"name\": \"bad\", \"tasks\": ["
    "{\"id\": \"a\", \"needs\": [\"b\"], \"run\": [\"true\"]},"
    "{\"id\": \"b\", \"needs\": [\"a\", \"nope\"], \"run\": [\"true\"]}]}\n"
    "```\nLet me know if you need anything else.";

// Script steps, built with the JSON module so nothing needs hand escaping.
static void
s_step(jnode_t *steps, const char *content, const char *expect, ...)
{
    jnode_t *step = json_obj_new();
    json_obj_set_str(step, "content", content);
    jnode_t *ex = json_arr_new();
    va_list ap;
    va_start(ap, expect);
    for (const char *e = expect; e; e = va_arg(ap, const char *)) {
        json_arr_push_str(ex, e);
    }
    va_end(ap);
    json_obj_set_node(step, "expect_contains", &ex);
    json_arr_push_node(steps, &step);
}

static bool
s_start_llm(llm_t *llm, jnode_t **steps)
{
    char *script = json_dump(*steps, false);
    json_destroy(steps);
    *llm = (llm_t){0};
    bool ok = llm_start(llm, t_tmpdir(), script) == 0;
    free(script);
    return ok;
}

// A swarm with one drone offering "e2e-tag", listed before planning.
static bool
s_swarm(swarm_t *s)
{
    swarm_init(s, 100, 2000);
    if (swarm_broker(s, NULL) != 0) {
        return false;
    }
    swarm_drone(s, 2, "e2e-tag", NULL);
    return swarm_wait_drone(s, "e2e-tag", true, -1, 20000);
}

static size_t
s_plan_count(swarm_t *s)
{
    jnode_t *o = swarm_overview(s);
    size_t n = json_arr_size(json_obj_get(o, "plans"));
    json_destroy(&o);
    return n;
}

// The planner may write prompt and gate tasks (the system prompt explains
// both).  Without a drone that offers a model the prompt task is submitted
// and waits, with submit's warning; the gate after it waits for its need.
static const char s_prompted[] =
    "{\"name\": \"summary\", \"tasks\": ["
    "{\"id\": \"make\", \"run\": [\"echo\", \"one two\"]},"
    "{\"id\": \"sum\", \"needs\": [\"make\"], \"max_tokens\": 50,"
    " \"prompt\": \"Summarize {{make.output}}\"},"
    "{\"id\": \"ok\", \"needs\": [\"sum\"], \"gate\": \"ship?\"}]}";

static void
test_prompt_tasks_planned(void)
{
    swarm_t s;
    llm_t llm;
    jnode_t *steps = json_arr_new();
    s_step(steps, s_prompted, "a string sent to a language model",
           "a question for a person", NULL);
    REQUIRE(s_start_llm(&llm, &steps));
    if (!s_swarm(&s)) {
        swarm_stop(&s);
        llm_stop(&llm);
        REQUIRE(false);
    }
    char *out = NULL, *err = NULL;
    int rc = swarm_arch_as(&s, NULL, "submitter", &out, &err, "--model-url",
                           llm.url, "--model", "planner-1", "plan",
                           "summarize", "--yes", NULL);
    CHECK_INT(rc, 0);
    CHECK_INT(llm_count(&llm), 1);
    CHECK_HAS(err, "no connected drone offers 'model'");
    int64_t plan = swarm_last_id(out);
    CHECK(plan > 0);
    CHECK(swarm_wait_task(&s, plan, "make", "succeeded", 30));
    CHECK(swarm_wait_task(&s, plan, "sum", "ready", 30));
    CHECK(swarm_wait_task(&s, plan, "ok", "waiting", 30));
    free(out);
    free(err);
    swarm_stop(&s);
    llm_stop(&llm);
}

static void
test_valid_first_reply(void)
{
    swarm_t s;
    llm_t llm;
    jnode_t *steps = json_arr_new();
    s_step(steps, s_valid, "Goal: count the words", "\"json_object\"",
           "\\\"e2e-tag\\\"", "\"model\":\"planner-1\"", NULL);
    REQUIRE(s_start_llm(&llm, &steps));
    if (!s_swarm(&s)) {
        swarm_stop(&s);
        llm_stop(&llm);
        REQUIRE(false);
    }
    setenv("WAGGLE_MODEL_KEY", "sk-e2e-SECRET-99", 1);
    char *out = NULL, *err = NULL;
    int rc = swarm_arch_as(&s, NULL, "submitter", &out, &err, "--verbose",
                           "--model-url", llm.url, "--model", "planner-1",
                           "plan", "count the words", "--yes", NULL);
    unsetenv("WAGGLE_MODEL_KEY");
    CHECK_INT(rc, 0);
    CHECK_HAS(err, "asking the model");
    CHECK_HAS(err, "POST '");                 // --verbose logged the call
    CHECK(!err || !strstr(err, "sk-e2e-SECRET-99"));
    CHECK(!out || !strstr(out, "sk-e2e-SECRET-99"));
    CHECK_HAS(out, "needs: make");
    CHECK_HAS(out, "requires: e2e-tag");
    int64_t plan = swarm_last_id(out);
    CHECK(plan > 0);
    char state[32];
    swarm_wait_plan(&s, plan, 60, state, sizeof state);
    CHECK_STR(state, "succeeded");
    char id[32], *words = NULL;
    snprintf(id, sizeof id, "%lld", (long long) plan);
    swarm_arch(&s, &words, NULL, "output", id, "count", NULL);
    CHECK_STR(words, "3\n");
    CHECK_INT(llm_count(&llm), 1);
    free(words);
    free(out);
    free(err);
    swarm_stop(&s);
    llm_stop(&llm);
}

static void
test_repaired_on_second_reply(void)
{
    swarm_t s;
    llm_t llm;
    jnode_t *steps = json_arr_new();
    s_step(steps, s_invalid, NULL);
    // The second request must carry the validation errors, with paths.
    // The reply holds another JSON object before the workplan: the one
    // with "tasks" is taken.
    char *fixed = xasprintf("Fixed (the cycle was {\"a\": \"b\"}):\n```\n"
                            "%s\n```", s_valid);
    s_step(steps, fixed, "tasks[1].needs[1]: 'nope' is not a task",
           "cycle: a -> b -> a", "Sure! Here is the workplan", NULL);
    free(fixed);
    REQUIRE(s_start_llm(&llm, &steps));
    if (!s_swarm(&s)) {
        swarm_stop(&s);
        llm_stop(&llm);
        REQUIRE(false);
    }
    char *out = NULL, *err = NULL;
    int rc = swarm_arch_as(&s, NULL, "submitter", &out, &err, "--model-url",
                           llm.url, "--model", "m", "plan", "count the words",
                           "--yes", NULL);
    CHECK_INT(rc, 0);
    CHECK_HAS(err, "repair 1/3: 2 errors");
    CHECK_INT(llm_count(&llm), 2);
    char *log = llm_requests(&llm);
    CHECK_HAS(log, "cycle: a -> b -> a");
    free(log);
    int64_t plan = swarm_last_id(out);
    CHECK(plan > 0);
    char state[32];
    swarm_wait_plan(&s, plan, 60, state, sizeof state);
    CHECK_STR(state, "succeeded");
    free(out);
    free(err);
    swarm_stop(&s);
    llm_stop(&llm);
}

static void
test_never_valid(void)
{
    swarm_t s;
    llm_t llm;
    jnode_t *steps = json_arr_new();
    s_step(steps, s_invalid, NULL);
    s_step(steps, "I cannot do that.", NULL);
    s_step(steps, s_invalid, NULL);
    REQUIRE(s_start_llm(&llm, &steps));
    if (!s_swarm(&s)) {
        swarm_stop(&s);
        llm_stop(&llm);
        REQUIRE(false);
    }
    char *out = NULL, *err = NULL;
    int rc = swarm_arch(&s, &out, &err, "--model-url", llm.url, "--model",
                        "m", "plan", "count the words", "--yes", "--repairs",
                        "2", NULL);
    CHECK_INT(rc, 1);
    CHECK_HAS(err, "repair 1/2: 2 errors");
    CHECK_HAS(err, "repair 2/2: 1 error");
    CHECK_HAS(err, "no valid workplan after 2 repairs");
    CHECK_HAS(err, "cycle: a -> b -> a");
    CHECK_INT(llm_count(&llm), 3);
    CHECK_INT(s_plan_count(&s), 0);
    CHECK_INT(swarm_last_id(out), -1);
    free(out);
    free(err);
    swarm_stop(&s);
    llm_stop(&llm);
}

static void
test_out_saves_and_submits_nothing(void)
{
    swarm_t s;
    llm_t llm;
    jnode_t *steps = json_arr_new();
    s_step(steps, s_valid, NULL);
    REQUIRE(s_start_llm(&llm, &steps));
    if (!s_swarm(&s)) {
        swarm_stop(&s);
        llm_stop(&llm);
        REQUIRE(false);
    }
    char path[600];
    snprintf(path, sizeof path, "%s/planned.json", t_tmpdir());
    char *out = NULL, *err = NULL;
    int rc = swarm_arch(&s, &out, &err, "--model-url", llm.url, "--model",
                        "m", "plan", "count the words", "--out", path,
                        "--json", NULL);
    CHECK_INT(rc, 0);
    CHECK_HAS(err, "nothing submitted");
    jnode_t *j = out ? json_parse(out, strlen(out), NULL, 0) : NULL;
    CHECK(j != NULL);
    CHECK_STR(json_str(json_obj_get(json_obj_get(j, "workplan"), "name")),
              "wordcount");
    CHECK_STR(json_str(json_obj_get(j, "file")), path);
    CHECK(json_obj_get(j, "plan") == NULL);
    CHECK_INT(json_int(json_obj_get(j, "prompt_tokens")), 11);
    json_destroy(&j);
    char *saved = t_read_file(path, NULL);
    CHECK_HAS(saved, "\"wordcount\"");
    free(saved);
    CHECK_INT(s_plan_count(&s), 0);
    // The saved file is a workplan `submit` takes as it is.
    CHECK(swarm_submit(&s, s_valid) > 0);
    free(out);
    free(err);
    swarm_stop(&s);
    llm_stop(&llm);
}

// The same planner over Anthropic's Messages API: the system prompt goes
// top-level, the key as x-api-key, and the reply's text block is the plan.
static void
test_anthropic_api(void)
{
    swarm_t s;
    llm_t llm;
    jnode_t *steps = json_arr_new();
    s_step(steps, s_valid, "\"system\":\"You are the Architect", NULL);
    REQUIRE(s_start_llm(&llm, &steps));
    if (!s_swarm(&s)) {
        swarm_stop(&s);
        llm_stop(&llm);
        REQUIRE(false);
    }
    char key[600];
    snprintf(key, sizeof key, "%s/anthropic.key", t_tmpdir());
    t_write_file(key, "sk-ant-e2e\n");
    chmod(key, 0600);
    char *out = NULL, *err = NULL;
    int rc = swarm_arch(&s, &out, &err, "--model-api", "anthropic",
                        "--model-url", llm.url, "--model", "claude-x",
                        "--model-key-file", key, "plan", "count the words",
                        "--yes", "--json", NULL);
    CHECK_INT(rc, 0);
    jnode_t *j = out ? json_parse(out, strlen(out), NULL, 0) : NULL;
    CHECK(json_int(json_obj_get(j, "plan")) > 0);
    CHECK_INT(json_int(json_obj_get(j, "model_calls")), 1);
    CHECK_STR(json_str(json_obj_get(json_obj_get(j, "workplan"), "name")),
              "wordcount");
    json_destroy(&j);
    CHECK_INT(llm_count(&llm), 1);
    free(out);
    free(err);
    // A key file others may read is refused before anything is asked.
    chmod(key, 0644);
    rc = swarm_arch(&s, &out, &err, "--model-api", "anthropic",
                    "--model-url", llm.url, "--model", "claude-x",
                    "--model-key-file", key, "plan", "x", "--yes", NULL);
    CHECK_INT(rc, 64);
    CHECK_HAS(err, "may be read by others");
    CHECK(!strstr(err, "sk-ant-e2e"));
    CHECK_INT(llm_count(&llm), 1);
    free(out);
    free(err);
    swarm_stop(&s);
    llm_stop(&llm);
}

static void
test_429_then_success(void)
{
    swarm_t s;
    llm_t llm;
    const char *script_head = "[{\"status\": 429, \"headers\": "
                              "{\"Retry-After\": \"1\"}},";
    jnode_t *steps = json_arr_new();
    s_step(steps, s_valid, NULL);
    char *rest = json_dump(steps, false);
    json_destroy(&steps);
    char *script = xasprintf("%s%s", script_head, rest + 1);
    *(&llm) = (llm_t){0};
    bool started = llm_start(&llm, t_tmpdir(), script) == 0;
    free(script);
    free(rest);
    REQUIRE(started);
    if (!s_swarm(&s)) {
        swarm_stop(&s);
        llm_stop(&llm);
        REQUIRE(false);
    }
    char *out = NULL, *err = NULL;
    int rc = swarm_arch(&s, &out, &err, "--model-url", llm.url, "--model",
                        "m", "plan", "count the words", "--yes", NULL);
    CHECK_INT(rc, 0);
    CHECK(swarm_last_id(out) > 0);
    CHECK_INT(llm_count(&llm), 2);
    free(out);
    free(err);
    swarm_stop(&s);
    llm_stop(&llm);
}

// The model's server is gone: a clear error naming it, exit 1, nothing
// submitted.
static void
test_model_unreachable(void)
{
    swarm_t s;
    llm_t llm;
    jnode_t *steps = json_arr_new();
    REQUIRE(s_start_llm(&llm, &steps));
    llm_stop(&llm);
    if (!s_swarm(&s)) {
        swarm_stop(&s);
        REQUIRE(false);
    }
    char *out = NULL, *err = NULL;
    int rc = swarm_arch(&s, &out, &err, "--json", "--model-url", llm.url,
                        "--model", "m", "plan", "count the words", "--yes",
                        NULL);
    CHECK_INT(rc, 1);
    CHECK_HAS(err, "model: cannot connect to 'http://127.0.0.1:");
    CHECK_HAS(out, "\"code\": \"model\"");
    CHECK_INT(s_plan_count(&s), 0);
    free(out);
    free(err);
    swarm_stop(&s);
}

// A model server that never answers: --model-timeout-s ends the wait.
static void
test_model_hangs(void)
{
    swarm_t s;
    llm_t llm;
    REQUIRE(llm_start(&llm, t_tmpdir(), "[{\"content\": \"x\", \"hang\": "
                                        "true}]") == 0);
    if (!s_swarm(&s)) {
        swarm_stop(&s);
        llm_stop(&llm);
        REQUIRE(false);
    }
    char *out = NULL, *err = NULL;
    int rc = swarm_arch(&s, &out, &err, "--model-url", llm.url, "--model",
                        "m", "plan", "count the words", "--yes",
                        "--model-timeout-s", "1", NULL);
    CHECK_INT(rc, 1);
    CHECK_HAS(err, "model: timed out waiting for");
    CHECK_INT(s_plan_count(&s), 0);
    free(out);
    free(err);
    swarm_stop(&s);
    llm_stop(&llm);
}

static void
test_no_terminal_refused(void)
{
    llm_t llm;
    jnode_t *steps = json_arr_new();
    s_step(steps, s_valid, NULL);
    REQUIRE(s_start_llm(&llm, &steps));
    swarm_t s;
    swarm_init(&s, 100, 2000);
    char *out = NULL, *err = NULL;
    // stdin is /dev/null: nobody to confirm, so nothing is asked at all.
    int rc = swarm_arch(&s, &out, &err, "--model-url", llm.url, "--model",
                        "m", "plan", "count the words", NULL);
    CHECK_INT(rc, 64);
    CHECK_HAS(err, "no terminal to confirm on");
    CHECK_INT(llm_count(&llm), 0);
    free(out);
    free(err);
    // No model settings at all: a usage error that names them.
    rc = swarm_arch(&s, &out, &err, "plan", "x", "--yes", NULL);
    CHECK_INT(rc, 64);
    CHECK_HAS(err, "WAGGLE_MODEL_URL");
    free(out);
    free(err);
    swarm_stop(&s);
    llm_stop(&llm);
}

// Reads from fd into buf (NUL-terminated) until want appears, EOF, or
// timeout_ms; true when want appeared.
static bool
s_read_until(int fd, char *buf, size_t len, size_t *n, const char *want,
             int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 100) {
        if (want && strstr(buf, want)) {
            return true;
        }
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0) {
            continue;
        }
        ssize_t r = read(fd, buf + *n, len - *n - 1);
        if (r <= 0) {
            return false;  // EIO once the child has gone
        }
        *n += (size_t) r;
        buf[*n] = '\0';
    }
    return want && strstr(buf, want);
}

// Runs plan on a pseudo-terminal (stdin, stdout and stderr), answers its
// question with answer, and returns the exit code (-1 if it never asked
// or never ended); what it wrote lands in buf.
static int
s_plan_on_tty(swarm_t *s, const llm_t *llm, const char *answer, char *buf,
              size_t len)
{
    const char *bin = swarm_bin("waggle-architect");
    int master = -1;
    pid_t pid = forkpty(&master, NULL, NULL, NULL);
    if (pid == 0) {
        execl(bin, bin, "--broker", s->endpoint, "--keys", s->keys,
              "--model-url", llm->url, "--model", "m", "plan",
              "count the words", (char *) NULL);
        _exit(127);
    }
    if (pid < 0) {
        return -1;
    }
    size_t n = 0;
    buf[0] = '\0';
    bool asked = s_read_until(master, buf, len, &n, "[y/N]", 30000);
    if (asked) {
        CHECK(write(master, answer, strlen(answer)) > 0);
        s_read_until(master, buf, len, &n, NULL, 30000);
    }
    int status = 0;
    if (!asked) {
        kill(pid, SIGKILL);
    }
    waitpid(pid, &status, 0);
    close(master);
    return asked && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void
test_confirm_on_terminal(void)
{
    swarm_t s;
    llm_t llm;
    jnode_t *steps = json_arr_new();
    s_step(steps, s_valid, NULL);
    s_step(steps, s_valid, NULL);
    REQUIRE(s_start_llm(&llm, &steps));
    if (!s_swarm(&s)) {
        swarm_stop(&s);
        llm_stop(&llm);
        REQUIRE(false);
    }
    char buf[16384];
    // No: nothing is submitted.
    CHECK_INT(s_plan_on_tty(&s, &llm, "n\n", buf, sizeof buf), 1);
    CHECK_HAS(buf, "needs: make");
    CHECK_HAS(buf, "not submitted");
    CHECK_INT(s_plan_count(&s), 0);
    // Yes: submitted, and the plan id is the last line.
    CHECK_INT(s_plan_on_tty(&s, &llm, "y\n", buf, sizeof buf), 0);
    CHECK_INT(s_plan_count(&s), 1);
    for (char *cr; (cr = strchr(buf, '\r'));) {
        memmove(cr, cr + 1, strlen(cr));
    }
    CHECK(swarm_last_id(buf) > 0);
    swarm_stop(&s);
    llm_stop(&llm);
}

static const t_case_t t_cases[] = {
    T(test_valid_first_reply),
    T(test_prompt_tasks_planned),
    T(test_repaired_on_second_reply),
    T(test_never_valid),
    T(test_out_saves_and_submits_nothing),
    T(test_429_then_success),
    T(test_anthropic_api),
    T(test_model_unreachable),
    T(test_model_hangs),
    T(test_no_terminal_refused),
    T(test_confirm_on_terminal),
    {0},
};

T_MAIN(t_cases)
