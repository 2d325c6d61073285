// plan_show: a workplan as a tree a person can check before it is
// submitted — tasks in dependency order, indented by depth, with kind,
// argv, needs and requires.  What the model wrote is untrusted: every
// string is escaped before it reaches the terminal, and a huge plan shows
// its first S_SHOW_MAX tasks only.
#include "architect/arch.h"

#include "common/log.h"
#include "common/xalloc.h"

#include <stdlib.h>
#include <string.h>

#define S_SHOW_MAX 200      // tasks shown
#define S_JOIN_MAX 10       // needs or tags shown per task
#define S_LINE_MAX 100      // characters of argv shown

// argv as one line, an argument in quotes when it holds blanks or shell
// characters (for reading, not for pasting), escaped for the terminal and
// cut at about S_LINE_MAX characters.  Caller frees.
static char *
s_argv_line(const wp_task_t *t)
{
    char *line = xstrdup("");
    for (size_t i = 0; i < t->n_argv && strlen(line) < S_LINE_MAX; i++) {
        const char *arg = t->argv[i];
        bool quote = !arg[0] || strpbrk(arg, " \t\n'\"$\\|&;<>(){}*?") != NULL;
        char *more = xasprintf("%s%s%s%.*s%s", line, i ? " " : "",
                               quote ? "'" : "", S_LINE_MAX, arg,
                               quote ? "'" : "");
        free(line);
        line = more;
    }
    if (strlen(line) > S_LINE_MAX) {
        strcpy(line + S_LINE_MAX - 3, "...");
    }
    char *safe = log_escape(line);
    free(line);
    return safe;
}

// "a, b, c" — at most S_JOIN_MAX items, then "(+N more)".  Caller frees.
static char *
s_join(char **items, size_t n)
{
    char *out = xstrdup("");
    for (size_t i = 0; i < n && i < S_JOIN_MAX; i++) {
        char *more = xasprintf("%s%s%s", out, i ? ", " : "", items[i]);
        free(out);
        out = more;
    }
    if (n > S_JOIN_MAX) {
        char *more = xasprintf("%s (+%zu more)", out, n - S_JOIN_MAX);
        free(out);
        out = more;
    }
    return out;
}

// Who needs each task, in one array: the dependents of task t are
// dep[first[t]] .. dep[first[t + 1] - 1].  Caller frees *first and *dep.
static void
s_dependents(const workplan_t *wp, size_t **first_p, size_t **dep_p)
{
    size_t n = wp->n_tasks;
    size_t *first = xcalloc(n + 1, sizeof *first);
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < wp->tasks[i].n_needs; k++) {
            first[wp->tasks[i].need_idx[k] + 1]++;
        }
    }
    for (size_t i = 0; i < n; i++) {
        first[i + 1] += first[i];
    }
    size_t *fill = xcalloc(n, sizeof *fill);
    size_t *dep = xcalloc(first[n] + 1, sizeof *dep);
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < wp->tasks[i].n_needs; k++) {
            size_t need = wp->tasks[i].need_idx[k];
            dep[first[need] + fill[need]++] = i;
        }
    }
    free(fill);
    *first_p = first;
    *dep_p = dep;
}

// Tasks in dependency order (Kahn's algorithm: the roots as written, then
// each task once everything it needs is placed), with their depth in the DAG — linear in tasks
// plus edges, as a plan may hold 100,000 tasks.  wp is valid: acyclic.
static void
s_order(const workplan_t *wp, size_t *order, int *depth)
{
    size_t n = wp->n_tasks, head = 0, tail = 0, *first, *dep;
    s_dependents(wp, &first, &dep);
    size_t *waiting = xcalloc(n, sizeof *waiting);   // needs not yet placed
    for (size_t i = 0; i < n; i++) {
        waiting[i] = wp->tasks[i].n_needs;
        if (waiting[i] == 0) {
            order[tail++] = i;
        }
    }
    while (head < tail) {
        size_t t = order[head++];
        for (size_t e = first[t]; e < first[t + 1]; e++) {
            size_t d = dep[e];
            depth[d] = depth[t] + 1 > depth[d] ? depth[t] + 1 : depth[d];
            if (--waiting[d] == 0) {
                order[tail++] = d;
            }
        }
    }
    free(waiting);
    free(dep);
    free(first);
}

// mark: NULL for the tree's own ("•" at the root, "└" below), else what
// an amendment does to the task ("+" added, "~" replaced).
static void
s_show_task(FILE *out, const wp_task_t *t, int depth, const char *mark)
{
    int indent = 2 + 2 * (depth < 10 ? depth : 10);
    char *argv = s_argv_line(t);
    fprintf(out, "%*s%s %s  [%s] %s\n", indent, "",
            mark ? mark : depth ? "└" : "•", t->id,
            workplan_kind_name(t->kind), argv);
    if (t->n_needs || t->n_requires) {
        char *needs = s_join(t->needs, t->n_needs);
        char *req = s_join(t->requires, t->n_requires);
        fprintf(out, "%*s    %s%s%s%s%s\n", indent, "",
                t->n_needs ? "needs: " : "", needs,
                t->n_needs && t->n_requires ? "; " : "",
                t->n_requires ? "requires: " : "", req);
        free(req);
        free(needs);
    }
    free(argv);
}

void
plan_show_tree(FILE *out, const workplan_t *wp)
{
    char *name = log_escape(wp->name);
    char *goal = log_escape(wp->goal ? wp->goal : "");
    fprintf(out, "workplan '%s'%s%s — %zu task%s, in dependency order:\n",
            name, goal[0] ? ": " : "", goal, wp->n_tasks,
            wp->n_tasks == 1 ? "" : "s");
    size_t *order = xcalloc(wp->n_tasks, sizeof *order);
    int *depth = xcalloc(wp->n_tasks, sizeof *depth);
    s_order(wp, order, depth);
    for (size_t i = 0; i < wp->n_tasks && i < S_SHOW_MAX; i++) {
        s_show_task(out, &wp->tasks[order[i]], depth[order[i]], NULL);
    }
    if (wp->n_tasks > S_SHOW_MAX) {
        fprintf(out, "  … and %zu more tasks; --out FILE saves them all\n",
                wp->n_tasks - S_SHOW_MAX);
    }
    free(depth);
    free(order);
    free(goal);
    free(name);
}

// What an amendment does to task i of the amended whole: "+", "~" or NULL.
static const char *
s_mark(const amend_t *a, size_t i)
{
    if (i >= a->n_old) {
        return "+";
    }
    for (size_t k = 0; k < a->n_replaced; k++) {
        if (a->replaced[k] == i) {
            return "~";
        }
    }
    return NULL;
}

void
plan_show_amendment(FILE *out, const amend_t *a)
{
    const workplan_t *wp = a->wp;
    fprintf(out, "amendment: %zu added (+), %zu replaced (~), %zu cancelled "
            "(-); in dependency order:\n", wp->n_tasks - a->n_old,
            a->n_replaced, a->n_cancelled);
    size_t *order = xcalloc(wp->n_tasks, sizeof *order);
    int *depth = xcalloc(wp->n_tasks, sizeof *depth);
    s_order(wp, order, depth);
    size_t shown = 0;
    for (size_t i = 0; i < wp->n_tasks && shown < S_SHOW_MAX; i++) {
        const char *mark = s_mark(a, order[i]);
        if (mark) {
            s_show_task(out, &wp->tasks[order[i]], depth[order[i]], mark);
            shown++;
        }
    }
    for (size_t k = 0; k < a->n_cancelled && shown < S_SHOW_MAX; k++, shown++) {
        char *id = log_escape(wp->tasks[a->cancelled[k]].id);
        fprintf(out, "  - %s  (cancelled)\n", id);
        free(id);
    }
    free(depth);
    free(order);
}
