/* vec_dist.c — distance kernels for the vector index: scalar reference and
 * AVX2+FMA versions compiled with target attributes and chosen at run time,
 * so the binary still runs on CPUs without AVX2. */
#include "rag/rag.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define VEC_X86 1
#endif

float vec_l2sq_f32_scalar(const float *a, const float *b, size_t n) {
    float s = 0;
    for (size_t i = 0; i < n; i++) { float d = a[i] - b[i]; s += d * d; }
    return s;
}

float vec_dot_f32_scalar(const float *a, const float *b, size_t n) {
    float s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

float vec_dot_f32_i8_scalar(const float *a, const int8_t *b, size_t n) {
    float s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * (float)b[i];
    return s;
}

int32_t vec_dot_i8_scalar(const int8_t *a, const int8_t *b, size_t n) {
    int32_t s = 0;
    for (size_t i = 0; i < n; i++) s += (int32_t)a[i] * b[i];
    return s;
}

float vec_l2sq_f32_bounded_scalar(const float *a, const float *b, size_t n, float bound) {
    float s = 0;
    for (size_t i0 = 0; i0 < n; i0 += 128) {
        size_t i1 = i0 + 128 < n ? i0 + 128 : n;
        for (size_t i = i0; i < i1; i++) { float d = a[i] - b[i]; s += d * d; }
        if (s >= bound) return s;
    }
    return s;
}

void vec_l2sq_f32_rows_scalar(const float *q, const float *base, size_t d, const uint32_t *rows, size_t n, float *out) {
    for (size_t r = 0; r < n; r++) out[r] = vec_l2sq_f32_scalar(q, base + (size_t)rows[r] * d, d);
}

#ifdef VEC_X86
#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static inline float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
    return _mm_cvtss_f32(lo);
}

AVX2 static float l2sq_avx2(const float *a, const float *b, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
        __m256 d2 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16));
        __m256 d3 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24));
        s0 = _mm256_fmadd_ps(d0, d0, s0); s1 = _mm256_fmadd_ps(d1, d1, s1);
        s2 = _mm256_fmadd_ps(d2, d2, s2); s3 = _mm256_fmadd_ps(d3, d3, s3);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        s0 = _mm256_fmadd_ps(d, d, s0);
    }
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) { float d = a[i] - b[i]; s += d * d; }
    return s;
}

/* Sums of 128 elements at a time (same blocking as the scalar form); stops
 * once the partial sum reaches bound. */
AVX2 static float l2sq_bounded_avx2(const float *a, const float *b, size_t n, float bound) {
    float s = 0;
    size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
        for (size_t j = i; j < i + 128; j += 32) {
            __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j));
            __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(a + j + 8), _mm256_loadu_ps(b + j + 8));
            __m256 d2 = _mm256_sub_ps(_mm256_loadu_ps(a + j + 16), _mm256_loadu_ps(b + j + 16));
            __m256 d3 = _mm256_sub_ps(_mm256_loadu_ps(a + j + 24), _mm256_loadu_ps(b + j + 24));
            s0 = _mm256_fmadd_ps(d0, d0, s0); s1 = _mm256_fmadd_ps(d1, d1, s1);
            s2 = _mm256_fmadd_ps(d2, d2, s2); s3 = _mm256_fmadd_ps(d3, d3, s3);
        }
        s += hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
        if (s >= bound) return s;
    }
    if (i < n) s += l2sq_avx2(a + i, b + i, n - i);
    return s;
}

/* Distances from q to the listed rows of base (row length d); for short
 * rows (the projected scan's 16 coordinates) one call per block of rows
 * instead of one per row, with the next rows prefetched. */
AVX2 static void l2sq_rows_avx2(const float *q, const float *base, size_t d, const uint32_t *rows, size_t n, float *out) {
    if (d == 16) {
        __m256 q0 = _mm256_loadu_ps(q), q1 = _mm256_loadu_ps(q + 8);
        for (size_t r = 0; r < n; r++) {
            if (r + 8 < n) __builtin_prefetch(base + (size_t)rows[r + 8] * 16);
            const float *x = base + (size_t)rows[r] * 16;
            __m256 d0 = _mm256_sub_ps(q0, _mm256_loadu_ps(x)), d1 = _mm256_sub_ps(q1, _mm256_loadu_ps(x + 8));
            out[r] = hsum256(_mm256_fmadd_ps(d1, d1, _mm256_mul_ps(d0, d0)));
        }
        return;
    }
    if (d == 32) {
        __m256 q0 = _mm256_loadu_ps(q), q1 = _mm256_loadu_ps(q + 8), q2 = _mm256_loadu_ps(q + 16), q3 = _mm256_loadu_ps(q + 24);
        for (size_t r = 0; r < n; r++) {
            if (r + 8 < n) {
                const float *nx = base + (size_t)rows[r + 8] * 32;
                __builtin_prefetch(nx);
                __builtin_prefetch(nx + 16);
            }
            const float *x = base + (size_t)rows[r] * 32;
            __m256 d0 = _mm256_sub_ps(q0, _mm256_loadu_ps(x)), d1 = _mm256_sub_ps(q1, _mm256_loadu_ps(x + 8));
            __m256 d2 = _mm256_sub_ps(q2, _mm256_loadu_ps(x + 16)), d3 = _mm256_sub_ps(q3, _mm256_loadu_ps(x + 24));
            __m256 s01 = _mm256_fmadd_ps(d1, d1, _mm256_mul_ps(d0, d0));
            __m256 s23 = _mm256_fmadd_ps(d3, d3, _mm256_mul_ps(d2, d2));
            out[r] = hsum256(_mm256_add_ps(s01, s23));
        }
        return;
    }
    for (size_t r = 0; r < n; r++) {
        if (r + 4 < n) __builtin_prefetch(base + (size_t)rows[r + 4] * d);
        out[r] = l2sq_avx2(q, base + (size_t)rows[r] * d, d);
    }
}

AVX2 static float dot_avx2(const float *a, const float *b, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

AVX2 static inline __m256 i8x8_to_ps(const int8_t *p) {
    int64_t v;
    memcpy(&v, p, 8);
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(v)));
}

AVX2 static float dot_f32_i8_avx2(const float *a, const int8_t *b, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), i8x8_to_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), i8x8_to_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), i8x8_to_ps(b + i), s0);
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * (float)b[i];
    return s;
}

AVX2 static int32_t dot_i8_avx2(const int8_t *a, const int8_t *b, size_t n) {
    __m256i acc = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i x = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(a + i)));
        __m256i y = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(b + i)));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(x, y)); /* pair sums fit int32 */
    }
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    int32_t r = _mm_cvtsi128_si32(s);
    for (; i < n; i++) r += (int32_t)a[i] * b[i];
    return r;
}
#endif

typedef struct vec_kernels {
    float (*l2sq)(const float *, const float *, size_t);
    float (*l2sq_bounded)(const float *, const float *, size_t, float);
    void (*l2sq_rows)(const float *, const float *, size_t, const uint32_t *, size_t, float *);
    float (*dot)(const float *, const float *, size_t);
    float (*dot_f32_i8)(const float *, const int8_t *, size_t);
    int32_t (*dot_i8)(const int8_t *, const int8_t *, size_t);
} vec_kernels;

static const vec_kernels k_scalar = {vec_l2sq_f32_scalar, vec_l2sq_f32_bounded_scalar, vec_l2sq_f32_rows_scalar,
                                     vec_dot_f32_scalar, vec_dot_f32_i8_scalar, vec_dot_i8_scalar};
#ifdef VEC_X86
static const vec_kernels k_avx2 = {l2sq_avx2, l2sq_bounded_avx2, l2sq_rows_avx2, dot_avx2, dot_f32_i8_avx2, dot_i8_avx2};
#endif

static bool cpu_has_avx2(void) {
#ifdef VEC_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

/* Chosen once; the pointer is written before any index exists, or by
 * vec_use_simd in tests (single-threaded), so a relaxed atomic suffices. */
static const vec_kernels *g_k;

static const vec_kernels *kern(void) {
    const vec_kernels *k = __atomic_load_n(&g_k, __ATOMIC_ACQUIRE);
    if (k) return k;
#ifdef VEC_X86
    k = cpu_has_avx2() ? &k_avx2 : &k_scalar;
#else
    k = &k_scalar;
#endif
    __atomic_store_n(&g_k, k, __ATOMIC_RELEASE);
    return k;
}

bool vec_use_simd(bool on) {
    const vec_kernels *k = &k_scalar;
#ifdef VEC_X86
    if (on && cpu_has_avx2()) k = &k_avx2;
#endif
    __atomic_store_n(&g_k, k, __ATOMIC_RELEASE);
    return k != &k_scalar;
}

float vec_l2sq_f32(const float *a, const float *b, size_t n) { return kern()->l2sq(a, b, n); }
float vec_dot_f32(const float *a, const float *b, size_t n) { return kern()->dot(a, b, n); }
float vec_l2sq_f32_bounded(const float *a, const float *b, size_t n, float bound) {
    return kern()->l2sq_bounded(a, b, n, bound);
}
void vec_l2sq_f32_rows(const float *q, const float *base, size_t d, const uint32_t *rows, size_t n, float *out) {
    kern()->l2sq_rows(q, base, d, rows, n, out);
}
float vec_dot_f32_i8(const float *a, const int8_t *b, size_t n) { return kern()->dot_f32_i8(a, b, n); }
int32_t vec_dot_i8(const int8_t *a, const int8_t *b, size_t n) { return kern()->dot_i8(a, b, n); }
