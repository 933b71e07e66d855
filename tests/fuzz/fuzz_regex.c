/* fuzz_regex.c — regex compile on arbitrary patterns; a compiled pattern is
 * matched against a few fixed subjects and against the pattern itself. */
#include <string.h>

#include "sgr/sgr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    regex *re;
    qerr e;
    if (regex_compile((const char *)data, size, &re, &e)) return 0;
    static const char *subjects[] = {"", "a", "abc-123 _x\n", "\xf0\x9f\x90\xb2\xc3\xa9z", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab"};
    for (size_t i = 0; i < sizeof subjects / sizeof *subjects; i++) (void)regex_match(re, subjects[i], strlen(subjects[i]));
    (void)regex_match(re, (const char *)data, size);
    regex_free(re);
    return 0;
}
