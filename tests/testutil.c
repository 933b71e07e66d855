#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

const char *shared_path(const char *rel) {
    static char bufs[8][1024];
    static int slot;
    const char *root = getenv("QUIRE_SHARED");
    char dir[900];
    if (root) snprintf(dir, sizeof dir, "%s", root);
    else snprintf(dir, sizeof dir, "%s/../shared", QUIRE_SOURCE_DIR);
    struct stat st;
    if (stat(dir, &st) != 0) {
        fprintf(stderr, "test data missing: %s (the shared/ folder must sit beside the project)\n", dir);
        fail();
    }
    char *b = bufs[slot++ % 8];
    snprintf(b, 1024, "%s/%s", dir, rel);
    return b;
}

void *test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "cannot open %s\n", path); fail(); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    p[n] = 0;
    fclose(f);
    if (len) *len = (size_t)n;
    return p;
}

double nrmse(const float *a, const float *ref, size_t n) {
    double mean = 0, err = 0, var = 0;
    for (size_t i = 0; i < n; i++) mean += ref[i];
    mean /= (double)n;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - ref[i];
        err += d * d;
        double v = ref[i] - mean;
        var += v * v;
    }
    return sqrt(err / (double)n) / sqrt(var / (double)n);
}

int run_quire(const char *args, char **out) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s", QUIRE_BINARY, args);
    FILE *p = popen(cmd, "r");
    if (!p) fail();
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (n + 1 >= cap) { cap *= 2; buf = realloc(buf, cap); }
    }
    buf[n] = 0;
    int st = pclose(p);
    if (out) *out = buf; else free(buf);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return WEXITSTATUS(st);
}
