/* quire.c — entry point: dispatches to the subcommands in tools/cmd_*.c. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define DECLARE(n) int cmd_##n(int, char **); void help_##n(FILE *)
DECLARE(info);
DECLARE(logits);
DECLARE(run);
DECLARE(bench);
DECLARE(eval);
DECLARE(quantize);
DECLARE(synth);
DECLARE(schema);
DECLARE(extract);
DECLARE(serve);
DECLARE(tokenize);
DECLARE(detokenize);
DECLARE(bench_tokenizer);
DECLARE(index);
DECLARE(search);
DECLARE(embed);
DECLARE(chat);
DECLARE(grammar);

static const cli_command commands[] = {
    {"info", "print a GGUF file's architecture, sizes and tensor types", cmd_info, help_info},
    {"logits", "evaluate token ids and write the logits after each (float32)", cmd_logits, help_logits},
    {"chat", "interactive multi-turn chat (chat template, KV cache reused between turns)", cmd_chat, help_chat},
    {"tokenize", "print the token ids of a text", cmd_tokenize, help_tokenize},
    {"detokenize", "print the text of token ids", cmd_detokenize, help_detokenize},
    {"bench-tokenizer", "measure tokenizer throughput (MB/s, tokens/s)", cmd_bench_tokenizer, help_bench_tokenizer},
    {"run", "generate text from a prompt (streamed)", cmd_run, help_run},
    {"bench", "measure prompt and generation throughput (or: bench ann)", cmd_bench, help_bench},
    {"quantize", "convert a GGUF model to another tensor type (Q4_K_M, Q8_0, ...)", cmd_quantize, help_quantize},
    {"synth", "write a random-weight model at a real model's shape (for benchmarks)", cmd_synth, help_synth},
    {"schema", "validate JSON against a JSON Schema, or check a schema is supported", cmd_schema, help_schema},
    {"extract", "a document + a JSON Schema -> one conforming JSON document (constrained generation)", cmd_extract, help_extract},
    {"grammar", "check or print a GBNF-like grammar for constrained decoding", cmd_grammar, help_grammar},
    {"serve", "run the HTTP service (OpenAI-compatible API)", cmd_serve, help_serve},
    {"eval", "evaluate a model: perplexity over a text (eval ppl)", cmd_eval, help_eval},
    {"embed", "embed a text with a BERT encoder (L2-normalized)", cmd_embed, help_embed},
    {"index", "build a retrieval index: add JSONL / text / Markdown documents, rm, verify", cmd_index, help_index},
    {"search", "search an index: BM25, vector or hybrid, with filters and ACL principals", cmd_search, help_search},
};

static void usage(FILE *out) {
    fprintf(out, "usage: quire COMMAND [OPTIONS]   (quire COMMAND --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return EXIT_USAGE; }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("quire %s\n", QUIRE_VERSION);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            if (cli_wants_help(argc - 1, argv + 1)) { commands[i].help(stdout); return EXIT_OK; }
            return commands[i].run(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "quire: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
