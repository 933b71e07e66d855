/* fuzz_grammar_regex.c — regex to grammar on arbitrary patterns; when both
 * the grammar and the regex engine (anchored ^(?:...)$) accept the pattern,
 * they must agree on a few subjects, and masks must agree with and without
 * the cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sgr/sgr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1024) return 0;
    sgr_grammar *g;
    qerr e;
    if (sgr_grammar_from_regex((const char *)data, size, &g, &e)) return 0;
    char *anch = malloc(size + 8);
    memcpy(anch, "^(?:", 4);
    memcpy(anch + 4, data, size);
    memcpy(anch + 4 + size, ")$", 2);
    regex *re = NULL;
    const char *subjects[] = {"", "a", "ab", "abc", "0", "12345", "a-b", "\xc3\xa9", "aaaa", "_", " ", "\n", "{}"};
    sgr_matcher *m;
    if (sgr_matcher_new(g, NULL, &m, &e) == 0) {
        bool cmp = memchr(data, '^', size) == NULL && memchr(data, '$', size) == NULL &&
                   regex_compile(anch, size + 6, &re, &e) == 0;
        for (size_t i = 0; i < sizeof subjects / sizeof *subjects; i++) {
            sgr_matcher_reset(m);
            const char *s = subjects[i];
            bool got = sgr_matcher_accept_bytes(m, s, strlen(s)) == 0 && sgr_matcher_can_end(m);
            if (cmp && got != regex_match(re, s, strlen(s))) abort();
        }
        sgr_matcher_free(m);
    }
    regex_free(re);
    free(anch);
    sgr_grammar_free(g);
    return 0;
}
