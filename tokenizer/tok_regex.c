/* tok_regex.c — Unicode helpers and the small backtracking regex matcher the
 * byte-level BPE pre-tokenizers are written in. Quantifiers apply only to
 * single-character atoms and are matched iteratively, so the recursion depth
 * is bounded by the pattern, never by the input. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tok_internal.h"

/* ------------------------------------------------------------------------ */
/* Unicode */

static uint8_t *cp_table; /* 0x110000 entries */
static pthread_once_t cp_once = PTHREAD_ONCE_INIT;

static bool cp_is_ws(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

static uint8_t cp_compute(uint32_t c) {
    uint8_t f = 0;
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: f = CPF_L; break;
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO: f = CPF_N; break;
    case UTF8PROC_CATEGORY_PC: case UTF8PROC_CATEGORY_PD: case UTF8PROC_CATEGORY_PS: case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI: case UTF8PROC_CATEGORY_PF: case UTF8PROC_CATEGORY_PO: f = CPF_P; break;
    case UTF8PROC_CATEGORY_SM: case UTF8PROC_CATEGORY_SC: case UTF8PROC_CATEGORY_SK:
    case UTF8PROC_CATEGORY_SO: f = CPF_S; break;
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME: f = CPF_M; break;
    case UTF8PROC_CATEGORY_ZS: case UTF8PROC_CATEGORY_ZL: case UTF8PROC_CATEGORY_ZP: f = CPF_Z; break;
    case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CS: f = CPF_C; break;
    default: break;
    }
    if (cp_is_ws(c)) f |= CPF_WS;
    return f;
}

static void cp_init_once(void) {
    uint8_t *t = malloc(0x110000);
    if (!t) return; /* tok_cp_flags then computes on the fly */
    for (uint32_t c = 0; c < 0x110000; c++) t[c] = cp_compute(c);
    cp_table = t;
}

void tok_unicode_init(void) { pthread_once(&cp_once, cp_init_once); }

uint8_t tok_cp_flags(uint32_t cp) {
    if (cp >= 0x110000) return 0;
    if (cp_table) return cp_table[cp];
    return cp_compute(cp);
}

uint32_t tok_utf8_next(const uint8_t *s, size_t n, size_t *i) {
    size_t p = *i;
    uint8_t c = s[p];
    if (!(c & 0x80)) { *i = p + 1; return c; }
    int need;
    uint32_t cp;
    if (!(c & 0x40)) goto bad;
    if (!(c & 0x20)) { need = 1; cp = c & 0x1F; }
    else if (!(c & 0x10)) { need = 2; cp = c & 0x0F; }
    else if (!(c & 0x08)) { need = 3; cp = c & 0x07; }
    else goto bad;
    if (p + (size_t)need >= n) goto bad;
    for (int k = 1; k <= need; k++) {
        if ((s[p + k] & 0xC0) != 0x80) goto bad;
        cp = (cp << 6) | (s[p + k] & 0x3F);
    }
    if (cp >= 0x110000) goto bad;
    *i = p + 1 + (size_t)need;
    return cp;
bad:
    *i = p + 1;
    return 0xFFFD;
}

int tok_utf8_put(uint32_t cp, uint8_t *b) {
    if (cp < 0x80) { b[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) { b[0] = (uint8_t)(0xC0 | (cp >> 6)); b[1] = (uint8_t)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        b[0] = (uint8_t)(0xE0 | (cp >> 12)); b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    b[0] = (uint8_t)(0xF0 | (cp >> 18)); b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F)); b[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* ------------------------------------------------------------------------ */
/* Regex */

enum { RX_SET, RX_ALT, RX_NLOOK, RX_PLOOK, RX_END };

typedef struct rx_range { uint32_t lo, hi; } rx_range;

typedef struct rx_node rx_node;
typedef struct rx_seq {
    int n, cap;
    rx_node **items;
} rx_seq;

struct rx_node {
    int kind;
    int min, max;      /* quantifier (RX_SET) */
    bool neg;          /* RX_SET: negated class */
    uint8_t cats;      /* RX_SET: CPF_* flags that match */
    bool not_ws;       /* RX_SET: \S inside a class */
    int nr;
    rx_range *r;
    int nalt;          /* RX_ALT / looks: alternatives */
    rx_seq *alts;
};

struct tok_rx {
    rx_node *top;
};

typedef struct rx_parser {
    const uint32_t *p;
    size_t n, i;
    qerr *e;
    const char *src;
} rx_parser;

static void rx_node_free(rx_node *nd) {
    if (!nd) return;
    free(nd->r);
    for (int a = 0; a < nd->nalt; a++) {
        for (int k = 0; k < nd->alts[a].n; k++) rx_node_free(nd->alts[a].items[k]);
        free(nd->alts[a].items);
    }
    free(nd->alts);
    free(nd);
}

void tok_rx_free(tok_rx *r) {
    if (!r) return;
    rx_node_free(r->top);
    free(r);
}

static int rx_fail(rx_parser *ps, const char *what) {
    return qerr_set(ps->e, "regex '%s': %s at %zu", ps->src, what, ps->i);
}

static int seq_push(rx_seq *s, rx_node *nd) {
    if (s->n == s->cap) {
        int nc = s->cap ? s->cap * 2 : 4;
        rx_node **ni = realloc(s->items, (size_t)nc * sizeof *ni);
        if (!ni) return -1;
        s->items = ni;
        s->cap = nc;
    }
    s->items[s->n++] = nd;
    return 0;
}

static int set_add_range(rx_node *nd, uint32_t lo, uint32_t hi) {
    rx_range *nr = realloc(nd->r, (size_t)(nd->nr + 1) * sizeof *nr);
    if (!nr) return -1;
    nd->r = nr;
    nd->r[nd->nr].lo = lo;
    nd->r[nd->nr].hi = hi;
    nd->nr++;
    return 0;
}

static rx_node *node_new(int kind) {
    rx_node *nd = calloc(1, sizeof *nd);
    if (nd) { nd->kind = kind; nd->min = nd->max = 1; }
    return nd;
}

/* Parses an escape after '\' into a set node (adds to nd). in_class: inside [..]. */
static int parse_escape(rx_parser *ps, rx_node *nd, bool in_class, uint32_t *lit, bool *is_lit) {
    *is_lit = false;
    if (ps->i >= ps->n) return rx_fail(ps, "dangling backslash");
    uint32_t c = ps->p[ps->i++];
    switch (c) {
    case 'p': {
        if (ps->i + 2 >= ps->n || ps->p[ps->i] != '{') return rx_fail(ps, "bad \\p");
        uint32_t k = ps->p[ps->i + 1];
        if (ps->p[ps->i + 2] != '}') return rx_fail(ps, "unsupported \\p{..}");
        ps->i += 3;
        uint8_t f = k == 'L' ? CPF_L : k == 'N' ? CPF_N : k == 'P' ? CPF_P : k == 'S' ? CPF_S : k == 'M' ? CPF_M : 0;
        if (!f) return rx_fail(ps, "unsupported \\p category");
        nd->cats |= f;
        return 0;
    }
    case 's': nd->cats |= CPF_WS; return 0;
    case 'S':
        if (in_class) nd->not_ws = true;
        else { nd->neg = true; nd->cats |= CPF_WS; }
        return 0;
    case 'd': return set_add_range(nd, '0', '9');
    case 'r': *lit = '\r'; break;
    case 'n': *lit = '\n'; break;
    case 't': *lit = '\t'; break;
    case 'f': *lit = '\f'; break;
    case 'v': *lit = '\v'; break;
    default: *lit = c; break;
    }
    *is_lit = true;
    return 0;
}

static int parse_alt(rx_parser *ps, rx_node *alt);

static int parse_class(rx_parser *ps, rx_node *nd) {
    /* after '[' */
    if (ps->i < ps->n && ps->p[ps->i] == '^') { nd->neg = true; ps->i++; }
    bool first = true;
    while (ps->i < ps->n && (ps->p[ps->i] != ']' || first)) {
        first = false;
        uint32_t lo;
        bool is_lit = true;
        uint32_t c = ps->p[ps->i++];
        if (c == '\\') {
            if (parse_escape(ps, nd, true, &lo, &is_lit)) return -1;
            if (!is_lit) continue;
        } else {
            lo = c;
        }
        uint32_t hi = lo;
        if (ps->i + 1 < ps->n && ps->p[ps->i] == '-' && ps->p[ps->i + 1] != ']') {
            ps->i++;
            uint32_t c2 = ps->p[ps->i++];
            if (c2 == '\\') {
                bool l2;
                if (parse_escape(ps, nd, true, &hi, &l2)) return -1;
                if (!l2) return rx_fail(ps, "bad range");
            } else {
                hi = c2;
            }
            if (hi < lo) return rx_fail(ps, "inverted range");
        }
        if (set_add_range(nd, lo, hi)) return rx_fail(ps, "out of memory");
    }
    if (ps->i >= ps->n) return rx_fail(ps, "unterminated class");
    ps->i++; /* ']' */
    return 0;
}

static int parse_uint(rx_parser *ps, int *v) {
    if (ps->i >= ps->n || ps->p[ps->i] < '0' || ps->p[ps->i] > '9') return -1;
    long x = 0;
    while (ps->i < ps->n && ps->p[ps->i] >= '0' && ps->p[ps->i] <= '9') {
        x = x * 10 + (ps->p[ps->i++] - '0');
        if (x > 1000000) return -1;
    }
    *v = (int)x;
    return 0;
}

static int parse_seq(rx_parser *ps, rx_seq *seq) {
    while (ps->i < ps->n && ps->p[ps->i] != '|' && ps->p[ps->i] != ')') {
        uint32_t c = ps->p[ps->i++];
        rx_node *nd = NULL;
        if (c == '(') {
            int kind = RX_ALT;
            if (ps->i + 1 < ps->n && ps->p[ps->i] == '?') {
                uint32_t k = ps->p[ps->i + 1];
                if (k == ':') kind = RX_ALT;
                else if (k == '!') kind = RX_NLOOK;
                else if (k == '=') kind = RX_PLOOK;
                else return rx_fail(ps, "unsupported group");
                ps->i += 2;
            }
            nd = node_new(kind);
            if (!nd) return rx_fail(ps, "out of memory");
            if (parse_alt(ps, nd)) { rx_node_free(nd); return -1; }
            if (ps->i >= ps->n || ps->p[ps->i] != ')') { rx_node_free(nd); return rx_fail(ps, "missing )"); }
            ps->i++;
        } else if (c == '$') {
            nd = node_new(RX_END);
            if (!nd) return rx_fail(ps, "out of memory");
        } else {
            nd = node_new(RX_SET);
            if (!nd) return rx_fail(ps, "out of memory");
            int rc = 0;
            if (c == '[') {
                rc = parse_class(ps, nd);
            } else if (c == '\\') {
                uint32_t lit;
                bool is_lit;
                rc = parse_escape(ps, nd, false, &lit, &is_lit);
                if (!rc && is_lit) rc = set_add_range(nd, lit, lit);
            } else if (c == '.') {
                nd->neg = true;
                rc = set_add_range(nd, '\n', '\n');
            } else if (c == '*' || c == '+' || c == '?' || c == '{') {
                rc = rx_fail(ps, "quantifier without atom");
            } else {
                rc = set_add_range(nd, c, c);
            }
            if (rc) { rx_node_free(nd); return -1; }
        }
        /* quantifier */
        if (ps->i < ps->n) {
            uint32_t q = ps->p[ps->i];
            int mn = -1, mx = -1;
            if (q == '?') { mn = 0; mx = 1; ps->i++; }
            else if (q == '*') { mn = 0; mx = INT32_MAX; ps->i++; }
            else if (q == '+') { mn = 1; mx = INT32_MAX; ps->i++; }
            else if (q == '{') {
                ps->i++;
                if (parse_uint(ps, &mn)) { rx_node_free(nd); return rx_fail(ps, "bad {m,n}"); }
                mx = mn;
                if (ps->i < ps->n && ps->p[ps->i] == ',') {
                    ps->i++;
                    if (ps->i < ps->n && ps->p[ps->i] == '}') mx = INT32_MAX;
                    else if (parse_uint(ps, &mx)) { rx_node_free(nd); return rx_fail(ps, "bad {m,n}"); }
                }
                if (ps->i >= ps->n || ps->p[ps->i] != '}' || mx < mn) { rx_node_free(nd); return rx_fail(ps, "bad {m,n}"); }
                ps->i++;
            }
            if (mn >= 0) {
                if (nd->kind != RX_SET) { rx_node_free(nd); return rx_fail(ps, "quantified group unsupported"); }
                nd->min = mn;
                nd->max = mx;
                if (ps->i < ps->n && (ps->p[ps->i] == '?' || ps->p[ps->i] == '+')) {
                    rx_node_free(nd);
                    return rx_fail(ps, "lazy/possessive quantifier unsupported");
                }
            }
        }
        if (seq_push(seq, nd)) { rx_node_free(nd); return rx_fail(ps, "out of memory"); }
    }
    return 0;
}

static int parse_alt(rx_parser *ps, rx_node *alt) {
    for (;;) {
        rx_seq *na = realloc(alt->alts, (size_t)(alt->nalt + 1) * sizeof *na);
        if (!na) return rx_fail(ps, "out of memory");
        alt->alts = na;
        memset(&alt->alts[alt->nalt], 0, sizeof *na);
        alt->nalt++;
        if (parse_seq(ps, &alt->alts[alt->nalt - 1])) return -1;
        if (ps->i < ps->n && ps->p[ps->i] == '|') { ps->i++; continue; }
        return 0;
    }
}

int tok_rx_compile(tok_rx **out, const char *pattern, qerr *e) {
    *out = NULL;
    size_t len = strlen(pattern), n = 0;
    uint32_t *cps = malloc((len + 1) * sizeof *cps);
    if (!cps) return qerr_set(e, "out of memory");
    for (size_t i = 0; i < len;) cps[n++] = tok_utf8_next((const uint8_t *)pattern, len, &i);
    rx_parser ps = {cps, n, 0, e, pattern};
    tok_rx *r = calloc(1, sizeof *r);
    if (!r) { free(cps); return qerr_set(e, "out of memory"); }
    r->top = node_new(RX_ALT);
    int rc = r->top ? parse_alt(&ps, r->top) : qerr_set(e, "out of memory");
    if (!rc && ps.i != ps.n) rc = rx_fail(&ps, "unbalanced )");
    free(cps);
    if (rc) { tok_rx_free(r); return -1; }
    *out = r;
    return 0;
}

static inline bool set_has(const rx_node *nd, uint32_t c) {
    bool in = false;
    for (int k = 0; k < nd->nr; k++)
        if (c >= nd->r[k].lo && c <= nd->r[k].hi) { in = true; break; }
    if (!in && (nd->cats || nd->not_ws)) {
        uint8_t f = tok_cp_flags(c);
        in = (f & nd->cats) != 0 || (nd->not_ws && !(f & CPF_WS));
    }
    return in != nd->neg;
}

typedef struct rx_cont {
    const rx_seq *seq;
    int idx;
    const struct rx_cont *next;
} rx_cont;

static long rx_m(const rx_seq *s, int i, const rx_cont *k, const uint32_t *t, size_t pos, size_t end) {
    for (;;) {
        if (i == s->n) {
            if (!k) return (long)pos;
            s = k->seq;
            i = k->idx;
            k = k->next;
            continue;
        }
        const rx_node *nd = s->items[i];
        switch (nd->kind) {
        case RX_SET: {
            size_t c = 0;
            size_t mx = (size_t)nd->max;
            while (c < mx && pos + c < end && set_has(nd, t[pos + c])) c++;
            if (c < (size_t)nd->min) return -1;
            if (c == (size_t)nd->min) { pos += c; i++; continue; }
            for (;;) {
                long r = rx_m(s, i + 1, k, t, pos + c, end);
                if (r >= 0) return r;
                if (c == (size_t)nd->min) return -1;
                c--;
            }
        }
        case RX_ALT: {
            rx_cont k2 = {s, i + 1, k};
            for (int a = 0; a < nd->nalt; a++) {
                long r = rx_m(&nd->alts[a], 0, &k2, t, pos, end);
                if (r >= 0) return r;
            }
            return -1;
        }
        case RX_NLOOK:
        case RX_PLOOK: {
            bool found = false;
            for (int a = 0; a < nd->nalt && !found; a++)
                if (rx_m(&nd->alts[a], 0, NULL, t, pos, end) >= 0) found = true;
            if (found != (nd->kind == RX_PLOOK)) return -1;
            i++;
            continue;
        }
        case RX_END:
            if (pos != end) return -1;
            i++;
            continue;
        default:
            return -1;
        }
    }
}

long tok_rx_match(const tok_rx *r, const uint32_t *cp, size_t pos, size_t end) {
    const rx_node *top = r->top;
    for (int a = 0; a < top->nalt; a++) {
        long m = rx_m(&top->alts[a], 0, NULL, cp, pos, end);
        if (m >= 0) return m;
    }
    return -1;
}
