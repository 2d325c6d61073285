// model: the client for chat-completion model endpoints — the only module
// that touches libcurl.
//
// Speaks the OpenAI-compatible protocol (llama.cpp's server, Ollama, vLLM,
// hosted APIs): POST {url}/chat/completions with a JSON body; and
// Anthropic's Messages API (POST {url}/messages) behind the same interface
// (model_api.c holds both formats).  One blocking call per model_chat().
// Blocking is deliberate: the architect waits for the model anyway, and a
// drone runs a model call as a child process through its runner, which
// owns the timeout and the kill — so the client keeps no state between
// calls and needs no event loop.
//
// It owns: connect and total timeouts, retries with backoff on 429 and 5xx
// (honouring Retry-After in seconds, capped), one retry without
// response_format when a server refuses JSON mode, and turning every
// failure into a model_rc_t plus a sentence that names the URL (without
// credentials) and the HTTP status.  The key is sent as a bearer token (or
// x-api-key) and never printed or logged, at any level; a server quoting it
// back is redacted.  JSON goes through common/json.c.
#ifndef WAGGLE_MODEL_H
#define WAGGLE_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    MODEL_OK = 0,
    MODEL_E_CONFIG,     // no URL or model, a bad URL, an unsafe key file
    MODEL_E_CONNECT,    // refused, unresolvable, or no connection in time
    MODEL_E_TIMEOUT,    // connected, but no whole reply within timeout_ms
    MODEL_E_AUTH,       // HTTP 401 or 403: the key was refused
    MODEL_E_RATE,       // HTTP 429 still after every retry
    MODEL_E_HTTP,       // any other HTTP error (5xx after every retry)
    MODEL_E_REPLY,      // not JSON, truncated, empty, or no choices
    MODEL_E_LENGTH,     // finish_reason "length": the reply was cut short
} model_rc_t;

// Defaults (README "Models").
#define MODEL_DEFAULT_TIMEOUT_MS 120000
#define MODEL_DEFAULT_CONNECT_TIMEOUT_MS 10000
#define MODEL_DEFAULT_RETRIES 3
#define MODEL_DEFAULT_BACKOFF_MS 500
#define MODEL_RETRY_AFTER_CAP_MS 60000
#define MODEL_MAX_REPLY_BYTES (16 * 1024 * 1024)

typedef enum {
    MODEL_API_OPENAI = 0,       // chat completions (the default)
    MODEL_API_ANTHROPIC,        // messages; no JSON mode
} model_api_t;

typedef struct {
    model_api_t api;
    const char *url;            // base, e.g. "http://127.0.0.1:8080/v1"
    const char *model;          // model name sent in the request
    const char *key;            // NULL: no Authorization header; secret
    int64_t connect_timeout_ms; // 0: MODEL_DEFAULT_CONNECT_TIMEOUT_MS
    int64_t timeout_ms;         // per HTTP request; 0: MODEL_DEFAULT_TIMEOUT_MS
    int retries;                // on 429/5xx; < 0: MODEL_DEFAULT_RETRIES
    int64_t backoff_ms;         // first backoff, doubled; 0: the default
    int64_t retry_after_cap_ms; // longest Retry-After honoured; 0: the default
} model_config_t;

typedef enum {
    MODEL_ROLE_SYSTEM = 0,
    MODEL_ROLE_USER,
    MODEL_ROLE_ASSISTANT,
} model_role_t;

typedef struct {
    model_role_t role;
    const char *content;        // borrowed
} model_msg_t;

typedef struct {
    const model_msg_t *messages; // system, then user/assistant turns
    size_t n_messages;
    int64_t max_tokens;          // 0: not sent (Anthropic, which requires
                                 // it: 4096)
    bool has_temperature;
    double temperature;
    bool json_mode;              // response_format {"type": "json_object"}
                                 // (OpenAI only; ignored for Anthropic)
} model_request_t;

typedef struct {
    char *content;               // the reply text (owned)
    char *finish_reason;         // owned; NULL when the server sent none
    int64_t prompt_tokens;       // usage, 0 when the server sent none
    int64_t completion_tokens;
    int http_status;             // of the last HTTP exchange, 0 if none
    int attempts;                // HTTP requests made
    bool json_mode_dropped;      // the server refused response_format
} model_reply_t;

// Sends req and waits for the reply.  Returns MODEL_OK with *reply filled
// (release it with model_reply_release), or an error with err holding one
// lowercase sentence naming the URL and HTTP status.  On MODEL_E_LENGTH the
// cut reply and its usage are in *reply too (tokens were spent).  cfg and
// req are borrowed.  Blocks for up to (retries + 1) * timeout_ms plus the
// backoffs; safe to call from a forked child that has not used curl.
model_rc_t model_chat(const model_config_t *cfg, const model_request_t *req,
                      model_reply_t *reply, char *err, size_t errlen);
void model_reply_release(model_reply_t *reply);
// "refused connection", ... : a short name for rc.
const char *model_strerror(model_rc_t rc);

// Reads a key file: the first line, surrounding whitespace trimmed.  Refuses
// a file that group or others may read (like our secret keys) and an empty
// one.  Returns 0 with *key (caller frees), or -1 with err.
int model_key_load(const char *path, char **key, char *err, size_t errlen);
// "openai" or "anthropic" -> *api; -1 for anything else.
int model_api_parse(const char *name, model_api_t *api);
// url with any "user:password@" and query removed, for messages; caller
// frees.
char *model_url_redact(const char *url);

#endif
