/* cmd_eval.c — `quire eval ppl`: perplexity over non-overlapping windows,
 * the way users check a quantization before shipping it. Windows of N tokens
 * start with BOS (when the vocabulary adds one); only the second half of each
 * window is scored, so every scored token sees at least N/2 of context — the
 * convention of the reference's perplexity tool, so numbers compare. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "models/models.h"
#include "tokenizer/tokenizer.h"

void help_eval(FILE *out) {
    fprintf(out, "usage: quire eval ppl -m MODEL -f TEXT [--ctx N] [--chunks K] [-t THREADS] [--json]\n"
                 "  Perplexity over non-overlapping windows of N tokens (default: the model's\n"
                 "  training context, at most 2048), BOS at the start of each window, scoring the\n"
                 "  second half of every window. Prints ppl with its standard error.\n");
}

/* log p(target | logits), computed in double with the max subtracted. */
static double log_prob(const float *logits, int nv, int target) {
    float mx = logits[0];
    for (int i = 1; i < nv; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0;
    for (int i = 0; i < nv; i++) sum += exp((double)logits[i] - mx);
    return (double)logits[target] - mx - log(sum);
}

static int eval_ppl(int argc, char **argv) {
    const char *mpath = NULL, *fpath = NULL;
    long long n_ctx = 0, threads = 0, max_chunks = 0;
    bool json = false;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v;
        long long x;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) { if (!(mpath = cli_value("eval", argc, argv, &i))) return EXIT_USAGE; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { if (!(fpath = cli_value("eval", argc, argv, &i))) return EXIT_USAGE; }
        else if (!strcmp(a, "--ctx") || !strcmp(a, "-c") || !strcmp(a, "-t") || !strcmp(a, "--chunks")) {
            if (!(v = cli_value("eval", argc, argv, &i))) return EXIT_USAGE;
            if (!cli_parse_int(v, &x) || x < 1 || x > (1 << 20)) return cli_fail("eval", "bad value '%s' for %s", v, a);
            if (!strcmp(a, "-t")) threads = x;
            else if (!strcmp(a, "--chunks")) max_chunks = x;
            else n_ctx = x;
        } else if (!strcmp(a, "--json")) json = true;
        else return cli_fail("eval", "unknown argument '%s'", a);
    }
    if (!mpath || !fpath) return cli_fail("eval", "need -m MODEL and -f TEXT");
    if (n_ctx != 0 && n_ctx < 4) return cli_fail("eval", "--ctx must be at least 4");
    qerr e;
    char *text;
    size_t tlen;
    if (q_read_file(fpath, &text, &tlen, &e)) return cli_fail("eval", "%s", e.msg);
    model *m;
    if (model_load(&m, mpath, &e)) { free(text); return cli_fail("eval", "%s", e.msg); }
    tokenizer *tok;
    if (tokenizer_load(&tok, m->g, &e)) { model_free(m); free(text); return cli_fail("eval", "%s", e.msg); }
    if (n_ctx == 0) n_ctx = m->hp.n_ctx_train < 2048 ? m->hp.n_ctx_train : 2048;

    double t0 = q_now();
    int32_t *ids;
    size_t n_ids;
    int rc = EXIT_OK;
    if (tokenizer_encode(tok, text, tlen, true, false, &ids, &n_ids, &e)) {
        rc = cli_fail("eval", "%s", e.msg);
        goto out0;
    }
    long long n_chunks = (long long)n_ids / n_ctx;
    if (max_chunks > 0 && n_chunks > max_chunks) n_chunks = max_chunks;
    if (n_chunks < 1) {
        rc = cli_fail("eval", "%s has %zu tokens, fewer than one window of %lld (use a longer text or a smaller --ctx)", fpath,
                      n_ids, n_ctx);
        goto out1;
    }
    model_ctx c;
    model_ctx_params cp = {.n_ctx = (int)n_ctx, .n_seq = 1, .n_threads = (int)threads};
    if (model_ctx_init(&c, m, &cp, &e)) { rc = cli_fail("eval", "%s", e.msg); goto out1; }
    int nv = m->hp.n_vocab, n = (int)n_ctx, first = n / 2;
    int32_t *win = malloc((size_t)n * sizeof *win), *pos = malloc((size_t)n * sizeof *pos);
    int32_t *seq = calloc((size_t)n, sizeof *seq);
    bool *want = calloc((size_t)n, sizeof *want);
    float *logits = malloc((size_t)(n - first) * nv * sizeof(float));
    for (int i = 0; i < n; i++) pos[i] = i, want[i] = i >= first && i < n - 1;
    double nll = 0, nll2 = 0;
    long long count = 0;
    int32_t bos = tokenizer_add_bos(tok) ? tokenizer_bos(tok) : -1;
    for (long long k = 0; k < n_chunks && rc == EXIT_OK; k++) {
        memcpy(win, ids + k * n, (size_t)n * sizeof *win);
        if (bos >= 0) win[0] = bos;
        kv_cache_reset(&c.kv);
        model_batch b = {n, win, pos, seq, want};
        if (model_forward(&c, &b, logits, &e)) { rc = cli_fail("eval", "%s", e.msg); break; }
        for (int j = first; j < n - 1; j++) {
            /* the target is the real next token, not the BOS substitute */
            double lp = log_prob(logits + (size_t)(j - first) * nv, nv, ids[k * n + j + 1]);
            nll -= lp;
            nll2 += lp * lp;
            count++;
        }
        if (!json) fprintf(stderr, "[%lld/%lld] ppl so far %.4f\n", k + 1, n_chunks, exp(nll / (double)count));
    }
    if (rc == EXIT_OK) {
        double mean = nll / (double)count, ppl = exp(mean);
        double var = nll2 / (double)count - mean * mean;
        double se = (var > 0 && count > 1) ? sqrt(var / (double)(count - 1)) * ppl : 0;
        double dt = q_now() - t0;
        if (json) {
            jw w;
            jw_init(&w, stdout);
            jw_obj_begin(&w);
            jw_key(&w, "ppl"); jw_num(&w, ppl);
            jw_key(&w, "ppl_stderr"); jw_num(&w, se);
            jw_key(&w, "n_tokens"); jw_int(&w, count);
            jw_key(&w, "n_chunks"); jw_int(&w, n_chunks);
            jw_key(&w, "ctx"); jw_int(&w, n_ctx);
            jw_key(&w, "seconds"); jw_num(&w, dt);
            jw_obj_end(&w);
        } else {
            printf("perplexity %.4f ± %.4f over %lld scored tokens (%lld windows of %lld)\n", ppl, se, count, n_chunks, n_ctx);
        }
    }
    free(win); free(pos); free(seq); free(want); free(logits);
    model_ctx_free(&c);
out1:
    free(ids);
out0:
    tokenizer_free(tok);
    model_free(m);
    free(text);
    return rc;
}

int cmd_eval(int argc, char **argv) {
    if (argc < 2) return cli_fail("eval", "what to evaluate? (quire eval ppl ...)");
    if (!strcmp(argv[1], "ppl")) return eval_ppl(argc, argv);
    if (!strcmp(argv[1], "retrieval")) { int eval_retrieval(int, char **); return eval_retrieval(argc, argv); }
    if (!strcmp(argv[1], "extract")) { int eval_extract(int, char **); return eval_extract(argc, argv); }
    return cli_fail("eval", "unknown evaluation '%s' (available: ppl, retrieval, extract)", argv[1]);
}
