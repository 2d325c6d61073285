// codec: msgpack frames to Waggle messages (proto_decode()), the reference
// decoder of PROTOCOL.md 3.3.  Owns the schema: each message's fields and
// their types, ranges and lengths.  Decoding never trusts its input:
//   1. prewalk_check() (prewalk.c) proves the raw bytes are exactly one map
//      whose every declared count and length fits in the bytes that remain,
//      within the limits, because msgpack-c allocates what a header
//      declares before the elements arrive.
//   2. msgpack_unpack_next() builds the objects of the whole frame at once
//      (never the streaming unpacker).
//   3. One hand-written decoder per message checks the schema through the
//      s_get_* reader and copies the values into a proto_msg_t.
// Every failure is a proto_error_t naming the field, never an assert.
// Never writes a frame (codec_encode.c does).  Pure: no I/O, no clock, no
// logging.
#include "proto/proto.h"

#include "common/xalloc.h"
#include "proto/names.h"
#include "proto/prewalk.h"

#include <assert.h>
#include <inttypes.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

// Schema limits that are part of the protocol, not configuration.
#define S_MAX_SLOTS 1024
#define S_MAX_TAGS PROTO_MAX_TAGS
#define S_MAX_ID 64           // instance, task ids, tags, input ids
#define S_MAX_NAME 255        // host, versions, key and role names, states
#define S_MAX_IDEM 128        // idempotency keys
#define S_MAX_LEASES 4096     // leases in HELLO, tokens in HEARTBEAT
#define S_MAX_SECRET 128      // session secrets (hex)
#define S_MAX_NOTE 4096       // an approver's note
#define S_MAX_EXPLAINED 16    // needs or tags an EXPLAIN_OK names
#define S_ANY SIZE_MAX        // bounded only by the frame limits

#define S_REQ true
#define S_OPT false

// --- the schema reader ---------------------------------------------------

typedef struct {
    const msgpack_object_map *map;  // the record being read
    const char *path;               // prefix of field names in errors
    proto_error_t *err;
} s_rd_t;

static int s_bad(const s_rd_t *rd, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// A MALFORMED naming the field: "field 'leases[2].token': ...".
static int
s_bad(const s_rd_t *rd, const char *name, const char *fmt, ...)
{
    char why[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return proto_error_set(rd->err, PROTO_E_MALFORMED, "field '%s%s': %s", rd->path,
                  name, why);
}

// Copies a wire string for an error message: at most 48 bytes, '?' for
// anything unprintable, so a hostile name cannot mangle a log line.
static const char *
s_quote(char *dst, size_t size, const char *p, size_t n)
{
    size_t i = 0;
    for (; i < n && i < 48 && i + 4 < size; i++) {
        dst[i] = p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '?';
    }
    if (i < n) {
        memcpy(dst + i, "...", 3);
        i += 3;
    }
    dst[i] = '\0';
    return dst;
}

// Finds key: *out is NULL when absent or nil.  Fails when a required key is
// absent or nil, and when the key appears twice (readers could disagree).
static int
s_field(const s_rd_t *rd, const char *key, bool req, const msgpack_object **out)
{
    size_t klen = strlen(key);
    bool seen = false;
    *out = NULL;
    for (uint32_t i = 0; i < rd->map->size; i++) {
        const msgpack_object *k = &rd->map->ptr[i].key;
        if (k->type != MSGPACK_OBJECT_STR || k->via.str.size != klen ||
            memcmp(k->via.str.ptr, key, klen) != 0) {
            continue;
        }
        if (seen) {
            return s_bad(rd, key, "appears more than once");
        }
        seen = true;
        *out = &rd->map->ptr[i].val;
    }
    if (*out && (*out)->type == MSGPACK_OBJECT_NIL) {
        *out = NULL;
    }
    if (!*out && req) {
        return s_bad(rd, key, seen ? "required but nil" : "required but "
                     "missing");
    }
    return 0;
}

static int
s_obj_str(const s_rd_t *rd, const char *name, const msgpack_object *o,
          size_t min, size_t max, char **out)
{
    if (o->type != MSGPACK_OBJECT_STR) {
        return s_bad(rd, name, "expected a string");
    }
    size_t n = o->via.str.size;
    if (n < min || n > max) {
        return s_bad(rd, name, "%zu bytes, expected %zu to %zu", n, min, max);
    }
    if (n > 0 && memchr(o->via.str.ptr, '\0', n)) {
        return s_bad(rd, name, "contains a NUL byte");
    }
    *out = xstrndup(n > 0 ? o->via.str.ptr : "", n);
    return 0;
}

static int
s_get_str(const s_rd_t *rd, const char *key, bool req, size_t min,
          size_t max, char **out)
{
    const msgpack_object *o;
    if (s_field(rd, key, req, &o) < 0) {
        return -1;
    }
    return o ? s_obj_str(rd, key, o, min, max, out) : 0;
}

static int
s_obj_u64(const s_rd_t *rd, const char *name, const msgpack_object *o,
          uint64_t min, uint64_t max, uint64_t *out)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        return s_bad(rd, name, "expected an unsigned integer");
    }
    if (o->via.u64 < min || o->via.u64 > max) {
        return s_bad(rd, name, "%" PRIu64 " is outside %" PRIu64 "..%" PRIu64,
                     o->via.u64, min, max);
    }
    *out = o->via.u64;
    return 0;
}

static int
s_get_u64(const s_rd_t *rd, const char *key, bool req, uint64_t max,
          uint64_t *out)
{
    const msgpack_object *o;
    if (s_field(rd, key, req, &o) < 0) {
        return -1;
    }
    return o ? s_obj_u64(rd, key, o, 0, max, out) : 0;
}

static int
s_get_u32(const s_rd_t *rd, const char *key, bool req, uint32_t min,
          uint32_t max, uint32_t *out)
{
    const msgpack_object *o;
    uint64_t v = 0;
    if (s_field(rd, key, req, &o) < 0) {
        return -1;
    }
    if (o && s_obj_u64(rd, key, o, min, max, &v) < 0) {
        return -1;
    }
    *out = o ? (uint32_t) v : *out;
    return 0;
}

static int
s_get_i64(const s_rd_t *rd, const char *key, bool req, int64_t min,
          int64_t max, int64_t *out)
{
    const msgpack_object *o;
    if (s_field(rd, key, req, &o) < 0) {
        return -1;
    }
    if (!o) {
        return 0;
    }
    if (o->type != MSGPACK_OBJECT_NEGATIVE_INTEGER &&
        o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        return s_bad(rd, key, "expected an integer");
    }
    bool big = o->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
               o->via.u64 > (uint64_t) INT64_MAX;
    if (big || o->via.i64 < min || o->via.i64 > max) {
        return s_bad(rd, key, "out of range %" PRId64 "..%" PRId64, min, max);
    }
    *out = o->via.i64;
    return 0;
}

static int
s_get_i32(const s_rd_t *rd, const char *key, bool req, int32_t *out)
{
    int64_t v = *out;
    if (s_get_i64(rd, key, req, INT32_MIN, INT32_MAX, &v) < 0) {
        return -1;
    }
    *out = (int32_t) v;
    return 0;
}

// Plan ids: 0 and up (0 means "no plan" where a message allows it).
static int
s_get_plan(const s_rd_t *rd, const char *key, bool req, int64_t *out)
{
    return s_get_i64(rd, key, req, 0, INT64_MAX, out);
}

static int
s_get_bool(const s_rd_t *rd, const char *key, bool req, bool *out)
{
    const msgpack_object *o;
    if (s_field(rd, key, req, &o) < 0) {
        return -1;
    }
    if (o && o->type != MSGPACK_OBJECT_BOOLEAN) {
        return s_bad(rd, key, "expected a boolean");
    }
    *out = o ? o->via.boolean : *out;
    return 0;
}

static int
s_get_bin(const s_rd_t *rd, const char *key, bool req, proto_bytes_t *out)
{
    const msgpack_object *o;
    if (s_field(rd, key, req, &o) < 0) {
        return -1;
    }
    if (o && o->type != MSGPACK_OBJECT_BIN) {
        return s_bad(rd, key, "expected binary data (msgpack bin)");
    }
    if (o) {
        proto_bytes_set(out, o->via.bin.ptr, o->via.bin.size);
    }
    return 0;
}

// One of the names_*_find() lookups of names.h.
typedef int (*s_find_fn)(const char *p, size_t len);

// A required string from a fixed set of names, as its index.
static int
s_get_enum(const s_rd_t *rd, const char *key, s_find_fn find, int *out)
{
    const msgpack_object *o;
    char q[64];
    if (s_field(rd, key, S_REQ, &o) < 0) {
        return -1;
    }
    if (o->type != MSGPACK_OBJECT_STR) {
        return s_bad(rd, key, "expected a string");
    }
    *out = find(o->via.str.ptr, o->via.str.size);
    if (*out < 0) {
        return s_bad(rd, key, "unknown value '%s'",
                     s_quote(q, sizeof q, o->via.str.ptr, o->via.str.size));
    }
    return 0;
}

// An optional array (absent: empty), checked against max items.
static int
s_get_array(const s_rd_t *rd, const char *key, size_t max,
            const msgpack_object_array **out)
{
    const msgpack_object *o;
    *out = NULL;
    if (s_field(rd, key, S_OPT, &o) < 0) {
        return -1;
    }
    if (o && o->type != MSGPACK_OBJECT_ARRAY) {
        return s_bad(rd, key, "expected an array");
    }
    if (o && o->via.array.size > max) {
        return s_bad(rd, key, "%" PRIu32 " items, over the limit %zu",
                     o->via.array.size, max);
    }
    *out = o && o->via.array.size > 0 ? &o->via.array : NULL;
    return 0;
}

// An optional array of strings, each min..max bytes.
static int
s_get_strv(const s_rd_t *rd, const char *key, size_t max_items, size_t min,
           size_t max, proto_strv_t *out)
{
    const msgpack_object_array *a;
    char name[96];
    if (s_get_array(rd, key, max_items, &a) < 0) {
        return -1;
    }
    if (!a) {
        return 0;
    }
    out->items = xcalloc(a->size, sizeof *out->items);
    out->count = a->size;
    for (uint32_t i = 0; i < a->size; i++) {
        snprintf(name, sizeof name, "%s[%" PRIu32 "]", key, i);
        if (s_obj_str(rd, name, &a->ptr[i], min, max, &out->items[i]) < 0) {
            return -1;
        }
    }
    return 0;
}

typedef int (*s_rec_fn)(const s_rd_t *rd, void *elem);

// An optional array of records (maps), each decoded by fn into a new
// element of size bytes.  *arr and *n are set even on failure, so the
// message's destroy frees what was decoded.
static int
s_get_records(const s_rd_t *rd, const char *key, size_t max, size_t size,
              void **arr, size_t *n, s_rec_fn fn)
{
    const msgpack_object_array *a;
    char path[128];
    *arr = NULL;
    *n = 0;
    if (s_get_array(rd, key, max, &a) < 0) {
        return -1;
    }
    if (!a) {
        return 0;
    }
    *arr = xcalloc(a->size, size);
    *n = a->size;
    for (uint32_t i = 0; i < a->size; i++) {
        if (a->ptr[i].type != MSGPACK_OBJECT_MAP) {
            snprintf(path, sizeof path, "%s[%" PRIu32 "]", key, i);
            return s_bad(rd, path, "expected a map");
        }
        snprintf(path, sizeof path, "%s%s[%" PRIu32 "].", rd->path, key, i);
        s_rd_t sub = {&a->ptr[i].via.map, path, rd->err};
        if (fn(&sub, (char *) *arr + (size_t) i * size) < 0) {
            return -1;
        }
    }
    return 0;
}

// --- decoders, one per message -------------------------------------------

static int
s_dec_lease(const s_rd_t *rd, void *elem)
{
    proto_lease_t *l = elem;
    return s_get_plan(rd, "plan", S_REQ, &l->plan) ||
           s_get_str(rd, "task", S_REQ, 1, S_MAX_ID, &l->task) ||
           s_get_u64(rd, "token", S_REQ, UINT64_MAX, &l->token) ||
           s_get_bool(rd, "finished", S_OPT, &l->finished) ? -1 : 0;
}

static int
s_dec_hello(const s_rd_t *rd, proto_msg_t *m)
{
    proto_hello_t *h = &m->u.hello;
    void *arr;
    if (s_get_str(rd, "instance", S_REQ, 1, S_MAX_ID, &h->instance) ||
        s_get_str(rd, "host", S_OPT, 0, S_MAX_NAME, &h->host) ||
        s_get_str(rd, "version", S_OPT, 0, S_MAX_NAME, &h->version) ||
        s_get_u32(rd, "slots", S_REQ, 0, S_MAX_SLOTS, &h->slots) ||
        s_get_strv(rd, "tags", S_MAX_TAGS, 1, S_MAX_ID, &h->tags) ||
        s_get_bool(rd, "draining", S_OPT, &h->draining) ||
        s_get_str(rd, "secret", S_OPT, 1, S_MAX_SECRET, &h->secret)) {
        return -1;
    }
    int rc = s_get_records(rd, "leases", S_MAX_LEASES, sizeof *h->leases,
                           &arr, &h->n_leases, s_dec_lease);
    h->leases = arr;
    return rc;
}

static int
s_dec_welcome(const s_rd_t *rd, proto_msg_t *m)
{
    proto_welcome_t *w = &m->u.welcome;
    return s_get_u32(rd, "heartbeat_ms", S_REQ, 1, UINT32_MAX,
                     &w->heartbeat_ms) ||
           s_get_u32(rd, "lease_ms", S_REQ, 1, UINT32_MAX, &w->lease_ms) ||
           s_get_u64(rd, "max_output_bytes", S_REQ, UINT64_MAX,
                     &w->max_output_bytes) ||
           s_get_str(rd, "broker_id", S_REQ, 1, S_MAX_NAME, &w->broker_id) ||
           s_get_str(rd, "secret", S_OPT, 1, S_MAX_SECRET, &w->secret)
               ? -1 : 0;
}

static int
s_dec_heartbeat(const s_rd_t *rd, proto_msg_t *m)
{
    proto_heartbeat_t *h = &m->u.heartbeat;
    const msgpack_object_array *a;
    char name[32];
    if (s_get_array(rd, "tokens", S_MAX_LEASES, &a) < 0) {
        return -1;
    }
    if (!a) {
        return 0;
    }
    h->tokens = xcalloc(a->size, sizeof *h->tokens);
    h->n_tokens = a->size;
    for (uint32_t i = 0; i < a->size; i++) {
        snprintf(name, sizeof name, "tokens[%" PRIu32 "]", i);
        if (s_obj_u64(rd, name, &a->ptr[i], 0, UINT64_MAX, &h->tokens[i])) {
            return -1;
        }
    }
    return 0;
}

static int
s_dec_env(const s_rd_t *rd, proto_task_t *t)
{
    const msgpack_object *o;
    char name[32];
    if (s_field(rd, "env", S_OPT, &o) < 0) {
        return -1;
    }
    if (!o) {
        return 0;
    }
    if (o->type != MSGPACK_OBJECT_MAP) {
        return s_bad(rd, "env", "expected a map of strings");
    }
    t->env = o->via.map.size ? xcalloc(o->via.map.size, sizeof *t->env)
                             : NULL;
    t->n_env = o->via.map.size;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object_kv *kv = &o->via.map.ptr[i];
        snprintf(name, sizeof name, "env[%" PRIu32 "]", i);
        if (s_obj_str(rd, name, &kv->key, 1, S_ANY, &t->env[i].key) ||
            s_obj_str(rd, name, &kv->val, 0, S_ANY, &t->env[i].value)) {
            return -1;
        }
        if (strchr(t->env[i].key, '=')) {
            return s_bad(rd, name, "a variable name holds '='");
        }
    }
    return 0;
}

static int
s_dec_input(const s_rd_t *rd, void *elem)
{
    proto_input_t *in = elem;
    return s_get_str(rd, "id", S_REQ, 1, S_MAX_ID, &in->id) ||
           s_get_bin(rd, "data", S_REQ, &in->data) ||
           s_get_bool(rd, "truncated", S_OPT, &in->truncated) ? -1 : 0;
}

// The optional "limits" record: each field optional, 0 = not given.
static int
s_dec_limits(const s_rd_t *rd, proto_task_limits_t *lim)
{
    const msgpack_object *o;
    if (s_field(rd, "limits", S_OPT, &o) < 0) {
        return -1;
    }
    if (!o) {
        return 0;
    }
    if (o->type != MSGPACK_OBJECT_MAP) {
        return s_bad(rd, "limits", "expected a map");
    }
    char path[128];
    snprintf(path, sizeof path, "%slimits.", rd->path);
    s_rd_t sub = {&o->via.map, path, rd->err};
    return s_get_u32(&sub, "as_mb", S_OPT, 0, UINT32_MAX, &lim->as_mb) ||
           s_get_u32(&sub, "nofile", S_OPT, 0, UINT32_MAX, &lim->nofile) ||
           s_get_u32(&sub, "nproc", S_OPT, 0, UINT32_MAX, &lim->nproc) ||
           s_get_u32(&sub, "cpu_s", S_OPT, 0, UINT32_MAX, &lim->cpu_s)
               ? -1
               : 0;
}

// "kind": absent or "run" (argv required), or "prompt" (prompt required,
// argv must be absent or empty).
static int
s_dec_kind(const s_rd_t *rd, proto_task_t *t)
{
    char *kind = NULL;
    if (s_get_str(rd, "kind", S_OPT, 1, S_MAX_NAME, &kind) < 0) {
        return -1;
    }
    bool prompt = kind && strcmp(kind, "prompt") == 0;
    bool run = !kind || strcmp(kind, "run") == 0;
    free(kind);
    if (!prompt && !run) {
        return s_bad(rd, "kind", "expected \"run\" or \"prompt\"");
    }
    t->kind = prompt ? PROTO_KIND_PROMPT : PROTO_KIND_RUN;
    return 0;
}

// The prompt fields; the temperature comes as thousandths (no floats on
// the wire, section 3.1).
static int
s_dec_prompt(const s_rd_t *rd, proto_task_t *t)
{
    const msgpack_object *o;
    if (s_get_str(rd, "prompt", S_REQ, 1, S_ANY, &t->prompt) ||
        s_get_str(rd, "system", S_OPT, 1, S_ANY, &t->system) ||
        s_get_str(rd, "model", S_OPT, 1, S_MAX_NAME, &t->model) ||
        s_get_u32(rd, "max_tokens", S_OPT, 0, PROTO_MAX_TOKENS,
                  &t->max_tokens) ||
        s_field(rd, "temperature_milli", S_OPT, &o) < 0) {
        return -1;
    }
    t->has_temperature = o != NULL;
    return s_get_u32(rd, "temperature_milli", S_OPT, 0, 2000,
                     &t->temperature_milli);
}

static int
s_dec_task(const s_rd_t *rd, proto_msg_t *m)
{
    proto_task_t *t = &m->u.task;
    void *arr;
    if (s_get_plan(rd, "plan", S_REQ, &t->plan) ||
        s_get_str(rd, "plan_name", S_OPT, 0, S_ANY, &t->plan_name) ||
        s_get_str(rd, "task", S_REQ, 1, S_MAX_ID, &t->task) ||
        s_get_u64(rd, "token", S_REQ, UINT64_MAX, &t->token) ||
        s_get_u32(rd, "attempt", S_REQ, 1, UINT32_MAX, &t->attempt) ||
        s_dec_kind(rd, t) ||
        s_get_strv(rd, "argv", S_ANY, 0, S_ANY, &t->argv) ||
        s_get_str(rd, "cwd", S_OPT, 1, S_ANY, &t->cwd) ||
        s_get_u32(rd, "timeout_s", S_OPT, 0, UINT32_MAX, &t->timeout_s) ||
        s_dec_env(rd, t) || s_dec_limits(rd, &t->limits)) {
        return -1;
    }
    if (t->kind == PROTO_KIND_PROMPT) {
        if (s_dec_prompt(rd, t) < 0) {
            return -1;
        }
        if (t->argv.count != 0) {
            return s_bad(rd, "argv", "a prompt task has no argv");
        }
    } else if (t->argv.count == 0) {
        return s_bad(rd, "argv", "required: at least one item");
    }
    int rc = s_get_records(rd, "inputs", S_ANY, sizeof *t->inputs, &arr,
                           &t->n_inputs, s_dec_input);
    t->inputs = arr;
    return rc;
}

static int
s_dec_stop(const s_rd_t *rd, proto_msg_t *m)
{
    proto_stop_t *s = &m->u.stop;
    return s_get_plan(rd, "plan", S_REQ, &s->plan) ||
           s_get_str(rd, "task", S_REQ, 1, S_MAX_ID, &s->task) ||
           s_get_u64(rd, "token", S_REQ, UINT64_MAX, &s->token) ||
           s_get_str(rd, "reason", S_OPT, 0, S_ANY, &s->reason) ? -1 : 0;
}

static int
s_dec_result(const s_rd_t *rd, proto_msg_t *m)
{
    proto_result_t *r = &m->u.result;
    int outcome;
    r->exit_code = -1;
    r->prompt_tokens = -1;
    r->completion_tokens = -1;
    if (s_get_plan(rd, "plan", S_REQ, &r->plan) ||
        s_get_str(rd, "task", S_REQ, 1, S_MAX_ID, &r->task) ||
        s_get_u64(rd, "token", S_REQ, UINT64_MAX, &r->token) ||
        s_get_enum(rd, "outcome", names_outcome_find, &outcome) ||
        s_get_i32(rd, "exit_code", S_OPT, &r->exit_code) ||
        s_get_i32(rd, "signal", S_OPT, &r->signal) ||
        s_get_bool(rd, "timed_out", S_OPT, &r->timed_out) ||
        s_get_str(rd, "error", S_OPT, 0, S_ANY, &r->error)) {
        return -1;
    }
    r->outcome = (proto_outcome_t) outcome;
    return s_get_bin(rd, "out", S_OPT, &r->out) ||
           s_get_bool(rd, "out_truncated", S_OPT, &r->out_truncated) ||
           s_get_bin(rd, "err", S_OPT, &r->err) ||
           s_get_bool(rd, "err_truncated", S_OPT, &r->err_truncated) ||
           s_get_i64(rd, "started_ms", S_OPT, INT64_MIN, INT64_MAX,
                     &r->started_ms) ||
           s_get_i64(rd, "duration_ms", S_OPT, INT64_MIN, INT64_MAX,
                     &r->duration_ms) ||
           s_get_i64(rd, "prompt_tokens", S_OPT, 0, PROTO_TOKENS_MAX,
                     &r->prompt_tokens) ||
           s_get_i64(rd, "completion_tokens", S_OPT, 0, PROTO_TOKENS_MAX,
                     &r->completion_tokens) ? -1 : 0;
}

static int
s_dec_result_ack(const s_rd_t *rd, proto_msg_t *m)
{
    proto_result_ack_t *a = &m->u.result_ack;
    int status;
    if (s_get_plan(rd, "plan", S_REQ, &a->plan) ||
        s_get_str(rd, "task", S_REQ, 1, S_MAX_ID, &a->task) ||
        s_get_u64(rd, "token", S_REQ, UINT64_MAX, &a->token) ||
        s_get_enum(rd, "status", names_ack_find, &status) ||
        s_get_str(rd, "message", S_OPT, 0, S_ANY, &a->message)) {
        return -1;
    }
    a->status = (proto_ack_t) status;
    return 0;
}

static int
s_dec_update(const s_rd_t *rd, proto_msg_t *m)
{
    proto_update_t *u = &m->u.update;
    return s_get_u32(rd, "slots", S_REQ, 0, S_MAX_SLOTS, &u->slots) ||
           s_get_bool(rd, "draining", S_REQ, &u->draining) ? -1 : 0;
}

static int
s_dec_pong(const s_rd_t *rd, proto_msg_t *m)
{
    proto_pong_t *p = &m->u.pong;
    return s_get_str(rd, "role", S_REQ, 1, S_MAX_NAME, &p->role) ||
           s_get_str(rd, "name", S_REQ, 1, S_MAX_NAME, &p->name) ||
           s_get_str(rd, "version", S_REQ, 0, S_MAX_NAME, &p->version)
               ? -1 : 0;
}

static int
s_dec_submit(const s_rd_t *rd, proto_msg_t *m)
{
    proto_submit_t *s = &m->u.submit;
    return s_get_str(rd, "workplan", S_REQ, 0, S_ANY, &s->workplan) ||
           s_get_str(rd, "idempotency_key", S_OPT, 1, S_MAX_IDEM,
                     &s->idempotency_key) ? -1 : 0;
}

static int
s_dec_submit_ok(const s_rd_t *rd, proto_msg_t *m)
{
    proto_submit_ok_t *s = &m->u.submit_ok;
    return s_get_plan(rd, "plan", S_REQ, &s->plan) ||
           s_get_bool(rd, "created", S_REQ, &s->created) ||
           s_get_strv(rd, "warnings", S_ANY, 0, S_ANY, &s->warnings) ? -1 : 0;
}

static int
s_dec_status(const s_rd_t *rd, proto_msg_t *m)
{
    proto_status_t_req *s = &m->u.status;
    return s_get_plan(rd, "plan", S_OPT, &s->plan) ||
           s_get_u32(rd, "offset", S_OPT, 0, UINT32_MAX, &s->offset) ||
           s_get_bool(rd, "summary", S_OPT, &s->summary) ||
           s_get_bool(rd, "workplan", S_OPT, &s->workplan) ? -1 : 0;
}

// "counts": {state name: uint32}; names this side does not know are skipped.
static int
s_dec_counts(const s_rd_t *rd, proto_plan_info_t *p)
{
    const msgpack_object *o;
    char name[48];
    uint64_t v = 0;
    if (s_field(rd, "counts", S_OPT, &o) < 0) {
        return -1;
    }
    if (!o) {
        return 0;
    }
    if (o->type != MSGPACK_OBJECT_MAP) {
        return s_bad(rd, "counts", "expected a map");
    }
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object_kv *kv = &o->via.map.ptr[i];
        if (kv->key.type != MSGPACK_OBJECT_STR) {
            return s_bad(rd, "counts", "expected state names as keys");
        }
        int s = names_task_state_find(kv->key.via.str.ptr,
                                      kv->key.via.str.size);
        if (s < 0) {
            continue;
        }
        snprintf(name, sizeof name, "counts.%s",
                 proto_task_state_name((proto_task_state_t) s));
        if (s_obj_u64(rd, name, &kv->val, 0, UINT32_MAX, &v) < 0) {
            return -1;
        }
        p->counts[s] = (uint32_t) v;
    }
    return 0;
}

static int
s_dec_plan_info(const s_rd_t *rd, void *elem)
{
    proto_plan_info_t *p = elem;
    return s_get_plan(rd, "id", S_REQ, &p->id) ||
           s_get_str(rd, "name", S_OPT, 0, S_ANY, &p->name) ||
           s_get_str(rd, "state", S_REQ, 1, S_MAX_NAME, &p->state) ||
           s_get_str(rd, "submitted_by", S_OPT, 0, S_MAX_NAME,
                     &p->submitted_by) ||
           s_get_i64(rd, "created_ms", S_OPT, INT64_MIN, INT64_MAX,
                     &p->created_ms) ||
           s_get_i64(rd, "finished_ms", S_OPT, INT64_MIN, INT64_MAX,
                     &p->finished_ms) ||
           s_get_i64(rd, "prompt_tokens", S_OPT, 0, INT64_MAX,
                     &p->prompt_tokens) ||
           s_get_i64(rd, "completion_tokens", S_OPT, 0, INT64_MAX,
                     &p->completion_tokens) ||
           s_dec_counts(rd, p) ? -1 : 0;
}

static int
s_dec_task_info(const s_rd_t *rd, void *elem)
{
    proto_task_info_t *t = elem;
    const msgpack_object *o;
    int state;
    if (s_get_str(rd, "id", S_REQ, 1, S_MAX_ID, &t->id) ||
        s_get_enum(rd, "state", names_task_state_find, &state) ||
        s_get_str(rd, "kind", S_REQ, 1, S_MAX_NAME, &t->kind) ||
        s_get_u32(rd, "attempts", S_OPT, 0, UINT32_MAX, &t->attempts) ||
        s_get_str(rd, "drone", S_OPT, 0, S_MAX_NAME, &t->drone) ||
        s_get_str(rd, "last_error", S_OPT, 0, S_ANY, &t->last_error) ||
        s_get_str(rd, "waiting_reason", S_OPT, 0, S_ANY,
                  &t->waiting_reason) ||
        s_get_strv(rd, "needs", S_ANY, 1, S_MAX_ID, &t->needs) ||
        s_get_i32(rd, "exit_code", S_OPT, &t->exit_code) ||
        s_get_i64(rd, "prompt_tokens", S_OPT, 0, INT64_MAX,
                  &t->prompt_tokens) ||
        s_get_i64(rd, "completion_tokens", S_OPT, 0, INT64_MAX,
                  &t->completion_tokens) ||
        s_get_i64(rd, "ready_ms", S_OPT, 0, INT64_MAX, &t->ready_ms) ||
        s_get_u32(rd, "attempt", S_OPT, 0, UINT32_MAX, &t->attempt) ||
        s_get_u32(rd, "attempt_budget", S_OPT, 0, UINT32_MAX,
                  &t->attempt_budget) ||
        s_get_i64(rd, "started_ms", S_OPT, 0, INT64_MAX, &t->started_ms) ||
        s_get_i64(rd, "ended_ms", S_OPT, 0, INT64_MAX, &t->ended_ms) ||
        s_get_i64(rd, "duration_ms", S_OPT, 0, INT64_MAX,
                  &t->duration_ms)) {
        return -1;
    }
    t->state = (proto_task_state_t) state;
    // Absent or nil means no attempt has finished yet.
    t->has_exit_code = s_field(rd, "exit_code", S_OPT, &o) == 0 && o;
    return 0;
}

static int
s_dec_drone_task(const s_rd_t *rd, void *elem)
{
    proto_drone_task_t *t = elem;
    t->lease_left_ms = -1;
    return s_get_plan(rd, "plan", S_REQ, &t->plan) ||
           s_get_str(rd, "task", S_REQ, 1, S_MAX_ID, &t->task) ||
           s_get_i64(rd, "lease_left_ms", S_OPT, 0, INT64_MAX,
                     &t->lease_left_ms) ? -1 : 0;
}

static int
s_dec_drone_info(const s_rd_t *rd, void *elem)
{
    proto_drone_info_t *d = elem;
    void *tasks;
    int rc = s_get_records(rd, "tasks", S_MAX_LEASES, sizeof *d->tasks,
                           &tasks, &d->n_tasks, s_dec_drone_task);
    d->tasks = tasks;
    return rc ||
           s_get_str(rd, "instance", S_REQ, 1, S_MAX_ID, &d->instance) ||
           s_get_str(rd, "name", S_REQ, 1, S_MAX_NAME, &d->name) ||
           s_get_str(rd, "host", S_OPT, 0, S_MAX_NAME, &d->host) ||
           s_get_u32(rd, "slots", S_REQ, 0, S_MAX_SLOTS, &d->slots) ||
           s_get_u32(rd, "leases", S_OPT, 0, UINT32_MAX, &d->leases) ||
           s_get_bool(rd, "draining", S_OPT, &d->draining) ||
           s_get_strv(rd, "tags", S_MAX_TAGS, 1, S_MAX_ID, &d->tags) ||
           s_get_i64(rd, "last_seen_ms", S_OPT, INT64_MIN, INT64_MAX,
                     &d->last_seen_ms) ||
           s_get_bool(rd, "quarantined", S_OPT, &d->quarantined) ? -1 : 0;
}

static int
s_dec_status_ok(const s_rd_t *rd, proto_msg_t *m)
{
    proto_status_ok_t *s = &m->u.status_ok;
    void *plans, *tasks, *drones;
    int rc = s_get_records(rd, "plans", S_ANY, sizeof *s->plans, &plans,
                           &s->n_plans, s_dec_plan_info);
    s->plans = plans;
    if (rc == 0) {
        rc = s_get_records(rd, "tasks", S_ANY, sizeof *s->tasks, &tasks,
                           &s->n_tasks, s_dec_task_info);
        s->tasks = tasks;
    }
    if (rc == 0) {
        rc = s_get_records(rd, "drones", S_ANY, sizeof *s->drones, &drones,
                           &s->n_drones, s_dec_drone_info);
        s->drones = drones;
    }
    return rc ? rc
              : s_get_bool(rd, "more", S_OPT, &s->more) ||
                        s_get_str(rd, "workplan", S_OPT, 0, S_ANY,
                                  &s->workplan)
                    ? -1 : 0;
}

static int
s_dec_cancel(const s_rd_t *rd, proto_msg_t *m)
{
    proto_cancel_t *c = &m->u.cancel;
    return s_get_plan(rd, "plan", S_REQ, &c->plan) ||
           s_get_str(rd, "task", S_OPT, 1, S_MAX_ID, &c->task) ? -1 : 0;
}

static int
s_dec_retry(const s_rd_t *rd, proto_msg_t *m)
{
    proto_retry_t *r = &m->u.retry;
    return s_get_plan(rd, "plan", S_REQ, &r->plan) ||
           s_get_str(rd, "task", S_REQ, 1, S_MAX_ID, &r->task) ? -1 : 0;
}

static int
s_dec_amend(const s_rd_t *rd, proto_msg_t *m)
{
    proto_amend_t *a = &m->u.amend;
    return s_get_plan(rd, "plan", S_REQ, &a->plan) ||
           s_get_str(rd, "amendment", S_REQ, 0, S_ANY, &a->amendment)
               ? -1 : 0;
}

static int
s_dec_amend_ok(const s_rd_t *rd, proto_msg_t *m)
{
    proto_amend_ok_t *a = &m->u.amend_ok;
    return s_get_plan(rd, "plan", S_REQ, &a->plan) ||
           s_get_strv(rd, "added", S_ANY, 1, S_MAX_ID, &a->added) ||
           s_get_strv(rd, "cancelled", S_ANY, 1, S_MAX_ID, &a->cancelled) ||
           s_get_strv(rd, "replaced", S_ANY, 1, S_MAX_ID, &a->replaced) ||
           s_get_strv(rd, "warnings", S_ANY, 0, S_ANY, &a->warnings)
               ? -1 : 0;
}

static int
s_dec_verdict(const s_rd_t *rd, proto_msg_t *m)
{
    proto_verdict_t *v = &m->u.verdict;
    return s_get_plan(rd, "plan", S_REQ, &v->plan) ||
           s_get_str(rd, "task", S_REQ, 1, S_MAX_ID, &v->task) ||
           s_get_str(rd, "note", S_OPT, 0, S_MAX_NOTE, &v->note) ||
           s_get_str(rd, "hash", S_REQ, 64, 64, &v->hash) ? -1 : 0;
}

static int
s_dec_budget(const s_rd_t *rd, proto_msg_t *m)
{
    proto_budget_t *b = &m->u.budget;
    return s_get_plan(rd, "plan", S_REQ, &b->plan) ||
           s_get_i64(rd, "tokens", S_REQ, -1, PROTO_BUDGET_MAX, &b->tokens)
               ? -1 : 0;
}

static int
s_dec_budget_ok(const s_rd_t *rd, proto_msg_t *m)
{
    proto_budget_ok_t *b = &m->u.budget_ok;
    return s_get_plan(rd, "plan", S_REQ, &b->plan) ||
           s_get_i64(rd, "old_tokens", S_REQ, -1, PROTO_BUDGET_MAX,
                     &b->old_tokens) ||
           s_get_i64(rd, "new_tokens", S_REQ, -1, PROTO_BUDGET_MAX,
                     &b->new_tokens) ||
           s_get_i64(rd, "used", S_REQ, 0, INT64_MAX, &b->used) ||
           s_get_i64(rd, "reserved", S_REQ, 0, INT64_MAX, &b->reserved)
               ? -1 : 0;
}

static int
s_dec_output(const s_rd_t *rd, proto_msg_t *m)
{
    proto_output_t *o = &m->u.output;
    return s_get_plan(rd, "plan", S_REQ, &o->plan) ||
           s_get_str(rd, "task", S_REQ, 1, S_MAX_ID, &o->task) ||
           s_get_u32(rd, "attempt", S_OPT, 0, UINT32_MAX, &o->attempt) ||
           s_get_bool(rd, "want_stderr", S_OPT, &o->want_stderr) ||
           s_get_bool(rd, "live", S_OPT, &o->live) ? -1 : 0;
}

static int
s_dec_output_ok(const s_rd_t *rd, proto_msg_t *m)
{
    proto_output_ok_t *o = &m->u.output_ok;
    return s_get_plan(rd, "plan", S_REQ, &o->plan) ||
           s_get_str(rd, "task", S_REQ, 1, S_MAX_ID, &o->task) ||
           s_get_u32(rd, "attempt", S_REQ, 0, UINT32_MAX, &o->attempt) ||
           s_get_bin(rd, "data", S_REQ, &o->data) ||
           s_get_bool(rd, "truncated", S_OPT, &o->truncated) ||
           s_get_str(rd, "state", S_OPT, 1, S_MAX_NAME, &o->state) ||
           s_get_bool(rd, "running", S_OPT, &o->running) ||
           s_get_u64(rd, "token", S_OPT, UINT64_MAX, &o->token) ||
           s_get_u64(rd, "total", S_OPT, UINT64_MAX, &o->total) ? -1 : 0;
}

static int
s_dec_tail(const s_rd_t *rd, proto_msg_t *m)
{
    proto_tail_t *t = &m->u.tail;
    if (s_get_u64(rd, "token", S_REQ, UINT64_MAX, &t->token) ||
        s_get_u64(rd, "total", S_REQ, UINT64_MAX, &t->total) ||
        s_get_bin(rd, "data", S_REQ, &t->data)) {
        return -1;
    }
    if (t->data.len > PROTO_TAIL_MAX || t->data.len > t->total) {
        return s_bad(rd, "data", "longer than 4096 bytes or than total");
    }
    return 0;
}

static int
s_dec_explain(const s_rd_t *rd, proto_msg_t *m)
{
    proto_explain_t *x = &m->u.explain;
    return s_get_plan(rd, "plan", S_REQ, &x->plan) ||
           s_get_str(rd, "task", S_REQ, 1, S_MAX_ID, &x->task) ? -1 : 0;
}

static int
s_dec_explain_ok(const s_rd_t *rd, proto_msg_t *m)
{
    proto_explain_ok_t *x = &m->u.explain_ok;
    return s_get_plan(rd, "plan", S_REQ, &x->plan) ||
           s_get_str(rd, "task", S_REQ, 1, S_MAX_ID, &x->task) ||
           s_get_str(rd, "state", S_REQ, 1, S_MAX_NAME, &x->state) ||
           s_get_str(rd, "code", S_REQ, 1, S_MAX_NAME, &x->code) ||
           s_get_str(rd, "reason", S_REQ, 1, S_ANY, &x->reason) ||
           s_get_strv(rd, "needs", S_MAX_EXPLAINED, 1, S_MAX_ID,
                      &x->needs) ||
           s_get_strv(rd, "need_states", S_MAX_EXPLAINED, 1, S_MAX_NAME,
                      &x->need_states) ||
           s_get_u32(rd, "more_needs", S_OPT, 0, UINT32_MAX,
                     &x->more_needs) ||
           s_get_strv(rd, "tags", S_MAX_EXPLAINED, 1, S_MAX_ID, &x->tags) ||
           s_get_str(rd, "drone", S_OPT, 0, S_MAX_NAME, &x->drone) ||
           s_get_str(rd, "model", S_OPT, 0, S_MAX_NAME, &x->model) ||
           s_get_str(rd, "blocked_by", S_OPT, 0, S_MAX_ID, &x->blocked_by) ||
           s_get_str(rd, "blocked_state", S_OPT, 0, S_MAX_NAME,
                     &x->blocked_state) ||
           s_get_i64(rd, "since_ms", S_OPT, 0, INT64_MAX, &x->since_ms) ||
           s_get_i64(rd, "until_ms", S_OPT, 0, INT64_MAX, &x->until_ms) ||
           s_get_i64(rd, "last_seen_ms", S_OPT, 0, INT64_MAX,
                     &x->last_seen_ms) ||
           s_get_i64(rd, "used", S_OPT, 0, INT64_MAX, &x->used) ||
           s_get_i64(rd, "budget", S_OPT, 0, INT64_MAX, &x->budget) ||
           s_get_u32(rd, "limit", S_OPT, 0, UINT32_MAX, &x->limit) ||
           s_get_u32(rd, "in_flight", S_OPT, 0, UINT32_MAX,
                     &x->in_flight) ||
           s_get_u32(rd, "attempt", S_OPT, 0, UINT32_MAX, &x->attempt)
               ? -1 : 0;
}

static int
s_dec_subscribe(const s_rd_t *rd, proto_msg_t *m)
{
    proto_subscribe_t *s = &m->u.subscribe;
    return s_get_i64(rd, "since", S_REQ, -1, INT64_MAX, &s->since) ||
           s_get_i64(rd, "plan", S_OPT, 0, INT64_MAX, &s->plan) ||
           s_get_u32(rd, "wait_ms", S_OPT, 0, PROTO_EVENTS_MAX_WAIT_MS,
                     &s->wait_ms) ? -1 : 0;
}

static int
s_dec_event(const s_rd_t *rd, void *elem)
{
    proto_event_t *e = elem;
    return s_get_i64(rd, "seq", S_REQ, 1, INT64_MAX, &e->seq) ||
           s_get_i64(rd, "at_ms", S_REQ, INT64_MIN, INT64_MAX, &e->at_ms) ||
           s_get_i64(rd, "plan", S_OPT, 0, INT64_MAX, &e->plan) ||
           s_get_str(rd, "task", S_OPT, 1, S_MAX_ID, &e->task) ||
           s_get_str(rd, "actor", S_REQ, 0, S_ANY, &e->actor) ||
           s_get_str(rd, "kind", S_REQ, 1, S_MAX_NAME, &e->kind) ||
           s_get_str(rd, "from", S_OPT, 0, S_MAX_NAME, &e->from) ||
           s_get_str(rd, "to", S_OPT, 0, S_MAX_NAME, &e->to) ||
           s_get_str(rd, "detail", S_OPT, 0, S_ANY, &e->detail) ? -1 : 0;
}

static int
s_dec_events(const s_rd_t *rd, proto_msg_t *m)
{
    proto_events_t *e = &m->u.events;
    void *events;
    int rc = s_get_records(rd, "events", PROTO_EVENTS_PAGE, sizeof *e->events,
                           &events, &e->n_events, s_dec_event);
    e->events = events;
    return rc ||
           s_get_i64(rd, "next", S_REQ, 0, INT64_MAX, &e->next) ||
           s_get_bool(rd, "more", S_OPT, &e->more) ||
           s_get_bool(rd, "gap", S_OPT, &e->gap) ? -1 : 0;
}

static int
s_dec_ok(const s_rd_t *rd, proto_msg_t *m)
{
    return s_get_str(rd, "message", S_OPT, 0, S_ANY, &m->u.ok.message);
}

static int
s_dec_error(const s_rd_t *rd, proto_msg_t *m)
{
    proto_error_body_t *e = &m->u.error;
    int code;
    if (s_get_enum(rd, "code", names_status_find, &code) ||
        s_get_str(rd, "message", S_REQ, 0, S_ANY, &e->message) ||
        s_get_strv(rd, "details", S_ANY, 0, S_ANY, &e->details)) {
        return -1;
    }
    if (code == PROTO_E_NONE) {
        return s_bad(rd, "code", "NONE is not an error");
    }
    e->code = (proto_status_t) code;
    return 0;
}

// A table entry for messages without a body; the signature is the table's.
static int
s_dec_empty(const s_rd_t *rd, proto_msg_t *m)
{
    (void) rd;
    (void) m;
    return 0;
}

// --- the message table -------------------------------------------------

static int (*const s_dec[PROTO_MSG__COUNT])(const s_rd_t *rd,
                                            proto_msg_t *m) = {
    [PROTO_MSG_HELLO] = s_dec_hello,
    [PROTO_MSG_WELCOME] = s_dec_welcome,
    [PROTO_MSG_HEARTBEAT] = s_dec_heartbeat,
    [PROTO_MSG_TASK] = s_dec_task,
    [PROTO_MSG_STOP] = s_dec_stop,
    [PROTO_MSG_RESULT] = s_dec_result,
    [PROTO_MSG_RESULT_ACK] = s_dec_result_ack,
    [PROTO_MSG_UPDATE] = s_dec_update,
    [PROTO_MSG_BYE] = s_dec_empty,
    [PROTO_MSG_PING] = s_dec_empty,
    [PROTO_MSG_PONG] = s_dec_pong,
    [PROTO_MSG_SUBMIT] = s_dec_submit,
    [PROTO_MSG_SUBMIT_OK] = s_dec_submit_ok,
    [PROTO_MSG_STATUS] = s_dec_status,
    [PROTO_MSG_STATUS_OK] = s_dec_status_ok,
    [PROTO_MSG_CANCEL] = s_dec_cancel,
    [PROTO_MSG_RETRY] = s_dec_retry,
    [PROTO_MSG_AMEND] = s_dec_amend,
    [PROTO_MSG_AMEND_OK] = s_dec_amend_ok,
    [PROTO_MSG_OUTPUT] = s_dec_output,
    [PROTO_MSG_APPROVE] = s_dec_verdict,
    [PROTO_MSG_REJECT] = s_dec_verdict,
    [PROTO_MSG_OUTPUT_OK] = s_dec_output_ok,
    [PROTO_MSG_TAIL] = s_dec_tail,
    [PROTO_MSG_EXPLAIN] = s_dec_explain,
    [PROTO_MSG_EXPLAIN_OK] = s_dec_explain_ok,
    [PROTO_MSG_SUBSCRIBE] = s_dec_subscribe,
    [PROTO_MSG_EVENTS] = s_dec_events,
    [PROTO_MSG_BUDGET] = s_dec_budget,
    [PROTO_MSG_BUDGET_OK] = s_dec_budget_ok,
    [PROTO_MSG_OK] = s_dec_ok,
    [PROTO_MSG_ERROR] = s_dec_error,
};

// Sets err->req from the first usable "req", failing silently: it only
// lets an ERROR reply echo the request.
static void
s_peek_req(const s_rd_t *rd)
{
    for (uint32_t i = 0; i < rd->map->size; i++) {
        const msgpack_object_kv *kv = &rd->map->ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 3 &&
            memcmp(kv->key.via.str.ptr, "req", 3) == 0 &&
            kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            rd->err->req = kv->val.via.u64;
            return;
        }
    }
}

// Reads "v" and "cmd"; err->req is set first so every later failure can
// be echoed to the sender.
static int
s_dec_envelope(const s_rd_t *rd, proto_cmd_t *cmd, uint64_t *req)
{
    const msgpack_object *o;
    uint64_t v = 0;
    char q[64];
    s_peek_req(rd);
    if (s_get_u64(rd, "v", S_REQ, UINT64_MAX, &v) < 0) {
        return -1;
    }
    if (v != PROTO_VERSION) {
        return proto_error_set(rd->err, PROTO_E_BAD_VERSION, "protocol version %" PRIu64
                      " is not supported (this side speaks %d)", v,
                      PROTO_VERSION);
    }
    if (s_field(rd, "cmd", S_REQ, &o) < 0) {
        return -1;
    }
    if (o->type != MSGPACK_OBJECT_STR) {
        return s_bad(rd, "cmd", "expected a string");
    }
    int i = names_cmd_find(o->via.str.ptr, o->via.str.size);
    if (i >= 0) {
        *cmd = (proto_cmd_t) i;
        // A HEARTBEAT is never answered (PROTOCOL.md 6), malformed or not.
        rd->err->unanswered = *cmd == PROTO_MSG_HEARTBEAT ||
                              *cmd == PROTO_MSG_TAIL;
        return s_get_u64(rd, "req", S_REQ, UINT64_MAX, req);
    }
    return proto_error_set(rd->err, PROTO_E_UNKNOWN_COMMAND, "unknown command '%s'",
                  s_quote(q, sizeof q, o->via.str.ptr, o->via.str.size));
}

static int
s_dec_frame(const msgpack_object *top, proto_msg_t **out, proto_error_t *err)
{
    s_rd_t rd = {&top->via.map, "", err};
    proto_cmd_t cmd = PROTO_MSG_PING;
    uint64_t req = 0;
    if (s_dec_envelope(&rd, &cmd, &req) < 0) {
        return -1;
    }
    proto_msg_t *msg = proto_msg_new(cmd);
    msg->req = req;
    if (s_dec[cmd](&rd, msg) < 0) {
        proto_msg_destroy(&msg);
        return -1;
    }
    *out = msg;
    return 0;
}

int
proto_decode(const uint8_t *buf, size_t len, const proto_limits_t *lim,
             proto_msg_t **out, proto_error_t *err)
{
    proto_limits_t def;
    assert(out && err && (buf || len == 0));
    *out = NULL;
    memset(err, 0, sizeof *err);
    if (!lim) {
        proto_limits_default(&def);
        lim = &def;
    }
    if (prewalk_check(buf, len, lim, err) < 0) {
        return -1;
    }
    msgpack_unpacked up;
    size_t off = 0;
    int rc = -1;
    msgpack_unpacked_init(&up);
    if (msgpack_unpack_next(&up, (const char *) buf, len, &off) !=
            MSGPACK_UNPACK_SUCCESS || off != len ||
        up.data.type != MSGPACK_OBJECT_MAP) {
        // The pre-walk accepts only what msgpack-c parses; this is a guard.
        proto_error_set(err, PROTO_E_MALFORMED, "not a valid msgpack frame");
    } else {
        rc = s_dec_frame(&up.data, out, err);
    }
    msgpack_unpacked_destroy(&up);
    return rc;
}
