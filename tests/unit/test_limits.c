// Unit tests for broker/limits.c: parsing `--model-limit` and lookups.
#include "broker/limits.h"
#include "tests/harness/t.h"

static void
test_parse_and_lookup(void)
{
    limits_t l;
    char err[256];
    CHECK_INT(limits_parse("tiny=1,big=3,*=8", &l, err, sizeof err), 0);
    CHECK_INT(limits_of(&l, "tiny"), 1);
    CHECK_INT(limits_of(&l, "big"), 3);
    CHECK_INT(limits_of(&l, "other"), 8);
    CHECK_INT(limits_of(&l, NULL), 8);
    limits_release(&l);
    CHECK_INT(limits_parse("tiny=2", &l, err, sizeof err), 0);
    CHECK_INT(limits_of(&l, "other"), -1);
    CHECK_INT(limits_of(&l, NULL), -1);
    limits_release(&l);
    CHECK_INT(limits_parse(NULL, &l, err, sizeof err), 0);
    CHECK_INT(limits_of(&l, "tiny"), -1);
    limits_release(&l);
}

static void
test_refused(void)
{
    const char *bad[] = {"tiny", "tiny=", "=1", "tiny=0", "tiny=-1",
                         "tiny=+1", "tiny=1x", "tiny=1000001",
                         "tiny=1,tiny=2", "*=1,*=2", "tiny=1,,big=2",
                         "tiny=99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        limits_t l;
        char err[256] = "";
        CHECK_INT(limits_parse(bad[i], &l, err, sizeof err), -1);
        CHECK_HAS(err, "want NAME=N");
        limits_release(&l);
    }
}

static const t_case_t t_cases[] = {
    T(test_parse_and_lookup),
    T(test_refused),
    {0},
};

T_MAIN(t_cases)
