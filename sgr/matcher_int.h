/* matcher_int.h — the matcher's layout, shared by matcher.c, tokmask.c and
 * sample.c. Internal to sgr/. */
#ifndef QUIRE_SGR_MATCHER_INT_H
#define QUIRE_SGR_MATCHER_INT_H

#include "sgr/pda_int.h"

#define MS_EOG 8 /* step flag: the EOG token was accepted */

/* One configuration: heads hs[off..off+n) of the runner's arena. */
typedef struct mstep { size_t off; uint32_t n; uint8_t flags; } mstep;

struct sgr_matcher {
    const sgr_grammar *g;
    const sgr_vocab *v;
    tm_cache *cache;
    prun r;
    mstep *steps; size_t n_steps, cap_steps;   /* steps[0]: the start */
    size_t *marks; size_t n_marks, cap_marks;  /* n_steps before each accepted unit */
    /* budget plan (sample.c): tokens that close the document from the
     * state after plan_at accepted units */
    int32_t *plan; size_t plan_n, plan_pos, plan_cap;
    uint64_t epoch, plan_at;                   /* plan valid while plan_at == epoch */
    bool plan_lazy;                            /* plan = greedy spelling of the shortest completion */
    uint32_t *mask;
    float *work;
    size_t *lv; size_t cap_lv;                  /* trie-walk level offsets */
    uint8_t (*lvc)[32];                         /* trie-walk level byte sets */
    bool last_hit;
    /* mask-time walks of uncertain tokens (tokmask.c): a configuration memo
     * over a private runner, the real stack copied in; made on first use */
    prun wr;
    pmemo wm;
    bool wm_on;
    uint32_t *wstk; size_t cap_wstk;
};

const mstep *matcher_top(const sgr_matcher *m);
void matcher_truncate(sgr_matcher *m, size_t n_steps);
bool matcher_feed(sgr_matcher *m, const char *s, size_t n);

tm_cache *tm_cache_get(sgr_grammar const *g, const sgr_vocab *v);

#endif
