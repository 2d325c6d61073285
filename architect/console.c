// console: ncurses drawing and keys for the dashboard (console.h).
#include "architect/console.h"

#include <curses.h>
#include <locale.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { S_PAIR_GATE = 1, S_PAIR_DOWN, S_PAIR_TITLE };

static bool s_open;

void
console_close(void)
{
    if (s_open) {
        s_open = false;
        endwin();
    }
}

int
console_open(void)
{
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        return -1;
    }
    setlocale(LC_ALL, "");
    initscr();
    s_open = true;
    atexit(console_close);
    cbreak();
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    nodelay(stdscr, TRUE);
    curs_set(0);
    set_escdelay(25);
    if (has_colors()) {
        start_color();
        use_default_colors();
        init_pair(S_PAIR_GATE, COLOR_BLACK, COLOR_YELLOW);
        init_pair(S_PAIR_DOWN, COLOR_WHITE, COLOR_RED);
        init_pair(S_PAIR_TITLE, COLOR_CYAN, -1);
    }
    return 0;
}

int
console_key(void)
{
    int ch = getch();
    switch (ch) {
    case ERR:
        return CONSOLE_KEY_NONE;
    case KEY_UP:
        return CONSOLE_KEY_UP;
    case KEY_DOWN:
        return CONSOLE_KEY_DOWN;
    case KEY_PPAGE:
        return CONSOLE_KEY_PGUP;
    case KEY_NPAGE:
        return CONSOLE_KEY_PGDN;
    case KEY_RESIZE:
        return CONSOLE_KEY_RESIZE;
    case KEY_ENTER:
    case '\r':
        return '\n';
    case KEY_BACKSPACE:
    case 8:
        return 127;
    default:
        return ch;
    }
}

// Writes at most w columns of text at (y, x): control characters (a
// task's output may hold any byte) show as '?', the rest is blanked.
static void
s_put(int y, int x, int w, const char *text, size_t len)
{
    if (y < 0 || y >= LINES || x < 0 || x >= COLS) {
        return;
    }
    w = w > COLS - x ? COLS - x : w;  // never wrap onto the next row
    move(y, x);
    int col = 0;
    for (size_t i = 0; i < len && col < w; i++, col++) {
        unsigned char c = (unsigned char) text[i];
        addch(c < 32 || c == 127 ? '?' : c);
    }
    for (; col < w; col++) {
        addch(' ');
    }
}

static void
s_line(int y, int x, int w, const char *text)
{
    s_put(y, x, w, text, strlen(text));
}

static void
s_title(const dash_t *d, const dash_rect_t *r, dash_pane_t pane,
        const char *text)
{
    bool cur = (int) pane >= 0 && d->pane == pane;
    attr_t a = cur ? A_REVERSE | A_BOLD : A_BOLD | COLOR_PAIR(S_PAIR_TITLE);
    attron(a);
    s_line(r->y, r->x, r->w, text);
    attroff(a);
}

static void
s_header(const dash_t *d)
{
    char line[DASH_LINE + 200];
    uint32_t gates = dash_gates_waiting(d);
    snprintf(line, sizeof line, " waggle watch  %s  %s", d->whoami[0]
             ? d->whoami : "(key?)", d->link_up ? d->link
                                                : "BROKER UNREACHABLE");
    attr_t a = d->link_up ? A_REVERSE : COLOR_PAIR(S_PAIR_DOWN) | A_BOLD;
    attron(a);
    s_line(0, 0, COLS, line);
    attroff(a);
    if (gates) {
        snprintf(line, sizeof line, " %u gate%s waiting ", gates,
                 gates == 1 ? "" : "s");
        int w = (int) strlen(line);
        attron(COLOR_PAIR(S_PAIR_GATE) | A_BOLD);
        s_line(0, COLS - w > 0 ? COLS - w : 0, w, line);
        attroff(COLOR_PAIR(S_PAIR_GATE) | A_BOLD);
    }
}

// The rows of a list pane, scrolled to keep the selection in view.
static void
s_list(const dash_t *d, const dash_rect_t *r, dash_pane_t pane,
       int64_t now_ms)
{
    int n = (int) dash_rows(d, pane), h = r->h - 1;
    int top = dash_scroll(d->sel[pane], n, h);
    for (int k = 0; k < h; k++) {
        int i = top + k;
        char line[DASH_LINE] = "";
        attr_t a = A_NORMAL;
        const proto_status_ok_t *ov = d->overview ? &d->overview->u.status_ok
                                                  : NULL;
        if (i < n && pane == DASH_PANE_PLANS) {
            dash_plan_line(&ov->plans[i], r->w, line);
            a = ov->plans[i].id == d->open_plan ? A_BOLD : A_NORMAL;
        } else if (i < n && pane == DASH_PANE_DRONES) {
            dash_drone_line(&ov->drones[i], now_ms, r->w, line);
        } else if (i < n && pane == DASH_PANE_TASKS) {
            const proto_task_info_t *t = &d->plan->u.status_ok.tasks[i];
            dash_task_line(t, dash_lease_left(d, d->open_plan, t->id, now_ms),
                           dash_task_duration(t, now_ms), r->w, line);
            a = t->state == PROTO_TASK_AWAITING_APPROVAL
                    ? COLOR_PAIR(S_PAIR_GATE) | A_BOLD : A_NORMAL;
        }
        if (i < n && i == d->sel[pane] && d->pane == pane) {
            a |= A_REVERSE;
        }
        attron(a);
        s_line(r->y + 1 + k, r->x, r->w, line);
        attroff(a);
    }
}

static void
s_events(const dash_t *d, const dash_rect_t *r)
{
    int h = r->h - 1;
    size_t n = dash_rows(d, DASH_PANE_EVENTS);
    for (int k = 0; k < h; k++) {
        // The newest at the bottom.
        size_t back = (size_t) (h - k);
        const char *text = "";
        if (back <= n) {
            text = d->events[(d->n_events - back) % DASH_EVENT_LINES];
        }
        s_line(r->y + 1 + k, r->x, r->w, text);
    }
}

// The output pane, long lines wrapped: a gate's text and an explanation
// from the top (the question first), a task's output as its tail (the
// newest lines).
static void
s_output(const dash_t *d, const dash_rect_t *r)
{
    const char *text = d->output ? d->output : "";
    size_t h = r->h > 1 ? (size_t) r->h - 1 : 0;
    dash_span_t rows[256];
    h = h > 256 ? 256 : h;
    size_t n = dash_wrap(text, d->output_len, r->w, 0, rows, 0);
    bool top = d->out_kind == DASH_OUT_GATE || d->out_kind == DASH_OUT_WHY;
    size_t skip = top || n <= h ? 0 : n - h;
    dash_wrap(text, d->output_len, r->w, skip, rows, h);
    for (size_t k = 0; k < h; k++) {
        const dash_span_t *row = &rows[k];
        bool have = skip + k < n;
        s_put(r->y + 1 + (int) k, r->x, r->w, have ? text + row->at : "",
              have ? row->len : 0);
    }
}

static void
s_status(const dash_t *d, const dash_rect_t *r)
{
    char line[DASH_LINE + 300];
    static const char *const ask[] = {
        [DASH_ACT_APPROVE] = "approve: note (optional), Enter sends, Esc "
                             "drops: ",
        [DASH_ACT_REJECT] = "reject: note (required), Enter sends, Esc "
                            "drops: ",
    };
    if (d->mode == DASH_MODE_NOTE && d->act < DASH_ACT_CANCEL) {
        snprintf(line, sizeof line, "%s%s_", ask[d->act], d->input);
    } else {
        snprintf(line, sizeof line, "%s", d->status);
    }
    attr_t a = d->mode == DASH_MODE_NORMAL ? A_NORMAL : A_BOLD;
    attron(a);
    s_line(r->y, r->x, r->w, line);
    attroff(a);
}

static void
s_help(void)
{
    static const char *const lines[] = {
        " keys",
        " Up/k Down/j  move",
        " PgUp PgDn    move by 10",
        " Tab          next pane",
        " Enter        open the plan",
        " a            approve the gate",
        " r            reject (a note)",
        " c            cancel (y/n)",
        " R            retry the task",
        " e            why (again: back)",
        " q            quit",
        " any key closes this",
    };
    int n = (int) (sizeof lines / sizeof lines[0]), w = 32;
    int y = (LINES - n) / 2, x = (COLS - w) / 2;
    attron(A_REVERSE);
    for (int i = 0; i < n; i++) {
        s_line(y + i, x < 0 ? 0 : x, w, lines[i]);
    }
    attroff(A_REVERSE);
}

static void
s_panes(const dash_t *d, const dash_layout_t *l, int64_t now_ms)
{
    char t[DASH_LINE];
    s_title(d, &l->plans, DASH_PANE_PLANS, " Plans");
    s_list(d, &l->plans, DASH_PANE_PLANS, now_ms);
    dash_drone_title(l->drones.w, t);
    s_title(d, &l->drones, DASH_PANE_DRONES, t);
    s_list(d, &l->drones, DASH_PANE_DRONES, now_ms);
    dash_task_title(d->open_plan, l->tasks.w, t);
    s_title(d, &l->tasks, DASH_PANE_TASKS, t);
    s_list(d, &l->tasks, DASH_PANE_TASKS, now_ms);
    static const char *const what[] = {
        [DASH_OUT_FINAL] = "Output of", [DASH_OUT_LIVE] = "Live output of",
        [DASH_OUT_GATE] = "Gate shows:", [DASH_OUT_WHY] = "Why:"};
    snprintf(t, sizeof t, " %s %s", what[d->out_kind],
             d->out_task ? d->out_task : "-");
    s_title(d, &l->output, (dash_pane_t) -1, t);
    s_output(d, &l->output);
    s_title(d, &l->events, DASH_PANE_EVENTS, " Events");
    s_events(d, &l->events);
}

void
console_draw(const dash_t *d, int64_t now_ms)
{
    dash_layout_t l;
    dash_layout(LINES, COLS, &l);
    erase();
    s_header(d);
    if (l.too_small) {
        s_line(1, 0, COLS, "terminal too small for the dashboard");
    } else {
        s_panes(d, &l, now_ms);
    }
    s_status(d, &l.status);
    if (d->mode == DASH_MODE_HELP) {
        s_help();
    }
    refresh();
}
