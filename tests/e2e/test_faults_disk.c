// e2e fault: the disk under the ledger fills up.  The ledger lives on a
// small tmpfs (with a filler file on it); plans whose tasks print ~200 KB
// are submitted until a commit cannot be made.  The broker must stay up and
// answer with errors (INTERNAL) instead of crashing; once the filler is
// deleted, work goes on, every accepted plan completes, and the ledger
// opens and holds them all.  Needs root (mount); otherwise skipped (77).
#include "broker/ledger.h"
#include "tests/harness/proc.h"
#include "tests/harness/swarm.h"
#include "tests/harness/t.h"

#include "common/clock.h"

#include <errno.h>
#include <sys/mount.h>
#include <sys/stat.h>

#define MAX_PLANS 24
#define OUT_BYTES 200000

static char s_mnt[560];
static bool s_mounted;
static swarm_t s_swarm;
static bool s_swarm_up;

static void
s_umount(void)
{
    if (s_mounted) {
        if (umount(s_mnt) < 0) {
            umount2(s_mnt, MNT_DETACH);
        }
        s_mounted = false;
    }
}

// Writes n bytes to path; 0 or -1.
static int
s_fill(const char *path, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        return -1;
    }
    static char block[4096];
    memset(block, 'f', sizeof block);
    size_t done = 0;
    while (done < n) {
        size_t k = n - done < sizeof block ? n - done : sizeof block;
        if (fwrite(block, 1, k, f) != k) {
            break;
        }
        done += k;
    }
    return fclose(f) == 0 && done == n ? 0 : -1;
}

// Submits a one-task plan printing OUT_BYTES; returns the architect's exit
// code, the plan id in *plan (or -1), its stderr in err (caller frees).
static int
s_submit_big(swarm_t *s, int seq, const char *runs, int64_t *plan,
             char **err)
{
    char json[2048], path[800];
    snprintf(json, sizeof json,
             "{\"name\":\"big-%d\",\"tasks\":[{\"id\":\"t\",\"run\":"
             "[\"sh\",\"-c\",\"echo $WAGGLE_PLAN >> %s; yes x | head -c %d"
             "\"]}]}",
             seq, runs, OUT_BYTES);
    snprintf(path, sizeof path, "%s/big-%d.json", s->dir, seq);
    t_write_file(path, json);
    char *out = NULL;
    int rc = swarm_arch(s, &out, err, "submit", path, NULL);
    *plan = rc == 0 && out ? strtoll(out, NULL, 10) : -1;
    free(out);
    return rc;
}

// Submits a small plan whose goal is pad bytes long (stored with the
// plan); same contract as s_submit_big.
static int
s_submit_padded(swarm_t *s, int seq, size_t pad, int64_t *plan, char **err)
{
    char *json = malloc(pad + 512), path[800];
    int n = snprintf(json, 512, "{\"name\":\"padded-%d\",\"goal\":\"", seq);
    memset(json + n, 'g', pad);
    // What is left of the buffer after the goal (glibc's _FORTIFY_SOURCE=3,
    // Ubuntu's default, aborts when the size passed is larger).
    snprintf(json + n + pad, 512 - (size_t) n,
             "\",\"tasks\":[{\"id\":\"t\",\"run\":[\"echo\",\"ok\"]}]}");
    snprintf(path, sizeof path, "%s/padded-%d.json", s->dir, seq);
    t_write_file(path, json);
    free(json);
    char *out = NULL;
    int rc = swarm_arch(s, &out, err, "submit", path, NULL);
    *plan = rc == 0 && out ? strtoll(out, NULL, 10) : -1;
    free(out);
    return rc;
}

typedef struct {
    int succeeded;
    int total;
} s_count_t;

static void
s_count(void *arg, const ledger_attempt_row_t *row)
{
    s_count_t *c = arg;
    c->total++;
    c->succeeded += row->outcome == LEDGER_ATTEMPT_SUCCEEDED;
}

// Waits until plan succeeded (true) or the broker logged a full disk
// (false), up to 30 s (false).
static bool
s_done_or_full(swarm_t *s, int64_t plan, const char *blog)
{
    char state[32];
    for (int i = 0; i < 30; i++) {
        swarm_wait_plan(s, plan, 1, state, sizeof state);
        if (strcmp(state, "succeeded") == 0) {
            return true;
        }
        if (swarm_log_has(blog, "disk is full", NULL)) {
            return false;
        }
    }
    return false;
}

// Fills the disk: submits one big plan at a time until one cannot complete
// (its result cannot be committed) or a submit is refused.  Returns whether
// the disk filled; the accepted plans are appended to accepted.
static bool
s_fill_up(swarm_t *s, const char *runs, const char *blog, int64_t *accepted,
          int *n_accepted, int *seq)
{
    while (*seq < MAX_PLANS) {
        int64_t plan = -1;
        char *err = NULL;
        int rc = s_submit_big(s, (*seq)++, runs, &plan, &err);
        if (rc != 0 || plan <= 0) {
            fprintf(stderr, "submit %d refused (%d): %s\n", *seq - 1, rc,
                    err ? err : "");
            // Refused, not unreachable: the broker is up and said why.
            CHECK_INT(rc, 1);
            CHECK_HAS(err, "INTERNAL");
            free(err);
            return true;
        }
        free(err);
        accepted[(*n_accepted)++] = plan;
        if (!s_done_or_full(s, plan, blog)) {
            fprintf(stderr, "plan %lld cannot complete: the disk is full\n",
                    (long long) plan);
            return swarm_log_has(blog, "disk is full", NULL);
        }
    }
    return false;
}

// The plans accepted so far.
typedef struct {
    int64_t ids[MAX_PLANS + 4];
    int n;
    int seq;                      // submits made (names the files)
} s_plans_t;

// While the disk is full: the broker is up, answers, and refuses what it
// cannot store with INTERNAL.
static void
s_while_full(swarm_t *s, const char *blog, s_plans_t *p)
{
    CHECK(proc_alive(s->broker));
    CHECK_INT(swarm_arch(s, NULL, NULL, "ping", NULL), 0);
    // A plan bigger than what is left cannot be stored: nothing recorded.
    int64_t plan = -1;
    char *err = NULL;
    int rc = s_submit_padded(s, p->seq++, 400 * 1024, &plan, &err);
    CHECK_INT(rc, 1);
    CHECK_HAS(err, "INTERNAL");
    if (rc == 0 && plan > 0) {
        p->ids[p->n++] = plan;
    }
    free(err);
    CHECK(proc_alive(s->broker));
    CHECK(swarm_log_has(blog, "not committed", NULL));
}

// After space was freed: the stuck result is resent and accepted, every
// accepted plan completes, and new work runs.
static void
s_after_free(swarm_t *s, const char *runs, s_plans_t *p)
{
    char state[32];
    for (int i = 0; i < p->n; i++) {
        swarm_wait_plan(s, p->ids[i], 30, state, sizeof state);
        if (strcmp(state, "succeeded") != 0) {
            fprintf(stderr, "plan %lld: '%s'\n", (long long) p->ids[i],
                    state);
        }
        CHECK_STR(state, "succeeded");
    }
    int64_t plan = -1;
    char *err = NULL;
    int rc = s_submit_big(s, p->seq++, runs, &plan, &err);
    CHECK_INT(rc, 0);
    free(err);
    if (rc == 0 && plan > 0) {
        p->ids[p->n++] = plan;
        swarm_wait_plan(s, plan, 30, state, sizeof state);
        CHECK_STR(state, "succeeded");
    }
    CHECK(proc_alive(s->broker));
}

// The ledger opens, holds every accepted plan (succeeded, one accepted
// attempt) and nothing of what was refused.
static void
s_check_ledger(const char *db, const s_plans_t *p)
{
    ledger_t *l = NULL;
    char err[256];
    REQUIRE(ledger_open(&l, db, LEDGER_RDONLY, err, sizeof err) == 0);
    for (int i = 0; i < p->n; i++) {
        proto_msg_t *m = proto_msg_new(PROTO_MSG_STATUS_OK);
        CHECK_INT(ledger_plans(l, p->ids[i], 1, &m->u.status_ok),
                  LEDGER_OK);
        CHECK_INT(m->u.status_ok.n_plans, 1);
        if (m->u.status_ok.n_plans == 1) {
            CHECK_STR(m->u.status_ok.plans[0].state, "succeeded");
        }
        proto_msg_destroy(&m);
        s_count_t c = {0};
        CHECK_INT(ledger_attempts(l, p->ids[i], "t", s_count, &c),
                  LEDGER_OK);
        CHECK_INT(c.succeeded, 1);
    }
    proto_msg_t *all = proto_msg_new(PROTO_MSG_STATUS_OK);
    CHECK_INT(ledger_plans(l, 0, 1000, &all->u.status_ok), LEDGER_OK);
    CHECK_INT(all->u.status_ok.n_plans, p->n);
    proto_msg_destroy(&all);
    ledger_destroy(&l);
}

static void
s_disk_body(void)
{
    swarm_init(&s_swarm, 100, 2000);
    s_swarm_up = true;
    fprintf(stderr, "%s: logs in %s\n", t_current, s_swarm.dir);
    snprintf(s_mnt, sizeof s_mnt, "%s/disk", s_swarm.dir);
    REQUIRE(mkdir(s_mnt, 0755) == 0);
    if (mount("tmpfs", s_mnt, "tmpfs", 0, "size=2M,mode=0755") < 0) {
        t_skip("cannot mount a tmpfs: %s", strerror(errno));
        return;
    }
    s_mounted = true;
    snprintf(s_swarm.db, sizeof s_swarm.db, "%s/ledger.db", s_mnt);
    char filler[800], runs[700], blog[700];
    snprintf(filler, sizeof filler, "%s/filler", s_mnt);
    snprintf(runs, sizeof runs, "%s/runs.txt", s_swarm.dir);
    snprintf(blog, sizeof blog, "%s/broker.log", s_swarm.dir);
    REQUIRE(s_fill(filler, 768 * 1024) == 0);
    REQUIRE(swarm_broker(&s_swarm, NULL) == 0);
    swarm_drone(&s_swarm, 1, NULL, NULL);

    s_plans_t p = {0};
    REQUIRE(s_fill_up(&s_swarm, runs, blog, p.ids, &p.n, &p.seq));
    fprintf(stderr, "disk full after %d submits, %d accepted\n", p.seq,
            p.n);
    s_while_full(&s_swarm, blog, &p);
    REQUIRE(unlink(filler) == 0);
    s_after_free(&s_swarm, runs, &p);
    swarm_stop(&s_swarm);
    s_check_ledger(s_swarm.db, &p);
    // At least once: every accepted plan's task ran.
    char *text = t_read_file(runs, NULL);
    for (int i = 0; i < p.n; i++) {
        char line[32];
        snprintf(line, sizeof line, "%lld\n", (long long) p.ids[i]);
        bool ran = false;
        for (const char *q = text; q && (q = strstr(q, line)) != NULL; q++) {
            ran |= q == text || q[-1] == '\n';
        }
        CHECK(ran);
    }
    free(text);
}

static void
test_disk_full(void)
{
    if (geteuid() != 0) {
        t_skip("not running as root (needs mount)");
        return;
    }
    atexit(s_umount);
    s_disk_body();
    if (s_swarm_up) {
        swarm_stop(&s_swarm);  // a no-op when the scenario got that far
    }
    s_umount();
}

static const t_case_t t_cases[] = {
    T(test_disk_full),
    {0},
};

T_MAIN(t_cases)
