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
    json_out_int(&o, INT64_MAX);
    json_out_raw(&o, " ", 1);
    json_out_int(&o, 0);
    json_out_raw(&o, " ", 1);
    json_out_int(&o, -10);
    json_out_raw(&o, " ", 1);
    json_out_real(&o, NAN);
    got = json_out_take(&o, NULL);
    CHECK_STR(got, "-9223372036854775808 9223372036854775807 0 -10 null");
    free(got);
    got = json_out_take(&o, NULL);
    CHECK_STR(got, "");
    free(got);
}

// Whether the document value d holds what the jansson node j holds.
static bool
s_same(const jval_t *d, const jnode_t *j)
{
    if (jval_type(d) != json_type_of(j)) {
        return false;
    }
    switch (json_type_of(j)) {
    case JSON_T_OBJECT:
        if (jval_size(d) != json_obj_size(j)) {
            return false;
        }
        for (size_t i = 0; i < jval_size(d); i++) {
            const jnode_t *v = json_obj_get(j, jval_key(d, i));
            if (!v || !s_same(jval_at(d, i), v)
                || jval_get(d, jval_key(d, i)) != jval_at(d, i)) {
                return false;
            }
        }
        return true;
    case JSON_T_ARRAY:
        if (jval_size(d) != json_arr_size(j)) {
            return false;
        }
        for (size_t i = 0; i < jval_size(d); i++) {
            if (!s_same(jval_at(d, i), json_arr_get(j, i))) {
                return false;
            }
        }
        return true;
    case JSON_T_STRING:
        return jval_len(d) == json_str_len(j)
               && memcmp(jval_str(d), json_str(j), jval_len(d) + 1) == 0;
    case JSON_T_INTEGER:
        return jval_int(d) == json_int(j);
    case JSON_T_REAL:
        return jval_num(d) == json_num(j);
    case JSON_T_BOOL:
    case JSON_T_NULL:
        return true;
    }
    return false;
}

// The arena parser accepts what json_parse accepts, reads the same values
// and words its refusals the same way.
static void
test_doc_same_as_jansson(void)
{
    static const char *const texts[] = {
        "{}", "[]", " [ ] ", "{\"a\":1}", "0", "-0", "1.5", "-1e3", "1E+2",
        "123456789012345678", "9223372036854775807", "-9223372036854775808",
        "9223372036854775808", "-9223372036854775809", "1e999", "-1e999",
        "1e-999", "0.1234567890123456789012345678901234567890123456789012345"
        "678901234567890123", "01", "-", "1.", ".5", "1e", "1e+", "+1", "--1",
        "true", "false", "null", "tru", "truex", "nul", "[true,false,null]",
        "\"\"", "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"", "\"\\u00e9\\u4E2D\"",
        "\"\\ud83d\\ude00\"", "\"\\ud83d\"", "\"\\ude00\"", "\"\\ud83dx\"",
        "\"\\ud83d\\u0041\"", "\"\\u0000\"", "\"\\u00\"", "\"\\uzzzz\"",
        "\"\\x\"", "\"\\", "\"abc", "\"a\tb\"", "\"a\x01\"", "\"\xc3\xa9\"",
        "\"\xc3\"", "\"\xff\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"",
        "\"\xf4\x90\x80\x80\"", "\"\xf0\x9f\x98\x80\"", "\xef\xbb\xbf{}",
        "{\"a\":1,\"a\":2}", "{\"a\":1,\"b\":{\"a\":2}}", "{\"a\" 1}",
        "{\"a\":}", "{,}", "{\"a\":1,}", "[1,]", "[,1]", "[1 2]", "{1:2}",
        "{\"a\":1} x", "[1] [2]", "", "   ", "[", "{", "[[[]]]",
        "{\"a\":[1,{\"b\":[null,\"x\",2.5,{}]}],\"c\":\"\"}", "\"a\" ",
        "{\"k1\":1,\"k2\":2,\"k3\":3,\"k4\":4,\"k5\":5,\"k6\":6,\"k7\":7,"
        "\"k8\":8,\"k9\":9,\"k10\":10,\"k11\":11,\"k12\":12,\"k13\":13,"
        "\"k14\":14,\"k15\":15,\"k16\":16,\"k17\":17,\"k3\":18}",
        "{\"k1\":1,\"k2\":2,\"k3\":3,\"k4\":4,\"k5\":5,\"k6\":6,\"k7\":7,"
        "\"k8\":8,\"k9\":9,\"k10\":10,\"k11\":11,\"k12\":12,\"k13\":13,"
        "\"k14\":14,\"k15\":15,\"k16\":16,\"k17\":17,\"k18\":18}",
        "\t\n\r[1]\n", "[1]\v", "[\"\\u002F\"]", "{\"\\u0061\":1,\"a\":2}",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        char e1[256] = "", e2[256] = "";
        size_t len = strlen(texts[i]);
        jnode_t *j = json_parse(texts[i], len, e1, sizeof e1);
        jdoc_t *d = jdoc_parse(texts[i], len, e2, sizeof e2);
        if ((j == NULL) != (d == NULL) || strcmp(e1, e2) != 0
            || (j && !s_same(jdoc_root(d), j))) {
            fprintf(stderr, "text %zu: '%s': jansson %s '%s', doc %s '%s'\n",
                    i, texts[i], j ? "accepts" : "refuses", e1,
                    d ? "accepts" : "refuses", e2);
            t_failures++;
        }
        json_destroy(&j);
        jdoc_destroy(&d);
    }
    // A NUL inside the bytes, and nesting at and past jansson's limit.
    char nul[] = "[\"a\0b\"]";
    CHECK(jdoc_parse(nul, sizeof nul - 1, NULL, 0) == NULL);
    // jansson skips a NUL right after a number; json_doc refuses it, and
    // says where.
    char after[] = "[1,\n 2\0]";
    char err[128] = "";
    jnode_t *skipped = json_parse(after, sizeof after - 1, NULL, 0);
    CHECK(skipped != NULL);
    json_destroy(&skipped);
    CHECK(jdoc_parse(after, sizeof after - 1, err, sizeof err) == NULL);
    CHECK_STR(err, "line 2, column 3: a NUL byte outside a string");
    for (int depth = 2048; depth <= 2049; depth++) {
        char *deep = calloc(1, (size_t) depth * 2 + 1);
        memset(deep, '[', (size_t) depth);
        memset(deep + depth, ']', (size_t) depth);
        jnode_t *j = json_parse(deep, strlen(deep), NULL, 0);
        jdoc_t *d = jdoc_parse(deep, strlen(deep), NULL, 0);
        CHECK((j == NULL) == (d == NULL));
        CHECK((d != NULL) == (depth == 2048));
        json_destroy(&j);
        jdoc_destroy(&d);
        free(deep);
    }
}

// The getters are forgiving and NULL-safe, as the tree's are.
static void
test_doc_getters(void)
{
    const char *text = "{\"s\":\"x\",\"i\":-7,\"r\":0.5,\"a\":[1,2],\"o\":{}}";
    jdoc_t *d = jdoc_parse(text, strlen(text), NULL, 0);
    REQUIRE(d);
    const jval_t *r = jdoc_root(d);
    CHECK(jdoc_bytes(d) > 0);
    CHECK_INT(jval_size(r), 5);
    CHECK_STR(jval_key(r, 3), "a");
    CHECK(jval_key(r, 5) == NULL);
    CHECK(jval_at(r, 5) == NULL);
    CHECK_INT(jval_int(jval_get(r, "i")), -7);
    CHECK(jval_num(jval_get(r, "i")) == -7.0);
    CHECK(jval_num(jval_get(r, "r")) == 0.5);
    CHECK_INT(jval_int(jval_get(r, "r")), 0);
    CHECK(jval_str(jval_get(r, "i")) == NULL);
    CHECK_INT(jval_len(jval_get(r, "s")), 1);
    CHECK_INT(jval_size(jval_get(r, "s")), 0);
    CHECK_INT(jval_int(jval_at(jval_get(r, "a"), 1)), 2);
    CHECK(jval_key(jval_get(r, "a"), 0) == NULL);
    CHECK(jval_get(jval_get(r, "a"), "x") == NULL);
    CHECK(jval_get(NULL, "x") == NULL);
    CHECK(jval_at(NULL, 0) == NULL);
    CHECK(jval_str(NULL) == NULL && jval_len(NULL) == 0);
    CHECK(jval_int(NULL) == 0 && jval_num(NULL) == 0.0);
    CHECK_INT(jval_size(jval_get(r, "o")), 0);
    jdoc_destroy(&d);
    // Repeated keys are stored once; escaped ones are not cached (and
    // still read as their text).
    text = "[{\"id\":1,\"run\":2},{\"id\":3,\"r\\u0075n\":4}]";
    d = jdoc_parse(text, strlen(text), NULL, 0);
    REQUIRE(d);
    r = jdoc_root(d);
    CHECK(jval_key(jval_at(r, 0), 0) == jval_key(jval_at(r, 1), 0));
    CHECK_STR(jval_key(jval_at(r, 1), 1), "run");
    CHECK(jval_key(jval_at(r, 0), 1) != jval_key(jval_at(r, 1), 1));
    CHECK_INT(jval_int(jval_get(jval_at(r, 1), "run")), 4);
    jdoc_destroy(&d);
    CHECK(d == NULL);
    jdoc_destroy(&d);
    jdoc_destroy(NULL);
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
    T(test_doc_same_as_jansson),
    T(test_doc_getters),
    {0},
};

T_MAIN(t_cases)
