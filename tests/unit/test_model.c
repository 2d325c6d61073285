// test_model: the model client against a real HTTP server (fake_llm) on
// loopback: replies, usage, retries, timeouts, refusals, JSON-mode fallback,
// and a key that never reaches a log.
#include "common/clock.h"
#include "common/log.h"
#include "common/model.h"
#include "common/xalloc.h"

#include "tests/harness/llm.h"
#include "tests/harness/t.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

static const model_msg_t s_msgs[] = {
    {MODEL_ROLE_SYSTEM, "you plan work"},
    {MODEL_ROLE_USER, "count the words"},
};

static model_config_t
s_cfg(const llm_t *srv)
{
    return (model_config_t){.url = srv->url, .model = "test-model",
                            .timeout_ms = 10000, .retries = 2,
                            .backoff_ms = 10};
}

static const model_request_t s_req = {.messages = s_msgs, .n_messages = 2};

// Starts the server with script; REQUIRE in the caller.
static bool
s_start(llm_t *srv, const char *script)
{
    *srv = (llm_t){0};
    return llm_start(srv, t_tmpdir(), script) == 0;
}

static void
test_success_and_usage(void)
{
    llm_t srv;
    REQUIRE(s_start(&srv, "[{\"content\": \"hello there\", \"prompt_tokens\": "
                          "42, \"completion_tokens\": 5, "
                          "\"expect_headers\": [\"Authorization: Bearer "
                          "sk-one\"], \"expect_contains\": "
                          "[\"\\\"max_tokens\\\":100\", \"you plan work\"]}]"));
    model_config_t cfg = s_cfg(&srv);
    cfg.key = "sk-one";
    model_request_t req = s_req;
    req.max_tokens = 100;
    model_reply_t reply;
    char err[512] = "";
    CHECK_INT(model_chat(&cfg, &req, &reply, err, sizeof err), MODEL_OK);
    CHECK_STR(reply.content, "hello there");
    CHECK_STR(reply.finish_reason, "stop");
    CHECK_INT(reply.prompt_tokens, 42);
    CHECK_INT(reply.completion_tokens, 5);
    CHECK_INT(reply.attempts, 1);
    CHECK_INT(reply.http_status, 200);
    char *log = llm_requests(&srv);
    CHECK_HAS(log, "\"model\":\"test-model\"");
    CHECK_HAS(log, "\"role\":\"system\"");
    CHECK_HAS(log, "count the words");
    CHECK(strstr(log, "response_format") == NULL);
    free(log);
    model_reply_release(&reply);
    llm_stop(&srv);
}

// A big body must not wait for "100 Continue": curl sends "Expect:
// 100-continue" for bodies over 1 MiB and waits a second for servers that
// never answer it (llama.cpp's and ours do not).
static void
test_large_request_not_delayed(void)
{
    llm_t srv;
    REQUIRE(s_start(&srv, "[{\"content\": \"ok\", \"reject_headers\": "
                          "[\"Expect:\"]}]"));
    size_t n = 2 * 1024 * 1024;
    char *big = xmalloc(n + 1);
    memset(big, 'w', n);
    big[n] = '\0';
    model_msg_t msgs[] = {{MODEL_ROLE_SYSTEM, big}, {MODEL_ROLE_USER, "go"}};
    model_request_t req = {.messages = msgs, .n_messages = 2};
    model_config_t cfg = s_cfg(&srv);
    model_reply_t reply;
    char err[512] = "";
    CHECK_INT(model_chat(&cfg, &req, &reply, err, sizeof err), MODEL_OK);
    CHECK_STR(reply.content, "ok");
    model_reply_release(&reply);
    char *log = llm_requests(&srv);
    CHECK(strlen(log) > n);
    free(log);
    free(big);
    llm_stop(&srv);
}

static void
test_429_retry_after_then_success(void)
{
    llm_t srv;
    REQUIRE(s_start(&srv, "[{\"status\": 429, \"headers\": {\"Retry-After\": "
                          "\"1\"}, \"body\": \"{\\\"error\\\": \\\"slow "
                          "down\\\"}\"}, {\"content\": \"ok\"}]"));
    model_config_t cfg = s_cfg(&srv);
    model_reply_t reply;
    char err[512] = "";
    int64_t t0 = clock_mono_ms();
    CHECK_INT(model_chat(&cfg, &s_req, &reply, err, sizeof err), MODEL_OK);
    int64_t took = clock_mono_ms() - t0;
    // Retry-After: 1 is honoured (not the 10 ms backoff), loosely timed.
    CHECK(took >= 900);
    CHECK(took < 8000);
    CHECK_INT(reply.attempts, 2);
    CHECK_STR(reply.content, "ok");
    CHECK_INT(llm_count(&srv), 2);
    model_reply_release(&reply);
    llm_stop(&srv);
}

static void
test_retry_after_capped(void)
{
    llm_t srv;
    REQUIRE(s_start(&srv, "[{\"status\": 503, \"headers\": {\"Retry-After\": "
                          "\"3600\"}}, {\"content\": \"ok\"}]"));
    model_config_t cfg = s_cfg(&srv);
    cfg.retry_after_cap_ms = 200;
    model_reply_t reply;
    char err[512] = "";
    int64_t t0 = clock_mono_ms();
    CHECK_INT(model_chat(&cfg, &s_req, &reply, err, sizeof err), MODEL_OK);
    CHECK(clock_mono_ms() - t0 < 5000);
    CHECK_INT(reply.attempts, 2);
    model_reply_release(&reply);
    llm_stop(&srv);
}

static void
test_500_retries_exhausted(void)
{
    llm_t srv;
    REQUIRE(s_start(&srv, "[{\"status\": 500, \"body\": \"{\\\"error\\\": "
                          "{\\\"message\\\": \\\"boom\\\"}}\"},"
                          "{\"status\": 502}, {\"status\": 500, \"body\": "
                          "\"{\\\"error\\\": {\\\"message\\\": "
                          "\\\"boom\\\"}}\"}, {\"content\": \"never\"}]"));
    model_config_t cfg = s_cfg(&srv);
    model_reply_t reply;
    char err[512] = "";
    CHECK_INT(model_chat(&cfg, &s_req, &reply, err, sizeof err),
              MODEL_E_HTTP);
    CHECK_INT(reply.attempts, 3);
    CHECK_INT(reply.http_status, 500);
    CHECK_HAS(err, "HTTP 500");
    CHECK_HAS(err, "boom");
    CHECK_HAS(err, srv.url);
    CHECK(reply.content == NULL);
    CHECK_INT(llm_count(&srv), 3);
    llm_stop(&srv);
}

static void
test_401_bad_key(void)
{
    llm_t srv;
    // The server quotes the key back, with a terminal escape: neither
    // reaches the message.
    REQUIRE(s_start(&srv, "[{\"status\": 401, \"body\": \"{\\\"error\\\": "
                          "{\\\"message\\\": \\\"invalid api key "
                          "sk-wrong-key-123\\\\u001b[2J\\\"}}\"}]"));
    model_config_t cfg = s_cfg(&srv);
    cfg.key = "sk-wrong-key-123";
    model_reply_t reply;
    char err[512] = "";
    CHECK_INT(model_chat(&cfg, &s_req, &reply, err, sizeof err),
              MODEL_E_AUTH);
    CHECK_HAS(err, "refused the key (HTTP 401)");
    CHECK_HAS(err, "invalid api key");
    CHECK(strstr(err, "sk-wrong-key-123") == NULL);
    CHECK_HAS(err, "invalid api key ***");
    CHECK(strchr(err, '\x1b') == NULL);
    CHECK_INT(reply.attempts, 1);  // no retry on 401
    llm_stop(&srv);
    REQUIRE(s_start(&srv, "[{\"status\": 403, \"body\": \"forbidden\"}]"));
    cfg = s_cfg(&srv);
    CHECK_INT(model_chat(&cfg, &s_req, &reply, err, sizeof err),
              MODEL_E_AUTH);
    CHECK_HAS(err, "refused the key (HTTP 403): forbidden");
    llm_stop(&srv);
}

// A port nothing listens on: bound, then closed.
static int
s_closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    bind(fd, (struct sockaddr *) &a, sizeof a);
    getsockname(fd, (struct sockaddr *) &a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

static void
test_refused_connection(void)
{
    char url[128];
    snprintf(url, sizeof url, "http://user:hunter2@127.0.0.1:%d/v1?k=s3cr3t",
             s_closed_port());
    model_config_t cfg = {.url = url, .model = "m", .retries = 2,
                          .backoff_ms = 10};
    model_reply_t reply;
    char err[512] = "";
    CHECK_INT(model_chat(&cfg, &s_req, &reply, err, sizeof err),
              MODEL_E_CONNECT);
    CHECK_HAS(err, "cannot connect to 'http://127.0.0.1:");
    CHECK(strstr(err, "hunter2") == NULL);
    CHECK(strstr(err, "s3cr3t") == NULL);
    CHECK_STR(model_strerror(MODEL_E_CONNECT), "cannot connect");
}

// A server whose accept queue is full: Linux drops further SYNs, so the
// connection never completes and the connect timeout must end the call.
static void
test_connect_timeout(void)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    REQUIRE(bind(lfd, (struct sockaddr *) &a, sizeof a) == 0);
    REQUIRE(listen(lfd, 0) == 0);
    getsockname(lfd, (struct sockaddr *) &a, &len);
    int fill[4];
    for (int i = 0; i < 4; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *) &a, sizeof a);
    }
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", ntohs(a.sin_port));
    model_config_t cfg = {.url = url, .model = "m", .connect_timeout_ms = 500,
                          .timeout_ms = 20000};
    model_reply_t reply;
    char err[512] = "";
    int64_t t0 = clock_mono_ms();
    CHECK_INT(model_chat(&cfg, &s_req, &reply, err, sizeof err),
              MODEL_E_CONNECT);
    CHECK(clock_mono_ms() - t0 < 5000);
    CHECK_HAS(err, "no connection in time to");
    for (int i = 0; i < 4; i++) {
        close(fill[i]);
    }
    close(lfd);
}

static void
test_non_json(void)
{
    llm_t srv;
    REQUIRE(s_start(&srv, "[{\"body\": \"<html>hello</html>\"}]"));
    model_config_t cfg = s_cfg(&srv);
    model_reply_t reply;
    char err[512] = "";
    CHECK_INT(model_chat(&cfg, &s_req, &reply, err, sizeof err),
              MODEL_E_REPLY);
    CHECK_HAS(err, "is not JSON");
    CHECK_HAS(err, "HTTP 200");
    llm_stop(&srv);
}

static void
test_truncated_body(void)
{
    llm_t srv;
    REQUIRE(s_start(&srv, "[{\"content\": \"a long enough reply to cut\", "
                          "\"close\": true}]"));
    model_config_t cfg = s_cfg(&srv);
    model_reply_t reply;
    char err[512] = "";
    CHECK_INT(model_chat(&cfg, &s_req, &reply, err, sizeof err),
              MODEL_E_REPLY);
    CHECK_HAS(err, "truncated reply from");
    CHECK_INT(reply.attempts, 1);
    llm_stop(&srv);
}

static void
test_no_reply_at_all(void)
{
    llm_t srv;
    REQUIRE(s_start(&srv, "[{\"content\": \"x\", \"drop\": true}]"));
    model_config_t cfg = s_cfg(&srv);
    model_reply_t reply;
    char err[512] = "";
    CHECK_INT(model_chat(&cfg, &s_req, &reply, err, sizeof err),
              MODEL_E_REPLY);
    CHECK_HAS(err, "empty reply from");
    CHECK_INT(reply.attempts, 1);
    llm_stop(&srv);
}

static void
test_empty_choices(void)
{
    llm_t srv;
    REQUIRE(s_start(&srv, "[{\"body\": \"{\\\"choices\\\": []}\"},"
                          "{\"content\": \"\"}]"));
    model_config_t cfg = s_cfg(&srv);
    model_reply_t reply;
    char err[512] = "";
    CHECK_INT(model_chat(&cfg, &s_req, &reply, err, sizeof err),
              MODEL_E_REPLY);
    CHECK_HAS(err, "has no choices");
    CHECK_INT(model_chat(&cfg, &s_req, &reply, err, sizeof err),
              MODEL_E_REPLY);
    CHECK_HAS(err, "is empty");
    llm_stop(&srv);
}

static void
test_finish_reason_length(void)
{
    llm_t srv;
    REQUIRE(s_start(&srv, "[{\"content\": \"{\\\"name\\\": \", "
                          "\"finish_reason\": \"length\", "
                          "\"completion_tokens\": 64}]"));
    model_config_t cfg = s_cfg(&srv);
    model_reply_t reply;
    char err[512] = "";
    CHECK_INT(model_chat(&cfg, &s_req, &reply, err, sizeof err),
              MODEL_E_LENGTH);
    CHECK_HAS(err, "cut at the token limit");
    // The tokens were spent: the cut reply and its usage are kept.
    CHECK_STR(reply.content, "{\"name\": ");
    CHECK_INT(reply.completion_tokens, 64);
    model_reply_release(&reply);
    llm_stop(&srv);
}

static void
test_hang_total_timeout(void)
{
    llm_t srv;
    REQUIRE(s_start(&srv, "[{\"content\": \"late\", \"hang\": true}]"));
    model_config_t cfg = s_cfg(&srv);
    cfg.timeout_ms = 700;
    model_reply_t reply;
    char err[512] = "";
    int64_t t0 = clock_mono_ms();
    CHECK_INT(model_chat(&cfg, &s_req, &reply, err, sizeof err),
              MODEL_E_TIMEOUT);
    int64_t took = clock_mono_ms() - t0;
    CHECK(took >= 600);
    CHECK(took < 5000);
    CHECK_HAS(err, "timed out waiting for");
    CHECK_INT(reply.attempts, 1);
    llm_stop(&srv);
}

static void
test_json_mode_fallback(void)
{
    llm_t srv;
    REQUIRE(s_start(&srv, "[{\"status\": 400, \"body\": \"{\\\"error\\\": "
                          "{\\\"message\\\": \\\"unknown field "
                          "response_format\\\"}}\", \"expect_contains\": "
                          "[\"\\\"response_format\\\":{\\\"type\\\":"
                          "\\\"json_object\\\"}\"]},"
                          "{\"content\": \"{}\"}]"));
    model_config_t cfg = s_cfg(&srv);
    model_request_t req = s_req;
    req.json_mode = true;
    model_reply_t reply;
    char err[512] = "";
    CHECK_INT(model_chat(&cfg, &req, &reply, err, sizeof err), MODEL_OK);
    CHECK(reply.json_mode_dropped);
    CHECK_INT(reply.attempts, 2);
    char *log = llm_requests(&srv);
    char *second = strchr(log, '\n');
    REQUIRE(second);
    CHECK(strstr(second, "response_format") == NULL);
    free(log);
    model_reply_release(&reply);
    llm_stop(&srv);
}

static void
test_json_mode_fallback_only_once(void)
{
    llm_t srv;
    REQUIRE(s_start(&srv, "[{\"status\": 400, \"body\": \"bad "
                          "response_format\"}, {\"status\": 400, \"body\": "
                          "\"bad response_format\"}]"));
    model_config_t cfg = s_cfg(&srv);
    model_request_t req = s_req;
    req.json_mode = true;
    model_reply_t reply;
    char err[512] = "";
    CHECK_INT(model_chat(&cfg, &req, &reply, err, sizeof err),
              MODEL_E_HTTP);
    CHECK_HAS(err, "HTTP 400");
    CHECK_INT(reply.attempts, 2);
    llm_stop(&srv);
}

// Runs fn's model calls with debug logging into a file, returns the log.
static char *
s_logged_call(const model_config_t *cfg, model_rc_t *rc)
{
    char path[600];
    snprintf(path, sizeof path, "%s/debug.log", t_tmpdir());
    fflush(stderr);
    int saved = dup(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    close(fd);
    log_init(LOG_LEVEL_DEBUG, false);
    model_reply_t reply;
    char err[512] = "";
    *rc = model_chat(cfg, &s_req, &reply, err, sizeof err);
    fprintf(stderr, "error: %s\n", err);
    model_reply_release(&reply);
    log_init(LOG_LEVEL_WARN, false);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    return t_read_file(path, NULL);
}

static void
test_key_never_logged(void)
{
    llm_t srv;
    REQUIRE(s_start(&srv, "[{\"status\": 429, \"expect_headers\": "
                          "[\"Bearer sk-SECRET-4711\"]},"
                          "{\"status\": 401, \"body\": \"no\"}]"));
    model_config_t cfg = s_cfg(&srv);
    cfg.key = "sk-SECRET-4711";
    model_rc_t rc;
    char *log = s_logged_call(&cfg, &rc);
    CHECK_INT(rc, MODEL_E_AUTH);
    CHECK_HAS(log, "POST '");          // debug logging was on
    CHECK_HAS(log, "HTTP 429");
    CHECK(strstr(log, "sk-SECRET-4711") == NULL);
    CHECK(strstr(log, "Bearer") == NULL);
    free(log);
    llm_stop(&srv);
}

static void
test_anthropic_messages(void)
{
    llm_t srv;
    REQUIRE(s_start(&srv, "[{\"content\": \"bonjour\", \"prompt_tokens\": 9, "
                          "\"completion_tokens\": 2, \"expect_headers\": "
                          "[\"x-api-key: sk-ant-1\", \"anthropic-version: "
                          "2023-06-01\"], \"reject_headers\": "
                          "[\"Authorization\"], \"expect_contains\": "
                          "[\"\\\"system\\\":\\\"you plan work\\\"\", "
                          "\"\\\"max_tokens\\\":4096\"]},"
                          "{\"content\": \"cut\", \"finish_reason\": "
                          "\"max_tokens\"}]"));
    model_config_t cfg = s_cfg(&srv);
    cfg.api = MODEL_API_ANTHROPIC;
    cfg.key = "sk-ant-1";
    model_request_t req = s_req;
    req.json_mode = true;
    model_reply_t reply;
    char err[512] = "";
    CHECK_INT(model_chat(&cfg, &req, &reply, err, sizeof err), MODEL_OK);
    CHECK_STR(reply.content, "bonjour");
    CHECK_STR(reply.finish_reason, "end_turn");
    CHECK_INT(reply.prompt_tokens, 9);
    CHECK_INT(reply.completion_tokens, 2);
    model_reply_release(&reply);
    char *log = llm_requests(&srv);
    // The system prompt is top-level, not a message; no JSON mode field.
    CHECK(strstr(log, "\"role\":\"system\"") == NULL);
    CHECK(strstr(log, "response_format") == NULL);
    free(log);
    CHECK_INT(model_chat(&cfg, &req, &reply, err, sizeof err),
              MODEL_E_LENGTH);
    CHECK_HAS(err, "stop_reason 'max_tokens'");
    CHECK_HAS(err, "/v1/messages");
    model_reply_release(&reply);
    model_api_t api;
    CHECK_INT(model_api_parse("anthropic", &api), 0);
    CHECK_INT(api, MODEL_API_ANTHROPIC);
    CHECK_INT(model_api_parse("claude", &api), -1);
    llm_stop(&srv);
}

static void
test_key_file(void)
{
    char path[600], *key = NULL, err[512] = "";
    snprintf(path, sizeof path, "%s/key", t_tmpdir());
    REQUIRE(t_write_file(path, "  sk-from-file \n") == 0);
    chmod(path, 0644);
    CHECK_INT(model_key_load(path, &key, err, sizeof err), -1);
    CHECK_HAS(err, "may be read by others");
    chmod(path, 0600);
    CHECK_INT(model_key_load(path, &key, err, sizeof err), 0);
    CHECK_STR(key, "sk-from-file");
    free(key);
    REQUIRE(t_write_file(path, "\n") == 0);
    chmod(path, 0600);
    CHECK_INT(model_key_load(path, &key, err, sizeof err), -1);
    CHECK_HAS(err, "is empty");
}

static void
test_config_and_redact(void)
{
    model_config_t cfg = {.model = "m"};
    model_reply_t reply;
    char err[512] = "";
    CHECK_INT(model_chat(&cfg, &s_req, &reply, err, sizeof err),
              MODEL_E_CONFIG);
    CHECK_HAS(err, "WAGGLE_MODEL_URL");
    char *r = model_url_redact("https://u:p@api.example.com/v1?key=x");
    CHECK_STR(r, "https://api.example.com/v1");
    free(r);
    r = model_url_redact("http://h:1/v1/a@b");
    CHECK_STR(r, "http://h:1/v1/a@b");
    free(r);
}

static const t_case_t t_cases[] = {
    T(test_success_and_usage),
    T(test_large_request_not_delayed),
    T(test_429_retry_after_then_success),
    T(test_retry_after_capped),
    T(test_500_retries_exhausted),
    T(test_401_bad_key),
    T(test_refused_connection),
    T(test_connect_timeout),
    T(test_non_json),
    T(test_truncated_body),
    T(test_no_reply_at_all),
    T(test_empty_choices),
    T(test_finish_reason_length),
    T(test_hang_total_timeout),
    T(test_json_mode_fallback),
    T(test_json_mode_fallback_only_once),
    T(test_key_never_logged),
    T(test_anthropic_messages),
    T(test_key_file),
    T(test_config_and_redact),
    {0},
};

T_MAIN(t_cases)
