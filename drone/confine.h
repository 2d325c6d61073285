// confine: how the drone keeps tasks away from itself and from each other,
// decided once at startup from its options and what this host allows.
//
//   who      the task user (taskuser.h, --run-as)
//   where    a scratch base made by mkdtemp and set to 0711: only the drone
//            can list it; each attempt gets a random-named 0700 directory
//            in it, owned by the task user (attempt.h).  The drone holds
//            an flock on BASE/.lock for its life, so the next drone can
//            tell and remove the base of one that was killed
//   what     the environment allow list plus --pass-env (attempt.h)
//   how      the runner's mode (--isolation): a PID namespace per task
//            where the drone can make one (root), else a subreaper
//   how much rlimits from --limit-* capping the workplan's "limits"
//
// The drone process itself is made non-dumpable in main.c, so a task of the
// same uid cannot read its /proc/PID/environ, mem or fds.
#ifndef WAGGLE_CONFINE_H
#define WAGGLE_CONFINE_H

#include "drone/attempt.h"
#include "drone/drone.h"
#include "drone/runner.h"
#include "drone/taskuser.h"

#include <limits.h>

typedef struct {
    taskuser_t user;            // who tasks run as
    runner_mode_t mode;         // RUNNER_PIDNS or RUNNER_SUBREAPER
    char base[PATH_MAX];        // the scratch base (0711), "" if none
    int lock_fd;                // BASE/.lock, flock'ed; -1 if none
    char **pass_env;            // --pass-env names, NULL-terminated (owned)
    runner_limits_t caps;       // the drone's limits (0: none)
} confine_t;

// Resolves the task user, picks the mode, removes the scratch bases of
// killed drones, makes its own and logs what applies.  Returns 0, or -1
// with a sentence in err (do not start).
int confine_open(confine_t *c, const drone_config_t *cfg, char *err,
                 size_t errlen);
// Removes the scratch base and frees what c owns.
void confine_close(confine_t *c);
// Where and for whom attempt_prepare makes an attempt's directory.
attempt_opts_t confine_attempt_opts(const confine_t *c);
// Fills the user and limits of a task's runner spec.
void confine_spec(const confine_t *c, const proto_task_t *t,
                  runner_spec_t *spec);

#endif
