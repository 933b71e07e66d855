/* kern_attn_avx512.c — q_attn_step on 512-bit vectors, a cache block at a
 * time: the block's scores first (q . k, 16 lanes, F16 converted in
 * registers), one max and one rescale of the running state per block, the
 * exponentials of all its scores at once (vector exp), then the V rows
 * accumulated. The same result as the position-by-position online softmax
 * up to rounding (one rescale per block instead of one per new maximum);
 * deterministic, and a head's result depends only on its own inputs. Head
 * sizes that are not a multiple of 16 (or above 256) take the scalar path. */
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

AI __m512 ld16(const void *base, size_t idx, bool f16) {
    if (f16) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)((const uint16_t *)base + idx)));
    return _mm512_loadu_ps((const float *)base + idx);
}

void attn_block_avx512(const float *q, const void *k, const void *v, bool kv_f16, size_t stride, int n, int hd,
                       float scale, float *m, float *l, float *out) {
    if (hd % 16 != 0 || hd > 256 || n > 64) {
        attn_step_scalar(q, k, v, kv_f16, stride, n, hd, scale, m, l, out);
        return;
    }
    const int nv = hd / 16;
    __m512 qv[16], ov[16];
    for (int i = 0; i < nv; i++) qv[i] = _mm512_loadu_ps(q + 16 * i), ov[i] = _mm512_loadu_ps(out + 16 * i);
    float s[64] __attribute__((aligned(64)));
    float bm = -INFINITY;
    for (int p = 0; p < n; p++) {
        __m512 acc = _mm512_mul_ps(qv[0], ld16(k, (size_t)p * stride, kv_f16));
        for (int i = 1; i < nv; i++) acc = _mm512_fmadd_ps(qv[i], ld16(k, (size_t)p * stride + 16 * (size_t)i, kv_f16), acc);
        s[p] = _mm512_reduce_add_ps(acc) * scale;
        bm = s[p] > bm ? s[p] : bm;
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
        __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(msk, s + p), mv));
        _mm512_mask_storeu_ps(s + p, msk, e);
    }
    for (int p = 0; p < n; p++) {
        sum += s[p];
        __m512 a = _mm512_set1_ps(s[p]);
        for (int i = 0; i < nv; i++) ov[i] = _mm512_fmadd_ps(a, ld16(v, (size_t)p * stride + 16 * (size_t)i, kv_f16), ov[i]);
    }
    for (int i = 0; i < nv; i++) _mm512_storeu_ps(out + 16 * i, ov[i]);
    *m = mx;
    *l = sum;
}

#else
typedef int kern_attn_avx512_empty; /* nothing to compile off x86 */
#endif
