/* models.h — the architectures built on the engine: the Llama family
 * (Llama 2/3, Mistral, TinyLlama, SmolLM) and Qwen2, decoder-only with a
 * paged KV cache; BERT encoders come with the retrieval work.
 *
 * A forward call takes a batch of (token, position, sequence) entries, so one
 * call can extend several independent sequences at once; the server batches
 * requests through this. */
#ifndef QUIRE_MODELS_H
#define QUIRE_MODELS_H

#include "engine/engine.h"

enum model_arch { ARCH_LLAMA = 0, ARCH_QWEN2 = 1 };
enum rope_kind { ROPE_NORM = 0, ROPE_NEOX = 1 }; /* adjacent pairs / halves */

typedef struct model_hparams {
    int arch;
    char arch_name[32];
    int n_vocab, n_ctx_train, n_embd, n_layer, n_head, n_head_kv, n_ff;
    int head_dim;  /* per head (key_length), usually n_embd / n_head */
    int n_rot;     /* rotary dimensions per head */
    int rope_kind;
    float rope_freq_base, rope_freq_scale; /* scale: 1/factor for linear scaling */
    float rms_eps;
} model_hparams;

typedef struct model_layer {
    const gguf_tensor *wq, *wk, *wv, *wo, *w_gate, *w_up, *w_down;
    float *attn_norm, *ffn_norm;     /* f32 copies (norms may be stored in any type) */
    float *bq, *bk, *bv;             /* qwen2 biases, else NULL */
    /* The same weights repacked at load (QUIRE_REPACK), else NULL. */
    q_packed *pq, *pk, *pv, *po, *p_gate, *p_up, *p_down;
} model_layer;

typedef struct model {
    gguf *g;
    model_hparams hp;
    const gguf_tensor *tok_embd, *output; /* output == tok_embd when tied */
    float *output_norm;
    float *rope_freq_factors; /* [n_rot/2] from rope_freqs.weight (llama3 scaling), or NULL */
    model_layer *layers;
    q_packed *p_output;       /* output repacked, else NULL */
    size_t packed_bytes;      /* total of the repacked copies */
    uint8_t *pack_arena;      /* their memory (q_huge_alloc), one block */
} model;

int model_load(model **out, const char *path, qerr *e);
/* A weight [ne0 = cols, ne1 = rows] of a type the engine computes with;
 * absent and not required: *out = NULL and 0. */
int model_bind(const gguf *g, const char *name, int64_t ne0, int64_t ne1, bool required, const gguf_tensor **out, qerr *e);
/* A vector (norm weight, bias) copied out as f32. */
int model_bind_vec(const gguf *g, const char *name, int64_t n, bool required, float **out, qerr *e);
void model_free(model *m);
/* Parameter count and bytes of weights read per decoded token. */
int64_t model_n_params(const model *m);
uint64_t model_weight_bytes(const model *m);

/* ------------------------------------------------------------------------ */
/* Paged KV cache: every sequence owns a list of fixed-size blocks of cells;
 * blocks come from one pool, so sequences of any length share the memory.
 * Cells hold K and V for every layer, in F16 (the reference's default) or
 * F32. Positions of a sequence are contiguous from 0. */
#define KV_BLOCK Q_ATTN_BLOCK /* the attention kernels' block (engine.h) */

typedef struct kv_seq {
    int *blocks;
    int n_blocks, cap;
    int n_pos; /* cells in use: positions 0 .. n_pos-1 */
} kv_seq;

typedef struct kv_cache {
    int n_layer, kv_dim, type; /* QT_F16 or QT_F32 */
    int n_blocks;              /* in the pool */
    int n_seq;
    void *k, *v;               /* [n_layer][n_blocks][n_head_kv] blocks: K [head_dim][KV_BLOCK], V [KV_BLOCK][head_dim] */
    int *free_blocks;
    int n_free;
    kv_seq *seqs;
} kv_cache;

/* n_cells: total positions over all sequences (rounded up to blocks). */
int kv_cache_init(kv_cache *kv, const model_hparams *hp, int n_cells, int n_seq, int type, qerr *e);
void kv_cache_free(kv_cache *kv);
/* Drops every sequence. */
void kv_cache_reset(kv_cache *kv);
/* Keeps positions [0, n_pos) of a sequence and frees the rest. */
void kv_cache_seq_truncate(kv_cache *kv, int seq, int n_pos);
int kv_cache_seq_len(const kv_cache *kv, int seq);
/* Makes room for positions up to n_pos-1; fails when the pool is exhausted. */
int kv_cache_seq_reserve(kv_cache *kv, int seq, int n_pos, qerr *e);

/* ------------------------------------------------------------------------ */
/* Forward pass. */
typedef struct model_batch {
    int n;
    const int32_t *tokens;
    const int32_t *pos;    /* position of each token in its sequence */
    const int32_t *seq;    /* sequence id, < kv->n_seq */
    const bool *logits;    /* which entries want logits; NULL: all */
} model_batch;

typedef struct model_ctx {
    const model *m;
    kv_cache kv;
    qpool *pool;
    bool own_pool;
    int n_batch_max; /* entries per internal step */
    /* scratch, sized for n_batch_max */
    float *x, *xb, *q, *k, *v, *att_out, *hb, *hb2, *att_scores;
    float *out_norm; /* normed final hidden states of entries wanting logits */
    float *rope_cs;  /* [n_batch_max][n_rot/2][cos, sin] of the chunk's positions, for every layer */
    qtrace *trace;   /* per-layer and per-op spans when not NULL */
} model_ctx;

typedef struct model_ctx_params {
    int n_ctx;       /* total KV cells (all sequences); 0: min(n_ctx_train, 4096) */
    int n_seq;       /* independent sequences; 0: 1 */
    int n_batch;     /* entries per internal step; 0: 512 */
    int n_threads;   /* 0: all CPUs */
    int kv_type;     /* QT_F16 (default, 0 means F16) or QT_F32 */
    qpool *pool;     /* share a pool; NULL: create one */
} model_ctx_params;

int model_ctx_init(model_ctx *c, const model *m, const model_ctx_params *p, qerr *e);
void model_ctx_free(model_ctx *c);

/* Evaluates the batch; appends K/V to each entry's sequence (an entry's
 * position must equal its sequence's current length, counting earlier entries
 * of the same batch). Writes logits [n_wanted][n_vocab] in batch order for the
 * entries that want them. */
int model_forward(model_ctx *c, const model_batch *b, float *logits, qerr *e);

/* ------------------------------------------------------------------------ */
/* BERT encoders for embeddings: absolute positions, token types, LayerNorm,
 * GELU, bidirectional attention within each text, no KV cache. */
enum pooling { POOL_NONE = 0, POOL_MEAN = 1, POOL_CLS = 2, POOL_LAST = 3 };

typedef struct bert_layer {
    const gguf_tensor *wq, *wk, *wv, *wo, *w_up, *w_down;
    float *bq, *bk, *bv, *bo, *b_up, *b_down;
    float *attn_norm_w, *attn_norm_b, *out_norm_w, *out_norm_b;
} bert_layer;

typedef struct bert_model {
    gguf *g;
    int n_vocab, n_ctx_train, n_embd, n_layer, n_head, n_ff, n_token_types;
    float eps;
    int pooling; /* from metadata (bert.pooling_type), POOL_MEAN if absent */
    const gguf_tensor *tok_embd, *type_embd, *pos_embd;
    float *embd_norm_w, *embd_norm_b;
    bert_layer *layers;
} bert_model;

int bert_load(bert_model **out, const char *path, qerr *e);
void bert_free(bert_model *m);
/* Embeds n_texts texts in one forward: text i is tokens[start[i] .. start[i+1]).
 * out: [n_texts][n_embd], pooled (pooling < 0: the model's own) and
 * L2-normalized. Texts longer than the trained context are an error. */
int bert_embed(const bert_model *m, qpool *pool, const int32_t *tokens, const int *start, int n_texts, int pooling,
               float *out, qerr *e);

/* ------------------------------------------------------------------------ */
/* Generation: prompt → prefill → decode until end of generation, a stop
 * string or n_predict tokens, streaming complete UTF-8 text to a callback.
 * Stop strings are matched across token boundaries and never emitted. */
struct tokenizer;

typedef struct gen_params {
    int n_predict;
    sampler_params sp;
    const char *const *stop; /* stop strings */
    int n_stop;
    bool add_special;        /* BOS/EOS as the vocabulary says */
    bool parse_special;      /* special-token text in the prompt */
    /* optional, caller-allocated: the chosen token's logprob for each
     * generated token [n_predict], and n_logprobs alternatives each
     * [n_predict][n_logprobs] */
    int n_logprobs;
    token_logprob *lp_out, *top_out;
    /* optional: picks the next token instead of sampler_sample — how a
     * constrained decoder (sgr/) joins the sampling chain without models/
     * knowing about grammars. budget = tokens the loop may still generate,
     * this one included. Returns the token, or -1 with e set. */
    int32_t (*pick)(void *ud, sampler *s, float *logits, const int32_t *hist, int n_hist, int budget, qerr *e);
    void *pick_ud;
    /* optional, with pick: tokens that must follow the one just picked
     * (a grammar's forced text) — appended without sampling and evaluated
     * in the same forward pass. Writes at most max ids (max <= the budget
     * left) and returns how many, or -1 with e set. Not called when
     * logprobs are requested (forced tokens have no sampled distribution). */
    int (*forced)(void *ud, int32_t *out, int max, qerr *e);
} gen_params;

typedef struct gen_stats {
    double t_tokenize, t_prefill, t_decode, t_sample, t_detokenize;
    int n_prompt, n_gen;
    size_t bytes_in, bytes_out;
    const char *stop_reason; /* "eog", "stop", "length", "cancelled" */
} gen_stats;

/* Assembles generated text: takes each token's bytes and releases only
 * text that is final — complete UTF-8, and no longer able to become the
 * start of a stop string. A stop string found anywhere (across token
 * boundaries) ends the text before it; it is never released. */
typedef struct gen_text {
    char *buf;
    size_t n, cap, emitted;
    const char *const *stop;
    int n_stop;
    bool stopped;
} gen_text;

void gen_text_init(gen_text *g, const char *const *stop, int n_stop);
void gen_text_free(gen_text *g);
/* Adds a piece; out and out_len receive the text released by this call (may be empty). */
int gen_text_feed(gen_text *g, const char *piece, size_t len, const char **out, size_t *out_len, qerr *e);
/* At the end of generation (not after a stop): whatever was held back. */
void gen_text_flush(gen_text *g, const char **out, size_t *out_len);

/* Return false to cancel generation. */
typedef bool (*gen_emit_fn)(void *ud, const char *text, size_t len);

/* Runs on sequence `seq` of the context, which must be empty. Generated ids
 * are returned in *out_ids (caller frees) when out_ids is not NULL. */
int gen_run(model_ctx *c, const struct tokenizer *tok, int seq, const char *prompt, size_t prompt_len,
            const gen_params *p, gen_emit_fn emit, void *ud, int32_t **out_ids, int *n_out, gen_stats *st, qerr *e);

#endif
