/* kern_pack_avx512.c — the packed-weight kernels (layout: engine/pack.c) on
 * 512-bit vectors with AVX-512 VNNI. One zmm int32 lane per weight row:
 * a group of 16 rows is unpacked once per block and reused for up to 8
 * activation columns held in registers (16 x 8 register tile), the
 * activation's 4 bytes broadcast straight into vpdpbusd.
 *
 * Per (row, column) the arithmetic is exactly the unpacked kernels':
 *   isum_b = sum (q - 8) * x (Q4_0) or sum q * x (Q8_0), exact int32,
 *   acc = fma((float)isum_b, dw_b * dx_b, acc) over the blocks in order,
 * so packed and unpacked weights give bit-identical results. Compiled with
 * AVX-512 flags; only called when q_isa says the CPU has them. */
#include "engine/kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AI static inline __attribute__((always_inline))
/* Q4_0/Q8_0 software prefetch: into L1 PFD blocks ahead, every line of
 * the block and the scales' line — leaving every other line to the
 * hardware's pair prefetch measured 3-4% slower decode in L1 and 15% slower
 * in L2 (bench/README-kernels.md); 4 blocks ahead is slower, 16 the same ... */
#define PFD 8
/* ... and into L2 about 24 KB ahead, every line: with one input (decode)
 * the kernel does little work per byte, so the out-of-order window alone
 * keeps too few misses in flight; these prefetches took two-thread Q4_0
 * gemv over a ring of matrices larger than the L3 from ~22 to ~27 GB/s
 * (12 or 48 KB measured no better; bench/README-kernels.md). */
#define PF_L2_BYTES (24 * 1024)

AI __m512i bcast4(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}
AI float ld_f32(const uint8_t *p) {
    float f;
    memcpy(&f, p, 4);
    return f;
}

AI void store_rows(float *y, __m512 v, int nr) {
    if (nr == Q_PACK_ROWS) _mm512_storeu_ps(y, v);
    else _mm512_mask_storeu_ps(y, (__mmask16)((1u << nr) - 1), v);
}

/* IS_Q8: Q8_0 (flipped bytes), else Q4_0 (nibbles). */
AI void packed_k(size_t nb, const uint8_t *w, int nr, const uint8_t *x, size_t xrs, float *y, size_t ys, const int NC,
                 const int IS_Q8) {
    const size_t vb = IS_Q8 ? 512 : 256;
    const uint8_t *sc = w + nb * vb;
    __m512 acc[8];
    for (int c = 0; c < NC; c++) acc[c] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    for (size_t b = 0; b < nb; b++) {
        const uint8_t *q = w + b * vb;
        for (size_t l = 0; l < vb; l += 64) _mm_prefetch((const char *)(uintptr_t)((uintptr_t)q + PFD * vb + l), _MM_HINT_T0);
        if ((b & 1) == 0) _mm_prefetch((const char *)(uintptr_t)((uintptr_t)sc + 32 * (b + PFD)), _MM_HINT_T0);
        /* the L2 stream runs over the group's bytes as laid out (quants,
         * then scales, then the next group) at the rate they are read, so
         * it reaches every line; stepping over the quants alone left a gap
         * of 2 KB per group (Q4_0, 64 blocks) to the hardware prefetcher */
        const uintptr_t l2 = (uintptr_t)w + PF_L2_BYTES + b * (vb + 32);
        for (size_t l = 0; l < vb + 32; l += 64) _mm_prefetch((const char *)(l2 + l), _MM_HINT_T1);
        __m512i wv[8];
        if (IS_Q8) {
            for (int g = 0; g < 8; g++) wv[g] = _mm512_loadu_si512((const void *)(q + 64 * g));
        } else {
            for (int j = 0; j < 4; j++) {
                __m512i v = _mm512_loadu_si512((const void *)(q + 64 * j));
                wv[j] = _mm512_and_si512(v, m4);
                wv[j + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            }
        }
        __m512 wd = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(sc + 32 * b)));
        const uint8_t *xb = x + b * Q8S_BLOCK;
        __m512i is[8];
        for (int c = 0; c < NC; c++) is[c] = _mm512_slli_epi32(bcast4(xb + (size_t)c * xrs + 4), IS_Q8 ? 7 : 3);
        /* group g covers elements 4g..4g+3: Q4_0's vector j holds groups j
         * (low nibbles) and j + 4 (high), stored as wv[j], wv[j + 4]. The
         * columns are interleaved so that consecutive vpdpbusd are
         * independent. */
        for (int g = 0; g < 8; g++)
            for (int c = 0; c < NC; c++) is[c] = _mm512_dpbusd_epi32(is[c], wv[g], bcast4(xb + (size_t)c * xrs + 8 + 4 * g));
        for (int c = 0; c < NC; c++)
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is[c]),
                                     _mm512_mul_ps(wd, _mm512_set1_ps(ld_f32(xb + (size_t)c * xrs))), acc[c]);
    }
    for (int c = 0; c < NC; c++) store_rows(y + (size_t)c * ys, acc[c], nr);
}

/* Columns in register tiles of 8, then one tile of the rest: CALL(NCV)
 * computes columns c .. c+NCV-1 with NCV a compile-time constant. */
#define NC_TILES(CALL)                            \
    do {                                          \
        int c = 0;                                \
        for (; c + 8 <= nc; c += 8) CALL(8);      \
        switch (nc - c) {                         \
        case 7: CALL(7); break;                   \
        case 6: CALL(6); break;                   \
        case 5: CALL(5); break;                   \
        case 4: CALL(4); break;                   \
        case 3: CALL(3); break;                   \
        case 2: CALL(2); break;                   \
        case 1: CALL(1); break;                   \
        default: break;                           \
        }                                         \
    } while (0)

#define PACKED_ENTRY(name, IS_Q8)                                                                               \
    void name(size_t nb, const uint8_t *w, int nr, const void *x, size_t xrs, int nc, float *y, size_t ys) {    \
        const uint8_t *X = x;                                                                                   \
        NC_TILES(PK_CALL_##IS_Q8);                                                                              \
    }
#define PK_CALL_0(NCV) packed_k(nb, w, nr, X + (size_t)c * xrs, xrs, y + (size_t)c * ys, ys, NCV, 0)
#define PK_CALL_1(NCV) packed_k(nb, w, nr, X + (size_t)c * xrs, xrs, y + (size_t)c * ys, ys, NCV, 1)
PACKED_ENTRY(q4_0_packed_avx512, 0)
PACKED_ENTRY(q8_0_packed_avx512, 1)

/* Q4_K x Q8KS, 16 rows x NC columns. Per sub-block s (32 elements) an
 * exact int32 dot of the 4-bit levels, times the row's 6-bit scale, summed
 * into isum; msum = sum of mins x the activation's 32-sums (vpdpwssd on
 * (min, min) pairs); then the scalar reference's float expression
 *   acc += (d*dx)*isum - (dmin*dx)*msum. */
AI void q4_K_pk(size_t nsb, const uint8_t *w, int nr, const uint8_t *x, size_t xrs, float *y, size_t ys, const int NC) {
    __m512 acc[8];
    for (int c = 0; c < NC; c++) acc[c] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    for (size_t b = 0; b < nsb; b++) {
        const uint8_t *q = w + b * Q4K_PACKED_SB;
        const uint8_t *xb[8];
        for (int c = 0; c < NC; c++) xb[c] = x + (size_t)c * xrs + b * Q8KS_BLOCK;
        __m512i isum[8];
        for (int c = 0; c < NC; c++) isum[c] = _mm512_setzero_si512();
        for (int s = 0; s < 8; s++) {
            const uint8_t *qp = q + 512 * (s / 2);
            for (int l = 0; l < 5; l++) { /* 8 x 5 lines cover the 2368-byte super-block: L1 two ahead, L2 ~24 KB */
                _mm_prefetch((const char *)(uintptr_t)((uintptr_t)q + 2 * Q4K_PACKED_SB + 320 * (size_t)s + 64 * (size_t)l), _MM_HINT_T0);
                _mm_prefetch((const char *)(uintptr_t)((uintptr_t)q + PF_L2_BYTES + 320 * (size_t)s + 64 * (size_t)l), _MM_HINT_T1);
            }
            __m512i wv[8];
            for (int j = 0; j < 8; j++) {
                __m512i v = _mm512_loadu_si512((const void *)(qp + 64 * j));
                wv[j] = _mm512_and_si512((s & 1) ? _mm512_srli_epi16(v, 4) : v, m4);
            }
            __m512i sc = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(q + 2048 + 16 * s)));
            __m512i t[8];
            for (int c = 0; c < NC; c++) t[c] = _mm512_setzero_si512();
            for (int j = 0; j < 8; j++) /* columns interleaved: independent chains */
                for (int c = 0; c < NC; c++) t[c] = _mm512_dpbusd_epi32(t[c], wv[j], bcast4(xb[c] + 52 + 32 * s + 4 * j));
            for (int c = 0; c < NC; c++) isum[c] = _mm512_add_epi32(isum[c], _mm512_mullo_epi32(t[c], sc));
        }
        __m512i mp[4];
        for (int i = 0; i < 4; i++) {
            __m512i a = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(q + 2176 + 32 * i)));
            __m512i bb = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(q + 2176 + 32 * i + 16)));
            mp[i] = _mm512_or_si512(a, _mm512_slli_epi32(bb, 16));
        }
        __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(q + 2304)));
        __m512 dm = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(q + 2336)));
        for (int c = 0; c < NC; c++) {
            __m512i ms = _mm512_setzero_si512();
            for (int i = 0; i < 4; i++) ms = _mm512_dpwssd_epi32(ms, mp[i], bcast4(xb[c] + 4 + 4 * i));
            __m512 dx = _mm512_set1_ps(ld_f32(xb[c]));
            __m512 a = _mm512_mul_ps(_mm512_mul_ps(d, dx), _mm512_cvtepi32_ps(isum[c]));
            __m512 m = _mm512_mul_ps(_mm512_mul_ps(dm, dx), _mm512_cvtepi32_ps(ms));
            acc[c] = _mm512_add_ps(acc[c], _mm512_sub_ps(a, m));
        }
    }
    for (int c = 0; c < NC; c++) store_rows(y + (size_t)c * ys, acc[c], nr);
}

/* Q6_K x Q8KS, 16 rows x NC columns: 6-bit levels u (value u - 32) from
 * the ql nibbles and qh bit pairs; per 16-element sub-block an exact dot
 * times the row's int8 scale; the offset's 32 * sum(sc * bsum16) by
 * vpdpwssd on (scale, scale) pairs; then (d*dx)*isum as the reference (its
 * "- (0*dx)*0" term never changes the sum). */
AI void q6_K_pk(size_t nsb, const uint8_t *w, int nr, const uint8_t *x, size_t xrs, float *y, size_t ys, const int NC) {
    __m512 acc[8];
    for (int c = 0; c < NC; c++) acc[c] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    for (size_t b = 0; b < nsb; b++) {
        const uint8_t *q = w + b * Q6K_PACKED_SB;
        const uint8_t *xb[8];
        for (int c = 0; c < NC; c++) xb[c] = x + (size_t)c * xrs + b * Q8KS_BLOCK;
        __m512i isum[8];
        for (int c = 0; c < NC; c++) isum[c] = _mm512_setzero_si512();
        for (int k = 0; k < 8; k++) {
            const int h = k / 4, j = k % 4;
            const uint8_t *qlp = q + 1024 * h + 512 * (j % 2), *qhp = q + 2048 + 512 * h;
            for (int l = 0; l < 7; l++) { /* 8 x 7 lines cover the 3360-byte super-block: L1 two ahead, L2 ~24 KB */
                _mm_prefetch((const char *)(uintptr_t)((uintptr_t)q + 2 * Q6K_PACKED_SB + 448 * (size_t)k + 64 * (size_t)l), _MM_HINT_T0);
                _mm_prefetch((const char *)(uintptr_t)((uintptr_t)q + PF_L2_BYTES + 448 * (size_t)k + 64 * (size_t)l), _MM_HINT_T1);
            }
            __m512i wv[8];
            for (int g = 0; g < 8; g++) {
                __m512i l = _mm512_loadu_si512((const void *)(qlp + 64 * g));
                __m512i hb = _mm512_loadu_si512((const void *)(qhp + 64 * g));
                l = _mm512_and_si512(j >= 2 ? _mm512_srli_epi16(l, 4) : l, m4);
                hb = j < 2 ? _mm512_slli_epi16(hb, 4 - 2 * j) : j == 3 ? _mm512_srli_epi16(hb, 2) : hb;
                wv[g] = _mm512_ternarylogic_epi32(l, hb, m30, 0xF8); /* l | (hb & m30) */
            }
            __m512i sc0 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(q + 3072 + 32 * k)));
            __m512i sc1 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(q + 3072 + 32 * k + 16)));
            for (int half = 0; half < 2; half++) { /* the two 16-element sub-blocks */
                __m512i t[8];
                for (int c = 0; c < NC; c++) t[c] = _mm512_setzero_si512();
                for (int g = 4 * half; g < 4 * half + 4; g++) /* columns interleaved: independent chains */
                    for (int c = 0; c < NC; c++) t[c] = _mm512_dpbusd_epi32(t[c], wv[g], bcast4(xb[c] + 52 + 32 * k + 4 * g));
                for (int c = 0; c < NC; c++) isum[c] = _mm512_add_epi32(isum[c], _mm512_mullo_epi32(t[c], half ? sc1 : sc0));
            }
        }
        __m512i sp[8];
        const __m512i lo16 = _mm512_set1_epi32(0xffff);
        for (int i = 0; i < 8; i++) {
            __m512i a = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(q + 3072 + 32 * i)));
            __m512i bb = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(q + 3072 + 32 * i + 16)));
            sp[i] = _mm512_or_si512(_mm512_and_si512(a, lo16), _mm512_slli_epi32(bb, 16));
        }
        __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(q + 3328)));
        for (int c = 0; c < NC; c++) {
            __m512i cm = _mm512_setzero_si512();
            for (int i = 0; i < 8; i++) cm = _mm512_dpwssd_epi32(cm, sp[i], bcast4(xb[c] + 20 + 4 * i));
            __m512i is = _mm512_sub_epi32(isum[c], _mm512_slli_epi32(cm, 5));
            __m512 dx = _mm512_set1_ps(ld_f32(xb[c]));
            acc[c] = _mm512_add_ps(acc[c], _mm512_mul_ps(_mm512_mul_ps(d, dx), _mm512_cvtepi32_ps(is)));
        }
    }
    for (int c = 0; c < NC; c++) store_rows(y + (size_t)c * ys, acc[c], nr);
}

#define PK_CALL_Q4K(NCV) q4_K_pk(nsb, w, nr, X + (size_t)c * xrs, xrs, y + (size_t)c * ys, ys, NCV)
void q4_K_packed_avx512(size_t nsb, const uint8_t *w, int nr, const void *x, size_t xrs, int nc, float *y, size_t ys) {
    const uint8_t *X = x;
    NC_TILES(PK_CALL_Q4K);
}

#define PK_CALL_Q6K(NCV) q6_K_pk(nsb, w, nr, X + (size_t)c * xrs, xrs, y + (size_t)c * ys, ys, NCV)
void q6_K_packed_avx512(size_t nsb, const uint8_t *w, int nr, const void *x, size_t xrs, int nc, float *y, size_t ys) {
    const uint8_t *X = x;
    NC_TILES(PK_CALL_Q6K);
}

/* ---- activations: Q8S and Q8KS rows (engine/pack.c) ------------------------
 * Decode converts one activation row per matmul on one thread while the
 * others wait, so the scalar conversion (roundf per element) was ~3% of a
 * token. These produce the scalar functions' bytes exactly: the same
 * maxima (a NaN never wins: vmaxps returns its second operand when either
 * is NaN, and the running maximum is that operand), the same products, and
 * the same rounding — Q8_0's roundf (half away from zero: truncate |v|, add
 * one when the dropped fraction, exact for |v| < 2^23, is >= 0.5) and
 * Q8_K's nearest_int (half to even, which vrndscaleps does). */

/* roundf(v) clamped to [-127, 127], NaN -> 0, as int32 lanes. */
AI __m512i round_q8_0(__m512 v) {
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    __mmask16 ord = _mm512_cmp_ps_mask(v, v, _CMP_ORD_Q);
    __m512 av = _mm512_abs_ps(v);
    __m512 t = _mm512_roundscale_ps(av, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __mmask16 up = _mm512_cmp_ps_mask(_mm512_sub_ps(av, t), half, _CMP_GE_OQ);
    t = _mm512_mask_add_ps(t, up, t, one);
    t = _mm512_min_ps(t, _mm512_set1_ps(127.0f)); /* +inf -> 127 */
    __m512i sign = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000u));
    __m512i r = _mm512_cvttps_epi32(_mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(t), sign)));
    return _mm512_maskz_mov_epi32(ord, r);
}

void q8s_from_float_avx512(const float *x, void *y, int64_t n) {
    uint8_t *p = y;
    for (int64_t b = 0; b < n / 32; b++, p += Q8S_BLOCK, x += 32) {
        __m512 a = _mm512_loadu_ps(x), c = _mm512_loadu_ps(x + 16);
        __m512 m = _mm512_max_ps(_mm512_abs_ps(a), _mm512_setzero_ps());
        m = _mm512_max_ps(_mm512_abs_ps(c), m);
        float amax = _mm512_reduce_max_ps(m);
        float d = amax / 127, id = d != 0 ? 1.0f / d : 0.0f;
        float dh = q_fp16_to_f32(q_f32_to_fp16(d));
        __m512i qa = round_q8_0(_mm512_mul_ps(a, _mm512_set1_ps(id)));
        __m512i qc = round_q8_0(_mm512_mul_ps(c, _mm512_set1_ps(id)));
        int32_t s = -_mm512_reduce_add_epi32(_mm512_add_epi32(qa, qc));
        memcpy(p, &dh, 4);
        memcpy(p + 4, &s, 4);
        _mm_storeu_si128((__m128i *)(void *)(p + 8), _mm512_cvtepi32_epi8(qa));
        _mm_storeu_si128((__m128i *)(void *)(p + 24), _mm512_cvtepi32_epi8(qc));
    }
}

void q8ks_from_float_avx512(const float *x, void *y, int64_t n) {
    uint8_t *p = y;
    for (int64_t b = 0; b < n / QK_K; b++, p += Q8KS_BLOCK, x += QK_K) {
        __m512 m = _mm512_setzero_ps();
        for (int k = 0; k < QK_K / 16; k++) m = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + 16 * k)), m);
        float amax = _mm512_reduce_max_ps(m);
        if (!(amax > 0)) {
            memset(p, 0, Q8KS_BLOCK);
            continue;
        }
        int first = 0; /* the scalar loop keeps the first element of the largest magnitude */
        for (int k = 0; k < QK_K / 16; k++) {
            __mmask16 eq = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(x + 16 * k)), _mm512_set1_ps(amax), _CMP_EQ_OQ);
            if (eq) {
                first = 16 * k + __builtin_ctz(eq);
                break;
            }
        }
        float iscale = -127.0f / x[first];
        int16_t bs[16], s32[8];
        for (int k = 0; k < QK_K / 16; k++) {
            __m512 v = _mm512_mul_ps(_mm512_set1_ps(iscale), _mm512_loadu_ps(x + 16 * k));
            __mmask16 ord = _mm512_cmp_ps_mask(v, v, _CMP_ORD_Q);
            v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            v = _mm512_max_ps(_mm512_min_ps(v, _mm512_set1_ps(127.0f)), _mm512_set1_ps(-127.0f));
            __m512i q = _mm512_maskz_mov_epi32(ord, _mm512_cvttps_epi32(v));
            bs[k] = (int16_t)_mm512_reduce_add_epi32(q);
            _mm_storeu_si128((__m128i *)(void *)(p + 52 + 16 * k), _mm512_cvtepi32_epi8(q));
        }
        for (int j = 0; j < 8; j++) s32[j] = (int16_t)(bs[2 * j] + bs[2 * j + 1]);
        float d = 1 / iscale;
        memcpy(p, &d, 4);
        memcpy(p + 4, s32, 16);
        memcpy(p + 20, bs, 32);
    }
}

#else
typedef int kern_pack_avx512_empty; /* nothing to compile off x86 */
#endif
