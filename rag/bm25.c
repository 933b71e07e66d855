/* bm25.c — inverted index with Lucene's BM25 and MaxScore top-k.
 *
 * Scoring (Lucene >= 8 BM25Similarity): per (field, term) clause
 *   weight = field_weight * query_count * idf,  idf = ln(1 + (N - df + 0.5)/(df + 0.5))
 *   score  = weight - weight / (1 + tf * ni),   ni = 1 / (k1 (1 - b + b dl/avgdl))
 * with N the field's document count, dl decoded from the 1-byte SmallFloat
 * norm (lossy, as Lucene stores it) and avgdl = total length / N (exact).
 * A query term repeated n times weighs n (Anserini's bag of words).
 *
 * Top-k (Turtle & Flood's MaxScore, document at a time): clauses sorted by
 * an upper bound of their score (max tf over the list, min length); the
 * cheapest clauses whose bounds sum to at most the current k-th score are
 * "non-essential": only documents found in the essential lists are
 * candidates, and non-essential lists are probed (galloping) only while the
 * candidate can still beat the threshold. Final scores are summed in clause
 * order, the same order as the exhaustive path, so both give bit-identical
 * results. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rag.h"

typedef struct plist {
    uint32_t *doc, *tf;
    uint32_t n, cap;
    uint32_t max_tf, min_dl;
} plist;

struct bm25 {
    bm25_params p;
    char **keys; /* field byte + term */
    uint32_t *klen;
    plist *lists;
    size_t n_terms, cap_terms;
    uint32_t *slots; /* open addressing: term index + 1 */
    size_t n_slots;
    uint32_t n_docs, cap_docs;
    uint8_t *norm[BM25_MAX_FIELDS];
    uint32_t *dl[BM25_MAX_FIELDS];
    uint64_t sum_len[BM25_MAX_FIELDS];
    uint32_t doc_count[BM25_MAX_FIELDS];
    uint8_t *deleted;
};

void bm25_params_default(bm25_params *p) {
    memset(p, 0, sizeof *p);
    p->k1 = 0.9f;
    p->b = 0.4f;
    p->n_fields = 1;
    for (int i = 0; i < BM25_MAX_FIELDS; i++) p->field_weight[i] = 1.0f;
}

/* Lucene SmallFloat: 4 significant bits, the first 24 values exact. */
static uint32_t long_to_int4(uint64_t i) {
    int bits = i ? 64 - __builtin_clzll(i) : 0;
    if (bits < 4) return (uint32_t)i;
    int shift = bits - 4;
    uint32_t enc = (uint32_t)(i >> shift) & 0x07;
    return enc | (uint32_t)(shift + 1) << 3;
}
static uint64_t int4_to_long(uint32_t i) {
    uint64_t bits = i & 0x07;
    int shift = (int)(i >> 3) - 1;
    return shift == -1 ? bits : (bits | 0x08) << shift;
}
#define NUM_FREE_VALUES 24 /* 255 - long_to_int4(INT32_MAX) */
uint8_t bm25_int_to_byte4(uint32_t i) {
    if (i > INT32_MAX) i = INT32_MAX;
    if (i < NUM_FREE_VALUES) return (uint8_t)i;
    return (uint8_t)(NUM_FREE_VALUES + long_to_int4(i - NUM_FREE_VALUES));
}
uint32_t bm25_byte4_to_int(uint8_t b) {
    if (b < NUM_FREE_VALUES) return b;
    return (uint32_t)(NUM_FREE_VALUES + int4_to_long((uint32_t)b - NUM_FREE_VALUES));
}

int bm25_new(bm25 **out, const bm25_params *p, qerr *e) {
    bm25 *x = calloc(1, sizeof *x);
    if (!x) return qerr_set(e, "out of memory");
    if (p) x->p = *p;
    else bm25_params_default(&x->p);
    if (x->p.n_fields < 1 || x->p.n_fields > BM25_MAX_FIELDS) { int nf = x->p.n_fields; free(x); return qerr_set(e, "bm25: bad field count %d", nf); }
    if (!(x->p.k1 >= 0) || !(x->p.b >= 0 && x->p.b <= 1)) { free(x); return qerr_set(e, "bm25: need k1 >= 0 and 0 <= b <= 1"); }
    *out = x;
    return 0;
}

void bm25_free(bm25 *x) {
    if (!x) return;
    for (size_t i = 0; i < x->n_terms; i++) {
        free(x->keys[i]);
        free(x->lists[i].doc);
        free(x->lists[i].tf);
    }
    free(x->keys);
    free(x->klen);
    free(x->lists);
    free(x->slots);
    for (int f = 0; f < BM25_MAX_FIELDS; f++) { free(x->norm[f]); free(x->dl[f]); }
    free(x->deleted);
    free(x);
}

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static int64_t term_find(const bm25 *x, const char *k, size_t n) {
    if (!x->n_slots) return -1;
    size_t m = x->n_slots - 1;
    for (size_t s = hash_bytes(k, n) & m;; s = (s + 1) & m) {
        uint32_t v = x->slots[s];
        if (!v) return -1;
        if (x->klen[v - 1] == n && memcmp(x->keys[v - 1], k, n) == 0) return v - 1;
    }
}

static int term_rehash(bm25 *x, size_t ns) {
    uint32_t *sl = calloc(ns, sizeof *sl);
    if (!sl) return -1;
    for (size_t t = 0; t < x->n_terms; t++) {
        size_t s = hash_bytes(x->keys[t], x->klen[t]) & (ns - 1);
        while (sl[s]) s = (s + 1) & (ns - 1);
        sl[s] = (uint32_t)t + 1;
    }
    free(x->slots);
    x->slots = sl;
    x->n_slots = ns;
    return 0;
}

static int64_t term_intern(bm25 *x, const char *k, size_t n) {
    int64_t t = term_find(x, k, n);
    if (t >= 0) return t;
    if ((x->n_terms + 1) * 2 > x->n_slots && term_rehash(x, x->n_slots ? x->n_slots * 2 : 1024)) return -1;
    if (x->n_terms == x->cap_terms) {
        size_t nc = x->cap_terms ? x->cap_terms * 2 : 1024;
        char **nk = realloc(x->keys, nc * sizeof *nk);
        if (!nk) return -1;
        x->keys = nk;
        uint32_t *nl = realloc(x->klen, nc * sizeof *nl);
        if (!nl) return -1;
        x->klen = nl;
        plist *np = realloc(x->lists, nc * sizeof *np);
        if (!np) return -1;
        x->lists = np;
        x->cap_terms = nc;
    }
    char *kc = malloc(n + 1);
    if (!kc) return -1;
    memcpy(kc, k, n);
    kc[n] = 0;
    t = (int64_t)x->n_terms++;
    x->keys[t] = kc;
    x->klen[t] = (uint32_t)n;
    memset(&x->lists[t], 0, sizeof x->lists[t]);
    x->lists[t].min_dl = UINT32_MAX;
    size_t s = hash_bytes(k, n) & (x->n_slots - 1);
    while (x->slots[s]) s = (s + 1) & (x->n_slots - 1);
    x->slots[s] = (uint32_t)t + 1;
    return t;
}

/* Terms of one field collected by the analyzer: keys are field byte + term. */
typedef struct termbuf {
    char *b;
    size_t n, cap;
    size_t *off; /* start of each key in b; lengths from the next offset */
    size_t n_terms, cap_terms;
    int field;
    bool oom;
} termbuf;

static void termbuf_emit(const char *t, size_t len, void *ctx) {
    termbuf *tb = ctx;
    if (tb->oom) return;
    if (tb->n + len + 1 > tb->cap) {
        size_t nc = (tb->cap + len + 1) * 2;
        char *nb = realloc(tb->b, nc);
        if (!nb) { tb->oom = true; return; }
        tb->b = nb;
        tb->cap = nc;
    }
    if (tb->n_terms + 2 > tb->cap_terms) {
        size_t nc = (tb->cap_terms + 2) * 2;
        size_t *no = realloc(tb->off, nc * sizeof *no);
        if (!no) { tb->oom = true; return; }
        tb->off = no;
        tb->cap_terms = nc;
    }
    tb->off[tb->n_terms++] = tb->n;
    tb->b[tb->n++] = (char)tb->field;
    memcpy(tb->b + tb->n, t, len);
    tb->n += len;
    tb->off[tb->n_terms] = tb->n;
}

static int cmp_term(const void *a, const void *b, void *ctx) {
    const termbuf *sort_tb = ctx;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    size_t li = sort_tb->off[i + 1] - sort_tb->off[i], lj = sort_tb->off[j + 1] - sort_tb->off[j];
    int c = memcmp(sort_tb->b + sort_tb->off[i], sort_tb->b + sort_tb->off[j], li < lj ? li : lj);
    if (c) return c;
    return li < lj ? -1 : li > lj;
}

static int plist_push(plist *l, uint32_t doc, uint32_t tf, uint32_t dl) {
    if (l->n == l->cap) {
        uint32_t nc = l->cap ? l->cap * 2 : 4;
        uint32_t *nd = realloc(l->doc, nc * sizeof *nd);
        if (!nd) return -1;
        l->doc = nd;
        uint32_t *nt = realloc(l->tf, nc * sizeof *nt);
        if (!nt) return -1;
        l->tf = nt;
        l->cap = nc;
    }
    l->doc[l->n] = doc;
    l->tf[l->n++] = tf;
    if (tf > l->max_tf) l->max_tf = tf;
    if (dl < l->min_dl) l->min_dl = dl;
    return 0;
}

int bm25_add(bm25 *x, analyzer *a, const char *const *fields, const size_t *lens, uint32_t *id, qerr *e) {
    if (x->n_docs == UINT32_MAX) return qerr_set(e, "bm25: too many documents");
    if (x->n_docs == x->cap_docs) {
        uint32_t nc = x->cap_docs ? x->cap_docs * 2 : 1024;
        for (int f = 0; f < x->p.n_fields; f++) {
            uint8_t *nn = realloc(x->norm[f], nc);
            if (!nn) return qerr_set(e, "out of memory");
            x->norm[f] = nn;
            uint32_t *nd = realloc(x->dl[f], nc * sizeof *nd);
            if (!nd) return qerr_set(e, "out of memory");
            x->dl[f] = nd;
        }
        uint8_t *dd = realloc(x->deleted, nc);
        if (!dd) return qerr_set(e, "out of memory");
        x->deleted = dd;
        x->cap_docs = nc;
    }
    uint32_t d = x->n_docs;
    termbuf tb = {0};
    size_t *idx = NULL;
    int rc = 0;
    for (int f = 0; f < x->p.n_fields && rc == 0; f++) {
        tb.n = 0;
        tb.n_terms = 0;
        tb.field = f;
        if (fields[f] && lens[f]) analyzer_run(a, fields[f], lens[f], termbuf_emit, &tb);
        if (tb.oom) { rc = qerr_set(e, "out of memory"); break; }
        uint32_t dl = (uint32_t)tb.n_terms;
        x->dl[f][d] = dl;
        x->norm[f][d] = bm25_int_to_byte4(dl);
        if (!dl) continue;
        x->sum_len[f] += dl;
        x->doc_count[f]++;
        size_t *ni = realloc(idx, tb.n_terms * sizeof *ni);
        if (!ni) { rc = qerr_set(e, "out of memory"); break; }
        idx = ni;
        for (size_t i = 0; i < tb.n_terms; i++) idx[i] = i;
        qsort_r(idx, tb.n_terms, sizeof *idx, cmp_term, &tb);
        for (size_t i = 0; i < tb.n_terms;) {
            size_t j = i + 1;
            while (j < tb.n_terms && cmp_term(&idx[i], &idx[j], &tb) == 0) j++;
            size_t o = tb.off[idx[i]];
            int64_t t = term_intern(x, tb.b + o, tb.off[idx[i] + 1] - o);
            if (t < 0 || plist_push(&x->lists[t], d, (uint32_t)(j - i), dl)) { rc = qerr_set(e, "out of memory"); break; }
            i = j;
        }
    }
    free(idx);
    free(tb.b);
    free(tb.off);
    if (rc) {
        /* roll back postings already added for d */
        for (size_t t = 0; t < x->n_terms; t++)
            if (x->lists[t].n && x->lists[t].doc[x->lists[t].n - 1] == d) x->lists[t].n--;
        return rc;
    }
    x->deleted[d] = 0;
    x->n_docs++;
    if (id) *id = d;
    return 0;
}

void bm25_delete(bm25 *x, uint32_t id) {
    if (id < x->n_docs) x->deleted[id] = 1;
}
bool bm25_is_deleted(const bm25 *x, uint32_t id) { return id >= x->n_docs || x->deleted[id]; }
uint32_t bm25_count(const bm25 *x) { return x->n_docs; }

/* ------------------------------------------------------------------------ */
/* Search. */
typedef struct clause {
    const plist *l;
    int field;
    float w;
    double ub;
    uint32_t pos;
} clause;

/* In single precision, operation by operation, as Lucene's BM25Scorer:
 * weight - weight / (1 + freq * normInverse). */
static float clause_score(const bm25 *x, const float *cache, const clause *c, uint32_t doc, uint32_t tf, float avgdl) {
    float ni;
    if (x->p.exact_norms)
        ni = 1.0f / (x->p.k1 * ((1 - x->p.b) + x->p.b * (float)x->dl[c->field][doc] / avgdl));
    else ni = cache[x->norm[c->field][doc]];
    float t = (float)tf * ni;
    float den = 1.0f + t;
    return c->w - c->w / den;
}

/* Heap of the k best so far; root is the worst. */
static bool worse(const bm25_hit *a, const bm25_hit *b) { return a->score < b->score || (a->score == b->score && a->id > b->id); }
static void heap_push(bm25_hit *h, int *n, int k, bm25_hit v) {
    if (*n < k) {
        int i = (*n)++;
        h[i] = v;
        while (i > 0) {
            int p = (i - 1) / 2;
            if (!worse(&h[i], &h[p])) break;
            bm25_hit t = h[i]; h[i] = h[p]; h[p] = t;
            i = p;
        }
        return;
    }
    if (!worse(&h[0], &v)) return;
    h[0] = v;
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && worse(&h[l], &h[m])) m = l;
        if (r < *n && worse(&h[r], &h[m])) m = r;
        if (m == i) break;
        bm25_hit t = h[i]; h[i] = h[m]; h[m] = t;
        i = m;
    }
}
static int cmp_hit(const void *a, const void *b) {
    const bm25_hit *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* First position >= pos whose doc >= target (galloping). */
static uint32_t gallop(const plist *l, uint32_t pos, uint32_t target) {
    if (pos >= l->n || l->doc[pos] >= target) return pos;
    uint32_t step = 1, lo = pos, hi;
    for (;;) {
        hi = lo + step;
        if (hi >= l->n) { hi = l->n; break; }
        if (l->doc[hi] >= target) break;
        lo = hi;
        step *= 2;
    }
    /* l->doc[lo] < target; answer in (lo, hi] */
    while (lo + 1 < hi) {
        uint32_t m = lo + (hi - lo) / 2;
        if (l->doc[m] >= target) hi = m;
        else lo = m;
    }
    return hi;
}

static int cmp_clause_ub(const void *a, const void *b, void *ctx) {
    const clause *sort_cl = ctx;
    const clause *x = &sort_cl[*(const int *)a], *y = &sort_cl[*(const int *)b];
    if (x->ub != y->ub) return x->ub < y->ub ? -1 : 1;
    return *(const int *)a - *(const int *)b;
}

int bm25_search(const bm25 *x, analyzer *a, const char *query, size_t qlen, int k, bm25_filter_fn filter, void *fctx,
                bool exhaustive, bm25_hit *out, int *n_out, bm25_stats *stats, qerr *e) {
    *n_out = 0;
    bm25_stats st = {0};
    if (k <= 0) { if (stats) *stats = st; return 0; }
    termbuf tb = {0};
    double ta = q_now();
    analyzer_run(a, query, qlen, termbuf_emit, &tb);
    st.t_analyze = q_now() - ta;
    if (tb.oom) { free(tb.b); free(tb.off); return qerr_set(e, "out of memory"); }
    /* unique terms in first-occurrence order, with counts */
    int nq = 0;
    size_t *uo = malloc((tb.n_terms + 1) * sizeof *uo);
    int *cnt = calloc(tb.n_terms + 1, sizeof *cnt);
    clause *cl = malloc(((size_t)x->p.n_fields * tb.n_terms + 1) * sizeof *cl);
    int *ord = malloc(((size_t)x->p.n_fields * tb.n_terms + 1) * sizeof *ord);
    bm25_hit *heap = malloc((size_t)k * sizeof *heap);
    if (!uo || !cnt || !cl || !ord || !heap) {
        free(tb.b); free(tb.off); free(uo); free(cnt); free(cl); free(ord); free(heap);
        return qerr_set(e, "out of memory");
    }
    for (size_t i = 0; i < tb.n_terms; i++) {
        size_t li = tb.off[i + 1] - tb.off[i] - 1;
        const char *ti = tb.b + tb.off[i] + 1;
        int found = -1;
        for (int j = 0; j < nq; j++) {
            size_t lj = tb.off[uo[j] + 1] - tb.off[uo[j]] - 1;
            if (lj == li && memcmp(tb.b + tb.off[uo[j]] + 1, ti, li) == 0) { found = j; break; }
        }
        if (found < 0) { uo[nq] = i; cnt[nq++] = 1; }
        else cnt[found]++;
    }
    float cache[BM25_MAX_FIELDS][256], avgdl[BM25_MAX_FIELDS];
    for (int f = 0; f < x->p.n_fields; f++) {
        avgdl[f] = x->doc_count[f] ? (float)((double)x->sum_len[f] / x->doc_count[f]) : 1.0f;
        for (int i = 0; i < 256; i++)
            cache[f][i] = 1.0f / (x->p.k1 * ((1 - x->p.b) + x->p.b * (float)bm25_byte4_to_int((uint8_t)i) / avgdl[f]));
    }
    int m = 0;
    char key[4 * 255 + 8];
    for (int f = 0; f < x->p.n_fields; f++) {
        for (int j = 0; j < nq; j++) {
            size_t lj = tb.off[uo[j] + 1] - tb.off[uo[j]] - 1;
            if (lj + 1 > sizeof key) continue;
            key[0] = (char)f;
            memcpy(key + 1, tb.b + tb.off[uo[j]] + 1, lj);
            int64_t t = term_find(x, key, lj + 1);
            if (t < 0 || x->lists[t].n == 0) continue;
            const plist *l = &x->lists[t];
            double N = x->doc_count[f], df = l->n;
            float idf = (float)log(1 + (N - df + 0.5) / (df + 0.5));
            clause *c = &cl[m++];
            c->l = l;
            c->field = f;
            c->w = x->p.field_weight[f] * (float)cnt[j] * idf;
            c->pos = 0;
            double ni = x->p.exact_norms
                            ? 1.0 / (x->p.k1 * ((1 - x->p.b) + x->p.b * (double)l->min_dl / avgdl[f]))
                            : cache[f][bm25_int_to_byte4(l->min_dl)];
            c->ub = (c->w - c->w / (1.0 + l->max_tf * ni)) * (1 + 1e-5) + 1e-6;
        }
    }
    st.n_clauses = m;
    int nh = 0;
    if (exhaustive) {
        double *acc = calloc(x->n_docs ? x->n_docs : 1, sizeof *acc); /* Lucene sums clause scores in double */
        uint8_t *hit = calloc(x->n_docs ? x->n_docs : 1, 1);
        if (!acc || !hit) {
            free(acc); free(hit);
            free(tb.b); free(tb.off); free(uo); free(cnt); free(cl); free(ord); free(heap);
            return qerr_set(e, "out of memory");
        }
        for (int c = 0; c < m; c++)
            for (uint32_t i = 0; i < cl[c].l->n; i++) {
                uint32_t d = cl[c].l->doc[i];
                acc[d] += clause_score(x, cache[cl[c].field], &cl[c], d, cl[c].l->tf[i], avgdl[cl[c].field]);
                hit[d] = 1;
            }
        for (uint32_t d = 0; d < x->n_docs; d++) {
            if (!hit[d] || x->deleted[d]) continue;
            st.n_scored++;
            if (filter && !filter(d, fctx)) { st.n_filtered++; continue; }
            heap_push(heap, &nh, k, (bm25_hit){d, (float)acc[d]});
        }
        free(acc);
        free(hit);
    } else if (m > 0 && m <= 64) {
        /* Windowed MaxScore (as Lucene's MaxScoreBulkScorer): essential
         * lists are scored term-at-a-time into a window of WIN documents;
         * each touched document then probes the non-essential lists while
         * its bound can still beat the k-th score. */
        enum { WIN = 2048 };
        for (int i = 0; i < m; i++) ord[i] = i;
        qsort_r(ord, (size_t)m, sizeof *ord, cmp_clause_ub, cl);
        double cum[64];
        double s = 0;
        for (int i = 0; i < m; i++) { s += cl[ord[i]].ub; cum[i] = s; }
        uint64_t *has = malloc(WIN * sizeof *has);
        float *sc = malloc((size_t)m * WIN * sizeof *sc);
        if (!has || !sc) {
            free(has); free(sc);
            free(tb.b); free(tb.off); free(uo); free(cnt); free(cl); free(ord); free(heap);
            return qerr_set(e, "out of memory");
        }
        double theta = -1;
        int first_ess = 0;
        for (uint32_t base = 0; base < x->n_docs && first_ess < m; base += WIN) {
            uint32_t end = x->n_docs - base > WIN ? base + WIN : x->n_docs;
            int fe = first_ess;
            memset(has, 0, (size_t)(end - base) * sizeof *has);
            for (int i = fe; i < m; i++) {
                int c = ord[i];
                clause *cc = &cl[c];
                const plist *l = cc->l;
                uint32_t p = cc->pos;
                while (p < l->n && l->doc[p] < end) {
                    uint32_t d = l->doc[p], j = d - base;
                    sc[(size_t)c * WIN + j] = clause_score(x, cache[cc->field], cc, d, l->tf[p], avgdl[cc->field]);
                    has[j] |= 1ull << c;
                    p++;
                }
                cc->pos = p;
            }
            for (uint32_t j = 0; j < end - base; j++) {
                if (!has[j]) continue;
                uint32_t d = base + j;
                if (x->deleted[d]) continue;
                double partial = 0;
                for (uint64_t b = has[j]; b; b &= b - 1) partial += sc[(size_t)__builtin_ctzll(b) * WIN + j];
                bool pruned = false;
                for (int i = fe - 1; i >= 0; i--) {
                    if (nh == k && (partial + cum[i]) * (1 + 1e-6) <= theta) { pruned = true; break; }
                    int c = ord[i];
                    clause *cc = &cl[c];
                    cc->pos = gallop(cc->l, cc->pos, d);
                    if (cc->pos < cc->l->n && cc->l->doc[cc->pos] == d) {
                        float v = clause_score(x, cache[cc->field], cc, d, cc->l->tf[cc->pos], avgdl[cc->field]);
                        sc[(size_t)c * WIN + j] = v;
                        has[j] |= 1ull << c;
                        partial += v;
                    }
                }
                if (pruned) continue;
                double total = 0; /* clause order, as the exhaustive path; double, as Lucene */
                for (uint64_t b = has[j]; b; b &= b - 1) total += sc[(size_t)__builtin_ctzll(b) * WIN + j];
                st.n_scored++;
                bm25_hit v = {d, (float)total};
                if (nh == k && !worse(&heap[0], &v)) continue;
                if (filter && !filter(d, fctx)) { st.n_filtered++; continue; }
                heap_push(heap, &nh, k, v);
                if (nh == k) {
                    theta = heap[0].score;
                    while (first_ess < m && cum[first_ess] * (1 + 1e-6) <= theta) first_ess++;
                }
            }
        }
        free(has);
        free(sc);
    } else if (m > 0) {
        for (int i = 0; i < m; i++) ord[i] = i;
        qsort_r(ord, (size_t)m, sizeof *ord, cmp_clause_ub, cl);
        double cum[BM25_MAX_FIELDS * 512 + 1];
        double *cump = (size_t)m <= sizeof cum / sizeof *cum ? cum : malloc((size_t)m * sizeof *cump);
        float *sc = calloc((size_t)m, sizeof *sc);
        uint8_t *has = calloc((size_t)m, 1);
        if (!cump || !sc || !has) {
            if (cump != cum) free(cump);
            free(sc); free(has);
            free(tb.b); free(tb.off); free(uo); free(cnt); free(cl); free(ord); free(heap);
            return qerr_set(e, "out of memory");
        }
        double s = 0;
        for (int i = 0; i < m; i++) { s += cl[ord[i]].ub; cump[i] = s; }
        double theta = -1;
        int first_ess = 0;
        for (;;) {
            uint32_t cand = UINT32_MAX;
            for (int i = first_ess; i < m; i++) {
                clause *c = &cl[ord[i]];
                if (c->pos < c->l->n && c->l->doc[c->pos] < cand) cand = c->l->doc[c->pos];
            }
            if (cand == UINT32_MAX) break;
            double partial = 0;
            for (int i = first_ess; i < m; i++) {
                clause *c = &cl[ord[i]];
                if (c->pos < c->l->n && c->l->doc[c->pos] == cand) {
                    if (!x->deleted[cand]) {
                        sc[ord[i]] = clause_score(x, cache[c->field], c, cand, c->l->tf[c->pos], avgdl[c->field]);
                        has[ord[i]] = 1;
                        partial += sc[ord[i]];
                    }
                    c->pos++;
                }
            }
            bool pruned = x->deleted[cand] != 0;
            for (int i = first_ess - 1; i >= 0 && !pruned; i--) {
                if (nh == k && (partial + cump[i]) * (1 + 1e-6) <= theta) { pruned = true; break; }
                clause *c = &cl[ord[i]];
                c->pos = gallop(c->l, c->pos, cand);
                if (c->pos < c->l->n && c->l->doc[c->pos] == cand) {
                    sc[ord[i]] = clause_score(x, cache[c->field], c, cand, c->l->tf[c->pos], avgdl[c->field]);
                    has[ord[i]] = 1;
                    partial += sc[ord[i]];
                }
            }
            if (!pruned) {
                double total = 0;
                for (int c = 0; c < m; c++)
                    if (has[c]) total += sc[c];
                st.n_scored++;
                bm25_hit v = {cand, (float)total};
                if (nh < k || worse(&heap[0], &v)) {
                    if (filter && !filter(cand, fctx)) st.n_filtered++;
                    else {
                        heap_push(heap, &nh, k, v);
                        if (nh == k) {
                            theta = heap[0].score;
                            while (first_ess < m && cump[first_ess] * (1 + 1e-6) <= theta) first_ess++;
                        }
                    }
                }
            }
            memset(has, 0, (size_t)m);
        }
        if (cump != cum) free(cump);
        free(sc);
        free(has);
    }
    qsort(heap, (size_t)nh, sizeof *heap, cmp_hit);
    memcpy(out, heap, (size_t)nh * sizeof *heap);
    *n_out = nh;
    if (stats) *stats = st;
    free(tb.b); free(tb.off); free(uo); free(cnt); free(cl); free(ord); free(heap);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Persistence ("QBM25" format, little-endian hosts like the rest of Quire):
 *   "QBM25\0\0\0" u32 version=1, u32 analyzer version (ANALYZER_VERSION), u32 n_fields, f32 k1, b, f32 weight[4],
 *   u32 exact_norms, u32 n_docs, u64 n_terms,
 *   per field: u64 sum_len, u32 doc_count, u8 norm[n_docs], u32 dl[n_docs],
 *   per term: u32 key length, key bytes (field byte + term), u32 n,
 *             u32 doc[n] (ascending), u32 tf[n],
 *   u32 CRC32C of everything before.
 * Deleted documents are dropped and the others renumbered densely in id
 * order; terms are written in the order a rebuild from the live documents
 * would intern them (first document, then key), so saving an index and
 * rebuilding it from the same documents give identical bytes. */
#define BM25_MAGIC "QBM25\0\0\0"
#define BM25_FILE_VERSION 1u

typedef struct bw {
    uint8_t *p;
    size_t n, cap;
    bool oom;
} bw;

static void bw_put(bw *w, const void *d, size_t n) {
    if (w->oom || !n) return;
    if (w->n + n > w->cap) {
        size_t nc = (w->n + n) * 2 + 4096;
        uint8_t *np = realloc(w->p, nc);
        if (!np) { w->oom = true; return; }
        w->p = np;
        w->cap = nc;
    }
    memcpy(w->p + w->n, d, n);
    w->n += n;
}
static void bw_u32(bw *w, uint32_t v) { bw_put(w, &v, 4); }

typedef struct tord {
    uint32_t first; /* first live document (new id) */
    uint32_t t;
} tord;

static int cmp_tord(const void *a, const void *b, void *ctx) {
    const bm25 *x = ctx;
    const tord *p = a, *q = b;
    if (p->first != q->first) return p->first < q->first ? -1 : 1;
    uint32_t lp = x->klen[p->t], lq = x->klen[q->t];
    int c = memcmp(x->keys[p->t], x->keys[q->t], lp < lq ? lp : lq);
    if (c) return c;
    return lp < lq ? -1 : lp > lq;
}

int bm25_save_buf(const bm25 *x, uint8_t **out, size_t *out_len, qerr *e) {
    *out = NULL;
    *out_len = 0;
    uint32_t *nid = malloc(((size_t)x->n_docs + 1) * sizeof *nid);
    tord *ord = malloc((x->n_terms + 1) * sizeof *ord);
    if (!nid || !ord) { free(nid); free(ord); return qerr_set(e, "bm25 save: out of memory"); }
    uint32_t live = 0;
    for (uint32_t d = 0; d < x->n_docs; d++) nid[d] = x->deleted[d] ? UINT32_MAX : live++;
    size_t nt = 0;
    for (size_t t = 0; t < x->n_terms; t++) {
        const plist *l = &x->lists[t];
        for (uint32_t j = 0; j < l->n; j++)
            if (nid[l->doc[j]] != UINT32_MAX) { ord[nt++] = (tord){nid[l->doc[j]], (uint32_t)t}; break; }
    }
    qsort_r(ord, nt, sizeof *ord, cmp_tord, (void *)x);
    bw w = {0};
    bw_put(&w, BM25_MAGIC, 8);
    bw_u32(&w, BM25_FILE_VERSION);
    bw_u32(&w, ANALYZER_VERSION);
    bw_u32(&w, (uint32_t)x->p.n_fields);
    bw_put(&w, &x->p.k1, 4);
    bw_put(&w, &x->p.b, 4);
    bw_put(&w, x->p.field_weight, sizeof x->p.field_weight);
    bw_u32(&w, x->p.exact_norms);
    bw_u32(&w, live);
    uint64_t nt64 = nt;
    bw_put(&w, &nt64, 8);
    for (int f = 0; f < x->p.n_fields; f++) {
        uint64_t sum = 0;
        uint32_t cnt = 0;
        for (uint32_t d = 0; d < x->n_docs; d++)
            if (nid[d] != UINT32_MAX && x->dl[f][d]) { sum += x->dl[f][d]; cnt++; }
        bw_put(&w, &sum, 8);
        bw_u32(&w, cnt);
        for (uint32_t d = 0; d < x->n_docs; d++)
            if (nid[d] != UINT32_MAX) bw_put(&w, &x->norm[f][d], 1);
        for (uint32_t d = 0; d < x->n_docs; d++)
            if (nid[d] != UINT32_MAX) bw_u32(&w, x->dl[f][d]);
    }
    for (size_t i = 0; i < nt && !w.oom; i++) {
        const plist *l = &x->lists[ord[i].t];
        bw_u32(&w, x->klen[ord[i].t]);
        bw_put(&w, x->keys[ord[i].t], x->klen[ord[i].t]);
        uint32_t n = 0;
        for (uint32_t j = 0; j < l->n; j++) n += nid[l->doc[j]] != UINT32_MAX;
        bw_u32(&w, n);
        for (uint32_t j = 0; j < l->n; j++)
            if (nid[l->doc[j]] != UINT32_MAX) bw_u32(&w, nid[l->doc[j]]);
        for (uint32_t j = 0; j < l->n; j++)
            if (nid[l->doc[j]] != UINT32_MAX) bw_u32(&w, l->tf[j]);
    }
    free(nid);
    free(ord);
    if (!w.oom) bw_u32(&w, q_crc32c(0, w.p, w.n));
    if (w.oom) { free(w.p); return qerr_set(e, "bm25 save: out of memory"); }
    *out = w.p;
    *out_len = w.n;
    return 0;
}

typedef struct br {
    const uint8_t *p;
    size_t n, off;
} br;

static bool br_get(br *b, void *d, size_t n) {
    if (n > b->n - b->off) return false;
    if (n) memcpy(d, b->p + b->off, n);
    b->off += n;
    return true;
}

int bm25_load_memory(bm25 **out, const void *buf, size_t len, qerr *e) {
    *out = NULL;
    const uint8_t *p = buf;
    if (len < 12 || memcmp(p, BM25_MAGIC, 8) != 0) return qerr_set(e, "bm25 load: not a BM25 index (bad magic)");
    uint32_t crc;
    memcpy(&crc, p + len - 4, 4);
    if (crc != q_crc32c(0, p, len - 4)) return qerr_set(e, "bm25 load: checksum mismatch (file is corrupt)");
    br b = {p, len - 4, 8};
    uint32_t ver, aver, nf, exact, n_docs;
    uint64_t nt;
    bm25_params bp;
    bm25_params_default(&bp);
    if (!br_get(&b, &ver, 4)) return qerr_set(e, "bm25 load: truncated header");
    if (ver != BM25_FILE_VERSION) return qerr_set(e, "bm25 load: unsupported version %u", ver);
    if (!br_get(&b, &aver, 4)) return qerr_set(e, "bm25 load: truncated header");
    if (aver != ANALYZER_VERSION)
        return qerr_set(e, "bm25 load: made by analyzer version %u, this is version %u (rebuild it from the documents)", aver,
                        ANALYZER_VERSION);
    if (!br_get(&b, &nf, 4) || !br_get(&b, &bp.k1, 4) || !br_get(&b, &bp.b, 4) ||
        !br_get(&b, bp.field_weight, sizeof bp.field_weight) || !br_get(&b, &exact, 4) || !br_get(&b, &n_docs, 4) ||
        !br_get(&b, &nt, 8))
        return qerr_set(e, "bm25 load: truncated header");
    if (nf < 1 || nf > BM25_MAX_FIELDS || exact > 1 || n_docs > len || nt > len)
        return qerr_set(e, "bm25 load: bad header");
    bp.n_fields = (int)nf;
    bp.exact_norms = exact != 0;
    bm25 *x;
    if (bm25_new(&x, &bp, e)) return qerr_wrap(e, "bm25 load");
    const char *what = NULL;
    x->cap_docs = n_docs ? n_docs : 1;
    x->deleted = calloc(x->cap_docs, 1);
    if (!x->deleted) what = "out of memory";
    for (uint32_t f = 0; f < nf && !what; f++) {
        x->norm[f] = malloc(x->cap_docs);
        x->dl[f] = malloc(x->cap_docs * sizeof(uint32_t));
        if (!x->norm[f] || !x->dl[f]) { what = "out of memory"; break; }
        if (!br_get(&b, &x->sum_len[f], 8) || !br_get(&b, &x->doc_count[f], 4) || !br_get(&b, x->norm[f], n_docs) ||
            !br_get(&b, x->dl[f], (size_t)n_docs * 4)) { what = "truncated document lengths"; break; }
        uint64_t sum = 0;
        uint32_t cnt = 0;
        for (uint32_t d = 0; d < n_docs && !what; d++) {
            if (x->norm[f][d] != bm25_int_to_byte4(x->dl[f][d])) what = "length norm does not match the length";
            sum += x->dl[f][d];
            cnt += x->dl[f][d] != 0;
        }
        if (!what && (sum != x->sum_len[f] || cnt != x->doc_count[f])) what = "field statistics do not match the lengths";
    }
    x->n_docs = n_docs;
    /* per (field, doc): term frequencies must add up to the length */
    uint64_t *tfsum = what ? NULL : calloc((size_t)nf * (n_docs ? n_docs : 1), sizeof *tfsum);
    if (!what && !tfsum) what = "out of memory";
    if (!what && nt && term_rehash(x, 1024)) what = "out of memory";
    for (uint64_t i = 0; i < nt && !what; i++) {
        uint32_t kl, n;
        if (!br_get(&b, &kl, 4) || kl < 2 || kl > b.n - b.off) { what = "bad term"; break; }
        const char *key = (const char *)b.p + b.off;
        b.off += kl;
        if ((uint8_t)key[0] >= nf) { what = "bad term field"; break; }
        if (term_find(x, key, kl) >= 0) { what = "duplicate term"; break; }
        if (!br_get(&b, &n, 4) || n == 0 || n > n_docs || (size_t)n * 8 > b.n - b.off) { what = "bad posting list"; break; }
        int64_t t = term_intern(x, key, kl);
        if (t < 0) { what = "out of memory"; break; }
        plist *l = &x->lists[t];
        l->doc = malloc((size_t)n * 4);
        l->tf = malloc((size_t)n * 4);
        if (!l->doc || !l->tf) { what = "out of memory"; break; }
        l->cap = l->n = n;
        br_get(&b, l->doc, (size_t)n * 4);
        br_get(&b, l->tf, (size_t)n * 4);
        int f = (uint8_t)key[0];
        for (uint32_t j = 0; j < n; j++) {
            uint32_t d = l->doc[j];
            if (d >= n_docs || (j && d <= l->doc[j - 1]) || l->tf[j] == 0) { what = "bad posting"; break; }
            if (l->tf[j] > l->max_tf) l->max_tf = l->tf[j];
            if (x->dl[f][d] < l->min_dl) l->min_dl = x->dl[f][d];
            tfsum[(size_t)f * n_docs + d] += l->tf[j];
        }
    }
    for (uint32_t f = 0; f < nf && !what; f++)
        for (uint32_t d = 0; d < n_docs; d++)
            if (tfsum[(size_t)f * n_docs + d] != x->dl[f][d]) { what = "postings do not add up to the document lengths"; break; }
    free(tfsum);
    if (!what && b.off != b.n) what = "trailing bytes";
    if (what) { bm25_free(x); return qerr_set(e, "bm25 load: %s", what); }
    *out = x;
    return 0;
}

bool bm25_params_equal(const bm25 *x, const bm25_params *p) {
    if (x->p.n_fields != p->n_fields || x->p.k1 != p->k1 || x->p.b != p->b || x->p.exact_norms != p->exact_norms) return false;
    for (int f = 0; f < p->n_fields; f++)
        if (x->p.field_weight[f] != p->field_weight[f]) return false;
    return true;
}
