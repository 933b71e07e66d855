/* test_extract.c — `quire extract` is the specification: for every schema in
 * tests/data/extract, both test models, several seeds at temperature 1 and
 * budgets from the shortest document up, the output parses strictly and
 * validates; an unenforceable keyword is exit 2 naming it; `quire eval
 * extract` scores a prediction against itself as exact, and a changed label
 * by the definition of exact match and token F1. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sgr/sgr.h"
#include "testutil.h"

static const char *const schemas[] = {"invoice", "patient", "tree", "misc"};
static const char *const models[] = {"models/stories260K.gguf", "models/synthetic/syn-qwen2-Q8_0.gguf"};

static schema *load_schema(const char *name) {
    char path[256];
    snprintf(path, sizeof path, "tests/data/extract/%s.json", name);
    size_t n;
    char *txt = test_read_file(path, &n);
    json *doc;
    qerr e;
    assert_int_equal(json_parse(txt, n, NULL, &doc, &e), 0);
    free(txt);
    schema *s;
    assert_int_equal(schema_compile(doc, NULL, &s, &e), 0);
    json_free(doc);
    return s;
}

static void assert_valid(const schema *s, const char *out, const char *what) {
    json *inst;
    qerr e;
    size_t n = strlen(out);
    while (n && (out[n - 1] == '\n')) n--;
    if (json_parse(out, n, NULL, &inst, &e)) fail_msg("%s: not JSON (%s): %s", what, e.msg, out);
    schema_error err;
    int v = schema_validate(s, inst, &err);
    if (v != 1) fail_msg("%s: invalid at %s (%s): %s", what, err.instance_ptr, err.msg, out);
    json_free(inst);
}

static int shortest_tokens(const char *model, const char *sname) {
    char args[512], *out;
    snprintf(args, sizeof args, "extract -m %s --schema tests/data/extract/%s.json --shortest", shared_path(model), sname);
    assert_int_equal(run_quire(args, &out), 0);
    const char *p = strstr(out, "\"tokens\":");
    assert_non_null(p);
    int n = atoi(p + 9);
    free(out);
    assert_true(n > 0);
    return n;
}

static void test_always_valid(void **st) {
    (void)st;
    /* under the sanitizers (every mask walk ~5x slower) a smaller grid */
    bool san = getenv("QUIRE_TEST_SANITIZED") != NULL;
    int n_budgets = san ? 2 : 4, n_seeds = san ? 1 : 3;
    for (size_t si = 0; si < sizeof schemas / sizeof *schemas; si++) {
        schema *s = load_schema(schemas[si]);
        for (size_t mi = 0; mi < 2; mi++) {
            int n0 = shortest_tokens(models[mi], schemas[si]);
            int budgets[] = {n0, 256, n0 + 1, n0 + 3};
            for (int bi = 0; bi < n_budgets; bi++)
                for (int seed = 1; seed <= n_seeds; seed++) {
                    char args[768], *out, what[256];
                    snprintf(args, sizeof args,
                             "extract -m %s --schema tests/data/extract/%s.json -p 'Invoice INV-0042, 2 pens' "
                             "-n %d --temp 1.0 --seed %d -t 1%s",
                             shared_path(models[mi]), schemas[si], budgets[bi], seed, seed == 2 ? " --no-fast-forward" : "");
                    snprintf(what, sizeof what, "%s %s -n %d seed %d", schemas[si], models[mi], budgets[bi], seed);
                    int rc = run_quire(args, &out);
                    if (rc != 0) fail_msg("%s: exit %d", what, rc);
                    assert_valid(s, out, what);
                    free(out);
                }
        }
        schema_free(s);
    }
}

static void test_unsupported_is_named(void **st) {
    (void)st;
    char args[512], *out;
    snprintf(args, sizeof args, "extract -m %s --schema tests/data/extract/unsupported.json -p x 2>&1",
             shared_path(models[0]));
    assert_int_equal(run_quire(args, &out), 2);
    assert_non_null(strstr(out, "uniqueItems"));
    assert_non_null(strstr(out, "/properties/a"));
    free(out);
    /* best effort: generated anyway, then validated (exit 0 valid / 1 not) */
    snprintf(args, sizeof args, "extract -m %s --schema tests/data/extract/unsupported.json -p x --best-effort -n 64 2>&1",
             shared_path(models[0]));
    int rc = run_quire(args, &out);
    assert_true(rc == 0 || rc == 1);
    assert_non_null(strstr(out, "not enforced"));
    free(out);
}

static void test_budget_below_shortest(void **st) {
    (void)st;
    /* Never a truncated document: either a valid one or exit 2. */
    schema *s = load_schema("invoice");
    int n0 = shortest_tokens(models[1], "invoice");
    char args[512], *out;
    snprintf(args, sizeof args, "extract -m %s --schema tests/data/extract/invoice.json -p x -n %d --temp 1 --seed 7",
             shared_path(models[1]), n0 / 2);
    int rc = run_quire(args, &out);
    if (rc == 0) assert_valid(s, out, "half budget");
    else assert_int_equal(rc, 2);
    free(out);
    schema_free(s);
}

static void write_file(const char *path, const char *s) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(s, f);
    fclose(f);
}

static void test_eval_scores(void **st) {
    (void)st;
    char dir[] = "/tmp/quire-evalx-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[512], args[1024], *pred;
    snprintf(path, sizeof path, "%s/a.txt", dir);
    write_file(path, "Invoice INV-0042 dated 2024-03-01, 2 pens, 12.50 EUR.");
    /* the greedy prediction, used as its own label: exact 1 */
    snprintf(args, sizeof args, "extract -m %s --schema tests/data/extract/misc.json -f %s -n 200 --temp 0 -t 1",
             shared_path(models[0]), path);
    assert_int_equal(run_quire(args, &pred), 0);
    pred[strcspn(pred, "\n")] = 0;
    char line[4200];
    snprintf(path, sizeof path, "%s/labels.jsonl", dir);
    snprintf(line, sizeof line, "{\"doc\":\"a.txt\",\"label\":%s}\n", pred);
    write_file(path, line);
    char *out;
    snprintf(args, sizeof args, "eval extract -m %s --schema tests/data/extract/misc.json --docs %s --labels %s -n 200 --temp 0 -t 1 --json",
             shared_path(models[0]), dir, path);
    assert_int_equal(run_quire(args, &out), 0);
    assert_non_null(strstr(out, "\"valid_share\":1"));
    assert_non_null(strstr(out, "\"exact\":1,"));
    assert_non_null(strstr(out, "\"f1\":1,"));
    free(out);
    /* a label with one of 7 fields changed: exact = 6/7; the changed field is
     * "kind" (a string "event" vs "other event"): token F1 = 2*(1/1*1/2)/(1+1/2) = 2/3 */
    json *pj;
    qerr e;
    assert_int_equal(json_parse(pred, strlen(pred), NULL, &pj, &e), 0);
    assert_int_equal((int)json_size(pj), 7);
    json_free(pj);
    char *k = strstr(pred, "\"kind\":\"event\"");
    assert_non_null(k);
    char changed[2048];
    snprintf(changed, sizeof changed, "%.*s\"kind\":\"other event\"%s", (int)(k - pred), pred, k + strlen("\"kind\":\"event\""));
    snprintf(line, sizeof line, "{\"doc\":\"a.txt\",\"label\":%s}\n", changed);
    write_file(path, line);
    assert_int_equal(run_quire(args, &out), 0);
    const char *ex = strstr(out, "\"exact\":"), *f1 = strstr(out, "\"f1\":");
    assert_non_null(ex);
    assert_non_null(f1);
    assert_true(fabs(atof(ex + 8) - 6.0 / 7.0) < 1e-9);
    assert_true(fabs(atof(f1 + 5) - (6.0 + 2.0 / 3.0) / 7.0) < 1e-9);
    free(out);
    free(pred);
    snprintf(args, sizeof args, "rm -rf %s", dir);
    assert_int_equal(system(args), 0);
}

/* sgr_schema_prompt_text drops annotations only: on JSONSchemaBench files
 * (every 7th of each split) the bare schema compiles exactly when the
 * original does and classifies every labelled instance the same way; it
 * has no "description" left where the original had one on a schema, and a
 * property named "title" survives. */
static void test_bare_schema_same_meaning(void **state) {
    (void)state;
    const char *splits[] = {"Glaiveai2K", "Github_easy", "Github_trivial", "Snowplow"};
    int checked = 0, instances = 0, shorter = 0;
    for (int sp = 0; sp < 4; sp++) {
        char dir[256];
        snprintf(dir, sizeof dir, "%s", shared_path("jsonschemabench"));
        snprintf(dir + strlen(dir), sizeof dir - strlen(dir), "/%s", splits[sp]);
        size_t n;
        char **names = test_list_json(dir, &n);
        for (size_t i = 0; i < n; i++) {
            if (i % 7 == 0) {
                char path[512];
                snprintf(path, sizeof path, "%s/%s", dir, names[i]);
                size_t len;
                char *txt = test_read_file(path, &len);
                json *doc;
                qerr e;
                assert_int_equal(json_parse(txt, len, NULL, &doc, &e), 0);
                free(txt);
                const json *sch = json_get(doc, "schema");
                char *bare;
                size_t bl;
                assert_int_equal(sgr_schema_prompt_text(sch, &bare, &bl, &e), 0);
                json *bdoc;
                if (json_parse(bare, bl, NULL, &bdoc, &e)) fail_msg("%s: bare text is not JSON: %s", names[i], e.msg);
                char *full;
                size_t fl;
                assert_int_equal(json_serialize(sch, NULL, &full, &fl, &e), 0);
                if (bl < fl) shorter++;
                free(full);
                schema *s1 = NULL, *s2 = NULL;
                schema_opts so = {0};
                so.assert_format = true;
                int c1 = schema_compile(sch, &so, &s1, &e), c2 = schema_compile(bdoc, &so, &s2, &e);
                if (c1 != c2) fail_msg("%s: compiles %d, bare %d", names[i], c1, c2);
                const json *tests = json_get(doc, "tests");
                for (size_t k = 0; c1 == 0 && k < json_size(tests); k++) {
                    const json *data = json_get(json_at(tests, k), "data");
                    schema_error e1, e2;
                    int v1 = schema_validate(s1, data, &e1), v2 = schema_validate(s2, data, &e2);
                    if (v1 != v2) fail_msg("%s test %zu: valid %d, bare %d", names[i], k, v1, v2);
                    instances++;
                }
                schema_free(s1);
                schema_free(s2);
                json_free(bdoc);
                free(bare);
                json_free(doc);
                checked++;
            }
            free(names[i]);
        }
        free(names);
    }
    printf("bare schemas: %d files, %d instances classified alike, %d shorter\n", checked, instances, shorter);
    assert_true(checked > 500);
    /* annotations of schema objects go; data and property names stay */
    const char *src = "{\"title\":\"T\",\"description\":\"D\",\"type\":\"object\",\"properties\":{\"title\":{\"type\":\"string\","
                      "\"description\":\"x\",\"examples\":[\"a\"]},\"k\":{\"enum\":[{\"description\":1}],\"default\":2}},"
                      "\"items\":[{\"$comment\":\"c\",\"const\":{\"title\":3}}],\"anyOf\":[{\"title\":\"u\"}],"
                      "\"$defs\":{\"d\":{\"readOnly\":true,\"type\":\"null\"}}}";
    json *v;
    qerr e;
    assert_int_equal(json_parse(src, strlen(src), NULL, &v, &e), 0);
    char *bare;
    size_t bl;
    assert_int_equal(sgr_schema_prompt_text(v, &bare, &bl, &e), 0);
    assert_string_equal(bare, "{\"type\":\"object\",\"properties\":{\"title\":{\"type\":\"string\"},\"k\":{\"enum\":["
                              "{\"description\":1}]}},\"items\":[{\"const\":{\"title\":3}}],\"anyOf\":[{}],\"$defs\":{\"d\":"
                              "{\"type\":\"null\"}}}");
    free(bare);
    json_free(v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_always_valid),
        cmocka_unit_test(test_unsupported_is_named),
        cmocka_unit_test(test_budget_below_shortest),
        cmocka_unit_test(test_eval_scores),
        cmocka_unit_test(test_bare_schema_same_meaning),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
