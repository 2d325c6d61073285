// spawnrate: this machine's own limit for starting short processes — the
// ceiling a drone running `true` per task can approach.
//
// posix_spawn(2)s PROGRAM (default /bin/true, no PATH search) keeping
// --parallel K children alive at once, for --seconds S, reaping each with
// waitpid and starting the next at once.  Prints one line:
//   spawnrate parallel=K spawns=N seconds=S per_s=R
// bench/waggle-bench runs it at 4, 8 and 16 at a time and takes the best.
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double
s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static int
s_spawn(const char *prog)
{
    char *argv[] = {(char *) prog, NULL};
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
    int opt;
    while ((opt = getopt(argc, argv, "p:s:x:")) != -1) {
        switch (opt) {
        case 'p': parallel = strtol(optarg, NULL, 10); break;
        case 's': seconds = strtod(optarg, NULL); break;
        case 'x': prog = optarg; break;
        default:
            fprintf(stderr, "usage: spawnrate [-p PARALLEL] [-s SECONDS] "
                            "[-x PROGRAM]\n");
            return 64;
        }
    }
    if (parallel < 1 || parallel > 4096 || seconds <= 0) {
        fprintf(stderr, "spawnrate: -p 1..4096, -s > 0\n");
        return 64;
    }
    double start = s_now(), end = start + seconds;
    long running = 0, done = 0;
    while (running < parallel && s_spawn(prog) == 0) {
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
        if (s_now() < end && s_spawn(prog) == 0) {
            running++;
        }
    }
    double took = s_now() - start;
    printf("spawnrate parallel=%ld spawns=%ld seconds=%.3f per_s=%.1f\n",
           parallel, done, took, (double) done / took);
    return done > 0 ? 0 : 1;
}
