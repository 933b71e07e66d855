/* search_cli.h — options shared by `quire search` and `quire eval retrieval`. */
#ifndef QUIRE_SEARCH_CLI_H
#define QUIRE_SEARCH_CLI_H

#include "cli.h"
#include "rag/rag.h"

typedef struct search_cli {
    search_opts o;
    filter *filter;
    const char *principals[64];
    int n_principals;
    bool profile;
} search_cli;

/* Parses argv[*i] if it is a shared option: 0 consumed, -1 not ours,
 * > 0 an exit code (message printed). */
int search_parse_common(const char *cmd, int argc, char **argv, int *i, search_cli *s);
void search_print_profile(const double *t, int n_queries);
void search_json_timings(jw *w, const double *t);

#endif
