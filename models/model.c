/* model.c — reading hyper-parameters and binding weights for decoder models.
 * Every shape is checked against the hyper-parameters; a missing or
 * inconsistent value is reported, never guessed. */
#include "models/models.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int need_int(const gguf *g, const char *arch, const char *suffix, int *out, qerr *e) {
    char key[128];
    int64_t v;
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (!gguf_get_int(g, key, &v)) {
        const gguf_value *a = gguf_get(g, key);
        if (a && a->type == GGUF_ARRAY && a->v.arr.raw && a->v.arr.n > 0) {
            /* per-layer arrays: accept only when uniform */
            v = gguf_arr_int(a, 0);
            for (uint64_t i = 1; i < a->v.arr.n; i++)
                if (gguf_arr_int(a, i) != v) return qerr_set(e, "%s varies per layer; not supported", key);
        } else {
            return qerr_set(e, "missing hyper-parameter %s", key);
        }
    }
    if (v <= 0 || v > (1 << 30)) return qerr_set(e, "hyper-parameter %s = %lld is out of range", key, (long long)v);
    *out = (int)v;
    return 0;
}

static bool opt_int(const gguf *g, const char *arch, const char *suffix, int *out) {
    char key[128];
    int64_t v;
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (!gguf_get_int(g, key, &v) || v <= 0 || v > (1 << 30)) return false;
    *out = (int)v;
    return true;
}

static bool opt_float(const gguf *g, const char *arch, const char *suffix, float *out) {
    char key[128];
    double v;
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (!gguf_get_float(g, key, &v)) return false;
    *out = (float)v;
    return true;
}

static int load_hparams(const gguf *g, model_hparams *hp, qerr *e) {
    memset(hp, 0, sizeof *hp);
    const char *arch = gguf_get_str(g, "general.architecture");
    if (!arch) return qerr_set(e, "missing general.architecture");
    if (strcmp(arch, "llama") == 0 || strcmp(arch, "mistral") == 0) hp->arch = ARCH_LLAMA, hp->rope_kind = ROPE_NORM;
    else if (strcmp(arch, "qwen2") == 0) hp->arch = ARCH_QWEN2, hp->rope_kind = ROPE_NEOX;
    else return qerr_set(e, "architecture '%s' is not supported (llama, mistral, qwen2)", arch);
    snprintf(hp->arch_name, sizeof hp->arch_name, "%s", arch);

    if (need_int(g, arch, "embedding_length", &hp->n_embd, e) || need_int(g, arch, "block_count", &hp->n_layer, e) ||
        need_int(g, arch, "attention.head_count", &hp->n_head, e) ||
        need_int(g, arch, "feed_forward_length", &hp->n_ff, e))
        return -1;
    if (!opt_int(g, arch, "attention.head_count_kv", &hp->n_head_kv)) hp->n_head_kv = hp->n_head;
    if (!opt_int(g, arch, "context_length", &hp->n_ctx_train)) hp->n_ctx_train = 2048;
    if (hp->n_head % hp->n_head_kv != 0)
        return qerr_set(e, "head_count %d is not a multiple of head_count_kv %d", hp->n_head, hp->n_head_kv);
    if (!opt_int(g, arch, "attention.key_length", &hp->head_dim)) {
        if (hp->n_embd % hp->n_head != 0)
            return qerr_set(e, "embedding_length %d is not a multiple of head_count %d", hp->n_embd, hp->n_head);
        hp->head_dim = hp->n_embd / hp->n_head;
    }
    /* real models use 64..256; the cache store keeps a row on the stack */
    if (hp->head_dim < 1 || hp->head_dim > 512)
        return qerr_set(e, "head size %d is out of range (1..512)", hp->head_dim);
    int vlen;
    if (opt_int(g, arch, "attention.value_length", &vlen) && vlen != hp->head_dim)
        return qerr_set(e, "value_length %d differs from key_length %d; not supported", vlen, hp->head_dim);
    if (!opt_int(g, arch, "rope.dimension_count", &hp->n_rot)) hp->n_rot = hp->head_dim;
    if (hp->n_rot > hp->head_dim || hp->n_rot % 2)
        return qerr_set(e, "rope.dimension_count %d does not fit head size %d", hp->n_rot, hp->head_dim);
    if (!opt_float(g, arch, "attention.layer_norm_rms_epsilon", &hp->rms_eps))
        return qerr_set(e, "missing hyper-parameter %s.attention.layer_norm_rms_epsilon", arch);
    if (!(hp->rms_eps > 0 && hp->rms_eps < 1)) return qerr_set(e, "rms epsilon %g is out of range", hp->rms_eps);
    if (!opt_float(g, arch, "rope.freq_base", &hp->rope_freq_base)) hp->rope_freq_base = 10000.0f;
    if (!(hp->rope_freq_base > 1)) return qerr_set(e, "rope.freq_base %g is out of range", hp->rope_freq_base);
    hp->rope_freq_scale = 1.0f;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    const char *st = gguf_get_str(g, key);
    float factor = 0;
    if (!opt_float(g, arch, "rope.scaling.factor", &factor)) {
        float lin;
        if (opt_float(g, arch, "rope.scale_linear", &lin)) factor = lin, st = st ? st : "linear";
    }
    if (st && strcmp(st, "none") != 0) {
        if (strcmp(st, "linear") == 0) {
            if (!(factor > 0)) return qerr_set(e, "linear rope scaling without a positive factor");
            hp->rope_freq_scale = 1.0f / factor;
        } else if (strcmp(st, "llama3") != 0) {
            /* llama3 scaling is carried by the rope_freqs.weight tensor */
            return qerr_set(e, "rope scaling type '%s' is not supported (none, linear, llama3)", st);
        }
    }
    const gguf_value *toks = gguf_get(g, "tokenizer.ggml.tokens");
    int vs;
    if (opt_int(g, arch, "vocab_size", &vs)) hp->n_vocab = vs;
    else if (toks && toks->type == GGUF_ARRAY) hp->n_vocab = (int)toks->v.arr.n;
    else {
        const gguf_tensor *t = gguf_find_tensor(g, "token_embd.weight");
        if (!t) return qerr_set(e, "missing tensor token_embd.weight");
        hp->n_vocab = (int)t->ne[1];
    }
    return 0;
}

void model_free(model *m) {
    if (!m) return;
    if (m->layers) {
        for (int l = 0; l < m->hp.n_layer; l++) {
            model_layer *L = &m->layers[l];
            free(L->attn_norm); free(L->ffn_norm); free(L->bq); free(L->bk); free(L->bv);
            q_packed_free(L->pq); q_packed_free(L->pk); q_packed_free(L->pv); q_packed_free(L->po);
            q_packed_free(L->p_gate); q_packed_free(L->p_up); q_packed_free(L->p_down);
        }
        free(m->layers);
    }
    q_packed_free(m->p_output);
    free(m->pack_arena);
    free(m->output_norm);
    free(m->rope_freq_factors);
    gguf_close(m->g);
    free(m);
}

/* Repacks a weight for the wide kernels into the model's arena at *off when
 * QUIRE_REPACK allows and the current ISA has packed kernels for its type
 * (a NULL arena only sums the sizes into *off); else leaves *out NULL. */
static int repack_one(model *m, const gguf_tensor *t, q_packed **out, size_t *off, qerr *e) {
    *out = NULL;
    size_t sz = q_pack_size(t->type, t->ne[1], t->ne[0]);
    if (!sz) return 0;
    if (!m->pack_arena) {
        *off += sz;
        return 0;
    }
    *out = q_pack_into(t->data, t->type, t->ne[1], t->ne[0], m->pack_arena + *off, e);
    if (!*out) return qerr_wrap(e, "repacking %s (QUIRE_REPACK=0 uses the weights in place)", t->name);
    *off += sz;
    m->packed_bytes += q_packed_bytes(*out);
    /* Every matmul of this weight now reads the packed copy (decode
     * included), so the mapped original need not stay resident: one copy
     * of the weights in RAM, not two. */
    gguf_drop_pages(m->g, t->data, qtype_row_size(t->type, t->ne[0]) * (size_t)t->ne[1]);
    return 0;
}

/* All packed matrices live in one arena, in the order decode reads them
 * (layer by layer: q k v o gate up down, then the output): every byte is on
 * huge pages (per-matrix allocations left each matrix's tail, a quarter of
 * TinyLlama's weights, on 4 KiB pages) and a token's weights are one
 * forward stream. */
static int model_repack(model *m, qerr *e) {
    int mode = q_repack_mode(e);
    if (mode <= 0) return mode;
    for (int pass = 0; pass < 2; pass++) {
        size_t off = 0;
        for (int l = 0; l < m->hp.n_layer; l++) {
            model_layer *L = &m->layers[l];
            if (repack_one(m, L->wq, &L->pq, &off, e) || repack_one(m, L->wk, &L->pk, &off, e) ||
                repack_one(m, L->wv, &L->pv, &off, e) || repack_one(m, L->wo, &L->po, &off, e) ||
                repack_one(m, L->w_gate, &L->p_gate, &off, e) || repack_one(m, L->w_up, &L->p_up, &off, e) ||
                repack_one(m, L->w_down, &L->p_down, &off, e))
                return -1;
        }
        if (repack_one(m, m->output, &m->p_output, &off, e)) return -1;
        if (pass == 0) {
            if (off == 0) return 0;
            m->pack_arena = q_huge_alloc(off);
            if (!m->pack_arena) return qerr_set(e, "out of memory for %zu bytes of packed weights", off);
        }
    }
    return 0;
}

int model_load(model **out, const char *path, qerr *e) {
    *out = NULL;
    if (q_isa_init(e)) return -1; /* a bad QUIRE_ISA is reported here */
    model *m = calloc(1, sizeof *m);
    if (!m) return qerr_set(e, "out of memory");
    if (gguf_open(&m->g, path, e)) { free(m); return -1; }
    const gguf *g = m->g;
    model_hparams *hp = &m->hp;
    if (load_hparams(g, hp, e)) goto fail;
    int d = hp->n_embd, qd = hp->n_head * hp->head_dim, kvd = hp->n_head_kv * hp->head_dim;
    if (model_bind(g, "token_embd.weight", d, hp->n_vocab, true, &m->tok_embd, e)) goto fail;
    if (model_bind(g, "output.weight", d, hp->n_vocab, false, &m->output, e)) goto fail;
    if (!m->output) m->output = m->tok_embd; /* tied embeddings */
    if (model_bind_vec(g, "output_norm.weight", d, true, &m->output_norm, e)) goto fail;
    const gguf_tensor *rf = gguf_find_tensor(g, "rope_freqs.weight");
    if (rf) {
        if (model_bind_vec(g, "rope_freqs.weight", hp->n_rot / 2, true, &m->rope_freq_factors, e)) goto fail;
    }
    m->layers = calloc((size_t)hp->n_layer, sizeof(model_layer));
    if (!m->layers) { qerr_set(e, "out of memory"); goto fail; }
    for (int l = 0; l < hp->n_layer; l++) {
        model_layer *L = &m->layers[l];
        char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", l, s), n)
        if (model_bind_vec(g, NAME("attn_norm.weight"), d, true, &L->attn_norm, e) ||
            model_bind(g, NAME("attn_q.weight"), d, qd, true, &L->wq, e) ||
            model_bind(g, NAME("attn_k.weight"), d, kvd, true, &L->wk, e) ||
            model_bind(g, NAME("attn_v.weight"), d, kvd, true, &L->wv, e) ||
            model_bind(g, NAME("attn_output.weight"), qd, d, true, &L->wo, e) ||
            model_bind_vec(g, NAME("ffn_norm.weight"), d, true, &L->ffn_norm, e) ||
            model_bind(g, NAME("ffn_gate.weight"), d, hp->n_ff, true, &L->w_gate, e) ||
            model_bind(g, NAME("ffn_up.weight"), d, hp->n_ff, true, &L->w_up, e) ||
            model_bind(g, NAME("ffn_down.weight"), hp->n_ff, d, true, &L->w_down, e))
            goto fail;
        bool need_bias = hp->arch == ARCH_QWEN2;
        if (model_bind_vec(g, NAME("attn_q.bias"), qd, need_bias, &L->bq, e) ||
            model_bind_vec(g, NAME("attn_k.bias"), kvd, need_bias, &L->bk, e) ||
            model_bind_vec(g, NAME("attn_v.bias"), kvd, need_bias, &L->bv, e))
            goto fail;
#undef NAME
    }
    if (model_repack(m, e)) goto fail;
    *out = m;
    return 0;
fail:
    qerr_wrap(e, "%s", path);
    model_free(m);
    return -1;
}

int64_t model_n_params(const model *m) {
    int64_t n = 0;
    for (int64_t i = 0; i < m->g->n_tensors; i++) {
        const gguf_tensor *t = &m->g->tensors[i];
        n += t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    }
    return n;
}

uint64_t model_weight_bytes(const model *m) {
    /* Everything but the embedding table (one row read per token) is read
     * once per decoded token. */
    uint64_t n = 0;
    for (int64_t i = 0; i < m->g->n_tensors; i++) {
        const gguf_tensor *t = &m->g->tensors[i];
        if (t == m->tok_embd && m->output != m->tok_embd) continue;
        n += t->nbytes;
    }
    return n;
}
