// workplan: the workplan model (DESIGN.md "Workplan") and its strict
// validation from JSON.
//
// workplan_parse() refuses, before anything is stored: malformed JSON,
// unknown fields, bad types, bad ids, duplicate ids, needs that name no task,
// a task needing itself, cycles (named: "a -> b -> a"), not exactly one of
// run/prompt/gate, bad placeholders ({{id.output}} where id is not in needs),
// WAGGLE_INPUT_<ID> name collisions among a task's needs.  Every error
// carries its JSON path ("tasks[2].needs[0]") and a plain sentence.  It is
// pure: no I/O, no logging.
#ifndef WAGGLE_WORKPLAN_H
#define WAGGLE_WORKPLAN_H

#include "common/json.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WORKPLAN_DEFAULT_TIMEOUT_S 3600
#define WORKPLAN_DEFAULT_RETRIES 2
#define WORKPLAN_MAX_TASKS 1000000
#define WORKPLAN_MAX_RETRIES 100
#define WORKPLAN_ID_MAX 64
// What exec(2) takes on Linux by default: one argument or variable with
// its NUL (MAX_ARG_STRLEN), and all of them together (ARG_MAX with an 8 MiB
// stack).  The counts keep a TASK within the decoder's 1,000,000 objects.
#define WORKPLAN_MAX_ARGV 65536
#define WORKPLAN_MAX_ENV 4096
// A prompt task's max_tokens, and the tag its model implies (PROMPT_TAG
// and PROMPT_TAG ":" model): prompt tasks go only to drones offering them.
#define WORKPLAN_MAX_TOKENS 10000000
#define WORKPLAN_MODEL_TAG "model"
// A plan's token budget, and what a prompt task without max_tokens
// reserves against it (the broker's default, documented in the README).
#define WORKPLAN_MAX_BUDGET 1000000000000LL
#define WORKPLAN_DEFAULT_RESERVE 4096
#define WORKPLAN_MAX_ARG_BYTES 131072
#define WORKPLAN_MAX_EXEC_BYTES 2097152

typedef enum {
    WP_KIND_RUN = 0,
    WP_KIND_PROMPT,
    WP_KIND_GATE,
} wp_kind_t;

typedef struct {
    char *key;    // [A-Za-z_][A-Za-z0-9_]*
    char *value;
} wp_env_t;

// Resource limits a task asks for ("limits"); 0: not given.  The drone
// caps each with its own limit: a workplan may lower a drone's limit,
// never raise it.  32 bits: every maximum below fits.
typedef struct {
    int32_t as_mb;          // address space, MiB: 1..WORKPLAN_MAX_AS_MB
    int32_t nofile;         // open files: 1..WORKPLAN_MAX_NOFILE
    int32_t nproc;          // processes of the task user: 1..WORKPLAN_MAX_NPROC
    int32_t cpu_s;          // CPU seconds: 1..WORKPLAN_MAX_CPU_S
} wp_limits_t;

#define WORKPLAN_MAX_AS_MB 4194304      // 4 TiB
#define WORKPLAN_MAX_NOFILE 1048576
#define WORKPLAN_MAX_NPROC 4194304
#define WORKPLAN_MAX_CPU_S 604800       // one week

// One task: 152 bytes (a plan of 1M tasks holds a million of them), so the
// pointers come first, then counts and numbers in 32 bits (every range
// checked at parse fits), then the small fields.
typedef struct {
    char *id;               // [A-Za-z0-9_][A-Za-z0-9_-]{0,63}
    char **needs;           // ids, in the order written
    size_t *need_idx;       // needs resolved to indexes into tasks[]
    char **argv;            // run: argv (n_argv >= 1)
    char *prompt;           // prompt: the prompt text
    char *gate;             // gate: the question
    char *model;            // NULL or model name
    char *system;           // prompt: NULL or the system message
    wp_env_t *env;
    char *cwd;              // NULL or a path
    char **requires;        // tags a drone must offer
    double temperature;     // prompt: 0..2 when given
    uint32_t n_needs;
    uint32_t n_argv;
    uint32_t n_env;
    uint32_t n_requires;
    int32_t max_tokens;     // prompt: 0 (the endpoint's default) or 1..
    int32_t timeout_s;      // resolved with defaults (a gate: its own
                            // only); 0 = none
    int32_t retries;        // resolved with defaults
    int32_t priority;       // resolved with defaults; higher runs first
    wp_limits_t limits;     // resolved with defaults, key by key
    wp_kind_t kind;
    bool has_temperature;   // prompt: temperature given
} wp_task_t;

typedef struct {
    char *name;             // 1..128 chars
    char *goal;             // NULL or text
    bool has_budget;        // "budget" given (budget_tokens may be 0 in a
                            // stored plan: nothing more may be spent)
    int64_t budget_tokens;  // "budget": {"tokens": N}
    wp_task_t *tasks;       // in the order written
    size_t n_tasks;
    // What owns the tasks' strings and arrays (workplan_parse: one pool for
    // the plan, some of it shared between tasks, so treat them as
    // read-only).  NULL in a plan built by hand, whose every string and
    // array is its own allocation (workplan_destroy frees them one by one).
    struct wp_pool *pool;
} workplan_t;

typedef struct {
    char *path;             // JSON path: "", "tasks[3].run[0]", "defaults"
    char *message;          // lowercase sentence, no final period
} wp_error_t;

typedef struct {
    wp_error_t *items;
    size_t count;
} wp_errors_t;

// Parses and validates len bytes of JSON.  Returns 0 and a new workplan in
// *out, or -1 with *out NULL and every error found appended to errs (at
// least one).  Stops collecting after 100 errors.
int workplan_parse(const char *json, size_t len, workplan_t **out,
                   wp_errors_t *errs);
// workplan_parse for a workplan the broker stored and reads back: the
// same checks, except that its budget may be 0 or lower than what a prompt
// task reserves (an operator lowered it with `budget PLAN N`; the task then
// waits instead of the plan failing to load).
int workplan_parse_stored(const char *json, size_t len, workplan_t **out,
                          wp_errors_t *errs);
// workplan_parse (stored false) or workplan_parse_stored (true) that takes
// the text and frees it (NULLing *json_p) as soon as it is parsed, before
// the plan is built: a big plan's text, its parse and the plan need not be
// held at once.
int workplan_parse_take(char **json_p, size_t len, bool stored,
                        workplan_t **out, wp_errors_t *errs);
void workplan_destroy(workplan_t **self_p);
// Canonical JSON of the whole workplan with defaults resolved (stable key
// order, so equal plans give equal text); caller frees.
char *workplan_to_json(const workplan_t *wp);
// The pieces of workplan_to_json's text, for code that writes a plan's
// text with some tasks of its own (an amendment): the head ('{' and every
// member before the tasks, then "tasks":[) and one task's object.  The
// caller writes the commas between tasks and the closing "]}".
void workplan_head_json(json_out_t *o, const workplan_t *wp);
void workplan_task_json(json_out_t *o, const wp_task_t *t);
// Index of the task with this id, or -1.  A search: for many lookups in
// one plan, use a wp_ids_t.
long workplan_find(const workplan_t *wp, const char *id);
// A hash of a workplan's task ids: workplan_find in O(1), for code that
// looks up many ids of a large plan (an amendment naming 50k tasks of a
// 100k-task plan was 10^9 comparisons).  Borrows the ids: wp must outlive
// it, its tasks unchanged.
typedef struct wp_ids wp_ids_t;
wp_ids_t *workplan_ids_new(const workplan_t *wp);
void workplan_ids_destroy(wp_ids_t **self_p);
// Index of the task with this id, or -1.
long workplan_ids_find(const wp_ids_t *self, const char *id);
const char *workplan_kind_name(wp_kind_t kind);   // "run"/"prompt"/"gate"

void wp_errors_release(wp_errors_t *errs);
// "tasks[2].needs[0]: 'x' is not a task in this workplan" lines, one per
// error joined by '\n'; caller frees.
char *wp_errors_format(const wp_errors_t *errs);

// --- templates ---------------------------------------------------------
// {{ID.output}} is replaced by the output of needed task ID, with one
// trailing newline stripped.  "{{{{" is a literal "{{".  Anything else
// inside {{ }} is an error.

typedef struct {
    const char *id;         // a needed task
    const uint8_t *data;    // its output
    size_t len;
    bool truncated;         // cut at the producer's output cap
} wp_value_t;

// Expands tmpl with the given values into a new string (*out, caller
// frees).  Returns 0, or -1 with *err a new sentence (caller frees), e.g.
// "input 'log' was truncated at the output cap", "input 'x' holds a NUL
// byte", "input 'x' is 200000 bytes; at most 131072 may go into argv",
// "{{nope.output}}: 'nope' is not among the task's needs".
// max_value bytes caps one substituted value (0 = no cap).
int workplan_expand(const char *tmpl, const wp_value_t *values, size_t n,
                    size_t max_value, char **out, char **err);
// The environment variable name for a needed id: "WAGGLE_INPUT_" + the id
// in upper case with '-' -> '_'.  Caller frees.
char *workplan_input_var(const char *id);

#endif
