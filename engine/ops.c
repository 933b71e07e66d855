/* ops.c — numeric building blocks of the forward passes, scalar reference.
 * Reductions accumulate in double where the reference does (norms, softmax
 * sums), so that our f32 results track it closely. */
#include "engine/engine.h"
#include "engine/kernels.h"

#include <math.h>
#include <stdlib.h>

/* ------------------------------------------------------------------------ */
/* f32 fallback: for types without dot kernels. */
typedef struct matmul_job {
    const uint8_t *W;
    int wtype;
    int64_t n_rows, n_cols, n_batch;
    size_t row_bytes;
    const float *x;
    float *y;
} matmul_job;

static void matmul_f32_rows(const matmul_job *j, int64_t r0, int64_t r1) {
    if (r0 >= r1) return;
    if (j->n_batch == 1 || j->wtype == QT_F32) {
        for (int64_t r = r0; r < r1; r++) {
            const void *row = j->W + (size_t)r * j->row_bytes;
            for (int64_t b = 0; b < j->n_batch; b++)
                j->y[b * j->n_rows + r] = qtype_dot_row(j->wtype, row, j->x + b * j->n_cols, j->n_cols);
        }
        return;
    }
    /* Batched: dequantize each weight row once, reuse it for every input
     * (the same order of operations as qtype_dot_row). */
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

static void matmul_f32_task(void *arg, int ith, int nth) {
    const matmul_job *j = arg;
    matmul_f32_rows(j, j->n_rows * ith / nth, j->n_rows * (ith + 1) / nth);
}

void q_matmul_f32(qpool *pool, const void *W, int wtype, int64_t n_rows, int64_t n_cols, const float *x,
                  int64_t n_batch, float *y) {
    matmul_job j = {W, wtype, n_rows, n_cols, n_batch, qtype_row_size(wtype, n_cols), x, y};
    qpool_run(pool, matmul_f32_task, &j);
}

/* ------------------------------------------------------------------------ */
/* Matmul through the dot kernels: one pool job converts the activations to
 * each vec_dot_type needed (batch rows split over threads), meets at a
 * barrier, then computes output rows (contiguous ranges of the ops' rows
 * taken together, one thread per row) in tiles of 8 rows x 8 inputs. */
#define MM_MAX_OPS 8
#define MM_TILE_R 8 /* rows per kernel call */
#define MM_TILE_C 8 /* inputs per kernel call */

typedef struct mm_multi_job {
    qpool *pool;
    const q_matmul_op *ops;
    int n_ops;
    int64_t n_cols, n_batch, total_rows;
    const float *x;
    int isa;
    int n_vdt;                  /* distinct activation formats */
    int vdt[MM_MAX_OPS];
    uint8_t *qx[MM_MAX_OPS];    /* converted activations per format */
    size_t qx_row[MM_MAX_OPS];  /* bytes per converted row */
    int op_vdt[MM_MAX_OPS];     /* index into vdt per op, -1: f32 fallback */
} mm_multi_job;

static void mm_multi_task(void *arg, int ith, int nth) {
    const mm_multi_job *j = arg;
    /* 1. Activations, converted once per format. */
    int64_t b0 = j->n_batch * ith / nth, b1 = j->n_batch * (ith + 1) / nth;
    for (int v = 0; v < j->n_vdt; v++) {
        if (!j->qx[v]) continue; /* f32: used in place */
        const qtype_traits *vt = qtype_get(j->vdt[v]);
        for (int64_t b = b0; b < b1; b++) vt->from_float(j->x + b * j->n_cols, j->qx[v] + (size_t)b * j->qx_row[v], j->n_cols);
    }
    if (j->n_vdt) qpool_barrier(j->pool);
    /* 2. This thread's rows of the concatenated outputs. */
    int64_t R0 = j->total_rows * ith / nth, R1 = j->total_rows * (ith + 1) / nth;
    int64_t base = 0;
    for (int o = 0; o < j->n_ops; base += j->ops[o].n_rows, o++) {
        const q_matmul_op *op = &j->ops[o];
        int64_t r0 = R0 - base, r1 = R1 - base;
        if (r0 < 0) r0 = 0;
        if (r1 > op->n_rows) r1 = op->n_rows;
        if (r0 >= r1) continue;
        size_t wrs = qtype_row_size(op->wtype, j->n_cols);
        if (j->op_vdt[o] < 0) {
            matmul_job fj = {op->W, op->wtype, op->n_rows, j->n_cols, j->n_batch, wrs, j->x, op->y};
            matmul_f32_rows(&fj, r0, r1);
            continue;
        }
        const qtype_traits *t = qtype_get(op->wtype);
        q_gemm_fn k = t->gemm[j->isa] ? t->gemm[j->isa] : t->gemm[Q_ISA_SCALAR];
        int v = j->op_vdt[o];
        const uint8_t *qx = j->qx[v] ? j->qx[v] : (const uint8_t *)j->x;
        size_t xrs = j->qx_row[v];
        for (int64_t r = r0; r < r1; r += MM_TILE_R) {
            int nr = r1 - r < MM_TILE_R ? (int)(r1 - r) : MM_TILE_R;
            const uint8_t *w = (const uint8_t *)op->W + (size_t)r * wrs;
            for (int64_t c = 0; c < j->n_batch; c += MM_TILE_C) {
                int nc = j->n_batch - c < MM_TILE_C ? (int)(j->n_batch - c) : MM_TILE_C;
                k(j->n_cols, w, wrs, nr, qx + (size_t)c * xrs, xrs, nc, op->y + c * op->n_rows + r, (size_t)op->n_rows);
            }
        }
    }
}

void q_matmul_multi(qpool *pool, const q_matmul_op *ops, int n_ops, int64_t n_cols, const float *x, int64_t n_batch) {
    if (n_ops > MM_MAX_OPS) {
        q_matmul_multi(pool, ops, MM_MAX_OPS, n_cols, x, n_batch);
        q_matmul_multi(pool, ops + MM_MAX_OPS, n_ops - MM_MAX_OPS, n_cols, x, n_batch);
        return;
    }
    mm_multi_job j;
    memset(&j, 0, sizeof j);
    j.pool = pool;
    j.ops = ops;
    j.n_ops = n_ops;
    j.n_cols = n_cols;
    j.n_batch = n_batch;
    j.x = x;
    j.isa = q_isa_get();
    size_t total = 0;
    for (int o = 0; o < n_ops; o++) {
        j.total_rows += ops[o].n_rows;
        const qtype_traits *t = qtype_get(ops[o].wtype);
        j.op_vdt[o] = -1;
        if (!t || t->vec_dot_type < 0 || !t->gemm[Q_ISA_SCALAR] || qtype_row_size(t->vec_dot_type, n_cols) == 0) continue;
        int v = 0;
        while (v < j.n_vdt && j.vdt[v] != t->vec_dot_type) v++;
        if (v == j.n_vdt) {
            j.vdt[v] = t->vec_dot_type;
            j.qx_row[v] = qtype_row_size(t->vec_dot_type, n_cols);
            if (t->vec_dot_type != QT_F32) total += (size_t)n_batch * j.qx_row[v] + 64;
            j.n_vdt++;
        }
        j.op_vdt[o] = v;
    }
    uint8_t *mem = NULL, *own = NULL;
    if (total) {
        mem = qpool_scratch(pool, total);
        if (!mem) mem = own = malloc(total);
        if (!mem) abort();
    }
    size_t off = 0;
    for (int v = 0; v < j.n_vdt; v++) {
        if (j.vdt[v] == QT_F32) continue;
        j.qx[v] = mem + off;
        off += (size_t)n_batch * j.qx_row[v] + 64;
    }
    qpool_run(pool, mm_multi_task, &j);
    free(own);
}

void q_matmul(qpool *pool, const void *W, int wtype, int64_t n_rows, int64_t n_cols, const float *x,
              int64_t n_batch, float *y) {
    q_matmul_op op = {W, wtype, n_rows, y};
    q_matmul_multi(pool, &op, 1, n_cols, x, n_batch);
}

void q_attn_step(const float *q, const void *k, const void *v, bool kv_f16, size_t stride, int n, int hd, float scale,
                 float *m, float *l, float *out) {
    static const q_attn_fn fns[Q_ISA_COUNT] = {
        [Q_ISA_SCALAR] = attn_step_scalar,
#if defined(__x86_64__)
        [Q_ISA_AVX2] = attn_step_avx2,
        [Q_ISA_AVX512] = attn_step_avx512,
#endif
    };
    int isa = q_isa_get();
    (fns[isa] ? fns[isa] : attn_step_scalar)(q, k, v, kv_f16, stride, n, hd, scale, m, l, out);
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
