// test_dash: the dashboard's pure parts — layout arithmetic, progress bars,
// durations, pane lines, selection and the note/confirm input.
#include "architect/dash.h"
#include "common/xalloc.h"

#include "tests/harness/t.h"

static bool
s_inside(const dash_rect_t *r, int rows, int cols)
{
    return r->y >= 0 && r->x >= 0 && r->y + r->h <= rows &&
           r->x + r->w <= cols;
}

static bool
s_overlap(const dash_rect_t *a, const dash_rect_t *b)
{
    return a->x < b->x + b->w && b->x < a->x + a->w && a->y < b->y + b->h &&
           b->y < a->y + a->h;
}

// Every size from the smallest up: panes inside the screen, none over
// another, each list pane tall enough for its title and a row.
static void
test_layout_fits(void)
{
    for (int rows = DASH_MIN_ROWS; rows <= 80; rows++) {
        for (int cols = DASH_MIN_COLS; cols <= 250; cols += 7) {
            dash_layout_t l;
            dash_layout(rows, cols, &l);
            const dash_rect_t *r[] = {&l.header, &l.plans, &l.drones,
                                      &l.tasks, &l.output, &l.events,
                                      &l.status};
            CHECK(!l.too_small);
            for (int i = 0; i < 7; i++) {
                CHECK(s_inside(r[i], rows, cols));
                CHECK(r[i]->h >= 1 && r[i]->w >= 1);
                for (int k = i + 1; k < 7; k++) {
                    CHECK(!s_overlap(r[i], r[k]));
                }
            }
            CHECK(l.plans.h >= 2 && l.tasks.h >= 2 && l.events.h >= 2);
        }
    }
}

// 80x24, the size the README and the e2e test use: the rows add up and
// the tasks pane is the tallest.
static void
test_layout_80x24(void)
{
    dash_layout_t l;
    dash_layout(24, 80, &l);
    CHECK_INT(l.header.y, 0);
    CHECK_INT(l.status.y, 23);
    CHECK_INT(l.plans.h + l.tasks.h + l.events.h, 22);
    CHECK(l.tasks.h > l.plans.h && l.tasks.h > l.events.h);
    CHECK_INT(l.events.w, 80);
    CHECK_INT(l.plans.w + 1 + l.drones.w, 80);  // one blank column between
    CHECK_INT(l.tasks.w + 1 + l.output.w, 80);
    CHECK_INT(l.tasks.w, 47);  // dash_task_line's columns
    dash_layout(DASH_MIN_ROWS - 1, 80, &l);
    CHECK(l.too_small);
    dash_layout(24, DASH_MIN_COLS - 1, &l);
    CHECK(l.too_small);
}

static void
test_bar(void)
{
    uint32_t c[PROTO_TASK__COUNT] = {0};
    char buf[128];
    dash_bar(c, 10, buf);
    CHECK_STR(buf, "..........");
    c[PROTO_TASK_SUCCEEDED] = 1;
    c[PROTO_TASK_LEASED] = 1;
    c[PROTO_TASK_AWAITING_APPROVAL] = 1;
    c[PROTO_TASK_WAITING] = 1;
    dash_bar(c, 8, buf);
    CHECK_STR(buf, "##>>??..");
    // A state with one task in a thousand still shows.
    memset(c, 0, sizeof c);
    c[PROTO_TASK_SUCCEEDED] = 999;
    c[PROTO_TASK_DEAD] = 1;
    dash_bar(c, 10, buf);
    CHECK_STR(buf, "#########!");
    // Dead, rejected, blocked and cancelled are one segment.
    memset(c, 0, sizeof c);
    c[PROTO_TASK_REJECTED] = 1;
    c[PROTO_TASK_BLOCKED] = 1;
    c[PROTO_TASK_CANCELLED] = 2;
    dash_bar(c, 4, buf);
    CHECK_STR(buf, "!!!!");
    // Narrower than the segments: exactly width characters all the same.
    memset(c, 0, sizeof c);
    for (int s = 0; s < PROTO_TASK__COUNT; s++) {
        c[s] = 1;
    }
    for (int w = 0; w < 40; w++) {
        dash_bar(c, w, buf);
        CHECK_INT(strlen(buf), w);
    }
}

static void
test_duration(void)
{
    char b[32];
    dash_duration(-1, b, sizeof b);
    CHECK_STR(b, "-");
    dash_duration(850, b, sizeof b);
    CHECK_STR(b, "850ms");
    dash_duration(42000, b, sizeof b);
    CHECK_STR(b, "42s");
    dash_duration(185000, b, sizeof b);
    CHECK_STR(b, "3m05s");
    dash_duration((2 * 3600 + 7 * 60) * 1000LL, b, sizeof b);
    CHECK_STR(b, "2h07m");
    dash_duration((3 * 86400 + 4 * 3600) * 1000LL, b, sizeof b);
    CHECK_STR(b, "3d04h");
}

static void
test_lines(void)
{
    char buf[DASH_LINE];
    proto_plan_info_t p = {.id = 7, .name = "release", .state = "running"};
    p.counts[PROTO_TASK_SUCCEEDED] = 2;
    p.counts[PROTO_TASK_AWAITING_APPROVAL] = 1;
    p.counts[PROTO_TASK_WAITING] = 1;
    dash_plan_line(&p, 39, buf);
    CHECK_INT(strlen(buf), 39);
    CHECK(strstr(buf, "  7 release") == buf && strstr(buf, "2/4 running"));
    CHECK(strchr(buf, '[') && strchr(buf, '?'));
    dash_plan_line(&p, 20, buf);  // no room for a bar: counts only
    CHECK(strlen(buf) <= 20 && !strchr(buf, '['));

    proto_task_info_t t = {.id = "review", .state =
                           PROTO_TASK_AWAITING_APPROVAL, .attempts = 0};
    dash_task_line(&t, -1, -1, 47, buf);
    CHECK(strstr(buf, "review") == buf && strstr(buf, "AWAITING") &&
          strstr(buf, " - "));
    CHECK(strlen(buf) <= 47);
    proto_task_info_t run = {.id = "build", .state = PROTO_TASK_LEASED,
                             .attempts = 2, .drone = "d1"};
    dash_task_line(&run, 7400, 185000, 47, buf);
    CHECK_STR(buf, "build       running     2 d1          7s  3m05s");
    run.attempt = 5;  // the attempt's number wins over the budget used
    dash_task_line(&run, -1, -1, 47, buf);
    CHECK_STR(buf, "build       running     5 d1           -      -");
    // Durations: running ticks from its start; ended is what status said.
    CHECK_INT(dash_task_duration(&run, 1000), -1);
    run.started_ms = 10000;
    CHECK_INT(dash_task_duration(&run, 12500), 2500);
    run.ended_ms = 11000;
    run.duration_ms = 1000;
    CHECK_INT(dash_task_duration(&run, 99999), 1000);
    // The title's columns line up with the lines'.
    char title[DASH_LINE];
    dash_task_title(12, 47, title);
    CHECK_STR(title, "plan 12     state     att drone    lease   time");
    CHECK_INT(strlen(title), strlen(buf));
    dash_drone_title(80, title);

    char *tags[] = {"gpu", "model"};
    proto_drone_info_t d = {.name = "d1", .host = "box", .slots = 4,
                            .leases = 3, .last_seen_ms = 10000,
                            .quarantined = true,
                            .tags = {.items = tags, .count = 2}};
    dash_drone_line(&d, 12500, 80, buf);
    CHECK(strstr(buf, "d1") && strstr(buf, "box") && strstr(buf, "3/4") &&
          strstr(buf, "2s") && strstr(buf, "QUAR") &&
          strstr(buf, "gpu,model"));
    CHECK(strstr(buf, "gpu") - buf == strstr(title, "tags") - title);
    dash_drone_line(&d, 12500, 12, buf);
    CHECK_INT(strlen(buf), 12);
    d.quarantined = false;
    d.draining = true;
    dash_drone_line(&d, 12500, 40, buf);
    CHECK_STR(buf, "d1        box       3/4    2s DRN  gpu,m");

    proto_event_t e = {.seq = 5, .at_ms = 3723000, .plan = 3, .task = "g",
                       .actor = "alice", .kind = "task",
                       .from = "awaiting_approval", .to = "succeeded",
                       .detail = "{\"note\":\"ok\"}"};
    dash_event_line(&e, buf);
    CHECK_STR(buf, "01:02:03 p3 g alice task awaiting_approval->succeeded"
                   "  {\"note\":\"ok\"}");
    proto_event_t bare = {.at_ms = 0, .actor = "broker", .kind = "start"};
    dash_event_line(&bare, buf);
    CHECK_STR(buf, "00:00:00 - broker start");
}

// A STATUS_OK with plans 1..n and, for plan tasks, ids t0..t(n-1).
static proto_msg_t *
s_status(int n, bool tasks)
{
    proto_msg_t *m = proto_msg_new(PROTO_MSG_STATUS_OK);
    proto_status_ok_t *st = &m->u.status_ok;
    st->n_plans = tasks ? 1 : (size_t) n;
    st->plans = xcalloc(st->n_plans, sizeof *st->plans);
    for (size_t i = 0; i < st->n_plans; i++) {
        st->plans[i].id = (int64_t) i + 1;
        st->plans[i].name = xstrdup("p");
        st->plans[i].state = xstrdup("running");
        st->plans[i].submitted_by = xstrdup("me");
        st->plans[i].counts[PROTO_TASK_AWAITING_APPROVAL] = 1;
    }
    for (int i = 0; tasks && i < n; i++) {
        st->tasks = xrealloc(st->tasks, (size_t) (i + 1) * sizeof *st->tasks);
        memset(&st->tasks[i], 0, sizeof st->tasks[i]);
        st->tasks[i].id = xasprintf("t%d", i);
        st->tasks[i].kind = xstrdup("run");
        st->n_tasks = (size_t) i + 1;
    }
    return m;
}

static void
test_selection(void)
{
    dash_t d;
    dash_init(&d);
    CHECK(!dash_sel_plan(&d) && !dash_sel_task(&d));
    proto_msg_t *m = s_status(3, false);
    dash_set_overview(&d, &m, 0);
    CHECK(m == NULL);
    CHECK_INT(dash_gates_waiting(&d), 3);
    dash_move(&d, 10);  // clamped to the last plan
    CHECK_INT(dash_sel_plan(&d)->id, 3);
    m = s_status(2, false);  // plan 3 went away: the selection stays inside
    dash_set_overview(&d, &m, 0);
    CHECK_INT(dash_sel_plan(&d)->id, 2);

    dash_next_pane(&d);
    CHECK_INT(d.pane, DASH_PANE_TASKS);
    m = s_status(5, true);
    dash_set_plan(&d, &m);
    dash_move(&d, 3);
    CHECK_STR(dash_sel_task(&d)->id, "t3");
    dash_move(&d, -10);
    CHECK_STR(dash_sel_task(&d)->id, "t0");
    dash_move(&d, 2);
    m = s_status(5, true);  // a re-read keeps the same task selected
    dash_set_plan(&d, &m);
    CHECK_STR(dash_sel_task(&d)->id, "t2");
    for (int i = 0; i < 3; i++) {
        dash_next_pane(&d);
    }
    CHECK_INT(d.pane, DASH_PANE_PLANS);
    dash_release(&d);
}

// Lease time left comes from the overview's drones and counts down from
// when it was read.
static void
test_lease_left(void)
{
    dash_t d;
    dash_init(&d);
    CHECK_INT(dash_lease_left(&d, 1, "a", 0), -1);
    CHECK_INT(dash_lease_min(&d, 0), -1);
    proto_msg_t *m = s_status(1, false);
    proto_status_ok_t *st = &m->u.status_ok;
    st->n_drones = 2;
    st->drones = xcalloc(2, sizeof *st->drones);
    for (int i = 0; i < 2; i++) {
        st->drones[i].instance = xstrdup("i");
        st->drones[i].name = xasprintf("d%d", i);
        st->drones[i].n_tasks = 1;
        st->drones[i].tasks = xcalloc(1, sizeof *st->drones[i].tasks);
        st->drones[i].tasks[0].plan = 1;
        st->drones[i].tasks[0].task = xasprintf("t%d", i);
    }
    st->drones[0].tasks[0].lease_left_ms = 9000;
    st->drones[1].tasks[0].lease_left_ms = -1;  // an older broker
    dash_set_overview(&d, &m, 100000);
    CHECK_INT(dash_lease_left(&d, 1, "t0", 100000), 9000);
    CHECK_INT(dash_lease_left(&d, 1, "t0", 104000), 5000);
    CHECK_INT(dash_lease_left(&d, 1, "t0", 200000), 0);
    CHECK_INT(dash_lease_left(&d, 1, "t1", 100000), -1);
    CHECK_INT(dash_lease_left(&d, 2, "t0", 100000), -1);
    CHECK_INT(dash_lease_left(&d, 1, "zz", 100000), -1);
    CHECK_INT(dash_lease_min(&d, 101000), 8000);
    dash_release(&d);
}

static void
test_scroll(void)
{
    CHECK_INT(dash_scroll(0, 100, 10), 0);
    CHECK_INT(dash_scroll(4, 100, 10), 0);
    CHECK_INT(dash_scroll(50, 100, 10), 45);
    CHECK_INT(dash_scroll(99, 100, 10), 90);  // the last row at the bottom
    CHECK_INT(dash_scroll(5, 8, 10), 0);      // all rows fit
}

static void
test_events_ring(void)
{
    dash_t d;
    dash_init(&d);
    proto_event_t e = {.actor = "broker", .kind = "task"};
    for (int i = 0; i < DASH_EVENT_LINES + 5; i++) {
        e.at_ms = i * 1000LL;
        dash_add_event(&d, &e);
    }
    CHECK_INT(dash_rows(&d, DASH_PANE_EVENTS), DASH_EVENT_LINES);
    // The newest line is the one before n_events.
    const char *last = d.events[(d.n_events - 1) % DASH_EVENT_LINES];
    CHECK(strncmp(last, "00:01:08", 8) == 0);
    dash_release(&d);
}

static void
test_input(void)
{
    dash_t d;
    dash_init(&d);
    dash_ask(&d, DASH_ACT_REJECT);
    CHECK_INT(d.mode, DASH_MODE_NOTE);
    const char *keys = "nox";
    for (const char *k = keys; *k; k++) {
        CHECK_INT(dash_input_key(&d, *k), DASH_INPUT_MORE);
    }
    CHECK_INT(dash_input_key(&d, 127), DASH_INPUT_MORE);  // Backspace
    CHECK_INT(dash_input_key(&d, 1), DASH_INPUT_MORE);    // control: ignored
    CHECK_STR(d.input, "no");
    CHECK_INT(dash_input_key(&d, '\n'), DASH_INPUT_DONE);
    CHECK_INT(d.mode, DASH_MODE_NORMAL);
    CHECK_INT(d.act, DASH_ACT_REJECT);

    dash_ask(&d, DASH_ACT_APPROVE);
    CHECK_STR(d.input, "");
    CHECK_INT(dash_input_key(&d, 27), DASH_INPUT_ABORT);  // Esc
    CHECK_INT(d.mode, DASH_MODE_NORMAL);
    // A long note stops growing at the buffer, still ended.
    dash_ask(&d, DASH_ACT_APPROVE);
    for (int i = 0; i < 1000; i++) {
        dash_input_key(&d, 'x');
    }
    CHECK_INT(strlen(d.input), sizeof d.input - 1);

    dash_ask(&d, DASH_ACT_CANCEL);
    CHECK_INT(d.mode, DASH_MODE_CONFIRM);
    CHECK_INT(dash_input_key(&d, 'x'), DASH_INPUT_MORE);
    CHECK_INT(dash_input_key(&d, 'y'), DASH_INPUT_DONE);
    dash_ask(&d, DASH_ACT_CANCEL);
    CHECK_INT(dash_input_key(&d, 'n'), DASH_INPUT_ABORT);
    dash_release(&d);
}

static void
test_output(void)
{
    dash_t d;
    dash_init(&d);
    const uint8_t text[] = {'a', 0, 'b'};
    dash_set_output(&d, "t", text, sizeof text, DASH_OUT_GATE);
    CHECK_INT(d.output_len, 3);
    CHECK(d.out_kind == DASH_OUT_GATE && memcmp(d.output, text, 3) == 0);
    CHECK_STR(d.out_task, "t");
    dash_set_output(&d, "u", NULL, 0, DASH_OUT_FINAL);
    CHECK_STR(d.output, "");
    dash_release(&d);
}

// Rows of a text in a pane: lines, long ones wrapped, a window of them.
static void
test_wrap(void)
{
    const char *t = "abcdefgh\n\nxy\nlast";
    dash_span_t r[8];
    // Width 3: "abc" "def" "gh" "" "xy" "las" "t".
    CHECK_INT(dash_wrap(t, strlen(t), 3, 0, NULL, 0), 7);
    CHECK_INT(dash_wrap(t, strlen(t), 3, 0, r, 8), 7);
    CHECK_INT(r[0].at, 0);
    CHECK_INT(r[0].len, 3);
    CHECK_INT(r[2].len, 2);   // "gh"
    CHECK_INT(r[3].len, 0);   // the empty line
    CHECK_INT(r[4].at, 10);   // "xy"
    CHECK_INT(r[6].len, 1);   // "t"
    // A window: rows 4 and 5 only.
    dash_span_t w[2];
    CHECK_INT(dash_wrap(t, strlen(t), 3, 4, w, 2), 7);
    CHECK_INT(w[0].at, 10);
    CHECK_INT(w[1].at, 13);
    CHECK_INT(w[1].len, 3);
    // A trailing newline adds no row; nothing is no rows; width 0 is 1.
    CHECK_INT(dash_wrap("a\n", 2, 10, 0, NULL, 0), 1);
    CHECK_INT(dash_wrap("", 0, 10, 0, NULL, 0), 0);
    CHECK_INT(dash_wrap("abc", 3, 0, 0, NULL, 0), 3);
}

static const t_case_t t_cases[] = {
    T(test_layout_fits),
    T(test_layout_80x24),
    T(test_bar),
    T(test_duration),
    T(test_lines),
    T(test_selection),
    T(test_lease_left),
    T(test_scroll),
    T(test_events_ring),
    T(test_input),
    T(test_output),
    T(test_wrap),
    {0},
};

T_MAIN(t_cases)
