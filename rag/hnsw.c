/* hnsw.c — HNSW vector index (see rag.h for the design and locking notes). */
#include "rag/rag.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NONE UINT32_MAX
#define MAX_LEVEL 30
#define MAP_EMPTY UINT32_MAX

/* Slot states (read and written with __atomic builtins). */
enum { ST_LIVE = 0, ST_FREE = 1, ST_WRITING = 2 };

typedef struct cand {
    float d;
    uint32_t i;
} cand;

/* Per-search scratch: visited tags, heaps, query buffer. Pooled. */
typedef struct scratch {
    uint16_t *tag;  /* visited */
    uint16_t *tag2; /* filter said no (filtered search) */
    uint16_t *tag3; /* neighbours looked at (two-hop walk) */
    size_t ntag;
    uint16_t cur;
    cand *c, *r;
    size_t cc, rc; /* capacities */
    float *q;      /* dim floats */
    int8_t *q8;    /* dim bytes */
    uint32_t *nb;  /* neighbour copy buffer, M0 + 1 */
    cand *sel;     /* heuristic buffers */
    size_t selc;
    float *qp;     /* projected query (projected scan), pr floats */
    int qpc;
} scratch;

struct hnsw {
    int dim, M, M0, efc, ef;
    hnsw_metric metric;
    hnsw_storage storage;
    bool rerank, has_f32, keep_pruned;
    uint64_t seed, rng;
    double mult;
    size_t cap, n_slots, n_live;
    float *vf;      /* cap * dim, when has_f32 */
    int8_t *vq;     /* cap * dim, when storage == I8 */
    float *qs, *qn; /* I8 scale and squared norm of the dequantized vector */
    uint64_t *ids;
    int32_t *lvl;   /* level; -1 for a free slot */
    uint32_t *l0;   /* cap * (M0 + 1): count, then neighbours */
    uint32_t **up;  /* per slot: lvl * (M + 1) words for levels 1..lvl */
    uint8_t *lk;    /* node spinlocks */
    uint8_t *st;    /* slot state */
    uint32_t *freel;
    size_t n_free, cap_free;
    uint64_t *mk;   /* id map, linear probing */
    uint32_t *mv;
    size_t mcap, mcount;
    uint32_t ep;
    int maxlvl;
    uint64_t gen;   /* bumped by every add, delete and projection change (allow-lists) */
    /* optional projection for the exact scan (hnsw_fit_projection): pr
     * orthonormal principal axes pb (pr × dim) around the mean pm; per slot
     * the coordinates pv (cap × pr) and two residual norms prn (cap × 2):
     * beyond all pr axes, and beyond the first PROJ_P1 (a cheaper first
     * bound from one cache line of coordinates) */
    int pr;
    float *pb, *pm, *pbm; /* pbm[j] = <pb_j, pm> */
    float *pv, *prn;
    float *pv1;           /* cap × proj_p1: the first coordinates again, contiguous */
    pthread_rwlock_t g;
    pthread_mutex_t meta;
    pthread_mutex_t smu;
    scratch **spool;
    int nspool, capspool;
};

/* ------------------------------------------------------------------------ */
/* Small helpers. */

#define PROJ_P1 32
#define PROJ_POOL 4 /* first-threshold pool, in multiples of k */
static inline int proj_p1(const hnsw *h) { return h->pr < PROJ_P1 ? h->pr : PROJ_P1; }

static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static int draw_level(hnsw *h) {
    h->rng = mix64(h->rng);
    double u = ((double)(h->rng >> 11) + 1.0) / 9007199254740993.0; /* (0, 1] */
    double l = -log(u) * h->mult;
    return l > MAX_LEVEL ? MAX_LEVEL : (int)l;
}

static void nlock(hnsw *h, uint32_t s) {
    int spins = 0;
    while (__atomic_test_and_set(&h->lk[s], __ATOMIC_ACQUIRE)) {
        while (__atomic_load_n(&h->lk[s], __ATOMIC_RELAXED)) {
            if (++spins > 64) { sched_yield(); spins = 0; }
        }
    }
}
static void nunlock(hnsw *h, uint32_t s) { __atomic_clear(&h->lk[s], __ATOMIC_RELEASE); }

static inline uint32_t *links(const hnsw *h, uint32_t s, int l) {
    return l == 0 ? h->l0 + (size_t)s * (size_t)(h->M0 + 1) : h->up[s] + (size_t)(l - 1) * (size_t)(h->M + 1);
}

static inline int state(const hnsw *h, uint32_t s) { return __atomic_load_n(&h->st[s], __ATOMIC_ACQUIRE); }

/* id map ------------------------------------------------------------------ */
static size_t map_find(const hnsw *h, uint64_t id) {
    size_t m = h->mcap - 1, i = (size_t)mix64(id) & m;
    while (h->mv[i] != MAP_EMPTY && h->mk[i] != id) i = (i + 1) & m;
    return i;
}

static uint32_t map_get(const hnsw *h, uint64_t id) {
    size_t i = map_find(h, id);
    return h->mv[i];
}

static int map_grow(hnsw *h) {
    size_t nc = h->mcap ? h->mcap * 2 : 1024;
    uint64_t *ok = h->mk;
    uint32_t *ov = h->mv;
    size_t oc = h->mcap;
    uint64_t *nk = malloc(nc * sizeof *nk);
    uint32_t *nv = malloc(nc * sizeof *nv);
    if (!nk || !nv) { free(nk); free(nv); return -1; }
    for (size_t i = 0; i < nc; i++) nv[i] = MAP_EMPTY;
    h->mk = nk; h->mv = nv; h->mcap = nc;
    for (size_t i = 0; i < oc; i++)
        if (ov[i] != MAP_EMPTY) {
            size_t j = map_find(h, ok[i]);
            h->mk[j] = ok[i]; h->mv[j] = ov[i];
        }
    free(ok); free(ov);
    return 0;
}

static int map_put(hnsw *h, uint64_t id, uint32_t s) {
    if ((h->mcount + 1) * 2 > h->mcap && map_grow(h)) return -1;
    size_t i = map_find(h, id);
    if (h->mv[i] == MAP_EMPTY) h->mcount++;
    h->mk[i] = id; h->mv[i] = s;
    return 0;
}

static void map_del(hnsw *h, uint64_t id) {
    size_t m = h->mcap - 1, i = map_find(h, id);
    if (h->mv[i] == MAP_EMPTY) return;
    h->mv[i] = MAP_EMPTY;
    h->mcount--;
    /* backward-shift deletion */
    size_t j = i;
    for (;;) {
        j = (j + 1) & m;
        if (h->mv[j] == MAP_EMPTY) break;
        size_t home = (size_t)mix64(h->mk[j]) & m;
        /* can j's entry move to i? yes if home is not in (i, j] cyclically */
        bool in = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!in) {
            h->mk[i] = h->mk[j]; h->mv[i] = h->mv[j];
            h->mv[j] = MAP_EMPTY;
            i = j;
        }
    }
}

/* distances ---------------------------------------------------------------- */
typedef struct qctx {
    const float *q; /* normalized for cos */
    float qnorm;    /* |q|² for I8 L2 */
    const int8_t *q8; /* I8: the query quantized too (int8 × int8 kernel), or NULL */
    float q8s;
} qctx;

static inline float dist_q(const hnsw *h, const qctx *qc, uint32_t s) {
    size_t off = (size_t)s * (size_t)h->dim;
    if (h->storage == HNSW_F32) {
        if (h->metric == HNSW_L2) return vec_l2sq_f32(qc->q, h->vf + off, (size_t)h->dim);
        return 1.0f - vec_dot_f32(qc->q, h->vf + off, (size_t)h->dim);
    }
    float dot = qc->q8 ? h->qs[s] * qc->q8s * (float)vec_dot_i8(qc->q8, h->vq + off, (size_t)h->dim)
                       : h->qs[s] * vec_dot_f32_i8(qc->q, h->vq + off, (size_t)h->dim);
    if (h->metric == HNSW_L2) return qc->qnorm + h->qn[s] - 2.0f * dot;
    return 1.0f - dot;
}

static inline float dist_exact(const hnsw *h, const qctx *qc, uint32_t s) {
    if (!h->has_f32) return dist_q(h, qc, s);
    size_t off = (size_t)s * (size_t)h->dim;
    if (h->metric == HNSW_L2) return vec_l2sq_f32(qc->q, h->vf + off, (size_t)h->dim);
    return 1.0f - vec_dot_f32(qc->q, h->vf + off, (size_t)h->dim);
}

/* The exact distance, or any value >= bound once it is known to be >= bound
 * (l2: partial sums; cos: not bounded). */
static inline float dist_exact_bounded(const hnsw *h, const qctx *qc, uint32_t s, float bound) {
    if (h->metric != HNSW_L2 || !h->has_f32) return dist_exact(h, qc, s);
    return vec_l2sq_f32_bounded(qc->q, h->vf + (size_t)s * (size_t)h->dim, (size_t)h->dim, bound);
}

static inline float dist_nn(const hnsw *h, uint32_t a, uint32_t b) {
    size_t oa = (size_t)a * (size_t)h->dim, ob = (size_t)b * (size_t)h->dim;
    if (h->storage == HNSW_F32) {
        if (h->metric == HNSW_L2) return vec_l2sq_f32(h->vf + oa, h->vf + ob, (size_t)h->dim);
        return 1.0f - vec_dot_f32(h->vf + oa, h->vf + ob, (size_t)h->dim);
    }
    float dot = h->qs[a] * h->qs[b] * (float)vec_dot_i8(h->vq + oa, h->vq + ob, (size_t)h->dim);
    if (h->metric == HNSW_L2) return h->qn[a] + h->qn[b] - 2.0f * dot;
    return 1.0f - dot;
}

static inline void prefetch_vec(const hnsw *h, uint32_t s) {
    if (h->storage == HNSW_F32) {
        const char *p = (const char *)(h->vf + (size_t)s * (size_t)h->dim);
        __builtin_prefetch(p);
        __builtin_prefetch(p + 64);
    } else {
        __builtin_prefetch(h->vq + (size_t)s * (size_t)h->dim);
    }
}

/* heaps ------------------------------------------------------------------- */
/* min-heap on d (candidates) and max-heap on d (results). */
static void heap_push(cand *a, size_t *n, cand x, bool max) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (max ? a[p].d >= x.d : a[p].d <= x.d) break;
        a[i] = a[p];
        i = p;
    }
    a[i] = x;
}

static cand heap_pop(cand *a, size_t *n, bool max) {
    cand top = a[0], x = a[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && (max ? a[c + 1].d > a[c].d : a[c + 1].d < a[c].d)) c++;
        if (max ? x.d >= a[c].d : x.d <= a[c].d) break;
        a[i] = a[c];
        i = c;
    }
    if (m) a[i] = x;
    return top;
}

static int cand_cmp(const void *x, const void *y) {
    const cand *a = x, *b = y;
    if (a->d < b->d) return -1;
    if (a->d > b->d) return 1;
    return a->i < b->i ? -1 : a->i > b->i;
}

/* scratch pool -------------------------------------------------------------- */
static bool reserve(cand **a, size_t *cap, size_t need) {
    if (need <= *cap) return true;
    size_t nc = *cap ? *cap : 256;
    while (nc < need) nc *= 2;
    cand *p = realloc(*a, nc * sizeof *p);
    if (!p) return false;
    *a = p;
    *cap = nc;
    return true;
}

static void scratch_free(scratch *s) {
    if (!s) return;
    free(s->tag); free(s->tag2); free(s->tag3); free(s->c); free(s->r); free(s->q); free(s->q8); free(s->nb); free(s->sel); free(s->qp);
    free(s);
}

/* Called with the global lock held (shared or exclusive): cap is stable. */
static scratch *scratch_get(hnsw *h) {
    scratch *s = NULL;
    pthread_mutex_lock(&h->smu);
    if (h->nspool) s = h->spool[--h->nspool];
    pthread_mutex_unlock(&h->smu);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) return NULL;
        s->q = malloc((size_t)h->dim * sizeof *s->q);
        s->nb = malloc((size_t)(h->M0 + 1) * sizeof *s->nb);
        s->q8 = malloc((size_t)h->dim);
        if (!s->q || !s->nb || !s->q8) { scratch_free(s); return NULL; }
    }
    if (s->ntag < h->cap) {
        uint16_t *t = realloc(s->tag, h->cap * sizeof *t);
        if (t) s->tag = t;
        uint16_t *t2 = t ? realloc(s->tag2, h->cap * sizeof *t2) : NULL;
        if (t2) s->tag2 = t2;
        uint16_t *t3 = t2 ? realloc(s->tag3, h->cap * sizeof *t3) : NULL;
        if (!t || !t2 || !t3) { scratch_free(s); return NULL; }
        s->tag3 = t3;
        memset(t, 0, h->cap * sizeof *t);
        memset(t2, 0, h->cap * sizeof *t2);
        memset(t3, 0, h->cap * sizeof *t3);
        s->ntag = h->cap;
        s->cur = 0;
    }
    return s;
}

static void scratch_put(hnsw *h, scratch *s) {
    if (!s) return;
    pthread_mutex_lock(&h->smu);
    if (h->nspool == h->capspool) {
        int nc = h->capspool ? h->capspool * 2 : 8;
        scratch **p = realloc(h->spool, (size_t)nc * sizeof *p);
        if (!p) { pthread_mutex_unlock(&h->smu); scratch_free(s); return; }
        h->spool = p;
        h->capspool = nc;
    }
    h->spool[h->nspool++] = s;
    pthread_mutex_unlock(&h->smu);
}

/* graph search --------------------------------------------------------------- */
static void new_epoch(scratch *sc) {
    if (++sc->cur == 0) {
        memset(sc->tag, 0, sc->ntag * sizeof *sc->tag);
        memset(sc->tag2, 0, sc->ntag * sizeof *sc->tag2);
        memset(sc->tag3, 0, sc->ntag * sizeof *sc->tag3);
        sc->cur = 1;
    }
}

/* Copies the neighbour list of s at level l; returns its length. */
static int read_links(hnsw *h, uint32_t s, int l, uint32_t *buf) {
    if (h->lvl[s] < l) return 0;
    nlock(h, s);
    const uint32_t *p = links(h, s, l);
    uint32_t n = p[0];
    memcpy(buf, p + 1, n * sizeof *buf);
    nunlock(h, s);
    return (int)n;
}

static uint32_t greedy(hnsw *h, const qctx *qc, uint32_t cur, int from, int to, scratch *sc, uint64_t *nd) {
    float dc = dist_q(h, qc, cur);
    (*nd)++;
    for (int l = from; l > to; l--) {
        bool changed = true;
        while (changed) {
            changed = false;
            int n = read_links(h, cur, l, sc->nb);
            for (int j = 0; j < n; j++) {
                uint32_t nb = sc->nb[j];
                float d = dist_q(h, qc, nb);
                (*nd)++;
                if (d < dc) { dc = d; cur = nb; changed = true; }
            }
        }
    }
    return cur;
}

/* An allow-list (see rag.h): n ids, n_res of them resolved at generation
 * gen to live slots. slot[] the resolved slots in ascending order, the
 * unresolved ids after them (slot NONE); byid[] all ids ascending; bits: a
 * bitmap over the first nbits slots; pv1/prn1 (HNSW_ALLOW_PACK, with a
 * projection): the first p1 coordinates and first-bound residual norm of
 * slot[j] at row j. */
struct hnsw_allow {
    const hnsw *h;
    uint64_t gen;
    size_t n, n_res, nbits;
    uint32_t *slot;
    uint64_t *byid, *bits;
    int p1;
    float *pv1, *prn1;
};

typedef struct filt {
    hnsw_filter_fn fn;
    void *ctx;
    hnsw_filter_many_fn many;
    const hnsw_allow *a; /* allow-list or NULL */
    bool fresh;          /* a resolved at the index's current generation */
} filt;

static inline bool has_pred(const filt *f) { return f && (f->fn || f->many); }
static inline bool has_filter(const filt *f) { return f && (f->fn || f->many || f->a); }

static bool allow_has_id(const hnsw_allow *a, uint64_t id) {
    size_t lo = 0, hi = a->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a->byid[mid] < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < a->n && a->byid[lo] == id;
}

static inline bool allowed(const hnsw *h, uint32_t s, const filt *f) {
    if (state(h, s) != ST_LIVE) return false;
    if (!has_filter(f)) return true;
    uint64_t id = h->ids[s];
    if (f->a) {
        if (f->fresh) {
            if (s >= f->a->nbits || !((f->a->bits[s >> 6] >> (s & 63)) & 1)) return false;
        } else if (!allow_has_id(f->a, id)) {
            return false;
        }
    }
    if (f->fn) return f->fn(id, f->ctx);
    if (!f->many) return true;
    bool ok = false;
    f->many(&id, 1, &ok, f->ctx);
    return ok;
}

/* Number of positions collect_allowed walks: the slots, or the allow-list
 * (its resolved entries when fresh, else all its ids). */
static size_t scan_end(const filt *f, size_t n_slots) {
    if (!f || !f->a) return n_slots;
    return f->fresh ? f->a->n_res : f->a->n;
}

/* Keeps the entries of out[0..nb) the predicate allows. */
static int apply_pred(const hnsw *h, const filt *f, uint32_t *out, int nb) {
    if (!has_pred(f) || !nb) return nb;
    int m = 0;
    if (f->fn) {
        for (int j = 0; j < nb; j++)
            if (f->fn(h->ids[out[j]], f->ctx)) out[m++] = out[j];
        return m;
    }
    uint64_t idb[512];
    bool ok[512];
    for (int j = 0; j < nb; j++) idb[j] = h->ids[out[j]];
    f->many(idb, (size_t)nb, ok, f->ctx);
    for (int j = 0; j < nb; j++) { out[m] = out[j]; m += ok[j]; }
    return m;
}

/* Collects the allowed live slots of positions [*t, n) into out (at most
 * 512), advancing *t; the batch filter, when given, sees blocks of ids.
 * Positions are slots, or allow-list entries (scan_end). */
static int collect_allowed(hnsw *h, size_t *tp, size_t n, const filt *f, uint32_t *out) {
    int nb = 0;
    size_t t = *tp;
    if (f && f->a) {
        const hnsw_allow *a = f->a;
        size_t t1 = t + 512 < n ? t + 512 : n;
        if (f->fresh) {
            memcpy(out, a->slot + t, (t1 - t) * sizeof *out);
            nb = (int)(t1 - t);
        } else {
            /* the index changed since the list was made: look the ids up */
            pthread_mutex_lock(&h->meta);
            for (size_t j = t; j < t1; j++) {
                uint32_t s = map_get(h, a->byid[j]);
                if (s != MAP_EMPTY && state(h, s) == ST_LIVE) out[nb++] = s;
            }
            pthread_mutex_unlock(&h->meta);
        }
        *tp = t1;
        return apply_pred(h, f, out, nb);
    }
    if (!f || !f->many || f->fn) {
        for (; t < n && nb < 512; t++)
            if (allowed(h, (uint32_t)t, f)) out[nb++] = (uint32_t)t;
        *tp = t;
        return nb;
    }
    uint64_t idb[512];
    bool ok[512];
    const uint64_t *ids = h->ids;
    for (; t < n && nb < 512; t++) { /* branch-free: most slots are live */
        out[nb] = (uint32_t)t;
        idb[nb] = ids[t];
        nb += state(h, (uint32_t)t) == ST_LIVE;
    }
    *tp = t;
    if (nb) f->many(idb, (size_t)nb, ok, f->ctx);
    int m = 0;
    for (int j = 0; j < nb; j++) { /* branch-free: a selective filter mispredicts */
        out[m] = out[j];
        m += ok[j];
    }
    return m;
}

/* Algorithm 2 (SEARCH-LAYER) with a result filter: every reachable node is
 * traversed, only allowed ones enter the result heap, and the search stops
 * once ef allowed results are closer than every remaining candidate.
 * Results stay in sc->r (max-heap, *nr entries). Returns -1 on OOM. */
static int search_layer(hnsw *h, const qctx *qc, uint32_t ep, int ef, int l, const filt *f, scratch *sc,
                        size_t *nr, uint64_t *nd) {
    size_t nc = 0;
    *nr = 0;
    new_epoch(sc);
    if (!reserve(&sc->c, &sc->cc, 1024) || !reserve(&sc->r, &sc->rc, (size_t)ef + 2)) return -1;
    float d = dist_q(h, qc, ep);
    (*nd)++;
    sc->tag[ep] = sc->cur;
    heap_push(sc->c, &nc, (cand){d, ep}, false);
    if (allowed(h, ep, f)) heap_push(sc->r, nr, (cand){d, ep}, true);
    float lower = *nr ? sc->r[0].d : INFINITY;
    while (nc) {
        cand c = heap_pop(sc->c, &nc, false);
        if (c.d > lower && *nr >= (size_t)ef) break;
        int n = read_links(h, c.i, l, sc->nb);
        if (!reserve(&sc->c, &sc->cc, nc + (size_t)n + 1)) return -1;
        for (int j = 0; j < n; j++) {
            if (j + 1 < n) { prefetch_vec(h, sc->nb[j + 1]); __builtin_prefetch(&sc->tag[sc->nb[j + 1]]); }
            uint32_t nb = sc->nb[j];
            if (sc->tag[nb] == sc->cur) continue;
            sc->tag[nb] = sc->cur;
            float dn = dist_q(h, qc, nb);
            (*nd)++;
            if (*nr < (size_t)ef || dn < lower) {
                heap_push(sc->c, &nc, (cand){dn, nb}, false);
                if (allowed(h, nb, f)) {
                    heap_push(sc->r, nr, (cand){dn, nb}, true);
                    if (*nr > (size_t)ef) heap_pop(sc->r, nr, true);
                    lower = sc->r[0].d;
                }
            }
        }
    }
    return 0;
}

/* Filtered layer-0 search for restrictive filters (in the spirit of ACORN-1,
 * Patel et al. 2024, on the unmodified graph): distances are computed only
 * for allowed nodes; a disallowed neighbour is not a candidate but its own
 * neighbours are looked at (two hops), so the walk crosses regions the
 * filter excludes. At most M0 allowed nodes are taken per expansion. Allowed
 * seeds (e.g. from the planner's sample) join the entry point, so the walk
 * starts inside the allowed set even when it lies far from the query. The
 * filter is called at most once per node. */
static inline int check(const hnsw *h, uint32_t s, const filt *f, scratch *sc) {
    /* 1 allowed and newly visited; 0 already seen or disallowed */
    if (sc->tag[s] == sc->cur || sc->tag2[s] == sc->cur) return 0;
    if (allowed(h, s, f)) { sc->tag[s] = sc->cur; return 1; }
    sc->tag2[s] = sc->cur;
    return 0;
}

static int search_filtered(hnsw *h, const qctx *qc, uint32_t ep, const uint32_t *seeds, int n_seeds, int ef,
                           const filt *f, scratch *sc, size_t *nr, uint64_t *nd) {
    size_t nc = 0;
    *nr = 0;
    new_epoch(sc);
    if (!reserve(&sc->c, &sc->cc, 1024) || !reserve(&sc->r, &sc->rc, (size_t)ef + 2)) return -1;
    float lower = INFINITY;
    uint32_t buf2[1025], batch[1025];
    for (int i = -1; i < n_seeds; i++) {
        uint32_t s = i < 0 ? ep : seeds[i];
        if (sc->tag[s] == sc->cur) continue;
        bool ok = allowed(h, s, f);
        sc->tag[s] = sc->cur;
        if (!ok && i >= 0) continue;
        float d = dist_q(h, qc, s);
        (*nd)++;
        if (!reserve(&sc->c, &sc->cc, nc + 1)) return -1;
        heap_push(sc->c, &nc, (cand){d, s}, false);
        if (ok) {
            heap_push(sc->r, nr, (cand){d, s}, true);
            if (*nr > (size_t)ef) heap_pop(sc->r, nr, true);
            lower = sc->r[0].d;
        }
    }
    int cap = h->M0 < 1024 ? h->M0 : 1024;
    while (nc) {
        cand c = heap_pop(sc->c, &nc, false);
        if (c.d > lower && *nr >= (size_t)ef) break;
        int n = read_links(h, c.i, 0, sc->nb), nb_ = 0;
        memcpy(buf2, sc->nb, (size_t)n * sizeof *buf2);
        /* first hop: allowed neighbours */
        for (int j = 0; j < n && nb_ < cap; j++)
            if (check(h, buf2[j], f, sc)) batch[nb_++] = buf2[j];
        /* second hop through disallowed neighbours */
        for (int j = 0; j < n && nb_ < cap; j++) {
            uint32_t x = buf2[j];
            if (sc->tag3[x] == sc->cur) continue; /* expanded once */
            if (sc->tag2[x] != sc->cur) continue; /* only through disallowed ones (expanding
                                                      allowed ones too measured no better) */
            sc->tag3[x] = sc->cur;
            int m = read_links(h, x, 0, sc->nb);
            for (int q = 0; q < m && nb_ < cap; q++)
                if (check(h, sc->nb[q], f, sc)) batch[nb_++] = sc->nb[q];
        }
        if (!reserve(&sc->c, &sc->cc, nc + (size_t)nb_ + 1)) return -1;
        for (int j = 0; j < nb_; j++) {
            if (j + 1 < nb_) prefetch_vec(h, batch[j + 1]);
            float dn = dist_q(h, qc, batch[j]);
            (*nd)++;
            if (*nr < (size_t)ef || dn < lower) {
                heap_push(sc->c, &nc, (cand){dn, batch[j]}, false);
                heap_push(sc->r, nr, (cand){dn, batch[j]}, true);
                if (*nr > (size_t)ef) heap_pop(sc->r, nr, true);
                lower = sc->r[0].d;
            }
        }
    }
    return 0;
}

/* Algorithm 4 (SELECT-NEIGHBORS-HEURISTIC): cands sorted ascending by
 * distance to the base; keeps e when it is closer to the base than to every
 * neighbour already kept. Returns the number kept (in place, prefix). */
static int select_heuristic(hnsw *h, cand *cands, int n, int m) {
    if (n <= m) return n;
    int kept = 0, idx[1024];
    for (int i = 0; i < n && kept < m; i++) {
        bool good = true;
        for (int j = 0; j < kept; j++)
            if (dist_nn(h, cands[i].i, cands[idx[j]].i) < cands[i].d) { good = false; break; }
        if (good) idx[kept++] = i;
    }
    /* compact the kept ones to the front, in order */
    cand out[1024];
    int k = 0, j = 0;
    for (int i = 0; i < n && k < m; i++) {
        if (j < kept && idx[j] == i) { out[k++] = cands[i]; j++; }
    }
    if (h->keep_pruned) /* keepPrunedConnections: fill up with the nearest discarded */
        for (int i = 0, jj = 0; i < n && k < m; i++) {
            if (jj < kept && idx[jj] == i) { jj++; continue; }
            out[k++] = cands[i];
        }
    memcpy(cands, out, (size_t)k * sizeof *out);
    return k;
}

/* ------------------------------------------------------------------------ */
void hnsw_params_default(hnsw_params *p) {
    memset(p, 0, sizeof *p);
    p->metric = HNSW_L2;
    p->M = 16;
    p->ef_construction = 200;
    p->ef_search = 64;
    p->storage = HNSW_F32;
    p->seed = 42;
    p->capacity = 1024;
}

static int grow(hnsw *h, size_t nc) {
    if (nc <= h->cap) return 0;
    size_t d = (size_t)h->dim;
#define RE(ptr, n)                                                     \
    do {                                                               \
        size_t n_ = (n);                                               \
        void *np_ = realloc((ptr), n_ > 0 ? n_ : 1);                   \
        if (!np_) return -1;                                           \
        (ptr) = np_;                                                   \
    } while (0)
    if (h->has_f32) RE(h->vf, nc * d * sizeof(float));
    if (h->storage == HNSW_I8) {
        RE(h->vq, nc * d);
        RE(h->qs, nc * sizeof(float));
        RE(h->qn, nc * sizeof(float));
    }
    RE(h->ids, nc * sizeof(uint64_t));
    RE(h->lvl, nc * sizeof(int32_t));
    RE(h->l0, nc * (size_t)(h->M0 + 1) * sizeof(uint32_t));
    RE(h->up, nc * sizeof(uint32_t *));
    RE(h->lk, nc);
    RE(h->st, nc);
    if (h->pr) {
        RE(h->pv, nc * (size_t)h->pr * sizeof(float));
        RE(h->prn, nc * 2 * sizeof(float));
        RE(h->pv1, nc * (size_t)proj_p1(h) * sizeof(float));
    }
#undef RE
    /* zeroed so saved files are byte-identical for identical graphs */
    memset(h->l0 + h->cap * (size_t)(h->M0 + 1), 0, (nc - h->cap) * (size_t)(h->M0 + 1) * sizeof(uint32_t));
    for (size_t i = h->cap; i < nc; i++) {
        h->up[i] = NULL;
        h->lk[i] = 0;
        h->st[i] = ST_FREE;
        h->lvl[i] = -1;
    }
    h->cap = nc;
    return 0;
}

static hnsw *alloc_index(const hnsw_params *p, qerr *e) {
    if (p->dim <= 0 || p->dim > (1 << 20)) { qerr_set(e, "hnsw: bad dimension %d", p->dim); return NULL; }
    if (p->M < 2 || p->M > 512) { qerr_set(e, "hnsw: M must be in 2..512 (got %d)", p->M); return NULL; }
    if (p->metric < HNSW_L2 || p->metric > HNSW_COS) { qerr_set(e, "hnsw: unknown metric %d", (int)p->metric); return NULL; }
    if (p->storage != HNSW_F32 && p->storage != HNSW_I8) { qerr_set(e, "hnsw: unknown storage %d", (int)p->storage); return NULL; }
    hnsw *h = calloc(1, sizeof *h);
    if (!h) { qerr_set(e, "hnsw: out of memory"); return NULL; }
    h->dim = p->dim;
    h->M = p->M;
    h->M0 = 2 * p->M;
    h->efc = p->ef_construction > 0 ? p->ef_construction : 200;
    if (h->efc < h->M) h->efc = h->M;
    h->ef = p->ef_search > 0 ? p->ef_search : 64;
    h->metric = p->metric;
    h->storage = p->storage;
    h->rerank = p->storage == HNSW_I8 && p->rerank_f32;
    h->keep_pruned = p->keep_pruned;
    h->has_f32 = p->storage == HNSW_F32 || h->rerank;
    h->seed = p->seed;
    h->rng = p->seed;
    h->mult = 1.0 / log((double)p->M);
    h->ep = NONE;
    h->maxlvl = -1;
    pthread_rwlock_init(&h->g, NULL);
    pthread_mutex_init(&h->meta, NULL);
    pthread_mutex_init(&h->smu, NULL);
    return h;
}

int hnsw_new(hnsw **out, const hnsw_params *p, qerr *e) {
    *out = NULL;
    hnsw *h = alloc_index(p, e);
    if (!h) return -1;
    if (grow(h, p->capacity ? p->capacity : 1024) || map_grow(h)) {
        hnsw_free(h);
        return qerr_set(e, "hnsw: out of memory");
    }
    *out = h;
    return 0;
}

void hnsw_free(hnsw *h) {
    if (!h) return;
    for (size_t i = 0; i < h->cap; i++) free(h->up ? h->up[i] : NULL);
    free(h->vf); free(h->vq); free(h->qs); free(h->qn); free(h->ids); free(h->lvl);
    free(h->l0); free(h->up); free(h->lk); free(h->st); free(h->freel); free(h->mk); free(h->mv);
    free(h->pb); free(h->pm); free(h->pbm); free(h->pv); free(h->prn); free(h->pv1);
    for (int i = 0; i < h->nspool; i++) scratch_free(h->spool[i]);
    free(h->spool);
    pthread_rwlock_destroy(&h->g);
    pthread_mutex_destroy(&h->meta);
    pthread_mutex_destroy(&h->smu);
    free(h);
}

size_t hnsw_count(const hnsw *h) { return __atomic_load_n(&h->n_live, __ATOMIC_RELAXED); }
int hnsw_dim(const hnsw *h) { return h->dim; }
size_t hnsw_slots(const hnsw *h) { return __atomic_load_n(&h->n_slots, __ATOMIC_ACQUIRE); }

size_t hnsw_memory_bytes(const hnsw *h) {
    size_t per = sizeof(uint64_t) + sizeof(int32_t) + (size_t)(h->M0 + 1) * 4 + sizeof(void *) + 2;
    if (h->has_f32) per += (size_t)h->dim * 4;
    if (h->storage == HNSW_I8) per += (size_t)h->dim + 8;
    if (h->pr) per += ((size_t)h->pr + (size_t)proj_p1(h) + 2) * sizeof(float);
    size_t b = per * h->cap + h->mcap * 12 + (size_t)h->pr * ((size_t)h->dim + 1) * sizeof(float);
    for (size_t i = 0; i < h->n_slots; i++)
        if (h->lvl[i] > 0) b += (size_t)h->lvl[i] * (size_t)(h->M + 1) * 4;
    return b;
}

bool hnsw_contains(hnsw *h, uint64_t id) {
    pthread_mutex_lock(&h->meta);
    bool r = map_get(h, id) != MAP_EMPTY;
    pthread_mutex_unlock(&h->meta);
    return r;
}


/* Coordinates of v on the projection's axes (around the mean) and the norms
 * of what the axes leave out: rn[0] beyond all pr axes, rn[1] beyond the
 * first proj_p1. */
static void project(const hnsw *h, const float *v, float *out, float *rn) {
    size_t d = (size_t)h->dim;
    float in = 0, in1 = 0;
    for (int j = 0; j < h->pr; j++) {
        out[j] = vec_dot_f32(h->pb + (size_t)j * d, v, d) - h->pbm[j];
        in += out[j] * out[j];
        if (j + 1 == proj_p1(h)) in1 = in;
    }
    float all = vec_l2sq_f32(v, h->pm, d);
    rn[0] = all > in ? sqrtf(all - in) : 0.0f;
    rn[1] = all > in1 ? sqrtf(all - in1) : 0.0f;
}

static void store_proj(hnsw *h, size_t s, const float *v) {
    size_t p1 = (size_t)proj_p1(h);
    project(h, v, h->pv + s * (size_t)h->pr, h->prn + 2 * s);
    memcpy(h->pv1 + s * p1, h->pv + s * (size_t)h->pr, p1 * sizeof(float));
}

/* Stores vec into slot s (normalizing for cos, quantizing for I8). */
static void store_vec(hnsw *h, uint32_t s, const float *vec, float *tmp) {
    size_t d = (size_t)h->dim, off = (size_t)s * d;
    const float *v = vec;
    if (h->metric == HNSW_COS) {
        double n2 = 0;
        for (size_t i = 0; i < d; i++) n2 += (double)vec[i] * vec[i];
        float inv = n2 > 0 ? (float)(1.0 / sqrt(n2)) : 0.0f;
        for (size_t i = 0; i < d; i++) tmp[i] = vec[i] * inv;
        v = tmp;
    }
    if (h->has_f32) memcpy(h->vf + off, v, d * sizeof(float));
    if (h->storage == HNSW_I8) {
        float mx = 0;
        for (size_t i = 0; i < d; i++) mx = fmaxf(mx, fabsf(v[i]));
        float sc = mx > 0 ? mx / 127.0f : 1.0f;
        int64_t n2 = 0;
        for (size_t i = 0; i < d; i++) {
            long q = lrintf(v[i] / sc);
            if (q > 127) q = 127;
            if (q < -127) q = -127;
            h->vq[off + i] = (int8_t)q;
            n2 += q * q;
        }
        h->qs[s] = sc;
        h->qn[s] = sc * sc * (float)n2;
    }
    if (h->pr) store_proj(h, s, v);
}

static void make_query(const hnsw *h, const float *q, float *buf, int8_t *q8, qctx *qc) {
    size_t d = (size_t)h->dim;
    if (h->metric == HNSW_COS) {
        double n2 = 0;
        for (size_t i = 0; i < d; i++) n2 += (double)q[i] * q[i];
        float inv = n2 > 0 ? (float)(1.0 / sqrt(n2)) : 0.0f;
        for (size_t i = 0; i < d; i++) buf[i] = q[i] * inv;
        qc->q = buf;
    } else {
        qc->q = q;
    }
    qc->qnorm = h->storage == HNSW_I8 && h->metric == HNSW_L2 ? vec_dot_f32(qc->q, qc->q, d) : 0.0f;
    qc->q8 = NULL;
    qc->q8s = 0;
    if (h->storage == HNSW_I8 && h->rerank && q8) {
        /* with f32 re-ranking the walk itself may use int8 × int8 dots */
        float mx = 0;
        for (size_t i = 0; i < d; i++) mx = fmaxf(mx, fabsf(qc->q[i]));
        float sc = mx > 0 ? mx / 127.0f : 1.0f;
        for (size_t i = 0; i < d; i++) q8[i] = (int8_t)lrintf(qc->q[i] / sc);
        qc->q8 = q8;
        qc->q8s = sc;
    }
}

/* Installs a projection (basis pr × dim, mean) and computes every live
 * slot's coordinates. Global lock held exclusively. Takes ownership of pb
 * and pm. */
static int install_projection(hnsw *h, int pr, float *pb, float *pm, qerr *e) {
    float *pbm = malloc((size_t)pr * sizeof *pbm);
    float *pv = malloc((h->cap ? h->cap : 1) * (size_t)pr * sizeof *pv);
    float *prn = malloc((h->cap ? h->cap : 1) * 2 * sizeof *prn);
    float *pv1 = malloc((h->cap ? h->cap : 1) * (size_t)(pr < PROJ_P1 ? pr : PROJ_P1) * sizeof *pv1);
    if (!pbm || !pv || !prn || !pv1) {
        free(pbm); free(pv); free(prn); free(pv1); free(pb); free(pm);
        return qerr_set(e, "hnsw: out of memory for the projection");
    }
    for (int j = 0; j < pr; j++) pbm[j] = vec_dot_f32(pb + (size_t)j * (size_t)h->dim, pm, (size_t)h->dim);
    free(h->pb); free(h->pm); free(h->pbm); free(h->pv); free(h->prn); free(h->pv1);
    h->pb = pb; h->pm = pm; h->pbm = pbm; h->pv = pv; h->prn = prn; h->pv1 = pv1;
    h->pr = pr;
    __atomic_fetch_add(&h->gen, 1, __ATOMIC_RELEASE);
    memset(pv, 0, h->cap * (size_t)pr * sizeof *pv);
    memset(prn, 0, h->cap * 2 * sizeof *prn);
    memset(pv1, 0, h->cap * (size_t)proj_p1(h) * sizeof *pv1);
    for (size_t s = 0; s < h->n_slots; s++)
        if (h->st[s] == ST_LIVE) store_proj(h, s, h->vf + s * (size_t)h->dim);
    return 0;
}

int hnsw_fit_projection(hnsw *h, int pr, qerr *e) {
    if (!h->has_f32) return qerr_set(e, "hnsw: the projected scan needs f32 vectors (f32 storage, or int8 with --rerank)");
    if (h->metric == HNSW_IP) return qerr_set(e, "hnsw: the projected scan needs the l2 or cos metric (not ip)");
    if (pr < 0 || pr > h->dim) return qerr_set(e, "hnsw: projection size %d out of range 0..%d", pr, h->dim);
    pthread_rwlock_wrlock(&h->g);
    if (pr == 0) {
        free(h->pb); free(h->pm); free(h->pbm); free(h->pv); free(h->prn); free(h->pv1);
        h->pb = h->pm = h->pbm = h->pv = h->prn = h->pv1 = NULL;
        h->pr = 0;
        __atomic_fetch_add(&h->gen, 1, __ATOMIC_RELEASE);
        pthread_rwlock_unlock(&h->g);
        return 0;
    }
    size_t d = (size_t)h->dim, live = h->n_live;
    if (live < 2) { pthread_rwlock_unlock(&h->g); return qerr_set(e, "hnsw: need at least 2 vectors to fit a projection"); }
    /* a sample on a fixed stride, at most ~1e9 multiply-adds of covariance */
    size_t want = (size_t)(2e9 / ((double)d * (double)d));
    if (want > 8192) want = 8192;
    if (want < 256) want = 256;
    if (want > live) want = live;
    float *x = malloc(want * d * sizeof *x), *pb = malloc((size_t)pr * d * sizeof *pb), *pm = malloc(d * sizeof *pm);
    if (!x || !pb || !pm) {
        free(x); free(pb); free(pm);
        pthread_rwlock_unlock(&h->g);
        return qerr_set(e, "hnsw: out of memory fitting the projection");
    }
    size_t step = h->n_slots / want ? h->n_slots / want : 1, ns = 0;
    for (size_t t = 0; t < h->n_slots && ns < want; t += step)
        if (h->st[t] == ST_LIVE) memcpy(x + ns++ * d, h->vf + t * d, d * sizeof *x);
    for (size_t t = 0; t < h->n_slots && ns < 2; t++) /* a sparse index: take any two */
        if (h->st[t] == ST_LIVE) memcpy(x + ns++ * d, h->vf + t * d, d * sizeof *x);
    int rc = pca_fit(x, ns, h->dim, pr, pm, pb, e);
    free(x);
    if (rc) { free(pb); free(pm); pthread_rwlock_unlock(&h->g); return qerr_wrap(e, "hnsw projection"); }
    rc = install_projection(h, pr, pb, pm, e);
    pthread_rwlock_unlock(&h->g);
    return rc;
}

int hnsw_projection_dim(const hnsw *h) { return h->pr; }

/* Links s into n's list at level l (n locked by the caller). */
static int add_link(hnsw *h, uint32_t n, uint32_t s, int l, scratch *sc) {
    uint32_t *p = links(h, n, l);
    uint32_t mmax = (uint32_t)(l == 0 ? h->M0 : h->M);
    for (uint32_t j = 0; j < p[0]; j++)
        if (p[1 + j] == s) return 0;
    if (p[0] < mmax) { p[1 + p[0]++] = s; return 0; }
    if (!reserve(&sc->sel, &sc->selc, mmax + 1)) return -1;
    int m = 0;
    for (uint32_t j = 0; j < p[0]; j++) sc->sel[m++] = (cand){dist_nn(h, n, p[1 + j]), p[1 + j]};
    sc->sel[m++] = (cand){dist_nn(h, n, s), s};
    qsort(sc->sel, (size_t)m, sizeof(cand), cand_cmp);
    int k = select_heuristic(h, sc->sel, m, (int)mmax);
    p[0] = (uint32_t)k;
    for (int j = 0; j < k; j++) p[1 + j] = sc->sel[j].i;
    return 0;
}

/* Insert with the global lock held shared; level precomputed (or -1). */
static int add_locked(hnsw *h, uint64_t id, const float *vec, int level, bool *need_grow, qerr *e) {
    *need_grow = false;
    pthread_mutex_lock(&h->meta);
    if (map_get(h, id) != MAP_EMPTY) {
        pthread_mutex_unlock(&h->meta);
        return qerr_set(e, "hnsw: id %llu already present", (unsigned long long)id);
    }
    if (!h->n_free && h->n_slots == h->cap) {
        pthread_mutex_unlock(&h->meta);
        *need_grow = true;
        return 0;
    }
    uint32_t s;
    if (h->n_free) s = h->freel[--h->n_free];
    else { s = (uint32_t)h->n_slots; __atomic_store_n(&h->n_slots, h->n_slots + 1, __ATOMIC_RELEASE); }
    __atomic_fetch_add(&h->gen, 1, __ATOMIC_RELEASE);
    if (map_put(h, id, s)) {
        if (s + 1 == h->n_slots) __atomic_store_n(&h->n_slots, h->n_slots - 1, __ATOMIC_RELEASE);
        else h->freel[h->n_free++] = s;
        pthread_mutex_unlock(&h->meta);
        return qerr_set(e, "hnsw: out of memory");
    }
    if (level < 0) level = draw_level(h);
    __atomic_store_n(&h->st[s], ST_WRITING, __ATOMIC_RELEASE);
    __atomic_fetch_add(&h->n_live, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&h->meta);

    scratch *sc = scratch_get(h);
    uint32_t *up = level > 0 ? calloc((size_t)level * (size_t)(h->M + 1), sizeof(uint32_t)) : NULL;
    if (!sc || (level > 0 && !up)) {
        free(up);
        scratch_put(h, sc);
        pthread_mutex_lock(&h->meta);
        map_del(h, id);
        __atomic_fetch_sub(&h->n_live, 1, __ATOMIC_RELAXED);
        __atomic_store_n(&h->st[s], ST_FREE, __ATOMIC_RELEASE);
        h->freel[h->n_free++] = s; /* freel has room: capacity tracks cap */
        pthread_mutex_unlock(&h->meta);
        return qerr_set(e, "hnsw: out of memory");
    }
    store_vec(h, s, vec, sc->q);
    h->ids[s] = id;
    h->lvl[s] = level;
    h->up[s] = up;
    nlock(h, s);
    h->l0[(size_t)s * (size_t)(h->M0 + 1)] = 0;
    nunlock(h, s);
    __atomic_store_n(&h->st[s], ST_LIVE, __ATOMIC_RELEASE);
    /* again once live: an allow-list made while this insert ran (which saw
     * the slot not yet live) is stale from here on */
    __atomic_fetch_add(&h->gen, 1, __ATOMIC_RELEASE);

    pthread_mutex_lock(&h->meta);
    uint32_t ep = h->ep;
    int maxl = h->maxlvl;
    if (ep == NONE) {
        h->ep = s;
        h->maxlvl = level;
        pthread_mutex_unlock(&h->meta);
        scratch_put(h, sc);
        return 0;
    }
    pthread_mutex_unlock(&h->meta);

    qctx qc;
    const float *qv = h->has_f32 ? h->vf + (size_t)s * (size_t)h->dim : vec;
    if (!h->has_f32 && h->metric == HNSW_COS) {
        /* sc->q holds the normalized vector from store_vec */
        qv = sc->q;
    }
    qc.q = qv;
    qc.q8 = NULL;
    qc.q8s = 0;
    qc.qnorm = h->storage == HNSW_I8 && h->metric == HNSW_L2 ? vec_dot_f32(qv, qv, (size_t)h->dim) : 0.0f;
    uint64_t nd = 0;
    uint32_t cur = ep;
    if (maxl > level) cur = greedy(h, &qc, ep, maxl, level, sc, &nd);
    int rc = 0;
    for (int l = level < maxl ? level : maxl; l >= 0; l--) {
        size_t nr;
        if (search_layer(h, &qc, cur, h->efc, l, NULL, sc, &nr, &nd)) { rc = -1; break; }
        /* results out of the heap, ascending */
        qsort(sc->r, nr, sizeof(cand), cand_cmp);
        /* drop self (a reused slot can't be reached, but be safe) */
        int m = 0;
        for (size_t j = 0; j < nr; j++) if (sc->r[j].i != s) sc->r[m++] = sc->r[j];
        if (m == 0) continue;
        cur = sc->r[0].i;
        int k = select_heuristic(h, sc->r, m, h->M);
        nlock(h, s);
        uint32_t *p = links(h, s, l);
        p[0] = (uint32_t)k;
        for (int j = 0; j < k; j++) p[1 + j] = sc->r[j].i;
        nunlock(h, s);
        uint32_t tmp[1024];
        int kk = k < 1024 ? k : 1024;
        for (int j = 0; j < kk; j++) tmp[j] = sc->r[j].i;
        for (int j = 0; j < kk; j++) {
            nlock(h, tmp[j]);
            int r2 = add_link(h, tmp[j], s, l, sc);
            nunlock(h, tmp[j]);
            if (r2) { rc = -1; break; }
        }
        if (rc) break;
    }
    if (level > maxl) {
        pthread_mutex_lock(&h->meta);
        if (level > h->maxlvl) { h->ep = s; h->maxlvl = level; }
        pthread_mutex_unlock(&h->meta);
    }
    scratch_put(h, sc);
    /* On OOM mid-way the node stays, possibly with fewer links. */
    return rc ? qerr_set(e, "hnsw: out of memory while linking") : 0;
}

static int ensure_room(hnsw *h, qerr *e) {
    pthread_rwlock_wrlock(&h->g);
    int rc = 0;
    if (!h->n_free && h->n_slots == h->cap) {
        size_t nc = h->cap < 1024 ? 1024 : h->cap + h->cap / 2;
        if (grow(h, nc)) rc = qerr_set(e, "hnsw: out of memory growing to %zu slots", nc);
    }
    if (!rc && h->cap_free < h->cap) {
        uint32_t *f = realloc(h->freel, h->cap * sizeof *f);
        if (!f) rc = qerr_set(e, "hnsw: out of memory");
        else { h->freel = f; h->cap_free = h->cap; }
    }
    pthread_rwlock_unlock(&h->g);
    return rc;
}

static int add_level(hnsw *h, uint64_t id, const float *vec, int level, qerr *e) {
    for (;;) {
        bool need;
        pthread_rwlock_rdlock(&h->g);
        if (h->cap_free < h->cap) { /* the free list must hold every slot */
            pthread_rwlock_unlock(&h->g);
            if (ensure_room(h, e)) return -1;
            continue;
        }
        int rc = add_locked(h, id, vec, level, &need, e);
        pthread_rwlock_unlock(&h->g);
        if (rc) return rc;
        if (!need) return 0;
        if (ensure_room(h, e)) return -1;
    }
}

int hnsw_add(hnsw *h, uint64_t id, const float *vec, qerr *e) { return add_level(h, id, vec, -1, e); }

typedef struct batch {
    hnsw *h;
    const uint64_t *ids;
    const float *vecs;
    const int *levels;
    size_t n, next;
    int failed;
    qerr err;
} batch;

static void batch_worker(void *arg, int ith, int nth) {
    batch *b = arg;
    qerr e;
    for (;;) {
        if (__atomic_load_n(&b->failed, __ATOMIC_RELAXED)) return;
        size_t i = __atomic_fetch_add(&b->next, 1, __ATOMIC_RELAXED);
        if (i >= b->n) return;
        if (add_level(b->h, b->ids[i], b->vecs + i * (size_t)b->h->dim, b->levels[i], &e)) {
            int expected = 0;
            if (__atomic_compare_exchange_n(&b->failed, &expected, 1, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
                b->err = e;
            return;
        }
    }
}

int hnsw_add_batch(hnsw *h, const uint64_t *ids, const float *vecs, size_t n, qpool *pool, qerr *e) {
    if (!n) return 0;
    int *levels = malloc(n * sizeof *levels);
    if (!levels) return qerr_set(e, "hnsw: out of memory");
    pthread_mutex_lock(&h->meta);
    for (size_t i = 0; i < n; i++) levels[i] = draw_level(h);
    pthread_mutex_unlock(&h->meta);
    /* make room once up front */
    pthread_rwlock_wrlock(&h->g);
    int rc = 0;
    size_t need = h->n_live + n;
    if (need > h->cap && grow(h, need)) rc = qerr_set(e, "hnsw: out of memory");
    pthread_rwlock_unlock(&h->g);
    if (rc) { free(levels); return -1; }
    batch b = {h, ids, vecs, levels, n, 0, 0, {{0}}};
    if (!pool || qpool_size(pool) <= 1) {
        for (size_t i = 0; i < n && !rc; i++)
            rc = add_level(h, ids[i], vecs + i * (size_t)h->dim, levels[i], e);
    } else {
        /* the first node alone so the others find an entry point */
        pthread_mutex_lock(&h->meta);
        bool empty = h->ep == NONE;
        pthread_mutex_unlock(&h->meta);
        if (empty) { rc = add_level(h, ids[0], vecs, levels[0], e); b.next = 1; }
        if (!rc) {
            qpool_run(pool, batch_worker, &b);
            if (b.failed) { if (e) *e = b.err; rc = -1; }
        }
    }
    free(levels);
    return rc;
}

/* delete -------------------------------------------------------------------- */
int hnsw_delete(hnsw *h, uint64_t id, qerr *e) {
    pthread_rwlock_wrlock(&h->g);
    uint32_t s = map_get(h, id);
    if (s == MAP_EMPTY) {
        pthread_rwlock_unlock(&h->g);
        return qerr_set(e, "hnsw: id %llu not found", (unsigned long long)id);
    }
    scratch *sc = scratch_get(h);
    if (!sc || !reserve(&sc->sel, &sc->selc, (size_t)(2 * h->M0 + 2))) {
        scratch_put(h, sc);
        pthread_rwlock_unlock(&h->g);
        return qerr_set(e, "hnsw: out of memory");
    }
    map_del(h, id);
    __atomic_fetch_add(&h->gen, 1, __ATOMIC_RELEASE);
    h->st[s] = ST_FREE;
    __atomic_fetch_sub(&h->n_live, 1, __ATOMIC_RELAXED);
    int ls = h->lvl[s];
    /* Every list that mentions s: drop s, refill from s's own neighbours. */
    for (size_t t = 0; t < h->n_slots; t++) {
        if (t == s || h->st[t] != ST_LIVE) continue;
        int top = h->lvl[t] < ls ? h->lvl[t] : ls;
        for (int l = 0; l <= top; l++) {
            uint32_t *p = links(h, (uint32_t)t, l);
            uint32_t j = 0;
            while (j < p[0] && p[1 + j] != s) j++;
            if (j == p[0]) continue;
            int m = 0;
            for (uint32_t q = 0; q < p[0]; q++)
                if (p[1 + q] != s) sc->sel[m++] = (cand){dist_nn(h, (uint32_t)t, p[1 + q]), p[1 + q]};
            const uint32_t *ps = links(h, s, l);
            for (uint32_t q = 0; q < ps[0]; q++) {
                uint32_t c = ps[1 + q];
                if (c == t || c == s || h->st[c] != ST_LIVE) continue;
                bool dup = false;
                for (int r = 0; r < m; r++) if (sc->sel[r].i == c) { dup = true; break; }
                if (!dup) sc->sel[m++] = (cand){dist_nn(h, (uint32_t)t, c), c};
            }
            qsort(sc->sel, (size_t)m, sizeof(cand), cand_cmp);
            int k = select_heuristic(h, sc->sel, m, l == 0 ? h->M0 : h->M);
            p[0] = (uint32_t)k;
            for (int r = 0; r < k; r++) p[1 + r] = sc->sel[r].i;
        }
    }
    scratch_put(h, sc);
    h->l0[(size_t)s * (size_t)(h->M0 + 1)] = 0;
    free(h->up[s]);
    h->up[s] = NULL;
    h->lvl[s] = -1;
    if (h->ep == s) {
        h->ep = NONE;
        h->maxlvl = -1;
        for (size_t t = 0; t < h->n_slots; t++)
            if (h->st[t] == ST_LIVE && h->lvl[t] > h->maxlvl) { h->ep = (uint32_t)t; h->maxlvl = h->lvl[t]; }
    }
    h->freel[h->n_free++] = s;
    pthread_rwlock_unlock(&h->g);
    return 0;
}

/* allow-lists ------------------------------------------------------------ */
static int u64_cmp(const void *x, const void *y) {
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

typedef struct slot_id {
    uint32_t s;
    uint64_t id;
} slot_id;

static int slot_id_cmp(const void *x, const void *y) {
    const slot_id *a = x, *b = y;
    if (a->s != b->s) return a->s < b->s ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

void hnsw_allow_free(hnsw_allow *a) {
    if (!a) return;
    free(a->slot); free(a->byid); free(a->bits); free(a->pv1); free(a->prn1);
    free(a);
}

size_t hnsw_allow_size(const hnsw_allow *a) { return a ? a->n : 0; }

int hnsw_allow_new(hnsw *h, const uint64_t *ids, size_t n, unsigned flags, hnsw_allow **out, qerr *e) {
    *out = NULL;
    if (flags & ~(unsigned)HNSW_ALLOW_PACK) return qerr_set(e, "hnsw: unknown allow-list flags 0x%x", flags);
    if (n && !ids) return qerr_set(e, "hnsw: allow-list of %zu ids without ids", n);
    hnsw_allow *a = calloc(1, sizeof *a);
    if (!a) return qerr_set(e, "hnsw: out of memory for an allow-list");
    a->h = h;
    a->byid = malloc((n ? n : 1) * sizeof *a->byid);
    slot_id *tmp = malloc((n ? n : 1) * sizeof *tmp);
    if (!a->byid || !tmp) { free(tmp); hnsw_allow_free(a); return qerr_set(e, "hnsw: out of memory for an allow-list"); }
    if (n) memcpy(a->byid, ids, n * sizeof *ids);
    qsort(a->byid, n, sizeof *a->byid, u64_cmp);
    size_t u = 0;
    for (size_t j = 0; j < n; j++)
        if (!u || a->byid[u - 1] != a->byid[j]) a->byid[u++] = a->byid[j];
    a->n = u;
    pthread_rwlock_rdlock(&h->g);
    /* the generation first: a change during the resolution makes the list
     * stale, never wrong */
    a->gen = __atomic_load_n(&h->gen, __ATOMIC_ACQUIRE);
    pthread_mutex_lock(&h->meta);
    for (size_t j = 0; j < u; j++) {
        uint32_t s = map_get(h, a->byid[j]);
        if (s != MAP_EMPTY && state(h, s) != ST_LIVE) s = MAP_EMPTY;
        tmp[j] = (slot_id){s == MAP_EMPTY ? NONE : s, a->byid[j]};
        a->n_res += s != MAP_EMPTY;
    }
    pthread_mutex_unlock(&h->meta);
    qsort(tmp, u, sizeof *tmp, slot_id_cmp); /* NONE (unresolved) last */
    a->nbits = __atomic_load_n(&h->n_slots, __ATOMIC_ACQUIRE);
    a->slot = malloc((u ? u : 1) * sizeof *a->slot);
    a->bits = calloc(a->nbits / 64 + 1, sizeof *a->bits);
    int rc = 0;
    if (!a->slot || !a->bits) rc = -1;
    for (size_t j = 0; !rc && j < u; j++) {
        a->slot[j] = tmp[j].s;
        if (j < a->n_res && tmp[j].s < a->nbits) a->bits[tmp[j].s >> 6] |= 1ull << (tmp[j].s & 63);
    }
    free(tmp);
    if (!rc && (flags & HNSW_ALLOW_PACK) && h->pr && h->pv1) {
        size_t p1 = (size_t)proj_p1(h), nr = a->n_res ? a->n_res : 1;
        a->p1 = (int)p1;
        a->pv1 = malloc(nr * p1 * sizeof *a->pv1);
        a->prn1 = malloc(nr * sizeof *a->prn1);
        if (!a->pv1 || !a->prn1) rc = -1;
        for (size_t j = 0; !rc && j < a->n_res; j++) {
            memcpy(a->pv1 + j * p1, h->pv1 + (size_t)a->slot[j] * p1, p1 * sizeof *a->pv1);
            a->prn1[j] = h->prn[2 * (size_t)a->slot[j] + 1];
        }
    }
    pthread_rwlock_unlock(&h->g);
    if (rc) { hnsw_allow_free(a); return qerr_set(e, "hnsw: out of memory for an allow-list"); }
    *out = a;
    return 0;
}

/* search ----------------------------------------------------------------- */
#define HNSW_TWO_HOP_BELOW 0.5 /* selectivity under which the filtered walk is two-hop */
#define HNSW_GRAPH_COST 0.45
#define HNSW_TWO_HOP_COST 1.0
/* Samples up to 256 live slots on a fixed stride (deterministic, cheap):
 * returns the allowed fraction and keeps up to max_seeds allowed slots as
 * extra entry points for the filtered graph search. */
static double sample_filter(hnsw *h, const filt *f, size_t n_slots, uint32_t *seeds, int max_seeds, int *n_seeds) {
    size_t want = 256, step = n_slots / want ? n_slots / want : 1;
    size_t live = 0, ok = 0;
    *n_seeds = 0;
    if (f->a && f->fresh && !has_pred(f)) {
        /* the allowed set is known: its size, and seeds spread over it */
        size_t na = f->a->n_res, n_live = __atomic_load_n(&h->n_live, __ATOMIC_RELAXED);
        size_t st = na / (size_t)max_seeds ? na / (size_t)max_seeds : 1;
        for (size_t j = 0; j < na && *n_seeds < max_seeds; j += st) seeds[(*n_seeds)++] = f->a->slot[j];
        if (!n_live) return 1.0;
        return na ? (double)na / (double)n_live : 0.5 / (double)n_live;
    }
    for (size_t t = 0; t < n_slots && live < want; t += step) {
        if (state(h, (uint32_t)t) != ST_LIVE) continue;
        live++;
        if (allowed(h, (uint32_t)t, f)) {
            ok++;
            if (*n_seeds < max_seeds) seeds[(*n_seeds)++] = (uint32_t)t;
        }
    }
    if (!live) return 1.0;
    /* never report 0: an unsampled class still may have members */
    return ok ? (double)ok / (double)live : 0.5 / (double)live;
}

/* Exact scan of the allowed live slots. With int8 storage and f32 re-rank,
 * the scan uses the int8 distances (4× less memory traffic) to keep the
 * best max(ef, 4k) and re-ranks those with f32. */
static inline void prefetch_full(const hnsw *h, uint32_t s) {
    const char *p = h->rerank || h->storage == HNSW_I8 ? (const char *)(h->vq + (size_t)s * (size_t)h->dim)
                                                        : (const char *)(h->vf + (size_t)s * (size_t)h->dim);
    size_t bytes = (size_t)h->dim * (h->storage == HNSW_I8 ? 1 : 4);
    for (size_t o = 0; o < bytes; o += 64) __builtin_prefetch(p + o);
}

/* Exact scan with lower bounds (the multi-step k-NN of Korn et al. / Seidl
 * & Kriegel, on principal axes): for orthonormal axes P and residual norms,
 *   |q - x|² = |P(q - x)|² + |res_q - res_x|² >= |Pq - Px|² + (|res_q| - |res_x|)²,
 * so every allowed slot first gets this bound from its pr coordinates
 * (pr ≪ dim floats), the k slots with the smallest bounds get exact
 * distances, which give a threshold; the rest are visited in ascending
 * bound order and stop as soon as the bound reaches the current k-th exact
 * distance. The result equals the plain exact scan's (bounds carry a small
 * slack for float rounding). For cos the stored vectors are unit length and
 * 1 - <q, x> = |q - x|² / 2. */
static int brute_proj(hnsw *h, const qctx *qc, size_t kk, const filt *f, scratch *sc, size_t *nr, uint64_t *nd) {
    size_t n = scan_end(f, __atomic_load_n(&h->n_slots, __ATOMIC_ACQUIRE));
    const size_t pr = (size_t)h->pr, p1 = (size_t)proj_p1(h);
    *nr = 0;
    if (sc->qpc < h->pr) {
        float *qp = realloc(sc->qp, pr * sizeof *qp);
        if (!qp) return -1;
        sc->qp = qp;
        sc->qpc = h->pr;
    }
    float qrn[2];
    project(h, qc->q, sc->qp, qrn);
    const float *qp = sc->qp, *pv = h->pv, *prn = h->prn;
    const float half = h->metric == HNSW_COS ? 0.5f : 1.0f;
    /* slack for rounding in the bounds and in the exact distances */
    const float rel = 1.0f - 1e-4f, abs_slack = 1e-5f * half * (vec_l2sq_f32(qc->q, h->pm, (size_t)h->dim) + 1.0f);
    if (!reserve(&sc->r, &sc->rc, kk + 2) || !reserve(&sc->sel, &sc->selc, kk + 2)) return -1;
    /* 1. first bounds (p1 coordinates: one cache line) of the allowed slots */
    size_t m = 0;
    uint32_t blk[512];
    float lbb[512];
    /* an allow-list with its own packed copy of the first coordinates:
     * stream them (rows 0, 1, 2, ... of the block) */
    const hnsw_allow *pk = f && f->a && f->fresh && f->a->pv1 && f->a->p1 == (int)p1 && !has_pred(f) ? f->a : NULL;
    static const uint32_t iota[512] = {
#define I8_(b) b, b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7
#define I64_(b) I8_(b), I8_(b + 8), I8_(b + 16), I8_(b + 24), I8_(b + 32), I8_(b + 40), I8_(b + 48), I8_(b + 56)
        I64_(0), I64_(64), I64_(128), I64_(192), I64_(256), I64_(320), I64_(384), I64_(448)
#undef I64_
#undef I8_
    };
    for (size_t t0 = 0; t0 < n;) {
        size_t at = t0;
        int nb = collect_allowed(h, &t0, n, f, blk);
        if (!reserve(&sc->c, &sc->cc, m + (size_t)nb + 1)) return -1;
        if (pk) {
            vec_l2sq_f32_rows(qp, pk->pv1 + at * p1, p1, iota, (size_t)nb, lbb);
            for (int j = 0; j < nb; j++) {
                float dr = qrn[1] - pk->prn1[at + (size_t)j];
                sc->c[m++] = (cand){(lbb[j] + dr * dr) * half * rel - abs_slack, blk[j]};
            }
            continue;
        }
        vec_l2sq_f32_rows(qp, h->pv1, p1, blk, (size_t)nb, lbb);
        for (int j = 0; j < nb; j++) {
            uint32_t s = blk[j];
            float dr = qrn[1] - prn[2 * (size_t)s + 1];
            sc->c[m++] = (cand){(lbb[j] + dr * dr) * half * rel - abs_slack, s};
        }
    }
    *nd += m;
    if (!m) return 0;
    /* 2. a threshold: the POOL·kk smallest first bounds get their full
     * bounds, the kk smallest of those exact distances (a tighter start
     * than exact distances of the kk smallest first bounds) */
    size_t ns = 0, pool = p1 < pr ? PROJ_POOL * kk : kk;
    if (!reserve(&sc->sel, &sc->selc, pool + 2)) return -1;
    for (size_t j = 0; j < m; j++) {
        if (ns < pool) heap_push(sc->sel, &ns, (cand){sc->c[j].d, (uint32_t)j}, true);
        else if (sc->c[j].d < sc->sel[0].d) {
            heap_pop(sc->sel, &ns, true);
            heap_push(sc->sel, &ns, (cand){sc->c[j].d, (uint32_t)j}, true);
        }
    }
    if (pool > kk) {
        for (size_t j = 0; j < ns; j++) {
            uint32_t s = sc->c[sc->sel[j].i].i;
            float dr = qrn[0] - prn[2 * (size_t)s];
            sc->sel[j].d = (vec_l2sq_f32(qp, pv + (size_t)s * pr, pr) + dr * dr) * half * rel - abs_slack;
        }
        /* keep the kk smallest full bounds at the front */
        qsort(sc->sel, ns, sizeof(cand), cand_cmp);
        if (ns > kk) ns = kk;
    }
    for (size_t j = 0; j < ns; j++) {
        uint32_t pos = sc->sel[j].i, s = sc->c[pos].i;
        heap_push(sc->r, nr, (cand){dist_exact(h, qc, s), s}, true);
        sc->c[pos].d = INFINITY;
    }
    *nd += ns;
    float tau = sc->r[0].d;
    /* 3. the slots whose first bound is under it get the full bound */
    size_t m2 = 0;
    for (size_t j = 0; j < m; j++)
        if (sc->c[j].d < tau) sc->c[m2++] = sc->c[j];
    if (p1 < pr) {
        size_t m3 = 0;
        for (size_t j = 0; j < m2; j++) {
            if (j + 4 < m2) {
                const char *p = (const char *)(pv + (size_t)sc->c[j + 4].i * pr);
                for (size_t o = 64; o < pr * 4; o += 64) __builtin_prefetch(p + o);
            }
            uint32_t s = sc->c[j].i;
            float dr = qrn[0] - prn[2 * (size_t)s];
            float lb = (vec_l2sq_f32(qp, pv + (size_t)s * pr, pr) + dr * dr) * half * rel - abs_slack;
            if (lb < tau) sc->c[m3++] = (cand){lb, s};
        }
        m2 = m3;
    }
    /* 4. exact distances in ascending bound order, until the bound reaches
     * the current k-th distance */
    /* a min-heap (Floyd) rather than a sort: only the head is consumed */
    for (size_t j = m2 / 2; j-- > 0;) {
        cand x = sc->c[j];
        size_t i = j;
        for (;;) {
            size_t c = 2 * i + 1;
            if (c >= m2) break;
            if (c + 1 < m2 && sc->c[c + 1].d < sc->c[c].d) c++;
            if (x.d <= sc->c[c].d) break;
            sc->c[i] = sc->c[c];
            i = c;
        }
        sc->c[i] = x;
    }
    while (m2) {
        cand c = heap_pop(sc->c, &m2, false);
        if (*nr >= kk && c.d >= sc->r[0].d) break;
        if (m2) {
            const char *p = (const char *)(h->vf + (size_t)sc->c[0].i * (size_t)h->dim);
            for (size_t o = 0; o < (size_t)h->dim * 4; o += 64) __builtin_prefetch(p + o);
        }
        uint32_t s = c.i;
        float d = *nr < kk ? dist_exact(h, qc, s) : dist_exact_bounded(h, qc, s, sc->r[0].d);
        (*nd)++;
        if (*nr < kk) heap_push(sc->r, nr, (cand){d, s}, true);
        else if (d < sc->r[0].d) {
            heap_pop(sc->r, nr, true);
            heap_push(sc->r, nr, (cand){d, s}, true);
        }
    }
    return 0;
}

static int brute(hnsw *h, const qctx *qc, int k, int ef, const filt *f, scratch *sc, size_t *nr, uint64_t *nd) {
    if (h->pr && h->has_f32) return brute_proj(h, qc, (size_t)k, f, sc, nr, nd);
    size_t n = scan_end(f, __atomic_load_n(&h->n_slots, __ATOMIC_ACQUIRE));
    size_t kk = h->rerank ? (size_t)(ef > 4 * k ? ef : 4 * k) : (size_t)k;
    *nr = 0;
    if (!reserve(&sc->r, &sc->rc, kk + 2)) return -1;
    /* the allowed slots first (filter calls only), in blocks, then their
     * distances with the next vectors prefetched whole */
    uint32_t blk[512];
    for (size_t t0 = 0; t0 < n; t0 += 4096) {
        size_t t1 = t0 + 4096 < n ? t0 + 4096 : n;
        for (size_t t = t0; t < t1;) {
            int nb = collect_allowed(h, &t, t1, f, blk);
            for (int j = 0; j < nb && j < 2; j++) prefetch_full(h, blk[j]);
            for (int j = 0; j < nb; j++) {
                if (j + 2 < nb) prefetch_full(h, blk[j + 2]);
                uint32_t s = blk[j];
                float d = h->rerank ? dist_q(h, qc, s) : dist_exact(h, qc, s);
                (*nd)++;
                if (*nr < kk) heap_push(sc->r, nr, (cand){d, s}, true);
                else if (d < sc->r[0].d) {
                    heap_pop(sc->r, nr, true);
                    heap_push(sc->r, nr, (cand){d, s}, true);
                }
            }
        }
    }
    if (h->rerank)
        for (size_t j = 0; j < *nr; j++) sc->r[j].d = dist_exact(h, qc, sc->r[j].i);
    return 0;
}

int hnsw_search(hnsw *h, const float *query, int k, const hnsw_search_opts *o, uint64_t *ids, float *dists,
                int *n_out, hnsw_search_stats *stats, qerr *e) {
    *n_out = 0;
    hnsw_search_stats st = {HNSW_PLAN_GRAPH, 1.0, 0, false};
    if (k <= 0) { if (stats) *stats = st; return 0; }
    pthread_rwlock_rdlock(&h->g);
    scratch *sc = scratch_get(h);
    if (!sc) { pthread_rwlock_unlock(&h->g); return qerr_set(e, "hnsw: out of memory"); }
    int ef = o && o->ef > 0 ? o->ef : h->ef;
    if (ef < k) ef = k;
    filt f = {o ? o->filter : NULL, o ? o->filter_ctx : NULL, o ? o->filter_many : NULL, o ? o->allow : NULL, false};
    if (f.a && f.a->h != h) {
        scratch_put(h, sc);
        pthread_rwlock_unlock(&h->g);
        return qerr_set(e, "hnsw: the allow-list belongs to another index");
    }
    if (f.a) f.fresh = f.a->gen == __atomic_load_n(&h->gen, __ATOMIC_ACQUIRE);
    qctx qc;
    make_query(h, query, sc->q, sc->q8, &qc);
    pthread_mutex_lock(&h->meta);
    uint32_t ep = h->ep;
    int maxl = h->maxlvl;
    size_t n_live = h->n_live;
    pthread_mutex_unlock(&h->meta);
    size_t n_slots = __atomic_load_n(&h->n_slots, __ATOMIC_ACQUIRE);

    int plan = o ? o->plan : HNSW_PLAN_AUTO;
    uint32_t seeds[64];
    int n_seeds = 0;
    bool two_hop = false;
    bool filtered = has_filter(&f);
    if (filtered && plan != HNSW_PLAN_BRUTE) {
        double est = sample_filter(h, &f, n_slots, seeds, 64, &n_seeds);
        st.selectivity = o->selectivity > 0 ? o->selectivity : est;
    } else if (filtered) {
        st.selectivity = o->selectivity > 0 ? o->selectivity : 0;
    }
    if (filtered && st.selectivity < HNSW_TWO_HOP_BELOW) two_hop = true;
    if (plan == HNSW_PLAN_AUTO) {
        /* Cost model in distance evaluations, fitted on Fashion-MNIST (60k ×
         * 784): a graph walk costs about 0.45·ef·M0 evaluations, the two-hop
         * filtered walk about that much again per halving of the selectivity
         * below 1/2, and its random accesses cost about twice a brute-force
         * scan's prefetched sequential ones; brute force costs n·selectivity
         * evaluations plus n filter calls (~1/50 each), less with a
         * projection (below). Since ef is the
         * caller's accuracy knob, a large ef tips restrictive filters to the
         * exact scan (the two-hop walk's recall saturates near 0.99 at 10%). */
        double graph = HNSW_GRAPH_COST * ef * h->M0;
        if (two_hop) graph *= 2.0 * (1.0 + HNSW_TWO_HOP_COST * log2(0.5 / st.selectivity));
        /* a fresh allow-list without a predicate costs no pass over the index */
        bool listed = f.a && f.fresh && !has_pred(&f);
        double bf = (double)n_live * (st.selectivity + (listed ? 0.0 : 0.02));
        /* with projection bounds the scan reads PROJ_P1 coordinates per
         * allowed vector plus exact distances for a few percent of them:
         * measured ~5x cheaper than the plain scan at 10% on Fashion-MNIST */
        if (h->pr && h->has_f32)
            bf = (double)n_live * ((listed ? 0.0 : 0.012) + st.selectivity * ((double)proj_p1(h) / h->dim + 0.06));
        plan = (n_live <= 2 * (size_t)ef || (filtered && bf < graph)) ? HNSW_PLAN_BRUTE : HNSW_PLAN_GRAPH;
    }
    size_t nr = 0;
    int rc = 0;
    if (ep == NONE) {
        nr = 0;
    } else if (plan == HNSW_PLAN_GRAPH) {
        uint32_t cur = greedy(h, &qc, ep, maxl, 0, sc, &st.n_dist);
        if (two_hop) rc = search_filtered(h, &qc, cur, seeds, n_seeds, ef, &f, sc, &nr, &st.n_dist);
        else rc = search_layer(h, &qc, cur, ef, 0, &f, sc, &nr, &st.n_dist);
        if (!rc && h->rerank)
            for (size_t j = 0; j < nr; j++) sc->r[j].d = dist_exact(h, &qc, sc->r[j].i);
        if (!rc && nr < (size_t)k && nr < n_live) { st.fallback = true; plan = HNSW_PLAN_BRUTE; }
    }
    if (!rc && ep != NONE && plan == HNSW_PLAN_BRUTE) rc = brute(h, &qc, k, ef, &f, sc, &nr, &st.n_dist);
    st.plan = plan;
    if (!rc) {
        if (nr) qsort(sc->r, nr, sizeof(cand), cand_cmp);
        int n = nr < (size_t)k ? (int)nr : k;
        for (int j = 0; j < n; j++) {
            ids[j] = h->ids[sc->r[j].i];
            if (dists) dists[j] = sc->r[j].d;
        }
        *n_out = n;
    }
    scratch_put(h, sc);
    pthread_rwlock_unlock(&h->g);
    if (stats) *stats = st;
    return rc ? qerr_set(e, "hnsw: out of memory in search") : 0;
}

/* ------------------------------------------------------------------------ */
/* CRC32C (Castagnoli, reflected polynomial 0x82F63B78), slicing by 8. */
static uint32_t crc_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_tab[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++) crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^ crc_tab[0][crc_tab[t - 1][i] & 0xff];
}

uint32_t q_crc32c(uint32_t crc, const void *buf, size_t n) {
    pthread_once(&crc_once, crc_init);
    const uint8_t *p = buf;
    crc = ~crc;
    while (n >= 8) {
        uint32_t a = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        crc = crc_tab[7][a & 0xff] ^ crc_tab[6][(a >> 8) & 0xff] ^ crc_tab[5][(a >> 16) & 0xff] ^ crc_tab[4][a >> 24] ^
              crc_tab[3][p[4]] ^ crc_tab[2][p[5]] ^ crc_tab[1][p[6]] ^ crc_tab[0][p[7]];
        p += 8;
        n -= 8;
    }
    while (n--) crc = (crc >> 8) ^ crc_tab[0][(crc ^ *p++) & 0xff];
    return ~crc;
}

/* Persistence ----------------------------------------------------------------
 * Layout (little-endian hosts only, as the rest of Quire):
 *   "QHNSW\0\0\0" u32 version=1
 *   u32 dim, metric, storage, rerank, M, ef_construction, ef_search, pad
 *   u64 seed, rng, n_slots, n_live, n_free; u32 ep; i32 maxlvl; (v2) u32 pr, pad
 *   n_slots × (u64 id, i32 level, u8 state, 3 pad)
 *   [f32 vectors n_slots × dim] [i8 vectors n_slots × dim, f32 scale, f32 norm]
 *   layer-0 lists n_slots × (2M + 1) u32; upper lists level × (M + 1) u32 per slot
 *   free list n_free × u32
 *   (v2, pr > 0) f32 axes pr × dim, f32 mean dim, f32 coordinates n_slots × pr,
 *   f32 residual norms n_slots × 2
 *   u32 CRC32C of all the bytes above */
#define HNSW_MAGIC "QHNSW\0\0\0"
#define HNSW_VERSION 2u /* 2: + projection (u32 pr, u32 pad after maxlvl; arrays at the end) */

typedef struct wbuf {
    uint8_t *p;
    size_t n, cap;
} wbuf;

static void wput(wbuf *b, const void *d, size_t n) {
    if (b->p) memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void wu32(wbuf *b, uint32_t v) { wput(b, &v, 4); }
static void wu64(wbuf *b, uint64_t v) { wput(b, &v, 8); }

static void serialize(const hnsw *h, wbuf *b) {
    wput(b, HNSW_MAGIC, 8);
    wu32(b, HNSW_VERSION);
    wu32(b, (uint32_t)h->dim); wu32(b, (uint32_t)h->metric); wu32(b, (uint32_t)h->storage);
    wu32(b, h->rerank); wu32(b, (uint32_t)h->M); wu32(b, (uint32_t)h->efc); wu32(b, (uint32_t)h->ef); wu32(b, h->keep_pruned);
    wu64(b, h->seed); wu64(b, h->rng); wu64(b, h->n_slots); wu64(b, h->n_live); wu64(b, h->n_free);
    wu32(b, h->ep); wu32(b, (uint32_t)h->maxlvl);
    wu32(b, (uint32_t)h->pr); wu32(b, 0);
    for (size_t i = 0; i < h->n_slots; i++) {
        wu64(b, h->ids[i]);
        wu32(b, (uint32_t)h->lvl[i]);
        uint8_t pad[4] = {h->st[i], 0, 0, 0};
        wput(b, pad, 4);
    }
    size_t d = (size_t)h->dim;
    if (h->has_f32) wput(b, h->vf, h->n_slots * d * 4);
    if (h->storage == HNSW_I8) {
        wput(b, h->vq, h->n_slots * d);
        wput(b, h->qs, h->n_slots * 4);
        wput(b, h->qn, h->n_slots * 4);
    }
    wput(b, h->l0, h->n_slots * (size_t)(h->M0 + 1) * 4);
    for (size_t i = 0; i < h->n_slots; i++)
        if (h->lvl[i] > 0) wput(b, h->up[i], (size_t)h->lvl[i] * (size_t)(h->M + 1) * 4);
    wput(b, h->freel, h->n_free * 4);
    if (h->pr) {
        wput(b, h->pb, (size_t)h->pr * d * 4);
        wput(b, h->pm, d * 4);
        wput(b, h->pv, h->n_slots * (size_t)h->pr * 4);
        wput(b, h->prn, h->n_slots * 2 * 4);
    }
}

static int save_buf(hnsw *h, wbuf *b, qerr *e) {
    /* exclusive: no insert may move the arrays or change lists mid-copy */
    pthread_rwlock_wrlock(&h->g);
    memset(b, 0, sizeof *b);
    serialize(h, b);
    b->cap = b->n + 4;
    b->p = malloc(b->cap);
    if (!b->p) { pthread_rwlock_unlock(&h->g); return qerr_set(e, "hnsw: out of memory saving %zu bytes", b->cap); }
    b->n = 0;
    serialize(h, b);
    pthread_rwlock_unlock(&h->g);
    uint32_t crc = q_crc32c(0, b->p, b->n);
    wu32(b, crc);
    return 0;
}

int hnsw_save(hnsw *h, const char *path, qerr *e) {
    wbuf b;
    if (save_buf(h, &b, e)) return -1;
    int rc = q_write_file_atomic(path, b.p, b.n, e);
    free(b.p);
    return rc ? qerr_wrap(e, "hnsw save") : 0;
}

int hnsw_save_fd(hnsw *h, int fd, qerr *e) {
    wbuf b;
    if (save_buf(h, &b, e)) return -1;
    size_t off = 0;
    while (off < b.n) {
        ssize_t w = write(fd, b.p + off, b.n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) { free(b.p); return qerr_set(e, "hnsw save: write: %s", w < 0 ? strerror(errno) : "short write"); }
        off += (size_t)w;
    }
    free(b.p);
    return 0;
}

typedef struct rbuf {
    const uint8_t *p;
    size_t n, off;
} rbuf;

static bool rget(rbuf *b, void *d, size_t n) {
    if (n > b->n - b->off) return false;
    memcpy(d, b->p + b->off, n);
    b->off += n;
    return true;
}

int hnsw_load_memory(hnsw **out, const void *buf, size_t n, qerr *e) {
    *out = NULL;
    const uint8_t *p = buf;
    if (n < 8 + 4 + 4 || memcmp(p, HNSW_MAGIC, 8) != 0) return qerr_set(e, "hnsw load: not an HNSW index (bad magic)");
    uint32_t crc_stored;
    memcpy(&crc_stored, p + n - 4, 4);
    uint32_t crc = q_crc32c(0, p, n - 4);
    if (crc != crc_stored)
        return qerr_set(e, "hnsw load: checksum mismatch (stored %08x, computed %08x): file is corrupt", crc_stored, crc);
    rbuf b = {p, n - 4, 8};
    uint32_t ver, hd[8];
    uint64_t seed, rng, n_slots, n_live, n_free;
    uint32_t ep, maxl;
    if (!rget(&b, &ver, 4)) return qerr_set(e, "hnsw load: truncated header");
    if (ver != 1 && ver != HNSW_VERSION) return qerr_set(e, "hnsw load: unsupported version %u", ver);
    uint32_t prh[2] = {0, 0};
    if (!rget(&b, hd, sizeof hd) || !rget(&b, &seed, 8) || !rget(&b, &rng, 8) || !rget(&b, &n_slots, 8) ||
        !rget(&b, &n_live, 8) || !rget(&b, &n_free, 8) || !rget(&b, &ep, 4) || !rget(&b, &maxl, 4) ||
        (ver >= 2 && !rget(&b, prh, sizeof prh)))
        return qerr_set(e, "hnsw load: truncated header");
    if (prh[0] > hd[0] || (prh[0] && (hd[1] == HNSW_IP || (hd[2] == HNSW_I8 && !hd[3]))))
        return qerr_set(e, "hnsw load: bad projection size %u", prh[0]);
    hnsw_params pr;
    hnsw_params_default(&pr);
    pr.dim = (int)hd[0]; pr.metric = (hnsw_metric)hd[1]; pr.storage = (hnsw_storage)hd[2];
    pr.rerank_f32 = hd[3] != 0; pr.M = (int)hd[4]; pr.ef_construction = (int)hd[5]; pr.ef_search = (int)hd[6];
    pr.keep_pruned = hd[7] != 0;
    pr.seed = seed;
    if (hd[0] == 0 || hd[0] > (1u << 20) || hd[4] < 2 || hd[4] > 512 || hd[1] > 2 || hd[2] > 1)
        return qerr_set(e, "hnsw load: bad parameters in header");
    if (n_slots > n / 16 || n_live > n_slots || n_free > n_slots || n_live + n_free != n_slots)
        return qerr_set(e, "hnsw load: inconsistent slot counts");
    { /* the file must hold what the header promises before anything is allocated */
        bool f32 = hd[2] == HNSW_F32 || hd[3] != 0;
        double per = 16.0 + (f32 ? 4.0 * hd[0] : 0) + (hd[2] == HNSW_I8 ? hd[0] + 8.0 : 0) + 4.0 * (2.0 * hd[4] + 1);
        if ((double)n_slots * per > (double)n) return qerr_set(e, "hnsw load: file too short for %llu slots", (unsigned long long)n_slots);
    }
    hnsw *h = alloc_index(&pr, e);
    if (!h) return qerr_wrap(e, "hnsw load");
    if (grow(h, n_slots ? n_slots : 16) || map_grow(h)) { hnsw_free(h); return qerr_set(e, "hnsw load: out of memory"); }
    h->rng = rng;
    h->freel = malloc(h->cap * sizeof *h->freel);
    if (!h->freel) { hnsw_free(h); return qerr_set(e, "hnsw load: out of memory"); }
    h->cap_free = h->cap;
    size_t d = (size_t)h->dim, ns = (size_t)n_slots;
    const char *what = NULL;
    size_t live = 0;
    for (size_t i = 0; i < ns && !what; i++) {
        uint8_t pad[4];
        uint32_t lv;
        if (!rget(&b, &h->ids[i], 8) || !rget(&b, &lv, 4) || !rget(&b, pad, 4)) { what = "truncated slot table"; break; }
        h->lvl[i] = (int32_t)lv;
        h->st[i] = pad[0];
        if (pad[0] == ST_LIVE) {
            live++;
            if (h->lvl[i] < 0 || h->lvl[i] > MAX_LEVEL) what = "bad node level";
            else if (map_get(h, h->ids[i]) != MAP_EMPTY) what = "duplicate id";
            else if (map_put(h, h->ids[i], (uint32_t)i)) what = "out of memory";
        } else if (pad[0] == ST_FREE) {
            h->lvl[i] = -1;
        } else what = "bad slot state";
    }
    if (!what && live != n_live) what = "live count does not match the slot table";
    h->n_slots = ns;
    h->n_live = live;
    if (!what && h->has_f32 && !rget(&b, h->vf, ns * d * 4)) what = "truncated vectors";
    if (!what && h->storage == HNSW_I8 &&
        (!rget(&b, h->vq, ns * d) || !rget(&b, h->qs, ns * 4) || !rget(&b, h->qn, ns * 4)))
        what = "truncated int8 vectors";
    if (!what && !rget(&b, h->l0, ns * (size_t)(h->M0 + 1) * 4)) what = "truncated layer-0 lists";
    for (size_t i = 0; i < ns && !what; i++) {
        if (h->lvl[i] <= 0) continue;
        size_t words = (size_t)h->lvl[i] * (size_t)(h->M + 1);
        h->up[i] = malloc(words * 4);
        if (!h->up[i]) what = "out of memory";
        else if (!rget(&b, h->up[i], words * 4)) what = "truncated upper lists";
    }
    /* every list: count within bounds, targets live slots with a high enough level */
    for (size_t i = 0; i < ns && !what; i++) {
        if (h->st[i] != ST_LIVE) continue;
        for (int l = 0; l <= h->lvl[i] && !what; l++) {
            const uint32_t *lp = links(h, (uint32_t)i, l);
            if (lp[0] > (uint32_t)(l ? h->M : h->M0)) { what = "neighbour count out of range"; break; }
            for (uint32_t j = 0; j < lp[0]; j++)
                if (lp[1 + j] >= ns || h->st[lp[1 + j]] != ST_LIVE || h->lvl[lp[1 + j]] < l) { what = "bad neighbour"; break; }
        }
    }
    if (!what && !rget(&b, h->freel, (size_t)n_free * 4)) what = "truncated free list";
    h->n_free = (size_t)n_free;
    for (size_t i = 0; i < h->n_free && !what; i++)
        if (h->freel[i] >= ns || h->st[h->freel[i]] != ST_FREE) what = "bad free list";
    if (!what && prh[0] && ((double)prh[0] * (double)(d + ns) + (double)d + 2.0 * (double)ns) * 4.0 > (double)(b.n - b.off))
        what = "truncated projection";
    if (!what && prh[0]) {
        size_t pr = prh[0];
        float *pb = malloc(pr * d * 4), *pm = malloc(d * 4), *pbm = malloc(pr * 4);
        size_t p1 = pr < PROJ_P1 ? pr : PROJ_P1;
        float *pv = malloc(h->cap * pr * 4), *prn = malloc(h->cap * 2 * 4), *pv1 = malloc(h->cap * p1 * 4);
        if (!pb || !pm || !pbm || !pv || !prn || !pv1) what = "out of memory";
        else if (!rget(&b, pb, pr * d * 4) || !rget(&b, pm, d * 4) || !rget(&b, pv, ns * pr * 4) ||
                 !rget(&b, prn, ns * 2 * 4))
            what = "truncated projection";
        if (what) { free(pb); free(pm); free(pbm); free(pv); free(prn); free(pv1); }
        else {
            for (size_t j = 0; j < pr; j++) pbm[j] = vec_dot_f32(pb + j * d, pm, d);
            for (size_t t = 0; t < ns; t++) memcpy(pv1 + t * p1, pv + t * pr, p1 * 4);
            h->pb = pb; h->pm = pm; h->pbm = pbm; h->pv = pv; h->prn = prn; h->pv1 = pv1;
            h->pr = (int)pr;
        }
    }
    if (!what && b.off != b.n) what = "trailing bytes";
    if (!what) {
        if (n_live == 0) { if (ep != NONE) what = "bad entry point"; }
        else if (ep >= ns || h->st[ep] != ST_LIVE || h->lvl[ep] != (int32_t)maxl) what = "bad entry point";
    }
    if (what) { hnsw_free(h); return qerr_set(e, "hnsw load: %s", what); }
    h->ep = ep;
    h->maxlvl = (int)(int32_t)maxl;
    *out = h;
    return 0;
}

int hnsw_load(hnsw **out, const char *path, qerr *e) {
    char *buf;
    size_t n;
    if (q_read_file(path, &buf, &n, e)) return qerr_wrap(e, "hnsw load");
    int rc = hnsw_load_memory(out, buf, n, e);
    free(buf);
    return rc;
}

int hnsw_load_fd(hnsw **out, int fd, qerr *e) {
    size_t cap = 1 << 20, n = 0;
    uint8_t *buf = malloc(cap);
    if (!buf) return qerr_set(e, "hnsw load: out of memory");
    for (;;) {
        if (n == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); return qerr_set(e, "hnsw load: out of memory"); }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { free(buf); return qerr_set(e, "hnsw load: read: %s", strerror(errno)); }
        if (r == 0) break;
        n += (size_t)r;
    }
    int rc = hnsw_load_memory(out, buf, n, e);
    free(buf);
    return rc;
}
