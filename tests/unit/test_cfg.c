// Unit tests for cfg: defaults, environment, flags, precedence, errors.
#include "common/cfg.h"
#include "tests/harness/t.h"

#include <stddef.h>

typedef struct {
    char *name;
    int64_t count;
    bool flag;
    char *ep;
} conf_t;

static const cfg_option_t s_opts[] = {
    {"name", "T_CFG_NAME", CFG_STR, offsetof(conf_t, name), "dflt", "NAME",
     "a name", 0, 0},
    {"count", "T_CFG_COUNT", CFG_INT, offsetof(conf_t, count), "3", "N",
     "a count", 1, 10},
    {"flag", "T_CFG_FLAG", CFG_BOOL, offsetof(conf_t, flag), "0", NULL,
     "a flag", 0, 0},
    {"ep", "T_CFG_EP", CFG_ENDPOINT, offsetof(conf_t, ep), "tcp://*:7600",
     "ENDPOINT", "an endpoint", 0, 0},
    CFG_END,
};

static int
s_load(conf_t *c, int argc, char **argv, int *next, bool *help, char *err)
{
    return cfg_load(s_opts, c, argc, argv, next, help, err, 256);
}

static void
test_defaults(void)
{
    unsetenv("T_CFG_NAME");
    unsetenv("T_CFG_COUNT");
    unsetenv("T_CFG_FLAG");
    conf_t c = {0};
    char *argv[] = {"prog", NULL};
    int next;
    bool help = false;
    char err[256];
    REQUIRE(s_load(&c, 1, argv, &next, &help, err) == 0);
    CHECK_STR(c.name, "dflt");
    CHECK_INT(c.count, 3);
    CHECK(!c.flag);
    CHECK_INT(next, 1);
    cfg_release(s_opts, &c);
    CHECK(c.name == NULL);
}

static void
test_precedence(void)
{
    setenv("T_CFG_NAME", "env", 1);
    setenv("T_CFG_COUNT", "5", 1);
    setenv("T_CFG_FLAG", "true", 1);
    conf_t c = {0};
    char *argv[] = {"prog", "--count", "7", "--name=flag", "sub", "--x", NULL};
    int next;
    bool help = false;
    char err[256];
    REQUIRE(s_load(&c, 6, argv, &next, &help, err) == 0);
    CHECK_STR(c.name, "flag");      // flag beats environment
    CHECK_INT(c.count, 7);
    CHECK(c.flag);                  // environment beats default
    CHECK_INT(next, 4);             // stops at the subcommand
    cfg_release(s_opts, &c);
    unsetenv("T_CFG_NAME");
    unsetenv("T_CFG_COUNT");
    unsetenv("T_CFG_FLAG");
}

static void
test_errors(void)
{
    conf_t c = {0};
    int next;
    bool help = false;
    char err[256];
    char *a1[] = {"prog", "--count", "12x", NULL};
    CHECK(s_load(&c, 3, a1, &next, &help, err) < 0);
    CHECK_HAS(err, "--count: '12x' is not a whole number");
    char *a2[] = {"prog", "--count", "11", NULL};
    CHECK(s_load(&c, 3, a2, &next, &help, err) < 0);
    CHECK_HAS(err, "out of range [1, 10]");
    char *a3[] = {"prog", "--nope", NULL};
    CHECK(s_load(&c, 2, a3, &next, &help, err) < 0);
    CHECK_HAS(err, "unknown option '--nope'");
    char *a4[] = {"prog", "--name", NULL};
    CHECK(s_load(&c, 2, a4, &next, &help, err) < 0);
    CHECK_HAS(err, "--name needs a value (NAME)");
    setenv("T_CFG_FLAG", "maybe", 1);
    char *a5[] = {"prog", NULL};
    CHECK(s_load(&c, 1, a5, &next, &help, err) < 0);
    CHECK_HAS(err, "T_CFG_FLAG: 'maybe' is not a boolean");
    unsetenv("T_CFG_FLAG");
    cfg_release(s_opts, &c);
}

static void
test_help_and_usage(void)
{
    conf_t c = {0};
    int next;
    bool help = false;
    char err[256];
    char *argv[] = {"prog", "-h", NULL};
    REQUIRE(s_load(&c, 2, argv, &next, &help, err) == 0);
    CHECK(help);
    char path[600];
    snprintf(path, sizeof path, "%s/usage", t_tmpdir());
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL);
    cfg_usage(f, s_opts);
    fclose(f);
    char *text = t_read_file(path, NULL);
    CHECK_HAS(text, "--count N");
    CHECK_HAS(text, "env T_CFG_COUNT, default 3");
    CHECK_HAS(text, "--flag ");
    free(text);
    cfg_release(s_opts, &c);
}

static void
test_endpoint_option(void)
{
    conf_t c = {0};
    int next;
    bool help = false;
    char err[256];
    char *a1[] = {"prog", "--ep", "ipc:///tmp/x.sock", NULL};
    REQUIRE(s_load(&c, 3, a1, &next, &help, err) == 0);
    CHECK_STR(c.ep, "ipc:///tmp/x.sock");
    char *a2[] = {"prog", "--ep=127.0.0.1:7600", NULL};
    CHECK(s_load(&c, 2, a2, &next, &help, err) < 0);
    CHECK_HAS(err, "--ep: '127.0.0.1:7600' needs tcp:// or ipc://");
    CHECK_HAS(err, "e.g. tcp://127.0.0.1:7600");
    // The environment is held to the same rule, and named in the error.
    setenv("T_CFG_EP", "localhost:1", 1);
    char *a3[] = {"prog", NULL};
    CHECK(s_load(&c, 1, a3, &next, &help, err) < 0);
    CHECK_HAS(err, "T_CFG_EP: 'localhost:1'");
    unsetenv("T_CFG_EP");
    cfg_release(s_opts, &c);
    CHECK(c.ep == NULL);
}

static char s_reported[512];

static void
s_usage_text(FILE *out)
{
    fprintf(out, "usage: prog\n");
}

static void
s_usage_error(void *conf, const char *message)
{
    (void) conf;
    snprintf(s_reported, sizeof s_reported, "%s", message);
}

// Runs cfg_main with stdout in a file; returns its status and the text.
static int
s_main(const cfg_program_t *prog, conf_t *c, int argc, char **argv,
       int *next, char **out)
{
    char path[600];
    snprintf(path, sizeof path, "%s/stdout", t_tmpdir());
    fflush(stdout);
    int saved = dup(1);
    FILE *f = fopen(path, "w");
    dup2(fileno(f), 1);
    int rc = cfg_main(prog, c, argc, argv, next);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    fclose(f);
    *out = t_read_file(path, NULL);
    return rc;
}

static void
test_main(void)
{
    const cfg_program_t prog = {.name = "prog", .opts = s_opts,
                                .usage = s_usage_text,
                                .usage_error = s_usage_error};
    conf_t c = {0};
    int next = 0;
    char *out = NULL;
    char *a1[] = {"prog", "--count", "4", "sub", NULL};
    CHECK_INT(s_main(&prog, &c, 4, a1, &next, &out), CFG_RUN);
    CHECK_INT(c.count, 4);
    CHECK_INT(next, 3);
    CHECK_STR(out, "");
    free(out);
    cfg_release(s_opts, &c);
    char *a2[] = {"prog", "--version", NULL};
    CHECK_INT(s_main(&prog, &c, 2, a2, &next, &out), 0);
    CHECK_STR(out, "prog " WAGGLE_VERSION "\n");
    CHECK(c.name == NULL);  // released: main() just returns
    free(out);
    char *a3[] = {"prog", "--help", NULL};
    CHECK_INT(s_main(&prog, &c, 2, a3, &next, &out), 0);
    CHECK_STR(out, "usage: prog\n");
    free(out);
    char *a4[] = {"prog", "--count", "99", NULL};
    CHECK_INT(s_main(&prog, &c, 3, a4, &next, &out), CFG_EXIT_USAGE);
    CHECK_HAS(s_reported, "--count: 99 is out of range");
    CHECK_STR(out, "");
    CHECK(c.name == NULL);
    free(out);
}

typedef struct {
    char *names;
} list_conf_t;

static const cfg_option_t s_list_opts[] = {
    {"pass", "T_CFG_PASS", CFG_LIST, offsetof(list_conf_t, names), "", "NAME",
     "repeatable", 0, 0},
    CFG_END,
};

// A list option: the environment gives a comma list, the first flag
// replaces it (flag > environment), further flags append.
static void
test_list(void)
{
    setenv("T_CFG_PASS", "A,B", 1);
    list_conf_t c = {0};
    int next;
    bool help = false;
    char err[256];
    char *none[] = {"prog", NULL};
    REQUIRE(cfg_load(s_list_opts, &c, 1, none, &next, &help, err, 256) == 0);
    CHECK_STR(c.names, "A,B");
    char *argv[] = {"prog", "--pass", "C", "--pass=D", "--pass", "E", NULL};
    REQUIRE(cfg_load(s_list_opts, &c, 6, argv, &next, &help, err, 256) == 0);
    CHECK_STR(c.names, "C,D,E");
    cfg_release(s_list_opts, &c);
    unsetenv("T_CFG_PASS");
}

static const t_case_t t_cases[] = {
    T(test_defaults),
    T(test_precedence),
    T(test_errors),
    T(test_help_and_usage),
    T(test_endpoint_option),
    T(test_main),
    T(test_list),
    {0},
};

T_MAIN(t_cases)
