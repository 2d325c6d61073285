// llm: the fake model server's lifecycle for tests.
#include "tests/harness/llm.h"

#include "tests/harness/proc.h"
#include "tests/harness/t.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
llm_start(llm_t *s, const char *dir, const char *script)
{
    char path[512];
    snprintf(path, sizeof path, "%s/llm-script.json", dir);
    snprintf(s->log, sizeof s->log, "%s/llm-requests.log", dir);
    snprintf(s->err, sizeof s->err, "%s/llm.log", dir);
    remove(s->log);
    if (t_write_file(path, script) < 0 || t_write_file(s->log, "") < 0) {
        fprintf(stderr, "llm: cannot write into '%s'\n", dir);
        return -1;
    }
    char bin[512];
    snprintf(bin, sizeof bin, "%s/tests/fake_llm", WAGGLE_BUILD_DIR);
    char *argv[] = {bin, path, s->log, NULL};
    int out = -1;
    s->pid = proc_spawn(argv, s->err, &out);
    char line[128];
    if (s->pid < 0 || proc_read_line(out, "READY ", 10000, line,
                                     sizeof line) < 0) {
        fprintf(stderr, "llm: fake_llm did not start (see '%s')\n", s->err);
        if (out >= 0) {
            close(out);
        }
        llm_stop(s);
        return -1;
    }
    close(out);
    // A proxy set in the environment must not carry loopback requests (the
    // client honours http_proxy, as curl does); the architects inherit it.
    setenv("no_proxy", "127.0.0.1,localhost", 1);
    setenv("NO_PROXY", "127.0.0.1,localhost", 1);
    s->port = atoi(line + 6);
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:%d/v1", s->port);
    return 0;
}

void
llm_stop(llm_t *s)
{
    if (s->pid > 0) {
        proc_stop(s->pid, 2000);
    }
    s->pid = 0;
}

char *
llm_requests(const llm_t *s)
{
    char *text = t_read_file(s->log, NULL);
    return text ? text : strdup("");
}

int
llm_count(const llm_t *s)
{
    char *text = llm_requests(s);
    int n = 0;
    for (const char *p = text; (p = strchr(p, '\n')); p++) {
        n++;
    }
    free(text);
    return n;
}
