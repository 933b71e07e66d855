/* quantize_model.c — converts a GGUF model to another whole-file type
 * ("Q4_K_M", "Q8_0", ...), following the reference implementation's rules
 * (llama.cpp's llama-quantize, no importance matrix, not --pure) for which
 * tensors are quantized and to what:
 *   - only tensors named "*weight" with 2 or more dimensions are converted;
 *     norms, biases and a few small special tensors keep their type;
 *   - output.weight (or token_embd.weight when there is no output.weight,
 *     i.e. tied embeddings) gets Q6_K for the quantized types, Q8_0 when its
 *     rows do not split into blocks;
 *   - the _M/_L mixes give more bits to attn_v and ffn_down in the layers
 *     chosen by use_more_bits() (the first and last eighth and every third
 *     layer between);
 *   - a K-quant whose row length is not a multiple of 256 falls back to a
 *     32-block type of similar size (F16 if even that does not fit).
 * Tensors are written in the reference's order (non-layer tensors first,
 * then by layer number, by name within a group), so that the output lines
 * up with the reference's files. */
#include "engine/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

/* LLAMA_FTYPE values (general.file_type). */
enum {
    FT_ALL_F32 = 0, FT_F16 = 1, FT_Q4_0 = 2, FT_Q4_1 = 3, FT_Q8_0 = 7, FT_Q5_0 = 8, FT_Q5_1 = 9,
    FT_Q2_K = 10, FT_Q3_K_S = 11, FT_Q3_K_M = 12, FT_Q3_K_L = 13, FT_Q4_K_S = 14, FT_Q4_K_M = 15,
    FT_Q5_K_S = 16, FT_Q5_K_M = 17, FT_Q6_K = 18, FT_BF16 = 32,
};

typedef struct ftype_info {
    const char *name;
    int ftype;
    int base; /* the type most tensors get */
} ftype_info;

static const ftype_info ftypes[] = {
    {"F32", FT_ALL_F32, QT_F32},   {"F16", FT_F16, QT_F16},       {"BF16", FT_BF16, QT_BF16},
    {"Q8_0", FT_Q8_0, QT_Q8_0},    {"Q4_0", FT_Q4_0, QT_Q4_0},    {"Q4_1", FT_Q4_1, QT_Q4_1},
    {"Q5_0", FT_Q5_0, QT_Q5_0},    {"Q5_1", FT_Q5_1, QT_Q5_1},    {"Q2_K", FT_Q2_K, QT_Q2_K},
    {"Q3_K", FT_Q3_K_M, QT_Q3_K},  {"Q3_K_S", FT_Q3_K_S, QT_Q3_K}, {"Q3_K_M", FT_Q3_K_M, QT_Q3_K},
    {"Q3_K_L", FT_Q3_K_L, QT_Q3_K}, {"Q4_K", FT_Q4_K_M, QT_Q4_K}, {"Q4_K_S", FT_Q4_K_S, QT_Q4_K},
    {"Q4_K_M", FT_Q4_K_M, QT_Q4_K}, {"Q5_K", FT_Q5_K_M, QT_Q5_K}, {"Q5_K_S", FT_Q5_K_S, QT_Q5_K},
    {"Q5_K_M", FT_Q5_K_M, QT_Q5_K}, {"Q6_K", FT_Q6_K, QT_Q6_K},
};

static const ftype_info *ftype_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof ftypes / sizeof *ftypes; i++)
        if (strcasecmp(ftypes[i].name, name) == 0) return &ftypes[i];
    return NULL;
}

int q_quant_ftype_from_name(const char *type_name) {
    const ftype_info *f = ftype_find(type_name);
    return f ? f->ftype : -1;
}

static bool is_quantized(int t) { return t != QT_F32 && t != QT_F16 && t != QT_BF16; }
static bool contains(const char *s, const char *needle) { return strstr(s, needle) != NULL; }
static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* ggml_n_dims: trailing dimensions of size 1 do not count. */
static int tensor_n_dims(const gguf_tensor *t) {
    for (int d = GGUF_MAX_DIMS - 1; d >= 1; d--)
        if (t->ne[d] > 1) return d + 1;
    return 1;
}

/* Whether the reference converts this tensor at all. */
static bool should_quantize(const gguf_tensor *t) {
    const char *n = t->name;
    if (!ends_with(n, "weight") || tensor_n_dims(t) < 2) return false;
    static const char *const keep[] = {
        "_norm.weight", "ffn_gate_inp.weight", "altup", "laurel", "ssm_conv1d.weight",
        "shortconv.conv.weight", "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight",
        "time_mix_w2.weight", "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight",
        "time_mix_a0.weight", "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight",
        "time_mix_g2.weight", "time_mix_decay_w1.weight", "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight", "attn_rel_b.weight",
    };
    for (size_t i = 0; i < sizeof keep / sizeof *keep; i++)
        if (contains(n, keep[i])) return false;
    if (strcmp(n, "position_embd.weight") == 0 || strcmp(n, "token_types.weight") == 0) return false;
    return true;
}

/* State the mix rules need, gathered from the whole model first. */
typedef struct mix_state {
    int ftype;
    bool has_output;
    int n_gqa, n_expert, n_layer;
    int n_attention_wv, i_attention_wv, i_ffn_down;
    int n_fallback;
} mix_state;

static bool use_more_bits(int i_layer, int n_layers) {
    return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

/* The reference's per-tensor choice (llama_tensor_get_type) for the types
 * this engine can produce; IQ-only branches are left out. */
static int mix_tensor_type(mix_state *s, int t, const gguf_tensor *ten, const char *arch) {
    const char *name = ten->name;
    const int ft = s->ftype;
    const bool falcon = strcmp(arch, "falcon") == 0;
    int64_t nx = ten->ne[0];

    if (strcmp(name, "output.weight") == 0 || (!s->has_output && strcmp(name, "token_embd.weight") == 0)) {
        if (falcon || nx % qtype_get(t)->blck != 0) t = QT_Q8_0;
        else if (t != QT_Q8_0) t = QT_Q6_K;
    } else if (strcmp(name, "token_embd.weight") == 0) {
        /* keeps the base type (special cases exist only for IQ types) */
    } else if (contains(name, "attn_v.weight")) {
        if (ft == FT_Q2_K) t = s->n_gqa >= 4 ? QT_Q4_K : QT_Q3_K;
        else if (ft == FT_Q3_K_M) t = s->i_attention_wv < 2 ? QT_Q5_K : QT_Q4_K;
        else if (ft == FT_Q3_K_L) t = QT_Q5_K;
        else if ((ft == FT_Q4_K_M || ft == FT_Q5_K_M) && use_more_bits(s->i_attention_wv, s->n_attention_wv))
            t = QT_Q6_K;
        else if (ft == FT_Q4_K_S && s->i_attention_wv < 4) t = QT_Q5_K;
        /* (the reference also bumps Q3_K/Q4_K to Q5_K for 70B Llamas, a
         * model-size class this code does not detect) */
        if (s->n_expert == 8) t = QT_Q8_0;
        s->i_attention_wv++;
    } else if (contains(name, "attn_k.weight")) {
        if (s->n_expert == 8) t = QT_Q8_0;
    } else if (contains(name, "ffn_down")) {
        int i_layer = s->i_ffn_down, n_layer = s->n_layer;
        if (s->n_expert > 1) { /* experts are not consecutive: take the layer from the name */
            int l;
            if (sscanf(name, "blk.%d.", &l) == 1) i_layer = l;
        }
        if (ft == FT_Q2_K) t = QT_Q3_K;
        else if (ft == FT_Q3_K_M)
            t = i_layer < n_layer / 16 ? QT_Q5_K : (!falcon || use_more_bits(i_layer, n_layer)) ? QT_Q4_K : QT_Q3_K;
        else if (ft == FT_Q3_K_L) t = falcon ? QT_Q4_K : QT_Q5_K;
        else if (ft == FT_Q4_K_M) {
            if (falcon)
                t = i_layer < n_layer / 16 ? QT_Q6_K : use_more_bits(i_layer, n_layer) ? QT_Q5_K : QT_Q4_K;
            else if (use_more_bits(i_layer, n_layer))
                t = QT_Q6_K;
        } else if (ft == FT_Q5_K_M && use_more_bits(i_layer, n_layer)) t = QT_Q6_K;
        else if (ft == FT_Q4_K_S && !falcon && i_layer < n_layer / 8) t = QT_Q5_K;
        s->i_ffn_down++;
    } else if (contains(name, "attn_output.weight")) {
        if (!falcon) {
            if (s->n_expert == 8) {
                if (ft == FT_Q2_K || ft == FT_Q3_K_S || ft == FT_Q3_K_M || ft == FT_Q4_K_S || ft == FT_Q4_K_M)
                    t = QT_Q5_K;
            } else {
                if (ft == FT_Q2_K) t = QT_Q3_K;
                else if (ft == FT_Q3_K_M) t = QT_Q4_K;
                else if (ft == FT_Q3_K_L) t = QT_Q5_K;
            }
        } else if (ft == FT_Q3_K_L) {
            t = QT_Q4_K;
        }
    } else if (contains(name, "attn_qkv.weight")) {
        if (ft == FT_Q3_K_M || ft == FT_Q3_K_L) t = QT_Q4_K;
        else if (ft == FT_Q4_K_M) t = QT_Q5_K;
        else if (ft == FT_Q5_K_M) t = QT_Q6_K;
    }

    /* Rows must split into whole blocks. The reference's fallbacks: Q2_K,
     * Q3_K -> IQ4_NL, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0. */
    if (nx % qtype_get(t)->blck != 0) {
        switch (t) {
        case QT_Q2_K: case QT_Q3_K: t = QT_IQ4_NL; break;
        case QT_Q4_K: t = QT_Q5_0; break;
        case QT_Q5_K: t = QT_Q5_1; break;
        case QT_Q6_K: t = QT_Q8_0; break;
        default: return -1;
        }
        if (nx % qtype_get(t)->blck != 0) t = QT_F16;
        s->n_fallback++;
    }
    return t;
}

/* The reference's tensor order: tensors outside the layers first, then
 * layer by layer; by name (strcmp) within each group. */
static int layer_of(const char *name) {
    int l = -1;
    if (sscanf(name, "blk.%d.", &l) != 1) l = -1;
    return l;
}
static int cmp_tensor_order(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    int lx = layer_of(x->name), ly = layer_of(y->name);
    if (lx != ly) return lx < ly ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* First element of an integer key that may also be a per-layer array. */
static int64_t arch_int(const gguf *g, const char *arch, const char *suffix, int64_t dflt) {
    char key[256];
    int64_t v;
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (gguf_get_int(g, key, &v)) return v;
    const gguf_value *a = gguf_get(g, key);
    if (a && a->type == GGUF_ARRAY && a->v.arr.raw && a->v.arr.n > 0 && a->v.arr.elem != GGUF_F32 &&
        a->v.arr.elem != GGUF_F64 && a->v.arr.elem != GGUF_BOOL)
        return gguf_arr_int(a, 0);
    return dflt;
}

/* One conversion job, split by rows over the pool. */
typedef struct convert_job {
    const gguf_tensor *src;
    int dst_type;
    int64_t n_rows, n_cols;
    size_t src_row, dst_row;
    uint8_t *dst;
    float *scratch; /* n_threads * n_cols floats */
} convert_job;

static void convert_rows(void *arg, int ith, int nth) {
    convert_job *j = arg;
    const qtype_traits *st = qtype_get(j->src->type), *dt = qtype_get(j->dst_type);
    float *row = j->scratch + (size_t)ith * (size_t)j->n_cols;
    int64_t per = (j->n_rows + nth - 1) / nth;
    int64_t r0 = per * ith, r1 = r0 + per < j->n_rows ? r0 + per : j->n_rows;
    for (int64_t r = r0; r < r1; r++) {
        st->to_float((const uint8_t *)j->src->data + (size_t)r * j->src_row, row, j->n_cols);
        dt->from_float(row, j->dst + (size_t)r * j->dst_row, j->n_cols);
    }
}

/* Output tensors are produced at write time, one at a time, so converting a
 * model needs memory for one tensor rather than for the whole output. */
typedef struct conv_plan {
    const gguf_tensor *src;
    int type;
    qpool *pool;
} conv_plan;

static int fill_converted(void *ud, void *out, uint64_t nbytes, qerr *e) {
    const conv_plan *p = ud;
    const gguf_tensor *t = p->src;
    if (p->type == t->type) {
        memcpy(out, t->data, (size_t)nbytes);
        return 0;
    }
    int64_t n_cols = t->ne[0], n_rows = t->ne[1] * t->ne[2] * t->ne[3];
    float *scratch = malloc((size_t)qpool_size(p->pool) * (size_t)n_cols * sizeof(float));
    if (!scratch) return qerr_set(e, "out of memory");
    convert_job job = {t, p->type, n_rows, n_cols, qtype_row_size(t->type, n_cols), qtype_row_size(p->type, n_cols),
                       out, scratch};
    qpool_run(p->pool, convert_rows, &job);
    free(scratch);
    return 0;
}

int q_quantize_model(const char *in_path, const char *out_path, const char *type_name, int n_threads, qerr *e) {
    const ftype_info *fi = ftype_find(type_name);
    if (!fi) {
        return qerr_set(e, "unknown quantization type '%s' (one of F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 "
                           "Q2_K Q3_K Q3_K_S Q3_K_M Q3_K_L Q4_K Q4_K_S Q4_K_M Q5_K Q5_K_S Q5_K_M Q6_K)",
                        type_name ? type_name : "(null)");
    }
    gguf *g = NULL;
    if (gguf_open(&g, in_path, e)) return -1;

    int rc = -1;
    gguf_writer *w = NULL;
    qpool *pool = NULL;
    const gguf_tensor **order = NULL;
    conv_plan *plans = NULL;

    const char *arch = gguf_get_str(g, "general.architecture");
    if (!arch) arch = "";
    mix_state s = {.ftype = fi->ftype};
    s.n_layer = (int)arch_int(g, arch, "block_count", 0);
    int64_t n_head = arch_int(g, arch, "attention.head_count", 0);
    int64_t n_head_kv = arch_int(g, arch, "attention.head_count_kv", n_head);
    s.n_gqa = n_head_kv > 0 ? (int)(n_head / n_head_kv) : 0;
    s.n_expert = (int)arch_int(g, arch, "expert_count", 0);

    order = malloc((size_t)(g->n_tensors + 1) * sizeof *order);
    plans = calloc((size_t)(g->n_tensors + 1), sizeof *plans);
    w = gguf_writer_new();
    if (!order || !plans || !w) { qerr_set(e, "out of memory"); goto done; }
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        order[i] = t;
        if (strcmp(t->name, "output.weight") == 0) s.has_output = true;
        if (contains(t->name, "attn_v.weight") || contains(t->name, "attn_qkv.weight") ||
            contains(t->name, "attn_kv_b.weight"))
            s.n_attention_wv++;
    }
    qsort(order, (size_t)g->n_tensors, sizeof *order, cmp_tensor_order);

    /* Metadata: everything, then the two keys describing the new encoding. */
    for (int64_t i = 0; i < g->n_kv; i++) {
        const char *k = g->kv[i].key;
        if (strcmp(k, "general.file_type") == 0 || strcmp(k, "general.quantization_version") == 0) continue;
        if (gguf_writer_set(w, k, &g->kv[i].val)) { qerr_set(e, "out of memory copying metadata"); goto done; }
    }
    if (gguf_writer_set_u32(w, "general.quantization_version", 2) ||
        gguf_writer_set_u32(w, "general.file_type", (uint32_t)fi->ftype)) {
        qerr_set(e, "out of memory");
        goto done;
    }

    pool = qpool_new(n_threads > 0 ? n_threads : q_default_threads());
    if (!pool) { qerr_set(e, "cannot start threads"); goto done; }

    for (int64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = order[i];
        int type = t->type;
        if (should_quantize(t)) {
            type = fi->base;
            if (is_quantized(fi->base)) {
                type = mix_tensor_type(&s, fi->base, t, arch);
                if (type < 0) {
                    qerr_set(e, "%s: row length %lld is not a multiple of %s's block size %lld", t->name,
                             (long long)t->ne[0], qtype_get(fi->base)->name, (long long)qtype_get(fi->base)->blck);
                    goto done;
                }
            }
        }
        if (type != t->type && !qtype_is_supported(t->type)) {
            qerr_set(e, "%s: cannot convert from type %s", t->name, qtype_get(t->type)->name);
            goto done;
        }
        int64_t n_cols = t->ne[0], n_rows = t->ne[1] * t->ne[2] * t->ne[3];
        size_t dst_row = qtype_row_size(type, n_cols);
        uint64_t nbytes;
        if (dst_row == 0) {
            qerr_set(e, "%s: row length %lld does not fit type %s", t->name, (long long)n_cols, qtype_get(type)->name);
            goto done;
        }
        if (!q_mul_u64(dst_row, (uint64_t)n_rows, &nbytes) || nbytes > SIZE_MAX) {
            qerr_set(e, "%s: too large", t->name);
            goto done;
        }
        plans[i] = (conv_plan){t, type, pool};
        if (gguf_writer_add_tensor_fill(w, t->name, type, t->n_dims, t->ne, nbytes, fill_converted, &plans[i])) {
            qerr_set(e, "out of memory");
            goto done;
        }
    }
    if (gguf_writer_write(w, out_path, e)) goto done;
    rc = 0;
done:
    free(plans);
    free(order);
    qpool_free(pool);
    gguf_writer_free(w);
    gguf_close(g);
    return rc;
}
