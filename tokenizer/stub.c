/* stub.c — placeholder until the tokenizer module lands. */
#include "tokenizer/tokenizer.h"
int tokenizer_load(tokenizer **out, const gguf *g, qerr *e) { (void)g; *out = NULL; return qerr_set(e, "tokenizer not built yet"); }
void tokenizer_free(tokenizer *t) { (void)t; }
int tokenizer_n_vocab(const tokenizer *t) { (void)t; return 0; }
int32_t tokenizer_bos(const tokenizer *t) { (void)t; return -1; }
int32_t tokenizer_eos(const tokenizer *t) { (void)t; return -1; }
bool tokenizer_add_bos(const tokenizer *t) { (void)t; return false; }
bool tokenizer_add_eos(const tokenizer *t) { (void)t; return false; }
bool tokenizer_is_eog(const tokenizer *t, int32_t id) { (void)t; (void)id; return true; }
int tokenizer_encode(const tokenizer *t, const char *text, size_t len, bool a, bool b, int32_t **ids, size_t *n, qerr *e) {
    (void)t; (void)text; (void)len; (void)a; (void)b; *ids = NULL; *n = 0; return qerr_set(e, "tokenizer not built yet");
}
const char *tokenizer_piece(const tokenizer *t, int32_t id, size_t *len) { (void)t; (void)id; *len = 0; return ""; }
