/* kern_neon.c — dot kernels for ARMv8.2-A with the dot-product extension
 * (sdot): Q4_0, Q8_0 (x Q8_0) and F16 (x F16); other types use the scalar
 * kernels. Built with -march=armv8.2-a+dotprod+fp16 on aarch64 only and
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
#else
typedef int quire_kern_neon_unused;
#endif
