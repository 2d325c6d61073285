// runner: fork/exec of task processes, their output and their deadlines.
//
// Owns each child it starts: its pipes, its process group and, at the end,
// its zombie.  The leader's exit is noticed with waitid(WNOWAIT) and the
// zombie is kept until the task finishes, so the pgid stays reserved and
// kill(-pgid) can never reach a stranger's group.  Only then is it reaped,
// with waitpid(pid): never waitpid(-1), which would steal other children.
//
// A task finishes when its leader has exited and both pipes are at EOF, or
// S_DRAIN_MS after the exit if something (a background grandchild) still
// holds them.  Whatever is left in the group is then SIGKILLed: a finished
// task leaves nothing running.
//
// In the confined modes the leader is the task's init (runner_child.c),
// not the task: the pipe that reports an exec failure stays open as the
// init's report pipe, and the task's own wait status arrives on it just
// before the init exits.  An init SIGKILLed with its group reports nothing;
// its own status (SIGKILL) then stands for the task's.
//
// argv[0] is looked up in the drone's own PATH, as glibc's execvpe would
// (it reads the caller's environ, not envp), once per distinct name
// (runner_path.c); the task sees only envp.
//
// The loop wakes as seldom as it can per task: the start pipe is not
// polled (what it says matters only once the child has exited: it is read
// then, or at once for a plain child, which has exec'd or failed by the
// time the vfork-style start returns), an init holds the task's stdout and
// stderr until it exits (so their EOF comes with its exit, not as two
// wake-ups of their own), and with runner_ready a step reads only the
// descriptors poll found ready and calls waitid only after a SIGCHLD.
//
// Starting a child never waits for its exec.  Every child shares the
// drone's memory until it execs (clone with CLONE_VM | CLONE_VFORK, as
// posix_spawn does, the namespaces made by the same clone), so no page
// tables are copied and the drone resumes as soon as the exec has replaced
// it: a plain child execs the task, an init's child execs waggle-task-init
// (found beside the drone's own program, runner_set_init), which starts
// its task the same vfork way.  Without that program, or when the init
// needs a user namespace (a drone that is not root: it must write its id
// maps before any exec, which would drop its capabilities there), an init
// is a real fork of the drone, about twice as slow per task.  The start
// pipe is read once the child has exited (a plain child's at once): EOF
// (plain: the exec closed it) or RUNNING (init) means it ran; a report
// means it never ran.
//
// Never logs, never reads a clock.
#include "drone/runner_int.h"

#include "common/xalloc.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

enum {
    S_DRAIN_MS = 1000,          // pipes kept open after the leader exits
    S_READ_BYTES = 65536,       // one read() of a pipe
    S_READS_PER_STEP = 16,      // per pipe and step, so one child can't hog
    // The stack of a child that shares the drone's memory until it execs:
    // execvpe puts PATH and, for a script without #!, argv (up to 65,536
    // strings) on it.  Reserved, not committed (MAP_NORESERVE).
    S_STACK_BYTES = 2 * 1024 * 1024,
};

// The last cap bytes of one output stream.
typedef struct {
    int fd;                     // read end; -1 once at EOF or closed
    uint8_t *buf;               // grows to cap, then is a ring
    size_t size;                // bytes allocated in buf (<= cap)
    size_t cap;                 // bytes kept
    size_t start;               // index of the oldest kept byte
    size_t len;                 // bytes kept (<= size)
    uint64_t total;             // bytes seen; more than cap: truncated
} s_tail_t;

typedef struct {
    uint64_t id;                // the caller's id
    pid_t pid;                  // leader and pgid; a zombie once exited
    s_tail_t out;               // stdout
    s_tail_t err;               // stderr
    char *error;                // why it never ran, or NULL
    int start_fd;               // start pipe (non-blocking, not polled)
                                // until read after the exit, then -1
    int report_fd;              // the init's report pipe, or -1
    char *argv0;                // for the sentence when it never ran
    char *cwd;                  // the same (NULL: none)
    int64_t start_ms;           // now_ms of runner_start
    int64_t deadline_ms;        // 0: none
    int64_t kill_ms;            // SIGKILL due, if kill_pending
    int64_t exit_ms;            // leader's exit seen, if exited
    bool kill_pending;          // SIGTERM sent, SIGKILL not yet
    bool term_sent;             // by deadline or runner_kill
    bool exited;                // leader exited (not reaped yet)
    bool lost;                  // someone else reaped it: never signal
    bool timed_out;
    bool killed;
    bool out_ready;             // poll found out.fd ready (runner_ready)
    bool err_ready;             // the same for err.fd
} s_child_t;

struct runner {
    int64_t grace_ms;           // SIGTERM to SIGKILL
    runner_mode_t mode;
    bool userns;                // RUNNER_PIDNS needs a user namespace too
    long open_max;              // close() loop bound without close_range
    runner_paths_t *paths;      // argv[0] -> file, found in PATH once
    sigset_t reset;             // signals not SIG_DFL at the first start
    bool reset_saved;           // reset is filled
    char *stack;                // S_STACK_BYTES for vfork-style children
    char *init_path;            // waggle-task-init, or NULL: inits fork
    s_child_t **children;       // not yet finished
    size_t count;
    size_t alloc;
    bool hinted;                // runner_ready said what is ready: the next
                                // step reads only that
    bool wake_ready;            // and whether the SIGCHLD pipe was
    sig_atomic_t chld_seen;     // s_chld_gen at the last exit check
};

// Descriptors of one start: [0] read end, [1] write end.
typedef struct {
    int null_fd;
    int out[2];
    int err[2];
    int exec[2];
} s_fds_t;

// The SIGCHLD self-pipe, one per process: a signal handler is per process.
// Several runners in one process would share it; each step still checks
// all of its own children, so one could at worst miss a wake-up.
static volatile sig_atomic_t s_wake_wfd = -1;
// Bumped by every SIGCHLD.  Each runner compares it with the value it saw
// at its last exit check, so one runner draining the shared pipe never
// hides an exit from another.
static volatile sig_atomic_t s_chld_gen;
static int s_wake_rfd = -1;
static pid_t s_wake_pid;        // the process that made it

static void
s_on_sigchld(int sig)
{
    (void) sig;
    int saved = errno;
    s_chld_gen = s_chld_gen == SIG_ATOMIC_MAX ? 0 : s_chld_gen + 1;
    char c = 0;
    // A full pipe already holds a wake-up, so a failed write loses nothing.
    ssize_t rc = write(s_wake_wfd, &c, 1);
    (void) rc;
    errno = saved;
}

// Makes the pipe and installs the handler, again in a forked copy of the
// process so the two never steal each other's wake-ups.
static void
s_wake_init(void)
{
    if (s_wake_rfd >= 0 && s_wake_pid == getpid()) {
        return;
    }
    sigset_t chld, old;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &chld, &old);
    if (s_wake_rfd >= 0) {
        close(s_wake_rfd);
        close(s_wake_wfd);
    }
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        // Like OOM: a drone that cannot make one pipe cannot run anything.
        fprintf(stderr, "waggle: cannot make the SIGCHLD pipe: %s\n",
                strerror(errno));
        abort();
    }
    s_wake_rfd = fds[0];
    s_wake_wfd = fds[1];
    s_wake_pid = getpid();
    struct sigaction sa = {0};
    sa.sa_handler = s_on_sigchld;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

// Empties the pipe: what it says is in s_chld_gen.
static void
s_wake_drain(void)
{
    char buf[256];
    while (read(s_wake_rfd, buf, sizeof buf) == (ssize_t) sizeof buf) {
    }
}

// --- Output tails --------------------------------------------------------

static void
s_tail_init(s_tail_t *t, int fd, size_t cap)
{
    *t = (s_tail_t) {.fd = fd, .cap = cap};
}

static void
s_tail_close(s_tail_t *t)
{
    if (t->fd >= 0) {
        close(t->fd);
        t->fd = -1;
    }
}

// Grows the linear buffer towards cap.  It only wraps once it is full, so
// until then start stays 0 and realloc keeps the bytes in order.
static void
s_tail_reserve(s_tail_t *t, size_t need)
{
    if (need <= t->size) {
        return;
    }
    size_t size = t->size * 2 > need ? t->size * 2 : need;
    t->size = size < t->cap ? size : t->cap;
    t->buf = xrealloc(t->buf, t->size);
}

static void
s_tail_put(s_tail_t *t, const uint8_t *p, size_t n)
{
    t->total += n;
    if (n > t->cap) {
        p += n - t->cap;
        n = t->cap;
    }
    if (n == 0) {
        return;
    }
    s_tail_reserve(t, t->len + n < t->cap ? t->len + n : t->cap);
    size_t head = (t->start + t->len) % t->size;
    size_t first = n < t->size - head ? n : t->size - head;
    memcpy(t->buf + head, p, first);
    memcpy(t->buf, p + first, n - first);
    if (t->len + n > t->size) {
        t->start = (t->start + t->len + n - t->size) % t->size;
        t->len = t->size;
    } else {
        t->len += n;
    }
}

// Reads what is there, up to a bound; closes the pipe at EOF or on error.
static void
s_tail_read(s_tail_t *t)
{
    uint8_t buf[S_READ_BYTES];
    for (int i = 0; t->fd >= 0 && i < S_READS_PER_STEP; i++) {
        ssize_t n = read(t->fd, buf, sizeof buf);
        if (n > 0) {
            s_tail_put(t, buf, (size_t) n);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && errno == EAGAIN) {
            return;
        } else {
            s_tail_close(t);
        }
    }
}

// Hands the kept bytes over in order, NUL-terminated for text callers.
static uint8_t *
s_tail_take(s_tail_t *t, size_t *len, bool *truncated)
{
    uint8_t *out = xmalloc(t->len + 1);
    size_t first = t->len < t->size - t->start ? t->len : t->size - t->start;
    if (t->len > 0) {
        memcpy(out, t->buf + t->start, first);
        memcpy(out + first, t->buf, t->len - first);
    }
    out[t->len] = '\0';
    *len = t->len;
    *truncated = t->total > t->cap;
    return out;
}

// Copies the last n kept bytes, in order, into buf.
static void
s_tail_last(const s_tail_t *t, uint8_t *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        buf[i] = t->buf[(t->start + t->len - n + i) % t->size];
    }
}

static void
s_tail_release(s_tail_t *t)
{
    s_tail_close(t);
    xfree(&t->buf);
}

// --- The parent's side of a start -----------------------------------------

static void
s_close(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static void
s_fds_close(s_fds_t *f)
{
    int *all[] = {&f->null_fd, &f->out[0], &f->out[1], &f->err[0],
                  &f->err[1],  &f->exec[0], &f->exec[1]};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        s_close(all[i]);
    }
}

// Moves descriptors off 0..2 (a drone started with them closed) so the
// child's dup2 onto 0..2 never overwrites a source it still needs.
static int
s_fds_lift(s_fds_t *f)
{
    int *all[] = {&f->null_fd, &f->out[1], &f->err[1], &f->exec[1]};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (*all[i] < 3) {
            int fd = fcntl(*all[i], F_DUPFD_CLOEXEC, 3);
            if (fd < 0) {
                return -1;
            }
            close(*all[i]);
            *all[i] = fd;
        }
    }
    return 0;
}

// Everything close-on-exec, so a concurrent start elsewhere leaks nothing;
// only our read ends are non-blocking: the child's writes must block.
static int
s_fds_open(s_fds_t *f, const runner_spec_t *spec)
{
    *f = (s_fds_t) {-1, {-1, -1}, {-1, -1}, {-1, -1}};
    f->null_fd = spec->has_stdin
                     ? fcntl(spec->stdin_fd, F_DUPFD_CLOEXEC, 3)
                     : open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (f->null_fd < 0 || pipe2(f->out, O_CLOEXEC) != 0
        || pipe2(f->err, O_CLOEXEC) != 0 || pipe2(f->exec, O_CLOEXEC) != 0
        || fcntl(f->out[0], F_SETFL, O_NONBLOCK) != 0
        || fcntl(f->exec[0], F_SETFL, O_NONBLOCK) != 0
        || fcntl(f->err[0], F_SETFL, O_NONBLOCK) != 0 || s_fds_lift(f) != 0) {
        int e = errno;
        s_fds_close(f);
        errno = e;
        return -1;
    }
    return 0;
}

// A PID and mount namespace of its own is made by clone(), not unshare():
// unshare(CLONE_NEWPID) would put the init's children, not the init, in
// the new namespace, and the drone's threads forbid unshare(CLONE_NEWNS).
// A raw clone with no stack behaves like fork() in the child.
static pid_t
s_clone(runner_mode_t mode, bool userns)
{
    if (mode != RUNNER_PIDNS) {
        return fork();
    }
    unsigned long flags = CLONE_NEWPID | CLONE_NEWNS | SIGCHLD
                          | (userns ? CLONE_NEWUSER : 0);
    return (pid_t) syscall(SYS_clone, flags, NULL, NULL, NULL, NULL);
}

static int
s_child_entry(void *arg)
{
    runner_child_main(arg);
}

static pid_t
s_fork(const runner_launch_t *l)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid;
    int ns = l->mode != RUNNER_PIDNS
                 ? 0
                 : CLONE_NEWPID | CLONE_NEWNS | (l->userns ? CLONE_NEWUSER : 0);
    if (l->mode == RUNNER_PLAIN || l->init_argv) {
        pid = runner_vfork(s_child_entry, (void *) l, l->stack_top, ns);
    } else if ((pid = s_clone(l->mode, l->userns)) == 0) {
        runner_child_main(l);
    }
    int e = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = e;
    return pid;
}

static char *
s_describe_failure(const runner_report_t *r, const s_child_t *c)
{
    const char *why = strerror(r->err);
    switch (r->stage) {
    case RUNNER_STAGE_CWD:
        return xasprintf("cannot enter '%s': %s", c->cwd, why);
    case RUNNER_STAGE_EXEC:
        return xasprintf("cannot run '%s': %s", c->argv0, why);
    case RUNNER_STAGE_USER:
        return xasprintf("cannot switch to the task user for '%s': %s",
                         c->argv0, why);
    case RUNNER_STAGE_LIMITS:
        return xasprintf("cannot set the resource limits of '%s': %s",
                         c->argv0, why);
    default:
        return xasprintf("cannot start '%s': %s", c->argv0, why);
    }
}

// Reads what the start pipe holds, never waiting: nothing yet (it is still
// on its way to exec), EOF (a plain child exec'd), RUNNING (an init's task
// exec'd; the pipe stays as report_fd for the task's status), or why it
// never ran.  A stale-path notice comes first and is acted on.
static void
s_read_start(runner_t *self, s_child_t *c)
{
    for (;;) {
        runner_report_t r;
        ssize_t n = read(c->start_fd, &r, sizeof r);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            return;
        }
        if (n == (ssize_t) sizeof r && r.stage == RUNNER_STAGE_STALE) {
            runner_paths_forget(self->paths, c->argv0);
            continue;
        }
        if (n == (ssize_t) sizeof r && r.stage == RUNNER_STAGE_RUNNING) {
            c->report_fd = c->start_fd;
            c->start_fd = -1;
            return;
        }
        if (n == (ssize_t) sizeof r && !c->error) {
            c->error = s_describe_failure(&r, c);
        }
        s_close(&c->start_fd);
        return;
    }
}

// --- Children -------------------------------------------------------------

static s_child_t *
s_find(const runner_t *self, uint64_t id)
{
    for (size_t i = 0; i < self->count; i++) {
        if (self->children[i]->id == id) {
            return self->children[i];
        }
    }
    return NULL;
}

static void
s_add(runner_t *self, s_child_t *c)
{
    if (self->count == self->alloc) {
        self->alloc = self->alloc ? self->alloc * 2 : 8;
        self->children =
            xrealloc(self->children, self->alloc * sizeof *self->children);
    }
    self->children[self->count++] = c;
}

static void
s_child_free(s_child_t *c)
{
    s_tail_release(&c->out);
    s_tail_release(&c->err);
    if (c->report_fd >= 0) {
        close(c->report_fd);
    }
    s_close(&c->start_fd);
    free(c->argv0);
    free(c->cwd);
    free(c->error);
    free(c);
}

static void
s_signal(const s_child_t *c, int sig)
{
    if (!c->lost) {
        kill(-c->pid, sig);
    }
}

static void
s_terminate(const runner_t *self, s_child_t *c, int64_t now_ms)
{
    if (c->term_sent) {
        return;
    }
    c->term_sent = true;
    s_signal(c, SIGTERM);
    c->kill_pending = true;
    c->kill_ms = now_ms + self->grace_ms;
}

// Notices the leader's exit without reaping it, so the pgid stays ours.
static void
s_notice_exit(s_child_t *c, int64_t now_ms)
{
    if (c->exited) {
        return;
    }
    siginfo_t info = {0};
    int rc = waitid(P_PID, (id_t) c->pid, &info, WEXITED | WNOHANG | WNOWAIT);
    if (rc != 0 && errno == ECHILD) {
        c->lost = true;
    } else if (rc != 0 || info.si_pid != c->pid) {
        return;
    }
    c->exited = true;
    c->exit_ms = now_ms;
}

// Deadlines bind only a running leader; a kill's SIGKILL also reaches
// strays after the leader has gone.
static void
s_enforce(const runner_t *self, s_child_t *c, int64_t now_ms)
{
    if (!c->exited && c->deadline_ms > 0 && now_ms >= c->deadline_ms
        && !c->term_sent) {
        c->timed_out = true;
        s_terminate(self, c, now_ms);
    }
    if (c->kill_pending && now_ms >= c->kill_ms) {
        s_signal(c, SIGKILL);
        c->kill_pending = false;
    }
}

// The start pipe is not polled: were it still open after the drain (a
// writer other than the exited leader), it must not hold the task forever.
static bool
s_is_done(const s_child_t *c, int64_t now_ms)
{
    if (!c->exited) {
        return false;
    }
    bool drained = now_ms - c->exit_ms >= S_DRAIN_MS;
    if (c->start_fd >= 0 && !drained) {
        return false;
    }
    return (c->out.fd < 0 && c->err.fd < 0) || drained;
}

// The task's wait status as its init reported it before exiting; false
// when the init died first (SIGKILLed with its group): then its own
// status is the task's.
static bool
s_reported_status(const s_child_t *c, int *status)
{
    runner_report_t r;
    if (c->report_fd < 0
        || read(c->report_fd, &r, sizeof r) != (ssize_t) sizeof r
        || r.stage != RUNNER_STAGE_STATUS) {
        return false;
    }
    *status = r.err;
    return true;
}

static void
s_fill_status(runner_result_t *r, const s_child_t *c)
{
    int status = 0;
    pid_t rc = -1;
    // SIGKILL the strays while the zombie leader still holds the pgid.
    s_signal(c, SIGKILL);
    if (!c->lost) {
        do {
            rc = waitpid(c->pid, &status, 0);
        } while (rc < 0 && errno == EINTR);
    }
    r->exit_code = -1;
    if (rc != c->pid || !r->spawned) {
        return;
    }
    s_reported_status(c, &status);
    if (WIFEXITED(status)) {
        r->exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        r->signal = WTERMSIG(status);
    }
}

// Reaps c, moves what it owns into r and frees it.
static void
s_finish(s_child_t *c, int64_t now_ms, runner_result_t *r)
{
    *r = (runner_result_t) {0};
    r->id = c->id;
    r->spawned = c->error == NULL;
    s_fill_status(r, c);
    r->timed_out = c->timed_out;
    r->killed = c->killed;
    r->error = c->error;
    c->error = NULL;
    r->out = s_tail_take(&c->out, &r->out_len, &r->out_truncated);
    r->err = s_tail_take(&c->err, &r->err_len, &r->err_truncated);
    r->duration_ms = now_ms - c->start_ms;
    s_child_free(c);
}

// --- Orphans (RUNNER_SUBREAPER) -----------------------------------------

static bool
s_is_leader(const runner_t *self, pid_t pid)
{
    for (size_t i = 0; i < self->count; i++) {
        if (self->children[i]->pid == pid) {
            return true;
        }
    }
    return false;
}

// As a subreaper the drone inherits the orphans of an init that was
// SIGKILLed (a kill's grace ran out): they belong to a task that is over,
// so they are killed and reaped.  Orphans land on the main thread.
static void
s_kill_orphans(const runner_t *self)
{
    pid_t pid = getpid(), kids[256];
    long n = runner_children(pid, pid, kids, 256);
    for (long i = 0; i < n; i++) {
        if (!s_is_leader(self, kids[i])) {
            kill(kids[i], SIGKILL);
            waitpid(kids[i], NULL, WNOHANG);
        }
    }
}

// On the way out every init is gone, so whatever they left came here:
// kill and reap it all, waiting, so nothing outlives the drone's exit.
static void
s_kill_all_orphans(const runner_t *self)
{
    pid_t pid = getpid(), kids[256];
    for (int round = 0; round < 64; round++) {
        long n = runner_children(pid, pid, kids, 256);
        if (n <= 0) {
            return;
        }
        for (long i = 0; i < n; i++) {
            if (!s_is_leader(self, kids[i])) {
                kill(kids[i], SIGKILL);
                while (waitpid(kids[i], NULL, 0) < 0 && errno == EINTR) {
                }
            }
        }
    }
}

// --- The API --------------------------------------------------------------

// waggle-task-init beside this process's own program (the build tree and
// an install both put it there), if it is executable.
static void
s_find_init(runner_t *self)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        return;
    }
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash) {
        return;
    }
    slash[1] = '\0';
    char *path = xasprintf("%s" RUNNER_INIT_NAME, exe);
    if (access(path, X_OK) == 0) {
        self->init_path = path;
    } else {
        free(path);
    }
}

runner_t *
runner_new(int64_t grace_ms)
{
    assert(grace_ms >= 0);
    s_wake_init();
    runner_t *self = xcalloc(1, sizeof *self);
    self->grace_ms = grace_ms;
    self->paths = runner_paths_new();
    // An init, a forked copy of the drone, uses its own copy of it.
    self->stack = mmap(NULL, S_STACK_BYTES, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE
                           | MAP_STACK, -1, 0);
    if (self->stack == MAP_FAILED) {
        // Like OOM: a drone without it cannot run anything.
        fprintf(stderr, "waggle: cannot map a child stack: %s\n",
                strerror(errno));
        abort();
    }
    self->open_max = sysconf(_SC_OPEN_MAX);
    if (self->open_max < 0) {
        self->open_max = 1024;
    }
    s_find_init(self);
    return self;
}

int
runner_set_init(runner_t *self, const char *path)
{
    assert(self && self->count == 0);
    if (path && access(path, X_OK) != 0) {
        return -1;
    }
    xfree(&self->init_path);
    self->init_path = path ? xstrdup(path) : NULL;
    return 0;
}

const char *
runner_init_path(const runner_t *self)
{
    assert(self);
    return self->userns ? NULL : self->init_path;
}

// Whether a child can be PID 1 of a new PID and mount namespace with its
// own /proc (inside a new user namespace if userns): the same clone and
// set-up a task's init does.
static bool
s_pidns_probe(bool userns)
{
    uid_t uid = getuid();
    gid_t gid = getgid();
    pid_t pid = s_clone(RUNNER_PIDNS, userns);
    if (pid == 0) {
        _exit(runner_child_namespace(userns, uid, gid) == 0 && getpid() == 1
                  ? 0
                  : 1);
    }
    int status = 0;
    if (pid < 0) {
        return false;
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

bool
runner_pidns_works(void)
{
    return s_pidns_probe(false) || s_pidns_probe(true);
}

int
runner_set_mode(runner_t *self, runner_mode_t mode)
{
    assert(self && self->count == 0);
    if (mode == RUNNER_SUBREAPER
        && prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) {
        return -1;
    }
    if (mode == RUNNER_PIDNS) {
        // Root makes the namespaces directly; others need a user
        // namespace of their own, where the kernel allows one.
        self->userns = !s_pidns_probe(false);
        if (self->userns && !s_pidns_probe(true)) {
            errno = EPERM;
            return -1;
        }
    }
    self->mode = mode;
    return 0;
}

void
runner_destroy(runner_t **self_p)
{
    assert(self_p);
    runner_t *self = *self_p;
    if (!self) {
        return;
    }
    for (size_t i = 0; i < self->count; i++) {
        s_child_t *c = self->children[i];
        s_signal(c, SIGKILL);
        while (!c->lost && waitpid(c->pid, NULL, 0) < 0 && errno == EINTR) {
        }
        s_child_free(c);
    }
    self->count = 0;
    if (self->mode == RUNNER_SUBREAPER) {
        s_kill_all_orphans(self);
    }
    free(self->children);
    runner_paths_destroy(&self->paths);
    xfree(&self->init_path);
    munmap(self->stack, S_STACK_BYTES);
    free(self);
    *self_p = NULL;
}

static s_child_t *
s_child_new(uint64_t id, pid_t pid, const runner_spec_t *spec,
            const s_fds_t *f, int64_t now_ms)
{
    s_child_t *c = xcalloc(1, sizeof *c);
    c->id = id;
    c->pid = pid;
    c->start_ms = now_ms;
    c->deadline_ms = spec->deadline_ms;
    c->report_fd = -1;
    c->start_fd = f->exec[0];
    c->argv0 = xstrdup(spec->argv[0]);
    c->cwd = spec->cwd ? xstrdup(spec->cwd) : NULL;
    s_tail_init(&c->out, f->out[0], spec->out_cap);
    s_tail_init(&c->err, f->err[0], spec->err_cap);
    return c;
}

// The signals a child must put back to SIG_DFL before it unblocks them and
// execs: those the drone handles or ignores, read once, at the first start
// (the drone installs its handlers before it runs anything), so a child
// makes one call per such signal, not one per signal number.
static void
s_save_signals(runner_t *self)
{
    if (self->reset_saved) {
        return;
    }
    sigemptyset(&self->reset);
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction sa;
        if (sig != SIGKILL && sig != SIGSTOP && sigaction(sig, NULL, &sa) == 0
            && sa.sa_handler != SIG_DFL) {
            sigaddset(&self->reset, sig);
        }
    }
    self->reset_saved = true;
}

static char *
s_opt(const char *v)
{
    return v ? xasprintf("=%s", v) : xstrdup("-");
}

static char *
s_user_arg(const runner_user_t *u)
{
    if (!u) {
        return xstrdup("-");
    }
    char *s = xasprintf("%ld:%ld:", (long) u->uid, (long) u->gid);
    for (size_t i = 0; i < u->n_groups; i++) {
        char *t = xasprintf("%s%s%ld", s, i ? "," : "", (long) u->groups[i]);
        free(s);
        s = t;
    }
    return s;
}

static uint64_t
s_sigmask(const sigset_t *set)
{
    uint64_t m = 0;
    for (int sig = 1; sig <= 64 && sig < NSIG; sig++) {
        if (sigismember(set, sig) == 1) {
            m |= UINT64_C(1) << (sig - 1);
        }
    }
    return m;
}

// The init program's argv (runner_int.h): everything it needs, made
// before the clone.  NULL-terminated; the caller frees each string and
// the array (s_strv_free).
static char **
s_init_argv(const runner_t *self, const runner_launch_t *l)
{
    size_t argc = 0;
    while (l->argv[argc]) {
        argc++;
    }
    char **v = xcalloc(RUNNER_INIT_FIXED + argc + 1, sizeof *v);
    size_t n = 0;
    v[n++] = xstrdup(self->init_path);
    v[n++] = xstrdup(l->mode == RUNNER_PIDNS ? "pidns" : "subreaper");
    v[n++] = xstrdup(l->userns ? "1" : "0");
    v[n++] = xasprintf("%ld", (long) l->uid);
    v[n++] = xasprintf("%ld", (long) l->gid);
    v[n++] = s_user_arg(l->user);
    v[n++] = xasprintf("%" PRIu64 ":%" PRIu64 ":%" PRIu64 ":%" PRIu64,
                       l->limits.as_bytes, l->limits.nofile,
                       l->limits.nproc, l->limits.cpu_s);
    v[n++] = xasprintf("%" PRIx64, s_sigmask(l->reset));
    v[n++] = xasprintf("%ld", l->open_max);
    v[n++] = s_opt(l->cwd);
    v[n++] = s_opt(l->path);
    v[n++] = s_opt(getenv("PATH"));
    v[n++] = xasprintf("%zu", argc);
    for (size_t i = 0; i < argc; i++) {
        v[n++] = xstrdup(l->argv[i]);
    }
    return v;
}

// The init program's environment: the task's, each entry behind a '='.
static char **
s_init_envp(const runner_launch_t *l)
{
    size_t envc = 0;
    while (l->envp[envc]) {
        envc++;
    }
    char **v = xcalloc(envc + 1, sizeof *v);
    for (size_t i = 0; i < envc; i++) {
        v[i] = xasprintf("=%s", l->envp[i]);
    }
    return v;
}

static void
s_strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++) {
        free(v[i]);
    }
    free(v);
}

int
runner_start(runner_t *self, uint64_t id, const runner_spec_t *spec,
             int64_t now_ms, char **err)
{
    assert(self && spec && spec->argv && spec->argv[0] && spec->envp && err);
    if (s_find(self, id)) {
        *err = xasprintf("task %" PRIu64 " is already running", id);
        return -1;
    }
    s_fds_t f;
    if (s_fds_open(&f, spec) != 0) {
        *err = xasprintf("cannot make pipes: %s", strerror(errno));
        return -1;
    }
    s_save_signals(self);
    runner_launch_t l = {
        .argv = spec->argv, .envp = spec->envp,
        .path = runner_paths_find(self->paths, spec->argv[0]),
        .reset = &self->reset, .stack_top = self->stack + S_STACK_BYTES,
        .cwd = spec->cwd,
        .user = spec->user, .limits = spec->limits, .mode = self->mode,
        .userns = self->userns, .uid = getuid(), .gid = getgid(),
        .open_max = self->open_max, .null_fd = f.null_fd, .out_w = f.out[1],
        .err_w = f.err[1], .exec_w = f.exec[1]};
    // In a new user namespace the init writes its own id maps, which
    // takes the capabilities an exec there would drop: that init stays a
    // fork of the drone.
    char **init_argv = NULL, **init_envp = NULL;
    if (self->mode != RUNNER_PLAIN && self->init_path && !self->userns) {
        init_argv = s_init_argv(self, &l);
        init_envp = s_init_envp(&l);
    }
    l.init_argv = init_argv;
    l.init_envp = init_envp;
    pid_t pid = s_fork(&l);
    int fork_errno = errno;
    s_strv_free(init_argv);
    s_strv_free(init_envp);
    errno = fork_errno;
    if (pid < 0) {
        *err = xasprintf("cannot fork: %s", strerror(errno));
        s_fds_close(&f);
        return -1;
    }
    // Also in the parent, so a kill(-pid) right after this never misses.
    setpgid(pid, pid);
    s_close(&f.null_fd);
    s_close(&f.out[1]);
    s_close(&f.err[1]);
    s_close(&f.exec[1]);
    s_child_t *c = s_child_new(id, pid, spec, &f, now_ms);
    if (self->mode == RUNNER_PLAIN) {
        s_read_start(self, c);  // vfork-style: it has exec'd or failed
    }
    s_add(self, c);
    return 0;
}

void
runner_kill(runner_t *self, uint64_t id, int64_t now_ms)
{
    assert(self);
    s_child_t *c = s_find(self, id);
    if (c) {
        c->killed = true;
        s_terminate(self, c, now_ms);
    }
}

void
runner_kill_all(runner_t *self, int64_t now_ms)
{
    assert(self);
    for (size_t i = 0; i < self->count; i++) {
        self->children[i]->killed = true;
        s_terminate(self, self->children[i], now_ms);
    }
}

size_t
runner_count(const runner_t *self)
{
    assert(self);
    return self->count;
}

bool
runner_peek(const runner_t *self, uint64_t id, uint8_t *buf, size_t max,
            size_t *len, uint64_t *total)
{
    const s_child_t *c = s_find(self, id);
    if (!c) {
        return false;
    }
    *len = c->out.len < max ? c->out.len : max;
    *total = c->out.total;
    s_tail_last(&c->out, buf, *len);
    return true;
}

bool
runner_has(const runner_t *self, uint64_t id)
{
    assert(self);
    return s_find(self, id) != NULL;
}

static void
s_pollfd(struct pollfd *fds, size_t max, size_t *n, int fd)
{
    if (fd < 0) {
        return;
    }
    if (*n < max) {
        fds[*n] = (struct pollfd) {.fd = fd, .events = POLLIN};
    }
    (*n)++;
}

size_t
runner_pollfds(const runner_t *self, struct pollfd *fds, size_t max)
{
    assert(self && (fds || max == 0));
    size_t n = 0;
    s_pollfd(fds, max, &n, s_wake_rfd);
    for (size_t i = 0; i < self->count; i++) {
        s_pollfd(fds, max, &n, self->children[i]->out.fd);
        s_pollfd(fds, max, &n, self->children[i]->err.fd);
    }
    return n;
}

// Takes fd's readiness from fds[*k] if that entry is fd (the order of
// runner_pollfds); false when it is not: the list is not ours.
static bool
s_take_ready(const struct pollfd *fds, size_t n, size_t *k, int fd,
             bool *ready)
{
    if (fd < 0) {
        return true;
    }
    if (*k >= n || fds[*k].fd != fd) {
        return false;
    }
    *ready = fds[(*k)++].revents != 0;
    return true;
}

void
runner_ready(runner_t *self, const struct pollfd *fds, size_t n)
{
    assert(self && (fds || n == 0));
    size_t k = 0;
    bool wake = false, ok = s_take_ready(fds, n, &k, s_wake_rfd, &wake);
    for (size_t i = 0; ok && i < self->count; i++) {
        s_child_t *c = self->children[i];
        ok = s_take_ready(fds, n, &k, c->out.fd, &c->out_ready)
             && s_take_ready(fds, n, &k, c->err.fd, &c->err_ready);
    }
    // Not the list runner_pollfds gave (or cut short): read everything.
    self->hinted = ok && k == n;
    self->wake_ready = wake;
}

// One child's part of a step.  Exit first: once it is seen, the pipes
// hold all the leader wrote, so the step that sees it reads them all.
static void
s_step_child(runner_t *self, s_child_t *c, bool hinted, bool chld,
             int64_t now_ms)
{
    bool was_exited = c->exited;
    if (!hinted || chld) {
        s_notice_exit(c, now_ms);
    }
    bool all = !hinted || (c->exited && !was_exited);
    if (c->start_fd >= 0 && (all || c->exited)) {
        s_read_start(self, c);
    }
    if (all || c->out_ready) {
        s_tail_read(&c->out);
    }
    if (all || c->err_ready) {
        s_tail_read(&c->err);
    }
    c->out_ready = false;
    c->err_ready = false;
    s_enforce(self, c, now_ms);
}

size_t
runner_step(runner_t *self, int64_t now_ms, runner_result_t **done)
{
    assert(self && done);
    bool hinted = self->hinted;
    self->hinted = false;
    // Read before any waitid, so an exit after it bumps it again.
    sig_atomic_t gen = s_chld_gen;
    bool chld = gen != self->chld_seen;
    self->chld_seen = gen;
    if (!hinted || self->wake_ready || chld) {
        s_wake_drain();
    }
    if (chld && self->mode == RUNNER_SUBREAPER) {
        s_kill_orphans(self);
    }
    *done = NULL;
    size_t n = 0;
    for (size_t i = 0; i < self->count;) {
        s_child_t *c = self->children[i];
        s_step_child(self, c, hinted, chld, now_ms);
        if (!s_is_done(c, now_ms)) {
            i++;
            continue;
        }
        *done = xrealloc(*done, (n + 1) * sizeof **done);
        s_finish(c, now_ms, &(*done)[n++]);
        self->children[i] = self->children[--self->count];
    }
    return n;
}

static void
s_earliest(int64_t *next, int64_t at_ms)
{
    if (*next < 0 || at_ms < *next) {
        *next = at_ms;
    }
}

int64_t
runner_next_ms(const runner_t *self)
{
    assert(self);
    int64_t next = -1;
    for (size_t i = 0; i < self->count; i++) {
        const s_child_t *c = self->children[i];
        if (!c->exited && c->deadline_ms > 0 && !c->term_sent) {
            s_earliest(&next, c->deadline_ms);
        }
        if (c->kill_pending) {
            s_earliest(&next, c->kill_ms);
        }
        if (c->exited) {
            s_earliest(&next, c->exit_ms + S_DRAIN_MS);
        }
    }
    return next;
}

void
runner_result_release(runner_result_t *r)
{
    if (!r) {
        return;
    }
    xfree(&r->error);
    xfree(&r->out);
    xfree(&r->err);
    r->out_len = 0;
    r->err_len = 0;
}
