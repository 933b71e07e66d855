/* bert.c — BERT encoder forward pass for embeddings (the layout GGUF
 * converters write for bert / bge / e5 style models), scalar reference.
 * Post-LayerNorm blocks: x = LN(x + Attn(x)); x = LN(x + FFN(x)). */
#include "models/models.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int bind(const gguf *g, const char *name, int64_t ne0, int64_t ne1, const gguf_tensor **out, qerr *e) {
    const gguf_tensor *t = gguf_find_tensor(g, name);
    *out = t;
    if (!t) return qerr_set(e, "missing tensor %s", name);
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1)
        return qerr_set(e, "tensor %s has shape [%lld, %lld], expected [%lld, %lld]", name, (long long)t->ne[0],
                        (long long)t->ne[1], (long long)ne0, (long long)ne1);
    if (!qtype_is_supported(t->type))
        return qerr_set(e, "tensor %s has type %s, which this build cannot compute with", name, qtype_get(t->type)->name);
    return 0;
}

static int bind_vec(const gguf *g, const char *name, int64_t n, float **out, qerr *e) {
    const gguf_tensor *t;
    *out = NULL;
    if (bind(g, name, n, 1, &t, e)) return -1;
    *out = malloc((size_t)n * sizeof(float));
    if (!*out) return qerr_set(e, "out of memory");
    qtype_get(t->type)->to_float(t->data, *out, n);
    return 0;
}

static int get_int(const gguf *g, const char *key, int *out, qerr *e) {
    int64_t v;
    if (!gguf_get_int(g, key, &v)) return qerr_set(e, "missing hyper-parameter %s", key);
    if (v <= 0 || v > (1 << 30)) return qerr_set(e, "hyper-parameter %s = %lld is out of range", key, (long long)v);
    *out = (int)v;
    return 0;
}

void bert_free(bert_model *m) {
    if (!m) return;
    if (m->layers)
        for (int l = 0; l < m->n_layer; l++) {
            bert_layer *L = &m->layers[l];
            free(L->bq); free(L->bk); free(L->bv); free(L->bo); free(L->b_up); free(L->b_down);
            free(L->attn_norm_w); free(L->attn_norm_b); free(L->out_norm_w); free(L->out_norm_b);
        }
    free(m->layers);
    free(m->embd_norm_w);
    free(m->embd_norm_b);
    gguf_close(m->g);
    free(m);
}

int bert_load(bert_model **out, const char *path, qerr *e) {
    *out = NULL;
    bert_model *m = calloc(1, sizeof *m);
    if (!m) return qerr_set(e, "out of memory");
    if (gguf_open(&m->g, path, e)) { free(m); return -1; }
    const gguf *g = m->g;
    const char *arch = gguf_get_str(g, "general.architecture");
    if (!arch || strcmp(arch, "bert") != 0) {
        qerr_set(e, "architecture '%s' is not a BERT encoder", arch ? arch : "(none)");
        goto fail;
    }
    if (get_int(g, "bert.embedding_length", &m->n_embd, e) || get_int(g, "bert.block_count", &m->n_layer, e) ||
        get_int(g, "bert.attention.head_count", &m->n_head, e) || get_int(g, "bert.feed_forward_length", &m->n_ff, e) ||
        get_int(g, "bert.context_length", &m->n_ctx_train, e))
        goto fail;
    if (m->n_embd % m->n_head) { qerr_set(e, "embedding_length %d is not a multiple of head_count %d", m->n_embd, m->n_head); goto fail; }
    double eps;
    if (!gguf_get_float(g, "bert.attention.layer_norm_epsilon", &eps) || !(eps > 0 && eps < 1)) {
        qerr_set(e, "missing or bad bert.attention.layer_norm_epsilon");
        goto fail;
    }
    m->eps = (float)eps;
    int64_t pt;
    m->pooling = gguf_get_int(g, "bert.pooling_type", &pt) ? (int)pt : POOL_MEAN;
    if (m->pooling < POOL_NONE || m->pooling > POOL_LAST) { qerr_set(e, "pooling type %d is not supported", m->pooling); goto fail; }
    const gguf_tensor *te = gguf_find_tensor(g, "token_embd.weight");
    if (!te) { qerr_set(e, "missing tensor token_embd.weight"); goto fail; }
    m->n_vocab = (int)te->ne[1];
    const gguf_tensor *tt = gguf_find_tensor(g, "token_types.weight");
    m->n_token_types = tt ? (int)tt->ne[1] : 0;
    int d = m->n_embd;
    if (bind(g, "token_embd.weight", d, m->n_vocab, &m->tok_embd, e) ||
        (tt && bind(g, "token_types.weight", d, m->n_token_types, &m->type_embd, e)) ||
        bind(g, "position_embd.weight", d, m->n_ctx_train, &m->pos_embd, e) ||
        bind_vec(g, "token_embd_norm.weight", d, &m->embd_norm_w, e) ||
        bind_vec(g, "token_embd_norm.bias", d, &m->embd_norm_b, e))
        goto fail;
    m->layers = calloc((size_t)m->n_layer, sizeof(bert_layer));
    if (!m->layers) { qerr_set(e, "out of memory"); goto fail; }
    for (int l = 0; l < m->n_layer; l++) {
        bert_layer *L = &m->layers[l];
        char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", l, s), n)
        if (bind(g, NAME("attn_q.weight"), d, d, &L->wq, e) || bind_vec(g, NAME("attn_q.bias"), d, &L->bq, e) ||
            bind(g, NAME("attn_k.weight"), d, d, &L->wk, e) || bind_vec(g, NAME("attn_k.bias"), d, &L->bk, e) ||
            bind(g, NAME("attn_v.weight"), d, d, &L->wv, e) || bind_vec(g, NAME("attn_v.bias"), d, &L->bv, e) ||
            bind(g, NAME("attn_output.weight"), d, d, &L->wo, e) || bind_vec(g, NAME("attn_output.bias"), d, &L->bo, e) ||
            bind_vec(g, NAME("attn_output_norm.weight"), d, &L->attn_norm_w, e) ||
            bind_vec(g, NAME("attn_output_norm.bias"), d, &L->attn_norm_b, e) ||
            bind(g, NAME("ffn_up.weight"), d, m->n_ff, &L->w_up, e) || bind_vec(g, NAME("ffn_up.bias"), m->n_ff, &L->b_up, e) ||
            bind(g, NAME("ffn_down.weight"), m->n_ff, d, &L->w_down, e) || bind_vec(g, NAME("ffn_down.bias"), d, &L->b_down, e) ||
            bind_vec(g, NAME("layer_output_norm.weight"), d, &L->out_norm_w, e) ||
            bind_vec(g, NAME("layer_output_norm.bias"), d, &L->out_norm_b, e))
            goto fail;
#undef NAME
    }
    *out = m;
    return 0;
fail:
    qerr_wrap(e, "%s", path);
    bert_free(m);
    return -1;
}

static void add_bias(float *y, const float *b, int n, int dim) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < dim; j++) y[(size_t)i * dim + j] += b[j];
}

static void embed_row(const gguf_tensor *t, int64_t row, int d, float *out) {
    const qtype_traits *tr = qtype_get(t->type);
    tr->to_float((const uint8_t *)t->data + (size_t)row * qtype_row_size(t->type, d), out, d);
}

typedef struct battn_job {
    const bert_model *m;
    const float *q, *k, *v;
    float *out, *scores; /* scores: [nth][max_len] */
    const int *start;
    const int *text_of; /* text index of each token */
    int n_tokens, max_len;
} battn_job;

static void battn_task(void *arg, int ith, int nth) {
    const battn_job *j = arg;
    int d = j->m->n_embd, hd = d / j->m->n_head;
    float scale = 1.0f / sqrtf((float)hd);
    float *sc = j->scores + (size_t)ith * j->max_len;
    int64_t total = (int64_t)j->n_tokens * j->m->n_head;
    for (int64_t w = total * ith / nth; w < total * (ith + 1) / nth; w++) {
        int i = (int)(w / j->m->n_head), h = (int)(w % j->m->n_head);
        int t = j->text_of[i], s0 = j->start[t], s1 = j->start[t + 1];
        const float *q = j->q + (size_t)i * d + (size_t)h * hd;
        for (int p = s0; p < s1; p++) {
            const float *k = j->k + (size_t)p * d + (size_t)h * hd;
            float s = 0;
            for (int x = 0; x < hd; x++) s += q[x] * k[x];
            sc[p - s0] = s * scale;
        }
        q_softmax(sc, s1 - s0);
        float *o = j->out + (size_t)i * d + (size_t)h * hd;
        for (int x = 0; x < hd; x++) o[x] = 0;
        for (int p = s0; p < s1; p++) {
            const float *v = j->v + (size_t)p * d + (size_t)h * hd;
            float a = sc[p - s0];
            for (int x = 0; x < hd; x++) o[x] += a * v[x];
        }
    }
}

int bert_embed(const bert_model *m, qpool *pool, const int32_t *tokens, const int *start, int n_texts, int pooling,
               float *out, qerr *e) {
    if (n_texts <= 0) return 0;
    if (pooling < 0) pooling = m->pooling;
    if (pooling == POOL_NONE) return qerr_set(e, "the model has no pooling; choose mean or cls");
    int n = start[n_texts] - start[0], d = m->n_embd, ff = m->n_ff, max_len = 0;
    if (start[0] != 0) return qerr_set(e, "text offsets must start at 0");
    for (int t = 0; t < n_texts; t++) {
        int len = start[t + 1] - start[t];
        if (len <= 0) return qerr_set(e, "text %d has no tokens", t);
        if (len > m->n_ctx_train) return qerr_set(e, "text %d has %d tokens; the model's context is %d", t, len, m->n_ctx_train);
        if (len > max_len) max_len = len;
    }
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->n_vocab) return qerr_set(e, "token id %d out of range (vocabulary of %d)", tokens[i], m->n_vocab);
    size_t nd = (size_t)n * d;
    float *x = malloc(nd * sizeof(float)), *tmp = malloc(nd * sizeof(float)), *q = malloc(nd * sizeof(float));
    float *k = malloc(nd * sizeof(float)), *v = malloc(nd * sizeof(float)), *att = malloc(nd * sizeof(float));
    float *hb = malloc((size_t)n * ff * sizeof(float)), *row = malloc((size_t)d * sizeof(float));
    int *text_of = malloc((size_t)n * sizeof(int));
    float *scores = malloc((size_t)qpool_size(pool) * (size_t)max_len * sizeof(float));
    int rc = 0;
    if (!x || !tmp || !q || !k || !v || !att || !hb || !row || !text_of || !scores) { rc = qerr_set(e, "out of memory"); goto done; }
    for (int t = 0; t < n_texts; t++)
        for (int i = start[t]; i < start[t + 1]; i++) text_of[i] = t;

    /* embeddings: token + token type 0 + absolute position, then LayerNorm */
    for (int i = 0; i < n; i++) {
        float *xi = x + (size_t)i * d;
        embed_row(m->tok_embd, tokens[i], d, xi);
        if (m->type_embd) {
            embed_row(m->type_embd, 0, d, row);
            for (int j = 0; j < d; j++) xi[j] += row[j];
        }
        embed_row(m->pos_embd, i - start[text_of[i]], d, row);
        for (int j = 0; j < d; j++) xi[j] += row[j];
        q_layernorm(xi, xi, m->embd_norm_w, m->embd_norm_b, d, m->eps);
    }
    for (int l = 0; l < m->n_layer; l++) {
        const bert_layer *L = &m->layers[l];
        q_matmul(pool, L->wq->data, L->wq->type, d, d, x, n, q);
        q_matmul(pool, L->wk->data, L->wk->type, d, d, x, n, k);
        q_matmul(pool, L->wv->data, L->wv->type, d, d, x, n, v);
        add_bias(q, L->bq, n, d);
        add_bias(k, L->bk, n, d);
        add_bias(v, L->bv, n, d);
        battn_job j = {m, q, k, v, att, scores, start, text_of, n, max_len};
        qpool_run(pool, battn_task, &j);
        q_matmul(pool, L->wo->data, L->wo->type, d, d, att, n, tmp);
        add_bias(tmp, L->bo, n, d);
        for (size_t i = 0; i < nd; i++) x[i] += tmp[i];
        for (int i = 0; i < n; i++) q_layernorm(x + (size_t)i * d, x + (size_t)i * d, L->attn_norm_w, L->attn_norm_b, d, m->eps);
        q_matmul(pool, L->w_up->data, L->w_up->type, ff, d, x, n, hb);
        add_bias(hb, L->b_up, n, ff);
        for (size_t i = 0; i < (size_t)n * ff; i++) hb[i] = q_gelu(hb[i]);
        q_matmul(pool, L->w_down->data, L->w_down->type, d, ff, hb, n, tmp);
        add_bias(tmp, L->b_down, n, d);
        for (size_t i = 0; i < nd; i++) x[i] += tmp[i];
        for (int i = 0; i < n; i++) q_layernorm(x + (size_t)i * d, x + (size_t)i * d, L->out_norm_w, L->out_norm_b, d, m->eps);
    }
    for (int t = 0; t < n_texts; t++) {
        float *o = out + (size_t)t * d;
        int s0 = start[t], s1 = start[t + 1];
        if (pooling == POOL_MEAN) {
            for (int j = 0; j < d; j++) {
                double s = 0;
                for (int i = s0; i < s1; i++) s += x[(size_t)i * d + j];
                o[j] = (float)(s / (s1 - s0));
            }
        } else {
            memcpy(o, x + (size_t)(pooling == POOL_CLS ? s0 : s1 - 1) * d, (size_t)d * sizeof(float));
        }
        double norm = 0;
        for (int j = 0; j < d; j++) norm += (double)o[j] * o[j];
        float inv = norm > 0 ? (float)(1.0 / sqrt(norm)) : 0.0f;
        for (int j = 0; j < d; j++) o[j] *= inv;
    }
done:
    free(x); free(tmp); free(q); free(k); free(v); free(att); free(hb); free(row); free(text_of); free(scores);
    return rc;
}
