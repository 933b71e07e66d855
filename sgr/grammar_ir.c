/* grammar_ir.c — the grammar builder: an arena of expression nodes that front
 * ends fill and the automaton compiler reads (sgr/grammar_int.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sgr/grammar_int.h"

#define GB_GROW(arr, n, cap, need)                                              \
    do {                                                                        \
        if ((n) + (need) > (cap)) {                                             \
            size_t nc_ = (cap) ? (cap) * 2 : 64;                                \
            while (nc_ < (n) + (need)) nc_ *= 2;                                \
            void *p_ = realloc((arr), nc_ * sizeof(*(arr)));                    \
            if (!p_) return sgr_gb_fail(b, "out of memory building a grammar"); \
            (arr) = p_;                                                         \
            (cap) = nc_;                                                        \
        }                                                                       \
    } while (0)

sgr_gb *sgr_gb_new(const sgr_gb_limits *lim) {
    sgr_gb *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    if (lim) b->lim = *lim;
    if (!b->lim.max_nodes) b->lim.max_nodes = 1000000;
    if (!b->lim.max_rules) b->lim.max_rules = 100000;
    b->empty_node = -1;
    return b;
}

void sgr_gb_free(sgr_gb *b) {
    if (!b) return;
    for (size_t i = 0; i < b->n_rules; i++) free(b->rules[i].name);
    free(b->rules);
    free(b->nodes);
    free(b->bytes);
    free(b->kids);
    free(b->classes);
    free(b);
}

gb_mark sgr_gb_mark(const sgr_gb *b) {
    return (gb_mark){b->n_nodes, b->n_bytes, b->n_kids, b->n_classes, b->n_rules, b->empty_node};
}

/* Nodes are immutable and refer only to older nodes and rules, so cutting
 * every array back to the mark leaves the older part whole. The error is
 * cleared: it belonged to the attempt (a builder that had failed before the
 * mark would have nothing to roll back to). */
void sgr_gb_rollback(sgr_gb *b, const gb_mark *m) {
    for (size_t i = m->rules; i < b->n_rules; i++) free(b->rules[i].name);
    b->n_nodes = m->nodes;
    b->n_bytes = m->bytes;
    b->n_kids = m->kids;
    b->n_classes = m->classes;
    b->n_rules = m->rules;
    b->empty_node = m->empty_node;
    b->err[0] = 0;
}

const char *sgr_gb_error(const sgr_gb *b) { return b->err[0] ? b->err : NULL; }

sgr_expr sgr_gb_fail(sgr_gb *b, const char *fmt, ...) {
    if (!b->err[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(b->err, sizeof b->err, fmt, ap);
        va_end(ap);
        if (!b->err[0]) strcpy(b->err, "grammar error");
    }
    return SGR_EXPR_ERR;
}

static bool bad(const sgr_gb *b, sgr_expr x) { return x < 0 || (size_t)x >= b->n_nodes; }

static sgr_expr node_new(sgr_gb *b, gx_node nd) {
    if (b->err[0]) return SGR_EXPR_ERR;
    if (b->n_nodes >= b->lim.max_nodes)
        return sgr_gb_fail(b, "grammar too large: more than %zu expressions", b->lim.max_nodes);
    GB_GROW(b->nodes, b->n_nodes, b->cap_nodes, 1);
    b->nodes[b->n_nodes] = nd;
    return (sgr_expr)b->n_nodes++;
}

int32_t sgr_gb_rule(sgr_gb *b, const char *name) {
    if (b->err[0]) return SGR_EXPR_ERR;
    if (b->n_rules >= b->lim.max_rules)
        return sgr_gb_fail(b, "grammar too large: more than %zu rules", b->lim.max_rules);
    GB_GROW(b->rules, b->n_rules, b->cap_rules, 1);
    char *nm = strdup(name ? name : "rule");
    if (!nm) return sgr_gb_fail(b, "out of memory building a grammar");
    b->rules[b->n_rules] = (gx_rule){nm, SGR_EXPR_ERR};
    return (int32_t)b->n_rules++;
}

int sgr_gb_define(sgr_gb *b, int32_t rule, sgr_expr body) {
    if (b->err[0]) return -1;
    if (rule < 0 || (size_t)rule >= b->n_rules) return sgr_gb_fail(b, "define: no rule %d", rule), -1;
    if (bad(b, body)) return sgr_gb_fail(b, "define: bad expression for rule %s", b->rules[rule].name), -1;
    if (b->rules[rule].body != SGR_EXPR_ERR) return sgr_gb_fail(b, "rule %s defined twice", b->rules[rule].name), -1;
    b->rules[rule].body = body;
    return 0;
}

size_t sgr_gb_n_rules(const sgr_gb *b) { return b->n_rules; }

sgr_expr sgr_gb_empty(sgr_gb *b) {
    if (b->empty_node >= 0 && !b->err[0]) return b->empty_node;
    sgr_expr x = node_new(b, (gx_node){.kind = GX_EMPTY});
    if (x >= 0) b->empty_node = x;
    return x;
}

sgr_expr sgr_gb_lit(sgr_gb *b, const char *bytes, size_t n) {
    if (b->err[0]) return SGR_EXPR_ERR;
    if (n == 0) return sgr_gb_empty(b);
    if (n > UINT32_MAX) return sgr_gb_fail(b, "literal too long");
    GB_GROW(b->bytes, b->n_bytes, b->cap_bytes, n);
    memcpy(b->bytes + b->n_bytes, bytes, n);
    sgr_expr x = node_new(b, (gx_node){.kind = GX_LIT, .off = (uint32_t)b->n_bytes, .n = (uint32_t)n});
    if (x >= 0) b->n_bytes += n;
    return x;
}

sgr_expr sgr_gb_str(sgr_gb *b, const char *s) { return sgr_gb_lit(b, s, strlen(s)); }

sgr_expr sgr_gb_class(sgr_gb *b, const uint8_t set[32]) {
    if (b->err[0]) return SGR_EXPR_ERR;
    GB_GROW(b->classes, b->n_classes, b->cap_classes, 1);
    memcpy(b->classes[b->n_classes], set, 32);
    sgr_expr x = node_new(b, (gx_node){.kind = GX_CLASS, .off = (uint32_t)b->n_classes});
    if (x >= 0) b->n_classes++;
    return x;
}

sgr_expr sgr_gb_range(sgr_gb *b, uint8_t lo, uint8_t hi) {
    uint8_t set[32] = {0};
    for (unsigned c = lo; c <= hi; c++) set[c >> 3] |= (uint8_t)(1u << (c & 7));
    return sgr_gb_class(b, set);
}

static sgr_expr kids_node(sgr_gb *b, uint8_t kind, const sgr_expr *kids, size_t n) {
    if (b->err[0]) return SGR_EXPR_ERR;
    for (size_t i = 0; i < n; i++)
        if (bad(b, kids[i])) return sgr_gb_fail(b, "bad sub-expression");
    if (n > UINT32_MAX) return sgr_gb_fail(b, "too many alternatives");
    GB_GROW(b->kids, b->n_kids, b->cap_kids, n ? n : 1);
    if (n) memcpy(b->kids + b->n_kids, kids, n * sizeof *kids); /* kids may be NULL when n == 0 */
    sgr_expr x = node_new(b, (gx_node){.kind = kind, .off = (uint32_t)b->n_kids, .n = (uint32_t)n});
    if (x >= 0) b->n_kids += n;
    return x;
}

sgr_expr sgr_gb_seq(sgr_gb *b, const sgr_expr *kids, size_t n) {
    if (n == 0) return sgr_gb_empty(b);
    if (n == 1) return bad(b, kids[0]) ? sgr_gb_fail(b, "bad sub-expression") : kids[0];
    return kids_node(b, GX_SEQ, kids, n);
}

sgr_expr sgr_gb_alt(sgr_gb *b, const sgr_expr *kids, size_t n) {
    if (n == 1) return bad(b, kids[0]) ? sgr_gb_fail(b, "bad sub-expression") : kids[0];
    return kids_node(b, GX_ALT, kids, n);
}

sgr_expr sgr_gb_seq2(sgr_gb *b, sgr_expr a, sgr_expr c) {
    sgr_expr k[2] = {a, c};
    return sgr_gb_seq(b, k, 2);
}

sgr_expr sgr_gb_alt2(sgr_gb *b, sgr_expr a, sgr_expr c) {
    sgr_expr k[2] = {a, c};
    return sgr_gb_alt(b, k, 2);
}

sgr_expr sgr_gb_repeat(sgr_gb *b, sgr_expr kid, uint32_t min, uint32_t max) {
    if (b->err[0]) return SGR_EXPR_ERR;
    if (bad(b, kid)) return sgr_gb_fail(b, "bad sub-expression");
    if (max < min) return sgr_gb_fail(b, "repetition {%u,%u}: max below min", min, max);
    if (max == 0) return sgr_gb_empty(b);
    if (min == 1 && max == 1) return kid;
    return node_new(b, (gx_node){.kind = GX_REPEAT, .a = kid, .min = min, .max = max});
}

sgr_expr sgr_gb_ref(sgr_gb *b, int32_t rule) {
    if (b->err[0]) return SGR_EXPR_ERR;
    if (rule < 0 || (size_t)rule >= b->n_rules) return sgr_gb_fail(b, "reference to unknown rule %d", rule);
    return node_new(b, (gx_node){.kind = GX_REF, .a = rule});
}

/* UTF-8 code point ranges as byte sequences: split [lo, hi] by encoded
 * length, then recursively by the leading byte so each piece is a sequence
 * of byte ranges (the classic utf8-ranges construction). */
static sgr_expr cp_piece(sgr_gb *b, uint32_t lo, uint32_t hi, int len);

static void enc(uint32_t c, int len, uint8_t *o) {
    switch (len) {
    case 1: o[0] = (uint8_t)c; break;
    case 2: o[0] = (uint8_t)(0xC0 | c >> 6); o[1] = (uint8_t)(0x80 | (c & 0x3F)); break;
    case 3:
        o[0] = (uint8_t)(0xE0 | c >> 12); o[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (c & 0x3F));
        break;
    default:
        o[0] = (uint8_t)(0xF0 | c >> 18); o[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
        o[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F)); o[3] = (uint8_t)(0x80 | (c & 0x3F));
        break;
    }
}

/* [lo, hi] all of one encoded length: if lo and hi share every byte but the
 * ranges below position i are full, emit ranges directly; else split. */
static sgr_expr cp_piece(sgr_gb *b, uint32_t lo, uint32_t hi, int len) {
    if (len == 1) return sgr_gb_range(b, (uint8_t)lo, (uint8_t)hi);
    /* Split so that each part has a full tail (all continuation bytes 80-BF)
     * or shares its leading byte. */
    for (int i = 1; i < len; i++) {
        uint32_t m = (1u << (6 * i)) - 1; /* low 6*i bits */
        if ((lo & ~m) != (hi & ~m)) {
            if ((lo & m) != 0)
                return sgr_gb_alt2(b, cp_piece(b, lo, lo | m, len), cp_piece(b, (lo | m) + 1, hi, len));
            if ((hi & m) != m)
                return sgr_gb_alt2(b, cp_piece(b, lo, (hi & ~m) - 1, len), cp_piece(b, hi & ~m, hi, len));
        }
    }
    uint8_t a[4], z[4];
    enc(lo, len, a);
    enc(hi, len, z);
    sgr_expr k[4];
    for (int i = 0; i < len; i++) k[i] = sgr_gb_range(b, a[i], z[i]);
    return sgr_gb_seq(b, k, (size_t)len);
}

sgr_expr sgr_gb_cp_range(sgr_gb *b, uint32_t lo, uint32_t hi) {
    if (b->err[0]) return SGR_EXPR_ERR;
    if (hi > 0x10FFFF) hi = 0x10FFFF;
    if (lo > hi) return sgr_gb_fail(b, "code point range %X-%X is empty", lo, hi);
    static const uint32_t lim[4][2] = {{0, 0x7F}, {0x80, 0x7FF}, {0x800, 0xFFFF}, {0x10000, 0x10FFFF}};
    sgr_expr parts[8];
    size_t np = 0;
    for (int L = 1; L <= 4; L++) {
        uint32_t a = lo > lim[L - 1][0] ? lo : lim[L - 1][0];
        uint32_t z = hi < lim[L - 1][1] ? hi : lim[L - 1][1];
        if (a > z) continue;
        if (L == 3 && a <= 0xDFFF && z >= 0xD800) { /* skip surrogates */
            if (a < 0xD800) parts[np++] = cp_piece(b, a, 0xD7FF, 3);
            if (z > 0xDFFF) parts[np++] = cp_piece(b, 0xE000, z, 3);
            continue;
        }
        parts[np++] = cp_piece(b, a, z, L);
    }
    if (np == 0) return sgr_gb_fail(b, "code point range %X-%X has only surrogates", lo, hi);
    return sgr_gb_alt(b, parts, np);
}

/* ---- printing ---------------------------------------------------------- */

typedef struct pbuf { char *s; size_t n, cap; bool oom; } pbuf;

static void pput(pbuf *p, const char *s, size_t n) {
    if (p->oom) return;
    if (p->n + n + 1 > p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 256;
        while (nc < p->n + n + 1) nc *= 2;
        char *q = realloc(p->s, nc);
        if (!q) { p->oom = true; return; }
        p->s = q;
        p->cap = nc;
    }
    memcpy(p->s + p->n, s, n);
    p->n += n;
    p->s[p->n] = 0;
}

static void pputs(pbuf *p, const char *s) { pput(p, s, strlen(s)); }

static void pbyte(pbuf *p, unsigned c, bool in_class) {
    char t[8];
    if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\' && !(in_class && (c == ']' || c == '-' || c == '^')))
        t[0] = (char)c, t[1] = 0;
    else
        snprintf(t, sizeof t, "\\x%02X", c);
    pputs(p, t);
}

static void print_expr(const sgr_gb *b, sgr_expr x, pbuf *p, int depth) {
    const gx_node *nd = gx_at(b, x);
    if (depth > 200) { pputs(p, "..."); return; }
    switch (nd->kind) {
    case GX_EMPTY: pputs(p, "\"\""); break;
    case GX_LIT:
        pputs(p, "\"");
        for (uint32_t i = 0; i < nd->n; i++) pbyte(p, b->bytes[nd->off + i], false);
        pputs(p, "\"");
        break;
    case GX_CLASS: {
        const uint8_t *set = b->classes[nd->off];
        pputs(p, "[");
        for (unsigned c = 0; c < 256;) {
            if (!(set[c >> 3] >> (c & 7) & 1)) { c++; continue; }
            unsigned e = c;
            while (e + 1 < 256 && (set[(e + 1) >> 3] >> ((e + 1) & 7) & 1)) e++;
            pbyte(p, c, true);
            if (e > c) { pputs(p, "-"); pbyte(p, e, true); }
            c = e + 1;
        }
        pputs(p, "]");
        break;
    }
    case GX_SEQ:
    case GX_ALT:
        pputs(p, "(");
        for (uint32_t i = 0; i < nd->n; i++) {
            if (i) pputs(p, nd->kind == GX_SEQ ? " " : " | ");
            print_expr(b, b->kids[nd->off + i], p, depth + 1);
        }
        if (nd->kind == GX_ALT && nd->n == 0) pputs(p, "[]");
        pputs(p, ")");
        break;
    case GX_REPEAT: {
        print_expr(b, nd->a, p, depth + 1);
        char t[48];
        if (nd->max == SGR_INF) snprintf(t, sizeof t, "{%u,}", nd->min);
        else snprintf(t, sizeof t, "{%u,%u}", nd->min, nd->max);
        pputs(p, t);
        break;
    }
    case GX_REF: pputs(p, b->rules[nd->a].name); break;
    }
}

int sgr_gb_print(const sgr_gb *b, char **out, size_t *len, qerr *e) {
    pbuf p = {0};
    for (size_t r = 0; r < b->n_rules; r++) {
        pputs(&p, b->rules[r].name);
        pputs(&p, " ::= ");
        if (b->rules[r].body == SGR_EXPR_ERR) pputs(&p, "<undefined>");
        else print_expr(b, b->rules[r].body, &p, 0);
        pputs(&p, "\n");
    }
    if (p.oom || !p.s) { free(p.s); return qerr_set(e, "out of memory printing a grammar"); }
    *out = p.s;
    if (len) *len = p.n;
    return 0;
}
