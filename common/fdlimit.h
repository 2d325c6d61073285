// fdlimit: the soft limit on open files, raised to what the process may
// have.
//
// Every connection (the broker) and every running task's pipes (a drone)
// take descriptors; past the soft limit accept() and pipe() fail with
// EMFILE, and systemd's default soft limit is 1024 — a trap only a big
// swarm finds.  Redis raises its own limit for maxclients the same way.
// Never lowers a limit; tasks get their own (drone/runner_child.c).
#ifndef WAGGLE_FDLIMIT_H
#define WAGGLE_FDLIMIT_H

#include <stdint.h>

#define FDLIMIT_MAX 1048576  // the soft limit is raised to at most this

// Raises RLIMIT_NOFILE's soft limit to its hard limit (at most
// FDLIMIT_MAX).  Returns the soft limit in force afterwards (UINT64_MAX:
// unlimited).
uint64_t fdlimit_raise(void);

#endif
