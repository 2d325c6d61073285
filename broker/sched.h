// sched: the broker's in-memory picture of running plans — the DAG, each
// task's state, the ready queues and the lease table — and the pure
// decisions made from it.
//
// Pure: no I/O, no clock, no logging.  It mirrors the ledger: the broker
// applies a transition to the ledger first (compare-and-set) and tells sched
// only after it succeeded; if a turn's commit fails, the broker throws sched
// away and rebuilds it from ledger_load().  Times: not_before_ms is wall
// clock (as stored in the ledger); lease deadlines are monotonic ms.  Both
// arrive as arguments.
//
// Picking (DESIGN.md "Scheduling"): for a drone with tags T, the candidates
// are ready tasks whose `requires` is a subset of T and whose backoff has
// ended; the best has the highest priority, then belongs to the plan next in
// round-robin order after the plan served last, then is the oldest (lowest
// plan id, then workplan order).  A task nobody can run never hides the
// ones behind it.
#ifndef WAGGLE_SCHED_H
#define WAGGLE_SCHED_H

#include "common/workplan.h"
#include "proto/proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sched sched_t;

typedef struct {
    int64_t plan;
    size_t idx;                  // index into the plan's workplan tasks
    proto_task_state_t from, to;
} sched_move_t;

typedef struct {
    sched_move_t *items;         // owned
    size_t count;
} sched_moves_t;

typedef struct {
    uint64_t token;
    int64_t plan;
    size_t idx;
    char instance[65];           // holder's drone instance id
    int64_t deadline_ms;         // monotonic; renewals move it
    int64_t hard_deadline_ms;    // monotonic; timeout_s backstop, 0 = none;
                                 // sched_lease_renew never moves past it
    bool confirmed;              // its holder listed the token or sent its
                                 // RESULT: the TASK arrived
} sched_lease_t;

sched_t *sched_new(void);
void sched_destroy(sched_t **self_p);

// --- plans --------------------------------------------------------------
// Adds a plan; sched takes ownership of *wp and NULLs it.  Every task
// starts in the state given by states[i] (not_before 0).
void sched_plan_add(sched_t *self, int64_t plan, workplan_t **wp,
                    const proto_task_state_t *states);
void sched_plan_remove(sched_t *self, int64_t plan);
bool sched_has_plan(const sched_t *self, int64_t plan);
// Borrowed; NULL if the plan is not loaded.
const workplan_t *sched_workplan(const sched_t *self, int64_t plan);
// The same, to change what the DAG does not depend on (a plan's budget)
// after the ledger recorded the change.  Never its tasks or edges.
workplan_t *sched_workplan_edit(sched_t *self, int64_t plan);
// Plan ids currently loaded, ascending; caller frees *ids.
size_t sched_plans(const sched_t *self, int64_t **ids);
// The state a new plan's tasks start in: ready when they need nothing
// (awaiting_approval for a gate), else waiting.  out has wp->n_tasks slots.
void sched_initial_states(const workplan_t *wp, proto_task_state_t *out);
// True when every task is terminal; *state is then succeeded when all
// succeeded, else failed (the caller decides cancelled).
bool sched_plan_done(const sched_t *self, int64_t plan, bool *all_succeeded);
// Tasks per state of a loaded plan into counts (what the ledger holds, at
// no cost: status polls of a 100k-task plan need not count its rows).
// False when the plan is not loaded.
bool sched_plan_counts(const sched_t *self, int64_t plan,
                       uint32_t counts[PROTO_TASK__COUNT]);

// --- task states --------------------------------------------------------
// Records a state the ledger has committed to.  not_before_ms matters only
// for ready (backoff end; 0 = now) and awaiting_approval (the gate's
// deadline, wall ms; 0 = none).
void sched_set(sched_t *self, int64_t plan, size_t idx,
               proto_task_state_t state, int64_t not_before_ms);
proto_task_state_t sched_get(const sched_t *self, int64_t plan, size_t idx);
int64_t sched_not_before(const sched_t *self, int64_t plan, size_t idx);
// The wall clock (ms) that sched_set stamps a task becoming ready with,
// for the dispatch latency: the caller's turn time (sched reads no clock).
void sched_set_now(sched_t *self, int64_t now_ms);
// When ready task idx could first be leased: the later of the stamp it
// became ready with and its backoff end (wall ms); 0 when unknown (made
// ready before any sched_set_now).
int64_t sched_ready_since(const sched_t *self, int64_t plan, size_t idx);

// A task's attempts as the ledger counts them, kept here so that leasing
// and finishing read nothing (issue 9): used is tasks.attempts_used (the
// budget's attempts so far), runs the task's attempt rows (the next lease
// is row runs + 1; a leased task's attempt is row runs).  The broker sets
// them after each ledger change that moves them (lease, finish, retry,
// amendment) and the loader from the ledger's rows.
typedef struct {
    uint32_t used;
    uint32_t runs;
} sched_attempts_t;

sched_attempts_t sched_attempts(const sched_t *self, int64_t plan,
                                size_t idx);
void sched_attempts_set(sched_t *self, int64_t plan, size_t idx,
                        sched_attempts_t a);

// What follows from task idx having just become terminal (not applied):
//   succeeded -> each waiting dependent whose needs have all succeeded
//                becomes ready (a gate: awaiting_approval);
//   dead/rejected/cancelled -> every non-terminal transitive dependent that
//                is waiting becomes blocked.
// Appends to moves.
void sched_cascade(const sched_t *self, int64_t plan, size_t idx,
                   sched_moves_t *moves);
// What retrying task idx means (not applied): idx (dead, rejected or
// cancelled) goes to ready/awaiting_approval if its needs have all
// succeeded, else waiting; every blocked transitive dependent goes back to
// waiting.  Appends to moves; returns -1 (nothing appended) if idx is not
// in a retryable state.
int sched_retry(const sched_t *self, int64_t plan, size_t idx,
                sched_moves_t *moves);
// Cancelling: every non-terminal task of the plan (idx SIZE_MAX) or the one
// task, to cancelled, plus what a cancelled task blocks.  Appends to moves.
void sched_cancel(const sched_t *self, int64_t plan, size_t idx,
                  sched_moves_t *moves);
void sched_moves_release(sched_moves_t *moves);

// --- amendments (sched_amend.c) --------------------------------------------
// The states an amendment leaves in the amended whole wp: states[i] holds
// each task's state now (a task the amendment cancels: cancelled; an added
// one: anything), fresh[i] marks the added and replaced ones.  Every fresh
// task and every task that has not started (waiting, ready, blocked) is
// decided again from its needs, needs first: blocked when one is dead,
// rejected, cancelled or blocked; ready (a gate: awaiting_approval) when
// all succeeded; else waiting.  So a blocked task whose failed need was
// routed around waits again, and a task that needs a cancelled one is
// blocked.
void sched_amend_states(const workplan_t *wp, const bool *fresh,
                        proto_task_state_t *states);
// Swaps a loaded plan's workplan for its amended whole (sched takes *wp),
// in which the plan's tasks keep their indexes and new ones follow, with
// every task in states[i].  Leases stay as they are (a leased task is never
// amended); a task that keeps its state keeps its backoff or gate deadline.
void sched_plan_swap(sched_t *self, int64_t plan, workplan_t **wp,
                     const proto_task_state_t *states);

// --- picking ------------------------------------------------------------
// The best ready task for a drone offering tags (see above) whose backoff
// ended by now_ms (wall).  Returns 0 with *plan and *idx, or -1 if none.
// Advances the round-robin cursor past the chosen plan.  Does not change
// the task's state: the caller leases it and then calls sched_set.
int sched_pick(sched_t *self, const char *const *tags, size_t n_tags,
               int64_t now_ms, int64_t *plan, size_t *idx);
// Whether the caller holds a ready task back (a model at its limit): state
// sched does not own, passed in so that picking stays pure.
typedef bool (*sched_hold_fn)(void *arg, int64_t plan, size_t idx);
// sched_pick, passing over every task hold(arg, plan, idx) holds back.  A
// requires group is judged by its best task (a prompt task's model is one
// of its requires, so a group's prompt tasks share a model); hold NULL
// holds nothing.
int sched_pick_if(sched_t *self, const char *const *tags, size_t n_tags,
                  int64_t now_ms, sched_hold_fn hold, void *arg,
                  int64_t *plan, size_t *idx);
// The earliest backoff end (wall ms) after now_ms among ready tasks, or -1.
int64_t sched_next_ready_ms(const sched_t *self, int64_t now_ms);
// Why a ready or waiting task has not started yet, as data: the one source
// of status's waiting_reason and of EXPLAIN (broker/explain.c).
#define SCHED_WHY_NAMED 16       // needs or tags named at most
typedef enum {
    SCHED_WHY_NONE = 0,          // nothing here holds it: it should start soon
    SCHED_WHY_NEEDS,             // waiting: needs[] have not succeeded
    SCHED_WHY_BACKOFF,           // ready, in backoff until not_before_ms
    SCHED_WHY_NO_DRONES,         // ready, no drone connected
    SCHED_WHY_TAGS,              // ready, no connected drone covers requires
} sched_why_code_t;

typedef struct {
    sched_why_code_t code;
    size_t needs[SCHED_WHY_NAMED];   // NEEDS: unmet needs (workplan indices)
    size_t n_needs;
    size_t n_pending;                // NEEDS: unmet needs in all
    const char *tags[SCHED_WHY_NAMED];  // TAGS: borrowed from the workplan
    size_t n_tags;
    bool all_of;                     // TAGS: each offered, never all by one
    int64_t not_before_ms;           // BACKOFF: wall ms
} sched_why_t;

void sched_why(const sched_t *self, int64_t plan, size_t idx,
               const char *const *const *drone_tags,
               const size_t *n_drone_tags, size_t n_drones, int64_t now_ms,
               sched_why_t *out);
// why in one sentence (status's words, below); NULL for SCHED_WHY_NONE.
// Caller frees.
char *sched_why_text(const sched_t *self, int64_t plan, const sched_why_t *why,
                     int64_t now_ms);
// Why a ready or waiting task has not started yet, for status: "waiting for
// 'build'", "in backoff for 3 s", "no connected drone offers 'gpu'"; NULL
// when it should start soon.  drone_tags lists every connected drone's
// tags (n_drones entries).  Caller frees.
char *sched_waiting_reason(const sched_t *self, int64_t plan, size_t idx,
                           const char *const *const *drone_tags,
                           const size_t *n_drone_tags, size_t n_drones,
                           int64_t now_ms);

// --- leases (monotonic deadlines) ---------------------------------------
void sched_lease_add(sched_t *self, const sched_lease_t *lease);
// Borrowed; NULL if no live lease has this token.
const sched_lease_t *sched_lease_get(const sched_t *self, uint64_t token);
// Moves the deadline to deadline_ms, capped at the lease's hard deadline.
void sched_lease_renew(sched_t *self, uint64_t token, int64_t deadline_ms);
void sched_lease_remove(sched_t *self, uint64_t token);
// The leases held by an instance; caller frees *out (copies).
size_t sched_leases_of(const sched_t *self, const char *instance,
                       sched_lease_t **out);
size_t sched_lease_count_of(const sched_t *self, const char *instance);
// How many live leases match(arg, lease) accepts.  O(leases).
size_t sched_lease_count_if(const sched_t *self,
                            bool (*match)(void *arg, const sched_lease_t *l),
                            void *arg);
// Marks a lease confirmed (its holder showed it has the TASK).  Returns
// true when it was not confirmed before; false also for an unknown token.
bool sched_lease_confirm(sched_t *self, uint64_t token);
// The leases of an instance not confirmed yet (the credit window, PROTOCOL.md
// section 7.3).  O(1).
size_t sched_unconfirmed_of(const sched_t *self, const char *instance);
// Leases whose deadline is <= now_ms; caller frees *out (copies).
size_t sched_leases_expired(const sched_t *self, int64_t now_ms,
                            sched_lease_t **out);
// Adds delta_ms to every lease deadline (a turn that overran).
void sched_leases_shift(sched_t *self, int64_t delta_ms);
// The earliest lease deadline, or -1 if there are no leases.
int64_t sched_next_deadline_ms(const sched_t *self);
// The live lease of (plan, idx), or NULL.
const sched_lease_t *sched_lease_of_task(const sched_t *self, int64_t plan,
                                         size_t idx);

// --- description (tests) --------------------------------------------------
// A canonical text of everything sched holds that a restart must keep:
// plans in id order with each task's state, backoff end, pending needs
// and attempts (sched_attempts), each requires group with its ready tasks, and the leases by token
// with plan, task and instance.  Left out, because a restart changes them
// legitimately: lease deadlines, the round-robin cursor, the order inside a
// heap, and whether a ready task whose backoff ended still sits in the
// backoff queue.  Lines starting "BROKEN:" report a broken invariant (a
// ready task not queued, a wrong pending count or tally, a leased task
// without exactly one lease).  Caller frees.
char *sched_describe(const sched_t *self);

#endif
