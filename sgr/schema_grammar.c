/* schema_grammar.c — JSON Schema → grammar IR. Each schema node becomes one
 * rule (memoized, so recursive $refs are rules that refer to themselves).
 * A node is first merged with what applies in place ($ref targets, allOf
 * members, the chosen anyOf/oneOf branch) into one constraint set, which is
 * then emitted per instance type. Soundness first: every string the grammar
 * accepts validates (sgr/validate.c is the definition); where the full
 * language is awkward the grammar keeps a valid subset (compact text,
 * properties in schema order, no extra properties unless required, bounded
 * digits), and whatever it cannot enforce is refused with the keyword and
 * the schema location. enum/const values are filtered by running the
 * validator itself on them, so they are exact under any sibling keywords. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar_int.h"
#include "regex_int.h"
#include "schema_int.h"

#define MAX_MERGE_DEPTH 64
#define MAX_INLINE_DEPTH 24
#define MAX_EXPANSIONS 100000
#define ANY_DEPTH 3          /* nesting of "any JSON" values inside a schema */
#define ANY_KEY_LEN 16       /* longest key of an any-object (keys grow in length) */
#define MAX_ENUM_MULTIPLES 1000

/* ---- small vectors ------------------------------------------------------ */

typedef struct nlist { const schema_node **v; size_t n, cap; } nlist;

static void nl_push(nlist *l, const schema_node *x) {
    SGR_GROW(l->v, l->n, l->cap);
    l->v[l->n++] = x;
}
static bool nl_has(const nlist *l, const schema_node *x) {
    for (size_t i = 0; i < l->n; i++) if (l->v[i] == x) return true;
    return false;
}

typedef struct name { const char *s; size_t n; } name;
typedef struct namelist { name *v; size_t n, cap; } namelist;

static bool names_has(const namelist *l, const char *s, size_t n) {
    for (size_t i = 0; i < l->n; i++) if (l->v[i].n == n && !memcmp(l->v[i].s, s, n)) return true;
    return false;
}
static void names_add(namelist *l, const char *s, size_t n) {
    if (names_has(l, s, n)) return;
    SGR_GROW(l->v, l->n, l->cap);
    l->v[l->n++] = (name){s, n};
}

typedef struct xvec { sgr_expr *v; size_t n, cap; } xvec;
static void xv_add(xvec *a, sgr_expr x) {
    SGR_GROW(a->v, a->n, a->cap);
    a->v[a->n++] = x;
}

/* ---- context ------------------------------------------------------------ */

typedef struct memo_ent { const schema_node *n; int32_t rule; } memo_ent;

typedef struct sg {
    const schema *s;
    sgr_schema_opts o;
    sgr_gb *b;
    qerr *e;
    bool failed;
    sgr_unenforced *sk; size_t nsk, capsk;
    memo_ent *memo; size_t n_memo, cap_memo;
    sgr_expr ws, jchar, voidx;
    int32_t any_rule[ANY_DEPTH + 8];
    int inline_depth;
    size_t expansions;
    uint64_t int_cap;      /* largest integer written without bounds */
    int8_t int_safe[13];   /* per 10^-d: float_divides_integers, 0 unknown, 1 yes, -1 no */
    bool siblings;         /* conjoin the assertions beside draft <= 7 $refs */
} sg;

static const char *ptr_of(const schema_node *n) { return n && n->location && n->location[0] ? n->location : "(root)"; }

/* An unenforceable keyword: with best_effort recorded (returns true: skip
 * it), else the error (returns false). */
static bool unsup(sg *g, const schema_node *n, const char *kw, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static bool unsup(sg *g, const schema_node *n, const char *kw, const char *fmt, ...) {
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (g->o.best_effort) {
        for (size_t i = 0; i < g->nsk; i++)
            if (!strcmp(g->sk[i].keyword, kw) && !strcmp(g->sk[i].pointer, ptr_of(n))) return true;
        SGR_GROW(g->sk, g->nsk, g->capsk);
        snprintf(g->sk[g->nsk].keyword, sizeof g->sk[g->nsk].keyword, "%s", kw);
        snprintf(g->sk[g->nsk].pointer, sizeof g->sk[g->nsk].pointer, "%s", ptr_of(n));
        g->nsk++;
        return true;
    }
    if (!g->failed) {
        g->failed = true;
        qerr_set(g->e, "unsupported: %s at %s", msg, ptr_of(n));
    }
    return false;
}

/* Records an annotation-only keyword (an unknown format) in both modes. */
static void note(sg *g, const schema_node *n, const char *kw) {
    for (size_t i = 0; i < g->nsk; i++)
        if (!strcmp(g->sk[i].keyword, kw) && !strcmp(g->sk[i].pointer, ptr_of(n))) return;
    SGR_GROW(g->sk, g->nsk, g->capsk);
    snprintf(g->sk[g->nsk].keyword, sizeof g->sk[g->nsk].keyword, "%s", kw);
    snprintf(g->sk[g->nsk].pointer, sizeof g->sk[g->nsk].pointer, "%s", ptr_of(n));
    g->nsk++;
}

static sgr_expr hard_fail(sg *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static sgr_expr hard_fail(sg *g, const char *fmt, ...) {
    if (!g->failed) {
        char msg[400];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        g->failed = true;
        qerr_set(g->e, "%s", msg);
    }
    return SGR_EXPR_ERR;
}

/* ---- IR helpers that know "matches nothing" ----------------------------- */

static bool isvoid(sg *g, sgr_expr x) {
    return x >= 0 && gx_at(g->b, x)->kind == GX_ALT && gx_at(g->b, x)->n == 0;
}
static sgr_expr vd(sg *g) { return g->voidx; }
static sgr_expr seqv(sg *g, const sgr_expr *k, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (k[i] < 0) return SGR_EXPR_ERR;
        if (isvoid(g, k[i])) return vd(g);
    }
    return sgr_gb_seq(g->b, k, n);
}
static sgr_expr seq2v(sg *g, sgr_expr a, sgr_expr c) { sgr_expr k[2] = {a, c}; return seqv(g, k, 2); }
static sgr_expr seq3v(sg *g, sgr_expr a, sgr_expr c, sgr_expr d) { sgr_expr k[3] = {a, c, d}; return seqv(g, k, 3); }
static sgr_expr altv(sg *g, const sgr_expr *k, size_t n) {
    sgr_expr *t = malloc((n ? n : 1) * sizeof *t);
    if (!t) return hard_fail(g, "out of memory");
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (k[i] < 0) { free(t); return SGR_EXPR_ERR; }
        if (!isvoid(g, k[i])) t[m++] = k[i];
    }
    sgr_expr x = m ? sgr_gb_alt(g->b, t, m) : vd(g);
    free(t);
    return x;
}
static sgr_expr alt2v(sg *g, sgr_expr a, sgr_expr c) { sgr_expr k[2] = {a, c}; return altv(g, k, 2); }
static sgr_expr lit(sg *g, const char *s) { return sgr_gb_str(g->b, s); }
static sgr_expr opt(sg *g, sgr_expr x) { return isvoid(g, x) ? sgr_gb_empty(g->b) : sgr_gb_repeat(g->b, x, 0, 1); }
/* A punctuation token with optional whitespace after it. */
static sgr_expr tok(sg *g, const char *s) { return g->o.ws > 0 ? seq2v(g, lit(g, s), g->ws) : lit(g, s); }
/* Whitespace before a token (closing brackets). */
static sgr_expr pre(sg *g, const char *s) { return g->o.ws > 0 ? seq2v(g, g->ws, lit(g, s)) : lit(g, s); }

static int validate_at(const sg *g, const schema_node *n, const json *v) {
    schema tmp = *g->s;
    tmp.root = (schema_node *)n;
    return schema_validate(&tmp, v, NULL);
}

static bool valid_all(const sg *g, const nlist *nodes, const json *v) {
    for (size_t i = 0; i < nodes->n; i++)
        if (validate_at(g, nodes->v[i], v) != 1) return false;
    return true;
}

/* The compact canonical text of a value, as a literal. */
static sgr_expr value_lit(sg *g, const json *v) {
    char *t;
    size_t n;
    qerr e;
    if (json_serialize(v, NULL, &t, &n, &e)) return hard_fail(g, "%s", e.msg);
    sgr_expr x = sgr_gb_lit(g->b, t, n);
    free(t);
    return x;
}

static sgr_expr key_lit(sg *g, const char *s, size_t n) {
    json j = {.type = JSON_STRING};
    j.u.str.s = (char *)s;
    j.u.str.len = n;
    return value_lit(g, &j);
}

static size_t cp_count(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) if (((unsigned char)s[i] & 0xC0) != 0x80) k++;
    return k;
}

/* ---- constraint sets ---------------------------------------------------- */

typedef struct cprop { const char *name; size_t len; nlist nodes; } cprop;
typedef struct appl { const schema_node *n; bool one; } appl;

typedef struct cs {
    nlist all;                 /* every node merged in (enum values are checked against all) */
    bool empty;                /* a false schema was merged */
    unsigned types; bool typed;
    bool has_vals; const json *valsrc; bool val_is_const;
    int64_t min_len, max_len;
    nlist pat;                 /* nodes with a pattern */
    nlist fmt;                 /* nodes with a format */
    const json *lo, *hi; bool lo_ex, hi_ex;
    const json *mult;
    cprop *props; size_t n_props, cap_props;
    namelist req;
    nlist addl;                /* nodes with additionalProperties */
    nlist ppn;                 /* nodes with patternProperties */
    nlist pnames;              /* propertyNames schemas */
    int64_t min_props, max_props;
    nlist arr;                 /* nodes with prefixItems/items */
    int64_t min_items, max_items; bool unique; const schema_node *unique_node;
    nlist contains;            /* nodes with contains */
    appl *ap; size_t n_ap, cap_ap;
    nlist nots, deps, uneval_p, uneval_i;
    bool obj_kw, arr_kw, str_kw, num_kw;
} cs;

static void cs_init(cs *c) {
    memset(c, 0, sizeof *c);
    c->types = ST_NULL | ST_BOOLEAN | ST_OBJECT | ST_ARRAY | ST_NUMBER | ST_STRING | ST_INTEGER;
    c->max_len = c->max_props = c->max_items = -1;
}

static void cs_free(cs *c) {
    free(c->all.v); free(c->pat.v); free(c->fmt.v);
    for (size_t i = 0; i < c->n_props; i++) free(c->props[i].nodes.v);
    free(c->props); free(c->req.v); free(c->addl.v); free(c->ppn.v); free(c->pnames.v);
    free(c->arr.v); free(c->contains.v); free(c->ap); free(c->nots.v); free(c->deps.v);
    free(c->uneval_p.v); free(c->uneval_i.v);
}

static cprop *cs_prop(cs *c, const char *nm, size_t len, bool add) {
    for (size_t i = 0; i < c->n_props; i++)
        if (c->props[i].len == len && !memcmp(c->props[i].name, nm, len)) return &c->props[i];
    if (!add) return NULL;
    SGR_GROW(c->props, c->n_props, c->cap_props);
    c->props[c->n_props] = (cprop){nm, len, {0}};
    return &c->props[c->n_props++];
}

#define HAS(n, k) (((n)->kw >> (k)) & 1)
#define KWB(k) (1ull << (k))

static const uint64_t OBJ_KWS = KWB(SK_PROPERTIES) | KWB(SK_REQUIRED) | KWB(SK_ADDITIONAL_PROPERTIES) |
                                KWB(SK_PATTERN_PROPERTIES) | KWB(SK_PROPERTY_NAMES) | KWB(SK_MIN_PROPERTIES) |
                                KWB(SK_MAX_PROPERTIES) | KWB(SK_DEPENDENT_REQUIRED) | KWB(SK_DEPENDENT_SCHEMAS) |
                                KWB(SK_UNEVALUATED_PROPERTIES);
static const uint64_t ARR_KWS = KWB(SK_ITEMS) | KWB(SK_PREFIX_ITEMS) | KWB(SK_CONTAINS) | KWB(SK_MIN_ITEMS) |
                                KWB(SK_MAX_ITEMS) | KWB(SK_UNIQUE_ITEMS) | KWB(SK_UNEVALUATED_ITEMS);
static const uint64_t STR_KWS = KWB(SK_MIN_LENGTH) | KWB(SK_MAX_LENGTH) | KWB(SK_PATTERN) | KWB(SK_FORMAT);
static const uint64_t NUM_KWS = KWB(SK_MINIMUM) | KWB(SK_MAXIMUM) | KWB(SK_EXCLUSIVE_MINIMUM) |
                                KWB(SK_EXCLUSIVE_MAXIMUM) | KWB(SK_MULTIPLE_OF);

static bool decided(const appl *d, size_t nd, const schema_node *n, bool one) {
    for (size_t i = 0; i < nd; i++) if (d[i].n == n && d[i].one == one) return true;
    return false;
}

/* Merges node n (and what applies in place) into c. Returns false on a hard
 * failure (the error is set). */
static bool collect(sg *g, cs *c, const schema_node *n, int depth, const appl *dec, size_t nd) {
    if (g->failed) return false;
    if (depth > MAX_MERGE_DEPTH) return unsup(g, n, "$ref", "$ref/allOf chain deeper than %d", MAX_MERGE_DEPTH);
    if (n->is_bool) {
        if (!n->bool_val) c->empty = true;
        return true;
    }
    if (nl_has(&c->all, n)) return true;
    nl_push(&c->all, n);
    uint64_t kw = n->kw;
    if (kw & OBJ_KWS) c->obj_kw = true;
    if (kw & ARR_KWS) c->arr_kw = true;
    if (kw & STR_KWS) c->str_kw = true;
    if (kw & NUM_KWS) c->num_kw = true;
    if (HAS(n, SK_TYPE)) {
        unsigned t = n->types;
        c->types &= t;
        c->typed = true;
    }
    if (HAS(n, SK_ENUM)) { c->has_vals = true; if (!c->valsrc || (!c->val_is_const && json_size(n->enum_values) < json_size(c->valsrc))) c->valsrc = n->enum_values; }
    if (HAS(n, SK_CONST)) { c->has_vals = true; c->valsrc = n->const_value; c->val_is_const = true; }
    if (HAS(n, SK_MIN_LENGTH) && n->min_length > c->min_len) c->min_len = n->min_length;
    if (HAS(n, SK_MAX_LENGTH) && (c->max_len < 0 || n->max_length < c->max_len)) c->max_len = n->max_length;
    if (HAS(n, SK_PATTERN)) nl_push(&c->pat, n);
    if (HAS(n, SK_FORMAT)) nl_push(&c->fmt, n);
    if (HAS(n, SK_MINIMUM)) {
        int r = c->lo ? json_number_cmp(n->minimum, c->lo) : 1;
        if (r > 0) { c->lo = n->minimum; c->lo_ex = false; }
    }
    if (HAS(n, SK_EXCLUSIVE_MINIMUM)) {
        int r = c->lo ? json_number_cmp(n->exclusive_minimum, c->lo) : 1;
        if (r >= 0) { c->lo = n->exclusive_minimum; c->lo_ex = true; }
    }
    if (HAS(n, SK_MAXIMUM)) {
        int r = c->hi ? json_number_cmp(n->maximum, c->hi) : -1;
        if (r < 0) { c->hi = n->maximum; c->hi_ex = false; }
    }
    if (HAS(n, SK_EXCLUSIVE_MAXIMUM)) {
        int r = c->hi ? json_number_cmp(n->exclusive_maximum, c->hi) : -1;
        if (r <= 0) { c->hi = n->exclusive_maximum; c->hi_ex = true; }
    }
    if (HAS(n, SK_MULTIPLE_OF)) {
        if (!c->mult) c->mult = n->multiple_of;
        else if (json_number_cmp(c->mult, n->multiple_of) != 0) {
            int a = json_number_multiple_of(n->multiple_of, c->mult), b = json_number_multiple_of(c->mult, n->multiple_of);
            if (a == 1) c->mult = n->multiple_of;
            else if (b != 1 && !unsup(g, n, "multipleOf", "two unrelated multipleOf values")) return false;
        }
    }
    if (n->n_props) {
        /* in the order the schema writes them (n->props is sorted by name) */
        const json *po = json_get(n->src, "properties");
        for (size_t i = 0; i < json_size(po); i++) {
            const json_member *m = &po->u.obj.m[i];
            for (size_t q = 0; q < n->n_props; q++)
                if (n->props[q].len == m->klen && !memcmp(n->props[q].name, m->key, m->klen)) {
                    nl_push(&cs_prop(c, n->props[q].name, n->props[q].len, true)->nodes, n->props[q].s);
                    break;
                }
        }
        if (json_size(po) != n->n_props) /* not expected: fall back to the sorted list */
            for (size_t q = 0; q < n->n_props; q++)
                if (!cs_prop(c, n->props[q].name, n->props[q].len, false) || !nl_has(&cs_prop(c, n->props[q].name, n->props[q].len, false)->nodes, n->props[q].s))
                    nl_push(&cs_prop(c, n->props[q].name, n->props[q].len, true)->nodes, n->props[q].s);
    }
    if (n->required)
        for (size_t i = 0; i < json_size(n->required); i++) {
            const json *k = json_at(n->required, i);
            names_add(&c->req, json_string(k), json_string_len(k));
        }
    if (HAS(n, SK_ADDITIONAL_PROPERTIES)) nl_push(&c->addl, n);
    if (HAS(n, SK_PATTERN_PROPERTIES)) nl_push(&c->ppn, n);
    if (n->property_names) nl_push(&c->pnames, n->property_names);
    if (HAS(n, SK_MIN_PROPERTIES) && n->min_props > c->min_props) c->min_props = n->min_props;
    if (HAS(n, SK_MAX_PROPERTIES) && (c->max_props < 0 || n->max_props < c->max_props)) c->max_props = n->max_props;
    if (n->n_prefix_items || n->items) nl_push(&c->arr, n);
    if (HAS(n, SK_MIN_ITEMS) && n->min_items > c->min_items) c->min_items = n->min_items;
    if (HAS(n, SK_MAX_ITEMS) && (c->max_items < 0 || n->max_items < c->max_items)) c->max_items = n->max_items;
    if (n->unique_items) { c->unique = true; c->unique_node = n; }
    if (n->contains) nl_push(&c->contains, n);
    if (n->n_any_of && !decided(dec, nd, n, false)) { SGR_GROW(c->ap, c->n_ap, c->cap_ap); c->ap[c->n_ap++] = (appl){n, false}; }
    if (n->n_one_of && !decided(dec, nd, n, true)) { SGR_GROW(c->ap, c->n_ap, c->cap_ap); c->ap[c->n_ap++] = (appl){n, true}; }
    if (n->not_) nl_push(&c->nots, n);
    if (n->n_dep_required || n->n_dep_schemas) nl_push(&c->deps, n);
    if (n->unevaluated_props) nl_push(&c->uneval_p, n);
    if (n->unevaluated_items) nl_push(&c->uneval_i, n);
    if (HAS(n, SK_IF) && n->if_ && (n->then_ || n->else_)) {
        /* exact only when the condition is a boolean schema */
        if (n->if_->is_bool) {
            const schema_node *br = n->if_->bool_val ? n->then_ : n->else_;
            if (br && !collect(g, c, br, depth + 1, dec, nd)) return false;
        } else if (!unsup(g, n, "if", "if/then/else")) return false;
    }
    if (HAS(n, SK_DYNAMIC_REF) && !unsup(g, n, "$dynamicRef", "$dynamicRef")) return false;
    if (n->ref && !collect(g, c, n->ref, depth + 1, dec, nd)) return false;
    if (g->siblings && n->ref_siblings && !collect(g, c, n->ref_siblings, depth + 1, dec, nd)) return false;
    for (size_t i = 0; i < n->n_all_of; i++)
        if (!collect(g, c, n->all_of[i], depth + 1, dec, nd)) return false;
    return !g->failed;
}

/* ---- forward declarations ----------------------------------------------- */

static sgr_expr gen_nodes(sg *g, const schema_node *const *nodes, size_t n, const appl *dec, size_t nd,
                          const namelist *forbid, const namelist *force);
static sgr_expr node_ref(sg *g, const schema_node *n);
static sgr_expr any_value(sg *g, int depth);

/* The value of a member/item constrained by a list of nodes. */
static sgr_expr value_of(sg *g, const nlist *nodes) {
    if (nodes->n == 0) return any_value(g, ANY_DEPTH);
    if (nodes->n == 1) return node_ref(g, nodes->v[0]);
    if (g->inline_depth > MAX_INLINE_DEPTH) {
        unsup(g, nodes->v[0], "allOf", "merged subschemas recurse deeper than %d", MAX_INLINE_DEPTH);
        return g->failed ? SGR_EXPR_ERR : any_value(g, ANY_DEPTH);
    }
    g->inline_depth++;
    sgr_expr x = gen_nodes(g, nodes->v, nodes->n, NULL, 0, NULL, NULL);
    g->inline_depth--;
    return x;
}

/* ---- scalars ------------------------------------------------------------ */

static sgr_expr digits(sg *g, uint32_t lo, uint32_t hi) { return sgr_gb_repeat(g->b, sgr_gb_range(g->b, '0', '9'), lo, hi); }

/* Decimal strings of equal length in [x, y] (x <= y), leading zeros allowed. */
static sgr_expr fixed_range(sg *g, const char *x, const char *y, size_t L) {
    if (L == 0) return sgr_gb_empty(g->b);
    bool xz = true, y9 = true;
    for (size_t i = 1; i < L; i++) { if (x[i] != '0') xz = false; if (y[i] != '9') y9 = false; }
    if (x[0] == y[0]) return seq2v(g, sgr_gb_lit(g->b, x, 1), fixed_range(g, x + 1, y + 1, L - 1));
    if (xz && y9) return seq2v(g, sgr_gb_range(g->b, (uint8_t)x[0], (uint8_t)y[0]), digits(g, (uint32_t)L - 1, (uint32_t)L - 1));
    char nines[24], zeros[24];
    memset(nines, '9', L); memset(zeros, '0', L);
    xvec a = {0};
    xv_add(&a, seq2v(g, sgr_gb_lit(g->b, x, 1), fixed_range(g, x + 1, nines, L - 1)));
    if (x[0] + 1 <= y[0] - 1)
        xv_add(&a, seq2v(g, sgr_gb_range(g->b, (uint8_t)(x[0] + 1), (uint8_t)(y[0] - 1)), digits(g, (uint32_t)L - 1, (uint32_t)L - 1)));
    xv_add(&a, seq2v(g, sgr_gb_lit(g->b, y, 1), fixed_range(g, zeros, y + 1, L - 1)));
    sgr_expr r = altv(g, a.v, a.n);
    free(a.v);
    return r;
}

/* Non-negative integers in [lo, hi], no leading zeros. */
static sgr_expr uint_range(sg *g, uint64_t lo, uint64_t hi) {
    if (lo > hi) return vd(g);
    xvec a = {0};
    uint64_t p = 1;
    for (int L = 1; L <= 20; L++) {
        uint64_t start = L == 1 ? 0 : p, end = L >= 20 ? UINT64_MAX : p * 10 - 1;
        if (start > hi) break;
        uint64_t x = lo > start ? lo : start, y = hi < end ? hi : end;
        if (x <= y) {
            char xs[24], ys[24];
            snprintf(xs, sizeof xs, "%llu", (unsigned long long)x);
            snprintf(ys, sizeof ys, "%llu", (unsigned long long)y);
            xv_add(&a, fixed_range(g, xs, ys, strlen(xs)));
        }
        if (L < 20) p *= 10;
    }
    sgr_expr r = altv(g, a.v, a.n);
    free(a.v);
    return r;
}

/* Compares the integer v with number b exactly. */
static int cmp_int(int64_t v, const json *b) {
    char t[32];
    snprintf(t, sizeof t, "%lld", (long long)v);
    json *j = NULL;
    qerr e;
    if (json_parse(t, strlen(t), NULL, &j, &e)) return 0;
    int r = json_number_cmp(j, b);
    json_free(j);
    return r;
}

/* Smallest integer >= b (> b when ex), clamped to [-cap-1, cap+1]. */
static int64_t int_ceil(const json *b, bool ex, int64_t cap) {
    double d = b->u.num.d;
    if (d > (double)cap) return cap + 1;
    if (d < -(double)cap) return -cap;
    int64_t v = (int64_t)floor(d) - 1;
    while (ex ? cmp_int(v, b) <= 0 : cmp_int(v, b) < 0) v++;
    return v;
}
static int64_t int_floor(const json *b, bool ex, int64_t cap) {
    double d = b->u.num.d;
    if (d > (double)cap) return cap;
    if (d < -(double)cap) return -cap - 1;
    int64_t v = (int64_t)ceil(d) + 1;
    while (ex ? cmp_int(v, b) >= 0 : cmp_int(v, b) > 0) v--;
    return v;
}

/* Integers in [lo, hi] (lo <= hi within +-cap). */
static sgr_expr int_range(sg *g, int64_t lo, int64_t hi) {
    if (lo > hi) return vd(g);
    xvec a = {0};
    if (hi >= 0) xv_add(&a, uint_range(g, lo > 0 ? (uint64_t)lo : 0, (uint64_t)hi));
    if (lo < 0) {
        uint64_t nlo = hi < 0 ? (uint64_t)(-hi) : 1, nhi = (uint64_t)(-lo);
        xv_add(&a, seq2v(g, lit(g, "-"), uint_range(g, nlo, nhi)));
    }
    sgr_expr r = altv(g, a.v, a.n);
    free(a.v);
    return r;
}

/* Fraction digits ending in a non-zero digit: "." d{0,F-1} [1-9] (> 0). */
static sgr_expr frac(sg *g, int F) {
    return seq3v(g, lit(g, "."), digits(g, 0, (uint32_t)F - 1), sgr_gb_range(g->b, '1', '9'));
}

/* ---- exact decimal ranges ------------------------------------------------
 * A number with at most F fraction digits is N / 10^F for an integer N, so
 * a range of such numbers is a range of N: bounds are read exactly from
 * their JSON text (any length, any exponent), rounded inward to the grid,
 * and the canonical strings of [lo, hi] — no leading zeros, no trailing
 * fraction zeros, so every number is written once — are built digit by
 * digit like fixed_range. */
typedef __int128 i128;
#define DEC_MAX_F 18 /* 18 integer + 18 fraction digits fit an i128 */

static i128 pow10_i128(int k) {
    i128 r = 1;
    while (k-- > 0) r *= 10;
    return r;
}

/* b * 10^F rounded down (up: up), clamped to [-lim-1, lim+1]; *exact when
 * b * 10^F is an integer. */
static i128 dec_scaled(const json *b, int F, bool up, i128 lim, bool *exact) {
    const char *t = b->u.num.text;
    bool neg = *t == '-';
    if (neg) t++;
    const char *e = t;
    while (*e && *e != 'e' && *e != 'E') e++;
    long ex = *e ? strtol(e + 1, NULL, 10) : 0;
    if (ex > 1000) ex = 1000;
    if (ex < -1000) ex = -1000;
    const char *dot = memchr(t, '.', (size_t)(e - t));
    long p = (long)((dot ? dot : e) - t) + ex + F; /* mantissa digits before the scaled point */
    i128 n = 0;
    bool over = false, rest = false;
    long k = 0;
    for (const char *q = t; q < e; q++) {
        if (*q == '.') continue;
        int d = *q - '0';
        if (k++ < p) {
            if (!over) n = n * 10 + d;
            if (n > lim) over = true;
        } else if (d) {
            rest = true;
        }
    }
    for (; k < p && !over; k++) {
        n *= 10;
        if (n > lim) over = true;
    }
    if (over) { *exact = false; return neg ? -lim - 1 : lim + 1; }
    *exact = !rest;
    if (neg) return rest && !up ? -n - 1 : -n;
    return rest && up ? n + 1 : n;
}

/* The canonical fraction digits (no trailing zeros) of the L-digit strings
 * in [x, y]: ne, the non-empty ones (has_ne), and whether the all-zero
 * string (no fraction at all) is in the range. */
typedef struct srx { sgr_expr ne; bool has_ne, empty; } srx;

static sgr_expr frac_tail(sg *g, int L) { /* non-empty, at most L digits, last one non-zero */
    return seq2v(g, digits(g, 0, (uint32_t)L - 1), sgr_gb_range(g->b, '1', '9'));
}

static srx stripped_range(sg *g, const char *x, const char *y, int L) {
    srx r = {vd(g), false, false};
    if (L == 0) { r.empty = true; return r; }
    bool xz = true, y9 = true;
    for (int i = 0; i < L; i++) { if (x[i] != '0') xz = false; if (y[i] != '9') y9 = false; }
    if (xz && y9) return (srx){frac_tail(g, L), true, true};
    bool x1 = x[L - 1] == '1'; /* x = 0…01: every non-empty fraction (negative numbers' lower end) */
    for (int i = 0; i + 1 < L && x1; i++) x1 = x[i] == '0';
    if (x1 && y9) return (srx){frac_tail(g, L), true, false};
    char nines[DEC_MAX_F + 1], zeros[DEC_MAX_F + 1];
    memset(nines, '9', (size_t)L);
    memset(zeros, '0', (size_t)L);
    xvec a = {0};
    /* first digit c, then the rest s: c + s.ne, and c alone (or nothing,
     * for c = 0) when the rest may be all zeros */
    srx sub[2];
    char first[2] = {x[0], y[0]};
    int nsub = 1;
    if (x[0] == y[0]) {
        sub[0] = stripped_range(g, x + 1, y + 1, L - 1);
    } else {
        sub[0] = stripped_range(g, x + 1, nines, L - 1);
        sub[1] = stripped_range(g, zeros, y + 1, L - 1);
        nsub = 2;
        if (x[0] + 1 <= y[0] - 1) { /* digits >= 1: any rest */
            sgr_expr cr = sgr_gb_range(g->b, (uint8_t)(x[0] + 1), (uint8_t)(y[0] - 1));
            xv_add(&a, L > 1 ? seq2v(g, cr, opt(g, frac_tail(g, L - 1))) : cr);
        }
    }
    for (int k = 0; k < nsub; k++) {
        char c[2] = {first[k], 0};
        if (sub[k].has_ne) xv_add(&a, seq2v(g, lit(g, c), sub[k].ne));
        if (sub[k].empty) {
            if (c[0] == '0') r.empty = true;
            else xv_add(&a, lit(g, c));
        }
    }
    r.has_ne = a.n > 0;
    if (r.has_ne) r.ne = altv(g, a.v, a.n);
    free(a.v);
    return r;
}

/* Integer part ip followed by the fractions of [ua, ub] (units of 10^-F). */
static sgr_expr with_frac(sg *g, sgr_expr ip, i128 ua, i128 ub, int F) {
    char xs[DEC_MAX_F + 1], ys[DEC_MAX_F + 1];
    for (int i = F - 1; i >= 0; i--, ua /= 10, ub /= 10) xs[i] = (char)('0' + (int)(ua % 10)), ys[i] = (char)('0' + (int)(ub % 10));
    srx f = stripped_range(g, xs, ys, F);
    if (!f.has_ne) return f.empty ? ip : vd(g);
    sgr_expr fr = seq2v(g, lit(g, "."), f.ne);
    return seq2v(g, ip, f.empty ? opt(g, fr) : fr);
}

/* Canonical strings of N / 10^F for N in [lo, hi], 0 <= lo. */
static sgr_expr dec_nonneg(sg *g, i128 lo, i128 hi, int F) {
    if (lo > hi) return vd(g);
    i128 P = pow10_i128(F);
    int64_t i1 = (int64_t)(lo / P), i2 = (int64_t)(hi / P);
    i128 u1 = lo % P, u2 = hi % P;
    if (i1 == i2) return with_frac(g, int_range(g, i1, i1), u1, u2, F);
    /* integer parts whose every fraction is in range share one branch */
    int64_t m1 = u1 == 0 ? i1 : i1 + 1, m2 = u2 == P - 1 ? i2 : i2 - 1;
    xvec a = {0};
    if (m1 != i1) xv_add(&a, with_frac(g, int_range(g, i1, i1), u1, P - 1, F));
    if (m1 <= m2) xv_add(&a, with_frac(g, int_range(g, m1, m2), 0, P - 1, F));
    if (m2 != i2) xv_add(&a, with_frac(g, int_range(g, i2, i2), 0, u2, F));
    sgr_expr r = altv(g, a.v, a.n);
    free(a.v);
    return r;
}

/* Canonical strings of N / 10^F for N in [lo, hi]; never "-0". */
static sgr_expr dec_range(sg *g, i128 lo, i128 hi, int F) {
    xvec a = {0};
    if (hi >= 0) xv_add(&a, dec_nonneg(g, lo > 0 ? lo : 0, hi, F));
    if (lo < 0) xv_add(&a, seq2v(g, lit(g, "-"), dec_nonneg(g, hi < 0 ? -hi : 1, -lo, F)));
    sgr_expr r = altv(g, a.v, a.n);
    free(a.v);
    return r;
}

/* Writes N / 10^F canonically. */
static void dec_format(char *out, size_t cap, i128 n, int F) {
    char d[48];
    int k = 0;
    bool neg = n < 0;
    if (neg) n = -n;
    do { d[k++] = (char)('0' + (int)(n % 10)); n /= 10; } while (n > 0 || k <= F);
    size_t o = 0;
    if (neg && o + 1 < cap) out[o++] = '-';
    for (int i = k - 1; i >= F && o + 1 < cap; i--) out[o++] = d[i];
    int last = 0; /* lowest non-zero fraction digit */
    while (last < F && d[last] == '0') last++;
    if (last < F && o + 1 < cap) out[o++] = '.';
    for (int i = F - 1; i >= last && o + 1 < cap; i--) out[o++] = d[i];
    out[o] = 0;
}

static bool is_pow10_frac(const json *m, int *d) {
    /* 1, 0.1, 0.01, 1e-3 ... : value 10^-k */
    for (int k = 0; k <= 12; k++) {
        char t[24];
        snprintf(t, sizeof t, "1e-%d", k);
        json *j = NULL;
        qerr e;
        if (json_parse(t, strlen(t), NULL, &j, &e)) return false;
        int r = json_number_cmp(m, j);
        json_free(j);
        if (r == 0) { *d = k; return true; }
    }
    return false;
}

/* The range of an integer format (int32, int64), or false. */
static bool int_format_range(const char *f, int64_t *a, int64_t *b) {
    if (!strcmp(f, "int32")) *a = -2147483647 - 1, *b = 2147483647;
    else if (!strcmp(f, "int64")) *a = INT64_MIN, *b = INT64_MAX;
    else return false;
    return true;
}

/* Integer formats that validators assert on numbers (OpenAPI's, checked by
 * Ajv's formats): int32 and int64 admit only integers in their range. Our
 * validator treats them as annotations, so generating within them is a
 * subset. Narrows [*lo, *hi]; returns whether one applies. */
static bool int_format(const cs *c, int64_t *lo, int64_t *hi) {
    bool any = false;
    for (size_t i = 0; i < c->fmt.n; i++) {
        int64_t a, b;
        if (!int_format_range(c->fmt.v[i]->format, &a, &b)) continue;
        if (*lo < a) *lo = a;
        if (*hi > b) *hi = b;
        any = true;
    }
    return any;
}

/* Whether (double)n / m is an integer for every integer n of up to 15
 * digits: holds when m's rounding error is under half an ulp of each
 * quotient; checked on a sample that covers every binade up to 2^50, both
 * signs, since the reason is arithmetic, not the sample. */
static bool float_divides_integers(double m) {
    if (!(m > 0)) return false;
    for (int e = 0; e <= 50; e++)
        for (int64_t k = 0; k < 2000; k++) {
            double n = ldexp(1.0, e) + (double)k;
            double q = n / m, r = -n / m;
            if (q != floor(q) || r != floor(r)) return false;
        }
    return true;
}

/* Integer multiples of k within the bounds and [flo, fhi], enumerated
 * (at most MAX_ENUM_MULTIPLES, small magnitudes first when unbounded on
 * both sides). */
static sgr_expr int_multiples(sg *g, cs *c, int64_t k, int64_t flo, int64_t fhi) {
    int64_t cap = (int64_t)g->int_cap;
    int64_t lo = c->lo ? int_ceil(c->lo, c->lo_ex, cap) : -cap;
    int64_t hi = c->hi ? int_floor(c->hi, c->hi_ex, cap) : cap;
    if (lo < flo) lo = flo;
    if (hi > fhi) hi = fhi;
    if (lo > hi) return vd(g);
    int64_t first = lo >= 0 ? (lo + k - 1) / k : -((-lo) / k);
    int64_t last = hi >= 0 ? hi / k : -((-hi + k - 1) / k);
    xvec a = {0};
    int64_t m0 = first;
    if (first < 0 && last > 0) m0 = first < -MAX_ENUM_MULTIPLES / 2 ? -MAX_ENUM_MULTIPLES / 2 : first;
    for (int64_t m = m0; m <= last && a.n < MAX_ENUM_MULTIPLES; m++) {
        char t[32];
        snprintf(t, sizeof t, "%lld", (long long)(m * k));
        xv_add(&a, lit(g, t));
    }
    sgr_expr r = altv(g, a.v, a.n);
    free(a.v);
    return r;
}

/* The divisor m as k * 10^-d with k an integer of at most 12 digits and
 * d <= DEC_MAX_F, d smallest. */
static bool dec_divisor(const json *m, i128 *k, int *d) {
    if (!(m->u.num.d > 0)) return false;
    for (int dd = 0; dd <= DEC_MAX_F; dd++) {
        bool exact;
        i128 v = dec_scaled(m, dd, false, pow10_i128(30), &exact);
        if (exact) {
            if (v < 1 || v > (i128)999999999999) return false;
            *k = v;
            *d = dd;
            return true;
        }
    }
    return false;
}

/* Multiples j * k * 10^-d within the bounds, written with at most maxF
 * fraction digits, enumerated from the smallest magnitude (at most
 * MAX_ENUM_MULTIPLES), keeping those whose double division by the divisor
 * is exact: validators that divide in binary floating point refuse the
 * others (0.9 / 0.3 = 3.0000000000000004). */
static sgr_expr dec_multiples(sg *g, cs *c, i128 k, int d, int maxF) {
    int64_t cap = (int64_t)g->int_cap;
    i128 lim = (i128)(cap + 1) * pow10_i128(d) - 1, lo = -lim, hi = lim;
    bool exact;
    if (c->lo) {
        lo = dec_scaled(c->lo, d, true, lim, &exact);
        if (exact && c->lo_ex) lo++;
    }
    if (c->hi) {
        hi = dec_scaled(c->hi, d, false, lim, &exact);
        if (exact && c->hi_ex) hi--;
    }
    if (lo < -lim) lo = -lim;
    if (hi > lim) hi = lim;
    if (lo > hi) return vd(g);
    /* j in [jlo, jhi]: ceil(lo / k), floor(hi / k) */
    i128 jlo = lo >= 0 ? (lo + k - 1) / k : -((-lo) / k), jhi = hi >= 0 ? hi / k : -((-hi + k - 1) / k);
    if (jlo > jhi) return vd(g);
    i128 start = jlo > 0 ? jlo : jhi < 0 ? jhi : 0;
    double m = c->mult->u.num.d;
    xvec a = {0};
    for (i128 i = 0; a.n < MAX_ENUM_MULTIPLES && i <= 4 * (i128)MAX_ENUM_MULTIPLES; i++) {
        i128 j = i % 2 ? start + (i + 1) / 2 : start - i / 2; /* outward from start */
        if (j < jlo || j > jhi) {
            if (start + (i + 1) / 2 > jhi && start - i / 2 < jlo) break;
            continue;
        }
        char t[64];
        dec_format(t, sizeof t, j * k, d);
        const char *dot = strchr(t, '.');
        if (dot && (int)strlen(dot + 1) > maxF) continue;
        double q = strtod(t, NULL) / m;
        if (q == floor(q)) xv_add(&a, lit(g, t));
    }
    sgr_expr r = altv(g, a.v, a.n);
    free(a.v);
    return r;
}

static sgr_expr gen_number(sg *g, cs *c, const schema_node *at, bool integer) {
    int64_t cap = (int64_t)g->int_cap;
    int F = g->o.max_frac_digits > 0 ? g->o.max_frac_digits : 6;
    int64_t flo = -cap, fhi = cap; /* an integer format's range */
    if (int_format(c, &flo, &fhi) || integer) F = 0;
    bool ajv_unsafe = false; /* decimal multiples some validators refuse */
    if (c->mult) {
        int d = 0;
        if (is_pow10_frac(c->mult, &d)) {
            if (d < F) F = d;
            /* Validators that divide in binary floating point (Ajv, Python's
             * jsonschema) refuse some exact decimal multiples — 5.02 / 0.01
             * is 501.99999999999994 — which the keyword's definition admits.
             * Integers divide exactly for most such divisors (0.1 … 0.0001,
             * not 0.00001), so when the bounds admit an integer and every
             * integer passes that division here, only integers are made: a
             * subset every validator accepts. */
            int64_t ilo = c->lo ? int_ceil(c->lo, c->lo_ex, cap) : -cap, ihi = c->hi ? int_floor(c->hi, c->hi_ex, cap) : cap;
            if (ilo < flo) ilo = flo;
            if (ihi > fhi) ihi = fhi;
            if (F > 0 && ilo <= ihi) {
                /* a property of 10^-d alone: checked once per compile */
                if (!g->int_safe[d]) g->int_safe[d] = float_divides_integers(c->mult->u.num.d) ? 1 : -1;
                if (g->int_safe[d] > 0) F = 0;
            }
            ajv_unsafe = F > 0;
        } else if (json_number_is_integer(c->mult) && c->mult->u.num.d >= 1 && c->mult->u.num.d <= 1e12) {
            return int_multiples(g, c, (int64_t)c->mult->u.num.d, flo, fhi);
        } else {
            /* a decimal divisor k * 10^-d (0.25, 2.5, 0.3): its multiples
             * enumerated; integers only where the context wants integers */
            i128 k;
            int dd;
            if (dec_divisor(c->mult, &k, &dd)) {
                if (F > 0) return dec_multiples(g, c, k, dd, F);
                i128 p = pow10_i128(dd), a = k, b = p;
                while (b) { i128 t = a % b; a = b; b = t; } /* gcd(k, 10^d) */
                if (k / a <= (i128)1000000000000) return int_multiples(g, c, (int64_t)(k / a), flo, fhi);
            }
            if (!unsup(g, at, "multipleOf", "multipleOf %s (an integer or a decimal of at most %d fraction digits and 12 significant)",
                       c->mult->u.num.text, DEC_MAX_F))
                return SGR_EXPR_ERR;
        }
    }
    /* bounds as integers */
    bool has_lo = c->lo != NULL, has_hi = c->hi != NULL;
    if (has_lo && c->lo->u.num.d > (double)cap)
        return unsup(g, at, "minimum", "minimum %s beyond %d digits", c->lo->u.num.text, g->o.max_int_digits) ? vd(g) : SGR_EXPR_ERR;
    if (has_hi && c->hi->u.num.d < -(double)cap)
        return unsup(g, at, "maximum", "maximum %s beyond %d digits", c->hi->u.num.text, g->o.max_int_digits) ? vd(g) : SGR_EXPR_ERR;
    if (F == 0) {
        int64_t lo = has_lo ? int_ceil(c->lo, c->lo_ex, cap) : -cap;
        int64_t hi = has_hi ? int_floor(c->hi, c->hi_ex, cap) : cap;
        if (lo < flo) lo = flo;
        if (hi > fhi) hi = fhi;
        return int_range(g, lo, hi);
    }
    /* Numbers with at most F fraction digits in the bounds, exactly. */
    if (F > DEC_MAX_F) F = DEC_MAX_F;
    /* multiples of 10^-F some validators would refuse (see above): the ones
     * whose double division is exact, enumerated */
    if (c->mult && ajv_unsafe) return dec_multiples(g, c, 1, F, F);
    i128 lim = (i128)(cap + 1) * pow10_i128(F) - 1;
    bool exact;
    i128 lo = -lim, hi = lim;
    if (has_lo) {
        lo = dec_scaled(c->lo, F, true, lim, &exact);
        if (exact && c->lo_ex) lo++;
    }
    if (has_hi) {
        hi = dec_scaled(c->hi, F, false, lim, &exact);
        if (exact && c->hi_ex) hi--;
    }
    if (lo < -lim) lo = -lim;
    if (hi > lim) hi = lim;
    if (lo > hi) return vd(g);
    return dec_range(g, lo, hi, F);
}

/* ---- strings ------------------------------------------------------------ */

static const char *format_regex(const char *f) {
#define HOST "[a-z0-9]{1,20}(-[a-z0-9]{1,20})?(\\.[a-z0-9]{1,20}(-[a-z0-9]{1,20})?){0,3}"
#define DATE "[0-9]{4}-((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)"
#define TIME "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
#define OCT "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
    static const char *const t[][2] = {
        {"date", "^" DATE "$"},
        {"time", "^" TIME "$"},
        {"date-time", "^" DATE "T" TIME "$"},
        {"duration", "^P([0-9]{1,4}D|[0-9]{1,4}W|T[0-9]{1,4}H([0-9]{1,4}M)?|[0-9]{1,4}DT[0-9]{1,4}H)$"},
        /* a dotted domain with a letters-only TLD: dotless domains are legal
         * in RFC 5321 but most validators (Ajv's, browsers') refuse them */
        {"email", "^[a-z0-9]{1,20}(\\.[a-z0-9]{1,20}){0,2}@[a-z0-9]{1,20}(-[a-z0-9]{1,20})?(\\.[a-z0-9]{1,20}(-[a-z0-9]{1,20})?){0,2}\\.[a-z]{2,10}$"},
        {"hostname", "^" HOST "$"},
        {"ipv4", "^" OCT "(\\." OCT "){3}$"},
        {"ipv6", "^([0-9a-f]{1,4}(:[0-9a-f]{1,4}){7}|::([0-9a-f]{1,4}(:[0-9a-f]{1,4}){0,5})?)$"},
        {"uri", "^https?://" HOST "(/[a-zA-Z0-9._~-]{1,30}){0,5}$"},
        {"uri-reference", "^https?://" HOST "(/[a-zA-Z0-9._~-]{1,30}){0,5}$"},
        {"iri", "^https?://" HOST "(/[a-zA-Z0-9._~-]{1,30}){0,5}$"},
        {"iri-reference", "^https?://" HOST "(/[a-zA-Z0-9._~-]{1,30}){0,5}$"},
        {"uuid", "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"},
        {"json-pointer", "^(/[a-zA-Z0-9_]{0,20}){0,6}$"},
        {"relative-json-pointer", "^(0|[1-9][0-9]{0,3})(#|(/[a-zA-Z0-9_]{0,20}){0,6})$"},
        /* plain text is a regex in every dialect */
        {"regex", "^[a-zA-Z0-9 _-]{0,30}$"},
        /* not a JSON Schema format (an annotation to our validator), but
         * Ajv's formats assert it: a dotted host with a letters-only TLD whose
         * first label starts with a letter (never read as an IP address) */
        {"url", "^https?://[a-z][a-z0-9]{0,19}(-[a-z0-9]{1,20})?(\\.[a-z0-9]{1,20}(-[a-z0-9]{1,20})?){0,2}\\.[a-z]{2,10}(/[a-zA-Z0-9._~-]{1,30}){0,5}$"},
        /* OpenAPI's base64 "byte": not a JSON Schema format (an annotation to
         * our validator), but validators such as Ajv's formats assert it, and
         * generating base64 is a subset of any string */
        {"byte", "^([A-Za-z0-9+/]{4}){0,8}([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) if (!strcmp(f, t[i][0])) return t[i][1];
    return NULL;
#undef HOST
#undef DATE
#undef TIME
#undef OCT
}

int sgr_format_generated(const char *f) {
    int64_t lo, hi;
    if (int_format_range(f, &lo, &hi)) return SGR_FMT_NUMBERS;
    return format_regex(f) ? SGR_FMT_STRINGS : SGR_FMT_NONE;
}

/* Longest bounded free string generated (see gen_string_body). */
#define STR_GEN_MAX 96

/* The intersection of the regexes t[0..n) within the length window; past
 * the state limit a lower maxLength (a subset) is tried. SGR_EXPR_ERR with e
 * set when it cannot. */
static sgr_expr regexes_body(sg *g, const rx_term *t, size_t n, int64_t mn, int64_t mx, qerr *e) {
    size_t max_states = g->o.max_rules ? g->o.max_rules / 4 : 0;
    sgr_expr r = rx_terms_to_grammar(t, n, g->b, true, mn, mx, max_states, e);
    /* too many (state, length) pairs: a lower maxLength is a subset */
    for (int64_t m2 = mn + 64; r == SGR_EXPR_ERR && !sgr_gb_error(g->b) && strstr(e->msg, "unsupported: pattern") &&
                               (mx < 0 || m2 < mx) && m2 >= mn; m2 = m2 > mn + 8 ? mn + (m2 - mn) / 2 : mn - 1)
        r = rx_terms_to_grammar(t, n, g->b, true, mn, m2, max_states, e);
    return r;
}

/* A string's content: every pattern (and extra_re, a patternProperties key
 * regex) AND every format that has a generation regex, intersected, within
 * minLength..maxLength. Format regexes generate a subset of their format, so
 * a pattern may exclude all of it while the schema is satisfiable: then the
 * patterns alone are used and the format is noted as not enforced (refused
 * under assert_format). */
static sgr_expr gen_string_body(sg *g, cs *c, const schema_node *at, const regex *extra_re) {
    int64_t mn = c->min_len, mx = c->max_len;
    if (mx >= 0 && mn > mx) return vd(g);
    rx_term t[RX_MAX_TERMS];
    regex *own[RX_MAX_TERMS];
    const schema_node *own_at[RX_MAX_TERMS];
    size_t np = 0, nf = 0;
    if (extra_re) t[np++] = (rx_term){extra_re, true};
    for (size_t i = 0; i < c->pat.n; i++) {
        const regex *re = c->pat.v[i]->pattern;
        bool dup = false;
        for (size_t k = 0; k < np; k++) dup |= t[k].re == re;
        if (dup) continue;
        if (np == RX_MAX_TERMS / 2) {
            if (!unsup(g, c->pat.v[i], "pattern", "more than %d patterns on one string", RX_MAX_TERMS / 2)) return SGR_EXPR_ERR;
            continue;
        }
        t[np++] = (rx_term){re, true};
    }
    sgr_expr r = SGR_EXPR_ERR;
    for (size_t i = 0; i < c->fmt.n; i++) {
        const schema_node *fn = c->fmt.v[i];
        const char *rx = format_regex(fn->format);
        bool known;
        (void)schema_format_check(fn->format, "", 0, &known);
        if (!rx) {
            if (g->s->opts.assert_format) {
                if (!unsup(g, fn, "format", "format \"%.60s\" as an assertion", fn->format)) goto out;
            } else if (!known) {
                char k[64];
                snprintf(k, sizeof k, "format \"%.50s\"", fn->format);
                note(g, fn, k);
            }
            continue;
        }
        bool dup = false;
        for (size_t k = 0; k < nf; k++) dup |= !strcmp(own_at[k]->format, fn->format);
        if (dup) continue;
        if (np + nf == RX_MAX_TERMS) {
            if (!unsup(g, fn, "format", "more than %d patterns and formats on one string", RX_MAX_TERMS)) goto out;
            continue;
        }
        qerr e;
        if (regex_compile(rx, strlen(rx), &own[nf], &e)) { hard_fail(g, "format regex: %s", e.msg); goto out; }
        own_at[nf] = fn;
        t[np + nf] = (rx_term){own[nf], false};
        nf++;
    }
    if (np + nf) {
        qerr e;
        r = regexes_body(g, t, np + nf, mn, mx, &e);
        if (nf && np && (isvoid(g, r) || (r == SGR_EXPR_ERR && !sgr_gb_error(g->b) && strstr(e.msg, "unsupported: pattern")))) {
            /* the generated subset of the format misses the patterns */
            if (g->s->opts.assert_format) {
                if (!unsup(g, own_at[0], "format", "format \"%.40s\" and a pattern: no common string generated", own_at[0]->format)) {
                    r = SGR_EXPR_ERR;
                    goto out;
                }
            }
            r = regexes_body(g, t, np, mn, mx, &e);
            if (r != SGR_EXPR_ERR && !isvoid(g, r))
                for (size_t k = 0; k < nf; k++) {
                    char kw[64];
                    snprintf(kw, sizeof kw, "format \"%.30s\" with a pattern", own_at[k]->format);
                    note(g, own_at[k], kw);
                }
        }
        if (r == SGR_EXPR_ERR) {
            if (sgr_gb_error(g->b)) { r = hard_fail(g, "%s", sgr_gb_error(g->b)); goto out; }
            const char *m = strncmp(e.msg, "unsupported: ", 13) ? e.msg : e.msg + 13;
            r = unsup(g, at, "pattern", "%s", m) ? sgr_gb_repeat(g->b, g->jchar, (uint32_t)mn, mx < 0 ? SGR_INF : (uint32_t)mx)
                                                 : SGR_EXPR_ERR;
        }
    } else {
        if (mn > 100000000 || mx > 100000000) {
            r = unsup(g, at, "minLength", "string length bound too large") ? vd(g) : SGR_EXPR_ERR;
            goto out;
        }
        /* A long bounded string ({0,255}) is a repeat the engine cannot keep
         * in its per-state mask cache (each position is its own state, past
         * its inline limit a frame per character): generating at most
         * STR_GEN_MAX code points keeps masks cached — a subset, still valid. */
        if (mx > STR_GEN_MAX && mn <= STR_GEN_MAX) mx = STR_GEN_MAX;
        r = sgr_gb_repeat(g->b, g->jchar, (uint32_t)mn, mx < 0 ? SGR_INF : (uint32_t)mx);
    }
out:
    for (size_t k = 0; k < nf; k++) regex_free(own[k]);
    return r;
}

static sgr_expr gen_string(sg *g, cs *c, const schema_node *at) {
    sgr_expr body = gen_string_body(g, c, at, NULL);
    return seq3v(g, lit(g, "\""), body, lit(g, "\""));
}

/* ---- any JSON ----------------------------------------------------------- */

static sgr_expr any_number(sg *g) {
    int F = g->o.max_frac_digits > 0 ? g->o.max_frac_digits : 6;
    sgr_expr i = alt2v(g, lit(g, "0"), seq2v(g, sgr_gb_range(g->b, '1', '9'), digits(g, 0, (uint32_t)g->o.max_int_digits - 1)));
    sgr_expr k[3] = {opt(g, lit(g, "-")), i, opt(g, frac(g, F))};
    return seqv(g, k, 3);
}

static sgr_expr any_string(sg *g) {
    return seq3v(g, lit(g, "\""), sgr_gb_repeat(g->b, g->jchar, 0, SGR_INF), lit(g, "\""));
}

/* Objects whose keys have strictly increasing lengths (never equal), values v. */
static sgr_expr any_object(sg *g, sgr_expr v, const char *tag) {
    int32_t after[ANY_KEY_LEN + 1];
    char nm[64];
    for (int L = 0; L <= ANY_KEY_LEN; L++) {
        snprintf(nm, sizeof nm, "%s_obj_after%d", tag, L);
        after[L] = sgr_gb_rule(g->b, nm);
    }
    sgr_expr keys[ANY_KEY_LEN + 1];
    for (int L = 1; L <= ANY_KEY_LEN; L++)
        keys[L] = seq3v(g, lit(g, "\""), sgr_gb_repeat(g->b, g->jchar, (uint32_t)L, (uint32_t)L), lit(g, "\""));
    sgr_expr colon = seq2v(g, pre(g, ":"), g->o.ws > 0 ? g->ws : sgr_gb_empty(g->b));
    for (int L = 0; L <= ANY_KEY_LEN; L++) {
        xvec a = {0};
        xv_add(&a, pre(g, "}"));
        for (int M = L + 1; M <= ANY_KEY_LEN; M++) {
            sgr_expr k[5] = {pre(g, ","), g->o.ws > 0 ? g->ws : sgr_gb_empty(g->b), keys[M], colon, v};
            xv_add(&a, seq2v(g, seqv(g, k, 5), sgr_gb_ref(g->b, after[M])));
        }
        sgr_gb_define(g->b, after[L], altv(g, a.v, a.n));
        free(a.v);
    }
    xvec a = {0};
    xv_add(&a, pre(g, "}"));
    for (int M = 1; M <= ANY_KEY_LEN; M++) {
        sgr_expr k[4] = {keys[M], colon, v, sgr_gb_ref(g->b, after[M])};
        xv_add(&a, seqv(g, k, 4));
    }
    sgr_expr body = altv(g, a.v, a.n);
    free(a.v);
    return seq2v(g, tok(g, "{"), body);
}

static sgr_expr any_array(sg *g, sgr_expr v) {
    sgr_expr more = sgr_gb_repeat(g->b, seq2v(g, tok(g, ","), v), 0, SGR_INF);
    sgr_expr items = opt(g, seq2v(g, v, more));
    return seq3v(g, tok(g, "["), items, pre(g, "]"));
}

static sgr_expr any_value(sg *g, int depth) {
    if (depth < 0) depth = 0;
    if (g->any_rule[depth] >= 0) return sgr_gb_ref(g->b, g->any_rule[depth]);
    char nm[32];
    snprintf(nm, sizeof nm, "any%d", depth);
    int32_t r = sgr_gb_rule(g->b, nm);
    g->any_rule[depth] = r;
    xvec a = {0};
    xv_add(&a, lit(g, "null"));
    xv_add(&a, lit(g, "true"));
    xv_add(&a, lit(g, "false"));
    xv_add(&a, any_number(g));
    xv_add(&a, any_string(g));
    if (depth > 0) {
        sgr_expr inner = any_value(g, depth - 1);
        xv_add(&a, any_array(g, inner));
        xv_add(&a, any_object(g, inner, nm));
    }
    sgr_gb_define(g->b, r, altv(g, a.v, a.n));
    free(a.v);
    return sgr_gb_ref(g->b, r);
}

/* ---- objects ------------------------------------------------------------ */

typedef struct member {
    const char *name; size_t len;
    bool req, forbidden;
    nlist vals;
} member;

static bool pattern_matches_any(const schema_node *n, const char *k, size_t kl) {
    for (size_t q = 0; q < n->n_pattern_props; q++)
        if (regex_match(n->pattern_props[q].re, k, kl)) return true;
    return false;
}

static bool node_has_prop(const schema_node *n, const char *k, size_t kl) {
    for (size_t i = 0; i < n->n_props; i++)
        if (n->props[i].len == kl && !memcmp(n->props[i].name, k, kl)) return true;
    return false;
}

/* Is key k evaluated (for unevaluatedProperties of x) by x's own in-place
 * subtree: its properties, patterns, additionalProperties, the $ref/allOf it
 * reaches and the anyOf/oneOf branches chosen (those in c->all)? Under-
 * approximates the validator, which only makes the grammar stricter. */
static bool evaluated_by(const cs *c, const schema_node *y, const schema_node *x, const char *k, size_t kl, bool extra, int depth) {
    if (!y || y->is_bool || depth > MAX_MERGE_DEPTH) return false;
    if (!extra && (node_has_prop(y, k, kl) || pattern_matches_any(y, k, kl))) return true;
    if (y->additional_props && !(y->additional_props->is_bool && !y->additional_props->bool_val)) return true;
    if (y != x && y->unevaluated_props && !(y->unevaluated_props->is_bool && !y->unevaluated_props->bool_val)) return true;
    if (evaluated_by(c, y->ref, x, k, kl, extra, depth + 1)) return true;
    for (size_t i = 0; i < y->n_all_of; i++) if (evaluated_by(c, y->all_of[i], x, k, kl, extra, depth + 1)) return true;
    for (size_t i = 0; i < y->n_any_of; i++)
        if (nl_has(&c->all, y->any_of[i]) && evaluated_by(c, y->any_of[i], x, k, kl, extra, depth + 1)) return true;
    for (size_t i = 0; i < y->n_one_of; i++)
        if (nl_has(&c->all, y->one_of[i]) && evaluated_by(c, y->one_of[i], x, k, kl, extra, depth + 1)) return true;
    return false;
}

/* Value constraints of a declared or required key; false when the key may
 * not appear at all. */
static bool member_nodes(sg *g, cs *c, const char *k, size_t kl, nlist *out) {
    cprop *p = cs_prop(c, k, kl, false);
    if (p) for (size_t i = 0; i < p->nodes.n; i++) nl_push(out, p->nodes.v[i]);
    bool evaluated = p != NULL;
    for (size_t i = 0; i < c->ppn.n; i++) {
        const schema_node *n = c->ppn.v[i];
        for (size_t q = 0; q < n->n_pattern_props; q++)
            if (regex_match(n->pattern_props[q].re, k, kl)) { nl_push(out, n->pattern_props[q].s); evaluated = true; }
    }
    for (size_t i = 0; i < c->addl.n; i++) {
        const schema_node *n = c->addl.v[i];
        if (node_has_prop(n, k, kl) || pattern_matches_any(n, k, kl)) continue;
        nl_push(out, n->additional_props);
        evaluated = true;
    }
    (void)evaluated;
    for (size_t i = 0; i < c->uneval_p.n; i++) {
        const schema_node *x = c->uneval_p.v[i];
        if (!evaluated_by(c, x, x, k, kl, false, 0)) nl_push(out, x->unevaluated_props);
    }
    json key = {.type = JSON_STRING};
    key.u.str.s = (char *)k;
    key.u.str.len = kl;
    for (size_t i = 0; i < c->pnames.n; i++)
        if (validate_at(g, c->pnames.v[i], &key) != 1) return false;
    /* drop true schemas; a false one forbids the key */
    size_t o = 0;
    bool ok = true;
    for (size_t i = 0; i < out->n; i++) {
        if (out->v[i]->is_bool) { if (!out->v[i]->bool_val) ok = false; continue; }
        out->v[o++] = out->v[i];
    }
    out->n = o;
    return ok;
}

static size_t member_find(member *m, size_t n, const char *k, size_t kl) {
    for (size_t i = 0; i < n; i++) if (m[i].len == kl && !memcmp(m[i].name, k, kl)) return i;
    return (size_t)-1;
}

static sgr_expr gen_object(sg *g, cs *c, const schema_node *at, const namelist *forbid, const namelist *force) {
    size_t nm = 0, capm = 0;
    member *m = NULL;
    sgr_expr result = SGR_EXPR_ERR;
    /* declared, then required-but-undeclared keys */
    for (size_t i = 0; i < c->n_props; i++) {
        SGR_GROW(m, nm, capm);
        m[nm++] = (member){c->props[i].name, c->props[i].len, false, false, {0}};
    }
    for (size_t i = 0; i < c->req.n; i++) {
        size_t j = member_find(m, nm, c->req.v[i].s, c->req.v[i].n);
        if (j == (size_t)-1) {
            SGR_GROW(m, nm, capm);
            m[nm++] = (member){c->req.v[i].s, c->req.v[i].n, true, false, {0}};
        } else m[j].req = true;
    }
    /* keys a oneOf needs present to tell its branches apart */
    for (size_t i = 0; force && i < force->n; i++) {
        size_t j = member_find(m, nm, force->v[i].s, force->v[i].n);
        if (j == (size_t)-1) {
            SGR_GROW(m, nm, capm);
            m[nm++] = (member){force->v[i].s, force->v[i].n, true, false, {0}};
        } else m[j].req = true;
    }
    /* not: {required: [...]} forbids a key */
    namelist extra_forbid = {0};
    for (size_t i = 0; i < c->nots.n; i++) {
        const schema_node *nn = c->nots.v[i]->not_;
        if (nn->is_bool) continue; /* handled by the caller */
        if (nn->kw == KWB(SK_REQUIRED) && nn->required) {
            bool done = false;
            for (size_t q = 0; q < json_size(nn->required) && !done; q++) {
                const json *k = json_at(nn->required, q);
                size_t j = member_find(m, nm, json_string(k), json_string_len(k));
                if (j == (size_t)-1 || !m[j].req) { names_add(&extra_forbid, json_string(k), json_string_len(k)); done = true; }
            }
            if (!done) { result = vd(g); goto out; }
        }
    }
    /* dependentRequired: required keys pull their dependencies in */
    for (bool changed = true; changed;) {
        changed = false;
        for (size_t d = 0; d < c->deps.n; d++) {
            const schema_node *dn = c->deps.v[d];
            for (size_t q = 0; q < dn->n_dep_required; q++) {
                const schema_dep_req *dr = &dn->dep_required[q];
                size_t j = member_find(m, nm, dr->name, dr->len);
                if (j == (size_t)-1 || !m[j].req) continue;
                for (size_t r = 0; r < json_size(dr->required); r++) {
                    const json *k = json_at(dr->required, r);
                    size_t t = member_find(m, nm, json_string(k), json_string_len(k));
                    if (t == (size_t)-1) {
                        SGR_GROW(m, nm, capm);
                        m[nm++] = (member){json_string(k), json_string_len(k), true, false, {0}};
                        changed = true;
                    } else if (!m[t].req) { m[t].req = true; changed = true; }
                }
            }
            for (size_t q = 0; q < dn->n_dep_schemas; q++) {
                const schema_prop *ds = &dn->dep_schemas[q];
                size_t j = member_find(m, nm, ds->name, ds->len);
                if (j != (size_t)-1 && m[j].req && !(ds->s->is_bool && ds->s->bool_val)) {
                    if (!unsup(g, dn, "dependentSchemas", "dependentSchemas of a required property")) goto out;
                }
            }
        }
    }
    /* optional keys whose dependencies are not all present are left out */
    for (size_t i = 0; i < nm; i++) {
        if (m[i].req) continue;
        for (size_t d = 0; d < c->deps.n && !m[i].forbidden; d++) {
            const schema_node *dn = c->deps.v[d];
            for (size_t q = 0; q < dn->n_dep_required; q++) {
                const schema_dep_req *dr = &dn->dep_required[q];
                if (dr->len != m[i].len || memcmp(dr->name, m[i].name, dr->len)) continue;
                for (size_t r = 0; r < json_size(dr->required); r++) {
                    const json *k = json_at(dr->required, r);
                    size_t t = member_find(m, nm, json_string(k), json_string_len(k));
                    if (t == (size_t)-1 || !m[t].req) m[i].forbidden = true;
                }
            }
            for (size_t q = 0; q < dn->n_dep_schemas; q++) {
                const schema_prop *ds = &dn->dep_schemas[q];
                if (ds->len == m[i].len && !memcmp(ds->name, m[i].name, ds->len) && !(ds->s->is_bool && ds->s->bool_val))
                    m[i].forbidden = true;
            }
        }
    }
    /* value constraints, forbidden keys */
    for (size_t i = 0; i < nm; i++) {
        if (!member_nodes(g, c, m[i].name, m[i].len, &m[i].vals)) m[i].forbidden = true;
        if ((forbid && names_has(forbid, m[i].name, m[i].len)) || names_has(&extra_forbid, m[i].name, m[i].len)) {
            if (!m[i].req) m[i].forbidden = true;
            else { result = vd(g); goto out; }
        }
        if (m[i].req && m[i].forbidden) { result = vd(g); goto out; }
        if (g->failed) goto out;
    }
    /* counts */
    int64_t nreq = 0, nopt = 0;
    for (size_t i = 0; i < nm; i++) { if (m[i].req) nreq++; else if (!m[i].forbidden) nopt++; }
    if (c->max_props >= 0) {
        if (nreq > c->max_props) { result = vd(g); goto out; }
        int64_t room = c->max_props - nreq;
        for (size_t i = 0; i < nm; i++)
            if (!m[i].req && !m[i].forbidden) { if (room > 0) room--; else m[i].forbidden = true; }
    }
    for (size_t i = 0; i < nm && nreq < c->min_props; i++)
        if (!m[i].req && !m[i].forbidden) { m[i].req = true; nreq++; }
    int64_t need_extra = c->min_props > nreq ? c->min_props - nreq : 0;
    /* extra keys: at most one, longer than every named key */
    bool addl_false = false, addl_schema = false;
    for (size_t i = 0; i < c->addl.n; i++) {
        const schema_node *a = c->addl.v[i]->additional_props;
        if (a->is_bool) { if (!a->bool_val) addl_false = true; }
        else addl_schema = true;
    }
    for (size_t i = 0; i < c->uneval_p.n; i++) {
        const schema_node *x = c->uneval_p.v[i], *a = x->unevaluated_props;
        if (a->is_bool && !a->bool_val && !evaluated_by(c, x, x, "", 0, true, 0)) addl_false = true;
    }
    int extra = 0; /* 0 none, 1 optional, 2 required */
    const schema_pattern_prop *xpp = NULL;
    if (need_extra > 1) {
        if (!unsup(g, at, "minProperties", "minProperties needs %lld properties beyond the named ones", (long long)need_extra)) goto out;
        need_extra = 0;
    }
    bool addl_own = true; /* every additionalProperties belongs to the one patternProperties node */
    for (size_t i = 0; i < c->addl.n; i++) if (c->ppn.n != 1 || c->addl.v[i] != c->ppn.v[0]) addl_own = false;
    if (c->ppn.n == 1 && c->ppn.v[0]->n_pattern_props == 1 && addl_own && c->uneval_p.n == 0) {
        xpp = &c->ppn.v[0]->pattern_props[0];
        extra = need_extra ? 2 : (nm == 0 ? 1 : 0);
    } else if (c->ppn.n == 0 && !addl_false) {
        extra = need_extra ? 2 : (addl_schema ? 1 : 0);
    } else if (need_extra) {
        if (!unsup(g, at, "minProperties", "minProperties needs a property beyond the named ones")) goto out;
    }
    if (extra == 1 && c->max_props >= 0 && nreq + nopt >= c->max_props) extra = 0;
    sgr_expr xmember = SGR_EXPR_ERR;
    if (extra) {
        size_t longest = 0;
        for (size_t i = 0; i < nm; i++) { size_t l = cp_count(m[i].name, m[i].len); if (l > longest) longest = l; }
        if (forbid) for (size_t i = 0; i < forbid->n; i++) { size_t l = cp_count(forbid->v[i].s, forbid->v[i].n); if (l > longest) longest = l; }
        for (size_t i = 0; i < extra_forbid.n; i++) { size_t l = cp_count(extra_forbid.v[i].s, extra_forbid.v[i].n); if (l > longest) longest = l; }
        /* the key: propertyNames (a string schema) + longer than every name */
        cs kc;
        cs_init(&kc);
        bool ok = true;
        for (size_t i = 0; i < c->pnames.n && ok; i++) ok = collect(g, &kc, c->pnames.v[i], 0, NULL, 0);
        if (!ok) { cs_free(&kc); goto out; }
        sgr_expr key = vd(g);
        if (kc.empty || kc.has_vals || kc.n_ap || kc.nots.n || (kc.typed && !(kc.types & ST_STRING))) {
            if (extra == 2 && !unsup(g, at, "propertyNames", "propertyNames with an extra property")) { cs_free(&kc); goto out; }
        } else {
            if ((int64_t)longest + 1 > kc.min_len) kc.min_len = (int64_t)longest + 1;
            if (kc.max_len < 0 || kc.max_len > kc.min_len + 24) kc.max_len = kc.min_len + (kc.pat.n || xpp ? 64 : 24);
            sgr_expr body = gen_string_body(g, &kc, at, xpp ? xpp->re : NULL);
            key = seq3v(g, lit(g, "\""), body, lit(g, "\""));
        }
        cs_free(&kc);
        if (g->failed) goto out;
        nlist xv = {0};
        if (xpp) { if (!(xpp->s->is_bool)) nl_push(&xv, xpp->s); else if (!xpp->s->bool_val) key = vd(g); }
        for (size_t i = 0; i < c->addl.n; i++)
            if (!c->addl.v[i]->additional_props->is_bool) nl_push(&xv, c->addl.v[i]->additional_props);
        if (xpp) xv.n = xpp->s->is_bool ? 0 : 1; /* the pattern's own node: its additionalProperties does not apply */
        for (size_t i = 0; i < c->uneval_p.n; i++) {
            const schema_node *x = c->uneval_p.v[i];
            if (!x->unevaluated_props->is_bool && !evaluated_by(c, x, x, "", 0, true, 0)) nl_push(&xv, x->unevaluated_props);
        }
        sgr_expr val = value_of(g, &xv);
        free(xv.v);
        sgr_expr k[3] = {key, tok(g, ":"), val};
        xmember = seqv(g, k, 3);
        if (g->failed) goto out;
        if (isvoid(g, xmember)) {
            if (extra == 2) { result = vd(g); goto out; }
            extra = 0;
        }
    }
    /* members in order: first(i) / after(i) so commas sit between members */
    sgr_expr *mem = calloc(nm + 1, sizeof *mem);
    if (!mem) { hard_fail(g, "out of memory"); goto out; }
    for (size_t i = 0; i < nm; i++) {
        if (m[i].forbidden) { mem[i] = vd(g); continue; }
        sgr_expr val = value_of(g, &m[i].vals);
        if (val == SGR_EXPR_ERR) { free(mem); goto out; }
        sgr_expr k[3] = {key_lit(g, m[i].name, m[i].len), tok(g, ":"), val};
        mem[i] = seqv(g, k, 3);
        if (isvoid(g, mem[i]) && m[i].req) { free(mem); result = vd(g); goto out; }
    }
    sgr_expr comma = tok(g, ",");
    if (g->o.ws > 0) comma = seq2v(g, g->ws, comma);
    sgr_expr after = sgr_gb_empty(g->b), first = sgr_gb_empty(g->b);
    if (extra) {
        after = seq2v(g, comma, xmember);
        first = xmember;
        if (extra == 1) { after = opt(g, after); first = opt(g, first); }
    }
    for (size_t i = nm; i-- > 0;) {
        if (isvoid(g, mem[i])) continue;
        sgr_expr a_with = seq3v(g, comma, mem[i], after);
        sgr_expr f_with = seq2v(g, mem[i], after);
        if (m[i].req) { after = a_with; first = f_with; }
        else { first = alt2v(g, f_with, first); after = alt2v(g, a_with, after); }
    }
    free(mem);
    result = seq3v(g, tok(g, "{"), first, pre(g, "}"));
out:
    for (size_t i = 0; i < nm; i++) free(m[i].vals.v);
    free(m);
    free(extra_forbid.v);
    return g->failed ? SGR_EXPR_ERR : result;
}

/* ---- arrays ------------------------------------------------------------- */

/* Is item i evaluated by x's own in-place subtree (prefixItems, items,
 * nested unevaluatedItems)? contains is not counted (stricter). */
static bool items_evaluated_by(const cs *c, const schema_node *y, const schema_node *x, size_t i, int depth) {
    if (!y || y->is_bool || depth > MAX_MERGE_DEPTH) return false;
    if (i < y->n_prefix_items || y->items) return true;
    if (y != x && y->unevaluated_items && !(y->unevaluated_items->is_bool && !y->unevaluated_items->bool_val)) return true;
    if (items_evaluated_by(c, y->ref, x, i, depth + 1)) return true;
    for (size_t q = 0; q < y->n_all_of; q++) if (items_evaluated_by(c, y->all_of[q], x, i, depth + 1)) return true;
    for (size_t q = 0; q < y->n_any_of; q++)
        if (nl_has(&c->all, y->any_of[q]) && items_evaluated_by(c, y->any_of[q], x, i, depth + 1)) return true;
    for (size_t q = 0; q < y->n_one_of; q++)
        if (nl_has(&c->all, y->one_of[q]) && items_evaluated_by(c, y->one_of[q], x, i, depth + 1)) return true;
    return false;
}

static void item_nodes(cs *c, size_t i, nlist *out, bool *covered) {
    *covered = false;
    for (size_t k = 0; k < c->arr.n; k++) {
        const schema_node *n = c->arr.v[k];
        if (i < n->n_prefix_items) { nl_push(out, n->prefix_items[i]); *covered = true; }
        else if (n->items) { nl_push(out, n->items); *covered = true; }
    }
    for (size_t k = 0; k < c->uneval_i.n; k++) {
        const schema_node *x = c->uneval_i.v[k];
        if (!items_evaluated_by(c, x, x, i, 0)) { nl_push(out, x->unevaluated_items); *covered = true; }
    }
}

static bool strip_bools(nlist *l) {
    size_t o = 0;
    bool ok = true;
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i]->is_bool) { if (!l->v[i]->bool_val) ok = false; continue; }
        l->v[o++] = l->v[i];
    }
    l->n = o;
    return ok;
}

static sgr_expr gen_array(sg *g, cs *c, const schema_node *at) {
    size_t P = 0;
    for (size_t k = 0; k < c->arr.n; k++) if (c->arr.v[k]->n_prefix_items > P) P = c->arr.v[k]->n_prefix_items;
    int64_t mn = c->min_items, mx = c->max_items;
    /* contains: the first minContains items also satisfy it */
    int64_t mc = 0;
    nlist cont = {0};
    for (size_t k = 0; k < c->contains.n; k++) {
        const schema_node *n = c->contains.v[k];
        if (n->max_contains >= 0 && !unsup(g, n, "maxContains", "maxContains")) return SGR_EXPR_ERR;
        if (n->min_contains > mc) mc = n->min_contains;
        nl_push(&cont, n->contains);
    }
    if (mc > mn) mn = mc;
    if (c->unique && (mx < 0 || mx > 1)) {
        if (!unsup(g, c->unique_node, "uniqueItems", "uniqueItems with more than one item")) { free(cont.v); return SGR_EXPR_ERR; }
    }
    if (mx >= 0 && mn > mx) { free(cont.v); return vd(g); }
    /* distinct element positions: 0..D-1, then the rest share one expression */
    size_t D = P > (size_t)mc ? P : (size_t)mc;
    if (mx >= 0 && (int64_t)D > mx) D = (size_t)mx;
    if (D > 10000 || mn > 10000) { free(cont.v); return unsup(g, at, "minItems", "more than 10000 distinct items") ? vd(g) : SGR_EXPR_ERR; }
    sgr_expr *el = calloc(D + 1, sizeof *el);
    if (!el) { free(cont.v); return hard_fail(g, "out of memory"); }
    for (size_t i = 0; i <= D; i++) {
        nlist l = {0};
        bool covered;
        item_nodes(c, i, &l, &covered);
        if ((int64_t)i < mc) for (size_t k = 0; k < cont.n; k++) nl_push(&l, cont.v[k]);
        bool ok = strip_bools(&l);
        if (!ok) el[i] = vd(g);
        else if (i == D && !covered && l.n == 0) el[i] = SGR_EXPR_ERR - 1; /* no schema: only as many as needed */
        else el[i] = value_of(g, &l);
        free(l.v);
        if (el[i] == SGR_EXPR_ERR) { free(el); free(cont.v); return SGR_EXPR_ERR; }
    }
    free(cont.v);
    /* the rest (index >= D) */
    int64_t rmin = mn > (int64_t)D ? mn - (int64_t)D : 0;
    int64_t rmax = mx < 0 ? -1 : mx - (int64_t)D;
    sgr_expr rest_el = el[D];
    if (rest_el == SGR_EXPR_ERR - 1) { rest_el = any_value(g, ANY_DEPTH); rmax = rmin; }
    sgr_expr comma = tok(g, ",");
    if (g->o.ws > 0) comma = seq2v(g, g->ws, comma);
    sgr_expr rest;
    if (rmax == 0 || isvoid(g, rest_el)) rest = rmin > 0 ? vd(g) : sgr_gb_empty(g->b);
    else rest = sgr_gb_repeat(g->b, seq2v(g, comma, rest_el), (uint32_t)rmin, rmax < 0 ? SGR_INF : (uint32_t)rmax);
    sgr_expr list;
    if (D == 0) {
        /* first element of the rest carries no comma */
        sgr_expr body;
        if (rmax == 0 || isvoid(g, rest_el)) body = rmin > 0 ? vd(g) : sgr_gb_empty(g->b);
        else {
            sgr_expr more = sgr_gb_repeat(g->b, seq2v(g, comma, rest_el), rmin > 0 ? (uint32_t)rmin - 1 : 0,
                                          rmax < 0 ? SGR_INF : (uint32_t)rmax - 1);
            body = seq2v(g, rest_el, more);
            if (rmin == 0) body = opt(g, body);
        }
        list = body;
    } else {
        sgr_expr after = rest;
        for (size_t i = D; i-- > 1;) {
            sgr_expr w = seq3v(g, comma, el[i], after);
            after = (int64_t)i < mn ? w : alt2v(g, w, sgr_gb_empty(g->b));
        }
        sgr_expr w = seq2v(g, el[0], after);
        list = mn > 0 ? w : alt2v(g, w, sgr_gb_empty(g->b));
    }
    free(el);
    return seq3v(g, tok(g, "["), list, pre(g, "]"));
}

/* ---- oneOf disjointness ------------------------------------------------- */

static unsigned emit_types(const cs *c) {
    unsigned all = ST_NULL | ST_BOOLEAN | ST_OBJECT | ST_ARRAY | ST_NUMBER | ST_STRING | ST_INTEGER;
    if (c->typed) return c->types;
    unsigned t = 0;
    if (c->obj_kw) t |= ST_OBJECT;
    if (c->arr_kw) t |= ST_ARRAY;
    if (c->str_kw) t |= ST_STRING;
    if (c->num_kw) t |= ST_NUMBER | ST_INTEGER;
    return t ? t : all;
}

static unsigned accept_types(const cs *c) {
    unsigned t = c->typed ? c->types : (ST_NULL | ST_BOOLEAN | ST_OBJECT | ST_ARRAY | ST_NUMBER | ST_STRING | ST_INTEGER);
    if (t & ST_NUMBER) t |= ST_INTEGER;
    if (t & ST_INTEGER) t |= ST_NUMBER; /* 1.0 is an integer: overlap is possible */
    return t;
}

/* Every candidate value of a (enum/const) fails b's nodes. */
static bool vals_fail(sg *g, const cs *a, const nlist *bnodes) {
    const json *src = a->valsrc;
    size_t n = a->val_is_const ? 1 : json_size(src);
    for (size_t i = 0; i < n; i++) {
        const json *v = a->val_is_const ? src : json_at(src, i);
        if (!valid_all(g, &a->all, v)) continue;
        if (valid_all(g, bnodes, v)) return false;
    }
    return true;
}

/* Does a key that a always emits have values that all fail b's schema for it? */
static bool one_way_disjoint(sg *g, const cs *a, const cs *b, const namelist *a_forbid, int depth);

/* Does every instance of b fail when it has key k (additionalProperties
 * false on a node that neither names nor pattern-matches k, or a false
 * property schema)? */
static bool rejects_key(const cs *b, const char *k, size_t kl) {
    for (size_t i = 0; i < b->addl.n; i++) {
        const schema_node *n = b->addl.v[i];
        if (n->additional_props->is_bool && !n->additional_props->bool_val && !node_has_prop(n, k, kl) &&
            !pattern_matches_any(n, k, kl))
            return true;
    }
    const cprop *p = cs_prop((cs *)b, k, kl, false);
    for (size_t i = 0; p && i < p->nodes.n; i++)
        if (p->nodes.v[i]->is_bool && !p->nodes.v[i]->bool_val) return true;
    return false;
}

static bool member_disjoint(sg *g, const cs *a, const cs *b, const char *k, size_t kl, int depth) {
    cprop *pa = cs_prop((cs *)a, k, kl, false), *pb = cs_prop((cs *)b, k, kl, false);
    if (!pa || !pb) return false;
    cs ca, cb;
    cs_init(&ca);
    cs_init(&cb);
    bool ok = true, dis = false;
    for (size_t i = 0; i < pa->nodes.n && ok; i++) ok = collect(g, &ca, pa->nodes.v[i], 0, NULL, 0);
    for (size_t i = 0; i < pb->nodes.n && ok; i++) ok = collect(g, &cb, pb->nodes.v[i], 0, NULL, 0);
    if (ok) {
        if (!(emit_types(&ca) & accept_types(&cb))) dis = true;
        else if (ca.has_vals) dis = vals_fail(g, &ca, &pb->nodes);
        else if (depth < 6 && a->ppn.n == 0 && !ca.n_ap && !cb.n_ap) dis = one_way_disjoint(g, &ca, &cb, NULL, depth + 1);
    }
    cs_free(&ca);
    cs_free(&cb);
    return dis;
}

/* gen(a) ∩ L(b) = ∅ ? (a emits only what its constraint set allows, no
 * keys beyond its named ones when no_extra) */
static bool one_way_disjoint(sg *g, const cs *a, const cs *b, const namelist *a_forbid, int depth) {
    unsigned ta = emit_types(a);
    /* enum/const values are validated against the node holding the oneOf
     * itself, so they satisfy exactly one branch by construction */
    if (a->has_vals) return true;
    if (!(ta & accept_types(b))) return true;
    if (ta != ST_OBJECT || (b->typed && !(b->types & ST_OBJECT))) return false;
    /* b requires a key a never writes */
    bool a_extra = false;
    for (size_t i = 0; i < a->addl.n; i++) if (!a->addl.v[i]->additional_props->is_bool) a_extra = true;
    if (a->ppn.n || a->min_props > 0) a_extra = true;
    if (!a_extra) {
        for (size_t i = 0; i < b->req.n; i++) {
            const name *k = &b->req.v[i];
            bool named = cs_prop((cs *)a, k->s, k->n, false) || names_has(&a->req, k->s, k->n);
            if (!named || (a_forbid && names_has(a_forbid, k->s, k->n) && !names_has(&a->req, k->s, k->n))) return true;
        }
    }
    /* a key both require, with values a writes that b rejects */
    for (size_t i = 0; i < a->req.n; i++)
        if (names_has(&b->req, a->req.v[i].s, a->req.v[i].n) && member_disjoint(g, a, b, a->req.v[i].s, a->req.v[i].n, depth)) return true;
    return false;
}

/* ---- a node list -------------------------------------------------------- */

static sgr_expr gen_cs(sg *g, cs *c, const namelist *forbid, const namelist *force) {
    const schema_node *at = c->all.n ? c->all.v[0] : g->s->root;
    if (c->empty) return vd(g);
    unsigned types = emit_types(c);
    /* not */
    for (size_t i = 0; i < c->nots.n; i++) {
        const schema_node *nn = c->nots.v[i]->not_;
        if (nn->is_bool) { if (nn->bool_val) return vd(g); continue; }
        if (c->has_vals) continue; /* the values are validated against the whole node */
        if (nn->kw == KWB(SK_TYPE)) {
            unsigned t = nn->types;
            if ((t & ST_INTEGER) && !(t & ST_NUMBER) && (types & ST_NUMBER)) {
                if (!unsup(g, c->nots.v[i], "not", "not integer")) return SGR_EXPR_ERR;
                continue;
            }
            types &= ~t;
            if (t & ST_NUMBER) types &= ~(unsigned)ST_INTEGER;
        } else if (nn->kw == KWB(SK_REQUIRED)) {
            /* every non-object satisfies {required: [...]}, so only objects
             * can pass; gen_object leaves one of the keys out */
            types &= ST_OBJECT;
        } else if (!unsup(g, c->nots.v[i], "not", "not with this subschema")) return SGR_EXPR_ERR;
    }
    if (c->has_vals) {
        const json *src = c->valsrc;
        size_t n = c->val_is_const ? 1 : json_size(src);
        xvec a = {0};
        for (size_t i = 0; i < n; i++) {
            const json *v = c->val_is_const ? src : json_at(src, i);
            if (!valid_all(g, &c->all, v)) continue;
            if ((forbid || force) && json_is_object(v)) {
                bool bad = false;
                for (size_t k = 0; forbid && k < forbid->n && !bad; k++) bad = json_getn(v, forbid->v[k].s, forbid->v[k].n) != NULL;
                for (size_t k = 0; force && k < force->n && !bad; k++) bad = json_getn(v, force->v[k].s, force->v[k].n) == NULL;
                if (bad) continue;
            }
            xv_add(&a, value_lit(g, v));
        }
        sgr_expr r = altv(g, a.v, a.n);
        free(a.v);
        return r;
    }
    xvec a = {0};
    if (types & ST_NULL) xv_add(&a, lit(g, "null"));
    if (types & ST_BOOLEAN) xv_add(&a, alt2v(g, lit(g, "true"), lit(g, "false")));
    if (types & ST_NUMBER) xv_add(&a, gen_number(g, c, at, false));
    else if (types & ST_INTEGER) xv_add(&a, gen_number(g, c, at, true));
    if (types & ST_STRING) xv_add(&a, gen_string(g, c, at));
    if (types & ST_OBJECT) xv_add(&a, gen_object(g, c, at, forbid, force));
    if (types & ST_ARRAY) xv_add(&a, gen_array(g, c, at));
    sgr_expr r = g->failed ? SGR_EXPR_ERR : altv(g, a.v, a.n);
    free(a.v);
    return r;
}

static sgr_expr gen_nodes(sg *g, const schema_node *const *nodes, size_t n, const appl *dec, size_t nd,
                          const namelist *forbid, const namelist *force) {
    if (g->failed) return SGR_EXPR_ERR;
    if (++g->expansions > MAX_EXPANSIONS)
        return unsup(g, nodes[0], "anyOf", "schema too large to expand (more than %d combinations)", MAX_EXPANSIONS) ? vd(g) : SGR_EXPR_ERR;
    cs c;
    cs_init(&c);
    sgr_expr r = SGR_EXPR_ERR;
    for (size_t i = 0; i < n; i++) if (!collect(g, &c, nodes[i], 0, dec, nd)) goto out;
    if (c.empty) { r = vd(g); goto out; }
    if (c.n_ap) {
        appl A = c.ap[0];
        size_t nb = A.one ? A.n->n_one_of : A.n->n_any_of;
        schema_node *const *br = A.one ? A.n->one_of : A.n->any_of;
        const schema_node **nn = malloc((n + 1) * sizeof *nn);
        appl *dd = malloc((nd + 1) * sizeof *dd);
        cs *bc = calloc(nb ? nb : 1, sizeof *bc);
        namelist *bf = calloc(nb ? nb : 1, sizeof *bf);
        if (!nn || !dd || !bc || !bf) { free(nn); free(dd); free(bc); free(bf); hard_fail(g, "out of memory"); goto out; }
        memcpy(nn, nodes, n * sizeof *nn);
        if (nd) memcpy(dd, dec, nd * sizeof *dd);
        dd[nd] = A;
        bool use_forbid = false, overlap = false, promote = false;
        bool *dead = calloc(nb ? nb : 1, sizeof *dead);
        namelist *bfk = calloc(nb ? nb : 1, sizeof *bfk);
        if (!dead || !bfk) { free(bfk); free(dead); free(nn); free(dd); free(bc); free(bf); hard_fail(g, "out of memory"); goto out; }
        if (A.one) {
            /* prove the branches disjoint (as emitted), else refuse */
            bool ok = true;
            for (size_t i = 0; i < nb && ok; i++) {
                cs_init(&bc[i]);
                for (size_t k = 0; k < n && ok; k++) ok = collect(g, &bc[i], nodes[k], 0, dd, nd + 1);
                if (ok) ok = collect(g, &bc[i], br[i], 0, dd, nd + 1);
            }
            if (!ok) { for (size_t i = 0; i < nb; i++) cs_free(&bc[i]); free(nn); free(dd); free(bc); free(bf); free(dead); free(bfk); goto out; }
            /* branch i is dead when another branch only requires keys i
             * always writes: every instance of i would match both */
            for (size_t i = 0; i < nb; i++)
                for (size_t j = 0; j < nb && !dead[i]; j++) {
                    if (i == j || br[j]->is_bool || br[j]->kw != KWB(SK_REQUIRED) || emit_types(&bc[i]) != ST_OBJECT) continue;
                    bool sub = true;
                    for (size_t q = 0; q < json_size(br[j]->required) && sub; q++) {
                        const json *k = json_at(br[j]->required, q);
                        sub = names_has(&bc[i].req, json_string(k), json_string_len(k));
                    }
                    if (sub) dead[i] = true;
                }
            for (int pass = 0; pass < 3; pass++) {
                overlap = false;
                if (pass == 2) {
                    /* a key every branch declares, whose values tell the
                     * branches apart: write it in every branch */
                    use_forbid = false;
                    for (size_t i = 0; i < nb; i++) bf[i].n = 0;
                    size_t first = 0;
                    while (first < nb && (bc[first].empty || dead[first])) first++;
                    for (size_t q = 0; first < nb && q < bc[first].n_props && !promote; q++) {
                        const cprop *p = &bc[first].props[q];
                        bool all = true;
                        for (size_t i = 0; i < nb && all; i++)
                            if (!bc[i].empty && (emit_types(&bc[i]) != ST_OBJECT || !cs_prop(&bc[i], p->name, p->len, false))) all = false;
                        for (size_t i = 0; i < nb && all; i++)
                            for (size_t j = 0; j < nb && all; j++)
                                if (i != j && !dead[i] && !bc[i].empty && !bc[j].empty && !member_disjoint(g, &bc[i], &bc[j], p->name, p->len, 0)) all = false;
                        if (all) { promote = true; for (size_t i = 0; i < nb; i++) names_add(&bfk[i], p->name, p->len); }
                    }
                    /* else: each branch writes a key of its own that every
                     * other branch rejects (additionalProperties false) */
                    bool each = !promote;
                    for (size_t i = 0; i < nb && each; i++) {
                        if (dead[i] || bc[i].empty) continue;
                        bool found = false;
                        for (size_t q = 0; q < bc[i].n_props && !found && emit_types(&bc[i]) == ST_OBJECT; q++) {
                            const cprop *p = &bc[i].props[q];
                            bool rej = true;
                            for (size_t j = 0; j < nb && rej; j++)
                                if (j != i && !bc[j].empty) rej = rejects_key(&bc[j], p->name, p->len);
                            if (rej) { found = true; names_add(&bfk[i], p->name, p->len); }
                        }
                        if (!found) each = false;
                    }
                    if (each) promote = true;
                    if (!promote) overlap = true;
                    break;
                }
                if (pass == 1) {
                    /* branch i leaves out the keys other branches require */
                    use_forbid = true;
                    for (size_t i = 0; i < nb; i++)
                        for (size_t j = 0; j < nb; j++) {
                            if (i == j) continue;
                            for (size_t q = 0; q < bc[j].req.n; q++)
                                if (!names_has(&bc[i].req, bc[j].req.v[q].s, bc[j].req.v[q].n))
                                    names_add(&bf[i], bc[j].req.v[q].s, bc[j].req.v[q].n);
                        }
                }
                for (size_t i = 0; i < nb && !overlap; i++)
                    for (size_t j = 0; j < nb && !overlap; j++)
                        if (i != j && !dead[i] && !bc[i].empty && !bc[j].empty && !one_way_disjoint(g, &bc[i], &bc[j], use_forbid ? &bf[i] : NULL, 0))
                            overlap = true;
                if (!overlap) break;
            }
            for (size_t i = 0; i < nb; i++) cs_free(&bc[i]);
            if (overlap) {
                if (!unsup(g, A.n, "oneOf", "oneOf with overlapping branches")) {
                    for (size_t i = 0; i < nb; i++) free(bf[i].v);
                    for (size_t i = 0; i < nb; i++) free(bfk[i].v);
                    free(nn); free(dd); free(bc); free(bf); free(dead); free(bfk);
                    goto out;
                }
                use_forbid = false;
                promote = false;
                memset(dead, 0, nb * sizeof *dead);
            }
        }
        xvec alts = {0};
        for (size_t i = 0; i < nb && !g->failed; i++) {
            if (dead[i]) continue;
            nn[n] = br[i];
            namelist fb = {0}, fr = {0};
            if (forbid) for (size_t q = 0; q < forbid->n; q++) names_add(&fb, forbid->v[q].s, forbid->v[q].n);
            if (use_forbid) for (size_t q = 0; q < bf[i].n; q++) names_add(&fb, bf[i].v[q].s, bf[i].v[q].n);
            if (force) for (size_t q = 0; q < force->n; q++) names_add(&fr, force->v[q].s, force->v[q].n);
            if (promote) for (size_t q = 0; q < bfk[i].n; q++) names_add(&fr, bfk[i].v[q].s, bfk[i].v[q].n);
            xv_add(&alts, gen_nodes(g, nn, n + 1, dd, nd + 1, fb.n ? &fb : NULL, fr.n ? &fr : NULL));
            free(fb.v);
            free(fr.v);
        }
        for (size_t i = 0; i < nb; i++) free(bf[i].v);
        for (size_t i = 0; i < nb; i++) free(bfk[i].v);
        free(nn); free(dd); free(bc); free(bf); free(dead); free(bfk);
        r = g->failed ? SGR_EXPR_ERR : altv(g, alts.v, alts.n);
        free(alts.v);
        goto out;
    }
    r = gen_cs(g, &c, forbid, force);
out:
    cs_free(&c);
    return g->failed ? SGR_EXPR_ERR : r;
}

static sgr_expr node_ref(sg *g, const schema_node *n) {
    if (n->is_bool) return n->bool_val ? any_value(g, ANY_DEPTH) : vd(g);
    for (size_t i = 0; i < g->n_memo; i++)
        if (g->memo[i].n == n) return sgr_gb_ref(g->b, g->memo[i].rule);
    char nm[96];
    const char *loc = n->location && n->location[0] ? n->location : "/root";
    int o = snprintf(nm, sizeof nm, "s%zu", g->n_memo);
    for (const char *p = loc; *p && o < (int)sizeof nm - 1; p++) {
        char ch = *p;
        nm[o++] = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ? ch : '_';
    }
    nm[o] = 0;
    int32_t r = sgr_gb_rule(g->b, nm);
    if (r < 0) return hard_fail(g, "%s", sgr_gb_error(g->b));
    SGR_GROW(g->memo, g->n_memo, g->cap_memo);
    g->memo[g->n_memo++] = (memo_ent){n, r};
    const schema_node *one[1] = {n};
    sgr_expr body = gen_nodes(g, one, 1, NULL, 0, NULL, NULL);
    if (body == SGR_EXPR_ERR) return SGR_EXPR_ERR;
    sgr_gb_define(g->b, r, body);
    return sgr_gb_ref(g->b, r);
}

/* ---- productivity ------------------------------------------------------- */

/* Can expression x derive a finite string, given the productive rules?
 * memo: per node, -1 unknown (one pass of the fixpoint). */
static bool prod_expr(const sgr_gb *b, sgr_expr x, const bool *pr, int8_t *memo) {
    if (memo[x] >= 0) return memo[x];
    const gx_node *nd = gx_at(b, x);
    bool r = false;
    switch (nd->kind) {
    case GX_EMPTY: case GX_LIT: r = true; break;
    case GX_CLASS: {
        const uint8_t *s = b->classes[nd->off];
        for (int i = 0; i < 32; i++) if (s[i]) r = true;
        break;
    }
    case GX_SEQ:
        r = true;
        for (uint32_t i = 0; i < nd->n && r; i++) r = prod_expr(b, b->kids[nd->off + i], pr, memo);
        break;
    case GX_ALT:
        for (uint32_t i = 0; i < nd->n && !r; i++) r = prod_expr(b, b->kids[nd->off + i], pr, memo);
        break;
    case GX_REPEAT: r = nd->min == 0 || prod_expr(b, nd->a, pr, memo); break;
    case GX_REF: r = pr[nd->a]; break;
    }
    memo[x] = r;
    return r;
}

/* Rewrites references to rules that cannot derive any string into "matches
 * nothing", so no path of the grammar leads to a dead end. Returns whether
 * the start rule is productive. */
static bool prune_unproductive(sgr_gb *b, int32_t start) {
    size_t n = b->n_rules;
    bool *pr = calloc(n ? n : 1, 1);
    int8_t *memo = malloc(b->n_nodes ? b->n_nodes : 1);
    if (!pr || !memo) { free(pr); free(memo); return false; }
    for (bool ch = true; ch;) {
        ch = false;
        memset(memo, -1, b->n_nodes);
        for (size_t r = n; r-- > 0;)
            if (!pr[r] && b->rules[r].body >= 0 && prod_expr(b, b->rules[r].body, pr, memo)) {
                pr[r] = true; /* "false" answers memoized this pass may be stale: the next pass redoes them */
                ch = true;
            }
    }
    for (size_t i = 0; i < b->n_nodes; i++) {
        gx_node *nd = &b->nodes[i];
        if (nd->kind == GX_REF && !pr[nd->a]) { nd->kind = GX_ALT; nd->n = 0; nd->off = 0; }
    }
    bool ok = pr[start];
    free(pr);
    free(memo);
    return ok;
}

/* ---- entry points ------------------------------------------------------- */

static void sg_init(sg *g, const schema *s, const sgr_schema_opts *o, sgr_gb *b, qerr *e) {
    memset(g, 0, sizeof *g);
    g->s = s;
    if (o) g->o = *o;
    if (g->o.max_int_digits <= 0) g->o.max_int_digits = 15;
    if (g->o.max_int_digits > 18) g->o.max_int_digits = 18;
    if (g->o.max_frac_digits <= 0) g->o.max_frac_digits = 6;
    if (g->o.max_frac_digits > 30) g->o.max_frac_digits = 30;
    if (g->o.ws < 0) g->o.ws = 0;
    if (!g->o.max_rules) g->o.max_rules = 100000;
    g->b = b;
    g->e = e;
    g->int_cap = 1;
    for (int i = 0; i < g->o.max_int_digits; i++) g->int_cap *= 10;
    g->int_cap -= 1;
    for (size_t i = 0; i < sizeof g->any_rule / sizeof *g->any_rule; i++) g->any_rule[i] = -1;
    g->voidx = sgr_gb_alt(b, (const sgr_expr[1]){0}, 0); /* matches nothing */
    g->ws = g->o.ws > 0 ? sgr_gb_repeat(b, sgr_gb_class(b, (const uint8_t[32]){[1] = 0x04, [4] = 0x01}), 0, (uint32_t)g->o.ws)
                        : sgr_gb_empty(b);
    /* one JSON string character: unescaped, or a short / \u00XX escape */
    sgr_expr k[6] = {
        sgr_gb_cp_range(b, 0x20, 0x21), sgr_gb_cp_range(b, 0x23, 0x5B), sgr_gb_cp_range(b, 0x5D, 0x10FFFF),
        seq2v(g, lit(g, "\\"), sgr_gb_class(b, (const uint8_t[32]){[4] = 0x04, [5] = 0x80, [11] = 0x10, [12] = 0x44, [13] = 0x40, [14] = 0x14})),
        seq2v(g, lit(g, "\\u000"), alt2v(g, sgr_gb_range(b, '1', '9'), sgr_gb_range(b, 'a', 'f'))),
        seq2v(g, lit(g, "\\u001"), alt2v(g, sgr_gb_range(b, '0', '9'), sgr_gb_range(b, 'a', 'f'))),
    };
    g->jchar = sgr_gb_alt(b, k, 6);
}

static int32_t sg_finish(sg *g, int32_t start, sgr_unenforced **skipped, size_t *n_skipped) {
    if (!g->failed && sgr_gb_error(g->b)) hard_fail(g, "%s", sgr_gb_error(g->b));
    if (!g->failed && g->o.max_rules && sgr_gb_n_rules(g->b) > g->o.max_rules)
        hard_fail(g, "unsupported: grammar needs %zu rules (limit %zu)", sgr_gb_n_rules(g->b), g->o.max_rules);
    if (!g->failed && !prune_unproductive(g->b, start))
        hard_fail(g, "the schema has no finite instance this compiler can produce");
    free(g->memo);
    if (skipped) *skipped = g->sk;
    else free(g->sk);
    if (n_skipped) *n_skipped = g->nsk;
    if (g->failed) {
        if (skipped) { free(*skipped); *skipped = NULL; }
        if (n_skipped) *n_skipped = 0;
        return -1;
    }
    return start;
}

static bool has_ref_siblings(const schema *s) {
    for (size_t i = 0; i < s->in->n_nodes; i++) if (s->in->nodes[i]->ref_siblings) return true;
    return false;
}

static int32_t schema_to_grammar(const schema *s, const sgr_schema_opts *o, bool siblings, sgr_gb *b,
                                 sgr_unenforced **skipped, size_t *n_skipped, qerr *e) {
    sg g;
    sg_init(&g, s, o, b, e);
    g.siblings = siblings;
    int32_t start = sgr_gb_rule(b, "root");
    sgr_expr body = node_ref(&g, s->root);
    if (body != SGR_EXPR_ERR && !g.failed) sgr_gb_define(b, start, body);
    else if (!g.failed) hard_fail(&g, "%s", sgr_gb_error(b) ? sgr_gb_error(b) : "grammar error");
    return sg_finish(&g, start, skipped, n_skipped);
}

int32_t sgr_schema_to_grammar(const schema *s, const sgr_schema_opts *o, sgr_gb *b,
                              sgr_unenforced **skipped, size_t *n_skipped, qerr *e) {
    if (skipped) *skipped = NULL;
    if (n_skipped) *n_skipped = 0;
    if (!s || !s->root || !b) return qerr_set(e, "sgr_schema_to_grammar: no schema or builder");
    /* Draft <= 7 $ref siblings: validators disagree on them (see
     * compile_ref_siblings), so the grammar first tries to satisfy them
     * too, strictly (no best effort), and otherwise generates by the spec
     * alone, as if they were not there. */
    if (has_ref_siblings(s) && !sgr_gb_error(b)) {
        gb_mark m = sgr_gb_mark(b);
        sgr_schema_opts so = o ? *o : (sgr_schema_opts){0};
        so.best_effort = false;
        qerr e2;
        int32_t st = schema_to_grammar(s, &so, true, b, skipped, n_skipped, &e2);
        if (st >= 0) return st;
        sgr_gb_rollback(b, &m);
    }
    return schema_to_grammar(s, o, false, b, skipped, n_skipped, e);
}

int32_t sgr_schema_any_json_object(sgr_gb *b, const sgr_schema_opts *o, int max_depth, qerr *e) {
    if (!b) return qerr_set(e, "sgr_schema_any_json_object: no builder");
    if (max_depth <= 0) max_depth = 6;
    if (max_depth > ANY_DEPTH + 7) max_depth = ANY_DEPTH + 7;
    schema dummy = {0};
    sg g;
    sg_init(&g, &dummy, o, b, e);
    int32_t start = sgr_gb_rule(b, "root");
    sgr_expr inner = any_value(&g, max_depth - 1);
    sgr_gb_define(b, start, any_object(&g, inner, "root"));
    return sg_finish(&g, start, NULL, NULL);
}
