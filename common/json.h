// json: the only module that touches the JSON library (jansson).
//
// Parses and emits JSON for workplans, model replies, --json output and
// JSON-lines logs.  A jnode_t is a borrowed view into a document owned by the
// root returned from json_parse(); free the root with json_destroy().
#ifndef WAGGLE_JSON_H
#define WAGGLE_JSON_H

#include <stddef.h>

// Returns s as a quoted, escaped JSON string literal ("..."); caller frees.
char *json_quote(const char *s);

#endif
