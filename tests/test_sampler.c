/* test_sampler.c — the sampler chain against hand-computed distributions:
 * each filter and penalty, edge cases, and chi-square tests that the draws
 * follow the distribution they should. Seeds are fixed, so the statistical
 * tests are deterministic (a failure is a real change, not bad luck). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "testutil.h"

/* xoshiro256** seeded by splitmix64, values from an independent Python
 * implementation of the published algorithms. */
static void test_rng_known_values(void **state) {
    (void)state;
    qrng r;
    qrng_seed(&r, 0);
    assert_true(qrng_next(&r) == 0x99ec5f36cb75f2b4ull);
    assert_true(qrng_next(&r) == 0xbf6e1f784956452aull);
    assert_true(qrng_next(&r) == 0x1a5f849d4933e6e0ull);
    qrng_seed(&r, 42);
    assert_true(qrng_next(&r) == 0x15780b2e0c2ec716ull);
    assert_true(qrng_next(&r) == 0x6104d9866d113a7eull);
    for (int i = 0; i < 100000; i++) {
        float u = qrng_uniform(&r);
        assert_true(u >= 0.0f && u < 1.0f);
    }
}

/* Draws n samples and returns counts per token. */
static int *draw(const sampler_params *p, const float *logits, int nv, int n) {
    sampler *s = sampler_new(p, nv);
    assert_non_null(s);
    int *counts = calloc((size_t)nv, sizeof(int));
    float *tmp = malloc((size_t)nv * sizeof(float));
    for (int i = 0; i < n; i++) {
        memcpy(tmp, logits, (size_t)nv * sizeof(float));
        int32_t t = sampler_sample(s, tmp, NULL, 0);
        assert_true(t >= 0 && t < nv);
        counts[t]++;
    }
    free(tmp);
    sampler_free(s);
    return counts;
}

/* Pearson chi-square of counts against expected probabilities; tokens with
 * zero probability must have zero counts. */
static double chi_square(const int *counts, const double *prob, int nv, int n) {
    double x2 = 0;
    for (int i = 0; i < nv; i++) {
        if (prob[i] == 0) { assert_int_equal(counts[i], 0); continue; }
        double e = prob[i] * n;
        x2 += (counts[i] - e) * (counts[i] - e) / e;
    }
    return x2;
}

static sampler_params plain(float temp) {
    sampler_params p = {.temp = temp, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .repeat_penalty = 1.0f, .seed = 1234};
    return p;
}

static void test_greedy(void **state) {
    (void)state;
    float l[5] = {0.1f, 2.0f, -1.0f, 2.0f, 1.9f};
    int *c = draw(&(sampler_params){.temp = 0, .repeat_penalty = 1}, l, 5, 10);
    assert_int_equal(c[1], 10); /* ties go to the lowest id */
    free(c);
    /* top-k 1 with any temperature is greedy too */
    sampler_params p = plain(1.5f);
    p.top_k = 1;
    c = draw(&p, l, 5, 200);
    assert_int_equal(c[1], 200);
    free(c);
}

/* Softmax at temperature T over 8 tokens: chi-square with 7 degrees of
 * freedom; 24.32 is the 0.999 quantile. */
static void test_temperature_matches_softmax(void **state) {
    (void)state;
    float l[8] = {1.0f, 0.5f, 0.0f, -0.5f, 2.0f, 1.5f, -1.0f, 0.2f};
    float temps[3] = {0.7f, 1.0f, 1.8f};
    for (int k = 0; k < 3; k++) {
        double prob[8], sum = 0;
        for (int i = 0; i < 8; i++) sum += prob[i] = exp(l[i] / temps[k]);
        for (int i = 0; i < 8; i++) prob[i] /= sum;
        int n = 40000;
        int *c = draw(&(sampler_params){.temp = temps[k], .top_p = 1, .repeat_penalty = 1, .seed = 7 + (uint64_t)k}, l, 8, n);
        double x2 = chi_square(c, prob, 8, n);
        printf("  temp %.1f: chi-square %.2f (df 7, limit 24.32)\n", temps[k], x2);
        assert_true(x2 < 24.32);
        free(c);
    }
}

static void test_all_equal_and_neg_inf(void **state) {
    (void)state;
    float l[6] = {3, 3, -INFINITY, 3, 3, -INFINITY};
    double prob[6] = {0.25, 0.25, 0, 0.25, 0.25, 0};
    int n = 20000;
    int *c = draw(&(sampler_params){.temp = 1, .top_p = 1, .repeat_penalty = 1, .seed = 3}, l, 6, n);
    assert_true(chi_square(c, prob, 6, n) < 16.27); /* df 3 */
    free(c);
    /* all -inf but one: always that one, whatever the filters */
    float m[4] = {-INFINITY, -INFINITY, 0.0f, -INFINITY};
    sampler_params p = plain(1);
    p.top_k = 3;
    p.top_p = 0.5f;
    p.min_p = 0.9f;
    c = draw(&p, m, 4, 50);
    assert_int_equal(c[2], 50);
    free(c);
}

/* probabilities 0.5, 0.3, 0.2 (logits are their logs) */
static const float l532[3] = {-0.69314718f, -1.2039728f, -1.6094379f};

static void test_top_k(void **state) {
    (void)state;
    sampler_params p = plain(1);
    p.top_k = 2;
    int n = 20000;
    int *c = draw(&p, l532, 3, n);
    double prob[3] = {0.625, 0.375, 0};
    assert_true(chi_square(c, prob, 3, n) < 10.83); /* df 1 */
    free(c);
    /* k larger than the vocabulary: nothing removed */
    p.top_k = 1000;
    c = draw(&p, l532, 3, n);
    double all[3] = {0.5, 0.3, 0.2};
    assert_true(chi_square(c, all, 3, n) < 13.82); /* df 2 */
    free(c);
}

static void test_top_p(void **state) {
    (void)state;
    int n = 20000;
    sampler_params p = plain(1);
    p.top_p = 0.6f; /* 0.5 < 0.6 <= 0.8: keep two */
    int *c = draw(&p, l532, 3, n);
    double two[3] = {0.625, 0.375, 0};
    assert_true(chi_square(c, two, 3, n) < 10.83);
    free(c);
    p.top_p = 0.5f; /* exactly reached by the first */
    c = draw(&p, l532, 3, 100);
    assert_int_equal(c[0], 100);
    free(c);
    p.top_p = 1.0f; /* off */
    c = draw(&p, l532, 3, n);
    double all[3] = {0.5, 0.3, 0.2};
    assert_true(chi_square(c, all, 3, n) < 13.82);
    free(c);
}

static void test_min_p(void **state) {
    (void)state;
    int n = 20000;
    sampler_params p = plain(1);
    p.min_p = 0.5f; /* threshold 0.25: keeps 0.5 and 0.3 */
    int *c = draw(&p, l532, 3, n);
    double two[3] = {0.625, 0.375, 0};
    assert_true(chi_square(c, two, 3, n) < 10.83);
    free(c);
    p.min_p = 0.39f; /* threshold 0.195: keeps all */
    c = draw(&p, l532, 3, n);
    double all[3] = {0.5, 0.3, 0.2};
    assert_true(chi_square(c, all, 3, n) < 13.82);
    free(c);
}

/* Filters see untempered probabilities; temperature then reshapes the
 * survivors: top-k 2 at T=2 gives softmax(log(.5,.3)/2). */
static void test_filter_then_temperature(void **state) {
    (void)state;
    sampler_params p = plain(2);
    p.top_k = 2;
    int n = 20000;
    int *c = draw(&p, l532, 3, n);
    double a = sqrt(0.5), b = sqrt(0.3);
    double prob[3] = {a / (a + b), b / (a + b), 0};
    assert_true(chi_square(c, prob, 3, n) < 10.83);
    free(c);
}

static void test_penalties(void **state) {
    (void)state;
    sampler_params p = {.temp = 0, .repeat_penalty = 2.0f, .penalty_last_n = 3};
    sampler *s = sampler_new(&p, 4);
    float l[4] = {4.0f, -1.0f, 3.0f, 1.0f};
    int32_t hist[5] = {2, 0, 1, 1, 3}; /* window of 3: tokens 1, 1, 3 */
    int32_t t = sampler_sample(s, l, hist, 5);
    assert_int_equal(t, 0);
    assert_true(l[0] == 4.0f);  /* outside the window */
    assert_true(l[1] == -2.0f); /* negative: multiplied */
    assert_true(l[2] == 3.0f);
    assert_true(l[3] == 0.5f);  /* positive: divided */
    sampler_free(s);

    p = (sampler_params){.temp = 0, .repeat_penalty = 1, .freq_penalty = 0.5f, .presence_penalty = 0.25f, .penalty_last_n = -1};
    s = sampler_new(&p, 4);
    float m[4] = {1.0f, 1.0f, 1.0f, 1.0f};
    int32_t h2[4] = {0, 0, 0, 2};
    t = sampler_sample(s, m, h2, 4);
    assert_true(fabsf(m[0] - (1.0f - 1.5f - 0.25f)) < 1e-6f);
    assert_true(fabsf(m[2] - (1.0f - 0.5f - 0.25f)) < 1e-6f);
    assert_true(m[1] == 1.0f && m[3] == 1.0f);
    assert_int_equal(t, 1);
    /* counts are cleared: the same call again penalises the same way */
    float m2[4] = {1.0f, 1.0f, 1.0f, 1.0f};
    sampler_sample(s, m2, h2, 4);
    assert_true(m2[0] == m[0]);
    sampler_free(s);
}

static void test_seed_reproducible(void **state) {
    (void)state;
    float l[16];
    for (int i = 0; i < 16; i++) l[i] = (float)(i % 5) * 0.3f;
    sampler_params p = plain(1);
    p.seed = 99;
    int32_t a[64], b[64], c[64];
    sampler *s1 = sampler_new(&p, 16), *s2 = sampler_new(&p, 16);
    p.seed = 100;
    sampler *s3 = sampler_new(&p, 16);
    float tmp[16];
    for (int i = 0; i < 64; i++) {
        memcpy(tmp, l, sizeof tmp); a[i] = sampler_sample(s1, tmp, NULL, 0);
        memcpy(tmp, l, sizeof tmp); b[i] = sampler_sample(s2, tmp, NULL, 0);
        memcpy(tmp, l, sizeof tmp); c[i] = sampler_sample(s3, tmp, NULL, 0);
    }
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
    sampler_free(s1); sampler_free(s2); sampler_free(s3);
}

/* top-k by selection equals sorting, on a large vocabulary with ties. */
static void test_top_k_large_vocab(void **state) {
    (void)state;
    int nv = 50000;
    float *l = malloc((size_t)nv * sizeof(float));
    qrng r;
    qrng_seed(&r, 5);
    for (int i = 0; i < nv; i++) l[i] = (float)(qrng_next(&r) % 1000) / 100.0f; /* many ties */
    /* the 40 best by (logit desc, id asc) */
    int best[40], nb = 0;
    for (int v = 999; v >= 0 && nb < 40; v--)
        for (int i = 0; i < nv && nb < 40; i++)
            if (l[i] == (float)v / 100.0f) best[nb++] = i;
    sampler_params p = plain(1000.0f); /* nearly uniform over the survivors */
    p.top_k = 40;
    int *c = draw(&p, l, nv, 4000);
    int inside = 0;
    for (int k = 0; k < 40; k++) inside += c[best[k]];
    assert_int_equal(inside, 4000);
    free(c);
    free(l);
}

/* top-p whose nucleus is larger than the first selected prefix: 5,000 equal
 * logits and p = 0.5005 keep ids 0..2502 (ties go to lower ids; p is off the
 * exact boundary 0.5 so float rounding cannot decide), uniformly. */
static void test_top_p_wide_nucleus(void **state) {
    (void)state;
    int nv = 5000, n = 50000;
    float *l = calloc((size_t)nv, sizeof(float));
    sampler_params p = plain(1);
    p.top_p = 0.5005f;
    int *c = draw(&p, l, nv, n);
    int inside = 0, lo = 0, hi = 0;
    for (int i = 0; i < nv; i++) {
        if (i < 2503) inside += c[i];
        if (i < 1250) lo += c[i]; else if (i < 2500) hi += c[i];
    }
    assert_int_equal(inside, n);
    assert_true(abs(lo - hi) < n / 20); /* both halves of the nucleus drawn alike */
    free(c);
    free(l);
}

/* logprobs: log-softmax of the logits, top-n in order, ties to lower ids */
static void test_logprobs(void **state) {
    (void)state;
    float l[5] = {1.0f, 3.0f, 3.0f, -INFINITY, 0.0f};
    sampler_params p = plain(0);
    sampler *s = sampler_new(&p, 5);
    double z = exp(1.0) + 2 * exp(3.0) + exp(0.0);
    token_logprob top[3];
    float lp = sampler_logprobs(s, l, 4, 3, top);
    assert_true(fabs(lp - (0.0 - log(z))) < 1e-5);
    assert_int_equal(top[0].id, 1);
    assert_int_equal(top[1].id, 2);
    assert_int_equal(top[2].id, 0);
    assert_true(fabs(top[0].logprob - (3.0 - log(z))) < 1e-5);
    assert_true(fabs(top[2].logprob - (1.0 - log(z))) < 1e-5);
    assert_true(sampler_logprobs(s, l, 3, 0, NULL) == -INFINITY);
    sampler_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rng_known_values),    cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_temperature_matches_softmax), cmocka_unit_test(test_all_equal_and_neg_inf),
        cmocka_unit_test(test_top_k),               cmocka_unit_test(test_top_p),
        cmocka_unit_test(test_min_p),               cmocka_unit_test(test_filter_then_temperature),
        cmocka_unit_test(test_penalties),           cmocka_unit_test(test_seed_reproducible),
        cmocka_unit_test(test_top_k_large_vocab),
        cmocka_unit_test(test_logprobs),
        cmocka_unit_test(test_top_p_wide_nucleus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
