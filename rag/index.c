/* index.c — the index directory: documents, chunks, BM25, vectors, with a
 * write-ahead log and checkpointed snapshots (layout in rag.h).
 *
 * Record encoding (little-endian), shared by the log and the docs snapshot:
 *   u8 type (1 add, 2 rm), str id; for add: str title, str meta_json,
 *   u32 n_acl, str acl..., u32 n_chunks, per chunk: u64 cid, u32 start,
 *   u32 end, str text, u32 dim, f32 vec[dim]   (str = u32 length + bytes)
 * Log record: u32 len, u32 crc32c(len), u32 crc32c(payload), payload =
 *   u64 lsn + record. Snapshot: "QDOCS001", u64 n_docs, records (vectors
 *   omitted: they live in hnsw-G.bin), u32 crc32c of all before. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include "models/models.h"
#include "rag.h"
#include "tokenizer/tokenizer.h"

#define REC_ADD 1
#define REC_RM 2
#define DEFAULT_CKPT_BYTES (64u << 20)

const char *const search_stage_names[ST_COUNT] = {"analyze", "bm25", "embed-query", "hnsw", "fuse", "filter", "rerank"};

typedef struct idoc {
    char *id, *title, *meta_json;
    meta meta;
    char **acl;
    int n_acl;
    size_t first, n; /* chunk slots */
    bool dead;
} idoc;

typedef struct ichunk {
    uint64_t cid;
    uint32_t doc;
    uint32_t start, end;
    char *text;
    uint32_t len;
} ichunk;

struct rag_index {
    char *dir;
    int mode;
    int lock_fd, wal_fd;
    uint64_t wal_bytes, lsn, ckpt_lsn, gen, next_cid, ckpt_bytes;
    int dim;
    index_config cfg;
    analyzer *an;
    bm25 *bm;
    hnsw *hn;
    bert_model *bert;
    tokenizer *tok;
    qpool *pool;
    int n_threads;
    idoc *docs;
    size_t n_docs, cap_docs, n_live;
    ichunk *chunks;
    size_t n_chunks, cap_chunks, n_live_chunks;
    int64_t *map; /* doc id -> doc index; -1 empty, -2 tombstone */
    size_t map_cap, map_used;
    size_t n_acl_docs;
    meta_index *mi; /* posting lists of metadata and ACL (built at the first filtered search, then
                       kept up to date by apply_add; deleted documents are masked per query) */
    bool bm_loaded; /* the BM25 snapshot holds the docs snapshot's chunks: load_docs does not re-add them */
};

void index_config_default(index_config *c) {
    memset(c, 0, sizeof *c);
    c->k1 = 0.9f;
    c->b = 0.4f;
}

/* ------------------------------------------------------------------------ */
/* Byte buffers */
typedef struct wbuf {
    uint8_t *b;
    size_t n, cap;
    bool oom;
} wbuf;

static void wb_put(wbuf *w, const void *p, size_t n) {
    if (w->oom) return;
    if (w->n + n > w->cap) {
        size_t nc = (w->n + n) * 2 + 64;
        uint8_t *nb = realloc(w->b, nc);
        if (!nb) { w->oom = true; return; }
        w->b = nb;
        w->cap = nc;
    }
    if (n) memcpy(w->b + w->n, p, n);
    w->n += n;
}
static void wb_u8(wbuf *w, uint8_t v) { wb_put(w, &v, 1); }
static void wb_u32(wbuf *w, uint32_t v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    wb_put(w, b, 4);
}
static void wb_u64(wbuf *w, uint64_t v) { wb_u32(w, (uint32_t)v); wb_u32(w, (uint32_t)(v >> 32)); }
static void wb_str(wbuf *w, const char *s, size_t n) { wb_u32(w, (uint32_t)n); wb_put(w, s, n); }
static void wb_cstr(wbuf *w, const char *s) { wb_str(w, s ? s : "", s ? strlen(s) : 0); }

typedef struct rbuf {
    const uint8_t *b;
    size_t n, i;
    bool bad;
} rbuf;
static bool rb_get(rbuf *r, void *out, size_t n) {
    if (r->bad || r->n - r->i < n) { r->bad = true; if (out && n) memset(out, 0, n); return false; }
    if (n) memcpy(out, r->b + r->i, n);
    r->i += n;
    return true;
}
static uint8_t rb_u8(rbuf *r) { uint8_t v = 0; rb_get(r, &v, 1); return v; }
static uint32_t rb_u32(rbuf *r) {
    uint8_t b[4];
    if (!rb_get(r, b, 4)) return 0;
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}
static uint64_t rb_u64(rbuf *r) { uint64_t lo = rb_u32(r); return lo | (uint64_t)rb_u32(r) << 32; }
/* malloc'd NUL-terminated copy; NULL on error */
static char *rb_str(rbuf *r, uint32_t *len) {
    uint32_t n = rb_u32(r);
    if (r->bad || r->n - r->i < n) { r->bad = true; return NULL; }
    char *s = malloc((size_t)n + 1);
    if (!s) { r->bad = true; return NULL; }
    memcpy(s, r->b + r->i, n);
    s[n] = 0;
    r->i += n;
    if (len) *len = n;
    return s;
}

/* ------------------------------------------------------------------------ */
/* Decoded records */
typedef struct rchunk {
    uint64_t cid;
    uint32_t start, end, len;
    char *text;
    float *vec;
} rchunk;
typedef struct drec {
    int type;
    char *id, *title, *meta_json;
    char **acl;
    int n_acl;
    uint32_t n_chunks;
    rchunk *ch;
    int dim;
} drec;

static void drec_free(drec *d) {
    free(d->id);
    free(d->title);
    free(d->meta_json);
    for (int i = 0; i < d->n_acl; i++) free(d->acl[i]);
    free(d->acl);
    for (uint32_t i = 0; i < d->n_chunks; i++) { free(d->ch[i].text); free(d->ch[i].vec); }
    free(d->ch);
    memset(d, 0, sizeof *d);
}

static int drec_decode(rbuf *r, drec *d) {
    memset(d, 0, sizeof *d);
    d->type = rb_u8(r);
    d->id = rb_str(r, NULL);
    if (r->bad) goto bad;
    if (d->type == REC_RM) return 0;
    if (d->type != REC_ADD) goto bad;
    d->title = rb_str(r, NULL);
    d->meta_json = rb_str(r, NULL);
    uint32_t na = rb_u32(r);
    if (r->bad || na > r->n - r->i) goto bad;
    d->acl = calloc((size_t)na + 1, sizeof *d->acl);
    if (!d->acl) goto bad;
    for (uint32_t i = 0; i < na; i++) {
        d->acl[i] = rb_str(r, NULL);
        if (r->bad) goto bad;
        d->n_acl++;
    }
    uint32_t nc = rb_u32(r);
    if (r->bad || nc > (r->n - r->i) / 20) goto bad;
    d->ch = calloc((size_t)nc + 1, sizeof *d->ch);
    if (!d->ch) goto bad;
    for (uint32_t i = 0; i < nc; i++) {
        rchunk *c = &d->ch[i];
        c->cid = rb_u64(r);
        c->start = rb_u32(r);
        c->end = rb_u32(r);
        c->text = rb_str(r, &c->len);
        d->n_chunks++;
        uint32_t dim = rb_u32(r);
        if (r->bad || c->end < c->start || c->end - c->start != c->len) goto bad;
        if (dim) {
            if (dim > 65536 || (size_t)dim * 4 > r->n - r->i || (d->dim && (int)dim != d->dim)) goto bad;
            d->dim = (int)dim;
            c->vec = malloc((size_t)dim * sizeof *c->vec);
            if (!c->vec) goto bad;
            for (uint32_t k = 0; k < dim; k++) c->vec[k] = q_f32_from_bits(rb_u32(r));
        }
    }
    if (r->bad) goto bad;
    return 0;
bad:
    drec_free(d);
    r->bad = true;
    return -1;
}

static void enc_add(wbuf *w, const idoc *d, const ichunk *ch, size_t n, const float *vecs, int dim) {
    wb_u8(w, REC_ADD);
    wb_cstr(w, d->id);
    wb_cstr(w, d->title);
    wb_cstr(w, d->meta_json);
    wb_u32(w, (uint32_t)d->n_acl);
    for (int i = 0; i < d->n_acl; i++) wb_cstr(w, d->acl[i]);
    wb_u32(w, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        wb_u64(w, ch[i].cid);
        wb_u32(w, ch[i].start);
        wb_u32(w, ch[i].end);
        wb_str(w, ch[i].text, ch[i].len);
        wb_u32(w, vecs ? (uint32_t)dim : 0);
        if (vecs)
            for (int k = 0; k < dim; k++) wb_u32(w, q_bits_from_f32(vecs[i * (size_t)dim + (size_t)k]));
    }
}

/* ------------------------------------------------------------------------ */
/* Doc id map */
static uint64_t hstr(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}
static int64_t map_find(const rag_index *x, const char *id) {
    if (!x->map_cap) return -1;
    size_t m = x->map_cap - 1;
    for (size_t s = hstr(id) & m;; s = (s + 1) & m) {
        int64_t v = x->map[s];
        if (v == -1) return -1;
        if (v >= 0 && strcmp(x->docs[v].id, id) == 0) return v;
    }
}
static int map_rebuild(rag_index *x, size_t cap) {
    int64_t *nm = malloc(cap * sizeof *nm);
    if (!nm) return -1;
    for (size_t i = 0; i < cap; i++) nm[i] = -1;
    for (size_t d = 0; d < x->n_docs; d++) {
        if (x->docs[d].dead) continue;
        size_t s = hstr(x->docs[d].id) & (cap - 1);
        while (nm[s] != -1) s = (s + 1) & (cap - 1);
        nm[s] = (int64_t)d;
    }
    free(x->map);
    x->map = nm;
    x->map_cap = cap;
    x->map_used = x->n_live;
    return 0;
}
/* d is already a live entry of docs[]: a rebuild inserts it. */
static int map_insert(rag_index *x, size_t d) {
    if ((x->map_used + 1) * 2 > x->map_cap) {
        size_t cap = x->map_cap ? x->map_cap : 1024;
        while ((x->n_live + 1) * 2 > cap) cap *= 2;
        return map_rebuild(x, cap * (x->map_cap ? 2 : 1));
    }
    size_t s = hstr(x->docs[d].id) & (x->map_cap - 1);
    while (x->map[s] >= 0) s = (s + 1) & (x->map_cap - 1);
    if (x->map[s] == -1) x->map_used++;
    x->map[s] = (int64_t)d;
    return 0;
}
static void map_remove(rag_index *x, const char *id) {
    if (!x->map_cap) return;
    size_t m = x->map_cap - 1;
    for (size_t s = hstr(id) & m;; s = (s + 1) & m) {
        int64_t v = x->map[s];
        if (v == -1) return;
        if (v >= 0 && strcmp(x->docs[v].id, id) == 0) { x->map[s] = -2; return; }
    }
}

/* ------------------------------------------------------------------------ */
/* Applying records in memory */
static int index_ensure_hnsw(rag_index *x, int dim, qerr *e) {
    if (x->hn) {
        if (hnsw_dim(x->hn) != dim) return qerr_set(e, "vector dimension %d differs from the index's %d", dim, hnsw_dim(x->hn));
        return 0;
    }
    hnsw_params p;
    hnsw_params_default(&p);
    p.dim = dim;
    p.metric = HNSW_COS;
    if (hnsw_new(&x->hn, &p, e)) return -1;
    x->dim = dim;
    return 0;
}

static void apply_rm(rag_index *x, size_t d) {
    idoc *doc = &x->docs[d];
    if (doc->dead) return;
    map_remove(x, doc->id);
    doc->dead = true;
    x->n_live--;
    if (doc->n_acl) x->n_acl_docs--;
    for (size_t i = doc->first; i < doc->first + doc->n; i++) {
        bm25_delete(x->bm, (uint32_t)i);
        if (x->hn && hnsw_contains(x->hn, x->chunks[i].cid)) {
            qerr e2;
            (void)hnsw_delete(x->hn, x->chunks[i].cid, &e2);
        }
        x->n_live_chunks--;
    }
}

/* Adds one chunk to a BM25 index the way the index's config says: title and
 * text as two fields, or "title text" as one. *flat is a reusable buffer. */
static int bm25_add_chunk(rag_index *x, bm25 *bm, const char *title, const char *text, size_t len, char **flat,
                          size_t *flat_cap, uint32_t *bid, qerr *e) {
    size_t tl = title ? strlen(title) : 0;
    const char *f[2];
    size_t fl[2];
    if (x->cfg.multi_field) {
        f[0] = title ? title : "";
        fl[0] = tl;
        f[1] = text;
        fl[1] = len;
    } else {
        if (tl + 1 + len + 1 > *flat_cap) {
            size_t nc = (tl + 1 + len + 1) * 2;
            char *nf = realloc(*flat, nc);
            if (!nf) return qerr_set(e, "out of memory");
            *flat = nf;
            *flat_cap = nc;
        }
        if (tl) memcpy(*flat, title, tl);
        (*flat)[tl] = ' ';
        memcpy(*flat + tl + 1, text, len);
        f[0] = *flat;
        fl[0] = tl + 1 + len;
    }
    return bm25_add(bm, x->an, f, fl, bid, e);
}

/* Takes ownership of the record's strings. with_vectors: insert them. */
static int apply_add(rag_index *x, drec *r, qerr *e) {
    int64_t old = map_find(x, r->id);
    if (old >= 0) apply_rm(x, (size_t)old);
    if (x->n_docs == x->cap_docs) {
        size_t nc = x->cap_docs ? x->cap_docs * 2 : 256;
        idoc *nd = realloc(x->docs, nc * sizeof *nd);
        if (!nd) return qerr_set(e, "out of memory");
        x->docs = nd;
        x->cap_docs = nc;
    }
    if (x->n_chunks + r->n_chunks > x->cap_chunks) {
        size_t nc = x->cap_chunks ? x->cap_chunks * 2 : 1024;
        while (nc < x->n_chunks + r->n_chunks) nc *= 2;
        ichunk *nch = realloc(x->chunks, nc * sizeof *nch);
        if (!nch) return qerr_set(e, "out of memory");
        x->chunks = nch;
        x->cap_chunks = nc;
    }
    idoc *d = &x->docs[x->n_docs];
    memset(d, 0, sizeof *d);
    jv mj;
    if (r->meta_json && r->meta_json[0]) {
        if (jsonl_parse(r->meta_json, strlen(r->meta_json), &mj, e)) return qerr_wrap(e, "document %s: metadata", r->id);
        int rc = meta_from_json(&d->meta, &mj, e);
        jsonl_free(&mj);
        if (rc) return -1;
    }
    if (r->dim && !x->hn && index_ensure_hnsw(x, r->dim, e)) { meta_free(&d->meta); return -1; }
    d->id = r->id; r->id = NULL;
    d->title = r->title; r->title = NULL;
    d->meta_json = r->meta_json; r->meta_json = NULL;
    d->acl = r->acl; r->acl = NULL;
    d->n_acl = r->n_acl; r->n_acl = 0;
    d->first = x->n_chunks;
    d->n = 0;
    size_t di = x->n_docs++;
    x->n_live++;
    if (d->n_acl) x->n_acl_docs++;
    if (map_insert(x, di)) return qerr_set(e, "out of memory");
    if (x->mi) {
        qerr e2;
        if (meta_index_add(x->mi, (uint32_t)di, &d->meta, (const char *const *)d->acl, d->n_acl, &e2)) {
            meta_index_free(x->mi); /* rebuilt at the next filtered search */
            x->mi = NULL;
        }
    }
    char *flat = NULL;
    size_t flat_cap = 0;
    for (uint32_t i = 0; i < r->n_chunks; i++) {
        rchunk *c = &r->ch[i];
        if (x->bm_loaded) { /* already in the loaded BM25 snapshot */
            if (x->n_chunks >= bm25_count(x->bm)) { free(flat); return qerr_set(e, "BM25 snapshot has fewer chunks than the documents"); }
        } else {
            uint32_t bid;
            if (bm25_add_chunk(x, x->bm, d->title, c->text, c->len, &flat, &flat_cap, &bid, e)) { free(flat); return -1; }
            if (bid != x->n_chunks) { free(flat); return qerr_set(e, "internal: bm25 id %u != chunk slot %zu", bid, x->n_chunks); }
        }
        ichunk *ch = &x->chunks[x->n_chunks++];
        ch->cid = c->cid;
        ch->doc = (uint32_t)di;
        ch->start = c->start;
        ch->end = c->end;
        ch->text = c->text; c->text = NULL;
        ch->len = c->len;
        d->n++;
        x->n_live_chunks++;
        if (c->cid >= x->next_cid) x->next_cid = c->cid + 1;
        if (c->vec && hnsw_add(x->hn, c->cid, c->vec, e)) { free(flat); return -1; }
    }
    free(flat);
    return 0;
}

static int apply_record(rag_index *x, drec *r, qerr *e) {
    if (r->type == REC_RM) {
        int64_t d = map_find(x, r->id);
        if (d >= 0) apply_rm(x, (size_t)d);
        return 0;
    }
    return apply_add(x, r, e);
}

/* ------------------------------------------------------------------------ */
/* Files */
static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

typedef struct mfile {
    char name[64];
    uint64_t size;
    uint32_t crc;
} mfile;

typedef struct manifest {
    uint64_t gen, lsn, next_cid;
    int dim;
    index_config cfg;
    mfile files[4];
    int n_files;
} manifest;

static int manifest_write(rag_index *x, const manifest *m, qerr *e) {
    char buf[4096 + 1024];
    int n = snprintf(buf, sizeof buf,
                     "quire-index 1\ngen %llu\nlsn %llu\nnext_cid %llu\ndim %d\nembed_model %s\nchunk_tokens %d\n"
                     "overlap %d\nk1 %.9g\nb %.9g\nmulti_field %d\n",
                     (unsigned long long)m->gen, (unsigned long long)m->lsn, (unsigned long long)m->next_cid, m->dim,
                     m->cfg.embed_model, m->cfg.chunk_tokens, m->cfg.overlap, (double)m->cfg.k1, (double)m->cfg.b,
                     m->cfg.multi_field ? 1 : 0);
    for (int i = 0; i < m->n_files; i++)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "file %s %llu %08x\n", m->files[i].name,
                      (unsigned long long)m->files[i].size, m->files[i].crc);
    n += snprintf(buf + n, sizeof buf - (size_t)n, "crc %08x\n", q_crc32c(0, buf, (size_t)n));
    char *p = path_join(x->dir, "MANIFEST");
    if (!p) return qerr_set(e, "out of memory");
    int rc = q_write_file_atomic(p, buf, (size_t)n, e);
    free(p);
    return rc;
}

static int manifest_read(const char *dir, manifest *m, qerr *e) {
    memset(m, 0, sizeof *m);
    index_config_default(&m->cfg);
    char *p = path_join(dir, "MANIFEST");
    if (!p) return qerr_set(e, "out of memory");
    char *buf;
    size_t len;
    if (q_read_file(p, &buf, &len, e)) { free(p); return -1; }
    free(p);
    /* the last line is "crc XXXXXXXX" over everything before it */
    size_t ls = len;
    if (ls > 0 && buf[ls - 1] == '\n') ls--;
    while (ls > 0 && buf[ls - 1] != '\n') ls--;
    unsigned crc;
    if (len - ls != 13 || buf[len - 1] != '\n' || sscanf(buf + ls, "crc %8x", &crc) != 1 || crc != q_crc32c(0, buf, ls)) {
        free(buf);
        return qerr_set(e, "%s/MANIFEST: checksum mismatch (corrupt file)", dir);
    }
    size_t pos = 0;
    const char *line;
    size_t ll;
    bool magic = false;
    while (jsonl_next_line(buf, ls, &pos, &line, &ll)) {
        char l[2048];
        if (ll >= sizeof l) { free(buf); return qerr_set(e, "%s/MANIFEST: line too long", dir); }
        memcpy(l, line, ll);
        l[ll] = 0;
        unsigned long long u;
        int iv;
        double dv;
        if (strcmp(l, "quire-index 1") == 0) magic = true;
        else if (sscanf(l, "gen %llu", &u) == 1) m->gen = u;
        else if (sscanf(l, "lsn %llu", &u) == 1) m->lsn = u;
        else if (sscanf(l, "next_cid %llu", &u) == 1) m->next_cid = u;
        else if (sscanf(l, "dim %d", &iv) == 1) m->dim = iv;
        else if (strncmp(l, "embed_model ", 12) == 0) {
            size_t ml = strlen(l + 12);
            if (ml >= sizeof m->cfg.embed_model) { free(buf); return qerr_set(e, "%s/MANIFEST: model path too long", dir); }
            memcpy(m->cfg.embed_model, l + 12, ml + 1);
        }
        else if (strcmp(l, "embed_model") == 0) m->cfg.embed_model[0] = 0;
        else if (sscanf(l, "chunk_tokens %d", &iv) == 1) m->cfg.chunk_tokens = iv;
        else if (sscanf(l, "overlap %d", &iv) == 1) m->cfg.overlap = iv;
        else if (sscanf(l, "k1 %lf", &dv) == 1) m->cfg.k1 = (float)dv;
        else if (sscanf(l, "b %lf", &dv) == 1) m->cfg.b = (float)dv;
        else if (sscanf(l, "multi_field %d", &iv) == 1) m->cfg.multi_field = iv != 0;
        else if (strncmp(l, "file ", 5) == 0) {
            if (m->n_files == 4) { free(buf); return qerr_set(e, "%s/MANIFEST: too many files", dir); }
            mfile *f = &m->files[m->n_files];
            unsigned c;
            if (sscanf(l, "file %63s %llu %8x", f->name, &u, &c) != 3 || strchr(f->name, '/')) {
                free(buf);
                return qerr_set(e, "%s/MANIFEST: bad line '%s'", dir, l);
            }
            f->size = u;
            f->crc = c;
            m->n_files++;
        } else { free(buf); return qerr_set(e, "%s/MANIFEST: unknown line '%s'", dir, l); }
    }
    free(buf);
    if (!magic) return qerr_set(e, "%s/MANIFEST: not a quire index manifest", dir);
    return 0;
}

/* Reads a snapshot file and checks it against the manifest. */
static int read_checked(const char *dir, const mfile *f, char **out, size_t *len, qerr *e) {
    char *p = path_join(dir, f->name);
    if (!p) return qerr_set(e, "out of memory");
    int rc = q_read_file(p, out, len, e);
    if (rc == 0 && (*len != f->size || *len < 4 || q_crc32c(0, *out, *len - 4) != f->crc)) {
        free(*out);
        rc = qerr_set(e, "%s: checksum mismatch (corrupt file)", p);
    }
    free(p);
    return rc;
}

static int load_docs(rag_index *x, const char *name, const char *buf, size_t len, qerr *e) {
    if (len < 20 || memcmp(buf, "QDOCS001", 8) != 0) return qerr_set(e, "%s/%s: bad magic", x->dir, name);
    uint32_t crc = (uint32_t)(uint8_t)buf[len - 4] | (uint32_t)(uint8_t)buf[len - 3] << 8 |
                   (uint32_t)(uint8_t)buf[len - 2] << 16 | (uint32_t)(uint8_t)buf[len - 1] << 24;
    if (crc != q_crc32c(0, buf, len - 4)) return qerr_set(e, "%s/%s: checksum mismatch (corrupt file)", x->dir, name);
    rbuf r = {(const uint8_t *)buf, len - 4, 8, false};
    uint64_t n = rb_u64(&r);
    for (uint64_t i = 0; i < n; i++) {
        drec d;
        if (drec_decode(&r, &d)) return qerr_set(e, "%s/%s: malformed record %llu", x->dir, name, (unsigned long long)i);
        int rc = apply_record(x, &d, e);
        drec_free(&d);
        if (rc) return qerr_wrap(e, "%s/%s", x->dir, name);
    }
    if (r.bad || r.i != r.n) return qerr_set(e, "%s/%s: malformed (trailing bytes)", x->dir, name);
    return 0;
}

/* Replays the log. *good: the offset after the last good record. */
static int wal_replay(rag_index *x, const char *buf, size_t len, size_t *good, bool *torn, qerr *e) {
    size_t i = 0;
    *torn = false;
    while (i < len) {
        if (len - i < 12) { *torn = true; break; }
        rbuf h = {(const uint8_t *)buf + i, 12, 0, false};
        uint32_t n = rb_u32(&h), hc = rb_u32(&h), pc = rb_u32(&h);
        if (hc != q_crc32c(0, buf + i, 4)) return qerr_set(e, "%s/wal.log: corrupt record header at offset %zu", x->dir, i);
        if (len - i - 12 < n) { *torn = true; break; }
        if (pc != q_crc32c(0, buf + i + 12, n)) {
            if (i + 12 + n == len) { *torn = true; break; } /* interrupted final write */
            return qerr_set(e, "%s/wal.log: checksum mismatch in record at offset %zu (corrupt file)", x->dir, i);
        }
        rbuf r = {(const uint8_t *)buf + i + 12, n, 0, false};
        uint64_t lsn = rb_u64(&r);
        if (lsn > x->ckpt_lsn) {
            drec d;
            if (drec_decode(&r, &d) || r.i != r.n)
                return qerr_set(e, "%s/wal.log: malformed record at offset %zu", x->dir, i);
            int rc = apply_record(x, &d, e);
            drec_free(&d);
            if (rc) return qerr_wrap(e, "%s/wal.log", x->dir);
        }
        if (lsn > x->lsn) x->lsn = lsn;
        i += 12 + n;
    }
    *good = i;
    return 0;
}

/* ------------------------------------------------------------------------ */
static void index_bm25_params(const rag_index *x, bm25_params *bp) {
    bm25_params_default(bp);
    bp->k1 = x->cfg.k1;
    bp->b = x->cfg.b;
    bp->n_fields = x->cfg.multi_field ? 2 : 1;
}

static int index_init_mem(rag_index *x, qerr *e) {
    if (analyzer_new(&x->an, NULL, e)) return -1;
    bm25_params bp;
    index_bm25_params(x, &bp);
    return bm25_new(&x->bm, &bp, e);
}

void index_free(rag_index *x) {
    if (!x) return;
    for (size_t i = 0; i < x->n_docs; i++) {
        idoc *d = &x->docs[i];
        free(d->id); free(d->title); free(d->meta_json);
        meta_free(&d->meta);
        for (int k = 0; k < d->n_acl; k++) free(d->acl[k]);
        free(d->acl);
    }
    free(x->docs);
    for (size_t i = 0; i < x->n_chunks; i++) free(x->chunks[i].text);
    free(x->chunks);
    free(x->map);
    analyzer_free(x->an);
    bm25_free(x->bm);
    hnsw_free(x->hn);
    meta_index_free(x->mi);
    if (x->tok) tokenizer_free(x->tok);
    if (x->bert) bert_free(x->bert);
    if (x->pool) qpool_free(x->pool);
    if (x->wal_fd >= 0) close(x->wal_fd);
    if (x->lock_fd >= 0) close(x->lock_fd);
    free(x->dir);
    free(x);
}

int index_open(rag_index **out, const char *dir, int mode, const index_config *cfg, qerr *e) {
    *out = NULL;
    rag_index *x = calloc(1, sizeof *x);
    if (!x) return qerr_set(e, "out of memory");
    x->wal_fd = x->lock_fd = -1;
    x->mode = mode;
    x->ckpt_bytes = DEFAULT_CKPT_BYTES;
    if (cfg) x->cfg = *cfg;
    else index_config_default(&x->cfg);
    if (!dir) {
        if (index_init_mem(x, e)) { index_free(x); return -1; }
        *out = x;
        return 0;
    }
    x->dir = strdup(dir);
    if (!x->dir) { index_free(x); return qerr_set(e, "out of memory"); }
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (mode != INDEX_CREATE) { index_free(x); return qerr_set(e, "%s: no such index", dir); }
        if (mkdir(dir, 0777) != 0 && errno != EEXIST) { index_free(x); return qerr_set(e, "%s: cannot create: %s", dir, strerror(errno)); }
    } else if (!S_ISDIR(st.st_mode)) { index_free(x); return qerr_set(e, "%s: not a directory", dir); }
    char *p = path_join(dir, "LOCK");
    if (!p) { index_free(x); return qerr_set(e, "out of memory"); }
    x->lock_fd = open(p, (mode == INDEX_READ ? O_RDONLY : O_RDWR | O_CREAT) | O_CLOEXEC, 0666);
    if (x->lock_fd < 0 && mode == INDEX_READ && errno == ENOENT) x->lock_fd = -1; /* read-only dir without LOCK */
    else if (x->lock_fd < 0) { qerr_set(e, "%s: %s", p, strerror(errno)); free(p); index_free(x); return -1; }
    if (x->lock_fd >= 0 && flock(x->lock_fd, mode == INDEX_READ ? LOCK_SH : LOCK_EX) != 0) {
        qerr_set(e, "%s: lock: %s", p, strerror(errno));
        free(p);
        index_free(x);
        return -1;
    }
    free(p);
    manifest m;
    p = path_join(dir, "MANIFEST");
    bool exists = p && stat(p, &st) == 0;
    free(p);
    if (!exists) {
        if (mode != INDEX_CREATE) { index_free(x); return qerr_set(e, "%s: not an index (no MANIFEST)", dir); }
        memset(&m, 0, sizeof m);
        m.cfg = x->cfg;
        if (manifest_write(x, &m, e)) { index_free(x); return -1; }
    } else if (manifest_read(dir, &m, e)) { index_free(x); return -1; }
    x->cfg = m.cfg;
    x->gen = m.gen;
    x->ckpt_lsn = x->lsn = m.lsn;
    x->next_cid = m.next_cid;
    x->dim = m.dim;
    if (index_init_mem(x, e)) { index_free(x); return -1; }
    /* the BM25 snapshot first, so the documents need not be analyzed again */
    for (int i = 0; i < m.n_files; i++) {
        if (strncmp(m.files[i].name, "bm25-", 5) != 0) continue;
        char *buf;
        size_t len;
        if (read_checked(dir, &m.files[i], &buf, &len, e)) { index_free(x); return -1; }
        bm25 *bm;
        uint32_t aver = 0;
        if (len >= 16) memcpy(&aver, buf + 12, 4);
        if (aver != ANALYZER_VERSION) { free(buf); continue; } /* an older analyzer's terms: rebuild from the documents */
        int rc = bm25_load_memory(&bm, buf, len, e);
        free(buf);
        if (rc) { qerr_wrap(e, "%s/%s", dir, m.files[i].name); index_free(x); return -1; }
        bm25_params bp;
        index_bm25_params(x, &bp);
        if (!bm25_params_equal(bm, &bp)) {
            bm25_free(bm);
            qerr_set(e, "%s/%s: BM25 parameters differ from the MANIFEST's", dir, m.files[i].name);
            index_free(x);
            return -1;
        }
        bm25_free(x->bm);
        x->bm = bm;
        x->bm_loaded = true;
    }
    for (int i = 0; i < m.n_files; i++) {
        if (strncmp(m.files[i].name, "bm25-", 5) == 0) continue;
        char *buf;
        size_t len;
        if (read_checked(dir, &m.files[i], &buf, &len, e)) { index_free(x); return -1; }
        int rc;
        if (strncmp(m.files[i].name, "hnsw-", 5) == 0) {
            hnsw_free(x->hn);
            x->hn = NULL;
            rc = hnsw_load_memory(&x->hn, buf, len, e);
            if (rc) qerr_wrap(e, "%s/%s", dir, m.files[i].name);
        } else rc = load_docs(x, m.files[i].name, buf, len, e);
        free(buf);
        if (rc) { index_free(x); return -1; }
    }
    if (x->bm_loaded && bm25_count(x->bm) != x->n_chunks) {
        qerr_set(e, "%s: BM25 snapshot has %u chunks for %zu in the documents (inconsistent snapshot)", dir,
                 bm25_count(x->bm), x->n_chunks);
        index_free(x);
        return -1;
    }
    x->bm_loaded = false; /* the log's records are analyzed as they are replayed */
    /* the loaded hnsw holds the vectors of the snapshot's chunks: check */
    if (x->hn && hnsw_count(x->hn) != x->n_live_chunks) {
        qerr_set(e, "%s: vector index has %zu vectors for %zu chunks (inconsistent snapshot)", dir, hnsw_count(x->hn), x->n_live_chunks);
        index_free(x);
        return -1;
    }
    /* log */
    p = path_join(dir, "wal.log");
    if (!p) { index_free(x); return qerr_set(e, "out of memory"); }
    char *wbuf_ = NULL;
    size_t wlen = 0;
    if (stat(p, &st) == 0) {
        if (q_read_file(p, &wbuf_, &wlen, e)) { free(p); index_free(x); return -1; }
        size_t good = 0;
        bool torn = false;
        int rc = wal_replay(x, wbuf_, wlen, &good, &torn, e);
        free(wbuf_);
        if (rc) { free(p); index_free(x); return -1; }
        if (mode != INDEX_READ && good != wlen && truncate(p, (off_t)good) != 0) {
            qerr_set(e, "%s: cannot drop torn tail: %s", p, strerror(errno));
            free(p);
            index_free(x);
            return -1;
        }
        x->wal_bytes = good;
    }
    if (mode != INDEX_READ) {
        x->wal_fd = open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
        if (x->wal_fd < 0) { qerr_set(e, "%s: %s", p, strerror(errno)); free(p); index_free(x); return -1; }
        if (fsync(x->wal_fd) != 0) { qerr_set(e, "%s: fsync: %s", p, strerror(errno)); free(p); index_free(x); return -1; }
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) { (void)fsync(dfd); close(dfd); }
    }
    free(p);
    *out = x;
    return 0;
}

const index_config *index_get_config(const rag_index *x) { return &x->cfg; }
void index_set_checkpoint_bytes(rag_index *x, uint64_t bytes) { x->ckpt_bytes = bytes; }
int index_set_threads(rag_index *x, int n, qerr *e) {
    x->n_threads = n;
    (void)e;
    return 0;
}
bool index_has_doc(const rag_index *x, const char *id) { return map_find(x, id) >= 0; }
size_t index_doc_count(const rag_index *x) { return x->n_live; }
size_t index_chunk_count(const rag_index *x) { return x->n_live_chunks; }

bool index_get_doc(const rag_index *x, const char *doc_id, index_doc_info *out) {
    int64_t d = map_find(x, doc_id);
    if (d < 0) return false;
    const idoc *doc = &x->docs[d];
    *out = (index_doc_info){doc->id, doc->title ? doc->title : "", doc->meta_json ? doc->meta_json : "",
                            (const char *const *)doc->acl, doc->n_acl, doc->n, (size_t)d};
    return true;
}

void index_doc_chunk(const rag_index *x, const index_doc_info *d, size_t k, search_hit *hit) {
    const ichunk *ch = &x->chunks[x->docs[d->doc_].first + k];
    *hit = (search_hit){x->docs[ch->doc].id, ch->text, ch->len, ch->start, ch->end, 0, ch->cid};
}

/* ------------------------------------------------------------------------ */
/* Embedding model */
static int index_load_model(rag_index *x, qerr *e) {
    if (x->bert || !x->cfg.embed_model[0]) return 0;
    if (bert_load(&x->bert, x->cfg.embed_model, e)) return qerr_wrap(e, "embedding model");
    if (tokenizer_load(&x->tok, x->bert->g, e)) {
        bert_free(x->bert);
        x->bert = NULL;
        return qerr_wrap(e, "embedding model tokenizer");
    }
    if (x->dim && x->dim != x->bert->n_embd) return qerr_set(e, "embedding model has %d dimensions, the index %d", x->bert->n_embd, x->dim);
    x->pool = qpool_new(x->n_threads > 0 ? x->n_threads : q_default_threads());
    if (!x->pool) return qerr_set(e, "out of memory");
    return 0;
}

static int count_tokens(const char *t, size_t len, void *ctx) {
    rag_index *x = ctx;
    int32_t *ids;
    size_t n;
    qerr e;
    if (tokenizer_encode(x->tok, t, len, false, false, &ids, &n, &e)) return (int)len; /* pessimistic */
    free(ids);
    return (int)n;
}

/* Embeds texts (title + chunk), n_ctx-truncated, in batches. */
static int embed_texts(rag_index *x, const char *const *titles, const char *const *texts, const size_t *lens, size_t n,
                       float *out, qerr *e) {
    int nctx = x->bert->n_ctx_train > 0 ? x->bert->n_ctx_train : 512;
    size_t i = 0;
    while (i < n) {
        size_t cap = 0, nt = 0;
        int32_t *tokens = NULL;
        int starts[33];
        int nb = 0;
        starts[0] = 0;
        while (i < n && nb < 32 && nt < 8192) {
            size_t tl = titles[i] ? strlen(titles[i]) : 0;
            char *s = malloc(tl + 2 + lens[i] + 1);
            if (!s) { free(tokens); return qerr_set(e, "out of memory"); }
            size_t k = 0;
            if (tl) { memcpy(s, titles[i], tl); s[tl] = '\n'; k = tl + 1; }
            memcpy(s + k, texts[i], lens[i]);
            k += lens[i];
            int32_t *ids;
            size_t ni;
            int rc = tokenizer_encode(x->tok, s, k, true, false, &ids, &ni, e);
            free(s);
            if (rc) { free(tokens); return -1; }
            if (ni > (size_t)nctx) {
                ids[nctx - 1] = ids[ni - 1]; /* keep [SEP] */
                ni = (size_t)nctx;
            }
            if (nt + ni > cap) {
                cap = (nt + ni) * 2;
                int32_t *nt2 = realloc(tokens, cap * sizeof *nt2);
                if (!nt2) { free(ids); free(tokens); return qerr_set(e, "out of memory"); }
                tokens = nt2;
            }
            memcpy(tokens + nt, ids, ni * sizeof *ids);
            free(ids);
            nt += ni;
            starts[++nb] = (int)nt;
            i++;
        }
        int rc = bert_embed(x->bert, x->pool, tokens, starts, nb, -1, out + (i - (size_t)nb) * (size_t)x->bert->n_embd, e);
        free(tokens);
        if (rc) return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Writes */
static int wal_append(rag_index *x, wbuf *recs, qerr *e) {
    if (!x->dir) return 0;
    if (x->wal_fd < 0) return qerr_set(e, "%s: index opened read-only", x->dir);
    if (q_write_all(x->wal_fd, recs->b, recs->n, e) != 0) {
        if (ftruncate(x->wal_fd, (off_t)x->wal_bytes) != 0) { /* leave it: replay drops the torn tail */ }
        return qerr_wrap(e, "%s/wal.log", x->dir);
    }
    if (fdatasync(x->wal_fd) != 0) return qerr_set(e, "%s/wal.log: fsync: %s", x->dir, strerror(errno));
    x->wal_bytes += recs->n;
    return 0;
}

static void frame(wbuf *out, uint64_t lsn, const wbuf *rec) {
    uint8_t hdr[4];
    uint32_t n = (uint32_t)(rec->n + 8);
    hdr[0] = (uint8_t)n; hdr[1] = (uint8_t)(n >> 8); hdr[2] = (uint8_t)(n >> 16); hdr[3] = (uint8_t)(n >> 24);
    size_t at = out->n;
    wb_u32(out, n);
    wb_u32(out, q_crc32c(0, hdr, 4));
    wb_u32(out, 0); /* payload crc, patched below */
    wb_u64(out, lsn);
    wb_put(out, rec->b, rec->n);
    if (out->oom) return;
    uint32_t c = q_crc32c(0, out->b + at + 12, n);
    out->b[at + 8] = (uint8_t)c; out->b[at + 9] = (uint8_t)(c >> 8);
    out->b[at + 10] = (uint8_t)(c >> 16); out->b[at + 11] = (uint8_t)(c >> 24);
}

static int maybe_checkpoint(rag_index *x, qerr *e) {
    if (x->dir && x->ckpt_bytes && x->wal_bytes >= x->ckpt_bytes) return index_checkpoint(x, e);
    return 0;
}

int index_add(rag_index *x, const index_doc *docs, size_t n, qerr *e) {
    if (index_load_model(x, e)) return -1;
    int rc = 0;
    wbuf log = {0};
    drec *recs = calloc(n + 1, sizeof *recs);
    if (!recs) return qerr_set(e, "out of memory");
    int budget = x->cfg.chunk_tokens;
    if (budget <= 0) budget = x->bert ? (x->bert->n_ctx_train > 2 ? x->bert->n_ctx_train - 2 : 510) : 512;
    if (x->bert && budget > x->bert->n_ctx_train - 2) budget = x->bert->n_ctx_train - 2;
    int overlap = x->cfg.overlap < budget ? x->cfg.overlap : budget - 1;
    uint64_t cid = x->next_cid;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const index_doc *d = &docs[i];
        drec *r = &recs[i];
        r->type = REC_ADD;
        if (!d->id || !d->id[0]) { rc = qerr_set(e, "document %zu: empty id", i); break; }
        r->id = strdup(d->id);
        r->title = strdup(d->title ? d->title : "");
        r->meta_json = strdup(d->meta_json ? d->meta_json : "");
        r->acl = calloc((size_t)d->n_acl + 1, sizeof *r->acl);
        if (!r->id || !r->title || !r->meta_json || !r->acl) { rc = qerr_set(e, "out of memory"); break; }
        for (int k = 0; k < d->n_acl; k++) {
            if (!(r->acl[k] = strdup(d->acl[k]))) { rc = qerr_set(e, "out of memory"); break; }
            r->n_acl++;
        }
        if (r->meta_json[0]) { /* validate now, not at replay */
            jv mj;
            meta mm;
            if (jsonl_parse(r->meta_json, strlen(r->meta_json), &mj, e)) { rc = qerr_wrap(e, "document %s: metadata", d->id); break; }
            rc = meta_from_json(&mm, &mj, e);
            jsonl_free(&mj);
            if (rc) { qerr_wrap(e, "document %s", d->id); break; }
            meta_free(&mm);
        }
        chunk_opts co = {.max_tokens = budget, .overlap = overlap, .format = d->format,
                         .count = x->tok ? count_tokens : NULL, .count_ctx = x};
        chunk_span *sp;
        size_t ns;
        if (chunk_text(d->text, d->text_len, &co, &sp, &ns, e)) { rc = qerr_wrap(e, "document %s", d->id); break; }
        if (ns > UINT32_MAX || d->text_len > UINT32_MAX) { free(sp); rc = qerr_set(e, "document %s: too large", d->id); break; }
        r->ch = calloc(ns + 1, sizeof *r->ch);
        if (!r->ch) { free(sp); rc = qerr_set(e, "out of memory"); break; }
        for (size_t k = 0; k < ns; k++) {
            rchunk *c = &r->ch[k];
            c->cid = cid++;
            c->start = (uint32_t)sp[k].start;
            c->end = (uint32_t)sp[k].end;
            c->len = c->end - c->start;
            c->text = malloc((size_t)c->len + 1);
            if (!c->text) { rc = qerr_set(e, "out of memory"); break; }
            memcpy(c->text, d->text + c->start, c->len);
            c->text[c->len] = 0;
            r->n_chunks++;
        }
        free(sp);
    }
    /* embeddings */
    if (rc == 0 && x->bert) {
        size_t total = 0;
        for (size_t i = 0; i < n; i++) total += recs[i].n_chunks;
        const char **ti = malloc((total + 1) * sizeof *ti), **tx = malloc((total + 1) * sizeof *tx);
        size_t *tl = malloc((total + 1) * sizeof *tl);
        float *vecs = malloc((total + 1) * (size_t)x->bert->n_embd * sizeof *vecs);
        if (!ti || !tx || !tl || !vecs) rc = qerr_set(e, "out of memory");
        size_t j = 0;
        for (size_t i = 0; i < n && rc == 0; i++)
            for (uint32_t k = 0; k < recs[i].n_chunks; k++, j++) {
                ti[j] = recs[i].title;
                tx[j] = recs[i].ch[k].text;
                tl[j] = recs[i].ch[k].len;
            }
        if (rc == 0 && total) rc = embed_texts(x, ti, tx, tl, total, vecs, e);
        j = 0;
        int dim = x->bert->n_embd;
        for (size_t i = 0; i < n && rc == 0; i++) {
            recs[i].dim = dim;
            for (uint32_t k = 0; k < recs[i].n_chunks && rc == 0; k++, j++) {
                recs[i].ch[k].vec = malloc((size_t)dim * sizeof(float));
                if (!recs[i].ch[k].vec) rc = qerr_set(e, "out of memory");
                else memcpy(recs[i].ch[k].vec, vecs + j * (size_t)dim, (size_t)dim * sizeof(float));
            }
        }
        free(ti); free(tx); free(tl); free(vecs);
        if (rc == 0 && x->dim == 0) x->dim = dim;
    }
    /* log, then apply */
    for (size_t i = 0; i < n && rc == 0; i++) {
        idoc tmp = {.id = recs[i].id, .title = recs[i].title, .meta_json = recs[i].meta_json, .acl = recs[i].acl, .n_acl = recs[i].n_acl};
        ichunk *ch = calloc(recs[i].n_chunks + 1, sizeof *ch);
        float *v = recs[i].dim ? malloc(((size_t)recs[i].n_chunks + 1) * (size_t)recs[i].dim * sizeof *v) : NULL;
        if (!ch || (recs[i].dim && !v)) { free(ch); free(v); rc = qerr_set(e, "out of memory"); break; }
        for (uint32_t k = 0; k < recs[i].n_chunks; k++) {
            ch[k] = (ichunk){.cid = recs[i].ch[k].cid, .start = recs[i].ch[k].start, .end = recs[i].ch[k].end,
                             .text = recs[i].ch[k].text, .len = recs[i].ch[k].len};
            if (v) memcpy(v + (size_t)k * (size_t)recs[i].dim, recs[i].ch[k].vec, (size_t)recs[i].dim * sizeof *v);
        }
        wbuf rec = {0};
        enc_add(&rec, &tmp, ch, recs[i].n_chunks, v, recs[i].dim);
        free(ch);
        free(v);
        frame(&log, ++x->lsn, &rec);
        free(rec.b);
        if (log.oom || rec.oom) rc = qerr_set(e, "out of memory");
    }
    if (rc == 0) rc = wal_append(x, &log, e);
    for (size_t i = 0; i < n && rc == 0; i++) rc = apply_add(x, &recs[i], e);
    if (rc == 0 && cid > x->next_cid) x->next_cid = cid;
    for (size_t i = 0; i < n; i++) drec_free(&recs[i]);
    free(recs);
    free(log.b);
    if (rc == 0) rc = maybe_checkpoint(x, e);
    return rc;
}

int index_rm(rag_index *x, const char *doc_id, bool *found, qerr *e) {
    int64_t d = map_find(x, doc_id);
    if (found) *found = d >= 0;
    if (d < 0) return 0;
    wbuf rec = {0}, log = {0};
    wb_u8(&rec, REC_RM);
    wb_cstr(&rec, doc_id);
    frame(&log, ++x->lsn, &rec);
    int rc = rec.oom || log.oom ? qerr_set(e, "out of memory") : wal_append(x, &log, e);
    free(rec.b);
    free(log.b);
    if (rc) return -1;
    apply_rm(x, (size_t)d);
    return maybe_checkpoint(x, e);
}

static int file_crc(const char *path, uint64_t *size, uint32_t *crc, qerr *e) {
    char *b;
    size_t n;
    if (q_read_file(path, &b, &n, e)) return -1;
    *size = n;
    *crc = q_crc32c(0, b, n >= 4 ? n - 4 : n); /* not over the file's own CRC trailer: that would give the constant residue */
    free(b);
    return 0;
}

int index_checkpoint(rag_index *x, qerr *e) {
    if (!x->dir) return 0;
    if (x->wal_fd < 0) return qerr_set(e, "%s: index opened read-only", x->dir);
    manifest m;
    memset(&m, 0, sizeof m);
    m.gen = x->gen + 1;
    m.lsn = x->lsn;
    m.next_cid = x->next_cid;
    m.dim = x->dim;
    m.cfg = x->cfg;
    /* docs snapshot */
    wbuf w = {0};
    wb_put(&w, "QDOCS001", 8);
    wb_u64(&w, x->n_live);
    for (size_t i = 0; i < x->n_docs; i++) {
        const idoc *d = &x->docs[i];
        if (d->dead) continue;
        enc_add(&w, d, x->chunks + d->first, d->n, NULL, 0);
    }
    if (w.oom) { free(w.b); return qerr_set(e, "out of memory"); }
    wb_u32(&w, q_crc32c(0, w.b, w.n));
    mfile *f = &m.files[m.n_files++];
    snprintf(f->name, sizeof f->name, "docs-%llu.dat", (unsigned long long)m.gen);
    f->size = w.n;
    f->crc = q_crc32c(0, w.b, w.n - 4);
    char *p = path_join(x->dir, f->name);
    int rc = p ? q_write_file_atomic(p, w.b, w.n, e) : qerr_set(e, "out of memory");
    free(p);
    free(w.b);
    if (rc) return -1;
    if (x->hn) {
        f = &m.files[m.n_files++];
        snprintf(f->name, sizeof f->name, "hnsw-%llu.bin", (unsigned long long)m.gen);
        p = path_join(x->dir, f->name);
        if (!p) return qerr_set(e, "out of memory");
        rc = hnsw_save(x->hn, p, e);
        if (rc == 0) rc = file_crc(p, &f->size, &f->crc, e);
        free(p);
        if (rc) return -1;
    }
    {
        uint8_t *bb;
        size_t bn;
        if (bm25_save_buf(x->bm, &bb, &bn, e)) return -1;
        f = &m.files[m.n_files++];
        snprintf(f->name, sizeof f->name, "bm25-%llu.bin", (unsigned long long)m.gen);
        f->size = bn;
        f->crc = q_crc32c(0, bb, bn - 4);
        p = path_join(x->dir, f->name);
        rc = p ? q_write_file_atomic(p, bb, bn, e) : qerr_set(e, "out of memory");
        free(p);
        free(bb);
        if (rc) return -1;
    }
    if (manifest_write(x, &m, e)) return -1;
    x->gen = m.gen;
    x->ckpt_lsn = m.lsn;
    /* the log's records are all in the snapshot now */
    if (ftruncate(x->wal_fd, 0) != 0 || fsync(x->wal_fd) != 0) return qerr_set(e, "%s/wal.log: truncate: %s", x->dir, strerror(errno));
    x->wal_bytes = 0;
    /* remove snapshots of other generations */
    DIR *dd = opendir(x->dir);
    if (dd) {
        struct dirent *de;
        while ((de = readdir(dd))) {
            bool ours = false;
            for (int i = 0; i < m.n_files; i++) ours |= strcmp(de->d_name, m.files[i].name) == 0;
            if (!ours && (strncmp(de->d_name, "docs-", 5) == 0 || strncmp(de->d_name, "hnsw-", 5) == 0 ||
                          strncmp(de->d_name, "bm25-", 5) == 0)) {
                char *q = path_join(x->dir, de->d_name);
                if (q) unlink(q);
                free(q);
            }
        }
        closedir(dd);
    }
    return 0;
}

int index_close(rag_index *x, qerr *e) {
    int rc = 0;
    if (x->dir && x->wal_fd >= 0 && x->wal_bytes > 0) rc = index_checkpoint(x, e);
    index_free(x);
    return rc;
}

int index_verify(const char *dir, qerr *e) {
    rag_index *x;
    if (index_open(&x, dir, INDEX_READ, NULL, e)) return -1;
    int rc = 0;
    size_t live = 0;
    for (size_t i = 0; i < x->n_docs && rc == 0; i++) {
        const idoc *d = &x->docs[i];
        if (d->dead) continue;
        if (map_find(x, d->id) != (int64_t)i) rc = qerr_set(e, "%s: document %s: id map inconsistent", dir, d->id);
        for (size_t k = d->first; k < d->first + d->n && rc == 0; k++) {
            const ichunk *c = &x->chunks[k];
            if (c->doc != i || c->end - c->start != c->len || bm25_is_deleted(x->bm, (uint32_t)k))
                rc = qerr_set(e, "%s: chunk %llu of %s inconsistent", dir, (unsigned long long)c->cid, d->id);
            if (x->hn && !hnsw_contains(x->hn, c->cid))
                rc = qerr_set(e, "%s: chunk %llu of %s has no vector", dir, (unsigned long long)c->cid, d->id);
            live++;
        }
    }
    if (rc == 0 && live != x->n_live_chunks) rc = qerr_set(e, "%s: chunk count inconsistent", dir);
    if (rc == 0 && x->hn && hnsw_count(x->hn) != live) rc = qerr_set(e, "%s: %zu vectors for %zu chunks", dir, hnsw_count(x->hn), live);
    /* the BM25 index (loaded from its snapshot, plus the log) equals one
     * rebuilt from the stored chunks */
    if (rc == 0) {
        bm25_params bp;
        index_bm25_params(x, &bp);
        bm25 *rb = NULL;
        char *flat = NULL;
        size_t flat_cap = 0;
        uint32_t bid;
        rc = bm25_new(&rb, &bp, e);
        for (size_t i = 0; i < x->n_docs && rc == 0; i++) {
            const idoc *d = &x->docs[i];
            if (d->dead) continue;
            for (size_t k = d->first; k < d->first + d->n && rc == 0; k++)
                rc = bm25_add_chunk(x, rb, d->title, x->chunks[k].text, x->chunks[k].len, &flat, &flat_cap, &bid, e);
        }
        free(flat);
        uint8_t *b1 = NULL, *b2 = NULL;
        size_t n1 = 0, n2 = 0;
        if (rc == 0) rc = bm25_save_buf(x->bm, &b1, &n1, e);
        if (rc == 0) rc = bm25_save_buf(rb, &b2, &n2, e);
        if (rc == 0 && (n1 != n2 || memcmp(b1, b2, n1) != 0))
            rc = qerr_set(e, "%s: BM25 index differs from one rebuilt from the stored chunks", dir);
        free(b1);
        free(b2);
        bm25_free(rb);
    }
    index_free(x);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Search */
void search_opts_default(search_opts *o) {
    memset(o, 0, sizeof *o);
    o->k = 10;
    o->alpha = 0.5f;
    o->rrf_k = 60;
}

typedef struct vis {
    rag_index *x;
    const search_opts *o;
    double t;
    const uint64_t *bits; /* allowed documents from the posting lists, or NULL */
    bool exact;           /* bits is exact (else a superset: check each chunk) */
} vis;

static bool chunk_visible(rag_index *x, size_t slot, const search_opts *o) {
    const idoc *d = &x->docs[x->chunks[slot].doc];
    if (d->dead) return false;
    if (d->n_acl && !o->ignore_acl) {
        bool ok = false;
        for (int i = 0; i < d->n_acl && !ok; i++)
            for (int j = 0; j < o->n_principals && !ok; j++) ok = strcmp(d->acl[i], o->principals[j]) == 0;
        if (!ok) return false;
    }
    return !o->filter || filter_eval(o->filter, &d->meta, d->id);
}

/* With posting-list bits: one bit test (and the full check only when the
 * bits are a superset). */
static bool vis_chunk(const vis *v, size_t slot) {
    if (v->bits) {
        uint32_t d = v->x->chunks[slot].doc;
        if (!((v->bits[d >> 6] >> (d & 63)) & 1)) return false;
        if (v->exact) return !v->x->docs[d].dead;
    }
    return chunk_visible(v->x, slot, v->o);
}

/* The documents the caller may see under the filter, from the metadata
 * posting index (built here on first use): *bits (x->n_docs bits, deleted
 * documents not masked) and whether it is exact. */
static int allowed_docs(rag_index *x, const search_opts *o, uint64_t **bits, bool *exact, qerr *e) {
    if (!x->mi) {
        if (meta_index_new(&x->mi, e)) return -1;
        for (size_t i = 0; i < x->n_docs; i++) {
            const idoc *d = &x->docs[i];
            if (d->dead) continue;
            if (meta_index_add(x->mi, (uint32_t)i, &d->meta, (const char *const *)d->acl, d->n_acl, e)) {
                meta_index_free(x->mi);
                x->mi = NULL;
                return -1;
            }
        }
    }
    *bits = malloc(((x->n_docs + 63) / 64 + 1) * sizeof **bits);
    if (!*bits) return qerr_set(e, "out of memory");
    int rc = meta_index_allow(x->mi, o->filter, o->principals, o->n_principals, o->ignore_acl, x->n_docs, *bits, e);
    if (rc < 0) { free(*bits); *bits = NULL; return -1; }
    *exact = rc == 1;
    return 0;
}

/* Exact bits: a bit test, too cheap to time per call (the bitmap's
 * construction is the filter stage's time). */
static bool bm25_vis_bits(uint32_t id, void *ctx) { return vis_chunk(ctx, id); }

static bool bm25_vis(uint32_t id, void *ctx) {
    vis *v = ctx;
    double t0 = q_now();
    bool r = vis_chunk(v, id);
    v->t += q_now() - t0;
    return r;
}

static int64_t slot_of_cid(const rag_index *x, uint64_t cid) {
    size_t lo = 0, hi = x->n_chunks;
    while (lo < hi) {
        size_t m = lo + (hi - lo) / 2;
        if (x->chunks[m].cid < cid) lo = m + 1;
        else hi = m;
    }
    return lo < x->n_chunks && x->chunks[lo].cid == cid ? (int64_t)lo : -1;
}

static bool hnsw_vis_bits(uint64_t cid, void *ctx) {
    vis *v = ctx;
    int64_t s = slot_of_cid(v->x, cid);
    return s >= 0 && vis_chunk(v, (size_t)s);
}

static bool hnsw_vis(uint64_t cid, void *ctx) {
    vis *v = ctx;
    double t0 = q_now();
    int64_t s = slot_of_cid(v->x, cid);
    bool r = s >= 0 && vis_chunk(v, (size_t)s);
    v->t += q_now() - t0;
    return r;
}

typedef struct cand {
    size_t slot;
    float score;
} cand;

/* The chunk ids of the allowed documents as an HNSW allow-list, when they
 * are few enough (under 1/8 of the live chunks) that the planner will scan
 * them exactly; else *out stays NULL and the bitmap callback serves the
 * walk (a list costs O(allowed) to make, the walk's callback only what it
 * visits). */
static int vector_allow_list(rag_index *x, const vis *v, hnsw_allow **out, qerr *e) {
    *out = NULL;
    size_t w = (x->n_docs + 63) / 64, n = 0;
    for (size_t i = 0; i < w; i++)
        for (uint64_t b = v->bits[i]; b; b &= b - 1) {
            const idoc *d = &x->docs[i * 64 + (size_t)__builtin_ctzll(b)];
            if (!d->dead) n += d->n;
        }
    if (n * 8 > x->n_live_chunks) return 0;
    uint64_t *cids = malloc((n ? n : 1) * sizeof *cids);
    if (!cids) return qerr_set(e, "out of memory");
    size_t m = 0;
    for (size_t i = 0; i < w; i++)
        for (uint64_t b = v->bits[i]; b; b &= b - 1) {
            const idoc *d = &x->docs[i * 64 + (size_t)__builtin_ctzll(b)];
            if (d->dead) continue;
            for (size_t c = d->first; c < d->first + d->n; c++) cids[m++] = x->chunks[c].cid;
        }
    int rc = hnsw_allow_new(x->hn, cids, m, 0, out, e);
    free(cids);
    return rc;
}

static int cmp_cand(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->slot < y->slot ? -1 : x->slot > y->slot;
}

/* Top `depth` chunks of the mode. qvec: the query embedding (vector modes). */
static int search_depth(rag_index *x, const char *query, const float *qvec, const search_opts *o, int depth, cand **out,
                        int *n_out, double *t, qerr *e) {
    bool need_vis = o->filter || (x->n_acl_docs > 0 && !o->ignore_acl);
    vis v = {x, o, 0, NULL, false};
    uint64_t *dbits = NULL;
    if (need_vis && !o->filter_by_callback) {
        double tf = q_now();
        if (allowed_docs(x, o, &dbits, &v.exact, e)) return -1;
        v.bits = dbits;
        v.t += q_now() - tf;
    }
    cand *bl = NULL, *vl = NULL;
    int nb = 0, nv = 0;
    if (o->mode == SEARCH_BM25 || o->mode == SEARCH_HYBRID) {
        bm25_hit *h = malloc((size_t)depth * sizeof *h);
        bl = malloc((size_t)depth * sizeof *bl);
        if (!h || !bl) { free(h); free(bl); free(dbits); return qerr_set(e, "out of memory"); }
        double t0 = q_now();
        bm25_stats bs;
        bm25_filter_fn bf = !need_vis ? NULL : v.bits && v.exact ? bm25_vis_bits : bm25_vis;
        if (bm25_search(x->bm, x->an, query, strlen(query), depth, bf, &v, false, h, &nb, &bs, e)) {
            free(h); free(bl); free(dbits);
            return -1;
        }
        t[ST_ANALYZE] += bs.t_analyze;
        t[ST_BM25] += q_now() - t0 - bs.t_analyze - v.t;
        for (int i = 0; i < nb; i++) bl[i] = (cand){h[i].id, h[i].score};
        free(h);
    }
    if ((o->mode == SEARCH_VECTOR || o->mode == SEARCH_HYBRID) && x->hn && hnsw_count(x->hn) > 0) {
        uint64_t *ids = malloc((size_t)depth * sizeof *ids);
        float *dist = malloc((size_t)depth * sizeof *dist);
        vl = malloc((size_t)depth * sizeof *vl);
        if (!ids || !dist || !vl) { free(ids); free(dist); free(vl); free(bl); free(dbits); return qerr_set(e, "out of memory"); }
        hnsw_search_opts ho = {.ef = depth > 64 ? depth : 64,
                               .filter = !need_vis ? NULL : v.bits && v.exact ? hnsw_vis_bits : hnsw_vis,
                               .filter_ctx = &v};
        /* a restrictive filter: the allowed chunks as an allow-list (the
         * exact scan then visits only them); an exact one needs no callback */
        hnsw_allow *al = NULL;
        int rc = 0;
        double tf = q_now();
        if (dbits) rc = vector_allow_list(x, &v, &al, e);
        v.t += q_now() - tf;
        if (al) { ho.allow = al; if (v.exact) ho.filter = NULL; }
        double t0 = q_now();
        double tf0 = v.t;
        if (!rc) rc = hnsw_search(x->hn, qvec, depth, &ho, ids, dist, &nv, NULL, e);
        t[ST_HNSW] += q_now() - t0 - (v.t - tf0);
        hnsw_allow_free(al);
        if (rc) { free(ids); free(dist); free(vl); free(bl); free(dbits); return -1; }
        int k = 0;
        for (int i = 0; i < nv; i++) {
            int64_t s = slot_of_cid(x, ids[i]);
            if (s >= 0) vl[k++] = (cand){(size_t)s, 1.0f - dist[i]};
        }
        nv = k;
        free(ids);
        free(dist);
    }
    t[ST_FILTER] += v.t;
    free(dbits);
    double t0 = q_now();
    cand *res;
    int nr;
    if (o->mode == SEARCH_BM25) { res = bl; nr = nb; bl = NULL; }
    else if (o->mode == SEARCH_VECTOR) { res = vl; nr = nv; vl = NULL; }
    else {
        res = malloc(((size_t)nb + (size_t)nv + 1) * sizeof *res);
        if (!res) { free(bl); free(vl); return qerr_set(e, "out of memory"); }
        nr = 0;
        float bmin = 0, bmax = 0, vmin = 0, vmax = 0;
        for (int i = 0; i < nb; i++) { if (!i || bl[i].score < bmin) bmin = bl[i].score; if (!i || bl[i].score > bmax) bmax = bl[i].score; }
        for (int i = 0; i < nv; i++) { if (!i || vl[i].score < vmin) vmin = vl[i].score; if (!i || vl[i].score > vmax) vmax = vl[i].score; }
        for (int l = 0; l < 2; l++) {
            cand *L = l ? vl : bl;
            int n = l ? nv : nb;
            float mn = l ? vmin : bmin, mx = l ? vmax : bmax;
            float w = l ? 1 - o->alpha : o->alpha;
            for (int i = 0; i < n; i++) {
                float s = o->fusion == FUSION_RRF ? 1.0f / (float)(o->rrf_k + i + 1)
                                                  : w * (mx > mn ? (L[i].score - mn) / (mx - mn) : 1.0f);
                int j = 0;
                while (j < nr && res[j].slot != L[i].slot) j++;
                if (j == nr) res[nr++] = (cand){L[i].slot, 0};
                res[j].score += s;
            }
        }
        qsort(res, (size_t)nr, sizeof *res, cmp_cand);
    }
    t[ST_FUSE] += q_now() - t0;
    free(bl);
    free(vl);
    *out = res;
    *n_out = nr;
    return 0;
}

static int embed_query(rag_index *x, const char *q, float **out, double *t, qerr *e) {
    if (!x->cfg.embed_model[0]) return qerr_set(e, "this index has no embedding model (vector search needs one: index add --embed-model M)");
    if (index_load_model(x, e)) return -1;
    float *v = malloc((size_t)x->bert->n_embd * sizeof *v);
    if (!v) return qerr_set(e, "out of memory");
    double t0 = q_now();
    const char *titles[1] = {NULL}, *texts[1] = {q};
    size_t lens[1] = {strlen(q)};
    if (embed_texts(x, titles, texts, lens, 1, v, e)) { free(v); return -1; }
    t[ST_EMBED] += q_now() - t0;
    *out = v;
    return 0;
}

int index_search(rag_index *x, const char *query, const search_opts *o, search_result *r, qerr *e) {
    memset(r, 0, sizeof *r);
    if (o->k <= 0) return qerr_set(e, "k must be positive");
    if (o->mode < SEARCH_BM25 || o->mode > SEARCH_HYBRID) return qerr_set(e, "unknown search mode %d", o->mode);
    float *qvec = NULL;
    if (o->mode != SEARCH_BM25 && embed_query(x, query, &qvec, r->t, e)) return -1;
    int depth = o->mode == SEARCH_HYBRID ? (o->depth > 0 ? o->depth : (o->k > 100 ? o->k : 100)) : o->k;
    if (o->group_by_doc) depth = depth * 2 > 16 ? depth * 2 : 16;
    cand *c = NULL;
    int nc = 0;
    for (;;) {
        if (search_depth(x, query, qvec, o, depth, &c, &nc, r->t, e)) { free(qvec); return -1; }
        if (!o->group_by_doc) break;
        /* keep each document's best chunk */
        int k = 0;
        for (int i = 0; i < nc; i++) {
            bool dup = false;
            for (int j = 0; j < k && !dup; j++) dup = x->chunks[c[j].slot].doc == x->chunks[c[i].slot].doc;
            if (!dup) c[k++] = c[i];
        }
        bool exhausted = nc < depth || (size_t)depth >= x->n_live_chunks;
        nc = k;
        if (nc >= o->k || exhausted) break;
        free(c);
        c = NULL;
        depth *= 2;
    }
    free(qvec);
    if (o->rerank && nc > 0) {
        double t0 = q_now();
        const char **texts = malloc((size_t)nc * sizeof *texts);
        float *sc = malloc((size_t)nc * sizeof *sc);
        if (!texts || !sc) { free(texts); free(sc); free(c); return qerr_set(e, "out of memory"); }
        for (int i = 0; i < nc; i++) texts[i] = x->chunks[c[i].slot].text;
        int rc = o->rerank(o->rerank_ctx, query, texts, nc, sc, e);
        if (rc == 0) {
            for (int i = 0; i < nc; i++) c[i].score = sc[i];
            qsort(c, (size_t)nc, sizeof *c, cmp_cand);
        }
        free(texts);
        free(sc);
        r->t[ST_RERANK] += q_now() - t0;
        if (rc) { free(c); return qerr_wrap(e, "rerank"); }
    }
    int n = nc < o->k ? nc : o->k;
    r->hits = calloc((size_t)n + 1, sizeof *r->hits);
    if (!r->hits) { free(c); return qerr_set(e, "out of memory"); }
    for (int i = 0; i < n; i++) {
        const ichunk *ch = &x->chunks[c[i].slot];
        r->hits[i] = (search_hit){x->docs[ch->doc].id, ch->text, ch->len, ch->start, ch->end, c[i].score, ch->cid};
    }
    r->n = n;
    free(c);
    return 0;
}

void search_result_free(search_result *r) {
    free(r->hits);
    r->hits = NULL;
    r->n = 0;
}
