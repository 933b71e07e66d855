/* sample.c — the sampling stage: grammar mask, then the token budget by
 * rejection sampling with a plan to fall back on.
 *
 * Budget invariant. Let R be the budget of a call (tokens the caller may
 * still generate, this one included). Call a plan for a state a token list
 * whose bytes, appended to the text, make it a complete sentence (an empty
 * plan: the text is already complete).
 *   I(R): the matcher holds a plan P for its current state with |P| <= R.
 * Entry: if the held plan is stale, sgr_sample computes one (the shortest
 * completion, spelled by the tokenizer or greedily over the trie, the fewer
 * tokens); if none has |P| <= R the call fails, so every accepted token is
 * chosen under I(R). A drawn token t is kept only if a plan P' for the state
 * after t exists with |P'| <= R-1: either t = P[0] (P' = P[1..]), or the
 * shortest completion after t (min_bytes bytes) spells in <= R-1 tokens —
 * cheaply, min_bytes <= R-1 when every byte is a token (the greedy spelling
 * takes at most one token per byte), else by counting its spelling. Other
 * draws are masked out and redrawn; after MAX_TRIES failures t = P[0] is
 * taken, which always qualifies. EOG is drawable only when the text is
 * complete (the grammar mask), and ends generation. So every return leaves
 * I(R-1) for the next call, with budget R-1: by induction, while the caller
 * stays within its budget, the plan shrinks to empty by the time the budget
 * does, i.e. the text is complete when the budget runs out. Every plan token
 * passes the grammar mask (its bytes continue to a sentence, it has bytes,
 * it is not EOG), so following the plan never needs a masked token. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sgr/matcher_int.h"
#include "tokenizer/tokenizer.h"

#define MAX_TRIES 16

/* The tokenizer's spelling of s, if it spells exactly s (no added prefix). */
static int tok_spell(const sgr_vocab *v, const char *s, size_t n, int32_t **ids, size_t *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    if (!v->tok) return -1;
    qerr e;
    int32_t *t = NULL;
    size_t nt = 0;
    if (tokenizer_encode(v->tok, s, n, false, false, &t, &nt, &e) < 0) return -1;
    size_t p = 0;
    for (size_t i = 0; i < nt; i++) {
        if (t[i] < 0 || (uint32_t)t[i] >= v->n_vocab || v->eog[t[i]]) { free(t); return -1; }
        uint32_t a = v->off[t[i]], b = v->off[t[i] + 1];
        if (a == b || p + (b - a) > n || memcmp(s + p, v->buf + a, b - a) != 0) { free(t); return -1; }
        p += b - a;
    }
    if (p != n) { free(t); return -1; }
    *ids = t;
    *n_ids = nt;
    return 0;
}

/* The fewest-token spelling we find of the shortest completion from the
 * matcher's state; *n_ids = SIZE_MAX when it cannot be spelled. */
static int plan_for_state(sgr_matcher *m, int32_t **ids, size_t *n_ids, qerr *e) {
    char *s;
    size_t n;
    *ids = NULL;
    *n_ids = SIZE_MAX;
    if (sgr_matcher_shortest(m, &s, &n, e) < 0) return -1;
    int32_t *a = NULL, *b = NULL;
    size_t na = SIZE_MAX, nb = SIZE_MAX;
    if (sgr_vocab_greedy(m->v, s, n, &a, &na) < 0) na = SIZE_MAX;
    if (tok_spell(m->v, s, n, &b, &nb) < 0) nb = SIZE_MAX;
    free(s);
    if (nb < na) { free(a); *ids = b; *n_ids = nb; }
    else { free(b); *ids = a; *n_ids = na; }
    return 0;
}

static void plan_set(sgr_matcher *m, int32_t *ids, size_t n, bool lazy) {
    free(m->plan);
    m->plan = ids;
    m->plan_n = lazy ? 0 : n;
    m->plan_pos = 0;
    m->plan_lazy = lazy;
    m->plan_at = m->epoch;
}

static int plan_ensure(sgr_matcher *m, qerr *e) {
    if (m->plan_at == m->epoch && !m->plan_lazy) return 0;
    int32_t *ids;
    size_t n;
    if (plan_for_state(m, &ids, &n, e) < 0) return -1;
    if (n == SIZE_MAX) { free(ids); ids = NULL; }
    plan_set(m, ids, n, false);
    if (n == SIZE_MAX) m->plan_at = 0, m->plan_n = SIZE_MAX;
    return 0;
}

/* After t was accepted: does a plan of <= r1 tokens exist? Installs it. */
static int budget_ok(sgr_matcher *m, size_t r1, qerr *e) {
    if (m->v->all_bytes && sgr_matcher_min_bytes(m) <= r1) {
        plan_set(m, NULL, 0, true);
        return 1;
    }
    int32_t *ids;
    size_t n;
    if (plan_for_state(m, &ids, &n, e) < 0) return -1;
    if (n > r1) { free(ids); return 0; }
    plan_set(m, ids, n, false);
    return 1;
}

int32_t sgr_sample(sgr_matcher *m, struct sampler *s, float *logits, const int32_t *hist, int n_hist, int budget,
                   sgr_sample_stats *st, qerr *e) {
    sgr_sample_stats dummy;
    if (!st) st = &dummy;
    memset(st, 0, sizeof *st);
    const sgr_vocab *v = m->v;
    if (!v) return qerr_set(e, "sgr_sample: the matcher has no vocabulary");
    if (matcher_top(m)->flags & MS_EOG) return qerr_set(e, "sgr_sample: generation already ended (EOG accepted)");
    if (budget < 1) return qerr_set(e, "sgr_sample: token budget exhausted (%d)", budget);
    size_t nv = v->n_vocab, nw = (nv + 31) / 32;
    if (!m->mask) {
        m->mask = malloc(nw * sizeof *m->mask);
        m->work = malloc(nv * sizeof *m->work);
        if (!m->mask || !m->work) return qerr_set(e, "out of memory");
    }
    double t0 = q_now();
    /* the plan we may fall back on */
    if (m->plan_at != m->epoch && plan_ensure(m, e) < 0) return -1;
    bool complete = sgr_matcher_can_end(m);
    size_t plan_len = m->plan_lazy ? sgr_matcher_min_bytes(m)
                      : m->plan_n == SIZE_MAX ? SIZE_MAX : m->plan_n - m->plan_pos;
    if (!complete && plan_len > (size_t)budget) {
        if (plan_len == SIZE_MAX)
            return qerr_set(e, "sgr_sample: the vocabulary cannot spell a completion of the grammar");
        return qerr_set(e, "sgr_sample: no completion fits the remaining budget of %d tokens (needs %zu)", budget, plan_len);
    }
    double t1 = q_now();
    if (sgr_matcher_fill_mask(m, m->mask) < 0) return qerr_set(e, "sgr_sample: out of memory computing the token mask");
    st->cache_hit = m->last_hit;
    double t2 = q_now();
    st->t_mask = t2 - t1;
    size_t n_ok = 0;
    for (size_t i = 0; i < nv; i++) {
        if (!(m->mask[i >> 5] >> (i & 31) & 1)) logits[i] = -INFINITY;
        else if (logits[i] != -INFINITY) n_ok++;
    }
    for (int tries = 0; tries < MAX_TRIES && n_ok > 0; tries++) {
        memcpy(m->work, logits, nv * sizeof *m->work);
        int32_t t = sampler_sample(s, m->work, hist, n_hist);
        if (t < 0 || (size_t)t >= nv) break;
        if (logits[t] == -INFINITY) break; /* the sampler found nothing finite */
        if (v->eog[t]) {
            if (sgr_matcher_accept_token(m, t) < 0) return qerr_set(e, "sgr_sample: internal error accepting EOG");
            st->t_budget = q_now() - t2 + (t1 - t0);
            return t;
        }
        bool on_plan = !m->plan_lazy && m->plan_n != SIZE_MAX && m->plan_pos < m->plan_n && m->plan[m->plan_pos] == t;
        if (sgr_matcher_accept_token(m, t) < 0) return qerr_set(e, "sgr_sample: internal error: masked-in token %d rejected", t);
        if (on_plan) {
            m->plan_pos++;
            m->plan_at = m->epoch;
            st->t_budget = q_now() - t2 + (t1 - t0);
            return t;
        }
        int ok = budget_ok(m, (size_t)budget - 1, e);
        if (ok < 0) return -1;
        if (ok) {
            st->t_budget = q_now() - t2 + (t1 - t0);
            return t;
        }
        sgr_matcher_rollback(m, 1);
        m->plan_at = m->epoch; /* the held plan still belongs to this state */
        logits[t] = -INFINITY;
        n_ok--;
        st->n_resample++;
    }
    /* follow the plan */
    st->t_budget = q_now() - t2 + (t1 - t0);
    if (plan_len == 0 || plan_len == SIZE_MAX) {
        if (complete && v->n_eog) {
            int32_t t = v->eog_ids[0];
            if (sgr_matcher_accept_token(m, t) < 0) return qerr_set(e, "sgr_sample: internal error accepting EOG");
            return t;
        }
        return qerr_set(e, "sgr_sample: no token possible (the text is complete and the vocabulary has no end-of-generation token)");
    }
    if (m->plan_lazy) {
        m->plan_lazy = false;
        m->plan_at = 0;
        if (plan_ensure(m, e) < 0) return -1;
        if (m->plan_n == SIZE_MAX || m->plan_n == 0) return qerr_set(e, "sgr_sample: internal error: no plan");
    }
    int32_t t = m->plan[m->plan_pos];
    if (sgr_matcher_accept_token(m, t) < 0) return qerr_set(e, "sgr_sample: internal error: plan token %d rejected", t);
    m->plan_pos++;
    m->plan_at = m->epoch;
    return t;
}
