/* quant.c — the table of tensor types. Each row says how a type is laid out
 * (elements and bytes per block) and how to convert it; everything else in
 * the engine is driven from this table. */
#include "engine/engine.h"
#include "engine/kernels.h"

#include <math.h>
#include <strings.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

static void f32_to_float(const void *x, float *y, int64_t n) { memcpy(y, x, (size_t)n * sizeof(float)); }
static void f32_from_float(const float *x, void *y, int64_t n) { memcpy(y, x, (size_t)n * sizeof(float)); }

static void f16_to_float(const void *x, float *y, int64_t n) {
    const uint8_t *p = x;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        y[i] = q_fp16_to_f32(h);
    }
}
static void f16_from_float_scalar(const float *x, uint8_t *p, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = q_f32_to_fp16(x[i]);
        memcpy(p + 2 * i, &h, 2);
    }
}
#if defined(__x86_64__)
/* F16C rounds to nearest even like q_f32_to_fp16, subnormals and overflow
 * included; only NaN payloads differ, so eights holding a NaN take the
 * scalar path (the F16 KV cache store: ~12 cycles per element in software). */
__attribute__((target("avx,f16c"))) static void f16_from_float_f16c(const float *x, uint8_t *p, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))) f16_from_float_scalar(x + i, p + 2 * i, 8);
        else _mm_storeu_si128((__m128i *)(void *)(p + 2 * i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    }
    f16_from_float_scalar(x + i, p + 2 * i, n - i);
}
#endif
static void f16_from_float(const float *x, void *y, int64_t n) {
#if defined(__x86_64__)
    if (q_isa_get() != Q_ISA_SCALAR) { /* AVX2 and up include F16C */
        f16_from_float_f16c(x, y, n);
        return;
    }
#endif
    f16_from_float_scalar(x, y, n);
}
static void bf16_to_float(const void *x, float *y, int64_t n) {
    const uint8_t *p = x;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        y[i] = q_bf16_to_f32(h);
    }
}
static void bf16_from_float(const float *x, void *y, int64_t n) {
    uint8_t *p = y;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = q_f32_to_bf16(x[i]);
        memcpy(p + 2 * i, &h, 2);
    }
}


#define H2F(h) q_fp16_to_f32(h)
#define F2H(f) q_f32_to_fp16(f)

/* ------------------------------------------------------------------------ */
/* Rounding. The reference rounds with the "magic number" trick: adding
 * 1.5 * 2^23 leaves round-to-nearest-even of the value in the low mantissa
 * bits. Bit-exact quantization needs exactly this rounding (ties to even,
 * unlike roundf). Values are clamped first so that NaN/inf/huge inputs give
 * a defined, in-range result instead of undefined behaviour. */
static inline int nearest_int(float v) {
    if (!(v > -4194303.0f)) v = v != v ? 0.0f : -4194303.0f; /* NaN -> 0 */
    if (v > 4194303.0f) v = 4194303.0f;
    float t = v + 12582912.0f;
    int32_t i;
    memcpy(&i, &t, 4);
    return (i & 0x007fffff) - 0x00400000;
}
static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }
/* Truncation towards zero into int, defined for any float input. */
static inline int trunc_int(float v) {
    if (!(v > -1e6f)) return v != v ? 0 : -1000000;
    if (v > 1e6f) return 1000000;
    return (int)v;
}

/* ------------------------------------------------------------------------ */
/* Legacy 32-element blocks. */

static void q4_0_to_float(const void *x, float *y, int64_t n) {
    const uint8_t *p = x;
    for (int64_t b = 0; b < n / QK4_0; b++, p += sizeof(block_q4_0), y += QK4_0) {
        block_q4_0 blk;
        memcpy(&blk, p, sizeof blk);
        float d = H2F(blk.d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            y[j] = d * ((blk.qs[j] & 0x0f) - 8);
            y[j + QK4_0 / 2] = d * ((blk.qs[j] >> 4) - 8);
        }
    }
}

/* Symmetric 4-bit: the value of largest magnitude maps to -8 exactly (so the
 * full range -8..7 is used, with the sign chosen by that value). */
static void q4_0_from_float(const float *x, void *y, int64_t n) {
    uint8_t *p = y;
    for (int64_t b = 0; b < n / QK4_0; b++, p += sizeof(block_q4_0), x += QK4_0) {
        float amax = 0, max = 0;
        for (int j = 0; j < QK4_0; j++)
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        float d = max / -8, id = d != 0 ? 1.0f / d : 0.0f;
        block_q4_0 blk;
        blk.d = F2H(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            int q0 = imin(15, trunc_int(x[j] * id + 8.5f));
            int q1 = imin(15, trunc_int(x[j + QK4_0 / 2] * id + 8.5f));
            blk.qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
        memcpy(p, &blk, sizeof blk);
    }
}

static void q4_1_to_float(const void *x, float *y, int64_t n) {
    const uint8_t *p = x;
    for (int64_t b = 0; b < n / QK4_1; b++, p += sizeof(block_q4_1), y += QK4_1) {
        block_q4_1 blk;
        memcpy(&blk, p, sizeof blk);
        float d = H2F(blk.d), m = H2F(blk.m);
        for (int j = 0; j < QK4_1 / 2; j++) {
            y[j] = d * (blk.qs[j] & 0x0f) + m;
            y[j + QK4_1 / 2] = d * (blk.qs[j] >> 4) + m;
        }
    }
}

/* Affine 4-bit: min..max spread over 0..15. */
static void q4_1_from_float(const float *x, void *y, int64_t n) {
    uint8_t *p = y;
    for (int64_t b = 0; b < n / QK4_1; b++, p += sizeof(block_q4_1), x += QK4_1) {
        float min = x[0], max = x[0];
        for (int j = 1; j < QK4_1; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        float d = (max - min) / 15, id = d != 0 ? 1.0f / d : 0.0f;
        block_q4_1 blk;
        blk.d = F2H(d);
        blk.m = F2H(min);
        for (int j = 0; j < QK4_1 / 2; j++) {
            int q0 = imin(15, trunc_int((x[j] - min) * id + 0.5f));
            int q1 = imin(15, trunc_int((x[j + QK4_1 / 2] - min) * id + 0.5f));
            blk.qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
        memcpy(p, &blk, sizeof blk);
    }
}

static void q5_0_to_float(const void *x, float *y, int64_t n) {
    const uint8_t *p = x;
    for (int64_t b = 0; b < n / QK5_0; b++, p += sizeof(block_q5_0), y += QK5_0) {
        block_q5_0 blk;
        memcpy(&blk, p, sizeof blk);
        float d = H2F(blk.d);
        uint32_t qh = (uint32_t)blk.qh[0] | (uint32_t)blk.qh[1] << 8 | (uint32_t)blk.qh[2] << 16 | (uint32_t)blk.qh[3] << 24;
        for (int j = 0; j < QK5_0 / 2; j++) {
            int h0 = (qh >> j) & 1, h1 = (qh >> (j + QK5_0 / 2)) & 1;
            y[j] = d * (((blk.qs[j] & 0x0f) | (h0 << 4)) - 16);
            y[j + QK5_0 / 2] = d * (((blk.qs[j] >> 4) | (h1 << 4)) - 16);
        }
    }
}

static void put_qh(uint8_t qh[4], uint32_t v) {
    for (int i = 0; i < 4; i++) qh[i] = (uint8_t)(v >> (8 * i));
}

/* Symmetric 5-bit, like Q4_0 with the largest magnitude mapped to -16. */
static void q5_0_from_float(const float *x, void *y, int64_t n) {
    uint8_t *p = y;
    for (int64_t b = 0; b < n / QK5_0; b++, p += sizeof(block_q5_0), x += QK5_0) {
        float amax = 0, max = 0;
        for (int j = 0; j < QK5_0; j++)
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        float d = max / -16, id = d != 0 ? 1.0f / d : 0.0f;
        block_q5_0 blk;
        blk.d = F2H(d);
        uint32_t qh = 0;
        for (int j = 0; j < QK5_0 / 2; j++) {
            int q0 = imin(31, trunc_int(x[j] * id + 16.5f));
            int q1 = imin(31, trunc_int(x[j + QK5_0 / 2] * id + 16.5f));
            blk.qs[j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
            qh |= (uint32_t)((q0 >> 4) & 1) << j;
            qh |= (uint32_t)((q1 >> 4) & 1) << (j + QK5_0 / 2);
        }
        put_qh(blk.qh, qh);
        memcpy(p, &blk, sizeof blk);
    }
}

static void q5_1_to_float(const void *x, float *y, int64_t n) {
    const uint8_t *p = x;
    for (int64_t b = 0; b < n / QK5_1; b++, p += sizeof(block_q5_1), y += QK5_1) {
        block_q5_1 blk;
        memcpy(&blk, p, sizeof blk);
        float d = H2F(blk.d), m = H2F(blk.m);
        uint32_t qh = (uint32_t)blk.qh[0] | (uint32_t)blk.qh[1] << 8 | (uint32_t)blk.qh[2] << 16 | (uint32_t)blk.qh[3] << 24;
        for (int j = 0; j < QK5_1 / 2; j++) {
            int h0 = (qh >> j) & 1, h1 = (qh >> (j + QK5_1 / 2)) & 1;
            y[j] = d * ((blk.qs[j] & 0x0f) | (h0 << 4)) + m;
            y[j + QK5_1 / 2] = d * ((blk.qs[j] >> 4) | (h1 << 4)) + m;
        }
    }
}

/* Affine 5-bit: min..max over 0..31. (The reference does not clamp at 31
 * here; (max-min)/31 scaling keeps the rounded value <= 31 except through
 * float rounding, so we clamp, which changes nothing for finite input.) */
static void q5_1_from_float(const float *x, void *y, int64_t n) {
    uint8_t *p = y;
    for (int64_t b = 0; b < n / QK5_1; b++, p += sizeof(block_q5_1), x += QK5_1) {
        float min = x[0], max = x[0];
        for (int j = 1; j < QK5_1; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        float d = (max - min) / 31, id = d != 0 ? 1.0f / d : 0.0f;
        block_q5_1 blk;
        blk.d = F2H(d);
        blk.m = F2H(min);
        uint32_t qh = 0;
        for (int j = 0; j < QK5_1 / 2; j++) {
            int q0 = imax(0, imin(31, trunc_int((x[j] - min) * id + 0.5f)));
            int q1 = imax(0, imin(31, trunc_int((x[j + QK5_1 / 2] - min) * id + 0.5f)));
            blk.qs[j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
            qh |= (uint32_t)((q0 >> 4) & 1) << j;
            qh |= (uint32_t)((q1 >> 4) & 1) << (j + QK5_1 / 2);
        }
        put_qh(blk.qh, qh);
        memcpy(p, &blk, sizeof blk);
    }
}

static void q8_0_to_float(const void *x, float *y, int64_t n) {
    const uint8_t *p = x;
    for (int64_t b = 0; b < n / QK8_0; b++, p += sizeof(block_q8_0), y += QK8_0) {
        block_q8_0 blk;
        memcpy(&blk, p, sizeof blk);
        float d = H2F(blk.d);
        for (int j = 0; j < QK8_0; j++) y[j] = d * blk.qs[j];
    }
}

/* Symmetric 8-bit: amax maps to 127; rounding half away from zero (roundf),
 * as the reference does for this type. */
static void q8_0_from_float(const float *x, void *y, int64_t n) {
    uint8_t *p = y;
    for (int64_t b = 0; b < n / QK8_0; b++, p += sizeof(block_q8_0), x += QK8_0) {
        float amax = 0;
        for (int j = 0; j < QK8_0; j++)
            if (amax < fabsf(x[j])) amax = fabsf(x[j]);
        float d = amax / 127, id = d != 0 ? 1.0f / d : 0.0f;
        block_q8_0 blk;
        blk.d = F2H(d);
        for (int j = 0; j < QK8_0; j++) {
            float v = roundf(x[j] * id);
            blk.qs[j] = (int8_t)(v != v ? 0 : v > 127 ? 127 : v < -127 ? -127 : v);
        }
        memcpy(p, &blk, sizeof blk);
    }
}

static void q8_1_to_float(const void *x, float *y, int64_t n) {
    const uint8_t *p = x;
    for (int64_t b = 0; b < n / QK8_1; b++, p += sizeof(block_q8_1), y += QK8_1) {
        block_q8_1 blk;
        memcpy(&blk, p, sizeof blk);
        float d = H2F(blk.d);
        for (int j = 0; j < QK8_1; j++) y[j] = d * blk.qs[j];
    }
}

/* The reference's quantize_row_q8_1: as Q8_0 plus s = d * sum(q). */
void q8_1_from_float_ref(const float *x, void *y, int64_t n) {
    uint8_t *p = y;
    for (int64_t b = 0; b < n / QK8_1; b++, p += sizeof(block_q8_1), x += QK8_1) {
        float amax = 0;
        for (int j = 0; j < QK8_1; j++)
            if (amax < fabsf(x[j])) amax = fabsf(x[j]);
        float d = amax / 127, id = d != 0 ? 1.0f / d : 0.0f;
        block_q8_1 blk;
        int sum = 0;
        for (int j = 0; j < QK8_1; j++) {
            float v = roundf(x[j] * id);
            blk.qs[j] = (int8_t)(v != v ? 0 : v > 127 ? 127 : v < -127 ? -127 : v);
            sum += blk.qs[j];
        }
        blk.d = F2H(d);
        blk.s = F2H((float)sum * d);
        memcpy(p, &blk, sizeof blk);
    }
}

/* The reference's quantize_row_q8_K: the value of largest magnitude maps to
 * -127 (the scale takes its sign), f32 scale, and the sums of each 16. */
void q8_K_from_float_ref(const float *x, void *y, int64_t n) {
    uint8_t *p = y;
    for (int64_t b = 0; b < n / QK_K; b++, p += sizeof(block_q8_K), x += QK_K) {
        block_q8_K blk;
        float max = 0, amax = 0;
        for (int j = 0; j < QK_K; j++)
            if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
        if (!(amax > 0)) {
            memset(&blk, 0, sizeof blk);
        } else {
            float iscale = -127.0f / max;
            for (int j = 0; j < QK_K; j++) blk.qs[j] = (int8_t)imax(-127, imin(127, nearest_int(iscale * x[j])));
            for (int j = 0; j < QK_K / 16; j++) {
                int sum = 0;
                for (int i = 0; i < 16; i++) sum += blk.qs[16 * j + i];
                blk.bsums[j] = (int16_t)sum;
            }
            blk.d = 1 / iscale;
        }
        memcpy(p, &blk, sizeof blk);
    }
}

/* ------------------------------------------------------------------------ */
/* K-quants: dequantization. */

/* The 12 scale bytes of Q4_K/Q5_K hold eight 6-bit scales and eight 6-bit
 * mins. Sub-blocks 0-3: scale = low 6 bits of bytes 0-3, min = low 6 bits
 * of bytes 4-7. Sub-blocks 4-7: low 4 bits in the nibbles of bytes 8-11
 * (scale low, min high), top 2 bits in the spare top bits of bytes 0-3
 * (scale) and 4-7 (min). */

static void q2_K_to_float(const void *x, float *y, int64_t n) {
    const uint8_t *p = x;
    for (int64_t b = 0; b < n / QK_K; b++, p += sizeof(block_q2_K), y += QK_K) {
        block_q2_K blk;
        memcpy(&blk, p, sizeof blk);
        float d = H2F(blk.d), dmin = H2F(blk.dmin);
        for (int e = 0; e < QK_K; e++) {
            int half = e / 128, j = (e % 128) / 32, l = e % 32;
            int q = (blk.qs[32 * half + l] >> (2 * j)) & 3;
            int sc = blk.scales[e / 16];
            y[e] = d * (sc & 0x0f) * q - dmin * (sc >> 4);
        }
    }
}

/* Scale j (0..15) of a Q3_K block, 6 bits unsigned (subtract 32). */

static void q3_K_to_float(const void *x, float *y, int64_t n) {
    const uint8_t *p = x;
    for (int64_t b = 0; b < n / QK_K; b++, p += sizeof(block_q3_K), y += QK_K) {
        block_q3_K blk;
        memcpy(&blk, p, sizeof blk);
        float d = H2F(blk.d);
        float dl[QK_K / 16];
        for (int j = 0; j < QK_K / 16; j++) dl[j] = d * (q3_K_scale(blk.scales, j) - 32);
        for (int e = 0; e < QK_K; e++) {
            int half = e / 128, j = (e % 128) / 32, l = e % 32;
            int q = (blk.qs[32 * half + l] >> (2 * j)) & 3;
            int high = (blk.hmask[e % 32] >> (e / 32)) & 1;
            y[e] = dl[e / 16] * (q - (high ? 0 : 4));
        }
    }
}

static void q4_K_to_float(const void *x, float *y, int64_t n) {
    const uint8_t *p = x;
    for (int64_t b = 0; b < n / QK_K; b++, p += sizeof(block_q4_K), y += QK_K) {
        block_q4_K blk;
        memcpy(&blk, p, sizeof blk);
        float d = H2F(blk.d), dmin = H2F(blk.dmin);
        for (int i = 0; i < QK_K / 64; i++) {
            int sc, m;
            const uint8_t *q = blk.qs + 32 * i;
            scale_min_k4(2 * i, blk.scales, &sc, &m);
            float d1 = d * sc, m1 = dmin * m;
            scale_min_k4(2 * i + 1, blk.scales, &sc, &m);
            float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) y[64 * i + l] = d1 * (q[l] & 0x0f) - m1;
            for (int l = 0; l < 32; l++) y[64 * i + 32 + l] = d2 * (q[l] >> 4) - m2;
        }
    }
}

static void q5_K_to_float(const void *x, float *y, int64_t n) {
    const uint8_t *p = x;
    for (int64_t b = 0; b < n / QK_K; b++, p += sizeof(block_q5_K), y += QK_K) {
        block_q5_K blk;
        memcpy(&blk, p, sizeof blk);
        float d = H2F(blk.d), dmin = H2F(blk.dmin);
        for (int i = 0; i < QK_K / 64; i++) {
            int sc, m;
            const uint8_t *q = blk.qs + 32 * i;
            scale_min_k4(2 * i, blk.scales, &sc, &m);
            float d1 = d * sc, m1 = dmin * m;
            scale_min_k4(2 * i + 1, blk.scales, &sc, &m);
            float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) {
                int h0 = (blk.qh[l] >> (2 * i)) & 1, h1 = (blk.qh[l] >> (2 * i + 1)) & 1;
                y[64 * i + l] = d1 * ((q[l] & 0x0f) | (h0 << 4)) - m1;
                y[64 * i + 32 + l] = d2 * ((q[l] >> 4) | (h1 << 4)) - m2;
            }
        }
    }
}

static void q6_K_to_float(const void *x, float *y, int64_t n) {
    const uint8_t *p = x;
    for (int64_t b = 0; b < n / QK_K; b++, p += sizeof(block_q6_K), y += QK_K) {
        block_q6_K blk;
        memcpy(&blk, p, sizeof blk);
        float d = H2F(blk.d);
        for (int half = 0; half < 2; half++) {
            const uint8_t *ql = blk.ql + 64 * half, *qh = blk.qh + 32 * half;
            const int8_t *sc = blk.scales + 8 * half;
            float *o = y + 128 * half;
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                o[l] = d * sc[is + 0] * q1;
                o[l + 32] = d * sc[is + 2] * q2;
                o[l + 64] = d * sc[is + 4] * q3;
                o[l + 96] = d * sc[is + 6] * q4;
            }
        }
    }
}

static void q8_K_to_float(const void *x, float *y, int64_t n) {
    const uint8_t *p = x;
    for (int64_t b = 0; b < n / QK_K; b++, p += sizeof(block_q8_K), y += QK_K) {
        block_q8_K blk;
        memcpy(&blk, p, sizeof blk);
        for (int j = 0; j < QK_K; j++) y[j] = blk.d * blk.qs[j];
    }
}

/* ------------------------------------------------------------------------ */
/* K-quants: scale search. These follow the reference's default (no
 * importance matrix) quantizers step by step, including the order of float
 * operations, so that the output is bit-identical with its files. */

#define GROUP_MAX_EPS 1e-15f

/* Affine quantization of n values to 0..nmax with a weighted least-squares
 * fit of (scale, min). Starts from the plain min..max mapping, then tries
 * nstep+1 slightly different inverse scales (nmax + rmin + rdelta*is)/(max-min),
 * and for each set of levels solves the 2x2 weighted least-squares problem
 * for scale and offset; keeps whichever has the smallest weighted error
 * (squared, or absolute when use_mad). The min is forced <= 0 so that it can
 * be stored as a non-negative "dmin * m" subtracted from the value. Returns
 * the scale; *the_min receives -min (>= 0). */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                              uint8_t *Laux, float rmin, float rdelta, int nstep, bool use_mad) {
    float min = x[0], max = x[0];
    float sum_w = weights[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *the_min = -min;
        return 0.0f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)imax(0, imin(nmax, l));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * (x[i] - min));
            l = imax(0, imin(nmax, l));
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                for (int i = 0; i < n; i++) L[i] = Laux[i];
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* Symmetric levels of n values for inverse scale iscale, clamped to
 * -nmax..nmax-1, stored in L when L is not NULL; returns the x^2-weighted
 * sums sum(w*x*l) and sum(w*l*l) the scale searches compare. */
static void sym_levels(int n, int nmax, const float *x, float iscale, int8_t *L, float *sumlx, float *suml2) {
    float slx = 0, sl2 = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * x[i]);
        l = imax(-nmax, imin(nmax - 1, l));
        if (L) L[i] = (int8_t)l;
        float w = x[i] * x[i];
        slx += w * x[i] * l;
        sl2 += w * l * l;
    }
    *sumlx = slx;
    *suml2 = sl2;
}

/* The value of largest magnitude (with its sign); false when every value is
 * too small to quantize (then L is all zero). */
static bool sym_max(int n, const float *x, int8_t *L, float *max) {
    float amax = 0;
    *max = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; *max = x[i]; }
    }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return false;
    }
    return true;
}

/* Symmetric quantization of n values to -nmax..nmax-1 (stored +nmax in L),
 * weighted by x^2 (rmse_type 1): the value of largest magnitude maps to
 * -nmax, then 18 nearby inverse scales -(nmax + 0.1*is)/max are tried and
 * the one maximizing sumlx^2/suml2 (i.e. minimizing the weighted error of
 * the best scale for those levels) is kept. Returns the scale. */
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L) {
    float max, sumlx, suml2;
    if (!sym_max(n, x, L, &max)) return 0.0f;
    sym_levels(n, nmax, x, -nmax / max, L, &sumlx, &suml2);
    float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        float iscale = -(nmax + 0.1f * is) / max;
        sym_levels(n, nmax, x, iscale, NULL, &sumlx, &suml2);
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            float unused1, unused2;
            sym_levels(n, nmax, x, iscale, L, &unused1, &unused2);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return scale;
}

/* Symmetric quantization to -nmax..nmax-1 for Q3_K: start from the
 * amax-maps-to--nmax levels, then do coordinate descent (up to 5 sweeps):
 * move each level to the one that is optimal given the others, if that
 * increases sumlx^2/suml2 (weights x^2). Levels returned +nmax. */
static float make_q3_quants(int n, int nmax, const float *x, int8_t *L) {
    float max, sumlx, suml2;
    if (!sym_max(n, x, L, &max)) return 0.0f;
    sym_levels(n, nmax, x, -nmax / max, L, &sumlx, &suml2);
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int new_l = nearest_int(x[i] * sl2 / slx);
                new_l = imax(-nmax, imin(nmax - 1, new_l));
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0 ? sumlx / suml2 : 0.0f;
}

/* ------------------------------------------------------------------------ */
/* K-quants: quantizers. */

static void q2_K_from_float(const float *x, void *y, int64_t n) {
    uint8_t *p = y;
    const float q4scale = 15.0f;
    for (int64_t b = 0; b < n / QK_K; b++, p += sizeof(block_q2_K), x += QK_K) {
        uint8_t L[QK_K], Laux[16];
        float weights[16], mins[QK_K / 16], scales[QK_K / 16];
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < QK_K / 16; j++) {
            /* weight by |x|, absolute error: Q2_K is too coarse for
             * least squares to do well */
            for (int l = 0; l < 16; l++) weights[l] = fabsf(x[16 * j + l]);
            scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        block_q2_K blk;
        memset(&blk, 0, sizeof blk);
        if (max_scale > 0) {
            float iscale = q4scale / max_scale;
            for (int j = 0; j < QK_K / 16; j++) blk.scales[j] = (uint8_t)imax(0, imin(15, nearest_int(iscale * scales[j])));
            blk.d = F2H(max_scale / q4scale);
        } else {
            blk.d = F2H(0.0f);
        }
        if (max_min > 0) {
            float iscale = q4scale / max_min;
            for (int j = 0; j < QK_K / 16; j++) blk.scales[j] |= (uint8_t)(imax(0, imin(15, nearest_int(iscale * mins[j]))) << 4);
            blk.dmin = F2H(max_min / q4scale);
        } else {
            blk.dmin = F2H(0.0f);
        }
        /* Requantize with the stored (rounded) scales. */
        for (int j = 0; j < QK_K / 16; j++) {
            float d = H2F(blk.d) * (blk.scales[j] & 0x0f);
            if (d == 0) continue;
            float dm = H2F(blk.dmin) * (blk.scales[j] >> 4);
            for (int i = 0; i < 16; i++) {
                int l = nearest_int((x[16 * j + i] + dm) / d);
                L[16 * j + i] = (uint8_t)imax(0, imin(3, l));
            }
        }
        for (int j = 0; j < QK_K; j += 128)
            for (int l = 0; l < 32; l++)
                blk.qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
        memcpy(p, &blk, sizeof blk);
    }
}

static void q3_K_from_float(const float *x, void *y, int64_t n) {
    uint8_t *p = y;
    for (int64_t b = 0; b < n / QK_K; b++, p += sizeof(block_q3_K), x += QK_K) {
        int8_t L[QK_K];
        float scales[QK_K / 16];
        float max_scale = 0, amax = 0;
        for (int j = 0; j < QK_K / 16; j++) {
            scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
            float a = fabsf(scales[j]);
            if (a > amax) { amax = a; max_scale = scales[j]; }
        }
        block_q3_K blk;
        memset(&blk, 0, sizeof blk);
        if (max_scale != 0) {
            /* 6-bit signed sub-scales relative to the largest, which maps
             * to -32 (the sign of d absorbs its sign). */
            float iscale = -32.0f / max_scale;
            for (int j = 0; j < QK_K / 16; j++) {
                int l = imax(-32, imin(31, nearest_int(iscale * scales[j]))) + 32;
                if (j < 8) blk.scales[j] = (uint8_t)(l & 0x0f);
                else blk.scales[j - 8] |= (uint8_t)((l & 0x0f) << 4);
                blk.scales[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
            }
            blk.d = F2H(1 / iscale);
        } else {
            blk.d = F2H(0.0f);
        }
        for (int j = 0; j < QK_K / 16; j++) {
            float d = H2F(blk.d) * (q3_K_scale(blk.scales, j) - 32);
            if (d == 0) continue;
            for (int i = 0; i < 16; i++) {
                int l = nearest_int(x[16 * j + i] / d);
                L[16 * j + i] = (int8_t)(imax(-4, imin(3, l)) + 4);
            }
        }
        /* Bit 2 of each level goes to hmask (element e: byte e%32, bit e/32). */
        for (int e = 0; e < QK_K; e++)
            if (L[e] > 3) {
                blk.hmask[e % 32] |= (uint8_t)(1 << (e / 32));
                L[e] -= 4;
            }
        for (int j = 0; j < QK_K; j += 128)
            for (int l = 0; l < 32; l++)
                blk.qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
        memcpy(p, &blk, sizeof blk);
    }
}

/* Shared by Q4_K and Q5_K: per 32-element sub-block, fit (scale, min) with
 * weights av_x + |x| (av_x = rms of the sub-block), then quantize the eight
 * scales and eight mins to 6 bits against their maxima, and pack them. */
static void k4_scales(const float *x, int nmax, float rmin, int nstep, uint8_t L[QK_K], uint8_t packed[12],
                      uint16_t *d, uint16_t *dmin) {
    uint8_t Laux[32];
    float weights[32], mins[QK_K / 32], scales[QK_K / 32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 32; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    memset(packed, 0, 12);
    for (int j = 0; j < QK_K / 32; j++) {
        int ls = imin(63, nearest_int(inv_scale * scales[j]));
        int lm = imin(63, nearest_int(inv_min * mins[j]));
        if (j < 4) {
            packed[j] = (uint8_t)ls;
            packed[j + 4] = (uint8_t)lm;
        } else {
            packed[j + 4] = (uint8_t)((ls & 0x0f) | ((lm & 0x0f) << 4));
            packed[j - 4] |= (uint8_t)((ls >> 4) << 6);
            packed[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    *d = F2H(max_scale / 63.0f);
    *dmin = F2H(max_min / 63.0f);
}

/* Levels of sub-block j against the stored (rounded) scale and min. */
static void k4_levels(const float *x, const uint8_t packed[12], uint16_t dh, uint16_t dminh, int nmax, uint8_t *L) {
    for (int j = 0; j < QK_K / 32; j++) {
        int sc, m;
        scale_min_k4(j, packed, &sc, &m);
        float d = H2F(dh) * sc;
        if (d == 0) continue; /* keep the search's levels (they decode the same) */
        float dm = H2F(dminh) * m;
        for (int i = 0; i < 32; i++) {
            int l = nearest_int((x[32 * j + i] + dm) / d);
            L[32 * j + i] = (uint8_t)imax(0, imin(nmax, l));
        }
    }
}

static void q4_K_from_float(const float *x, void *y, int64_t n) {
    uint8_t *p = y;
    for (int64_t b = 0; b < n / QK_K; b++, p += sizeof(block_q4_K), x += QK_K) {
        block_q4_K blk;
        uint8_t L[QK_K];
        k4_scales(x, 15, -1.0f, 20, L, blk.scales, &blk.d, &blk.dmin);
        k4_levels(x, blk.scales, blk.d, blk.dmin, 15, L);
        for (int i = 0; i < QK_K / 64; i++)
            for (int l = 0; l < 32; l++)
                blk.qs[32 * i + l] = (uint8_t)(L[64 * i + l] | (L[64 * i + 32 + l] << 4));
        memcpy(p, &blk, sizeof blk);
    }
}

static void q5_K_from_float(const float *x, void *y, int64_t n) {
    uint8_t *p = y;
    for (int64_t b = 0; b < n / QK_K; b++, p += sizeof(block_q5_K), x += QK_K) {
        block_q5_K blk;
        uint8_t L[QK_K];
        k4_scales(x, 31, -0.5f, 15, L, blk.scales, &blk.d, &blk.dmin);
        k4_levels(x, blk.scales, blk.d, blk.dmin, 31, L);
        memset(blk.qh, 0, sizeof blk.qh);
        for (int i = 0; i < QK_K / 64; i++)
            for (int l = 0; l < 32; l++) {
                int l1 = L[64 * i + l], l2 = L[64 * i + 32 + l];
                if (l1 > 15) { l1 -= 16; blk.qh[l] |= (uint8_t)(1 << (2 * i)); }
                if (l2 > 15) { l2 -= 16; blk.qh[l] |= (uint8_t)(1 << (2 * i + 1)); }
                blk.qs[32 * i + l] = (uint8_t)(l1 | (l2 << 4));
            }
        memcpy(p, &blk, sizeof blk);
    }
}

static void q6_K_from_float(const float *x, void *y, int64_t n) {
    uint8_t *p = y;
    for (int64_t b = 0; b < n / QK_K; b++, p += sizeof(block_q6_K), x += QK_K) {
        int8_t L[QK_K];
        float scales[QK_K / 16];
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < QK_K / 16; ib++) {
            scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            float a = fabsf(scales[ib]);
            if (a > max_abs_scale) { max_abs_scale = a; max_scale = scales[ib]; }
        }
        block_q6_K blk;
        memset(&blk, 0, sizeof blk);
        if (max_abs_scale < GROUP_MAX_EPS) {
            blk.d = F2H(0.0f);
            memcpy(p, &blk, sizeof blk);
            continue;
        }
        /* int8 sub-scales; the largest maps to -128 (d takes the sign). */
        float iscale = -128.0f / max_scale;
        blk.d = F2H(1 / iscale);
        for (int ib = 0; ib < QK_K / 16; ib++) blk.scales[ib] = (int8_t)imin(127, nearest_int(iscale * scales[ib]));
        for (int j = 0; j < QK_K / 16; j++) {
            float d = H2F(blk.d) * blk.scales[j];
            if (d == 0) continue;
            for (int i = 0; i < 16; i++) {
                int l = nearest_int(x[16 * j + i] / d);
                L[16 * j + i] = (int8_t)(imax(-32, imin(31, l)) + 32);
            }
        }
        for (int half = 0; half < 2; half++) {
            uint8_t *ql = blk.ql + 64 * half, *qh = blk.qh + 32 * half;
            const int8_t *Lh = L + 128 * half;
            for (int l = 0; l < 32; l++) {
                int q1 = Lh[l] & 0x0f, q2 = Lh[l + 32] & 0x0f, q3 = Lh[l + 64] & 0x0f, q4 = Lh[l + 96] & 0x0f;
                ql[l] = (uint8_t)(q1 | (q3 << 4));
                ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
                qh[l] = (uint8_t)((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) | ((Lh[l + 96] >> 4) << 6));
            }
        }
        memcpy(p, &blk, sizeof blk);
    }
}

/* ------------------------------------------------------------------------ */
/* IQ4_NL: 32 elements, x = d * kvalues[q] with a fixed non-uniform table of
 * 16 levels (denser near zero); nibble order as Q4_0. The reference uses it
 * as the fallback of Q2_K/Q3_K when rows do not split into 256-blocks. */
#define QK4_NL 32
typedef struct { uint16_t d; uint8_t qs[QK4_NL / 2]; } block_iq4_nl;
_Static_assert(sizeof(block_iq4_nl) == 18, "IQ4_NL block");

static const int8_t kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static void iq4_nl_to_float(const void *x, float *y, int64_t n) {
    const uint8_t *p = x;
    for (int64_t b = 0; b < n / QK4_NL; b++, p += sizeof(block_iq4_nl), y += QK4_NL) {
        block_iq4_nl blk;
        memcpy(&blk, p, sizeof blk);
        float d = H2F(blk.d);
        for (int j = 0; j < QK4_NL / 2; j++) {
            y[j] = d * kvalues_iq4nl[blk.qs[j] & 0x0f];
            y[j + QK4_NL / 2] = d * kvalues_iq4nl[blk.qs[j] >> 4];
        }
    }
}

/* Index of the table level nearest to v (ties to the upper level, as the
 * reference's binary search does). */
static int iq4_nearest(float v) {
    if (!(v > kvalues_iq4nl[0])) return v != v ? 8 : 0;
    if (v >= kvalues_iq4nl[15]) return 15;
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (v < kvalues_iq4nl[mid]) hi = mid;
        else lo = mid;
    }
    return v - kvalues_iq4nl[hi - 1] < kvalues_iq4nl[hi] - v ? hi - 1 : hi;
}

/* The reference's default (no importance matrix) IQ4_NL quantizer: weights
 * x^2; start from "largest magnitude maps to the -127 end" and try 15 inverse
 * scales (-127 + t)/max, t = -7..7, keeping the best weighted least-squares
 * scale; then requantize against that (unrounded) scale. */
static void iq4_nl_from_float(const float *x, void *y, int64_t n) {
    uint8_t *p = y;
    const int ntry = 7;
    for (int64_t b = 0; b < n / QK4_NL; b++, p += sizeof(block_iq4_nl), x += QK4_NL) {
        float amax = 0, max = 0, d = 0;
        for (int j = 0; j < QK4_NL; j++)
            if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
        if (amax >= GROUP_MAX_EPS) {
            float id = 1 / (-max / kvalues_iq4nl[0]);
            float sumqx = 0, sumq2 = 0;
            for (int j = 0; j < QK4_NL; j++) {
                float q = kvalues_iq4nl[iq4_nearest(id * x[j])], w = x[j] * x[j];
                sumqx += w * q * x[j];
                sumq2 += w * q * q;
            }
            d = sumq2 > 0 ? sumqx / sumq2 : 1 / id; /* (weights underflow: keep the plain scale) */
            float best = d * sumqx;
            for (int t = -ntry; t <= ntry; t++) {
                id = (t + kvalues_iq4nl[0]) / max;
                sumqx = sumq2 = 0;
                for (int j = 0; j < QK4_NL; j++) {
                    float q = kvalues_iq4nl[iq4_nearest(id * x[j])], w = x[j] * x[j];
                    sumqx += w * q * x[j];
                    sumq2 += w * q * q;
                }
                if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                    d = sumqx / sumq2;
                    best = d * sumqx;
                }
            }
        }
        block_iq4_nl blk;
        blk.d = F2H(d);
        float id = d != 0 ? 1 / d : 0;
        for (int j = 0; j < QK4_NL / 2; j++)
            blk.qs[j] = (uint8_t)(iq4_nearest(id * x[j]) | (iq4_nearest(id * x[j + QK4_NL / 2]) << 4));
        memcpy(p, &blk, sizeof blk);
    }
}

static const qtype_traits traits[QT_COUNT] = {
    [QT_F32] = {"F32", 1, 4, f32_to_float, f32_from_float, QT_F32, Q_KERNELS(f32)},
    [QT_F16] = {"F16", 1, 2, f16_to_float, f16_from_float, QT_F16, Q_KERNELS(f16)},
    [QT_BF16] = {"BF16", 1, 2, bf16_to_float, bf16_from_float, QT_BF16, Q_KERNELS(bf16)},
    [QT_Q4_0] = {"Q4_0", 32, 18, q4_0_to_float, q4_0_from_float, QT_Q8_0, Q_KERNELS(q4_0)},
    [QT_Q4_1] = {"Q4_1", 32, 20, q4_1_to_float, q4_1_from_float, QT_Q8_1, Q_KERNELS(q4_1)},
    [QT_Q5_0] = {"Q5_0", 32, 22, q5_0_to_float, q5_0_from_float, QT_Q8_0, Q_KERNELS(q5_0)},
    [QT_Q5_1] = {"Q5_1", 32, 24, q5_1_to_float, q5_1_from_float, QT_Q8_1, Q_KERNELS(q5_1)},
    [QT_Q8_0] = {"Q8_0", 32, 34, q8_0_to_float, q8_0_from_float, QT_Q8_0, Q_KERNELS(q8_0)},
    [QT_Q8_1] = {"Q8_1", 32, 36, q8_1_to_float, q8_1_from_float_ref, -1, {NULL}},
    [QT_Q2_K] = {"Q2_K", QK_K, 84, q2_K_to_float, q2_K_from_float, QT_Q8_K, Q_KERNELS(q2_K)},
    [QT_Q3_K] = {"Q3_K", QK_K, 110, q3_K_to_float, q3_K_from_float, QT_Q8_K, Q_KERNELS(q3_K)},
    [QT_Q4_K] = {"Q4_K", QK_K, 144, q4_K_to_float, q4_K_from_float, QT_Q8_K, Q_KERNELS(q4_K)},
    [QT_Q5_K] = {"Q5_K", QK_K, 176, q5_K_to_float, q5_K_from_float, QT_Q8_K, Q_KERNELS(q5_K)},
    [QT_Q6_K] = {"Q6_K", QK_K, 210, q6_K_to_float, q6_K_from_float, QT_Q8_K, Q_KERNELS(q6_K)},
    [QT_Q8_K] = {"Q8_K", QK_K, 292, q8_K_to_float, q8_K_from_float_ref, -1, {NULL}},
    [QT_IQ2_XXS] = {"IQ2_XXS", QK_K, 66, NULL, NULL, -1, {NULL}},
    [QT_IQ2_XS] = {"IQ2_XS", QK_K, 74, NULL, NULL, -1, {NULL}},
    [QT_IQ3_XXS] = {"IQ3_XXS", QK_K, 98, NULL, NULL, -1, {NULL}},
    [QT_IQ1_S] = {"IQ1_S", QK_K, 50, NULL, NULL, -1, {NULL}},
    [QT_IQ4_NL] = {"IQ4_NL", 32, 18, iq4_nl_to_float, iq4_nl_from_float, -1, {NULL}},
    [QT_IQ3_S] = {"IQ3_S", QK_K, 110, NULL, NULL, -1, {NULL}},
    [QT_IQ2_S] = {"IQ2_S", QK_K, 82, NULL, NULL, -1, {NULL}},
    [QT_IQ4_XS] = {"IQ4_XS", QK_K, 136, NULL, NULL, -1, {NULL}},
    [QT_I8] = {"I8", 1, 1, NULL, NULL, -1, {NULL}},
    [QT_I16] = {"I16", 1, 2, NULL, NULL, -1, {NULL}},
    [QT_I32] = {"I32", 1, 4, NULL, NULL, -1, {NULL}},
    [QT_I64] = {"I64", 1, 8, NULL, NULL, -1, {NULL}},
    [QT_F64] = {"F64", 1, 8, NULL, NULL, -1, {NULL}},
    [QT_IQ1_M] = {"IQ1_M", QK_K, 56, NULL, NULL, -1, {NULL}},
    [QT_TQ1_0] = {"TQ1_0", QK_K, 54, NULL, NULL, -1, {NULL}},
    [QT_TQ2_0] = {"TQ2_0", QK_K, 66, NULL, NULL, -1, {NULL}},
    [QT_MXFP4] = {"MXFP4", 32, 17, NULL, NULL, -1, {NULL}},
};

const qtype_traits *qtype_get(int type) {
    if (type < 0 || type >= QT_COUNT || !traits[type].name) return NULL;
    return &traits[type];
}

int qtype_from_name(const char *name) {
    for (int t = 0; t < QT_COUNT; t++)
        if (traits[t].name && strcasecmp(traits[t].name, name) == 0) return t;
    return -1;
}

size_t qtype_row_size(int type, int64_t n) {
    const qtype_traits *t = qtype_get(type);
    if (!t || n < 0 || n % t->blck) return 0;
    return (size_t)(n / t->blck) * t->size;
}

bool qtype_is_supported(int type) {
    const qtype_traits *t = qtype_get(type);
    return t && t->to_float;
}

float qtype_dot_row(int type, const void *row, const float *x, int64_t n) {
    const qtype_traits *t = qtype_get(type);
    if (type == QT_F32) {
        const float *w = row;
        float s = 0;
        for (int64_t i = 0; i < n; i++) s += w[i] * x[i];
        return s;
    }
    /* Dequantize a chunk of blocks at a time and accumulate in f32. */
    float tmp[QK_K];
    int64_t chunk = t->blck >= QK_K ? t->blck : (QK_K / t->blck) * t->blck;
    const uint8_t *p = row;
    float s = 0;
    for (int64_t i = 0; i < n; i += chunk) {
        int64_t m = n - i < chunk ? n - i : chunk;
        t->to_float(p, tmp, m);
        p += (size_t)(m / t->blck) * t->size;
        for (int64_t j = 0; j < m; j++) s += tmp[j] * x[i + j];
    }
    return s;
}
