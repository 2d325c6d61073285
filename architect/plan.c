// plan: `waggle-architect plan "GOAL"` — a goal turned into a workplan by
// the model, validated, repaired, shown, confirmed and submitted.
//
// The model is told the workplan format, the task kinds this broker runs
// and the tags the connected drones offer (from the broker's STATUS
// overview).  Its reply is cut out of any prose or code fence around it,
// validated by workplan_parse() — the validator `submit` uses — and its
// errors, with their JSON paths, are sent back for at most --repairs more
// turns of the same conversation.  Nothing is submitted unless a person
// confirms on a terminal, or --yes says so; --out saves the plan instead.
// The model's text is untrusted: it is escaped before it reaches a
// terminal, and a planner needs only a submitter key.
#include "architect/arch.h"

#include "common/json.h"
#include "common/log.h"
#include "common/model.h"
#include "common/workplan.h"
#include "common/xalloc.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define O(f) offsetof(plan_opts_t, f)

const cfg_option_t plan_opts[] = {
    {"repairs", NULL, CFG_INT, O(repairs), "3", "N",
     "send the validation errors back at most N times", 0, PLAN_MAX_REPAIRS},
    {"yes", NULL, CFG_BOOL, O(yes), NULL, NULL,
     "submit (replan: apply) without asking (unattended planners)", 0, 0},
    {"out", NULL, CFG_STR, O(out), NULL, "FILE",
     "save the workplan (replan: the amendment) to FILE instead", 0, 0},
    {"json", NULL, CFG_BOOL, O(json), NULL, NULL,
     "print the result as one JSON object", 0, 0},
    {"max-tokens", NULL, CFG_INT, O(max_tokens), "0", "N",
     "cap each reply at N tokens (0: the server's default)", 0, 1000000},
    {"model-api", NULL, CFG_STR, O(model_api), NULL, "API",
     "as the global option", 0, 0},
    {"model-url", NULL, CFG_STR, O(model_url), NULL, "URL",
     "as the global option", 0, 0},
    {"model", NULL, CFG_STR, O(model), NULL, "NAME", "as the global option",
     0, 0},
    {"model-key-file", NULL, CFG_STR, O(model_key_file), NULL, "FILE",
     "as the global option", 0, 0},
    {"model-timeout-s", NULL, CFG_INT, O(model_timeout_s), NULL, "S",
     "as the global option", 1, 86400},
    CFG_END,
};

static const char s_usage[] =
    "plan \"GOAL\" [--yes | --out FILE] [--repairs N] [--json]\n\n"
    "Asks the model for a workplan that reaches GOAL, validates it (sending\n"
    "the errors back at most --repairs times), shows it as a tree and\n"
    "submits it once you confirm (y/N on a terminal) or with --yes; --out\n"
    "saves it instead.  Prints the plan id last.  Without a terminal, --yes\n"
    "or --out it refuses (exit 64); no valid plan after the repairs: exit 1.\n"
    "Model settings: --model-api, --model-url, --model, --model-key-file\n"
    "and --model-timeout-s (here or as global options; env\n"
    "WAGGLE_MODEL_API, WAGGLE_MODEL_URL, WAGGLE_MODEL, WAGGLE_MODEL_KEY,\n"
    "WAGGLE_MODEL_KEY_FILE).\n"
    "A planner needs no operator key: run it with --role submitter.";

void
plan_chat_add(plan_chat_t *c, model_role_t role, char *text)
{
    c->texts[c->n] = text;
    c->msgs[c->n] = (model_msg_t){role, text};
    c->n++;
}

void
plan_chat_release(plan_chat_t *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->texts[i]);
    }
    c->n = 0;
}

// The rules for one task, which plan and replan both teach the model.
#define S_TASK_RULES                                                         \
    "Each task:\n"                                                           \
    "- id: required, unique, matching [A-Za-z0-9_][A-Za-z0-9_-]{0,63}\n"     \
    "- needs: optional array of ids of tasks that must succeed first; every " \
    "id must exist, and there must be no cycle\n"                            \
    "- run: the argv as an array of strings, executed without a shell; use " \
    "[\"sh\", \"-c\", \"...\"] for pipes, redirections or variables\n"       \
    "- or, instead of run, prompt: a string sent to a language model on a "  \
    "drone that has one; the model's reply is the task's output. Use it only " \
    "when a drone offers the tag \"model\". Optional for prompt tasks only: " \
    "system (a system message), max_tokens (1-10000000), temperature "       \
    "(0-2)\n"                                                                \
    "- or, instead of run or prompt, gate: a question for a person; the "    \
    "task waits until an operator approves it (then what needs it runs) or " \
    "rejects it. Put one before anything irreversible (publishing, "         \
    "deploying, deleting). On a gate, timeout_s is how long it may wait "    \
    "before it is rejected\n"                                                \
    "- optional: env (object of NAME: value; names may not start with "      \
    "WAGGLE_), cwd, timeout_s (seconds, 0 = none), retries (0-100), "        \
    "priority (-1000..1000), requires (array of tags a drone must offer)\n"  \
    "No other field is allowed.\n"                                           \
    "Task kinds: run, prompt and gate; each task has exactly one.\n"         \
    "A task's output is its stdout. A task gets the outputs of the tasks it " \
    "needs as files $WAGGLE_INPUT_DIR/<id>, as environment variables "       \
    "WAGGLE_INPUT_<ID> (upper case, '-' becomes '_'), and as {{id.output}} " \
    "inside run arguments and prompts (only for ids in its needs).\n"        \
    "Prefer small tasks; tasks that do not need each other run in "          \
    "parallel.\n"

const char plan_task_rules[] = S_TASK_RULES;

static const char s_format[] =
    "You are the Architect of Waggle, which runs a workplan - a DAG of "
    "tasks - on a swarm of drones. Turn the user's goal into a workplan.\n"
    "Reply with exactly one JSON object and nothing else: no prose, no code "
    "fence.\n\n"
    "Example:\n"
    "{\"name\": \"line-count\", \"goal\": \"Count the lines of a file\", "
    "\"defaults\": {\"timeout_s\": 600, \"retries\": 2}, \"tasks\": [\n"
    "  {\"id\": \"fetch\", \"run\": [\"curl\", \"-fsS\", "
    "\"https://example.com/data.csv\"]},\n"
    "  {\"id\": \"count\", \"needs\": [\"fetch\"], \"run\": [\"sh\", \"-c\", "
    "\"wc -l < \\\"$WAGGLE_INPUT_DIR/fetch\\\"\"]}\n]}\n\n"
    "Top level: name (required, 1-128 characters), goal (optional text), "
    "defaults (optional: timeout_s, retries, priority, requires), tasks "
    "(required, at least one).\n" S_TASK_RULES;

char *
plan_drones_text(const proto_strv_t *tags, size_t n_drones)
{
    char *list = xstrdup("");
    for (size_t i = 0; tags && i < tags->count; i++) {
        char *more = xasprintf("%s%s\"%s\"", list, i ? ", " : "",
                               tags->items[i]);
        free(list);
        list = more;
    }
    char *drones =
        !tags ? xstrdup("The connected drones are unknown; do not use "
                        "requires.")
        : n_drones == 0 ? xstrdup("No drone is connected right now; do not "
                                  "use requires.")
        : tags->count == 0
            ? xasprintf("%zu drone%s connected; none offers a tag, so do "
                        "not use requires.", n_drones,
                        n_drones == 1 ? " is" : "s are")
            : xasprintf("%zu drone%s connected, offering the tags %s; use "
                        "requires only with these.", n_drones,
                        n_drones == 1 ? " is" : "s are", list);
    free(list);
    return drones;
}

// The system prompt: the format plus what the drones offer (tags NULL: the
// broker could not be asked).
static char *
s_system_prompt(const proto_strv_t *tags, size_t n_drones)
{
    char *drones = plan_drones_text(tags, n_drones);
    char *text = xasprintf("%s\n%s", s_format, drones);
    free(drones);
    return text;
}

int
plan_drone_tags(arch_t *a, proto_strv_t *tags, size_t *n_drones, char *err,
             size_t errlen)
{
    proto_msg_t *req = proto_msg_new(PROTO_MSG_STATUS), *reply = NULL;
    if (link_request(a->link, &req, a->cfg->connect_timeout_ms, &reply, err,
                     errlen) != LINK_OK) {
        return -1;
    }
    if (reply->cmd != PROTO_MSG_ERROR) {
        const proto_status_ok_t *st = &reply->u.status_ok;
        *n_drones = st->n_drones;
        for (size_t d = 0; d < st->n_drones; d++) {
            const proto_strv_t *t = &st->drones[d].tags;
            for (size_t i = 0; i < t->count; i++) {
                bool seen = false;
                for (size_t j = 0; j < tags->count && !seen; j++) {
                    seen = strcmp(tags->items[j], t->items[i]) == 0;
                }
                if (!seen) {
                    proto_strv_push(tags, t->items[i]);
                }
            }
        }
    }
    int rc = reply->cmd == PROTO_MSG_ERROR ? -1 : 0;
    if (rc < 0) {
        snprintf(err, errlen, "the broker refused STATUS: %s",
                 reply->u.error.message ? reply->u.error.message : "");
    }
    proto_msg_destroy(&reply);
    return rc;
}

// The end of the JSON value that starts with '{' at s (balanced braces,
// strings skipped), or NULL.
static const char *
s_object_end(const char *s)
{
    int depth = 0;
    bool in_str = false;
    for (const char *p = s; *p; p++) {
        if (in_str) {
            if (*p == '\\' && p[1]) {
                p++;
            } else if (*p == '"') {
                in_str = false;
            }
        } else if (*p == '"') {
            in_str = true;
        } else if (*p == '{') {
            depth++;
        } else if (*p == '}' && --depth == 0) {
            return p + 1;
        }
    }
    return NULL;
}

static bool
s_has_any(const jnode_t *obj, const char *const *keys)
{
    for (size_t i = 0; keys[i]; i++) {
        if (json_obj_get(obj, keys[i])) {
            return true;
        }
    }
    return false;
}

char *
plan_extract_json(const char *text, const char *const *keys)
{
    char *first = NULL;
    int tries = 0;
    for (const char *p = strchr(text, '{'); p && tries < 64;
         p = strchr(p + 1, '{'), tries++) {
        const char *end = s_object_end(p);
        jnode_t *root = end ? json_parse(p, (size_t) (end - p), NULL, 0)
                            : NULL;
        bool object = root && json_type_of(root) == JSON_T_OBJECT;
        bool tasks = object && s_has_any(root, keys);
        json_destroy(&root);
        if (tasks) {
            free(first);
            return xstrndup(p, (size_t) (end - p));
        }
        if (object && !first) {
            first = xstrndup(p, (size_t) (end - p));
        }
    }
    return first;
}

void
plan_error_lines(wp_errors_t *we, proto_strv_t *errs)
{
    for (size_t i = 0; i < we->count; i++) {
        char *line = xasprintf("%s: %s", we->items[i].path[0]
                                             ? we->items[i].path
                                             : "(top level)",
                               we->items[i].message);
        proto_strv_push(errs, line);
        free(line);
    }
    wp_errors_release(we);
}

// What the validator refuses, as "path: message" lines.
static void
s_check(const char *json, workplan_t **wp, proto_strv_t *errs)
{
    wp_errors_t we = {0};
    if (workplan_parse(json, strlen(json), wp, &we) < 0) {
        plan_error_lines(&we, errs);
    }
}

static char *
s_repair_request(const plan_chat_t *c, const proto_strv_t *errs)
{
    char *list = xstrdup("");
    for (size_t i = 0; i < errs->count; i++) {
        char *more = xasprintf("%s- %s\n", list, errs->items[i]);
        free(list);
        list = more;
    }
    char *text = xasprintf("That %s is invalid (%zu error%s):\n%s"
                           "Reply with the whole corrected %s as one "
                           "JSON object, nothing else.", c->what, errs->count,
                           errs->count == 1 ? "" : "s", list, c->what);
    free(list);
    return text;
}

// One model call on the conversation; the reply text is appended to it.
// Returns the model's rc (MODEL_E_LENGTH included: the caller asks for a
// shorter plan).
static model_rc_t
s_ask(const model_config_t *mc, const plan_opts_t *o, plan_chat_t *c,
      char *err, size_t errlen)
{
    model_request_t req = {.messages = c->msgs, .n_messages = c->n,
                           .max_tokens = o->max_tokens,
                           .json_mode = c->json_mode};
    model_reply_t reply;
    model_rc_t rc = model_chat(mc, &req, &reply, err, errlen);
    c->calls++;
    c->prompt_tokens += reply.prompt_tokens;
    c->completion_tokens += reply.completion_tokens;
    if (reply.json_mode_dropped) {
        c->json_mode = false;
    }
    if (rc == MODEL_OK || rc == MODEL_E_LENGTH) {
        plan_chat_add(c, MODEL_ROLE_ASSISTANT, reply.content);
        reply.content = NULL;
    }
    model_reply_release(&reply);
    return rc;
}

// plan's judge: the workplan in the reply, validated as submit does.
static int
s_judge_workplan(void *arg, const char *text, char **json,
                 proto_strv_t *errs)
{
    static const char *const keys[] = {"tasks", NULL};
    *json = plan_extract_json(text, keys);
    if (!*json) {
        proto_strv_push(errs, "(reply): holds no JSON object");
        return -1;
    }
    s_check(*json, (workplan_t **) arg, errs);
    if (errs->count > 0) {
        free(*json);
        *json = NULL;
        return -1;
    }
    return 0;
}

// Checks the last reply: a reply cut at the token limit is an error of its
// own, else the judge decides.
static int
s_judge(const plan_chat_t *c, model_rc_t rc, plan_judge_fn judge, void *arg,
        char **json, proto_strv_t *errs)
{
    if (rc == MODEL_E_LENGTH) {
        char *line = xasprintf("(reply): cut at the token limit; write a "
                               "shorter %s", c->what);
        proto_strv_push(errs, line);
        free(line);
        return -1;
    }
    return judge(arg, c->texts[c->n - 1], json, errs);
}

int
plan_converse(const arch_t *a, const model_config_t *mc, const plan_opts_t *o,
              plan_chat_t *c, plan_judge_fn judge, void *arg, char **json)
{
    char err[1024];
    proto_strv_t errs = {0};
    for (int64_t round = 0; round <= o->repairs; round++) {
        if (round == 0) {
            char *where = model_url_redact(mc->url);
            fprintf(stderr, "asking the model '%s' at '%s'…\n", mc->model,
                    where);
            free(where);
        } else {
            fprintf(stderr, "repair %lld/%lld: %zu error%s\n",
                    (long long) round, (long long) o->repairs, errs.count,
                    errs.count == 1 ? "" : "s");
            plan_chat_add(c, MODEL_ROLE_USER, s_repair_request(c, &errs));
            proto_strv_release(&errs);
        }
        model_rc_t rc = s_ask(mc, o, c, err, sizeof err);
        if (rc != MODEL_OK && rc != MODEL_E_LENGTH) {
            proto_strv_release(&errs);
            return arch_fail(a, ARCH_EXIT_FAILED, "model", "model: %s", err);
        }
        if (s_judge(c, rc, judge, arg, json, &errs) == 0) {
            return 0;
        }
    }
    char *message = xasprintf("no valid %s after %lld repair%s; the "
                              "last reply's errors:", c->what,
                              (long long) o->repairs,
                              o->repairs == 1 ? "" : "s");
    arch_report(a, ARCH_EXIT_FAILED, "invalid", message, &errs);
    free(message);
    proto_strv_release(&errs);
    return ARCH_EXIT_FAILED;
}

bool
plan_confirm(const char *question)
{
    fprintf(stderr, "%s [y/N] ", question);
    fflush(stderr);
    char line[64] = "";
    if (!fgets(line, sizeof line, stdin)) {
        return false;
    }
    return line[0] == 'y' || line[0] == 'Y';
}

static int
s_submit(arch_t *a, const char *json, int64_t *plan)
{
    proto_msg_t *req = proto_msg_new(PROTO_MSG_SUBMIT), *reply = NULL;
    req->u.submit.workplan = xstrdup(json);
    int rc = arch_call(a, &req, &reply);
    if (rc != 0) {
        return rc;
    }
    const proto_submit_ok_t *ok = &reply->u.submit_ok;
    for (size_t i = 0; i < ok->warnings.count; i++) {
        fprintf(stderr, "warning: %s\n", ok->warnings.items[i]);
    }
    *plan = ok->plan;
    proto_msg_destroy(&reply);
    return 0;
}

int
plan_save(const arch_t *a, const char *path, const char *json,
          const char *what)
{
    FILE *f = fopen(path, "w");
    if (!f || fprintf(f, "%s\n", json) < 0 || fclose(f) != 0) {
        int e = errno;
        if (f) {
            fclose(f);
        }
        return arch_fail(a, ARCH_EXIT_FAILED, "io", "cannot write '%s': %s",
                         path, strerror(e));
    }
    fprintf(stderr, "saved the %s to '%s'; nothing %s\n", what, path,
            strcmp(what, "workplan") == 0 ? "submitted" : "applied");
    return 0;
}

static void
s_print_json(const char *json, const plan_chat_t *c, int64_t plan,
             const char *file)
{
    jnode_t *root = json_obj_new();
    jnode_t *wp = json_parse(json, strlen(json), NULL, 0);
    json_obj_set_node(root, "workplan", &wp);
    if (plan > 0) {
        json_obj_set_int(root, "plan", plan);
    }
    if (file) {
        json_obj_set_str(root, "file", file);
    }
    json_obj_set_int(root, "model_calls", c->calls);
    json_obj_set_int(root, "prompt_tokens", c->prompt_tokens);
    json_obj_set_int(root, "completion_tokens", c->completion_tokens);
    char *text = json_dump(root, true);
    printf("%s\n", text);
    free(text);
    json_destroy(&root);
}

// Show, then save or confirm and submit.
static int
s_deliver(arch_t *a, const plan_opts_t *o, const char *json,
          const workplan_t *wp, const plan_chat_t *c)
{
    plan_show_tree(o->json ? stderr : stdout, wp);
    fflush(stdout);
    fprintf(stderr, "the model used %lld prompt + %lld completion tokens in "
            "%d call%s\n", (long long) c->prompt_tokens,
            (long long) c->completion_tokens, c->calls,
            c->calls == 1 ? "" : "s");
    int64_t plan = 0;
    int rc = 0;
    if (o->out) {
        rc = plan_save(a, o->out, json, "workplan");
    } else if (!o->yes && !plan_confirm("submit this workplan?")) {
        return arch_fail(a, ARCH_EXIT_FAILED, "declined", "not submitted");
    } else {
        rc = s_submit(a, json, &plan);
    }
    if (rc == 0 && o->json) {
        s_print_json(json, c, plan, o->out);
    } else if (rc == 0 && plan > 0) {
        printf("%lld\n", (long long) plan);
    }
    return rc;
}

int
plan_model_config(const arch_t *a, const plan_opts_t *o, model_config_t *mc,
               char **key)
{
    const char *file = o->model_key_file ? o->model_key_file
                                         : a->cfg->model_key_file;
    *key = NULL;
    char err[512];
    if (file && model_key_load(file, key, err, sizeof err) < 0) {
        return arch_report(a, ARCH_EXIT_USAGE, "usage", err, NULL);
    }
    if (!file && a->cfg->model_key && a->cfg->model_key[0]) {
        *key = xstrdup(a->cfg->model_key);
    }
    int64_t timeout_s = o->model_timeout_s ? o->model_timeout_s
                                           : a->cfg->model_timeout_s;
    const char *api = o->model_api ? o->model_api : a->cfg->model_api;
    model_api_t api_id = MODEL_API_OPENAI;
    if (api && model_api_parse(api, &api_id) < 0) {
        free(*key);
        *key = NULL;
        return arch_fail(a, ARCH_EXIT_USAGE, "usage", "--model-api: '%s' is "
                         "not openai or anthropic", api);
    }
    *mc = (model_config_t){
        .api = api_id,
        .url = o->model_url ? o->model_url : a->cfg->model_url,
        .model = o->model ? o->model : a->cfg->model,
        .key = *key,
        .timeout_ms = timeout_s * 1000,
        .retries = -1,
    };
    if (!mc->url || !mc->model) {
        return arch_fail(a, ARCH_EXIT_USAGE, "usage", "plan: no model %s "
                         "(--model%s or WAGGLE_MODEL%s)",
                         mc->url ? "name" : "url", mc->url ? "" : "-url",
                         mc->url ? "" : "_URL");
    }
    return 0;
}

// With --out the broker is optional: connects without reporting, so a
// missing key only costs the drones' tags.  Returns 0 when connected.
static int
s_connect_quietly(arch_t *a, char *err, size_t errlen)
{
    keys_role_t role;
    if (keys_role_parse(a->cfg->role, &role) < 0 || role == KEYS_ROLE_DRONE) {
        snprintf(err, errlen, "--role '%s' must be operator or submitter",
                 a->cfg->role);
        return -1;
    }
    if (keys_load_client(a->cfg->keys, role, &a->keys, err, errlen) < 0) {
        return -1;
    }
    a->link = link_new(a->cfg->broker, &a->keys);
    return 0;
}

// Connects and learns the drones' tags.  With --out a broker that cannot
// be asked is only a warning (*known stays false).
static int
s_broker(arch_t *a, const plan_opts_t *o, proto_strv_t *tags, bool *known,
         size_t *n_drones)
{
    char err[1024];
    int rc = o->out ? s_connect_quietly(a, err, sizeof err) : arch_connect(a);
    if (rc == 0 && plan_drone_tags(a, tags, n_drones, err, sizeof err) == 0) {
        *known = true;
        return 0;
    }
    if (o->out) {
        fprintf(stderr, "warning: %s\nwarning: planning without the drones' "
                "tags\n", err);
        return 0;
    }
    return rc ? rc : arch_report(a, ARCH_EXIT_CONNECT, "unreachable", err,
                                 NULL);
}

static int
s_plan(arch_t *a, const plan_opts_t *o, const char *goal)
{
    model_config_t mc;
    char *key = NULL, *json = NULL;
    int rc = plan_model_config(a, o, &mc, &key);
    proto_strv_t tags = {0};
    bool known = false;
    size_t n_drones = 0;
    if (rc == 0) {
        rc = s_broker(a, o, &tags, &known, &n_drones);
    }
    plan_chat_t c = {.json_mode = true, .what = "workplan"};
    workplan_t *wp = NULL;
    if (rc == 0) {
        plan_chat_add(&c, MODEL_ROLE_SYSTEM,
                   s_system_prompt(known ? &tags : NULL, n_drones));
        plan_chat_add(&c, MODEL_ROLE_USER, xasprintf("Goal: %s", goal));
        rc = plan_converse(a, &mc, o, &c, s_judge_workplan, &wp, &json);
    }
    if (rc == 0) {
        rc = s_deliver(a, o, json, wp, &c);
    }
    workplan_destroy(&wp);
    free(json);
    plan_chat_release(&c);
    proto_strv_release(&tags);
    plan_key_free(&key);
    return rc;
}

int
plan_can_confirm(const arch_t *a, const plan_opts_t *o, const char *cmd,
                 const char *verb, const char *what)
{
    if (o->yes || o->out || (isatty(STDIN_FILENO) && isatty(STDERR_FILENO))) {
        return 0;
    }
    return arch_fail(a, ARCH_EXIT_USAGE, "usage", "%s: no terminal to "
                     "confirm on; pass --yes to %s without asking, or --out "
                     "FILE to save the %s", cmd, verb, what);
}

void
plan_key_free(char **key)
{
    if (*key) {
        explicit_bzero(*key, strlen(*key));
        free(*key);
        *key = NULL;
    }
}

int
cmd_plan(arch_t *a, int argc, char **argv)
{
    plan_opts_t o = {.json = a->cfg->json, .repairs = 3};
    arch_pos_t pos;
    int rc = arch_opts(a, plan_opts, &o, argc, argv, &pos, s_usage);
    if (rc || !arch_args(a, &pos, 1, 1, "plan \"GOAL\" [--yes | --out "
                                        "FILE]")) {
        cfg_release(plan_opts, &o);
        return rc > 0 ? ARCH_EXIT_OK : ARCH_EXIT_USAGE;
    }
    a->json = a->json || o.json;
    rc = plan_can_confirm(a, &o, "plan", "submit", "workplan");
    if (rc == 0) {
        rc = s_plan(a, &o, pos.items[0]);
    }
    cfg_release(plan_opts, &o);
    return rc;
}
