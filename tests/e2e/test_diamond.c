// e2e: a diamond DAG on three drones, in dependency order, exactly once.
#include "broker/ledger.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

static const char *s_diamond =
    "{\"name\":\"diamond\",\"tasks\":["
    "{\"id\":\"top\",\"run\":[\"sh\",\"-c\",\"echo top\"]},"
    "{\"id\":\"left\",\"needs\":[\"top\"],"
    " \"run\":[\"sh\",\"-c\",\"echo left saw $WAGGLE_INPUT_TOP\"]},"
    "{\"id\":\"right\",\"needs\":[\"top\"],"
    " \"run\":[\"echo\",\"right saw {{top.output}}\"]},"
    "{\"id\":\"join\",\"needs\":[\"left\",\"right\"],"
    " \"run\":[\"sh\",\"-c\",\"cat $WAGGLE_INPUT_DIR/left "
    "$WAGGLE_INPUT_DIR/right\"]}]}";

typedef struct {
    int succeeded;
    int other;
} s_count_t;

static void
s_count(void *arg, const ledger_attempt_row_t *row)
{
    s_count_t *c = arg;
    if (row->outcome == LEDGER_ATTEMPT_SUCCEEDED) {
        c->succeeded++;
    } else {
        c->other++;
    }
}

static void
test_diamond(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    for (int i = 0; i < 3; i++) {
        swarm_drone(&s, 2, NULL, NULL);
    }
    int64_t plan = swarm_submit(&s, s_diamond);
    REQUIRE(plan > 0);
    char id[32], state[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    CHECK_INT(swarm_arch(&s, NULL, NULL, "wait", id, "--timeout", "30", NULL),
              0);
    swarm_wait_plan(&s, plan, 5, state, sizeof state);
    CHECK_STR(state, "succeeded");
    char *out = NULL;
    CHECK_INT(swarm_arch(&s, &out, NULL, "output", id, "join", NULL), 0);
    CHECK_STR(out, "left saw top\nright saw top\n");
    free(out);
    swarm_stop(&s);
    // Exactly once, asserted on the ledger itself.
    ledger_t *l = NULL;
    char err[256];
    REQUIRE(ledger_open(&l, s.db, LEDGER_RDONLY, err, sizeof err) == 0);
    const char *tasks[] = {"top", "left", "right", "join"};
    for (int i = 0; i < 4; i++) {
        s_count_t c = {0};
        ledger_attempts(l, plan, tasks[i], s_count, &c);
        CHECK_INT(c.succeeded, 1);
    }
    ledger_destroy(&l);
}

static const t_case_t t_cases[] = {
    T(test_diamond),
    {0},
};

T_MAIN(t_cases)
