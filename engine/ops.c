/* ops.c — numeric building blocks of the forward passes, scalar reference.
 * Reductions accumulate in double where the reference does (norms, softmax
 * sums), so that our f32 results track it closely. */
#include "engine/engine.h"
#include "engine/kernels.h"

#include <math.h>
#include <stdatomic.h>
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
 * each vec_dot_type needed (phase 0, chunks of batch rows), then computes
 * output rows (phase 1: contiguous ranges of the ops' rows taken together in
 * granules of 16, several chunks per thread) in tiles of 8 rows x 8 inputs,
 * or through the packed kernels for ops with packed weights. */
#define MM_MAX_OPS 8
#define MM_TILE_R 8  /* rows per kernel call */
#define MM_TILE_C 8  /* inputs per kernel call */
#define MM_GRAIN 16  /* rows: the unit of the thread split (= Q_PACK_ROWS) */
/* Packed ops: inputs in chunks whose converted rows fit in L2 with room to
 * spare, so each weight group is reused from cache over a whole chunk. */
#define MM_CHUNK_BYTES (640 * 1024)
/* Claims per thread's run, halving (mm_multi_task): with 8 the last is
 * 1/128 of the run (a glu run's is one granule, ~2.5 us of decode stream);
 * with 6 the tails at the end of a decode glu job were 25 us, with 8 9 us
 * (bench/README-kernels.md, seventh round). */
#define MM_CHUNKS_PER_THREAD 8
/* Phase 0 of a batch smaller than the pool: slices of whole 256-element
 * blocks, which every activation format's block size divides. */
#define MM_SLICE 256
/* Phase 1 in runs, one per thread, while the pool has at most this many. */
#define MM_MAX_RUNS 64

typedef struct mm_multi_job {
    const q_matmul_op *ops;
    int n_ops;
    bool glu;                   /* ops[0] = silu(ops[0]) * ops[1] after both */
    int64_t n_cols, n_batch, total_grains;
    const float *x;
    /* optional RMSNorm in the job: x = rmsnorm(x_raw) * norm_w first */
    const float *x_raw, *norm_w;
    float norm_eps;
    int isa;
    int nth; /* pool size: the claim order of phase 1 (mm_multi_task) */
    atomic_int run_next[MM_MAX_RUNS]; /* phase 1: next piece of each thread's run */
    int slices; /* phase 0: chunks per batch row (1: chunks of whole rows) */
    int n_vdt;                  /* distinct activation formats */
    int vdt[MM_MAX_OPS];
    uint8_t *qx[MM_MAX_OPS];    /* converted activations per format */
    size_t qx_row[MM_MAX_OPS];  /* bytes per converted row */
    int op_vdt[MM_MAX_OPS];     /* index into vdt per op, -1: f32 fallback */
    bool op_packed[MM_MAX_OPS];
} mm_multi_job;

static int64_t grains(int64_t rows) { return (rows + MM_GRAIN - 1) / MM_GRAIN; }

/* Phase 1 splits the granules of all ops' rows (GLU: of the gate's, with
 * the same rows of up) into nth runs; run r starts at mm_run_start(r).
 * mm_run and q_matmul_prefetch_next must agree on both. */
static int64_t mm_total_grains(const q_matmul_op *ops, int n_ops, bool glu) {
    int64_t t = 0;
    for (int o = 0; o < (glu ? 1 : n_ops); o++) t += grains(ops[o].n_rows);
    return t;
}
static int64_t mm_run_start(int64_t total, int r, int nth) { return total * r / nth; }

/* Rows [r0, r1) of op o (r0 a multiple of MM_GRAIN). */
static void mm_op_rows(const mm_multi_job *j, int o, int64_t r0, int64_t r1) {
    const q_matmul_op *op = &j->ops[o];
    size_t wrs = qtype_row_size(op->wtype, j->n_cols);
    if (j->op_vdt[o] < 0) {
        matmul_job fj = {op->W, op->wtype, op->n_rows, j->n_cols, j->n_batch, wrs, j->x, op->y};
        matmul_f32_rows(&fj, r0, r1);
        return;
    }
    int v = j->op_vdt[o];
    const uint8_t *qx = j->qx[v] ? j->qx[v] : (const uint8_t *)j->x;
    size_t xrs = j->qx_row[v];
    if (j->op_packed[o]) {
        int64_t chunk = (int64_t)(MM_CHUNK_BYTES / xrs) / MM_TILE_C * MM_TILE_C;
        if (chunk < MM_TILE_C) chunk = MM_TILE_C;
        for (int64_t c = 0; c < j->n_batch; c += chunk) {
            int nc = j->n_batch - c < chunk ? (int)(j->n_batch - c) : (int)chunk;
            q_packed_gemm(op->P, r0 / Q_PACK_ROWS, (r1 + Q_PACK_ROWS - 1) / Q_PACK_ROWS, qx + (size_t)c * xrs, xrs, nc,
                          op->y + c * op->n_rows, (size_t)op->n_rows);
        }
        return;
    }
    const qtype_traits *t = qtype_get(op->wtype);
    q_gemm_fn k = t->gemm[j->isa] ? t->gemm[j->isa] : t->gemm[Q_ISA_SCALAR];
    for (int64_t r = r0; r < r1; r += MM_TILE_R) {
        int nr = r1 - r < MM_TILE_R ? (int)(r1 - r) : MM_TILE_R;
        const uint8_t *w = (const uint8_t *)op->W + (size_t)r * wrs;
        for (int64_t c = 0; c < j->n_batch; c += MM_TILE_C) {
            int nc = j->n_batch - c < MM_TILE_C ? (int)(j->n_batch - c) : MM_TILE_C;
            k(j->n_cols, w, wrs, nr, qx + (size_t)c * xrs, xrs, nc, op->y + c * op->n_rows + r, (size_t)op->n_rows);
        }
    }
}

/* Phase 0: the activations, converted once per format (chunks of batch
 * rows). Phase 1: chunks of granules of the concatenated outputs (GLU: of
 * the gate's rows, computing the same rows of gate and up). */
static void mm_multi_task(void *arg, int phase, int chunk, int n_chunks) {
    const mm_multi_job *j = arg;
    if (phase == 0) {
        /* Batch rows [b0, b1), columns [k0, k1) of each: whole rows, or
         * with fewer rows than threads (decode) a slice of one row. */
        int64_t b0, b1, k0 = 0, k1 = j->n_cols;
        if (j->slices > 1) {
            int64_t nblk = j->n_cols / MM_SLICE, s = chunk % j->slices;
            b0 = chunk / j->slices;
            b1 = b0 + 1;
            k0 = MM_SLICE * (nblk * s / j->slices);
            k1 = MM_SLICE * (nblk * (s + 1) / j->slices);
        } else {
            b0 = j->n_batch * chunk / n_chunks;
            b1 = j->n_batch * (chunk + 1) / n_chunks;
        }
        if (j->norm_w)
            for (int64_t b = b0; b < b1; b++)
                q_rmsnorm_part((float *)j->x + b * j->n_cols, j->x_raw + b * j->n_cols, j->norm_w, j->n_cols, j->norm_eps,
                               k0, k1);
        for (int v = 0; v < j->n_vdt; v++) {
            if (!j->qx[v]) continue; /* f32: used in place */
            int f = j->vdt[v];
            /* every format's rows are a plain sequence of blocks */
            size_t y0 = f < 0 ? q_act_row_size(f, k0) : qtype_row_size(f, k0);
            for (int64_t b = b0; b < b1; b++) {
                const float *xr = j->x + b * j->n_cols + k0;
                uint8_t *yr = j->qx[v] + (size_t)b * j->qx_row[v] + y0;
                if (f < 0) q_act_from_float(f, xr, yr, k1 - k0);
                else qtype_get(f)->from_float(xr, yr, k1 - k0);
            }
        }
        return;
    }
    /* The rows are T contiguous runs, one per thread, each in pieces: a
     * claim takes the next piece of the claiming thread's own run, or when
     * that run is done, of the next run not done. So a thread reads one
     * contiguous stream, its L2 prefetch runs from one piece into the
     * next, and the run it starts is the one whose head it prefetched
     * while waiting (q_matmul_prefetch_next). Every claim finds a piece
     * (there are as many as chunks); which thread computes a piece never
     * changes its bits. */
    int64_t G0, G1;
    if (j->nth > 1 && j->nth <= MM_MAX_RUNS && n_chunks % j->nth == 0) {
        /* Within a run the pieces halve (1/2, 1/4, ... and the last two
         * equal): the claims made last are short, so a thread slowed by the
         * host leaves little for the others to wait on at the phase's end. */
        int per = n_chunks / j->nth, me = qpool_thread_index() % j->nth, run = me, pos = per;
        for (int k = 0; k < j->nth && pos >= per; k++) {
            run = (me + k) % j->nth;
            pos = atomic_fetch_add(&((mm_multi_job *)j)->run_next[run], 1);
        }
        if (pos >= per) abort(); /* more claims than pieces: a pool bug */
        int64_t R0 = mm_run_start(j->total_grains, run, j->nth);
        int64_t len = mm_run_start(j->total_grains, run + 1, j->nth) - R0;
        G0 = R0 + len - (len >> pos);
        G1 = pos + 1 == per ? R0 + len : R0 + len - (len >> (pos + 1));
    } else {
        G0 = j->total_grains * chunk / n_chunks;
        G1 = j->total_grains * (chunk + 1) / n_chunks;
    }
    if (j->glu) {
        int64_t n_rows = j->ops[0].n_rows;
        int64_t r0 = G0 * MM_GRAIN, r1 = G1 * MM_GRAIN < n_rows ? G1 * MM_GRAIN : n_rows;
        if (r0 >= r1) return;
        mm_op_rows(j, 0, r0, r1);
        mm_op_rows(j, 1, r0, r1);
        for (int64_t c = 0; c < j->n_batch; c++) {
            float *g = j->ops[0].y + c * n_rows;
            const float *u = j->ops[1].y + c * n_rows;
            q_silu_mul(g + r0, u + r0, r1 - r0);
        }
        return;
    }
    int64_t base = 0;
    for (int o = 0; o < j->n_ops; base += grains(j->ops[o].n_rows), o++) {
        const q_matmul_op *op = &j->ops[o];
        int64_t g0 = G0 - base, g1 = G1 - base;
        if (g0 < 0) g0 = 0;
        if (g1 > grains(op->n_rows)) g1 = grains(op->n_rows);
        if (g0 >= g1) continue;
        int64_t r0 = g0 * MM_GRAIN, r1 = g1 * MM_GRAIN < op->n_rows ? g1 * MM_GRAIN : op->n_rows;
        mm_op_rows(j, o, r0, r1);
        if (op->acc)
            for (int64_t c = 0; c < j->n_batch; c++) {
                float *a = op->acc + c * op->n_rows;
                const float *y = op->y + c * op->n_rows;
                for (int64_t r = r0; r < r1; r++) a[r] += y[r];
            }
    }
}

static void mm_run(qpool *pool, const q_matmul_op *ops, int n_ops, bool glu, int64_t n_cols, const float *x,
                   int64_t n_batch, const q_rms_in *norm) {
    mm_multi_job j;
    memset(&j, 0, sizeof j);
    for (int r = 0; r < MM_MAX_RUNS; r++) atomic_init(&j.run_next[r], 0);
    if (norm) {
        j.x_raw = norm->x;
        j.norm_w = norm->w;
        j.norm_eps = norm->eps;
    }
    j.ops = ops;
    j.n_ops = n_ops;
    j.glu = glu;
    j.n_cols = n_cols;
    j.n_batch = n_batch;
    j.x = x;
    j.isa = q_isa_get();
    size_t total = 0;
    for (int o = 0; o < n_ops; o++) {
        const qtype_traits *t = qtype_get(ops[o].wtype);
        j.op_vdt[o] = -1;
        if (!t || t->vec_dot_type < 0 || !t->gemm[Q_ISA_SCALAR] || qtype_row_size(t->vec_dot_type, n_cols) == 0) continue;
        /* Packed weights for every batch size, decode included: the packed
         * gemv streams one sequential group per 16 rows and measured faster
         * than the in-place kernels (bench/README-kernels.md); the model then
         * drops the mapped originals (models/model.c). Same bits either way. */
        j.op_packed[o] = ops[o].P && q_packed_isa(ops[o].P) == j.isa && q_packed_type(ops[o].P) == ops[o].wtype &&
                         q_packed_rows(ops[o].P) == ops[o].n_rows && q_packed_cols(ops[o].P) == n_cols;
        int vt = j.op_packed[o] ? q_packed_act(ops[o].P) : t->vec_dot_type;
        int v = 0;
        while (v < j.n_vdt && j.vdt[v] != vt) v++;
        if (v == j.n_vdt) {
            j.vdt[v] = vt;
            j.qx_row[v] = vt < 0 ? q_act_row_size(vt, n_cols) : qtype_row_size(vt, n_cols);
            if (vt != QT_F32) total += (size_t)n_batch * j.qx_row[v] + 64;
            j.n_vdt++;
        }
        j.op_vdt[o] = v;
    }
    j.total_grains = mm_total_grains(ops, n_ops, glu);
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
    /* Several chunks per thread: a thread that is descheduled leaves its
     * share to the others (engine/pool.c). */
    int nth = qpool_size(pool);
    j.nth = nth;
    int64_t n1 = j.total_grains < (int64_t)MM_CHUNKS_PER_THREAD * nth ? j.total_grains : (int64_t)MM_CHUNKS_PER_THREAD * nth;
    j.slices = 1;
    if (n_batch < nth && n_cols % MM_SLICE == 0) {
        int64_t s = (nth + n_batch - 1) / n_batch;
        j.slices = (int)(s < n_cols / MM_SLICE ? s : n_cols / MM_SLICE);
    }
    int n0 = j.slices > 1 ? (int)n_batch * j.slices : (int)(n_batch < nth ? n_batch : nth);
    int n_chunks[2] = {j.n_vdt || j.norm_w ? n0 : 0, (int)n1};
    qpool_run_chunks(pool, mm_multi_task, &j, 2, n_chunks);
    free(own);
}

/* Bytes of the head of each thread's run that a waiting thread prefetches:
 * half the 2 MB L2. 192 KB measured no gain, 512 KB less than 1 MB, 1.5 MB
 * none more (bench/README-kernels.md, sixth round). */
#define MM_WAIT_PF_BYTES (1024 * 1024)

void q_matmul_prefetch_next(qpool *pool, const q_matmul_op *ops, int n_ops, bool glu, int64_t n_cols) {
    int nth = qpool_size(pool);
    if (nth < 2) return;
    int64_t total = mm_total_grains(ops, n_ops, glu);
    for (int r = 0; r < nth; r++) {
        /* thread r claims from run r first (mm_multi_task) */
        int64_t g = mm_run_start(total, r, nth), base = 0;
        int o = 0;
        while (o + 1 < n_ops && !glu && g >= base + grains(ops[o].n_rows)) base += grains(ops[o++].n_rows);
        const q_matmul_op *op = &ops[o];
        int64_t row0 = (g - base) * MM_GRAIN;
        const void *a = NULL;
        size_t n = 0;
        if (op->P && q_packed_isa(op->P) == q_isa_get() && q_packed_cols(op->P) == n_cols)
            a = q_packed_rows_at(op->P, row0, &n);
        else if (op->W && row0 < op->n_rows) {
            size_t rs = qtype_row_size(op->wtype, n_cols);
            a = (const uint8_t *)op->W + (size_t)row0 * rs;
            n = (size_t)(op->n_rows - row0) * rs;
        }
        qpool_set_wait_prefetch(pool, r, a, n < MM_WAIT_PF_BYTES ? n : MM_WAIT_PF_BYTES);
    }
}

void q_matmul_multi(qpool *pool, const q_matmul_op *ops, int n_ops, int64_t n_cols, const float *x, int64_t n_batch) {
    if (n_ops > MM_MAX_OPS) {
        q_matmul_multi(pool, ops, MM_MAX_OPS, n_cols, x, n_batch);
        q_matmul_multi(pool, ops + MM_MAX_OPS, n_ops - MM_MAX_OPS, n_cols, x, n_batch);
        return;
    }
    mm_run(pool, ops, n_ops, false, n_cols, x, n_batch, NULL);
}

void q_matmul_multi_rms(qpool *pool, const q_matmul_op *ops, int n_ops, int64_t n_cols, const q_rms_in *norm, float *x,
                        int64_t n_batch) {
    if (n_ops > MM_MAX_OPS) abort(); /* a caller bug, not input */
    mm_run(pool, ops, n_ops, false, n_cols, x, n_batch, norm);
}

void q_matmul_glu(qpool *pool, const q_matmul_op *gate, const q_matmul_op *up, int64_t n_cols, const q_rms_in *norm,
                  float *x, int64_t n_batch) {
    q_matmul_op ops[2] = {*gate, *up};
    if (gate->n_rows != up->n_rows) abort(); /* a caller bug, not input */
    mm_run(pool, ops, 2, true, n_cols, x, n_batch, norm);
}

void q_matmul(qpool *pool, const void *W, int wtype, int64_t n_rows, int64_t n_cols, const float *x,
              int64_t n_batch, float *y) {
    q_matmul_op op = {W, wtype, n_rows, y, NULL, NULL};
    q_matmul_multi(pool, &op, 1, n_cols, x, n_batch);
}

void q_matmul_packed(qpool *pool, const void *W, const q_packed *P, int wtype, int64_t n_rows, int64_t n_cols,
                     const float *x, int64_t n_batch, float *y) {
    q_matmul_op op = {W, wtype, n_rows, y, P, NULL};
    q_matmul_multi(pool, &op, 1, n_cols, x, n_batch);
}

void q_attn_block(const q_attn_rows *rows, const void *kt, const void *v, bool kv_f16, int hd, float scale,
                  const void *kt_next, const void *v_next, size_t next_bytes) {
#if defined(__x86_64__)
    int isa = q_isa_get();
    if (isa == Q_ISA_AVX512) {
        attn_block_avx512(rows, kt, v, kv_f16, hd, scale, kt_next, v_next, next_bytes);
        return;
    }
    if (isa == Q_ISA_AVX2) {
        attn_block_avx2(rows, kt, v, kv_f16, hd, scale);
        return;
    }
#endif
    (void)kt_next, (void)v_next, (void)next_bytes;
    attn_block_scalar(rows, kt, v, kv_f16, hd, scale);
}

void q_silu_mul(float *g, const float *u, int64_t n) {
#if defined(__x86_64__)
    /* the scalar loop spent ~11 us per layer and thread of a TinyLlama
     * decode in expf (bench/README-kernels.md, seventh round) */
    if (q_isa_get() == Q_ISA_AVX512) {
        silu_mul_avx512(g, u, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) g[i] = q_silu(g[i]) * u[i];
}

void q_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps) { q_rmsnorm_part(y, x, w, n, eps, 0, n); }

void q_rmsnorm_part(float *y, const float *x, const float *w, int64_t n, float eps, int64_t k0, int64_t k1) {
    /* Eight partial sums: one chain of 2048 dependent double additions is
     * ~8k cycles of latency, on the serial path of every decode step. */
    double part[8] = {0};
    int64_t i0 = 0;
    for (; i0 + 8 <= n; i0 += 8)
        for (int k = 0; k < 8; k++) part[k] += (double)(x[i0 + k] * x[i0 + k]);
    for (int64_t i = i0; i < n; i++) part[i - i0] += (double)(x[i] * x[i]);
    double ss = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
    float scale = 1.0f / sqrtf((float)(ss / (double)n) + eps);
    for (int64_t i = k0; i < k1; i++) y[i] = x[i] * scale * (w ? w[i] : 1.0f);
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
