// json_doc: a read-only JSON document parsed into one arena.
//
// Why: a 100k-task workplan parsed by jansson cost ~0.3 s and ~1 KB of
// heap per task (an allocation per node, a hash table per object), on the
// architect and again on the broker.  Here a node is 16 bytes, an object
// member 24, strings are unescaped into the same arena, and the whole
// document is freed at once.
//
// How: recursive descent (depth capped as jansson caps it).  The children of
// an open array or object collect on a scratch stack and are copied into the
// arena, contiguous, when it closes, so a node never moves once made.  A
// string is scanned once for its end (to size it) and once to copy it.
//
// Acceptance is jansson's with the flags json_parse() uses; on any error the
// text is handed to json_parse() for the error message, so the words (and
// the line and column) are the ones users already see.  Pure: no I/O.
#include "common/json.h"

#include "common/arena.h"
#include "common/json_int.h"
#include "common/xalloc.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MAX_DEPTH 2048            // jansson's JSON_PARSER_MAX_DEPTH
#define S_KEYS 256                  // slots of the key cache (power of 2)
#define S_KEY_MAX 32                // longer keys are not cached

typedef struct s_mem s_mem_t;

struct jval {
    uint8_t type;                   // json_type_t
    bool b;
    uint32_t n;                     // string bytes, elements or members
    union {
        const char *s;              // NUL-terminated
        const jval_t *kids;
        const s_mem_t *mem;
        int64_t i;
        double d;
    } u;
};

struct s_mem {
    const char *key;                // NUL-terminated
    jval_t val;
};

struct jdoc {
    arena_t arena;                  // every node and string
    jval_t root;
};

typedef struct {
    const char *p, *end;
    jdoc_t *doc;
    jval_t *vals;                   // scratch: elements of open arrays
    size_t n_vals, cap_vals;
    s_mem_t *mems;                  // scratch: members of open objects
    size_t n_mems, cap_mems;
    // Keys seen, stored once: a stored workplan's million tasks repeat six
    // keys each (~43 bytes a task).  Half full at most, then no more added.
    const char *keys[S_KEYS];
    size_t n_keys;
    int depth;
    bool failed;
} s_parser_t;

// n bytes aligned for a node (align true) or for text.
static void *
s_alloc(jdoc_t *doc, size_t n, bool align)
{
    return arena_alloc(&doc->arena, n, align ? sizeof(void *) : 1);
}

// --- scanning --------------------------------------------------------------

static bool
s_fail(s_parser_t *ps)
{
    ps->failed = true;
    return false;
}

static void
s_ws(s_parser_t *ps)
{
    while (ps->p < ps->end
           && (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\r'
               || *ps->p == '\t')) {
        ps->p++;
    }
}

static int
s_hex(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

// Four hex digits at p (at least 4 bytes there), or -1.
static long
s_hex4(const char *p)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = s_hex(p[i]);
        if (h < 0) {
            return -1;
        }
        v = v * 16 + h;
    }
    return v;
}

static size_t
s_put_utf8(char *out, unsigned long cp)
{
    if (cp < 0x80) {
        out[0] = (char) cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char) (0xC0 | (cp >> 6));
        out[1] = (char) (0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char) (0xE0 | (cp >> 12));
        out[1] = (char) (0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char) (0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char) (0xF0 | (cp >> 18));
    out[1] = (char) (0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char) (0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char) (0x80 | (cp & 0x3F));
    return 4;
}

// A \u escape at *pp (just after the 'u'), a surrogate pair taken whole;
// writes its UTF-8 to out and returns the bytes, or 0 when it is refused
// (bad hex, a lone surrogate, U+0000).
static size_t
s_unicode(const char **pp, const char *end, char *out)
{
    const char *p = *pp;
    long cp = end - p >= 4 ? s_hex4(p) : -1;
    if (cp <= 0 || (cp >= 0xDC00 && cp <= 0xDFFF)) {
        return 0;
    }
    p += 4;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        long lo = end - p >= 6 && p[0] == '\\' && p[1] == 'u' ? s_hex4(p + 2)
                                                             : -1;
        if (lo < 0xDC00 || lo > 0xDFFF) {
            return 0;
        }
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        p += 6;
    }
    *pp = p;
    return s_put_utf8(out, (unsigned long) cp);
}

// The end of the string starting at p (after its opening quote): the
// closing quote, or NULL.
static const char *
s_string_end(const char *p, const char *end)
{
    while (p < end && *p != '"') {
        if (*p == '\\' && end - p < 2) {
            return NULL;
        }
        p += *p == '\\' ? 2 : 1;
    }
    return p < end ? p : NULL;
}

static const char s_unescape[128] = {
    ['"'] = '"', ['\\'] = '\\', ['/'] = '/', ['b'] = '\b',
    ['f'] = '\f', ['n'] = '\n', ['r'] = '\r', ['t'] = '\t',
};

// Copies the string body [p, q) into out, unescaped and checked; returns
// the bytes written or -1.
static long
s_copy_string(const char *p, const char *q, char *out)
{
    char *o = out;
    while (p < q) {
        unsigned char c = (unsigned char) *p;
        if (c >= 0x20 && c < 0x80 && c != '\\') {
            *o++ = (char) c;
            p++;
        } else if (c >= 0x80) {
            size_t k = json__utf8_seq((const unsigned char *) p,
                                      (size_t) (q - p));
            if (k == 0) {
                return -1;
            }
            memcpy(o, p, k);
            o += k;
            p += k;
        } else if (c != '\\') {
            return -1;              // a raw control character
        } else if (p[1] == 'u') {
            p += 2;
            size_t k = s_unicode(&p, q, o);
            if (k == 0) {
                return -1;
            }
            o += k;
        } else {
            unsigned char e = (unsigned char) p[1];
            if (e >= 128 || !s_unescape[e]) {
                return -1;
            }
            *o++ = s_unescape[e];
            p += 2;
        }
    }
    *o = '\0';
    return o - out;
}

// A string at ps->p (its opening quote): *s and *n set, the arena holding
// it.
static bool
s_string(s_parser_t *ps, const char **s, uint32_t *n)
{
    const char *q = s_string_end(ps->p + 1, ps->end);
    if (!q || (size_t) (q - ps->p) > UINT32_MAX) {
        return s_fail(ps);
    }
    char *out = s_alloc(ps->doc, (size_t) (q - ps->p), false);
    long len = s_copy_string(ps->p + 1, q, out);
    if (len < 0) {
        return s_fail(ps);
    }
    *s = out;
    *n = (uint32_t) len;
    ps->p = q + 1;
    return true;
}

// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, an integer when it has
// neither a fraction nor an exponent; integers beyond int64_t and reals
// beyond double are refused, as jansson refuses them.
static bool
s_number(s_parser_t *ps, jval_t *v)
{
    const char *p = ps->p, *end = ps->end, *start = p;
    bool real = false;
    if (p < end && *p == '-') {
        p++;
    }
    if (p < end && *p == '0') {
        p++;
    } else if (p < end && *p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }
    } else {
        return s_fail(ps);
    }
    if (p < end && *p == '.') {
        real = true;
        const char *d = ++p;
        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }
        if (p == d) {
            return s_fail(ps);
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        real = true;
        p++;
        if (p < end && (*p == '+' || *p == '-')) {
            p++;
        }
        const char *d = p;
        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }
        if (p == d) {
            return s_fail(ps);
        }
    }
    // A number that ran into a digit right after "0" ("01") is refused.
    if (p < end && *p >= '0' && *p <= '9') {
        return s_fail(ps);
    }
    char small[64];
    size_t len = (size_t) (p - start);
    char *buf = len < sizeof small ? small : xmalloc(len + 1);
    memcpy(buf, start, len);
    buf[len] = '\0';
    errno = 0;
    bool ok = true;
    if (real) {
        v->type = JSON_T_REAL;
        v->u.d = strtod(buf, NULL);
        ok = !(errno == ERANGE && isinf(v->u.d));
    } else {
        v->type = JSON_T_INTEGER;
        v->u.i = strtoll(buf, NULL, 10);
        ok = errno != ERANGE;
    }
    if (buf != small) {
        free(buf);
    }
    ps->p = p;
    return ok || s_fail(ps);
}

static bool
s_literal(s_parser_t *ps, const char *word, size_t n, jval_t *v,
          json_type_t type, bool b)
{
    if ((size_t) (ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) {
        return s_fail(ps);
    }
    ps->p += n;
    v->type = (uint8_t) type;
    v->b = b;
    return true;
}

// --- structure -------------------------------------------------------------

static bool s_value(s_parser_t *ps, jval_t *v);

static void
s_push_val(s_parser_t *ps, const jval_t *v)
{
    if (ps->n_vals == ps->cap_vals) {
        ps->cap_vals = ps->cap_vals ? ps->cap_vals * 2 : 256;
        ps->vals = xrealloc(ps->vals, ps->cap_vals * sizeof *ps->vals);
    }
    ps->vals[ps->n_vals++] = *v;
}

static void
s_push_mem(s_parser_t *ps, const s_mem_t *m)
{
    if (ps->n_mems == ps->cap_mems) {
        ps->cap_mems = ps->cap_mems ? ps->cap_mems * 2 : 256;
        ps->mems = xrealloc(ps->mems, ps->cap_mems * sizeof *ps->mems);
    }
    ps->mems[ps->n_mems++] = *m;
}

// After a member or element: true with *more set (a ',' was read) or
// false at the closing bracket; fails on anything else.
static bool
s_next(s_parser_t *ps, char close, bool *more)
{
    s_ws(ps);
    if (ps->p < ps->end && *ps->p == ',') {
        ps->p++;
        *more = true;
        return true;
    }
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        *more = false;
        return true;
    }
    return s_fail(ps);
}

// At an opening bracket: reads it and tells whether an item follows (else
// the closing bracket was read too).
static bool
s_open(s_parser_t *ps, char close, bool *more)
{
    ps->p++;
    s_ws(ps);
    if (ps->p >= ps->end) {
        return s_fail(ps);
    }
    *more = *ps->p != close;
    if (!*more) {
        ps->p++;
    }
    return true;
}

static bool
s_array(s_parser_t *ps, jval_t *v)
{
    size_t base = ps->n_vals;
    bool more;
    if (!s_open(ps, ']', &more)) {
        return false;
    }
    while (more) {
        jval_t kid = {0};
        if (!s_value(ps, &kid) || !s_next(ps, ']', &more)) {
            return false;
        }
        s_push_val(ps, &kid);
    }
    size_t n = ps->n_vals - base;
    if (n > UINT32_MAX) {
        return s_fail(ps);
    }
    jval_t *kids = n ? s_alloc(ps->doc, n * sizeof *kids, true) : NULL;
    if (n) {
        memcpy(kids, ps->vals + base, n * sizeof *kids);
    }
    ps->n_vals = base;
    *v = (jval_t){.type = JSON_T_ARRAY, .n = (uint32_t) n, .u.kids = kids};
    return true;
}

static int
s_key_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *) a, *(const char *const *) b);
}

// Whether two of the n members at m share a key.
static bool
s_has_duplicate(const s_mem_t *m, size_t n)
{
    if (n <= 16) {
        for (size_t i = 1; i < n; i++) {
            for (size_t j = 0; j < i; j++) {
                if (strcmp(m[i].key, m[j].key) == 0) {
                    return true;
                }
            }
        }
        return false;
    }
    const char **keys = xmalloc(n * sizeof *keys);
    for (size_t i = 0; i < n; i++) {
        keys[i] = m[i].key;
    }
    qsort(keys, n, sizeof *keys, s_key_cmp);
    bool dup = false;
    for (size_t i = 1; i < n && !dup; i++) {
        dup = strcmp(keys[i - 1], keys[i]) == 0;
    }
    free(keys);
    return dup;
}

// A key at ps->p (its opening quote) into *key: the cached copy when the
// same bytes were a key before (and so were checked), else a new one.
// Only keys without escapes are cached: their bytes are their text.
static bool
s_key(s_parser_t *ps, const char **key)
{
    const char *s = ps->p + 1, *q = s;
    while (q < ps->end && q - s <= S_KEY_MAX && *q != '"' && *q != '\\') {
        q++;
    }
    bool plain = q < ps->end && *q == '"' && q - s <= S_KEY_MAX;
    size_t len = (size_t) (q - s), slot = 0;
    if (plain) {
        uint32_t h = 2166136261u;   // FNV-1a
        for (size_t i = 0; i < len; i++) {
            h = (h ^ (unsigned char) s[i]) * 16777619u;
        }
        for (slot = h & (S_KEYS - 1); ps->keys[slot];
             slot = (slot + 1) & (S_KEYS - 1)) {
            const char *k = ps->keys[slot];
            if (strncmp(k, s, len) == 0 && k[len] == '\0') {
                *key = k;
                ps->p = q + 1;
                return true;
            }
        }
    }
    uint32_t klen;
    if (!s_string(ps, key, &klen)) {
        return false;
    }
    if (plain && 2 * (ps->n_keys + 1) <= S_KEYS) {
        ps->keys[slot] = *key;
        ps->n_keys++;
    }
    return true;
}

static bool
s_member(s_parser_t *ps, s_mem_t *m)
{
    s_ws(ps);
    if (ps->p >= ps->end || *ps->p != '"' || !s_key(ps, &m->key)) {
        return s_fail(ps);
    }
    s_ws(ps);
    if (ps->p >= ps->end || *ps->p != ':') {
        return s_fail(ps);
    }
    ps->p++;
    return s_value(ps, &m->val);
}

static bool
s_object(s_parser_t *ps, jval_t *v)
{
    size_t base = ps->n_mems;
    bool more;
    if (!s_open(ps, '}', &more)) {
        return false;
    }
    while (more) {
        s_mem_t m = {0};
        if (!s_member(ps, &m) || !s_next(ps, '}', &more)) {
            return false;
        }
        s_push_mem(ps, &m);
    }
    size_t n = ps->n_mems - base;
    if (n > UINT32_MAX || (n > 1 && s_has_duplicate(ps->mems + base, n))) {
        return s_fail(ps);
    }
    s_mem_t *mem = n ? s_alloc(ps->doc, n * sizeof *mem, true) : NULL;
    if (n) {
        memcpy(mem, ps->mems + base, n * sizeof *mem);
    }
    ps->n_mems = base;
    *v = (jval_t){.type = JSON_T_OBJECT, .n = (uint32_t) n, .u.mem = mem};
    return true;
}

static bool
s_value(s_parser_t *ps, jval_t *v)
{
    s_ws(ps);
    if (ps->p >= ps->end) {
        return s_fail(ps);
    }
    switch (*ps->p) {
    case '{':
    case '[': {
        if (++ps->depth > S_MAX_DEPTH) {
            return s_fail(ps);
        }
        bool ok = *ps->p == '{' ? s_object(ps, v) : s_array(ps, v);
        ps->depth--;
        return ok;
    }
    case '"':
        v->type = JSON_T_STRING;
        return s_string(ps, &v->u.s, &v->n);
    case 't':
        return s_literal(ps, "true", 4, v, JSON_T_BOOL, true);
    case 'f':
        return s_literal(ps, "false", 5, v, JSON_T_BOOL, false);
    case 'n':
        return s_literal(ps, "null", 4, v, JSON_T_NULL, false);
    default:
        return s_number(ps, v);
    }
}

// --- the document ----------------------------------------------------------

// The words for what this parser refuses and jansson accepts.
static void
s_refused_here(const char *text, size_t len, char *err, size_t errlen)
{
    if (!err || errlen == 0) {
        return;
    }
    const char *nul = memchr(text, '\0', len);
    if (!nul) {
        snprintf(err, errlen, "line 0, column 0: the document parser "
                              "refused what jansson accepts");
        return;
    }
    int line = 1, col = 0;
    for (const char *p = text; p <= nul; p++) {
        col = *p == '\n' ? 0 : col + 1;
        line += *p == '\n';
    }
    snprintf(err, errlen, "line %d, column %d: a NUL byte outside a string",
             line, col);
}

jdoc_t *
jdoc_parse(const char *text, size_t len, char *err, size_t errlen)
{
    assert(text || len == 0);
    jdoc_t *doc = xcalloc(1, sizeof *doc);
    s_parser_t ps = {.p = text ? text : "", .doc = doc};
    ps.end = ps.p + len;
    bool ok = s_value(&ps, &doc->root);
    s_ws(&ps);
    ok = ok && ps.p == ps.end;
    free(ps.vals);
    free(ps.mems);
    if (ok) {
        return doc;
    }
    jdoc_destroy(&doc);
    // jansson finds the same error and words it (line, column, message).
    jnode_t *root = json_parse(text, len, err, errlen);
    if (root) {
        // Accepted there, refused here: a NUL byte right after a number,
        // which jansson lets through (and this parser does not), or a bug
        // in this parser.  Say which rather than hide it.
        json_destroy(&root);
        s_refused_here(text, len, err, errlen);
    }
    return NULL;
}

void
jdoc_destroy(jdoc_t **doc_p)
{
    if (!doc_p || !*doc_p) {
        return;
    }
    arena_release(&(*doc_p)->arena);
    free(*doc_p);
    *doc_p = NULL;
}

const jval_t *
jdoc_root(const jdoc_t *doc)
{
    assert(doc);
    return &doc->root;
}

size_t
jdoc_bytes(const jdoc_t *doc)
{
    return doc ? doc->arena.bytes : 0;
}

// --- reading ---------------------------------------------------------------

json_type_t
jval_type(const jval_t *v)
{
    assert(v);
    return (json_type_t) v->type;
}

size_t
jval_size(const jval_t *v)
{
    return v && (v->type == JSON_T_ARRAY || v->type == JSON_T_OBJECT) ? v->n
                                                                     : 0;
}

const jval_t *
jval_at(const jval_t *v, size_t i)
{
    if (!v || i >= jval_size(v)) {
        return NULL;
    }
    return v->type == JSON_T_ARRAY ? &v->u.kids[i] : &v->u.mem[i].val;
}

const char *
jval_key(const jval_t *v, size_t i)
{
    if (!v || v->type != JSON_T_OBJECT || i >= v->n) {
        return NULL;
    }
    return v->u.mem[i].key;
}

const jval_t *
jval_get(const jval_t *v, const char *key)
{
    assert(key);
    if (!v || v->type != JSON_T_OBJECT) {
        return NULL;
    }
    for (uint32_t i = 0; i < v->n; i++) {
        if (strcmp(v->u.mem[i].key, key) == 0) {
            return &v->u.mem[i].val;
        }
    }
    return NULL;
}

const char *
jval_str(const jval_t *v)
{
    return v && v->type == JSON_T_STRING ? v->u.s : NULL;
}

size_t
jval_len(const jval_t *v)
{
    return v && v->type == JSON_T_STRING ? v->n : 0;
}

int64_t
jval_int(const jval_t *v)
{
    return v && v->type == JSON_T_INTEGER ? v->u.i : 0;
}

double
jval_num(const jval_t *v)
{
    return !v                          ? 0.0
           : v->type == JSON_T_INTEGER ? (double) v->u.i
           : v->type == JSON_T_REAL    ? v->u.d
                                       : 0.0;
}

// --- writing ---------------------------------------------------------------

void
json_out_jval(json_out_t *o, const jval_t *v)
{
    assert(o && v);
    switch ((json_type_t) v->type) {
    case JSON_T_OBJECT:
        json_out_raw(o, "{", 1);
        for (uint32_t i = 0; i < v->n; i++) {
            if (i > 0) {
                json_out_raw(o, ",", 1);
            }
            json_out_str(o, v->u.mem[i].key, strlen(v->u.mem[i].key));
            json_out_raw(o, ":", 1);
            json_out_jval(o, &v->u.mem[i].val);
        }
        json_out_raw(o, "}", 1);
        return;
    case JSON_T_ARRAY:
        json_out_raw(o, "[", 1);
        for (uint32_t i = 0; i < v->n; i++) {
            if (i > 0) {
                json_out_raw(o, ",", 1);
            }
            json_out_jval(o, &v->u.kids[i]);
        }
        json_out_raw(o, "]", 1);
        return;
    case JSON_T_STRING:
        json_out_str(o, v->u.s, v->n);
        return;
    case JSON_T_INTEGER:
        json_out_int(o, v->u.i);
        return;
    case JSON_T_REAL:
        json_out_real(o, v->u.d);
        return;
    case JSON_T_BOOL:
        json_out_raw(o, v->b ? "true" : "false", v->b ? 4 : 5);
        return;
    case JSON_T_NULL:
        break;
    }
    json_out_raw(o, "null", 4);
}
