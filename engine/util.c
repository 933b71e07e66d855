/* util.c — errors, clock, whole-file I/O, half-float conversion. */
#include "engine/engine.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int qerr_set(qerr *e, const char *fmt, ...) {
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int qerr_wrap(qerr *e, const char *fmt, ...) {
    if (e) {
        char prefix[256], old[sizeof e->msg];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof prefix, fmt, ap);
        va_end(ap);
        memcpy(old, e->msg, sizeof old);
        size_t pl = strlen(prefix);
        if (pl > sizeof e->msg - 3) pl = sizeof e->msg - 3;
        memcpy(e->msg, prefix, pl);
        memcpy(e->msg + pl, ": ", 2);
        size_t ol = strnlen(old, sizeof old - 1);
        if (ol > sizeof e->msg - pl - 3) ol = sizeof e->msg - pl - 3;
        memcpy(e->msg + pl + 2, old, ol);
        e->msg[pl + 2 + ol] = 0;
    }
    return -1;
}

double q_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int q_read_file(const char *path, char **out, size_t *len, qerr *e) {
    FILE *f = fopen(path, "rb");
    if (!f) return qerr_set(e, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) { fclose(f); return qerr_set(e, "%s: out of memory", path); }
    for (;;) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        if (cap > ((size_t)1 << 40)) { free(buf); fclose(f); return qerr_set(e, "%s: file too large", path); }
        char *nb = realloc(buf, cap * 2 + 1);
        if (!nb) { free(buf); fclose(f); return qerr_set(e, "%s: out of memory", path); }
        buf = nb;
        cap *= 2;
    }
    if (ferror(f)) { free(buf); fclose(f); return qerr_set(e, "%s: read error", path); }
    fclose(f);
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return 0;
}

int q_atomic_open(q_atomic_file *f, const char *path, qerr *e) {
    memset(f, 0, sizeof *f);
    f->fd = -1;
    size_t pl = strlen(path);
    f->path = strdup(path);
    f->tmp = malloc(pl + 32);
    if (!f->path || !f->tmp) { q_atomic_abort(f); return qerr_set(e, "out of memory"); }
    snprintf(f->tmp, pl + 32, "%s.tmp.%ld", path, (long)getpid());
    f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (f->fd < 0) {
        qerr_set(e, "%s: %s", f->tmp, strerror(errno));
        free(f->tmp); f->tmp = NULL; /* nothing to unlink */
        q_atomic_abort(f);
        return -1;
    }
    return 0;
}

int q_write_all(int fd, const void *data, size_t len, qerr *e) {
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return qerr_set(e, "write: %s", strerror(errno));
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

void q_atomic_abort(q_atomic_file *f) {
    if (f->fd >= 0) close(f->fd);
    if (f->tmp) unlink(f->tmp);
    free(f->tmp);
    free(f->path);
    memset(f, 0, sizeof *f);
    f->fd = -1;
}

int q_atomic_commit(q_atomic_file *f, qerr *e) {
    if (fsync(f->fd) != 0) { qerr_set(e, "%s: fsync: %s", f->tmp, strerror(errno)); q_atomic_abort(f); return -1; }
    int rc = close(f->fd);
    f->fd = -1;
    if (rc != 0) { qerr_set(e, "%s: close: %s", f->tmp, strerror(errno)); q_atomic_abort(f); return -1; }
    if (rename(f->tmp, f->path) != 0) { qerr_set(e, "%s: rename: %s", f->path, strerror(errno)); q_atomic_abort(f); return -1; }
    /* Make the rename itself durable. */
    char *slash = strrchr(f->path, '/');
    const char *d = ".";
    if (slash) { if (slash == f->path) slash[1] = 0; else *slash = 0; d = f->path; }
    int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) { fsync(dfd); close(dfd); }
    free(f->tmp);
    free(f->path);
    memset(f, 0, sizeof *f);
    f->fd = -1;
    return 0;
}

int q_write_file_atomic(const char *path, const void *data, size_t len, qerr *e) {
    q_atomic_file f;
    if (q_atomic_open(&f, path, e)) return -1;
    if (q_write_all(f.fd, data, len, e)) { qerr_wrap(e, "%s", path); q_atomic_abort(&f); return -1; }
    return q_atomic_commit(&f, e);
}

/* IEEE binary16 <-> binary32. Subnormals, infinities and NaNs included. */
float q_fp16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: renormalize */
            int sh = 0;
            while (!(man & 0x400)) { man <<= 1; sh++; }
            man &= 0x3ff;
            u = sign | ((uint32_t)(127 - 15 + 1 - sh) << 23) | (man << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000 | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    return q_f32_from_bits(u);
}

uint16_t q_f32_to_fp16(float f) {
    uint32_t u = q_bits_from_f32(f);
    uint32_t sign = (u >> 16) & 0x8000;
    uint32_t a = u & 0x7fffffff;
    if (a > 0x7f800000) return (uint16_t)(sign | 0x7e00); /* NaN */
    if (a >= 0x477ff000) return (uint16_t)(sign | 0x7c00); /* overflow to inf (>= 65520) */
    if (a < 0x38800000) { /* result is subnormal or zero */
        if (a < 0x33000000) return (uint16_t)sign; /* below half the smallest subnormal */
        uint32_t exp = a >> 23;
        uint32_t man = (a & 0x7fffff) | 0x800000;
        /* value = man * 2^(exp-150) and the subnormal unit is 2^-24, so
         * the half's mantissa is man >> (126 - exp), rounded to even. */
        uint32_t shift = 126 - exp;
        uint32_t r = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    /* normal: rebias exponent, round mantissa to nearest even */
    uint32_t r = a - 0x38000000; /* exponent 127 -> 15 */
    r = (r + 0xfff + ((r >> 13) & 1)) >> 13;
    return (uint16_t)(sign | r);
}
