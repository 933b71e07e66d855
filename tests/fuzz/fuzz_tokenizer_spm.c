/* fuzz_tokenizer_spm.c — encode arbitrary bytes with the llama-spm vocabulary and
 * decode the result (whole and streaming). */
#include "tok_fuzz.h"

TOK_FUZZ_TARGET("vocab/ggml-vocab-llama-spm.gguf")
