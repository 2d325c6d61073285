// llm: starting and stopping tests/harness/fake_llm for a test.
#ifndef WAGGLE_LLM_H
#define WAGGLE_LLM_H

#include <sys/types.h>

typedef struct {
    pid_t pid;
    int port;
    char url[64];           // "http://127.0.0.1:PORT/v1"
    char log[512];          // request bodies, one a line
    char err[512];          // the server's stderr
} llm_t;

// Writes script (a JSON array of steps, see fake_llm.c) into dir, starts
// the server and waits for READY.  Returns 0, or -1 (why on stderr).
int llm_start(llm_t *s, const char *dir, const char *script);
// Stops it (SIGTERM, then SIGKILL); a no-op when not started.
void llm_stop(llm_t *s);
// The request log (caller frees); "" when nothing came.
char *llm_requests(const llm_t *s);
// How many requests the server got.
int llm_count(const llm_t *s);

#endif
