/* fuzz_http.c — libFuzzer target for the HTTP request parser: any bytes give
 * a request, "need more" or an error status, never a crash; parsing a
 * pipelined stream request by request always makes progress. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    http_limits lim = {.max_header_bytes = 8192, .max_headers = 32, .max_body = 1 << 20};
    size_t off = 0;
    while (off < size) {
        http_request r;
        size_t used;
        int rc = http_parse_request(buf + off, size - off, &lim, &r, &used);
        if (rc != HTTP_OK) break;
        if (used == 0) abort(); /* must make progress */
        http_request_free(&r);
        off += used;
    }
    free(buf);
    return 0;
}
