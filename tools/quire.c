/* quire.c — entry point: dispatches to the subcommands in tools/cmd_*.c. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define DECLARE(n) int cmd_##n(int, char **); void help_##n(FILE *)
DECLARE(info);
DECLARE(tokenize);
DECLARE(detokenize);
DECLARE(bench_tokenizer);

static const cli_command commands[] = {
    {"info", "print a GGUF file's architecture, sizes and tensor types", cmd_info, help_info},
    {"tokenize", "print the token ids of a text", cmd_tokenize, help_tokenize},
    {"detokenize", "print the text of token ids", cmd_detokenize, help_detokenize},
    {"bench-tokenizer", "measure tokenizer throughput (MB/s, tokens/s)", cmd_bench_tokenizer, help_bench_tokenizer},
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
