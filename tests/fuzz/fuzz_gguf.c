/* fuzz_gguf.c — libFuzzer target for the GGUF reader: any bytes must give a
 * clean error or a handle whose every tensor lies inside the buffer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Exact-size copy so that ASan catches any read past the end. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    gguf *g;
    qerr e;
    if (gguf_open_memory(&g, buf, size, &e) == 0) {
        volatile uint8_t sink = 0;
        for (int64_t i = 0; i < g->n_tensors; i++) {
            const gguf_tensor *t = &g->tensors[i];
            if (t->nbytes) {
                sink ^= ((const uint8_t *)t->data)[0];
                sink ^= ((const uint8_t *)t->data)[t->nbytes - 1];
            }
        }
        for (int64_t i = 0; i < g->n_kv; i++) {
            const gguf_value *v = &g->kv[i].val;
            if (v->type == GGUF_ARRAY && v->v.arr.raw && v->v.arr.n)
                sink ^= (uint8_t)gguf_arr_float(v, v->v.arr.n - 1);
        }
        (void)gguf_get_str(g, "general.architecture");
        (void)sink;
        gguf_close(g);
    }
    free(buf);
    return 0;
}
