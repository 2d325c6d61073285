// dash: the dashboard's state and everything about it that is not drawing —
// pane layout arithmetic, progress bars, one line of text per plan, task,
// drone and event, selection and the note/confirm input.  Pure: no
// terminal, no socket, no clock (now_ms is passed in), so the unit tests
// cover it (tests/unit/test_dash.c).  console.c draws a dash_t with
// ncurses; watch.c feeds it from the broker.
#ifndef WAGGLE_DASH_H
#define WAGGLE_DASH_H

#include "proto/proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// The smallest terminal the dashboard draws in (below it: a one-line
// "too small" notice).
#define DASH_MIN_ROWS 12
#define DASH_MIN_COLS 40
// Lines of the event log kept for the events pane.
#define DASH_EVENT_LINES 64
// Bytes of a line the dashboard formats (wider terminals are cut).
#define DASH_LINE 512

typedef struct {
    int y, x;                // top-left corner
    int h, w;                // rows, columns (0: not shown)
} dash_rect_t;

// Where each pane goes.  Every pane but header and status has its title on
// its first row.
typedef struct {
    dash_rect_t header;      // one row: broker, key, link state, gates
    dash_rect_t plans, drones;   // top: left and right
    dash_rect_t tasks, output;   // middle: left and right
    dash_rect_t events;      // bottom, full width
    dash_rect_t status;      // last row: messages and prompts
    bool too_small;
} dash_layout_t;

typedef enum {
    DASH_PANE_PLANS = 0,
    DASH_PANE_TASKS,
    DASH_PANE_DRONES,
    DASH_PANE_EVENTS,
    DASH_PANE__COUNT
} dash_pane_t;

typedef enum {
    DASH_MODE_NORMAL = 0,
    DASH_MODE_NOTE,          // typing a note for approve/reject
    DASH_MODE_CONFIRM,       // y/n for cancel
    DASH_MODE_HELP,          // the key list; any key closes it
} dash_mode_t;

// What a finished note or confirmation is for.
typedef enum {
    DASH_ACT_NONE = 0,
    DASH_ACT_APPROVE,
    DASH_ACT_REJECT,
    DASH_ACT_CANCEL,
} dash_act_t;

// What the output pane shows.
typedef enum {
    DASH_OUT_FINAL = 0,      // a finished attempt's stored output (its tail)
    DASH_OUT_LIVE,           // a running attempt's latest tail (its tail)
    DASH_OUT_GATE,           // what a gate shows a person (from the top)
    DASH_OUT_WHY,            // the broker's explanation (from the top)
} dash_out_t;

// One screen row of a text: len bytes from text + at.
typedef struct {
    size_t at, len;
} dash_span_t;

typedef enum {
    DASH_INPUT_MORE = 0,     // keep typing
    DASH_INPUT_DONE,         // Enter (or y): act on it
    DASH_INPUT_ABORT,        // Esc (or n): dropped
} dash_input_t;

typedef struct {
    proto_msg_t *overview;   // owned: STATUS_OK of plan 0 (plans, drones)
    int64_t overview_ms;     // wall clock when it was read
    proto_msg_t *plan;       // owned: STATUS_OK of the open plan (tasks)
    int64_t open_plan;       // 0: none open yet
    char *out_task;          // owned: the task whose output is shown
    char *output;            // owned: its output text (NUL-ended), or NULL
    size_t output_len;       // its bytes (a NUL inside counts)
    dash_out_t out_kind;     // what it is
    char events[DASH_EVENT_LINES][DASH_LINE];  // ring of event lines
    size_t n_events;         // lines ever added
    dash_pane_t pane;        // the pane keys move in
    int sel[DASH_PANE__COUNT];   // selected row of each pane
    dash_mode_t mode;
    dash_act_t act;          // what the input is for
    char input[256];         // the note typed so far
    char status[DASH_LINE];  // the status line
    char link[DASH_LINE];    // the link's state in words
    bool link_up;
    char whoami[128];        // "operator:alice" once PING answered
    bool operator;           // the key may answer gates
} dash_t;

void dash_init(dash_t *d);
void dash_release(dash_t *d);

// Pane rectangles for a rows x cols terminal.
void dash_layout(int rows, int cols, dash_layout_t *out);

// A progress bar of exactly width characters (plus NUL; buf holds at
// least width + 1): '#' succeeded, '>' running, '?' awaiting approval, '!'
// dead, rejected, blocked or cancelled, '.' not started.  Each state with
// tasks gets at least one character when width allows.
void dash_bar(const uint32_t counts[PROTO_TASK__COUNT], int width, char *buf);
// "-" (ms < 0), "850ms", "42s", "3m05s", "2h07m", "3d04h".
void dash_duration(int64_t ms, char *buf, size_t len);
// The short name of a state in the task pane ("running", "AWAITING").
const char *dash_state_label(proto_task_state_t s);

// One pane line each, cut to width columns.
void dash_plan_line(const proto_plan_info_t *p, int width, char *buf);
// lease_left_ms and duration_ms: -1 when not known ('-').
void dash_task_line(const proto_task_info_t *t, int64_t lease_left_ms,
                    int64_t duration_ms, int width, char *buf);
void dash_drone_line(const proto_drone_info_t *d, int64_t now_ms, int width,
                     char *buf);
// The titles of the tasks and drones panes: their column names, aligned
// with the lines.
void dash_task_title(int64_t plan, int width, char *buf);
void dash_drone_title(int width, char *buf);
void dash_event_line(const proto_event_t *e, char *buf);

// Plans, tasks, drones known now (0 when not read yet).
size_t dash_rows(const dash_t *d, dash_pane_t pane);
// The selected plan's info, task's info (in the open plan), or NULL.
const proto_plan_info_t *dash_sel_plan(const dash_t *d);
const proto_task_info_t *dash_sel_task(const dash_t *d);
// Gates awaiting approval over all plans.
uint32_t dash_gates_waiting(const dash_t *d);
// What is left at now_ms (wall clock) of the lease that runs plan's task,
// from the overview's drones: -1 when no drone lists it.
int64_t dash_lease_left(const dash_t *d, int64_t plan, const char *task,
                        int64_t now_ms);
// How long the task's latest attempt ran (running: so far, at now_ms, wall
// clock); -1 when it never started.
int64_t dash_task_duration(const proto_task_info_t *t, int64_t now_ms);
// The least left at now_ms of any lease the overview lists; -1: none.
int64_t dash_lease_min(const dash_t *d, int64_t now_ms);
// The first row to show so that the selection sel is visible in h rows.
int dash_scroll(int sel, int rows, int h);

// Moves the selection in the current pane by delta, clamped.
void dash_move(dash_t *d, int delta);
// Next pane (plans -> tasks -> drones -> events).
void dash_next_pane(dash_t *d);
// Takes *msg (STATUS_OK of plan 0), read at now_ms (wall clock): keeps the
// plans selection on the same plan id when it is still listed.
void dash_set_overview(dash_t *d, proto_msg_t **msg, int64_t now_ms);
// Takes *msg (STATUS_OK of the open plan), keeping the task selection on
// the same task id.
void dash_set_plan(dash_t *d, proto_msg_t **msg);
// Adds the event's line to the ring.
void dash_add_event(dash_t *d, const proto_event_t *e);
// Sets the output pane (text copied; len bytes, may hold no NUL).
void dash_set_output(dash_t *d, const char *task, const uint8_t *text,
                     size_t len, dash_out_t kind);
// The rows text takes in a pane width columns wide (a line longer than
// width goes on over more rows); fills out with at most n of them from row
// skip on.  Returns the number of rows in all.
size_t dash_wrap(const char *text, size_t len, int width, size_t skip,
                 dash_span_t *out, size_t n);
// The status line, printf-style.
void dash_say(dash_t *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

// Starts an input: a note (approve/reject) or a y/n (cancel).
void dash_ask(dash_t *d, dash_act_t act);
// One key of an input: printable characters append, Backspace deletes,
// Enter (or 'y' for a confirmation) finishes, Esc (or 'n') aborts.
dash_input_t dash_input_key(dash_t *d, int key);

#endif
