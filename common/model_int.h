// model_int.h: what model.c (the transport) and model_api.c (the two wire
// formats) share.  Not for other modules.
#ifndef WAGGLE_MODEL_INT_H
#define WAGGLE_MODEL_INT_H

#include "common/model.h"

#include <stdbool.h>
#include <stddef.h>

// One API's wire format: pure functions, no I/O.
typedef struct {
    const char *path;           // appended to the base URL
    // The request body; caller frees.  json_mode is ignored by APIs
    // without it.
    char *(*body)(const model_config_t *cfg, const model_request_t *req,
                  bool json_mode);
    // The header that carries key ("Authorization: Bearer KEY"); caller
    // frees and wipes it.
    char *(*auth)(const char *key);
    const char *extra_header;   // NULL or one more fixed header
    // Fills reply from a 200 body.  Returns MODEL_OK, MODEL_E_LENGTH (the
    // cut reply kept) or MODEL_E_REPLY, with a phrase in why ("has no
    // choices") for the caller to prefix with the URL.
    model_rc_t (*parse)(const char *body, size_t len, model_reply_t *reply,
                        char *why, size_t whylen);
} model_api_ops_t;

const model_api_ops_t *model_api_ops(model_api_t api);

#endif
