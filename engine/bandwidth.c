/* bandwidth.c — memory read bandwidth, the ceiling of decode speed: decoding
 * one token reads every weight once, so tokens/s <= bandwidth / model bytes. */
#include "engine/engine.h"

#include <stdlib.h>

typedef struct bw_job {
    const uint64_t *buf;
    size_t n;
    uint64_t sums[64];
} bw_job;

static void bw_task(void *arg, int ith, int nth) {
    bw_job *j = arg;
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
