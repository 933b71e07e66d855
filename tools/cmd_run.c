/* cmd_run.c — `quire run`: generate text from a prompt, streamed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "models/models.h"
#include "tokenizer/tokenizer.h"

void help_run(FILE *out) {
    fprintf(out,
            "usage: quire run -m MODEL (-p PROMPT | -f FILE) [-n N] [options]\n"
            "  Generates text after the prompt and streams it to stdout (not the prompt).\n"
            "  -n N               tokens to generate (default 128)\n"
            "  --temp T           temperature; 0 = greedy (default 0.8)\n"
            "  --top-k K          keep the K most likely tokens (default 40; 0 = off)\n"
            "  --top-p P          nucleus sampling (default 0.95; 1 = off)\n"
            "  --min-p P          drop tokens below P x the top probability (default 0.05; 0 = off)\n"
            "  --repeat-penalty R --frequency-penalty F --presence-penalty P --repeat-last-n N\n"
            "  --seed S           random seed (default: from the clock; printed with --json)\n"
            "  --stop TEXT        stop before TEXT (repeatable; never printed)\n"
            "  -c, --ctx N        context size (default: prompt + n)\n"
            "  -t N               threads (default: all CPUs)\n"
            "  --no-special       do not add BOS/EOS; --special: parse special-token text in the prompt\n"
            "  --json             print {text, tokens, n_prompt, n_gen, seed, stop_reason, timings} instead\n"
            "  --logprobs N       with --json: each token's logprob and the N most likely alternatives\n"
            "  --profile          print a per-stage timing table to stderr\n"
            "  --trace FILE       write Chrome trace-event JSON (stages, layers, ops; opens in Perfetto)\n");
}

typedef struct run_out {
    bool stream;
    char *text;
    size_t n, cap;
} run_out;

static bool on_text(void *ud, const char *s, size_t n) {
    run_out *o = ud;
    if (o->stream) {
        fwrite(s, 1, n, stdout);
        fflush(stdout);
    }
    if (o->n + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 1024;
        while (cap < o->n + n + 1) cap *= 2;
        char *t = realloc(o->text, cap);
        if (!t) return false;
        o->text = t;
        o->cap = cap;
    }
    memcpy(o->text + o->n, s, n);
    o->n += n;
    o->text[o->n] = 0;
    return true;
}

static void print_profile(const gen_stats *st, double t_load, double total) {
    fprintf(stderr, "\n%-12s %10s %8s %12s %12s\n", "stage", "seconds", "count", "ms/item", "items/s");
    struct { const char *name; double t; double n; } rows[] = {
        {"load", t_load, 1},
        {"tokenize", st->t_tokenize, (double)st->n_prompt},
        {"prefill", st->t_prefill, (double)st->n_prompt},
        {"decode", st->t_decode, st->n_gen > 1 ? (double)(st->n_gen - 1) : 0},
        {"sample", st->t_sample, (double)st->n_gen},
        {"detokenize", st->t_detokenize, (double)st->n_gen},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++)
        fprintf(stderr, "%-12s %10.6f %8.0f %12.4f %12.1f\n", rows[i].name, rows[i].t, rows[i].n,
                rows[i].n > 0 ? 1e3 * rows[i].t / rows[i].n : 0.0, rows[i].t > 0 ? rows[i].n / rows[i].t : 0.0);
    fprintf(stderr, "%-12s %10.6f   (prompt %d tokens, generated %d, stop: %s)\n", "total", total, st->n_prompt,
            st->n_gen, st->stop_reason ? st->stop_reason : "-");
}

int cmd_run(int argc, char **argv) {
    const char *mpath = NULL, *prompt = NULL, *pfile = NULL, *trace_path = NULL;
    long long n_predict = 128, threads = 0, n_ctx = 0, n_logprobs = -1;
    sampler_params sp = sampler_defaults();
    bool seed_given = false, json = false, profile = false, add_special = true, parse_special = false;
    const char *stops[32];
    int n_stop = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        long long iv;
        double fv;
#define VAL() do { if (!(v = cli_value("run", argc, argv, &i))) return EXIT_USAGE; } while (0)
#define INT(dst, lo, hi) do { VAL(); if (!cli_parse_int(v, &iv) || iv < (lo) || iv > (hi)) return cli_fail("run", "bad value '%s' for %s", v, a); dst = iv; } while (0)
#define FLT(dst, lo, hi) do { VAL(); if (!cli_parse_float(v, &fv) || fv < (lo) || fv > (hi)) return cli_fail("run", "bad value '%s' for %s", v, a); dst = (float)fv; } while (0)
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) { VAL(); mpath = v; }
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) { VAL(); prompt = v; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { VAL(); pfile = v; }
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) INT(n_predict, 0, 1 << 24);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) INT(threads, 1, 1024);
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) INT(n_ctx, 1, 1 << 24);
        else if (!strcmp(a, "--temp")) FLT(sp.temp, 0, 1e6);
        else if (!strcmp(a, "--logprobs")) INT(n_logprobs, 0, 20);
        else if (!strcmp(a, "--top-k")) INT(sp.top_k, 0, 1 << 30);
        else if (!strcmp(a, "--top-p")) FLT(sp.top_p, 0, 1);
        else if (!strcmp(a, "--min-p")) FLT(sp.min_p, 0, 1);
        else if (!strcmp(a, "--repeat-penalty")) FLT(sp.repeat_penalty, 0, 1e6);
        else if (!strcmp(a, "--frequency-penalty")) FLT(sp.freq_penalty, -1e6, 1e6);
        else if (!strcmp(a, "--presence-penalty")) FLT(sp.presence_penalty, -1e6, 1e6);
        else if (!strcmp(a, "--repeat-last-n")) INT(sp.penalty_last_n, -1, 1 << 30);
        else if (!strcmp(a, "--seed")) {
            VAL();
            unsigned long long s;
            char *end;
            s = strtoull(v, &end, 10);
            if (end == v || *end) return cli_fail("run", "bad seed '%s'", v);
            sp.seed = s;
            seed_given = true;
        } else if (!strcmp(a, "--stop")) {
            VAL();
            if (!*v) return cli_fail("run", "empty stop string");
            if (n_stop == 32) return cli_fail("run", "at most 32 stop strings");
            stops[n_stop++] = v;
        } else if (!strcmp(a, "--json")) json = true;
        else if (!strcmp(a, "--profile")) profile = true;
        else if (!strcmp(a, "--trace")) { VAL(); trace_path = v; }
        else if (!strcmp(a, "--no-special")) add_special = false;
        else if (!strcmp(a, "--special")) parse_special = true;
        else return cli_fail("run", "unknown argument '%s'", a);
#undef VAL
#undef INT
#undef FLT
    }
    if (!mpath) return cli_fail("run", "no model given (-m MODEL)");
    if (!prompt && !pfile) return cli_fail("run", "no prompt given (-p PROMPT or -f FILE)");
    if (prompt && pfile) return cli_fail("run", "give -p or -f, not both");
    if (!seed_given) sp.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);

    qerr e;
    char *fbuf = NULL;
    size_t plen;
    if (pfile) {
        if (q_read_file(pfile, &fbuf, &plen, &e)) return cli_fail("run", "%s", e.msg);
        prompt = fbuf;
    } else {
        plen = strlen(prompt);
    }
    double t_start = q_now();
    model *m;
    if (model_load(&m, mpath, &e)) { free(fbuf); return cli_fail("run", "%s", e.msg); }
    tokenizer *tok;
    if (tokenizer_load(&tok, m->g, &e)) { model_free(m); free(fbuf); return cli_fail("run", "%s: %s", mpath, e.msg); }
    double t_load = q_now() - t_start;

    /* The context holds the prompt plus what we generate; we measure the
     * prompt first so that the cache is sized exactly (and an over-long
     * request is refused with numbers, not truncated). */
    int32_t *pids = NULL;
    size_t n_pids = 0;
    if (tokenizer_encode(tok, prompt, plen, add_special, parse_special, &pids, &n_pids, &e)) {
        tokenizer_free(tok); model_free(m); free(fbuf);
        return cli_fail("run", "%s", e.msg);
    }
    free(pids);
    if (n_ctx == 0) n_ctx = (long long)n_pids + n_predict + 1;
    if ((long long)n_pids + n_predict > n_ctx) {
        tokenizer_free(tok); model_free(m); free(fbuf);
        return cli_fail("run", "prompt of %zu tokens plus -n %lld exceeds the context of %lld", n_pids, n_predict, n_ctx);
    }
    model_ctx ctx;
    model_ctx_params cp = {.n_ctx = (int)n_ctx, .n_seq = 1, .n_threads = (int)threads};
    if (model_ctx_init(&ctx, m, &cp, &e)) { tokenizer_free(tok); model_free(m); free(fbuf); return cli_fail("run", "%s", e.msg); }

    if (trace_path) ctx.trace = qtrace_new();
    gen_params gp = {.n_predict = (int)n_predict, .sp = sp, .stop = stops, .n_stop = n_stop,
                     .add_special = add_special, .parse_special = parse_special};
    token_logprob *lp = NULL, *top = NULL;
    if (n_logprobs >= 0) {
        if (!json) { model_ctx_free(&ctx); tokenizer_free(tok); model_free(m); free(fbuf); return cli_fail("run", "--logprobs needs --json"); }
        lp = calloc((size_t)n_predict + 1, sizeof *lp);
        top = calloc(((size_t)n_predict + 1) * (size_t)(n_logprobs + 1), sizeof *top);
        gp.n_logprobs = (int)n_logprobs;
        gp.lp_out = lp;
        gp.top_out = top;
    }
    run_out out = {.stream = !json};
    gen_stats st;
    int32_t *gen_ids = NULL;
    int n_gen = 0;
    int rc = EXIT_OK;
    if (gen_run(&ctx, tok, 0, prompt, plen, &gp, on_text, &out, &gen_ids, &n_gen, &st, &e)) {
        rc = cli_fail("run", "%s", e.msg);
    } else {
        double total = q_now() - t_start;
        if (json) {
            jw w;
            jw_init(&w, stdout);
            jw_obj_begin(&w);
            jw_key(&w, "text"); jw_strn(&w, out.text ? out.text : "", out.n);
            jw_key(&w, "tokens"); jw_arr_begin(&w);
            for (int i = 0; i < n_gen; i++) jw_int(&w, gen_ids[i]);
            jw_arr_end(&w);
            if (lp) {
                jw_key(&w, "logprobs"); jw_arr_begin(&w);
                for (int i = 0; i < n_gen; i++) {
                    size_t pl;
                    const char *piece = tokenizer_piece(tok, lp[i].id, &pl);
                    jw_obj_begin(&w);
                    jw_key(&w, "id"); jw_int(&w, lp[i].id);
                    jw_key(&w, "piece"); jw_strn(&w, piece ? piece : "", piece ? pl : 0);
                    jw_key(&w, "logprob"); jw_num(&w, lp[i].logprob);
                    jw_key(&w, "top"); jw_arr_begin(&w);
                    for (int k = 0; k < n_logprobs; k++) {
                        const token_logprob *t = &top[(size_t)i * (size_t)n_logprobs + (size_t)k];
                        jw_obj_begin(&w);
                        jw_key(&w, "id"); jw_int(&w, t->id);
                        jw_key(&w, "logprob"); jw_num(&w, t->logprob);
                        jw_obj_end(&w);
                    }
                    jw_arr_end(&w);
                    jw_obj_end(&w);
                }
                jw_arr_end(&w);
            }
            jw_key(&w, "n_prompt"); jw_int(&w, st.n_prompt);
            jw_key(&w, "n_gen"); jw_int(&w, st.n_gen);
            jw_key(&w, "seed"); jw_int(&w, (long long)sp.seed);
            jw_key(&w, "stop_reason"); jw_str(&w, st.stop_reason);
            jw_key(&w, "timings"); jw_obj_begin(&w);
            jw_key(&w, "load"); jw_num(&w, t_load);
            jw_key(&w, "tokenize"); jw_num(&w, st.t_tokenize);
            jw_key(&w, "prefill"); jw_num(&w, st.t_prefill);
            jw_key(&w, "decode"); jw_num(&w, st.t_decode);
            jw_key(&w, "sample"); jw_num(&w, st.t_sample);
            jw_key(&w, "detokenize"); jw_num(&w, st.t_detokenize);
            jw_key(&w, "total"); jw_num(&w, total);
            jw_obj_end(&w);
            jw_obj_end(&w);
        }
        if (profile) print_profile(&st, t_load, total);
        if (trace_path && qtrace_write(ctx.trace, trace_path, &e)) rc = cli_fail("run", "%s", e.msg);
    }
    qtrace_free(ctx.trace);
    ctx.trace = NULL;
    free(gen_ids);
    free(lp);
    free(top);
    free(out.text);
    model_ctx_free(&ctx);
    tokenizer_free(tok);
    model_free(m);
    free(fbuf);
    return rc;
}
