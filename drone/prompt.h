// prompt: prompt tasks on the drone (issue 7): the model call runs as a
// child through the same runner as a run task, so heartbeats go on and a
// STOP, a timeout or a lost lease kills it like any task.
//
// The child is this program again ("waggle-drone model-call", exec'd as
// the file /proc/self/exe named when the drone started — a task's own
// /proc/self/exe is its init's — so it confines like any task: the task
// user, the PID namespace; the network is shared).  Its stdin is a sealed memfd holding
// the key's line, then one JSON request: the key never reaches argv, the
// environment, a file or a log.  It writes the reply text to stdout (the
// task's output) and, on stderr, only lines it makes itself: at most one
// "waggle-error SENTENCE" and then, last, "waggle-usage prompt_tokens=N
// completion_tokens=M" — the reply never goes to stderr and a sentence
// holds no newline, so a reply cannot forge usage.
#ifndef WAGGLE_PROMPT_H
#define WAGGLE_PROMPT_H

#include "common/model.h"
#include "proto/proto.h"

#include <stdbool.h>
#include <stdint.h>

#define PROMPT_EXE "/proc/self/exe"  // read once (drone.c)
#define PROMPT_MODE "model-call"
// stderr kept for a prompt task at least: its last lines are the report.
#define PROMPT_ERR_CAP 4096

typedef struct {
    bool on;                    // a model is configured
    model_api_t api;
    char *url;                  // owned
    char *model;                // owned
    char *key;                  // NULL or the key (owned; wiped on close)
    int64_t timeout_ms;         // per HTTP request
} prompt_model_t;

// From the drone's --model-* settings (borrowed strings; key_file is read
// here).  Returns 0, or -1 with err (a model URL without a model, a bad
// API name, an unreadable key file).
int prompt_model_open(prompt_model_t *m, const char *api, const char *url,
                      const char *model, const char *key_file,
                      int64_t timeout_s, char *err, size_t errlen);
void prompt_model_close(prompt_model_t *m);

// The request of t (its prompt expanded from its inputs) in a sealed
// memfd at offset 0, for the child's stdin.  Returns the descriptor
// (caller closes), or -1 with *why a sentence (caller frees): a truncated
// input, a template naming no input, no memory.
int prompt_request_fd(const prompt_model_t *m, const proto_task_t *t,
                      char **why);

// The child: reads the request on stdin, calls the model, reports.
// Returns the exit status: 0 a reply, 1 the call failed, 2 a bad request.
int prompt_call_main(void);

// Reads the child's report from pr->err into pr: the token counts, and in
// place of "exited with status 1" the sentence saying why the call failed.
void prompt_result(proto_result_t *pr);

#endif
