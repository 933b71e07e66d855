/* pca.c — principal axes of a vector sample: the mean, the covariance
 * matrix (dot products of the centred, transposed sample with the SIMD
 * kernel), then its top-r eigenvectors by orthogonal (subspace) iteration
 * with modified Gram-Schmidt in double precision. The result is an
 * orthonormal basis ordered roughly by explained variance; callers that
 * use it for lower bounds (hnsw's projected scan) rely only on the
 * orthonormality, which is exact up to float rounding whether or not the
 * iteration has fully converged. */
#include "rag/rag.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PCA_ITERS 40

/* Orthonormalizes the r rows of v (r × dim, double) in place; a row that
 * becomes (numerically) dependent is replaced by a unit vector e_j not yet
 * spanned. */
static void orthonormalize(double *v, int r, int dim) {
    for (int i = 0; i < r; i++) {
        double *a = v + (size_t)i * (size_t)dim;
        for (int pass = 0; pass < 2; pass++) /* twice is enough (Kahan) */
            for (int j = 0; j < i; j++) {
                const double *b = v + (size_t)j * (size_t)dim;
                double d = 0;
                for (int t = 0; t < dim; t++) d += a[t] * b[t];
                for (int t = 0; t < dim; t++) a[t] -= d * b[t];
            }
        double n2 = 0;
        for (int t = 0; t < dim; t++) n2 += a[t] * a[t];
        if (n2 < 1e-24) { /* degenerate: try coordinate axes */
            for (int ax = 0; ax < dim; ax++) {
                for (int t = 0; t < dim; t++) a[t] = t == ax ? 1.0 : 0.0;
                for (int j = 0; j < i; j++) {
                    const double *b = v + (size_t)j * (size_t)dim;
                    double d = b[ax];
                    for (int t = 0; t < dim; t++) a[t] -= d * b[t];
                }
                n2 = 0;
                for (int t = 0; t < dim; t++) n2 += a[t] * a[t];
                if (n2 > 0.25) break;
            }
        }
        double inv = 1.0 / sqrt(n2);
        for (int t = 0; t < dim; t++) a[t] *= inv;
    }
}

int pca_fit(const float *x, size_t n, int dim, int r, float *mean, float *basis, qerr *e) {
    if (dim <= 0 || r <= 0 || r > dim) return qerr_set(e, "pca: need 0 < r <= dim (r %d, dim %d)", r, dim);
    if (n < 2) return qerr_set(e, "pca: need at least 2 vectors (got %zu)", n);
    size_t d = (size_t)dim;
    double *mu = calloc(d, sizeof *mu);
    float *xt = malloc(d * n * sizeof *xt);      /* centred sample, transposed: dim × n */
    float *cov = malloc(d * d * sizeof *cov);
    double *v = malloc((size_t)r * d * sizeof *v);
    double *w = malloc((size_t)r * d * sizeof *w);
    float *vf = malloc((size_t)r * d * sizeof *vf);
    if (!mu || !xt || !cov || !v || !w || !vf) {
        free(mu); free(xt); free(cov); free(v); free(w); free(vf);
        return qerr_set(e, "pca: out of memory (dim %d, %zu vectors)", dim, n);
    }
    for (size_t i = 0; i < n; i++)
        for (size_t t = 0; t < d; t++) mu[t] += x[i * d + t];
    for (size_t t = 0; t < d; t++) mu[t] /= (double)n;
    for (size_t i = 0; i < n; i++)
        for (size_t t = 0; t < d; t++) xt[t * n + i] = (float)((double)x[i * d + t] - mu[t]);
    /* blocks of 256 samples so the block (dim × 256) stays in cache while
     * every pair of dimensions is visited; sums across blocks in double */
    double *cd = calloc(d * d, sizeof *cd);
    if (!cd) {
        free(mu); free(xt); free(cov); free(v); free(w); free(vf);
        return qerr_set(e, "pca: out of memory (dim %d)", dim);
    }
    for (size_t c0 = 0; c0 < n; c0 += 256) {
        size_t len = n - c0 < 256 ? n - c0 : 256;
        for (size_t a = 0; a < d; a++)
            for (size_t b = a; b < d; b++) cd[a * d + b] += vec_dot_f32(xt + a * n + c0, xt + b * n + c0, len);
    }
    for (size_t a = 0; a < d; a++)
        for (size_t b = a; b < d; b++) {
            float c = (float)(cd[a * d + b] / (double)n);
            cov[a * d + b] = c;
            cov[b * d + a] = c;
        }
    free(cd);
    /* start: a deterministic pseudo-random block */
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < (size_t)r * d; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        v[i] = (double)(s >> 11) / 9007199254740992.0 - 0.5;
    }
    orthonormalize(v, r, dim);
    for (int it = 0; it < PCA_ITERS; it++) {
        for (size_t i = 0; i < (size_t)r * d; i++) vf[i] = (float)v[i];
        for (size_t a = 0; a < d; a++) /* one row of cov against every vector */
            for (int j = 0; j < r; j++) w[(size_t)j * d + a] = vec_dot_f32(cov + a * d, vf + (size_t)j * d, d);
        memcpy(v, w, (size_t)r * d * sizeof *v);
        orthonormalize(v, r, dim);
    }
    for (size_t t = 0; t < d; t++) mean[t] = (float)mu[t];
    for (size_t i = 0; i < (size_t)r * d; i++) basis[i] = (float)v[i];
    free(mu); free(xt); free(cov); free(v); free(w); free(vf);
    return 0;
}
