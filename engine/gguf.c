/* gguf.c — GGUF v2/v3 reader over mmap.
 *
 * The file is hostile until proven otherwise: every read goes through a
 * bounds-checked cursor, every count is checked against the bytes left before
 * anything is allocated for it, and every tensor is checked to lie inside the
 * data section, aligned, with a known type and a whole number of blocks. */
#include "engine/engine.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_NAME 64       /* GGML's tensor-name buffer, NUL included */
#define GGUF_MAX_DEPTH 8       /* nested arrays */
#define GGUF_MAX_STRING (1u << 30)

typedef struct cursor {
    const uint8_t *p;
    uint64_t n, off;
    qerr *e;
} cursor;

static uint64_t cur_left(const cursor *c) { return c->n - c->off; }

static int cur_read(cursor *c, void *dst, uint64_t len, const char *what) {
    if (len > cur_left(c)) {
        memset(dst, 0, (size_t)len < 16 ? (size_t)len : 16); /* keeps callers' scalars defined */
        return qerr_set(c->e, "truncated file: %s at offset %llu needs %llu bytes, %llu left",
                        what, (unsigned long long)c->off, (unsigned long long)len,
                        (unsigned long long)cur_left(c));
    }
    memcpy(dst, c->p + c->off, (size_t)len);
    c->off += len;
    return 0;
}

static int cur_u32(cursor *c, uint32_t *v, const char *what) { return cur_read(c, v, 4, what); }
static int cur_u64(cursor *c, uint64_t *v, const char *what) { return cur_read(c, v, 8, what); }

static const char *vtype_names[GGUF_VTYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};

const char *gguf_vtype_name(int t) {
    return (t >= 0 && t < GGUF_VTYPE_COUNT) ? vtype_names[t] : "unknown";
}

static size_t vtype_size(int t) {
    switch (t) {
    case GGUF_U8: case GGUF_I8: case GGUF_BOOL: return 1;
    case GGUF_U16: case GGUF_I16: return 2;
    case GGUF_U32: case GGUF_I32: case GGUF_F32: return 4;
    case GGUF_U64: case GGUF_I64: case GGUF_F64: return 8;
    default: return 0; /* variable size */
    }
}

/* Strings: u64 length then bytes. Copied NUL-terminated so that callers can
 * use them as C strings; the length is kept for bytes that contain NUL. */
static int read_str(cursor *c, gguf_str *out, const char *what) {
    uint64_t len;
    if (cur_u64(c, &len, what)) return -1;
    if (len > cur_left(c))
        return qerr_set(c->e, "%s: string length %llu exceeds the %llu bytes left in the file", what,
                        (unsigned long long)len, (unsigned long long)cur_left(c));
    if (len > GGUF_MAX_STRING)
        return qerr_set(c->e, "%s: string length %llu is too large", what, (unsigned long long)len);
    char *s = malloc((size_t)len + 1);
    if (!s) return qerr_set(c->e, "%s: out of memory for a string of %llu bytes", what, (unsigned long long)len);
    memcpy(s, c->p + c->off, (size_t)len);
    s[len] = 0;
    c->off += len;
    out->s = s;
    out->len = len;
    return 0;
}

static void value_free(gguf_value *v) {
    if (v->type == GGUF_STRING) {
        free((void *)v->v.str.s);
    } else if (v->type == GGUF_ARRAY) {
        if (v->v.arr.strs) {
            for (uint64_t i = 0; i < v->v.arr.n; i++) free((void *)v->v.arr.strs[i].s);
            free(v->v.arr.strs);
        }
        if (v->v.arr.items) {
            for (uint64_t i = 0; i < v->v.arr.n; i++) value_free(&v->v.arr.items[i]);
            free(v->v.arr.items);
        }
    }
    memset(v, 0, sizeof *v);
}

static int read_value(cursor *c, int type, gguf_value *out, int depth, const char *key) {
    memset(out, 0, sizeof *out);
    out->type = type;
    uint8_t b[8] = {0};
    switch (type) {
    case GGUF_U8: if (cur_read(c, b, 1, key)) return -1; out->v.u = b[0]; return 0;
    case GGUF_I8: if (cur_read(c, b, 1, key)) return -1; out->v.i = (int8_t)b[0]; return 0;
    case GGUF_BOOL:
        if (cur_read(c, b, 1, key)) return -1;
        if (b[0] > 1) return qerr_set(c->e, "key '%s': bool value %u is not 0 or 1", key, b[0]);
        out->v.u = b[0];
        return 0;
    case GGUF_U16: { uint16_t x; if (cur_read(c, &x, 2, key)) return -1; out->v.u = x; return 0; }
    case GGUF_I16: { int16_t x; if (cur_read(c, &x, 2, key)) return -1; out->v.i = x; return 0; }
    case GGUF_U32: { uint32_t x; if (cur_read(c, &x, 4, key)) return -1; out->v.u = x; return 0; }
    case GGUF_I32: { int32_t x; if (cur_read(c, &x, 4, key)) return -1; out->v.i = x; return 0; }
    case GGUF_F32: { float x; if (cur_read(c, &x, 4, key)) return -1; out->v.f = x; return 0; }
    case GGUF_U64: { uint64_t x; if (cur_read(c, &x, 8, key)) return -1; out->v.u = x; return 0; }
    case GGUF_I64: { int64_t x; if (cur_read(c, &x, 8, key)) return -1; out->v.i = x; return 0; }
    case GGUF_F64: { double x; if (cur_read(c, &x, 8, key)) return -1; out->v.f = x; return 0; }
    case GGUF_STRING: return read_str(c, &out->v.str, key);
    case GGUF_ARRAY: {
        uint32_t elem;
        uint64_t n;
        if (depth >= GGUF_MAX_DEPTH)
            return qerr_set(c->e, "key '%s': arrays nested deeper than %d", key, GGUF_MAX_DEPTH);
        if (cur_u32(c, &elem, key) || cur_u64(c, &n, key)) return -1;
        if (elem >= GGUF_VTYPE_COUNT)
            return qerr_set(c->e, "key '%s': unknown array element type %u", key, elem);
        out->v.arr.elem = (int)elem;
        out->v.arr.n = n;
        size_t es = vtype_size((int)elem);
        /* Smallest encoding of one element bounds the count before any
         * allocation: a string is at least 8 bytes, an array 12. */
        uint64_t min_es = es ? es : (elem == GGUF_STRING ? 8 : 12);
        if (n > cur_left(c) / min_es)
            return qerr_set(c->e, "key '%s': array of %llu %s elements exceeds the %llu bytes left",
                            key, (unsigned long long)n, gguf_vtype_name((int)elem),
                            (unsigned long long)cur_left(c));
        if (es) {
            out->v.arr.raw = c->p + c->off;
            if (elem == GGUF_BOOL)
                for (uint64_t i = 0; i < n; i++)
                    if (out->v.arr.raw[i] > 1)
                        return qerr_set(c->e, "key '%s': bool element %llu is not 0 or 1", key,
                                        (unsigned long long)i);
            c->off += n * es;
            return 0;
        }
        if (elem == GGUF_STRING) {
            out->v.arr.strs = calloc(n ? n : 1, sizeof(gguf_str));
            if (!out->v.arr.strs) return qerr_set(c->e, "key '%s': out of memory", key);
            for (uint64_t i = 0; i < n; i++)
                if (read_str(c, &out->v.arr.strs[i], key)) return -1;
            return 0;
        }
        out->v.arr.items = calloc(n ? n : 1, sizeof(gguf_value));
        if (!out->v.arr.items) return qerr_set(c->e, "key '%s': out of memory", key);
        for (uint64_t i = 0; i < n; i++) {
            /* Nested arrays store their own element type and count. */
            if (read_value(c, GGUF_ARRAY, &out->v.arr.items[i], depth + 1, key)) return -1;
        }
        return 0;
    }
    default:
        return qerr_set(c->e, "key '%s': unknown value type %d", key, type);
    }
}

void gguf_close(gguf *g) {
    if (!g) return;
    for (int64_t i = 0; i < g->n_kv; i++) {
        free(g->kv[i].key);
        value_free(&g->kv[i].val);
    }
    free(g->kv);
    for (int64_t i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->tensors);
    if (g->mapped && g->base) munmap((void *)g->base, (size_t)g->size);
    free(g);
}

static int cmp_tensor_offset(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int parse(gguf *g, qerr *e) {
    cursor c = {g->base, g->size, 0, e};
    uint32_t magic;
    if (g->size < 4) return qerr_set(e, "not a GGUF file: %llu bytes is too short", (unsigned long long)g->size);
    if (cur_u32(&c, &magic, "magic")) return -1;
    if (magic != GGUF_MAGIC) return qerr_set(e, "not a GGUF file: bad magic 0x%08x", magic);
    if (cur_u32(&c, &g->version, "version")) return -1;
    if (g->version == 1)
        return qerr_set(e, "GGUF version 1 is not supported (re-convert the model to v3)");
    if (g->version != 2 && g->version != 3) {
        if ((g->version & 0xffff) == 0)
            return qerr_set(e, "GGUF file is big-endian (version %u byte-swapped); only little-endian files are supported",
                            __builtin_bswap32(g->version));
        return qerr_set(e, "unsupported GGUF version %u", g->version);
    }
    uint64_t n_tensors, n_kv;
    if (cur_u64(&c, &n_tensors, "tensor count") || cur_u64(&c, &n_kv, "metadata count")) return -1;
    /* A kv needs at least 8+4+1 bytes, a tensor info 8+4+8+4+8. */
    if (n_kv > cur_left(&c) / 13)
        return qerr_set(e, "metadata count %llu is impossible for a file of %llu bytes",
                        (unsigned long long)n_kv, (unsigned long long)g->size);
    if (n_tensors > cur_left(&c) / 32)
        return qerr_set(e, "tensor count %llu is impossible for a file of %llu bytes",
                        (unsigned long long)n_tensors, (unsigned long long)g->size);

    g->kv = calloc(n_kv ? n_kv : 1, sizeof(gguf_kv));
    if (!g->kv) return qerr_set(e, "out of memory");
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < n_kv; i++) {
        gguf_str key;
        uint32_t type;
        char what[64];
        snprintf(what, sizeof what, "key of metadata entry %llu", (unsigned long long)i);
        if (read_str(&c, &key, what)) return -1;
        g->kv[i].key = (char *)key.s;
        g->n_kv = (int64_t)i + 1;
        if (key.len == 0) return qerr_set(e, "metadata entry %llu has an empty key", (unsigned long long)i);
        if (strlen(key.s) != key.len)
            return qerr_set(e, "metadata entry %llu: key contains a NUL byte", (unsigned long long)i);
        for (uint64_t j = 0; j < i; j++)
            if (strcmp(g->kv[j].key, key.s) == 0) return qerr_set(e, "duplicate metadata key '%s'", key.s);
        if (cur_u32(&c, &type, key.s)) return -1;
        if (type >= GGUF_VTYPE_COUNT) return qerr_set(e, "key '%s': unknown value type %u", key.s, type);
        if (read_value(&c, (int)type, &g->kv[i].val, 0, key.s)) return -1;
        if (strcmp(key.s, "general.alignment") == 0) {
            if (type != GGUF_U32) return qerr_set(e, "general.alignment must be u32, not %s", gguf_vtype_name((int)type));
            uint64_t a = g->kv[i].val.v.u;
            if (a == 0 || (a & (a - 1)) || a > (1u << 20))
                return qerr_set(e, "general.alignment %llu is not a power of two up to 1 MiB", (unsigned long long)a);
            g->alignment = (uint32_t)a;
        }
    }

    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof(gguf_tensor));
    if (!g->tensors) return qerr_set(e, "out of memory");
    for (uint64_t i = 0; i < n_tensors; i++) {
        gguf_tensor *t = &g->tensors[i];
        gguf_str name;
        char what[64];
        snprintf(what, sizeof what, "name of tensor %llu", (unsigned long long)i);
        if (read_str(&c, &name, what)) return -1;
        t->name = (char *)name.s;
        g->n_tensors = (int64_t)i + 1;
        if (name.len == 0) return qerr_set(e, "tensor %llu has an empty name", (unsigned long long)i);
        if (name.len >= GGUF_MAX_NAME)
            return qerr_set(e, "tensor %llu: name of %llu bytes exceeds %d", (unsigned long long)i,
                            (unsigned long long)name.len, GGUF_MAX_NAME - 1);
        if (strlen(name.s) != name.len) return qerr_set(e, "tensor %llu: name contains a NUL byte", (unsigned long long)i);
        for (uint64_t j = 0; j < i; j++)
            if (strcmp(g->tensors[j].name, name.s) == 0) return qerr_set(e, "duplicate tensor name '%s'", name.s);
        uint32_t n_dims, type;
        if (cur_u32(&c, &n_dims, t->name)) return -1;
        if (n_dims == 0 || n_dims > GGUF_MAX_DIMS)
            return qerr_set(e, "tensor '%s': %u dimensions (1 to %d allowed)", t->name, n_dims, GGUF_MAX_DIMS);
        t->n_dims = (int)n_dims;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        uint64_t nel = 1;
        for (uint32_t d = 0; d < n_dims; d++) {
            uint64_t ne;
            if (cur_u64(&c, &ne, t->name)) return -1;
            if (ne > (uint64_t)INT64_MAX || !q_mul_u64(nel, ne, &nel) || nel > (uint64_t)INT64_MAX)
                return qerr_set(e, "tensor '%s': element count overflows", t->name);
            t->ne[d] = (int64_t)ne;
        }
        if (cur_u32(&c, &type, t->name) || cur_u64(&c, &t->offset, t->name)) return -1;
        const qtype_traits *tt = qtype_get((int)type);
        if (!tt) return qerr_set(e, "tensor '%s': unknown type id %u", t->name, type);
        t->type = (int)type;
        if (t->ne[0] % tt->blck != 0)
            return qerr_set(e, "tensor '%s': row length %lld is not a multiple of the %s block size %lld", t->name,
                            (long long)t->ne[0], tt->name, (long long)tt->blck);
        uint64_t nblocks = nel / (uint64_t)tt->blck;
        if (!q_mul_u64(nblocks, tt->size, &t->nbytes))
            return qerr_set(e, "tensor '%s': byte size overflows", t->name);
        if (t->offset % g->alignment != 0)
            return qerr_set(e, "tensor '%s': offset %llu is not a multiple of the alignment %u", t->name,
                            (unsigned long long)t->offset, g->alignment);
    }

    /* The data section starts at the next alignment boundary. */
    uint64_t data = c.off;
    uint64_t pad = (g->alignment - data % g->alignment) % g->alignment;
    if (!q_add_u64(data, pad, &data)) return qerr_set(e, "data offset overflows");
    g->data_offset = data;
    if (n_tensors > 0 && data > g->size)
        return qerr_set(e, "truncated file: the tensor data section would start at %llu, past the end (%llu bytes)",
                        (unsigned long long)data, (unsigned long long)g->size);
    uint64_t data_size = data <= g->size ? g->size - data : 0;

    gguf_tensor **order = malloc((n_tensors ? n_tensors : 1) * sizeof *order);
    if (!order) return qerr_set(e, "out of memory");
    for (uint64_t i = 0; i < n_tensors; i++) order[i] = &g->tensors[i];
    qsort(order, (size_t)n_tensors, sizeof *order, cmp_tensor_offset);
    int rc = 0;
    for (uint64_t i = 0; i < n_tensors && rc == 0; i++) {
        gguf_tensor *t = order[i];
        uint64_t end;
        if (!q_add_u64(t->offset, t->nbytes, &end) || end > data_size)
            rc = qerr_set(e, "truncated file: tensor '%s' (%llu bytes at data offset %llu) extends past the end of the file",
                          t->name, (unsigned long long)t->nbytes, (unsigned long long)t->offset);
        else if (i + 1 < n_tensors && end > order[i + 1]->offset)
            rc = qerr_set(e, "tensor '%s' overlaps tensor '%s'", t->name, order[i + 1]->name);
        else
            t->data = g->base + data + t->offset;
    }
    free(order);
    return rc;
}

int gguf_open_memory(gguf **out, const void *buf, size_t n, qerr *e) {
    *out = NULL;
    gguf *g = calloc(1, sizeof *g);
    if (!g) return qerr_set(e, "out of memory");
    g->base = buf;
    g->size = n;
    if (parse(g, e)) { gguf_close(g); return -1; }
    *out = g;
    return 0;
}

void gguf_drop_pages(const gguf *g, const void *p, size_t n) {
    if (!g || !g->mapped || !p || n == 0) return;
    uintptr_t base = (uintptr_t)g->base, lo = (uintptr_t)p, hi = lo + n;
    if (lo < base || hi > base + (uintptr_t)g->size || hi < lo) return; /* not ours */
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    lo = (lo + page - 1) / page * page; /* whole pages inside the range only */
    hi = hi / page * page;
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_DONTNEED); /* a hint: failure changes nothing */
}

int gguf_open(gguf **out, const char *path, qerr *e) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return qerr_set(e, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) { close(fd); return qerr_set(e, "%s: %s", path, strerror(errno)); }
    if (!S_ISREG(st.st_mode)) { close(fd); return qerr_set(e, "%s: not a regular file", path); }
    if (st.st_size == 0) { close(fd); return qerr_set(e, "%s: not a GGUF file: empty", path); }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return qerr_set(e, "%s: mmap: %s", path, strerror(errno));
    gguf *g = calloc(1, sizeof *g);
    if (!g) { munmap(m, (size_t)st.st_size); return qerr_set(e, "out of memory"); }
    g->base = m;
    g->size = (uint64_t)st.st_size;
    g->mapped = true;
    if (parse(g, e)) { gguf_close(g); return qerr_wrap(e, "%s", path); }
    *out = g;
    return 0;
}

const gguf_value *gguf_get(const gguf *g, const char *key) {
    for (int64_t i = 0; i < g->n_kv; i++)
        if (strcmp(g->kv[i].key, key) == 0) return &g->kv[i].val;
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf *g, const char *name) {
    for (int64_t i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
    return NULL;
}

static bool is_int_type(int t) {
    return t == GGUF_U8 || t == GGUF_I8 || t == GGUF_U16 || t == GGUF_I16 || t == GGUF_U32 ||
           t == GGUF_I32 || t == GGUF_U64 || t == GGUF_I64;
}
static bool is_signed_type(int t) { return t == GGUF_I8 || t == GGUF_I16 || t == GGUF_I32 || t == GGUF_I64; }

bool gguf_get_int(const gguf *g, const char *key, int64_t *out) {
    const gguf_value *v = gguf_get(g, key);
    if (!v || !is_int_type(v->type)) return false;
    if (is_signed_type(v->type)) { *out = v->v.i; return true; }
    if (v->v.u > (uint64_t)INT64_MAX) return false;
    *out = (int64_t)v->v.u;
    return true;
}

bool gguf_get_float(const gguf *g, const char *key, double *out) {
    const gguf_value *v = gguf_get(g, key);
    if (!v || (v->type != GGUF_F32 && v->type != GGUF_F64)) return false;
    *out = v->v.f;
    return true;
}

bool gguf_get_bool(const gguf *g, const char *key, bool *out) {
    const gguf_value *v = gguf_get(g, key);
    if (!v) return false;
    if (v->type == GGUF_BOOL) { *out = v->v.u != 0; return true; }
    int64_t i;
    if (gguf_get_int(g, key, &i)) { *out = i != 0; return true; }
    return false;
}

const char *gguf_get_str(const gguf *g, const char *key) {
    const gguf_value *v = gguf_get(g, key);
    return (v && v->type == GGUF_STRING) ? v->v.str.s : NULL;
}

int64_t gguf_arr_int(const gguf_value *a, uint64_t i) {
    const uint8_t *p = a->v.arr.raw + i * vtype_size(a->v.arr.elem);
    switch (a->v.arr.elem) {
    case GGUF_U8: case GGUF_BOOL: return p[0];
    case GGUF_I8: return (int8_t)p[0];
    case GGUF_U16: { uint16_t x; memcpy(&x, p, 2); return x; }
    case GGUF_I16: { int16_t x; memcpy(&x, p, 2); return x; }
    case GGUF_U32: { uint32_t x; memcpy(&x, p, 4); return x; }
    case GGUF_I32: { int32_t x; memcpy(&x, p, 4); return x; }
    case GGUF_U64: { uint64_t x; memcpy(&x, p, 8); return (int64_t)x; }
    case GGUF_I64: { int64_t x; memcpy(&x, p, 8); return x; }
    case GGUF_F32: { float x; memcpy(&x, p, 4); return (int64_t)x; }
    case GGUF_F64: { double x; memcpy(&x, p, 8); return (int64_t)x; }
    default: return 0;
    }
}

double gguf_arr_float(const gguf_value *a, uint64_t i) {
    const uint8_t *p = a->v.arr.raw + i * vtype_size(a->v.arr.elem);
    switch (a->v.arr.elem) {
    case GGUF_F32: { float x; memcpy(&x, p, 4); return x; }
    case GGUF_F64: { double x; memcpy(&x, p, 8); return x; }
    default: return (double)gguf_arr_int(a, i);
    }
}
