// fuzz_json: json_doc (the arena parser workplans go through) against
// jansson (json_parse), on any bytes.  They must agree on accepting, and an
// accepted document written back (json_out_jval) must be the bytes
// json_dump gives for jansson's tree: same values, same member order.
// Memory errors are ASan's to find.
#include "common/json.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *) data;
    char e1[256] = "", e2[256] = "";
    jnode_t *j = json_parse(text, size, e1, sizeof e1);
    jdoc_t *d = jdoc_parse(text, size, e2, sizeof e2);
    // The one difference on purpose: jansson skips a NUL byte right after a
    // number, json_doc refuses any NUL outside a string (json.h).
    if (j && !d && memchr(text, '\0', size) && strstr(e2, "NUL byte")) {
        json_destroy(&j);
        return 0;
    }
    if ((j == NULL) != (d == NULL) || strcmp(e1, e2) != 0) {
        fprintf(stderr, "disagree: jansson %s '%s', json_doc %s '%s'\n",
                j ? "accepts" : "refuses", e1, d ? "accepts" : "refuses", e2);
        abort();
    }
    if (j) {
        char *want = json_dump(j, false);
        json_out_t o = {0};
        json_out_jval(&o, jdoc_root(d));
        char *got = json_out_take(&o, NULL);
        if (strcmp(want, got) != 0) {
            fprintf(stderr, "differ:\n  jansson  %s\n  json_doc %s\n", want,
                    got);
            abort();
        }
        free(want);
        free(got);
    }
    json_destroy(&j);
    jdoc_destroy(&d);
    return 0;
}
