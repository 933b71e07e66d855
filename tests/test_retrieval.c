/* test_retrieval.c — analyzer, BM25, chunking, filters, ACL, index. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rag/rag.h"

/* ------------------------------------------------------------------------ */
/* Analyzer */
typedef struct toks {
    char buf[4096];
    size_t n;
} toks;
static void tok_emit(const char *t, size_t len, void *ctx) {
    toks *o = ctx;
    if (o->n) o->buf[o->n++] = '|';
    memcpy(o->buf + o->n, t, len);
    o->n += len;
    o->buf[o->n] = 0;
}
static const char *analyze(analyzer *a, const char *s) {
    static toks o;
    o.n = 0;
    o.buf[0] = 0;
    analyzer_run(a, s, strlen(s), tok_emit, &o);
    return o.buf;
}

static void test_analyzer(void **state) {
    (void)state;
    qerr e;
    analyzer *a;
    assert_int_equal(analyzer_new(&a, NULL, &e), 0);
    /* possessives, stop words, stems */
    assert_string_equal(analyze(a, "The dog's bones were running"), "dog|bone|were|run");
    assert_string_equal(analyze(a, "John’s cars AND the Cats"), "john|car|cat");
    assert_string_equal(analyze(a, "it is not such a thing"), "thing");
    assert_string_equal(analyze(a, "connections connected connecting"), "connect|connect|connect");
    assert_string_equal(analyze(a, "relational generalizations"), "relat|gener");
    /* numbers stay whole; punctuation splits */
    assert_string_equal(analyze(a, "pH 3.5, 1,000 cells; IL-6 (v2.0)."), "ph|3.5|1,000|cell|il|6|v2.0");
    assert_string_equal(analyze(a, "don't e.g. foo_bar end."), "don't|e.g|foo_bar|end");
    /* Unicode: case folding, letters with combining marks, Han per character */
    assert_string_equal(analyze(a, "ÉCOLE Straße"), "école|straße");
    assert_string_equal(analyze(a, "cafe\xcc\x81 na\xc3\xafve"), "cafe\xcc\x81|naïv");
    assert_string_equal(analyze(a, "中文检索"), "中|文|检|索");
    assert_string_equal(analyze(a, "Москва ДОМА"), "москва|дома");
    assert_string_equal(analyze(a, "   ...  "), "");
    assert_true(analyzer_is_stopword("the", 3) && !analyzer_is_stopword("they're", 7));
    /* invalid UTF-8 is skipped, never read past the end */
    assert_string_equal(analyze(a, "ab\xff\xfe" "cd"), "ab|cd");
    analyzer_free(a);
    /* options */
    analyzer_opts o = {.keep_stopwords = true, .no_stem = true};
    assert_int_equal(analyzer_new(&a, &o, &e), 0);
    assert_string_equal(analyze(a, "The Running"), "the|running");
    analyzer_free(a);
}

/* ------------------------------------------------------------------------ */
/* BM25 */
static void test_bm25_hand(void **state) {
    (void)state;
    qerr e;
    analyzer *a;
    assert_int_equal(analyzer_new(&a, NULL, &e), 0);
    bm25_params p;
    bm25_params_default(&p);
    p.exact_norms = true;
    bm25 *x;
    assert_int_equal(bm25_new(&x, &p, &e), 0);
    const char *docs[] = {"apple banana apple", "banana cherry", "cherry cherry cherry date", "date"};
    for (int i = 0; i < 4; i++) {
        size_t l = strlen(docs[i]);
        uint32_t id;
        assert_int_equal(bm25_add(x, a, &docs[i], &l, &id, &e), 0);
        assert_int_equal(id, (uint32_t)i);
    }
    /* query "apple cherry": N=4, lengths 3,2,4,1, avgdl=2.5, k1=0.9, b=0.4
     * idf(apple, df=1) = ln(1 + 3.5/1.5); idf(cherry, df=2) = ln(1 + 2.5/2.5) = ln 2
     * doc0: apple tf 2 dl 3 -> idf * 2/(2 + 0.9*(0.6 + 0.4*3/2.5))
     * doc1: cherry tf 1 dl 2 ; doc2: cherry tf 3 dl 4 */
    double ia = log(1 + 3.5 / 1.5), ic = log(2.0);
    double s0 = ia * 2 / (2 + 0.9 * (0.6 + 0.4 * 3 / 2.5));
    double s1 = ic * 1 / (1 + 0.9 * (0.6 + 0.4 * 2 / 2.5));
    double s2 = ic * 3 / (3 + 0.9 * (0.6 + 0.4 * 4 / 2.5));
    bm25_hit h[4];
    int n;
    assert_int_equal(bm25_search(x, a, "Apple cherries", 14, 4, NULL, NULL, false, h, &n, NULL, &e), 0);
    assert_int_equal(n, 3);
    assert_int_equal(h[0].id, 0);
    assert_int_equal(h[1].id, 2);
    assert_int_equal(h[2].id, 1);
    assert_float_equal(h[0].score, s0, 1e-5);
    assert_float_equal(h[1].score, s2, 1e-5);
    assert_float_equal(h[2].score, s1, 1e-5);
    /* a repeated query term weighs twice */
    assert_int_equal(bm25_search(x, a, "apple apple", 11, 1, NULL, NULL, false, h, &n, NULL, &e), 0);
    assert_float_equal(h[0].score, 2 * s0, 1e-5);
    /* delete: gone from results */
    bm25_delete(x, 0);
    assert_int_equal(bm25_search(x, a, "apple cherry", 12, 4, NULL, NULL, false, h, &n, NULL, &e), 0);
    assert_int_equal(n, 2);
    assert_int_equal(h[0].id, 2);
    bm25_free(x);
    analyzer_free(a);
    /* SmallFloat: exact below 24, 4 significant bits above, monotone */
    for (uint32_t i = 0; i < 24; i++) assert_int_equal(bm25_byte4_to_int(bm25_int_to_byte4(i)), i);
    uint32_t prev = 0;
    for (int b = 0; b < 256; b++) {
        uint32_t v = bm25_byte4_to_int((uint8_t)b);
        assert_true(b == 0 || v > prev);
        assert_int_equal(bm25_int_to_byte4(v), b);
        prev = v;
    }
    assert_int_equal(bm25_byte4_to_int(bm25_int_to_byte4(100)), 96);
}

static bool odd_filter(uint32_t id, void *ctx) { (void)ctx; return id % 3 != 1; }

static void test_bm25_maxscore_equals_exhaustive(void **state) {
    (void)state;
    qerr e;
    analyzer *a;
    analyzer_opts ao = {.keep_stopwords = true, .no_stem = true};
    assert_int_equal(analyzer_new(&a, &ao, &e), 0);
    for (int fields = 1; fields <= 2; fields++) {
        bm25_params p;
        bm25_params_default(&p);
        p.n_fields = fields;
        p.field_weight[1] = 0.5f;
        bm25 *x;
        assert_int_equal(bm25_new(&x, &p, &e), 0);
        qrng r;
        qrng_seed(&r, 7 + (uint64_t)fields);
        char buf[2][4096];
        for (int d = 0; d < 3000; d++) {
            const char *f[2];
            size_t fl[2];
            for (int k = 0; k < fields; k++) {
                int len = 1 + (int)(qrng_next(&r) % 60), o = 0;
                for (int w = 0; w < len; w++) {
                    /* Zipf-like vocabulary of 500 words */
                    uint64_t z = qrng_next(&r) % 500;
                    z = z * z / 500;
                    o += snprintf(buf[k] + o, sizeof buf[k] - (size_t)o, "w%llu ", (unsigned long long)z);
                }
                f[k] = buf[k];
                fl[k] = (size_t)o;
            }
            uint32_t id;
            assert_int_equal(bm25_add(x, a, f, fl, &id, &e), 0);
            if (qrng_next(&r) % 17 == 0) bm25_delete(x, id);
        }
        for (int q = 0; q < 200; q++) {
            char qs[512];
            int o = 0, nt = 1 + (int)(qrng_next(&r) % 8);
            for (int t = 0; t < nt; t++) {
                uint64_t z = qrng_next(&r) % 500;
                o += snprintf(qs + o, sizeof qs - (size_t)o, "w%llu ", (unsigned long long)(z * z / 500));
            }
            int k = 1 + (int)(qrng_next(&r) % 50);
            bm25_hit h1[50], h2[50];
            int n1, n2;
            bm25_filter_fn flt = q % 2 ? odd_filter : NULL;
            bm25_stats st;
            assert_int_equal(bm25_search(x, a, qs, (size_t)o, k, flt, NULL, false, h1, &n1, &st, &e), 0);
            assert_int_equal(bm25_search(x, a, qs, (size_t)o, k, flt, NULL, true, h2, &n2, NULL, &e), 0);
            assert_int_equal(n1, n2);
            for (int i = 0; i < n1; i++) {
                assert_int_equal(h1[i].id, h2[i].id);
                assert_true(h1[i].score == h2[i].score);
                assert_false(bm25_is_deleted(x, h1[i].id));
                if (flt) assert_true(odd_filter(h1[i].id, NULL));
            }
        }
        bm25_free(x);
    }
    analyzer_free(a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_analyzer),
        cmocka_unit_test(test_bm25_hand),
        cmocka_unit_test(test_bm25_maxscore_equals_exhaustive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
