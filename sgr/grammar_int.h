/* grammar_int.h — the grammar builder's representation, shared by the front
 * ends (schema compiler, regex, choice, text) that write it and the
 * pushdown-automaton compiler that reads it. Not part of sgr.h: only sgr/
 * sees these structs. */
#ifndef QUIRE_SGR_GRAMMAR_INT_H
#define QUIRE_SGR_GRAMMAR_INT_H

#include "sgr/sgr.h"

enum gx_kind { GX_EMPTY, GX_LIT, GX_CLASS, GX_SEQ, GX_ALT, GX_REPEAT, GX_REF };

/* One expression node. Nodes are immutable once made and may be shared
 * (a DAG): front ends reuse a sub-expression by its handle. */
typedef struct gx_node {
    uint8_t kind;     /* enum gx_kind */
    uint32_t off, n;  /* LIT: bytes[off..off+n); SEQ/ALT: kids[off..off+n);
                         CLASS: classes[off] */
    uint32_t min, max;/* REPEAT bounds (max SGR_INF = unbounded) */
    int32_t a;        /* REPEAT: the repeated node; REF: rule id */
} gx_node;

typedef struct gx_rule {
    char *name;
    sgr_expr body;    /* SGR_EXPR_ERR until defined */
} gx_rule;

struct sgr_gb {
    gx_node *nodes; size_t n_nodes, cap_nodes;
    uint8_t *bytes; size_t n_bytes, cap_bytes;
    int32_t *kids; size_t n_kids, cap_kids;
    uint8_t (*classes)[32]; size_t n_classes, cap_classes;
    gx_rule *rules; size_t n_rules, cap_rules;
    sgr_expr empty_node;   /* the shared GX_EMPTY node, or -1 */
    sgr_gb_limits lim;
    char err[256];         /* first error; "" when none */
};

/* What a builder holds at one moment, so a front end can take back a
 * failed attempt (sgr_gb_rollback) and try another way. */
typedef struct gb_mark {
    size_t nodes, bytes, kids, classes, rules;
    sgr_expr empty_node;
} gb_mark;

gb_mark sgr_gb_mark(const sgr_gb *b);
void sgr_gb_rollback(sgr_gb *b, const gb_mark *m);

static inline const gx_node *gx_at(const sgr_gb *b, sgr_expr x) { return &b->nodes[x]; }

#endif
