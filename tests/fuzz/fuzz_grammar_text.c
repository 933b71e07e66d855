/* fuzz_grammar_text.c — the GBNF-like parser and the automaton compiler on
 * arbitrary text; a grammar that compiles is run for a few steps: bytes from
 * the input, shortest completion (must complete the text), forced bytes, and
 * token masks with and without the cache (must agree) over a small vocabulary. */
#include <stdlib.h>
#include <string.h>

#include "sgr/sgr.h"

static sgr_vocab *small_vocab(void) {
    static sgr_vocab *v;
    if (!v) {
        const char *p[] = {"", "a", "b", "\"", "{", "}", "ab", "\"a", "a\"", "0", "12", " ", ",", ":", "\xc3\xa9", "\xc3", "x", "[", "]"};
        size_t len[sizeof p / sizeof *p];
        for (size_t i = 0; i < sizeof p / sizeof *p; i++) len[i] = strlen(p[i]);
        int32_t eog = 0;
        qerr e;
        if (sgr_vocab_from_pieces(p, len, sizeof p / sizeof *p, &eog, 1, &v, &e)) abort();
    }
    return v;
}

static void run(const sgr_grammar *g, const uint8_t *data, size_t size) {
    sgr_vocab *v = small_vocab();
    sgr_matcher *m;
    qerr e;
    if (sgr_matcher_new(g, v, &m, &e)) return;
    uint32_t a[8] = {0}, b[8] = {0};
    size_t steps = size < 16 ? size : 16;
    for (size_t i = 0; i < steps; i++) {
        if (sgr_matcher_fill_mask(m, a) || sgr_matcher_fill_mask_uncached(m, b)) abort();
        if (memcmp(a, b, sizeof a)) abort();
        char *s;
        size_t n;
        if (sgr_matcher_shortest(m, &s, &n, &e) == 0) {
            if (n != sgr_matcher_min_bytes(m)) abort();
            if (n < 100000) {
                if (sgr_matcher_accept_bytes(m, s, n) || !sgr_matcher_can_end(m)) abort();
                sgr_matcher_rollback(m, 1);
            }
            free(s);
        }
        if (sgr_matcher_forced(m, &s, &n, &e) == 0) {
            if (n && sgr_matcher_accept_bytes(m, s, n)) abort();
            else if (n) sgr_matcher_rollback(m, 1);
            free(s);
        }
        (void)sgr_matcher_accept_bytes(m, (const char *)data + size - 1 - i, 1);
    }
    sgr_matcher_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    sgr_grammar *g;
    qerr e;
    if (sgr_grammar_parse((const char *)data, size, &g, &e)) return 0;
    run(g, data, size);
    sgr_grammar_free(g);
    return 0;
}
