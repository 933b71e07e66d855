/* kern_f32_avx512.c — float kernels on 512-bit vectors that need a vector
 * exp: SiLU·up (the GLU's activation) and attention.
 *
 * Attention (q_attn_block) takes a cache block of one KV head against many
 * query rows: the block converted from F16 once (three rows or more; one
 * or two convert on each load, exactly the same values), rows four at a time,
 * their scores for 16 positions per vector straight from the transposed K
 * (no reductions), one max and one rescale of a row's state per block, the
 * exponentials of its scores at once (vector exp), then the V rows
 * accumulated. The same result as the position-by-position online softmax
 * up to rounding (one rescale per block instead of one per new maximum);
 * deterministic, and a row's result depends only on its own inputs. Head
 * sizes that are not a multiple of 16 or above 256 take the scalar path. */
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

/* 16 f32 lanes at element idx of a block: F16 converted on the load (exact)
 * or f32. */
AI __m512 ld16(const void *base, size_t idx, bool f16) {
    if (f16) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)((const uint16_t *)base + idx)));
    return _mm512_loadu_ps((const float *)base + idx);
}

/* Scores of NR rows (1 or 4) for the block's first 16 * NV positions (NV
 * vectors a row), from the transposed K: two partial sums over d (even and
 * odd dimensions) per vector. A row's operations are the same whatever the
 * other rows are, so its bits are too. */
AI void attn_scores(const float *const *q, const void *K, bool f16, int hd, int NR, int NV, __m512 s[4][2]) {
    enum { B = Q_ATTN_BLOCK };
    __m512 a[4][2], b[4][2];
    for (int j = 0; j < NV; j++) {
        __m512 k0 = ld16(K, 16 * (size_t)j, f16), k1 = ld16(K, B + 16 * (size_t)j, f16);
        for (int i = 0; i < NR; i++) {
            a[i][j] = _mm512_mul_ps(_mm512_set1_ps(q[i][0]), k0);
            b[i][j] = _mm512_mul_ps(_mm512_set1_ps(q[i][1]), k1);
        }
    }
    for (int d = 2; d < hd; d += 2)
        for (int j = 0; j < NV; j++) {
            __m512 k0 = ld16(K, (size_t)d * B + 16 * j, f16), k1 = ld16(K, (size_t)(d + 1) * B + 16 * j, f16);
            for (int i = 0; i < NR; i++) {
                a[i][j] = _mm512_fmadd_ps(_mm512_set1_ps(q[i][d]), k0, a[i][j]);
                b[i][j] = _mm512_fmadd_ps(_mm512_set1_ps(q[i][d + 1]), k1, b[i][j]);
            }
        }
    for (int i = 0; i < NR; i++)
        for (int j = 0; j < NV; j++) s[i][j] = _mm512_add_ps(a[i][j], b[i][j]);
}

/* One row's softmax update and V accumulation from its scores. V rows for
 * even and odd positions go to two accumulator sets (shorter FMA chains). */
AI void attn_row_update(const __m512 sc[2], int n, const void *V, bool f16, int hd, float scale, float *mp, float *lp,
                        float *out) {
    enum { B = Q_ATTN_BLOCK };
    const int nv = hd / 16;
    __m512 s0 = _mm512_mul_ps(sc[0], _mm512_set1_ps(scale)), s1 = _mm512_setzero_ps();
    __mmask16 m0 = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
    __mmask16 m1 = n <= 16 ? (__mmask16)0 : n >= 32 ? (__mmask16)0xffff : (__mmask16)((1u << (n - 16)) - 1);
    float bm = _mm512_mask_reduce_max_ps(m0, s0);
    if (m1) {
        s1 = _mm512_mul_ps(sc[1], _mm512_set1_ps(scale));
        float b1 = _mm512_mask_reduce_max_ps(m1, s1);
        bm = b1 > bm ? b1 : bm;
    }
    __m512 ov[16], o2[16];
    for (int i = 0; i < nv; i++) ov[i] = _mm512_loadu_ps(out + 16 * i), o2[i] = _mm512_setzero_ps();
    float mx = *mp, sum = *lp;
    if (bm > mx) { /* a new maximum: rescale what was accumulated */
        float c = expf(mx - bm);
        for (int i = 0; i < nv; i++) ov[i] = _mm512_mul_ps(ov[i], _mm512_set1_ps(c));
        sum *= c;
        mx = bm;
    }
    float e[B] __attribute__((aligned(64)));
    __m512 mv = _mm512_set1_ps(mx);
    __m512 e0 = _mm512_maskz_mov_ps(m0, exp512(_mm512_sub_ps(s0, mv)));
    _mm512_store_ps(e, e0);
    sum += _mm512_reduce_add_ps(e0);
    if (m1) {
        __m512 e1 = _mm512_maskz_mov_ps(m1, exp512(_mm512_sub_ps(s1, mv)));
        _mm512_store_ps(e + 16, e1);
        sum += _mm512_reduce_add_ps(e1);
    }
    int p = 0;
    for (; p + 2 <= n; p += 2) {
        __m512 x = _mm512_set1_ps(e[p]), y = _mm512_set1_ps(e[p + 1]);
        for (int i = 0; i < nv; i++) {
            ov[i] = _mm512_fmadd_ps(x, ld16(V, (size_t)p * hd + 16 * i, f16), ov[i]);
            o2[i] = _mm512_fmadd_ps(y, ld16(V, (size_t)(p + 1) * hd + 16 * i, f16), o2[i]);
        }
    }
    if (p < n) {
        __m512 x = _mm512_set1_ps(e[p]);
        for (int i = 0; i < nv; i++) ov[i] = _mm512_fmadd_ps(x, ld16(V, (size_t)p * hd + 16 * i, f16), ov[i]);
    }
    for (int i = 0; i < nv; i++) _mm512_storeu_ps(out + 16 * i, _mm512_add_ps(ov[i], o2[i]));
    *mp = mx;
    *lp = sum;
}

/* The block for every row, inlined with hd a constant for the common head
 * sizes (the loops then unroll; the operations are the same for any hd).
 * With three rows or more an F16 block is converted to f32 once for all of
 * them (exact, so the same bits as converting on each load, which one or
 * two rows do), and rows go four at a time, the rest one at a time. The
 * next block's lines are prefetched a share per row: all at once they
 * would wait for fill buffers with the computation behind them. */
AI void attn_block_body(const q_attn_rows *R, const void *kt, const void *v, bool f16, int hd, float scale,
                        const void *kt_next, const void *v_next, size_t next_bytes) {
    enum { B = Q_ATTN_BLOCK };
    int nmax = 0;
    for (int i = 0; i < R->n; i++) nmax = R->cnt[i] > nmax ? R->cnt[i] : nmax;
    if (nmax <= 0) return;
    if (nmax > B) nmax = B;
    const int NV = nmax > 16 ? 2 : 1;
    float kb[256 * B] __attribute__((aligned(64))), vb[B * 256] __attribute__((aligned(64)));
    const void *K = kt, *V = v;
    bool kf16 = f16;
    if (f16 && R->n >= 3) {
        for (int d = 0; d < hd; d++)
            for (int j = 0; j < NV; j++) _mm512_store_ps(kb + (size_t)d * B + 16 * j, ld16(kt, (size_t)d * B + 16 * j, true));
        for (int p = 0; p < nmax; p++)
            for (int i = 0; i < hd; i += 16) _mm512_store_ps(vb + (size_t)p * hd + i, ld16(v, (size_t)p * hd + i, true));
        K = kb, V = vb, kf16 = false;
    }
    size_t lines = kt_next ? (next_bytes + 63) / 64 : 0;
    for (int r0 = 0; r0 < R->n;) {
        int nr = R->n - r0 >= 4 ? 4 : 1;
        __m512 s[4][2];
        if (nr == 4 && NV == 2) attn_scores(R->q + r0, K, kf16, hd, 4, 2, s);
        else if (nr == 4) attn_scores(R->q + r0, K, kf16, hd, 4, 1, s);
        else if (NV == 2) attn_scores(R->q + r0, K, kf16, hd, 1, 2, s);
        else attn_scores(R->q + r0, K, kf16, hd, 1, 1, s);
        for (int i = 0; i < nr; i++) {
            int r = r0 + i, n = R->cnt[r] < B ? R->cnt[r] : B;
            for (size_t x = lines * (size_t)r / (size_t)R->n; x < lines * (size_t)(r + 1) / (size_t)R->n; x++) {
                _mm_prefetch((const char *)kt_next + 64 * x, _MM_HINT_T0);
                _mm_prefetch((const char *)v_next + 64 * x, _MM_HINT_T0);
            }
            if (n > 0) attn_row_update(s[i], n, V, kf16, hd, scale, &R->m[r], &R->l[r], R->out[r]);
        }
        r0 += nr;
    }
}

void attn_block_avx512(const q_attn_rows *r, const void *kt, const void *v, bool kv_f16, int hd, float scale,
                       const void *kt_next, const void *v_next, size_t next_bytes) {
    if (hd % 16 != 0 || hd > 256) attn_block_scalar(r, kt, v, kv_f16, hd, scale);
    else if (hd == 64 && kv_f16) attn_block_body(r, kt, v, true, 64, scale, kt_next, v_next, next_bytes);
    else if (hd == 64) attn_block_body(r, kt, v, false, 64, scale, kt_next, v_next, next_bytes);
    else if (hd == 128 && kv_f16) attn_block_body(r, kt, v, true, 128, scale, kt_next, v_next, next_bytes);
    else if (hd == 128) attn_block_body(r, kt, v, false, 128, scale, kt_next, v_next, next_bytes);
    else attn_block_body(r, kt, v, kv_f16, hd, scale, kt_next, v_next, next_bytes);
}

#else
typedef int kern_f32_avx512_empty; /* nothing to compile off x86 */
#endif
