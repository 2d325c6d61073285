// test_migrate: upgrading ledger files written by older Waggle releases.
//
// The file under test is tests/fixtures/ledger-v1.db, written by the
// schema-1 release itself (tests/fixtures/make-ledger.sh 1 says how), so
// the upgrade meets what old code really wrote.  The test reads the files
// with SQLite directly — the ledger's own reads know only the new schema —
// and doctors a copy with it to make an upgrade step fail for real.
#include "broker/ledger.h"

#include "common/xalloc.h"
#include "tests/harness/t.h"

#include <sqlite3.h>
#include <sys/stat.h>

#ifndef WAGGLE_SOURCE_DIR
#error "WAGGLE_SOURCE_DIR must name the source tree (tests/unit.cmake)"
#endif

#define S_FIXTURE WAGGLE_SOURCE_DIR "/tests/fixtures/ledger-v1.db"
// Written by main at schema 2 (tests/fixtures/make-ledger.sh 2).
#define S_FIXTURE_V2 WAGGLE_SOURCE_DIR "/tests/fixtures/ledger-v2.db"
// Written by main at schema 3 (tests/fixtures/make-ledger.sh 3).
#define S_FIXTURE_V3 WAGGLE_SOURCE_DIR "/tests/fixtures/ledger-v3.db"
// Written by main at schema 5 (tests/fixtures/make-ledger.sh 5).
#define S_FIXTURE_V5 WAGGLE_SOURCE_DIR "/tests/fixtures/ledger-v5.db"
#define NOW 1700000000000LL  // before the fixture was made

// --- helpers -------------------------------------------------------------

static const char *
s_path(const char *suffix)
{
    static char path[4][600];
    static int k;
    k = (k + 1) % 4;
    snprintf(path[k], sizeof path[k], "%s/ledger.db%s", t_tmpdir(), suffix);
    return path[k];
}

static char *
s_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            buf = xrealloc(buf, cap *= 2);
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

static bool
s_same_bytes(const char *a, const char *b)
{
    size_t na = 0, nb = 0;
    char *x = s_slurp(a, &na), *y = s_slurp(b, &nb);
    bool same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

// Copies a fixture to the test's ledger path.
static bool
s_copy_file(const char *fixture)
{
    size_t n = 0;
    char *data = s_slurp(fixture, &n);
    FILE *f = data ? fopen(s_path(""), "wb") : NULL;
    bool ok = f && fwrite(data, 1, n, f) == n;
    if (f && fclose(f) != 0) {
        ok = false;
    }
    free(data);
    return ok;
}

static bool
s_copy_fixture(void)
{
    return s_copy_file(S_FIXTURE);
}

// The first column of a one-row query on the file at path, as an integer
// (-1 if it fails).
static long long
s_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long v = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK
        && sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK
        && sqlite3_step(st) == SQLITE_ROW) {
        v = sqlite3_column_int64(st, 0);
    } else {
        fprintf(stderr, "%s: '%s': %s\n", t_current, sql, sqlite3_errmsg(db));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static int
s_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK) {
        fprintf(stderr, "%s: '%s': %s\n", t_current, sql, sqlite3_errmsg(db));
    }
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

static ledger_t *
s_open(unsigned flags, char *err, size_t errlen)
{
    ledger_t *l = NULL;
    err[0] = '\0';
    if (ledger_open(&l, s_path(""), flags, err, errlen) != 0) {
        return NULL;
    }
    return l;
}

// The tables of schema 1 with the columns they had; each must hold the
// same rows after the upgrade as before it.
static const char *const s_v1_tables[][2] = {
    {"meta", "key, value"},
    {"plans", "id, name, goal, state, submitted_by, created_ms, finished_ms,"
              " workplan_json, workplan_hash"},
    {"tasks", "plan_id, tid, seq, kind, state, attempts_used, not_before_ms,"
              " lease_token, lease_instance, lease_holder, lease_start_ms,"
              " accepted_attempt, last_exit_code, last_error, last_drone"},
    {"edges", "plan_id, tid, ord, need"},
    {"attempts", "plan_id, tid, n, token, instance, holder, started_ms,"
                 " ended_ms, outcome, exit_code, signal, timed_out, error,"
                 " stdout, stdout_truncated, stderr, stderr_truncated"},
    {"drones", "instance, name, host, slots, tags, first_seen_ms,"
               " last_seen_ms"},
    {"idempotency", "submitter, key, plan_id, hash"},
    {"events", "seq, at_ms, plan_id, tid, actor, kind, from_state, to_state,"
               " token, detail"},
};

// Rows of table in one file and not in the other (both ways), with the
// file at `other` attached.  meta's version row is the one expected change.
static long long
s_diff_rows(const char *path, const char *other, const char *table,
            const char *cols)
{
    const char *skip = strcmp(table, "meta") == 0
                           ? " WHERE key <> 'schema_version'" : "";
    char *sql = xasprintf(
        "ATTACH '%s' AS o;"
        "CREATE TEMP TABLE d AS SELECT count(*) AS n FROM ("
        "SELECT * FROM (SELECT %s FROM main.%s%s EXCEPT"
        " SELECT %s FROM o.%s%s) UNION ALL "
        "SELECT * FROM (SELECT %s FROM o.%s%s EXCEPT"
        " SELECT %s FROM main.%s%s))",
        other, cols, table, skip, cols, table, skip, cols, table, skip, cols,
        table, skip);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long n = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK
        && sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK
        && sqlite3_prepare_v2(db, "SELECT n FROM d", -1, &st, NULL)
               == SQLITE_OK
        && sqlite3_step(st) == SQLITE_ROW) {
        n = sqlite3_column_int64(st, 0);
    } else {
        fprintf(stderr, "%s: %s: %s\n", t_current, table, sqlite3_errmsg(db));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(sql);
    return n;
}

static long long
s_count(const char *path, const char *table)
{
    char *sql = xasprintf("SELECT count(*) FROM %s", table);
    long long n = s_int(path, sql);
    free(sql);
    return n;
}

typedef struct {
    int plans;
    int64_t plan;
    int tasks;
    ledger_task_row_t slow;     // strings not kept
    char slow_instance[65];
    int64_t flaky_not_before;
    uint32_t lost_total;
} s_load_t;

static void
s_on_plan(void *arg, int64_t plan, const char *json)
{
    s_load_t *ld = arg;
    ld->plans++;
    ld->plan = plan;
    CHECK_HAS(json, "v1-upgrade");
}

static void
s_on_task(void *arg, const ledger_task_row_t *row)
{
    s_load_t *ld = arg;
    ld->tasks++;
    ld->lost_total += row->lost_leases;
    if (strcmp(row->task, "slow") == 0) {
        ld->slow = *row;
        snprintf(ld->slow_instance, sizeof ld->slow_instance, "%s",
                 row->instance ? row->instance : "");
        ld->slow.task = ld->slow.instance = ld->slow.holder = NULL;
    }
    if (strcmp(row->task, "flaky") == 0) {
        ld->flaky_not_before = row->not_before_ms;
    }
}

// The v1 fixture upgraded in place, and a fresh ledger made by this code
// at fresh (a path in the test's directory): the pair to compare.
static int
s_upgraded_and_fresh(char *fresh, size_t len)
{
    if (!s_copy_fixture()) {
        return -1;
    }
    char err[512];
    ledger_t *l = s_open(0, err, sizeof err);
    if (!l) {
        fprintf(stderr, "%s: upgrade: %s\n", t_current, err);
        return -1;
    }
    ledger_destroy(&l);
    snprintf(fresh, len, "%s/fresh.db", t_tmpdir());
    if (ledger_open(&l, fresh, 0, err, sizeof err) != 0) {
        fprintf(stderr, "%s: fresh: %s\n", t_current, err);
        return -1;
    }
    ledger_destroy(&l);
    return 0;
}

// --- tests ---------------------------------------------------------------

// The release's own file: upgraded, backed up, every row kept.
static void
test_fixture_upgraded_rows_kept(void)
{
    REQUIRE(s_copy_fixture());
    CHECK_INT(s_int(s_path(""), "SELECT value FROM meta WHERE key ="
                    " 'schema_version'"), 1);
    char err[512];
    ledger_t *l = s_open(0, err, sizeof err);
    CHECK_STR(err, "");
    REQUIRE(l);
    ledger_destroy(&l);
    char bak[600];
    snprintf(bak, sizeof bak, "%s", s_path(".v1.bak"));
    struct stat sb;
    REQUIRE(stat(bak, &sb) == 0);
    CHECK(stat(s_path(".v1.bak.partial"), &sb) != 0);
    CHECK_INT(s_int(bak, "SELECT value FROM meta WHERE key ="
                    " 'schema_version'"), 1);
    CHECK_INT(s_int(s_path(""), "SELECT value FROM meta WHERE key ="
                    " 'schema_version'"), LEDGER_SCHEMA_VERSION);
    for (size_t i = 0; i < sizeof s_v1_tables / sizeof s_v1_tables[0]; i++) {
        const char *t = s_v1_tables[i][0];
        CHECK_INT(s_count(bak, t) > 0, 1);
        long long extra = strcmp(t, "events") == 0
                              ? LEDGER_SCHEMA_VERSION - 1 : 0;
        CHECK_INT(s_count(s_path(""), t), s_count(bak, t) + extra);
        // Only the upgrade's own events are new.
        long long diff = s_diff_rows(s_path(""), bak, t, s_v1_tables[i][1]);
        CHECK_INT(diff, extra);
    }
    CHECK_INT(s_count(bak, "events"), 21);
    CHECK_INT(s_int(s_path(""), "SELECT count(*) FROM events WHERE kind ="
                    " 'upgrade' AND detail = 'schema version 1 to 2'"), 1);
    CHECK_INT(s_int(s_path(""), "SELECT sum(lost_leases) FROM tasks"), 0);
    CHECK_INT(s_int(s_path(""), "SELECT count(*) FROM drones WHERE"
                    " secret_hash IS NULL"), 1);
}

// A schema-2 file main wrote: upgraded by the steps from v2 on
// (backed up as .v2.bak), every row kept, the attempts' token columns added
// and NULL, and the sums status shows are 0.
static void
test_v2_fixture_upgraded(void)
{
    REQUIRE(s_copy_file(S_FIXTURE_V2));
    CHECK_INT(s_int(s_path(""), "SELECT value FROM meta WHERE key ="
                    " 'schema_version'"), 2);
    char err[512];
    ledger_t *l = s_open(0, err, sizeof err);
    CHECK_STR(err, "");
    REQUIRE(l);
    proto_status_ok_t st = {0};
    CHECK_INT(ledger_plans(l, 2, 0, &st), LEDGER_OK);
    REQUIRE(st.n_plans == 1);
    CHECK_STR(st.plans[0].name, "v2-upgrade");
    CHECK_INT(st.plans[0].prompt_tokens, 0);
    CHECK_INT(ledger_tasks(l, 2, 0, 1000, &st), LEDGER_OK);
    CHECK_INT(st.n_tasks, 5);
    CHECK_INT(st.tasks[0].completion_tokens, 0);
    proto_msg_t *m = proto_msg_new(PROTO_MSG_STATUS_OK);
    m->u.status_ok = st;
    proto_msg_destroy(&m);
    ledger_destroy(&l);
    char bak[600];
    snprintf(bak, sizeof bak, "%s", s_path(".v2.bak"));
    struct stat sb;
    REQUIRE(stat(bak, &sb) == 0);
    CHECK(stat(s_path(".v1.bak"), &sb) != 0);
    CHECK_INT(s_int(bak, "SELECT value FROM meta WHERE key ="
                    " 'schema_version'"), 2);
    CHECK_INT(s_int(s_path(""), "SELECT value FROM meta WHERE key ="
                    " 'schema_version'"), LEDGER_SCHEMA_VERSION);
    for (size_t i = 0; i < sizeof s_v1_tables / sizeof s_v1_tables[0]; i++) {
        const char *t = s_v1_tables[i][0];
        long long extra = strcmp(t, "events") == 0
                              ? LEDGER_SCHEMA_VERSION - 2 : 0;
        CHECK_INT(s_count(s_path(""), t), s_count(bak, t) + extra);
        CHECK_INT(s_diff_rows(s_path(""), bak, t, s_v1_tables[i][1]), extra);
    }
    CHECK_INT(s_int(s_path(""), "SELECT count(*) FROM events WHERE kind ="
                    " 'upgrade' AND detail = 'schema version 2 to 3'"), 1);
    CHECK_INT(s_int(s_path(""), "SELECT count(*) FROM attempts"),
              s_count(bak, "attempts"));
    CHECK_INT(s_int(s_path(""), "SELECT count(*) FROM attempts WHERE"
                    " prompt_tokens IS NOT NULL OR completion_tokens IS NOT"
                    " NULL"), 0);
}

// A schema-3 file main wrote: upgraded by the steps from v3 on (backed
// up as .v3.bak), every row kept; tasks.ready_ms is filled from the event
// log (the last move to ready), else the plan's creation for a task that
// needs nothing, and stays NULL for a task that never became ready.  The
// times status shows come out of it.
static void
test_v3_fixture_upgraded(void)
{
    REQUIRE(s_copy_file(S_FIXTURE_V3));
    CHECK_INT(s_int(s_path(""), "SELECT value FROM meta WHERE key ="
                    " 'schema_version'"), 3);
    char err[512];
    ledger_t *l = s_open(0, err, sizeof err);
    CHECK_STR(err, "");
    REQUIRE(l);
    proto_msg_t *m = proto_msg_new(PROTO_MSG_STATUS_OK);
    proto_status_ok_t *st = &m->u.status_ok;
    CHECK_INT(ledger_plans(l, 2, 0, st), LEDGER_OK);
    REQUIRE(st->n_plans == 1);
    int64_t created = st->plans[0].created_ms;
    CHECK_INT(ledger_tasks(l, 2, 0, 1000, st), LEDGER_OK);
    REQUIRE(st->n_tasks == 5);
    // first, flaky, slow, tagged, last (the fixture's order).
    CHECK_STR(st->tasks[0].id, "first");
    CHECK_INT(st->tasks[0].ready_ms, created);
    CHECK_INT(st->tasks[0].attempt, 1);
    CHECK(st->tasks[0].started_ms >= created);
    CHECK(st->tasks[0].ended_ms >= st->tasks[0].started_ms);
    CHECK_STR(st->tasks[1].id, "flaky");  // failed once: ready again after
    CHECK(st->tasks[1].ready_ms >= st->tasks[1].ended_ms);
    CHECK(st->tasks[1].ended_ms > 0);
    CHECK_STR(st->tasks[2].id, "slow");   // needs first: its event says
    CHECK(st->tasks[2].ready_ms >= st->tasks[0].ended_ms);
    CHECK(st->tasks[2].started_ms >= st->tasks[2].ready_ms);
    CHECK_INT(st->tasks[2].ended_ms, 0);
    CHECK_STR(st->tasks[3].id, "tagged");
    CHECK_INT(st->tasks[3].ready_ms, created);
    CHECK_INT(st->tasks[3].attempt, 0);
    CHECK_STR(st->tasks[4].id, "last");
    CHECK_INT(st->tasks[4].ready_ms, 0);
    proto_msg_destroy(&m);
    ledger_destroy(&l);
    char bak[600];
    snprintf(bak, sizeof bak, "%s", s_path(".v3.bak"));
    struct stat sb;
    REQUIRE(stat(bak, &sb) == 0);
    CHECK_INT(s_int(bak, "SELECT value FROM meta WHERE key ="
                    " 'schema_version'"), 3);
    CHECK_INT(s_int(s_path(""), "SELECT value FROM meta WHERE key ="
                    " 'schema_version'"), LEDGER_SCHEMA_VERSION);
    for (size_t i = 0; i < sizeof s_v1_tables / sizeof s_v1_tables[0]; i++) {
        const char *t = s_v1_tables[i][0];
        long long extra = strcmp(t, "events") == 0
                              ? LEDGER_SCHEMA_VERSION - 3 : 0;
        CHECK_INT(s_count(s_path(""), t), s_count(bak, t) + extra);
        CHECK_INT(s_diff_rows(s_path(""), bak, t, s_v1_tables[i][1]), extra);
    }
    CHECK_INT(s_int(s_path(""), "SELECT count(*) FROM events WHERE kind ="
                    " 'upgrade' AND detail = 'schema version 3 to 4'"), 1);
}

// Version 6 rebuilt attempts (keyed by token) and events (no
// AUTOINCREMENT) of a file main wrote at schema 5: every row of every table
// kept, column for column (event numbers included); the rules the old
// tables enforced still refuse what they refused; and the ledger goes on
// from there (tokens and event numbers continue, a finish finds its
// attempt by token).
static void
test_v5_fixture_upgraded(void)
{
    REQUIRE(s_copy_file(S_FIXTURE_V5));
    CHECK_INT(s_int(s_path(""), "SELECT value FROM meta WHERE key ="
                    " 'schema_version'"), 5);
    char err[512];
    ledger_t *l = s_open(0, err, sizeof err);
    CHECK_STR(err, "");
    REQUIRE(l);
    char bak[600];
    snprintf(bak, sizeof bak, "%s", s_path(".v5.bak"));
    struct stat sb;
    REQUIRE(stat(bak, &sb) == 0);
    static const char *const tables[] = {"meta", "plans", "tasks", "edges",
                                         "attempts", "drones", "idempotency",
                                         "events"};
    for (size_t i = 0; i < sizeof tables / sizeof *tables; i++) {
        long long extra = strcmp(tables[i], "events") == 0;
        CHECK_INT(s_count(s_path(""), tables[i]) > 0, 1);
        CHECK_INT(s_count(s_path(""), tables[i]),
                  s_count(bak, tables[i]) + extra);
        CHECK_INT(s_diff_rows(s_path(""), bak, tables[i], "*"), extra);
    }
    CHECK_INT(s_int(s_path(""), "SELECT count(*) FROM events WHERE kind ="
                    " 'upgrade' AND detail = 'schema version 5 to 6'"), 1);
    // The upgrade's event follows the old numbers.
    CHECK_INT(s_int(s_path(""), "SELECT max(seq) FROM events"),
              s_int(bak, "SELECT max(seq) FROM events") + 1);
    CHECK_INT(s_int(s_path(""), "SELECT pk FROM pragma_table_info("
                    "'attempts') WHERE name = 'token'"), 1);
    CHECK_INT(s_int(s_path(""), "SELECT count(*) FROM sqlite_schema WHERE"
                    " name = 'events' AND sql LIKE '%AUTOINCREMENT%'"), 0);
    CHECK_INT(s_int(s_path(""), "SELECT count(*) FROM sqlite_sequence"
                    " WHERE name = 'events'"), 0);
    CHECK_INT(s_int(s_path(""), "SELECT count(*) FROM sqlite_schema WHERE"
                    " name LIKE '%v5%'"), 0);
    CHECK_INT(s_int(s_path(""), "SELECT count(*) FROM pragma_integrity_check"
                    " WHERE integrity_check <> 'ok'"), 0);
    CHECK_INT(s_int(s_path(""), "SELECT count(*) FROM"
                    " pragma_foreign_key_check"), 0);
    // What the old tables refused, the new ones still refuse: events are
    // append-only; a token, a run number of a task, an open attempt per
    // task and an accepted one per task are each unique.
    CHECK_INT(s_exec(s_path(""), "UPDATE events SET detail = 'x'"), -1);
    CHECK_INT(s_exec(s_path(""), "DELETE FROM events"), -1);
    static const char dup[] =
        "INSERT INTO attempts (plan_id, tid, n, token, instance, holder,"
        " started_ms, outcome) SELECT plan_id, tid, %s, %s, 'i', 'h', 1, %s"
        " FROM attempts WHERE outcome = '%s' LIMIT 1";
    char *sql = xasprintf(dup, "n + 100", "token", "'failed'", "failed");
    CHECK_INT(s_exec(s_path(""), sql), -1);
    free(sql);
    sql = xasprintf(dup, "n", "token + 100", "'failed'", "failed");
    CHECK_INT(s_exec(s_path(""), sql), -1);
    free(sql);
    sql = xasprintf(dup, "n + 100", "token + 100", "'running'", "running");
    CHECK_INT(s_exec(s_path(""), sql), -1);
    free(sql);
    sql = xasprintf(dup, "n + 100", "token + 100", "'succeeded'",
                    "succeeded");
    CHECK_INT(s_exec(s_path(""), sql), -1);
    free(sql);
    CHECK_INT(s_exec(s_path(""), "PRAGMA foreign_keys = ON; INSERT INTO"
                     " attempts (plan_id, tid, n, token, instance, holder,"
                     " started_ms) VALUES (2, 'nosuch', 1, 1000, 'i', 'h',"
                     " 1)"), -1);
    // The ledger goes on from the upgraded file.
    uint64_t old_next = (uint64_t) s_int(s_path(""), "SELECT value FROM meta"
                                         " WHERE key = 'next_token'");
    long long old_seq = s_int(s_path(""), "SELECT max(seq) FROM events");
    uint64_t slow = (uint64_t) s_int(s_path(""), "SELECT lease_token FROM"
                                     " tasks WHERE tid = 'slow'");
    REQUIRE(slow > 0);
    REQUIRE(ledger_begin(l) == 0);
    ledger_attempt_end_t ok = {.outcome = LEDGER_ATTEMPT_SUCCEEDED};
    uint32_t run = (uint32_t) s_int(s_path(""), "SELECT n FROM attempts"
                                    " WHERE tid = 'slow' AND outcome ="
                                    " 'running'");
    CHECK_INT(ledger_task_finish(l, 2, "slow", slow, run, NULL, &ok,
                                 PROTO_TASK_SUCCEEDED, 0, "broker", NOW),
              LEDGER_OK);
    uint64_t tok = 0;
    uint32_t n = 0;
    CHECK_INT(ledger_task_lease(l, 2, "tagged", "i2", "drone", 0, 1, NOW,
                                &tok, &n),
              LEDGER_OK);
    CHECK_INT(ledger_commit(l), 0);
    CHECK_INT(tok, old_next);
    CHECK_INT(n, 1);
    ledger_destroy(&l);
    CHECK_INT(s_int(s_path(""), "SELECT min(seq) FROM events WHERE tid IN"
                    " ('slow', 'tagged') AND at_ms = 1700000000000"),
              old_seq + 1);
    CHECK_INT(s_int(s_path(""), "SELECT accepted_attempt FROM tasks WHERE"
                    " tid = 'slow'"), 1);
    CHECK_INT(s_int(s_path(""), "SELECT count(*) FROM attempts WHERE"
                    " tid = 'slow' AND outcome = 'succeeded'"), 1);
}

// What the broker rebuilds from the upgraded file: the running plan, its
// lease with token and instance, its backoff; the token counter goes on.
static void
test_fixture_upgraded_loads_and_runs_on(void)
{
    REQUIRE(s_copy_fixture());
    char err[512];
    ledger_t *l = s_open(0, err, sizeof err);
    REQUIRE(l);
    s_load_t ld = {0};
    CHECK_INT(ledger_load(l, s_on_plan, s_on_task, &ld), LEDGER_OK);
    CHECK_INT(ld.plans, 1);
    CHECK_INT(ld.plan, 2);
    CHECK_INT(ld.tasks, 5);
    CHECK_INT(ld.slow.state, PROTO_TASK_LEASED);
    CHECK_INT(ld.slow.token, 5);
    CHECK_STR(ld.slow_instance, "b119fc1d498e936132c31d0f5d46046c");
    CHECK_INT(ld.slow.attempts_total, 1);
    CHECK(ld.flaky_not_before > NOW);
    CHECK_INT(ld.lost_total, 0);
    proto_msg_t *m = proto_msg_new(PROTO_MSG_STATUS_OK);
    CHECK_INT(ledger_plans(l, 0, 0, &m->u.status_ok), LEDGER_OK);
    REQUIRE(m->u.status_ok.n_plans == 4);
    CHECK_STR(m->u.status_ok.plans[0].state, "cancelled");
    CHECK_STR(m->u.status_ok.plans[1].state, "failed");
    CHECK_STR(m->u.status_ok.plans[2].state, "running");
    CHECK_STR(m->u.status_ok.plans[3].state, "succeeded");
    proto_msg_destroy(&m);
    int64_t plan = 0;
    char *hash = NULL;
    CHECK_INT(ledger_idem_get(l, "operator", "v1-fixture", &plan, &hash),
              LEDGER_OK);
    CHECK_INT(plan, 1);
    free(hash);
    char secret[65];
    CHECK_INT(ledger_drone_secret(l, "b119fc1d498e936132c31d0f5d46046c",
                                  secret), LEDGER_MISS);
    // The new columns work, and tokens continue from the old counter.
    REQUIRE(ledger_begin(l) == 0);
    ledger_attempt_end_t lost = {.outcome = LEDGER_ATTEMPT_RELEASED,
                                 .lost = true};
    uint32_t run = (uint32_t) s_int(s_path(""), "SELECT n FROM attempts"
                                    " WHERE token = 5");
    uint32_t runs = (uint32_t) s_int(s_path(""), "SELECT count(*) FROM"
                                     " attempts WHERE tid = 'slow'");
    uint32_t used = (uint32_t) s_int(s_path(""), "SELECT attempts_used FROM"
                                     " tasks WHERE tid = 'slow'");
    CHECK_INT(ledger_task_finish(l, 2, "slow", 5, run, NULL, &lost,
                                 PROTO_TASK_READY, 0, "broker", NOW),
              LEDGER_OK);
    uint64_t tok = 0;
    uint32_t n = 0;
    CHECK_INT(ledger_task_lease(l, 2, "slow", "i2", "drone", used, runs + 1,
                                NOW, &tok, &n),
              LEDGER_OK);
    CHECK_INT(ledger_drone_seen(l, "i2", "drone", "h", 1, NULL, "ab", NOW),
              LEDGER_OK);
    CHECK_INT(ledger_commit(l), 0);
    CHECK_INT(tok, 7);
    // The lost lease used no attempt, so this is still the first.
    CHECK_INT(n, 1);
    uint32_t lost_n = 0;
    CHECK_INT(ledger_task_lost_leases(l, 2, "slow", &lost_n), LEDGER_OK);
    CHECK_INT(lost_n, 1);
    ledger_destroy(&l);
    // Opening again upgrades nothing and copies nothing.
    REQUIRE(unlink(s_path(".v1.bak")) == 0);
    l = s_open(0, err, sizeof err);
    CHECK(l != NULL);
    ledger_destroy(&l);
    struct stat sb;
    CHECK(stat(s_path(".v1.bak"), &sb) != 0);
}

// A fresh file and an upgraded one have the same tables, columns, indexes
// and triggers.
static void
test_fresh_and_upgraded_agree(void)
{
    char fresh[600];
    REQUIRE(s_upgraded_and_fresh(fresh, sizeof fresh) == 0);
    static const char cols[] =
        "SELECT m.name, p.cid, p.name, p.type, p.\"notnull\", p.dflt_value,"
        " p.pk FROM sqlite_schema m, pragma_table_info(m.name) p"
        " WHERE m.type = 'table'";
    static const char objs[] =
        "SELECT type, name, tbl_name FROM sqlite_schema WHERE type IN"
        " ('index', 'trigger')";
    const char *sets[] = {cols, objs};
    // Each file lists its own schema; the lists are compared as text.
    char *a = NULL, *b = NULL;
    for (int k = 0; k < 2; k++) {
        const char *path = k ? fresh : s_path("");
        sqlite3 *db = NULL;
        REQUIRE(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL)
                == SQLITE_OK);
        char *list = xstrdup("");
        for (size_t i = 0; i < 2; i++) {
            char *sql = xasprintf("%s ORDER BY 1, 2, 3", sets[i]);
            sqlite3_stmt *st = NULL;
            REQUIRE(sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK);
            while (sqlite3_step(st) == SQLITE_ROW) {
                for (int c = 0; c < sqlite3_column_count(st); c++) {
                    const unsigned char *v = sqlite3_column_text(st, c);
                    char *next = xasprintf("%s%s|", list,
                                           v ? (const char *) v : "NULL");
                    free(list);
                    list = next;
                }
                char *next = xasprintf("%s\n", list);
                free(list);
                list = next;
            }
            sqlite3_finalize(st);
            free(sql);
        }
        sqlite3_close(db);
        *(k ? &b : &a) = list;
    }
    CHECK_STR(a, b);
    CHECK_HAS(a, "tasks|");
    CHECK_HAS(a, "lost_leases|INTEGER|1|0|0|");
    CHECK_HAS(a, "secret_hash|TEXT|0|NULL|0|");
    free(a);
    free(b);
}

// The text from "CHECK (" of the n-th CHECK in table's schema to the
// first ")" after it (the state and outcome CHECKs hold no parentheses).
static char *
s_check_text(const char *path, const char *table, int n)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    char *out = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK
        && sqlite3_prepare_v2(db, "SELECT sql FROM sqlite_schema WHERE name"
                              " = ?1", -1, &st, NULL) == SQLITE_OK
        && sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC) == SQLITE_OK
        && sqlite3_step(st) == SQLITE_ROW) {
        const char *sql = (const char *) sqlite3_column_text(st, 0);
        const char *at = sql;
        for (int i = 0; at && i <= n; i++) {
            at = strstr(i ? at + 1 : at, "CHECK (");
        }
        const char *end = at ? strchr(at, ')') : NULL;
        out = end ? xasprintf("%.*s", (int) (end - at + 1), at) : NULL;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

// Version 4: the CHECKs on state and outcome names of an upgraded file are
// the fresh file's chains of ORs (no IN list: SQLite builds an ephemeral
// table for one on every insert and update), and they still refuse a name
// that is not a state.
static void
test_checks_without_in_lists(void)
{
    char fresh[600];
    REQUIRE(s_upgraded_and_fresh(fresh, sizeof fresh) == 0);
    static const char *const tables[] = {"plans", "tasks", "attempts"};
    for (size_t i = 0; i < 3; i++) {
        char *a = s_check_text(s_path(""), tables[i], 0);
        char *b = s_check_text(fresh, tables[i], 0);
        REQUIRE(a && b);
        CHECK_STR(a, b);
        CHECK(strstr(a, " IN ") == NULL);
        CHECK_HAS(a, " OR ");
        free(a);
        free(b);
    }
    CHECK_INT(s_int(s_path(""), "SELECT count(*) FROM sqlite_schema WHERE"
                    " sql LIKE '% IN (%'"), 0);
    CHECK_INT(s_exec(s_path(""), "UPDATE tasks SET state = 'bogus' WHERE"
                     " state = 'succeeded'"), -1);
    CHECK_INT(s_exec(s_path(""), "UPDATE attempts SET outcome = 'won'"),
              -1);
    CHECK_INT(s_exec(s_path(""), "UPDATE plans SET state = 'done'"), -1);
    CHECK_INT(s_exec(s_path(""), "UPDATE plans SET state = 'cancelled'"
                     " WHERE state = 'cancelled'"), 0);
    CHECK_INT(s_int(s_path(""), "SELECT count(*) FROM pragma_integrity_check"
                    " WHERE integrity_check <> 'ok'"), 0);
}

// A file newer than this code is refused, naming both versions, and left
// as it was.
static void
test_newer_refused_untouched(void)
{
    REQUIRE(s_copy_fixture());
    // One past this code's version, whatever that is.
    char newer[96], named[32], ours[32], bak[32];
    snprintf(newer, sizeof newer, "UPDATE meta SET value = %d WHERE key ="
             " 'schema_version'", LEDGER_SCHEMA_VERSION + 1);
    snprintf(named, sizeof named, "schema version %d",
             LEDGER_SCHEMA_VERSION + 1);
    snprintf(ours, sizeof ours, "version %d", LEDGER_SCHEMA_VERSION);
    snprintf(bak, sizeof bak, ".v%d.bak", LEDGER_SCHEMA_VERSION + 1);
    REQUIRE(s_exec(s_path(""), newer) == 0);
    char err[512];
    for (int rdonly = 0; rdonly < 2; rdonly++) {
        ledger_t *l = s_open(rdonly ? LEDGER_RDONLY : 0, err, sizeof err);
        CHECK(l == NULL);
        ledger_destroy(&l);
        CHECK_HAS(err, named);
        CHECK_HAS(err, ours);
        CHECK_HAS(err, "newer");
    }
    struct stat sb;
    CHECK(stat(s_path(bak), &sb) != 0);
    CHECK_INT(s_int(s_path(""), "SELECT value FROM meta WHERE key ="
                    " 'schema_version'"), LEDGER_SCHEMA_VERSION + 1);
    CHECK_INT(s_count(s_path(""), "events"), 21);
}

// A step that fails (here: the file already has one of the columns the
// step adds, so its second statement fails after the first ran) rolls the
// whole step back: same version, same columns, same rows, same bytes.
static void
test_failed_step_leaves_file_untouched(void)
{
    REQUIRE(s_copy_fixture());
    REQUIRE(s_exec(s_path(""), "ALTER TABLE drones ADD COLUMN secret_hash"
                   " TEXT; PRAGMA wal_checkpoint(TRUNCATE)") == 0);
    char *before = xasprintf("%s/before.db", t_tmpdir());
    size_t n = 0;
    char *data = s_slurp(s_path(""), &n);
    REQUIRE(data);
    FILE *f = fopen(before, "wb");
    REQUIRE(f && fwrite(data, 1, n, f) == n && fclose(f) == 0);
    free(data);
    char err[512];
    ledger_t *l = s_open(0, err, sizeof err);
    CHECK(l == NULL);
    ledger_destroy(&l);
    CHECK_HAS(err, "cannot upgrade ledger");
    CHECK_HAS(err, "from schema version 1 to 2");
    CHECK_HAS(err, "secret_hash");
    CHECK_HAS(err, "still at version 1");
    CHECK_HAS(err, ".v1.bak");
    CHECK(s_same_bytes(s_path(""), before));
    CHECK_INT(s_int(s_path(""), "SELECT value FROM meta WHERE key ="
                    " 'schema_version'"), 1);
    CHECK_INT(s_int(s_path(""), "SELECT count(*) FROM"
                    " pragma_table_info('tasks') WHERE name ="
                    " 'lost_leases'"), 0);
    CHECK_INT(s_count(s_path(""), "events"), 21);
    // The copy made before the step is the file as it was.
    struct stat sb;
    CHECK(stat(s_path(".v1.bak"), &sb) == 0);
    CHECK_INT(s_count(s_path(".v1.bak"), "events"), 21);
    free(before);
}

// A read-only opener cannot upgrade, so it refuses an older file and
// leaves it alone.
static void
test_rdonly_refuses_older(void)
{
    REQUIRE(s_copy_fixture());
    char err[512];
    ledger_t *l = s_open(LEDGER_RDONLY, err, sizeof err);
    CHECK(l == NULL);
    CHECK_HAS(err, "schema version 1");
    CHECK_HAS(err, "older");
    struct stat sb;
    CHECK(stat(s_path(".v1.bak"), &sb) != 0);
    CHECK_INT(s_int(s_path(""), "SELECT value FROM meta WHERE key ="
                    " 'schema_version'"), 1);
}

// An old copy and a half-written one (a crash during an earlier start) are
// replaced by a whole copy of the file as it is now.
static void
test_backup_replaces_leftovers(void)
{
    REQUIRE(s_copy_fixture());
    REQUIRE(t_write_file(s_path(".v1.bak"), "an old copy\n") == 0);
    REQUIRE(t_write_file(s_path(".v1.bak.partial"), "half a copy\n") == 0);
    REQUIRE(chmod(s_path(""), 0640) == 0);
    char err[512];
    ledger_t *l = s_open(0, err, sizeof err);
    CHECK_STR(err, "");
    ledger_destroy(&l);
    struct stat sb;
    CHECK(stat(s_path(".v1.bak.partial"), &sb) != 0);
    REQUIRE(stat(s_path(".v1.bak"), &sb) == 0);
    CHECK_INT(sb.st_mode & 0777, 0640);
    CHECK_INT(s_count(s_path(".v1.bak"), "plans"), 4);
    CHECK_INT(s_int(s_path(".v1.bak"), "SELECT value FROM meta WHERE key ="
                    " 'schema_version'"), 1);
}

// A file whose version is not a version at all is refused.
static void
test_no_version_refused(void)
{
    REQUIRE(s_copy_fixture());
    REQUIRE(s_exec(s_path(""), "UPDATE meta SET value = 'x' WHERE key ="
                   " 'schema_version'") == 0);
    char err[512];
    ledger_t *l = s_open(0, err, sizeof err);
    CHECK(l == NULL);
    CHECK_HAS(err, "no valid schema version");
}

// No upgrade without a copy: when the copy cannot be made (here its name
// is taken by a directory), the file is left as it was.
static void
test_no_backup_no_upgrade(void)
{
    REQUIRE(s_copy_fixture());
    REQUIRE(mkdir(s_path(".v1.bak"), 0755) == 0);
    char err[512];
    ledger_t *l = s_open(0, err, sizeof err);
    CHECK(l == NULL);
    CHECK_HAS(err, "cannot back up ledger");
    CHECK_INT(s_int(s_path(""), "SELECT value FROM meta WHERE key ="
                    " 'schema_version'"), 1);
    struct stat sb;
    CHECK(stat(s_path(".v1.bak.partial"), &sb) != 0);
    REQUIRE(rmdir(s_path(".v1.bak")) == 0);
}

static const t_case_t t_cases[] = {
    T(test_fixture_upgraded_rows_kept),
    T(test_v2_fixture_upgraded),
    T(test_fixture_upgraded_loads_and_runs_on),
    T(test_v3_fixture_upgraded),
    T(test_v5_fixture_upgraded),
    T(test_fresh_and_upgraded_agree),
    T(test_checks_without_in_lists),
    T(test_newer_refused_untouched),
    T(test_failed_step_leaves_file_untouched),
    T(test_rdonly_refuses_older),
    T(test_backup_replaces_leftovers),
    T(test_no_version_refused),
    T(test_no_backup_no_upgrade),
    {0},
};

T_MAIN(t_cases)
