// proc: process helpers for end-to-end tests (fork/exec lives here).
#include "tests/harness/proc.h"

#include "common/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

pid_t
proc_spawn(char *const argv[], const char *log_path, int *out_fd)
{
    int p[2] = {-1, -1};
    if (out_fd && pipe2(p, O_CLOEXEC) < 0) {
        return -1;
    }
    int log = log_path ? open(log_path, O_WRONLY | O_CREAT | O_APPEND |
                                            O_CLOEXEC, 0644)
                       : -1;
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(devnull, 0);
        dup2(out_fd ? p[1] : devnull, 1);
        if (log >= 0) {
            dup2(log, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    if (out_fd) {
        close(p[1]);
        *out_fd = p[0];
    }
    if (log >= 0) {
        close(log);
    }
    close(devnull);
    return pid;
}

int
proc_read_line(int fd, const char *prefix, int timeout_ms, char *line,
               size_t len)
{
    int64_t deadline = clock_mono_ms() + timeout_ms;
    size_t n = 0;
    while (clock_mono_ms() < deadline) {
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, 50) <= 0) {
            continue;
        }
        char c;
        if (read(fd, &c, 1) != 1) {
            return -1;
        }
        if (c != '\n') {
            if (n + 1 < len) {
                line[n++] = c;
            }
            continue;
        }
        line[n] = '\0';
        if (strncmp(line, prefix, strlen(prefix)) == 0) {
            return 0;
        }
        n = 0;
    }
    return -1;
}

int
proc_wait(pid_t pid, int timeout_ms, int *status)
{
    int64_t deadline = clock_mono_ms() + timeout_ms;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid) {
            return 0;
        }
        if (r < 0 || clock_mono_ms() >= deadline) {
            return -1;
        }
        usleep(10000);
    }
}

int
proc_stop(pid_t pid, int grace_ms)
{
    int status = 0;
    if (pid <= 0) {
        return 0;
    }
    kill(pid, SIGCONT);
    kill(pid, SIGTERM);
    if (proc_wait(pid, grace_ms, &status) == 0) {
        return status;
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return status;
}

bool
proc_alive(pid_t pid)
{
    int status;
    return pid > 0 && waitpid(pid, &status, WNOHANG) == 0;
}

static bool
s_not_running(pid_t pid)
{
    if (kill(pid, 0) < 0 && errno == ESRCH) {
        return true;
    }
    char path[64], stat[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long) pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return true;
    }
    ssize_t n = read(fd, stat, sizeof stat - 1);
    close(fd);
    stat[n > 0 ? n : 0] = '\0';
    const char *rp = strrchr(stat, ')');
    return !rp || rp[1] == '\0' || rp[2] == 'Z' || rp[2] == 'X';
}

bool
proc_gone(pid_t pid, int timeout_ms)
{
    int64_t end = clock_mono_ms() + timeout_ms;
    do {
        if (s_not_running(pid)) {
            return true;
        }
        usleep(20000);
    } while (clock_mono_ms() < end);
    return false;
}

typedef struct {
    char *buf;
    size_t len, cap;
} s_buf_t;

static bool
s_pump(int fd, s_buf_t *b)
{
    char tmp[4096];
    ssize_t n = read(fd, tmp, sizeof tmp);
    if (n <= 0) {
        return false;
    }
    if (b->len + (size_t) n + 1 > b->cap) {
        b->cap = (b->len + (size_t) n + 1) * 2;
        b->buf = realloc(b->buf, b->cap);
    }
    memcpy(b->buf + b->len, tmp, (size_t) n);
    b->len += (size_t) n;
    b->buf[b->len] = '\0';
    return true;
}

// Reads both pipes to EOF.  Past the deadline it SIGKILLs pid and gives
// the pipes 2 s more: a grandchild may still hold them.  Returns whether
// it killed pid.
static bool
s_drain(pid_t pid, int fo, int fe, int64_t deadline, s_buf_t *bo, s_buf_t *be)
{
    bool open_o = true, open_e = true, killed = false;
    while (open_o || open_e) {
        int64_t now = clock_mono_ms();
        if (now > deadline && !killed) {
            kill(pid, SIGKILL);
            killed = true;
        }
        if (now > deadline + 2000) {
            break;
        }
        struct pollfd pfd[2] = {{open_o ? fo : -1, POLLIN, 0},
                                {open_e ? fe : -1, POLLIN, 0}};
        if (poll(pfd, 2, 50) <= 0) {
            continue;
        }
        if (pfd[0].revents && !s_pump(fo, bo)) {
            open_o = false;
        }
        if (pfd[1].revents && !s_pump(fe, be)) {
            open_e = false;
        }
    }
    return killed;
}

// Hands b's text to *out, or frees it.
static void
s_give(s_buf_t *b, char **out)
{
    if (out) {
        *out = b->buf;
    } else {
        free(b->buf);
    }
}

int
proc_run(char *const argv[], int timeout_ms, char **out, char **err)
{
    int po[2], pe[2];
    if (pipe2(po, O_CLOEXEC) < 0) {
        return -1;
    }
    if (pipe2(pe, O_CLOEXEC) < 0) {
        close(po[0]);
        close(po[1]);
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, 0);
        dup2(po[1], 1);
        dup2(pe[1], 2);
        execv(argv[0], argv);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    s_buf_t bo = {calloc(1, 1), 0, 1}, be = {calloc(1, 1), 0, 1};
    bool killed = pid < 0 || s_drain(pid, po[0], pe[0],
                                     clock_mono_ms() + timeout_ms, &bo, &be);
    close(po[0]);
    close(pe[0]);
    int status = 0;
    if (pid > 0) {
        waitpid(pid, &status, 0);
    }
    s_give(&bo, out);
    s_give(&be, err);
    return !killed && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
