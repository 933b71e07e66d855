/* schema.c — JSON Schema compiler: walks a schema document once into a tree
 * of schema_node, registers every resource ($id), anchor and location, and
 * resolves $ref / $dynamicRef (RFC 3986 reference resolution, JSON Pointer
 * fragments with %-escapes, remote documents through a loader callback). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema_int.h"

static const char *kw_names[SK_COUNT] = {
    "type", "enum", "const", "properties", "required", "additionalProperties",
    "patternProperties", "propertyNames", "minProperties", "maxProperties",
    "items", "prefixItems", "contains", "minContains", "maxContains",
    "minItems", "maxItems", "uniqueItems", "minLength", "maxLength",
    "pattern", "format", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "multipleOf", "allOf", "anyOf", "oneOf", "not",
    "if", "dependentRequired", "dependentSchemas", "$ref", "$dynamicRef",
    "unevaluatedProperties", "unevaluatedItems",
};

const char *schema_kw_name(int kw) { return kw >= 0 && kw < SK_COUNT ? kw_names[kw] : "?"; }

/* Keywords that carry no assertion: accepted, never reported by check. */
static const char *annotations[] = {
    "title", "description", "examples", "default", "$comment", "deprecated", "readOnly",
    "writeOnly", "contentMediaType", "contentEncoding", "contentSchema", "$schema",
    "$vocabulary", "$id", "$anchor", "$dynamicAnchor", "$defs", "definitions", NULL,
};

/* ------------------------------------------------------------------------ */
/* URIs (RFC 3986 section 5) */

typedef struct uri_parts {
    const char *scheme; size_t scheme_n; bool has_scheme;
    const char *auth; size_t auth_n; bool has_auth;
    const char *path; size_t path_n;
    const char *query; size_t query_n; bool has_query;
    const char *frag; size_t frag_n; bool has_frag;
} uri_parts;

static void uri_split(const char *s, uri_parts *u) {
    memset(u, 0, sizeof *u);
    size_t n = strlen(s), i = 0;
    while (i < n && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                     (i > 0 && ((s[i] >= '0' && s[i] <= '9') || s[i] == '+' || s[i] == '-' || s[i] == '.'))))
        i++;
    size_t p = 0;
    if (i > 0 && i < n && s[i] == ':') { u->has_scheme = true; u->scheme = s; u->scheme_n = i; p = i + 1; }
    if (p + 1 < n + 1 && s[p] == '/' && s[p + 1] == '/') {
        u->has_auth = true;
        u->auth = s + p + 2;
        size_t e = p + 2;
        while (e < n && s[e] != '/' && s[e] != '?' && s[e] != '#') e++;
        u->auth_n = e - p - 2;
        p = e;
    }
    size_t e = p;
    while (e < n && s[e] != '?' && s[e] != '#') e++;
    u->path = s + p;
    u->path_n = e - p;
    p = e;
    if (p < n && s[p] == '?') {
        u->has_query = true;
        e = p + 1;
        while (e < n && s[e] != '#') e++;
        u->query = s + p + 1;
        u->query_n = e - p - 1;
        p = e;
    }
    if (p < n && s[p] == '#') { u->has_frag = true; u->frag = s + p + 1; u->frag_n = n - p - 1; }
}

typedef struct strb { char *p; size_t n, cap; } strb;
static void sbp(strb *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (b->n + n + 1 > cap) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) abort(); /* tiny strings; out of memory here is fatal */
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sbs(strb *b, const char *s) { sbp(b, s, strlen(s)); }

/* Removes "." and ".." segments (RFC 3986 5.2.4). */
static void remove_dots(const char *in, size_t n, strb *out) {
    char *buf = malloc(n + 2);
    if (!buf) abort();
    size_t o = 0, i = 0;
    while (i < n) {
        if (n - i >= 3 && !strncmp(in + i, "../", 3)) i += 3;
        else if (n - i >= 2 && !strncmp(in + i, "./", 2)) i += 2;
        else if (n - i >= 3 && !strncmp(in + i, "/./", 3)) i += 2;
        else if (n - i == 2 && !strncmp(in + i, "/.", 2)) { i += 1; buf[o++] = '/'; i += 1; }
        else if (n - i >= 4 && !strncmp(in + i, "/../", 4)) {
            i += 3;
            while (o > 0 && buf[o - 1] != '/') o--;
            if (o > 0) o--;
        } else if (n - i == 3 && !strncmp(in + i, "/..", 3)) {
            i += 3;
            while (o > 0 && buf[o - 1] != '/') o--;
            if (o > 0) o--;
            buf[o++] = '/';
        } else if ((n - i == 1 && in[i] == '.') || (n - i == 2 && !strncmp(in + i, "..", 2))) i = n;
        else {
            if (in[i] == '/') buf[o++] = in[i++];
            while (i < n && in[i] != '/') buf[o++] = in[i++];
        }
    }
    sbp(out, buf, o);
    free(buf);
}

/* Resolves ref against base; returns a malloc'd absolute URI. */
static char *uri_resolve(const char *base, const char *ref) {
    uri_parts b, r;
    uri_split(base, &b);
    uri_split(ref, &r);
    strb o = {0};
    sbs(&o, "");
    const uri_parts *auth_from, *query_from;
    if (r.has_scheme) {
        sbp(&o, r.scheme, r.scheme_n); sbs(&o, ":");
        if (r.has_auth) { sbs(&o, "//"); sbp(&o, r.auth, r.auth_n); }
        remove_dots(r.path, r.path_n, &o);
        query_from = &r;
        goto tail;
    }
    if (b.has_scheme) { sbp(&o, b.scheme, b.scheme_n); sbs(&o, ":"); }
    if (r.has_auth) {
        sbs(&o, "//"); sbp(&o, r.auth, r.auth_n);
        remove_dots(r.path, r.path_n, &o);
        query_from = &r;
        goto tail;
    }
    auth_from = &b;
    if (auth_from->has_auth) { sbs(&o, "//"); sbp(&o, b.auth, b.auth_n); }
    if (r.path_n == 0) {
        sbp(&o, b.path, b.path_n);
        query_from = r.has_query ? &r : &b;
    } else {
        strb m = {0};
        sbs(&m, "");
        if (r.path[0] == '/') sbp(&m, r.path, r.path_n);
        else {
            if (b.has_auth && b.path_n == 0) sbs(&m, "/");
            else {
                size_t k = b.path_n;
                while (k > 0 && b.path[k - 1] != '/') k--;
                sbp(&m, b.path, k);
            }
            sbp(&m, r.path, r.path_n);
        }
        remove_dots(m.p, m.n, &o);
        free(m.p);
        query_from = &r;
    }
tail:
    if (query_from->has_query) { sbs(&o, "?"); sbp(&o, query_from->query, query_from->query_n); }
    if (r.has_frag) { sbs(&o, "#"); sbp(&o, r.frag, r.frag_n); }
    return o.p;
}

/* The URI without its fragment (malloc'd). */
static char *uri_strip_frag(const char *u) {
    const char *h = strchr(u, '#');
    size_t n = h ? (size_t)(h - u) : strlen(u);
    char *s = malloc(n + 1);
    if (!s) abort();
    memcpy(s, u, n);
    s[n] = 0;
    return s;
}

/* %-decodes (for JSON Pointer fragments). */
static char *pct_decode(const char *s, size_t n, size_t *outn) {
    char *o = malloc(n + 1);
    if (!o) abort();
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n + 0 + 1 && i + 2 <= n - 1 + 1 && i + 2 < n + 1) {
            int h1 = -1, h2 = -1;
            char a = s[i + 1], b = i + 2 < n ? s[i + 2] : 0;
            h1 = (a >= '0' && a <= '9') ? a - '0' : (a | 0x20) >= 'a' && (a | 0x20) <= 'f' ? (a | 0x20) - 'a' + 10 : -1;
            h2 = (b >= '0' && b <= '9') ? b - '0' : (b | 0x20) >= 'a' && (b | 0x20) <= 'f' ? (b | 0x20) - 'a' + 10 : -1;
            if (h1 >= 0 && h2 >= 0) { o[k++] = (char)(h1 * 16 + h2); i += 2; continue; }
        }
        o[k++] = s[i];
    }
    o[k] = 0;
    *outn = k;
    return o;
}

/* ------------------------------------------------------------------------ */
/* Compiler state */

static uint64_t ptr_hash(const void *p) {
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33;
    return x;
}

static schema_node *map_get(const schema_internal *in, const json *j) {
    if (!in->map_cap) return NULL;
    size_t m = in->map_cap - 1, i = ptr_hash(j) & m;
    while (in->map_k[i]) {
        if (in->map_k[i] == j) return in->map_v[i];
        i = (i + 1) & m;
    }
    return NULL;
}

static int map_put(schema_internal *in, const json *j, schema_node *n) {
    if ((in->map_n + 1) * 2 > in->map_cap) {
        size_t cap = in->map_cap ? in->map_cap * 2 : 256;
        const json **k = calloc(cap, sizeof *k);
        schema_node **v = calloc(cap, sizeof *v);
        if (!k || !v) { free(k); free(v); return -1; }
        for (size_t i = 0; i < in->map_cap; i++) {
            if (!in->map_k[i]) continue;
            size_t x = ptr_hash(in->map_k[i]) & (cap - 1);
            while (k[x]) x = (x + 1) & (cap - 1);
            k[x] = in->map_k[i];
            v[x] = in->map_v[i];
        }
        free(in->map_k); free(in->map_v);
        in->map_k = k; in->map_v = v; in->map_cap = cap;
    }
    size_t m = in->map_cap - 1, i = ptr_hash(j) & m;
    while (in->map_k[i]) i = (i + 1) & m;
    in->map_k[i] = j;
    in->map_v[i] = n;
    in->map_n++;
    return 0;
}


/* String -> index tables (open addressing; the first entry of a key wins),
 * so hostile schemas with many anchors or $ids resolve in linear time. */
static uint64_t str_hash(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

typedef const char *(*strix_key)(const schema_internal *in, size_t i);
static const char *anchor_key(const schema_internal *in, size_t i) { return in->anchors[i].uri; }
static const char *res_key(const schema_internal *in, size_t i) { return in->res[i]->uri; }

static long strix_find(const schema_internal *in, const strix *t, strix_key key, const char *k) {
    if (!t->cap) return -1;
    size_t m = t->cap - 1, i = str_hash(k) & m;
    while (t->slot[i]) {
        if (!strcmp(key(in, t->slot[i] - 1), k)) return (long)t->slot[i] - 1;
        i = (i + 1) & m;
    }
    return -1;
}

static void strix_add(const schema_internal *in, strix *t, strix_key key, size_t idx) {
    const char *k = key(in, idx);
    if (strix_find(in, t, key, k) >= 0) return;
    if ((t->n + 1) * 2 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        uint32_t *ns = calloc(cap, sizeof *ns);
        if (!ns) abort();
        for (size_t i = 0; i < t->cap; i++) {
            if (!t->slot[i]) continue;
            size_t x = str_hash(key(in, t->slot[i] - 1)) & (cap - 1);
            while (ns[x]) x = (x + 1) & (cap - 1);
            ns[x] = t->slot[i];
        }
        free(t->slot);
        t->slot = ns;
        t->cap = cap;
    }
    size_t m = t->cap - 1, i = str_hash(k) & m;
    while (t->slot[i]) i = (i + 1) & m;
    t->slot[i] = (uint32_t)idx + 1;
    t->n++;
}

static void add_anchor(schema_internal *in, char *uri, schema_node *n, bool dynamic) {
    SGR_GROW(in->anchors, in->n_anchors, in->cap_anchors);
    in->anchors[in->n_anchors++] = (anchor_ent){uri, n, dynamic};
    strix_add(in, dynamic ? &in->ix_dynamic : &in->ix_anchors, anchor_key, in->n_anchors - 1);
}

schema_node *schema_find_anchor(const schema_internal *in, const char *uri, bool dynamic_only) {
    long i = strix_find(in, dynamic_only ? &in->ix_dynamic : &in->ix_anchors, anchor_key, uri);
    return i < 0 ? NULL : in->anchors[i].node;
}

static schema_resource *find_resource(const schema_internal *in, const char *uri) {
    long i = strix_find(in, &in->ix_res, res_key, uri);
    return i < 0 ? NULL : in->res[i];
}

static schema_resource *new_resource(schema_internal *in, const char *uri, const json *root, int draft) {
    schema_resource *r = calloc(1, sizeof *r);
    if (!r) abort();
    r->uri = strdup(uri);
    if (!r->uri) abort();
    r->root = root;
    r->draft = draft;
    SGR_GROW(in->res, in->n_res, in->cap_res);
    in->res[in->n_res++] = r;
    strix_add(in, &in->ix_res, res_key, in->n_res - 1);
    return r;
}

typedef struct cctx {
    schema *s;
    schema_internal *in;
    qerr *e;
    int err;
    size_t regex_insts;   /* budget: total compiled regex program size */
    size_t loc_bytes;     /* budget: total bytes of node location strings */
} cctx;

#define MAX_REGEX_INSTS 4000000   /* about 48 MB of regex programs */
#define MAX_LOC_BYTES (64u << 20)

/* Compiles a schema regex and charges it to the budget. */
static int cregex(cctx *c, const char *pat, size_t n, regex **out, const char *loc) {
    if (regex_compile(pat, n, out, c->e)) {
        c->err = 1;
        qerr_wrap(c->e, "schema at '%.200s'", loc[0] ? loc : "/");
        return -1;
    }
    c->regex_insts += regex_program_size(*out);
    if (c->regex_insts > MAX_REGEX_INSTS) {
        qerr_set(c->e, "schema: too large (regex programs exceed %d instructions in all)", MAX_REGEX_INSTS);
        c->err = 1;
        return -1;
    }
    return 0;
}

static int cfail(cctx *c, const char *loc, const char *fmt, const char *arg) {
    if (!c->err) {
        char m[300];
        snprintf(m, sizeof m, fmt, arg ? arg : "");
        qerr_set(c->e, "schema: %s (at '%.200s')", m, loc[0] ? loc : "/");
        c->err = 1;
    }
    return -1;
}

static char *loc_join(const char *base, const char *key, size_t klen) {
    strb b = {0};
    sbs(&b, base);
    sbs(&b, "/");
    for (size_t i = 0; i < klen; i++) {
        if (key[i] == '~') sbs(&b, "~0");
        else if (key[i] == '/') sbs(&b, "~1");
        else sbp(&b, key + i, 1);
    }
    return b.p;
}

static char *loc_join_idx(const char *base, size_t i) {
    char k[32];
    int n = snprintf(k, sizeof k, "%zu", i);
    return loc_join(base, k, (size_t)n);
}

static int draft_of(const char *s) {
    if (strstr(s, "draft-03")) return 3;
    if (strstr(s, "draft-04")) return 4;
    if (strstr(s, "draft-06")) return 6;
    if (strstr(s, "draft-07")) return 7;
    if (strstr(s, "2019-09")) return 2019;
    return 2020;
}

static schema_node *compile_node(cctx *c, const json *j, schema_resource *res, const char *loc, int depth);

static int get_count(cctx *c, const json *v, const char *loc, const char *kw, int64_t *out) {
    if (!json_is_number(v) || !json_number_is_integer(v) || v->u.num.d < 0)
        return cfail(c, loc, "%s must be a non-negative integer", kw);
    *out = v->u.num.is_int ? v->u.num.i : (v->u.num.d > 9e18 ? INT64_MAX : (int64_t)v->u.num.d);
    return 0;
}

static schema_node *sub(cctx *c, const json *v, schema_resource *res, const char *loc, const char *kw, int depth) {
    char *l = loc_join(loc, kw, strlen(kw));
    schema_node *n = compile_node(c, v, res, l, depth + 1);
    free(l);
    return n;
}

static schema_node **sub_array(cctx *c, const json *v, schema_resource *res, const char *loc, const char *kw, size_t *cnt, int depth) {
    if (!json_is_array(v) || (json_size(v) == 0 && strcmp(kw, "items") != 0))
        { cfail(c, loc, "%s must be a non-empty array of schemas", kw); return NULL; }
    size_t n = json_size(v);
    schema_node **arr = calloc(n ? n : 1, sizeof *arr);
    if (!arr) abort();
    char *l = loc_join(loc, kw, strlen(kw));
    for (size_t i = 0; i < n; i++) {
        char *li = loc_join_idx(l, i);
        arr[i] = compile_node(c, json_at(v, i), res, li, depth + 1);
        free(li);
        if (!arr[i]) { free(l); free(arr); return NULL; }
    }
    free(l);
    *cnt = n;
    return arr;
}

static int prop_cmp(const void *a, const void *b) {
    const schema_prop *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int r = memcmp(x->name, y->name, n);
    if (r) return r;
    return x->len < y->len ? -1 : x->len > y->len;
}

static schema_prop *sub_map(cctx *c, const json *v, schema_resource *res, const char *loc, const char *kw, size_t *cnt, int depth) {
    if (!json_is_object(v)) { cfail(c, loc, "%s must be an object of schemas", kw); return NULL; }
    size_t n = json_size(v);
    schema_prop *arr = calloc(n ? n : 1, sizeof *arr);
    if (!arr) abort();
    char *l = loc_join(loc, kw, strlen(kw));
    for (size_t i = 0; i < n; i++) {
        const json_member *m = &v->u.obj.m[i];
        char *li = loc_join(l, m->key, m->klen);
        arr[i].name = m->key;
        arr[i].len = m->klen;
        arr[i].s = compile_node(c, m->val, res, li, depth + 1);
        free(li);
        if (!arr[i].s) { free(l); free(arr); return NULL; }
    }
    free(l);
    qsort(arr, n, sizeof *arr, prop_cmp);
    *cnt = n;
    return arr;
}

/* Records an unsupported keyword (what) found at loc/kw. */
static void record_unknown(cctx *c, const char *loc, const char *kw, const char *what) {
    schema *s = c->s;
    SGR_GROW(s->unknown, s->n_unknown, c->in->cap_unknown);
    s->unknown[s->n_unknown].keyword = strdup(what);
    s->unknown[s->n_unknown].pointer = loc_join(loc, kw, strlen(kw));
    if (!s->unknown[s->n_unknown].keyword || !s->unknown[s->n_unknown].pointer) abort();
    s->n_unknown++;
}

static int add_pending(cctx *c, schema_node *n, bool dynamic) {
    SGR_GROW(c->in->pending, c->in->n_pending, c->in->cap_pending);
    c->in->pending[c->in->n_pending].node = n;
    c->in->pending[c->in->n_pending].dynamic = dynamic;
    c->in->n_pending++;
    return 0;
}

static unsigned type_bit(const char *t) {
    static const char *names[] = {"null", "boolean", "object", "array", "number", "string", "integer"};
    for (unsigned i = 0; i < 7; i++) if (!strcmp(t, names[i])) return 1u << i;
    return 0;
}

static bool is_annotation(const char *k) {
    for (int i = 0; annotations[i]; i++) if (!strcmp(k, annotations[i])) return true;
    return false;
}

#define SET(k) (n->kw |= 1ull << (k))

/* A node for schema j at loc, owned by the schema (not yet in the map). */
static schema_node *node_new(cctx *c, const json *j, schema_resource *res, const char *loc) {
    schema_node *n = calloc(1, sizeof *n);
    if (!n) abort();
    n->src = j;
    n->location = strdup(loc);
    if (!n->location) abort();
    SGR_GROW(c->in->nodes, c->in->n_nodes, c->in->cap_nodes);
    c->in->nodes[c->in->n_nodes++] = n;
    n->res = res;
    n->draft = res->draft;
    n->min_contains = 1;
    n->max_props = n->max_items = n->max_length = n->max_contains = -1;
    return n;
}

enum kw_filter { KW_ALL, KW_REF_ONLY, KW_SIBLINGS };

static int compile_keywords(cctx *c, schema_node *n, const json *j, schema_resource *res, const char *loc, int depth,
                            int draft, enum kw_filter which);

/* The siblings of a draft <= 7 $ref that the grammar also enforces:
 * assertions on the instance itself. None holds a subschema: a subschema
 * there is one the spec never compiles, whose $ids and anchors do not
 * exist, so it is left out rather than half-registered. */
static bool is_sibling_assertion(const char *k) {
    static const char *kws[] = {
        "type", "enum", "const", "required", "minProperties", "maxProperties", "minItems", "maxItems",
        "uniqueItems", "minLength", "maxLength", "pattern", "format", "minimum", "maximum",
        "exclusiveMinimum", "exclusiveMaximum", "multipleOf", NULL,
    };
    for (int i = 0; kws[i]; i++) if (!strcmp(k, kws[i])) return true;
    return false;
}

/* Validators differ on $ref siblings in drafts 4-7: the spec (and Python's
 * jsonschema) ignores them, Ajv applies them. Output that satisfies both
 * $ref and its siblings is valid either way, so the grammar conjoins this
 * node when it can (sgr/schema_grammar.c); the validator never reads it.
 * Siblings the spec ignores must not fail the compile: a malformed one
 * just leaves no sibling node. */
static schema_node *compile_ref_siblings(cctx *c, const json *j, schema_resource *res, const char *loc, int depth, int draft) {
    size_t i = 0;
    while (i < j->u.obj.n && !is_sibling_assertion(j->u.obj.m[i].key)) i++;
    if (i == j->u.obj.n || c->err) return NULL;
    schema_node *n = node_new(c, j, res, loc);
    n->draft = draft;
    size_t regex_before = c->regex_insts;
    if (compile_keywords(c, n, j, res, loc, depth, draft, KW_SIBLINGS)) {
        c->err = 0;
        c->regex_insts = regex_before;
        return NULL;
    }
    return n;
}

static schema_node *compile_node(cctx *c, const json *j, schema_resource *res, const char *loc, int depth) {
    if (c->err) return NULL;
    schema_node *n = map_get(c->in, j);
    if (n) return n;
    if (depth > 256) { cfail(c, loc, "%s", "schema nested too deeply"); return NULL; }
    size_t max_nodes = c->s->opts.max_nodes ? c->s->opts.max_nodes : 200000;
    if (c->in->n_nodes >= max_nodes) { cfail(c, loc, "%s", "schema too large (node limit)"); return NULL; }
    if (!json_is_bool(j) && !json_is_object(j)) { cfail(c, loc, "%s", "a schema must be an object or a boolean"); return NULL; }
    c->loc_bytes += strlen(loc) + 1;
    if (c->loc_bytes > MAX_LOC_BYTES) { cfail(c, "", "%s", "schema too large (locations exceed 64 MB)"); return NULL; }
    n = node_new(c, j, res, loc);
    if (map_put(c->in, j, n)) abort();
    if (json_is_bool(j)) {
        n->is_bool = true;
        n->bool_val = j->type == JSON_TRUE;
        return n;
    }

    /* identity first: $schema, $id, anchors */
    int draft = res->draft;
    const json *v;
    if ((v = json_get(j, "$schema"))) {
        if (!json_is_string(v)) { cfail(c, loc, "%s", "$schema must be a string"); return NULL; }
        draft = draft_of(json_string(v));
    }
    const json *id = json_get(j, "$id");
    if (!id && draft <= 4) id = json_get(j, "id");
    n->draft = draft;
    bool legacy_ref = draft <= 7 && json_get(j, "$ref");
    if (id && json_is_string(id) && !legacy_ref) {
        const char *ids = json_string(id);
        if (ids[0] != '#' || draft <= 7) {
            char *abs = uri_resolve(res->uri, ids);
            if (ids[0] == '#') {
                /* draft <= 7 plain-name fragment id: an anchor */
                add_anchor(c->in, abs, n, false);
            } else {
                char *base = uri_strip_frag(abs);
                free(abs);
                schema_resource *nr = find_resource(c->in, base);
                if (!nr || nr->node) {
                    nr = new_resource(c->in, base, j, draft);
                }
                nr->node = n;
                nr->draft = draft;
                res = nr;
                n->res = res;
                add_anchor(c->in, strdup(base), n, false);
                free(base);
            }
        }
    } else if (draft != res->draft) {
        /* a $schema switch without $id: keep the resource, note the dialect */
    }
    if ((v = json_get(j, "$anchor"))) {
        if (!json_is_string(v)) { cfail(c, loc, "%s", "$anchor must be a string"); return NULL; }
        strb b = {0};
        sbs(&b, res->uri); sbs(&b, "#"); sbs(&b, json_string(v));
        add_anchor(c->in, b.p, n, false);
    }
    if ((v = json_get(j, "$dynamicAnchor"))) {
        if (!json_is_string(v)) { cfail(c, loc, "%s", "$dynamicAnchor must be a string"); return NULL; }
        strb b = {0};
        sbs(&b, res->uri); sbs(&b, "#"); sbs(&b, json_string(v));
        char *b2 = strdup(b.p);
        if (!b2) abort();
        add_anchor(c->in, b.p, n, false);
        add_anchor(c->in, b2, n, true);
        n->dynamic_anchor = json_string(v);
        res->has_dynamic = true;
    }

    /* $defs / definitions: compiled so their ids and anchors are known */
    static const char *defkw[] = {"$defs", "definitions"};
    for (int d = 0; d < 2; d++) {
        if ((v = json_get(j, defkw[d]))) {
            if (!json_is_object(v)) { cfail(c, loc, "%s must be an object", defkw[d]); return NULL; }
            size_t cnt;
            schema_prop *p = sub_map(c, v, res, loc, defkw[d], &cnt, depth);
            if (!p) return NULL;
            free(p);
        }
    }

    if (compile_keywords(c, n, j, res, loc, depth, draft, legacy_ref ? KW_REF_ONLY : KW_ALL)) return NULL;
    /* draft <= 7 ignores the siblings of $ref; what they assert is still
     * compiled, apart, for the grammar (see ref_siblings) */
    if (legacy_ref) n->ref_siblings = compile_ref_siblings(c, j, res, loc, depth, draft);
    return n;
}

/* The keywords of schema object j, into n. Returns -1 on error. */
static int compile_keywords(cctx *c, schema_node *n, const json *j, schema_resource *res, const char *loc, int depth,
                            int draft, enum kw_filter which) {
    const json *v;
    for (size_t mi = 0; mi < j->u.obj.n; mi++) {
        const char *k = j->u.obj.m[mi].key;
        v = j->u.obj.m[mi].val;
        if (c->err) return -1;
        if (which == KW_REF_ONLY && strcmp(k, "$ref") != 0) continue;
        if (which == KW_SIBLINGS && !is_sibling_assertion(k)) continue;
        if (!strcmp(k, "type")) {
            SET(SK_TYPE);
            if (json_is_string(v)) {
                n->types = type_bit(json_string(v));
                if (!n->types) return cfail(c, loc, "unknown type \"%s\"", json_string(v)), -1;
            } else if (json_is_array(v)) {
                for (size_t i = 0; i < json_size(v); i++) {
                    const json *t = json_at(v, i);
                    unsigned b = json_is_string(t) ? type_bit(json_string(t)) : 0;
                    if (!b) return cfail(c, loc, "%s", "type array must hold type names"), -1;
                    n->types |= b;
                }
            } else return cfail(c, loc, "%s", "type must be a string or an array"), -1;
            if (n->types & ST_NUMBER) n->types |= ST_INTEGER;
        } else if (!strcmp(k, "enum")) {
            if (!json_is_array(v)) return cfail(c, loc, "%s", "enum must be an array"), -1;
            SET(SK_ENUM); n->enum_values = v;
        } else if (!strcmp(k, "const")) {
            SET(SK_CONST); n->const_value = v;
        } else if (!strcmp(k, "properties")) {
            SET(SK_PROPERTIES);
            if (!(n->props = sub_map(c, v, res, loc, k, &n->n_props, depth))) return -1;
        } else if (!strcmp(k, "required")) {
            if (draft <= 3 && json_is_bool(v)) continue;
            if (!json_is_array(v)) return cfail(c, loc, "%s", "required must be an array of strings"), -1;
            for (size_t i = 0; i < json_size(v); i++)
                if (!json_is_string(json_at(v, i))) return cfail(c, loc, "%s", "required must be an array of strings"), -1;
            SET(SK_REQUIRED); n->required = v;
        } else if (!strcmp(k, "additionalProperties")) {
            SET(SK_ADDITIONAL_PROPERTIES);
            if (!(n->additional_props = sub(c, v, res, loc, k, depth))) return -1;
        } else if (!strcmp(k, "patternProperties")) {
            if (!json_is_object(v)) return cfail(c, loc, "%s", "patternProperties must be an object"), -1;
            SET(SK_PATTERN_PROPERTIES);
            size_t cnt = json_size(v);
            n->pattern_props = calloc(cnt ? cnt : 1, sizeof *n->pattern_props);
            if (!n->pattern_props) abort();
            char *l = loc_join(loc, k, strlen(k));
            for (size_t i = 0; i < cnt; i++) {
                const json_member *m = &v->u.obj.m[i];
                schema_pattern_prop *pp = &n->pattern_props[i];
                n->n_pattern_props = i + 1;
                pp->source = m->key;
                if (cregex(c, m->key, m->klen, &pp->re, loc)) { free(l); return -1; }
                char *li = loc_join(l, m->key, m->klen);
                pp->s = compile_node(c, m->val, res, li, depth + 1);
                free(li);
                if (!pp->s) { free(l); return -1; }
            }
            free(l);
        } else if (!strcmp(k, "propertyNames")) {
            SET(SK_PROPERTY_NAMES);
            if (!(n->property_names = sub(c, v, res, loc, k, depth))) return -1;
        } else if (!strcmp(k, "minProperties")) {
            SET(SK_MIN_PROPERTIES); if (get_count(c, v, loc, k, &n->min_props)) return -1;
        } else if (!strcmp(k, "maxProperties")) {
            SET(SK_MAX_PROPERTIES); if (get_count(c, v, loc, k, &n->max_props)) return -1;
        } else if (!strcmp(k, "items")) {
            SET(SK_ITEMS);
            if (json_is_array(v)) {
                /* draft <= 2019-09 tuple form: prefix items, then additionalItems */
                SET(SK_PREFIX_ITEMS);
                if (!(n->prefix_items = sub_array(c, v, res, loc, k, &n->n_prefix_items, depth))) return -1;
                const json *ai = json_get(j, "additionalItems");
                if (ai && !(n->items = sub(c, ai, res, loc, "additionalItems", depth))) return -1;
                if (!ai) n->kw &= ~(1ull << SK_ITEMS);
            } else if (!(n->items = sub(c, v, res, loc, k, depth))) return -1;
        } else if (!strcmp(k, "additionalItems")) {
            /* only meaningful with the array form of items (handled there) */
            const json *it = json_get(j, "items");
            if (!it || !json_is_array(it)) {
                schema_node *x = sub(c, v, res, loc, k, depth); /* compiled, not applied */
                if (!x) return -1;
            }
        } else if (!strcmp(k, "prefixItems")) {
            SET(SK_PREFIX_ITEMS);
            if (!(n->prefix_items = sub_array(c, v, res, loc, k, &n->n_prefix_items, depth))) return -1;
        } else if (!strcmp(k, "contains")) {
            SET(SK_CONTAINS);
            if (!(n->contains = sub(c, v, res, loc, k, depth))) return -1;
        } else if (!strcmp(k, "minContains")) {
            SET(SK_MIN_CONTAINS); if (get_count(c, v, loc, k, &n->min_contains)) return -1;
        } else if (!strcmp(k, "maxContains")) {
            SET(SK_MAX_CONTAINS); if (get_count(c, v, loc, k, &n->max_contains)) return -1;
        } else if (!strcmp(k, "minItems")) {
            SET(SK_MIN_ITEMS); if (get_count(c, v, loc, k, &n->min_items)) return -1;
        } else if (!strcmp(k, "maxItems")) {
            SET(SK_MAX_ITEMS); if (get_count(c, v, loc, k, &n->max_items)) return -1;
        } else if (!strcmp(k, "uniqueItems")) {
            if (!json_is_bool(v)) return cfail(c, loc, "%s", "uniqueItems must be a boolean"), -1;
            SET(SK_UNIQUE_ITEMS); n->unique_items = v->type == JSON_TRUE;
        } else if (!strcmp(k, "minLength")) {
            SET(SK_MIN_LENGTH); if (get_count(c, v, loc, k, &n->min_length)) return -1;
        } else if (!strcmp(k, "maxLength")) {
            SET(SK_MAX_LENGTH); if (get_count(c, v, loc, k, &n->max_length)) return -1;
        } else if (!strcmp(k, "pattern")) {
            if (!json_is_string(v)) return cfail(c, loc, "%s", "pattern must be a string"), -1;
            SET(SK_PATTERN);
            n->pattern_src = json_string(v);
            if (cregex(c, json_string(v), json_string_len(v), &n->pattern, loc)) return -1;
        } else if (!strcmp(k, "format")) {
            if (!json_is_string(v)) return cfail(c, loc, "%s", "format must be a string"), -1;
            SET(SK_FORMAT); n->format = json_string(v);
            bool known;
            (void)schema_format_check(n->format, "", 0, &known);
            if (!known && which != KW_SIBLINGS) {
                /* an annotation the validator cannot check: reported by check */
                strb b = {0};
                sbs(&b, "format \"");
                sbs(&b, n->format);
                sbs(&b, "\"");
                record_unknown(c, loc, k, b.p);
                free(b.p);
            }
        } else if (!strcmp(k, "minimum") || !strcmp(k, "maximum") || !strcmp(k, "multipleOf")) {
            if (!json_is_number(v)) return cfail(c, loc, "%s must be a number", k), -1;
            if (k[1] == 'i') { SET(SK_MINIMUM); n->minimum = v; }
            else if (k[1] == 'a') { SET(SK_MAXIMUM); n->maximum = v; }
            else {
                if (v->u.num.d <= 0) return cfail(c, loc, "%s", "multipleOf must be greater than 0"), -1;
                SET(SK_MULTIPLE_OF); n->multiple_of = v;
            }
        } else if (!strcmp(k, "exclusiveMinimum") || !strcmp(k, "exclusiveMaximum")) {
            bool mx = k[10] == 'a';
            if (json_is_bool(v)) {
                /* draft-04: a boolean that makes minimum/maximum exclusive */
                if (v->type == JSON_TRUE) {
                    const json *b = json_get(j, mx ? "maximum" : "minimum");
                    if (b && json_is_number(b)) {
                        if (mx) { SET(SK_EXCLUSIVE_MAXIMUM); n->exclusive_maximum = b; }
                        else { SET(SK_EXCLUSIVE_MINIMUM); n->exclusive_minimum = b; }
                    }
                }
            } else if (json_is_number(v)) {
                if (mx) { SET(SK_EXCLUSIVE_MAXIMUM); n->exclusive_maximum = v; }
                else { SET(SK_EXCLUSIVE_MINIMUM); n->exclusive_minimum = v; }
            } else return cfail(c, loc, "%s must be a number", k), -1;
        } else if (!strcmp(k, "allOf")) {
            SET(SK_ALL_OF); if (!(n->all_of = sub_array(c, v, res, loc, k, &n->n_all_of, depth))) return -1;
        } else if (!strcmp(k, "anyOf")) {
            SET(SK_ANY_OF); if (!(n->any_of = sub_array(c, v, res, loc, k, &n->n_any_of, depth))) return -1;
        } else if (!strcmp(k, "oneOf")) {
            SET(SK_ONE_OF); if (!(n->one_of = sub_array(c, v, res, loc, k, &n->n_one_of, depth))) return -1;
        } else if (!strcmp(k, "not")) {
            SET(SK_NOT); if (!(n->not_ = sub(c, v, res, loc, k, depth))) return -1;
        } else if (!strcmp(k, "if")) {
            SET(SK_IF); if (!(n->if_ = sub(c, v, res, loc, k, depth))) return -1;
        } else if (!strcmp(k, "then")) {
            if (!(n->then_ = sub(c, v, res, loc, k, depth))) return -1;
        } else if (!strcmp(k, "else")) {
            if (!(n->else_ = sub(c, v, res, loc, k, depth))) return -1;
        } else if (!strcmp(k, "dependentRequired") || !strcmp(k, "dependentSchemas") || !strcmp(k, "dependencies")) {
            if (!json_is_object(v)) return cfail(c, loc, "%s must be an object", k), -1;
            char *l = loc_join(loc, k, strlen(k));
            for (size_t i = 0; i < json_size(v); i++) {
                const json_member *m = &v->u.obj.m[i];
                if (json_is_array(m->val) && k[9] != 'S') {
                    for (size_t q = 0; q < json_size(m->val); q++)
                        if (!json_is_string(json_at(m->val, q))) { free(l); return cfail(c, loc, "%s values must be arrays of strings", k), -1; }
                    SET(SK_DEPENDENT_REQUIRED);
                    SGR_GROW(n->dep_required, n->n_dep_required, n->cap_dep_required);
                    n->dep_required[n->n_dep_required++] = (schema_dep_req){m->key, m->klen, m->val};
                } else if (k[9] != 'R' && (json_is_object(m->val) || json_is_bool(m->val))) {
                    SET(SK_DEPENDENT_SCHEMAS);
                    char *li = loc_join(l, m->key, m->klen);
                    schema_node *x = compile_node(c, m->val, res, li, depth + 1);
                    free(li);
                    if (!x) { free(l); return -1; }
                    SGR_GROW(n->dep_schemas, n->n_dep_schemas, n->cap_dep_schemas);
                    n->dep_schemas[n->n_dep_schemas++] = (schema_prop){m->key, m->klen, x};
                } else { free(l); return cfail(c, loc, "%s has a value of the wrong type", k), -1; }
            }
            free(l);
        } else if (!strcmp(k, "$ref")) {
            if (!json_is_string(v)) return cfail(c, loc, "%s", "$ref must be a string"), -1;
            SET(SK_REF);
            n->ref_uri = uri_resolve(res->uri, json_string(v));
            add_pending(c, n, false);
        } else if (!strcmp(k, "$dynamicRef")) {
            if (!json_is_string(v)) return cfail(c, loc, "%s", "$dynamicRef must be a string"), -1;
            SET(SK_DYNAMIC_REF);
            n->dynamic_ref_uri = uri_resolve(res->uri, json_string(v));
            const char *h = strchr(json_string(v), '#');
            if (h && h[1] && h[1] != '/') n->dynamic_ref_anchor = h + 1;
            add_pending(c, n, true);
        } else if (!strcmp(k, "unevaluatedProperties")) {
            SET(SK_UNEVALUATED_PROPERTIES);
            if (!(n->unevaluated_props = sub(c, v, res, loc, k, depth))) return -1;
        } else if (!strcmp(k, "unevaluatedItems")) {
            SET(SK_UNEVALUATED_ITEMS);
            if (!(n->unevaluated_items = sub(c, v, res, loc, k, depth))) return -1;
        } else if (!strcmp(k, "id") && draft <= 4) {
            /* draft-04 identifier, handled above */
        } else if (!is_annotation(k)) {
            record_unknown(c, loc, k, k);
        }
    }
    return c->err ? -1 : 0;
}

/* Resolves an absolute URI (with optional fragment) to a node, loading and
 * compiling remote documents and pointer targets on demand. */
static schema_node *resolve_ref(cctx *c, const char *uri, const char *from_loc) {
    schema_node *n = schema_find_anchor(c->in, uri, false);
    if (n) return n;
    char *base = uri_strip_frag(uri);
    const char *h = strchr(uri, '#');
    const char *frag = h ? h + 1 : "";
    schema_resource *r = find_resource(c->in, base);
    if (!r || !r->node) {
        if (!c->s->opts.load) { free(base); cfail(c, from_loc, "cannot resolve $ref \"%s\" (no loader for remote documents)", uri); return NULL; }
        json *doc = NULL;
        qerr le;
        if (c->s->opts.load(c->s->opts.load_ud, base, &doc, &le)) {
            char m[1200];
            snprintf(m, sizeof m, "cannot load \"%s\": %s", base, le.msg);
            free(base);
            cfail(c, from_loc, "%.250s", m);
            return NULL;
        }
        SGR_GROW(c->in->docs, c->in->n_docs, c->in->cap_docs);
        c->in->docs[c->in->n_docs++] = doc;
        int draft = 2020;
        const json *sv = json_get(doc, "$schema");
        if (json_is_string(sv)) draft = draft_of(json_string(sv));
        r = new_resource(c->in, base, doc, draft);
        schema_node *root = compile_node(c, doc, r, "", 0);
        if (!root) { free(base); return NULL; }
        r->node = root;
        if (!schema_find_anchor(c->in, base, false)) add_anchor(c->in, strdup(base), root, false);
        n = schema_find_anchor(c->in, uri, false);
        if (n) { free(base); return n; }
    }
    free(base);
    if (frag[0] == 0) return r->node;
    if (frag[0] != '/') { cfail(c, from_loc, "cannot resolve $ref \"%s\" (unknown anchor)", uri); return NULL; }
    size_t pn;
    char *ptr = pct_decode(frag, strlen(frag), &pn);
    const json *t = json_pointer_get(r->root, ptr, pn);
    if (!t) { free(ptr); cfail(c, from_loc, "cannot resolve $ref \"%s\" (no such location)", uri); return NULL; }
    n = map_get(c->in, t);
    if (!n) n = compile_node(c, t, r, ptr, 0);
    free(ptr);
    return n;
}

static void node_free(schema_node *n) {
    free(n->location);
    free(n->props);
    for (size_t i = 0; i < n->n_pattern_props; i++) regex_free(n->pattern_props[i].re);
    free(n->pattern_props);
    free(n->prefix_items);
    regex_free(n->pattern);
    free(n->all_of);
    free(n->any_of);
    free(n->one_of);
    free(n->dep_required);
    free(n->dep_schemas);
    free(n->ref_uri);
    free(n->dynamic_ref_uri);
    free(n);
}

void schema_free(schema *s) {
    if (!s) return;
    schema_internal *in = s->in;
    if (in) {
        for (size_t i = 0; i < in->n_nodes; i++) node_free(in->nodes[i]);
        free(in->nodes);
        for (size_t i = 0; i < in->n_res; i++) { free(in->res[i]->uri); free(in->res[i]); }
        free(in->res);
        for (size_t i = 0; i < in->n_anchors; i++) free(in->anchors[i].uri);
        free(in->anchors);
        for (size_t i = 0; i < in->n_docs; i++) json_free(in->docs[i]);
        free(in->docs);
        free(in->map_k);
        free(in->map_v);
        free(in->pending);
        free(in->ix_anchors.slot);
        free(in->ix_dynamic.slot);
        free(in->ix_res.slot);
        free(in);
    }
    for (size_t i = 0; i < s->n_unknown; i++) { free(s->unknown[i].keyword); free(s->unknown[i].pointer); }
    free(s->unknown);
    free(s);
}

int schema_compile(const json *doc, const schema_opts *o, schema **out, qerr *e) {
    *out = NULL;
    schema *s = calloc(1, sizeof *s);
    schema_internal *in = calloc(1, sizeof *in);
    if (!s || !in) { free(s); free(in); return qerr_set(e, "schema: out of memory"); }
    s->in = in;
    if (o) s->opts = *o;
    json *copy = json_clone(doc);
    if (!copy) { schema_free(s); return qerr_set(e, "schema: out of memory"); }
    SGR_GROW(in->docs, in->n_docs, in->cap_docs);
    in->docs[in->n_docs++] = copy;
    int draft = 2020;
    const json *sv = json_get(copy, "$schema");
    if (json_is_string(sv)) draft = draft_of(json_string(sv));
    const char *base = s->opts.base_uri ? s->opts.base_uri : "urn:quire:root";
    schema_resource *r = new_resource(in, base, copy, draft);
    cctx c = {s, in, e, 0, 0, 0};
    schema_node *root = compile_node(&c, copy, r, "", 0);
    if (root && !r->node) {
        r->node = root;
        add_anchor(in, strdup(base), root, false);
    }
    for (size_t i = 0; !c.err && i < in->n_pending; i++) {
        schema_node *n = in->pending[i].node;
        if (in->pending[i].dynamic) n->dynamic_ref = resolve_ref(&c, n->dynamic_ref_uri, n->location);
        else n->ref = resolve_ref(&c, n->ref_uri, n->location);
    }
    if (c.err || !root) { schema_free(s); return -1; }
    s->root = root;
    *out = s;
    return 0;
}
