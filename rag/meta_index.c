/* meta_index.c — posting lists of document metadata values and ACL
 * principals (see rag.h). One hash table (open addressing, FNV-1a) from a
 * key to an ascending list of document numbers. Keys are byte strings:
 *   'S' field NUL string     a string value (compared as a C string, as filter_eval does)
 *   'N' field NUL 8 bytes    a number (the double's bits; -0 stored as 0)
 *   'B' field NUL '0'|'1'    a boolean
 *   'E' field                the field is present
 *   'A' principal            a principal named in the ACL
 *   'P'                      public (no ACL) */
#include <stdlib.h>
#include <string.h>

#include "rag.h"

typedef struct mi_entry {
    char *key; /* NULL: empty slot */
    size_t klen;
    uint32_t *docs;
    size_t n, cap;
} mi_entry;

/* a growable key buffer */
typedef struct keybuf {
    char *b;
    size_t cap;
} keybuf;

struct meta_index {
    mi_entry *t;
    size_t cap, used;
    keybuf kb; /* for meta_index_add */
};

static uint64_t fnv(const char *k, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)k[i]) * 1099511628211ull;
    return h;
}

int meta_index_new(meta_index **out, qerr *e) {
    meta_index *mi = calloc(1, sizeof *mi);
    if (mi) {
        mi->cap = 64;
        mi->t = calloc(mi->cap, sizeof *mi->t);
    }
    if (!mi || !mi->t) { free(mi); *out = NULL; return qerr_set(e, "out of memory for the metadata index"); }
    *out = mi;
    return 0;
}

void meta_index_free(meta_index *mi) {
    if (!mi) return;
    for (size_t i = 0; i < mi->cap; i++) { free(mi->t[i].key); free(mi->t[i].docs); }
    free(mi->t);
    free(mi->kb.b);
    free(mi);
}

static mi_entry *mi_find(const meta_index *mi, const char *k, size_t n) {
    size_t i = (size_t)fnv(k, n) & (mi->cap - 1);
    while (mi->t[i].key && (mi->t[i].klen != n || memcmp(mi->t[i].key, k, n) != 0)) i = (i + 1) & (mi->cap - 1);
    return &mi->t[i];
}

static int mi_grow(meta_index *mi) {
    size_t nc = mi->cap * 2;
    mi_entry *nt = calloc(nc, sizeof *nt), *old = mi->t;
    if (!nt) return -1;
    size_t oc = mi->cap;
    mi->t = nt;
    mi->cap = nc;
    for (size_t i = 0; i < oc; i++)
        if (old[i].key) *mi_find(mi, old[i].key, old[i].klen) = old[i];
    free(old);
    return 0;
}

/* Appends doc to the list of key k (once: array values may repeat). */
static int mi_put(meta_index *mi, const char *k, size_t n, uint32_t doc) {
    if (2 * (mi->used + 1) > mi->cap && mi_grow(mi)) return -1;
    mi_entry *x = mi_find(mi, k, n);
    if (!x->key) {
        x->key = malloc(n ? n : 1);
        if (!x->key) return -1;
        memcpy(x->key, k, n);
        x->klen = n;
        mi->used++;
    }
    if (x->n && x->docs[x->n - 1] == doc) return 0;
    if (x->n == x->cap) {
        size_t nc = x->cap ? x->cap * 2 : 4;
        uint32_t *d = realloc(x->docs, nc * sizeof *d);
        if (!d) return -1;
        x->docs = d;
        x->cap = nc;
    }
    x->docs[x->n++] = doc;
    return 0;
}

/* Builds a key in kb: kind, a (with its NUL when b follows), b. */
static const char *mi_key(keybuf *kb, char kind, const char *a, const void *b, size_t bn, size_t *n) {
    size_t an = a ? strlen(a) : 0, need = 1 + an + (b ? 1 + bn : 0);
    if (need > kb->cap) {
        char *nb = realloc(kb->b, need * 2);
        if (!nb) return NULL;
        kb->b = nb;
        kb->cap = need * 2;
    }
    kb->b[0] = kind;
    if (an) memcpy(kb->b + 1, a, an);
    if (b) {
        kb->b[1 + an] = 0;
        memcpy(kb->b + 2 + an, b, bn);
    }
    *n = need;
    return kb->b;
}

static const char *val_key(keybuf *kb, const char *field, const meta_val *v, size_t *n) {
    if (v->type == JV_STR) return mi_key(kb, 'S', field, v->str, strlen(v->str), n);
    if (v->type == JV_NUM) {
        double d = v->num == 0 ? 0.0 : v->num;
        return mi_key(kb, 'N', field, &d, sizeof d, n);
    }
    if (v->type == JV_BOOL) return mi_key(kb, 'B', field, v->b ? "1" : "0", 1, n);
    return NULL;
}

int meta_index_add(meta_index *mi, uint32_t doc, const meta *m, const char *const *acl, int n_acl, qerr *e) {
    size_t n;
    const char *k;
    for (int i = 0; m && i < m->n; i++) {
        const meta_field *f = &m->fields[i];
        if (!(k = mi_key(&mi->kb, 'E', f->key, NULL, 0, &n)) || mi_put(mi, k, n, doc)) goto oom;
        for (int j = 0; j < f->n_vals; j++) {
            if (!(k = val_key(&mi->kb, f->key, &f->vals[j], &n))) {
                if (f->vals[j].type != JV_STR && f->vals[j].type != JV_NUM && f->vals[j].type != JV_BOOL) continue;
                goto oom;
            }
            if (mi_put(mi, k, n, doc)) goto oom;
        }
    }
    if (!n_acl) {
        if (!(k = mi_key(&mi->kb, 'P', NULL, NULL, 0, &n)) || mi_put(mi, k, n, doc)) goto oom;
    }
    for (int i = 0; i < n_acl; i++)
        if (!(k = mi_key(&mi->kb, 'A', acl[i], NULL, 0, &n)) || mi_put(mi, k, n, doc)) goto oom;
    return 0;
oom:
    return qerr_set(e, "out of memory in the metadata index");
}

typedef struct lookup {
    const meta_index *mi;
    keybuf kb; /* the query's own: lookups leave the index untouched */
    bool oom;
} lookup;

static void get_postings(void *ctx, const char *field, const meta_val *val, const uint32_t **docs, size_t *nd) {
    lookup *l = ctx;
    size_t n;
    const char *k = val ? val_key(&l->kb, field, val, &n) : mi_key(&l->kb, 'E', field, NULL, 0, &n);
    *docs = NULL;
    *nd = 0;
    if (!k) { if (!val || val->type == JV_STR || val->type == JV_NUM || val->type == JV_BOOL) l->oom = true; return; }
    const mi_entry *x = mi_find(l->mi, k, n);
    if (x->key) { *docs = x->docs; *nd = x->n; }
}

int meta_index_allow(const meta_index *mi, const filter *f, const char *const *principals, int n_principals,
                     bool ignore_acl, size_t n_docs, uint64_t *bits, qerr *e) {
    lookup l = {mi, {NULL, 0}, false};
    bool exact;
    if (filter_allow_bits(f, n_docs, get_postings, &l, bits, &exact, e)) { free(l.kb.b); return -1; }
    if (l.oom) { free(l.kb.b); return qerr_set(e, "out of memory in the metadata index"); }
    if (ignore_acl) { free(l.kb.b); return exact ? 1 : 0; }
    size_t w = (n_docs + 63) / 64;
    uint64_t *acl = calloc(w ? w : 1, sizeof *acl);
    if (!acl) { free(l.kb.b); return qerr_set(e, "out of memory in the metadata index"); }
    for (int p = -1; p < n_principals; p++) {
        size_t n;
        const char *k = p < 0 ? mi_key(&l.kb, 'P', NULL, NULL, 0, &n) : mi_key(&l.kb, 'A', principals[p], NULL, 0, &n);
        if (!k) { free(acl); free(l.kb.b); return qerr_set(e, "out of memory in the metadata index"); }
        const mi_entry *x = mi_find(mi, k, n);
        for (size_t i = 0; x->key && i < x->n; i++)
            if (x->docs[i] < n_docs) acl[x->docs[i] >> 6] |= 1ull << (x->docs[i] & 63);
    }
    for (size_t i = 0; i < w; i++) bits[i] &= acl[i];
    free(acl);
    free(l.kb.b);
    return exact ? 1 : 0;
}
