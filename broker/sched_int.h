// sched_int.h: what the sched*.c files share (SQLite's *Int.h convention).
// Nothing outside broker/sched*.c includes it.
//
//   sched.c        the plan table, each plan's DAG (CSR, both directions),
//                  task states, and the moves that follow from them
//                  (cascade, retry, cancel)
//   sched_ready.c  requires groups, the ready heaps and the backoff heap,
//                  picking, and why a task has not started
//   sched_lease.c  the lease table, behind the opaque sched__leases_t
//   sched_describe.c  sched_describe: the canonical text tests compare
//
// Names shared between those files start sched__ / SCHED__ (libuv's uv__);
// helpers private to one file stay static and start s_.
//
// A ready task sits in exactly one heap: its `requires` group's heap
// (priority desc, then workplan order) once its backoff has ended, else the
// scheduler-wide backoff heap (not_before asc).  Heaps are indexed (a task
// knows its position, sched__task_t.pos), so a task leaving ready is
// removed in O(log n) and no stale entries build up.
#ifndef WAGGLE_SCHED_INT_H
#define WAGGLE_SCHED_INT_H

#include "broker/sched.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Where a task is queued (sched__task_t.where).
enum { SCHED__NOWHERE = 0, SCHED__IN_GROUP, SCHED__IN_BACKOFF };

typedef struct sched__plan sched__plan_t;

typedef struct {
    int64_t key;                 // priority (group) or not_before_ms (backoff)
    sched__plan_t *plan;
    size_t idx;                  // task index in plan
} sched__hent_t;

typedef struct {
    sched__hent_t *items;
    size_t len, cap;
    bool by_time;                // earliest key first; else highest key first
} sched__heap_t;

// 40 bytes: a loaded 1M-task plan holds a million (used and runs fill
// what was padding).
typedef struct {
    int64_t not_before_ms;       // wall ms; ready only, 0 = none
    int64_t ready_ms;            // wall ms it last became ready (the
                                 // stamp sched_set_now gave; 0 = unknown)
    uint32_t pos;                // position in its heap, if any
    int32_t priority;            // cached from the workplan (-1000..1000)
    uint32_t n_pending;          // distinct needs not yet succeeded
    uint32_t group;              // index into the plan's groups
    uint8_t state;               // proto_task_state_t
    uint8_t where;               // SCHED__NOWHERE, _IN_GROUP or _IN_BACKOFF
    uint16_t used;               // the ledger's attempts_used (<= 101:
                                 // WORKPLAN_MAX_RETRIES + 1)
    uint32_t runs;               // the task's attempt rows in the ledger
} sched__task_t;

// Tasks of one plan with equal (sorted, distinct) requires.
typedef struct {
    const char **req;            // sorted, distinct; points into req_pool
    size_t n_req;
    sched__heap_t heap;          // its ready tasks whose backoff has ended
} sched__group_t;

// Traversal scratch.  The const queries (cascade, retry, cancel) write it:
// sched is single-threaded and marks are stamped with a fresh epoch per
// traversal, so a traversal costs what it visits, not the plan's size.
// mark and count are allocated by the first traversal (8 bytes a task that
// a plan which never fails, retries or cancels does not pay).
typedef struct {
    uint32_t epoch;
    uint32_t *mark;              // == epoch: seen in the current traversal
    uint32_t *count;             // per-traversal counter, valid when marked
} sched__scratch_t;

struct sched__plan {
    int64_t id;
    workplan_t *wp;              // owned
    sched__task_t *tasks;        // wp->n_tasks entries
    size_t *need_off, *needs;    // distinct needs per task (CSR)
    size_t *dep_off, *deps;      // distinct dependents per task (CSR)
    const char **req_pool;       // each task's sorted requires, borrowed
    sched__group_t *groups;
    size_t n_groups;
    size_t n_terminal;           // tasks in a terminal state
    size_t n_succeeded;
    uint32_t counts[PROTO_TASK__COUNT];  // tasks per state
    sched__scratch_t *scratch;
};

// The lease table; its body is private to sched_lease.c.
typedef struct sched__leases sched__leases_t;

struct sched {
    sched__plan_t **plans;       // ascending id
    size_t n_plans, cap_plans;
    int64_t rr_last;             // plan served last
    sched__heap_t backoff;       // ready tasks still in backoff, all plans
    sched__leases_t *leases;     // owned
    int64_t now_ms;              // wall; stamps ready tasks (sched_set_now)
    // At least the priority of every task in any group heap (never
    // lowered): a pick that found a task of this priority may stop.
    int64_t prio_max;
    bool prio_seen;              // prio_max holds a value
};

// --- sched.c --------------------------------------------------------------
// Grows *items_p (an array of size-byte elements with capacity *cap) to
// hold at least need elements: 8, then doubling.  Aborts on OOM.
void sched__grow(void *items_p, size_t *cap, size_t need, size_t size);
// Index of the first plan whose id is >= plan (upper: > plan).
size_t sched__plan_bound(const sched_t *self, int64_t plan, bool upper);
// The loaded plan with this id (borrowed), or NULL.
sched__plan_t *sched__plan_find(const sched_t *self, int64_t plan);

// --- sched_ready.c --------------------------------------------------------
// Builds p's requires groups from p->wp (p->tasks[].group, p->groups,
// p->req_pool); sched__groups_release frees them with their heaps.
void sched__groups_init(sched__plan_t *p);
void sched__groups_release(sched__plan_t *p);
// Queues ready task idx of p: in its group's heap, or in the backoff heap
// while its not_before_ms is set.  The task must not be queued already.
void sched__enqueue(sched_t *self, sched__plan_t *p, size_t idx);
// Takes task idx of p out of whichever heap holds it (no-op if none).
void sched__dequeue(sched_t *self, sched__plan_t *p, size_t idx);
// Drops every backoff entry of p (the plan is being removed).
void sched__backoff_purge(sched_t *self, const sched__plan_t *p);

// --- sched_lease.c --------------------------------------------------------
// An empty lease table (never NULL; aborts on OOM), and its destructor
// (no-op on NULL; NULLs *self_p).
sched__leases_t *sched__leases_new(void);
void sched__leases_destroy(sched__leases_t **self_p);

#endif
