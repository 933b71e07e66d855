/* bandwidth.c — memory read bandwidth, the ceiling of decode speed: decoding
 * one token reads every weight once, so tokens/s <= bandwidth / model bytes. */
#include "engine/engine.h"

#include <stdlib.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

typedef struct bw_job {
    const uint64_t *buf;
    size_t n;
    uint64_t sums[64];
} bw_job;

#if defined(__x86_64__)
/* Wide loads: with scalar 8-byte loads the probe measures the core, not the
 * memory, and understates the ceiling the kernels are judged against. The
 * same L2 prefetch ~24 KB ahead as the packed kernels: without it a core
 * keeps too few misses in flight, and the packed gemv beat the probe
 * (~31 vs ~27 GB/s with two threads). */
__attribute__((target("avx2"))) static uint64_t sum_avx2(const uint64_t *p, size_t i0, size_t i1) {
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    size_t i = i0;
    for (; i + 16 <= i1; i += 16) {
        _mm_prefetch((const char *)(uintptr_t)((uintptr_t)(p + i) + 24 * 1024), _MM_HINT_T1);
        _mm_prefetch((const char *)(uintptr_t)((uintptr_t)(p + i) + 24 * 1024 + 64), _MM_HINT_T1);
        a = _mm256_add_epi64(a, _mm256_loadu_si256((const void *)(p + i)));
        b = _mm256_add_epi64(b, _mm256_loadu_si256((const void *)(p + i + 4)));
        c = _mm256_add_epi64(c, _mm256_loadu_si256((const void *)(p + i + 8)));
        d = _mm256_add_epi64(d, _mm256_loadu_si256((const void *)(p + i + 12)));
    }
    a = _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d));
    uint64_t s = (uint64_t)_mm256_extract_epi64(a, 0) + (uint64_t)_mm256_extract_epi64(a, 1) +
                 (uint64_t)_mm256_extract_epi64(a, 2) + (uint64_t)_mm256_extract_epi64(a, 3);
    for (; i < i1; i++) s += p[i];
    return s;
}
#endif

static void bw_task(void *arg, int ith, int nth) {
    bw_job *j = arg;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2")) {
        j->sums[ith & 63] = sum_avx2(j->buf, j->n * (size_t)ith / (size_t)nth, j->n * (size_t)(ith + 1) / (size_t)nth);
        return;
    }
#endif
    size_t i0 = j->n * (size_t)ith / (size_t)nth, i1 = j->n * (size_t)(ith + 1) / (size_t)nth;
    /* Four independent accumulators so the loop is bound by loads. */
    uint64_t a = 0, b = 0, c = 0, d = 0;
    size_t i = i0;
    for (; i + 4 <= i1; i += 4) {
        a += j->buf[i];
        b += j->buf[i + 1];
        c += j->buf[i + 2];
        d += j->buf[i + 3];
    }
    for (; i < i1; i++) a += j->buf[i];
    j->sums[ith & 63] = a + b + c + d;
}

double q_measure_read_bandwidth(qpool *p, size_t bytes, int reps) {
    size_t n = bytes / sizeof(uint64_t);
    uint64_t *buf = malloc(n * sizeof(uint64_t));
    if (!buf) return 0;
    for (size_t i = 0; i < n; i++) buf[i] = i; /* touch every page */
    bw_job j = {buf, n, {0}};
    double best = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = q_now();
        qpool_run(p, bw_task, &j);
        double dt = q_now() - t0;
        if (dt > 0 && (double)bytes / dt > best) best = (double)bytes / dt;
    }
    volatile uint64_t sink = j.sums[0];
    (void)sink;
    free(buf);
    return best;
}
