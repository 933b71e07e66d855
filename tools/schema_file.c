/* schema_file.c — reading JSON and JSON Schema files for the commands that
 * take them (schema, extract, eval extract). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sgr/sgr.h"

int cli_load_json(const char *path, json **out, qerr *e) {
    char *buf;
    size_t len;
    if (q_read_file(path, &buf, &len, e)) return -1;
    int rc = json_parse(buf, len, NULL, out, e);
    free(buf);
    if (rc) qerr_wrap(e, "%s", path);
    return rc;
}

int cli_schema_file_loader(void *ud, const char *uri, json **out, qerr *e) {
    (void)ud;
    if (strncmp(uri, "file://", 7) != 0) return qerr_set(e, "remote $ref not available offline: %s", uri);
    return cli_load_json(uri + 7, out, e);
}
