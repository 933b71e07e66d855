/* chat.c — chat templates: a small interpreter for the subset of Jinja that
 * model chat templates use. Rendering follows the conventions of the
 * Hugging Face template runner: trim_blocks and lstrip_blocks are on, the
 * context holds messages, add_generation_prompt, bos_token and eos_token,
 * and raise_exception(msg) aborts with msg.
 *
 * Supported: {{ }}, {% if/elif/else/endif %}, {% for x in .. %} (with loop.*,
 * also "for a, b in"), {% set x = .. %} and {% set ns.x = .. %} with
 * namespace(), {# #}, "-" whitespace control; literals, lists, dicts,
 * attribute/index/slice access, and/or/not, comparisons, in, is [not] TEST,
 * + - * / // % ~, "a if c else b", filters and string methods listed below.
 * Everything a render allocates lives in one arena freed at the end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tokenizer.h"

/* ------------------------------------------------------------------------ */
/* Arena */

typedef struct ablock { struct ablock *next; size_t used, cap; max_align_t data[]; } ablock;
typedef struct arena { ablock *head; } arena;

static void *aalloc(arena *a, size_t n) {
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (!a->head || a->head->used + n > a->head->cap) {
        size_t cap = n > 65536 ? n : 65536;
        ablock *b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    void *p = (char *)a->head->data + a->head->used;
    a->head->used += n;
    memset(p, 0, n);
    return p;
}

static void arena_free(arena *a) {
    while (a->head) { ablock *n = a->head->next; free(a->head); a->head = n; }
}

/* ------------------------------------------------------------------------ */
/* Values */

enum { JV_UNDEF, JV_NONE, JV_BOOL, JV_INT, JV_STR, JV_LIST, JV_DICT };

typedef struct jv jv;
typedef struct jlist { size_t n, cap; jv *items; } jlist;
typedef struct jdict { size_t n, cap; const char **keys; size_t *klen; jv *vals; } jdict;

struct jv {
    int k;
    bool b;
    int64_t i;
    const char *s;
    size_t n;
    jlist *l;
    jdict *d;
};

static jv jv_undef(void) { jv v = {0}; return v; }
static jv jv_none(void) { jv v = {0}; v.k = JV_NONE; return v; }
static jv jv_bool(bool b) { jv v = {0}; v.k = JV_BOOL; v.b = b; return v; }
static jv jv_int(int64_t i) { jv v = {0}; v.k = JV_INT; v.i = i; return v; }
static jv jv_str(const char *s, size_t n) { jv v = {0}; v.k = JV_STR; v.s = s; v.n = n; return v; }

/* ------------------------------------------------------------------------ */
/* Interpreter state */

typedef struct frame { size_t n, cap; const char **names; jv *vals; struct frame *up; } frame;

typedef struct jctx {
    arena a;
    qerr *e;
    bool failed;
    char *out;
    size_t on, ocap;
    frame *top;
    int depth;
    uint64_t steps; /* work done: bounded so hostile templates end */
} jctx;

#define CHAT_MAX_STEPS 20000000ull
#define CHAT_MAX_OUTPUT (64u << 20)

/* Records the first error; arg is quoted into one line (control bytes
 * become '?', long text is cut). */
static int jfail(jctx *c, const char *fmt, const char *arg) {
    if (!c->failed) {
        c->failed = true;
        char clean[128];
        size_t n = 0;
        for (const char *p = arg ? arg : ""; *p && n < sizeof clean - 4; p++)
            clean[n++] = (unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p;
        if (arg && strlen(arg) > n) { memcpy(clean + n, "...", 3); n += 3; }
        clean[n] = 0;
        qerr_set(c->e, fmt, clean);
    }
    return -1;
}

static char *astrdup(jctx *c, const char *s, size_t n) {
    char *p = aalloc(&c->a, n + 1);
    if (!p) { jfail(c, "chat template: out of memory%s", ""); return NULL; }
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

static int emit(jctx *c, const char *s, size_t n) {
    if (c->on + n > CHAT_MAX_OUTPUT) return jfail(c, "chat template: output too large%s", "");
    if (c->on + n + 1 > c->ocap) {
        size_t nc = c->ocap ? c->ocap : 1024;
        while (nc < c->on + n + 1) nc *= 2;
        char *np = realloc(c->out, nc);
        if (!np) return jfail(c, "chat template: out of memory%s", "");
        c->out = np;
        c->ocap = nc;
    }
    memcpy(c->out + c->on, s, n);
    c->on += n;
    return 0;
}

static int list_push(jctx *c, jlist *l, jv v) {
    if (++c->steps > CHAT_MAX_STEPS) return jfail(c, "chat template: too much work%s", "");
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 8;
        jv *ni = aalloc(&c->a, nc * sizeof *ni);
        if (!ni) return jfail(c, "chat template: out of memory%s", "");
        if (l->n) memcpy(ni, l->items, l->n * sizeof *ni);
        l->items = ni;
        l->cap = nc;
    }
    l->items[l->n++] = v;
    return 0;
}

static jv *dict_slot(jctx *c, jdict *d, const char *k, size_t kn, bool create) {
    for (size_t i = 0; i < d->n; i++)
        if (d->klen[i] == kn && memcmp(d->keys[i], k, kn) == 0) return &d->vals[i];
    if (!create) return NULL;
    if (d->n == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 8;
        const char **nk = aalloc(&c->a, nc * sizeof *nk);
        size_t *nl = aalloc(&c->a, nc * sizeof *nl);
        jv *nv = aalloc(&c->a, nc * sizeof *nv);
        if (!nk || !nl || !nv) { jfail(c, "chat template: out of memory%s", ""); return NULL; }
        if (d->n) {
            memcpy(nk, d->keys, d->n * sizeof *nk);
            memcpy(nl, d->klen, d->n * sizeof *nl);
            memcpy(nv, d->vals, d->n * sizeof *nv);
        }
        d->keys = nk; d->klen = nl; d->vals = nv; d->cap = nc;
    }
    d->keys[d->n] = k;
    d->klen[d->n] = kn;
    d->vals[d->n] = jv_undef();
    return &d->vals[d->n++];
}

static jv *scope_find(jctx *c, const char *name, size_t n) {
    for (frame *f = c->top; f; f = f->up)
        for (size_t i = f->n; i-- > 0;)
            if (strlen(f->names[i]) == n && memcmp(f->names[i], name, n) == 0) return &f->vals[i];
    return NULL;
}

static int scope_set(jctx *c, const char *name, jv v) {
    frame *f = c->top;
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->names[i], name) == 0) { f->vals[i] = v; return 0; }
    if (f->n == f->cap) {
        size_t nc = f->cap ? f->cap * 2 : 8;
        const char **nn = aalloc(&c->a, nc * sizeof *nn);
        jv *nv = aalloc(&c->a, nc * sizeof *nv);
        if (!nn || !nv) return jfail(c, "chat template: out of memory%s", "");
        if (f->n) { memcpy(nn, f->names, f->n * sizeof *nn); memcpy(nv, f->vals, f->n * sizeof *nv); }
        f->names = nn; f->vals = nv; f->cap = nc;
    }
    f->names[f->n] = name;
    f->vals[f->n++] = v;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Lexer: the template becomes segments; tag contents become tokens. */

enum { T_END, T_NAME, T_STR, T_INT, T_OP };

typedef struct jtok { int k; const char *s; size_t n; int64_t i; } jtok;

enum { S_TEXT, S_EXPR, S_STMT };
typedef struct seg { int k; const char *s; size_t n; jtok *toks; size_t ntok; int line; } seg;

typedef struct jtpl { seg *segs; size_t n; } jtpl;

static int lex_tag(jctx *c, seg *sg, const char *s, size_t n) {
    size_t cap = 16, nt = 0;
    jtok *t = aalloc(&c->a, cap * sizeof *t);
    if (!t) return jfail(c, "chat template: out of memory%s", "");
    size_t i = 0;
    for (;;) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
        if (nt + 1 >= cap) {
            jtok *nt2 = aalloc(&c->a, cap * 2 * sizeof *nt2);
            if (!nt2) return jfail(c, "chat template: out of memory%s", "");
            memcpy(nt2, t, nt * sizeof *t);
            t = nt2;
            cap *= 2;
        }
        jtok *k = &t[nt];
        memset(k, 0, sizeof *k);
        if (i >= n) { k->k = T_END; nt++; break; }
        char ch = s[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_') {
            size_t j = i;
            while (j < n && ((s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z') || s[j] == '_' || (s[j] >= '0' && s[j] <= '9'))) j++;
            k->k = T_NAME; k->s = s + i; k->n = j - i; i = j;
        } else if (ch >= '0' && ch <= '9') {
            int64_t v = 0;
            while (i < n && s[i] >= '0' && s[i] <= '9') {
                if (v > (INT64_MAX - 9) / 10) return jfail(c, "chat template: number too large%s", "");
                v = v * 10 + (s[i++] - '0');
            }
            k->k = T_INT; k->i = v;
        } else if (ch == '\'' || ch == '"') {
            /* string literal with Python escapes */
            size_t j = i + 1;
            char *buf = aalloc(&c->a, n - i + 1);
            if (!buf) return jfail(c, "chat template: out of memory%s", "");
            size_t bl = 0;
            while (j < n && s[j] != ch) {
                if (s[j] == '\\' && j + 1 < n) {
                    char x = s[j + 1];
                    buf[bl++] = x == 'n' ? '\n' : x == 't' ? '\t' : x == 'r' ? '\r' : x;
                    j += 2;
                } else {
                    buf[bl++] = s[j++];
                }
            }
            if (j >= n) return jfail(c, "chat template: unterminated string%s", "");
            k->k = T_STR; k->s = buf; k->n = bl; i = j + 1;
        } else {
            static const char *const ops2[] = {"==", "!=", "<=", ">=", "//", "**", NULL};
            k->k = T_OP; k->s = s + i; k->n = 1;
            for (int o = 0; ops2[o]; o++)
                if (i + 1 < n && s[i] == ops2[o][0] && s[i + 1] == ops2[o][1]) { k->n = 2; break; }
            if (!strchr("=!<>+-*/%~()[]{},:.|", ch)) return jfail(c, "chat template: unexpected character '%s'", astrdup(c, s + i, 1));
            i += k->n;
        }
        nt++;
    }
    sg->toks = t;
    sg->ntok = nt;
    return 0;
}

static int tpl_lex(jctx *c, const char *src, size_t n, jtpl *tp) {
    size_t cap = 64;
    tp->segs = aalloc(&c->a, cap * sizeof *tp->segs);
    tp->n = 0;
    if (!tp->segs) return jfail(c, "chat template: out of memory%s", "");
    size_t pos = 0;
    bool strip_next = false, trim_nl = false;
    while (pos <= n) {
        /* next tag */
        size_t open = pos;
        int kind = -1;
        while (open + 1 < n) {
            if (src[open] == '{' && (src[open + 1] == '{' || src[open + 1] == '%' || src[open + 1] == '#')) {
                kind = src[open + 1];
                break;
            }
            open++;
        }
        if (kind < 0) open = n;
        const char *ts = src + pos;
        size_t tn = open - pos;
        if (trim_nl && tn && ts[0] == '\n') { ts++; tn--; }
        else if (trim_nl && tn >= 2 && ts[0] == '\r' && ts[1] == '\n') { ts += 2; tn -= 2; }
        if (strip_next) while (tn && strchr(" \t\r\n", ts[0])) { ts++; tn--; }
        bool minus = kind >= 0 && open + 2 < n && src[open + 2] == '-';
        if (minus) {
            while (tn && strchr(" \t\r\n", ts[tn - 1])) tn--;
        } else if (kind == '%' || kind == '#') {
            /* lstrip_blocks: spaces and tabs between a line start and a block tag */
            size_t k = tn;
            while (k && (ts[k - 1] == ' ' || ts[k - 1] == '\t')) k--;
            size_t at = (size_t)(ts - src) + k;
            if (at == 0 || src[at - 1] == '\n') tn = k;
        }
        if (tp->n + 1 >= cap) {
            seg *ns = aalloc(&c->a, cap * 2 * sizeof *ns);
            if (!ns) return jfail(c, "chat template: out of memory%s", "");
            memcpy(ns, tp->segs, tp->n * sizeof *ns);
            tp->segs = ns;
            cap *= 2;
        }
        if (tn) { seg *sg = &tp->segs[tp->n++]; memset(sg, 0, sizeof *sg); sg->k = S_TEXT; sg->s = ts; sg->n = tn; }
        if (kind < 0) break;
        /* find the close, skipping quoted strings */
        char close = kind == '{' ? '}' : kind == '%' ? '%' : '#';
        size_t j = open + 2 + (minus ? 1 : 0);
        size_t cstart = j;
        char q = 0;
        while (j + 1 < n) {
            if (q) { if (src[j] == '\\') j++; else if (src[j] == q) q = 0; }
            else if (kind != '#' && (src[j] == '\'' || src[j] == '"')) q = src[j];
            else if (src[j] == close && src[j + 1] == '}') break;
            j++;
        }
        if (j + 1 >= n) return jfail(c, "chat template: unterminated tag%s", "");
        size_t cend = j;
        bool rminus = cend > cstart && src[cend - 1] == '-';
        if (rminus) cend--;
        strip_next = rminus;
        trim_nl = !rminus && (kind == '%' || kind == '#');
        pos = j + 2;
        if (kind == '#') continue;
        seg *sg = &tp->segs[tp->n++];
        memset(sg, 0, sizeof *sg);
        sg->k = kind == '{' ? S_EXPR : S_STMT;
        sg->s = src + cstart;
        sg->n = cend - cstart;
        if (lex_tag(c, sg, src + cstart, cend - cstart)) return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Expressions: parsed to a tree, then evaluated. */

enum { E_LIT, E_NAME, E_ATTR, E_INDEX, E_SLICE, E_CALL, E_FILTER, E_TEST, E_NOT, E_NEG, E_BIN, E_AND, E_OR,
       E_COND, E_LIST, E_DICT };

typedef struct expr expr;
struct expr {
    int k;
    jv lit;
    const char *name; /* E_NAME, E_ATTR, E_FILTER, E_TEST, E_BIN op */
    size_t nname;
    expr *a, *b, *cnd;
    expr **args;      /* E_CALL/E_FILTER/E_TEST args, E_LIST items, E_DICT k,v pairs */
    const char **kw;  /* keyword names (NULL for positional) */
    size_t nargs;
    bool neg;         /* E_TEST: is not */
};

typedef struct jparser { jctx *c; const jtok *t; size_t i, n; } jparser;

static const jtok *pk(jparser *p) { return &p->t[p->i]; }
static bool is_op(const jtok *t, const char *op) { return t->k == T_OP && t->n == strlen(op) && memcmp(t->s, op, t->n) == 0; }
static bool is_name(const jtok *t, const char *nm) { return t->k == T_NAME && t->n == strlen(nm) && memcmp(t->s, nm, t->n) == 0; }
static bool accept_op(jparser *p, const char *op) { if (is_op(pk(p), op)) { p->i++; return true; } return false; }
static bool accept_name(jparser *p, const char *nm) { if (is_name(pk(p), nm)) { p->i++; return true; } return false; }

static expr *enew(jparser *p, int k) {
    expr *x = aalloc(&p->c->a, sizeof *x);
    if (!x) jfail(p->c, "chat template: out of memory%s", "");
    else x->k = k;
    return x;
}

static expr *parse_expr(jparser *p);

static int parse_args(jparser *p, expr *x, const char *close) {
    size_t cap = 4;
    x->args = aalloc(&p->c->a, cap * sizeof *x->args);
    x->kw = aalloc(&p->c->a, cap * sizeof *x->kw);
    if (!x->args || !x->kw) return jfail(p->c, "chat template: out of memory%s", "");
    while (!accept_op(p, close)) {
        if (x->nargs && !accept_op(p, ",")) return jfail(p->c, "chat template: expected ',' or '%s'", close);
        if (accept_op(p, close)) break; /* trailing comma */
        if (x->nargs + 1 >= cap) {
            expr **na = aalloc(&p->c->a, cap * 2 * sizeof *na);
            const char **nk = aalloc(&p->c->a, cap * 2 * sizeof *nk);
            if (!na || !nk) return jfail(p->c, "chat template: out of memory%s", "");
            memcpy(na, x->args, x->nargs * sizeof *na);
            memcpy(nk, x->kw, x->nargs * sizeof *nk);
            x->args = na; x->kw = nk; cap *= 2;
        }
        const char *kw = NULL;
        if (pk(p)->k == T_NAME && p->i + 1 < p->n && is_op(&p->t[p->i + 1], "=")) {
            kw = astrdup(p->c, pk(p)->s, pk(p)->n);
            p->i += 2;
        }
        expr *a = parse_expr(p);
        if (!a) return -1;
        x->kw[x->nargs] = kw;
        x->args[x->nargs++] = a;
    }
    return 0;
}

static expr *parse_primary(jparser *p) {
    const jtok *t = pk(p);
    expr *x;
    if (t->k == T_STR) {
        p->i++;
        if (!(x = enew(p, E_LIT))) return NULL;
        x->lit = jv_str(t->s, t->n);
        /* adjacent string literals concatenate */
        while (pk(p)->k == T_STR) {
            const jtok *u = pk(p);
            char *s = aalloc(&p->c->a, x->lit.n + u->n + 1);
            if (!s) { jfail(p->c, "chat template: out of memory%s", ""); return NULL; }
            memcpy(s, x->lit.s, x->lit.n);
            memcpy(s + x->lit.n, u->s, u->n);
            x->lit = jv_str(s, x->lit.n + u->n);
            p->i++;
        }
        return x;
    }
    if (t->k == T_INT) { p->i++; if ((x = enew(p, E_LIT))) x->lit = jv_int(t->i); return x; }
    if (t->k == T_NAME) {
        p->i++;
        if (!(x = enew(p, E_LIT))) return NULL;
        if (is_name(t, "true") || is_name(t, "True")) x->lit = jv_bool(true);
        else if (is_name(t, "false") || is_name(t, "False")) x->lit = jv_bool(false);
        else if (is_name(t, "none") || is_name(t, "None")) x->lit = jv_none();
        else { x->k = E_NAME; x->name = t->s; x->nname = t->n; }
        return x;
    }
    if (accept_op(p, "(")) {
        x = parse_expr(p);
        if (x && !accept_op(p, ")")) { jfail(p->c, "chat template: expected ')'%s", ""); return NULL; }
        return x;
    }
    if (accept_op(p, "[")) {
        if (!(x = enew(p, E_LIST))) return NULL;
        if (parse_args(p, x, "]")) return NULL;
        return x;
    }
    if (accept_op(p, "{")) {
        if (!(x = enew(p, E_DICT))) return NULL;
        size_t cap = 8;
        x->args = aalloc(&p->c->a, cap * sizeof *x->args);
        if (!x->args) return NULL;
        while (!accept_op(p, "}")) {
            if (x->nargs && !accept_op(p, ",")) { jfail(p->c, "chat template: expected ',' in dict%s", ""); return NULL; }
            if (accept_op(p, "}")) break;
            expr *k = parse_expr(p);
            if (!k || !accept_op(p, ":")) { jfail(p->c, "chat template: expected ':' in dict%s", ""); return NULL; }
            expr *v = parse_expr(p);
            if (!v) return NULL;
            if (x->nargs + 2 > cap) {
                expr **na = aalloc(&p->c->a, cap * 2 * sizeof *na);
                if (!na) return NULL;
                memcpy(na, x->args, x->nargs * sizeof *na);
                x->args = na;
                cap *= 2;
            }
            x->args[x->nargs++] = k;
            x->args[x->nargs++] = v;
        }
        return x;
    }
    jfail(p->c, "chat template: unexpected token '%s'", t->k == T_END ? "end of tag" : astrdup(p->c, t->s, t->n));
    return NULL;
}

static expr *parse_postfix(jparser *p) {
    expr *x = parse_primary(p);
    while (x) {
        if (accept_op(p, ".")) {
            const jtok *t = pk(p);
            if (t->k != T_NAME) { jfail(p->c, "chat template: expected a name after '.'%s", ""); return NULL; }
            p->i++;
            expr *y = enew(p, E_ATTR);
            if (!y) return NULL;
            y->a = x; y->name = t->s; y->nname = t->n;
            x = y;
        } else if (accept_op(p, "[")) {
            expr *lo = NULL, *hi = NULL;
            bool slice = false;
            if (!is_op(pk(p), ":")) { if (!(lo = parse_expr(p))) return NULL; }
            if (accept_op(p, ":")) {
                slice = true;
                if (!is_op(pk(p), "]")) { if (!(hi = parse_expr(p))) return NULL; }
            }
            if (!accept_op(p, "]")) { jfail(p->c, "chat template: expected ']'%s", ""); return NULL; }
            expr *y = enew(p, slice ? E_SLICE : E_INDEX);
            if (!y) return NULL;
            y->a = x; y->b = lo; y->cnd = hi;
            x = y;
        } else if (accept_op(p, "(")) {
            expr *y = enew(p, E_CALL);
            if (!y) return NULL;
            y->a = x;
            if (parse_args(p, y, ")")) return NULL;
            x = y;
        } else {
            break;
        }
    }
    return x;
}

static expr *parse_filtered(jparser *p) {
    expr *x = parse_postfix(p);
    while (x) {
        if (accept_op(p, "|")) {
            const jtok *t = pk(p);
            if (t->k != T_NAME) { jfail(p->c, "chat template: expected a filter name%s", ""); return NULL; }
            p->i++;
            expr *y = enew(p, E_FILTER);
            if (!y) return NULL;
            y->a = x; y->name = t->s; y->nname = t->n;
            if (accept_op(p, "(") && parse_args(p, y, ")")) return NULL;
            x = y;
        } else if (accept_name(p, "is")) {
            expr *y = enew(p, E_TEST);
            if (!y) return NULL;
            y->neg = accept_name(p, "not");
            const jtok *t = pk(p);
            if (t->k != T_NAME) { jfail(p->c, "chat template: expected a test name%s", ""); return NULL; }
            p->i++;
            y->a = x; y->name = t->s; y->nname = t->n;
            if (accept_op(p, "(")) { if (parse_args(p, y, ")")) return NULL; }
            else if (pk(p)->k == T_STR || pk(p)->k == T_INT) { /* "is equalto 3" */
                y->args = aalloc(&p->c->a, sizeof *y->args);
                if (!y->args || !(y->args[0] = parse_primary(p))) return NULL;
                y->nargs = 1;
            }
            x = y;
        } else {
            break;
        }
    }
    return x;
}

static expr *parse_unary(jparser *p) {
    if (accept_op(p, "-")) {
        expr *x = enew(p, E_NEG);
        if (x && !(x->a = parse_unary(p))) return NULL;
        return x;
    }
    if (accept_op(p, "+")) return parse_unary(p);
    return parse_filtered(p);
}

static expr *mkbin(jparser *p, const char *op, expr *a, expr *b) {
    if (!a || !b) return NULL;
    expr *x = enew(p, E_BIN);
    if (!x) return NULL;
    x->name = op; x->a = a; x->b = b;
    return x;
}

static expr *parse_mul(jparser *p) {
    expr *x = parse_unary(p);
    for (;;) {
        if (!x) return NULL;
        if (accept_op(p, "*")) x = mkbin(p, "*", x, parse_unary(p));
        else if (accept_op(p, "//")) x = mkbin(p, "//", x, parse_unary(p));
        else if (accept_op(p, "/")) x = mkbin(p, "/", x, parse_unary(p));
        else if (accept_op(p, "%")) x = mkbin(p, "%", x, parse_unary(p));
        else return x;
    }
}

static expr *parse_add(jparser *p) {
    expr *x = parse_mul(p);
    for (;;) {
        if (!x) return NULL;
        if (accept_op(p, "+")) x = mkbin(p, "+", x, parse_mul(p));
        else if (accept_op(p, "-")) x = mkbin(p, "-", x, parse_mul(p));
        else return x;
    }
}

static expr *parse_concat(jparser *p) {
    expr *x = parse_add(p);
    while (x && accept_op(p, "~")) x = mkbin(p, "~", x, parse_add(p));
    return x;
}

static expr *parse_cmp(jparser *p) {
    expr *x = parse_concat(p);
    for (;;) {
        if (!x) return NULL;
        static const char *const ops[] = {"==", "!=", "<=", ">=", "<", ">", NULL};
        bool done = true;
        for (int o = 0; ops[o]; o++)
            if (accept_op(p, ops[o])) { x = mkbin(p, ops[o], x, parse_concat(p)); done = false; break; }
        if (!done) continue;
        if (accept_name(p, "in")) { x = mkbin(p, "in", x, parse_concat(p)); continue; }
        if (is_name(pk(p), "not") && p->i + 1 < p->n && is_name(&p->t[p->i + 1], "in")) {
            p->i += 2;
            x = mkbin(p, "notin", x, parse_concat(p));
            continue;
        }
        return x;
    }
}

static expr *parse_not(jparser *p) {
    if (accept_name(p, "not")) {
        expr *x = enew(p, E_NOT);
        if (x && !(x->a = parse_not(p))) return NULL;
        return x;
    }
    return parse_cmp(p);
}

static expr *parse_and(jparser *p) {
    expr *x = parse_not(p);
    while (x && accept_name(p, "and")) {
        expr *y = enew(p, E_AND);
        if (!y) return NULL;
        y->a = x;
        if (!(y->b = parse_not(p))) return NULL;
        x = y;
    }
    return x;
}

static expr *parse_or(jparser *p) {
    expr *x = parse_and(p);
    while (x && accept_name(p, "or")) {
        expr *y = enew(p, E_OR);
        if (!y) return NULL;
        y->a = x;
        if (!(y->b = parse_and(p))) return NULL;
        x = y;
    }
    return x;
}

static expr *parse_expr(jparser *p) {
    if (++p->c->depth > 200) { jfail(p->c, "chat template: expression nested too deeply%s", ""); return NULL; }
    expr *x = parse_or(p);
    if (x && accept_name(p, "if")) {
        expr *y = enew(p, E_COND);
        if (!y) return NULL;
        y->a = x;
        if (!(y->cnd = parse_or(p))) return NULL;
        if (accept_name(p, "else")) { if (!(y->b = parse_expr(p))) return NULL; }
        x = y;
    }
    p->c->depth--;
    return x;
}

/* ------------------------------------------------------------------------ */
/* Evaluation */

static bool truthy(jv v) {
    switch (v.k) {
    case JV_BOOL: return v.b;
    case JV_INT: return v.i != 0;
    case JV_STR: return v.n > 0;
    case JV_LIST: return v.l->n > 0;
    case JV_DICT: return v.d->n > 0;
    default: return false;
    }
}

static bool jv_eq(jv a, jv b) {
    if ((a.k == JV_INT || a.k == JV_BOOL) && (b.k == JV_INT || b.k == JV_BOOL))
        return (a.k == JV_INT ? a.i : a.b) == (b.k == JV_INT ? b.i : b.b);
    if (a.k != b.k) return false;
    switch (a.k) {
    case JV_UNDEF: case JV_NONE: return true;
    case JV_STR: return a.n == b.n && memcmp(a.s, b.s, a.n) == 0;
    case JV_LIST:
        if (a.l->n != b.l->n) return false;
        for (size_t i = 0; i < a.l->n; i++) if (!jv_eq(a.l->items[i], b.l->items[i])) return false;
        return true;
    case JV_DICT: return a.d == b.d;
    default: return false;
    }
}

/* Appends the printed form of v (as Jinja's str()) to the output buffer of a temporary. */
typedef struct sbuf { char *p; size_t n, cap; jctx *c; } sbuf;

static int sb_put(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 64;
        while (nc < b->n + n + 1) nc *= 2;
        char *np = aalloc(&b->c->a, nc);
        if (!np) return jfail(b->c, "chat template: out of memory%s", "");
        if (b->n) memcpy(np, b->p, b->n);
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

static int sb_json_str(sbuf *b, const char *s, size_t n) {
    if (sb_put(b, "\"", 1)) return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char esc[8];
        if (ch == '"') { if (sb_put(b, "\\\"", 2)) return -1; }
        else if (ch == '\\') { if (sb_put(b, "\\\\", 2)) return -1; }
        else if (ch == '\n') { if (sb_put(b, "\\n", 2)) return -1; }
        else if (ch == '\t') { if (sb_put(b, "\\t", 2)) return -1; }
        else if (ch == '\r') { if (sb_put(b, "\\r", 2)) return -1; }
        else if (ch < 0x20) { snprintf(esc, sizeof esc, "\\u%04x", ch); if (sb_put(b, esc, 6)) return -1; }
        else if (sb_put(b, (const char *)&ch, 1)) return -1;
    }
    return sb_put(b, "\"", 1);
}

static int sb_value(sbuf *b, jv v, bool json, bool quoted) {
    char num[32];
    switch (v.k) {
    case JV_UNDEF: return json ? sb_put(b, "null", 4) : 0;
    case JV_NONE: return json ? sb_put(b, "null", 4) : sb_put(b, "None", 4);
    case JV_BOOL: return json ? sb_put(b, v.b ? "true" : "false", v.b ? 4 : 5) : sb_put(b, v.b ? "True" : "False", v.b ? 4 : 5);
    case JV_INT: snprintf(num, sizeof num, "%lld", (long long)v.i); return sb_put(b, num, strlen(num));
    case JV_STR:
        if (json) return sb_json_str(b, v.s, v.n);
        if (quoted) { if (sb_put(b, "'", 1) || sb_put(b, v.s, v.n)) return -1; return sb_put(b, "'", 1); }
        return sb_put(b, v.s, v.n);
    case JV_LIST:
        if (sb_put(b, "[", 1)) return -1;
        for (size_t i = 0; i < v.l->n; i++) {
            if (i && sb_put(b, ", ", 2)) return -1;
            if (sb_value(b, v.l->items[i], json, true)) return -1;
        }
        return sb_put(b, "]", 1);
    case JV_DICT:
        if (sb_put(b, "{", 1)) return -1;
        for (size_t i = 0; i < v.d->n; i++) {
            if (i && sb_put(b, ", ", 2)) return -1;
            if (json ? sb_json_str(b, v.d->keys[i], v.d->klen[i]) : sb_value(b, jv_str(v.d->keys[i], v.d->klen[i]), false, true)) return -1;
            if (sb_put(b, ": ", 2) || sb_value(b, v.d->vals[i], json, true)) return -1;
        }
        return sb_put(b, "}", 1);
    default: return 0;
    }
}

static jv to_str(jctx *c, jv v, bool json) {
    if (v.k == JV_STR && !json) return v;
    sbuf b = {0};
    b.c = c;
    if (sb_value(&b, v, json, false) || sb_put(&b, "", 0)) return jv_undef();
    return jv_str(b.p ? b.p : "", b.n);
}

static jv eval(jctx *c, const expr *x);

static bool name_is(const char *s, size_t n, const char *lit) { return strlen(lit) == n && memcmp(s, lit, n) == 0; }

static jv str_strip(jv s, bool left, bool right, jv chars) {
    const char *set = chars.k == JV_STR ? chars.s : " \t\r\n\v\f";
    size_t setn = chars.k == JV_STR ? chars.n : 6;
    size_t a = 0, b = s.n;
    if (left) while (a < b && memchr(set, s.s[a], setn)) a++;
    if (right) while (b > a && memchr(set, s.s[b - 1], setn)) b--;
    return jv_str(s.s + a, b - a);
}

static jv str_case(jctx *c, jv s, int mode /* 0 lower 1 upper 2 title 3 capitalize */) {
    char *p = astrdup(c, s.s, s.n);
    if (!p) return jv_undef();
    bool start = true;
    for (size_t i = 0; i < s.n; i++) {
        char ch = p[i];
        bool up = mode == 1 || (mode == 2 && start) || (mode == 3 && i == 0);
        if (up && ch >= 'a' && ch <= 'z') p[i] = (char)(ch - 32);
        else if (!up && mode != 1 && ch >= 'A' && ch <= 'Z') p[i] = (char)(ch + 32);
        start = !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'));
    }
    return jv_str(p, s.n);
}

static jv str_replace(jctx *c, jv s, jv from, jv to) {
    if (s.k != JV_STR || from.k != JV_STR || to.k != JV_STR || from.n == 0) return s;
    sbuf b = {0};
    b.c = c;
    for (size_t i = 0; i < s.n;) {
        if (i + from.n <= s.n && memcmp(s.s + i, from.s, from.n) == 0) { if (sb_put(&b, to.s, to.n)) return jv_undef(); i += from.n; }
        else { if (sb_put(&b, s.s + i, 1)) return jv_undef(); i++; }
    }
    return jv_str(b.p ? b.p : "", b.n);
}

static jv str_split(jctx *c, jv s, jv sep) {
    jv r = {0};
    r.k = JV_LIST;
    r.l = aalloc(&c->a, sizeof *r.l);
    if (!r.l) return jv_undef();
    if (sep.k != JV_STR || sep.n == 0) { /* whitespace split */
        size_t i = 0;
        while (i < s.n) {
            while (i < s.n && strchr(" \t\r\n", s.s[i])) i++;
            size_t j = i;
            while (j < s.n && !strchr(" \t\r\n", s.s[j])) j++;
            if (j > i && list_push(c, r.l, jv_str(s.s + i, j - i))) return jv_undef();
            i = j;
        }
        return r;
    }
    size_t st = 0;
    for (size_t i = 0; i + sep.n <= s.n;) {
        if (memcmp(s.s + i, sep.s, sep.n) == 0) {
            if (list_push(c, r.l, jv_str(s.s + st, i - st))) return jv_undef();
            i += sep.n;
            st = i;
        } else {
            i++;
        }
    }
    if (list_push(c, r.l, jv_str(s.s + st, s.n - st))) return jv_undef();
    return r;
}

static int64_t jv_len(jv v) {
    return v.k == JV_STR ? (int64_t)v.n : v.k == JV_LIST ? (int64_t)v.l->n : v.k == JV_DICT ? (int64_t)v.d->n : 0;
}

static jv dict_items(jctx *c, jv d) {
    jv r = {0};
    r.k = JV_LIST;
    r.l = aalloc(&c->a, sizeof *r.l);
    if (!r.l) return jv_undef();
    for (size_t i = 0; d.k == JV_DICT && i < d.d->n; i++) {
        jv pair = {0};
        pair.k = JV_LIST;
        pair.l = aalloc(&c->a, sizeof *pair.l);
        if (!pair.l || list_push(c, pair.l, jv_str(d.d->keys[i], d.d->klen[i])) || list_push(c, pair.l, d.d->vals[i]) ||
            list_push(c, r.l, pair))
            return jv_undef();
    }
    return r;
}

/* Filters and methods share one table: name, receiver, positional args. */
static jv apply_fn(jctx *c, const char *nm, size_t nn, jv v, const jv *args, size_t na, bool method) {
    jv a0 = na > 0 ? args[0] : jv_undef(), a1 = na > 1 ? args[1] : jv_undef();
    if (v.k == JV_STR) {
        if (name_is(nm, nn, "strip") || name_is(nm, nn, "trim")) return str_strip(v, true, true, a0);
        if (name_is(nm, nn, "lstrip")) return str_strip(v, true, false, a0);
        if (name_is(nm, nn, "rstrip")) return str_strip(v, false, true, a0);
        if (name_is(nm, nn, "lower")) return str_case(c, v, 0);
        if (name_is(nm, nn, "upper")) return str_case(c, v, 1);
        if (name_is(nm, nn, "title")) return str_case(c, v, 2);
        if (name_is(nm, nn, "capitalize")) return str_case(c, v, 3);
        if (name_is(nm, nn, "replace")) return str_replace(c, v, a0, a1);
        if (name_is(nm, nn, "split")) return str_split(c, v, a0);
        if (name_is(nm, nn, "startswith")) return jv_bool(a0.k == JV_STR && a0.n <= v.n && memcmp(v.s, a0.s, a0.n) == 0);
        if (name_is(nm, nn, "endswith")) return jv_bool(a0.k == JV_STR && a0.n <= v.n && memcmp(v.s + v.n - a0.n, a0.s, a0.n) == 0);
    }
    if (v.k == JV_DICT) {
        if (name_is(nm, nn, "items")) return dict_items(c, v);
        if (name_is(nm, nn, "get")) {
            jv *s = a0.k == JV_STR ? dict_slot(c, v.d, a0.s, a0.n, false) : NULL;
            return s ? *s : na > 1 ? a1 : jv_none();
        }
        if (name_is(nm, nn, "keys") || name_is(nm, nn, "values")) {
            jv r = {0};
            r.k = JV_LIST;
            r.l = aalloc(&c->a, sizeof *r.l);
            if (!r.l) return jv_undef();
            bool keys = name_is(nm, nn, "keys");
            for (size_t i = 0; i < v.d->n; i++)
                if (list_push(c, r.l, keys ? jv_str(v.d->keys[i], v.d->klen[i]) : v.d->vals[i])) return jv_undef();
            return r;
        }
    }
    if (!method) {
        if (name_is(nm, nn, "length") || name_is(nm, nn, "count")) return jv_int(jv_len(v));
        if (name_is(nm, nn, "string")) return to_str(c, v, false);
        if (name_is(nm, nn, "tojson")) return to_str(c, v, true);
        if (name_is(nm, nn, "safe") || name_is(nm, nn, "e") || name_is(nm, nn, "escape") || name_is(nm, nn, "list")) return v;
        if (name_is(nm, nn, "items")) return dict_items(c, v);
        if (name_is(nm, nn, "default") || name_is(nm, nn, "d"))
            return (v.k == JV_UNDEF || (na > 1 && truthy(a1) && !truthy(v))) ? a0 : v;
        if (name_is(nm, nn, "first")) return v.k == JV_LIST && v.l->n ? v.l->items[0] : v.k == JV_STR && v.n ? jv_str(v.s, 1) : jv_undef();
        if (name_is(nm, nn, "last")) return v.k == JV_LIST && v.l->n ? v.l->items[v.l->n - 1] : v.k == JV_STR && v.n ? jv_str(v.s + v.n - 1, 1) : jv_undef();
        if (name_is(nm, nn, "int")) {
            if (v.k == JV_INT) return v;
            if (v.k == JV_BOOL) return jv_int(v.b);
            if (v.k == JV_STR) { char *s = astrdup(c, v.s, v.n); return jv_int(s ? strtoll(s, NULL, 10) : 0); }
            return jv_int(0);
        }
        if (name_is(nm, nn, "join")) {
            sbuf b = {0};
            b.c = c;
            for (size_t i = 0; v.k == JV_LIST && i < v.l->n; i++) {
                if (i && a0.k == JV_STR && sb_put(&b, a0.s, a0.n)) return jv_undef();
                jv s = to_str(c, v.l->items[i], false);
                if (sb_put(&b, s.s ? s.s : "", s.n)) return jv_undef();
            }
            return jv_str(b.p ? b.p : "", b.n);
        }
        if (v.k != JV_STR && (name_is(nm, nn, "trim") || name_is(nm, nn, "upper") || name_is(nm, nn, "lower")))
            return apply_fn(c, nm, nn, to_str(c, v, false), args, na, method);
    }
    jfail(c, method ? "chat template: unknown method '%s'" : "chat template: unknown filter '%s'", astrdup(c, nm, nn));
    return jv_undef();
}

static int eval_args(jctx *c, const expr *x, jv **out) {
    *out = aalloc(&c->a, (x->nargs + 1) * sizeof **out);
    if (!*out) return jfail(c, "chat template: out of memory%s", "");
    for (size_t i = 0; i < x->nargs; i++) {
        (*out)[i] = eval(c, x->args[i]);
        if (c->failed) return -1;
    }
    return 0;
}

static jv eval_test(jctx *c, const expr *x) {
    jv v = eval(c, x->a);
    if (c->failed) return jv_undef();
    jv arg = x->nargs ? eval(c, x->args[0]) : jv_undef();
    const char *nm = x->name;
    size_t nn = x->nname;
    bool r;
    if (name_is(nm, nn, "defined")) r = v.k != JV_UNDEF;
    else if (name_is(nm, nn, "undefined")) r = v.k == JV_UNDEF;
    else if (name_is(nm, nn, "none")) r = v.k == JV_NONE;
    else if (name_is(nm, nn, "string")) r = v.k == JV_STR;
    else if (name_is(nm, nn, "number") || name_is(nm, nn, "integer")) r = v.k == JV_INT;
    else if (name_is(nm, nn, "boolean")) r = v.k == JV_BOOL;
    else if (name_is(nm, nn, "true")) r = v.k == JV_BOOL && v.b;
    else if (name_is(nm, nn, "false")) r = v.k == JV_BOOL && !v.b;
    else if (name_is(nm, nn, "mapping")) r = v.k == JV_DICT;
    else if (name_is(nm, nn, "sequence") || name_is(nm, nn, "iterable")) r = v.k == JV_LIST || v.k == JV_STR || v.k == JV_DICT;
    else if (name_is(nm, nn, "even")) r = v.k == JV_INT && v.i % 2 == 0;
    else if (name_is(nm, nn, "odd")) r = v.k == JV_INT && v.i % 2 != 0;
    else if (name_is(nm, nn, "eq") || name_is(nm, nn, "equalto") || name_is(nm, nn, "sameas")) r = jv_eq(v, arg);
    else { jfail(c, "chat template: unknown test '%s'", astrdup(c, nm, nn)); return jv_undef(); }
    return jv_bool(r != x->neg);
}

static jv eval_call(jctx *c, const expr *x) {
    jv *args;
    if (eval_args(c, x, &args)) return jv_undef();
    const expr *f = x->a;
    if (f->k == E_ATTR) {
        jv obj = eval(c, f->a);
        if (c->failed) return jv_undef();
        return apply_fn(c, f->name, f->nname, obj, args, x->nargs, true);
    }
    if (f->k == E_NAME) {
        if (name_is(f->name, f->nname, "raise_exception")) {
            jv m = x->nargs ? to_str(c, args[0], false) : jv_str("error", 5);
            jfail(c, "chat template: raise_exception: %s", astrdup(c, m.s ? m.s : "", m.n));
            return jv_undef();
        }
        if (name_is(f->name, f->nname, "namespace") || name_is(f->name, f->nname, "dict")) {
            jv d = {0};
            d.k = JV_DICT;
            d.d = aalloc(&c->a, sizeof *d.d);
            if (!d.d) return jv_undef();
            for (size_t i = 0; i < x->nargs; i++) {
                if (!x->kw[i]) continue;
                jv *s = dict_slot(c, d.d, x->kw[i], strlen(x->kw[i]), true);
                if (!s) return jv_undef();
                *s = args[i];
            }
            return d;
        }
        if (name_is(f->name, f->nname, "range")) {
            int64_t lo = 0, hi = 0;
            if (x->nargs == 1 && args[0].k == JV_INT) hi = args[0].i;
            else if (x->nargs >= 2 && args[0].k == JV_INT && args[1].k == JV_INT) { lo = args[0].i; hi = args[1].i; }
            if (hi - lo > 1000000) { jfail(c, "chat template: range too large%s", ""); return jv_undef(); }
            jv r = {0};
            r.k = JV_LIST;
            r.l = aalloc(&c->a, sizeof *r.l);
            if (!r.l) return jv_undef();
            for (int64_t i = lo; i < hi; i++) if (list_push(c, r.l, jv_int(i))) return jv_undef();
            return r;
        }
        if (name_is(f->name, f->nname, "strftime_now")) {
            jv fmt = x->nargs ? args[0] : jv_str("%Y-%m-%d", 8);
            char *fs = astrdup(c, fmt.s ? fmt.s : "", fmt.n);
            char buf[256];
            time_t now = time(NULL);
            struct tm tmv;
            localtime_r(&now, &tmv);
            size_t l = fs ? strftime(buf, sizeof buf, fs, &tmv) : 0;
            return jv_str(astrdup(c, buf, l), l);
        }
    }
    jfail(c, "chat template: unsupported call%s", "");
    return jv_undef();
}

static jv eval(jctx *c, const expr *x) {
    if (c->failed) return jv_undef();
    switch (x->k) {
    case E_LIT: return x->lit;
    case E_NAME: {
        jv *v = scope_find(c, x->name, x->nname);
        return v ? *v : jv_undef();
    }
    case E_ATTR: {
        jv o = eval(c, x->a);
        if (o.k == JV_DICT) {
            jv *s = dict_slot(c, o.d, x->name, x->nname, false);
            return s ? *s : jv_undef();
        }
        return jv_undef();
    }
    case E_INDEX: {
        jv o = eval(c, x->a), k = eval(c, x->b);
        if (o.k == JV_DICT && k.k == JV_STR) {
            jv *s = dict_slot(c, o.d, k.s, k.n, false);
            return s ? *s : jv_undef();
        }
        if ((o.k == JV_LIST || o.k == JV_STR) && k.k == JV_INT) {
            int64_t n = jv_len(o), i = k.i < 0 ? k.i + n : k.i;
            if (i < 0 || i >= n) return jv_undef();
            return o.k == JV_LIST ? o.l->items[i] : jv_str(o.s + i, 1);
        }
        return jv_undef();
    }
    case E_SLICE: {
        jv o = eval(c, x->a);
        int64_t n = jv_len(o), lo = 0, hi = n;
        if (x->b) { jv v = eval(c, x->b); if (v.k == JV_INT) lo = v.i < 0 ? v.i + n : v.i; }
        if (x->cnd) { jv v = eval(c, x->cnd); if (v.k == JV_INT) hi = v.i < 0 ? v.i + n : v.i; }
        if (lo < 0) lo = 0;
        if (hi > n) hi = n;
        if (hi < lo) hi = lo;
        if (o.k == JV_STR) return jv_str(o.s + lo, (size_t)(hi - lo));
        if (o.k != JV_LIST) return jv_undef();
        jv r = {0};
        r.k = JV_LIST;
        r.l = aalloc(&c->a, sizeof *r.l);
        if (!r.l) return jv_undef();
        for (int64_t i = lo; i < hi; i++) if (list_push(c, r.l, o.l->items[i])) return jv_undef();
        return r;
    }
    case E_CALL: return eval_call(c, x);
    case E_FILTER: {
        jv v = eval(c, x->a);
        jv *args;
        if (c->failed || eval_args(c, x, &args)) return jv_undef();
        return apply_fn(c, x->name, x->nname, v, args, x->nargs, false);
    }
    case E_TEST: return eval_test(c, x);
    case E_NOT: return jv_bool(!truthy(eval(c, x->a)));
    case E_NEG: { jv v = eval(c, x->a); return v.k == JV_INT ? jv_int(-v.i) : jv_undef(); }
    case E_AND: { jv a = eval(c, x->a); return truthy(a) ? eval(c, x->b) : a; }
    case E_OR: { jv a = eval(c, x->a); return truthy(a) ? a : eval(c, x->b); }
    case E_COND: return truthy(eval(c, x->cnd)) ? eval(c, x->a) : x->b ? eval(c, x->b) : jv_str("", 0);
    case E_LIST:
    case E_DICT: {
        jv r = {0};
        if (x->k == E_LIST) { r.k = JV_LIST; r.l = aalloc(&c->a, sizeof *r.l); if (!r.l) return jv_undef(); }
        else { r.k = JV_DICT; r.d = aalloc(&c->a, sizeof *r.d); if (!r.d) return jv_undef(); }
        for (size_t i = 0; i < x->nargs; i++) {
            if (x->k == E_LIST) { if (list_push(c, r.l, eval(c, x->args[i]))) return jv_undef(); continue; }
            jv k = to_str(c, eval(c, x->args[i]), false);
            jv *s = dict_slot(c, r.d, k.s ? k.s : "", k.n, true);
            if (!s) return jv_undef();
            *s = eval(c, x->args[++i]);
        }
        return r;
    }
    case E_BIN: {
        jv a = eval(c, x->a), b = eval(c, x->b);
        if (c->failed) return jv_undef();
        const char *op = x->name;
        if (!strcmp(op, "==")) return jv_bool(jv_eq(a, b));
        if (!strcmp(op, "!=")) return jv_bool(!jv_eq(a, b));
        if (!strcmp(op, "in") || !strcmp(op, "notin")) {
            bool r = false;
            if (b.k == JV_STR && a.k == JV_STR) r = a.n == 0 || (a.n <= b.n && memmem(b.s, b.n, a.s, a.n) != NULL);
            else if (b.k == JV_LIST) for (size_t i = 0; i < b.l->n && !r; i++) r = jv_eq(a, b.l->items[i]);
            else if (b.k == JV_DICT && a.k == JV_STR) r = dict_slot(c, b.d, a.s, a.n, false) != NULL;
            return jv_bool(r == !strcmp(op, "in"));
        }
        if (!strcmp(op, "~")) {
            jv sa = to_str(c, a, false), sb = to_str(c, b, false);
            char *p = aalloc(&c->a, sa.n + sb.n + 1);
            if (!p) return jv_undef();
            if (sa.n) memcpy(p, sa.s, sa.n);
            if (sb.n) memcpy(p + sa.n, sb.s, sb.n);
            return jv_str(p, sa.n + sb.n);
        }
        if (a.k == JV_STR && b.k == JV_STR) {
            int cmp = memcmp(a.s, b.s, a.n < b.n ? a.n : b.n);
            if (!cmp) cmp = (a.n > b.n) - (a.n < b.n);
            if (!strcmp(op, "+")) {
                char *p = aalloc(&c->a, a.n + b.n + 1);
                if (!p) return jv_undef();
                memcpy(p, a.s, a.n);
                memcpy(p + a.n, b.s, b.n);
                return jv_str(p, a.n + b.n);
            }
            if (!strcmp(op, "<")) return jv_bool(cmp < 0);
            if (!strcmp(op, ">")) return jv_bool(cmp > 0);
            if (!strcmp(op, "<=")) return jv_bool(cmp <= 0);
            if (!strcmp(op, ">=")) return jv_bool(cmp >= 0);
        }
        if (a.k == JV_LIST && b.k == JV_LIST && !strcmp(op, "+")) {
            jv r = {0};
            r.k = JV_LIST;
            r.l = aalloc(&c->a, sizeof *r.l);
            if (!r.l) return jv_undef();
            for (size_t i = 0; i < a.l->n; i++) if (list_push(c, r.l, a.l->items[i])) return jv_undef();
            for (size_t i = 0; i < b.l->n; i++) if (list_push(c, r.l, b.l->items[i])) return jv_undef();
            return r;
        }
        if ((a.k == JV_INT || a.k == JV_BOOL) && (b.k == JV_INT || b.k == JV_BOOL)) {
            int64_t p = a.k == JV_INT ? a.i : a.b, q = b.k == JV_INT ? b.i : b.b;
            if (!strcmp(op, "<")) return jv_bool(p < q);
            if (!strcmp(op, ">")) return jv_bool(p > q);
            if (!strcmp(op, "<=")) return jv_bool(p <= q);
            if (!strcmp(op, ">=")) return jv_bool(p >= q);
            int64_t r;
            if (!strcmp(op, "+")) { if (__builtin_add_overflow(p, q, &r)) break; return jv_int(r); }
            if (!strcmp(op, "-")) { if (__builtin_sub_overflow(p, q, &r)) break; return jv_int(r); }
            if (!strcmp(op, "*")) { if (__builtin_mul_overflow(p, q, &r)) break; return jv_int(r); }
            if (q == 0 || (p == INT64_MIN && q == -1)) { jfail(c, "chat template: division by zero%s", ""); return jv_undef(); }
            if (!strcmp(op, "%")) { r = p % q; if (r && ((r < 0) != (q < 0))) r += q; return jv_int(r); }
            /* "/" is true division in Jinja; integer results only here */
            r = p / q;
            if ((p % q) && ((p < 0) != (q < 0))) r--;
            return jv_int(r);
        }
        jfail(c, "chat template: bad operand types for '%s'", op);
        return jv_undef();
    }
    default: break;
    }
    jfail(c, "chat template: cannot evaluate expression%s", "");
    return jv_undef();
}

/* ------------------------------------------------------------------------ */
/* Statements */

enum { N_TEXT, N_OUT, N_IF, N_FOR, N_SET };

typedef struct node node;
typedef struct nlist { node **p; size_t n, cap; } nlist;

struct node {
    int k;
    const char *s;  /* N_TEXT */
    size_t n;
    expr *x;        /* N_OUT, N_SET value, N_FOR iterable */
    /* N_IF: conds[i] guards bodies[i]; a NULL cond is else */
    expr **conds;
    nlist *bodies;
    size_t nb;
    /* N_FOR */
    const char *var, *var2;
    expr *filter;
    nlist body;
    /* N_SET */
    const char *target, *attr;
};

static int nl_push(jctx *c, nlist *l, node *nd) {
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 8;
        node **np = aalloc(&c->a, nc * sizeof *np);
        if (!np) return jfail(c, "chat template: out of memory%s", "");
        if (l->n) memcpy(np, l->p, l->n * sizeof *np);
        l->p = np;
        l->cap = nc;
    }
    l->p[l->n++] = nd;
    return 0;
}

typedef struct sparser { jctx *c; const jtpl *tp; size_t i; } sparser;

/* Parses until a statement whose first word is in stop ("|"-separated);
 * returns that word's index in *which (or -1 at end of template). */
static int parse_body(sparser *sp, nlist *out, const char *const *stop, int *which);

static const char *tagname(const seg *sg) {
    return sg->ntok && sg->toks[0].k == T_NAME ? sg->toks[0].s : NULL;
}

static bool tag_is(const seg *sg, const char *nm) { return sg->ntok && is_name(&sg->toks[0], nm); }

static expr *seg_expr(sparser *sp, const seg *sg, size_t from, size_t *end) {
    jparser p = {sp->c, sg->toks, from, sg->ntok};
    expr *x = parse_expr(&p);
    if (!x) return NULL;
    if (end) *end = p.i;
    else if (pk(&p)->k != T_END) { jfail(sp->c, "chat template: unexpected '%s' in tag", astrdup(sp->c, pk(&p)->s, pk(&p)->n)); return NULL; }
    return x;
}

static int parse_stmt(sparser *sp, nlist *out) {
    jctx *c = sp->c;
    const seg *sg = &sp->tp->segs[sp->i++];
    node *nd = aalloc(&c->a, sizeof *nd);
    if (!nd) return jfail(c, "chat template: out of memory%s", "");
    if (tag_is(sg, "if")) {
        nd->k = N_IF;
        size_t cap = 4;
        nd->conds = aalloc(&c->a, cap * sizeof *nd->conds);
        nd->bodies = aalloc(&c->a, cap * sizeof *nd->bodies);
        if (!nd->conds || !nd->bodies) return jfail(c, "chat template: out of memory%s", "");
        const seg *cur = sg;
        for (;;) {
            if (nd->nb == cap) {
                expr **nc2 = aalloc(&c->a, cap * 2 * sizeof *nc2);
                nlist *nbd = aalloc(&c->a, cap * 2 * sizeof *nbd);
                if (!nc2 || !nbd) return jfail(c, "chat template: out of memory%s", "");
                memcpy(nc2, nd->conds, cap * sizeof *nc2);
                memcpy(nbd, nd->bodies, cap * sizeof *nbd);
                nd->conds = nc2; nd->bodies = nbd; cap *= 2;
            }
            if (tag_is(cur, "else")) nd->conds[nd->nb] = NULL;
            else if (!(nd->conds[nd->nb] = seg_expr(sp, cur, 1, NULL))) return -1;
            static const char *const stop[] = {"elif", "else", "endif", NULL};
            int w;
            if (parse_body(sp, &nd->bodies[nd->nb], stop, &w)) return -1;
            nd->nb++;
            if (w < 0) return jfail(c, "chat template: missing endif%s", "");
            cur = &sp->tp->segs[sp->i++];
            if (w == 2) break;
        }
    } else if (tag_is(sg, "for")) {
        nd->k = N_FOR;
        size_t i = 1;
        if (i >= sg->ntok || sg->toks[i].k != T_NAME) return jfail(c, "chat template: bad for%s", "");
        nd->var = astrdup(c, sg->toks[i].s, sg->toks[i].n);
        i++;
        if (is_op(&sg->toks[i], ",")) {
            if (sg->toks[i + 1].k != T_NAME) return jfail(c, "chat template: bad for%s", "");
            nd->var2 = astrdup(c, sg->toks[i + 1].s, sg->toks[i + 1].n);
            i += 2;
        }
        if (!is_name(&sg->toks[i], "in")) return jfail(c, "chat template: expected 'in' in for%s", "");
        /* the iterable stops before a trailing "if" filter */
        jparser p = {c, sg->toks, i + 1, sg->ntok};
        if (!(nd->x = parse_or(&p))) return -1;
        if (accept_name(&p, "if") && !(nd->filter = parse_expr(&p))) return -1;
        if (pk(&p)->k != T_END) return jfail(c, "chat template: unexpected token in for%s", "");
        static const char *const stop[] = {"endfor", NULL};
        int w;
        if (parse_body(sp, &nd->body, stop, &w)) return -1;
        if (w < 0) return jfail(c, "chat template: missing endfor%s", "");
        sp->i++;
    } else if (tag_is(sg, "set")) {
        nd->k = N_SET;
        size_t i = 1;
        if (i >= sg->ntok || sg->toks[i].k != T_NAME) return jfail(c, "chat template: bad set%s", "");
        nd->target = astrdup(c, sg->toks[i].s, sg->toks[i].n);
        i++;
        if (is_op(&sg->toks[i], ".")) {
            if (sg->toks[i + 1].k != T_NAME) return jfail(c, "chat template: bad set%s", "");
            nd->attr = astrdup(c, sg->toks[i + 1].s, sg->toks[i + 1].n);
            i += 2;
        }
        if (!is_op(&sg->toks[i], "=")) return jfail(c, "chat template: block set is not supported%s", "");
        if (!(nd->x = seg_expr(sp, sg, i + 1, NULL))) return -1;
    } else if (tag_is(sg, "generation") || tag_is(sg, "endgeneration")) {
        return 0;
    } else {
        const char *nm = tagname(sg);
        return jfail(c, "chat template: unsupported tag '%s'", nm ? astrdup(c, nm, sg->toks[0].n) : "?");
    }
    return nl_push(c, out, nd);
}

static int parse_body(sparser *sp, nlist *out, const char *const *stop, int *which) {
    jctx *c = sp->c;
    if (++c->depth > 100) return jfail(c, "chat template: blocks nested too deeply%s", "");
    *which = -1;
    while (sp->i < sp->tp->n) {
        const seg *sg = &sp->tp->segs[sp->i];
        if (sg->k == S_STMT && stop) {
            for (int k = 0; stop[k]; k++)
                if (tag_is(sg, stop[k])) { *which = k; c->depth--; return 0; }
        }
        if (sg->k == S_TEXT || sg->k == S_EXPR) {
            node *nd = aalloc(&c->a, sizeof *nd);
            if (!nd) return jfail(c, "chat template: out of memory%s", "");
            if (sg->k == S_TEXT) { nd->k = N_TEXT; nd->s = sg->s; nd->n = sg->n; }
            else { nd->k = N_OUT; if (!(nd->x = seg_expr(sp, sg, 0, NULL))) return -1; }
            sp->i++;
            if (nl_push(c, out, nd)) return -1;
            continue;
        }
        if (tag_is(sg, "endif") || tag_is(sg, "endfor") || tag_is(sg, "elif") || tag_is(sg, "else"))
            return jfail(c, "chat template: unexpected '%s'", astrdup(c, sg->toks[0].s, sg->toks[0].n));
        if (parse_stmt(sp, out)) return -1;
    }
    c->depth--;
    return 0;
}

static int exec_list(jctx *c, const nlist *l);

static int exec_node(jctx *c, const node *nd) {
    if (++c->steps > CHAT_MAX_STEPS) return jfail(c, "chat template: too much work%s", "");
    switch (nd->k) {
    case N_TEXT: return emit(c, nd->s, nd->n);
    case N_OUT: {
        jv v = eval(c, nd->x);
        if (c->failed) return -1;
        jv s = to_str(c, v, false);
        if (c->failed) return -1;
        return emit(c, s.s ? s.s : "", s.n);
    }
    case N_IF:
        for (size_t i = 0; i < nd->nb; i++) {
            if (nd->conds[i]) {
                bool t = truthy(eval(c, nd->conds[i]));
                if (c->failed) return -1;
                if (!t) continue;
            }
            return exec_list(c, &nd->bodies[i]);
        }
        return 0;
    case N_SET: {
        jv v = eval(c, nd->x);
        if (c->failed) return -1;
        if (nd->attr) {
            jv *o = scope_find(c, nd->target, strlen(nd->target));
            if (!o || o->k != JV_DICT) return jfail(c, "chat template: '%s' is not a namespace", nd->target);
            jv *s = dict_slot(c, o->d, nd->attr, strlen(nd->attr), true);
            if (!s) return -1;
            *s = v;
            return 0;
        }
        return scope_set(c, nd->target, v);
    }
    case N_FOR: {
        jv it = eval(c, nd->x);
        if (c->failed) return -1;
        if (it.k == JV_DICT) {
            if (nd->var2) it = dict_items(c, it);
            else {
                jv r = {0};
                r.k = JV_LIST;
                r.l = aalloc(&c->a, sizeof *r.l);
                if (!r.l) return -1;
                for (size_t i = 0; i < it.d->n; i++) if (list_push(c, r.l, jv_str(it.d->keys[i], it.d->klen[i]))) return -1;
                it = r;
            }
        } else if (it.k == JV_STR) {
            jv r = {0};
            r.k = JV_LIST;
            r.l = aalloc(&c->a, sizeof *r.l);
            if (!r.l) return -1;
            for (size_t i = 0; i < it.n; i++) if (list_push(c, r.l, jv_str(it.s + i, 1))) return -1;
            it = r;
        }
        if (it.k != JV_LIST) return it.k == JV_UNDEF || it.k == JV_NONE ? 0 : jfail(c, "chat template: cannot iterate%s", "");
        /* the "if" filter selects items first, so loop.* counts only those */
        jlist sel = {0};
        for (size_t i = 0; i < it.l->n; i++) {
            if (nd->filter) {
                frame f = {0};
                f.up = c->top;
                c->top = &f;
                int rc = scope_set(c, nd->var, it.l->items[i]);
                bool keep = !rc && truthy(eval(c, nd->filter));
                c->top = f.up;
                if (c->failed) return -1;
                if (!keep) continue;
            }
            if (list_push(c, &sel, it.l->items[i])) return -1;
        }
        for (size_t i = 0; i < sel.n; i++) {
            frame f = {0};
            f.up = c->top;
            c->top = &f;
            jv loop = {0};
            loop.k = JV_DICT;
            loop.d = aalloc(&c->a, sizeof *loop.d);
            if (!loop.d) { c->top = f.up; return jfail(c, "chat template: out of memory%s", ""); }
            struct { const char *k; jv v; } li[] = {
                {"index", jv_int((int64_t)i + 1)}, {"index0", jv_int((int64_t)i)},
                {"first", jv_bool(i == 0)}, {"last", jv_bool(i + 1 == sel.n)},
                {"length", jv_int((int64_t)sel.n)}, {"revindex", jv_int((int64_t)(sel.n - i))},
                {"revindex0", jv_int((int64_t)(sel.n - i - 1))},
                {"previtem", i ? sel.items[i - 1] : jv_undef()}, {"nextitem", i + 1 < sel.n ? sel.items[i + 1] : jv_undef()},
            };
            int rc = 0;
            for (size_t k = 0; k < sizeof li / sizeof *li && !rc; k++) {
                jv *s = dict_slot(c, loop.d, li[k].k, strlen(li[k].k), true);
                if (!s) rc = -1; else *s = li[k].v;
            }
            jv item = sel.items[i];
            if (!rc && nd->var2) {
                if (item.k != JV_LIST || item.l->n < 2) rc = jfail(c, "chat template: cannot unpack%s", "");
                else rc = scope_set(c, nd->var, item.l->items[0]) || scope_set(c, nd->var2, item.l->items[1]);
            } else if (!rc) {
                rc = scope_set(c, nd->var, item);
            }
            if (!rc) rc = scope_set(c, "loop", loop);
            if (!rc) rc = exec_list(c, &nd->body);
            c->top = f.up;
            if (rc) return -1;
        }
        return 0;
    }
    default: return -1;
    }
}

static int exec_list(jctx *c, const nlist *l) {
    if (++c->depth > 200) return jfail(c, "chat template: nested too deeply%s", "");
    for (size_t i = 0; i < l->n; i++)
        if (exec_node(c, l->p[i])) return -1;
    c->depth--;
    return 0;
}

/* ------------------------------------------------------------------------ */

int chat_template_render(const char *tmpl, const chat_msg *msgs, size_t n_msgs, bool add_generation_prompt,
                         const char *bos_token, const char *eos_token, char **out, size_t *out_len, qerr *e) {
    *out = NULL;
    *out_len = 0;
    jctx c;
    memset(&c, 0, sizeof c);
    c.e = e;
    frame global = {0};
    c.top = &global;
    jtpl tp = {0};
    int rc = tpl_lex(&c, tmpl, strlen(tmpl), &tp);
    nlist root = {0};
    if (!rc) {
        sparser sp = {&c, &tp, 0};
        int w;
        rc = parse_body(&sp, &root, NULL, &w);
    }
    if (!rc) {
        jv ml = {0};
        ml.k = JV_LIST;
        ml.l = aalloc(&c.a, sizeof *ml.l);
        if (!ml.l) rc = jfail(&c, "chat template: out of memory%s", "");
        for (size_t i = 0; !rc && i < n_msgs; i++) {
            jv d = {0};
            d.k = JV_DICT;
            d.d = aalloc(&c.a, sizeof *d.d);
            jv *r = d.d ? dict_slot(&c, d.d, "role", 4, true) : NULL;
            if (r) *r = jv_str(msgs[i].role ? msgs[i].role : "", msgs[i].role ? strlen(msgs[i].role) : 0);
            jv *ct = d.d ? dict_slot(&c, d.d, "content", 7, true) : NULL;
            if (ct) *ct = jv_str(msgs[i].content ? msgs[i].content : "", msgs[i].content ? strlen(msgs[i].content) : 0);
            if (!r || !ct || list_push(&c, ml.l, d)) rc = -1;
        }
        if (!rc) rc = scope_set(&c, "messages", ml);
        if (!rc) rc = scope_set(&c, "add_generation_prompt", jv_bool(add_generation_prompt));
        if (!rc) rc = scope_set(&c, "bos_token", jv_str(bos_token ? bos_token : "", bos_token ? strlen(bos_token) : 0));
        if (!rc) rc = scope_set(&c, "eos_token", jv_str(eos_token ? eos_token : "", eos_token ? strlen(eos_token) : 0));
        if (!rc) rc = exec_list(&c, &root);
    }
    if (!rc && !c.failed && emit(&c, "", 0) == 0) {
        c.out[c.on] = 0;
        *out = c.out;
        *out_len = c.on;
        c.out = NULL;
    } else {
        rc = -1;
        if (!c.failed) qerr_set(e, "chat template: render failed");
    }
    free(c.out);
    arena_free(&c.a);
    return rc;
}

/* ChatML, the documented default for models that carry no template. */
const char *const chat_template_chatml =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
