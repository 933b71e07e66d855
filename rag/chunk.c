/* chunk.c — split a text into chunks under a token budget.
 *
 * The text is cut into blocks (paragraphs: blank-line separated; Markdown:
 * also a new block at every ATX heading line, and a heading always starts a
 * new chunk). A block over the budget is cut into sentences (after . ! ? and
 * closing quotes/brackets when whitespace follows, and at line breaks), a
 * sentence over the budget into runs of words, and a single word over the
 * budget into pieces at UTF-8 boundaries. The units are then packed greedily:
 * a chunk takes units while their token counts fit the budget; the next chunk
 * starts with the trailing units of the previous one that fit in `overlap`
 * tokens (never the whole previous chunk, so chunks always advance).
 * A chunk is [start of its first unit, end of its last unit): an exact byte
 * range of the input, with the original separators inside. */
#include <stdlib.h>
#include <string.h>

#include "rag.h"

typedef struct unit {
    size_t start, end;
    int tokens;
    bool section; /* Markdown heading: starts a new chunk */
} unit;

typedef struct ulist {
    unit *u;
    size_t n, cap;
    const chunk_opts *o;
    const char *text;
    int budget;
    bool oom;
} ulist;

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

int chunk_count_words(const char *text, size_t len, void *ctx) {
    (void)ctx;
    int n = 0;
    bool in = false;
    for (size_t i = 0; i < len; i++) {
        bool sp = is_space(text[i]);
        if (!sp && !in) n++;
        in = !sp;
    }
    return n;
}

static int count(const ulist *L, size_t s, size_t e) {
    if (e <= s) return 0;
    return L->o->count ? L->o->count(L->text + s, e - s, L->o->count_ctx) : chunk_count_words(L->text + s, e - s, NULL);
}

static void push(ulist *L, size_t s, size_t e, int tokens, bool section) {
    if (L->oom) return;
    if (L->n == L->cap) {
        size_t nc = L->cap ? L->cap * 2 : 64;
        unit *nu = realloc(L->u, nc * sizeof *nu);
        if (!nu) { L->oom = true; return; }
        L->u = nu;
        L->cap = nc;
    }
    L->u[L->n++] = (unit){s, e, tokens, section};
}

/* Trims whitespace from [*s, *e). */
static void trim(const char *t, size_t *s, size_t *e) {
    while (*s < *e && is_space(t[*s])) (*s)++;
    while (*e > *s && is_space(t[*e - 1])) (*e)--;
}

/* A word longer than the budget: pieces at UTF-8 boundaries. */
static void split_word(ulist *L, size_t s, size_t e, int tokens, bool section) {
    size_t len = e - s;
    size_t piece = (size_t)((double)len * L->budget / tokens * 0.9);
    if (piece < 1) piece = 1;
    while (s < e) {
        size_t p = s + piece < e ? s + piece : e;
        while (p < e && p > s + 1 && ((unsigned char)L->text[p] & 0xC0) == 0x80) p--;
        int t = count(L, s, p);
        while (t > L->budget && p - s > 1) { /* shrink until it fits */
            size_t np = s + (p - s) / 2;
            while (np > s + 1 && ((unsigned char)L->text[np] & 0xC0) == 0x80) np--;
            p = np;
            t = count(L, s, p);
        }
        push(L, s, p, t, section);
        section = false;
        s = p;
    }
}

/* A sentence longer than the budget: runs of whole words. */
static void split_words(ulist *L, size_t s, size_t e, bool section) {
    size_t i = s, run_s = 0, run_e = 0;
    int run_t = 0;
    bool have = false;
    while (i < e) {
        while (i < e && is_space(L->text[i])) i++;
        if (i >= e) break;
        size_t ws = i;
        while (i < e && !is_space(L->text[i])) i++;
        int t = count(L, ws, i);
        if (t > L->budget) {
            if (have) { push(L, run_s, run_e, run_t, section); section = false; have = false; }
            split_word(L, ws, i, t, section);
            section = false;
            continue;
        }
        if (have && run_t + t > L->budget) { push(L, run_s, run_e, run_t, section); section = false; have = false; }
        if (!have) { run_s = ws; run_t = 0; have = true; }
        run_t += t;
        run_e = i;
    }
    if (have) push(L, run_s, run_e, run_t, section);
}

static bool sentence_end(const char *t, size_t i, size_t e, size_t *next) {
    char c = t[i];
    if (c == '\n') { *next = i + 1; return true; }
    if (c != '.' && c != '!' && c != '?') return false;
    size_t j = i + 1;
    while (j < e && (t[j] == '"' || t[j] == '\'' || t[j] == ')' || t[j] == ']' || t[j] == '.' || t[j] == '!' || t[j] == '?')) j++;
    if (j < e && !is_space(t[j])) return false;
    *next = j;
    return true;
}

static void split_block(ulist *L, size_t s, size_t e, bool section) {
    trim(L->text, &s, &e);
    if (s >= e) return;
    int t = count(L, s, e);
    if (t <= L->budget) { push(L, s, e, t, section); return; }
    size_t i = s, ss = s;
    while (i < e) {
        size_t next;
        if (sentence_end(L->text, i, e, &next)) {
            size_t a = ss, b = next;
            trim(L->text, &a, &b);
            if (a < b) {
                int st = count(L, a, b);
                if (st <= L->budget) push(L, a, b, st, section);
                else split_words(L, a, b, section);
                section = false;
            }
            ss = i = next;
        } else i++;
    }
    size_t a = ss, b = e;
    trim(L->text, &a, &b);
    if (a < b) {
        int st = count(L, a, b);
        if (st <= L->budget) push(L, a, b, st, section);
        else split_words(L, a, b, section);
    }
}

static bool heading_at(const char *t, size_t i, size_t n) {
    size_t j = i, h = 0;
    while (j < n && t[j] == '#' && h < 7) { j++; h++; }
    return h >= 1 && h <= 6 && (j == n || t[j] == ' ' || t[j] == '\t' || t[j] == '\n');
}

int chunk_text(const char *text, size_t len, const chunk_opts *o, chunk_span **spans, size_t *n_out, qerr *e) {
    *spans = NULL;
    *n_out = 0;
    if (o->max_tokens <= 0) return qerr_set(e, "chunk: token budget must be positive");
    if (o->overlap < 0 || o->overlap >= o->max_tokens) return qerr_set(e, "chunk: overlap must be in [0, budget)");
    ulist L = {.o = o, .text = text, .budget = o->max_tokens};
    /* blocks */
    size_t bs = 0, i = 0;
    bool sec = o->format == CHUNK_MARKDOWN && heading_at(text, 0, len);
    bool in_fence = false;
    while (i < len) {
        /* at a line start */
        size_t le = i;
        while (le < len && text[le] != '\n') le++;
        size_t k = i;
        while (k < le && (text[k] == ' ' || text[k] == '\t' || text[k] == '\r')) k++;
        bool blank = k == le;
        bool md = o->format == CHUNK_MARKDOWN;
        if (md && le - k >= 3 && memcmp(text + k, "```", 3) == 0) in_fence = !in_fence;
        if (blank && !in_fence) {
            split_block(&L, bs, i, sec);
            sec = false;
            bs = le < len ? le + 1 : le;
        } else if (md && !in_fence && i > bs && heading_at(text, i, len)) {
            split_block(&L, bs, i, sec);
            sec = true;
            bs = i;
        }
        i = le < len ? le + 1 : le;
    }
    split_block(&L, bs, len, sec);
    if (L.oom) { free(L.u); return qerr_set(e, "out of memory"); }
    /* pack */
    chunk_span *out = malloc((L.n + 1) * sizeof *out);
    if (!out) { free(L.u); return qerr_set(e, "out of memory"); }
    size_t nc = 0, u = 0;
    while (u < L.n) {
        size_t first = u;
        int t = 0;
        while (u < L.n && (u == first || (!L.u[u].section && t + L.u[u].tokens <= L.budget))) t += L.u[u++].tokens;
        out[nc++] = (chunk_span){L.u[first].start, L.u[u - 1].end};
        if (u >= L.n || o->overlap == 0 || L.u[u].section) continue;
        /* overlap: trailing units of this chunk, not all of it */
        size_t b = u;
        int ot = 0;
        while (b - 1 > first && ot + L.u[b - 1].tokens <= o->overlap && ot + L.u[b - 1].tokens + L.u[u].tokens <= L.budget) {
            ot += L.u[b - 1].tokens;
            b--;
        }
        u = b;
    }
    free(L.u);
    *spans = out;
    *n_out = nc;
    return 0;
}
