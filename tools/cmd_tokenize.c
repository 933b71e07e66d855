/* cmd_tokenize.c — `quire tokenize`, `quire detokenize` and
 * `quire bench-tokenizer`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "tokenizer/tokenizer.h"

void help_tokenize(FILE *out) {
    fprintf(out, "usage: quire tokenize -m MODEL.gguf [--no-special] (-p TEXT | -f FILE)\n"
                 "  Prints the token ids of the text, space-separated on one line.\n"
                 "  By default BOS/EOS ([CLS]/[SEP]) are added as the vocabulary says and the text of\n"
                 "  control tokens (e.g. <|im_end|>) is recognised as those tokens.\n"
                 "  --no-special  no BOS/EOS, and special-token text is treated as plain text\n"
                 "  -f FILE       read the text from FILE (bytes as they are; '-' for stdin)\n");
}

void help_detokenize(FILE *out) {
    fprintf(out, "usage: quire detokenize -m MODEL.gguf ID...\n"
                 "  Prints the text of the token ids exactly: no newline is added.\n"
                 "  Control tokens (BOS, EOS, ...) contribute no text; for SentencePiece and WordPiece\n"
                 "  vocabularies the leading space of the first token is dropped.\n");
}

void help_bench_tokenizer(FILE *out) {
    fprintf(out, "usage: quire bench-tokenizer -m MODEL.gguf [-f FILE] [--mb N]\n"
                 "  Tokenizes FILE (default: N MB of generated mixed-script text, N=4) and reports\n"
                 "  encode MB/s and tokens/s, and decode tokens/s.\n");
}

static int load_model_tok(const char *cmd, const char *path, tokenizer **t) {
    qerr e;
    gguf *g;
    if (gguf_open(&g, path, &e)) return cli_fail(cmd, "%s", e.msg);
    int rc = tokenizer_load(t, g, &e);
    gguf_close(g);
    if (rc) return cli_fail(cmd, "%s: %s", path, e.msg);
    return 0;
}

static int read_all(const char *path, char **buf, size_t *len, qerr *e) {
    if (strcmp(path, "-") != 0) return q_read_file(path, buf, len, e);
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap + 1);
    if (!b) return qerr_set(e, "out of memory");
    for (;;) {
        if (n == cap) {
            char *nb = realloc(b, cap * 2 + 1);
            if (!nb) { free(b); return qerr_set(e, "out of memory"); }
            b = nb;
            cap *= 2;
        }
        size_t r = fread(b + n, 1, cap - n, stdin);
        if (r == 0) break;
        n += r;
    }
    b[n] = 0;
    *buf = b;
    *len = n;
    return 0;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *file = NULL;
    bool special = true;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-m") == 0 || strcmp(argv[i], "--model") == 0) {
            if (!(model = cli_value("tokenize", argc, argv, &i))) return EXIT_USAGE;
        } else if (strcmp(argv[i], "-p") == 0 || strcmp(argv[i], "--prompt") == 0) {
            if (!(text = cli_value("tokenize", argc, argv, &i))) return EXIT_USAGE;
        } else if (strcmp(argv[i], "-f") == 0 || strcmp(argv[i], "--file") == 0) {
            if (!(file = cli_value("tokenize", argc, argv, &i))) return EXIT_USAGE;
        } else if (strcmp(argv[i], "--no-special") == 0) {
            special = false;
        } else {
            return cli_fail("tokenize", "unknown argument %s", argv[i]);
        }
    }
    if (!model) return cli_fail("tokenize", "no model given (-m MODEL.gguf)");
    if (!text == !file) return cli_fail("tokenize", "give exactly one of -p TEXT or -f FILE");
    qerr e;
    char *buf = NULL;
    size_t len;
    if (file) {
        if (read_all(file, &buf, &len, &e)) return cli_fail("tokenize", "%s", e.msg);
    } else {
        len = strlen(text);
    }
    tokenizer *t;
    if (load_model_tok("tokenize", model, &t)) { free(buf); return EXIT_USAGE; }
    int32_t *ids;
    size_t n;
    if (tokenizer_encode(t, file ? buf : text, len, special, special, &ids, &n, &e)) {
        free(buf);
        tokenizer_free(t);
        return cli_fail("tokenize", "%s", e.msg);
    }
    for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    printf("\n");
    free(ids);
    free(buf);
    tokenizer_free(t);
    return fflush(stdout) == 0 ? EXIT_OK : EXIT_USAGE;
}

int cmd_detokenize(int argc, char **argv) {
    const char *model = NULL;
    int32_t *ids = calloc((size_t)argc + 1, sizeof *ids);
    size_t n = 0;
    if (!ids) return cli_fail("detokenize", "out of memory");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-m") == 0 || strcmp(argv[i], "--model") == 0) {
            if (!(model = cli_value("detokenize", argc, argv, &i))) { free(ids); return EXIT_USAGE; }
        } else {
            long long v;
            if (!cli_parse_int(argv[i], &v) || v < 0 || v > INT32_MAX) {
                free(ids);
                return cli_fail("detokenize", "not a token id: '%s'", argv[i]);
            }
            ids[n++] = (int32_t)v;
        }
    }
    if (!model) { free(ids); return cli_fail("detokenize", "no model given (-m MODEL.gguf)"); }
    tokenizer *t;
    if (load_model_tok("detokenize", model, &t)) { free(ids); return EXIT_USAGE; }
    char *text;
    size_t len;
    qerr e;
    int rc = tokenizer_decode(t, ids, n, &text, &len, &e);
    free(ids);
    tokenizer_free(t);
    if (rc) return cli_fail("detokenize", "%s", e.msg);
    fwrite(text, 1, len, stdout);
    free(text);
    return fflush(stdout) == 0 ? EXIT_OK : EXIT_USAGE;
}

/* Mixed-script sample text for the benchmark. */
static const char *const bench_words[] = {
    "The ", "quick ", "brown ", "fox ", "jumps ", "over ", "the ", "lazy ", "dog. ", "Привет, ", "мир! ",
    "你好世界。", "こんにちは ", "مرحبا ", "بالعالم ", "🦙🚀 ", "12345 ", "3.14159 ", "  ", "\n", "\t",
    "don't ", "I'll ", "Straße ", "naïve ", "café ", "{\"key\": [1, 2, 3]} ", "int main(void) { return 0; }\n",
};

int cmd_bench_tokenizer(int argc, char **argv) {
    const char *model = NULL, *file = NULL;
    long long mb = 4;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-m") == 0 || strcmp(argv[i], "--model") == 0) {
            if (!(model = cli_value("bench-tokenizer", argc, argv, &i))) return EXIT_USAGE;
        } else if (strcmp(argv[i], "-f") == 0) {
            if (!(file = cli_value("bench-tokenizer", argc, argv, &i))) return EXIT_USAGE;
        } else if (strcmp(argv[i], "--mb") == 0) {
            const char *v = cli_value("bench-tokenizer", argc, argv, &i);
            if (!v || !cli_parse_int(v, &mb) || mb < 1 || mb > 1024) return cli_fail("bench-tokenizer", "--mb needs 1..1024");
        } else {
            return cli_fail("bench-tokenizer", "unknown argument %s", argv[i]);
        }
    }
    if (!model) return cli_fail("bench-tokenizer", "no model given (-m MODEL.gguf)");
    qerr e;
    char *buf;
    size_t len = 0;
    if (file) {
        if (read_all(file, &buf, &len, &e)) return cli_fail("bench-tokenizer", "%s", e.msg);
    } else {
        size_t want = (size_t)mb << 20;
        buf = malloc(want + 64);
        if (!buf) return cli_fail("bench-tokenizer", "out of memory");
        uint32_t s = 12345;
        while (len < want) {
            s = s * 1103515245u + 12345u;
            const char *w = bench_words[(s >> 16) % (sizeof bench_words / sizeof *bench_words)];
            size_t l = strlen(w);
            if (len + l > want) break;
            memcpy(buf + len, w, l);
            len += l;
        }
    }
    tokenizer *t;
    if (load_model_tok("bench-tokenizer", model, &t)) { free(buf); return EXIT_USAGE; }
    int32_t *ids;
    size_t n;
    double t0 = q_now();
    int rc = tokenizer_encode(t, buf, len, false, false, &ids, &n, &e);
    double t1 = q_now();
    if (rc) { free(buf); tokenizer_free(t); return cli_fail("bench-tokenizer", "%s", e.msg); }
    char *text;
    size_t tl;
    double t2 = q_now();
    rc = tokenizer_decode(t, ids, n, &text, &tl, &e);
    double t3 = q_now();
    if (rc) { free(ids); free(buf); tokenizer_free(t); return cli_fail("bench-tokenizer", "%s", e.msg); }
    printf("%s: %.2f MB, %zu tokens; encode %.1f MB/s, %.0f tokens/s; decode %.0f tokens/s\n", model,
           (double)len / (1 << 20), n, (double)len / (1 << 20) / (t1 - t0), (double)n / (t1 - t0),
           (double)n / (t3 - t2 > 0 ? t3 - t2 : 1e-9));
    free(text);
    free(ids);
    free(buf);
    tokenizer_free(t);
    return EXIT_OK;
}
