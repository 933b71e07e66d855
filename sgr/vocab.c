/* vocab.c — a vocabulary's token bytes and a trie over them (preorder
 * array with subtree skips) for the token-mask walks, plus greedy
 * longest-match spelling of bytes for budget plans. */
#include <stdlib.h>
#include <string.h>

#include "sgr/pda_int.h"
#include "tokenizer/tokenizer.h"

static _Atomic uint64_t vocab_uid = 1;

void sgr_vocab_free(sgr_vocab *v) {
    if (!v) return;
    vocab_tails_free(v->tails);
    pthread_mutex_destroy(&v->tmu);
    free(v->off);
    free(v->buf);
    free(v->eog);
    free(v->eog_ids);
    free(v->tn);
    free(v->toks);
    free(v);
}

size_t sgr_vocab_size(const sgr_vocab *v) { return v->n_vocab; }
bool sgr_vocab_has_all_bytes(const sgr_vocab *v) { return v->all_bytes; }

static int tok_cmp(const void *a, const void *b, void *ctx) {
    const sgr_vocab *v = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    uint32_t lx = v->off[x + 1] - v->off[x], ly = v->off[y + 1] - v->off[y];
    int c = memcmp(v->buf + v->off[x], v->buf + v->off[y], lx < ly ? lx : ly);
    if (c) return c;
    if (lx != ly) return lx < ly ? -1 : 1;
    return x < y ? -1 : x > y;
}

static int build_trie(sgr_vocab *v, qerr *e) {
    uint32_t n = v->n_vocab, nt = 0, maxlen = 0;
    v->toks = malloc((n ? n : 1) * sizeof *v->toks);
    if (!v->toks) return qerr_set(e, "out of memory");
    size_t total = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t l = v->off[i + 1] - v->off[i];
        if (l == 0 || v->eog[i]) continue;
        v->toks[nt++] = (int32_t)i;
        total += l;
        if (l > maxlen) maxlen = l;
    }
    v->max_depth = maxlen;
    v->eog_ids = malloc((n ? n : 1) * sizeof *v->eog_ids);
    if (!v->eog_ids) return qerr_set(e, "out of memory");
    for (uint32_t i = 0; i < n; i++)
        if (v->eog[i]) v->eog_ids[v->n_eog++] = (int32_t)i;
    qsort_r(v->toks, nt, sizeof *v->toks, tok_cmp, v);
    v->tn = malloc((total ? total : 1) * sizeof *v->tn);
    uint32_t *path = malloc(((size_t)maxlen + 1) * sizeof *path);
    if (!v->tn || !path) { free(path); return qerr_set(e, "out of memory"); }
    uint32_t depth = 0, ntn = 0;
    const char *prev = NULL;
    uint32_t prevlen = 0;
    for (uint32_t k = 0; k < nt; k++) {
        int32_t t = v->toks[k];
        const char *s = v->buf + v->off[t];
        uint32_t l = v->off[t + 1] - v->off[t], lcp = 0;
        while (prev && lcp < l && lcp < prevlen && s[lcp] == prev[lcp]) lcp++;
        while (depth > lcp) v->tn[path[--depth]].skip = ntn;
        while (depth < l) {
            v->tn[ntn] = (tnode){.skip = 0, .depth = depth + 1, .tok_off = 0, .tok_n = 0, .byte = (uint8_t)s[depth]};
            path[depth++] = ntn++;
        }
        tnode *nd = &v->tn[path[l - 1]];
        if (nd->tok_n == 0) nd->tok_off = k;
        nd->tok_n++;
        prev = s;
        prevlen = l;
    }
    while (depth > 0) v->tn[path[--depth]].skip = ntn;
    free(path);
    v->n_tn = ntn;
    for (uint32_t i = 0; i < ntn; i++)
        if (v->tn[i].depth > 1) v->tail_hist[v->tn[i].byte]++, v->tail_total++;
    for (int b = 0; b < 256; b++) v->byte_tok[b] = -1;
    for (uint32_t i = 0; i < ntn; i++)
        if (v->tn[i].depth == 1 && v->tn[i].tok_n) v->byte_tok[v->tn[i].byte] = v->toks[v->tn[i].tok_off];
    v->all_bytes = true;
    for (int b = 0; b < 256; b++) v->all_bytes &= v->byte_tok[b] >= 0;
    return 0;
}

static sgr_vocab *vocab_alloc(size_t n, size_t bytes) {
    sgr_vocab *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->uid = vocab_uid++;
    pthread_mutex_init(&v->tmu, NULL);
    v->n_vocab = (uint32_t)n;
    v->off = calloc(n + 1, sizeof *v->off);
    v->buf = malloc(bytes ? bytes : 1);
    v->eog = calloc(n ? n : 1, 1);
    if (!v->off || !v->buf || !v->eog) { sgr_vocab_free(v); return NULL; }
    return v;
}

int sgr_vocab_from_pieces(const char *const *piece, const size_t *len, size_t n_vocab, const int32_t *eog, size_t n_eog,
                          sgr_vocab **out, qerr *e) {
    *out = NULL;
    if (n_vocab == 0 || n_vocab > INT32_MAX / 2) return qerr_set(e, "vocabulary: bad size %zu", n_vocab);
    size_t total = 0;
    for (size_t i = 0; i < n_vocab; i++) {
        if (len[i] > 65536) return qerr_set(e, "vocabulary: token %zu is longer than 65536 bytes", i);
        total += len[i];
    }
    if (total > UINT32_MAX) return qerr_set(e, "vocabulary too large");
    sgr_vocab *v = vocab_alloc(n_vocab, total);
    if (!v) return qerr_set(e, "out of memory");
    for (size_t i = 0; i < n_vocab; i++) {
        v->off[i + 1] = v->off[i] + (uint32_t)len[i];
        if (len[i]) memcpy(v->buf + v->off[i], piece[i], len[i]);
    }
    for (size_t i = 0; i < n_eog; i++) {
        if (eog[i] < 0 || (size_t)eog[i] >= n_vocab) { sgr_vocab_free(v); return qerr_set(e, "vocabulary: eog id %d out of range", eog[i]); }
        v->eog[eog[i]] = 1;
    }
    if (build_trie(v, e) < 0) { sgr_vocab_free(v); return -1; }
    *out = v;
    return 0;
}

int sgr_vocab_new(const struct tokenizer *t, sgr_vocab **out, qerr *e) {
    *out = NULL;
    int n = tokenizer_n_vocab(t);
    if (n <= 0) return qerr_set(e, "vocabulary: tokenizer has no tokens");
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        size_t l = 0;
        tokenizer_piece(t, i, &l);
        total += l;
    }
    if (total > UINT32_MAX) return qerr_set(e, "vocabulary too large");
    sgr_vocab *v = vocab_alloc((size_t)n, total);
    if (!v) return qerr_set(e, "out of memory");
    for (int i = 0; i < n; i++) {
        size_t l = 0;
        const char *p = tokenizer_piece(t, i, &l);
        v->off[i + 1] = v->off[i] + (uint32_t)l;
        if (l) memcpy(v->buf + v->off[i], p, l);
        v->eog[i] = tokenizer_is_eog(t, i);
    }
    v->tok = t;
    if (build_trie(v, e) < 0) { sgr_vocab_free(v); return -1; }
    *out = v;
    return 0;
}

int sgr_vocab_greedy(const sgr_vocab *v, const char *s, size_t n, int32_t **ids, size_t *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    int32_t *o = malloc((n ? n : 1) * sizeof *o);
    if (!o) return -1;
    size_t k = 0, p = 0;
    while (p < n) {
        uint32_t lo = 0, hi = v->n_tn; /* children of the current node: [lo, hi) */
        int32_t best = -1;
        size_t best_len = 0;
        for (size_t q = p; q < n && lo < hi; q++) {
            uint32_t j = lo;
            while (j < hi && v->tn[j].byte != (uint8_t)s[q]) j = v->tn[j].skip;
            if (j >= hi) break;
            if (v->tn[j].tok_n) best = v->toks[v->tn[j].tok_off], best_len = q - p + 1;
            lo = j + 1;
            hi = v->tn[j].skip;
        }
        if (best < 0) { free(o); return -1; }
        o[k++] = best;
        p += best_len;
    }
    *ids = o;
    *n_ids = k;
    return 0;
}
