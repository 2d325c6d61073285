// arch.h: the architect's commands and what they share.
//
//   main.c    global options and dispatch to a command
//   cmd.c     the commands: ping, submit, status, wait, cancel, retry,
//             output
//   plan.c    plan: a goal -> a workplan through the model, repaired,
//             confirmed, submitted
//   plan_show.c  the workplan as a tree, for a person to check
//   gate.c    approve, reject: a person's answer, bound to the sha256 of
//             what the gate showed
//   events.c  events, log: the event log in SUBSCRIBE pages
//   explain.c explain: why a task is not running (EXPLAIN)
//   follow.c  output --follow: a running task's stdout tail, polled
//   keygen.c  keygen: key sets, one key per host, list, revoke
//   render.c  status as text tables or JSON
//   link.c    the connection to the broker
//
// Exit codes scripts can trust (ARCH_EXIT_*), and with --json every failure
// is also one JSON object on stdout: {"error": {"code", "message"[,
// "details"]}} (README "Exit status and errors").
#ifndef WAGGLE_ARCH_H
#define WAGGLE_ARCH_H

#include "architect/link.h"
#include "common/cfg.h"
#include "common/keys.h"
#include "common/workplan.h"
#include "proto/proto.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum {
    ARCH_EXIT_OK = 0,          // done; for wait: the plan succeeded
    ARCH_EXIT_FAILED = 1,      // refused or failed; wait: plan failed/cancelled
    ARCH_EXIT_TIMEOUT = 2,     // wait --timeout ran out
    ARCH_EXIT_CONNECT = 3,     // cannot connect or authenticate
    ARCH_EXIT_NOT_FOUND = 4,   // no such plan (or task, or attempt)
    ARCH_EXIT_USAGE = 64,      // bad command line (CFG_EXIT_USAGE)
};

typedef struct {
    char *broker;              // endpoint
    char *keys;                // key directory
    char *role;                // operator | submitter
    int64_t connect_timeout_ms;
    bool json;                 // --json output
    char *log_format;
    bool verbose;
    char *model_api;           // openai | anthropic (plan)
    char *model_url;           // model endpoint base
    char *model;               // model name
    char *model_key;           // secret: never printed or logged
    char *model_key_file;      // wins over model_key when set
    int64_t model_timeout_s;   // per model request
} arch_config_t;

typedef struct {
    const arch_config_t *cfg;
    keys_client_t keys;
    link_t *link;              // NULL until arch_connect
    bool json;                 // failures also as JSON on stdout
} arch_t;

typedef int (*arch_cmd_fn)(arch_t *a, int argc, char **argv);

// Each command gets argv[0] = its name and its own arguments; it prints
// its own usage on --help and returns an ARCH_EXIT_* code.
int cmd_keygen(arch_t *a, int argc, char **argv);
int cmd_ping(arch_t *a, int argc, char **argv);
int cmd_submit(arch_t *a, int argc, char **argv);
int cmd_status(arch_t *a, int argc, char **argv);
int cmd_wait(arch_t *a, int argc, char **argv);
int cmd_cancel(arch_t *a, int argc, char **argv);
int cmd_retry(arch_t *a, int argc, char **argv);
int cmd_output(arch_t *a, int argc, char **argv);
int cmd_plan(arch_t *a, int argc, char **argv);        // plan.c
int cmd_events(arch_t *a, int argc, char **argv);      // events.c
int cmd_log(arch_t *a, int argc, char **argv);         // events.c
int cmd_explain(arch_t *a, int argc, char **argv);     // explain.c
// output --follow (follow.c): the running task's output as it comes, then
// its final output; returns 0 when it succeeded, 1 when it ended otherwise.
int follow_output(arch_t *a, int64_t plan, const char *task);
int cmd_approve(arch_t *a, int argc, char **argv);     // gate.c
int cmd_reject(arch_t *a, int argc, char **argv);      // gate.c
// Hex sha256 of what a gate showed (len bytes); caller frees.
char *gate_hash_hex(const uint8_t *data, size_t len);

// A command's positional arguments (at most 8), borrowed from argv.
typedef struct {
    char *items[8];
    int n;
} arch_pos_t;

// Parses a subcommand's options, which may come before, between or after
// its positional arguments (wait PLAN --timeout 60), into conf;
// positionals land in pos.  Returns -1 after reporting an error, 0 to go
// on, 1 when --help was printed (usage: the text after the program name).
int arch_opts(const arch_t *a, const cfg_option_t *opts, void *conf,
              int argc, char **argv, arch_pos_t *pos, const char *usage);
// Exactly min..max positional arguments; else says so (with the usage
// line) and returns false.
bool arch_args(const arch_t *a, const arch_pos_t *pos, int min, int max,
               const char *usage);
// A positive plan id from s; -1 after reporting a usage error.
int arch_parse_plan(const arch_t *a, const char *s, int64_t *plan);

// Loads the role's keys and connects.  Prints why and returns
// ARCH_EXIT_CONNECT (or _USAGE for bad keys) on failure, else 0.
int arch_connect(arch_t *a);
// One request/reply.  Prints errors (ERROR replies included) and returns
// an exit code; on success *reply holds the reply (caller destroys).
int arch_call(arch_t *a, proto_msg_t **req, proto_msg_t **reply);
// Reports a failure: "waggle-architect: MESSAGE" and the details, one a
// line, on stderr; with a->json also the JSON error object on stdout, with
// code (e.g. "usage", "not_found").  Returns status, for the caller to
// return.
int arch_report(const arch_t *a, int status, const char *code,
                const char *message, const proto_strv_t *details);
// arch_report with a formatted message and no details.
int arch_fail(const arch_t *a, int status, const char *code, const char *fmt,
              ...) __attribute__((format(printf, 4, 5)));
// Prints the JSON error object alone on stdout when a->json (the caller
// wrote the text for people already).
void arch_json_error(const arch_t *a, const char *code, const char *message,
                     const proto_strv_t *details);

// plan_show.c: the workplan as a tree in dependency order (plan).
void plan_show_tree(FILE *out, const workplan_t *wp);

// render.c
void render_overview(FILE *out, const proto_status_ok_t *st, int64_t now_ms);
void render_plan(FILE *out, const proto_status_ok_t *st);
char *render_json(const proto_status_ok_t *st, bool plan);  // caller frees
// One line of progress: "plan 3 'x': running — 4/7 succeeded, 2 leased".
char *render_progress(const proto_plan_info_t *p);
// {"error": {"code", "message", "details"}} (details only when there are
// some), pretty-printed.  Caller frees.
char *render_error_json(const char *code, const char *message,
                        const proto_strv_t *details);

#endif
