/* test_kernels.c — every dot kernel against the scalar reference, on random
 * rows of every supported length class, for every ISA this machine runs:
 *  - the scalar integer-dot kernels equal an f64 dot of the same quantized
 *    values (dequantized weights x dequantized activations);
 *  - each SIMD kernel equals the scalar kernel within 1e-5 of sum|w*x|
 *    (K-quants: bit for bit, they share the scalar float expression);
 *  - any tile shape gives the 1x1 kernel's result bit for bit;
 *  - q_matmul gives, for batch sizes 1..17 and 1..3 threads, exactly the
 *    single-input result (batch and thread invariance).
 * A plain C driver (no cmocka) so that it also runs cross-compiled under
 * qemu (scripts/test-neon.sh); prints "N passed, N failed". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/kernels.h"

static int n_pass, n_fail;
static void check(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(int ok, const char *fmt, ...) {
    if (ok) { n_pass++; return; }
    n_fail++;
    if (n_fail > 30) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

static const int types[] = {QT_F32, QT_F16, QT_BF16, QT_Q4_0, QT_Q4_1, QT_Q5_0, QT_Q5_1, QT_Q8_0,
                            QT_Q2_K, QT_Q3_K, QT_Q4_K, QT_Q5_K, QT_Q6_K};
#define N_TYPES (int)(sizeof types / sizeof *types)

static qrng rng;
static void rand_row(float *x, int64_t n, int kind) {
    for (int64_t i = 0; i < n; i++) {
        float u = qrng_uniform(&rng) * 2 - 1;
        x[i] = kind == 0 ? u : kind == 1 ? u * u * u * 30.0f : (i % 97 == 5 ? 50 * u : u * 0.01f);
    }
}

/* Quantizes nrows random rows of n elements into type t. */
static uint8_t *make_rows(int t, int64_t n, int nrows, int kind) {
    size_t rb = qtype_row_size(t, n);
    uint8_t *q = malloc(rb * (size_t)nrows + 64);
    float *x = malloc((size_t)n * sizeof(float));
    for (int r = 0; r < nrows; r++) {
        rand_row(x, n, kind);
        qtype_get(t)->from_float(x, q + (size_t)r * rb, n);
    }
    free(x);
    return q;
}

static double f64_dot(int wt, const void *w, int xt, const void *x, int64_t n, double *mag) {
    float *a = malloc((size_t)n * sizeof(float)), *b = malloc((size_t)n * sizeof(float));
    qtype_get(wt)->to_float(w, a, n);
    qtype_get(xt)->to_float(x, b, n);
    double s = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        s += (double)a[i] * b[i];
        m += fabs((double)a[i] * b[i]);
    }
    if (xt == QT_Q8_1) {
        /* Q8_1 keeps s = dx * sum(q) rounded to f16, and the dot uses it for
         * the weights' min: the exact value of the same stored numbers is
         * sum((w - m) x) + m * s. */
        s = 0;
        size_t wb = qtype_get(wt)->size;
        for (int64_t blk = 0; blk < n / 32; blk++) {
            uint16_t mh, sh;
            memcpy(&mh, (const uint8_t *)w + blk * wb + 2, 2);
            memcpy(&sh, (const uint8_t *)x + blk * 36 + 2, 2);
            double mm = q_fp16_to_f32(mh), ss = q_fp16_to_f32(sh);
            for (int i = 0; i < 32; i++) s += ((double)a[blk * 32 + i] - mm) * b[blk * 32 + i];
            s += mm * ss;
        }
    }
    free(a);
    free(b);
    *mag = m;
    return s;
}

static bool is_kquant(int t) { return t >= QT_Q2_K && t <= QT_Q6_K; }

static void test_type(int t, int64_t n, int kind) {
    const qtype_traits *tr = qtype_get(t);
    int vt = tr->vec_dot_type;
    size_t wrs = qtype_row_size(t, n), xrs = qtype_row_size(vt, n);
    enum { R = 8, C = 8 };
    uint8_t *w = make_rows(t, n, R, kind), *x = make_rows(vt, n, C, kind);
    float ref[C][R];
    double mag[C][R];
    tr->gemm[Q_ISA_SCALAR](n, w, wrs, R, x, xrs, C, &ref[0][0], R);
    for (int c = 0; c < C; c++)
        for (int r = 0; r < R; r++) {
            double m, d = f64_dot(t, w + r * wrs, vt, x + c * xrs, n, &m);
            mag[c][r] = m;
            check(fabs(d - ref[c][r]) <= 1e-5 * m + 1e-30, "%s n=%lld scalar %g vs f64 %g", tr->name, (long long)n,
                  ref[c][r], d);
        }
    for (int isa = 0; isa < Q_ISA_COUNT; isa++) {
        if (!q_isa_available(isa) || !tr->gemm[isa]) continue;
        float one[C][R], tile[C][R];
        for (int c = 0; c < C; c++)
            for (int r = 0; r < R; r++) tr->gemm[isa](n, w + r * wrs, wrs, 1, x + c * xrs, xrs, 1, &one[c][r], 1);
        for (int c = 0; c < C; c++)
            for (int r = 0; r < R; r++) {
                if (is_kquant(t))
                    check(one[c][r] == ref[c][r], "%s %s n=%lld kind %d: %.9g != scalar %.9g", tr->name, q_isa_name(isa),
                          (long long)n, kind, one[c][r], ref[c][r]);
                else
                    check(fabs(one[c][r] - ref[c][r]) <= 1e-5 * mag[c][r] + 1e-30, "%s %s n=%lld: %.9g vs scalar %.9g",
                          tr->name, q_isa_name(isa), (long long)n, one[c][r], ref[c][r]);
            }
        /* every tile shape up to 4 x 4, at every offset: the 1x1 bits */
        for (int nr = 1; nr <= R; nr++)
            for (int nc = 1; nc <= C; nc++) {
                memset(tile, 0, sizeof tile);
                tr->gemm[isa](n, w, wrs, nr, x, xrs, nc, &tile[0][0], R);
                int same = 1;
                for (int c = 0; c < nc; c++)
                    for (int r = 0; r < nr; r++) same &= memcmp(&tile[c][r], &one[c][r], sizeof(float)) == 0;
                check(same, "%s %s n=%lld: tile %dx%d differs from 1x1", tr->name, q_isa_name(isa), (long long)n, nr, nc);
            }
    }
    free(w);
    free(x);
}

/* q_matmul: batch sizes 1..17 and 1..3 threads give the single-input bits. */
static void test_matmul_invariance(int t, int64_t n) {
    const int rows = 9, maxb = 17;
    size_t rb = qtype_row_size(t, n);
    uint8_t *w = make_rows(t, n, rows, 0);
    float *x = malloc((size_t)maxb * n * sizeof(float));
    rand_row(x, (int64_t)maxb * n, 0);
    float *single = malloc((size_t)maxb * rows * sizeof(float)), *y = malloc((size_t)maxb * rows * sizeof(float));
    (void)rb;
    for (int isa = 0; isa < Q_ISA_COUNT; isa++) {
        if (!q_isa_available(isa)) continue;
        q_isa_set(isa, NULL);
        qpool *p1 = qpool_new(1);
        for (int b = 0; b < maxb; b++) q_matmul(p1, w, t, rows, n, x + b * n, 1, single + b * rows);
        for (int th = 1; th <= 3; th++) {
            qpool *p = qpool_new(th);
            for (int nb = 1; nb <= maxb; nb++) {
                q_matmul(p, w, t, rows, n, x, nb, y);
                check(memcmp(y, single, (size_t)nb * rows * sizeof(float)) == 0,
                      "%s %s: q_matmul batch %d threads %d differs from single inputs", qtype_get(t)->name,
                      q_isa_name(isa), nb, th);
            }
            qpool_free(p);
        }
        /* q_matmul_multi: the same bits as separate q_matmul calls */
        q_matmul_op ops[2] = {{w, t, rows, y, NULL, NULL}, {w, t, 4, y + (size_t)maxb * rows, NULL, NULL}};
        float *y2 = malloc((size_t)maxb * (rows + 4) * sizeof(float));
        ops[1].y = y2;
        qpool *p = qpool_new(2);
        q_matmul_multi(p, ops, 2, n, x, 5);
        check(memcmp(y, single, (size_t)5 * rows * sizeof(float)) == 0, "%s %s: q_matmul_multi op 0", qtype_get(t)->name,
              q_isa_name(isa));
        int same = 1;
        for (int b = 0; b < 5; b++) same &= memcmp(y2 + b * 4, single + b * rows, 4 * sizeof(float)) == 0;
        check(same, "%s %s: q_matmul_multi op 1", qtype_get(t)->name, q_isa_name(isa));
        free(y2);
        qpool_free(p);
        qpool_free(p1);
    }
    free(w); free(x); free(single); free(y);
}

/* Packed weights: q_matmul_packed gives the unpacked kernels' bits for row
 * counts around the 16-row groups, batch sizes 1..19 and 1..3 threads; and
 * q_matmul_glu equals silu(gate) * up computed from separate matmuls. */
static void test_packed(int t) {
    const int64_t n = qtype_get(t)->blck == 32 ? 96 : 512;
    const int row_counts[] = {1, 15, 16, 17, 40};
    const int maxb = 19;
    float *x = malloc((size_t)maxb * n * sizeof(float));
    rand_row(x, (int64_t)maxb * n, 1);
    for (int isa = 0; isa < Q_ISA_COUNT; isa++) {
        if (!q_isa_available(isa) || !q_pack_supported(t, isa)) continue;
        q_isa_set(isa, NULL);
        for (int ri = 0; ri < (int)(sizeof row_counts / sizeof *row_counts); ri++) {
            int rows = row_counts[ri];
            uint8_t *w = make_rows(t, n, rows, ri % 3);
            qerr e;
            q_packed *P = q_pack(w, t, rows, n, &e);
            check(P != NULL, "%s %s: q_pack %d rows failed", qtype_get(t)->name, q_isa_name(isa), rows);
            if (!P) { free(w); continue; }
            float *ref = malloc((size_t)maxb * rows * sizeof(float)), *y = malloc((size_t)maxb * rows * sizeof(float));
            qpool *p1 = qpool_new(1);
            q_matmul(p1, w, t, rows, n, x, maxb, ref);
            for (int th = 1; th <= 3; th++) {
                qpool *p = qpool_new(th);
                for (int nb = 1; nb <= maxb; nb++) {
                    memset(y, 0, (size_t)maxb * rows * sizeof(float));
                    q_matmul_packed(p, w, P, t, rows, n, x, nb, y);
                    check(memcmp(y, ref, (size_t)nb * rows * sizeof(float)) == 0,
                          "%s %s packed: %d rows batch %d threads %d differ from unpacked", qtype_get(t)->name,
                          q_isa_name(isa), rows, nb, th);
                }
                qpool_free(p);
            }
            /* GLU, packed and not: silu(gate) * up of the separate results */
            float *g = malloc((size_t)maxb * rows * sizeof(float)), *u = malloc((size_t)maxb * rows * sizeof(float));
            for (int packed = 0; packed < 2; packed++) {
                qpool *p = qpool_new(2);
                q_matmul_op go = {w, t, rows, g, packed ? P : NULL, NULL}, uo = {w, t, rows, u, packed ? P : NULL, NULL};
                q_matmul_glu(p, &go, &uo, n, NULL, x, 7);
                float *want = malloc((size_t)7 * rows * sizeof(float));
                memcpy(want, ref, (size_t)7 * rows * sizeof(float));
                q_silu_mul(want, ref, 7 * rows);
                int same = memcmp(g, want, (size_t)7 * rows * sizeof(float)) == 0;
                free(want);
                check(same, "%s %s glu packed=%d %d rows", qtype_get(t)->name, q_isa_name(isa), packed, rows);
                qpool_free(p);
            }
            /* RMSNorm inside the job: the bits of q_rmsnorm + q_matmul */
            {
                float *nw = malloc((size_t)n * sizeof(float)), *xn = malloc((size_t)maxb * n * sizeof(float));
                float *xo = malloc((size_t)maxb * n * sizeof(float));
                for (int64_t i = 0; i < n; i++) nw[i] = 0.5f + (float)(i % 7) * 0.25f;
                for (int b = 0; b < maxb; b++) q_rmsnorm(xn + b * n, x + b * n, nw, n, 1e-5f);
                float *want = malloc((size_t)maxb * rows * sizeof(float));
                q_matmul(p1, w, t, rows, n, xn, maxb, want);
                qpool *p = qpool_new(3);
                q_rms_in in = {x, nw, 1e-5f};
                q_matmul_op op = {w, t, rows, y, P, NULL};
                q_matmul_multi_rms(p, &op, 1, n, &in, xo, maxb);
                check(memcmp(y, want, (size_t)maxb * rows * sizeof(float)) == 0 &&
                          memcmp(xo, xn, (size_t)maxb * n * sizeof(float)) == 0,
                      "%s %s: q_matmul_multi_rms %d rows", qtype_get(t)->name, q_isa_name(isa), rows);
                qpool_free(p);
                free(nw); free(xn); free(xo); free(want);
            }
            /* A residual stream in the job: acc += y, the bits of a loop after it */
            for (int packed = 0; packed < 2; packed++) {
                float *acc = malloc((size_t)maxb * rows * sizeof(float)), *want = malloc((size_t)maxb * rows * sizeof(float));
                rand_row(acc, (int64_t)maxb * rows, 5);
                for (int i = 0; i < maxb * rows; i++) want[i] = acc[i] + ref[i];
                qpool *p = qpool_new(3);
                q_matmul_op op = {w, t, rows, y, packed ? P : NULL, acc};
                q_matmul_multi(p, &op, 1, n, x, maxb);
                check(memcmp(acc, want, (size_t)maxb * rows * sizeof(float)) == 0 &&
                          memcmp(y, ref, (size_t)maxb * rows * sizeof(float)) == 0,
                      "%s %s: acc += matmul, packed=%d %d rows", qtype_get(t)->name, q_isa_name(isa), packed, rows);
                qpool_free(p);
                free(acc); free(want);
            }
            free(g); free(u);
            qpool_free(p1);
            free(ref); free(y);
            q_packed_free(P);
            free(w);
        }
    }
    free(x);
    /* Unsupported type or shape: an error, not a crash. */
    qerr e;
    uint8_t dummy[64] = {0};
    check(q_pack(dummy, QT_F32, 1, 16, &e) == NULL, "q_pack F32 accepted");
}

static void test_repack_env(void) {
    qerr e;
    const char *old = getenv("QUIRE_REPACK");
    char *saved = old ? strdup(old) : NULL;
    setenv("QUIRE_REPACK", "off", 1);
    check(q_repack_mode(&e) == 0, "QUIRE_REPACK=off");
    setenv("QUIRE_REPACK", "1", 1);
    check(q_repack_mode(&e) == 1, "QUIRE_REPACK=1");
    setenv("QUIRE_REPACK", "maybe", 1);
    check(q_repack_mode(&e) == -1, "QUIRE_REPACK=maybe accepted");
    if (saved) setenv("QUIRE_REPACK", saved, 1);
    else unsetenv("QUIRE_REPACK");
    free(saved);
}

/* n positions of random K and V for one head, as cache blocks of
 * Q_ATTN_BLOCK: K transposed, V by position; F16 copies as well. Unused
 * cells of the last block hold junk (as a truncated cache does). */
typedef struct attn_data {
    int hd, n, nb;
    float *kf, *vf;
    uint16_t *kh, *vh;
} attn_data;

static attn_data attn_data_new(int hd, int n, uint64_t seed) {
    attn_data a = {hd, n, (n + Q_ATTN_BLOCK - 1) / Q_ATTN_BLOCK, NULL, NULL, NULL, NULL};
    size_t cells = (size_t)a.nb * Q_ATTN_BLOCK * hd;
    a.kf = malloc(cells * sizeof(float)), a.vf = malloc(cells * sizeof(float));
    a.kh = malloc(cells * 2), a.vh = malloc(cells * 2);
    rand_row(a.kf, (int64_t)cells, (int)seed);
    rand_row(a.vf, (int64_t)cells, (int)seed + 1);
    size_t blk = (size_t)Q_ATTN_BLOCK * hd;
    for (size_t i = 0; i < cells; i++) {
        a.kf[i] *= 4;
        /* junk in the cells beyond n never counts */
        if ((int)(i / blk * Q_ATTN_BLOCK + i % blk % Q_ATTN_BLOCK) >= n) a.kf[i] = 3e4f;
        if ((int)(i / blk * Q_ATTN_BLOCK + i % blk / (size_t)hd) >= n) a.vf[i] = -5e4f;
        a.kh[i] = q_f32_to_fp16(a.kf[i]), a.vh[i] = q_f32_to_fp16(a.vf[i]);
        a.kf[i] = q_fp16_to_f32(a.kh[i]), a.vf[i] = q_fp16_to_f32(a.vh[i]); /* the same values in both */
    }
    return a;
}
static void attn_data_free(attn_data *a) { free(a->kf); free(a->vf); free(a->kh); free(a->vh); }

/* Rows [0, nr) against every block of a: row r sees positions < lim[r].
 * Blocks in order, every row's state carried across them, as the model
 * does; out normalised at the end. */
static void attn_run(const attn_data *a, bool f16, int nr, const float *const *q, float *const *out, const int *lim,
                     bool hints) {
    float m[64], l[64];
    int cnt[64];
    for (int r = 0; r < nr; r++) m[r] = -INFINITY, l[r] = 0, memset(out[r], 0, (size_t)a->hd * sizeof(float));
    size_t blk = (size_t)Q_ATTN_BLOCK * a->hd, es = f16 ? 2 : 4;
    const uint8_t *K = f16 ? (const void *)a->kh : (const void *)a->kf, *V = f16 ? (const void *)a->vh : (const void *)a->vf;
    for (int b = 0; b < a->nb; b++) {
        for (int r = 0; r < nr; r++) {
            int k = lim[r] - b * Q_ATTN_BLOCK;
            cnt[r] = k < 0 ? 0 : k < Q_ATTN_BLOCK ? k : Q_ATTN_BLOCK;
        }
        q_attn_rows rows = {nr, q, out, m, l, cnt};
        bool nx = hints && b + 1 < a->nb;
        q_attn_block(&rows, K + b * blk * es, V + b * blk * es, f16, a->hd, 0.3f, nx ? K + (b + 1) * blk * es : NULL,
                     nx ? V + (b + 1) * blk * es : NULL, blk * es);
    }
    for (int r = 0; r < nr; r++)
        for (int d = 0; d < a->hd; d++) out[r][d] /= l[r];
}

/* q_attn_block: every ISA against the scalar reference, F16 and F32, head
 * sizes with and without a vector tail, lengths over block edges. */
static void test_attention(void) {
    const int hds[] = {8, 12, 64, 80, 128}, lens[] = {1, 5, 16, 17, 33, 100};
    int saved = q_isa_get();
    for (int hi = 0; hi < 5; hi++)
        for (int li = 0; li < 6; li++)
            for (int f16 = 0; f16 < 2; f16++) {
                int hd = hds[hi], n = lens[li];
                attn_data a = attn_data_new(hd, n, (uint64_t)(hi * 10 + li));
                float q[128], ref[128], got[128];
                rand_row(q, hd, 3);
                const float *qs[1] = {q};
                for (int isa = 0; isa < Q_ISA_COUNT; isa++) {
                    if (!q_isa_available(isa)) continue;
                    q_isa_set(isa, NULL);
                    float *o[1] = {isa == 0 ? ref : got};
                    attn_run(&a, f16, 1, qs, o, &n, isa % 2 == 0);
                    if (isa == 0) continue;
                    double err = 0;
                    for (int d = 0; d < hd; d++) err = fmax(err, fabs(got[d] - ref[d]));
                    check(err <= 1e-5, "attention %s hd %d n %d f16 %d: max error %g", q_isa_name(isa), hd, n, f16, err);
                }
                attn_data_free(&a);
            }
    q_isa_set(saved, NULL);
}

/* A row's result is the same bits whether it is computed alone or with
 * other rows (any number, any limits, some seeing nothing of a block), with
 * or without prefetch hints: prefill, batched decode and decode agree. */
static void test_attention_rows(void) {
    const int hds[] = {64, 128, 48};
    int saved = q_isa_get();
    for (int hi = 0; hi < 3; hi++)
        for (int f16 = 0; f16 < 2; f16++) {
            int hd = hds[hi], n = 75, nr = 11;
            attn_data a = attn_data_new(hd, n, (uint64_t)(7 + hi));
            float *qb = malloc((size_t)nr * hd * sizeof(float)), *ob = malloc((size_t)nr * hd * sizeof(float));
            float one[128];
            rand_row(qb, (int64_t)nr * hd, 9);
            const float *qs[11];
            float *os[11];
            int lim[11] = {75, 1, 33, 32, 0, 64, 70, 2, 17, 75, 40};
            for (int r = 0; r < nr; r++) qs[r] = qb + (size_t)r * hd, os[r] = ob + (size_t)r * hd;
            for (int isa = 0; isa < Q_ISA_COUNT; isa++) {
                if (!q_isa_available(isa)) continue;
                q_isa_set(isa, NULL);
                attn_run(&a, f16, nr, qs, os, lim, true);
                int bad = -1;
                for (int r = 0; r < nr && bad < 0; r++) {
                    if (lim[r] == 0) continue; /* 0/0: no positions, nothing to compare */
                    float *o1[1] = {one};
                    attn_run(&a, f16, 1, &qs[r], o1, &lim[r], false);
                    if (memcmp(one, os[r], (size_t)hd * sizeof(float)) != 0) bad = r;
                }
                check(bad < 0, "attention rows %s hd %d f16 %d: row %d differs alone", q_isa_name(isa), hd, f16, bad);
            }
            free(qb); free(ob);
            attn_data_free(&a);
        }
    q_isa_set(saved, NULL);
}

/* q_silu_mul of every ISA against q_silu * u: random values at several
 * magnitudes, every tail length, and the edges (±0, ±inf, NaN, overflow of
 * e^-g near -88.7, denormals). Within 4e-7 relative (a few ulp), or both
 * below 1e-37; NaN where the scalar gives NaN, the same sign of zero. */
static void test_silu_mul(void) {
    enum { N = 600 };
    float g[N], u[N], want[N], got[N];
    uint64_t s = 7;
    for (int i = 0; i < N; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        float r = (float)((s >> 40) & 0xffffff) / 16777216.0f * 2 - 1; /* [-1, 1) */
        float mag[] = {1, 4, 20, 90, 120, 1e-3f, 1e-40f};
        g[i] = r * mag[i % 7];
        u[i] = i % 11 == 0 ? -1.5f : 1.0f + r;
    }
    const float edge[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -88.5f, -88.75f, -89.0f, 88.8f, -103.9f,
                          -104.5f, 104.5f, 1e-45f, -1e-45f, 15.9424f, -15.9424f};
    for (int i = 0; i < (int)(sizeof edge / sizeof *edge); i++) g[i] = edge[i], u[i] = 1.0f;
    for (int i = 0; i < N; i++) want[i] = q_silu(g[i]) * u[i];
    int saved = q_isa_get();
    for (int isa = 0; isa < Q_ISA_COUNT; isa++) {
        if (!q_isa_available(isa)) continue;
        q_isa_set(isa, NULL);
        int bad = -1;
        for (int n = 0; n <= 40 && bad < 0; n++) /* every tail, at offsets */
            for (int off = 0; off + n <= N && bad < 0; off += n ? n : N) {
                memcpy(got + off, g + off, (size_t)n * sizeof(float));
                got[off + n < N ? off + n : 0] = 12345.0f; /* a canary after the range */
                q_silu_mul(got + off, u + off, n);
                if (off + n < N && got[off + n] != 12345.0f) bad = off + n;
            }
        memcpy(got, g, sizeof got);
        q_silu_mul(got, u, N);
        for (int i = 0; i < N && bad < 0; i++) {
            float a = got[i], b = want[i];
            bool ok = isnan(b) ? isnan(a) : b == 0 ? a == 0 && signbit(a) == signbit(b)
                    : a == b || fabsf(a - b) <= 4e-7f * fabsf(b) || (fabsf(a) < 1e-37f && fabsf(b) < 1e-37f);
            if (!ok) bad = i;
        }
        check(bad < 0, "q_silu_mul %s: element %d (g %g) gives %.9g, scalar %.9g", q_isa_name(isa), bad,
              bad >= 0 ? g[bad] : 0.0, bad >= 0 ? got[bad] : 0.0, bad >= 0 ? want[bad] : 0.0);
    }
    q_isa_set(saved, NULL);
}

/* F16 rows (the KV cache store) of every ISA: the bytes of q_f32_to_fp16,
 * for random values across the half range, ties to even, the subnormal and
 * overflow edges, ±0, ±inf and NaN, at every tail length. */
static void test_f16_row(void) {
    enum { N = 4000 };
    float x[N];
    uint16_t want[N], got[N + 1];
    uint64_t s = 11;
    for (int i = 0; i < N; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        uint32_t u = (uint32_t)(s >> 32);
        /* exponents 2^-30 .. 2^17 (subnormal halves to overflow), any mantissa */
        u = (u & 0x807fffffu) | ((97u + (u >> 23) % 48u) << 23);
        x[i] = q_f32_from_bits(u);
    }
    const float edge[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 65504.0f, 65519.99f, 65520.0f, -65520.0f,
                          6.1035156e-05f, 5.9604645e-08f, 2.9802322e-08f, 2.9802326e-08f, 1.0009766f, 1.0004883f,
                          1.0014648f, 3.0e-8f, 1e-45f};
    for (int i = 0; i < (int)(sizeof edge / sizeof *edge); i++) x[i * 3] = edge[i];
    x[100] = q_f32_from_bits(0x7fe00000u); /* NaNs with payloads */
    x[205] = q_f32_from_bits(0xffa00001u);
    for (int i = 0; i < N; i++) want[i] = q_f32_to_fp16(x[i]);
    int saved = q_isa_get();
    for (int isa = 0; isa < Q_ISA_COUNT; isa++) {
        if (!q_isa_available(isa)) continue;
        q_isa_set(isa, NULL);
        int bad = -1, bad_len = -1;
        for (int n = 0; n <= 20 && bad_len < 0; n++) {
            got[n] = 0xbeef; /* a canary after the row */
            qtype_get(QT_F16)->from_float(x + 37, got, n);
            if (memcmp(got, want + 37, (size_t)n * 2) != 0 || got[n] != 0xbeef) bad_len = n;
        }
        check(bad_len < 0, "F16 row %s: a row of %d differs or writes past its end", q_isa_name(isa), bad_len);
        qtype_get(QT_F16)->from_float(x, got, N);
        for (int i = 0; i < N && bad < 0; i++)
            if (got[i] != want[i]) bad = i;
        check(bad < 0, "F16 row %s: element %d (%g) gives %04x, scalar %04x", q_isa_name(isa), bad,
              bad >= 0 ? x[bad] : 0.0, bad >= 0 ? got[bad] : 0, bad >= 0 ? want[bad] : 0);
    }
    q_isa_set(saved, NULL);
}

/* The activation conversions of every ISA produce the scalar bytes: random
 * rows at several magnitudes, exact halves (roundf vs round-half-even
 * differ there), zero / tiny / denormal blocks, infinities and NaNs. */
static void test_act_convert(void) {
    enum { N = 4 * 256 };
    float *x = malloc(N * sizeof *x);
    uint8_t *ref = malloc(q_act_row_size(Q_ACT_Q8KS, N) + q_act_row_size(Q_ACT_Q8S, N));
    uint8_t *got = malloc(q_act_row_size(Q_ACT_Q8KS, N) + q_act_row_size(Q_ACT_Q8S, N));
    int saved = q_isa_get();
    for (int kind = 0; kind < 9; kind++) {
        for (int i = 0; i < N; i++) {
            float u = qrng_uniform(&rng) - 0.5f;
            switch (kind) {
            case 0: x[i] = u; break;
            case 1: x[i] = u * 1e4f; break;
            /* multiples of amax/254 and of amax/127 * k + half: exact ties after scaling */
            case 2: x[i] = (float)((int)(u * 508) / 2) * 0.5f; x[0] = 127.0f; x[256] = -127.0f; break;
            case 3: x[i] = (i / 32) % 2 ? 0.0f : u * 1e-39f; break; /* zero and denormal blocks */
            case 4: x[i] = u; if (i % 97 == 5) x[i] = (i & 1) ? INFINITY : -INFINITY; break;
            case 5: x[i] = u; if (i % 89 == 3) x[i] = NAN; break;
            case 6: x[i] = (i % 256) == 17 ? NAN : u; break;
            case 7: x[i] = (i % 32) == 0 ? -u - 1.0f : u; break; /* the extreme is negative */
            default: x[i] = (float)(i % 7) - 3.0f; break;       /* equal magnitudes: the first wins */
            }
        }
        for (int f = 0; f < 2; f++) {
            int fmt = f ? Q_ACT_Q8KS : Q_ACT_Q8S;
            size_t sz = q_act_row_size(fmt, N);
            q_isa_set(Q_ISA_SCALAR, NULL);
            q_act_from_float(fmt, x, ref, N);
            for (int isa = 0; isa < Q_ISA_COUNT; isa++) {
                if (!q_isa_available(isa)) continue;
                q_isa_set(isa, NULL);
                memset(got, 0xA5, sz);
                q_act_from_float(fmt, x, got, N);
                check(memcmp(got, ref, sz) == 0, "activation %s under %s, inputs kind %d: differs from scalar",
                      f ? "Q8KS" : "Q8S", q_isa_name(isa), kind);
            }
        }
    }
    q_isa_set(saved, NULL);
    free(x); free(ref); free(got);
}

/* RMSNorm and conversion inside the job for batches smaller than the pool:
 * each row's phase 0 is split into slices of 256 columns converted by
 * different chunks; the same bits as q_rmsnorm + q_matmul on one thread,
 * for every activation format (packed and not). */
static void test_rms_slices(void) {
    const int ts[] = {QT_Q4_0, QT_Q8_0, QT_Q4_K, QT_Q6_K, QT_Q5_0, QT_F16};
    const int64_t n = 768;
    const int rows = 20, maxb = 3;
    float *x = malloc((size_t)maxb * n * sizeof(float)), *nw = malloc((size_t)n * sizeof(float));
    float *xn = malloc((size_t)maxb * n * sizeof(float)), *xo = malloc((size_t)maxb * n * sizeof(float));
    float *want = malloc((size_t)maxb * rows * sizeof(float)), *y = malloc((size_t)maxb * rows * sizeof(float));
    rand_row(x, (int64_t)maxb * n, 2);
    for (int64_t i = 0; i < n; i++) nw[i] = 0.25f + (float)(i % 5) * 0.5f;
    for (int b = 0; b < maxb; b++) q_rmsnorm(xn + b * n, x + b * n, nw, n, 1e-6f);
    for (int ti = 0; ti < (int)(sizeof ts / sizeof *ts); ti++) {
        int t = ts[ti];
        uint8_t *w = make_rows(t, n, rows, 1);
        for (int isa = 0; isa < Q_ISA_COUNT; isa++) {
            if (!q_isa_available(isa)) continue;
            q_isa_set(isa, NULL);
            qerr e;
            q_packed *P = q_pack_supported(t, isa) ? q_pack(w, t, rows, n, &e) : NULL;
            qpool *p1 = qpool_new(1);
            q_matmul(p1, w, t, rows, n, xn, maxb, want);
            qpool_free(p1);
            for (int th = 2; th <= 4; th++) {
                qpool *p = qpool_new(th);
                for (int nb = 1; nb <= maxb; nb++)
                    for (int packed = 0; packed < (P ? 2 : 1); packed++) {
                        memset(xo, 0, (size_t)maxb * n * sizeof(float));
                        q_rms_in in = {x, nw, 1e-6f};
                        q_matmul_op op = {w, t, rows, y, packed ? P : NULL, NULL};
                        q_matmul_multi_rms(p, &op, 1, n, &in, xo, nb);
                        check(memcmp(y, want, (size_t)nb * rows * sizeof(float)) == 0 &&
                                  memcmp(xo, xn, (size_t)nb * n * sizeof(float)) == 0,
                              "%s %s: sliced norm+convert, batch %d threads %d packed %d", qtype_get(t)->name,
                              q_isa_name(isa), nb, th, packed);
                    }
                qpool_free(p);
            }
            q_packed_free(P);
        }
        free(w);
    }
    free(x); free(nw); free(xn); free(xo); free(want); free(y);
}

int main(void) {
    const char *san = getenv("QUIRE_TEST_SANITIZED");
    bool light = san && *san && strcmp(san, "0") != 0;
    qrng_seed(&rng, 12345);
    printf("ISAs:");
    for (int isa = 0; isa < Q_ISA_COUNT; isa++)
        if (q_isa_available(isa)) printf(" %s", q_isa_name(isa));
    printf("\n");
    for (int i = 0; i < N_TYPES; i++) {
        int t = types[i];
        int64_t bl = qtype_get(t)->blck;
        int64_t lens_q[] = {1, 2, 3, 8, 64}, lens_f[] = {1, 7, 8, 9, 16, 33, 259, 2048};
        const int64_t *lens = bl == 1 ? lens_f : lens_q;
        int nl = bl == 1 ? 8 : (light ? 3 : 5);
        for (int k = 0; k < nl; k++) {
            int64_t n = bl == 1 ? lens[k] : lens[k] * bl;
            if (bl == 32 && n > 2048) n = 2048;
            for (int kind = 0; kind < 3; kind++) test_type(t, n, kind);
        }
        test_matmul_invariance(t, bl == 1 ? 37 : (bl == 32 ? 96 : 512));
    }
    test_act_convert();
    test_packed(QT_Q4_0);
    test_packed(QT_Q8_0);
    test_packed(QT_Q4_K);
    test_packed(QT_Q6_K);
    test_rms_slices();
    test_repack_env();
    test_attention();
    test_attention_rows();
    test_silu_mul();
    test_f16_row();
    /* QUIRE_ISA: unknown or unavailable names are errors, not fallbacks. */
    qerr e;
    check(q_isa_set(Q_ISA_COUNT, &e) != 0, "q_isa_set out of range accepted");
    for (int isa = 0; isa < Q_ISA_COUNT; isa++)
        if (!q_isa_available(isa)) check(q_isa_set(isa, &e) != 0, "unavailable %s accepted", q_isa_name(isa));
    check(q_isa_from_name("AVX2") == Q_ISA_AVX2 && q_isa_from_name("sse9") == -1, "q_isa_from_name");
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail != 0;
}
