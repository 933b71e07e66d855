/* sbuf.c — growable byte string with JSON string escaping. */
#include "server/server_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) { b->oom = true; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) { sb_put(b, tmp, (size_t)n); return; }
    char *big = malloc((size_t)n + 1);
    if (!big) { b->oom = true; return; }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_put(b, big, (size_t)n);
    free(big);
}

/* Escapes control characters and quotes; invalid UTF-8 bytes (a model can
 * emit them) become U+FFFD so the document is always valid JSON. */
void sb_json_str(sbuf *b, const char *s, size_t n) {
    sb_put(b, "\"", 1);
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            switch (c) {
            case '"': sb_put(b, "\\\"", 2); break;
            case '\\': sb_put(b, "\\\\", 2); break;
            case '\n': sb_put(b, "\\n", 2); break;
            case '\r': sb_put(b, "\\r", 2); break;
            case '\t': sb_put(b, "\\t", 2); break;
            default:
                if (c < 0x20 || c == 0x7f) sb_printf(b, "\\u%04x", c);
                else sb_put(b, (const char *)&c, 1);
            }
            i++;
            continue;
        }
        int len = (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = len > 0 && i + (size_t)len <= n;
        uint32_t cp = ok ? (c & (0x7f >> len)) : 0;
        for (int k = 1; ok && k < len; k++) {
            unsigned char cc = (unsigned char)s[i + (size_t)k];
            if ((cc & 0xc0) != 0x80) ok = false;
            cp = (cp << 6) | (cc & 0x3f);
        }
        if (ok && ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
                   (cp >= 0xd800 && cp <= 0xdfff)))
            ok = false;
        if (ok) {
            sb_put(b, s + i, (size_t)len);
            i += (size_t)len;
        } else {
            sb_put(b, "\xef\xbf\xbd", 3);
            i++;
        }
    }
    sb_put(b, "\"", 1);
}

void sb_free(sbuf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}
