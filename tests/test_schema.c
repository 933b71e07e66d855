/* test_schema.c — the JSON Schema validator against JSON-Schema-Test-Suite
 * (draft2020-12 required tests asserted with a known-failures list; optional
 * and format tests printed) and JSONSchemaBench's labelled instances. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sgr/sgr.h"
#include "testutil.h"

#define SUITE "jsonschema/JSON-Schema-Test-Suite/"

static json *load_json(const char *path, qerr *e) {
    char *buf;
    size_t len;
    if (q_read_file(path, &buf, &len, e)) return NULL;
    json *v = NULL;
    json_parse_opts o = {0, JSON_DUP_LAST};
    int rc = json_parse(buf, len, &o, &v, e);
    free(buf);
    return rc ? NULL : v;
}

/* http://localhost:1234/X -> ../shared/.../remotes/X (no network). */
static int remote_loader(void *ud, const char *uri, json **out, qerr *e) {
    (void)ud;
    const char *pfx = "http://localhost:1234/";
    if (strncmp(uri, pfx, strlen(pfx)) != 0) return qerr_set(e, "no such remote document: %s", uri);
    char rel[1024];
    snprintf(rel, sizeof rel, SUITE "remotes/%s", uri + strlen(pfx));
    json *v = load_json(shared_path(rel), e);
    if (!v) return -1;
    *out = v;
    return 0;
}

typedef struct tally {
    int pass, total;
    char **failed;
    size_t n_failed;
} tally;

static void run_suite_file(const char *path, const char *fname, bool assert_format, tally *t) {
    qerr e;
    json *doc = load_json(path, &e);
    if (!doc) { fprintf(stderr, "%s: %s\n", path, e.msg); fail(); }
    for (size_t g = 0; g < json_size(doc); g++) {
        const json *grp = json_at(doc, g);
        const char *gdesc = json_string(json_get(grp, "description"));
        schema_opts so = {0};
        so.assert_format = assert_format;
        so.load = remote_loader;
        schema *s = NULL;
        qerr ce = {{0}};
        int crc = schema_compile(json_get(grp, "schema"), &so, &s, &ce);
        const json *tests = json_get(grp, "tests");
        for (size_t k = 0; k < json_size(tests); k++) {
            const json *tc = json_at(tests, k);
            bool want = json_get(tc, "valid")->type == JSON_TRUE;
            int got = -1;
            schema_error err;
            if (crc == 0) got = schema_validate(s, json_get(tc, "data"), &err);
            t->total++;
            if ((got == 1) == want && got >= 0) { t->pass++; continue; }
            char line[1024];
            snprintf(line, sizeof line, "%s / %s / %s", fname, gdesc, json_string(json_get(tc, "description")));
            t->failed = realloc(t->failed, (t->n_failed + 1) * sizeof *t->failed);
            t->failed[t->n_failed++] = strdup(line);
            if (getenv("SCHEMA_TEST_VERBOSE"))
                fprintf(stderr, "FAIL %s (compile: %s; got %d)\n", line, crc ? ce.msg : "ok", got);
        }
        schema_free(s);
    }
    json_free(doc);
}

static void tally_free(tally *t) {
    for (size_t i = 0; i < t->n_failed; i++) free(t->failed[i]);
    free(t->failed);
}

static void run_dir(const char *rel, bool assert_format, tally *t) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", shared_path(rel)); /* shared_path's buffers rotate */
    size_t n;
    char **names = test_list_json(dir, &n);
    for (size_t i = 0; i < n; i++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        run_suite_file(path, names[i], assert_format, t);
        free(names[i]);
    }
    free(names);
}

static void test_draft2020_required(void **state) {
    (void)state;
    tally t = {0};
    run_dir(SUITE "tests/draft2020-12", false, &t);
    /* known failures, one "file / group / test" per line */
    size_t klen;
    char *known = test_read_file(QUIRE_SOURCE_DIR "/tests/data/jsonschema-known-failures.txt", &klen);
    int unexpected = 0;
    for (size_t i = 0; i < t.n_failed; i++) {
        bool listed = false;
        for (char *p = known; p && *p;) {
            char *nl = strchr(p, '\n');
            size_t l = nl ? (size_t)(nl - p) : strlen(p);
            if (l == strlen(t.failed[i]) && strncmp(p, t.failed[i], l) == 0) { listed = true; break; }
            p = nl ? nl + 1 : NULL;
        }
        if (!listed) { fprintf(stderr, "unexpected failure: %s\n", t.failed[i]); unexpected++; }
    }
    /* listed cases that now pass: the list should shrink with them */
    for (char *p = known; p && *p;) {
        char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        bool still = l == 0;
        for (size_t i = 0; i < t.n_failed && !still; i++) still = strlen(t.failed[i]) == l && !strncmp(p, t.failed[i], l);
        if (!still) printf("known failure now passes (remove it from the list): %.*s\n", (int)l, p);
        p = nl ? nl + 1 : NULL;
    }
    double rate = 100.0 * t.pass / t.total;
    printf("draft2020-12 required: %d/%d passed (%.2f%%), %zu known failures\n", t.pass, t.total, rate, t.n_failed);
    free(known);
    tally_free(&t);
    assert_int_equal(unexpected, 0);
    assert_true(rate >= 95.0);
}

static void test_draft2020_optional(void **state) {
    (void)state;
    tally t = {0}, f = {0};
    run_dir(SUITE "tests/draft2020-12/optional", false, &t);
    run_dir(SUITE "tests/draft2020-12/optional/format", true, &f);
    printf("draft2020-12 optional: %d/%d passed (%.1f%%)\n", t.pass, t.total, 100.0 * t.pass / t.total);
    printf("draft2020-12 optional/format (format asserted): %d/%d passed (%.1f%%)\n", f.pass, f.total,
           100.0 * f.pass / f.total);
    tally_free(&t);
    tally_free(&f);
}

static void test_jsonschemabench(void **state) {
    (void)state;
    const char *splits[] = {"Glaiveai2K", "Github_trivial", "Github_easy", "Snowplow"};
    int all_ok = 0, all_total = 0;
    for (size_t sp = 0; sp < 4; sp++) {
        char rel[256];
        snprintf(rel, sizeof rel, "jsonschemabench/%s", splits[sp]);
        char dir[1024];
        snprintf(dir, sizeof dir, "%s", shared_path(rel));
        size_t n;
        char **names = test_list_json(dir, &n);
        int compiled = 0, ok = 0, total = 0, unsupported = 0;
        for (size_t i = 0; i < n; i++) {
            char path[2048];
            snprintf(path, sizeof path, "%s/%s", dir, names[i]);
            qerr e;
            json *doc = load_json(path, &e);
            if (!doc) { fprintf(stderr, "%s: %s\n", path, e.msg); fail(); }
            schema *s = NULL;
            schema_opts so = {0};
            so.assert_format = true; /* the labels treat format as an assertion */
            int crc = schema_compile(json_get(doc, "schema"), &so, &s, &e);
            if (crc == 0) compiled++;
            if (crc == 0 && s->n_unknown) unsupported++;
            if (crc && getenv("SCHEMA_TEST_VERBOSE")) fprintf(stderr, "%s: compile: %s\n", names[i], e.msg);
            const json *tests = json_get(doc, "tests");
            for (size_t k = 0; k < json_size(tests); k++) {
                const json *tc = json_at(tests, k);
                bool want = json_get(tc, "valid")->type == JSON_TRUE;
                schema_error err;
                int got = crc == 0 ? schema_validate(s, json_get(tc, "data"), &err) : -1;
                total++;
                if (got >= 0 && (got == 1) == want) ok++;
                else if (getenv("SCHEMA_TEST_VERBOSE"))
                    fprintf(stderr, "%s test %zu: want %d got %d (%s %s %s)\n", names[i], k, want, got,
                            got == 0 ? err.instance_ptr : "", got == 0 ? err.keyword : "", got == 0 ? err.msg : "");
            }
            schema_free(s);
            json_free(doc);
            free(names[i]);
        }
        free(names);
        printf("jsonschemabench %-15s schemas %zu, compiled %d, with unknown keywords %d; instances %d/%d "
               "classified as labelled (%.2f%%), %d failures\n",
               splits[sp], n, compiled, unsupported, ok, total, 100.0 * ok / total, total - ok);
        all_ok += ok;
        all_total += total;
    }
    double share = 100.0 * all_ok / all_total;
    printf("jsonschemabench all splits: %d/%d (%.2f%%)\n", all_ok, all_total, share);
    assert_true(share >= 99.0);
}

static void test_schema_errors_and_pointers(void **state) {
    (void)state;
    const char *sch = "{\"type\":\"object\",\"properties\":{\"a/b\":{\"type\":\"array\",\"items\":{\"type\":\"integer\"}}},"
                      "\"required\":[\"a/b\"],\"foo\":1}";
    json *d = NULL, *inst = NULL;
    qerr e;
    assert_int_equal(json_parse(sch, strlen(sch), NULL, &d, &e), 0);
    schema *s;
    assert_int_equal(schema_compile(d, NULL, &s, &e), 0);
    json_free(d); /* the schema holds its own copy */
    assert_int_equal(s->n_unknown, 1);
    assert_string_equal(s->unknown[0].keyword, "foo");
    assert_string_equal(s->unknown[0].pointer, "/foo");
    const char *ins = "{\"a/b\":[1,2,\"x\"]}";
    assert_int_equal(json_parse(ins, strlen(ins), NULL, &inst, &e), 0);
    schema_error err;
    assert_int_equal(schema_validate(s, inst, &err), 0);
    assert_string_equal(err.instance_ptr, "/a~1b/2");
    assert_string_equal(err.keyword, "type");
    json_free(inst);
    assert_int_equal(json_parse("{}", 2, NULL, &inst, &e), 0);
    assert_int_equal(schema_validate(s, inst, &err), 0);
    assert_string_equal(err.keyword, "required");
    json_free(inst);
    schema_free(s);

    /* a $ref cycle that never consumes the instance stops with an error */
    const char *cyc = "{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/b\"},\"b\":{\"$ref\":\"#/$defs/a\"}},\"$ref\":\"#/$defs/a\"}";
    assert_int_equal(json_parse(cyc, strlen(cyc), NULL, &d, &e), 0);
    assert_int_equal(schema_compile(d, NULL, &s, &e), 0);
    assert_int_equal(schema_validate(s, d, &err), -1);
    assert_non_null(strstr(err.msg, "cycle"));
    schema_free(s);
    json_free(d);

    /* exponential fan-out through $refs runs into the step budget */
    {
        char fan[4000];
        size_t m = (size_t)sprintf(fan, "{\"$ref\":\"#/$defs/d0\",\"$defs\":{");
        for (int i = 0; i < 40; i++)
            m += (size_t)sprintf(fan + m, "\"d%d\":{\"anyOf\":[{\"$ref\":\"#/$defs/d%d\"},{\"$ref\":\"#/$defs/d%d\"}],\"not\":{}},", i, i + 1, i + 1);
        sprintf(fan + m, "\"d40\":true}}");
        assert_int_equal(json_parse(fan, strlen(fan), NULL, &d, &e), 0);
        schema_opts so = {0};
        so.max_steps = 100000;
        assert_int_equal(schema_compile(d, &so, &s, &e), 0);
        assert_int_equal(schema_validate(s, d, &err), -1);
        assert_non_null(strstr(err.msg, "budget"));
        schema_free(s);
        json_free(d);
    }

    /* unsupported regex features are compile errors, never ignored */
    const char *bad = "{\"pattern\":\"(?=x)\"}";
    assert_int_equal(json_parse(bad, strlen(bad), NULL, &d, &e), 0);
    assert_int_equal(schema_compile(d, NULL, &s, &e), -1);
    assert_non_null(strstr(e.msg, "lookahead"));
    json_free(d);

    /* hostile: deep nesting and a node limit */
    char deep[8000];
    size_t n = 0;
    for (int i = 0; i < 400; i++) n += (size_t)sprintf(deep + n, "{\"not\":");
    n += (size_t)sprintf(deep + n, "true");
    for (int i = 0; i < 400; i++) deep[n++] = '}';
    assert_int_equal(json_parse(deep, n, NULL, &d, &e), 0);
    assert_int_equal(schema_compile(d, NULL, &s, &e), -1);
    if (!strstr(e.msg, "too deeply")) { fprintf(stderr, "%s\n", e.msg); fail(); }
    json_free(d);
}

/* 1 valid, 0 invalid, -1 stopped; fails the test when something does not parse or compile */
static int check(const char *sch, const char *ins, bool fmt) {
    json *d = NULL, *i = NULL;
    qerr e;
    if (json_parse(sch, strlen(sch), NULL, &d, &e) || json_parse(ins, strlen(ins), NULL, &i, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        fail();
    }
    schema *s;
    schema_opts so = {0};
    so.assert_format = fmt;
    if (schema_compile(d, &so, &s, &e)) { fprintf(stderr, "%s\n", e.msg); fail(); }
    int r = schema_validate(s, i, NULL);
    schema_free(s);
    json_free(d);
    json_free(i);
    return r;
}

static void test_schema_keywords(void **state) {
    (void)state;
    assert_int_equal(check("{\"multipleOf\":0.01}", "19.99", false), 1);
    assert_int_equal(check("{\"multipleOf\":0.01}", "19.999", false), 0);
    assert_int_equal(check("{\"multipleOf\":0.1}", "1e300", false), 1);
    assert_int_equal(check("{\"maximum\":9007199254740992}", "9007199254740993", false), 0);
    assert_int_equal(check("{\"type\":\"integer\"}", "1.0", false), 1);
    assert_int_equal(check("{\"$schema\":\"http://json-schema.org/draft-04/schema#\",\"type\":\"integer\"}", "1.0", false), 0);
    assert_int_equal(check("{\"$schema\":\"http://json-schema.org/draft-04/schema#\",\"maximum\":3,\"exclusiveMaximum\":true}", "3", false), 0);
    assert_int_equal(check("{\"items\":[{\"type\":\"string\"}],\"additionalItems\":false}", "[\"a\",1]", false), 0);
    assert_int_equal(check("{\"dependencies\":{\"a\":[\"b\"]}}", "{\"a\":1}", false), 0);
    assert_int_equal(check("{\"maxLength\":2}", "\"\\ud83d\\ude00\u00e9\"", false), 1);
    assert_int_equal(check("{\"format\":\"date\"}", "\"2024-02-30\"", false), 1);
    assert_int_equal(check("{\"format\":\"date\"}", "\"2024-02-30\"", true), 0);
    assert_int_equal(check("{\"format\":\"ipv6\"}", "\"::ffff:1.2.3.4\"", true), 1);
    /* unevaluatedProperties does not see annotations of cousin subschemas */
    assert_int_equal(check("{\"allOf\":[{\"properties\":{\"foo\":true}},{\"unevaluatedProperties\":false}],"
                           "\"unevaluatedProperties\":false}", "{\"foo\":1}", false), 0);
    assert_int_equal(check("{\"allOf\":[{\"properties\":{\"foo\":true},\"unevaluatedProperties\":false}],"
                           "\"unevaluatedProperties\":false}", "{\"foo\":1}", false), 1);
    assert_int_equal(check("{\"enum\":[{\"a\":[1,2]}]}", "{\"a\":[1.0,2e0]}", false), 1);
    /* uniqueItems on a long array goes through hashing */
    char big[20000];
    size_t n = 0;
    n += (size_t)sprintf(big + n, "[");
    for (int i = 0; i < 2000; i++) n += (size_t)sprintf(big + n, "%d,", i);
    sprintf(big + n, "{\"x\":1},\"s\",{\"x\":1.0}]");
    assert_int_equal(check("{\"uniqueItems\":true}", big, false), 0);
    sprintf(big + n, "{\"x\":1},\"s\",{\"x\":1.5}]");
    assert_int_equal(check("{\"uniqueItems\":true}", big, false), 1);
}

static void test_regex(void **state) {
    (void)state;
    const struct { const char *re, *s; bool m; } cases[] = {
        {"^a{2,3}$", "aaa", true}, {"^a{2,3}$", "aaaa", false}, {"^a{2,}?$", "aaaaa", true},
        {"\\bfoo\\b", "a foo b", true}, {"\\bfoo\\b", "afoo", false}, {"^[^\\d\\s]+$", "ab-c", true},
        {"^[^\\d\\s]+$", "a b", false}, {"^(?:ab|cd)+$", "abcdab", true}, {"^(?<x>a)|b$", "zb", true},
        {"^\\u00e9.$", "\xc3\xa9\xf0\x9f\x90\xb2", true}, {"^[\\u{1F400}-\\u{1F4FF}]$", "\xf0\x9f\x90\xb2", true},
        {"^.$", "\n", false}, {"[]", "a", false}, {"^[^]$", "\n", true}, {"a{,5}", "a{,5}", true},
        {"^\\w+@\\w+\\.com$", "x_1@y.com", true}, {"^\\s$", "\xe3\x80\x80", true}, {"^\\cJ$", "\n", true},
        {"^\\p{Lu}\\p{Ll}+$", "\xc3\x89lan", true}, {"^\\p{Lu}", "\xc3\xa9lan", false},
        {"^[\\P{L}x]+$", "1x2", true}, {"^\\p{Letter}+$", "\xe6\x97\xa5\xe6\x9c\xac", true},
        {"^\\p{digit}$", "\xe0\xa7\xaa", true}, {"^\\p{gc=Zs}$", "\xe3\x80\x80", true},
        {"(a*)*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaac", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        regex *re;
        qerr e;
        if (regex_compile(cases[i].re, strlen(cases[i].re), &re, &e)) { fprintf(stderr, "%s\n", e.msg); fail(); }
        if (regex_match(re, cases[i].s, strlen(cases[i].s)) != cases[i].m) {
            fprintf(stderr, "/%s/ on '%s' should be %d\n", cases[i].re, cases[i].s, cases[i].m);
            fail();
        }
        regex_free(re);
    }
    const char *bad[] = {"(?=a)", "(?<!a)", "\\1", "\\p{Script=Greek}", "\\p{Alphabetic}", "a**", "(", "a)", "[b-a]", "x{3,2}", "\\k<n>",
                         "((a{1,100}){1,100}){1,100}", "^*"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        regex *re;
        qerr e;
        if (regex_compile(bad[i], strlen(bad[i]), &re, &e) == 0) { fprintf(stderr, "accepted /%s/\n", bad[i]); fail(); }
    }
}

static void test_schema_cli(void **state) {
    (void)state;
    char tmpl[] = "/tmp/quire-schema-XXXXXX";
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    char sp[256], ip[256], bp[256], up[256], args[1024];
    snprintf(sp, sizeof sp, "%s/s.json", dir);
    snprintf(ip, sizeof ip, "%s/i.json", dir);
    snprintf(bp, sizeof bp, "%s/b.json", dir);
    snprintf(up, sizeof up, "%s/u.json", dir);
    FILE *f = fopen(sp, "w");
    fputs("{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"minimum\":3}},\"title\":\"t\"}", f);
    fclose(f);
    f = fopen(ip, "w"); fputs("{\"n\": 2}", f); fclose(f);
    f = fopen(bp, "w"); fputs("{\"n\": ", f); fclose(f);
    f = fopen(up, "w"); fputs("{\"properties\":{\"a\":{\"frobnicate\":1}}}", f); fclose(f);
    snprintf(args, sizeof args, "schema validate %s %s 2>/dev/null", sp, ip);
    assert_int_equal(run_quire(args, NULL), 1);
    snprintf(args, sizeof args, "schema validate %s %s 2>&1", sp, ip);
    char *out;
    assert_int_equal(run_quire(args, &out), 1);
    assert_non_null(strstr(out, "/n"));
    assert_non_null(strstr(out, "minimum"));
    free(out);
    f = fopen(ip, "w"); fputs("{\"n\": 3}", f); fclose(f);
    snprintf(args, sizeof args, "schema validate %s %s", sp, ip);
    assert_int_equal(run_quire(args, NULL), 0);
    snprintf(args, sizeof args, "schema validate %s %s 2>/dev/null", sp, bp);
    assert_int_equal(run_quire(args, NULL), 2);
    snprintf(args, sizeof args, "schema check %s", sp);
    assert_int_equal(run_quire(args, NULL), 0);
    /* an unknown word is an annotation: listed, not refused ... */
    snprintf(args, sizeof args, "schema check %s 2>&1", up);
    assert_int_equal(run_quire(args, &out), 0);
    assert_non_null(strstr(out, "annotation"));
    assert_non_null(strstr(out, "/properties/a/frobnicate"));
    free(out);
    /* ... unless asked to refuse unknown words */
    snprintf(args, sizeof args, "schema check %s --strict-keywords 2>&1", up);
    assert_int_equal(run_quire(args, &out), 2);
    assert_non_null(strstr(out, "frobnicate"));
    assert_non_null(strstr(out, "/properties/a/frobnicate"));
    free(out);
    /* a keyword that asserts in an older draft is refused */
    FILE *g = fopen(up, "w");
    fputs("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\",\"divisibleBy\":3}}}", g);
    fclose(g);
    snprintf(args, sizeof args, "schema check %s 2>&1", up);
    assert_int_equal(run_quire(args, &out), 2);
    assert_non_null(strstr(out, "divisibleBy"));
    free(out);
    assert_int_equal(run_quire("schema --help", NULL), 0);
    remove(sp); remove(ip); remove(bp); remove(up);
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_regex),
        cmocka_unit_test(test_schema_errors_and_pointers),
        cmocka_unit_test(test_schema_keywords),
        cmocka_unit_test(test_draft2020_required),
        cmocka_unit_test(test_draft2020_optional),
        cmocka_unit_test(test_jsonschemabench),
        cmocka_unit_test(test_schema_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
