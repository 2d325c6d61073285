// test_runner: real child processes through drone/runner.
//
// Each test drives the runner the way the drone's loop does: poll() on
// runner_pollfds with a timeout from runner_next_ms, runner_ready with
// what poll found, then runner_step.
// Processes the runner must have killed are looked up by a pid the child
// wrote to a file; a zombie counts as gone (PID 1 here may not reap).
#include "drone/runner.h"

#include "common/clock.h"
#include "common/xalloc.h"
#include "tests/harness/t.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

enum { S_SAFETY_MS = 10000, S_MAX_FDS = 64 };

static char *s_env[] = {"PATH=/usr/bin:/bin", NULL};

// The confined modes' init: the program named by $WAGGLE_TEST_TASK_INIT
// (ctest runs this file once with waggle-task-init, once without: each
// init a fork of this process).
static int
s_set_mode(runner_t *rn, runner_mode_t mode)
{
    const char *init = getenv("WAGGLE_TEST_TASK_INIT");
    if (runner_set_init(rn, init && *init ? init : NULL) != 0) {
        fprintf(stderr, "cannot run the init program '%s'\n", init);
        abort();
    }
    return runner_set_mode(rn, mode);
}

static void
s_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long) (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static runner_spec_t
s_spec(char *const *argv)
{
    return (runner_spec_t) {.argv = argv, .envp = s_env, .out_cap = 65536,
                            .err_cap = 65536};
}

// Steps rn until want results arrived (stored in res) or the safety timeout;
// returns how many arrived.
static size_t
s_collect(runner_t *rn, runner_result_t *res, size_t want)
{
    size_t got = 0;
    int64_t give_up = clock_mono_ms() + S_SAFETY_MS;
    while (got < want) {
        int64_t now = clock_mono_ms();
        runner_result_t *done = NULL;
        size_t n = runner_step(rn, now, &done);
        for (size_t i = 0; i < n; i++) {
            if (got < want) {
                res[got++] = done[i];
            } else {
                runner_result_release(&done[i]);
            }
        }
        free(done);
        if (got == want || now >= give_up) {
            break;
        }
        struct pollfd fds[S_MAX_FDS];
        size_t nfds = runner_pollfds(rn, fds, S_MAX_FDS);
        int64_t next = runner_next_ms(rn);
        int64_t until = next >= 0 && next < give_up ? next : give_up;
        int timeout = until > now ? (int) (until - now) : 0;
        nfds = nfds < S_MAX_FDS ? nfds : S_MAX_FDS;
        if (poll(fds, nfds, timeout) < 0) {
            for (size_t i = 0; i < nfds; i++) {
                fds[i].revents = 0;
            }
        }
        runner_ready(rn, fds, nfds);
    }
    return got;
}

// Starts one child and waits for its result.
static bool
s_run(runner_t *rn, const runner_spec_t *spec, runner_result_t *res)
{
    char *err = NULL;
    // Under valgrind a child's _exit after a failed exec runs
    // __libc_freeres, which flushes our stdio buffers into its pipes.
    fflush(NULL);
    if (runner_start(rn, 7, spec, clock_mono_ms(), &err) != 0) {
        fprintf(stderr, "runner_start: %s\n", err);
        free(err);
        return false;
    }
    return s_collect(rn, res, 1) == 1;
}

static void
s_check_clean(const runner_result_t *r, int exit_code)
{
    CHECK(r->spawned);
    CHECK_INT(r->exit_code, exit_code);
    CHECK_INT(r->signal, 0);
    CHECK(!r->timed_out);
    CHECK(!r->killed);
    CHECK(r->error == NULL);
}

static char *
s_path(const char *name)
{
    static char buf[4][512];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof buf[i], "%s/%s", t_tmpdir(), name);
    return buf[i];
}

// The pid written to path, waiting up to 5 s for it to appear.
static pid_t
s_read_pid(const char *path)
{
    for (int i = 0; i < 250; i++) {
        char *s = t_read_file(path, NULL);
        long pid = s ? strtol(s, NULL, 10) : 0;
        free(s);
        if (pid > 0) {
            return (pid_t) pid;
        }
        s_sleep_ms(20);
    }
    return 0;
}

static bool
s_alive(pid_t pid)
{
    if (kill(pid, 0) != 0 && errno == ESRCH) {
        return false;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int) pid);
    char *stat = t_read_file(path, NULL);
    char *end = stat ? strrchr(stat, ')') : NULL;
    bool alive = end && end[1] == ' ' && end[2] != 'Z' && end[2] != 'X';
    free(stat);
    return alive;
}

// Whether pid is gone within ms.
static bool
s_gone_within(pid_t pid, int ms)
{
    for (int waited = 0; waited <= ms; waited += 20) {
        if (!s_alive(pid)) {
            return true;
        }
        s_sleep_ms(20);
    }
    return false;
}

static void
test_echo(void)
{
    runner_t *rn = runner_new(500);
    char *argv[] = {"echo", "hello", NULL};
    runner_spec_t spec = s_spec(argv);
    runner_result_t r;
    REQUIRE(s_run(rn, &spec, &r));
    s_check_clean(&r, 0);
    CHECK_INT(r.id, 7);
    CHECK_STR((char *) r.out, "hello\n");
    CHECK_INT(r.out_len, 6);
    CHECK(!r.out_truncated);
    CHECK_INT(r.err_len, 0);
    CHECK(r.duration_ms >= 0 && r.duration_ms < S_SAFETY_MS);
    CHECK_INT(runner_count(rn), 0);
    CHECK(!runner_has(rn, 7));
    runner_result_release(&r);
    runner_destroy(&rn);
    CHECK(rn == NULL);
    runner_destroy(&rn);
}

// spec->stdin_fd becomes the child's stdin (a duplicate: the caller's
// descriptor stays open); without it stdin is /dev/null.
static void
test_stdin_fd(void)
{
    runner_t *rn = runner_new(500);
    char *argv[] = {"cat", NULL};
    int fd = memfd_create("t", MFD_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, "request\n", 8) == 8);
    REQUIRE(lseek(fd, 0, SEEK_SET) == 0);
    runner_spec_t spec = s_spec(argv);
    spec.has_stdin = true;
    spec.stdin_fd = fd;
    runner_result_t r;
    REQUIRE(s_run(rn, &spec, &r));
    s_check_clean(&r, 0);
    CHECK_STR((char *) r.out, "request\n");
    CHECK(fcntl(fd, F_GETFD) >= 0);
    runner_result_release(&r);
    close(fd);
    spec = s_spec(argv);
    REQUIRE(s_run(rn, &spec, &r));
    CHECK_INT(r.out_len, 0);
    runner_result_release(&r);
    runner_destroy(&rn);
}

static void
test_exit_code(void)
{
    runner_t *rn = runner_new(500);
    char *argv[] = {"sh", "-c", "exit 3", NULL};
    runner_spec_t spec = s_spec(argv);
    runner_result_t r;
    REQUIRE(s_run(rn, &spec, &r));
    s_check_clean(&r, 3);
    runner_result_release(&r);
    runner_destroy(&rn);
}

static void
test_stderr_separate(void)
{
    runner_t *rn = runner_new(500);
    char *argv[] = {"sh", "-c", "echo out; echo err >&2; echo more", NULL};
    runner_spec_t spec = s_spec(argv);
    runner_result_t r;
    REQUIRE(s_run(rn, &spec, &r));
    s_check_clean(&r, 0);
    CHECK_STR((char *) r.out, "out\nmore\n");
    CHECK_STR((char *) r.err, "err\n");
    CHECK(!r.err_truncated);
    runner_result_release(&r);
    runner_destroy(&rn);
}

static void
test_missing_program(void)
{
    runner_t *rn = runner_new(500);
    char *argv[] = {"waggle-no-such-program", "x", NULL};
    runner_spec_t spec = s_spec(argv);
    runner_result_t r;
    REQUIRE(s_run(rn, &spec, &r));
    CHECK(!r.spawned);
    CHECK_STR(r.error,
              "cannot run 'waggle-no-such-program': No such file or directory");
    CHECK_INT(r.exit_code, -1);
    CHECK_INT(r.signal, 0);
    CHECK_INT(r.out_len, 0);
    runner_result_release(&r);
    runner_destroy(&rn);
}

// Writes an executable shell script at dir/name that prints word.
static void
s_script(const char *dir, const char *name, const char *word)
{
    char path[700], text[64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(text, sizeof text, "#!/bin/sh\necho %s\n", word);
    t_write_file(path, text);
    chmod(path, 0755);
}

// Runs name and checks what it printed ("" for: it could not run).
static void
s_check_runs(runner_t *rn, const char *name, const char *want)
{
    char *argv[] = {(char *) name, NULL};
    runner_spec_t spec = s_spec(argv);
    runner_result_t r;
    REQUIRE(s_run(rn, &spec, &r));
    if (*want) {
        s_check_clean(&r, 0);
        CHECK_STR(r.out ? (char *) r.out : "", want);
    } else {
        CHECK(!r.spawned);
        CHECK_STR(r.error ? r.error : "",
                  "cannot run 'waggle-tool': No such file or directory");
    }
    runner_result_release(&r);
}

// argv[0] is looked up in the drone's PATH once and remembered; a file
// that moved to a later PATH entry is still found (and found afresh), and
// one that is gone fails as it always did.
static void
s_check_path_moves(runner_mode_t mode)
{
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/a", t_tmpdir());
    snprintf(b, sizeof b, "%s/b", t_tmpdir());
    REQUIRE(mkdir(a, 0755) == 0 && mkdir(b, 0755) == 0);
    char *saved = getenv("PATH") ? xstrdup(getenv("PATH")) : NULL;
    char *path = xasprintf("%s:%s:/usr/bin:/bin", a, b);
    setenv("PATH", path, 1);
    runner_t *rn = runner_new(500);
    REQUIRE(s_set_mode(rn, mode) == 0);
    s_script(a, "waggle-tool", "first");
    s_check_runs(rn, "waggle-tool", "first\n");
    s_check_runs(rn, "waggle-tool", "first\n");
    char gone[700];
    snprintf(gone, sizeof gone, "%s/waggle-tool", a);
    REQUIRE(unlink(gone) == 0);
    s_script(b, "waggle-tool", "second");
    s_check_runs(rn, "waggle-tool", "second\n");
    s_check_runs(rn, "waggle-tool", "second\n");
    snprintf(gone, sizeof gone, "%s/waggle-tool", b);
    REQUIRE(unlink(gone) == 0);
    s_check_runs(rn, "waggle-tool", "");
    runner_destroy(&rn);
    if (saved) {
        setenv("PATH", saved, 1);
    } else {
        unsetenv("PATH");
    }
    free(saved);
    free(path);
}

static void
test_path_moves_plain(void)
{
    s_check_path_moves(RUNNER_PLAIN);
}

static void
test_path_moves_subreaper(void)
{
    s_check_path_moves(RUNNER_SUBREAPER);
}

static void
test_cwd(void)
{
    runner_t *rn = runner_new(500);
    char *argv[] = {"pwd", NULL};
    runner_spec_t spec = s_spec(argv);
    char *real = realpath(t_tmpdir(), NULL);
    REQUIRE(real);
    spec.cwd = real;
    runner_result_t r;
    REQUIRE(s_run(rn, &spec, &r));
    s_check_clean(&r, 0);
    char want[600];
    snprintf(want, sizeof want, "%s\n", real);
    CHECK_STR((char *) r.out, want);
    runner_result_release(&r);
    free(real);

    spec.cwd = s_path("nope");
    REQUIRE(s_run(rn, &spec, &r));
    CHECK(!r.spawned);
    char msg[700];
    snprintf(msg, sizeof msg,
             "cannot enter '%s': No such file or directory", spec.cwd);
    CHECK_STR(r.error, msg);
    runner_result_release(&r);
    runner_destroy(&rn);
}

// The child sees exactly envp, not the drone's environment.
static void
test_env(void)
{
    setenv("WAGGLE_T_SECRET", "leaked", 1);
    runner_t *rn = runner_new(500);
    char *argv[] = {"env", NULL};
    char *env[] = {"FOO=bar baz", "PATH=/usr/bin:/bin", NULL};
    runner_spec_t spec = s_spec(argv);
    spec.envp = env;
    runner_result_t r;
    REQUIRE(s_run(rn, &spec, &r));
    s_check_clean(&r, 0);
    CHECK_STR((char *) r.out, "FOO=bar baz\nPATH=/usr/bin:/bin\n");
    runner_result_release(&r);
    runner_destroy(&rn);
    unsetenv("WAGGLE_T_SECRET");
}

// The last n bytes of `seq 1 last`.
static char *
s_seq_tail(int last, size_t n)
{
    size_t cap = n + 16, len = 0;
    char *rev = malloc(cap);
    for (int i = last; i > 0 && len < n; i--) {
        char line[16];
        int k = snprintf(line, sizeof line, "%d\n", i);
        for (int j = k - 1; j >= 0 && len < cap; j--) {
            rev[len++] = line[j];
        }
    }
    char *tail = malloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        tail[i] = rev[n - 1 - i];
    }
    tail[n] = '\0';
    free(rev);
    return tail;
}

// ~4.8 MB through a 1 KiB cap: the exact tail, and the child never blocks.
static void
test_large_output_keeps_tail(void)
{
    runner_t *rn = runner_new(500);
    char *argv[] = {"sh", "-c", "seq 1 700000; seq 1 50000 >&2", NULL};
    runner_spec_t spec = s_spec(argv);
    spec.out_cap = 1024;
    spec.err_cap = 0;
    spec.deadline_ms = clock_mono_ms() + 8000;
    runner_result_t r;
    REQUIRE(s_run(rn, &spec, &r));
    s_check_clean(&r, 0);
    CHECK_INT(r.out_len, 1024);
    CHECK(r.out_truncated);
    char *want = s_seq_tail(700000, 1024);
    CHECK(memcmp(r.out, want, 1024) == 0);
    CHECK_INT(r.err_len, 0);
    CHECK(r.err_truncated);
    free(want);
    runner_result_release(&r);
    runner_destroy(&rn);
}

// Many small writes wrap the ring at odd offsets; exactly cap is not cut.
static void
test_small_writes_wrap(void)
{
    runner_t *rn = runner_new(500);
    char *argv[] = {"sh", "-c", "i=1; while [ $i -le 3000 ]; do "
                                "echo $i; i=$((i+1)); done", NULL};
    runner_spec_t spec = s_spec(argv);
    spec.out_cap = 1000;
    runner_result_t r;
    REQUIRE(s_run(rn, &spec, &r));
    s_check_clean(&r, 0);
    char *want = s_seq_tail(3000, 1000);
    CHECK_INT(r.out_len, 1000);
    CHECK(r.out_truncated);
    CHECK_STR((char *) r.out, want);
    free(want);
    runner_result_release(&r);

    char *exact[] = {"printf", "0123456789", NULL};
    spec = s_spec(exact);
    spec.out_cap = 10;
    REQUIRE(s_run(rn, &spec, &r));
    CHECK_STR((char *) r.out, "0123456789");
    CHECK(!r.out_truncated);
    runner_result_release(&r);
    runner_destroy(&rn);
}

static void
test_deadline_kills(void)
{
    runner_t *rn = runner_new(2000);
    char *argv[] = {"sleep", "60", NULL};
    runner_spec_t spec = s_spec(argv);
    spec.deadline_ms = clock_mono_ms() + 200;
    runner_result_t r;
    REQUIRE(s_run(rn, &spec, &r));
    CHECK(r.spawned);
    CHECK(r.timed_out);
    CHECK(!r.killed);
    CHECK_INT(r.signal, SIGTERM);
    CHECK_INT(r.exit_code, -1);
    CHECK(r.duration_ms >= 200 && r.duration_ms < 3000);
    runner_result_release(&r);
    runner_destroy(&rn);
}

// A group that ignores SIGTERM gets SIGKILL once the grace is over.
static void
test_deadline_grace_then_sigkill(void)
{
    runner_t *rn = runner_new(300);
    char *argv[] = {"sh", "-c", "trap '' TERM; sleep 60; exit 0", NULL};
    runner_spec_t spec = s_spec(argv);
    spec.deadline_ms = clock_mono_ms() + 200;
    runner_result_t r;
    REQUIRE(s_run(rn, &spec, &r));
    CHECK(r.timed_out);
    CHECK_INT(r.signal, SIGKILL);
    CHECK(r.duration_ms >= 500 && r.duration_ms < 4000);
    runner_result_release(&r);
    runner_destroy(&rn);
}

static void
test_deadline_kills_group(void)
{
    runner_t *rn = runner_new(500);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "sleep 60 & echo $! > %s; sleep 60",
             s_path("bg.pid"));
    char *argv[] = {"sh", "-c", cmd, NULL};
    runner_spec_t spec = s_spec(argv);
    spec.deadline_ms = clock_mono_ms() + 300;
    runner_result_t r;
    REQUIRE(s_run(rn, &spec, &r));
    CHECK(r.timed_out);
    pid_t bg = s_read_pid(s_path("bg.pid"));
    REQUIRE(bg > 0);
    CHECK(s_gone_within(bg, 2000));
    runner_result_release(&r);
    runner_destroy(&rn);
}

// A background grandchild holding stdout must not keep the task alive.
static void
test_grandchild_holding_stdout(void)
{
    runner_t *rn = runner_new(500);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "sleep 60 & echo $! > %s; echo done",
             s_path("bg.pid"));
    char *argv[] = {"sh", "-c", cmd, NULL};
    runner_spec_t spec = s_spec(argv);
    runner_result_t r;
    REQUIRE(s_run(rn, &spec, &r));
    s_check_clean(&r, 0);
    CHECK_STR((char *) r.out, "done\n");
    CHECK(r.duration_ms < 3000);
    pid_t bg = s_read_pid(s_path("bg.pid"));
    REQUIRE(bg > 0);
    CHECK(s_gone_within(bg, 2000));
    runner_result_release(&r);
    runner_destroy(&rn);
}

static void
test_kill(void)
{
    runner_t *rn = runner_new(500);
    char *argv[] = {"sleep", "60", NULL};
    runner_spec_t spec = s_spec(argv);
    char *err = NULL;
    int64_t now = clock_mono_ms();
    REQUIRE(runner_start(rn, 9, &spec, now, &err) == 0);
    CHECK(runner_has(rn, 9));
    CHECK_INT(runner_count(rn), 1);
    CHECK_INT(runner_next_ms(rn), -1);
    runner_kill(rn, 12345, now);
    CHECK_INT(runner_next_ms(rn), -1);
    runner_kill(rn, 9, now);
    CHECK_INT(runner_next_ms(rn), now + 500);
    runner_result_t r;
    REQUIRE(s_collect(rn, &r, 1) == 1);
    CHECK_INT(r.id, 9);
    CHECK(r.killed);
    CHECK(!r.timed_out);
    CHECK_INT(r.signal, SIGTERM);
    CHECK(!runner_has(rn, 9));
    runner_result_release(&r);
    runner_destroy(&rn);
}

static void
test_duplicate_id(void)
{
    runner_t *rn = runner_new(0);
    char *argv[] = {"sleep", "60", NULL};
    runner_spec_t spec = s_spec(argv);
    char *err = NULL;
    REQUIRE(runner_start(rn, 1, &spec, clock_mono_ms(), &err) == 0);
    CHECK_INT(runner_start(rn, 1, &spec, clock_mono_ms(), &err), -1);
    CHECK_STR(err, "task 1 is already running");
    free(err);
    runner_kill_all(rn, clock_mono_ms());
    runner_result_t r;
    REQUIRE(s_collect(rn, &r, 1) == 1);
    CHECK(r.killed);
    // No grace: the SIGKILL follows the SIGTERM at once; either may land.
    CHECK(r.signal == SIGTERM || r.signal == SIGKILL);
    runner_result_release(&r);
    runner_destroy(&rn);
}

static void
test_pollfds_and_next(void)
{
    runner_t *rn = runner_new(500);
    struct pollfd fds[4];
    CHECK_INT(runner_pollfds(rn, fds, 4), 1);   // the SIGCHLD pipe
    CHECK_INT(runner_next_ms(rn), -1);
    char *argv[] = {"sleep", "60", NULL};
    runner_spec_t spec = s_spec(argv);
    int64_t now = clock_mono_ms();
    spec.deadline_ms = now + 5000;
    char *err = NULL;
    REQUIRE(runner_start(rn, 1, &spec, now, &err) == 0);
    // Its two output pipes; never its start pipe, read once it exited.
    size_t n = runner_pollfds(rn, NULL, 0);
    CHECK_INT(n, 3);
    CHECK_INT(runner_pollfds(rn, fds, 2), n);
    CHECK_INT(runner_next_ms(rn), now + 5000);
    runner_result_t *done = NULL;
    CHECK_INT(runner_step(rn, now, &done), 0);
    CHECK(done == NULL);
    runner_kill(rn, 1, now);
    CHECK_INT(runner_next_ms(rn), now + 500);
    runner_result_t r;
    REQUIRE(s_collect(rn, &r, 1) == 1);
    runner_result_release(&r);
    runner_destroy(&rn);
}

// Polls rn's descriptors once; returns how many poll found ready.
static int
s_poll_once(runner_t *rn, struct pollfd *fds, size_t *n, int timeout_ms)
{
    *n = runner_pollfds(rn, fds, S_MAX_FDS);
    return *n <= S_MAX_FDS ? poll(fds, *n, timeout_ms) : -1;
}

// runner_ready: a step reads only what poll found ready, and everything
// when the list it was given is not runner_pollfds' own.
static void
test_ready_hints(void)
{
    runner_t *rn = runner_new(100);
    char *argv[] = {"sh", "-c", "echo hi; sleep 0.5", NULL};
    runner_spec_t spec = s_spec(argv);
    char *err = NULL;
    REQUIRE(runner_start(rn, 1, &spec, clock_mono_ms(), &err) == 0);
    struct pollfd fds[S_MAX_FDS];
    size_t n;
    REQUIRE(s_poll_once(rn, fds, &n, 5000) > 0);  // "hi" is there
    uint8_t buf[16];
    size_t len;
    uint64_t total;
    // Said "nothing ready": the step leaves the pipe alone.
    for (size_t i = 0; i < n; i++) {
        fds[i].revents = 0;
    }
    runner_ready(rn, fds, n);
    runner_result_t *done = NULL;
    CHECK_INT(runner_step(rn, clock_mono_ms(), &done), 0);
    REQUIRE(runner_peek(rn, 1, buf, sizeof buf, &len, &total));
    CHECK_INT(total, 0);
    // A list that is not ours: read everything.
    struct pollfd foreign = {.fd = 12345, .events = POLLIN};
    runner_ready(rn, &foreign, 1);
    CHECK_INT(runner_step(rn, clock_mono_ms(), &done), 0);
    REQUIRE(runner_peek(rn, 1, buf, sizeof buf, &len, &total));
    CHECK_INT(total, 3);
    runner_result_t r;
    REQUIRE(s_collect(rn, &r, 1) == 1);
    s_check_clean(&r, 0);
    CHECK_STR((char *) r.out, "hi\n");
    runner_result_release(&r);
    runner_destroy(&rn);
}

static void
test_concurrent(void)
{
    enum { N = 6 };
    runner_t *rn = runner_new(500);
    char cmds[N][64];
    for (int i = 0; i < N; i++) {
        snprintf(cmds[i], sizeof cmds[i], "sleep 0.%d; echo %d; exit %d",
                 N - i, i, 10 + i);
        char *argv[] = {"sh", "-c", cmds[i], NULL};
        runner_spec_t spec = s_spec(argv);
        char *err = NULL;
        REQUIRE(runner_start(rn, 100 + (uint64_t) i, &spec, clock_mono_ms(),
                             &err) == 0);
    }
    CHECK_INT(runner_count(rn), N);
    runner_result_t r[N];
    REQUIRE(s_collect(rn, r, N) == N);
    bool seen[N] = {false};
    for (int i = 0; i < N; i++) {
        int k = (int) (r[i].id - 100);
        REQUIRE(k >= 0 && k < N);
        seen[k] = true;
        char want[8];
        snprintf(want, sizeof want, "%d\n", k);
        CHECK_STR((char *) r[i].out, want);
        CHECK_INT(r[i].exit_code, 10 + k);
        runner_result_release(&r[i]);
    }
    for (int i = 0; i < N; i++) {
        CHECK(seen[i]);
    }
    CHECK_INT(runner_count(rn), 0);
    runner_destroy(&rn);
}

// Only 0, 1, 2 and ls's own directory descriptor, even with a descriptor
// open without O_CLOEXEC and another child's pipes alive.
static void
test_no_fd_leak(void)
{
    int leak = open("/dev/null", O_RDONLY);
    REQUIRE(leak >= 0);
    runner_t *rn = runner_new(0);
    char *sleeper[] = {"sleep", "60", NULL};
    runner_spec_t spec = s_spec(sleeper);
    char *err = NULL;
    REQUIRE(runner_start(rn, 1, &spec, clock_mono_ms(), &err) == 0);
    char *argv[] = {"ls", "/proc/self/fd", NULL};
    spec = s_spec(argv);
    runner_result_t r;
    REQUIRE(s_run(rn, &spec, &r));
    s_check_clean(&r, 0);
    CHECK_STR((char *) r.out, "0\n1\n2\n3\n");
    runner_result_release(&r);

    char *in[] = {"readlink", "/proc/self/fd/0", NULL};
    spec = s_spec(in);
    REQUIRE(s_run(rn, &spec, &r));
    CHECK_STR((char *) r.out, "/dev/null\n");
    runner_result_release(&r);
    runner_destroy(&rn);
    close(leak);
}

// An ignored or blocked signal in the drone must not reach the task.
static void
test_signals_reset(void)
{
    struct sigaction ign = {.sa_handler = SIG_IGN}, old;
    sigaction(SIGPIPE, &ign, &old);
    sigset_t usr1, mask;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, &mask);
    runner_t *rn = runner_new(500);
    char *argv[] = {"grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status", NULL};
    runner_spec_t spec = s_spec(argv);
    runner_result_t r;
    bool ran = s_run(rn, &spec, &r);
    sigprocmask(SIG_SETMASK, &mask, NULL);
    sigaction(SIGPIPE, &old, NULL);
    REQUIRE(ran);
    CHECK_STR((char *) r.out,
              "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
    runner_result_release(&r);
    runner_destroy(&rn);
}

static void
test_destroy_kills_everything(void)
{
    runner_t *rn = runner_new(5000);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "echo $$ > %s; sleep 60 & echo $! > %s; wait",
             s_path("sh.pid"), s_path("bg.pid"));
    char *argv[] = {"sh", "-c", cmd, NULL};
    runner_spec_t spec = s_spec(argv);
    char *err = NULL;
    REQUIRE(runner_start(rn, 1, &spec, clock_mono_ms(), &err) == 0);
    char *sleeper[] = {"sleep", "60", NULL};
    spec = s_spec(sleeper);
    REQUIRE(runner_start(rn, 2, &spec, clock_mono_ms(), &err) == 0);
    pid_t sh = s_read_pid(s_path("sh.pid"));
    pid_t bg = s_read_pid(s_path("bg.pid"));
    REQUIRE(sh > 0 && bg > 0);
    runner_destroy(&rn);
    CHECK(rn == NULL);
    CHECK(!s_alive(sh));
    CHECK(s_gone_within(bg, 2000));
}

// The helper owns a runner and a child, then dies without cleaning up.
static _Noreturn void
s_pdeath_helper(const char *pidfile)
{
    runner_t *rn = runner_new(500);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "echo $$ > %s; exec sleep 60", pidfile);
    char *argv[] = {"sh", "-c", cmd, NULL};
    runner_spec_t spec = s_spec(argv);
    char *err = NULL;
    if (runner_start(rn, 1, &spec, clock_mono_ms(), &err) != 0) {
        _exit(1);
    }
    for (;;) {
        pause();
    }
}

static void
test_pdeathsig(void)
{
    const char *pidfile = s_path("child.pid");
    fflush(NULL);
    pid_t helper = fork();
    REQUIRE(helper >= 0);
    if (helper == 0) {
        s_pdeath_helper(pidfile);
    }
    pid_t child = s_read_pid(pidfile);
    kill(helper, SIGKILL);
    waitpid(helper, NULL, 0);
    REQUIRE(child > 0);
    CHECK(s_gone_within(child, 2000));
}

// The helper starts "sleep SECONDS" as nobody in mode, says so on ready
// and waits to be killed.
static _Noreturn void
s_pdeath_user_helper(runner_mode_t mode, const char *seconds, int ready)
{
    runner_t *rn = runner_new(500);
    gid_t groups[] = {65534};
    runner_user_t nobody = {65534, 65534, groups, 1};
    char *argv[] = {"sleep", (char *) seconds, NULL};
    runner_spec_t spec = s_spec(argv);
    spec.user = &nobody;
    char *err = NULL;
    if (s_set_mode(rn, mode) != 0
        || runner_start(rn, 1, &spec, clock_mono_ms(), &err) != 0
        || write(ready, "x", 1) != 1) {
        _exit(1);
    }
    for (;;) {
        pause();
    }
}

// SIGKILLs the processes whose command line is "sleep SECONDS" (what a
// failed check left running).
static void
s_kill_sleepers(int seconds)
{
    char want[32];
    int wlen = snprintf(want, sizeof want, "sleep%c%d", '\0', seconds) + 1;
    DIR *d = opendir("/proc");
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        long pid = strtol(e->d_name, NULL, 10);
        char path[300];
        snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
        size_t len = 0;
        char *cmd = pid > 0 ? t_read_file(path, &len) : NULL;
        if (cmd && len == (size_t) wlen && memcmp(cmd, want, len) == 0) {
            kill((pid_t) pid, SIGKILL);
        }
        free(cmd);
    }
    if (d) {
        closedir(d);
    }
}

// A task that runs as another user dies with the drone too: setuid()
// clears PR_SET_PDEATHSIG, so the child sets it again after the switch.
static void
s_check_pdeathsig_user(runner_mode_t mode, int seconds)
{
    char arg[16];
    snprintf(arg, sizeof arg, "%d", seconds);
    int p[2];
    REQUIRE(pipe(p) == 0);
    fflush(NULL);
    pid_t helper = fork();
    REQUIRE(helper >= 0);
    if (helper == 0) {
        close(p[0]);
        s_pdeath_user_helper(mode, arg, p[1]);
    }
    close(p[1]);
    char c;
    bool started = read(p[0], &c, 1) == 1;
    close(p[0]);
    for (int i = 0; started && i < 250 && t_sleepers(seconds) == 0; i++) {
        s_sleep_ms(20);
    }
    CHECK(started && t_sleepers(seconds) == 1);
    kill(helper, SIGKILL);
    waitpid(helper, NULL, 0);
    for (int i = 0; i < 150 && t_sleepers(seconds) > 0; i++) {
        s_sleep_ms(20);
    }
    CHECK_INT(t_sleepers(seconds), 0);
    s_kill_sleepers(seconds);
}

static void
test_pdeathsig_user(void)
{
    if (geteuid() != 0) {
        t_skip("needs root to become nobody");
        return;
    }
    s_check_pdeathsig_user(RUNNER_PLAIN, 73010);
    s_check_pdeathsig_user(RUNNER_SUBREAPER, 73011);
    if (runner_pidns_works()) {
        s_check_pdeathsig_user(RUNNER_PIDNS, 73012);
    }
}

// --- confinement: an init between the runner and the task -----------------

// A runner in mode, or NULL (and a SKIP line) when this host cannot.
static runner_t *
s_confined(runner_mode_t mode, int64_t grace_ms)
{
    runner_t *rn = runner_new(grace_ms);
    fflush(NULL);  // the probe's child must not flush our buffers again
    if (s_set_mode(rn, mode) != 0) {
        t_skip("mode %d is not available here (%s)", (int) mode,
               strerror(errno));
        runner_destroy(&rn);
    }
    return rn;
}

// Exit codes, signals and exec failures come through the init unchanged.
static void
s_check_statuses(runner_mode_t mode)
{
    runner_t *rn = s_confined(mode, 300);
    if (!rn) {
        return;
    }
    char *code[] = {"sh", "-c", "echo hi; exit 3", NULL};
    runner_spec_t spec = s_spec(code);
    runner_result_t r;
    REQUIRE(s_run(rn, &spec, &r));
    s_check_clean(&r, 3);
    CHECK_STR((char *) r.out, "hi\n");
    runner_result_release(&r);
    char *sig[] = {"sh", "-c", "kill -USR1 $$", NULL};
    spec = s_spec(sig);
    REQUIRE(s_run(rn, &spec, &r));
    CHECK_INT(r.signal, SIGUSR1);
    CHECK_INT(r.exit_code, -1);
    runner_result_release(&r);
    char *missing[] = {"/nonexistent/prog", NULL};
    spec = s_spec(missing);
    REQUIRE(s_run(rn, &spec, &r));
    CHECK(!r.spawned);
    CHECK_HAS(r.error, "cannot run '/nonexistent/prog'");
    runner_result_release(&r);
    // Only 0, 1 and 2 reach the task (3 is ls's own directory), not the
    // init's report pipe; stdin is /dev/null.
    int leak = open("/dev/null", O_RDONLY);
    char *fds[] = {"ls", "/proc/self/fd", NULL};
    spec = s_spec(fds);
    REQUIRE(s_run(rn, &spec, &r));
    CHECK_STR((char *) r.out, "0\n1\n2\n3\n");
    runner_result_release(&r);
    close(leak);
    char *in[] = {"readlink", "/proc/self/fd/0", NULL};
    spec = s_spec(in);
    REQUIRE(s_run(rn, &spec, &r));
    CHECK_STR((char *) r.out, "/dev/null\n");
    runner_result_release(&r);
    // A deadline's SIGTERM reaches the task, not only its init.
    char *slow[] = {"sleep", "60", NULL};
    spec = s_spec(slow);
    spec.deadline_ms = clock_mono_ms() + 200;
    REQUIRE(s_run(rn, &spec, &r));
    CHECK(r.timed_out);
    CHECK_INT(r.signal, SIGTERM);
    runner_result_release(&r);
    runner_destroy(&rn);
}

// An init holds its task's stdout and stderr until it exits, so a task
// that closes its own wakes nobody: the end of a task is one wake-up (the
// exit, the pipes' EOF with it), not one per pipe and one for the exit.
// Its start pipe is not polled either.
static void
s_check_one_wakeup(runner_mode_t mode)
{
    runner_t *rn = s_confined(mode, 300);
    if (!rn) {
        return;
    }
    char *argv[] = {"sh", "-c", "exec >/dev/null 2>&1; sleep 0.4; exit 3",
                    NULL};
    runner_spec_t spec = s_spec(argv);
    char *err = NULL;
    REQUIRE(runner_start(rn, 1, &spec, clock_mono_ms(), &err) == 0);
    // A first step, as the loop makes, empties the SIGCHLD pipe (the
    // probe of runner_set_mode had a child).
    runner_result_t *done = NULL;
    CHECK_INT(runner_step(rn, clock_mono_ms(), &done), 0);
    struct pollfd fds[S_MAX_FDS];
    size_t n;
    CHECK_INT(s_poll_once(rn, fds, &n, 200), 0);
    CHECK_INT(n, 3);  // the SIGCHLD pipe, stdout, stderr
    runner_result_t r;
    REQUIRE(s_collect(rn, &r, 1) == 1);
    s_check_clean(&r, 3);
    runner_result_release(&r);
    runner_destroy(&rn);
}

static void
test_one_wakeup_subreaper(void)
{
    s_check_one_wakeup(RUNNER_SUBREAPER);
}

static void
test_one_wakeup_pidns(void)
{
    s_check_one_wakeup(RUNNER_PIDNS);
}

static void
test_init_statuses_subreaper(void)
{
    s_check_statuses(RUNNER_SUBREAPER);
}

static void
test_init_statuses_pidns(void)
{
    s_check_statuses(RUNNER_PIDNS);
}

// Live "sleep 73000" and "sleep 73001" processes (a task inside a PID
// namespace cannot tell us its pids as we see them).
static int
s_sleepers(void)
{
    return t_sleepers(73000) + t_sleepers(73001);
}

// A task that starts a setsid() child and a double-fork daemon, and exits:
// neither outlives it.  (RUNNER_PLAIN fails this: setsid escapes the
// process group.)
static void
s_check_nothing_survives(runner_mode_t mode)
{
    runner_t *rn = s_confined(mode, 300);
    if (!rn) {
        return;
    }
    char *argv[] = {"sh", "-c",
                    "setsid sleep 73000 & (sh -c 'sleep 73001 & exit 0' &); "
                    "sleep 0.3; echo started", NULL};
    runner_spec_t spec = s_spec(argv);
    runner_result_t r;
    REQUIRE(s_run(rn, &spec, &r));
    s_check_clean(&r, 0);
    CHECK_STR((char *) r.out, "started\n");
    runner_result_release(&r);
    int left = s_sleepers();
    for (int i = 0; i < 100 && left > 0; i++) {
        s_sleep_ms(20);
        left = s_sleepers();
    }
    CHECK_INT(left, 0);
    runner_destroy(&rn);
}

static void
test_nothing_survives_subreaper(void)
{
    s_check_nothing_survives(RUNNER_SUBREAPER);
}

static void
test_nothing_survives_pidns(void)
{
    s_check_nothing_survives(RUNNER_PIDNS);
}

// Killed with its group (the init too, by SIGKILL after the grace): the
// setsid() orphan reaches this process, the subreaper, which kills it.
static void
test_orphans_of_a_killed_init(void)
{
    runner_t *rn = s_confined(RUNNER_SUBREAPER, 200);
    if (!rn) {
        return;
    }
    char cmd[700];
    snprintf(cmd, sizeof cmd,
             "trap '' TERM; setsid sleep 73002 & echo $! > %s; sleep 60",
             s_path("orphan.pid"));
    char *argv[] = {"sh", "-c", cmd, NULL};
    runner_spec_t spec = s_spec(argv);
    char *err = NULL;
    REQUIRE(runner_start(rn, 9, &spec, clock_mono_ms(), &err) == 0);
    pid_t orphan = s_read_pid(s_path("orphan.pid"));
    REQUIRE(orphan > 0);
    runner_kill(rn, 9, clock_mono_ms());
    runner_result_t r;
    REQUIRE(s_collect(rn, &r, 1) == 1);
    CHECK(r.killed);
    runner_result_release(&r);
    // The orphan's SIGCHLD wakes the runner, which reaps it.
    bool gone = false;
    for (int i = 0; i < 100 && !gone; i++) {
        runner_result_t *done = NULL;
        free(done);
        runner_step(rn, clock_mono_ms(), &done);
        free(done);
        gone = !s_alive(orphan);
        s_sleep_ms(20);
    }
    CHECK(gone);
    runner_destroy(&rn);
}

// A drone that stops kills what its tasks left: the inits die with their
// groups, and the subreaper kills the orphans that reach it.
static void
test_destroy_kills_orphans(void)
{
    runner_t *rn = s_confined(RUNNER_SUBREAPER, 200);
    if (!rn) {
        return;
    }
    char cmd[700];
    snprintf(cmd, sizeof cmd, "setsid sleep 73003 & echo $! > %s; sleep 60",
             s_path("orphan2.pid"));
    char *argv[] = {"sh", "-c", cmd, NULL};
    runner_spec_t spec = s_spec(argv);
    char *err = NULL;
    REQUIRE(runner_start(rn, 11, &spec, clock_mono_ms(), &err) == 0);
    pid_t orphan = s_read_pid(s_path("orphan2.pid"));
    REQUIRE(orphan > 0);
    runner_destroy(&rn);
    CHECK(!s_alive(orphan));
}

// With the init program, a task's init is that program, not a copy of
// this process: nothing of the drone's memory, and the task's variables
// inert in its environment (a workplan's LD_PRELOAD never applies to it).
static void
test_init_is_its_own_program(void)
{
    const char *init = getenv("WAGGLE_TEST_TASK_INIT");
    if (!init || !*init || geteuid() != 0) {
        t_skip("no init program given, or not root");
        return;
    }
    runner_t *rn = s_confined(RUNNER_PIDNS, 300);
    if (!rn) {
        return;
    }
    char *argv[] = {"sh", "-c", "readlink /proc/1/exe; "
                    "tr '\\000' '\\n' < /proc/1/environ", NULL};
    char *env[] = {"PATH=/usr/bin:/bin", "LD_PRELOAD=/nonexistent.so", NULL};
    runner_spec_t spec = s_spec(argv);
    spec.envp = env;
    runner_result_t r;
    REQUIRE(s_run(rn, &spec, &r));
    CHECK(r.spawned);
    char want[1200];
    snprintf(want, sizeof want,
             "%s\n=PATH=/usr/bin:/bin\n=LD_PRELOAD=/nonexistent.so\n", init);
    CHECK_STR(r.out ? (char *) r.out : "", want);
    runner_result_release(&r);
    runner_destroy(&rn);
}

// In a PID namespace the task is PID 2 (its init is 1) and sees no
// process of the host.
static void
test_pidns_hides_the_host(void)
{
    runner_t *rn = s_confined(RUNNER_PIDNS, 300);
    if (!rn) {
        return;
    }
    char *argv[] = {"sh", "-c", "echo $$; ls /proc | grep -c '^[0-9]'", NULL};
    runner_spec_t spec = s_spec(argv);
    runner_result_t r;
    REQUIRE(s_run(rn, &spec, &r));
    s_check_clean(&r, 0);
    // sh is 2; sh, ls and grep, plus the init: at most 4 processes.
    CHECK((char *) r.out && strncmp((char *) r.out, "2\n", 2) == 0);
    CHECK((char *) r.out && atoi((char *) r.out + 2) <= 4);
    runner_result_release(&r);
    runner_destroy(&rn);
}

// What the unprivileged child of s_userns_pidns does: 0 when a task it
// runs in RUNNER_PIDNS is PID 2 and keeps the child's uid.
static int
s_as_nobody(void)
{
    if (setresgid(65534, 65534, 65534) != 0
        || setresuid(65534, 65534, 65534) != 0) {
        return 2;
    }
    runner_t *rn = runner_new(300);
    if (s_set_mode(rn, RUNNER_PIDNS) != 0) {
        runner_destroy(&rn);
        return 77;  // no unprivileged user namespaces here
    }
    char *argv[] = {"sh", "-c", "echo $$; id -u", NULL};
    runner_spec_t spec = s_spec(argv);
    runner_result_t r;
    int rc = s_run(rn, &spec, &r) && r.out
                     && strcmp((char *) r.out, "2\n65534\n") == 0
                 ? 0
                 : 1;
    if (rc != 0) {
        fprintf(stderr, "as nobody: '%s' %s\n", r.out ? (char *) r.out : "",
                r.error ? r.error : "");
    }
    runner_result_release(&r);
    runner_destroy(&rn);
    return rc;
}

// A drone that is not root gets its PID namespaces inside a user namespace
// (where the kernel allows unprivileged ones); the task keeps its uid.
static void
test_userns_pidns(void)
{
    if (geteuid() != 0) {
        t_skip("needs root to become nobody");
        return;
    }
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        _exit(s_as_nobody());
    }
    int status = 0;
    waitpid(pid, &status, 0);
    REQUIRE(WIFEXITED(status));
    if (WEXITSTATUS(status) == 77) {
        t_skip("no unprivileged user namespaces");
        return;
    }
    CHECK_INT(WEXITSTATUS(status), 0);
}

// As root: the task runs as another user, with lowered limits, and cannot
// enter a directory that user may not.
static void
test_user_and_limits(void)
{
    if (geteuid() != 0) {
        t_skip("not root");
        return;
    }
    runner_t *rn = s_confined(RUNNER_SUBREAPER, 300);
    if (!rn) {
        return;
    }
    gid_t groups[] = {65534};
    runner_user_t nobody = {65534, 65534, groups, 1};
    char *id[] = {"sh", "-c", "id -u; id -G", NULL};
    runner_spec_t spec = s_spec(id);
    spec.user = &nobody;
    runner_result_t r;
    REQUIRE(s_run(rn, &spec, &r));
    s_check_clean(&r, 0);
    CHECK_STR((char *) r.out, "65534\n65534\n");
    runner_result_release(&r);
    // valgrind refuses a child's setrlimit(RLIMIT_NOFILE).
    const char *preload = getenv("LD_PRELOAD");
    if (!preload || !strstr(preload, "vgpreload")) {
        char *lim[] = {"sh", "-c", "ulimit -n; awk '/Max processes/ "
                       "{print $3}' /proc/self/limits; ulimit -t; ulimit -v",
                       NULL};
        spec = s_spec(lim);
        spec.user = &nobody;
        spec.limits = (runner_limits_t) {.as_bytes = 512ull << 20,
                                         .nofile = 64, .nproc = 500,
                                         .cpu_s = 30};
        REQUIRE(s_run(rn, &spec, &r));
        s_check_clean(&r, 0);
        CHECK_STR((char *) r.out, "64\n500\n30\n524288\n");
        runner_result_release(&r);
        // A busy loop past its CPU seconds gets SIGXCPU.
        char *spin[] = {"sh", "-c", "while :; do :; done", NULL};
        spec = s_spec(spin);
        spec.limits = (runner_limits_t) {.cpu_s = 1};
        spec.deadline_ms = clock_mono_ms() + 8000;
        REQUIRE(s_run(rn, &spec, &r));
        CHECK(!r.timed_out);
        CHECK_INT(r.signal, SIGXCPU);
        runner_result_release(&r);
    }
    // t_tmpdir() is 0700 root: nobody cannot enter it.
    char *pwd[] = {"pwd", NULL};
    spec = s_spec(pwd);
    spec.user = &nobody;
    spec.cwd = t_tmpdir();
    REQUIRE(s_run(rn, &spec, &r));
    CHECK(!r.spawned);
    CHECK_HAS(r.error, "cannot enter");
    runner_result_release(&r);
    runner_destroy(&rn);
}

static const t_case_t t_cases[] = {
    T(test_echo),
    T(test_stdin_fd),
    T(test_exit_code),
    T(test_stderr_separate),
    T(test_missing_program),
    T(test_path_moves_plain),
    T(test_path_moves_subreaper),
    T(test_cwd),
    T(test_env),
    T(test_large_output_keeps_tail),
    T(test_small_writes_wrap),
    T(test_deadline_kills),
    T(test_deadline_grace_then_sigkill),
    T(test_deadline_kills_group),
    T(test_grandchild_holding_stdout),
    T(test_kill),
    T(test_duplicate_id),
    T(test_pollfds_and_next),
    T(test_ready_hints),
    T(test_concurrent),
    T(test_no_fd_leak),
    T(test_signals_reset),
    T(test_destroy_kills_everything),
    T(test_pdeathsig),
    T(test_init_statuses_subreaper),
    T(test_init_statuses_pidns),
    T(test_one_wakeup_subreaper),
    T(test_one_wakeup_pidns),
    T(test_nothing_survives_subreaper),
    T(test_nothing_survives_pidns),
    T(test_orphans_of_a_killed_init),
    T(test_destroy_kills_orphans),
    T(test_pidns_hides_the_host),
    T(test_init_is_its_own_program),
    T(test_user_and_limits),
    T(test_pdeathsig_user),
    T(test_userns_pidns),
    {0},
};

T_MAIN(t_cases)
