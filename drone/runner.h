// runner: runs task processes for the drone — the only drone code that
// forks.
//
// Each child runs in its own process group with PR_SET_PDEATHSIG(SIGKILL)
// so a crashed drone leaves nothing running; descriptors other than its
// stdin (/dev/null, or spec->stdin_fd), stdout and stderr pipes are closed; argv, envp and
// every path (and the task user) are resolved before fork() because libzmq
// threads make the drone multithreaded (only async-signal-safe calls
// between fork and exec).  An exec failure comes back through a
// close-on-exec pipe as "cannot run 'x': No such file or directory"
// (read once the child has exited: that pipe is not polled).
// Output is always drained; past the cap only the tail is kept and the
// result says it was cut.  A deadline kills the whole group (SIGTERM, then
// SIGKILL after a grace).  SIGCHLD is turned into a readable descriptor
// (self-pipe) so the drone's poll loop wakes.  Starting a child never
// waits for its exec: whether it ran arrives on a pipe that runner_step
// reads when the child has exited.
//
// Confinement (runner_set_mode): in RUNNER_PLAIN the child execs the task.
// Otherwise the child is the task's init — waggle-task-init, a small
// program of its own exec'd in place of the drone (or, without it, a
// forked copy of the drone) that blocks every signal but SIGKILL, starts
// the task, reaps everything, and reports the task's wait status on the
// pipe — and nothing the task starts outlives it:
//   RUNNER_PIDNS: the init is PID 1 of a new PID and mount namespace with
//     its own /proc; when it exits the kernel kills every process left in
//     the namespace, setsid() and double forks included, and a task sees
//     no process outside its namespace (no sibling's /proc/PID/environ).
//     A drone that is not root gets them inside a new user namespace that
//     maps only its own uid and gid, where the kernel allows that.
//   RUNNER_SUBREAPER: the init is a child subreaper, so orphans of the task
//     are re-parented to it; when the task ends it SIGKILLs its remaining
//     descendants until none is left.  The drone is a subreaper too and
//     kills whatever orphan reaches it (from an init that was SIGKILLed).
// In both, the task child drops to spec->user (setgroups, setgid, setuid;
// then PR_SET_PDEATHSIG again, which the switch clears) and lowers its
// rlimits (spec->limits) just before exec.
//
// The runner never reads a clock: callers pass monotonic now_ms.
#ifndef WAGGLE_RUNNER_H
#define WAGGLE_RUNNER_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/types.h>

typedef struct runner runner_t;

typedef enum {
    RUNNER_PLAIN = 0,           // the child execs the task (tests, default)
    RUNNER_SUBREAPER,           // an init that is a child subreaper
    RUNNER_PIDNS,               // an init that is PID 1 of a new namespace
} runner_mode_t;

// A user to run tasks as, resolved before fork (getpwnam is not
// async-signal-safe).
typedef struct {
    uid_t uid;
    gid_t gid;
    gid_t *groups;              // supplementary groups (owned by the caller)
    size_t n_groups;
} runner_user_t;

// Per-task rlimits (soft and hard); 0 leaves the drone's own.
typedef struct {
    uint64_t as_bytes;          // RLIMIT_AS
    uint64_t nofile;            // RLIMIT_NOFILE
    uint64_t nproc;             // RLIMIT_NPROC: per real uid, not per task
    uint64_t cpu_s;             // RLIMIT_CPU (SIGXCPU, SIGKILL 5 s later)
} runner_limits_t;

typedef struct {
    char *const *argv;          // argv[0] found in the drone's PATH (once
                                // per name, then remembered); NULL-
                                // terminated
    char *const *envp;          // complete environment; NULL-terminated
    const char *cwd;            // NULL: inherit
    int64_t deadline_ms;        // monotonic; 0: none
    size_t out_cap;             // bytes of stdout kept (tail)
    size_t err_cap;             // bytes of stderr kept (tail)
    const runner_user_t *user;  // NULL: the drone's own user
    runner_limits_t limits;     // all 0: none
    bool has_stdin;             // false: stdin is /dev/null
    int stdin_fd;               // has_stdin: a descriptor the child gets
                                // (a duplicate) as stdin, e.g. a memfd
                                // holding a request; the caller keeps it
} runner_spec_t;

typedef struct {
    uint64_t id;                // the caller's id (the lease token)
    bool spawned;               // false: it never ran (see error)
    int exit_code;              // -1 unless it exited
    int signal;                 // 0 unless killed by a signal
    bool timed_out;             // killed at its deadline
    bool killed;                // killed by runner_kill
    char *error;                // NULL or a sentence (owned)
    uint8_t *out;               // stdout tail (owned)
    size_t out_len;
    bool out_truncated;
    uint8_t *err;               // stderr tail (owned)
    size_t err_len;
    bool err_truncated;
    int64_t duration_ms;
} runner_result_t;

// Installs the SIGCHLD handler (once per process).  grace_ms: between the
// SIGTERM and the SIGKILL of a deadline or a kill.  Starts in RUNNER_PLAIN.
runner_t *runner_new(int64_t grace_ms);
// Chooses how children are confined; call before the first start.
// RUNNER_SUBREAPER makes this process a child subreaper (process-wide) and
// runner_step then kills and reaps children it did not start.  Returns 0,
// or -1 when the mode is not available here (errno says why).
int runner_set_mode(runner_t *self, runner_mode_t mode);
// The init program of the confined modes: RUNNER_INIT_NAME beside this
// process's own program, found by runner_new; path overrides it (NULL:
// none, and each init is a fork of this process: slower, same isolation).
// Call before the first start.  Returns 0, or -1 when path is not
// executable.
#define RUNNER_INIT_NAME "waggle-task-init"
int runner_set_init(runner_t *self, const char *path);
// The init program confined tasks start, or NULL: each init is a fork of
// this process (no program, or RUNNER_PIDNS inside a user namespace).
const char *runner_init_path(const runner_t *self);
// Whether this process can make a PID and mount namespace, directly or
// inside a user namespace (tries it).
bool runner_pidns_works(void);
// Kills every child (SIGKILL to each group), reaps them, frees all.
void runner_destroy(runner_t **self_p);

// Starts a child for id without waiting for it to exec.  Returns 0, or -1
// if it could not even fork or make pipes (then *err is a sentence, caller
// frees).  An exec failure is not -1: it arrives later as a result with
// spawned = false.  The signal dispositions children put back to default
// are read at the first start: install handlers before it.
int runner_start(runner_t *self, uint64_t id, const runner_spec_t *spec,
                 int64_t now_ms, char **err);
// Kills id's process group (SIGTERM, then SIGKILL after the grace).  Its
// result still arrives, with killed = true.  No-op for unknown ids.
void runner_kill(runner_t *self, uint64_t id, int64_t now_ms);
// Kills every child the same way.
void runner_kill_all(runner_t *self, int64_t now_ms);
size_t runner_count(const runner_t *self);       // children not yet done
bool runner_has(const runner_t *self, uint64_t id);
// What id wrote to stdout so far: the last (at most max) bytes kept into
// buf (*len of them) and the count of every byte it wrote (*total).  False
// for an id not running.
bool runner_peek(const runner_t *self, uint64_t id, uint8_t *buf,
                 size_t max, size_t *len, uint64_t *total);

// Descriptors to poll for reading (the SIGCHLD pipe, then each child's
// output pipes).  Fills up to max entries of fds; returns how many there
// are.
size_t runner_pollfds(const runner_t *self, struct pollfd *fds, size_t max);
// Optional, between poll and runner_step: fds and n are what
// runner_pollfds filled, with poll's revents (all 0 after a timeout).  The
// next runner_step then reads only the descriptors found ready and looks
// for exits only after a SIGCHLD, instead of a read per pipe and a waitid
// per child.  A list that is not runner_pollfds' unchanged (cut short, a
// child started since) is ignored.
void runner_ready(runner_t *self, const struct pollfd *fds, size_t n);
// Reads what is readable, reaps, and enforces deadlines and kill graces.
// Call after poll says any runner fd is readable, and on every loop turn.
// Moves each finished child's result into *done (caller frees each with
// runner_result_release and the array with free); returns the count.
size_t runner_step(runner_t *self, int64_t now_ms, runner_result_t **done);
// The earliest deadline or kill grace to wake up for, or -1.
int64_t runner_next_ms(const runner_t *self);
void runner_result_release(runner_result_t *r);

#endif
