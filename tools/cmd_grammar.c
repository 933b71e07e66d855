/* cmd_grammar.c — `quire grammar check FILE` (0 if the GBNF-like grammar
 * parses and compiles, 2 naming the problem) and `quire grammar print FILE`
 * (the compiled rules in the builder's text form, with automaton size). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sgr/sgr.h"

void help_grammar(FILE *out) {
    fprintf(out,
            "usage: quire grammar check FILE [--json]\n"
            "       quire grammar print FILE | --regex RE\n"
            "       quire grammar check --regex RE\n\n"
            "Checks that a GBNF-like grammar (rules `name ::= ...`, start rule root) parses and\n"
            "compiles to the constrained-decoding automaton; exit 0, or 2 with the problem\n"
            "(line and column for syntax errors, the rule for left recursion).\n");
}

int cmd_grammar(int argc, char **argv) {
    if (argc < 3) return cli_fail("grammar", "usage: quire grammar check|print FILE");
    const char *sub = argv[1];
    bool json = false, is_regex = false;
    const char *src = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) json = true;
        else if (strcmp(argv[i], "--regex") == 0) {
            const char *v = cli_value("grammar", argc, argv, &i);
            if (!v) return EXIT_USAGE;
            src = v;
            is_regex = true;
        } else if (!src) src = argv[i];
        else return cli_fail("grammar", "unexpected argument '%s'", argv[i]);
    }
    if (strcmp(sub, "check") != 0 && strcmp(sub, "print") != 0) return cli_fail("grammar", "unknown subcommand '%s' (check, print)", sub);
    if (!src) return cli_fail("grammar", "missing FILE");
    qerr e;
    sgr_grammar *g = NULL;
    sgr_gb *b = sgr_gb_new(NULL);
    if (!b) return cli_fail("grammar", "out of memory");
    int32_t root = -1;
    if (is_regex) {
        root = sgr_gb_rule(b, "root");
        sgr_expr x = sgr_gb_regex(b, src, strlen(src), &e);
        if (x == SGR_EXPR_ERR || sgr_gb_define(b, root, x) < 0) { sgr_gb_free(b); return cli_fail("grammar", "%s", e.msg); }
    } else {
        char *text;
        size_t n;
        if (q_read_file(src, &text, &n, &e) < 0) { sgr_gb_free(b); return cli_fail("grammar", "%s", e.msg); }
        int rc = sgr_gb_parse_text(b, text, n, &root, &e);
        free(text);
        if (rc < 0) { sgr_gb_free(b); return cli_fail("grammar", "%s: %s", src, e.msg); }
    }
    if (sgr_grammar_build(b, root, &g, &e) < 0) { sgr_gb_free(b); return cli_fail("grammar", "%s", e.msg); }
    if (strcmp(sub, "print") == 0) {
        char *out;
        size_t n;
        if (sgr_gb_print(b, &out, &n, &e) < 0) { sgr_gb_free(b); sgr_grammar_free(g); return cli_fail("grammar", "%s", e.msg); }
        fwrite(out, 1, n, stdout);
        free(out);
    } else if (json) {
        jw w;
        jw_init(&w, stdout);
        jw_obj_begin(&w);
        jw_key(&w, "ok");
        jw_bool(&w, true);
        jw_key(&w, "states");
        jw_int(&w, (long long)sgr_grammar_n_states(g));
        jw_obj_end(&w);
        printf("\n");
    } else {
        printf("ok: %zu automaton states\n", sgr_grammar_n_states(g));
    }
    sgr_grammar_free(g);
    sgr_gb_free(b);
    return EXIT_OK;
}
