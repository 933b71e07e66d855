/* unicode.h — Unicode General_Category data for the regex engine's \p{..}.
 * Internal to sgr/. */
#ifndef QUIRE_SGR_UNICODE_H
#define QUIRE_SGR_UNICODE_H

#include <stddef.h>
#include <stdint.h>

#define UNICODE_GC_COUNT 29

typedef struct unicode_gc_range {
    uint32_t lo, hi;
    uint8_t gc;           /* index into unicode_gc_names */
} unicode_gc_range;

extern const char *const unicode_gc_names[UNICODE_GC_COUNT];
extern const unicode_gc_range unicode_gc_table[]; /* sorted, assigned code points only */
extern const size_t unicode_gc_table_len;

#endif
