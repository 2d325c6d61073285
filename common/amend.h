// amend: an amendment to a plan that already runs, merged into the plan's
// workplan and validated as a whole (README "Amending a running plan").
//
// An amendment is a JSON object with at least one of:
//   "add":     [task, ...]  new tasks, written as in a workplan; they may
//                           need tasks of the plan (in any state) and each
//                           other
//   "cancel":  ["id", ...]  tasks that have not started (waiting, ready)
//   "replace": [task, ...]  new definitions of tasks that have not started
//                           (waiting, ready, or blocked: never ran); same id
// The amended whole is the plan's tasks in their order, each replaced one
// in its place, then the added ones; it goes through workplan_parse(), so
// everything a submit refuses is refused here (cycles, unknown needs,
// duplicate ids, exec limits, ...).  Errors carry JSON paths into the
// amendment ("add[1].needs[0]", "replace[0].run"); an error the amended
// whole has in a task the amendment did not touch says "plan.tasks[3]...".
// Tasks added or replaced get the built-in defaults: a plan's "defaults"
// were resolved into its tasks when it was submitted.
//
// Pure: no I/O, no logging.
#ifndef WAGGLE_AMEND_H
#define WAGGLE_AMEND_H

#include "common/workplan.h"

#include <stddef.h>

typedef struct {
    workplan_t *wp;          // the amended whole, validated
    char *json;              // its canonical JSON (workplan_to_json)
    size_t n_old;            // tasks the plan had: wp->tasks[0..n_old-1]
                             // keep their index; the added ones follow
    size_t *cancelled;       // indexes of the tasks to cancel
    size_t n_cancelled;
    size_t *replaced;        // indexes of the replaced tasks
    size_t n_replaced;
} amend_t;

// Merges len bytes of amendment JSON into plan, whose task i is in state
// states[i] (its name, as PROTOCOL.md spells it: "waiting", "leased", ...).
// Returns 0 and a new amend_t in *out, or -1 with *out NULL and the errors
// appended to errs (at least one).
int amend_merge(const workplan_t *plan, const char *const *states,
                const char *text, size_t len, amend_t **out,
                wp_errors_t *errs);
void amend_destroy(amend_t **self_p);

// What an amendment did, as ids: {"added": [...], "cancelled": [...],
// "replaced": [...]} (compact JSON; caller frees).  The ledger's 'amended'
// event carries it, and the architect shows it.
char *amend_summary_json(const amend_t *a);

// Whether a task in this state may be cancelled (waiting, ready) or
// replaced (also blocked, and dead: a retry with a new definition) by an
// amendment.
bool amend_may_cancel(const char *state);
bool amend_may_replace(const char *state);

#endif
