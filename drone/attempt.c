// attempt: inputs, argv and environment for a TASK; a RESULT from a child.
#include "drone/attempt.h"

#include "common/workplan.h"
#include "common/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

// Linux's MAX_ARG_STRLEN: the most one argv or environment string may hold.
#define ARG_MAX_BYTES 131072
// WAGGLE_INPUT_<ID> values, each under ARG_MAX_BYTES - 128 (room for the
// longest name), and all together at most ENV_INPUTS_BYTES: the kernel
// refuses an exec whose strings pass a quarter of the stack limit (2 MiB
// with the usual 8 MiB), and a join of many big inputs must still start.
#define ENV_INPUT_MAX_BYTES (ARG_MAX_BYTES - 128)
#define ENV_INPUTS_BYTES (1024 * 1024)

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

// Creates path afresh (never follows or reuses what is there) and gives it
// to the task's user.
static int
s_write_file(const char *path, const uint8_t *data, size_t len,
             const attempt_opts_t *o)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  0600);
    if (fd < 0) {
        return -1;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, data + done, len - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        done += (size_t) n;
    }
    int rc = done == len ? 0 : -1;
    if (rc == 0 && o->uid != (uid_t) -1 && fchown(fd, o->uid, o->gid) != 0) {
        rc = -1;
    }
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

static int
s_mkdir_owned(const char *path, const attempt_opts_t *o)
{
    if (mkdir(path, 0700) != 0) {
        return -1;
    }
    return o->uid != (uid_t) -1 ? lchown(path, o->uid, o->gid) : 0;
}

// 32 hex digits from the kernel's generator: nothing a task sees (token,
// instance id, its own name) leads to another attempt's directory.
static char *
s_random_dir(const char *base)
{
    uint8_t raw[16];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t) sizeof raw) {
        // Like OOM: without randomness the names would be guessable.
        fprintf(stderr, "waggle: getrandom failed: %s\n", strerror(errno));
        abort();
    }
    char hex[2 * sizeof raw + 1];
    for (size_t i = 0; i < sizeof raw; i++) {
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    }
    return xasprintf("%s/%s", base, hex);
}

// The attempt's directory, and inputs/ in it only when there are inputs:
// most tasks have none, and an empty directory per attempt would be made
// and removed for nothing.
static char *
s_make_dirs(attempt_t *a, const proto_task_t *t, const attempt_opts_t *o)
{
    a->dir = s_random_dir(o->base);
    if (t->n_inputs > 0) {
        a->input_dir = xasprintf("%s/inputs", a->dir);
    }
    const char *failed =
        s_mkdir_owned(a->dir, o) != 0 ? a->dir
        : a->input_dir && s_mkdir_owned(a->input_dir, o) != 0 ? a->input_dir
                                                              : NULL;
    if (failed) {
        return xasprintf("cannot create '%s': %s", failed, strerror(errno));
    }
    return NULL;
}

static char *
s_write_inputs(attempt_t *a, const proto_task_t *t, const attempt_opts_t *o)
{
    char *why = s_make_dirs(a, t, o);
    for (size_t i = 0; i < t->n_inputs && !why; i++) {
        const proto_input_t *in = &t->inputs[i];
        if (in->truncated) {
            return xasprintf("input '%s' was truncated at the output cap",
                             in->id);
        }
        char *path = xasprintf("%s/%s", a->input_dir, in->id);
        int rc = s_write_file(path, in->data.data, in->data.len, o);
        free(path);
        if (rc < 0) {
            why = xasprintf("cannot write input '%s': %s", in->id,
                            strerror(errno));
        }
    }
    return why;
}

// Whether this value goes into an environment variable too: no NUL (the
// kernel could not carry it), short enough, and within what is left of
// the inputs' budget (*left, which it lowers).
static bool
s_env_fits(const proto_input_t *in, size_t *left)
{
    size_t len = in->data.len;
    if (len >= ENV_INPUT_MAX_BYTES || len > *left
        || memchr(in->data.data ? (const void *) in->data.data : "", 0,
                  len)) {
        return false;
    }
    *left -= len;
    return true;
}

// Sets NAME=value in env, replacing an earlier NAME: later sources win
// (the task's env over the drone's allow list), and getenv() sees one.
static void
s_env_set(s_vec_t *env, const char *name, const char *value, size_t len)
{
    size_t n = strlen(name);
    char *item = xasprintf("%s=%.*s", name, (int) len, value ? value : "");
    for (size_t i = 0; i < env->n; i++) {
        if (strncmp(env->items[i], name, n) == 0 && env->items[i][n] == '=') {
            free(env->items[i]);
            env->items[i] = item;
            return;
        }
    }
    s_vec_push(env, item);
}

static void
s_env_str(s_vec_t *env, const char *name, const char *value)
{
    s_env_set(env, name, value, strlen(value));
}

// The drone's variables a task may see: the allow list, then --pass-env.
static void
s_env_from_drone(s_vec_t *env, const attempt_opts_t *o)
{
    static const char *const allowed[] = {"PATH", "LANG", "LC_ALL", "TZ",
                                          "TERM"};
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++) {
        const char *v = getenv(allowed[i]);
        if (v) {
            s_env_str(env, allowed[i], v);
        }
    }
    if (!getenv("PATH")) {
        s_env_str(env, "PATH", ATTEMPT_DEFAULT_PATH);
    }
    for (size_t i = 0; o->pass_env && o->pass_env[i]; i++) {
        const char *v = getenv(o->pass_env[i]);
        if (v) {
            s_env_str(env, o->pass_env[i], v);
        }
    }
}

static void
s_env_waggle(s_vec_t *env, const attempt_t *a, const proto_task_t *t)
{
    char num[32];
    snprintf(num, sizeof num, "%lld", (long long) t->plan);
    s_env_str(env, "WAGGLE_PLAN", num);
    s_env_str(env, "WAGGLE_PLAN_NAME", t->plan_name ? t->plan_name : "");
    s_env_str(env, "WAGGLE_TASK", t->task);
    snprintf(num, sizeof num, "%llu", (unsigned long long) t->token);
    s_env_str(env, "WAGGLE_TASK_TOKEN", num);
    snprintf(num, sizeof num, "%u", t->attempt);
    s_env_str(env, "WAGGLE_ATTEMPT", num);
    if (a->input_dir) {
        s_env_str(env, "WAGGLE_INPUT_DIR", a->input_dir);
    }
    size_t left = ENV_INPUTS_BYTES;
    for (size_t i = 0; i < t->n_inputs; i++) {
        const proto_input_t *in = &t->inputs[i];
        if (!s_env_fits(in, &left)) {
            continue;  // the file in WAGGLE_INPUT_DIR is its channel
        }
        char *name = workplan_input_var(in->id);
        s_env_set(env, name, (const char *) in->data.data, in->data.len);
        free(name);
    }
}

static void
s_build_env(const attempt_t *a, const proto_task_t *t,
            const attempt_opts_t *o, s_vec_t *env)
{
    s_env_from_drone(env, o);
    s_env_str(env, "HOME", a->dir);
    s_env_str(env, "TMPDIR", a->dir);
    for (size_t i = 0; i < t->n_env; i++) {
        s_env_str(env, t->env[i].key, t->env[i].value);
    }
    s_env_waggle(env, a, t);
}

wp_value_t *
attempt_values(const proto_task_t *t)
{
    wp_value_t *vals = xcalloc(t->n_inputs + 1, sizeof *vals);
    for (size_t i = 0; i < t->n_inputs; i++) {
        vals[i].id = t->inputs[i].id;
        vals[i].data = t->inputs[i].data.data;
        vals[i].len = t->inputs[i].data.len;
        vals[i].truncated = t->inputs[i].truncated;
    }
    return vals;
}

static char *
s_build_argv(const proto_task_t *t, s_vec_t *argv)
{
    wp_value_t *vals = attempt_values(t);
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
attempt_prepare(attempt_t *a, const proto_task_t *t, const attempt_opts_t *o)
{
    s_vec_t argv = {0}, env = {0};
    char *why = s_write_inputs(a, t, o);
    // A prompt task's argv is the drone's own (prompt.h).
    if (!why && t->kind == PROTO_KIND_RUN) {
        why = s_build_argv(t, &argv);
    }
    if (!why) {
        s_build_env(a, t, o, &env);
    }
    a->argv = argv.items;
    a->envp = env.items;
    return why;
}

// The smaller of two limits where 0 means none.
static uint64_t
s_cap(uint64_t asked, uint64_t cap)
{
    if (asked == 0 || (cap != 0 && cap < asked)) {
        return cap;
    }
    return asked;
}

runner_limits_t
attempt_limits(const proto_task_limits_t *asked, const runner_limits_t *caps)
{
    return (runner_limits_t) {
        .as_bytes = s_cap((uint64_t) asked->as_mb << 20, caps->as_bytes),
        .nofile = s_cap(asked->nofile, caps->nofile),
        .nproc = s_cap(asked->nproc, caps->nproc),
        .cpu_s = s_cap(asked->cpu_s, caps->cpu_s)};
}

void
attempt_release(attempt_t *a)
{
    s_free_strv(a->argv);
    s_free_strv(a->envp);
    a->argv = a->envp = NULL;
    xfree(&a->input_dir);
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

enum {
    S_RM_DEPTH = 32,            // directories held open at once
    S_RM_PASSES = 4096,         // each removes S_RM_DEPTH - 1 levels
};

static size_t s_rm_contents(int fd, int top, int depth);

// Removes one entry of the directory open at dir.  unlinkat() takes files
// and links (a link is removed, never followed); only a directory fails,
// with EISDIR, and is opened with O_NOFOLLOW relative to dir.  One deeper
// than S_RM_DEPTH is moved up into top for a later pass, so a deep tree
// needs no descriptor per level.  Returns the entries removed or moved.
static size_t
s_rm_entry(int dir, const char *name, int top, int depth)
{
    static unsigned long moved;
    if (unlinkat(dir, name, 0) == 0) {
        return 1;
    }
    if (errno != EISDIR) {
        return 0;
    }
    if (depth >= S_RM_DEPTH) {
        char up[48];
        snprintf(up, sizeof up, ".waggle-rm-%lu", moved++);
        return renameat(dir, name, top, up) == 0;
    }
    int fd = openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        return 0;
    }
    size_t n = s_rm_contents(fd, top, depth + 1);
    return n + (unlinkat(dir, name, AT_REMOVEDIR) == 0);
}

// Removes what the directory open at fd holds (and closes fd).
static size_t
s_rm_contents(int fd, int top, int depth)
{
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return 0;
    }
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            n += s_rm_entry(dirfd(d), e->d_name, top, depth);
        }
    }
    closedir(d);
    return n;
}

// Never by path below dir: a task's user owns what is inside, and another
// task of that user may swap a directory for a link to '/' while this runs
// as root.  Every step is relative to a descriptor opened with O_NOFOLLOW,
// so a swap can only move what is removed, never point it elsewhere.
void
attempt_remove_dir(const char *dir)
{
    // Most tasks leave their directory empty: one rmdir, no walk.  (dir
    // itself is in the drone's base, which no task can write to.)
    if (!dir || rmdir(dir) == 0 || errno == ENOENT) {
        return;
    }
    for (int pass = 0; pass < S_RM_PASSES; pass++) {
        int top = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (top < 0) {
            return;
        }
        int fd = openat(top, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        size_t n = fd >= 0 ? s_rm_contents(fd, top, 1) : 0;
        close(top);
        if (rmdir(dir) == 0 || errno != ENOTEMPTY || n == 0) {
            return;
        }
    }
}
