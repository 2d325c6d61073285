// proc: starting, watching and stopping real processes in tests.
//
// Every wait has a timeout; teardown is SIGTERM, waitpid, then SIGKILL after
// a grace (libuv's runner, beanstalkd's testserv).
#ifndef WAGGLE_PROC_H
#define WAGGLE_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

// Starts argv[0] (a path) with stdout to a pipe (*out_fd, if out_fd is not
// NULL; else /dev/null) and stderr appended to log_path (NULL: inherit).
// Returns the pid, or -1.
pid_t proc_spawn(char *const argv[], const char *log_path, int *out_fd);
// Reads lines from fd until one starts with prefix, copying it into line.
// Returns 0, or -1 on EOF or after timeout_ms.
int proc_read_line(int fd, const char *prefix, int timeout_ms, char *line,
                   size_t len);
// Waits up to timeout_ms for pid to exit.  Returns 0 with its wait status
// in *status, or -1 if it is still running.
int proc_wait(pid_t pid, int timeout_ms, int *status);
// SIGTERM, up to grace_ms, then SIGKILL; reaps.  Returns the wait status.
int proc_stop(pid_t pid, int grace_ms);
bool proc_alive(pid_t pid);
// Waits up to timeout_ms until pid no longer runs: gone, or a zombie that
// nobody reaped (a grandchild of the test, say).  True when it is.
bool proc_gone(pid_t pid, int timeout_ms);
// Runs argv to completion (killed after timeout_ms), capturing stdout and
// stderr (caller frees; either may be NULL).  Returns the exit code, or -1
// if it was killed or did not exit normally.
int proc_run(char *const argv[], int timeout_ms, char **out, char **err);

#endif
