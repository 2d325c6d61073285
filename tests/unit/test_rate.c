// Unit tests for broker/rate.c: the sliding window of `--model-rpm`.
#include "broker/rate.h"
#include "tests/harness/t.h"

#define MIN 60000

static limits_t
s_limits(const char *list)
{
    limits_t l;
    char err[256];
    CHECK_INT(limits_parse(list, &l, err, sizeof err), 0);
    return l;
}

// Three in a window: the fourth waits until the first leaves it, to the
// millisecond; then each opening follows the next oldest.
static void
test_window_edges(void)
{
    limits_t l = s_limits("tiny=3");
    rate_t *r = rate_new(&l, MIN);
    int64_t max = 0, open = 0;
    rate_note(r, "tiny", 1000);
    rate_note(r, "tiny", 1010);
    CHECK(!rate_full(r, "tiny", 1010, &max, &open));
    rate_note(r, "tiny", 1020);
    CHECK(rate_full(r, "tiny", 1020, &max, &open));
    CHECK_INT(max, 3);
    CHECK_INT(open, 1000 + MIN);
    CHECK(rate_full(r, "tiny", 1000 + MIN - 1, &max, &open));
    CHECK(!rate_full(r, "tiny", 1000 + MIN, &max, &open));
    rate_note(r, "tiny", 1000 + MIN);
    CHECK(rate_full(r, "tiny", 1000 + MIN, &max, &open));
    CHECK_INT(open, 1010 + MIN);
    // Idle for longer than a window: everything left it.
    CHECK(!rate_full(r, "tiny", 10 * MIN, &max, &open));
    CHECK_INT(rate_next_open_ms(r, 10 * MIN), -1);
    rate_destroy(&r);
    CHECK(r == NULL);
    limits_release(&l);
}

// A model without a limit is never held; '*' counts each model apart; a
// task without a model counts as "" (NULL), which only '*' limits.
static void
test_models_apart(void)
{
    limits_t l = s_limits("tiny=1");
    rate_t *r = rate_new(&l, MIN);
    int64_t max, open;
    for (int i = 0; i < 100; i++) {
        rate_note(r, "big", i);
        rate_note(r, NULL, i);
    }
    CHECK(!rate_full(r, "big", 100, &max, &open));
    CHECK(!rate_full(r, NULL, 100, &max, &open));
    rate_destroy(&r);
    limits_release(&l);
    l = s_limits("*=2,tiny=1");
    r = rate_new(&l, MIN);
    rate_note(r, "a", 0);
    rate_note(r, "b", 0);
    rate_note(r, NULL, 5);
    CHECK(!rate_full(r, "a", 1, &max, &open));
    rate_note(r, "a", 1);
    CHECK(rate_full(r, "a", 1, &max, &open));
    CHECK_INT(max, 2);
    CHECK(!rate_full(r, "b", 1, &max, &open));
    CHECK(!rate_full(r, "", 5, &max, &open));
    rate_note(r, "", 6);
    CHECK(rate_full(r, NULL, 6, &max, &open));
    CHECK_INT(open, 5 + MIN);
    rate_note(r, "tiny", 3);
    CHECK(rate_full(r, "tiny", 3, &max, &open));
    CHECK_INT(max, 1);
    rate_destroy(&r);
    limits_release(&l);
}

// The loop's wake-up: the earliest opening among the full models only.
static void
test_next_open(void)
{
    limits_t l = s_limits("a=1,b=2,c=5");
    rate_t *r = rate_new(&l, 1000);
    CHECK_INT(rate_next_open_ms(r, 0), -1);
    rate_note(r, "a", 500);
    rate_note(r, "b", 100);
    rate_note(r, "b", 200);
    rate_note(r, "c", 0);  // not full: no wake-up for it
    CHECK_INT(rate_next_open_ms(r, 200), 1100);
    CHECK_INT(rate_next_open_ms(r, 1100), 1500);
    CHECK_INT(rate_next_open_ms(r, 1500), -1);
    CHECK_INT(rate_window_ms(r), 1000);
    rate_destroy(&r);
    limits_release(&l);
}

static const t_case_t t_cases[] = {
    T(test_window_edges),
    T(test_models_apart),
    T(test_next_open),
    {0},
};

T_MAIN(t_cases)
