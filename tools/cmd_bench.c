/* cmd_bench.c — `quire bench`: model throughput (pp/tg, the default) or
 * `quire bench ann` for the vector index. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cmd_bench_model(int argc, char **argv);
void help_bench_model(FILE *out);

void help_bench(FILE *out) {
    help_bench_model(out);
}

int cmd_bench(int argc, char **argv) {
    return cmd_bench_model(argc, argv);
}
