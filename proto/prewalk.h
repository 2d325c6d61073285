// prewalk: bounds a frame's raw bytes before msgpack-c sees them
// (PROTOCOL.md 3.3).  For use inside libproto only: proto_decode() calls
// it first, because msgpack-c allocates what a header declares before the
// elements arrive.
#ifndef WAGGLE_PROTO_PREWALK_H
#define WAGGLE_PROTO_PREWALK_H

#include "proto/proto.h"

#include <stddef.h>
#include <stdint.h>

// Returns 0 when buf[0..len) is exactly one msgpack map, with no float, ext
// type or 0xc1 in it and only valid UTF-8 in its strs, whose every declared
// length and count fits in the bytes that remain, within lim (the depth
// limit is also capped at 16, half of msgpack-c's own parse stack).
// Otherwise returns -1 with err->code (MALFORMED for a lie, a truncation or
// a forbidden value, TOO_LARGE for an honest frame over a limit) and
// err->message set (with the offset and top-level field where it can).
// err->req is set to the first top-level "req" that is a uint and was
// walked before the fault, else left alone.  buf may be NULL only when len
// is 0; all arguments are borrowed.
int prewalk_check(const uint8_t *buf, size_t len, const proto_limits_t *lim,
                  proto_error_t *err);

// Index of the first byte of s[0..n) that does not start a well-formed
// UTF-8 sequence (overlong forms, surrogates and code points past U+10FFFF
// are not well formed), or n when all of it is UTF-8.
size_t prewalk_utf8_bad(const uint8_t *s, size_t n);

#endif
