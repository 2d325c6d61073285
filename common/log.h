// log: one line per entry on stderr, as text or as JSON lines.
//
//   2026-01-02T03:04:05Z INFO broker.sched: task 'build' leased to 'd3'
//   {"ts":"2026-01-02T03:04:05Z","level":"info","component":"broker.sched","msg":"...",
//    "plan":3,"task":"build","drone":"d3"}
//
// Structured fields (log_with) travel only in the JSON form, as members
// after "msg", so that a log pipeline can select by plan, task, token,
// drone or key; the text form stays one sentence that says the same.
// The level is checked before anything is formatted.  proto/ and the pure
// modules never log; they return errors for their callers to report.
#ifndef WAGGLE_LOG_H
#define WAGGLE_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum {
    LOG_LEVEL_ERROR = 0,
    LOG_LEVEL_WARN = 1,
    LOG_LEVEL_INFO = 2,
    LOG_LEVEL_DEBUG = 3,
} log_level_t;

// Sets the process-wide level and format.  Before log_init the level is
// INFO and the format is text.
void log_init(log_level_t level, bool json);
bool log_enabled(log_level_t level);
// Parses "text"/"json"; returns -1 on anything else.
int log_format_parse(const char *s, bool *json);

// Writes one entry.  In text format every control byte, DEL and C1 control
// of the formatted message is written as \xNN (log_escape), so strings from
// peers cannot forge lines or drive the terminal; JSON escapes the same
// controls as \uNNNN.
void log_write(log_level_t level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vwrite(log_level_t level, const char *component, const char *fmt,
                va_list ap) __attribute__((format(printf, 3, 0)));
// One structured field: the string str (left out when NULL) or the
// integer num.  The names Waggle uses: "plan", "task", "token", "drone"
// (an instance id), "key" (a key name).
typedef struct {
    const char *key;            // NULL ends a list
    const char *str;
    int64_t num;
    bool is_num;
} log_field_t;

#define LOG_STR(k, v) ((log_field_t){(k), (v), 0, false})
#define LOG_INT(k, v) ((log_field_t){(k), NULL, (int64_t) (v), true})
// A list of fields for log_with: LOG_FIELDS(LOG_INT("plan", p), ...).
#define LOG_FIELDS(...)                                                       \
    ((const log_field_t[]){__VA_ARGS__, {NULL, NULL, 0, false}})

// log_write with fields (NULL: none): in JSON form each becomes a member
// after "msg", in order (one named like a member of the entry itself, ts,
// level, component or msg, is dropped); the text form ignores them.
void log_with(log_level_t level, const char *component,
              const log_field_t *fields, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

// A copy of s with each byte below 0x20, DEL (0x7f) and each C1 control in
// UTF-8 (0xc2 0x80..0x9f, both bytes) written as \xNN (lowercase hex);
// every other byte, UTF-8 included, is kept.  Caller frees.
char *log_escape(const char *s);

#define log_error(c, ...) log_write(LOG_LEVEL_ERROR, (c), __VA_ARGS__)
#define log_warn(c, ...)  log_write(LOG_LEVEL_WARN, (c), __VA_ARGS__)
#define log_info(c, ...)                                                      \
    do {                                                                      \
        if (log_enabled(LOG_LEVEL_INFO)) {                                    \
            log_write(LOG_LEVEL_INFO, (c), __VA_ARGS__);                      \
        }                                                                     \
    } while (0)
#define log_debug(c, ...)                                                     \
    do {                                                                      \
        if (log_enabled(LOG_LEVEL_DEBUG)) {                                   \
            log_write(LOG_LEVEL_DEBUG, (c), __VA_ARGS__);                     \
        }                                                                     \
    } while (0)
// The same with fields f (LOG_FIELDS(...)); the level is checked first.
#define log_warn_with(c, f, ...) log_with(LOG_LEVEL_WARN, (c), (f), __VA_ARGS__)
#define log_info_with(c, f, ...)                                              \
    do {                                                                      \
        if (log_enabled(LOG_LEVEL_INFO)) {                                    \
            log_with(LOG_LEVEL_INFO, (c), (f), __VA_ARGS__);                  \
        }                                                                     \
    } while (0)
#define log_debug_with(c, f, ...)                                             \
    do {                                                                      \
        if (log_enabled(LOG_LEVEL_DEBUG)) {                                   \
            log_with(LOG_LEVEL_DEBUG, (c), (f), __VA_ARGS__);                 \
        }                                                                     \
    } while (0)

#endif
