/* cmd_embed.c — `quire embed -m MODEL (-p TEXT | -f FILE) [--pooling mean|cls]`:
 * one L2-normalized embedding as {"embedding": [...]}. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "models/models.h"
#include "tokenizer/tokenizer.h"

void help_embed(FILE *out) {
    fprintf(out, "usage: quire embed -m MODEL (-p TEXT | -f FILE) [--pooling mean|cls|last] [-t THREADS]\n"
                 "  Embeds the text with a BERT encoder ([CLS] ... [SEP] added) and prints\n"
                 "  {\"embedding\": [floats], \"n_tokens\": N}, L2-normalized. Pooling defaults to the model's.\n");
}

int cmd_embed(int argc, char **argv) {
    const char *mpath = NULL, *text = NULL, *fpath = NULL;
    int pooling = -1;
    long long threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) { if (!(mpath = cli_value("embed", argc, argv, &i))) return EXIT_USAGE; }
        else if (!strcmp(a, "-p")) { if (!(text = cli_value("embed", argc, argv, &i))) return EXIT_USAGE; }
        else if (!strcmp(a, "-f")) { if (!(fpath = cli_value("embed", argc, argv, &i))) return EXIT_USAGE; }
        else if (!strcmp(a, "-t")) {
            if (!(v = cli_value("embed", argc, argv, &i))) return EXIT_USAGE;
            if (!cli_parse_int(v, &threads) || threads < 1 || threads > 1024) return cli_fail("embed", "bad thread count '%s'", v);
        } else if (!strcmp(a, "--pooling")) {
            if (!(v = cli_value("embed", argc, argv, &i))) return EXIT_USAGE;
            if (!strcmp(v, "mean")) pooling = POOL_MEAN;
            else if (!strcmp(v, "cls")) pooling = POOL_CLS;
            else if (!strcmp(v, "last")) pooling = POOL_LAST;
            else return cli_fail("embed", "--pooling must be mean, cls or last");
        } else return cli_fail("embed", "unknown argument '%s'", a);
    }
    if (!mpath) return cli_fail("embed", "no model given (-m MODEL)");
    if (!text == !fpath) return cli_fail("embed", "give exactly one of -p TEXT or -f FILE");
    qerr e;
    char *buf = NULL;
    size_t len;
    if (fpath) {
        if (q_read_file(fpath, &buf, &len, &e)) return cli_fail("embed", "%s", e.msg);
        text = buf;
    } else {
        len = strlen(text);
    }
    bert_model *m;
    if (bert_load(&m, mpath, &e)) { free(buf); return cli_fail("embed", "%s", e.msg); }
    tokenizer *tok;
    if (tokenizer_load(&tok, m->g, &e)) { bert_free(m); free(buf); return cli_fail("embed", "%s: %s", mpath, e.msg); }
    int rc = EXIT_OK;
    int32_t *ids = NULL;
    size_t n = 0;
    float *vec = malloc((size_t)m->n_embd * sizeof(float));
    qpool *pool = qpool_new(threads > 0 ? (int)threads : q_default_threads());
    if (tokenizer_encode(tok, text, len, true, false, &ids, &n, &e)) {
        rc = cli_fail("embed", "%s", e.msg);
    } else {
        int st[2] = {0, (int)n};
        if (bert_embed(m, pool, ids, st, 1, pooling, vec, &e)) {
            rc = cli_fail("embed", "%s", e.msg);
        } else {
            jw w;
            jw_init(&w, stdout);
            jw_obj_begin(&w);
            jw_key(&w, "embedding");
            jw_arr_begin(&w);
            for (int i = 0; i < m->n_embd; i++) jw_num(&w, vec[i]);
            jw_arr_end(&w);
            jw_key(&w, "n_tokens");
            jw_int(&w, (long long)n);
            jw_obj_end(&w);
        }
    }
    qpool_free(pool);
    free(vec);
    free(ids);
    tokenizer_free(tok);
    bert_free(m);
    free(buf);
    return rc;
}
