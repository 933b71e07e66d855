/* rag.h — the retrieval module's public header: vector index (HNSW) and the
 * distance kernels it is built on. Other retrieval parts (BM25, chunking,
 * hybrid search) add their own sections below. */
#ifndef QUIRE_RAG_H
#define QUIRE_RAG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"

/* ======================================================================== */
/* HNSW — hierarchical navigable small world graph (Malkov & Yashunin 2016/
 * 2018), with the paper's neighbour-selection heuristic (Algorithm 4, without
 * extendCandidates or keepPrunedConnections, as hnswlib), caller-provided uint64 ids,
 * delete with slot reuse, filtered search with a brute-force planner,
 * f32 or int8 storage, CRC32C-checked persistence.
 *
 * Concurrency design: one global pthread rwlock plus a tiny spinlock per
 * node. hnsw_add and hnsw_search take the global lock shared, so searches
 * run while inserts (and several inserts) proceed; a node's neighbour lists
 * are only read or written under that node's spinlock (readers copy the
 * list out, ≤ 2M+1 words, and compute distances unlocked). A new node's
 * vector and lists are written before any neighbour list points at it, so
 * the lock hand-off publishes them. Rare structural operations — growing
 * the arrays, delete (which rewrites every list that mentions the slot),
 * save — take the global lock exclusively. Per-node read-write locks would
 * cost more than the copy-out spinlock for lists this short; a single
 * global rwlock alone would serialize inserts and block the multithreaded
 * build. */

typedef enum hnsw_metric { HNSW_L2 = 0, HNSW_IP = 1, HNSW_COS = 2 } hnsw_metric;
typedef enum hnsw_storage { HNSW_F32 = 0, HNSW_I8 = 1 } hnsw_storage;

typedef struct hnsw_params {
    int dim;               /* vector length, > 0 */
    hnsw_metric metric;    /* l2: squared L2; ip: 1 - dot; cos: normalized, then ip */
    int M;                 /* links per node on upper layers (2M on layer 0); default 16 */
    int ef_construction;   /* default 200 */
    int ef_search;         /* default ef for hnsw_search; default 64 */
    hnsw_storage storage;  /* HNSW_I8: symmetric per-vector scale int8 */
    bool rerank_f32;       /* I8 only: also keep f32 vectors and re-rank results with them */
    uint64_t seed;         /* level-generator seed; same seed + same insertion order
                              (single-threaded) gives the same graph */
    size_t capacity;       /* initial slots (grows as needed); 0 = 1024 */
} hnsw_params;

/* Fills the defaults above (dim 0: caller sets it). */
void hnsw_params_default(hnsw_params *p);

typedef struct hnsw hnsw;

/* Return true to allow an id in the results. Must be thread-safe if
 * searches run concurrently; called at most once per node per search. */
typedef bool (*hnsw_filter_fn)(uint64_t id, void *ctx);

enum hnsw_plan { HNSW_PLAN_AUTO = 0, HNSW_PLAN_GRAPH = 1, HNSW_PLAN_BRUTE = 2 };

typedef struct hnsw_search_opts {
    int ef;                /* <= 0: the index's ef_search; raised to k if smaller */
    hnsw_filter_fn filter; /* NULL: all live ids */
    void *filter_ctx;
    double selectivity;    /* caller's estimate of the allowed fraction, in (0,1];
                              <= 0: estimated by sampling the filter */
    int plan;              /* enum hnsw_plan */
} hnsw_search_opts;

/* What a search did (optional out-parameter). */
typedef struct hnsw_search_stats {
    int plan;              /* HNSW_PLAN_GRAPH or HNSW_PLAN_BRUTE */
    double selectivity;    /* estimate used by the planner (1 without a filter) */
    uint64_t n_dist;       /* distance evaluations */
    bool fallback;         /* graph search found < k and brute force completed it */
} hnsw_search_stats;

int hnsw_new(hnsw **out, const hnsw_params *p, qerr *e);
void hnsw_free(hnsw *h);

/* Inserts one vector (copied) under a new id; an id already present is an
 * error. A slot freed by hnsw_delete is reused. Thread-safe. */
int hnsw_add(hnsw *h, uint64_t id, const float *vec, qerr *e);
/* Inserts n vectors (row-major n × dim) using the pool's threads (pool may
 * be NULL: one thread, deterministic). Levels are drawn in input order, so
 * with one thread the graph is reproducible. */
int hnsw_add_batch(hnsw *h, const uint64_t *ids, const float *vecs, size_t n, qpool *pool, qerr *e);
/* Removes an id: its slot is marked free, every list that pointed at it is
 * repaired from its neighbours, and a later insert reuses the slot. */
int hnsw_delete(hnsw *h, uint64_t id, qerr *e);
bool hnsw_contains(hnsw *h, uint64_t id);

/* k nearest live ids (never deleted ones) in ascending distance. Writes
 * *n_out = min(k, #allowed live ids). dists may be NULL; opts may be NULL;
 * stats may be NULL. Thread-safe, also during inserts. */
int hnsw_search(hnsw *h, const float *query, int k, const hnsw_search_opts *opts,
                uint64_t *ids, float *dists, int *n_out, hnsw_search_stats *stats, qerr *e);

size_t hnsw_count(const hnsw *h);     /* live ids */
int hnsw_dim(const hnsw *h);
size_t hnsw_memory_bytes(const hnsw *h); /* heap bytes of vectors and graph */

/* Persistence: "QHNSW" format, little-endian, CRC32C over everything
 * before the trailing checksum. Load rejects a bad magic, version,
 * inconsistent sizes or a checksum mismatch with a message naming it. */
int hnsw_save(hnsw *h, const char *path, qerr *e);      /* atomic replace */
int hnsw_save_fd(hnsw *h, int fd, qerr *e);
int hnsw_load(hnsw **out, const char *path, qerr *e);
int hnsw_load_fd(hnsw **out, int fd, qerr *e);
int hnsw_load_memory(hnsw **out, const void *buf, size_t n, qerr *e);

/* CRC32C (Castagnoli), software table; crc starts at 0. */
uint32_t q_crc32c(uint32_t crc, const void *buf, size_t n);

/* ------------------------------------------------------------------------ */
/* Distance kernels (rag/vec_dist.c). The *_scalar forms are the reference;
 * the plain names dispatch once to AVX2+FMA when the CPU has it. */
float vec_l2sq_f32(const float *a, const float *b, size_t n);
float vec_dot_f32(const float *a, const float *b, size_t n);
float vec_dot_f32_i8(const float *a, const int8_t *b, size_t n);
int32_t vec_dot_i8(const int8_t *a, const int8_t *b, size_t n);
float vec_l2sq_f32_scalar(const float *a, const float *b, size_t n);
float vec_dot_f32_scalar(const float *a, const float *b, size_t n);
float vec_dot_f32_i8_scalar(const float *a, const int8_t *b, size_t n);
int32_t vec_dot_i8_scalar(const int8_t *a, const int8_t *b, size_t n);
/* Forces the scalar kernels (false) or the best available (true); returns
 * whether SIMD is now in use. For tests and benchmarks. */
bool vec_use_simd(bool on);

#endif
