/* tokenizer.c — vocabulary loading, the three tokenizers (SPM, byte-level
 * BPE, WordPiece), special-token partitioning and detokenization. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tok_internal.h"
#include "tokenizer.h"

/* ------------------------------------------------------------------------ */
/* Growable buffers */

typedef struct ivec { int32_t *p; size_t n, cap; } ivec;
typedef struct bvec { uint8_t *p; size_t n, cap; } bvec;

static int ivec_push(ivec *v, int32_t x) {
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 64;
        int32_t *np = realloc(v->p, nc * sizeof *np);
        if (!np) return -1;
        v->p = np;
        v->cap = nc;
    }
    v->p[v->n++] = x;
    return 0;
}

static int bvec_reserve(bvec *v, size_t extra) {
    if (v->n + extra <= v->cap) return 0;
    size_t nc = v->cap ? v->cap : 64;
    while (nc < v->n + extra) nc *= 2;
    uint8_t *np = realloc(v->p, nc);
    if (!np) return -1;
    v->p = np;
    v->cap = nc;
    return 0;
}

static int bvec_put(bvec *v, const void *d, size_t n) {
    if (bvec_reserve(v, n + 1)) return -1;
    if (n) memcpy(v->p + v->n, d, n);
    v->n += n;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The tokenizer */

typedef struct merge_ent {
    uint64_t key; /* (left << 32) | right; UINT64_MAX = empty */
    int32_t rank;
    int32_t res;  /* id of the merged text, -1 if not a token */
} merge_ent;

struct tokenizer {
    int type;
    int n_vocab;
    char *blob;       /* token texts, each NUL-terminated */
    uint32_t *off, *len;
    float *scores;
    int32_t *ttype;
    int32_t *hash;    /* open addressing: token ids, -1 empty */
    uint64_t hmask;
    char *pblob;      /* decoded pieces */
    uint32_t *poff, *plen;
    merge_ent *merges;
    uint64_t mmask;
    int32_t bos, eos, unk, sep, pad, eot, eom;
    bool add_bos, add_eos, add_sep, add_space_prefix, ignore_merges;
    uint8_t *eog;     /* per id */
    int32_t byte_tok[256]; /* SPM: <0xNN>; BPE: the byte's unicode char */
    uint32_t b2u[256];     /* BPE: byte -> unicode char */
    tok_rx **rx;
    int n_rx;
    /* special tokens bucketed by first byte, longest first */
    int32_t *sp_ids;
    uint32_t sp_start[257];
    uint32_t max_len;
};

static uint64_t hash_bytes(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= s[i]; h *= 1099511628211ull; }
    return h ^ (h >> 29);
}

int32_t tokenizer_find(const tokenizer *t, const char *text, size_t n) {
    if (n > t->max_len) return -1;
    uint64_t h = hash_bytes(text, n) & t->hmask;
    for (;;) {
        int32_t id = t->hash[h];
        if (id < 0) return -1;
        if (t->len[id] == n && memcmp(t->blob + t->off[id], text, n) == 0) return id;
        h = (h + 1) & t->hmask;
    }
}

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull; x ^= x >> 33;
    return x;
}

static const merge_ent *merge_find(const tokenizer *t, int32_t l, int32_t r) {
    if (!t->merges || l < 0 || r < 0) return NULL;
    uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    uint64_t h = mix64(key) & t->mmask;
    for (;;) {
        const merge_ent *m = &t->merges[h];
        if (m->key == UINT64_MAX) return NULL;
        if (m->key == key) return m;
        h = (h + 1) & t->mmask;
    }
}

void tokenizer_free(tokenizer *t) {
    if (!t) return;
    free(t->blob); free(t->off); free(t->len); free(t->scores); free(t->ttype); free(t->hash);
    free(t->pblob); free(t->poff); free(t->plen); free(t->merges); free(t->eog); free(t->sp_ids);
    for (int i = 0; i < t->n_rx; i++) tok_rx_free(t->rx[i]);
    free(t->rx);
    free(t);
}

int tokenizer_type(const tokenizer *t) { return t->type; }
int tokenizer_n_vocab(const tokenizer *t) { return t->n_vocab; }
int32_t tokenizer_bos(const tokenizer *t) { return t->bos; }
int32_t tokenizer_eos(const tokenizer *t) { return t->eos; }
int32_t tokenizer_unk(const tokenizer *t) { return t->unk; }
int32_t tokenizer_sep(const tokenizer *t) { return t->sep; }
bool tokenizer_add_bos(const tokenizer *t) { return t->add_bos && t->bos >= 0; }
bool tokenizer_add_eos(const tokenizer *t) { return t->add_eos && t->eos >= 0; }
bool tokenizer_is_eog(const tokenizer *t, int32_t id) { return id >= 0 && id < t->n_vocab && t->eog[id]; }
int tokenizer_token_type(const tokenizer *t, int32_t id) { return id >= 0 && id < t->n_vocab ? t->ttype[id] : 0; }

const char *tokenizer_token_text(const tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab) { if (len) *len = 0; return NULL; }
    if (len) *len = t->len[id];
    return t->blob + t->off[id];
}

const char *tokenizer_piece(const tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab) { if (len) *len = 0; return NULL; }
    if (len) *len = t->plen[id];
    return t->pblob + t->poff[id];
}

/* ------------------------------------------------------------------------ */
/* Loading */

/* GPT-2 bytes_to_unicode: printable bytes map to themselves, the rest to
 * 256, 257, ... in byte order. */
static void gpt2_byte_map(uint32_t b2u[256], int16_t *u2b /* [324] */) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        b2u[b] = keep ? (uint32_t)b : (uint32_t)(256 + n++);
    }
    if (u2b) {
        for (int i = 0; i < 324; i++) u2b[i] = -1;
        for (int b = 0; b < 256; b++) u2b[b2u[b]] = (int16_t)b;
    }
}

static int get_id(const gguf *g, const char *key, int32_t def, int n_vocab, int32_t *out, qerr *e) {
    int64_t v;
    const gguf_value *gv = gguf_get(g, key);
    if (!gv) { *out = def; return 0; }
    if (!gguf_get_int(g, key, &v)) return qerr_set(e, "%s: not an integer", key);
    if (v == 0xFFFFFFFFll || v < 0) { *out = -1; return 0; }
    if (v >= n_vocab) return qerr_set(e, "%s = %lld out of range (n_vocab %d)", key, (long long)v, n_vocab);
    *out = (int32_t)v;
    return 0;
}

typedef struct pre_def {
    const char *names; /* '|'-separated tokenizer.ggml.pre values */
    const char *rx[6];
    bool ignore_merges;
} pre_def;

#define RX_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RX_LLAMA3 "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RX_QWEN2 "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* The pre-tokenizer regexes, applied in order (each splits the pieces the
 * previous produced); these are the published patterns of each family. */
static const pre_def pre_defs[] = {
    {"default", {"[\\p{P}\\$\\+<=>\\^~\\|]+", RX_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}, false},
    {"llama3|llama-v3|llama-bpe|falcon3|pixtral|dbrx|smaug-bpe", {RX_LLAMA3}, true},
    {"deepseek-llm",
     {"[\r\n]",
      "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-"
      "ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-"
      "ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
      "\\s?[!-/:-~！-／：-～‘-‟　-。]+", "\\s+$", "[一-龥ࠀ-一가-퟿]+", "\\p{N}+"},
     false},
    {"deepseek-coder", {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}"}, false},
    {"falcon", {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RX_GPT2, "[0-9][0-9][0-9]"}, false},
    {"starcoder|refact|command-r|smollm|codeshell|exaone|minerva-7b", {"\\p{N}", RX_GPT2}, false},
    {"gpt-2|gpt2|gpt-neox|mpt|olmo|jais|phi-2|roberta-bpe|jina-es|jina-de|jina-v1-en|jina-v2-es|jina-v2-de|"
     "jina-v2-code|gigachat|trillion",
     {RX_GPT2}, false},
    {"qwen2|stablelm2|deepseek-r1-qwen|megrez|hunyuan", {RX_QWEN2}, false},
};

static bool name_in(const char *list, const char *name) {
    size_t nl = strlen(name);
    for (const char *p = list; *p;) {
        const char *q = strchr(p, '|');
        size_t l = q ? (size_t)(q - p) : strlen(p);
        if (l == nl && memcmp(p, name, l) == 0) return true;
        if (!q) break;
        p = q + 1;
    }
    return false;
}

static const char *const eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>", "_<EOT>",
    "<|end_of_text|>", "<|eom_id|>", "<｜end▁of▁sentence｜>", "<|return|>", "<|call|>", NULL};

static int build_pieces(tokenizer *t, qerr *e) {
    bvec pb = {0};
    uint32_t b2u[256];
    int16_t u2b[324];
    gpt2_byte_map(b2u, u2b);
    t->poff = malloc((size_t)t->n_vocab * sizeof *t->poff);
    t->plen = malloc((size_t)t->n_vocab * sizeof *t->plen);
    if (!t->poff || !t->plen) return qerr_set(e, "out of memory");
    for (int id = 0; id < t->n_vocab; id++) {
        const uint8_t *s = (const uint8_t *)t->blob + t->off[id];
        size_t n = t->len[id];
        size_t start = pb.n;
        int ty = t->ttype[id];
        int rc = 0;
        if (ty == TOKEN_CONTROL || ty == TOKEN_UNKNOWN || ty == TOKEN_UNUSED) {
            /* contributes nothing */
        } else if (ty == TOKEN_USER_DEFINED) {
            rc = bvec_put(&pb, s, n);
        } else if (ty == TOKEN_BYTE && t->type != TOKENIZER_BPE) {
            unsigned v;
            char tail;
            if (n == 6 && sscanf((const char *)s, "<0x%2X%c", &v, &tail) == 2 && tail == '>') {
                uint8_t b = (uint8_t)v;
                rc = bvec_put(&pb, &b, 1);
            } else {
                rc = bvec_put(&pb, s, n);
            }
        } else if (t->type == TOKENIZER_BPE) {
            for (size_t i = 0; i < n && !rc;) {
                size_t i0 = i;
                uint32_t cp = tok_utf8_next(s, n, &i);
                if (cp < 324 && u2b[cp] >= 0) {
                    uint8_t b = (uint8_t)u2b[cp];
                    rc = bvec_put(&pb, &b, 1);
                } else {
                    rc = bvec_put(&pb, s + i0, i - i0);
                }
            }
        } else { /* SPM / WPM normal: ▁ -> space */
            for (size_t i = 0; i < n && !rc;) {
                if (i + 3 <= n && s[i] == 0xE2 && s[i + 1] == 0x96 && s[i + 2] == 0x81) {
                    rc = bvec_put(&pb, " ", 1);
                    i += 3;
                } else {
                    rc = bvec_put(&pb, s + i, 1);
                    i++;
                }
            }
        }
        if (rc || pb.n > UINT32_MAX) { free(pb.p); return qerr_set(e, "out of memory"); }
        t->poff[id] = (uint32_t)start;
        t->plen[id] = (uint32_t)(pb.n - start);
    }
    if (bvec_put(&pb, "", 0)) { free(pb.p); return qerr_set(e, "out of memory"); }
    pb.p[pb.n] = 0;
    t->pblob = (char *)pb.p;
    return 0;
}

static int build_specials(tokenizer *t, qerr *e) {
    uint32_t count[257] = {0};
    size_t n_sp = 0;
    for (int id = 0; id < t->n_vocab; id++) {
        int ty = t->ttype[id];
        if ((ty == TOKEN_CONTROL || ty == TOKEN_USER_DEFINED || ty == TOKEN_UNKNOWN) && t->len[id] > 0) {
            count[(uint8_t)t->blob[t->off[id]]]++;
            n_sp++;
        }
    }
    t->sp_ids = malloc((n_sp + 1) * sizeof *t->sp_ids);
    if (!t->sp_ids) return qerr_set(e, "out of memory");
    uint32_t pos[256];
    t->sp_start[0] = 0;
    for (int b = 0; b < 256; b++) { t->sp_start[b + 1] = t->sp_start[b] + count[b]; pos[b] = t->sp_start[b]; }
    for (int id = 0; id < t->n_vocab; id++) {
        int ty = t->ttype[id];
        if ((ty == TOKEN_CONTROL || ty == TOKEN_USER_DEFINED || ty == TOKEN_UNKNOWN) && t->len[id] > 0)
            t->sp_ids[pos[(uint8_t)t->blob[t->off[id]]]++] = id;
    }
    /* longest first within each bucket (insertion sort: buckets are small) */
    for (int b = 0; b < 256; b++) {
        for (uint32_t i = t->sp_start[b] + 1; i < t->sp_start[b + 1]; i++) {
            int32_t x = t->sp_ids[i];
            uint32_t j = i;
            while (j > t->sp_start[b] && t->len[t->sp_ids[j - 1]] < t->len[x]) { t->sp_ids[j] = t->sp_ids[j - 1]; j--; }
            t->sp_ids[j] = x;
        }
    }
    return 0;
}

int tokenizer_load(tokenizer **out, const gguf *g, qerr *e) {
    *out = NULL;
    tok_unicode_init();
    const char *model = gguf_get_str(g, "tokenizer.ggml.model");
    if (!model) return qerr_set(e, "tokenizer: tokenizer.ggml.model missing");
    int type;
    if (strcmp(model, "llama") == 0) type = TOKENIZER_SPM;
    else if (strcmp(model, "gpt2") == 0) type = TOKENIZER_BPE;
    else if (strcmp(model, "bert") == 0) type = TOKENIZER_WPM;
    else return qerr_set(e, "tokenizer: unsupported tokenizer model '%s'", model);

    const gguf_value *toks = gguf_get(g, "tokenizer.ggml.tokens");
    if (!toks) return qerr_set(e, "tokenizer: tokenizer.ggml.tokens missing");
    if (toks->type != GGUF_ARRAY || toks->v.arr.elem != GGUF_STRING || !toks->v.arr.strs)
        return qerr_set(e, "tokenizer: tokenizer.ggml.tokens is not an array of strings");
    uint64_t n = toks->v.arr.n;
    if (n == 0) return qerr_set(e, "tokenizer: tokenizer.ggml.tokens is empty");
    if (n > (1u << 30)) return qerr_set(e, "tokenizer: too many tokens (%llu)", (unsigned long long)n);

    const gguf_value *scores = gguf_get(g, "tokenizer.ggml.scores");
    if (scores && (scores->type != GGUF_ARRAY || (scores->v.arr.elem != GGUF_F32 && scores->v.arr.elem != GGUF_F64)))
        return qerr_set(e, "tokenizer: tokenizer.ggml.scores is not a float array");
    if (scores && scores->v.arr.n != n)
        return qerr_set(e, "tokenizer: tokenizer.ggml.scores has %llu entries, tokens %llu",
                        (unsigned long long)scores->v.arr.n, (unsigned long long)n);
    const gguf_value *types = gguf_get(g, "tokenizer.ggml.token_type");
    if (types && (types->type != GGUF_ARRAY || types->v.arr.elem == GGUF_STRING || types->v.arr.elem == GGUF_ARRAY ||
                  types->v.arr.elem == GGUF_F32 || types->v.arr.elem == GGUF_F64 || types->v.arr.elem == GGUF_BOOL))
        return qerr_set(e, "tokenizer: tokenizer.ggml.token_type is not an integer array");
    if (types && types->v.arr.n != n)
        return qerr_set(e, "tokenizer: tokenizer.ggml.token_type has %llu entries, tokens %llu",
                        (unsigned long long)types->v.arr.n, (unsigned long long)n);
    const gguf_value *merges = gguf_get(g, "tokenizer.ggml.merges");
    if (type == TOKENIZER_BPE && !merges) return qerr_set(e, "tokenizer: tokenizer.ggml.merges missing (gpt2 model)");
    if (merges && (merges->type != GGUF_ARRAY || merges->v.arr.elem != GGUF_STRING || !merges->v.arr.strs))
        return qerr_set(e, "tokenizer: tokenizer.ggml.merges is not an array of strings");

    tokenizer *t = calloc(1, sizeof *t);
    if (!t) return qerr_set(e, "out of memory");
    t->type = type;
    t->n_vocab = (int)n;
    size_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (toks->v.arr.strs[i].len > UINT32_MAX / 2) { tokenizer_free(t); return qerr_set(e, "tokenizer: token %llu too long", (unsigned long long)i); }
        total += toks->v.arr.strs[i].len + 1;
    }
    if (total > UINT32_MAX) { tokenizer_free(t); return qerr_set(e, "tokenizer: vocabulary too large"); }
    t->blob = malloc(total);
    t->off = malloc(n * sizeof *t->off);
    t->len = malloc(n * sizeof *t->len);
    t->scores = calloc(n, sizeof *t->scores);
    t->ttype = malloc(n * sizeof *t->ttype);
    t->eog = calloc(n, 1);
    uint64_t hsize = 16;
    while (hsize < n * 2) hsize *= 2;
    t->hash = malloc(hsize * sizeof *t->hash);
    if (!t->blob || !t->off || !t->len || !t->scores || !t->ttype || !t->eog || !t->hash) {
        tokenizer_free(t);
        return qerr_set(e, "out of memory");
    }
    t->hmask = hsize - 1;
    memset(t->hash, 0xFF, hsize * sizeof *t->hash);
    size_t pos = 0;
    for (uint64_t i = 0; i < n; i++) {
        const gguf_str *s = &toks->v.arr.strs[i];
        memcpy(t->blob + pos, s->s, s->len);
        t->blob[pos + s->len] = 0;
        t->off[i] = (uint32_t)pos;
        t->len[i] = (uint32_t)s->len;
        if (s->len > t->max_len) t->max_len = (uint32_t)s->len;
        pos += s->len + 1;
        if (scores) t->scores[i] = (float)gguf_arr_float(scores, i);
        int64_t ty = types ? gguf_arr_int(types, i) : TOKEN_NORMAL;
        if (ty < 0 || ty > 6) { tokenizer_free(t); return qerr_set(e, "tokenizer: token %llu has bad type %lld", (unsigned long long)i, (long long)ty); }
        t->ttype[i] = ty == 0 ? TOKEN_NORMAL : (int32_t)ty;
        /* insert; on duplicate text the first id wins, as in the reference's map */
        uint64_t h = hash_bytes(s->s, s->len) & t->hmask;
        bool dup = false;
        while (t->hash[h] >= 0) {
            int32_t o = t->hash[h];
            if (t->len[o] == s->len && memcmp(t->blob + t->off[o], s->s, s->len) == 0) { dup = true; break; }
            h = (h + 1) & t->hmask;
        }
        if (!dup) t->hash[h] = (int32_t)i;
    }

    int nv = (int)n;
    int rc = 0;
    if (type == TOKENIZER_SPM) {
        rc |= get_id(g, "tokenizer.ggml.bos_token_id", nv > 1 ? 1 : -1, nv, &t->bos, e);
        rc |= get_id(g, "tokenizer.ggml.eos_token_id", nv > 2 ? 2 : -1, nv, &t->eos, e);
        rc |= get_id(g, "tokenizer.ggml.unknown_token_id", 0, nv, &t->unk, e);
        t->add_bos = true;
        t->add_space_prefix = true;
    } else if (type == TOKENIZER_BPE) {
        rc |= get_id(g, "tokenizer.ggml.bos_token_id", -1, nv, &t->bos, e);
        rc |= get_id(g, "tokenizer.ggml.eos_token_id", -1, nv, &t->eos, e);
        rc |= get_id(g, "tokenizer.ggml.unknown_token_id", -1, nv, &t->unk, e);
    } else {
        int32_t cls = -1;
        rc |= get_id(g, "tokenizer.ggml.cls_token_id", nv > 101 ? 101 : -1, nv, &cls, e);
        rc |= get_id(g, "tokenizer.ggml.bos_token_id", cls, nv, &t->bos, e);
        rc |= get_id(g, "tokenizer.ggml.eos_token_id", -1, nv, &t->eos, e);
        rc |= get_id(g, "tokenizer.ggml.unknown_token_id", nv > 100 ? 100 : -1, nv, &t->unk, e);
        t->add_bos = true;
        t->add_sep = true;
    }
    if (!rc) rc |= get_id(g, "tokenizer.ggml.seperator_token_id", type == TOKENIZER_WPM && nv > 102 ? 102 : -1, nv, &t->sep, e);
    if (!rc) rc |= get_id(g, "tokenizer.ggml.padding_token_id", -1, nv, &t->pad, e);
    if (!rc) rc |= get_id(g, "tokenizer.ggml.eot_token_id", -1, nv, &t->eot, e);
    if (!rc) rc |= get_id(g, "tokenizer.ggml.eom_token_id", -1, nv, &t->eom, e);
    if (rc) { tokenizer_free(t); return qerr_wrap(e, "tokenizer"); }
    bool bv;
    if (gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &bv)) t->add_bos = bv;
    if (gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &bv)) t->add_eos = bv;
    if (gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &bv)) t->add_space_prefix = bv;
    if (type == TOKENIZER_WPM) t->add_space_prefix = false;
    if (type == TOKENIZER_WPM && t->add_sep && t->sep < 0) t->add_sep = false;
    if (type == TOKENIZER_WPM && t->unk < 0) { tokenizer_free(t); return qerr_set(e, "tokenizer: WordPiece vocabulary without [UNK]"); }

    /* end-of-generation set */
    if (t->eos >= 0) t->eog[t->eos] = 1;
    if (t->eot >= 0) t->eog[t->eot] = 1;
    if (t->eom >= 0) t->eog[t->eom] = 1;
    for (int id = 0; id < nv; id++) {
        if (t->ttype[id] != TOKEN_CONTROL && t->ttype[id] != TOKEN_USER_DEFINED) continue;
        for (int k = 0; eog_texts[k]; k++)
            if (strcmp(t->blob + t->off[id], eog_texts[k]) == 0) t->eog[id] = 1;
    }

    /* byte tokens */
    for (int b = 0; b < 256; b++) t->byte_tok[b] = -1;
    if (type == TOKENIZER_SPM) {
        for (int b = 0; b < 256; b++) {
            char buf[8];
            snprintf(buf, sizeof buf, "<0x%02X>", b);
            t->byte_tok[b] = tokenizer_find(t, buf, 6);
            if (t->byte_tok[b] < 0) {
                char c = (char)b;
                t->byte_tok[b] = tokenizer_find(t, &c, 1);
            }
        }
    } else if (type == TOKENIZER_BPE) {
        gpt2_byte_map(t->b2u, NULL);
        for (int b = 0; b < 256; b++) {
            uint8_t buf[4];
            int l = tok_utf8_put(t->b2u[b], buf);
            t->byte_tok[b] = tokenizer_find(t, (const char *)buf, (size_t)l);
        }
    }

    /* merges */
    if (type == TOKENIZER_BPE) {
        uint64_t nm = merges->v.arr.n;
        uint64_t ms = 16;
        while (ms < nm * 2) ms *= 2;
        t->merges = malloc(ms * sizeof *t->merges);
        if (!t->merges) { tokenizer_free(t); return qerr_set(e, "out of memory"); }
        t->mmask = ms - 1;
        for (uint64_t i = 0; i < ms; i++) t->merges[i].key = UINT64_MAX;
        for (uint64_t i = 0; i < nm && i < INT32_MAX; i++) {
            const gguf_str *s = &merges->v.arr.strs[i];
            const char *sp = s->len > 1 ? memchr(s->s + 1, ' ', s->len - 1) : NULL;
            if (!sp) { tokenizer_free(t); return qerr_set(e, "tokenizer: merge %llu '%.40s' has no space", (unsigned long long)i, s->s); }
            size_t ll = (size_t)(sp - s->s), rl = s->len - ll - 1;
            int32_t l = tokenizer_find(t, s->s, ll), r = tokenizer_find(t, sp + 1, rl);
            if (l < 0 || r < 0) continue; /* can never apply */
            int32_t res = -1;
            if (ll + rl <= t->max_len) {
                char *tmp = malloc(ll + rl + 1);
                if (!tmp) { tokenizer_free(t); return qerr_set(e, "out of memory"); }
                memcpy(tmp, s->s, ll);
                memcpy(tmp + ll, sp + 1, rl);
                res = tokenizer_find(t, tmp, ll + rl);
                free(tmp);
            }
            uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
            uint64_t h = mix64(key) & t->mmask;
            while (t->merges[h].key != UINT64_MAX && t->merges[h].key != key) h = (h + 1) & t->mmask;
            if (t->merges[h].key == key) continue; /* first (lowest) rank wins */
            t->merges[h].key = key;
            t->merges[h].rank = (int32_t)i;
            t->merges[h].res = res;
        }
        const char *pre = gguf_get_str(g, "tokenizer.ggml.pre");
        if (!pre) pre = "default";
        const pre_def *pd = NULL;
        for (size_t k = 0; k < sizeof pre_defs / sizeof *pre_defs; k++)
            if (name_in(pre_defs[k].names, pre)) { pd = &pre_defs[k]; break; }
        if (!pd) { tokenizer_free(t); return qerr_set(e, "tokenizer: unknown pre-tokenizer '%s'", pre); }
        t->ignore_merges = pd->ignore_merges;
        int nr = 0;
        while (nr < 6 && pd->rx[nr]) nr++;
        t->rx = calloc((size_t)nr, sizeof *t->rx);
        if (!t->rx) { tokenizer_free(t); return qerr_set(e, "out of memory"); }
        for (int k = 0; k < nr; k++) {
            if (tok_rx_compile(&t->rx[k], pd->rx[k], e)) { tokenizer_free(t); return qerr_wrap(e, "tokenizer"); }
            t->n_rx = k + 1;
        }
    }

    if (build_pieces(t, e) || build_specials(t, e)) { tokenizer_free(t); return -1; }
    *out = t;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* SPM: symbols are UTF-8 characters; repeatedly merge the adjacent pair
 * whose concatenation is the highest-scoring token (ties: leftmost). */

typedef struct sym {
    uint32_t off, n;
    int32_t prev, next;
    int32_t id; /* BPE: token id of the symbol, -1 if none */
} sym;

typedef struct bigram {
    double score; /* SPM: the token's score, higher first; BPE: -rank */
    int32_t left, right;
    uint32_t size;
    int32_t res;
} bigram;

typedef struct work {
    sym *s;
    size_t ns, cs;
    bigram *h;
    size_t nh, ch;
    bvec buf;
    uint32_t *cp;
    size_t ncp, ccp;
} work;

static inline bool bg_before(const bigram *a, const bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int heap_push(work *w, bigram b) {
    if (w->nh == w->ch) {
        size_t nc = w->ch ? w->ch * 2 : 256;
        bigram *nh = realloc(w->h, nc * sizeof *nh);
        if (!nh) return -1;
        w->h = nh;
        w->ch = nc;
    }
    size_t i = w->nh++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bg_before(&b, &w->h[p])) break;
        w->h[i] = w->h[p];
        i = p;
    }
    w->h[i] = b;
    return 0;
}

static bigram heap_pop(work *w) {
    bigram top = w->h[0];
    bigram last = w->h[--w->nh];
    size_t i = 0, n = w->nh;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bg_before(&w->h[c + 1], &w->h[c])) c++;
        if (!bg_before(&w->h[c], &last)) break;
        w->h[i] = w->h[c];
        i = c;
    }
    if (n) w->h[i] = last;
    return top;
}

static int syms_reserve(work *w, size_t n) {
    if (n <= w->cs) return 0;
    size_t nc = w->cs ? w->cs : 64;
    while (nc < n) nc *= 2;
    sym *ns = realloc(w->s, nc * sizeof *ns);
    if (!ns) return -1;
    w->s = ns;
    w->cs = nc;
    return 0;
}

static int spm_try_bigram(const tokenizer *t, work *w, const uint8_t *text, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return 0;
    size_t n = (size_t)w->s[l].n + w->s[r].n;
    int32_t id = tokenizer_find(t, (const char *)text + w->s[l].off, n);
    if (id < 0) return 0;
    bigram b = {t->scores[id], l, r, (uint32_t)n, id};
    return heap_push(w, b);
}

static int spm_tokenize(const tokenizer *t, work *w, const uint8_t *text, size_t n, ivec *out) {
    if (n == 0) return 0;
    if (n > INT32_MAX - 1) return -1;
    w->ns = 0;
    w->nh = 0;
    if (syms_reserve(w, n)) return -1;
    for (size_t off = 0; off < n;) {
        size_t l = (size_t)tok_utf8_len(text[off]);
        if (l > n - off) l = n - off;
        sym *s = &w->s[w->ns];
        s->off = (uint32_t)off;
        s->n = (uint32_t)l;
        s->prev = (int32_t)w->ns - 1;
        off += l;
        s->next = off == n ? -1 : (int32_t)w->ns + 1;
        s->id = -1;
        w->ns++;
    }
    for (size_t i = 1; i < w->ns; i++)
        if (spm_try_bigram(t, w, text, (int32_t)i - 1, (int32_t)i)) return -1;
    while (w->nh) {
        bigram b = heap_pop(w);
        sym *L = &w->s[b.left], *R = &w->s[b.right];
        if (L->n == 0 || R->n == 0 || L->n + R->n != b.size) continue;
        L->n += R->n;
        R->n = 0;
        L->next = R->next;
        if (R->next >= 0) w->s[R->next].prev = b.left;
        if (spm_try_bigram(t, w, text, L->prev, b.left)) return -1;
        if (spm_try_bigram(t, w, text, b.left, L->next)) return -1;
    }
    for (int32_t i = 0; i != -1; i = w->s[i].next) {
        const sym *s = &w->s[i];
        int32_t id = tokenizer_find(t, (const char *)text + s->off, s->n);
        if (id >= 0) {
            if (ivec_push(out, id)) return -1;
            continue;
        }
        for (uint32_t j = 0; j < s->n; j++) {
            int32_t bt = t->byte_tok[text[s->off + j]];
            if (bt < 0) bt = t->unk;
            if (bt >= 0 && ivec_push(out, bt)) return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Byte-level BPE */

typedef struct span { size_t a, b; } span;
typedef struct svec { span *p; size_t n, cap; } svec;

static int svec_push(svec *v, size_t a, size_t b) {
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 64;
        span *np = realloc(v->p, nc * sizeof *np);
        if (!np) return -1;
        v->p = np;
        v->cap = nc;
    }
    v->p[v->n].a = a;
    v->p[v->n].b = b;
    v->n++;
    return 0;
}

static int bpe_word(const tokenizer *t, work *w, const uint8_t *bytes, size_t n, ivec *out) {
    if (n == 0) return 0;
    if (n > INT32_MAX - 1) return -1;
    if (t->ignore_merges && n <= t->max_len) {
        /* the whole word, byte-encoded, may be a token itself */
        const uint32_t *b2u = t->b2u;
        uint8_t tmp[1024];
        size_t tl = 0;
        bool fits = true;
        for (size_t i = 0; i < n; i++) {
            if (tl + 4 > sizeof tmp) { fits = false; break; }
            tl += (size_t)tok_utf8_put(b2u[bytes[i]], tmp + tl);
        }
        if (fits) {
            int32_t id = tokenizer_find(t, (const char *)tmp, tl);
            if (id >= 0) return ivec_push(out, id);
        }
    }
    w->ns = 0;
    w->nh = 0;
    if (syms_reserve(w, n)) return -1;
    for (size_t i = 0; i < n; i++) {
        sym *s = &w->s[i];
        s->off = (uint32_t)i;
        s->n = 1;
        s->prev = (int32_t)i - 1;
        s->next = i + 1 == n ? -1 : (int32_t)i + 1;
        s->id = t->byte_tok[bytes[i]];
    }
    w->ns = n;
    for (size_t i = 1; i < n; i++) {
        const merge_ent *m = merge_find(t, w->s[i - 1].id, w->s[i].id);
        if (m) {
            bigram b = {-(double)m->rank, (int32_t)i - 1, (int32_t)i, 2, m->res};
            if (heap_push(w, b)) return -1;
        }
    }
    while (w->nh) {
        bigram b = heap_pop(w);
        sym *L = &w->s[b.left], *R = &w->s[b.right];
        if (L->n == 0 || R->n == 0 || L->n + R->n != b.size || L->next != b.right) continue;
        L->n += R->n;
        R->n = 0;
        L->id = b.res;
        L->next = R->next;
        if (R->next >= 0) w->s[R->next].prev = b.left;
        if (L->prev >= 0) {
            const merge_ent *m = merge_find(t, w->s[L->prev].id, L->id);
            if (m) {
                bigram nb = {-(double)m->rank, L->prev, b.left, w->s[L->prev].n + L->n, m->res};
                if (heap_push(w, nb)) return -1;
            }
        }
        if (L->next >= 0) {
            const merge_ent *m = merge_find(t, L->id, w->s[L->next].id);
            if (m) {
                bigram nb = {-(double)m->rank, b.left, L->next, L->n + w->s[L->next].n, m->res};
                if (heap_push(w, nb)) return -1;
            }
        }
    }
    for (int32_t i = 0; i != -1; i = w->s[i].next) {
        const sym *s = &w->s[i];
        if (s->id >= 0) {
            if (ivec_push(out, s->id)) return -1;
            continue;
        }
        /* no token for this (single byte) symbol: the reference looks up
         * each byte of its encoded form as a one-byte token */
        const uint32_t *b2u = t->b2u;
        for (uint32_t j = 0; j < s->n; j++) {
            uint8_t enc[4];
            int l = tok_utf8_put(b2u[bytes[s->off + j]], enc);
            for (int k = 0; k < l; k++) {
                int32_t id = tokenizer_find(t, (const char *)&enc[k], 1);
                if (id >= 0 && ivec_push(out, id)) return -1;
            }
        }
    }
    return 0;
}

static int bpe_tokenize(const tokenizer *t, work *w, const uint8_t *text, size_t n, ivec *out) {
    if (n == 0) return 0;
    /* codepoints (invalid UTF-8 -> U+FFFD, as the reference) */
    if (n + 1 > w->ccp) {
        uint32_t *np = realloc(w->cp, (n + 1) * sizeof *np);
        if (!np) return -1;
        w->cp = np;
        w->ccp = n + 1;
    }
    size_t ncp = 0;
    for (size_t i = 0; i < n;) w->cp[ncp++] = tok_utf8_next(text, n, &i);
    svec a = {0}, b = {0};
    int rc = -1;
    if (svec_push(&a, 0, ncp)) goto done;
    for (int k = 0; k < t->n_rx; k++) {
        b.n = 0;
        for (size_t s = 0; s < a.n; s++) {
            size_t p = a.p[s].a, end = a.p[s].b, last = p;
            while (p < end) {
                long m = tok_rx_match(t->rx[k], w->cp, p, end);
                if (m > (long)p) {
                    if (p > last && svec_push(&b, last, p)) goto done;
                    if (svec_push(&b, p, (size_t)m)) goto done;
                    p = last = (size_t)m;
                } else {
                    p++;
                }
            }
            if (last < end && svec_push(&b, last, end)) goto done;
        }
        svec tmp = a; a = b; b = tmp;
    }
    for (size_t s = 0; s < a.n; s++) {
        w->buf.n = 0;
        for (size_t i = a.p[s].a; i < a.p[s].b; i++) {
            if (bvec_reserve(&w->buf, 4)) goto done;
            w->buf.n += (size_t)tok_utf8_put(w->cp[i], w->buf.p + w->buf.n);
        }
        if (bpe_word(t, w, w->buf.p, w->buf.n, out)) goto done;
    }
    rc = 0;
done:
    free(a.p);
    free(b.p);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* WordPiece */

static bool is_cjk(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* First codepoint of the canonical decomposition: NFD with the combining
 * marks it produces dropped (the reference's accent stripping). */
static uint32_t nfd_first(uint32_t c) {
    if (c < 0xC0) return c;
    utf8proc_int32_t buf[8];
    int last = 0;
    utf8proc_ssize_t r = utf8proc_decompose_char((utf8proc_int32_t)c, buf, 8, UTF8PROC_DECOMPOSE, &last);
    if (r >= 1 && r <= 8) return (uint32_t)buf[0];
    return c;
}

/* Splits into words (spans of w->buf, each preceded by ▁). */
static int wpm_words(work *w, const uint8_t *text, size_t n, svec *words) {
    w->buf.n = 0;
    bool in_word = false;
    size_t start = 0;
    for (size_t i = 0; i < n;) {
        uint32_t c = tok_utf8_next(text, n, &i);
        c = nfd_first(c);
        uint8_t f = tok_cp_flags(c);
        if (f & CPF_WS) {
            if (in_word && svec_push(words, start, w->buf.n)) return -1;
            in_word = false;
            continue;
        }
        if (c == 0 || c == 0xFFFD || (f & CPF_C)) continue;
        uint32_t lc = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
        bool single = (f & CPF_P) || (c < 0x7F && (f & CPF_S)) || is_cjk(c);
        if (single && in_word) {
            if (svec_push(words, start, w->buf.n)) return -1;
            in_word = false;
        }
        if (!in_word) {
            if (bvec_reserve(&w->buf, 3)) return -1;
            memcpy(w->buf.p + w->buf.n, "\xe2\x96\x81", 3);
            w->buf.n += 3;
            start = w->buf.n - 3;
            in_word = true;
        }
        if (bvec_reserve(&w->buf, 4)) return -1;
        w->buf.n += (size_t)tok_utf8_put(lc, w->buf.p + w->buf.n);
        if (single) {
            if (svec_push(words, start, w->buf.n)) return -1;
            in_word = false;
        }
    }
    if (in_word && svec_push(words, start, w->buf.n)) return -1;
    return 0;
}

#define WPM_MAX_WORD_CHARS 100

static int wpm_tokenize(const tokenizer *t, work *w, const uint8_t *text, size_t n, ivec *out) {
    svec words = {0};
    int rc = -1;
    if (wpm_words(w, text, n, &words)) goto done;
    for (size_t k = 0; k < words.n; k++) {
        const char *wd = (const char *)w->buf.p + words.p[k].a;
        size_t wl = words.p[k].b - words.p[k].a;
        size_t nchars = 0;
        for (size_t i = 3; i < wl; i++)
            if ((wd[i] & 0xC0) != 0x80) nchars++;
        size_t mark = out->n;
        if (nchars <= WPM_MAX_WORD_CHARS) {
            for (size_t i = 0; i < wl;) {
                size_t j = wl < i + t->max_len ? wl : i + t->max_len;
                int32_t id = -1;
                for (; j > i; j--)
                    if ((id = tokenizer_find(t, wd + i, j - i)) >= 0) break;
                if (id < 0) { out->n = mark; break; }
                if (ivec_push(out, id)) goto done;
                i = j;
            }
        }
        if (out->n == mark && ivec_push(out, t->unk)) goto done;
    }
    rc = 0;
done:
    free(words.p);
    return rc;
}

int tokenizer_normalize(const tokenizer *t, const char *text, size_t len, char **out, size_t *out_len, qerr *e) {
    *out = NULL;
    *out_len = 0;
    bvec r = {0};
    if (t->type != TOKENIZER_WPM) {
        if (bvec_put(&r, text, len)) return qerr_set(e, "out of memory");
    } else {
        work w = {0};
        svec words = {0};
        int rc = wpm_words(&w, (const uint8_t *)text, len, &words);
        for (size_t k = 0; !rc && k < words.n; k++) {
            if (k && bvec_put(&r, " ", 1)) rc = -1;
            if (!rc && bvec_put(&r, w.buf.p + words.p[k].a + 3, words.p[k].b - words.p[k].a - 3)) rc = -1;
        }
        free(words.p);
        free(w.buf.p);
        if (rc || bvec_put(&r, "", 0)) { free(r.p); return qerr_set(e, "out of memory"); }
    }
    if (bvec_put(&r, "", 0)) { free(r.p); return qerr_set(e, "out of memory"); }
    r.p[r.n] = 0;
    *out = (char *)r.p;
    *out_len = r.n;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Encoding: special-token partition, then the model's tokenizer per raw
 * fragment. */

static int32_t special_at(const tokenizer *t, const uint8_t *s, size_t n, bool parse_special) {
    uint8_t c = s[0];
    for (uint32_t k = t->sp_start[c]; k < t->sp_start[c + 1]; k++) {
        int32_t id = t->sp_ids[k];
        if (!parse_special && t->ttype[id] != TOKEN_USER_DEFINED) continue;
        if (t->len[id] <= n && memcmp(t->blob + t->off[id], s, t->len[id]) == 0) return id;
    }
    return -1;
}

static int encode_raw(const tokenizer *t, work *w, const uint8_t *s, size_t n, bool prev_special, ivec *out) {
    if (t->type == TOKENIZER_SPM) {
        bvec *b = &w->buf;
        b->n = 0;
        if (bvec_reserve(b, n * 3 + 4)) return -1;
        if (t->add_space_prefix && prev_special) { memcpy(b->p, "\xe2\x96\x81", 3); b->n = 3; }
        for (size_t i = 0; i < n; i++) {
            if (s[i] == ' ') { memcpy(b->p + b->n, "\xe2\x96\x81", 3); b->n += 3; }
            else b->p[b->n++] = s[i];
        }
        return spm_tokenize(t, w, b->p, b->n, out);
    }
    if (t->type == TOKENIZER_BPE) return bpe_tokenize(t, w, s, n, out);
    return wpm_tokenize(t, w, s, n, out);
}

int tokenizer_encode(const tokenizer *t, const char *text, size_t len, bool add_special, bool parse_special,
                     int32_t **ids, size_t *n_ids, qerr *e) {
    *ids = NULL;
    *n_ids = 0;
    if (!text && len) return qerr_set(e, "tokenizer: NULL text");
    ivec out = {0};
    work w = {0};
    int rc = 0;
    const uint8_t *s = (const uint8_t *)text;
    if (add_special && t->add_bos && t->bos >= 0) rc |= ivec_push(&out, t->bos);
    bool prev_special = true;
    size_t start = 0;
    for (size_t i = 0; i < len && !rc;) {
        int32_t sp = t->sp_start[s[i]] < t->sp_start[s[i] + 1] ? special_at(t, s + i, len - i, parse_special) : -1;
        if (sp < 0) { i++; continue; }
        if (i > start) { rc |= encode_raw(t, &w, s + start, i - start, prev_special, &out); prev_special = false; }
        if (!rc) rc |= ivec_push(&out, sp);
        prev_special = true;
        i += t->len[sp];
        start = i;
    }
    if (!rc && start < len) rc |= encode_raw(t, &w, s + start, len - start, prev_special, &out);
    if (!rc && add_special && t->type == TOKENIZER_WPM && t->add_sep && t->sep >= 0) rc |= ivec_push(&out, t->sep);
    if (!rc && add_special && t->add_eos && t->eos >= 0) rc |= ivec_push(&out, t->eos);
    free(w.s);
    free(w.h);
    free(w.buf.p);
    free(w.cp);
    if (rc) { free(out.p); return qerr_set(e, "tokenizer: out of memory (input %zu bytes)", len); }
    *ids = out.p;
    *n_ids = out.n;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Decoding */

static bool strips_leading_space(const tokenizer *t) {
    return (t->type == TOKENIZER_SPM && t->add_space_prefix) || t->type == TOKENIZER_WPM;
}

int tokenizer_decode(const tokenizer *t, const int32_t *ids, size_t n, char **text, size_t *len, qerr *e) {
    *text = NULL;
    *len = 0;
    bvec b = {0};
    bool strip = strips_leading_space(t);
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab) { free(b.p); return qerr_set(e, "tokenizer: token id %d out of range (n_vocab %d)", ids[i], t->n_vocab); }
        size_t pl;
        const char *p = tokenizer_piece(t, ids[i], &pl);
        if (i == 0 && ids[i] == t->bos) continue;
        if (strip) {
            if (pl && p[0] == ' ') { p++; pl--; }
            strip = false;
        }
        if (bvec_put(&b, p, pl)) { free(b.p); return qerr_set(e, "out of memory"); }
    }
    if (bvec_put(&b, "", 0)) { free(b.p); return qerr_set(e, "out of memory"); }
    b.p[b.n] = 0;
    *text = (char *)b.p;
    *len = b.n;
    return 0;
}

struct detok_stream {
    const tokenizer *t;
    size_t n_fed;
    bool strip;
    uint8_t held[4];
    size_t n_held;
    bvec out;
};

detok_stream *detok_stream_new(const tokenizer *t) {
    detok_stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->t = t;
    s->strip = strips_leading_space(t);
    return s;
}

void detok_stream_free(detok_stream *s) {
    if (!s) return;
    free(s->out.p);
    free(s);
}

/* Length of the trailing bytes of b[0..n) that begin a UTF-8 sequence
 * which could still complete with more bytes (0 if none). */
static size_t incomplete_tail(const uint8_t *b, size_t n) {
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        uint8_t c = b[n - k];
        if ((c & 0xC0) == 0x80) continue; /* continuation: look further back */
        int need = c >= 0xF0 && c < 0xF8 ? 4 : c >= 0xE0 && c < 0xF0 ? 3 : c >= 0xC0 && c < 0xE0 ? 2 : 1;
        return (size_t)need > k ? k : 0;
    }
    return 0;
}

int detok_stream_feed(detok_stream *s, int32_t id, const char **out, size_t *out_len, qerr *e) {
    *out = "";
    *out_len = 0;
    const tokenizer *t = s->t;
    if (id < 0 || id >= t->n_vocab) return qerr_set(e, "tokenizer: token id %d out of range (n_vocab %d)", id, t->n_vocab);
    size_t pl;
    const char *p = tokenizer_piece(t, id, &pl);
    bool first = s->n_fed++ == 0;
    if (first && id == t->bos) return 0;
    if (s->strip) {
        if (pl && p[0] == ' ') { p++; pl--; }
        s->strip = false;
    }
    s->out.n = 0;
    if (bvec_put(&s->out, s->held, s->n_held) || bvec_put(&s->out, p, pl)) return qerr_set(e, "out of memory");
    size_t keep = incomplete_tail(s->out.p, s->out.n);
    s->n_held = keep;
    memcpy(s->held, s->out.p + s->out.n - keep, keep);
    s->out.n -= keep;
    *out = (const char *)s->out.p;
    *out_len = s->out.n;
    return 0;
}

void detok_stream_flush(detok_stream *s, const char **out, size_t *out_len) {
    s->out.n = 0;
    if (bvec_put(&s->out, s->held, s->n_held)) { *out = ""; *out_len = 0; }
    else { *out = (const char *)s->out.p; *out_len = s->out.n; }
    s->n_held = 0;
    s->n_fed = 0;
    s->strip = strips_leading_space(s->t);
}
