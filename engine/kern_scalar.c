/* kern_scalar.c — the scalar dot kernels: the readable reference that every
 * SIMD kernel is tested against. Weights stay in their stored type and the
 * activations come already converted to the type's vec_dot_type (8-bit
 * blocks like the reference implementation, or the float type itself); each
 * block's products are summed exactly in integers and scaled once. */
#include "engine/kernels.h"

#include <math.h>

#define H2F(h) q_fp16_to_f32(h)

/* ------------------------------------------------------------------------ */
/* Float weights: f32 sums in element order. */
float f32_dot_scalar(int64_t n, const void *w, const void *x) {
    const float *a = w, *b = x;
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

float f16_dot_scalar(int64_t n, const void *w, const void *x) {
    const uint8_t *a = w, *b = x;
    float s = 0;
    for (int64_t i = 0; i < n; i++) {
        uint16_t u, v;
        memcpy(&u, a + 2 * i, 2);
        memcpy(&v, b + 2 * i, 2);
        s += q_fp16_to_f32(u) * q_fp16_to_f32(v);
    }
    return s;
}

float bf16_dot_scalar(int64_t n, const void *w, const void *x) {
    const uint8_t *a = w, *b = x;
    float s = 0;
    for (int64_t i = 0; i < n; i++) {
        uint16_t u, v;
        memcpy(&u, a + 2 * i, 2);
        memcpy(&v, b + 2 * i, 2);
        s += q_bf16_to_f32(u) * q_bf16_to_f32(v);
    }
    return s;
}

/* ------------------------------------------------------------------------ */
/* 32-element blocks against Q8_0 / Q8_1 activations. */
float q4_0_dot_scalar(int64_t n, const void *w, const void *x) {
    const uint8_t *pw = w, *px = x;
    float s = 0;
    for (int64_t b = 0; b < n / 32; b++, pw += sizeof(block_q4_0), px += sizeof(block_q8_0)) {
        block_q4_0 W;
        block_q8_0 X;
        memcpy(&W, pw, sizeof W);
        memcpy(&X, px, sizeof X);
        int sumi = 0;
        for (int j = 0; j < 16; j++)
            sumi += ((W.qs[j] & 0x0f) - 8) * X.qs[j] + ((W.qs[j] >> 4) - 8) * X.qs[j + 16];
        s += (float)sumi * (H2F(W.d) * H2F(X.d));
    }
    return s;
}

float q4_1_dot_scalar(int64_t n, const void *w, const void *x) {
    const uint8_t *pw = w, *px = x;
    float s = 0;
    for (int64_t b = 0; b < n / 32; b++, pw += sizeof(block_q4_1), px += sizeof(block_q8_1)) {
        block_q4_1 W;
        block_q8_1 X;
        memcpy(&W, pw, sizeof W);
        memcpy(&X, px, sizeof X);
        int sumi = 0;
        for (int j = 0; j < 16; j++) sumi += (W.qs[j] & 0x0f) * X.qs[j] + (W.qs[j] >> 4) * X.qs[j + 16];
        /* x = d*q + m, and s = dx * sum(qx): the min contributes m * s. */
        s += (float)sumi * (H2F(W.d) * H2F(X.d)) + H2F(W.m) * H2F(X.s);
    }
    return s;
}

/* The 5-bit value of element j of a Q5 block. */
static inline int q5_value(const uint8_t qs[16], uint32_t qh, int j) {
    int lo = j < 16 ? qs[j] & 0x0f : qs[j - 16] >> 4;
    return lo | (int)(((qh >> j) & 1) << 4);
}

float q5_0_dot_scalar(int64_t n, const void *w, const void *x) {
    const uint8_t *pw = w, *px = x;
    float s = 0;
    for (int64_t b = 0; b < n / 32; b++, pw += sizeof(block_q5_0), px += sizeof(block_q8_0)) {
        block_q5_0 W;
        block_q8_0 X;
        memcpy(&W, pw, sizeof W);
        memcpy(&X, px, sizeof X);
        uint32_t qh;
        memcpy(&qh, W.qh, 4);
        int sumi = 0;
        for (int j = 0; j < 32; j++) sumi += (q5_value(W.qs, qh, j) - 16) * X.qs[j];
        s += (float)sumi * (H2F(W.d) * H2F(X.d));
    }
    return s;
}

float q5_1_dot_scalar(int64_t n, const void *w, const void *x) {
    const uint8_t *pw = w, *px = x;
    float s = 0;
    for (int64_t b = 0; b < n / 32; b++, pw += sizeof(block_q5_1), px += sizeof(block_q8_1)) {
        block_q5_1 W;
        block_q8_1 X;
        memcpy(&W, pw, sizeof W);
        memcpy(&X, px, sizeof X);
        uint32_t qh;
        memcpy(&qh, W.qh, 4);
        int sumi = 0;
        for (int j = 0; j < 32; j++) sumi += q5_value(W.qs, qh, j) * X.qs[j];
        s += (float)sumi * (H2F(W.d) * H2F(X.d)) + H2F(W.m) * H2F(X.s);
    }
    return s;
}

float q8_0_dot_scalar(int64_t n, const void *w, const void *x) {
    const uint8_t *pw = w, *px = x;
    float s = 0;
    for (int64_t b = 0; b < n / 32; b++, pw += sizeof(block_q8_0), px += sizeof(block_q8_0)) {
        block_q8_0 W, X;
        memcpy(&W, pw, sizeof W);
        memcpy(&X, px, sizeof X);
        int sumi = 0;
        for (int j = 0; j < 32; j++) sumi += W.qs[j] * X.qs[j];
        s += (float)sumi * (H2F(W.d) * H2F(X.d));
    }
    return s;
}

/* ------------------------------------------------------------------------ */
/* K-quants against Q8_K. Each super-block is unpacked into its integer
 * levels q[256] and per-16 scale sc[16] and min mn[16]; then
 *   isum = sum_k sc[k] * sum_{i<16} q[16k+i] * xq[16k+i]   (exact)
 *   msum = sum_k mn[k] * bsums[k]                         (exact)
 * and the block adds (d*dx) * isum - (dmin*dx) * msum. The SIMD kernels
 * compute the same integers and the same float expression, so for the
 * K-quants they agree with this reference bit for bit. */
typedef struct kblock {
    int8_t q[QK_K];
    int sc[16], mn[16];
    float d, dmin;
} kblock;

static float kblock_dot(const kblock *k, const uint8_t *px) {
    block_q8_K X;
    memcpy(&X, px, sizeof X);
    int isum = 0, msum = 0;
    for (int s = 0; s < 16; s++) {
        int dot = 0;
        for (int i = 0; i < 16; i++) dot += k->q[16 * s + i] * X.qs[16 * s + i];
        isum += k->sc[s] * dot;
        msum += k->mn[s] * X.bsums[s];
    }
    return (k->d * X.d) * (float)isum - (k->dmin * X.d) * (float)msum;
}

static void unpack_q2_K(const uint8_t *p, kblock *k) {
    block_q2_K B;
    memcpy(&B, p, sizeof B);
    /* element n + 32j + l (n = 0, 128) is bits 2j..2j+1 of qs[n/4 + l] */
    for (int n = 0; n < QK_K; n += 128)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++) k->q[n + 32 * j + l] = (int8_t)((B.qs[n / 4 + l] >> (2 * j)) & 3);
    for (int s = 0; s < 16; s++) k->sc[s] = B.scales[s] & 0x0f, k->mn[s] = B.scales[s] >> 4;
    k->d = H2F(B.d);
    k->dmin = H2F(B.dmin);
}

static void unpack_q3_K(const uint8_t *p, kblock *k) {
    block_q3_K B;
    memcpy(&B, p, sizeof B);
    for (int n = 0; n < QK_K; n += 128)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++) {
                int e = n + 32 * j + l;
                int hi = (B.hmask[l] >> (e / 32)) & 1;
                k->q[e] = (int8_t)(((B.qs[n / 4 + l] >> (2 * j)) & 3) - (hi ? 0 : 4));
            }
    for (int s = 0; s < 16; s++) k->sc[s] = q3_K_scale(B.scales, s) - 32, k->mn[s] = 0;
    k->d = H2F(B.d);
    k->dmin = 0;
}

static void unpack_q4_K(const uint8_t *p, kblock *k) {
    block_q4_K B;
    memcpy(&B, p, sizeof B);
    for (int i = 0; i < 4; i++)
        for (int l = 0; l < 32; l++) {
            k->q[64 * i + l] = (int8_t)(B.qs[32 * i + l] & 0x0f);
            k->q[64 * i + 32 + l] = (int8_t)(B.qs[32 * i + l] >> 4);
        }
    for (int j = 0; j < 8; j++) {
        int sc, m;
        scale_min_k4(j, B.scales, &sc, &m);
        k->sc[2 * j] = k->sc[2 * j + 1] = sc;
        k->mn[2 * j] = k->mn[2 * j + 1] = m;
    }
    k->d = H2F(B.d);
    k->dmin = H2F(B.dmin);
}

static void unpack_q5_K(const uint8_t *p, kblock *k) {
    block_q5_K B;
    memcpy(&B, p, sizeof B);
    for (int i = 0; i < 4; i++)
        for (int l = 0; l < 32; l++) {
            k->q[64 * i + l] = (int8_t)((B.qs[32 * i + l] & 0x0f) | (((B.qh[l] >> (2 * i)) & 1) << 4));
            k->q[64 * i + 32 + l] = (int8_t)((B.qs[32 * i + l] >> 4) | (((B.qh[l] >> (2 * i + 1)) & 1) << 4));
        }
    for (int j = 0; j < 8; j++) {
        int sc, m;
        scale_min_k4(j, B.scales, &sc, &m);
        k->sc[2 * j] = k->sc[2 * j + 1] = sc;
        k->mn[2 * j] = k->mn[2 * j + 1] = m;
    }
    k->d = H2F(B.d);
    k->dmin = H2F(B.dmin);
}

static void unpack_q6_K(const uint8_t *p, kblock *k) {
    block_q6_K B;
    memcpy(&B, p, sizeof B);
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = B.ql + 64 * h, *qh = B.qh + 32 * h;
        int8_t *q = k->q + 128 * h;
        for (int l = 0; l < 32; l++) {
            q[l] = (int8_t)(((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32);
            q[l + 32] = (int8_t)(((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32);
            q[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            q[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
    }
    for (int s = 0; s < 16; s++) k->sc[s] = B.scales[s], k->mn[s] = 0;
    k->d = H2F(B.d);
    k->dmin = 0;
}

#define KQUANT_DOT(t)                                                                  \
    float t##_dot_scalar(int64_t n, const void *w, const void *x) {                    \
        const uint8_t *pw = w, *px = x;                                                \
        float s = 0;                                                                   \
        for (int64_t b = 0; b < n / QK_K; b++) {                                       \
            kblock k;                                                                  \
            unpack_##t(pw + (size_t)b * sizeof(block_##t), &k);                        \
            s += kblock_dot(&k, px + (size_t)b * sizeof(block_q8_K));                  \
        }                                                                              \
        return s;                                                                      \
    }
KQUANT_DOT(q2_K)
KQUANT_DOT(q3_K)
KQUANT_DOT(q4_K)
KQUANT_DOT(q5_K)
KQUANT_DOT(q6_K)

/* ------------------------------------------------------------------------ */
/* The tile entry points: every output is one single dot product. */
#define SCALAR_GEMM(t)                                                                                          \
    void t##_gemm_scalar(int64_t n, const void *w, size_t wrs, int nr, const void *x, size_t xrs, int nc, float *y, \
                         size_t ys) {                                                                           \
        for (int c = 0; c < nc; c++)                                                                            \
            for (int r = 0; r < nr; r++)                                                                        \
                y[(size_t)c * ys + r] = t##_dot_scalar(n, (const uint8_t *)w + (size_t)r * wrs,                  \
                                                       (const uint8_t *)x + (size_t)c * xrs);                   \
    }
Q_KERNEL_LIST(SCALAR_GEMM)

/* ------------------------------------------------------------------------ */
/* Attention: one block, row by row (see q_attn_block): the reference. */
void attn_block_scalar(const q_attn_rows *r, const void *kt, const void *v, bool kv_f16, int hd, float scale) {
    const uint16_t *kh = kt, *vh = v;
    const float *kf = kt, *vf = v;
    for (int i = 0; i < r->n; i++) {
        int n = r->cnt[i];
        if (n <= 0) continue;
        if (n > Q_ATTN_BLOCK) n = Q_ATTN_BLOCK;
        const float *q = r->q[i];
        float *out = r->out[i], s[Q_ATTN_BLOCK], bm = -INFINITY;
        for (int p = 0; p < n; p++) {
            float acc = 0;
            for (int d = 0; d < hd; d++)
                acc += q[d] * (kv_f16 ? q_fp16_to_f32(kh[d * Q_ATTN_BLOCK + p]) : kf[d * Q_ATTN_BLOCK + p]);
            s[p] = acc * scale;
            if (s[p] > bm) bm = s[p];
        }
        if (bm > r->m[i]) { /* a new maximum: rescale what was accumulated */
            float c = expf(r->m[i] - bm);
            for (int d = 0; d < hd; d++) out[d] *= c;
            r->l[i] *= c;
            r->m[i] = bm;
        }
        for (int p = 0; p < n; p++) {
            float a = expf(s[p] - r->m[i]);
            r->l[i] += a;
            for (int d = 0; d < hd; d++) out[d] += a * (kv_f16 ? q_fp16_to_f32(vh[p * hd + d]) : vf[p * hd + d]);
        }
    }
}
