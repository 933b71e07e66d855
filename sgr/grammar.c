/* grammar.c — compiles the builder's IR into the pushdown automaton of
 * pda_int.h: each rule becomes an automaton built backwards from its FINAL
 * state (compile(x, next) returns the state that matches x then goes to
 * next), references become CALL states, and large repeated sub-expressions
 * become internal rules called once per copy so {m,n} costs O(n) states, not
 * O(n * size). Then: shortest completions per state (a Knuth/Dijkstra pass,
 * which also marks dead states), left-recursion detection and tail calls. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sgr/grammar_int.h"
#include "sgr/pda_int.h"

#define MAX_DEPTH 20000
#define INLINE_RULE 64      /* non-recursive rules up to this many states are inlined */
#define INLINE_REPEAT 4096  /* a repeat's copies are inlined up to this many states in all */
#define INLINE_SIMPLE 65536 /* ... or this many when the part is small and makes no call */
#define SIMPLE_PART 64      /* "small": at most this many states */

typedef struct comp {
    const sgr_gb *b;
    sgr_grammar *g;
    uint32_t cap_st, cap_eps, cap_cls, cap_rules;
    uint32_t *cls_hash; uint32_t cls_hcap;
    int32_t *node_rule;      /* IR node -> internal rule, -1 */
    uint32_t *est;           /* IR node -> estimated states (memo, 0 = unknown, else est+1) */
    uint8_t *rstate;         /* user rule: 0 new, 1 in progress, 2 done */
    uint8_t *rrec;           /* user rule closes a reference cycle: never inlined */
    uint32_t *rsize;         /* user rule body estimate */
    uint8_t *indeg;          /* IR node: parents, saturating at 2 (shared nodes are memoized) */
    uint64_t *mk; uint32_t *mv; uint32_t m_cap, m_n; /* (node, next) -> start state */
    uint32_t *rule_node;     /* rule -> body node */
    uint8_t *rule_done;      /* compiled */
    uint32_t *work; uint32_t n_work, cap_work;
    uint32_t n_user;
    char **names;
    int depth;
    qerr *e;
    bool failed;
} comp;

static uint32_t cfail(comp *c, const char *msg) {
    if (!c->failed) qerr_set(c->e, "%s", msg);
    c->failed = true;
    return 0;
}

static bool grow(void **p, uint32_t *cap, uint32_t need, size_t sz) {
    if (need <= *cap) return true;
    uint32_t nc = *cap ? *cap : 64;
    while (nc < need) nc = nc > UINT32_MAX / 2 ? need : nc * 2;
    void *q = realloc(*p, (size_t)nc * sz);
    if (!q) return false;
    *p = q;
    *cap = nc;
    return true;
}

static uint32_t new_state(comp *c, pstate s) {
    if (c->failed) return 0;
    sgr_grammar *g = c->g;
    if (g->n_st >= PDA_MAX_STATES) {
        char m[128];
        snprintf(m, sizeof m, "grammar too large: more than %u automaton states", PDA_MAX_STATES);
        return cfail(c, m);
    }
    if (!grow((void **)&g->st, &c->cap_st, g->n_st + 1, sizeof *g->st)) return cfail(c, "out of memory compiling a grammar");
    g->st[g->n_st] = s;
    return g->n_st++;
}

static uint32_t cls_intern(comp *c, const uint8_t set[32]) {
    if (c->failed) return 0;
    sgr_grammar *g = c->g;
    if (g->n_cls * 2 + 2 > c->cls_hcap) {
        uint32_t nc = c->cls_hcap ? c->cls_hcap * 2 : 256;
        uint32_t *h = calloc(nc, sizeof *h);
        if (!h) return cfail(c, "out of memory compiling a grammar");
        for (uint32_t i = 0; i < g->n_cls; i++) {
            uint64_t x = 1469598103934665603ull;
            for (int k = 0; k < 32; k++) x = (x ^ g->cls[i][k]) * 1099511628211ull;
            uint32_t j = (uint32_t)x & (nc - 1);
            while (h[j]) j = (j + 1) & (nc - 1);
            h[j] = i + 1;
        }
        free(c->cls_hash);
        c->cls_hash = h;
        c->cls_hcap = nc;
    }
    uint64_t x = 1469598103934665603ull;
    for (int k = 0; k < 32; k++) x = (x ^ set[k]) * 1099511628211ull;
    uint32_t j = (uint32_t)x & (c->cls_hcap - 1);
    while (c->cls_hash[j]) {
        uint32_t i = c->cls_hash[j] - 1;
        if (memcmp(g->cls[i], set, 32) == 0) return i;
        j = (j + 1) & (c->cls_hcap - 1);
    }
    if (!grow((void **)&g->cls, &c->cap_cls, g->n_cls + 1, sizeof *g->cls)) return cfail(c, "out of memory compiling a grammar");
    memcpy(g->cls[g->n_cls], set, 32);
    c->cls_hash[j] = g->n_cls + 1;
    return g->n_cls++;
}

static uint32_t byte_state(comp *c, const uint8_t set[32], uint32_t next) {
    uint32_t k = cls_intern(c, set);
    return new_state(c, (pstate){.kind = PS_BYTE, .a = k, .b = next});
}

static uint32_t eps_state(comp *c, const uint32_t *t, uint32_t n) {
    if (c->failed) return 0;
    sgr_grammar *g = c->g;
    if (!grow((void **)&g->eps, &c->cap_eps, g->n_eps + n, sizeof *g->eps)) return cfail(c, "out of memory compiling a grammar");
    if (n) memcpy(g->eps + g->n_eps, t, (size_t)n * sizeof *t);
    uint32_t s = new_state(c, (pstate){.kind = PS_EPS, .a = g->n_eps, .b = n});
    if (!c->failed) g->n_eps += n;
    return s;
}

static uint32_t new_rule(comp *c, uint32_t node, const char *name) {
    sgr_grammar *g = c->g;
    uint32_t cap = c->cap_rules;
    if (!grow((void **)&g->rule_start, &cap, g->n_rules + 1, sizeof *g->rule_start)) return cfail(c, "out of memory compiling a grammar");
    cap = c->cap_rules;
    if (!grow((void **)&c->rule_node, &cap, g->n_rules + 1, sizeof *c->rule_node)) return cfail(c, "out of memory compiling a grammar");
    cap = c->cap_rules;
    if (!grow((void **)&c->rule_done, &cap, g->n_rules + 1, 1)) return cfail(c, "out of memory compiling a grammar");
    cap = c->cap_rules;
    if (!grow((void **)&c->names, &cap, g->n_rules + 1, sizeof *c->names)) return cfail(c, "out of memory compiling a grammar");
    c->cap_rules = cap;
    uint32_t r = g->n_rules++;
    g->rule_start[r] = PDA_INF;
    c->rule_node[r] = node;
    c->rule_done[r] = 0;
    c->names[r] = strdup(name);
    if (!c->names[r]) return cfail(c, "out of memory compiling a grammar");
    return r;
}

static void want_rule(comp *c, uint32_t r) {
    if (c->rule_done[r]) return;
    c->rule_done[r] = 1;
    if (!grow((void **)&c->work, &c->cap_work, c->n_work + 1, sizeof *c->work)) { cfail(c, "out of memory compiling a grammar"); return; }
    c->work[c->n_work++] = r;
}

static uint32_t compile(comp *c, sgr_expr x, uint32_t next, uint32_t owner);

static uint32_t sat32(uint64_t x) { return x > 0x7FFFFFFF ? 0x7FFFFFFF : (uint32_t)x; }

static uint32_t est(comp *c, sgr_expr x, int depth);
static bool repeat_calls(comp *c, const gx_node *nd, int depth);

/* Inline a reference to rule r (its body is compiled in place)? */
static bool rule_inline(comp *c, uint32_t r, int depth) {
    if (r == c->g->start_rule || r >= c->n_user) return false;
    if (c->rstate[r] == 1) { c->rrec[r] = 1; return false; }
    if (c->rstate[r] == 0) {
        c->rstate[r] = 1;
        c->rsize[r] = c->b->rules[r].body == SGR_EXPR_ERR ? 1 : est(c, c->b->rules[r].body, depth + 1);
        c->rstate[r] = 2;
    }
    return !c->rrec[r] && c->rsize[r] <= INLINE_RULE;
}

/* Does x compile to states without a CALL (inlined rules included)? */
static bool call_free(comp *c, sgr_expr x, int depth) {
    if (depth > 200) return false;
    const gx_node *nd = gx_at(c->b, x);
    switch (nd->kind) {
    case GX_EMPTY: case GX_LIT: case GX_CLASS: return true;
    case GX_SEQ: case GX_ALT:
        for (uint32_t i = 0; i < nd->n; i++)
            if (!call_free(c, c->b->kids[nd->off + i], depth + 1)) return false;
        return true;
    case GX_REPEAT: return !repeat_calls(c, nd, depth + 1) && call_free(c, nd->a, depth + 1);
    case GX_REF: {
        uint32_t r = (uint32_t)nd->a;
        return c->b->rules[r].body != SGR_EXPR_ERR && rule_inline(c, r, depth) && call_free(c, c->b->rules[r].body, depth + 1);
    }
    }
    return false;
}

/* A bounded repeat's copies are inlined up to INLINE_REPEAT states, or up
 * to INLINE_SIMPLE for a small call-free part (a JSON string character:
 * each copy is then a few states the token-mask cache handles cheaply);
 * past that the part becomes an internal rule called once per copy. */
static bool repeat_calls(comp *c, const gx_node *nd, int depth) {
    uint64_t copies = nd->max == SGR_INF ? (nd->min ? nd->min : 1) : nd->max;
    uint64_t k = est(c, nd->a, depth);
    if (copies < 2 || k <= 2 || copies * k <= INLINE_REPEAT) return false;
    if (k <= SIMPLE_PART && copies * k <= INLINE_SIMPLE && call_free(c, nd->a, depth)) return false;
    return true;
}

/* States a node compiles to (saturating), with the inlining decisions. */
static uint32_t est(comp *c, sgr_expr x, int depth) {
    if (c->est[x]) return c->est[x] - 1;
    if (depth > MAX_DEPTH) return 0x7FFFFFFF;
    const sgr_gb *b = c->b;
    const gx_node *nd = gx_at(b, x);
    uint64_t v = 0;
    switch (nd->kind) {
    case GX_EMPTY: v = 0; break;
    case GX_LIT: v = nd->n; break;
    case GX_CLASS: v = 1; break;
    case GX_SEQ: case GX_ALT:
        for (uint32_t i = 0; i < nd->n; i++) v += est(c, b->kids[nd->off + i], depth + 1);
        v += nd->kind == GX_ALT;
        break;
    case GX_REPEAT: {
        uint64_t copies = nd->max == SGR_INF ? (nd->min ? nd->min : 1) : nd->max;
        uint64_t k = est(c, nd->a, depth + 1);
        v = copies * k + copies;
        if (repeat_calls(c, nd, depth + 1)) v = copies * 2;
        break;
    }
    case GX_REF: {
        uint32_t r = (uint32_t)nd->a;
        v = rule_inline(c, r, depth) ? c->rsize[r] : 1;
        break;
    }
    }
    uint32_t r = sat32(v);
    if (c->est[x] == 0) c->est[x] = r + 1;
    return r;
}

/* One copy of a repeated kid: inline, or a call to its internal rule. */
static uint32_t unit(comp *c, sgr_expr kid, int32_t rule, uint32_t next, uint32_t owner) {
    if (rule < 0) return compile(c, kid, next, owner);
    want_rule(c, (uint32_t)rule);
    return new_state(c, (pstate){.kind = PS_CALL, .a = (uint32_t)rule, .b = next});
}

/* A shared IR node compiled before with the same continuation is the same
 * automaton fragment: reuse it (keeps suffix-sharing DAGs linear). */
static uint64_t memo_key(sgr_expr x, uint32_t next) { return ((uint64_t)(uint32_t)x << 32 | next) + 1; }

static uint32_t memo_slot(const comp *c, uint64_t k) {
    uint32_t j = (uint32_t)((k * 0x9E3779B97F4A7C15ull) >> 32) & (c->m_cap - 1);
    while (c->mk[j] && c->mk[j] != k) j = (j + 1) & (c->m_cap - 1);
    return j;
}

static void memo_put(comp *c, uint64_t k, uint32_t v) {
    if ((c->m_n + 1) * 2 > c->m_cap) {
        uint32_t nc = c->m_cap ? c->m_cap * 2 : 1024;
        uint64_t *nk = calloc(nc, sizeof *nk);
        uint32_t *nv = malloc((size_t)nc * sizeof *nv);
        if (!nk || !nv) { free(nk); free(nv); return; } /* the memo is an optimization */
        uint64_t *ok = c->mk;
        uint32_t *ov = c->mv, oc = c->m_cap;
        c->mk = nk;
        c->mv = nv;
        c->m_cap = nc;
        for (uint32_t i = 0; i < oc; i++)
            if (ok[i]) {
                uint32_t j = memo_slot(c, ok[i]);
                c->mk[j] = ok[i];
                c->mv[j] = ov[i];
            }
        free(ok);
        free(ov);
    }
    uint32_t j = memo_slot(c, k);
    if (!c->mk[j]) c->m_n++;
    c->mk[j] = k;
    c->mv[j] = v;
}

static uint32_t compile_node(comp *c, sgr_expr x, uint32_t next, uint32_t owner);

static uint32_t compile(comp *c, sgr_expr x, uint32_t next, uint32_t owner) {
    if (c->failed) return 0;
    if (c->indeg[x] < 2 || gx_at(c->b, x)->kind == GX_EMPTY) return compile_node(c, x, next, owner);
    uint64_t k = memo_key(x, next);
    if (c->m_cap) {
        uint32_t j = memo_slot(c, k);
        if (c->mk[j]) return c->mv[j];
    }
    uint32_t s = compile_node(c, x, next, owner);
    if (!c->failed) memo_put(c, k, s);
    return s;
}

static uint32_t compile_node(comp *c, sgr_expr x, uint32_t next, uint32_t owner) {
    if (c->failed) return 0;
    if (++c->depth > MAX_DEPTH) { c->depth--; return cfail(c, "grammar too deeply nested (more than 20000 levels)"); }
    const sgr_gb *b = c->b;
    const gx_node *nd = gx_at(b, x);
    uint32_t s = next;
    switch (nd->kind) {
    case GX_EMPTY: break;
    case GX_LIT:
        for (uint32_t i = nd->n; i-- > 0 && !c->failed;) {
            uint8_t set[32] = {0}, ch = b->bytes[nd->off + i];
            set[ch >> 3] = (uint8_t)(1u << (ch & 7));
            s = byte_state(c, set, s);
        }
        break;
    case GX_CLASS: s = byte_state(c, b->classes[nd->off], next); break;
    case GX_SEQ:
        for (uint32_t i = nd->n; i-- > 0 && !c->failed;) s = compile(c, b->kids[nd->off + i], s, owner);
        break;
    case GX_ALT: {
        uint32_t *t = malloc((size_t)(nd->n ? nd->n : 1) * sizeof *t);
        if (!t) { s = cfail(c, "out of memory compiling a grammar"); break; }
        for (uint32_t i = 0; i < nd->n && !c->failed; i++) t[i] = compile(c, b->kids[nd->off + i], next, owner);
        s = eps_state(c, t, nd->n);
        free(t);
        break;
    }
    case GX_REPEAT: {
        int32_t rule = -1;
        if (repeat_calls(c, nd, 0) && gx_at(b, nd->a)->kind != GX_REF) {
            rule = c->node_rule[nd->a];
            if (rule < 0) {
                char nm[300];
                snprintf(nm, sizeof nm, "%.200s (repeated part)", c->names[owner]);
                rule = (int32_t)new_rule(c, (uint32_t)nd->a, nm);
                if (c->failed) break;
                c->node_rule[nd->a] = rule;
            }
        }
        uint32_t mandatory = nd->min;
        if (nd->max == SGR_INF) {
            /* loop: body -> split(body, next); entered at the split for {0,},
             * at the body (one copy serves the last mandatory one) otherwise */
            uint32_t t[2] = {0, next};
            uint32_t loop = eps_state(c, t, 2);
            uint32_t body = unit(c, nd->a, rule, loop, owner);
            if (c->failed) break;
            c->g->eps[c->g->st[loop].a] = body;
            s = loop;
            if (mandatory) s = body, mandatory--;
        } else {
            for (uint32_t i = nd->min; i < nd->max && !c->failed; i++) {
                uint32_t t[2] = {unit(c, nd->a, rule, s, owner), next};
                s = eps_state(c, t, 2);
            }
        }
        for (uint32_t i = 0; i < mandatory && !c->failed; i++) s = unit(c, nd->a, rule, s, owner);
        break;
    }
    case GX_REF: {
        uint32_t r = (uint32_t)nd->a;
        if (b->rules[r].body == SGR_EXPR_ERR) {
            char m[300];
            snprintf(m, sizeof m, "rule %.200s is referenced but never defined", b->rules[r].name);
            s = cfail(c, m);
            break;
        }
        if (rule_inline(c, r, 0)) {
            s = compile(c, b->rules[r].body, next, owner);
            break;
        }
        want_rule(c, r);
        s = new_state(c, (pstate){.kind = PS_CALL, .a = r, .b = next});
        break;
    }
    }
    c->depth--;
    return s;
}

/* ---- shortest completions (Knuth's generalization of Dijkstra) ---------- */

static uint32_t sat_add(uint32_t a, uint32_t b) {
    if (a == PDA_INF || b == PDA_INF) return PDA_INF;
    uint64_t s = (uint64_t)a + b;
    return s >= PDA_INF - 1 ? PDA_INF - 1 : (uint32_t)s;
}

typedef struct heap { uint64_t *a; size_t n, cap; } heap;

static bool heap_push(heap *h, uint64_t v) {
    if (h->n == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 1024;
        uint64_t *q = realloc(h->a, nc * sizeof *q);
        if (!q) return false;
        h->a = q;
        h->cap = nc;
    }
    size_t i = h->n++;
    while (i > 0 && h->a[(i - 1) / 2] > v) { h->a[i] = h->a[(i - 1) / 2]; i = (i - 1) / 2; }
    h->a[i] = v;
    return true;
}

static uint64_t heap_pop(heap *h) {
    uint64_t top = h->a[0], v = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        uint64_t mv = v;
        if (l < h->n && h->a[l] < mv) { m = l; mv = h->a[l]; }
        if (l + 1 < h->n && h->a[l + 1] < mv) { m = l + 1; mv = h->a[l + 1]; }
        if (m == i) break;
        h->a[i] = h->a[m];
        i = m;
    }
    if (h->n) h->a[i] = v;
    return top;
}

static uint32_t cand(const sgr_grammar *g, uint32_t p) {
    const pstate *s = &g->st[p];
    switch (s->kind) {
    case PS_BYTE: return sat_add(1, g->dist[s->b]);
    case PS_CALL: return sat_add(g->dist[g->rule_start[s->a]], g->dist[s->b]);
    default: return 0;
    }
}

static int compute_dist(sgr_grammar *g, qerr *e) {
    uint32_t n = g->n_st;
    uint32_t *cnt = calloc((size_t)n + 1, sizeof *cnt);
    g->dist = malloc((size_t)n * sizeof *g->dist);
    g->via = malloc((size_t)n * sizeof *g->via);
    if (!cnt || !g->dist || !g->via) { free(cnt); return qerr_set(e, "out of memory compiling a grammar"); }
    for (uint32_t i = 0; i < n; i++) g->dist[i] = PDA_INF, g->via[i] = PDA_INF;
#define DEPS(X)                                                                  \
    for (uint32_t s = 0; s < n; s++) {                                           \
        const pstate *st = &g->st[s];                                            \
        switch (st->kind) {                                                      \
        case PS_BYTE: X(st->b, s); break;                                        \
        case PS_EPS: for (uint32_t k = 0; k < st->b; k++) X(g->eps[st->a + k], s); break; \
        case PS_CALL: X(st->b, s); X(g->rule_start[st->a], s); break;            \
        default: break;                                                          \
        }                                                                        \
    }
#define COUNT(u, s) cnt[(u) + 1]++
    DEPS(COUNT)
    for (uint32_t i = 0; i < n; i++) cnt[i + 1] += cnt[i];
    uint32_t *dep = malloc(((size_t)cnt[n] + 1) * sizeof *dep);
    uint32_t *fill = malloc(((size_t)n + 1) * sizeof *fill);
    heap h = {0};
    if (!dep || !fill) { free(cnt); free(dep); free(fill); return qerr_set(e, "out of memory compiling a grammar"); }
    memcpy(fill, cnt, ((size_t)n + 1) * sizeof *fill);
#define FILL(u, s) dep[fill[u]++] = (s)
    DEPS(FILL)
#undef COUNT
#undef FILL
#undef DEPS
    free(fill);
    bool oom = false;
    for (uint32_t s = 0; s < n; s++)
        if (g->st[s].kind == PS_FINAL) { g->dist[s] = 0; oom |= !heap_push(&h, s); }
    while (h.n && !oom) {
        uint64_t v = heap_pop(&h);
        uint32_t u = (uint32_t)v, d = (uint32_t)(v >> 32);
        if (d != g->dist[u]) continue;
        for (uint32_t k = cnt[u]; k < cnt[u + 1]; k++) {
            uint32_t p = dep[k];
            uint32_t c = g->st[p].kind == PS_EPS ? d : cand(g, p);
            if (c < g->dist[p]) {
                g->dist[p] = c;
                if (g->st[p].kind == PS_EPS) g->via[p] = u;
                oom |= !heap_push(&h, (uint64_t)c << 32 | p);
            }
        }
    }
    free(h.a);
    free(cnt);
    free(dep);
    if (oom) return qerr_set(e, "out of memory compiling a grammar");
    return 0;
}

/* ---- left recursion ----------------------------------------------------- */

static int check_left_recursion(sgr_grammar *g, char **names, qerr *e) {
    uint32_t nr = g->n_rules;
    /* edges R -> Q: Q is called where R can be without consuming a byte */
    uint32_t *eoff = calloc((size_t)nr + 1, sizeof *eoff);
    uint32_t *edst = NULL; size_t n_e = 0, cap_e = 0;
    uint8_t *seen = calloc(g->n_st ? g->n_st : 1, 1);
    uint32_t *stk = NULL; size_t n_s = 0, cap_s = 0;
    int rc = 0;
    if (!eoff || !seen) { rc = qerr_set(e, "out of memory compiling a grammar"); goto out; }
    for (uint32_t r = 0; r < nr; r++) {
        eoff[r] = (uint32_t)n_e;
        if (g->rule_start[r] == PDA_INF) continue;
#define PUSH(x)                                                                         \
        do {                                                                            \
            uint32_t x_ = (x);                                                          \
            if (seen[x_]) break;                                                        \
            seen[x_] = 1;                                                               \
            if (n_s == cap_s) {                                                         \
                cap_s = cap_s ? cap_s * 2 : 256;                                        \
                uint32_t *q_ = realloc(stk, cap_s * sizeof *q_);                        \
                if (!q_) { rc = qerr_set(e, "out of memory compiling a grammar"); goto out; } \
                stk = q_;                                                               \
            }                                                                           \
            stk[n_s++] = x_;                                                            \
        } while (0)
        PUSH(g->rule_start[r]);
        while (n_s) {
            uint32_t s = stk[--n_s];
            const pstate *st = &g->st[s];
            if (st->kind == PS_EPS) {
                for (uint32_t k = 0; k < st->b; k++) PUSH(g->eps[st->a + k]);
            } else if (st->kind == PS_CALL) {
                if (n_e == cap_e) {
                    cap_e = cap_e ? cap_e * 2 : 256;
                    uint32_t *q = realloc(edst, cap_e * sizeof *q);
                    if (!q) { rc = qerr_set(e, "out of memory compiling a grammar"); goto out; }
                    edst = q;
                }
                edst[n_e++] = st->a;
                if (g->rule_start[st->a] != PDA_INF && g->dist[g->rule_start[st->a]] == 0) PUSH(st->b);
            }
        }
#undef PUSH
    }
    eoff[nr] = (uint32_t)n_e;
    /* cycle search: iterative DFS, colour 1 = on the path */
    uint8_t *col = calloc(nr ? nr : 1, 1);
    uint32_t *it = calloc(nr ? nr : 1, sizeof *it);
    uint32_t *path = malloc((nr ? nr : 1) * sizeof *path);
    if (!col || !it || !path) { free(col); free(it); free(path); rc = qerr_set(e, "out of memory compiling a grammar"); goto out; }
    for (uint32_t r0 = 0; r0 < nr && !rc; r0++) {
        if (col[r0]) continue;
        size_t np = 0;
        path[np++] = r0;
        col[r0] = 1;
        it[r0] = eoff[r0];
        while (np && !rc) {
            uint32_t r = path[np - 1];
            if (it[r] < eoff[r + 1]) {
                uint32_t q = edst[it[r]++];
                if (col[q] == 1) {
                    /* name a user rule on the cycle if there is one */
                    const char *nm = names[q];
                    for (size_t k = np; k-- > 0;) {
                        if (!strstr(names[path[k]], " (repeated part)")) { nm = names[path[k]]; break; }
                        if (path[k] == q) break;
                    }
                    rc = qerr_set(e, "left recursion: rule %.200s can reach itself without consuming input", nm);
                } else if (!col[q]) {
                    col[q] = 1;
                    it[q] = eoff[q];
                    path[np++] = q;
                }
            } else {
                col[r] = 2;
                np--;
            }
        }
    }
    free(col);
    free(it);
    free(path);
out:
    free(eoff);
    free(edst);
    free(seen);
    free(stk);
    return rc;
}

/* A return state that reaches only FINAL: calling from here needs no frame. */
static bool only_final(const sgr_grammar *g, uint32_t s, uint8_t *memo, int depth) {
    if (memo[s] == 2) return true;
    if (memo[s] == 3) return false;
    if (memo[s] == 1) return true; /* an epsilon cycle adds nothing */
    if (depth > 1000) return false;
    const pstate *st = &g->st[s];
    bool r;
    if (st->kind == PS_FINAL) r = true;
    else if (st->kind != PS_EPS) r = false;
    else {
        memo[s] = 1;
        r = true;
        for (uint32_t k = 0; k < st->b && r; k++) {
            uint32_t t = g->eps[st->a + k];
            if (g->dist[t] != PDA_INF) r = only_final(g, t, memo, depth + 1);
        }
    }
    memo[s] = r ? 2 : 3;
    return r;
}

/* Static returns: a rule (not the start rule) with exactly one call site
 * returns to that site's return state — or, if the site is a tail call, to
 * wherever the calling rule returns. */
static int static_returns(sgr_grammar *g, qerr *e) {
    uint32_t nr = g->n_rules, n = g->n_st;
    uint32_t *sites = calloc(nr ? nr : 1, sizeof *sites), *site = malloc((nr ? nr : 1) * sizeof *site);
    uint32_t *owner = malloc((n ? n : 1) * sizeof *owner), *stk = malloc((n ? n : 1) * sizeof *stk);
    uint8_t *busy = calloc(nr ? nr : 1, 1);
    g->sret = malloc((nr ? nr : 1) * sizeof *g->sret);
    if (!sites || !site || !owner || !stk || !busy || !g->sret) {
        free(sites); free(site); free(owner); free(stk); free(busy);
        return qerr_set(e, "out of memory compiling a grammar");
    }
    for (uint32_t s = 0; s < n; s++) {
        owner[s] = PDA_INF;
        if (g->st[s].kind == PS_CALL && sites[g->st[s].a]++ == 0) site[g->st[s].a] = s;
    }
    /* the rule each state belongs to: reachable from its start without a call */
    for (uint32_t r = 0; r < nr; r++) {
        if (g->rule_start[r] == PDA_INF) continue;
        size_t top = 0;
        stk[top++] = g->rule_start[r];
        owner[g->rule_start[r]] = r;
        while (top) {
            const pstate *ps = &g->st[stk[--top]];
            uint32_t t[1] = {0}, nt = 0;
            if (ps->kind == PS_BYTE || ps->kind == PS_CALL) t[nt++] = ps->b;
            for (uint32_t k = 0; k < (ps->kind == PS_EPS ? ps->b : nt); k++) {
                uint32_t x = ps->kind == PS_EPS ? g->eps[ps->a + k] : t[k];
                if (owner[x] == PDA_INF) { owner[x] = r; stk[top++] = x; }
            }
        }
    }
    for (uint32_t r = 0; r < nr; r++) g->sret[r] = PDA_INF;
    /* resolve tail chains; busy marks a chain in progress (a cycle: none) */
    for (uint32_t r0 = 0; r0 < nr; r0++) {
        uint32_t path_n = 0, r = r0, ret = PDA_INF;
        while (r != g->start_rule && sites[r] == 1 && !busy[r]) {
            busy[r] = 1;
            stk[path_n++] = r;
            const pstate *cs = &g->st[site[r]];
            if (!cs->tail) { ret = cs->b; break; }
            uint32_t q = owner[site[r]];
            if (q == PDA_INF) break;
            if (g->sret[q] != PDA_INF) { ret = g->sret[q]; break; }
            r = q;
        }
        for (uint32_t k = 0; k < path_n; k++) {
            if (ret != PDA_INF) g->sret[stk[k]] = ret;
            busy[stk[k]] = 0;
        }
    }
    free(sites); free(site); free(owner); free(stk); free(busy);
    return 0;
}

void sgr_grammar_free(sgr_grammar *g) {
    if (!g) return;
    tm_caches_free(g->caches);
    pthread_mutex_destroy(&g->mu);
    free(g->st);
    free(g->eps);
    free(g->cls);
    free(g->rule_start);
    free(g->dist);
    free(g->via);
    free(g->sret);
    free(g);
}

int sgr_grammar_build(sgr_gb *b, int32_t start_rule, sgr_grammar **out, qerr *e) {
    *out = NULL;
    if (sgr_gb_error(b)) return qerr_set(e, "%s", sgr_gb_error(b));
    if (start_rule < 0 || (size_t)start_rule >= b->n_rules) return qerr_set(e, "grammar: no start rule %d", start_rule);
    if (b->rules[start_rule].body == SGR_EXPR_ERR)
        return qerr_set(e, "grammar: start rule %.200s is not defined", b->rules[start_rule].name);
    sgr_grammar *g = calloc(1, sizeof *g);
    if (!g) return qerr_set(e, "out of memory compiling a grammar");
    pthread_mutex_init(&g->mu, NULL);
    comp c = {.b = b, .g = g, .e = e};
    c.node_rule = malloc((b->n_nodes ? b->n_nodes : 1) * sizeof *c.node_rule);
    if (!c.node_rule) { cfail(&c, "out of memory compiling a grammar"); goto fail; }
    for (size_t i = 0; i < b->n_nodes; i++) c.node_rule[i] = -1;
    c.est = calloc(b->n_nodes ? b->n_nodes : 1, sizeof *c.est);
    c.rstate = calloc(b->n_rules ? b->n_rules : 1, 1);
    c.rrec = calloc(b->n_rules ? b->n_rules : 1, 1);
    c.rsize = calloc(b->n_rules ? b->n_rules : 1, sizeof *c.rsize);
    c.indeg = calloc(b->n_nodes ? b->n_nodes : 1, 1);
    if (!c.est || !c.rstate || !c.rrec || !c.rsize || !c.indeg) { cfail(&c, "out of memory compiling a grammar"); goto fail; }
    for (size_t i = 0; i < b->n_nodes; i++) {
        const gx_node *nd = &b->nodes[i];
        if (nd->kind == GX_SEQ || nd->kind == GX_ALT)
            for (uint32_t k = 0; k < nd->n; k++) {
                uint8_t *d = &c.indeg[b->kids[nd->off + k]];
                if (*d < 2) (*d)++;
            }
        else if (nd->kind == GX_REPEAT && c.indeg[nd->a] < 2) c.indeg[nd->a]++;
    }
    for (size_t r = 0; r < b->n_rules; r++)
        if (b->rules[r].body != SGR_EXPR_ERR) c.indeg[b->rules[r].body] = 2;
    for (size_t r = 0; r < b->n_rules && !c.failed; r++) new_rule(&c, (uint32_t)b->rules[r].body, b->rules[r].name);
    c.n_user = (uint32_t)b->n_rules;
    g->start_rule = (uint32_t)start_rule;
    /* decide which rules inline: estimate from the start rule, then from every rule */
    if (!c.failed) {
        c.rstate[start_rule] = 1;
        est(&c, b->rules[start_rule].body, 0);
        c.rstate[start_rule] = 2;
    }
    if (!c.failed) want_rule(&c, (uint32_t)start_rule);
    while (c.n_work && !c.failed) {
        uint32_t r = c.work[--c.n_work];
        uint32_t fin = new_state(&c, (pstate){.kind = PS_FINAL, .a = r});
        uint32_t s = compile(&c, (sgr_expr)c.rule_node[r], fin, r);
        if (!c.failed) g->rule_start[r] = s;
    }
    if (c.failed) goto fail;
    if (compute_dist(g, e) < 0) { c.failed = true; goto fail; }
    if (check_left_recursion(g, c.names, e) < 0) { c.failed = true; goto fail; }
    if (g->dist[g->rule_start[start_rule]] == PDA_INF) {
        qerr_set(e, "grammar: rule %.200s matches no string (every path needs an impossible step)", b->rules[start_rule].name);
        c.failed = true;
        goto fail;
    }
    uint8_t *memo = calloc(g->n_st, 1);
    if (!memo) { qerr_set(e, "out of memory compiling a grammar"); c.failed = true; goto fail; }
    for (uint32_t s = 0; s < g->n_st; s++)
        if (g->st[s].kind == PS_CALL) g->st[s].tail = only_final(g, g->st[s].b, memo, 0);
    free(memo);
    if (static_returns(g, e) < 0) { c.failed = true; goto fail; }
fail:
    free(c.cls_hash);
    free(c.node_rule);
    free(c.est);
    free(c.rstate);
    free(c.rrec);
    free(c.rsize);
    free(c.indeg);
    free(c.mk);
    free(c.mv);
    free(c.rule_node);
    free(c.rule_done);
    free(c.work);
    for (uint32_t r = 0; c.names && r < g->n_rules; r++) free(c.names[r]);
    free(c.names);
    if (c.failed) { sgr_grammar_free(g); return -1; }
    *out = g;
    return 0;
}

size_t sgr_grammar_n_states(const sgr_grammar *g) { return g->n_st; }

void sgr_grammar_set_tail_walk(sgr_grammar *g, bool on) { g->no_tail = !on; }
