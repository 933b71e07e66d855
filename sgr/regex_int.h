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

/* Regex → grammar IR intersected with a length window in code points
 * (min_len..max_len, max_len < 0 = unbounded): one rule per reachable
 * (program state, length) pair, at most max_states (0 = 20000), unproductive
 * states pruned. Returns SGR_EXPR_ERR with e set when it cannot. */
sgr_expr rx_to_grammar(const regex *re, sgr_gb *b, bool json_string, bool search, int64_t min_len,
                       int64_t max_len, size_t max_states, qerr *e);
/* One code point from the sorted ranges, JSON-escaped (json_string) or raw
 * UTF-8; surrogates skipped. A class with no encodable code point gives an
 * expression that matches nothing (an empty alternative). */
sgr_expr rx_cp_set(sgr_gb *b, const range *r, size_t n, bool json_string);

#endif
