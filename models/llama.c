/* llama.c — forward pass of the Llama family and Qwen2, scalar reference.
 *
 * Reads top to bottom like llama2.c: embed, then per layer RMSNorm → Q/K/V
 * (+bias for Qwen2) → RoPE → append K/V to the cache → causal attention over
 * the entry's own sequence → output projection → residual → RMSNorm → SwiGLU
 * FFN → residual; then the final norm and the output projection for the
 * entries that want logits. Matrix products are split by rows across the
 * pool and attention by (entry, head), each unit computed by one thread, so
 * results are bit-identical for any thread count. */
#include "models/models.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int model_ctx_init(model_ctx *c, const model *m, const model_ctx_params *p, qerr *e) {
    memset(c, 0, sizeof *c);
    const model_hparams *hp = &m->hp;
    c->m = m;
    int n_ctx = p->n_ctx > 0 ? p->n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    int n_seq = p->n_seq > 0 ? p->n_seq : 1;
    c->n_batch_max = p->n_batch > 0 ? p->n_batch : 512;
    if (kv_cache_init(&c->kv, hp, n_ctx, n_seq, p->kv_type ? p->kv_type : QT_F16, e)) return -1;
    if (p->pool) {
        c->pool = p->pool;
    } else {
        c->pool = qpool_new(p->n_threads > 0 ? p->n_threads : q_default_threads());
        c->own_pool = true;
        if (!c->pool) { kv_cache_free(&c->kv); return qerr_set(e, "cannot create the thread pool"); }
    }
    size_t B = (size_t)c->n_batch_max;
    size_t d = (size_t)hp->n_embd, qd = (size_t)hp->n_head * hp->head_dim;
    size_t kvd = (size_t)hp->n_head_kv * hp->head_dim, ff = (size_t)hp->n_ff;
    size_t wide = d > qd ? d : qd;
    c->x = malloc(B * d * sizeof(float));
    c->xb = malloc(B * wide * sizeof(float));
    c->q = malloc(B * qd * sizeof(float));
    c->k = malloc(B * kvd * sizeof(float));
    c->v = malloc(B * kvd * sizeof(float));
    c->att_out = malloc(B * qd * sizeof(float));
    c->hb = malloc(B * ff * sizeof(float));
    c->hb2 = malloc(B * ff * sizeof(float));
    c->out_norm = malloc(B * d * sizeof(float));
    c->att_scores = malloc((size_t)qpool_size(c->pool) * (size_t)c->kv.n_blocks * KV_BLOCK * sizeof(float));
    c->rope_cs = malloc(B * (size_t)(hp->n_rot > 0 ? hp->n_rot : 1) * sizeof(float));
    if (!c->rope_cs || !c->x || !c->xb || !c->q || !c->k || !c->v || !c->att_out || !c->hb || !c->hb2 || !c->out_norm ||
        !c->att_scores) {
        model_ctx_free(c);
        return qerr_set(e, "out of memory for the model's scratch buffers");
    }
    return 0;
}

void model_ctx_free(model_ctx *c) {
    kv_cache_free(&c->kv);
    if (c->own_pool) qpool_free(c->pool);
    free(c->x); free(c->xb); free(c->q); free(c->k); free(c->v); free(c->att_out);
    free(c->hb); free(c->hb2); free(c->out_norm); free(c->att_scores);
    free(c->rope_cs);
    memset(c, 0, sizeof *c);
}

/* Rotary embedding: the cosines and sines of one position's angles, once
 * per forward chunk (every layer and head reuse them). The angle advances
 * by multiplication, as the reference computes it, so rounding matches. */
static void rope_angles(float *cs, int n_rot, int pos, float base, float scale, const float *freq_factors) {
    float theta_scale = powf(base, -2.0f / (float)n_rot);
    float theta = (float)pos;
    for (int i = 0; i < n_rot / 2; i++) {
        float t = theta * scale;
        if (freq_factors) t /= freq_factors[i];
        cs[2 * i] = cosf(t);
        cs[2 * i + 1] = sinf(t);
        theta *= theta_scale;
    }
}

/* Rotates one head vector by a position's angles. */
static void rope(float *x, const float *cs, int n_rot, int kind) {
    for (int i = 0; i < n_rot / 2; i++) {
        float c = cs[2 * i], s = cs[2 * i + 1];
        int a = kind == ROPE_NEOX ? i : 2 * i;
        int b = kind == ROPE_NEOX ? i + n_rot / 2 : 2 * i + 1;
        float x0 = x[a], x1 = x[b];
        x[a] = x0 * c - x1 * s;
        x[b] = x0 * s + x1 * c;
    }
}

/* Element offset of the cache block holding a sequence's position for KV
 * head kvh (models/models.h): KV_BLOCK positions of one head, K transposed
 * (dimension d of position p at d * KV_BLOCK + p, see q_attn_block), V by
 * position. A head's block is one contiguous run: with the rows of all
 * heads interleaved, attention read 128 of every 512 bytes, latency-bound
 * (~3.4 GB/s per thread at a 2048-token context). */
static inline size_t kv_block_at(const kv_cache *kv, int layer, int seq, int pos, int kvh, int hd) {
    const kv_seq *s = &kv->seqs[seq];
    size_t block = (size_t)s->blocks[pos / KV_BLOCK];
    return ((size_t)layer * kv->n_blocks + block) * KV_BLOCK * (size_t)kv->kv_dim + (size_t)kvh * KV_BLOCK * (size_t)hd;
}

/* Position pos's K (a column of the transposed block) and V (a row). */
static void kv_store(kv_cache *kv, size_t blk, int pos, const float *k, const float *v, int hd) {
    size_t p = (size_t)(pos % KV_BLOCK);
    if (kv->type == QT_F16) {
        uint16_t kh[512];
        qtype_get(QT_F16)->from_float(k, kh, hd); /* hd <= 512: models/model.c */
        uint16_t *kd = (uint16_t *)kv->k + blk + p;
        for (int d = 0; d < hd; d++) kd[(size_t)d * KV_BLOCK] = kh[d];
        qtype_get(QT_F16)->from_float(v, (uint16_t *)kv->v + blk + p * (size_t)hd, hd);
    } else {
        float *kd = (float *)kv->k + blk + p;
        for (int d = 0; d < hd; d++) kd[(size_t)d * KV_BLOCK] = k[d];
        memcpy((float *)kv->v + blk + p * (size_t)hd, v, (size_t)hd * sizeof(float));
    }
}

typedef struct attn_job {
    model_ctx *c;
    const model_batch *b;
    int layer, off, n; /* entries [off, off+n) of the batch */
    /* every entry of a different sequence (decode): an (entry, KV head)
     * item reads only cells it stores itself, so it does its own RoPE and
     * store and the job needs no barrier between them */
    bool own_cells;
} attn_job;

/* RoPE of entry i's query heads of KV group kvh and of its key head kvh,
 * then that head's K and V stored in the cache. */
static void rope_store_head(const attn_job *j, int i, int kvh) {
    model_ctx *c = j->c;
    const model_hparams *hp = &c->m->hp;
    int hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
    size_t qd = (size_t)hp->n_head * hd, kvd = (size_t)c->kv.kv_dim;
    const float *cs = c->rope_cs + (size_t)i * hp->n_rot;
    for (int h = kvh * group; h < (kvh + 1) * group; h++) rope(c->q + i * qd + (size_t)h * hd, cs, hp->n_rot, hp->rope_kind);
    float *kr = c->k + i * kvd + (size_t)kvh * hd;
    rope(kr, cs, hp->n_rot, hp->rope_kind);
    int pos = j->b->pos[j->off + i];
    size_t blk = kv_block_at(&c->kv, j->layer, j->b->seq[j->off + i], pos, kvh, hd);
    kv_store(&c->kv, blk, pos, kr, c->v + i * kvd + (size_t)kvh * hd, hd);
}

/* Phase 0: RoPE and the K/V store of the chunk's entries, every head. */
static void rope_part(const attn_job *j, int ith, int nth) {
    int i0 = j->n * ith / nth, i1 = j->n * (ith + 1) / nth;
    for (int i = i0; i < i1; i++)
        for (int kvh = 0; kvh < j->c->m->hp.n_head_kv; kvh++) rope_store_head(j, i, kvh);
}

/* Query rows per q_attn_block call: a tile of entries times a group's heads. */
#define ATTN_MAX_ROWS 64
#define ATTN_TILE 4 /* entries of one sequence that share each converted block */

/* Entries per attention item: single ones when every entry has its own
 * sequence (decode), else tiles whose rows fit one call. */
static int attn_tile(const model_hparams *hp, bool own_cells) {
    int group = hp->n_head / hp->n_head_kv;
    if (own_cells || group >= ATTN_MAX_ROWS) return 1;
    return ATTN_MAX_ROWS / group < ATTN_TILE ? ATTN_MAX_ROWS / group : ATTN_TILE;
}

/* Attention of entries [i0, i1) (one sequence) over KV head kvh: the query
 * heads of its group for every entry at once, block by block in position
 * order; an entry sees each block up to its own position. */
static void attend_tile(const attn_job *j, int i0, int i1, int kvh) {
    model_ctx *c = j->c;
    const model_hparams *hp = &c->m->hp;
    const kv_cache *kv = &c->kv;
    int hd = hp->head_dim, group = hp->n_head / hp->n_head_kv, qd = hp->n_head * hd;
    int seq = j->b->seq[j->off + i0], maxpos = 0;
    float scale = 1.0f / sqrtf((float)hd);
    bool f16 = kv->type == QT_F16;
    size_t esz = f16 ? sizeof(uint16_t) : sizeof(float);
    for (int i = i0; i < i1; i++) maxpos = j->b->pos[j->off + i] > maxpos ? j->b->pos[j->off + i] : maxpos;
    for (int h0 = 0; h0 < group; h0 += ATTN_MAX_ROWS) {
        int nh = group - h0 < ATTN_MAX_ROWS ? group - h0 : ATTN_MAX_ROWS;
        const float *qs[ATTN_MAX_ROWS];
        float *outs[ATTN_MAX_ROWS], m[ATTN_MAX_ROWS], l[ATTN_MAX_ROWS];
        int cnt[ATTN_MAX_ROWS], pos[ATTN_MAX_ROWS];
        int n = 0;
        for (int i = i0; i < i1; i++)
            for (int g = 0; g < nh; g++, n++) {
                size_t at = (size_t)i * qd + (size_t)(kvh * group + h0 + g) * hd;
                qs[n] = c->q + at;
                outs[n] = c->att_out + at;
                memset(outs[n], 0, (size_t)hd * sizeof(float));
                m[n] = -INFINITY, l[n] = 0;
                pos[n] = j->b->pos[j->off + i];
            }
        q_attn_rows rows = {n, qs, outs, m, l, cnt};
        size_t blk = kv_block_at(kv, j->layer, seq, 0, kvh, hd);
        for (int p0 = 0; p0 <= maxpos; p0 += KV_BLOCK) {
            for (int r = 0; r < n; r++) {
                int k = pos[r] + 1 - p0;
                cnt[r] = k < 0 ? 0 : k < KV_BLOCK ? k : KV_BLOCK;
            }
            /* the next block (a sequence's blocks need not be adjacent) is
             * fetched while this one is computed */
            bool more = p0 + KV_BLOCK <= maxpos;
            size_t next = more ? kv_block_at(kv, j->layer, seq, p0 + KV_BLOCK, kvh, hd) : blk;
            q_attn_block(&rows, (const uint8_t *)kv->k + blk * esz, (const uint8_t *)kv->v + blk * esz, f16, hd, scale,
                         more ? (const uint8_t *)kv->k + next * esz : NULL, more ? (const uint8_t *)kv->v + next * esz : NULL,
                         (size_t)KV_BLOCK * hd * esz);
            blk = next;
        }
        for (int r = 0; r < n; r++) {
            float inv = 1.0f / l[r];
            for (int d = 0; d < hd; d++) outs[r][d] *= inv;
        }
    }
}

/* One pool job in two phases: RoPE + K/V store of the chunk's entries,
 * then (once every cell is stored: attention reads the cells other chunks
 * stored) attention by (tile of entries, KV head). With own_cells (decode:
 * every entry its own sequence) phase 0 is empty, tiles are single entries
 * and each item ropes and stores its own head first. */
static void attn_task(void *arg, int phase, int chunk, int n_chunks) {
    const attn_job *j = arg;
    if (phase == 0) {
        rope_part(j, chunk, n_chunks);
        return;
    }
    int n_kv = j->c->m->hp.n_head_kv, tile = attn_tile(&j->c->m->hp, j->own_cells);
    int64_t n_tiles = (j->n + tile - 1) / tile, total = n_tiles * n_kv;
    /* (tile, KV head) items dealt round-robin: later entries attend to more
     * positions, so contiguous ranges would leave the last chunk the most */
    for (int64_t w = chunk; w < total; w += n_chunks) {
        int t = (int)(w / n_kv), kvh = (int)(w % n_kv);
        int i0 = t * tile, i1 = i0 + tile < j->n ? i0 + tile : j->n;
        if (j->own_cells) rope_store_head(j, i0, kvh);
        /* runs of one sequence within the tile share the blocks */
        for (int a = i0; a < i1;) {
            int e = a + 1;
            while (e < i1 && j->b->seq[j->off + e] == j->b->seq[j->off + a]) e++;
            attend_tile(j, a, e, kvh);
            a = e;
        }
    }
}

static void add_bias(float *y, const float *bias, int n_rows, int dim) {
    if (!bias) return;
    for (int i = 0; i < n_rows; i++)
        for (int d = 0; d < dim; d++) y[(size_t)i * dim + d] += bias[d];
}

/* Spans for --trace: one branch each when tracing is off. */
#define SPAN_START() double span_t = c->trace ? q_now() : 0
#define SPAN(name, cat, n)                                     \
    do {                                                       \
        if (c->trace) {                                        \
            double span_now = q_now();                         \
            qtrace_span(c->trace, name, cat, span_t, span_now, n); \
            span_t = span_now;                                 \
        }                                                      \
    } while (0)

static void qkv_ops(model_ctx *c, const model_layer *L, q_matmul_op ops[3]) {
    const model_hparams *hp = &c->m->hp;
    int qd = hp->n_head * hp->head_dim, kvd = hp->n_head_kv * hp->head_dim;
    ops[0] = (q_matmul_op){L->wq->data, L->wq->type, qd, c->q, L->pq, NULL};
    ops[1] = (q_matmul_op){L->wk->data, L->wk->type, kvd, c->k, L->pk, NULL};
    ops[2] = (q_matmul_op){L->wv->data, L->wv->type, kvd, c->v, L->pv, NULL};
}

/* Evaluates entries [off, off+n) of the batch; all K/V room is reserved. */
static void forward_chunk(model_ctx *c, const model_batch *b, int off, int n, float *logits, int *n_out) {
    const model *m = c->m;
    const model_hparams *hp = &m->hp;
    int d = hp->n_embd, hd = hp->head_dim;
    int qd = hp->n_head * hd, kvd = hp->n_head_kv * hd, ff = hp->n_ff;
    SPAN_START();
    double layer_t = span_t;
    const qtype_traits *et = qtype_get(m->tok_embd->type);
    size_t erow = qtype_row_size(m->tok_embd->type, d);
    for (int i = 0; i < n; i++)
        et->to_float((const uint8_t *)m->tok_embd->data + (size_t)b->tokens[off + i] * erow, c->x + (size_t)i * d, d);
    for (int i = 0; i < n; i++)
        rope_angles(c->rope_cs + (size_t)i * hp->n_rot, hp->n_rot, b->pos[off + i], hp->rope_freq_base,
                    hp->rope_freq_scale, m->rope_freq_factors);
    /* entries of distinct sequences (at most 64 compared) attend to cells of
     * their own only */
    bool own_cells = n <= 64;
    for (int i = 0; i < n && own_cells; i++)
        for (int k = 0; k < i; k++)
            if (b->seq[off + i] == b->seq[off + k]) own_cells = false;
    SPAN("embed", "op", n);

    /* Decode streams every weight once per token: while a thread waits
     * during one job it prefetches the start of its share of the next
     * matrix (q_matmul_prefetch_next). Prefill is compute-bound: no hints. */
    bool hint = n <= 4;
    for (int l = 0; l < hp->n_layer; l++) {
        const model_layer *L = &m->layers[l];
        if (c->trace) layer_t = span_t;
        /* RMSNorm, then Q, K and V in one pool job: the input is normalised
         * and converted once. */
        q_rms_in attn_in = {c->x, L->attn_norm, hp->rms_eps};
        q_matmul_op qkv[3];
        qkv_ops(c, L, qkv);
        q_matmul_op wo = {L->wo->data, L->wo->type, d, c->xb, L->po, c->x}; /* x += wo(att_out) */
        q_matmul_op gu[2] = {{L->w_gate->data, L->w_gate->type, ff, c->hb, L->p_gate, NULL},
                             {L->w_up->data, L->w_up->type, ff, c->hb2, L->p_up, NULL}};
        q_matmul_op down = {L->w_down->data, L->w_down->type, d, c->xb, L->p_down, c->x}; /* x += down(hb) */
        if (hint) q_matmul_prefetch_next(c->pool, &wo, 1, false, qd);
        q_matmul_multi_rms(c->pool, qkv, 3, d, &attn_in, c->xb, n);
        add_bias(c->q, L->bq, n, qd);
        add_bias(c->k, L->bk, n, kvd);
        add_bias(c->v, L->bv, n, kvd);
        SPAN("norm_qkv", "op", n);
        attn_job aj = {c, b, l, off, n, own_cells};
        int nth = qpool_size(c->pool), tile = attn_tile(hp, own_cells);
        int items = (n + tile - 1) / tile * hp->n_head_kv;
        int attn_chunks[2] = {own_cells ? 0 : n < nth ? n : nth, items < 4 * nth ? items : 4 * nth};
        qpool_run_chunks(c->pool, attn_task, &aj, 2, attn_chunks);
        SPAN("rope_attention", "op", n);
        if (hint) q_matmul_prefetch_next(c->pool, gu, 2, true, d);
        q_matmul_multi(c->pool, &wo, 1, qd, c->att_out, n);
        SPAN("attn_output", "op", n);

        q_rms_in ffn_in = {c->x, L->ffn_norm, hp->rms_eps};
        if (hint) q_matmul_prefetch_next(c->pool, &down, 1, false, ff);
        q_matmul_glu(c->pool, &gu[0], &gu[1], d, &ffn_in, c->xb, n); /* hb = silu(gate(norm x)) * up(norm x) */
        SPAN("norm_ffn_gate_up", "op", n);
        if (hint && l + 1 < hp->n_layer) {
            q_matmul_op next[3];
            qkv_ops(c, &m->layers[l + 1], next);
            q_matmul_prefetch_next(c->pool, next, 3, false, d);
        } else if (hint) {
            q_matmul_op out = {m->output->data, m->output->type, hp->n_vocab, NULL, m->p_output, NULL};
            q_matmul_prefetch_next(c->pool, &out, 1, false, d);
        }
        q_matmul_multi(c->pool, &down, 1, ff, c->hb, n);
        SPAN("ffn_down", "op", n);
        if (c->trace) {
            char name[32];
            snprintf(name, sizeof name, "blk.%d", l);
            qtrace_span(c->trace, name, "layer", layer_t, span_t, n);
        }
    }

    int k = 0;
    for (int i = 0; i < n; i++) {
        if (b->logits && !b->logits[off + i]) continue;
        q_rmsnorm(c->out_norm + (size_t)k * d, c->x + (size_t)i * d, m->output_norm, d, hp->rms_eps);
        k++;
    }
    if (k > 0)
        q_matmul_packed(c->pool, m->output->data, m->p_output, m->output->type, hp->n_vocab, d, c->out_norm, k,
                        logits + (size_t)*n_out * hp->n_vocab);
    *n_out += k;
    if (hint)
        for (int t = 0; t < qpool_size(c->pool); t++) qpool_set_wait_prefetch(c->pool, t, NULL, 0);
    SPAN("output", "op", k);
}

int model_forward(model_ctx *c, const model_batch *b, float *logits, qerr *e) {
    const model_hparams *hp = &c->m->hp;
    kv_cache *kv = &c->kv;
    if (b->n <= 0) return 0;
    /* Validate the whole batch before touching the cache. */
    int *next = calloc((size_t)kv->n_seq, sizeof(int));
    if (!next) return qerr_set(e, "out of memory");
    for (int s = 0; s < kv->n_seq; s++) next[s] = kv->seqs[s].n_pos;
    for (int i = 0; i < b->n; i++) {
        int t = b->tokens[i], s = b->seq[i], p = b->pos[i];
        if (t < 0 || t >= hp->n_vocab) { free(next); return qerr_set(e, "token id %d out of range (vocabulary of %d)", t, hp->n_vocab); }
        if (s < 0 || s >= kv->n_seq) { free(next); return qerr_set(e, "sequence id %d out of range (0..%d)", s, kv->n_seq - 1); }
        if (p != next[s]) {
            int want = next[s];
            free(next);
            return qerr_set(e, "entry %d: position %d of sequence %d, expected %d", i, p, s, want);
        }
        next[s]++;
    }
    /* Reserve all room first: a batch either fits entirely or changes nothing. */
    int cells_needed = 0;
    for (int s = 0; s < kv->n_seq; s++) {
        int have = kv->seqs[s].n_blocks, need = (next[s] + KV_BLOCK - 1) / KV_BLOCK;
        if (need > have) cells_needed += need - have;
    }
    if (cells_needed > kv->n_free) {
        free(next);
        return qerr_set(e, "context full: the batch needs %d more KV blocks of %d cells, %d are free", cells_needed, KV_BLOCK,
                        kv->n_free);
    }
    for (int s = 0; s < kv->n_seq; s++)
        if (next[s] > kv->seqs[s].n_pos && kv_cache_seq_reserve(kv, s, next[s], e)) { free(next); return -1; }

    int n_out = 0;
    for (int off = 0; off < b->n; off += c->n_batch_max) {
        int n = b->n - off < c->n_batch_max ? b->n - off : c->n_batch_max;
        /* Positions become visible to attention chunk by chunk. */
        for (int i = off; i < off + n; i++) {
            kv_seq *s = &kv->seqs[b->seq[i]];
            if (b->pos[i] + 1 > s->n_pos) s->n_pos = b->pos[i] + 1;
        }
        forward_chunk(c, b, off, n, logits, &n_out);
    }
    free(next);
    return 0;
}
