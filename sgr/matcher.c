/* matcher.c — one generation's state over a compiled grammar: the history of
 * head sets (one per accepted byte) so tokens roll back by truncation, the
 * end/done tests, shortest completions and forced bytes. */
#include <stdlib.h>
#include <string.h>

#include "sgr/matcher_int.h"

static bool steps_push(sgr_matcher *m, mstep s) {
    if (m->n_steps == m->cap_steps) {
        size_t nc = m->cap_steps ? m->cap_steps * 2 : 256;
        mstep *q = realloc(m->steps, nc * sizeof *q);
        if (!q) return false;
        m->steps = q;
        m->cap_steps = nc;
    }
    m->steps[m->n_steps++] = s;
    return true;
}

static bool marks_push(sgr_matcher *m, size_t v) {
    if (m->n_marks == m->cap_marks) {
        size_t nc = m->cap_marks ? m->cap_marks * 2 : 256;
        size_t *q = realloc(m->marks, nc * sizeof *q);
        if (!q) return false;
        m->marks = q;
        m->cap_marks = nc;
    }
    m->marks[m->n_marks++] = v;
    m->epoch++;
    return true;
}

void matcher_truncate(sgr_matcher *m, size_t n_steps) {
    m->n_steps = n_steps;
    const mstep *t = &m->steps[n_steps - 1];
    m->r.n_hs = t->off + t->n;
}

void sgr_matcher_reset(sgr_matcher *m) {
    prun_clear_frames(&m->r);
    m->r.n_hs = 0;
    m->n_steps = 0;
    m->n_marks = 0;
    m->plan_n = 0;
    m->epoch++;
    m->plan_at = 0;
    prun_begin(&m->r);
    unsigned fl = prun_closure(&m->r, m->g->rule_start[m->g->start_rule], FR_EMPTY);
    steps_push(m, (mstep){0, (uint32_t)m->r.n_hs, (uint8_t)(fl & PR_END)});
}

int sgr_matcher_new(const sgr_grammar *g, const sgr_vocab *v, sgr_matcher **out, qerr *e) {
    *out = NULL;
    sgr_matcher *m = calloc(1, sizeof *m);
    if (!m) return qerr_set(e, "out of memory");
    m->g = g;
    m->v = v;
    if (prun_init(&m->r, g) < 0) { free(m); return qerr_set(e, "out of memory"); }
    m->steps = malloc(256 * sizeof *m->steps);
    m->cap_steps = 256;
    if (!m->steps) { sgr_matcher_free(m); return qerr_set(e, "out of memory"); }
    if (v) {
        m->cache = tm_cache_get(g, v);
        if (!m->cache) { sgr_matcher_free(m); return qerr_set(e, "out of memory"); }
    }
    sgr_matcher_reset(m);
    if (m->r.oom) { sgr_matcher_free(m); return qerr_set(e, "out of memory"); }
    *out = m;
    return 0;
}

void sgr_matcher_free(sgr_matcher *m) {
    if (!m) return;
    prun_free(&m->r);
    if (m->wm_on) {
        pmemo_free(&m->wm);
        prun_free(&m->wr);
    }
    free(m->wstk);
    free(m->steps);
    free(m->marks);
    free(m->plan);
    free(m->mask);
    free(m->work);
    free(m->lv);
    free(m->lvc);
    free(m);
}

const mstep *matcher_top(const sgr_matcher *m) { return &m->steps[m->n_steps - 1]; }

/* Appends the steps for s[0..n) without a mark; false (and nothing
 * appended) if some byte is rejected. */
bool matcher_feed(sgr_matcher *m, const char *s, size_t n) {
    size_t n0 = m->n_steps;
    if (matcher_top(m)->flags & MS_EOG) return n == 0;
    for (size_t i = 0; i < n; i++) {
        const mstep *t = matcher_top(m);
        size_t start = m->r.n_hs, nn;
        unsigned fl = prun_step(&m->r, t->off, t->n, (uint8_t)s[i], &nn);
        if (m->r.oom || (nn == 0 && !(fl & PR_END)) || !steps_push(m, (mstep){start, (uint32_t)nn, (uint8_t)(fl & PR_END)})) {
            matcher_truncate(m, n0);
            return false;
        }
    }
    return true;
}

int sgr_matcher_accept_bytes(sgr_matcher *m, const char *s, size_t n) {
    size_t n0 = m->n_steps;
    if (!matcher_feed(m, s, n)) return -1;
    if (!marks_push(m, n0)) { matcher_truncate(m, n0); return -1; }
    return 0;
}

int sgr_matcher_accept_token(sgr_matcher *m, int32_t tok) {
    const sgr_vocab *v = m->v;
    if (!v || tok < 0 || (uint32_t)tok >= v->n_vocab) return -1;
    if (v->eog[tok]) {
        const mstep *t = matcher_top(m);
        if (!(t->flags & PR_END) || (t->flags & MS_EOG)) return -1;
        size_t n0 = m->n_steps;
        if (!steps_push(m, (mstep){t->off, t->n, (uint8_t)(t->flags | MS_EOG)})) return -1;
        if (!marks_push(m, n0)) { matcher_truncate(m, n0); return -1; }
        return 0;
    }
    uint32_t a = v->off[tok], b = v->off[tok + 1];
    if (a == b) return -1;
    return sgr_matcher_accept_bytes(m, v->buf + a, b - a);
}

int sgr_matcher_rollback(sgr_matcher *m, size_t n) {
    if (n > m->n_marks) return -1;
    if (n == 0) return 0;
    m->n_marks -= n;
    m->epoch++;
    matcher_truncate(m, m->marks[m->n_marks]);
    return 0;
}

size_t sgr_matcher_n_accepted(const sgr_matcher *m) { return m->n_marks; }

bool sgr_matcher_can_end(const sgr_matcher *m) { return matcher_top(m)->flags & PR_END; }

bool sgr_matcher_done(const sgr_matcher *m) {
    const mstep *t = matcher_top(m);
    return (t->flags & MS_EOG) || t->n == 0;
}

size_t sgr_matcher_min_bytes(const sgr_matcher *m) {
    const mstep *t = matcher_top(m);
    if (t->flags & PR_END) return 0;
    uint64_t best = UINT64_MAX;
    for (uint32_t i = 0; i < t->n; i++) {
        uint64_t c = prun_head_cost(&m->r, m->r.hs[t->off + i]);
        if (c < best) best = c;
    }
    return best > SIZE_MAX ? SIZE_MAX : (size_t)best;
}

typedef struct sbuf { char *s; size_t n, cap; bool oom; } sbuf;

static void sput(sbuf *b, uint8_t c) {
    if (b->oom) return;
    if (b->n + 2 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 64;
        char *q = realloc(b->s, nc);
        if (!q) { b->oom = true; return; }
        b->s = q;
        b->cap = nc;
    }
    b->s[b->n++] = (char)c;
    b->s[b->n] = 0;
}

/* The shortest path from st to its rule's FINAL: EPS states follow via[],
 * which Dijkstra set from states finalized earlier, so this terminates. */
static void gen_path(const sgr_grammar *g, uint32_t st, sbuf *b, uint32_t **rs, size_t *cap) {
    size_t n = 0;
    uint32_t s = st;
    for (;;) {
        const pstate *p = &g->st[s];
        if (b->oom) return;
        switch (p->kind) {
        case PS_BYTE: {
            const uint8_t *c = g->cls[p->a];
            unsigned k = 0;
            while (k < 256 && !cls_has(c, (uint8_t)k)) k++;
            sput(b, (uint8_t)k);
            s = p->b;
            break;
        }
        case PS_EPS: s = g->via[s]; break;
        case PS_CALL:
            if (n == *cap) {
                size_t nc = *cap ? *cap * 2 : 64;
                uint32_t *q = realloc(*rs, nc * sizeof *q);
                if (!q) { b->oom = true; return; }
                *rs = q;
                *cap = nc;
            }
            (*rs)[n++] = p->b;
            s = g->rule_start[p->a];
            break;
        default:
            if (n == 0) return;
            s = (*rs)[--n];
            break;
        }
    }
}

int matcher_shortest_from(const sgr_matcher *m, char **out, size_t *n, qerr *e) {
    const mstep *t = matcher_top(m);
    sbuf b = {0};
    sput(&b, 0);
    b.n = 0;
    if (!(t->flags & PR_END) && t->n) {
        uint64_t best = UINT64_MAX;
        phead bh = {0, 0};
        for (uint32_t i = 0; i < t->n; i++) {
            uint64_t c = prun_head_cost(&m->r, m->r.hs[t->off + i]);
            if (c < best) best = c, bh = m->r.hs[t->off + i];
        }
        if (best > (uint64_t)1 << 30) { free(b.s); return qerr_set(e, "shortest completion too long (%llu bytes)", (unsigned long long)best); }
        uint32_t *rs = NULL;
        size_t cap = 0;
        gen_path(m->g, bh.st, &b, &rs, &cap);
        for (uint32_t k = bh.stk; k != FR_EMPTY && !b.oom; k = m->r.fr[k].parent) gen_path(m->g, m->r.fr[k].ret, &b, &rs, &cap);
        free(rs);
    }
    if (b.oom) { free(b.s); return qerr_set(e, "out of memory"); }
    *out = b.s;
    *n = b.n;
    return 0;
}

int sgr_matcher_shortest(const sgr_matcher *m, char **out, size_t *n, qerr *e) { return matcher_shortest_from(m, out, n, e); }

int sgr_matcher_forced(const sgr_matcher *cm, char **out, size_t *n, qerr *e) {
    sgr_matcher *m = (sgr_matcher *)cm; /* explores forward and restores */
    size_t n0 = m->n_steps;
    sbuf b = {0};
    sput(&b, 0);
    b.n = 0;
    size_t lim = sgr_matcher_min_bytes(m);
    while (b.n < lim && !b.oom) {
        const mstep *t = matcher_top(m);
        if ((t->flags & (PR_END | MS_EOG)) || t->n == 0) break;
        uint8_t u[32] = {0};
        for (uint32_t i = 0; i < t->n; i++) {
            const uint8_t *c = m->g->cls[m->g->st[m->r.hs[t->off + i].st].a];
            for (int k = 0; k < 32; k++) u[k] |= c[k];
        }
        int cnt = 0, byte = 0;
        for (int k = 0; k < 256; k++)
            if (cls_has(u, (uint8_t)k)) cnt++, byte = k;
        if (cnt != 1) break;
        char ch = (char)byte;
        if (!matcher_feed(m, &ch, 1)) break;
        sput(&b, (uint8_t)byte);
    }
    matcher_truncate(m, n0);
    if (b.oom) { free(b.s); return qerr_set(e, "out of memory"); }
    *out = b.s;
    *n = b.n;
    return 0;
}
