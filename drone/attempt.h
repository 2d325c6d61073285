// attempt: turning a TASK into something the runner can start, and a
// finished child into a RESULT — the pure-ish middle of the drone.
//
// It writes a task's inputs as files, builds its argv ({{id.output}}
// expanded) and environment (the drone's minus its own WAGGLE_* settings,
// the task's env, WAGGLE_PLAN/TASK/TASK_TOKEN/ATTEMPT/INPUT_DIR and one
// WAGGLE_INPUT_<ID> per input the kernel can carry).  It never touches a
// socket and never forks.
#ifndef WAGGLE_ATTEMPT_H
#define WAGGLE_ATTEMPT_H

#include "drone/runner.h"
#include "proto/proto.h"

#include <stdbool.h>

typedef struct {
    char **argv;        // NULL-terminated (owned)
    char **envp;        // NULL-terminated (owned)
    char *input_dir;    // SCRATCH/TOKEN, holding one file per input (owned)
} attempt_t;

// Prepares t under scratch.  Returns NULL, or a sentence saying why the
// attempt fails before it can run (caller frees): a truncated input, a bad
// argv value, a file that cannot be written.  a->input_dir is set either
// way, for the caller to remove with attempt_remove_dir().
char *attempt_prepare(attempt_t *a, const proto_task_t *t,
                      const char *scratch);
// Frees argv and envp (not the directory on disk); keeps input_dir.
void attempt_release(attempt_t *a);
// Fills a RESULT body from a finished child, moving its output buffers out
// of r.  released: the drone killed it to leave (outcome released).
void attempt_result(proto_result_t *pr, runner_result_t *r, bool released);
// Removes a directory tree; a no-op on NULL.
void attempt_remove_dir(const char *dir);

#endif
