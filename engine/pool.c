/* pool.c — persistent thread pool with claimed chunks.
 *
 * A job is a list of phases, each a number of chunks; every thread (the
 * caller included) claims the next unclaimed chunk of the current phase with
 * one compare-and-swap on a single word (job sequence | phase | index) and
 * runs it. The thread that completes a phase's last chunk opens the next
 * phase, and the one that completes the job's last chunk marks it done.
 *
 * Why claims instead of "thread i does share i": on a host with more runnable
 * threads than cores a worker can be descheduled for a whole time slice. With
 * fixed shares every job (and every barrier inside it) waited for it, and
 * decode ran 10-15x slower; with claims the threads that are running take
 * its chunks, and the job waits only for a chunk that was actually claimed.
 * Callees split work by (chunk, n_chunks) alone, so results never depend on
 * which thread ran what, nor on timing.
 *
 * Waiting: workers spin briefly on the claim word (decode jobs come every
 * few tens of microseconds) and then park on a condition variable, so an
 * idle pool costs no CPU. */
#include "engine/engine.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#define SPIN_ITERS 4000 /* pauses before a waiting worker parks */
#define MAX_THREADS 256 /* threads with a wait-prefetch region */
#define PF_STEP 256     /* bytes prefetched per look at the claim word */
#define YIELD_EVERY 64  /* pauses between sched_yield while the caller waits */
#define MAX_PHASES 8
#define IDX_BITS 24
#define PHASE_DONE 0xff /* the phase field of a finished job */

struct qpool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_int sleepers;
    atomic_bool stop;
    /* claim = seq << 32 | phase << 24 | next index */
    atomic_uint_least64_t claim;
    atomic_int done; /* completed chunks of the current phase */
    uint32_t seq;    /* the caller's last job (only the caller writes it) */
    /* the current job; written only while no job is open */
    _Atomic(qpool_chunk_fn) fn;
    _Atomic(void *) arg;
    atomic_int n_phases;              /* non-empty phases only */
    atomic_int n_chunks[MAX_PHASES];  /* of each non-empty phase */
    atomic_int phase_id[MAX_PHASES];  /* the caller's number for it */
    void *scratch;
    size_t scratch_size;
    /* per thread: what to prefetch while it waits (qpool_set_wait_prefetch) */
    struct { _Atomic(const uint8_t *) start; atomic_size_t bytes; } pf[MAX_THREADS];
    struct qpool_worker { qpool *p; int id; } *workers;
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* A waiting thread's progress through its prefetch region. */
typedef struct pf_cursor { const uint8_t *start, *at, *end; } pf_cursor;

/* Takes the thread's current region (a new one restarts the cursor). */
static void pf_load(qpool *p, int id, pf_cursor *c) {
    if (id >= MAX_THREADS) return;
    /* a region read while it is being replaced may pair one start with the
     * other's length: harmless, a prefetch never faults */
    const uint8_t *s = atomic_load_explicit(&p->pf[id].start, memory_order_acquire);
    size_t n = atomic_load_explicit(&p->pf[id].bytes, memory_order_relaxed);
    if (s != c->start) { c->start = c->at = s; c->end = s ? s + n : s; }
    else if (s && c->end != s + n) c->end = s + n;
}

/* One step of waiting: prefetch PF_STEP bytes of the region into this
 * core's L2, or, when the region is done, pause (and return true: only
 * pauses count toward parking, so prefetching never shortens the spin). */
static inline bool wait_step(pf_cursor *c) {
    if (c->at && c->at < c->end) {
#if defined(__GNUC__)
        for (int l = 0; l < PF_STEP; l += 64) __builtin_prefetch(c->at + l, 0, 2);
#endif
        c->at += PF_STEP;
        return false;
    }
    cpu_relax();
    return true;
}

static inline uint64_t claim_word(uint32_t seq, int phase, int idx) {
    return (uint64_t)seq << 32 | (uint64_t)phase << IDX_BITS | (uint64_t)idx;
}

/* Claims and runs chunks while any is claimable; returns the claim word it
 * last saw with nothing to claim (the caller waits for it to change). */
static uint64_t work(qpool *p) {
    for (;;) {
        uint64_t c = atomic_load(&p->claim);
        int phase = (int)(c >> IDX_BITS & 0xff), idx = (int)(c & ((1u << IDX_BITS) - 1));
        if (phase == PHASE_DONE) return c;
        /* The descriptor read here belongs to c's job: it is rewritten only
         * after the job is marked done, and then the claim never equals c
         * again, so a stale read can only precede a failing CAS. */
        int n = atomic_load(&p->n_chunks[phase]);
        if (idx >= n) return c; /* phase being finished by others */
        if (!atomic_compare_exchange_weak(&p->claim, &c, c + 1)) continue;
        qpool_chunk_fn fn = atomic_load(&p->fn);
        void *arg = atomic_load(&p->arg);
        fn(arg, atomic_load(&p->phase_id[phase]), idx, n);
        if (atomic_fetch_add(&p->done, 1) + 1 == n) {
            atomic_store(&p->done, 0);
            uint32_t seq = (uint32_t)(c >> 32);
            int next = phase + 1 < atomic_load(&p->n_phases) ? phase + 1 : PHASE_DONE;
            atomic_store(&p->claim, claim_word(seq, next, 0));
        }
    }
}

/* The calling thread's index in the pool it works for (workers 1..n-1;
 * 0 for any other thread, the caller of qpool_run_chunks included). */
static _Thread_local int tls_index;

int qpool_thread_index(void) { return tls_index; }

static void *worker_main(void *v) {
    struct qpool_worker *w = v;
    qpool *p = w->p;
    tls_index = w->id;
    pf_cursor pc = {0};
    while (!atomic_load(&p->stop)) {
        uint64_t seen = work(p);
        int spins = 0;
        pf_load(p, w->id, &pc);
        while (atomic_load(&p->claim) == seen && !atomic_load(&p->stop) && spins < SPIN_ITERS)
            spins += wait_step(&pc);
        if (atomic_load(&p->claim) != seen || atomic_load(&p->stop)) continue;
        pthread_mutex_lock(&p->mu);
        atomic_fetch_add(&p->sleepers, 1);
        while (atomic_load(&p->claim) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->cv, &p->mu);
        atomic_fetch_sub(&p->sleepers, 1);
        pthread_mutex_unlock(&p->mu);
    }
    return NULL;
}

qpool *qpool_new(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    qpool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    atomic_store(&p->claim, claim_word(0, PHASE_DONE, 0));
    p->threads = calloc((size_t)n_threads, sizeof(pthread_t));
    p->workers = calloc((size_t)n_threads, sizeof *p->workers);
    if (!p->threads || !p->workers) { free(p->threads); free(p->workers); free(p); return NULL; }
    for (int i = 1; i < n_threads; i++) {
        p->workers[i] = (struct qpool_worker){p, i};
        if (pthread_create(&p->threads[i], NULL, worker_main, &p->workers[i]) != 0) {
            p->n = i; /* run with the threads we got */
            break;
        }
    }
    return p;
}

void qpool_free(qpool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p->workers);
    free(p->scratch);
    free(p);
}

int qpool_size(const qpool *p) { return p ? p->n : 1; }

void qpool_run_chunks(qpool *p, qpool_chunk_fn fn, void *arg, int n_phases, const int *n_chunks) {
    if (n_phases > MAX_PHASES) abort(); /* a caller bug, not input */
    if (!p || p->n == 1) {
        for (int ph = 0; ph < n_phases; ph++)
            for (int i = 0; i < n_chunks[ph]; i++) fn(arg, ph, i, n_chunks[ph]);
        return;
    }
    /* Only non-empty phases are published: an empty one would never be
     * closed by a finishing chunk. */
    int k = 0;
    for (int ph = 0; ph < n_phases; ph++) {
        if (n_chunks[ph] <= 0) continue;
        if (n_chunks[ph] >= 1 << IDX_BITS) abort(); /* a caller bug, not input */
        atomic_store(&p->n_chunks[k], n_chunks[ph]);
        atomic_store(&p->phase_id[k], ph);
        k++;
    }
    if (k == 0) return;
    atomic_store(&p->fn, fn);
    atomic_store(&p->arg, arg);
    atomic_store(&p->n_phases, k);
    atomic_store(&p->done, 0);
    uint32_t seq = ++p->seq; /* wraps after 2^32 jobs: harmless, see work() */
    atomic_store(&p->claim, claim_word(seq, 0, 0));
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    const uint64_t fin = claim_word(seq, PHASE_DONE, 0);
    pf_cursor pc = {0};
    for (unsigned spins = 0;;) {
        uint64_t c = work(p);
        if (c == fin) break;
        pf_load(p, 0, &pc);
        while (atomic_load(&p->claim) == c) {
            /* a claimed chunk still runs, maybe on a descheduled worker */
            if (++spins % YIELD_EVERY == 0) sched_yield();
            else wait_step(&pc);
        }
    }
}

void qpool_set_wait_prefetch(qpool *p, int thread, const void *addr, size_t bytes) {
    if (!p || thread < 0 || thread >= MAX_THREADS || thread >= p->n) return;
    atomic_store_explicit(&p->pf[thread].bytes, addr ? bytes : 0, memory_order_relaxed);
    atomic_store_explicit(&p->pf[thread].start, (const uint8_t *)addr, memory_order_release);
}

typedef struct plain_job {
    qpool_fn fn;
    void *arg;
} plain_job;

static void run_plain(void *arg, int phase, int chunk, int n_chunks) {
    (void)phase;
    const plain_job *j = arg;
    j->fn(j->arg, chunk, n_chunks);
}

void qpool_run(qpool *p, qpool_fn fn, void *arg) {
    plain_job j = {fn, arg};
    int n = qpool_size(p);
    qpool_run_chunks(p, run_plain, &j, 1, &n);
}

void *qpool_scratch(qpool *p, size_t bytes) {
    if (!p) return NULL;
    if (bytes > p->scratch_size) {
        free(p->scratch);
        p->scratch = malloc(bytes);
        p->scratch_size = p->scratch ? bytes : 0;
    }
    return p->scratch;
}

int q_default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}
