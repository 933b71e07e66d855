/* regex_int.h — the compiled form of a regex (sgr/regex.c), shared with the
 * regex-to-grammar front end (sgr/regex_grammar.c). Not part of sgr.h. */
#ifndef QUIRE_SGR_REGEX_INT_H
#define QUIRE_SGR_REGEX_INT_H

#include <stdint.h>
#include "sgr.h"

typedef struct range { uint32_t lo, hi; } range;

typedef struct rclass {
    range *r;
    size_t n, cap;
} rclass;

enum { N_EMPTY, N_CHAR, N_ANY, N_CLASS, N_CAT, N_ALT, N_REP, N_BOL, N_EOL, N_WORDB, N_NWORDB, N_NONE };

typedef struct rnode {
    int type;
    uint32_t c;      /* N_CHAR code point, N_CLASS index */
    int a, b;        /* children (N_CAT, N_ALT), a for N_REP */
    int min, max;    /* N_REP; max -1 = unbounded */
} rnode;

enum { I_CHAR, I_ANY, I_CLASS, I_SPLIT, I_JMP, I_BOL, I_EOL, I_WORDB, I_NWORDB, I_MATCH, I_FAIL };

typedef struct rinst {
    uint8_t op;
    uint32_t x, y;
} rinst;

struct regex {
    rinst *prog;
    size_t n;
    rclass *classes;
    size_t n_classes;
};

/* Regexes → grammar IR for the strings that ALL of them match (their
 * intersection), further intersected with a length window in code points
 * (min_len..max_len, max_len < 0 = unbounded). Each term keeps its own
 * semantics: search (JSON Schema `pattern`: a match anywhere) or whole-text
 * match. The product construction: one rule per reachable (state of every
 * program, length) tuple, at most max_states (0 = 20000), a code point step
 * on the intersection of the terms' sets, unproductive tuples pruned (every
 * prefix can be completed). With one term this is that regex's grammar. An
 * empty intersection is an expression that matches nothing. Returns
 * SGR_EXPR_ERR with e set ("unsupported: ..." past the limits) when it
 * cannot. */
#define RX_MAX_TERMS 32
typedef struct rx_term { const regex *re; bool search; } rx_term;
sgr_expr rx_terms_to_grammar(const rx_term *terms, size_t n_terms, sgr_gb *b, bool json_string, int64_t min_len,
                             int64_t max_len, size_t max_states, qerr *e);
/* One code point from the sorted ranges, JSON-escaped (json_string) or raw
 * UTF-8; surrogates skipped. A class with no encodable code point gives an
 * expression that matches nothing (an empty alternative). */
sgr_expr rx_cp_set(sgr_gb *b, const range *r, size_t n, bool json_string);

#endif
