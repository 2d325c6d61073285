// e2e flow: a task that fails uses its attempt budget and ends dead, blocks
// what needs it (transitively) while an unrelated branch succeeds; `retry`
// brings it back with a fresh budget and the plan then succeeds, with lease
// tokens that keep growing.
#include "broker/ledger.h"
#include "common/xalloc.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

// f fails with exit 3 until the file fixed exists (the drone's work
// directory is the test directory).  g needs f, h needs g, k needs f and u;
// u and v are an unrelated branch.
static const char *s_plan =
    "{\"name\":\"retry\",\"tasks\":["
    "{\"id\":\"f\",\"retries\":2,\"run\":[\"sh\",\"-c\","
    " \"if [ -f fixed ]; then echo fixed; else echo boom >&2; exit 3; "
    "fi\"]},"
    "{\"id\":\"g\",\"needs\":[\"f\"],\"run\":[\"echo\",\"g\"]},"
    "{\"id\":\"h\",\"needs\":[\"g\"],\"run\":[\"echo\",\"h\"]},"
    "{\"id\":\"u\",\"run\":[\"echo\",\"u\"]},"
    "{\"id\":\"k\",\"needs\":[\"f\",\"u\"],\"run\":[\"echo\",\"k\"]},"
    "{\"id\":\"v\",\"needs\":[\"u\"],\"run\":[\"echo\",\"v\"]}]}";

static const jnode_t *
s_find_task(const jnode_t *status, const char *task)
{
    const jnode_t *tasks = json_obj_get(status, "tasks");
    for (size_t i = 0; i < json_arr_size(tasks); i++) {
        const jnode_t *t = json_arr_get(tasks, i);
        if (strcmp(json_str(json_obj_get(t, "id")), task) == 0) {
            return t;
        }
    }
    return NULL;
}

static const char *
s_state(const jnode_t *status, const char *task)
{
    const char *st = json_str(json_obj_get(s_find_task(status, task),
                                           "state"));
    return st ? st : "(none)";
}

// The plan as it stands after f used its budget.
static void
s_check_failed(swarm_t *s, int64_t plan)
{
    jnode_t *st = swarm_status(s, plan);
    REQUIRE(st);
    CHECK_STR(json_str(json_obj_get(st, "state")), "failed");
    CHECK_STR(s_state(st, "f"), "dead");
    CHECK_STR(s_state(st, "g"), "blocked");
    CHECK_STR(s_state(st, "h"), "blocked");
    CHECK_STR(s_state(st, "k"), "blocked");
    CHECK_STR(s_state(st, "u"), "succeeded");
    CHECK_STR(s_state(st, "v"), "succeeded");
    const jnode_t *f = s_find_task(st, "f");
    CHECK_INT(json_int(json_obj_get(f, "attempts")), 3);
    CHECK(json_type_of(json_obj_get(f, "exit_code")) == JSON_T_INTEGER);
    CHECK_INT(json_int(json_obj_get(f, "exit_code")), 3);
    const char *why = json_str(json_obj_get(f, "last_error"));
    CHECK(why != NULL && why[0] != '\0');
    json_destroy(&st);
}

typedef struct {
    int n;
    uint64_t f_tokens[8];
    ledger_attempt_outcome_t f_outcomes[8];
    int32_t f_exit[8];
    uint32_t f_n[8];
    uint64_t max_before;      // largest token of u and v
    uint64_t min_after;       // smallest token of g, h and k
    int gh_succeeded;
} s_attempts_t;

static void
s_collect(void *arg, const ledger_attempt_row_t *row)
{
    s_attempts_t *a = arg;
    if (strcmp(row->task, "f") == 0) {
        if (a->n < 8) {
            a->f_tokens[a->n] = row->token;
            a->f_outcomes[a->n] = row->outcome;
            a->f_exit[a->n] = row->has_exit_code ? row->exit_code : -1000;
            a->f_n[a->n] = row->n;
        }
        a->n++;
    } else if (strcmp(row->task, "u") == 0 || strcmp(row->task, "v") == 0) {
        a->max_before = row->token > a->max_before ? row->token
                                                   : a->max_before;
    } else {
        a->min_after = !a->min_after || row->token < a->min_after
                           ? row->token : a->min_after;
        a->gh_succeeded += row->outcome == LEDGER_ATTEMPT_SUCCEEDED;
    }
}

// f: three failed attempts with exit 3, then one accepted, tokens growing;
// the retry's token is above every token issued before it, and g, h, k
// (which ran after it) above that.
static void
s_check_ledger(const char *db, int64_t plan)
{
    ledger_t *l = NULL;
    char err[256];
    REQUIRE(ledger_open(&l, db, LEDGER_RDONLY, err, sizeof err) == 0);
    s_attempts_t a = {0};
    CHECK_INT(ledger_attempts(l, plan, NULL, s_collect, &a), LEDGER_OK);
    ledger_destroy(&l);
    REQUIRE(a.n == 4);
    for (int i = 0; i < 3; i++) {
        CHECK_INT(a.f_outcomes[i], LEDGER_ATTEMPT_FAILED);
        CHECK_INT(a.f_exit[i], 3);
    }
    CHECK_INT(a.f_outcomes[3], LEDGER_ATTEMPT_SUCCEEDED);
    for (int i = 0; i < 4; i++) {
        CHECK_INT(a.f_n[i], i + 1);
    }
    for (int i = 1; i < 4; i++) {
        CHECK(a.f_tokens[i] > a.f_tokens[i - 1]);
    }
    CHECK(a.f_tokens[3] > a.max_before);
    CHECK(a.min_after > a.f_tokens[3]);
    CHECK_INT(a.gh_succeeded, 3);
}

static void
test_dead_then_retry(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    swarm_drone(&s, 2, NULL, NULL);
    swarm_drone(&s, 2, NULL, NULL);
    int64_t plan = swarm_submit(&s, s_plan);
    REQUIRE(plan > 0);
    char id[32], state[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    char *err = NULL;
    CHECK_INT(swarm_arch(&s, NULL, &err, "wait", id, "--timeout", "30", NULL),
              1);
    free(err);
    s_check_failed(&s, plan);
    char path[700];
    snprintf(path, sizeof path, "%s/fixed", s.dir);
    REQUIRE(t_write_file(path, "") == 0);
    CHECK_INT(swarm_arch(&s, NULL, NULL, "retry", id, "f", NULL), 0);
    CHECK_INT(swarm_arch(&s, NULL, NULL, "wait", id, "--timeout", "30", NULL),
              0);
    swarm_wait_plan(&s, plan, 5, state, sizeof state);
    CHECK_STR(state, "succeeded");
    char *out = NULL;
    CHECK_INT(swarm_arch(&s, &out, NULL, "output", id, "f", NULL), 0);
    CHECK_STR(out, "fixed\n");
    free(out);
    out = NULL;
    CHECK_INT(swarm_arch(&s, &out, NULL, "output", id, "h", NULL), 0);
    CHECK_STR(out, "h\n");
    free(out);
    // A fresh budget: the retry's one attempt is all that counts now.
    jnode_t *st = swarm_status(&s, plan);
    const jnode_t *f = s_find_task(st, "f");
    CHECK_STR(json_str(json_obj_get(f, "state")), "succeeded");
    CHECK_INT(json_int(json_obj_get(f, "attempts")), 1);
    CHECK_INT(json_int(json_obj_get(f, "exit_code")), 0);
    json_destroy(&st);
    swarm_stop(&s);
    s_check_ledger(s.db, plan);
}

static const t_case_t t_cases[] = {
    T(test_dead_then_retry),
    {0},
};

T_MAIN(t_cases)
