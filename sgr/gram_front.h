/* gram_front.h — helpers shared by the text and regex grammar front ends.
 * Internal to sgr/. */
#ifndef QUIRE_SGR_GRAM_FRONT_H
#define QUIRE_SGR_GRAM_FRONT_H

#include "sgr/grammar_int.h"

typedef struct cprange { uint32_t lo, hi; } cprange;

/* One UTF-8 code point in the union of r[0..n) (complemented over
 * 0..10FFFF when negate); surrogates never match. Sorts and merges r in
 * place. An empty set gives an expression that matches nothing. */
sgr_expr gb_cp_set(sgr_gb *b, cprange *r, size_t n, bool negate);

#endif
