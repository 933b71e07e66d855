/* grammar_cpset.c — a set of code point ranges as a grammar expression: the
 * ASCII part as one byte class, the rest as UTF-8 byte sequences. */
#include <stdlib.h>

#include "sgr/gram_front.h"

static int cp_cmp(const void *a, const void *b) {
    const cprange *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

sgr_expr gb_cp_set(sgr_gb *b, cprange *r, size_t nr, bool negate) {
    if (nr > 1) qsort(r, nr, sizeof *r, cp_cmp);
    size_t m = 0;
    for (size_t i = 0; i < nr; i++) {
        if (m && r[i].lo <= r[m - 1].hi + 1) { if (r[i].hi > r[m - 1].hi) r[m - 1].hi = r[i].hi; }
        else r[m++] = r[i];
    }
    nr = m;
    cprange *u = malloc((nr + 1) * sizeof *u);
    sgr_expr *parts = malloc((nr + 2) * sizeof *parts);
    if (!u || !parts) { free(u); free(parts); return sgr_gb_fail(b, "out of memory building a grammar"); }
    size_t nu = 0;
    if (negate) {
        uint32_t next = 0;
        for (size_t i = 0; i < nr; i++) {
            if (r[i].lo > next) u[nu++] = (cprange){next, r[i].lo - 1};
            next = r[i].hi + 1;
        }
        if (next <= 0x10FFFF) u[nu++] = (cprange){next, 0x10FFFF};
    } else {
        for (size_t i = 0; i < nr; i++) u[nu++] = r[i];
    }
    uint8_t set[32] = {0};
    bool any_ascii = false;
    size_t np = 0;
    for (size_t i = 0; i < nu; i++) {
        uint32_t lo = u[i].lo, hi = u[i].hi > 0x10FFFF ? 0x10FFFF : u[i].hi;
        if (lo > hi) continue;
        for (uint32_t c = lo; c <= hi && c < 0x80; c++) set[c >> 3] |= (uint8_t)(1u << (c & 7)), any_ascii = true;
        if (hi >= 0x80) {
            if (lo < 0x80) lo = 0x80;
            if (lo >= 0xD800 && hi <= 0xDFFF) continue; /* only surrogates */
            parts[np++] = sgr_gb_cp_range(b, lo, hi);
        }
    }
    if (any_ascii) parts[np++] = sgr_gb_class(b, set);
    sgr_expr x = sgr_gb_alt(b, parts, np);
    free(parts);
    free(u);
    return x;
}
