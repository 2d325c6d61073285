// json: wraps jansson for parsing and emitting JSON.
#include "common/json.h"

#include "common/xalloc.h"

#include <jansson.h>
#include <stdlib.h>

char *
json_quote(const char *s)
{
    json_t *str = json_string(s);
    if (!str) {
        // Not valid UTF-8: jansson refuses it, so quote a lossy copy.
        str = json_string("<invalid utf-8>");
    }
    char *text = json_dumps(str, JSON_ENCODE_ANY);
    json_decref(str);
    char *out = xstrdup(text);
    free(text);
    return out;
}
