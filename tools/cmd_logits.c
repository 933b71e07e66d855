/* cmd_logits.c — `quire logits -m MODEL --ids "1 2 3" -o PREFIX [-t N]`:
 * evaluates the ids as one prompt and writes PREFIX.logits.f32, float32 LE
 * [n_ids][n_vocab], the logits after each id. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "models/models.h"

void help_logits(FILE *out) {
    fprintf(out, "usage: quire logits -m MODEL --ids \"ID ID ...\" -o PREFIX [-t THREADS] [--kv-f32]\n"
                 "  Evaluates the ids as one prompt (one batch) and writes PREFIX.logits.f32:\n"
                 "  float32 little-endian [n_ids][n_vocab], the logits after each id.\n");
}

int cmd_logits(int argc, char **argv) {
    const char *mpath = NULL, *ids_s = NULL, *prefix = NULL;
    long long threads = 0;
    bool kv_f32 = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) { if (!(mpath = cli_value("logits", argc, argv, &i))) return EXIT_USAGE; }
        else if (!strcmp(a, "--ids")) { if (!(ids_s = cli_value("logits", argc, argv, &i))) return EXIT_USAGE; }
        else if (!strcmp(a, "-o")) { if (!(prefix = cli_value("logits", argc, argv, &i))) return EXIT_USAGE; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            const char *v = cli_value("logits", argc, argv, &i);
            if (!v) return EXIT_USAGE;
            if (!cli_parse_int(v, &threads) || threads < 1 || threads > 1024) return cli_fail("logits", "bad thread count '%s'", v);
        } else if (!strcmp(a, "--kv-f32")) kv_f32 = true;
        else return cli_fail("logits", "unknown argument '%s'", a);
    }
    if (!mpath || !ids_s || !prefix) return cli_fail("logits", "need -m MODEL, --ids \"...\" and -o PREFIX");

    /* parse ids */
    size_t cap = 16, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    const char *p = ids_s;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n') p++;
        if (!*p) break;
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p || v < 0 || v > INT32_MAX) { free(ids); return cli_fail("logits", "bad token id near '%.20s'", p); }
        if (n == cap) ids = realloc(ids, (cap *= 2) * sizeof *ids);
        ids[n++] = (int32_t)v;
        p = end;
    }
    if (n == 0) { free(ids); return cli_fail("logits", "no ids given"); }

    qerr e;
    model *m;
    if (model_load(&m, mpath, &e)) { free(ids); return cli_fail("logits", "%s", e.msg); }
    model_ctx ctx;
    model_ctx_params cp = {.n_ctx = (int)n, .n_seq = 1, .n_threads = (int)threads, .kv_type = kv_f32 ? QT_F32 : QT_F16};
    if (model_ctx_init(&ctx, m, &cp, &e)) { model_free(m); free(ids); return cli_fail("logits", "%s", e.msg); }
    int32_t *pos = malloc(n * sizeof *pos), *seq = calloc(n, sizeof *seq);
    for (size_t i = 0; i < n; i++) pos[i] = (int32_t)i;
    float *logits = malloc(n * (size_t)m->hp.n_vocab * sizeof(float));
    model_batch b = {(int)n, ids, pos, seq, NULL};
    int rc = EXIT_OK;
    if (model_forward(&ctx, &b, logits, &e)) {
        rc = cli_fail("logits", "%s", e.msg);
    } else {
        char path[4096];
        snprintf(path, sizeof path, "%s.logits.f32", prefix);
        if (q_write_file_atomic(path, logits, n * (size_t)m->hp.n_vocab * sizeof(float), &e))
            rc = cli_fail("logits", "%s", e.msg);
    }
    free(logits); free(pos); free(seq); free(ids);
    model_ctx_free(&ctx);
    model_free(m);
    return rc;
}
