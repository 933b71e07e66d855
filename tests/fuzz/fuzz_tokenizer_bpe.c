/* fuzz_tokenizer_bpe.c — encode arbitrary bytes with the gpt-2 vocabulary and
 * decode the result (whole and streaming). */
#include "tok_fuzz.h"

TOK_FUZZ_TARGET("vocab/ggml-vocab-gpt-2.gguf")
