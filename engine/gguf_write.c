/* gguf_write.c — GGUF v3 writer. Metadata and tensors are collected in
 * memory, then serialized into one buffer and written atomically. */
#include "engine/engine.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct wtensor {
    char *name;
    int type, n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    void *data;          /* owned copy, or NULL when filled at write time */
    gguf_fill_fn fill;
    void *ud;
    uint64_t nbytes;
} wtensor;

struct gguf_writer {
    gguf_kv *kv;
    int64_t n_kv, cap_kv;
    wtensor *t;
    int64_t n_t, cap_t;
};

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
    bool oom;
} buf;

static void buf_put(buf *b, const void *d, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) { b->oom = true; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void buf_u32(buf *b, uint32_t v) { buf_put(b, &v, 4); }
static void buf_u64(buf *b, uint64_t v) { buf_put(b, &v, 8); }
static void buf_str(buf *b, const char *s, uint64_t len) { buf_u64(b, len); buf_put(b, s, (size_t)len); }

static size_t vsize(int t) {
    switch (t) {
    case GGUF_U8: case GGUF_I8: case GGUF_BOOL: return 1;
    case GGUF_U16: case GGUF_I16: return 2;
    case GGUF_U32: case GGUF_I32: case GGUF_F32: return 4;
    case GGUF_U64: case GGUF_I64: case GGUF_F64: return 8;
    default: return 0;
    }
}

static void put_scalar(buf *b, const gguf_value *v) {
    switch (v->type) {
    case GGUF_U8: case GGUF_BOOL: { uint8_t x = (uint8_t)v->v.u; buf_put(b, &x, 1); break; }
    case GGUF_I8: { int8_t x = (int8_t)v->v.i; buf_put(b, &x, 1); break; }
    case GGUF_U16: { uint16_t x = (uint16_t)v->v.u; buf_put(b, &x, 2); break; }
    case GGUF_I16: { int16_t x = (int16_t)v->v.i; buf_put(b, &x, 2); break; }
    case GGUF_U32: { uint32_t x = (uint32_t)v->v.u; buf_put(b, &x, 4); break; }
    case GGUF_I32: { int32_t x = (int32_t)v->v.i; buf_put(b, &x, 4); break; }
    case GGUF_F32: { float x = (float)v->v.f; buf_put(b, &x, 4); break; }
    case GGUF_U64: buf_u64(b, v->v.u); break;
    case GGUF_I64: { int64_t x = v->v.i; buf_put(b, &x, 8); break; }
    case GGUF_F64: { double x = v->v.f; buf_put(b, &x, 8); break; }
    default: break;
    }
}

static void put_value(buf *b, const gguf_value *v) {
    if (v->type == GGUF_STRING) {
        buf_str(b, v->v.str.s, v->v.str.len);
    } else if (v->type == GGUF_ARRAY) {
        buf_u32(b, (uint32_t)v->v.arr.elem);
        buf_u64(b, v->v.arr.n);
        size_t es = vsize(v->v.arr.elem);
        if (es) buf_put(b, v->v.arr.raw, (size_t)(v->v.arr.n * es));
        else if (v->v.arr.elem == GGUF_STRING)
            for (uint64_t i = 0; i < v->v.arr.n; i++) buf_str(b, v->v.arr.strs[i].s, v->v.arr.strs[i].len);
        else
            for (uint64_t i = 0; i < v->v.arr.n; i++) put_value(b, &v->v.arr.items[i]);
    } else {
        put_scalar(b, v);
    }
}

/* Deep copy; numeric array payloads are copied into owned memory. */
static int value_copy(gguf_value *dst, const gguf_value *src) {
    *dst = *src;
    if (src->type == GGUF_STRING) {
        char *s = malloc((size_t)src->v.str.len + 1);
        if (!s) return -1;
        memcpy(s, src->v.str.s, (size_t)src->v.str.len);
        s[src->v.str.len] = 0;
        dst->v.str.s = s;
    } else if (src->type == GGUF_ARRAY) {
        uint64_t n = src->v.arr.n;
        size_t es = vsize(src->v.arr.elem);
        dst->v.arr.raw = NULL;
        dst->v.arr.strs = NULL;
        dst->v.arr.items = NULL;
        if (es) {
            uint8_t *r = malloc(n * es + 1);
            if (!r) return -1;
            if (n) memcpy(r, src->v.arr.raw, n * es);
            dst->v.arr.raw = r;
        } else if (src->v.arr.elem == GGUF_STRING) {
            dst->v.arr.strs = calloc(n + 1, sizeof(gguf_str));
            if (!dst->v.arr.strs) return -1;
            for (uint64_t i = 0; i < n; i++) {
                gguf_value a = {.type = GGUF_STRING}, c;
                a.v.str = src->v.arr.strs[i];
                if (value_copy(&c, &a)) return -1;
                dst->v.arr.strs[i] = c.v.str;
            }
        } else {
            dst->v.arr.items = calloc(n + 1, sizeof(gguf_value));
            if (!dst->v.arr.items) return -1;
            for (uint64_t i = 0; i < n; i++)
                if (value_copy(&dst->v.arr.items[i], &src->v.arr.items[i])) return -1;
        }
    }
    return 0;
}

static void value_release(gguf_value *v) {
    if (v->type == GGUF_STRING) {
        free((void *)v->v.str.s);
    } else if (v->type == GGUF_ARRAY) {
        free((void *)v->v.arr.raw);
        if (v->v.arr.strs) {
            for (uint64_t i = 0; i < v->v.arr.n; i++) free((void *)v->v.arr.strs[i].s);
            free(v->v.arr.strs);
        }
        if (v->v.arr.items) {
            for (uint64_t i = 0; i < v->v.arr.n; i++) value_release(&v->v.arr.items[i]);
            free(v->v.arr.items);
        }
    }
}

gguf_writer *gguf_writer_new(void) { return calloc(1, sizeof(gguf_writer)); }

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (int64_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        value_release(&w->kv[i].val);
    }
    free(w->kv);
    for (int64_t i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    free(w->t);
    free(w);
}

int gguf_writer_set(gguf_writer *w, const char *key, const gguf_value *v) {
    gguf_value copy;
    if (value_copy(&copy, v)) return -1;
    for (int64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, key) == 0) {
            value_release(&w->kv[i].val);
            w->kv[i].val = copy;
            return 0;
        }
    if (w->n_kv == w->cap_kv) {
        int64_t cap = w->cap_kv ? w->cap_kv * 2 : 32;
        gguf_kv *kv = realloc(w->kv, (size_t)cap * sizeof *kv);
        if (!kv) { value_release(&copy); return -1; }
        w->kv = kv;
        w->cap_kv = cap;
    }
    w->kv[w->n_kv].key = strdup(key);
    w->kv[w->n_kv].val = copy;
    if (!w->kv[w->n_kv].key) { value_release(&copy); return -1; }
    w->n_kv++;
    return 0;
}

int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t x) {
    gguf_value v = {.type = GGUF_U32};
    v.v.u = x;
    return gguf_writer_set(w, key, &v);
}

int gguf_writer_set_str(gguf_writer *w, const char *key, const char *s) {
    gguf_value v = {.type = GGUF_STRING};
    v.v.str.s = s;
    v.v.str.len = strlen(s);
    return gguf_writer_set(w, key, &v);
}

static wtensor *add_slot(gguf_writer *w, const char *name, int type, int n_dims, const int64_t *ne, uint64_t nbytes) {
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS) return NULL;
    if (w->n_t == w->cap_t) {
        int64_t cap = w->cap_t ? w->cap_t * 2 : 64;
        wtensor *t = realloc(w->t, (size_t)cap * sizeof *t);
        if (!t) return NULL;
        w->t = t;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) return NULL;
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->nbytes = nbytes;
    w->n_t++;
    return t;
}

int gguf_writer_add_tensor_fill(gguf_writer *w, const char *name, int type, int n_dims, const int64_t *ne,
                                uint64_t nbytes, gguf_fill_fn fill, void *ud) {
    wtensor *t = add_slot(w, name, type, n_dims, ne, nbytes);
    if (!t) return -1;
    t->fill = fill;
    t->ud = ud;
    return 0;
}

int gguf_writer_add_tensor(gguf_writer *w, const char *name, int type, int n_dims, const int64_t *ne,
                           const void *data, uint64_t nbytes) {
    void *copy = malloc(nbytes ? nbytes : 1);
    if (!copy) return -1;
    memcpy(copy, data, nbytes);
    wtensor *t = add_slot(w, name, type, n_dims, ne, nbytes);
    if (!t) { free(copy); return -1; }
    t->data = copy;
    return 0;
}

int gguf_writer_write(gguf_writer *w, const char *path, qerr *e) {
    uint32_t align = 32;
    for (int64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, "general.alignment") == 0 && w->kv[i].val.type == GGUF_U32)
            align = (uint32_t)w->kv[i].val.v.u;
    /* Header, metadata and tensor infos go through one buffer. */
    buf b = {0};
    buf_u32(&b, 0x46554747u);
    buf_u32(&b, 3);
    buf_u64(&b, (uint64_t)w->n_t);
    buf_u64(&b, (uint64_t)w->n_kv);
    for (int64_t i = 0; i < w->n_kv; i++) {
        buf_str(&b, w->kv[i].key, strlen(w->kv[i].key));
        buf_u32(&b, (uint32_t)w->kv[i].val.type);
        put_value(&b, &w->kv[i].val);
    }
    uint64_t off = 0;
    for (int64_t i = 0; i < w->n_t; i++) {
        wtensor *t = &w->t[i];
        buf_str(&b, t->name, strlen(t->name));
        buf_u32(&b, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) buf_u64(&b, (uint64_t)t->ne[d]);
        buf_u32(&b, (uint32_t)t->type);
        buf_u64(&b, off);
        off += t->nbytes;
        off += (align - off % align) % align;
    }
    static const uint8_t zeros[64] = {0};
    size_t pad = (align - b.n % align) % align;
    while (pad > 0) { size_t k = pad < 64 ? pad : 64; buf_put(&b, zeros, k); pad -= k; }
    if (b.oom) { free(b.p); return qerr_set(e, "%s: out of memory while serializing", path); }

    q_atomic_file f;
    if (q_atomic_open(&f, path, e)) { free(b.p); return -1; }
    int rc = q_write_all(f.fd, b.p, b.n, e);
    free(b.p);
    for (int64_t i = 0; i < w->n_t && rc == 0; i++) {
        wtensor *t = &w->t[i];
        if (t->data) {
            rc = q_write_all(f.fd, t->data, (size_t)t->nbytes, e);
        } else {
            void *d = malloc(t->nbytes ? t->nbytes : 1);
            if (!d) { rc = qerr_set(e, "out of memory for tensor %s (%llu bytes)", t->name, (unsigned long long)t->nbytes); break; }
            rc = t->fill(t->ud, d, t->nbytes, e);
            if (rc == 0) rc = q_write_all(f.fd, d, (size_t)t->nbytes, e);
            else qerr_wrap(e, "tensor %s", t->name);
            free(d);
        }
        size_t p = (align - t->nbytes % align) % align;
        if (rc == 0 && p) rc = q_write_all(f.fd, zeros, p, e);
    }
    if (rc != 0) {
        qerr_wrap(e, "%s", path);
        q_atomic_abort(&f);
        return -1;
    }
    return q_atomic_commit(&f, e);
}
