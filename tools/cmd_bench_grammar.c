/* cmd_bench_grammar.c — `quire bench grammar`: a random walk through a
 * grammar over a real vocabulary, timing sgr_matcher_fill_mask per step.
 * Each step takes a uniformly random allowed token (70%) or the first token
 * of the shortest completion (30%, so walks reach every part of the
 * grammar); a finished document starts over. The walk runs twice with the
 * same seed: cold (a fresh grammar, empty per-state cache) and warm.
 * --schema takes a JSON Schema file or a directory of them (the first K in
 * name order with --sample K): each schema is a new grammar (a cold cache),
 * and the statistics pool the steps of all of them. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "sgr/sgr.h"
#include "tokenizer/tokenizer.h"

void help_bench_grammar(FILE *out) {
    fprintf(out,
            "usage: quire bench grammar -m MODEL_OR_VOCAB.gguf (--grammar FILE | --regex RE | --schema FILE|DIR)\n"
            "                           [-n STEPS] [--seed N] [--sample K] [--no-tail] [--json]\n\n"
            "Times the token mask (fill_mask) per step of a random walk through the grammar:\n"
            "median, p99 and max in microseconds, cache hit rate and tokens allowed, for a cold\n"
            "cache (first walk) and a warm one (the same walk again). --schema DIR runs every\n"
            "*.json schema in DIR (the first K by name with --sample K), -n steps each, a new\n"
            "grammar per schema, and pools the steps; schemas the compiler refuses are counted\n"
            "and skipped. --no-tail: cold walks without the S-tail shortcut (A/B).\n");
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

/* Walks `steps` steps; the per-step times (seconds) go to t[0..steps). */
static int run_walk(const sgr_grammar *g, const sgr_vocab *v, int steps, uint64_t seed, walk_stats *ws, double *t, qerr *e) {
    sgr_matcher *m;
    if (sgr_matcher_new(g, v, &m, e) < 0) return -1;
    size_t nv = sgr_vocab_size(v), nw = (nv + 31) / 32;
    uint32_t *bits = malloc(nw * sizeof *bits);
    int32_t *cand = malloc(nv * sizeof *cand);
    if (!bits || !cand) { free(bits); free(cand); sgr_matcher_free(m); return qerr_set(e, "out of memory"); }
    memset(ws, 0, sizeof *ws);
    uint64_t rs = seed ? seed : 1;
    int hits = 0;
    double allowed = 0;
    ws->docs = 1;
    for (int s = 0; s < steps; s++) {
        double t0 = q_now();
        if (sgr_matcher_fill_mask(m, bits) < 0) { free(bits); free(cand); sgr_matcher_free(m); return qerr_set(e, "fill_mask failed"); }
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
    ws->steps = steps;
    ws->hit_rate = (double)hits;   /* counts; walk_finish divides */
    ws->allowed = allowed;
    free(bits);
    free(cand);
    sgr_matcher_free(m);
    return 0;
}

/* Percentiles of the pooled times t[0..n) (sorted here); hit_rate and
 * allowed in *ws hold sums over the n steps. */
static void walk_finish(walk_stats *ws, double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, dcmp);
    double sum = 0;
    for (int s = 0; s < n; s++) sum += t[s];
    ws->steps = n;
    ws->med = t[n / 2] * 1e6;
    ws->p99 = t[(int)((double)n * 0.99) < n ? (int)((double)n * 0.99) : n - 1] * 1e6;
    ws->max = t[n - 1] * 1e6;
    ws->mean = sum / n * 1e6;
    ws->hit_rate /= n;
    ws->allowed /= n;
}

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The schema files to run: path itself, or DIR's *.json sorted, first k. */
static int schema_files(const char *path, long long k, char ***out, size_t *n, qerr *e) {
    *out = NULL;
    *n = 0;
    struct stat st;
    if (stat(path, &st) < 0) return qerr_set(e, "cannot open %s", path);
    char **v = NULL;
    size_t nv = 0, cap = 0;
    if (!S_ISDIR(st.st_mode)) {
        v = malloc(sizeof *v);
        if (!v || !(v[0] = strdup(path))) { free(v); return qerr_set(e, "out of memory"); }
        *out = v;
        *n = 1;
        return 0;
    }
    DIR *d = opendir(path);
    if (!d) return qerr_set(e, "cannot open directory %s", path);
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".json")) continue;
        if (nv == cap) {
            cap = cap ? cap * 2 : 64;
            char **q = realloc(v, cap * sizeof *q);
            if (!q) break;
            v = q;
        }
        size_t pl = strlen(path) + l + 2;
        if (!(v[nv] = malloc(pl))) break;
        snprintf(v[nv++], pl, "%s/%s", path, de->d_name);
    }
    closedir(d);
    qsort(v, nv, sizeof *v, name_cmp);
    while (k > 0 && nv > (size_t)k) free(v[--nv]);
    if (!nv) { free(v); return qerr_set(e, "no *.json schema in %s", path); }
    *out = v;
    *n = nv;
    return 0;
}

/* Schema file (or a JSONSchemaBench file) -> grammar (strict: a schema with a keyword the compiler
 * cannot enforce is refused and skipped by the caller). */
static int schema_grammar(const char *path, sgr_grammar **g, qerr *e) {
    *g = NULL;
    json *doc;
    if (cli_load_json(path, &doc, e)) return -1;
    char base[4200];
    char *abs = realpath(path, NULL);
    snprintf(base, sizeof base, "file://%s", abs ? abs : path);
    free(abs);
    schema_opts so = {.load = cli_schema_file_loader, .base_uri = base};
    schema *s;
    /* a JSONSchemaBench file wraps the schema: {"schema": ..., "tests": [...]} */
    const json *sch = json_get(doc, "schema");
    if (!sch || !json_is_object(doc) || !json_get(doc, "tests")) sch = doc;
    int rc = schema_compile(sch, &so, &s, e);
    json_free(doc);
    if (rc) return -1;
    sgr_gb *b = sgr_gb_new(NULL);
    if (!b) { schema_free(s); return qerr_set(e, "out of memory"); }
    int32_t start = sgr_schema_to_grammar(s, NULL, b, NULL, NULL, e);
    rc = start < 0 ? -1 : sgr_grammar_build(b, start, g, e);
    sgr_gb_free(b);
    schema_free(s);
    return rc;
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
    long long steps = 1000, seed = 1, sample = 0;
    bool json = false, no_tail = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) { if (!(model = cli_value("bench grammar", argc, argv, &i))) return EXIT_USAGE; }
        else if (strcmp(a, "--grammar") == 0) { if (!(gfile = cli_value("bench grammar", argc, argv, &i))) return EXIT_USAGE; }
        else if (strcmp(a, "--regex") == 0) { if (!(regex = cli_value("bench grammar", argc, argv, &i))) return EXIT_USAGE; }
        else if (strcmp(a, "--schema") == 0) { if (!(schema = cli_value("bench grammar", argc, argv, &i))) return EXIT_USAGE; }
        else if (strcmp(a, "-n") == 0 || strcmp(a, "--seed") == 0 || strcmp(a, "--sample") == 0) {
            const char *v = cli_value("bench grammar", argc, argv, &i);
            long long x;
            if (!v || !cli_parse_int(v, &x) || x < 1 || x > 100000000) return cli_fail("bench grammar", "bad value for %s", a);
            if (a[1] == 'n') steps = x;
            else if (a[2] == 's' && a[3] == 'e') seed = x;
            else sample = x;
        } else if (strcmp(a, "--json") == 0) json = true;
        else if (strcmp(a, "--no-tail") == 0) no_tail = true;
        else return cli_fail("bench grammar", "unknown option '%s'", a);
    }
    if (!model) return cli_fail("bench grammar", "missing -m MODEL_OR_VOCAB.gguf");
    if ((gfile != NULL) + (regex != NULL) + (schema != NULL) != 1) return cli_fail("bench grammar", "give exactly one of --grammar, --regex, --schema");
    qerr e;
    char **files = NULL;
    size_t n_files = 1;
    if (schema && schema_files(schema, sample, &files, &n_files, &e) < 0) return cli_fail("bench grammar", "%s", e.msg);
    if ((size_t)steps * n_files > 200000000u) {
        for (size_t i = 0; i < n_files && files; i++) free(files[i]);
        free(files);
        return cli_fail("bench grammar", "too many steps in all (-n times schemas over 200 million)");
    }
    gguf *gg;
    tokenizer *tk = NULL;
    sgr_vocab *v = NULL;
    char *text = NULL;
    size_t tn = 0;
    double *t[2] = {malloc((size_t)steps * n_files * sizeof(double)), malloc((size_t)steps * n_files * sizeof(double))};
    int rc = t[0] && t[1] ? 0 : qerr_set(&e, "out of memory");
    if (rc == 0 && (rc = gguf_open(&gg, model, &e)) == 0) {
        rc = tokenizer_load(&tk, gg, &e);
        gguf_close(gg);
        if (rc < 0) qerr_set(&e, "%s: %s", model, e.msg);
    }
    if (rc == 0) rc = sgr_vocab_new(tk, &v, &e);
    if (rc == 0 && gfile) rc = q_read_file(gfile, &text, &tn, &e);
    walk_stats ws[2] = {0}, one;
    double t_build = 0, t_build_max = 0;
    size_t n_st = 0, n_ok = 0, n_refused = 0;
    for (size_t f = 0; f < n_files && rc == 0; f++) {
        sgr_grammar *g = NULL;
        double t0 = q_now();
        if (schema) {
            qerr e2;
            if (schema_grammar(files[f], &g, &e2) < 0) { n_refused++; continue; }
        } else rc = gfile ? sgr_grammar_parse(text, tn, &g, &e) : sgr_grammar_from_regex(regex, strlen(regex), &g, &e);
        double tb = q_now() - t0;
        if (g && no_tail) sgr_grammar_set_tail_walk(g, false);
        t_build += tb;
        if (tb > t_build_max) t_build_max = tb;
        for (int k = 0; k < 2 && rc == 0; k++) {
            rc = run_walk(g, v, (int)steps, (uint64_t)seed + f, &one, t[k] + (size_t)steps * n_ok, &e);
            ws[k].hit_rate += one.hit_rate;
            ws[k].allowed += one.allowed;
            ws[k].docs += one.docs;
        }
        if (g) n_st += sgr_grammar_n_states(g);
        sgr_grammar_free(g);
        if (rc == 0) n_ok++;
    }
    free(text);
    if (rc == 0 && n_ok == 0) rc = qerr_set(&e, "no schema compiled (%zu refused)", n_refused);
    for (int k = 0; k < 2 && rc == 0; k++) walk_finish(&ws[k], t[k], (int)((size_t)steps * n_ok));
    free(t[0]);
    free(t[1]);
    for (size_t i = 0; i < n_files && files; i++) free(files[i]);
    free(files);
    if (rc < 0) { sgr_vocab_free(v); if (tk) tokenizer_free(tk); return cli_fail("bench grammar", "%s", e.msg); }
    if (json) {
        jw w;
        jw_init(&w, stdout);
        jw_obj_begin(&w);
        jw_key(&w, "vocab_size"); jw_int(&w, (long long)sgr_vocab_size(v));
        jw_key(&w, "grammars"); jw_int(&w, (long long)n_ok);
        if (schema) { jw_key(&w, "refused"); jw_int(&w, (long long)n_refused); }
        jw_key(&w, "states"); jw_int(&w, (long long)n_st);
        jw_key(&w, "build_ms"); jw_num(&w, t_build * 1e3);
        jw_key(&w, "build_max_ms"); jw_num(&w, t_build_max * 1e3);
        print_stats(&w, "cold", &ws[0]);
        print_stats(&w, "warm", &ws[1]);
        jw_obj_end(&w);
        printf("\n");
    } else {
        if (schema)
            printf("vocab %zu tokens, %zu schemas (%zu refused), %zu states in all, built in %.2f ms (max %.2f ms), %lld steps each\n",
                   sgr_vocab_size(v), n_ok, n_refused, n_st, t_build * 1e3, t_build_max * 1e3, steps);
        else
            printf("vocab %zu tokens, grammar %zu states (built in %.2f ms), %lld steps\n", sgr_vocab_size(v), n_st, t_build * 1e3, steps);
        printf("%-5s %10s %10s %10s %10s %9s %10s %6s\n", "cache", "median_us", "p99_us", "max_us", "mean_us", "hit_rate", "allowed", "docs");
        for (int k = 0; k < 2; k++)
            printf("%-5s %10.1f %10.1f %10.1f %10.1f %9.3f %10.1f %6d\n", k ? "warm" : "cold", ws[k].med, ws[k].p99, ws[k].max,
                   ws[k].mean, ws[k].hit_rate, ws[k].allowed, ws[k].docs);
    }
    sgr_vocab_free(v);
    tokenizer_free(tk);
    return EXIT_OK;
}
