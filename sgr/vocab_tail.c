/* vocab_tail.c — per vocabulary and byte set S, the tokens whose bytes after
 * the first all lie in S ("S-tail" tokens), for cheap cold token-mask walks.
 *
 * Inside a string most of the vocabulary is accepted and a full trie walk
 * visits every node. When the automaton, after a token's first byte, steps
 * every byte of S to one same configuration level after level (a loop: no
 * end; a bounded repeat: up to the bound), every S-tail token short enough
 * is accepted without walking it; only the
 * other tokens (a quote, an escape, a byte outside S somewhere in their
 * tail) are walked. This file builds, once per (vocabulary, S) and shared by
 * every grammar, (a) the S-tail tokens grouped by first byte, then by byte
 * length, and (b) the residual sub-trie: the trie nodes on a path to a token
 * that is not S-tail, in preorder with subtree skips. Tables are built under
 * the vocabulary's mutex and never freed before the vocabulary; at most
 * VT_MAX of them (then callers fall back to the full walk). */
#include <stdlib.h>
#include <string.h>

#include "sgr/pda_int.h"

#define VT_MAX 16

static void vtail_free(vtail *t) {
    if (!t) return;
    free(t->tok);
    free(t->len);
    free(t->rn);
    free(t->rskip);
    free(t->rimp);
    free(t);
}

void vocab_tails_free(vtail *t) {
    while (t) {
        vtail *nx = t->next;
        vtail_free(t);
        t = nx;
    }
}

static vtail *vtail_build(const sgr_vocab *v, const uint8_t set[32]) {
    vtail *t = calloc(1, sizeof *t);
    uint32_t nt = v->n_tn, md = v->max_depth;
    uint8_t *res = calloc(nt ? nt : 1, 1);       /* 0 out, 1 ancestor only, 2 tokens not S-tail */
    uint8_t *tp = malloc((size_t)md + 2);        /* per depth: the path after its first byte is in S */
    uint32_t *path = malloc(((size_t)md + 2) * sizeof *path);
    uint32_t *cnt = calloc(257, sizeof *cnt);
    if (!t || !res || !tp || !path || !cnt) goto fail;
    memcpy(t->set, set, 32);
    /* pass 1: classify, count the S-tail tokens per first byte */
    uint32_t n_rn = 0, n_tok = 0;
    uint8_t first = 0;
    tp[0] = 1;
    for (uint32_t i = 0; i < nt; i++) {
        const tnode *nd = &v->tn[i];
        uint32_t d = nd->depth;
        path[d] = i;
        if (d == 1) { first = nd->byte; tp[1] = 1; }
        else tp[d] = tp[d - 1] && cls_has(set, nd->byte);
        if (!nd->tok_n) continue;
        if (tp[d]) { cnt[first + 1] += nd->tok_n; n_tok += nd->tok_n; continue; }
        if (!res[i]) n_rn++;
        res[i] = 2;
        for (uint32_t k = d - 1; k >= 1 && !res[path[k]]; k--) { res[path[k]] = 1; n_rn++; }
    }
    /* pass 2: group offsets, arrays */
    for (int b = 0; b < 256; b++) cnt[b + 1] += cnt[b];
    memcpy(t->fb, cnt, sizeof t->fb);
    t->tok = malloc((n_tok ? n_tok : 1) * sizeof *t->tok);
    t->len = malloc((n_tok ? n_tok : 1) * sizeof *t->len);
    t->rn = malloc((n_rn ? n_rn : 1) * sizeof *t->rn);
    t->rskip = malloc((n_rn ? n_rn : 1) * sizeof *t->rskip);
    t->rimp = malloc(n_rn ? n_rn : 1);
    if (!t->tok || !t->len || !t->rn || !t->rskip || !t->rimp) goto fail;
    /* the S-tail tokens in preorder, then stably by length, then stably by
     * first byte: each first-byte group ends up sorted by length */
    int32_t *tk = malloc((n_tok ? n_tok : 1) * sizeof *tk);
    uint32_t *ln = malloc((n_tok ? n_tok : 1) * sizeof *ln);
    uint32_t *lc = calloc((size_t)md + 2, sizeof *lc);
    if (!tk || !ln || !lc) { free(tk); free(ln); free(lc); goto fail; }
    for (uint32_t i = 0, k = 0; i < nt; i++) {
        const tnode *nd = &v->tn[i];
        uint32_t d = nd->depth;
        if (d == 1) tp[1] = 1;
        else tp[d] = tp[d - 1] && cls_has(set, nd->byte);
        if (res[i]) { t->rn[k] = i; t->rimp[k] = res[i] == 2; k++; }
        if (nd->tok_n && tp[d])
            for (uint32_t j = 0; j < nd->tok_n; j++) lc[d]++;
    }
    for (uint32_t l = 1; l <= md + 1; l++) lc[l] += lc[l - 1];
    for (uint32_t i = 0; i < nt; i++) {
        const tnode *nd = &v->tn[i];
        uint32_t d = nd->depth;
        if (d == 1) tp[1] = 1;
        else tp[d] = tp[d - 1] && cls_has(set, nd->byte);
        if (nd->tok_n && tp[d])
            for (uint32_t j = 0; j < nd->tok_n; j++) {
                uint32_t at = lc[d - 1]++;
                tk[at] = v->toks[nd->tok_off + j];
                ln[at] = d;
            }
    }
    uint32_t *fill = cnt; /* reused: next free slot per first byte */
    for (uint32_t i = 0; i < n_tok; i++) {
        uint8_t fbyte = (uint8_t)v->buf[v->off[tk[i]]];
        t->tok[fill[fbyte]] = tk[i];
        t->len[fill[fbyte]++] = ln[i];
    }
    free(tk);
    free(ln);
    free(lc);
    t->n_tok = n_tok;
    t->n_rn = n_rn;
    for (uint32_t j = 0; j < n_rn; j++) {
        uint32_t end = v->tn[t->rn[j]].skip, a = j + 1, b = n_rn;
        while (a < b) {
            uint32_t mid = a + (b - a) / 2;
            if (t->rn[mid] < end) a = mid + 1;
            else b = mid;
        }
        t->rskip[j] = a;
    }
    free(res);
    free(tp);
    free(path);
    free(cnt);
    return t;
fail:
    free(res);
    free(tp);
    free(path);
    free(cnt);
    vtail_free(t);
    return NULL;
}

const vtail *vocab_tail_get(const sgr_vocab *cv, const uint8_t set[32]) {
    sgr_vocab *v = (sgr_vocab *)cv; /* the table list is the only mutable part */
    pthread_mutex_lock(&v->tmu);
    vtail *t = v->tails;
    uint32_t n = 0;
    for (; t; t = t->next, n++)
        if (memcmp(t->set, set, 32) == 0) break;
    if (!t && n < VT_MAX && (t = vtail_build(v, set))) {
        t->next = v->tails;
        v->tails = t;
    }
    pthread_mutex_unlock(&v->tmu);
    return t;
}
