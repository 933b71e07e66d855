/* analyzer.c — Anserini's default English analyzer, as Lucene builds it:
 * StandardTokenizer (UAX#29 word boundaries) -> EnglishPossessiveFilter ->
 * LowerCaseFilter -> StopFilter (EnglishAnalyzer's 33 stop words) ->
 * PorterStemFilter. Word splitting follows the UAX#29 rules that matter for
 * text search: letters and digits join (WB5, WB8-WB10), marks and format
 * characters attach (WB4), a MidLetter/MidNumLet/apostrophe between letters
 * joins them (WB6/7: don't, e.g), a MidNum/MidNumLet between digits joins
 * them (WB11/12: 3.5, 1,000), underscores join (WB13a/b); Han and Hiragana
 * characters are one token each, Katakana runs one token. Tokens longer
 * than 255 characters are split, as StandardTokenizer does. */
#include <stdlib.h>
#include <string.h>

#include <libstemmer.h>
#include <utf8proc.h>

#include "rag.h"

#define MAX_TOKEN_CHARS 255

struct analyzer {
    struct sb_stemmer *stem; /* only with snowball_porter */
    analyzer_opts o;
    char *buf; /* lower-cased term */
    size_t cap;
    int32_t *cp; /* the same as code points, for the Porter stemmer */
};

static const char *const stop_words[] = {"a",    "an",   "and",   "are",   "as",   "at",    "be",   "but",  "by",
                                         "for",  "if",   "in",    "into",  "is",   "it",    "no",   "not",  "of",
                                         "on",   "or",   "such",  "that",  "the",  "their", "then", "there", "these",
                                         "they", "this", "to",    "was",   "will", "with"};

bool analyzer_is_stopword(const char *w, size_t len) {
    if (len == 0 || len > 5) return false; /* the longest stop words have 5 letters */
    for (size_t i = 0; i < sizeof stop_words / sizeof *stop_words; i++)
        if (stop_words[i][0] == w[0] && strlen(stop_words[i]) == len && memcmp(stop_words[i], w, len) == 0) return true;
    return false;
}

int analyzer_new(analyzer **out, const analyzer_opts *o, qerr *e) {
    analyzer *a = calloc(1, sizeof *a);
    if (!a) return qerr_set(e, "out of memory");
    if (o) a->o = *o;
    if (!a->o.no_stem && a->o.snowball_porter) {
        a->stem = sb_stemmer_new("porter", "UTF_8");
        if (!a->stem) { free(a); return qerr_set(e, "libstemmer: no porter stemmer"); }
    }
    a->cap = 4 * MAX_TOKEN_CHARS + 16;
    a->buf = malloc(a->cap);
    a->cp = malloc((MAX_TOKEN_CHARS + 16) * sizeof *a->cp);
    if (!a->buf || !a->cp) { analyzer_free(a); return qerr_set(e, "out of memory"); }
    *out = a;
    return 0;
}

void analyzer_free(analyzer *a) {
    if (!a) return;
    if (a->stem) sb_stemmer_delete(a->stem);
    free(a->buf);
    free(a->cp);
    free(a);
}

enum wb { WB_OTHER, WB_LETTER, WB_NUM, WB_EXTNUMLET, WB_EXTEND, WB_MIDLETTER, WB_MIDNUM, WB_MIDNUMLET, WB_IDEO, WB_KATAKANA };

static int wb_class(utf8proc_int32_t c) {
    if (c < 0x80) {
        if ((c | 32) >= 'a' && (c | 32) <= 'z') return WB_LETTER;
        if (c >= '0' && c <= '9') return WB_NUM;
        if (c == '_') return WB_EXTNUMLET;
        if (c == '.' || c == '\'') return WB_MIDNUMLET;
        if (c == ',' || c == ';') return WB_MIDNUM;
        if (c == ':') return WB_MIDLETTER;
        return WB_OTHER;
    }
    if ((c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2FFFF) ||
        (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x3040 && c <= 0x309F) || c == 0x3005 || c == 0x3007)
        return WB_IDEO;
    if ((c >= 0x30A0 && c <= 0x30FF) || (c >= 0x31F0 && c <= 0x31FF) || (c >= 0xFF66 && c <= 0xFF9F)) return WB_KATAKANA;
    switch (c) {
    case 0x2018: case 0x2019: case 0x2024: case 0xFE52: case 0xFF07: case 0xFF0E: return WB_MIDNUMLET;
    case 0x00B7: case 0x0387: case 0x05F4: case 0x2027: case 0xFE13: case 0xFE55: case 0xFF1A: return WB_MIDLETTER;
    case 0x037E: case 0x0589: case 0x060C: case 0x060D: case 0x066C: case 0x07F8: case 0x2044: case 0xFE10:
    case 0xFE14: case 0xFE50: case 0xFE54: case 0xFF0C: case 0xFF1B: return WB_MIDNUM;
    default: break;
    }
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_NL:
        return WB_LETTER;
    case UTF8PROC_CATEGORY_ND: return WB_NUM;
    case UTF8PROC_CATEGORY_PC: return WB_EXTNUMLET;
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_CF:
        return WB_EXTEND;
    default: return WB_OTHER;
    }
}

/* Decodes one code point at s[i] (invalid bytes: U+FFFD, advance 1). */
static utf8proc_int32_t next_cp(const char *s, size_t n, size_t i, size_t *adv) {
    if ((unsigned char)s[i] < 0x80) { *adv = 1; return (unsigned char)s[i]; }
    utf8proc_int32_t c;
    utf8proc_ssize_t r = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &c);
    if (r <= 0) { *adv = 1; return 0xFFFD; }
    *adv = (size_t)r;
    return c;
}

/* Possessive, lower case, stop words, stem; then emit. */
static void analyzer_term(analyzer *a, const char *t, size_t len, analyzer_emit_fn emit, void *ctx) {
    /* EnglishPossessiveFilter: strip 's / ’s / ＇s (either case of s) */
    if (len >= 2 && (t[len - 1] == 's' || t[len - 1] == 'S')) {
        if (t[len - 2] == '\'') len -= 2;
        else if (len >= 4 && (unsigned char)t[len - 4] == 0xE2 && (unsigned char)t[len - 3] == 0x80 &&
                 (unsigned char)t[len - 2] == 0x99)
            len -= 4;
        else if (len >= 4 && (unsigned char)t[len - 4] == 0xEF && (unsigned char)t[len - 3] == 0xBC &&
                 (unsigned char)t[len - 2] == 0x87)
            len -= 4;
    }
    if (len == 0) return;
    size_t k = 0, units = 0, ncp = 0; /* units: UTF-16 code units, Lucene's char count */
    for (size_t i = 0; i < len && ncp < MAX_TOKEN_CHARS + 8;) {
        size_t adv;
        utf8proc_int32_t c = next_cp(t, len, i, &adv);
        i += adv;
        units += c >= 0x10000 ? 2 : 1;
        if (c < 0x80) {
            if (k + 1 > a->cap) break;
            c = c >= 'A' && c <= 'Z' ? c + 32 : c;
            a->buf[k++] = (char)c;
            a->cp[ncp++] = c;
            continue;
        }
        c = utf8proc_tolower(c);
        if (k + 4 > a->cap) break;
        k += (size_t)utf8proc_encode_char(c, (utf8proc_uint8_t *)a->buf + k);
        a->cp[ncp++] = c;
    }
    if (!a->o.keep_stopwords && analyzer_is_stopword(a->buf, k)) return;
    /* Lucene's PorterStemmer leaves words of one or two chars alone (Porter's
     * own C version does; the published algorithm, and Snowball's "porter",
     * would turn "s" into an empty term and "us" into "u") */
    if (a->stem && units > 2) {
        const sb_symbol *s = sb_stemmer_stem(a->stem, (const sb_symbol *)a->buf, (int)k);
        if (s) {
            emit((const char *)s, (size_t)sb_stemmer_length(a->stem), ctx);
            return;
        }
    } else if (!a->o.no_stem && units > 2) {
        size_t n = porter_stem(a->cp, ncp);
        k = 0;
        for (size_t i = 0; i < n; i++) k += (size_t)utf8proc_encode_char(a->cp[i], (utf8proc_uint8_t *)a->buf + k);
    }
    emit(a->buf, k, ctx);
}

void analyzer_run(analyzer *a, const char *s, size_t n, analyzer_emit_fn emit, void *ctx) {
    size_t i = 0;
    while (i < n) {
        size_t adv;
        utf8proc_int32_t c = next_cp(s, n, i, &adv);
        int cl = wb_class(c);
        if (cl == WB_IDEO) {
            analyzer_term(a, s + i, adv, emit, ctx);
            i += adv;
            continue;
        }
        if (cl == WB_KATAKANA) {
            size_t st = i;
            i += adv;
            while (i < n) {
                utf8proc_int32_t d = next_cp(s, n, i, &adv);
                int dc = wb_class(d);
                if (dc != WB_KATAKANA && dc != WB_EXTEND) break;
                i += adv;
            }
            analyzer_term(a, s + st, i - st, emit, ctx);
            continue;
        }
        if (cl != WB_LETTER && cl != WB_NUM && cl != WB_EXTNUMLET) { i += adv; continue; }
        size_t st = i, chars = 1;
        int last = cl; /* class of the last letter/number/extendnumlet */
        i += adv;
        while (i < n && chars < MAX_TOKEN_CHARS) {
            utf8proc_int32_t d = next_cp(s, n, i, &adv);
            int dc = wb_class(d);
            if (dc == WB_LETTER || dc == WB_NUM || dc == WB_EXTNUMLET) { last = dc; i += adv; chars++; continue; }
            if (dc == WB_EXTEND) { i += adv; chars++; continue; }
            if (dc == WB_MIDLETTER || dc == WB_MIDNUM || dc == WB_MIDNUMLET) {
                /* look past the middle character (and any Extend) */
                size_t j = i + adv, a2;
                int nc = WB_OTHER;
                while (j < n) {
                    utf8proc_int32_t f = next_cp(s, n, j, &a2);
                    nc = wb_class(f);
                    if (nc != WB_EXTEND) break;
                    j += a2;
                }
                bool join = false;
                if (last == WB_LETTER && nc == WB_LETTER && (dc == WB_MIDLETTER || dc == WB_MIDNUMLET)) join = true;
                if (last == WB_NUM && nc == WB_NUM && (dc == WB_MIDNUM || dc == WB_MIDNUMLET)) join = true;
                if (!join) break;
                i += adv;
                chars++;
                continue;
            }
            break;
        }
        analyzer_term(a, s + st, i - st, emit, ctx);
    }
}
