// json: the only module that touches the JSON library (jansson).
//
// Parses and emits JSON for workplans, model replies, --json output and
// JSON-lines logs, so that nothing else in Waggle includes <jansson.h>.
//
// Reading: json_parse() returns a root that the caller owns and frees with
// json_destroy().  Every other node reached from it (json_obj_get,
// json_arr_get, iteration) is a borrowed view, valid until the root is
// destroyed.  Getters are NULL-safe and forgiving: asked for the wrong type or
// a missing member they return NULL, 0 or false, so a lookup chain such as
// json_str(json_obj_get(root, "model")) needs one check at the end.
//
// Building: json_obj_new()/json_arr_new() return nodes the caller owns.
// Setters copy strings; json_obj_set_node()/json_arr_push_node() take
// ownership of an owned child and NULL the caller's pointer.  Objects keep
// their keys in insertion order, for reading and for json_dump().
#ifndef WAGGLE_JSON_H
#define WAGGLE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct jnode jnode_t;

typedef enum {
    JSON_T_OBJECT = 0,
    JSON_T_ARRAY,
    JSON_T_STRING,
    JSON_T_INTEGER,         // fits int64_t; jansson refuses larger ones
    JSON_T_REAL,            // any number written with a fraction or exponent
    JSON_T_BOOL,
    JSON_T_NULL,
} json_type_t;

// A position in an object's members, in insertion order:
//   json_iter_t it = json_obj_iter(obj);
//   const char *key;
//   const jnode_t *value;
//   while (json_obj_next(&it, &key, &value)) { ... }
// Do not change the object while iterating it.
typedef struct {
    jnode_t *obj;           // the object walked; NULL if it is not one
    void *pos;              // the library's position; NULL when done
} json_iter_t;

// --- reading -----------------------------------------------------------

// Parses len bytes of UTF-8 JSON (any value at the top level; nothing but
// whitespace may follow it).  Duplicate keys in an object are refused, and
// so is "\u0000" in a string.  Returns a new root (caller destroys it), or
// NULL with "line L, column C: message" written to err (errlen bytes,
// truncated; err may be NULL when errlen is 0).
jnode_t *json_parse(const char *text, size_t len, char *err, size_t errlen);
// Frees a root (parsed or built) and NULLs *root_p; a no-op on NULL.  Never
// pass a borrowed view.
void json_destroy(jnode_t **root_p);

// The node's type; node must not be NULL.
json_type_t json_type_of(const jnode_t *node);
// Borrowed member named key, or NULL (missing, or node is not an object).
const jnode_t *json_obj_get(const jnode_t *node, const char *key);
// Members of an object; 0 if node is not one.
size_t json_obj_size(const jnode_t *node);
// Starts an iteration over node's members (an empty one if node is NULL or
// not an object).
json_iter_t json_obj_iter(const jnode_t *node);
// Moves to the next member: true with *key and *value borrowed (valid while
// the member exists), or false when there are no more.
bool json_obj_next(json_iter_t *it, const char **key, const jnode_t **value);
// Elements of an array; 0 if node is not one.
size_t json_arr_size(const jnode_t *node);
// Borrowed element i, or NULL (out of range, or node is not an array).
const jnode_t *json_arr_get(const jnode_t *node, size_t i);
// A string's UTF-8 bytes, NUL-terminated (borrowed), or NULL if node is not
// a string.  Parsed strings never hold a NUL byte; built ones may, so use
// json_str_len() for those.
const char *json_str(const jnode_t *node);
// A string's length in bytes; 0 if node is not a string.
size_t json_str_len(const jnode_t *node);
// An integer's value; 0 if node is not an integer (reals are not
// converted).
int64_t json_int(const jnode_t *node);
// The value of an integer or a real as a double; 0.0 for anything else.
double json_num(const jnode_t *node);
// A boolean's value; false if node is not a boolean.
bool json_bool(const jnode_t *node);

// --- building ----------------------------------------------------------

// New empty object or array, owned by the caller (json_destroy()).
jnode_t *json_obj_new(void);
jnode_t *json_arr_new(void);
// Deep copy of any node (a borrowed view included), owned by the caller.
jnode_t *json_clone(const jnode_t *node);

// Set obj[key], replacing any value already there (which keeps its place in
// the key order).  key is copied and must be valid UTF-8.  String values are
// copied; bytes that are not valid UTF-8 become U+FFFD, so any bytes (a
// task's output) can be emitted.
void json_obj_set_str(jnode_t *obj, const char *key, const char *value);
void json_obj_set_strn(jnode_t *obj, const char *key, const char *value,
                       size_t len);
void json_obj_set_int(jnode_t *obj, const char *key, int64_t value);
void json_obj_set_num(jnode_t *obj, const char *key, double value);
void json_obj_set_bool(jnode_t *obj, const char *key, bool value);
void json_obj_set_null(jnode_t *obj, const char *key);
// Takes ownership of *child_p (an owned node, never a borrowed view) and
// NULLs it.
void json_obj_set_node(jnode_t *obj, const char *key, jnode_t **child_p);

// Append to an array; same copying and ownership rules as the setters.
void json_arr_push_str(jnode_t *arr, const char *value);
void json_arr_push_int(jnode_t *arr, int64_t value);
void json_arr_push_node(jnode_t *arr, jnode_t **child_p);

// Text of node (any type): compact (no whitespace at all, for canonical
// forms and JSON lines) or pretty (2-space indent), with object keys in
// insertion order, UTF-8 left unescaped, no trailing newline.  Caller frees.
char *json_dump(const jnode_t *node, bool pretty);

// Returns s as a quoted, escaped JSON string literal ("..."); caller frees.
// Bytes of s that are not valid UTF-8 become U+FFFD.
char *json_quote(const char *s);

// --- reading large documents fast -------------------------------------
// A read-only document parsed into one arena: no per-node allocation, no
// hash per object, freed at once.  For large inputs read once (a workplan
// of 100k tasks: jansson took ~0.3 s and ~1 KB per task).  It accepts
// what json_parse() accepts (the same flags: any value at the top,
// duplicate keys and "\u0000" refused, UTF-8 checked, integers that do not
// fit int64_t refused), except a NUL byte right after a number, which
// jansson skips ("[1\0]") and this refuses; and it gives the same error
// text (on an error it asks json_parse() for the words).  Members keep
// their order; a lookup by key is a linear scan, so it is for small
// objects.

typedef struct jdoc jdoc_t;
typedef struct jval jval_t;

// Parses len bytes; a new document (jdoc_destroy()) or NULL with the error
// in err as json_parse() writes it.
jdoc_t *jdoc_parse(const char *text, size_t len, char *err, size_t errlen);
void jdoc_destroy(jdoc_t **doc_p);
// The top-level value (borrowed, valid until the document is destroyed).
const jval_t *jdoc_root(const jdoc_t *doc);
// Bytes the document holds (its arena), for measuring.
size_t jdoc_bytes(const jdoc_t *doc);

// As json_type_of(); v must not be NULL.
json_type_t jval_type(const jval_t *v);
// Elements of an array or members of an object; 0 for anything else or
// NULL.
size_t jval_size(const jval_t *v);
// Element i of an array, or the value of member i of an object; NULL when
// out of range or v is neither.
const jval_t *jval_at(const jval_t *v, size_t i);
// The key of member i of an object (NUL-terminated, borrowed), or NULL.
const char *jval_key(const jval_t *v, size_t i);
// The member named key, or NULL (missing, or v is not an object).
const jval_t *jval_get(const jval_t *v, const char *key);
// Scalars, as the json_* getters: forgiving, NULL-safe.
const char *jval_str(const jval_t *v);
size_t jval_len(const jval_t *v);
int64_t jval_int(const jval_t *v);
double jval_num(const jval_t *v);

// --- writing text directly ----------------------------------------------
// For large texts built in one pass (a workplan's canonical form): no tree,
// no per-value allocation.  The bytes are those json_dump(..., false) gives
// for the same values: strings escaped the same way (\" \\ \b \f \n \r
// \t, other control characters as \u00XX, everything else as it is) and
// reals written the same way ("%.17g", with ".0" when that looks like an
// integer).  The caller writes the punctuation with json_out_raw().

typedef struct {
    char *p;                // NUL-terminated once anything was written
    size_t len;             // bytes before the NUL
    size_t cap;             // bytes allocated
} json_out_t;

// Appends n bytes as they are.
void json_out_raw(json_out_t *o, const char *s, size_t n);
// Appends len bytes of s as a quoted, escaped string.  s must be valid
// UTF-8 (every string of a parsed document is).
void json_out_str(json_out_t *o, const char *s, size_t len);
void json_out_int(json_out_t *o, int64_t v);
// A finite real; NaN and infinities (which JSON lacks) become null.
void json_out_real(json_out_t *o, double v);
// Appends v compactly, its members in their order: the bytes json_dump()
// gives for the same document parsed by json_parse().
void json_out_jval(json_out_t *o, const jval_t *v);
// The text written ("" if nothing was; caller frees), its length in
// *len_out when that is not NULL; o is left empty.
char *json_out_take(json_out_t *o, size_t *len_out);

#endif
