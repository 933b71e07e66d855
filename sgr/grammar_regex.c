/* grammar_regex.c — an ECMA-262 regex subset as a whole-text grammar:
 * alternation, groups ((?:...), (?<name>...)), * + ? {m} {m,} {m,n} (lazy
 * forms match the same language), ., classes with ranges and \d \w \s (and
 * negations), escapes \t \n \r \f \v \0 \xHH \uHHHH \u{H...} and identity
 * escapes; ^ at the start and $ at the end (the whole text must match
 * anyway). Refused with an error: anchors elsewhere, \b \B, backreferences,
 * lookaround, \p{...}. Characters are code points, written as UTF-8. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sgr/gram_front.h"

#define RX_MAX_NEST 500

typedef struct rxp {
    const char *s;
    size_t n, pos;
    sgr_gb *b;
    qerr *e;
    bool failed;
    int depth;
} rxp;

static sgr_expr rfail(rxp *p, const char *msg) {
    if (!p->failed) {
        p->failed = true;
        qerr_set(p->e, "regex /%.*s/: %s at offset %zu", (int)(p->n > 120 ? 120 : p->n), p->s, msg, p->pos);
    }
    return SGR_EXPR_ERR;
}

typedef struct cpset { cprange *r; size_t n, cap; } cpset;

static bool set_add(cpset *c, uint32_t lo, uint32_t hi) {
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 16;
        cprange *q = realloc(c->r, nc * sizeof *q);
        if (!q) return false;
        c->r = q;
        c->cap = nc;
    }
    c->r[c->n++] = (cprange){lo, hi};
    return true;
}

/* \d \w \s and their negations into c */
static bool set_named(cpset *c, char which) {
    static const cprange digit[] = {{'0', '9'}};
    static const cprange word[] = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
    static const cprange space[] = {{9, 13}, {32, 32}, {0xA0, 0xA0}, {0x1680, 0x1680}, {0x2000, 0x200A},
                                    {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000},
                                    {0xFEFF, 0xFEFF}};
    const cprange *r;
    size_t n;
    switch (which | 0x20) {
    case 'd': r = digit; n = 1; break;
    case 'w': r = word; n = 4; break;
    default: r = space; n = sizeof space / sizeof *space; break;
    }
    if (which >= 'a') {
        for (size_t i = 0; i < n; i++)
            if (!set_add(c, r[i].lo, r[i].hi)) return false;
        return true;
    }
    uint32_t next = 0;
    for (size_t i = 0; i < n; i++) {
        if (r[i].lo > next && !set_add(c, next, r[i].lo - 1)) return false;
        next = r[i].hi + 1;
    }
    return set_add(c, next, 0x10FFFF);
}

static int hexd(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool read_hex(rxp *p, int nd, uint32_t *v) {
    uint32_t x = 0;
    for (int i = 0; i < nd; i++) {
        int h = p->pos < p->n ? hexd(p->s[p->pos]) : -1;
        if (h < 0) return false;
        x = x * 16 + (uint32_t)h;
        p->pos++;
    }
    *v = x;
    return true;
}

/* A UTF-8 code point at p->pos. */
static bool read_cp(rxp *p, uint32_t *cp) {
    unsigned char c = (unsigned char)p->s[p->pos];
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (!len || p->pos + (size_t)len > p->n) return false;
    uint32_t v = len == 1 ? c : len == 2 ? (c & 0x1Fu) : len == 3 ? (c & 0x0Fu) : (c & 0x07u);
    for (int i = 1; i < len; i++) {
        unsigned char d = (unsigned char)p->s[p->pos + (size_t)i];
        if ((d & 0xC0) != 0x80) return false;
        v = v << 6 | (d & 0x3Fu);
    }
    static const uint32_t minv[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < minv[len] || v > 0x10FFFF) return false;
    p->pos += (size_t)len;
    *cp = v;
    return true;
}

/* An escape after the backslash: a code point (*cp) or a named set added to
 * set (returns 1). 0 for a code point, -1 on error. */
static int read_escape(rxp *p, bool in_class, uint32_t *cp, cpset *set) {
    if (p->pos >= p->n) { rfail(p, "pattern ends with a backslash"); return -1; }
    char c = p->s[p->pos++];
    switch (c) {
    case 'd': case 'D': case 'w': case 'W': case 's': case 'S':
        if (!set_named(set, c)) { rfail(p, "out of memory"); return -1; }
        return 1;
    case 't': *cp = '\t'; return 0;
    case 'n': *cp = '\n'; return 0;
    case 'r': *cp = '\r'; return 0;
    case 'f': *cp = '\f'; return 0;
    case 'v': *cp = '\v'; return 0;
    case '0':
        if (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') { rfail(p, "octal escapes are not supported"); return -1; }
        *cp = 0;
        return 0;
    case 'x':
        if (!read_hex(p, 2, cp)) { rfail(p, "\\x needs two hex digits"); return -1; }
        return 0;
    case 'u':
        if (p->pos < p->n && p->s[p->pos] == '{') {
            p->pos++;
            uint32_t v = 0;
            int nd = 0;
            while (p->pos < p->n && hexd(p->s[p->pos]) >= 0 && nd < 8) v = v * 16 + (uint32_t)hexd(p->s[p->pos++]), nd++;
            if (!nd || p->pos >= p->n || p->s[p->pos] != '}' || v > 0x10FFFF) { rfail(p, "bad \\u{...} escape"); return -1; }
            p->pos++;
            *cp = v;
            return 0;
        }
        if (!read_hex(p, 4, cp)) { rfail(p, "\\u needs four hex digits"); return -1; }
        /* a surrogate pair written as two escapes */
        if (*cp >= 0xD800 && *cp <= 0xDBFF && p->pos + 6 <= p->n && p->s[p->pos] == '\\' && p->s[p->pos + 1] == 'u') {
            size_t save = p->pos;
            uint32_t lo;
            p->pos += 2;
            if (read_hex(p, 4, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
                *cp = 0x10000 + ((*cp - 0xD800) << 10) + (lo - 0xDC00);
                return 0;
            }
            p->pos = save;
        }
        return 0;
    case 'b':
        if (in_class) { *cp = 8; return 0; }
        rfail(p, "word boundaries (\\b) are not supported in grammars");
        return -1;
    case 'B': rfail(p, "word boundaries (\\B) are not supported in grammars"); return -1;
    case 'p': case 'P': rfail(p, "Unicode property escapes (\\p) are not supported in grammars"); return -1;
    case 'c':
        if (p->pos < p->n && ((p->s[p->pos] | 0x20) >= 'a' && (p->s[p->pos] | 0x20) <= 'z')) {
            *cp = (uint32_t)(p->s[p->pos++] & 0x1F);
            return 0;
        }
        rfail(p, "bad \\c escape");
        return -1;
    default:
        if (c >= '1' && c <= '9') { rfail(p, "backreferences are not supported in grammars"); return -1; }
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) { p->pos--; rfail(p, "unknown escape"); return -1; }
        p->pos--;
        if (!read_cp(p, cp)) { rfail(p, "invalid UTF-8"); return -1; }
        return 0;
    }
}

static sgr_expr cp_lit(rxp *p, uint32_t c) {
    char o[4];
    size_t n;
    if (c >= 0xD800 && c <= 0xDFFF) { /* never produced as UTF-8: matches nothing */
        sgr_expr none = SGR_EXPR_ERR;
        return sgr_gb_alt(p->b, &none, 0);
    }
    if (c < 0x80) o[0] = (char)c, n = 1;
    else if (c < 0x800) o[0] = (char)(0xC0 | c >> 6), o[1] = (char)(0x80 | (c & 0x3F)), n = 2;
    else if (c < 0x10000) o[0] = (char)(0xE0 | c >> 12), o[1] = (char)(0x80 | ((c >> 6) & 0x3F)), o[2] = (char)(0x80 | (c & 0x3F)), n = 3;
    else
        o[0] = (char)(0xF0 | c >> 18), o[1] = (char)(0x80 | ((c >> 12) & 0x3F)), o[2] = (char)(0x80 | ((c >> 6) & 0x3F)),
        o[3] = (char)(0x80 | (c & 0x3F)), n = 4;
    return sgr_gb_lit(p->b, o, n);
}

static sgr_expr parse_class(rxp *p) {
    p->pos++; /* [ */
    bool neg = false;
    if (p->pos < p->n && p->s[p->pos] == '^') neg = true, p->pos++;
    cpset set = {0};
    while (p->pos < p->n && p->s[p->pos] != ']') {
        uint32_t lo, hi;
        int k;
        if (p->s[p->pos] == '\\') {
            p->pos++;
            k = read_escape(p, true, &lo, &set);
            if (k < 0) { free(set.r); return SGR_EXPR_ERR; }
            if (k == 1) continue;
        } else if (!read_cp(p, &lo)) { free(set.r); return rfail(p, "invalid UTF-8"); }
        hi = lo;
        if (p->pos + 1 < p->n && p->s[p->pos] == '-' && p->s[p->pos + 1] != ']') {
            p->pos++;
            if (p->s[p->pos] == '\\') {
                p->pos++;
                cpset tmp = {0};
                k = read_escape(p, true, &hi, &tmp);
                free(tmp.r);
                if (k < 0) { free(set.r); return SGR_EXPR_ERR; }
                if (k == 1) { free(set.r); return rfail(p, "a class range cannot end with \\d, \\w or \\s"); }
            } else if (!read_cp(p, &hi)) { free(set.r); return rfail(p, "invalid UTF-8"); }
            if (hi < lo) { free(set.r); return rfail(p, "class range out of order"); }
        }
        if (!set_add(&set, lo, hi)) { free(set.r); return rfail(p, "out of memory"); }
    }
    if (p->pos >= p->n) { free(set.r); return rfail(p, "unterminated character class"); }
    p->pos++;
    sgr_expr x = gb_cp_set(p->b, set.r, set.n, neg);
    free(set.r);
    return x;
}

static sgr_expr parse_alt(rxp *p);

static sgr_expr parse_atom(rxp *p) {
    char c = p->s[p->pos];
    if (c == '(') {
        if (++p->depth > RX_MAX_NEST) return rfail(p, "groups nested too deeply");
        p->pos++;
        if (p->pos < p->n && p->s[p->pos] == '?') {
            if (p->pos + 1 < p->n && p->s[p->pos + 1] == ':') p->pos += 2;
            else if (p->pos + 2 < p->n && p->s[p->pos + 1] == '<' && p->s[p->pos + 2] != '=' && p->s[p->pos + 2] != '!') {
                while (p->pos < p->n && p->s[p->pos] != '>') p->pos++;
                if (p->pos >= p->n) return rfail(p, "unterminated group name");
                p->pos++;
            } else return rfail(p, "lookaround assertions are not supported in grammars");
        }
        sgr_expr x = parse_alt(p);
        p->depth--;
        if (x == SGR_EXPR_ERR) return x;
        if (p->pos >= p->n || p->s[p->pos] != ')') return rfail(p, "missing )");
        p->pos++;
        return x;
    }
    if (c == '[') return parse_class(p);
    if (c == '.') {
        p->pos++;
        cprange r[3] = {{'\n', '\n'}, {'\r', '\r'}, {0x2028, 0x2029}};
        return gb_cp_set(p->b, r, 3, true);
    }
    if (c == '^') return rfail(p, "^ is only supported at the start of the pattern");
    if (c == '$') return rfail(p, "$ is only supported at the end of the pattern");
    if (c == '*' || c == '+' || c == '?') return rfail(p, "nothing to repeat");
    if (c == ')') return rfail(p, "unmatched )");
    if (c == '\\') {
        p->pos++;
        uint32_t cp;
        cpset set = {0};
        int k = read_escape(p, false, &cp, &set);
        if (k < 0) { free(set.r); return SGR_EXPR_ERR; }
        if (k == 1) {
            sgr_expr x = gb_cp_set(p->b, set.r, set.n, false);
            free(set.r);
            return x;
        }
        return cp_lit(p, cp);
    }
    uint32_t cp;
    if (!read_cp(p, &cp)) return rfail(p, "invalid UTF-8");
    return cp_lit(p, cp);
}

/* {m}, {m,}, {m,n}; false (position unchanged) if not a quantifier */
static bool read_braces(rxp *p, uint32_t *mn, uint32_t *mx) {
    size_t q = p->pos + 1;
    uint64_t a = 0, b;
    size_t d = 0;
    while (q < p->n && p->s[q] >= '0' && p->s[q] <= '9') { a = a * 10 + (uint64_t)(p->s[q++] - '0'); if (a > 1000000) a = 1000001; d++; }
    if (!d) return false;
    b = a;
    if (q < p->n && p->s[q] == ',') {
        q++;
        size_t d2 = 0;
        b = 0;
        while (q < p->n && p->s[q] >= '0' && p->s[q] <= '9') { b = b * 10 + (uint64_t)(p->s[q++] - '0'); if (b > 1000000) b = 1000001; d2++; }
        if (!d2) b = SGR_INF;
    }
    if (q >= p->n || p->s[q] != '}') return false;
    p->pos = q + 1;
    *mn = (uint32_t)a;
    *mx = (uint32_t)b;
    return true;
}

static sgr_expr parse_seq(rxp *p) {
    sgr_expr *k = NULL;
    size_t n = 0, cap = 0;
    while (p->pos < p->n && p->s[p->pos] != '|' && p->s[p->pos] != ')') {
        if (p->s[p->pos] == '$' && p->pos + 1 == p->n && p->depth == 0) { p->pos++; break; }
        sgr_expr x;
        if (p->s[p->pos] == '{') {
            uint32_t a, b;
            size_t save = p->pos;
            if (read_braces(p, &a, &b)) { p->pos = save; free(k); return rfail(p, "nothing to repeat"); }
            p->pos++;
            x = sgr_gb_lit(p->b, "{", 1);
        } else x = parse_atom(p);
        for (;;) {
            if (x == SGR_EXPR_ERR || p->failed) { free(k); return SGR_EXPR_ERR; }
            if (p->pos >= p->n) break;
            char c = p->s[p->pos];
            uint32_t mn, mx;
            if (c == '*') mn = 0, mx = SGR_INF, p->pos++;
            else if (c == '+') mn = 1, mx = SGR_INF, p->pos++;
            else if (c == '?') mn = 0, mx = 1, p->pos++;
            else if (c == '{' && read_braces(p, &mn, &mx)) {
                if (mn > 1000000 || (mx != SGR_INF && mx > 1000000)) { free(k); return rfail(p, "repetition count too large"); }
                if (mx < mn) { free(k); return rfail(p, "numbers out of order in {} quantifier"); }
            } else break;
            if (p->pos < p->n && p->s[p->pos] == '?') p->pos++; /* lazy: same language */
            x = sgr_gb_repeat(p->b, x, mn, mx);
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            sgr_expr *q = realloc(k, cap * sizeof *q);
            if (!q) { free(k); return rfail(p, "out of memory"); }
            k = q;
        }
        k[n++] = x;
    }
    sgr_expr x = sgr_gb_seq(p->b, k, n);
    free(k);
    return x;
}

static sgr_expr parse_alt(rxp *p) {
    sgr_expr *k = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        sgr_expr x = parse_seq(p);
        if (x == SGR_EXPR_ERR) { free(k); return SGR_EXPR_ERR; }
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            sgr_expr *q = realloc(k, cap * sizeof *q);
            if (!q) { free(k); return rfail(p, "out of memory"); }
            k = q;
        }
        k[n++] = x;
        if (p->pos < p->n && p->s[p->pos] == '|') { p->pos++; continue; }
        break;
    }
    sgr_expr x = sgr_gb_alt(p->b, k, n);
    free(k);
    return x;
}

sgr_expr sgr_gb_regex(sgr_gb *b, const char *pat, size_t n, qerr *e) {
    rxp p = {.s = pat, .n = n, .b = b, .e = e};
    if (p.pos < n && pat[0] == '^') p.pos++;
    sgr_expr x = parse_alt(&p);
    if (x != SGR_EXPR_ERR && p.pos < n) x = rfail(&p, pat[p.pos] == ')' ? "unmatched )" : "unexpected character");
    if (x == SGR_EXPR_ERR && !p.failed) {
        const char *m = sgr_gb_error(b);
        qerr_set(e, "regex: %s", m ? m : "bad pattern");
    }
    if (x == SGR_EXPR_ERR) sgr_gb_fail(b, "%s", e ? e->msg : "bad regex");
    return x;
}

int sgr_grammar_from_regex(const char *pat, size_t n, sgr_grammar **out, qerr *e) {
    *out = NULL;
    sgr_gb *b = sgr_gb_new(NULL);
    if (!b) return qerr_set(e, "out of memory");
    int32_t r = sgr_gb_rule(b, "root");
    sgr_expr x = sgr_gb_regex(b, pat, n, e);
    int rc = -1;
    if (x != SGR_EXPR_ERR && sgr_gb_define(b, r, x) == 0) rc = sgr_grammar_build(b, r, out, e);
    sgr_gb_free(b);
    return rc;
}
