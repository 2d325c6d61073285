// t.c: runner for t.h tests.
#include "tests/harness/t.h"

#include <dirent.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>

int t_failures = 0;
const char *t_current = "";
static char s_dir[512];
static bool s_skipped;  // the current test called t_skip()

void
t_skip(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("SKIP %s: ", t_current);
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
    s_skipped = true;
}

static int
s_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void) sb;
    (void) flag;
    (void) ftw;
    return remove(path);
}

const char *
t_tmpdir(void)
{
    if (!s_dir[0]) {
        const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
        snprintf(s_dir, sizeof s_dir, "%s/waggle-t-XXXXXX", base);
        if (!mkdtemp(s_dir)) {
            perror("mkdtemp");
            abort();
        }
    }
    return s_dir;
}

char *
t_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n - 1 == 0) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    fclose(f);
    buf[n] = '\0';
    if (len) {
        *len = n;
    }
    return buf;
}

int
t_write_file(const char *path, const char *data)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        return -1;
    }
    fputs(data, f);
    return fclose(f);
}

// Whether /proc/PID/stat says the process runs (not a zombie).
static bool
s_running(const char *pid)
{
    char path[300];
    snprintf(path, sizeof path, "/proc/%s/stat", pid);
    char *stat = t_read_file(path, NULL);
    char *end = stat ? strrchr(stat, ')') : NULL;
    bool running = end && end[1] == ' ' && end[2] != 'Z' && end[2] != 'X';
    free(stat);
    return running;
}

int
t_sleepers(int seconds)
{
    char want[32];
    int wlen = snprintf(want, sizeof want, "sleep%c%d", '\0', seconds) + 1;
    int n = 0;
    DIR *d = opendir("/proc");
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        if (strtol(e->d_name, NULL, 10) <= 0) {
            continue;
        }
        char path[300];
        snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
        size_t len = 0;
        char *cmd = t_read_file(path, &len);
        if (cmd && len == (size_t) wlen && memcmp(cmd, want, len) == 0) {
            n += s_running(e->d_name);
        }
        free(cmd);
    }
    if (d) {
        closedir(d);
    }
    return n;
}

int
t_run(const t_case_t *cases, int argc, char **argv)
{
    int failed = 0, ran = 0, skipped = 0;
    for (const t_case_t *c = cases; c->name; c++) {
        if (argc > 1 && strcmp(argv[1], c->name) != 0) {
            continue;
        }
        int before = t_failures;
        t_current = c->name;
        s_dir[0] = '\0';
        s_skipped = false;
        c->fn();
        ran++;
        bool ok = t_failures == before;
        if (ok && s_dir[0]) {
            nftw(s_dir, s_rm, 16, FTW_DEPTH | FTW_PHYS);
        }
        bool skip = ok && s_skipped;
        printf("%s %s\n", !ok ? "FAIL" : skip ? "skip" : "ok  ", c->name);
        failed += !ok;
        skipped += skip;
    }
    if (ran == 0) {
        fprintf(stderr, "no test matched\n");
        return 2;
    }
    printf("%d/%d passed", ran - failed - skipped, ran);
    if (skipped) {
        printf(", %d skipped", skipped);
    }
    printf("\n");
    if (failed) {
        return 1;
    }
    return skipped == ran ? T_EXIT_SKIP : 0;
}
