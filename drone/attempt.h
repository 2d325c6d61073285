// attempt: turning a TASK into something the runner can start, and a
// finished child into a RESULT — the pure-ish middle of the drone.
//
// It makes the attempt's own directory, writes the task's inputs into it as
// files, builds its argv ({{id.output}} expanded) and its environment.
//
// The directory is BASE/<32 random hex digits>: a name no task can derive
// from anything it sees (not the token, not the drone's instance id), in a
// base the drone made 0711 so nobody else can list it.  It is 0700 and, when
// tasks run as another user, owned by that user; it is the task's HOME and
// TMPDIR, and holds the inputs in DIR/inputs (made, and WAGGLE_INPUT_DIR
// set, only when the task has inputs).
//
// The environment is an allow list, nothing else of the drone's: PATH (a
// fixed safe default when the drone has none), LANG, LC_ALL, TZ and TERM if
// the drone has them, the names passed with --pass-env, HOME and TMPDIR (the
// directory), then the task's env (which overrides any of those), then the
// protocol's WAGGLE_PLAN, WAGGLE_PLAN_NAME, WAGGLE_TASK, WAGGLE_TASK_TOKEN,
// WAGGLE_ATTEMPT, WAGGLE_INPUT_DIR (when it has inputs) and one WAGGLE_INPUT_<ID> per input the
// kernel can carry (no NUL, under 128 KiB - 128, and within 1 MiB for all
// of them, in the TASK's order).  It never touches a socket and never
// forks.
#ifndef WAGGLE_ATTEMPT_H
#define WAGGLE_ATTEMPT_H

#include "common/workplan.h"
#include "drone/runner.h"
#include "proto/proto.h"

#include <stdbool.h>
#include <sys/types.h>

#define ATTEMPT_DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"

typedef struct {
    const char *base;           // where attempt directories are made
    char *const *pass_env;      // drone variables passed on; NULL-terminated
                                // (NULL: none)
    uid_t uid;                  // owner of the directory and its files;
    gid_t gid;                  // (uid_t) -1: the drone's own user
} attempt_opts_t;

typedef struct {
    char **argv;        // NULL-terminated (owned)
    char **envp;        // NULL-terminated (owned)
    char *dir;          // BASE/<random>: HOME and TMPDIR (owned; the caller
                        // removes it with attempt_remove_dir and frees it)
    char *input_dir;    // DIR/inputs, one file per input (owned); NULL
                        // when the task has no inputs
} attempt_t;

// Prepares t under o->base.  Returns NULL, or a sentence saying why the
// attempt fails before it can run (caller frees): a truncated input, a bad
// argv value, a file that cannot be written.  a->dir is set either way, for
// the caller to remove with attempt_remove_dir().
char *attempt_prepare(attempt_t *a, const proto_task_t *t,
                      const attempt_opts_t *o);
// The rlimits for a task: what it asks for, capped by the drone's own
// limits (0 = none on either side).  A workplan may lower a drone's limit,
// never raise it.
runner_limits_t attempt_limits(const proto_task_limits_t *asked,
                               const runner_limits_t *caps);
// The values {{id.output}} placeholders take in t's argv or prompt: one per
// input, pointing into t (borrowed; valid while t lives).  The caller frees
// the array.
wp_value_t *attempt_values(const proto_task_t *t);
// Frees argv, envp and input_dir (not the directory on disk); keeps dir.
void attempt_release(attempt_t *a);
// Fills a RESULT body from a finished child, moving its output buffers out
// of r.  released: the drone killed it to leave (outcome released).
void attempt_result(proto_result_t *pr, runner_result_t *r, bool released);
// Removes a directory tree, any depth; a no-op on NULL.  Never follows a
// symbolic link, not even one swapped in while it runs (the tree belongs
// to the task's user; the drone may be root).  What it cannot remove
// stays.
void attempt_remove_dir(const char *dir);

#endif
