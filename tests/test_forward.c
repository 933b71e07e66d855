/* test_forward.c — the forward pass against the reference implementation's
 * golden logits, for every shared model and quant type; and the invariants
 * the server relies on: bit-identical logits for any thread count, and for a
 * token whether it is evaluated alone, in a prompt batch, or interleaved with
 * another sequence. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/models.h"
#include "testutil.h"

/* Reads "tokens": [...] out of a golden JSON file. */
static int32_t *golden_tokens(const char *json, int *n) {
    const char *p = strstr(json, "\"tokens\"");
    assert_non_null(p);
    p = strchr(p, '[');
    assert_non_null(p);
    p++;
    int cap = 64, k = 0;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    while (*p && *p != ']') {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) { p++; continue; }
        if (k == cap) ids = realloc(ids, (size_t)(cap *= 2) * sizeof *ids);
        ids[k++] = (int32_t)v;
        p = end;
    }
    *n = k;
    return ids;
}

static float *eval_prompt(const model *m, const int32_t *ids, int n, int threads, int n_batch) {
    model_ctx c;
    qerr e;
    model_ctx_params p = {.n_ctx = n, .n_seq = 1, .n_threads = threads, .n_batch = n_batch};
    if (model_ctx_init(&c, m, &p, &e)) { fprintf(stderr, "%s\n", e.msg); fail(); }
    int32_t *pos = malloc((size_t)n * sizeof *pos), *seq = calloc((size_t)n, sizeof *seq);
    for (int i = 0; i < n; i++) pos[i] = i;
    float *logits = malloc((size_t)n * m->hp.n_vocab * sizeof(float));
    model_batch b = {n, ids, pos, seq, NULL};
    if (model_forward(&c, &b, logits, &e)) { fprintf(stderr, "%s\n", e.msg); fail(); }
    free(pos);
    free(seq);
    model_ctx_free(&c);
    return logits;
}

typedef struct golden_case {
    const char *name, *model;
    double max_nrmse;
} golden_case;

static const golden_case cases[] = {
    {"stories260K", "models/stories260K.gguf", 0.005},
    {"syn-llama-F32", "models/synthetic/syn-llama-F32.gguf", 0.005},
    {"syn-llama-F16", "models/synthetic/syn-llama-F16.gguf", 0.005},
    {"syn-llama-BF16", "models/synthetic/syn-llama-BF16.gguf", 0.005},
    {"syn-llama-Q8_0", "models/synthetic/syn-llama-Q8_0.gguf", 0.02},
    {"syn-llama-Q4_0", "models/synthetic/syn-llama-Q4_0.gguf", 0.02},
    {"syn-llama-Q4_1", "models/synthetic/syn-llama-Q4_1.gguf", 0.02},
    {"syn-llama-Q5_0", "models/synthetic/syn-llama-Q5_0.gguf", 0.02},
    {"syn-llama-Q5_1", "models/synthetic/syn-llama-Q5_1.gguf", 0.02},
    {"syn-llama-Q2_K", "models/synthetic/syn-llama-Q2_K.gguf", 0.02},
    {"syn-llama-Q3_K", "models/synthetic/syn-llama-Q3_K.gguf", 0.02},
    {"syn-llama-Q4_K", "models/synthetic/syn-llama-Q4_K.gguf", 0.02},
    {"syn-llama-Q5_K", "models/synthetic/syn-llama-Q5_K.gguf", 0.02},
    {"syn-llama-Q6_K", "models/synthetic/syn-llama-Q6_K.gguf", 0.02},
    {"syn-llama-Q4_K_M", "models/synthetic/syn-llama-Q4_K_M.gguf", 0.02},
    {"syn-qwen2-Q8_0", "models/synthetic/syn-qwen2-Q8_0.gguf", 0.02},
    {"syn-qwen2-Q4_K_M", "models/synthetic/syn-qwen2-Q4_K_M.gguf", 0.02},
};

static void check_golden(const golden_case *gc) {
    char rel[256];
    snprintf(rel, sizeof rel, "golden/golden-%s.json", gc->name);
    char *json = test_read_file(shared_path(rel), NULL);
    int n;
    int32_t *ids = golden_tokens(json, &n);
    free(json);
    model *m;
    qerr e;
    if (model_load(&m, shared_path(gc->model), &e)) { fprintf(stderr, "%s\n", e.msg); fail(); }
    snprintf(rel, sizeof rel, "golden/golden-%s.logits.f32", gc->name);
    size_t len;
    float *ref = test_read_file(shared_path(rel), &len);
    size_t nv = (size_t)m->hp.n_vocab;
    assert_int_equal(len, (size_t)n * nv * sizeof(float));
    float *got = eval_prompt(m, ids, n, 2, 0);
    double err = nrmse(got, ref, (size_t)n * nv);
    int agree = 0;
    for (int i = 0; i < n; i++) {
        size_t a = 0, r = 0;
        for (size_t j = 1; j < nv; j++) {
            if (got[i * nv + j] > got[i * nv + a]) a = j;
            if (ref[i * nv + j] > ref[i * nv + r]) r = j;
        }
        agree += a == r;
    }
    printf("  %-18s nrmse %.5f (limit %.3f)  argmax agreement %d/%d\n", gc->name, err, gc->max_nrmse, agree, n);
    assert_true(err <= gc->max_nrmse);
    assert_true(agree * 10 >= n * 9);
    free(got);
    free(ref);
    free(ids);
    model_free(m);
}

static bool sanitized(void) {
    const char *s = getenv("QUIRE_TEST_SANITIZED");
    return s && *s && strcmp(s, "0") != 0;
}

/* Runs under every instruction set this machine has (q_isa_set); the
 * sanitizer run samples a third of the cases per ISA. */
static void test_golden_logits(void **state) {
    (void)state;
    int saved = q_isa_get(), k = 0;
    for (int isa = 0; isa < Q_ISA_COUNT; isa++) {
        if (!q_isa_available(isa)) continue;
        assert_int_equal(q_isa_set(isa, NULL), 0);
        printf(" ISA %s\n", q_isa_name(isa));
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
            if (!sanitized() || (int)(i % 3) == k % 3) check_golden(&cases[i]);
        k++;
    }
    assert_int_equal(q_isa_set(saved, NULL), 0);
}

/* Same logits, bit for bit, with 1, 2 and 3 threads and with batch sizes
 * 1 (token by token), 7 and the whole prompt. */
static void test_thread_and_batch_invariance(void **state) {
    (void)state;
    const char *models[] = {"models/stories260K.gguf", "models/synthetic/syn-llama-F16.gguf",
                            "models/synthetic/syn-llama-Q4_K_M.gguf",
                            "models/synthetic/syn-qwen2-Q8_0.gguf", "models/synthetic/syn-llama-Q4_0.gguf",
                            "models/synthetic/syn-llama-Q5_1.gguf"};
    int nm = (int)(sizeof models / sizeof *models), saved = q_isa_get();
    for (int isa = 0; isa < Q_ISA_COUNT; isa++) {
    if (!q_isa_available(isa)) continue;
    assert_int_equal(q_isa_set(isa, NULL), 0);
    for (int k = 0; k < nm; k++) {
        if (sanitized() && k % 2 != isa % 2) continue;
        model *m;
        qerr e;
        if (model_load(&m, shared_path(models[k]), &e)) { fprintf(stderr, "%s\n", e.msg); fail(); }
        int n = 40;
        int32_t ids[40];
        for (int i = 0; i < n; i++) ids[i] = (int32_t)((i * 7919 + 13) % m->hp.n_vocab);
        size_t sz = (size_t)n * m->hp.n_vocab * sizeof(float);
        float *a = eval_prompt(m, ids, n, 1, 0);
        float *b = eval_prompt(m, ids, n, 2, 0);
        float *c = eval_prompt(m, ids, n, 3, 7);
        float *d = eval_prompt(m, ids, n, 2, 1);
        assert_memory_equal(a, b, sz);
        assert_memory_equal(a, c, sz);
        assert_memory_equal(a, d, sz);
        free(a); free(b); free(c); free(d);
        model_free(m);
    }
    }
    assert_int_equal(q_isa_set(saved, NULL), 0);
}

/* Repacked weights (QUIRE_REPACK=1, the default) give the logits of the
 * weights used in place (0), bit for bit; a bad value fails the load. */
static void test_repack_modes(void **state) {
    (void)state;
    const char *models[] = {"models/synthetic/syn-llama-Q4_0.gguf", "models/synthetic/syn-llama-Q8_0.gguf",
                            "models/synthetic/syn-qwen2-Q8_0.gguf", "models/synthetic/syn-llama-Q4_K_M.gguf"};
    const char *old = getenv("QUIRE_REPACK");
    char *saved = old ? strdup(old) : NULL;
    for (size_t k = 0; k < sizeof models / sizeof *models; k++) {
        float *out[2];
        size_t sz = 0;
        for (int mode = 0; mode < 2; mode++) {
            setenv("QUIRE_REPACK", mode ? "1" : "0", 1);
            model *m;
            qerr e;
            if (model_load(&m, shared_path(models[k]), &e)) { fprintf(stderr, "%s\n", e.msg); fail(); }
            if (mode == 0) assert_int_equal(m->packed_bytes, 0);
            else if (k < 3 && q_pack_supported(QT_Q8_0, q_isa_get())) assert_true(m->packed_bytes > 0);
            int n = 24;
            int32_t ids[24];
            for (int i = 0; i < n; i++) ids[i] = (int32_t)((i * 104729 + 7) % m->hp.n_vocab);
            sz = (size_t)n * m->hp.n_vocab * sizeof(float);
            out[mode] = eval_prompt(m, ids, n, 2, mode ? 5 : 0);
            model_free(m);
        }
        assert_memory_equal(out[0], out[1], sz);
        free(out[0]);
        free(out[1]);
    }
    setenv("QUIRE_REPACK", "sometimes", 1);
    model *m;
    qerr e;
    assert_int_not_equal(model_load(&m, shared_path(models[0]), &e), 0);
    assert_non_null(strstr(e.msg, "QUIRE_REPACK"));
    if (saved) setenv("QUIRE_REPACK", saved, 1);
    else unsetenv("QUIRE_REPACK");
    free(saved);
}

/* Two sequences interleaved in one batch give the logits each gives alone;
 * truncating a sequence and re-evaluating reproduces the same logits. */
static void test_multi_sequence(void **state) {
    (void)state;
    model *m;
    qerr e;
    assert_int_equal(model_load(&m, shared_path("models/synthetic/syn-llama-F16.gguf"), &e), 0);
    int n = 20, nv = m->hp.n_vocab;
    int32_t s0[20], s1[20];
    for (int i = 0; i < n; i++) { s0[i] = (int32_t)((i * 31 + 1) % nv); s1[i] = (int32_t)((i * 17 + 5) % nv); }
    float *alone0 = eval_prompt(m, s0, n, 2, 0);
    float *alone1 = eval_prompt(m, s1, n, 2, 0);

    model_ctx c;
    model_ctx_params p = {.n_ctx = 2 * n + KV_BLOCK, .n_seq = 3, .n_threads = 2};
    assert_int_equal(model_ctx_init(&c, m, &p, &e), 0);
    int32_t tok[40], pos[40], seq[40];
    for (int i = 0; i < n; i++) {
        tok[2 * i] = s0[i], pos[2 * i] = i, seq[2 * i] = 0;
        tok[2 * i + 1] = s1[i], pos[2 * i + 1] = i, seq[2 * i + 1] = 2;
    }
    float *mixed = malloc((size_t)2 * n * nv * sizeof(float));
    model_batch b = {2 * n, tok, pos, seq, NULL};
    assert_int_equal(model_forward(&c, &b, mixed, &e), 0);
    for (int i = 0; i < n; i++) {
        assert_memory_equal(mixed + (size_t)(2 * i) * nv, alone0 + (size_t)i * nv, (size_t)nv * sizeof(float));
        assert_memory_equal(mixed + (size_t)(2 * i + 1) * nv, alone1 + (size_t)i * nv, (size_t)nv * sizeof(float));
    }
    /* Rewind sequence 2 to 10 tokens and continue it: the same logits. */
    kv_cache_seq_truncate(&c.kv, 2, 10);
    assert_int_equal(kv_cache_seq_len(&c.kv, 2), 10);
    model_batch b2 = {n - 10, s1 + 10, pos + 0, seq + 0, NULL};
    int32_t pos2[10], seq2[10];
    for (int i = 0; i < 10; i++) pos2[i] = 10 + i, seq2[i] = 2;
    b2.pos = pos2;
    b2.seq = seq2;
    assert_int_equal(model_forward(&c, &b2, mixed, &e), 0);
    assert_memory_equal(mixed, alone1 + (size_t)10 * nv, (size_t)10 * nv * sizeof(float));

    /* Bad batches are rejected without changing the cache. */
    int32_t bad_tok = nv, p0 = 20, s0id = 0;
    model_batch bad = {1, &bad_tok, &p0, &s0id, NULL};
    assert_int_not_equal(model_forward(&c, &bad, mixed, &e), 0);
    assert_non_null(strstr(e.msg, "out of range"));
    int32_t ok_tok = 1, wrong_pos = 5;
    model_batch gap = {1, &ok_tok, &wrong_pos, &s0id, NULL};
    assert_int_not_equal(model_forward(&c, &gap, mixed, &e), 0);
    assert_non_null(strstr(e.msg, "expected 20"));
    assert_int_equal(kv_cache_seq_len(&c.kv, 0), 20);
    /* The pool runs out: a clear error, nothing changed. */
    int32_t many_t[64], many_p[64], many_s[64];
    for (int i = 0; i < 64; i++) many_t[i] = 1, many_p[i] = i, many_s[i] = 1;
    model_batch big = {64, many_t, many_p, many_s, NULL};
    assert_int_not_equal(model_forward(&c, &big, mixed, &e), 0);
    assert_non_null(strstr(e.msg, "context full"));
    assert_int_equal(kv_cache_seq_len(&c.kv, 1), 0);

    free(mixed); free(alone0); free(alone1);
    model_ctx_free(&c);
    model_free(m);
}

/* Batched decode: one entry per sequence in a batch (each item of the
 * attention job then ropes and stores its own cells) gives the logits each
 * sequence gives alone. */
static void test_batched_decode(void **state) {
    (void)state;
    model *m;
    qerr e;
    assert_int_equal(model_load(&m, shared_path("models/synthetic/syn-llama-F16.gguf"), &e), 0);
    enum { N = 12, STEPS = 3 };
    int nv = m->hp.n_vocab;
    int32_t s[3][N + STEPS];
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < N + STEPS; i++) s[k][i] = (int32_t)((i * (13 + 6 * k) + 3 * k + 1) % nv);
    float *alone[3];
    for (int k = 0; k < 3; k++) alone[k] = eval_prompt(m, s[k], N + STEPS, 2, 0);
    for (int threads = 1; threads <= 3; threads++) {
        model_ctx c;
        model_ctx_params p = {.n_ctx = 3 * (N + STEPS + KV_BLOCK), .n_seq = 3, .n_threads = threads};
        assert_int_equal(model_ctx_init(&c, m, &p, &e), 0);
        float *out = malloc((size_t)N * nv * sizeof(float));
        int32_t pos[N], seq[N];
        for (int k = 0; k < 3; k++) {
            for (int i = 0; i < N; i++) pos[i] = i, seq[i] = k;
            model_batch b = {N, s[k], pos, seq, NULL};
            assert_int_equal(model_forward(&c, &b, out, &e), 0);
        }
        for (int t = 0; t < STEPS; t++) {
            int32_t tok[3], tp[3], ts[3];
            for (int k = 0; k < 3; k++) tok[k] = s[2 - k][N + t], tp[k] = N + t, ts[k] = 2 - k;
            model_batch b = {3, tok, tp, ts, NULL};
            assert_int_equal(model_forward(&c, &b, out, &e), 0);
            for (int k = 0; k < 3; k++)
                assert_memory_equal(out + (size_t)k * nv, alone[2 - k] + (size_t)(N + t) * nv, (size_t)nv * sizeof(float));
        }
        free(out);
        model_ctx_free(&c);
    }
    for (int k = 0; k < 3; k++) free(alone[k]);
    model_free(m);
}

static void test_bad_models(void **state) {
    (void)state;
    model *m;
    qerr e;
    /* A vocabulary-only file has no weights: named, not a crash. */
    assert_int_not_equal(model_load(&m, shared_path("vocab/ggml-vocab-llama-spm.gguf"), &e), 0);
    assert_non_null(strstr(e.msg, "missing"));
    assert_int_not_equal(model_load(&m, shared_path("models/synthetic/syn-bert-F16.gguf"), &e), 0);
    assert_non_null(strstr(e.msg, "not supported"));
    /* Head sizes outside 1..512 (the cache store keeps a row on the stack)
     * are refused by name before any tensor is looked at. */
    const uint32_t key_len[] = {513, 100000};
    for (int k = 0; k < 2; k++) {
        char path[] = "/tmp/quire-test-headsize-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        close(fd);
        gguf_writer *w = gguf_writer_new();
        gguf_value eps = {.type = GGUF_F32, .v = {.f = 1e-5}};
        assert_int_equal(gguf_writer_set_str(w, "general.architecture", "llama"), 0);
        gguf_writer_set_u32(w, "llama.embedding_length", 64);
        gguf_writer_set_u32(w, "llama.block_count", 1);
        gguf_writer_set_u32(w, "llama.attention.head_count", 1);
        gguf_writer_set_u32(w, "llama.feed_forward_length", 64);
        gguf_writer_set_u32(w, "llama.attention.key_length", key_len[k]);
        gguf_writer_set(w, "llama.attention.layer_norm_rms_epsilon", &eps);
        assert_int_equal(gguf_writer_write(w, path, &e), 0);
        gguf_writer_free(w);
        assert_int_not_equal(model_load(&m, path, &e), 0);
        assert_non_null(strstr(e.msg, "head size"));
        unlink(path);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_logits),
        cmocka_unit_test(test_thread_and_batch_invariance),
        cmocka_unit_test(test_repack_modes),
        cmocka_unit_test(test_multi_sequence),
        cmocka_unit_test(test_batched_decode),
        cmocka_unit_test(test_bad_models),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
