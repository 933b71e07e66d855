/* json.c — strict RFC 8259 parser, DOM, serializer and JSON Pointer. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sgr.h"

/* ------------------------------------------------------------------------ */
/* Parser */

typedef struct jp {
    const char *s;
    size_t n, pos;
    int depth, max_depth, dup;
    qerr *e;
} jp;

static int jp_fail(jp *p, size_t at, const char *msg) {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < at && i < p->n; i++) {
        if (p->s[i] == '\n') { line++; col = 1; }
        else if (((unsigned char)p->s[i] & 0xC0) != 0x80) col++;
    }
    return qerr_set(p->e, "JSON: %s at byte %zu (line %zu, column %zu)", msg, at, line, col);
}

static void jp_ws(jp *p) {
    while (p->pos < p->n) {
        char c = p->s[p->pos];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') p->pos++;
        else break;
    }
}

static json *node_new(json_type t) {
    json *v = calloc(1, sizeof *v);
    if (v) v->type = t;
    return v;
}

void json_free(json *v) {
    if (!v) return;
    switch (v->type) {
    case JSON_NUMBER: free(v->u.num.text); break;
    case JSON_STRING: free(v->u.str.s); break;
    case JSON_ARRAY:
        for (size_t i = 0; i < v->u.arr.n; i++) json_free(v->u.arr.items[i]);
        free(v->u.arr.items);
        break;
    case JSON_OBJECT:
        for (size_t i = 0; i < v->u.obj.n; i++) { free(v->u.obj.m[i].key); json_free(v->u.obj.m[i].val); }
        free(v->u.obj.m);
        free(v->u.obj.sorted);
        break;
    default: break;
    }
    free(v);
}

/* Decodes one UTF-8 sequence strictly; returns its length or 0 if invalid. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    if (n == 0) return 0;
    unsigned c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    size_t len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; v = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; v = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

static size_t utf8_encode(uint32_t cp, char *o) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int hex4(const char *s, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

/* Parses a string at p->pos (the opening quote) into a malloc'd buffer. */
static int jp_string(jp *p, char **out, size_t *outlen) {
    size_t start = ++p->pos;
    /* First pass: find the end and check whether there are escapes. */
    size_t cap = 0;
    size_t i = start;
    while (i < p->n && p->s[i] != '"') {
        if (p->s[i] == '\\') i++;
        i++;
        cap++;
    }
    if (i >= p->n) return jp_fail(p, start - 1, "unterminated string");
    char *b = malloc(i - start + 1);
    if (!b) return jp_fail(p, start, "out of memory");
    size_t o = 0;
    const unsigned char *s = (const unsigned char *)p->s;
    while (p->pos < p->n) {
        unsigned c = s[p->pos];
        if (c == '"') { p->pos++; b[o] = 0; *out = b; *outlen = o; return 0; }
        if (c < 0x20) { free(b); return jp_fail(p, p->pos, "control character in string (must be escaped)"); }
        if (c == '\\') {
            size_t at = p->pos;
            if (p->pos + 1 >= p->n) { free(b); return jp_fail(p, at, "unterminated string"); }
            char x = p->s[p->pos + 1];
            p->pos += 2;
            switch (x) {
            case '"': b[o++] = '"'; break;
            case '\\': b[o++] = '\\'; break;
            case '/': b[o++] = '/'; break;
            case 'b': b[o++] = '\b'; break;
            case 'f': b[o++] = '\f'; break;
            case 'n': b[o++] = '\n'; break;
            case 'r': b[o++] = '\r'; break;
            case 't': b[o++] = '\t'; break;
            case 'u': {
                uint32_t cp;
                if (p->pos + 4 > p->n || hex4(p->s + p->pos, &cp)) { free(b); return jp_fail(p, at, "bad \\u escape"); }
                p->pos += 4;
                if (cp >= 0xDC00 && cp <= 0xDFFF) { free(b); return jp_fail(p, at, "lone low surrogate in \\u escape"); }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    uint32_t lo;
                    if (p->pos + 6 > p->n || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u' ||
                        hex4(p->s + p->pos + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                        free(b);
                        return jp_fail(p, at, "lone high surrogate in \\u escape");
                    }
                    p->pos += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                /* the encoded form never exceeds the 6 or 12 escape bytes */
                o += utf8_encode(cp, b + o);
                break;
            }
            default: free(b); return jp_fail(p, at, "invalid escape in string");
            }
            continue;
        }
        if (c < 0x80) { b[o++] = (char)c; p->pos++; continue; }
        uint32_t cp;
        size_t l = utf8_decode(s + p->pos, p->n - p->pos, &cp);
        if (!l) { free(b); return jp_fail(p, p->pos, "invalid UTF-8 in string"); }
        memcpy(b + o, s + p->pos, l);
        o += l;
        p->pos += l;
    }
    (void)cap;
    free(b);
    return jp_fail(p, start - 1, "unterminated string");
}

static int jp_number(jp *p, json **out) {
    size_t st = p->pos, i = p->pos;
    const char *s = p->s;
    bool integral = true;
    if (i < p->n && s[i] == '-') i++;
    if (i >= p->n) return jp_fail(p, st, "bad number");
    if (s[i] == '0') i++;
    else if (s[i] >= '1' && s[i] <= '9') { while (i < p->n && s[i] >= '0' && s[i] <= '9') i++; }
    else return jp_fail(p, st, "bad number");
    if (i < p->n && s[i] == '.') {
        integral = false;
        i++;
        if (i >= p->n || s[i] < '0' || s[i] > '9') return jp_fail(p, st, "bad number (digit expected after '.')");
        while (i < p->n && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (i < p->n && (s[i] == 'e' || s[i] == 'E')) {
        integral = false;
        i++;
        if (i < p->n && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= p->n || s[i] < '0' || s[i] > '9') return jp_fail(p, st, "bad number (digit expected in exponent)");
        while (i < p->n && s[i] >= '0' && s[i] <= '9') i++;
    }
    json *v = node_new(JSON_NUMBER);
    if (!v) return jp_fail(p, st, "out of memory");
    size_t len = i - st;
    v->u.num.text = malloc(len + 1);
    if (!v->u.num.text) { free(v); return jp_fail(p, st, "out of memory"); }
    memcpy(v->u.num.text, s + st, len);
    v->u.num.text[len] = 0;
    v->u.num.len = len;
    v->u.num.d = strtod(v->u.num.text, NULL);
    if (integral) {
        errno = 0;
        long long x = strtoll(v->u.num.text, NULL, 10);
        if (errno == 0) { v->u.num.i = x; v->u.num.is_int = true; }
    }
    p->pos = i;
    *out = v;
    return 0;
}

static int key_cmp(const json_member *a, const json_member *b) {
    size_t n = a->klen < b->klen ? a->klen : b->klen;
    int c = memcmp(a->key, b->key, n);
    if (c) return c;
    return a->klen < b->klen ? -1 : a->klen > b->klen;
}

/* Stable merge sort of member indices by key (re-entrant, unlike qsort with
 * a global comparator context). */
static void msort(uint32_t *a, uint32_t *tmp, size_t n, const json_member *m) {
    if (n < 2) return;
    size_t h = n / 2;
    msort(a, tmp, h, m);
    msort(a + h, tmp, n - h, m);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        int c = key_cmp(&m[a[i]], &m[a[j]]);
        if (c < 0 || (c == 0 && a[i] < a[j])) tmp[k++] = a[i++];
        else tmp[k++] = a[j++];
    }
    while (i < h) tmp[k++] = a[i++];
    while (j < n) tmp[k++] = a[j++];
    memcpy(a, tmp, n * sizeof *a);
}

/* Builds the sorted index and applies the duplicate-key policy. Returns 0,
 * -1 on a rejected duplicate (its index in *dup_at), -2 out of memory. */
static int obj_index(json *v, int dup, size_t *dup_at) {
    size_t n = v->u.obj.n;
    if (n == 0) return 0;
    uint32_t *ix = malloc(n * sizeof *ix), *tmp = malloc(n * sizeof *tmp);
    if (!ix || !tmp) { free(ix); free(tmp); return -2; }
    for (size_t i = 0; i < n; i++) ix[i] = (uint32_t)i;
    msort(ix, tmp, n, v->u.obj.m);
    bool has_dup = false;
    for (size_t i = 1; i < n; i++)
        if (key_cmp(&v->u.obj.m[ix[i - 1]], &v->u.obj.m[ix[i]]) == 0) { has_dup = true; if (dup_at) *dup_at = ix[i]; break; }
    if (has_dup && dup == JSON_DUP_REJECT) { free(ix); free(tmp); return -1; }
    if (has_dup) {
        /* keep the last of each run of equal keys; drop the others */
        bool *drop = calloc(n, 1);
        if (!drop) { free(ix); free(tmp); return -2; }
        for (size_t i = 1; i < n; i++)
            if (key_cmp(&v->u.obj.m[ix[i - 1]], &v->u.obj.m[ix[i]]) == 0) drop[ix[i - 1]] = true;
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
            if (drop[i]) { free(v->u.obj.m[i].key); json_free(v->u.obj.m[i].val); }
            else v->u.obj.m[o++] = v->u.obj.m[i];
        }
        free(drop);
        v->u.obj.n = n = o;
        for (size_t i = 0; i < n; i++) ix[i] = (uint32_t)i;
        msort(ix, tmp, n, v->u.obj.m);
    }
    free(tmp);
    v->u.obj.sorted = ix;
    return 0;
}

static int jp_value(jp *p, json **out);

static int jp_array(jp *p, json **out) {
    size_t st = p->pos++;
    if (++p->depth > p->max_depth) return jp_fail(p, st, "nesting too deep");
    json *v = node_new(JSON_ARRAY);
    if (!v) return jp_fail(p, st, "out of memory");
    size_t cap = 0;
    jp_ws(p);
    if (p->pos < p->n && p->s[p->pos] == ']') { p->pos++; p->depth--; *out = v; return 0; }
    for (;;) {
        json *item;
        jp_ws(p);
        if (jp_value(p, &item)) { json_free(v); return -1; }
        if (v->u.arr.n == cap) {
            cap = cap ? cap * 2 : 4;
            json **ni = realloc(v->u.arr.items, cap * sizeof *ni);
            if (!ni) { json_free(item); json_free(v); return jp_fail(p, p->pos, "out of memory"); }
            v->u.arr.items = ni;
        }
        v->u.arr.items[v->u.arr.n++] = item;
        jp_ws(p);
        if (p->pos >= p->n) { json_free(v); return jp_fail(p, p->pos, "unterminated array"); }
        char c = p->s[p->pos];
        if (c == ',') { p->pos++; continue; }
        if (c == ']') { p->pos++; break; }
        json_free(v);
        return jp_fail(p, p->pos, "expected ',' or ']' in array");
    }
    p->depth--;
    *out = v;
    return 0;
}

static int jp_object(jp *p, json **out) {
    size_t st = p->pos++;
    if (++p->depth > p->max_depth) return jp_fail(p, st, "nesting too deep");
    json *v = node_new(JSON_OBJECT);
    if (!v) return jp_fail(p, st, "out of memory");
    size_t cap = 0;
    jp_ws(p);
    if (p->pos < p->n && p->s[p->pos] == '}') { p->pos++; p->depth--; *out = v; return 0; }
    for (;;) {
        jp_ws(p);
        if (p->pos >= p->n || p->s[p->pos] != '"') { json_free(v); return jp_fail(p, p->pos, "expected a string key in object"); }
        char *key;
        size_t klen;
        if (jp_string(p, &key, &klen)) { json_free(v); return -1; }
        jp_ws(p);
        if (p->pos >= p->n || p->s[p->pos] != ':') { free(key); json_free(v); return jp_fail(p, p->pos, "expected ':' after object key"); }
        p->pos++;
        jp_ws(p);
        json *val;
        if (jp_value(p, &val)) { free(key); json_free(v); return -1; }
        if (v->u.obj.n == cap) {
            cap = cap ? cap * 2 : 4;
            json_member *nm = realloc(v->u.obj.m, cap * sizeof *nm);
            if (!nm) { free(key); json_free(val); json_free(v); return jp_fail(p, p->pos, "out of memory"); }
            v->u.obj.m = nm;
        }
        v->u.obj.m[v->u.obj.n++] = (json_member){key, klen, val};
        jp_ws(p);
        if (p->pos >= p->n) { json_free(v); return jp_fail(p, p->pos, "unterminated object"); }
        char c = p->s[p->pos];
        if (c == ',') { p->pos++; continue; }
        if (c == '}') { p->pos++; break; }
        json_free(v);
        return jp_fail(p, p->pos, "expected ',' or '}' in object");
    }
    size_t dup_at = 0;
    int rc = obj_index(v, p->dup, &dup_at);
    if (rc == -1) {
        char msg[200];
        snprintf(msg, sizeof msg, "duplicate object key \"%.100s\"", v->u.obj.m[dup_at].key);
        json_free(v);
        return jp_fail(p, st, msg);
    }
    if (rc) { json_free(v); return jp_fail(p, st, "out of memory"); }
    p->depth--;
    *out = v;
    return 0;
}

static int jp_lit(jp *p, const char *lit, json_type t, json **out) {
    size_t l = strlen(lit);
    if (p->n - p->pos < l || memcmp(p->s + p->pos, lit, l) != 0) return jp_fail(p, p->pos, "invalid literal");
    p->pos += l;
    *out = node_new(t);
    return *out ? 0 : jp_fail(p, p->pos, "out of memory");
}

static int jp_value(jp *p, json **out) {
    if (p->pos >= p->n) return jp_fail(p, p->pos, "unexpected end of input");
    char c = p->s[p->pos];
    switch (c) {
    case '{': return jp_object(p, out);
    case '[': return jp_array(p, out);
    case '"': {
        char *s;
        size_t l;
        if (jp_string(p, &s, &l)) return -1;
        json *v = node_new(JSON_STRING);
        if (!v) { free(s); return jp_fail(p, p->pos, "out of memory"); }
        v->u.str.s = s;
        v->u.str.len = l;
        *out = v;
        return 0;
    }
    case 't': return jp_lit(p, "true", JSON_TRUE, out);
    case 'f': return jp_lit(p, "false", JSON_FALSE, out);
    case 'n': return jp_lit(p, "null", JSON_NULL, out);
    default:
        if (c == '-' || (c >= '0' && c <= '9')) return jp_number(p, out);
        return jp_fail(p, p->pos, "unexpected character");
    }
}

int json_parse(const char *s, size_t n, const json_parse_opts *o, json **out, qerr *e) {
    *out = NULL;
    jp p = {s, n, 0, 0, 512, JSON_DUP_REJECT, e};
    if (o) {
        if (o->max_depth > 0) p.max_depth = o->max_depth;
        p.dup = o->dup_keys;
    }
    jp_ws(&p);
    json *v;
    if (jp_value(&p, &v)) return -1;
    jp_ws(&p);
    if (p.pos != n) { json_free(v); return jp_fail(&p, p.pos, "trailing characters after the JSON value"); }
    *out = v;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Accessors */

json *json_clone(const json *v) {
    if (!v) return NULL;
    json *c = node_new(v->type);
    if (!c) return NULL;
    switch (v->type) {
    case JSON_NUMBER:
        c->u.num = v->u.num;
        c->u.num.text = malloc(v->u.num.len + 1);
        if (!c->u.num.text) { free(c); return NULL; }
        memcpy(c->u.num.text, v->u.num.text, v->u.num.len + 1);
        break;
    case JSON_STRING:
        c->u.str.len = v->u.str.len;
        c->u.str.s = malloc(v->u.str.len + 1);
        if (!c->u.str.s) { free(c); return NULL; }
        memcpy(c->u.str.s, v->u.str.s, v->u.str.len + 1);
        break;
    case JSON_ARRAY:
        if (v->u.arr.n) {
            c->u.arr.items = calloc(v->u.arr.n, sizeof *c->u.arr.items);
            if (!c->u.arr.items) { free(c); return NULL; }
        }
        for (size_t i = 0; i < v->u.arr.n; i++) {
            c->u.arr.items[i] = json_clone(v->u.arr.items[i]);
            c->u.arr.n = i + 1;
            if (!c->u.arr.items[i]) { json_free(c); return NULL; }
        }
        break;
    case JSON_OBJECT:
        if (v->u.obj.n) {
            c->u.obj.m = calloc(v->u.obj.n, sizeof *c->u.obj.m);
            c->u.obj.sorted = malloc(v->u.obj.n * sizeof *c->u.obj.sorted);
            if (!c->u.obj.m || !c->u.obj.sorted) { free(c->u.obj.m); free(c->u.obj.sorted); free(c); return NULL; }
            memcpy(c->u.obj.sorted, v->u.obj.sorted, v->u.obj.n * sizeof *c->u.obj.sorted);
        }
        for (size_t i = 0; i < v->u.obj.n; i++) {
            const json_member *m = &v->u.obj.m[i];
            c->u.obj.n = i + 1;
            c->u.obj.m[i].klen = m->klen;
            c->u.obj.m[i].key = malloc(m->klen + 1);
            c->u.obj.m[i].val = json_clone(m->val);
            if (!c->u.obj.m[i].key || !c->u.obj.m[i].val) { json_free(c); return NULL; }
            memcpy(c->u.obj.m[i].key, m->key, m->klen + 1);
        }
        break;
    default: break;
    }
    return c;
}

size_t json_size(const json *v) {
    if (json_is_array(v)) return v->u.arr.n;
    if (json_is_object(v)) return v->u.obj.n;
    return 0;
}

const json *json_at(const json *a, size_t i) {
    if (!json_is_array(a) || i >= a->u.arr.n) return NULL;
    return a->u.arr.items[i];
}

const json *json_getn(const json *o, const char *key, size_t klen) {
    if (!json_is_object(o) || o->u.obj.n == 0) return NULL;
    json_member k = {(char *)key, klen, NULL};
    size_t lo = 0, hi = o->u.obj.n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const json_member *m = &o->u.obj.m[o->u.obj.sorted[mid]];
        int c = key_cmp(m, &k);
        if (c == 0) return m->val;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const json *json_get(const json *o, const char *key) { return json_getn(o, key, strlen(key)); }

/* A number's exact decimal value: sign, significant digits (no leading or
 * trailing zeros) and exponent such that value = 0.DIGITS... scaled:
 * value = digits * 10^exp. */
typedef struct decnum {
    bool neg, zero;
    const char *src;      /* the source text */
    char *digits;         /* heap or buf */
    size_t nd;
    long long exp;
    char buf[64];
} decnum;

static void dec_parse(const json *v, decnum *d) {
    const char *s = v->u.num.text;
    memset(d, 0, sizeof *d);
    d->src = s;
    size_t len = v->u.num.len;
    d->digits = len < sizeof d->buf ? d->buf : malloc(len + 1);
    if (!d->digits) { d->zero = true; return; } /* out of memory: degrade */
    size_t i = 0;
    if (s[i] == '-') { d->neg = true; i++; }
    long long frac = 0;
    bool seen_dot = false;
    for (; i < len && s[i] != 'e' && s[i] != 'E'; i++) {
        if (s[i] == '.') { seen_dot = true; continue; }
        if (d->nd == 0 && s[i] == '0') { if (seen_dot) frac++; continue; }
        d->digits[d->nd++] = s[i];
        if (seen_dot) frac++;
    }
    long long e = 0;
    if (i < len) {
        i++;
        bool eneg = false;
        if (s[i] == '+') i++;
        else if (s[i] == '-') { eneg = true; i++; }
        for (; i < len; i++) { if (e < 1000000000000LL) e = e * 10 + (s[i] - '0'); }
        if (eneg) e = -e;
    }
    /* digits counted after the dot (including leading zeros skipped) */
    long long exp = e - frac;
    while (d->nd > 0 && d->digits[d->nd - 1] == '0') { d->nd--; exp++; }
    if (d->nd == 0) { d->zero = true; d->neg = false; exp = 0; }
    d->exp = exp;
}

static void dec_free(decnum *d) { if (d->digits && d->digits != d->buf) free(d->digits); }

/* magnitude comparison of two non-zero decnums */
static int dec_cmp_mag(const decnum *a, const decnum *b) {
    long long ma = (long long)a->nd + a->exp, mb = (long long)b->nd + b->exp; /* position of the leading digit */
    if (ma != mb) return ma < mb ? -1 : 1;
    size_t n = a->nd < b->nd ? a->nd : b->nd;
    int c = memcmp(a->digits, b->digits, n);
    if (c) return c < 0 ? -1 : 1;
    return a->nd < b->nd ? -1 : a->nd > b->nd;
}

static int dec_cmp(const decnum *a, const decnum *b) {
    if (a->zero && b->zero) return 0;
    if (a->zero) return b->neg ? 1 : -1;
    if (b->zero) return a->neg ? -1 : 1;
    if (a->neg != b->neg) return a->neg ? -1 : 1;
    int c = dec_cmp_mag(a, b);
    return a->neg ? -c : c;
}

int json_number_cmp(const json *a, const json *b) {
    if (a->u.num.is_int && b->u.num.is_int) return a->u.num.i < b->u.num.i ? -1 : a->u.num.i > b->u.num.i;
    decnum x, y;
    dec_parse(a, &x);
    dec_parse(b, &y);
    int c = dec_cmp(&x, &y);
    dec_free(&x);
    dec_free(&y);
    return c;
}

bool json_number_is_integer(const json *v) {
    if (!json_is_number(v)) return false;
    if (v->u.num.is_int) return true;
    decnum d;
    dec_parse(v, &d);
    bool r = d.zero || d.exp >= 0;
    dec_free(&d);
    return r;
}

/* Exact test: is a a multiple of b (b > 0)? Returns -1 when it cannot tell
 * exactly (divisor with more than 19 significant digits). */
int json_number_multiple_of(const json *a, const json *b) {
    decnum x, y;
    dec_parse(a, &x);
    dec_parse(b, &y);
    int r;
    if (x.zero) r = 1;
    else if (y.zero || y.nd > 19) r = -1;
    else if (x.exp < y.exp) r = 0; /* x has no trailing zeros, so x/y has a fraction */
    else {
        unsigned long long m = 0;
        for (size_t i = 0; i < y.nd; i++) m = m * 10 + (unsigned)(y.digits[i] - '0');
        unsigned __int128 rem = 0;
        for (size_t i = 0; i < x.nd; i++) rem = (rem * 10 + (unsigned)(x.digits[i] - '0')) % m;
        long long k = x.exp - y.exp;
        unsigned __int128 base = 10 % m, pw = 1 % m;
        while (k > 0) {
            if (k & 1) pw = pw * base % m;
            base = base * base % m;
            k >>= 1;
        }
        r = (rem * pw % m) == 0;
    }
    dec_free(&x);
    dec_free(&y);
    return r;
}

static uint64_t mix(uint64_t h, uint64_t x) {
    h ^= x + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h;
}
static uint64_t bytes_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

uint64_t json_hash(const json *v) {
    switch (v->type) {
    case JSON_NULL: return 0x1234;
    case JSON_TRUE: return 0x2345;
    case JSON_FALSE: return 0x3456;
    case JSON_STRING: return mix(0x4567, bytes_hash(v->u.str.s, v->u.str.len));
    case JSON_NUMBER: {
        decnum d;
        dec_parse(v, &d);
        uint64_t h = d.zero ? 0x5678 : mix(mix(bytes_hash(d.digits, d.nd), (uint64_t)d.exp), d.neg);
        dec_free(&d);
        return h;
    }
    case JSON_ARRAY: {
        uint64_t h = 0x6789;
        for (size_t i = 0; i < v->u.arr.n; i++) h = mix(h, json_hash(v->u.arr.items[i]));
        return h;
    }
    case JSON_OBJECT: {
        uint64_t h = 0x789a; /* order-independent: sum of member hashes */
        for (size_t i = 0; i < v->u.obj.n; i++)
            h += mix(bytes_hash(v->u.obj.m[i].key, v->u.obj.m[i].klen), json_hash(v->u.obj.m[i].val));
        return h;
    }
    }
    return 0;
}

bool json_equal(const json *a, const json *b) {
    if (a->type != b->type) return false;
    switch (a->type) {
    case JSON_NUMBER: return json_number_cmp(a, b) == 0;
    case JSON_STRING: return a->u.str.len == b->u.str.len && memcmp(a->u.str.s, b->u.str.s, a->u.str.len) == 0;
    case JSON_ARRAY:
        if (a->u.arr.n != b->u.arr.n) return false;
        for (size_t i = 0; i < a->u.arr.n; i++)
            if (!json_equal(a->u.arr.items[i], b->u.arr.items[i])) return false;
        return true;
    case JSON_OBJECT:
        if (a->u.obj.n != b->u.obj.n) return false;
        for (size_t i = 0; i < a->u.obj.n; i++) {
            const json_member *m = &a->u.obj.m[i];
            const json *o = json_getn(b, m->key, m->klen);
            if (!o || !json_equal(m->val, o)) return false;
        }
        return true;
    default: return true;
    }
}

/* ------------------------------------------------------------------------ */
/* Serializer */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->n + n + 1 > cap) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) { b->oom = true; return; }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_c(sbuf *b, char c) { sb_put(b, &c, 1); }

static void sb_str(sbuf *b, const char *s, size_t n) {
    sb_c(b, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char ubuf[8];
        if (c == '"') esc = "\\\"";
        else if (c == '\\') esc = "\\\\";
        else if (c < 0x20) {
            switch (c) {
            case '\b': esc = "\\b"; break;
            case '\f': esc = "\\f"; break;
            case '\n': esc = "\\n"; break;
            case '\r': esc = "\\r"; break;
            case '\t': esc = "\\t"; break;
            default: snprintf(ubuf, sizeof ubuf, "\\u%04x", c); esc = ubuf;
            }
        }
        if (esc) {
            sb_put(b, s + i - run, run);
            run = 0;
            sb_put(b, esc, strlen(esc));
        } else run++;
    }
    sb_put(b, s + n - run, run);
    sb_c(b, '"');
}

static void sb_indent(sbuf *b, int indent, int level) {
    sb_c(b, '\n');
    for (int i = 0; i < indent * level; i++) sb_c(b, ' ');
}

static void ser(sbuf *b, const json *v, const json_write_opts *o, int level) {
    switch (v->type) {
    case JSON_NULL: sb_put(b, "null", 4); break;
    case JSON_TRUE: sb_put(b, "true", 4); break;
    case JSON_FALSE: sb_put(b, "false", 5); break;
    case JSON_NUMBER: sb_put(b, v->u.num.text, v->u.num.len); break;
    case JSON_STRING: sb_str(b, v->u.str.s, v->u.str.len); break;
    case JSON_ARRAY:
        sb_c(b, '[');
        for (size_t i = 0; i < v->u.arr.n; i++) {
            if (i) sb_c(b, ',');
            if (o->indent) sb_indent(b, o->indent, level + 1);
            ser(b, v->u.arr.items[i], o, level + 1);
        }
        if (o->indent && v->u.arr.n) sb_indent(b, o->indent, level);
        sb_c(b, ']');
        break;
    case JSON_OBJECT:
        sb_c(b, '{');
        for (size_t i = 0; i < v->u.obj.n; i++) {
            const json_member *m = &v->u.obj.m[o->sort_keys ? v->u.obj.sorted[i] : i];
            if (i) sb_c(b, ',');
            if (o->indent) sb_indent(b, o->indent, level + 1);
            sb_str(b, m->key, m->klen);
            sb_put(b, o->indent ? ": " : ":", o->indent ? 2 : 1);
            ser(b, m->val, o, level + 1);
        }
        if (o->indent && v->u.obj.n) sb_indent(b, o->indent, level);
        sb_c(b, '}');
        break;
    }
}

int json_serialize(const json *v, const json_write_opts *o, char **out, size_t *len, qerr *e) {
    json_write_opts def = {0, false};
    sbuf b = {0};
    ser(&b, v, o ? o : &def, 0);
    if (b.oom || !b.p) { free(b.p); return qerr_set(e, "JSON: out of memory while serializing"); }
    *out = b.p;
    if (len) *len = b.n;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* JSON Pointer */

const json *json_pointer_get(const json *root, const char *ptr, size_t n) {
    const json *cur = root;
    size_t i = 0;
    if (n == 0) return root;
    if (ptr[0] != '/') return NULL;
    char small[256];
    while (i < n) {
        i++; /* skip '/' */
        size_t st = i;
        while (i < n && ptr[i] != '/') i++;
        size_t sl = i - st;
        char *tok = sl < sizeof small ? small : malloc(sl + 1);
        if (!tok) return NULL;
        size_t tl = 0;
        bool bad = false;
        for (size_t k = st; k < i; k++) {
            if (ptr[k] == '~') {
                if (k + 1 < i && ptr[k + 1] == '0') tok[tl++] = '~';
                else if (k + 1 < i && ptr[k + 1] == '1') tok[tl++] = '/';
                else { bad = true; break; }
                k++;
            } else tok[tl++] = ptr[k];
        }
        tok[tl] = 0;
        const json *next = NULL;
        if (!bad) {
            if (json_is_object(cur)) next = json_getn(cur, tok, tl);
            else if (json_is_array(cur)) {
                bool ok = tl > 0 && tl < 19 && !(tok[0] == '0' && tl > 1);
                for (size_t k = 0; ok && k < tl; k++) ok = tok[k] >= '0' && tok[k] <= '9';
                if (ok) next = json_at(cur, (size_t)strtoull(tok, NULL, 10));
            }
        }
        if (tok != small) free(tok);
        if (!next) return NULL;
        cur = next;
    }
    return cur;
}
