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
 * extendCandidates; keepPrunedConnections optional), caller-provided uint64 ids,
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
    bool keep_pruned;      /* the paper's keepPrunedConnections: fill lists up to M/2M with
                              the nearest pruned candidates; denser graph, better for
                              restrictive filters (two-hop walk), slower build */
    uint64_t seed;         /* level-generator seed; same seed + same insertion order
                              (single-threaded) gives the same graph */
    size_t capacity;       /* initial slots (grows as needed); 0 = 1024 */
} hnsw_params;

/* Fills the defaults above (dim 0: caller sets it). */
void hnsw_params_default(hnsw_params *p);

typedef struct hnsw hnsw;

/* Return true to allow an id in the results. Must be thread-safe if
 * searches run concurrently. Called once per node the walk reaches (plus
 * up to 256 times by the planner's sample). */
typedef bool (*hnsw_filter_fn)(uint64_t id, void *ctx);

/* The same filter over many ids at once: allow[i] for ids[i], i < n. The
 * exact scan passes blocks of up to 512 ids, which saves a call per id
 * (the filter of a 10%-selective scan over 60k vectors is otherwise a large
 * part of its time). */
typedef void (*hnsw_filter_many_fn)(const uint64_t *ids, size_t n, bool *allow, void *ctx);

enum hnsw_plan { HNSW_PLAN_AUTO = 0, HNSW_PLAN_GRAPH = 1, HNSW_PLAN_BRUTE = 2 };

typedef struct hnsw_search_opts {
    int ef;                /* <= 0: the index's ef_search; raised to k if smaller */
    hnsw_filter_fn filter; /* NULL: all live ids */
    void *filter_ctx;
    double selectivity;    /* caller's estimate of the allowed fraction, in (0,1];
                              <= 0: estimated by sampling the filter */
    int plan;              /* enum hnsw_plan */
    hnsw_filter_many_fn filter_many; /* optional; used when filter is NULL, with filter_ctx */
    const struct hnsw_allow *allow;  /* optional allow-list (hnsw_allow_new on this index): only
                                        its ids are results; a filter, if also given, must allow
                                        them too */
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
 * with one thread the graph is reproducible. On an error (e.g. a duplicate
 * id) some of the other items may already be inserted. */
int hnsw_add_batch(hnsw *h, const uint64_t *ids, const float *vecs, size_t n, qpool *pool, qerr *e);
/* Removes an id: its slot is marked free, every list that pointed at it is
 * repaired from its neighbours (a scan of all lists: O(n·M) per delete,
 * ~1 ms at 60k nodes; takes the lock exclusively), and a later insert
 * reuses the slot. */
int hnsw_delete(hnsw *h, uint64_t id, qerr *e);
bool hnsw_contains(hnsw *h, uint64_t id);

/* k nearest live ids (never deleted ones) in ascending distance. Writes
 * *n_out = min(k, #allowed live ids). dists may be NULL; opts may be NULL;
 * stats may be NULL. Thread-safe, also during inserts. */
int hnsw_search(hnsw *h, const float *query, int k, const hnsw_search_opts *opts,
                uint64_t *ids, float *dists, int *n_out, hnsw_search_stats *stats, qerr *e);

/* Fits pr principal axes to a sample of the stored vectors (f32 storage or
 * int8 with f32 re-rank; l2 or cos) and keeps pr coordinates plus a
 * residual norm per vector (later inserts are projected too; saved with
 * the index). The exact scan (HNSW_PLAN_BRUTE) then computes lower bounds
 * from these coordinates and exact distances only where a bound beats the
 * current k-th: the same results as the plain scan at a fraction of the
 * memory traffic. pr 0 removes the projection. Takes the lock exclusively. */
int hnsw_fit_projection(hnsw *h, int pr, qerr *e);
int hnsw_projection_dim(const hnsw *h); /* 0: none */

/* Allow-lists: the set of ids a search may return, given as ids (e.g. the
 * posting list of a metadata value) instead of a predicate. The ids are
 * resolved to the index's slots once, sorted by slot, so the exact scan
 * iterates only the allowed vectors in memory order (no call per id, no
 * pass over the whole index) and the graph walk tests membership in a
 * bitmap. HNSW_ALLOW_PACK also copies the allowed vectors' first projected
 * coordinates into one contiguous block (≈ 33 floats per id) so the scan's
 * first pass streams them; worth it for a list used by many queries.
 * Ids not in the index are ignored (and found if added later). A list
 * stays valid while the index changes: after any add, delete or new
 * projection it is resolved again per search (correct, slower); build a
 * new one then. Read-only after creation: one list may serve concurrent
 * searches. */
typedef struct hnsw_allow hnsw_allow;
enum { HNSW_ALLOW_PACK = 1 };
int hnsw_allow_new(hnsw *h, const uint64_t *ids, size_t n, unsigned flags, hnsw_allow **out, qerr *e);
void hnsw_allow_free(hnsw_allow *a);
size_t hnsw_allow_size(const hnsw_allow *a); /* distinct ids given */

size_t hnsw_count(const hnsw *h);     /* live ids */
size_t hnsw_slots(const hnsw *h);     /* slots in use or free for reuse (high-water mark) */
int hnsw_dim(const hnsw *h);
size_t hnsw_memory_bytes(const hnsw *h); /* heap bytes of vectors and graph (not during inserts) */

/* Persistence: "QHNSW" format, little-endian, CRC32C over everything
 * before the trailing checksum. Load rejects a bad magic, version,
 * inconsistent sizes or a checksum mismatch with a message naming it. */
int hnsw_save(hnsw *h, const char *path, qerr *e);      /* atomic replace */
int hnsw_save_fd(hnsw *h, int fd, qerr *e);
int hnsw_load(hnsw **out, const char *path, qerr *e);
int hnsw_load_fd(hnsw **out, int fd, qerr *e);
int hnsw_load_memory(hnsw **out, const void *buf, size_t n, qerr *e);

/* Principal axes (rag/pca.c): the mean (dim) and r orthonormal axes
 * (basis, r × dim, by decreasing variance) of n vectors x (n × dim). */
int pca_fit(const float *x, size_t n, int dim, int r, float *mean, float *basis, qerr *e);

/* CRC32C (Castagnoli), software table; crc starts at 0. */
uint32_t q_crc32c(uint32_t crc, const void *buf, size_t n);

/* ------------------------------------------------------------------------ */
/* Distance kernels (rag/vec_dist.c). The *_scalar forms are the reference;
 * the plain names dispatch once to AVX2+FMA when the CPU has it. */
float vec_l2sq_f32(const float *a, const float *b, size_t n);
float vec_dot_f32(const float *a, const float *b, size_t n);
float vec_dot_f32_i8(const float *a, const int8_t *b, size_t n);
int32_t vec_dot_i8(const int8_t *a, const int8_t *b, size_t n);
/* Squared L2 summed 128 elements at a time, returning early (a partial sum
 * >= bound) once a block's running sum reaches bound; otherwise the full
 * distance. Rounding is monotone, so a partial sum >= bound means the full
 * one is too. */
float vec_l2sq_f32_bounded(const float *a, const float *b, size_t n, float bound);
/* out[r] = |q - base[rows[r] * d ..]|² for r < n. */
void vec_l2sq_f32_rows(const float *q, const float *base, size_t d, const uint32_t *rows, size_t n, float *out);
float vec_l2sq_f32_bounded_scalar(const float *a, const float *b, size_t n, float bound);
void vec_l2sq_f32_rows_scalar(const float *q, const float *base, size_t d, const uint32_t *rows, size_t n, float *out);
float vec_l2sq_f32_scalar(const float *a, const float *b, size_t n);
float vec_dot_f32_scalar(const float *a, const float *b, size_t n);
float vec_dot_f32_i8_scalar(const float *a, const int8_t *b, size_t n);
int32_t vec_dot_i8_scalar(const int8_t *a, const int8_t *b, size_t n);
/* Forces the scalar kernels (false) or the best available (true); returns
 * whether SIMD is now in use. For tests and benchmarks. */
bool vec_use_simd(bool on);

/* ======================================================================== */
/* JSON reader (rag/jsonl.c): a small strict RFC 8259 parser for one JSONL
 * line — bounds-checked, depth-limited (64), UTF-8 validated, duplicate
 * keys rejected. Strings are decoded (NUL-terminated; may contain NUL). */
typedef enum jv_type { JV_NULL = 0, JV_BOOL, JV_NUM, JV_STR, JV_ARR, JV_OBJ } jv_type;
typedef struct jv {
    int type;          /* jv_type */
    bool b;
    double num;
    char *str;         /* JV_STR */
    size_t len;        /* JV_STR: bytes; JV_ARR/JV_OBJ: items */
    struct jv *items;  /* JV_ARR elements / JV_OBJ values */
    char **keys;       /* JV_OBJ keys */
} jv;
int jsonl_parse(const char *s, size_t len, jv *out, qerr *e);
void jsonl_free(jv *v);
const jv *jsonl_get(const jv *obj, const char *key); /* NULL if absent / not an object */
/* Compact JSON text of v (malloc'd, NUL-terminated). */
int jsonl_dump(const jv *v, char **out, size_t *len, qerr *e);
/* Next line of buf starting at *pos (without the newline, CR stripped);
 * false at the end. */
bool jsonl_next_line(const char *buf, size_t len, size_t *pos, const char **line, size_t *line_len);

/* ======================================================================== */
/* Analyzer (rag/analyzer.c): Anserini's default English analyzer —
 * UAX#29-style word splitting (letters with marks, numbers such as 3.5 and
 * 1,000, words such as don't; each Han/Hiragana character a token), English
 * possessive removal, lower-casing, Lucene's English stop words, Porter
 * stemming (libstemmer "porter"). Not thread-safe: one per thread. */
typedef struct analyzer analyzer;
/* Bumped whenever the terms produced change (persisted BM25 postings record
 * it): 1 Snowball's porter, 2 Lucene's Porter variant. */
#define ANALYZER_VERSION 2u
typedef struct analyzer_opts {
    bool keep_stopwords;
    bool no_stem;
    bool snowball_porter; /* Snowball's "porter" (the published algorithm) instead of Lucene's variant */
} analyzer_opts;
int analyzer_new(analyzer **out, const analyzer_opts *o, qerr *e); /* o may be NULL */
void analyzer_free(analyzer *a);
/* emit(term, len, ctx) for each output term, in order. */
typedef void (*analyzer_emit_fn)(const char *term, size_t len, void *ctx);
void analyzer_run(analyzer *a, const char *text, size_t len, analyzer_emit_fn emit, void *ctx);
bool analyzer_is_stopword(const char *w, size_t len);
/* Porter stemmer in Lucene's variant (rag/porter.c): stems the n code
 * points of w (lower case) in place, returns the new length. */
size_t porter_stem(int32_t *w, size_t n);

/* ======================================================================== */
/* BM25 (rag/bm25.c): in-memory inverted index with Lucene's BM25
 * (idf = ln(1 + (N - df + 0.5)/(df + 0.5)), tf/(tf + k1(1 - b + b dl/avgdl)),
 * no (k1+1) factor; document lengths through Lucene's 1-byte SmallFloat norm
 * unless exact_norms). One or more fields (flat: title+text in one field).
 * Top-k by MaxScore (exact: equals exhaustive scoring, ties to lower ids).
 * Deleted documents stay in the statistics until the index is rebuilt
 * (Lucene's behaviour before a merge). Not thread-safe for writes; searches
 * may run concurrently with each other. */
#define BM25_MAX_FIELDS 4
typedef struct bm25_params {
    float k1, b;                        /* defaults 0.9, 0.4 (Anserini) */
    int n_fields;                       /* 1 (flat) .. BM25_MAX_FIELDS */
    float field_weight[BM25_MAX_FIELDS];/* default 1 */
    bool exact_norms;                   /* false: Lucene's lossy 1-byte norms */
} bm25_params;
void bm25_params_default(bm25_params *p);

typedef struct bm25 bm25;
typedef bool (*bm25_filter_fn)(uint32_t id, void *ctx);
typedef struct bm25_hit {
    uint32_t id;
    float score;
} bm25_hit;
typedef struct bm25_stats {
    uint64_t n_scored;    /* documents fully scored */
    uint64_t n_filtered;  /* candidates rejected by the filter */
    int n_clauses;
    double t_analyze;     /* seconds spent analyzing the query */
} bm25_stats;

int bm25_new(bm25 **out, const bm25_params *p, qerr *e);
void bm25_free(bm25 *x);
/* Adds the next document (ids are dense: 0, 1, 2, ...). fields[f] of lens[f] bytes. */
int bm25_add(bm25 *x, analyzer *a, const char *const *fields, const size_t *lens, uint32_t *id, qerr *e);
void bm25_delete(bm25 *x, uint32_t id);
bool bm25_is_deleted(const bm25 *x, uint32_t id);
uint32_t bm25_count(const bm25 *x); /* ids handed out (including deleted) */
/* Top k by score (descending; ties: lower id first). filter may be NULL.
 * out has room for k; *n_out = hits written. exhaustive: score every
 * posting (reference for tests). stats may be NULL. */
int bm25_search(const bm25 *x, analyzer *a, const char *query, size_t qlen, int k, bm25_filter_fn filter, void *fctx,
                bool exhaustive, bm25_hit *out, int *n_out, bm25_stats *stats, qerr *e);
/* Persistence: the index without its deleted documents (the others
 * renumbered densely in id order), CRC32C-checked ("QBM25" format, see
 * bm25.c). Identical bytes for an index and a rebuild from the same live
 * documents. Load checks the checksum and the structure (sorted postings,
 * term frequencies adding up to each document's length, norms, field
 * statistics) and names what is wrong. */
int bm25_save_buf(const bm25 *x, uint8_t **out, size_t *len, qerr *e);
int bm25_load_memory(bm25 **out, const void *buf, size_t len, qerr *e);
bool bm25_params_equal(const bm25 *x, const bm25_params *p);
/* Lucene's SmallFloat.intToByte4 / byte4ToInt. */
uint8_t bm25_int_to_byte4(uint32_t i);
uint32_t bm25_byte4_to_int(uint8_t b);

/* ======================================================================== */
/* Chunking (rag/chunk.c): paragraphs (Markdown: also headings), then
 * sentences, then words, packed under a token budget with overlap. Every
 * chunk is a byte range [start, end) of the original text. */
typedef enum chunk_format { CHUNK_TEXT = 0, CHUNK_MARKDOWN = 1 } chunk_format;
/* Token count of text[0..len); NULL counter: whitespace-separated words. */
typedef int (*chunk_count_fn)(const char *text, size_t len, void *ctx);
typedef struct chunk_opts {
    int max_tokens;      /* budget per chunk (> 0) */
    int overlap;         /* tokens of trailing sentences repeated at the next chunk's start */
    int format;          /* chunk_format */
    chunk_count_fn count;
    void *count_ctx;
} chunk_opts;
typedef struct chunk_span {
    size_t start, end;
} chunk_span;
/* *spans is malloc'd; an empty or all-space text gives no chunk. */
int chunk_text(const char *text, size_t len, const chunk_opts *o, chunk_span **spans, size_t *n, qerr *e);
int chunk_count_words(const char *text, size_t len, void *ctx);

/* ======================================================================== */
/* Metadata filters (rag/filter.c). Expression language:
 *   expr    := or ; or := and ("or" and)* ; and := unary ("and" unary)*
 *   unary   := "not" unary | "(" expr ")" | cmp
 *   cmp     := FIELD ("=" | "==" | "!=" | "<" | "<=" | ">" | ">=") VALUE
 *            | FIELD "in" "[" VALUE ("," VALUE)* "]" | FIELD "exists"
 *   VALUE   := "string" (JSON escapes) | number | true | false
 *   FIELD   := [A-Za-z_][A-Za-z0-9_.-]*   (_id is the document id)
 * A missing field or a type mismatch makes a comparison false; "!=" is
 * "not =". Metadata values: strings, numbers, booleans, or arrays of them
 * (a comparison holds when any element satisfies it). */
typedef struct meta_val {
    int type;   /* JV_STR, JV_NUM or JV_BOOL */
    double num;
    bool b;
    char *str;
} meta_val;
typedef struct meta_field {
    char *key;
    meta_val *vals;
    int n_vals;
} meta_field;
typedef struct meta {
    meta_field *fields;
    int n;
} meta;
/* From a JSON object (nested objects and nulls are skipped). */
int meta_from_json(meta *m, const jv *obj, qerr *e);
void meta_free(meta *m);

typedef struct filter filter;
int filter_parse(filter **out, const char *expr, qerr *e);
void filter_free(filter *f);
bool filter_eval(const filter *f, const meta *m, const char *doc_id);
/* The same filter as set algebra over posting lists, for n documents
 * numbered 0..n-1: get(ctx, field, val, &docs, &nd) gives the ascending
 * numbers of the documents whose field has a value equal to *val (val
 * NULL: that have the field). Writes bits (⌈n/64⌉ words, bit d = document
 * d) and *exact: true when bits is exactly the set filter_eval allows
 * (equality, "in", "!=", exists, and/or/not of those); false when it is a
 * superset to check per document (ranges and _id are not in posting
 * lists). f NULL: all documents, exact. */
typedef void (*filter_postings_fn)(void *ctx, const char *field, const meta_val *val, const uint32_t **docs, size_t *nd);
int filter_allow_bits(const filter *f, size_t n, filter_postings_fn get, void *ctx, uint64_t *bits, bool *exact, qerr *e);

/* ======================================================================== */
/* Metadata posting index (rag/meta_index.c): for every (field, value) of
 * the documents' metadata (strings, numbers, booleans; each array element),
 * every field name, and every ACL principal, the ascending list of document
 * numbers carrying it, plus the public documents. meta_index_allow turns a
 * filter and a caller's principals into the bitmap of allowed documents
 * without evaluating anything per document. Documents are added in
 * ascending number; the index does not know about deletions (the caller
 * masks them). Adds need exclusive access; meta_index_allow only reads (any
 * number of threads at once). */
typedef struct meta_index meta_index;
int meta_index_new(meta_index **out, qerr *e);
void meta_index_free(meta_index *mi);
int meta_index_add(meta_index *mi, uint32_t doc, const meta *m, const char *const *acl, int n_acl, qerr *e);
/* bits (⌈n_docs/64⌉ words) := the documents the principals may read (a
 * public document, or one whose ACL names one of them; ignore_acl: all)
 * and the filter allows (NULL: all). Returns 1 when exact, 0 when a
 * superset (the filter has range or _id parts: evaluate those per
 * document), -1 on error. */
int meta_index_allow(const meta_index *mi, const filter *f, const char *const *principals, int n_principals,
                     bool ignore_acl, size_t n_docs, uint64_t *bits, qerr *e);

/* ======================================================================== */
/* Index directory (rag/index.c). One directory per index:
 *   MANIFEST       config + snapshot files with sizes and CRC32C (atomic)
 *   wal.log        write-ahead log: [u32 len][u32 crc32c][payload], fsync'd
 *                  before an add/rm returns; payload starts with a u64 LSN
 *   docs-G.dat     snapshot of live documents and chunks (CRC32C trailer)
 *   hnsw-G.bin     snapshot of the vector index (when embedding)
 *   bm25-G.bin     snapshot of the BM25 postings of docs-G.dat's chunks
 *   LOCK           flock: writers exclusive, readers shared
 * A checkpoint writes new snapshots, then the MANIFEST (which records the
 * last LSN they contain), then truncates the log; opening loads the
 * snapshots and replays log records with a larger LSN. A torn final record
 * (incomplete, or failing its CRC at the very end of the log) is dropped;
 * any other damage is an error naming the file. The BM25 postings are
 * loaded from their snapshot (checksum and structure checked) and only the
 * log's records are analyzed at open; an index without that snapshot, or
 * one written by an older analyzer version, is rebuilt from the stored
 * chunks. index_verify also compares the loaded postings with a rebuild.
 *
 * Threads: a handle is used by one thread at a time (searches share its
 * analyzer and lazily load the embedding model); open one handle per thread
 * for concurrent readers, or serialize. Processes: one writer or many
 * readers (flock on LOCK). */
typedef struct rag_index rag_index;

typedef struct index_config {
    char embed_model[1024]; /* empty: no vectors */
    int chunk_tokens;       /* 0: the model's context - 2 (512 words without a model) */
    int overlap;            /* tokens */
    float k1, b;
    bool multi_field;       /* title and text as separate BM25 fields */
} index_config;
void index_config_default(index_config *c);

enum { INDEX_READ = 0, INDEX_WRITE = 1, INDEX_CREATE = 2 };
/* dir NULL: in memory only (no durability). cfg: used at creation; NULL
 * for defaults. */
int index_open(rag_index **out, const char *dir, int mode, const index_config *cfg, qerr *e);
/* Checkpoints if the log is non-empty and the index is writable. */
int index_close(rag_index *x, qerr *e);
void index_free(rag_index *x); /* no checkpoint */
const index_config *index_get_config(const rag_index *x);
/* Checkpoint when the log exceeds this many bytes (0: only at close). */
void index_set_checkpoint_bytes(rag_index *x, uint64_t bytes);
int index_set_threads(rag_index *x, int n, qerr *e);

typedef struct index_doc {
    const char *id;
    const char *title;       /* may be NULL */
    const char *text;
    size_t text_len;
    const char *meta_json;   /* JSON object text or NULL */
    const char *const *acl;  /* principals; n_acl 0: public */
    int n_acl;
    int format;              /* chunk_format */
} index_doc;
/* Adds (or replaces) documents; durable (log fsync'd) when it returns 0. */
int index_add(rag_index *x, const index_doc *docs, size_t n, qerr *e);
/* Removes a document and all its chunks; *found tells whether it existed. */
int index_rm(rag_index *x, const char *doc_id, bool *found, qerr *e);
int index_checkpoint(rag_index *x, qerr *e);
/* Checks every file's checksum and the in-memory structures. */
int index_verify(const char *dir, qerr *e);
bool index_has_doc(const rag_index *x, const char *doc_id);
size_t index_doc_count(const rag_index *x);
size_t index_chunk_count(const rag_index *x);

/* Search. */
enum search_mode { SEARCH_BM25 = 0, SEARCH_VECTOR = 1, SEARCH_HYBRID = 2 };
enum fusion { FUSION_RRF = 0, FUSION_WEIGHTED = 1 };
/* Rerank hook (a cross-encoder later): fills scores[i] for texts[i]. */
typedef int (*rerank_fn)(void *ctx, const char *query, const char *const *texts, int n, float *scores, qerr *e);
enum { ST_ANALYZE, ST_BM25, ST_EMBED, ST_HNSW, ST_FUSE, ST_FILTER, ST_RERANK, ST_COUNT };
extern const char *const search_stage_names[ST_COUNT];
typedef struct search_opts {
    int k;
    int mode;                    /* search_mode */
    int fusion;                  /* fusion */
    float alpha;                 /* weighted fusion: alpha*bm25 + (1-alpha)*vector; default 0.5 */
    int rrf_k;                   /* default 60 */
    int depth;                   /* candidates per list for hybrid; 0: max(k, 100) */
    const filter *filter;        /* may be NULL */
    const char *const *principals;
    int n_principals;
    rerank_fn rerank;
    void *rerank_ctx;
    bool group_by_doc;           /* one result per document (its best chunk) */
    bool ignore_acl;             /* every document whatever its ACL (an admin caller) */
    bool filter_by_callback;     /* evaluate the filter and ACL chunk by chunk instead of from the
                                    metadata posting lists (the reference path, for tests) */
} search_opts;
void search_opts_default(search_opts *o);
typedef struct search_hit {
    const char *doc_id;          /* valid until the index changes */
    const char *chunk;
    size_t chunk_len;
    size_t start, end;
    float score;
    uint64_t chunk_id;
} search_hit;
typedef struct search_result {
    search_hit *hits;
    int n;
    double t[ST_COUNT];          /* seconds per stage */
} search_result;
int index_search(rag_index *x, const char *query, const search_opts *o, search_result *r, qerr *e);
void search_result_free(search_result *r);
/* A stored document, for reading back (the pointers are valid until the
 * index changes). Chunks are read one at a time with index_doc_chunk
 * (k < n_chunks), in text order; hit->score is 0. */
typedef struct index_doc_info {
    const char *id, *title, *meta_json;   /* meta_json: "" when none */
    const char *const *acl;
    int n_acl;                            /* 0: public */
    size_t n_chunks;
    size_t doc_;                          /* internal */
} index_doc_info;
bool index_get_doc(const rag_index *x, const char *doc_id, index_doc_info *out);
void index_doc_chunk(const rag_index *x, const index_doc_info *d, size_t k, search_hit *hit);

/* ======================================================================== */
/* Retrieval evaluation (rag/eval.c), BEIR conventions (pytrec_eval):
 * nDCG@10 with graded gains rel / log2(rank + 1) and the ideal ranking from
 * all judged documents with rel > 0; recall@100 = relevant retrieved in the
 * first 100 / relevant; MRR@10 = 1 / rank of the first relevant. */
typedef struct qrels qrels;
/* TSV: query-id, corpus-id, score (an optional header line is skipped). */
int qrels_load(qrels **out, const char *path, qerr *e);
void qrels_free(qrels *q);
size_t qrels_query_count(const qrels *q);
bool qrels_has_query(const qrels *q, const char *qid);
/* ranked: distinct doc ids, best first. Returns false if the query has no
 * relevant document (not counted by BEIR). */
/* Orders a run the way trec_eval does before scoring: score descending,
 * ties by document id descending (strcmp). */
void qrels_sort_run(const char **ids, float *scores, int n);
bool qrels_eval_query(const qrels *q, const char *qid, const char *const *ranked, int n, double *ndcg10,
                      double *recall100, double *mrr10);

#endif
