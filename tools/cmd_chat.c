/* cmd_chat.c — `quire chat`: interactive multi-turn chat. Each turn renders
 * the whole conversation with the model's chat template, keeps the K/V of
 * the longest prefix the cache already holds, and evaluates only the rest,
 * so a turn costs its new tokens, not the whole history. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "models/models.h"
#include "tokenizer/tokenizer.h"

void help_chat(FILE *out) {
    fprintf(out, "usage: quire chat -m MODEL [-s SYSTEM] [-n N] [--temp T] [--seed S] [-c CTX] [-t THREADS]\n"
                 "                  [--chat-template FILE]\n"
                 "  Reads user turns from stdin (one per line), streams the answers to stdout.\n"
                 "  The KV cache is reused between turns. A model without a template uses ChatML.\n");
}

int cmd_chat(int argc, char **argv) {
    const char *mpath = NULL, *system = NULL, *tmpl_path = NULL;
    long long n_predict = 256, threads = 0, n_ctx = 2048;
    sampler_params sp = sampler_defaults();
    sp.seed = (uint64_t)time(NULL);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        long long x;
        double f;
        if (!strcmp(a, "-m")) { if (!(mpath = cli_value("chat", argc, argv, &i))) return EXIT_USAGE; }
        else if (!strcmp(a, "-s")) { if (!(system = cli_value("chat", argc, argv, &i))) return EXIT_USAGE; }
        else if (!strcmp(a, "--chat-template")) { if (!(tmpl_path = cli_value("chat", argc, argv, &i))) return EXIT_USAGE; }
        else if (!strcmp(a, "-n") || !strcmp(a, "-t") || !strcmp(a, "-c") || !strcmp(a, "--seed")) {
            if (!(v = cli_value("chat", argc, argv, &i))) return EXIT_USAGE;
            if (!cli_parse_int(v, &x) || x < 0) return cli_fail("chat", "bad value '%s' for %s", v, a);
            if (!strcmp(a, "-n")) n_predict = x;
            else if (!strcmp(a, "-t")) threads = x;
            else if (!strcmp(a, "-c")) n_ctx = x;
            else sp.seed = (uint64_t)x;
        } else if (!strcmp(a, "--temp")) {
            if (!(v = cli_value("chat", argc, argv, &i))) return EXIT_USAGE;
            if (!cli_parse_float(v, &f) || f < 0) return cli_fail("chat", "bad temperature '%s'", v);
            sp.temp = (float)f;
        } else return cli_fail("chat", "unknown argument '%s'", a);
    }
    if (!mpath) return cli_fail("chat", "no model given (-m MODEL)");
    qerr e;
    model *m;
    if (model_load(&m, mpath, &e)) return cli_fail("chat", "%s", e.msg);
    tokenizer *tok;
    if (tokenizer_load(&tok, m->g, &e)) { model_free(m); return cli_fail("chat", "%s", e.msg); }
    char *tmpl_buf = NULL;
    const char *tmpl = tokenizer_chat_template(tok);
    if (tmpl_path && q_read_file(tmpl_path, &tmpl_buf, NULL, &e)) { tokenizer_free(tok); model_free(m); return cli_fail("chat", "%s", e.msg); }
    if (tmpl_buf) tmpl = tmpl_buf;
    if (!tmpl) tmpl = chat_template_chatml;
    model_ctx c;
    model_ctx_params cp = {.n_ctx = (int)n_ctx, .n_threads = (int)threads};
    if (model_ctx_init(&c, m, &cp, &e)) { tokenizer_free(tok); model_free(m); free(tmpl_buf); return cli_fail("chat", "%s", e.msg); }
    sampler *smp = sampler_new(&sp, m->hp.n_vocab);
    int nv = m->hp.n_vocab;
    float *logits = malloc((size_t)nv * sizeof(float));
    chat_msg msgs[512];
    char *owned[512];
    int n_msgs = 0;
    if (system) msgs[n_msgs] = (chat_msg){"system", system}, owned[n_msgs++] = NULL;
    int32_t *cache = malloc((size_t)n_ctx * sizeof(int32_t)); /* ids whose K/V the cache holds */
    int n_cache = 0, rc = EXIT_OK;
    char line[65536];
    while (rc == EXIT_OK && n_msgs < 510 && fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        if (!line[0]) continue;
        owned[n_msgs] = strdup(line);
        msgs[n_msgs] = (chat_msg){"user", owned[n_msgs]};
        n_msgs++;
        char *prompt;
        size_t plen;
        int32_t *ids;
        size_t n;
        if (tokenizer_chat_apply(tok, tmpl, msgs, (size_t)n_msgs, true, &prompt, &plen, &e)) { rc = cli_fail("chat", "%s", e.msg); break; }
        int32_t bos = tokenizer_bos(tok);
        size_t bl = 0;
        const char *bt = bos >= 0 ? tokenizer_token_text(tok, bos, &bl) : NULL;
        bool add = !(bt && bl && plen >= bl && !memcmp(prompt, bt, bl));
        if (tokenizer_encode(tok, prompt, plen, add, true, &ids, &n, &e)) { free(prompt); rc = cli_fail("chat", "%s", e.msg); break; }
        free(prompt);
        if ((long long)n + n_predict > n_ctx) { free(ids); rc = cli_fail("chat", "the conversation (%zu tokens) no longer fits the context of %lld", n, n_ctx); break; }
        int common = 0;
        while (common < n_cache && common < (int)n - 1 && cache[common] == ids[common]) common++;
        kv_cache_seq_truncate(&c.kv, 0, common);
        int todo = (int)n - common;
        int32_t *pos = malloc((size_t)todo * sizeof(int32_t)), *seq = calloc((size_t)todo, sizeof(int32_t));
        bool *want = calloc((size_t)todo, sizeof(bool));
        for (int i = 0; i < todo; i++) pos[i] = common + i;
        want[todo - 1] = true;
        model_batch b = {todo, ids + common, pos, seq, want};
        int frc = model_forward(&c, &b, logits, &e);
        free(pos); free(seq); free(want);
        memcpy(cache, ids, n * sizeof(int32_t));
        n_cache = (int)n;
        free(ids);
        if (frc) { rc = cli_fail("chat", "%s", e.msg); break; }
        gen_text text;
        gen_text_init(&text, NULL, 0);
        for (long long g = 0; g < n_predict; g++) {
            int32_t t = sampler_sample(smp, logits, cache, n_cache);
            if (tokenizer_is_eog(tok, t)) break;
            size_t pl, ol;
            const char *piece = tokenizer_piece(tok, t, &pl), *out;
            gen_text_feed(&text, piece ? piece : "", piece ? pl : 0, &out, &ol, &e);
            fwrite(out, 1, ol, stdout);
            fflush(stdout);
            cache[n_cache] = t;
            int32_t p = n_cache++, s0 = 0;
            model_batch one = {1, &t, &p, &s0, NULL};
            if (model_forward(&c, &one, logits, &e)) { rc = cli_fail("chat", "%s", e.msg); break; }
        }
        const char *out;
        size_t ol;
        gen_text_flush(&text, &out, &ol);
        fwrite(out, 1, ol, stdout);
        printf("\n");
        fflush(stdout);
        owned[n_msgs] = strndup(text.buf ? text.buf : "", text.n);
        msgs[n_msgs] = (chat_msg){"assistant", owned[n_msgs]};
        n_msgs++;
        gen_text_free(&text);
    }
    for (int i = 0; i < n_msgs; i++) free(owned[i]);
    free(cache);
    free(logits);
    sampler_free(smp);
    model_ctx_free(&c);
    tokenizer_free(tok);
    model_free(m);
    free(tmpl_buf);
    return rc;
}
