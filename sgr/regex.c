/* regex.c — an ECMA-262 regex subset: recursive-descent parser to an AST,
 * code generation to a Thompson NFA program, and a Pike VM that runs it over
 * code points in O(len(input) * len(program)) time. Because only "does it
 * match somewhere" is asked, greedy and lazy quantifiers behave the same. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sgr.h"
#include "unicode.h"

#define RX_MAX_PROG 40000   /* instructions; bounds {m,n} blow-up */
#define RX_MAX_DEPTH 200    /* group nesting */

#include "regex_int.h"

typedef struct rparse {
    const char *s;
    size_t n, pos;
    rnode *nodes;
    size_t n_nodes, cap_nodes;
    rclass *classes;
    size_t n_classes, cap_classes;
    int depth;
    qerr *e;
    bool oom;
} rparse;

static int rx_fail(rparse *p, const char *msg) {
    return qerr_set(p->e, "regex /%.*s/: %s at offset %zu", (int)(p->n > 200 ? 200 : p->n), p->s, msg, p->pos);
}

static int new_node(rparse *p, int type) {
    if (p->n_nodes == p->cap_nodes) {
        size_t cap = p->cap_nodes ? p->cap_nodes * 2 : 32;
        rnode *nn = realloc(p->nodes, cap * sizeof *nn);
        if (!nn) { p->oom = true; return -1; }
        p->nodes = nn;
        p->cap_nodes = cap;
    }
    rnode *x = &p->nodes[p->n_nodes];
    memset(x, 0, sizeof *x);
    x->type = type;
    x->a = x->b = -1;
    return (int)p->n_nodes++;
}

static int class_add(rclass *c, uint32_t lo, uint32_t hi) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        range *nr = realloc(c->r, cap * sizeof *nr);
        if (!nr) return -1;
        c->r = nr;
        c->cap = cap;
    }
    c->r[c->n++] = (range){lo, hi};
    return 0;
}

static int range_cmp(const void *a, const void *b) {
    const range *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Sorts and merges; negates if asked. */
static int class_finish(rclass *c, bool negate) {
    if (c->n) qsort(c->r, c->n, sizeof *c->r, range_cmp);
    size_t o = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (o && c->r[i].lo <= c->r[o - 1].hi + 1) {
            if (c->r[i].hi > c->r[o - 1].hi) c->r[o - 1].hi = c->r[i].hi;
        } else c->r[o++] = c->r[i];
    }
    c->n = o;
    if (!negate) return 0;
    rclass neg = {0};
    uint32_t next = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (c->r[i].lo > next && class_add(&neg, next, c->r[i].lo - 1)) { free(neg.r); return -1; }
        next = c->r[i].hi + 1;
    }
    if (next <= 0x10FFFF && class_add(&neg, next, 0x10FFFF)) { free(neg.r); return -1; }
    free(c->r);
    *c = neg;
    return 0;
}

static bool class_has(const rclass *c, uint32_t cp) {
    size_t lo = 0, hi = c->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < c->r[mid].lo) hi = mid;
        else if (cp > c->r[mid].hi) lo = mid + 1;
        else return true;
    }
    return false;
}

/* The predefined sets, optionally negated, added to c. */
static int add_set(rclass *c, char which) {
    static const range digit[] = {{'0', '9'}};
    static const range word[] = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
    static const range space[] = {{9, 13}, {32, 32}, {0xA0, 0xA0}, {0x1680, 0x1680}, {0x2000, 0x200A},
                                  {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000},
                                  {0xFEFF, 0xFEFF}};
    const range *r;
    size_t n;
    switch (which | 0x20) {
    case 'd': r = digit; n = 1; break;
    case 'w': r = word; n = 4; break;
    default: r = space; n = sizeof space / sizeof *space; break;
    }
    if (which >= 'a') {
        for (size_t i = 0; i < n; i++) if (class_add(c, r[i].lo, r[i].hi)) return -1;
        return 0;
    }
    rclass tmp = {0};
    for (size_t i = 0; i < n; i++) if (class_add(&tmp, r[i].lo, r[i].hi)) { free(tmp.r); return -1; }
    if (class_finish(&tmp, true)) { free(tmp.r); return -1; }
    for (size_t i = 0; i < tmp.n; i++) if (class_add(c, tmp.r[i].lo, tmp.r[i].hi)) { free(tmp.r); return -1; }
    free(tmp.r);
    return 0;
}

/* General_Category long names (PropertyValueAliases.txt) -> short. */
static const char *const gc_alias[][2] = {
    {"Other", "C"}, {"Control", "Cc"}, {"cntrl", "Cc"}, {"Format", "Cf"}, {"Unassigned", "Cn"},
    {"Private_Use", "Co"}, {"Surrogate", "Cs"}, {"Letter", "L"}, {"Cased_Letter", "LC"},
    {"Lowercase_Letter", "Ll"}, {"Modifier_Letter", "Lm"}, {"Other_Letter", "Lo"},
    {"Titlecase_Letter", "Lt"}, {"Uppercase_Letter", "Lu"}, {"Mark", "M"}, {"Combining_Mark", "M"},
    {"Spacing_Mark", "Mc"}, {"Enclosing_Mark", "Me"}, {"Nonspacing_Mark", "Mn"}, {"Number", "N"},
    {"Decimal_Number", "Nd"}, {"digit", "Nd"}, {"Letter_Number", "Nl"}, {"Other_Number", "No"},
    {"Punctuation", "P"}, {"punct", "P"}, {"Connector_Punctuation", "Pc"}, {"Dash_Punctuation", "Pd"},
    {"Close_Punctuation", "Pe"}, {"Final_Punctuation", "Pf"}, {"Initial_Punctuation", "Pi"},
    {"Other_Punctuation", "Po"}, {"Open_Punctuation", "Ps"}, {"Symbol", "S"}, {"Currency_Symbol", "Sc"},
    {"Modifier_Symbol", "Sk"}, {"Math_Symbol", "Sm"}, {"Other_Symbol", "So"}, {"Separator", "Z"},
    {"Line_Separator", "Zl"}, {"Paragraph_Separator", "Zp"}, {"Space_Separator", "Zs"},
};

/* Adds the code points of \p{name} to c: a General_Category value (short or
 * long name, optionally "gc=" / "General_Category="), Any, ASCII or
 * Assigned. Returns -1 for anything else (scripts, binary properties). */
static int add_property(rclass *c, const char *name, size_t n) {
    char buf[64];
    if (n >= sizeof buf) return -1;
    memcpy(buf, name, n);
    buf[n] = 0;
    const char *v = buf;
    if (!strncmp(v, "General_Category=", 17)) v += 17;
    else if (!strncmp(v, "gc=", 3)) v += 3;
    if (strchr(v, '=')) return -1;
    if (!strcmp(v, "Any")) return class_add(c, 0, 0x10FFFF) ? -2 : 0;
    if (!strcmp(v, "ASCII")) return class_add(c, 0, 0x7F) ? -2 : 0;
    bool assigned = !strcmp(v, "Assigned");
    for (size_t i = 0; i < sizeof gc_alias / sizeof *gc_alias; i++)
        if (!strcmp(v, gc_alias[i][0])) { v = gc_alias[i][1]; break; }
    bool want[UNICODE_GC_COUNT] = {0}, cn = false, any = assigned;
    for (int g = 0; g < UNICODE_GC_COUNT; g++) {
        const char *gn = unicode_gc_names[g];
        bool m = assigned || (strlen(v) == 1 && gn[0] == v[0]) || !strcmp(v, gn) ||
                 (!strcmp(v, "LC") && (!strcmp(gn, "Lu") || !strcmp(gn, "Ll") || !strcmp(gn, "Lt")));
        want[g] = m;
        any |= m;
    }
    if (!strcmp(v, "C") || !strcmp(v, "Cn")) { cn = true; any = true; }
    if (!any) return -1;
    uint32_t next = 0;
    for (size_t i = 0; i < unicode_gc_table_len; i++) {
        const unicode_gc_range *r = &unicode_gc_table[i];
        if (cn && r->lo > next && class_add(c, next, r->lo - 1)) return -2;
        next = r->hi + 1;
        if (want[r->gc] && class_add(c, r->lo, r->hi)) return -2;
    }
    if (cn && next <= 0x10FFFF && class_add(c, next, 0x10FFFF)) return -2;
    return 0;
}

static int push_class(rparse *p, rclass c) {
    if (p->n_classes == p->cap_classes) {
        size_t cap = p->cap_classes ? p->cap_classes * 2 : 8;
        rclass *nc = realloc(p->classes, cap * sizeof *nc);
        if (!nc) { free(c.r); p->oom = true; return -1; }
        p->classes = nc;
        p->cap_classes = cap;
    }
    p->classes[p->n_classes] = c;
    return (int)p->n_classes++;
}

/* Reads the next code point of the pattern (UTF-8, lenient). */
static uint32_t next_cp(rparse *p) {
    const unsigned char *s = (const unsigned char *)p->s;
    unsigned c = s[p->pos];
    size_t len = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    if (p->pos + len > p->n) len = 1;
    uint32_t v = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t i = 1; i < len; i++) v = (v << 6) | (s[p->pos + i] & 0x3F);
    p->pos += len;
    return v;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int read_hex(rparse *p, int digits, uint32_t *out) {
    uint32_t v = 0;
    if (p->pos + (size_t)digits > p->n) return -1;
    for (int i = 0; i < digits; i++) {
        int h = hexval(p->s[p->pos + (size_t)i]);
        if (h < 0) return -1;
        v = v * 16 + (uint32_t)h;
    }
    p->pos += (size_t)digits;
    *out = v;
    return 0;
}

/* Parses a character escape after '\' (p->pos at the letter). Returns 0 with
 * *cp, 1 when it is a set escape (*set = the letter), -1 on error. in_class
 * makes \b a backspace. */
static int parse_escape(rparse *p, bool in_class, uint32_t *cp, rclass *set) {
    if (p->pos >= p->n) return rx_fail(p, "pattern ends with '\\'");
    char c = p->s[p->pos];
    switch (c) {
    case 'd': case 'D': case 'w': case 'W': case 's': case 'S':
        p->pos++;
        if (add_set(set, c)) return rx_fail(p, "out of memory");
        return 1;
    case 't': p->pos++; *cp = '\t'; return 0;
    case 'n': p->pos++; *cp = '\n'; return 0;
    case 'v': p->pos++; *cp = '\v'; return 0;
    case 'f': p->pos++; *cp = '\f'; return 0;
    case 'r': p->pos++; *cp = '\r'; return 0;
    case 'b':
        if (in_class) { p->pos++; *cp = '\b'; return 0; }
        break;
    case '0':
        if (p->pos + 1 < p->n && p->s[p->pos + 1] >= '0' && p->s[p->pos + 1] <= '9')
            return rx_fail(p, "octal escapes are not supported");
        p->pos++; *cp = 0; return 0;
    case 'c':
        if (p->pos + 1 < p->n && ((p->s[p->pos + 1] | 0x20) >= 'a' && (p->s[p->pos + 1] | 0x20) <= 'z')) {
            *cp = (uint32_t)(p->s[p->pos + 1] % 32);
            p->pos += 2;
            return 0;
        }
        return rx_fail(p, "bad \\c escape");
    case 'x':
        p->pos++;
        if (read_hex(p, 2, cp)) return rx_fail(p, "bad \\x escape");
        return 0;
    case 'u':
        p->pos++;
        if (p->pos < p->n && p->s[p->pos] == '{') {
            p->pos++;
            uint32_t v = 0;
            int nd = 0;
            while (p->pos < p->n && hexval(p->s[p->pos]) >= 0 && v <= 0x10FFFF) { v = v * 16 + (uint32_t)hexval(p->s[p->pos++]); nd++; }
            if (!nd || p->pos >= p->n || p->s[p->pos] != '}' || v > 0x10FFFF) return rx_fail(p, "bad \\u{...} escape");
            p->pos++;
            *cp = v;
            return 0;
        }
        if (read_hex(p, 4, cp)) return rx_fail(p, "bad \\u escape");
        if (*cp >= 0xD800 && *cp <= 0xDBFF && p->pos + 6 <= p->n && p->s[p->pos] == '\\' && p->s[p->pos + 1] == 'u') {
            size_t save = p->pos;
            uint32_t lo;
            p->pos += 2;
            if (read_hex(p, 4, &lo) == 0 && lo >= 0xDC00 && lo <= 0xDFFF) *cp = 0x10000 + ((*cp - 0xD800) << 10) + (lo - 0xDC00);
            else p->pos = save;
        }
        return 0;
    case 'p': case 'P': {
        size_t st = p->pos + 2, e = st;
        if (p->pos + 1 >= p->n || p->s[p->pos + 1] != '{') return rx_fail(p, "bad \\p escape (\\p{Name} expected)");
        while (e < p->n && p->s[e] != '}') e++;
        if (e >= p->n) return rx_fail(p, "unterminated \\p{...}");
        rclass tmp = {0};
        int r = add_property(&tmp, p->s + st, e - st);
        if (r == 0) r = class_finish(&tmp, c == 'P') ? -2 : 0;
        for (size_t i = 0; r == 0 && i < tmp.n; i++) if (class_add(set, tmp.r[i].lo, tmp.r[i].hi)) r = -2;
        free(tmp.r);
        if (r == -2) return rx_fail(p, "out of memory");
        if (r) return rx_fail(p, "unsupported Unicode property in \\p{...} (only General_Category values, Any, ASCII, Assigned)");
        p->pos = e + 1;
        return 1;
    }
    case 'k':
        return rx_fail(p, "named backreferences are not supported");
    default: break;
    }
    if (c >= '1' && c <= '9') return rx_fail(p, "backreferences are not supported");
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return rx_fail(p, "unsupported escape");
    *cp = next_cp(p); /* identity escape of a non-alphanumeric character */
    return 0;
}

static int parse_class(rparse *p) {
    /* p->pos just after '[' */
    rclass c = {0};
    bool neg = false;
    if (p->pos < p->n && p->s[p->pos] == '^') { neg = true; p->pos++; }
    for (;;) {
        if (p->pos >= p->n) { free(c.r); return rx_fail(p, "unterminated character class"); }
        if (p->s[p->pos] == ']') { p->pos++; break; }
        uint32_t lo, hi;
        int k;
        if (p->s[p->pos] == '\\') {
            p->pos++;
            k = parse_escape(p, true, &lo, &c);
            if (k < 0) { free(c.r); return -1; }
        } else { lo = next_cp(p); k = 0; }
        if (k == 1) continue; /* a set escape, already added */
        hi = lo;
        if (p->pos + 1 < p->n && p->s[p->pos] == '-' && p->s[p->pos + 1] != ']') {
            p->pos++;
            if (p->s[p->pos] == '\\') {
                p->pos++;
                k = parse_escape(p, true, &hi, &c);
                if (k < 0) { free(c.r); return -1; }
                if (k == 1) {
                    /* [a-\d]: Annex B reads '-' literally (the set is already added) */
                    if (class_add(&c, lo, lo) || class_add(&c, '-', '-')) { free(c.r); return rx_fail(p, "out of memory"); }
                    continue;
                }
            } else hi = next_cp(p);
            if (hi < lo) { free(c.r); return rx_fail(p, "range out of order in character class"); }
        }
        if (class_add(&c, lo, hi)) { free(c.r); return rx_fail(p, "out of memory"); }
    }
    if (class_finish(&c, neg)) { free(c.r); return rx_fail(p, "out of memory"); }
    int idx = push_class(p, c);
    if (idx < 0) return rx_fail(p, "out of memory");
    int nd = new_node(p, N_CLASS);
    if (nd < 0) return rx_fail(p, "out of memory");
    p->nodes[nd].c = (uint32_t)idx;
    return nd;
}

static int parse_alt(rparse *p);

/* Tries to read {m}, {m,}, {m,n} at p->pos ('{'). Returns 1 if read, 0 if it
 * is not a quantifier (then '{' is a literal, Annex B). */
static int parse_braces(rparse *p, int *mn, int *mx) {
    size_t i = p->pos + 1;
    long a = 0, b = -1;
    int nd = 0;
    while (i < p->n && p->s[i] >= '0' && p->s[i] <= '9') { if (a < 1000000) a = a * 10 + (p->s[i] - '0'); i++; nd++; }
    if (!nd) return 0;
    if (i < p->n && p->s[i] == ',') {
        i++;
        if (i < p->n && p->s[i] >= '0' && p->s[i] <= '9') {
            b = 0;
            while (i < p->n && p->s[i] >= '0' && p->s[i] <= '9') { if (b < 1000000) b = b * 10 + (p->s[i] - '0'); i++; }
        }
    } else b = a;
    if (i >= p->n || p->s[i] != '}') return 0;
    p->pos = i + 1;
    *mn = (int)a;
    *mx = (int)b;
    return 1;
}

static int parse_atom(rparse *p) {
    char c = p->s[p->pos];
    int nd;
    switch (c) {
    case '^': p->pos++; return new_node(p, N_BOL);
    case '$': p->pos++; return new_node(p, N_EOL);
    case '.': p->pos++; return new_node(p, N_ANY);
    case '[': p->pos++; return parse_class(p);
    case '(': {
        p->pos++;
        if (p->pos < p->n && p->s[p->pos] == '?') {
            if (p->pos + 1 < p->n && p->s[p->pos + 1] == ':') p->pos += 2;
            else if (p->pos + 2 < p->n && p->s[p->pos + 1] == '<' && p->s[p->pos + 2] != '=' && p->s[p->pos + 2] != '!') {
                size_t i = p->pos + 2;
                while (i < p->n && p->s[i] != '>') i++;
                if (i >= p->n || i == p->pos + 2) return rx_fail(p, "bad group name");
                p->pos = i + 1;
            } else return rx_fail(p, "lookahead/lookbehind assertions are not supported");
        }
        if (++p->depth > RX_MAX_DEPTH) return rx_fail(p, "groups nested too deeply");
        nd = parse_alt(p);
        if (nd < 0) return -1;
        p->depth--;
        if (p->pos >= p->n || p->s[p->pos] != ')') return rx_fail(p, "missing ')'");
        p->pos++;
        return nd;
    }
    case ')': return rx_fail(p, "unmatched ')'");
    case '*': case '+': case '?': return rx_fail(p, "nothing to repeat");
    case '\\': {
        p->pos++;
        if (p->pos < p->n && (p->s[p->pos] == 'b' || p->s[p->pos] == 'B')) {
            return new_node(p, p->s[p->pos++] == 'b' ? N_WORDB : N_NWORDB);
        }
        uint32_t cp;
        rclass cl = {0};
        int k = parse_escape(p, false, &cp, &cl);
        if (k < 0) { free(cl.r); return -1; }
        if (k == 1) {
            if (class_finish(&cl, false)) { free(cl.r); return rx_fail(p, "out of memory"); }
            int idx = push_class(p, cl);
            if (idx < 0) return rx_fail(p, "out of memory");
            nd = new_node(p, N_CLASS);
            if (nd >= 0) p->nodes[nd].c = (uint32_t)idx;
            return nd;
        }
        nd = new_node(p, N_CHAR);
        if (nd >= 0) p->nodes[nd].c = cp;
        return nd;
    }
    case '{': {
        int a, b;
        size_t save = p->pos;
        if (parse_braces(p, &a, &b)) { p->pos = save; return rx_fail(p, "nothing to repeat"); }
        break;
    }
    default: break;
    }
    uint32_t cp = next_cp(p);
    nd = new_node(p, N_CHAR);
    if (nd >= 0) p->nodes[nd].c = cp;
    return nd;
}

static int parse_term(rparse *p) {
    int atom = parse_atom(p);
    if (atom < 0) return p->oom ? rx_fail(p, "out of memory") : -1;
    for (;;) {
        if (p->pos >= p->n) break;
        char c = p->s[p->pos];
        int mn, mx;
        if (c == '*') { mn = 0; mx = -1; p->pos++; }
        else if (c == '+') { mn = 1; mx = -1; p->pos++; }
        else if (c == '?') { mn = 0; mx = 1; p->pos++; }
        else if (c == '{') { if (!parse_braces(p, &mn, &mx)) break; }
        else break;
        if (mx >= 0 && mx < mn) return rx_fail(p, "numbers out of order in {} quantifier");
        int t = p->nodes[atom].type;
        if (t == N_BOL || t == N_EOL || t == N_WORDB || t == N_NWORDB) return rx_fail(p, "nothing to repeat");
        if (p->pos < p->n && p->s[p->pos] == '?') p->pos++; /* lazy: same language */
        int r = new_node(p, N_REP);
        if (r < 0) return rx_fail(p, "out of memory");
        p->nodes[r].a = atom;
        p->nodes[r].min = mn;
        p->nodes[r].max = mx;
        atom = r;
        if (p->pos < p->n && (p->s[p->pos] == '*' || p->s[p->pos] == '+' || p->s[p->pos] == '?'))
            return rx_fail(p, "nothing to repeat");
    }
    return atom;
}

static int parse_seq(rparse *p) {
    int cur = -1;
    while (p->pos < p->n && p->s[p->pos] != '|' && p->s[p->pos] != ')') {
        int t = parse_term(p);
        if (t < 0) return -1;
        if (cur < 0) cur = t;
        else {
            int c = new_node(p, N_CAT);
            if (c < 0) return rx_fail(p, "out of memory");
            p->nodes[c].a = cur;
            p->nodes[c].b = t;
            cur = c;
        }
    }
    if (cur < 0) cur = new_node(p, N_EMPTY);
    if (cur < 0) return rx_fail(p, "out of memory");
    return cur;
}

static int parse_alt(rparse *p) {
    int l = parse_seq(p);
    if (l < 0) return -1;
    while (p->pos < p->n && p->s[p->pos] == '|') {
        p->pos++;
        int r = parse_seq(p);
        if (r < 0) return -1;
        int a = new_node(p, N_ALT);
        if (a < 0) return rx_fail(p, "out of memory");
        p->nodes[a].a = l;
        p->nodes[a].b = r;
        l = a;
    }
    return l;
}

/* ------------------------------------------------------------------------ */
/* Code generation */

typedef struct rgen {
    rinst *prog;
    size_t n;
    bool overflow;
    const rnode *nodes;
} rgen;

static size_t emit(rgen *g, uint8_t op, uint32_t x, uint32_t y) {
    if (g->n >= RX_MAX_PROG) { g->overflow = true; return 0; }
    g->prog[g->n] = (rinst){op, x, y};
    return g->n++;
}

/* Collects the operands of a left-deep chain of CAT or ALT nodes in order
 * (iteratively, so long sequences do not recurse). */
static int *spine(const rnode *nodes, int ni, int type, size_t *cnt) {
    size_t n = 1;
    for (int x = ni; nodes[x].type == type; x = nodes[x].a) n++;
    int *v = malloc(n * sizeof *v);
    if (!v) return NULL;
    size_t k = n;
    int x = ni;
    while (nodes[x].type == type) { v[--k] = nodes[x].b; x = nodes[x].a; }
    v[--k] = x;
    *cnt = n;
    return v;
}

static void gen(rgen *g, int ni, int depth) {
    if (g->overflow) return;
    const rnode *nd = &g->nodes[ni];
    switch (nd->type) {
    case N_EMPTY: break;
    case N_CHAR: emit(g, I_CHAR, nd->c, 0); break;
    case N_ANY: emit(g, I_ANY, 0, 0); break;
    case N_CLASS: emit(g, I_CLASS, nd->c, 0); break;
    case N_BOL: emit(g, I_BOL, 0, 0); break;
    case N_EOL: emit(g, I_EOL, 0, 0); break;
    case N_WORDB: emit(g, I_WORDB, 0, 0); break;
    case N_NWORDB: emit(g, I_NWORDB, 0, 0); break;
    case N_CAT: {
        size_t cnt;
        int *v = spine(g->nodes, ni, N_CAT, &cnt);
        if (!v) { g->overflow = true; return; }
        for (size_t i = 0; i < cnt && !g->overflow; i++) gen(g, v[i], depth + 1);
        free(v);
        break;
    }
    case N_ALT: {
        size_t cnt;
        int *v = spine(g->nodes, ni, N_ALT, &cnt);
        size_t *jumps = v ? malloc(cnt * sizeof *jumps) : NULL;
        if (!jumps) { free(v); g->overflow = true; return; }
        size_t nj = 0;
        for (size_t i = 0; i < cnt && !g->overflow; i++) {
            if (i + 1 < cnt) {
                size_t sp = emit(g, I_SPLIT, 0, 0);
                if (g->overflow) break;
                g->prog[sp].x = (uint32_t)g->n;
                gen(g, v[i], depth + 1);
                jumps[nj++] = emit(g, I_JMP, 0, 0);
                if (!g->overflow) g->prog[sp].y = (uint32_t)g->n;
            } else gen(g, v[i], depth + 1);
        }
        if (!g->overflow)
            for (size_t i = 0; i < nj; i++) g->prog[jumps[i]].x = (uint32_t)g->n;
        free(jumps);
        free(v);
        break;
    }
    case N_REP: {
        for (int i = 0; i < nd->min && !g->overflow; i++) gen(g, nd->a, depth + 1);
        if (nd->max < 0) {
            size_t sp = emit(g, I_SPLIT, 0, 0);
            g->prog[sp].x = (uint32_t)g->n;
            gen(g, nd->a, depth + 1);
            emit(g, I_JMP, (uint32_t)sp, 0);
            if (!g->overflow) g->prog[sp].y = (uint32_t)g->n;
        } else {
            size_t splits[64];
            size_t ns = 0;
            int opt = nd->max - nd->min;
            size_t *sps = opt <= 64 ? splits : malloc((size_t)opt * sizeof *sps);
            if (!sps) { g->overflow = true; return; }
            for (int i = 0; i < opt && !g->overflow; i++) {
                size_t sp = emit(g, I_SPLIT, 0, 0);
                if (g->overflow) break;
                g->prog[sp].x = (uint32_t)g->n;
                sps[ns++] = sp;
                gen(g, nd->a, depth + 1);
            }
            if (!g->overflow)
                for (size_t i = 0; i < ns; i++) g->prog[sps[i]].y = (uint32_t)g->n;
            if (sps != splits) free(sps);
        }
        break;
    }
    }
}

size_t regex_program_size(const regex *re) { return re ? re->n : 0; }

void regex_free(regex *re) {
    if (!re) return;
    for (size_t i = 0; i < re->n_classes; i++) free(re->classes[i].r);
    free(re->classes);
    free(re->prog);
    free(re);
}

int regex_compile(const char *pat, size_t n, regex **out, qerr *e) {
    *out = NULL;
    rparse p = {0};
    p.s = pat;
    p.n = n;
    p.e = e;
    int root = parse_alt(&p);
    if (root >= 0 && p.pos < p.n) root = rx_fail(&p, "unmatched ')'");
    if (root < 0) {
        if (p.oom) rx_fail(&p, "out of memory");
        for (size_t i = 0; i < p.n_classes; i++) free(p.classes[i].r);
        free(p.classes);
        free(p.nodes);
        return -1;
    }
    regex *re = calloc(1, sizeof *re);
    rgen g = {0};
    g.nodes = p.nodes;
    g.prog = malloc(RX_MAX_PROG * sizeof *g.prog);
    if (!re || !g.prog) {
        free(re); free(g.prog);
        for (size_t i = 0; i < p.n_classes; i++) free(p.classes[i].r);
        free(p.classes); free(p.nodes);
        return qerr_set(e, "regex: out of memory");
    }
    gen(&g, root, 0);
    emit(&g, I_MATCH, 0, 0);
    free(p.nodes);
    re->classes = p.classes;
    re->n_classes = p.n_classes;
    if (g.overflow) {
        free(g.prog);
        regex_free(re);
        return qerr_set(e, "regex /%.*s/: too large once repetitions are expanded (limit %d instructions)",
                        (int)(n > 200 ? 200 : n), pat, RX_MAX_PROG);
    }
    rinst *shrunk = realloc(g.prog, g.n * sizeof *g.prog);
    re->prog = shrunk ? shrunk : g.prog;
    re->n = g.n;
    *out = re;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Pike VM */

static bool is_word(uint32_t c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_lineterm(uint32_t c) { return c == '\n' || c == '\r' || c == 0x2028 || c == 0x2029; }

/* Decodes the code point at s[i] (lenient: a bad byte is itself). */
static size_t dec(const unsigned char *s, size_t n, size_t i, uint32_t *cp) {
    unsigned c = s[i];
    size_t len = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    if (i + len > n) len = 1;
    for (size_t k = 1; k < len; k++) if ((s[i + k] & 0xC0) != 0x80) len = 1;
    uint32_t v = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t k = 1; k < len; k++) v = (v << 6) | (s[i + k] & 0x3F);
    *cp = v;
    return len;
}

typedef struct tlist { uint32_t *pc; size_t n; } tlist;

/* Adds pc and everything reachable through jumps/splits/true assertions. */
static bool addthread(const regex *re, tlist *l, uint32_t *mark, uint32_t gen, uint32_t *stack, uint32_t pc0,
                      bool at_start, bool at_end, uint32_t prev, uint32_t cur) {
    size_t sp = 0;
    stack[sp++] = pc0;
    while (sp) {
        uint32_t pc = stack[--sp];
        if (mark[pc] == gen) continue;
        mark[pc] = gen;
        const rinst *in = &re->prog[pc];
        switch (in->op) {
        case I_JMP: stack[sp++] = in->x; break;
        case I_SPLIT: stack[sp++] = in->y; stack[sp++] = in->x; break;
        case I_BOL: if (at_start) stack[sp++] = pc + 1; break;
        case I_EOL: if (at_end) stack[sp++] = pc + 1; break;
        case I_WORDB: case I_NWORDB: {
            bool a = !at_start && is_word(prev), b = !at_end && is_word(cur);
            if ((a != b) == (in->op == I_WORDB)) stack[sp++] = pc + 1;
            break;
        }
        case I_MATCH: return true;
        default: l->pc[l->n++] = pc; break;
        }
    }
    return false;
}

bool regex_match(const regex *re, const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t np = re->n;
    uint32_t *buf = calloc(5 * np + 8, sizeof *buf);
    if (!buf) return false;
    tlist cl = {buf, 0}, nl = {buf + np, 0};
    uint32_t *mark = buf + 2 * np, *stack = buf + 3 * np;
    /* a mark per position: gen increases by one per list built */
    uint32_t gen = 1;
    bool matched = false;
    uint32_t prev = 0, cur = 0;
    size_t i = 0;
    for (;;) {
        bool at_end = i >= n;
        size_t clen = 0;
        if (!at_end) clen = dec(s, n, i, &cur);
        else cur = 0;
        /* threads carried over were added at the end of the previous step
         * with this position's context; now add a fresh start thread */
        if (addthread(re, &cl, mark, gen, stack, 0, i == 0, at_end, prev, cur)) { matched = true; break; }
        if (at_end) break;
        gen++;
        nl.n = 0;
        uint32_t nxt = 0;
        size_t i2 = i + clen;
        bool end2 = i2 >= n;
        if (!end2) dec(s, n, i2, &nxt);
        for (size_t k = 0; k < cl.n; k++) {
            const rinst *in = &re->prog[cl.pc[k]];
            bool ok = false;
            switch (in->op) {
            case I_CHAR: ok = cur == in->x; break;
            case I_ANY: ok = !is_lineterm(cur); break;
            case I_CLASS: ok = class_has(&re->classes[in->x], cur); break;
            default: break;
            }
            if (ok && addthread(re, &nl, mark, gen, stack, cl.pc[k] + 1, false, end2, cur, nxt)) { matched = true; break; }
        }
        if (matched) break;
        tlist t = cl; cl = nl; nl = t;
        prev = cur;
        i = i2;
    }
    free(buf);
    return matched;
}
