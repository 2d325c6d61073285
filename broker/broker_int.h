// broker_int.h: what broker.c, drones.c and plans.c share inside the
// broker (SQLite's *Int.h convention).  Nothing outside broker/ includes it.
//
//   broker.c  the loop: turns, the outbox, timers, recovery (waiting is
//             loop.c's: sources register with b->loop)
//   drones.c  the drone registry and HELLO/HEARTBEAT/RESULT/UPDATE/BYE,
//             dispatch, and what holds a prompt task back (model limits,
//             requests per minute, token budgets)
//   plans.c   DAG bookkeeping: finishing attempts, moves, plan ends, loading
//   requests.c console requests: SUBMIT/STATUS/CANCEL/RETRY/OUTPUT/PING
//   budget.c   BUDGET: an operator changes a running plan's token budget
//   trust.c    session secrets, credit windows, quarantine
//   keyring.c  the allow lists at run time: SIGHUP reload, per-message
//              check, cutting off revoked sessions
//   liveness.c when a lease or a drone is given up: lease deadlines, and
//              drones whose connection closed
#ifndef WAGGLE_BROKER_INT_H
#define WAGGLE_BROKER_INT_H

#include "broker/broker.h"
#include "broker/ledger.h"
#include "broker/httpd.h"
#include "broker/limits.h"
#include "broker/loop.h"
#include "broker/metrics.h"
#include "broker/rate.h"
#include "broker/router.h"
#include "broker/sched.h"
#include "common/keys.h"
#include "proto/proto.h"
#include "proto/wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// A submit or an amendment of at least this many tasks hands its parse's
// freed heap back to the system when it is done (xalloc_trim): 100k tasks
// leave ~120 MB that glibc would otherwise keep.
#define BROKER_TRIM_TASKS 10000

typedef struct {
    char instance[65];          // the drone's random instance id
    char name[KEYS_NAME_MAX + 1];  // its key name
    unsigned role;              // PROTO_R_* of that key
    uint8_t key[32];            // that key's public key (ZAP)
    char host[256];
    uint32_t slots;
    bool draining;
    proto_strv_t tags;          // owned
    wire_rid_t rid;             // its current session
    bool connected;             // false after a send found it gone
    int fd;                     // its connection's descriptor (liveness.c)
    int64_t closed_ms;          // monotonic: its connection was seen
                                // closed; 0 = open, or spoke since
    int64_t last_seen_ms;       // monotonic, last message from it
    uint32_t window;            // unconfirmed leases it may hold (trust.c)
    uint32_t lost_streak;       // leases lost in a row since a RESULT
    bool quarantined;           // no pushes until quarantine_end_ms
    int64_t quarantine_end_ms;  // monotonic
} drone_t;

typedef struct {
    wire_rid_t rid;             // destination
    proto_msg_t *msg;           // owned until sent
    bool depends;               // becomes an ERROR if the turn's commit fails
    uint64_t push_token;        // a TASK push: released if undeliverable
} out_t;

typedef struct {
    int64_t plan;
    char *why;                  // owned: why it could not be loaded
} unloaded_t;

typedef struct {
    int64_t plan;
    size_t idx;
    int64_t deadline_ms;        // wall; as in sched's not_before
} gate_watch_t;

typedef struct hook hook_t;
typedef struct tail tail_t;

// A SUBSCRIBE with wait_ms that found nothing new: answered right after a
// commit adds events it wants, or with an empty page at its deadline.
typedef struct {
    wire_rid_t rid;
    uint64_t req;
    int64_t since, plan;
    int64_t deadline_ms;        // monotonic
} events_waiter_t;

struct broker {
    const broker_config_t *cfg;
    keys_broker_t *keys;
    ledger_t *ledger;
    sched_t *sched;
    router_t *router;
    loop_t *loop;               // what wakes a turn (owned); NULL offline
    metrics_t *metrics;         // counters and histograms (owned)
    httpd_t *httpd;             // --metrics listener (owned), or NULL
    proto_limits_t limits;
    limits_t model_limits;      // --model-limit (main.c validated it)
    limits_t model_rpm;         // --model-rpm (main.c validated it)
    rate_t *rate;               // dispatches per model in the rpm window
    drone_t **drones;           // registry (owned)
    size_t n_drones;
    out_t *out;                 // this turn's outbox
    size_t n_out, cap_out;
    uint64_t *undelivered;      // tokens of TASKs that could not be sent
    size_t n_undelivered;
    unloaded_t *unloaded;       // running plans the last load skipped
    size_t n_unloaded;
    gate_watch_t *gate_watch;   // gates awaiting approval with a deadline
    size_t n_gate_watch, cap_gate_watch;
    hook_t *hook;               // --on-gate: pending and running hooks
    events_waiter_t *waiters;   // parked SUBSCRIBEs, one per session at most
    tail_t **tails;             // running attempts' stdout tails, by token
    size_t n_tails, cap_tails;
    size_t n_waiters;
    bool rebuild;               // memory disagrees with the ledger
    bool turn_failed;           // a ledger write failed: roll the turn back
    int reload_fd;              // SIGHUP pipe (read end), or -1
    bool reload;                // reload the allow lists this turn
    int64_t next_heartbeat_ms;  // monotonic
    int64_t now_mono;           // this turn's clocks
    int64_t turn_commit_us;     // --slow-turn-ms: this turn's COMMIT
    int64_t turn_read;          // --slow-turn-ms: messages it read
    size_t turn_sent;           // --slow-turn-ms: messages it sent
    int64_t now_wall;
};

// --- broker.c ---------------------------------------------------------
// Queues msg (consumed) for rid, sent after the turn commits.
void broker_queue(broker_t *b, const wire_rid_t *rid, proto_msg_t **msg,
                  bool depends);
// Opens the turn's transaction if it is not open yet.  On failure it fails
// the turn (broker_fail_turn) and returns false.
bool broker_begin(broker_t *b);
// A ledger write failed: the turn is rolled back instead of committed.
void broker_fail_turn(broker_t *b);
// Marks memory as out of sync with the ledger: rebuilt after this turn.
void broker_desync(broker_t *b, const char *why);
// Logs (WARN) why a peer's message was refused or dropped, within that
// session's log quota (router_log_quota): a flood becomes one "suppressed"
// line per second.
void broker_refused(broker_t *b, const router_in_t *in, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
// Ends a turn: commits its transaction (or rolls it back when it failed,
// turning dependent replies into errors), sends the outbox, and rebuilds
// memory from the ledger when it disagrees.
void broker_end_turn(broker_t *b);
// Opens a broker without keys or a socket: the ledger at cfg->db and the
// plans loaded from it, exactly as broker_open does before it binds.  For
// tests that drive the broker's own logic in-process (HELLO, RESULT,
// dispatch, expiry, cancel) with their own clock in now_mono/now_wall;
// broker_end_turn then drops the outbox instead of sending it.
// broker_destroy closes it.  Returns 0 or -1 with err.
int broker_open_offline(broker_t **out, const broker_config_t *cfg,
                        char *err, size_t errlen);

// --- drones.c ---------------------------------------------------------
// The registered drone with this instance id, or the one bound to this
// session, or NULL (borrowed: valid until the registry changes).
drone_t *drones_find(broker_t *b, const char *instance);
drone_t *drones_by_rid(broker_t *b, const wire_rid_t *rid);
void drones_destroy_all(broker_t *b);
// HELLO, HEARTBEAT, RESULT, UPDATE and BYE (the sender's role was
// checked).
void drones_on_message(broker_t *b, router_in_t *in);
// Sends heartbeats and forgets drones silent past their lease (unless
// quarantined).
void drones_heartbeat(broker_t *b);
// Leases ready tasks to drones with free credit (trust_credit) and queues
// their TASKs; stops at a failed or desynchronised turn.
void drones_dispatch(broker_t *b);
// The limit of ready task idx's model (--model-limit) when that many of its
// prompt tasks are in flight, with that count in *in_flight; else -1 (not
// a prompt task, no limit, or room left).
int64_t drones_model_full(broker_t *b, int64_t plan, size_t idx,
                          size_t *in_flight);
// Whether ready task idx is a prompt task whose model had its --model-rpm
// dispatches within the window; then *max is that limit and *open_ms
// (monotonic) when the next may go.
bool drones_rate_full(broker_t *b, int64_t plan, size_t idx, int64_t *max,
                      int64_t *open_ms);
// Fills the --model-rpm windows from the ledger at start: the leases of
// prompt tasks within the last window, of every plan (one that ended
// within it too), so a restart does not grant a model a fresh window.  A
// no-op without --model-rpm.
void drones_rate_seed(broker_t *b);
// What budgeted plans have used, read from the ledger once per plan while
// nothing is recorded (one dispatch, one status page): a plan of 100k
// tasks must not sum its attempts for every task.  Zeroed = empty.
typedef struct {
    int64_t *plans, *used;
    size_t n;
} drones_used_t;
void drones_used_release(drones_used_t *u);
// Whether ready prompt task idx's reservation (its max_tokens, else
// WORKPLAN_DEFAULT_RESERVE) no longer fits in its plan's token budget: the
// budget less what the plan's attempts used less what its prompt tasks in
// flight reserve.  *used and *budget say what the plan has.  cache may be
// NULL.
bool drones_budget_spent(broker_t *b, drones_used_t *cache, int64_t plan,
                         size_t idx, int64_t *used, int64_t *budget);
// What the plan's prompt tasks in flight reserve against its budget.
int64_t drones_plan_reserved(broker_t *b, int64_t plan);
// What the plan's attempts used (cache may be NULL); -1 when the ledger
// failed.
int64_t drones_plan_used(broker_t *b, drones_used_t *cache, int64_t plan);
// d has left its session (BYE, gone, or the session became another
// instance): it is forgotten and freed, unless quarantined, which must
// outlive the session (a client could otherwise leave and HELLO its way
// out): then it is only unbound.
void drones_leave(broker_t *b, drone_t *d);
// Cuts d off (its key was revoked): STOPs its leases, releases them (no
// attempt used) and forgets it.  d is freed.
void drones_cut(broker_t *b, drone_t *d, const char *why);
// Queues a STOP of (plan, task, token) for rid, with reason; depends as for
// broker_queue (a STOP that follows a transition waits for its commit).
// The one place a STOP is built.
void drones_stop(broker_t *b, const wire_rid_t *rid, int64_t plan,
                 const char *task, uint64_t token, const char *reason,
                 bool depends);
// Releases a lease whose TASK could not be delivered (no attempt used).
void drones_release_undelivered(broker_t *b, uint64_t token);
// Every connected drone's tags, for waiting reasons and submit warnings.
void drones_tag_table(broker_t *b, const char *const *const **tags,
                      const size_t **n_tags, size_t *n);

// --- trust.c ----------------------------------------------------------
// Checks a HELLO's session secret against the ledger.  known is the
// registered drone with the HELLO's instance (or NULL).  Returns 0 to go
// on — *issued is then NULL, or a new secret (caller frees) for the WELCOME
// with its hash in hash, to be stored with ledger_drone_seen ("" when none)
// — or -1 after queueing ERROR FORBIDDEN (or INTERNAL when the ledger
// cannot be read): the HELLO must change nothing.
int trust_hello(broker_t *b, const drone_t *known, router_in_t *in,
                char **issued, char hash[65]);
// A newly registered drone's window.
void trust_init(drone_t *d);
// One of d's leases was confirmed: its window grows.
void trust_confirmed(drone_t *d);
// d's RESULT was accepted: its lost streak ends and a quarantine is
// lifted.
void trust_result(drone_t *d);
// One of d's leases was lost (expired unconfirmed): its window halves and
// the third in a row quarantines it (logged once).
void trust_lost(broker_t *b, drone_t *d);
// Whether d is quarantined now (a cool-off that ended puts it on probation).
bool trust_is_quarantined(broker_t *b, drone_t *d);
// How many more TASKs may be pushed to d now: free slots, bounded by its
// window of unconfirmed leases; 0 while quarantined.
size_t trust_credit(broker_t *b, drone_t *d);

// --- liveness.c -------------------------------------------------------
// A message from d's session arrived on descriptor fd (-1: unknown): it is
// alive and connected.
void liveness_seen(broker_t *b, drone_t *d, int fd);
// A send found d's session gone (EHOSTUNREACH).
void liveness_closed(broker_t *b, drone_t *d);
// The connections on these descriptors closed (router_closed): the bound
// drones whose last message came on one of them get the closed grace.
void liveness_closed_fds(broker_t *b, const int *fds, size_t n);
// Whether d is bound, connected, not seen closed and heard from within
// PROTO_LIVENESS_BEATS heartbeats: only such a drone is given work.
bool liveness_alive(const broker_t *b, const drone_t *d);
// Ends the leases of every bound drone that is gone (its connection closed
// and it silent since) and lets it leave (drones_leave).
void liveness_check(broker_t *b);
// Ends leases whose deadline passed.
void liveness_expire(broker_t *b);
// The earliest moment (monotonic) a bound drone would be gone, or -1.
int64_t liveness_next_deadline_ms(const broker_t *b);
// The broker was stalled delta_ms: that time does not count as silence.
void liveness_shift(broker_t *b, int64_t delta_ms);

// --- requests.c -------------------------------------------------------
// Console requests: PING, SUBMIT, STATUS, CANCEL, RETRY, OUTPUT, APPROVE,
// REJECT; SUBSCRIBE is handed to events.c, AMEND to amends.c.
void requests_on_message(broker_t *b, router_in_t *in);
// Queues *m as the reply to in (takes it); depends: it waits for the
// turn's commit.
void requests_reply(broker_t *b, router_in_t *in, proto_msg_t **m,
                    bool depends);
// ERROR code text as the reply to in (waits for the commit when a turn is
// open: a refusal may rest on what the turn changed).
void requests_error(broker_t *b, router_in_t *in, proto_status_t code,
                    const char *text);
// Fails the turn and answers ERROR INTERNAL.
void requests_internal(broker_t *b, router_in_t *in);
// A plan's state; answers NOT_FOUND or INTERNAL and returns false when
// there is none or the ledger failed.
bool requests_plan_state(broker_t *b, router_in_t *in, int64_t plan,
                         ledger_plan_state_t *state);

// --- amends.c ---------------------------------------------------------
// AMEND: merges an amendment into a running (or failed) plan, validates
// the whole and applies it in the open turn; answers AMEND_OK or ERROR.
void amends_request(broker_t *b, router_in_t *in);

// Answers a refusal: ERROR code text (waits for the turn's commit when the
// turn wrote, as the refusal may rest on it).
void requests_error(broker_t *b, router_in_t *in, proto_status_t code,
                    const char *text);
// The ledger failed: fails the turn and answers ERROR INTERNAL.
void requests_internal(broker_t *b, router_in_t *in);
// The plan's state into *state; answers NOT_FOUND (or INTERNAL) and returns
// false when there is no such plan.
bool requests_plan_state(broker_t *b, router_in_t *in, int64_t plan,
                         ledger_plan_state_t *state);
// Refuses (CONFLICT) a request about a plan that is not running here:
// "plan N already succeeded", or running in the ledger but not loaded
// (with the reason).  Returns true when it refused.
bool requests_not_running(broker_t *b, router_in_t *in, int64_t plan,
                          ledger_plan_state_t state);

// --- budget.c ---------------------------------------------------------
// BUDGET (operator keys; the role was checked): sets a running plan's
// token budget in its stored workplan, with a 'budget' event naming the
// key, and answers BUDGET_OK after the commit.  Prompt tasks the old budget
// held back go out in this turn's dispatch.
void budget_on_request(broker_t *b, router_in_t *in);

// --- events.c ---------------------------------------------------------
// SUBSCRIBE: answers one EVENTS page read from the ledger, or parks the
// request (wait_ms) until there is one.
void events_subscribe(broker_t *b, router_in_t *in);
// After a commit that wrote: answers the parked requests that now have
// events.  Queues the replies (sent with the turn's outbox).
void events_fanout(broker_t *b);
// Answers parked requests whose deadline passed with an empty page.
void events_expire(broker_t *b);
// The earliest parked deadline (monotonic), or -1 when none.
int64_t events_next_deadline_ms(const broker_t *b);
void events_forget(broker_t *b);

// --- gates.c -----------------------------------------------------------
// What gate idx of a loaded plan shows a person: its question, then each
// need's accepted stdout under a header.  0 with *data (caller frees, NUL
// after len bytes), -1 when the ledger failed.
int gates_text(broker_t *b, int64_t plan, size_t idx, uint8_t **data,
               size_t *len);
// Hex sha256 of gates_text; NULL when the ledger failed.  Caller frees.
char *gates_hash(broker_t *b, int64_t plan, size_t idx);
// awaiting_approval -> to (succeeded or rejected) inside the open turn, the
// event recording actor and {"note", "hash"}, then the cascade and the
// plan's end.  LEDGER_MISS when the gate was not awaiting approval.
ledger_rc_t gates_decide(broker_t *b, int64_t plan, size_t idx,
                         proto_task_state_t to, const char *actor,
                         const char *note, const char *hash);
// Gate idx has just entered awaiting_approval in the open turn: the
// --on-gate hook is queued, and with a timeout_s its deadline is set
// (ledger and sched) and watched.  False when
// the ledger failed (the turn is failed).  A no-op for other tasks.
bool gates_started(broker_t *b, int64_t plan, size_t idx);
// A gate loaded from the ledger awaiting approval, deadline 0 for none.
void gates_loaded(broker_t *b, int64_t plan, size_t idx, int64_t deadline_ms);
// Rejects (actor "broker") every watched gate whose deadline has passed.
void gates_expire(broker_t *b);
// The earliest watched deadline (wall ms), or -1.
int64_t gates_next_deadline_ms(const broker_t *b);
// Drops the watch list (destroy; a rebuild reloads it from the ledger).
void gates_forget(broker_t *b);

// --- scrape.c ----------------------------------------------------------
// With --metrics, listens there (httpd.c) for GET /metrics and /healthz.
// Returns 0 (also without --metrics), or -1 with why in err.
int scrape_start(broker_t *b, char *err, size_t errlen);
// Sets the gauges (and the counters the ledger and auth keep) from their
// sources, as a scrape does; for tests that read b->metrics.
void scrape_refresh(broker_t *b);
// Closes the listener and its connections (before the loop goes).
void scrape_stop(broker_t *b);

// --- hook.c ------------------------------------------------------------
// --on-gate: a gate started waiting in this turn (a no-op without a hook).
void hook_queue(broker_t *b, int64_t plan, const char *task,
                const char *question);
// After the turn: starts the queued hooks if it committed, else drops them.
void hook_flush(broker_t *b, bool committed);
// Reaps finished hooks; kills (process group) those past their time.
void hook_reap(broker_t *b, int64_t now_mono);
// The earliest running hook's kill time (monotonic ms), or -1.
int64_t hook_next_deadline_ms(const broker_t *b);
// Kills and reaps every running hook; frees the rest.
void hook_destroy(broker_t *b);

// --- keyring.c -------------------------------------------------------
// Reloads the allow lists from cfg->keys, logs what changed and cuts off
// the drones whose keys are no longer admitted.  A failed reload keeps the
// old lists and logs why.
void keyring_reload(broker_t *b);
// True when the sender's key (from its handshake) is still admitted with
// the role and name it authenticated as.  A sender with no identity
// (role 0) is left to the role check.
bool keyring_admits(const broker_t *b, const router_in_t *in);
// Answers a message from a session whose key was revoked: FORBIDDEN.
void keyring_refuse(broker_t *b, const router_in_t *in);

// --- plans.c (DAG bookkeeping) ------------------------------------------
// Ends a leased attempt: records it, then retries with backoff, kills the
// task (dead) or succeeds it, and applies what follows in the DAG.
// Returns the ledger's answer for the compare-and-set.
ledger_rc_t plans_finish(broker_t *b, const sched_lease_t *lease,
                         const ledger_attempt_end_t *end, const char *actor);
// Applies proposed moves to the ledger and to sched (a leased task being
// cancelled gets a STOP).  Returns false on a ledger error.
bool plans_apply(broker_t *b, const sched_moves_t *moves, const char *actor);
// Marks the plan succeeded/failed when every task is terminal.
void plans_check_done(broker_t *b, int64_t plan, const char *actor);
// Loads every running plan from the ledger into a fresh sched.  A plan
// that cannot be loaded is logged, skipped and remembered with its reason
// (plans_unloaded); the others load.  Returns -1 only when the ledger
// failed; sched may then hold part of the load, so the caller throws it
// away and retries on a fresh one, or gives up.
int plans_load(broker_t *b);
// Loads one plan (any state) into sched, e.g. to retry a failed plan.
// Returns 0, or -1 when the ledger failed, there is no such plan, or the
// plan cannot be loaded (plans_unloaded then says why).
int plans_load_one(broker_t *b, int64_t plan);
// Why the last load could not load this plan (borrowed), or NULL.
const char *plans_unloaded(const broker_t *b, int64_t plan);
// Forgets every remembered reason (the broker is closing or reloading).
void plans_unloaded_clear(broker_t *b);


// --- tails.c ----------------------------------------------------------
// The latest stdout tail of a running attempt (TAIL), in memory only.
// Stores the last PROTO_TAIL_MAX bytes of data; an older total is ignored.
void tails_put(broker_t *b, uint64_t token, uint64_t total,
               const uint8_t *data, size_t len);
// Copies token's tail into *out (and its total); false when there is none.
bool tails_get(const broker_t *b, uint64_t token, uint64_t *total,
               proto_bytes_t *out);
// Forgets token's tail (its attempt ended).
void tails_drop(broker_t *b, uint64_t token);
// Forgets every tail whose lease is gone (however it ended).
void tails_prune(broker_t *b);
void tails_clear(broker_t *b);

// --- explain.c --------------------------------------------------------
// What explain_task reads once for many tasks (a status page): the
// connected drones' tags and the budgets' use.
typedef struct explain_ctx explain_ctx_t;
explain_ctx_t *explain_ctx_new(broker_t *b);
void explain_ctx_destroy(explain_ctx_t **self_p);
// Why task idx of loaded plan is not running (or what it does), into x:
// state, code, reason and the details its code uses.  row is the task's
// ledger row (times, attempt, last error; NULL: unknown).  The one source
// of STATUS's waiting_reason and of EXPLAIN.  Returns true when something
// holds a ready, waiting or awaiting task back (what status shows).
bool explain_task(broker_t *b, explain_ctx_t *c, int64_t plan, size_t idx,
                  const proto_task_info_t *row, proto_explain_ok_t *x);
// EXPLAIN: answers with EXPLAIN_OK, or NOT_FOUND for an unknown plan or
// task.  A plan not in memory (finished) is loaded for the question.
void explain_request(broker_t *b, router_in_t *in);

#endif
