/* sampler.c — token sampling. Filters work on a candidate list; top-k uses
 * selection rather than sorting the vocabulary, and sorting happens only over
 * the candidates that survive it. */
#include "engine/engine.h"

#include <math.h>
#include <stdlib.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void qrng_seed(qrng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t qrng_next(qrng *r) {
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

float qrng_uniform(qrng *r) { return (float)(qrng_next(r) >> 40) * (1.0f / 16777216.0f); }

sampler_params sampler_defaults(void) {
    sampler_params p = {.temp = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f, .repeat_penalty = 1.0f,
                        .penalty_last_n = 64, .seed = 0};
    return p;
}

typedef struct cand {
    int32_t id;
    float logit;
    float p;
} cand;

struct sampler {
    sampler_params p;
    int n_vocab;
    qrng rng;
    cand *c;
    int32_t *count; /* occurrences in the penalty window */
};

sampler *sampler_new(const sampler_params *p, int n_vocab) {
    sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = *p;
    s->n_vocab = n_vocab;
    qrng_seed(&s->rng, p->seed);
    s->c = malloc((size_t)n_vocab * sizeof(cand));
    s->count = calloc((size_t)n_vocab, sizeof(int32_t));
    if (!s->c || !s->count) { sampler_free(s); return NULL; }
    return s;
}

void sampler_free(sampler *s) {
    if (!s) return;
    free(s->c);
    free(s->count);
    free(s);
}

/* Descending by logit, ties by id: a total order, so results never depend on
 * the sort algorithm. */
static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static bool cand_before(const cand *x, const cand *y) { return cand_cmp(x, y) < 0; }

/* Moves the k best candidates to the front (unordered), Hoare-style
 * quickselect with a deterministic middle pivot. */
static void select_top(cand *c, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        cand pivot = c[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (cand_before(&c[i], &pivot)) i++;
            while (cand_before(&pivot, &c[j])) j--;
            if (i <= j) { cand t = c[i]; c[i] = c[j]; c[j] = t; i++; j--; }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

static void apply_penalties(sampler *s, float *logits, const int32_t *hist, int n_hist) {
    const sampler_params *p = &s->p;
    if (p->penalty_last_n == 0 || n_hist <= 0) return;
    if (p->repeat_penalty == 1.0f && p->freq_penalty == 0.0f && p->presence_penalty == 0.0f) return;
    int start = p->penalty_last_n < 0 || p->penalty_last_n > n_hist ? 0 : n_hist - p->penalty_last_n;
    for (int i = start; i < n_hist; i++)
        if (hist[i] >= 0 && hist[i] < s->n_vocab) s->count[hist[i]]++;
    for (int i = start; i < n_hist; i++) {
        int32_t t = hist[i];
        if (t < 0 || t >= s->n_vocab || s->count[t] == 0) continue;
        float l = logits[t];
        /* repetition penalty as in CTRL: shrink toward zero from either side */
        if (p->repeat_penalty != 1.0f) l = l > 0 ? l / p->repeat_penalty : l * p->repeat_penalty;
        l -= (float)s->count[t] * p->freq_penalty + p->presence_penalty;
        logits[t] = l;
        s->count[t] = 0; /* each token once */
    }
}

int32_t sampler_sample(sampler *s, float *logits, const int32_t *hist, int n_hist) {
    const sampler_params *p = &s->p;
    int nv = s->n_vocab;
    apply_penalties(s, logits, hist, n_hist);
    if (p->temp <= 0.0f) {
        int32_t best = 0;
        for (int i = 1; i < nv; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }
    cand *c = s->c;
    int n = 0;
    for (int i = 0; i < nv; i++)
        if (logits[i] > -INFINITY) c[n++] = (cand){i, logits[i], 0};
    if (n == 0) return 0;
    if (p->top_k > 0 && p->top_k < n) {
        select_top(c, n, p->top_k);
        n = p->top_k;
    }
    /* probabilities before temperature, for top-p and min-p; the
     * normalizer covers every candidate, but only the best are sorted */
    float mx = c[0].logit;
    for (int i = 1; i < n; i++) mx = c[i].logit > mx ? c[i].logit : mx;
    double sum = 0;
    for (int i = 0; i < n; i++) {
        c[i].p = expf(c[i].logit - mx);
        sum += c[i].p;
    }
    if (p->top_p < 1.0f) {
        /* widen a selected-and-sorted prefix until it holds the nucleus */
        for (int k = n < 256 ? n : 256;; k = k * 4 < n ? k * 4 : n) {
            if (k < n) select_top(c, n, k);
            qsort(c, (size_t)k, sizeof *c, cand_cmp);
            double cum = 0;
            int keep = -1;
            for (int i = 0; i < k; i++) {
                cum += c[i].p / sum;
                if (cum >= p->top_p) { keep = i + 1; break; }
            }
            if (keep > 0) { n = keep; break; }
            if (k == n) break;
        }
    }
    /* min-p: relative to the most likely token (p == 1 after the shift);
     * a filter in place, order kept, so no sorting is needed */
    if (p->min_p > 0.0f) {
        int keep = 0;
        for (int i = 0; i < n; i++)
            if (c[i].p >= p->min_p) c[keep++] = c[i];
        n = keep;
    }
    /* the draw walks the candidates in their (deterministic) array order */
    sum = 0;
    for (int i = 0; i < n; i++) {
        c[i].p = expf((c[i].logit - mx) / p->temp);
        sum += c[i].p;
    }
    double u = (double)qrng_uniform(&s->rng) * sum, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += c[i].p;
        if (u < acc) return c[i].id;
    }
    return c[n - 1].id;
}

float sampler_logprobs(sampler *s, const float *logits, int32_t token, int n_top, token_logprob *top) {
    int nv = s->n_vocab;
    float mx = -INFINITY;
    for (int i = 0; i < nv; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0;
    for (int i = 0; i < nv; i++) sum += exp((double)logits[i] - mx);
    double lse = mx + log(sum);
    if (n_top > 0 && top) {
        cand *c = s->c;
        for (int i = 0; i < nv; i++) c[i] = (cand){i, logits[i], 0};
        if (n_top > nv) n_top = nv;
        if (n_top < nv) select_top(c, nv, n_top);
        qsort(c, (size_t)n_top, sizeof *c, cand_cmp);
        for (int i = 0; i < n_top; i++) top[i] = (token_logprob){c[i].id, (float)(c[i].logit - lse)};
    }
    return (float)(logits[token] - lse);
}
