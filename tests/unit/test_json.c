// test_json: the jansson wrapper (parse, read, build, dump, quote).
#include "common/json.h"

#include "tests/harness/t.h"

#include <math.h>

static jnode_t *
s_parse(const char *text, char *err, size_t errlen)
{
    return json_parse(text, strlen(text), err, errlen);
}

static void
test_parse_error_line_column(void)
{
    char err[128] = "";
    jnode_t *root = s_parse("{\n  \"a\": 1,\n  x}", err, sizeof err);
    CHECK(root == NULL);
    CHECK_STR(err, "line 3, column 3: string or '}' expected near 'x'");

    root = s_parse("[1, 2", err, sizeof err);
    CHECK(root == NULL);
    CHECK_HAS(err, "line 1, column 5: ");

    root = s_parse("{\"a\": 1} trailing", err, sizeof err);
    CHECK(root == NULL);
    CHECK_HAS(err, "end of file expected");

    root = s_parse("", err, sizeof err);
    CHECK(root == NULL);
    CHECK_HAS(err, "line 1, column 0: ");
    // A NULL err is allowed with errlen 0.
    CHECK(json_parse("{", 1, NULL, 0) == NULL);
}

static void
test_duplicate_keys_refused(void)
{
    char err[128] = "";
    CHECK(s_parse("{\"a\": 1, \"a\": 2}", err, sizeof err) == NULL);
    CHECK_HAS(err, "line 1, column ");
    CHECK_HAS(err, "duplicate object key");
    // Nested objects too; the same key in sibling objects is fine.
    CHECK(s_parse("{\"o\": {\"k\": 1, \"k\": 1}}", err, sizeof err) == NULL);
    jnode_t *ok = s_parse("[{\"k\": 1}, {\"k\": 2}]", err, sizeof err);
    CHECK(ok != NULL);
    json_destroy(&ok);
    CHECK(ok == NULL);
}

static void
test_nul_and_bad_utf8_refused(void)
{
    char err[128] = "";
    CHECK(s_parse("[\"a\\u0000b\"]", err, sizeof err) == NULL);
    CHECK_HAS(err, "\\u0000 is not allowed in a string");
    CHECK(s_parse("[\"\xff\"]", err, sizeof err) == NULL);
    CHECK_HAS(err, "line 1, column ");
    // Input with a raw NUL byte inside the given length.
    CHECK(json_parse("[1]\0", 4, err, sizeof err) == NULL);
}

static void
test_read_types(void)
{
    const char *text = "{\"s\": \"hi\", \"i\": -42, \"r\": 1.5, \"t\": true,"
                       " \"f\": false, \"n\": null, \"a\": [1, \"x\"],"
                       " \"o\": {}, \"big\": 9007199254740993}";
    char err[128];
    jnode_t *root = s_parse(text, err, sizeof err);
    REQUIRE(root);
    CHECK_INT(json_type_of(root), JSON_T_OBJECT);
    CHECK_INT(json_obj_size(root), 9);
    CHECK_STR(json_str(json_obj_get(root, "s")), "hi");
    CHECK_INT(json_str_len(json_obj_get(root, "s")), 2);
    CHECK_INT(json_int(json_obj_get(root, "i")), -42);
    CHECK_INT(json_int(json_obj_get(root, "big")), 9007199254740993LL);
    CHECK_INT(json_type_of(json_obj_get(root, "r")), JSON_T_REAL);
    CHECK(json_num(json_obj_get(root, "r")) == 1.5);
    CHECK(json_num(json_obj_get(root, "i")) == -42.0);
    CHECK(json_bool(json_obj_get(root, "t")));
    CHECK(!json_bool(json_obj_get(root, "f")));
    CHECK_INT(json_type_of(json_obj_get(root, "f")), JSON_T_BOOL);
    CHECK_INT(json_type_of(json_obj_get(root, "n")), JSON_T_NULL);
    const jnode_t *a = json_obj_get(root, "a");
    CHECK_INT(json_type_of(a), JSON_T_ARRAY);
    CHECK_INT(json_arr_size(a), 2);
    CHECK_INT(json_type_of(json_arr_get(a, 0)), JSON_T_INTEGER);
    CHECK_STR(json_str(json_arr_get(a, 1)), "x");
    CHECK(json_arr_get(a, 2) == NULL);
    CHECK_INT(json_type_of(json_obj_get(root, "o")), JSON_T_OBJECT);
    json_destroy(&root);
}

static void
test_getters_forgiving(void)
{
    jnode_t *root = s_parse("{\"s\": \"x\", \"i\": 3}", NULL, 0);
    REQUIRE(root);
    CHECK(json_obj_get(root, "missing") == NULL);
    CHECK(json_str(json_obj_get(root, "missing")) == NULL);
    CHECK(json_str(json_obj_get(root, "i")) == NULL);
    CHECK_INT(json_int(json_obj_get(root, "s")), 0);
    CHECK(!json_bool(json_obj_get(root, "s")));
    CHECK_INT(json_arr_size(root), 0);
    CHECK(json_arr_get(root, 0) == NULL);
    CHECK(json_obj_get(json_obj_get(root, "s"), "k") == NULL);
    CHECK_INT(json_obj_size(NULL), 0);
    json_iter_t it = json_obj_iter(json_obj_get(root, "s"));
    const char *key;
    const jnode_t *val;
    CHECK(!json_obj_next(&it, &key, &val));
    json_destroy(&root);
    json_destroy(&root);    // a no-op on NULL
    json_destroy(NULL);
}

static void
test_iteration_in_insertion_order(void)
{
    jnode_t *root = s_parse("{\"zeta\": 1, \"alpha\": 2, \"mid\": 3, \"b\": 4}",
                            NULL, 0);
    REQUIRE(root);
    const char *want[] = {"zeta", "alpha", "mid", "b"};
    json_iter_t it = json_obj_iter(root);
    const char *key;
    const jnode_t *val;
    size_t n = 0;
    while (json_obj_next(&it, &key, &val)) {
        REQUIRE(n < 4);
        CHECK_STR(key, want[n]);
        CHECK_INT(json_int(val), (int64_t) n + 1);
        n++;
    }
    CHECK_INT(n, 4);
    json_destroy(&root);
}

static void
test_unicode(void)
{
    // Escapes decode to UTF-8 (including a surrogate pair); dumping leaves
    // UTF-8 as it is.
    const char *text = "[\"caf\\u00e9\", \"\\ud83d\\ude00\", \"\xe6\x97\xa5\"]";
    jnode_t *root = s_parse(text, NULL, 0);
    REQUIRE(root);
    CHECK_STR(json_str(json_arr_get(root, 0)), "caf\xc3\xa9");
    CHECK_STR(json_str(json_arr_get(root, 1)), "\xf0\x9f\x98\x80");
    CHECK_INT(json_str_len(json_arr_get(root, 1)), 4);
    char *out = json_dump(root, false);
    CHECK_STR(out, "[\"caf\xc3\xa9\",\"\xf0\x9f\x98\x80\",\"\xe6\x97\xa5\"]");
    free(out);
    json_destroy(&root);
}

static void
test_round_trip(void)
{
    const char *text = "{\"name\":\"x\",\"n\":-1,\"r\":0.5,\"ok\":true,"
                       "\"none\":null,\"list\":[1,[2,{}],\"s\\n\\\"q\\\"\"],"
                       "\"z\":{\"b\":1,\"a\":2}}";
    jnode_t *root = s_parse(text, NULL, 0);
    REQUIRE(root);
    char *out = json_dump(root, false);
    CHECK_STR(out, text);
    jnode_t *again = s_parse(out, NULL, 0);
    REQUIRE(again);
    char *out2 = json_dump(again, false);
    CHECK_STR(out2, text);
    free(out);
    free(out2);
    json_destroy(&root);
    json_destroy(&again);
}

static void
test_build_and_dump(void)
{
    jnode_t *obj = json_obj_new();
    json_obj_set_str(obj, "name", "w");
    json_obj_set_int(obj, "count", 3);
    json_obj_set_bool(obj, "ok", true);
    json_obj_set_null(obj, "gone");
    json_obj_set_num(obj, "ratio", 0.25);
    jnode_t *arr = json_arr_new();
    json_arr_push_str(arr, "a");
    json_arr_push_int(arr, -7);
    jnode_t *inner = json_obj_new();
    json_obj_set_str(inner, "k", "v");
    json_arr_push_node(arr, &inner);
    CHECK(inner == NULL);
    json_obj_set_node(obj, "list", &arr);
    CHECK(arr == NULL);
    json_obj_set_int(obj, "count", 4);  // replaced in place
    char *compact = json_dump(obj, false);
    CHECK_STR(compact, "{\"name\":\"w\",\"count\":4,\"ok\":true,\"gone\":null,"
                       "\"ratio\":0.25,\"list\":[\"a\",-7,{\"k\":\"v\"}]}");
    char *pretty = json_dump(obj, true);
    CHECK_HAS(pretty, "{\n  \"name\": \"w\",\n  \"count\": 4,");
    CHECK_HAS(pretty, "  \"list\": [\n    \"a\",\n    -7,\n");
    free(compact);
    free(pretty);
    json_destroy(&obj);
}

static void
test_build_bytes(void)
{
    jnode_t *obj = json_obj_new();
    json_obj_set_str(obj, "bad", "a\xff" "b\xc3");          // invalid UTF-8
    json_obj_set_strn(obj, "nul", "x\0y", 3);
    json_obj_set_str(obj, "ctl", "tab\there\n");
    char *out = json_dump(obj, false);
    CHECK_STR(out, "{\"bad\":\"a\xef\xbf\xbd" "b\xef\xbf\xbd\","
                   "\"nul\":\"x\\u0000y\",\"ctl\":\"tab\\there\\n\"}");
    CHECK_INT(json_str_len(json_obj_get(obj, "nul")), 3);
    free(out);
    json_destroy(&obj);
}

static void
test_clone(void)
{
    jnode_t *root = s_parse("{\"a\": {\"b\": [1, 2]}}", NULL, 0);
    REQUIRE(root);
    jnode_t *copy = json_clone(json_obj_get(root, "a"));
    json_destroy(&root);                // the copy outlives its source
    jnode_t *wrap = json_obj_new();
    json_obj_set_node(wrap, "c", &copy);
    char *out = json_dump(wrap, false);
    CHECK_STR(out, "{\"c\":{\"b\":[1,2]}}");
    free(out);
    json_destroy(&wrap);
}

static void
test_dump_scalars(void)
{
    jnode_t *root = s_parse("\"just a string\"", NULL, 0);
    REQUIRE(root);
    CHECK_INT(json_type_of(root), JSON_T_STRING);
    char *out = json_dump(root, true);
    CHECK_STR(out, "\"just a string\"");
    free(out);
    json_destroy(&root);
}

static void
test_quote(void)
{
    char *q = json_quote("say \"hi\"\n\\ \x01");
    CHECK_STR(q, "\"say \\\"hi\\\"\\n\\\\ \\u0001\"");
    free(q);
    q = json_quote("");
    CHECK_STR(q, "\"\"");
    free(q);
    q = json_quote("ok\xff");
    CHECK_STR(q, "\"ok\xef\xbf\xbd\"");
    free(q);
    q = json_quote("\xc3\xa9t\xc3\xa9");
    CHECK_STR(q, "\"\xc3\xa9t\xc3\xa9\"");
    free(q);
}

// json_out writes what json_dump writes for the same values: every byte
// value in a string, and reals of every shape (the canonical workplan's
// bytes depend on it).
static void
test_out_same_as_dump(void)
{
    for (int c = 1; c < 0x80; c++) {
        char s[4] = {'a', (char) c, 'z', 0};
        char *want = json_quote(s);
        json_out_t o = {0};
        json_out_str(&o, s, 3);
        char *got = json_out_take(&o, NULL);
        CHECK_STR(got, want);
        free(got);
        free(want);
    }
    const char *utf8 = "\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80\xe2\x80\xa8\x7f";
    char *want = json_quote(utf8);
    json_out_t o = {0};
    json_out_str(&o, utf8, strlen(utf8));
    char *got = json_out_take(&o, NULL);
    CHECK_STR(got, want);
    free(got);
    free(want);
    const double reals[] = {0.0, -0.0, 1.0, 0.5, 0.7, 0.1, 2.0, 1e-5,
                            1.5e-7, 123456789.0, 1e17, 1e22, -3.25e100,
                            5e-324, 1.7976931348623157e308};
    for (size_t i = 0; i < sizeof reals / sizeof reals[0]; i++) {
        jnode_t *obj = json_obj_new();
        json_obj_set_num(obj, "v", reals[i]);
        char *dump = json_dump(obj, false);
        json_destroy(&obj);
        json_out_raw(&o, "{\"v\":", 5);
        json_out_real(&o, reals[i]);
        json_out_raw(&o, "}", 1);
        size_t len = 0;
        got = json_out_take(&o, &len);
        CHECK_STR(got, dump);
        CHECK_INT(len, strlen(dump));
        free(got);
        free(dump);
    }
    json_out_int(&o, INT64_MIN);
    json_out_raw(&o, " ", 1);
    json_out_real(&o, NAN);
    got = json_out_take(&o, NULL);
    CHECK_STR(got, "-9223372036854775808 null");
    free(got);
    got = json_out_take(&o, NULL);
    CHECK_STR(got, "");
    free(got);
}

static const t_case_t t_cases[] = {
    T(test_parse_error_line_column),
    T(test_duplicate_keys_refused),
    T(test_nul_and_bad_utf8_refused),
    T(test_read_types),
    T(test_getters_forgiving),
    T(test_iteration_in_insertion_order),
    T(test_unicode),
    T(test_round_trip),
    T(test_build_and_dump),
    T(test_build_bytes),
    T(test_clone),
    T(test_dump_scalars),
    T(test_quote),
    T(test_out_same_as_dump),
    {0},
};

T_MAIN(t_cases)
