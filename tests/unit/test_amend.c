// test_amend: merging amendments into a plan — what is added, cancelled and
// replaced, the states that allow it, and validation of the amended whole
// with paths into the amendment.
#include "common/amend.h"

#include "common/clock.h"
#include "common/xalloc.h"
#include "tests/harness/t.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// a -> b -> c (c needs b needs a), d alone.
static const char s_plan_text[] =
    "{\"name\": \"p\", \"tasks\": ["
    "{\"id\": \"a\", \"run\": [\"true\"]},"
    "{\"id\": \"b\", \"needs\": [\"a\"], \"run\": [\"cat\", \"{{a.output}}\"]},"
    "{\"id\": \"c\", \"needs\": [\"b\"], \"run\": [\"true\"]},"
    "{\"id\": \"d\", \"run\": [\"true\"], \"timeout_s\": 5}]}";

static workplan_t *
s_plan(void)
{
    workplan_t *wp = NULL;
    wp_errors_t errs = {0};
    CHECK_INT(workplan_parse(s_plan_text, strlen(s_plan_text), &wp, &errs),
              0);
    if (!wp) {
        abort();
    }
    return wp;
}

static amend_t *
s_ok(const workplan_t *wp, const char *const *states, const char *text)
{
    amend_t *a = NULL;
    wp_errors_t errs = {0};
    if (amend_merge(wp, states, text, strlen(text), &a, &errs) != 0) {
        char *all = wp_errors_format(&errs);
        fprintf(stderr, "unexpected errors:\n%s\n", all);
        free(all);
    }
    CHECK_INT(errs.count, 0);
    wp_errors_release(&errs);
    if (!a) {
        abort();
    }
    return a;
}

// The amendment must be refused with an error at path whose message holds
// needle.
static void
s_refused(int line, const workplan_t *wp, const char *const *states,
          const char *text, const char *path, const char *needle)
{
    amend_t *a = NULL;
    wp_errors_t errs = {0};
    int rc = amend_merge(wp, states, text, strlen(text), &a, &errs);
    bool found = false;
    for (size_t i = 0; i < errs.count; i++) {
        found = found || (strcmp(errs.items[i].path, path) == 0 &&
                          strstr(errs.items[i].message, needle));
    }
    if (rc != -1 || a || !found) {
        char *all = wp_errors_format(&errs);
        fprintf(stderr, "line %d: wanted '%s: ...%s...', got rc %d:\n%s\n",
                line, path, needle, rc, all);
        free(all);
    }
    CHECK(rc == -1 && !a && found);
    amend_destroy(&a);
    wp_errors_release(&errs);
}

#define REFUSED(text, path, needle)                                          \
    s_refused(__LINE__, wp, st, text, path, needle)

static void
test_add_fan_out_and_in(void)
{
    workplan_t *wp = s_plan();
    const char *st[] = {"succeeded", "leased", "waiting", "ready"};
    amend_t *a = s_ok(wp, st,
                      "{\"add\": ["
                      "{\"id\": \"x1\", \"needs\": [\"a\"], \"run\": [\"echo\", "
                      "\"{{a.output}}\"]},"
                      "{\"id\": \"x2\", \"needs\": [\"a\"], \"run\": [\"true\"]},"
                      "{\"id\": \"join\", \"needs\": [\"x1\", \"x2\", \"b\"], "
                      "\"run\": [\"true\"]}]}");
    CHECK_INT(a->n_old, 4);
    CHECK_INT(a->wp->n_tasks, 7);
    CHECK_STR(a->wp->tasks[4].id, "x1");
    CHECK_STR(a->wp->tasks[6].id, "join");
    CHECK_INT(a->wp->tasks[6].n_needs, 3);
    CHECK_INT(a->n_cancelled, 0);
    CHECK_INT(a->n_replaced, 0);
    // The plan's tasks keep their definitions (and resolved defaults).
    CHECK_INT(a->wp->tasks[3].timeout_s, 5);
    // The added ones take the built-in defaults.
    CHECK_INT(a->wp->tasks[4].timeout_s, WORKPLAN_DEFAULT_TIMEOUT_S);
    char *sum = amend_summary_json(a);
    CHECK_STR(sum, "{\"added\":[\"x1\",\"x2\",\"join\"],\"cancelled\":[],"
                   "\"replaced\":[]}");
    free(sum);
    // The canonical text parses back to the same whole.
    workplan_t *again = NULL;
    wp_errors_t errs = {0};
    CHECK_INT(workplan_parse(a->json, strlen(a->json), &again, &errs), 0);
    char *j2 = workplan_to_json(again);
    CHECK_STR(j2, a->json);
    free(j2);
    workplan_destroy(&again);
    amend_destroy(&a);
    workplan_destroy(&wp);
}

static void
test_cancel_and_replace(void)
{
    workplan_t *wp = s_plan();
    const char *st[] = {"dead", "blocked", "blocked", "ready"};
    amend_t *a = s_ok(wp, st,
                      "{\"add\": [{\"id\": \"a2\", \"run\": [\"true\"]}],"
                      " \"replace\": [{\"id\": \"b\", \"needs\": [\"a2\"], "
                      "\"run\": [\"echo\", \"{{a2.output}}\"]}],"
                      " \"cancel\": [\"d\"]}");
    CHECK_INT(a->n_replaced, 1);
    CHECK_INT(a->replaced[0], 1);
    CHECK_INT(a->n_cancelled, 1);
    CHECK_INT(a->cancelled[0], 3);
    CHECK_STR(a->wp->tasks[1].needs[0], "a2");
    char *sum = amend_summary_json(a);
    CHECK_STR(sum, "{\"added\":[\"a2\"],\"cancelled\":[\"d\"],"
                   "\"replaced\":[\"b\"]}");
    free(sum);
    amend_destroy(&a);
    workplan_destroy(&wp);
}

static void
test_states_refused(void)
{
    workplan_t *wp = s_plan();
    const char *st[] = {"succeeded", "leased", "blocked", "awaiting_approval"};
    REFUSED("{\"replace\": [{\"id\": \"b\", \"run\": [\"x\"]}]}",
            "replace[0].id", "task 'b' is leased: only a task that has not "
                             "started (waiting, ready or blocked) or is dead "
                             "(a retry with a new definition) can be "
                             "replaced");
    REFUSED("{\"replace\": [{\"id\": \"a\", \"run\": [\"x\"]}]}",
            "replace[0].id", "is succeeded");
    REFUSED("{\"cancel\": [\"b\"]}", "cancel[0]", "task 'b' is leased");
    REFUSED("{\"cancel\": [\"c\"]}", "cancel[0]", "task 'c' is blocked");
    REFUSED("{\"cancel\": [\"d\"]}", "cancel[0]", "is awaiting_approval");
    REFUSED("{\"cancel\": [\"zz\"]}", "cancel[0]",
            "'zz' is not a task of this plan");
    REFUSED("{\"replace\": [{\"id\": \"zz\", \"run\": [\"x\"]}]}",
            "replace[0].id", "(a new task goes in \"add\")");
    // A rejected gate stays a person's answer; a dead task may be replaced,
    // but not cancelled.
    const char *st2[] = {"dead", "rejected", "waiting", "waiting"};
    s_refused(__LINE__, wp, st2, "{\"replace\": [{\"id\": \"b\", "
              "\"run\": [\"x\"]}]}", "replace[0].id", "task 'b' is rejected");
    s_refused(__LINE__, wp, st2, "{\"cancel\": [\"a\"]}", "cancel[0]",
              "task 'a' is dead");
    amend_t *a = s_ok(wp, st2, "{\"replace\": [{\"id\": \"a\", "
                      "\"run\": [\"echo\", \"again\"]}]}");
    CHECK_INT(a->n_replaced, 1);
    CHECK_INT(a->replaced[0], 0);
    amend_destroy(&a);
    workplan_destroy(&wp);
}

static void
test_shape_refused(void)
{
    workplan_t *wp = s_plan();
    const char *st[] = {"waiting", "waiting", "waiting", "waiting"};
    REFUSED("[1]", "", "is a JSON object");
    REFUSED("{\"add\": [", "", "not JSON: ");
    REFUSED("{}", "", "adds, cancels and replaces nothing");
    REFUSED("{\"add\": []}", "", "adds, cancels and replaces nothing");
    REFUSED("{\"remove\": [\"a\"]}", "remove", "unknown field");
    REFUSED("{\"cancel\": \"a\"}", "cancel", "expected an array");
    REFUSED("{\"cancel\": [1]}", "cancel[0]", "expected the id");
    REFUSED("{\"cancel\": [\"a\", \"a\"]}", "cancel[1]", "cancelled twice");
    REFUSED("{\"replace\": [{\"id\": \"d\", \"run\": [\"x\"]}],"
            " \"cancel\": [\"d\"]}", "cancel[0]", "both cancelled and replaced");
    REFUSED("{\"replace\": [{\"id\": \"d\", \"run\": [\"x\"]},"
            " {\"id\": \"d\", \"run\": [\"y\"]}]}", "replace[1].id",
            "replaced twice");
    REFUSED("{\"replace\": [{\"run\": [\"x\"]}]}", "replace[0].id",
            "missing required field 'id'");
    workplan_destroy(&wp);
}

static void
test_whole_validated(void)
{
    workplan_t *wp = s_plan();
    const char *st[] = {"succeeded", "ready", "waiting", "ready"};
    // A cycle among added tasks, named, at the amendment's path.
    REFUSED("{\"add\": [{\"id\": \"x\", \"needs\": [\"y\"], \"run\": [\"t\"]},"
            " {\"id\": \"y\", \"needs\": [\"x\"], \"run\": [\"t\"]}]}",
            "add[0].needs[0]", "cycle: x -> y -> x");
    // A cycle through a replaced task and a task of the plan.
    REFUSED("{\"replace\": [{\"id\": \"b\", \"needs\": [\"c\"], "
            "\"run\": [\"t\"]}]}", "replace[0].needs[0]", "cycle: b -> c -> b");
    REFUSED("{\"add\": [{\"id\": \"x\", \"needs\": [\"nope\"], "
            "\"run\": [\"t\"]}]}", "add[0].needs[0]",
            "'nope' is not a task in this workplan");
    REFUSED("{\"add\": [{\"id\": \"a\", \"run\": [\"t\"]}]}", "add[0].id",
            "duplicate id 'a'");
    REFUSED("{\"add\": [{\"id\": \"x\", \"run\": [\"t\"], \"bogus\": 1}]}",
            "add[0].bogus", "unknown field");
    REFUSED("{\"add\": [{\"id\": \"x\", \"run\": [\"{{a.output}}\"]}]}",
            "add[0].run[0]", "which this task does not need");
    REFUSED("{\"add\": [7]}", "add[0]", "expected an object");
    workplan_destroy(&wp);
}

static void
test_exec_limits_in_added(void)
{
    workplan_t *wp = s_plan();
    const char *st[] = {"waiting", "waiting", "waiting", "waiting"};
    size_t big = WORKPLAN_MAX_ARG_BYTES + 10;
    char *arg = xmalloc(big + 1);
    memset(arg, 'x', big);
    arg[big] = '\0';
    char *text = xasprintf("{\"add\": [{\"id\": \"x\", \"run\": [\"%s\"]}]}",
                           arg);
    REFUSED(text, "add[0].run[0]", "");
    free(text);
    free(arg);
    workplan_destroy(&wp);
}

static workplan_t *
s_example(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/examples/%s", WAGGLE_SOURCE_DIR, name);
    size_t len = 0;
    char *text = t_read_file(path, &len);
    CHECK(text != NULL);
    workplan_t *wp = NULL;
    wp_errors_t errs = {0};
    if (text && workplan_parse(text, len, &wp, &errs) != 0) {
        char *all = wp_errors_format(&errs);
        fprintf(stderr, "%s:\n%s\n", path, all);
        free(all);
    }
    CHECK(wp != NULL);
    wp_errors_release(&errs);
    free(text);
    return wp;
}

// The workplans in examples/ validate, one of them mixes run and prompt
// tasks, and the example amendment applies to wordfreq.json before it has
// started.
static void
test_examples(void)
{
    const char *plans[] = {"wordfreq.json", "summarize.json", "gated.json"};
    for (size_t i = 0; i < 3; i++) {
        workplan_t *wp = s_example(plans[i]);
        workplan_destroy(&wp);
    }
    workplan_t *mixed = s_example("summarize.json");
    REQUIRE(mixed);
    bool run = false, prompt = false;
    for (size_t i = 0; i < mixed->n_tasks; i++) {
        run = run || mixed->tasks[i].kind == WP_KIND_RUN;
        prompt = prompt || mixed->tasks[i].kind == WP_KIND_PROMPT;
    }
    CHECK(run && prompt);
    workplan_destroy(&mixed);
    workplan_t *wp = s_example("wordfreq.json");
    REQUIRE(wp);
    const char **st = xcalloc(wp->n_tasks, sizeof *st);
    for (size_t i = 0; i < wp->n_tasks; i++) {
        st[i] = i == 0 ? "succeeded" : "waiting";
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/examples/wordfreq-amend.json",
             WAGGLE_SOURCE_DIR);
    size_t len = 0;
    char *text = t_read_file(path, &len);
    REQUIRE(text);
    amend_t *a = s_ok(wp, st, text);
    CHECK_INT(a->wp->n_tasks, wp->n_tasks + 3);
    CHECK_INT(a->n_replaced, 1);
    amend_destroy(&a);
    free(text);
    free(st);
    workplan_destroy(&wp);
}

// A plan of 100k tasks, half of it cancelled and a fifth replaced in
// one amendment: the tasks an amendment names are found by a hash, not a
// search each (that was 10^9 comparisons: seconds in which the broker,
// whose turn this runs in, answered nobody and forgot its drones).
#define S_BIG 100000          // a tenth of WORKPLAN_MAX_TASKS: a second

static char *
s_big_text(void)
{
    size_t cap = (size_t) S_BIG * 48 + 64, len = 0;
    char *s = xcalloc(cap, 1);
    len += (size_t) snprintf(s + len, cap - len, "{\"name\": \"big\", \"tasks\": [");
    for (int i = 0; i < S_BIG; i++) {
        len += (size_t) snprintf(s + len, cap - len,
                                 "%s{\"id\": \"t%d\", \"run\": [\"true\"]}",
                                 i ? "," : "", i);
    }
    snprintf(s + len, cap - len, "]}");
    return s;
}

static char *
s_big_amendment(void)
{
    size_t cap = (size_t) S_BIG * 48 + 64, len = 0;
    char *s = xcalloc(cap, 1);
    len += (size_t) snprintf(s + len, cap - len, "{\"cancel\": [");
    for (int i = 0; i < S_BIG / 2; i++) {
        len += (size_t) snprintf(s + len, cap - len, "%s\"t%d\"", i ? "," : "",
                                 S_BIG - 1 - 2 * i);
    }
    len += (size_t) snprintf(s + len, cap - len, "], \"replace\": [");
    for (int i = 0; i < S_BIG / 5; i++) {
        len += (size_t) snprintf(s + len, cap - len,
                                 "%s{\"id\": \"t%d\", \"run\": [\"false\"]}",
                                 i ? "," : "", 2 * i);
    }
    snprintf(s + len, cap - len, "]}");
    return s;
}

static void
test_big_plan(void)
{
    char *text = s_big_text();
    workplan_t *wp = NULL;
    wp_errors_t errs = {0};
    CHECK_INT(workplan_parse(text, strlen(text), &wp, &errs), 0);
    free(text);
    if (!wp) {
        abort();
    }
    const char **st = xcalloc(S_BIG, sizeof *st);
    for (int i = 0; i < S_BIG; i++) {
        st[i] = "ready";
    }
    // The baseline: an amendment naming one task costs what merging the
    // whole plan costs (parsing it twice).
    int64_t t0 = clock_mono_ms();
    amend_t *a = s_ok(wp, st, "{\"cancel\": [\"t99999\"]}");
    int64_t base = clock_mono_ms() - t0;
    amend_destroy(&a);
    char *am = s_big_amendment();
    t0 = clock_mono_ms();
    a = s_ok(wp, st, am);
    int64_t took = clock_mono_ms() - t0;
    fprintf(stderr, "amend_merge of %d tasks: naming one %lld ms, naming "
            "70%% %lld ms\n", S_BIG, (long long) base, (long long) took);
    CHECK_INT(a->n_cancelled, S_BIG / 2);
    CHECK_INT(a->n_replaced, S_BIG / 5);
    CHECK_STR(a->wp->tasks[0].argv[0], "false");
    // Linear, it costs about the baseline (plus the amendment's own JSON);
    // a search per named task took twenty times as long.
    CHECK(took < 4 * base + 2000);
    amend_destroy(&a);
    free(am);
    free(st);
    workplan_destroy(&wp);
}

static const t_case_t t_cases[] = {
    T(test_add_fan_out_and_in),
    T(test_cancel_and_replace),
    T(test_states_refused),
    T(test_shape_refused),
    T(test_whole_validated),
    T(test_exec_limits_in_added),
    T(test_examples),
    T(test_big_plan),
    {0},
};

T_MAIN(t_cases)
