/* grammar_regex.c — placeholder until the ECMA-subset translator lands. */
#include "sgr/grammar_int.h"

sgr_expr sgr_gb_regex(sgr_gb *b, const char *pat, size_t n, qerr *e) {
    (void)pat; (void)n;
    qerr_set(e, "regex grammars are not supported yet");
    return sgr_gb_fail(b, "regex grammars are not supported yet");
}

int sgr_grammar_from_regex(const char *pat, size_t n, sgr_grammar **out, qerr *e) {
    *out = NULL;
    sgr_gb *b = sgr_gb_new(NULL);
    if (!b) return qerr_set(e, "out of memory");
    int32_t r = sgr_gb_rule(b, "root");
    sgr_expr x = sgr_gb_regex(b, pat, n, e);
    int rc = -1;
    if (x != SGR_EXPR_ERR && sgr_gb_define(b, r, x) == 0) rc = sgr_grammar_build(b, r, out, e);
    sgr_gb_free(b);
    return rc;
}
