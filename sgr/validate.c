/* validate.c — validates an instance against a compiled schema. Annotations
 * needed by unevaluatedProperties/unevaluatedItems are tracked as one mark
 * per object member / array item of the instance location being validated;
 * a subschema's marks are kept only when it passes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema_int.h"

#define MAX_REF_DEPTH 2000

typedef struct pseg {
    const char *key;   /* NULL: array index */
    size_t klen, idx;
} pseg;

typedef struct refent {
    const schema_node *n;
    const json *inst;
} refent;

typedef struct vctx {
    const schema *s;
    schema_error *err;
    bool have_err;
    int quiet;
    pseg *path; size_t n_path, cap_path;
    refent *refs; size_t n_refs, cap_refs;
    schema_resource **scope; size_t n_scope, cap_scope;
    bool fatal;
    char fatal_msg[256];
    uint64_t steps, max_steps;
} vctx;


static void push_key(vctx *c, const char *k, size_t kl) {
    SGR_GROW(c->path, c->n_path, c->cap_path);
    c->path[c->n_path++] = (pseg){k, kl, 0};
}
static void push_idx(vctx *c, size_t i) {
    SGR_GROW(c->path, c->n_path, c->cap_path);
    c->path[c->n_path++] = (pseg){NULL, 0, i};
}
static void pop_path(vctx *c) { c->n_path--; }

static void build_ptr(const vctx *c, char *out, size_t cap) {
    size_t o = 0;
    out[0] = 0;
    for (size_t i = 0; i < c->n_path && o + 16 < cap; i++) {
        out[o++] = '/';
        if (c->path[i].key) {
            for (size_t k = 0; k < c->path[i].klen && o + 4 < cap; k++) {
                char ch = c->path[i].key[k];
                if (ch == '~') { out[o++] = '~'; out[o++] = '0'; }
                else if (ch == '/') { out[o++] = '~'; out[o++] = '1'; }
                else out[o++] = ch;
            }
        } else o += (size_t)snprintf(out + o, cap - o, "%zu", c->path[i].idx);
        out[o] = 0;
    }
}

static bool vfail(vctx *c, const schema_node *n, const char *kw, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static bool vfail(vctx *c, const schema_node *n, const char *kw, const char *fmt, ...) {
    if (c->quiet || c->have_err || !c->err) return false;
    c->have_err = true;
    build_ptr(c, c->err->instance_ptr, sizeof c->err->instance_ptr);
    snprintf(c->err->keyword, sizeof c->err->keyword, "%s", kw);
    snprintf(c->err->schema_ptr, sizeof c->err->schema_ptr, "%s", n->location);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err->msg, sizeof c->err->msg, fmt, ap);
    va_end(ap);
    return false;
}

static size_t cp_len(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) if (((unsigned char)s[i] & 0xC0) != 0x80) k++;
    return k;
}

static unsigned inst_type(const json *v) {
    switch (v->type) {
    case JSON_NULL: return ST_NULL;
    case JSON_TRUE: case JSON_FALSE: return ST_BOOLEAN;
    case JSON_OBJECT: return ST_OBJECT;
    case JSON_ARRAY: return ST_ARRAY;
    case JSON_STRING: return ST_STRING;
    case JSON_NUMBER: return json_number_is_integer(v) ? (ST_NUMBER | ST_INTEGER) : ST_NUMBER;
    }
    return 0;
}

/* Index of a member by key in the object's member array, or -1. */
static long member_index(const json *o, const char *k, size_t kl) {
    size_t lo = 0, hi = o->u.obj.n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const json_member *m = &o->u.obj.m[o->u.obj.sorted[mid]];
        size_t n = m->klen < kl ? m->klen : kl;
        int r = memcmp(m->key, k, n);
        if (!r) r = m->klen < kl ? -1 : m->klen > kl;
        if (!r) return (long)o->u.obj.sorted[mid];
        if (r < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

static bool has_prop(const schema_node *n, const char *k, size_t kl) {
    size_t lo = 0, hi = n->n_props;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const schema_prop *p = &n->props[mid];
        size_t m = p->len < kl ? p->len : kl;
        int r = memcmp(p->name, k, m);
        if (!r) r = p->len < kl ? -1 : p->len > kl;
        if (!r) return true;
        if (r < 0) lo = mid + 1;
        else hi = mid;
    }
    return false;
}

static int validate(vctx *c, const schema_node *n, const json *inst, uint8_t *ev);

/* Marks array for the instance (object members or array items). */
static uint8_t *ev_new(const json *inst) {
    size_t k = json_size(inst);
    uint8_t *e = calloc(k ? k : 1, 1);
    if (!e) abort();
    return e;
}
static void ev_merge(uint8_t *dst, const uint8_t *src, size_t k) {
    if (!dst || !src) return;
    for (size_t i = 0; i < k; i++) dst[i] |= src[i];
}

/* Validates a subschema against the same instance location with a private
 * marks array, merged into ev only when it passes. quiet suppresses errors. */
static int validate_branch(vctx *c, const schema_node *n, const json *inst, uint8_t *ev, bool quiet) {
    uint8_t *tmp = ev ? ev_new(inst) : NULL;
    if (quiet) c->quiet++;
    int r = validate(c, n, inst, tmp);
    if (quiet) c->quiet--;
    if (r == 1) ev_merge(ev, tmp, json_size(inst));
    free(tmp);
    return r;
}

static int check_number(vctx *c, const schema_node *n, const json *inst) {
    if ((n->kw & (1ull << SK_MINIMUM)) && json_number_cmp(inst, n->minimum) < 0)
        return vfail(c, n, "minimum", "%s is less than the minimum %s", inst->u.num.text, n->minimum->u.num.text);
    if ((n->kw & (1ull << SK_MAXIMUM)) && json_number_cmp(inst, n->maximum) > 0)
        return vfail(c, n, "maximum", "%s is greater than the maximum %s", inst->u.num.text, n->maximum->u.num.text);
    if ((n->kw & (1ull << SK_EXCLUSIVE_MINIMUM)) && json_number_cmp(inst, n->exclusive_minimum) <= 0)
        return vfail(c, n, "exclusiveMinimum", "%s is not greater than %s", inst->u.num.text, n->exclusive_minimum->u.num.text);
    if ((n->kw & (1ull << SK_EXCLUSIVE_MAXIMUM)) && json_number_cmp(inst, n->exclusive_maximum) >= 0)
        return vfail(c, n, "exclusiveMaximum", "%s is not less than %s", inst->u.num.text, n->exclusive_maximum->u.num.text);
    if (n->kw & (1ull << SK_MULTIPLE_OF)) {
        int r = json_number_multiple_of(inst, n->multiple_of);
        if (r < 0) {
            double q = inst->u.num.d / n->multiple_of->u.num.d;
            r = isfinite(q) && q == floor(q);
        }
        if (!r) return vfail(c, n, "multipleOf", "%s is not a multiple of %s", inst->u.num.text, n->multiple_of->u.num.text);
    }
    return 1;
}

static int check_string(vctx *c, const schema_node *n, const json *inst) {
    const char *s = inst->u.str.s;
    size_t len = inst->u.str.len;
    if (n->kw & ((1ull << SK_MIN_LENGTH) | (1ull << SK_MAX_LENGTH))) {
        int64_t k = (int64_t)cp_len(s, len);
        if ((n->kw & (1ull << SK_MIN_LENGTH)) && k < n->min_length)
            return vfail(c, n, "minLength", "string is shorter than %lld characters", (long long)n->min_length);
        if ((n->kw & (1ull << SK_MAX_LENGTH)) && k > n->max_length)
            return vfail(c, n, "maxLength", "string is longer than %lld characters", (long long)n->max_length);
    }
    if (n->pattern && !regex_match(n->pattern, s, len))
        return vfail(c, n, "pattern", "string does not match /%.100s/", n->pattern_src);
    if (n->format && c->s->opts.assert_format) {
        bool known;
        if (!schema_format_check(n->format, s, len, &known))
            return vfail(c, n, "format", "string is not a valid %.60s", n->format);
    }
    return 1;
}

static int check_object(vctx *c, const schema_node *n, const json *inst, uint8_t *ev) {
    size_t cnt = inst->u.obj.n;
    if ((n->kw & (1ull << SK_MIN_PROPERTIES)) && (int64_t)cnt < n->min_props)
        return vfail(c, n, "minProperties", "fewer than %lld properties", (long long)n->min_props);
    if ((n->kw & (1ull << SK_MAX_PROPERTIES)) && (int64_t)cnt > n->max_props)
        return vfail(c, n, "maxProperties", "more than %lld properties", (long long)n->max_props);
    if (n->required) {
        for (size_t i = 0; i < json_size(n->required); i++) {
            const json *k = json_at(n->required, i);
            if (member_index(inst, k->u.str.s, k->u.str.len) < 0)
                return vfail(c, n, "required", "required property \"%.100s\" is missing", k->u.str.s);
        }
    }
    for (size_t i = 0; i < n->n_dep_required; i++) {
        const schema_dep_req *d = &n->dep_required[i];
        if (member_index(inst, d->name, d->len) < 0) continue;
        for (size_t q = 0; q < json_size(d->required); q++) {
            const json *k = json_at(d->required, q);
            if (member_index(inst, k->u.str.s, k->u.str.len) < 0)
                return vfail(c, n, "dependentRequired", "property \"%.100s\" requires \"%.100s\"", d->name, k->u.str.s);
        }
    }
    for (size_t i = 0; i < n->n_dep_schemas; i++) {
        const schema_prop *d = &n->dep_schemas[i];
        if (member_index(inst, d->name, d->len) < 0) continue;
        int r = validate(c, d->s, inst, ev);
        if (r != 1) return r ? r : vfail(c, n, "dependentSchemas", "dependent schema of \"%.100s\" fails", d->name);
    }
    for (size_t i = 0; i < n->n_props; i++) {
        const schema_prop *p = &n->props[i];
        long mi = member_index(inst, p->name, p->len);
        if (mi < 0) continue;
        push_key(c, p->name, p->len);
        int r = validate(c, p->s, inst->u.obj.m[mi].val, NULL);
        pop_path(c);
        if (r != 1) return r ? r : vfail(c, n, "properties", "property \"%.100s\" is invalid", p->name);
        if (ev) ev[mi] = 1;
    }
    if (n->n_pattern_props || n->additional_props || n->property_names) {
        for (size_t i = 0; i < cnt; i++) {
            const json_member *m = &inst->u.obj.m[i];
            bool matched = has_prop(n, m->key, m->klen);
            for (size_t q = 0; q < n->n_pattern_props; q++) {
                const schema_pattern_prop *pp = &n->pattern_props[q];
                if (!regex_match(pp->re, m->key, m->klen)) continue;
                matched = true;
                push_key(c, m->key, m->klen);
                int r = validate(c, pp->s, m->val, NULL);
                pop_path(c);
                if (r != 1) return r ? r : vfail(c, n, "patternProperties", "property \"%.100s\" is invalid", m->key);
                if (ev) ev[i] = 1;
            }
            if (!matched && n->additional_props) {
                push_key(c, m->key, m->klen);
                int r = validate(c, n->additional_props, m->val, NULL);
                pop_path(c);
                if (r != 1) {
                    if (r < 0) return r;
                    push_key(c, m->key, m->klen);
                    vfail(c, n, "additionalProperties", "property \"%.100s\" is not allowed", m->key);
                    pop_path(c);
                    return 0;
                }
                if (ev) ev[i] = 1;
            }
            if (n->property_names) {
                json key = {.type = JSON_STRING};
                key.u.str.s = m->key;
                key.u.str.len = m->klen;
                c->quiet++;
                int r = validate(c, n->property_names, &key, NULL);
                c->quiet--;
                if (r != 1) {
                    if (r < 0) return r;
                    push_key(c, m->key, m->klen);
                    vfail(c, n, "propertyNames", "property name \"%.100s\" is invalid", m->key);
                    pop_path(c);
                    return 0;
                }
            }
        }
    }
    return 1;
}

typedef struct hidx { uint64_t h; size_t i; } hidx;
static int hidx_cmp(const void *x, const void *y) {
    const hidx *a = x, *b = y;
    if (a->h != b->h) return a->h < b->h ? -1 : 1;
    return a->i < b->i ? -1 : a->i > b->i;
}

/* Two equal items of an array: pairwise for short arrays, by hash for long. */
static bool find_duplicate(const json *arr, size_t *a, size_t *b) {
    size_t cnt = arr->u.arr.n;
    if (cnt <= 32) {
        for (size_t i = 1; i < cnt; i++)
            for (size_t k = 0; k < i; k++)
                if (json_equal(arr->u.arr.items[i], arr->u.arr.items[k])) { *a = k; *b = i; return true; }
        return false;
    }
    hidx *h = malloc(cnt * sizeof *h);
    if (!h) abort();
    for (size_t i = 0; i < cnt; i++) h[i] = (hidx){json_hash(arr->u.arr.items[i]), i};
    qsort(h, cnt, sizeof *h, hidx_cmp);
    bool found = false;
    for (size_t i = 0; i < cnt && !found; i++)
        for (size_t k = i + 1; k < cnt && h[k].h == h[i].h && !found; k++)
            if (json_equal(arr->u.arr.items[h[i].i], arr->u.arr.items[h[k].i])) { *a = h[i].i; *b = h[k].i; found = true; }
    free(h);
    return found;
}

static int check_array(vctx *c, const schema_node *n, const json *inst, uint8_t *ev) {
    size_t cnt = inst->u.arr.n;
    if ((n->kw & (1ull << SK_MIN_ITEMS)) && (int64_t)cnt < n->min_items)
        return vfail(c, n, "minItems", "fewer than %lld items", (long long)n->min_items);
    if ((n->kw & (1ull << SK_MAX_ITEMS)) && (int64_t)cnt > n->max_items)
        return vfail(c, n, "maxItems", "more than %lld items", (long long)n->max_items);
    if (n->unique_items) {
        size_t a, b;
        if (find_duplicate(inst, &a, &b)) return vfail(c, n, "uniqueItems", "items %zu and %zu are equal", a, b);
    }
    size_t np = n->n_prefix_items < cnt ? n->n_prefix_items : cnt;
    for (size_t i = 0; i < np; i++) {
        push_idx(c, i);
        int r = validate(c, n->prefix_items[i], inst->u.arr.items[i], NULL);
        pop_path(c);
        if (r != 1) return r ? r : vfail(c, n, "prefixItems", "item %zu is invalid", i);
        if (ev) ev[i] = 1;
    }
    if (n->items) {
        for (size_t i = n->n_prefix_items; i < cnt; i++) {
            push_idx(c, i);
            int r = validate(c, n->items, inst->u.arr.items[i], NULL);
            pop_path(c);
            if (r != 1) return r ? r : vfail(c, n, "items", "item %zu is invalid", i);
            if (ev) ev[i] = 1;
        }
    }
    if (n->contains) {
        int64_t found = 0;
        for (size_t i = 0; i < cnt; i++) {
            c->quiet++;
            int r = validate(c, n->contains, inst->u.arr.items[i], NULL);
            c->quiet--;
            if (r < 0) return r;
            if (r == 1) { found++; if (ev) ev[i] = 1; }
        }
        if (found < n->min_contains)
            return vfail(c, n, n->min_contains == 1 && !(n->kw & (1ull << SK_MIN_CONTAINS)) ? "contains" : "minContains",
                         "%lld items match contains, fewer than %lld", (long long)found, (long long)n->min_contains);
        if (n->max_contains >= 0 && found > n->max_contains)
            return vfail(c, n, "maxContains", "%lld items match contains, more than %lld", (long long)found, (long long)n->max_contains);
    }
    return 1;
}

static int follow_ref(vctx *c, const schema_node *from, const schema_node *target, const json *inst, uint8_t *ev, const char *kw) {
    for (size_t i = c->n_refs; i-- > 0;) {
        if (c->refs[i].n == target && c->refs[i].inst == inst) {
            if (!c->fatal) {
                c->fatal = true;
                snprintf(c->fatal_msg, sizeof c->fatal_msg, "%s cycle at schema '%s' without consuming the instance", kw, from->location);
            }
            return -1;
        }
    }
    if (c->n_refs >= MAX_REF_DEPTH) {
        if (!c->fatal) {
            c->fatal = true;
            snprintf(c->fatal_msg, sizeof c->fatal_msg, "%s nesting deeper than %d", kw, MAX_REF_DEPTH);
        }
        return -1;
    }
    SGR_GROW(c->refs, c->n_refs, c->cap_refs);
    c->refs[c->n_refs++] = (refent){target, inst};
    int r = validate(c, target, inst, ev);
    c->n_refs--;
    return r;
}

static const schema_node *dynamic_target(vctx *c, const schema_node *n) {
    const schema_node *t = n->dynamic_ref;
    if (!n->dynamic_ref_anchor || !t || !t->dynamic_anchor || strcmp(t->dynamic_anchor, n->dynamic_ref_anchor) != 0)
        return t;
    /* outermost resource in the dynamic scope with a matching $dynamicAnchor */
    for (size_t i = 0; i < c->n_scope; i++) {
        const schema_resource *r = c->scope[i];
        if (!r->has_dynamic) continue;
        size_t ul = strlen(r->uri), al = strlen(n->dynamic_ref_anchor);
        char *u = malloc(ul + al + 2);
        if (!u) abort();
        memcpy(u, r->uri, ul);
        u[ul] = '#';
        memcpy(u + ul + 1, n->dynamic_ref_anchor, al + 1);
        schema_node *x = schema_find_anchor(c->s->in, u, true);
        free(u);
        if (x) return x;
    }
    return t;
}

static int validate_in(vctx *c, const schema_node *n, const json *inst, uint8_t *ev) {
    if (n->is_bool) {
        if (n->bool_val) return 1;
        return vfail(c, n, "false", "the schema is false: nothing is valid here");
    }
    uint64_t kw = n->kw;
    unsigned t = inst_type(inst);
    /* draft-04 (like its reference validators) counts only numbers written
     * without fraction or exponent as integers: 1.0 is not one */
    if (n->draft <= 4 && (t & ST_INTEGER) && strpbrk(inst->u.num.text, ".eE")) t &= ~(unsigned)ST_INTEGER;
    if ((kw & (1ull << SK_TYPE)) && !(n->types & t))
        return vfail(c, n, "type", "wrong type");
    if (n->enum_values) {
        bool ok = false;
        for (size_t i = 0; i < json_size(n->enum_values) && !ok; i++) ok = json_equal(inst, json_at(n->enum_values, i));
        if (!ok) return vfail(c, n, "enum", "value is not one of the enum values");
    }
    if ((kw & (1ull << SK_CONST)) && !json_equal(inst, n->const_value))
        return vfail(c, n, "const", "value is not the const value");

    /* A schema with unevaluated* sees only the annotations of its own
     * keywords and in-place subschemas (not its cousins'), so it collects
     * into a fresh marks array, merged into the caller's when it passes. */
    uint8_t *parent_ev = NULL;
    bool own_ev = false;
    bool is_container = inst->type == JSON_OBJECT || inst->type == JSON_ARRAY;
    if (!is_container) ev = NULL;
    else if ((inst->type == JSON_OBJECT && n->unevaluated_props) || (inst->type == JSON_ARRAY && n->unevaluated_items)) {
        parent_ev = ev;
        ev = ev_new(inst);
        own_ev = true;
    }
    int r = 1;
#define CHECK(expr) do { r = (expr); if (r != 1) goto done; } while (0)
    if (inst->type == JSON_NUMBER) CHECK(check_number(c, n, inst));
    if (inst->type == JSON_STRING) CHECK(check_string(c, n, inst));
    if (n->ref) CHECK(follow_ref(c, n, n->ref, inst, ev, "$ref"));
    if (n->dynamic_ref) CHECK(follow_ref(c, n, dynamic_target(c, n), inst, ev, "$dynamicRef"));
    for (size_t i = 0; i < n->n_all_of; i++) {
        r = validate(c, n->all_of[i], inst, ev);
        if (r != 1) { if (r == 0) vfail(c, n, "allOf", "subschema %zu of allOf fails", i); goto done; }
    }
    if (n->n_any_of) {
        bool any = false;
        for (size_t i = 0; i < n->n_any_of; i++) {
            int x = validate_branch(c, n->any_of[i], inst, ev, true);
            if (x < 0) { r = x; goto done; }
            if (x == 1) { any = true; if (!ev) break; }
        }
        if (!any) { r = vfail(c, n, "anyOf", "no subschema of anyOf matches"); goto done; }
    }
    if (n->n_one_of) {
        int hits = 0;
        for (size_t i = 0; i < n->n_one_of; i++) {
            int x = validate_branch(c, n->one_of[i], inst, ev, true);
            if (x < 0) { r = x; goto done; }
            if (x == 1) hits++;
        }
        if (hits != 1) { r = vfail(c, n, "oneOf", "%d subschemas of oneOf match (exactly one must)", hits); goto done; }
    }
    if (n->not_) {
        c->quiet++;
        int x = validate(c, n->not_, inst, NULL);
        c->quiet--;
        if (x < 0) { r = x; goto done; }
        if (x == 1) { r = vfail(c, n, "not", "value matches the schema in not"); goto done; }
    }
    if (n->if_) {
        int x = validate_branch(c, n->if_, inst, ev, true);
        if (x < 0) { r = x; goto done; }
        const schema_node *b = x == 1 ? n->then_ : n->else_;
        if (b) {
            r = validate(c, b, inst, ev);
            if (r == 0) vfail(c, n, x == 1 ? "then" : "else", "the %s branch fails", x == 1 ? "then" : "else");
            if (r != 1) goto done;
        }
    }
    if (inst->type == JSON_OBJECT) CHECK(check_object(c, n, inst, ev));
    if (inst->type == JSON_ARRAY) CHECK(check_array(c, n, inst, ev));
    if (inst->type == JSON_OBJECT && n->unevaluated_props) {
        for (size_t i = 0; i < inst->u.obj.n; i++) {
            if (ev[i]) continue;
            const json_member *m = &inst->u.obj.m[i];
            push_key(c, m->key, m->klen);
            r = validate(c, n->unevaluated_props, m->val, NULL);
            if (r == 0) vfail(c, n, "unevaluatedProperties", "property \"%.100s\" is not allowed", m->key);
            pop_path(c);
            if (r != 1) goto done;
            ev[i] = 1;
        }
    }
    if (inst->type == JSON_ARRAY && n->unevaluated_items) {
        for (size_t i = 0; i < inst->u.arr.n; i++) {
            if (ev[i]) continue;
            push_idx(c, i);
            r = validate(c, n->unevaluated_items, inst->u.arr.items[i], NULL);
            if (r == 0) vfail(c, n, "unevaluatedItems", "item %zu is not allowed", i);
            pop_path(c);
            if (r != 1) goto done;
            ev[i] = 1;
        }
    }
#undef CHECK
done:
    if (own_ev) {
        if (r == 1) ev_merge(parent_ev, ev, json_size(inst));
        free(ev);
    }
    return r;
}

static int validate(vctx *c, const schema_node *n, const json *inst, uint8_t *ev) {
    if (c->fatal) return -1;
    if (++c->steps > c->max_steps) {
        c->fatal = true;
        snprintf(c->fatal_msg, sizeof c->fatal_msg, "validation budget of %llu steps exhausted", (unsigned long long)c->max_steps);
        return -1;
    }
    bool pushed = false;
    if (n->res && (c->n_scope == 0 || c->scope[c->n_scope - 1] != n->res)) {
        SGR_GROW(c->scope, c->n_scope, c->cap_scope);
        c->scope[c->n_scope++] = n->res;
        pushed = true;
    }
    int r = validate_in(c, n, inst, ev);
    if (pushed) c->n_scope--;
    return c->fatal ? -1 : r;
}

int schema_validate(const schema *s, const json *instance, schema_error *err) {
    vctx c = {0};
    c.s = s;
    c.err = err;
    c.max_steps = s->opts.max_steps ? s->opts.max_steps : 100000000ULL;
    if (err) memset(err, 0, sizeof *err);
    int r = validate(&c, s->root, instance, NULL);
    if (c.fatal && err) {
        snprintf(err->msg, sizeof err->msg, "%s", c.fatal_msg);
        snprintf(err->keyword, sizeof err->keyword, "%s", strstr(c.fatal_msg, "budget") ? "" : "$ref");
    }
    free(c.path);
    free(c.refs);
    free(c.scope);
    return c.fatal ? -1 : r;
}
