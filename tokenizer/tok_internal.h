/* tok_internal.h — private to the tokenizer module: Unicode helpers and the
 * small pre-tokenizer regex engine. */
#ifndef QUIRE_TOK_INTERNAL_H
#define QUIRE_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"

/* Codepoint flags (one byte per codepoint, from utf8proc categories). */
enum {
    CPF_L = 1,   /* letter */
    CPF_N = 2,   /* number */
    CPF_P = 4,   /* punctuation */
    CPF_S = 8,   /* symbol */
    CPF_M = 16,  /* mark */
    CPF_WS = 32, /* White_Space (the reference's list) */
    CPF_C = 64,  /* control: Cc Cf Co Cs */
    CPF_Z = 128  /* separator */
};
uint8_t tok_cp_flags(uint32_t cp);
void tok_unicode_init(void);

/* Decodes UTF-8 the way the reference does: an invalid or truncated
 * sequence becomes U+FFFD and consumes one byte. Returns the codepoint and
 * advances *i. */
uint32_t tok_utf8_next(const uint8_t *s, size_t n, size_t *i);
/* Encodes cp (< 0x110000) into buf; returns its length 1..4. */
int tok_utf8_put(uint32_t cp, uint8_t *buf);
/* Length of the UTF-8 sequence a lead byte announces (1 for continuation bytes). */
static inline int tok_utf8_len(uint8_t c) {
    static const uint8_t lut[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lut[c >> 4];
}

/* Pre-tokenizer regex: a backtracking matcher over codepoints supporting
 * literals, classes with ranges and \p{L} \p{N} \p{P} \p{S} \p{M} \s \S \d,
 * groups (?:..) and (..), alternation, lookahead (?!..) (?=..), $ and the
 * quantifiers ? * + {m} {m,} {m,n} on single-character atoms. */
typedef struct tok_rx tok_rx;
int tok_rx_compile(tok_rx **out, const char *pattern, qerr *e);
void tok_rx_free(tok_rx *r);
/* Length of the match starting at pos within [pos, end) of cp, or -1. */
long tok_rx_match(const tok_rx *r, const uint32_t *cp, size_t pos, size_t end);

#endif
