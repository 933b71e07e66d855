/* test_tokenizer.c — the tokenizers against the reference's conformance
 * vectors (every case exact), round trips, the streaming detokenizer,
 * hostile input, loader validation and the tokenize CLI. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* A long mixed-script text: Latin, Cyrillic, CJK, Arabic, emoji, digits,
 * whitespace runs, punctuation and code. */
static char *mixed_text_ex(size_t *len, bool wordpiece_safe) {
    static const char *const parts[] = {
        "The quick brown fox jumps over the lazy dog. ", "Привет, как дела? ", "你好，世界！", "日本語のテキスト。",
        "مرحبا بالعالم ", "🦙🚀😶‍🌫️ ", "1234567890 ", "3.14159, 2.71828; ", "   ", "\n\n", "\t \t", "don't I'll we've ",
        "Straße naïve café résumé ", "{\"key\": [1, 2, 3], \"x\": null}\n", "int main(void) { return 0; }\n",
        "Ελληνικά ", "עברית ", "हिन्दी ", "한국어 ", "  leading and trailing  ", "A", "!!!???", "\r\n",
    };
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    assert_non_null(b);
    uint32_t st = 7;
    for (int k = 0; k < 600; k++) {
        st = st * 1103515245u + 12345u;
        const char *p = parts[(st >> 16) % (sizeof parts / sizeof *parts)];
        /* the bge WordPiece vocabulary has no pieces for emoji and some
         * scripts: those words become [UNK], which has no text */
        if (wordpiece_safe && (strstr(p, "\xf0") || strstr(p, "你好") || strstr(p, "हिन्दी") || strstr(p, "עברית") || strstr(p, "한국어")))
            continue;
        size_t l = strlen(p);
        if (n + l + 1 > cap) { cap *= 2; b = realloc(b, cap); assert_non_null(b); }
        memcpy(b + n, p, l);
        n += l;
    }
    b[n] = 0;
    *len = n;
    return b;
}

static char *mixed_text(size_t *len) { return mixed_text_ex(len, false); }

static void check_round_trip(tokenizer *t, const char *text, size_t len, bool add_special) {
    int32_t *ids;
    size_t n;
    qerr e;
    assert_int_equal(tokenizer_encode(t, text, len, add_special, false, &ids, &n, &e), 0);
    char *out;
    size_t ol;
    assert_int_equal(tokenizer_decode(t, ids, n, &out, &ol, &e), 0);
    char *want = NULL;
    size_t wl = len;
    if (tokenizer_type(t) == TOKENIZER_WPM) assert_int_equal(tokenizer_normalize(t, text, len, &want, &wl, &e), 0);
    const char *w = want ? want : text;
    if (ol != wl || memcmp(out, w, wl) != 0) {
        size_t i = 0;
        while (i < ol && i < wl && out[i] == w[i]) i++;
        fprintf(stderr, "round trip differs at byte %zu: want '%.40s' got '%.40s'\n", i, w + i, out + i);
        fail();
    }
    free(want);
    free(out);
    free(ids);
}

static void test_round_trip(void **state) {
    (void)state;
    size_t len, wlen;
    char *text = mixed_text(&len);
    char *wtext = mixed_text_ex(&wlen, true);
    const char *vocabs[] = {"vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-gpt-2.gguf",
                            "vocab/ggml-vocab-bert-bge.gguf", "models/stories260K.gguf",
                            "models/synthetic/syn-qwen2-Q8_0.gguf", "models/synthetic/syn-bert-F16.gguf"};
    for (size_t v = 0; v < sizeof vocabs / sizeof *vocabs; v++) {
        tokenizer *t = load_tok(vocabs[v]);
        bool wpm = tokenizer_type(t) == TOKENIZER_WPM;
        check_round_trip(t, wpm ? wtext : text, wpm ? wlen : len, false);
        check_round_trip(t, wpm ? wtext : text, wpm ? wlen : len, true);
        check_round_trip(t, "", 0, true);
        check_round_trip(t, " x", 2, true);
        tokenizer_free(t);
    }
    free(text);
    free(wtext);
}

static void test_wordpiece_normalize(void **state) {
    (void)state;
    tokenizer *t = load_tok("vocab/ggml-vocab-bert-bge.gguf");
    const char *in = "Héllo,  WORLD!你好\x01 Ünïcödé\ttest";
    char *out;
    size_t ol;
    qerr e;
    assert_int_equal(tokenizer_normalize(t, in, strlen(in), &out, &ol, &e), 0);
    assert_string_equal(out, "hello , world ! 你 好 unicode test");
    free(out);
    /* [CLS] ... [SEP] with add_special; a word over 100 characters is [UNK] */
    int32_t *ids;
    size_t n;
    assert_int_equal(tokenizer_encode(t, "hello", 5, true, false, &ids, &n, &e), 0);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 101);
    assert_int_equal(ids[2], 102);
    free(ids);
    char longw[202];
    memset(longw, 'a', 201);
    longw[201] = 0;
    assert_int_equal(tokenizer_encode(t, longw, 201, false, false, &ids, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], tokenizer_unk(t));
    free(ids);
    tokenizer_free(t);
}

/* The streaming detokenizer equals the whole decode, for every vocabulary,
 * whatever the ids are (including pieces that split UTF-8 sequences). */
static void check_stream(tokenizer *t, const int32_t *ids, size_t n) {
    char *whole;
    size_t wl;
    qerr e;
    assert_int_equal(tokenizer_decode(t, ids, n, &whole, &wl, &e), 0);
    detok_stream *s = detok_stream_new(t);
    assert_non_null(s);
    char *acc = malloc(wl + 16);
    size_t al = 0;
    for (size_t i = 0; i < n; i++) {
        const char *o;
        size_t ol;
        assert_int_equal(detok_stream_feed(s, ids[i], &o, &ol, &e), 0);
        assert_true(al + ol <= wl);
        memcpy(acc + al, o, ol);
        al += ol;
        /* everything released so far is a prefix of the whole text */
        assert_memory_equal(acc, whole, al);
    }
    const char *o;
    size_t ol;
    detok_stream_flush(s, &o, &ol);
    assert_true(al + ol <= wl);
    memcpy(acc + al, o, ol);
    al += ol;
    assert_int_equal(al, wl);
    assert_memory_equal(acc, whole, wl);
    free(acc);
    free(whole);
    detok_stream_free(s);
}

static bool utf8_complete_prefix(const char *s, size_t n) {
    /* true if s[0..n) ends on a UTF-8 character boundary of valid text */
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t l = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        if (i + l > n) return false;
        i += l;
    }
    return true;
}

static void test_stream_detok(void **state) {
    (void)state;
    size_t len;
    char *text = mixed_text(&len);
    const char *vocabs[] = {"vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-gpt-2.gguf",
                            "vocab/ggml-vocab-bert-bge.gguf"};
    for (size_t v = 0; v < 3; v++) {
        tokenizer *t = load_tok(vocabs[v]);
        int32_t *ids;
        size_t n;
        qerr e;
        assert_int_equal(tokenizer_encode(t, text, len, true, false, &ids, &n, &e), 0);
        check_stream(t, ids, n);
        /* for valid text, every chunk the stream releases is complete UTF-8 */
        detok_stream *s = detok_stream_new(t);
        for (size_t i = 0; i < n; i++) {
            const char *o;
            size_t ol;
            assert_int_equal(detok_stream_feed(s, ids[i], &o, &ol, &e), 0);
            assert_true(utf8_complete_prefix(o, ol));
        }
        detok_stream_free(s);
        /* every split of the id sequence: stream restarted at the split */
        size_t m = n < 300 ? n : 300;
        for (size_t cut = 0; cut <= m; cut++) {
            check_stream(t, ids, cut);
        }
        free(ids);
        /* random ids, including byte tokens that never form valid UTF-8 */
        int32_t rnd[200];
        uint32_t st = 99;
        for (int k = 0; k < 20; k++) {
            for (int i = 0; i < 200; i++) {
                st = st * 1103515245u + 12345u;
                rnd[i] = (int32_t)((st >> 8) % (uint32_t)tokenizer_n_vocab(t));
            }
            check_stream(t, rnd, 200);
        }
        tokenizer_free(t);
    }
    free(text);
}

static void test_hostile_bytes(void **state) {
    (void)state;
    const char *vocabs[] = {"vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-gpt-2.gguf",
                            "vocab/ggml-vocab-bert-bge.gguf"};
    uint8_t buf[4096];
    uint32_t st = 1;
    for (size_t v = 0; v < 3; v++) {
        tokenizer *t = load_tok(vocabs[v]);
        for (int k = 0; k < 200; k++) {
            size_t n = (size_t)(k * 37) % sizeof buf;
            for (size_t i = 0; i < n; i++) {
                st = st * 1103515245u + 12345u;
                uint8_t b = (uint8_t)(st >> 16);
                if (k % 3 == 0) b = (uint8_t)(0x80 | (b & 0x7F)); /* continuation/lead soup */
                if (k % 5 == 0 && b < 0x40) b = 0;                /* NULs */
                buf[i] = b;
            }
            int32_t *ids;
            size_t nid;
            qerr e;
            assert_int_equal(tokenizer_encode(t, (const char *)buf, n, k & 1, k & 2, &ids, &nid, &e), 0);
            for (size_t i = 0; i < nid; i++) assert_true(ids[i] >= 0 && ids[i] < tokenizer_n_vocab(t));
            char *out;
            size_t ol;
            assert_int_equal(tokenizer_decode(t, ids, nid, &out, &ol, &e), 0);
            free(out);
            free(ids);
        }
        /* SPM with byte fallback reproduces every byte between ASCII
         * letters (an invalid lead byte before a space would swallow part
         * of the escaped space, exactly as in the reference) */
        for (int c = 0; v == 0 && c < 256; c++) {
            if (c == ' ') continue;
            char in[3] = {'x', (char)c, 'y'};
            int32_t *ids;
            size_t nid;
            qerr e;
            assert_int_equal(tokenizer_encode(t, in, 3, true, false, &ids, &nid, &e), 0);
            char *out;
            size_t ol;
            assert_int_equal(tokenizer_decode(t, ids, nid, &out, &ol, &e), 0);
            assert_int_equal(ol, 3);
            assert_memory_equal(out, in, 3);
            free(out);
            free(ids);
        }
        tokenizer_free(t);
    }
}

/* Long inputs stay linear-ish: a 2 MB single "word" of each kind. */
static void test_long_inputs(void **state) {
    (void)state;
    const char *vocabs[] = {"vocab/ggml-vocab-llama-spm.gguf", "vocab/ggml-vocab-gpt-2.gguf",
                            "vocab/ggml-vocab-bert-bge.gguf"};
    size_t n = 2u << 20;
    char *buf = malloc(n);
    const char fill[] = {'a', ' ', '7', '!'};
    for (size_t v = 0; v < 3; v++) {
        tokenizer *t = load_tok(vocabs[v]);
        for (size_t f = 0; f < sizeof fill; f++) {
            memset(buf, fill[f], n);
            int32_t *ids;
            size_t nid;
            qerr e;
            assert_int_equal(tokenizer_encode(t, buf, n, false, false, &ids, &nid, &e), 0);
            assert_true(nid > 0 || (v == 2 && fill[f] == ' ')); /* WordPiece: no words */
            free(ids);
        }
        tokenizer_free(t);
    }
    free(buf);
}

/* The SPM chunking shortcut gives exactly the reference's whole-fragment
 * result. */
extern bool tok_spm_whole;
static void test_spm_chunking_exact(void **state) {
    (void)state;
    size_t len;
    char *text = mixed_text(&len);
    const char *vocabs[] = {"vocab/ggml-vocab-llama-spm.gguf", "models/stories260K.gguf"};
    for (size_t v = 0; v < 2; v++) {
        tokenizer *t = load_tok(vocabs[v]);
        for (int k = 0; k < 3; k++) {
            const char *in = text;
            size_t n = len;
            char rnd[3000];
            if (k > 0) { /* random soup of spaces, ▁-heavy and ASCII */
                uint32_t st = (uint32_t)k;
                for (size_t i = 0; i < sizeof rnd; i++) {
                    st = st * 1103515245u + 12345u;
                    rnd[i] = " \n ab.\xe2\x96\x81x "[(st >> 16) % 12];
                }
                in = rnd;
                n = sizeof rnd;
            }
            int32_t *a, *b;
            size_t na, nb;
            qerr e;
            tok_spm_whole = true;
            assert_int_equal(tokenizer_encode(t, in, n, true, false, &a, &na, &e), 0);
            tok_spm_whole = false;
            assert_int_equal(tokenizer_encode(t, in, n, true, false, &b, &nb, &e), 0);
            assert_int_equal(na, nb);
            assert_memory_equal(a, b, na * sizeof *a);
            free(a);
            free(b);
        }
        tokenizer_free(t);
    }
    free(text);
}

static void test_special_tokens(void **state) {
    (void)state;
    tokenizer *t = load_tok("vocab/ggml-vocab-gpt-2.gguf");
    const char *txt = "Hello<|endoftext|>world";
    int32_t *ids;
    size_t n;
    qerr e;
    assert_int_equal(tokenizer_encode(t, txt, strlen(txt), false, true, &ids, &n, &e), 0);
    assert_int_equal(n, 3);
    assert_int_equal(ids[1], 50256);
    assert_true(tokenizer_is_eog(t, 50256));
    free(ids);
    assert_int_equal(tokenizer_encode(t, txt, strlen(txt), false, false, &ids, &n, &e), 0);
    assert_true(n > 3);
    for (size_t i = 0; i < n; i++) assert_int_not_equal(ids[i], 50256);
    free(ids);
    assert_int_equal(tokenizer_bos(t), 50256);
    assert_false(tokenizer_add_bos(t));
    tokenizer_free(t);

    t = load_tok("models/stories260K.gguf");
    assert_int_equal(tokenizer_bos(t), 1);
    assert_int_equal(tokenizer_eos(t), 2);
    assert_true(tokenizer_add_bos(t));
    assert_false(tokenizer_add_eos(t));
    assert_true(tokenizer_is_eog(t, 2));
    /* "</s>" with parse_special is EOS and no merge crosses it; the text
     * after a special token gets the space prefix again */
    const char *s2 = "Hi</s>there";
    assert_int_equal(tokenizer_encode(t, s2, strlen(s2), true, true, &ids, &n, &e), 0);
    int32_t *a, *b;
    size_t na, nb;
    assert_int_equal(tokenizer_encode(t, "Hi", 2, false, false, &a, &na, &e), 0);
    assert_int_equal(tokenizer_encode(t, "there", 5, false, false, &b, &nb, &e), 0);
    assert_int_equal(n, 1 + na + 1 + nb);
    assert_int_equal(ids[0], 1);
    assert_memory_equal(ids + 1, a, na * sizeof *a);
    assert_int_equal(ids[1 + na], 2);
    assert_memory_equal(ids + 2 + na, b, nb * sizeof *b);
    free(a);
    free(b);
    free(ids);
    /* golden prompt tokens of the reference (BOS first) */
    const char *p = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends.";
    assert_int_equal(tokenizer_encode(t, p, strlen(p), true, true, &ids, &n, &e), 0);
    static const int32_t want_prefix[] = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376};
    assert_true(n >= 10);
    assert_memory_equal(ids, want_prefix, sizeof want_prefix);
    free(ids);
    tokenizer_free(t);
}

/* A copy of the gpt-2 vocabulary with tokenizer.ggml.pre replaced. */
static tokenizer *load_with_pre(const char *pre, qerr *e, int *rc) {
    gguf *g;
    assert_int_equal(gguf_open(&g, shared_path("vocab/ggml-vocab-gpt-2.gguf"), e), 0);
    gguf_writer *w = gguf_writer_new();
    for (int64_t i = 0; i < g->n_kv; i++) assert_int_equal(gguf_writer_set(w, g->kv[i].key, &g->kv[i].val), 0);
    gguf_close(g);
    assert_int_equal(gguf_writer_set_str(w, "tokenizer.ggml.pre", pre), 0);
    char path[64];
    snprintf(path, sizeof path, "/tmp/quire-tok-pre-%d.gguf", (int)getpid());
    assert_int_equal(gguf_writer_write(w, path, e), 0);
    gguf_writer_free(w);
    assert_int_equal(gguf_open(&g, path, e), 0);
    tokenizer *t = NULL;
    *rc = tokenizer_load(&t, g, e);
    gguf_close(g);
    unlink(path);
    return t;
}

static void enc(tokenizer *t, const char *s, int32_t **ids, size_t *n) {
    qerr e;
    assert_int_equal(tokenizer_encode(t, s, strlen(s), false, false, ids, n, &e), 0);
}

/* ids of the concatenation of separately encoded pieces */
static bool splits_as(tokenizer *t, const char *whole, const char *const *pieces) {
    int32_t *a;
    size_t na;
    enc(t, whole, &a, &na);
    int32_t cat[512];
    size_t nc = 0;
    for (int k = 0; pieces[k]; k++) {
        int32_t *b;
        size_t nb;
        enc(t, pieces[k], &b, &nb);
        memcpy(cat + nc, b, nb * sizeof *b);
        nc += nb;
        free(b);
    }
    bool ok = nc == na && memcmp(a, cat, na * sizeof *a) == 0;
    free(a);
    return ok;
}

static void test_pretokenizers(void **state) {
    (void)state;
    const char *pres[] = {"default", "gpt-2", "llama-bpe", "llama3", "qwen2", "deepseek-llm", "deepseek-coder",
                          "falcon", "starcoder", "mpt", "refact", "gpt-neox", "smollm", "command-r", "olmo", "dbrx"};
    size_t len;
    char *text = mixed_text(&len);
    for (size_t k = 0; k < sizeof pres / sizeof *pres; k++) {
        qerr e;
        int rc;
        tokenizer *t = load_with_pre(pres[k], &e, &rc);
        if (rc) { fprintf(stderr, "%s: %s\n", pres[k], e.msg); fail(); }
        check_round_trip(t, text, len, false);
        const char *digits[] = {"123", "456", "7", NULL};
        const char *single[] = {"1", "2", "3", "4", "5", "6", "7", NULL};
        const char *whole[] = {"1234567", NULL};
        if (!strcmp(pres[k], "llama-bpe") || !strcmp(pres[k], "llama3") || !strcmp(pres[k], "dbrx"))
            assert_true(splits_as(t, "1234567", digits));
        if (!strcmp(pres[k], "qwen2") || !strcmp(pres[k], "starcoder") || !strcmp(pres[k], "deepseek-coder"))
            assert_true(splits_as(t, "1234567", single));
        if (!strcmp(pres[k], "gpt-2") || !strcmp(pres[k], "deepseek-llm"))
            assert_true(splits_as(t, "1234567", whole));
        /* (?i) contractions in llama3/qwen2, lowercase only in gpt-2 */
        const char *cont[] = {"DON", "'T", NULL};
        if (!strcmp(pres[k], "llama-bpe") || !strcmp(pres[k], "qwen2")) assert_true(splits_as(t, "DON'T", cont));
        /* \s+(?!\S): the last space of a run goes with the next word */
        const char *ws[] = {"a", "  ", " b", NULL};
        if (!strcmp(pres[k], "gpt-2") || !strcmp(pres[k], "llama-bpe")) assert_true(splits_as(t, "a   b", ws));
        tokenizer_free(t);
    }
    free(text);
    qerr e;
    int rc;
    tokenizer *t = load_with_pre("no-such-pre", &e, &rc);
    assert_int_not_equal(rc, 0);
    assert_null(t);
    assert_non_null(strstr(e.msg, "unknown pre-tokenizer 'no-such-pre'"));
}

/* Hand-made vocabularies that must be rejected with a clear message. */
static int load_kv(const char *model, bool with_tokens, int n_scores, int64_t bos, bool with_merges, qerr *e) {
    gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "llama");
    if (model) gguf_writer_set_str(w, "tokenizer.ggml.model", model);
    gguf_str toks[4] = {{"<unk>", 5}, {"a", 1}, {"b", 1}, {"ab", 2}};
    if (with_tokens) {
        gguf_value v = {.type = GGUF_ARRAY};
        v.v.arr.elem = GGUF_STRING;
        v.v.arr.n = 4;
        v.v.arr.strs = toks;
        gguf_writer_set(w, "tokenizer.ggml.tokens", &v);
    }
    if (n_scores >= 0) {
        float sc[8] = {0};
        gguf_value v = {.type = GGUF_ARRAY};
        v.v.arr.elem = GGUF_F32;
        v.v.arr.n = (uint64_t)n_scores;
        v.v.arr.raw = (const uint8_t *)sc;
        gguf_writer_set(w, "tokenizer.ggml.scores", &v);
    }
    if (bos >= 0) gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
    if (with_merges) {
        gguf_str m[1] = {{"a b", 3}};
        gguf_value v = {.type = GGUF_ARRAY};
        v.v.arr.elem = GGUF_STRING;
        v.v.arr.n = 1;
        v.v.arr.strs = m;
        gguf_writer_set(w, "tokenizer.ggml.merges", &v);
    }
    char path[64];
    snprintf(path, sizeof path, "/tmp/quire-tok-bad-%d.gguf", (int)getpid());
    assert_int_equal(gguf_writer_write(w, path, e), 0);
    gguf_writer_free(w);
    gguf *g;
    assert_int_equal(gguf_open(&g, path, e), 0);
    tokenizer *t = NULL;
    int rc = tokenizer_load(&t, g, e);
    gguf_close(g);
    unlink(path);
    if (rc == 0) {
        /* a valid tiny vocabulary must also work */
        int32_t *ids;
        size_t n;
        assert_int_equal(tokenizer_encode(t, "ab", 2, true, true, &ids, &n, e), 0);
        free(ids);
        tokenizer_free(t);
    } else {
        assert_null(t);
        assert_null(strchr(e->msg, '\n'));
    }
    return rc;
}

static void test_load_validation(void **state) {
    (void)state;
    qerr e;
    assert_int_equal(load_kv("llama", true, 4, 1, false, &e), 0);
    assert_int_equal(load_kv("gpt2", true, -1, -1, true, &e), 0);
    assert_int_not_equal(load_kv(NULL, true, 4, 1, false, &e), 0);
    assert_non_null(strstr(e.msg, "tokenizer.ggml.model missing"));
    assert_int_not_equal(load_kv("weird", true, 4, 1, false, &e), 0);
    assert_non_null(strstr(e.msg, "unsupported tokenizer model 'weird'"));
    assert_int_not_equal(load_kv("llama", false, 4, 1, false, &e), 0);
    assert_non_null(strstr(e.msg, "tokenizer.ggml.tokens missing"));
    assert_int_not_equal(load_kv("llama", true, 3, 1, false, &e), 0);
    assert_non_null(strstr(e.msg, "scores has 3 entries"));
    assert_int_not_equal(load_kv("llama", true, 4, 7, false, &e), 0);
    assert_non_null(strstr(e.msg, "bos_token_id = 7 out of range"));
    assert_int_not_equal(load_kv("gpt2", true, -1, -1, false, &e), 0);
    assert_non_null(strstr(e.msg, "merges missing"));
}

static void test_cli(void **state) {
    (void)state;
    char args[1024], *out;
    snprintf(args, sizeof args, "tokenize --no-special -m %s -p 'Hello world! 3333'",
             shared_path("vocab/ggml-vocab-gpt-2.gguf"));
    assert_int_equal(run_quire(args, &out), 0);
    assert_string_equal(out, "15496 995 0 513 20370\n");
    free(out);
    snprintf(args, sizeof args, "tokenize -m %s -p 'Once upon a time'", shared_path("models/stories260K.gguf"));
    assert_int_equal(run_quire(args, &out), 0);
    assert_string_equal(out, "1 403 407 261 378\n");
    free(out);
    snprintf(args, sizeof args, "detokenize -m %s 1 403 407 261 378", shared_path("models/stories260K.gguf"));
    assert_int_equal(run_quire(args, &out), 0);
    assert_string_equal(out, "Once upon a time");
    free(out);
    snprintf(args, sizeof args, "detokenize -m %s 1 99999 2>/dev/null", shared_path("models/stories260K.gguf"));
    assert_int_equal(run_quire(args, &out), 2);
    free(out);
    snprintf(args, sizeof args, "tokenize -m %s 2>/dev/null", shared_path("models/stories260K.gguf"));
    assert_int_equal(run_quire(args, &out), 2);
    free(out);
}

/* The prompts of the golden files, re-tokenized with add_special, equal the
 * reference's ids. A tiny scanner for the simple JSON there: each "key":
 * "string" is followed by its "tokens": [ids]. */
static const char *json_str(const char *p, char *out, size_t cap) {
    size_t n = 0;
    while (*p && *p != '"' && n + 4 < cap) {
        if (*p == '\\') {
            p++;
            if (*p == 'n') out[n++] = '\n';
            else if (*p == 't') out[n++] = '\t';
            else if (*p == 'u') {
                unsigned cp = (unsigned)strtoul((char[5]){p[1], p[2], p[3], p[4], 0}, NULL, 16);
                p += 4;
                if (cp < 0x80) out[n++] = (char)cp;
                else if (cp < 0x800) { out[n++] = (char)(0xC0 | (cp >> 6)); out[n++] = (char)(0x80 | (cp & 0x3F)); }
                else { out[n++] = (char)(0xE0 | (cp >> 12)); out[n++] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[n++] = (char)(0x80 | (cp & 0x3F)); }
            } else out[n++] = *p;
            p++;
        } else {
            out[n++] = *p++;
        }
    }
    out[n] = 0;
    return p;
}

static int check_golden(const char *model, const char *json, const char *key) {
    tokenizer *t = load_tok(model);
    char *js = test_read_file(shared_path(json), NULL);
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": \"", key);
    int n_checked = 0;
    for (const char *p = strstr(js, pat); p; p = strstr(p, pat)) {
        char text[4096];
        p = json_str(p + strlen(pat), text, sizeof text);
        const char *tk = strstr(p, "\"tokens\": [");
        assert_non_null(tk);
        tk += strlen("\"tokens\": [");
        int32_t want[1024];
        size_t nw = 0;
        while (*tk && *tk != ']') {
            char *end;
            want[nw++] = (int32_t)strtol(tk, &end, 10);
            tk = end;
            while (*tk == ',' || *tk == ' ') tk++;
        }
        int32_t *ids;
        size_t n;
        qerr e;
        assert_int_equal(tokenizer_encode(t, text, strlen(text), true, true, &ids, &n, &e), 0);
        if (n != nw || memcmp(ids, want, n * sizeof *ids) != 0) {
            fprintf(stderr, "%s: '%s': %zu ids, want %zu\n", json, text, n, nw);
            for (size_t i = 0; i < n || i < nw; i++)
                fprintf(stderr, "  %zu: got %d want %d\n", i, i < n ? ids[i] : -1, i < nw ? want[i] : -1);
            fail();
        }
        free(ids);
        n_checked++;
        p = tk;
    }
    free(js);
    tokenizer_free(t);
    return n_checked;
}

static void test_golden_prompts(void **state) {
    (void)state;
    assert_int_equal(check_golden("models/stories260K.gguf", "golden/golden-stories260K.json", "prompt"), 1);
    assert_int_equal(check_golden("models/synthetic/syn-llama-F32.gguf", "golden/golden-syn-llama-F32.json", "prompt"), 1);
    assert_int_equal(check_golden("models/synthetic/syn-qwen2-Q8_0.gguf", "golden/golden-syn-qwen2-Q8_0.json", "prompt"), 1);
    assert_int_equal(check_golden("models/synthetic/syn-bert-F16.gguf", "golden/golden-syn-bert-F16.json", "text"), 5);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_spm),
        cmocka_unit_test(test_vectors_bpe),
        cmocka_unit_test(test_vectors_wordpiece),
        cmocka_unit_test(test_golden_prompts),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_wordpiece_normalize),
        cmocka_unit_test(test_stream_detok),
        cmocka_unit_test(test_hostile_bytes),
        cmocka_unit_test(test_long_inputs),
        cmocka_unit_test(test_spm_chunking_exact),
        cmocka_unit_test(test_special_tokens),
        cmocka_unit_test(test_pretokenizers),
        cmocka_unit_test(test_load_validation),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
