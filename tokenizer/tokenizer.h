/* tokenizer.h — placeholder until the tokenizer module lands (same API). */
#ifndef QUIRE_TOKENIZER_H
#define QUIRE_TOKENIZER_H
#include "engine/engine.h"
typedef struct tokenizer tokenizer;
int tokenizer_load(tokenizer **out, const gguf *g, qerr *e);
void tokenizer_free(tokenizer *t);
int tokenizer_n_vocab(const tokenizer *t);
int32_t tokenizer_bos(const tokenizer *t);
int32_t tokenizer_eos(const tokenizer *t);
bool tokenizer_add_bos(const tokenizer *t);
bool tokenizer_add_eos(const tokenizer *t);
bool tokenizer_is_eog(const tokenizer *t, int32_t id);
int tokenizer_encode(const tokenizer *t, const char *text, size_t len, bool add_special, bool parse_special,
                     int32_t **ids, size_t *n_ids, qerr *e);
const char *tokenizer_piece(const tokenizer *t, int32_t id, size_t *len);
#endif
