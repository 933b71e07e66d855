/* fuzz_index_snapshots.c — the index's binary snapshot readers:
 * bm25_load_memory (QBM25) and hnsw_load_memory (QHNSW, with projection).
 * The first input byte picks the reader; the harness adds the magic and a
 * valid CRC32C trailer so the fuzzer reaches the structure checks instead
 * of stopping at the checksum. A snapshot that loads must also search and
 * save without trouble. */
#include <stdlib.h>
#include <string.h>

#include "rag/rag.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int which = data[0] & 1;
    const char *magic = which ? "QHNSW\0\0\0" : "QBM25\0\0\0";
    size_t n = 8 + (size - 1) + 4;
    uint8_t *buf = malloc(n);
    if (!buf) return 0;
    memcpy(buf, magic, 8);
    memcpy(buf + 8, data + 1, size - 1);
    uint32_t crc = q_crc32c(0, buf, n - 4);
    memcpy(buf + n - 4, &crc, 4);
    qerr e;
    if (which == 0) {
        bm25 *x;
        if (bm25_load_memory(&x, buf, n, &e) == 0) {
            analyzer *a;
            if (analyzer_new(&a, NULL, &e) == 0) {
                bm25_hit hits[8];
                int nh;
                (void)bm25_search(x, a, "cell protein s", 14, 8, NULL, NULL, false, hits, &nh, NULL, &e);
                analyzer_free(a);
            }
            uint8_t *out;
            size_t on;
            if (bm25_save_buf(x, &out, &on, &e) == 0) free(out);
            bm25_free(x);
        }
    } else {
        hnsw *h;
        if (hnsw_load_memory(&h, buf, n, &e) == 0) {
            int d = hnsw_dim(h);
            if (d <= 4096) {
                float *q = calloc((size_t)d, sizeof *q);
                uint64_t ids[4];
                int got;
                hnsw_search_opts o = {8, NULL, NULL, 0, HNSW_PLAN_BRUTE, NULL, NULL};
                if (q) {
                    (void)hnsw_search(h, q, 4, &o, ids, NULL, &got, NULL, &e);
                    o.plan = HNSW_PLAN_GRAPH;
                    (void)hnsw_search(h, q, 4, &o, ids, NULL, &got, NULL, &e);
                }
                free(q);
            }
            hnsw_free(h);
        }
    }
    free(buf);
    return 0;
}
