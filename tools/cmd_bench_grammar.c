/* cmd_bench_grammar.c — `quire bench grammar`: a random walk through a
 * grammar over a real vocabulary, timing sgr_matcher_fill_mask per step.
 * Each step takes a uniformly random allowed token (70%) or the first token
 * of the shortest completion (30%, so walks reach every part of the
 * grammar); a finished document starts over. The walk runs twice with the
 * same seed: cold (a fresh grammar, empty per-state cache) and warm. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sgr/sgr.h"
#include "tokenizer/tokenizer.h"

void help_bench_grammar(FILE *out) {
    fprintf(out,
            "usage: quire bench grammar -m MODEL_OR_VOCAB.gguf (--grammar FILE | --regex RE | --schema FILE)\n"
            "                           [-n STEPS] [--seed N] [--json]\n\n"
            "Times the token mask (fill_mask) per step of a random walk through the grammar:\n"
            "median, p99 and max in microseconds, cache hit rate and tokens allowed, for a cold\n"
            "cache (first walk) and a warm one (the same walk again).\n");
}

typedef struct walk_stats { double med, p99, max, mean; double hit_rate, allowed; int steps, docs; } walk_stats;

static int dcmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int run_walk(const sgr_grammar *g, const sgr_vocab *v, int steps, uint64_t seed, walk_stats *ws, qerr *e) {
    sgr_matcher *m;
    if (sgr_matcher_new(g, v, &m, e) < 0) return -1;
    size_t nv = sgr_vocab_size(v), nw = (nv + 31) / 32;
    uint32_t *bits = malloc(nw * sizeof *bits);
    double *t = malloc((size_t)steps * sizeof *t);
    int32_t *cand = malloc(nv * sizeof *cand);
    if (!bits || !t || !cand) { free(bits); free(t); free(cand); sgr_matcher_free(m); return qerr_set(e, "out of memory"); }
    memset(ws, 0, sizeof *ws);
    uint64_t rs = seed ? seed : 1;
    int hits = 0;
    double allowed = 0;
    ws->docs = 1;
    for (int s = 0; s < steps; s++) {
        double t0 = q_now();
        if (sgr_matcher_fill_mask(m, bits) < 0) { free(bits); free(t); free(cand); sgr_matcher_free(m); return qerr_set(e, "fill_mask failed"); }
        t[s] = q_now() - t0;
        hits += sgr_matcher_last_cache_hit(m);
        size_t nc = 0;
        for (size_t w = 0; w < nw; w++)
            for (uint32_t x = bits[w]; x; x &= x - 1) cand[nc++] = (int32_t)(w * 32 + (size_t)__builtin_ctz(x));
        allowed += (double)nc;
        int32_t tok = -1;
        if (rng_next(&rs) % 10 < 3) {
            char *c;
            size_t cn;
            int32_t *ids;
            size_t ni;
            if (sgr_matcher_shortest(m, &c, &cn, e) == 0) {
                if (cn && sgr_vocab_greedy(v, c, cn, &ids, &ni) == 0) { tok = ids[0]; free(ids); }
                free(c);
            }
        }
        if (tok < 0 && nc) tok = cand[rng_next(&rs) % nc];
        if (tok < 0 || sgr_matcher_accept_token(m, tok) < 0 || sgr_matcher_done(m)) {
            sgr_matcher_reset(m);
            ws->docs++;
        }
    }
    qsort(t, (size_t)steps, sizeof *t, dcmp);
    double sum = 0;
    for (int s = 0; s < steps; s++) sum += t[s];
    ws->steps = steps;
    ws->med = t[steps / 2] * 1e6;
    ws->p99 = t[(int)((double)steps * 0.99) < steps ? (int)((double)steps * 0.99) : steps - 1] * 1e6;
    ws->max = t[steps - 1] * 1e6;
    ws->mean = sum / steps * 1e6;
    ws->hit_rate = (double)hits / steps;
    ws->allowed = allowed / steps;
    free(bits);
    free(t);
    free(cand);
    sgr_matcher_free(m);
    return 0;
}

static void print_stats(jw *w, const char *name, const walk_stats *s) {
    jw_key(w, name);
    jw_obj_begin(w);
    jw_key(w, "steps"); jw_int(w, s->steps);
    jw_key(w, "documents"); jw_int(w, s->docs);
    jw_key(w, "median_us"); jw_num(w, s->med);
    jw_key(w, "p99_us"); jw_num(w, s->p99);
    jw_key(w, "max_us"); jw_num(w, s->max);
    jw_key(w, "mean_us"); jw_num(w, s->mean);
    jw_key(w, "cache_hit_rate"); jw_num(w, s->hit_rate);
    jw_key(w, "tokens_allowed_mean"); jw_num(w, s->allowed);
    jw_obj_end(w);
}

int cmd_bench_grammar(int argc, char **argv) {
    const char *model = NULL, *gfile = NULL, *regex = NULL, *schema = NULL;
    long long steps = 1000, seed = 1;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) { if (!(model = cli_value("bench grammar", argc, argv, &i))) return EXIT_USAGE; }
        else if (strcmp(a, "--grammar") == 0) { if (!(gfile = cli_value("bench grammar", argc, argv, &i))) return EXIT_USAGE; }
        else if (strcmp(a, "--regex") == 0) { if (!(regex = cli_value("bench grammar", argc, argv, &i))) return EXIT_USAGE; }
        else if (strcmp(a, "--schema") == 0) { if (!(schema = cli_value("bench grammar", argc, argv, &i))) return EXIT_USAGE; }
        else if (strcmp(a, "-n") == 0 || strcmp(a, "--seed") == 0) {
            const char *v = cli_value("bench grammar", argc, argv, &i);
            long long x;
            if (!v || !cli_parse_int(v, &x) || x < 1 || x > 100000000) return cli_fail("bench grammar", "bad value for %s", a);
            if (a[1] == 'n') steps = x;
            else seed = x;
        } else if (strcmp(a, "--json") == 0) json = true;
        else return cli_fail("bench grammar", "unknown option '%s'", a);
    }
    if (!model) return cli_fail("bench grammar", "missing -m MODEL_OR_VOCAB.gguf");
    if ((gfile != NULL) + (regex != NULL) + (schema != NULL) != 1) return cli_fail("bench grammar", "give exactly one of --grammar, --regex, --schema");
    if (schema) return cli_fail("bench grammar", "--schema needs the JSON Schema to grammar compiler, which is not in this build");
    qerr e;
    gguf *gg;
    if (gguf_open(&gg, model, &e) < 0) return cli_fail("bench grammar", "%s", e.msg);
    tokenizer *tk;
    int rc = tokenizer_load(&tk, gg, &e);
    gguf_close(gg);
    if (rc < 0) return cli_fail("bench grammar", "%s: %s", model, e.msg);
    sgr_vocab *v;
    if (sgr_vocab_new(tk, &v, &e) < 0) { tokenizer_free(tk); return cli_fail("bench grammar", "%s", e.msg); }
    char *text = NULL;
    size_t tn = 0;
    if (gfile && q_read_file(gfile, &text, &tn, &e) < 0) { sgr_vocab_free(v); tokenizer_free(tk); return cli_fail("bench grammar", "%s", e.msg); }
    walk_stats ws[2];
    double t_build = 0;
    sgr_grammar *g = NULL;
    double t0 = q_now();
    rc = gfile ? sgr_grammar_parse(text, tn, &g, &e) : sgr_grammar_from_regex(regex, strlen(regex), &g, &e);
    t_build = q_now() - t0;
    if (rc == 0) rc = run_walk(g, v, (int)steps, (uint64_t)seed, &ws[0], &e);
    if (rc == 0) rc = run_walk(g, v, (int)steps, (uint64_t)seed, &ws[1], &e);
    free(text);
    if (rc < 0) { sgr_grammar_free(g); sgr_vocab_free(v); tokenizer_free(tk); return cli_fail("bench grammar", "%s", e.msg); }
    if (json) {
        jw w;
        jw_init(&w, stdout);
        jw_obj_begin(&w);
        jw_key(&w, "vocab_size"); jw_int(&w, (long long)sgr_vocab_size(v));
        jw_key(&w, "states"); jw_int(&w, (long long)sgr_grammar_n_states(g));
        jw_key(&w, "build_ms"); jw_num(&w, t_build * 1e3);
        print_stats(&w, "cold", &ws[0]);
        print_stats(&w, "warm", &ws[1]);
        jw_obj_end(&w);
        printf("\n");
    } else {
        printf("vocab %zu tokens, grammar %zu states (built in %.2f ms), %lld steps\n", sgr_vocab_size(v),
               sgr_grammar_n_states(g), t_build * 1e3, steps);
        printf("%-5s %10s %10s %10s %10s %9s %10s %6s\n", "cache", "median_us", "p99_us", "max_us", "mean_us", "hit_rate", "allowed", "docs");
        for (int k = 0; k < 2; k++)
            printf("%-5s %10.1f %10.1f %10.1f %10.1f %9.3f %10.1f %6d\n", k ? "warm" : "cold", ws[k].med, ws[k].p99, ws[k].max,
                   ws[k].mean, ws[k].hit_rate, ws[k].allowed, ws[k].docs);
    }
    sgr_grammar_free(g);
    sgr_vocab_free(v);
    tokenizer_free(tk);
    return EXIT_OK;
}
