/* cmd_quantize.c — `quire quantize IN.gguf OUT.gguf TYPE [-t THREADS]`. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

void help_quantize(FILE *out) {
    fprintf(out, "usage: quire quantize IN.gguf OUT.gguf TYPE [-t THREADS]\n"
                 "  Converts a model to TYPE with the reference implementation's tensor-type rules\n"
                 "  (norms and biases stay F32; output.weight and the _M mixes get more bits).\n"
                 "  TYPE: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q3_K_S Q3_K_M Q3_K_L\n"
                 "        Q4_K (=Q4_K_M) Q4_K_S Q4_K_M Q5_K (=Q5_K_M) Q5_K_S Q5_K_M Q6_K\n"
                 "  -t THREADS  worker threads (default: all CPUs)\n");
}

int cmd_quantize(int argc, char **argv) {
    const char *pos[3] = {NULL, NULL, NULL};
    int n_pos = 0;
    long long threads = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-t") == 0 || strcmp(argv[i], "--threads") == 0) {
            const char *v = cli_value("quantize", argc, argv, &i);
            if (!v) return EXIT_USAGE;
            if (!cli_parse_int(v, &threads) || threads < 1 || threads > 1024)
                return cli_fail("quantize", "bad thread count '%s'", v);
        } else if (argv[i][0] == '-' && argv[i][1] != 0) {
            return cli_fail("quantize", "unknown option %s", argv[i]);
        } else if (n_pos < 3) {
            pos[n_pos++] = argv[i];
        } else {
            return cli_fail("quantize", "too many arguments (usage: quire quantize IN.gguf OUT.gguf TYPE [-t THREADS])");
        }
    }
    if (n_pos < 3) return cli_fail("quantize", "usage: quire quantize IN.gguf OUT.gguf TYPE [-t THREADS]");
    if (q_quant_ftype_from_name(pos[2]) < 0) return cli_fail("quantize", "unknown type '%s' (see quire quantize --help)", pos[2]);
    qerr e;
    double t0 = q_now();
    if (q_quantize_model(pos[0], pos[1], pos[2], (int)threads, &e)) return cli_fail("quantize", "%s", e.msg);
    fprintf(stderr, "quire quantize: wrote %s (%s) in %.2f s\n", pos[1], pos[2], q_now() - t0);
    return EXIT_OK;
}
