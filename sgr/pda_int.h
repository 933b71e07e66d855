/* pda_int.h — the compiled grammar (a pushdown automaton over bytes) and the
 * head-set runner shared by the matcher, the token-mask cache and the
 * sampler. Internal to sgr/.
 *
 * Automaton: states of four kinds. BYTE consumes one byte of a 256-bit class
 * and goes to `next`; EPS branches to a list of states; CALL enters a rule
 * and continues at `ret` when it returns; FINAL ends the rule it belongs to
 * (pop). A configuration is a set of heads (BYTE state, stack) plus two
 * flags: the start rule ended with an empty stack (can_end) and, for the
 * per-state cache, the walk left the frame it started in (escaped). Stacks
 * are hash-consed frames (ret state, parent) in a per-runner table, so equal
 * stacks are equal ids and configurations dedupe exactly. A rule with one
 * call site returns to one known state (sret): a cache walk that reaches its
 * FINAL with the sentinel stack continues there instead of escaping. */
#ifndef QUIRE_SGR_PDA_INT_H
#define QUIRE_SGR_PDA_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "sgr/sgr.h"

enum { PS_BYTE, PS_EPS, PS_CALL, PS_FINAL };

#define PDA_INF UINT32_MAX           /* dist of a dead state */
#define PDA_MAX_STATES 4000000u      /* automaton limit ("grammar too large") */

typedef struct pstate {
    uint8_t kind;
    uint8_t tail;   /* CALL: ret reaches only FINAL, so no frame is pushed */
    uint32_t a;     /* BYTE: class; EPS: offset in eps[]; CALL/FINAL: rule */
    uint32_t b;     /* BYTE: next; EPS: count; CALL: ret */
} pstate;

typedef struct tm_cache tm_cache;

struct sgr_grammar {
    pstate *st;
    uint32_t n_st;
    uint32_t *eps;
    uint32_t n_eps;
    uint8_t (*cls)[32];
    uint32_t n_cls;
    uint32_t *rule_start;
    uint32_t n_rules;
    uint32_t start_rule;
    uint32_t *dist;      /* shortest bytes from a state to its rule's FINAL; PDA_INF dead */
    uint32_t *via;       /* EPS: the target on a shortest path */
    uint32_t *sret;      /* per rule: the state every return from it continues at, when
                            there is one (a single call site); PDA_INF otherwise */
    bool no_tail;        /* cold walks without the S-tail shortcut (tests, bench A/B) */
    pthread_mutex_t mu;  /* guards caches */
    tm_cache *caches;
};

static inline bool cls_has(const uint8_t *c, uint8_t b) { return c[b >> 3] >> (b & 7) & 1; }

/* Frames: id 0 is the empty stack, id 1 the "outside this frame" sentinel the
 * cache walks start from. */
#define FR_EMPTY 0u
#define FR_SENT 1u

typedef struct pframe { uint32_t ret, parent; uint64_t cum; } pframe;
typedef struct phead { uint32_t st, stk; } phead;

enum { PR_END = 1, PR_ESC = 2 };

typedef struct prun {
    const sgr_grammar *g;
    pframe *fr; uint32_t n_fr, cap_fr;
    uint32_t *fh; uint32_t fh_cap;          /* frame hash: id+1, 0 empty */
    phead *hs; size_t n_hs, cap_hs;         /* head arena */
    uint64_t *vk; uint32_t *vg; uint32_t v_cap, v_n, gen; /* visited set */
    phead *dfs; size_t n_dfs, cap_dfs;
    bool oom;
} prun;

int prun_init(prun *r, const sgr_grammar *g);
void prun_free(prun *r);
void prun_clear_frames(prun *r);
/* Closure of (st, stk) appended to the arena (dedup within the current
 * generation); returns PR_* flags. Call prun_begin first. */
void prun_begin(prun *r);
unsigned prun_closure(prun *r, uint32_t st, uint32_t stk);
/* Advances heads [off, off+n) by byte c; the result is appended at the end
 * of the arena. Returns PR_* flags; *out_n the number of new heads. */
unsigned prun_step(prun *r, size_t off, size_t n, uint8_t c, size_t *out_n);
uint64_t prun_head_cost(const prun *r, phead h);
/* The hash-consed frame (ret, parent) of r (sets r->oom on failure). */
uint32_t prun_frame(prun *r, uint32_t ret, uint32_t parent);

/* Configuration DFA memo for the cache walks (pda_memo.c). Id 0 is the
 * empty configuration. */
typedef struct pmemo {
    prun *r;
    phead *h; size_t n_h, cap_h;
    uint32_t *off, *cnt; uint8_t (*bytes)[32]; uint32_t n_cfg, cap_cfg;
    uint32_t *ch; uint32_t ch_cap;
    uint64_t *tk; uint32_t *tv; uint8_t *tf; uint32_t t_cap, t_n;
    uint32_t max_trans, max_heads;   /* pmemo_full past these (init: the defaults) */
} pmemo;
int pmemo_init(pmemo *m, prun *r);
void pmemo_free(pmemo *m);
void pmemo_clear(pmemo *m);           /* also clears the runner's frames */
bool pmemo_full(const pmemo *m);
/* Interns heads r->hs[off..off+n) (sorted in place). */
uint32_t pmemo_intern(pmemo *m, size_t off, size_t n, bool *oom);
uint32_t pmemo_step(pmemo *m, uint32_t id, uint8_t byte, unsigned *flags, bool *oom);

/* S-tail tables (vocab_tail.c): for a byte set S, the tokens whose bytes
 * after the first all lie in S, grouped by first byte and sorted by byte
 * length inside a group (tok/len[fb[b]..fb[b+1])), and the residual
 * sub-trie: trie nodes on a path to any other token, preorder; rskip[j] is
 * the index of the first node outside rn[j]'s subtree, rimp[j] whether
 * rn[j]'s own tokens are not S-tail. */
typedef struct vtail {
    uint8_t set[32];
    uint32_t fb[257];
    int32_t *tok; uint32_t *len; uint32_t n_tok;
    uint32_t *rn, *rskip; uint8_t *rimp; uint32_t n_rn;
    struct vtail *next;
} vtail;

/* Vocabulary (vocab.c). Trie in preorder: node i's subtree is [i, skip[i]). */
typedef struct tnode { uint32_t skip, depth, tok_off, tok_n; uint8_t byte; } tnode;

struct sgr_vocab {
    uint64_t uid;
    uint32_t n_vocab;
    uint32_t *off;          /* bytes of token i: buf[off[i]..off[i+1]) */
    char *buf;
    uint8_t *eog;           /* per token */
    tnode *tn; uint32_t n_tn;
    int32_t *toks;          /* tokens by trie node (tok_off, tok_n) */
    int32_t *eog_ids; uint32_t n_eog;
    uint32_t max_depth;     /* longest token, bytes */
    int32_t byte_tok[256];
    bool all_bytes;
    const struct tokenizer *tok;
    uint32_t tail_hist[256];/* trie nodes below depth 1, per byte (how useful an S-tail table is) */
    uint64_t tail_total;
    pthread_mutex_t tmu;    /* guards tails */
    vtail *tails;
};

/* The S-tail table of v for set (built on first use, shared, thread-safe);
 * NULL when out of memory or past the per-vocabulary limit. */
const vtail *vocab_tail_get(const sgr_vocab *v, const uint8_t set[32]);
void vocab_tails_free(vtail *t);

/* Token-mask cache (tokmask.c). */
void tm_caches_free(tm_cache *c);

#endif
