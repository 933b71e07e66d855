/* test_bert.c — BERT embeddings against the reference implementation's
 * golden vectors (cosine >= 0.9999, mean and CLS pooling), and batching:
 * texts embedded together equal texts embedded one by one, bit for bit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/models.h"
#include "testutil.h"

/* Reads the numeric array after the n-th occurrence of "key": [ ... ]. */
static int read_array(const char *json, const char *key, int nth, double *out, int cap) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = json;
    for (int i = 0; i <= nth; i++) {
        p = strstr(p, pat);
        if (!p) return -1;
        p += strlen(pat);
    }
    p = strchr(p, '[');
    if (!p) return -1;
    p++;
    int n = 0;
    while (*p && *p != ']') {
        char *end;
        double v = strtod(p, &end);
        if (end == p) { p++; continue; }
        if (n < cap) out[n] = v;
        n++;
        p = end;
    }
    return n;
}

static double cosine(const float *a, const double *b, int n) {
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) ab += a[i] * b[i], aa += (double)a[i] * a[i], bb += b[i] * b[i];
    return ab / sqrt(aa * bb);
}

static void test_bert_golden(void **state) {
    (void)state;
    char *json = test_read_file(shared_path("golden/golden-syn-bert-F16.json"), NULL);
    bert_model *m;
    qerr e;
    if (bert_load(&m, shared_path("models/synthetic/syn-bert-F16.gguf"), &e)) { fprintf(stderr, "%s\n", e.msg); fail(); }
    assert_int_equal(m->pooling, POOL_MEAN);
    qpool *pool = qpool_new(2);
    int d = m->n_embd;
    int32_t all[2048];
    int start[16] = {0}, n_texts = 0;
    double toks[512], ref[1024];
    float *single = malloc((size_t)8 * d * sizeof(float));
    for (int item = 0; item < 8; item++) {
        int nt = read_array(json, "tokens", item, toks, 512);
        if (nt < 0) break;
        int32_t ids[512];
        for (int i = 0; i < nt; i++) ids[i] = (int32_t)toks[i], all[start[n_texts] + i] = ids[i];
        start[n_texts + 1] = start[n_texts] + nt;
        int st[2] = {0, nt};
        float emb[1024];
        const char *keys[2] = {"embedding_mean", "embedding_cls"};
        int pools[2] = {POOL_MEAN, POOL_CLS};
        for (int k = 0; k < 2; k++) {
            assert_int_equal(read_array(json, keys[k], item, ref, 1024), d);
            if (bert_embed(m, pool, ids, st, 1, pools[k], emb, &e)) { fprintf(stderr, "%s\n", e.msg); fail(); }
            double c = cosine(emb, ref, d);
            printf("  text %d %-15s cosine %.7f\n", item, keys[k], c);
            assert_true(c >= 0.9999);
            if (k == 0) memcpy(single + (size_t)item * d, emb, (size_t)d * sizeof(float));
        }
        n_texts++;
    }
    assert_int_equal(n_texts, 5);
    float *batch = malloc((size_t)n_texts * d * sizeof(float));
    assert_int_equal(bert_embed(m, pool, all, start, n_texts, -1, batch, &e), 0);
    assert_memory_equal(batch, single, (size_t)n_texts * d * sizeof(float));

    /* errors: too long, bad token, empty text */
    int32_t *big = calloc(600, sizeof(int32_t));
    int sb[2] = {0, 600};
    assert_int_not_equal(bert_embed(m, pool, big, sb, 1, -1, batch, &e), 0);
    assert_non_null(strstr(e.msg, "context"));
    big[0] = 40000;
    sb[1] = 1;
    assert_int_not_equal(bert_embed(m, pool, big, sb, 1, -1, batch, &e), 0);
    assert_non_null(strstr(e.msg, "out of range"));
    sb[1] = 0;
    assert_int_not_equal(bert_embed(m, pool, big, sb, 1, -1, batch, &e), 0);
    free(big);
    free(batch);
    free(single);
    qpool_free(pool);
    bert_free(m);
    free(json);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_bert_golden)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
