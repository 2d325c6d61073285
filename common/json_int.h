// json_int.h: what the files of the json module share (SQLite's *Int.h
// convention).  Nothing outside common/json*.c includes it.
//
//   json.c       the jansson wrapper (trees: parse, read, build, dump)
//   json_doc.c   the arena parser for large read-only documents
//   json_out.c   text written straight into a buffer
#ifndef WAGGLE_JSON_INT_H
#define WAGGLE_JSON_INT_H

#include <stddef.h>

// Length of the well-formed UTF-8 sequence at p (at most n bytes, n >= 1),
// or 0.  Refuses what jansson refuses: overlong forms, surrogates,
// > U+10FFFF.
size_t json__utf8_seq(const unsigned char *p, size_t n);

#endif
