// spawnrate: this machine's own limit for starting short processes — the
// ceiling a drone running `true` per task can approach.
//
// posix_spawn(2)s PROGRAM (default /bin/true, no PATH search) keeping
// --parallel K children alive at once, for --seconds S, reaping each with
// waitpid and starting the next at once.  Prints one line:
//   spawnrate parallel=K spawns=N seconds=S per_s=R cpu_ms=C
// where C is the CPU time (user + system, this process and its children)
// per spawn: what load on the machine cannot skew much, unlike R.
// bench/waggle-bench runs it at 4, 8 and 16 at a time and takes the best.
//
// -n starts each child as a confined drone's task init starts (root
// only): in a new PID and mount namespace (clone, vfork-style), its mounts
// made private and a /proc of its own mounted, then the exec.  The
// difference from a run without -n is what those namespaces cost a task.
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

enum { S_STACK_BYTES = 64 * 1024 };

static double
s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static double
s_tv(struct timeval tv)
{
    return (double) tv.tv_sec + (double) tv.tv_usec / 1e6;
}

// User and system time of this process and its reaped children.
static double
s_cpu_s(void)
{
    struct rusage self, kids;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    return s_tv(self.ru_utime) + s_tv(self.ru_stime) + s_tv(kids.ru_utime)
           + s_tv(kids.ru_stime);
}

// The -n child, on the parent's memory until its exec (the parent waits):
// what runner_child_namespace does for a task's init, then the program.
static int
s_ns_child(void *arg)
{
    char *const *argv = arg;
    if (mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0
        || mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                 NULL) != 0) {
        _exit(126);
    }
    execve(argv[0], argv, environ);
    _exit(127);
}

static int
s_spawn(const char *prog, bool ns)
{
    char *argv[] = {(char *) prog, NULL};
    if (ns) {
        static char stack[S_STACK_BYTES];
        pid_t pid = clone(s_ns_child, stack + sizeof stack,
                          CLONE_VM | CLONE_VFORK | CLONE_NEWPID | CLONE_NEWNS
                              | SIGCHLD,
                          argv);
        if (pid < 0) {
            fprintf(stderr, "spawnrate: cannot clone into new namespaces: "
                            "%s\n", strerror(errno));
            return -1;
        }
        return 0;
    }
    pid_t pid;
    int rc = posix_spawn(&pid, prog, NULL, NULL, argv, environ);
    if (rc != 0) {
        fprintf(stderr, "spawnrate: cannot spawn '%s': %s\n", prog,
                strerror(rc));
        return -1;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    long parallel = 8;
    double seconds = 2.0;
    const char *prog = "/bin/true";
    bool ns = false;
    int opt;
    while ((opt = getopt(argc, argv, "np:s:x:")) != -1) {
        switch (opt) {
        case 'n': ns = true; break;
        case 'p': parallel = strtol(optarg, NULL, 10); break;
        case 's': seconds = strtod(optarg, NULL); break;
        case 'x': prog = optarg; break;
        default:
            fprintf(stderr, "usage: spawnrate [-n] [-p PARALLEL] "
                            "[-s SECONDS] [-x PROGRAM]\n");
            return 64;
        }
    }
    if (parallel < 1 || parallel > 4096 || seconds <= 0) {
        fprintf(stderr, "spawnrate: -p 1..4096, -s > 0\n");
        return 64;
    }
    double start = s_now(), end = start + seconds, cpu0 = s_cpu_s();
    long running = 0, done = 0, failed = 0;
    while (running < parallel && s_spawn(prog, ns) == 0) {
        running++;
    }
    while (running > 0) {
        int status;
        if (waitpid(-1, &status, 0) < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        running--;
        done++;
        failed += !WIFEXITED(status) || WEXITSTATUS(status) != 0;
        if (s_now() < end && s_spawn(prog, ns) == 0) {
            running++;
        }
    }
    double took = s_now() - start, cpu = s_cpu_s() - cpu0;
    printf("spawnrate parallel=%ld spawns=%ld seconds=%.3f per_s=%.1f "
           "cpu_ms=%.3f\n",
           parallel, done, took, (double) done / took,
           done > 0 ? 1000 * cpu / (double) done : 0.0);
    if (failed > 0) {
        fprintf(stderr, "spawnrate: %ld of %ld children failed\n", failed,
                done);
    }
    return done > 0 && failed == 0 ? 0 : 1;
}
