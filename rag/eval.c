/* eval.c — BEIR-style retrieval metrics over TREC qrels. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rag.h"

typedef struct qrel {
    char *qid, *did;
    int rel;
} qrel;

struct qrels {
    qrel *r;
    size_t n;
    size_t n_queries;
};

static int cmp_qrel(const void *a, const void *b) {
    const qrel *x = a, *y = b;
    int c = strcmp(x->qid, y->qid);
    return c ? c : strcmp(x->did, y->did);
}

void qrels_free(qrels *q) {
    if (!q) return;
    for (size_t i = 0; i < q->n; i++) { free(q->r[i].qid); free(q->r[i].did); }
    free(q->r);
    free(q);
}

int qrels_load(qrels **out, const char *path, qerr *e) {
    char *buf;
    size_t len;
    if (q_read_file(path, &buf, &len, e)) return -1;
    qrels *q = calloc(1, sizeof *q);
    if (!q) { free(buf); return qerr_set(e, "out of memory"); }
    size_t pos = 0, cap = 0;
    const char *line;
    size_t ll;
    int lineno = 0;
    while (jsonl_next_line(buf, len, &pos, &line, &ll)) {
        lineno++;
        if (ll == 0) continue;
        const char *f[4];
        size_t fl[4];
        int nf = 0;
        size_t st = 0;
        for (size_t i = 0; i <= ll && nf < 4; i++) {
            if (i == ll || line[i] == '\t') {
                f[nf] = line + st;
                fl[nf++] = i - st;
                st = i + 1;
            }
        }
        if (nf < 3) { qrels_free(q); free(buf); return qerr_set(e, "%s:%d: expected query-id<TAB>corpus-id<TAB>score", path, lineno); }
        char num[32];
        size_t sl = fl[nf - 1] < sizeof num - 1 ? fl[nf - 1] : sizeof num - 1;
        memcpy(num, f[nf - 1], sl);
        num[sl] = 0;
        char *end;
        long rel = strtol(num, &end, 10);
        if (end == num || *end) {
            if (lineno == 1) continue; /* header */
            qrels_free(q); free(buf);
            return qerr_set(e, "%s:%d: bad relevance '%s'", path, lineno, num);
        }
        const char *did = nf == 4 ? f[2] : f[1]; /* TREC 4-column: qid 0 did rel */
        size_t dl = nf == 4 ? fl[2] : fl[1];
        if (q->n == cap) {
            cap = cap ? cap * 2 : 256;
            qrel *nr = realloc(q->r, cap * sizeof *nr);
            if (!nr) { qrels_free(q); free(buf); return qerr_set(e, "out of memory"); }
            q->r = nr;
        }
        qrel *r = &q->r[q->n];
        r->qid = strndup(f[0], fl[0]);
        r->did = strndup(did, dl);
        r->rel = (int)rel;
        if (!r->qid || !r->did) { free(r->qid); free(r->did); qrels_free(q); free(buf); return qerr_set(e, "out of memory"); }
        q->n++;
    }
    free(buf);
    qsort(q->r, q->n, sizeof *q->r, cmp_qrel);
    for (size_t i = 0; i < q->n; i++)
        if (i == 0 || strcmp(q->r[i].qid, q->r[i - 1].qid) != 0) q->n_queries++;
    *out = q;
    return 0;
}

size_t qrels_query_count(const qrels *q) { return q->n_queries; }

static size_t lower(const qrels *q, const char *qid) {
    size_t lo = 0, hi = q->n;
    while (lo < hi) {
        size_t m = lo + (hi - lo) / 2;
        if (strcmp(q->r[m].qid, qid) < 0) lo = m + 1;
        else hi = m;
    }
    return lo;
}

bool qrels_has_query(const qrels *q, const char *qid) {
    size_t i = lower(q, qid);
    return i < q->n && strcmp(q->r[i].qid, qid) == 0;
}

static int rel_of(const qrels *q, size_t lo, size_t hi, const char *did) {
    while (lo < hi) {
        size_t m = lo + (hi - lo) / 2;
        int c = strcmp(q->r[m].did, did);
        if (c == 0) return q->r[m].rel;
        if (c < 0) lo = m + 1;
        else hi = m;
    }
    return 0;
}

static int cmp_int_desc(const void *a, const void *b) { return *(const int *)b - *(const int *)a; }

bool qrels_eval_query(const qrels *q, const char *qid, const char *const *ranked, int n, double *ndcg10,
                      double *recall100, double *mrr10) {
    size_t lo = lower(q, qid), hi = lo;
    while (hi < q->n && strcmp(q->r[hi].qid, qid) == 0) hi++;
    int n_rel = 0;
    int ideal[10];
    int ni = 0;
    int *rels = malloc((hi - lo + 1) * sizeof *rels);
    if (!rels) return false;
    for (size_t i = lo; i < hi; i++)
        if (q->r[i].rel > 0) rels[n_rel++] = q->r[i].rel;
    if (n_rel == 0) { free(rels); return false; }
    qsort(rels, (size_t)n_rel, sizeof *rels, cmp_int_desc);
    for (int i = 0; i < n_rel && i < 10; i++) ideal[ni++] = rels[i];
    free(rels);
    double dcg = 0, idcg = 0, mrr = 0;
    int found100 = 0;
    for (int i = 0; i < n; i++) {
        int r = rel_of(q, lo, hi, ranked[i]);
        if (i < 10 && r > 0) dcg += r / log2(i + 2.0);
        if (i < 10 && r > 0 && mrr == 0) mrr = 1.0 / (i + 1);
        if (i < 100 && r > 0) found100++;
    }
    for (int i = 0; i < ni; i++) idcg += ideal[i] / log2(i + 2.0);
    *ndcg10 = idcg > 0 ? dcg / idcg : 0;
    *recall100 = (double)found100 / n_rel;
    *mrr10 = mrr;
    return true;
}

void qrels_sort_run(const char **ids, float *scores, int n) {
    for (int i = 1; i < n; i++) { /* insertion sort: runs are short and nearly sorted */
        const char *id = ids[i];
        float sc = scores[i];
        int j = i - 1;
        while (j >= 0 && (scores[j] < sc || (scores[j] == sc && strcmp(ids[j], id) < 0))) {
            ids[j + 1] = ids[j];
            scores[j + 1] = scores[j];
            j--;
        }
        ids[j + 1] = id;
        scores[j + 1] = sc;
    }
}
