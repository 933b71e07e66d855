/* fuzz_tokenizer_wordpiece.c — encode arbitrary bytes with the bert-bge vocabulary and
 * decode the result (whole and streaming). */
#include "tok_fuzz.h"

TOK_FUZZ_TARGET("vocab/ggml-vocab-bert-bge.gguf")
