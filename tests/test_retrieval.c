/* test_retrieval.c — analyzer, BM25, chunking, filters, ACL, index. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libstemmer.h>

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
static const char *stem(const char *w, char *out) {
    int32_t cp[64];
    size_t n = strlen(w);
    for (size_t i = 0; i < n; i++) cp[i] = (unsigned char)w[i];
    n = porter_stem(cp, n);
    for (size_t i = 0; i < n; i++) out[i] = (char)cp[i];
    out[n] = 0;
    return out;
}

typedef struct stemcmp {
    struct sb_stemmer *sb;
    int n, n_diff;
} stemcmp;

static void stem_cmp_emit(const char *t, size_t len, void *ctx) {
    stemcmp *c = ctx;
    if (len < 3 || len > 60) return;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)t[i] >= 0x80) return;
    char w[64], mine[64];
    memcpy(w, t, len);
    w[len] = 0;
    stem(w, mine);
    const sb_symbol *s = sb_stemmer_stem(c->sb, (const sb_symbol *)w, (int)len);
    int sl = sb_stemmer_length(c->sb);
    c->n++;
    if ((int)strlen(mine) == sl && memcmp(mine, s, (size_t)sl) == 0) return;
    c->n_diff++;
    /* the only differences from the published algorithm: -logi and -bli in step 2 */
    bool logi = sl >= 4 && memcmp(s + sl - 4, "logi", 4) == 0, bli = sl >= 3 && memcmp(s + sl - 3, "bli", 3) == 0;
    if (!logi && !bli) fprintf(stderr, "porter: %s -> %s, published algorithm %.*s\n", w, mine, sl, (const char *)s);
    assert_true(logi || bli);
}

/* Lucene's Porter variant: hand-checked words, then every ASCII word of
 * SciFact against Snowball's "porter" (the published algorithm, a second
 * implementation): equal except for the two step-2 departures. */
static void test_porter(void **state) {
    (void)state;
    const char *cases[][2] = {
        {"caresses", "caress"}, {"ponies", "poni"},     {"cats", "cat"},          {"feed", "feed"},
        {"agreed", "agre"},     {"hopping", "hop"},     {"filing", "file"},       {"happy", "happi"},
        {"relational", "relat"}, {"generalization", "gener"}, {"physiology", "physiolog"},
        {"biology", "biologi"}, {"possibly", "possibl"}, {"s", "s"},             {"us", "us"},
        {"xyz", "xyz"},         {"controlling", "control"}, {"electricity", "electr"}, {"adoption", "adopt"},
    };
    char out[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        stem(cases[i][0], out);
        if (strcmp(out, cases[i][1])) fprintf(stderr, "%s -> %s, expected %s\n", cases[i][0], out, cases[i][1]);
        assert_string_equal(out, cases[i][1]);
    }
    /* the analyzer: "s" (from "S-phase") stays a term instead of becoming an empty one */
    analyzer *a;
    qerr e;
    assert_int_equal(analyzer_new(&a, NULL, &e), 0);
    assert_string_equal(analyze(a, "S-phase physiology"), "s|phase|physiolog");
    analyzer_free(a);
    const char *corpus = shared_path("retrieval/scifact/corpus.jsonl");
    size_t len;
    char *buf = test_read_file(corpus, &len);
    if (!buf) fail_msg("missing %s", corpus);
    analyzer_opts o = {.no_stem = true};
    assert_int_equal(analyzer_new(&a, &o, &e), 0);
    stemcmp c = {sb_stemmer_new("porter", "UTF_8"), 0, 0};
    assert_non_null(c.sb);
    size_t lim = getenv("QUIRE_TEST_SANITIZED") ? len / 10 : len;
    analyzer_run(a, buf, lim, stem_cmp_emit, &c);
    fprintf(stderr, "porter: %d words, %d stemmed differently from the published algorithm (-logi, -bli)\n", c.n, c.n_diff);
    assert_true(c.n > 100000 || (getenv("QUIRE_TEST_SANITIZED") && c.n > 10000));
    assert_true(c.n_diff > 0);
    sb_stemmer_delete(c.sb);
    analyzer_free(a);
    free(buf);
}

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


/* ------------------------------------------------------------------------ */
/* JSON reader */
/* BM25 persistence: an index with deletes saves to the same bytes as one
 * built from its live documents only; loading gives the same search results
 * (bit-identical scores, ids renumbered); a checksum-valid file with an
 * inconsistent structure is rejected with a reason. */
static void test_bm25_persist(void **state) {
    (void)state;
    qerr e;
    analyzer *a;
    assert_int_equal(analyzer_new(&a, NULL, &e), 0);
    for (int fields = 1; fields <= 2; fields++) {
        bm25_params p;
        bm25_params_default(&p);
        p.n_fields = fields;
        bm25 *full, *live;
        assert_int_equal(bm25_new(&full, &p, &e), 0);
        assert_int_equal(bm25_new(&live, &p, &e), 0);
        qrng r;
        qrng_seed(&r, 11 + (uint64_t)fields);
        char buf[2][4096];
        uint32_t *map = malloc(2000 * sizeof *map); /* full id -> live id */
        uint32_t n_live = 0;
        for (int d = 0; d < 2000; d++) {
            const char *f[2];
            size_t fl[2];
            for (int k = 0; k < fields; k++) {
                int len = (int)(qrng_next(&r) % 40), o = 0; /* some empty fields */
                for (int w = 0; w < len; w++) {
                    uint64_t z = qrng_next(&r) % 400;
                    o += snprintf(buf[k] + o, sizeof buf[k] - (size_t)o, "word%llu ", (unsigned long long)(z * z / 400));
                }
                f[k] = buf[k];
                fl[k] = (size_t)o;
            }
            uint32_t id, lid;
            assert_int_equal(bm25_add(full, a, f, fl, &id, &e), 0);
            if (qrng_next(&r) % 7 == 0) { bm25_delete(full, id); map[id] = UINT32_MAX; }
            else { assert_int_equal(bm25_add(live, a, f, fl, &lid, &e), 0); map[id] = lid; n_live++; }
        }
        uint8_t *b1, *b2;
        size_t n1, n2;
        assert_int_equal(bm25_save_buf(full, &b1, &n1, &e), 0);
        assert_int_equal(bm25_save_buf(live, &b2, &n2, &e), 0);
        assert_int_equal(n1, n2);
        assert_memory_equal(b1, b2, n1);
        bm25 *ld;
        assert_int_equal(bm25_load_memory(&ld, b1, n1, &e), 0);
        assert_int_equal(bm25_count(ld), n_live);
        assert_true(bm25_params_equal(ld, &p));
        for (int q = 0; q < 100; q++) {
            char qs[256];
            int o = 0, nt = 1 + (int)(qrng_next(&r) % 6);
            for (int t = 0; t < nt; t++) {
                uint64_t z = qrng_next(&r) % 400;
                o += snprintf(qs + o, sizeof qs - (size_t)o, "word%llu ", (unsigned long long)(z * z / 400));
            }
            bm25_hit h1[20], h2[20];
            int k1, k2;
            assert_int_equal(bm25_search(live, a, qs, (size_t)o, 20, NULL, NULL, false, h1, &k1, NULL, &e), 0);
            assert_int_equal(bm25_search(ld, a, qs, (size_t)o, 20, NULL, NULL, false, h2, &k2, NULL, &e), 0);
            assert_int_equal(k1, k2);
            for (int j = 0; j < k1; j++) {
                assert_int_equal(h1[j].id, h2[j].id);
                assert_true(h1[j].score == h2[j].score);
            }
        }
        bm25_free(ld);
        /* damage: a bad checksum; then a consistent checksum over a wrong
         * structure (one term frequency changed) */
        b1[n1 / 2] ^= 1;
        assert_int_not_equal(bm25_load_memory(&ld, b1, n1, &e), 0);
        assert_non_null(strstr(e.msg, "checksum"));
        b1[n1 / 2] ^= 1;
        /* the last u32 before the CRC is the last posting's tf */
        uint32_t tf;
        memcpy(&tf, b1 + n1 - 8, 4);
        tf++;
        memcpy(b1 + n1 - 8, &tf, 4);
        uint32_t crc = q_crc32c(0, b1, n1 - 4);
        memcpy(b1 + n1 - 4, &crc, 4);
        assert_int_not_equal(bm25_load_memory(&ld, b1, n1, &e), 0);
        assert_non_null(strstr(e.msg, "add up"));
        assert_int_not_equal(bm25_load_memory(&ld, b1, 10, &e), 0);
        /* postings made by another analyzer version are refused (the index rebuilds them) */
        uint32_t av = ANALYZER_VERSION + 1;
        memcpy(b2 + 12, &av, 4);
        crc = q_crc32c(0, b2, n2 - 4);
        memcpy(b2 + n2 - 4, &crc, 4);
        assert_int_not_equal(bm25_load_memory(&ld, b2, n2, &e), 0);
        assert_non_null(strstr(e.msg, "analyzer version"));
        free(b1);
        free(b2);
        free(map);
        bm25_free(full);
        bm25_free(live);
    }
    analyzer_free(a);
}

static void test_jsonl_strict(void **state) {
    (void)state;
    qerr e;
    jv v;
    const char *ok = "{\"_id\": \"a\\u00e9\\ud83d\\ude00\", \"n\": -1.5e3, \"t\": true, \"x\": null, \"arr\": [1, \"s\", {}]}";
    assert_int_equal(jsonl_parse(ok, strlen(ok), &v, &e), 0);
    assert_string_equal(jsonl_get(&v, "_id")->str, "aé😀");
    assert_true(jsonl_get(&v, "n")->num == -1500);
    assert_int_equal(jsonl_get(&v, "arr")->len, 3);
    assert_null(jsonl_get(&v, "missing"));
    char *dump;
    assert_int_equal(jsonl_dump(&v, &dump, NULL, &e), 0);
    jv v2;
    assert_int_equal(jsonl_parse(dump, strlen(dump), &v2, &e), 0);
    assert_string_equal(jsonl_get(&v2, "_id")->str, "aé😀");
    jsonl_free(&v2);
    free(dump);
    jsonl_free(&v);
    const char *bad[] = {"{\"a\":1,}", "[1,]", "01", "{\"a\":1 \"b\":2}", "\"\\x\"", "\"\\ud800\"", "{\"a\":1,\"a\":2}",
                         "\"a\nb\"", "[1] 2", "tru", "-", "1.", "1e", "\"\xff\"", "{\"a\"}", "", "[", "\"\xed\xa0\x80\"", "1e999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (jsonl_parse(bad[i], strlen(bad[i]), &v, &e) == 0) { fprintf(stderr, "accepted: %s\n", bad[i]); fail(); }
        assert_non_null(strstr(e.msg, "JSON:"));
    }
    char deep[300];
    memset(deep, '[', sizeof deep);
    assert_int_equal(jsonl_parse(deep, sizeof deep, &v, &e), -1);
    assert_non_null(strstr(e.msg, "deep"));
}

/* ------------------------------------------------------------------------ */
/* Chunking */
static bool sp(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

static void check_chunks(const char *t, size_t len, const chunk_opts *o, const chunk_span *c, size_t n) {
    size_t covered = 0; /* every non-space byte is inside some chunk */
    for (size_t i = 0; i < n; i++) {
        assert_true(c[i].start < c[i].end && c[i].end <= len);
        assert_false(sp(t[c[i].start]));
        assert_false(sp(t[c[i].end - 1]));
        int tok = o->count ? o->count(t + c[i].start, c[i].end - c[i].start, o->count_ctx)
                           : chunk_count_words(t + c[i].start, c[i].end - c[i].start, NULL);
        assert_true(tok <= o->max_tokens);
        if (i) assert_true(c[i].start > c[i - 1].start && c[i].end > c[i - 1].end);
        if (o->overlap == 0 && i) assert_true(c[i].start >= c[i - 1].end);
        for (size_t k = covered; k < c[i].start; k++) assert_true(sp(t[k]));
        if (c[i].end > covered) covered = c[i].end;
    }
    for (size_t k = covered; k < len; k++) assert_true(sp(t[k]));
}

static void test_chunk_offsets(void **state) {
    (void)state;
    qerr e;
    qrng r;
    qrng_seed(&r, 99);
    const char *words[] = {"alpha", "beta.", "gamma!", "delta?", "épsilon", "ζήτα", "x", "3.5", "(note).", "\"quoted.\"",
                           "supercalifragilisticexpialidocious", "中文", "#", "##", "e.g."};
    for (int it = 0; it < 300; it++) {
        char text[8192];
        size_t n = 0;
        int nw = (int)(qrng_next(&r) % 400);
        for (int w = 0; w < nw && n < sizeof text - 64; w++) {
            uint64_t z = qrng_next(&r) % 40;
            const char *sep = z < 30 ? " " : z < 34 ? "\n" : z < 37 ? "\n\n" : z < 38 ? "\n\n# Heading " : z < 39 ? "  \t" : "\n \n";
            n += (size_t)snprintf(text + n, sizeof text - n, "%s%s", w ? sep : (z % 2 ? "  " : ""), words[qrng_next(&r) % 15]);
            if (qrng_next(&r) % 50 == 0) { /* a very long "word" */
                for (int k = 0; k < 200 && n < sizeof text - 64; k++) text[n++] = (char)('a' + k % 26);
            }
        }
        text[n] = 0;
        chunk_opts o = {.max_tokens = 1 + (int)(qrng_next(&r) % 40), .format = (int)(qrng_next(&r) % 2)};
        o.overlap = (int)(qrng_next(&r) % (uint64_t)o.max_tokens);
        if (it % 3 == 0) o.overlap = 0;
        chunk_span *c;
        size_t nc;
        assert_int_equal(chunk_text(text, n, &o, &c, &nc, &e), 0);
        check_chunks(text, n, &o, c, nc);
        free(c);
    }
    /* paragraphs pack together; Markdown headings start a chunk */
    const char *md = "# Title\n\nfirst para here.\n\nsecond para.\n## Sub\nmore text";
    chunk_opts o = {.max_tokens = 100, .format = CHUNK_MARKDOWN};
    chunk_span *c;
    size_t nc;
    assert_int_equal(chunk_text(md, strlen(md), &o, &c, &nc, &e), 0);
    assert_int_equal(nc, 2);
    assert_int_equal(c[0].start, 0);
    assert_int_equal(c[1].start, strstr(md, "## Sub") - md);
    assert_int_equal(c[1].end, strlen(md));
    free(c);
    o.format = CHUNK_TEXT;
    assert_int_equal(chunk_text(md, strlen(md), &o, &c, &nc, &e), 0);
    assert_int_equal(nc, 1);
    free(c);
    /* sentences when a paragraph is over budget, with overlap */
    const char *p = "One two three. Four five six. Seven eight nine. Ten eleven twelve.";
    chunk_opts o2 = {.max_tokens = 6, .overlap = 3};
    assert_int_equal(chunk_text(p, strlen(p), &o2, &c, &nc, &e), 0);
    assert_int_equal(nc, 3);
    assert_int_equal(c[0].start, 0);
    assert_int_equal(c[0].end, strstr(p, " Seven") - p);
    assert_int_equal(c[1].start, strstr(p, "Four") - p);
    assert_int_equal(c[2].end, strlen(p));
    free(c);
    /* bad options are named */
    o2.overlap = 6;
    assert_int_equal(chunk_text(p, strlen(p), &o2, &c, &nc, &e), -1);
    assert_non_null(strstr(e.msg, "overlap"));
    assert_int_equal(chunk_text("   \n\n  ", 7, &o, &c, &nc, &e), 0);
    assert_int_equal(nc, 0);
    free(c);
}

/* ------------------------------------------------------------------------ */
/* Filters */
static void test_filter(void **state) {
    (void)state;
    qerr e;
    jv j;
    const char *mj = "{\"year\": 2021, \"lang\": \"de\", \"draft\": false, \"tags\": [\"a\", \"b\"], \"score\": 0.5, \"nested\": {\"x\": 1}}";
    assert_int_equal(jsonl_parse(mj, strlen(mj), &j, &e), 0);
    meta m;
    assert_int_equal(meta_from_json(&m, &j, &e), 0);
    jsonl_free(&j);
    struct { const char *expr; bool want; } cases[] = {
        {"year >= 2020 and (lang = \"en\" or lang in [\"de\",\"fr\"]) and not draft = true", true},
        {"year > 2021", false},
        {"year <= 2021 AND year < 2022", true},
        {"lang != \"de\"", false},
        {"lang != \"en\"", true},
        {"missing != 1", true},
        {"missing = 1 or missing exists", false},
        {"tags = \"b\"", true},
        {"tags in [\"c\", \"a\"]", true},
        {"tags in [\"c\"]", false},
        {"score < 1 and score > 0.25", true},
        {"lang >= \"d\" and lang < \"e\"", true},
        {"year = \"2021\"", false},
        {"draft = false", true},
        {"nested exists", false},
        {"_id = \"doc-7\"", true},
        {"not (year = 2021)", false},
        {"year = 2021 or year = 1 and lang = \"xx\"", true}, /* and binds tighter */
        {"(year = 2021 or year = 1) and lang = \"xx\"", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        filter *f;
        if (filter_parse(&f, cases[i].expr, &e)) { fprintf(stderr, "%s: %s\n", cases[i].expr, e.msg); fail(); }
        if (filter_eval(f, &m, "doc-7") != cases[i].want) { fprintf(stderr, "wrong: %s\n", cases[i].expr); fail(); }
        filter_free(f);
    }
    meta_free(&m);
    struct { const char *expr, *msg; } errs[] = {
        {"", "empty expression"},
        {"year >=", "expected a value (string, number, true, false), found end of expression at column 8"},
        {"year 2020", "expected an operator"},
        {"(year = 1", "expected ')'"},
        {"year = 1 lang = 2", "unexpected field name"},
        {"lang in \"de\"", "expected '['"},
        {"lang in [\"de\" \"fr\"]", "expected ',' or ']'"},
        {"draft > true", "booleans compare only"},
        {"lang = \"unterminated", "bad token"},
        {"= 3", "expected a field name"},
        {"year ! 3", "operator"},
        {"and", "expected a field name"},
    };
    for (size_t i = 0; i < sizeof errs / sizeof *errs; i++) {
        filter *f;
        assert_int_equal(filter_parse(&f, errs[i].expr, &e), -1);
        if (!strstr(e.msg, errs[i].msg)) { fprintf(stderr, "'%s': got '%s', want '%s'\n", errs[i].expr, e.msg, errs[i].msg); fail(); }
        assert_non_null(strstr(e.msg, "filter:"));
    }
}

/* ------------------------------------------------------------------------ */
/* ACL and filters inside bm25 / vector / hybrid search */
static const char *bert_path(void) { return shared_path("models/synthetic/syn-bert-F16.gguf"); }

static void add_tenant_docs(rag_index *x) {
    qerr e;
    /* 40 documents: tenant A (10), tenant B (20), public (10); all mention "report" */
    for (int i = 0; i < 40; i++) {
        char id[32], text[256], mj[128];
        const char *acl_a[] = {"tenant:a"}, *acl_b[] = {"tenant:b", "group:b-admins"};
        int t = i < 10 ? 0 : i < 30 ? 1 : 2;
        snprintf(id, sizeof id, "%c%d", "abp"[t], i);
        snprintf(text, sizeof text, "quarterly report number %d about revenue and %s matters", i, t == 0 ? "alpha" : t == 1 ? "beta" : "public");
        snprintf(mj, sizeof mj, "{\"year\": %d, \"lang\": \"%s\"}", 2015 + i % 10, i % 2 ? "en" : "de");
        index_doc d = {.id = id, .title = "Report", .text = text, .text_len = strlen(text), .meta_json = mj,
                       .acl = t == 0 ? acl_a : t == 1 ? acl_b : NULL, .n_acl = t == 0 ? 1 : t == 1 ? 2 : 0};
        if (index_add(x, &d, 1, &e)) { fprintf(stderr, "%s\n", e.msg); fail(); }
    }
}

static void test_acl_filters(void **state) {
    (void)state;
    qerr e;
    index_config cfg;
    index_config_default(&cfg);
    snprintf(cfg.embed_model, sizeof cfg.embed_model, "%s", bert_path());
    rag_index *x;
    assert_int_equal(index_open(&x, NULL, INDEX_CREATE, &cfg, &e), 0);
    add_tenant_docs(x);
    assert_int_equal(index_doc_count(x), 40);
    filter *f2020;
    assert_int_equal(filter_parse(&f2020, "year >= 2020 and lang = \"en\"", &e), 0);
    const char *pa[] = {"tenant:a"}, *pb[] = {"group:b-admins"}, *pab[] = {"tenant:a", "tenant:b"};
    struct { const char *const *p; int n; const char *allowed; int n_visible; } who[] = {
        {pa, 1, "ap", 20}, {pb, 1, "bp", 30}, {pab, 2, "abp", 40}, {NULL, 0, "p", 10}};
    for (int mode = SEARCH_BM25; mode <= SEARCH_HYBRID; mode++) {
        for (int w = 0; w < 4; w++) {
            for (int fl = 0; fl < 2; fl++) {
                search_opts o;
                search_opts_default(&o);
                o.mode = mode;
                o.k = 40;
                o.principals = who[w].p;
                o.n_principals = who[w].n;
                o.filter = fl ? f2020 : NULL;
                o.fusion = w % 2 ? FUSION_WEIGHTED : FUSION_RRF;
                search_result r;
                if (index_search(x, "quarterly report revenue", &o, &r, &e)) { fprintf(stderr, "%s\n", e.msg); fail(); }
                int expect = 0; /* authorized (and matching) documents, one chunk each */
                for (int i = 0; i < 40; i++) {
                    char t = i < 10 ? 'a' : i < 30 ? 'b' : 'p';
                    if (strchr(who[w].allowed, t) && (!fl || (i % 10 >= 5 && i % 2 == 1))) expect++;
                }
                if (!fl) assert_int_equal(expect, who[w].n_visible);
                for (int i = 0; i < r.n; i++) {
                    assert_non_null(strchr(who[w].allowed, r.hits[i].doc_id[0]));
                    if (fl) {
                        int n = atoi(r.hits[i].doc_id + 1);
                        assert_true(n % 10 >= 5 && n % 2 == 1);
                    }
                }
                /* every authorized chunk comes back (k = 40 covers all) */
                if (r.n != expect) { fprintf(stderr, "mode %d who %d filter %d: %d results, want %d\n", mode, w, fl, r.n, expect); fail(); }
                search_result_free(&r);
                /* k smaller than the authorized set: exactly k */
                o.k = 3;
                assert_int_equal(index_search(x, "report", &o, &r, &e), 0);
                assert_int_equal(r.n, expect < 3 ? expect : 3);
                for (int i = 0; i < r.n; i++) assert_non_null(strchr(who[w].allowed, r.hits[i].doc_id[0]));
                search_result_free(&r);
            }
        }
    }
    filter_free(f2020);
    index_free(x);
}

/* Filters and ACL from the metadata posting lists against the per-chunk
 * callback path (filter_eval, a second implementation): random metadata
 * (strings, numbers, booleans, arrays, missing fields), random ACLs and
 * random filter expressions (=, !=, in, exists, ranges, _id, and/or/not).
 * meta_index_allow's bitmap equals the per-document evaluation when it says
 * exact and contains it otherwise; index_search returns the same hits both
 * ways in bm25, vector and hybrid mode (120 one-chunk documents: every
 * vector search is an exact scan, so both paths must agree exactly),
 * also after deletes and re-adds. */
static uint64_t fr_s = 7;
static unsigned fr_next(unsigned n) {
    fr_s = fr_s * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned)((fr_s >> 33) % n);
}

static void rand_value(char *out, size_t cap, const char *field) {
    static const char *langs[] = {"en", "de", "fr"}, *tags[] = {"a", "b", "c", "d"};
    if (strcmp(field, "lang") == 0) snprintf(out, cap, "\"%s\"", langs[fr_next(3)]);
    else if (strcmp(field, "year") == 0) snprintf(out, cap, "%u", 2010 + fr_next(8));
    else if (strcmp(field, "tags") == 0) snprintf(out, cap, "\"%s\"", tags[fr_next(4)]);
    else if (strcmp(field, "draft") == 0) snprintf(out, cap, "%s", fr_next(2) ? "true" : "false");
    else snprintf(out, cap, "\"d%u\"", fr_next(130)); /* _id */
}

static void rand_filter(char *out, size_t cap, int depth) {
    static const char *fields[] = {"lang", "year", "tags", "draft", "_id"};
    unsigned k = depth < 3 ? fr_next(9) : 3 + fr_next(6);
    if (k < 3) {
        char a[512], b[512];
        rand_filter(a, sizeof a, depth + 1);
        if (k == 2) { snprintf(out, cap, "not (%s)", a); return; }
        rand_filter(b, sizeof b, depth + 1);
        snprintf(out, cap, "(%s) %s (%s)", a, k ? "or" : "and", b);
        return;
    }
    const char *f = fields[fr_next(5)];
    char v[64], v2[64];
    rand_value(v, sizeof v, f);
    switch (fr_next(6)) {
    case 0: case 1: snprintf(out, cap, "%s = %s", f, v); break;
    case 2: snprintf(out, cap, "%s != %s", f, v); break;
    case 3: rand_value(v2, sizeof v2, f); snprintf(out, cap, "%s in [%s, %s]", f, v, v2); break;
    case 4: snprintf(out, cap, "%s exists", f); break;
    default: snprintf(out, cap, "%s %s %s", f, fr_next(2) ? ">=" : "<", strcmp(f, "draft") == 0 ? "2014" : v); break;
    }
}

typedef struct ref_doc {
    char id[16], meta[256];
    meta m;
    const char *acl[3];
    int n_acl;
    bool dead;
} ref_doc;

static void search_both(rag_index *x, const char *q, search_opts *o) {
    qerr e;
    search_result a, b;
    o->filter_by_callback = false;
    if (index_search(x, q, o, &a, &e)) { fprintf(stderr, "%s\n", e.msg); fail(); }
    o->filter_by_callback = true;
    if (index_search(x, q, o, &b, &e)) { fprintf(stderr, "%s\n", e.msg); fail(); }
    if (a.n != b.n) { fprintf(stderr, "mode %d: %d hits from posting lists, %d per chunk\n", o->mode, a.n, b.n); fail(); }
    for (int i = 0; i < a.n; i++) {
        assert_string_equal(a.hits[i].doc_id, b.hits[i].doc_id);
        assert_true(a.hits[i].chunk_id == b.hits[i].chunk_id);
        assert_true(a.hits[i].score == b.hits[i].score);
    }
    search_result_free(&a);
    search_result_free(&b);
}

static void test_filter_postings(void **state) {
    (void)state;
    qerr e;
    index_config cfg;
    index_config_default(&cfg);
    snprintf(cfg.embed_model, sizeof cfg.embed_model, "%s", bert_path());
    rag_index *x;
    assert_int_equal(index_open(&x, NULL, INDEX_CREATE, &cfg, &e), 0);
    enum { ND = 120 };
    static ref_doc docs[ND];
    static const char *principals[] = {"t1", "t2", "t3"};
    meta_index *mi;
    assert_int_equal(meta_index_new(&mi, &e), 0);
    for (int i = 0; i < ND; i++) {
        ref_doc *d = &docs[i];
        snprintf(d->id, sizeof d->id, "d%d", i);
        char *p = d->meta;
        size_t cap = sizeof d->meta;
        int w = snprintf(p, cap, "{");
        static const char *langs[] = {"en", "de", "fr"};
        if (fr_next(5)) w += snprintf(p + w, cap - (size_t)w, "\"lang\": \"%s\", ", langs[fr_next(3)]);
        if (fr_next(4)) w += snprintf(p + w, cap - (size_t)w, "\"year\": %u, ", 2010 + fr_next(8));
        if (fr_next(3)) w += snprintf(p + w, cap - (size_t)w, "\"tags\": [\"%c\", \"%c\"], ", 'a' + fr_next(4), 'a' + fr_next(4));
        if (fr_next(2)) w += snprintf(p + w, cap - (size_t)w, "\"draft\": %s, ", fr_next(2) ? "true" : "false");
        snprintf(p + w, cap - (size_t)w, "\"n\": %d}", i);
        d->n_acl = (int)fr_next(3);
        for (int j = 0; j < d->n_acl; j++) d->acl[j] = principals[fr_next(3)];
        jv mj;
        assert_int_equal(jsonl_parse(d->meta, strlen(d->meta), &mj, &e), 0);
        assert_int_equal(meta_from_json(&d->m, &mj, &e), 0);
        jsonl_free(&mj);
        assert_int_equal(meta_index_add(mi, (uint32_t)i, &d->m, d->acl, d->n_acl, &e), 0);
        char text[128];
        snprintf(text, sizeof text, "report %d on %s revenue and %s costs", i, i % 3 ? "quarterly" : "annual", i % 2 ? "rising" : "falling");
        index_doc idd = {.id = d->id, .title = "T", .text = text, .text_len = strlen(text), .meta_json = d->meta,
                         .acl = d->acl, .n_acl = d->n_acl};
        assert_int_equal(index_add(x, &idd, 1, &e), 0);
    }
    const char *const who_p[][3] = {{NULL}, {"t1"}, {"t2", "t3"}, {"t1", "t2", "t3"}};
    int who_n[] = {0, 1, 2, 3};
    int n_exact = 0, n_super = 0;
    for (int round = 0; round < 2; round++) {
        if (round == 1) { /* deletes and re-adds: the postings follow */
            for (int i = 0; i < ND; i += 9) {
                bool found;
                assert_int_equal(index_rm(x, docs[i].id, &found, &e), 0);
                assert_true(found);
                docs[i].dead = true;
            }
            for (int i = 0; i < ND; i += 27) {
                char text[64];
                snprintf(text, sizeof text, "report %d re-added", i);
                index_doc idd = {.id = docs[i].id, .text = text, .text_len = strlen(text), .meta_json = docs[i].meta,
                                 .acl = docs[i].acl, .n_acl = docs[i].n_acl};
                assert_int_equal(index_add(x, &idd, 1, &e), 0);
                docs[i].dead = false;
            }
        }
        for (int t = 0; t < 150; t++) {
            char expr[4096];
            rand_filter(expr, sizeof expr, 0);
            filter *f;
            if (filter_parse(&f, expr, &e)) { fprintf(stderr, "%s: %s\n", expr, e.msg); fail(); }
            int wi = (int)fr_next(4);
            bool ignore = fr_next(8) == 0;
            if (round == 0) { /* the bitmap against per-document evaluation */
                uint64_t bits[(ND + 63) / 64];
                int rc = meta_index_allow(mi, f, who_p[wi], who_n[wi], ignore, ND, bits, &e);
                assert_true(rc >= 0);
                rc ? n_exact++ : n_super++;
                for (int i = 0; i < ND; i++) {
                    bool acl_ok = ignore || docs[i].n_acl == 0;
                    for (int a = 0; a < docs[i].n_acl && !acl_ok; a++)
                        for (int p = 0; p < who_n[wi]; p++) acl_ok |= strcmp(docs[i].acl[a], who_p[wi][p]) == 0;
                    bool want = acl_ok && filter_eval(f, &docs[i].m, docs[i].id);
                    bool got = (bits[i >> 6] >> (i & 63)) & 1;
                    if (rc == 1 ? got != want : (want && !got)) {
                        fprintf(stderr, "filter %s, principals %d, doc %d: bitmap %d, evaluation %d (exact %d)\n", expr, wi, i,
                                got, want, rc);
                        fail();
                    }
                }
            }
            search_opts o;
            search_opts_default(&o);
            o.filter = fr_next(6) ? f : NULL;
            o.principals = who_p[wi];
            o.n_principals = who_n[wi];
            o.ignore_acl = ignore;
            o.k = 1 + (int)fr_next(15);
            o.mode = (int)fr_next(3);
            o.group_by_doc = fr_next(4) == 0;
            search_both(x, fr_next(2) ? "quarterly revenue report" : "falling costs", &o);
            filter_free(f);
        }
    }
    fprintf(stderr, "filters: %d exact from the posting lists, %d supersets\n", n_exact, n_super);
    assert_true(n_exact > 30 && n_super > 10);
    for (int i = 0; i < ND; i++) meta_free(&docs[i].m);
    meta_index_free(mi);
    index_free(x);
}

static int rerank_by_len(void *ctx, const char *q, const char *const *texts, int n, float *scores, qerr *e) {
    (void)q; (void)e;
    (*(int *)ctx)++;
    for (int i = 0; i < n; i++) scores[i] = -(float)strlen(texts[i]);
    return 0;
}

static void test_rerank_hook(void **state) {
    (void)state;
    qerr e;
    rag_index *x;
    assert_int_equal(index_open(&x, NULL, INDEX_CREATE, NULL, &e), 0);
    const char *texts[] = {"apple apple apple banana with a long tail of words", "apple", "apple pie"};
    for (int i = 0; i < 3; i++) {
        char id[8];
        snprintf(id, sizeof id, "d%d", i);
        index_doc d = {.id = id, .text = texts[i], .text_len = strlen(texts[i])};
        assert_int_equal(index_add(x, &d, 1, &e), 0);
    }
    int calls = 0;
    search_opts o;
    search_opts_default(&o);
    o.rerank = rerank_by_len;
    o.rerank_ctx = &calls;
    search_result r;
    assert_int_equal(index_search(x, "apple", &o, &r, &e), 0);
    assert_int_equal(calls, 1);
    assert_int_equal(r.n, 3);
    assert_string_equal(r.hits[0].doc_id, "d1");
    assert_string_equal(r.hits[1].doc_id, "d2");
    search_result_free(&r);
    /* vector search without a model is a clear error */
    o.mode = SEARCH_VECTOR;
    assert_int_equal(index_search(x, "apple", &o, &r, &e), -1);
    assert_non_null(strstr(e.msg, "embedding model"));
    index_free(x);
}

/* ------------------------------------------------------------------------ */
/* Index directory: rm, reopen, replace, offsets */
/* Rewrites DB/MANIFEST without its "file bm25-…" line (as an index made
 * before the postings were persisted), with a valid checksum. */
static void manifest_drop_bm25(const char *db) {
    char path[300];
    snprintf(path, sizeof path, "%s/MANIFEST", db);
    size_t len;
    char *m = test_read_file(path, &len);
    assert_non_null(m);
    char out[8192];
    size_t o = 0;
    for (char *line = m; line < m + len;) {
        char *nl = memchr(line, '\n', (size_t)(m + len - line));
        size_t ll = nl ? (size_t)(nl - line) + 1 : (size_t)(m + len - line);
        if (strncmp(line, "crc ", 4) != 0 && strncmp(line, "file bm25-", 10) != 0) {
            assert_true(o + ll < sizeof out);
            memcpy(out + o, line, ll);
            o += ll;
        }
        line += ll;
    }
    o += (size_t)snprintf(out + o, sizeof out - o, "crc %08x\n", q_crc32c(0, out, o));
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(out, 1, o, f), o);
    fclose(f);
    free(m);
}

/* Persisted postings: a reopened index searches exactly as before; an index
 * without the postings snapshot (made before it existed) is rebuilt from its
 * chunks, verifies, and gets the snapshot at its next checkpoint. */
static void test_index_bm25_snapshot(void **state) {
    (void)state;
    qerr e;
    char dir[] = "/tmp/quire-test-bm-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char db[128];
    snprintf(db, sizeof db, "%s/db", dir);
    rag_index *x;
    assert_int_equal(index_open(&x, db, INDEX_CREATE, NULL, &e), 0);
    char text[40][128];
    index_doc d[40];
    for (int i = 0; i < 40; i++) {
        snprintf(text[i], sizeof text[i], "document %d about %s and %s, S-phase %d", i, i % 3 ? "cells" : "proteins",
                 i % 5 ? "biology" : "physiology", i % 7);
        char *id = malloc(8);
        snprintf(id, 8, "d%d", i);
        d[i] = (index_doc){.id = id, .text = text[i], .text_len = strlen(text[i])};
    }
    assert_int_equal(index_add(x, d, 40, &e), 0);
    bool found;
    assert_int_equal(index_rm(x, "d3", &found, &e), 0);
    search_opts o;
    search_opts_default(&o);
    o.k = 15;
    search_result r0, r1;
    assert_int_equal(index_search(x, "physiology proteins s", &o, &r0, &e), 0);
    char ids0[15][8];
    float sc0[15];
    int n0 = r0.n;
    for (int i = 0; i < n0; i++) { snprintf(ids0[i], 8, "%s", r0.hits[i].doc_id); sc0[i] = r0.hits[i].score; }
    search_result_free(&r0);
    assert_int_equal(index_close(x, &e), 0);
    for (int round = 0; round < 2; round++) {
        if (round == 1) manifest_drop_bm25(db);
        assert_int_equal(index_verify(db, &e), 0);
        assert_int_equal(index_open(&x, db, INDEX_READ, NULL, &e), 0);
        assert_int_equal(index_search(x, "physiology proteins s", &o, &r1, &e), 0);
        assert_int_equal(r1.n, n0);
        /* the same documents in the same order as before the checkpoint (scores
         * differ slightly: d3 has left N and df); the loaded snapshot and the
         * rebuild from chunks (round 1) give bit-identical scores */
        for (int i = 0; i < n0; i++) assert_string_equal(r1.hits[i].doc_id, ids0[i]);
        if (round == 0) for (int i = 0; i < n0; i++) sc0[i] = r1.hits[i].score;
        else for (int i = 0; i < n0; i++) assert_true(r1.hits[i].score == sc0[i]);
        search_result_free(&r1);
        index_free(x);
    }
    /* a write brings the snapshot back */
    assert_int_equal(index_open(&x, db, INDEX_WRITE, NULL, &e), 0);
    assert_int_equal(index_rm(x, "d4", &found, &e), 0);
    assert_int_equal(index_close(x, &e), 0);
    char mpath[200];
    snprintf(mpath, sizeof mpath, "%s/MANIFEST", db);
    size_t ml;
    char *m = test_read_file(mpath, &ml);
    assert_non_null(m);
    assert_non_null(strstr(m, "file bm25-"));
    free(m);
    assert_int_equal(index_verify(db, &e), 0);
    for (int i = 0; i < 40; i++) free((char *)d[i].id);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_index_rm_reopen(void **state) {
    (void)state;
    qerr e;
    char dir[] = "/tmp/quire-test-idx-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char db[128];
    snprintf(db, sizeof db, "%s/db", dir);
    index_config cfg;
    index_config_default(&cfg);
    cfg.chunk_tokens = 8;
    snprintf(cfg.embed_model, sizeof cfg.embed_model, "%s", bert_path());
    rag_index *x;
    assert_int_equal(index_open(&x, db, INDEX_CREATE, &cfg, &e), 0);
    const char *t1 = "Zebras graze on the savanna. They run fast when lions come. Stripes confuse the flies.";
    const char *t2 = "Penguins swim in cold water. They cannot fly at all.";
    index_doc d[2] = {{.id = "zebra", .text = t1, .text_len = strlen(t1)}, {.id = "penguin", .text = t2, .text_len = strlen(t2)}};
    assert_int_equal(index_add(x, d, 2, &e), 0);
    assert_true(index_chunk_count(x) >= 4);
    search_opts o;
    search_opts_default(&o);
    search_result r;
    assert_int_equal(index_search(x, "lions", &o, &r, &e), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.hits[0].doc_id, "zebra");
    /* offsets slice the original text */
    assert_int_equal(memcmp(t1 + r.hits[0].start, r.hits[0].chunk, r.hits[0].end - r.hits[0].start), 0);
    assert_int_equal(r.hits[0].chunk_len, r.hits[0].end - r.hits[0].start);
    search_result_free(&r);
    bool found;
    assert_int_equal(index_rm(x, "zebra", &found, &e), 0);
    assert_true(found);
    assert_int_equal(index_rm(x, "zebra", &found, &e), 0);
    assert_false(found);
    for (int mode = SEARCH_BM25; mode <= SEARCH_HYBRID; mode++) {
        o.mode = mode;
        o.k = 20;
        assert_int_equal(index_search(x, "lions zebras stripes", &o, &r, &e), 0);
        for (int i = 0; i < r.n; i++) assert_string_equal(r.hits[i].doc_id, "penguin");
        search_result_free(&r);
    }
    /* close without checkpoint: the log alone must bring it back */
    index_free(x);
    assert_int_equal(index_verify(db, &e), 0);
    assert_int_equal(index_open(&x, db, INDEX_WRITE, NULL, &e), 0);
    assert_false(index_has_doc(x, "zebra"));
    assert_true(index_has_doc(x, "penguin"));
    /* replace a document: old chunks gone */
    const char *t3 = "Penguins now live in the desert.";
    index_doc d3 = {.id = "penguin", .text = t3, .text_len = strlen(t3)};
    assert_int_equal(index_add(x, &d3, 1, &e), 0);
    assert_int_equal(index_doc_count(x), 1);
    o.mode = SEARCH_BM25;
    assert_int_equal(index_search(x, "cold water", &o, &r, &e), 0);
    assert_int_equal(r.n, 0);
    search_result_free(&r);
    assert_int_equal(index_close(x, &e), 0); /* checkpoint */
    assert_int_equal(index_verify(db, &e), 0);
    assert_int_equal(index_open(&x, db, INDEX_READ, NULL, &e), 0);
    assert_int_equal(index_doc_count(x), 1);
    assert_int_equal(index_chunk_count(x), 1);
    o.mode = SEARCH_VECTOR;
    assert_int_equal(index_search(x, "desert", &o, &r, &e), 0);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.hits[0].doc_id, "penguin");
    search_result_free(&r);
    index_free(x);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* ------------------------------------------------------------------------ */
/* CLI per CONTRACT.md */
static void test_cli(void **state) {
    (void)state;
    char dir[] = "/tmp/quire-test-cli-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], args[2048];
    snprintf(path, sizeof path, "%s/docs.jsonl", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"_id\": \"d1\", \"title\": \"Cats\", \"text\": \"Cats purr when happy.\", \"metadata\": {\"year\": 2021}, \"acl\": [\"alice\"]}\n");
    fprintf(f, "{\"_id\": \"d2\", \"title\": \"Dogs\", \"text\": \"Dogs bark at cats.\", \"metadata\": {\"year\": 2019}}\n");
    fclose(f);
    char *out;
    snprintf(args, sizeof args, "index add %s/db --jsonl %s", dir, path);
    assert_int_equal(run_quire(args, &out), 0);
    assert_non_null(strstr(out, "\"documents\": 2"));
    free(out);
    snprintf(args, sizeof args, "search %s/db -q cats -k 5", dir);
    assert_int_equal(run_quire(args, &out), 0);
    assert_non_null(strstr(out, "{\"results\":[{\"id\":\"d2\""));
    assert_null(strstr(out, "\"d1\""));
    assert_non_null(strstr(out, "\"start\":0,\"end\":18"));
    free(out);
    snprintf(args, sizeof args, "search %s/db -q cats --principal alice --filter 'year >= 2020'", dir);
    assert_int_equal(run_quire(args, &out), 0);
    assert_non_null(strstr(out, "\"id\":\"d1\""));
    assert_null(strstr(out, "\"d2\""));
    free(out);
    /* an equality filter from the posting lists, and the per-chunk path: same output */
    char *out2;
    snprintf(args, sizeof args, "search %s/db -q cats --principal alice --filter 'year in [2021, 1]'", dir);
    assert_int_equal(run_quire(args, &out), 0);
    snprintf(args, sizeof args, "search %s/db -q cats --principal alice --filter 'year in [2021, 1]' --filter-by-callback", dir);
    assert_int_equal(run_quire(args, &out2), 0);
    assert_non_null(strstr(out, "\"id\":\"d1\""));
    assert_null(strstr(out, "\"d2\""));
    char *t1 = strstr(out, "\"timings\""), *t2 = strstr(out2, "\"timings\""); /* timings differ */
    assert_non_null(t1);
    assert_non_null(t2);
    *t1 = *t2 = 0;
    assert_string_equal(out, out2);
    free(out);
    free(out2);
    snprintf(args, sizeof args, "search %s/db -q cats --filter 'year >=' 2>/dev/null", dir);
    assert_int_equal(run_quire(args, NULL), 2);
    snprintf(args, sizeof args, "index rm %s/db d2", dir);
    assert_int_equal(run_quire(args, NULL), 0);
    snprintf(args, sizeof args, "index rm %s/db d2 2>/dev/null", dir);
    assert_int_equal(run_quire(args, NULL), 1);
    snprintf(args, sizeof args, "search %s/db -q cats", dir);
    assert_int_equal(run_quire(args, &out), 0);
    assert_non_null(strstr(out, "{\"results\":[]"));
    free(out);
    snprintf(args, sizeof args, "index verify %s/db", dir);
    assert_int_equal(run_quire(args, NULL), 0);
    /* Markdown files: id is the path, offsets index the file's bytes */
    snprintf(path, sizeof path, "%s/notes.md", dir);
    f = fopen(path, "w");
    const char *md = "# Garden\n\nTomatoes need sun.\n\n## Pests\n\nAphids eat tomatoes.\n";
    fputs(md, f);
    fclose(f);
    snprintf(args, sizeof args, "index add %s/db %s --chunk-tokens 6 2>/dev/null", dir, path);
    assert_int_equal(run_quire(args, NULL), 2); /* settings are fixed at creation */
    snprintf(args, sizeof args, "index add %s/md %s --chunk-tokens 6", dir, path);
    assert_int_equal(run_quire(args, NULL), 0);
    snprintf(args, sizeof args, "search %s/md -q aphids", dir);
    assert_int_equal(run_quire(args, &out), 0);
    char want[600];
    long st = strstr(md, "## Pests") - md;
    snprintf(want, sizeof want, "\"chunk\":\"## Pests\\n\\nAphids eat tomatoes.\",\"start\":%ld,\"end\":%ld", st, (long)strlen(md) - 1);
    if (!strstr(out, want)) { fprintf(stderr, "%s\nwant %s\n", out, want); fail(); }
    assert_non_null(strstr(out, path));
    free(out);
    snprintf(args, sizeof args, "search %s/nope -q x 2>/dev/null", dir);
    assert_int_equal(run_quire(args, NULL), 2);
    /* eval retrieval */
    snprintf(path, sizeof path, "%s/q.jsonl", dir);
    f = fopen(path, "w");
    fprintf(f, "{\"_id\": \"q1\", \"text\": \"cats purr\"}\n{\"_id\": \"q2\", \"text\": \"unjudged\"}\n");
    fclose(f);
    snprintf(path, sizeof path, "%s/qrels.tsv", dir);
    f = fopen(path, "w");
    fprintf(f, "query-id\tcorpus-id\tscore\nq1\td1\t1\n");
    fclose(f);
    snprintf(args, sizeof args, "eval retrieval %s/db --queries %s/q.jsonl --qrels %s --json --principal alice", dir, dir, path);
    assert_int_equal(run_quire(args, &out), 0);
    assert_non_null(strstr(out, "\"ndcg@10\":1,"));
    assert_non_null(strstr(out, "\"recall@100\":1,"));
    assert_non_null(strstr(out, "\"mrr@10\":1,"));
    assert_non_null(strstr(out, "\"queries_per_s\":"));
    free(out);
    snprintf(args, sizeof args, "rm -rf %s", dir);
    assert_int_equal(system(args), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_analyzer),
        cmocka_unit_test(test_porter),
        cmocka_unit_test(test_bm25_hand),
        cmocka_unit_test(test_bm25_maxscore_equals_exhaustive),
        cmocka_unit_test(test_bm25_persist),
        cmocka_unit_test(test_jsonl_strict),
        cmocka_unit_test(test_chunk_offsets),
        cmocka_unit_test(test_filter),
        cmocka_unit_test(test_acl_filters),
        cmocka_unit_test(test_filter_postings),
        cmocka_unit_test(test_rerank_hook),
        cmocka_unit_test(test_index_rm_reopen),
        cmocka_unit_test(test_index_bm25_snapshot),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
