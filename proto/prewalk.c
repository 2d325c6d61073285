// prewalk: the bounded walk over a frame's raw bytes, and the default
// decoder limits it enforces (proto_limits_default()).
//
// Owns PROTOCOL.md 3.3 step 2: one pass over the bytes that proves they are
// exactly one map whose every declared count and length fits in what
// remains, within the frame, depth, object and string limits, before
// msgpack-c, which allocates what a header declares, is given them.  It
// reads only the type byte and length fields of each object, keeps its
// open containers on a fixed stack and never allocates.  Never includes
// <msgpack.h>: its whole point is to trust nothing that library would do
// with a hostile header.
#include "proto/prewalk.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#define S_DEPTH_CAP 16        // msgpack-c's own parse stack holds 32

void
proto_limits_default(proto_limits_t *lim)
{
    lim->max_frame = 64u << 20;
    lim->max_depth = 8;
    lim->max_objects = 1000000;
    lim->max_string = 64u << 20;
}

typedef enum { S_SCALAR, S_BYTES, S_ARRAY, S_MAP, S_BAD } s_kind_t;

typedef struct {
    s_kind_t kind;
    size_t width;     // scalar: payload bytes; others: bytes of the length
    uint64_t fixed;   // a length held in the first byte (fixstr, fixmap...)
} s_head_t;

// What the first byte of a msgpack object says about the bytes after it.
static s_head_t
s_classify(uint8_t b)
{
    if (b <= 0x7f || b >= 0xe0) {
        return (s_head_t) {S_SCALAR, 0, 0};
    }
    if (b <= 0x8f) {
        return (s_head_t) {S_MAP, 0, b & 0x0fu};
    }
    if (b <= 0x9f) {
        return (s_head_t) {S_ARRAY, 0, b & 0x0fu};
    }
    if (b <= 0xbf) {
        return (s_head_t) {S_BYTES, 0, b & 0x1fu};
    }
    switch (b) {
    case 0xc0: case 0xc2: case 0xc3: return (s_head_t) {S_SCALAR, 0, 0};
    case 0xcc: case 0xd0: return (s_head_t) {S_SCALAR, 1, 0};
    case 0xcd: case 0xd1: return (s_head_t) {S_SCALAR, 2, 0};
    case 0xca: case 0xce: case 0xd2: return (s_head_t) {S_SCALAR, 4, 0};
    case 0xcb: case 0xcf: case 0xd3: return (s_head_t) {S_SCALAR, 8, 0};
    case 0xc4: case 0xd9: return (s_head_t) {S_BYTES, 1, 0};
    case 0xc5: case 0xda: return (s_head_t) {S_BYTES, 2, 0};
    case 0xc6: case 0xdb: return (s_head_t) {S_BYTES, 4, 0};
    case 0xdc: return (s_head_t) {S_ARRAY, 2, 0};
    case 0xdd: return (s_head_t) {S_ARRAY, 4, 0};
    case 0xde: return (s_head_t) {S_MAP, 2, 0};
    case 0xdf: return (s_head_t) {S_MAP, 4, 0};
    default: return (s_head_t) {S_BAD, 0, 0}; // 0xc1, ext and fixext
    }
}

typedef struct {
    const uint8_t *p;
    size_t len, pos;          // frame length and read position
    size_t objects;           // objects seen or promised so far
    const proto_limits_t *lim;
    proto_error_t *err;
} s_walk_t;

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
    *h = s_classify(w->p[w->pos++]);
    if (h->kind == S_BAD) {
        return proto_error_set(w->err, PROTO_E_MALFORMED,
                      "byte 0x%02x at offset %zu: ext types and 0xc1 are "
                      "not allowed", w->p[at], at);
    }
    if (h->width > w->len - w->pos) {
        return proto_error_set(w->err, PROTO_E_MALFORMED,
                      "frame truncated at offset %zu", at);
    }
    uint64_t n = h->kind == S_SCALAR ? 0 : s_walk_len(w, h);
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

int
prewalk_check(const uint8_t *buf, size_t len, const proto_limits_t *lim,
              proto_error_t *err)
{
    s_walk_t w = {buf, len, 0, 1, lim, err};
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
        if (sp > 0) {
            stack[sp - 1]--;
        }
        if (s_walk_one(&w, &h, &kids) < 0) {
            return -1;
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
