/* cmd_bench_ann.c — `quire bench ann`: builds an HNSW index over a base set,
 * runs the queries at several ef values and reports recall@k against exact
 * ground truth and single-thread queries/s. Reads .fvecs/.ivecs and the IDX
 * .gz files of Debian's dataset-fashion-mnist (via zlib). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "cli.h"
#include "rag/rag.h"

void help_bench_ann(FILE *out) {
    fprintf(out,
            "usage: quire bench ann --base B --queries Q --gt G.ivecs [OPTIONS] [--json]\n"
            "  B, Q: .fvecs, or IDX images (.gz or raw; uint8 pixels become floats)\n"
            "  --metric l2|ip|cos       distance (default l2)\n"
            "  --M 16                   links per node (2M on layer 0)\n"
            "  --ef-construction 200    build beam width\n"
            "  --ef 16,32,64,128        search beam widths, one run each\n"
            "  -k 10                    results per query; recall@k against the first k of G\n"
            "  -t THREADS               build threads (default: all CPUs); queries run on one thread\n"
            "  --storage f32|i8         vector storage (default f32); --rerank re-ranks i8 with f32\n"
"  --keep-pruned            keepPrunedConnections (denser graph; helps filtered search)\n"
            "  --seed S                 level-generator seed (default 42)\n"
            "  --nq N                   use only the first N queries\n"
            "  --filter-labels L.gz --filter qmod10\n"
            "                           filtered search: allow base items whose label (IDX labels\n"
            "                           file) equals query_index mod 10; G must be the matching truth\n"
            "  --plan auto|graph|brute  filtered-search plan (default auto)\n"
            "  --filter-form F[,F...]   how the filter reaches the search, one run per form and ef:\n"
            "                           per-id (callback per id), batch (callback per block of ids,\n"
            "                           the default), allow (an allow-list per label: the ids with\n"
            "                           that label), allow-packed (the same with its own copy of the\n"
            "                           first projected coordinates); --filter-per-id = per-id\n"
            "  --proj R                 fit R principal axes after the build: the exact scan then\n"
            "                           prunes with lower bounds from R coordinates (0: plain scan)\n"
            "  --index PATH             load the index from PATH if it exists (build_s is then the\n"
            "                           load time), else build it and save it there\n"
            "  --json                   one JSON object: build_s, runs [{ef, recall@10, queries_per_s}], ...\n");
}

typedef struct mat {
    float *f;    /* n × d floats (vectors) */
    int32_t *i;  /* n × d ints (ground truth) */
    size_t n, d;
} mat;

/* Reads a whole (possibly gzip-compressed) file. */
static int read_all(const char *path, uint8_t **out, size_t *len, qerr *e) {
    gzFile g = gzopen(path, "rb");
    if (!g) return qerr_set(e, "cannot open %s", path);
    size_t cap = 1 << 20, n = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (!buf) { gzclose(g); return qerr_set(e, "out of memory reading %s", path); }
        if (n == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); buf = NULL; continue; }
            buf = nb;
            cap *= 2;
        }
        unsigned want = (unsigned)((cap - n) > (1u << 30) ? (1u << 30) : (cap - n));
        int r = gzread(g, buf + n, want);
        if (r < 0) { free(buf); gzclose(g); return qerr_set(e, "%s: read error (corrupt gzip?)", path); }
        if (r == 0) break;
        n += (size_t)r;
    }
    gzclose(g);
    *out = buf;
    *len = n;
    return 0;
}

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

/* .fvecs / .ivecs (int32 dim, then dim values, per row) or IDX uint8. */
static int load_mat(const char *path, bool ints, mat *m, qerr *e) {
    memset(m, 0, sizeof *m);
    uint8_t *b;
    size_t n;
    if (read_all(path, &b, &n, e)) return -1;
    if (n >= 4 && b[0] == 0 && b[1] == 0 && b[2] == 0x08 && (b[3] == 1 || b[3] == 3)) {
        if (ints) { free(b); return qerr_set(e, "%s: IDX file where ground truth (.ivecs) was expected", path); }
        int nd = b[3];
        if (n < 4 + 4 * (size_t)nd) { free(b); return qerr_set(e, "%s: truncated IDX header", path); }
        size_t rows = be32(b + 4), d = 1;
        for (int k = 1; k < nd; k++) d *= be32(b + 4 + 4 * (size_t)k);
        size_t hdr = 4 + 4 * (size_t)nd;
        if (rows == 0 || d == 0 || (n - hdr) / d < rows) { free(b); return qerr_set(e, "%s: IDX size mismatch", path); }
        m->f = malloc(rows * d * sizeof(float));
        if (!m->f) { free(b); return qerr_set(e, "out of memory"); }
        for (size_t i = 0; i < rows * d; i++) m->f[i] = (float)b[hdr + i];
        m->n = rows;
        m->d = d;
        free(b);
        return 0;
    }
    if (n < 4) { free(b); return qerr_set(e, "%s: empty or not a .fvecs/.ivecs file", path); }
    int32_t d;
    memcpy(&d, b, 4);
    if (d <= 0 || d > (1 << 20) || n % (4 + 4 * (size_t)d)) {
        free(b);
        return qerr_set(e, "%s: not a %s file (bad dimension or size)", path, ints ? ".ivecs" : ".fvecs");
    }
    size_t rows = n / (4 + 4 * (size_t)d);
    void *dst = malloc(rows * (size_t)d * 4);
    if (!dst) { free(b); return qerr_set(e, "out of memory"); }
    for (size_t r = 0; r < rows; r++) {
        int32_t dr;
        memcpy(&dr, b + r * (4 + 4 * (size_t)d), 4);
        if (dr != d) { free(b); free(dst); return qerr_set(e, "%s: row %zu has dimension %d, not %d", path, r, dr, d); }
        memcpy((uint8_t *)dst + r * (size_t)d * 4, b + r * (4 + 4 * (size_t)d) + 4, (size_t)d * 4);
    }
    free(b);
    if (ints) m->i = dst; else m->f = dst;
    m->n = rows;
    m->d = (size_t)d;
    return 0;
}

static int load_labels(const char *path, uint8_t **lab, size_t *n, qerr *e) {
    uint8_t *b;
    size_t len;
    if (read_all(path, &b, &len, e)) return -1;
    if (len < 8 || be32(b) != 0x00000801u || len - 8 < be32(b + 4)) {
        free(b);
        return qerr_set(e, "%s: not an IDX label file", path);
    }
    *n = be32(b + 4);
    *lab = malloc(*n ? *n : 1);
    if (!*lab) { free(b); return qerr_set(e, "out of memory"); }
    memcpy(*lab, b + 8, *n);
    free(b);
    return 0;
}

typedef struct qfilter {
    const uint8_t *labels;
    size_t n;
    uint8_t want;
} qfilter;

static bool label_eq(uint64_t id, void *ctx) {
    const qfilter *f = ctx;
    return id < f->n && f->labels[id] == f->want;
}

static void label_eq_many(const uint64_t *ids, size_t n, bool *allow, void *ctx) {
    const qfilter *f = ctx;
    for (size_t i = 0; i < n; i++) allow[i] = ids[i] < f->n && f->labels[ids[i]] == f->want;
}

static double vdist(const hnsw_params *p, const float *a, const float *b, size_t d) {
    double s = 0, na = 0, nb = 0;
    for (size_t i = 0; i < d; i++) {
        if (p->metric == HNSW_L2) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        else s += (double)a[i] * b[i];
        na += (double)a[i] * a[i];
        nb += (double)b[i] * b[i];
    }
    if (p->metric == HNSW_L2) return s;
    if (p->metric == HNSW_COS) return 1.0 - s / (sqrt(na * nb) + 1e-30);
    return 1.0 - s;
}

int cmd_bench_ann(int argc, char **argv) {
    const char *cmd = "bench ann";
    const char *base = NULL, *queries = NULL, *gt = NULL, *labels_path = NULL, *filter = NULL;
    const char *ef_list = "16,32,64,128", *index_path = NULL;
    hnsw_params p;
    hnsw_params_default(&p);
    long long k = 10, threads = q_default_threads(), nq_max = -1, proj = -1;
    int plan = HNSW_PLAN_AUTO;
    bool json = false;
    const char *forms_arg = "batch";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        long long iv;
        if (strcmp(a, "--json") == 0) { json = true; continue; }
        if (strcmp(a, "--rerank") == 0) { p.rerank_f32 = true; continue; }
        if (strcmp(a, "--keep-pruned") == 0) { p.keep_pruned = true; continue; }
        if (strcmp(a, "--filter-per-id") == 0) { forms_arg = "per-id"; continue; }
        if (a[0] != '-') return cli_fail(cmd, "unexpected argument %s", a);
        if (!(v = cli_value(cmd, argc, argv, &i))) return EXIT_USAGE;
        if (strcmp(a, "--base") == 0) base = v;
        else if (strcmp(a, "--queries") == 0) queries = v;
        else if (strcmp(a, "--gt") == 0) gt = v;
        else if (strcmp(a, "--ef") == 0) ef_list = v;
        else if (strcmp(a, "--filter-labels") == 0) labels_path = v;
        else if (strcmp(a, "--filter") == 0) filter = v;
        else if (strcmp(a, "--index") == 0) index_path = v;
        else if (strcmp(a, "--filter-form") == 0) forms_arg = v;
        else if (strcmp(a, "--metric") == 0) {
            if (strcmp(v, "l2") == 0) p.metric = HNSW_L2;
            else if (strcmp(v, "ip") == 0) p.metric = HNSW_IP;
            else if (strcmp(v, "cos") == 0) p.metric = HNSW_COS;
            else return cli_fail(cmd, "--metric must be l2, ip or cos (got '%s')", v);
        } else if (strcmp(a, "--storage") == 0) {
            if (strcmp(v, "f32") == 0) p.storage = HNSW_F32;
            else if (strcmp(v, "i8") == 0 || strcmp(v, "int8") == 0) p.storage = HNSW_I8;
            else return cli_fail(cmd, "--storage must be f32 or i8 (got '%s')", v);
        } else if (strcmp(a, "--plan") == 0) {
            if (strcmp(v, "auto") == 0) plan = HNSW_PLAN_AUTO;
            else if (strcmp(v, "graph") == 0) plan = HNSW_PLAN_GRAPH;
            else if (strcmp(v, "brute") == 0) plan = HNSW_PLAN_BRUTE;
            else return cli_fail(cmd, "--plan must be auto, graph or brute (got '%s')", v);
        } else if (strcmp(a, "--M") == 0 || strcmp(a, "--ef-construction") == 0 || strcmp(a, "-k") == 0 ||
                   strcmp(a, "-t") == 0 || strcmp(a, "--threads") == 0 || strcmp(a, "--seed") == 0 ||
                   strcmp(a, "--nq") == 0 || strcmp(a, "--proj") == 0) {
            if (!cli_parse_int(v, &iv) || iv < 0) return cli_fail(cmd, "%s needs a non-negative integer (got '%s')", a, v);
            if (strcmp(a, "--M") == 0) { if (iv < 2 || iv > 512) return cli_fail(cmd, "--M must be 2..512"); p.M = (int)iv; }
            else if (strcmp(a, "--ef-construction") == 0) { if (iv < 1 || iv > 100000) return cli_fail(cmd, "--ef-construction must be 1..100000"); p.ef_construction = (int)iv; }
            else if (strcmp(a, "-k") == 0) { if (iv < 1 || iv > 10000) return cli_fail(cmd, "-k must be 1..10000"); k = iv; }
            else if (strcmp(a, "--seed") == 0) p.seed = (uint64_t)iv;
            else if (strcmp(a, "--nq") == 0) nq_max = iv;
            else if (strcmp(a, "--proj") == 0) proj = iv;
            else { if (iv < 1 || iv > 1024) return cli_fail(cmd, "-t must be 1..1024"); threads = iv; }
        } else return cli_fail(cmd, "unknown option %s", a);
    }
    if (!base || !queries || !gt) return cli_fail(cmd, "--base, --queries and --gt are required");
    if (!!labels_path != !!filter) return cli_fail(cmd, "--filter-labels and --filter go together");
    if (filter && strcmp(filter, "qmod10") != 0) return cli_fail(cmd, "--filter: only 'qmod10' is known (got '%s')", filter);
    enum { FORM_PER_ID, FORM_BATCH, FORM_ALLOW, FORM_ALLOW_PACKED };
    static const char *const form_names[] = {"per-id", "batch", "allow", "allow-packed"};
    int forms[8], n_form = 0;
    for (const char *s = forms_arg; *s;) {
        size_t len = strcspn(s, ",");
        int f = -1;
        for (int j = 0; j < 4; j++)
            if (strlen(form_names[j]) == len && strncmp(s, form_names[j], len) == 0) f = j;
        if (f < 0 || n_form == 8)
            return cli_fail(cmd, "--filter-form: expected a list of per-id, batch, allow, allow-packed (got '%s')", forms_arg);
        forms[n_form++] = f;
        s += len;
        if (*s == ',') s++;
    }
    if (!n_form) return cli_fail(cmd, "--filter-form: empty list");
    int efs[64], n_ef = 0;
    for (const char *s = ef_list; *s;) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 100000 || n_ef == 64) return cli_fail(cmd, "--ef: bad list '%s'", ef_list);
        efs[n_ef++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return cli_fail(cmd, "--ef: bad list '%s'", ef_list);
    }

    qerr e;
    mat B, Q, G;
    uint8_t *labels = NULL;
    size_t n_labels = 0;
    if (load_mat(base, false, &B, &e)) return cli_fail(cmd, "%s", e.msg);
    if (load_mat(queries, false, &Q, &e)) { free(B.f); return cli_fail(cmd, "%s", e.msg); }
    if (load_mat(gt, true, &G, &e)) { free(B.f); free(Q.f); return cli_fail(cmd, "%s", e.msg); }
    int rc = EXIT_OK;
    hnsw *h = NULL;
    uint64_t *ids = NULL, *out = NULL, *all_out = NULL;
    int *res_ids = NULL;
    qpool *pool = NULL;
    hnsw_allow *allow[2][256] = {{NULL}};
    double allow_s[2] = {0, 0};
#define FAIL(...) do { rc = cli_fail(cmd, __VA_ARGS__); goto done; } while (0)
    if (B.d != Q.d) FAIL("base dimension %zu differs from query dimension %zu", B.d, Q.d);
    size_t nq = Q.n < G.n ? Q.n : G.n;
    if (nq_max >= 0 && (size_t)nq_max < nq) nq = (size_t)nq_max;
    if (G.n < nq || G.d < (size_t)k) FAIL("ground truth has %zu rows of %zu, need %zu rows of >= %lld", G.n, G.d, nq, k);
    if (labels_path) {
        if (load_labels(labels_path, &labels, &n_labels, &e)) FAIL("%s", e.msg);
        if (n_labels != B.n) FAIL("%zu labels for %zu base vectors", n_labels, B.n);
    }
    p.dim = (int)B.d;
    p.capacity = B.n;
    bool loaded = false;
    double t0 = q_now();
    if (index_path && access(index_path, R_OK) == 0) {
        if (hnsw_load(&h, index_path, &e)) FAIL("%s", e.msg);
        if (hnsw_dim(h) != (int)B.d || hnsw_count(h) != B.n) FAIL("%s: index does not match the base set", index_path);
        loaded = true;
    } else if (hnsw_new(&h, &p, &e)) FAIL("%s", e.msg);
    ids = malloc(B.n * sizeof *ids);
    out = malloc((size_t)k * sizeof *out);
    all_out = malloc(nq * (size_t)k * sizeof *all_out);
    res_ids = malloc(nq * sizeof *res_ids);
    if (!ids || !out || !all_out || !res_ids) FAIL("out of memory");
    for (size_t i = 0; i < B.n; i++) ids[i] = i;
    pool = qpool_new((int)threads);
    if (!pool) FAIL("cannot start %lld threads", threads);
    if (!loaded && hnsw_add_batch(h, ids, B.f, B.n, pool, &e)) FAIL("%s", e.msg);
    double build_s = q_now() - t0;
    if (!loaded && index_path && hnsw_save(h, index_path, &e)) FAIL("%s", e.msg);
    double proj_s = 0;
    if (proj >= 0 && proj != hnsw_projection_dim(h)) {
        double tp = q_now();
        if (hnsw_fit_projection(h, (int)proj, &e)) FAIL("%s", e.msg);
        proj_s = q_now() - tp;
    }

    /* allow-lists: one per label (its posting list), built after the
     * projection so the packed form copies its coordinates */
    for (int fi = 0; labels && fi < n_form; fi++) {
        if (forms[fi] != FORM_ALLOW && forms[fi] != FORM_ALLOW_PACKED) continue;
        int pk = forms[fi] == FORM_ALLOW_PACKED;
        if (allow[pk][0]) continue;
        double ta = q_now();
        size_t cnt[256] = {0};
        for (size_t i = 0; i < B.n; i++) cnt[labels[i]]++;
        uint64_t *lst = malloc((B.n ? B.n : 1) * sizeof *lst);
        if (!lst) FAIL("out of memory");
        for (int c = 0; c < 256; c++) {
            size_t m = 0;
            if (cnt[c] || c < 10)
                for (size_t i = 0; i < B.n; i++)
                    if (labels[i] == c) lst[m++] = i;
            if (hnsw_allow_new(h, lst, m, pk ? HNSW_ALLOW_PACK : 0, &allow[pk][c], &e)) { free(lst); FAIL("%s", e.msg); }
        }
        free(lst);
        allow_s[pk] = q_now() - ta;
    }

    jw w;
    jw_init(&w, stdout);
    if (json) {
        jw_obj_begin(&w);
        jw_key(&w, "build_s"); jw_num(&w, build_s);
        jw_key(&w, "index_loaded"); jw_bool(&w, loaded);
        jw_key(&w, "n_base"); jw_int(&w, (long long)B.n);
        jw_key(&w, "n_queries"); jw_int(&w, (long long)nq);
        jw_key(&w, "dim"); jw_int(&w, (long long)B.d);
        jw_key(&w, "metric"); jw_str(&w, p.metric == HNSW_L2 ? "l2" : p.metric == HNSW_IP ? "ip" : "cos");
        jw_key(&w, "storage"); jw_str(&w, p.storage == HNSW_I8 ? (p.rerank_f32 ? "i8+f32rerank" : "i8") : "f32");
        jw_key(&w, "M"); jw_int(&w, p.M);
        jw_key(&w, "keep_pruned"); jw_bool(&w, p.keep_pruned);
        jw_key(&w, "ef_construction"); jw_int(&w, p.ef_construction);
        jw_key(&w, "k"); jw_int(&w, k);
        jw_key(&w, "build_threads"); jw_int(&w, threads);
        jw_key(&w, "query_threads"); jw_int(&w, 1);
        jw_key(&w, "index_bytes"); jw_int(&w, (long long)hnsw_memory_bytes(h));
        jw_key(&w, "proj_dim"); jw_int(&w, hnsw_projection_dim(h));
        jw_key(&w, "proj_fit_s"); jw_num(&w, proj_s);
        jw_key(&w, "filter"); if (filter) jw_str(&w, "label-eq-qmod10"); else jw_null(&w);
        jw_key(&w, "filter_form"); jw_str(&w, form_names[forms[0]]);
        jw_key(&w, "allow_build_s"); jw_num(&w, allow_s[0] + allow_s[1]);
        jw_key(&w, "simd"); jw_bool(&w, vec_use_simd(true));
        jw_key(&w, "runs");
        jw_arr_begin(&w);
    } else {
        printf("built %zu × %zu in %.2f s (%lld threads), index %.1f MB, projection %d axes (fit %.2f s), allow-lists %.2f s\n", B.n,
               B.d, build_s, threads, (double)hnsw_memory_bytes(h) / 1e6, hnsw_projection_dim(h), proj_s,
               allow_s[0] + allow_s[1]);
    }
    for (int run = 0; run < n_ef * (labels ? n_form : 1); run++) {
        int r = labels ? run / n_form : run, form = forms[labels ? run % n_form : 0];
        qfilter qf = {labels, n_labels, 0};
        hnsw_search_opts so = {efs[r], NULL, &qf, 0, plan, NULL, NULL};
        if (labels && form == FORM_PER_ID) so.filter = label_eq;
        if (labels && form == FORM_BATCH) so.filter_many = label_eq_many;
        /* selectivity 0: the planner samples the callback (an allow-list knows its size) */
        double hits = 0, hits_d = 0, nd = 0;
        size_t n_brute = 0, n_fallback = 0;
        double t1 = q_now();
        for (size_t qi = 0; qi < nq; qi++) {
            qf.want = (uint8_t)(qi % 10);
            if (labels && (form == FORM_ALLOW || form == FORM_ALLOW_PACKED)) so.allow = allow[form == FORM_ALLOW_PACKED][qf.want];
            int n;
            hnsw_search_stats st;
            if (hnsw_search(h, Q.f + qi * Q.d, (int)k, &so, out, NULL, &n, &st, &e)) FAIL("%s", e.msg);
            nd += (double)st.n_dist;
            n_brute += st.plan == HNSW_PLAN_BRUTE;
            n_fallback += st.fallback;
            const int32_t *g = G.i + qi * G.d;
            for (int a = 0; a < n; a++)
                for (long long b = 0; b < k; b++)
                    if ((int64_t)out[a] == g[b]) { hits++; break; }
            res_ids[qi] = 0;
            memcpy(all_out + qi * (size_t)k, out, (size_t)n * sizeof *out);
            res_ids[qi] = n;
        }
        double dt = q_now() - t1;
        /* ann-benchmarks style: a result counts when it is no farther than the
         * k-th true neighbour (ties in the data then do not matter); outside
         * the timed loop */
        for (size_t qi = 0; qi < nq; qi++) {
            const int32_t *g = G.i + qi * G.d;
            if (g[k - 1] < 0 || (size_t)g[k - 1] >= B.n) continue;
            double thr = vdist(&p, Q.f + qi * Q.d, B.f + (size_t)g[k - 1] * B.d, B.d);
            for (int a = 0; a < res_ids[qi]; a++) {
                uint64_t id = all_out[qi * (size_t)k + (size_t)a];
                if (id < B.n && vdist(&p, Q.f + qi * Q.d, B.f + id * B.d, B.d) <= thr * (1 + 1e-6) + 1e-9) hits_d++;
            }
        }
        double recall = hits / ((double)nq * (double)k), qps = (double)nq / dt;
        if (json) {
            char key[32];
            snprintf(key, sizeof key, "recall@%lld", k);
            jw_obj_begin(&w);
            jw_key(&w, "ef"); jw_int(&w, efs[r]);
            if (labels) { jw_key(&w, "filter_form"); jw_str(&w, form_names[form]); }
            jw_key(&w, key); jw_num(&w, recall);
            jw_key(&w, "queries_per_s"); jw_num(&w, qps);
            snprintf(key, sizeof key, "recall@%lld_by_distance", k);
            jw_key(&w, key); jw_num(&w, hits_d / ((double)nq * (double)k));
            jw_key(&w, "dist_evals_per_query"); jw_num(&w, nd / (double)nq);
            jw_key(&w, "brute_force_queries"); jw_int(&w, (long long)n_brute);
            jw_key(&w, "fallback_queries"); jw_int(&w, (long long)n_fallback);
            jw_obj_end(&w);
        } else {
            if (labels) printf("%-13s", form_names[form]);
            printf("ef %5d  recall@%lld %.4f (by distance %.4f) %9.1f q/s  %.0f dist/query  brute %zu fallback %zu\n", efs[r], k, recall,
                   hits_d / ((double)nq * (double)k), qps, nd / (double)nq, n_brute, n_fallback);
        }
        fflush(stdout);
    }
    if (json) { jw_arr_end(&w); jw_obj_end(&w); }
done:
    qpool_free(pool);
    for (int pk = 0; pk < 2; pk++)
        for (int c = 0; c < 256; c++) hnsw_allow_free(allow[pk][c]);
    hnsw_free(h);
    free(ids); free(out); free(labels); free(all_out); free(res_ids);
    free(B.f); free(Q.f); free(G.i);
    return rc;
#undef FAIL
}
