/* engine.h — the bottom layer of Quire: errors, clocks, half floats, tensor
 * types, the GGUF reader and writer, the thread pool and the numeric ops the
 * model code is written in. Everything above includes only this header. */
#ifndef QUIRE_ENGINE_H
#define QUIRE_ENGINE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Errors: functions return 0 on success and -1 on failure, after writing a
 * one-line message into the caller's qerr. Nothing below tools/ prints. */
typedef struct qerr {
    char msg[512];
} qerr;

/* Formats into e->msg (if e is not NULL) and returns -1. */
int qerr_set(qerr *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes the existing message: "prefix: old". Returns -1. */
int qerr_wrap(qerr *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------------------ */
/* Small utilities. */
double q_now(void); /* monotonic seconds */
/* Reads a whole file; *out is NUL-terminated (not counted in *len). */
int q_read_file(const char *path, char **out, size_t *len, qerr *e);
/* Writes a file atomically: temp file in the same directory, fsync, rename,
 * fsync of the directory. Readers see the old file or the new one. */
int q_write_file_atomic(const char *path, const void *data, size_t len, qerr *e);
/* The same in steps, for writers that stream: open a temporary beside path,
 * write to the descriptor (q_write_all), then commit (fsync, rename, fsync of
 * the directory) or abort (close and unlink). */
typedef struct q_atomic_file {
    int fd;
    char *tmp, *path;
} q_atomic_file;
int q_atomic_open(q_atomic_file *f, const char *path, qerr *e);
int q_write_all(int fd, const void *data, size_t len, qerr *e);
int q_atomic_commit(q_atomic_file *f, qerr *e);
void q_atomic_abort(q_atomic_file *f);

/* Checked arithmetic (returns false on overflow). */
static inline bool q_mul_u64(uint64_t a, uint64_t b, uint64_t *r) { return !__builtin_mul_overflow(a, b, r); }
static inline bool q_add_u64(uint64_t a, uint64_t b, uint64_t *r) { return !__builtin_add_overflow(a, b, r); }

/* ------------------------------------------------------------------------ */
/* Half and bfloat16 floats, bit-exact with the conversions GGUF writers use
 * (IEEE binary16 round-to-nearest-even; bf16 round-to-nearest-even with
 * NaNs kept quiet). */
static inline float q_f32_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t q_bits_from_f32(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

float q_fp16_to_f32(uint16_t h);
uint16_t q_f32_to_fp16(float f);
static inline float q_bf16_to_f32(uint16_t h) { return q_f32_from_bits((uint32_t)h << 16); }
static inline uint16_t q_f32_to_bf16(float f) {
    uint32_t u = q_bits_from_f32(f);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 64); /* quiet NaN */
    return (uint16_t)((u + (0x7fff + ((u >> 16) & 1))) >> 16);
}

/* ------------------------------------------------------------------------ */
/* Tensor types. Ids are GGML's, as stored in GGUF tensor infos. */
enum qtype {
    QT_F32 = 0, QT_F16 = 1, QT_Q4_0 = 2, QT_Q4_1 = 3,
    QT_Q5_0 = 6, QT_Q5_1 = 7, QT_Q8_0 = 8, QT_Q8_1 = 9,
    QT_Q2_K = 10, QT_Q3_K = 11, QT_Q4_K = 12, QT_Q5_K = 13, QT_Q6_K = 14, QT_Q8_K = 15,
    QT_IQ2_XXS = 16, QT_IQ2_XS = 17, QT_IQ3_XXS = 18, QT_IQ1_S = 19, QT_IQ4_NL = 20,
    QT_IQ3_S = 21, QT_IQ2_S = 22, QT_IQ4_XS = 23,
    QT_I8 = 24, QT_I16 = 25, QT_I32 = 26, QT_I64 = 27, QT_F64 = 28,
    QT_IQ1_M = 29, QT_BF16 = 30, QT_TQ1_0 = 34, QT_TQ2_0 = 35, QT_MXFP4 = 39,
    QT_COUNT = 40
};

#define QK_K 256 /* super-block size of the K-quants */

/* ------------------------------------------------------------------------ */
/* Instruction sets the dot-product kernels are written for. One is chosen
 * once at run time (the best the CPU has), or forced with the environment
 * variable QUIRE_ISA=scalar|avx2|avx512|neon, or set with q_isa_set (tests).
 * avx2 = AVX2+FMA+F16C; avx512 = AVX-512 F/BW/VL + VNNI (on top of avx2);
 * neon = ARMv8.2 with dot-product instructions. The scalar kernels are the
 * readable reference every SIMD kernel is tested against. */
enum q_isa { Q_ISA_SCALAR = 0, Q_ISA_AVX2 = 1, Q_ISA_AVX512 = 2, Q_ISA_NEON = 3, Q_ISA_COUNT = 4 };
const char *q_isa_name(int isa);
int q_isa_from_name(const char *name); /* -1 if unknown */
/* Compiled into this binary and supported by this CPU. */
bool q_isa_available(int isa);
/* The ISA in use. The first call applies QUIRE_ISA; if that names an ISA
 * this machine cannot run, q_isa_init reports it (callers that load models
 * call q_isa_init first, so the error surfaces there). */
int q_isa_get(void);
int q_isa_init(qerr *e);
int q_isa_set(int isa, qerr *e);

/* A block of dot products, the one kernel shape every ISA implements:
 * y[c * ys + r] = dot(stored row r, activation row c) for r < nr, c < nc
 * (nr, nc >= 1; callers use up to 8 x 4). w: rows of the weight type, wrs bytes apart; x: rows
 * already converted to the type's vec_dot_type, xrs bytes apart; n elements
 * (a multiple of the block). Each output is accumulated in exactly the same
 * order whatever nr and nc are, so results never depend on the tiling. */
typedef void (*q_gemm_fn)(int64_t n, const void *w, size_t wrs, int nr, const void *x, size_t xrs, int nc, float *y,
                          size_t ys);

/* One row of this table per type drives every quant type: adding a type
 * touches only engine/quant.c. */
typedef struct qtype_traits {
    const char *name;  /* "Q4_K", as GGUF tools print it */
    int64_t blck;      /* elements per block */
    size_t size;       /* bytes per block */
    /* Dequantize n elements (n % blck == 0). NULL: known but not computable. */
    void (*to_float)(const void *x, float *y, int64_t n);
    /* Reference quantizer of n elements (n % blck == 0); NULL if none. */
    void (*from_float)(const float *x, void *y, int64_t n);
    /* Format activations are converted to (with its from_float) before the
     * dot kernels run: Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for
     * the K-quants, the weight's own type for F32/F16/BF16; -1: no kernels
     * (matmul dequantizes to f32 instead). */
    int vec_dot_type;
    /* Dot kernels per ISA; NULL entries fall back to the scalar one. */
    q_gemm_fn gemm[Q_ISA_COUNT];
} qtype_traits;

/* NULL for an id that is not a GGML type at all. */
const qtype_traits *qtype_get(int type);
/* Type by name ("Q4_0", "f16" case-insensitive); -1 if unknown. */
int qtype_from_name(const char *name);
/* Bytes of a row of n elements; 0 if n is not a multiple of the block. */
size_t qtype_row_size(int type, int64_t n);
/* True when to_float exists (the engine can compute with this type). */
bool qtype_is_supported(int type);

/* Dot product of one stored row (type, n elements) with f32 x.
 * Scalar reference: dequantizes block by block and accumulates in f32. */
float qtype_dot_row(int type, const void *row, const float *x, int64_t n);

/* ------------------------------------------------------------------------ */
/* GGUF reader (v2 and v3) over mmap, with strict validation: every offset,
 * size and count is checked before use; a bad file gives one line naming
 * what is wrong. */
enum gguf_vtype {
    GGUF_U8 = 0, GGUF_I8 = 1, GGUF_U16 = 2, GGUF_I16 = 3, GGUF_U32 = 4,
    GGUF_I32 = 5, GGUF_F32 = 6, GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9,
    GGUF_U64 = 10, GGUF_I64 = 11, GGUF_F64 = 12, GGUF_VTYPE_COUNT = 13
};

typedef struct gguf_str {
    const char *s; /* NUL-terminated copy (the bytes may contain NUL too) */
    uint64_t len;
} gguf_str;

typedef struct gguf_value {
    int type; /* enum gguf_vtype */
    union {
        uint64_t u;    /* U8..U64, BOOL */
        int64_t i;     /* I8..I64 */
        double f;      /* F32, F64 */
        gguf_str str;  /* STRING */
        struct {
            int elem;                 /* element type */
            uint64_t n;               /* element count */
            const uint8_t *raw;       /* numeric elements: packed little-endian, in the map */
            gguf_str *strs;           /* STRING elements */
            struct gguf_value *items; /* ARRAY elements (nested arrays) */
        } arr;
    } v;
} gguf_value;

typedef struct gguf_kv {
    char *key;
    gguf_value val;
} gguf_kv;

#define GGUF_MAX_DIMS 4

typedef struct gguf_tensor {
    char *name;
    int type;       /* enum qtype */
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the row length; unused dims are 1 */
    uint64_t offset;           /* relative to the data section */
    uint64_t nbytes;
    const void *data;          /* inside the map */
} gguf_tensor;

typedef struct gguf {
    const uint8_t *base;  /* whole file */
    uint64_t size;
    bool mapped;          /* base came from mmap (else caller's memory) */
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset; /* start of the tensor data section */
    int64_t n_kv;
    gguf_kv *kv;
    int64_t n_tensors;
    gguf_tensor *tensors;
} gguf;

int gguf_open(gguf **out, const char *path, qerr *e);
/* Parses a buffer the caller keeps alive for the handle's lifetime. */
int gguf_open_memory(gguf **out, const void *buf, size_t n, qerr *e);
void gguf_close(gguf *g);
/* Gives back the resident pages of [p, p+n) inside a file-mapped gguf (the
 * whole pages only; nothing for gguf_open_memory). Reading them again later
 * is correct — the file is mapped read-only and private, so the pages come
 * back from the file. For tensors that were copied (repacked) at load. */
void gguf_drop_pages(const gguf *g, const void *p, size_t n);

const gguf_value *gguf_get(const gguf *g, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf *g, const char *name);
/* Typed getters: return true when the key exists with a compatible type
 * (any integer type for _int, f32/f64 for _float, bool or integer for _bool). */
bool gguf_get_int(const gguf *g, const char *key, int64_t *out);
bool gguf_get_float(const gguf *g, const char *key, double *out);
bool gguf_get_bool(const gguf *g, const char *key, bool *out);
const char *gguf_get_str(const gguf *g, const char *key); /* NULL if absent */
/* Array element access (numeric arrays); no bounds check beyond assert. */
int64_t gguf_arr_int(const gguf_value *a, uint64_t i);
double gguf_arr_float(const gguf_value *a, uint64_t i);
const char *gguf_vtype_name(int t);

/* GGUF writer: collect metadata and tensors, then write the file atomically
 * (v3, alignment 32 unless general.alignment says otherwise). */
typedef struct gguf_writer gguf_writer;
gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *w);
/* Copies the value (deeply); replaces an existing key of the same name. */
int gguf_writer_set(gguf_writer *w, const char *key, const gguf_value *v);
int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_set_str(gguf_writer *w, const char *key, const char *s);
/* The data is copied. ne[0] is the row length. */
int gguf_writer_add_tensor(gguf_writer *w, const char *name, int type, int n_dims,
                           const int64_t *ne, const void *data, uint64_t nbytes);
/* A tensor whose bytes are produced at write time, one tensor in memory at a
 * time (large models): fill(ud, dst, nbytes) writes exactly nbytes into dst
 * and returns 0, or -1 with a message in e. */
typedef int (*gguf_fill_fn)(void *ud, void *dst, uint64_t nbytes, qerr *e);
int gguf_writer_add_tensor_fill(gguf_writer *w, const char *name, int type, int n_dims,
                                const int64_t *ne, uint64_t nbytes, gguf_fill_fn fill, void *ud);
/* Streams the file to a temporary beside path, fsyncs, renames. */
int gguf_writer_write(gguf_writer *w, const char *path, qerr *e);

/* ------------------------------------------------------------------------ */
/* Thread pool: persistent workers that claim chunks of a job.
 * qpool_run_chunks runs fn(arg, phase, chunk, n_chunks) exactly once for
 * every chunk of every phase, on whichever thread claims it (the caller
 * claims too); phase k+1 starts when all of phase k's chunks are done, and
 * the call returns when the last chunk is done. A descheduled worker delays
 * a job only if it holds a claimed chunk. Callees split work by
 * (chunk, n_chunks) alone, so results never depend on the thread count or on
 * scheduling. qpool_run(fn, arg) runs fn(arg, i, n) for i < n = the pool's
 * size, as chunks (per-chunk scratch indexed by i is safe). */
typedef struct qpool qpool;
typedef void (*qpool_fn)(void *arg, int ith, int nth);
typedef void (*qpool_chunk_fn)(void *arg, int phase, int chunk, int n_chunks);
qpool *qpool_new(int n_threads);
void qpool_free(qpool *p);
int qpool_size(const qpool *p);
void qpool_run(qpool *p, qpool_fn fn, void *arg);
/* n_phases <= 8; phases with no chunks are skipped. */
void qpool_run_chunks(qpool *p, qpool_chunk_fn fn, void *arg, int n_phases, const int *n_chunks);
/* While thread `thread` (0 = the caller) waits — for the other threads'
 * chunks of a job, or for the next job — it prefetches [addr, addr+bytes)
 * into its L2, once per region (a different addr restarts it; NULL clears).
 * A hint only: memory the next job will stream, loaded while the bus would
 * otherwise idle. It must stay mapped while set. */
void qpool_set_wait_prefetch(qpool *p, int thread, const void *addr, size_t bytes);
/* Inside a chunk function: which of the pool's threads runs it (0 = the
 * caller). For locality only: results must not depend on it. */
int qpool_thread_index(void);
/* Grow-only scratch memory owned by the pool (valid until the next call with
 * a larger size, or qpool_free); NULL when out of memory. */
void *qpool_scratch(qpool *p, size_t bytes);
/* Default thread count for this machine (online CPUs, at least 1). */
int q_default_threads(void);
/* Measures memory read bandwidth (bytes/s) with the pool's threads over a
 * buffer of `bytes` (use several times the last-level cache); best of reps. */
double q_measure_read_bandwidth(qpool *p, size_t bytes, int reps);

/* ------------------------------------------------------------------------ */
/* Numeric ops. Row-major; "rows" are contiguous. */

/* y[b][r] = dot(W row r, x[b]) for b < n_batch, r < n_rows.
 * W is a stored tensor (type, rows of n_cols). The inputs are converted once
 * to the type's vec_dot_type, then the current ISA's dot kernels run over
 * tiles of 8 rows x 4 inputs (types without kernels: q_matmul_f32). Rows are
 * split across the pool's threads; each row is computed entirely by one
 * thread and each output in a fixed order, so results are bit-identical for
 * any thread count and any batch size. */
void q_matmul(qpool *pool, const void *W, int wtype, int64_t n_rows, int64_t n_cols,
              const float *x, int64_t n_batch, float *y);

/* Several matrices applied to the same input in one pool job (activations
 * converted once per distinct vec_dot_type): Q/K/V, gate/up. Each output is
 * bit-identical to what q_matmul gives for it alone. */
typedef struct q_packed q_packed;
typedef struct q_matmul_op {
    const void *W;
    int wtype;
    int64_t n_rows;
    float *y; /* [n_batch][n_rows] */
    /* Optional: the same matrix repacked (q_pack); used while the ISA it was
     * packed for is current, else W is. Results are identical either way. */
    const q_packed *P;
    /* Optional: a residual stream [n_batch][n_rows]; acc += y, each row
     * added by the thread that computed it, while it is still in its cache
     * (the same bits as a separate loop after the job). Not used by
     * q_matmul_glu. */
    float *acc;
} q_matmul_op;
void q_matmul_multi(qpool *pool, const q_matmul_op *ops, int n_ops, int64_t n_cols, const float *x, int64_t n_batch);
/* q_matmul with optional packed weights P (see q_matmul_op). */
void q_matmul_packed(qpool *pool, const void *W, const q_packed *P, int wtype, int64_t n_rows, int64_t n_cols,
                     const float *x, int64_t n_batch, float *y);
/* An RMSNorm applied to the input inside the matmul's pool job (each
 * thread normalises its batch rows before converting them): x = rmsnorm(
 * norm->x) * norm->w, written to x, then the ops applied to it. The same
 * bits as q_rmsnorm followed by q_matmul_multi. */
typedef struct q_rms_in {
    const float *x, *w;
    float eps;
} q_rms_in;
void q_matmul_multi_rms(qpool *pool, const q_matmul_op *ops, int n_ops, int64_t n_cols, const q_rms_in *norm, float *x,
                        int64_t n_batch);
/* The SwiGLU front of a feed-forward block in one pool job: gate->y =
 * silu(gate) * up, up->y as scratch; each thread computes the same rows of
 * both and applies the activation to them. gate and up have equal n_rows.
 * norm: optional RMSNorm of the input as in q_matmul_multi_rms (NULL: x is
 * the input as is). */
void q_matmul_glu(qpool *pool, const q_matmul_op *gate, const q_matmul_op *up, int64_t n_cols, const q_rms_in *norm,
                  float *x, int64_t n_batch);
/* Decode hint: the matmul (or GLU: ops = {gate, up}) that runs after the
 * next pool job. Each thread, while it waits during that job, prefetches the
 * start of the rows it will likely take (qpool_set_wait_prefetch). Speed
 * only; results never depend on it. */
void q_matmul_prefetch_next(qpool *pool, const q_matmul_op *ops, int n_ops, bool glu, int64_t n_cols);
/* Weights repacked once at load for the wide kernels (engine/pack.c):
 * groups of 16 rows interleaved block by block, same bytes per row as the
 * GGUF encoding. Available for Q4_0 and Q8_0 under avx512. */
bool q_pack_supported(int wtype, int isa);
/* Packs W (n_rows x n_cols of wtype) for the current ISA; NULL with *e set
 * when the type/ISA has no packed kernels, the shape does not fit, or out of
 * memory. */
q_packed *q_pack(const void *W, int wtype, int64_t n_rows, int64_t n_cols, qerr *e);
/* The same into caller memory (64-byte aligned, q_pack_size bytes, which
 * must outlive the handle; q_packed_free leaves it alone): a model packs all
 * its matrices into one huge-page arena. q_pack_size is 0 when the type or
 * shape has no packed form under the current ISA. */
size_t q_pack_size(int wtype, int64_t n_rows, int64_t n_cols);
q_packed *q_pack_into(const void *W, int wtype, int64_t n_rows, int64_t n_cols, void *mem, qerr *e);
/* 2 MiB-aligned memory, huge pages requested for its whole 2 MiB pages;
 * free() it. NULL when out of memory or bytes == 0. */
void *q_huge_alloc(size_t bytes);
void q_packed_free(q_packed *p);
size_t q_packed_bytes(const q_packed *p);
int q_packed_isa(const q_packed *p);
int q_packed_type(const q_packed *p);
int64_t q_packed_rows(const q_packed *p);
int64_t q_packed_cols(const q_packed *p);
/* The packed bytes from row row0 (a multiple of 16) to the matrix's end. */
const void *q_packed_rows_at(const q_packed *p, int64_t row0, size_t *bytes_to_end);
/* QUIRE_REPACK: unset, 1 or on -> 1; 0 or off -> 0; anything else -> -1
 * with *e set. */
int q_repack_mode(qerr *e);

/* The f32 fallback used for types without dot kernels (and as a reference):
 * dequantizes each weight row and accumulates in f32, one row per thread. */
void q_matmul_f32(qpool *pool, const void *W, int wtype, int64_t n_rows, int64_t n_cols, const float *x,
                  int64_t n_batch, float *y);

/* Attention over a KV cache, a block of Q_ATTN_BLOCK positions of one KV
 * head at a time (fused online softmax). The block holds K transposed, hd
 * rows of Q_ATTN_BLOCK (position p of dimension d at d * Q_ATTN_BLOCK + p),
 * so a query's scores come out many positions per vector with no
 * reduction, and V by position (p * hd + d); F16 (kv_f16) or F32.
 * Query row r (one head of one entry) sees the block's first cnt[r]
 * positions (0: none) and updates its running max m[r], normaliser l[r]
 * and unnormalised output out[r][hd]: s = scale * q . k_p; when the block
 * raises the max, out and l are rescaled; then out += exp(s - m) v_p and
 * l += exp(s - m). Start with m = -inf, l = 0, out = 0; divide out by l
 * after the last block. A row's result depends only on its own inputs —
 * not on the other rows, their number or order, threads or batching — so
 * prefill (many entries' rows per block), batched decode and decode agree
 * bit for bit. kt_next, v_next: the blocks the next call reads (or NULL),
 * next_bytes each, prefetched while this one computes (a speed hint). */
#define Q_ATTN_BLOCK 32
typedef struct q_attn_rows {
    int n;
    const float *const *q; /* [n] query rows, hd each */
    float *const *out;     /* [n] accumulators, hd each */
    float *m, *l;          /* [n] running max and normaliser */
    const int *cnt;        /* [n] positions of the block seen, 0..Q_ATTN_BLOCK */
} q_attn_rows;
void q_attn_block(const q_attn_rows *rows, const void *kt, const void *v, bool kv_f16, int hd, float scale,
                  const void *kt_next, const void *v_next, size_t next_bytes);

void q_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps);
/* Elements [k0, k1) of q_rmsnorm's result (the scale from all n): chunks
 * of one row normalised by different threads, the same bits. */
void q_rmsnorm_part(float *y, const float *x, const float *w, int64_t n, float eps, int64_t k0, int64_t k1);
void q_layernorm(float *y, const float *x, const float *w, const float *b, int64_t n, float eps);
void q_softmax(float *x, int64_t n);
static inline float q_silu(float x) { return x / (1.0f + __builtin_expf(-x)); }
/* g[i] = q_silu(g[i]) * u[i] for i < n: the GLU's activation. The scalar
 * ISA computes exactly that; AVX-512 uses a vector exp (a few ulp from it,
 * the same bits for any thread count or batch). */
void q_silu_mul(float *g, const float *u, int64_t n);
float q_gelu(float x);

/* ------------------------------------------------------------------------ */
/* Tracing: spans recorded into memory and written as Chrome trace-event JSON
 * (opens in Perfetto / chrome://tracing). Callers test the handle for NULL
 * before reading the clock, so tracing that is off costs one branch. */
typedef struct qtrace qtrace;
qtrace *qtrace_new(void);
void qtrace_free(qtrace *t);
/* name and cat are copied (truncated to 47 characters); times in seconds
 * from q_now(); arg < 0 means none (else shown as args.n). */
void qtrace_span(qtrace *t, const char *name, const char *cat, double t0, double t1, long long arg);
int qtrace_write(const qtrace *t, const char *path, qerr *e);
size_t qtrace_count(const qtrace *t);
/* Sums the durations of the spans of one category by name: fills up to max
 * distinct names (in order of first appearance) and their total seconds;
 * returns how many. */
size_t qtrace_totals(const qtrace *t, const char *cat, char (*names)[48], double *secs, size_t max);

/* ------------------------------------------------------------------------ */
/* Random numbers: xoshiro256** seeded through splitmix64. Fixed algorithm and
 * arithmetic, so a seed gives the same stream on every machine. */
typedef struct qrng {
    uint64_t s[4];
} qrng;
void qrng_seed(qrng *r, uint64_t seed);
uint64_t qrng_next(qrng *r);
/* Uniform in [0, 1) with 24 bits of resolution (exact in float). */
float qrng_uniform(qrng *r);

/* ------------------------------------------------------------------------ */
/* Sampling chain, applied in this order (the reference's default):
 * penalties over the recent history → top-k → top-p → min-p → temperature →
 * draw. temp <= 0 is greedy (argmax; ties to the lowest id). */
typedef struct sampler_params {
    float temp;            /* 0: greedy */
    int top_k;             /* <= 0: off */
    float top_p;           /* >= 1: off */
    float min_p;           /* <= 0: off */
    float repeat_penalty;  /* 1: off */
    float freq_penalty, presence_penalty; /* 0: off */
    int penalty_last_n;    /* history window for penalties; 0: off, -1: all */
    uint64_t seed;
} sampler_params;

sampler_params sampler_defaults(void);

typedef struct sampler sampler;
sampler *sampler_new(const sampler_params *p, int n_vocab);
void sampler_free(sampler *s);
/* Picks a token from logits[n_vocab] (modified in place). history: the ids
 * generated or prompted so far, for penalties. */
int32_t sampler_sample(sampler *s, float *logits, const int32_t *history, int n_history);

/* Log-probabilities under the model's distribution after penalties (before
 * filters and temperature — what OpenAI-style logprobs report): the token's,
 * and the n_top most likely tokens' (ids and logprobs, best first; ties to
 * the lower id). Call with the logits sampler_sample was given. */
typedef struct token_logprob {
    int32_t id;
    float logprob;
} token_logprob;
float sampler_logprobs(sampler *s, const float *logits, int32_t token, int n_top, token_logprob *top);

/* ------------------------------------------------------------------------ */
/* Model quantization (engine/quantize_model.c; added with the quantizers).
 * Converts a GGUF model to a whole-file type, following the reference
 * implementation's rules for which tensors are converted and to what.
 * type_name: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K (=Q3_K_M)
 * Q3_K_S Q3_K_M Q3_K_L Q4_K (=Q4_K_M) Q4_K_S Q4_K_M Q5_K (=Q5_K_M) Q5_K_S
 * Q5_K_M Q6_K (case-insensitive). n_threads <= 0: q_default_threads().
 * The output is GGUF v3 with general.file_type set to the LLAMA_FTYPE id and
 * general.quantization_version = 2; it is written atomically. */
int q_quantize_model(const char *in_path, const char *out_path, const char *type_name, int n_threads, qerr *e);
/* LLAMA_FTYPE id of a whole-file type name (as above); -1 if unknown. */
int q_quant_ftype_from_name(const char *type_name);

#endif
