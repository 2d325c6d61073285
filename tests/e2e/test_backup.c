// e2e backups: 'waggle-broker backup' copies the ledger while the broker
// runs a plan; the broker is then SIGKILLed and a new one started on the
// copy, with the same drones still connected.  The restored broker loads
// the copy, finishes the plan (what happened after the copy runs again),
// records one accepted attempt per task, and never reissues a token the
// first broker gave after the copy (the copy's counter is advanced).
#include "broker/ledger.h"
#include "tests/harness/attempts.h"
#include "tests/harness/proc.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define N_TASKS 8

// A chain t1 -> t2 -> ... -> t8, each appending "TASK TOKEN" to runs and
// sleeping 0.4 s: long enough that the copy lands mid-plan.
static char *
s_chain(const char *runs)
{
    size_t cap = 8192, used = 0;
    char *json = malloc(cap);
    used += (size_t) snprintf(json, cap, "{\"name\":\"chain\",\"tasks\":[");
    for (int i = 1; i <= N_TASKS; i++) {
        char needs[32] = "";
        if (i > 1) {
            snprintf(needs, sizeof needs, "\"needs\":[\"t%d\"],", i - 1);
        }
        used += (size_t) snprintf(
            json + used, cap - used,
            "%s{\"id\":\"t%d\",%s\"run\":[\"sh\",\"-c\",\"echo "
            "\\\"$WAGGLE_TASK $WAGGLE_TASK_TOKEN\\\" >> %s; sleep 0.4; "
            "echo $WAGGLE_TASK\"]}",
            i > 1 ? "," : "", i, needs, runs);
    }
    snprintf(json + used, cap - used, "]}");
    return json;
}

static uint64_t
s_max_token(const char *db, int64_t plan)
{
    attempts_t *a = calloc(1, sizeof *a);
    uint64_t max = 0;
    if (attempts_read(db, plan, NULL, a) == 0) {
        for (int i = 0; i < a->n; i++) {
            max = a->a[i].token > max ? a->a[i].token : max;
        }
    }
    free(a);
    return max;
}

// Runs 'waggle-broker --db db backup --json out'; returns its exit status
// and its stdout in *out_text (caller frees).
static int
s_backup(const char *db, const char *out, char **out_text)
{
    char *argv[] = {(char *) swarm_bin("waggle-broker"), "--db", (char *) db,
                    "backup", "--json", (char *) out, NULL};
    return proc_run(argv, 60000, out_text, NULL);
}

static void
test_backup_restore_mid_plan(void)
{
    swarm_t s;
    swarm_init(&s, 100, 1500);
    fprintf(stderr, "%s: logs in %s\n", t_current, s.dir);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    swarm_drone(&s, 1, NULL, NULL);
    swarm_drone(&s, 1, NULL, NULL);
    char runs[700], copy[560];
    snprintf(runs, sizeof runs, "%s/runs.txt", s.dir);
    snprintf(copy, sizeof copy, "%s/backup.db", s.dir);
    char *json = s_chain(runs);
    int64_t plan = swarm_submit(&s, json);
    free(json);
    SWARM_REQUIRE(&s, plan > 0);

    // The copy, while the broker runs the plan.
    SWARM_REQUIRE(&s, swarm_wait_lines(runs, 2, 30000));
    char *text = NULL;
    CHECK_INT(s_backup(s.db, copy, &text), 0);
    jnode_t *j = text ? json_parse(text, strlen(text), NULL, 0) : NULL;
    CHECK_STR(json_str(json_obj_get(j, "integrity")), "ok");
    CHECK_INT(json_int(json_obj_get(j, "plans")), 1);
    CHECK(json_int(json_obj_get(j, "next_token")) >
          (int64_t) LEDGER_BACKUP_TOKEN_GAP);
    json_destroy(&j);
    free(text);
    struct stat sb;
    CHECK(stat(copy, &sb) == 0 && (sb.st_mode & 077) == 0);
    char partial[600];
    snprintf(partial, sizeof partial, "%s.partial", copy);
    CHECK(access(partial, F_OK) != 0);

    // The live broker goes on past the copy, then dies.
    int lines_at_copy = swarm_file_lines(runs);
    SWARM_REQUIRE(&s, swarm_wait_lines(runs, lines_at_copy + 2, 30000));
    swarm_broker_kill(&s);
    uint64_t max_live = s_max_token(s.db, plan);
    CHECK(max_live > 0);

    // A new broker on the copy, same endpoint, same drones.
    snprintf(s.db, sizeof s.db, "%s", copy);
    SWARM_REQUIRE(&s, swarm_broker(&s, NULL) == 0);
    char state[32];
    swarm_wait_plan(&s, plan, 90, state, sizeof state);
    CHECK_STR(state, "succeeded");
    swarm_stop(&s);

    attempts_t *after = calloc(1, sizeof *after);
    REQUIRE(attempts_read(copy, plan, NULL, after) == 0);
    for (int k = 1; k <= N_TASKS; k++) {
        char id[8];
        snprintf(id, sizeof id, "t%d", k);
        int ok = 0;
        for (int i = 0; i < after->n; i++) {
            ok += strcmp(after->a[i].task, id) == 0 &&
                  after->a[i].outcome == LEDGER_ATTEMPT_SUCCEEDED;
        }
        CHECK_INT(ok, 1);
    }
    // Tokens given by the restored broker are above all the live one gave.
    int fresh = 0;
    for (int i = 0; i < after->n; i++) {
        if (after->a[i].token > LEDGER_BACKUP_TOKEN_GAP) {
            fresh++;
            CHECK(after->a[i].token > max_live);
        }
    }
    CHECK(fresh > 0);
    free(after);
}

// Refusals: no such ledger (3), bad usage (64), an unwritable place (1);
// nothing is left behind.
static void
test_backup_refusals(void)
{
    char db[600], out[600];
    snprintf(db, sizeof db, "%s/none.db", t_tmpdir());
    snprintf(out, sizeof out, "%s/out.db", t_tmpdir());
    char *text = NULL;
    CHECK_INT(s_backup(db, out, &text), 3);
    CHECK(text && strstr(text, "\"error\""));
    free(text);
    CHECK(access(out, F_OK) != 0);
    char *argv[] = {(char *) swarm_bin("waggle-broker"), "backup", NULL};
    CHECK_INT(proc_run(argv, 10000, NULL, NULL), 64);

    swarm_t s;
    swarm_init(&s, 100, 1500);
    REQUIRE(swarm_broker(&s, NULL) == 0);
    snprintf(out, sizeof out, "%s/no-such-dir/out.db", s.dir);
    CHECK_INT(s_backup(s.db, out, NULL), 1);
    swarm_stop(&s);
}

static const t_case_t t_cases[] = {
    T(test_backup_restore_mid_plan),
    T(test_backup_refusals),
    {0},
};

T_MAIN(t_cases)
