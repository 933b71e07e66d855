/* cmd_synth.c — `quire synth`: a model with random weights at a real model's
 * shape, so benchmarks run at realistic sizes without downloads. The weights
 * are written as F32 (streamed, one tensor at a time) and then converted by
 * the same code as `quire quantize`, so the tensor types follow the
 * reference's rules exactly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

void help_synth(FILE *out) {
    fprintf(out,
            "usage: quire synth --shape SHAPE --type TYPE -o OUT.gguf [--arch llama|qwen2] [--vocab FILE.gguf]\n"
            "                   [--seed S] [-t THREADS]\n"
            "  SHAPE: tinyllama-1.1b | smollm-135m | qwen2.5-0.5b | llama-7b | N,L,H,KV,FF\n"
            "         (n_embd, layers, heads, kv heads, ffn size; vocab 32000 unless --vocab)\n"
            "  TYPE:  any `quire quantize` type (Q4_0, Q8_0, Q4_K_M, F16, ...)\n"
            "  --vocab copies the tokenizer of a GGUF file (and its size) so `quire run` works;\n"
            "  without it the file declares no tokenizer (fine for `quire bench`).\n");
}

typedef struct shape {
    const char *name, *arch;
    int n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_ctx;
    float rope_base, eps;
    bool tied;
} shape;

static const shape shapes[] = {
    {"tinyllama-1.1b", "llama", 2048, 22, 32, 4, 5632, 32000, 2048, 10000.0f, 1e-5f, false},
    {"smollm-135m", "llama", 576, 30, 9, 3, 1536, 49152, 2048, 10000.0f, 1e-5f, true},
    {"qwen2.5-0.5b", "qwen2", 896, 24, 14, 2, 4864, 151936, 32768, 1000000.0f, 1e-6f, true},
    {"llama-7b", "llama", 4096, 32, 32, 32, 11008, 32000, 4096, 10000.0f, 1e-5f, false},
};

typedef struct gen {
    uint64_t seed;
    float scale, offset; /* value = offset + scale * uniform(-1, 1) */
} gen;

static int fill_random(void *ud, void *dst, uint64_t nbytes, qerr *e) {
    (void)e;
    const gen *g = ud;
    qrng r;
    qrng_seed(&r, g->seed);
    float *f = dst;
    for (uint64_t i = 0; i < nbytes / 4; i++) f[i] = g->offset + g->scale * (2.0f * qrng_uniform(&r) - 1.0f);
    return 0;
}

static uint64_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

int cmd_synth(int argc, char **argv) {
    const char *shape_s = NULL, *type = NULL, *out = NULL, *arch_s = NULL, *vocab = NULL;
    long long threads = 0;
    unsigned long long seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--shape")) { if (!(shape_s = cli_value("synth", argc, argv, &i))) return EXIT_USAGE; }
        else if (!strcmp(a, "--type")) { if (!(type = cli_value("synth", argc, argv, &i))) return EXIT_USAGE; }
        else if (!strcmp(a, "-o")) { if (!(out = cli_value("synth", argc, argv, &i))) return EXIT_USAGE; }
        else if (!strcmp(a, "--arch")) { if (!(arch_s = cli_value("synth", argc, argv, &i))) return EXIT_USAGE; }
        else if (!strcmp(a, "--vocab")) { if (!(vocab = cli_value("synth", argc, argv, &i))) return EXIT_USAGE; }
        else if (!strcmp(a, "--seed")) {
            if (!(v = cli_value("synth", argc, argv, &i))) return EXIT_USAGE;
            char *end;
            seed = strtoull(v, &end, 10);
            if (end == v || *end) return cli_fail("synth", "bad seed '%s'", v);
        } else if (!strcmp(a, "-t")) {
            if (!(v = cli_value("synth", argc, argv, &i))) return EXIT_USAGE;
            if (!cli_parse_int(v, &threads) || threads < 1 || threads > 1024) return cli_fail("synth", "bad thread count '%s'", v);
        } else return cli_fail("synth", "unknown argument '%s'", a);
    }
    if (!shape_s || !type || !out) return cli_fail("synth", "need --shape, --type and -o");
    if (q_quant_ftype_from_name(type) < 0) return cli_fail("synth", "unknown type '%s' (see quire quantize --help)", type);

    shape sh = {0};
    bool found = false;
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        if (!strcmp(shapes[i].name, shape_s)) sh = shapes[i], found = true;
    if (!found) {
        sh = (shape){"custom", "llama", 0, 0, 0, 0, 0, 32000, 2048, 10000.0f, 1e-5f, false};
        if (sscanf(shape_s, "%d,%d,%d,%d,%d", &sh.n_embd, &sh.n_layer, &sh.n_head, &sh.n_head_kv, &sh.n_ff) != 5 ||
            sh.n_embd <= 0 || sh.n_layer <= 0 || sh.n_head <= 0 || sh.n_head_kv <= 0 || sh.n_ff <= 0 ||
            sh.n_embd > 65536 || sh.n_layer > 1024 || sh.n_ff > 1 << 20)
            return cli_fail("synth", "unknown shape '%s' (a name, or N,L,H,KV,FF)", shape_s);
    }
    if (arch_s) {
        if (strcmp(arch_s, "llama") && strcmp(arch_s, "qwen2")) return cli_fail("synth", "--arch must be llama or qwen2");
        sh.arch = arch_s;
    }
    if (sh.n_embd % sh.n_head || sh.n_head % sh.n_head_kv)
        return cli_fail("synth", "n_embd %d / heads %d / kv heads %d do not divide", sh.n_embd, sh.n_head, sh.n_head_kv);
    bool qwen = !strcmp(sh.arch, "qwen2");

    qerr e;
    gguf *vg = NULL;
    if (vocab) {
        if (gguf_open(&vg, vocab, &e)) return cli_fail("synth", "%s", e.msg);
        const gguf_value *toks = gguf_get(vg, "tokenizer.ggml.tokens");
        if (!toks || toks->type != GGUF_ARRAY || toks->v.arr.n == 0) {
            gguf_close(vg);
            return cli_fail("synth", "%s has no tokenizer.ggml.tokens", vocab);
        }
        sh.n_vocab = (int)toks->v.arr.n;
    }
    int d = sh.n_embd, hd = d / sh.n_head, kvd = hd * sh.n_head_kv;

    gguf_writer *w = gguf_writer_new();
    char key[128];
#define K(suffix) (snprintf(key, sizeof key, "%s.%s", sh.arch, suffix), key)
    gguf_writer_set_str(w, "general.architecture", sh.arch);
    char name[160];
    snprintf(name, sizeof name, "quire-synth %s %s", sh.name, type);
    gguf_writer_set_str(w, "general.name", name);
    gguf_writer_set_u32(w, K("context_length"), (uint32_t)sh.n_ctx);
    gguf_writer_set_u32(w, K("embedding_length"), (uint32_t)d);
    gguf_writer_set_u32(w, K("block_count"), (uint32_t)sh.n_layer);
    gguf_writer_set_u32(w, K("feed_forward_length"), (uint32_t)sh.n_ff);
    gguf_writer_set_u32(w, K("attention.head_count"), (uint32_t)sh.n_head);
    gguf_writer_set_u32(w, K("attention.head_count_kv"), (uint32_t)sh.n_head_kv);
    gguf_writer_set_u32(w, K("rope.dimension_count"), (uint32_t)hd);
    gguf_writer_set_u32(w, K("vocab_size"), (uint32_t)sh.n_vocab);
    gguf_value fv = {.type = GGUF_F32};
    fv.v.f = sh.eps;
    gguf_writer_set(w, K("attention.layer_norm_rms_epsilon"), &fv);
    fv.v.f = sh.rope_base;
    gguf_writer_set(w, K("rope.freq_base"), &fv);
#undef K
    if (vg) {
        for (int64_t i = 0; i < vg->n_kv; i++)
            if (!strncmp(vg->kv[i].key, "tokenizer.", 10)) gguf_writer_set(w, vg->kv[i].key, &vg->kv[i].val);
    } else {
        gguf_writer_set_str(w, "tokenizer.ggml.model", "none");
    }

    /* Tensors, in the layout the loaders expect. Weights ~ U(-a, a) with
     * a = 0.035 (std 0.02, the usual initialisation); norms near 1. */
    int n_t = 0, cap = 16 + sh.n_layer * 12;
    gen *gens = calloc((size_t)cap, sizeof *gens);
    struct { const char *suffix; int64_t ne0, ne1; bool norm; } per_layer[] = {
        {"attn_norm.weight", d, 1, true},  {"attn_q.weight", d, d, false},     {"attn_k.weight", d, kvd, false},
        {"attn_v.weight", d, kvd, false},  {"attn_output.weight", d, d, false}, {"ffn_norm.weight", d, 1, true},
        {"ffn_gate.weight", d, sh.n_ff, false}, {"ffn_up.weight", d, sh.n_ff, false}, {"ffn_down.weight", sh.n_ff, d, false},
        {"attn_q.bias", d, 1, false},      {"attn_k.bias", kvd, 1, false},      {"attn_v.bias", kvd, 1, false},
    };
#define ADD(nm, e0, e1, isnorm)                                                                   \
    do {                                                                                          \
        gens[n_t] = (gen){seed ^ hash_name(nm), (isnorm) ? 0.1f : 0.035f, (isnorm) ? 1.0f : 0.0f}; \
        int64_t ne_[2] = {(e0), (e1)};                                                            \
        gguf_writer_add_tensor_fill(w, nm, QT_F32, (e1) > 1 ? 2 : 1, ne_, (uint64_t)(e0) * (uint64_t)(e1) * 4, \
                                    fill_random, &gens[n_t]);                                     \
        n_t++;                                                                                    \
    } while (0)
    ADD("token_embd.weight", d, sh.n_vocab, false);
    ADD("output_norm.weight", d, 1, true);
    if (!sh.tied) ADD("output.weight", d, sh.n_vocab, false);
    for (int l = 0; l < sh.n_layer; l++) {
        for (size_t k = 0; k < sizeof per_layer / sizeof *per_layer; k++) {
            if (!qwen && strstr(per_layer[k].suffix, ".bias")) continue;
            char tn[96];
            snprintf(tn, sizeof tn, "blk.%d.%s", l, per_layer[k].suffix);
            ADD(tn, per_layer[k].ne0, per_layer[k].ne1, per_layer[k].norm);
        }
    }
#undef ADD
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.f32.%ld.tmp", out, (long)getpid());
    int rc = EXIT_OK;
    double t0 = q_now();
    if (gguf_writer_write(w, tmp, &e)) {
        rc = cli_fail("synth", "%s", e.msg);
    } else {
        fprintf(stderr, "synth: wrote random F32 weights in %.1f s; converting to %s\n", q_now() - t0, type);
        if (q_quantize_model(tmp, out, type, (int)threads, &e)) rc = cli_fail("synth", "%s", e.msg);
        unlink(tmp);
        if (rc == EXIT_OK) fprintf(stderr, "synth: %s written in %.1f s\n", out, q_now() - t0);
    }
    gguf_writer_free(w);
    free(gens);
    gguf_close(vg);
    return rc;
}
