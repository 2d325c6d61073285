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
//   amend.c   amend: an amendment file sent to a running plan, and what
//             the broker made of it
//   replan.c  replan: the model writes an amendment from the plan's state
//             (plan.c's repair loop), shown, confirmed, applied
//   events.c  events, log: the event log in SUBSCRIBE pages
//   budget.c  budget: an operator sets a running plan's token budget
//   explain.c explain: why a task is not running (EXPLAIN)
//   follow.c  output --follow: a running task's stdout tail, polled
//   watch.c   watch: the live dashboard (dash.c its state and lines,
//             console.c the ncurses drawing)
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
#include "common/amend.h"
#include "common/cfg.h"
#include "common/keys.h"
#include "common/model.h"
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
int cmd_amend(arch_t *a, int argc, char **argv);       // amend.c
int cmd_replan(arch_t *a, int argc, char **argv);      // replan.c
int cmd_budget(arch_t *a, int argc, char **argv);      // budget.c
int cmd_watch(arch_t *a, int argc, char **argv);       // watch.c
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
// The whole of file path ("-": stdin), NUL-terminated after *len bytes
// (caller frees); NULL after reporting why it cannot be read.
char *arch_read_file(const arch_t *a, const char *path, size_t *len);
// Sends amendment *text (taken) to plan and prints what the broker did
// (with json: one JSON object); warnings go to stderr.  An ARCH_EXIT_*.
int arch_amend_send(arch_t *a, int64_t plan, char **text, bool json);
// A positive plan id from s; -1 after reporting a usage error.
int arch_parse_plan(const arch_t *a, const char *s, int64_t *plan);

// Loads the role's keys and connects (a no-op when connected).  Prints why
// and returns ARCH_EXIT_CONNECT (or _USAGE for bad keys) on failure, else 0.
int arch_connect(arch_t *a);
// One request/reply.  Prints errors (ERROR replies included) and returns
// an exit code; on success *reply holds the reply (caller destroys).
int arch_call(arch_t *a, proto_msg_t **req, proto_msg_t **reply);
// arch_call, waiting up to timeout_ms for the reply (a request whose answer
// takes the broker long: a big submit).
int arch_call_ms(arch_t *a, proto_msg_t **req, proto_msg_t **reply,
                 int64_t timeout_ms);
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
// What an amendment does (replan): the added and replaced tasks in the
// amended whole's dependency order, marked + and ~, then the cancelled.
void plan_show_amendment(FILE *out, const amend_t *a);

// --- plan.c: what plan and replan share --------------------------------------
// Their options (one table; replan reads the same), the model settings,
// the conversation with its bounded repair loop, and the confirmation.

#define PLAN_MAX_REPAIRS 10

typedef struct {
    int64_t repairs;
    bool yes;
    char *out;
    bool json;
    int64_t max_tokens;
    char *model_api;
    char *model_url;
    char *model;
    char *model_key_file;
    int64_t model_timeout_s;
} plan_opts_t;

extern const cfg_option_t plan_opts[];
// The rules for one task of a workplan, as the model is taught them.
extern const char plan_task_rules[];

// The conversation so far; texts are owned.
typedef struct {
    model_msg_t msgs[2 + 2 * (PLAN_MAX_REPAIRS + 1)];
    char *texts[2 + 2 * (PLAN_MAX_REPAIRS + 1)];
    size_t n;
    int64_t prompt_tokens;      // summed over every call
    int64_t completion_tokens;
    int calls;
    bool json_mode;             // cleared once the server refused it
    const char *what;           // "workplan", "amendment": for messages
} plan_chat_t;

// Appends a message (takes text).
void plan_chat_add(plan_chat_t *c, model_role_t role, char *text);
void plan_chat_release(plan_chat_t *c);

// Judges a reply's text: 0 with *json (the valid JSON, caller frees), or
// -1 with the errors ("path: message" lines) pushed to errs.
typedef int (*plan_judge_fn)(void *arg, const char *text, char **json,
                             proto_strv_t *errs);
// The repair loop: asks, judges, and sends the errors back at most
// o->repairs times.  Returns 0 with *json, or an exit code after reporting
// why (the last reply's errors when none was valid).
int plan_converse(const arch_t *a, const model_config_t *mc,
                  const plan_opts_t *o, plan_chat_t *c, plan_judge_fn judge,
                  void *arg, char **json);
// Validation errors as "path: message" lines ("(top level)" for the root)
// pushed to errs; releases we.
void plan_error_lines(wp_errors_t *we, proto_strv_t *errs);
// The first JSON object in text (prose or a code fence may surround it)
// that has one of keys (NULL-terminated) as a member, else the first JSON
// object at all; NULL when there is none.  Caller frees.
char *plan_extract_json(const char *text, const char *const *keys);
// Model settings from o over the global ones; *key the API key (caller
// wipes and frees).  0, or an exit code after reporting.
int plan_model_config(const arch_t *a, const plan_opts_t *o,
                      model_config_t *mc, char **key);
// The connected drones' tags, each once, from the broker's overview (a
// connected a).  0, or -1 with err.
int plan_drone_tags(arch_t *a, proto_strv_t *tags, size_t *n_drones,
                    char *err, size_t errlen);
// One sentence for the model on what the drones offer (tags NULL:
// unknown).  Caller frees.
char *plan_drones_text(const proto_strv_t *tags, size_t n_drones);
// Whether the command can confirm: --yes, --out, or a terminal; else says
// so ("CMD: no terminal to confirm on; pass --yes to VERB ... the WHAT")
// and returns ARCH_EXIT_USAGE.
int plan_can_confirm(const arch_t *a, const plan_opts_t *o, const char *cmd,
                     const char *verb, const char *what);
// Wipes and frees a model API key; NULLs *key.
void plan_key_free(char **key);
// y/N on the terminal after question.
bool plan_confirm(const char *question);
// Writes json to path; what ("workplan", "amendment") names it on stderr.
int plan_save(const arch_t *a, const char *path, const char *json,
              const char *what);

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
