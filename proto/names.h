// names: the wire spellings of the protocol's enums, for use inside
// libproto only (codec.c decodes with them).  names.c owns the tables; the
// public name and parse functions are in proto.h.
//
// Wire strings are msgpack strings, not NUL-terminated, so these take a
// length.  Each returns the value whose name is exactly p[0..len), or -1.
// p may be anything when len is 0: no name is empty.
#ifndef WAGGLE_PROTO_NAMES_H
#define WAGGLE_PROTO_NAMES_H

#include <stddef.h>

int names_cmd_find(const char *p, size_t len);         // proto_cmd_t
int names_status_find(const char *p, size_t len);      // proto_status_t
int names_task_state_find(const char *p, size_t len);  // proto_task_state_t
int names_outcome_find(const char *p, size_t len);     // proto_outcome_t
int names_ack_find(const char *p, size_t len);         // proto_ack_t

#endif
