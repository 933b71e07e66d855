/* cmd_index.c — `quire index add|rm|verify`: build and maintain an index
 * directory (rag/index.c). Adds are durable when the command acknowledges
 * them; the command checkpoints before it exits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "rag/rag.h"

void help_index(FILE *out) {
    fprintf(out,
            "usage: quire index add DB --jsonl FILE [OPTIONS]     BEIR JSONL: {\"_id\",\"title\",\"text\",\"metadata\"?,\"acl\"?}\n"
            "       quire index add DB FILES... [OPTIONS]         text / Markdown (.md) files; the id is the path\n"
            "       quire index rm DB ID                          remove a document and all its chunks (exit 1: not found)\n"
            "       quire index verify DB                         check every file's checksum and the structures\n"
            "  options at creation (recorded in the index):\n"
            "  --embed-model M     BERT GGUF: chunks are embedded and searchable by vector (cosine HNSW)\n"
            "  --chunk-tokens N    budget per chunk, in the model's tokens (words without a model);\n"
            "                      default: the model's context - 2, or 512 words\n"
            "  --overlap N         tokens of trailing sentences repeated in the next chunk (default 0)\n"
            "  --k1 X --b Y        BM25 parameters (default 0.9, 0.4)\n"
            "  --multi-field       title and text as separate BM25 fields (default: one flat field)\n"
            "  -t THREADS          embedding threads\n"
            "  --batch N           documents per logged batch (default 256)\n"
            "  ACL: a document with an empty or absent \"acl\" is public; otherwise only callers\n"
            "  with one of its principals (search --principal) see it.\n");
}

static int add_batch(rag_index *x, index_doc *docs, size_t n, char **own, size_t n_own) {
    qerr e;
    int rc = index_add(x, docs, n, &e);
    for (size_t i = 0; i < n_own; i++) free(own[i]);
    if (rc) return cli_fail("index", "%s", e.msg);
    return 0;
}

static int index_add_jsonl(rag_index *x, const char *path, long long batch) {
    qerr e;
    char *buf;
    size_t len;
    if (q_read_file(path, &buf, &len, &e)) return cli_fail("index", "%s", e.msg);
    size_t pos = 0, ll, lineno = 0, nd = 0, no = 0;
    const char *line;
    index_doc *docs = calloc((size_t)batch, sizeof *docs);
    jv *vals = calloc((size_t)batch, sizeof *vals);
    char **own = calloc((size_t)batch * 2 + 1, sizeof *own);
    const char **acls = NULL;
    size_t acl_cap = 0, acl_n = 0;
    int rc = 0;
    if (!docs || !vals || !own) { rc = cli_fail("index", "out of memory"); goto out; }
    size_t total = 0;
    while (rc == 0 && jsonl_next_line(buf, len, &pos, &line, &ll)) {
        lineno++;
        size_t k = 0;
        while (k < ll && (line[k] == ' ' || line[k] == '\t')) k++;
        if (k == ll) continue;
        jv *v = &vals[nd];
        if (jsonl_parse(line, ll, v, &e)) { rc = cli_fail("index", "%s:%zu: %s", path, lineno, e.msg); break; }
        const jv *id = jsonl_get(v, "_id"), *title = jsonl_get(v, "title"), *text = jsonl_get(v, "text"),
                 *md = jsonl_get(v, "metadata"), *acl = jsonl_get(v, "acl");
        index_doc *d = &docs[nd];
        memset(d, 0, sizeof *d);
        if (id && id->type == JV_NUM) {
            char nb[40];
            snprintf(nb, sizeof nb, "%.17g", id->num);
            d->id = own[no++] = strdup(nb);
        } else if (id && id->type == JV_STR && id->len > 0) d->id = id->str;
        else { jsonl_free(v); rc = cli_fail("index", "%s:%zu: missing \"_id\" (a non-empty string)", path, lineno); break; }
        if (!text || text->type != JV_STR) { jsonl_free(v); rc = cli_fail("index", "%s:%zu: missing \"text\" (a string)", path, lineno); break; }
        if (title && title->type != JV_STR && title->type != JV_NULL) { jsonl_free(v); rc = cli_fail("index", "%s:%zu: \"title\" must be a string", path, lineno); break; }
        d->title = title && title->type == JV_STR ? title->str : NULL;
        d->text = text->str;
        d->text_len = text->len;
        if (md && md->type != JV_NULL) {
            if (md->type != JV_OBJ) { jsonl_free(v); rc = cli_fail("index", "%s:%zu: \"metadata\" must be an object", path, lineno); break; }
            char *mj;
            if (jsonl_dump(md, &mj, NULL, &e)) { jsonl_free(v); rc = cli_fail("index", "%s", e.msg); break; }
            d->meta_json = own[no++] = mj;
        }
        if (acl && acl->type != JV_NULL) {
            if (acl->type != JV_ARR) { jsonl_free(v); rc = cli_fail("index", "%s:%zu: \"acl\" must be an array of strings", path, lineno); break; }
            d->n_acl = (int)acl->len;
            d->acl = NULL;
            for (size_t i = 0; i < acl->len; i++)
                if (acl->items[i].type != JV_STR) { rc = cli_fail("index", "%s:%zu: \"acl\" must be an array of strings", path, lineno); break; }
            if (rc) { jsonl_free(v); break; }
        }
        nd++;
        if (nd == (size_t)batch) {
            /* acl pointer arrays, now that vals are stable */
            acl_n = 0;
            for (size_t i = 0; i < nd; i++) acl_n += (size_t)docs[i].n_acl;
            if (acl_n > acl_cap) { acl_cap = acl_n * 2; free(acls); acls = malloc(acl_cap * sizeof *acls); }
            if (!acls && acl_n) { rc = cli_fail("index", "out of memory"); break; }
            size_t a = 0;
            for (size_t i = 0; i < nd; i++) {
                const jv *ac = jsonl_get(&vals[i], "acl");
                docs[i].acl = acls + a;
                for (int j = 0; j < docs[i].n_acl; j++) acls[a++] = ac->items[j].str;
            }
            rc = add_batch(x, docs, nd, own, no);
            for (size_t i = 0; i < nd; i++) jsonl_free(&vals[i]);
            total += nd;
            nd = no = 0;
        }
    }
    if (rc == 0 && nd) {
        acl_n = 0;
        for (size_t i = 0; i < nd; i++) acl_n += (size_t)docs[i].n_acl;
        if (acl_n > acl_cap) { acl_cap = acl_n * 2; free(acls); acls = malloc(acl_cap * sizeof *acls); }
        if (!acls && acl_n) rc = cli_fail("index", "out of memory");
        size_t a = 0;
        for (size_t i = 0; i < nd && rc == 0; i++) {
            const jv *ac = jsonl_get(&vals[i], "acl");
            docs[i].acl = acls + a;
            for (int j = 0; j < docs[i].n_acl; j++) acls[a++] = ac->items[j].str;
        }
        if (rc == 0) rc = add_batch(x, docs, nd, own, no), no = 0;
        total += nd;
    }
    for (size_t i = 0; i < nd; i++) jsonl_free(&vals[i]);
    for (size_t i = 0; i < no; i++) free(own[i]);
out:
    free(acls);
    free(docs);
    free(vals);
    free(own);
    free(buf);
    (void)total;
    return rc;
}

static int index_add_files(rag_index *x, char **files, int n) {
    qerr e;
    for (int i = 0; i < n; i++) {
        char *buf;
        size_t len;
        if (q_read_file(files[i], &buf, &len, &e)) return cli_fail("index", "%s", e.msg);
        size_t fl = strlen(files[i]);
        bool md = (fl > 3 && !strcmp(files[i] + fl - 3, ".md")) || (fl > 9 && !strcmp(files[i] + fl - 9, ".markdown"));
        index_doc d = {.id = files[i], .text = buf, .text_len = len, .format = md ? CHUNK_MARKDOWN : CHUNK_TEXT};
        int rc = index_add(x, &d, 1, &e);
        free(buf);
        if (rc) return cli_fail("index", "%s: %s", files[i], e.msg);
    }
    return 0;
}

int cmd_index(int argc, char **argv) {
    if (argc < 3) return cli_fail("index", "usage: quire index add|rm|verify DB ... (see --help)");
    const char *sub = argv[1], *db = argv[2];
    qerr e;
    if (!strcmp(sub, "verify")) {
        if (argc != 3) return cli_fail("index", "usage: quire index verify DB");
        if (index_verify(db, &e)) { fprintf(stderr, "quire index: %s\n", e.msg); return EXIT_NEGATIVE; }
        printf("{\"ok\": true}\n");
        return EXIT_OK;
    }
    if (!strcmp(sub, "rm")) {
        if (argc != 4) return cli_fail("index", "usage: quire index rm DB ID");
        rag_index *x;
        if (index_open(&x, db, INDEX_WRITE, NULL, &e)) return cli_fail("index", "%s", e.msg);
        bool found;
        if (index_rm(x, argv[3], &found, &e)) { index_free(x); return cli_fail("index", "%s", e.msg); }
        if (index_close(x, &e)) return cli_fail("index", "%s", e.msg);
        if (!found) { fprintf(stderr, "quire index: no document '%s' in %s\n", argv[3], db); return EXIT_NEGATIVE; }
        printf("{\"removed\": 1}\n");
        return EXIT_OK;
    }
    if (strcmp(sub, "add") != 0) return cli_fail("index", "unknown subcommand '%s' (add, rm, verify)", sub);
    index_config cfg;
    index_config_default(&cfg);
    const char *jsonl = NULL, *model = NULL;
    long long threads = 0, batch = 256;
    bool cfg_given = false;
    char **files = calloc((size_t)argc, sizeof *files);
    int nf = 0;
    if (!files) return cli_fail("index", "out of memory");
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i], *v;
        long long n;
        double f;
        if (!strcmp(a, "--jsonl")) { if (!(jsonl = cli_value("index", argc, argv, &i))) { free(files); return EXIT_USAGE; } }
        else if (!strcmp(a, "--embed-model")) { if (!(model = cli_value("index", argc, argv, &i))) { free(files); return EXIT_USAGE; } }
        else if (!strcmp(a, "--chunk-tokens") || !strcmp(a, "--overlap") || !strcmp(a, "-t") || !strcmp(a, "--batch")) {
            if (!(v = cli_value("index", argc, argv, &i))) { free(files); return EXIT_USAGE; }
            if (!cli_parse_int(v, &n) || n < 0 || n > 1000000 || (n == 0 && !strcmp(a, "--batch"))) { free(files); return cli_fail("index", "bad value '%s' for %s", v, a); }
            if (!strcmp(a, "--chunk-tokens")) { cfg.chunk_tokens = (int)n; cfg_given = true; }
            else if (!strcmp(a, "--overlap")) { cfg.overlap = (int)n; cfg_given = true; }
            else if (!strcmp(a, "-t")) threads = n;
            else batch = n;
        } else if (!strcmp(a, "--k1") || !strcmp(a, "--b")) {
            if (!(v = cli_value("index", argc, argv, &i))) { free(files); return EXIT_USAGE; }
            if (!cli_parse_float(v, &f) || f < 0 || (!strcmp(a, "--b") && f > 1) || f > 100) { free(files); return cli_fail("index", "bad value '%s' for %s", v, a); }
            if (!strcmp(a, "--k1")) cfg.k1 = (float)f;
            else cfg.b = (float)f;
            cfg_given = true;
        } else if (!strcmp(a, "--multi-field")) { cfg.multi_field = true; cfg_given = true; }
        else if (a[0] == '-' && a[1]) { free(files); return cli_fail("index", "unknown argument '%s'", a); }
        else files[nf++] = argv[i];
    }
    if (!jsonl && nf == 0) { free(files); return cli_fail("index", "nothing to add: give --jsonl FILE or FILES"); }
    if (cfg.overlap && cfg.chunk_tokens && cfg.overlap >= cfg.chunk_tokens) { free(files); return cli_fail("index", "--overlap must be smaller than --chunk-tokens"); }
    if (model) {
        if (strlen(model) >= sizeof cfg.embed_model) { free(files); return cli_fail("index", "model path too long"); }
        snprintf(cfg.embed_model, sizeof cfg.embed_model, "%s", model);
        FILE *mf = fopen(model, "rb");
        if (!mf) { free(files); return cli_fail("index", "cannot open embedding model %s", model); }
        fclose(mf);
    }
    rag_index *x;
    if (index_open(&x, db, INDEX_CREATE, &cfg, &e)) { free(files); return cli_fail("index", "%s", e.msg); }
    const index_config *have = index_get_config(x);
    if ((model && strcmp(have->embed_model, cfg.embed_model) != 0) ||
        (cfg_given && (have->chunk_tokens != cfg.chunk_tokens || have->overlap != cfg.overlap || have->k1 != cfg.k1 ||
                       have->b != cfg.b || have->multi_field != cfg.multi_field))) {
        int rc = cli_fail("index", "%s exists with other settings (model '%s', chunk-tokens %d, overlap %d); they are fixed at creation",
                          db, have->embed_model, have->chunk_tokens, have->overlap);
        index_free(x);
        free(files);
        return rc;
    }
    if (threads) index_set_threads(x, (int)threads, &e);
    double t0 = q_now();
    size_t before = index_doc_count(x);
    int rc = jsonl ? index_add_jsonl(x, jsonl, batch) : 0;
    if (rc == 0 && nf) rc = index_add_files(x, files, nf);
    free(files);
    size_t docs = index_doc_count(x), chunks = index_chunk_count(x);
    if (index_close(x, &e)) return rc ? rc : cli_fail("index", "%s", e.msg);
    if (rc) return rc;
    printf("{\"documents\": %zu, \"chunks\": %zu, \"added\": %zd, \"seconds\": %.3f}\n", docs, chunks,
           (ssize_t)docs - (ssize_t)before, q_now() - t0);
    return EXIT_OK;
}
