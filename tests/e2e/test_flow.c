// e2e flow: a 200-task random DAG runs in dependency order, exactly once on
// the ledger; and the shape of `status --json` and `output` for a plan.
#include "broker/ledger.h"
#include "common/xalloc.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include <limits.h>

#define S_N_TASKS 200
#define S_MAX_NEEDS 3

typedef struct {
    int n_needs;
    int needs[S_MAX_NEEDS];
} s_node_t;

// A fixed-seed generator so every run builds the same DAG.
static uint32_t
s_rand(uint32_t *state)
{
    *state = *state * 1103515245u + 12345u;
    return (*state >> 16) & 0x7fff;
}

// Each task needs 0..3 distinct earlier tasks.
static void
s_make_dag(s_node_t *nodes, int n)
{
    uint32_t seed = 20240611u;
    for (int i = 0; i < n; i++) {
        int want = i == 0 ? 0 : (int) (s_rand(&seed) % (S_MAX_NEEDS + 1));
        nodes[i].n_needs = 0;
        for (int k = 0; k < want && k < i; k++) {
            int need = (int) (s_rand(&seed) % (uint32_t) i);
            bool dup = false;
            for (int j = 0; j < nodes[i].n_needs; j++) {
                dup = dup || nodes[i].needs[j] == need;
            }
            if (!dup) {
                nodes[i].needs[nodes[i].n_needs++] = need;
            }
        }
    }
}

// Appends text to a growing buffer.
static void
s_cat(char **buf, size_t *len, size_t *cap, const char *text)
{
    size_t n = strlen(text);
    if (*len + n + 1 > *cap) {
        *cap = (*len + n + 1) * 2;
        *buf = xrealloc(*buf, *cap);
    }
    memcpy(*buf + *len, text, n + 1);
    *len += n;
}

static char *
s_dag_json(const s_node_t *nodes, int n, const char *log)
{
    size_t len = 0, cap = 4096;
    char *buf = xmalloc(cap);
    buf[0] = '\0';
    s_cat(&buf, &len, &cap, "{\"name\":\"random-dag\",\"tasks\":[");
    for (int i = 0; i < n; i++) {
        char *t = xasprintf(
            "%s{\"id\":\"t%d\",\"run\":[\"sh\",\"-c\",\"echo start t%d "
            "$(date +%%s%%N) >> %s; echo end t%d $(date +%%s%%N) >> %s\"]",
            i ? "," : "", i, i, log, i, log);
        s_cat(&buf, &len, &cap, t);
        free(t);
        if (nodes[i].n_needs > 0) {
            s_cat(&buf, &len, &cap, ",\"needs\":[");
            for (int k = 0; k < nodes[i].n_needs; k++) {
                char need[32];
                snprintf(need, sizeof need, "%s\"t%d\"", k ? "," : "",
                         nodes[i].needs[k]);
                s_cat(&buf, &len, &cap, need);
            }
            s_cat(&buf, &len, &cap, "]");
        }
        s_cat(&buf, &len, &cap, "}");
    }
    s_cat(&buf, &len, &cap, "]}");
    return buf;
}

typedef struct {
    long long first_start;       // earliest "start" timestamp (ns); 0: none
    long long first_end;         // earliest "end" timestamp (ns); 0: none
    int starts;
} s_seen_t;

// Reads the shared log into seen[]; returns the number of lines that did
// not parse.
static int
s_parse_log(const char *path, s_seen_t *seen, int n)
{
    char *text = t_read_file(path, NULL);
    int bad = 0;
    for (char *line = text ? strtok(text, "\n") : NULL; line;
         line = strtok(NULL, "\n")) {
        char kind[8];
        int id;
        long long ns;
        if (sscanf(line, "%7s t%d %lld", kind, &id, &ns) != 3 || id < 0 ||
            id >= n) {
            bad++;
            continue;
        }
        s_seen_t *s = &seen[id];
        if (strcmp(kind, "start") == 0) {
            s->starts++;
            s->first_start = s->first_start && s->first_start < ns
                                 ? s->first_start : ns;
        } else if (strcmp(kind, "end") == 0) {
            s->first_end = s->first_end && s->first_end < ns ? s->first_end
                                                             : ns;
        } else {
            bad++;
        }
    }
    free(text);
    return bad;
}

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

// Every task ran at least once, and never before all it needs had ended.
static void
s_check_order(const s_node_t *nodes, const s_seen_t *seen, int n)
{
    int violations = 0;
    for (int i = 0; i < n; i++) {
        if (seen[i].starts < 1 || seen[i].first_end == 0) {
            fprintf(stderr, "task t%d never ran to its end\n", i);
            t_failures++;
            continue;
        }
        for (int k = 0; k < nodes[i].n_needs; k++) {
            const s_seen_t *need = &seen[nodes[i].needs[k]];
            if (need->first_end == 0 ||
                seen[i].first_start < need->first_end) {
                fprintf(stderr, "t%d started at %lld before t%d ended at "
                                "%lld\n", i, seen[i].first_start,
                        nodes[i].needs[k], need->first_end);
                violations++;
            }
        }
    }
    CHECK_INT(violations, 0);
}

static void
test_random_dag(void)
{
    static s_node_t nodes[S_N_TASKS];
    static s_seen_t seen[S_N_TASKS];
    s_make_dag(nodes, S_N_TASKS);
    memset(seen, 0, sizeof seen);
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    for (int i = 0; i < 4; i++) {
        swarm_drone(&s, 2 + i % 2, NULL, NULL);
    }
    char log[700];
    snprintf(log, sizeof log, "%s/flow.log", s.dir);
    char *json = s_dag_json(nodes, S_N_TASKS, log);
    int64_t plan = swarm_submit(&s, json);
    free(json);
    REQUIRE(plan > 0);
    char id[32], state[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    CHECK_INT(swarm_arch(&s, NULL, NULL, "wait", id, "--timeout", "40", NULL),
              0);
    swarm_wait_plan(&s, plan, 5, state, sizeof state);
    CHECK_STR(state, "succeeded");
    swarm_stop(&s);
    CHECK_INT(s_parse_log(log, seen, S_N_TASKS), 0);
    s_check_order(nodes, seen, S_N_TASKS);
    ledger_t *l = NULL;
    char err[256];
    REQUIRE(ledger_open(&l, s.db, LEDGER_RDONLY, err, sizeof err) == 0);
    int not_once = 0;
    for (int i = 0; i < S_N_TASKS; i++) {
        char task[16];
        snprintf(task, sizeof task, "t%d", i);
        s_count_t c = {0};
        CHECK_INT(ledger_attempts(l, plan, task, s_count, &c), LEDGER_OK);
        if (c.succeeded != 1) {
            fprintf(stderr, "task %s: %d succeeded attempts\n", task,
                    c.succeeded);
            not_once++;
        }
    }
    CHECK_INT(not_once, 0);
    ledger_destroy(&l);
}

// The task object with this id in a status --json reply (borrowed).
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

static void
s_check_task_shape(const jnode_t *t)
{
    const char *keys[] = {"id", "state", "attempts", "drone", "exit_code",
                          "last_error"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (!json_obj_get(t, keys[i])) {
            fprintf(stderr, "task has no '%s'\n", keys[i]);
            t_failures++;
        }
    }
    CHECK(json_type_of(json_obj_get(t, "id")) == JSON_T_STRING);
    CHECK(json_type_of(json_obj_get(t, "state")) == JSON_T_STRING);
    CHECK(json_type_of(json_obj_get(t, "attempts")) == JSON_T_INTEGER);
}

static const char *s_shape_plan =
    "{\"name\":\"shape\",\"tasks\":["
    "{\"id\":\"a\",\"run\":[\"sh\",\"-c\",\"echo out; echo err >&2\"]},"
    "{\"id\":\"r\",\"retries\":1,\"run\":[\"sh\",\"-c\","
    " \"if [ -f r.flag ]; then echo second; else touch r.flag; echo first; "
    "echo first-err >&2; exit 1; fi\"]},"
    "{\"id\":\"b\",\"needs\":[\"a\",\"r\"],\"run\":[\"true\"]}]}";

static void
s_check_plan_json(swarm_t *s, int64_t plan)
{
    jnode_t *st = swarm_status(s, plan);
    REQUIRE(st);
    CHECK(json_type_of(st) == JSON_T_OBJECT);
    CHECK_STR(json_str(json_obj_get(st, "state")), "succeeded");
    const jnode_t *tasks = json_obj_get(st, "tasks");
    CHECK(tasks && json_type_of(tasks) == JSON_T_ARRAY);
    CHECK_INT(json_arr_size(tasks), 3);
    for (size_t i = 0; i < json_arr_size(tasks); i++) {
        s_check_task_shape(json_arr_get(tasks, i));
    }
    const jnode_t *r = s_find_task(st, "r");
    CHECK(r != NULL);
    CHECK_STR(json_str(json_obj_get(r, "state")), "succeeded");
    CHECK_INT(json_int(json_obj_get(r, "attempts")), 2);
    CHECK_INT(json_int(json_obj_get(r, "exit_code")), 0);
    CHECK_STR(json_str(json_obj_get(r, "drone")), "drone");
    json_destroy(&st);
}

static void
s_check_overview_json(swarm_t *s, int64_t plan)
{
    char *out = NULL;
    CHECK_INT(swarm_arch(s, &out, NULL, "status", "--json", NULL), 0);
    jnode_t *ov = out ? json_parse(out, strlen(out), NULL, 0) : NULL;
    free(out);
    REQUIRE(ov);
    const jnode_t *plans = json_obj_get(ov, "plans");
    const jnode_t *drones = json_obj_get(ov, "drones");
    CHECK(plans && json_type_of(plans) == JSON_T_ARRAY);
    CHECK(drones && json_type_of(drones) == JSON_T_ARRAY);
    CHECK_INT(json_arr_size(plans), 1);
    CHECK_INT(json_int(json_obj_get(json_arr_get(plans, 0), "id")), plan);
    CHECK_INT(json_arr_size(drones), 1);
    const jnode_t *d = json_arr_get(drones, 0);
    CHECK_INT(json_int(json_obj_get(d, "slots")), 3);
    const jnode_t *tags = json_obj_get(d, "tags");
    CHECK_INT(json_arr_size(tags), 2);
    CHECK_STR(json_str(json_arr_get(tags, 0)), "gpu");
    CHECK_STR(json_str(json_arr_get(tags, 1)), "linux");
    json_destroy(&ov);
}

static void
s_check_outputs(swarm_t *s, const char *id)
{
    char *out = NULL;
    CHECK_INT(swarm_arch(s, &out, NULL, "output", id, "a", NULL), 0);
    CHECK_STR(out, "out\n");
    free(out);
    out = NULL;
    CHECK_INT(swarm_arch(s, &out, NULL, "output", id, "a", "--stderr", NULL),
              0);
    CHECK_STR(out, "err\n");
    free(out);
    out = NULL;
    CHECK_INT(swarm_arch(s, &out, NULL, "output", id, "r", NULL), 0);
    CHECK_STR(out, "second\n");
    free(out);
    out = NULL;
    CHECK_INT(swarm_arch(s, &out, NULL, "output", id, "r", "--attempt", "1",
                         NULL), 0);
    CHECK_STR(out, "first\n");
    free(out);
    out = NULL;
    CHECK_INT(swarm_arch(s, &out, NULL, "output", id, "r", "--attempt", "1",
                         "--stderr", NULL), 0);
    CHECK_STR(out, "first-err\n");
    free(out);
    out = NULL;
    CHECK_INT(swarm_arch(s, &out, NULL, "output", id, "r", "--attempt", "2",
                         NULL), 0);
    CHECK_STR(out, "second\n");
    free(out);
}

static void
test_status_json(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    swarm_drone(&s, 3, "gpu,linux", NULL);
    int64_t plan = swarm_submit(&s, s_shape_plan);
    REQUIRE(plan > 0);
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    char *out = NULL;
    CHECK_INT(swarm_arch(&s, &out, NULL, "wait", id, "--timeout", "30",
                         "--json", NULL), 0);
    jnode_t *final = out ? json_parse(out, strlen(out), NULL, 0) : NULL;
    CHECK(final != NULL);
    CHECK_STR(json_str(json_obj_get(final, "state")), "succeeded");
    CHECK_INT(json_arr_size(json_obj_get(final, "tasks")), 3);
    json_destroy(&final);
    free(out);
    s_check_plan_json(&s, plan);
    s_check_overview_json(&s, plan);
    s_check_outputs(&s, id);
    swarm_stop(&s);
}

// A result with stdout and stderr over the broker's output cap still fits
// in one frame: the drone keeps at most max_output bytes of each (WELCOME),
// and the broker starts only with --max-frame >= 2 x --max-output + 64 KiB.
// Before, a stderr tail larger than the frame limit made the RESULT
// unsendable and the lease hung in 'leased' while the drone reconnected.
static void
test_big_result_fits_frame(void)
{
    swarm_t s;
    swarm_init(&s, 100, 2000);
    REQUIRE(swarm_broker(&s, "--max-output", "4096", "--max-frame", "73728",
                         NULL) == 0);
    swarm_drone(&s, 1, NULL, "--stderr-cap", "1000000", NULL);
    int64_t plan = swarm_submit(
        &s, "{\"name\": \"big\", \"tasks\": [{\"id\": \"a\", \"run\": "
            "[\"sh\", \"-c\", \"head -c 300000 /dev/zero | tr '\\\\0' o; "
            "head -c 300000 /dev/zero | tr '\\\\0' e >&2\"]}]}");
    REQUIRE(plan > 0);
    char state[32];
    swarm_wait_plan(&s, plan, 30, state, sizeof state);
    CHECK_STR(state, "succeeded");
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long) plan);
    char *out = NULL;
    CHECK_INT(swarm_arch(&s, &out, NULL, "output", id, "a", "--stderr", NULL),
              0);
    CHECK(out != NULL && strlen(out) == 4096);
    free(out);
    swarm_stop(&s);
}

static const t_case_t t_cases[] = {
    T(test_random_dag),
    T(test_status_json),
    T(test_big_result_fits_frame),
    {0},
};

T_MAIN(t_cases)
