/* kern_f32_avx512.c — float kernels on 512-bit vectors that need a vector
 * exp: SiLU·up (the GLU's activation) and attention.
 *
 * Attention (q_attn_step) runs a cache block at a
 * time: the block's scores first (q . k, 16 lanes, F16 converted in
 * registers), one max and one rescale of the running state per block, the
 * exponentials of all its scores at once (vector exp), then the V rows
 * accumulated. The same result as the position-by-position online softmax
 * up to rounding (one rescale per block instead of one per new maximum);
 * deterministic, and a head's result depends only on its own inputs. Head
 * sizes that are not a multiple of 16 use a masked last vector (small
 * models: stories260K has 8); above 256 they take the scalar path. */
#include "engine/kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>

#define AI static inline __attribute__((always_inline))

/* e^x for x <= 0 (finite): x = n ln2 + r, |r| <= ln2/2, a degree-7 Taylor
 * polynomial for e^r (relative error < 1e-8 before rounding), times 2^n
 * with vscalefps (underflows gracefully to 0). */
AI __m512 exp512(__m512 x) {
    const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
    const __m512 ln2hi = _mm512_set1_ps(0.693359375f), ln2lo = _mm512_set1_ps(-2.12194440e-4f);
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, ln2hi, x);
    r = _mm512_fnmadd_ps(n, ln2lo, r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* g[i] = silu(g[i]) * u[i] = g[i] / (1 + e^-g[i]) * u[i], the scalar
 * q_silu's operations in its order with exp512 for expf (so within a few
 * ulp of it, not bit-equal). exp512 wants x <= 0: e^-g for g < 0 is
 * 1 / e^g, whose rounding is no worse. NaN stays NaN (g / anything);
 * e^-g overflows to inf below g = -88.7 as expf does, giving -0. */
void silu_mul_avx512(float *g, const float *u, int64_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 mk = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 x = _mm512_maskz_loadu_ps(mk, g + i);
        __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
        /* e^-|x|, then inverted where x < 0 */
        __m512 ax = _mm512_abs_ps(x);
        __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), ax));
        e = _mm512_mask_div_ps(e, neg, one, e);
        __m512 y = _mm512_mul_ps(_mm512_div_ps(x, _mm512_add_ps(one, e)), _mm512_maskz_loadu_ps(mk, u + i));
        _mm512_mask_storeu_ps(g + i, mk, y);
    }
}

/* r[p] = sum of the lanes of a[p], p < 16: a transpose-and-add tree
 * (about 3 operations per vector instead of a full reduction each). */
AI __m512 hsum16(__m512 a[16]) {
    __m512 b[8], c[4];
    for (int i = 0; i < 8; i++)
        b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[i], a[i + 8], 0x44), _mm512_shuffle_f32x4(a[i], a[i + 8], 0xee));
    for (int i = 0; i < 4; i++)
        c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[i], b[i + 4], 0x88), _mm512_shuffle_f32x4(b[i], b[i + 4], 0xdd));
    /* chunk k of c[i] holds position i + (0, 8, 4, 12)[k] */
    __m512 d0 = _mm512_add_ps(_mm512_unpacklo_ps(c[0], c[1]), _mm512_unpackhi_ps(c[0], c[1]));
    __m512 d1 = _mm512_add_ps(_mm512_unpacklo_ps(c[2], c[3]), _mm512_unpackhi_ps(c[2], c[3]));
    __m512 r = _mm512_add_ps(_mm512_shuffle_ps(d0, d1, 0x44), _mm512_shuffle_ps(d0, d1, 0xee));
    return _mm512_shuffle_f32x4(r, r, 0xd8); /* chunks 0, 2, 1, 3 */
}

AI __m512 ld16(const void *base, size_t idx, bool f16) {
    if (f16) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)((const uint16_t *)base + idx)));
    return _mm512_loadu_ps((const float *)base + idx);
}
/* The same with lanes outside mk zero (and not read: masked loads never
 * touch the masked-out elements). */
AI __m512 ld16m(const void *base, size_t idx, bool f16, __mmask16 mk) {
    if (mk == (__mmask16)0xffff) return ld16(base, idx, f16);
    if (f16) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, (const uint16_t *)base + idx));
    return _mm512_maskz_loadu_ps(mk, (const float *)base + idx);
}

/* The body of attn_block_avx512, inlined with hd a constant for the common
 * head sizes: with hd known the lane masks and vector counts fold away
 * (~1.6x faster blocks at hd 64); the operations, and so the bits, are the
 * same for every hd. */
AI void attn_block_body(const float *q, const void *k, const void *v, bool kv_f16, size_t stride, int n, int hd,
                        float scale, float *m, float *l, float *out) {
    const int nv = (hd + 15) / 16;
    /* lanes of vector i that belong to the head (all but a partial last one) */
#define LANES(i) ((i) == nv - 1 && hd % 16 ? (__mmask16)((1u << (hd % 16)) - 1) : (__mmask16)0xffff)
    __m512 qv[16], ov[16];
    for (int i = 0; i < nv; i++) qv[i] = _mm512_maskz_loadu_ps(LANES(i), q + 16 * i), ov[i] = _mm512_maskz_loadu_ps(LANES(i), out + 16 * i);
    float s[64] __attribute__((aligned(64)));
    float bm = -INFINITY;
    const __m512 sv = _mm512_set1_ps(scale);
    for (int p0 = 0; p0 < n; p0 += 16) {
        __m512 acc[16];
        for (int p = 0; p < 16; p++) {
            if (p0 + p >= n) { acc[p] = _mm512_setzero_ps(); continue; }
            size_t row = (size_t)(p0 + p) * stride;
            acc[p] = _mm512_mul_ps(qv[0], ld16m(k, row, kv_f16, LANES(0)));
            for (int i = 1; i < nv; i++) acc[p] = _mm512_fmadd_ps(qv[i], ld16m(k, row + 16 * (size_t)i, kv_f16, LANES(i)), acc[p]);
        }
        __mmask16 msk = n - p0 >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - p0)) - 1);
        __m512 sc = _mm512_mul_ps(hsum16(acc), sv);
        _mm512_mask_storeu_ps(s + p0, msk, sc);
        float mb = _mm512_mask_reduce_max_ps(msk, sc);
        bm = mb > bm ? mb : bm;
    }
    float mx = *m, sum = *l;
    if (bm > mx) { /* a new maximum: rescale what was accumulated */
        float c = expf(mx - bm);
        __m512 cv = _mm512_set1_ps(c);
        for (int i = 0; i < nv; i++) ov[i] = _mm512_mul_ps(ov[i], cv);
        sum *= c;
        mx = bm;
    }
    __m512 mv = _mm512_set1_ps(mx);
    for (int p = 0; p < n; p += 16) {
        __mmask16 msk = n - p >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - p)) - 1);
        __m512 e = _mm512_maskz_mov_ps(msk, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(msk, s + p), mv)));
        _mm512_mask_storeu_ps(s + p, msk, e);
        sum += _mm512_reduce_add_ps(e);
    }
    /* V rows; for heads up to 128 two accumulator sets (even and odd
     * positions) halve the length of the FMA dependency chains */
    if (nv <= 8) {
        __m512 o2[8];
        for (int i = 0; i < nv; i++) o2[i] = _mm512_setzero_ps();
        int p = 0;
        for (; p + 2 <= n; p += 2) {
            __m512 a = _mm512_set1_ps(s[p]), a2 = _mm512_set1_ps(s[p + 1]);
            for (int i = 0; i < nv; i++) {
                ov[i] = _mm512_fmadd_ps(a, ld16m(v, (size_t)p * stride + 16 * (size_t)i, kv_f16, LANES(i)), ov[i]);
                o2[i] = _mm512_fmadd_ps(a2, ld16m(v, (size_t)(p + 1) * stride + 16 * (size_t)i, kv_f16, LANES(i)), o2[i]);
            }
        }
        if (p < n) {
            __m512 a = _mm512_set1_ps(s[p]);
            for (int i = 0; i < nv; i++) ov[i] = _mm512_fmadd_ps(a, ld16m(v, (size_t)p * stride + 16 * (size_t)i, kv_f16, LANES(i)), ov[i]);
        }
        for (int i = 0; i < nv; i++) ov[i] = _mm512_add_ps(ov[i], o2[i]);
    } else {
        for (int p = 0; p < n; p++) {
            __m512 a = _mm512_set1_ps(s[p]);
            for (int i = 0; i < nv; i++) ov[i] = _mm512_fmadd_ps(a, ld16m(v, (size_t)p * stride + 16 * (size_t)i, kv_f16, LANES(i)), ov[i]);
        }
    }
    for (int i = 0; i < nv; i++) _mm512_mask_storeu_ps(out + 16 * i, LANES(i), ov[i]);
#undef LANES
    *m = mx;
    *l = sum;
}

void attn_block_avx512(const float *q, const void *k, const void *v, bool kv_f16, size_t stride, int n, int hd,
                       float scale, float *m, float *l, float *out) {
    if (hd > 256 || n > 64) attn_step_scalar(q, k, v, kv_f16, stride, n, hd, scale, m, l, out);
    else if (hd == 64 && kv_f16) attn_block_body(q, k, v, true, stride, n, 64, scale, m, l, out);
    else if (hd == 64) attn_block_body(q, k, v, false, stride, n, 64, scale, m, l, out);
    else if (hd == 128 && kv_f16) attn_block_body(q, k, v, true, stride, n, 128, scale, m, l, out);
    else if (hd == 128) attn_block_body(q, k, v, false, stride, n, 128, scale, m, l, out);
    else attn_block_body(q, k, v, kv_f16, stride, n, hd, scale, m, l, out);
}

/* The heads of one KV group against the same cache block: the F16 rows
 * are converted to f32 once (exactly) and every head runs the f32 path,
 * so each head's result is bit-identical to attn_block_avx512 alone. */
void attn_group_avx512(const float *q, size_t q_stride, int n_q, const void *k, const void *v, bool kv_f16, size_t stride,
                       int n, int hd, float scale, float *m, float *l, float *out, size_t out_stride,
                       const void *k_next, const void *v_next, size_t next_bytes) {
    if (!kv_f16 || n_q < 2 || hd % 16 != 0 || hd > 128 || n > 32) {
        for (int h = 0; h < n_q; h++)
            attn_block_avx512(q + h * q_stride, k, v, kv_f16, stride, n, hd, scale, m + h, l + h, out + h * out_stride);
        return;
    }
    float kf[32 * 128] __attribute__((aligned(64))), vf[32 * 128] __attribute__((aligned(64)));
    for (int p = 0; p < n; p++)
        for (int i = 0; i < hd; i += 16) {
            _mm512_store_ps(kf + p * hd + i, ld16(k, (size_t)p * stride + (size_t)i, true));
            _mm512_store_ps(vf + p * hd + i, ld16(v, (size_t)p * stride + (size_t)i, true));
        }
    /* the next block's lines, spread over the heads: a burst of them at
     * once would wait for fill buffers with the computation behind it */
    size_t lines = k_next ? (next_bytes + 63) / 64 : 0;
    for (int h = 0; h < n_q; h++) {
        for (size_t i = lines * (size_t)h / (size_t)n_q; i < lines * (size_t)(h + 1) / (size_t)n_q; i++) {
            _mm_prefetch((const char *)k_next + 64 * i, _MM_HINT_T0);
            _mm_prefetch((const char *)v_next + 64 * i, _MM_HINT_T0);
        }
        attn_block_avx512(q + h * q_stride, kf, vf, false, (size_t)hd, n, hd, scale, m + h, l + h, out + h * out_stride);
    }
}

#else
typedef int kern_attn_avx512_empty; /* nothing to compile off x86 */
#endif
