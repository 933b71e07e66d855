/* cli.c — argument helpers and the JSON writer. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int cli_fail(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "quire %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return EXIT_USAGE;
}

bool cli_wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return true;
    return false;
}

const char *cli_value(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        cli_fail(cmd, "option %s needs a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

bool cli_parse_int(const char *s, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) return false;
    *out = v;
    return true;
}

bool cli_parse_float(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || isnan(v)) return false;
    *out = v;
    return true;
}

void jw_init(jw *w, FILE *f) { memset(w, 0, sizeof *w); w->f = f; }

static void jw_raw_str(jw *w, const char *s, size_t n);

static void jw_pre(jw *w) {
    if (w->after_key) { w->after_key = false; return; }
    if (w->depth > 0 && w->need_comma[w->depth]) fputc(',', w->f);
    if (w->depth > 0) w->need_comma[w->depth] = true;
}

void jw_obj_begin(jw *w) { jw_pre(w); fputc('{', w->f); w->depth++; w->need_comma[w->depth] = false; }
void jw_obj_end(jw *w) { fputc('}', w->f); w->depth--; if (w->depth == 0) fputc('\n', w->f); }
void jw_arr_begin(jw *w) { jw_pre(w); fputc('[', w->f); w->depth++; w->need_comma[w->depth] = false; }
void jw_arr_end(jw *w) { fputc(']', w->f); w->depth--; if (w->depth == 0) fputc('\n', w->f); }
void jw_key(jw *w, const char *k) { jw_pre(w); jw_raw_str(w, k, strlen(k)); fputc(':', w->f); w->after_key = true; }

static void jw_raw_str(jw *w, const char *s, size_t n) {
    fputc('"', w->f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': fputs("\\\"", w->f); break;
        case '\\': fputs("\\\\", w->f); break;
        case '\n': fputs("\\n", w->f); break;
        case '\r': fputs("\\r", w->f); break;
        case '\t': fputs("\\t", w->f); break;
        case '\b': fputs("\\b", w->f); break;
        case '\f': fputs("\\f", w->f); break;
        default:
            if (c < 0x20) fprintf(w->f, "\\u%04x", c);
            else fputc(c, w->f);
        }
    }
    fputc('"', w->f);
}
void jw_strn(jw *w, const char *s, size_t n) { jw_pre(w); jw_raw_str(w, s, n); }
void jw_str(jw *w, const char *s) { jw_strn(w, s, strlen(s)); }
void jw_int(jw *w, long long v) { jw_pre(w); fprintf(w->f, "%lld", v); }
void jw_num(jw *w, double v) {
    jw_pre(w);
    if (!isfinite(v)) fputs("null", w->f);
    else fprintf(w->f, "%.9g", v);
}
void jw_bool(jw *w, bool v) { jw_pre(w); fputs(v ? "true" : "false", w->f); }
void jw_null(jw *w) { jw_pre(w); fputs("null", w->f); }
