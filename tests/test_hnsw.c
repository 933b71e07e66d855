/* test_hnsw.c — the HNSW index: recall against brute force for each metric
 * and storage, deletes and slot reuse, filtered search at several
 * selectivities, persistence and corruption detection, concurrent search
 * during inserts, SIMD/scalar kernel agreement. Small random data, fixed
 * seeds, no timing assertions. */
#include <math.h>
#include <time.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "rag/rag.h"
#include "testutil.h"

#define N 2000
#define D 32
#define NQ 50
#define K 10

static uint64_t rs = 1;
static float frand(void) {
    rs = rs * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rs >> 40) & 0xffffff) / (float)0x1000000 * 2.0f - 1.0f;
}
static void fill(float *x, size_t n, uint64_t seed) {
    rs = seed;
    for (size_t i = 0; i < n; i++) x[i] = frand();
}

static float ref_dist(hnsw_metric m, const float *a, const float *b) {
    double s = 0, na = 0, nb = 0;
    for (int i = 0; i < D; i++) {
        if (m == HNSW_L2) s += (double)(a[i] - b[i]) * (a[i] - b[i]);
        else s += (double)a[i] * b[i];
        na += (double)a[i] * a[i];
        nb += (double)b[i] * b[i];
    }
    if (m == HNSW_L2) return (float)s;
    if (m == HNSW_COS) return (float)(1.0 - s / sqrt(na * nb));
    return (float)(1.0 - s);
}

typedef bool (*okfn)(uint64_t id, void *ctx);

/* exact top-k ids among allowed ones (ids = row index + base) */
static int brute_topk(hnsw_metric m, const float *base, int n, const float *q, int k, okfn ok, void *ctx,
                      const bool *dead, uint64_t *out) {
    float bd[K];
    int cnt = 0;
    for (int i = 0; i < n; i++) {
        if (dead && dead[i]) continue;
        if (ok && !ok((uint64_t)i, ctx)) continue;
        float d = ref_dist(m, base + (size_t)i * D, q);
        int j = cnt < k ? cnt++ : k;
        if (j == k && d >= bd[k - 1]) continue;
        if (j == k) j = k - 1;
        while (j > 0 && bd[j - 1] > d) { bd[j] = bd[j - 1]; out[j] = out[j - 1]; j--; }
        bd[j] = d;
        out[j] = (uint64_t)i;
    }
    return cnt;
}

static double overlap(const uint64_t *a, int na, const uint64_t *b, int nb) {
    int h = 0;
    for (int i = 0; i < na; i++)
        for (int j = 0; j < nb; j++)
            if (a[i] == b[j]) { h++; break; }
    return nb ? (double)h / nb : 1.0;
}

static bool g_keep_pruned;

static hnsw *build(hnsw_metric m, hnsw_storage s, bool rerank, const float *base, int n, qpool *pool) {
    hnsw_params p;
    hnsw_params_default(&p);
    p.dim = D;
    p.metric = m;
    p.storage = s;
    p.rerank_f32 = rerank;
    p.keep_pruned = g_keep_pruned;
    p.M = 10;
    p.ef_construction = 40;
    p.capacity = 64; /* force growth */
    hnsw *h;
    qerr e;
    assert_int_equal(hnsw_new(&h, &p, &e), 0);
    uint64_t *ids = malloc((size_t)n * sizeof *ids);
    for (int i = 0; i < n; i++) ids[i] = (uint64_t)i;
    if (pool) assert_int_equal(hnsw_add_batch(h, ids, base, (size_t)n, pool, &e), 0);
    else
        for (int i = 0; i < n; i++) assert_int_equal(hnsw_add(h, ids[i], base + (size_t)i * D, &e), 0);
    free(ids);
    assert_int_equal(hnsw_count(h), (size_t)n);
    return h;
}

static double recall(hnsw *h, hnsw_metric m, const float *base, const float *qs, int ef) {
    double r = 0;
    qerr e;
    for (int qi = 0; qi < NQ; qi++) {
        uint64_t got[K], want[K];
        int n;
        hnsw_search_opts o = {ef, NULL, NULL, 0, HNSW_PLAN_GRAPH, NULL, NULL};
        assert_int_equal(hnsw_search(h, qs + (size_t)qi * D, K, &o, got, NULL, &n, NULL, &e), 0);
        assert_int_equal(n, K);
        int nw = brute_topk(m, base, N, qs + (size_t)qi * D, K, NULL, NULL, NULL, want);
        r += overlap(got, n, want, nw);
    }
    return r / NQ;
}

static void test_recall_metrics(void **state) {
    (void)state;
    float *base = malloc(sizeof(float) * N * D), *qs = malloc(sizeof(float) * NQ * D);
    fill(base, N * D, 11);
    fill(qs, NQ * D, 12);
    hnsw_metric ms[3] = {HNSW_L2, HNSW_IP, HNSW_COS};
    for (int i = 0; i < 3; i++) {
        hnsw *h = build(ms[i], HNSW_F32, false, base, N, NULL);
        double r = recall(h, ms[i], base, qs, 64);
        fprintf(stderr, "metric %d recall@10 %.3f\n", (int)ms[i], r);
        assert_true(r >= 0.95);
        hnsw_free(h);
    }
    /* multithreaded batch build */
    qpool *pool = qpool_new(3);
    hnsw *h = build(HNSW_L2, HNSW_F32, false, base, N, pool);
    double r = recall(h, HNSW_L2, base, qs, 64);
    fprintf(stderr, "batch build recall@10 %.3f\n", r);
    /* Concurrent inserts link in a scheduling-dependent order: over 12 runs
     * on a loaded 2-vCPU host 0.946-0.976 (sequential builds: fixed). The
     * bound catches a broken concurrent build, not ordering noise. */
    assert_true(r >= 0.92);
    hnsw_free(h);
    qpool_free(pool);
    /* keepPrunedConnections build */
    g_keep_pruned = true;
    h = build(HNSW_L2, HNSW_F32, false, base, N, NULL);
    g_keep_pruned = false;
    r = recall(h, HNSW_L2, base, qs, 64);
    fprintf(stderr, "keep-pruned recall@10 %.3f\n", r);
    assert_true(r >= 0.95);
    hnsw_free(h);
    free(base);
    free(qs);
}

static void test_int8(void **state) {
    (void)state;
    float *base = malloc(sizeof(float) * N * D), *qs = malloc(sizeof(float) * NQ * D);
    fill(base, N * D, 21);
    fill(qs, NQ * D, 22);
    for (int rr = 0; rr < 2; rr++) {
        hnsw *h = build(HNSW_L2, HNSW_I8, rr == 1, base, N, NULL);
        double r = recall(h, HNSW_L2, base, qs, 64);
        fprintf(stderr, "int8 rerank=%d recall@10 %.3f (%zu bytes)\n", rr, r, hnsw_memory_bytes(h));
        assert_true(r >= (rr ? 0.95 : 0.90));
        hnsw_free(h);
    }
    hnsw *h = build(HNSW_COS, HNSW_I8, false, base, N, NULL);
    double r = recall(h, HNSW_COS, base, qs, 64);
    fprintf(stderr, "int8 cos recall@10 %.3f\n", r);
    assert_true(r >= 0.90);
    hnsw_free(h);
    free(base);
    free(qs);
}

static void test_delete_reuse(void **state) {
    (void)state;
    float *base = malloc(sizeof(float) * N * D), *qs = malloc(sizeof(float) * NQ * D);
    fill(base, N * D, 31);
    fill(qs, NQ * D, 32);
    hnsw *h = build(HNSW_L2, HNSW_F32, false, base, N, NULL);
    qerr e;
    bool dead[N] = {0};
    for (int i = 0; i < N; i += 3) { assert_int_equal(hnsw_delete(h, (uint64_t)i, &e), 0); dead[i] = true; }
    assert_int_not_equal(hnsw_delete(h, 0, &e), 0); /* already gone */
    assert_non_null(strstr(e.msg, "not found"));
    size_t live = hnsw_count(h), slots = hnsw_slots(h);
    assert_int_equal(live, (size_t)(N - (N + 2) / 3));
    double r = 0;
    for (int qi = 0; qi < NQ; qi++) {
        uint64_t got[K], want[K];
        int n;
        assert_int_equal(hnsw_search(h, qs + (size_t)qi * D, K, NULL, got, NULL, &n, NULL, &e), 0);
        assert_int_equal(n, K);
        for (int j = 0; j < n; j++) assert_false(dead[got[j]]);
        int nw = brute_topk(HNSW_L2, base, N, qs + (size_t)qi * D, K, NULL, NULL, dead, want);
        r += overlap(got, n, want, nw);
    }
    fprintf(stderr, "recall after deleting a third: %.3f\n", r / NQ);
    assert_true(r / NQ >= 0.9);
    /* re-insert under new ids: every freed slot is reused, no growth */
    for (int i = 0; i < N; i += 3) assert_int_equal(hnsw_add(h, (uint64_t)(100000 + i), base + (size_t)i * D, &e), 0);
    assert_int_equal(hnsw_slots(h), slots);
    assert_int_equal(hnsw_count(h), (size_t)N);
    assert_int_not_equal(hnsw_add(h, 100000, base, &e), 0); /* duplicate id */
    assert_non_null(strstr(e.msg, "already"));
    for (int i = 0; i < N; i += 3) {
        uint64_t got[K];
        int n;
        assert_int_equal(hnsw_search(h, base + (size_t)i * D, K, NULL, got, NULL, &n, NULL, &e), 0);
        for (int j = 0; j < n; j++) assert_true(got[j] >= 100000 || !dead[got[j]]);
        assert_true(got[0] == (uint64_t)(100000 + i)); /* the exact vector is found */
    }
    hnsw_free(h);
    /* delete everything (small index): searches return nothing, then it refills */
    h = build(HNSW_L2, HNSW_F32, false, base, 300, NULL);
    slots = hnsw_slots(h);
    for (int i = 0; i < 300; i++) assert_int_equal(hnsw_delete(h, (uint64_t)i, &e), 0);
    assert_int_equal(hnsw_count(h), 0);
    uint64_t got[K];
    int n = 5;
    assert_int_equal(hnsw_search(h, qs, K, NULL, got, NULL, &n, NULL, &e), 0);
    assert_int_equal(n, 0);
    assert_int_equal(hnsw_add(h, 7, base, &e), 0);
    assert_int_equal(hnsw_search(h, qs, K, NULL, got, NULL, &n, NULL, &e), 0);
    assert_int_equal(n, 1);
    assert_int_equal(got[0], 7);
    assert_int_equal(hnsw_slots(h), slots);
    hnsw_free(h);
    free(base);
    free(qs);
}

typedef struct modfilt {
    uint64_t m;
    int calls;
} modfilt;
static bool allow_mod(uint64_t id, void *ctx) {
    modfilt *f = ctx;
    f->calls++;
    return id % f->m == 0;
}

static void allow_mod_many(const uint64_t *ids, size_t n, bool *allow, void *ctx) {
    modfilt *f = ctx;
    f->calls++;
    for (size_t i = 0; i < n; i++) allow[i] = ids[i] % f->m == 0;
}

static void test_filter(void **state) {
    (void)state;
    float *base = malloc(sizeof(float) * N * D), *qs = malloc(sizeof(float) * NQ * D);
    fill(base, N * D, 41);
    fill(qs, NQ * D, 42);
    hnsw *h = build(HNSW_L2, HNSW_F32, false, base, N, NULL);
    qerr e;
    uint64_t mods[4] = {1000, 100, 10, 1}; /* 0.1%, 1%, 10%, 100% */
    int plans[3] = {HNSW_PLAN_AUTO, HNSW_PLAN_GRAPH, HNSW_PLAN_BRUTE};
    for (int mi = 0; mi < 4; mi++) {
        int allowed = (int)((N + mods[mi] - 1) / mods[mi]);
        int expect = allowed < K ? allowed : K;
        for (int pi = 0; pi < 3; pi++) {
            for (int given = 0; given < 2; given++) {
                double r = 0;
                int n_brute = 0;
                for (int qi = 0; qi < NQ; qi++) {
                    modfilt f = {mods[mi], 0};
                    hnsw_search_opts o = {64, allow_mod, &f, given ? 1.0 / (double)mods[mi] : 0, plans[pi], NULL, NULL};
                    uint64_t got[K], want[K];
                    float d[K];
                    hnsw_search_stats st;
                    int n;
                    assert_int_equal(hnsw_search(h, qs + (size_t)qi * D, K, &o, got, d, &n, &st, &e), 0);
                    assert_int_equal(n, expect);
                    for (int j = 0; j < n; j++) assert_int_equal(got[j] % mods[mi], 0);
                    for (int j = 1; j < n; j++) assert_true(d[j - 1] <= d[j]);
                    int nw = brute_topk(HNSW_L2, base, N, qs + (size_t)qi * D, K, allow_mod, &f, NULL, want);
                    assert_int_equal(nw, expect);
                    r += overlap(got, n, want, nw);
                    n_brute += st.plan == HNSW_PLAN_BRUTE;
                }
                r /= NQ;
                if (given == 0 && pi < 2)
                    fprintf(stderr, "selectivity 1/%llu plan %d: recall %.3f, brute-force %d/%d\n",
                            (unsigned long long)mods[mi], plans[pi], r, n_brute, NQ);
                if (plans[pi] == HNSW_PLAN_BRUTE) assert_true(r == 1.0);
                else if (plans[pi] == HNSW_PLAN_AUTO || mods[mi] <= 10) assert_true(r >= 0.9);
                /* (a forced graph walk over 20 or 2 scattered allowed items may miss some:
                 * that is what the planner is for; count and filter still hold) */
                if (plans[pi] == HNSW_PLAN_AUTO && mods[mi] >= 100) assert_int_equal(n_brute, NQ);
            }
        }
    }
    /* k larger than the allowed set: all allowed items, nothing else */
    modfilt f = {500, 0};
    hnsw_search_opts o = {16, allow_mod, &f, 0, HNSW_PLAN_GRAPH, NULL, NULL};
    uint64_t got[K];
    int n;
    assert_int_equal(hnsw_search(h, qs, K, &o, got, NULL, &n, NULL, &e), 0);
    assert_int_equal(n, 4);
    /* a filter that allows nothing */
    f.m = 1u << 30;
    f.m += 1; /* only id 0 */
    assert_int_equal(hnsw_search(h, qs, K, &o, got, NULL, &n, NULL, &e), 0);
    assert_int_equal(n, 1);
    assert_int_equal(got[0], 0);
    hnsw_free(h);
    free(base);
    free(qs);
}

static void search_all(hnsw *h, const float *qs, uint64_t *ids, float *ds) {
    qerr e;
    for (int qi = 0; qi < NQ; qi++) {
        int n;
        assert_int_equal(hnsw_search(h, qs + (size_t)qi * D, K, NULL, ids + qi * K, ds + qi * K, &n, NULL, &e), 0);
        assert_int_equal(n, K);
    }
}

static void test_save_load(void **state) {
    (void)state;
    float *base = malloc(sizeof(float) * N * D), *qs = malloc(sizeof(float) * NQ * D);
    fill(base, N * D, 51);
    fill(qs, NQ * D, 52);
    char path[] = "/tmp/quire_hnsw_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    qerr e;
    for (int s = 0; s < 2; s++) {
        hnsw *h = build(s ? HNSW_COS : HNSW_L2, s ? HNSW_I8 : HNSW_F32, s == 1, base, N, NULL);
        for (int i = 0; i < N; i += 7) assert_int_equal(hnsw_delete(h, (uint64_t)i, &e), 0); /* free slots too */
        uint64_t a[NQ * K], b[NQ * K];
        float da[NQ * K], db[NQ * K];
        search_all(h, qs, a, da);
        assert_int_equal(hnsw_save(h, path, &e), 0);
        hnsw *g;
        assert_int_equal(hnsw_load(&g, path, &e), 0);
        search_all(g, qs, b, db);
        assert_memory_equal(a, b, sizeof a);
        assert_memory_equal(da, db, sizeof da);
        /* the loaded index keeps working: add and reuse a freed slot */
        size_t slots = hnsw_slots(g);
        assert_int_equal(hnsw_add(g, 999999, base, &e), 0);
        assert_int_equal(hnsw_slots(g), slots);
        hnsw_free(g);
        /* fd round trip */
        int wfd = open(path, O_WRONLY | O_TRUNC);
        assert_true(wfd >= 0);
        assert_int_equal(hnsw_save_fd(h, wfd, &e), 0);
        close(wfd);
        int rfd = open(path, O_RDONLY);
        assert_int_equal(hnsw_load_fd(&g, rfd, &e), 0);
        close(rfd);
        search_all(g, qs, b, db);
        assert_memory_equal(a, b, sizeof a);
        hnsw_free(g);
        hnsw_free(h);
    }
    /* a flipped byte anywhere is detected */
    size_t len;
    uint8_t *buf = test_read_file(path, &len);
    size_t where[5] = {3, 40, len / 3, len / 2, len - 2};
    for (int i = 0; i < 5; i++) {
        buf[where[i]] ^= 0x10;
        hnsw *g = NULL;
        assert_int_not_equal(hnsw_load_memory(&g, buf, len, &e), 0);
        assert_null(g);
        assert_true(strstr(e.msg, "checksum") || strstr(e.msg, "magic"));
        buf[where[i]] ^= 0x10;
    }
    hnsw *g;
    assert_int_not_equal(hnsw_load_memory(&g, buf, len / 2, &e), 0); /* truncated */
    assert_int_equal(hnsw_load_memory(&g, buf, len, &e), 0);
    hnsw_free(g);
    free(buf);
    assert_int_not_equal(hnsw_load(&g, "/nonexistent/quire.hnsw", &e), 0);
    unlink(path);
    free(base);
    free(qs);
}

static void test_deterministic(void **state) {
    (void)state;
    float *base = malloc(sizeof(float) * 500 * D);
    fill(base, 500 * D, 61);
    char p1[] = "/tmp/quire_hnsw_a_XXXXXX", p2[] = "/tmp/quire_hnsw_b_XXXXXX";
    close(mkstemp(p1));
    close(mkstemp(p2));
    qerr e;
    hnsw *a = build(HNSW_L2, HNSW_F32, false, base, 500, NULL);
    hnsw *b = build(HNSW_L2, HNSW_F32, false, base, 500, NULL);
    assert_int_equal(hnsw_save(a, p1, &e), 0);
    assert_int_equal(hnsw_save(b, p2, &e), 0);
    size_t n1, n2;
    void *f1 = test_read_file(p1, &n1), *f2 = test_read_file(p2, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(f1, f2, n1);
    free(f1); free(f2);
    unlink(p1); unlink(p2);
    hnsw_free(a); hnsw_free(b);
    free(base);
}

typedef struct conc {
    hnsw *h;
    const float *base, *qs;
    uint64_t started;
    int done;
    long searches;
    hnsw_allow *early; /* made before the first insert: stale from then on */
} conc;

static void *writer(void *arg) {
    conc *c = arg;
    qerr e;
    for (int i = 0; i < N; i++) {
        __atomic_store_n(&c->started, (uint64_t)i + 1, __ATOMIC_SEQ_CST);
        if (hnsw_add(c->h, (uint64_t)i, c->base + (size_t)i * D, &e)) abort();
        if (i % 400 == 399) hnsw_delete(c->h, (uint64_t)(i - 5), &e); /* exclusive ops mixed in */
        if (i == 300 && hnsw_fit_projection(c->h, 8, &e)) abort(); /* later inserts are projected while readers scan */
    }
    __atomic_store_n(&c->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void *reader(void *arg) {
    conc *c = arg;
    qerr e;
    long q = 0;
    while (!__atomic_load_n(&c->done, __ATOMIC_SEQ_CST)) {
        uint64_t got[K];
        int n;
        hnsw_search_opts o = {32, NULL, NULL, 0, q % 5 == 4 ? HNSW_PLAN_BRUTE : HNSW_PLAN_AUTO, NULL, NULL};
        modfilt f = {3, 0};
        if (q % 5 == 3) { o.plan = HNSW_PLAN_BRUTE; o.filter_many = allow_mod_many; o.filter_ctx = &f; }
        /* allow-lists (ids divisible by 7) made while inserts run, or before them */
        hnsw_allow *al = NULL;
        if (q % 5 == 2) {
            uint64_t ids[N / 7 + 1];
            size_t m = 0;
            for (uint64_t id = 0; id < N; id += 7) ids[m++] = id;
            if (q % 10 == 2 && hnsw_allow_new(c->h, ids, m, HNSW_ALLOW_PACK, &al, &e)) abort();
            o.allow = al ? al : c->early;
            o.plan = q % 20 < 10 ? HNSW_PLAN_BRUTE : HNSW_PLAN_AUTO;
        }
        if (hnsw_search(c->h, c->qs + (size_t)(q % NQ) * D, K, &o, got, NULL, &n, NULL, &e)) abort();
        hnsw_allow_free(al);
        uint64_t started = __atomic_load_n(&c->started, __ATOMIC_SEQ_CST);
        for (int j = 0; j < n; j++)
            if (got[j] >= started || (q % 5 == 3 && got[j] % 3) || (q % 5 == 2 && got[j] % 7)) abort();
        q++;
        if (q % 4 == 0) { struct timespec ts = {0, 100000}; nanosleep(&ts, NULL); } /* let the writer run */
    }
    __atomic_fetch_add(&c->searches, q, __ATOMIC_SEQ_CST);
    return NULL;
}

static void test_concurrent(void **state) {
    (void)state;
    float *base = malloc(sizeof(float) * N * D), *qs = malloc(sizeof(float) * NQ * D);
    fill(base, N * D, 71);
    fill(qs, NQ * D, 72);
    hnsw_params p;
    hnsw_params_default(&p);
    p.dim = D;
    p.M = 8;
    p.ef_construction = 64;
    p.capacity = 16; /* growth happens while readers run */
    conc c = {NULL, base, qs, 0, 0, 0, NULL};
    qerr e;
    assert_int_equal(hnsw_new(&c.h, &p, &e), 0);
    uint64_t early[N / 7 + 1];
    size_t ne = 0;
    for (uint64_t id = 0; id < N; id += 7) early[ne++] = id;
    assert_int_equal(hnsw_allow_new(c.h, early, ne, 0, &c.early, &e), 0);
    pthread_t w, r[2];
    pthread_create(&w, NULL, writer, &c);
    for (int i = 0; i < 2; i++) pthread_create(&r[i], NULL, reader, &c);
    pthread_join(w, NULL);
    for (int i = 0; i < 2; i++) pthread_join(r[i], NULL);
    fprintf(stderr, "%ld searches during %d inserts\n", c.searches, N);
    assert_int_equal(hnsw_count(c.h), (size_t)(N - N / 400));
    double rc = recall(c.h, HNSW_L2, base, qs, 64);
    fprintf(stderr, "recall after concurrent build %.3f\n", rc);
    assert_true(rc >= 0.85); /* 5 of N deleted ids are in the brute-force set */
    /* the early list, stale, still finds every live listed id */
    uint64_t got[K];
    int ng;
    hnsw_search_opts o = {16, NULL, NULL, 0, HNSW_PLAN_BRUTE, NULL, c.early};
    assert_int_equal(hnsw_search(c.h, qs, K, &o, got, NULL, &ng, NULL, &e), 0);
    assert_int_equal(ng, K);
    for (int j = 0; j < ng; j++) assert_int_equal(got[j] % 7, 0);
    hnsw_allow_free(c.early);
    hnsw_free(c.h);
    free(base);
    free(qs);
}

static void test_simd_scalar(void **state) {
    (void)state;
    float a[131], b[131];
    int8_t ia[131], ib[131];
    fill(a, 131, 81);
    fill(b, 131, 82);
    for (int i = 0; i < 131; i++) { ia[i] = (int8_t)(a[i] * 127); ib[i] = (int8_t)(b[i] * 127 - (i % 3)); }
    ia[5] = -128; ib[5] = -128;
    bool simd = vec_use_simd(true);
    fprintf(stderr, "SIMD kernels available: %s\n", simd ? "yes" : "no");
    for (size_t n = 1; n <= 130; n++) {
        /* offset by one element: unaligned loads and tails */
        const float *pa = a + (n & 1), *pb = b + 1;
        float l2s = vec_l2sq_f32_scalar(pa, pb, n), l2v = vec_l2sq_f32(pa, pb, n);
        float ds = vec_dot_f32_scalar(pa, pb, n), dv = vec_dot_f32(pa, pb, n);
        float qs_ = vec_dot_f32_i8_scalar(pa, ib + 1, n), qv = vec_dot_f32_i8(pa, ib + 1, n);
        assert_true(fabsf(l2s - l2v) <= 1e-5f * (1 + fabsf(l2s)));
        assert_true(fabsf(ds - dv) <= 1e-5f * (1 + fabsf(ds)) * sqrtf((float)n));
        assert_true(fabsf(qs_ - qv) <= 1e-4f * (1 + fabsf(qs_)) * sqrtf((float)n));
        assert_int_equal(vec_dot_i8_scalar(ia, ib, n), vec_dot_i8(ia, ib, n));
        /* bounded: the full distance under a large bound; >= bound whenever the full one is */
        float big = vec_l2sq_f32_bounded(pa, pb, n, INFINITY);
        assert_true(fabsf(big - l2s) <= 1e-5f * (1 + fabsf(l2s)));
        assert_true(fabsf(vec_l2sq_f32_bounded_scalar(pa, pb, n, INFINITY) - l2s) <= 1e-5f * (1 + fabsf(l2s)));
        float bound = l2s * 0.3f, part = vec_l2sq_f32_bounded(pa, pb, n, bound);
        assert_true(part <= l2s * (1 + 1e-5f) + 1e-6f);
        assert_true(vec_l2sq_f32_bounded_scalar(pa, pb, n, bound) >= bound);
        assert_true(part >= bound);
    }
    /* rows kernel (the 16 and 32 fast paths and the generic one) */
    {
        float q[40], tab[10 * 40], o1[10], o2[10];
        uint32_t rows[6] = {9, 0, 3, 3, 7, 1};
        fill(q, 40, 83);
        fill(tab, 400, 84);
        size_t dims[4] = {16, 32, 5, 40};
        for (int di = 0; di < 4; di++) {
            vec_l2sq_f32_rows(q, tab, dims[di], rows, 6, o1);
            vec_l2sq_f32_rows_scalar(q, tab, dims[di], rows, 6, o2);
            for (int r = 0; r < 6; r++) {
                assert_true(fabsf(o1[r] - o2[r]) <= 1e-5f * (1 + o2[r]));
                assert_true(fabsf(o2[r] - vec_l2sq_f32_scalar(q, tab + rows[r] * dims[di], dims[di])) <= 1e-6f * (1 + o2[r]));
            }
        }
    }
    /* forcing scalar works and the index gives the same answers both ways */
    assert_false(vec_use_simd(false));
    assert_true(fabsf(vec_l2sq_f32(a, b, 130) - vec_l2sq_f32_scalar(a, b, 130)) == 0.0f);
    vec_use_simd(true);
}

static void test_errors(void **state) {
    (void)state;
    hnsw_params p;
    hnsw_params_default(&p);
    hnsw *h;
    qerr e;
    assert_int_not_equal(hnsw_new(&h, &p, &e), 0); /* dim 0 */
    assert_non_null(strstr(e.msg, "dimension"));
    p.dim = 4;
    p.M = 1;
    assert_int_not_equal(hnsw_new(&h, &p, &e), 0);
    p.M = 4;
    assert_int_equal(hnsw_new(&h, &p, &e), 0);
    uint64_t got[3];
    int n = 9;
    float q[4] = {0};
    assert_int_equal(hnsw_search(h, q, 3, NULL, got, NULL, &n, NULL, &e), 0); /* empty index */
    assert_int_equal(n, 0);
    assert_int_not_equal(hnsw_delete(h, 1, &e), 0);
    /* CRC32C check value */
    assert_int_equal(q_crc32c(0, "123456789", 9), 0xe3069283u);
    hnsw_free(h);
}

/* Structured data (a few strong directions plus noise) so that the
 * projected scan's bounds actually prune. */
static void fill_structured(float *x, size_t n, uint64_t seed) {
    float dirs[4][D];
    fill(&dirs[0][0], 4 * D, seed);
    for (size_t i = 0; i < n; i++) {
        float c[4] = {3 * frand(), 2 * frand(), frand(), 0.5f * frand()};
        for (int t = 0; t < D; t++)
            x[i * D + (size_t)t] = c[0] * dirs[0][t] + c[1] * dirs[1][t] + c[2] * dirs[2][t] + c[3] * dirs[3][t] + 0.1f * frand();
    }
}


/* The exact scan with projection bounds returns the exact top k (compared
 * with brute_topk, a second implementation) for l2 and cos, f32 and int8 +
 * f32 storage, several projection sizes and filters (per-id and batch),
 * after later inserts and deletes, and after a save/load round trip; and
 * it computes fewer full distances than there are allowed vectors. */
static void test_projection(void **state) {
    (void)state;
    const int n0 = 1500;
    float *base = malloc(sizeof(float) * N * D), *qs = malloc(sizeof(float) * NQ * D);
    fill_structured(base, N * D / D, 91);
    fill_structured(qs, NQ, 92);
    hnsw_metric metrics[2] = {HNSW_L2, HNSW_COS};
    int prs[3] = {4, 24, D};
    qerr e;
    for (int mi = 0; mi < 2; mi++)
        for (int si = 0; si < 2; si++)
            for (int pi = 0; pi < 3; pi++) {
                hnsw *h = build(metrics[mi], si ? HNSW_I8 : HNSW_F32, si == 1, base, n0, NULL);
                assert_int_equal(hnsw_fit_projection(h, prs[pi], &e), 0);
                assert_int_equal(hnsw_projection_dim(h), prs[pi]);
                /* later inserts are projected; deletes leave holes */
                uint64_t id;
                for (id = (uint64_t)n0; id < N; id++) assert_int_equal(hnsw_add(h, id, base + id * D, &e), 0);
                bool dead[N] = {0};
                for (int i = 7; i < N; i += 97) { assert_int_equal(hnsw_delete(h, (uint64_t)i, &e), 0); dead[i] = true; }
                char path[256];
                snprintf(path, sizeof path, "%s/hnsw_proj_%d.bin", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
                for (int round = 0; round < 2; round++) {
                    if (round == 1) { /* the projection survives save/load */
                        assert_int_equal(hnsw_save(h, path, &e), 0);
                        hnsw_free(h);
                        assert_int_equal(hnsw_load(&h, path, &e), 0);
                        unlink(path);
                        assert_int_equal(hnsw_projection_dim(h), prs[pi]);
                    }
                    uint64_t mods[3] = {1, 10, 3};
                    for (int fm = 0; fm < 3; fm++)
                        for (int qi = 0; qi < NQ; qi++) {
                            modfilt f = {mods[fm], 0};
                            hnsw_search_opts o = {16, fm == 2 ? NULL : allow_mod, &f, 0, HNSW_PLAN_BRUTE,
                                                  fm == 2 ? allow_mod_many : NULL, NULL};
                            uint64_t got[K], want[K];
                            float d[K];
                            hnsw_search_stats st;
                            int n;
                            const float *q = qs + (size_t)qi * D;
                            assert_int_equal(hnsw_search(h, q, K, &o, got, d, &n, &st, &e), 0);
                            assert_int_equal(st.plan, HNSW_PLAN_BRUTE);
                            int nw = brute_topk(metrics[mi], base, N, q, K, allow_mod, &f, dead, want);
                            assert_int_equal(n, nw);
                            for (int j = 0; j < n; j++) {
                                /* same distances as the reference (ids could swap on exact ties) */
                                float dw = ref_dist(metrics[mi], base + want[j] * D, q);
                                assert_true(fabsf(d[j] - dw) <= 1e-4f * (1 + fabsf(dw)));
                                assert_int_equal(got[j] % mods[fm], 0);
                            }
                            assert_true(overlap(got, n, want, nw) == 1.0);
                            if (fm == 0 && prs[pi] == D) /* bounds prune: few exact distances */
                                assert_true(st.n_dist < (uint64_t)(N - N / 97) + (uint64_t)N / 2);
                        }
                }
                hnsw_free(h);
            }
    /* errors: ip metric, int8 without f32, size out of range */
    hnsw *h = build(HNSW_IP, HNSW_F32, false, base, 100, NULL);
    assert_int_not_equal(hnsw_fit_projection(h, 4, &e), 0);
    assert_non_null(strstr(e.msg, "ip"));
    hnsw_free(h);
    h = build(HNSW_L2, HNSW_I8, false, base, 100, NULL);
    assert_int_not_equal(hnsw_fit_projection(h, 4, &e), 0);
    assert_non_null(strstr(e.msg, "f32"));
    hnsw_free(h);
    h = build(HNSW_L2, HNSW_F32, false, base, 100, NULL);
    assert_int_not_equal(hnsw_fit_projection(h, D + 1, &e), 0);
    assert_int_equal(hnsw_fit_projection(h, 8, &e), 0);
    assert_int_equal(hnsw_fit_projection(h, 0, &e), 0); /* removed again */
    assert_int_equal(hnsw_projection_dim(h), 0);
    hnsw_free(h);
    free(base);
    free(qs);
}

/* Allow-lists against the callback path (a second implementation of the
 * same set): random sets of every size (empty, with duplicates, with ids
 * not in the index), every plan, with and without a projection, packed or
 * not, combined with a predicate, and stale lists (after inserts of listed
 * ids and deletes) — the exact scan returns exactly what the callback scan
 * returns; the graph walk returns only listed ids, min(k, |set|) of them. */
typedef struct setfilt {
    const bool *in;
    size_t n;
    const modfilt *also; /* and id % also->m == 0, if set */
} setfilt;
static bool in_set(uint64_t id, void *ctx) {
    const setfilt *f = ctx;
    return id < f->n && f->in[id] && (!f->also || id % f->also->m == 0);
}

static void check_same(hnsw *h, const float *q, int plan, const hnsw_allow *a, setfilt *sf, const modfilt *also, int expect) {
    qerr e;
    uint64_t g1[K], g2[K];
    float d1[K], d2[K];
    int n1, n2;
    hnsw_search_stats st;
    modfilt mf = also ? *also : (modfilt){1, 0};
    hnsw_search_opts oa = {16, also ? allow_mod : NULL, &mf, 0, plan, NULL, a};
    assert_int_equal(hnsw_search(h, q, K, &oa, g1, d1, &n1, &st, &e), 0);
    sf->also = also;
    hnsw_search_opts oc = {16, in_set, sf, 0, plan, NULL, NULL};
    assert_int_equal(hnsw_search(h, q, K, &oc, g2, d2, &n2, NULL, &e), 0);
    sf->also = NULL;
    if (expect >= 0) assert_int_equal(n1, expect < K ? expect : K);
    for (int j = 0; j < n1; j++) {
        assert_true(in_set(g1[j], sf) && (!also || g1[j] % also->m == 0));
        if (j) assert_true(d1[j - 1] <= d1[j]);
    }
    if (st.plan == HNSW_PLAN_BRUTE && plan == HNSW_PLAN_BRUTE) {
        assert_int_equal(n1, n2);
        for (int j = 0; j < n1; j++) {
            assert_true(g1[j] == g2[j]);
            assert_true(d1[j] == d2[j]);
        }
    }
}

static void test_allow_list(void **state) {
    (void)state;
    const int n0 = 1800;
    float *base = malloc(sizeof(float) * N * D), *qs = malloc(sizeof(float) * NQ * D);
    fill_structured(base, N, 93);
    fill_structured(qs, NQ, 94);
    qerr e;
    size_t sizes[7] = {0, 1, 5, 40, 200, 1000, 2100};
    for (int variant = 0; variant < 4; variant++) {
        /* 0: f32 + projection, 1: f32 plain, 2: int8 + f32 + projection, 3: int8 plain */
        hnsw *h = build(HNSW_L2, variant >= 2 ? HNSW_I8 : HNSW_F32, variant == 2, base, n0, NULL);
        if (variant == 0 || variant == 2) assert_int_equal(hnsw_fit_projection(h, 8, &e), 0);
        for (int si = 0; si < 7; si++)
            for (int pk = 0; pk < 2; pk++) {
                bool in[N + 64] = {0};
                uint64_t ids[2200];
                size_t n = sizes[si];
                rs = 1000 + (uint64_t)si;
                for (size_t j = 0; j < n; j++) {
                    /* ids up to N + 63: some not in the index (n0..N later added) */
                    uint64_t id = (uint64_t)((frand() + 1.0f) * 0.5f * (N + 63));
                    if (id >= N + 64) id = N + 63;
                    ids[j] = id;
                }
                if (n > 2) ids[n - 1] = ids[0]; /* a duplicate */
                for (size_t j = 0; j < n; j++) in[ids[j]] = true;
                size_t distinct = 0;
                for (int id = 0; id < N + 64; id++) distinct += in[id];
                hnsw_allow *a;
                assert_int_equal(hnsw_allow_new(h, ids, n, pk ? HNSW_ALLOW_PACK : 0, &a, &e), 0);
                int expect = 0;
                for (int id = 0; id < n0; id++) expect += in[id];
                setfilt sf = {in, N + 64, NULL};
                modfilt three = {3, 0};
                int plans[3] = {HNSW_PLAN_BRUTE, HNSW_PLAN_AUTO, HNSW_PLAN_GRAPH};
                for (int qi = 0; qi < NQ; qi += 5)
                    for (int pi = 0; pi < 3; pi++) {
                        check_same(h, qs + (size_t)qi * D, plans[pi], a, &sf, NULL, expect);
                        check_same(h, qs + (size_t)qi * D, plans[pi], a, &sf, &three, -1);
                    }
                /* stale: insert the rest (listed ids among them), delete some */
                hnsw *h2 = build(HNSW_L2, variant >= 2 ? HNSW_I8 : HNSW_F32, variant == 2, base, n0, NULL);
                if (variant == 0 || variant == 2) assert_int_equal(hnsw_fit_projection(h2, 8, &e), 0);
                hnsw_allow *a2;
                assert_int_equal(hnsw_allow_new(h2, ids, n, pk ? HNSW_ALLOW_PACK : 0, &a2, &e), 0);
                for (uint64_t id = (uint64_t)n0; id < N; id++) assert_int_equal(hnsw_add(h2, id, base + id * D, &e), 0);
                bool dead[N] = {0};
                for (int i = 3; i < N; i += 7) { assert_int_equal(hnsw_delete(h2, (uint64_t)i, &e), 0); dead[i] = true; }
                int expect2 = 0;
                for (int id = 0; id < N; id++) expect2 += in[id] && !dead[id];
                for (int qi = 0; qi < NQ; qi += 5) {
                    check_same(h2, qs + (size_t)qi * D, HNSW_PLAN_BRUTE, a2, &sf, NULL, expect2);
                    check_same(h2, qs + (size_t)qi * D, HNSW_PLAN_GRAPH, a2, &sf, NULL, expect2);
                    check_same(h2, qs + (size_t)qi * D, HNSW_PLAN_AUTO, a2, &sf, &three, -1);
                    /* and against brute_topk (no callback at all) */
                    uint64_t got[K], want[K];
                    int ng;
                    hnsw_search_opts o = {16, NULL, NULL, 0, HNSW_PLAN_BRUTE, NULL, a2};
                    assert_int_equal(hnsw_search(h2, qs + (size_t)qi * D, K, &o, got, NULL, &ng, NULL, &e), 0);
                    int nw = brute_topk(HNSW_L2, base, N, qs + (size_t)qi * D, K, in_set, &sf, dead, want);
                    assert_int_equal(ng, nw);
                    if (variant != 3) assert_true(overlap(got, ng, want, nw) == 1.0);
                }
                /* a list of another index is refused */
                hnsw_search_opts ox = {16, NULL, NULL, 0, HNSW_PLAN_BRUTE, NULL, a};
                uint64_t got[K];
                int ng;
                assert_int_not_equal(hnsw_search(h2, qs, K, &ox, got, NULL, &ng, NULL, &e), 0);
                assert_non_null(strstr(e.msg, "allow-list"));
                assert_int_equal(hnsw_allow_size(a), distinct);
                hnsw_allow_free(a2);
                hnsw_free(h2);
                hnsw_allow_free(a);
            }
        hnsw_allow *bad;
        assert_int_not_equal(hnsw_allow_new(h, NULL, 0, 8, &bad, &e), 0);
        assert_null(bad);
        hnsw_free(h);
    }
    free(base);
    free(qs);
}

/* PCA: orthonormal axes; on data with one dominant direction the first
 * axis is that direction. */
static void test_pca(void **state) {
    (void)state;
    const int n = 500, d = 12, r = 4;
    float *x = malloc(sizeof(float) * (size_t)n * (size_t)d), mean[12], basis[4 * 12];
    rs = 5;
    for (int i = 0; i < n; i++)
        for (int t = 0; t < d; t++) x[i * d + t] = (t == 3 ? 10.0f * frand() : frand()) + 7.0f;
    qerr e;
    assert_int_equal(pca_fit(x, (size_t)n, d, r, mean, basis, &e), 0);
    for (int a = 0; a < r; a++)
        for (int b = 0; b < r; b++) {
            double s = 0;
            for (int t = 0; t < d; t++) s += (double)basis[a * d + t] * basis[b * d + t];
            assert_true(fabs(s - (a == b ? 1.0 : 0.0)) < 1e-5);
        }
    assert_true(fabsf(fabsf(basis[3]) - 1.0f) < 0.01f);
    for (int t = 0; t < d; t++) assert_true(fabsf(mean[t] - 7.0f) < 1.0f);
    assert_int_not_equal(pca_fit(x, (size_t)n, d, d + 1, mean, basis, &e), 0);
    assert_int_not_equal(pca_fit(x, 1, d, r, mean, basis, &e), 0);
    free(x);
}

static double now_s(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return (double)ts.tv_sec + ts.tv_nsec * 1e-9; }
static double t_start;
static int setup_t(void **state) { (void)state; t_start = now_s(); return 0; }
static int teardown_t(void **state) { (void)state; fprintf(stderr, "  (%.2f s)\n", now_s() - t_start); return 0; }
#undef cmocka_unit_test
#define cmocka_unit_test(f) cmocka_unit_test_setup_teardown(f, setup_t, teardown_t)

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simd_scalar), cmocka_unit_test(test_errors),
        cmocka_unit_test(test_recall_metrics), cmocka_unit_test(test_int8),
        cmocka_unit_test(test_delete_reuse), cmocka_unit_test(test_filter),
        cmocka_unit_test(test_save_load), cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_concurrent), cmocka_unit_test(test_projection),
        cmocka_unit_test(test_pca), cmocka_unit_test(test_allow_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
