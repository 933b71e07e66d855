/* cmd_search.c — `quire search DB -q QUERY`: BM25, vector or hybrid search
 * with metadata filters and ACL principals; prints one JSON document. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "rag/rag.h"
#include "search_cli.h"

void help_search(FILE *out) {
    fprintf(out,
            "usage: quire search DB -q QUERY [-k K] [--mode bm25|vector|hybrid] [--filter EXPR] [--principal P]...\n"
            "  -k K                 results (default 10)\n"
            "  --mode M             bm25 (default), vector (needs the index's embedding model) or hybrid\n"
            "  --fusion rrf|weighted  hybrid fusion: reciprocal rank (k=60, default) or min-max normalized\n"
            "                       scores weighted by --alpha (bm25 share, default 0.5)\n"
            "  --filter EXPR        metadata predicate, e.g.\n"
            "                       'year >= 2020 and (lang = \"en\" or lang in [\"de\",\"fr\"]) and not draft = true'\n"
            "                       operators = != < <= > >= in [..] exists; and or not ( ); _id is the document id\n"
            "  --principal P        caller identity (repeatable): documents with an ACL are visible only to\n"
            "                       one of their principals; documents without an ACL are public\n"
            "  --docs               one result per document (its best chunk)\n"
            "  --filter-by-callback evaluate --filter and the ACL chunk by chunk instead of from the\n"
            "                       index's metadata posting lists (same results; for comparison)\n"
            "  --profile            per-stage timings on stderr\n"
            "  output: {\"results\": [{\"id\", \"score\", \"chunk\", \"start\", \"end\", ...}], \"timings\": {stage: seconds}}\n");
}

int search_parse_common(const char *cmd, int argc, char **argv, int *i, search_cli *s) {
    const char *a = argv[*i], *v;
    if (!strcmp(a, "--mode")) {
        if (!(v = cli_value(cmd, argc, argv, i))) return EXIT_USAGE;
        if (!strcmp(v, "bm25")) s->o.mode = SEARCH_BM25;
        else if (!strcmp(v, "vector")) s->o.mode = SEARCH_VECTOR;
        else if (!strcmp(v, "hybrid")) s->o.mode = SEARCH_HYBRID;
        else return cli_fail(cmd, "unknown --mode '%s' (bm25, vector, hybrid)", v);
        return 0;
    }
    if (!strcmp(a, "--fusion")) {
        if (!(v = cli_value(cmd, argc, argv, i))) return EXIT_USAGE;
        if (!strcmp(v, "rrf")) s->o.fusion = FUSION_RRF;
        else if (!strcmp(v, "weighted")) s->o.fusion = FUSION_WEIGHTED;
        else return cli_fail(cmd, "unknown --fusion '%s' (rrf, weighted)", v);
        return 0;
    }
    if (!strcmp(a, "--alpha")) {
        double f;
        if (!(v = cli_value(cmd, argc, argv, i))) return EXIT_USAGE;
        if (!cli_parse_float(v, &f) || f < 0 || f > 1) return cli_fail(cmd, "--alpha must be in [0, 1]");
        s->o.alpha = (float)f;
        return 0;
    }
    if (!strcmp(a, "--filter")) {
        if (!(v = cli_value(cmd, argc, argv, i))) return EXIT_USAGE;
        qerr e;
        filter_free(s->filter);
        s->filter = NULL;
        if (filter_parse(&s->filter, v, &e)) return cli_fail(cmd, "%s", e.msg);
        s->o.filter = s->filter;
        return 0;
    }
    if (!strcmp(a, "--principal")) {
        if (!(v = cli_value(cmd, argc, argv, i))) return EXIT_USAGE;
        if (s->n_principals == 64) return cli_fail(cmd, "at most 64 principals");
        s->principals[s->n_principals++] = v;
        s->o.principals = s->principals;
        s->o.n_principals = s->n_principals;
        return 0;
    }
    if (!strcmp(a, "--profile")) { s->profile = true; return 0; }
    if (!strcmp(a, "--filter-by-callback")) { s->o.filter_by_callback = true; return 0; }
    return -1;
}

void search_print_profile(const double *t, int n_queries) {
    fprintf(stderr, "\n%-12s %10s %12s\n", "stage", "seconds", "ms/query");
    for (int i = 0; i < ST_COUNT; i++)
        fprintf(stderr, "%-12s %10.6f %12.4f\n", search_stage_names[i], t[i], n_queries ? 1e3 * t[i] / n_queries : 0.0);
}

void search_json_timings(jw *w, const double *t) {
    jw_key(w, "timings");
    jw_obj_begin(w);
    for (int i = 0; i < ST_COUNT; i++) { jw_key(w, search_stage_names[i]); jw_num(w, t[i]); }
    jw_obj_end(w);
}

int cmd_search(int argc, char **argv) {
    if (argc < 2) return cli_fail("search", "usage: quire search DB -q QUERY (see --help)");
    const char *db = NULL, *query = NULL;
    search_cli s;
    memset(&s, 0, sizeof s);
    search_opts_default(&s.o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        long long n;
        int r = search_parse_common("search", argc, argv, &i, &s);
        if (r > 0) { filter_free(s.filter); return r; }
        if (r == 0) continue;
        if (!strcmp(a, "-q") || !strcmp(a, "--query")) { if (!(query = cli_value("search", argc, argv, &i))) { filter_free(s.filter); return EXIT_USAGE; } }
        else if (!strcmp(a, "-k")) {
            if (!(v = cli_value("search", argc, argv, &i))) { filter_free(s.filter); return EXIT_USAGE; }
            if (!cli_parse_int(v, &n) || n < 1 || n > 100000) { filter_free(s.filter); return cli_fail("search", "bad value '%s' for -k", v); }
            s.o.k = (int)n;
        } else if (!strcmp(a, "--docs")) s.o.group_by_doc = true;
        else if (!strcmp(a, "--json")) { /* JSON is the only output */ }
        else if (a[0] == '-' && a[1]) { filter_free(s.filter); return cli_fail("search", "unknown argument '%s'", a); }
        else if (!db) db = a;
        else { filter_free(s.filter); return cli_fail("search", "unexpected argument '%s'", a); }
    }
    if (!db || !query) { filter_free(s.filter); return cli_fail("search", "need DB and -q QUERY"); }
    qerr e;
    rag_index *x;
    if (index_open(&x, db, INDEX_READ, NULL, &e)) { filter_free(s.filter); return cli_fail("search", "%s", e.msg); }
    search_result r;
    double t0 = q_now();
    if (index_search(x, query, &s.o, &r, &e)) { index_free(x); filter_free(s.filter); return cli_fail("search", "%s", e.msg); }
    double total = q_now() - t0;
    jw w;
    jw_init(&w, stdout);
    jw_obj_begin(&w);
    jw_key(&w, "results");
    jw_arr_begin(&w);
    for (int i = 0; i < r.n; i++) {
        const search_hit *h = &r.hits[i];
        jw_obj_begin(&w);
        jw_key(&w, "id"); jw_str(&w, h->doc_id);
        jw_key(&w, "score"); jw_num(&w, h->score);
        jw_key(&w, "chunk"); jw_str(&w, h->chunk); /* NUL-terminated copy */
        jw_key(&w, "start"); jw_int(&w, (long long)h->start);
        jw_key(&w, "end"); jw_int(&w, (long long)h->end);
        jw_key(&w, "chunk_id"); jw_int(&w, (long long)h->chunk_id);
        jw_obj_end(&w);
    }
    jw_arr_end(&w);
    search_json_timings(&w, r.t);
    jw_key(&w, "total_s"); jw_num(&w, total);
    jw_obj_end(&w);
    if (s.profile) search_print_profile(r.t, 1);
    search_result_free(&r);
    index_free(x);
    filter_free(s.filter);
    return EXIT_OK;
}
