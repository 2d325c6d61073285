// hook: the operator's --on-gate command, run when a gate starts waiting,
// so a team can be told (a webhook with curl, a chat message).
//
// Outside the loop and bounded: the command is started only after the turn
// that made the gate wait has committed (a rolled-back turn notifies
// nobody), never waited for — finished hooks are reaped each turn — and
// killed with its process group once it has run --on-gate-timeout-ms.  At
// most S_MAX_RUNNING run at once; a gate that finds them all busy is
// logged, not queued, so a flood of gates never grows the broker.  The plan,
// task and question reach it as WAGGLE_PLAN, WAGGLE_TASK and
// WAGGLE_GATE_QUESTION; its output goes to the broker's stderr.
#define _DEFAULT_SOURCE
#include "broker/broker_int.h"

#include "common/log.h"
#include "common/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define LOG "broker.hook"
#define S_MAX_RUNNING 16
#define S_MAX_QUESTION 4096   // bytes of the question in the environment

extern char **environ;

typedef struct {
    int64_t plan;
    char *task;
    char *question;
} s_pending_t;

struct hook {
    s_pending_t *pending;       // this turn's gates, until its commit
    size_t n_pending;
    pid_t running[S_MAX_RUNNING];
    int64_t deadline_ms[S_MAX_RUNNING];   // monotonic
    size_t n_running;
};

static hook_t *
s_self(broker_t *b)
{
    if (!b->hook) {
        b->hook = xcalloc(1, sizeof *b->hook);
    }
    return b->hook;
}

void
hook_queue(broker_t *b, int64_t plan, const char *task, const char *question)
{
    if (!b->cfg->on_gate || !b->cfg->on_gate[0]) {
        return;
    }
    hook_t *h = s_self(b);
    h->pending = xrealloc(h->pending, (h->n_pending + 1) * sizeof *h->pending);
    s_pending_t *p = &h->pending[h->n_pending++];
    p->plan = plan;
    p->task = xstrdup(task);
    size_t len = strlen(question);
    p->question = xstrndup(question, len > S_MAX_QUESTION ? S_MAX_QUESTION
                                                          : len);
}

// The environment of one hook: the broker's, plus the gate's three
// variables; built before fork (the child may not allocate).
static char **
s_envp(const s_pending_t *p)
{
    size_t n = 0;
    while (environ && environ[n]) {
        n++;
    }
    char **envp = xcalloc(n + 4, sizeof *envp);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(environ[i], "WAGGLE_PLAN=", 12) != 0 &&
            strncmp(environ[i], "WAGGLE_TASK=", 12) != 0 &&
            strncmp(environ[i], "WAGGLE_GATE_QUESTION=", 21) != 0) {
            envp[k++] = xstrdup(environ[i]);
        }
    }
    envp[k++] = xasprintf("WAGGLE_PLAN=%lld", (long long) p->plan);
    envp[k++] = xasprintf("WAGGLE_TASK=%s", p->task);
    envp[k++] = xasprintf("WAGGLE_GATE_QUESTION=%s", p->question);
    return envp;
}

static void
s_free_envp(char **envp)
{
    for (size_t i = 0; envp[i]; i++) {
        free(envp[i]);
    }
    free(envp);
}

// Child side: async-signal-safe calls only (the broker has zmq threads).
static void
s_child(const char *cmd, char **envp, int devnull)
{
    setpgid(0, 0);
    dup2(devnull, STDIN_FILENO);
    dup2(STDERR_FILENO, STDOUT_FILENO);  // stdout may be a READY pipe
    closefrom(3);
    char *argv[] = {"sh", "-c", (char *) cmd, NULL};
    execve("/bin/sh", argv, envp);
    _exit(127);
}

static void
s_start(broker_t *b, hook_t *h, const s_pending_t *p)
{
    if (h->n_running == S_MAX_RUNNING) {
        log_warn(LOG, "gate hook for plan %lld task '%s' not run: %d hooks "
                      "still running", (long long) p->plan, p->task,
                 S_MAX_RUNNING);
        return;
    }
    char **envp = s_envp(p);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pid_t pid = devnull < 0 ? -1 : fork();
    if (pid == 0) {
        s_child(b->cfg->on_gate, envp, devnull);
    }
    int err = errno;
    if (devnull >= 0) {
        close(devnull);
    }
    s_free_envp(envp);
    if (pid < 0) {
        log_warn(LOG, "gate hook for plan %lld task '%s' not run: %s",
                 (long long) p->plan, p->task, strerror(err));
        return;
    }
    setpgid(pid, pid);  // also here: no race with the kill below
    h->running[h->n_running] = pid;
    h->deadline_ms[h->n_running++] = b->now_mono +
                                     b->cfg->on_gate_timeout_ms;
    log_info(LOG, "gate hook for plan %lld task '%s' started (pid %ld)",
             (long long) p->plan, p->task, (long) pid);
}

void
hook_flush(broker_t *b, bool committed)
{
    hook_t *h = b->hook;
    if (!h) {
        return;
    }
    for (size_t i = 0; i < h->n_pending; i++) {
        if (committed) {
            s_start(b, h, &h->pending[i]);
        }
        free(h->pending[i].task);
        free(h->pending[i].question);
    }
    h->n_pending = 0;
}

static void
s_log_end(pid_t pid, int status)
{
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        log_info(LOG, "gate hook (pid %ld) done", (long) pid);
    } else if (WIFEXITED(status)) {
        log_warn(LOG, "gate hook (pid %ld) exited %d", (long) pid,
                 WEXITSTATUS(status));
    } else {
        log_warn(LOG, "gate hook (pid %ld) killed by signal %d", (long) pid,
                 WTERMSIG(status));
    }
}

void
hook_reap(broker_t *b, int64_t now_mono)
{
    hook_t *h = b->hook;
    size_t keep = 0;
    for (size_t i = 0; h && i < h->n_running; i++) {
        pid_t pid = h->running[i];
        int status = 0;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            s_log_end(pid, status);
            continue;
        }
        if (now_mono >= h->deadline_ms[i]) {
            log_warn(LOG, "gate hook (pid %ld) ran past %lld ms: killed",
                     (long) pid, (long long) b->cfg->on_gate_timeout_ms);
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            continue;
        }
        h->running[keep] = pid;
        h->deadline_ms[keep++] = h->deadline_ms[i];
    }
    if (h) {
        h->n_running = keep;
    }
}

int64_t
hook_next_deadline_ms(const broker_t *b)
{
    const hook_t *h = b->hook;
    int64_t next = -1;
    for (size_t i = 0; h && i < h->n_running; i++) {
        // Wake now and then to reap a hook that ended early.
        int64_t d = h->deadline_ms[i];
        next = next < 0 || d < next ? d : next;
    }
    return next;
}

void
hook_destroy(broker_t *b)
{
    hook_t *h = b->hook;
    if (!h) {
        return;
    }
    hook_flush(b, false);
    for (size_t i = 0; i < h->n_running; i++) {
        int status;
        kill(-h->running[i], SIGKILL);
        waitpid(h->running[i], &status, 0);
    }
    free(h->pending);
    free(h);
    b->hook = NULL;
}
