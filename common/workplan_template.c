// workplan_template: how a task receives its needs' outputs.  Owns the
// {{id.output}} scanner (used by validation in workplan_graph.c and by
// expansion here), workplan_expand() and workplan_input_var(), the
// WAGGLE_INPUT_<ID> name of a need.
//
// A template is a sequence of tokens: plain text, "{{{{" (a literal "{{"),
// {{ID.output}}, and the errors: anything else inside {{ }}, or a {{ with
// no }} after it.  The scanner never allocates and never checks an id
// against a task's needs (workplan_graph.c does, at validation); expansion
// looks ids up only among the values it is given and never fetches outputs
// itself.  Pure: no I/O, no logging.
#include "common/workplan_int.h"

#include "common/xalloc.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define S_INPUT_PREFIX "WAGGLE_INPUT_"

// --- the scanner -----------------------------------------------------------

const char *
wp_tok_next(const char *s, wp_tok_t *tok)
{
    static const char suffix[] = ".output";
    const size_t slen = sizeof suffix - 1;
    *tok = (wp_tok_t){.kind = WP_TOK_TEXT, .p = s};
    const char *open = strstr(s, "{{");
    if (!*s || open != s) {
        tok->len = open ? (size_t) (open - s) : strlen(s);
        tok->kind = tok->len ? WP_TOK_TEXT : WP_TOK_END;
        return s + tok->len;
    }
    if (strncmp(s + 2, "{{", 2) == 0) {
        tok->len = 2;       // "{{{{" is a literal "{{"
        return s + 4;
    }
    const char *close = strstr(s + 2, "}}");
    if (!close) {
        tok->kind = WP_TOK_UNCLOSED;
        tok->len = strlen(s);
        return s + tok->len;
    }
    tok->len = (size_t) (close + 2 - s);
    size_t inner = (size_t) (close - (s + 2));
    tok->kind = WP_TOK_BAD;
    if (inner > slen && memcmp(close - slen, suffix, slen) == 0
        && wp_id_ok(s + 2, inner - slen)) {
        tok->kind = WP_TOK_REF;
        tok->id = s + 2;
        tok->id_len = inner - slen;
    }
    return close + 2;
}

char *
wp_tok_error(const wp_tok_t *tok)
{
    char shown[WP_SHOW_MAX + 4];
    if (tok->kind == WP_TOK_UNCLOSED) {
        return xstrdup("unclosed '{{' (write {{{{ for a literal {{)");
    }
    return xasprintf("'%s' is not a placeholder (write {{ID.output}}, "
                     "or {{{{ for a literal {{)",
                     wp_show(shown, tok->p, tok->len));
}

// --- expansion -------------------------------------------------------------

char *
workplan_input_var(const char *id)
{
    assert(id);
    size_t plen = strlen(S_INPUT_PREFIX), n = strlen(id);
    char *var = xmalloc(plen + n + 1);
    memcpy(var, S_INPUT_PREFIX, plen);
    for (size_t i = 0; i <= n; i++) {
        var[plen + i] = wp_fold(id[i], true);
    }
    return var;
}

// Appends the value for tok (a WP_TOK_REF) to b, or returns a new sentence.
static char *
s_expand_ref(wp_buf_t *b, const wp_tok_t *tok, const wp_value_t *values,
             size_t n, size_t max_value)
{
    int il = (int) tok->id_len;
    const wp_value_t *v = NULL;
    for (size_t i = 0; i < n && !v; i++) {
        if (strncmp(values[i].id, tok->id, tok->id_len) == 0
            && values[i].id[tok->id_len] == '\0') {
            v = &values[i];
        }
    }
    if (!v) {
        return xasprintf("%.*s: '%.*s' is not among the task's needs",
                         (int) tok->len, tok->p, il, tok->id);
    }
    size_t len = v->len;
    if (len > 0 && v->data[len - 1] == '\n') {
        len--;
    }
    if (v->truncated) {
        return xasprintf("input '%.*s' was truncated at the output cap", il,
                         tok->id);
    }
    if (len > 0 && memchr(v->data, '\0', len)) {
        return xasprintf("input '%.*s' holds a NUL byte", il, tok->id);
    }
    if (max_value > 0 && len > max_value) {
        return xasprintf("input '%.*s' is %zu bytes; at most %zu may go into "
                         "argv",
                         il, tok->id, len, max_value);
    }
    wp_buf_add(b, (const char *) v->data, len);
    return NULL;
}

int
workplan_expand(const char *tmpl, const wp_value_t *values, size_t n,
                size_t max_value, char **out, char **err)
{
    assert(tmpl && out && err && (values || n == 0));
    *out = NULL;
    *err = NULL;
    wp_buf_t b = {0};
    wp_tok_t tok;
    for (const char *s = wp_tok_next(tmpl, &tok); tok.kind != WP_TOK_END;
         s = wp_tok_next(s, &tok)) {
        if (tok.kind == WP_TOK_TEXT) {
            wp_buf_add(&b, tok.p, tok.len);
        } else if (tok.kind == WP_TOK_REF) {
            *err = s_expand_ref(&b, &tok, values, n, max_value);
        } else {
            *err = wp_tok_error(&tok);
        }
        if (*err) {
            free(b.p);
            return -1;
        }
    }
    *out = wp_buf_take(&b);
    return 0;
}
