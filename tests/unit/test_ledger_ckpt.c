// test_ledger_ckpt: the ledger's checkpoint thread (ledger_ckpt.c) on a
// real SQLite file — the WAL is copied and cut back while commits go on,
// emptied when the writer goes idle, and stays under a bound with a writer
// that never pauses (the loop finishes what the thread began).
#include "broker/ledger.h"

#include "common/xalloc.h"
#include "tests/harness/t.h"

#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NOW 1700000000000LL
#define MIB (1024LL * 1024)
#define S_TASKS 300                 // per plan: ~100 WAL frames a commit

static char s_db[600], s_wal[610];

static ledger_t *
s_open(void)
{
    snprintf(s_db, sizeof s_db, "%s/ledger.db", t_tmpdir());
    snprintf(s_wal, sizeof s_wal, "%s-wal", s_db);
    ledger_t *l = NULL;
    char err[512] = "";
    if (ledger_open(&l, s_db, 0, err, sizeof err) != 0) {
        fprintf(stderr, "%s: ledger_open: %s\n", t_current, err);
    }
    return l;
}

static long long
s_wal_bytes(void)
{
    struct stat st;
    return stat(s_wal, &st) == 0 ? (long long) st.st_size : 0;
}

static int64_t
s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// A flat plan of S_TASKS tasks with long commands: many pages per commit.
static workplan_t *
s_workplan(void)
{
    size_t cap = (size_t) S_TASKS * 700 + 128, len = 0;
    char *json = xmalloc(cap);
    char pad[513];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    len += (size_t) snprintf(json + len, cap - len,
                             "{\"name\": \"ckpt\", \"tasks\": [");
    for (int i = 0; i < S_TASKS; i++) {
        len += (size_t) snprintf(json + len, cap - len,
                                 "%s{\"id\": \"t%d\", \"run\": [\"echo\","
                                 " \"%s\"]}", i ? "," : "", i, pad);
    }
    snprintf(json + len, cap - len, "]}");
    workplan_t *wp = NULL;
    wp_errors_t errs = {0};
    if (workplan_parse(json, strlen(json), &wp, &errs) != 0) {
        wp_errors_release(&errs);
        wp = NULL;
    }
    free(json);
    return wp;
}

// One plan in one turn; false when the commit failed.
static bool
s_commit_plan(ledger_t *l, const workplan_t *wp)
{
    proto_task_state_t initial[S_TASKS];
    for (int i = 0; i < S_TASKS; i++) {
        initial[i] = PROTO_TASK_READY;
    }
    int64_t plan = 0;
    bool ok = ledger_begin(l) == 0
              && ledger_plan_create(l, wp, "{}", "hash", initial, "t", NULL,
                                    NOW, &plan) == LEDGER_OK
              && ledger_commit(l) == 0;
    if (!ok) {
        ledger_rollback(l);
    }
    return ok;
}

// Writes total_bytes of plans (as the database grows), pausing pause_ms
// between commits; returns the largest WAL seen, or -1.
static long long
s_write(ledger_t *l, const workplan_t *wp, long long total_bytes,
        int pause_ms, bool *dropped)
{
    long long max = 0, last = 0;
    struct stat st;
    *dropped = false;
    for (;;) {
        if (!s_commit_plan(l, wp)) {
            return -1;
        }
        long long now = s_wal_bytes();
        *dropped = *dropped || now < last;
        last = now;
        max = now > max ? now : max;
        if (stat(s_db, &st) == 0 && st.st_size + now >= total_bytes) {
            return max;
        }
        if (pause_ms > 0) {
            usleep((useconds_t) pause_ms * 1000);  // load shape, not a wait
        }
    }
}

typedef struct {
    long long max;                  // the largest WAL seen, -1: failed
    bool dropped;                   // the file shrank between commits
    uint64_t by_thread, on_loop;    // ledger_checkpoints() after
} s_run_t;

static s_run_t
s_run(ledger_t *l, const workplan_t *wp, long long total_bytes, int pause_ms)
{
    s_run_t r;
    r.max = s_write(l, wp, total_bytes, pause_ms, &r.dropped);
    ledger_checkpoints(l, &r.by_thread, &r.on_loop);
    fprintf(stderr, "%s: WAL max %lld bytes, %s, %llu thread checkpoints, "
            "%llu on the loop\n", t_current, r.max,
            r.dropped ? "cut back" : "never cut back",
            (unsigned long long) r.by_thread, (unsigned long long) r.on_loop);
    return r;
}

// With pauses between commits, as a broker at less than its peak, the
// thread alone keeps the WAL small: 64 MB of frames went through it, the
// file never held more than a few checkpoints' worth, the loop never had
// to checkpoint; idle, the thread empties it.
static void
test_thread_checkpoints_and_truncates(void)
{
    ledger_t *l = s_open();
    workplan_t *wp = s_workplan();
    REQUIRE(l && wp);
    s_run_t r = s_run(l, wp, 64 * MIB, 20);
    CHECK(r.max > 0);
    // Under the loop's high mark (~33 MB): the thread kept up alone.
    CHECK(r.max < 24 * MIB);
    CHECK(r.by_thread > 0);
    // Idle: a TRUNCATE after a second; generous for a loaded machine.
    int64_t deadline = s_now_ms() + 30000;
    while (s_wal_bytes() > 0 && s_now_ms() < deadline) {
        usleep(50 * 1000);
    }
    CHECK_INT(s_wal_bytes(), 0);
    // And the writer goes on after it.
    CHECK(s_commit_plan(l, wp));
    workplan_destroy(&wp);
    ledger_destroy(&l);
    CHECK(l == NULL);
}

// A writer that never pauses keeps the thread one step behind; the loop
// finishes the thread's checkpoints (a few frames each), so the WAL
// starts over and is cut back while commits go on, and stays small.
static void
test_bounded_with_a_writer_that_never_pauses(void)
{
    ledger_t *l = s_open();
    workplan_t *wp = s_workplan();
    REQUIRE(l && wp);
    s_run_t r = s_run(l, wp, 100 * MIB, 0);
    CHECK(r.max > 0);
    // Far under the high mark (8000 frames, ~33 MB), where the loop would
    // checkpoint whatever is left.
    CHECK(r.max < 16 * MIB);
    CHECK(r.dropped);
    CHECK(r.by_thread > 0);
    CHECK(r.on_loop > 0);
    workplan_destroy(&wp);
    ledger_destroy(&l);
    // The last close checkpointed and removed the WAL, as before.
    CHECK_INT(s_wal_bytes(), 0);
}

// Reopened, every plan written is there.
static void
test_reopen_after_checkpoints(void)
{
    ledger_t *l = s_open();
    workplan_t *wp = s_workplan();
    REQUIRE(l && wp);
    CHECK(s_run(l, wp, 12 * MIB, 0).max > 0);
    ledger_destroy(&l);
    l = s_open();
    REQUIRE(l);
    int64_t counts[PROTO_TASK__COUNT] = {0};
    int64_t plans[LEDGER_PLAN_CANCELLED + 1] = {0};
    CHECK(ledger_state_counts(l, counts, plans) == LEDGER_OK);
    CHECK(counts[PROTO_TASK_READY] > 0);
    CHECK_INT(counts[PROTO_TASK_READY] % S_TASKS, 0);
    workplan_destroy(&wp);
    ledger_destroy(&l);
}

static const t_case_t t_cases[] = {
    T(test_thread_checkpoints_and_truncates),
    T(test_bounded_with_a_writer_that_never_pauses),
    T(test_reopen_after_checkpoints),
    {0},
};

T_MAIN(t_cases)
