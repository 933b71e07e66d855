/* test_grammar.c — the grammar engine against a second implementation: a
 * chart recognizer over the test's own copy of random grammars (least
 * fixed point of end-position sets, so it needs no care for recursion), plus
 * brute-force token masks, shortest completions by search, forced bytes, the
 * budget invariant under random sampling, the text format and hostile
 * grammars. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sgr/sgr.h"
#include "tokenizer/tokenizer.h"
#include "testutil.h"

/* ---- random grammars, mirrored in a test-side tree ---------------------- */

enum { O_LIT, O_CLASS, O_SEQ, O_ALT, O_REP, O_REF };

typedef struct onode {
    int kind;
    char lit[4]; int nlit;
    uint8_t cls;          /* bit i: 'a'+i */
    int kids[4]; int nk;
    int min, max;         /* max -1: unbounded */
    int ref;
} onode;

typedef struct ogram {
    onode nd[256]; int n;
    int body[4]; int nr;
} ogram;

static uint64_t rs = 88172645463325252ull;
static uint32_t rnd(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return (uint32_t)(rs >> 11); }
static int rn(int n) { return (int)(rnd() % (uint32_t)n); }

static int gen(ogram *g, int depth) {
    if (g->n >= 250) { onode x = {.kind = O_LIT, .nlit = 1, .lit = "a"}; g->nd[g->n] = x; return g->n++; }
    int k = depth >= 3 ? rn(2) : rn(10);
    int id = g->n++;
    onode x = {0};
    switch (k) {
    case 0: case 6: x.kind = O_LIT; x.nlit = 1 + rn(2); for (int i = 0; i < x.nlit; i++) x.lit[i] = (char)('a' + rn(3)); break;
    case 1: x.kind = O_CLASS; x.cls = (uint8_t)(1 + rn(7)); break;
    case 2: case 7: x.kind = O_SEQ; x.nk = 2 + rn(2); for (int i = 0; i < x.nk; i++) x.kids[i] = gen(g, depth + 1); break;
    case 3: case 8: x.kind = O_ALT; x.nk = 2 + rn(2); for (int i = 0; i < x.nk; i++) x.kids[i] = gen(g, depth + 1); break;
    case 4: x.kind = O_REP; x.min = rn(3); x.max = rn(3) ? x.min + rn(3) : -1; if (x.max == 0) x.max = 1; x.kids[0] = gen(g, depth + 1); break;
    default: x.kind = O_REF; x.ref = rn(g->nr); break;
    }
    g->nd[id] = x;
    return id;
}

static void gen_grammar(ogram *g) {
    memset(g, 0, sizeof *g);
    g->nr = 1 + rn(3);
    for (int r = 0; r < g->nr; r++) g->body[r] = gen(g, 0);
}

static sgr_expr to_ir(sgr_gb *b, const ogram *g, int i, const int32_t *rid) {
    const onode *x = &g->nd[i];
    switch (x->kind) {
    case O_LIT: return sgr_gb_lit(b, x->lit, (size_t)x->nlit);
    case O_CLASS: {
        uint8_t set[32] = {0};
        for (int c = 0; c < 3; c++)
            if (x->cls >> c & 1) set[('a' + c) >> 3] |= (uint8_t)(1u << (('a' + c) & 7));
        return sgr_gb_class(b, set);
    }
    case O_SEQ: case O_ALT: {
        sgr_expr k[4];
        for (int j = 0; j < x->nk; j++) k[j] = to_ir(b, g, x->kids[j], rid);
        return x->kind == O_SEQ ? sgr_gb_seq(b, k, (size_t)x->nk) : sgr_gb_alt(b, k, (size_t)x->nk);
    }
    case O_REP: return sgr_gb_repeat(b, to_ir(b, g, x->kids[0], rid), (uint32_t)x->min, x->max < 0 ? SGR_INF : (uint32_t)x->max);
    default: return sgr_gb_ref(b, rid[x->ref]);
    }
}

static int build(const ogram *g, sgr_grammar **out, qerr *e) {
    sgr_gb *b = sgr_gb_new(NULL);
    int32_t rid[4];
    char nm[16];
    for (int r = 0; r < g->nr; r++) { snprintf(nm, sizeof nm, "r%d", r); rid[r] = sgr_gb_rule(b, nm); }
    for (int r = 0; r < g->nr; r++) sgr_gb_define(b, rid[r], to_ir(b, g, g->body[r], rid));
    int rc = sgr_grammar_build(b, rid[0], out, e);
    sgr_gb_free(b);
    return rc;
}

/* Oracle: ends(x, i) = bitmask of positions where x can end when started at i. */
typedef struct oracle { const ogram *g; const char *s; int L; uint32_t tab[4][17]; } oracle;

static uint32_t ends(oracle *o, int x, int i);

static uint32_t ends_set(oracle *o, int x, uint32_t from) {
    uint32_t r = 0;
    for (int j = 0; j <= o->L; j++)
        if (from >> j & 1) r |= ends(o, x, j);
    return r;
}

static uint32_t ends(oracle *o, int xi, int i) {
    const onode *x = &o->g->nd[xi];
    switch (x->kind) {
    case O_LIT:
        if (i + x->nlit <= o->L && memcmp(o->s + i, x->lit, (size_t)x->nlit) == 0) return 1u << (i + x->nlit);
        return 0;
    case O_CLASS: {
        if (i >= o->L) return 0;
        int c = o->s[i] - 'a';
        return (c >= 0 && c < 3 && (x->cls >> c & 1)) ? 1u << (i + 1) : 0;
    }
    case O_SEQ: {
        uint32_t cur = 1u << i;
        for (int k = 0; k < x->nk && cur; k++) cur = ends_set(o, x->kids[k], cur);
        return cur;
    }
    case O_ALT: {
        uint32_t r = 0;
        for (int k = 0; k < x->nk; k++) r |= ends(o, x->kids[k], i);
        return r;
    }
    case O_REP: {
        uint32_t cur = 1u << i, res = x->min == 0 ? cur : 0;
        int lim = x->max < 0 ? x->min + o->L + 2 : x->max;
        for (int c = 1; c <= lim && cur; c++) {
            cur = ends_set(o, x->kids[0], cur);
            if (c >= x->min) res |= cur;
        }
        return res;
    }
    default: return o->tab[x->ref][i];
    }
}

static bool oracle_accepts(const ogram *g, const char *s, int L) {
    oracle o = {.g = g, .s = s, .L = L};
    memset(o.tab, 0, sizeof o.tab);
    for (bool ch = true; ch;) {
        ch = false;
        for (int r = 0; r < g->nr; r++)
            for (int i = 0; i <= L; i++) {
                uint32_t v = ends(&o, g->body[r], i);
                if (v != o.tab[r][i]) { o.tab[r][i] = v; ch = true; }
            }
    }
    return o.tab[0][0] >> L & 1;
}

/* shortest completion by breadth-first search over a-c (up to maxk), -1 if none */
static int oracle_min_completion(const ogram *g, const char *pre, int n, int maxk) {
    char buf[20];
    memcpy(buf, pre, (size_t)n);
    for (int k = 0; k <= maxk && n + k <= 16; k++) {
        int total = 1;
        for (int i = 0; i < k; i++) total *= 3;
        for (int w = 0; w < total; w++) {
            int v = w;
            for (int i = 0; i < k; i++) buf[n + i] = (char)('a' + v % 3), v /= 3;
            if (oracle_accepts(g, buf, n + k)) return k;
        }
    }
    return -1;
}

static void test_random_vs_oracle(void **st) {
    (void)st;
    int built = 0, lrec = 0, checked = 0;
    for (int gi = 0; gi < 400; gi++) {
        ogram g;
        gen_grammar(&g);
        sgr_grammar *G;
        qerr e;
        if (build(&g, &G, &e) < 0) {
            if (strstr(e.msg, "left recursion")) lrec++;
            else assert_true(strstr(e.msg, "matches no string") != NULL);
            continue;
        }
        built++;
        sgr_matcher *m;
        assert_int_equal(sgr_matcher_new(G, NULL, &m, &e), 0);
        for (int si = 0; si < 40; si++) {
            char s[12];
            int L = rn(9);
            for (int i = 0; i < L; i++) s[i] = (char)('a' + rn(3));
            sgr_matcher_reset(m);
            bool whole = sgr_matcher_accept_bytes(m, s, (size_t)L) == 0;
            bool acc = whole && sgr_matcher_can_end(m);
            assert_int_equal(acc, oracle_accepts(&g, s, L));
            checked++;
            if (whole) {
                /* a viable prefix: the shortest completion completes it */
                char *c;
                size_t cn;
                assert_int_equal(sgr_matcher_shortest(m, &c, &cn, &e), 0);
                assert_int_equal(cn, sgr_matcher_min_bytes(m));
                if (L + (int)cn <= 16) {
                    char buf[20];
                    memcpy(buf, s, (size_t)L);
                    memcpy(buf + L, c, cn);
                    assert_true(oracle_accepts(&g, buf, L + (int)cn));
                    if (cn <= 4) assert_int_equal(oracle_min_completion(&g, s, L, 4), (int)cn);
                }
                /* forced bytes: a prefix of every completion (check against the shortest) */
                char *f;
                size_t fn;
                assert_int_equal(sgr_matcher_forced(m, &f, &fn, &e), 0);
                assert_true(fn <= cn);
                assert_memory_equal(f, c, fn);
                if (fn) assert_int_equal(sgr_matcher_accept_bytes(m, f, fn), 0);
                free(f);
                free(c);
            } else if (L <= 8) {
                assert_int_equal(oracle_min_completion(&g, s, L, 16 - L > 4 ? 4 : 16 - L), -1);
            }
        }
        sgr_matcher_free(m);
        sgr_grammar_free(G);
    }
    assert_true(built > 100);
    fprintf(stderr, "random grammars: %d built, %d left-recursive, %d strings checked\n", built, lrec, checked);
}

/* ---- masks -------------------------------------------------------------- */

static void brute_mask(sgr_matcher *m, const sgr_vocab *v, uint32_t *bits) {
    size_t nv = sgr_vocab_size(v);
    memset(bits, 0, ((nv + 31) / 32) * 4);
    for (size_t t = 0; t < nv; t++)
        if (sgr_matcher_accept_token(m, (int32_t)t) == 0) {
            bits[t >> 5] |= 1u << (t & 31);
            sgr_matcher_rollback(m, 1);
        }
}

static int pick_allowed(const uint32_t *bits, size_t nv, const sgr_vocab *v, bool avoid_eog, int32_t eog) {
    int cnt = 0;
    for (size_t t = 0; t < nv; t++)
        if ((bits[t >> 5] >> (t & 31) & 1) && !(avoid_eog && (int32_t)t == eog)) cnt++;
    (void)v;
    if (!cnt) return -1;
    int k = rn(cnt);
    for (size_t t = 0; t < nv; t++)
        if ((bits[t >> 5] >> (t & 31) & 1) && !(avoid_eog && (int32_t)t == eog) && k-- == 0) return (int)t;
    return -1;
}

static void check_masks_walk(sgr_grammar *G, sgr_vocab *v, int steps, int32_t eog, bool brute) {
    size_t nv = sgr_vocab_size(v), nw = (nv + 31) / 32;
    uint32_t *a = malloc(nw * 4), *b = malloc(nw * 4), *c = malloc(nw * 4);
    sgr_matcher *m;
    qerr e;
    assert_int_equal(sgr_matcher_new(G, v, &m, &e), 0);
    for (int s = 0; s < steps; s++) {
        assert_int_equal(sgr_matcher_fill_mask(m, a), 0);
        assert_int_equal(sgr_matcher_fill_mask_uncached(m, b), 0);
        assert_memory_equal(a, b, nw * 4);
        if (brute) {
            brute_mask(m, v, c);
            assert_memory_equal(a, c, nw * 4);
        }
        int t = pick_allowed(a, nv, v, true, eog);
        if (t < 0) break;
        assert_int_equal(sgr_matcher_accept_token(m, t), 0);
    }
    sgr_matcher_free(m);
    free(a);
    free(b);
    free(c);
}

static void test_masks_random(void **st) {
    (void)st;
    for (int gi = 0; gi < 150; gi++) {
        ogram g;
        gen_grammar(&g);
        sgr_grammar *G;
        qerr e;
        if (build(&g, &G, &e) < 0) continue;
        /* a random vocabulary over a-c (+ 'x' never in the grammar), one EOG, one empty */
        int nv = 6 + rn(30);
        char pieces[40][5];
        const char *pp[40];
        size_t len[40];
        for (int i = 0; i < nv; i++) {
            int l = i < 2 ? 0 : 1 + rn(4);
            for (int j = 0; j < l; j++) pieces[i][j] = "abcx"[rn(4)];
            pp[i] = pieces[i];
            len[i] = (size_t)l;
        }
        int32_t eog = 0;
        sgr_vocab *v;
        assert_int_equal(sgr_vocab_from_pieces(pp, len, (size_t)nv, &eog, 1, &v, &e), 0);
        for (int w = 0; w < 3; w++) check_masks_walk(G, v, 12, eog, true);
        sgr_vocab_free(v);
        sgr_grammar_free(G);
    }
}

static const char *json_grammar =
    "# JSON-shaped\n"
    "root   ::= object\n"
    "value  ::= object | array | string | number | (\"true\" | \"false\" | \"null\")\n"
    "object ::= \"{\" ws ( string \":\" ws value (\",\" ws string \":\" ws value)* )? \"}\" ws\n"
    "array  ::= \"[\" ws ( value (\",\" ws value)* )? \"]\" ws\n"
    "string ::= \"\\\"\" ( [^\"\\\\\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4}) )* \"\\\"\" ws\n"
    "number ::= (\"-\"? ([0-9] | [1-9] [0-9]{1,15})) (\".\" [0-9]{1,10})? ([eE] [-+]? [0-9]{1,3})? ws\n"
    "ws     ::= [ \\t\\n]{0,4}\n";

static void test_masks_real_vocabs(void **st) {
    (void)st;
    const char *vocabs[] = {"vocab/ggml-vocab-gpt-2.gguf", "vocab/ggml-vocab-llama-spm.gguf"};
    sgr_grammar *G;
    qerr e;
    int rc = sgr_grammar_parse(json_grammar, strlen(json_grammar), &G, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(rc, 0);
    for (int k = 0; k < 2; k++) {
        tokenizer *tk;
        sgr_vocab *v = test_load_vocab(vocabs[k], &tk);
        assert_true(sgr_vocab_has_all_bytes(v));
        int32_t eog = tokenizer_eos(tk);
        check_masks_walk(G, v, 6, eog, true);    /* brute force: 50k tokens per step */
        for (int w = 0; w < 4; w++) check_masks_walk(G, v, 60, eog, false);
        sgr_vocab_free(v);
        tokenizer_free(tk);
    }
    sgr_grammar_free(G);
}

/* ---- budget ------------------------------------------------------------- */

static void budget_run(sgr_grammar *G, sgr_vocab *v, const ogram *og, int32_t eog, int budget0) {
    sampler_params sp = sampler_defaults();
    sp.temp = 1.0f;
    sp.seed = rnd();
    size_t nv = sgr_vocab_size(v);
    sampler *s = sampler_new(&sp, (int)nv);
    float *lg = malloc(nv * sizeof *lg);
    sgr_matcher *m;
    qerr e;
    assert_int_equal(sgr_matcher_new(G, v, &m, &e), 0);
    char text[4096];
    size_t tn = 0;
    int R = budget0;
    bool ended = false;
    while (R > 0) {
        for (size_t i = 0; i < nv; i++) lg[i] = (float)(rn(2000) - 1000) / 100.0f;
        sgr_sample_stats ss;
        int32_t t = sgr_sample(m, s, lg, NULL, 0, R, &ss, &e);
        if (t < 0) fprintf(stderr, "sample failed: %s (budget %d of %d)\n", e.msg, R, budget0);
        assert_true(t >= 0);
        R--;
        if (t == eog) { ended = true; break; }
        (void)ended;
    }
    assert_true(sgr_matcher_can_end(m));
    (void)text;
    (void)tn;
    (void)og;
    sgr_matcher_free(m);
    sampler_free(s);
    free(lg);
}

static void test_budget_random(void **st) {
    (void)st;
    int runs = 0;
    for (int gi = 0; gi < 200; gi++) {
        ogram g;
        gen_grammar(&g);
        sgr_grammar *G;
        qerr e;
        if (build(&g, &G, &e) < 0) continue;
        /* vocab 1 spells every byte; vocab 2 lacks single 'b' (greedy plans) */
        for (int vk = 0; vk < 2; vk++) {
            const char *base1[] = {"", "a", "b", "c", "ab", "bc", "ca", "abc", "aa", "cc", "bbb"};
            const char *base2[] = {"", "a", "bb", "c", "ab", "bc", "cb", "abc", "ba", "b"};
            const char **pp = vk == 0 ? base1 : base2;
            size_t nv = vk == 0 ? 11 : 9; /* vocab 2: no "b" */
            size_t len[16];
            for (size_t i = 0; i < nv; i++) len[i] = strlen(pp[i]);
            int32_t eog = 0;
            sgr_vocab *v;
            assert_int_equal(sgr_vocab_from_pieces(pp, len, nv, &eog, 1, &v, &e), 0);
            int mt = test_min_tokens(G, v);
            if (mt >= 0)
                for (int b = mt; b < mt + 6; b++) {
                    budget_run(G, v, &g, eog, b > 0 ? b : 1);
                    runs++;
                }
            sgr_vocab_free(v);
        }
        sgr_grammar_free(G);
    }
    assert_true(runs > 200);
}

static void test_budget_json_gpt2(void **st) {
    (void)st;
    sgr_grammar *G;
    qerr e;
    assert_int_equal(sgr_grammar_parse(json_grammar, strlen(json_grammar), &G, &e), 0);
    tokenizer *tk;
    sgr_vocab *v = test_load_vocab("vocab/ggml-vocab-gpt-2.gguf", &tk);
    int mt = test_min_tokens(G, v);
    assert_true(mt >= 1);
    for (int b = mt; b < mt + 30; b += 3) budget_run(G, v, NULL, tokenizer_eos(tk), b);
    sgr_vocab_free(v);
    tokenizer_free(tk);
    sgr_grammar_free(G);
}

/* ---- text format, regex, choice, hostile -------------------------------- */

static bool gmatch(const sgr_grammar *G, const char *s) {
    sgr_matcher *m;
    qerr e;
    assert_int_equal(sgr_matcher_new(G, NULL, &m, &e), 0);
    bool r = sgr_matcher_accept_bytes(m, s, strlen(s)) == 0 && sgr_matcher_can_end(m);
    sgr_matcher_free(m);
    return r;
}

static void test_text_format(void **st) {
    (void)st;
    sgr_grammar *G;
    qerr e;
    const char *t = "root ::= greet \" \" name{1,2} # comment\n"
                    "greet ::= \"hi\" | \"h\\u00e9llo\"\n name ::= [A-Z] [a-z]+ \"!\"?\n";
    assert_int_equal(sgr_grammar_parse(t, strlen(t), &G, &e), 0);
    assert_true(gmatch(G, "hi Bob"));
    assert_true(gmatch(G, "h\xc3\xa9llo AnnBob!"));
    assert_false(gmatch(G, "hi bob"));
    assert_false(gmatch(G, "hi Bo!b"));
    /* print -> parse round trip accepts the same strings */
    char *txt;
    size_t tl;
    sgr_gb *pb = sgr_gb_new(NULL);
    int32_t proot;
    assert_int_equal(sgr_gb_parse_text(pb, t, strlen(t), &proot, &e), 0);
    assert_int_equal(sgr_gb_print(pb, &txt, &tl, &e), 0);
    sgr_gb_free(pb);
    sgr_grammar *G2;
    int rc = sgr_grammar_parse(txt, tl, &G2, &e);
    if (rc) fprintf(stderr, "%s\n%s\n", e.msg, txt);
    assert_int_equal(rc, 0);
    assert_true(gmatch(G2, "h\xc3\xa9llo AnnBob!"));
    assert_false(gmatch(G2, "hi bob"));
    free(txt);
    sgr_grammar_free(G2);
    sgr_grammar_free(G);
    /* code point classes */
    t = "root ::= [^a]{2}";
    assert_int_equal(sgr_grammar_parse(t, strlen(t), &G, &e), 0);
    assert_true(gmatch(G, "b\xe2\x82\xac"));
    assert_false(gmatch(G, "ba"));
    assert_false(gmatch(G, "b\xff"));
    sgr_grammar_free(G);
    /* errors name line and column */
    const char *bad[][2] = {
        {"root ::= \"a\"\nfoo ::= (\"b\"", "line 2"},
        {"root ::= x", "x is used but never defined"},
        {"rot ::= \"a\"", "no rule named root"},
        {"root ::= \"a\"\nroot ::= \"b\"", "defined twice"},
        {"root ::= [b-a]", "out of order"},
        {"root ::= \"a\"{3,2}", "n < m"},
        {"root ::= \"\\q\"", "unknown escape"},
        {"root ::= root \"a\" | \"b\"", "left recursion: rule root"},
        {"root ::= a\na ::= \"x\"? root", "left recursion"},
        {"root ::= \"a\" root", "matches no string"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int r = sgr_grammar_parse(bad[i][0], strlen(bad[i][0]), &G, &e);
        if (r == 0 || !strstr(e.msg, bad[i][1])) fprintf(stderr, "case %zu: %s\n", i, r ? e.msg : "accepted");
        assert_int_equal(r, -1);
        assert_non_null(strstr(e.msg, bad[i][1]));
    }
}

static void test_choice(void **st) {
    (void)st;
    const char *s[] = {"red", "green", "gray", ""};
    size_t l[] = {3, 5, 4, 0};
    sgr_grammar *G;
    qerr e;
    assert_int_equal(sgr_grammar_from_choice(s, l, 3, &G, &e), 0);
    assert_true(gmatch(G, "gray"));
    assert_false(gmatch(G, "gr"));
    sgr_matcher *m;
    assert_int_equal(sgr_matcher_new(G, NULL, &m, &e), 0);
    char *f;
    size_t fn;
    assert_int_equal(sgr_matcher_accept_bytes(m, "g", 1), 0);
    assert_int_equal(sgr_matcher_forced(m, &f, &fn, &e), 0);
    assert_int_equal(fn, 1);
    assert_memory_equal(f, "r", 1);
    free(f);
    assert_int_equal(sgr_matcher_min_bytes(m), 3);
    assert_int_equal(sgr_matcher_accept_bytes(m, "ree", 3), 0);
    assert_false(sgr_matcher_can_end(m));
    assert_int_equal(sgr_matcher_accept_bytes(m, "n", 1), 0);
    assert_true(sgr_matcher_can_end(m));
    assert_true(sgr_matcher_done(m));
    assert_int_equal(sgr_matcher_rollback(m, 2), 0);
    assert_int_equal(sgr_matcher_accept_bytes(m, "ray", 3), 0);
    assert_true(sgr_matcher_can_end(m));
    sgr_matcher_free(m);
    sgr_grammar_free(G);
}

static void test_forced_json_key(void **st) {
    (void)st;
    const char *t = "root ::= \"{\" ws \"\\\"name\\\"\" ws \":\" ws [a-z]+ ws \"}\"\nws ::= \" \"?\n";
    sgr_grammar *G;
    qerr e;
    assert_int_equal(sgr_grammar_parse(t, strlen(t), &G, &e), 0);
    sgr_matcher *m;
    assert_int_equal(sgr_matcher_new(G, NULL, &m, &e), 0);
    char *f;
    size_t fn;
    assert_int_equal(sgr_matcher_forced(m, &f, &fn, &e), 0);
    assert_int_equal(fn, 1);
    free(f);
    assert_int_equal(sgr_matcher_accept_bytes(m, "{ ", 2), 0);
    assert_int_equal(sgr_matcher_forced(m, &f, &fn, &e), 0);
    assert_int_equal(fn, 6);
    assert_memory_equal(f, "\"name\"", 6);
    free(f);
    sgr_matcher_free(m);
    sgr_grammar_free(G);
}

static void test_hostile(void **st) {
    (void)st;
    sgr_grammar *G;
    qerr e;
    /* deep nesting: 100k parentheses -> an error, not a crash */
    size_t n = 200000;
    char *t = malloc(n + 64);
    strcpy(t, "root ::= ");
    size_t p = strlen(t);
    for (size_t i = 0; i < 100000; i++) t[p++] = '(';
    t[p++] = '"'; t[p++] = 'a'; t[p++] = '"';
    for (size_t i = 0; i < 100000; i++) t[p++] = ')';
    assert_int_equal(sgr_grammar_parse(t, p, &G, &e), -1);
    assert_non_null(strstr(e.msg, "nested too deeply"));
    /* nesting through rules: 5000 rules deep works */
    free(t);
    t = malloc(5000 * 40 + 64);
    p = (size_t)sprintf(t, "root ::= \"(\" r1 \")\"\n");
    for (int i = 1; i < 5000; i++) p += (size_t)sprintf(t + p, "r%d ::= \"(\" r%d \")\" | \"x\"\n", i, i + 1);
    p += (size_t)sprintf(t + p, "r5000 ::= \"x\"\n");
    assert_int_equal(sgr_grammar_parse(t, p, &G, &e), 0);
    assert_true(gmatch(G, "((x))"));
    sgr_grammar_free(G);
    free(t);
    /* {0,100000} of a string character works */
    const char *r = "root ::= \"\\\"\" [a-z]{0,100000} \"\\\"\"";
    assert_int_equal(sgr_grammar_parse(r, strlen(r), &G, &e), 0);
    assert_true(gmatch(G, "\"abc\""));
    sgr_grammar_free(G);
    /* nested large repeats stay small (repeated parts become sub-rules) */
    r = "root ::= ((\"ab\" [a-z]){0,1000}){0,1000}";
    assert_int_equal(sgr_grammar_parse(r, strlen(r), &G, &e), 0);
    assert_true(sgr_grammar_n_states(G) < 20000);
    sgr_grammar_free(G);
    /* exponential DAG: "grammar too large" */
    sgr_gb *b = sgr_gb_new(NULL);
    sgr_expr x = sgr_gb_str(b, "ab");
    for (int i = 0; i < 40; i++) x = sgr_gb_seq2(b, x, x);
    int32_t root = sgr_gb_rule(b, "root");
    sgr_gb_define(b, root, x);
    assert_int_equal(sgr_grammar_build(b, root, &G, &e), -1);
    assert_non_null(strstr(e.msg, "grammar too large"));
    sgr_gb_free(b);
    /* 10k alternatives */
    b = sgr_gb_new(NULL);
    sgr_expr *k = malloc(10000 * sizeof *k);
    char w[16];
    for (int i = 0; i < 10000; i++) { snprintf(w, sizeof w, "w%d", i); k[i] = sgr_gb_str(b, w); }
    root = sgr_gb_rule(b, "root");
    sgr_gb_define(b, root, sgr_gb_alt(b, k, 10000));
    free(k);
    assert_int_equal(sgr_grammar_build(b, root, &G, &e), 0);
    assert_true(gmatch(G, "w9999"));
    assert_false(gmatch(G, "w10000"));
    sgr_grammar_free(G);
    sgr_gb_free(b);
}

/* regex grammars against the regex engine (anchored with ^(?:...)$) */
static void gen_regex(char *o, size_t *n, int depth) {
    int k = depth > 2 ? rn(3) : rn(9);
    const char *atoms[] = {"a", "b", ".", "[ab]", "[^a]", "\\d", "\\w", "\\x62", "\\u00e9", "[a-c\\d]", "\\.", "é"};
    switch (k) {
    case 0: case 1: case 2: {
        const char *a = atoms[rn(12)];
        size_t l = strlen(a);
        memcpy(o + *n, a, l);
        *n += l;
        break;
    }
    case 3: case 4: gen_regex(o, n, depth + 1); gen_regex(o, n, depth + 1); break;
    case 5: o[(*n)++] = '('; gen_regex(o, n, depth + 1); o[(*n)++] = '|'; gen_regex(o, n, depth + 1); o[(*n)++] = ')'; break;
    default: {
        o[(*n)++] = '(';
        o[(*n)++] = '?';
        o[(*n)++] = ':';
        gen_regex(o, n, depth + 1);
        o[(*n)++] = ')';
        const char *q[] = {"*", "+", "?", "{2}", "{1,3}", "{0,}", "*?", "{2,}"};
        const char *x = q[rn(8)];
        memcpy(o + *n, x, strlen(x));
        *n += strlen(x);
        break;
    }
    }
}

static void test_regex_vs_engine(void **st) {
    (void)st;
    const char *alpha[] = {"a", "b", "c", "1", ".", "\xc3\xa9", "\n", "_"};
    int checked = 0;
    for (int i = 0; i < 300; i++) {
        char pat[512];
        size_t n = 0;
        gen_regex(pat, &n, 0);
        pat[n] = 0;
        char anch[600];
        snprintf(anch, sizeof anch, "^(?:%s)$", pat);
        regex *re;
        qerr e;
        assert_int_equal(regex_compile(anch, strlen(anch), &re, &e), 0);
        sgr_grammar *G;
        int rc = sgr_grammar_from_regex(pat, n, &G, &e);
        if (rc) fprintf(stderr, "/%s/: %s\n", pat, e.msg);
        assert_int_equal(rc, 0);
        for (int k = 0; k < 60; k++) {
            char s[64];
            size_t sl = 0;
            int L = rn(7);
            for (int j = 0; j < L; j++) {
                const char *a = alpha[rn(8)];
                memcpy(s + sl, a, strlen(a));
                sl += strlen(a);
            }
            s[sl] = 0;
            bool want = regex_match(re, s, sl);
            sgr_matcher *m;
            assert_int_equal(sgr_matcher_new(G, NULL, &m, &e), 0);
            bool got = sgr_matcher_accept_bytes(m, s, sl) == 0 && sgr_matcher_can_end(m);
            if (got != want) fprintf(stderr, "/%s/ on '%s': grammar %d regex %d\n", pat, s, got, want);
            assert_int_equal(got, want);
            sgr_matcher_free(m);
            checked++;
        }
        sgr_grammar_free(G);
        regex_free(re);
    }
    /* anchors at the ends are fine; unsupported features are named */
    sgr_grammar *G;
    qerr e;
    assert_int_equal(sgr_grammar_from_regex("^[0-9]{5}$", 10, &G, &e), 0);
    assert_true(gmatch(G, "12345"));
    assert_false(gmatch(G, "1234"));
    sgr_grammar_free(G);
    /* one dialect: sgr/regex.c's (\p{..} included); what it cannot do is named */
    assert_int_equal(sgr_grammar_from_regex("\\p{Lu}x", 7, &G, &e), 0);
    assert_true(gmatch(G, "\xc3\x89x"));
    assert_false(gmatch(G, "ex"));
    sgr_grammar_free(G);
    const char *bad[][2] = {{"a\\bc", "word boundar"}, {"(a)\\1", "backreference"}, {"(?=a)", "lookahead"},
                            {"a^b", "matches no string"}, {"(ab", "missing ')'"}, {"a{3,2}", "out of order"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(sgr_grammar_from_regex(bad[i][0], strlen(bad[i][0]), &G, &e), -1);
        if (!strstr(e.msg, bad[i][1])) fprintf(stderr, "%s\n", e.msg);
        assert_non_null(strstr(e.msg, bad[i][1]));
    }
    fprintf(stderr, "regex: %d strings checked\n", checked);
}

static void test_tail_calls_constant_stack(void **st) {
    (void)st;
    /* right-linear: 100k bytes through a rule calling itself last */
    const char *t = "root ::= \"a\" root | \"b\"";
    sgr_grammar *G;
    qerr e;
    assert_int_equal(sgr_grammar_parse(t, strlen(t), &G, &e), 0);
    sgr_matcher *m;
    assert_int_equal(sgr_matcher_new(G, NULL, &m, &e), 0);
    for (int i = 0; i < 100000; i++) assert_int_equal(sgr_matcher_accept_bytes(m, "a", 1), 0);
    assert_int_equal(sgr_matcher_min_bytes(m), 1);
    assert_int_equal(sgr_matcher_accept_bytes(m, "b", 1), 0);
    assert_true(sgr_matcher_can_end(m));
    sgr_matcher_free(m);
    sgr_grammar_free(G);
}

/* Several matchers of one grammar and vocabulary in threads share the
 * cache; every cached mask equals the uncached walk. */
typedef struct thr_arg { sgr_grammar *g; sgr_vocab *v; uint64_t seed; int bad; } thr_arg;

static void *thr_walk(void *p) {
    thr_arg *a = p;
    size_t nv = sgr_vocab_size(a->v), nw = (nv + 31) / 32;
    uint32_t *x = malloc(nw * 4), *y = malloc(nw * 4);
    sgr_matcher *m;
    qerr e;
    if (sgr_matcher_new(a->g, a->v, &m, &e)) { a->bad = 1; return NULL; }
    uint64_t s = a->seed;
    for (int i = 0; i < 300; i++) {
        if (sgr_matcher_fill_mask(m, x) || sgr_matcher_fill_mask_uncached(m, y) || memcmp(x, y, nw * 4)) { a->bad = 1; break; }
        size_t cnt = 0;
        for (size_t t = 1; t < nv; t++) cnt += x[t >> 5] >> (t & 31) & 1;
        if (!cnt) { sgr_matcher_reset(m); continue; }
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        size_t k = s % cnt;
        for (size_t t = 1; t < nv; t++)
            if ((x[t >> 5] >> (t & 31) & 1) && k-- == 0) { sgr_matcher_accept_token(m, (int32_t)t); break; }
    }
    sgr_matcher_free(m);
    free(x);
    free(y);
    return NULL;
}

static void test_threads_share_cache(void **st) {
    (void)st;
    sgr_grammar *G;
    qerr e;
    assert_int_equal(sgr_grammar_parse(json_grammar, strlen(json_grammar), &G, &e), 0);
    enum { NV = 3000 };
    static char buf[NV][8];
    const char *pp[NV];
    size_t len[NV];
    const char *alpha = "{}[]\":, abc0123-.etrufnl\\u\n";
    for (int i = 0; i < NV; i++) {
        int l = i == 0 ? 0 : 1 + rn(i < 300 ? 1 : 5);
        for (int j = 0; j < l; j++) buf[i][j] = alpha[rn((int)strlen(alpha))];
        pp[i] = buf[i];
        len[i] = (size_t)l;
    }
    int32_t eog = 0;
    sgr_vocab *v;
    assert_int_equal(sgr_vocab_from_pieces(pp, len, NV, &eog, 1, &v, &e), 0);
    pthread_t th[4];
    thr_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (thr_arg){G, v, 1234567 + (uint64_t)i * 7919, 0};
        assert_int_equal(pthread_create(&th[i], NULL, thr_walk, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(a[i].bad, 0);
    }
    sgr_vocab_free(v);
    sgr_grammar_free(G);
}

static void test_cli_grammar_check(void **st) {
    (void)st;
    char *out = NULL;
    const char *good = "/tmp/quire_test_grammar_good.gbnf", *bad = "/tmp/quire_test_grammar_bad.gbnf";
    FILE *f = fopen(good, "w");
    fputs("root ::= \"a\" b\nb ::= [0-9]+\n", f);
    fclose(f);
    f = fopen(bad, "w");
    fputs("root ::= \"a\"\n  b ::= (\"x\"\n", f);
    fclose(f);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "grammar check %s", good);
    assert_int_equal(run_quire(cmd, &out), 0);
    free(out);
    snprintf(cmd, sizeof cmd, "grammar check %s 2>&1", bad);
    assert_int_equal(run_quire(cmd, &out), 2);
    assert_non_null(strstr(out, "line 2"));
    free(out);
    assert_int_equal(run_quire("grammar check --regex '(a' 2>&1", &out), 2);
    assert_non_null(strstr(out, "missing ')'"));
    free(out);
    remove(good);
    remove(bad);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_vs_oracle),
        cmocka_unit_test(test_masks_random),
        cmocka_unit_test(test_masks_real_vocabs),
        cmocka_unit_test(test_budget_random),
        cmocka_unit_test(test_budget_json_gpt2),
        cmocka_unit_test(test_text_format),
        cmocka_unit_test(test_choice),
        cmocka_unit_test(test_forced_json_key),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_tail_calls_constant_stack),
        cmocka_unit_test(test_regex_vs_engine),
        cmocka_unit_test(test_threads_share_cache),
        cmocka_unit_test(test_cli_grammar_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
