/* bench_kernels.c — micro-benchmarks of the dot kernels (never part of the
 * pass/fail tests). For each weight type and available ISA: matrix-vector
 * (decode: weight GB/s) and matrix-matrix with a batch of 64 (prefill:
 * GOP/s, 2 ops per multiply-add), through q_matmul on a pool of -t threads;
 * "+pk": the same with weights repacked (q_pack) where the ISA has kernels.
 * --ring N: the packed gemv also runs over N distinct packed copies in one
 * arena, one after another (as decode walks a model's matrices), so a small
 * matrix is read from DRAM, not from cache: per-matmul overheads show there.
 * usage: bench_kernels [-t THREADS] [-r ROWS] [-c COLS] [-b BATCH] [--ring N] [TYPE...] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/engine.h"

int main(int argc, char **argv) {
    int threads = 1, rows = 4096, cols = 2048, batch = 64, ring = 0;
    const char *only[32];
    int n_only = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) rows = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-c") && i + 1 < argc) cols = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-b") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ring") && i + 1 < argc) ring = atoi(argv[++i]);
        else if (n_only < 32) only[n_only++] = argv[i];
    }
    const int types[] = {QT_F32, QT_F16, QT_BF16, QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1, QT_Q8_0,
                         QT_Q2_K, QT_Q3_K, QT_Q4_K, QT_Q5_K, QT_Q6_K};
    qpool *pool = qpool_new(threads);
    float *x = malloc((size_t)batch * cols * sizeof(float)), *y = malloc((size_t)batch * rows * sizeof(float));
    qrng r;
    qrng_seed(&r, 1);
    for (size_t i = 0; i < (size_t)batch * cols; i++) x[i] = qrng_uniform(&r) - 0.5f;
    printf("%d x %d weights, batch %d, %d thread(s); best of 5 runs\n", rows, cols, batch, threads);
    printf("%-6s %-10s %10s %10s %12s\n", "type", "isa", "MiB", "gemv GB/s", "gemm GOP/s");
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        int t = types[ti];
        const qtype_traits *tr = qtype_get(t);
        if (n_only) {
            int hit = 0;
            for (int k = 0; k < n_only; k++) hit |= !strcasecmp(only[k], tr->name);
            if (!hit) continue;
        }
        size_t rb = qtype_row_size(t, cols);
        uint8_t *w = malloc(rb * rows);
        float *row = malloc((size_t)cols * sizeof(float));
        for (int i = 0; i < 64 && i < rows; i++) {
            for (int j = 0; j < cols; j++) row[j] = qrng_uniform(&r) - 0.5f;
            tr->from_float(row, w + rb * i, cols);
        }
        for (int i = 64; i < rows; i++) memcpy(w + rb * i, w + rb * (i % 64), rb);
        for (int isa = 0; isa <= Q_ISA_COUNT; isa++) {
            /* the last round: the current best ISA with packed weights */
            q_packed *P = NULL;
            if (isa == Q_ISA_COUNT) {
                q_isa_init(NULL);
                qerr e;
                if (!q_pack_supported(t, q_isa_get()) || !(P = q_pack(w, t, rows, cols, &e))) continue;
            } else {
                if (!q_isa_available(isa)) continue;
                q_isa_set(isa, NULL);
            }
            double best_v = 1e30, best_m = 1e30;
            for (int rep = 0; rep < 5; rep++) {
                double t0 = q_now();
                for (int k = 0; k < 4; k++) q_matmul_packed(pool, w, P, t, rows, cols, x, 1, y);
                double t1 = q_now();
                q_matmul_packed(pool, w, P, t, rows, cols, x, batch, y);
                double t2 = q_now();
                if ((t1 - t0) / 4 < best_v) best_v = (t1 - t0) / 4;
                if (t2 - t1 < best_m) best_m = t2 - t1;
                if (isa == Q_ISA_SCALAR && rep == 1) break; /* slow; two runs */
            }
            char label[24];
            snprintf(label, sizeof label, "%s%s", q_isa_name(q_isa_get()), P ? "+pk" : "");
            printf("%-6s %-10s %10.1f %10.2f %12.1f\n", tr->name, label, rb * rows / 1048576.0,
                   rb * rows / best_v / 1e9, 2.0 * rows * cols * batch / best_m / 1e9);
            fflush(stdout);
            if (P && ring > 1) {
                size_t sz = q_pack_size(t, rows, cols);
                uint8_t *arena = q_huge_alloc(sz * (size_t)ring);
                q_packed **R = calloc((size_t)ring, sizeof *R);
                qerr e;
                for (int k = 0; arena && R && k < ring; k++) R[k] = q_pack_into(w, t, rows, cols, arena + sz * (size_t)k, &e);
                double best = 1e30;
                for (int rep = 0; arena && R && rep < 5; rep++) {
                    double t0 = q_now();
                    for (int k = 0; k < ring; k++) q_matmul_packed(pool, w, R[k], t, rows, cols, x, 1, y);
                    double t1 = q_now();
                    if (t1 - t0 < best) best = t1 - t0;
                }
                printf("%-6s %-10s %10.1f %10.2f   (ring of %d, %.1f us per matmul)\n", tr->name, "ring", rb * rows * (double)ring / 1048576.0,
                       rb * rows * (double)ring / best / 1e9, ring, best / ring * 1e6);
                for (int k = 0; R && k < ring; k++) q_packed_free(R[k]);
                free(R);
                free(arena);
            }
            q_packed_free(P);
        }
        free(w);
        free(row);
    }
    free(x);
    free(y);
    qpool_free(pool);
    return 0;
}
