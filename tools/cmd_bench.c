/* cmd_bench.c — `quire bench`: model throughput (pp/tg, the default) or
 * `quire bench ann` for the vector index, `quire bench grammar` for token masks. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cmd_bench_model(int argc, char **argv);
void help_bench_model(FILE *out);
int cmd_bench_ann(int argc, char **argv);
void help_bench_ann(FILE *out);
int cmd_bench_grammar(int argc, char **argv);
void help_bench_grammar(FILE *out);

void help_bench(FILE *out) {
    help_bench_model(out);
    fprintf(out, "\n");
    help_bench_ann(out);
    fprintf(out, "\n");
    help_bench_grammar(out);
}

int cmd_bench(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "ann") == 0) return cmd_bench_ann(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "grammar") == 0) return cmd_bench_grammar(argc - 1, argv + 1);
    return cmd_bench_model(argc, argv);
}
