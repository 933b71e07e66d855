/* tokmask.c — token masks by walking the vocabulary trie, advancing the
 * automaton one byte per trie edge and pruning a subtree at the first
 * rejected byte.
 *
 * Cache (the "adaptive token mask" idea): for a head (state s, stack k), what
 * a token does while it stays inside the frame s belongs to depends on s
 * alone. Walking once from (s, SENT) — SENT marks "outside this frame" —
 * sorts every token into accepted (some path consumes all its bytes inside
 * the frame, or ends exactly where the frame ends), rejected (no path, and
 * none left the frame), or uncertain (a path left the frame before the token
 * ended, so the rest depends on k). Accepted is a bitset; uncertain is a
 * small sub-trie (those tokens' nodes and their ancestors, in preorder) that
 * the mask walks with the real stack. Entries are computed once per
 * (grammar, vocabulary, state) under a mutex and published with release
 * stores, so every matcher of the grammar shares them. */
#include <stdlib.h>
#include <string.h>

#include "sgr/matcher_int.h"

/* Memory the entries of one (grammar, vocabulary) may hold; past it, new
 * states are walked uncached (a long bounded repeat inlines one state per
 * copy, so a long generation could otherwise grow the cache without end). */
#define TM_MAX_BYTES ((size_t)256 << 20)

typedef struct tm_entry {
    uint32_t *acc;       /* n_words */
    uint32_t *mini;      /* trie nodes, preorder */
    uint32_t *mskip;     /* index of the next entry outside the node's subtree */
    uint8_t *munc;       /* MK_OWN: the node's tokens are uncertain; MK_SUB: so is its whole
                            subtree (not listed); neither: an ancestor only */
    uint32_t n_mini;
} tm_entry;

struct tm_cache {
    uint64_t uid;
    const sgr_vocab *v;
    _Atomic(tm_entry *) *ent;
    uint32_t n_ent;
    pthread_mutex_t mu;
    prun r;
    pmemo memo;
    uint8_t *mark;
    uint32_t *ml; size_t n_ml, cap_ml;   /* the marked nodes (any order) */
    size_t *lv;
    uint8_t *esc;
    uint8_t (*lvc)[32];   /* per level: the bytes its heads accept */
    uint32_t *path;
    size_t bytes;         /* memory held by entries (under mu) */
    size_t n_comp, n_tail; /* entries computed, with the S-tail shortcut (under mu) */
    tm_cache *next;
};

static void entry_free(tm_entry *e) {
    if (!e) return;
    free(e->acc);
    free(e->mini);
    free(e->mskip);
    free(e->munc);
    free(e);
}

void tm_caches_free(tm_cache *c) {
    while (c) {
        tm_cache *nx = c->next;
        for (uint32_t i = 0; i < c->n_ent; i++) entry_free(atomic_load(&c->ent[i]));
        free(c->ent);
        pthread_mutex_destroy(&c->mu);
        pmemo_free(&c->memo);
        prun_free(&c->r);
        free(c->mark);
        free(c->ml);
        free(c->lv);
        free(c->esc);
        free(c->lvc);
        free(c->path);
        free(c);
        c = nx;
    }
}

tm_cache *tm_cache_get(const sgr_grammar *cg, const sgr_vocab *v) {
    sgr_grammar *g = (sgr_grammar *)cg; /* the cache list is the only mutable part */
    pthread_mutex_lock(&g->mu);
    tm_cache *c = g->caches;
    while (c && c->uid != v->uid) c = c->next;
    if (!c) {
        c = calloc(1, sizeof *c);
        if (c) {
            c->uid = v->uid;
            c->v = v;
            c->n_ent = g->n_st;
            c->ent = calloc(g->n_st ? g->n_st : 1, sizeof *c->ent);
            c->mark = calloc(v->n_tn ? v->n_tn : 1, 1);
            c->lv = malloc(((size_t)v->max_depth + 2) * 2 * sizeof *c->lv);
            c->esc = malloc((size_t)v->max_depth + 2);
            c->path = malloc(((size_t)v->max_depth + 2) * sizeof *c->path);
            c->lvc = malloc(((size_t)v->max_depth + 2) * sizeof *c->lvc);
            bool ok = c->ent && c->mark && c->lv && c->esc && c->path && c->lvc && prun_init(&c->r, g) == 0;
            if (ok && pmemo_init(&c->memo, &c->r) < 0) { prun_free(&c->r); ok = false; }
            if (!ok) {
                free(c->ent); free(c->mark); free(c->lv); free(c->esc); free(c->path); free(c->lvc);
                free(c);
                c = NULL;
            } else {
                pthread_mutex_init(&c->mu, NULL);
                c->next = g->caches;
                g->caches = c;
            }
        }
    }
    pthread_mutex_unlock(&g->mu);
    return c;
}

/* The bytes some head of hs[off..off+n) can consume. */
static void level_bytes(const prun *r, size_t off, size_t n, uint8_t *u) {
    const sgr_grammar *g = r->g;
    uint64_t w[4] = {0, 0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        uint64_t x[4];
        memcpy(x, g->cls[g->st[r->hs[off + i].st].a], 32);
        w[0] |= x[0], w[1] |= x[1], w[2] |= x[2], w[3] |= x[3];
    }
    memcpy(u, w, 32);
}

static inline void set_toks(const sgr_vocab *v, const tnode *nd, uint32_t *bits) {
    for (uint32_t t = 0; t < nd->tok_n; t++) {
        uint32_t id = (uint32_t)v->toks[nd->tok_off + t];
        bits[id >> 5] |= 1u << (id & 31);
    }
}

/* Marks of the cache walk (per trie node; also munc of an entry). */
enum { MK_OWN = 1, MK_ANC = 2, MK_SUB = 4 };

static void mark_set(tm_cache *c, uint32_t i, uint8_t kind) {
    if (!c->mark[i]) {
        if (c->n_ml == c->cap_ml) {
            size_t nc = c->cap_ml ? c->cap_ml * 2 : 1024;
            uint32_t *q = realloc(c->ml, nc * sizeof *q);
            if (!q) { c->r.oom = true; return; }
            c->ml = q;
            c->cap_ml = nc;
        }
        c->ml[c->n_ml++] = i;
    }
    c->mark[i] |= kind;
}

static void mark_node(tm_cache *c, uint32_t i, uint8_t kind, uint32_t d) {
    mark_set(c, i, kind);
    for (uint32_t k = d - 1; k-- > 0;) { /* ancestors path[0..d-2] */
        uint32_t a = c->path[k];
        if (c->mark[a]) break;
        mark_set(c, a, MK_ANC);
    }
}

static int u32_cmp(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- the S-tail shortcut (see vocab_tail.c) ----------------------------- */

#define TAIL_MIN_SET 8        /* smaller sets are not worth a table */
#define TAIL_INF UINT32_MAX
#define TAIL_MAX_HEADS 64

static int popcount256(const uint64_t s[4]) {
    return __builtin_popcountll(s[0]) + __builtin_popcountll(s[1]) + __builtin_popcountll(s[2]) + __builtin_popcountll(s[3]);
}

/* Sets are 32-byte bitmaps (bit b&7 of byte b>>3) held in uint64_t words
 * for fast and/or; bytes are read through the byte view. */
static int first_byte(const uint64_t s[4]) {
    for (int b = 0; b < 256; b++)
        if (cls_has((const uint8_t *)s, (uint8_t)b)) return b;
    return -1;
}

/* A head's target: the (state, stack) its byte step continues from; heads
 * with equal targets step to equal configurations. Groups the heads of
 * configuration id by target, with U[t] = the union of their classes
 * (intersected with mask). Returns the number of targets, -1 if too many. */
static int cfg_targets(const pmemo *mm, uint32_t id, const uint64_t mask[4], uint64_t (*U)[4]) {
    const sgr_grammar *g = mm->r->g;
    const phead *h = mm->h + mm->off[id];
    uint32_t n = mm->cnt[id], tst[TAIL_MAX_HEADS], tsk[TAIL_MAX_HEADS];
    int nt = 0;
    if (n > TAIL_MAX_HEADS) return -1;
    for (uint32_t k = 0; k < n; k++) {
        const pstate *ps = &g->st[h[k].st];
        uint64_t x[4];
        memcpy(x, g->cls[ps->a], 32);
        for (int w = 0; w < 4; w++) x[w] &= mask[w];
        if (!(x[0] | x[1] | x[2] | x[3])) continue;
        int t = 0;
        while (t < nt && !(tst[t] == ps->b && tsk[t] == h[k].stk)) t++;
        if (t == nt) { tst[t] = ps->b; tsk[t] = h[k].stk; memset(U[t], 0, 32); nt++; }
        for (int w = 0; w < 4; w++) U[t][w] |= x[w];
    }
    return nt;
}

/* The largest byte set of configuration id whose bytes all step to one
 * same configuration (the bytes of one target's classes that no other
 * target accepts); returns its size. */
static int cfg_pick_set(const pmemo *mm, uint32_t id, uint64_t S[4]) {
    static const uint64_t all[4] = {~0ull, ~0ull, ~0ull, ~0ull};
    uint64_t U[TAIL_MAX_HEADS][4];
    int nt = cfg_targets(mm, id, all, U), best = 0;
    for (int t = 0; t < nt; t++) {
        uint64_t x[4];
        memcpy(x, U[t], 32);
        for (int o = 0; o < nt; o++)
            if (o != t)
                for (int w = 0; w < 4; w++) x[w] &= ~U[o][w];
        int pc = popcount256(x);
        if (pc > best) { best = pc; memcpy(S, x, 32); }
    }
    return best;
}

/* Every byte of S steps configuration id to one same configuration: each
 * target either accepts all of S or none of it. */
static bool cfg_uniform(const pmemo *mm, uint32_t id, const uint64_t S[4]) {
    uint64_t U[TAIL_MAX_HEADS][4];
    int nt = cfg_targets(mm, id, S, U);
    if (nt < 0) return false;
    for (int t = 0; t < nt; t++)
        if (memcmp(U[t], S, 32)) return false;
    return true;
}

/* For the walk from the single head of configuration cfg0: after its first
 * byte (any byte of that head's class: one configuration cfg1), does every
 * byte of one set S keep stepping to one configuration without leaving the
 * frame? Returns D > 0 — a token whose bytes after the first lie in S is
 * accepted iff its length is at most D (TAIL_INF: any length) — and fills
 * S; 0 if the shortcut does not apply. */
static uint32_t tail_chain(tm_cache *c, uint32_t cfg0, uint64_t S[4], bool *oom) {
    pmemo *mm = &c->memo;
    const sgr_grammar *g = c->r.g;
    if (cfg0 == 0 || mm->cnt[cfg0] != 1) return 0;
    uint64_t S0[4];
    memcpy(S0, g->cls[g->st[mm->h[mm->off[cfg0]].st].a], 32);
    unsigned fl;
    uint32_t cur = pmemo_step(mm, cfg0, (uint8_t)first_byte(S0), &fl, oom);
    if (*oom || fl || !cur) return 0;
    if (cfg_pick_set(mm, cur, S) < TAIL_MIN_SET) return 0;
    uint8_t rep = (uint8_t)first_byte(S);
    for (uint32_t D = 1;; D++) {
        if (D >= c->v->max_depth) return TAIL_INF;
        if (!cfg_uniform(mm, cur, S)) return 0;
        uint32_t nid = pmemo_step(mm, cur, rep, &fl, oom);
        if (*oom || fl) return 0;
        if (!nid) return D;
        if (nid == cur) return TAIL_INF;
        cur = nid;
    }
}

static tm_entry *entry_compute(tm_cache *c, const sgr_grammar *g, uint32_t st) {
    const sgr_vocab *v = c->v;
    prun *r = &c->r;
    size_t nw = (v->n_vocab + 31) / 32;
    tm_entry *en = calloc(1, sizeof *en);
    if (!en || !(en->acc = calloc(nw, sizeof *en->acc))) { free(en); return NULL; }
    pmemo *mm = &c->memo;
    if (pmemo_full(mm)) pmemo_clear(mm);
    r->n_hs = 0;
    r->oom = false;
    bool oom = false;
    prun_begin(r);
    prun_closure(r, st, FR_SENT);
    size_t *cid = c->lv;
    cid[0] = pmemo_intern(mm, 0, r->n_hs, &oom);
    c->esc[0] = 0;
    c->n_ml = 0;
    /* S-tail tokens short enough are accepted outright; the walk visits the
     * residual sub-trie only, and decides only the other tokens */
    const vtail *vt = NULL;
    if (!oom && !g->no_tail) {
        uint64_t S[4];
        uint32_t D = tail_chain(c, (uint32_t)cid[0], S, &oom);
        /* worth a table only if most of the trie below depth 1 is in S */
        uint64_t cover = 0;
        for (int b = 0; D && b < 256; b++)
            if (cls_has((const uint8_t *)S, (uint8_t)b)) cover += v->tail_hist[b];
        if (D && !oom && cover * 2 >= v->tail_total && (vt = vocab_tail_get(v, (const uint8_t *)S))) {
            const uint8_t *S0 = g->cls[g->st[st].a];
            for (int b = 0; b < 256; b++) {
                if (!cls_has(S0, (uint8_t)b)) continue;
                for (uint32_t k = vt->fb[b]; k < vt->fb[b + 1] && vt->len[k] <= D; k++) {
                    uint32_t id = (uint32_t)vt->tok[k];
                    en->acc[id >> 5] |= 1u << (id & 31);
                }
            }
        }
    }
    c->n_tail += vt != NULL;
    uint32_t total = vt ? vt->n_rn : v->n_tn;
    for (uint32_t j = 0; j < total && !oom && !r->oom;) {
        uint32_t i = vt ? vt->rn[j] : j;
        const tnode *nd = &v->tn[i];
        uint32_t d = nd->depth;
        c->path[d - 1] = i;
        unsigned fl;
        uint32_t nid = pmemo_step(mm, (uint32_t)cid[d - 1], nd->byte, &fl, &oom);
        cid[d] = nid;
        c->esc[d] = c->esc[d - 1] | ((fl & PR_ESC) != 0);
        bool alive = nid || (fl & (PR_ESC | PR_END));
        if (nd->tok_n && (!vt || vt->rimp[j])) {
            if (alive) set_toks(v, nd, en->acc);
            else if (c->esc[d - 1]) mark_node(c, i, MK_OWN, d);
        }
        if (nid == 0) {
            /* a dead node after the frame was left: its subtree's tokens
             * (none of them S-tail: the tail steps never leave the frame)
             * are uncertain */
            if (c->esc[d] && nd->skip > i + 1) mark_node(c, i, MK_SUB, d);
            j = vt ? vt->rskip[j] : nd->skip;
        } else j++;
    }
    if (oom || r->oom) {
        for (size_t k = 0; k < c->n_ml; k++) c->mark[c->ml[k]] = 0;
        c->n_ml = 0;
        pmemo_clear(mm);
        r->oom = false;
        entry_free(en);
        return NULL;
    }
    if (c->n_ml) {
        uint32_t n = (uint32_t)c->n_ml;
        /* preorder: sort a short list, rescan the marks for a long one */
        if (n < v->n_tn / 32) qsort(c->ml, n, sizeof *c->ml, u32_cmp);
        else
            for (uint32_t i = 0, k = 0; i < v->n_tn; i++)
                if (c->mark[i]) c->ml[k++] = i;
        en->mini = malloc(n * sizeof *en->mini);
        en->mskip = malloc(n * sizeof *en->mskip);
        en->munc = malloc(n);
        if (!en->mini || !en->mskip || !en->munc) {
            for (uint32_t k = 0; k < n; k++) c->mark[c->ml[k]] = 0;
            c->n_ml = 0;
            entry_free(en);
            return NULL;
        }
        for (uint32_t k = 0; k < n; k++) {
            uint32_t i = c->ml[k];
            en->mini[k] = i;
            en->munc[k] = c->mark[i] & (MK_OWN | MK_SUB);
            c->mark[i] = 0;
        }
        c->n_ml = 0;
        en->n_mini = n;
        for (uint32_t j = 0; j < n; j++) {
            uint32_t end = v->tn[en->mini[j]].skip, a = j + 1, b = n;
            while (a < b) {
                uint32_t mid = a + (b - a) / 2;
                if (en->mini[mid] < end) a = mid + 1;
                else b = mid;
            }
            en->mskip[j] = a;
        }
    }
    return en;
}

static tm_entry *entry_get(sgr_matcher *m, uint32_t st, bool *hit) {
    tm_cache *c = m->cache;
    tm_entry *en = atomic_load_explicit(&c->ent[st], memory_order_acquire);
    if (en) return en;
    *hit = false;
    pthread_mutex_lock(&c->mu);
    en = atomic_load_explicit(&c->ent[st], memory_order_acquire);
    if (!en && c->bytes < TM_MAX_BYTES) {
        en = entry_compute(c, m->g, st);
        if (en) {
            c->bytes += ((c->v->n_vocab + 31) / 32) * 4 + (size_t)en->n_mini * 9 + sizeof *en;
            atomic_store_explicit(&c->ent[st], en, memory_order_release);
            c->n_comp++;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return en;
}

static bool lv_reserve(sgr_matcher *m) {
    size_t need = ((size_t)m->v->max_depth + 2) * 2;
    if (m->cap_lv >= need) return true;
    size_t *q = realloc(m->lv, need * sizeof *q);
    if (!q) return false;
    m->lv = q;
    uint8_t (*c)[32] = realloc(m->lvc, need / 2 * sizeof *c);
    if (!c) return false;
    m->lvc = c;
    m->cap_lv = need;
    return true;
}

/* Walks trie nodes (all of them, or a cache entry's sub-trie: its listed
 * nodes, and the whole subtree of a node marked MK_SUB) from the heads
 * [off, off+n) with real stacks, setting the bits of surviving tokens. */
/* The trie nodes a walk visits, in trie order: a cache entry's uncertain
 * nodes (or the whole trie without an entry), descending node by node into
 * a subtree marked MK_SUB when its root stays alive. Shared by walk() and
 * walk_memo(). */
typedef struct trie_it {
    const tm_entry *en;
    uint32_t total, j, fi, fend; /* fend: inside a MK_SUB subtree, fi the next node, fend its end */
} trie_it;

static void trie_it_init(trie_it *it, const sgr_vocab *v, const tm_entry *en) {
    it->en = en;
    it->total = en ? en->n_mini : v->n_tn;
    it->j = it->fi = it->fend = 0;
}

/* The next node i, and whether its tokens are the entry's own to set. */
static bool trie_it_next(trie_it *it, uint32_t *i, bool *own) {
    for (;;) {
        if (it->fend) {
            if (it->fi >= it->fend) { it->fend = 0; continue; }
            *i = it->fi;
            *own = true;
            return true;
        }
        if (it->j >= it->total) return false;
        *i = it->en ? it->en->mini[it->j] : it->j;
        *own = !it->en || (it->en->munc[it->j] & MK_OWN);
        return true;
    }
}

/* After node i: on into its subtree when the walk is still alive there,
 * else past it. */
static void trie_it_step(trie_it *it, const tnode *nd, uint32_t i, bool alive) {
    if (it->fend) it->fi = alive ? it->fi + 1 : nd->skip;
    else if (!it->en) it->j = alive ? it->j + 1 : nd->skip;
    else {
        if (alive && (it->en->munc[it->j] & MK_SUB)) { it->fi = i + 1; it->fend = nd->skip; }
        it->j = alive ? it->j + 1 : it->en->mskip[it->j];
    }
}

static void walk(sgr_matcher *m, size_t off, size_t n, const tm_entry *en, uint32_t *bits) {
    const sgr_vocab *v = m->v;
    prun *r = &m->r;
    size_t base = r->n_hs;
    size_t *lo = m->lv, *ln = m->lv + v->max_depth + 2;
    uint8_t (*lvc)[32] = m->lvc;
    lo[0] = off;
    ln[0] = n;
    level_bytes(r, off, n, lvc[0]);
    trie_it it;
    trie_it_init(&it, v, en);
    uint32_t i;
    bool own;
    while (!r->oom && trie_it_next(&it, &i, &own)) {
        const tnode *nd = &v->tn[i];
        uint32_t d = nd->depth;
        size_t top = d == 1 ? base : lo[d - 1] + ln[d - 1];
        r->n_hs = top;
        size_t nn = 0;
        unsigned fl = 0;
        if (cls_has(lvc[d - 1], nd->byte)) {
            fl = prun_step(r, lo[d - 1], ln[d - 1], nd->byte, &nn);
            if (nn && nd->skip > i + 1) level_bytes(r, top, nn, lvc[d]);
        }
        lo[d] = top;
        ln[d] = nn;
        if (nd->tok_n && (nn || (fl & PR_END)) && own) set_toks(v, nd, bits);
        trie_it_step(&it, nd, i, nn != 0);
    }
    r->n_hs = base;
}

/* Per-matcher walk memo limits (smaller than the shared cache's: one per
 * generation in flight). */
#define WM_MAX_TRANS (1u << 18)
#define WM_MAX_HEADS (1u << 19)

/* walk() for one head through the matcher's configuration memo: the same
 * tokens, but a trie edge whose (configuration, byte) step was seen before
 * — in this mask or an earlier one — is a lookup, not a closure. The head's
 * stack is copied into the memo's runner (hash-consed there, so the same
 * stack is the same configuration across masks). */
static int walk_memo(sgr_matcher *m, phead hd, const tm_entry *en, uint32_t *bits) {
    const sgr_vocab *v = m->v;
    if (!m->wm_on) {
        if (prun_init(&m->wr, m->g) < 0) return -1;
        if (pmemo_init(&m->wm, &m->wr) < 0) { prun_free(&m->wr); return -1; }
        m->wm.max_trans = WM_MAX_TRANS;
        m->wm.max_heads = WM_MAX_HEADS;
        m->wm_on = true;
    }
    pmemo *mm = &m->wm;
    prun *r = &m->wr;
    if (pmemo_full(mm)) pmemo_clear(mm);
    size_t depth = 0;
    for (uint32_t f = hd.stk; f != FR_EMPTY; f = m->r.fr[f].parent) depth++;
    if (depth > m->cap_wstk) {
        uint32_t *q = realloc(m->wstk, depth * sizeof *q);
        if (!q) return -1;
        m->wstk = q;
        m->cap_wstk = depth;
    }
    size_t k = 0;
    for (uint32_t f = hd.stk; f != FR_EMPTY; f = m->r.fr[f].parent) m->wstk[k++] = m->r.fr[f].ret;
    uint32_t stk = FR_EMPTY;
    while (k-- > 0) stk = prun_frame(r, m->wstk[k], stk);
    bool oom = r->oom;
    r->n_hs = 0;
    prun_begin(r);
    prun_closure(r, hd.st, stk);
    size_t *cid = m->lv;
    cid[0] = oom || r->oom ? 0 : pmemo_intern(mm, 0, r->n_hs, &oom);
    trie_it it;
    trie_it_init(&it, v, en);
    uint32_t i;
    bool own;
    while (!oom && !r->oom && trie_it_next(&it, &i, &own)) {
        const tnode *nd = &v->tn[i];
        uint32_t d = nd->depth;
        unsigned fl;
        uint32_t nid = pmemo_step(mm, (uint32_t)cid[d - 1], nd->byte, &fl, &oom);
        cid[d] = nid;
        if (nd->tok_n && (nid || (fl & PR_END)) && own) set_toks(v, nd, bits);
        trie_it_step(&it, nd, i, nid != 0);
    }
    if (oom || r->oom) {
        /* start over next time; this mask falls back to the plain walk */
        pmemo_clear(mm);
        r->oom = false;
        return -1;
    }
    return 0;
}

static int mask_begin(sgr_matcher *m, uint32_t *bits, const mstep **t) {
    if (!m->v || !lv_reserve(m)) return -1;
    memset(bits, 0, ((m->v->n_vocab + 31) / 32) * sizeof *bits);
    *t = matcher_top(m);
    if ((*t)->flags & MS_EOG) return 1;
    if ((*t)->flags & PR_END)
        for (uint32_t i = 0; i < m->v->n_eog; i++) {
            uint32_t id = (uint32_t)m->v->eog_ids[i];
            bits[id >> 5] |= 1u << (id & 31);
        }
    return 0;
}

int sgr_matcher_fill_mask(sgr_matcher *m, uint32_t *bits) {
    const mstep *t;
    int rc = mask_begin(m, bits, &t);
    if (rc) return rc < 0 ? -1 : 0;
    size_t nw = (m->v->n_vocab + 31) / 32;
    bool hit = true;
    for (uint32_t h = 0; h < t->n; h++) {
        phead hd = m->r.hs[t->off + h];
        tm_entry *en = entry_get(m, hd.st, &hit);
        if (!en) { /* cache full (or out of memory): walk this head uncached */
            if (walk_memo(m, hd, NULL, bits) < 0) walk(m, t->off + h, 1, NULL, bits);
            continue;
        }
        for (size_t w = 0; w < nw; w++) bits[w] |= en->acc[w];
        if (en->n_mini && walk_memo(m, hd, en, bits) < 0) walk(m, t->off + h, 1, en, bits);
    }
    m->last_hit = hit;
    return m->r.oom ? -1 : 0;
}

int sgr_matcher_fill_mask_uncached(sgr_matcher *m, uint32_t *bits) {
    const mstep *t;
    int rc = mask_begin(m, bits, &t);
    if (rc) return rc < 0 ? -1 : 0;
    walk(m, t->off, t->n, NULL, bits);
    return m->r.oom ? -1 : 0;
}

bool sgr_matcher_last_cache_hit(const sgr_matcher *m) { return m->last_hit; }

size_t sgr_grammar_cache_entries(const sgr_grammar *cg, size_t *tail) {
    sgr_grammar *g = (sgr_grammar *)cg;
    size_t n = 0, nt = 0;
    pthread_mutex_lock(&g->mu);
    for (tm_cache *c = g->caches; c; c = c->next) {
        pthread_mutex_lock(&c->mu);
        n += c->n_comp;
        nt += c->n_tail;
        pthread_mutex_unlock(&c->mu);
    }
    pthread_mutex_unlock(&g->mu);
    if (tail) *tail = nt;
    return n;
}
