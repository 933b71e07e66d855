/* tokenizer.h — text <-> token ids for the vocabularies GGUF files carry:
 * SentencePiece-style BPE ("llama"), byte-level BPE ("gpt2") with the
 * pre-tokenizer named by tokenizer.ggml.pre, and WordPiece ("bert").
 * Behaviour follows the reference implementation (llama.cpp) so that its
 * conformance vectors reproduce exactly. All functions are thread-safe on a
 * loaded tokenizer (it is read-only after tokenizer_load). */
#ifndef QUIRE_TOKENIZER_H
#define QUIRE_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"

typedef struct tokenizer tokenizer;

enum tokenizer_type { TOKENIZER_SPM = 1, TOKENIZER_BPE = 2, TOKENIZER_WPM = 3 };

/* GGUF token types (tokenizer.ggml.token_type). */
enum token_type {
    TOKEN_NORMAL = 1, TOKEN_UNKNOWN = 2, TOKEN_CONTROL = 3,
    TOKEN_USER_DEFINED = 4, TOKEN_UNUSED = 5, TOKEN_BYTE = 6
};

/* Loads the vocabulary from GGUF metadata and copies what it needs (the gguf
 * may be closed afterwards). Errors: missing or mistyped arrays, length
 * mismatches, special ids out of range, unknown model or pre-tokenizer. */
int tokenizer_load(tokenizer **out, const gguf *g, qerr *e);
void tokenizer_free(tokenizer *t);

int tokenizer_type(const tokenizer *t); /* enum tokenizer_type */
int tokenizer_n_vocab(const tokenizer *t);
int32_t tokenizer_bos(const tokenizer *t); /* -1 if none (WordPiece: [CLS]) */
int32_t tokenizer_eos(const tokenizer *t); /* -1 if none */
int32_t tokenizer_unk(const tokenizer *t); /* -1 if none */
int32_t tokenizer_sep(const tokenizer *t); /* -1 if none */
bool tokenizer_add_bos(const tokenizer *t);
bool tokenizer_add_eos(const tokenizer *t);
/* End of generation: eos, eot, eom and control tokens such as <|im_end|>. */
bool tokenizer_is_eog(const tokenizer *t, int32_t id);
/* Token type of id (enum token_type); 0 for an id out of range. */
int tokenizer_token_type(const tokenizer *t, int32_t id);
/* The token's text as stored in the vocabulary (not decoded); NULL if out of range. */
const char *tokenizer_token_text(const tokenizer *t, int32_t id, size_t *len);
/* Id of a token by its exact vocabulary text; -1 if absent. */
int32_t tokenizer_find(const tokenizer *t, const char *text, size_t len);

/* Encodes text (any bytes; invalid UTF-8 never fails).
 * add_special: BOS/EOS as the vocabulary says ([CLS] ... [SEP] for WordPiece).
 * parse_special: text of CONTROL tokens (e.g. "<|im_end|>") becomes that token.
 * USER_DEFINED tokens are always matched as whole tokens, as in the reference.
 * *ids is malloc'd (caller frees; may be NULL when *n_ids is 0). */
int tokenizer_encode(const tokenizer *t, const char *text, size_t len, bool add_special,
                     bool parse_special, int32_t **ids, size_t *n_ids, qerr *e);

/* Bytes a token contributes to output text: SPM "▁" -> space and <0xNN> ->
 * the byte; BPE byte-level characters -> bytes; WordPiece "▁" -> space.
 * Control, unknown and unused tokens contribute nothing. NULL (len 0) for an
 * id out of range. */
const char *tokenizer_piece(const tokenizer *t, int32_t id, size_t *len);

/* Whole detokenization: the pieces concatenated; for vocabularies with a
 * space prefix (SPM) and for WordPiece, the one leading space of the first
 * token (after a leading BOS) is dropped. *text is malloc'd and
 * NUL-terminated (not counted in *len). Ids out of range are an error. */
int tokenizer_decode(const tokenizer *t, const int32_t *ids, size_t n, char **text, size_t *len, qerr *e);

/* Normalization the tokenizer applies before splitting into tokens, as
 * text: WordPiece gives its words (lower-cased, accents stripped,
 * punctuation and CJK split off, control characters dropped) joined by
 * single spaces; SPM and BPE return the text unchanged. Malloc'd. */
int tokenizer_normalize(const tokenizer *t, const char *text, size_t len, char **out, size_t *out_len, qerr *e);

/* Streaming detokenizer: feed ids one at a time and get only complete UTF-8
 * out; an incomplete trailing sequence is held back until it completes (or
 * until it can no longer complete, then its bytes are released as they are).
 * The concatenation of every output plus the final flush equals
 * tokenizer_decode of the same ids. */
typedef struct detok_stream detok_stream;
detok_stream *detok_stream_new(const tokenizer *t);
void detok_stream_free(detok_stream *s);
/* *out points into the stream's buffer, valid until the next call. */
int detok_stream_feed(detok_stream *s, int32_t id, const char **out, size_t *out_len, qerr *e);
/* Releases whatever is held back (end of the stream) and resets the stream. */
void detok_stream_flush(detok_stream *s, const char **out, size_t *out_len);

#endif
