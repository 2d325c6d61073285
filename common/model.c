// model: one chat-completion call over libcurl (see model.h).
//
// Never logs or prints the key, the Authorization header, or a URL's
// userinfo; CURLOPT_VERBOSE stays off because it would print the header.
#include "common/model_int.h"

#include "common/json.h"
#include "common/log.h"
#include "common/xalloc.h"

#include <curl/curl.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

// One HTTP exchange and what came back.
typedef struct {
    char *body;                 // reply body, NUL-terminated
    size_t len;
    bool too_big;               // more than MODEL_MAX_REPLY_BYTES
    long status;                // HTTP status, 0 if none
    bool connected;             // a connection was made
    int64_t retry_after_ms;     // -1: no (usable) Retry-After header
    CURLcode code;
    char curl_err[CURL_ERROR_SIZE];
} s_exchange_t;

const char *
model_strerror(model_rc_t rc)
{
    switch (rc) {
    case MODEL_OK:
        return "ok";
    case MODEL_E_CONFIG:
        return "bad model settings";
    case MODEL_E_CONNECT:
        return "cannot connect";
    case MODEL_E_TIMEOUT:
        return "timed out";
    case MODEL_E_AUTH:
        return "key refused";
    case MODEL_E_RATE:
        return "rate limited";
    case MODEL_E_HTTP:
        return "http error";
    case MODEL_E_REPLY:
        return "bad reply";
    case MODEL_E_LENGTH:
        return "reply cut at the token limit";
    }
    return "unknown";
}

char *
model_url_redact(const char *url)
{
    const char *scheme = strstr(url, "://");
    const char *host = scheme ? scheme + 3 : url;
    const char *end = host + strcspn(host, "/?#");
    const char *at = memchr(host, '@', (size_t) (end - host));
    char *out = at ? xasprintf("%.*s%s", (int) (host - url), url, at + 1)
                   : xstrdup(url);
    out[strcspn(out, "?#")] = '\0';
    return out;
}

int
model_key_load(const char *path, char **key, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        snprintf(err, errlen, "cannot read model key file '%s': %s", path,
                 strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    if (st.st_mode & 077) {
        snprintf(err, errlen, "model key file '%s' may be read by others "
                 "(mode %03o); chmod 600 it", path,
                 (unsigned) (st.st_mode & 0777));
        close(fd);
        return -1;
    }
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    char *s = buf;
    while (isspace((unsigned char) *s)) {
        s++;
    }
    size_t len = strlen(s);
    while (len > 0 && isspace((unsigned char) s[len - 1])) {
        s[--len] = '\0';
    }
    if (len == 0) {
        snprintf(err, errlen, "model key file '%s' is empty", path);
        return -1;
    }
    *key = xstrdup(s);
    explicit_bzero(buf, sizeof buf);
    return 0;
}

void
model_reply_release(model_reply_t *reply)
{
    if (!reply) {
        return;
    }
    free(reply->content);
    free(reply->finish_reason);
    *reply = (model_reply_t){0};
}

static size_t
s_on_body(char *data, size_t size, size_t n, void *user)
{
    s_exchange_t *ex = user;
    size_t add = size * n;
    if (ex->len + add > MODEL_MAX_REPLY_BYTES) {
        ex->too_big = true;
        return 0;  // aborts the transfer
    }
    ex->body = xrealloc(ex->body, ex->len + add + 1);
    memcpy(ex->body + ex->len, data, add);
    ex->len += add;
    ex->body[ex->len] = '\0';
    return add;
}

// Only the seconds form of Retry-After; an HTTP date is ignored (the
// backoff applies instead).
static size_t
s_on_header(char *data, size_t size, size_t n, void *user)
{
    s_exchange_t *ex = user;
    size_t len = size * n;
    static const char name[] = "retry-after:";
    if (len > sizeof name && strncasecmp(data, name, sizeof name - 1) == 0) {
        char value[32] = "";
        size_t vlen = len - (sizeof name - 1);
        vlen = vlen < sizeof value - 1 ? vlen : sizeof value - 1;
        memcpy(value, data + sizeof name - 1, vlen);
        char *end = NULL;
        long long s = strtoll(value, &end, 10);
        while (end && isspace((unsigned char) *end)) {
            end++;
        }
        if (end && end != value && *end == '\0' && s >= 0) {
            ex->retry_after_ms = s > 86400 ? 86400000 : s * 1000;
        }
    }
    return len;
}

static int64_t
s_or(int64_t v, int64_t def)
{
    return v > 0 ? v : def;
}

// The request headers; *auth (the header carrying the key, or NULL) is
// the caller's to wipe and free.
static struct curl_slist *
s_headers(const model_config_t *cfg, char **auth)
{
    const model_api_ops_t *ops = model_api_ops(cfg->api);
    struct curl_slist *hdrs =
        curl_slist_append(NULL, "Content-Type: application/json");
    // No "Expect: 100-continue" for big bodies: llama.cpp's server never
    // answers it, and curl would wait a second before every such request.
    hdrs = curl_slist_append(hdrs, "Expect:");
    if (ops->extra_header) {
        hdrs = curl_slist_append(hdrs, ops->extra_header);
    }
    *auth = NULL;
    if (cfg->key && cfg->key[0]) {
        *auth = ops->auth(cfg->key);
        hdrs = curl_slist_append(hdrs, *auth);
    }
    return hdrs;
}

// Never CURLOPT_VERBOSE (it prints the headers, the key among them) and
// never following redirects (the key would go to wherever they point).
static void
s_options(CURL *c, const model_config_t *cfg, const char *url,
          const char *body, struct curl_slist *hdrs, s_exchange_t *ex)
{
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                     (long) s_or(cfg->connect_timeout_ms,
                                 MODEL_DEFAULT_CONNECT_TIMEOUT_MS));
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                     (long) s_or(cfg->timeout_ms, MODEL_DEFAULT_TIMEOUT_MS));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, ex);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, s_on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, ex);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ex->curl_err);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_USERAGENT, "waggle/" WAGGLE_VERSION);
}

static void
s_exchange(const model_config_t *cfg, const char *url, const char *body,
           s_exchange_t *ex)
{
    *ex = (s_exchange_t){.retry_after_ms = -1};
    CURL *c = curl_easy_init();
    if (!c) {
        ex->code = CURLE_FAILED_INIT;
        return;
    }
    char *auth = NULL;
    struct curl_slist *hdrs = s_headers(cfg, &auth);
    s_options(c, cfg, url, body, hdrs, ex);
    ex->code = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &ex->status);
    curl_off_t connect_us = 0;
    curl_easy_getinfo(c, CURLINFO_CONNECT_TIME_T, &connect_us);
    ex->connected = connect_us > 0;
    curl_easy_cleanup(c);
    curl_slist_free_all(hdrs);
    if (auth) {
        explicit_bzero(auth, strlen(auth));
        free(auth);
    }
}

// The server's own words from an error body ({"error": {"message"}} or
// {"error": "..."}), else the start of the body.  Caller frees.
static char *
s_server_says(const s_exchange_t *ex)
{
    if (!ex->body || ex->len == 0) {
        return xstrdup("(empty body)");
    }
    jnode_t *root = json_parse(ex->body, ex->len, NULL, 0);
    const jnode_t *e = json_obj_get(root, "error");
    const char *msg = json_str(e) ? json_str(e)
                                  : json_str(json_obj_get(e, "message"));
    char *out = msg ? xasprintf("%.300s", msg)
                    : xasprintf("%.300s", ex->body);
    json_destroy(&root);
    // The server's text reaches a terminal: no control bytes.
    for (char *p = out; *p; p++) {
        if ((unsigned char) *p < 0x20 || *p == 0x7f) {
            *p = ' ';
        }
    }
    return out;
}

// A server may quote the key it refused: every copy of it in err becomes
// "***".
static void
s_redact_key(char *err, const char *key)
{
    size_t klen = key ? strlen(key) : 0;
    if (klen == 0) {
        return;
    }
    for (char *p; (p = strstr(err, key));) {
        memcpy(p, "***", 3);
        memmove(p + 3, p + klen, strlen(p + klen) + 1);
    }
}

static model_rc_t
s_curl_fail(const s_exchange_t *ex, const char *where, char *err,
            size_t errlen)
{
    const char *why = ex->curl_err[0] ? ex->curl_err
                                      : curl_easy_strerror(ex->code);
    model_rc_t rc = MODEL_E_REPLY;
    const char *what = "bad reply from";
    switch (ex->code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        rc = MODEL_E_CONNECT;
        what = "cannot connect to";
        break;
    case CURLE_OPERATION_TIMEDOUT:
        rc = ex->connected ? MODEL_E_TIMEOUT : MODEL_E_CONNECT;
        what = ex->connected ? "timed out waiting for"
                             : "no connection in time to";
        break;
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
        what = "truncated reply from";
        break;
    case CURLE_GOT_NOTHING:
        what = "empty reply from";
        break;
    case CURLE_WRITE_ERROR:
        if (ex->too_big) {
            snprintf(err, errlen, "reply from '%s' is over %d bytes", where,
                     MODEL_MAX_REPLY_BYTES);
            return MODEL_E_REPLY;
        }
        break;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        rc = MODEL_E_CONFIG;
        what = "bad model url";
        break;
    default:
        break;
    }
    snprintf(err, errlen, "%s '%s': %s", what, where, why);
    return rc;
}

static bool
s_is_retryable(long status)
{
    return status == 429 || (status >= 500 && status <= 599);
}

static bool
s_refuses_json_mode(const s_exchange_t *ex)
{
    return ex->status == 400 && ex->body &&
           strcasestr(ex->body, "response_format") != NULL;
}

// Fills reply from a 200 body through the API's parser.
static model_rc_t
s_parse_reply(const model_api_ops_t *ops, const s_exchange_t *ex,
              const char *where, model_reply_t *reply, char *err,
              size_t errlen)
{
    char why[400] = "";
    model_rc_t rc = ops->parse(ex->body ? ex->body : "", ex->len, reply, why,
                               sizeof why);
    if (rc != MODEL_OK) {
        snprintf(err, errlen, "reply from '%s' (HTTP %ld) %s", where,
                 ex->status, why);
    }
    return rc;
}

static model_rc_t
s_http_fail(const s_exchange_t *ex, const char *where, char *err,
            size_t errlen)
{
    char *says = s_server_says(ex);
    model_rc_t rc = MODEL_E_HTTP;
    if (ex->status == 401 || ex->status == 403) {
        rc = MODEL_E_AUTH;
        snprintf(err, errlen, "'%s' refused the key (HTTP %ld): %s", where,
                 ex->status, says);
    } else {
        rc = ex->status == 429 ? MODEL_E_RATE : MODEL_E_HTTP;
        snprintf(err, errlen, "'%s' answered HTTP %ld: %s", where,
                 ex->status, says);
    }
    free(says);
    return rc;
}

static void
s_sleep_ms(int64_t ms)
{
    struct timespec ts = {ms / 1000, (long) (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

// How long to wait before retry number k (1-based): Retry-After when the
// server gave one (capped), else backoff * 2^(k-1), capped at the same cap.
static int64_t
s_backoff_ms(const model_config_t *cfg, const s_exchange_t *ex, int k)
{
    int64_t cap = s_or(cfg->retry_after_cap_ms, MODEL_RETRY_AFTER_CAP_MS);
    if (ex->retry_after_ms >= 0) {
        return ex->retry_after_ms < cap ? ex->retry_after_ms : cap;
    }
    int64_t ms = s_or(cfg->backoff_ms, MODEL_DEFAULT_BACKOFF_MS);
    for (int i = 1; i < k && ms < cap; i++) {
        ms *= 2;
    }
    return ms < cap ? ms : cap;
}

static void
s_exchange_release(s_exchange_t *ex)
{
    free(ex->body);
    ex->body = NULL;
}

static model_rc_t
s_check_config(const model_config_t *cfg, char *err, size_t errlen)
{
    if (!cfg->url || !cfg->url[0]) {
        snprintf(err, errlen, "no model url (--model-url or "
                 "WAGGLE_MODEL_URL)");
        return MODEL_E_CONFIG;
    }
    if (!cfg->model || !cfg->model[0]) {
        snprintf(err, errlen, "no model name (--model or WAGGLE_MODEL)");
        return MODEL_E_CONFIG;
    }
    static bool inited;
    if (!inited && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "cannot initialise libcurl");
        return MODEL_E_CONFIG;
    }
    inited = true;
    return MODEL_OK;
}

// The exchange loop: retries on 429/5xx, drops JSON mode once if refused.
// Returns MODEL_OK with the 200 exchange in *ex, else an error.
static model_rc_t
s_exchange_loop(const model_config_t *cfg, const model_request_t *req,
                const char *url, const char *where, model_reply_t *reply,
                s_exchange_t *ex, char *err, size_t errlen)
{
    int retries = cfg->retries < 0 ? MODEL_DEFAULT_RETRIES : cfg->retries;
    bool json_mode = req->json_mode;
    for (int k = 0;; k++) {
        char *body = model_api_ops(cfg->api)->body(cfg, req, json_mode);
        log_debug("model", "POST '%s' (attempt %d, %zu bytes%s)", where,
                  reply->attempts + 1, strlen(body),
                  json_mode ? ", json mode" : "");
        s_exchange(cfg, url, body, ex);
        free(body);
        reply->attempts++;
        reply->http_status = (int) ex->status;
        if (ex->code != CURLE_OK) {
            return s_curl_fail(ex, where, err, errlen);
        }
        if (ex->status == 200) {
            return MODEL_OK;
        }
        if (json_mode && s_refuses_json_mode(ex)) {
            log_info("model", "'%s' refused response_format; asking again "
                     "without JSON mode", where);
            json_mode = false;
            reply->json_mode_dropped = true;
            k--;
        } else if (!s_is_retryable(ex->status) || k >= retries) {
            return s_http_fail(ex, where, err, errlen);
        } else {
            int64_t wait = s_backoff_ms(cfg, ex, k + 1);
            log_info("model", "'%s' answered HTTP %ld; retry %d/%d in %lld "
                     "ms", where, ex->status, k + 1, retries,
                     (long long) wait);
            s_sleep_ms(wait);
        }
        s_exchange_release(ex);
    }
}

model_rc_t
model_chat(const model_config_t *cfg, const model_request_t *req,
           model_reply_t *reply, char *err, size_t errlen)
{
    *reply = (model_reply_t){0};
    model_rc_t rc = s_check_config(cfg, err, errlen);
    if (rc != MODEL_OK) {
        return rc;
    }
    size_t n = strlen(cfg->url);
    while (n > 0 && cfg->url[n - 1] == '/') {
        n--;
    }
    const model_api_ops_t *ops = model_api_ops(cfg->api);
    char *url = xasprintf("%.*s%s", (int) n, cfg->url, ops->path);
    char *where = model_url_redact(url);
    s_exchange_t ex = {0};
    rc = s_exchange_loop(cfg, req, url, where, reply, &ex, err, errlen);
    if (rc == MODEL_OK) {
        rc = s_parse_reply(ops, &ex, where, reply, err, errlen);
    }
    if (rc == MODEL_OK || rc == MODEL_E_LENGTH) {
        log_debug("model", "'%s': %lld prompt + %lld completion tokens", where,
                  (long long) reply->prompt_tokens,
                  (long long) reply->completion_tokens);
    }
    if (rc != MODEL_OK) {
        s_redact_key(err, cfg->key);
    }
    if (rc != MODEL_OK && rc != MODEL_E_LENGTH) {
        // Keep what the caller may report: how many requests, which status.
        int attempts = reply->attempts, status = reply->http_status;
        model_reply_release(reply);
        reply->attempts = attempts;
        reply->http_status = status;
    }
    s_exchange_release(&ex);
    free(where);
    free(url);
    return rc;
}
