/* cmd_schema.c — `quire schema validate SCHEMA INSTANCE`, `quire schema
 * check SCHEMA` (can the grammar compiler enforce it?) and `quire schema
 * check --stats DIR...` (coverage over a corpus of schemas). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sgr/sgr.h"

void help_schema(FILE *out) {
    fprintf(out, "usage: quire schema validate SCHEMA.json INSTANCE.json [--assert-format]\n"
                 "       quire schema check SCHEMA.json [--best-effort] [--grammar] [--ws N] [--strict-keywords]\n"
                 "       quire schema check --stats DIR... [--best-effort]\n"
                 "  validate  exit 0 when the instance is valid, 1 when it is not (stderr names the\n"
                 "            JSON pointer of the first error and the keyword that failed), 2 on bad\n"
                 "            input (unreadable or malformed JSON, a schema that does not compile)\n"
                 "  check     exit 0 when every keyword of the schema is supported by the validator and\n"
                 "            enforced by the constrained-decoding grammar, 2 naming the first unsupported\n"
                 "            keyword and the JSON pointer of the schema object holding it. Words that are\n"
                 "            not JSON Schema keywords (vendor extensions such as \"x-foo\", \"example\") and\n"
                 "            unknown format values are annotations: listed on stderr, not refused\n"
                 "            (draft 2020-12 treats both as annotations), unless --strict-keywords\n"
                 "  --best-effort  skip keywords the grammar cannot enforce and list them (exit 0)\n"
                 "  --grammar      print the compiled grammar (one rule per line) to stdout\n"
                 "  --ws N         allow up to N spaces/newlines between tokens (default 0: compact)\n"
                 "  --stats DIR... compile every *.json under each DIR (the \"schema\" member of a\n"
                 "            JSONSchemaBench file, else the document) and print per directory JSON:\n"
                 "            supported/total, the most common reasons, the slowest compile\n"
                 "  --assert-format  treat \"format\" as an assertion (by default an annotation)\n"
                 "  JSON Schema draft 2020-12, plus drafts 4-7 ($schema selects); remote $refs are\n"
                 "  resolved only to files: a URI file:///path or a relative reference is read from\n"
                 "  disk relative to the schema file.\n");
}

typedef struct reason { char text[96]; int count; } reason;

static int reason_cmp(const void *a, const void *b) {
    const reason *x = a, *y = b;
    return y->count - x->count;
}

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Words that are not JSON Schema keywords ("esriDocumentation", "_format",
 * "example") and format values outside the known set are annotations:
 * 2020-12 says to collect, not assert, them, and every validator ignores
 * them — so they are listed, not refused. Keywords that assert something in
 * another draft or vocabulary, and unknown formats under --assert-format,
 * are refused; --strict-keywords refuses every unknown word. Returns the
 * index in s->unknown of the first refused word, or -1. */
static long unknown_refused(const schema *s, bool strict_keywords, bool assert_format) {
    static const char *const asserting[] = {"divisibleBy", "disallow", "extends", "$recursiveRef", "optional", NULL};
    for (size_t i = 0; i < s->n_unknown; i++) {
        const char *kw = s->unknown[i].keyword;
        bool fmt = strncmp(kw, "format \"", 8) == 0; /* a format value it cannot check */
        bool refuse = strict_keywords || (fmt && assert_format);
        for (int k = 0; asserting[k] && !fmt; k++) refuse |= strcmp(kw, asserting[k]) == 0;
        if (refuse) return (long)i;
    }
    return -1;
}

/* Compiles one schema document to a grammar as `schema check` does (words
 * it refuses included); returns 0 supported, 1 not (why set), -1 the
 * schema itself does not compile (why set). */
static int grammar_one(const json *doc, const sgr_schema_opts *go, char *why, size_t whyn, size_t *rules) {
    schema_opts so = {0};
    schema *s;
    qerr e;
    if (schema_compile(doc, &so, &s, &e)) { snprintf(why, whyn, "%s", e.msg); return -1; }
    long r = go->best_effort ? -1 : unknown_refused(s, false, false);
    if (r >= 0) {
        snprintf(why, whyn, "unsupported keyword \"%s\" at %s", s->unknown[r].keyword,
                 s->unknown[r].pointer[0] ? s->unknown[r].pointer : "/");
        schema_free(s);
        return 1;
    }
    sgr_gb *b = sgr_gb_new(NULL);
    sgr_unenforced *sk = NULL;
    size_t nsk = 0;
    int rc = 0;
    if (!b) { snprintf(why, whyn, "out of memory"); schema_free(s); return -1; }
    if (sgr_schema_to_grammar(s, go, b, &sk, &nsk, &e) < 0) { snprintf(why, whyn, "%s", e.msg); rc = 1; }
    if (rules) *rules = sgr_gb_n_rules(b);
    free(sk);
    sgr_gb_free(b);
    schema_free(s);
    return rc;
}

static int schema_stats(char **dirs, int nd, const sgr_schema_opts *go) {
    jw w;
    jw_init(&w, stdout);
    jw_obj_begin(&w);
    jw_key(&w, "splits");
    jw_arr_begin(&w);
    for (int d = 0; d < nd; d++) {
        DIR *dh = opendir(dirs[d]);
        if (!dh) return cli_fail("schema", "cannot open directory %s", dirs[d]);
        char **names = NULL;
        size_t nn = 0, capn = 0;
        struct dirent *de;
        while ((de = readdir(dh))) {
            size_t l = strlen(de->d_name);
            if (l < 6 || strcmp(de->d_name + l - 5, ".json")) continue;
            if (nn == capn) { capn = capn ? capn * 2 : 256; names = realloc(names, capn * sizeof *names); if (!names) abort(); }
            names[nn++] = strdup(de->d_name);
        }
        closedir(dh);
        qsort(names, nn, sizeof *names, name_cmp);
        reason *rs = NULL;
        size_t nr = 0, capr = 0;
        int total = 0, ok = 0, bad_schema = 0;
        double slowest = 0, sum = 0;
        char slowest_file[256] = "";
        for (size_t i = 0; i < nn; i++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", dirs[d], names[i]);
            json *doc = NULL;
            qerr e;
            if (cli_load_json(path, &doc, &e)) { bad_schema++; total++; continue; }
            const json *sch = json_get(doc, "schema");
            if (!sch || !json_is_object(doc) || !json_get(doc, "tests")) sch = doc;
            char why[512];
            double t0 = q_now();
            int r = grammar_one(sch, go, why, sizeof why, NULL);
            double dt = q_now() - t0;
            json_free(doc);
            total++;
            sum += dt;
            if (dt > slowest) { slowest = dt; snprintf(slowest_file, sizeof slowest_file, "%s", names[i]); }
            if (r == 0) { ok++; continue; }
            if (r < 0) { bad_schema++; snprintf(why, sizeof why, "schema does not compile"); }
            /* the reason without its location */
            char *at = strstr(why, " at ");
            if (at) *at = 0;
            char *ws = why;
            if (!strncmp(ws, "unsupported: ", 13)) ws += 13;
            size_t k;
            for (k = 0; k < nr; k++) if (!strncmp(rs[k].text, ws, sizeof rs[k].text - 1)) break;
            if (k == nr) {
                if (nr == capr) { capr = capr ? capr * 2 : 16; rs = realloc(rs, capr * sizeof *rs); if (!rs) abort(); }
                snprintf(rs[nr].text, sizeof rs[nr].text, "%.95s", ws);
                rs[nr++].count = 0;
            }
            rs[k].count++;
        }
        if (nr) qsort(rs, nr, sizeof *rs, reason_cmp);
        jw_obj_begin(&w);
        jw_key(&w, "dir"); jw_str(&w, dirs[d]);
        jw_key(&w, "total"); jw_int(&w, total);
        jw_key(&w, "supported"); jw_int(&w, ok);
        jw_key(&w, "schema_errors"); jw_int(&w, bad_schema);
        jw_key(&w, "supported_pct"); jw_num(&w, total ? 100.0 * ok / total : 0);
        jw_key(&w, "mean_compile_ms"); jw_num(&w, total ? 1000 * sum / total : 0);
        jw_key(&w, "slowest_compile_ms"); jw_num(&w, 1000 * slowest);
        jw_key(&w, "slowest_file"); jw_str(&w, slowest_file);
        jw_key(&w, "reasons");
        jw_arr_begin(&w);
        for (size_t k = 0; k < nr && k < 12; k++) {
            jw_obj_begin(&w);
            jw_key(&w, "reason"); jw_str(&w, rs[k].text);
            jw_key(&w, "count"); jw_int(&w, rs[k].count);
            jw_obj_end(&w);
        }
        jw_arr_end(&w);
        jw_obj_end(&w);
        free(rs);
        for (size_t i = 0; i < nn; i++) free(names[i]);
        free(names);
    }
    jw_arr_end(&w);
    jw_obj_end(&w);
    fputc('\n', stdout);
    return EXIT_OK;
}

int cmd_schema(int argc, char **argv) {
    if (argc < 2) return cli_fail("schema", "missing subcommand (validate or check; see quire schema --help)");
    const char *sub = argv[1];
    char **files = calloc((size_t)argc, sizeof *files);
    if (!files) return cli_fail("schema", "out of memory");
    int nf = 0;
    bool assert_format = false, best_effort = false, print_grammar = false, stats = false, strict_keywords = false;
    long long ws = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--assert-format") == 0) assert_format = true;
        else if (strcmp(argv[i], "--best-effort") == 0) best_effort = true;
        else if (strcmp(argv[i], "--grammar") == 0) print_grammar = true;
        else if (strcmp(argv[i], "--strict-keywords") == 0) strict_keywords = true;
        else if (strcmp(argv[i], "--stats") == 0) stats = true;
        else if (strcmp(argv[i], "--ws") == 0) {
            const char *v = cli_value("schema", argc, argv, &i);
            if (!v || !cli_parse_int(v, &ws) || ws < 0 || ws > 64) { free(files); return cli_fail("schema", "--ws takes 0..64"); }
        } else if (argv[i][0] == '-' && argv[i][1]) { free(files); return cli_fail("schema", "unknown option %s", argv[i]); }
        else files[nf++] = argv[i];
    }
    bool validate = strcmp(sub, "validate") == 0;
    if (!validate && strcmp(sub, "check") != 0) { free(files); return cli_fail("schema", "unknown subcommand '%s' (validate or check)", sub); }
    sgr_schema_opts go = {0};
    go.best_effort = best_effort;
    go.ws = (int)ws;
    if (stats) {
        if (validate || nf < 1) { free(files); return cli_fail("schema", "usage: quire schema check --stats DIR..."); }
        int rc = schema_stats(files, nf, &go);
        free(files);
        return rc;
    }
    if (nf != (validate ? 2 : 1)) {
        free(files);
        return cli_fail("schema", validate ? "usage: quire schema validate SCHEMA.json INSTANCE.json"
                                           : "usage: quire schema check SCHEMA.json");
    }
    qerr e;
    json *doc = NULL, *inst = NULL;
    if (cli_load_json(files[0], &doc, &e)) { free(files); return cli_fail("schema", "%s", e.msg); }
    char base[4200];
    char *abs = realpath(files[0], NULL);
    snprintf(base, sizeof base, "file://%s", abs ? abs : files[0]);
    free(abs);
    schema_opts so = {0};
    so.assert_format = assert_format;
    so.load = cli_schema_file_loader;
    so.base_uri = base;
    schema *s;
    if (schema_compile(doc, &so, &s, &e)) { json_free(doc); int rc = cli_fail("schema", "%s: %s", files[0], e.msg); free(files); return rc; }
    json_free(doc);
    int rc = EXIT_OK;
    if (!validate) {
        /* annotations are listed; refused words end the check (unknown_refused) */
        long first_refused = best_effort ? -1 : unknown_refused(s, strict_keywords, assert_format);
        for (size_t i = 0; i < s->n_unknown && rc == EXIT_OK; i++) {
            const char *kw = s->unknown[i].keyword;
            bool fmt = strncmp(kw, "format \"", 8) == 0; /* a format value it cannot check */
            if ((long)i == first_refused) {
                fprintf(stderr, "quire schema: unsupported %s%s%s at %s\n", fmt ? "" : "keyword \"", kw, fmt ? "" : "\"",
                        s->unknown[i].pointer[0] ? s->unknown[i].pointer : "/");
                rc = EXIT_USAGE;
            } else {
                /* kw is `format "NAME"` for a format */
                char name[64] = "";
                if (fmt) sscanf(kw + 8, "%63[^\"]", name);
                int gen = fmt ? sgr_format_generated(name) : SGR_FMT_NONE;
                fprintf(stderr, "quire schema: annotation, not %s: %s%s%s at %s\n",
                        gen == SGR_FMT_NUMBERS   ? "validated (numbers are generated within it)"
                        : gen == SGR_FMT_STRINGS ? "validated (strings are generated within it)"
                                                 : "enforced",
                        fmt ? "" : "\"", kw, fmt ? "" : "\"", s->unknown[i].pointer[0] ? s->unknown[i].pointer : "/");
            }
        }
        if (rc == EXIT_OK) {
            sgr_gb *b = sgr_gb_new(NULL);
            sgr_unenforced *sk = NULL;
            size_t nsk = 0;
            if (!b) rc = cli_fail("schema", "out of memory");
            else if (sgr_schema_to_grammar(s, &go, b, &sk, &nsk, &e) < 0) {
                fprintf(stderr, "quire schema: %s\n", e.msg);
                rc = EXIT_USAGE;
            } else {
                for (size_t i = 0; i < nsk; i++)
                    fprintf(stderr, "quire schema: not enforced: %s at %s\n", sk[i].keyword, sk[i].pointer);
                if (print_grammar) {
                    char *txt;
                    size_t len;
                    if (sgr_gb_print(b, &txt, &len, &e)) rc = cli_fail("schema", "%s", e.msg);
                    else { fwrite(txt, 1, len, stdout); free(txt); }
                }
            }
            free(sk);
            sgr_gb_free(b);
        }
    } else if (cli_load_json(files[1], &inst, &e)) {
        rc = cli_fail("schema", "%s", e.msg);
    } else {
        schema_error err;
        int v = schema_validate(s, inst, &err);
        if (v < 0) rc = cli_fail("schema", "validation stopped: %s", err.msg);
        else if (v == 0) {
            fprintf(stderr, "invalid at %s: keyword %s: %s (schema %s)\n", err.instance_ptr[0] ? err.instance_ptr : "/",
                    err.keyword, err.msg, err.schema_ptr[0] ? err.schema_ptr : "/");
            rc = EXIT_NEGATIVE;
        }
    }
    json_free(inst);
    schema_free(s);
    free(files);
    return rc;
}
