/* filter.c — document metadata and the filter expression language (grammar
 * in rag.h). The parser is recursive descent over a tiny lexer; errors name
 * what was expected and the 1-based column. Evaluation is a tree walk. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rag.h"

/* ------------------------------------------------------------------------ */
/* Metadata */
void meta_free(meta *m) {
    if (!m) return;
    for (int i = 0; i < m->n; i++) {
        for (int j = 0; j < m->fields[i].n_vals; j++) free(m->fields[i].vals[j].str);
        free(m->fields[i].vals);
        free(m->fields[i].key);
    }
    free(m->fields);
    memset(m, 0, sizeof *m);
}

static int meta_val_from(meta_val *v, const jv *j) {
    memset(v, 0, sizeof *v);
    v->type = j->type;
    if (j->type == JV_NUM) v->num = j->num;
    else if (j->type == JV_BOOL) v->b = j->b;
    else if (j->type == JV_STR) {
        v->str = malloc(j->len + 1);
        if (!v->str) return -1;
        memcpy(v->str, j->str, j->len + 1);
    } else return 1; /* skipped */
    return 0;
}

int meta_from_json(meta *m, const jv *obj, qerr *e) {
    memset(m, 0, sizeof *m);
    if (!obj || obj->type == JV_NULL) return 0;
    if (obj->type != JV_OBJ) return qerr_set(e, "metadata must be a JSON object");
    m->fields = calloc(obj->len + 1, sizeof *m->fields);
    if (!m->fields) return qerr_set(e, "out of memory");
    for (size_t i = 0; i < obj->len; i++) {
        const jv *val = &obj->items[i];
        meta_field *f = &m->fields[m->n];
        size_t nv = val->type == JV_ARR ? val->len : 1;
        f->vals = calloc(nv + 1, sizeof *f->vals);
        f->key = strdup(obj->keys[i]);
        if (!f->vals || !f->key) { free(f->vals); free(f->key); meta_free(m); return qerr_set(e, "out of memory"); }
        for (size_t j = 0; j < nv; j++) {
            const jv *x = val->type == JV_ARR ? &val->items[j] : val;
            int r = meta_val_from(&f->vals[f->n_vals], x);
            if (r < 0) { meta_free(m); return qerr_set(e, "out of memory"); }
            if (r == 0) f->n_vals++;
        }
        if (f->n_vals == 0) { free(f->vals); free(f->key); memset(f, 0, sizeof *f); continue; }
        m->n++;
    }
    return 0;
}

static const meta_field *meta_find(const meta *m, const char *key) {
    if (!m) return NULL;
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->fields[i].key, key) == 0) return &m->fields[i];
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* AST */
enum { F_AND, F_OR, F_NOT, F_CMP, F_IN, F_EXISTS };
enum { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE };

struct filter {
    int kind;
    int op;
    struct filter *a, *b;
    char *field;
    meta_val *vals;
    int n_vals;
};

void filter_free(filter *f) {
    if (!f) return;
    filter_free(f->a);
    filter_free(f->b);
    free(f->field);
    for (int i = 0; i < f->n_vals; i++) free(f->vals[i].str);
    free(f->vals);
    free(f);
}

/* ------------------------------------------------------------------------ */
/* Lexer + parser */
enum { T_END, T_IDENT, T_STR, T_NUM, T_LP, T_RP, T_LB, T_RB, T_COMMA, T_OP, T_AND, T_OR, T_NOT, T_IN, T_EXISTS, T_TRUE,
       T_FALSE, T_ERR };

typedef struct fp {
    const char *s;
    size_t n, i;
    int tok;
    size_t tok_at;
    char *text; /* T_IDENT / T_STR */
    double num;
    int op;
    qerr *e;
    bool failed;
} fp;

static int fp_fail(fp *p, const char *fmt, const char *what) {
    if (!p->failed) {
        char m[200];
        snprintf(m, sizeof m, fmt, what);
        qerr_set(p->e, "filter: %s at column %zu", m, p->tok_at + 1);
    }
    p->failed = true;
    return -1;
}

static const char *tok_name(int t) {
    static const char *names[] = {"end of expression", "field name", "string", "number", "'('", "')'", "'['", "']'",
                                  "','", "operator", "'and'", "'or'", "'not'", "'in'", "'exists'", "'true'",
                                  "'false'", "bad token"};
    return names[t];
}

static bool kw(const char *s, size_t n, const char *k) {
    if (strlen(k) != n) return false;
    for (size_t i = 0; i < n; i++)
        if ((s[i] | 32) != k[i]) return false;
    return true;
}

static void fp_next(fp *p) {
    free(p->text);
    p->text = NULL;
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r')) p->i++;
    p->tok_at = p->i;
    if (p->i >= p->n) { p->tok = T_END; return; }
    char c = p->s[p->i];
    const char *s = p->s;
    if (c == '(') { p->i++; p->tok = T_LP; return; }
    if (c == ')') { p->i++; p->tok = T_RP; return; }
    if (c == '[') { p->i++; p->tok = T_LB; return; }
    if (c == ']') { p->i++; p->tok = T_RB; return; }
    if (c == ',') { p->i++; p->tok = T_COMMA; return; }
    if (c == '=' || c == '!' || c == '<' || c == '>') {
        bool eq2 = p->i + 1 < p->n && s[p->i + 1] == '=';
        p->tok = T_OP;
        if (c == '=') { p->op = OP_EQ; p->i += eq2 ? 2 : 1; }
        else if (c == '!') {
            if (!eq2) { p->tok = T_ERR; p->i++; return; }
            p->op = OP_NE; p->i += 2;
        } else if (c == '<') { p->op = eq2 ? OP_LE : OP_LT; p->i += eq2 ? 2 : 1; }
        else { p->op = eq2 ? OP_GE : OP_GT; p->i += eq2 ? 2 : 1; }
        return;
    }
    if (c == '"') {
        size_t j = p->i + 1;
        char *o = malloc(p->n - p->i + 1);
        if (!o) { p->tok = T_ERR; return; }
        size_t k = 0;
        while (j < p->n && s[j] != '"') {
            if (s[j] == '\\') {
                if (j + 1 >= p->n) break;
                char x = s[j + 1];
                if (x == '"' || x == '\\' || x == '/') o[k++] = x;
                else if (x == 'n') o[k++] = '\n';
                else if (x == 't') o[k++] = '\t';
                else { free(o); p->tok = T_ERR; p->i = j; return; }
                j += 2;
            } else o[k++] = s[j++];
        }
        if (j >= p->n) { free(o); p->tok = T_ERR; p->i = p->n; return; }
        o[k] = 0;
        p->text = o;
        p->i = j + 1;
        p->tok = T_STR;
        return;
    }
    if (c == '-' || c == '+' || c == '.' || (c >= '0' && c <= '9')) {
        char buf[64];
        size_t j = p->i, k = 0;
        while (j < p->n && k < sizeof buf - 1 &&
               ((s[j] >= '0' && s[j] <= '9') || s[j] == '.' || s[j] == 'e' || s[j] == 'E' || s[j] == '-' || s[j] == '+'))
            buf[k++] = s[j++];
        buf[k] = 0;
        char *end;
        p->num = strtod(buf, &end);
        if (end != buf + k || k == 0 || !isfinite(p->num)) { p->tok = T_ERR; return; }
        p->i = j;
        p->tok = T_NUM;
        return;
    }
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_') {
        size_t j = p->i;
        while (j < p->n && ((s[j] >= 'A' && s[j] <= 'Z') || (s[j] >= 'a' && s[j] <= 'z') || (s[j] >= '0' && s[j] <= '9') ||
                            s[j] == '_' || s[j] == '.' || s[j] == '-'))
            j++;
        size_t l = j - p->i;
        const char *w = s + p->i;
        p->i = j;
        if (kw(w, l, "and")) p->tok = T_AND;
        else if (kw(w, l, "or")) p->tok = T_OR;
        else if (kw(w, l, "not")) p->tok = T_NOT;
        else if (kw(w, l, "in")) p->tok = T_IN;
        else if (kw(w, l, "exists")) p->tok = T_EXISTS;
        else if (kw(w, l, "true")) p->tok = T_TRUE;
        else if (kw(w, l, "false")) p->tok = T_FALSE;
        else {
            p->text = strndup(w, l);
            p->tok = p->text ? T_IDENT : T_ERR;
        }
        return;
    }
    p->tok = T_ERR;
}

static filter *fnode(int kind) {
    filter *f = calloc(1, sizeof *f);
    if (f) f->kind = kind;
    return f;
}

static int fp_value(fp *p, meta_val *v) {
    memset(v, 0, sizeof *v);
    if (p->tok == T_STR) { v->type = JV_STR; v->str = p->text; p->text = NULL; }
    else if (p->tok == T_NUM) { v->type = JV_NUM; v->num = p->num; }
    else if (p->tok == T_TRUE || p->tok == T_FALSE) { v->type = JV_BOOL; v->b = p->tok == T_TRUE; }
    else return fp_fail(p, "expected a value (string, number, true, false), found %s", tok_name(p->tok));
    fp_next(p);
    return 0;
}

static filter *fp_or(fp *p, int depth);

static filter *fp_unary(fp *p, int depth) {
    if (depth > 64) { fp_fail(p, "%s", "expression nested too deeply"); return NULL; }
    if (p->tok == T_NOT) {
        fp_next(p);
        filter *a = fp_unary(p, depth + 1);
        if (!a) return NULL;
        filter *f = fnode(F_NOT);
        if (!f) { filter_free(a); fp_fail(p, "%s", "out of memory"); return NULL; }
        f->kind = F_NOT;
        f->a = a;
        return f;
    }
    if (p->tok == T_LP) {
        fp_next(p);
        filter *a = fp_or(p, depth + 1);
        if (!a) return NULL;
        if (p->tok != T_RP) { filter_free(a); fp_fail(p, "expected ')', found %s", tok_name(p->tok)); return NULL; }
        fp_next(p);
        return a;
    }
    if (p->tok != T_IDENT) { fp_fail(p, "expected a field name, 'not' or '(', found %s", tok_name(p->tok)); return NULL; }
    filter *f = fnode(F_CMP);
    if (!f) { fp_fail(p, "%s", "out of memory"); return NULL; }
    f->field = p->text;
    p->text = NULL;
    fp_next(p);
    if (p->tok == T_EXISTS) {
        f->kind = F_EXISTS;
        fp_next(p);
        return f;
    }
    if (p->tok == T_IN) {
        f->kind = F_IN;
        fp_next(p);
        if (p->tok != T_LB) { filter_free(f); fp_fail(p, "expected '[' after 'in', found %s", tok_name(p->tok)); return NULL; }
        fp_next(p);
        int cap = 0;
        for (;;) {
            if (f->n_vals == cap) {
                cap = cap ? cap * 2 : 4;
                meta_val *nv = realloc(f->vals, (size_t)cap * sizeof *nv);
                if (!nv) { filter_free(f); fp_fail(p, "%s", "out of memory"); return NULL; }
                f->vals = nv;
            }
            if (fp_value(p, &f->vals[f->n_vals])) { filter_free(f); return NULL; }
            f->n_vals++;
            if (p->tok == T_COMMA) { fp_next(p); continue; }
            if (p->tok == T_RB) { fp_next(p); return f; }
            filter_free(f);
            fp_fail(p, "expected ',' or ']', found %s", tok_name(p->tok));
            return NULL;
        }
    }
    if (p->tok != T_OP) { filter_free(f); fp_fail(p, "expected an operator (= != < <= > >= in exists) after the field, found %s", tok_name(p->tok)); return NULL; }
    f->kind = F_CMP;
    f->op = p->op;
    fp_next(p);
    f->vals = calloc(1, sizeof *f->vals);
    if (!f->vals) { filter_free(f); fp_fail(p, "%s", "out of memory"); return NULL; }
    if (fp_value(p, &f->vals[0])) { filter_free(f); return NULL; }
    f->n_vals = 1;
    if (f->vals[0].type == JV_BOOL && f->op != OP_EQ && f->op != OP_NE) {
        filter_free(f);
        fp_fail(p, "%s", "booleans compare only with = and !=");
        return NULL;
    }
    return f;
}

static filter *fp_bin(fp *p, int depth, int tok, int kind) {
    filter *a = tok == T_OR ? fp_bin(p, depth, T_AND, F_AND) : fp_unary(p, depth);
    if (!a) return NULL;
    while (p->tok == tok) {
        fp_next(p);
        filter *b = tok == T_OR ? fp_bin(p, depth, T_AND, F_AND) : fp_unary(p, depth);
        if (!b) { filter_free(a); return NULL; }
        filter *f = fnode(kind);
        if (!f) { filter_free(a); filter_free(b); fp_fail(p, "%s", "out of memory"); return NULL; }
        f->kind = kind;
        f->a = a;
        f->b = b;
        a = f;
    }
    return a;
}

static filter *fp_or(fp *p, int depth) { return fp_bin(p, depth, T_OR, F_OR); }

int filter_parse(filter **out, const char *expr, qerr *e) {
    *out = NULL;
    fp p = {.s = expr, .n = strlen(expr), .e = e};
    fp_next(&p);
    if (p.tok == T_END) return qerr_set(e, "filter: empty expression");
    filter *f = fp_or(&p, 0);
    if (f && p.tok != T_END) {
        fp_fail(&p, "unexpected %s (expected 'and', 'or' or the end)", tok_name(p.tok));
        filter_free(f);
        f = NULL;
    }
    free(p.text);
    if (!f) return -1;
    *out = f;
    return 0;
}

/* ------------------------------------------------------------------------ */
static bool val_eq(const meta_val *a, const meta_val *b) {
    if (a->type != b->type) return false;
    if (a->type == JV_NUM) return a->num == b->num;
    if (a->type == JV_BOOL) return a->b == b->b;
    return strcmp(a->str, b->str) == 0;
}

/* -2: not comparable */
static int val_cmp(const meta_val *a, const meta_val *b) {
    if (a->type != b->type || a->type == JV_BOOL) return -2;
    if (a->type == JV_NUM) return a->num < b->num ? -1 : a->num > b->num;
    int c = strcmp(a->str, b->str);
    return c < 0 ? -1 : c > 0;
}

bool filter_eval(const filter *f, const meta *m, const char *doc_id) {
    switch (f->kind) {
    case F_AND: return filter_eval(f->a, m, doc_id) && filter_eval(f->b, m, doc_id);
    case F_OR: return filter_eval(f->a, m, doc_id) || filter_eval(f->b, m, doc_id);
    case F_NOT: return !filter_eval(f->a, m, doc_id);
    default: break;
    }
    meta_val idv = {.type = JV_STR, .str = (char *)doc_id};
    meta_field idf = {.key = "_id", .vals = &idv, .n_vals = 1};
    const meta_field *fld = strcmp(f->field, "_id") == 0 && doc_id ? &idf : meta_find(m, f->field);
    if (f->kind == F_EXISTS) return fld != NULL;
    if (f->kind == F_CMP && f->op == OP_NE) {
        if (!fld) return true;
        for (int i = 0; i < fld->n_vals; i++)
            if (val_eq(&fld->vals[i], &f->vals[0])) return false;
        return true;
    }
    if (!fld) return false;
    for (int i = 0; i < fld->n_vals; i++) {
        const meta_val *v = &fld->vals[i];
        if (f->kind == F_IN) {
            for (int j = 0; j < f->n_vals; j++)
                if (val_eq(v, &f->vals[j])) return true;
            continue;
        }
        if (f->op == OP_EQ) { if (val_eq(v, &f->vals[0])) return true; continue; }
        int c = val_cmp(v, &f->vals[0]);
        if (c == -2) continue;
        if ((f->op == OP_LT && c < 0) || (f->op == OP_LE && c <= 0) || (f->op == OP_GT && c > 0) || (f->op == OP_GE && c >= 0))
            return true;
    }
    return false;
}

/* ------------------------------------------------------------------------ */
/* Set evaluation over posting lists (see rag.h). Each node yields a bitmap
 * B over the n documents and whether it is exact; otherwise B is a superset
 * of the documents the node allows (so AND and OR of supersets are
 * supersets, but NOT of one is not: it becomes "everything"). */
static void bits_fill(uint64_t *b, size_t n) {
    size_t w = (n + 63) / 64;
    for (size_t i = 0; i < w; i++) b[i] = ~0ull;
    if (n % 64) b[w - 1] = (1ull << (n % 64)) - 1;
}

static void bits_or_list(uint64_t *b, size_t n, const uint32_t *docs, size_t nd) {
    for (size_t i = 0; i < nd; i++)
        if (docs[i] < n) b[docs[i] >> 6] |= 1ull << (docs[i] & 63);
}

static int allow_rec(const filter *f, size_t n, filter_postings_fn get, void *ctx, uint64_t *b, bool *exact) {
    size_t w = (n + 63) / 64;
    const uint32_t *docs;
    size_t nd;
    switch (f->kind) {
    case F_AND:
    case F_OR:
    case F_NOT: {
        bool ea = true, eb = true;
        if (allow_rec(f->a, n, get, ctx, b, &ea)) return -1;
        if (f->kind == F_NOT) {
            if (!ea) { bits_fill(b, n); *exact = false; return 0; }
            for (size_t i = 0; i < w; i++) b[i] = ~b[i];
            if (n % 64) b[w - 1] &= (1ull << (n % 64)) - 1;
            *exact = true;
            return 0;
        }
        uint64_t *t = malloc((w ? w : 1) * sizeof *t);
        if (!t) return -1;
        if (allow_rec(f->b, n, get, ctx, t, &eb)) { free(t); return -1; }
        for (size_t i = 0; i < w; i++) b[i] = f->kind == F_AND ? b[i] & t[i] : b[i] | t[i];
        free(t);
        *exact = ea && eb;
        return 0;
    }
    default: break;
    }
    memset(b, 0, w * sizeof *b);
    *exact = true;
    if (strcmp(f->field, "_id") == 0 || (f->kind == F_CMP && f->op != OP_EQ && f->op != OP_NE)) {
        /* not in the posting lists: every document may pass */
        bits_fill(b, n);
        *exact = false;
        return 0;
    }
    if (f->kind == F_EXISTS) {
        get(ctx, f->field, NULL, &docs, &nd);
        bits_or_list(b, n, docs, nd);
        return 0;
    }
    for (int j = 0; j < f->n_vals; j++) {
        get(ctx, f->field, &f->vals[j], &docs, &nd);
        bits_or_list(b, n, docs, nd);
        if (f->kind == F_CMP) break;
    }
    if (f->kind == F_CMP && f->op == OP_NE) { /* "not =": also the documents without the field */
        for (size_t i = 0; i < w; i++) b[i] = ~b[i];
        if (n % 64) b[w - 1] &= (1ull << (n % 64)) - 1;
    }
    return 0;
}

int filter_allow_bits(const filter *f, size_t n, filter_postings_fn get, void *ctx, uint64_t *bits, bool *exact, qerr *e) {
    *exact = true;
    if (!f) { bits_fill(bits, n); return 0; }
    if (allow_rec(f, n, get, ctx, bits, exact)) return qerr_set(e, "out of memory evaluating a filter");
    return 0;
}
