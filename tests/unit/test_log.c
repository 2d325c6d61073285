// Unit tests for log: escaping of peer strings in text entries, JSON
// entries, one line per entry, the level filter.
#include "common/log.h"
#include "tests/harness/t.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// What one log_with call printed on stderr (caller frees).
static char *
s_capture_with(bool json, log_level_t level, const log_field_t *fields,
               const char *msg)
{
    char path[600];
    snprintf(path, sizeof path, "%s/stderr", t_tmpdir());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    log_init(LOG_LEVEL_INFO, json);
    log_with(level, "test.peer", fields, "hello from '%s'", msg);
    dup2(saved, STDERR_FILENO);
    close(saved);
    log_init(LOG_LEVEL_INFO, false);
    char *buf = calloc(1, 4096);
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, buf, 4095);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

// What one log_write call printed on stderr (caller frees).
static char *
s_capture(bool json, log_level_t level, const char *msg)
{
    return s_capture_with(json, level, NULL, msg);
}

static int
s_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) {
        n += *s == '\n';
    }
    return n;
}

static void
test_escape_control_bytes(void)
{
    char *e = log_escape("a\nb\rc\td\x1b[31me\x7f" "f");
    CHECK_STR(e, "a\\x0ab\\x0dc\\x09d\\x1b[31me\\x7ff");
    free(e);
    e = log_escape("\x01");
    CHECK_STR(e, "\\x01");
    free(e);
    e = log_escape("");
    CHECK_STR(e, "");
    free(e);
}

static void
test_escape_keeps_text_and_utf8(void)
{
    const char *s = "plain 'text' \\x0a, caf\xc3\xa9 \xe2\x9c\x93 ~";
    char *e = log_escape(s);
    CHECK_STR(e, s);
    free(e);
}

// U+0080..U+009F are the C1 controls: U+009B is CSI, which xterm and VTE
// obey in UTF-8 as they do ESC [.  A peer's string is valid UTF-8, so it can
// carry them.
static void
test_escape_c1_controls(void)
{
    char *e = log_escape("a\xc2\x9b" "31mb\xc2\x9d" "0;t\xc2\x9c" "c\xc2\x80");
    CHECK_STR(e, "a\\xc2\\x9b31mb\\xc2\\x9d0;t\\xc2\\x9cc\\xc2\\x80");
    free(e);
    // Neighbours are text: U+00A0 (no-break space), U+00DB (a 0x9b
    // continuation byte), and a lone 0xc2 at the end.
    const char *s = "\xc2\xa0 \xc3\x9b \xc2";
    e = log_escape(s);
    CHECK_STR(e, s);
    free(e);
}

static void
test_text_entry_cannot_forge_a_line(void)
{
    char *out = s_capture(false, LOG_LEVEL_WARN,
                          "x\n2026-01-01T00:00:00Z ERROR broker: forged");
    CHECK_INT(s_lines(out), 1);
    CHECK_HAS(out, " WARN test.peer: hello from 'x\\x0a2026-01-01");
    CHECK(strstr(out, "\nERROR") == NULL);
    free(out);
}

static void
test_text_entry_has_no_terminal_escape(void)
{
    char *out = s_capture(false, LOG_LEVEL_INFO, "\x1b]0;pwned\x07\x1b[2J");
    CHECK(strchr(out, 0x1b) == NULL);
    CHECK(strchr(out, 0x07) == NULL);
    CHECK_HAS(out, "'\\x1b]0;pwned\\x07\\x1b[2J'");
    free(out);
}

static void
test_json_entry_escapes(void)
{
    char *out = s_capture(true, LOG_LEVEL_INFO, "a\nb\x1b[1m");
    CHECK_INT(s_lines(out), 1);
    CHECK(strchr(out, 0x1b) == NULL);
    CHECK_HAS(out, "\"level\":\"info\"");
    CHECK_HAS(out, "a\\nb\\u001B[1m");
    free(out);
}

// JSON lines are read in terminals too (tail -f): C1 controls travel as
// \u escapes, which every JSON reader turns back into the same text.
static void
test_json_entry_escapes_c1(void)
{
    char *out = s_capture(true, LOG_LEVEL_INFO, "a\xc2\x9b" "31mb \xc3\xa9");
    CHECK(strstr(out, "\xc2\x9b") == NULL);
    CHECK_HAS(out, "a\\u009b31mb \xc3\xa9");
    free(out);
}

// Fields become members of the JSON object, in order, after msg; strings
// escaped like the message, integers as numbers; a NULL string is left
// out.
static void
test_json_fields(void)
{
    char *out = s_capture_with(
        true, LOG_LEVEL_INFO,
        LOG_FIELDS(LOG_INT("plan", 42), LOG_STR("task", "b\"u\nild"),
                   LOG_INT("token", 9007199254740993LL),
                   LOG_STR("drone", NULL), LOG_STR("msg", "forged")),
        "x");
    CHECK_INT(s_lines(out), 1);
    CHECK_HAS(out, "\"msg\":\"hello from 'x'\",\"plan\":42,"
                   "\"task\":\"b\\\"u\\nild\",\"token\":9007199254740993}"
                   "\n");
    // A field cannot replace a member of the entry itself.
    CHECK(strstr(out, "forged") == NULL);
    free(out);
}

// The text form does not change: the message says it all.
static void
test_text_ignores_fields(void)
{
    char *out = s_capture_with(false, LOG_LEVEL_INFO,
                               LOG_FIELDS(LOG_INT("plan", 4242)), "x");
    // After the timestamp, exactly the sentence.
    CHECK_STR(strchr(out, ' '), " INFO test.peer: hello from 'x'\n");
    free(out);
}

static void
test_level_filter(void)
{
    char *out = s_capture(false, LOG_LEVEL_DEBUG, "quiet");
    CHECK_STR(out, "");
    free(out);
}

static const t_case_t t_cases[] = {
    T(test_escape_control_bytes),
    T(test_escape_keeps_text_and_utf8),
    T(test_escape_c1_controls),
    T(test_text_entry_cannot_forge_a_line),
    T(test_text_entry_has_no_terminal_escape),
    T(test_json_entry_escapes),
    T(test_json_entry_escapes_c1),
    T(test_json_fields),
    T(test_text_ignores_fields),
    T(test_level_filter),
    {0},
};

T_MAIN(t_cases)
