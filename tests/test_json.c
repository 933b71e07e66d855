/* test_json.c — the strict JSON parser (JSONTestSuite y_/n_/i_ files), the
 * serializer round trip, duplicate keys, depth limit, error positions and
 * JSON Pointer. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sgr/sgr.h"
#include "testutil.h"

static json *parse_ok(const char *s) {
    json *v = NULL;
    qerr e = {{0}};
    if (json_parse(s, strlen(s), NULL, &v, &e)) { fprintf(stderr, "parse failed: %s\n", e.msg); fail(); }
    return v;
}

static void test_json_test_suite(void **state) {
    (void)state;
    const char *dir = shared_path("json/JSONTestSuite/test_parsing");
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    int ny = 0, nn = 0, ni = 0, ni_ok = 0, bad = 0;
    /* RFC 8259 allows duplicate keys; the suite's y_ files use them, so run
     * it with keep-last (the default, reject, is tested separately). */
    json_parse_opts o = {0, JSON_DUP_LAST};
    while ((de = readdir(d))) {
        const char *name = de->d_name;
        if (!strstr(name, ".json")) continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        size_t len;
        char *buf = test_read_file(path, &len);
        json *v = NULL;
        qerr e = {{0}};
        int rc = json_parse(buf, len, &o, &v, &e);
        if (rc == 0) {
            /* whatever parses must serialize and re-parse to an equal value */
            char *out;
            size_t olen;
            assert_int_equal(json_serialize(v, NULL, &out, &olen, &e), 0);
            json *w = NULL;
            if (json_parse(out, olen, &o, &w, &e) || !json_equal(v, w)) {
                fprintf(stderr, "round trip failed for %s\n", name);
                bad++;
            }
            json_free(w);
            free(out);
        } else {
            assert_null(v);
            assert_null(strchr(e.msg, '\n'));
            assert_non_null(strstr(e.msg, "line "));
        }
        if (name[0] == 'y') { ny++; if (rc) { fprintf(stderr, "rejected %s: %s\n", name, e.msg); bad++; } }
        else if (name[0] == 'n') { nn++; if (!rc) { fprintf(stderr, "accepted %s\n", name); bad++; } }
        else { ni++; if (!rc) ni_ok++; }
        json_free(v);
        free(buf);
    }
    closedir(d);
    printf("JSONTestSuite: %d y_ accepted, %d n_ rejected, %d i_ (%d accepted), %d failures\n", ny, nn, ni, ni_ok, bad);
    assert_true(ny > 90 && nn > 180);
    assert_int_equal(bad, 0);
}

static void test_json_duplicates_and_depth(void **state) {
    (void)state;
    json *v = NULL;
    qerr e = {{0}};
    assert_int_equal(json_parse("{\"a\":1,\"b\":2,\"a\":3}", 19, NULL, &v, &e), -1);
    assert_non_null(strstr(e.msg, "duplicate object key \"a\""));
    json_parse_opts o = {0, JSON_DUP_LAST};
    assert_int_equal(json_parse("{\"a\":1,\"b\":2,\"a\":3}", 19, &o, &v, &e), 0);
    assert_int_equal(json_size(v), 2);
    assert_string_equal(json_get(v, "a")->u.num.text, "3");
    char *s;
    assert_int_equal(json_serialize(v, NULL, &s, NULL, &e), 0);
    assert_string_equal(s, "{\"b\":2,\"a\":3}");
    free(s);
    json_free(v);

    char deep[2000];
    memset(deep, '[', 600);
    memset(deep + 600, ']', 600);
    assert_int_equal(json_parse(deep, 1200, NULL, &v, &e), -1);
    assert_non_null(strstr(e.msg, "nesting too deep"));
    o.max_depth = 700;
    assert_int_equal(json_parse(deep, 1200, &o, &v, &e), 0);
    json_free(v);
}

static void test_json_errors_and_values(void **state) {
    (void)state;
    json *v = NULL;
    qerr e = {{0}};
    assert_int_equal(json_parse("{\n  \"a\": tru\n}", 14, NULL, &v, &e), -1);
    assert_non_null(strstr(e.msg, "line 2, column 8"));
    assert_int_equal(json_parse("\"\\ud800\"", 8, NULL, &v, &e), -1);
    assert_non_null(strstr(e.msg, "surrogate"));
    assert_int_equal(json_parse("\"\xc0\xaf\"", 4, NULL, &v, &e), -1);
    assert_non_null(strstr(e.msg, "UTF-8"));

    v = parse_ok("[\"\\ud83d\\ude00\", -0, 12345678901234567890, 1.50, 1e2, 9007199254740993]");
    assert_int_equal(json_size(v), 6);
    assert_string_equal(json_string(json_at(v, 0)), "\xf0\x9f\x98\x80");
    assert_true(json_at(v, 1)->u.num.is_int);
    assert_false(json_at(v, 2)->u.num.is_int);
    assert_string_equal(json_at(v, 2)->u.num.text, "12345678901234567890");
    assert_true(json_at(v, 3)->u.num.d == 1.5);
    assert_true(json_number_is_integer(json_at(v, 4)));
    assert_false(json_number_is_integer(json_at(v, 3)));
    assert_true(json_at(v, 5)->u.num.is_int && json_at(v, 5)->u.num.i == 9007199254740993LL);
    json *w = parse_ok("[\"\\uD83D\\uDE00\", 0, 1.2345678901234567890e19, 1.5, 100.0, 9007199254740993]");
    assert_true(json_equal(v, w));
    json_free(w);
    json_free(v);

    /* string with NUL and escapes round-trips */
    v = parse_ok("{\"k\\u0000\":\"a\\\"b\\\\c\\n\\u001f\\/\"}");
    char *s;
    size_t n;
    assert_int_equal(json_serialize(v, NULL, &s, &n, &e), 0);
    assert_int_equal(n, strlen("{\"k\\u0000\":\"a\\\"b\\\\c\\n\\u001f/\"}"));
    assert_string_equal(s, "{\"k\\u0000\":\"a\\\"b\\\\c\\n\\u001f/\"}");
    free(s);
    json_free(v);

    v = parse_ok("{\"b\":[1,{}],\"a\":[]}");
    json_write_opts wo = {2, true};
    assert_int_equal(json_serialize(v, &wo, &s, NULL, &e), 0);
    assert_string_equal(s, "{\n  \"a\": [],\n  \"b\": [\n    1,\n    {}\n  ]\n}");
    free(s);
    json_free(v);
}

static void test_json_large_object_lookup(void **state) {
    (void)state;
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap);
    n += (size_t)sprintf(buf + n, "{");
    for (int i = 0; i < 20000; i++) n += (size_t)sprintf(buf + n, "%s\"key%d\":%d", i ? "," : "", (i * 7919) % 20000, i);
    n += (size_t)sprintf(buf + n, "}");
    json *v = NULL;
    qerr e = {{0}};
    assert_int_equal(json_parse(buf, n, NULL, &v, &e), 0);
    for (int i = 0; i < 20000; i += 97) {
        char k[32];
        snprintf(k, sizeof k, "key%d", (i * 7919) % 20000);
        const json *x = json_get(v, k);
        assert_non_null(x);
        assert_int_equal(x->u.num.i, i);
    }
    assert_null(json_get(v, "nope"));
    json_free(v);
    free(buf);
}

static void test_json_pointer(void **state) {
    (void)state;
    /* RFC 6901 section 5 examples */
    json *v = parse_ok("{\"foo\":[\"bar\",\"baz\"],\"\":0,\"a/b\":1,\"c%d\":2,\"e^f\":3,\"g|h\":4,"
                       "\"i\\\\j\":5,\"k\\\"l\":6,\" \":7,\"m~n\":8}");
    assert_ptr_equal(json_pointer_get(v, "", 0), v);
    const struct { const char *p; const char *want; } cases[] = {
        {"/foo/0", "\"bar\""}, {"/", "0"}, {"/a~1b", "1"}, {"/c%d", "2"}, {"/e^f", "3"},
        {"/g|h", "4"}, {"/i\\j", "5"}, {"/k\"l", "6"}, {"/ ", "7"}, {"/m~0n", "8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const json *x = json_pointer_get(v, cases[i].p, strlen(cases[i].p));
        assert_non_null(x);
        char *s;
        qerr e;
        assert_int_equal(json_serialize(x, NULL, &s, NULL, &e), 0);
        assert_string_equal(s, cases[i].want);
        free(s);
    }
    assert_null(json_pointer_get(v, "/foo/2", 6));
    assert_null(json_pointer_get(v, "/foo/01", 7));
    assert_null(json_pointer_get(v, "/foo/-", 6));
    assert_null(json_pointer_get(v, "foo", 3));
    assert_null(json_pointer_get(v, "/m~2n", 5));
    json_free(v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_test_suite),
        cmocka_unit_test(test_json_duplicates_and_depth),
        cmocka_unit_test(test_json_errors_and_values),
        cmocka_unit_test(test_json_large_object_lookup),
        cmocka_unit_test(test_json_pointer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
