// amend: `amend PLAN FILE` sends an amendment (README "Amending a running
// plan") to the broker, which merges, validates and applies it in one
// transaction; this prints what it did.  replan.c sends what the model
// wrote the same way (arch_amend_send).
#include "architect/arch.h"

#include "common/json.h"
#include "common/xalloc.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static void
s_list(const char *what, const proto_strv_t *v)
{
    if (v->count == 0) {
        return;
    }
    printf("  %s:", what);
    for (size_t i = 0; i < v->count; i++) {
        printf("%s %s", i ? "," : "", v->items[i]);
    }
    printf("\n");
}

static jnode_t *
s_ids(const proto_strv_t *v)
{
    jnode_t *arr = json_arr_new();
    for (size_t i = 0; i < v->count; i++) {
        json_arr_push_str(arr, v->items[i]);
    }
    return arr;
}

static void
s_print_json(const proto_amend_ok_t *ok)
{
    jnode_t *o = json_obj_new();
    json_obj_set_int(o, "plan", ok->plan);
    const struct {
        const char *key;
        const proto_strv_t *v;
    } lists[] = {{"added", &ok->added}, {"cancelled", &ok->cancelled},
                 {"replaced", &ok->replaced}, {"warnings", &ok->warnings}};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        jnode_t *arr = s_ids(lists[i].v);
        json_obj_set_node(o, lists[i].key, &arr);
    }
    char *text = json_dump(o, true);
    printf("%s\n", text);
    free(text);
    json_destroy(&o);
}

int
arch_amend_send(arch_t *a, int64_t plan, char **text, bool json)
{
    int rc = arch_connect(a);
    proto_msg_t *reply = NULL;
    if (rc == 0) {
        proto_msg_t *req = proto_msg_new(PROTO_MSG_AMEND);
        req->u.amend.plan = plan;
        req->u.amend.amendment = *text;
        *text = NULL;
        rc = arch_call(a, &req, &reply);
    }
    if (rc != 0) {
        return rc;
    }
    const proto_amend_ok_t *ok = &reply->u.amend_ok;
    for (size_t i = 0; i < ok->warnings.count; i++) {
        fprintf(stderr, "warning: %s\n", ok->warnings.items[i]);
    }
    if (json) {
        s_print_json(ok);
    } else {
        printf("plan %lld amended\n", (long long) plan);
        s_list("added", &ok->added);
        s_list("cancelled", &ok->cancelled);
        s_list("replaced", &ok->replaced);
    }
    proto_msg_destroy(&reply);
    return ARCH_EXIT_OK;
}

typedef struct {
    bool json;
} s_amend_opts_t;

static const cfg_option_t s_amend_opts[] = {
    {"json", NULL, CFG_BOOL, offsetof(s_amend_opts_t, json), NULL, NULL,
     "print what was done as one JSON object", 0, 0},
    CFG_END,
};

int
cmd_amend(arch_t *a, int argc, char **argv)
{
    s_amend_opts_t o = {0};
    arch_pos_t pos;
    int rc = arch_opts(a, s_amend_opts, &o, argc, argv, &pos,
                       "amend PLAN FILE [--json]\n\nSends the amendment FILE "
                       "(- for stdin) to a running plan:\n"
                       "  {\"add\": [TASK, ...], \"cancel\": [\"ID\", ...], "
                       "\"replace\": [TASK, ...]}\n"
                       "Added tasks may need any task of the plan and each "
                       "other; only tasks that\nhave not started can be "
                       "cancelled or replaced.  The broker validates the\n"
                       "amended plan as a whole and applies it in one "
                       "transaction.");
    int64_t plan;
    if (rc || !arch_args(a, &pos, 2, 2, "amend PLAN FILE [--json]") ||
        arch_parse_plan(a, pos.items[0], &plan) < 0) {
        return rc > 0 ? ARCH_EXIT_OK : ARCH_EXIT_USAGE;
    }
    a->json = a->json || o.json;
    size_t len = 0;
    char *text = arch_read_file(a, pos.items[1], &len);
    if (!text) {
        return ARCH_EXIT_FAILED;
    }
    if (strlen(text) != len) {
        free(text);
        return arch_fail(a, ARCH_EXIT_FAILED, "invalid",
                         "amendment '%s' holds a NUL byte", pos.items[1]);
    }
    rc = arch_amend_send(a, plan, &text, o.json);
    free(text);
    return rc;
}
