/* schema_int.h — internals shared by schema.c (compiler) and validate.c.
 * Not part of the module's public interface. */
#ifndef QUIRE_SGR_SCHEMA_INT_H
#define QUIRE_SGR_SCHEMA_INT_H

#include "sgr.h"

/* A schema resource: a document root or a subschema with $id. */
struct schema_resource {
    char *uri;            /* absolute, without fragment */
    const json *root;
    schema_node *node;
    int draft;            /* 4, 6, 7, 2019, 2020 */
    bool has_dynamic;
};

typedef struct anchor_ent {
    char *uri;            /* "base" or "base#name" */
    schema_node *node;
    bool dynamic;         /* registered by $dynamicAnchor */
} anchor_ent;

typedef struct pending_ref {
    schema_node *node;
    bool dynamic;
} pending_ref;

typedef struct strix {
    uint32_t *slot;       /* index + 1; 0 = empty */
    size_t cap, n;
} strix;

typedef struct schema_internal {
    json **docs; size_t n_docs, cap_docs;          /* owned documents */
    schema_resource **res; size_t n_res, cap_res;
    anchor_ent *anchors; size_t n_anchors, cap_anchors;
    schema_node **nodes; size_t n_nodes, cap_nodes;
    pending_ref *pending; size_t n_pending, cap_pending;
    const json **map_k; schema_node **map_v; size_t map_n, map_cap; /* json -> node */
    size_t cap_unknown;
    strix ix_anchors, ix_dynamic, ix_res;
} schema_internal;

schema_node *schema_find_anchor(const schema_internal *in, const char *uri, bool dynamic_only);

/* Doubles an array's capacity when it is full. Out of memory aborts: these
 * arrays are bounded by the compile/validation budgets, so failure here is
 * not a property of the input. */
#define SGR_GROW(arr, n, cap) do { \
        if ((n) == (cap)) { \
            size_t nc_ = (cap) ? (cap) * 2 : 8; \
            void *np_ = realloc((arr), nc_ * sizeof *(arr)); \
            if (!np_) abort(); \
            (arr) = np_; \
            (cap) = nc_; \
        } \
    } while (0)

#endif
