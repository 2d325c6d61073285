// test_prompt: the drone's side of prompt tasks (drone/prompt.c): the
// request a model call gets on its stdin, and the report read back from
// its stderr — usage a reply cannot forge, the error in place of an exit
// status.
#include "drone/prompt.h"
#include "tests/harness/t.h"

#include "common/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

static char *
s_read_fd(int fd)
{
    char *buf = xcalloc(1, 65536);
    size_t n = 0;
    ssize_t r;
    while ((r = read(fd, buf + n, 65535 - n)) > 0) {
        n += (size_t) r;
    }
    return buf;
}

static void
s_task(proto_task_t *t, const char *prompt, const char *input, bool cut)
{
    memset(t, 0, sizeof *t);
    t->kind = PROTO_KIND_PROMPT;
    t->prompt = xstrdup(prompt);
    t->inputs = xcalloc(1, sizeof *t->inputs);
    t->n_inputs = 1;
    t->inputs[0].id = xstrdup("log");
    proto_bytes_set(&t->inputs[0].data, input, strlen(input));
    t->inputs[0].truncated = cut;
}

static void
s_task_free(proto_task_t *t)
{
    free(t->prompt);
    free(t->system);
    free(t->inputs[0].id);
    free(t->inputs[0].data.data);
    free(t->inputs);
}

static void
test_request(void)
{
    prompt_model_t m = {.on = true, .url = "http://127.0.0.1:9/v1",
                        .model = "tiny", .key = "sk-unit-42",
                        .timeout_ms = 5000};
    proto_task_t t;
    s_task(&t, "Sum: {{log.output}} {{{{x}}", "a b c\n", false);
    t.system = xstrdup("be brief");
    t.max_tokens = 77;
    t.has_temperature = true;
    t.temperature_milli = 250;
    char *why = NULL;
    int fd = prompt_request_fd(&m, &t, &why);
    REQUIRE(fd >= 0);
    CHECK(why == NULL);
    char *text = s_read_fd(fd);
    // The key's line, then the JSON: the key is not in the JSON.
    CHECK(strncmp(text, "sk-unit-42\n", 11) == 0);
    CHECK(!strstr(text + 11, "sk-unit-42"));
    CHECK_HAS(text + 11, "\"prompt\":\"Sum: a b c {{x}}\"");
    CHECK_HAS(text + 11, "\"system\":\"be brief\"");
    CHECK_HAS(text + 11, "\"max_tokens\":77");
    CHECK_HAS(text + 11, "\"temperature_milli\":250");
    CHECK_HAS(text + 11, "\"model\":\"tiny\"");
    // Sealed: nothing can change the request once made.
    CHECK(write(fd, "x", 1) < 0 && errno == EPERM);
    CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    free(text);
    close(fd);
    s_task_free(&t);

    // A truncated input or a placeholder naming no need fails early.
    s_task(&t, "Sum: {{log.output}}", "cut", true);
    CHECK_INT(prompt_request_fd(&m, &t, &why), -1);
    CHECK_HAS(why, "truncated");
    free(why);
    why = NULL;
    s_task_free(&t);
    s_task(&t, "Sum: {{other.output}}", "x", false);
    CHECK_INT(prompt_request_fd(&m, &t, &why), -1);
    CHECK_HAS(why, "other");
    free(why);
    s_task_free(&t);
}

static void
s_result(proto_result_t *pr, const char *err, proto_outcome_t outcome)
{
    memset(pr, 0, sizeof *pr);
    pr->outcome = outcome;
    pr->prompt_tokens = pr->completion_tokens = -1;
    pr->error = outcome == PROTO_OUTCOME_FAILED
                    ? xstrdup("exited with status 1") : NULL;
    proto_bytes_set(&pr->err, err, strlen(err));
}

static void
s_result_free(proto_result_t *pr)
{
    free(pr->error);
    free(pr->err.data);
}

static void
test_report(void)
{
    proto_result_t pr;
    s_result(&pr, "waggle-usage prompt_tokens=12 completion_tokens=5\n",
             PROTO_OUTCOME_SUCCEEDED);
    prompt_result(&pr);
    CHECK_INT(pr.prompt_tokens, 12);
    CHECK_INT(pr.completion_tokens, 5);
    CHECK(pr.error == NULL);
    s_result_free(&pr);

    // Cut at the token limit: the error, and the tokens spent.
    s_result(&pr, "waggle-error reply cut at max_tokens (finish_reason "
                  "length)\nwaggle-usage prompt_tokens=3 "
                  "completion_tokens=50\n", PROTO_OUTCOME_FAILED);
    prompt_result(&pr);
    CHECK_STR(pr.error, "model call failed: reply cut at max_tokens "
                        "(finish_reason length)");
    CHECK_INT(pr.completion_tokens, 50);
    s_result_free(&pr);

    // No usage (a refused connection): the error alone.
    s_result(&pr, "waggle-error cannot connect\n", PROTO_OUTCOME_FAILED);
    prompt_result(&pr);
    CHECK_STR(pr.error, "model call failed: cannot connect");
    CHECK_INT(pr.prompt_tokens, -1);
    s_result_free(&pr);

    // A usage line that is not the last one counts for nothing, nor does
    // a malformed one; a timeout keeps the runner's own sentence.
    s_result(&pr, "waggle-usage prompt_tokens=9 completion_tokens=9\nnoise",
             PROTO_OUTCOME_SUCCEEDED);
    prompt_result(&pr);
    CHECK_INT(pr.prompt_tokens, -1);
    s_result_free(&pr);
    s_result(&pr, "waggle-usage prompt_tokens=-4 completion_tokens=1\n",
             PROTO_OUTCOME_SUCCEEDED);
    prompt_result(&pr);
    CHECK_INT(pr.prompt_tokens, -1);
    s_result_free(&pr);
    s_result(&pr, "waggle-error late\n", PROTO_OUTCOME_FAILED);
    pr.timed_out = true;
    prompt_result(&pr);
    CHECK_STR(pr.error, "exited with status 1");
    s_result_free(&pr);
    s_result(&pr, "", PROTO_OUTCOME_FAILED);
    prompt_result(&pr);
    CHECK_STR(pr.error, "exited with status 1");
    s_result_free(&pr);
}

static void
test_model_open(void)
{
    prompt_model_t m;
    char err[256];
    CHECK_INT(prompt_model_open(&m, "openai", "", "", "", 120, err,
                                sizeof err), 0);
    CHECK(!m.on);
    prompt_model_close(&m);
    CHECK_INT(prompt_model_open(&m, "openai", "http://h/v1", "", "", 120, err,
                                sizeof err), -1);
    CHECK_HAS(err, "--model");
    CHECK_INT(prompt_model_open(&m, "gemini", "http://h/v1", "m", "", 120,
                                err, sizeof err), -1);
    CHECK_HAS(err, "'gemini'");
    CHECK_INT(prompt_model_open(&m, "anthropic", "http://h/v1", "m",
                                "/nonexistent/key", 120, err, sizeof err), -1);
    CHECK_INT(prompt_model_open(&m, "anthropic", "http://h/v1", "m", "", 7,
                                err, sizeof err), 0);
    CHECK(m.on && m.api == MODEL_API_ANTHROPIC && m.timeout_ms == 7000);
    CHECK(m.key == NULL);
    prompt_model_close(&m);
}

static const t_case_t t_cases[] = {
    T(test_request),
    T(test_report),
    T(test_model_open),
    {0},
};

T_MAIN(t_cases)
