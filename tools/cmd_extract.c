/* cmd_extract.c — `quire extract`: a document and a JSON Schema in, one JSON
 * document that conforms to the schema out, by constrained generation
 * (sgr/extract.c); and `quire eval extract`: the same over a folder of
 * labelled documents, with per-field exact match and F1, the share of valid
 * outputs and per-stage latency percentiles. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "models/models.h"
#include "sgr/sgr.h"
#include "tokenizer/tokenizer.h"

void help_extract(FILE *out) {
    fprintf(out,
            "usage: quire extract -m MODEL --schema SCHEMA.json (-p TEXT | -f DOC) [-n MAX_TOKENS] [--temp T]\n"
            "                     [--seed S] [--top-k K] [--top-p P] [--min-p P] [-t THREADS] [--system TEXT]\n"
            "                     [--chat-template chatml|FILE] [--raw] [--ws N] [--best-effort] [--profile]\n"
            "                     [--no-fast-forward] [--shortest] [--schema-in-prompt auto|full|bare|none]\n"
            "  Prints one JSON document that conforms to the schema, generated under the schema's grammar\n"
            "  within MAX_TOKENS tokens (default 256): when the budget runs short, only tokens that still\n"
            "  allow a complete document are sampled. The output is re-validated; exit 1 if it is not valid\n"
            "  (a bug), 2 for a schema keyword that cannot be enforced (named with its JSON pointer), a budget\n"
            "  too small for the shortest document, or bad input.\n"
            "  The prompt is the model's chat template (ChatML if none) with the instructions and the schema\n"
            "  as the system message and the document as the user message; --raw uses the document as the\n"
            "  whole prompt. Fields are generated in the schema's order, so schemas whose first fields are\n"
            "  reasoning steps (analysis -> checks -> answer) work as cascades. --schema-in-prompt: auto (default)\n"
            "  shows the schema whole, else without annotations (title, description, examples, ...), else not at\n"
            "  all, the first that fits the model's trained context with the budget (said on stderr).\n"
            "  --temp 0 (default) is greedy. --ws N allows up to N whitespace bytes between tokens (default 0:\n"
            "  compact). --best-effort skips keywords that cannot be enforced (listed on stderr) and relies\n"
            "  on the re-validation. --profile prints per-stage times to stderr.\n"
            "  Text the grammar forces (e.g. a required property's name) is appended without sampling and\n"
            "  evaluated in the same forward pass; --no-fast-forward samples it token by token.\n"
            "  --shortest prints {\"text\", \"bytes\", \"tokens\"}: the shortest valid document and the tokens it\n"
            "  takes in this model's vocabulary (the smallest -n that works), without generating.\n"
            "\n"
            "usage: quire eval extract -m MODEL --schema S --docs DIR --labels LABELS.jsonl [-n N] [--temp T]\n"
            "                          [--seed S] [-t THREADS] [--json]\n"
            "  LABELS.jsonl: one line per document {\"doc\": \"NAME\", \"label\": {...}} (NAME relative to DIR).\n"
            "  Reports per-field exact match and F1 (strings: token F1; arrays: item F1; others: exact), the\n"
            "  share of valid outputs and latency percentiles per stage.\n");
}

/* Everything an extraction needs that does not depend on the document. */
typedef struct xsetup {
    json *doc;
    schema *s;
    char *schema_text; size_t schema_len;
    char *schema_bare; size_t bare_len; /* without annotations (sgr_schema_prompt_text) */
    sgr_grammar *g;
    model *m;
    tokenizer *tok;
    sgr_vocab *v;
    char *tmpl;
    double t_load, t_compile, t_vocab;
} xsetup;

static void xsetup_free(xsetup *x) {
    sgr_vocab_free(x->v);
    if (x->tok) tokenizer_free(x->tok);
    if (x->m) model_free(x->m);
    sgr_grammar_free(x->g);
    if (x->s) schema_free(x->s);
    json_free(x->doc);
    free(x->schema_text);
    free(x->schema_bare);
    free(x->tmpl);
}

static int xsetup_init(xsetup *x, const char *cmd, const char *mpath, const char *spath, const char *tmpl_arg,
                       const sgr_schema_opts *so) {
    qerr e;
    memset(x, 0, sizeof *x);
    double t0 = q_now();
    if (cli_load_json(spath, &x->doc, &e)) return cli_fail(cmd, "%s", e.msg);
    char base[4200];
    char *abs = realpath(spath, NULL);
    snprintf(base, sizeof base, "file://%s", abs ? abs : spath);
    free(abs);
    schema_opts sco = {.load = cli_schema_file_loader, .base_uri = base};
    if (schema_compile(x->doc, &sco, &x->s, &e)) return cli_fail(cmd, "%s: %s", spath, e.msg);
    if (json_serialize(x->doc, NULL, &x->schema_text, &x->schema_len, &e)) return cli_fail(cmd, "%s", e.msg);
    if (sgr_schema_prompt_text(x->doc, &x->schema_bare, &x->bare_len, &e)) return cli_fail(cmd, "%s", e.msg);
    sgr_gb *b = sgr_gb_new(NULL);
    if (!b) return cli_fail(cmd, "out of memory");
    sgr_unenforced *sk = NULL;
    size_t nsk = 0;
    int32_t start = sgr_schema_to_grammar(x->s, so, b, &sk, &nsk, &e);
    for (size_t i = 0; i < nsk; i++)
        fprintf(stderr, "quire %s: not enforced (best effort): %s at %s\n", cmd, sk[i].keyword, sk[i].pointer);
    free(sk);
    if (start < 0) { sgr_gb_free(b); return cli_fail(cmd, "%s: %s", spath, e.msg); }
    int rc = sgr_grammar_build(b, start, &x->g, &e);
    sgr_gb_free(b);
    if (rc) return cli_fail(cmd, "%s: %s", spath, e.msg);
    x->t_compile = q_now() - t0;

    t0 = q_now();
    if (model_load(&x->m, mpath, &e)) return cli_fail(cmd, "%s", e.msg);
    if (tokenizer_load(&x->tok, x->m->g, &e)) return cli_fail(cmd, "%s: %s", mpath, e.msg);
    x->t_load = q_now() - t0;
    t0 = q_now();
    if (sgr_vocab_new(x->tok, &x->v, &e)) return cli_fail(cmd, "%s: %s", mpath, e.msg);
    x->t_vocab = q_now() - t0;
    if (tmpl_arg && strcmp(tmpl_arg, "chatml") != 0) {
        size_t n;
        if (q_read_file(tmpl_arg, &x->tmpl, &n, &e)) return cli_fail(cmd, "%s", e.msg);
    } else if (tmpl_arg) {
        x->tmpl = strdup(chat_template_chatml);
    }
    return EXIT_OK;
}

static int prompt_tokens(const tokenizer *t, const char *p, size_t n, size_t *count, qerr *e) {
    int32_t *ids = NULL;
    if (tokenizer_encode(t, p, n, true, true, &ids, count, e)) return -1;
    free(ids);
    return 0;
}

/* How much of the schema the prompt shows (--schema-in-prompt). */
enum { SP_AUTO, SP_FULL, SP_BARE, SP_NONE };
static const char *const sp_names[] = {"auto", "full", "bare", "none"};
static const char sp_none_text[] = "(not shown: the decoder enforces it)";

/* The prompt and its token count. SP_AUTO takes the first of full, bare
 * (no annotations) and none whose prompt plus the budget fits the model's
 * trained context, and says on stderr when it had to shorten: a short-context
 * model would otherwise run far past what it was trained on (and prefill
 * cost grows with the square of the prompt). */
static int build_prompt(const char *cmd, xsetup *x, bool raw, int mode, long long n_predict, const char *system,
                        const char *doc, size_t doc_len, char **out, size_t *out_len, size_t *n_tok, qerr *e) {
    if (raw) {
        *out = malloc(doc_len + 1);
        if (!*out) return qerr_set(e, "out of memory");
        memcpy(*out, doc, doc_len);
        (*out)[doc_len] = 0;
        *out_len = doc_len;
        return prompt_tokens(x->tok, *out, *out_len, n_tok, e);
    }
    long long ctx = x->m->hp.n_ctx_train;
    int first = mode == SP_AUTO ? SP_FULL : mode, last = mode == SP_AUTO ? SP_NONE : mode;
    size_t full_tok = 0;
    for (int k = first; k <= last; k++) {
        const char *st = k == SP_FULL ? x->schema_text : k == SP_BARE ? x->schema_bare : sp_none_text;
        size_t sl = k == SP_FULL ? x->schema_len : k == SP_BARE ? x->bare_len : strlen(sp_none_text);
        if (sgr_extract_prompt(x->tok, x->tmpl, system, st, sl, doc, doc_len, out, out_len, e)) return -1;
        if (prompt_tokens(x->tok, *out, *out_len, n_tok, e)) { free(*out); *out = NULL; return -1; }
        if (k == SP_FULL) full_tok = *n_tok;
        bool fits = ctx <= 0 || (long long)*n_tok + n_predict + 1 <= ctx;
        if (fits || k == last) {
            if (mode == SP_AUTO && k != SP_FULL)
                fprintf(stderr,
                        "quire %s: the prompt with the whole schema is %zu tokens; with -n %lld it exceeds the model's "
                        "context of %lld, so the schema is shown %s (%zu tokens; --schema-in-prompt full keeps it)\n",
                        cmd, full_tok, n_predict, ctx, k == SP_BARE ? "without annotations" : "not at all", *n_tok);
            if (!fits)
                fprintf(stderr, "quire %s: %zu prompt tokens + -n %lld exceed the model's trained context of %lld: the "
                                "output stays valid (the grammar), its quality may not\n",
                        cmd, *n_tok, n_predict, ctx);
            return 0;
        }
        free(*out);
        *out = NULL;
    }
    return qerr_set(e, "no prompt"); /* not reached */
}

typedef struct xargs {
    const char *mpath, *spath, *prompt, *pfile, *system, *tmpl, *docs, *labels;
    long long n_predict, threads;
    int schema_in_prompt;
    sampler_params sp;
    bool raw, profile, json_out, shortest, no_ff;
    sgr_schema_opts so;
} xargs;

static int parse_args(const char *cmd, int argc, char **argv, int first, xargs *a) {
    memset(a, 0, sizeof *a);
    a->n_predict = 256;
    a->threads = 0;
    a->sp = sampler_defaults();
    a->sp.temp = 0;
    bool seed_given = false;
    for (int i = first; i < argc; i++) {
        const char *o = argv[i], *v;
        double d;
        long long n;
#define VAL() do { if (!(v = cli_value(cmd, argc, argv, &i))) return EXIT_USAGE; } while (0)
        if (!strcmp(o, "-m")) { VAL(); a->mpath = v; }
        else if (!strcmp(o, "--schema")) { VAL(); a->spath = v; }
        else if (!strcmp(o, "-p")) { VAL(); a->prompt = v; }
        else if (!strcmp(o, "-f")) { VAL(); a->pfile = v; }
        else if (!strcmp(o, "--docs")) { VAL(); a->docs = v; }
        else if (!strcmp(o, "--labels")) { VAL(); a->labels = v; }
        else if (!strcmp(o, "--system")) { VAL(); a->system = v; }
        else if (!strcmp(o, "--chat-template")) { VAL(); a->tmpl = v; }
        else if (!strcmp(o, "-n")) {
            VAL();
            if (!cli_parse_int(v, &n) || n < 1 || n > 1 << 20) return cli_fail(cmd, "bad -n '%s' (1..1048576)", v);
            a->n_predict = n;
        } else if (!strcmp(o, "-t")) {
            VAL();
            if (!cli_parse_int(v, &n) || n < 0 || n > 1024) return cli_fail(cmd, "bad -t '%s'", v);
            a->threads = n;
        } else if (!strcmp(o, "--ws")) {
            VAL();
            if (!cli_parse_int(v, &n) || n < 0 || n > 64) return cli_fail(cmd, "bad --ws '%s' (0..64)", v);
            a->so.ws = (int)n;
        } else if (!strcmp(o, "--temp") || !strcmp(o, "--top-p") || !strcmp(o, "--min-p")) {
            VAL();
            if (!cli_parse_float(v, &d) || !(d >= 0) || d > 1e6) return cli_fail(cmd, "bad %s '%s'", o, v);
            if (!strcmp(o, "--temp")) a->sp.temp = (float)d;
            else if (!strcmp(o, "--top-p")) a->sp.top_p = (float)d;
            else a->sp.min_p = (float)d;
        } else if (!strcmp(o, "--top-k")) {
            VAL();
            if (!cli_parse_int(v, &n) || n < 0 || n > 1 << 30) return cli_fail(cmd, "bad --top-k '%s'", v);
            a->sp.top_k = (int)n;
        } else if (!strcmp(o, "--seed")) {
            VAL();
            char *end;
            unsigned long long s = strtoull(v, &end, 10);
            if (end == v || *end) return cli_fail(cmd, "bad seed '%s'", v);
            a->sp.seed = s;
            seed_given = true;
        } else if (!strcmp(o, "--schema-in-prompt")) {
            VAL();
            int k = 0;
            while (k < 4 && strcmp(v, sp_names[k]) != 0) k++;
            if (k == 4) return cli_fail(cmd, "bad --schema-in-prompt '%s' (auto, full, bare or none)", v);
            a->schema_in_prompt = k;
        } else if (!strcmp(o, "--raw")) a->raw = true;
        else if (!strcmp(o, "--best-effort")) a->so.best_effort = true;
        else if (!strcmp(o, "--shortest")) a->shortest = true;
        else if (!strcmp(o, "--no-fast-forward")) a->no_ff = true;
        else if (!strcmp(o, "--profile")) a->profile = true;
        else if (!strcmp(o, "--json")) a->json_out = true;
        else return cli_fail(cmd, "unknown argument '%s'", o);
#undef VAL
    }
    if (!seed_given) a->sp.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    if (!a->mpath) return cli_fail(cmd, "no model given (-m MODEL)");
    if (!a->spath) return cli_fail(cmd, "no schema given (--schema SCHEMA.json)");
    return EXIT_OK;
}

static void profile_line(const char *stage, double s) { fprintf(stderr, "  %-12s %10.3f ms\n", stage, s * 1e3); }

int cmd_extract(int argc, char **argv) {
    xargs a;
    int rc = parse_args("extract", argc, argv, 1, &a);
    if (rc) return rc;
    if (!a.prompt && !a.pfile && !a.shortest) return cli_fail("extract", "no document given (-p TEXT or -f DOC)");
    if (a.prompt && a.pfile) return cli_fail("extract", "give -p or -f, not both");
    if (a.docs || a.labels) return cli_fail("extract", "--docs/--labels belong to `quire eval extract`");
    qerr e;
    char *fbuf = NULL;
    size_t dlen = 0;
    const char *doc = a.prompt;
    if (a.pfile) {
        if (q_read_file(a.pfile, &fbuf, &dlen, &e)) return cli_fail("extract", "%s", e.msg);
        doc = fbuf;
    } else if (doc) {
        dlen = strlen(doc);
    }
    xsetup x;
    rc = xsetup_init(&x, "extract", a.mpath, a.spath, a.tmpl, &a.so);
    if (!rc && a.shortest) {
        char *txt;
        size_t tl;
        int nt;
        if (sgr_extract_shortest(x.g, x.v, x.tok, &txt, &tl, &nt, &e)) rc = cli_fail("extract", "%s", e.msg);
        else {
            jw w;
            jw_init(&w, stdout);
            jw_obj_begin(&w);
            jw_key(&w, "text"); jw_strn(&w, txt, tl);
            jw_key(&w, "bytes"); jw_int(&w, (long long)tl);
            jw_key(&w, "tokens"); jw_int(&w, nt);
            jw_obj_end(&w);
            free(txt);
        }
        xsetup_free(&x);
        free(fbuf);
        return rc;
    }
    char *prompt = NULL;
    size_t plen = 0, n_ptok = 0;
    if (!rc && build_prompt("extract", &x, a.raw, a.schema_in_prompt, a.n_predict, a.system, doc, dlen, &prompt, &plen,
                            &n_ptok, &e))
        rc = cli_fail("extract", "%s", e.msg);
    model_ctx ctx;
    bool have_ctx = false;
    if (!rc) {
        model_ctx_params cp = {.n_ctx = (int)n_ptok + (int)a.n_predict + 1, .n_seq = 1, .n_threads = (int)a.threads};
        if (model_ctx_init(&ctx, x.m, &cp, &e)) rc = cli_fail("extract", "%s", e.msg);
        else have_ctx = true;
    }
    if (!rc) {
        sgr_extract_opts xo = {.n_predict = (int)a.n_predict, .sp = a.sp, .no_fast_forward = a.no_ff};
        sgr_extract_result r;
        double t0 = q_now();
        if (sgr_extract_run(&ctx, x.tok, x.g, x.v, x.s, prompt, plen, &xo, &r, &e)) {
            rc = cli_fail("extract", "%s", e.msg);
        } else {
            double t_total = q_now() - t0;
            fwrite(r.json, 1, r.len, stdout);
            fputc('\n', stdout);
            fflush(stdout);
            if (!r.valid) {
                fprintf(stderr, "quire extract: the output does not conform: %s\n", r.verr);
                rc = EXIT_NEGATIVE;
            }
            if (a.profile) {
                fprintf(stderr, "quire extract: %d prompt tokens, %d generated (%d fast-forwarded; %s), %d budget redraws\n",
                        r.n_prompt, r.n_gen, r.n_forced, r.stop_reason, r.n_resample);
                profile_line("load", x.t_load);
                profile_line("compile", x.t_compile);
                profile_line("vocab", x.t_vocab);
                profile_line("tokenize", r.t_tokenize);
                profile_line("prefill", r.t_prefill);
                profile_line("decode", r.t_decode);
                profile_line("grammar", r.t_mask);
                profile_line("budget", r.t_budget);
                profile_line("forced", r.t_forced);
                profile_line("sample", r.t_sample);
                profile_line("detokenize", r.t_detokenize);
                profile_line("total", t_total);
                if (r.n_gen) fprintf(stderr, "  grammar per token %.1f us\n", r.t_mask / r.n_gen * 1e6);
            }
            sgr_extract_result_free(&r);
        }
    }
    if (have_ctx) model_ctx_free(&ctx);
    free(prompt);
    xsetup_free(&x);
    free(fbuf);
    return rc;
}

/* ---- quire eval extract --------------------------------------------------- */

typedef struct field_stat {
    char *ptr;
    int n;
    double em, f1;
} field_stat;

typedef struct fstats {
    field_stat *f;
    size_t n, cap;
} fstats;

static field_stat *field_get(fstats *fs, const char *ptr) {
    for (size_t i = 0; i < fs->n; i++)
        if (!strcmp(fs->f[i].ptr, ptr)) return &fs->f[i];
    if (fs->n == fs->cap) {
        size_t nc = fs->cap ? fs->cap * 2 : 16;
        field_stat *p = realloc(fs->f, nc * sizeof *p);
        if (!p) return NULL;
        fs->f = p;
        fs->cap = nc;
    }
    char *d = strdup(ptr);
    if (!d) return NULL;
    fs->f[fs->n] = (field_stat){d, 0, 0, 0};
    return &fs->f[fs->n++];
}

/* Lower-cased ASCII-alphanumeric words (other bytes, e.g. UTF-8, stay part
 * of a word): the SQuAD-style token F1 of two strings. */
static size_t words(const char *s, size_t n, char (*w)[64], size_t max) {
    size_t k = 0, i = 0;
    while (i < n && k < max) {
        while (i < n && (unsigned char)s[i] < 0x80 && !isalnum((unsigned char)s[i])) i++;
        size_t L = 0;
        while (i < n && ((unsigned char)s[i] >= 0x80 || isalnum((unsigned char)s[i]))) {
            if (L < 63) w[k][L++] = (char)tolower((unsigned char)s[i]);
            i++;
        }
        if (L) w[k][L] = 0, k++;
    }
    return k;
}

static double f1_counts(size_t match, size_t np, size_t ng) {
    if (np == 0 && ng == 0) return 1.0;
    if (match == 0) return 0.0;
    double p = (double)match / (double)np, r = (double)match / (double)ng;
    return 2 * p * r / (p + r);
}

static double value_f1(const json *pred, const json *gold) {
    if (!pred) return 0.0;
    if (json_is_string(pred) && json_is_string(gold)) {
        static char wp[512][64], wg[512][64];
        size_t np = words(json_string(pred), json_string_len(pred), wp, 512);
        size_t ng = words(json_string(gold), json_string_len(gold), wg, 512);
        bool used[512] = {0};
        size_t match = 0;
        for (size_t i = 0; i < np; i++)
            for (size_t j = 0; j < ng; j++)
                if (!used[j] && !strcmp(wp[i], wg[j])) { used[j] = true; match++; break; }
        return f1_counts(match, np, ng);
    }
    if (json_is_array(pred) && json_is_array(gold)) {
        size_t np = json_size(pred), ng = json_size(gold), match = 0;
        bool *used = calloc(ng + 1, 1);
        if (!used) return 0.0;
        for (size_t i = 0; i < np; i++)
            for (size_t j = 0; j < ng; j++)
                if (!used[j] && json_equal(json_at(pred, i), json_at(gold, j))) { used[j] = true; match++; break; }
        free(used);
        return f1_counts(match, np, ng);
    }
    return json_equal(pred, gold) ? 1.0 : 0.0;
}

/* Scores every leaf of the label (objects recurse; arrays and scalars are
 * leaves) against the prediction at the same JSON pointer. */
static int score_fields(fstats *fs, const json *gold, const json *pred_root, char *ptr, size_t plen) {
    if (json_is_object(gold) && json_size(gold) > 0) {
        for (size_t i = 0; i < gold->u.obj.n; i++) {
            const json_member *mb = &gold->u.obj.m[i];
            size_t L = plen;
            if (L + 2 + mb->klen * 2 >= 1024) continue;
            ptr[L++] = '/';
            for (size_t k = 0; k < mb->klen; k++) {
                if (mb->key[k] == '~') ptr[L++] = '~', ptr[L++] = '0';
                else if (mb->key[k] == '/') ptr[L++] = '~', ptr[L++] = '1';
                else ptr[L++] = mb->key[k];
            }
            ptr[L] = 0;
            if (score_fields(fs, mb->val, pred_root, ptr, L)) return -1;
            ptr[plen] = 0;
        }
        return 0;
    }
    field_stat *f = field_get(fs, plen ? ptr : "/");
    if (!f) return -1;
    const json *pred = pred_root ? json_pointer_get(pred_root, ptr, plen) : NULL;
    f->n++;
    f->em += pred && json_equal(pred, gold) ? 1.0 : 0.0;
    f->f1 += value_f1(pred, gold);
    return 0;
}

static int dcmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p) {
    if (!n) return 0;
    qsort(v, n, sizeof *v, dcmp);
    size_t i = (size_t)ceil(p * (double)n) - 1;
    if (i >= n) i = n - 1;
    return v[i];
}

typedef struct label_line {
    char *doc;
    json *label;
} label_line;

int eval_extract(int argc, char **argv) {
    xargs a;
    int rc = parse_args("eval extract", argc, argv, 2, &a);
    if (rc) return rc;
    if (!a.docs || !a.labels) return cli_fail("eval extract", "need --docs DIR and --labels LABELS.jsonl");
    if (a.prompt || a.pfile) return cli_fail("eval extract", "-p/-f belong to `quire extract`");
    qerr e;
    char *lbuf;
    size_t llen;
    if (q_read_file(a.labels, &lbuf, &llen, &e)) return cli_fail("eval extract", "%s", e.msg);
    label_line *L = NULL;
    size_t nl = 0, capl = 0, pos = 0, lineno = 0;
    rc = EXIT_OK;
    while (pos < llen && rc == EXIT_OK) {
        size_t end = pos;
        while (end < llen && lbuf[end] != '\n') end++;
        lineno++;
        size_t s0 = pos;
        pos = end + 1;
        while (s0 < end && isspace((unsigned char)lbuf[s0])) s0++;
        if (s0 == end) continue;
        json *j;
        if (json_parse(lbuf + s0, end - s0, NULL, &j, &e)) { rc = cli_fail("eval extract", "%s:%zu: %s", a.labels, lineno, e.msg); break; }
        const json *d = json_get(j, "doc"), *lab = json_get(j, "label");
        if (!json_is_string(d) || !lab) {
            json_free(j);
            rc = cli_fail("eval extract", "%s:%zu: each line needs \"doc\" (a file name) and \"label\"", a.labels, lineno);
            break;
        }
        if (nl == capl) {
            capl = capl ? capl * 2 : 16;
            label_line *p = realloc(L, capl * sizeof *p);
            if (!p) { json_free(j); rc = cli_fail("eval extract", "out of memory"); break; }
            L = p;
        }
        L[nl].doc = strdup(json_string(d));
        L[nl].label = json_clone(lab);
        json_free(j);
        if (!L[nl].doc || !L[nl].label) { rc = cli_fail("eval extract", "out of memory"); free(L[nl].doc); json_free(L[nl].label); break; }
        nl++;
    }
    free(lbuf);
    if (rc == EXIT_OK && nl == 0) rc = cli_fail("eval extract", "%s: no labelled documents", a.labels);

    xsetup x;
    memset(&x, 0, sizeof x);
    char **prompts = calloc(nl + 1, sizeof *prompts);
    size_t *plens = calloc(nl + 1, sizeof *plens);
    if (!prompts || !plens) rc = cli_fail("eval extract", "out of memory");
    if (rc == EXIT_OK) rc = xsetup_init(&x, "eval extract", a.mpath, a.spath, a.tmpl, &a.so);
    size_t max_ptok = 0;
    for (size_t i = 0; i < nl && rc == EXIT_OK; i++) {
        char path[4096], *doc;
        size_t dl, nt;
        snprintf(path, sizeof path, "%s/%s", a.docs, L[i].doc);
        if (q_read_file(path, &doc, &dl, &e)) { rc = cli_fail("eval extract", "%s", e.msg); break; }
        int r1 = build_prompt("eval extract", &x, a.raw, a.schema_in_prompt, a.n_predict, a.system, doc, dl, &prompts[i],
                              &plens[i], &nt, &e);
        free(doc);
        if (r1) { rc = cli_fail("eval extract", "%s: %s", path, e.msg); break; }
        if (nt > max_ptok) max_ptok = nt;
    }
    model_ctx ctx;
    bool have_ctx = false;
    if (rc == EXIT_OK) {
        model_ctx_params cp = {.n_ctx = (int)max_ptok + (int)a.n_predict + 1, .n_seq = 1, .n_threads = (int)a.threads};
        if (model_ctx_init(&ctx, x.m, &cp, &e)) rc = cli_fail("eval extract", "%s", e.msg);
        else have_ctx = true;
    }
    fstats fs = {0};
    size_t n_valid = 0, n_done = 0;
    double *lat[5];
    for (int k = 0; k < 5; k++) lat[k] = calloc(nl + 1, sizeof(double));
    static const char *stage_names[5] = {"total", "prefill", "decode", "grammar", "grammar/token"};
    for (size_t i = 0; i < nl && rc == EXIT_OK; i++) {
        kv_cache_seq_truncate(&ctx.kv, 0, 0);
        sgr_extract_opts xo = {.n_predict = (int)a.n_predict, .sp = a.sp, .no_fast_forward = a.no_ff};
        xo.sp.seed = a.sp.seed + i;
        sgr_extract_result r;
        json *pred = NULL;
        double t0 = q_now();
        char ptr[1024] = "";
        if (sgr_extract_run(&ctx, x.tok, x.g, x.v, x.s, prompts[i], plens[i], &xo, &r, &e)) {
            fprintf(stderr, "quire eval extract: %s: %s\n", L[i].doc, e.msg);
            if (score_fields(&fs, L[i].label, NULL, ptr, 0)) rc = cli_fail("eval extract", "out of memory");
            continue;
        }
        double t = q_now() - t0;
        lat[0][n_done] = t;
        lat[1][n_done] = r.t_prefill;
        lat[2][n_done] = r.t_decode;
        lat[3][n_done] = r.t_mask;
        lat[4][n_done] = r.n_gen ? r.t_mask / r.n_gen : 0;
        n_done++;
        qerr pe;
        if (r.valid) {
            n_valid++;
            if (json_parse(r.json, r.len, NULL, &pred, &pe)) pred = NULL;
        } else {
            fprintf(stderr, "quire eval extract: %s: invalid output: %s\n", L[i].doc, r.verr);
        }
        if (score_fields(&fs, L[i].label, pred, ptr, 0)) rc = cli_fail("eval extract", "out of memory");
        json_free(pred);
        sgr_extract_result_free(&r);
    }
    if (rc == EXIT_OK) {
        double em = 0, f1 = 0;
        int nf = 0;
        for (size_t i = 0; i < fs.n; i++) em += fs.f[i].em, f1 += fs.f[i].f1, nf += fs.f[i].n;
        double pc[5][3];
        for (int k = 0; k < 5; k++) {
            pc[k][0] = pct(lat[k], n_done, 0.5);
            pc[k][1] = pct(lat[k], n_done, 0.9);
            pc[k][2] = pct(lat[k], n_done, 0.99);
        }
        if (a.json_out) {
            jw w;
            jw_init(&w, stdout);
            jw_obj_begin(&w);
            jw_key(&w, "n_docs"); jw_int(&w, (long long)nl);
            jw_key(&w, "valid_share"); jw_num(&w, (double)n_valid / (double)nl);
            jw_key(&w, "exact"); jw_num(&w, nf ? em / nf : 0);
            jw_key(&w, "f1"); jw_num(&w, nf ? f1 / nf : 0);
            jw_key(&w, "fields");
            jw_obj_begin(&w);
            for (size_t i = 0; i < fs.n; i++) {
                jw_key(&w, fs.f[i].ptr);
                jw_obj_begin(&w);
                jw_key(&w, "n"); jw_int(&w, fs.f[i].n);
                jw_key(&w, "exact"); jw_num(&w, fs.f[i].em / fs.f[i].n);
                jw_key(&w, "f1"); jw_num(&w, fs.f[i].f1 / fs.f[i].n);
                jw_obj_end(&w);
            }
            jw_obj_end(&w);
            jw_key(&w, "latency_s");
            jw_obj_begin(&w);
            for (int k = 0; k < 5; k++) {
                jw_key(&w, stage_names[k]);
                jw_obj_begin(&w);
                jw_key(&w, "p50"); jw_num(&w, pc[k][0]);
                jw_key(&w, "p90"); jw_num(&w, pc[k][1]);
                jw_key(&w, "p99"); jw_num(&w, pc[k][2]);
                jw_obj_end(&w);
            }
            jw_obj_end(&w);
            jw_obj_end(&w);
        } else {
            printf("%-32s %6s %8s %8s\n", "field", "n", "exact", "F1");
            for (size_t i = 0; i < fs.n; i++)
                printf("%-32s %6d %8.3f %8.3f\n", fs.f[i].ptr, fs.f[i].n, fs.f[i].em / fs.f[i].n, fs.f[i].f1 / fs.f[i].n);
            printf("%-32s %6d %8.3f %8.3f\n", "all fields (micro)", nf, nf ? em / nf : 0, nf ? f1 / nf : 0);
            printf("valid outputs: %zu/%zu (%.1f%%)\n\n", n_valid, nl, 100.0 * (double)n_valid / (double)nl);
            printf("%-16s %10s %10s %10s\n", "stage", "p50 ms", "p90 ms", "p99 ms");
            for (int k = 0; k < 5; k++)
                printf("%-16s %10.3f %10.3f %10.3f\n", stage_names[k], pc[k][0] * 1e3, pc[k][1] * 1e3, pc[k][2] * 1e3);
        }
    }
    for (int k = 0; k < 5; k++) free(lat[k]);
    for (size_t i = 0; i < fs.n; i++) free(fs.f[i].ptr);
    free(fs.f);
    if (have_ctx) model_ctx_free(&ctx);
    for (size_t i = 0; i < nl; i++) {
        free(L[i].doc);
        json_free(L[i].label);
        if (prompts) free(prompts[i]);
    }
    free(L);
    free(prompts);
    free(plens);
    xsetup_free(&x);
    return rc;
}
