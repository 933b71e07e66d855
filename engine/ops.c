/* ops.c — numeric building blocks of the forward passes, scalar reference.
 * Reductions accumulate in double where the reference does (norms, softmax
 * sums), so that our f32 results track it closely. */
#include "engine/engine.h"

#include <math.h>
#include <stdlib.h>

typedef struct matmul_job {
    const uint8_t *W;
    int wtype;
    int64_t n_rows, n_cols, n_batch;
    size_t row_bytes;
    const float *x;
    float *y;
} matmul_job;

static void matmul_task(void *arg, int ith, int nth) {
    const matmul_job *j = arg;
    int64_t r0 = j->n_rows * ith / nth, r1 = j->n_rows * (ith + 1) / nth;
    if (r0 >= r1) return;
    if (j->n_batch == 1 || j->wtype == QT_F32) {
        for (int64_t r = r0; r < r1; r++) {
            const void *row = j->W + (size_t)r * j->row_bytes;
            for (int64_t b = 0; b < j->n_batch; b++)
                j->y[b * j->n_rows + r] = qtype_dot_row(j->wtype, row, j->x + b * j->n_cols, j->n_cols);
        }
        return;
    }
    /* Batched: dequantize each weight row once, reuse it for every input. */
    const qtype_traits *t = qtype_get(j->wtype);
    float *wrow = malloc((size_t)j->n_cols * sizeof(float));
    if (!wrow) abort();
    for (int64_t r = r0; r < r1; r++) {
        t->to_float(j->W + (size_t)r * j->row_bytes, wrow, j->n_cols);
        for (int64_t b = 0; b < j->n_batch; b++) {
            const float *x = j->x + b * j->n_cols;
            float s = 0;
            for (int64_t i = 0; i < j->n_cols; i++) s += wrow[i] * x[i];
            j->y[b * j->n_rows + r] = s;
        }
    }
    free(wrow);
}

void q_matmul(qpool *pool, const void *W, int wtype, int64_t n_rows, int64_t n_cols, const float *x,
              int64_t n_batch, float *y) {
    matmul_job j = {W, wtype, n_rows, n_cols, n_batch, qtype_row_size(wtype, n_cols), x, y};
    qpool_run(pool, matmul_task, &j);
}

void q_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps) {
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (double)(x[i] * x[i]);
    float scale = 1.0f / sqrtf((float)(ss / (double)n) + eps);
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * scale * (w ? w[i] : 1.0f);
}

void q_layernorm(float *y, const float *x, const float *w, const float *b, int64_t n, float eps) {
    double mean = 0;
    for (int64_t i = 0; i < n; i++) mean += x[i];
    mean /= (double)n;
    double var = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = x[i] - mean;
        var += d * d;
    }
    var /= (double)n;
    float scale = 1.0f / sqrtf((float)var + eps);
    for (int64_t i = 0; i < n; i++) {
        float v = (float)(x[i] - mean) * scale;
        y[i] = v * (w ? w[i] : 1.0f) + (b ? b[i] : 0.0f);
    }
}

void q_softmax(float *x, int64_t n) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

float q_gelu(float x) {
    /* tanh approximation, as BERT-family GGUF models are evaluated */
    const float c = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
}
