/* cmd_eval_retrieval.c — `quire eval retrieval DB --queries Q --qrels R`:
 * BEIR-style evaluation of an index (doc level: each document ranked by its
 * best chunk; the run is ordered as trec_eval orders it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "rag/rag.h"
#include "search_cli.h"

int eval_retrieval(int argc, char **argv) {
    const char *db = NULL, *qpath = NULL, *rpath = NULL;
    bool json = false;
    long long k = 100;
    search_cli s;
    memset(&s, 0, sizeof s);
    search_opts_default(&s.o);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v;
        int r = search_parse_common("eval", argc, argv, &i, &s);
        if (r > 0) { filter_free(s.filter); return r; }
        if (r == 0) continue;
        if (!strcmp(a, "--queries")) { if (!(qpath = cli_value("eval", argc, argv, &i))) { filter_free(s.filter); return EXIT_USAGE; } }
        else if (!strcmp(a, "--qrels")) { if (!(rpath = cli_value("eval", argc, argv, &i))) { filter_free(s.filter); return EXIT_USAGE; } }
        else if (!strcmp(a, "-k")) {
            if (!(v = cli_value("eval", argc, argv, &i))) { filter_free(s.filter); return EXIT_USAGE; }
            if (!cli_parse_int(v, &k) || k < 1 || k > 10000) { filter_free(s.filter); return cli_fail("eval", "bad value '%s' for -k", v); }
        } else if (!strcmp(a, "--json")) json = true;
        else if (a[0] == '-' && a[1]) { filter_free(s.filter); return cli_fail("eval", "unknown argument '%s'", a); }
        else if (!db) db = a;
        else { filter_free(s.filter); return cli_fail("eval", "unexpected argument '%s'", a); }
    }
    if (!db || !qpath || !rpath) { filter_free(s.filter); return cli_fail("eval", "usage: quire eval retrieval DB --queries Q.jsonl --qrels R.tsv [--mode M] [-k 100] [--json]"); }
    if (k < 100) k = 100; /* recall@100 needs 100 */
    s.o.k = (int)k;
    s.o.group_by_doc = true;
    qerr e;
    qrels *qr;
    if (qrels_load(&qr, rpath, &e)) { filter_free(s.filter); return cli_fail("eval", "%s", e.msg); }
    char *qbuf;
    size_t qlen;
    if (q_read_file(qpath, &qbuf, &qlen, &e)) { qrels_free(qr); filter_free(s.filter); return cli_fail("eval", "%s", e.msg); }
    rag_index *x;
    if (index_open(&x, db, INDEX_READ, NULL, &e)) { free(qbuf); qrels_free(qr); filter_free(s.filter); return cli_fail("eval", "%s", e.msg); }
    int rc = EXIT_OK;
    size_t pos = 0, ll, lineno = 0;
    const char *line;
    double ndcg = 0, rec = 0, mrr = 0, t_search = 0, stages[ST_COUNT] = {0};
    int nq = 0;
    const char **ranked = malloc((size_t)k * sizeof *ranked);
    float *scores = malloc((size_t)k * sizeof *scores);
    if (!ranked || !scores) rc = cli_fail("eval", "out of memory");
    while (rc == EXIT_OK && jsonl_next_line(qbuf, qlen, &pos, &line, &ll)) {
        lineno++;
        if (ll == 0) continue;
        jv v;
        if (jsonl_parse(line, ll, &v, &e)) { rc = cli_fail("eval", "%s:%zu: %s", qpath, lineno, e.msg); break; }
        const jv *id = jsonl_get(&v, "_id"), *text = jsonl_get(&v, "text");
        if (!id || id->type != JV_STR || !text || text->type != JV_STR) {
            jsonl_free(&v);
            rc = cli_fail("eval", "%s:%zu: need \"_id\" and \"text\" strings", qpath, lineno);
            break;
        }
        if (!qrels_has_query(qr, id->str)) { jsonl_free(&v); continue; }
        search_result r;
        double t0 = q_now();
        if (index_search(x, text->str, &s.o, &r, &e)) { jsonl_free(&v); rc = cli_fail("eval", "%s", e.msg); break; }
        t_search += q_now() - t0;
        for (int i = 0; i < ST_COUNT; i++) stages[i] += r.t[i];
        for (int i = 0; i < r.n; i++) { ranked[i] = r.hits[i].doc_id; scores[i] = r.hits[i].score; }
        qrels_sort_run(ranked, scores, r.n);
        double a, b, c;
        if (qrels_eval_query(qr, id->str, ranked, r.n, &a, &b, &c)) { ndcg += a; rec += b; mrr += c; nq++; }
        search_result_free(&r);
        jsonl_free(&v);
    }
    if (rc == EXIT_OK && nq == 0) rc = cli_fail("eval", "no query of %s has judgments in %s", qpath, rpath);
    if (rc == EXIT_OK) {
        ndcg /= nq; rec /= nq; mrr /= nq;
        double qps = t_search > 0 ? nq / t_search : 0;
        if (json) {
            jw w;
            jw_init(&w, stdout);
            jw_obj_begin(&w);
            jw_key(&w, "ndcg@10"); jw_num(&w, ndcg);
            jw_key(&w, "recall@100"); jw_num(&w, rec);
            jw_key(&w, "mrr@10"); jw_num(&w, mrr);
            jw_key(&w, "queries_per_s"); jw_num(&w, qps);
            jw_key(&w, "n_queries"); jw_int(&w, nq);
            jw_key(&w, "n_docs"); jw_int(&w, (long long)index_doc_count(x));
            jw_key(&w, "n_chunks"); jw_int(&w, (long long)index_chunk_count(x));
            search_json_timings(&w, stages);
            jw_obj_end(&w);
        } else {
            printf("queries %d  nDCG@10 %.4f  recall@100 %.4f  MRR@10 %.4f  %.1f queries/s (1 thread)\n", nq, ndcg, rec, mrr, qps);
        }
        if (s.profile) search_print_profile(stages, nq);
    }
    free(ranked);
    free(scores);
    index_free(x);
    free(qbuf);
    qrels_free(qr);
    filter_free(s.filter);
    return rc;
}
