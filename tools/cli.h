/* cli.h — what the quire subcommands share: the command table, argument
 * helpers and a small JSON writer for machine-readable output. */
#ifndef QUIRE_CLI_H
#define QUIRE_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "engine/engine.h"

/* Exit codes of the outside contract. */
enum { EXIT_OK = 0, EXIT_NEGATIVE = 1, EXIT_USAGE = 2 };

typedef struct cli_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
    void (*help)(FILE *out);
} cli_command;

/* Prints "quire CMD: message" to stderr and returns EXIT_USAGE. */
int cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* True when argv[i] is --help or -h anywhere. */
bool cli_wants_help(int argc, char **argv);
/* Value of the option at argv[*i] (advances *i); NULL and a message if missing. */
const char *cli_value(const char *cmd, int argc, char **argv, int *i);
bool cli_parse_int(const char *s, long long *out);
bool cli_parse_float(const char *s, double *out);

/* JSON files for the sgr commands (tools/schema_file.c): a whole file
 * parsed strictly (errors name the file), and the $ref loader schema
 * commands use — file: URIs only, nothing is fetched. */
struct json;
int cli_load_json(const char *path, struct json **out, qerr *e);
int cli_schema_file_loader(void *ud, const char *uri, struct json **out, qerr *e);

/* JSON writer to a FILE, with comma bookkeeping. */
typedef struct jw {
    FILE *f;
    int depth;
    bool need_comma[64];
    bool after_key;
} jw;
void jw_init(jw *w, FILE *f);
void jw_obj_begin(jw *w);
void jw_obj_end(jw *w);
void jw_arr_begin(jw *w);
void jw_arr_end(jw *w);
void jw_key(jw *w, const char *k);
void jw_str(jw *w, const char *s);
void jw_strn(jw *w, const char *s, size_t n);
void jw_int(jw *w, long long v);
void jw_num(jw *w, double v);
void jw_bool(jw *w, bool v);
void jw_null(jw *w);

#endif
