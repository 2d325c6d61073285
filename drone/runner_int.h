// runner_int.h: what runner.c (the drone's side) and runner_child.c (the
// child's side, between fork and exec) share.  Nothing outside drone/runner*
// includes it; the contract for everyone else is drone/runner.h.
#ifndef WAGGLE_RUNNER_INT_H
#define WAGGLE_RUNNER_INT_H

#include "drone/runner.h"

#include <signal.h>
#include <sys/types.h>

// What travels on the report pipe, child -> drone: why a child gave up
// before exec (one of the failure stages), that the task is running, or
// (from the init) how the task ended.
enum {
    RUNNER_STAGE_SETUP,         // pipes, descriptors, signals, namespaces
    RUNNER_STAGE_CWD,           // chdir
    RUNNER_STAGE_USER,          // setgroups/setgid/setuid
    RUNNER_STAGE_LIMITS,        // setrlimit
    RUNNER_STAGE_EXEC,          // execve / execvpe
    RUNNER_STAGE_RUNNING,       // init: the task exec'd (err unused)
    RUNNER_STAGE_STATUS,        // init: the task ended; err = wait status
    RUNNER_STAGE_STALE,         // not a failure: the resolved path is gone
                                // (err = errno); the child searches PATH
                                // itself and goes on
};

typedef struct {
    int stage;                  // RUNNER_STAGE_*
    int err;                    // errno, or the wait status
} runner_report_t;

// Everything a child needs, prepared before fork: after it, only
// async-signal-safe calls.
typedef struct {
    char *const *argv;
    char *const *envp;
    const char *path;           // argv[0] as found in PATH, or NULL:
                                // execvpe searches (and always on failure)
    const sigset_t *reset;      // signals whose disposition is not SIG_DFL
    char *stack_top;            // a stack for a child that shares memory
                                // until it execs (clone CLONE_VM|CLONE_VFORK)
    const char *cwd;            // NULL: inherit
    const runner_user_t *user;  // NULL: stay the drone's user
    runner_limits_t limits;
    runner_mode_t mode;
    bool userns;                // RUNNER_PIDNS inside a new user namespace
    uid_t uid;                  // the drone's uid and gid, mapped to
    gid_t gid;                  // themselves in that user namespace
    long open_max;
    int null_fd;                // becomes 0
    int out_w;                  // becomes 1
    int err_w;                  // becomes 2
    int exec_w;                 // report pipe, close-on-exec
    char *const *init_argv;     // confined modes: the init program's argv
                                // (see below), or NULL: the init is a fork
                                // of the drone that never execs
    char *const *init_envp;     // and its environment
} runner_launch_t;

// --- The init program (task_init.c) ----------------------------------------
//
// waggle-task-init MODE USERNS UID GID USER LIMITS RESET OPEN_MAX CWD PATH
//                  SEARCH N ARGV[0..N-1]
// is exec'd with the report pipe as descriptor 3, the task's stdin, stdout
// and stderr as 0-2, every signal blocked, and as its environment the
// task's, each entry behind a '=' (a variable with no name: no loader or
// C library acts on "=LD_PRELOAD=...", and /proc/PID/environ, unlike
// cmdline, is not for every user to read).
//   MODE      "pidns" or "subreaper"        USERNS  0 or 1
//   UID GID   the drone's, for the user namespace's maps
//   USER      "-" (the drone's own) or "UID:GID:G1,G2,..."
//   LIMITS    "AS:NOFILE:NPROC:CPU" (runner_limits_t)
//   RESET     the signals (1-64) to put back to SIG_DFL, a hex bit mask
//   CWD PATH  "-" for none, else "=" and the path
//   SEARCH    the same for the drone's PATH, which execvpe searches when
//             PATH failed (glibc reads it from environ, not from envp)
// Then the N task arguments.
enum { RUNNER_INIT_FIXED = 13 };  // argv entries before the task's

// The init's whole life: namespaces (or subreaper), the task started, its
// start relayed, every orphan reaped, the task's status reported on
// descriptor 3.  Never returns.
_Noreturn void runner_init(const runner_launch_t *l);
// Writes one report on fd.  Async-signal-safe.
void runner_report(int fd, int stage, int err);

// The child's whole life after fork (or clone): never returns.  In
// RUNNER_PLAIN it becomes the task; otherwise it is the task's init.
_Noreturn void runner_child_main(const runner_launch_t *l);
// Starts a child that shares the caller's memory and runs fn(arg) on
// stack_top until it execs or exits, the caller suspended meanwhile (what
// posix_spawn does): no page tables are copied.  ns_flags: CLONE_NEW* for
// the child, or 0.  fn may only make async-signal-safe calls and must
// never return into the caller's frames.  Returns the pid, or -1 (errno).
pid_t runner_vfork(int (*fn)(void *), void *arg, char *stack_top,
                   int ns_flags);

// Makes what a task's init needs in its new namespaces: with userns, maps
// uid and gid to themselves (the child of an unprivileged drone has no ids
// until then), then a private mount tree and a /proc of its own.  Returns
// 0 or -1 (errno).  Async-signal-safe.
int runner_child_namespace(bool userns, uid_t uid, gid_t gid);

// Fills pids with up to max children of thread tid of this process (from
// /proc/<pid>/task/<tid>/children); returns how many it read, or -1.
// Async-signal-safe: the init uses it too.
long runner_children(pid_t pid, pid_t tid, pid_t *pids, size_t max);

// --- runner_path.c: argv[0] looked up in PATH once per name ----------------

typedef struct runner_paths runner_paths_t;

runner_paths_t *runner_paths_new(void);
void runner_paths_destroy(runner_paths_t **self_p);
// The file a PATH-searching exec would run for name, from the drone's PATH: looked up the
// first time, then remembered.  NULL when it cannot be decided the same
// way (a '/' in name, an empty or relative PATH entry, not found): the
// child searches then.  Borrowed, valid until the next find or forget.
const char *runner_paths_find(runner_paths_t *self, const char *name);
// Forgets name: a child found its file gone.
void runner_paths_forget(runner_paths_t *self, const char *name);

#endif
