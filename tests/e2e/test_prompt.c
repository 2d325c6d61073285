// e2e prompt: prompt tasks on a real drone against fake_llm (a real HTTP
// server answering from a script): a run task feeding a prompt task — the
// request the server saw holds the dependency's output, the system
// message, max_tokens and the key (as a header), and the reply is the
// task's output; a refused key fails the attempt with a clear error; a
// hanging model ends within about a second of a cancel; the key never
// reaches a task's environment, the drone's --verbose log or the model
// call's argv and environment; and the "done when": `plan --yes`
// makes a mixed run/prompt plan under a budget that model drones finish.
#include "common/clock.h"
#include "common/json.h"
#include "common/xalloc.h"
#include "tests/harness/llm.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_KEY "sk-e2e-SECRET-4711"

static bool
s_start_llm(llm_t *llm, const char *script)
{
    *llm = (llm_t){0};
    return llm_start(llm, t_tmpdir(), script) == 0;
}

static char *
s_key_file(const swarm_t *s)
{
    char *path = xasprintf("%s/model.key", s->dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
        (void) !write(fd, S_KEY "\n", strlen(S_KEY) + 1);
        close(fd);
    }
    return path;
}

// A swarm whose one drone has the fake model "tiny" (and tag e2e-tag),
// its tasks confined as isolation says (the harness's default: subreaper).
static bool
s_swarm_api(swarm_t *s, const llm_t *llm, char **key_file,
            const char *isolation, const char *api)
{
    swarm_init(s, 100, 2000);
    if (swarm_broker(s, NULL) != 0) {
        return false;
    }
    *key_file = s_key_file(s);
    swarm_drone(s, 2, "e2e-tag", "--model-url", llm->url, "--model", "tiny",
                "--model-key-file", *key_file, "--model-timeout-s", "60",
                "--isolation", isolation, "--model-api", api, "--verbose",
                NULL);
    return swarm_wait_drone(s, "model:tiny", true, -1, 20000);
}

static bool
s_swarm_iso(swarm_t *s, const llm_t *llm, char **key_file,
            const char *isolation)
{
    return s_swarm_api(s, llm, key_file, isolation, "openai");
}

static bool
s_swarm(swarm_t *s, const llm_t *llm, char **key_file)
{
    return s_swarm_iso(s, llm, key_file, "subreaper");
}

static int64_t
s_submit(swarm_t *s, const char *json)
{
    return swarm_submit(s, json);
}

static char *
s_output(swarm_t *s, int64_t plan, const char *task)
{
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    char *out = NULL;
    if (swarm_arch(s, &out, NULL, "output", id, task, NULL) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

static const jnode_t *
s_task(const jnode_t *st, const char *id)
{
    const jnode_t *tasks = json_obj_get(st, "tasks");
    for (size_t i = 0; i < json_arr_size(tasks); i++) {
        const jnode_t *t = json_arr_get(tasks, i);
        if (strcmp(json_str(json_obj_get(t, "id")), id) == 0) {
            return t;
        }
    }
    return NULL;
}

static char *
s_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        return NULL;
    }
    char *buf = xcalloc(1, 1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    if (len) {
        *len = n;
    }
    return buf;
}

static bool
s_mem_has(const char *buf, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++) {
        if (memcmp(buf + i, needle, n) == 0) {
            return true;
        }
    }
    return false;
}

static const char s_flow[] =
    "{\"name\": \"summarize\", \"tasks\": ["
    "{\"id\": \"make\", \"run\": [\"sh\", \"-c\", \"echo one two three; env\"]},"
    "{\"id\": \"sum\", \"needs\": [\"make\"], \"model\": \"tiny\","
    " \"system\": \"be brief\", \"max_tokens\": 50, \"temperature\": 0.2,"
    " \"prompt\": \"Summarize:\\n{{make.output}}\"}]}";

static void
test_run_feeds_prompt(void)
{
    llm_t llm;
    REQUIRE(s_start_llm(&llm,
        "[{\"content\": \"three words\", \"prompt_tokens\": 11,"
        " \"completion_tokens\": 7,"
        " \"expect_contains\": [\"one two three\", \"be brief\","
        " \"\\\"max_tokens\\\":50\", \"\\\"model\\\":\\\"tiny\\\"\"],"
        " \"expect_headers\": [\"Bearer " S_KEY "\"]}]"));
    swarm_t s;
    char *key_file = NULL;
    REQUIRE(s_swarm(&s, &llm, &key_file));
    int64_t plan = s_submit(&s, s_flow);
    REQUIRE(plan > 0);
    char state[64];
    swarm_wait_plan(&s, plan, 60, state, sizeof state);
    CHECK_STR(state, "succeeded");
    char *out = s_output(&s, plan, "sum");
    CHECK_STR(out, "three words");
    free(out);
    char *reqs = llm_requests(&llm);
    CHECK_HAS(reqs, "Summarize:\\none two three");
    CHECK_INT(llm_count(&llm), 1);
    // Tokens per task and per plan, from the ledger.
    jnode_t *st = swarm_status(&s, plan);
    REQUIRE(st);
    const jnode_t *sum = s_task(st, "sum"), *make = s_task(st, "make");
    REQUIRE(sum && make);
    CHECK_INT(json_int(json_obj_get(sum, "prompt_tokens")), 11);
    CHECK_INT(json_int(json_obj_get(sum, "completion_tokens")), 7);
    CHECK_INT(json_int(json_obj_get(make, "prompt_tokens")), 0);
    const jnode_t *pl = st;  // the plan's fields are at the top
    CHECK_INT(json_int(json_obj_get(pl, "prompt_tokens")), 11);
    CHECK_INT(json_int(json_obj_get(pl, "completion_tokens")), 7);
    json_destroy(&st);
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    char *text = NULL;
    CHECK_INT(swarm_arch(&s, &text, NULL, "status", id, NULL), 0);
    CHECK_HAS(text, "tokens: 11 prompt + 7 completion");
    CHECK_HAS(text, "tokens 11+7");
    free(text);
    // The whole environment of the run task: no key there.
    char *env = s_output(&s, plan, "make");
    REQUIRE(env);
    CHECK_HAS(env, "WAGGLE_TASK=make");
    CHECK(!strstr(env, S_KEY));
    free(env);
    free(reqs);
    char log[700];
    snprintf(log, sizeof log, "%s/drone-0.log", s.dir);
    CHECK(swarm_log_has(log, "task 'sum'", NULL));
    CHECK(!swarm_log_has(log, S_KEY, NULL));
    swarm_stop(&s);
    llm_stop(&llm);
    free(key_file);
}

// A refused key (401) fails the attempt, saying so; retries are spent on
// it like on any failure.
static void
test_refused_key(void)
{
    llm_t llm;
    REQUIRE(s_start_llm(&llm,
        "[{\"status\": 401, \"body\": \"{\\\"error\\\": \\\"bad key\\\"}\"}]"));
    swarm_t s;
    char *key_file = NULL;
    REQUIRE(s_swarm(&s, &llm, &key_file));
    int64_t plan = s_submit(&s,
        "{\"name\": \"p\", \"tasks\": [{\"id\": \"ask\", \"prompt\": \"hi\","
        " \"retries\": 0}]}");
    REQUIRE(plan > 0);
    char state[64];
    swarm_wait_plan(&s, plan, 60, state, sizeof state);
    CHECK_STR(state, "failed");
    jnode_t *st = swarm_status(&s, plan);
    REQUIRE(st);
    const jnode_t *t = s_task(st, "ask");
    REQUIRE(t);
    const char *err = json_str(json_obj_get(t, "last_error"));
    CHECK_HAS(err, "model call failed");
    CHECK_HAS(err, "401");
    json_destroy(&st);
    swarm_stop(&s);
    llm_stop(&llm);
    free(key_file);
}

// A reply cut at max_tokens fails the attempt and still counts its
// tokens; a model that never answers is ended at the task's timeout_s.
static void
test_length_and_timeout(void)
{
    llm_t llm;
    REQUIRE(s_start_llm(&llm,
        "[{\"content\": \"half a sent\", \"finish_reason\": \"length\","
        " \"prompt_tokens\": 4, \"completion_tokens\": 9},"
        " {\"hang\": true}]"));
    swarm_t s;
    char *key_file = NULL;
    REQUIRE(s_swarm(&s, &llm, &key_file));
    int64_t plan = s_submit(&s,
        "{\"name\": \"p\", \"tasks\": [{\"id\": \"ask\", \"prompt\": \"hi\","
        " \"max_tokens\": 9, \"retries\": 0}]}");
    REQUIRE(plan > 0);
    char state[64];
    swarm_wait_plan(&s, plan, 60, state, sizeof state);
    CHECK_STR(state, "failed");
    jnode_t *st = swarm_status(&s, plan);
    REQUIRE(st);
    const jnode_t *t = s_task(st, "ask");
    REQUIRE(t);
    CHECK_HAS(json_str(json_obj_get(t, "last_error")), "model call failed");
    CHECK_HAS(json_str(json_obj_get(t, "last_error")), "length");
    CHECK_INT(json_int(json_obj_get(t, "completion_tokens")), 9);
    CHECK_INT(json_int(json_obj_get(st, "prompt_tokens")), 4);
    json_destroy(&st);

    int64_t t0 = clock_mono_ms();
    plan = s_submit(&s,
        "{\"name\": \"q\", \"tasks\": [{\"id\": \"ask\", \"prompt\": \"hi\","
        " \"timeout_s\": 1, \"retries\": 0}]}");
    REQUIRE(plan > 0);
    swarm_wait_plan(&s, plan, 60, state, sizeof state);
    CHECK_STR(state, "failed");
    CHECK(clock_mono_ms() - t0 < 15000);
    st = swarm_status(&s, plan);
    REQUIRE(st);
    t = s_task(st, "ask");
    REQUIRE(t);
    CHECK_HAS(json_str(json_obj_get(t, "last_error")), "timed out");
    CHECK_INT(json_int(json_obj_get(t, "prompt_tokens")), 0);
    json_destroy(&st);
    swarm_stop(&s);
    llm_stop(&llm);
    free(key_file);
}

// The pid of a process whose command line holds needle, or -1.
// True when pid runs in a directory below dir: a process of this test's
// swarm (its drones' attempts live under the swarm's directory), not of
// another test running at the same time.
static bool
s_runs_below(long pid, const char *dir)
{
    char path[64], cwd[1024];
    snprintf(path, sizeof path, "/proc/%ld/cwd", pid);
    ssize_t n = readlink(path, cwd, sizeof cwd - 1);
    if (n < 0) {
        return false;
    }
    cwd[n] = '\0';
    return strncmp(cwd, dir, strlen(dir)) == 0;
}

static pid_t
s_find_proc(const char *needle, const char *below)
{
    DIR *dir = opendir("/proc");
    pid_t found = -1;
    struct dirent *e;
    while (dir && found < 0 && (e = readdir(dir))) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0) {
            continue;
        }
        char path[64];
        snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
        size_t len = 0;
        char *buf = s_slurp(path, &len);
        // Not the call's init, whose argv holds the call's.
        if (buf && s_mem_has(buf, len, needle)
            && !s_mem_has(buf, len, "waggle-task-init")
            && s_runs_below(pid, below)) {
            found = (pid_t) pid;
        }
        free(buf);
    }
    if (dir) {
        closedir(dir);
    }
    return found;
}

static bool
s_alive(pid_t pid)
{
    char path[64], *buf;
    snprintf(path, sizeof path, "/proc/%d/stat", (int) pid);
    size_t len = 0;
    buf = s_slurp(path, &len);
    // Gone, or a zombie waiting for its reaper.
    bool alive = buf && !strstr(buf, ") Z ");
    free(buf);
    return alive;
}

// The model never answers; cancel ends the call within about a second.
// Meanwhile: the key is neither in the call's argv nor in its environment.
static void
test_hang_then_cancel(void)
{
    llm_t llm;
    REQUIRE(s_start_llm(&llm, "[{\"hang\": true}]"));
    swarm_t s;
    char *key_file = NULL;
    REQUIRE(s_swarm(&s, &llm, &key_file));
    int64_t plan = s_submit(&s,
        "{\"name\": \"p\", \"tasks\": [{\"id\": \"ask\", \"prompt\": \"hi\"}]}");
    REQUIRE(plan > 0);
    int64_t until = clock_mono_ms() + 30000;
    while (llm_count(&llm) < 1 && clock_mono_ms() < until) {
        usleep(20000);
    }
    REQUIRE(llm_count(&llm) == 1);
    pid_t pid = s_find_proc("model-call", s.dir);
    REQUIRE(pid > 0);
    char path[64];
    size_t len = 0;
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int) pid);
    char *buf = s_slurp(path, &len);
    CHECK(buf && !s_mem_has(buf, len, S_KEY));
    free(buf);
    snprintf(path, sizeof path, "/proc/%d/environ", (int) pid);
    buf = s_slurp(path, &len);
    CHECK(buf && len > 0 && s_mem_has(buf, len, "WAGGLE_TASK=ask"));
    CHECK(buf && !s_mem_has(buf, len, S_KEY));
    free(buf);
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    int64_t t0 = clock_mono_ms();
    CHECK_INT(swarm_arch(&s, NULL, NULL, "cancel", id, NULL), 0);
    while (s_alive(pid) && clock_mono_ms() - t0 < 10000) {
        usleep(10000);
    }
    int64_t took = clock_mono_ms() - t0;
    CHECK(!s_alive(pid));
    fprintf(stderr, "cancel ended the model call in %lld ms\n",
            (long long) took);
    CHECK(took < 1500);
    swarm_stop(&s);
    llm_stop(&llm);
    free(key_file);
}

// In a PID and mount namespace of its own the model call still reaches
// the endpoint: the drone does not unshare the network.
static void
test_pidns(void)
{
    if (geteuid() != 0) {
        t_skip("needs root");
        return;
    }
    llm_t llm;
    REQUIRE(s_start_llm(&llm,
        "[{\"content\": \"from a namespace\", \"prompt_tokens\": 3,"
        " \"completion_tokens\": 2}]"));
    swarm_t s;
    char *key_file = NULL;
    REQUIRE(s_swarm_iso(&s, &llm, &key_file, "pidns"));
    int64_t plan = s_submit(&s,
        "{\"name\": \"p\", \"tasks\": [{\"id\": \"ask\", \"prompt\": \"hi\"}]}");
    REQUIRE(plan > 0);
    char state[64];
    swarm_wait_plan(&s, plan, 60, state, sizeof state);
    CHECK_STR(state, "succeeded");
    char *out = s_output(&s, plan, "ask");
    CHECK_STR(out, "from a namespace");
    free(out);
    swarm_stop(&s);
    llm_stop(&llm);
    free(key_file);
}

// --model-api anthropic: the Messages API behind the same drone flags.
static void
test_anthropic(void)
{
    llm_t llm;
    REQUIRE(s_start_llm(&llm,
        "[{\"content\": \"bonjour\", \"prompt_tokens\": 2,"
        " \"completion_tokens\": 1,"
        " \"expect_contains\": [\"\\\"system\\\":\\\"be brief\\\"\"],"
        " \"expect_headers\": [\"x-api-key: " S_KEY "\"]}]"));
    swarm_t s;
    char *key_file = NULL;
    REQUIRE(s_swarm_api(&s, &llm, &key_file, "subreaper", "anthropic"));
    int64_t plan = s_submit(&s,
        "{\"name\": \"p\", \"tasks\": [{\"id\": \"ask\", \"prompt\": \"hi\","
        " \"system\": \"be brief\"}]}");
    REQUIRE(plan > 0);
    char state[64];
    swarm_wait_plan(&s, plan, 60, state, sizeof state);
    CHECK_STR(state, "succeeded");
    char *out = s_output(&s, plan, "ask");
    CHECK_STR(out, "bonjour");
    free(out);
    jnode_t *st = swarm_status(&s, plan);
    REQUIRE(st);
    CHECK_INT(json_int(json_obj_get(st, "prompt_tokens")), 2);
    CHECK_INT(json_int(json_obj_get(st, "completion_tokens")), 1);
    json_destroy(&st);
    swarm_stop(&s);
    llm_stop(&llm);
    free(key_file);
}


// The "done when", end to end on one fake server: `plan --yes`
// gets a workplan mixing run and prompt tasks under a token budget,
// submits it, and model drones run it; each prompt request holds what its
// needs produced, and the plan ends within its budget.
static const char s_planned[] =
    "{\"name\": \"digest\", \"budget\": {\"tokens\": 400}, \"tasks\": ["
    "{\"id\": \"make\", \"run\": [\"sh\", \"-c\", \"echo one two three\"]},"
    "{\"id\": \"sum\", \"needs\": [\"make\"], \"max_tokens\": 100,"
    " \"prompt\": \"Summarize: {{make.output}}\"},"
    "{\"id\": \"title\", \"needs\": [\"make\"], \"max_tokens\": 100,"
    " \"prompt\": \"Title for: {{make.output}}\"},"
    "{\"id\": \"both\", \"needs\": [\"sum\", \"title\"], \"max_tokens\": 100,"
    " \"prompt\": \"Join [{{sum.output}}] and [{{title.output}}]\"}]}";

static void
s_push_step(jnode_t *steps, const char *content, const char *expect)
{
    jnode_t *step = json_obj_new();
    json_obj_set_str(step, "content", content);
    json_obj_set_int(step, "prompt_tokens", 20);
    json_obj_set_int(step, "completion_tokens", 10);
    jnode_t *ex = json_arr_new();
    json_arr_push_str(ex, expect);
    json_obj_set_node(step, "expect_contains", &ex);
    json_arr_push_node(steps, &step);
}

static void
test_planned_within_budget(void)
{
    jnode_t *steps = json_arr_new();
    s_push_step(steps, s_planned, "make a digest");
    s_push_step(steps, "three words", "one two three");
    s_push_step(steps, "three words", "one two three");
    s_push_step(steps, "digest done", "Join [three words] and [three words]");
    char *script = json_dump(steps, false);
    json_destroy(&steps);
    llm_t llm;
    bool started = s_start_llm(&llm, script);
    free(script);
    REQUIRE(started);
    swarm_t s;
    char *key_file = NULL;
    REQUIRE(s_swarm(&s, &llm, &key_file));
    char *out = NULL, *err = NULL;
    int rc = swarm_arch_as(&s, NULL, "submitter", &out, &err, "--model-url",
                           llm.url, "--model", "planner", "plan",
                           "make a digest", "--yes", NULL);
    CHECK_INT(rc, 0);
    int64_t plan = swarm_last_id(out);
    REQUIRE(plan > 0);
    char state[64];
    swarm_wait_plan(&s, plan, 90, state, sizeof state);
    CHECK_STR(state, "succeeded");
    char *both = s_output(&s, plan, "both");
    CHECK_STR(both, "digest done");
    free(both);
    CHECK_INT(llm_count(&llm), 4);
    jnode_t *st = swarm_status(&s, plan);
    REQUIRE(st);
    // Three prompt calls of 20+10: 90 of the 400 budgeted; the planner's
    // own call is the architect's, not the plan's.
    int64_t used = json_int(json_obj_get(st, "prompt_tokens")) +
                   json_int(json_obj_get(st, "completion_tokens"));
    CHECK_INT(used, 90);
    json_destroy(&st);
    free(out);
    free(err);
    swarm_stop(&s);
    llm_stop(&llm);
    free(key_file);
}

static const t_case_t t_cases[] = {
    T(test_planned_within_budget),
    T(test_run_feeds_prompt),
    T(test_refused_key),
    T(test_length_and_timeout),
    T(test_hang_then_cancel),
    T(test_pidns),
    T(test_anthropic),
    {0},
};

T_MAIN(t_cases)
