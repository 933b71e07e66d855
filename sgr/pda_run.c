/* pda_run.c — runs the automaton of pda_int.h: hash-consed stack frames,
 * epsilon closure across calls and returns, and one-byte steps over a head
 * set. Used by the matcher, the token-mask walks and the sampler. */
#include <stdlib.h>
#include <string.h>

#include "sgr/pda_int.h"

static uint32_t fr_hash(uint32_t ret, uint32_t parent) {
    uint64_t x = ((uint64_t)ret << 32 | parent) * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(x >> 32);
}

void prun_clear_frames(prun *r) {
    r->n_fr = 2;
    r->fr[FR_EMPTY] = (pframe){PDA_INF, 0, 0};
    r->fr[FR_SENT] = (pframe){PDA_INF, 0, 0};
    memset(r->fh, 0, (size_t)r->fh_cap * sizeof *r->fh);
}

int prun_init(prun *r, const sgr_grammar *g) {
    memset(r, 0, sizeof *r);
    r->g = g;
    r->cap_fr = 64;
    r->fr = malloc(r->cap_fr * sizeof *r->fr);
    r->fh_cap = 128;
    r->fh = calloc(r->fh_cap, sizeof *r->fh);
    r->v_cap = 64;
    r->vk = malloc(r->v_cap * sizeof *r->vk);
    r->vg = calloc(r->v_cap, sizeof *r->vg);
    r->gen = 1;
    if (!r->fr || !r->fh || !r->vk || !r->vg) { prun_free(r); return -1; }
    prun_clear_frames(r);
    return 0;
}

void prun_free(prun *r) {
    free(r->fr);
    free(r->fh);
    free(r->hs);
    free(r->vk);
    free(r->vg);
    free(r->dfs);
    memset(r, 0, sizeof *r);
}

static uint32_t frame_push(prun *r, uint32_t ret, uint32_t parent) {
    uint32_t h = fr_hash(ret, parent) & (r->fh_cap - 1);
    while (r->fh[h]) {
        const pframe *f = &r->fr[r->fh[h] - 1];
        if (f->ret == ret && f->parent == parent) return r->fh[h] - 1;
        h = (h + 1) & (r->fh_cap - 1);
    }
    if (r->n_fr == r->cap_fr) {
        pframe *q = realloc(r->fr, (size_t)r->cap_fr * 2 * sizeof *q);
        if (!q) { r->oom = true; return FR_EMPTY; }
        r->fr = q;
        r->cap_fr *= 2;
    }
    uint32_t id = r->n_fr++;
    uint64_t d = r->g->dist[ret];
    r->fr[id] = (pframe){ret, parent, parent == FR_SENT ? 0 : d + r->fr[parent].cum};
    r->fh[h] = id + 1;
    if ((uint64_t)r->n_fr * 2 > r->fh_cap) {
        uint32_t nc = r->fh_cap * 2;
        uint32_t *nh = calloc(nc, sizeof *nh);
        if (!nh) { r->oom = true; return id; }
        for (uint32_t i = 2; i < r->n_fr; i++) {
            uint32_t j = fr_hash(r->fr[i].ret, r->fr[i].parent) & (nc - 1);
            while (nh[j]) j = (j + 1) & (nc - 1);
            nh[j] = i + 1;
        }
        free(r->fh);
        r->fh = nh;
        r->fh_cap = nc;
    }
    return id;
}

uint32_t prun_frame(prun *r, uint32_t ret, uint32_t parent) { return frame_push(r, ret, parent); }

uint64_t prun_head_cost(const prun *r, phead h) { return (uint64_t)r->g->dist[h.st] + r->fr[h.stk].cum; }

void prun_begin(prun *r) {
    if (++r->gen == 0) { memset(r->vg, 0, (size_t)r->v_cap * sizeof *r->vg); r->gen = 1; }
    r->v_n = 0;
}

/* true if (st, stk) was not yet visited in this generation (and marks it) */
static bool visit(prun *r, uint32_t st, uint32_t stk) {
    if ((r->v_n + 1) * 2 > r->v_cap) {
        uint32_t nc = r->v_cap * 2;
        uint64_t *nk = malloc((size_t)nc * sizeof *nk);
        uint32_t *ng = calloc(nc, sizeof *ng);
        if (!nk || !ng) { free(nk); free(ng); r->oom = true; return false; }
        for (uint32_t i = 0; i < r->v_cap; i++) {
            if (r->vg[i] != r->gen) continue;
            uint64_t k = r->vk[i];
            uint32_t j = (uint32_t)((k * 0x9E3779B97F4A7C15ull) >> 32) & (nc - 1);
            while (ng[j] == r->gen) j = (j + 1) & (nc - 1);
            nk[j] = k;
            ng[j] = r->gen;
        }
        free(r->vk);
        free(r->vg);
        r->vk = nk;
        r->vg = ng;
        r->v_cap = nc;
    }
    uint64_t k = (uint64_t)st << 32 | stk;
    uint32_t j = (uint32_t)((k * 0x9E3779B97F4A7C15ull) >> 32) & (r->v_cap - 1);
    while (r->vg[j] == r->gen) {
        if (r->vk[j] == k) return false;
        j = (j + 1) & (r->v_cap - 1);
    }
    r->vk[j] = k;
    r->vg[j] = r->gen;
    r->v_n++;
    return true;
}

static bool dfs_push(prun *r, uint32_t st, uint32_t stk) {
    if (r->n_dfs == r->cap_dfs) {
        size_t nc = r->cap_dfs ? r->cap_dfs * 2 : 64;
        phead *q = realloc(r->dfs, nc * sizeof *q);
        if (!q) { r->oom = true; return false; }
        r->dfs = q;
        r->cap_dfs = nc;
    }
    r->dfs[r->n_dfs++] = (phead){st, stk};
    return true;
}

static bool head_add(prun *r, uint32_t st, uint32_t stk) {
    if (r->n_hs == r->cap_hs) {
        size_t nc = r->cap_hs ? r->cap_hs * 2 : 256;
        phead *q = realloc(r->hs, nc * sizeof *q);
        if (!q) { r->oom = true; return false; }
        r->hs = q;
        r->cap_hs = nc;
    }
    r->hs[r->n_hs++] = (phead){st, stk};
    return true;
}

unsigned prun_closure(prun *r, uint32_t st0, uint32_t stk0) {
    const sgr_grammar *g = r->g;
    unsigned flags = 0;
    r->n_dfs = 0;
    if (!dfs_push(r, st0, stk0)) return 0;
    while (r->n_dfs) {
        phead h = r->dfs[--r->n_dfs];
        if (g->dist[h.st] == PDA_INF) continue;
        const pstate *s = &g->st[h.st];
        if (s->kind == PS_BYTE) {
            if (visit(r, h.st, h.stk)) head_add(r, h.st, h.stk);
            continue;
        }
        if (!visit(r, h.st, h.stk)) continue;
        switch (s->kind) {
        case PS_EPS:
            for (uint32_t k = s->b; k-- > 0;) dfs_push(r, g->eps[s->a + k], h.stk);
            break;
        case PS_CALL: {
            uint32_t start = g->rule_start[s->a];
            if (s->tail) dfs_push(r, start, h.stk);
            else {
                uint32_t f = frame_push(r, s->b, h.stk);
                if (!r->oom) dfs_push(r, start, f);
            }
            break;
        }
        case PS_FINAL:
            if (h.stk == FR_EMPTY) flags |= PR_END;
            else if (h.stk == FR_SENT) {
                /* outside the walk's frame: a rule called from one place
                 * returns there whatever the real stack is */
                uint32_t ret = g->sret ? g->sret[s->a] : PDA_INF;
                if (ret != PDA_INF) dfs_push(r, ret, FR_SENT);
                else flags |= PR_ESC;
            }
            else dfs_push(r, r->fr[h.stk].ret, r->fr[h.stk].parent);
            break;
        }
        if (r->oom) break;
    }
    return flags;
}

unsigned prun_step(prun *r, size_t off, size_t n, uint8_t c, size_t *out_n) {
    const sgr_grammar *g = r->g;
    size_t start = r->n_hs;
    unsigned flags = 0;
    prun_begin(r);
    for (size_t i = 0; i < n; i++) {
        phead h = r->hs[off + i];
        const pstate *s = &g->st[h.st];
        if (!cls_has(g->cls[s->a], c)) continue;
        flags |= prun_closure(r, s->b, h.stk);
    }
    *out_n = r->n_hs - start;
    return flags;
}
