// test_plan_show: the workplan tree `plan` shows before submitting.
#include "architect/arch.h"
#include "common/clock.h"
#include "common/xalloc.h"

#include "tests/harness/t.h"

static workplan_t *
s_parse(const char *json)
{
    workplan_t *wp = NULL;
    wp_errors_t errs = {0};
    if (workplan_parse(json, strlen(json), &wp, &errs) < 0) {
        char *text = wp_errors_format(&errs);
        fprintf(stderr, "invalid: %s\n", text);
        free(text);
    }
    wp_errors_release(&errs);
    return wp;
}

// The tree as text.
static char *
s_show(const workplan_t *wp)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    plan_show_tree(f, wp);
    fclose(f);
    return buf;
}

static void
test_dependency_order_and_depth(void)
{
    // Written with the consumer first; shown after what it needs.
    workplan_t *wp = s_parse(
        "{\"name\": \"n\", \"goal\": \"g\", \"tasks\": ["
        "{\"id\": \"count\", \"needs\": [\"make\", \"b\"], \"run\": [\"wc\"]},"
        "{\"id\": \"b\", \"needs\": [\"make\"], \"run\": [\"echo\", \"a b\"], "
        "\"requires\": [\"gpu\"]},"
        "{\"id\": \"make\", \"run\": [\"seq\", \"3\"]}]}");
    REQUIRE(wp);
    char *text = s_show(wp);
    CHECK_HAS(text, "workplan 'n': g — 3 tasks, in dependency order:\n"
                    "  • make  [run] seq 3\n"
                    "    └ b  [run] echo 'a b'\n"
                    "        needs: make; requires: gpu\n"
                    "      └ count  [run] wc\n"
                    "          needs: make, b\n");
    free(text);
    workplan_destroy(&wp);
}

static void
test_untrusted_text_escaped(void)
{
    workplan_t *wp = s_parse(
        "{\"name\": \"n\\u001b[2J\", \"tasks\": [{\"id\": \"a\", \"run\": "
        "[\"printf\", \"\\u001b]0;owned\\u0007\"]}]}");
    REQUIRE(wp);
    char *text = s_show(wp);
    CHECK(strchr(text, '\x1b') == NULL);
    CHECK(strchr(text, '\x07') == NULL);
    CHECK_HAS(text, "\\x1b");
    free(text);
    workplan_destroy(&wp);
}

// A chain of 50,000 tasks written last-first: ordering must stay linear,
// and the tree stays short enough for a person to read.
static void
test_big_reversed_chain(void)
{
    size_t n = 50000, cap = n * 64 + 64, len = 0;
    char *json = xmalloc(cap);
    len += (size_t) snprintf(json, cap, "{\"name\": \"chain\", \"tasks\": [");
    for (size_t i = n; i-- > 0;) {
        len += (size_t) snprintf(json + len, cap - len,
                                 "%s{\"id\": \"t%zu\", \"run\": [\"true\"]",
                                 i + 1 < n ? "," : "", i);
        if (i > 0) {
            len += (size_t) snprintf(json + len, cap - len,
                                     ", \"needs\": [\"t%zu\"]", i - 1);
        }
        len += (size_t) snprintf(json + len, cap - len, "}");
    }
    snprintf(json + len, cap - len, "]}");
    workplan_t *wp = s_parse(json);
    free(json);
    REQUIRE(wp);
    int64_t t0 = clock_mono_ms();
    char *text = s_show(wp);
    CHECK(clock_mono_ms() - t0 < 2000);
    CHECK_HAS(text, "  • t0  [run] true\n");
    CHECK_HAS(text, "more tasks; --out FILE saves them all");
    CHECK(strlen(text) < 100000);
    free(text);
    workplan_destroy(&wp);
}

static const t_case_t t_cases[] = {
    T(test_dependency_order_and_depth),
    T(test_untrusted_text_escaped),
    T(test_big_reversed_chain),
    {0},
};

T_MAIN(t_cases)
