/* jsonl.c — a small strict JSON parser for JSONL lines (RFC 8259): no
 * trailing commas, no comments, no leading zeros, escapes and surrogate pairs
 * checked, raw control characters and invalid UTF-8 rejected, duplicate keys
 * rejected, depth limited. Every read is bounds-checked against len. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rag.h"

#define JSON_MAX_DEPTH 64

typedef struct jp {
    const char *s;
    size_t n, i;
    qerr *e;
} jp;

static int jp_fail(jp *p, const char *what) { return qerr_set(p->e, "JSON: %s at byte %zu", what, p->i); }

static void jp_ws(jp *p) {
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r')) p->i++;
}

void jsonl_free(jv *v) {
    if (!v) return;
    if (v->type == JV_STR) free(v->str);
    if (v->type == JV_ARR || v->type == JV_OBJ) {
        for (size_t i = 0; i < v->len; i++) {
            jsonl_free(&v->items[i]);
            if (v->keys) free(v->keys[i]);
        }
        free(v->items);
        free(v->keys);
    }
    memset(v, 0, sizeof *v);
}

/* Length of a valid UTF-8 sequence at s (n bytes available), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
    else return 0;
    if (n < len) return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[k] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return len;
}

static size_t put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | (cp >> 6 & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int hex4(jp *p, unsigned *out) {
    if (p->n - p->i < 4) return jp_fail(p, "truncated \\u escape");
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p->s[p->i + (size_t)k];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return jp_fail(p, "bad \\u escape");
    }
    p->i += 4;
    *out = v;
    return 0;
}

/* At the opening quote. Decoded output is never longer than the input. */
static int jp_string(jp *p, char **out, size_t *olen) {
    p->i++;
    size_t start = p->i;
    /* find the closing quote to size the buffer */
    size_t j = start;
    while (j < p->n && p->s[j] != '"') j += (p->s[j] == '\\' && j + 1 < p->n) ? 2 : 1;
    if (j >= p->n) return jp_fail(p, "unterminated string");
    char *o = malloc(j - start + 1);
    if (!o) return jp_fail(p, "out of memory");
    size_t k = 0;
    while (p->i < p->n) {
        unsigned char c = (unsigned char)p->s[p->i];
        if (c == '"') {
            p->i++;
            o[k] = 0;
            *out = o;
            *olen = k;
            return 0;
        }
        if (c < 0x20) { free(o); return jp_fail(p, "control character in string"); }
        if (c == '\\') {
            if (p->i + 1 >= p->n) break;
            char x = p->s[p->i + 1];
            p->i += 2;
            switch (x) {
            case '"': o[k++] = '"'; break;
            case '\\': o[k++] = '\\'; break;
            case '/': o[k++] = '/'; break;
            case 'b': o[k++] = '\b'; break;
            case 'f': o[k++] = '\f'; break;
            case 'n': o[k++] = '\n'; break;
            case 'r': o[k++] = '\r'; break;
            case 't': o[k++] = '\t'; break;
            case 'u': {
                unsigned cp;
                if (hex4(p, &cp)) { free(o); return -1; }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    unsigned lo;
                    if (p->n - p->i < 2 || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u') { free(o); return jp_fail(p, "lone high surrogate"); }
                    p->i += 2;
                    if (hex4(p, &lo)) { free(o); return -1; }
                    if (lo < 0xDC00 || lo > 0xDFFF) { free(o); return jp_fail(p, "bad low surrogate"); }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) { free(o); return jp_fail(p, "lone low surrogate"); }
                k += put_utf8(o + k, cp); /* \uXXXX (6 bytes) -> at most 3; pair (12) -> 4 */
                break;
            }
            default: free(o); p->i--; return jp_fail(p, "bad escape");
            }
            continue;
        }
        size_t l = utf8_seq((const unsigned char *)p->s + p->i, p->n - p->i);
        if (!l) { free(o); return jp_fail(p, "invalid UTF-8"); }
        memcpy(o + k, p->s + p->i, l);
        k += l;
        p->i += l;
    }
    free(o);
    return jp_fail(p, "unterminated string");
}

static int jp_number(jp *p, jv *v) {
    size_t st = p->i;
    if (p->i < p->n && p->s[p->i] == '-') p->i++;
    if (p->i >= p->n) return jp_fail(p, "bad number");
    if (p->s[p->i] == '0') p->i++;
    else if (p->s[p->i] >= '1' && p->s[p->i] <= '9') while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
    else return jp_fail(p, "bad number");
    if (p->i < p->n && p->s[p->i] == '.') {
        p->i++;
        size_t d = p->i;
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
        if (p->i == d) return jp_fail(p, "bad number fraction");
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        p->i++;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-')) p->i++;
        size_t d = p->i;
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
        if (p->i == d) return jp_fail(p, "bad number exponent");
    }
    char buf[64];
    size_t l = p->i - st;
    if (l >= sizeof buf) {
        /* long numbers: copy to the heap */
        char *h = malloc(l + 1);
        if (!h) return jp_fail(p, "out of memory");
        memcpy(h, p->s + st, l);
        h[l] = 0;
        v->num = strtod(h, NULL);
        free(h);
    } else {
        memcpy(buf, p->s + st, l);
        buf[l] = 0;
        v->num = strtod(buf, NULL);
    }
    if (!isfinite(v->num)) return jp_fail(p, "number out of range");
    v->type = JV_NUM;
    return 0;
}

static int jp_lit(jp *p, const char *w) {
    size_t l = strlen(w);
    if (p->n - p->i < l || memcmp(p->s + p->i, w, l) != 0) return jp_fail(p, "unexpected character");
    p->i += l;
    return 0;
}

static int jp_value(jp *p, jv *v, int depth) {
    memset(v, 0, sizeof *v);
    if (depth > JSON_MAX_DEPTH) return jp_fail(p, "nesting too deep");
    jp_ws(p);
    if (p->i >= p->n) return jp_fail(p, "unexpected end");
    char c = p->s[p->i];
    if (c == '"') {
        if (jp_string(p, &v->str, &v->len)) return -1;
        v->type = JV_STR;
        return 0;
    }
    if (c == 't') { if (jp_lit(p, "true")) return -1; v->type = JV_BOOL; v->b = true; return 0; }
    if (c == 'f') { if (jp_lit(p, "false")) return -1; v->type = JV_BOOL; return 0; }
    if (c == 'n') { if (jp_lit(p, "null")) return -1; v->type = JV_NULL; return 0; }
    if (c == '-' || (c >= '0' && c <= '9')) return jp_number(p, v);
    if (c != '[' && c != '{') return jp_fail(p, "unexpected character");
    bool obj = c == '{';
    v->type = obj ? JV_OBJ : JV_ARR;
    p->i++;
    size_t cap = 0;
    jp_ws(p);
    if (p->i < p->n && p->s[p->i] == (obj ? '}' : ']')) { p->i++; return 0; }
    for (;;) {
        if (v->len == cap) {
            size_t nc = cap ? cap * 2 : 4;
            jv *ni = realloc(v->items, nc * sizeof *ni);
            if (!ni) { jsonl_free(v); return jp_fail(p, "out of memory"); }
            v->items = ni;
            if (obj) {
                char **nk = realloc(v->keys, nc * sizeof *nk);
                if (!nk) { jsonl_free(v); return jp_fail(p, "out of memory"); }
                v->keys = nk;
            }
            cap = nc;
        }
        char *key = NULL;
        if (obj) {
            jp_ws(p);
            if (p->i >= p->n || p->s[p->i] != '"') { jsonl_free(v); return jp_fail(p, "expected a key"); }
            size_t kl;
            if (jp_string(p, &key, &kl)) { jsonl_free(v); return -1; }
            for (size_t k = 0; k < v->len; k++)
                if (strcmp(v->keys[k], key) == 0) { free(key); jsonl_free(v); return jp_fail(p, "duplicate key"); }
            jp_ws(p);
            if (p->i >= p->n || p->s[p->i] != ':') { free(key); jsonl_free(v); return jp_fail(p, "expected ':'"); }
            p->i++;
        }
        if (jp_value(p, &v->items[v->len], depth + 1)) { free(key); jsonl_free(v); return -1; }
        if (obj) v->keys[v->len] = key;
        v->len++;
        jp_ws(p);
        if (p->i >= p->n) { jsonl_free(v); return jp_fail(p, "unexpected end"); }
        if (p->s[p->i] == ',') { p->i++; continue; }
        if (p->s[p->i] == (obj ? '}' : ']')) { p->i++; return 0; }
        jsonl_free(v);
        return jp_fail(p, obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

int jsonl_parse(const char *s, size_t len, jv *out, qerr *e) {
    jp p = {s, len, 0, e};
    if (jp_value(&p, out, 0)) return -1;
    jp_ws(&p);
    if (p.i != p.n) { jsonl_free(out); return jp_fail(&p, "trailing characters"); }
    return 0;
}

const jv *jsonl_get(const jv *obj, const char *key) {
    if (!obj || obj->type != JV_OBJ) return NULL;
    for (size_t i = 0; i < obj->len; i++)
        if (strcmp(obj->keys[i], key) == 0) return &obj->items[i];
    return NULL;
}

bool jsonl_next_line(const char *buf, size_t len, size_t *pos, const char **line, size_t *line_len) {
    if (*pos >= len) return false;
    size_t st = *pos, en = st;
    while (en < len && buf[en] != '\n') en++;
    *pos = en < len ? en + 1 : en;
    size_t l = en - st;
    if (l > 0 && buf[st + l - 1] == '\r') l--;
    *line = buf + st;
    *line_len = l;
    return true;
}

typedef struct sbuf {
    char *b;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *s, const char *p, size_t n) {
    if (s->oom) return;
    if (s->n + n + 1 > s->cap) {
        size_t nc = (s->n + n + 1) * 2;
        char *nb = realloc(s->b, nc);
        if (!nb) { s->oom = true; return; }
        s->b = nb;
        s->cap = nc;
    }
    memcpy(s->b + s->n, p, n);
    s->n += n;
    s->b[s->n] = 0;
}

static void sb_str(sbuf *s, const char *p, size_t n) {
    sb_put(s, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        char esc[8];
        if (c == '"' || c == '\\') { esc[0] = '\\'; esc[1] = (char)c; sb_put(s, esc, 2); }
        else if (c < 0x20) { snprintf(esc, sizeof esc, "\\u%04x", c); sb_put(s, esc, 6); }
        else sb_put(s, p + i, 1);
    }
    sb_put(s, "\"", 1);
}

static void sb_val(sbuf *s, const jv *v) {
    char num[40];
    switch (v->type) {
    case JV_NULL: sb_put(s, "null", 4); break;
    case JV_BOOL: sb_put(s, v->b ? "true" : "false", v->b ? 4 : 5); break;
    case JV_NUM: {
        int l = snprintf(num, sizeof num, "%.17g", v->num);
        sb_put(s, num, (size_t)l);
        break;
    }
    case JV_STR: sb_str(s, v->str, v->len); break;
    default:
        sb_put(s, v->type == JV_OBJ ? "{" : "[", 1);
        for (size_t i = 0; i < v->len; i++) {
            if (i) sb_put(s, ",", 1);
            if (v->type == JV_OBJ) {
                sb_str(s, v->keys[i], strlen(v->keys[i]));
                sb_put(s, ":", 1);
            }
            sb_val(s, &v->items[i]);
        }
        sb_put(s, v->type == JV_OBJ ? "}" : "]", 1);
    }
}

int jsonl_dump(const jv *v, char **out, size_t *len, qerr *e) {
    sbuf s = {0};
    sb_val(&s, v);
    if (s.oom || !s.b) { free(s.b); return qerr_set(e, "out of memory"); }
    *out = s.b;
    if (len) *len = s.n;
    return 0;
}
