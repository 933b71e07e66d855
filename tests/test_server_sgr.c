/* test_server_sgr.c — structured output over HTTP: response_format
 * json_schema / json_object always yields JSON that our validator accepts
 * (sampled at temperature 1 with several seeds, streamed and not); keywords
 * that cannot be enforced are a 400 naming them under strict, and a
 * best-effort answer that reports its validity otherwise; a max_tokens below
 * the shortest document is a 400; /v1/extract returns conforming data whose
 * source spans point at the value in the document, and respects ACLs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sgr/sgr.h"
#include "testutil.h"

static schema *compile_text(const char *txt) {
    json *d = test_json_parse(txt);
    schema *s;
    qerr e;
    assert_int_equal(schema_compile(d, NULL, &s, &e), 0);
    json_free(d);
    return s;
}

static void assert_valid(const schema *s, const char *out, const char *what) {
    json *inst;
    qerr e;
    if (json_parse(out, strlen(out), NULL, &inst, &e)) fail_msg("%s: not JSON (%s): %s", what, e.msg, out);
    schema_error err;
    if (schema_validate(s, inst, &err) != 1) fail_msg("%s: invalid at %s (%s): %s", what, err.instance_ptr, err.msg, out);
    json_free(inst);
}

static const char *const schema_files[] = {"invoice", "patient", "tree", "misc"};

static void test_response_format_schema(void **st) {
    (void)st;
    test_server srv = srv_start("--slots 4");
    for (size_t k = 0; k < sizeof schema_files / sizeof *schema_files; k++) {
        char path[128];
        snprintf(path, sizeof path, "tests/data/extract/%s.json", schema_files[k]);
        size_t n;
        char *stxt = test_read_file(path, &n);
        schema *s = compile_text(stxt);
        for (int seed = 1; seed <= 3; seed++) {
            char *body = malloc(n + 1024);
            bool stream = seed == 3;
            snprintf(body, n + 1024,
                     "{\"messages\":[{\"role\":\"user\",\"content\":\"Fill it in.\"}],\"max_tokens\":200,\"temperature\":1.0,"
                     "\"seed\":%d,\"stream\":%s,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\","
                     "\"strict\":true,\"schema\":%s}}}",
                     seed, stream ? "true" : "false", stxt);
            char *r = srv_request(srv.port, "POST", "/v1/chat/completions", body, NULL);
            assert_int_equal(srv_status(r), 200);
            char what[128];
            snprintf(what, sizeof what, "%s seed %d%s", schema_files[k], seed, stream ? " (stream)" : "");
            if (!stream) {
                json *v = test_json_parse(srv_body(r));
                assert_string_equal(test_json_str(v, "/choices/0/finish_reason"), "stop");
                assert_valid(s, test_json_str(v, "/choices/0/message/content"), what);
                json_free(v);
            } else { /* concatenate the SSE deltas */
                char *text = calloc(1, 1 << 16);
                size_t tl = 0;
                for (const char *p = strstr(r, "data: {"); p; p = strstr(p + 1, "data: {")) {
                    const char *end = strstr(p, "\n\n");
                    char *ev = strndup(p + 6, (size_t)(end - p - 6));
                    json *v = test_json_parse(ev);
                    const char *d = test_json_str(v, "/choices/0/delta/content");
                    size_t dl = strlen(d);
                    assert_true(tl + dl < (1 << 16));
                    memcpy(text + tl, d, dl);
                    tl += dl;
                    json_free(v);
                    free(ev);
                }
                assert_valid(s, text, what);
                free(text);
            }
            free(r);
            free(body);
        }
        schema_free(s);
        free(stxt);
    }
    /* completions too */
    const char *sch = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\",\"minimum\":3,\"maximum\":7}},\"required\":[\"a\"]}";
    char body[1024];
    snprintf(body, sizeof body, "{\"prompt\":\"x\",\"max_tokens\":20,\"temperature\":1,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"a\",\"strict\":true,\"schema\":%s}}}", sch);
    int status;
    json *v = srv_call_json(srv.port, "POST", "/v1/completions", body, NULL, &status);
    assert_int_equal(status, 200);
    schema *s = compile_text(sch);
    assert_valid(s, test_json_str(v, "/choices/0/text"), "completions");
    schema_free(s);
    json_free(v);
    /* json_object: any object */
    v = srv_call_json(srv.port, "POST", "/v1/chat/completions",
             "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":60,\"temperature\":1,\"seed\":5,"
             "\"response_format\":{\"type\":\"json_object\"}}", NULL, &status);
    assert_int_equal(status, 200);
    json *o = test_json_parse(test_json_str(v, "/choices/0/message/content"));
    assert_true(json_is_object(o));
    json_free(o);
    json_free(v);
    assert_int_equal(srv_stop(&srv), 0);
}

static void expect_error(int port, const char *body, int want, const char *param) {
    int st;
    json *v = srv_call_json(port, "POST", "/v1/chat/completions", body, NULL, &st);
    if (st != want || strcmp(test_json_str(v, "/error/param"), param) != 0)
        fail_msg("%s: status %d param '%s' (want %d '%s')", body, st, test_json_str(v, "/error/param"), want, param);
    json_free(v);
}

static void test_response_format_errors(void **st) {
    (void)st;
    test_server srv = srv_start("");
    const char *uniq = "{\"type\":\"array\",\"items\":{\"type\":\"object\"},\"uniqueItems\":true,\"minItems\":2}";
    char body[2048];
    snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":30,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"u\",\"strict\":true,\"schema\":%s}}}", uniq);
    expect_error(srv.port, body, 400, "response_format.json_schema.schema");
    /* best effort: answered, and the answer says whether it conforms */
    snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":30,\"temperature\":1,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"u\",\"schema\":%s}}}", uniq);
    int status;
    json *v = srv_call_json(srv.port, "POST", "/v1/chat/completions", body, NULL, &status);
    assert_int_equal(status, 200);
    const json *enf = json_pointer_get(v, "/quire_schema/enforced", 22);
    assert_non_null(enf);
    assert_true(json_typeof(enf) == JSON_FALSE);
    const json *valid = json_pointer_get(v, "/quire_schema/valid", 19);
    assert_true(json_is_bool(valid));
    schema *s = compile_text(uniq);
    json *inst;
    qerr e;
    const char *content = test_json_str(v, "/choices/0/message/content");
    bool ok = json_parse(content, strlen(content), NULL, &inst, &e) == 0;
    schema_error se;
    bool really = ok && schema_validate(s, inst, &se) == 1;
    assert_int_equal(really, json_typeof(valid) == JSON_TRUE); /* the report tells the truth */
    if (ok) json_free(inst);
    json_free(v);
    /* the same streamed: the final chunk carries the report, and it tells
     * the truth about the concatenated deltas */
    snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":30,\"temperature\":1,\"seed\":2,\"stream\":true,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"u\",\"schema\":%s}}}", uniq);
    char *r = srv_request(srv.port, "POST", "/v1/chat/completions", body, NULL);
    assert_int_equal(srv_status(r), 200);
    char text[8192] = "";
    size_t tl = 0;
    int reports = 0, report_valid = -1;
    for (const char *p = strstr(r, "data: {"); p; p = strstr(p + 1, "data: {")) {
        const char *end = strstr(p, "\n\n");
        assert_non_null(end);
        char *ev = strndup(p + 6, (size_t)(end - p - 6));
        json *cv = test_json_parse(ev);
        const json *d = json_pointer_get(cv, "/choices/0/delta/content", 24);
        if (d) {
            const char *ds = test_json_str(cv, "/choices/0/delta/content");
            assert_true(tl + strlen(ds) < sizeof text);
            memcpy(text + tl, ds, strlen(ds) + 1);
            tl += strlen(ds);
        }
        const json *rv = json_pointer_get(cv, "/quire_schema/valid", 19);
        if (rv) {
            reports++;
            report_valid = json_typeof(rv) == JSON_TRUE;
            const json *fr = json_pointer_get(cv, "/choices/0/finish_reason", 24);
            assert_true(fr && json_typeof(fr) == JSON_STRING); /* only on the last chunk */
        }
        json_free(cv);
        free(ev);
    }
    assert_int_equal(reports, 1);
    ok = json_parse(text, tl, NULL, &inst, &e) == 0;
    really = ok && schema_validate(s, inst, &se) == 1;
    if (ok) json_free(inst);
    assert_int_equal(really, report_valid);
    free(r);
    schema_free(s);
    expect_error(srv.port,
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":2,\"response_format\":{\"type\":\"json_schema\","
                 "\"json_schema\":{\"name\":\"a\",\"strict\":true,\"schema\":{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"}},\"required\":[\"name\"]}}}}",
                 400, "max_tokens");
    expect_error(srv.port,
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":\"}\",\"response_format\":{\"type\":\"json_object\"}}", 400, "stop");
    expect_error(srv.port, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"xml\"}}", 400, "response_format");
    expect_error(srv.port, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"a\"}}}",
                 400, "response_format.json_schema.schema");
    assert_int_equal(srv_stop(&srv), 0);
}

static void check_spans(const json *v, const char *doc) {
    const json *spans = json_pointer_get(v, "/spans", 6), *data = json_pointer_get(v, "/data", 5);
    assert_true(json_is_object(spans));
    assert_true(json_is_object(data));
    for (size_t i = 0; i < spans->u.obj.n; i++) {
        const json_member *m = &spans->u.obj.m[i];
        const json *val = json_pointer_get(data, m->key, m->klen);
        assert_non_null(val);
        for (size_t k = 0; k < json_size(m->val); k++) {
            const json *sp = json_at(m->val, k);
            size_t a = (size_t)json_number(json_get(sp, "start")), b = (size_t)json_number(json_get(sp, "end"));
            assert_true(a < b && b <= strlen(doc));
            const char *txt = json_is_string(val) ? json_string(val) : val->u.num.text;
            size_t tl = json_is_string(val) ? json_string_len(val) : val->u.num.len;
            while (tl && txt[0] == ' ') txt++, tl--;
            while (tl && txt[tl - 1] == ' ') tl--;
            assert_int_equal(b - a, tl);
            assert_true(strncasecmp(doc + a, txt, tl) == 0);
        }
    }
}

static void test_extract_endpoint(void **st) {
    (void)st;
    char dir[] = "/tmp/quire-xsrv-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char keys[256], extra[1024];
    snprintf(keys, sizeof keys, "%s/keys", dir);
    FILE *f = fopen(keys, "w");
    assert_non_null(f);
    fputs("key-alice-0123456789 alice\nkey-bob-0123456789ab bob\n", f);
    fclose(f);
    snprintf(extra, sizeof extra, "--db %s/db --api-key-file %s", dir, keys);
    test_server srv = srv_start(extra);
    const char *A = "Authorization: Bearer key-alice-0123456789\r\n", *B = "Authorization: Bearer key-bob-0123456789ab\r\n";
    const char *doc = "Invoice INV-0042 from ACME Corp, total 1250 EUR, paid.";
    const char *sch = "{\"type\":\"object\",\"properties\":{\"vendor\":{\"enum\":[\"ACME Corp\",\"Globex\"]},\"currency\":{\"enum\":[\"EUR\",\"USD\"]},"
                      "\"total\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":100000}},\"required\":[\"vendor\",\"currency\",\"total\"]}";
    char body[2048];
    int status;
    snprintf(body, sizeof body, "{\"id\":\"inv1\",\"text\":\"%s\"}", doc);
    json *v = srv_call_json(srv.port, "POST", "/v1/documents", body, A, &status);
    assert_int_equal(status, 200);
    json_free(v);
    schema *s = compile_text(sch);
    for (int seed = 1; seed <= 3; seed++) {
        snprintf(body, sizeof body, "{\"document_id\":\"inv1\",\"schema\":%s,\"temperature\":1,\"seed\":%d}", sch, seed);
        v = srv_call_json(srv.port, "POST", "/v1/extract", body, A, &status);
        assert_int_equal(status, 200);
        assert_string_equal(test_json_str(v, "/document_id"), "inv1");
        const json *data = json_pointer_get(v, "/data", 5);
        char *txt;
        size_t tl;
        qerr e;
        assert_int_equal(json_serialize(data, NULL, &txt, &tl, &e), 0);
        assert_valid(s, txt, "extract");
        free(txt);
        check_spans(v, doc);
        json_free(v);
    }
    /* inline text, greedy */
    snprintf(body, sizeof body, "{\"text\":\"%s\",\"schema\":%s}", doc, sch);
    v = srv_call_json(srv.port, "POST", "/v1/extract", body, B, &status);
    assert_int_equal(status, 200);
    check_spans(v, doc);
    json_free(v);
    /* bob cannot read alice's document: 404, never 403 */
    snprintf(body, sizeof body, "{\"document_id\":\"inv1\",\"schema\":%s}", sch);
    v = srv_call_json(srv.port, "POST", "/v1/extract", body, B, &status);
    assert_int_equal(status, 404);
    json_free(v);
    v = srv_call_json(srv.port, "POST", "/v1/extract", "{\"schema\":{}}", A, &status);
    assert_int_equal(status, 400);
    assert_string_equal(test_json_str(v, "/error/param"), "text");
    json_free(v);
    schema_free(s);
    assert_int_equal(srv_stop(&srv), 0);
    snprintf(body, sizeof body, "rm -rf %s", dir);
    assert_int_equal(system(body), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_response_format_schema),
        cmocka_unit_test(test_response_format_errors),
        cmocka_unit_test(test_extract_endpoint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
