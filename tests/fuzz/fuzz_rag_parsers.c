/* fuzz_rag_parsers.c — libFuzzer target for the retrieval parsers: the
 * strict JSONL reader (parse, dump, re-parse must agree), the filter
 * expression parser and evaluator (and its posting-list form, which must
 * agree with the evaluator on a fixed set of documents), the analyzer and
 * the chunker. Any input must give a clean error or a consistent result,
 * never a bad access. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rag/rag.h"

static analyzer *an;

/* documents for the posting-list check */
#define FZ_DOCS 7
static meta fz_meta[FZ_DOCS];
static meta_index *fz_mi;
static const char *fz_ids[FZ_DOCS] = {"a", "b", "c", "d", "e", "f", "g"};

static int fz_setup(qerr *e) {
    static const char *docs[FZ_DOCS] = {
        "{\"lang\": \"en\", \"year\": 2020, \"draft\": true}",
        "{\"lang\": [\"de\", \"en\"], \"year\": 2019.5, \"tags\": [\"a\", \"b\", \"a\"]}",
        "{\"year\": -0, \"draft\": false, \"x\": \"\"}",
        "{}",
        "{\"lang\": 3, \"tags\": [true, 1, \"1\"]}",
        "{\"lang\": \"fr\", \"year\": 0, \"a.b\": \"x y\"}",
        "{\"n\": null, \"o\": {\"lang\": \"en\"}, \"lang\": \"EN\"}",
    };
    if (meta_index_new(&fz_mi, e)) return -1;
    for (int i = 0; i < FZ_DOCS; i++) {
        jv v;
        if (jsonl_parse(docs[i], strlen(docs[i]), &v, e)) return -1;
        int rc = meta_from_json(&fz_meta[i], &v, e);
        jsonl_free(&v);
        if (rc || meta_index_add(fz_mi, (uint32_t)i, &fz_meta[i], NULL, 0, e)) return -1;
    }
    return 0;
}

static void sink_term(const char *t, size_t len, void *ctx) {
    (void)ctx;
    volatile char c = len ? t[len - 1] : 0;
    (void)c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qerr e;
    if (!an && analyzer_new(&an, NULL, &e)) return 0;
    if (!fz_mi && fz_setup(&e)) abort();
    /* exact-size copies so that ASan catches reads past the end */
    char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    jv v;
    if (jsonl_parse(buf, size, &v, &e) == 0) {
        char *d;
        size_t dl;
        if (jsonl_dump(&v, &d, &dl, &e) == 0) {
            jv v2;
            int rc = jsonl_parse(d, dl, &v2, &e);
            assert(rc == 0 && v2.type == v.type);
            jsonl_free(&v2);
            free(d);
        }
        meta m;
        if (meta_from_json(&m, &v, &e) == 0) {
            filter *f;
            if (filter_parse(&f, "year >= 2020 and (lang = \"en\" or lang in [\"de\", 3]) and not draft = true", &e) == 0) {
                (void)filter_eval(f, &m, "x");
                filter_free(f);
            }
            meta_free(&m);
        }
        jsonl_free(&v);
    }
    /* the same bytes as a filter expression (NUL-terminated) */
    char *s = malloc(size + 1);
    if (s) {
        memcpy(s, data, size);
        s[size] = 0;
        filter *f;
        if (filter_parse(&f, s, &e) == 0) {
            meta m = {0};
            (void)filter_eval(f, &m, s);
            uint64_t bits[1];
            int rc = meta_index_allow(fz_mi, f, NULL, 0, true, FZ_DOCS, bits, &e);
            assert(rc >= 0);
            for (int i = 0; i < FZ_DOCS; i++) {
                bool want = filter_eval(f, &fz_meta[i], fz_ids[i]), got = (bits[0] >> i) & 1;
                assert(rc == 1 ? got == want : (got || !want));
            }
            filter_free(f);
        }
        free(s);
    }
    analyzer_run(an, buf, size, sink_term, NULL);
    chunk_opts co = {.max_tokens = 1 + (size ? data[0] % 32 : 0), .format = size > 1 ? data[1] % 2 : 0};
    chunk_span *sp;
    size_t ns;
    if (chunk_text(buf, size, &co, &sp, &ns, &e) == 0) {
        for (size_t i = 0; i < ns; i++) assert(sp[i].start < sp[i].end && sp[i].end <= size);
        free(sp);
    }
    free(buf);
    return 0;
}
