// json: wraps jansson for parsing and emitting JSON.
//
// A jnode_t is a json_t in disguise, so views cost nothing.  jansson keeps
// object keys in insertion order (since 2.8), which gives stable iteration
// and stable output.  jansson reports out-of-memory as NULL; like xalloc,
// this module aborts on it instead of passing it on.
#include "common/json.h"

#include "common/json_int.h"
#include "common/xalloc.h"

#include <assert.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *
s_j(const jnode_t *node)
{
    // The views are read-only by contract; jansson's API is not const-aware.
    return (json_t *) (uintptr_t) node;
}

static json_t *
s_must(json_t *j)
{
    if (!j) {
        fprintf(stderr, "waggle: out of memory in json\n");
        abort();
    }
    return j;
}

jnode_t *
json_parse(const char *text, size_t len, char *err, size_t errlen)
{
    assert(text || len == 0);
    json_error_t e;
    json_t *root = json_loadb(text ? text : "", len,
                              JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &e);
    if (root) {
        return (jnode_t *) root;
    }
    // jansson's own wording here names a flag of its API.
    const char *msg = json_error_code(&e) == json_error_null_character
                          ? "\\u0000 is not allowed in a string"
                          : e.text;
    if (err && errlen > 0) {
        snprintf(err, errlen, "line %d, column %d: %s", e.line, e.column, msg);
    }
    return NULL;
}

void
json_destroy(jnode_t **root_p)
{
    if (root_p && *root_p) {
        json_decref(s_j(*root_p));
        *root_p = NULL;
    }
}

json_type_t
json_type_of(const jnode_t *node)
{
    assert(node);
    switch (json_typeof(s_j(node))) {
    case JSON_OBJECT:
        return JSON_T_OBJECT;
    case JSON_ARRAY:
        return JSON_T_ARRAY;
    case JSON_STRING:
        return JSON_T_STRING;
    case JSON_INTEGER:
        return JSON_T_INTEGER;
    case JSON_REAL:
        return JSON_T_REAL;
    case JSON_TRUE:
    case JSON_FALSE:
        return JSON_T_BOOL;
    case JSON_NULL:
        break;
    }
    return JSON_T_NULL;
}

const jnode_t *
json_obj_get(const jnode_t *node, const char *key)
{
    if (!node || !json_is_object(s_j(node))) {
        return NULL;
    }
    return (const jnode_t *) json_object_get(s_j(node), key);
}

size_t
json_obj_size(const jnode_t *node)
{
    return node ? json_object_size(s_j(node)) : 0;
}

json_iter_t
json_obj_iter(const jnode_t *node)
{
    json_iter_t it = {0};
    if (node && json_is_object(s_j(node))) {
        it.obj = (jnode_t *) s_j(node);
        it.pos = json_object_iter(s_j(node));
    }
    return it;
}

bool
json_obj_next(json_iter_t *it, const char **key, const jnode_t **value)
{
    assert(it && key && value);
    if (!it->pos) {
        return false;
    }
    *key = json_object_iter_key(it->pos);
    *value = (const jnode_t *) json_object_iter_value(it->pos);
    it->pos = json_object_iter_next(s_j(it->obj), it->pos);
    return true;
}

size_t
json_arr_size(const jnode_t *node)
{
    return node ? json_array_size(s_j(node)) : 0;
}

const jnode_t *
json_arr_get(const jnode_t *node, size_t i)
{
    return node ? (const jnode_t *) json_array_get(s_j(node), i) : NULL;
}

const char *
json_str(const jnode_t *node)
{
    return node ? json_string_value(s_j(node)) : NULL;
}

size_t
json_str_len(const jnode_t *node)
{
    return node ? json_string_length(s_j(node)) : 0;
}

int64_t
json_int(const jnode_t *node)
{
    return node ? (int64_t) json_integer_value(s_j(node)) : 0;
}

double
json_num(const jnode_t *node)
{
    return node ? json_number_value(s_j(node)) : 0.0;
}

bool
json_bool(const jnode_t *node)
{
    return node && json_is_true(s_j(node));
}

jnode_t *
json_obj_new(void)
{
    return (jnode_t *) s_must(json_object());
}

jnode_t *
json_arr_new(void)
{
    return (jnode_t *) s_must(json_array());
}

jnode_t *
json_clone(const jnode_t *node)
{
    assert(node);
    return (jnode_t *) s_must(json_deep_copy(s_j(node)));
}

size_t
json__utf8_seq(const unsigned char *p, size_t n)
{
    if (p[0] < 0x80) {
        return 1;
    }
    size_t len = p[0] >= 0xF0 ? 4 : p[0] >= 0xE0 ? 3 : p[0] >= 0xC2 ? 2 : 0;
    if (len == 0 || p[0] > 0xF4 || len > n) {
        return 0;
    }
    uint32_t cp = p[0] & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    static const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
    bool bad = cp < min_cp[len] || cp > 0x10FFFF
               || (cp >= 0xD800 && cp <= 0xDFFF);
    return bad ? 0 : len;
}

// A string node holding s, with invalid UTF-8 replaced by U+FFFD.
static json_t *
s_string(const char *s, size_t len)
{
    assert(s || len == 0);
    json_t *j = json_stringn(s ? s : "", len);
    if (j) {
        return j;
    }
    // Rare path (invalid input, or OOM): repair a copy, then retry.
    const unsigned char *p = (const unsigned char *) s;
    char *fixed = xmalloc(len * 3 + 1);
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        size_t k = json__utf8_seq(p + i, len - i);
        if (k == 0) {
            memcpy(fixed + n, "\xEF\xBF\xBD", 3);
            n += 3;
            i++;
        } else {
            memcpy(fixed + n, p + i, k);
            n += k;
            i += k;
        }
    }
    j = s_must(json_stringn(fixed, n));
    free(fixed);
    return j;
}

static void
s_set(jnode_t *obj, const char *key, json_t *value)
{
    assert(obj && json_is_object(s_j(obj)) && key);
    int rc = json_object_set_new(s_j(obj), key, value);
    // Fails only on a key that is not UTF-8 (a caller bug) or OOM.
    assert(rc == 0);
    (void) rc;
}

void
json_obj_set_str(jnode_t *obj, const char *key, const char *value)
{
    assert(value);
    s_set(obj, key, s_string(value, strlen(value)));
}

void
json_obj_set_strn(jnode_t *obj, const char *key, const char *value,
                  size_t len)
{
    s_set(obj, key, s_string(value, len));
}

void
json_obj_set_int(jnode_t *obj, const char *key, int64_t value)
{
    s_set(obj, key, s_must(json_integer((json_int_t) value)));
}

void
json_obj_set_num(jnode_t *obj, const char *key, double value)
{
    // jansson has no NaN or infinity (nor has JSON): those become null.
    json_t *j = json_real(value);
    s_set(obj, key, j ? j : json_null());
}

void
json_obj_set_bool(jnode_t *obj, const char *key, bool value)
{
    s_set(obj, key, json_boolean(value));
}

void
json_obj_set_null(jnode_t *obj, const char *key)
{
    s_set(obj, key, json_null());
}

void
json_obj_set_node(jnode_t *obj, const char *key, jnode_t **child_p)
{
    assert(child_p && *child_p);
    s_set(obj, key, s_j(*child_p));
    *child_p = NULL;
}

static void
s_push(jnode_t *arr, json_t *value)
{
    assert(arr && json_is_array(s_j(arr)));
    int rc = json_array_append_new(s_j(arr), value);
    assert(rc == 0);
    (void) rc;
}

void
json_arr_push_str(jnode_t *arr, const char *value)
{
    assert(value);
    s_push(arr, s_string(value, strlen(value)));
}

void
json_arr_push_int(jnode_t *arr, int64_t value)
{
    s_push(arr, s_must(json_integer((json_int_t) value)));
}

void
json_arr_push_node(jnode_t *arr, jnode_t **child_p)
{
    assert(child_p && *child_p);
    s_push(arr, s_j(*child_p));
    *child_p = NULL;
}

char *
json_dump(const jnode_t *node, bool pretty)
{
    assert(node);
    size_t flags = JSON_ENCODE_ANY | JSON_PRESERVE_ORDER
                   | (pretty ? JSON_INDENT(2) : JSON_COMPACT);
    char *text = json_dumps(s_j(node), flags);
    if (!text) {
        fprintf(stderr, "waggle: out of memory in json_dump\n");
        abort();
    }
    // Hand back memory from our allocator so callers free() it like any
    // other string, whatever allocator jansson was built with.
    char *out = xstrdup(text);
    free(text);
    return out;
}

char *
json_quote(const char *s)
{
    assert(s);
    jnode_t *str = (jnode_t *) s_string(s, strlen(s));
    char *out = json_dump(str, false);
    json_destroy(&str);
    return out;
}
