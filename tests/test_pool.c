/* test_pool.c — the thread pool's contract: every chunk of every phase runs
 * exactly once, phase k+1 starts only after all of phase k is done, empty
 * phases are skipped, and qpool_run calls fn(arg, i, n) once for each i.
 * Run with more threads than cores so workers are descheduled mid-job. */
#include "testutil.h"

#include <stdatomic.h>

#include "engine/engine.h"

#define MAXC 4096

typedef struct job {
    int n_phases;
    int n_chunks[8];
    atomic_int runs[8][MAXC];
    atomic_int done[8];
    atomic_int order_errors, arg_errors;
} job;

static void chunk_fn(void *arg, int phase, int chunk, int n_chunks) {
    job *j = arg;
    if (phase < 0 || phase >= j->n_phases || n_chunks != j->n_chunks[phase] || chunk < 0 || chunk >= n_chunks) {
        atomic_fetch_add(&j->arg_errors, 1);
        return;
    }
    for (int p = 0; p < phase; p++)
        if (atomic_load(&j->done[p]) != j->n_chunks[p]) atomic_fetch_add(&j->order_errors, 1);
    atomic_fetch_add(&j->runs[phase][chunk], 1);
    /* a little work, uneven across chunks */
    volatile unsigned x = 0;
    for (int i = 0; i < (chunk * 7919) % 500; i++) x += (unsigned)i;
    atomic_fetch_add(&j->done[phase], 1);
}

static void check_job(qpool *pool, int n_phases, const int *n) {
    static job j;
    memset(&j, 0, sizeof j);
    j.n_phases = n_phases;
    for (int p = 0; p < n_phases; p++) j.n_chunks[p] = n[p];
    qpool_run_chunks(pool, chunk_fn, &j, n_phases, n);
    assert_int_equal(atomic_load(&j.arg_errors), 0);
    assert_int_equal(atomic_load(&j.order_errors), 0);
    for (int p = 0; p < n_phases; p++)
        for (int c = 0; c < (n[p] > 0 ? n[p] : 0); c++) assert_int_equal(atomic_load(&j.runs[p][c]), 1);
}

static void test_chunks_once_in_phase_order(void **state) {
    (void)state;
    const int threads[] = {1, 2, 3, 8};
    unsigned rng = 12345;
    for (size_t t = 0; t < sizeof threads / sizeof *threads; t++) {
        qpool *pool = qpool_new(threads[t]);
        assert_non_null(pool);
        for (int rep = 0; rep < 300; rep++) {
            int np = 1 + (int)(rng % 8);
            int n[8];
            for (int p = 0; p < np; p++) {
                rng = rng * 1103515245u + 12345u;
                int r = (int)(rng >> 16) % 10;
                n[p] = r == 0 ? 0 : r == 1 ? 1 : r == 2 ? MAXC : 1 + (int)(rng >> 8) % 64; /* empty, single, large */
            }
            rng = rng * 1103515245u + 12345u;
            check_job(pool, np, n);
        }
        qpool_free(pool);
    }
}

typedef struct plain {
    int n;
    atomic_int seen[64];
    atomic_int bad;
} plain;

static void plain_fn(void *arg, int ith, int nth) {
    plain *p = arg;
    if (nth != p->n || ith < 0 || ith >= nth) atomic_fetch_add(&p->bad, 1);
    else atomic_fetch_add(&p->seen[ith], 1);
}

static void test_run_each_index_once(void **state) {
    (void)state;
    for (int threads = 1; threads <= 6; threads++) {
        qpool *pool = qpool_new(threads);
        assert_non_null(pool);
        assert_int_equal(qpool_size(pool), threads);
        for (int rep = 0; rep < 200; rep++) {
            plain p;
            memset(&p, 0, sizeof p);
            p.n = threads;
            qpool_run(pool, plain_fn, &p);
            assert_int_equal(atomic_load(&p.bad), 0);
            for (int i = 0; i < threads; i++) assert_int_equal(atomic_load(&p.seen[i]), 1);
        }
        qpool_free(pool);
    }
    /* a NULL pool runs inline */
    plain p;
    memset(&p, 0, sizeof p);
    p.n = 1;
    qpool_run(NULL, plain_fn, &p);
    assert_int_equal(atomic_load(&p.seen[0]), 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunks_once_in_phase_order),
        cmocka_unit_test(test_run_each_index_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
