// test_backup: ledger_backup() on real SQLite files in a temp dir — the
// copy is the ledger as of its last commit (a turn open in the writer is
// not in it), it replaces an older copy only when whole, it keeps the
// ledger's mode, and a broker opening it issues tokens past the gap.
#include "broker/ledger.h"

#include "common/xalloc.h"
#include "tests/harness/t.h"

#include <sys/stat.h>
#include <unistd.h>

#define NOW 1700000000000LL

static const char s_plan_json[] =
    "{\"name\": \"b\", \"tasks\": [{\"id\": \"a\", \"run\": [\"true\"]}]}";

static const char *
s_file(const char *name)
{
    static char path[4][600];
    static int k;
    k = (k + 1) % 4;
    snprintf(path[k], sizeof path[k], "%s/%s", t_tmpdir(), name);
    return path[k];
}

static ledger_t *
s_open(const char *path, unsigned flags)
{
    ledger_t *l = NULL;
    char err[512] = "";
    if (ledger_open(&l, path, flags, err, sizeof err) != 0) {
        fprintf(stderr, "%s: ledger_open: %s\n", t_current, err);
    }
    return l;
}

// Adds one plan (task a ready) inside the caller's turn; returns its id.
static int64_t
s_plan_in_turn(ledger_t *l)
{
    workplan_t *wp = NULL;
    wp_errors_t errs = {0};
    if (workplan_parse(s_plan_json, strlen(s_plan_json), &wp, &errs) != 0) {
        wp_errors_release(&errs);
        return 0;
    }
    proto_task_state_t initial[1] = {PROTO_TASK_READY};
    char *canon = workplan_to_json(wp);
    int64_t plan = 0;
    if (ledger_plan_create(l, wp, canon, "hash", initial, "test", NULL, NOW,
                           &plan) != LEDGER_OK) {
        plan = 0;
    }
    free(canon);
    workplan_destroy(&wp);
    return plan;
}

static int
s_backup(ledger_t *l, const char *out, ledger_backup_info_t *info)
{
    char err[1024] = "";
    int rc = ledger_backup(l, out, info, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "%s: ledger_backup: %s\n", t_current, err);
    }
    return rc;
}

static void
test_copy_holds_what_was_committed(void)
{
    ledger_t *w = s_open(s_file("live.db"), 0);
    REQUIRE(w);
    REQUIRE(ledger_begin(w) == 0);
    CHECK(s_plan_in_turn(w) > 0);
    REQUIRE(ledger_commit(w) == 0);
    // A second plan in a turn still open when the copy is made.
    REQUIRE(ledger_begin(w) == 0);
    CHECK(s_plan_in_turn(w) > 0);

    ledger_t *r = s_open(s_file("live.db"), LEDGER_RDONLY);
    REQUIRE(r);
    ledger_backup_info_t info;
    REQUIRE(s_backup(r, s_file("copy.db"), &info) == 0);
    CHECK_INT(info.plans, 1);
    CHECK_INT(info.schema_version, LEDGER_SCHEMA_VERSION);
    CHECK(info.bytes > 0);
    CHECK(info.next_token > LEDGER_BACKUP_TOKEN_GAP);

    // After the commit, a new copy replaces the old one whole.
    REQUIRE(ledger_commit(w) == 0);
    REQUIRE(s_backup(r, s_file("copy.db"), &info) == 0);
    CHECK_INT(info.plans, 2);
    CHECK(access(s_file("copy.db.partial"), F_OK) != 0);
    ledger_destroy(&r);
    ledger_destroy(&w);
}

static void
test_copy_keeps_mode_and_skips_tokens(void)
{
    ledger_t *w = s_open(s_file("live.db"), 0);
    REQUIRE(w);
    REQUIRE(ledger_begin(w) == 0);
    int64_t plan = s_plan_in_turn(w);
    REQUIRE(ledger_commit(w) == 0);
    ledger_backup_info_t info;
    REQUIRE(s_backup(w, s_file("copy.db"), &info) == 0);
    struct stat sb;
    REQUIRE(stat(s_file("copy.db"), &sb) == 0);
    CHECK_INT(sb.st_mode & 0777, 0600);
    ledger_destroy(&w);

    // A broker on the copy leases past every token the live one could
    // have issued since.
    ledger_t *c = s_open(s_file("copy.db"), 0);
    REQUIRE(c);
    uint64_t token = 0;
    uint32_t attempt = 0;
    REQUIRE(ledger_begin(c) == 0);
    CHECK_INT(ledger_task_lease(c, plan, "a", "inst", "drone-1", 0, 1, NOW,
                                &token, &attempt), LEDGER_OK);
    REQUIRE(ledger_commit(c) == 0);
    CHECK(token > LEDGER_BACKUP_TOKEN_GAP);
    CHECK(token == info.next_token);
    ledger_destroy(&c);
}

static void
test_failed_copy_leaves_nothing(void)
{
    ledger_t *w = s_open(s_file("live.db"), 0);
    REQUIRE(w);
    ledger_backup_info_t info;
    char err[1024] = "";
    const char *out = s_file("no-such-dir/copy.db");
    CHECK_INT(ledger_backup(w, out, &info, err, sizeof err), -1);
    CHECK(strstr(err, "no-such-dir") != NULL);
    CHECK(access(s_file("no-such-dir/copy.db.partial"), F_OK) != 0);
    ledger_destroy(&w);
}

static const t_case_t t_cases[] = {
    T(test_copy_holds_what_was_committed),
    T(test_copy_keeps_mode_and_skips_tokens),
    T(test_failed_copy_leaves_nothing),
    {0},
};

T_MAIN(t_cases)
