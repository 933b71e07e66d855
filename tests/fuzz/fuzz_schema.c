/* fuzz_schema.c — compile arbitrary JSON as a schema (format asserted, no
 * remote loader) and validate a fixed instance, the schema itself, and check
 * the error report is well formed. */
#include <stdlib.h>
#include <string.h>

#include "sgr/sgr.h"

static json *instance;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qerr e;
    if (!instance) {
        const char *t = "{\"a\":[1,2.5,\"x\",null,true,{\"b\":\"2024-01-01\"}],\"c\":{\"d\":[[],{}]},\"e\":\"\xc3\xa9t\xc3\xa9\",\"f\":-3e2}";
        if (json_parse(t, strlen(t), NULL, &instance, &e)) abort();
    }
    json *doc = NULL;
    json_parse_opts o = {64, JSON_DUP_LAST};
    if (json_parse((const char *)data, size, &o, &doc, &e)) return 0;
    schema *s;
    schema_opts so = {0};
    so.assert_format = true;
    so.max_nodes = 5000;
    if (schema_compile(doc, &so, &s, &e) == 0) {
        schema_error err;
        int r = schema_validate(s, instance, &err);
        if (r < -1 || r > 1) abort();
        if (r == 0 && err.instance_ptr[0] && err.instance_ptr[0] != '/') abort();
        (void)schema_validate(s, doc, NULL);
        schema_free(s);
    }
    json_free(doc);
    return 0;
}
