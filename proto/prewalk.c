// prewalk: the bounded walk over a frame's raw bytes, and the default
// decoder limits it enforces (proto_limits_default()).
//
// Owns PROTOCOL.md 3.3 step 2: one pass over the bytes that proves they are
// exactly one map whose every declared count and length fits in what
// remains, within the frame, depth, object and string limits, before
// msgpack-c, which allocates what a header declares, is given them.  The
// same pass enforces the rules of 3.1 that hold anywhere in a frame, even
// in fields no decoder reads: no float, no ext type, no 0xc1, every str
// valid UTF-8.  It reads the type byte and length fields of each object
// (and the bytes of each str), keeps its open containers on a fixed stack
// and never allocates.  It also notes the top-level "req" as it passes it,
// so that a frame it refuses can still be answered with the request's id
// (PROTOCOL.md 4).  Never includes <msgpack.h>: its whole point is to trust
// nothing that library would do with a hostile header.
#include "proto/prewalk.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define S_DEPTH_CAP 16        // msgpack-c's own parse stack holds 32

void
proto_limits_default(proto_limits_t *lim)
{
    lim->max_frame = 64u << 20;
    lim->max_depth = 8;
    lim->max_objects = 1000000;
    lim->max_string = 64u << 20;
}

size_t
prewalk_utf8_bad(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t k = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 :
                   (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : 4;
        static const uint32_t min[] = {0, 0x80, 0x800, 0x10000};
        if (k == 4 || k > n - i - 1) {
            return i;
        }
        uint32_t cp = k == 0 ? c : c & (0x3fu >> k);
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) {
                return i;
            }
            cp = cp << 6 | (s[i + j] & 0x3fu);
        }
        if (cp < min[k] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return i;
        }
        i += k + 1;
    }
    return n;
}

typedef enum { S_SCALAR, S_BYTES, S_ARRAY, S_MAP, S_FLOAT, S_BAD } s_kind_t;

typedef struct {
    s_kind_t kind;
    size_t width;     // scalar: payload bytes; others: bytes of the length
    uint64_t fixed;   // a length held in the first byte (fixstr, fixmap...)
    bool text;        // a str (UTF-8), not a bin
    uint64_t n;       // once read: the length or count
} s_head_t;

#define S_HEAD(kind, width, fixed, text) \
    ((s_head_t) {(kind), (width), (fixed), (text), 0})

// What the first byte of a msgpack object says about the bytes after it.
static s_head_t
s_classify(uint8_t b)
{
    if (b <= 0x7f || b >= 0xe0) {
        return S_HEAD(S_SCALAR, 0, 0, false);
    }
    if (b <= 0x8f) {
        return S_HEAD(S_MAP, 0, b & 0x0fu, false);
    }
    if (b <= 0x9f) {
        return S_HEAD(S_ARRAY, 0, b & 0x0fu, false);
    }
    if (b <= 0xbf) {
        return S_HEAD(S_BYTES, 0, b & 0x1fu, true);
    }
    switch (b) {
    case 0xc0: case 0xc2: case 0xc3: return S_HEAD(S_SCALAR, 0, 0, false);
    case 0xcc: case 0xd0: return S_HEAD(S_SCALAR, 1, 0, false);
    case 0xcd: case 0xd1: return S_HEAD(S_SCALAR, 2, 0, false);
    case 0xce: case 0xd2: return S_HEAD(S_SCALAR, 4, 0, false);
    case 0xcf: case 0xd3: return S_HEAD(S_SCALAR, 8, 0, false);
    case 0xca: return S_HEAD(S_FLOAT, 4, 0, false);
    case 0xcb: return S_HEAD(S_FLOAT, 8, 0, false);
    case 0xc4: return S_HEAD(S_BYTES, 1, 0, false);
    case 0xc5: return S_HEAD(S_BYTES, 2, 0, false);
    case 0xc6: return S_HEAD(S_BYTES, 4, 0, false);
    case 0xd9: return S_HEAD(S_BYTES, 1, 0, true);
    case 0xda: return S_HEAD(S_BYTES, 2, 0, true);
    case 0xdb: return S_HEAD(S_BYTES, 4, 0, true);
    case 0xdc: return S_HEAD(S_ARRAY, 2, 0, false);
    case 0xdd: return S_HEAD(S_ARRAY, 4, 0, false);
    case 0xde: return S_HEAD(S_MAP, 2, 0, false);
    case 0xdf: return S_HEAD(S_MAP, 4, 0, false);
    default: return S_HEAD(S_BAD, 0, 0, false); // 0xc1, ext and fixext
    }
}

typedef struct {
    const uint8_t *p;
    size_t len, pos;          // frame length and read position
    size_t objects;           // objects seen or promised so far
    const proto_limits_t *lim;
    proto_error_t *err;
    const uint8_t *field;     // the top-level key whose value is walked
    size_t field_len;         // 0: none (a key, or the top map itself)
    bool at_req;              // the value walked is that of key "req"
    bool have_req;            // err->req holds the first top-level "req"
} s_walk_t;

// " (in field 'x')" when the walk is inside a top-level field's value, so
// a refusal says where; the name is cut and made printable for logs.
static const char *
s_where(const s_walk_t *w, char *buf, size_t size)
{
    if (w->field_len == 0) {
        return "";
    }
    char name[49];
    size_t i = 0;
    for (; i < w->field_len && i < 48; i++) {
        uint8_t c = w->field[i];
        name[i] = c >= 0x20 && c < 0x7f ? (char) c : '?';
    }
    name[i] = '\0';
    snprintf(buf, size, " (in field '%s%s')", name,
             i < w->field_len ? "..." : "");
    return buf;
}

// The length or count of a str, bin, array or map header (big-endian).
static uint64_t
s_walk_len(const s_walk_t *w, const s_head_t *h)
{
    uint64_t n = h->fixed;
    for (size_t i = 0; i < h->width; i++) {
        n = n << 8 | w->p[w->pos + i];
    }
    return n;
}

// Reads the header of the object at w->pos and skips its payload; *kids is
// how many objects it contains (a map's entries count twice).
static int
s_walk_one(s_walk_t *w, s_head_t *h, uint64_t *kids)
{
    size_t at = w->pos;
    char where[80];
    *h = s_classify(w->p[w->pos++]);
    if (h->kind == S_BAD) {
        return proto_error_set(w->err, PROTO_E_MALFORMED,
                      "byte 0x%02x at offset %zu%s: ext types and 0xc1 are "
                      "not allowed", w->p[at], at,
                      s_where(w, where, sizeof where));
    }
    if (h->kind == S_FLOAT) {
        return proto_error_set(w->err, PROTO_E_MALFORMED,
                      "a float at offset %zu%s: floats are not allowed", at,
                      s_where(w, where, sizeof where));
    }
    if (h->width > w->len - w->pos) {
        return proto_error_set(w->err, PROTO_E_MALFORMED,
                      "frame truncated at offset %zu", at);
    }
    uint64_t n = h->kind == S_SCALAR ? 0 : s_walk_len(w, h);
    h->n = n;
    w->pos += h->width;
    *kids = h->kind == S_MAP ? 2 * n : h->kind == S_ARRAY ? n : 0;
    // Each element takes at least one byte: a count the rest of the frame
    // cannot hold is a lie, whatever the limits say.
    if ((h->kind == S_BYTES ? n : *kids) > w->len - w->pos) {
        return proto_error_set(w->err, PROTO_E_MALFORMED,
                      "object at offset %zu declares %" PRIu64 " %s but only "
                      "%zu bytes remain", at, n,
                      h->kind == S_BYTES ? "bytes" : "elements",
                      w->len - w->pos);
    }
    if (h->kind == S_BYTES && n > w->lim->max_string) {
        return proto_error_set(w->err, PROTO_E_TOO_LARGE,
                      "string of %" PRIu64 " bytes at offset %zu is over the "
                      "limit %zu", n, at, w->lim->max_string);
    }
    if (h->text && prewalk_utf8_bad(w->p + w->pos, n) < n) {
        return proto_error_set(w->err, PROTO_E_MALFORMED,
                      "the string at offset %zu%s is not valid UTF-8 (byte "
                      "%zu of it)", at, s_where(w, where, sizeof where),
                      prewalk_utf8_bad(w->p + w->pos, n));
    }
    w->pos += h->kind == S_BYTES ? n : 0;
    w->objects += *kids;
    if (w->objects > w->lim->max_objects) {
        return proto_error_set(w->err, PROTO_E_TOO_LARGE,
                      "more than %zu objects in the frame",
                      w->lim->max_objects);
    }
    return 0;
}

// What the frame's length and first byte alone can refuse.
static int
s_check_frame(const uint8_t *buf, size_t len, const proto_limits_t *lim,
              proto_error_t *err)
{
    if (len == 0) {
        return proto_error_set(err, PROTO_E_MALFORMED, "empty frame");
    }
    if (len > lim->max_frame) {
        return proto_error_set(err, PROTO_E_TOO_LARGE, "frame of %zu bytes is over "
                      "the limit %zu", len, lim->max_frame);
    }
    if (s_classify(buf[0]).kind != S_MAP) {
        return proto_error_set(err, PROTO_E_MALFORMED, "frame is not a msgpack map");
    }
    return 0;
}

// After a top-level key: which field the value that follows belongs to.
static void
s_note_key(s_walk_t *w, const s_head_t *h)
{
    w->at_req = false;
    if (h->kind != S_BYTES || !h->text) {
        return;
    }
    w->field = w->p + w->pos - h->n;
    w->field_len = (size_t) h->n;
    w->at_req = !w->have_req && h->n == 3 && memcmp(w->field, "req", 3) == 0;
}

// After a top-level value at offset at: keeps the first "req" that is a
// uint (positive fixint, uint 8..64 or a non-negative int 8..64).
static void
s_note_value(s_walk_t *w, size_t at, const s_head_t *h)
{
    if (!w->at_req || h->kind != S_SCALAR) {
        return;
    }
    // A signed int's payload follows its type byte (width >= 1 there).
    uint8_t b = w->p[at];
    bool is_uint = b <= 0x7f || (b >= 0xcc && b <= 0xcf) ||
                   (b >= 0xd0 && b <= 0xd3 && !(w->p[at + 1] & 0x80));
    if (!is_uint) {
        return;
    }
    uint64_t v = b <= 0x7f ? b : 0;
    for (size_t i = 0; i < h->width; i++) {
        v = v << 8 | w->p[at + 1 + i];
    }
    w->err->req = v;
    w->have_req = true;
}

int
prewalk_check(const uint8_t *buf, size_t len, const proto_limits_t *lim,
              proto_error_t *err)
{
    s_walk_t w = {buf, len, 0, 1, lim, err, NULL, 0, false, false};
    uint64_t stack[S_DEPTH_CAP]; // children left in each open container
    size_t sp = 0, max_depth = lim->max_depth;
    max_depth = max_depth < S_DEPTH_CAP ? max_depth : S_DEPTH_CAP;
    if (s_check_frame(buf, len, lim, err) < 0) {
        return -1;
    }
    do {
        s_head_t h;
        uint64_t kids = 0;
        if (w.pos >= len) {
            return proto_error_set(err, PROTO_E_MALFORMED, "frame truncated");
        }
        // In the top map, an even number of children left means a key.
        bool top_key = sp == 1 && stack[0] % 2 == 0;
        bool top_value = sp == 1 && !top_key;
        size_t at = w.pos;
        if (sp > 0) {
            stack[sp - 1]--;
        }
        if (top_key) {
            w.field_len = 0;
        }
        if (s_walk_one(&w, &h, &kids) < 0) {
            return -1;
        }
        if (top_key) {
            s_note_key(&w, &h);
        } else if (top_value) {
            s_note_value(&w, at, &h);
        }
        if (h.kind == S_ARRAY || h.kind == S_MAP) {
            if (sp + 1 > max_depth) {
                return proto_error_set(err, PROTO_E_TOO_LARGE, "nesting deeper than "
                              "%zu", max_depth);
            }
            if (kids > 0) {
                stack[sp++] = kids;
            }
        }
        while (sp > 0 && stack[sp - 1] == 0) {
            sp--;
        }
    } while (sp > 0);
    if (w.pos != len) {
        return proto_error_set(err, PROTO_E_MALFORMED, "%zu bytes after the message",
                      len - w.pos);
    }
    return 0;
}
