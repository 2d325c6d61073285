// swarm: a real Waggle swarm on loopback for end-to-end tests.
//
// A fresh directory (t_tmpdir), a real key set made by `waggle-architect
// keygen`, a real ledger file, a TCP port picked once so a restarted broker
// comes back at the same endpoint, and real waggle-broker / waggle-drone
// processes.  Logs go to DIR/broker.log and DIR/drone-N.log; drones get
// TMPDIR=DIR/tmp, so their scratch directories go when DIR does.
#ifndef WAGGLE_SWARM_H
#define WAGGLE_SWARM_H

#include "common/json.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define SWARM_MAX_DRONES 64

// REQUIRE (t.h) for a test whose swarm s runs: stops it first, so a failed
// test leaves no broker or drone behind.
#define SWARM_REQUIRE(s, cond)                                                \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: %s: REQUIRE(%s) failed\n", __FILE__,       \
                    __LINE__, t_current, #cond);                              \
            t_failures++;                                                     \
            swarm_stop(s);                                                    \
            return;                                                           \
        }                                                                     \
    } while (0)

typedef struct {
    char dir[512];
    char keys[600];
    char db[600];
    char endpoint[128];
    int hb_ms;                    // broker --heartbeat-ms
    int lease_ms;                 // broker --lease-ms
    pid_t broker;
    int broker_out;               // its stdout pipe
    pid_t drones[SWARM_MAX_DRONES];
    int n_drones;
} swarm_t;

// Path of a built program: "waggle-broker" -> ".../broker/waggle-broker".
const char *swarm_bin(const char *program);
// Makes the directory and keys; picks the port.  Sets WAGGLE_RUN_AS
// (root when root) and WAGGLE_ISOLATION=subreaper for the drones unless
// already set: a test wanting tasks isolated passes --run-as/--isolation.
void swarm_init(swarm_t *s, int hb_ms, int lease_ms);
// Starts the broker (extra args NULL-terminated) and waits for READY.
// Returns 0, or -1 (the log says why).
int swarm_broker(swarm_t *s, ...);
// SIGKILLs the broker (no cleanup), reaps it.
void swarm_broker_kill(swarm_t *s);
// Starts a drone; returns its index in s->drones.  extra args after tags,
// NULL-terminated.
int swarm_drone(swarm_t *s, int slots, const char *tags, ...);
// Runs waggle-architect with --broker/--keys and the given args (NULL-
// terminated); captures stdout/stderr (caller frees; may pass NULL).
// Returns its exit code (-1 if killed after 60 s).
int swarm_arch(swarm_t *s, char **out, char **err, ...);
// Writes json to a file and submits it; returns the plan id, or -1.
int64_t swarm_submit(swarm_t *s, const char *json);
// The last line of a command's stdout as a plan id (`submit`, `plan`
// print it last); -1 when it is not one.
int64_t swarm_last_id(const char *out);
// `status PLAN --json`, parsed; NULL on failure.  Caller json_destroy()s.
jnode_t *swarm_status(swarm_t *s, int64_t plan);
// `explain PLAN TASK --json`'s output (caller frees); NULL when it failed.
char *swarm_explain(swarm_t *s, int64_t plan, const char *task);
// One task's record in a parsed status (borrowed from status), or NULL.
const jnode_t *swarm_status_task(const jnode_t *status, const char *task);
// The state of one task from status, into buf; "" on failure.
void swarm_task_state(swarm_t *s, int64_t plan, const char *task, char *buf,
                      size_t len);
// Polls status until the plan leaves running or timeout_s passes; returns
// the plan state into buf ("" on timeout).
void swarm_wait_plan(swarm_t *s, int64_t plan, int timeout_s, char *buf,
                     size_t len);
// Stops every process (SIGTERM, then SIGKILL after a grace).
void swarm_stop(swarm_t *s);

// A TCP port on 127.0.0.1 that nobody listened on when asked.
int swarm_free_port(void);
// Like swarm_arch, with another key directory (NULL: s->keys) and --role
// (NULL: the architect's default, operator).
int swarm_arch_as(swarm_t *s, const char *keys, const char *role, char **out,
                  char **err, ...);
// Polls status until task is in state want or timeout_s passes.  Returns
// true when it got there.
bool swarm_wait_task(swarm_t *s, int64_t plan, const char *task,
                     const char *want, int timeout_s);

// Added for the fault tests.
// `status --json` without a plan (the overview: plans and drones), parsed;
// NULL on failure.  Caller json_destroy()s.
jnode_t *swarm_overview(swarm_t *s);
// Like swarm_drone, with the drone started under a wrapper: wrap is a
// NULL-terminated argv prefix whose first item is a path, e.g.
// {"/usr/sbin/ip", "netns", "exec", "NS", NULL}.  The wrapper must exec the
// drone (so the pid is the drone's).
int swarm_drone_wrapped(swarm_t *s, const char *const *wrap, int slots,
                        const char *tags, ...);
// Like swarm_broker, under a wrapper as for swarm_drone_wrapped (e.g. in a
// network namespace: s->endpoint must then be an address there).
int swarm_broker_wrapped(swarm_t *s, const char *const *wrap, ...);
// Lines in a file (0 when it does not exist).
int swarm_file_lines(const char *path);
// Polls until the file at path has at least n lines; true if it got there.
bool swarm_wait_lines(const char *path, int n, int timeout_ms);
// Whether one line of the file at path contains a and also b (b may be
// NULL).
bool swarm_log_has(const char *path, const char *a, const char *b);
// Polls swarm_log_has for up to timeout_ms.
bool swarm_wait_log(const char *path, const char *a, const char *b,
                    int timeout_ms);
// Line k (0-based) of a file of "PID started by TOKEN" lines, as the fault
// tests' tasks write them.  False when there is no such line.
bool swarm_run_line(const char *path, int k, long *pid,
                    unsigned long long *token);
// The overview's drone offering tag: its instance (into instance, if not
// NULL) and lease count (into *leases, if not NULL).  False if none is
// listed.
bool swarm_drone_by_tag(swarm_t *s, const char *tag, char *instance,
                        size_t len, int *leases);
// Polls the overview until the drone offering tag is listed (want) or not
// (!want), with want_leases leases when want_leases >= 0.
bool swarm_wait_drone(swarm_t *s, const char *tag, bool want,
                      int want_leases, int timeout_ms);
// The same two for the drone whose key name is name.
bool swarm_drone_by_name(swarm_t *s, const char *name, char *instance,
                         size_t len, int *leases);
bool swarm_wait_named(swarm_t *s, const char *name, bool want,
                      int want_leases, int timeout_ms);
// swarm_init(s, 100, 2000), a broker with no extra arguments, and one
// drone tagged "solo" with slots slots running model "tiny" at model_url;
// waits until the drone is connected.  False when something did not start.
bool swarm_with_model(swarm_t *s, int slots, const char *model_url);
// Polls status until some task of plan has a waiting_reason containing
// want, or timeout_ms passes.  True when one did.
bool swarm_wait_reason(swarm_t *s, int64_t plan, const char *want,
                       int timeout_ms);

#endif
