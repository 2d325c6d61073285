// runner_child: a task child between fork and exec, and the task's init.
//
// Everything here runs in a child of the drone, which was multithreaded:
// only async-signal-safe calls (raw syscalls, no malloc, no stdio, no
// locks).  Everything it needs was prepared by runner.c.  The init program
// (task_init.c) links this file too and runs runner_init after its exec.
//
//   plain:  drone -> task                    (RUNNER_PLAIN)
//   init:   drone -> init -> task            (RUNNER_SUBREAPER, RUNNER_PIDNS)
//
// Every child shares its parent's memory until it execs (runner_vfork:
// clone with CLONE_VM | CLONE_VFORK, the parent suspended meanwhile), so
// no page tables are copied.  The init's child of the drone execs
// waggle-task-init (l->init_argv), a small static program that outlives
// the start with nothing of the drone's memory; only without that program
// is the init a real fork of the drone that never execs (slower: the copy
// of the drone's page tables and its teardown cost more than the task).
//
// The init is the process group leader the drone signals; it blocks every
// signal (so the drone's SIGTERM to the group reaches only the task's
// processes), reaps whatever is re-parented to it, and when the task ends
// writes the task's wait status on the report pipe and exits.  In
// RUNNER_PIDNS it is PID 1 of its namespace, so its exit kills what is
// left; in RUNNER_SUBREAPER it SIGKILLs its remaining descendants first.
#include "drone/runner_int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

enum { S_REPORT_FD = 3 };

// Linux 5.9's number on every architecture; older C libraries (musl 1.2.3,
// which builds waggle-task-init) lack the name.  A kernel without it says
// ENOSYS and the close loop runs instead.
#if !defined(SYS_close_range) && defined(__linux__)
#define SYS_close_range 436
#endif

void
runner_report(int fd, int stage, int err)
{
    runner_report_t r = {.stage = stage, .err = err};
    while (write(fd, &r, sizeof r) < 0 && errno == EINTR) {
    }
}

static _Noreturn void
s_fail(int fd, int stage)
{
    runner_report(fd, stage, errno);
    _exit(127);
}

// The signals the drone handles or ignores back to default (an ignored
// SIGPIPE would survive exec; a handler could run here once unblocked),
// one call each for the set saved before the first start (runner.c), then
// all unblocked at once: the parent blocked them around the fork so none
// of its handlers could run in here.
static void
s_signals_default(const sigset_t *reset)
{
    struct sigaction dfl = {0};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (int sig = 1; sig < NSIG; sig++) {
        if (sigismember(reset, sig) == 1) {
            sigaction(sig, &dfl, NULL);
        }
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

// Moves the report pipe to 3 and closes everything above it, libzmq's
// eventfds and sockets included.
static void
s_close_above(int report, long open_max)
{
    if (report != S_REPORT_FD && dup3(report, S_REPORT_FD, O_CLOEXEC) < 0) {
        s_fail(report, RUNNER_STAGE_SETUP);
    }
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 4u, ~0u, 0u) == 0) {
        return;
    }
#endif
    for (long fd = 4; fd < open_max; fd++) {
        close((int) fd);
    }
}

// Whether anyone still reads the report pipe: the drone holds its end
// until the task has exec'd, so no reader means the drone died (in a PID
// namespace getppid() is 0 and cannot tell).
static bool
s_reader_alive(int fd)
{
    struct pollfd p = {.fd = fd, .events = 0};
    return poll(&p, 1, 0) >= 0 && !(p.revents & POLLERR);
}

// Drops to the task's user: groups first, while still allowed to.  Raw
// syscalls: glibc's wrappers would try to signal threads that exist only
// in the drone.  The switch clears PR_SET_PDEATHSIG, so it is set again;
// a parent that died in between would never send it, hence the check.
static int
s_become(const runner_user_t *u)
{
    pid_t parent = getppid();
    if (syscall(SYS_setgroups, u->n_groups, u->groups) != 0
        || syscall(SYS_setresgid, u->gid, u->gid, u->gid) != 0
        || syscall(SYS_setresuid, u->uid, u->uid, u->uid) != 0
        || prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
        return -1;
    }
    if (getppid() != parent) {
        _exit(127);
    }
    return 0;
}

// Lowers one limit; never above the current hard limit (after the user
// switch it could not be raised back).
static int
s_limit(int resource, uint64_t value, uint64_t slack)
{
    struct rlimit cur;
    if (value == 0 || getrlimit(resource, &cur) != 0) {
        return 0;
    }
    struct rlimit r = {.rlim_cur = value, .rlim_max = value + slack};
    if (cur.rlim_max != RLIM_INFINITY && r.rlim_max > cur.rlim_max) {
        r.rlim_max = cur.rlim_max;
    }
    if (r.rlim_cur > r.rlim_max) {
        r.rlim_cur = r.rlim_max;
    }
    return setrlimit(resource, &r);
}

static int
s_limits(const runner_limits_t *lim)
{
    return s_limit(RLIMIT_AS, lim->as_bytes, 0)
                   || s_limit(RLIMIT_NOFILE, lim->nofile, 0)
                   || s_limit(RLIMIT_NPROC, lim->nproc, 0)
                   || s_limit(RLIMIT_CPU, lim->cpu_s, 5)
               ? -1
               : 0;
}

// Execs the path runner.c found argv[0] at; when that fails, the search
// execvpe does (so a script without #!, or a PATH entry this user may not
// enter, behaves as it always did).  A path that is gone is reported, so
// the drone looks again next time.  Returns only when both failed.
static void
s_exec(const runner_launch_t *l)
{
    if (l->path) {
        execve(l->path, l->argv, l->envp);
        if (errno == ENOENT || errno == ENOTDIR) {
            runner_report(S_REPORT_FD, RUNNER_STAGE_STALE, errno);
        }
    }
    execvpe(l->argv[0], l->argv, l->envp);
}

// The task itself, from its stdio being in place to exec.  report is a
// close-on-exec descriptor >= 3.
static _Noreturn void
s_task(const runner_launch_t *l, int report)
{
    s_close_above(report, l->open_max);
    s_signals_default(l->reset);
    if (l->user && s_become(l->user) != 0) {
        s_fail(S_REPORT_FD, RUNNER_STAGE_USER);
    }
    if (s_limits(&l->limits) != 0) {
        s_fail(S_REPORT_FD, RUNNER_STAGE_LIMITS);
    }
    // After the switch, so a task never enters what its user may not.
    if (l->cwd && chdir(l->cwd) != 0) {
        s_fail(S_REPORT_FD, RUNNER_STAGE_CWD);
    }
    s_exec(l);
    s_fail(S_REPORT_FD, RUNNER_STAGE_EXEC);
}

static void s_put_num(char *path, size_t *n, long v);
static void s_put_str(char *path, size_t *n, const char *s);

static int
s_write_file(const char *path, const char *text, size_t len)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    ssize_t n = write(fd, text, len);
    int e = errno;
    close(fd);
    errno = e;
    return n == (ssize_t) len ? 0 : -1;
}

// "ID ID 1": the one id an unprivileged process may map, its own.
static int
s_map(const char *path, long id)
{
    char line[64];
    size_t n = 0;
    s_put_num(line, &n, id);
    s_put_str(line, &n, " ");
    s_put_num(line, &n, id);
    s_put_str(line, &n, " 1\n");
    return s_write_file(path, line, n);
}

// Maps uid and gid to themselves in our new user namespace.  The drone is
// non-dumpable, which makes our /proc/self files root's: dumpable just
// long enough to write the maps, and never while a task exists (this copy
// of the drone's memory holds what tasks must not read).  /proc/self is
// still the drone's /proc here, which shows us.
static int
s_map_ids(uid_t uid, gid_t gid)
{
    if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) {
        return -1;
    }
    int rc = s_write_file("/proc/self/setgroups", "deny", 4) == 0
                     && s_map("/proc/self/uid_map", (long) uid) == 0
                     && s_map("/proc/self/gid_map", (long) gid) == 0
                 ? 0
                 : -1;
    int e = errno;
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
        _exit(127);  // never go on dumpable
    }
    errno = e;
    return rc;
}

int
runner_child_namespace(bool userns, uid_t uid, gid_t gid)
{
    if (userns && s_map_ids(uid, gid) != 0) {
        return -1;
    }
    // A /proc of its own: the task sees only its namespace's processes.
    if (mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0) {
        return -1;
    }
    return mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                 NULL);
}

// SIGKILLs the init's descendants until none is left: each one killed
// hands its own children to us, so list, kill, reap one, and again.
static void
s_kill_descendants(void)
{
    pid_t self = getpid(), kids[128];
    for (;;) {
        long n = runner_children(self, self, kids, 128);
        for (long i = 0; i < n; i++) {
            kill(kids[i], SIGKILL);
        }
        if (waitpid(-1, NULL, 0) < 0 && errno == ECHILD) {
            return;
        }
    }
}

// Waits for the task, reaping everything else re-parented here meanwhile.
static int
s_wait_task(pid_t task)
{
    int status = 0;
    for (;;) {
        pid_t r = waitpid(-1, &status, 0);
        if (r == task || (r < 0 && errno == ECHILD)) {
            return status;
        }
    }
}

// Relays the task's pre-exec failure, or says it runs; a stale-path
// notice goes on ahead of either.
static void
s_relay_start(int from, int to)
{
    runner_report_t r;
    for (;;) {
        ssize_t n;
        do {
            n = read(from, &r, sizeof r);
        } while (n < 0 && errno == EINTR);
        if (n != (ssize_t) sizeof r) {
            runner_report(to, RUNNER_STAGE_RUNNING, 0);
            break;
        }
        runner_report(to, r.stage, r.err);
        if (r.stage != RUNNER_STAGE_STALE) {
            break;
        }
    }
    close(from);
}

// What the init's task child starts from (on the init's stack, which the
// child shares until it execs).
typedef struct {
    const runner_launch_t *l;
    pid_t init;
    int pipe[2];
} s_task_arg_t;

static int
s_task_main(void *arg)
{
    const s_task_arg_t *t = arg;
    // Dies with its init, which dies with the drone.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != t->init) {
        _exit(127);
    }
    close(t->pipe[0]);
    s_task(t->l, t->pipe[1]);
}

_Noreturn void
runner_init(const runner_launch_t *l)
{
    int setup = l->mode == RUNNER_PIDNS
                    ? runner_child_namespace(l->userns, l->uid, l->gid)
                    : prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    s_task_arg_t t = {.l = l, .init = getpid()};
    if (setup != 0 || pipe2(t.pipe, O_CLOEXEC) != 0) {
        s_fail(S_REPORT_FD, RUNNER_STAGE_SETUP);
    }
    // Back here once the task has exec'd or given up: its page tables are
    // never copied from this copy of the drone.
    pid_t task = runner_vfork(s_task_main, &t, l->stack_top, 0);
    if (task < 0) {
        s_fail(S_REPORT_FD, RUNNER_STAGE_SETUP);
    }
    close(t.pipe[1]);
    // The init keeps its stdin, stdout and stderr to the end: the output
    // pipes then reach EOF when it exits, after the task's whole tree, so
    // the drone wakes once for the end of a task, not once per pipe and
    // once more for the exit.
    s_relay_start(t.pipe[0], S_REPORT_FD);
    int status = s_wait_task(task);
    if (l->mode == RUNNER_SUBREAPER) {
        s_kill_descendants();
    }
    runner_report(S_REPORT_FD, RUNNER_STAGE_STATUS, status);
    _exit(0);
}

#if defined(__SANITIZE_ADDRESS__)
#define S_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define S_ASAN 1
#endif
#endif

pid_t
runner_vfork(int (*fn)(void *), void *arg, char *stack_top, int ns_flags)
{
#ifdef S_ASAN
    // AddressSanitizer cannot follow a child onto another stack (its
    // no-return hook unpoisons the one it believes in): a sanitized build
    // forks instead, which behaves the same, only slower.  A raw clone
    // with no stack is a fork that can also make namespaces.
    (void) stack_top;
    pid_t pid = (pid_t) syscall(SYS_clone, (unsigned long) ns_flags | SIGCHLD,
                                NULL, NULL, NULL, NULL);
    if (pid == 0) {
        _exit(fn(arg));
    }
    return pid;
#else
    return clone(fn, stack_top, CLONE_VM | CLONE_VFORK | SIGCHLD | ns_flags,
                 arg);
#endif
}

// Execs the init program with the report pipe as its descriptor 3 (kept
// across the exec) and nothing above it, its signals still all blocked,
// and the task's environment made inert (runner_int.h): nothing a
// workplan sets (LD_PRELOAD) applies to the init, which may be root.
static _Noreturn void
s_exec_init(const runner_launch_t *l)
{
    int report = l->exec_w;
    if (report == S_REPORT_FD) {
        if (fcntl(report, F_SETFD, 0) != 0) {
            s_fail(report, RUNNER_STAGE_SETUP);
        }
    } else if (dup2(report, S_REPORT_FD) < 0) {
        s_fail(report, RUNNER_STAGE_SETUP);
    }
    s_close_above(S_REPORT_FD, l->open_max);
    execve(l->init_argv[0], l->init_argv, l->init_envp);
    s_fail(S_REPORT_FD, RUNNER_STAGE_SETUP);
}

_Noreturn void
runner_child_main(const runner_launch_t *l)
{
    setpgid(0, 0);
    // PDEATHSIG fires when the forking *thread* ends: runner_start runs on
    // the drone's loop thread, which lives as long as the process.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
        s_fail(l->exec_w, RUNNER_STAGE_SETUP);
    }
    if (!s_reader_alive(l->exec_w)) {
        _exit(127);             // the drone died before prctl took effect
    }
    // Every source is >= 3 (see runner.c s_fds_lift), so no dup2 clobbers
    // another.
    if (dup2(l->null_fd, 0) < 0 || dup2(l->out_w, 1) < 0
        || dup2(l->err_w, 2) < 0) {
        s_fail(l->exec_w, RUNNER_STAGE_SETUP);
    }
    if (l->mode == RUNNER_PLAIN) {
        s_task(l, l->exec_w);
    }
    if (l->init_argv) {
        s_exec_init(l);
    }
    s_close_above(l->exec_w, l->open_max);
    runner_init(l);
}

// Appends the number in digits to path at *n.
static void
s_put_num(char *path, size_t *n, long v)
{
    char d[24];
    int k = 0;
    do {
        d[k++] = (char) ('0' + v % 10);
        v /= 10;
    } while (v > 0);
    while (k > 0) {
        path[(*n)++] = d[--k];
    }
}

static void
s_put_str(char *path, size_t *n, const char *s)
{
    while (*s) {
        path[(*n)++] = *s++;
    }
}

long
runner_children(pid_t pid, pid_t tid, pid_t *pids, size_t max)
{
    char path[96];
    size_t n = 0;
    s_put_str(path, &n, "/proc/");
    s_put_num(path, &n, pid);
    s_put_str(path, &n, "/task/");
    s_put_num(path, &n, tid);
    s_put_str(path, &n, "/children");
    path[n] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    char buf[512];
    long count = 0, cur = -1;
    ssize_t got;
    while ((size_t) count < max && (got = read(fd, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < got && (size_t) count < max; i++) {
            if (buf[i] >= '0' && buf[i] <= '9') {
                cur = (cur < 0 ? 0 : cur * 10) + (buf[i] - '0');
            } else if (cur >= 0) {
                pids[count++] = (pid_t) cur;
                cur = -1;
            }
        }
    }
    if (cur >= 0 && (size_t) count < max) {
        pids[count++] = (pid_t) cur;
    }
    close(fd);
    return count;
}
