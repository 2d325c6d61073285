// cfg: one table of options per program -> one filled config struct.
//
// Each option has a long flag, an environment variable, a default, a type
// and a help line.  cfg_load() applies default, then environment, then flags
// (flag > environment > default) into the caller's struct, and cfg_usage()
// prints --help from the same table, so the three never disagree.
// Parsing stops at the first argument that is not an option (a subcommand).
// cfg_main() is the whole command-line prologue of a program's main():
// --help, --version and usage errors, which exit 64 (EX_USAGE) everywhere.
#ifndef WAGGLE_CFG_H
#define WAGGLE_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    CFG_STR,   // char * (owned by the struct; cfg_release frees)
    CFG_INT,   // int64_t within [min, max]
    CFG_BOOL,  // bool; a flag without value sets true, env takes 1/0/true/false
    CFG_LIST,  // char *, a comma list: the environment gives one; a flag may
               // repeat, its first use replaces the list, the others append
    CFG_ENDPOINT, // char * like CFG_STR; endpoint_check() must accept it
} cfg_type_t;

// Exit status for a usage error in every program: a bad option, value or
// argument, from the command line or the environment (sysexits' EX_USAGE).
#define CFG_EXIT_USAGE 64
// cfg_main() returns it when main() should go on and run.
#define CFG_RUN (-1)

typedef struct {
    const char *flag;     // long name without dashes: "bind" -> --bind
    const char *env;      // environment variable, or NULL
    cfg_type_t type;      // how to parse it
    size_t offset;        // offsetof(struct ..., field)
    const char *def;      // default as text, or NULL (no default)
    const char *metavar;  // shown in --help: "ENDPOINT"
    const char *help;     // one line
    int64_t min, max;     // bounds for CFG_INT
} cfg_option_t;

#define CFG_END {NULL, NULL, CFG_STR, 0, NULL, NULL, NULL, 0, 0}

typedef struct {
    const char *name;          // "waggle-broker": for messages and --version
    const cfg_option_t *opts;  // the program's option table
    void (*usage)(FILE *out);  // prints the whole --help text
    // Reports a usage error given the conf read so far (the architect's
    // --json), or NULL: "NAME: message" on stderr.
    void (*usage_error)(void *conf, const char *message);
} cfg_program_t;

// A program's command line: fills conf from defaults, then the environment,
// then flags.  --help prints prog->usage to stdout; --version prints
// "NAME VERSION".  Returns CFG_RUN with *next at the first argument that is
// not an option, or the status main() should exit with: 0 after --help or
// --version, CFG_EXIT_USAGE after an error (given to prog->usage_error, by
// default printed to stderr as "NAME: error").  conf's strings are released
// unless it returns CFG_RUN.
int cfg_main(const cfg_program_t *prog, void *conf, int argc, char **argv,
             int *next);
// Prints "NAME: message (see --help)" to stderr and returns CFG_EXIT_USAGE,
// for the checks main() makes after cfg_main().
int cfg_usage_error(const cfg_program_t *prog, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

// Fills conf from defaults, then the environment, then argv[1..].  On return
// *next is the index of the first non-option argument.  Recognises --help
// and -h by setting *help.  Returns 0, or -1 with a message in err such as
// "--lease-ms: '12x' is not a whole number".
int cfg_load(const cfg_option_t *opts, void *conf, int argc, char **argv,
             int *next, bool *help, char *err, size_t errlen);
// Same, but starts at argv[first] and does not read defaults or env: for a
// subcommand's own options.
int cfg_load_args(const cfg_option_t *opts, void *conf, int argc, char **argv,
                  int first, int *next, bool *help, char *err, size_t errlen);
// Applies defaults and environment only.
int cfg_load_defaults(const cfg_option_t *opts, void *conf, char *err,
                      size_t errlen);
// Prints the option table (flag, metavar, env, default, help).
void cfg_usage(FILE *out, const cfg_option_t *opts);
// Frees the CFG_STR, CFG_LIST and CFG_ENDPOINT fields of conf.
void cfg_release(const cfg_option_t *opts, void *conf);

#endif
