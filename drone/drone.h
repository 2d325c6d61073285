// drone: the waggle-drone process — rents tasks from the broker under
// heartbeat-renewed leases, runs them (runner.c) and reports back.
//
// Its promises (DESIGN.md "Wire", PROTOCOL.md): HELLO after every
// (re)connect listing every lease it holds; heartbeats that list them,
// never queued; a RESULT outbox resent until the broker answers accepted,
// duplicate or stale; running tasks survive a lost broker; a STOP or a lost
// lease kills the task's process group.
#ifndef WAGGLE_DRONE_H
#define WAGGLE_DRONE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *broker;             // endpoint to connect to
    char *keys;               // key directory (reads DIR/drone)
    int64_t slots;            // tasks run at once
    char *tags;               // comma-separated capability tags
    char *workdir;            // where tasks run by default; "" = cwd
    int64_t drain_s;          // on SIGTERM, wait this long for tasks
    int64_t err_cap;          // stderr bytes kept (tail)
    char *run_as;             // task user; "" = the default (taskuser.h)
    char *pass_env;           // comma list of variables passed to tasks
    char *isolation;          // auto | pidns | subreaper (confine.h)
    int64_t limit_as_mb;      // per-task rlimits, 0 = none; a workplan's
    int64_t limit_nofile;     // "limits" may lower them, never raise them
    int64_t limit_nproc;
    int64_t limit_cpu_s;
    char *model_api;          // openai | anthropic
    char *model_url;          // NULL/"": no model (no prompt tasks)
    char *model;              // the model's name, offered as model:NAME
    char *model_key_file;     // NULL/"": no key
    int64_t model_timeout_s;  // per model request
    char *log_format;         // text | json
    bool verbose;
} drone_config_t;

typedef struct drone drone_t;

// Loads keys, sets up task isolation (confine.h: the task user, the mode,
// the scratch base), raises the open-files limit for the slots, makes the
// socket and connects (asynchronously).  cfg is borrowed and must outlive
// the drone.  Returns 0, or -1 with a sentence in err (do not start).
int drone_open(drone_t **out, const drone_config_t *cfg, char *err,
               size_t errlen);
void drone_destroy(drone_t **self_p);
// Runs until *stop: the first stop drains (no new work, finish or hand back
// running tasks within drain_s, flush results, BYE); a second *stop value
// of 2 or more hands everything back at once.  Returns 0: whatever it
// meets while running (a lost broker, a failed send, a task that cannot
// start) it rides out or reports to the broker.
int drone_run(drone_t *self, volatile sig_atomic_t *stop);

#endif
