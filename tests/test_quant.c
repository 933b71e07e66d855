/* test_quant.c — tensor formats and quantizers against the reference's files:
 * dequantizing each syn-llama-TYPE.gguf lands near the F32 weights (a layout
 * bug lands far away), our quantizers reproduce the reference's bytes, edge
 * cases stay finite and bounded, and q_quantize_model reproduces the
 * reference's Q4_K_M mix. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"
#include "testutil.h"

#define SYN "models/synthetic/"

static bool sanitized(void) {
    const char *s = getenv("QUIRE_TEST_SANITIZED");
    return s && *s && strcmp(s, "0") != 0;
}

/* Under the sanitizers only every `stride`-th 2-D tensor is checked. */
static int tensor_stride(void) { return sanitized() ? 4 : 1; }

static gguf *open_shared(const char *rel) {
    gguf *g;
    qerr e;
    if (gguf_open(&g, shared_path(rel), &e)) {
        fprintf(stderr, "%s\n", e.msg);
        fail();
    }
    return g;
}

static int64_t n_elems(const gguf_tensor *t) { return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]; }

/* Per-type upper bounds on the nrmse (rms error / std, per tensor) of the
 * reference's files against the F32 weights. Measured maxima (Release,
 * syn-llama): see the comment beside each; bounds leave ~15% margin. A wrong
 * layout (swapped nibbles, misread scales) gives 0.3 and more. */
typedef struct type_bound {
    const char *file; /* syn-llama-FILE.gguf */
    int type;         /* the type its big tensors have (-1: a mix) */
    double max_nrmse;
} type_bound;

static const type_bound bounds[] = {
    {"F16", QT_F16, 0.0003}, /* 0.00021 */
    {"BF16", QT_BF16, 0.0022}, /* 0.00168 */
    {"Q8_0", QT_Q8_0, 0.0065}, /* 0.00544 */
    {"Q4_0", QT_Q4_0, 0.100}, /* 0.0872 */
    {"Q4_1", QT_Q4_1, 0.090}, /* 0.0787 */
    {"Q5_0", QT_Q5_0, 0.050}, /* 0.0433 */
    {"Q5_1", QT_Q5_1, 0.045}, /* 0.0383 */
    {"Q2_K", QT_Q2_K, 0.345}, /* 0.3003 */
    {"Q3_K", QT_Q3_K, 0.175}, /* 0.1524 */
    {"Q4_K", QT_Q4_K, 0.083}, /* 0.0720 */
    {"Q5_K", QT_Q5_K, 0.042}, /* 0.0364 */
    {"Q6_K", QT_Q6_K, 0.021}, /* 0.0180 */
    {"Q4_K_M", -1, 0.083}, /* 0.0720 */
};

static void test_dequant_vs_f32(void **state) {
    (void)state;
    gguf *ref = open_shared(SYN "syn-llama-F32.gguf");
    for (size_t b = 0; b < sizeof bounds / sizeof *bounds; b++) {
        char rel[256];
        snprintf(rel, sizeof rel, SYN "syn-llama-%s.gguf", bounds[b].file);
        gguf *g = open_shared(rel);
        double worst = 0;
        int n_checked = 0, k = 0;
        for (int64_t i = 0; i < g->n_tensors; i++) {
            const gguf_tensor *t = &g->tensors[i];
            if (t->n_dims < 2) continue;
            if (k++ % tensor_stride()) continue;
            if (bounds[b].type >= 0) assert_int_equal(t->type, bounds[b].type);
            const gguf_tensor *r = gguf_find_tensor(ref, t->name);
            assert_non_null(r);
            assert_int_equal(r->type, QT_F32);
            int64_t n = n_elems(t);
            assert_int_equal(n, n_elems(r));
            assert_true(qtype_is_supported(t->type));
            assert_int_equal(qtype_row_size(t->type, t->ne[0]) * (size_t)(n / t->ne[0]), t->nbytes);
            float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
            assert_non_null(x);
            assert_non_null(y);
            memcpy(x, r->data, (size_t)n * sizeof *x);
            qtype_get(t->type)->to_float(t->data, y, n);
            double err = nrmse(y, x, (size_t)n);
            if (err > worst) worst = err;
            if (!(err <= bounds[b].max_nrmse)) {
                fprintf(stderr, "%s %s (%s): nrmse %.5f > %.5f\n", bounds[b].file, t->name, qtype_get(t->type)->name,
                        err, bounds[b].max_nrmse);
                fail();
            }
            /* qtype_dot_row (what the forward pass uses) agrees with the
             * dequantized row. */
            float xs[768];
            for (int64_t j = 0; j < t->ne[0]; j++) xs[j] = (float)((j * 7919) % 17) / 17.0f - 0.5f;
            size_t rs = qtype_row_size(t->type, t->ne[0]);
            for (int64_t row = 0; row < t->ne[1]; row += t->ne[1] / 4) {
                double want = 0;
                for (int64_t j = 0; j < t->ne[0]; j++) want += (double)y[row * t->ne[0] + j] * xs[j];
                float got = qtype_dot_row(t->type, (const uint8_t *)t->data + (size_t)row * rs, xs, t->ne[0]);
                assert_true(fabs(got - want) <= 1e-4 * (1 + fabs(want)));
            }
            free(x);
            free(y);
            n_checked++;
        }
        assert_true(n_checked > 0);
        fprintf(stderr, "  dequant %-6s worst tensor nrmse %.5f (bound %.4f, %d tensors)\n", bounds[b].file, worst,
                bounds[b].max_nrmse, n_checked);
        gguf_close(g);
    }
    gguf_close(ref);
}

/* Types whose quantizer must reproduce the reference's bytes exactly. */
static const char *const exact_types[] = {"Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
                                          "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "F16", "BF16"};

static void test_quantizers_bit_exact(void **state) {
    (void)state;
    gguf *ref = open_shared(SYN "syn-llama-F32.gguf");
    for (size_t k = 0; k < sizeof exact_types / sizeof *exact_types; k++) {
        char rel[256];
        snprintf(rel, sizeof rel, SYN "syn-llama-%s.gguf", exact_types[k]);
        gguf *g = open_shared(rel);
        int type = qtype_from_name(exact_types[k]);
        const qtype_traits *tr = qtype_get(type);
        assert_non_null(tr->from_float);
        int64_t n_blocks = 0, n_same = 0;
        double e_ours = 0, e_ref = 0;
        int c = 0;
        for (int64_t i = 0; i < g->n_tensors; i++) {
            const gguf_tensor *t = &g->tensors[i];
            if (t->n_dims < 2) continue;
            if (c++ % tensor_stride()) continue;
            assert_int_equal(t->type, type);
            const gguf_tensor *r = gguf_find_tensor(ref, t->name);
            int64_t n = n_elems(t);
            float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
            uint8_t *q = malloc(t->nbytes);
            assert_non_null(x);
            assert_non_null(y);
            assert_non_null(q);
            memcpy(x, r->data, (size_t)n * sizeof *x);
            tr->from_float(x, q, n);
            for (uint64_t off = 0; off < t->nbytes; off += tr->size) {
                n_blocks++;
                n_same += memcmp(q + off, (const uint8_t *)t->data + off, tr->size) == 0;
            }
            tr->to_float(q, y, n);
            for (int64_t j = 0; j < n; j++) e_ours += ((double)y[j] - x[j]) * ((double)y[j] - x[j]);
            tr->to_float(t->data, y, n);
            for (int64_t j = 0; j < n; j++) e_ref += ((double)y[j] - x[j]) * ((double)y[j] - x[j]);
            free(x);
            free(y);
            free(q);
        }
        fprintf(stderr, "  quantize %-5s %lld/%lld blocks identical, rms error ratio ours/reference %.6f\n",
                exact_types[k], (long long)n_same, (long long)n_blocks, e_ref > 0 ? sqrt(e_ours / e_ref) : 1.0);
        if (e_ref > 0) assert_true(sqrt(e_ours / e_ref) <= 1.02);
        assert_int_equal(n_same, n_blocks);
        gguf_close(g);
    }
    gguf_close(ref);
}

/* ------------------------------------------------------------------------ */
/* Round trips on synthetic data. */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double rng_uniform(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return ((rng_state >> 11) + 0.5) / 9007199254740992.0;
}
static float rng_gauss(void) {
    double u = rng_uniform(), v = rng_uniform();
    return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

/* Relative rms error bound for Gaussian data, per type (a little above what
 * the F32 comparison above measures: the data here is Gaussian too). */
static double gauss_bound(int type) {
    switch (type) {
    case QT_F32: return 1e-7;
    case QT_F16: return 0.0005;
    case QT_BF16: return 0.004;
    case QT_Q8_0: return 0.0075;
    case QT_Q4_0: return 0.115;
    case QT_Q4_1: return 0.105;
    case QT_Q5_0: return 0.057;
    case QT_Q5_1: return 0.051;
    case QT_Q2_K: return 0.39;
    case QT_Q3_K: return 0.20;
    case QT_Q4_K: return 0.095;
    case QT_Q5_K: return 0.048;
    case QT_Q6_K: return 0.024;
    case QT_IQ4_NL: return 0.10;
    default: return 0;
    }
}

static double rel_rms(const float *y, const float *x, int64_t n) {
    double e = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        e += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
        s += (double)x[i] * x[i];
    }
    return s > 0 ? sqrt(e / s) : sqrt(e / (double)n);
}

static void assert_finite(const float *y, int64_t n, const char *what, const char *type) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(y[i])) {
            fprintf(stderr, "%s %s: element %lld is %g\n", type, what, (long long)i, y[i]);
            fail();
        }
}

static void test_roundtrip_edge_cases(void **state) {
    (void)state;
    enum { N = 1024 };
    static float x[N], y[N];
    static uint8_t q[N * 4 + 64];
    const int types[] = {QT_F16, QT_BF16, QT_Q8_0, QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1,
                         QT_Q2_K, QT_Q3_K, QT_Q4_K, QT_Q5_K, QT_Q6_K, QT_IQ4_NL};
    for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
        int type = types[k];
        const qtype_traits *tr = qtype_get(type);
        const char *name = tr->name;
        assert_non_null(tr->from_float);
        assert_true(qtype_row_size(type, N) <= sizeof q);
        double bound = gauss_bound(type);

        /* all zeros decode to exact zeros */
        memset(x, 0, sizeof x);
        memset(q, 0xa5, sizeof q);
        tr->from_float(x, q, N);
        tr->to_float(q, y, N);
        for (int i = 0; i < N; i++) assert_true(y[i] == 0.0f);

        /* Gaussian data at several scales inside the fp16 range of the
         * block scales: error relative to the data stays the same */
        const float scales[] = {1.0f, 1000.0f, 0.01f};
        for (size_t s = 0; s < sizeof scales / sizeof *scales; s++) {
            for (int i = 0; i < N; i++) x[i] = scales[s] * rng_gauss();
            tr->from_float(x, q, N);
            tr->to_float(q, y, N);
            assert_finite(y, N, "gauss", name);
            double err = rel_rms(y, x, N);
            if (!(err <= bound)) {
                fprintf(stderr, "%s gauss*%g: rel rms %.5f > %.5f\n", name, scales[s], err, bound);
                fail();
            }
        }

        /* constant rows (positive, negative): reproduced closely */
        /* (0.05: smaller constants push Q4_K's d = c/945 into fp16
         * subnormals, a limit of the format, not of the quantizer) */
        const float consts[] = {0.7f, -3.0f, 0.05f};
        for (size_t c = 0; c < sizeof consts / sizeof *consts; c++) {
            for (int i = 0; i < N; i++) x[i] = consts[c];
            tr->from_float(x, q, N);
            tr->to_float(q, y, N);
            assert_finite(y, N, "constant", name);
            double err = rel_rms(y, x, N);
            if (!(err <= 0.01)) {
                fprintf(stderr, "%s constant %g: rel rms %.5f\n", name, consts[c], err);
                fail();
            }
        }

        /* tiny values (block scales underflow fp16): finite, and the error
         * is no larger than the values themselves */
        for (int i = 0; i < N; i++) x[i] = 1e-9f * rng_gauss();
        tr->from_float(x, q, N);
        tr->to_float(q, y, N);
        assert_finite(y, N, "tiny", name);
        for (int i = 0; i < N; i++) assert_true(fabsf(y[i] - x[i]) <= 1e-8f);

        /* a single outlier among small values: the outlier survives, the
         * rest of the block is not destroyed beyond the outlier's scale */
        for (int i = 0; i < N; i++) x[i] = 0.01f * rng_gauss();
        x[300] = 50.0f;
        x[700] = -50.0f;
        tr->from_float(x, q, N);
        tr->to_float(q, y, N);
        assert_finite(y, N, "outlier", name);
        for (int i = 0; i < N; i++) {
            if (i == 300 || i == 700) {
                if (!(fabsf(y[i] - x[i]) <= 0.1f * 50.0f)) {
                    fprintf(stderr, "%s outlier %d: %g vs %g\n", name, i, y[i], x[i]);
                    fail();
                }
            } else {
                assert_true(fabsf(y[i] - x[i]) <= 0.35f * 50.0f);
            }
        }
        /* blocks far from the outliers keep their usual accuracy */
        double err = rel_rms(y, x, 256);
        if (!(err <= bound * 1.2 + 1e-6)) {
            fprintf(stderr, "%s: block without outlier rel rms %.5f\n", name, err);
            fail();
        }

        /* NaN/inf input must not crash (values are then unspecified) */
        for (int i = 0; i < N; i++) x[i] = rng_gauss();
        x[5] = NAN;
        x[600] = INFINITY;
        tr->from_float(x, q, N);
        tr->to_float(q, y, N);
    }
}

/* ------------------------------------------------------------------------ */
/* Whole-model quantization. */

static char *tmp_path(const char *tag) {
    static char buf[4][256];
    static int slot;
    char *b = buf[slot++ % 4];
    snprintf(b, 256, "/tmp/quire-test-quant-%d-%s.gguf", (int)getpid(), tag);
    return b;
}

/* Tensor names and types of two files are the same (any order). */
static void assert_same_type_map(const gguf *a, const gguf *b) {
    assert_int_equal(a->n_tensors, b->n_tensors);
    for (int64_t i = 0; i < b->n_tensors; i++) {
        const gguf_tensor *tb = &b->tensors[i];
        const gguf_tensor *ta = gguf_find_tensor(a, tb->name);
        if (!ta || ta->type != tb->type) {
            fprintf(stderr, "%s: ours %s, reference %s\n", tb->name, ta ? qtype_get(ta->type)->name : "missing",
                    qtype_get(tb->type)->name);
            fail();
        }
        for (int d = 0; d < GGUF_MAX_DIMS; d++) assert_int_equal(ta->ne[d], tb->ne[d]);
    }
}

static void test_quantize_model_q4_k_m(void **state) {
    (void)state;
    const char *out = tmp_path("q4km");
    qerr e;
    if (q_quantize_model(shared_path(SYN "syn-llama-F32.gguf"), out, "Q4_K_M", 2, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        fail();
    }
    gguf *ours = NULL, *ref = open_shared(SYN "syn-llama-Q4_K_M.gguf");
    assert_int_equal(gguf_open(&ours, out, &e), 0);
    assert_same_type_map(ours, ref);
    int64_t v;
    assert_true(gguf_get_int(ours, "general.file_type", &v));
    assert_int_equal(v, 15);
    assert_true(gguf_get_int(ours, "general.quantization_version", &v));
    assert_int_equal(v, 2);
    assert_int_equal(ours->version, 3);
    assert_int_equal(ours->alignment, 32);
    assert_string_equal(gguf_get_str(ours, "tokenizer.ggml.model"), "llama");
    /* every tensor's bytes are the reference's */
    for (int64_t i = 0; i < ref->n_tensors; i++) {
        const gguf_tensor *tr = &ref->tensors[i], *to = gguf_find_tensor(ours, tr->name);
        assert_int_equal(to->nbytes, tr->nbytes);
        assert_memory_equal(to->data, tr->data, tr->nbytes);
    }
    gguf_close(ours);
    gguf_close(ref);
    /* the whole file, too: same metadata, tensor order and padding */
    size_t na, nb;
    char *fa = test_read_file(out, &na), *fb = test_read_file(shared_path(SYN "syn-llama-Q4_K_M.gguf"), &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(fa, fb, na);
    free(fa);
    free(fb);
    unlink(out);

    /* Qwen2 (tied embeddings, 2 layers, biases): only a Q8_0 source
     * exists, so this requantizes it; the type map must still match */
    if (!sanitized()) {
        if (q_quantize_model(shared_path(SYN "syn-qwen2-Q8_0.gguf"), out, "Q4_K_M", 2, &e)) {
            fprintf(stderr, "%s\n", e.msg);
            fail();
        }
        assert_int_equal(gguf_open(&ours, out, &e), 0);
        ref = open_shared(SYN "syn-qwen2-Q4_K_M.gguf");
        assert_same_type_map(ours, ref);
        assert_int_equal(gguf_find_tensor(ours, "token_embd.weight")->type, QT_Q6_K);
        gguf_close(ref);
        gguf_close(ours);
        unlink(out);
    }

    /* the single-type conversions of the F32 model: their tensors (here
     * the rules give output.weight Q6_K, which the reference's --pure files
     * do not have) */
    if (!sanitized()) {
        const char *names[] = {"Q8_0", "Q4_0", "Q5_1", "Q2_K", "Q3_K", "Q5_K_S", "Q6_K", "F16", "BF16"};
        const char *files[] = {"Q8_0", "Q4_0", "Q5_1", "Q2_K", "Q3_K", "Q5_K", "Q6_K", "F16", "BF16"};
        for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
            char rel[256];
            snprintf(rel, sizeof rel, SYN "syn-llama-%s.gguf", files[k]);
            if (q_quantize_model(shared_path(SYN "syn-llama-F32.gguf"), out, names[k], 2, &e)) {
                fprintf(stderr, "%s: %s\n", names[k], e.msg);
                fail();
            }
            assert_int_equal(gguf_open(&ours, out, &e), 0);
            assert_true(gguf_get_int(ours, "general.file_type", &v));
            assert_int_equal(v, q_quant_ftype_from_name(names[k]));
            ref = open_shared(rel);
            /* tensors the rules leave at the base type equal the --pure
             * file's; the others are the ones the mix rules single out */
            for (int64_t i = 0; i < ref->n_tensors; i++) {
                const gguf_tensor *tr = &ref->tensors[i], *to = gguf_find_tensor(ours, tr->name);
                assert_non_null(to);
                if (to->type == tr->type) {
                    assert_memory_equal(to->data, tr->data, tr->nbytes);
                } else if (strcmp(tr->name, "output.weight") != 0 && !strstr(tr->name, "attn_v.weight") &&
                           !strstr(tr->name, "ffn_down") && !strstr(tr->name, "attn_output.weight")) {
                    fprintf(stderr, "%s: %s got %s\n", names[k], tr->name, qtype_get(to->type)->name);
                    fail();
                }
            }
            const gguf_tensor *o = gguf_find_tensor(ours, "output.weight");
            int want_out = strcmp(names[k], "Q8_0") == 0 ? QT_Q8_0
                           : (strcmp(names[k], "F16") == 0 || strcmp(names[k], "BF16") == 0) ? qtype_from_name(names[k])
                                                                                             : QT_Q6_K;
            assert_int_equal(o->type, want_out);
            assert_int_equal(gguf_find_tensor(ours, "output_norm.weight")->type, QT_F32);
            gguf_close(ref);
            gguf_close(ours);
            unlink(out);
        }
    }
}

/* The tied-embedding case and the fallbacks for rows that do not split
 * into 256-element super-blocks, on a tiny hand-made model. */
static void test_quantize_model_fallbacks(void **state) {
    (void)state;
    const char *in = tmp_path("fb-in"), *out = tmp_path("fb-out");
    gguf_writer *w = gguf_writer_new();
    assert_non_null(w);
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_u32(w, "llama.block_count", 1);
    gguf_writer_set_u32(w, "llama.attention.head_count", 4);
    gguf_writer_set_u32(w, "llama.attention.head_count_kv", 4);
    static float data[256 * 16];
    for (size_t i = 0; i < sizeof data / sizeof *data; i++) data[i] = rng_gauss();
    int64_t ne_emb[2] = {256, 16}, ne_q[2] = {96, 8}, ne_up[2] = {40, 4}, ne_norm[1] = {96}, ne_v[2] = {256, 4};
    assert_int_equal(gguf_writer_add_tensor(w, "token_embd.weight", QT_F32, 2, ne_emb, data, 256 * 16 * 4), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "blk.0.attn_q.weight", QT_F32, 2, ne_q, data, 96 * 8 * 4), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "blk.0.attn_v.weight", QT_F32, 2, ne_v, data, 256 * 4 * 4), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "blk.0.ffn_up.weight", QT_F32, 2, ne_up, data, 40 * 4 * 4), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "blk.0.attn_norm.weight", QT_F32, 1, ne_norm, data, 96 * 4), 0);
    qerr e;
    assert_int_equal(gguf_writer_write(w, in, &e), 0);
    gguf_writer_free(w);

    struct { const char *ftype; int emb, q, v, up; } cases[] = {
        /* no output.weight: token_embd is the output and gets Q6_K;
         * 96 = 3*32: Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0; 40: F16.
         * attn_v in the only (= last) layer uses more bits. */
        {"Q4_K_M", QT_Q6_K, QT_Q5_0, QT_Q6_K, QT_F16},
        {"Q5_K_S", QT_Q6_K, QT_Q5_1, QT_Q5_K, QT_F16},
        {"Q6_K", QT_Q6_K, QT_Q8_0, QT_Q6_K, QT_F16},
        /* Q2_K/Q3_K fall back to IQ4_NL; Q2_K's attn_v is Q3_K (n_gqa 1) */
        {"Q2_K", QT_Q6_K, QT_IQ4_NL, QT_Q3_K, QT_F16},
        {"Q3_K_S", QT_Q6_K, QT_IQ4_NL, QT_Q3_K, QT_F16},
        {"Q8_0", QT_Q8_0, QT_Q8_0, QT_Q8_0, -1},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        int rc = q_quantize_model(in, out, cases[k].ftype, 1, &e);
        if (cases[k].up < 0) { /* a legacy type has no fallback: refused */
            assert_int_not_equal(rc, 0);
            assert_non_null(strstr(e.msg, "blk.0.ffn_up.weight"));
            continue;
        }
        if (rc) { fprintf(stderr, "%s: %s\n", cases[k].ftype, e.msg); fail(); }
        gguf *g;
        assert_int_equal(gguf_open(&g, out, &e), 0);
        assert_int_equal(gguf_find_tensor(g, "token_embd.weight")->type, cases[k].emb);
        assert_int_equal(gguf_find_tensor(g, "blk.0.attn_q.weight")->type, cases[k].q);
        assert_int_equal(gguf_find_tensor(g, "blk.0.attn_v.weight")->type, cases[k].v);
        assert_int_equal(gguf_find_tensor(g, "blk.0.ffn_up.weight")->type, cases[k].up);
        assert_int_equal(gguf_find_tensor(g, "blk.0.attn_norm.weight")->type, QT_F32);
        /* and the fallback tensors still decode close to the input */
        const gguf_tensor *t = gguf_find_tensor(g, "blk.0.attn_q.weight");
        float y[96 * 8];
        qtype_get(t->type)->to_float(t->data, y, 96 * 8);
        assert_true(rel_rms(y, data, 96 * 8) < 1.3 * gauss_bound(t->type));
        gguf_close(g);
    }
    assert_int_not_equal(q_quantize_model(in, out, "Q7_K", 1, &e), 0);
    assert_non_null(strstr(e.msg, "Q7_K"));
    assert_int_not_equal(q_quantize_model("/nonexistent.gguf", out, "Q4_0", 1, &e), 0);
    assert_non_null(strstr(e.msg, "nonexistent"));
    unlink(in);
    unlink(out);
}

static void test_cli_quantize(void **state) {
    (void)state;
    char *out;
    assert_int_equal(run_quire("quantize --help", &out), 0);
    assert_non_null(strstr(out, "usage: quire quantize"));
    free(out);
    assert_int_equal(run_quire("quantize 2>/dev/null", NULL), 2);
    assert_int_equal(run_quire("quantize a.gguf b.gguf NOPE 2>/dev/null", NULL), 2);
    assert_int_equal(run_quire("quantize /nonexistent.gguf /tmp/x.gguf Q4_0 2>/dev/null", NULL), 2);
    assert_int_equal(run_quire("quantize a b Q4_0 -t zero 2>/dev/null", NULL), 2);
    const char *dst = tmp_path("cli");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "quantize %s %s q8_0 -t 2 2>/dev/null", shared_path(SYN "syn-llama-F32.gguf"), dst);
    assert_int_equal(run_quire(cmd, NULL), 0);
    gguf *g;
    qerr e;
    assert_int_equal(gguf_open(&g, dst, &e), 0);
    assert_int_equal(gguf_find_tensor(g, "blk.0.attn_q.weight")->type, QT_Q8_0);
    gguf_close(g);
    unlink(dst);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dequant_vs_f32),        cmocka_unit_test(test_quantizers_bit_exact),
        cmocka_unit_test(test_roundtrip_edge_cases),  cmocka_unit_test(test_quantize_model_q4_k_m),
        cmocka_unit_test(test_quantize_model_fallbacks), cmocka_unit_test(test_cli_quantize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
