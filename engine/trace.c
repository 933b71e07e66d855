/* trace.c — in-memory span recorder and Chrome trace-event writer. */
#include "engine/engine.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct span {
    char name[48], cat[16];
    double t0, t1;
    long long arg;
} span;

struct qtrace {
    span *s;
    size_t n, cap;
    double origin;
    bool oom;
};

qtrace *qtrace_new(void) {
    qtrace *t = calloc(1, sizeof *t);
    if (t) t->origin = q_now();
    return t;
}

void qtrace_free(qtrace *t) {
    if (!t) return;
    free(t->s);
    free(t);
}

size_t qtrace_count(const qtrace *t) { return t ? t->n : 0; }

void qtrace_span(qtrace *t, const char *name, const char *cat, double t0, double t1, long long arg) {
    if (!t || t->oom) return;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 1024;
        span *s = realloc(t->s, cap * sizeof *s);
        if (!s) { t->oom = true; return; }
        t->s = s;
        t->cap = cap;
    }
    span *s = &t->s[t->n++];
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->cat, sizeof s->cat, "%s", cat);
    s->t0 = t0;
    s->t1 = t1;
    s->arg = arg;
}

static void put_escaped(FILE *f, const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
}

int qtrace_write(const qtrace *t, const char *path, qerr *e) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return qerr_set(e, "out of memory");
    fprintf(f, "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n");
    fprintf(f, "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"tid\":1,\"args\":{\"name\":\"quire\"}}");
    for (size_t i = 0; t && i < t->n; i++) {
        const span *s = &t->s[i];
        fprintf(f, ",\n{\"name\":\"");
        put_escaped(f, s->name);
        fprintf(f, "\",\"cat\":\"");
        put_escaped(f, s->cat);
        fprintf(f, "\",\"ph\":\"X\",\"pid\":1,\"tid\":1,\"ts\":%.3f,\"dur\":%.3f", (s->t0 - t->origin) * 1e6,
                (s->t1 - s->t0) * 1e6);
        if (s->arg >= 0) fprintf(f, ",\"args\":{\"n\":%lld}", s->arg);
        fputc('}', f);
    }
    fprintf(f, "\n]}\n");
    fclose(f);
    int rc = q_write_file_atomic(path, buf, len, e);
    free(buf);
    return rc;
}

size_t qtrace_totals(const qtrace *t, const char *cat, char (*names)[48], double *secs, size_t max) {
    size_t n = 0;
    for (size_t i = 0; t && i < t->n; i++) {
        const span *sp = &t->s[i];
        if (strcmp(sp->cat, cat) != 0) continue;
        size_t k = 0;
        while (k < n && strcmp(names[k], sp->name) != 0) k++;
        if (k == n) {
            if (n == max) continue;
            snprintf(names[n], 48, "%s", sp->name);
            secs[n++] = 0;
        }
        secs[k] += sp->t1 - sp->t0;
    }
    return n;
}
