/* kernels.h — inside the engine only: the GGUF block layouts, the
 * activation quantizers and the dot kernels of every ISA, which the traits
 * table in quant.c points at. */
#ifndef QUIRE_KERNELS_H
#define QUIRE_KERNELS_H

#include "engine/engine.h"

/* ------------------------------------------------------------------------ */
/* Block layouts. Each struct is byte-for-byte the block GGUF files store
 * (little-endian, no padding); the static_asserts pin the sizes. Blocks are
 * copied in and out with memcpy, because inside a file they sit at any
 * 2-byte boundary and reading them in place would be an unaligned access.
 * Half-float scales are kept as raw uint16_t bits. */

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32

/* Q4_0: x = d * (q - 8), q in 0..15. Element j < 16 is the low nibble of
 * qs[j], element j + 16 the high nibble of qs[j]. */
typedef struct { uint16_t d; uint8_t qs[QK4_0 / 2]; } block_q4_0;
/* Q4_1: x = d * q + m, q in 0..15, same nibble order as Q4_0. */
typedef struct { uint16_t d, m; uint8_t qs[QK4_1 / 2]; } block_q4_1;
/* Q5_0: x = d * (q - 16), q in 0..31: low 4 bits as in Q4_0, bit 4 of
 * element j is bit j of the 32-bit little-endian qh. */
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[QK5_0 / 2]; } block_q5_0;
/* Q5_1: x = d * q + m, layout as Q5_0. */
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[QK5_1 / 2]; } block_q5_1;
/* Q8_0: x = d * q, q a signed byte. */
typedef struct { uint16_t d; int8_t qs[QK8_0]; } block_q8_0;
/* Q8_1: as Q8_0 plus s = d * sum(q) (used by dot-product kernels). */
typedef struct { uint16_t d, s; int8_t qs[QK8_1]; } block_q8_1;

/* Q2_K: 16 sub-blocks of 16. scales[i]: low nibble scale, high nibble min
 * (both 4-bit, multiplied by the fp16 d / dmin). x = d*sc*q - dmin*m with
 * q in 0..3. The 2-bit values are stored per 128 elements: element
 * n + 32*j + l (j < 4, l < 32) is bits 2j..2j+1 of qs[n/4 + l]. */
typedef struct { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; uint16_t d, dmin; } block_q2_K;
/* Q3_K: 16 sub-blocks of 16, 6-bit signed scales (stored +32) packed into
 * 12 bytes: the low 4 bits of scale j are the low nibble of scales[j] for
 * j < 8, the high nibble of scales[j - 8] otherwise; its top 2 bits are bits
 * 2*(j/4).. of scales[8 + j%4]. q in -4..3 = low 2 bits (same order as Q2_K)
 * plus 4 if hmask[e % 32] has bit e / 32 set, minus 4. x = d * (sc-32) * q. */
typedef struct { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; uint16_t d; } block_q3_K;
/* Q4_K: 8 sub-blocks of 32 with 6-bit scale and min (see scale_min_k4).
 * x = d*sc*q - dmin*m, q in 0..15. Per 64 elements: the first 32 are the low
 * nibbles of 32 bytes of qs, the next 32 their high nibbles. */
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[QK_K / 2]; } block_q4_K;
/* Q5_K: like Q4_K plus a fifth bit: element 64*i + l (l < 32) takes bit 2i of
 * qh[l], element 64*i + 32 + l bit 2i + 1. */
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; } block_q5_K;
/* Q6_K: 16 sub-blocks of 16 with int8 scales; x = d * sc * (q - 32), q in
 * 0..63. Per 128 elements (ql advances 64, qh 32): element l, l+32, l+64,
 * l+96 (l < 32) take low nibble of ql[l], low of ql[l+32], high of ql[l],
 * high of ql[l+32], and bits 0-1, 2-3, 4-5, 6-7 of qh[l] as the top 2 bits. */
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; uint16_t d; } block_q6_K;
/* Q8_K: the intermediate type of the K-quant dot products: f32 scale. */
typedef struct { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; } block_q8_K;

_Static_assert(sizeof(block_q4_0) == 18, "Q4_0 block");
_Static_assert(sizeof(block_q4_1) == 20, "Q4_1 block");
_Static_assert(sizeof(block_q5_0) == 22, "Q5_0 block");
_Static_assert(sizeof(block_q5_1) == 24, "Q5_1 block");
_Static_assert(sizeof(block_q8_0) == 34, "Q8_0 block");
_Static_assert(sizeof(block_q8_1) == 36, "Q8_1 block");
_Static_assert(sizeof(block_q2_K) == 84, "Q2_K block");
_Static_assert(sizeof(block_q3_K) == 110, "Q3_K block");
_Static_assert(sizeof(block_q4_K) == 144, "Q4_K block");
_Static_assert(sizeof(block_q5_K) == 176, "Q5_K block");
_Static_assert(sizeof(block_q6_K) == 210, "Q6_K block");
_Static_assert(sizeof(block_q8_K) == 292, "Q8_K block");

/* 6-bit scale and min j (0..7) of a Q4_K/Q5_K super-block. */
static inline void scale_min_k4(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}
/* Scale j (0..15) of a Q3_K super-block, still offset by 32. */
static inline int q3_K_scale(const uint8_t s[12], int j) {
    int lo = j < 8 ? s[j] & 0x0f : s[j - 8] >> 4;
    int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return lo | (hi << 4);
}

/* Activation quantizers with the reference's rounding (engine/quant.c). */
void q8_1_from_float_ref(const float *x, void *y, int64_t n);
void q8_K_from_float_ref(const float *x, void *y, int64_t n);

/* Dot kernels, one per weight type and ISA (see q_gemm_fn in engine.h).
 * Q_KERNEL_LIST(X) names every type that has them, for declarations. */
#define Q_KERNEL_LIST(X) X(f32) X(f16) X(bf16) X(q4_0) X(q4_1) X(q5_0) X(q5_1) X(q8_0) \
    X(q2_K) X(q3_K) X(q4_K) X(q5_K) X(q6_K)

#define Q_DECL_SCALAR(t) void t##_gemm_scalar(int64_t, const void *, size_t, int, const void *, size_t, int, float *, size_t);
Q_KERNEL_LIST(Q_DECL_SCALAR)
/* The scalar single dot product of each type (the readable reference). */
#define Q_DECL_DOT(t) float t##_dot_scalar(int64_t n, const void *w, const void *x);
Q_KERNEL_LIST(Q_DECL_DOT)

#if defined(__x86_64__)
#define Q_HAVE_X86 1
#define Q_DECL_X86(t)                                                                                         \
    void t##_gemm_avx2(int64_t, const void *, size_t, int, const void *, size_t, int, float *, size_t); \
    void t##_gemm_avx512(int64_t, const void *, size_t, int, const void *, size_t, int, float *, size_t);
Q_KERNEL_LIST(Q_DECL_X86)
#define Q_AVX2(t) t##_gemm_avx2
#define Q_AVX512(t) t##_gemm_avx512
#else
#define Q_AVX2(t) NULL
#define Q_AVX512(t) NULL
#endif

#if defined(__aarch64__)
#define Q_HAVE_NEON 1
#define Q_NEON_LIST(X) X(q4_0) X(q8_0) X(f16) X(q4_1) X(q5_0) X(q5_1) X(q2_K) X(q3_K) X(q4_K) X(q5_K) X(q6_K)
#define Q_DECL_NEON(t) void t##_gemm_neon(int64_t, const void *, size_t, int, const void *, size_t, int, float *, size_t);
Q_NEON_LIST(Q_DECL_NEON)
#endif

#if defined(__aarch64__)
#define Q_NEON_f32 NULL
#define Q_NEON_f16 f16_gemm_neon
#define Q_NEON_bf16 NULL
#define Q_NEON_q4_0 q4_0_gemm_neon
#define Q_NEON_q4_1 q4_1_gemm_neon
#define Q_NEON_q5_0 q5_0_gemm_neon
#define Q_NEON_q5_1 q5_1_gemm_neon
#define Q_NEON_q8_0 q8_0_gemm_neon
#define Q_NEON_q2_K q2_K_gemm_neon
#define Q_NEON_q3_K q3_K_gemm_neon
#define Q_NEON_q4_K q4_K_gemm_neon
#define Q_NEON_q5_K q5_K_gemm_neon
#define Q_NEON_q6_K q6_K_gemm_neon
#else
#define Q_NEON_f32 NULL
#define Q_NEON_f16 NULL
#define Q_NEON_bf16 NULL
#define Q_NEON_q4_0 NULL
#define Q_NEON_q4_1 NULL
#define Q_NEON_q5_0 NULL
#define Q_NEON_q5_1 NULL
#define Q_NEON_q8_0 NULL
#define Q_NEON_q2_K NULL
#define Q_NEON_q3_K NULL
#define Q_NEON_q4_K NULL
#define Q_NEON_q5_K NULL
#define Q_NEON_q6_K NULL
#endif

/* Attention blocks (q_attn_block) per ISA. */
void attn_block_scalar(const q_attn_rows *r, const void *kt, const void *v, bool kv_f16, int hd, float scale);
#if defined(__x86_64__)
void attn_block_avx2(const q_attn_rows *r, const void *kt, const void *v, bool kv_f16, int hd, float scale);
/* AVX-512 (engine/kern_f32_avx512.c): rows four at a time, vector exp. */
void attn_block_avx512(const q_attn_rows *r, const void *kt, const void *v, bool kv_f16, int hd, float scale,
                       const void *kt_next, const void *v_next, size_t next_bytes);
void silu_mul_avx512(float *g, const float *u, int64_t n);
#endif

/* Packed weights (engine/pack.c): groups of Q_PACK_ROWS rows interleaved,
 * kernels in engine/kern_pack_avx512.c over Q8S activations (Q8S_BLOCK
 * bytes per 32 elements: f32 d, int32 -sum(q), 32 x int8 q). */
#define Q_PACK_ROWS 16
#define Q8S_BLOCK 40
#define Q8KS_BLOCK 308
#define Q4K_PACKED_SB 2368 /* bytes per super-block of a 16-row group */
#define Q6K_PACKED_SB 3360
enum { Q_ACT_Q8S = -2, Q_ACT_Q8KS = -3 }; /* activation formats (not GGML types) */
int q_packed_act(const q_packed *p);
size_t q_act_row_size(int fmt, int64_t n);
void q_act_from_float(int fmt, const float *x, void *y, int64_t n);
/* Row groups [g0, g1) against nc Q8S rows; y[c * ys + row]. */
void q_packed_gemm(const q_packed *p, int64_t g0, int64_t g1, const void *x, size_t xrs, int nc, float *y, size_t ys);
#if defined(__x86_64__)
#define Q_HAVE_PACKED 1
/* One group (16 rows, nr of them real) x nc columns; nb blocks per row. */
void q4_0_packed_avx512(size_t nb, const uint8_t *w, int nr, const void *x, size_t xrs, int nc, float *y, size_t ys);
void q8_0_packed_avx512(size_t nb, const uint8_t *w, int nr, const void *x, size_t xrs, int nc, float *y, size_t ys);
/* Q4_K: nsb super-blocks per row. */
void q4_K_packed_avx512(size_t nsb, const uint8_t *w, int nr, const void *x, size_t xrs, int nc, float *y, size_t ys);
void q6_K_packed_avx512(size_t nsb, const uint8_t *w, int nr, const void *x, size_t xrs, int nc, float *y, size_t ys);
/* Q8S / Q8KS activation rows, byte-identical to the scalar conversion. */
void q8s_from_float_avx512(const float *x, void *y, int64_t n);
void q8ks_from_float_avx512(const float *x, void *y, int64_t n);
#else
#define Q_HAVE_PACKED 0
#endif

/* The gemm[] initializer of a traits row. */
#define Q_KERNELS(t) {[Q_ISA_SCALAR] = t##_gemm_scalar, [Q_ISA_AVX2] = Q_AVX2(t), [Q_ISA_AVX512] = Q_AVX512(t), [Q_ISA_NEON] = Q_NEON_##t}

#endif
