/* grammar_regex.c — the regex constraint (`sgr_grammar_from_regex`): the
 * whole output must match an ECMA-262 pattern. One regex dialect for the
 * product: the pattern is compiled by sgr/regex.c (what `pattern` in a
 * schema accepts) and turned into grammar rules by regex_to_grammar (the
 * same translation the schema compiler uses), over raw bytes and anchored at
 * both ends. */
#include "sgr/grammar_int.h"

sgr_expr sgr_gb_regex(sgr_gb *b, const char *pat, size_t n, qerr *e) {
    regex *re;
    if (regex_compile(pat, n, &re, e)) return sgr_gb_fail(b, "%s", e->msg);
    sgr_expr x = regex_to_grammar(re, b, false, false, e);
    regex_free(re);
    if (x == SGR_EXPR_ERR) {
        const char *m = sgr_gb_error(b);
        if (m && e && !e->msg[0]) qerr_set(e, "regex: %s", m);
        sgr_gb_fail(b, "%s", e ? e->msg : "bad regex");
    }
    return x;
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
