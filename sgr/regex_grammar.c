/* regex_grammar.c — a compiled regex (its Thompson NFA program) as a
 * right-linear grammar: one rule per reachable (program state, length so far)
 * pair, so a length window (minLength/maxLength) intersects exactly. Anchors
 * are exact (^ only before the first code point, $ only at the end); search
 * mode adds "anything" before and after the match as JSON Schema `pattern`
 * means. Word boundaries are refused. Unproductive states (that can never
 * reach an accepting end) are dropped so every prefix can be completed. */
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

/* ---- NFA → grammar ------------------------------------------------------ */

typedef struct clo { uint32_t *cons; size_t n; bool mfree, meol, done; } clo;

typedef struct edge { sgr_expr label; uint32_t to; } edge; /* label -1: epsilon */

typedef struct rstate {
    uint8_t kind; uint32_t pc; uint32_t k;
    bool accept, prod;
    edge *e; size_t ne, cap;
    int32_t rule;
} rstate;

enum { K_NORM, K_PREFIX, K_SUFFIX, K_INIT };

typedef struct rxc {
    const regex *re;
    sgr_gb *b;
    bool json, search;
    int64_t minl, maxl;
    uint32_t cap;        /* counter values 0..cap */
    size_t n;            /* program size */
    int32_t *ix;         /* state index + 1 per (kind, pc, k) */
    rstate *st; size_t nst, capst, max_states;
    clo *clos;           /* per pc, at_start false */
    clo init;            /* pc 0 at_start true */
    sgr_expr *labels;    /* per consuming pc */
    sgr_expr anycp;
    uint32_t *stack; uint8_t *seen;
    bool fail;
    qerr *e;
} rxc;

static int closure(rxc *c, uint32_t pc0, bool at_start, clo *out) {
    size_t n = c->n;
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
        const rinst *in = &c->re->prog[pc];
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
                    if (!p) { c->fail = true; return qerr_set(c->e, "out of memory"); }
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

/* Index of state (kind, pc, k), created on first use; -1 on failure. */
static int64_t state_of(rxc *c, uint8_t kind, uint32_t pc, uint32_t k) {
    size_t key = ((size_t)kind * (c->n + 1) + pc) * (c->cap + 1) + k;
    if (c->ix[key]) return c->ix[key] - 1;
    if (c->nst >= c->max_states) {
        c->fail = true;
        qerr_set(c->e, "unsupported: pattern with length bounds needs more than %zu grammar states", c->max_states);
        return -1;
    }
    if (c->nst == c->capst) {
        size_t nc = c->capst ? c->capst * 2 : 64;
        rstate *p = realloc(c->st, nc * sizeof *p);
        if (!p) { c->fail = true; qerr_set(c->e, "out of memory"); return -1; }
        c->st = p;
        c->capst = nc;
    }
    c->st[c->nst] = (rstate){.kind = kind, .pc = pc, .k = k, .rule = -1};
    c->ix[key] = (int32_t)(++c->nst);
    return (int64_t)c->nst - 1;
}

static void add_edge(rxc *c, size_t s, sgr_expr label, int64_t to) {
    if (to < 0) return;
    rstate *st = &c->st[s];
    if (st->ne == st->cap) {
        size_t nc = st->cap ? st->cap * 2 : 4;
        edge *p = realloc(st->e, nc * sizeof *p);
        if (!p) { c->fail = true; qerr_set(c->e, "out of memory"); return; }
        st->e = p;
        st->cap = nc;
    }
    st->e[st->ne++] = (edge){label, (uint32_t)to};
}

static bool can_consume(const rxc *c, uint32_t k) { return c->maxl < 0 || (int64_t)k < c->maxl; }
static uint32_t next_k(const rxc *c, uint32_t k) { return k + 1 > c->cap ? c->cap : k + 1; }

static sgr_expr label_of(rxc *c, uint32_t pc) {
    if (c->labels[pc] != SGR_EXPR_ERR) return c->labels[pc];
    const rinst *in = &c->re->prog[pc];
    sgr_expr x;
    if (in->op == I_CHAR) {
        range r = {in->x, in->x};
        x = rx_cp_set(c->b, &r, 1, c->json);
    } else if (in->op == I_ANY) {
        static const range any[] = {{0, 9}, {11, 12}, {14, 0x2027}, {0x202A, 0x10FFFF}};
        x = rx_cp_set(c->b, any, 4, c->json);
    } else {
        const rclass *cl = &c->re->classes[in->x];
        x = rx_cp_set(c->b, cl->r, cl->n, c->json);
    }
    c->labels[pc] = x;
    return x;
}

static bool is_void(const sgr_gb *b, sgr_expr x) {
    return x >= 0 && gx_at(b, x)->kind == GX_ALT && gx_at(b, x)->n == 0;
}

static void expand(rxc *c, size_t s) {
    rstate st = c->st[s];
    bool ok_len = (int64_t)st.k >= c->minl;
    if (st.kind == K_SUFFIX) {
        c->st[s].accept = ok_len;
        if (can_consume(c, st.k)) add_edge(c, s, c->anycp, state_of(c, K_SUFFIX, 0, next_k(c, st.k)));
        return;
    }
    if (st.kind == K_PREFIX) {
        add_edge(c, s, SGR_EXPR_ERR, state_of(c, K_NORM, 0, st.k));
        if (can_consume(c, st.k)) add_edge(c, s, c->anycp, state_of(c, K_PREFIX, 0, next_k(c, st.k)));
        return;
    }
    clo *cl;
    if (st.kind == K_INIT) cl = &c->init;
    else cl = &c->clos[st.pc];
    if (!cl->done && closure(c, st.pc, st.kind == K_INIT, cl)) return;
    if (can_consume(c, st.k)) {
        for (size_t i = 0; i < cl->n && !c->fail; i++) {
            uint32_t pc = cl->cons[i];
            sgr_expr lab = label_of(c, pc);
            if (is_void(c->b, lab)) continue;
            add_edge(c, s, lab, state_of(c, K_NORM, pc + 1, next_k(c, st.k)));
        }
    }
    if (cl->mfree) {
        if (c->search) add_edge(c, s, SGR_EXPR_ERR, state_of(c, K_SUFFIX, 0, st.k));
        else if (ok_len) c->st[s].accept = true;
    }
    if (cl->meol && ok_len) c->st[s].accept = true;
    if (st.kind == K_INIT && c->search && can_consume(c, st.k))
        add_edge(c, s, c->anycp, state_of(c, K_PREFIX, 0, next_k(c, st.k)));
}

sgr_expr rx_to_grammar(const regex *re, sgr_gb *b, bool json_string, bool search, int64_t min_len,
                       int64_t max_len, size_t max_states, qerr *e) {
    if (!re || !re->n) return qerr_set(e, "regex_to_grammar: no regex"), SGR_EXPR_ERR;
    if (max_len >= 0 && min_len > max_len) return sgr_gb_alt(b, (const sgr_expr[1]){0}, 0);
    rxc c = {0};
    c.re = re;
    c.b = b;
    c.json = json_string;
    c.search = search;
    c.minl = min_len < 0 ? 0 : min_len;
    c.maxl = max_len;
    c.e = e;
    c.n = re->n;
    c.max_states = max_states ? max_states : 20000;
    int64_t cap = max_len >= 0 ? max_len : c.minl;
    size_t slots = 4 * (c.n + 1);
    if (cap > 1000000 || (size_t)(cap + 1) > (size_t)4000000 / slots) {
        qerr_set(e, "unsupported: pattern with length bounds too large (%zu instructions x %lld lengths)", c.n, (long long)cap);
        return SGR_EXPR_ERR;
    }
    c.cap = (uint32_t)cap;
    c.ix = calloc(slots * (c.cap + 1), sizeof *c.ix);
    c.clos = calloc(c.n + 1, sizeof *c.clos);
    c.labels = malloc((c.n + 1) * sizeof *c.labels);
    c.stack = malloc((4 * c.n + 8) * sizeof *c.stack);
    c.seen = malloc(2 * c.n + 2);
    sgr_expr result = SGR_EXPR_ERR;
    if (!c.ix || !c.clos || !c.labels || !c.stack || !c.seen) { qerr_set(e, "out of memory"); goto out; }
    for (size_t i = 0; i <= c.n; i++) c.labels[i] = SGR_EXPR_ERR;
    static const range all[] = {{0, 0x10FFFF}};
    c.anycp = rx_cp_set(b, all, 1, json_string);
    /* explore */
    int64_t s0 = state_of(&c, K_INIT, 0, 0);
    for (size_t i = 0; i < c.nst && !c.fail; i++) expand(&c, i);
    if (c.fail) goto out;
    (void)s0;
    /* productivity: reverse worklist */
    {
        size_t *deg = calloc(c.nst + 1, sizeof *deg), ne = 0;
        if (!deg) { qerr_set(e, "out of memory"); goto out; }
        for (size_t i = 0; i < c.nst; i++)
            for (size_t k = 0; k < c.st[i].ne; k++) deg[c.st[i].e[k].to + 1]++, ne++;
        for (size_t i = 1; i <= c.nst; i++) deg[i] += deg[i - 1];
        uint32_t *rev = malloc((ne + 1) * sizeof *rev);
        size_t *fill = calloc(c.nst + 1, sizeof *fill);
        uint32_t *work = malloc((c.nst + 1) * sizeof *work);
        if (!rev || !fill || !work) { free(deg); free(rev); free(fill); free(work); qerr_set(e, "out of memory"); goto out; }
        for (size_t i = 0; i < c.nst; i++)
            for (size_t k = 0; k < c.st[i].ne; k++) {
                uint32_t t = c.st[i].e[k].to;
                rev[deg[t] + fill[t]++] = (uint32_t)i;
            }
        size_t nw = 0;
        for (size_t i = 0; i < c.nst; i++) if (c.st[i].accept) { c.st[i].prod = true; work[nw++] = (uint32_t)i; }
        while (nw) {
            uint32_t t = work[--nw];
            for (size_t q = deg[t]; q < deg[t + 1]; q++) {
                uint32_t f = rev[q];
                if (!c.st[f].prod) { c.st[f].prod = true; work[nw++] = f; }
            }
        }
        free(deg); free(rev); free(fill); free(work);
    }
    if (!c.st[0].prod) { result = sgr_gb_alt(b, (const sgr_expr[1]){0}, 0); goto out; }
    /* emit */
    size_t base = sgr_gb_n_rules(b);
    for (size_t i = 0; i < c.nst; i++) {
        if (!c.st[i].prod) continue;
        char nm[48];
        snprintf(nm, sizeof nm, "re%zu_%zu", base, i);
        c.st[i].rule = sgr_gb_rule(b, nm);
    }
    for (size_t i = 0; i < c.nst; i++) {
        rstate *st = &c.st[i];
        if (!st->prod) continue;
        xv alts = {0};
        if (st->accept) xv_push(&alts, sgr_gb_empty(b));
        for (size_t k = 0; k < st->ne; k++) {
            rstate *t = &c.st[st->e[k].to];
            if (!t->prod) continue;
            sgr_expr r = sgr_gb_ref(b, t->rule);
            xv_push(&alts, st->e[k].label == SGR_EXPR_ERR ? r : sgr_gb_seq2(b, st->e[k].label, r));
        }
        if (alts.oom) { free(alts.v); qerr_set(e, "out of memory"); goto out; }
        sgr_gb_define(b, st->rule, sgr_gb_alt(b, alts.v, alts.n));
        free(alts.v);
    }
    result = sgr_gb_ref(b, c.st[0].rule);
    if (sgr_gb_error(b)) { qerr_set(e, "%s", sgr_gb_error(b)); result = SGR_EXPR_ERR; }
out:
    for (size_t i = 0; i < c.nst; i++) free(c.st[i].e);
    free(c.st);
    if (c.clos) for (size_t i = 0; i <= c.n; i++) free(c.clos[i].cons);
    free(c.clos);
    free(c.init.cons);
    free(c.ix);
    free(c.labels);
    free(c.stack);
    free(c.seen);
    return result;
}

sgr_expr regex_to_grammar(const regex *re, sgr_gb *b, bool json_string, bool search, qerr *e) {
    return rx_to_grammar(re, b, json_string, search, 0, -1, 0, e);
}
