/* test_gguf.c — the GGUF reader and writer: every shared model loads, the
 * writer round-trips, and each malformed-file case is rejected with a message
 * that names the problem. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"
#include "testutil.h"

/* A tiny GGUF byte builder for hand-made hostile files. */
typedef struct gb {
    uint8_t p[4096];
    size_t n;
} gb;
static void gb_put(gb *b, const void *d, size_t n) { memcpy(b->p + b->n, d, n); b->n += n; }
static void gb_u32(gb *b, uint32_t v) { gb_put(b, &v, 4); }
static void gb_u64(gb *b, uint64_t v) { gb_put(b, &v, 8); }
static void gb_str(gb *b, const char *s) { gb_u64(b, strlen(s)); gb_put(b, s, strlen(s)); }
static void gb_hdr(gb *b, uint64_t n_tensors, uint64_t n_kv) {
    b->n = 0;
    gb_u32(b, 0x46554747u);
    gb_u32(b, 3);
    gb_u64(b, n_tensors);
    gb_u64(b, n_kv);
}
static void gb_kv_u32(gb *b, const char *k, uint32_t v) { gb_str(b, k); gb_u32(b, GGUF_U32); gb_u32(b, v); }
/* tensor info: name, dims, type, offset */
static void gb_tensor(gb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off) {
    gb_str(b, name);
    gb_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++) gb_u64(b, ne[i]);
    gb_u32(b, type);
    gb_u64(b, off);
}
static void gb_pad_data(gb *b, size_t data_bytes) {
    while (b->n % 32) b->p[b->n++] = 0;
    memset(b->p + b->n, 0, data_bytes);
    b->n += data_bytes;
}

static void expect_error(const gb *b, const char *needle) {
    gguf *g = NULL;
    qerr e = {{0}};
    int rc = gguf_open_memory(&g, b->p, b->n, &e);
    if (rc == 0 || !strstr(e.msg, needle)) {
        fprintf(stderr, "expected an error containing '%s', got rc=%d msg='%s'\n", needle, rc, e.msg);
        fail();
    }
    assert_null(g);
    assert_null(strchr(e.msg, '\n')); /* one line */
}

static void test_shared_models_load(void **state) {
    (void)state;
    const char *files[] = {"models/stories260K.gguf", "models/synthetic/syn-llama-F32.gguf",
                           "models/synthetic/syn-llama-Q4_K_M.gguf", "models/synthetic/syn-qwen2-Q8_0.gguf",
                           "models/synthetic/syn-bert-F16.gguf", "vocab/ggml-vocab-gpt-2.gguf",
                           "vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-bert-bge.gguf"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        gguf *g;
        qerr e;
        if (gguf_open(&g, shared_path(files[i]), &e)) {
            fprintf(stderr, "%s\n", e.msg);
            fail();
        }
        assert_non_null(gguf_get_str(g, "general.architecture"));
        gguf_close(g);
    }
    gguf *g;
    qerr e;
    assert_int_equal(gguf_open(&g, shared_path("models/stories260K.gguf"), &e), 0);
    assert_string_equal(gguf_get_str(g, "general.architecture"), "llama");
    int64_t v;
    assert_true(gguf_get_int(g, "llama.block_count", &v));
    assert_int_equal(v, 5);
    assert_true(gguf_get_int(g, "llama.embedding_length", &v));
    assert_int_equal(v, 64);
    const gguf_value *toks = gguf_get(g, "tokenizer.ggml.tokens");
    assert_non_null(toks);
    assert_int_equal(toks->type, GGUF_ARRAY);
    assert_int_equal(toks->v.arr.elem, GGUF_STRING);
    assert_int_equal(toks->v.arr.n, 512);
    const gguf_tensor *t = gguf_find_tensor(g, "token_embd.weight");
    assert_non_null(t);
    assert_int_equal(t->ne[0], 64);
    assert_int_equal(t->ne[1], 512);
    assert_int_equal(t->type, QT_F32);
    /* The shared README calls the output tied, but the file carries its own
     * copy; the model code handles both. */
    t = gguf_find_tensor(g, "output.weight");
    assert_true(t == NULL || (t->ne[0] == 64 && t->ne[1] == 512));
    gguf_close(g);
}

/* Writer round trip: copy every key and tensor of a real file, re-read it,
 * compare everything. */
static void test_writer_roundtrip(void **state) {
    (void)state;
    gguf *g, *h;
    qerr e;
    assert_int_equal(gguf_open(&g, shared_path("models/synthetic/syn-llama-Q4_K_M.gguf"), &e), 0);
    gguf_writer *w = gguf_writer_new();
    for (int64_t i = 0; i < g->n_kv; i++) assert_int_equal(gguf_writer_set(w, g->kv[i].key, &g->kv[i].val), 0);
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        assert_int_equal(gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->nbytes), 0);
    }
    char path[] = "/tmp/quire-test-gguf-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(gguf_writer_write(w, path, &e), 0);
    gguf_writer_free(w);
    if (gguf_open(&h, path, &e)) { fprintf(stderr, "%s\n", e.msg); fail(); }
    assert_int_equal(h->n_kv, g->n_kv);
    assert_int_equal(h->n_tensors, g->n_tensors);
    for (int64_t i = 0; i < g->n_kv; i++) {
        const gguf_value *a = &g->kv[i].val, *b = gguf_get(h, g->kv[i].key);
        assert_non_null(b);
        assert_int_equal(a->type, b->type);
        if (a->type == GGUF_STRING) assert_string_equal(a->v.str.s, b->v.str.s);
        if (a->type == GGUF_ARRAY) {
            assert_int_equal(a->v.arr.n, b->v.arr.n);
            if (a->v.arr.elem == GGUF_STRING)
                for (uint64_t j = 0; j < a->v.arr.n; j++) assert_string_equal(a->v.arr.strs[j].s, b->v.arr.strs[j].s);
        }
    }
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *a = &g->tensors[i], *b = gguf_find_tensor(h, a->name);
        assert_non_null(b);
        assert_int_equal(a->type, b->type);
        assert_int_equal(a->nbytes, b->nbytes);
        assert_memory_equal(a->data, b->data, a->nbytes);
    }
    gguf_close(h);
    gguf_close(g);
    unlink(path);
}

static int fill_ramp(void *ud, void *dst, uint64_t n, qerr *e) {
    (void)e;
    float *f = dst;
    for (uint64_t i = 0; i < n / 4; i++) f[i] = (float)i * *(float *)ud;
    return 0;
}
static int fill_fail(void *ud, void *dst, uint64_t n, qerr *e) {
    (void)ud; (void)dst; (void)n;
    return qerr_set(e, "generator broke");
}

/* Tensors produced at write time; a failing producer leaves no file (and no
 * temporary) behind. */
static void test_writer_fill_and_atomicity(void **state) {
    (void)state;
    char dir[] = "/tmp/quire-test-dir-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/out.gguf", dir);
    float scale = 0.5f;
    int64_t ne[2] = {64, 3};
    gguf_writer *w = gguf_writer_new();
    assert_int_equal(gguf_writer_set_str(w, "general.architecture", "test"), 0);
    assert_int_equal(gguf_writer_add_tensor_fill(w, "ramp", QT_F32, 2, ne, 64 * 3 * 4, fill_ramp, &scale), 0);
    qerr e;
    assert_int_equal(gguf_writer_write(w, path, &e), 0);
    gguf_writer_free(w);
    gguf *g;
    assert_int_equal(gguf_open(&g, path, &e), 0);
    const gguf_tensor *t = gguf_find_tensor(g, "ramp");
    assert_non_null(t);
    assert_true(((const float *)t->data)[191] == 95.5f);
    gguf_close(g);
    unlink(path);

    w = gguf_writer_new();
    assert_int_equal(gguf_writer_add_tensor_fill(w, "bad", QT_F32, 2, ne, 64 * 3 * 4, fill_fail, NULL), 0);
    assert_int_not_equal(gguf_writer_write(w, path, &e), 0);
    assert_non_null(strstr(e.msg, "generator broke"));
    assert_non_null(strstr(e.msg, "bad"));
    gguf_writer_free(w);
    assert_int_not_equal(access(path, F_OK), 0);
    assert_int_equal(rmdir(dir), 0); /* empty: the temporary was removed */
}

static void test_nested_arrays(void **state) {
    (void)state;
    gb b;
    gb_hdr(&b, 0, 1);
    gb_str(&b, "x.nested");
    gb_u32(&b, GGUF_ARRAY);
    gb_u32(&b, GGUF_ARRAY); /* array of arrays */
    gb_u64(&b, 2);
    gb_u32(&b, GGUF_I32); gb_u64(&b, 2); gb_u32(&b, 7); gb_u32(&b, 9);
    gb_u32(&b, GGUF_STRING); gb_u64(&b, 1); gb_str(&b, "hi");
    gguf *g;
    qerr e;
    assert_int_equal(gguf_open_memory(&g, b.p, b.n, &e), 0);
    const gguf_value *v = gguf_get(g, "x.nested");
    assert_int_equal(v->v.arr.n, 2);
    assert_int_equal(gguf_arr_int(&v->v.arr.items[0], 1), 9);
    assert_string_equal(v->v.arr.items[1].v.arr.strs[0].s, "hi");
    gguf_close(g);
}

static void test_malformed(void **state) {
    (void)state;
    gb b;
    uint64_t ne2[2] = {32, 2};

    b.n = 0; expect_error(&b, "too short");
    b.n = 0; gb_u32(&b, 0x12345678); gb_u32(&b, 3); expect_error(&b, "bad magic");
    b.n = 0; gb_u32(&b, 0x46554747u); gb_u32(&b, 1); gb_u64(&b, 0); gb_u64(&b, 0); expect_error(&b, "version 1");
    b.n = 0; gb_u32(&b, 0x46554747u); gb_u32(&b, 77); gb_u64(&b, 0); gb_u64(&b, 0); expect_error(&b, "unsupported GGUF version 77");
    b.n = 0; gb_u32(&b, 0x46554747u); gb_u32(&b, 0x03000000); expect_error(&b, "big-endian");
    b.n = 0; gb_u32(&b, 0x46554747u); gb_u32(&b, 3); gb_u32(&b, 0); expect_error(&b, "truncated file: tensor count");
    gb_hdr(&b, 0, 1ull << 60); expect_error(&b, "metadata count");
    gb_hdr(&b, 1ull << 40, 0); expect_error(&b, "tensor count");
    /* a key whose length runs past the end */
    gb_hdr(&b, 0, 1); gb_u64(&b, 1ull << 50); gb_u64(&b, 0); gb_u64(&b, 0); expect_error(&b, "string length");
    gb_hdr(&b, 0, 2); gb_kv_u32(&b, "a.b", 1); gb_kv_u32(&b, "a.b", 2); expect_error(&b, "duplicate metadata key 'a.b'");
    gb_hdr(&b, 0, 1); gb_str(&b, "a.b"); gb_u32(&b, 99); gb_u32(&b, 0); expect_error(&b, "unknown value type 99");
    gb_hdr(&b, 0, 1); gb_str(&b, "a.b"); gb_u32(&b, GGUF_BOOL); b.p[b.n++] = 2; expect_error(&b, "bool value 2");
    gb_hdr(&b, 0, 1); gb_str(&b, "a.b"); gb_u32(&b, GGUF_ARRAY); gb_u32(&b, GGUF_U64); gb_u64(&b, 1ull << 61);
    expect_error(&b, "array of");
    gb_hdr(&b, 0, 1); gb_str(&b, "a.b"); gb_u32(&b, GGUF_ARRAY); gb_u32(&b, 42); gb_u64(&b, 1);
    expect_error(&b, "unknown array element type 42");
    /* arrays nested ten deep */
    gb_hdr(&b, 0, 1); gb_str(&b, "deep"); gb_u32(&b, GGUF_ARRAY);
    for (int i = 0; i < 10; i++) { gb_u32(&b, GGUF_ARRAY); gb_u64(&b, 1); }
    expect_error(&b, "nested deeper");
    gb_hdr(&b, 0, 1); gb_kv_u32(&b, "general.alignment", 24); expect_error(&b, "power of two");
    gb_hdr(&b, 0, 1); gb_str(&b, "k"); gb_u32(&b, GGUF_STRING); gb_u64(&b, 10); expect_error(&b, "string length 10 exceeds");
    /* tensors */
    gb_hdr(&b, 1, 0); gb_tensor(&b, "w", 2, ne2, 123, 0); gb_pad_data(&b, 256); expect_error(&b, "unknown type id 123");
    { uint64_t ne5[5] = {1, 1, 1, 1, 1}; gb_hdr(&b, 1, 0); gb_tensor(&b, "w", 5, ne5, QT_F32, 0); gb_pad_data(&b, 64);
      expect_error(&b, "5 dimensions"); }
    { uint64_t ne[2] = {33, 1}; gb_hdr(&b, 1, 0); gb_tensor(&b, "w", 2, ne, QT_Q8_0, 0); gb_pad_data(&b, 64);
      expect_error(&b, "not a multiple of the Q8_0 block size 32"); }
    gb_hdr(&b, 1, 0); gb_tensor(&b, "w", 2, ne2, QT_F32, 0); gb_pad_data(&b, 100); expect_error(&b, "extends past the end");
    gb_hdr(&b, 1, 0); gb_tensor(&b, "w", 2, ne2, QT_F32, 16); gb_pad_data(&b, 512); expect_error(&b, "not a multiple of the alignment");
    gb_hdr(&b, 2, 0); gb_tensor(&b, "w", 2, ne2, QT_F32, 0); gb_tensor(&b, "v", 2, ne2, QT_F32, 128);
    gb_pad_data(&b, 512); expect_error(&b, "overlaps");
    gb_hdr(&b, 2, 0); gb_tensor(&b, "w", 2, ne2, QT_F32, 0); gb_tensor(&b, "w", 2, ne2, QT_F32, 256);
    gb_pad_data(&b, 512); expect_error(&b, "duplicate tensor name 'w'");
    { uint64_t ne[4] = {1ull << 32, 1ull << 32, 1ull << 32, 1}; gb_hdr(&b, 1, 0); gb_tensor(&b, "w", 4, ne, QT_F32, 0);
      gb_pad_data(&b, 64); expect_error(&b, "element count overflows"); }
    { uint64_t ne[2] = {1ull << 62, 1}; gb_hdr(&b, 1, 0); gb_tensor(&b, "w", 2, ne, QT_F32, 0);
      gb_pad_data(&b, 64); expect_error(&b, "byte size overflows"); }
    gb_hdr(&b, 1, 0); gb_str(&b, ""); gb_pad_data(&b, 64); expect_error(&b, "empty name");
    { char longname[80]; memset(longname, 'a', 70); longname[70] = 0;
      gb_hdr(&b, 1, 0); gb_tensor(&b, longname, 2, ne2, QT_F32, 0); gb_pad_data(&b, 256); expect_error(&b, "exceeds 63"); }

    /* A valid hand-made file still loads (the builder itself is right). */
    gb_hdr(&b, 1, 1); gb_kv_u32(&b, "general.alignment", 32); gb_tensor(&b, "w", 2, ne2, QT_F32, 0); gb_pad_data(&b, 256);
    gguf *g;
    qerr e;
    assert_int_equal(gguf_open_memory(&g, b.p, b.n, &e), 0);
    assert_int_equal(g->tensors[0].nbytes, 256);
    gguf_close(g);
}

/* Every prefix of a real file is rejected cleanly (truncation anywhere). */
static void test_truncated_real_file(void **state) {
    (void)state;
    size_t n;
    uint8_t *p = test_read_file(shared_path("models/stories260K.gguf"), &n);
    for (size_t cut = 0; cut < n; cut += (cut < 40000 ? 97 : 9973)) {
        gguf *g;
        qerr e;
        uint8_t *copy = malloc(cut ? cut : 1); /* exact size so ASan sees over-reads */
        memcpy(copy, p, cut);
        assert_int_not_equal(gguf_open_memory(&g, copy, cut, &e), 0);
        free(copy);
    }
    free(p);
}

static void test_open_errors(void **state) {
    (void)state;
    gguf *g;
    qerr e;
    assert_int_not_equal(gguf_open(&g, "/nonexistent/model.gguf", &e), 0);
    assert_non_null(strstr(e.msg, "No such file"));
    assert_int_not_equal(gguf_open(&g, "/tmp", &e), 0);
    assert_non_null(strstr(e.msg, "not a regular file"));
}

static void test_fp16(void **state) {
    (void)state;
    /* Every half round-trips through f32 exactly (NaNs stay NaN). */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = q_fp16_to_f32((uint16_t)h);
        if (f != f) { assert_true((q_f32_to_fp16(f) & 0x7c00) == 0x7c00); continue; }
        assert_int_equal(q_f32_to_fp16(f), h);
    }
    assert_true(q_fp16_to_f32(0x3c00) == 1.0f);
    assert_true(q_fp16_to_f32(0x0001) == 5.9604644775390625e-08f);
    assert_int_equal(q_f32_to_fp16(65520.0f), 0x7c00); /* rounds to inf */
    assert_int_equal(q_f32_to_fp16(65519.0f), 0x7bff);
    assert_int_equal(q_f32_to_fp16(1.0f + 1.0f / 2048), 0x3c00); /* tie to even */
    assert_int_equal(q_f32_to_fp16(1.0f + 3.0f / 2048), 0x3c02);
    assert_int_equal(q_f32_to_fp16(2.98023223876953125e-08f), 0x0000); /* half of min subnormal: tie to even 0 */
    assert_int_equal(q_f32_to_fp16(2.98023259e-08f), 0x0001);
    assert_int_equal(q_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(q_f32_to_bf16(q_f32_from_bits(0x3f808000)), 0x3f80); /* tie to even */
    assert_int_equal(q_f32_to_bf16(q_f32_from_bits(0x3f818000)), 0x3f82);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_models_load), cmocka_unit_test(test_writer_roundtrip),
        cmocka_unit_test(test_writer_fill_and_atomicity),
        cmocka_unit_test(test_nested_arrays),      cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_truncated_real_file), cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_fp16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
