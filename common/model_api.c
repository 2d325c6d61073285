// model_api: the request and reply formats of the two APIs the model
// client speaks — OpenAI chat completions and Anthropic messages.  Pure:
// JSON in and out through common/json.c, no I/O, no logging.
#include "common/model_int.h"

#include "common/json.h"
#include "common/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Anthropic requires max_tokens; this is sent when the caller gives none.
#define S_ANTHROPIC_DEFAULT_MAX_TOKENS 4096

static const char *
s_role_name(model_role_t role)
{
    return role == MODEL_ROLE_SYSTEM      ? "system"
           : role == MODEL_ROLE_ASSISTANT ? "assistant"
                                          : "user";
}

static void
s_push_msg(jnode_t *msgs, const model_msg_t *m)
{
    jnode_t *o = json_obj_new();
    json_obj_set_str(o, "role", s_role_name(m->role));
    json_obj_set_str(o, "content", m->content);
    json_arr_push_node(msgs, &o);
}

// The fields both APIs share: model, max_tokens, temperature.
static jnode_t *
s_common(const model_config_t *cfg, const model_request_t *req,
         int64_t default_max_tokens)
{
    jnode_t *root = json_obj_new();
    json_obj_set_str(root, "model", cfg->model);
    int64_t max = req->max_tokens > 0 ? req->max_tokens : default_max_tokens;
    if (max > 0) {
        json_obj_set_int(root, "max_tokens", max);
    }
    if (req->has_temperature) {
        json_obj_set_num(root, "temperature", req->temperature);
    }
    return root;
}

static char *
s_dump(jnode_t **root_p)
{
    char *text = json_dump(*root_p, false);
    json_destroy(root_p);
    return text;
}

static char *
s_openai_body(const model_config_t *cfg, const model_request_t *req,
              bool json_mode)
{
    jnode_t *root = s_common(cfg, req, 0), *msgs = json_arr_new();
    for (size_t i = 0; i < req->n_messages; i++) {
        s_push_msg(msgs, &req->messages[i]);
    }
    json_obj_set_node(root, "messages", &msgs);
    if (json_mode) {
        jnode_t *rf = json_obj_new();
        json_obj_set_str(rf, "type", "json_object");
        json_obj_set_node(root, "response_format", &rf);
    }
    json_obj_set_bool(root, "stream", false);
    return s_dump(&root);
}

// System messages go into the top-level "system" string (joined by a blank
// line); the API has no JSON mode, so the prompt alone asks for JSON.
static char *
s_anthropic_body(const model_config_t *cfg, const model_request_t *req,
                 bool json_mode)
{
    (void) json_mode;
    jnode_t *root = s_common(cfg, req, S_ANTHROPIC_DEFAULT_MAX_TOKENS);
    jnode_t *msgs = json_arr_new();
    char *system = NULL;
    for (size_t i = 0; i < req->n_messages; i++) {
        const model_msg_t *m = &req->messages[i];
        if (m->role != MODEL_ROLE_SYSTEM) {
            s_push_msg(msgs, m);
            continue;
        }
        char *more = system ? xasprintf("%s\n\n%s", system, m->content)
                            : xstrdup(m->content);
        free(system);
        system = more;
    }
    if (system) {
        json_obj_set_str(root, "system", system);
        free(system);
    }
    json_obj_set_node(root, "messages", &msgs);
    return s_dump(&root);
}

static char *
s_bearer(const char *key)
{
    return xasprintf("Authorization: Bearer %s", key);
}

static char *
s_x_api_key(const char *key)
{
    return xasprintf("x-api-key: %s", key);
}

// The text and finish reason, or a phrase in why.
static model_rc_t
s_finish(model_reply_t *reply, const char *text, const char *finish,
         const char *length_reason, char *why, size_t whylen)
{
    reply->finish_reason = finish ? xstrdup(finish) : NULL;
    if (!text) {
        snprintf(why, whylen, "has no message content");
        return MODEL_E_REPLY;
    }
    reply->content = xstrdup(text);
    if (finish && strcmp(finish, length_reason) == 0) {
        snprintf(why, whylen, "was cut at the token limit (%s '%s', %lld "
                 "completion tokens)", strcmp(length_reason, "length") == 0
                                           ? "finish_reason"
                                           : "stop_reason",
                 finish, (long long) reply->completion_tokens);
        return MODEL_E_LENGTH;
    }
    if (!text[0]) {
        snprintf(why, whylen, "is empty");
        return MODEL_E_REPLY;
    }
    return MODEL_OK;
}

static jnode_t *
s_parse_json(const char *body, size_t len, char *why, size_t whylen)
{
    char jerr[160];
    jnode_t *root = json_parse(body, len, jerr, sizeof jerr);
    if (!root) {
        snprintf(why, whylen, "is not JSON: %s", len ? jerr : "empty body");
    }
    return root;
}

static model_rc_t
s_openai_parse(const char *body, size_t len, model_reply_t *reply, char *why,
               size_t whylen)
{
    jnode_t *root = s_parse_json(body, len, why, whylen);
    if (!root) {
        return MODEL_E_REPLY;
    }
    const jnode_t *usage = json_obj_get(root, "usage");
    reply->prompt_tokens = json_int(json_obj_get(usage, "prompt_tokens"));
    reply->completion_tokens =
        json_int(json_obj_get(usage, "completion_tokens"));
    const jnode_t *choice = json_arr_get(json_obj_get(root, "choices"), 0);
    model_rc_t rc = MODEL_E_REPLY;
    if (!choice) {
        snprintf(why, whylen, "has no choices");
    } else {
        const jnode_t *msg = json_obj_get(choice, "message");
        rc = s_finish(reply, json_str(json_obj_get(msg, "content")),
                      json_str(json_obj_get(choice, "finish_reason")),
                      "length", why, whylen);
    }
    json_destroy(&root);
    return rc;
}

// The text blocks of "content", joined; NULL when there is none.
static char *
s_anthropic_text(const jnode_t *content)
{
    char *text = NULL;
    for (size_t i = 0; i < json_arr_size(content); i++) {
        const jnode_t *block = json_arr_get(content, i);
        const char *type = json_str(json_obj_get(block, "type"));
        const char *t = json_str(json_obj_get(block, "text"));
        if (!t || !type || strcmp(type, "text") != 0) {
            continue;  // tool use and thinking blocks carry no answer
        }
        char *more = text ? xasprintf("%s%s", text, t) : xstrdup(t);
        free(text);
        text = more;
    }
    return text;
}

static model_rc_t
s_anthropic_parse(const char *body, size_t len, model_reply_t *reply,
                  char *why, size_t whylen)
{
    jnode_t *root = s_parse_json(body, len, why, whylen);
    if (!root) {
        return MODEL_E_REPLY;
    }
    const jnode_t *usage = json_obj_get(root, "usage");
    reply->prompt_tokens = json_int(json_obj_get(usage, "input_tokens"));
    reply->completion_tokens = json_int(json_obj_get(usage, "output_tokens"));
    const jnode_t *content = json_obj_get(root, "content");
    model_rc_t rc = MODEL_E_REPLY;
    if (json_arr_size(content) == 0) {
        snprintf(why, whylen, "has no content");
    } else {
        char *text = s_anthropic_text(content);
        rc = s_finish(reply, text,
                      json_str(json_obj_get(root, "stop_reason")),
                      "max_tokens", why, whylen);
        free(text);
    }
    json_destroy(&root);
    return rc;
}

static const model_api_ops_t s_apis[] = {
    [MODEL_API_OPENAI] = {.path = "/chat/completions",
                          .body = s_openai_body,
                          .auth = s_bearer,
                          .extra_header = NULL,
                          .parse = s_openai_parse},
    [MODEL_API_ANTHROPIC] = {.path = "/messages",
                             .body = s_anthropic_body,
                             .auth = s_x_api_key,
                             .extra_header = "anthropic-version: 2023-06-01",
                             .parse = s_anthropic_parse},
};

const model_api_ops_t *
model_api_ops(model_api_t api)
{
    return &s_apis[api == MODEL_API_ANTHROPIC ? MODEL_API_ANTHROPIC
                                              : MODEL_API_OPENAI];
}

int
model_api_parse(const char *name, model_api_t *api)
{
    if (strcmp(name, "openai") == 0) {
        *api = MODEL_API_OPENAI;
    } else if (strcmp(name, "anthropic") == 0) {
        *api = MODEL_API_ANTHROPIC;
    } else {
        return -1;
    }
    return 0;
}
