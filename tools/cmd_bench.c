/* cmd_bench.c — `quire bench MODE ...`: dispatches benchmark modes. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cmd_bench_ann(int argc, char **argv);
void help_bench_ann(FILE *out);

void help_bench(FILE *out) {
    fprintf(out, "usage: quire bench MODE [OPTIONS]\n"
                 "modes:\n"
                 "  ann   approximate nearest-neighbour index (HNSW) recall and queries/s\n\n");
    help_bench_ann(out);
}

int cmd_bench(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "ann") == 0) return cmd_bench_ann(argc - 1, argv + 1);
    fprintf(stderr, "quire bench: only 'ann' is available in this build\n");
    return EXIT_USAGE;
}
