// cfg: option tables, environment and flags into one config struct.
#include "common/cfg.h"

#include "common/endpoint.h"
#include "common/xalloc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#ifndef WAGGLE_VERSION
#define WAGGLE_VERSION "unknown"
#endif

static int
s_parse_bool(const char *s, bool *out)
{
    if (!strcmp(s, "1") || !strcmp(s, "true") || !strcmp(s, "yes") ||
        !strcmp(s, "on")) {
        *out = true;
    } else if (!strcmp(s, "0") || !strcmp(s, "false") || !strcmp(s, "no") ||
               !strcmp(s, "off")) {
        *out = false;
    } else {
        return -1;
    }
    return 0;
}

// Adds text to a CFG_LIST field: "a,b" + "c" -> "a,b,c".
static void
s_append(char **p, const char *text)
{
    char *joined = *p && **p ? xasprintf("%s,%s", *p, text) : xstrdup(text);
    free(*p);
    *p = joined;
}

// Stores text into the option's field.  'where' names the source for errors.
static int
s_set(const cfg_option_t *o, void *conf, const char *text, const char *where,
      char *err, size_t errlen)
{
    char *field = (char *) conf + o->offset;
    if (o->type == CFG_ENDPOINT) {
        char why[400];
        if (endpoint_check(text, why, sizeof why) < 0) {
            snprintf(err, errlen, "%s: %s", where, why);
            return -1;
        }
    }
    if (o->type == CFG_STR || o->type == CFG_LIST ||
        o->type == CFG_ENDPOINT) {
        char **p = (char **) field;
        free(*p);
        *p = xstrdup(text);
        return 0;
    }
    if (o->type == CFG_BOOL) {
        if (s_parse_bool(text, (bool *) field) < 0) {
            snprintf(err, errlen, "%s: '%s' is not a boolean (use 1/0)",
                     where, text);
            return -1;
        }
        return 0;
    }
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end != '\0') {
        snprintf(err, errlen, "%s: '%s' is not a whole number", where, text);
        return -1;
    }
    if (v < o->min || v > o->max) {
        snprintf(err, errlen, "%s: %lld is out of range [%lld, %lld]", where,
                 v, (long long) o->min, (long long) o->max);
        return -1;
    }
    *(int64_t *) field = v;
    return 0;
}

int
cfg_load_defaults(const cfg_option_t *opts, void *conf, char *err,
                  size_t errlen)
{
    for (const cfg_option_t *o = opts; o->flag; o++) {
        if (o->def && s_set(o, conf, o->def, o->flag, err, errlen) < 0) {
            return -1;
        }
    }
    for (const cfg_option_t *o = opts; o->flag; o++) {
        const char *v = o->env ? getenv(o->env) : NULL;
        if (v && *v && s_set(o, conf, v, o->env, err, errlen) < 0) {
            return -1;
        }
    }
    return 0;
}

static const cfg_option_t *
s_find(const cfg_option_t *opts, const char *name, size_t len)
{
    for (const cfg_option_t *o = opts; o->flag; o++) {
        if (strlen(o->flag) == len && strncmp(o->flag, name, len) == 0) {
            return o;
        }
    }
    return NULL;
}

// cfg_load_args, and with version not NULL it also takes --version.
static int
s_load_args(const cfg_option_t *opts, void *conf, int argc, char **argv,
            int first, int *next, bool *help, bool *version, char *err,
            size_t errlen)
{
    int i = first;
    uint64_t listed = 0;  // CFG_LIST options already given as a flag
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            *help = true;
            continue;
        }
        if (version && !strcmp(a, "--version")) {
            *version = true;
            continue;
        }
        if (!strcmp(a, "--")) {
            i++;
            break;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            break;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t) (eq - name) : strlen(name);
        const cfg_option_t *o = s_find(opts, name, len);
        if (!o) {
            snprintf(err, errlen, "unknown option '--%.*s' (see --help)",
                     (int) len, name);
            return -1;
        }
        char where[96];
        snprintf(where, sizeof where, "--%s", o->flag);
        const char *val = eq ? eq + 1 : NULL;
        if (!val && o->type == CFG_BOOL) {
            val = "1";
        } else if (!val) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "%s needs a value (%s)", where,
                         o->metavar ? o->metavar : "VALUE");
                return -1;
            }
            val = argv[++i];
        }
        uint64_t bit = 1ull << ((size_t) (o - opts) % 64);
        if (o->type == CFG_LIST && (listed & bit)) {
            s_append((char **) ((char *) conf + o->offset), val);
        } else if (s_set(o, conf, val, where, err, errlen) < 0) {
            return -1;
        }
        listed |= o->type == CFG_LIST ? bit : 0;
    }
    *next = i;
    return 0;
}

int
cfg_load_args(const cfg_option_t *opts, void *conf, int argc, char **argv,
              int first, int *next, bool *help, char *err, size_t errlen)
{
    return s_load_args(opts, conf, argc, argv, first, next, help, NULL, err,
                       errlen);
}

int
cfg_load(const cfg_option_t *opts, void *conf, int argc, char **argv,
         int *next, bool *help, char *err, size_t errlen)
{
    if (cfg_load_defaults(opts, conf, err, errlen) < 0) {
        return -1;
    }
    return cfg_load_args(opts, conf, argc, argv, 1, next, help, err, errlen);
}

int
cfg_main(const cfg_program_t *prog, void *conf, int argc, char **argv,
         int *next)
{
    char err[512];
    bool help = false, version = false;
    if (cfg_load_defaults(prog->opts, conf, err, sizeof err) < 0 ||
        s_load_args(prog->opts, conf, argc, argv, 1, next, &help, &version,
                    err, sizeof err) < 0) {
        if (prog->usage_error) {
            prog->usage_error(conf, err);
        } else {
            fprintf(stderr, "%s: %s\n", prog->name, err);
        }
        cfg_release(prog->opts, conf);
        return CFG_EXIT_USAGE;
    }
    if (!help && !version) {
        return CFG_RUN;
    }
    if (help) {
        prog->usage(stdout);
    } else {
        printf("%s %s\n", prog->name, WAGGLE_VERSION);
    }
    cfg_release(prog->opts, conf);
    return 0;
}

int
cfg_usage_error(const cfg_program_t *prog, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog->name);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see --help)\n");
    va_end(ap);
    return CFG_EXIT_USAGE;
}

void
cfg_usage(FILE *out, const cfg_option_t *opts)
{
    for (const cfg_option_t *o = opts; o->flag; o++) {
        char left[64];
        if (o->type == CFG_BOOL) {
            snprintf(left, sizeof left, "--%s", o->flag);
        } else {
            snprintf(left, sizeof left, "--%s %s", o->flag,
                     o->metavar ? o->metavar : "VALUE");
        }
        fprintf(out, "  %-28s %s\n", left, o->help);
        bool def = o->def && *o->def;
        if (o->env || def) {
            fprintf(out, "  %-28s", "");
            if (o->env) {
                fprintf(out, " env %s", o->env);
            }
            if (def) {
                fprintf(out, "%sdefault %s", o->env ? ", " : " ", o->def);
            }
            fputc('\n', out);
        }
    }
}

void
cfg_release(const cfg_option_t *opts, void *conf)
{
    for (const cfg_option_t *o = opts; o->flag; o++) {
        if (o->type == CFG_STR || o->type == CFG_LIST ||
            o->type == CFG_ENDPOINT) {
            char **p = (char **) ((char *) conf + o->offset);
            free(*p);
            *p = NULL;
        }
    }
}
