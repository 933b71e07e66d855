/* kv_cache.c — paged KV cache. A sequence is a list of blocks of KV_BLOCK
 * cells taken from a shared free list; truncating a sequence returns its
 * tail blocks, so memory follows the live tokens rather than the worst case. */
#include "models/models.h"

#include <stdlib.h>

int kv_cache_init(kv_cache *kv, const model_hparams *hp, int n_cells, int n_seq, int type, qerr *e) {
    memset(kv, 0, sizeof *kv);
    if (type != QT_F16 && type != QT_F32) return qerr_set(e, "KV cache type must be F16 or F32");
    if (n_cells < 1 || n_seq < 1) return qerr_set(e, "KV cache needs at least one cell and one sequence");
    kv->n_layer = hp->n_layer;
    kv->kv_dim = hp->n_head_kv * hp->head_dim;
    kv->type = type;
    kv->n_blocks = (n_cells + KV_BLOCK - 1) / KV_BLOCK;
    kv->n_seq = n_seq;
    size_t es = type == QT_F16 ? 2 : 4;
    uint64_t bytes;
    if (!q_mul_u64((uint64_t)kv->n_layer * (uint64_t)kv->n_blocks * KV_BLOCK, (uint64_t)kv->kv_dim * es, &bytes))
        return qerr_set(e, "KV cache size overflows");
    kv->k = calloc(1, (size_t)bytes);
    kv->v = calloc(1, (size_t)bytes);
    kv->free_blocks = malloc((size_t)kv->n_blocks * sizeof(int));
    kv->seqs = calloc((size_t)n_seq, sizeof(kv_seq));
    if (!kv->k || !kv->v || !kv->free_blocks || !kv->seqs) {
        kv_cache_free(kv);
        return qerr_set(e, "out of memory for a KV cache of %d cells (%.1f MiB)", n_cells, 2.0 * (double)bytes / 1048576.0);
    }
    kv_cache_reset(kv);
    return 0;
}

void kv_cache_free(kv_cache *kv) {
    if (kv->seqs)
        for (int s = 0; s < kv->n_seq; s++) free(kv->seqs[s].blocks);
    free(kv->seqs);
    free(kv->k);
    free(kv->v);
    free(kv->free_blocks);
    memset(kv, 0, sizeof *kv);
}

void kv_cache_reset(kv_cache *kv) {
    /* Free list in descending order so that blocks are handed out 0, 1, 2 ... */
    kv->n_free = kv->n_blocks;
    for (int i = 0; i < kv->n_blocks; i++) kv->free_blocks[i] = kv->n_blocks - 1 - i;
    for (int s = 0; s < kv->n_seq; s++) {
        kv->seqs[s].n_blocks = 0;
        kv->seqs[s].n_pos = 0;
    }
}

void kv_cache_seq_truncate(kv_cache *kv, int seq, int n_pos) {
    if (seq < 0 || seq >= kv->n_seq) return;
    kv_seq *s = &kv->seqs[seq];
    if (n_pos < 0) n_pos = 0;
    if (n_pos >= s->n_pos) return;
    int keep = (n_pos + KV_BLOCK - 1) / KV_BLOCK;
    while (s->n_blocks > keep) kv->free_blocks[kv->n_free++] = s->blocks[--s->n_blocks];
    s->n_pos = n_pos;
}

int kv_cache_seq_len(const kv_cache *kv, int seq) {
    return (seq >= 0 && seq < kv->n_seq) ? kv->seqs[seq].n_pos : 0;
}

int kv_cache_seq_reserve(kv_cache *kv, int seq, int n_pos, qerr *e) {
    if (seq < 0 || seq >= kv->n_seq) return qerr_set(e, "sequence id %d out of range (0..%d)", seq, kv->n_seq - 1);
    kv_seq *s = &kv->seqs[seq];
    int need = (n_pos + KV_BLOCK - 1) / KV_BLOCK;
    if (need - s->n_blocks > kv->n_free)
        return qerr_set(e, "context full: sequence %d needs %d positions, the KV cache has room for %d more",
                        seq, n_pos, s->n_blocks * KV_BLOCK - s->n_pos + kv->n_free * KV_BLOCK);
    if (need > s->cap) {
        int cap = s->cap ? s->cap : 8;
        while (cap < need) cap *= 2;
        int *b = realloc(s->blocks, (size_t)cap * sizeof(int));
        if (!b) return qerr_set(e, "out of memory");
        s->blocks = b;
        s->cap = cap;
    }
    while (s->n_blocks < need) s->blocks[s->n_blocks++] = kv->free_blocks[--kv->n_free];
    return 0;
}
