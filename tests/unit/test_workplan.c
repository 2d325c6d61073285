// test_workplan: parsing, every validation error, canonical JSON, templates.
#include "common/workplan.h"

#include "common/xalloc.h"
#include "tests/harness/t.h"

static const char s_example[] =
    "{\n"
    "  \"name\": \"release-notes\",\n"
    "  \"goal\": \"Draft release notes for v2.1 and publish them after "
    "review\",\n"
    "  \"defaults\": {\"timeout_s\": 600, \"retries\": 2},\n"
    "  \"tasks\": [\n"
    "    {\"id\": \"log\",     \"run\": [\"git\", \"log\", \"--oneline\", "
    "\"v2.0..HEAD\"]},\n"
    "    {\"id\": \"draft\",   \"needs\": [\"log\"], \"prompt\": \"Write "
    "release notes from:\\n{{log.output}}\"},\n"
    "    {\"id\": \"review\",  \"needs\": [\"draft\"], \"gate\": \"Publish "
    "these notes?\"},\n"
    "    {\"id\": \"publish\", \"needs\": [\"review\"], \"run\": "
    "[\"./publish.sh\"], \"requires\": [\"github\"]}\n"
    "  ]\n"
    "}\n";

// A plan named "t" holding the given tasks (a JSON fragment); caller frees.
static char *
s_plan(const char *tasks)
{
    return xasprintf("{\"name\": \"t\", \"tasks\": [%s]}", tasks);
}

static workplan_t *
s_parse_ok(const char *text)
{
    workplan_t *wp = NULL;
    wp_errors_t errs = {0};
    if (workplan_parse(text, strlen(text), &wp, &errs) != 0) {
        char *all = wp_errors_format(&errs);
        fprintf(stderr, "unexpected errors:\n%s\n", all);
        free(all);
    }
    CHECK_INT(errs.count, 0);
    wp_errors_release(&errs);
    return wp;
}

// Parses text, which must fail with an error at path carrying message.
static void
s_expect(int line, const char *text, const char *path, const char *message)
{
    workplan_t *wp = NULL;
    wp_errors_t errs = {0};
    int rc = workplan_parse(text, strlen(text), &wp, &errs);
    bool found = false;
    for (size_t i = 0; i < errs.count; i++) {
        found = found || (strcmp(errs.items[i].path, path) == 0
                          && strcmp(errs.items[i].message, message) == 0);
    }
    if (rc != -1 || wp || !found) {
        char *all = wp_errors_format(&errs);
        fprintf(stderr, "line %d: wanted \"%s: %s\"\n  in %s\n  got:\n%s\n",
                line, path, message, text, all);
        free(all);
        t_failures++;
    }
    workplan_destroy(&wp);
    wp_errors_release(&errs);
}

#define EXPECT(text, path, message) s_expect(__LINE__, (text), (path), (message))

// As EXPECT, for a plan holding the given tasks.
#define EXPECT_TASKS(tasks, path, message)                                    \
    do {                                                                      \
        char *t_text_ = s_plan(tasks);                                        \
        s_expect(__LINE__, t_text_, (path), (message));                       \
        free(t_text_);                                                        \
    } while (0)

static void
test_example_parses(void)
{
    workplan_t *wp = s_parse_ok(s_example);
    REQUIRE(wp);
    CHECK_STR(wp->name, "release-notes");
    CHECK_HAS(wp->goal, "release notes for v2.1");
    REQUIRE(wp->n_tasks == 4);
    const wp_task_t *t = wp->tasks;
    CHECK_STR(t[0].id, "log");
    CHECK_INT(t[0].kind, WP_KIND_RUN);
    CHECK_INT(t[0].n_argv, 4);
    CHECK_STR(t[0].argv[3], "v2.0..HEAD");
    CHECK_INT(t[0].n_needs, 0);
    CHECK_INT(t[1].kind, WP_KIND_PROMPT);
    CHECK_STR(t[1].prompt, "Write release notes from:\n{{log.output}}");
    CHECK_INT(t[1].n_needs, 1);
    CHECK_INT(t[1].need_idx[0], 0);
    CHECK_INT(t[2].kind, WP_KIND_GATE);
    CHECK_STR(t[2].gate, "Publish these notes?");
    CHECK_INT(t[2].need_idx[0], 1);
    CHECK_INT(t[3].need_idx[0], 2);
    CHECK_INT(t[3].n_requires, 1);
    CHECK_STR(t[3].requires[0], "github");
    for (size_t i = 0; i < 4; i++) {
        // A gate takes only its own timeout_s (none here), not defaults'.
        CHECK_INT(t[i].timeout_s, t[i].kind == WP_KIND_GATE ? 0 : 600);
        CHECK_INT(t[i].retries, 2);
        CHECK_INT(t[i].priority, 0);
        CHECK(t[i].model == NULL && t[i].cwd == NULL && t[i].n_env == 0);
    }
    CHECK_INT(t[0].n_requires, 0);
    CHECK_INT(workplan_find(wp, "review"), 2);
    CHECK_INT(workplan_find(wp, "nope"), -1);
    workplan_destroy(&wp);
    CHECK(wp == NULL);
    workplan_destroy(&wp);
}

static void
test_defaults_resolved(void)
{
    workplan_t *wp = s_parse_ok(
        "{\"name\": \"d\", \"defaults\": {\"timeout_s\": 0, \"retries\": 5,"
        " \"priority\": -3, \"requires\": [\"gpu\", \"linux:x86_64\"]},"
        " \"tasks\": [{\"id\": \"a\", \"run\": [\"true\"]},"
        " {\"id\": \"b\", \"run\": [\"true\"], \"timeout_s\": 10,"
        " \"retries\": 0, \"priority\": 1000, \"requires\": [\"cpu\"]},"
        " {\"id\": \"c\", \"run\": [\"true\"], \"requires\": []}]}");
    REQUIRE(wp);
    const wp_task_t *t = wp->tasks;
    CHECK_INT(t[0].timeout_s, 0);
    CHECK_INT(t[0].retries, 5);
    CHECK_INT(t[0].priority, -3);
    REQUIRE(t[0].n_requires == 2);
    CHECK_STR(t[0].requires[1], "linux:x86_64");
    CHECK_INT(t[1].timeout_s, 10);
    CHECK_INT(t[1].retries, 0);
    CHECK_INT(t[1].priority, 1000);
    REQUIRE(t[1].n_requires == 1);
    CHECK_STR(t[1].requires[0], "cpu");
    // An explicit empty list overrides the defaults, like any other field.
    CHECK_INT(t[2].n_requires, 0);
    workplan_destroy(&wp);

    wp = s_parse_ok("{\"name\": \"n\", \"tasks\": [{\"id\": \"a\","
                    " \"gate\": \"ok?\"}]}");
    REQUIRE(wp);
    CHECK_INT(wp->tasks[0].timeout_s, 0);  // a gate waits until answered
    CHECK_INT(wp->tasks[0].retries, WORKPLAN_DEFAULT_RETRIES);
    CHECK_INT(wp->tasks[0].priority, 0);
    CHECK(wp->goal == NULL);
    workplan_destroy(&wp);
}

static void
test_all_fields(void)
{
    workplan_t *wp = s_parse_ok(
        "{\"name\": \"f\", \"tasks\": [{\"id\": \"up\", \"run\": [\"x\"]},"
        " {\"id\": \"Q_9-z\", \"needs\": [\"up\"], \"prompt\": \"p\","
        " \"model\": \"llama\", \"env\": {\"ZED\": \"1\", \"_a\": \"\","
        " \"MID\": \"m=2\"}, \"cwd\": \"/tmp\"}]}");
    REQUIRE(wp);
    const wp_task_t *t = &wp->tasks[1];
    CHECK_STR(t->model, "llama");
    CHECK_STR(t->cwd, "/tmp");
    REQUIRE(t->n_env == 3);
    // env is kept sorted by key.
    CHECK_STR(t->env[0].key, "MID");
    CHECK_STR(t->env[0].value, "m=2");
    CHECK_STR(t->env[1].key, "ZED");
    CHECK_STR(t->env[2].key, "_a");
    CHECK_STR(t->env[2].value, "");
    workplan_destroy(&wp);
}

// system, max_tokens and temperature on a prompt task; the implied tags
// "model" and "model:NAME" (once, also when written); the canonical text
// parses back to the same text.
static void
test_prompt_fields(void)
{
    workplan_t *wp = s_parse_ok(
        "{\"name\": \"p\", \"defaults\": {\"requires\": [\"eu\"]},"
        " \"tasks\": [{\"id\": \"a\", \"prompt\": \"hi\","
        " \"model\": \"llama3.1:8b\", \"system\": \"be brief\","
        " \"max_tokens\": 200, \"temperature\": 0.5},"
        " {\"id\": \"b\", \"prompt\": \"x\", \"requires\": [\"model\"],"
        " \"temperature\": 1}]}");
    REQUIRE(wp);
    const wp_task_t *t = wp->tasks;
    CHECK_STR(t[0].system, "be brief");
    CHECK_INT(t[0].max_tokens, 200);
    CHECK(t[0].has_temperature && t[0].temperature == 0.5);
    REQUIRE(t[0].n_requires == 3);
    CHECK_STR(t[0].requires[0], "eu");
    CHECK_STR(t[0].requires[1], "model");
    CHECK_STR(t[0].requires[2], "model:llama3.1:8b");
    REQUIRE(t[1].n_requires == 1);
    CHECK_STR(t[1].requires[0], "model");
    CHECK(t[1].has_temperature && t[1].temperature == 1.0);
    CHECK_INT(t[1].max_tokens, 0);
    CHECK(t[1].system == NULL);
    char *json = workplan_to_json(wp);
    workplan_t *again = s_parse_ok(json);
    REQUIRE(again);
    char *json2 = workplan_to_json(again);
    CHECK_STR(json2, json);
    CHECK_INT(again->tasks[0].n_requires, 3);
    free(json);
    free(json2);
    workplan_destroy(&again);
    workplan_destroy(&wp);

    EXPECT_TASKS("{\"id\": \"a\", \"prompt\": \"p\", \"max_tokens\": 0}",
                 "tasks[0].max_tokens", "must be from 1 to 10000000, found 0");
    EXPECT_TASKS("{\"id\": \"a\", \"prompt\": \"p\", \"temperature\": 2.5}",
                 "tasks[0].temperature", "must be from 0 to 2, found 2.5");
    EXPECT_TASKS("{\"id\": \"a\", \"prompt\": \"p\", \"temperature\": \"hot\"}",
                 "tasks[0].temperature", "expected a number from 0 to 2");
    EXPECT_TASKS("{\"id\": \"a\", \"prompt\": \"p\", \"system\": \"\"}",
                 "tasks[0].system", "must not be empty");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"system\": \"s\"}",
                 "tasks[0].system",
                 "only prompt tasks take a system message, and this is a run "
                 "task");
    EXPECT_TASKS("{\"id\": \"a\", \"gate\": \"g\", \"max_tokens\": 5}",
                 "tasks[0].max_tokens",
                 "only prompt tasks take max_tokens, and this is a gate task");
    EXPECT_TASKS("{\"id\": \"a\", \"prompt\": \"p\", \"model\": \"org/m\"}",
                 "tasks[0].model",
                 "'org/m' cannot name a model: 'model:' and the name must be a "
                 "valid tag (up to 64 letters, digits or '_.:-')");
}

// "budget": {"tokens": N} is checked strictly and survives the canonical
// text the ledger stores.
static void
test_budget(void)
{
    const char *tail = ", \"tasks\": [{\"id\": \"a\", \"run\": [\"x\"]}]}";
    char *text = xasprintf("{\"name\": \"x\", \"budget\": {\"tokens\":"
                           " 500}%s", tail);
    workplan_t *wp = s_parse_ok(text);
    free(text);
    REQUIRE(wp);
    CHECK_INT(wp->budget_tokens, 500);
    char *json = workplan_to_json(wp);
    CHECK_HAS(json, "\"budget\":{\"tokens\":500}");
    free(json);
    workplan_destroy(&wp);
    const char *bad[][3] = {
        {"\"budget\": 5", "budget", "expected an object, found a number"},
        {"\"budget\": {}", "budget", "missing required field 'tokens'"},
        {"\"budget\": {\"tokens\": 0}", "budget.tokens",
         "must be from 1 to 1000000000000, found 0"},
        {"\"budget\": {\"tokens\": \"5\"}", "budget.tokens",
         "expected an integer, found a string"},
        {"\"budget\": {\"tokens\": 5, \"usd\": 1}", "budget.usd",
         "unknown field 'usd'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *t = xasprintf("{\"name\": \"x\", %s%s", bad[i][0], tail);
        EXPECT(t, bad[i][1], bad[i][2]);
        free(t);
    }
    // A prompt task that could never fit in the budget.
    EXPECT("{\"name\": \"x\", \"budget\": {\"tokens\": 100}, \"tasks\":"
           " [{\"id\": \"a\", \"prompt\": \"p\", \"max_tokens\": 101}]}",
           "tasks[0].max_tokens", "reserves 101 tokens, more than the plan's "
           "budget of 100: it could never run");
    EXPECT("{\"name\": \"x\", \"budget\": {\"tokens\": 100}, \"tasks\":"
           " [{\"id\": \"a\", \"prompt\": \"p\"}]}",
           "tasks[0].max_tokens", "reserves 4096 tokens (the default, "
           "max_tokens unset), more than the plan's budget of 100: it could "
           "never run");
}

// A stored workplan read back (workplan_parse_stored) may carry a budget an
// operator lowered: 0, or below what a prompt task reserves.  It loads, and
// the canonical text keeps the 0 apart from "no budget".
static void
test_budget_stored(void)
{
    const char *text = "{\"name\": \"x\", \"budget\": {\"tokens\": 0},"
                       " \"tasks\": [{\"id\": \"a\", \"prompt\": \"p\","
                       " \"max_tokens\": 101}]}";
    workplan_t *wp = NULL;
    wp_errors_t errs = {0};
    CHECK(workplan_parse(text, strlen(text), &wp, &errs) < 0);
    wp_errors_release(&errs);
    REQUIRE(workplan_parse_stored(text, strlen(text), &wp, &errs) == 0);
    CHECK(wp->has_budget);
    CHECK_INT(wp->budget_tokens, 0);
    char *json = workplan_to_json(wp);
    CHECK_HAS(json, "\"budget\":{\"tokens\":0}");
    free(json);
    wp->has_budget = false;
    json = workplan_to_json(wp);
    CHECK(!strstr(json, "budget"));
    free(json);
    workplan_destroy(&wp);
    // Everything else is checked as strictly as at submit.
    const char *bad = "{\"name\": \"x\", \"budget\": {\"tokens\": -1},"
                      " \"tasks\": [{\"id\": \"a\", \"run\": [\"x\"]}]}";
    CHECK(workplan_parse_stored(bad, strlen(bad), &wp, &errs) < 0);
    wp_errors_release(&errs);
}

static void
test_unknown_fields(void)
{
    EXPECT("{\"name\": \"x\", \"colour\": 1, \"tasks\": [{\"id\": \"a\","
           " \"run\": [\"x\"]}]}",
           "colour", "unknown field 'colour'");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"]},"
                 " {\"id\": \"b\", \"gate\": \"g\", \"colour\": \"red\"}",
                 "tasks[1].colour", "unknown field 'colour'");
    EXPECT("{\"name\": \"x\", \"defaults\": {\"colour\": 1}, \"tasks\":"
           " [{\"id\": \"a\", \"run\": [\"x\"]}]}",
           "defaults.colour", "unknown field 'colour'");
    // Fields of a task that defaults do not take.
    EXPECT("{\"name\": \"x\", \"defaults\": {\"model\": \"m\"}, \"tasks\":"
           " [{\"id\": \"a\", \"run\": [\"x\"]}]}",
           "defaults.model", "unknown field 'model'");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"a b\": 1}",
                 "tasks[0][\"a b\"]", "unknown field 'a b'");
}

static void
test_required_fields(void)
{
    EXPECT("{\"tasks\": [{\"id\": \"a\", \"run\": [\"x\"]}]}", "",
           "missing required field 'name'");
    EXPECT("{\"name\": \"x\"}", "", "missing required field 'tasks'");
    EXPECT("{\"name\": \"x\", \"tasks\": []}", "tasks",
           "a workplan needs at least one task");
    EXPECT_TASKS("{\"run\": [\"x\"]}", "tasks[0]",
                 "missing required field 'id'");
    EXPECT("{\"name\": \"\", \"tasks\": [{\"id\": \"a\", \"run\": [\"x\"]}]}",
           "name", "must be 1 to 128 characters long, found 0");
    EXPECT("[1]", "", "expected an object, found an array");
}

static void
test_name_length_counts_characters(void)
{
    // 128 two-byte characters are allowed; 129 are not.
    char name[2 * 129 + 1] = "";
    for (int i = 0; i < 128; i++) {
        strcat(name, "\xc3\xa9");
    }
    char *text = xasprintf("{\"name\": \"%s\", \"tasks\": [{\"id\": \"a\","
                           " \"run\": [\"x\"]}]}", name);
    workplan_t *wp = s_parse_ok(text);
    CHECK(wp != NULL);
    workplan_destroy(&wp);
    free(text);
    strcat(name, "e");
    text = xasprintf("{\"name\": \"%s\", \"tasks\": [{\"id\": \"a\","
                     " \"run\": [\"x\"]}]}", name);
    EXPECT(text, "name", "must be 1 to 128 characters long, found 129");
    free(text);
}

static void
test_bad_types_top(void)
{
    const char *tail = "\"tasks\": [{\"id\": \"a\", \"run\": [\"x\"]}]}";
    char *text = xasprintf("{\"name\": 5, %s", tail);
    EXPECT(text, "name", "expected a string, found a number");
    free(text);
    text = xasprintf("{\"name\": \"x\", \"goal\": [], %s", tail);
    EXPECT(text, "goal", "expected a string, found an array");
    free(text);
    text = xasprintf("{\"name\": \"x\", \"defaults\": \"fast\", %s", tail);
    EXPECT(text, "defaults", "expected an object, found a string");
    free(text);
    EXPECT("{\"name\": \"x\", \"tasks\": {}}", "tasks",
           "expected an array, found an object");
    EXPECT_TASKS("\"a\"", "tasks[0]", "expected an object, found a string");
    text = xasprintf("{\"name\": \"x\", \"defaults\": {\"timeout_s\": \"1\","
                     " \"retries\": 1.5, \"priority\": null, \"requires\":"
                     " [true]}, %s", tail);
    EXPECT(text, "defaults.timeout_s", "expected an integer, found a string");
    EXPECT(text, "defaults.retries", "expected an integer, found a real number");
    EXPECT(text, "defaults.priority", "expected an integer, found null");
    EXPECT(text, "defaults.requires[0]", "expected a string, found a boolean");
    free(text);
}

static void
test_bad_types_task(void)
{
    EXPECT_TASKS("{\"id\": 7, \"run\": [\"x\"]}", "tasks[0].id",
                 "expected a string, found a number");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"needs\": \"b\"}",
                 "tasks[0].needs", "expected an array, found a string");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"needs\": [1]}",
                 "tasks[0].needs[0]", "expected a string, found a number");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": \"make all\"}", "tasks[0].run",
                 "expected an array, found a string");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"make\", 2]}", "tasks[0].run[1]",
                 "expected a string, found a number");
    EXPECT_TASKS("{\"id\": \"a\", \"prompt\": [\"p\"]}", "tasks[0].prompt",
                 "expected a string, found an array");
    EXPECT_TASKS("{\"id\": \"a\", \"gate\": true}", "tasks[0].gate",
                 "expected a string, found a boolean");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"env\": [\"A=1\"]}",
                 "tasks[0].env", "expected an object, found an array");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"env\": {\"A\": 1}}",
                 "tasks[0].env.A", "expected a string, found a number");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"cwd\": {}}",
                 "tasks[0].cwd", "expected a string, found an object");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"timeout_s\": \"60\"}",
                 "tasks[0].timeout_s", "expected an integer, found a string");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"timeout_s\": 1e3}",
                 "tasks[0].timeout_s",
                 "expected an integer, found a real number");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"retries\": false}",
                 "tasks[0].retries", "expected an integer, found a boolean");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"priority\": [1]}",
                 "tasks[0].priority", "expected an integer, found an array");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"requires\": \"gpu\"}",
                 "tasks[0].requires", "expected an array, found a string");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"requires\": [null]}",
                 "tasks[0].requires[0]", "expected a string, found null");
    EXPECT_TASKS("{\"id\": \"a\", \"prompt\": \"p\", \"model\": 3}",
                 "tasks[0].model", "expected a string, found a number");
}

static void
test_ranges_and_empties(void)
{
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"timeout_s\": 604801}",
                 "tasks[0].timeout_s",
                 "must be from 0 to 604800, found 604801");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"retries\": -1}",
                 "tasks[0].retries", "must be from 0 to 100, found -1");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"priority\": 1001}",
                 "tasks[0].priority", "must be from -1000 to 1000, found 1001");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": []}", "tasks[0].run",
                 "must hold at least the program to run");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"\"]}", "tasks[0].run[0]",
                 "the program name must not be empty");
    EXPECT_TASKS("{\"id\": \"a\", \"prompt\": \"\"}", "tasks[0].prompt",
                 "must not be empty");
    EXPECT_TASKS("{\"id\": \"a\", \"gate\": \"\"}", "tasks[0].gate",
                 "must not be empty");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"cwd\": \"\"}",
                 "tasks[0].cwd", "must not be empty");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"requires\": [\"a b\"]}",
                 "tasks[0].requires[0]",
                 "'a b' is not a valid tag (1 to 64 letters, digits or '_.:-')");
    // An empty argument after the program is fine.
    char *text = s_plan("{\"id\": \"a\", \"run\": [\"echo\", \"\"]}");
    workplan_t *wp = s_parse_ok(text);
    CHECK(wp != NULL);
    workplan_destroy(&wp);
    free(text);
}

static void
test_bad_ids(void)
{
    static const char *const bad[] = {
        "a b", "-x", "", "caf\xc3\xa9", "a.b",
        "x1234567890123456789012345678901234567890123456789012345678901234",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *tasks = xasprintf("{\"id\": \"%s\", \"run\": [\"x\"]}", bad[i]);
        // Long ids are cut short in the message.
        int shown = strlen(bad[i]) > 64 ? 64 : (int) strlen(bad[i]);
        char *msg = xasprintf("'%.*s%s' is not a valid id (1 to 64 letters, "
                              "digits, '_' or '-', not starting with '-')",
                              shown, bad[i], shown == 64 ? "..." : "");
        EXPECT_TASKS(tasks, "tasks[0].id", msg);
        free(tasks);
        free(msg);
    }
    // The longest and the oddest good ones.
    char *text = s_plan(
        "{\"id\": \"_23456789012345678901234567890123456789012345678901234"
        "567890123\", \"run\": [\"x\"]}, {\"id\": \"9--\", \"run\": [\"x\"]}");
    workplan_t *wp = s_parse_ok(text);
    CHECK(wp != NULL);
    workplan_destroy(&wp);
    free(text);
}

static void
test_kinds(void)
{
    EXPECT_TASKS("{\"id\": \"a\"}", "tasks[0]",
                 "a task needs exactly one of 'run', 'prompt' or 'gate'");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"gate\": \"g\"}",
                 "tasks[0]",
                 "a task needs exactly one of 'run', 'prompt' or 'gate', "
                 "found 'run' and 'gate'");
    EXPECT_TASKS("{\"id\": \"a\", \"prompt\": \"p\", \"gate\": \"g\"}",
                 "tasks[0]",
                 "a task needs exactly one of 'run', 'prompt' or 'gate', "
                 "found 'prompt' and 'gate'");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"prompt\": \"p\","
                 " \"gate\": \"g\"}",
                 "tasks[0]",
                 "a task needs exactly one of 'run', 'prompt' or 'gate', "
                 "found all three");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"model\": \"m\"}",
                 "tasks[0].model",
                 "only prompt tasks take a model, and this is a run task");
    EXPECT_TASKS("{\"id\": \"a\", \"gate\": \"g\", \"model\": \"m\"}",
                 "tasks[0].model",
                 "only prompt tasks take a model, and this is a gate task");
}

static void
test_env(void)
{
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"env\":"
                 " {\"WAGGLE_TASK\": \"x\"}}",
                 "tasks[0].env.WAGGLE_TASK",
                 "variables starting with WAGGLE_ are reserved");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"env\": {\"1X\": \"x\"}}",
                 "tasks[0].env.1X",
                 "'1X' is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"env\": {\"A=B\": \"x\"}}",
                 "tasks[0].env[\"A=B\"]",
                 "'A=B' is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)");
}

// What exec could never run, or a drone could never decode (PROTOCOL.md 10:
// a TASK over 1,000,000 objects), is refused at submit: not pushed to every
// drone in turn until the retries are gone.
static void
test_exec_limits(void)
{
    size_t n = WORKPLAN_MAX_ARGV + 1, cap = n * 5 + 64, len = 0;
    char *run = xmalloc(cap);
    len += (size_t) snprintf(run, cap, "{\"id\": \"a\", \"run\": [");
    for (size_t i = 0; i < n; i++) {
        len += (size_t) snprintf(run + len, cap - len, "%s\"x\"",
                                 i ? "," : "");
    }
    snprintf(run + len, cap - len, "]}");
    EXPECT_TASKS(run, "tasks[0].run",
                 "at most 65536 items, found 65537");
    free(run);
    // One argument over what exec takes (128 KiB with its NUL).
    char *big = xmalloc(WORKPLAN_MAX_ARG_BYTES + 64);
    memset(big, 'y', WORKPLAN_MAX_ARG_BYTES);
    big[WORKPLAN_MAX_ARG_BYTES] = '\0';
    char *task = xasprintf("{\"id\": \"a\", \"run\": [\"echo\", \"%s\"]}",
                           big);
    EXPECT_TASKS(task, "tasks[0].run[1]",
                 "131072 bytes; an argument takes at most 131071");
    free(task);
    task = xasprintf("{\"id\": \"a\", \"run\": [\"true\"], \"env\":"
                     " {\"V\": \"%s\"}}", big);
    EXPECT_TASKS(task, "tasks[0].env.V",
                 "131074 bytes; a variable takes at most 131071");
    free(task);
    // Many arguments, each allowed, over what exec takes together.
    big[100000] = '\0';
    len = 0;
    cap = 30 * 100010 + 64;
    run = xmalloc(cap);
    len += (size_t) snprintf(run, cap, "{\"id\": \"a\", \"run\": [");
    for (int i = 0; i < 30; i++) {
        len += (size_t) snprintf(run + len, cap - len, "%s\"%s\"",
                                 i ? "," : "", big);
    }
    snprintf(run + len, cap - len, "]}");
    EXPECT_TASKS(run, "tasks[0]",
                 "run and env take 3000030 bytes; exec takes at most 2097152");
    free(run);
    free(big);
    // More variables than a TASK may carry.
    size_t nv = WORKPLAN_MAX_ENV + 1;
    cap = nv * 16 + 64;
    char *env = xmalloc(cap);
    len = (size_t) snprintf(env, cap,
                            "{\"id\": \"a\", \"run\": [\"true\"], \"env\": {");
    for (size_t i = 0; i < nv; i++) {
        len += (size_t) snprintf(env + len, cap - len, "%s\"V%zu\": \"\"",
                                 i ? "," : "", i);
    }
    snprintf(env + len, cap - len, "}}");
    EXPECT_TASKS(env, "tasks[0].env", "at most 4096 variables, found 4097");
    free(env);
    // Right at the limits is fine.
    workplan_t *wp = NULL;
    char *ok = s_plan("{\"id\": \"a\", \"run\": [\"true\"]}");
    wp = s_parse_ok(ok);
    CHECK(wp != NULL);
    workplan_destroy(&wp);
    free(ok);
}

static void
test_ids_and_needs(void)
{
    EXPECT_TASKS("{\"id\": \"build\", \"run\": [\"x\"]},"
                 " {\"id\": \"t\", \"run\": [\"x\"]},"
                 " {\"id\": \"build\", \"run\": [\"y\"]}",
                 "tasks[2].id", "duplicate id 'build' (first at tasks[0])");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"needs\": [\"x\"]}",
                 "tasks[0].needs[0]", "'x' is not a task in this workplan");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"needs\": [\"a\"]}",
                 "tasks[0].needs[0]", "a task cannot need itself");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"]},"
                 " {\"id\": \"b\", \"run\": [\"x\"], \"needs\": [\"a\", \"a\"]}",
                 "tasks[1].needs[1]",
                 "duplicate need 'a' (first at tasks[1].needs[0])");
}

static void
test_cycles(void)
{
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"needs\": [\"b\"]},"
                 " {\"id\": \"b\", \"run\": [\"x\"], \"needs\": [\"a\"]}",
                 "tasks[0].needs[0]", "cycle: a -> b -> a");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"needs\": [\"c\"]},"
                 " {\"id\": \"b\", \"run\": [\"x\"], \"needs\": [\"a\"]},"
                 " {\"id\": \"c\", \"run\": [\"x\"], \"needs\": [\"b\"]}",
                 "tasks[0].needs[0]", "cycle: a -> c -> b -> a");
    // Named from the task written first, wherever the search entered it.
    EXPECT_TASKS("{\"id\": \"z\", \"run\": [\"x\"], \"needs\": [\"b\"]},"
                 " {\"id\": \"a\", \"run\": [\"x\"], \"needs\": [\"c\"]},"
                 " {\"id\": \"b\", \"run\": [\"x\"], \"needs\": [\"a\"]},"
                 " {\"id\": \"c\", \"run\": [\"x\"], \"needs\": [\"x\", \"b\"]},"
                 " {\"id\": \"x\", \"run\": [\"x\"]}",
                 "tasks[1].needs[0]", "cycle: a -> c -> b -> a");

    // Each cycle once: two disjoint cycles give exactly two errors.
    char *text = s_plan(
        "{\"id\": \"a\", \"run\": [\"x\"], \"needs\": [\"b\"]},"
        " {\"id\": \"b\", \"run\": [\"x\"], \"needs\": [\"a\"]},"
        " {\"id\": \"c\", \"run\": [\"x\"], \"needs\": [\"d\", \"a\"]},"
        " {\"id\": \"d\", \"run\": [\"x\"], \"needs\": [\"c\"]}");
    workplan_t *wp = NULL;
    wp_errors_t errs = {0};
    CHECK_INT(workplan_parse(text, strlen(text), &wp, &errs), -1);
    CHECK_INT(errs.count, 2);
    char *all = wp_errors_format(&errs);
    CHECK_STR(all, "tasks[0].needs[0]: cycle: a -> b -> a\n"
                   "tasks[2].needs[0]: cycle: c -> d -> c");
    free(all);
    free(text);
    wp_errors_release(&errs);
}

static void
test_placeholders(void)
{
    const char *up = "{\"id\": \"up\", \"run\": [\"x\"]}, ";
    char *tasks = xasprintf("%s{\"id\": \"a\", \"needs\": [\"up\"],"
                            " \"prompt\": \"x {{nope.output}}\"}", up);
    EXPECT_TASKS(tasks, "tasks[1].prompt",
                 "'{{nope.output}}' refers to 'nope', which this task does "
                 "not need");
    free(tasks);
    // A task that exists but is not needed is refused the same way.
    tasks = xasprintf("%s{\"id\": \"a\", \"run\": [\"echo\", \"{{up.output}}\"]}",
                      up);
    EXPECT_TASKS(tasks, "tasks[1].run[1]",
                 "'{{up.output}}' refers to 'up', which this task does not "
                 "need");
    free(tasks);
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"echo\", \"{{ up.output }}\"]}",
                 "tasks[0].run[1]",
                 "'{{ up.output }}' is not a placeholder (write {{ID.output}}, "
                 "or {{{{ for a literal {{)");
    EXPECT_TASKS("{\"id\": \"a\", \"prompt\": \"{{up.stderr}}\"}",
                 "tasks[0].prompt",
                 "'{{up.stderr}}' is not a placeholder (write {{ID.output}}, "
                 "or {{{{ for a literal {{)");
    EXPECT_TASKS("{\"id\": \"a\", \"prompt\": \"see {{up.output\"}",
                 "tasks[0].prompt",
                 "unclosed '{{' (write {{{{ for a literal {{)");
    // Literal braces, a need listed but missing (reported once, at needs).
    char *text = s_plan("{\"id\": \"up\", \"run\": [\"x\"]},"
                        " {\"id\": \"a\", \"needs\": [\"up\"], \"prompt\":"
                        " \"{{{{x}} }} {{up.output}}{{up.output}}\"}");
    workplan_t *wp = s_parse_ok(text);
    CHECK(wp != NULL);
    workplan_destroy(&wp);
    free(text);
    text = s_plan("{\"id\": \"a\", \"needs\": [\"gone\"], \"prompt\":"
                  " \"{{gone.output}}\"}");
    wp_errors_t errs = {0};
    CHECK_INT(workplan_parse(text, strlen(text), &wp, &errs), -1);
    CHECK_INT(errs.count, 1);
    free(text);
    wp_errors_release(&errs);
}

static void
test_input_var_collision(void)
{
    EXPECT_TASKS("{\"id\": \"a-b\", \"run\": [\"x\"]},"
                 " {\"id\": \"A_B\", \"run\": [\"x\"]},"
                 " {\"id\": \"c\", \"run\": [\"x\"], \"needs\": [\"a-b\", \"A_B\"]}",
                 "tasks[2].needs[1]",
                 "'a-b' and 'A_B' both become WAGGLE_INPUT_A_B");
    char *var = workplan_input_var("log-2_x");
    CHECK_STR(var, "WAGGLE_INPUT_LOG_2_X");
    free(var);
}

static void
test_invalid_json(void)
{
    EXPECT("{\"name\": \"x\",\n \"tasks\": [}", "",
           "line 2, column 12: unexpected token near '}'");
    EXPECT("{\"name\": \"x\", \"name\": \"y\", \"tasks\": []}", "",
           "line 1, column 20: duplicate object key near '\"name\"'");
    EXPECT("", "", "line 1, column 0: unexpected token near end of file");
}

static void
test_many_errors_at_once(void)
{
    char *text = s_plan(
        "{\"id\": \"a b\", \"run\": [\"x\"], \"colour\": 1},"
        " {\"id\": \"c\", \"needs\": [\"nope\"], \"prompt\": \"\"},"
        " {\"id\": \"c\", \"gate\": \"g\", \"retries\": 101}");
    workplan_t *wp = NULL;
    wp_errors_t errs = {0};
    CHECK_INT(workplan_parse(text, strlen(text), &wp, &errs), -1);
    CHECK(wp == NULL);
    char *all = wp_errors_format(&errs);
    CHECK_STR(all,
              "tasks[0].id: 'a b' is not a valid id (1 to 64 letters, digits, "
              "'_' or '-', not starting with '-')\n"
              "tasks[0].colour: unknown field 'colour'\n"
              "tasks[1].prompt: must not be empty\n"
              "tasks[2].retries: must be from 0 to 100, found 101\n"
              "tasks[2].id: duplicate id 'c' (first at tasks[1])\n"
              "tasks[1].needs[0]: 'nope' is not a task in this workplan");
    free(all);
    free(text);
    wp_errors_release(&errs);
    CHECK(errs.items == NULL && errs.count == 0);
}

static void
test_errors_capped(void)
{
    // 300 tasks each with an unknown field: collection stops at 100.
    size_t n = 300;
    char *tasks = xstrdup("");
    for (size_t i = 0; i < n; i++) {
        char *next = xasprintf("%s%s{\"id\": \"t%zu\", \"run\": [\"x\"],"
                               " \"bad\": 1}", tasks, i ? ", " : "", i);
        free(tasks);
        tasks = next;
    }
    char *text = s_plan(tasks);
    workplan_t *wp = NULL;
    wp_errors_t errs = {0};
    CHECK_INT(workplan_parse(text, strlen(text), &wp, &errs), -1);
    CHECK_INT(errs.count, 100);
    CHECK_STR(errs.items[99].path, "tasks[99].bad");
    wp_errors_release(&errs);
    free(text);
    free(tasks);
}

// Compares every field of two plans.
static bool
s_equal_tasks(const wp_task_t *a, const wp_task_t *b)
{
    bool eq = strcmp(a->id, b->id) == 0 && a->kind == b->kind
              && a->n_needs == b->n_needs && a->n_argv == b->n_argv
              && a->n_env == b->n_env && a->n_requires == b->n_requires
              && a->timeout_s == b->timeout_s && a->retries == b->retries
              && a->priority == b->priority && !a->prompt == !b->prompt
              && !a->gate == !b->gate && !a->model == !b->model
              && !a->cwd == !b->cwd
              && memcmp(&a->limits, &b->limits, sizeof a->limits) == 0;
    for (size_t i = 0; eq && i < a->n_needs; i++) {
        eq = strcmp(a->needs[i], b->needs[i]) == 0
             && a->need_idx[i] == b->need_idx[i];
    }
    for (size_t i = 0; eq && i < a->n_argv; i++) {
        eq = strcmp(a->argv[i], b->argv[i]) == 0;
    }
    for (size_t i = 0; eq && i < a->n_env; i++) {
        eq = strcmp(a->env[i].key, b->env[i].key) == 0
             && strcmp(a->env[i].value, b->env[i].value) == 0;
    }
    for (size_t i = 0; eq && i < a->n_requires; i++) {
        eq = strcmp(a->requires[i], b->requires[i]) == 0;
    }
    eq = eq && (!a->prompt || strcmp(a->prompt, b->prompt) == 0);
    eq = eq && (!a->gate || strcmp(a->gate, b->gate) == 0);
    eq = eq && (!a->model || strcmp(a->model, b->model) == 0);
    return eq && (!a->cwd || strcmp(a->cwd, b->cwd) == 0);
}

static bool
s_equal(const workplan_t *a, const workplan_t *b)
{
    bool eq = strcmp(a->name, b->name) == 0 && !a->goal == !b->goal
              && (!a->goal || strcmp(a->goal, b->goal) == 0)
              && a->n_tasks == b->n_tasks;
    for (size_t i = 0; eq && i < a->n_tasks; i++) {
        eq = s_equal_tasks(&a->tasks[i], &b->tasks[i]);
    }
    return eq;
}

// "limits": strict like every field; defaults merge per key; the
// canonical text carries exactly the keys given.
static void
test_limits(void)
{
    char *text = xasprintf(
        "{\"name\": \"t\", \"defaults\": {\"limits\": {\"as_mb\": 2048, "
        "\"nproc\": 64}}, \"tasks\": [{\"id\": \"a\", \"run\": [\"x\"], "
        "\"limits\": {\"nproc\": 8, \"cpu_s\": 60}}, {\"id\": \"b\", "
        "\"run\": [\"x\"]}]}");
    workplan_t *wp = s_parse_ok(text);
    free(text);
    REQUIRE(wp);
    const wp_limits_t *a = &wp->tasks[0].limits, *b = &wp->tasks[1].limits;
    CHECK_INT(a->as_mb, 2048);
    CHECK_INT(a->nproc, 8);
    CHECK_INT(a->cpu_s, 60);
    CHECK_INT(a->nofile, 0);
    CHECK_INT(b->as_mb, 2048);
    CHECK_INT(b->nproc, 64);
    char *json = workplan_to_json(wp);
    CHECK_HAS(json, "\"limits\":{\"as_mb\":2048,\"nproc\":8,\"cpu_s\":60}");
    workplan_t *again = s_parse_ok(json);
    REQUIRE(again);
    CHECK(s_equal(wp, again));
    free(json);
    workplan_destroy(&again);
    workplan_destroy(&wp);
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"limits\": []}",
                 "tasks[0].limits", "expected an object, found an array");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"limits\": "
                 "{\"files\": 3}}",
                 "tasks[0].limits.files", "unknown field 'files' (known: as_mb, "
                 "nofile, nproc, cpu_s)");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"limits\": "
                 "{\"nproc\": 0}}",
                 "tasks[0].limits.nproc", "must be from 1 to 4194304, found 0");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"limits\": "
                 "{\"cpu_s\": 1.5}}",
                 "tasks[0].limits.cpu_s",
                 "expected an integer, found a real number");
    EXPECT_TASKS("{\"id\": \"a\", \"run\": [\"x\"], \"limits\": "
                 "{\"as_mb\": 4194305}}",
                 "tasks[0].limits.as_mb",
                 "must be from 1 to 4194304, found 4194305");
}

static void
test_canonical_json(void)
{
    workplan_t *wp = s_parse_ok(s_example);
    REQUIRE(wp);
    char *text = workplan_to_json(wp);
    CHECK_STR(text,
              "{\"name\":\"release-notes\",\"goal\":\"Draft release notes for "
              "v2.1 and publish them after review\",\"tasks\":["
              "{\"id\":\"log\",\"run\":[\"git\",\"log\",\"--oneline\","
              "\"v2.0..HEAD\"],\"timeout_s\":600,\"retries\":2,\"priority\":0,"
              "\"requires\":[]},"
              "{\"id\":\"draft\",\"needs\":[\"log\"],\"prompt\":\"Write release "
              "notes from:\\n{{log.output}}\",\"timeout_s\":600,\"retries\":2,"
              "\"priority\":0,\"requires\":[\"model\"]},"
              "{\"id\":\"review\",\"needs\":[\"draft\"],\"gate\":\"Publish these "
              "notes?\",\"timeout_s\":0,\"retries\":2,\"priority\":0,"
              "\"requires\":[]},"
              "{\"id\":\"publish\",\"needs\":[\"review\"],\"run\":"
              "[\"./publish.sh\"],\"timeout_s\":600,\"retries\":2,\"priority\":0,"
              "\"requires\":[\"github\"]}]}");
    workplan_t *again = s_parse_ok(text);
    REQUIRE(again);
    CHECK(s_equal(wp, again));
    char *text2 = workplan_to_json(again);
    CHECK_STR(text2, text);
    free(text);
    free(text2);
    workplan_destroy(&wp);
    workplan_destroy(&again);
}

static void
test_canonical_key_order(void)
{
    // Written in a scrambled order; the canonical form fixes it and sorts env.
    workplan_t *wp = s_parse_ok(
        "{\"tasks\": [{\"id\": \"u\", \"gate\": \"g\"}, {\"requires\": [\"x\"],"
        " \"priority\": 5, \"env\": {\"Z\": \"1\", \"A\": \"\\u00e9\"},"
        " \"model\": \"m\", \"cwd\": \"/w\", \"prompt\": \"p\\t\","
        " \"needs\": [\"u\"], \"id\": \"k\"}], \"defaults\": {\"retries\": 0},"
        " \"name\": \"n\"}");
    REQUIRE(wp);
    char *text = workplan_to_json(wp);
    CHECK_STR(text,
              "{\"name\":\"n\",\"tasks\":["
              "{\"id\":\"u\",\"gate\":\"g\",\"timeout_s\":0,\"retries\":0,"
              "\"priority\":0,\"requires\":[]},"
              "{\"id\":\"k\",\"needs\":[\"u\"],\"prompt\":\"p\\t\","
              "\"model\":\"m\",\"env\":{\"A\":\"\xc3\xa9\",\"Z\":\"1\"},"
              "\"cwd\":\"/w\",\"timeout_s\":3600,\"retries\":0,\"priority\":5,"
              "\"requires\":[\"x\",\"model\",\"model:m\"]}]}");
    workplan_t *again = s_parse_ok(text);
    REQUIRE(again);
    CHECK(s_equal(wp, again));
    char *text2 = workplan_to_json(again);
    CHECK_STR(text2, text);
    free(text);
    free(text2);
    workplan_destroy(&wp);
    workplan_destroy(&again);
}

static int
s_expand(const char *tmpl, const wp_value_t *v, size_t n, size_t max,
         char **out, char **err)
{
    return workplan_expand(tmpl, v, n, max, out, err);
}

static void
test_expand(void)
{
    const wp_value_t v[] = {
        {.id = "log", .data = (const uint8_t *) "abc\n", .len = 4},
        {.id = "two", .data = (const uint8_t *) "x\n\n", .len = 3},
        {.id = "empty", .data = (const uint8_t *) "", .len = 0},
    };
    char *out = NULL, *err = NULL;
    CHECK_INT(s_expand("plain text", v, 3, 0, &out, &err), 0);
    CHECK_STR(out, "plain text");
    CHECK(err == NULL);
    free(out);
    CHECK_INT(s_expand("", NULL, 0, 0, &out, &err), 0);
    CHECK_STR(out, "");
    free(out);
    CHECK_INT(s_expand("[{{log.output}}|{{two.output}}]", v, 3, 0, &out, &err),
              0);
    CHECK_STR(out, "[abc|x\n]");       // only one trailing newline goes
    free(out);
    CHECK_INT(s_expand("{{{{log.output}} {{empty.output}}.", v, 3, 0, &out,
                       &err),
              0);
    CHECK_STR(out, "{{log.output}} .");
    free(out);
    CHECK_INT(s_expand("}} {x} {{log.output}}}", v, 3, 4, &out, &err), 0);
    CHECK_STR(out, "}} {x} abc}");  // 3 bytes after stripping: within 4
    free(out);
}

static void
test_expand_errors(void)
{
    const uint8_t big[10] = "0123456789";
    const wp_value_t v[] = {
        {.id = "log", .data = (const uint8_t *) "a", .len = 1,
         .truncated = true},
        {.id = "x", .data = (const uint8_t *) "a\0b", .len = 3},
        {.id = "big", .data = big, .len = 10},
    };
    char *out = NULL, *err = NULL;
    CHECK_INT(s_expand("{{log.output}}", v, 3, 0, &out, &err), -1);
    CHECK(out == NULL);
    CHECK_STR(err, "input 'log' was truncated at the output cap");
    free(err);
    CHECK_INT(s_expand("a {{x.output}}", v, 3, 0, &out, &err), -1);
    CHECK_STR(err, "input 'x' holds a NUL byte");
    free(err);
    CHECK_INT(s_expand("{{big.output}}", v, 3, 9, &out, &err), -1);
    CHECK_STR(err, "input 'big' is 10 bytes; at most 9 may go into argv");
    free(err);
    CHECK_INT(s_expand("{{big.output}}", v, 3, 10, &out, &err), 0);
    CHECK_STR(out, "0123456789");
    free(out);
    CHECK_INT(s_expand("{{nope.output}}", v, 3, 0, &out, &err), -1);
    CHECK_STR(err, "{{nope.output}}: 'nope' is not among the task's needs");
    free(err);
    CHECK_INT(s_expand("{{ x }}", v, 3, 0, &out, &err), -1);
    CHECK_HAS(err, "is not a placeholder");
    free(err);
    CHECK_INT(s_expand("oops {{x.output", v, 3, 0, &out, &err), -1);
    CHECK_HAS(err, "unclosed '{{'");
    free(err);
}

static void
test_misc(void)
{
    CHECK_STR(workplan_kind_name(WP_KIND_RUN), "run");
    CHECK_STR(workplan_kind_name(WP_KIND_PROMPT), "prompt");
    CHECK_STR(workplan_kind_name(WP_KIND_GATE), "gate");
    wp_errors_t none = {0};
    char *s = wp_errors_format(&none);
    CHECK_STR(s, "");
    free(s);
    wp_errors_release(&none);
}

// A chain t0 <- t1 <- ... (each needing the one before), n tasks; when
// close_loop, t0 needs the last one, making one long cycle.
static char *
s_chain(size_t n, bool close_loop)
{
    size_t cap = n * 128 + 64, len = 0;
    char *b = xmalloc(cap);
    len += (size_t) snprintf(b, cap, "{\"name\": \"chain\", \"tasks\": [");
    for (size_t i = 0; i < n; i++) {
        len += (size_t) snprintf(b + len, cap - len, "%s{\"id\": \"t%zu\"",
                                 i ? "," : "", i);
        if (i > 0 || close_loop) {
            len += (size_t) snprintf(b + len, cap - len,
                                     ", \"needs\": [\"t%zu\"]",
                                     i ? i - 1 : n - 1);
        }
        len += (size_t) snprintf(b + len, cap - len,
                                 ", \"run\": [\"echo\", \"{{t%zu.output}}\"]}",
                                 i ? i - 1 : n - 1);
    }
    snprintf(b + len, cap - len, "]}");
    return b;
}

// The big-plan tests run at 100k tasks (a tenth of WORKPLAN_MAX_TASKS, so
// that they take a second); the bench's submit-1M target is the proof at
// the limit.
#define S_BIG 100000

static void
test_big_chain(void)
{
    char *text = s_chain(S_BIG, false);
    // The first task names an output it does not need: drop that argv.
    char *first = strstr(text, ", \"{{t99999.output}}\"");
    REQUIRE(first);
    memmove(first, first + strlen(", \"{{t99999.output}}\""),
            strlen(first + strlen(", \"{{t99999.output}}\"")) + 1);
    workplan_t *wp = s_parse_ok(text);
    REQUIRE(wp);
    CHECK_INT(wp->n_tasks, S_BIG);
    CHECK_INT(wp->tasks[S_BIG - 1].need_idx[0], S_BIG - 2);
    char *canon = workplan_to_json(wp);
    workplan_t *again = s_parse_ok(canon);
    CHECK(again && s_equal(wp, again));
    free(canon);
    workplan_destroy(&again);
    workplan_destroy(&wp);
    free(text);
}

static void
test_big_cycle(void)
{
    char *text = s_chain(S_BIG, true);
    workplan_t *wp = NULL;
    wp_errors_t errs = {0};
    CHECK_INT(workplan_parse(text, strlen(text), &wp, &errs), -1);
    REQUIRE(errs.count == 1);
    CHECK_STR(errs.items[0].path, "tasks[0].needs[0]");
    CHECK_STR(errs.items[0].message,
              "cycle: t0 -> t99999 -> t99998 -> t99997 -> t99996 -> t99995 -> "
              "t99994 -> t99993 -> t99992 -> t99991 -> t99990 -> t99989 -> "
              "... (99988 more) -> t0");
    wp_errors_release(&errs);
    free(text);
}

// A parsed plan keeps repeated run lines, tags and env once (its pool), and
// a task's own arrays stay its own: adding the implied model tag to one
// prompt task changes no other task's requires.
static void
test_pool_shares(void)
{
    workplan_t *wp = s_parse_ok(
        "{\"name\": \"p\", \"defaults\": {\"requires\": [\"eu\"]},"
        " \"tasks\": ["
        "{\"id\": \"a\", \"run\": [\"echo\", \"x\"], \"env\": {\"K\": \"v\"}},"
        "{\"id\": \"b\", \"run\": [\"echo\", \"x\"], \"env\": {\"K\": \"v\"}},"
        "{\"id\": \"c\", \"run\": [\"echo\", \"y\"]},"
        "{\"id\": \"d\", \"prompt\": \"p\"},"
        "{\"id\": \"e\", \"needs\": [\"a\"], \"run\": [\"echo\"],"
        " \"requires\": []}]}");
    REQUIRE(wp);
    const wp_task_t *t = wp->tasks;
    CHECK(wp->pool != NULL);
    CHECK(t[0].argv == t[1].argv);
    CHECK(t[0].argv != t[2].argv);
    CHECK(t[0].argv[0] == t[2].argv[0]);
    CHECK_STR(t[2].argv[1], "y");
    CHECK(t[0].env[0].value == t[1].env[0].value);
    CHECK(t[0].requires == t[1].requires);
    REQUIRE(t[3].n_requires == 2);
    CHECK_STR(t[3].requires[0], "eu");
    CHECK_STR(t[3].requires[1], "model");
    CHECK_INT(t[0].n_requires, 1);
    CHECK(t[4].requires != NULL && t[4].n_requires == 0);
    CHECK_STR(t[4].needs[0], "a");
    CHECK(t[4].needs[0] != t[0].id);
    CHECK_INT(t[4].need_idx[0], 0);
    workplan_destroy(&wp);
}

// workplan_parse_take frees the text, on success and on refusal, and
// applies the stored rules when asked.
static void
test_parse_take(void)
{
    char *text = xstrdup(s_example);
    workplan_t *wp = NULL;
    wp_errors_t errs = {0};
    CHECK_INT(workplan_parse_take(&text, strlen(text), false, &wp, &errs), 0);
    CHECK(text == NULL);
    REQUIRE(wp);
    CHECK_INT(wp->n_tasks, 4);
    workplan_destroy(&wp);
    const char *zero = "{\"name\": \"x\", \"budget\": {\"tokens\": 0},"
                       " \"tasks\": [{\"id\": \"a\", \"run\": [\"x\"]}]}";
    text = xstrdup(zero);
    CHECK_INT(workplan_parse_take(&text, strlen(zero), false, &wp, &errs), -1);
    CHECK(text == NULL && wp == NULL && errs.count == 1);
    wp_errors_release(&errs);
    text = xstrdup(zero);
    CHECK_INT(workplan_parse_take(&text, strlen(zero), true, &wp, &errs), 0);
    CHECK(text == NULL && wp && wp->budget_tokens == 0);
    workplan_destroy(&wp);
    text = xstrdup("{");
    CHECK_INT(workplan_parse_take(&text, 1, false, &wp, &errs), -1);
    CHECK(text == NULL);
    CHECK_HAS(errs.count ? errs.items[0].message : "", "line 1");
    wp_errors_release(&errs);
}

// One task past WORKPLAN_MAX_TASKS is refused, counted before any task is
// read (the tasks here are empty objects: no other error is reported).
static void
test_task_limit(void)
{
    size_t n = WORKPLAN_MAX_TASKS + 1;
    char *b = xmalloc(n * 3 + 64);
    size_t len = (size_t) sprintf(b, "{\"name\": \"x\", \"tasks\": [");
    for (size_t i = 0; i < n; i++) {
        memcpy(b + len, i ? ",{}" : "{}", i ? 3 : 2);
        len += i ? 3 : 2;
    }
    strcpy(b + len, "]}");
    char *message = xasprintf("a workplan holds at most %d tasks, found %zu",
                              WORKPLAN_MAX_TASKS, n);
    EXPECT(b, "tasks", message);
    free(message);
    free(b);
}

static void
test_big_fan_in(void)
{
    // One task needing all the others: one hash per task, no quadratic scan.
    size_t n = S_BIG - 1;
    size_t cap = n * 64 + 128, len = 0;
    char *b = xmalloc(cap);
    len += (size_t) snprintf(b, cap, "{\"name\": \"fan\", \"tasks\": [");
    for (size_t i = 0; i < n; i++) {
        len += (size_t) snprintf(b + len, cap - len,
                                 "{\"id\": \"t%zu\", \"gate\": \"g\"},", i);
    }
    len += (size_t) snprintf(b + len, cap - len,
                             "{\"id\": \"all\", \"gate\": \"g\", \"needs\": [");
    for (size_t i = 0; i < n; i++) {
        len += (size_t) snprintf(b + len, cap - len, "%s\"t%zu\"",
                                 i ? "," : "", i);
    }
    snprintf(b + len, cap - len, "]}]}");
    workplan_t *wp = s_parse_ok(b);
    REQUIRE(wp);
    CHECK_INT(wp->tasks[n].n_needs, n);
    CHECK_INT(workplan_find(wp, "all"), (long) n);
    workplan_destroy(&wp);
    free(b);
}

// The canonical text of a plan that uses every field, escapes and non-ASCII
// text, pinned byte for byte: the ledger stores it and hashes it, so the same
// input must give the same bytes whatever writes them.
static void
test_canonical_pinned(void)
{
    static const char text[] =
        "{\"name\": \"rich \\u00e9\\u4e2d \\ud83d\\ude00 \\\"q\\\" \\\\ /\", \""
        "goal\": \"tab\\there\\nnl \\u0001\\u001f\\u007f end\", \"budget\": {\""
        "tokens\": 1000000},  \"defaults\": {\"timeout_s\": 60, \"retries\": 3,"
        " \"priority\": -5, \"requires\": [\"eu\", \"gpu\"], \"limits\": {\"cpu"
        "_s\": 10}},  \"tasks\": [   {\"id\": \"a\", \"run\": [\"sh\", \"-c\", "
        "\"echo \\\"x\\\" \\\\ \\b\\f\\r\\u0007 \xc3\xa9\"], \"env\": {\"Z\": "
        "\"1\", \"A\": \"\\u00e9\\n\", \"M\": \"\"}, \"cwd\": \"/tmp/\xc3\xa9\""
        ", \"limits\": {\"as_mb\": 512, \"nofile\": 64, \"nproc\": 10}},   {\"i"
        "d\": \"b-2\", \"needs\": [\"a\"], \"prompt\": \"use {{a.output}} now\""
        ", \"model\": \"llama3.1:8b\", \"system\": \"be brief\", \"max_tokens\""
        ": 200, \"temperature\": 0.7, \"priority\": 1000, \"retries\": 0, \"tim"
        "eout_s\": 0, \"requires\": []},   {\"id\": \"c_3\", \"needs\": [\"a\","
        " \"b-2\"], \"gate\": \"ok?\\u2028\"},   {\"id\": \"d\", \"needs\": [\""
        "c_3\"], \"prompt\": \"p\", \"temperature\": 1, \"requires\": [\"x.y:z-"
        "1\"]},   {\"id\": \"e\", \"needs\": [\"d\"], \"prompt\": \"p\", \"temp"
        "erature\": 0.1}  ]} ";
    static const char canon[] =
        "{\"name\":\"rich \xc3\xa9\xe4\xb8\xad \xf0\x9f\x98\x80 \\\"q\\\" \\\\ "
        "/\",\"goal\":\"tab\\there\\nnl \\u0001\\u001F\177 end\",\"budget\":{\""
        "tokens\":1000000},\"tasks\":[{\"id\":\"a\",\"run\":[\"sh\",\"-c\",\"ec"
        "ho \\\"x\\\" \\\\ \\b\\f\\r\\u0007 \xc3\xa9\"],\"env\":{\"A\":\""
        "\xc3\xa9\\n\",\"M\":\"\",\"Z\":\"1\"},\"cwd\":\"/tmp/\xc3\xa9\",\"time"
        "out_s\":60,\"retries\":3,\"priority\":-5,\"requires\":[\"eu\",\"gpu\"]"
        ",\"limits\":{\"as_mb\":512,\"nofile\":64,\"nproc\":10,\"cpu_s\":10}},{"
        "\"id\":\"b-2\",\"needs\":[\"a\"],\"prompt\":\"use {{a.output}} now\","
        "\"model\":\"llama3.1:8b\",\"system\":\"be brief\",\"max_tokens\":200,"
        "\"temperature\":0.69999999999999996,\"timeout_s\":0,\"retries\":0,\"pr"
        "iority\":1000,\"requires\":[\"model\",\"model:llama3.1:8b\"],\"limits"
        "\":{\"cpu_s\":10}},{\"id\":\"c_3\",\"needs\":[\"a\",\"b-2\"],\"gate\":"
        "\"ok?\xe2\x80\xa8\",\"timeout_s\":0,\"retries\":3,\"priority\":-5,\"re"
        "quires\":[\"eu\",\"gpu\"],\"limits\":{\"cpu_s\":10}},{\"id\":\"d\",\"n"
        "eeds\":[\"c_3\"],\"prompt\":\"p\",\"temperature\":1.0,\"timeout_s\":60"
        ",\"retries\":3,\"priority\":-5,\"requires\":[\"x.y:z-1\",\"model\"],\""
        "limits\":{\"cpu_s\":10}},{\"id\":\"e\",\"needs\":[\"d\"],\"prompt\":\""
        "p\",\"temperature\":0.10000000000000001,\"timeout_s\":60,\"retries\":3"
        ",\"priority\":-5,\"requires\":[\"eu\",\"gpu\",\"model\"],\"limits\":{"
        "\"cpu_s\":10}}]}";
    workplan_t *wp = s_parse_ok(text);
    REQUIRE(wp);
    char *json = workplan_to_json(wp);
    CHECK_STR(json, canon);
    free(json);
    workplan_destroy(&wp);
}

static const t_case_t t_cases[] = {
    T(test_example_parses),
    T(test_defaults_resolved),
    T(test_all_fields),
    T(test_prompt_fields),
    T(test_budget),
    T(test_budget_stored),
    T(test_unknown_fields),
    T(test_required_fields),
    T(test_name_length_counts_characters),
    T(test_bad_types_top),
    T(test_bad_types_task),
    T(test_ranges_and_empties),
    T(test_bad_ids),
    T(test_kinds),
    T(test_env),
    T(test_exec_limits),
    T(test_ids_and_needs),
    T(test_cycles),
    T(test_placeholders),
    T(test_input_var_collision),
    T(test_invalid_json),
    T(test_many_errors_at_once),
    T(test_errors_capped),
    T(test_limits),
    T(test_canonical_json),
    T(test_canonical_key_order),
    T(test_canonical_pinned),
    T(test_expand),
    T(test_expand_errors),
    T(test_misc),
    T(test_big_chain),
    T(test_big_cycle),
    T(test_big_fan_in),
    T(test_task_limit),
    T(test_pool_shares),
    T(test_parse_take),
    {0},
};

T_MAIN(t_cases)
