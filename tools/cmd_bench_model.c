/* cmd_bench_model.c — `quire bench -m MODEL`: prompt processing (pp) and text
 * generation (tg) throughput like llama-bench (warm-up, repetitions, mean and
 * standard deviation), a thread sweep, and the roofline: decode reads every
 * weight once per token, so measured read bandwidth / weight bytes is the
 * ceiling that tg is reported against (and with -d, a second one that adds
 * the K/V cache read per token). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "models/models.h"

void help_bench_model(FILE *out) {
    fprintf(out,
            "usage: quire bench -m MODEL [-p 512] [-n 128] [-d 0] [-r 3] [-t THREADS[,THREADS...]] [--json]\n"
            "       quire bench ann ...   (vector index; see quire bench ann --help)\n"
            "  pp: one batch of -p random tokens into an empty context; tg: -n tokens decoded one\n"
            "  at a time from an empty context. Each is run -r times after one warm-up run.\n"
            "  -d D (--depth): both start after a context of D random tokens instead (filled once,\n"
            "  untimed, like llama-bench -d); tg is then also reported against bandwidth / (weights +\n"
            "  the F16 K/V cells read per token at the runs' mean context).\n"
            "  Also measures memory read bandwidth (best of probes before and after the runs) and reports\n"
            "  tg against the bandwidth ceiling\n"
            "  (weight bytes read per token), and per-op breakdowns of prefill and decode (one extra traced\n"
            "  runs, not counted). -p 0 or -n 0 skips that test.\n"
            "  --bw-mib N   bandwidth probe buffer in MiB (default 1024)\n"
            "  The dot kernels are the best this CPU has; QUIRE_ISA=scalar|avx2|avx512|neon forces a set.\n");
}

typedef struct stat2 {
    double mean, sd;
} stat2;

static stat2 mean_sd(const double *v, int n) {
    stat2 s = {0, 0};
    if (n <= 0) return s;
    for (int i = 0; i < n; i++) s.mean += v[i];
    s.mean /= n;
    if (n > 1) {
        for (int i = 0; i < n; i++) s.sd += (v[i] - s.mean) * (v[i] - s.mean);
        s.sd = sqrt(s.sd / (n - 1));
    }
    return s;
}

/* The context a run starts from: depth random tokens of sequence 0, filled
 * once (untimed) and kept; each run truncates the cache back to them. */
static int ensure_depth(model_ctx *c, int depth, qerr *e) {
    if (kv_cache_seq_len(&c->kv, 0) >= depth && depth > 0) {
        kv_cache_seq_truncate(&c->kv, 0, depth);
        return 0;
    }
    kv_cache_reset(&c->kv);
    if (depth == 0) return 0;
    int nv = c->m->hp.n_vocab;
    int32_t *tok = malloc((size_t)depth * sizeof *tok), *pos = malloc((size_t)depth * sizeof *pos);
    int32_t *seq = calloc((size_t)depth, sizeof *seq);
    bool *want = calloc((size_t)depth, sizeof *want);
    float *logits = malloc((size_t)nv * sizeof(float));
    int rc = -1;
    if (tok && pos && seq && want && logits) {
        qrng r;
        qrng_seed(&r, 7);
        for (int i = 0; i < depth; i++) tok[i] = (int32_t)(qrng_next(&r) % (uint64_t)nv), pos[i] = i;
        want[depth - 1] = true;
        model_batch b = {depth, tok, pos, seq, want};
        rc = model_forward(c, &b, logits, e);
    } else
        qerr_set(e, "out of memory filling a context of %d tokens", depth);
    free(tok); free(pos); free(seq); free(want); free(logits);
    return rc;
}

/* tokens/s of one pp run: n_prompt tokens after the depth ones */
static int run_pp(model_ctx *c, int n_prompt, int depth, uint64_t seed, double *tps, qerr *e) {
    if (ensure_depth(c, depth, e)) return -1;
    int nv = c->m->hp.n_vocab;
    int32_t *tok = malloc((size_t)n_prompt * sizeof *tok), *pos = malloc((size_t)n_prompt * sizeof *pos);
    int32_t *seq = calloc((size_t)n_prompt, sizeof *seq);
    bool *want = calloc((size_t)n_prompt, sizeof *want);
    float *logits = malloc((size_t)nv * sizeof(float));
    qrng r;
    qrng_seed(&r, seed);
    for (int i = 0; i < n_prompt; i++) tok[i] = (int32_t)(qrng_next(&r) % (uint64_t)nv), pos[i] = depth + i;
    want[n_prompt - 1] = true;
    model_batch b = {n_prompt, tok, pos, seq, want};
    double t0 = q_now();
    int rc = model_forward(c, &b, logits, e);
    double dt = q_now() - t0;
    *tps = dt > 0 ? n_prompt / dt : 0;
    free(tok); free(pos); free(seq); free(want); free(logits);
    return rc;
}

static int run_tg(model_ctx *c, int n_gen, int depth, uint64_t seed, double *tps, qerr *e) {
    if (ensure_depth(c, depth, e)) return -1;
    int nv = c->m->hp.n_vocab;
    float *logits = malloc((size_t)nv * sizeof(float));
    qrng r;
    qrng_seed(&r, seed);
    double t0 = q_now();
    int rc = 0;
    for (int i = 0; i < n_gen && rc == 0; i++) {
        int32_t tok = (int32_t)(qrng_next(&r) % (uint64_t)nv), pos = depth + i, seq = 0;
        model_batch b = {1, &tok, &pos, &seq, NULL};
        rc = model_forward(c, &b, logits, e);
    }
    double dt = q_now() - t0;
    *tps = dt > 0 ? n_gen / dt : 0;
    free(logits);
    return rc;
}

int cmd_bench_model(int argc, char **argv) {
    const char *mpath = NULL;
    long long n_prompt = 512, n_gen = 128, reps = 3, bw_mib = 1024, depth = 0;
    int threads[16], n_threads = 0;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) { if (!(mpath = cli_value("bench", argc, argv, &i))) return EXIT_USAGE; }
        else if (!strcmp(a, "-p") || !strcmp(a, "-n") || !strcmp(a, "-r") || !strcmp(a, "-d") || !strcmp(a, "--depth") ||
                 !strcmp(a, "--bw-mib")) {
            if (!(v = cli_value("bench", argc, argv, &i))) return EXIT_USAGE;
            long long x;
            if (!cli_parse_int(v, &x) || x < 0 || x > (1 << 20)) return cli_fail("bench", "bad value '%s' for %s", v, a);
            if (!strcmp(a, "-p")) n_prompt = x;
            else if (!strcmp(a, "-n")) n_gen = x;
            else if (!strcmp(a, "-r")) reps = x < 1 ? 1 : x;
            else if (!strcmp(a, "-d") || !strcmp(a, "--depth")) depth = x;
            else bw_mib = x < 16 ? 16 : x;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!(v = cli_value("bench", argc, argv, &i))) return EXIT_USAGE;
            char buf[256];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *tk = strtok(buf, ","); tk; tk = strtok(NULL, ",")) {
                long long x;
                if (!cli_parse_int(tk, &x) || x < 1 || x > 1024 || n_threads == 16)
                    return cli_fail("bench", "bad thread list '%s'", v);
                threads[n_threads++] = (int)x;
            }
        } else if (!strcmp(a, "--json")) json = true;
        else return cli_fail("bench", "unknown argument '%s'", a);
    }
    if (!mpath) return cli_fail("bench", "no model given (-m MODEL)");
    if (n_threads == 0) threads[n_threads++] = q_default_threads();

    qerr e;
    model *m;
    if (model_load(&m, mpath, &e)) return cli_fail("bench", "%s", e.msg);
    uint64_t wbytes = model_weight_bytes(m);
    int n_ctx = (int)(n_prompt > n_gen ? n_prompt : n_gen) + (int)depth + 1;
    /* The K and V cells decode reads per token, at the tg runs' mean
     * context (F16 cache): what -d adds to the weights. */
    const model_hparams *hp = &m->hp;
    double kv_bytes = (double)(depth + (n_gen + 1) / 2.0) * hp->n_layer * 2.0 * hp->n_head_kv * hp->head_dim * 2.0;

    jw w;
    jw_init(&w, stdout);
    if (json) {
        jw_obj_begin(&w);
        jw_key(&w, "model"); jw_str(&w, mpath);
        jw_key(&w, "arch"); jw_str(&w, m->hp.arch_name);
        jw_key(&w, "isa"); jw_str(&w, q_isa_name(q_isa_get()));
        jw_key(&w, "n_params"); jw_int(&w, model_n_params(m));
        jw_key(&w, "weight_bytes_per_token"); jw_int(&w, (long long)wbytes);
        jw_key(&w, "n_prompt"); jw_int(&w, n_prompt);
        jw_key(&w, "n_gen"); jw_int(&w, n_gen);
        jw_key(&w, "n_depth"); jw_int(&w, depth);
        jw_key(&w, "kv_bytes_per_token"); jw_int(&w, (long long)kv_bytes);
        jw_key(&w, "reps"); jw_int(&w, reps);
        jw_key(&w, "runs"); jw_arr_begin(&w);
    } else {
        printf("model %s: %s, %.1f M params, %.1f MiB of weights read per token, %s kernels\n", mpath,
               m->hp.arch_name, (double)model_n_params(m) / 1e6, (double)wbytes / 1048576.0, q_isa_name(q_isa_get()));
        printf("%8s %14s %14s %10s %14s %8s\n", "threads", "pp t/s", "tg t/s", "bw GB/s", "tg ceiling", "tg %");
    }
    int rc = EXIT_OK;
    stat2 last_pp = {0, 0}, last_tg = {0, 0};
    double last_bw = 0;
    for (int ti = 0; ti < n_threads && rc == EXIT_OK; ti++) {
        qpool *pool = qpool_new(threads[ti]);
        model_ctx c;
        model_ctx_params cp = {.n_ctx = n_ctx, .n_seq = 1, .n_batch = n_prompt > 0 ? (int)n_prompt : 1, .pool = pool};
        if (model_ctx_init(&c, m, &cp, &e)) { rc = cli_fail("bench", "%s", e.msg); qpool_free(pool); break; }
        double *pp = calloc((size_t)reps, sizeof(double)), *tg = calloc((size_t)reps, sizeof(double));
        double warm;
        /* The ceiling is the best of probes before and after the runs: on a
         * shared host one probe can read half the real bandwidth, and a low
         * ceiling would flatter the percentage. */
        double bw0 = q_measure_read_bandwidth(pool, (size_t)bw_mib << 20, 3);
        if (n_prompt > 0) {
            if (run_pp(&c, (int)n_prompt, (int)depth, 1, &warm, &e)) rc = cli_fail("bench", "%s", e.msg);
            for (int r = 0; r < reps && rc == EXIT_OK; r++)
                if (run_pp(&c, (int)n_prompt, (int)depth, (uint64_t)r + 2, &pp[r], &e)) rc = cli_fail("bench", "%s", e.msg);
        }
        if (n_gen > 0 && rc == EXIT_OK) {
            if (run_tg(&c, n_gen < 16 ? (int)n_gen : 16, (int)depth, 1, &warm, &e)) rc = cli_fail("bench", "%s", e.msg);
            for (int r = 0; r < reps && rc == EXIT_OK; r++)
                if (run_tg(&c, (int)n_gen, (int)depth, (uint64_t)r + 2, &tg[r], &e)) rc = cli_fail("bench", "%s", e.msg);
        }
        /* per-op breakdown of decode: one more tg run with tracing on (not
         * counted in the figures above) */
        char ops[32][48], pops[32][48];
        double op_s[32], pop_s[32];
        size_t n_ops = 0, n_pops = 0;
        /* and of one prompt (ms per whole prompt by op) */
        if (n_prompt > 0 && rc == EXIT_OK) {
            double dummy;
            c.trace = qtrace_new();
            if (run_pp(&c, (int)n_prompt, (int)depth, 98, &dummy, &e) == 0) n_pops = qtrace_totals(c.trace, "op", pops, pop_s, 32);
            qtrace_free(c.trace);
            c.trace = NULL;
        }
        int traced = n_gen > 0 ? (int)(n_gen < 32 ? n_gen : 32) : 0;
        if (traced > 0 && rc == EXIT_OK) {
            double dummy;
            c.trace = qtrace_new();
            if (run_tg(&c, traced, (int)depth, 99, &dummy, &e) == 0) n_ops = qtrace_totals(c.trace, "op", ops, op_s, 32);
            qtrace_free(c.trace);
            c.trace = NULL;
        }
        double bw = q_measure_read_bandwidth(pool, (size_t)bw_mib << 20, 3);
        if (bw0 > bw) bw = bw0;
        stat2 sp = mean_sd(pp, (int)reps), st = mean_sd(tg, (int)reps);
        double ceiling = wbytes ? bw / (double)wbytes : 0;
        double ceiling_kv = wbytes ? bw / ((double)wbytes + kv_bytes) : 0;
        if (rc == EXIT_OK) {
            if (json) {
                jw_obj_begin(&w);
                jw_key(&w, "threads"); jw_int(&w, threads[ti]);
                jw_key(&w, "pp_tokens_per_s"); jw_num(&w, sp.mean);
                jw_key(&w, "pp_sd"); jw_num(&w, sp.sd);
                jw_key(&w, "tg_tokens_per_s"); jw_num(&w, st.mean);
                jw_key(&w, "tg_sd"); jw_num(&w, st.sd);
                jw_key(&w, "bandwidth_gb_s"); jw_num(&w, bw / 1e9);
                jw_key(&w, "tg_ceiling_tokens_per_s"); jw_num(&w, ceiling);
                jw_key(&w, "tg_roofline_pct"); jw_num(&w, ceiling > 0 ? 100.0 * st.mean / ceiling : 0);
                jw_key(&w, "tg_roofline_pct_with_kv"); jw_num(&w, ceiling_kv > 0 ? 100.0 * st.mean / ceiling_kv : 0);
                jw_key(&w, "tg_ms_per_token_by_op"); jw_obj_begin(&w);
                for (size_t k = 0; k < n_ops; k++) { jw_key(&w, ops[k]); jw_num(&w, 1e3 * op_s[k] / traced); }
                jw_obj_end(&w);
                jw_key(&w, "pp_ms_by_op"); jw_obj_begin(&w);
                for (size_t k = 0; k < n_pops; k++) { jw_key(&w, pops[k]); jw_num(&w, 1e3 * pop_s[k]); }
                jw_obj_end(&w);
                jw_obj_end(&w);
            } else {
                printf("%8d %8.2f ± %-4.1f %8.2f ± %-4.1f %10.2f %14.2f %7.1f%%\n", threads[ti], sp.mean, sp.sd, st.mean, st.sd,
                       bw / 1e9, ceiling, ceiling > 0 ? 100.0 * st.mean / ceiling : 0);
                if (depth > 0 && n_gen > 0)
                    printf("         at depth %lld: %.1f MiB of K/V read per token (mean context), tg %.1f%% of "
                           "bandwidth / (weights + K/V)\n",
                           depth, kv_bytes / 1048576.0, ceiling_kv > 0 ? 100.0 * st.mean / ceiling_kv : 0);
                if (n_pops) {
                    printf("         prefill ms/prompt by op:");
                    for (size_t k = 0; k < n_pops; k++) printf(" %s %.1f", pops[k], 1e3 * pop_s[k]);
                    printf("\n");
                }
                if (n_ops) {
                    printf("         decode ms/token by op:");
                    for (size_t k = 0; k < n_ops; k++) printf(" %s %.3f", ops[k], 1e3 * op_s[k] / traced);
                    printf("\n");
                }
            }
        }
        last_pp = sp, last_tg = st, last_bw = bw;
        free(pp); free(tg);
        model_ctx_free(&c);
        qpool_free(pool);
    }
    if (json) {
        jw_arr_end(&w);
        /* the last configuration at the top level, as the contract reads it */
        double ceiling = wbytes ? last_bw / (double)wbytes : 0;
        jw_key(&w, "threads"); jw_int(&w, threads[n_threads - 1]);
        jw_key(&w, "pp_tokens_per_s"); jw_num(&w, last_pp.mean);
        jw_key(&w, "pp_sd"); jw_num(&w, last_pp.sd);
        jw_key(&w, "tg_tokens_per_s"); jw_num(&w, last_tg.mean);
        jw_key(&w, "tg_sd"); jw_num(&w, last_tg.sd);
        jw_key(&w, "bandwidth_gb_s"); jw_num(&w, last_bw / 1e9);
        jw_key(&w, "tg_ceiling_tokens_per_s"); jw_num(&w, ceiling);
        jw_key(&w, "tg_roofline_pct"); jw_num(&w, ceiling > 0 ? 100.0 * last_tg.mean / ceiling : 0);
        jw_obj_end(&w);
    }
    model_free(m);
    return rc;
}
