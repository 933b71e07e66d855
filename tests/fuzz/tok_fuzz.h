/* tok_fuzz.h — shared by the tokenizer fuzz targets: load one vocabulary
 * from ../shared once, then encode arbitrary bytes (the first byte picks the
 * flags) and decode the result, also through the streaming detokenizer. */
#ifndef QUIRE_TOK_FUZZ_H
#define QUIRE_TOK_FUZZ_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "tokenizer/tokenizer.h"

static tokenizer *tok_fuzz_load(const char *rel) {
    char path[2048];
    const char *root = getenv("QUIRE_SHARED");
    if (root) {
        snprintf(path, sizeof path, "%s/%s", root, rel);
    } else {
        /* this file lives in ROOT/tests/fuzz; the data in ROOT/../shared */
        const char *f = __FILE__;
        const char *cut = strstr(f, "/tests/fuzz/");
        if (cut) snprintf(path, sizeof path, "%.*s/../shared/%s", (int)(cut - f), f, rel);
        else snprintf(path, sizeof path, "../shared/%s", rel);
    }
    gguf *g;
    qerr e;
    if (gguf_open(&g, path, &e)) { fprintf(stderr, "fuzz: %s\n", e.msg); abort(); }
    tokenizer *t;
    if (tokenizer_load(&t, g, &e)) { fprintf(stderr, "fuzz: %s\n", e.msg); abort(); }
    gguf_close(g);
    return t;
}

static void tok_fuzz_one(const tokenizer *t, const uint8_t *data, size_t size) {
    if (size == 0) return;
    uint8_t flags = data[0];
    data++;
    size--;
    int32_t *ids;
    size_t n;
    qerr e;
    if (tokenizer_encode(t, (const char *)data, size, flags & 1, flags & 2, &ids, &n, &e)) abort();
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= tokenizer_n_vocab(t)) abort();
    char *text;
    size_t len;
    if (tokenizer_decode(t, ids, n, &text, &len, &e)) abort();
    /* the stream must reproduce the whole decode */
    detok_stream *s = detok_stream_new(t);
    if (!s) abort();
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        const char *o;
        size_t ol;
        if (detok_stream_feed(s, ids[i], &o, &ol, &e)) abort();
        if (at + ol > len || memcmp(text + at, o, ol) != 0) abort();
        at += ol;
    }
    const char *o;
    size_t ol;
    detok_stream_flush(s, &o, &ol);
    if (at + ol != len || memcmp(text + at, o, ol) != 0) abort();
    detok_stream_free(s);
    free(text);
    free(ids);
}

#define TOK_FUZZ_TARGET(rel)                                              \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);         \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {        \
        static tokenizer *t;                                              \
        if (!t) t = tok_fuzz_load(rel);                                   \
        tok_fuzz_one(t, data, size);                                      \
        return 0;                                                         \
    }

#endif
