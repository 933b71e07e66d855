/* regex_grammar.c — compiled regexes (Thompson NFA programs) as a
 * right-linear grammar for the strings they ALL match: one rule per
 * reachable (state of each program, length so far) tuple, so several
 * patterns, a format's regex and a length window (minLength/maxLength)
 * intersect exactly. Anchors are exact (^ only before the first code point,
 * $ only at the end); search mode adds "anything" before and after the match
 * as JSON Schema `pattern` means. Word boundaries are refused. Unproductive
 * states (that can never reach an accepting end) are dropped so every prefix
 * can be completed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar_int.h"
#include "regex_int.h"

/* ---- code point sets ---------------------------------------------------- */

static sgr_expr esc_cp(sgr_gb *b, uint32_t c) {
    char t[8];
    switch (c) {
    case '"': return sgr_gb_str(b, "\\\"");
    case '\\': return sgr_gb_str(b, "\\\\");
    case '\b': return sgr_gb_str(b, "\\b");
    case '\f': return sgr_gb_str(b, "\\f");
    case '\n': return sgr_gb_str(b, "\\n");
    case '\r': return sgr_gb_str(b, "\\r");
    case '\t': return sgr_gb_str(b, "\\t");
    default: snprintf(t, sizeof t, "\\u%04x", (unsigned)c); return sgr_gb_str(b, t);
    }
}

typedef struct xv { sgr_expr *v; size_t n, cap; bool oom; } xv;
static void xv_push(xv *a, sgr_expr x) {
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 16;
        sgr_expr *p = realloc(a->v, nc * sizeof *p);
        if (!p) { a->oom = true; return; }
        a->v = p;
        a->cap = nc;
    }
    a->v[a->n++] = x;
}

/* [lo, hi] without surrogates, as raw UTF-8. */
static void push_plain(sgr_gb *b, xv *a, uint32_t lo, uint32_t hi) {
    if (lo > hi) return;
    if (lo <= 0xDFFF && hi >= 0xD800) {
        if (lo < 0xD800) xv_push(a, sgr_gb_cp_range(b, lo, 0xD7FF));
        if (hi > 0xDFFF) xv_push(a, sgr_gb_cp_range(b, 0xE000, hi));
        return;
    }
    xv_push(a, sgr_gb_cp_range(b, lo, hi));
}

sgr_expr rx_cp_set(sgr_gb *b, const range *r, size_t n, bool json_string) {
    xv a = {0};
    for (size_t i = 0; i < n; i++) {
        uint32_t lo = r[i].lo, hi = r[i].hi > 0x10FFFF ? 0x10FFFF : r[i].hi;
        if (lo > hi) continue;
        if (!json_string) { push_plain(b, &a, lo, hi); continue; }
        while (lo <= hi) {
            if (lo < 0x20 || lo == '"' || lo == '\\') { xv_push(&a, esc_cp(b, lo)); lo++; continue; }
            uint32_t e = hi;
            if (lo < '"' && e >= '"') e = '"' - 1;
            else if (lo < '\\' && e >= '\\') e = '\\' - 1;
            push_plain(b, &a, lo, e);
            if (e == hi) break;
            lo = e + 1;
        }
    }
    if (a.oom) { free(a.v); return sgr_gb_fail(b, "out of memory building a grammar"); }
    static const sgr_expr none[1] = {0}; /* never read: n == 0 */
    sgr_expr x = sgr_gb_alt(b, a.n ? a.v : none, a.n);
    free(a.v);
    return x;
}

/* ---- NFA product → grammar ---------------------------------------------- */

/* A product state is one code per regex (kind and program counter) plus the
 * length so far; its moves are the regexes' moves taken together: an epsilon
 * move advances one regex, a code point advances all of them on the
 * intersection of their sets. With one regex this is that regex's NFA. */

typedef struct clo { uint32_t *cons; size_t n; bool mfree, meol, done; } clo;

typedef struct edge { sgr_expr label; uint32_t to; } edge; /* label -1: epsilon */

typedef struct rstate {
    uint32_t k;
    bool accept, prod;
    edge *e; size_t ne, cap;
    int32_t rule;
} rstate;

enum { K_NORM, K_PREFIX, K_SUFFIX, K_INIT };

/* One move of one regex: epsilon, or one code point of instruction pc's set
 * (pc -1: any code point); to is the regex's next code. */
typedef struct move { bool eps; int32_t pc; uint32_t to; } move;
typedef struct mvec { move *v; size_t n, cap; } mvec;

typedef struct term {
    const regex *re;
    bool search;
    size_t n;            /* program size */
    clo *clos;           /* per pc, at_start false */
    clo init;            /* pc 0 at_start true */
    sgr_expr *labels;    /* per consuming pc: its set alone */
    mvec mv;             /* moves of the state being expanded */
} term;

typedef struct rbuf { range *r; size_t n, cap; } rbuf;

/* intersected sets already made (several regexes constrain one step) */
typedef struct lent { uint64_t h; size_t off, n; sgr_expr x; } lent;

typedef struct rxc {
    term *t; size_t nt;
    sgr_gb *b;
    bool json;
    int64_t minl, maxl;
    uint32_t cap;        /* counter values 0..cap */
    uint32_t *codes;     /* nt codes per state */
    rstate *st; size_t nst, capst, max_states;
    uint32_t *hix; size_t hcap; /* state index + 1 by (codes, k) */
    uint32_t *cur;       /* codes of the state being expanded */
    int32_t *pick;       /* chosen pc per regex while combining */
    rbuf *rb;            /* intersection per combining depth */
    lent *lc; size_t nlc, caplc; range *lpool; size_t nlpool, caplpool; uint32_t *lix; size_t lcap;
    size_t work, max_work;
    sgr_expr anycp;
    uint32_t *stack; uint8_t *seen;
    bool fail;
    qerr *e;
} rxc;

static int oom(rxc *c) { c->fail = true; return qerr_set(c->e, "out of memory"); }

static int closure(rxc *c, const term *t, uint32_t pc0, bool at_start, clo *out) {
    size_t n = t->n;
    memset(c->seen, 0, 2 * n);
    size_t sp = 0;
    c->stack[sp++] = pc0 * 2;
    size_t ncap = 0;
    while (sp) {
        uint32_t v = c->stack[--sp];
        uint32_t pc = v / 2;
        bool eol = v & 1;
        if (pc >= n || c->seen[v]) continue;
        c->seen[v] = 1;
        const rinst *in = &t->re->prog[pc];
        switch (in->op) {
        case I_JMP: c->stack[sp++] = in->x * 2 + eol; break;
        case I_SPLIT: c->stack[sp++] = in->y * 2 + eol; c->stack[sp++] = in->x * 2 + eol; break;
        case I_BOL: if (at_start) c->stack[sp++] = (pc + 1) * 2 + eol; break;
        case I_EOL: c->stack[sp++] = (pc + 1) * 2 + 1; break;
        case I_MATCH: if (eol) out->meol = true; else out->mfree = true; break;
        case I_WORDB: case I_NWORDB: c->fail = true; return qerr_set(c->e, "unsupported: word boundary (\\b, \\B) in a pattern");
        case I_CHAR: case I_ANY: case I_CLASS:
            if (!eol) {
                if (out->n == ncap) {
                    ncap = ncap ? ncap * 2 : 4;
                    uint32_t *p = realloc(out->cons, ncap * sizeof *p);
                    if (!p) return oom(c);
                    out->cons = p;
                }
                out->cons[out->n++] = pc;
            }
            break;
        default: break;
        }
    }
    out->done = true;
    return 0;
}

static uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdull;
}

static uint64_t key_hash(const rxc *c, const uint32_t *codes, uint32_t k) {
    uint64_t h = k;
    for (size_t i = 0; i < c->nt; i++) h = mix(h, codes[i]);
    return h ^ (h >> 29);
}

static int hix_grow(rxc *c) {
    size_t nc = c->hcap ? c->hcap * 2 : 1024;
    uint32_t *p = calloc(nc, sizeof *p);
    if (!p) return oom(c);
    for (size_t i = 0; i < c->nst; i++) {
        size_t h = (size_t)key_hash(c, c->codes + i * c->nt, c->st[i].k) & (nc - 1);
        while (p[h]) h = (h + 1) & (nc - 1);
        p[h] = (uint32_t)i + 1;
    }
    free(c->hix);
    c->hix = p;
    c->hcap = nc;
    return 0;
}

/* Index of state (codes, k), created on first use; -1 on failure. */
static int64_t state_of(rxc *c, const uint32_t *codes, uint32_t k) {
    if (c->fail) return -1;
    size_t h = (size_t)key_hash(c, codes, k) & (c->hcap - 1);
    for (; c->hix[h]; h = (h + 1) & (c->hcap - 1)) {
        size_t i = c->hix[h] - 1;
        if (c->st[i].k == k && !memcmp(c->codes + i * c->nt, codes, c->nt * sizeof *codes)) return (int64_t)i;
    }
    if (c->nst >= c->max_states) {
        c->fail = true;
        if (c->nt == 1) qerr_set(c->e, "unsupported: pattern with length bounds needs more than %zu grammar states", c->max_states);
        else qerr_set(c->e, "unsupported: pattern intersection (%zu regexes) needs more than %zu grammar states", c->nt, c->max_states);
        return -1;
    }
    if (c->nst == c->capst) {
        size_t nc = c->capst ? c->capst * 2 : 64;
        rstate *p = realloc(c->st, nc * sizeof *p);
        if (!p) return oom(c), -1;
        c->st = p;
        uint32_t *q = realloc(c->codes, nc * c->nt * sizeof *q);
        if (!q) return oom(c), -1;
        c->codes = q;
        c->capst = nc;
    }
    c->st[c->nst] = (rstate){.k = k, .rule = -1};
    memcpy(c->codes + c->nst * c->nt, codes, c->nt * sizeof *codes);
    c->hix[h] = (uint32_t)(++c->nst);
    if (2 * c->nst > c->hcap && hix_grow(c)) return -1;
    return (int64_t)c->nst - 1;
}

static void add_edge(rxc *c, size_t s, sgr_expr label, int64_t to) {
    if (to < 0) return;
    rstate *st = &c->st[s];
    if (st->ne == st->cap) {
        size_t nc = st->cap ? st->cap * 2 : 4;
        edge *p = realloc(st->e, nc * sizeof *p);
        if (!p) { oom(c); return; }
        st->e = p;
        st->cap = nc;
    }
    st->e[st->ne++] = (edge){label, (uint32_t)to};
}

static bool can_consume(const rxc *c, uint32_t k) { return c->maxl < 0 || (int64_t)k < c->maxl; }
static uint32_t next_k(const rxc *c, uint32_t k) { return k + 1 > c->cap ? c->cap : k + 1; }

static const range any_line[] = {{0, 9}, {11, 12}, {14, 0x2027}, {0x202A, 0x10FFFF}};

/* The code points instruction pc consumes, as sorted ranges. */
static const range *set_of(const term *t, uint32_t pc, range *one, size_t *n) {
    const rinst *in = &t->re->prog[pc];
    if (in->op == I_CHAR) { *one = (range){in->x, in->x}; *n = 1; return one; }
    if (in->op == I_ANY) { *n = sizeof any_line / sizeof *any_line; return any_line; }
    const rclass *cl = &t->re->classes[in->x];
    *n = cl->n;
    return cl->r;
}

static sgr_expr label_of(rxc *c, term *t, uint32_t pc) {
    if (t->labels[pc] != SGR_EXPR_ERR) return t->labels[pc];
    range one;
    size_t n;
    const range *r = set_of(t, pc, &one, &n);
    return t->labels[pc] = rx_cp_set(c->b, r, n, c->json);
}

static bool is_void(const sgr_gb *b, sgr_expr x) {
    return x >= 0 && gx_at(b, x)->kind == GX_ALT && gx_at(b, x)->n == 0;
}

static uint32_t code_of(const term *t, uint8_t kind, uint32_t pc) { return (uint32_t)(kind * (t->n + 1) + pc); }

static void push_move(rxc *c, mvec *m, bool eps, int32_t pc, uint32_t to) {
    if (m->n == m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 8;
        move *p = realloc(m->v, nc * sizeof *p);
        if (!p) { oom(c); return; }
        m->v = p;
        m->cap = nc;
    }
    m->v[m->n++] = (move){eps, pc, to};
}

/* The moves of regex t from code (in t->mv); returns whether it accepts there. */
static bool term_moves(rxc *c, term *t, uint32_t code, bool can) {
    uint8_t kind = (uint8_t)(code / (t->n + 1));
    uint32_t pc = code % (uint32_t)(t->n + 1);
    mvec *m = &t->mv;
    m->n = 0;
    if (kind == K_SUFFIX) {
        if (can) push_move(c, m, false, -1, code_of(t, K_SUFFIX, 0));
        return true;
    }
    if (kind == K_PREFIX) {
        push_move(c, m, true, -1, code_of(t, K_NORM, 0));
        if (can) push_move(c, m, false, -1, code_of(t, K_PREFIX, 0));
        return false;
    }
    clo *cl = kind == K_INIT ? &t->init : &t->clos[pc];
    if (!cl->done && closure(c, t, pc, kind == K_INIT, cl)) return false;
    bool acc = false;
    if (can) {
        for (size_t i = 0; i < cl->n && !c->fail; i++) {
            uint32_t q = cl->cons[i];
            if (is_void(c->b, label_of(c, t, q))) continue;
            push_move(c, m, false, (int32_t)q, code_of(t, K_NORM, q + 1));
        }
    }
    if (cl->mfree) {
        if (t->search) push_move(c, m, true, -1, code_of(t, K_SUFFIX, 0));
        else acc = true;
    }
    if (cl->meol) acc = true;
    if (kind == K_INIT && t->search && can) push_move(c, m, false, -1, code_of(t, K_PREFIX, 0));
    return acc;
}

static int rb_fit(rxc *c, rbuf *r, size_t n) {
    if (n <= r->cap) return 0;
    range *p = realloc(r->r, n * sizeof *p);
    if (!p) return oom(c);
    r->r = p;
    r->cap = n;
    return 0;
}

/* The set of code points several regexes accept at once (sorted ranges r,
 * n > 0), one expression per distinct set. */
static sgr_expr label_multi(rxc *c, const range *r, size_t n) {
    uint64_t h = n;
    for (size_t i = 0; i < n; i++) h = mix(h, (uint64_t)r[i].lo << 32 | r[i].hi);
    if (2 * (c->nlc + 1) > c->lcap) {
        size_t nc = c->lcap ? c->lcap * 2 : 256;
        uint32_t *p = calloc(nc, sizeof *p);
        if (!p) return oom(c), SGR_EXPR_ERR;
        for (size_t i = 0; i < c->nlc; i++) {
            size_t s = (size_t)c->lc[i].h & (nc - 1);
            while (p[s]) s = (s + 1) & (nc - 1);
            p[s] = (uint32_t)i + 1;
        }
        free(c->lix);
        c->lix = p;
        c->lcap = nc;
    }
    size_t s = (size_t)h & (c->lcap - 1);
    for (; c->lix[s]; s = (s + 1) & (c->lcap - 1)) {
        const lent *l = &c->lc[c->lix[s] - 1];
        if (l->h == h && l->n == n && !memcmp(c->lpool + l->off, r, n * sizeof *r)) return l->x;
    }
    if (c->nlc == c->caplc) {
        size_t nc = c->caplc ? c->caplc * 2 : 64;
        lent *p = realloc(c->lc, nc * sizeof *p);
        if (!p) return oom(c), SGR_EXPR_ERR;
        c->lc = p;
        c->caplc = nc;
    }
    if (c->nlpool + n > c->caplpool) {
        size_t nc = c->caplpool ? c->caplpool * 2 : 256;
        while (nc < c->nlpool + n) nc *= 2;
        range *p = realloc(c->lpool, nc * sizeof *p);
        if (!p) return oom(c), SGR_EXPR_ERR;
        c->lpool = p;
        c->caplpool = nc;
    }
    memcpy(c->lpool + c->nlpool, r, n * sizeof *r);
    sgr_expr x = rx_cp_set(c->b, r, n, c->json);
    c->lc[c->nlc] = (lent){h, c->nlpool, n, x};
    c->nlpool += n;
    c->lix[s] = (uint32_t)++c->nlc;
    return x;
}

/* Sorted disjoint ranges a ∩ b into out. */
static int intersect(rxc *c, const range *a, size_t na, const range *b, size_t nb, rbuf *out) {
    if (rb_fit(c, out, na + nb)) return -1;
    size_t i = 0, j = 0;
    out->n = 0;
    while (i < na && j < nb) {
        uint32_t lo = a[i].lo > b[j].lo ? a[i].lo : b[j].lo, hi = a[i].hi < b[j].hi ? a[i].hi : b[j].hi;
        if (lo <= hi) out->r[out->n++] = (range){lo, hi};
        if (a[i].hi < b[j].hi) i++;
        else j++;
    }
    return 0;
}

/* Regex i..nt-1 consume a code point of set (r, n; NULL: any) together:
 * one edge per combination with a common code point. */
static void combine(rxc *c, size_t s, size_t i, const range *r, size_t n, uint32_t kn) {
    if (c->fail) return;
    if (c->nt > 1 && ++c->work > c->max_work) {
        c->fail = true;
        qerr_set(c->e, "unsupported: pattern intersection (%zu regexes) needs more than %zu transitions", c->nt, c->max_work);
        return;
    }
    if (i == c->nt) {
        size_t picked = 0, last = 0;
        for (size_t q = 0; q < c->nt; q++) if (c->pick[q] >= 0) picked++, last = q;
        sgr_expr lab;
        if (!picked) lab = c->anycp;
        else if (picked == 1) lab = label_of(c, &c->t[last], (uint32_t)c->pick[last]);
        else lab = label_multi(c, r, n);
        if (lab == SGR_EXPR_ERR || is_void(c->b, lab)) return;
        add_edge(c, s, lab, state_of(c, c->cur, kn));
        return;
    }
    term *t = &c->t[i];
    uint32_t save = c->cur[i];
    for (size_t m = 0; m < t->mv.n && !c->fail; m++) {
        const move *mv = &t->mv.v[m];
        if (mv->eps) continue;
        c->cur[i] = mv->to;
        c->pick[i] = mv->pc;
        if (mv->pc < 0) { combine(c, s, i + 1, r, n, kn); continue; }
        range one;
        size_t nn;
        const range *rr = set_of(t, (uint32_t)mv->pc, &one, &nn);
        if (!r) { combine(c, s, i + 1, rr, nn, kn); continue; }
        if (intersect(c, r, n, rr, nn, &c->rb[i])) return;
        if (c->rb[i].n) combine(c, s, i + 1, c->rb[i].r, c->rb[i].n, kn);
    }
    c->cur[i] = save;
    c->pick[i] = -1;
}

static void expand(rxc *c, size_t s) {
    uint32_t k = c->st[s].k;
    bool can = can_consume(c, k), acc = (int64_t)k >= c->minl;
    memcpy(c->cur, c->codes + s * c->nt, c->nt * sizeof *c->cur);
    for (size_t i = 0; i < c->nt && !c->fail; i++) acc &= term_moves(c, &c->t[i], c->cur[i], can);
    if (c->fail) return;
    c->st[s].accept = acc;
    /* regex 0's moves in order (each code point move combined with the
     * others'), then the other regexes' epsilon moves */
    term *t0 = &c->t[0];
    for (size_t m = 0; m < t0->mv.n && !c->fail; m++) {
        const move *mv = &t0->mv.v[m];
        if (mv->eps) {
            c->cur[0] = mv->to;
            add_edge(c, s, SGR_EXPR_ERR, state_of(c, c->cur, k));
            c->cur[0] = c->codes[s * c->nt];
            continue;
        }
        c->cur[0] = mv->to;
        c->pick[0] = mv->pc;
        range one;
        size_t n = 0;
        const range *r = mv->pc < 0 ? NULL : set_of(t0, (uint32_t)mv->pc, &one, &n);
        combine(c, s, 1, r, n, next_k(c, k));
        c->cur[0] = c->codes[s * c->nt];
        c->pick[0] = -1;
    }
    for (size_t i = 1; i < c->nt && !c->fail; i++) {
        const term *t = &c->t[i];
        for (size_t m = 0; m < t->mv.n && !c->fail; m++) {
            if (!t->mv.v[m].eps) continue;
            c->cur[i] = t->mv.v[m].to;
            add_edge(c, s, SGR_EXPR_ERR, state_of(c, c->cur, k));
            c->cur[i] = c->codes[s * c->nt + i];
        }
    }
}

/* Marks the states from which an accepting state is reachable. */
static int mark_productive(rxc *c) {
    size_t *deg = calloc(c->nst + 1, sizeof *deg), ne = 0;
    if (!deg) return oom(c);
    for (size_t i = 0; i < c->nst; i++)
        for (size_t k = 0; k < c->st[i].ne; k++) deg[c->st[i].e[k].to + 1]++, ne++;
    for (size_t i = 1; i <= c->nst; i++) deg[i] += deg[i - 1];
    uint32_t *rev = malloc((ne + 1) * sizeof *rev);
    size_t *fill = calloc(c->nst + 1, sizeof *fill);
    uint32_t *work = malloc((c->nst + 1) * sizeof *work);
    if (!rev || !fill || !work) { free(deg); free(rev); free(fill); free(work); return oom(c); }
    for (size_t i = 0; i < c->nst; i++)
        for (size_t k = 0; k < c->st[i].ne; k++) {
            uint32_t t = c->st[i].e[k].to;
            rev[deg[t] + fill[t]++] = (uint32_t)i;
        }
    size_t nw = 0;
    for (size_t i = 0; i < c->nst; i++) if (c->st[i].accept) { c->st[i].prod = true; work[nw++] = (uint32_t)i; }
    while (nw) {
        uint32_t t = work[--nw];
        for (size_t q = deg[t]; q < deg[t + 1]; q++) {
            uint32_t f = rev[q];
            if (!c->st[f].prod) { c->st[f].prod = true; work[nw++] = f; }
        }
    }
    free(deg); free(rev); free(fill); free(work);
    return 0;
}

/* One rule per productive state; returns the first state's reference. */
static sgr_expr emit(rxc *c) {
    sgr_gb *b = c->b;
    size_t base = sgr_gb_n_rules(b);
    for (size_t i = 0; i < c->nst; i++) {
        if (!c->st[i].prod) continue;
        char nm[48];
        snprintf(nm, sizeof nm, "re%zu_%zu", base, i);
        c->st[i].rule = sgr_gb_rule(b, nm);
    }
    for (size_t i = 0; i < c->nst; i++) {
        rstate *st = &c->st[i];
        if (!st->prod) continue;
        xv alts = {0};
        if (st->accept) xv_push(&alts, sgr_gb_empty(b));
        for (size_t k = 0; k < st->ne; k++) {
            rstate *t = &c->st[st->e[k].to];
            if (!t->prod) continue;
            sgr_expr r = sgr_gb_ref(b, t->rule);
            xv_push(&alts, st->e[k].label == SGR_EXPR_ERR ? r : sgr_gb_seq2(b, st->e[k].label, r));
        }
        if (alts.oom) { free(alts.v); return oom(c), SGR_EXPR_ERR; }
        sgr_gb_define(b, st->rule, sgr_gb_alt(b, alts.v, alts.n));
        free(alts.v);
    }
    if (sgr_gb_error(b)) { qerr_set(c->e, "%s", sgr_gb_error(b)); return SGR_EXPR_ERR; }
    return sgr_gb_ref(b, c->st[0].rule);
}

sgr_expr rx_terms_to_grammar(const rx_term *terms, size_t nt, sgr_gb *b, bool json_string, int64_t min_len,
                             int64_t max_len, size_t max_states, qerr *e) {
    if (!nt || nt > RX_MAX_TERMS) return qerr_set(e, "regex_to_grammar: %zu regexes (1..%d)", nt, RX_MAX_TERMS), SGR_EXPR_ERR;
    size_t slots = 0, nmax = 0;
    for (size_t i = 0; i < nt; i++) {
        if (!terms[i].re || !terms[i].re->n) return qerr_set(e, "regex_to_grammar: no regex"), SGR_EXPR_ERR;
        slots += 4 * (terms[i].re->n + 1);
        if (terms[i].re->n > nmax) nmax = terms[i].re->n;
    }
    if (max_len >= 0 && min_len > max_len) return sgr_gb_alt(b, (const sgr_expr[1]){0}, 0);
    rxc c = {0};
    c.nt = nt;
    c.b = b;
    c.json = json_string;
    c.minl = min_len < 0 ? 0 : min_len;
    c.maxl = max_len;
    c.e = e;
    c.max_states = max_states ? max_states : 20000;
    c.max_work = 64 * c.max_states + 1000000;
    int64_t cap = max_len >= 0 ? max_len : c.minl;
    if (cap > 1000000 || (size_t)(cap + 1) > (size_t)4000000 / slots) {
        qerr_set(e, "unsupported: pattern with length bounds too large (%zu instructions x %lld lengths)", slots / 4 - nt,
                 (long long)cap);
        return SGR_EXPR_ERR;
    }
    c.cap = (uint32_t)cap;
    sgr_expr result = SGR_EXPR_ERR;
    c.t = calloc(nt, sizeof *c.t);
    c.cur = calloc(nt, sizeof *c.cur);
    c.pick = malloc(nt * sizeof *c.pick);
    c.rb = calloc(nt, sizeof *c.rb);
    c.stack = malloc((4 * nmax + 8) * sizeof *c.stack);
    c.seen = malloc(2 * nmax + 2);
    if (!c.t || !c.cur || !c.pick || !c.rb || !c.stack || !c.seen) { oom(&c); goto out; }
    for (size_t i = 0; i < nt; i++) {
        term *t = &c.t[i];
        t->re = terms[i].re;
        t->search = terms[i].search;
        t->n = t->re->n;
        t->clos = calloc(t->n + 1, sizeof *t->clos);
        t->labels = malloc((t->n + 1) * sizeof *t->labels);
        if (!t->clos || !t->labels) { oom(&c); goto out; }
        for (size_t q = 0; q <= t->n; q++) t->labels[q] = SGR_EXPR_ERR;
        c.cur[i] = code_of(t, K_INIT, 0);
        c.pick[i] = -1;
    }
    if (hix_grow(&c)) goto out;
    static const range all[] = {{0, 0x10FFFF}};
    c.anycp = rx_cp_set(b, all, 1, json_string);
    /* explore */
    state_of(&c, c.cur, 0);
    for (size_t i = 0; i < c.nst && !c.fail; i++) expand(&c, i);
    if (c.fail || mark_productive(&c)) goto out;
    if (!c.st[0].prod) { result = sgr_gb_alt(b, (const sgr_expr[1]){0}, 0); goto out; }
    result = emit(&c);
out:
    for (size_t i = 0; i < c.nst; i++) free(c.st[i].e);
    free(c.st);
    free(c.codes);
    free(c.hix);
    if (c.t)
        for (size_t i = 0; i < nt; i++) {
            term *t = &c.t[i];
            if (t->clos) for (size_t q = 0; q <= t->n; q++) free(t->clos[q].cons);
            free(t->clos);
            free(t->init.cons);
            free(t->labels);
            free(t->mv.v);
        }
    if (c.rb) for (size_t i = 0; i < nt; i++) free(c.rb[i].r);
    free(c.t); free(c.cur); free(c.pick); free(c.rb);
    free(c.lc); free(c.lpool); free(c.lix);
    free(c.stack);
    free(c.seen);
    return result;
}

sgr_expr regex_to_grammar(const regex *re, sgr_gb *b, bool json_string, bool search, qerr *e) {
    rx_term t = {re, search};
    return rx_terms_to_grammar(&t, 1, b, json_string, 0, -1, 0, e);
}
