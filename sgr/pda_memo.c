/* pda_memo.c — a lazily built DFA over configurations for the cache walks:
 * each distinct head set (sorted, so equal sets are equal ids) is interned
 * once, and each (configuration, byte) step is computed once and then
 * looked up. Inside a string, almost every trie edge repeats a step already
 * seen, so a state's full-trie walk costs hash lookups instead of closures.
 * The configurations refer to the runner's frames: both are cleared
 * together (pmemo_clear) when the memo grows past its limit. */
#include <stdlib.h>
#include <string.h>

#include "sgr/pda_int.h"

#define MEMO_MAX_TRANS (1u << 21)
#define MEMO_MAX_HEADS (1u << 22)

static uint64_t hkey(phead h) { return (uint64_t)h.st << 32 | h.stk; }

static uint32_t cfg_hash(const phead *h, uint32_t n) {
    uint64_t x = 1469598103934665603ull ^ n;
    for (uint32_t i = 0; i < n; i++) x = (x ^ hkey(h[i])) * 1099511628211ull;
    return (uint32_t)(x ^ x >> 29);
}

void pmemo_free(pmemo *m) {
    free(m->h);
    free(m->off);
    free(m->cnt);
    free(m->bytes);
    free(m->ch);
    free(m->tk);
    free(m->tv);
    free(m->tf);
    memset(m, 0, sizeof *m);
}

void pmemo_clear(pmemo *m) {
    prun_clear_frames(m->r);
    m->n_h = 0;
    m->n_cfg = 1; /* id 0: the empty set */
    m->cnt[0] = 0;
    m->off[0] = 0;
    memset(m->bytes[0], 0, 32);
    memset(m->ch, 0, (size_t)m->ch_cap * sizeof *m->ch);
    memset(m->tk, 0, (size_t)m->t_cap * sizeof *m->tk);
    m->t_n = 0;
}

int pmemo_init(pmemo *m, prun *r) {
    memset(m, 0, sizeof *m);
    m->r = r;
    m->max_trans = MEMO_MAX_TRANS;
    m->max_heads = MEMO_MAX_HEADS;
    m->cap_cfg = 1024;
    m->off = malloc(m->cap_cfg * sizeof *m->off);
    m->cnt = malloc(m->cap_cfg * sizeof *m->cnt);
    m->bytes = malloc(m->cap_cfg * sizeof *m->bytes);
    m->ch_cap = 2048;
    m->ch = calloc(m->ch_cap, sizeof *m->ch);
    m->t_cap = 4096;
    m->tk = calloc(m->t_cap, sizeof *m->tk);
    m->tv = malloc(m->t_cap * sizeof *m->tv);
    m->tf = malloc(m->t_cap);
    if (!m->off || !m->cnt || !m->bytes || !m->ch || !m->tk || !m->tv || !m->tf) { pmemo_free(m); return -1; }
    pmemo_clear(m);
    return 0;
}

bool pmemo_full(const pmemo *m) { return m->t_n >= m->max_trans || m->n_h >= m->max_heads; }

static void sort_heads(phead *h, size_t n) {
    for (size_t i = 1; i < n; i++) {
        phead x = h[i];
        size_t j = i;
        while (j > 0 && hkey(h[j - 1]) > hkey(x)) h[j] = h[j - 1], j--;
        h[j] = x;
    }
}

static bool ch_grow(pmemo *m) {
    uint32_t nc = m->ch_cap * 2;
    uint32_t *q = calloc(nc, sizeof *q);
    if (!q) return false;
    for (uint32_t id = 1; id < m->n_cfg; id++) {
        uint32_t j = cfg_hash(m->h + m->off[id], m->cnt[id]) & (nc - 1);
        while (q[j]) j = (j + 1) & (nc - 1);
        q[j] = id;
    }
    free(m->ch);
    m->ch = q;
    m->ch_cap = nc;
    return true;
}

uint32_t pmemo_intern(pmemo *m, size_t off, size_t n, bool *oom) {
    if (n == 0) return 0;
    phead *h = m->r->hs + off;
    if (n < 64) sort_heads(h, n);
    else {
        /* larger sets: shell sort keeps it simple and in place */
        for (size_t gap = n / 2; gap > 0; gap /= 2)
            for (size_t i = gap; i < n; i++) {
                phead x = h[i];
                size_t j = i;
                while (j >= gap && hkey(h[j - gap]) > hkey(x)) h[j] = h[j - gap], j -= gap;
                h[j] = x;
            }
    }
    if ((m->n_cfg + 1) * 2 > m->ch_cap && !ch_grow(m)) { *oom = true; return 0; }
    uint32_t j = cfg_hash(h, (uint32_t)n) & (m->ch_cap - 1);
    while (m->ch[j]) {
        uint32_t id = m->ch[j];
        if (m->cnt[id] == n && memcmp(m->h + m->off[id], h, n * sizeof *h) == 0) return id;
        j = (j + 1) & (m->ch_cap - 1);
    }
    if (m->n_cfg == m->cap_cfg) {
        uint32_t nc = m->cap_cfg * 2;
        uint32_t *o = realloc(m->off, nc * sizeof *o);
        if (o) m->off = o;
        uint32_t *c = realloc(m->cnt, nc * sizeof *c);
        if (c) m->cnt = c;
        uint8_t (*b)[32] = realloc(m->bytes, nc * sizeof *b);
        if (b) m->bytes = b;
        if (!o || !c || !b) { *oom = true; return 0; }
        m->cap_cfg = nc;
    }
    if (m->n_h + n > m->cap_h) {
        size_t nc = m->cap_h ? m->cap_h * 2 : 4096;
        while (nc < m->n_h + n) nc *= 2;
        phead *q = realloc(m->h, nc * sizeof *q);
        if (!q) { *oom = true; return 0; }
        m->h = q;
        m->cap_h = nc;
    }
    uint32_t id = m->n_cfg++;
    memcpy(m->h + m->n_h, h, n * sizeof *h);
    m->off[id] = (uint32_t)m->n_h;
    m->cnt[id] = (uint32_t)n;
    m->n_h += n;
    uint64_t w[4] = {0, 0, 0, 0};
    const sgr_grammar *g = m->r->g;
    for (size_t i = 0; i < n; i++) {
        uint64_t x[4];
        memcpy(x, g->cls[g->st[h[i].st].a], 32);
        w[0] |= x[0], w[1] |= x[1], w[2] |= x[2], w[3] |= x[3];
    }
    memcpy(m->bytes[id], w, 32);
    m->ch[j] = id;
    return id;
}

static bool t_grow(pmemo *m) {
    uint32_t nc = m->t_cap * 2;
    uint64_t *k = calloc(nc, sizeof *k);
    uint32_t *v = malloc(nc * sizeof *v);
    uint8_t *f = malloc(nc);
    if (!k || !v || !f) { free(k); free(v); free(f); return false; }
    for (uint32_t i = 0; i < m->t_cap; i++) {
        if (!m->tk[i]) continue;
        uint32_t j = (uint32_t)((m->tk[i] * 0x9E3779B97F4A7C15ull) >> 32) & (nc - 1);
        while (k[j]) j = (j + 1) & (nc - 1);
        k[j] = m->tk[i];
        v[j] = m->tv[i];
        f[j] = m->tf[i];
    }
    free(m->tk); free(m->tv); free(m->tf);
    m->tk = k; m->tv = v; m->tf = f;
    m->t_cap = nc;
    return true;
}

uint32_t pmemo_step(pmemo *m, uint32_t id, uint8_t byte, unsigned *flags, bool *oom) {
    *flags = 0;
    if (id == 0 || !cls_has(m->bytes[id], byte)) return 0;
    uint64_t key = ((uint64_t)id << 8 | byte) + 1;
    uint32_t j = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & (m->t_cap - 1);
    while (m->tk[j]) {
        if (m->tk[j] == key) { *flags = m->tf[j]; return m->tv[j]; }
        j = (j + 1) & (m->t_cap - 1);
    }
    prun *r = m->r;
    uint32_t n = m->cnt[id];
    if (r->cap_hs < n) {
        phead *q = realloc(r->hs, (size_t)n * 2 * sizeof *q);
        if (!q) { *oom = true; return 0; }
        r->hs = q;
        r->cap_hs = (size_t)n * 2;
    }
    memcpy(r->hs, m->h + m->off[id], n * sizeof *r->hs);
    r->n_hs = n;
    size_t nn;
    unsigned fl = prun_step(r, 0, n, byte, &nn);
    if (r->oom) { *oom = true; return 0; }
    uint32_t nid = pmemo_intern(m, n, nn, oom);
    if (*oom) return 0;
    if ((m->t_n + 1) * 2 > m->t_cap) {
        if (!t_grow(m)) { *oom = true; return 0; }
        j = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & (m->t_cap - 1);
        while (m->tk[j]) j = (j + 1) & (m->t_cap - 1);
    }
    m->tk[j] = key;
    m->tv[j] = nid;
    m->tf[j] = (uint8_t)fl;
    m->t_n++;
    *flags = fl;
    return nid;
}
