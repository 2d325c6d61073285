// proto: Waggle's messages as plain structs, and their msgpack codec.
//
// This is the only module that touches msgpack (codec.c decodes,
// codec_encode.c encodes; prewalk.c bounds untrusted bytes first).
// PROTOCOL.md is the normative spec; this header mirrors it field for field.  Every message
// is one msgpack map {"v": 1, "cmd": "NAME", "req": uint, ...fields}.
//
// Ownership: a proto_msg_t owns every string, array and buffer it points at;
// proto_msg_destroy() frees them all.  proto_decode() never trusts its input:
// every count and length is checked against the bytes left before anything
// is allocated, depth and object totals are capped, and every failure is a
// proto_error_t value, never a crash or an assert.
#ifndef WAGGLE_PROTO_H
#define WAGGLE_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_VERSION 1

// Liveness (PROTOCOL.md 7.5): a peer heard from for this many heartbeat
// intervals is gone — a drone reconnects, the broker ends a drone's
// leases — and so lease_ms must be at least this many heartbeats.
#define PROTO_LIVENESS_BEATS 3

// Schema limits a peer must respect before it sends (PROTOCOL.md HELLO):
// a drone checks its --tags against them at start.
#define PROTO_MAX_TAGS 64     // capability tags one drone offers
#define PROTO_MAX_TAG_LEN 64  // bytes of one tag (at least 1)

enum {
    PROTO_R_DRONE = 1 << 0,
    PROTO_R_SUBMITTER = 1 << 1,
    PROTO_R_OPERATOR = 1 << 2,
    PROTO_R_BROKER = 1 << 3,
};

typedef enum {
#define X(id, name, roles) PROTO_MSG_##id,
#include "proto/messages.def"
#undef X
    PROTO_MSG__COUNT
} proto_cmd_t;

// ERROR codes on the wire are these names as strings.
typedef enum {
    PROTO_E_NONE = 0,
    PROTO_E_MALFORMED,       // not msgpack, not a map, bad field type/size
    PROTO_E_BAD_VERSION,     // "v" is not PROTO_VERSION
    PROTO_E_UNKNOWN_COMMAND, // "cmd" names no message
    PROTO_E_TOO_LARGE,       // over a configured limit
    PROTO_E_FORBIDDEN,       // the sender's role may not send this
    PROTO_E_HELLO_REQUIRED,  // a drone message before HELLO on this session
    PROTO_E_NOT_FOUND,       // no such plan / task / attempt
    PROTO_E_CONFLICT,        // state does not allow it (retry a succeeded task)
    PROTO_E_INVALID,         // workplan refused; details hold path: message
    PROTO_E_UNSUPPORTED,     // a feature this broker cannot do yet
    PROTO_E_INTERNAL,        // ledger failure; nothing was recorded; retry
    PROTO_E__COUNT
} proto_status_t;

// Task states (DESIGN.md), wire names are the lowercase names.
typedef enum {
    PROTO_TASK_WAITING = 0,
    PROTO_TASK_READY,
    PROTO_TASK_LEASED,
    PROTO_TASK_AWAITING_APPROVAL,
    PROTO_TASK_SUCCEEDED,
    PROTO_TASK_DEAD,
    PROTO_TASK_REJECTED,
    PROTO_TASK_BLOCKED,
    PROTO_TASK_CANCELLED,
    PROTO_TASK__COUNT
} proto_task_state_t;

// RESULT outcomes.
typedef enum {
    PROTO_OUTCOME_SUCCEEDED = 0, // exit 0
    PROTO_OUTCOME_FAILED,        // non-zero exit, signal, timeout, bad input
    PROTO_OUTCOME_RELEASED,      // handed back unrun or killed: no attempt used
    PROTO_OUTCOME__COUNT
} proto_outcome_t;

// RESULT_ACK statuses.
typedef enum {
    PROTO_ACK_ACCEPTED = 0,
    PROTO_ACK_DUPLICATE,
    PROTO_ACK_STALE,
    PROTO_ACK_ERROR,
    PROTO_ACK__COUNT
} proto_ack_t;

typedef struct {
    uint8_t *data;  // owned; may be NULL when len == 0
    size_t len;
} proto_bytes_t;

typedef struct {
    char **items;   // owned strings
    size_t count;
} proto_strv_t;

typedef struct {
    int64_t plan;     // plan id
    char *task;       // task id
    uint64_t token;   // fencing token
    bool finished;    // true: a RESULT for it is in the drone's outbox
} proto_lease_t;

typedef struct {
    char *id;             // the needed task's id
    proto_bytes_t data;   // its accepted output (stdout)
    bool truncated;       // the producer's stdout was cut at the cap
} proto_input_t;

typedef struct {
    char *key, *value;
} proto_kv_t;

// --- drone <-> broker ---------------------------------------------------
typedef struct {
    char *instance;         // random per drone process, 1..64 chars
    char *host;             // hostname, informational
    char *version;          // software version, informational
    uint32_t slots;         // 0..1024
    proto_strv_t tags;      // <= 64 tags, each 1..64 chars
    bool draining;          // take no new work
    proto_lease_t *leases;  // leases this instance holds
    size_t n_leases;
    char *secret;           // NULL, or the session secret WELCOME gave it
} proto_hello_t;

typedef struct {
    uint32_t heartbeat_ms;
    uint32_t lease_ms;
    uint64_t max_output_bytes;  // cap on RESULT stdout the broker stores
    char *broker_id;            // changes when the ledger is new
    char *secret;               // NULL, or a new session secret (hex) for
                                // the instance: present it in later HELLOs
} proto_welcome_t;

typedef struct {
    uint64_t *tokens;   // drone -> broker: leases held (running or finished)
    size_t n_tokens;    // broker -> drone: always 0
} proto_heartbeat_t;

// A task's resource limits (TASK "limits"); 0: not given (the drone's
// own cap applies).
typedef struct {
    uint32_t as_mb;           // address space, MiB
    uint32_t nofile;          // open files
    uint32_t nproc;           // processes of the task's user (per uid)
    uint32_t cpu_s;           // CPU seconds
} proto_task_limits_t;

// TASK "kind": what the drone does with it.
typedef enum {
    PROTO_KIND_RUN = 0,       // run argv
    PROTO_KIND_PROMPT,        // call the drone's model with prompt
} proto_task_kind_t;

// TASK "max_tokens" bound: the workplan's (WORKPLAN_MAX_TOKENS).
#define PROTO_MAX_TOKENS 10000000

typedef struct {
    int64_t plan;
    char *plan_name;
    char *task;
    uint64_t token;
    uint32_t attempt;         // 1-based attempt number
    proto_task_kind_t kind;
    proto_strv_t argv;        // run: argv, templates not yet expanded
    char *prompt;             // prompt: the text, templates not expanded
    char *system;             // prompt: NULL or the system message
    char *model;              // prompt: NULL (the drone's model) or a name
    uint32_t max_tokens;      // prompt: 0: the endpoint's default
    bool has_temperature;     // prompt: temperature given
    uint32_t temperature_milli;  // prompt: the temperature × 1000, 0..2000
                                 // (the wire has no floats)
    proto_kv_t *env;          // extra environment
    size_t n_env;
    char *cwd;                // NULL: the drone's work directory
    uint32_t timeout_s;       // 0: none
    proto_input_t *inputs;    // outputs of the tasks it needs
    size_t n_inputs;
    proto_task_limits_t limits;  // all 0: none given
} proto_task_t;

typedef struct {
    int64_t plan;
    char *task;
    uint64_t token;
    char *reason;            // "cancelled", "lease lost", ...
} proto_stop_t;

typedef struct {
    int64_t plan;
    char *task;
    uint64_t token;
    proto_outcome_t outcome;
    int32_t exit_code;       // -1 when it did not exit normally
    int32_t signal;          // 0 when not killed by a signal
    bool timed_out;
    char *error;             // NULL or a sentence (exec failed, bad input)
    proto_bytes_t out;       // stdout (tail when truncated)
    bool out_truncated;
    proto_bytes_t err;       // stderr tail
    bool err_truncated;
    int64_t started_ms;      // wall clock
    int64_t duration_ms;
    int64_t prompt_tokens;   // prompt tasks: tokens the model counted;
    int64_t completion_tokens;  // -1: not reported (run tasks)
} proto_result_t;

typedef struct {
    int64_t plan;
    char *task;
    uint64_t token;
    proto_ack_t status;
    char *message;           // NULL or why
} proto_result_ack_t;

typedef struct {
    uint32_t slots;
    bool draining;
} proto_update_t;

// --- console <-> broker -------------------------------------------------
typedef struct {
    char *role;              // the caller's role as the broker sees it
    char *name;              // the caller's key name
    char *version;           // broker version
} proto_pong_t;

typedef struct {
    char *workplan;          // JSON text
    char *idempotency_key;   // NULL or 1..128 chars
} proto_submit_t;

typedef struct {
    int64_t plan;
    bool created;            // false: an idempotent replay
    proto_strv_t warnings;
} proto_submit_ok_t;

// A STATUS_OK lists a plan's tasks up to about this many msgpack objects
// (each task_info takes 23 plus one per need), so that a reply stays well
// under the decoder's 1,000,000 objects; the rest comes in further pages.
#define PROTO_STATUS_TASK_OBJECTS 500000
// msgpack objects one task_info takes, besides one per need.
#define PROTO_TASK_INFO_OBJECTS 35

typedef struct {
    int64_t plan;            // 0: overview of all plans and drones
    uint32_t offset;         // first task listed, in workplan order
    bool summary;            // the plan alone, no tasks
    bool workplan;           // also the plan's workplan (STATUS_OK.workplan)
} proto_status_t_req;

typedef struct {
    int64_t id;
    char *name;
    char *state;             // running/succeeded/failed/cancelled
    char *submitted_by;
    int64_t created_ms;
    int64_t finished_ms;     // 0 while running
    uint32_t counts[PROTO_TASK__COUNT];  // tasks per state
    int64_t prompt_tokens;   // summed over every attempt of its tasks
    int64_t completion_tokens;
} proto_plan_info_t;

typedef struct {
    char *id;
    proto_task_state_t state;
    char *kind;              // run/prompt/gate
    uint32_t attempts;       // attempts that used the budget
    char *drone;             // holder (leased) or last runner; NULL if none
    bool has_exit_code;
    int32_t exit_code;       // of the latest finished attempt
    char *last_error;        // NULL or a sentence
    char *waiting_reason;    // NULL or why a ready/waiting task waits
    proto_strv_t needs;
    int64_t prompt_tokens;   // summed over its attempts (prompt tasks)
    int64_t completion_tokens;
    // Times (wall clock, 0: none) and the attempt they belong to: the
    // latest attempt's number among all of the task's attempts (what
    // OUTPUT's attempt takes; retry does not reset it), and the size of the
    // current attempt budget (retries + 1; 0: a gate, or not known: a task
    // stored before ledger schema 4).
    int64_t ready_ms;        // when it last became ready / awaited approval
    uint32_t attempt;        // 0: never leased
    uint32_t attempt_budget;
    int64_t started_ms;      // the latest attempt's start
    int64_t ended_ms;        // its end; 0 while it runs
    int64_t duration_ms;     // ended - started, or (running) now - started
} proto_task_info_t;

typedef struct {
    int64_t plan;            // plan id
    char *task;              // task id
    int64_t lease_left_ms;   // until the lease lapses unless renewed, as of
                             // the reply (0: lapsing now); -1: not given
} proto_drone_task_t;

typedef struct {
    char *instance;
    char *name;              // key name
    char *host;
    uint32_t slots;
    uint32_t leases;
    bool draining;
    proto_strv_t tags;
    int64_t last_seen_ms;    // wall clock
    bool quarantined;        // no pushes: its leases kept getting lost
    proto_drone_task_t *tasks;  // what its leases run (optional field)
    size_t n_tasks;
} proto_drone_info_t;

typedef struct {
    proto_plan_info_t *plans;
    size_t n_plans;
    proto_task_info_t *tasks;   // only when a plan was asked for
    size_t n_tasks;
    proto_drone_info_t *drones; // only for the overview
    size_t n_drones;
    bool more;                  // tasks after these: ask from offset + n_tasks
    char *workplan;             // NULL, or the plan's workplan as stored
                                // (canonical JSON), when asked for
} proto_status_ok_t;

typedef struct {
    int64_t plan;
    char *task;              // NULL: cancel the whole plan
} proto_cancel_t;

typedef struct {
    int64_t plan;
    char *task;
} proto_retry_t;

typedef struct {
    int64_t plan;
    char *amendment;         // JSON text: {"add", "cancel", "replace"}
} proto_amend_t;

typedef struct {
    int64_t plan;
    proto_strv_t added;      // ids, as the amendment listed them
    proto_strv_t cancelled;
    proto_strv_t replaced;
    proto_strv_t warnings;   // e.g. a new task blocked at once by a dead need
} proto_amend_ok_t;

// APPROVE and REJECT: hash is the hex sha256 of the gate's text exactly as
// the person was shown it (OUTPUT of the gate); the broker refuses it when
// the gate's text has changed since.
typedef struct {
    int64_t plan;
    char *task;
    char *note;              // NULL for an approve without a note
    char *hash;
} proto_verdict_t;

// The largest token budget (WORKPLAN_MAX_BUDGET, which the broker checks
// is the same).
#define PROTO_BUDGET_MAX 1000000000000LL
// The most prompt (or completion) tokens one attempt may report in its
// RESULT: no model call comes near it, and the broker's sums over a plan's
// attempts stay far from overflowing.  A drone reports more as this many.
#define PROTO_TOKENS_MAX PROTO_BUDGET_MAX

// BUDGET: sets a running plan's token budget (-1 removes it; 0: nothing
// more may be spent).
typedef struct {
    int64_t plan;
    int64_t tokens;          // -1..PROTO_BUDGET_MAX
} proto_budget_t;

// BUDGET_OK: what the budget was and is (-1: none), and what the plan has
// used and what its prompt tasks in flight reserve, so a caller can say
// when the new budget is already spent.
typedef struct {
    int64_t plan;
    int64_t old_tokens;
    int64_t new_tokens;
    int64_t used;
    int64_t reserved;
} proto_budget_ok_t;

typedef struct {
    int64_t plan;
    char *task;
    uint32_t attempt;        // 0: the accepted attempt, else the latest
    bool want_stderr;
    bool live;               // a task not finished: its running tail
} proto_output_t;

typedef struct {
    int64_t plan;
    char *task;
    uint32_t attempt;
    proto_bytes_t data;
    bool truncated;
    // OUTPUT with live:
    char *state;             // the task's state (NULL without live)
    bool running;            // not finished: data is the running attempt's
                             // latest tail (empty: nothing yet, or not
                             // leased); ask again
    uint64_t token;          // running: the attempt's lease token
    uint64_t total;          // running: bytes it wrote so far; data is
                             // the last data.len of them
} proto_output_ok_t;

// TAIL: a drone's running attempt wrote total bytes to stdout so far; data
// is the last of them (at most PROTO_TAIL_MAX).  Sent at most every
// PROTO_TAIL_MS per attempt, only when total moved; never queued.
#define PROTO_TAIL_MAX 4096
#define PROTO_TAIL_MS 500
typedef struct {
    uint64_t token;
    uint64_t total;
    proto_bytes_t data;
} proto_tail_t;

typedef struct {
    int64_t plan;
    char *task;
} proto_explain_t;

// EXPLAIN_OK: why the task is not running (PROTOCOL.md lists the codes),
// in one sentence and as details; fields a code does not use are 0/NULL.
typedef struct {
    int64_t plan;
    char *task;
    char *state;             // the task's state
    char *code;              // e.g. "waiting_on_needs", "backoff"
    char *reason;            // one plain sentence
    proto_strv_t needs;      // waiting_on_needs: unmet needs (some)
    proto_strv_t need_states;  // their states, in the same order
    uint32_t more_needs;     // unmet needs not named
    proto_strv_t tags;       // no_drone_offers_tag: tags nobody offers
    char *drone;             // leased: the holder's key name
    char *model;             // model_limit: the model
    char *blocked_by;        // blocked: the task that failed
    char *blocked_state;     //   and how it ended
    int64_t since_ms;        // awaiting approval / running / ready since
    int64_t until_ms;        // backoff end / gate deadline / lease end
    int64_t last_seen_ms;    // leased: the holder's last message
    int64_t used;            // budget_spent: tokens used
    int64_t budget;          //   of this budget
    uint32_t limit;          // model_limit: its limit
    uint32_t in_flight;      //   and the calls in flight
    uint32_t attempt;        // the latest attempt's number
} proto_explain_ok_t;

// An EVENTS page holds at most this many events.
#define PROTO_EVENTS_PAGE 500

typedef struct {
    int64_t since;           // events with a greater seq; -1: none, just
                             // the last seq as next (follow from now)
    int64_t plan;            // 0: every plan
    uint32_t wait_ms;        // nothing yet: wait up to this long for some
} proto_subscribe_t;

// The longest a SUBSCRIBE may wait for events.
#define PROTO_EVENTS_MAX_WAIT_MS 60000

typedef struct {
    int64_t seq;
    int64_t at_ms;           // wall clock
    int64_t plan;            // 0: not about a plan
    char *task;              // NULL or the task id
    char *actor;
    char *kind;
    char *from;              // NULL or the state before
    char *to;                // NULL or the state after
    char *detail;            // NULL or free text
} proto_event_t;

typedef struct {
    proto_event_t *events;
    size_t n_events;
    int64_t next;            // ask again with since = next
    bool more;               // next page is already there
    bool gap;                // events were dropped: resume from next
} proto_events_t;

typedef struct {
    char *message;           // NULL or a sentence
} proto_ok_t;

typedef struct {
    proto_status_t code;
    char *message;           // what and why, one sentence
    proto_strv_t details;    // e.g. workplan errors "tasks[2].needs[0]: ..."
} proto_error_body_t;

typedef struct {
    proto_cmd_t cmd;
    uint64_t req;            // echoed by the reply; 0 for unsolicited
    union {
        proto_hello_t hello;
        proto_welcome_t welcome;
        proto_heartbeat_t heartbeat;
        proto_task_t task;
        proto_stop_t stop;
        proto_result_t result;
        proto_result_ack_t result_ack;
        proto_update_t update;
        proto_pong_t pong;
        proto_submit_t submit;
        proto_submit_ok_t submit_ok;
        proto_status_t_req status;
        proto_status_ok_t status_ok;
        proto_cancel_t cancel;
        proto_retry_t retry;
        proto_amend_t amend;
        proto_amend_ok_t amend_ok;
        proto_verdict_t verdict;   // APPROVE, REJECT
        proto_output_t output;
        proto_output_ok_t output_ok;
        proto_tail_t tail;
        proto_explain_t explain;
        proto_explain_ok_t explain_ok;
        proto_subscribe_t subscribe;
        proto_events_t events;
        proto_budget_t budget;
        proto_budget_ok_t budget_ok;
        proto_ok_t ok;
        proto_error_body_t error;
    } u;                     // BYE and PING have no fields
} proto_msg_t;

// Decoder limits (all bytes unless said).
typedef struct {
    size_t max_frame;        // whole frame; default 64 MiB
    size_t max_depth;        // nesting; default 8
    size_t max_objects;      // total msgpack objects; default 1,000,000
    size_t max_string;       // any one string; default 64 MiB
} proto_limits_t;

// A decode failure: the status, the req id when it could be read (so the
// ERROR reply can echo it), and a sentence naming the field:
// "field 'token': expected an unsigned integer".  unanswered: PROTOCOL.md
// wants no ERROR for it, only a log line (a message of more than one frame,
// section 2; a HEARTBEAT, section 6).
typedef struct {
    proto_status_t code;
    uint64_t req;
    char message[256];
    bool unanswered;
} proto_error_t;

proto_msg_t *proto_msg_new(proto_cmd_t cmd);
void proto_msg_destroy(proto_msg_t **self_p);

void proto_limits_default(proto_limits_t *lim);
// Encodes msg into a newly allocated buffer the caller frees.
void proto_encode(const proto_msg_t *msg, uint8_t **buf, size_t *len);
// Decodes one complete frame.  Returns 0 and a new message in *out, or -1
// with *err filled and *out NULL.
int proto_decode(const uint8_t *buf, size_t len, const proto_limits_t *lim,
                 proto_msg_t **out, proto_error_t *err);

const char *proto_cmd_name(proto_cmd_t cmd);       // "HELLO"
int proto_cmd_parse(const char *name, proto_cmd_t *out);
unsigned proto_cmd_senders(proto_cmd_t cmd);         // PROTO_R_* bits
const char *proto_status_name(proto_status_t code);  // "HELLO_REQUIRED"
int proto_status_parse(const char *name, proto_status_t *out);
const char *proto_task_state_name(proto_task_state_t s);  // "leased"
int proto_task_state_parse(const char *name, proto_task_state_t *out);
// True for the states a task never leaves without a retry (DESIGN.md:
// succeeded, dead, rejected, blocked, cancelled).
bool proto_task_state_is_terminal(proto_task_state_t s);
const char *proto_outcome_name(proto_outcome_t o);   // "succeeded"
const char *proto_ack_name(proto_ack_t a);           // "accepted"

// Helpers for building messages (strings are copied).
void proto_strv_push(proto_strv_t *v, const char *s);
// Frees every string and the array; leaves v empty and reusable.
void proto_strv_release(proto_strv_t *v);
// Frees an event's strings and zeroes it.
void proto_event_release(proto_event_t *e);
// Frees what an EXPLAIN_OK body owns and zeroes it.
void proto_explain_ok_release(proto_explain_ok_t *x);
void proto_bytes_set(proto_bytes_t *b, const void *data, size_t len);
// Fills err (code, formatted message; req untouched) and returns -1, so a
// decoder can `return proto_error_set(err, ...)`.
int proto_error_set(proto_error_t *err, proto_status_t code, const char *fmt,
                    ...) __attribute__((format(printf, 3, 4)));
// Builds an ERROR reply for req with a formatted message.
proto_msg_t *proto_error_new(uint64_t req, proto_status_t code,
                             const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
