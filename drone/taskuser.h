// taskuser: which user the drone's tasks run as (--run-as), decided once at
// startup, before any fork (getpwnam and getgrouplist are not
// async-signal-safe, so the runner gets uids and groups ready to use).
//
// The policy (README "Isolation"):
//   drone is root, no --run-as      tasks run as TASKUSER_DEFAULT; if that
//                                   user does not exist, refuse to start
//   drone is root, --run-as root    tasks run as root: an explicit opt-out,
//                                   logged as a warning
//   drone is root, --run-as USER    tasks run as USER (refuse if unknown)
//   drone not root, no --run-as     tasks run as the drone's own user, which
//                                   can read whatever the drone can (said at
//                                   startup)
//   drone not root, --run-as USER   refuse unless USER is the drone's own
//                                   user: it cannot switch
#ifndef WAGGLE_TASKUSER_H
#define WAGGLE_TASKUSER_H

#include "drone/runner.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define TASKUSER_DEFAULT "waggle-task"

typedef struct {
    bool switches;              // tasks drop to user (setuid in the child)
    runner_user_t user;         // valid when switches (groups owned)
    char name[64];              // the user tasks run as
    char note[320];             // a sentence for the startup log
    bool warn;                  // the note is a warning
} taskuser_t;

// Decides for run_as (NULL or "": the default) and the drone's effective
// uid.  Returns 0, or -1 with a sentence in err (the drone must not start).
int taskuser_resolve(const char *run_as, uid_t euid, taskuser_t *out,
                     char *err, size_t errlen);
void taskuser_release(taskuser_t *t);

#endif
