/* grammar_text.c — the GBNF-like text format into the grammar builder:
 *   name ::= alternatives      (a rule runs until the next `name ::=`)
 *   "literal"  [class]  [^class]  name  ( ... )  a | b
 *   postfix * + ? {m} {m,} {m,n};  # comments to the end of the line.
 * Literal escapes \n \r \t \" \\ \/ \xHH (a byte) \uXXXX (UTF-8). In classes
 * \xHH is a byte, other characters and \uXXXX code points; a class with a
 * \x80-\xFF byte is a byte class, otherwise it matches UTF-8 code points. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sgr/gram_front.h"

#define MAX_NEST 1000

typedef struct nrule { char *name; int32_t id; size_t ref_pos; bool defined, referenced; } nrule;

typedef struct tparse {
    const char *s;
    size_t n, pos;
    sgr_gb *b;
    qerr *e;
    bool failed;
    int depth;
    nrule *rules; size_t n_rules, cap_rules;
    uint32_t *ht; size_t ht_cap;
} tparse;

static int tfail_at(tparse *p, size_t pos, const char *fmt, const char *arg) {
    if (p->failed) return -1;
    p->failed = true;
    size_t line = 1, col = 1;
    for (size_t i = 0; i < pos && i < p->n; i++) {
        if (p->s[i] == '\n') line++, col = 1;
        else col++;
    }
    char msg[300];
    snprintf(msg, sizeof msg, fmt, arg ? arg : "");
    return qerr_set(p->e, "grammar line %zu column %zu: %s", line, col, msg);
}

static int tfail(tparse *p, const char *msg) { return tfail_at(p, p->pos, "%s", msg); }

static void skip_ws(tparse *p) {
    while (p->pos < p->n) {
        char c = p->s[p->pos];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') p->pos++;
        else if (c == '#') {
            while (p->pos < p->n && p->s[p->pos] != '\n') p->pos++;
        } else break;
    }
}

static bool name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.' || c == '/';
}

static uint64_t name_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

/* The named rule (created on first sight). */
static nrule *rule_get(tparse *p, const char *s, size_t n) {
    if (p->n_rules * 2 + 2 > p->ht_cap) {
        size_t nc = p->ht_cap ? p->ht_cap * 2 : 64;
        uint32_t *h = calloc(nc, sizeof *h);
        if (!h) { tfail(p, "out of memory"); return NULL; }
        for (size_t i = 0; i < p->n_rules; i++) {
            size_t j = name_hash(p->rules[i].name, strlen(p->rules[i].name)) & (nc - 1);
            while (h[j]) j = (j + 1) & (nc - 1);
            h[j] = (uint32_t)i + 1;
        }
        free(p->ht);
        p->ht = h;
        p->ht_cap = nc;
    }
    size_t j = name_hash(s, n) & (p->ht_cap - 1);
    while (p->ht[j]) {
        nrule *r = &p->rules[p->ht[j] - 1];
        if (strlen(r->name) == n && memcmp(r->name, s, n) == 0) return r;
        j = (j + 1) & (p->ht_cap - 1);
    }
    if (p->n_rules == p->cap_rules) {
        size_t nc = p->cap_rules ? p->cap_rules * 2 : 32;
        nrule *q = realloc(p->rules, nc * sizeof *q);
        if (!q) { tfail(p, "out of memory"); return NULL; }
        p->rules = q;
        p->cap_rules = nc;
    }
    char *nm = strndup(s, n);
    if (!nm) { tfail(p, "out of memory"); return NULL; }
    int32_t id = sgr_gb_rule(p->b, nm);
    if (id < 0) { free(nm); tfail(p, sgr_gb_error(p->b) ? sgr_gb_error(p->b) : "bad rule"); return NULL; }
    p->rules[p->n_rules] = (nrule){nm, id, 0, false, false};
    p->ht[j] = (uint32_t)p->n_rules + 1;
    return &p->rules[p->n_rules++];
}

static bool at_rule_head(tparse *p) {
    size_t q = p->pos;
    if (q >= p->n || !name_char(p->s[q])) return false;
    while (q < p->n && name_char(p->s[q])) q++;
    size_t save = p->pos;
    p->pos = q;
    skip_ws(p);
    bool r = p->pos + 3 <= p->n && memcmp(p->s + p->pos, "::=", 3) == 0;
    p->pos = save;
    return r;
}

static int hexv(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* One character of a literal or class: *cp the value, *is_byte for \xHH. */
static int read_char(tparse *p, uint32_t *cp, bool *is_byte) {
    *is_byte = false;
    if (p->pos >= p->n) return tfail(p, "unexpected end of text");
    unsigned char c = (unsigned char)p->s[p->pos];
    if (c == '\\') {
        if (p->pos + 1 >= p->n) return tfail(p, "unfinished escape");
        char x = p->s[p->pos + 1];
        p->pos += 2;
        switch (x) {
        case 'n': *cp = '\n'; return 0;
        case 'r': *cp = '\r'; return 0;
        case 't': *cp = '\t'; return 0;
        case 'x': case 'u': {
            int nd = x == 'x' ? 2 : 4;
            uint32_t v = 0;
            for (int i = 0; i < nd; i++) {
                int h = p->pos < p->n ? hexv(p->s[p->pos]) : -1;
                if (h < 0) return tfail(p, x == 'x' ? "\\x needs two hex digits" : "\\u needs four hex digits");
                v = v * 16 + (uint32_t)h;
                p->pos++;
            }
            if (x == 'u' && v >= 0xD800 && v <= 0xDFFF) return tfail_at(p, p->pos - 6, "%s", "\\u escape is a surrogate");
            *cp = v;
            *is_byte = x == 'x';
            return 0;
        }
        case '"': case '\\': case '/': case '[': case ']': case '-': case '^': case '\'':
            *cp = (uint32_t)x;
            return 0;
        default: return tfail_at(p, p->pos - 2, "%s", "unknown escape");
        }
    }
    /* UTF-8 code point */
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (!len || p->pos + (size_t)len > p->n) return tfail(p, "invalid UTF-8");
    uint32_t v = len == 1 ? c : len == 2 ? (c & 0x1Fu) : len == 3 ? (c & 0x0Fu) : (c & 0x07u);
    for (int i = 1; i < len; i++) {
        unsigned char d = (unsigned char)p->s[p->pos + (size_t)i];
        if ((d & 0xC0) != 0x80) return tfail(p, "invalid UTF-8");
        v = v << 6 | (d & 0x3Fu);
    }
    static const uint32_t minv[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < minv[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return tfail(p, "invalid UTF-8");
    p->pos += (size_t)len;
    *cp = v;
    return 0;
}

static size_t utf8_enc(uint32_t c, char *o) {
    if (c < 0x80) { o[0] = (char)c; return 1; }
    if (c < 0x800) { o[0] = (char)(0xC0 | c >> 6); o[1] = (char)(0x80 | (c & 0x3F)); return 2; }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | c >> 12); o[1] = (char)(0x80 | ((c >> 6) & 0x3F)); o[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | c >> 18); o[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3F)); o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

static sgr_expr parse_literal(tparse *p) {
    p->pos++; /* " */
    char *buf = NULL;
    size_t n = 0, cap = 0;
    while (p->pos < p->n && p->s[p->pos] != '"') {
        uint32_t cp;
        bool isb;
        if (read_char(p, &cp, &isb) < 0) { free(buf); return SGR_EXPR_ERR; }
        if (n + 4 > cap) {
            cap = cap ? cap * 2 : 64;
            char *q = realloc(buf, cap);
            if (!q) { free(buf); tfail(p, "out of memory"); return SGR_EXPR_ERR; }
            buf = q;
        }
        if (isb) buf[n++] = (char)cp;
        else n += utf8_enc(cp, buf + n);
    }
    if (p->pos >= p->n) { free(buf); tfail(p, "unterminated string literal"); return SGR_EXPR_ERR; }
    p->pos++;
    sgr_expr x = sgr_gb_lit(p->b, buf, n);
    free(buf);
    return x;
}

static sgr_expr parse_class(tparse *p) {
    size_t start = p->pos;
    p->pos++; /* [ */
    bool neg = false, byte_mode = false;
    if (p->pos < p->n && p->s[p->pos] == '^') neg = true, p->pos++;
    cprange *r = NULL;
    size_t nr = 0, cap = 0;
    while (p->pos < p->n && p->s[p->pos] != ']') {
        uint32_t lo, hi;
        bool b1, b2 = false;
        if (read_char(p, &lo, &b1) < 0) { free(r); return SGR_EXPR_ERR; }
        hi = lo;
        if (p->pos + 1 < p->n && p->s[p->pos] == '-' && p->s[p->pos + 1] != ']') {
            p->pos++;
            if (read_char(p, &hi, &b2) < 0) { free(r); return SGR_EXPR_ERR; }
            if (hi < lo) { free(r); tfail(p, "class range out of order"); return SGR_EXPR_ERR; }
        }
        if ((b1 && lo >= 0x80) || (b2 && hi >= 0x80)) byte_mode = true;
        if (nr == cap) {
            cap = cap ? cap * 2 : 16;
            cprange *q = realloc(r, cap * sizeof *q);
            if (!q) { free(r); tfail(p, "out of memory"); return SGR_EXPR_ERR; }
            r = q;
        }
        r[nr++] = (cprange){lo, hi};
    }
    if (p->pos >= p->n) { free(r); tfail_at(p, start, "%s", "unterminated character class"); return SGR_EXPR_ERR; }
    p->pos++;
    if (byte_mode) {
        uint8_t set[32] = {0};
        for (size_t i = 0; i < nr; i++) {
            if (r[i].hi > 0xFF) { free(r); tfail_at(p, start, "%s", "a byte class (with \\x80-\\xFF) cannot hold code points above FF"); return SGR_EXPR_ERR; }
            for (uint32_t c = r[i].lo; c <= r[i].hi; c++) set[c >> 3] |= (uint8_t)(1u << (c & 7));
        }
        if (neg)
            for (int k = 0; k < 32; k++) set[k] = (uint8_t)~set[k];
        free(r);
        return sgr_gb_class(p->b, set);
    }
    sgr_expr x = gb_cp_set(p->b, r, nr, neg);
    free(r);
    return x;
}

static sgr_expr parse_alt(tparse *p);

static int read_uint(tparse *p, uint32_t *v) {
    if (p->pos >= p->n || p->s[p->pos] < '0' || p->s[p->pos] > '9') return tfail(p, "expected a number");
    uint64_t x = 0;
    while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
        x = x * 10 + (uint64_t)(p->s[p->pos] - '0');
        if (x >= SGR_INF) return tfail(p, "repetition count too large");
        p->pos++;
    }
    *v = (uint32_t)x;
    return 0;
}

static sgr_expr parse_atom(tparse *p) {
    char c = p->s[p->pos];
    if (c == '"') return parse_literal(p);
    if (c == '[') return parse_class(p);
    if (c == '(') {
        size_t open = p->pos;
        if (++p->depth > MAX_NEST) { tfail(p, "grammar nested too deeply"); return SGR_EXPR_ERR; }
        p->pos++;
        sgr_expr x = parse_alt(p);
        p->depth--;
        if (x == SGR_EXPR_ERR) return x;
        skip_ws(p);
        if (p->pos >= p->n || p->s[p->pos] != ')') { tfail_at(p, open, "%s", "unclosed ("); return SGR_EXPR_ERR; }
        p->pos++;
        return x;
    }
    if (name_char(c)) {
        size_t a = p->pos;
        while (p->pos < p->n && name_char(p->s[p->pos])) p->pos++;
        nrule *r = rule_get(p, p->s + a, p->pos - a);
        if (!r) return SGR_EXPR_ERR;
        if (!r->referenced) r->referenced = true, r->ref_pos = a;
        return sgr_gb_ref(p->b, r->id);
    }
    tfail(p, "expected a literal, class, rule name or (");
    return SGR_EXPR_ERR;
}

static sgr_expr parse_postfix(tparse *p) {
    sgr_expr x = parse_atom(p);
    for (;;) {
        if (x == SGR_EXPR_ERR || p->failed) return SGR_EXPR_ERR;
        if (p->pos >= p->n) return x;
        char c = p->s[p->pos];
        uint32_t mn, mx;
        size_t at = p->pos;
        if (c == '*') mn = 0, mx = SGR_INF, p->pos++;
        else if (c == '+') mn = 1, mx = SGR_INF, p->pos++;
        else if (c == '?') mn = 0, mx = 1, p->pos++;
        else if (c == '{') {
            p->pos++;
            skip_ws(p);
            if (read_uint(p, &mn) < 0) return SGR_EXPR_ERR;
            skip_ws(p);
            mx = mn;
            if (p->pos < p->n && p->s[p->pos] == ',') {
                p->pos++;
                skip_ws(p);
                if (p->pos < p->n && p->s[p->pos] == '}') mx = SGR_INF;
                else if (read_uint(p, &mx) < 0) return SGR_EXPR_ERR;
                skip_ws(p);
            }
            if (p->pos >= p->n || p->s[p->pos] != '}') { tfail(p, "expected } after repetition count"); return SGR_EXPR_ERR; }
            p->pos++;
            if (mx < mn) { tfail_at(p, at, "%s", "repetition {m,n} with n < m"); return SGR_EXPR_ERR; }
        } else return x;
        x = sgr_gb_repeat(p->b, x, mn, mx);
    }
}

/* Appends x to a growing list of sub-expressions; frees the list and
 * records the error when out of memory. */
static int push_kid(tparse *p, sgr_expr **k, size_t *n, size_t *cap, sgr_expr x) {
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        sgr_expr *q = realloc(*k, *cap * sizeof *q);
        if (!q) { free(*k); *k = NULL; tfail(p, "out of memory"); return -1; }
        *k = q;
    }
    (*k)[(*n)++] = x;
    return 0;
}

static sgr_expr parse_seq(tparse *p) {
    sgr_expr *k = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        skip_ws(p);
        if (p->pos >= p->n) break;
        char c = p->s[p->pos];
        if (c == '|' || c == ')' || at_rule_head(p)) break;
        sgr_expr x = parse_postfix(p);
        if (x == SGR_EXPR_ERR) { free(k); return SGR_EXPR_ERR; }
        if (push_kid(p, &k, &n, &cap, x)) return SGR_EXPR_ERR;
    }
    sgr_expr x = sgr_gb_seq(p->b, k, n);
    free(k);
    return x;
}

static sgr_expr parse_alt(tparse *p) {
    sgr_expr *k = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        sgr_expr x = parse_seq(p);
        if (x == SGR_EXPR_ERR) { free(k); return SGR_EXPR_ERR; }
        if (push_kid(p, &k, &n, &cap, x)) return SGR_EXPR_ERR;
        skip_ws(p);
        if (p->pos < p->n && p->s[p->pos] == '|') { p->pos++; continue; }
        break;
    }
    sgr_expr x = sgr_gb_alt(p->b, k, n);
    free(k);
    return x;
}

int sgr_gb_parse_text(sgr_gb *b, const char *text, size_t n, int32_t *root, qerr *e) {
    tparse p = {.s = text, .n = n, .b = b, .e = e};
    int rc = 0;
    for (;;) {
        skip_ws(&p);
        if (p.pos >= p.n) break;
        size_t a = p.pos;
        while (p.pos < p.n && name_char(p.s[p.pos])) p.pos++;
        if (p.pos == a) { rc = tfail(&p, "expected a rule name"); break; }
        size_t z = p.pos;
        skip_ws(&p);
        if (p.pos + 3 > p.n || memcmp(p.s + p.pos, "::=", 3) != 0) { rc = tfail(&p, "expected ::= after the rule name"); break; }
        p.pos += 3;
        nrule *r = rule_get(&p, text + a, z - a);
        if (!r) { rc = -1; break; }
        if (r->defined) { rc = tfail_at(&p, a, "rule %s defined twice", r->name); break; }
        r->defined = true;
        int32_t id = r->id;
        sgr_expr x = parse_alt(&p);
        if (x == SGR_EXPR_ERR) {
            if (!p.failed) tfail(&p, sgr_gb_error(b) ? sgr_gb_error(b) : "bad expression");
            rc = -1;
            break;
        }
        skip_ws(&p);
        if (p.pos < p.n && !at_rule_head(&p)) { rc = tfail(&p, p.s[p.pos] == ')' ? "unmatched )" : "unexpected character"); break; }
        if (sgr_gb_define(b, id, x) < 0) { rc = tfail(&p, sgr_gb_error(b)); break; }
    }
    if (!rc) {
        for (size_t i = 0; i < p.n_rules; i++)
            if (!p.rules[i].defined) { rc = tfail_at(&p, p.rules[i].ref_pos, "rule %s is used but never defined", p.rules[i].name); break; }
    }
    if (!rc) {
        nrule *r = NULL;
        for (size_t i = 0; i < p.n_rules; i++)
            if (strcmp(p.rules[i].name, "root") == 0) r = &p.rules[i];
        if (!r) rc = qerr_set(e, "grammar: no rule named root");
        else *root = r->id;
    }
    if (!rc && sgr_gb_error(b)) rc = qerr_set(e, "%s", sgr_gb_error(b));
    for (size_t i = 0; i < p.n_rules; i++) free(p.rules[i].name);
    free(p.rules);
    free(p.ht);
    return rc;
}

int sgr_grammar_parse(const char *text, size_t n, sgr_grammar **out, qerr *e) {
    *out = NULL;
    sgr_gb *b = sgr_gb_new(NULL);
    if (!b) return qerr_set(e, "out of memory");
    int32_t root;
    int rc = sgr_gb_parse_text(b, text, n, &root, e);
    if (!rc) rc = sgr_grammar_build(b, root, out, e);
    sgr_gb_free(b);
    return rc;
}

int sgr_grammar_from_choice(const char *const *s, const size_t *len, size_t n, sgr_grammar **out, qerr *e) {
    *out = NULL;
    if (n == 0) return qerr_set(e, "choice: no strings to choose from");
    sgr_gb *b = sgr_gb_new(NULL);
    if (!b) return qerr_set(e, "out of memory");
    sgr_expr *k = malloc(n * sizeof *k);
    if (!k) { sgr_gb_free(b); return qerr_set(e, "out of memory"); }
    for (size_t i = 0; i < n; i++) k[i] = sgr_gb_lit(b, s[i], len[i]);
    int32_t r = sgr_gb_rule(b, "root");
    sgr_gb_define(b, r, sgr_gb_alt(b, k, n));
    free(k);
    int rc = sgr_grammar_build(b, r, out, e);
    sgr_gb_free(b);
    return rc;
}
