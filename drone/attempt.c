// attempt: inputs, argv and environment for a TASK; a RESULT from a child.
#include "drone/attempt.h"

#include "common/workplan.h"
#include "common/xalloc.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

// Linux's MAX_ARG_STRLEN: the most one argv or environment string may hold.
#define ARG_MAX_BYTES 131072

typedef struct {
    char **items;
    size_t n, cap;
} s_vec_t;

static void
s_vec_push(s_vec_t *v, char *s)
{
    if (v->n + 1 >= v->cap) {
        v->cap = v->cap ? v->cap * 2 : 32;
        v->items = xrealloc(v->items, v->cap * sizeof *v->items);
    }
    v->items[v->n++] = s;
    v->items[v->n] = NULL;
}

static void
s_free_strv(char **v)
{
    for (size_t i = 0; v && v[i]; i++) {
        free(v[i]);
    }
    free(v);
}

static int
s_write_file(const char *path, const uint8_t *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        return -1;
    }
    size_t n = len ? fwrite(data, 1, len, f) : 0;
    return (fclose(f) == 0 && n == len) ? 0 : -1;
}

static char *
s_write_inputs(attempt_t *a, const proto_task_t *t)
{
    if (mkdir(a->input_dir, 0700) < 0 && errno != EEXIST) {
        return xasprintf("cannot create '%s': %s", a->input_dir,
                         strerror(errno));
    }
    for (size_t i = 0; i < t->n_inputs; i++) {
        const proto_input_t *in = &t->inputs[i];
        if (in->truncated) {
            return xasprintf("input '%s' was truncated at the output cap",
                             in->id);
        }
        char *path = xasprintf("%s/%s", a->input_dir, in->id);
        int rc = s_write_file(path, in->data.data, in->data.len);
        free(path);
        if (rc < 0) {
            return xasprintf("cannot write input '%s': %s", in->id,
                             strerror(errno));
        }
    }
    return NULL;
}

extern char **environ;

// Whether the kernel can carry this value in an environment string.
static bool
s_env_safe(const proto_input_t *in)
{
    return in->data.len < ARG_MAX_BYTES - 64 &&
           !memchr(in->data.data ? (const void *) in->data.data : "", 0,
                   in->data.len);
}

static void
s_build_env(const attempt_t *a, const proto_task_t *t, s_vec_t *env)
{
    // The drone's own WAGGLE_* settings are not the task's business.
    for (char **e = environ; *e; e++) {
        if (strncmp(*e, "WAGGLE_", 7) != 0) {
            s_vec_push(env, xstrdup(*e));
        }
    }
    for (size_t i = 0; i < t->n_env; i++) {
        s_vec_push(env, xasprintf("%s=%s", t->env[i].key, t->env[i].value));
    }
    s_vec_push(env, xasprintf("WAGGLE_PLAN=%lld", (long long) t->plan));
    s_vec_push(env, xasprintf("WAGGLE_PLAN_NAME=%s",
                              t->plan_name ? t->plan_name : ""));
    s_vec_push(env, xasprintf("WAGGLE_TASK=%s", t->task));
    s_vec_push(env, xasprintf("WAGGLE_TASK_TOKEN=%llu",
                              (unsigned long long) t->token));
    s_vec_push(env, xasprintf("WAGGLE_ATTEMPT=%u", t->attempt));
    s_vec_push(env, xasprintf("WAGGLE_INPUT_DIR=%s", a->input_dir));
    for (size_t i = 0; i < t->n_inputs; i++) {
        const proto_input_t *in = &t->inputs[i];
        if (!s_env_safe(in)) {
            continue;  // the file in WAGGLE_INPUT_DIR is its channel
        }
        char *name = workplan_input_var(in->id);
        s_vec_push(env, xasprintf("%s=%.*s", name, (int) in->data.len,
                                  in->data.data ? (char *) in->data.data
                                                : ""));
        free(name);
    }
}

static char *
s_build_argv(const proto_task_t *t, s_vec_t *argv)
{
    wp_value_t *vals = xcalloc(t->n_inputs + 1, sizeof *vals);
    for (size_t i = 0; i < t->n_inputs; i++) {
        vals[i].id = t->inputs[i].id;
        vals[i].data = t->inputs[i].data.data;
        vals[i].len = t->inputs[i].data.len;
        vals[i].truncated = t->inputs[i].truncated;
    }
    char *why = NULL;
    for (size_t i = 0; i < t->argv.count && !why; i++) {
        char *out = NULL;
        if (workplan_expand(t->argv.items[i], vals, t->n_inputs,
                            ARG_MAX_BYTES, &out, &why) == 0) {
            s_vec_push(argv, out);
        }
    }
    free(vals);
    if (!why && argv->n == 0) {
        why = xstrdup("the task has an empty argv");
    }
    return why;
}

char *
attempt_prepare(attempt_t *a, const proto_task_t *t, const char *scratch)
{
    a->input_dir = xasprintf("%s/%llu", scratch,
                             (unsigned long long) t->token);
    s_vec_t argv = {0}, env = {0};
    char *why = s_write_inputs(a, t);
    if (!why) {
        why = s_build_argv(t, &argv);
    }
    if (!why) {
        s_build_env(a, t, &env);
    }
    a->argv = argv.items;
    a->envp = env.items;
    return why;
}

void
attempt_release(attempt_t *a)
{
    s_free_strv(a->argv);
    s_free_strv(a->envp);
    a->argv = a->envp = NULL;
}

static char *
s_describe(const runner_result_t *r)
{
    if (r->error) {
        return xstrdup(r->error);
    }
    if (r->timed_out) {
        return xstrdup("timed out; its process group was killed");
    }
    if (r->signal) {
        return xasprintf("killed by signal %d (%s)", r->signal,
                         strsignal(r->signal));
    }
    if (r->exit_code != 0) {
        return xasprintf("exited with status %d", r->exit_code);
    }
    return NULL;
}

void
attempt_result(proto_result_t *pr, runner_result_t *r, bool released)
{
    bool ok = r->spawned && r->exit_code == 0 && !r->signal && !r->timed_out;
    pr->outcome = released ? PROTO_OUTCOME_RELEASED
                  : ok     ? PROTO_OUTCOME_SUCCEEDED
                           : PROTO_OUTCOME_FAILED;
    pr->exit_code = r->exit_code;
    pr->signal = r->signal;
    pr->timed_out = r->timed_out;
    pr->error = released ? xstrdup("handed back: the drone is leaving")
                         : s_describe(r);
    pr->out.data = r->out;
    pr->out.len = r->out_len;
    pr->out_truncated = r->out_truncated;
    pr->err.data = r->err;
    pr->err.len = r->err_len;
    pr->err_truncated = r->err_truncated;
    pr->duration_ms = r->duration_ms;
    r->out = r->err = NULL;
}

static int
s_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void) sb;
    (void) flag;
    (void) ftw;
    return remove(path);
}

void
attempt_remove_dir(const char *dir)
{
    if (dir) {
        nftw(dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
    }
}
