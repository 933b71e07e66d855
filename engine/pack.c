/* pack.c — weights repacked once at load for the wide AVX-512 kernels.
 *
 * A packed matrix stores its rows in groups of Q_PACK_ROWS (16): within a
 * group, block b of all 16 rows is interleaved so that one 512-bit vector
 * holds 4 consecutive bytes of each row (one int32 lane per row). One
 * vpdpbusd then feeds 16 rows, and a group is one sequential stream (the
 * decode kernels need no per-row prefetching). Layout of a group of a
 * matrix with nb blocks per row:
 *   Q4_0: nb x 256 bytes — vector j (j < 4) of block b, lane r = qs[4j..4j+3]
 *         of row r (low nibbles: elements 4j.., high: 16+4j..), then
 *         nb x 32 bytes — the 16 rows' fp16 scales of block b.
 *   Q8_0: nb x 512 bytes — vector g (g < 8), lane r = qs[4g..4g+3] of row r
 *         with the sign bit flipped (q + 128, unsigned), then the scales.
 * Rows past n_rows in the last group are zero and their outputs dropped.
 * The bytes per row equal the GGUF encoding's, so decode reads no more.
 *
 *   Q4_K: per super-block (256 elements), 2368 bytes: 2048 bytes of qs —
 *         vector 8p + j (p < 4, j < 8), lane r = qs[32p + 4j..+3] of row r
 *         (low nibbles: sub-block 2p, high: 2p + 1) —, 128 bytes of 6-bit
 *         scales (byte 16s + r: scale of sub-block s, row r), 128 of mins
 *         (same order), then the 16 fp16 d and the 16 fp16 dmin.
 *   Q6_K: per super-block, 3360 bytes: 2048 bytes of ql — vector
 *         16h + 8m + j (h, m < 2, j < 8), lane r = ql[64h + 32m + 4j..+3] —,
 *         1024 of qh — vector 8h + j, lane r = qh[32h + 4j..+3] —, 256 of
 *         int8 scales (byte 16s + r), the 16 fp16 d.
 * The packed kernels take activations as Q8S rows: per 32-element block a
 * f32 scale (the reference Q8_0 fp16 scale, converted exactly), the int32
 * -sum(q), and the 32 int8 q — the offset corrections (-8*sum for Q4_0's
 * nibbles, -128*sum for Q8_0's flipped bytes) start each block's integer sum,
 * so every output equals the unpacked kernels' bit for bit. The K-quants
 * take Q8KS rows: per super-block the f32 d of the reference Q8_K rounding,
 * 8 int16 sums of 32 q, 16 int16 sums of 16 q, 256 int8 q (Q8KS_BLOCK
 * bytes); the kernels compute
 * the scalar reference's integers and float expression exactly.
 *
 * QUIRE_REPACK=0|off disables repacking (weights used in place from the
 * mmap), 1|on (the default) enables it where the ISA has packed kernels. */
#include "engine/engine.h"
#include "engine/kernels.h"

#include <stdlib.h>
#include <strings.h>
#include <sys/mman.h>

struct q_packed {
    int wtype, isa;
    int64_t n_rows, n_cols;
    size_t group_bytes, bytes;
    uint8_t *data;
    bool own; /* data from q_pack's own allocation, not a caller's arena */
};

int q_repack_mode(qerr *e) {
    const char *s = getenv("QUIRE_REPACK");
    if (!s || !*s || strcmp(s, "1") == 0 || strcasecmp(s, "on") == 0) return 1;
    if (strcmp(s, "0") == 0 || strcasecmp(s, "off") == 0) return 0;
    return qerr_set(e, "QUIRE_REPACK=%s: expected 0, 1, on or off", s);
}

static size_t group_bytes(int wtype, int64_t n_cols) {
    switch (wtype) {
    case QT_Q4_0: return (size_t)(n_cols / 32) * (256 + 32);
    case QT_Q8_0: return (size_t)(n_cols / 32) * (512 + 32);
    case QT_Q4_K: return (size_t)(n_cols / QK_K) * Q4K_PACKED_SB;
    case QT_Q6_K: return (size_t)(n_cols / QK_K) * Q6K_PACKED_SB;
    default: return 0;
    }
}

bool q_pack_supported(int wtype, int isa) {
    return isa == Q_ISA_AVX512 && Q_HAVE_PACKED && (wtype == QT_Q4_0 || wtype == QT_Q8_0 || wtype == QT_Q4_K ||
                                                     wtype == QT_Q6_K);
}

int q_packed_act(const q_packed *p) { return p->wtype == QT_Q4_K || p->wtype == QT_Q6_K ? Q_ACT_Q8KS : Q_ACT_Q8S; }

/* One group of 16 rows (nr of them real) of Q4_K. */
/* One group of 16 rows (nr of them real) of Q6_K. */
static void pack_q6_K_group(uint8_t *dst, const uint8_t *src, size_t rs, int nr, int64_t nsb) {
    for (int r = 0; r < nr; r++)
        for (int64_t b = 0; b < nsb; b++) {
            block_q6_K B;
            memcpy(&B, src + (size_t)r * rs + (size_t)b * sizeof B, sizeof B);
            uint8_t *o = dst + (size_t)b * Q6K_PACKED_SB;
            for (int v = 0; v < 32; v++) memcpy(o + 64 * v + 4 * r, B.ql + 4 * v, 4);
            for (int v = 0; v < 16; v++) memcpy(o + 2048 + 64 * v + 4 * r, B.qh + 4 * v, 4);
            for (int s = 0; s < 16; s++) o[3072 + 16 * s + r] = (uint8_t)B.scales[s];
            memcpy(o + 3328 + 2 * r, &B.d, 2);
        }
}

static void pack_q4_K_group(uint8_t *dst, const uint8_t *src, size_t rs, int nr, int64_t nsb) {
    for (int r = 0; r < nr; r++)
        for (int64_t b = 0; b < nsb; b++) {
            block_q4_K B;
            memcpy(&B, src + (size_t)r * rs + (size_t)b * sizeof B, sizeof B);
            uint8_t *o = dst + (size_t)b * Q4K_PACKED_SB;
            for (int v = 0; v < 32; v++) memcpy(o + 64 * v + 4 * r, B.qs + 4 * v, 4);
            for (int j = 0; j < 8; j++) {
                int sc, m;
                scale_min_k4(j, B.scales, &sc, &m);
                o[2048 + 16 * j + r] = (uint8_t)sc;
                o[2048 + 128 + 16 * j + r] = (uint8_t)m;
            }
            memcpy(o + 2304 + 2 * r, &B.d, 2);
            memcpy(o + 2336 + 2 * r, &B.dmin, 2);
        }
}

static bool pack_shape_ok(int wtype, int64_t n_rows, int64_t n_cols, qerr *e) {
    int isa = q_isa_get();
    if (!q_pack_supported(wtype, isa)) {
        qerr_set(e, "no packed kernels for %s under %s", qtype_get(wtype) ? qtype_get(wtype)->name : "?", q_isa_name(isa));
        return false;
    }
    int64_t blk = qtype_get(wtype)->blck;
    if (n_rows < 1 || n_cols < blk || n_cols % blk) {
        qerr_set(e, "cannot pack a %lld x %lld matrix", (long long)n_rows, (long long)n_cols);
        return false;
    }
    return true;
}

size_t q_pack_size(int wtype, int64_t n_rows, int64_t n_cols) {
    if (!pack_shape_ok(wtype, n_rows, n_cols, NULL)) return 0;
    int64_t ng = (n_rows + Q_PACK_ROWS - 1) / Q_PACK_ROWS;
    return (group_bytes(wtype, n_cols) * (size_t)ng + 63) / 64 * 64;
}

/* Memory on 2 MiB boundaries with huge pages for its whole 2 MiB pages (a
 * hint; a huge tail page would be backed in full, up to 2 MiB of RSS for
 * nothing): decode streams every weight byte once per token, and 4 KiB
 * pages cost a TLB miss (in a VM, a two-level walk) every 4 KiB. */
void *q_huge_alloc(size_t bytes) {
    size_t align = (size_t)2 << 20;
    void *mem = NULL;
    if (bytes == 0 || posix_memalign(&mem, align, bytes)) return NULL;
#if defined(MADV_HUGEPAGE)
    if (bytes >= align) (void)madvise(mem, bytes / align * align, MADV_HUGEPAGE);
#endif
    return mem;
}

static q_packed *pack_into(const void *W, int wtype, int64_t n_rows, int64_t n_cols, uint8_t *mem, bool own, qerr *e) {
    int64_t nb = n_cols / 32, ng = (n_rows + Q_PACK_ROWS - 1) / Q_PACK_ROWS;
    q_packed *p = calloc(1, sizeof *p);
    if (!p) {
        if (own) free(mem);
        qerr_set(e, "out of memory");
        return NULL;
    }
    p->wtype = wtype;
    p->isa = q_isa_get();
    p->n_rows = n_rows;
    p->n_cols = n_cols;
    p->group_bytes = group_bytes(wtype, n_cols);
    p->bytes = p->group_bytes * (size_t)ng;
    p->data = mem;
    p->own = own;
    size_t alloc = q_pack_size(wtype, n_rows, n_cols);
    memset(p->data, 0, alloc);
    const uint8_t *src = W;
    size_t rs = qtype_row_size(wtype, n_cols);
    bool q8 = wtype == QT_Q8_0;
    size_t bs = q8 ? sizeof(block_q8_0) : sizeof(block_q4_0), vb = q8 ? 512 : 256;
    bool kq = wtype == QT_Q4_K || wtype == QT_Q6_K;
    for (int64_t g = 0; g < ng && kq; g++) {
        int nr = n_rows - g * Q_PACK_ROWS < Q_PACK_ROWS ? (int)(n_rows - g * Q_PACK_ROWS) : Q_PACK_ROWS;
        uint8_t *dst = p->data + (size_t)g * p->group_bytes;
        const uint8_t *rows = src + (size_t)(g * Q_PACK_ROWS) * rs;
        if (wtype == QT_Q4_K) pack_q4_K_group(dst, rows, rs, nr, n_cols / QK_K);
        else pack_q6_K_group(dst, rows, rs, nr, n_cols / QK_K);
    }
    for (int64_t g = 0; g < ng && !kq; g++) {
        uint8_t *dst = p->data + (size_t)g * p->group_bytes, *sc = dst + (size_t)nb * vb;
        for (int r = 0; r < Q_PACK_ROWS && g * Q_PACK_ROWS + r < n_rows; r++) {
            const uint8_t *row = src + (size_t)(g * Q_PACK_ROWS + r) * rs;
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *blk = row + (size_t)b * bs;
                memcpy(sc + (size_t)b * 32 + 2 * r, blk, 2);
                for (size_t v = 0; v < vb / 64; v++) {
                    uint32_t word;
                    memcpy(&word, blk + 2 + 4 * v, 4);
                    if (q8) word ^= 0x80808080u;
                    memcpy(dst + (size_t)b * vb + 64 * v + 4 * (size_t)r, &word, 4);
                }
            }
        }
    }
    return p;
}

q_packed *q_pack(const void *W, int wtype, int64_t n_rows, int64_t n_cols, qerr *e) {
    if (!pack_shape_ok(wtype, n_rows, n_cols, e)) return NULL;
    size_t alloc = q_pack_size(wtype, n_rows, n_cols);
    uint8_t *mem = alloc >= ((size_t)4 << 20) ? q_huge_alloc(alloc) : NULL;
    if (!mem && posix_memalign((void **)&mem, 64, alloc)) mem = NULL;
    if (!mem) {
        qerr_set(e, "out of memory for %zu bytes of packed weights", alloc);
        return NULL;
    }
    return pack_into(W, wtype, n_rows, n_cols, mem, true, e);
}

q_packed *q_pack_into(const void *W, int wtype, int64_t n_rows, int64_t n_cols, void *mem, qerr *e) {
    if (!pack_shape_ok(wtype, n_rows, n_cols, e)) return NULL;
    if (!mem || ((uintptr_t)mem & 63)) {
        qerr_set(e, "q_pack_into: memory not 64-byte aligned");
        return NULL;
    }
    return pack_into(W, wtype, n_rows, n_cols, mem, false, e);
}

void q_packed_free(q_packed *p) {
    if (!p) return;
    if (p->own) free(p->data);
    free(p);
}

size_t q_packed_bytes(const q_packed *p) { return p ? p->bytes : 0; }
int q_packed_isa(const q_packed *p) { return p ? p->isa : -1; }
int q_packed_type(const q_packed *p) { return p ? p->wtype : -1; }
int64_t q_packed_rows(const q_packed *p) { return p ? p->n_rows : 0; }
int64_t q_packed_cols(const q_packed *p) { return p ? p->n_cols : 0; }
const void *q_packed_rows_at(const q_packed *p, int64_t row0, size_t *bytes_to_end) {
    size_t off = (size_t)(row0 / Q_PACK_ROWS) * p->group_bytes;
    *bytes_to_end = off < p->bytes ? p->bytes - off : 0;
    return off < p->bytes ? p->data + off : NULL;
}

/* Q8S activations: the reference Q8_0 rounding, then the sums. */
static void q8s_from_float(const float *x, void *y, int64_t n) {
    const qtype_traits *t = qtype_get(QT_Q8_0);
    uint8_t *p = y;
    for (int64_t b = 0; b < n / 32; b++, p += Q8S_BLOCK) {
        block_q8_0 blk;
        t->from_float(x + b * 32, &blk, 32);
        float d = q_fp16_to_f32(blk.d);
        int32_t s = 0;
        for (int j = 0; j < 32; j++) s += blk.qs[j];
        s = -s;
        memcpy(p, &d, 4);
        memcpy(p + 4, &s, 4);
        memcpy(p + 8, blk.qs, 32);
    }
}

size_t q_act_row_size(int fmt, int64_t n) {
    return fmt == Q_ACT_Q8KS ? (size_t)(n / QK_K) * Q8KS_BLOCK : (size_t)(n / 32) * Q8S_BLOCK;
}

/* Q8KS activations: the reference Q8_K rounding, then sums per 32. */
static void q8ks_from_float(const float *x, void *y, int64_t n) {
    const qtype_traits *t = qtype_get(QT_Q8_K);
    uint8_t *p = y;
    for (int64_t b = 0; b < n / QK_K; b++, p += Q8KS_BLOCK) {
        block_q8_K blk;
        t->from_float(x + b * QK_K, &blk, QK_K);
        int16_t s32[8];
        for (int j = 0; j < 8; j++) s32[j] = (int16_t)(blk.bsums[2 * j] + blk.bsums[2 * j + 1]);
        memcpy(p, &blk.d, 4);
        memcpy(p + 4, s32, 16);
        memcpy(p + 20, blk.bsums, 32);
        memcpy(p + 52, blk.qs, QK_K);
    }
}

void q_act_from_float(int fmt, const float *x, void *y, int64_t n) {
#if Q_HAVE_PACKED
    if (q_isa_get() == Q_ISA_AVX512) {
        if (fmt == Q_ACT_Q8KS) q8ks_from_float_avx512(x, y, n);
        else q8s_from_float_avx512(x, y, n);
        return;
    }
#endif
    if (fmt == Q_ACT_Q8KS) q8ks_from_float(x, y, n);
    else q8s_from_float(x, y, n);
}

/* Rows [g0, g1) groups x all nc columns of a packed matrix. */
void q_packed_gemm(const q_packed *p, int64_t g0, int64_t g1, const void *x, size_t xrs, int nc, float *y, size_t ys) {
#if Q_HAVE_PACKED
    size_t nb = (size_t)(p->n_cols / 32);
    for (int64_t g = g0; g < g1; g++) {
        int nr = p->n_rows - g * Q_PACK_ROWS < Q_PACK_ROWS ? (int)(p->n_rows - g * Q_PACK_ROWS) : Q_PACK_ROWS;
        const uint8_t *w = p->data + (size_t)g * p->group_bytes;
        float *yg = y + g * Q_PACK_ROWS;
        if (p->wtype == QT_Q4_0) q4_0_packed_avx512(nb, w, nr, x, xrs, nc, yg, ys);
        else if (p->wtype == QT_Q8_0) q8_0_packed_avx512(nb, w, nr, x, xrs, nc, yg, ys);
        else if (p->wtype == QT_Q4_K) q4_K_packed_avx512(nb / 8, w, nr, x, xrs, nc, yg, ys);
        else q6_K_packed_avx512(nb / 8, w, nr, x, xrs, nc, yg, ys);
    }
#else
    (void)p, (void)g0, (void)g1, (void)x, (void)xrs, (void)nc, (void)y, (void)ys;
#endif
}
