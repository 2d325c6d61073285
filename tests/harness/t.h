// t.h: the smallest unit-test harness that does the job.
//
// A test file defines `static void test_x(void)` functions and lists them in
//   static const t_case_t t_cases[] = { T(test_x), ..., {0} };
//   T_MAIN(t_cases)
// CHECK failures print file:line and the values, and mark the test failed
// without stopping it.  t_tmpdir() gives each test its own fresh directory.
// `./test_x NAME` runs one test.  A test that cannot run here (it needs
// root, say) calls t_skip() and returns; when every test that ran was
// skipped, the executable exits T_EXIT_SKIP, which ctest counts as skipped
// (SKIP_RETURN_CODE), not passed.
#ifndef WAGGLE_T_H
#define WAGGLE_T_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *name;
    void (*fn)(void);
} t_case_t;

#define T(fn) {#fn, fn}

extern int t_failures;
extern const char *t_current;

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: %s: CHECK(%s) failed\n", __FILE__,        \
                    __LINE__, t_current, #cond);                              \
            t_failures++;                                                     \
        }                                                                     \
    } while (0)

#define CHECK_INT(a, b)                                                       \
    do {                                                                      \
        long long t_a_ = (long long) (a), t_b_ = (long long) (b);             \
        if (t_a_ != t_b_) {                                                   \
            fprintf(stderr, "%s:%d: %s: %s == %lld, expected %s == %lld\n",   \
                    __FILE__, __LINE__, t_current, #a, t_a_, #b, t_b_);       \
            t_failures++;                                                     \
        }                                                                     \
    } while (0)

#define CHECK_STR(a, b)                                                       \
    do {                                                                      \
        const char *t_a_ = (a), *t_b_ = (b);                                  \
        if (!t_a_ || !t_b_ || strcmp(t_a_, t_b_) != 0) {                      \
            fprintf(stderr, "%s:%d: %s: %s == \"%s\", expected \"%s\"\n",     \
                    __FILE__, __LINE__, t_current, #a,                        \
                    t_a_ ? t_a_ : "(null)", t_b_ ? t_b_ : "(null)");          \
            t_failures++;                                                     \
        }                                                                     \
    } while (0)

// CHECK that haystack contains needle.
#define CHECK_HAS(hay, needle)                                                \
    do {                                                                      \
        const char *t_h_ = (hay), *t_n_ = (needle);                           \
        if (!t_h_ || !strstr(t_h_, t_n_)) {                                   \
            fprintf(stderr, "%s:%d: %s: \"%s\" does not contain \"%s\"\n",    \
                    __FILE__, __LINE__, t_current, t_h_ ? t_h_ : "(null)",    \
                    t_n_);                                                    \
            t_failures++;                                                     \
        }                                                                     \
    } while (0)

// Fails and returns from the current test function.
#define REQUIRE(cond)                                                         \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: %s: REQUIRE(%s) failed\n", __FILE__,      \
                    __LINE__, t_current, #cond);                              \
            t_failures++;                                                     \
            return;                                                           \
        }                                                                     \
    } while (0)

// The exit status of a test executable whose tests were all skipped.
#define T_EXIT_SKIP 77
// Marks the current test skipped and prints "SKIP NAME: why" (the caller
// then returns).  A skipped test that also failed a CHECK counts as failed.
void t_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// A fresh directory for the current test, removed at exit when it passed.
const char *t_tmpdir(void);
// Reads a whole file into a NUL-terminated buffer; NULL if it cannot.
char *t_read_file(const char *path, size_t *len);
int t_write_file(const char *path, const char *data);
// Running processes (zombies not counted) whose command line is exactly
// "sleep SECONDS": tests start sleeps of durations nothing else on a
// shared machine is likely to use, and count what outlived a task.
int t_sleepers(int seconds);
int t_run(const t_case_t *cases, int argc, char **argv);

#define T_MAIN(cases)                                                         \
    int main(int argc, char **argv) { return t_run((cases), argc, argv); }

#endif
