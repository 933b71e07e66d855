/* cmd_info.c — `quire info MODEL.gguf [--json]`. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

void help_info(FILE *out) {
    fprintf(out, "usage: quire info MODEL.gguf [--json] [--kv]\n"
                 "  Prints the architecture, hyper-parameters and tensor types of a GGUF file.\n"
                 "  --json  one JSON object: arch, n_params, n_vocab, n_ctx_train, n_embd, n_layer,\n"
                 "          n_head, n_head_kv, tensor_types {TYPE: count}\n"
                 "  --kv    also list every metadata key (text mode)\n");
}

static long long arch_int(const gguf *g, const char *arch, const char *suffix) {
    char key[256];
    int64_t v;
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (gguf_get_int(g, key, &v)) return v;
    const gguf_value *a = gguf_get(g, key);
    if (a && a->type == GGUF_ARRAY && a->v.arr.raw && a->v.arr.n > 0) return gguf_arr_int(a, 0);
    return -1;
}

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    bool json = false, kv = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) json = true;
        else if (strcmp(argv[i], "--kv") == 0) kv = true;
        else if (argv[i][0] == '-') return cli_fail("info", "unknown option %s", argv[i]);
        else if (!path) path = argv[i];
        else return cli_fail("info", "more than one model given");
    }
    if (!path) return cli_fail("info", "no model given (usage: quire info MODEL.gguf [--json])");
    qerr e;
    gguf *g;
    if (gguf_open(&g, path, &e)) return cli_fail("info", "%s", e.msg);

    const char *arch = gguf_get_str(g, "general.architecture");
    if (!arch) arch = "";
    long long n_params = 0;
    int counts[QT_COUNT] = {0};
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        n_params += t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        counts[t->type]++;
    }
    long long n_vocab = -1;
    const gguf_value *toks = gguf_get(g, "tokenizer.ggml.tokens");
    if (toks && toks->type == GGUF_ARRAY) n_vocab = (long long)toks->v.arr.n;
    if (n_vocab < 0) n_vocab = arch_int(g, arch, "vocab_size");
    long long n_head = arch_int(g, arch, "attention.head_count");
    long long n_head_kv = arch_int(g, arch, "attention.head_count_kv");
    if (n_head_kv < 0) n_head_kv = n_head;

    if (json) {
        jw w;
        jw_init(&w, stdout);
        jw_obj_begin(&w);
        jw_key(&w, "arch"); jw_str(&w, arch);
        jw_key(&w, "n_params"); jw_int(&w, n_params);
        jw_key(&w, "n_vocab"); jw_int(&w, n_vocab);
        jw_key(&w, "n_ctx_train"); jw_int(&w, arch_int(g, arch, "context_length"));
        jw_key(&w, "n_embd"); jw_int(&w, arch_int(g, arch, "embedding_length"));
        jw_key(&w, "n_layer"); jw_int(&w, arch_int(g, arch, "block_count"));
        jw_key(&w, "n_head"); jw_int(&w, n_head);
        jw_key(&w, "n_head_kv"); jw_int(&w, n_head_kv);
        jw_key(&w, "tensor_types");
        jw_obj_begin(&w);
        for (int t = 0; t < QT_COUNT; t++)
            if (counts[t]) { jw_key(&w, qtype_get(t)->name); jw_int(&w, counts[t]); }
        jw_obj_end(&w);
        jw_key(&w, "gguf_version"); jw_int(&w, g->version);
        jw_key(&w, "n_tensors"); jw_int(&w, g->n_tensors);
        jw_key(&w, "n_kv"); jw_int(&w, g->n_kv);
        jw_obj_end(&w);
    } else {
        printf("file:        %s (GGUF v%u, %lld tensors, %lld metadata keys)\n", path, g->version,
               (long long)g->n_tensors, (long long)g->n_kv);
        printf("arch:        %s\n", arch);
        printf("params:      %lld\n", n_params);
        printf("vocab:       %lld\n", n_vocab);
        printf("ctx_train:   %lld\n", arch_int(g, arch, "context_length"));
        printf("embd:        %lld\n", arch_int(g, arch, "embedding_length"));
        printf("layers:      %lld\n", arch_int(g, arch, "block_count"));
        printf("heads:       %lld (kv %lld)\n", n_head, n_head_kv);
        printf("types:      ");
        for (int t = 0; t < QT_COUNT; t++)
            if (counts[t]) printf(" %s:%d", qtype_get(t)->name, counts[t]);
        printf("\n");
        if (kv) {
            for (int64_t i = 0; i < g->n_kv; i++) {
                const gguf_value *v = &g->kv[i].val;
                printf("  %-48s %-7s ", g->kv[i].key, gguf_vtype_name(v->type));
                if (v->type == GGUF_STRING) printf("%.80s", v->v.str.s);
                else if (v->type == GGUF_ARRAY) printf("[%llu x %s]", (unsigned long long)v->v.arr.n, gguf_vtype_name(v->v.arr.elem));
                else if (v->type == GGUF_F32 || v->type == GGUF_F64) printf("%g", v->v.f);
                else if (v->type == GGUF_I8 || v->type == GGUF_I16 || v->type == GGUF_I32 || v->type == GGUF_I64) printf("%lld", (long long)v->v.i);
                else printf("%llu", (unsigned long long)v->v.u);
                printf("\n");
            }
        }
    }
    gguf_close(g);
    return EXIT_OK;
}
