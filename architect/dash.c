// dash: the dashboard's state, layout and lines; no drawing (dash.h).
#include "architect/dash.h"

#include "common/xalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// Bar segments in the order drawn, and the states each one counts.
enum { S_SEG_DONE, S_SEG_RUN, S_SEG_GATE, S_SEG_BAD, S_SEG_REST, S_SEGS };
static const char s_seg_char[S_SEGS] = {'#', '>', '?', '!', '.'};

void
dash_init(dash_t *d)
{
    memset(d, 0, sizeof *d);
    snprintf(d->status, sizeof d->status, "? help  q quit");
}

void
dash_release(dash_t *d)
{
    proto_msg_destroy(&d->overview);
    proto_msg_destroy(&d->plan);
    free(d->out_task);
    free(d->output);
    memset(d, 0, sizeof *d);
}

static dash_rect_t
s_rect(int y, int x, int h, int w)
{
    return (dash_rect_t){.y = y, .x = x, .h = h, .w = w};
}

void
dash_layout(int rows, int cols, dash_layout_t *out)
{
    memset(out, 0, sizeof *out);
    out->header = s_rect(0, 0, 1, cols);
    out->status = s_rect(rows - 1, 0, 1, cols);
    if (rows < DASH_MIN_ROWS || cols < DASH_MIN_COLS) {
        out->too_small = true;
        return;
    }
    // Between header and status: plans and drones on top, tasks and output
    // in the middle (the largest part), the event log below.
    int body = rows - 2;
    int top = body * 3 / 10 < 4 ? 4 : body * 3 / 10;
    int bottom = body / 4 < 3 ? 3 : body / 4;
    int middle = body - top - bottom;
    // One blank column between left and right; the tasks pane has more
    // columns than the plans pane.
    int left = cols / 2, mid = cols * 3 / 5;
    out->plans = s_rect(1, 0, top, left - 1);
    out->drones = s_rect(1, left, top, cols - left);
    out->tasks = s_rect(1 + top, 0, middle, mid - 1);
    out->output = s_rect(1 + top, mid, middle, cols - mid);
    out->events = s_rect(1 + top + middle, 0, bottom, cols);
}

static int
s_segment(proto_task_state_t s)
{
    switch (s) {
    case PROTO_TASK_SUCCEEDED:
        return S_SEG_DONE;
    case PROTO_TASK_LEASED:
        return S_SEG_RUN;
    case PROTO_TASK_AWAITING_APPROVAL:
        return S_SEG_GATE;
    case PROTO_TASK_DEAD:
    case PROTO_TASK_REJECTED:
    case PROTO_TASK_BLOCKED:
    case PROTO_TASK_CANCELLED:
        return S_SEG_BAD;
    default:
        return S_SEG_REST;
    }
}

// Widths per segment summing to width: proportional, at least one column
// for a segment with tasks, the difference taken from or given to the
// widest.
static void
s_bar_widths(const uint64_t n[S_SEGS], uint64_t total, int width,
             int w[S_SEGS])
{
    int sum = 0, widest = 0;
    for (int i = 0; i < S_SEGS; i++) {
        w[i] = (int) (n[i] * (uint64_t) width / total);
        if (n[i] > 0 && w[i] == 0) {
            w[i] = 1;
        }
        sum += w[i];
        // Only segments already sized are compared (w[widest], widest <= i).
        widest = w[i] > w[widest] ? i : widest;
    }
    w[widest] += width - sum;
    if (w[widest] < 0) {
        w[widest] = 0;  // a width narrower than the segments: cut at width
    }
}

void
dash_bar(const uint32_t counts[PROTO_TASK__COUNT], int width, char *buf)
{
    uint64_t n[S_SEGS] = {0}, total = 0;
    for (int s = 0; s < PROTO_TASK__COUNT; s++) {
        n[s_segment((proto_task_state_t) s)] += counts[s];
        total += counts[s];
    }
    if (width <= 0) {
        buf[0] = '\0';
        return;
    }
    if (total == 0) {
        memset(buf, '.', (size_t) width);
        buf[width] = '\0';
        return;
    }
    int w[S_SEGS], at = 0;
    s_bar_widths(n, total, width, w);
    for (int i = 0; i < S_SEGS; i++) {
        for (int k = 0; k < w[i] && at < width; k++) {
            buf[at++] = s_seg_char[i];
        }
    }
    buf[at] = '\0';
}

void
dash_duration(int64_t ms, char *buf, size_t len)
{
    int64_t s = ms / 1000;
    if (ms < 0) {
        snprintf(buf, len, "-");
    } else if (ms < 1000) {
        snprintf(buf, len, "%lldms", (long long) ms);
    } else if (s < 60) {
        snprintf(buf, len, "%llds", (long long) s);
    } else if (s < 3600) {
        snprintf(buf, len, "%lldm%02llds", (long long) (s / 60),
                 (long long) (s % 60));
    } else if (s < 86400) {
        snprintf(buf, len, "%lldh%02lldm", (long long) (s / 3600),
                 (long long) (s % 3600 / 60));
    } else {
        snprintf(buf, len, "%lldd%02lldh", (long long) (s / 86400),
                 (long long) (s % 86400 / 3600));
    }
}

const char *
dash_state_label(proto_task_state_t s)
{
    switch (s) {
    case PROTO_TASK_LEASED:
        return "running";
    case PROTO_TASK_AWAITING_APPROVAL:
        return "AWAITING";
    default:
        return proto_task_state_name(s);
    }
}

// Cuts buf (a line being built) to width columns (bytes: the names are
// ASCII on the wire, and a cut multibyte tail shows as one odd character).
static void
s_cut(char *buf, int width)
{
    if (width >= 0 && width < DASH_LINE && (int) strlen(buf) > width) {
        buf[width] = '\0';
    }
}

void
dash_plan_line(const proto_plan_info_t *p, int width, char *buf)
{
    uint32_t total = 0;
    for (int s = 0; s < PROTO_TASK__COUNT; s++) {
        total += p->counts[s];
    }
    char head[64], tail[64], bar[256];
    snprintf(head, sizeof head, "%3lld %-12.12s ", (long long) p->id,
             p->name ? p->name : "");
    snprintf(tail, sizeof tail, " %u/%u %s", p->counts[PROTO_TASK_SUCCEEDED],
             total, p->state ? p->state : "");
    int bw = width - (int) strlen(head) - (int) strlen(tail) - 2;
    bw = bw > (int) sizeof bar - 1 ? (int) sizeof bar - 1 : bw;
    if (bw < 4) {
        snprintf(buf, DASH_LINE, "%s%s", head, tail + 1);
    } else {
        dash_bar(p->counts, bw, bar);
        snprintf(buf, DASH_LINE, "%s[%s]%s", head, bar, tail);
    }
    s_cut(buf, width);
}

// Task columns: id, state, attempts, drone, lease left, duration.
#define S_TASK_FMT "%-11.11s %-9.9s %3.3s %-8.8s %5.5s %6.6s"

void
dash_task_line(const proto_task_info_t *t, int64_t lease_left_ms,
               int64_t duration_ms, int width, char *buf)
{
    char att[16], lease[16], dur[16];
    // The attempt's number among all (a retry does not reset it); a broker
    // without it: the attempts used.
    snprintf(att, sizeof att, "%u", t->attempt ? t->attempt : t->attempts);
    dash_duration(lease_left_ms, lease, sizeof lease);
    dash_duration(duration_ms, dur, sizeof dur);
    snprintf(buf, DASH_LINE, S_TASK_FMT, t->id ? t->id : "",
             dash_state_label(t->state), att, t->drone ? t->drone : "-",
             lease, dur);
    s_cut(buf, width);
}

void
dash_task_title(int64_t plan, int width, char *buf)
{
    char id[32];
    snprintf(id, sizeof id, "plan %lld", (long long) plan);
    snprintf(buf, DASH_LINE, S_TASK_FMT, plan ? id : "tasks", "state", "att",
             "drone", "lease", "time");
    s_cut(buf, width);
}

// Drone columns: name, host, slots used/total, since the last heartbeat,
// QUAR (quarantined) or DRN (draining), tags.
#define S_DRONE_FMT "%-9.9s %-7.7s %5.5s %5.5s %-4.4s %s"

void
dash_drone_line(const proto_drone_info_t *d, int64_t now_ms, int width,
                char *buf)
{
    char hb[16], tags[DASH_LINE] = "";
    dash_duration(d->last_seen_ms > 0 && now_ms >= d->last_seen_ms
                      ? now_ms - d->last_seen_ms : -1, hb, sizeof hb);
    for (size_t i = 0; i < d->tags.count; i++) {
        size_t at = strlen(tags);
        snprintf(tags + at, sizeof tags - at, "%s%s", i ? "," : "",
                 d->tags.items[i]);
    }
    char used[24];
    snprintf(used, sizeof used, "%u/%u", d->leases, d->slots);
    snprintf(buf, DASH_LINE, S_DRONE_FMT, d->name ? d->name : "",
             d->host ? d->host : "", used, hb,
             d->quarantined ? "QUAR" : d->draining ? "DRN" : "", tags);
    s_cut(buf, width);
}

void
dash_drone_title(int width, char *buf)
{
    snprintf(buf, DASH_LINE, S_DRONE_FMT, "drones", "host", "used", "hb", "",
             "tags");
    s_cut(buf, width);
}

void
dash_event_line(const proto_event_t *e, char *buf)
{
    time_t secs = (time_t) (e->at_ms / 1000);
    struct tm tm;
    char when[16] = "?";
    if (gmtime_r(&secs, &tm)) {
        strftime(when, sizeof when, "%H:%M:%S", &tm);
    }
    char plan[24] = "";
    if (e->plan) {
        snprintf(plan, sizeof plan, "p%lld ", (long long) e->plan);
    }
    char change[160] = "";
    if (e->from || e->to) {
        snprintf(change, sizeof change, " %s->%s", e->from ? e->from : "-",
                 e->to ? e->to : "-");
    }
    snprintf(buf, DASH_LINE, "%s %s%s %s %s%s", when, plan,
             e->task ? e->task : "-", e->actor ? e->actor : "",
             e->kind ? e->kind : "", change);
    if (e->detail) {
        size_t at = strlen(buf);
        snprintf(buf + at, DASH_LINE - at, "  %s", e->detail);
    }
}

size_t
dash_rows(const dash_t *d, dash_pane_t pane)
{
    switch (pane) {
    case DASH_PANE_PLANS:
        return d->overview ? d->overview->u.status_ok.n_plans : 0;
    case DASH_PANE_DRONES:
        return d->overview ? d->overview->u.status_ok.n_drones : 0;
    case DASH_PANE_TASKS:
        return d->plan ? d->plan->u.status_ok.n_tasks : 0;
    case DASH_PANE_EVENTS:
        return d->n_events < DASH_EVENT_LINES ? d->n_events
                                              : DASH_EVENT_LINES;
    default:
        return 0;
    }
}

const proto_plan_info_t *
dash_sel_plan(const dash_t *d)
{
    size_t n = dash_rows(d, DASH_PANE_PLANS);
    int i = d->sel[DASH_PANE_PLANS];
    return n && i >= 0 && (size_t) i < n ? &d->overview->u.status_ok.plans[i]
                                         : NULL;
}

const proto_task_info_t *
dash_sel_task(const dash_t *d)
{
    size_t n = dash_rows(d, DASH_PANE_TASKS);
    int i = d->sel[DASH_PANE_TASKS];
    return n && i >= 0 && (size_t) i < n ? &d->plan->u.status_ok.tasks[i]
                                         : NULL;
}

uint32_t
dash_gates_waiting(const dash_t *d)
{
    uint32_t n = 0;
    for (size_t i = 0; i < dash_rows(d, DASH_PANE_PLANS); i++) {
        n += d->overview->u.status_ok.plans[i]
                 .counts[PROTO_TASK_AWAITING_APPROVAL];
    }
    return n;
}

// The lease of (plan, task) in the overview, or NULL.
static const proto_drone_task_t *
s_lease(const dash_t *d, int64_t plan, const char *task)
{
    for (size_t i = 0; i < dash_rows(d, DASH_PANE_DRONES); i++) {
        const proto_drone_info_t *o = &d->overview->u.status_ok.drones[i];
        for (size_t k = 0; k < o->n_tasks; k++) {
            if (o->tasks[k].plan == plan && o->tasks[k].task &&
                strcmp(o->tasks[k].task, task) == 0) {
                return &o->tasks[k];
            }
        }
    }
    return NULL;
}

static int64_t
s_left(const dash_t *d, const proto_drone_task_t *t, int64_t now_ms)
{
    if (!t || t->lease_left_ms < 0) {
        return -1;
    }
    int64_t left = t->lease_left_ms - (now_ms - d->overview_ms);
    return left > 0 ? left : 0;
}

int64_t
dash_lease_left(const dash_t *d, int64_t plan, const char *task,
                int64_t now_ms)
{
    return task ? s_left(d, s_lease(d, plan, task), now_ms) : -1;
}

int64_t
dash_task_duration(const proto_task_info_t *t, int64_t now_ms)
{
    if (t->started_ms <= 0) {
        return -1;
    }
    if (t->ended_ms == 0 && now_ms >= t->started_ms) {
        return now_ms - t->started_ms;  // running: ticks on screen
    }
    return t->duration_ms >= 0 ? t->duration_ms : -1;
}

int64_t
dash_lease_min(const dash_t *d, int64_t now_ms)
{
    int64_t min = -1;
    for (size_t i = 0; i < dash_rows(d, DASH_PANE_DRONES); i++) {
        const proto_drone_info_t *o = &d->overview->u.status_ok.drones[i];
        for (size_t k = 0; k < o->n_tasks; k++) {
            int64_t left = s_left(d, &o->tasks[k], now_ms);
            min = left >= 0 && (min < 0 || left < min) ? left : min;
        }
    }
    return min;
}

int
dash_scroll(int sel, int rows, int h)
{
    if (h <= 0 || rows <= h || sel < h / 2) {
        return 0;
    }
    int top = sel - h / 2;
    return top > rows - h ? rows - h : top;
}

static void
s_clamp(dash_t *d, dash_pane_t pane)
{
    int n = (int) dash_rows(d, pane);
    if (d->sel[pane] >= n) {
        d->sel[pane] = n - 1;
    }
    if (d->sel[pane] < 0) {
        d->sel[pane] = 0;
    }
}

void
dash_move(dash_t *d, int delta)
{
    d->sel[d->pane] += delta;
    s_clamp(d, d->pane);
}

void
dash_next_pane(dash_t *d)
{
    d->pane = (dash_pane_t) ((d->pane + 1) % DASH_PANE__COUNT);
}

void
dash_set_overview(dash_t *d, proto_msg_t **msg, int64_t now_ms)
{
    const proto_plan_info_t *was = dash_sel_plan(d);
    int64_t id = was ? was->id : 0;
    proto_msg_destroy(&d->overview);
    d->overview = *msg;
    d->overview_ms = now_ms;
    *msg = NULL;
    const proto_status_ok_t *st = &d->overview->u.status_ok;
    for (size_t i = 0; id && i < st->n_plans; i++) {
        if (st->plans[i].id == id) {
            d->sel[DASH_PANE_PLANS] = (int) i;
        }
    }
    s_clamp(d, DASH_PANE_PLANS);
    s_clamp(d, DASH_PANE_DRONES);
}

void
dash_set_plan(dash_t *d, proto_msg_t **msg)
{
    const proto_task_info_t *was = dash_sel_task(d);
    char *id = was && was->id ? xstrdup(was->id) : NULL;
    proto_msg_destroy(&d->plan);
    d->plan = *msg;
    *msg = NULL;
    const proto_status_ok_t *st = &d->plan->u.status_ok;
    for (size_t i = 0; id && i < st->n_tasks; i++) {
        if (st->tasks[i].id && strcmp(st->tasks[i].id, id) == 0) {
            d->sel[DASH_PANE_TASKS] = (int) i;
        }
    }
    free(id);
    s_clamp(d, DASH_PANE_TASKS);
}

void
dash_add_event(dash_t *d, const proto_event_t *e)
{
    dash_event_line(e, d->events[d->n_events % DASH_EVENT_LINES]);
    d->n_events++;
}

void
dash_set_output(dash_t *d, const char *task, const uint8_t *text,
                size_t len, dash_out_t kind)
{
    free(d->out_task);
    free(d->output);
    d->out_task = task ? xstrdup(task) : NULL;
    d->output = xmalloc(len + 1);
    if (len) {
        memcpy(d->output, text, len);
    }
    d->output[len] = '\0';
    d->output_len = len;
    d->out_kind = kind;
}

size_t
dash_wrap(const char *text, size_t len, int width, size_t skip,
          dash_span_t *out, size_t n)
{
    size_t rows = 0, at = 0, w = width > 0 ? (size_t) width : 1;
    while (at < len) {
        size_t end = at;
        while (end < len && end - at < w && text[end] != '\n') {
            end++;
        }
        if (rows >= skip && rows - skip < n) {
            out[rows - skip] = (dash_span_t){.at = at, .len = end - at};
        }
        rows++;
        // A newline ends the row; a full row goes on on the next.
        at = end < len && text[end] == '\n' ? end + 1 : end;
    }
    return rows;
}

void
dash_say(dash_t *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->status, sizeof d->status, fmt, ap);
    va_end(ap);
}

void
dash_ask(dash_t *d, dash_act_t act)
{
    d->act = act;
    d->input[0] = '\0';
    d->mode = act == DASH_ACT_CANCEL ? DASH_MODE_CONFIRM : DASH_MODE_NOTE;
}

// Keys as console.c passes them: Enter is '\n' (or '\r'), Esc 27,
// Backspace 127 or 8 (KEY_BACKSPACE is mapped by the console).
static dash_input_t
s_note_key(dash_t *d, int key)
{
    size_t n = strlen(d->input);
    if (key == '\n' || key == '\r') {
        return DASH_INPUT_DONE;
    }
    if (key == 27) {
        return DASH_INPUT_ABORT;
    }
    if ((key == 127 || key == 8) && n > 0) {
        d->input[n - 1] = '\0';
    } else if (key >= 32 && key < 127 && n + 1 < sizeof d->input) {
        d->input[n] = (char) key;
        d->input[n + 1] = '\0';
    }
    return DASH_INPUT_MORE;
}

dash_input_t
dash_input_key(dash_t *d, int key)
{
    dash_input_t r = DASH_INPUT_MORE;
    if (d->mode == DASH_MODE_NOTE) {
        r = s_note_key(d, key);
    } else if (d->mode == DASH_MODE_CONFIRM) {
        r = key == 'y' || key == 'Y'   ? DASH_INPUT_DONE
            : key == 'n' || key == 'N' || key == 27 ? DASH_INPUT_ABORT
                                                    : DASH_INPUT_MORE;
    }
    if (r != DASH_INPUT_MORE) {
        d->mode = DASH_MODE_NORMAL;
    }
    return r;
}
