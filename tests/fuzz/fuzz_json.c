/* fuzz_json.c — the JSON parser on arbitrary bytes: parse, and whatever
 * parses must serialize, re-parse to an equal value and answer pointers. */
#include <stdlib.h>
#include <string.h>

#include "sgr/sgr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json *v = NULL;
    qerr e;
    json_parse_opts o = {64, (size && data[0] & 1) ? JSON_DUP_LAST : JSON_DUP_REJECT};
    if (json_parse((const char *)data, size, &o, &v, &e)) return 0;
    char *out;
    size_t n;
    json_write_opts wo = {size & 3, (size & 4) != 0};
    if (json_serialize(v, &wo, &out, &n, &e) == 0) {
        json *w = NULL;
        if (json_parse(out, n, &o, &w, &e) != 0 || !json_equal(v, w)) abort();
        json_free(w);
        free(out);
    }
    json *c = json_clone(v);
    if (c && !json_equal(v, c)) abort();
    json_free(c);
    (void)json_pointer_get(v, "/0/a~1b/1", 9);
    json_free(v);
    return 0;
}
