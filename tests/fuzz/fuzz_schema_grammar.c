/* fuzz_schema_grammar.c — arbitrary JSON as a schema → schema_compile →
 * sgr_schema_to_grammar (strict, then best effort, with small limits); when
 * the strict compile succeeds, a few random walks over the grammar must parse
 * strictly and validate (soundness), else abort. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sgr/grammar_int.h"
#include "sgr/sgr.h"

#define INF 1e18

typedef struct walker {
    const sgr_gb *b;
    double *rc, *memo;
    uint64_t rng;
    char *out; size_t n, cap;
} walker;

static double cost(walker *w, sgr_expr x) {
    if (!isnan(w->memo[x])) return w->memo[x];
    const sgr_gb *b = w->b;
    const gx_node *nd = gx_at(b, x);
    double c = INF;
    switch (nd->kind) {
    case GX_EMPTY: c = 0; break;
    case GX_LIT: c = nd->n; break;
    case GX_CLASS: for (int i = 0; i < 32; i++) if (b->classes[nd->off][i]) c = 1; break;
    case GX_SEQ:
        c = 0;
        for (uint32_t i = 0; i < nd->n && c < INF; i++) { double k = cost(w, b->kids[nd->off + i]); c = k >= INF ? INF : c + k; }
        break;
    case GX_ALT:
        for (uint32_t i = 0; i < nd->n; i++) { double k = cost(w, b->kids[nd->off + i]); if (k < c) c = k; }
        break;
    case GX_REPEAT: c = nd->min == 0 ? 0 : cost(w, nd->a) * nd->min; if (c > INF) c = INF; break;
    case GX_REF: c = w->rc[nd->a]; break;
    }
    w->memo[x] = c;
    return c;
}

static void put(walker *w, const void *p, size_t n) {
    if (w->n + n + 1 > w->cap) {
        w->cap = (w->n + n + 1) * 2;
        w->out = realloc(w->out, w->cap);
        if (!w->out) abort();
    }
    memcpy(w->out + w->n, p, n);
    w->n += n;
}

static uint64_t rnd(walker *w) { w->rng ^= w->rng << 13; w->rng ^= w->rng >> 7; w->rng ^= w->rng << 17; return w->rng; }

static void walk(walker *w, sgr_expr x, int depth) {
    const sgr_gb *b = w->b;
    const gx_node *nd = gx_at(b, x);
    bool tight = w->n > 300 || depth > 300;
    switch (nd->kind) {
    case GX_EMPTY: break;
    case GX_LIT: put(w, b->bytes + nd->off, nd->n); break;
    case GX_CLASS: {
        const uint8_t *set = b->classes[nd->off];
        int cnt = 0;
        for (int c = 0; c < 256; c++) cnt += set[c >> 3] >> (c & 7) & 1;
        if (!cnt) abort();
        int k = (int)(rnd(w) % (uint64_t)cnt);
        for (int c = 0; c < 256; c++)
            if ((set[c >> 3] >> (c & 7) & 1) && k-- == 0) { uint8_t ch = (uint8_t)c; put(w, &ch, 1); break; }
        break;
    }
    case GX_SEQ: for (uint32_t i = 0; i < nd->n; i++) walk(w, b->kids[nd->off + i], depth + 1); break;
    case GX_ALT: {
        sgr_expr best = -1, pick = -1;
        double bc = INF;
        size_t ok = 0;
        for (uint32_t i = 0; i < nd->n; i++) {
            sgr_expr k = b->kids[nd->off + i];
            double c = cost(w, k);
            if (c < bc) { bc = c; best = k; }
            if (c < INF && rnd(w) % ++ok == 0) pick = k;
        }
        if (best < 0) abort(); /* a dead end reachable in the grammar */
        walk(w, tight ? best : pick, depth + 1);
        break;
    }
    case GX_REPEAT: {
        uint32_t k = nd->min;
        if (!tight && cost(w, nd->a) < INF) { uint64_t t = (uint64_t)k + rnd(w) % 3; k = t > nd->max ? nd->max : (uint32_t)t; }
        for (uint32_t i = 0; i < k; i++) walk(w, nd->a, depth + 1);
        break;
    }
    case GX_REF: walk(w, b->rules[nd->a].body, depth + 1); break;
    }
}

static void check_walks(const schema *s, const sgr_gb *b, int32_t start, uint64_t seed) {
    walker w = {0};
    w.b = b;
    w.rng = seed | 1;
    w.rc = malloc((b->n_rules + 1) * sizeof *w.rc);
    w.memo = malloc((b->n_nodes + 1) * sizeof *w.memo);
    if (!w.rc || !w.memo) abort();
    for (size_t i = 0; i < b->n_rules; i++) w.rc[i] = INF;
    for (bool ch = true; ch;) {
        ch = false;
        for (size_t i = 0; i < b->n_nodes; i++) w.memo[i] = NAN;
        for (size_t r = b->n_rules; r-- > 0;) {
            double c = b->rules[r].body >= 0 ? cost(&w, b->rules[r].body) : INF;
            if (c < w.rc[r]) { w.rc[r] = c; ch = true; }
        }
    }
    for (size_t i = 0; i < b->n_nodes; i++) w.memo[i] = NAN;
    for (int i = 0; i < 4; i++) {
        w.n = 0;
        walk(&w, b->rules[start].body, 0);
        json *v = NULL;
        qerr e;
        json_parse_opts po = {0, JSON_DUP_REJECT};
        if (json_parse(w.out ? w.out : "", w.n, &po, &v, &e)) abort();
        int r = schema_validate(s, v, NULL);
        if (r == 0) abort(); /* the grammar produced an invalid instance */
        json_free(v);
    }
    free(w.out);
    free(w.rc);
    free(w.memo);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qerr e;
    json *doc = NULL;
    json_parse_opts o = {32, JSON_DUP_LAST};
    if (json_parse((const char *)data, size, &o, &doc, &e)) return 0;
    schema *s;
    schema_opts so = {0};
    so.max_nodes = 2000;
    so.max_steps = 200000;
    if (schema_compile(doc, &so, &s, &e) == 0) {
        sgr_gb_limits lim = {200000, 5000};
        for (int be = 0; be < 2; be++) {
            sgr_gb *b = sgr_gb_new(&lim);
            if (!b) abort();
            sgr_schema_opts go = {0};
            go.best_effort = be;
            go.ws = (int)(size % 3);
            go.max_rules = 4000;
            sgr_unenforced *sk = NULL;
            size_t nsk = 0;
            int32_t st = sgr_schema_to_grammar(s, &go, b, &sk, &nsk, &e);
            if (st < 0 && !e.msg[0]) abort();
            if (st >= 0 && !be) check_walks(s, b, st, size * 31 + data[0]);
            free(sk);
            sgr_gb_free(b);
        }
        schema_free(s);
    }
    json_free(doc);
    return 0;
}
