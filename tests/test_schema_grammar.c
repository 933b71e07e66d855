/* test_schema_grammar.c — the JSON Schema → grammar compiler. Two
 * independent checks of soundness (everything the grammar accepts is valid):
 * a random walk over the grammar whose strings must parse strictly and
 * validate, and a memoized backtracking recognizer (the oracle) that must
 * reject every invalid labelled instance of JSONSchemaBench and of
 * JSON-Schema-Test-Suite. Hand-written cases pin down each keyword. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sgr/grammar_int.h"
#include "sgr/regex_int.h"
#include "sgr/sgr.h"
#include "testutil.h"

/* ======================================================================== */
/* Oracle: which end positions can expression x reach from position p?      */
/* ======================================================================== */

typedef struct oracle {
    const sgr_gb *b;
    const uint8_t *s;
    size_t n, W;            /* input, words per bitset */
    /* memo for rule references: open addressing on (rule, pos) */
    uint64_t *keys; uint64_t **vals; size_t cap, used;
    uint64_t steps;
} oracle;

static uint64_t *bs_new(oracle *o) { uint64_t *v = calloc(o->W, 8); assert_non_null(v); return v; }
static void bs_set(uint64_t *v, size_t i) { v[i >> 6] |= 1ull << (i & 63); }
static bool bs_get(const uint64_t *v, size_t i) { return v[i >> 6] >> (i & 63) & 1; }
static bool bs_or(oracle *o, uint64_t *d, const uint64_t *s) {
    bool ch = false;
    for (size_t i = 0; i < o->W; i++) { uint64_t x = d[i] | s[i]; if (x != d[i]) ch = true; d[i] = x; }
    return ch;
}
static bool bs_empty(oracle *o, const uint64_t *v) {
    for (size_t i = 0; i < o->W; i++) if (v[i]) return false;
    return true;
}

static void o_match(oracle *o, sgr_expr x, size_t p, uint64_t *out);

/* out |= ends of x from every position in `from` */
static void o_from(oracle *o, sgr_expr x, const uint64_t *from, uint64_t *out) {
    for (size_t p = 0; p <= o->n; p++) if (bs_get(from, p)) o_match(o, x, p, out);
}

static uint64_t *memo_slot(oracle *o, uint64_t key, bool *found) {
    if (o->used * 2 >= o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 1024;
        uint64_t *nk = malloc(nc * 8);
        uint64_t **nv = calloc(nc, sizeof *nv);
        assert_non_null(nk); assert_non_null(nv);
        memset(nk, 0xFF, nc * 8);
        for (size_t i = 0; i < o->cap; i++) {
            if (o->keys[i] == UINT64_MAX) continue;
            size_t h = (size_t)(o->keys[i] * 0x9E3779B97F4A7C15ull >> 20) & (nc - 1);
            while (nk[h] != UINT64_MAX) h = (h + 1) & (nc - 1);
            nk[h] = o->keys[i];
            nv[h] = o->vals[i];
        }
        free(o->keys); free(o->vals);
        o->keys = nk; o->vals = nv; o->cap = nc;
    }
    size_t h = (size_t)(key * 0x9E3779B97F4A7C15ull >> 20) & (o->cap - 1);
    while (o->keys[h] != UINT64_MAX && o->keys[h] != key) h = (h + 1) & (o->cap - 1);
    *found = o->keys[h] == key;
    if (!*found) { o->keys[h] = key; o->vals[h] = bs_new(o); o->used++; }
    return o->vals[h];
}

static void o_match_raw(oracle *o, sgr_expr x, size_t p, uint64_t *out);

/* Every composite node is memoized on (node, position): grammars are DAGs
 * with shared tails, so without it optional members cost 2^n. */
static void o_match(oracle *o, sgr_expr x, size_t p, uint64_t *out) {
    const gx_node *nd = gx_at(o->b, x);
    if (nd->kind == GX_EMPTY || nd->kind == GX_LIT || nd->kind == GX_CLASS || nd->kind == GX_REF) {
        o_match_raw(o, x, p, out);
        return;
    }
    bool found;
    uint64_t key = ((uint64_t)o->b->n_rules + (uint64_t)x) * (o->n + 1) + p;
    uint64_t *v = memo_slot(o, key, &found);
    if (!found) {
        uint64_t *tmp = bs_new(o);
        o_match_raw(o, x, p, tmp);
        bool f2;
        v = memo_slot(o, key, &f2);
        bs_or(o, v, tmp);
        free(tmp);
    }
    bs_or(o, out, v);
}

static void o_match_raw(oracle *o, sgr_expr x, size_t p, uint64_t *out) {
    const gx_node *nd = gx_at(o->b, x);
    o->steps++;
    switch (nd->kind) {
    case GX_EMPTY: bs_set(out, p); break;
    case GX_LIT:
        if (p + nd->n <= o->n && !memcmp(o->s + p, o->b->bytes + nd->off, nd->n)) bs_set(out, p + nd->n);
        break;
    case GX_CLASS:
        if (p < o->n && (o->b->classes[nd->off][o->s[p] >> 3] >> (o->s[p] & 7) & 1)) bs_set(out, p + 1);
        break;
    case GX_ALT:
        for (uint32_t i = 0; i < nd->n; i++) o_match(o, o->b->kids[nd->off + i], p, out);
        break;
    case GX_SEQ: {
        uint64_t *cur = bs_new(o);
        bs_set(cur, p);
        for (uint32_t i = 0; i < nd->n && !bs_empty(o, cur); i++) {
            uint64_t *nx = bs_new(o);
            o_from(o, o->b->kids[nd->off + i], cur, nx);
            free(cur);
            cur = nx;
        }
        bs_or(o, out, cur);
        free(cur);
        break;
    }
    case GX_REPEAT: {
        uint64_t *cur = bs_new(o), *seen = bs_new(o);
        bs_set(cur, p);
        if (nd->min == 0) bs_or(o, out, cur);
        for (uint32_t k = 1; k <= nd->max && !bs_empty(o, cur); k++) {
            uint64_t *nx = bs_new(o);
            o_from(o, nd->a, cur, nx);
            free(cur);
            cur = nx;
            if (k >= nd->min) {
                bs_or(o, out, cur);
                /* past min, positions already expanded need no second pass */
                if (!bs_or(o, seen, cur)) break;
            }
            if (k == UINT32_MAX - 1) break;
        }
        free(cur);
        free(seen);
        break;
    }
    case GX_REF: {
        bool found;
        uint64_t key = (uint64_t)nd->a * (o->n + 1) + p;
        uint64_t *v = memo_slot(o, key, &found);
        if (!found) {
            /* computed once; a left-recursive re-entry would see it empty */
            uint64_t *tmp = bs_new(o);
            o_match(o, o->b->rules[nd->a].body, p, tmp);
            bool f2;
            v = memo_slot(o, key, &f2);
            bs_or(o, v, tmp);
            free(tmp);
        }
        bs_or(o, out, v);
        break;
    }
    }
}

static bool oracle_accepts(const sgr_gb *b, int32_t start, const char *s, size_t n) {
    oracle o = {0};
    o.b = b;
    o.s = (const uint8_t *)s;
    o.n = n;
    o.W = (n + 1 + 63) / 64;
    uint64_t *out = bs_new(&o);
    o_match(&o, b->rules[start].body, 0, out);
    bool ok = bs_get(out, n);
    free(out);
    for (size_t i = 0; i < o.cap; i++) free(o.vals[i]);
    free(o.keys);
    free(o.vals);
    return ok;
}

/* ======================================================================== */
/* Random walk                                                              */
/* ======================================================================== */

#define INF_COST 1e18

typedef struct walker {
    const sgr_gb *b;
    double *rule_cost;
    uint64_t rng;
    char *out; size_t n, cap;
    size_t budget;          /* bytes before it heads for the shortest completion */
} walker;

static uint64_t rnd(walker *w) {
    w->rng ^= w->rng << 13; w->rng ^= w->rng >> 7; w->rng ^= w->rng << 17;
    return w->rng;
}

static double cost_raw(const sgr_gb *b, sgr_expr x, const double *rc);
static double *g_memo; /* per node, NAN unknown (reset per fixpoint pass) */

static double cost(const sgr_gb *b, sgr_expr x, const double *rc) {
    if (!isnan(g_memo[x])) return g_memo[x];
    double c = cost_raw(b, x, rc);
    g_memo[x] = c;
    return c;
}

static double cost_raw(const sgr_gb *b, sgr_expr x, const double *rc) {
    const gx_node *nd = gx_at(b, x);
    switch (nd->kind) {
    case GX_EMPTY: return 0;
    case GX_LIT: return nd->n;
    case GX_CLASS: {
        for (int i = 0; i < 32; i++) if (b->classes[nd->off][i]) return 1;
        return INF_COST;
    }
    case GX_SEQ: {
        double s = 0;
        for (uint32_t i = 0; i < nd->n; i++) { s += cost(b, b->kids[nd->off + i], rc); if (s >= INF_COST) return INF_COST; }
        return s;
    }
    case GX_ALT: {
        double m = INF_COST;
        for (uint32_t i = 0; i < nd->n; i++) { double c = cost(b, b->kids[nd->off + i], rc); if (c < m) m = c; }
        return m;
    }
    case GX_REPEAT: {
        if (nd->min == 0) return 0;
        double c = cost(b, nd->a, rc);
        return c >= INF_COST ? INF_COST : c * nd->min;
    }
    case GX_REF: return rc[nd->a];
    }
    return INF_COST;
}

static double *rule_costs(const sgr_gb *b) {
    double *rc = malloc((b->n_rules + 1) * sizeof *rc);
    assert_non_null(rc);
    for (size_t i = 0; i < b->n_rules; i++) rc[i] = INF_COST;
    free(g_memo);
    g_memo = malloc((b->n_nodes + 1) * sizeof *g_memo);
    assert_non_null(g_memo);
    for (bool ch = true; ch;) {
        ch = false;
        for (size_t i = 0; i < b->n_nodes; i++) g_memo[i] = NAN;
        for (size_t r = b->n_rules; r-- > 0;) {
            if (b->rules[r].body < 0) continue;
            double c = cost(b, b->rules[r].body, rc);
            if (c < rc[r]) { rc[r] = c; ch = true; }
        }
    }
    for (size_t i = 0; i < b->n_nodes; i++) g_memo[i] = NAN; /* final costs for the walk */
    return rc;
}

static void put(walker *w, const void *p, size_t n) {
    if (w->n + n + 1 > w->cap) {
        w->cap = (w->n + n + 1) * 2;
        w->out = realloc(w->out, w->cap);
        assert_non_null(w->out);
    }
    memcpy(w->out + w->n, p, n);
    w->n += n;
    w->out[w->n] = 0;
}

static void walk(walker *w, sgr_expr x) {
    const sgr_gb *b = w->b;
    const gx_node *nd = gx_at(b, x);
    bool tight = w->n > w->budget;
    switch (nd->kind) {
    case GX_EMPTY: break;
    case GX_LIT: put(w, b->bytes + nd->off, nd->n); break;
    case GX_CLASS: {
        const uint8_t *set = b->classes[nd->off];
        int cnt = 0;
        for (int c = 0; c < 256; c++) cnt += set[c >> 3] >> (c & 7) & 1;
        assert_true(cnt > 0);
        int k = (int)(rnd(w) % (uint64_t)cnt);
        for (int c = 0; c < 256; c++)
            if (set[c >> 3] >> (c & 7) & 1) { if (k-- == 0) { uint8_t ch = (uint8_t)c; put(w, &ch, 1); break; } }
        break;
    }
    case GX_SEQ:
        for (uint32_t i = 0; i < nd->n; i++) walk(w, b->kids[nd->off + i]);
        break;
    case GX_ALT: {
        sgr_expr best = -1;
        double bc = INF_COST;
        size_t nok = 0;
        for (uint32_t i = 0; i < nd->n; i++) {
            double c = cost(b, b->kids[nd->off + i], w->rule_cost);
            if (c < INF_COST) nok++;
            if (c < bc) { bc = c; best = b->kids[nd->off + i]; }
        }
        assert_true(best >= 0);
        if (tight) { walk(w, best); break; }
        size_t k = rnd(w) % nok;
        for (uint32_t i = 0; i < nd->n; i++) {
            if (cost(b, b->kids[nd->off + i], w->rule_cost) >= INF_COST) continue;
            if (k-- == 0) { walk(w, b->kids[nd->off + i]); break; }
        }
        break;
    }
    case GX_REPEAT: {
        uint32_t k = nd->min;
        if (!tight && cost(b, nd->a, w->rule_cost) < INF_COST) {
            uint32_t extra = (uint32_t)(rnd(w) % 4);
            uint64_t t = (uint64_t)k + extra;
            k = t > nd->max ? nd->max : (uint32_t)t;
        }
        for (uint32_t i = 0; i < k; i++) walk(w, nd->a);
        break;
    }
    case GX_REF: walk(w, b->rules[nd->a].body); break;
    }
}

/* ======================================================================== */
/* Helpers                                                                  */
/* ======================================================================== */

static json *load_json(const char *path) {
    char *buf;
    size_t len;
    qerr e;
    if (q_read_file(path, &buf, &len, &e)) return NULL;
    json *v = NULL;
    json_parse_opts o = {0, JSON_DUP_LAST};
    int rc = json_parse(buf, len, &o, &v, &e);
    free(buf);
    return rc ? NULL : v;
}

typedef struct compiled { schema *s; sgr_gb *b; int32_t start; char err[512]; } compiled;

static bool compile_text_or_doc(const json *doc, const sgr_schema_opts *go, compiled *c) {
    memset(c, 0, sizeof *c);
    schema_opts so = {0};
    qerr e;
    if (schema_compile(doc, &so, &c->s, &e)) { snprintf(c->err, sizeof c->err, "schema: %.400s", e.msg); return false; }
    c->b = sgr_gb_new(NULL);
    sgr_unenforced *sk = NULL;
    size_t nsk = 0;
    c->start = sgr_schema_to_grammar(c->s, go, c->b, &sk, &nsk, &e);
    free(sk);
    if (c->start < 0) { snprintf(c->err, sizeof c->err, "%s", e.msg); return false; }
    return true;
}

static void compiled_free(compiled *c) {
    schema_free(c->s);
    if (c->b) sgr_gb_free(c->b);
}

static compiled compile_str_opts(const char *txt, const sgr_schema_opts *go) {
    json *doc = NULL;
    qerr e;
    if (json_parse(txt, strlen(txt), NULL, &doc, &e)) { fprintf(stderr, "bad test schema %s: %s\n", txt, e.msg); fail(); }
    compiled c;
    bool ok = compile_text_or_doc(doc, go, &c);
    json_free(doc);
    if (!ok) { fprintf(stderr, "schema %s does not compile: %s\n", txt, c.err); fail(); }
    return c;
}

static compiled compile_str(const char *txt) { return compile_str_opts(txt, NULL); }

/* Random documents from a compiled schema's grammar, one per walk_next. */
static walker walker_for(const compiled *c, uint64_t seed, int budget) {
    walker w = {0};
    w.b = c->b;
    w.rule_cost = rule_costs(c->b);
    w.rng = seed;
    w.budget = budget;
    return w;
}
static const char *walk_next(walker *w, const compiled *c) {
    w->n = 0;
    put(w, "", 0);
    walk(w, c->b->rules[c->start].body);
    return w->out;
}
static void walker_done(walker *w) {
    free(w->out);
    free(w->rule_cost);
    free(g_memo);
    g_memo = NULL;
}

/* n random strings; each must parse strictly and validate. Returns failures. */
static int random_check(const compiled *c, int n, uint64_t seed, const char *what, bool verbose) {
    walker w = walker_for(c, seed * 2654435761u + 12345, 2000);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        walk_next(&w, c);
        json *v = NULL;
        qerr e;
        json_parse_opts po = {0, JSON_DUP_REJECT};
        int ok = 0;
        if (json_parse(w.out, w.n, &po, &v, &e) == 0) {
            schema_error err;
            ok = schema_validate(c->s, v, &err) == 1;
            if (!ok && verbose) fprintf(stderr, "INVALID %s: %.300s (%s at %s: %s)\n", what, w.out, err.keyword, err.instance_ptr, err.msg);
        } else if (verbose) fprintf(stderr, "UNPARSABLE %s: %.300s (%s)\n", what, w.out, e.msg);
        json_free(v);
        if (!ok) bad++;
        /* the oracle agrees with the walker */
        if (w.n < 3000 && !oracle_accepts(c->b, c->start, w.out, w.n)) {
            if (verbose) fprintf(stderr, "ORACLE REJECTS WALK %s: %.300s\n", what, w.out);
            bad++;
        }
    }
    walker_done(&w);
    return bad;
}

static bool accepts(const compiled *c, const char *s) { return oracle_accepts(c->b, c->start, s, strlen(s)); }

/* ======================================================================== */
/* Hand-written cases                                                       */
/* ======================================================================== */

typedef struct hcase { const char *schema; const char *yes[12]; const char *no[16]; } hcase;

static const hcase cases[] = {
    {"{\"type\":\"integer\",\"minimum\":-15,\"maximum\":27}",
     {"-15", "-9", "0", "9", "10", "27", "-10", "19"},
     {"-16", "28", "100", "-0", "01", "1.5", "\"1\"", "-100"}},
    {"{\"type\":\"integer\",\"exclusiveMinimum\":-1,\"exclusiveMaximum\":100}",
     {"0", "99", "50"}, {"-1", "100", "101", "-2"}},
    {"{\"type\":\"integer\",\"minimum\":1.5,\"maximum\":3.7}", {"2", "3"}, {"1", "4", "2.5"}},
    {"{\"type\":\"integer\",\"minimum\":-1000}", {"-1000", "0", "123456789012345"}, {"-1001", "1234567890123456"}},
    {"{\"type\":\"number\",\"minimum\":0,\"maximum\":1}", {"0", "1", "0.5", "0.999999", "0.25"}, {"1.5", "-0.5", "2", "1.1", "0.50"}},
    {"{\"type\":\"number\",\"exclusiveMinimum\":0,\"exclusiveMaximum\":1}", {"0.5", "0.000001"}, {"0", "1", "1.5"}},
    {"{\"type\":\"number\",\"minimum\":-2.5,\"maximum\":-1}", {"-2", "-1", "-1.5"}, {"0", "-3", "-0.5", "1"}},
    {"{\"type\":\"number\",\"maximum\":0,\"exclusiveMaximum\":0}", {"-1", "-0.5"}, {"0", "0.5"}},
    /* integers only: every validator's double division accepts them (see test_multipleof_float_safe) */
    {"{\"type\":\"number\",\"multipleOf\":0.01,\"minimum\":0}", {"3", "0", "120"}, {"1.255", "-1", "1.25"}},
    /* 0.00001 does not divide every integer exactly in doubles: multiples
     * that do, enumerated from zero */
    {"{\"type\":\"number\",\"multipleOf\":0.00001,\"minimum\":0}", {"0", "0.00001", "0.00002"}, {"1.000001", "-1", "0.000015"}},
    /* fractional bounds are exact, not rounded to integers */
    {"{\"type\":\"number\",\"minimum\":-1.75,\"maximum\":-1.25}", {"-1.75", "-1.25", "-1.5", "-1.333333"}, {"-1", "-2", "-1.76", "-1.2", "-1.250"}},
    {"{\"type\":\"number\",\"exclusiveMinimum\":0.01,\"maximum\":3e-2}", {"0.03", "0.010001", "0.015"}, {"0.01", "0.031", "0"}},
    {"{\"type\":\"number\",\"multipleOf\":0.01,\"minimum\":0.01,\"maximum\":0.99}", {"0.01", "0.05", "0.5"}, {"0", "1", "0.005"}},
    /* decimal divisors: their multiples, enumerated */
    {"{\"type\":\"number\",\"multipleOf\":0.25,\"minimum\":0.3,\"maximum\":0.9}", {"0.5", "0.75"}, {"0.25", "1", "0.6", "0.3"}},
    {"{\"type\":\"integer\",\"multipleOf\":2.5,\"minimum\":0,\"maximum\":20}", {"0", "5", "20"}, {"2.5", "7.5", "25"}},
    {"{\"type\":\"number\",\"multipleOf\":1.5,\"exclusiveMinimum\":-3,\"maximum\":3}", {"-1.5", "0", "3"}, {"-3", "4.5", "1"}},
    {"{\"type\":\"integer\",\"multipleOf\":5,\"minimum\":0,\"maximum\":20}", {"0", "5", "20"}, {"3", "25", "-5"}},
    {"{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}",
     {"\"ab\"", "\"abc\"", "\"\\n\\\"\"", "\"\\u0001x\"", "\"\xc3\xa9\xc3\xa9\""},
     {"\"a\"", "\"abcd\"", "\"\\n\"", "\"\xc3\xa9\""}},
    {"{\"type\":\"string\",\"pattern\":\"^[a-z]+-[0-9]{2}$\"}", {"\"ab-12\"", "\"z-00\""}, {"\"ab-1\"", "\"AB-12\"", "\"ab-123\"", "\"x ab-12\""}},
    {"{\"type\":\"string\",\"pattern\":\"ab\"}", {"\"ab\"", "\"xaby\"", "\"\\\"ab\\\\\""}, {"\"a\"", "\"ba\""}},
    {"{\"type\":\"string\",\"pattern\":\"^a\",\"maxLength\":3}", {"\"a\"", "\"abc\""}, {"\"ba\"", "\"abcd\""}},
    {"{\"type\":\"string\",\"pattern\":\"^[\\\"\\\\\\\\]$\"}", {"\"\\\"\"", "\"\\\\\""}, {"\"a\""}},
    {"{\"type\":\"string\",\"pattern\":\"x$\",\"minLength\":3}", {"\"abx\"", "\"aaax\""}, {"\"ax\"", "\"xa\""}},
    {"{\"type\":\"string\",\"format\":\"date\"}", {"\"2024-02-28\"", "\"1999-12-31\""}, {"\"2024-13-01\"", "\"x\""}},
    {"{\"type\":\"string\",\"format\":\"ipv4\"}", {"\"1.2.3.4\"", "\"255.0.0.1\""}, {"\"256.1.1.1\""}},
    {"{\"enum\":[\"a\",1,null,{\"k\":[1,2]}]}", {"\"a\"", "1", "null", "{\"k\":[1,2]}"}, {"\"b\"", "2", "{\"k\":[2,1]}"}},
    {"{\"type\":\"string\",\"enum\":[\"a\",1,\"bb\"],\"maxLength\":1}", {"\"a\""}, {"\"bb\"", "1"}},
    {"{\"const\":{\"a\":true}}", {"{\"a\":true}"}, {"{\"a\":false}", "{}"}},
    {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"string\"}},\"required\":[\"b\"],\"additionalProperties\":false}",
     {"{\"b\":\"x\"}", "{\"a\":1,\"b\":\"\"}"}, {"{}", "{\"a\":1}", "{\"b\":1}", "{\"b\":\"x\",\"c\":1}", "{\"b\":\"x\",\"a\":1}"}},
    {"{\"type\":\"object\",\"properties\":{\"a\":{},\"b\":{},\"c\":{}},\"minProperties\":2,\"maxProperties\":2}",
     {"{\"a\":1,\"b\":null}"}, {"{\"a\":1}", "{\"a\":1,\"b\":2,\"c\":3}"}},
    {"{\"type\":\"object\",\"additionalProperties\":{\"type\":\"integer\"},\"minProperties\":1}",
     {"{\"k\":1}"}, {"{}", "{\"k\":\"x\"}"}},
    {"{\"type\":\"object\",\"patternProperties\":{\"^x-\":{\"type\":\"boolean\"}},\"additionalProperties\":false}",
     {"{}", "{\"x-a\":true}"}, {"{\"y\":true}", "{\"x-a\":1}"}},
    {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"integer\"}},\"dependentRequired\":{\"a\":[\"b\"]}}",
     {"{}", "{\"b\":1}"}, {"{\"a\":1}"}},
    {"{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":2,\"maxItems\":3}",
     {"[1,2]", "[1,2,3]"}, {"[]", "[1]", "[1,2,3,4]", "[1,\"a\"]"}},
    {"{\"type\":\"array\",\"prefixItems\":[{\"const\":\"a\"},{\"type\":\"integer\"}],\"items\":false}",
     {"[]", "[\"a\"]", "[\"a\",3]"}, {"[\"a\",3,4]", "[3]"}},
    {"{\"type\":\"array\",\"contains\":{\"const\":7},\"items\":{\"type\":\"integer\"}}", {"[7]", "[7,1]"}, {"[]", "[1]"}},
    {"{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"uniqueItems\":true,\"maxItems\":1}", {"[]", "[1]"}, {"[1,1]"}},
    {"{\"anyOf\":[{\"type\":\"string\",\"maxLength\":1},{\"type\":\"integer\",\"minimum\":5}]}", {"\"a\"", "5"}, {"\"ab\"", "4"}},
    {"{\"oneOf\":[{\"type\":\"string\"},{\"type\":\"integer\"}]}", {"\"a\"", "5"}, {"null", "1.5"}},
    {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"integer\"}},\"oneOf\":[{\"required\":[\"a\"]},{\"required\":[\"b\"]}]}",
     {"{\"a\":1}", "{\"b\":2}"}, {"{}", "{\"a\":1,\"b\":2}"}},
    /* the second branch is dead (its instances also match the first); the first leaves r out */
    {"{\"type\":\"object\",\"properties\":{\"l\":{\"type\":\"number\"},\"r\":{\"type\":\"number\"}},\"required\":[\"l\"],\"oneOf\":[{\"required\":[\"l\"]},{\"required\":[\"r\"]}]}",
     {"{\"l\":1}"}, {"{\"l\":1,\"r\":2}", "{\"r\":2}"}},
    /* branches told apart by an optional enum member, written in both */
    {"{\"type\":\"object\",\"oneOf\":[{\"properties\":{\"t\":{\"enum\":[\"a\"]},\"v\":{\"type\":\"string\"}}},{\"properties\":{\"t\":{\"enum\":[\"b\",\"c\"]},\"v\":{\"type\":\"number\"}}}]}",
     {"{\"t\":\"a\"}", "{\"t\":\"b\",\"v\":1}", "{\"t\":\"a\",\"v\":\"x\"}"}, {"{}", "{\"v\":\"x\"}", "{\"t\":\"a\",\"v\":1}"}},
    /* each branch writes the key the other forbids */
    {"{\"type\":\"object\",\"oneOf\":[{\"properties\":{\"k\":{\"type\":\"string\"}},\"additionalProperties\":false},{\"properties\":{\"ks\":{\"type\":\"array\"}},\"additionalProperties\":false}]}",
     {"{\"k\":\"x\"}", "{\"ks\":[]}"}, {"{}", "{\"k\":\"x\",\"ks\":[]}"}},
    /* told apart by an enum one level down */
    {"{\"type\":\"object\",\"required\":[\"e\"],\"oneOf\":[{\"properties\":{\"a\":{\"type\":\"object\",\"required\":[\"s\"],\"properties\":{\"s\":{\"enum\":[\"rpm\"]}}}}},{\"properties\":{\"a\":{\"type\":\"object\",\"required\":[\"s\"],\"properties\":{\"s\":{\"enum\":[\"deb\"]}}}}}]}",
     {"{\"a\":{\"s\":\"rpm\"},\"e\":1}", "{\"a\":{\"s\":\"deb\"},\"e\":null}"}, {"{\"e\":1}", "{\"a\":{\"s\":\"rpm\"}}"}},
    {"{\"allOf\":[{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},\"required\":[\"a\"]},{\"properties\":{\"b\":{\"type\":\"string\"}},\"required\":[\"b\"]}]}",
     {"{\"a\":1,\"b\":\"x\"}"}, {"{\"a\":1}", "{\"b\":\"x\"}"}},
    {"{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},\"next\":{\"$ref\":\"#/$defs/node\"}},\"required\":[\"v\"],\"additionalProperties\":false}},\"$ref\":\"#/$defs/node\"}",
     {"{\"v\":1}", "{\"v\":1,\"next\":{\"v\":2}}"}, {"{}", "{\"v\":1,\"next\":{}}"}},
    {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"integer\"}},\"not\":{\"required\":[\"a\"]}}",
     {"{}", "{\"b\":1}"}, {"{\"a\":1}"}},
    {"{\"type\":[\"string\",\"null\"],\"not\":{\"type\":\"null\"}}", {"\"a\""}, {"null"}},
    {"{\"not\":{\"required\":[\"a\"]}}", {"{}"}, {"1", "\"x\"", "null", "{\"a\":1}"}},
    {"{}", {"null", "true", "1", "\"x\"", "[]", "{}"}, {"", "nul", "{\"a\":1,\"a\":2}"}},
    {"{\"type\":\"object\",\"propertyNames\":{\"maxLength\":3},\"properties\":{\"abcd\":{},\"ab\":{}},\"required\":[\"ab\"]}",
     {"{\"ab\":1}"}, {"{\"abcd\":1,\"ab\":1}"}},
};

static void test_hand_cases(void **state) {
    (void)state;
    int bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const hcase *h = &cases[i];
        compiled c = compile_str(h->schema);
        for (int k = 0; k < 12 && h->yes[k]; k++)
            if (!accepts(&c, h->yes[k])) { fprintf(stderr, "schema %s should accept %s\n", h->schema, h->yes[k]); bad++; }
        for (int k = 0; k < 16 && h->no[k]; k++)
            if (accepts(&c, h->no[k])) { fprintf(stderr, "schema %s should reject %s\n", h->schema, h->no[k]); bad++; }
        bad += random_check(&c, 200, i + 1, h->schema, true);
        compiled_free(&c);
        /* with whitespace between tokens, and narrow digit limits */
        sgr_schema_opts go = {.ws = 2, .max_int_digits = 3, .max_frac_digits = 2};
        c = compile_str_opts(h->schema, &go);
        bad += random_check(&c, 100, i + 101, h->schema, true);
        compiled_free(&c);
    }
    assert_int_equal(bad, 0);
}

/* Formats asserted: every string the grammar writes passes sgr/format.c. */
static void test_formats_asserted(void **state) {
    (void)state;
    static const char *const fmts[] = {"date", "time", "date-time", "duration", "email", "hostname", "ipv4",
                                       "ipv6", "uri", "uri-reference", "iri", "iri-reference", "uuid", "json-pointer",
                                       "relative-json-pointer", "regex"};
    int bad = 0;
    for (size_t i = 0; i < sizeof fmts / sizeof *fmts; i++) {
        char t[200];
        snprintf(t, sizeof t, "{\"type\":\"string\",\"format\":\"%s\",\"maxLength\":60}", fmts[i]);
        json *doc = NULL;
        qerr e;
        assert_int_equal(json_parse(t, strlen(t), NULL, &doc, &e), 0);
        compiled c = {0};
        schema_opts so = {.assert_format = true};
        assert_int_equal(schema_compile(doc, &so, &c.s, &e), 0);
        c.b = sgr_gb_new(NULL);
        c.start = sgr_schema_to_grammar(c.s, NULL, c.b, NULL, NULL, &e);
        if (c.start < 0) { fprintf(stderr, "format %s: %s\n", fmts[i], e.msg); fail(); }
        bad += random_check(&c, 300, i + 11, t, true);
        compiled_free(&c);
        json_free(doc);
    }
    /* a format the compiler cannot write, asserted: refused */
    const char *t = "{\"type\":\"string\",\"format\":\"uri-template\"}";
    json *doc = NULL;
    qerr e;
    assert_int_equal(json_parse(t, strlen(t), NULL, &doc, &e), 0);
    schema *s;
    schema_opts so = {.assert_format = true};
    assert_int_equal(schema_compile(doc, &so, &s, &e), 0);
    sgr_gb *b = sgr_gb_new(NULL);
    assert_true(sgr_schema_to_grammar(s, NULL, b, NULL, NULL, &e) < 0);
    assert_non_null(strstr(e.msg, "format"));
    sgr_gb_free(b);
    schema_free(s);
    json_free(doc);
    assert_int_equal(bad, 0);
}

/* What must be refused in strict mode, and what best effort records. */
static void test_unsupported(void **state) {
    (void)state;
    static const char *const refused[][2] = {
        {"{\"oneOf\":[{\"type\":\"integer\"},{\"minimum\":3}]}", "oneOf"},
        {"{\"type\":\"array\",\"uniqueItems\":true}", "uniqueItems"},
        {"{\"type\":\"number\",\"multipleOf\":1e-25}", "multipleOf"}, /* 25 fraction digits: past 18 */
        {"{\"type\":\"string\",\"pattern\":\"\\\\bword\\\\b\"}", "word boundary"},
        {"{\"if\":{\"type\":\"string\"},\"then\":{\"minLength\":2}}", "if"},
        {"{\"properties\":{\"x\":{\"not\":{\"minimum\":3}}}}", "/properties/x"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        json *doc = NULL;
        qerr e;
        assert_int_equal(json_parse(refused[i][0], strlen(refused[i][0]), NULL, &doc, &e), 0);
        compiled c;
        bool ok = compile_text_or_doc(doc, NULL, &c);
        if (ok || !strstr(c.err, refused[i][1]) || !strstr(c.err, "unsupported")) {
            fprintf(stderr, "%s: expected an error naming %s, got %s\n", refused[i][0], refused[i][1], ok ? "success" : c.err);
            fail();
        }
        compiled_free(&c);
        sgr_schema_opts o = {.best_effort = true};
        schema *s;
        assert_int_equal(schema_compile(doc, NULL, &s, &e), 0);
        sgr_gb *b = sgr_gb_new(NULL);
        sgr_unenforced *sk = NULL;
        size_t nsk = 0;
        int32_t st = sgr_schema_to_grammar(s, &o, b, &sk, &nsk, &e);
        assert_true(st >= 0);
        assert_true(nsk >= 1);
        free(sk);
        sgr_gb_free(b);
        schema_free(s);
        json_free(doc);
    }
    /* a schema with no instance at all */
    json *doc = NULL;
    qerr e;
    static const char *const none[] = {
        "{\"type\":\"object\",\"properties\":{\"a\":false},\"required\":[\"a\"]}",
        /* additionalProperties of one allOf member forbids what the other requires */
        "{\"allOf\":[{\"properties\":{\"a\":{}},\"additionalProperties\":false},{\"properties\":{\"b\":{}},\"required\":[\"b\"]}],\"type\":\"object\"}",
        "{\"$defs\":{\"n\":{\"type\":\"object\",\"properties\":{\"n\":{\"$ref\":\"#/$defs/n\"}},\"required\":[\"n\"]}},\"$ref\":\"#/$defs/n\"}",
    };
    for (size_t i = 0; i < sizeof none / sizeof *none; i++) {
        assert_int_equal(json_parse(none[i], strlen(none[i]), NULL, &doc, &e), 0);
        compiled c;
        assert_false(compile_text_or_doc(doc, NULL, &c));
        assert_non_null(strstr(c.err, "no finite instance"));
        compiled_free(&c);
        json_free(doc);
    }
}

static void test_regex_grammar(void **state) {
    (void)state;
    static const struct { const char *re; bool json, search; const char *yes[6]; const char *no[6]; } rc[] = {
        {"^ab*c$", false, true, {"ac", "abbc"}, {"abd", "xac", "acx"}},
        {"b", false, true, {"b", "abc", "bbb"}, {"", "a"}},
        {"a|^b", false, true, {"xa", "b", "ba"}, {"xb", ""}},
        {"x$|^y", false, false, {"x", "y"}, {"xy", ""}},
        {"[^a]", false, false, {"b", "\xc3\xa9"}, {"a", "bb"}},
        {".", true, false, {"a", "\\\""}, {"\n", "\\n", "\""}},
        {"\\d{2,3}", false, false, {"12", "123"}, {"1", "1234"}},
    };
    for (size_t i = 0; i < sizeof rc / sizeof *rc; i++) {
        regex *re;
        qerr e;
        assert_int_equal(regex_compile(rc[i].re, strlen(rc[i].re), &re, &e), 0);
        sgr_gb *b = sgr_gb_new(NULL);
        sgr_expr x = regex_to_grammar(re, b, rc[i].json, rc[i].search, &e);
        assert_true(x >= 0);
        int32_t r = sgr_gb_rule(b, "start");
        sgr_gb_define(b, r, x);
        assert_null(sgr_gb_error(b));
        for (int k = 0; k < 6 && rc[i].yes[k]; k++)
            if (!oracle_accepts(b, r, rc[i].yes[k], strlen(rc[i].yes[k]))) { fprintf(stderr, "/%s/ should accept %s\n", rc[i].re, rc[i].yes[k]); fail(); }
        for (int k = 0; k < 6 && rc[i].no[k]; k++)
            if (oracle_accepts(b, r, rc[i].no[k], strlen(rc[i].no[k]))) { fprintf(stderr, "/%s/ should reject %s\n", rc[i].re, rc[i].no[k]); fail(); }
        sgr_gb_free(b);
        regex_free(re);
    }
}

/* Several regexes at once (rx_terms_to_grammar) against a second
 * implementation, the regex engine: over every string of a small alphabet
 * (with a two-byte code point) up to 5 code points the grammar accepts
 * exactly the strings all the regexes match within the length window, and
 * random walks (longer strings) match them all. */
typedef struct pcase { const char *re[4]; bool search[4]; int64_t mn, mx; bool empty; } pcase;

static bool product_wants(regex *const *ref, size_t nt, const char *s, size_t n, int64_t mn, int64_t mx) {
    int64_t cps = 0;
    for (size_t i = 0; i < n; i++) cps += ((unsigned char)s[i] & 0xC0) != 0x80;
    if (cps < mn || (mx >= 0 && cps > mx)) return false;
    for (size_t k = 0; k < nt; k++) if (!regex_match(ref[k], s, n)) return false;
    return true;
}

static void test_regex_product(void **state) {
    (void)state;
    static const pcase pc[] = {
        {{"^a", "b$"}, {true, true}, 0, -1, false},
        {{"a.*b", "^[ab]*$"}, {true, true}, 0, -1, false},
        {{"[a-c]{2,4}", "ab|ba", "c"}, {false, true, true}, 0, -1, false},
        {{"x$|^a", "[^a]"}, {true, true}, 1, 4, false},
        {{"(ab)+", "(a|b)*"}, {false, false}, 0, -1, false},
        {{"(ab)+", "a", "b"}, {false, true, true}, 3, -1, false},
        {{"^a", "^b"}, {true, true}, 0, -1, true},
        {{"a{2}", "b", "-"}, {true, true, true}, 3, 4, false},
        {{"\xc3\xa9", "^[^-]+$", "b.b|a.c|\xc3\xa9{2}"}, {true, true, true}, 0, -1, false},
        {{"[a-b]+", "[b-c\xc3\xa9]+"}, {false, false}, 0, 3, false},
        {{"^a$", "^.{2}$"}, {true, true}, 0, -1, true},
        {{"[ab]*a[ab]{2}", "b", "^.{0,4}$"}, {false, true, true}, 0, -1, false},
    };
    static const char *const sym[] = {"a", "b", "c", "-", "\xc3\xa9"};
    int bad = 0;
    for (size_t i = 0; i < sizeof pc / sizeof *pc; i++) {
        rx_term t[4];
        regex *own[4], *ref[4];
        size_t nt = 0;
        qerr e;
        for (; nt < 4 && pc[i].re[nt]; nt++) {
            const char *re = pc[i].re[nt];
            assert_int_equal(regex_compile(re, strlen(re), &own[nt], &e), 0);
            char full[128];
            snprintf(full, sizeof full, pc[i].search[nt] ? "%s" : "^(?:%s)$", re);
            assert_int_equal(regex_compile(full, strlen(full), &ref[nt], &e), 0);
            t[nt] = (rx_term){own[nt], pc[i].search[nt]};
        }
        sgr_gb *b = sgr_gb_new(NULL);
        sgr_expr x = rx_terms_to_grammar(t, nt, b, false, pc[i].mn, pc[i].mx, 0, &e);
        if (x < 0) { fprintf(stderr, "product %zu: %s\n", i, e.msg); fail(); }
        int32_t r = sgr_gb_rule(b, "start");
        sgr_gb_define(b, r, x);
        assert_null(sgr_gb_error(b));
        bool is_empty = x >= 0 && gx_at(b, x)->kind == GX_ALT && gx_at(b, x)->n == 0;
        if (is_empty != pc[i].empty) { fprintf(stderr, "product %zu: empty %d, want %d\n", i, is_empty, pc[i].empty); bad++; }
        /* every string of up to 5 symbols */
        size_t idx[5];
        for (int len = 0; len <= 5; len++) {
            memset(idx, 0, sizeof idx);
            for (;;) {
                char s[16];
                size_t n = 0;
                for (int k = 0; k < len; k++) { size_t l = strlen(sym[idx[k]]); memcpy(s + n, sym[idx[k]], l); n += l; }
                bool want = product_wants(ref, nt, s, n, pc[i].mn, pc[i].mx);
                if (oracle_accepts(b, r, s, n) != want) {
                    fprintf(stderr, "product %zu: \"%.*s\" accepted %d, want %d\n", i, (int)n, s, !want, want);
                    bad++;
                }
                int k = len - 1;
                while (k >= 0 && ++idx[k] == sizeof sym / sizeof *sym) idx[k--] = 0;
                if (k < 0) break;
            }
        }
        /* random walks, longer strings */
        if (!is_empty) {
            walker w = {0};
            w.b = b;
            w.rule_cost = rule_costs(b);
            w.rng = i * 2654435761u + 99;
            w.budget = 60;
            for (int k = 0; k < 300; k++) {
                w.n = 0;
                put(&w, "", 0);
                walk(&w, b->rules[r].body);
                if (!product_wants(ref, nt, w.out, w.n, pc[i].mn, pc[i].mx)) {
                    fprintf(stderr, "product %zu: walk \"%s\" does not match\n", i, w.out);
                    bad++;
                }
            }
            free(w.out);
            free(w.rule_cost);
            free(g_memo);
            g_memo = NULL;
        }
        sgr_gb_free(b);
        for (size_t k = 0; k < nt; k++) { regex_free(own[k]); regex_free(ref[k]); }
    }
    assert_int_equal(bad, 0);
}

/* Hostile products fail with a clear "unsupported" error, not a hang. */
static void test_regex_product_limits(void **state) {
    (void)state;
    /* six regexes whose product has millions of states */
    static const char *const hard[] = {"[ab]*a[ab]{7}", "[ab]*b[ab]{8}", "[ab]*a[ab]{9}", "[ab]*b[ab]{10}", "[ab]*a[ab]{11}", "[ab]*b[ab]{12}"};
    rx_term t[RX_MAX_TERMS + 1];
    regex *own[6];
    qerr e;
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(regex_compile(hard[i], strlen(hard[i]), &own[i], &e), 0);
        t[i] = (rx_term){own[i], true};
    }
    sgr_gb *b = sgr_gb_new(NULL);
    assert_true(rx_terms_to_grammar(t, 6, b, true, 0, -1, 0, &e) < 0);
    assert_non_null(strstr(e.msg, "unsupported: pattern intersection"));
    assert_true(rx_terms_to_grammar(t, 6, b, true, 0, 200, 0, &e) < 0);
    assert_non_null(strstr(e.msg, "unsupported: pattern"));
    /* too many terms */
    for (size_t i = 0; i <= RX_MAX_TERMS; i++) t[i] = (rx_term){own[i % 6], true};
    assert_true(rx_terms_to_grammar(t, RX_MAX_TERMS + 1, b, true, 0, -1, 0, &e) < 0);
    assert_true(rx_terms_to_grammar(t, 0, b, true, 0, -1, 0, &e) < 0);
    sgr_gb_free(b);
    /* through the schema compiler: refused with the keyword, or best effort */
    char sch[1024];
    int n = snprintf(sch, sizeof sch, "{\"type\":\"string\",\"allOf\":[");
    for (size_t i = 0; i < 6; i++) n += snprintf(sch + n, sizeof sch - (size_t)n, "%s{\"pattern\":\"%s\"}", i ? "," : "", hard[i]);
    snprintf(sch + n, sizeof sch - (size_t)n, "]}");
    json *doc = NULL;
    assert_int_equal(json_parse(sch, strlen(sch), NULL, &doc, &e), 0);
    compiled c;
    assert_false(compile_text_or_doc(doc, NULL, &c));
    assert_non_null(strstr(c.err, "unsupported"));
    assert_non_null(strstr(c.err, "pattern"));
    compiled_free(&c);
    sgr_schema_opts go = {.best_effort = true};
    assert_true(compile_text_or_doc(doc, &go, &c));
    compiled_free(&c);
    json_free(doc);
    /* seventeen patterns on one string */
    n = snprintf(sch, sizeof sch, "{\"type\":\"string\",\"allOf\":[");
    for (int i = 0; i < RX_MAX_TERMS / 2 + 1; i++) n += snprintf(sch + n, sizeof sch - (size_t)n, "%s{\"pattern\":\"a%d\"}", i ? "," : "", i);
    snprintf(sch + n, sizeof sch - (size_t)n, "]}");
    assert_int_equal(json_parse(sch, strlen(sch), NULL, &doc, &e), 0);
    assert_false(compile_text_or_doc(doc, NULL, &c));
    assert_non_null(strstr(c.err, "patterns on one string"));
    compiled_free(&c);
    json_free(doc);
    for (size_t i = 0; i < 6; i++) regex_free(own[i]);
}

/* format ∩ pattern(s): every generated string passes the format checker and
 * every pattern (the validator with formats asserted); an empty
 * intersection falls back to the patterns with a note, or is refused when
 * formats are assertions. */
static void test_pattern_format(void **state) {
    (void)state;
    static const char *const both[] = {
        "{\"type\":\"string\",\"format\":\"uri\",\"pattern\":\"^https://\"}",
        "{\"type\":\"string\",\"format\":\"uri\",\"pattern\":\"^http\"}",
        "{\"type\":\"string\",\"format\":\"email\",\"pattern\":\"\\\\.org$\"}",
        "{\"type\":\"string\",\"format\":\"date\",\"pattern\":\"^20\"}",
        "{\"type\":\"string\",\"format\":\"date-time\",\"pattern\":\"Z$\",\"maxLength\":20}",
        "{\"type\":\"string\",\"format\":\"uuid\",\"pattern\":\"^[0-9a-f]{8}-0000\"}",
        "{\"type\":\"string\",\"format\":\"ipv4\",\"pattern\":\"^10\\\\.\"}",
        "{\"type\":\"string\",\"format\":\"hostname\",\"pattern\":\"[0-9]\",\"minLength\":5}",
        "{\"allOf\":[{\"type\":\"string\",\"pattern\":\"^[a-z]+$\"},{\"pattern\":\"q\"}],\"maxLength\":8}",
        "{\"allOf\":[{\"type\":\"string\",\"pattern\":\"^a\"},{\"pattern\":\"z$\"},{\"format\":\"hostname\"}]}",
        "{\"allOf\":[{\"type\":\"string\",\"pattern\":\"^[0-9-]+$\"},{\"pattern\":\"-1\"},{\"format\":\"date\"},{\"format\":\"date\"}]}",
        "{\"type\":\"object\",\"patternProperties\":{\"^x-\":{\"type\":\"integer\"}},\"propertyNames\":{\"pattern\":\"[0-9]$\"},"
        "\"additionalProperties\":false,\"minProperties\":1}",
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof both / sizeof *both; i++) {
        json *doc = NULL;
        qerr e;
        assert_int_equal(json_parse(both[i], strlen(both[i]), NULL, &doc, &e), 0);
        compiled c = {0};
        schema_opts so = {.assert_format = true};
        assert_int_equal(schema_compile(doc, &so, &c.s, &e), 0);
        c.b = sgr_gb_new(NULL);
        sgr_unenforced *sk = NULL;
        size_t nsk = 0;
        c.start = sgr_schema_to_grammar(c.s, NULL, c.b, &sk, &nsk, &e);
        if (c.start < 0) { fprintf(stderr, "%s: %s\n", both[i], e.msg); fail(); }
        for (size_t k = 0; k < nsk; k++) { fprintf(stderr, "%s: not enforced %s\n", both[i], sk[k].keyword); bad++; }
        free(sk);
        bad += random_check(&c, 300, i + 31, both[i], true);
        compiled_free(&c);
        json_free(doc);
    }
    /* our date regex writes no letters: the pattern alone, with a note */
    static const char *const clash[] = {
        "{\"type\":\"string\",\"format\":\"date\",\"pattern\":\"^[A-Z]+$\"}",
        "{\"type\":\"string\",\"format\":\"uri\",\"pattern\":\"^ftp://\"}",
    };
    for (size_t i = 0; i < sizeof clash / sizeof *clash; i++) {
        json *doc = NULL;
        qerr e;
        assert_int_equal(json_parse(clash[i], strlen(clash[i]), NULL, &doc, &e), 0);
        compiled c = {0};
        assert_int_equal(schema_compile(doc, NULL, &c.s, &e), 0);
        c.b = sgr_gb_new(NULL);
        sgr_unenforced *sk = NULL;
        size_t nsk = 0;
        c.start = sgr_schema_to_grammar(c.s, NULL, c.b, &sk, &nsk, &e);
        assert_true(c.start >= 0);
        assert_int_equal(nsk, 1);
        assert_non_null(strstr(sk[0].keyword, "with a pattern"));
        free(sk);
        bad += random_check(&c, 100, i + 51, clash[i], true);
        compiled_free(&c);
        schema_opts so = {.assert_format = true};
        assert_int_equal(schema_compile(doc, &so, &c.s, &e), 0);
        c.b = sgr_gb_new(NULL);
        assert_true(sgr_schema_to_grammar(c.s, NULL, c.b, NULL, NULL, &e) < 0);
        assert_non_null(strstr(e.msg, "format"));
        compiled_free(&c);
        json_free(doc);
    }
    assert_int_equal(bad, 0);
}

/* Integer formats (int32, int64) bound generated numbers: every walk is an
 * integer within the format's range and the schema's bounds. */
static void test_integer_formats(void **state) {
    (void)state;
    static const struct { const char *schema; long long lo, hi; } ic[] = {
        {"{\"type\":\"number\",\"format\":\"int32\"}", -2147483648LL, 2147483647LL},
        {"{\"type\":\"integer\",\"format\":\"int32\",\"minimum\":-5}", -5, 2147483647LL},
        {"{\"type\":\"number\",\"format\":\"int32\",\"maximum\":1e12,\"exclusiveMinimum\":2147483000}", 2147483001LL, 2147483647LL},
        {"{\"type\":\"number\",\"format\":\"int32\",\"multipleOf\":1000000000}", -2000000000LL, 2000000000LL},
        {"{\"type\":\"number\",\"format\":\"int64\",\"minimum\":0.5}", 1, 999999999999999LL},
        {"{\"type\":\"number\",\"format\":\"int64\",\"multipleOf\":0.01,\"maximum\":3}", -999999999999999LL, 3},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof ic / sizeof *ic; i++) {
        compiled c = compile_str(ic[i].schema);
        walker w = walker_for(&c, i * 7919 + 3, 100);
        for (int k = 0; k < 500; k++) {
            const char *out = walk_next(&w, &c);
            char *end;
            long long v = strtoll(out, &end, 10);
            if (*end || v < ic[i].lo || v > ic[i].hi) { fprintf(stderr, "%s: wrote %s\n", ic[i].schema, out); bad++; }
        }
        walker_done(&w);
        bad += random_check(&c, 100, i + 71, ic[i].schema, true);
        compiled_free(&c);
    }
    assert_int_equal(bad, 0);
}

/* Draft <= 7 ignores $ref's siblings; Ajv applies them. The grammar keeps
 * to both where it can: the siblings are conjoined, while the validator
 * still ignores them, and a schema whose siblings cannot be met falls back
 * to the spec alone rather than failing. */
static void test_ref_siblings(void **state) {
    (void)state;
    /* applied in generation, ignored in validation */
    compiled c = compile_str("{\"$schema\":\"http://json-schema.org/draft-04/schema#\","
                             "\"definitions\":{\"l\":{\"type\":\"array\",\"items\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":9}},"
                             "\"s\":{\"type\":\"string\",\"pattern\":\"^[a-z]+$\"}},"
                             "\"type\":\"object\",\"required\":[\"a\",\"b\",\"c\"],\"additionalProperties\":false,"
                             "\"properties\":{\"a\":{\"$ref\":\"#/definitions/l\",\"maxItems\":1,\"description\":\"x\"},"
                             "\"b\":{\"$ref\":\"#/definitions/l\",\"minItems\":2},\"c\":{\"$ref\":\"#/definitions/s\",\"maxLength\":3}}}");
    assert_true(accepts(&c, "{\"a\":[3],\"b\":[1,1],\"c\":\"abc\"}"));
    assert_true(accepts(&c, "{\"a\":[],\"b\":[1,2,3],\"c\":\"x\"}"));
    assert_false(accepts(&c, "{\"a\":[3,4],\"b\":[1,2],\"c\":\"x\"}"));  /* maxItems beside $ref */
    assert_false(accepts(&c, "{\"a\":[3],\"b\":[1],\"c\":\"x\"}"));      /* minItems beside $ref */
    assert_false(accepts(&c, "{\"a\":[3],\"b\":[1,2],\"c\":\"abcd\"}")); /* maxLength beside $ref */
    assert_false(accepts(&c, "{\"a\":[3],\"b\":[1,2],\"c\":\"A\"}"));    /* the target still applies */
    json *v = NULL;
    qerr e;
    const char *both = "{\"a\":[3,4],\"b\":[1],\"c\":\"abcd\"}";
    assert_int_equal(json_parse(both, strlen(both), NULL, &v, &e), 0);
    assert_int_equal(schema_validate(c.s, v, NULL), 1);                  /* the spec ignores them */
    json_free(v);
    assert_int_equal(random_check(&c, 200, 5, "ref siblings", true), 0);
    compiled_free(&c);

    /* siblings no instance of the target meets: the spec's language alone */
    c = compile_str("{\"$schema\":\"http://json-schema.org/draft-07/schema#\",\"definitions\":{\"i\":{\"type\":\"integer\"}},"
                    "\"$ref\":\"#/definitions/i\",\"type\":\"string\"}");
    assert_true(accepts(&c, "7"));
    assert_false(accepts(&c, "\"7\""));
    compiled_free(&c);

    /* a malformed sibling neither fails the compile nor constrains */
    c = compile_str("{\"$schema\":\"http://json-schema.org/draft-06/schema#\",\"definitions\":{\"i\":{\"type\":\"integer\"}},"
                    "\"$ref\":\"#/definitions/i\",\"maximum\":\"x\",\"pattern\":\"(\"}");
    assert_true(accepts(&c, "12"));
    compiled_free(&c);

    /* 2019-09 and later apply siblings in validation as well */
    c = compile_str("{\"$defs\":{\"i\":{\"type\":\"integer\"}},\"$ref\":\"#/$defs/i\",\"maximum\":3}");
    assert_true(accepts(&c, "3"));
    assert_false(accepts(&c, "4"));
    compiled_free(&c);
}

static uint64_t xorshift(uint64_t *r) {
    *r ^= *r << 13;
    *r ^= *r >> 7;
    *r ^= *r << 17;
    return *r;
}

/* Fractional bounds are exact: for random bounds (plain, exponent and
 * exclusive forms) and F fraction digits, the grammar accepts a number
 * string exactly when it is canonical (no leading zeros, no trailing
 * fraction zeros, no "-0"), has at most F fraction digits and lies in the
 * bounds by exact decimal comparison. */
static void test_decimal_ranges(void **state) {
    (void)state;
    uint64_t r = 88172645463325252ull;
#define RND() xorshift(&r)
    int bad = 0, yes = 0, total = 0;
    /* the sanitizer build checks memory on a third of the ranges */
    int n_ranges = getenv("QUIRE_TEST_SANITIZED") ? 20 : 60;
    for (int t = 0; t < n_ranges; t++) {
        char lo[40], hi[40];
        double a = (double)(int64_t)(RND() % 40000) / 1000.0 - 20.0;
        double b = a + (double)(RND() % 5000) / 1000.0;
        if (t % 5 == 0) b = a + (double)(RND() % 5) / 10000.0; /* narrow */
        if (t % 7 == 3) snprintf(lo, sizeof lo, "%.0fe-3", a * 1000);
        else snprintf(lo, sizeof lo, "%.3f", a);
        snprintf(hi, sizeof hi, "%.4f", b);
        bool lex = RND() % 3 == 0, hex = RND() % 3 == 0;
        int F = 1 + (int)(RND() % 4);
        char sch[200];
        snprintf(sch, sizeof sch, "{\"type\":\"number\",\"%s\":%s,\"%s\":%s}", lex ? "exclusiveMinimum" : "minimum", lo,
                 hex ? "exclusiveMaximum" : "maximum", hi);
        sgr_schema_opts go = {0};
        go.max_frac_digits = F;
        json *lj = NULL, *hj = NULL;
        qerr e;
        assert_int_equal(json_parse(lo, strlen(lo), NULL, &lj, &e), 0);
        assert_int_equal(json_parse(hi, strlen(hi), NULL, &hj, &e), 0);
        json *doc = NULL;
        assert_int_equal(json_parse(sch, strlen(sch), NULL, &doc, &e), 0);
        compiled c;
        /* a range narrower than 10^-F may hold no number of F digits */
        bool none = !compile_text_or_doc(doc, &go, &c);
        json_free(doc);
        if (none && !strstr(c.err, "no finite instance")) { fprintf(stderr, "%s: %s\n", sch, c.err); bad++; }
        for (int k = 0; k < 400; k++) {
            /* a candidate near the bounds: sign, integer part, 0..F+1 fraction digits */
            char s[40];
            double v = a - 0.5 + (double)(RND() % 100000) / 100000.0 * (b - a + 1.0);
            if (k % 4 == 0) v = (k % 8 ? a : b) + ((double)(RND() % 21) - 10.0) * pow(10.0, -(double)(RND() % 5));
            int fd = (int)(RND() % (unsigned)(F + 2));
            snprintf(s, sizeof s, "%.*f", fd, v);
            if (RND() % 5 == 0 && fd > 0) s[strlen(s) - 1] = '0'; /* maybe non-canonical */
            json *x = NULL;
            assert_int_equal(json_parse(s, strlen(s), NULL, &x, &e), 0);
            const char *dot = strchr(s, '.');
            size_t nf = dot ? strlen(dot + 1) : 0;
            bool canon = strcmp(s, "-0") != 0 && !(dot && s[strlen(s) - 1] == '0') && nf <= (size_t)F &&
                         !(dot && nf == 0);
            int cl = json_number_cmp(x, lj), ch = json_number_cmp(x, hj);
            bool want = canon && (lex ? cl > 0 : cl >= 0) && (hex ? ch < 0 : ch <= 0);
            bool got = !none && accepts(&c, s);
            if (got != want) { fprintf(stderr, "%s F=%d: %s %s\n", sch, F, s, got ? "accepted" : "refused"); bad++; }
            yes += want;
            total++;
            json_free(x);
        }
        if (!none) bad += random_check(&c, 50, (uint64_t)t + 5, sch, true);
        compiled_free(&c);
        json_free(lj);
        json_free(hj);
    }
#undef RND
    fprintf(stderr, "decimal ranges: %d of %d candidates in range\n", yes, total);
    assert_int_equal(bad, 0);
    assert_true(yes > total / 10 && yes < total); /* both answers exercised */
}

/* multipleOf a power-of-ten fraction: where the bounds admit an integer and
 * integers divide exactly in binary floating point, only integers are
 * generated (validators that divide in doubles refuse 5.02 / 0.01); where
 * they do not (0.00001), decimals still are. Every
 * output must also pass the double division these validators do. */
static void test_multipleof_float_safe(void **state) {
    (void)state;
    static const struct { const char *schema; double m, lo, hi; bool ints; } mc[] = {
        {"{\"type\":\"number\",\"multipleOf\":0.01}", 0.01, -1e16, 1e16, true},
        {"{\"type\":\"number\",\"multipleOf\":0.1,\"minimum\":-3.5,\"maximum\":7.25}", 0.1, -3.5, 7.25, true},
        {"{\"type\":\"number\",\"multipleOf\":0.00001,\"minimum\":0,\"maximum\":2}", 0.00001, 0, 2, false},
        {"{\"type\":\"number\",\"multipleOf\":0.7,\"minimum\":-50,\"maximum\":50}", 0.7, -50, 50, false},
        {"{\"type\":\"number\",\"multipleOf\":0.3}", 0.3, -1e16, 1e16, false},
    };
    int bad = 0, decimals = 0;
    for (size_t i = 0; i < sizeof mc / sizeof *mc; i++) {
        compiled c = compile_str(mc[i].schema);
        walker w = walker_for(&c, i * 104729 + 11, 100);
        for (int k = 0; k < 500; k++) {
            const char *out = walk_next(&w, &c);
            char *end;
            double v = strtod(out, &end);
            bool is_int = !strpbrk(out, ".eE");
            decimals += !is_int;
            if (*end || v < mc[i].lo || v > mc[i].hi || (mc[i].ints && !is_int)) {
                fprintf(stderr, "%s: wrote %s\n", mc[i].schema, out);
                bad++;
            }
            double q = v / mc[i].m;
            if (q != floor(q)) { fprintf(stderr, "%s: %s / %g = %.17g\n", mc[i].schema, out, mc[i].m, q); bad++; }
        }
        walker_done(&w);
        bad += random_check(&c, 100, i + 91, mc[i].schema, true);
        compiled_free(&c);
    }
    assert_int_equal(bad, 0);
    assert_true(decimals > 0); /* the last schema still produces decimals */
}

static void test_any_json_object(void **state) {
    (void)state;
    sgr_gb *b = sgr_gb_new(NULL);
    qerr e;
    int32_t st = sgr_schema_any_json_object(b, NULL, 4, &e);
    assert_true(st >= 0);
    compiled c = {.b = b, .start = st};
    assert_true(accepts(&c, "{}"));
    assert_true(accepts(&c, "{\"a\":1,\"bb\":[true,{\"x\":null}]}"));
    assert_false(accepts(&c, "[]"));
    assert_false(accepts(&c, "{\"a\":1,\"a\":2}"));
    /* random objects parse strictly (no duplicate keys) */
    const char *t = "{\"type\":\"object\"}";
    json *doc = NULL;
    assert_int_equal(json_parse(t, strlen(t), NULL, &doc, &e), 0);
    assert_int_equal(schema_compile(doc, NULL, &c.s, &e), 0);
    json_free(doc);
    assert_int_equal(random_check(&c, 300, 7, "any object", true), 0);
    schema_free(c.s);
    sgr_gb_free(b);
}

/* ======================================================================== */
/* Corpora                                                                  */
/* ======================================================================== */

typedef struct stats {
    int schemas, supported, walks_bad;
    int valid, valid_accepted, invalid, invalid_accepted;
} stats;

/* Labelled instance: invalid ones must be rejected; count accepted valid ones. */
static void check_instance(const compiled *c, const json *data, bool valid, stats *st, const char *what) {
    char *txt;
    size_t n;
    qerr e;
    if (json_serialize(data, NULL, &txt, &n, &e)) return;
    if (n <= 4000) {
        bool acc = oracle_accepts(c->b, c->start, txt, n);
        if (valid) { st->valid++; if (acc) st->valid_accepted++; }
        else {
            st->invalid++;
            if (acc) {
                /* the validator is the definition: make sure it says invalid */
                schema_error err;
                if (schema_validate(c->s, data, &err) != 1) {
                    st->invalid_accepted++;
                    fprintf(stderr, "ACCEPTS INVALID %s: %.300s\n", what, txt);
                }
            }
        }
    }
    free(txt);
}

static void run_bench_split(const char *split, stats *st) {
    char rel[256], dir[1024];
    snprintf(rel, sizeof rel, "jsonschemabench/%s", split);
    snprintf(dir, sizeof dir, "%s", shared_path(rel));
    size_t n;
    char **names = test_list_json(dir, &n);
    for (size_t i = 0; i < n; i++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        json *doc = load_json(path);
        if (!doc) { free(names[i]); continue; }
        st->schemas++;
        compiled c;
        if (compile_text_or_doc(json_get(doc, "schema"), NULL, &c)) {
            st->supported++;
            char what[2100];
            snprintf(what, sizeof what, "%s/%s", split, names[i]);
            st->walks_bad += random_check(&c, 20, i + 1, what, true);
            const json *tests = json_get(doc, "tests");
            for (size_t k = 0; k < json_size(tests); k++) {
                const json *tc = json_at(tests, k);
                check_instance(&c, json_get(tc, "data"), json_get(tc, "valid") && json_get(tc, "valid")->type == JSON_TRUE, st, what);
            }
        }
        compiled_free(&c);
        json_free(doc);
        free(names[i]);
    }
    free(names);
}

static void test_jsonschemabench(void **state) {
    (void)state;
    static const char *splits[] = {"Glaiveai2K", "Github_easy", "Github_trivial", "Snowplow"};
    stats tot = {0};
    for (size_t i = 0; i < 4; i++) {
        stats st = {0};
        run_bench_split(splits[i], &st);
        fprintf(stderr, "%-15s supported %d/%d (%.1f%%); random walks invalid %d; valid instances accepted %d/%d; invalid accepted %d/%d\n",
                splits[i], st.supported, st.schemas, 100.0 * st.supported / (st.schemas ? st.schemas : 1), st.walks_bad,
                st.valid_accepted, st.valid, st.invalid_accepted, st.invalid);
        if (i < 2) assert_true(st.supported * 100 >= st.schemas * 95);
        tot.walks_bad += st.walks_bad;
        tot.invalid_accepted += st.invalid_accepted;
    }
    assert_int_equal(tot.walks_bad, 0);
    assert_int_equal(tot.invalid_accepted, 0);
}

/* JSON-Schema-Test-Suite: every group whose schema compiles and is
 * supported; its invalid instances must be rejected, walks must validate. */
static void test_suite_soundness(void **state) {
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", shared_path("jsonschema/JSON-Schema-Test-Suite/tests/draft2020-12"));
    size_t n;
    char **names = test_list_json(dir, &n);
    stats st = {0};
    for (size_t i = 0; i < n; i++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        json *doc = load_json(path);
        for (size_t g = 0; doc && g < json_size(doc); g++) {
            const json *grp = json_at(doc, g);
            st.schemas++;
            compiled c;
            char what[2200];
            snprintf(what, sizeof what, "%s / %s", names[i], json_string(json_get(grp, "description")));
            if (compile_text_or_doc(json_get(grp, "schema"), NULL, &c)) {
                st.supported++;
                st.walks_bad += random_check(&c, 30, g + 1, what, true);
                const json *tests = json_get(grp, "tests");
                for (size_t k = 0; k < json_size(tests); k++) {
                    const json *tc = json_at(tests, k);
                    /* only where the validator agrees with the suite's label */
                    schema_error err;
                    int v = schema_validate(c.s, json_get(tc, "data"), &err);
                    bool label = json_get(tc, "valid")->type == JSON_TRUE;
                    if (v < 0 || (v == 1) != label) continue;
                    check_instance(&c, json_get(tc, "data"), label, &st, what);
                }
            }
            compiled_free(&c);
        }
        json_free(doc);
        free(names[i]);
    }
    free(names);
    fprintf(stderr, "draft2020-12 groups supported %d/%d; random walks invalid %d; valid accepted %d/%d; invalid accepted %d/%d\n",
            st.supported, st.schemas, st.walks_bad, st.valid_accepted, st.valid, st.invalid_accepted, st.invalid);
    assert_int_equal(st.walks_bad, 0);
    assert_int_equal(st.invalid_accepted, 0);
}

static void put_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Runs quire with the formatted arguments, checks its exit code, returns
 * its output (caller frees). */
static char *quire_out(int want_rc, const char *fmt, const char *arg) {
    char args[1024], *out;
    snprintf(args, sizeof args, fmt, arg);
    assert_int_equal(run_quire(args, &out), want_rc);
    return out;
}

static void test_cli(void **state) {
    (void)state;
    char tmpl[] = "/tmp/quire-sg-XXXXXX";
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    char sp[256];
    snprintf(sp, sizeof sp, "%s/s.json", dir);
    put_text(sp, "{\"type\":\"object\",\"properties\":{\"x\":{\"oneOf\":[{\"type\":\"integer\"},{\"minimum\":3}]}}}");
    char *out = quire_out(2, "schema check %s 2>&1", sp);
    assert_non_null(strstr(out, "oneOf"));
    assert_non_null(strstr(out, "/properties/x"));
    free(out);
    out = quire_out(0, "schema check %s --best-effort 2>&1", sp);
    assert_non_null(strstr(out, "not enforced: oneOf at /properties/x"));
    free(out);
    put_text(sp, "{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"boolean\"}},\"required\":[\"x\"]}");
    out = quire_out(0, "schema check %s --grammar", sp);
    assert_non_null(strstr(out, "root ::="));
    assert_non_null(strstr(out, "\"true\""));
    free(out);
    out = quire_out(0, "schema check --stats %s", dir);
    assert_non_null(strstr(out, "\"supported\":1"));
    free(out);
    /* --stats refuses what `schema check` refuses: a keyword that asserts in an older draft */
    put_text(sp, "{\"type\":\"object\",\"extends\":{\"type\":\"object\"}}");
    out = quire_out(0, "schema check --stats %s", dir);
    assert_non_null(strstr(out, "\"supported\":0"));
    assert_non_null(strstr(out, "extends"));
    free(out);
    free(quire_out(2, "schema check %s 2>&1", sp));
    /* int32: an annotation to the validator, a bound to the generator */
    put_text(sp, "{\"type\":\"integer\",\"format\":\"int32\"}");
    out = quire_out(0, "schema check %s 2>&1", sp);
    assert_non_null(strstr(out, "not validated (numbers are generated within it): format \"int32\""));
    free(out);
    remove(sp);
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_regex_grammar),
        cmocka_unit_test(test_regex_product),
        cmocka_unit_test(test_regex_product_limits),
        cmocka_unit_test(test_pattern_format),
        cmocka_unit_test(test_integer_formats),
        cmocka_unit_test(test_multipleof_float_safe),
        cmocka_unit_test(test_decimal_ranges),
        cmocka_unit_test(test_ref_siblings),
        cmocka_unit_test(test_hand_cases),
        cmocka_unit_test(test_unsupported),
        cmocka_unit_test(test_formats_asserted),
        cmocka_unit_test(test_any_json_object),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_suite_soundness),
        cmocka_unit_test(test_jsonschemabench),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
