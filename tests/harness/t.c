// t.c: runner for t.h tests.
#include "tests/harness/t.h"

#include <ftw.h>
#include <stdarg.h>
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
