/* cmd_schema.c — `quire schema validate SCHEMA INSTANCE` and
 * `quire schema check SCHEMA`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sgr/sgr.h"

void help_schema(FILE *out) {
    fprintf(out, "usage: quire schema validate SCHEMA.json INSTANCE.json [--assert-format]\n"
                 "       quire schema check SCHEMA.json\n"
                 "  validate  exit 0 when the instance is valid, 1 when it is not (stderr names the\n"
                 "            JSON pointer of the first error and the keyword that failed), 2 on bad\n"
                 "            input (unreadable or malformed JSON, a schema that does not compile)\n"
                 "  check     exit 0 when every keyword of the schema is supported, 2 naming the first\n"
                 "            unsupported keyword and the JSON pointer of the schema object holding it\n"
                 "  --assert-format  treat \"format\" as an assertion (by default an annotation)\n"
                 "  JSON Schema draft 2020-12, plus drafts 4-7 ($schema selects); remote $refs are\n"
                 "  resolved only to files: a URI file:///path or a relative reference is read from\n"
                 "  disk relative to the schema file.\n");
}

static int load(const char *path, json **out, qerr *e) {
    char *buf;
    size_t len;
    if (q_read_file(path, &buf, &len, e)) return -1;
    int rc = json_parse(buf, len, NULL, out, e);
    free(buf);
    if (rc) qerr_wrap(e, "%s", path);
    return rc;
}

/* Remote $ref loader: file: URIs only (no network). */
static int file_loader(void *ud, const char *uri, json **out, qerr *e) {
    (void)ud;
    if (strncmp(uri, "file://", 7) != 0) return qerr_set(e, "remote $ref not available offline: %s", uri);
    return load(uri + 7, out, e);
}

int cmd_schema(int argc, char **argv) {
    if (argc < 2) return cli_fail("schema", "missing subcommand (validate or check; see quire schema --help)");
    const char *sub = argv[1];
    const char *files[2] = {NULL, NULL};
    int nf = 0;
    bool assert_format = false;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--assert-format") == 0) assert_format = true;
        else if (argv[i][0] == '-' && argv[i][1]) return cli_fail("schema", "unknown option %s", argv[i]);
        else if (nf < 2) files[nf++] = argv[i];
        else return cli_fail("schema", "too many arguments");
    }
    bool validate = strcmp(sub, "validate") == 0;
    if (!validate && strcmp(sub, "check") != 0) return cli_fail("schema", "unknown subcommand '%s' (validate or check)", sub);
    if (nf != (validate ? 2 : 1))
        return cli_fail("schema", validate ? "usage: quire schema validate SCHEMA.json INSTANCE.json"
                                           : "usage: quire schema check SCHEMA.json");
    qerr e;
    json *doc = NULL, *inst = NULL;
    if (load(files[0], &doc, &e)) return cli_fail("schema", "%s", e.msg);
    char base[4200];
    char *abs = realpath(files[0], NULL);
    snprintf(base, sizeof base, "file://%s", abs ? abs : files[0]);
    free(abs);
    schema_opts so = {0};
    so.assert_format = assert_format;
    so.load = file_loader;
    so.base_uri = base;
    schema *s;
    if (schema_compile(doc, &so, &s, &e)) { json_free(doc); return cli_fail("schema", "%s: %s", files[0], e.msg); }
    json_free(doc);
    int rc = EXIT_OK;
    if (!validate) {
        if (s->n_unknown) {
            const char *kw = s->unknown[0].keyword;
            bool fmt = strncmp(kw, "format \"", 8) == 0; /* a format value it cannot check */
            fprintf(stderr, "quire schema: unsupported %s%s%s at %s (%zu unsupported in all)\n", fmt ? "" : "keyword \"",
                    kw, fmt ? "" : "\"", s->unknown[0].pointer, s->n_unknown);
            rc = EXIT_USAGE;
        }
    } else if (load(files[1], &inst, &e)) {
        rc = cli_fail("schema", "%s", e.msg);
    } else {
        schema_error err;
        int v = schema_validate(s, inst, &err);
        if (v < 0) rc = cli_fail("schema", "validation stopped: %s", err.msg);
        else if (v == 0) {
            fprintf(stderr, "invalid at %s: keyword %s: %s (schema %s)\n", err.instance_ptr[0] ? err.instance_ptr : "/",
                    err.keyword, err.msg, err.schema_ptr[0] ? err.schema_ptr : "/");
            rc = EXIT_NEGATIVE;
        }
    }
    json_free(inst);
    schema_free(s);
    return rc;
}
