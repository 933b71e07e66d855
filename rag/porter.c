/* porter.c — the Porter stemmer (M. F. Porter, "An algorithm for suffix
 * stripping", Program 14(3), 1980) in the variant Lucene's PorterStemFilter
 * implements, which is Porter's own reference C version with its three
 * documented departures from the published algorithm:
 *   - words of one or two characters are not stemmed;
 *   - step 2 maps -bli to -ble (the paper: -abli to -able);
 *   - step 2 also maps -logi to -log.
 * Anserini's default English analyzer (and so the published BM25 baselines)
 * uses this stemmer; Snowball's "porter" follows the paper instead, which
 * stems e.g. "physiology" and "possibly" differently and turns "s" into an
 * empty term. Works on code points; only ASCII letters form suffixes, every
 * other character counts as a consonant (as in Lucene). */
#include "rag/rag.h"

#include <string.h>

typedef struct pst {
    int32_t *b;
    int k, j; /* b[0..k] is the word; j marks the end of the stem for a suffix */
} pst;

static bool cons(const pst *z, int i) {
    switch (z->b[i]) {
    case 'a': case 'e': case 'i': case 'o': case 'u': return false;
    case 'y': return i == 0 ? true : !cons(z, i - 1);
    default: return true;
    }
}

/* Number of vowel-consonant sequences in b[0..j]: [C](VC)^m[V]. */
static int measure(const pst *z) {
    int n = 0, i = 0;
    while (i <= z->j && cons(z, i)) i++;
    for (;;) {
        while (i <= z->j && !cons(z, i)) i++;
        if (i > z->j) return n;
        while (i <= z->j && cons(z, i)) i++;
        n++;
        if (i > z->j) return n;
    }
}

static bool vowel_in_stem(const pst *z) {
    for (int i = 0; i <= z->j; i++)
        if (!cons(z, i)) return true;
    return false;
}

static bool double_cons(const pst *z, int i) { return i >= 1 && z->b[i] == z->b[i - 1] && cons(z, i); }

/* consonant-vowel-consonant ending at i, the last not w, x or y */
static bool cvc(const pst *z, int i) {
    if (i < 2 || !cons(z, i) || cons(z, i - 1) || !cons(z, i - 2)) return false;
    int32_t c = z->b[i];
    return c != 'w' && c != 'x' && c != 'y';
}

static bool ends(pst *z, const char *s) {
    int l = (int)strlen(s), o = z->k - l + 1;
    if (o < 0) return false;
    for (int i = 0; i < l; i++)
        if (z->b[o + i] != (unsigned char)s[i]) return false;
    z->j = z->k - l;
    return true;
}

static void set_to(pst *z, const char *s) {
    int l = (int)strlen(s);
    for (int i = 0; i < l; i++) z->b[z->j + 1 + i] = (unsigned char)s[i];
    z->k = z->j + l;
}

static void replace_if_m(pst *z, const char *s) {
    if (measure(z) > 0) set_to(z, s);
}

/* 1a plurals, 1b -ed/-ing */
static void step1ab(pst *z) {
    if (z->b[z->k] == 's') {
        if (ends(z, "sses")) z->k -= 2;
        else if (ends(z, "ies")) set_to(z, "i");
        else if (z->b[z->k - 1] != 's') z->k--;
    }
    if (ends(z, "eed")) {
        if (measure(z) > 0) z->k--;
    } else if ((ends(z, "ed") || ends(z, "ing")) && vowel_in_stem(z)) {
        z->k = z->j;
        if (ends(z, "at")) set_to(z, "ate");
        else if (ends(z, "bl")) set_to(z, "ble");
        else if (ends(z, "iz")) set_to(z, "ize");
        else if (double_cons(z, z->k)) {
            int32_t c = z->b[z->k];
            if (c != 'l' && c != 's' && c != 'z') z->k--;
        } else {
            z->j = z->k;
            if (measure(z) == 1 && cvc(z, z->k)) set_to(z, "e");
        }
    }
}

/* 1c: y -> i when the stem has a vowel */
static void step1c(pst *z) {
    if (ends(z, "y") && vowel_in_stem(z)) z->b[z->k] = 'i';
}

static const char *const step2_rules[][2] = {
    {"ational", "ate"}, {"tional", "tion"}, {"enci", "ence"}, {"anci", "ance"}, {"izer", "ize"},
    {"bli", "ble"},     {"alli", "al"},     {"entli", "ent"}, {"eli", "e"},     {"ousli", "ous"},
    {"ization", "ize"}, {"ation", "ate"},   {"ator", "ate"},  {"alism", "al"},  {"iveness", "ive"},
    {"fulness", "ful"}, {"ousness", "ous"}, {"aliti", "al"},  {"iviti", "ive"}, {"biliti", "ble"},
    {"logi", "log"},
};

/* Rules are tried in the order above among those whose penultimate letter
 * matches the word's (Porter's switch); the first suffix that matches is
 * the only one considered. */
static void step2(pst *z) {
    if (z->k == 0) return;
    int32_t pen = z->b[z->k - 1];
    for (size_t r = 0; r < sizeof step2_rules / sizeof step2_rules[0]; r++) {
        const char *suf = step2_rules[r][0];
        size_t l = strlen(suf);
        if ((unsigned char)suf[l - 2] != pen) continue;
        if (ends(z, suf)) { replace_if_m(z, step2_rules[r][1]); return; }
    }
}

static const char *const step3_rules[][2] = {
    {"icate", "ic"}, {"ative", ""}, {"alize", "al"}, {"iciti", "ic"}, {"ical", "ic"}, {"ful", ""}, {"ness", ""},
};

static void step3(pst *z) {
    int32_t last = z->b[z->k];
    for (size_t r = 0; r < sizeof step3_rules / sizeof step3_rules[0]; r++) {
        const char *suf = step3_rules[r][0];
        if ((unsigned char)suf[strlen(suf) - 1] != last) continue;
        if (ends(z, suf)) { replace_if_m(z, step3_rules[r][1]); return; }
    }
}

static const char *const step4_suffixes[] = {"al",   "ance", "ence", "er",  "ic",  "able", "ible", "ant",
                                             "ement", "ment", "ent",  "ion", "ou",  "ism",  "ate",  "iti",
                                             "ous",  "ive",  "ize"};

/* 4: drop a suffix when the rest has m > 1 (-ion only after s or t) */
static void step4(pst *z) {
    if (z->k == 0) return;
    int32_t pen = z->b[z->k - 1];
    for (size_t r = 0; r < sizeof step4_suffixes / sizeof step4_suffixes[0]; r++) {
        const char *suf = step4_suffixes[r];
        size_t l = strlen(suf);
        if ((unsigned char)suf[l - 2] != pen) continue;
        if (!ends(z, suf)) continue;
        if (strcmp(suf, "ion") == 0 && !(z->j >= 0 && (z->b[z->j] == 's' || z->b[z->j] == 't'))) continue;
        if (measure(z) > 1) z->k = z->j;
        return;
    }
}

/* 5a final -e, 5b -ll */
static void step5(pst *z) {
    z->j = z->k;
    if (z->b[z->k] == 'e') {
        int a = measure(z);
        if (a > 1 || (a == 1 && !cvc(z, z->k - 1))) z->k--;
    }
    if (z->b[z->k] == 'l' && double_cons(z, z->k) && measure(z) > 1) z->k--;
}

size_t porter_stem(int32_t *w, size_t n) {
    if (n <= 2) return n;
    pst z = {w, (int)n - 1, 0};
    step1ab(&z);
    step1c(&z);
    step2(&z);
    step3(&z);
    step4(&z);
    step5(&z);
    return (size_t)(z.k + 1);
}
