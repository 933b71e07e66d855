/* kern_neon.c — dot kernels for ARMv8.2-A with the dot-product extension
 * (sdot): Q4_0, Q5_0, Q8_0 (x Q8_0), Q4_1, Q5_1 (x Q8_1), the K-quants
 * Q2_K..Q6_K (x Q8_K) and F16 (x F16); F32/BF16 use the scalar kernels. Built with -march=armv8.2-a+dotprod+fp16 on aarch64 only and
 * called only when HWCAP_ASIMDDP is set. Each output is one 1x1 dot product
 * (no register tiling yet), so tiles are trivially the single-dot bits. */
#if defined(__aarch64__)
#include <arm_neon.h>

#include "engine/kernels.h"

static inline float ld_f16n(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return q_fp16_to_f32(h);
}

static float q4_0_dot_neon(int64_t n, const uint8_t *w, const uint8_t *x) {
    float32x4_t acc = vdupq_n_f32(0);
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    const int8x16_t eight = vdupq_n_s8(8);
    for (int64_t b = 0; b < n / 32; b++, w += sizeof(block_q4_0), x += sizeof(block_q8_0)) {
        uint8x16_t q = vld1q_u8(w + 2);
        int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, m4)), eight);
        int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), eight);
        int32x4_t p = vdotq_s32(vdotq_s32(vdupq_n_s32(0), lo, vld1q_s8((const int8_t *)(x + 2))), hi,
                                vld1q_s8((const int8_t *)(x + 18)));
        acc = vfmaq_f32(acc, vcvtq_f32_s32(p), vdupq_n_f32(ld_f16n(w) * ld_f16n(x)));
    }
    return vaddvq_f32(acc);
}

static float q8_0_dot_neon(int64_t n, const uint8_t *w, const uint8_t *x) {
    float32x4_t acc = vdupq_n_f32(0);
    for (int64_t b = 0; b < n / 32; b++, w += sizeof(block_q8_0), x += sizeof(block_q8_0)) {
        int32x4_t p = vdotq_s32(vdupq_n_s32(0), vld1q_s8((const int8_t *)(w + 2)), vld1q_s8((const int8_t *)(x + 2)));
        p = vdotq_s32(p, vld1q_s8((const int8_t *)(w + 18)), vld1q_s8((const int8_t *)(x + 18)));
        acc = vfmaq_f32(acc, vcvtq_f32_s32(p), vdupq_n_f32(ld_f16n(w) * ld_f16n(x)));
    }
    return vaddvq_f32(acc);
}

static float f16_dot_neon(int64_t n, const uint8_t *w, const uint8_t *x) {
    float32x4_t acc = vdupq_n_f32(0);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t a = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)(const void *)(w + 2 * i))));
        float32x4_t b = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)(const void *)(x + 2 * i))));
        acc = vfmaq_f32(acc, a, b);
    }
    float s = vaddvq_f32(acc);
    for (; i < n; i++) s += ld_f16n(w + 2 * i) * ld_f16n(x + 2 * i);
    return s;
}

/* Q4_1 / Q5_1 x Q8_1 and Q5_0 x Q8_0: the integer sum with sdot (levels
 * 0..31 fit in int8), then the scalar reference's float expression per
 * block. */
static inline int8x16_t q5_hi_bits(const uint8_t qh[4], int half) {
    /* byte l of the result = 0x10 where bit 16*half + l of qh is set */
    const uint8x16_t bits = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    uint8x16_t b = vcombine_u8(vdup_n_u8(qh[2 * half]), vdup_n_u8(qh[2 * half + 1]));
    return vreinterpretq_s8_u8(vandq_u8(vtstq_u8(b, bits), vdupq_n_u8(0x10)));
}

static inline int32_t blk32_dot(const uint8_t *qs, const uint8_t *qh, const int8_t *xq, int off) {
    uint8x16_t q = vld1q_u8(qs);
    int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0f)));
    int8x16_t hi = vreinterpretq_s8_u8(vshrq_n_u8(q, 4));
    if (qh) lo = vorrq_s8(lo, q5_hi_bits(qh, 0)), hi = vorrq_s8(hi, q5_hi_bits(qh, 1));
    if (off) lo = vsubq_s8(lo, vdupq_n_s8((int8_t)off)), hi = vsubq_s8(hi, vdupq_n_s8((int8_t)off));
    return vaddvq_s32(vdotq_s32(vdotq_s32(vdupq_n_s32(0), lo, vld1q_s8(xq)), hi, vld1q_s8(xq + 16)));
}

static float q4_1_dot_neon(int64_t n, const uint8_t *w, const uint8_t *x) {
    float s = 0;
    for (int64_t b = 0; b < n / 32; b++, w += sizeof(block_q4_1), x += sizeof(block_q8_1)) {
        int sumi = blk32_dot(w + 4, NULL, (const int8_t *)(x + 4), 0);
        s += (float)sumi * (ld_f16n(w) * ld_f16n(x)) + ld_f16n(w + 2) * ld_f16n(x + 2);
    }
    return s;
}

static float q5_1_dot_neon(int64_t n, const uint8_t *w, const uint8_t *x) {
    float s = 0;
    for (int64_t b = 0; b < n / 32; b++, w += sizeof(block_q5_1), x += sizeof(block_q8_1)) {
        int sumi = blk32_dot(w + 8, w + 4, (const int8_t *)(x + 4), 0);
        s += (float)sumi * (ld_f16n(w) * ld_f16n(x)) + ld_f16n(w + 2) * ld_f16n(x + 2);
    }
    return s;
}

static float q5_0_dot_neon(int64_t n, const uint8_t *w, const uint8_t *x) {
    float s = 0;
    for (int64_t b = 0; b < n / 32; b++, w += sizeof(block_q5_0), x += sizeof(block_q8_0)) {
        int sumi = blk32_dot(w + 6, w + 2, (const int8_t *)(x + 2), 16);
        s += (float)sumi * (ld_f16n(w) * ld_f16n(x));
    }
    return s;
}

/* K-quants x Q8_K: each super-block unpacked with vector operations into
 * the scalar reference's form (int8 levels q[256], scales and mins per 16),
 * then isum = sum sc[s] * sdot(q, x) over 16-element sub-blocks and
 * msum = sum mn[s] * bsums[s] — the reference's integers and its float
 * expression, so the results are the scalar kernels' bit for bit. */
typedef struct kblock_n {
    int8_t q[QK_K];
    int sc[16], mn[16];
    float d, dmin;
} kblock_n;

static float kblock_dot_neon(const kblock_n *k, const uint8_t *px) {
    float dx;
    memcpy(&dx, px, 4);
    const int8_t *xq = (const int8_t *)(px + 4);
    int16_t bs[16];
    memcpy(bs, px + 4 + QK_K, sizeof bs);
    int isum = 0, msum = 0;
    for (int s = 0; s < 16; s++) {
        int dot = vaddvq_s32(vdotq_s32(vdupq_n_s32(0), vld1q_s8(k->q + 16 * s), vld1q_s8(xq + 16 * s)));
        isum += k->sc[s] * dot;
        msum += k->mn[s] * bs[s];
    }
    return (k->d * dx) * (float)isum - (k->dmin * dx) * (float)msum;
}

static inline uint8x16_t bitsel(uint8x16_t v, int shift, uint8_t mask) {
    return vandq_u8(vshlq_u8(v, vdupq_n_s8((int8_t)-shift)), vdupq_n_u8(mask));
}

static void unpack_q2_K_n(const uint8_t *p, kblock_n *k) {
    block_q2_K B;
    memcpy(&B, p, sizeof B);
    for (int n = 0; n < QK_K; n += 128)
        for (int h = 0; h < 2; h++) {
            uint8x16_t v = vld1q_u8(B.qs + n / 4 + 16 * h);
            for (int j = 0; j < 4; j++) vst1q_s8(k->q + n + 32 * j + 16 * h, vreinterpretq_s8_u8(bitsel(v, 2 * j, 3)));
        }
    for (int s = 0; s < 16; s++) k->sc[s] = B.scales[s] & 0x0f, k->mn[s] = B.scales[s] >> 4;
    k->d = q_fp16_to_f32(B.d);
    k->dmin = q_fp16_to_f32(B.dmin);
}

static void unpack_q3_K_n(const uint8_t *p, kblock_n *k) {
    block_q3_K B;
    memcpy(&B, p, sizeof B);
    for (int n = 0; n < QK_K; n += 128)
        for (int h = 0; h < 2; h++) {
            uint8x16_t v = vld1q_u8(B.qs + n / 4 + 16 * h), hm = vld1q_u8(B.hmask + 16 * h);
            for (int j = 0; j < 4; j++) {
                /* level - 4 unless the high bit (n/32 + j) of hmask[l] is set */
                int8x16_t lv = vreinterpretq_s8_u8(bitsel(v, 2 * j, 3));
                int8x16_t four = vreinterpretq_s8_u8(vbicq_u8(vdupq_n_u8(4), vtstq_u8(hm, vdupq_n_u8((uint8_t)(1u << (n / 32 + j))))));
                vst1q_s8(k->q + n + 32 * j + 16 * h, vsubq_s8(lv, four));
            }
        }
    for (int s = 0; s < 16; s++) k->sc[s] = q3_K_scale(B.scales, s) - 32, k->mn[s] = 0;
    k->d = q_fp16_to_f32(B.d);
    k->dmin = 0;
}

static void unpack_q4_K_n(const uint8_t *p, kblock_n *k) {
    block_q4_K B;
    memcpy(&B, p, sizeof B);
    for (int i = 0; i < 4; i++)
        for (int h = 0; h < 2; h++) {
            uint8x16_t v = vld1q_u8(B.qs + 32 * i + 16 * h);
            vst1q_s8(k->q + 64 * i + 16 * h, vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f))));
            vst1q_s8(k->q + 64 * i + 32 + 16 * h, vreinterpretq_s8_u8(vshrq_n_u8(v, 4)));
        }
    for (int j = 0; j < 8; j++) {
        int sc, m;
        scale_min_k4(j, B.scales, &sc, &m);
        k->sc[2 * j] = k->sc[2 * j + 1] = sc;
        k->mn[2 * j] = k->mn[2 * j + 1] = m;
    }
    k->d = q_fp16_to_f32(B.d);
    k->dmin = q_fp16_to_f32(B.dmin);
}

static void unpack_q5_K_n(const uint8_t *p, kblock_n *k) {
    block_q5_K B;
    memcpy(&B, p, sizeof B);
    for (int i = 0; i < 4; i++)
        for (int h = 0; h < 2; h++) {
            uint8x16_t v = vld1q_u8(B.qs + 32 * i + 16 * h), qh = vld1q_u8(B.qh + 16 * h);
            uint8x16_t lo = vorrq_u8(vandq_u8(v, vdupq_n_u8(0x0f)), vshlq_n_u8(bitsel(qh, 2 * i, 1), 4));
            uint8x16_t hi = vorrq_u8(vshrq_n_u8(v, 4), vshlq_n_u8(bitsel(qh, 2 * i + 1, 1), 4));
            vst1q_s8(k->q + 64 * i + 16 * h, vreinterpretq_s8_u8(lo));
            vst1q_s8(k->q + 64 * i + 32 + 16 * h, vreinterpretq_s8_u8(hi));
        }
    for (int j = 0; j < 8; j++) {
        int sc, m;
        scale_min_k4(j, B.scales, &sc, &m);
        k->sc[2 * j] = k->sc[2 * j + 1] = sc;
        k->mn[2 * j] = k->mn[2 * j + 1] = m;
    }
    k->d = q_fp16_to_f32(B.d);
    k->dmin = q_fp16_to_f32(B.dmin);
}

static void unpack_q6_K_n(const uint8_t *p, kblock_n *k) {
    block_q6_K B;
    memcpy(&B, p, sizeof B);
    const int8x16_t t32 = vdupq_n_s8(32);
    for (int hh = 0; hh < 2; hh++) {
        const uint8_t *ql = B.ql + 64 * hh, *qh = B.qh + 32 * hh;
        int8_t *q = k->q + 128 * hh;
        for (int h = 0; h < 2; h++) {
            uint8x16_t a = vld1q_u8(ql + 16 * h), b = vld1q_u8(ql + 32 + 16 * h), c = vld1q_u8(qh + 16 * h);
            uint8x16_t m4 = vdupq_n_u8(0x0f);
            uint8x16_t v0 = vorrq_u8(vandq_u8(a, m4), vshlq_n_u8(bitsel(c, 0, 3), 4));
            uint8x16_t v1 = vorrq_u8(vandq_u8(b, m4), vshlq_n_u8(bitsel(c, 2, 3), 4));
            uint8x16_t v2 = vorrq_u8(vshrq_n_u8(a, 4), vshlq_n_u8(bitsel(c, 4, 3), 4));
            uint8x16_t v3 = vorrq_u8(vshrq_n_u8(b, 4), vshlq_n_u8(bitsel(c, 6, 3), 4));
            vst1q_s8(q + 16 * h, vsubq_s8(vreinterpretq_s8_u8(v0), t32));
            vst1q_s8(q + 32 + 16 * h, vsubq_s8(vreinterpretq_s8_u8(v1), t32));
            vst1q_s8(q + 64 + 16 * h, vsubq_s8(vreinterpretq_s8_u8(v2), t32));
            vst1q_s8(q + 96 + 16 * h, vsubq_s8(vreinterpretq_s8_u8(v3), t32));
        }
    }
    for (int s = 0; s < 16; s++) k->sc[s] = B.scales[s], k->mn[s] = 0;
    k->d = q_fp16_to_f32(B.d);
    k->dmin = 0;
}

#define KQ_DOT_NEON(t)                                                                    \
    static float t##_dot_neon(int64_t n, const uint8_t *w, const uint8_t *x) {             \
        float s = 0;                                                                      \
        for (int64_t b = 0; b < n / QK_K; b++) {                                          \
            kblock_n k;                                                                   \
            unpack_##t##_n(w + (size_t)b * sizeof(block_##t), &k);                        \
            s += kblock_dot_neon(&k, x + (size_t)b * sizeof(block_q8_K));                 \
        }                                                                                 \
        return s;                                                                         \
    }
KQ_DOT_NEON(q2_K)
KQ_DOT_NEON(q3_K)
KQ_DOT_NEON(q4_K)
KQ_DOT_NEON(q5_K)
KQ_DOT_NEON(q6_K)

#define NEON_GEMM(t)                                                                                          \
    void t##_gemm_neon(int64_t n, const void *w, size_t wrs, int nr, const void *x, size_t xrs, int nc, float *y, \
                       size_t ys) {                                                                           \
        for (int c = 0; c < nc; c++)                                                                          \
            for (int r = 0; r < nr; r++)                                                                      \
                y[(size_t)c * ys + r] =                                                                       \
                    t##_dot_neon(n, (const uint8_t *)w + (size_t)r * wrs, (const uint8_t *)x + (size_t)c * xrs); \
    }
NEON_GEMM(q4_0)
NEON_GEMM(q8_0)
NEON_GEMM(f16)
NEON_GEMM(q4_1)
NEON_GEMM(q5_0)
NEON_GEMM(q5_1)
NEON_GEMM(q2_K)
NEON_GEMM(q3_K)
NEON_GEMM(q4_K)
NEON_GEMM(q5_K)
NEON_GEMM(q6_K)
#else
typedef int quire_kern_neon_unused;
#endif
