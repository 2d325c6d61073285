// prompt: prompt tasks on the drone; see prompt.h.
#include "drone/prompt.h"

#include "common/json.h"
#include "common/workplan.h"
#include "common/xalloc.h"
#include "drone/attempt.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

// The most a request may hold (prompt, system and inputs expanded): what
// a TASK can carry anyway is bounded by the broker's --max-inputs.
#define S_MAX_REQUEST (256u * 1024 * 1024)
#define S_ERROR_TAG "waggle-error "
#define S_USAGE_TAG "waggle-usage "

int
prompt_model_open(prompt_model_t *m, const char *api, const char *url,
                  const char *model, const char *key_file, int64_t timeout_s,
                  char *err, size_t errlen)
{
    *m = (prompt_model_t) {0};
    bool has_url = url && *url, has_model = model && *model;
    if (!has_url && !has_model && !(key_file && *key_file)) {
        return 0;
    }
    if (!has_url || !has_model) {
        snprintf(err, errlen, "a model needs both --model-url and --model");
        return -1;
    }
    if (model_api_parse(api ? api : "openai", &m->api) < 0) {
        snprintf(err, errlen, "--model-api: '%s' is not openai or anthropic",
                 api);
        return -1;
    }
    if (key_file && *key_file
        && model_key_load(key_file, &m->key, err, errlen) < 0) {
        return -1;
    }
    m->url = xstrdup(url);
    m->model = xstrdup(model);
    m->timeout_ms = timeout_s * 1000;
    m->on = true;
    return 0;
}

void
prompt_model_close(prompt_model_t *m)
{
    if (m->key) {
        explicit_bzero(m->key, strlen(m->key));
    }
    free(m->key);
    free(m->url);
    free(m->model);
    *m = (prompt_model_t) {0};
}

// --- the drone's side: the request -----------------------------------------

static char *
s_expand(const proto_task_t *t, char **why)
{
    wp_value_t *vals = attempt_values(t);
    char *out = NULL;
    if (workplan_expand(t->prompt, vals, t->n_inputs, 0, &out, why) < 0) {
        out = NULL;
    }
    free(vals);
    return out;
}

static char *
s_request_json(const prompt_model_t *m, const proto_task_t *t,
               const char *prompt)
{
    jnode_t *req = json_obj_new();
    json_obj_set_str(req, "api", m->api == MODEL_API_ANTHROPIC ? "anthropic"
                                                               : "openai");
    json_obj_set_str(req, "url", m->url);
    // The broker sends a task naming a model only to a drone offering
    // model:NAME, so it is this drone's model.
    json_obj_set_str(req, "model", t->model ? t->model : m->model);
    json_obj_set_int(req, "timeout_ms", m->timeout_ms);
    json_obj_set_str(req, "prompt", prompt);
    if (t->system) {
        json_obj_set_str(req, "system", t->system);
    }
    if (t->max_tokens) {
        json_obj_set_int(req, "max_tokens", t->max_tokens);
    }
    if (t->has_temperature) {
        json_obj_set_int(req, "temperature_milli", t->temperature_milli);
    }
    char *text = json_dump(req, false);
    json_destroy(&req);
    return text;
}

static int
s_write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return -1;
        }
        p += n;
        len -= (size_t) n;
    }
    return 0;
}

int
prompt_request_fd(const prompt_model_t *m, const proto_task_t *t,
                  char **why)
{
    char *prompt = s_expand(t, why);
    if (!prompt) {
        return -1;
    }
    char *json = s_request_json(m, t, prompt);
    free(prompt);
    int fd = memfd_create("waggle-prompt", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    const char *key = m->key ? m->key : "";
    // The key's line first, so it never passes through the JSON library.
    if (fd < 0 || s_write_all(fd, key, strlen(key)) < 0
        || s_write_all(fd, "\n", 1) < 0
        || s_write_all(fd, json, strlen(json)) < 0
        || fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK
                                      | F_SEAL_SEAL) < 0
        || lseek(fd, 0, SEEK_SET) != 0) {
        *why = xasprintf("cannot pass the request to the model call: %s",
                         strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        fd = -1;
    }
    free(json);
    return fd;
}

// --- the child's side -------------------------------------------------------

static char *
s_read_stdin(size_t *len)
{
    size_t cap = 65536, n = 0;
    char *buf = xmalloc(cap + 1);
    for (;;) {
        if (n == cap) {
            if (cap >= S_MAX_REQUEST) {
                free(buf);
                return NULL;
            }
            cap *= 2;
            buf = xrealloc(buf, cap + 1);
        }
        ssize_t r = read(0, buf + n, cap - n);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            free(buf);
            return NULL;
        }
        if (r == 0) {
            break;
        }
        n += (size_t) r;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

// One line, whatever the sentence holds.
static void
s_report_error(const char *sentence)
{
    fputs(S_ERROR_TAG, stderr);
    for (const char *p = sentence; *p; p++) {
        fputc(*p == '\n' || *p == '\r' ? ' ' : *p, stderr);
    }
    fputc('\n', stderr);
}

static int
s_bad_request(char *buf, size_t len, const char *what)
{
    s_report_error(what);
    explicit_bzero(buf, len);
    free(buf);
    return 2;
}

static void
s_fill_request(const jnode_t *req, model_config_t *cfg, model_request_t *mr,
               model_msg_t *msgs)
{
    const char *api = json_str(json_obj_get(req, "api"));
    if (api) {
        model_api_parse(api, &cfg->api);
    }
    cfg->url = json_str(json_obj_get(req, "url"));
    cfg->model = json_str(json_obj_get(req, "model"));
    cfg->timeout_ms = json_int(json_obj_get(req, "timeout_ms"));
    cfg->retries = -1;
    const jnode_t *sys = json_obj_get(req, "system");
    size_t n = 0;
    if (sys) {
        msgs[n++] = (model_msg_t) {MODEL_ROLE_SYSTEM, json_str(sys)};
    }
    msgs[n++] = (model_msg_t) {MODEL_ROLE_USER,
                               json_str(json_obj_get(req, "prompt"))};
    mr->messages = msgs;
    mr->n_messages = n;
    mr->max_tokens = json_int(json_obj_get(req, "max_tokens"));
    const jnode_t *temp = json_obj_get(req, "temperature_milli");
    if (temp) {
        mr->has_temperature = true;
        mr->temperature = (double) json_int(temp) / 1000.0;
    }
}

int
prompt_call_main(void)
{
    size_t len = 0;
    char *buf = s_read_stdin(&len);
    // The request holds the key: its memfd goes away with the last
    // descriptor, so nothing can read it from /proc/PID/fd/0 any longer.
    close(0);
    if (!buf) {
        s_report_error("cannot read the request");
        return 2;
    }
    char *nl = strchr(buf, '\n');
    if (!nl) {
        return s_bad_request(buf, len, "the request has no key line");
    }
    *nl = '\0';
    char perr[256];
    jnode_t *req = json_parse(nl + 1, len - (size_t) (nl + 1 - buf), perr,
                              sizeof perr);
    if (!req || !json_str(json_obj_get(req, "url"))
        || !json_str(json_obj_get(req, "prompt"))) {
        json_destroy(&req);
        return s_bad_request(buf, len, "the request is not valid");
    }
    model_config_t cfg = {.key = *buf ? buf : NULL};
    model_request_t mr = {0};
    model_msg_t msgs[2];
    s_fill_request(req, &cfg, &mr, msgs);
    model_reply_t reply = {0};
    char err[1024];
    model_rc_t rc = model_chat(&cfg, &mr, &reply, err, sizeof err);
    explicit_bzero(buf, (size_t) (nl - buf));
    if (reply.content) {
        fputs(reply.content, stdout);
    }
    fflush(stdout);
    if (rc != MODEL_OK) {
        s_report_error(err);
    }
    if (rc == MODEL_OK || reply.prompt_tokens || reply.completion_tokens) {
        fprintf(stderr, S_USAGE_TAG "prompt_tokens=%" PRId64
                        " completion_tokens=%" PRId64 "\n",
                reply.prompt_tokens, reply.completion_tokens);
    }
    fflush(stderr);
    model_reply_release(&reply);
    json_destroy(&req);
    free(buf);
    return rc == MODEL_OK ? 0 : 1;
}

// --- the drone's side: the report -------------------------------------------

// The line before end (exclusive) in [start, end): sets *line and returns
// its length; end points at its '\n' or at the end of the text.
static size_t
s_prev_line(const char *start, const char *end, const char **line)
{
    const char *p = end;
    while (p > start && p[-1] != '\n') {
        p--;
    }
    *line = p;
    return (size_t) (end - p);
}

static bool
s_tagged(const char *line, size_t len, const char *tag)
{
    size_t n = strlen(tag);
    return len >= n && memcmp(line, tag, n) == 0;
}

void
prompt_result(proto_result_t *pr)
{
    const char *start = (const char *) pr->err.data;
    if (!start || pr->err.len == 0) {
        return;
    }
    const char *end = start + pr->err.len;
    if (end[-1] == '\n') {
        end--;
    }
    const char *line;
    size_t len = s_prev_line(start, end, &line);
    if (s_tagged(line, len, S_USAGE_TAG)) {
        char copy[128];
        snprintf(copy, sizeof copy, "%.*s", (int) len, line);
        long long p = 0, c = 0;
        if (sscanf(copy, S_USAGE_TAG "prompt_tokens=%lld completion_tokens="
                                     "%lld", &p, &c) == 2 && p >= 0 && c >= 0) {
            // A model's absurd count is reported as the protocol's most
            // (the broker refuses a RESULT past it), so the budget it
            // spent stays spent.
            pr->prompt_tokens = p < PROTO_TOKENS_MAX ? p : PROTO_TOKENS_MAX;
            pr->completion_tokens = c < PROTO_TOKENS_MAX ? c
                                                         : PROTO_TOKENS_MAX;
        }
        if (line == start) {
            return;
        }
        end = line - 1;
        len = s_prev_line(start, end, &line);
    }
    if (s_tagged(line, len, S_ERROR_TAG) && pr->outcome == PROTO_OUTCOME_FAILED
        && !pr->timed_out && !pr->signal) {
        size_t n = strlen(S_ERROR_TAG);
        free(pr->error);
        pr->error = xasprintf("model call failed: %.*s", (int) (len - n),
                              line + n);
    }
}
