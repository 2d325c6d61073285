// fuzz_codec: libFuzzer target for the decoder.
//
// Any input must decode cleanly or fail with a filled proto_error_t; a frame
// that decodes must survive encode -> decode -> encode unchanged.  abort()
// rather than assert(), so the checks hold in NDEBUG builds too.
//   build-fuzz/tests/fuzz/fuzz_codec -max_total_time=120 CORPUS_DIR
#include "proto/proto.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
s_roundtrip(const proto_msg_t *msg, const proto_limits_t *lim)
{
    uint8_t *buf, *again;
    size_t len, len2;
    proto_msg_t *copy = NULL;
    proto_error_t err;
    proto_encode(msg, &buf, &len);
    if (proto_decode(buf, len, lim, &copy, &err) != 0 || !copy ||
        copy->cmd != msg->cmd || copy->req != msg->req) {
        abort();
    }
    proto_encode(copy, &again, &len2);
    if (len != len2 || memcmp(buf, again, len) != 0) {
        abort();
    }
    free(again);
    free(buf);
    proto_msg_destroy(&copy);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    proto_limits_t lim;
    proto_msg_t *msg = NULL;
    proto_error_t err;
    proto_limits_default(&lim);
    if (proto_decode(data, size, &lim, &msg, &err) != 0) {
        if (msg || err.code == PROTO_E_NONE || !err.message[0] ||
            !memchr(err.message, '\0', sizeof err.message)) {
            abort();
        }
        return 0;
    }
    s_roundtrip(msg, &lim);
    proto_msg_destroy(&msg);
    return 0;
}
